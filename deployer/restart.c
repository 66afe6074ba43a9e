#include "restart.h"

#include <dlfcn.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#include "containerd.h"
#include "fsroot.h"
#include "log.h"
#include "snapshotter.h"

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"
#define SD_UNIT "org.freedesktop.systemd1.Unit"
#define SD_SERVICE "org.freedesktop.systemd1.Service"
#define CRIO_PID_FILE "run/crio/crio.pid"

static const char *effective(const char *restart, bool root_is_host)
{
	return restart ? restart : root_is_host ? "systemd" : "none";
}

int kd_restart_validate(const char *restart, kd_error *err)
{
	if (restart && !strncmp(restart, "command:", 8) &&
	    strlen(restart + 8) >= KD_RESTART_COMMAND_MAX)
		return kd_err(err, -E2BIG, "--restart command: longer than %d bytes",
			      KD_RESTART_COMMAND_MAX - 1);
	if (!restart || !strcmp(restart, "systemd") || !strcmp(restart, "none") ||
	    (!strncmp(restart, "command:", 8) && restart[8]))
		return 0;
	return kd_err(err, -EINVAL, "--restart '%s': use systemd, none or command:CMD", restart);
}

static bool crio_reloads(const kd_flavour *f)
{
	return f->crio && kd_flavour_at_least(f, 1, 26);
}

void kd_restart_describe(const char *restart, const kd_flavour *f, bool root_is_host, char *out,
			 size_t size)
{
	const char *r = effective(restart, root_is_host);
	if (f->id == KD_FLAVOUR_NONE)
		snprintf(out, size, "none (no runtime configured)");
	else if (!f->unit[0])
		snprintf(out, size, "none (%s reloads its drop-ins itself)", f->name);
	else if (!strcmp(r, "none"))
		snprintf(out, size, "none (--restart none: restart %s yourself)", f->unit);
	else if (!strncmp(r, "command:", 8))
		snprintf(out, size, "run '%s' (KD_UNIT=%s)", r + 8, f->unit);
	else if (crio_reloads(f))
		snprintf(out, size, "SIGHUP to CRI-O %d.%d (reloads runtime handlers)", f->major,
			 f->minor);
	else
		snprintf(out, size, "systemd RestartUnit %s", f->unit);
}

static int run_command(const char *cmd, const kd_flavour *f, kd_error *err)
{
	pid_t pid = fork();
	if (pid < 0)
		return kd_err_errno(err, negative_errno(), "fork");
	if (pid == 0) {
		/* The agent blocks SIGTERM/SIGINT to read them at safe points; the command must not
		 * inherit that mask (a blocked SIGTERM would make it unkillable). */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setenv("KD_UNIT", f->unit, 1);
		setenv("KD_FLAVOUR", f->name, 1);
		if (access("/bin/sh", X_OK) == 0) {
			execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
			_exit(127);
		}
		/* No shell (the agent's image is FROM scratch): words split at blanks, the first
		 * an absolute path, no quoting or expansion. */
		char buf[KD_RESTART_COMMAND_MAX], *argv[KD_RESTART_COMMAND_WORDS + 1] = {NULL};
		size_t n = 0;
		snprintf(buf, sizeof(buf), "%s", cmd);
		for (char *save = NULL, *w = strtok_r(buf, " \t", &save);
		     w && n < KD_RESTART_COMMAND_WORDS; w = strtok_r(NULL, " \t", &save))
			argv[n++] = w;
		if (n > 0 && argv[0][0] == '/')
			execv(argv[0], argv);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && access("/bin/sh", X_OK) != 0)
		return kd_err(err, -EIO,
			      "restart command '%s' could not be run: there is no /bin/sh here, so "
			      "it must be an absolute path to a program, with arguments separated "
			      "by blanks",
			      cmd);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return kd_err(err, -EIO, "restart command '%s' failed (status %d)", cmd,
			      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	return 0;
}

/* libsystemd is opened at run time: the engine also runs in images without it, where the
 * systemd mode then fails with a clear message and command:/none still work. */
typedef struct sdbus_api {
	void *dl;
	int (*open_system)(sd_bus **);
	int (*new_)(sd_bus **);
	int (*set_address)(sd_bus *, const char *);
	int (*start)(sd_bus *);
	int (*call_method)(sd_bus *, const char *, const char *, const char *, const char *,
			   sd_bus_error *, sd_bus_message **, const char *, ...);
	int (*message_read)(sd_bus_message *, const char *, ...);
	int (*get_property_string)(sd_bus *, const char *, const char *, const char *, const char *,
				   sd_bus_error *, char **);
	sd_bus_message *(*message_unref)(sd_bus_message *);
	sd_bus *(*flush_close_unref)(sd_bus *);
	void (*error_free)(sd_bus_error *);
} sdbus_api;

static int sdbus_load(sdbus_api *a, kd_error *err)
{
	a->dl = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
	if (!a->dl)
		return kd_err(err, -ENOPKG,
			      "--restart systemd needs libsystemd.so.0 (%s); use --restart "
			      "command:CMD or none",
			      dlerror());
#define SYM(field, name)                                                                           \
	if (!(*(void **)&a->field = dlsym(a->dl, name)))                                           \
		return kd_err(err, -ENOPKG, "libsystemd.so.0 has no %s", name);
	SYM(open_system, "sd_bus_open_system")
	SYM(new_, "sd_bus_new")
	SYM(set_address, "sd_bus_set_address")
	SYM(start, "sd_bus_start")
	SYM(call_method, "sd_bus_call_method")
	SYM(message_read, "sd_bus_message_read")
	SYM(get_property_string, "sd_bus_get_property_string")
	SYM(message_unref, "sd_bus_message_unref")
	SYM(flush_close_unref, "sd_bus_flush_close_unref")
	SYM(error_free, "sd_bus_error_free")
#undef SYM
	return 0;
}

int kd_restart_load_systemd(kd_error *err)
{
	sdbus_api a = {0};
	int r = sdbus_load(&a, err);
	if (a.dl)
		dlclose(a.dl);
	return r;
}

/* The host's systemd: the system bus when we run on the host, else its private socket inside
 * the root (how a node agent with the host root mounted reaches it, kata-deploy.md §1.10). */
static int sdbus_connect(sdbus_api *a, int rootfd, bool root_is_host, sd_bus **ret, kd_error *err)
{
	int r;
	if (root_is_host) {
		r = a->open_system(ret);
		if (r < 0)
			return kd_err_errno(err, r, "connect to systemd on the system bus");
		return 0;
	}
	char addr[128];
	snprintf(addr, sizeof(addr), "unix:path=/proc/self/fd/%d/run/systemd/private", rootfd);
	sd_bus *b = NULL;
	if ((r = a->new_(&b)) < 0 || (r = a->set_address(b, addr)) < 0 || (r = a->start(b)) < 0) {
		if (b)
			a->flush_close_unref(b);
		return kd_err_errno(err, r, "connect to systemd at <root>/run/systemd/private");
	}
	*ret = b;
	return 0;
}

/* The unit's object path, then one of its properties (a string); *ret is malloc'ed. */
static int unit_property(sdbus_api *a, sd_bus *b, const char *unit, const char *iface,
			 const char *name, char **ret, kd_error *err)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *um = NULL;
	const char *upath;
	int r;

	if ((r = a->call_method(b, SD_DEST, SD_PATH, SD_MANAGER, "GetUnit", &e, &um, "s", unit)) <
		    0 ||
	    (r = a->message_read(um, "o", &upath)) < 0) {
		r = kd_err(err, r, "systemd GetUnit %s: %s", unit,
			   e.message ? e.message : strerror(-r));
		a->error_free(&e);
		if (um)
			a->message_unref(um);
		return r;
	}
	r = a->get_property_string(b, SD_DEST, upath, iface, name, &e, ret);
	a->message_unref(um);
	if (r < 0)
		r = kd_err(err, r, "systemd %s.%s of %s: %s", iface, name, unit,
			   e.message ? e.message : strerror(-r));
	a->error_free(&e);
	return r < 0 ? r : 0;
}

/* method (RestartUnit, StopUnit) of unit, then wait for its job to finish: 0, or < 0 when
 * systemd refused the call or the job did not finish in time. */
static int unit_job(sdbus_api *a, sd_bus *b, const char *method, const char *unit, kd_error *err)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL;
	const char *job;
	int r = a->call_method(b, SD_DEST, SD_PATH, SD_MANAGER, method, &e, &m, "ss", unit,
			       "replace");
	if (r < 0) {
		r = kd_err(err, r, "systemd %s %s: %s", method, unit,
			   e.message ? e.message : strerror(-r));
		a->error_free(&e);
		return r;
	}
	if ((r = a->message_read(m, "o", &job)) < 0) {
		a->message_unref(m);
		return kd_err_errno(err, r, "systemd %s %s: bad reply", method, unit);
	}
	/* The job object exists until the job is done. */
	time_t end = time(NULL) + KD_RESTART_TIMEOUT_S;
	for (;;) {
		char *state = NULL;
		sd_bus_error e2 = SD_BUS_ERROR_NULL;
		r = a->get_property_string(b, SD_DEST, job, "org.freedesktop.systemd1.Job", "State",
					   &e2, &state);
		a->error_free(&e2);
		free(state);
		if (r < 0)
			break;
		if (time(NULL) > end) {
			a->message_unref(m);
			return kd_err(err, -ETIMEDOUT, "systemd %s %s did not finish in %d s",
				      method, unit, KD_RESTART_TIMEOUT_S);
		}
		usleep(100 * 1000);
	}
	a->message_unref(m);
	return 0;
}

static int restart_job(sdbus_api *a, sd_bus *b, const char *unit, kd_error *err)
{
	return unit_job(a, b, "RestartUnit", unit, err);
}

static int systemd_restart(sdbus_api *a, sd_bus *b, const char *unit, kd_error *err)
{
	_cleanup_free_ char *active = NULL, *result = NULL;
	int r;

	if ((r = restart_job(a, b, unit, err)) < 0 ||
	    (r = unit_property(a, b, unit, SD_UNIT, "ActiveState", &active, err)) < 0)
		return r;
	/* systemd counts every start, ours included, against the unit's StartLimitBurst= per
	 * StartLimitIntervalSec= (default 5 in 10 s) and then refuses to start it: the unit stays
	 * down. Its Result then says "start-limit-hit" only when the run before had succeeded:
	 * after a crash it keeps that run's ("exit-code"), so any failed state gets the same cure.
	 * The runtime must come back: reset the counter (what `systemctl reset-failed` does) and
	 * restart once more; a unit that fails again is an error. */
	if (strcmp(active, "failed") == 0) {
		sd_bus_error e = SD_BUS_ERROR_NULL;
		(void)unit_property(a, b, unit, SD_SERVICE, "Result", &result, NULL);
		kd_warn("%s failed to start again (Result=%s; systemd refuses starts past "
			"StartLimitBurst= per StartLimitIntervalSec=): reset-failed and restart it once "
			"more",
			unit, result ? result : "?");
		r = a->call_method(b, SD_DEST, SD_PATH, SD_MANAGER, "ResetFailedUnit", &e, NULL,
				   "s", unit);
		if (r < 0) {
			r = kd_err(err, r, "systemd ResetFailedUnit %s: %s", unit,
				   e.message ? e.message : strerror(-r));
			a->error_free(&e);
			return r;
		}
		a->error_free(&e);
		free(active);
		active = NULL;
		if ((r = restart_job(a, b, unit, err)) < 0 ||
		    (r = unit_property(a, b, unit, SD_UNIT, "ActiveState", &active, err)) < 0)
			return r;
	}
	if (strcmp(active, "active") != 0)
		return kd_err(err, -EIO, "%s is '%s' after the restart (journalctl -u %s)", unit,
			      active, unit);
	return 0;
}

/* CRI-O's pid from its pid file: only where the root's /run is ours (the host, a test root). */
static int crio_pid(int rootfd, pid_t *ret)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	if (kd_read_file(rootfd, CRIO_PID_FILE, 64, &data, &len, NULL) == 0 && atoi(data) > 1) {
		*ret = atoi(data);
		return 0;
	}
	return -ENOENT;
}

/* KillUnit(unit, "main", sig): systemd signals the unit's main process in its own namespace. */
static int systemd_kill_main(sdbus_api *a, sd_bus *b, const char *unit, int sig, kd_error *err)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r = a->call_method(b, SD_DEST, SD_PATH, SD_MANAGER, "KillUnit", &e, NULL, "ssi", unit,
			       "main", (int32_t)sig);
	if (r < 0)
		r = kd_err(err, r, "%s", e.message ? e.message : strerror(-r));
	a->error_free(&e);
	return r < 0 ? r : 0;
}

/* The managed nydus service (snapshotter.h) before the runtime's restart: systemd reloads our
 * unit files, then the service is restarted when wanted, else stopped when systemd still has
 * it loaded (an install that dropped it, an uninstall). */
static int nydus_service(sdbus_api *a, sd_bus *b, const char *unit, bool want, kd_error *err)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL;
	int r;
	if (!want) {
		r = a->call_method(b, SD_DEST, SD_PATH, SD_MANAGER, "GetUnit", &e, &m, "s", unit);
		a->error_free(&e);
		if (m)
			a->message_unref(m);
		if (r < 0)
			return 0; /* not loaded: nothing runs */
		/* Waited for, as `systemctl stop` does: the Reload and the runtime's restart below
		 * (whose PartOf= propagation reaches the service) must not meet the stop job still
		 * running, and "stopped" is said only once it is. */
		kd_error e2 = {0};
		if (unit_job(a, b, "StopUnit", unit, &e2) < 0)
			kd_warn("%s", e2.msg);
		else
			kd_info("stopped %s", unit);
	}
	r = a->call_method(b, SD_DEST, SD_PATH, SD_MANAGER, "Reload", &e, NULL, "");
	if (r < 0) {
		r = kd_err(err, r, "systemd Reload: %s", e.message ? e.message : strerror(-r));
		a->error_free(&e);
		return r;
	}
	if (!want)
		return 0;
	kd_info("restarting %s", unit);
	return systemd_restart(a, b, unit, err);
}

int kd_restart(int rootfd, const char *restart, const kd_flavour *f, bool root_is_host,
	       kd_error *err)
{
	return kd_restart_with(rootfd, restart, f, root_is_host, NULL, false, err);
}

int kd_restart_with(int rootfd, const char *restart, const kd_flavour *f, bool root_is_host,
		    const char *service, bool want, kd_error *err)
{
	const char *r0 = effective(restart, root_is_host);
	char what[256];
	kd_restart_describe(restart, f, root_is_host, what, sizeof(what));
	if (service && want && strcmp(r0, "systemd") != 0)
		kd_warn("%s: not restarted by kata-deploy (--restart %s): run systemctl "
			"daemon-reload and systemctl restart %s before the runtime restarts",
			service, r0, service);
	if (f->id == KD_FLAVOUR_NONE || !f->unit[0] || !strcmp(r0, "none")) {
		kd_info("runtime restart: %s", what);
		return 0;
	}
	kd_info("runtime restart: %s", what);
	if (!strncmp(r0, "command:", 8))
		return run_command(r0 + 8, f, err);
	sdbus_api a = {0};
	sd_bus *b = NULL;
	int r = sdbus_load(&a, err);
	if (r >= 0 && service) {
		if ((r = sdbus_connect(&a, rootfd, root_is_host, &b, err)) >= 0)
			r = nydus_service(&a, b, service, want, err);
	}
	if (r >= 0 && crio_reloads(f)) {
		pid_t pid;
		kd_error e2 = {0};
		/* Without the pid file, systemd sends the signal: a MainPID is a pid of the host's
		 * namespace, which a pod (no hostPID) cannot signal. */
		if (crio_pid(rootfd, &pid) < 0) {
			if ((r = sdbus_connect(&a, rootfd, root_is_host, &b, &e2)) >= 0)
				r = systemd_kill_main(&a, b, f->unit, SIGHUP, &e2);
			if (r < 0)
				r = kd_err(
					err, r,
					"cannot signal CRI-O: no /%s, and systemd KillUnit %s: %s",
					CRIO_PID_FILE, f->unit, e2.msg);
		} else if (kill(pid, SIGHUP) < 0) {
			r = kd_err_errno(err, negative_errno(), "SIGHUP to CRI-O (pid %d)", pid);
		}
	} else if (r >= 0 && (b || (r = sdbus_connect(&a, rootfd, root_is_host, &b, err)) >= 0)) {
		r = systemd_restart(&a, b, f->unit, err);
	}
	if (b)
		a.flush_close_unref(b);
	if (a.dl)
		dlclose(a.dl);
	return r < 0 ? kd_err_wrap(err, r, "restart %s", f->name) : 0;
}

int kd_restart_from_state(int rootfd, const kd_state *s, const char *restart_override,
			  bool root_is_host, kd_error *err)
{
	kd_flavour f = {.major = -1};
	struct json_object *j = s->runtime_json ? json_tokener_parse(s->runtime_json) : NULL, *v;
	if (!j)
		return 0;
	const char *restart = restart_override;
	static char saved[512];
	if (!restart && json_object_object_get_ex(j, "restart", &v)) {
		snprintf(saved, sizeof(saved), "%s", json_object_get_string(v));
		restart = saved;
	}
	if (json_object_object_get_ex(j, "flavour", &v))
		snprintf(f.name, sizeof(f.name), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(j, "unit", &v))
		snprintf(f.unit, sizeof(f.unit), "%s", json_object_get_string(v));
	f.crio = json_object_get_boolean(json_object_object_get(j, "crio"));
	f.major = json_object_get_int(json_object_object_get(j, "major"));
	f.minor = json_object_get_int(json_object_object_get(j, "minor"));
	f.id = f.crio ? KD_FLAVOUR_CRIO : KD_FLAVOUR_CONTAINERD;
	/* The managed nydus service: wanted while an install sets it up and its unit file is
	 * there; otherwise stopped if systemd still runs it. */
	char service[160] = "";
	bool want = false;
	if (!f.crio) {
		const char *suffix = NULL, *setup = NULL;
		if (json_object_object_get_ex(j, "suffix", &v))
			suffix = json_object_get_string(v);
		if (json_object_object_get_ex(j, "snapshotter_setup", &v))
			setup = json_object_get_string(v);
		snprintf(service, sizeof(service), "%s%s%s.service", KD_NYDUS_NAME,
			 suffix && *suffix ? "-" : "", suffix ? suffix : "");
		char unit_path[200];
		struct stat st;
		snprintf(unit_path, sizeof(unit_path), "etc/systemd/system/%s", service);
		want = kd_snapshotter_listed(setup, "nydus") &&
		       (!s->phase || strcmp(s->phase, "uninstalling") != 0) &&
		       kd_lstat(rootfd, unit_path, &st, NULL) == 0;
	}
	json_object_put(j);
	return kd_restart_with(rootfd, restart, &f, root_is_host, service[0] ? service : NULL, want,
			       err);
}
