/* Language toolchains a recipe asks for (`toolchains: [rust, go]`): where they are and which
 * exact version they are. Rust is the rustup toolchain named by `rust_toolchain` in
 * versions.yaml (its bin/ directory goes on PATH, so no rustup proxy and no
 * rust-toolchain.toml decides); Go is the `go` on the caller's PATH (or /usr/local/go/bin).
 * Each one's version text (`rustc -vV`, `go version`) is part of the component key: another
 * compiler is another build. */
#pragma once

#include "err.h"
#include "recipe.h"

typedef struct kd_toolchains {
	char *path;	/* directories to put before KD_BUILD_PATH, ':'-separated, or "" */
	char *key_text; /* "toolchain <name> <version text digest>\n" lines */
} kd_toolchains;

int kd_toolchains_resolve(const kd_versions *v, char *const *names, kd_toolchains *ret,
			  kd_error *err);
void kd_toolchains_done(kd_toolchains *t);
