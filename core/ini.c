#include "core/ini.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest file we read: configuration, not data. */
#define INI_MAX_FILE (16u << 20)

struct parser {
	struct ini *ini;
	enum ini_flags flags;
	const char *section;
	const char *parent; /* key whose empty value opens indented sub-keys */
	int line;
	struct err *e;
};

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	*end = '\0';
	return s;
}

static void strip_inline_comment(char *s)
{
	char *p;

	for (p = s; *p; p++) {
		if ((*p == ';' || *p == '#') && p > s && (p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			return;
		}
	}
}

__attribute__((format(printf, 2, 3))) static int fail(struct parser *p, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(p->e, ERR_CONFIG, "%s:%d: %s", SHORT(p->ini->path), p->line, msg);
}

static int add_section(struct parser *p, char *line)
{
	char *end = strrchr(line, ']'), *name;
	struct ini *ini = p->ini;

	if (!end || trim(end + 1)[0])
		return fail(p, "section header without closing ']'");
	*end = '\0';
	name = trim(line + 1);
	if (!*name)
		return fail(p, "empty section name");
	if (ini_section(ini, name))
		return fail(p, "section '[%s]' given twice", SHORT(name));
	ini->sections = xrealloc(ini->sections, (ini->n_sections + 1) * sizeof(*ini->sections));
	ini->sections[ini->n_sections].name = xstrdup(name);
	ini->sections[ini->n_sections].line = p->line;
	p->section = ini->sections[ini->n_sections++].name;
	p->parent = NULL;
	return 0;
}

static int add_entry(struct parser *p, char *line, int indented)
{
	char *eq = strchr(line, '='), *key, *value;
	struct ini *ini = p->ini;
	struct buf full = BUF_INIT;
	struct ini_entry *en;

	if (!eq)
		return fail(p, "expected 'key = value' or '[section]'");
	*eq = '\0';
	key = trim(line);
	value = trim(eq + 1);
	if (!*key)
		return fail(p, "missing key before '='");
	if (indented && p->parent)
		buf_addf(&full, "%s.%s", p->parent, key);
	else
		buf_adds(&full, key);
	if (ini_find(ini, p->section, full.data)) {
		fail(p, "key '%s' given twice in this section", SHORT(full.data));
		buf_release(&full);
		return -1;
	}
	ini->entries = xrealloc(ini->entries, (ini->n_entries + 1) * sizeof(*ini->entries));
	en = &ini->entries[ini->n_entries++];
	en->section = p->section;
	en->key = buf_detach(&full, NULL);
	en->value = xstrdup(value);
	en->line = p->line;
	if (!indented)
		p->parent = *value ? NULL : en->key;
	return 0;
}

static int parse_line(struct parser *p, char *raw)
{
	int indented = raw[0] == ' ' || raw[0] == '\t';
	char *line = trim(raw);

	if (!*line || *line == ';' || *line == '#')
		return 0;
	if (p->flags & INI_INLINE_COMMENTS) {
		strip_inline_comment(line);
		line = trim(line);
	}
	if (*line == '[')
		return add_section(p, line);
	return add_entry(p, line, indented);
}

int ini_parse_string(struct ini **out, const char *name, const char *text, size_t len,
		     enum ini_flags flags, struct err *e)
{
	struct parser p = { .flags = flags, .section = "", .e = e };
	struct buf line = BUF_INIT;
	size_t i = 0, start;
	int r = 0;

	p.ini = xcalloc(1, sizeof(*p.ini));
	p.ini->path = xstrdup(name);
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		i = 3;
	while (i < len && r == 0) {
		start = i;
		while (i < len && text[i] != '\n')
			i++;
		p.line++;
		buf_reset(&line);
		buf_add(&line, text + start, i - start);
		if (memchr(line.data, '\0', line.len))
			r = fail(&p, "NUL byte in line");
		else
			r = parse_line(&p, line.data);
		i++;
	}
	buf_release(&line);
	if (r < 0) {
		ini_free(p.ini);
		return -1;
	}
	*out = p.ini;
	return 0;
}

int ini_parse_file(struct ini **out, const char *path, enum ini_flags flags, struct err *e)
{
	struct buf text = BUF_INIT;
	int r;

	if (buf_read_file(&text, path, INI_MAX_FILE, e) < 0)
		return -1;
	r = ini_parse_string(out, path, text.data, text.len, flags, e);
	buf_release(&text);
	return r;
}

void ini_free(struct ini *ini)
{
	size_t i;

	if (!ini)
		return;
	for (i = 0; i < ini->n_entries; i++) {
		free((char *)ini->entries[i].key);
		free((char *)ini->entries[i].value);
	}
	for (i = 0; i < ini->n_sections; i++)
		free((char *)ini->sections[i].name);
	free(ini->entries);
	free(ini->sections);
	free(ini->path);
	free(ini);
}

const struct ini_entry *ini_find(const struct ini *ini, const char *section, const char *key)
{
	size_t i;

	for (i = 0; i < ini->n_entries; i++) {
		const struct ini_entry *en = &ini->entries[i];
		if (strcmp(en->section, section) == 0 && strcmp(en->key, key) == 0)
			return en;
	}
	return NULL;
}

const char *ini_get(const struct ini *ini, const char *section, const char *key, const char *def)
{
	const struct ini_entry *en = ini ? ini_find(ini, section, key) : NULL;

	return en ? en->value : def;
}

const struct ini_section *ini_section(const struct ini *ini, const char *name)
{
	size_t i;

	for (i = 0; i < ini->n_sections; i++)
		if (strcmp(ini->sections[i].name, name) == 0)
			return &ini->sections[i];
	return NULL;
}

/* The next entry of section `name` from index *i on, or NULL; *i moves past it. */
static const struct ini_entry *next_in(const struct ini *ini, const char *name, size_t *i)
{
	for (; *i < ini->n_entries; (*i)++)
		if (strcmp(ini->entries[*i].section, name) == 0)
			return &ini->entries[(*i)++];
	return NULL;
}

int ini_section_same(const struct ini *a, const struct ini *b, const char *name)
{
	const struct ini_entry *x, *y;
	size_t i = 0, j = 0;

	for (;;) {
		x = next_in(a, name, &i);
		y = next_in(b, name, &j);
		if (!x || !y)
			return !x && !y;
		if (strcmp(x->key, y->key) != 0 || strcmp(x->value, y->value) != 0)
			return 0;
	}
}
