/* kata-build: reproducible artifact builder (docs/RECIPES.md). One function per verb; options
 * are parsed here, every effective setting is printed at start-up, and an error is printed
 * once, here. */
#include <dirent.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "log.h"
#include "merge.h"
#include "oci.h"
#include "push.h"
#include "strv.h"
#include "verify.h"

#define DEFAULT_ARTIFACTS "artifacts"
#ifndef KD_VERSION
#define KD_VERSION "0.1.0"
#endif
#define DEFAULT_OUT "build/kata-static"
#define DEFAULT_AGENT "build/kata-deploy-agent"
#define FALLBACK_AGENT "build/kata-deploy"
#define DEFAULT_CA_BUNDLE "/" KD_OCI_CA_BUNDLE
#define REGISTRY_ENV "KATA_BUILD_REGISTRY"

typedef struct cli {
	const char *artifacts, *cache_dir, *out;
	const char *output, *sign_key, *sign_pubkey;
	const char *payload, *agent, *layout, *tag, *registry, *mount_from, *ca_file;
	const char *pr, *sha, *keep, *mirror, *waiter, *ca_bundle;
	bool verbose, quiet, force, plain_http, no_libs, no_push, with_payload, no_payload;
	int jobs;
	char **names;
	kd_cache *cache;
	kd_versions *versions;
	kd_shims *shims;
	kd_build_opts bo;
} cli;

static void usage(FILE *f)
{
	fputs("Usage: kata-build [OPTIONS] VERB [ARGS]\n"
	      "verbs:\n"
	      "  fetch [COMPONENT...]        fetch sources into the cache, verified\n"
	      "  component COMPONENT...      build (or take from the cache) component tarballs\n"
	      "  payload [COMPONENT...]      build components, merge them into the payload\n"
	      "  image --payload P           OCI layout of the node agent + payload\n"
	      "  push --layout D --registry HOST/REPO --tag T\n"
	      "  ci --pr N --sha SHA         components, payload, image, push <pr>-<sha>-<arch>\n"
	      "  verify [COMPONENT...]       rebuild with a clean cache, compare bit for bit\n"
	      "options:\n"
	      "  --artifacts DIR   recipes, versions.yaml, shims.yaml (default artifacts)\n"
	      "  --cache DIR       cache (default $KD_BUILD_CACHE or ~/.cache/kata-build)\n"
	      "  --out DIR         component tarballs and payload (default build/kata-static)\n"
	      "  --jobs N          KB_JOBS for build steps (default: CPUs)\n"
	      "  --force           rebuild even when cached\n"
	      "  --mirror DIR      source files by name, tried before the network (verified\n"
	      "                    as downloads are; default $KATA_BUILD_MIRROR)\n"
	      "  --output FILE     payload: file (default OUT/payload.tar.zst)\n"
	      "  --sign-key PEM --sign-pubkey PEM   payload: sign it\n"
	      "  --payload FILE    image, verify: the payload\n"
	      "  --agent BIN       image: node agent (default build/kata-deploy-agent)\n"
	      "  --layout DIR      image, push: OCI layout (default OUT/image)\n"
	      "  --tag T           image, push: tag\n"
	      "  --no-libs         image: do not bundle the agent's shared libraries\n"
	      "  --waiter BIN      image: the agent's idle waiter (default AGENT-wait;\n"
	      "                    'none': without it)\n"
	      "  --ca-bundle PEM   image: CA certificates for TLS downloads (default\n"
	      "                    " DEFAULT_CA_BUNDLE "; 'none': without)\n"
	      "  --registry HOST/REPO  push, ci (ci default $KATA_BUILD_REGISTRY)\n"
	      "  --plain-http      push over http (loopback registries)\n"
	      "  --mount-from REPO push: mount blobs from this repository\n"
	      "  --ca FILE         push: CA bundle\n"
	      "  --no-push         ci: stop after the image\n"
	      "  --keep DIR        verify: keep the rebuild in DIR\n"
	      "  -v, --verbose     debug logging\n"
	      "  -q, --quiet       warnings and errors only, no download progress\n"
	      "  -h, --help        this help; VERB --help: that verb's\n"
	      "  --version         print the version\n"
	      "Exit status: 0 success, 1 failure (the error is printed once), 2 usage error.\n",
	      f);
}

/* `kata-build VERB --help`: the verb's usage on stdout. */
static const struct verb_help {
	const char *name, *text;
} verb_help[] = {
	{"fetch", "Usage: kata-build fetch [COMPONENT...] [--mirror DIR] [--cache DIR]\n"
		  "Fetch the sources of the components (default: every component a shim uses,\n"
		  "and the debug tools)\n"
		  "into the content-addressed cache, each verified by sha256 or git tree id.\n"},
	{"component", "Usage: kata-build component COMPONENT... [--force] [--jobs N] [--out DIR]\n"
		      "Build each component (or take it from the cache by the hash of its\n"
		      "inputs) into OUT/kata-static-COMPONENT.tar.zst. Each build logs to\n"
		      "CACHE/work/COMPONENT/build.log. Prints 'NAME SHA256 built|cached SECONDS\n"
		      "key=KEY' per component.\n"},
	{"payload", "Usage: kata-build payload [COMPONENT...] [--output FILE]\n"
		    "                          [--sign-key PEM --sign-pubkey PEM]\n"
		    "Build the components (default: every component a shim uses, and the debug\n"
		    "tools of shims.yaml), then merge them into the payload (default\n"
		    "OUT/payload.tar.zst), optionally signed.\n"},
	{"image", "Usage: kata-build image --payload FILE|--no-payload --tag T [--agent BIN]\n"
		  "                        [--waiter BIN] [--layout DIR] [--no-libs]\n"
		  "                        [--ca-bundle PEM]\n"
		  "Write the OCI image layout of the node agent with the payload (--no-payload:\n"
		  "without; the agent then pulls its payload from PAYLOAD, e.g. oci://...).\n"},
	{"push",
	 "Usage: kata-build push --layout DIR --registry HOST/REPO --tag T\n"
	 "                       [--plain-http] [--mount-from REPO] [--ca FILE]\n"
	 "       kata-build push --payload FILE --registry HOST/REPO --tag T\n"
	 "                       [--sign-key PEM] [--layout DIR] [--plain-http] [--ca FILE]\n"
	 "Push an OCI layout to a registry through the distribution API. With --payload:\n"
	 "the payload (format 2) as an artifact with one layer per component (layout\n"
	 "default OUT/payload-oci), so that a node pulls only its shims' components\n"
	 "(kata-deploy install --payload oci://HOST/REPO:T); --sign-key also pushes the\n"
	 "signature of its manifest under the tag sha256-<hex>.sig.\n"},
	{"ci", "Usage: kata-build ci --pr N --sha SHA [--registry HOST/REPO] [--no-push]\n"
	       "Components, payload, image, push, tagged <pr>-<sha>-<arch>.\n"},
	{"verify", "Usage: kata-build verify [COMPONENT...] [--payload FILE] [--keep DIR]\n"
		   "Rebuild with a clean cache and compare bit for bit; names the first differing\n"
		   "tar entry.\n"},
};

static int print_verb_help(const char *verb)
{
	for (size_t i = 0; i < ELEMENTSOF(verb_help); i++)
		if (!strcmp(verb_help[i].name, verb)) {
			printf("%s\nEvery option: kata-build --help.\n", verb_help[i].text);
			return 0;
		}
	fprintf(stderr, "kata-build: unknown verb '%s'\nTry 'kata-build --help'.\n", verb);
	return 2;
}

static int bad_option(char **argv)
{
	if (optopt > ' ' && optopt < 127 && optopt != '?')
		fprintf(stderr, "kata-build: unknown option or missing value: '-%c'\n", optopt);
	else
		fprintf(stderr, "kata-build: unknown option or missing value: '%s'\n",
			argv[optind - 1]);
	fprintf(stderr, "Try 'kata-build --help'.\n");
	return 2;
}

/* Recipes that no shim uses are not built by default; say which and why (an unpinned upstream
 * sha256 makes a recipe unparseable until someone pins it). */
static void report_unused_recipes(const cli *c)
{
	_cleanup_free_ char *dir = NULL;
	struct dirent **ents = NULL;
	int n;

	if (asprintf(&dir, "%s/recipes", c->artifacts) < 0 ||
	    (n = scandir(dir, &ents, NULL, alphasort)) < 0)
		return;
	for (int i = 0; i < n; i++) {
		const char *f = ents[i]->d_name;
		size_t len = strlen(f);
		_cleanup_free_ char *name = NULL, *path = NULL;
		if (len > 5 && strcmp(f + len - 5, ".yaml") == 0 && (name = strndup(f, len - 5)) &&
		    !kd_strv_find(c->shims->payload, name) &&
		    asprintf(&path, "%s/%s", dir, f) >= 0) {
			kd_recipe *r = NULL;
			kd_error e = {0};
			if (kd_recipe_load(path, c->versions, &r, &e) < 0)
				kd_info("recipe %s: not in shims.yaml, skipped: %s", name,
					kd_err_msg(&e));
			else
				kd_info("recipe %s: not in shims.yaml, built only when named",
					name);
			kd_recipe_free(r);
			kd_err_clear(&e);
		}
		free(ents[i]);
	}
	free(ents);
}

static int load_common(cli *c, kd_error *err)
{
	_cleanup_free_ char *vpath = NULL, *spath = NULL;
	int r;
	if (asprintf(&vpath, "%s/versions.yaml", c->artifacts) < 0 ||
	    asprintf(&spath, "%s/shims.yaml", c->artifacts) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = kd_versions_load(vpath, &c->versions, err)) < 0 ||
	    (r = kd_shims_load(spath, &c->shims, err)) < 0 ||
	    (r = kd_cache_open(c->cache_dir, &c->cache, err)) < 0)
		return r;
	c->bo = (kd_build_opts){.artifacts_dir = c->artifacts,
				.out_dir = c->out,
				.cache = c->cache,
				.versions = c->versions,
				.jobs = c->jobs,
				.verbose = c->verbose,
				.force = c->force,
				.progress = !c->quiet,
				.mirror = c->mirror};
	kd_info("artifacts %s, cache %s, out %s, mirror %s, SOURCE_DATE_EPOCH %lld, version %s, "
		"builder %s",
		c->artifacts, kd_cache_dir(c->cache), c->out, c->mirror ? c->mirror : "none",
		(long long)c->versions->source_date_epoch, c->versions->version,
		KD_BUILDER_VERSION);
	report_unused_recipes(c);
	return 0;
}

static char **component_list(cli *c)
{
	return c->names && c->names[0] ? c->names : c->shims->payload;
}

static int cmd_fetch(cli *c, kd_error *err)
{
	for (char **n = component_list(c); *n; n++) {
		int r = kd_component_fetch(&c->bo, *n, err);
		if (r < 0)
			return r;
		printf("%s fetched\n", *n);
	}
	return 0;
}

static int cmd_component(cli *c, kd_error *err)
{
	if (!c->names || !c->names[0])
		return kd_err(err, -EINVAL, "component: name at least one component");
	for (char **n = c->names; *n; n++) {
		kd_build_result br;
		/* A kernel takes many minutes: say what starts and where its log goes. */
		kd_info("component %s: building, unless cached (log %s/work/%s/build.log)", *n,
			kd_cache_dir(c->cache), *n);
		int r = kd_component_build(&c->bo, *n, &br, err);
		if (r < 0)
			return r;
		printf("%s %s %s %.3fs key=%s\n", *n, br.sha256, br.cached ? "cached" : "built",
		       br.seconds, br.key);
		fflush(stdout);
	}
	return 0;
}

static char *default_payload(cli *c)
{
	char *p;
	if (c->output)
		return strdup(c->output);
	return asprintf(&p, "%s/payload.tar.zst", c->out) < 0 ? NULL : p;
}

static int cmd_payload(cli *c, kd_error *err)
{
	_cleanup_free_ char *out = default_payload(c);
	char sha[65];
	if (!out)
		return kd_err(err, -ENOMEM, "out of memory");
	kd_payload_build_opts po = {.output = out,
				    .sign_key = c->sign_key,
				    .sign_pubkey = c->sign_pubkey,
				    .components = c->names && c->names[0] ? c->names : NULL};
	int r = kd_build_payload(&c->bo, c->shims, &po, sha, err);
	if (r < 0)
		return r;
	printf("payload %s %s\n", out, sha);
	return 0;
}

static const char *pick_agent(cli *c)
{
	if (c->agent)
		return c->agent;
	if (access(DEFAULT_AGENT, X_OK) == 0)
		return DEFAULT_AGENT;
	kd_warn("%s is not built: using %s as the image's agent binary", DEFAULT_AGENT,
		FALLBACK_AGENT);
	return FALLBACK_AGENT;
}

/* --waiter / --ca-bundle: the value, NULL for "none"; without the option the default when it
 * exists (a warning otherwise: the image still works, less well). */
static const char *pick_optional(const char *opt, const char *dflt, const char *what)
{
	if (opt)
		return strcmp(opt, "none") == 0 ? NULL : opt;
	if (access(dflt, R_OK) == 0)
		return dflt;
	kd_warn("image: no %s at %s: the image goes without it", what, dflt);
	return NULL;
}

static int do_image(cli *c, const char *payload, const char *layout, const char *tag,
		    char digest[KD_OCI_DIGEST_MAX], kd_error *err)
{
	_cleanup_free_ char *waiter = NULL;
	const char *agent = pick_agent(c);
	if (asprintf(&waiter, "%s-wait", agent) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	kd_oci_opts oo = {.layout = layout,
			  .agent = agent,
			  .waiter =
				  pick_optional(c->waiter, waiter,
						"waiter (the agent idles as itself, ~10 MiB more)"),
			  .ca_bundle = pick_optional(c->ca_bundle, DEFAULT_CA_BUNDLE,
						     "CA bundle (https downloads will fail)"),
			  .payload = payload,
			  .tag = tag,
			  .version = c->versions->version,
			  .created = c->versions->source_date_epoch,
			  .bundle_libs = !c->no_libs};
	kd_info("image: agent %s, waiter %s, CA bundle %s, payload %s, layout %s, tag %s", oo.agent,
		oo.waiter ? oo.waiter : "none", oo.ca_bundle ? oo.ca_bundle : "none",
		payload ? payload : "none", layout, tag);
	return kd_oci_build(&oo, digest, err);
}

static char *default_layout(cli *c)
{
	char *p;
	if (c->layout)
		return strdup(c->layout);
	return asprintf(&p, "%s/image", c->out) < 0 ? NULL : p;
}

static int cmd_image(cli *c, kd_error *err)
{
	_cleanup_free_ char *layout = default_layout(c), *payload = default_payload(c);
	char digest[KD_OCI_DIGEST_MAX];
	if (!layout || !payload)
		return kd_err(err, -ENOMEM, "out of memory");
	if (c->no_payload && c->payload)
		return kd_err(err, -EINVAL, "image: --payload and --no-payload exclude each other");
	int r = do_image(c,
			 c->no_payload ? NULL
			 : c->payload  ? c->payload
				       : payload,
			 layout, c->tag ? c->tag : c->versions->version, digest, err);
	if (r < 0)
		return r;
	printf("image %s %s\n", layout, digest);
	return 0;
}

static int do_push(cli *c, const char *layout, const char *tag, char digest[KD_OCI_DIGEST_MAX],
		   kd_error *err)
{
	kd_push_stats st;
	kd_push_opts po = {.layout = layout,
			   .target = c->registry,
			   .tag = tag,
			   .plain_http = c->plain_http,
			   .mount_from = c->mount_from,
			   .ca_file = c->ca_file};
	kd_info("push: %s to %s:%s over %s", layout, c->registry, tag,
		c->plain_http ? "http" : "https");
	int r = kd_registry_push(&po, digest, &st, err);
	if (r < 0)
		return r;
	printf("pushed %s:%s %s (blobs: %u uploaded, %u present, %u mounted)\n", c->registry, tag,
	       digest, st.blobs_uploaded, st.blobs_present, st.blobs_mounted);
	return 0;
}

/* push --payload: the payload as an artifact, and its signature. */
static int push_payload(cli *c, kd_error *err)
{
	_cleanup_free_ char *layout = NULL, *siglayout = NULL, *sigtag = NULL;
	char digest[KD_OCI_DIGEST_MAX], pushed[KD_OCI_DIGEST_MAX];
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	int r;

	if (c->layout ? !(layout = strdup(c->layout))
		      : asprintf(&layout, "%s/payload-oci", c->out) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	kd_oci_payload_opts po = {.layout = layout,
				  .payload = c->payload,
				  .tag = c->tag,
				  .created = sde ? strtoll(sde, NULL, 10) : 0};
	if ((r = kd_oci_build_payload(&po, digest, err)) < 0)
		return r;
	printf("payload artifact %s %s\n", layout, digest);
	if ((r = do_push(c, layout, c->tag, pushed, err)) < 0)
		return r;
	if (!c->sign_key)
		return 0;
	if (asprintf(&siglayout, "%s.sig", layout) < 0 ||
	    asprintf(&sigtag, "sha256-%s.sig", digest + 7) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = kd_oci_build_signature(siglayout, digest, c->sign_key, sigtag, err)) < 0)
		return r;
	return do_push(c, siglayout, sigtag, pushed, err);
}

static int cmd_push(cli *c, kd_error *err)
{
	_cleanup_free_ char *layout = default_layout(c);
	if (!c->registry || !c->tag)
		return kd_err(err, -EINVAL, "push: --registry and --tag are required");
	if (!layout)
		return kd_err(err, -ENOMEM, "out of memory");
	if (!c->payload) {
		char digest[KD_OCI_DIGEST_MAX];
		return do_push(c, layout, c->tag, digest, err);
	}
	return push_payload(c, err);
}

static bool tag_part_ok(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_'))
			return false;
	return true;
}

static int cmd_ci(cli *c, kd_error *err)
{
	_cleanup_free_ char *tag = NULL, *layout = default_layout(c), *payload = default_payload(c);
	char sha[65], digest[KD_OCI_DIGEST_MAX];
	int r;
	if (!c->pr || !c->sha)
		return kd_err(err, -EINVAL, "ci: --pr and --sha are required");
	if (!tag_part_ok(c->pr) || !tag_part_ok(c->sha))
		return kd_err(err, -EINVAL, "ci: --pr and --sha must be [A-Za-z0-9._], 1-64 chars");
	if (!c->registry)
		c->registry = getenv(REGISTRY_ENV);
	if (!c->registry && !c->no_push)
		return kd_err(err, -EINVAL, "ci: no --registry and no $%s", REGISTRY_ENV);
	if (!layout || !payload || asprintf(&tag, "%s-%s-%s", c->pr, c->sha, kd_oci_arch()) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	kd_payload_build_opts po = {
		.output = payload, .sign_key = c->sign_key, .sign_pubkey = c->sign_pubkey};
	if ((r = kd_build_payload(&c->bo, c->shims, &po, sha, err)) < 0)
		return r;
	printf("payload %s %s\n", payload, sha);
	if ((r = do_image(c, payload, layout, tag, digest, err)) < 0)
		return r;
	printf("image %s %s tag %s\n", layout, digest, tag);
	return c->no_push ? 0 : do_push(c, layout, tag, digest, err);
}

static int cmd_verify(cli *c, kd_error *err)
{
	kd_verify_report rep = {0};
	_cleanup_free_ char *payload = c->with_payload ? default_payload(c) : NULL;
	int r = kd_verify(&c->bo, c->shims, c->names && c->names[0] ? c->names : NULL,
			  c->payload ? c->payload : payload, c->keep, &rep, err);
	if (r < 0)
		return r;
	printf("verify: %u outputs identical\n", rep.compared);
	return 0;
}

enum {
	O_ARTIFACTS = 256,
	O_CACHE,
	O_OUT,
	O_JOBS,
	O_FORCE,
	O_OUTPUT,
	O_SIGN_KEY,
	O_SIGN_PUB,
	O_PAYLOAD,
	O_AGENT,
	O_LAYOUT,
	O_TAG,
	O_NO_LIBS,
	O_REGISTRY,
	O_PLAIN,
	O_MOUNT,
	O_CA,
	O_PR,
	O_SHA,
	O_NO_PUSH,
	O_KEEP,
	O_MIRROR,
	O_VERSION,
	O_WITH_PAYLOAD,
	O_WAITER,
	O_CA_BUNDLE,
	O_NO_PAYLOAD,
};

/* Apply one option; false for an unknown one. */
static bool apply_opt(cli *c, int o, const char *arg)
{
	switch (o) {
	case O_ARTIFACTS:
		c->artifacts = arg;
		break;
	case O_CACHE:
		c->cache_dir = arg;
		break;
	case O_OUT:
		c->out = arg;
		break;
	case O_JOBS:
		c->jobs = atoi(arg);
		break;
	case O_FORCE:
		c->force = true;
		break;
	case O_OUTPUT:
		c->output = arg;
		break;
	case O_SIGN_KEY:
		c->sign_key = arg;
		break;
	case O_SIGN_PUB:
		c->sign_pubkey = arg;
		break;
	case O_PAYLOAD:
		c->payload = arg;
		break;
	case O_WITH_PAYLOAD:
		c->with_payload = true;
		break;
	case O_NO_PAYLOAD:
		c->no_payload = true;
		break;
	case O_AGENT:
		c->agent = arg;
		break;
	case O_LAYOUT:
		c->layout = arg;
		break;
	case O_TAG:
		c->tag = arg;
		break;
	case O_NO_LIBS:
		c->no_libs = true;
		break;
	case O_WAITER:
		c->waiter = arg;
		break;
	case O_CA_BUNDLE:
		c->ca_bundle = arg;
		break;
	case O_REGISTRY:
		c->registry = arg;
		break;
	case O_PLAIN:
		c->plain_http = true;
		break;
	case O_MOUNT:
		c->mount_from = arg;
		break;
	case O_CA:
		c->ca_file = arg;
		break;
	case O_PR:
		c->pr = arg;
		break;
	case O_SHA:
		c->sha = arg;
		break;
	case O_NO_PUSH:
		c->no_push = true;
		break;
	case O_KEEP:
		c->keep = arg;
		break;
	case O_MIRROR:
		c->mirror = arg;
		break;
	case 'v':
		c->verbose = true;
		break;
	case 'q':
		c->quiet = true;
		break;
	default:
		return false;
	}
	return true;
}

static int print_version(void)
{
	printf("kata-build %s (builder format %s)\n", KD_VERSION, KD_BUILDER_VERSION);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"artifacts", required_argument, NULL, O_ARTIFACTS},
		{"cache", required_argument, NULL, O_CACHE},
		{"out", required_argument, NULL, O_OUT},
		{"jobs", required_argument, NULL, O_JOBS},
		{"force", no_argument, NULL, O_FORCE},
		{"output", required_argument, NULL, O_OUTPUT},
		{"sign-key", required_argument, NULL, O_SIGN_KEY},
		{"sign-pubkey", required_argument, NULL, O_SIGN_PUB},
		{"payload", required_argument, NULL, O_PAYLOAD},
		{"with-payload", no_argument, NULL, O_WITH_PAYLOAD},
		{"no-payload", no_argument, NULL, O_NO_PAYLOAD},
		{"agent", required_argument, NULL, O_AGENT},
		{"layout", required_argument, NULL, O_LAYOUT},
		{"tag", required_argument, NULL, O_TAG},
		{"no-libs", no_argument, NULL, O_NO_LIBS},
		{"waiter", required_argument, NULL, O_WAITER},
		{"ca-bundle", required_argument, NULL, O_CA_BUNDLE},
		{"registry", required_argument, NULL, O_REGISTRY},
		{"plain-http", no_argument, NULL, O_PLAIN},
		{"mount-from", required_argument, NULL, O_MOUNT},
		{"ca", required_argument, NULL, O_CA},
		{"pr", required_argument, NULL, O_PR},
		{"sha", required_argument, NULL, O_SHA},
		{"no-push", no_argument, NULL, O_NO_PUSH},
		{"keep", required_argument, NULL, O_KEEP},
		{"mirror", required_argument, NULL, O_MIRROR},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, O_VERSION},
		{0},
	};
	cli c = {.artifacts = DEFAULT_ARTIFACTS,
		 .out = DEFAULT_OUT,
		 .mirror = getenv("KATA_BUILD_MIRROR")};
	kd_error err = {0};
	int o, r;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "+vqh", opts, NULL)) >= 0) {
		if (o == 'h') {
			usage(stdout);
			return 0;
		}
		if (o == O_VERSION)
			return print_version();
		if (!apply_opt(&c, o, optarg))
			return bad_option(argv);
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *verb = argv[optind++];
	/* Options may also follow the verb: parse the rest the same way. */
	while (optind < argc) {
		if (argv[optind][0] != '-') {
			if (kd_strv_push(&c.names, argv[optind++]) < 0)
				return 1;
			continue;
		}
		o = getopt_long(argc, argv, "+vqh", opts, NULL);
		if (o < 0)
			break;
		if (o == 'h') {
			kd_strv_free(c.names);
			return print_verb_help(verb);
		}
		if (o == O_VERSION)
			return print_version();
		if (!apply_opt(&c, o, optarg))
			return bad_option(argv);
	}
	kd_log_setup("kata-build",
		     c.verbose ? KD_LOG_DEBUG
		     : c.quiet ? KD_LOG_WARNING
			       : KD_LOG_INFO,
		     false);

	static const struct {
		const char *name;
		int (*fn)(cli *, kd_error *);
	} verbs[] = {
		{"fetch", cmd_fetch},	{"component", cmd_component}, {"payload", cmd_payload},
		{"image", cmd_image},	{"push", cmd_push},	      {"ci", cmd_ci},
		{"verify", cmd_verify},
	};
	int (*fn)(cli *, kd_error *) = NULL;
	for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
		if (strcmp(verbs[i].name, verb) == 0)
			fn = verbs[i].fn;
	if (!fn) {
		fprintf(stderr, "kata-build: unknown verb '%s'\nTry 'kata-build --help'.\n", verb);
		return 2;
	}
	r = strcmp(verb, "push") == 0 ? 0 : load_common(&c, &err);
	if (r >= 0)
		r = fn(&c, &err);
	if (r < 0)
		kd_error_log("%s", kd_err_msg(&err));
	kd_strv_free(c.names);
	kd_cache_free(c.cache);
	kd_versions_free(c.versions);
	kd_shims_free(c.shims);
	return r < 0 ? 1 : 0;
}
