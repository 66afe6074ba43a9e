/* The transaction journal: every host change is recorded (and fsync'ed) before it is made, so a
 * run killed at any moment is undone by the next one. Records are undo instructions: mkdir,
 * tree (a path we create), symlink (with the old target), file (with a backup of the old bytes),
 * rename. A journal ending in "commit" is complete. Also home of the test-only fault points. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "err.h"

#define KD_JOURNAL_NAME "journal"
#define KD_JOURNAL_BACKUP_DIR "journal.d"
#define KD_JOURNAL_MAX_SIZE (4u << 20)

typedef struct kd_journal {
	int rootfd;
	int fd;
	unsigned n_backups;
	char state_dir[512]; /* relative to the root */
} kd_journal;

/* Start a transaction: state_dir must exist; creates state_dir/journal (fails if one exists). */
int kd_journal_begin(kd_journal *j, int rootfd, const char *state_dir, const char *op,
		     kd_error *err);

/* Record that path (did not exist) is about to be created as a directory / a whole tree. */
int kd_journal_mkdir(kd_journal *j, const char *path, kd_error *err);
int kd_journal_tree(kd_journal *j, const char *path, kd_error *err);
/* Record that the symlink at path is about to change; its current target (or absence) is kept. */
int kd_journal_symlink(kd_journal *j, const char *path, kd_error *err);
/* Record that the regular file at path is about to be replaced or created; its current bytes
 * and mode (or its absence) are saved under state_dir/journal.d/. */
int kd_journal_file(kd_journal *j, const char *path, kd_error *err);
/* Record that from is about to be renamed to to (to does not exist). */
int kd_journal_rename(kd_journal *j, const char *from, const char *to, kd_error *err);

/* Record that the state directory chain starting at top (created by this run, journal inside)
 * is about to appear; undo removes it atomically. Then point the journal at its final place. */
int kd_journal_statedir(kd_journal *j, const char *top, kd_error *err);
void kd_journal_set_dir(kd_journal *j, const char *state_dir);

/* Append "commit" and remove the journal and its backups. */
int kd_journal_commit(kd_journal *j, kd_error *err);
/* Undo every recorded change in reverse order, then remove the journal (used on failure). */
int kd_journal_abort(kd_journal *j, kd_error *err);

/* At the start of every run: if state_dir holds a journal, finish it (committed) or undo it.
 * Returns 1 if something was recovered, 0 if there was nothing to do. */
int kd_journal_recover(int rootfd, const char *state_dir, kd_error *err);

/* Test-only fault injection: with KD_FAULT_AT=N in the environment, the Nth fault point of the
 * run kills the process with SIGKILL. KD_FAULT_LOG=FILE appends each point's name. */
void kd_fault_point(const char *where);
