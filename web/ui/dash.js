/* web/ui/dash.js - enhances the server-rendered overview. */
'use strict';
