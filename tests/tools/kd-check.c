/* Test driver: `kd-check [options]` runs `kata-deploy check [options]` through kd_cmd_check,
 * so the verb is testable before (and independently of) the dispatcher in deployer/main.c. */
#include <stdlib.h>
#include <string.h>

#include "deployer/cmd-check.h"
#include "log.h"

int main(int argc, char **argv)
{
	const char *lvl = getenv("KD_LOG_LEVEL");
	kd_log_level l = KD_LOG_INFO;

	if (lvl)
		(void)kd_log_level_from_string(lvl, &l);
	kd_log_setup("kata-deploy", l, false);
	argv[0] = "check";
	return kd_cmd_check(argc, argv);
}
