/* Fuzz the manifest's link rule against the kernel: the input is a tree written one entry per
 * line ("d PATH", "f PATH", "l PATH TARGET"), turned into a manifest. Whatever the manifest
 * reader accepts is then made for real in a scratch directory, and every link is opened there
 * with openat2(RESOLVE_BENEATH): the kernel must never find a step that leaves the tree (EXDEV).
 * The reader may refuse more than the kernel would need (a missing component is walked as a
 * directory), never less. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/fsroot.h"
#include "lib/payload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LINES 64
#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char scratch[] = "/tmp/kd-fuzz-links-XXXXXX";

static void remove_scratch(void)
{
	rmdir(scratch);
}

/* A JSON string of s (bytes below 0x20 and above 0x7e as \u00XX: the reader then refuses
 * what is not UTF-8 on its own). */
static void put_json(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c > 0x7e)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static char *manifest_of(char *text)
{
	char *json = NULL, *save = NULL;
	size_t len = 0;
	int n = 0;
	FILE *f = open_memstream(&json, &len);

	if (!f)
		abort();
	fputs("{\"format\":1,\"version\":\"1\",\"arch\":\"x86_64\",\"shims\":{\"q\":[\"k\"]},"
	      "\"components\":[{\"name\":\"k\",\"version\":\"1\",\"files\":[",
	      f);
	for (char *line = strtok_r(text, "\n", &save); line && n < MAX_LINES;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strlen(line) < 3 || line[1] != ' ')
			continue;
		char *path = line + 2, *target = NULL;
		if (line[0] == 'l') {
			if (!(target = strchr(path, ' ')))
				continue;
			*target++ = '\0';
		}
		fputs(n++ ? ",{\"path\":" : "{\"path\":", f);
		put_json(f, path);
		switch (line[0]) {
		case 'd':
			fputs(",\"type\":\"dir\",\"mode\":\"0755\"}", f);
			break;
		case 'l':
			fputs(",\"type\":\"symlink\",\"mode\":\"0777\",\"target\":", f);
			put_json(f, target);
			fputs("}", f);
			break;
		default:
			fputs(",\"type\":\"file\",\"mode\":\"0644\",\"size\":0,\"sha256\":\"" SHA
			      "\"}",
			      f);
		}
	}
	fputs("]}]}", f);
	if (fclose(f) != 0)
		abort();
	return json;
}

/* The tree in dir "t" of the scratch directory; the manifest's order puts parents first. */
static void make_tree(int rootfd, const kd_manifest *m)
{
	if (mkdirat(rootfd, "t", 0755) < 0)
		abort();
	int tfd = openat(rootfd, "t", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tfd < 0)
		abort();
	for (size_t i = 0; i < m->n_files; i++) {
		const kd_pfile *e = &m->files[i];
		int r = 0;
		if (e->type == KD_FILE_DIR)
			r = mkdirat(tfd, e->path, 0755);
		else if (e->type == KD_FILE_SYMLINK)
			r = symlinkat(e->target, tfd, e->path);
		else {
			int fd = openat(tfd, e->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
					0644);
			r = fd < 0 ? -1 : close(fd);
		}
		if (r < 0)
			abort(); /* the reader let through what cannot be a tree */
	}
	for (size_t i = 0; i < m->n_files; i++) {
		if (m->files[i].type != KD_FILE_SYMLINK)
			continue;
		struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_BENEATH};
		int fd = (int)syscall(SYS_openat2, tfd, m->files[i].path, &how, sizeof(how));
		if (fd < 0 && errno == EXDEV) {
			fprintf(stderr, "link '%s' -> '%s' leaves the tree\n", m->files[i].path,
				m->files[i].target);
			abort();
		}
		if (fd >= 0)
			close(fd);
	}
	close(tfd);
	if (kd_remove_tree(rootfd, "t", NULL) < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int rootfd = -1;
	kd_error err = {0};
	kd_manifest *m = NULL;

	if (size > 16384)
		return 0;
	if (rootfd < 0) {
		if (!mkdtemp(scratch))
			abort();
		rootfd = kd_root_open(scratch, NULL);
		if (rootfd < 0)
			abort();
		atexit(remove_scratch);
	}
	char *text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	char *json = manifest_of(text);
	if (kd_manifest_parse(json, strlen(json), &m, &err) >= 0) {
		make_tree(rootfd, m);
		kd_manifest_free(m);
	}
	free(json);
	free(text);
	return 0;
}
