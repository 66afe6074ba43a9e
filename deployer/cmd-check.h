/* `kata-deploy check [--root DIR] [--output text|json] [--fix] ...`: the CLI verb over
 * deployer/hostcheck. Returns the process exit status: 0 every requested shim can run, 1 some
 * cannot, 2 usage or internal error. The dispatcher (deployer/main.c) calls it with the verb's
 * own argv ("check", options...). */
#pragma once

int kd_cmd_check(int argc, char **argv);
