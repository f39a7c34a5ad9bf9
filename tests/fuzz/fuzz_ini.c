/*
 * fuzz_ini: the INI reader, and what reads its result.
 *
 * Each input is parsed twice, as s3hook reads its files: with
 * INI_INLINE_COMMENTS (s3hook.conf) and without (~/.aws/config and
 * credentials). Every parse must keep the reader's promises (messages name
 * file and line; keys and values trimmed; no key twice in a section) and
 * survive a round trip: the entries written back as plain "key=value" lines
 * must parse to the same sections, keys and values.
 *
 * What parses then goes on: the s3hook.conf parse to config_load() and
 * s3_config_load(), and the input itself as the ~/.aws files that
 * s3_config_load() reads (through a memfd, since that function opens them
 * by path).
 */
#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/ini.h"
#include "s3/client.h"
#include "tests/fuzz/fuzz.h"

#include <sys/mman.h>
#include <unistd.h>

/* In a folder that does not exist, so no relative handler command is ever found. */
#define CONF_NAME "/nonexistent/s3hook-fuzz/s3hook.conf"

static int aws_fd = -1;

static size_t count_lines(const uint8_t *data, size_t size)
{
	size_t i, n = 1;

	for (i = 0; i < size; i++)
		n += data[i] == '\n';
	return n;
}

/* "NAME:LINE: ..." with LINE within the input. */
static void check_parse_error(const struct err *e, const char *name, size_t lines)
{
	size_t n = strlen(name);
	char *end;
	long line;

	FUZZ_ASSERT(e->code == ERR_CONFIG);
	fuzz_check_msg(e->msg);
	FUZZ_ASSERT(strncmp(e->msg, name, n) == 0 && e->msg[n] == ':');
	line = strtol(e->msg + n + 1, &end, 10);
	FUZZ_ASSERT(end != e->msg + n + 1 && *end == ':');
	FUZZ_ASSERT(line >= 1 && (size_t)line <= lines);
}

static int trimmed(const char *s)
{
	size_t n = strlen(s);

	return !(s[0] == ' ' || s[0] == '\t') &&
	       !(n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'));
}

/* Whether s holds what INI_INLINE_COMMENTS would have cut: ';' or '#' after a blank. */
static int has_inline_comment(const char *s)
{
	const char *p;

	for (p = s; *p; p++)
		if ((*p == ';' || *p == '#') && p > s && (p[-1] == ' ' || p[-1] == '\t'))
			return 1;
	return 0;
}

static void check_section_of(const struct ini *ini, const struct ini_entry *en)
{
	size_t j;

	if (en->section[0] == '\0')
		return;
	for (j = 0; j < ini->n_sections; j++)
		if (en->section == ini->sections[j].name)
			return;
	fuzz_fail("entry '%s' names a section the reader does not hold", en->key);
}

static void check_ini(const struct ini *ini, enum ini_flags flags, size_t lines)
{
	size_t i;
	int last = 0;

	for (i = 0; i < ini->n_sections; i++) {
		const struct ini_section *s = &ini->sections[i];
		FUZZ_ASSERT(s->name[0] && !strchr(s->name, '\n') && trimmed(s->name));
		FUZZ_ASSERT(ini_section(ini, s->name) == s);
		FUZZ_ASSERT(s->line >= 1 && (size_t)s->line <= lines);
	}
	for (i = 0; i < ini->n_entries; i++) {
		const struct ini_entry *en = &ini->entries[i];
		FUZZ_ASSERT(en->key[0] && trimmed(en->key) && trimmed(en->value));
		FUZZ_ASSERT(!strchr(en->key, '\n') && !strchr(en->value, '\n'));
		FUZZ_ASSERT(!strchr(en->key, '='));
		FUZZ_ASSERT(en->line >= last && en->line >= 1 && (size_t)en->line <= lines);
		FUZZ_ASSERT(ini_find(ini, en->section, en->key) == en);
		if (flags & INI_INLINE_COMMENTS)
			FUZZ_ASSERT(!has_inline_comment(en->key) && !has_inline_comment(en->value));
		check_section_of(ini, en);
		last = en->line;
	}
}

/* The entries of one section as "key=value" lines: no blank for a comment to follow. */
static void write_entries(struct buf *b, const struct ini *ini, const char *section)
{
	size_t i;

	for (i = 0; i < ini->n_entries; i++)
		if (strcmp(ini->entries[i].section, section) == 0)
			buf_addf(b, "%s=%s\n", ini->entries[i].key, ini->entries[i].value);
}

static void round_trip(const struct ini *ini, enum ini_flags flags)
{
	struct buf text = BUF_INIT;
	struct err e = ERR_INIT;
	struct ini *again;
	size_t i;

	/* One byte-order mark is skipped; a second one would be part of the first key. */
	buf_adds(&text, "\xef\xbb\xbf");
	write_entries(&text, ini, "");
	for (i = 0; i < ini->n_sections; i++) {
		buf_addf(&text, "[%s]\n", ini->sections[i].name);
		write_entries(&text, ini, ini->sections[i].name);
	}
	if (ini_parse_string(&again, "again", text.data, text.len, flags, &e) < 0)
		fuzz_fail("written back, the file no longer parses: %s\n%s", e.msg, text.data);
	FUZZ_ASSERT(again->n_sections == ini->n_sections && again->n_entries == ini->n_entries);
	for (i = 0; i < ini->n_sections; i++)
		FUZZ_ASSERT(strcmp(again->sections[i].name, ini->sections[i].name) == 0);
	for (i = 0; i < ini->n_entries; i++) {
		const struct ini_entry *a = &ini->entries[i],
				       *b = ini_find(again, a->section, a->key);
		if (!b || strcmp(a->value, b->value) != 0)
			fuzz_fail("written back, [%s] %s changed", a->section, a->key);
	}
	ini_free(again);
	buf_release(&text);
}

static struct ini *parse(const uint8_t *data, size_t size, enum ini_flags flags)
{
	struct err e = ERR_INIT;
	struct ini *ini = NULL;
	size_t lines = count_lines(data, size);

	if (ini_parse_string(&ini, CONF_NAME, (const char *)data, size, flags, &e) < 0) {
		check_parse_error(&e, CONF_NAME, lines);
		return NULL;
	}
	FUZZ_ASSERT(!err_is_set(&e) && strcmp(ini->path, CONF_NAME) == 0);
	check_ini(ini, flags, lines);
	round_trip(ini, flags);
	return ini;
}

static size_t count_handlers(const struct ini *ini)
{
	size_t i, n = 0;

	for (i = 0; i < ini->n_sections; i++)
		n += strncmp(ini->sections[i].name, "handler ", 8) == 0;
	return n;
}

/* Every error names file, line and key (DESIGN.md, "Configuration"). */
static void load_config(const struct ini *ini, size_t lines)
{
	struct config cfg = CONFIG_INIT;
	struct err e = ERR_INIT;
	size_t i;

	if (config_load(&cfg, ini, &e) < 0) {
		check_parse_error(&e, CONF_NAME, lines);
		return; /* config_load() released what it had */
	}
	FUZZ_ASSERT(cfg.n_handlers == count_handlers(ini));
	for (i = 0; i < cfg.n_handlers; i++) {
		const struct handler_conf *h = &cfg.handlers[i];
		FUZZ_ASSERT(h->path && h->path[0] == '/' && h->argv.n >= 1 && h->events.n >= 1);
		FUZZ_ASSERT(config_handler(&cfg, h->name) != NULL);
	}
	config_release(&cfg);
}

/* The input is also ~/.aws/config and ~/.aws/credentials (both name the memfd). */
static void load_s3_config(const struct ini *conf, const uint8_t *data, size_t size)
{
	struct s3_config cfg = S3_CONFIG_INIT;
	struct err e = ERR_INIT;

	if (ftruncate(aws_fd, 0) < 0 || pwrite(aws_fd, data, size, 0) != (ssize_t)size)
		abort();
	if (s3_config_load(&cfg, conf, &e) == 0)
		FUZZ_ASSERT(cfg.access_key && cfg.secret_key);
	else
		fuzz_check_msg(e.msg);
	s3_config_release(&cfg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const unset[] = { "AWS_PROFILE",
					     "AWS_ACCESS_KEY_ID",
					     "AWS_SECRET_ACCESS_KEY",
					     "AWS_SESSION_TOKEN",
					     "AWS_ENDPOINT_URL",
					     "AWS_ENDPOINT_URL_S3",
					     "AWS_REGION",
					     "AWS_DEFAULT_REGION",
					     "AWS_CA_BUNDLE",
					     "S3HOOK_LIBEXEC",
					     NULL };
	char path[64];
	size_t i;

	(void)argc;
	(void)argv;
	for (i = 0; unset[i]; i++)
		unsetenv(unset[i]);
	aws_fd = memfd_create("aws", MFD_CLOEXEC);
	if (aws_fd < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", aws_fd);
	setenv("AWS_CONFIG_FILE", path, 1);
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ini *conf = parse(data, size, INI_INLINE_COMMENTS);
	struct ini *aws = parse(data, size, 0);

	if (conf)
		load_config(conf, count_lines(data, size));
	load_s3_config(conf, data, size);
	ini_free(conf);
	ini_free(aws);
	return 0;
}
