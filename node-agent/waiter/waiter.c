/* kata-deploy-agent-wait: what stays running on every node after an install, until SIGTERM.
 * It serves /healthz, /readyz and a frozen /metrics text on the listening socket inherited from
 * the agent, and on SIGTERM execs the agent again for the cleanup decision. It links nothing but
 * libc so it stays under 4 MiB RSS (libmicrohttpd and the agent's other libraries alone map
 * ~9 MiB); a few lines of HTTP/1.0 are enough for three fixed GET endpoints (docs/AGENT.md). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEALTH_FD_ENV "KD_AGENT_HEALTH_FD"
#define METRICS_TEXT_ENV "KD_AGENT_METRICS_TEXT"
#define AGENT_ENV "KD_AGENT_EXE"
#define REQUEST_MAX 2048
#define IO_TIMEOUT_MS 2000

static void respond(int c, const char *metrics)
{
	char req[REQUEST_MAX], head[256];
	size_t n = 0;
	struct pollfd p = {.fd = c, .events = POLLIN};

	/* Read until the end of the request line; a slow or silent client is dropped. */
	while (n < sizeof(req) - 1 && !memchr(req, '\n', n)) {
		if (poll(&p, 1, IO_TIMEOUT_MS) <= 0)
			return;
		ssize_t r = read(c, req + n, sizeof(req) - 1 - n);
		if (r <= 0)
			return;
		n += (size_t)r;
	}
	req[n] = '\0';
	const char *body = "not found\n", *status = "404 Not Found";
	const char *type = "text/plain";
	if (strncmp(req, "GET ", 4) != 0 && strncmp(req, "HEAD ", 5) != 0) {
		body = "method not allowed\n";
		status = "405 Method Not Allowed";
	} else {
		const char *path = strchr(req, ' ') + 1;
		size_t len = strcspn(path, " ?\r\n");
		if ((len == 8 && !strncmp(path, "/healthz", 8)) ||
		    (len == 7 && !strncmp(path, "/readyz", 7))) {
			body = "ok\n";
			status = "200 OK";
		} else if (len == 8 && !strncmp(path, "/metrics", 8)) {
			body = metrics;
			status = "200 OK";
			type = "text/plain; version=0.0.4";
		}
	}
	int h = snprintf(head, sizeof(head),
			 "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 status, type, strlen(body));
	if (write(c, head, (size_t)h) == h && strncmp(req, "HEAD ", 5) != 0) {
		size_t len = strlen(body);
		for (size_t off = 0; off < len;) {
			ssize_t w = write(c, body + off, len - off);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
}

int main(int argc, char **argv)
{
	const char *fdv = getenv(HEALTH_FD_ENV), *agent = getenv(AGENT_ENV);
	const char *metrics = getenv(METRICS_TEXT_ENV);
	int lfd = fdv ? atoi(fdv) : -1;
	sigset_t mask;

	(void)argc;
	if (!agent) {
		fprintf(stderr, "%s: started by hand? %s is not set\n", argv[0], AGENT_ENV);
		return 2;
	}
	if (!metrics)
		metrics = "";
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		perror("signalfd");
		return 1;
	}
	fprintf(stderr, "kata-deploy-agent: info: installed; waiting for SIGTERM\n");
	for (;;) {
		struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = lfd, .events = POLLIN}};
		if (poll(p, lfd >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 1;
		}
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			/* Consume it, or unblocking before exec would deliver it and kill us. */
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			break;
		}
		if (lfd >= 0 && (p[1].revents & POLLIN)) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0) {
				respond(c, metrics);
				close(c);
			}
		}
	}
	fprintf(stderr, "kata-deploy-agent: info: SIGTERM received: checking whether the "
			"DaemonSet still selects this node\n");
	/* Back to the agent for the decision; the health socket and the metrics travel along. */
	setenv("KD_AGENT_ON_TERM", "1", 1);
	unsetenv(METRICS_TEXT_ENV);
	sigprocmask(SIG_UNBLOCK, &mask, NULL);
	char *args[] = {(char *)agent, "cleanup", NULL};
	execv(agent, args);
	perror("exec agent");
	return 1;
}
