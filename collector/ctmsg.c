/* placeholder */
#include "collector/ctmsg.h"
