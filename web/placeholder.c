/* placeholder: replaced by the web implementation */
#include "web/web.h"
