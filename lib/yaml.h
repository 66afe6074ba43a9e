/* YAML documents (recipes, Kubernetes manifests, Helm values) read with libyaml into json-c
 * trees: mappings become objects, sequences arrays, and plain scalars are typed by the YAML 1.2
 * core schema (null, bool, int, float; everything else and every quoted or block scalar is a
 * string). Owns the limits (size, depth, aliases, expanded nodes) and file:line:column errors. */
#pragma once

#include <json-c/json.h>
#include <stddef.h>

#include "err.h"

/* Our header shadows libyaml's <yaml.h> on the -Ilib search path; lib/yaml.c alone asks for the
 * real one through here. Nothing else sees libyaml types. */
#ifdef KD_YAML_WANT_LIBYAML
#include_next <yaml.h>
#endif

#define KD_YAML_MAX_SIZE (16 * 1024 * 1024) /* bytes of input */
#define KD_YAML_MAX_DEPTH 64		    /* nesting of mappings and sequences */
#define KD_YAML_MAX_ALIASES 10000	    /* alias uses (*name) in one stream */
#define KD_YAML_MAX_NODES 1000000	    /* nodes in a stream, aliases expanded */
#define KD_YAML_MAX_ALIAS_NODES 100000	    /* nodes copied by aliases: stops alias bombs */
#define KD_YAML_MAX_DOCUMENTS 10000	    /* documents in one multi-document stream */

/* Parse a stream holding at most one document. An empty stream or a document that is null
 * gives *ret == NULL (json-c's null). A second document is an error. name is used in messages
 * ("recipe.yaml:3:7: duplicate key 'url'"). Aliases are deep copies of their anchor; the
 * merge key "<<" is honoured; duplicate keys and non-scalar keys are errors. */
int kd_yaml_parse(const char *data, size_t len, const char *name, struct json_object **ret,
		  kd_error *err);

/* Parse every document of a stream into a json array (empty and null documents are skipped,
 * as kubectl does). */
int kd_yaml_parse_all(const char *data, size_t len, const char *name, struct json_object **ret,
		      kd_error *err);

/* Read a file (at most KD_YAML_MAX_SIZE) and parse it; messages name the path. */
int kd_yaml_parse_file(const char *path, struct json_object **ret, kd_error *err);
int kd_yaml_parse_file_all(const char *path, struct json_object **ret, kd_error *err);
