/* Making the runtime load its new config, as --restart says: "systemd" (containerd and CRI-O
 * < 1.26: RestartUnit through systemd's D-Bus API; CRI-O >= 1.26: SIGHUP, which reloads its
 * handlers), "none", or "command:CMD". containerd never gets a signal: SIGHUP makes 2.x exit
 * (containerd#13285). k0s reloads containerd.d by itself. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "flavour.h"
#include "state.h"

#define KD_RESTART_TIMEOUT_S 300
/* command:CMD without /bin/sh (the agent's image): at most this many bytes and words. */
#define KD_RESTART_COMMAND_MAX 4096
#define KD_RESTART_COMMAND_WORDS 64

/* "systemd", "none" or "command:CMD"; NULL means systemd when the root is "/", else none.
 * CMD runs with /bin/sh -c; where there is no /bin/sh it is split at blanks and its first
 * word must be an absolute path. */
int kd_restart_validate(const char *restart, kd_error *err);
int kd_restart(int rootfd, const char *restart, const kd_flavour *f, bool root_is_host,
	       kd_error *err);
/* kd_restart, with the managed nydus service (snapshotter.h) first when service is set (systemd
 * mode): systemd reloads its unit files, then the service is restarted (want) or, when
 * systemd still has it loaded, stopped. */
int kd_restart_with(int rootfd, const char *restart, const kd_flavour *f, bool root_is_host,
		    const char *service, bool want, kd_error *err);
/* Load libsystemd the way the systemd restart does (and unload it): 0, or why it cannot. */
int kd_restart_load_systemd(kd_error *err);
/* What kd_restart would do, in words. */
void kd_restart_describe(const char *restart, const kd_flavour *f, bool root_is_host, char *out,
			 size_t size);
/* Restart with the flavour and option recorded in the state (uninstall, rollback). */
int kd_restart_from_state(int rootfd, const kd_state *s, const char *restart_override,
			  bool root_is_host, kd_error *err);
