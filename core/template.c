#include "core/template.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

#include <fnmatch.h>
#include <string.h>

/* The parts of a source key the placeholders stand for. */
struct parts {
	const char *dir, *name, *stem, *ext;
	size_t dir_len, stem_len;
};

static void split_key(const char *key, struct parts *p)
{
	const char *slash = strrchr(key, '/'), *dot;

	p->dir = key;
	p->dir_len = slash ? (size_t)(slash - key) : 0;
	p->name = slash ? slash + 1 : key;
	dot = strrchr(p->name, '.');
	if (!dot || dot == p->name)
		dot = NULL;
	p->stem = p->name;
	p->stem_len = dot ? (size_t)(dot - p->name) : strlen(p->name);
	p->ext = dot ? dot + 1 : "";
}

/* Appends the value of placeholder `name` (n bytes); -1 when unknown. */
static int add_value(struct buf *out, const char *name, size_t n, const struct template_vars *v,
		     const struct parts *p)
{
	if (n == 6 && !strncmp(name, "bucket", 6))
		return buf_adds(out, v->bucket);
	if (n == 3 && !strncmp(name, "key", 3))
		return buf_adds(out, v->key);
	if (n == 3 && !strncmp(name, "dir", 3))
		return buf_add(out, p->dir, p->dir_len);
	if (n == 4 && !strncmp(name, "name", 4))
		return buf_adds(out, p->name);
	if (n == 4 && !strncmp(name, "stem", 4))
		return buf_add(out, p->stem, p->stem_len);
	if (n == 3 && !strncmp(name, "ext", 3))
		return buf_adds(out, p->ext);
	if (n == 4 && !strncmp(name, "file", 4))
		return buf_adds(out, v->file ? v->file : "");
	if (n == 7 && !strncmp(name, "handler", 7))
		return buf_adds(out, v->handler ? v->handler : "");
	return -1;
}

int template_expand(const char *tpl, const struct template_vars *v, struct buf *bucket,
		    struct buf *key, struct err *e)
{
	struct buf all = BUF_INIT;
	struct parts p;
	const char *t, *slash;
	int r = -1;

	if (!str_starts_with(tpl, "s3://"))
		return err_set(e, ERR_CONFIG, "output '%s' does not start with s3://", SHORT(tpl));
	split_key(v->key, &p);
	for (t = tpl + 5; *t; t++) {
		const char *close = *t == '{' ? strchr(t, '}') : NULL;
		if (!close) {
			buf_addch(&all, *t);
			continue;
		}
		if (add_value(&all, t + 1, (size_t)(close - t - 1), v, &p) < 0) {
			err_set(e, ERR_CONFIG, "output '%s': unknown placeholder", SHORT(tpl));
			goto out;
		}
		t = close;
		/* An empty {dir} takes its '/' along. */
		if (!strncmp(close - 4, "{dir}", 5) && !p.dir_len && t[1] == '/')
			t++;
	}
	slash = strchr(all.data, '/');
	if (!slash || slash == all.data || !slash[1]) {
		err_set(e, ERR_CONFIG, "output '%s' gives no bucket and key for '%s'", SHORT(tpl),
			SHORT(v->key));
		goto out;
	}
	buf_add(bucket, all.data, (size_t)(slash - all.data));
	buf_adds(key, slash + 1);
	r = 0;
out:
	buf_release(&all);
	return r;
}

/* The template turned into a glob: placeholders become '*', glob characters escaped. */
static void to_glob(const char *t, struct buf *g)
{
	for (; *t; t++) {
		const char *close = *t == '{' ? strchr(t, '}') : NULL;
		if (close) {
			buf_addch(g, '*');
			t = close;
		} else {
			if (strchr("*?[]\\", *t))
				buf_addch(g, '\\');
			buf_addch(g, *t);
		}
	}
}

int template_matches(const char *tpl, const char *bucket, const char *key)
{
	struct buf gb = BUF_INIT, gk = BUF_INIT, tb = BUF_INIT;
	const char *slash;
	int m;

	if (!tpl || !str_starts_with(tpl, "s3://") || !(slash = strchr(tpl + 5, '/')))
		return 0;
	buf_add(&tb, tpl + 5, (size_t)(slash - tpl - 5));
	to_glob(tb.data, &gb);
	to_glob(slash + 1, &gk);
	m = fnmatch(gb.data, bucket, FNM_PATHNAME) == 0 && fnmatch(gk.data, key, 0) == 0;
	buf_release(&gb);
	buf_release(&gk);
	buf_release(&tb);
	return m;
}

int template_glob(const char *pattern, const char *s)
{
	return fnmatch(pattern, s ? s : "", 0) == 0;
}
