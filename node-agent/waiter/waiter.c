/* kata-deploy-agent-wait: what stays running on every node after an install, until SIGTERM.
 * It serves /healthz, /readyz and a frozen /metrics text on the listening socket inherited from
 * the agent, and on SIGTERM execs the agent again for the cleanup decision. It links nothing but
 * libc so it stays under 4 MiB RSS (libmicrohttpd and the agent's other libraries alone map
 * ~9 MiB); a few lines of HTTP/1.0 are enough for three fixed GET endpoints (docs/AGENT.md).
 *
 * One non-blocking loop: SIGTERM is looked at before any client work, every connection has a
 * total deadline from accept (a client trickling a byte at a time cannot hold a slot), and when
 * every slot is taken the oldest connection makes room for the new one. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define HEALTH_FD_ENV "KD_AGENT_HEALTH_FD"
#define METRICS_TEXT_ENV "KD_AGENT_METRICS_TEXT"
#define AGENT_ENV "KD_AGENT_EXE"
/* A request head (request line + headers) larger than this is refused with 431. */
#define REQUEST_MAX 2048
/* Connections served at once; one more evicts the oldest. */
#define CONN_MAX 16
/* From accept to the last byte of the answer; the kubelet's probe timeout is 3 s in our chart. */
#define CONN_DEADLINE_MS 3000

struct conn {
	int fd; /* -1: a free slot */
	int64_t deadline_ms;
	size_t in;		   /* request bytes read */
	const char *body;	   /* set once the answer is ready */
	size_t head_len, out;	   /* the answer's head (in buf) and bytes of head + body sent */
	char buf[REQUEST_MAX + 1]; /* the request head, then the answer's head */
};

static struct conn conns[CONN_MAX];
static const char *metrics_text = "";

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_close(struct conn *c)
{
	close(c->fd);
	c->fd = -1;
}

/* The end of the request head: an empty line. */
static bool head_complete(const struct conn *c)
{
	return memmem(c->buf, c->in, "\r\n\r\n", 4) || memmem(c->buf, c->in, "\n\n", 2);
}

static void prepare_answer(struct conn *c)
{
	const char *body = "not found\n", *status = "404 Not Found", *type = "text/plain";
	bool head_only = strncmp(c->buf, "HEAD ", 5) == 0;

	c->buf[c->in] = '\0';
	if (!head_complete(c)) {
		body = "request header too large\n";
		status = "431 Request Header Fields Too Large";
	} else if (strncmp(c->buf, "GET ", 4) != 0 && !head_only) {
		body = "method not allowed\n";
		status = "405 Method Not Allowed";
	} else {
		const char *path = strchr(c->buf, ' ') + 1;
		size_t len = strcspn(path, " ?\r\n");
		if ((len == 8 && !strncmp(path, "/healthz", 8)) ||
		    (len == 7 && !strncmp(path, "/readyz", 7))) {
			body = "ok\n";
			status = "200 OK";
		} else if (len == 8 && !strncmp(path, "/metrics", 8)) {
			body = metrics_text;
			status = "200 OK";
			type = "text/plain; version=0.0.4";
		}
	}
	int h = snprintf(c->buf, sizeof(c->buf),
			 "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 status, type, strlen(body));
	c->head_len = (size_t)h;
	c->body = head_only ? "" : body;
	c->out = 0;
}

/* One step of a connection whose socket is ready: read what is there, or write what fits. */
static void conn_step(struct conn *c)
{
	if (!c->body) {
		ssize_t r = recv(c->fd, c->buf + c->in, REQUEST_MAX - c->in, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (r <= 0) {
			conn_close(c);
			return;
		}
		c->in += (size_t)r;
		if (!head_complete(c) && c->in < REQUEST_MAX)
			return;
		prepare_answer(c);
	}
	size_t body_len = strlen(c->body), total = c->head_len + body_len;
	struct iovec iov[2] = {{c->buf, c->head_len}, {(char *)c->body, body_len}};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
	if (c->out < c->head_len) {
		iov[0].iov_base = c->buf + c->out;
		iov[0].iov_len = c->head_len - c->out;
	} else {
		msg.msg_iov = &iov[1];
		msg.msg_iovlen = 1;
		iov[1].iov_base = (char *)c->body + (c->out - c->head_len);
		iov[1].iov_len = total - c->out;
	}
	/* MSG_NOSIGNAL: a client gone away must not kill the waiter with SIGPIPE. */
	ssize_t w = sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (w < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (w < 0 || (c->out += (size_t)w) == total)
		conn_close(c);
}

/* A free slot, or the oldest connection's, closed to make room. */
static struct conn *conn_slot(void)
{
	struct conn *oldest = &conns[0];

	for (size_t i = 0; i < CONN_MAX; i++) {
		if (conns[i].fd < 0)
			return &conns[i];
		if (conns[i].deadline_ms < oldest->deadline_ms)
			oldest = &conns[i];
	}
	conn_close(oldest);
	return oldest;
}

/* Accept what is queued (at most CONN_MAX per round, so a flood cannot starve the signal check)
 * and serve at once what came with it. */
static void accept_some(int lfd)
{
	for (int i = 0; i < CONN_MAX; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct conn *c = conn_slot();
		*c = (struct conn){.fd = fd, .deadline_ms = now_ms() + CONN_DEADLINE_MS};
		conn_step(c);
	}
}

/* A SIGTERM or SIGINT is pending (consumed: unblocking before exec would deliver it and kill us).
 */
static bool term_pending(int sfd)
{
	struct signalfd_siginfo si;

	return read(sfd, &si, sizeof(si)) == sizeof(si);
}

static int serve(int sfd, int lfd)
{
	struct pollfd p[2 + CONN_MAX];
	struct conn *polled[CONN_MAX];

	for (;;) {
		if (term_pending(sfd))
			return 0;
		int64_t now = now_ms(), next = -1;
		size_t n = 0;
		for (size_t i = 0; i < CONN_MAX; i++) {
			struct conn *c = &conns[i];
			if (c->fd < 0)
				continue;
			if (c->deadline_ms <= now) {
				conn_close(c);
				continue;
			}
			if (next < 0 || c->deadline_ms < next)
				next = c->deadline_ms;
			p[2 + n] =
				(struct pollfd){.fd = c->fd, .events = c->body ? POLLOUT : POLLIN};
			polled[n++] = c;
		}
		p[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		p[1] = (struct pollfd){.fd = lfd, .events = POLLIN};
		if (poll(p, 2 + n, next < 0 ? -1 : (int)(next - now)) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return -1;
		}
		if (term_pending(sfd))
			return 0;
		for (size_t i = 0; i < n; i++)
			if (p[2 + i].revents && polled[i]->fd >= 0)
				conn_step(polled[i]);
		if (p[1].revents & POLLIN)
			accept_some(lfd);
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
	if (metrics)
		metrics_text = metrics;
	for (size_t i = 0; i < CONN_MAX; i++)
		conns[i].fd = -1;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		perror("signalfd");
		return 1;
	}
	/* accept4 must not block when a client resets between poll and accept. */
	if (lfd >= 0 && fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) < 0) {
		perror("health socket");
		lfd = -1;
	}
	/* The agent's LOG_LEVEL (upstream's --log-level): error and warn leave out info lines. */
	const char *ll = getenv("LOG_LEVEL");
	bool info = !ll || (strcmp(ll, "error") != 0 && strcmp(ll, "warn") != 0);
	if (info)
		fprintf(stderr, "kata-deploy-agent: info: installed; waiting for SIGTERM\n");
	if (serve(sfd, lfd) < 0)
		return 1;
	if (info)
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
