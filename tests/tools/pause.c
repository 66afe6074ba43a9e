/* The pod sandbox's "pause" process for the sandboxed node (tests/peers/node-up.sh), built with
 * `cc -static` and packed as registry.k8s.io/pause:3.10 by tests/tools/oci-image.py, so no image
 * comes from the internet. Also PID 1 of the node's PID namespace. It holds the namespaces,
 * reaps every child that is reparented to it, and exits 0 on SIGTERM or SIGINT. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	sigset_t set;
	if (argc > 1 && !strcmp(argv[1], "-v")) {
		printf("pause (kata-deploy tests)\n");
		return 0;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
		perror("pause: sigprocmask");
		return 1;
	}
	for (;;) {
		int sig = sigwaitinfo(&set, NULL);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			perror("pause: sigwaitinfo");
			return 1;
		}
		if (sig == SIGTERM || sig == SIGINT)
			return 0;
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}
