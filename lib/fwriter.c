/* Writing files on a thread (fwriter.h). The caller fills one chunk (a buffer and the segments
 * that say which bytes go to which descriptor) while the thread writes the chunks handed to it,
 * oldest first: a ring of NCHUNK. */
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "fsroot.h"
#include "fwriter.h"
#include "macro.h"

#define CHUNK (64u << 10) /* small pieces only: large ones are lent, not copied */
#define NCHUNK 3u	  /* lib/tar-native.c: NBLOCKS counts on at most this many lent blocks */
#define NSEG 64u
/* A file's writeback is started every KICK bytes as they are written (and for the rest at its
 * close with KD_FWRITER_WRITEBACK): one call at the close of a 40 MiB file kept this thread
 * submitting for milliseconds while the blocks it held were not given back. */
#define KICK (8ull << 20)

typedef struct segment {
	int fd;
	const char *name;
	size_t off, len;
	const uint8_t *lent; /* the bytes are there, not at buf + off (kd_fwriter_write_lent) */
	int ticket;	     /* of lent, given back once written */
	bool close;
	unsigned flags;
} segment;

typedef struct chunk {
	uint8_t *buf;
	size_t used;
	unsigned nseg;
	int lent_ticket; /* a segment of the chunk is lent under it; -1 if none */
	segment seg[NSEG];
} chunk;

struct kd_fwriter {
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	chunk ring[NCHUNK];
	unsigned head, count; /* [head, head + count) are the thread's (under mu) */
	unsigned fill;	      /* the caller's chunk, head + count (only the caller changes it) */
	bool stop, discard;
	/* the thread's: the file being written, its bytes written and those whose writeback
	 * was started */
	int cur_fd;
	uint64_t cur_written, cur_kicked;
	void (*give_back)(void *userdata, int ticket);
	void *lender;
	/* the first failure */
	int err;
	char name[256];
	const char *what;
};

/* Thread side: one chunk. Descriptors are closed whatever happens. */
static void run_chunk(kd_fwriter *w, chunk *c, bool skip)
{
	for (unsigned i = 0; i < c->nseg; i++) {
		segment *s = &c->seg[i];
		int r = 0;
		const char *what = "write";
		if (s->fd != w->cur_fd) {
			w->cur_fd = s->fd;
			w->cur_written = w->cur_kicked = 0;
		}
		if (!skip && s->len > 0)
			r = kd_write_all(s->fd, s->lent ? s->lent : c->buf + s->off, s->len);
		if (s->lent)
			w->give_back(w->lender, s->ticket);
		w->cur_written += s->len;
		if (!skip && r == 0 && w->cur_written - w->cur_kicked >= KICK) {
			sync_file_range(s->fd, (off64_t)w->cur_kicked,
					(off64_t)(w->cur_written - w->cur_kicked),
					SYNC_FILE_RANGE_WRITE);
			w->cur_kicked = w->cur_written;
		}
		if (!skip && r == 0 && s->close && (s->flags & KD_FWRITER_FSYNC) &&
		    fsync(s->fd) < 0) {
			r = negative_errno();
			what = "fsync";
		}
		if (!skip && r == 0 && s->close && (s->flags & KD_FWRITER_WRITEBACK))
			sync_file_range(s->fd, (off64_t)w->cur_kicked, 0, SYNC_FILE_RANGE_WRITE);
		if (s->close) {
			close(s->fd);
			w->cur_fd = -1;
		}
		if (r < 0) {
			pthread_mutex_lock(&w->mu);
			if (!w->err) {
				w->err = r;
				w->what = what;
				snprintf(w->name, sizeof(w->name), "%s", s->name ? s->name : "?");
			}
			pthread_mutex_unlock(&w->mu);
			skip = true;
		}
	}
	c->used = 0;
	c->nseg = 0;
	c->lent_ticket = -1;
}

static void *thread_main(void *userdata)
{
	kd_fwriter *w = userdata;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->count == 0 && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->count == 0)
			break;
		chunk *c = &w->ring[w->head];
		bool skip = w->err != 0 || w->discard;
		pthread_mutex_unlock(&w->mu);
		run_chunk(w, c, skip);
		pthread_mutex_lock(&w->mu);
		w->head = (w->head + 1) % NCHUNK;
		w->count--;
		pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static int failure(kd_fwriter *w, kd_error *err)
{
	return kd_err(err, w->err, "%s '%s': %s", w->what, w->name, strerror(-w->err));
}

int kd_fwriter_new(kd_fwriter **ret, kd_error *err)
{
	kd_fwriter *w = calloc(1, sizeof(*w));
	if (!w)
		return kd_err(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->cur_fd = -1;
	for (unsigned i = 0; i < NCHUNK; i++)
		w->ring[i].lent_ticket = -1;
	for (unsigned i = 0; i < NCHUNK; i++)
		if (!(w->ring[i].buf = malloc(CHUNK))) {
			kd_fwriter_free(w);
			return kd_err(err, -ENOMEM, "out of memory");
		}
	int rc = pthread_create(&w->thread, NULL, thread_main, w);
	if (rc != 0) {
		kd_fwriter_free(w);
		return kd_err(err, -rc, "cannot start the writer thread");
	}
	w->started = true;
	*ret = w;
	return 0;
}

/* The chunk being filled goes to the thread; wait for the next one to be free. */
static int submit(kd_fwriter *w, kd_error *err)
{
	pthread_mutex_lock(&w->mu);
	w->count++;
	w->fill = (w->fill + 1) % NCHUNK;
	pthread_cond_broadcast(&w->cv);
	while (w->count == NCHUNK)
		pthread_cond_wait(&w->cv, &w->mu);
	int e = w->err;
	pthread_mutex_unlock(&w->mu);
	return e ? failure(w, err) : 0;
}

static chunk *filling(kd_fwriter *w)
{
	/* Not head + count: the thread changes both, and reading them without the lock could
	 * see one changed and not the other. */
	return &w->ring[w->fill];
}

/* A segment for fd in the chunk being filled, the last one if it is fd's and ends at used. */
static segment *segment_for(kd_fwriter *w, int fd, const char *name, kd_error *err, int *r)
{
	chunk *c = filling(w);
	if (c->nseg > 0) {
		segment *s = &c->seg[c->nseg - 1];
		if (s->fd == fd && !s->close && !s->lent && s->off + s->len == c->used)
			return s;
	}
	if (c->nseg == NSEG) {
		if ((*r = submit(w, err)) < 0)
			return NULL;
		c = filling(w);
	}
	segment *s = &c->seg[c->nseg++];
	*s = (segment){.fd = fd, .name = name, .off = c->used};
	return s;
}

int kd_fwriter_write(kd_fwriter *w, int fd, const char *name, const void *buf, size_t len,
		     kd_error *err)
{
	const uint8_t *p = buf;
	int r = 0;
	while (len > 0) {
		chunk *c = filling(w);
		if (c->used == CHUNK) {
			if ((r = submit(w, err)) < 0)
				return r;
			continue;
		}
		segment *s = segment_for(w, fd, name, err, &r);
		if (!s)
			return r;
		c = filling(w);
		size_t k = CHUNK - c->used < len ? CHUNK - c->used : len;
		memcpy(c->buf + c->used, p, k);
		c->used += k;
		s->len += k;
		p += k;
		len -= k;
	}
	return 0;
}

int kd_fwriter_close(kd_fwriter *w, int fd, const char *name, unsigned flags, kd_error *err)
{
	chunk *c = filling(w);
	int r = 0;
	if (c->nseg == NSEG && (r = submit(w, err)) < 0) {
		/* the thread took the full chunk; this one is free and takes the close */
		c = filling(w);
		c->seg[c->nseg++] =
			(segment){.fd = fd, .name = name, .off = c->used, .close = true};
		return r;
	}
	c = filling(w);
	segment *last = c->nseg > 0 ? &c->seg[c->nseg - 1] : NULL;
	if (last && last->fd == fd && !last->close &&
	    (last->lent || last->off + last->len == c->used)) {
		last->close = true;
		last->flags = flags;
	} else {
		c->seg[c->nseg++] = (segment){
			.fd = fd, .name = name, .off = c->used, .close = true, .flags = flags};
	}
	/* A lent block waits in this chunk: hand it over now, the reader may need it back
	 * before this thread writes anything more (see kd_fwriter_write_lent). */
	return c->lent_ticket >= 0 ? submit(w, err) : 0;
}

void kd_fwriter_set_lender(kd_fwriter *w, void (*give_back)(void *userdata, int ticket),
			   void *userdata)
{
	w->give_back = give_back;
	w->lender = userdata;
}

int kd_fwriter_write_lent(kd_fwriter *w, int fd, const char *name, const void *buf, size_t len,
			  int ticket, kd_error *err)
{
	chunk *c = filling(w);
	int r = 0;
	/* Only the newest lent block may wait in the chunk being filled: a block lent before it
	 * goes to the thread first, so that the reader (which waits for its blocks once all are
	 * lent) never waits for a block this thread has not handed over. */
	if ((c->lent_ticket >= 0 && c->lent_ticket != ticket) || c->nseg == NSEG)
		r = submit(w, err);
	if (r < 0) {
		w->give_back(w->lender, ticket);
		return r;
	}
	c = filling(w);
	c->seg[c->nseg++] = (segment){
		.fd = fd, .name = name, .off = c->used, .len = len, .lent = buf, .ticket = ticket};
	c->lent_ticket = ticket;
	return 0;
}

int kd_fwriter_finish(kd_fwriter *w, kd_error *err)
{
	chunk *c = filling(w);
	if (c->nseg > 0) {
		pthread_mutex_lock(&w->mu);
		w->count++;
		w->fill = (w->fill + 1) % NCHUNK;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->mu);
	}
	pthread_mutex_lock(&w->mu);
	while (w->count > 0)
		pthread_cond_wait(&w->cv, &w->mu);
	int e = w->err;
	pthread_mutex_unlock(&w->mu);
	return e ? failure(w, err) : 0;
}

void kd_fwriter_free(kd_fwriter *w)
{
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->mu);
		/* What the caller filled but did not hand over is the thread's too: its
		 * descriptors are closed, nothing is written. */
		if (w->count < NCHUNK && filling(w)->nseg > 0) {
			w->count++;
			w->fill = (w->fill + 1) % NCHUNK;
		}
		w->discard = true;
		w->stop = true;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->thread, NULL);
	}
	for (unsigned i = 0; i < NCHUNK; i++)
		free(w->ring[i].buf);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}
