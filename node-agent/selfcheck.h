/* `kata-deploy-agent self-check`: everything the agent opens at run time, opened the way the
 * agent will open it (the dlopen'ed libraries, the CA bundle, the waiter, the payload, scratch
 * space), so an image that lacks something fails at build time and not on a node. */
#pragma once

#include <stdio.h>

/* One line per check on out; 0 when every check passed, else the number that failed. */
int kd_agent_self_check(FILE *out);
