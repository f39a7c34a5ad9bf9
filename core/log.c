#include "core/log.h"

#include "core/buf.h"
#include "core/str.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_min = LOG_INFO;
static enum log_format log_fmt = LOG_LOGFMT;
static int log_fd = 2;

static const char *level_names[] = { "debug", "info", "warn", "error", "off" };

void log_setup(enum log_level min, enum log_format format, int fd)
{
	log_min = min;
	log_fmt = format;
	log_fd = fd;
}

int log_level_parse(const char *s, enum log_level *out)
{
	int i;

	for (i = LOG_DEBUG; i <= LOG_OFF; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int log_enabled(enum log_level level)
{
	return level >= log_min && log_min != LOG_OFF;
}

/* Whether a logfmt value can go bare (no spaces, quotes, '=', control bytes or bad UTF-8). */
static int bare_ok(const char *v)
{
	size_t n;

	if (!*v)
		return 0;
	for (; *v; v += n) {
		n = (unsigned char)*v < 0x80 ? 1 : str_utf8_len(v);
		if (!n || (unsigned char)*v <= ' ' || *v == '"' || *v == '=' || *v == '\\' ||
		    *v == 0x7f)
			return 0;
	}
	return 1;
}

/*
 * A quoted value, as JSON writes a string; a byte that is not part of valid
 * UTF-8 (a key or a handler's output may be any bytes) becomes U+FFFD, so
 * every line stays valid JSON, and valid UTF-8 for logfmt readers.
 */
static void add_quoted(struct buf *b, const char *v)
{
	str_json_quote(b, v, strlen(v), 0);
}

static void add_field(struct buf *b, const char *name, size_t name_len, const char *value,
		      int is_string)
{
	if (log_fmt == LOG_JSON) {
		buf_addf(b, ",\"%.*s\":", (int)name_len, name);
		if (is_string)
			add_quoted(b, value);
		else
			buf_adds(b, value);
		return;
	}
	buf_addf(b, " %.*s=", (int)name_len, name);
	if (bare_ok(value))
		buf_adds(b, value);
	else
		add_quoted(b, value);
}

/* Formats one %spec from `ap`; returns the length of the spec consumed. The spec was
 * checked by the compiler at the log_write() call, hence the pragma. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static size_t format_value(char *out, size_t size, const char *spec, va_list *ap, int *is_string)
{
	size_t n = 1;
	char f[16];

	*is_string = 0;
	while (spec[n] && strchr("0123456789.lz", spec[n]))
		n++;
	if (!spec[n] || n >= sizeof(f) - 1) {
		snprintf(out, size, "?");
		return n;
	}
	memcpy(f, spec, n + 1);
	f[n + 1] = '\0';
	switch (spec[n]) {
	case 's': {
		const char *s = va_arg(*ap, const char *);
		snprintf(out, size, "%s", s ? s : "");
		*is_string = 1;
		break;
	}
	case 'f':
		snprintf(out, size, f, va_arg(*ap, double));
		break;
	default:
		if (strstr(f, "ll"))
			snprintf(out, size, f, va_arg(*ap, long long));
		else if (strchr(f, 'l') || strchr(f, 'z'))
			snprintf(out, size, f, va_arg(*ap, long));
		else
			snprintf(out, size, f, va_arg(*ap, int));
	}
	return n + 1;
}
#pragma GCC diagnostic pop

static void add_fields(struct buf *b, const char *fields, va_list *ap)
{
	char value[2048];
	const char *p = fields;

	while (*p) {
		const char *eq, *name;
		int is_string;

		while (*p == ' ')
			p++;
		name = p;
		eq = strchr(p, '=');
		if (!eq || eq[1] != '%')
			break;
		p = eq + 1 + format_value(value, sizeof(value), eq + 1, ap, &is_string);
		add_field(b, name, (size_t)(eq - name), value, is_string);
	}
}

static void add_head(struct buf *b, enum log_level level, const char *msg)
{
	char ts[64];
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (long)(tv.tv_usec / 1000));
	if (log_fmt == LOG_JSON) {
		buf_addf(b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]);
		add_quoted(b, msg);
		return;
	}
	buf_addf(b, "ts=%s level=%s msg=", ts, level_names[level]);
	add_quoted(b, msg);
}

void log_write(enum log_level level, const char *msg, const char *fields, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;

	if (!log_enabled(level))
		return;
	add_head(&b, level, msg);
	va_start(ap, fields);
	add_fields(&b, fields, &ap);
	va_end(ap);
	buf_adds(&b, log_fmt == LOG_JSON ? "}\n" : "\n");
	if (write(log_fd, b.data, b.len) < 0) {
		/* Nowhere left to report it. */
	}
	buf_release(&b);
}
