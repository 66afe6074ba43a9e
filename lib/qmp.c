#include "qmp.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "json.h"
#include "log.h"
#include "strv.h"

#define READ_CHUNK 65536
#define GARBAGE_SHOWN 80 /* bytes of a non-QMP line quoted in the error */
#define REAP_STEP_MS 10

struct kd_qmp {
	pid_t pid;
	int fd;	     /* our end of the socketpair that is QEMU's stdin and stdout */
	int errfd;   /* read end of QEMU's stderr */
	bool broken; /* protocol failure or time-out: kill without a polite quit */
	uint64_t deadline;
	int timeout_ms;
	char *buf;
	size_t len, cap;
	char errtail[KD_QMP_STDERR_TAIL + 1];
	size_t errlen;
	unsigned next_id;
	char binary[256];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int remaining_ms(const kd_qmp *q)
{
	uint64_t n = now_ms();

	return n >= q->deadline ? 0 : (int)(q->deadline - n);
}

/* Keep the last KD_QMP_STDERR_TAIL bytes of stderr: QEMU explains its failures there. */
static void drain_stderr(kd_qmp *q)
{
	char chunk[1024];
	ssize_t n;

	if (q->errfd < 0)
		return;
	while ((n = read(q->errfd, chunk, sizeof(chunk))) > 0) {
		size_t c = (size_t)n;
		if (c >= KD_QMP_STDERR_TAIL) {
			memcpy(q->errtail, chunk + c - KD_QMP_STDERR_TAIL, KD_QMP_STDERR_TAIL);
			q->errlen = KD_QMP_STDERR_TAIL;
		} else {
			if (q->errlen + c > KD_QMP_STDERR_TAIL) {
				size_t drop = q->errlen + c - KD_QMP_STDERR_TAIL;
				memmove(q->errtail, q->errtail + drop, q->errlen - drop);
				q->errlen -= drop;
			}
			memcpy(q->errtail + q->errlen, chunk, c);
			q->errlen += c;
		}
	}
	if (n == 0) {
		close(q->errfd);
		q->errfd = -1;
	}
	q->errtail[q->errlen] = '\0';
}

static const char *stderr_tail(kd_qmp *q)
{
	char *e;

	drain_stderr(q);
	for (e = q->errtail + q->errlen; e > q->errtail && (e[-1] == '\n' || e[-1] == ' '); e--)
		e[-1] = '\0';
	return q->errtail[0] ? q->errtail : "(no output on stderr)";
}

/* Reap the child, waiting at most wait_ms; then SIGKILL. Returns the wait status or -1. */
static int reap(kd_qmp *q, int wait_ms)
{
	int status = 0;

	if (q->pid <= 0)
		return -1;
	for (int waited = 0;; waited += REAP_STEP_MS) {
		pid_t r = waitpid(q->pid, &status, WNOHANG);
		if (r == q->pid || (r < 0 && errno != EINTR)) {
			q->pid = 0;
			return r == -1 ? -1 : status;
		}
		if (waited >= wait_ms)
			break;
		nanosleep(&(struct timespec){.tv_nsec = REAP_STEP_MS * 1000000L}, NULL);
	}
	kill(q->pid, SIGKILL);
	while (waitpid(q->pid, &status, 0) < 0 && errno == EINTR)
		;
	q->pid = 0;
	return status;
}

static int fail_exited(kd_qmp *q, const char *what, kd_error *err)
{
	const char *tail = stderr_tail(q);
	int status = reap(q, KD_QMP_QUIT_GRACE_MS);
	char how[64] = "exited";

	q->broken = true;
	if (status >= 0 && WIFEXITED(status))
		snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
	else if (status >= 0 && WIFSIGNALED(status))
		snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(status));
	return kd_err(err, -EPROTO, "%s: QEMU %s before answering %s: %s", q->binary, how, what,
		      tail);
}

static int fail_timeout(kd_qmp *q, const char *what, kd_error *err)
{
	q->broken = true;
	if (q->pid > 0)
		kill(q->pid, SIGKILL);
	return kd_err(err, -ETIMEDOUT, "%s: QEMU did not answer %s within %d ms (killed)",
		      q->binary, what, q->timeout_ms);
}

/* Quote a few bytes of an unexpected line safely (control bytes as '?'). */
static void quote(char *dst, size_t size, const char *src, size_t len)
{
	size_t i, n = len < size - 1 ? len : size - 1;

	for (i = 0; i < n; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

/* Read one newline-terminated JSON object. */
static int read_message(kd_qmp *q, const char *what, struct json_object **ret, kd_error *err)
{
	for (;;) {
		char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
		if (nl) {
			size_t linelen = (size_t)(nl - q->buf);
			struct json_object *obj = NULL;
			char shown[GARBAGE_SHOWN + 1];
			int r;

			while (linelen && q->buf[linelen - 1] == '\r')
				linelen--;
			r = linelen ? kd_json_parse(q->buf, linelen, "qmp", &obj, NULL) : 0;
			if (linelen && (r < 0 || !json_object_is_type(obj, json_type_object))) {
				json_object_put(obj);
				quote(shown, sizeof(shown), q->buf, linelen);
				q->broken = true;
				return kd_err(err, -EPROTO,
					      "%s: QEMU sent something that is not QMP while "
					      "waiting for %s: '%s'",
					      q->binary, what, shown);
			}
			q->len -= (size_t)(nl + 1 - q->buf);
			memmove(q->buf, nl + 1, q->len);
			if (!linelen)
				continue;
			*ret = obj;
			return 0;
		}
		if (q->len >= KD_QMP_MAX_LINE) {
			q->broken = true;
			return kd_err(err, -EMSGSIZE,
				      "%s: QMP message longer than %u bytes while waiting for %s",
				      q->binary, KD_QMP_MAX_LINE, what);
		}

		struct pollfd p[2] = {{.fd = q->fd, .events = POLLIN},
				      {.fd = q->errfd, .events = POLLIN}};
		int left = remaining_ms(q);
		if (left == 0)
			return fail_timeout(q, what, err);
		int n = poll(p, q->errfd >= 0 ? 2 : 1, left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return kd_err_errno(err, negative_errno(), "poll QMP");
		}
		if (n == 0)
			return fail_timeout(q, what, err);
		if (q->errfd >= 0 && p[1].revents)
			drain_stderr(q);
		if (!p[0].revents)
			continue;
		if (q->cap - q->len < READ_CHUNK) {
			size_t ncap = q->cap ? q->cap * 2 : READ_CHUNK * 2;
			char *nb;
			if (ncap > KD_QMP_MAX_LINE + READ_CHUNK)
				ncap = KD_QMP_MAX_LINE + READ_CHUNK;
			nb = realloc(q->buf, ncap);
			if (!nb)
				return kd_err(err, -ENOMEM, "out of memory");
			q->buf = nb;
			q->cap = ncap;
		}
		ssize_t got = read(q->fd, q->buf + q->len, q->cap - q->len);
		if (got < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno == ECONNRESET)
				return fail_exited(q, what, err);
			return kd_err_errno(err, negative_errno(), "read QMP");
		}
		if (got == 0)
			return fail_exited(q, what, err);
		q->len += (size_t)got;
	}
}

static int send_all(kd_qmp *q, const char *data, size_t len, const char *what, kd_error *err)
{
	while (len) {
		struct pollfd p = {.fd = q->fd, .events = POLLOUT};
		int left = remaining_ms(q);
		if (left == 0)
			return fail_timeout(q, what, err);
		int n = poll(&p, 1, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kd_err_errno(err, negative_errno(), "poll QMP");
		if (n == 0)
			return fail_timeout(q, what, err);
		ssize_t w = send(q->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno == EPIPE || errno == ECONNRESET)
				return fail_exited(q, what, err);
			return kd_err_errno(err, negative_errno(), "write QMP");
		}
		data += w;
		len -= (size_t)w;
	}
	return 0;
}

int kd_qmp_execute(kd_qmp *q, const char *command, struct json_object *args,
		   struct json_object **ret_return, kd_error *err)
{
	_cleanup_json_ struct json_object *req = json_object_new_object();
	char id[32], what[128];
	const char *text;
	int r;

	if (q->broken)
		return kd_err(err, -EPROTO, "%s: QMP session is no longer usable", q->binary);
	if (!req)
		return kd_err(err, -ENOMEM, "out of memory");
	snprintf(id, sizeof(id), "kd-%u", q->next_id++);
	snprintf(what, sizeof(what), "'%s'", command);
	json_object_object_add(req, "execute", json_object_new_string(command));
	if (args)
		json_object_object_add(req, "arguments", json_object_get(args));
	json_object_object_add(req, "id", json_object_new_string(id));
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	if (!text)
		return kd_err(err, -ENOMEM, "out of memory");
	r = send_all(q, text, strlen(text), what, err);
	if (r < 0)
		return r;
	r = send_all(q, "\n", 1, what, err);
	if (r < 0)
		return r;

	for (;;) {
		_cleanup_json_ struct json_object *msg = NULL;
		struct json_object *v;

		r = read_message(q, what, &msg, err);
		if (r < 0)
			return r;
		if (json_object_object_get_ex(msg, "event", NULL))
			continue; /* asynchronous events are not answers */
		if (!json_object_object_get_ex(msg, "id", &v) ||
		    !json_object_is_type(v, json_type_string) ||
		    strcmp(json_object_get_string(v), id) != 0) {
			q->broken = true;
			return kd_err(err, -EPROTO, "%s: QMP reply to %s does not carry id %s",
				      q->binary, what, id);
		}
		if (json_object_object_get_ex(msg, "error", &v)) {
			struct json_object *desc = NULL;
			json_object_object_get_ex(v, "desc", &desc);
			return kd_err(err, -EREMOTEIO, "%s: QMP %s failed: %s", q->binary, what,
				      desc ? json_object_get_string(desc) : "no description");
		}
		if (!json_object_object_get_ex(msg, "return", &v)) {
			q->broken = true;
			return kd_err(err, -EPROTO,
				      "%s: QMP reply to %s has neither return nor error", q->binary,
				      what);
		}
		if (ret_return)
			*ret_return = json_object_get(v);
		return 0;
	}
}

static pid_t spawn(const char *binary, int child_fd, int err_fd)
{
	/* No guest, no default devices, no config files, stopped: just the QMP monitor. */
	char *const argv[] = {
		(char *)binary,	   "-machine",	 "none",     "-qmp", "stdio", "-nodefaults",
		"-no-user-config", "-nographic", "-display", "none", "-S",    NULL};
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (dup2(child_fd, STDIN_FILENO) < 0 || dup2(child_fd, STDOUT_FILENO) < 0 ||
	    dup2(err_fd, STDERR_FILENO) < 0)
		_exit(127);
	execv(binary, argv);
	dprintf(STDERR_FILENO, "exec %s: %s\n", binary, strerror(errno));
	_exit(127);
}

int kd_qmp_start(const char *binary, int timeout_ms, kd_qmp **ret, kd_error *err)
{
	_cleanup_(kd_qmp_closep) kd_qmp *q = NULL;
	_cleanup_json_ struct json_object *greeting = NULL;
	struct json_object *v;
	int sv[2], ep[2], r;

	if (!binary || binary[0] != '/')
		return kd_err(err, -EINVAL, "QEMU binary must be an absolute path");
	if (access(binary, X_OK) < 0)
		return kd_err_errno(err, negative_errno(), "QEMU binary %s", binary);
	q = calloc(1, sizeof(*q));
	if (!q)
		return kd_err(err, -ENOMEM, "out of memory");
	q->fd = q->errfd = -1;
	q->timeout_ms = timeout_ms > 0 ? timeout_ms : KD_QMP_TIMEOUT_MS;
	q->deadline = now_ms() + (uint64_t)q->timeout_ms;
	snprintf(q->binary, sizeof(q->binary), "%s", binary);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return kd_err_errno(err, negative_errno(), "socketpair");
	if (pipe2(ep, O_CLOEXEC) < 0) {
		r = negative_errno();
		close(sv[0]);
		close(sv[1]);
		return kd_err_errno(err, r, "pipe");
	}
	q->fd = sv[0];
	q->errfd = ep[0];
	q->pid = spawn(binary, sv[1], ep[1]);
	r = q->pid < 0 ? negative_errno() : 0;
	close(sv[1]);
	close(ep[1]);
	if (r < 0)
		return kd_err_errno(err, r, "fork");
	fcntl(q->errfd, F_SETFL, O_NONBLOCK);
	kd_debug("qmp: started %s (pid %d)", binary, (int)q->pid);

	r = read_message(q, "the QMP greeting", &greeting, err);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(greeting, "QMP", &v)) {
		q->broken = true;
		return kd_err(err, -EPROTO, "%s: the first message is not a QMP greeting", binary);
	}
	r = kd_qmp_execute(q, "qmp_capabilities", NULL, NULL, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(q);
	return 0;
}

void kd_qmp_close(kd_qmp *q)
{
	if (!q)
		return;
	if (q->pid > 0 && !q->broken && q->fd >= 0) {
		static const char quit[] = "{\"execute\":\"quit\"}\n";
		(void)!send(q->fd, quit, sizeof(quit) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		reap(q, KD_QMP_QUIT_GRACE_MS);
	} else if (q->pid > 0) {
		reap(q, 0);
	}
	if (q->fd >= 0)
		close(q->fd);
	if (q->errfd >= 0)
		close(q->errfd);
	free(q->buf);
	free(q);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collect obj[i][key] (and obj[i][key2] when key2 is set) of an array of objects into a sorted,
 * NULL-terminated list, dropping suffix from the end of each name when present. */
static int collect(struct json_object *arr, const char *key, const char *key2, const char *suffix,
		   char ***ret, kd_error *err)
{
	size_t n, k = 0, slen = suffix ? strlen(suffix) : 0;
	char **list;

	if (!json_object_is_type(arr, json_type_array))
		return kd_err(err, -EPROTO, "QMP: expected an array of objects");
	n = json_object_array_length(arr);
	list = calloc(2 * n + 1, sizeof(char *));
	if (!list)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *keys[2] = {key, key2};
		for (size_t j = 0; j < 2 && keys[j]; j++) {
			struct json_object *v;
			const char *s;
			size_t l;
			if (!json_object_object_get_ex(e, keys[j], &v) ||
			    !json_object_is_type(v, json_type_string))
				continue;
			s = json_object_get_string(v);
			l = strlen(s);
			if (slen && l > slen && strcmp(s + l - slen, suffix) == 0)
				l -= slen;
			list[k] = strndup(s, l);
			if (!list[k]) {
				for (size_t x = 0; x < k; x++)
					free(list[x]);
				free(list);
				return kd_err(err, -ENOMEM, "out of memory");
			}
			k++;
		}
	}
	qsort(list, k, sizeof(char *), cmp_str);
	*ret = list;
	return 0;
}

static int list_types(kd_qmp *q, const char *implements, const char *suffix, char ***ret,
		      kd_error *err)
{
	_cleanup_json_ struct json_object *args = json_object_new_object();
	_cleanup_json_ struct json_object *res = NULL;
	int r;

	if (!args)
		return kd_err(err, -ENOMEM, "out of memory");
	json_object_object_add(args, "implements", json_object_new_string(implements));
	json_object_object_add(args, "abstract", json_object_new_boolean(false));
	r = kd_qmp_execute(q, "qom-list-types", args, &res, err);
	if (r < 0)
		return r;
	return collect(res, "name", NULL, suffix, ret, err);
}

void kd_qemu_caps_done(kd_qemu_caps *c)
{
	free(c->version);
	free(c->package);
	kd_strv_free(c->accels);
	kd_strv_free(c->machines);
	kd_strv_free(c->devices);
	kd_strv_free(c->cpu_models);
	*c = (kd_qemu_caps){0};
}

static int probe(kd_qmp *q, kd_qemu_caps *c, kd_error *err)
{
	_cleanup_json_ struct json_object *ver = NULL, *kvm = NULL, *machines = NULL, *cpus = NULL;
	struct json_object *v, *qemu, *f;
	int64_t part[3] = {0, 0, 0};
	static const char *const parts[] = {"major", "minor", "micro"};
	char buf[64];
	int r;

	r = kd_qmp_execute(q, "query-version", NULL, &ver, err);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(ver, "qemu", &qemu))
		return kd_err(err, -EPROTO, "%s: query-version without a qemu member", q->binary);
	for (size_t i = 0; i < ELEMENTSOF(parts); i++)
		if (json_object_object_get_ex(qemu, parts[i], &f))
			part[i] = json_object_get_int64(f);
	snprintf(buf, sizeof(buf), "%lld.%lld.%lld", (long long)part[0], (long long)part[1],
		 (long long)part[2]);
	c->version = strdup(buf);
	c->package = strdup(
		json_object_object_get_ex(ver, "package", &v) ? json_object_get_string(v) : "");
	if (!c->version || !c->package)
		return kd_err(err, -ENOMEM, "out of memory");

	r = kd_qmp_execute(q, "query-kvm", NULL, &kvm, err);
	if (r < 0)
		return r;
	c->kvm_present =
		json_object_object_get_ex(kvm, "present", &v) && json_object_get_boolean(v);

	r = list_types(q, "accel", "-accel", &c->accels, err);
	if (r < 0)
		return r;
	r = list_types(q, "device", NULL, &c->devices, err);
	if (r < 0)
		return r;
	r = kd_qmp_execute(q, "query-machines", NULL, &machines, err);
	if (r < 0)
		return r;
	r = collect(machines, "name", "alias", NULL, &c->machines, err);
	if (r < 0)
		return r;
	r = kd_qmp_execute(q, "query-cpu-definitions", NULL, &cpus, err);
	if (r < 0)
		return r;
	return collect(cpus, "name", NULL, NULL, &c->cpu_models, err);
}

int kd_qemu_probe(const char *binary, int timeout_ms, kd_qemu_caps *ret, kd_error *err)
{
	_cleanup_(kd_qmp_closep) kd_qmp *q = NULL;
	kd_qemu_caps c = {0};
	int r;

	r = kd_qmp_start(binary, timeout_ms, &q, err);
	if (r < 0)
		return r;
	r = probe(q, &c, err);
	if (r < 0) {
		kd_qemu_caps_done(&c);
		return r;
	}
	*ret = c;
	return 0;
}
