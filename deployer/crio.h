/* CRI-O: our handlers live in one drop-in, crio.conf.d/99-kata-deploy[-suffix], rewritten whole
 * on each install. CRI-O decodes conf.d files in lexical order and a file that names a handler
 * replaces that handler entirely, so every field the handler needs is in our file. CRI-O >= 1.26
 * reloads handlers on SIGHUP (ReloadRuntimes), so no restart is needed there. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "containerd.h"
#include "err.h"

#define KD_CRIO_DROPIN_DIR "etc/crio/crio.conf.d"

/* Path of our drop-in (relative to the root) for a suffix ("" or NULL: none). */
void kd_crio_dropin_path(const char *suffix, char *out, size_t size);
/* The drop-in's text (new, NUL-terminated) for the handlers; debug adds [crio.runtime]
 * log_level. Each handler table is appended to *tables. */
int kd_crio_render(const kd_handler *h, size_t n, bool debug, char **ret, char ***tables,
		   kd_error *err);
