/* Writing files on a thread: the caller queues bytes for open file descriptors and the thread
 * writes them and closes the descriptors, so that the caller's work (decompressing, hashing)
 * overlaps the kernel's copy into the page cache. Bytes are copied into the writer's buffers
 * (a few MiB/s of memcpy against a write(2) that costs ten times more), so the caller's buffer
 * is free again when a call returns. The first failure is kept and reported by the next call;
 * after it nothing more is written, but every descriptor handed over is still closed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct kd_fwriter kd_fwriter;

enum {
	KD_FWRITER_FSYNC = 1 << 0,     /* fsync the file before closing it */
	KD_FWRITER_WRITEBACK = 1 << 1, /* start its writeback (sync_file_range) before closing */
};

int kd_fwriter_new(kd_fwriter **ret, kd_error *err);
/* Queue len bytes for fd, written after everything queued before. name (kept until the file is
 * closed) names the file in an error. */
int kd_fwriter_write(kd_fwriter *w, int fd, const char *name, const void *buf, size_t len,
		     kd_error *err);
/* Without a copy: len bytes at buf, which stay valid until the writer calls give_back(userdata,
 * ticket) (from its thread, once they are written or dropped), as a tar reader lends its
 * blocks (kd_tar_lend_block). The chunk holding a lent block goes to the thread as soon as a
 * block with another ticket is lent or a file is closed, so only the newest loan can wait for
 * the caller. On failure the ticket is given back at once. */
void kd_fwriter_set_lender(kd_fwriter *w, void (*give_back)(void *userdata, int ticket),
			   void *userdata);
int kd_fwriter_write_lent(kd_fwriter *w, int fd, const char *name, const void *buf, size_t len,
			  int ticket, kd_error *err);
/* The file is complete: the thread closes fd after its bytes (flags: KD_FWRITER_*). fd belongs
 * to the writer from this call on, even when it fails. */
int kd_fwriter_close(kd_fwriter *w, int fd, const char *name, unsigned flags, kd_error *err);
/* Wait until everything queued is written and closed: the first failure, or 0. */
int kd_fwriter_finish(kd_fwriter *w, kd_error *err);
/* Stop the thread (what is not written yet is dropped, every descriptor closed) and free. */
void kd_fwriter_free(kd_fwriter *w);
static inline void kd_fwriter_freep(kd_fwriter **w)
{
	kd_fwriter_free(*w);
}
