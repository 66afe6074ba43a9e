# One Makefile, out-of-tree build in build/ (or O=dir). See docs/ARCHITECTURE.md.
#   make            programs: build/kata-deploy, build/kata-deploy-agent, build/kata-build
#   make check      unit tests, fuzz-corpus replay, integration tests (real peers on loopback)
#   make asan       the same tests under ASan + UBSan (build in build-asan/)
#   make tsan       the unit tests of the threaded code under ThreadSanitizer (build-tsan/)
#   make fuzz       libFuzzer targets (clang), FUZZ_SECONDS each
#   make format-check / make format
#   make demo       throw-away host root: pack, install, status, uninstall
#   make bench      benchmarks against the physical baselines
#   make install    PREFIX=/usr/local DESTDIR=

O ?= build
# Go (for the test peers) comes with the machine image in /usr/local/go.
export PATH := /usr/local/go/bin:$(PATH)
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
CC ?= cc
# libcurl and libarchive are loaded with dlopen on first use (lib/http.c, lib/tarball.c): only
# their headers are needed here.
PKGS := yaml-0.1 json-c libzstd openssl libkmod libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags libcurl libarchive $(PKGS))
PKG_LIBS := $(shell pkg-config --libs $(PKGS))

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
	-Wno-format-nonliteral -Wno-format-truncation
OPT ?= -O2 -g
HARDEN := -fstack-protector-strong -D_FORTIFY_SOURCE=2
SAN ?=
CFLAGS_ALL := -std=gnu11 -D_GNU_SOURCE $(OPT) $(WARN) $(HARDEN) $(SAN) -I. -Ilib $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS_ALL := -Wl,-z,relro,-z,now $(SAN) $(LDFLAGS)
LIBS := $(PKG_LIBS) -lpthread

LIB_SRCS := $(sort $(wildcard lib/*.c))
ENGINE_SRCS := $(filter-out deployer/main.c,$(sort $(wildcard deployer/*.c)))
AGENT_SRCS := $(sort $(wildcard node-agent/*.c))
AGENT_LIB_SRCS := $(filter-out node-agent/main.c,$(AGENT_SRCS))
BUILDER_SRCS := $(filter-out builder/main.c,$(sort $(wildcard builder/*.c)))
UNIT_SRCS := $(sort $(wildcard tests/unit/test-*.c))
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz-*.c))
TOOL_SRCS := $(sort $(wildcard tests/tools/*.c))

objs = $(patsubst %.c,$(O)/%.o,$(1))
LIB_A := $(O)/libkd.a
ENGINE_A := $(O)/libkdengine.a
BUILDER_A := $(O)/libkdbuild.a
AGENT_A := $(O)/libkdagent.a
PROGRAMS := $(O)/kata-deploy
ifneq ($(AGENT_SRCS),)
PROGRAMS += $(O)/kata-deploy-agent $(O)/kata-deploy-agent-wait
endif
ifneq ($(wildcard builder/main.c),)
PROGRAMS += $(O)/kata-build
endif
UNIT_BINS := $(patsubst tests/unit/%.c,$(O)/tests/%,$(UNIT_SRCS))
REPLAY_BINS := $(patsubst tests/fuzz/fuzz-%.c,$(O)/tests/replay-%,$(FUZZ_SRCS))
TOOL_BINS := $(patsubst tests/tools/%.c,$(O)/tests/%,$(TOOL_SRCS))

# Objects of the unit tests, fuzz replays and test tools are kept: make deletes such intermediate
# files at its end and then, once their .d files name them, compiles them again in the next make
# (make asan-build, then make asan; make all, then make check).
.SECONDARY:

.PHONY: all check unit integration asan asan-build tsan fuzz format format-check demo bench install clean deps deps-demo \
	manifests test peers ci-image kernel-repro
all: $(PROGRAMS) $(TOOL_BINS)

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c -o $@ $<

$(LIB_A): $(call objs,$(LIB_SRCS))
	@rm -f $@
	ar rcs $@ $^
$(ENGINE_A): $(call objs,$(ENGINE_SRCS))
	@rm -f $@
	ar rcs $@ $^
$(AGENT_A): $(call objs,$(AGENT_LIB_SRCS))
	@rm -f $@
	ar rcs $@ $^
$(BUILDER_A): $(call objs,$(BUILDER_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(O)/kata-deploy: $(O)/deployer/main.o $(ENGINE_A) $(LIB_A)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)
$(O)/kata-deploy-agent: $(call objs,$(AGENT_SRCS)) $(ENGINE_A) $(LIB_A)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)
# The idle waiter links nothing but libc (docs/AGENT.md: it must stay under 4 MiB RSS).
$(O)/kata-deploy-agent-wait: $(O)/node-agent/waiter/waiter.o
	$(CC) $(LDFLAGS_ALL) -o $@ $^
$(O)/kata-build: $(O)/builder/main.o $(BUILDER_A) $(ENGINE_A) $(LIB_A)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# Unit tests link the same objects as production.
$(O)/tests/test-%: $(O)/tests/unit/test-%.o $(AGENT_A) $(BUILDER_A) $(ENGINE_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)
$(O)/tests/%: $(O)/tests/tools/%.o $(BUILDER_A) $(ENGINE_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)
# Fuzz targets replayed over their corpus by a plain driver (make check), libFuzzer in make fuzz.
$(O)/tests/replay-%: $(O)/tests/fuzz/fuzz-%.o $(O)/tests/fuzz/replay.o $(BUILDER_A) $(ENGINE_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)
$(O)/tests/fuzz/replay.o: tests/fuzz/replay.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

unit: $(UNIT_BINS) $(REPLAY_BINS)
	@O=$(O) tests/run-unit.sh $(UNIT_BINS)
	@O=$(O) tests/run-replay.sh $(REPLAY_BINS)

# Integration tests in KD_JOBS lanes (tests/run-integration.sh; docs/TEST-PEERS.md, "Lanes").
KD_JOBS ?= 2
integration: all
	@O=$(O) KD_JOBS=$(KD_JOBS) tests/run-integration.sh

check: all unit tsan integration

ASAN_MAKE = $(MAKE) O=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	HARDEN="-fstack-protector-strong"
# Integration tests that run none of our binaries, only peers (test-nfd: helm, kubectl and a real
# kube-scheduler against NFD's CRDs; test-peers-smoke: the peers' own smoke tests): ASan and UBSan
# have nothing to check there, so make asan leaves them out. make check runs them.
ASAN_SKIP_TESTS := test-nfd test-peers-smoke
asan: asan-build
	$(ASAN_MAKE) unit
	ASAN_OPTIONS=detect_leaks=1 $(ASAN_MAKE) integration KD_ASAN=1 \
		KD_SKIP_TESTS="$(ASAN_SKIP_TESTS)"
# Everything make asan runs, built (make test builds it at nice 19 beside make check).
asan-build:
	$(ASAN_MAKE) all $(patsubst $(O)/%,build-asan/%,$(UNIT_BINS) $(REPLAY_BINS))

# The extraction's threads (decompression, writer, digest: lib/tar-native.c, lib/fwriter.c,
# lib/payload.c) and their unit tests, under ThreadSanitizer.
TSAN_TESTS := test-fwriter test-tarball test-payload
tsan:
	$(MAKE) O=build-tsan OPT="-O1 -g" SAN="-fsanitize=thread" HARDEN="-fstack-protector-strong" \
		$(addprefix build-tsan/tests/,$(TSAN_TESTS))
	@TSAN_OPTIONS=halt_on_error=1 O=build-tsan tests/run-unit.sh $(addprefix build-tsan/tests/,$(TSAN_TESTS))

FUZZ_SECONDS ?= 30
fuzz:
	@tests/run-fuzz.sh $(FUZZ_SECONDS) $(FUZZ_SRCS)

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find lib deployer node-agent builder tests -name '*.[ch]')
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)
format:
	clang-format -i $(FORMAT_FILES)

# The two commands of the README: each installs what it needs first.
demo: deps-demo
	$(MAKE) all
	@O=$(O) scripts/demo.sh

# The Kata components the tests use build in the background while the peers build
# (scripts/prebuild-kata.sh: on a cold machine that overlap is what keeps CI under its limit).
# make asan's build (~45 s of CPU) runs at nice 19 beside them, from the CPU the tests leave idle.
test: deps
	$(MAKE) -j2 all
	@set -e; O=$(O) scripts/prebuild-kata.sh start; \
	nice -n 19 $(MAKE) asan-build >$(O)/asan-build.log 2>&1 & asan_build=$$!; \
	trap 'kill $$asan_build 2>/dev/null || :; O=$(O) scripts/prebuild-kata.sh stop' EXIT; \
	$(MAKE) peers; \
	$(MAKE) format-check; \
	$(MAKE) check; \
	O=$(O) scripts/prebuild-kata.sh wait; \
	wait $$asan_build || { tail -n 30 $(O)/asan-build.log; exit 1; }
	$(MAKE) asan

peers:
	scripts/peers/all.sh

manifests:
	scripts/render-manifests.sh

# The per-PR image: PR=123 SHA=abcdef make ci-image (registry settings: docs/RECIPES.md).
ci-image: all
	$(O)/kata-build --out $(O)/kata-static ci --pr $(PR) --sha $(SHA)

# Two real guest-kernel builds from clean caches must give the same bytes (~2 x 9 min).
kernel-repro: all
	KD_TEST_KERNEL=1 TESTS=test-builder $(MAKE) integration

bench: all
	@O=$(O) bench/run.sh
	@O=$(O) bench/subset.sh
	@O=$(O) bench/oci-pull.sh
	@O=$(O) bench/pack.sh
	@O=$(O) bench/kata.sh
	@O=$(O) bench/upstream.sh
	@O=$(O) bench/engine.sh

MANDIR ?= $(PREFIX)/share/man
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(COMPLETIONDIR)
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/
	install -m 0644 man/kata-build.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/kata-deploy.8 man/kata-deploy-agent.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 completion/kata-deploy.bash $(DESTDIR)$(COMPLETIONDIR)/kata-deploy
	ln -sf kata-deploy $(DESTDIR)$(COMPLETIONDIR)/kata-build
	ln -sf kata-deploy $(DESTDIR)$(COMPLETIONDIR)/kata-deploy-agent

deps:
	@scripts/install-deps.sh
deps-demo:
	@scripts/install-deps.sh --demo

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(O) -name '*.d' 2>/dev/null)
