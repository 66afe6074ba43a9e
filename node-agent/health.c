#include "health.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"

#define HEALTH_BODY_MAX 4096
#define HEALTH_CONNECTION_LIMIT 16
#define HEALTH_CONNECTION_TIMEOUT_S 10

kd_agent_metrics kd_agent_metrics_now;

static struct MHD_Daemon *daemon_;
static int listen_fd_ = -1;

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
	if (listen(fd, 16) < 0)
		return kd_err_errno(err, negative_errno(), "health server: listen");
	return TAKE_FD(fd);
}

int kd_health_start(const char *addr, int port, int fd, kd_error *err)
{
	if (fd < 0) {
		fd = open_listener(addr, port, err);
		if (fd < 0)
			return fd;
	} else
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC, 0, NULL, NULL,
				   answer, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
				   MHD_OPTION_CONNECTION_LIMIT, (unsigned)HEALTH_CONNECTION_LIMIT,
				   MHD_OPTION_CONNECTION_TIMEOUT,
				   (unsigned)HEALTH_CONNECTION_TIMEOUT_S, MHD_OPTION_END);
	if (!daemon_) {
		close(fd);
		return kd_err(err, -EIO, "health server: libmicrohttpd could not start on %s:%d",
			      addr, port);
	}
	listen_fd_ = fd;
	return 0;
}

int kd_health_stop(void)
{
	int fd = listen_fd_;

	if (!daemon_)
		return -1;
	(void)MHD_quiesce_daemon(daemon_);
	MHD_stop_daemon(daemon_);
	daemon_ = NULL;
	listen_fd_ = -1;
	if (fd >= 0)
		(void)fcntl(fd, F_SETFD, 0);
	return fd;
}
