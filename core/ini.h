/*
 * ini: s3hook's own INI reader, for s3hook.conf and the ~/.aws files.
 *
 * Why not libinih: Debian's build splits lines longer than 200 bytes without
 * a word (AWS session tokens are longer) and reports no line numbers. This
 * reader has no line-length limit, names file and line in every error, and
 * reads the indented sub-keys of ~/.aws/config:
 *
 *	[profile dev]
 *	s3 =
 *	    endpoint_url = http://127.0.0.1:7480     -> key "s3.endpoint_url"
 *
 * Lines starting with ';' or '#' are comments; with INI_INLINE_COMMENTS a
 * ';' or '#' that follows whitespace also starts one. A key given twice in
 * one section, or a section given twice, is an error.
 *
 *	struct ini *ini;
 *	if (ini_parse_file(&ini, path, INI_INLINE_COMMENTS, &e) < 0) ...
 *	const struct ini_entry *v = ini_find(ini, "s3", "endpoint");
 *	ini_free(ini);
 */
#ifndef S3HOOK_INI_H
#define S3HOOK_INI_H

#include <stddef.h>

struct err;

enum ini_flags {
	INI_INLINE_COMMENTS = 1 << 0,
};

struct ini_entry {
	const char *section; /* "" for keys before the first section */
	const char *key;
	const char *value;
	int line;
};

struct ini_section {
	const char *name;
	int line;
};

struct ini {
	char *path; /* as given, for messages */
	struct ini_entry *entries;
	size_t n_entries;
	struct ini_section *sections;
	size_t n_sections;
};

/* Parses a file; *out is the caller's, freed with ini_free(). */
int ini_parse_file(struct ini **out, const char *path, enum ini_flags flags, struct err *e);

/* Parses text in memory; `name` stands for the file in messages. */
int ini_parse_string(struct ini **out, const char *name, const char *text, size_t len,
		     enum ini_flags flags, struct err *e);

void ini_free(struct ini *ini);

/* The entry for section/key, or NULL. */
const struct ini_entry *ini_find(const struct ini *ini, const char *section, const char *key);

/* Shorthand: the value of section/key, or `def`. */
const char *ini_get(const struct ini *ini, const char *section, const char *key, const char *def);

/* Whether a section of that name exists. */
const struct ini_section *ini_section(const struct ini *ini, const char *name);

/* 1 when section `name` holds the same keys with the same values, in the same order, in both. */
int ini_section_same(const struct ini *a, const struct ini *b, const char *name);

#endif
