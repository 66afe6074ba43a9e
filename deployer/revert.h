/* The three-way revert of one runtime config file (docs/RUNTIME-CONFIG.md, "Uninstall"): from
 * the bytes there now, the record of what kata-deploy wrote (state.h) and the bytes it built
 * on, the file without kata-deploy's parts. Byte for byte when nobody touched the file; else
 * structurally, table by table, saying what was kept and why. Used by uninstall and by every
 * install that replaces what an earlier one wrote. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "state.h"

typedef enum kd_revert_result {
	KD_REVERT_SAME = 0, /* nothing of ours is left: no change */
	KD_REVERT_TEXT,	    /* *ret_text is the file without our parts */
	KD_REVERT_DELETE,   /* remove the file */
	KD_REVERT_LEAVE,    /* leave the file as it is (why says what to do by hand) */
} kd_revert_result;

/* cur: the file's bytes now (NULL: absent). Comment and blank lines added inside one of our
 * tables are kept (moved out of it); other edits of our tables make it KD_REVERT_LEAVE unless
 * force (uninstall: a kata-deploy table goes whole, its shim is gone), which removes them with
 * the table and names them. why (always NUL-terminated) is empty when the revert is exact, and
 * otherwise a sentence for the log: what was removed, what was kept, why. Returns a
 * kd_revert_result or -errno. */
int kd_revert_text(const kd_config_file *rec, const char *cur, size_t cur_len, bool force,
		   char **ret_text, size_t *ret_len, char *why, size_t why_size, kd_error *err);
