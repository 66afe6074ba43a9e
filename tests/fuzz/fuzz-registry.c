/* Fuzz the reference parser of lib/registry: an accepted reference has a host, a repository and
 * a tag or a digest, and printing those back gives a reference that parses to the same parts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kd_error err = {0};
	kd_registry_ref r = {0}, r2 = {0};
	char *s = malloc(size + 1), *back = NULL;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (strlen(s) != size || kd_registry_ref_parse(s, &r, &err) < 0) {
		free(s);
		return 0;
	}
	if (!r.host || !r.repo || (!r.tag && !r.digest) || strchr(r.repo, ' ') ||
	    strchr(r.host, '/'))
		abort();
	if (asprintf(&back, "%s/%s%s%s%s%s", r.host, r.repo, r.tag ? ":" : "", r.tag ? r.tag : "",
		     r.digest ? "@" : "", r.digest ? r.digest : "") < 0)
		abort();
	if (kd_registry_ref_parse(back, &r2, &err) < 0 || strcmp(r.host, r2.host) != 0 ||
	    strcmp(r.repo, r2.repo) != 0 || (r.tag && (!r2.tag || strcmp(r.tag, r2.tag) != 0)) ||
	    (r.digest && (!r2.digest || strcmp(r.digest, r2.digest) != 0)))
		abort();
	kd_registry_ref_done(&r);
	kd_registry_ref_done(&r2);
	free(back);
	free(s);
	return 0;
}
