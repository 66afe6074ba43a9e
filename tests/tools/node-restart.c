/* The sandboxed node's `systemctl restart UNIT` (tests/peers/node-up.sh, docs/NODE-TEST.md), run by
 * the agent inside its pod as RUNTIME_RESTART=command:/host/opt/kd-node/bin/node-restart DIR: it
 * creates DIR/$KD_UNIT.restart, which the node's supervisor of that unit removes once it has
 * stopped and started the daemon and the daemon is ready again, and waits until then (as
 * `systemctl restart` of a Type=notify unit returns once the unit is started). Static (`cc
 * -static`): the agent's image has no shell and no libc of the host's. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_TENTHS 600

int main(int argc, char **argv)
{
	const char *unit = getenv("KD_UNIT");
	char path[4096];
	if (argc != 2 || !unit || !*unit || strchr(unit, '/')) {
		fprintf(stderr, "usage: KD_UNIT=<unit> node-restart DIR\n");
		return 2;
	}
	if (snprintf(path, sizeof(path), "%s/%s.restart", argv[1], unit) >= (int)sizeof(path)) {
		fprintf(stderr, "node-restart: path too long\n");
		return 2;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "node-restart: create %s: %s\n", path, strerror(errno));
		return 1;
	}
	close(fd);
	for (int i = 0; i < WAIT_TENTHS; i++) {
		if (access(path, F_OK) != 0)
			return 0;
		usleep(100000);
	}
	fprintf(stderr, "node-restart: %s not done by the node's supervisor within %d s\n", path,
		WAIT_TENTHS / 10);
	return 1;
}
