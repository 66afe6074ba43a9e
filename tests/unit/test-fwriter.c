/* lib/fwriter: bytes queued for many files land in each file in order, across chunk and segment
 * boundaries; descriptors are closed by the thread; a failed write is reported (naming the
 * file) and later files are still closed; freeing with bytes queued closes everything. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fwriter.h"
#include "tap.h"

static char dir[] = "/tmp/kd-fwriter-XXXXXX";

static int open_new(const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

static bool content_is(const char *name, const uint8_t *want, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	uint8_t *got = malloc(len + 1);
	size_t n = got ? fread(got, 1, len + 1, f) : 0;
	fclose(f);
	bool ok = got && n == len && memcmp(got, want, len) == 0;
	free(got);
	return ok;
}

static bool fd_closed(int fd)
{
	return fcntl(fd, F_GETFD) < 0 && errno == EBADF;
}

TEST(many_files)
{
	kd_fwriter *w = NULL;
	kd_error err = {0};
	enum { N = 300 };
	static uint8_t data[3 << 20];
	int fds[N];
	char names[N][16];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + i / 4096);
	CHECK_INT(kd_fwriter_new(&w, &err), 0);
	/* File i gets (i * 997) % 20000 bytes, plus 3 MiB for every 100th, in pieces of 1000
	 * bytes: more segments than a chunk holds, and files that span several chunks. */
	for (int i = 0; i < N; i++) {
		size_t len = (size_t)(i * 997) % 20000 + (i % 100 == 0 ? sizeof(data) - 20000 : 0);
		snprintf(names[i], sizeof(names[i]), "f%d", i);
		fds[i] = open_new(names[i]);
		CHECK(fds[i] >= 0);
		for (size_t off = 0; off < len; off += 1000) {
			size_t k = len - off < 1000 ? len - off : 1000;
			CHECK_INT(kd_fwriter_write(w, fds[i], names[i], data + off, k, &err), 0);
		}
		CHECK_INT(kd_fwriter_close(w, fds[i], names[i], i % 2 ? KD_FWRITER_WRITEBACK : 0,
					   &err),
			  0);
	}
	CHECK_INT(kd_fwriter_finish(w, &err), 0);
	for (int i = 0; i < N; i++) {
		size_t len = (size_t)(i * 997) % 20000 + (i % 100 == 0 ? sizeof(data) - 20000 : 0);
		CHECK(content_is(names[i], data, len));
	}
	/* Closed by the thread: the numbers are free (the next open reuses the lowest). */
	int probe = open_new("probe");
	CHECK(probe >= 0 && probe <= fds[0]);
	close(probe);
	/* After finish the writer takes more. */
	int fd = open_new("after");
	CHECK_INT(kd_fwriter_write(w, fd, "after", "xyz", 3, &err), 0);
	CHECK_INT(kd_fwriter_close(w, fd, "after", KD_FWRITER_FSYNC, &err), 0);
	CHECK_INT(kd_fwriter_finish(w, &err), 0);
	CHECK(content_is("after", (const uint8_t *)"xyz", 3));
	kd_fwriter_free(w);
}

TEST(failure)
{
	kd_fwriter *w = NULL;
	kd_error err = {0};
	uint8_t buf[4096] = {1};
	char path[256];

	CHECK_INT(kd_fwriter_new(&w, &err), 0);
	snprintf(path, sizeof(path), "%s/ro", dir);
	close(open(path, O_WRONLY | O_CREAT, 0644));
	int bad = open(path, O_RDONLY | O_CLOEXEC); /* write(2) fails: EBADF */
	int good = open_new("later");
	CHECK(bad >= 0 && good >= 0);
	CHECK_INT(kd_fwriter_write(w, bad, "ro", buf, sizeof(buf), &err), 0);
	CHECK_INT(kd_fwriter_close(w, bad, "ro", 0, &err), 0);
	CHECK_INT(kd_fwriter_write(w, good, "later", buf, sizeof(buf), &err), 0);
	CHECK_INT(kd_fwriter_close(w, good, "later", 0, &err), 0);
	CHECK_INT(kd_fwriter_finish(w, &err), -EBADF);
	CHECK(strstr(err.msg, "write 'ro'") != NULL);
	/* Nothing written after the failure, but every descriptor closed. */
	CHECK(content_is("later", buf, 0));
	CHECK(fd_closed(bad) && fd_closed(good));
	/* And the failure stays. */
	memset(&err, 0, sizeof(err));
	CHECK_INT(kd_fwriter_finish(w, &err), -EBADF);
	kd_fwriter_free(w);
}

TEST(free_with_bytes_queued)
{
	kd_fwriter *w = NULL;
	kd_error err = {0};
	uint8_t buf[1000] = {2};
	int fds[5];

	CHECK_INT(kd_fwriter_new(&w, &err), 0);
	for (int i = 0; i < 5; i++) {
		char name[8];
		snprintf(name, sizeof(name), "q%d", i);
		fds[i] = open_new(name);
		CHECK_INT(kd_fwriter_write(w, fds[i], "q", buf, sizeof(buf), &err), 0);
		CHECK_INT(kd_fwriter_close(w, fds[i], "q", 0, &err), 0);
	}
	kd_fwriter_free(w); /* an aborted extraction */
	for (int i = 0; i < 5; i++)
		CHECK(fd_closed(fds[i]));
}

static int returned[16];
static void give_back(void *userdata, int ticket)
{
	(void)userdata;
	if (ticket >= 0 && ticket < 16)
		returned[ticket]++;
}

/* Lent bytes are written in place, in order with copied ones, and every ticket comes back once,
 * also when the writer is freed with loans queued. */
TEST(lent)
{
	kd_fwriter *w = NULL;
	kd_error err = {0};
	static uint8_t blocks[8][100000];
	uint8_t want[8 * 100000 + 10];
	size_t n = 0;

	for (int i = 0; i < 8; i++)
		memset(blocks[i], 'a' + i, sizeof(blocks[i]));
	CHECK_INT(kd_fwriter_new(&w, &err), 0);
	kd_fwriter_set_lender(w, give_back, NULL);
	int fd = open_new("lent");
	for (int i = 0; i < 8; i++) {
		CHECK_INT(kd_fwriter_write(w, fd, "lent", "x", 1, &err), 0);
		want[n++] = 'x';
		CHECK_INT(
			kd_fwriter_write_lent(w, fd, "lent", blocks[i], sizeof(blocks[i]), i, &err),
			0);
		memcpy(want + n, blocks[i], sizeof(blocks[i]));
		n += sizeof(blocks[i]);
	}
	CHECK_INT(kd_fwriter_close(w, fd, "lent", 0, &err), 0);
	CHECK_INT(kd_fwriter_finish(w, &err), 0);
	CHECK(content_is("lent", want, n));
	bool once = true;
	for (int i = 0; i < 8; i++)
		once = once && returned[i] == 1;
	CHECK(once);
	/* Freed with loans queued (an aborted extraction): given back, fd closed. */
	fd = open_new("lent2");
	CHECK_INT(kd_fwriter_write_lent(w, fd, "lent2", blocks[0], 10, 9, &err), 0);
	CHECK_INT(kd_fwriter_write_lent(w, fd, "lent2", blocks[1], 10, 10, &err), 0);
	kd_fwriter_free(w);
	CHECK(returned[9] == 1 && returned[10] == 1);
	/* No close was queued: fd is still the caller's. */
	CHECK(!fd_closed(fd));
	close(fd);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	RUN(many_files);
	RUN(failure);
	RUN(free_with_bytes_queued);
	RUN(lent);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	TAP_END();
}
