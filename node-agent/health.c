#include "health.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define HEALTH_BODY_MAX 4096
/* Connections served at once; one more cuts the oldest (a slot is never held by a slow client). */
#define HEALTH_CONN_MAX 16
/* From accept to the last byte of the answer, however the client trickles its bytes; the
 * kubelet's probe timeout is 3 s in our chart. libmicrohttpd's own timeout is an idle one. */
#define HEALTH_CONN_DEADLINE_MS 3000
/* Connections the kernel queues before our accept (which is eager): a burst beyond it has its
 * SYNs dropped and retried a second later, so it is larger than what we serve at once. */
#define HEALTH_BACKLOG 64

kd_agent_metrics kd_agent_metrics_now;

/* One accepted connection; twice HEALTH_CONN_MAX slots, so the cut ones waiting for
 * libmicrohttpd to close them never stop an accept. */
struct hconn {
	int fd; /* -1: free */
	int64_t deadline_ms;
	bool linked; /* libmicrohttpd announced it (MHD_CONNECTION_NOTIFY_STARTED) */
	bool cut;    /* shut down by us; libmicrohttpd closes it */
};

static struct MHD_Daemon *daemon_;
static struct hconn conns_[2 * HEALTH_CONN_MAX];
static pthread_t thread_;
static int listen_fd_ = -1, stop_fd_ = -1, epoll_fd_ = -1;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kd_agent_metric_set(uint64_t *field, uint64_t v)
{
	__atomic_store_n(field, v, __ATOMIC_RELAXED);
}

void kd_agent_metric_inc(uint64_t *field)
{
	__atomic_add_fetch(field, 1, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *field)
{
	return __atomic_load_n(field, __ATOMIC_RELAXED);
}

static const char *const state_names[KD_AGENT_STATE_COUNT] = {"starting", "installing", "installed",
							      "failed", "cleaning"};

const char *kd_agent_state_name(kd_agent_state s)
{
	return s < KD_AGENT_STATE_COUNT ? state_names[s] : "unknown";
}

static const struct {
	const char *key;
	size_t off;
} fields[] = {
	{"state", offsetof(kd_agent_metrics, state)},
	{"ready", offsetof(kd_agent_metrics, ready)},
	{"duration_ms", offsetof(kd_agent_metrics, install_duration_ms)},
	{"restarts", offsetof(kd_agent_metrics, runtime_restarts)},
	{"errors", offsetof(kd_agent_metrics, errors)},
	{"requests", offsetof(kd_agent_metrics, api_requests)},
	{"failures", offsetof(kd_agent_metrics, api_failures)},
	{"conflicts", offsetof(kd_agent_metrics, api_conflicts)},
};

static uint64_t *field_ptr(size_t i)
{
	return (uint64_t *)((char *)&kd_agent_metrics_now + fields[i].off);
}

void kd_agent_metrics_encode(char *buf, size_t size)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < ELEMENTSOF(fields) && o < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%s=%" PRIu64, i ? "," : "",
				      fields[i].key, get(field_ptr(i)));
}

int kd_agent_metrics_decode(const char *s)
{
	char key[32];
	uint64_t v;
	int n;

	while (*s) {
		if (sscanf(s, "%31[a-z_]=%" SCNu64 "%n", key, &v, &n) != 2)
			return -EINVAL;
		for (size_t i = 0; i < ELEMENTSOF(fields); i++)
			if (strcmp(fields[i].key, key) == 0)
				kd_agent_metric_set(field_ptr(i), v);
		s += n;
		if (*s == ',')
			s++;
	}
	return 0;
}

int kd_agent_metrics_render(char *buf, size_t size)
{
	uint64_t st = get(&kd_agent_metrics_now.state);
	size_t o = 0;

#define OUT(...)                                                                                   \
	do {                                                                                       \
		if (o < size)                                                                      \
			o += (size_t)snprintf(buf + o, size - o, __VA_ARGS__);                     \
	} while (0)
	OUT("# HELP kata_deploy_agent_state Current state of the node agent (1 for "
	    "the current "
	    "one).\n# TYPE kata_deploy_agent_state gauge\n");
	for (unsigned i = 0; i < KD_AGENT_STATE_COUNT; i++)
		OUT("kata_deploy_agent_state{state=\"%s\"} %d\n", state_names[i], i == st);
	OUT("# HELP kata_deploy_agent_ready 1 when Kata is installed and the node "
	    "labelled.\n"
	    "# TYPE kata_deploy_agent_ready gauge\nkata_deploy_agent_ready %" PRIu64 "\n",
	    get(&kd_agent_metrics_now.ready));
	OUT("# HELP kata_deploy_agent_install_duration_seconds Time from start to "
	    "the node "
	    "labelled ready.\n# TYPE kata_deploy_agent_install_duration_seconds "
	    "gauge\n"
	    "kata_deploy_agent_install_duration_seconds %.3f\n",
	    (double)get(&kd_agent_metrics_now.install_duration_ms) / 1000.0);
	OUT("# HELP kata_deploy_agent_runtime_restarts_total Container runtime "
	    "restarts.\n"
	    "# TYPE kata_deploy_agent_runtime_restarts_total counter\n"
	    "kata_deploy_agent_runtime_restarts_total %" PRIu64 "\n",
	    get(&kd_agent_metrics_now.runtime_restarts));
	OUT("# HELP kata_deploy_agent_errors_total Failed installs, cleanups and "
	    "resets.\n"
	    "# TYPE kata_deploy_agent_errors_total "
	    "counter\nkata_deploy_agent_errors_total "
	    "%" PRIu64 "\n",
	    get(&kd_agent_metrics_now.errors));
	OUT("# HELP kata_deploy_agent_api_requests_total Kubernetes API calls.\n"
	    "# TYPE kata_deploy_agent_api_requests_total counter\n"
	    "kata_deploy_agent_api_requests_total %" PRIu64 "\n",
	    get(&kd_agent_metrics_now.api_requests));
	OUT("# HELP kata_deploy_agent_api_failures_total Kubernetes API calls that "
	    "failed.\n"
	    "# TYPE kata_deploy_agent_api_failures_total counter\n"
	    "kata_deploy_agent_api_failures_total %" PRIu64 "\n",
	    get(&kd_agent_metrics_now.api_failures));
	OUT("# HELP kata_deploy_agent_api_conflicts_total 409 Conflict answers to "
	    "guarded "
	    "updates.\n# TYPE kata_deploy_agent_api_conflicts_total counter\n"
	    "kata_deploy_agent_api_conflicts_total %" PRIu64 "\n",
	    get(&kd_agent_metrics_now.api_conflicts));
#undef OUT
	return o < size ? (int)o : -ENOBUFS;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	char body[HEALTH_BODY_MAX];
	unsigned status = MHD_HTTP_OK;
	const char *type = "text/plain; charset=utf-8";
	struct MHD_Response *resp;
	enum MHD_Result ret;
	int len;

	(void)cls;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
		len = snprintf(body, sizeof(body), "method not allowed\n");
	} else if (strcmp(url, "/healthz") == 0) {
		len = snprintf(body, sizeof(body), "ok\n");
	} else if (strcmp(url, "/readyz") == 0) {
		bool ready = get(&kd_agent_metrics_now.ready) != 0;
		status = ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
		len = snprintf(body, sizeof(body), "%s\n",
			       ready ? "ok"
				     : kd_agent_state_name(
					       (kd_agent_state)get(&kd_agent_metrics_now.state)));
	} else if (strcmp(url, "/metrics") == 0) {
		type = "text/plain; version=0.0.4; charset=utf-8";
		len = kd_agent_metrics_render(body, sizeof(body));
		if (len < 0) {
			status = MHD_HTTP_INTERNAL_SERVER_ERROR;
			len = snprintf(body, sizeof(body), "metrics too large\n");
		}
	} else {
		status = MHD_HTTP_NOT_FOUND;
		len = snprintf(body, sizeof(body), "not found\n");
	}
	resp = MHD_create_response_from_buffer((size_t)len, body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", type);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static int open_listener(const char *addr, int port, kd_error *err)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	_cleanup_close_ int fd = -1;
	int one = 1;

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return kd_err(err, -EINVAL, "HEALTH_ADDRESS=%s: not an IPv4 address", addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "health server: socket");
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return kd_err_errno(err, negative_errno(), "health server: bind %s:%d", addr, port);
	if (listen(fd, HEALTH_BACKLOG) < 0)
		return kd_err_errno(err, negative_errno(), "health server: listen");
	return TAKE_FD(fd);
}

/* The connection table (touched only by the server thread: the notification callback runs
 * inside MHD_run and MHD_add_connection, which only that thread calls). */
static struct hconn *conn_by_fd(int fd)
{
	for (size_t i = 0; i < ELEMENTSOF(conns_); i++)
		if (conns_[i].fd == fd && !conns_[i].linked)
			return &conns_[i];
	return NULL;
}

static void notify(void *cls, struct MHD_Connection *mc, void **socket_context,
		   enum MHD_ConnectionNotificationCode toe)
{
	(void)cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct hconn *c = ci ? conn_by_fd(ci->connect_fd) : NULL;
		if (c)
			c->linked = true;
		*socket_context = c;
	} else if (*socket_context) {
		/* Called before libmicrohttpd closes the socket: the fd is not reused yet. */
		struct hconn *c = *socket_context;
		c->fd = -1;
		*socket_context = NULL;
	}
}

/* Ends a connection from outside libmicrohttpd: its next read sees EOF (or its write EPIPE) and
 * it closes the connection itself, in the same MHD_run. */
static void conn_cut(struct hconn *c)
{
	(void)shutdown(c->fd, SHUT_RDWR);
	c->cut = true;
}

/* Accept what is queued (a bounded number per round) and hand it to libmicrohttpd; with
 * HEALTH_CONN_MAX connections live, the oldest is cut to make room. */
static void accept_some(void)
{
	for (int i = 0; i < HEALTH_CONN_MAX; i++) {
		struct hconn *slot = NULL, *oldest = NULL;
		size_t live = 0;
		for (size_t j = 0; j < ELEMENTSOF(conns_); j++) {
			struct hconn *c = &conns_[j];
			if (c->fd < 0) {
				slot = slot ? slot : c;
				continue;
			}
			if (c->cut)
				continue;
			live++;
			if (!oldest || c->deadline_ms < oldest->deadline_ms)
				oldest = c;
		}
		if (!slot)
			return; /* cut connections not closed yet: the next MHD_run closes them */
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		int fd = accept4(listen_fd_, (struct sockaddr *)&sa, &len,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		if (live >= HEALTH_CONN_MAX)
			conn_cut(oldest);
		*slot = (struct hconn){.fd = fd, .deadline_ms = now_ms() + HEALTH_CONN_DEADLINE_MS};
		if (MHD_add_connection(daemon_, fd, (struct sockaddr *)&sa, len) != MHD_YES &&
		    slot->fd == fd && !slot->linked)
			slot->fd = -1; /* closed by libmicrohttpd, never announced */
	}
}

/* The server thread: our poll over the stop event, the listening socket and libmicrohttpd's
 * epoll fd; deadlines are ours, since libmicrohttpd's own timeout is reset by every byte. */
static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		int64_t now = now_ms(), next = -1;
		for (size_t i = 0; i < ELEMENTSOF(conns_); i++) {
			struct hconn *c = &conns_[i];
			if (c->fd < 0 || c->cut)
				continue;
			if (c->deadline_ms <= now)
				conn_cut(c);
			else if (next < 0 || c->deadline_ms < next)
				next = c->deadline_ms;
		}
		(void)MHD_run(daemon_);
		MHD_UNSIGNED_LONG_LONG mhd_ms;
		int timeout = next < 0 ? -1 : (int)(next - now);
		if (MHD_get_timeout(daemon_, &mhd_ms) == MHD_YES && mhd_ms < INT_MAX &&
		    (timeout < 0 || (int)mhd_ms < timeout))
			timeout = (int)mhd_ms;
		struct pollfd p[3] = {{.fd = stop_fd_, .events = POLLIN},
				      {.fd = listen_fd_, .events = POLLIN},
				      {.fd = epoll_fd_, .events = POLLIN}};
		if (poll(p, ELEMENTSOF(p), timeout) < 0 && errno != EINTR) {
			kd_error_log("health server stopped: poll: %m");
			break;
		}
		if (p[0].revents)
			break;
		if (p[1].revents & POLLIN)
			accept_some();
	}
	return NULL;
}

int kd_health_start(const char *addr, int port, int fd, kd_error *err)
{
	const union MHD_DaemonInfo *di;

	if (fd < 0) {
		fd = open_listener(addr, port, err);
		if (fd < 0)
			return fd;
	} else
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	/* accept4 must not block when a client resets between poll and accept. */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	for (size_t i = 0; i < ELEMENTSOF(conns_); i++)
		conns_[i] = (struct hconn){.fd = -1};
	daemon_ = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, answer,
				   NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)ELEMENTSOF(conns_),
				   MHD_OPTION_CONNECTION_TIMEOUT,
				   (unsigned)(HEALTH_CONN_DEADLINE_MS / 1000),
				   MHD_OPTION_NOTIFY_CONNECTION, notify, NULL, MHD_OPTION_END);
	di = daemon_ ? MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
	stop_fd_ = di ? eventfd(0, EFD_CLOEXEC) : -1;
	if (stop_fd_ >= 0) {
		epoll_fd_ = di->epoll_fd;
		listen_fd_ = fd;
		if (pthread_create(&thread_, NULL, serve, NULL) == 0)
			return 0;
		close(stop_fd_);
		stop_fd_ = -1;
		listen_fd_ = -1;
	}
	if (daemon_)
		MHD_stop_daemon(daemon_);
	daemon_ = NULL;
	close(fd);
	return kd_err(err, -EIO, "health server: libmicrohttpd could not start on %s:%d", addr,
		      port);
}

int kd_health_stop(void)
{
	int fd = listen_fd_;

	if (!daemon_)
		return -1;
	(void)eventfd_write(stop_fd_, 1);
	pthread_join(thread_, NULL);
	close(stop_fd_);
	stop_fd_ = -1;
	MHD_stop_daemon(daemon_);
	daemon_ = NULL;
	listen_fd_ = -1;
	if (fd >= 0)
		(void)fcntl(fd, F_SETFD, 0);
	return fd;
}
