#include "core/str.h"

#include "core/buf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t escape_byte(char *out, unsigned char c)
{
	if (c == '\n')
		return (size_t)snprintf(out, 5, "\\n");
	if (c == '\r')
		return (size_t)snprintf(out, 5, "\\r");
	if (c == '\t')
		return (size_t)snprintf(out, 5, "\\t");
	if (c < 0x20 || c == 0x7f)
		return (size_t)snprintf(out, 5, "\\x%02x", c);
	out[0] = (char)c;
	out[1] = '\0';
	return 1;
}

/* Escaped copy of s into dst (up to size-1 bytes), stopping at `limit` source bytes. */
static size_t escape_into(char *dst, size_t size, const char *s, size_t limit)
{
	size_t o = 0, i;
	char tmp[8];

	for (i = 0; i < limit && s[i]; i++) {
		size_t n = escape_byte(tmp, (unsigned char)s[i]);
		if (o + n >= size)
			break;
		memcpy(dst + o, tmp, n);
		o += n;
	}
	dst[o] = '\0';
	return i;
}

/* Cuts a trailing incomplete UTF-8 sequence off s. */
static void trim_partial_utf8(char *s)
{
	size_t n = strlen(s), i = n, need;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80 && n - i < 3)
		i--;
	if (i == 0 || ((unsigned char)s[i - 1] & 0x80) == 0)
		return;
	need = ((unsigned char)s[i - 1] & 0xe0) == 0xc0   ? 2
	       : ((unsigned char)s[i - 1] & 0xf0) == 0xe0 ? 3
							  : 4;
	if (n - (i - 1) < need)
		s[i - 1] = '\0';
}

const char *str_short(char *dst, size_t size, const char *s)
{
	size_t len, half, tail, used;
	char esc[1024];

	if (!s)
		s = "(null)";
	len = strlen(s);
	escape_into(esc, sizeof(esc), s, len);
	if (strlen(esc) < size && escape_into(dst, size, s, len) == len)
		return dst;
	/* Keep the head and the tail, which is where names differ in practice. */
	half = (size - 4) / 2;
	escape_into(dst, half + 1, s, len);
	trim_partial_utf8(dst);
	used = strlen(dst);
	memcpy(dst + used, "...", 4);
	used += 3;
	tail = len > half / 2 ? len - half / 2 : 0;
	while (tail < len && ((unsigned char)s[tail] & 0xc0) == 0x80)
		tail++;
	escape_into(dst + used, size - used, s + tail, len - tail);
	return dst;
}

int str_copy(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (!size)
		return 1;
	if (n >= size) {
		memcpy(dst, src, size - 1);
		dst[size - 1] = '\0';
		return 1;
	}
	memcpy(dst, src, n + 1);
	return 0;
}

int str_starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int str_ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

int str_to_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

int str_to_int(const char *s, int min, int max, int *out)
{
	const char *p = s;
	uint64_t v;
	int neg = 0;

	if (p && *p == '-') {
		neg = 1;
		p++;
	}
	if (str_to_u64(p, &v) < 0 || v > 2147483648ULL)
		return -1;
	if ((neg ? -(int64_t)v : (int64_t)v) < min || (neg ? -(int64_t)v : (int64_t)v) > max)
		return -1;
	*out = (int)(neg ? -(int64_t)v : (int64_t)v);
	return 0;
}

int str_consttime_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	unsigned char d = 0;
	size_t i;

	if (alen != blen)
		return 0;
	for (i = 0; i < alen; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

void str_hex(char *out, const unsigned char *in, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int str_pct_decode(struct buf *out, const char *s, size_t len, int plus_is_space)
{
	size_t i;

	for (i = 0; i < len; i++) {
		char c = s[i];
		if (c == '%') {
			int hi, lo;
			if (len - i < 3)
				return -1;
			hi = hexval((unsigned char)s[i + 1]);
			lo = hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		}
		if (buf_addch(out, c) < 0)
			return -1;
	}
	return 0;
}

int str_pct_encode(struct buf *out, const char *s, size_t len, int keep_slash)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			   c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/');
		if (keep ? buf_addch(out, (char)c) < 0
			 : buf_addf(out, "%%%c%c", digits[c >> 4], digits[c & 15]) < 0)
			return -1;
	}
	return 0;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		abort();
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);

	if (!p)
		abort();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		abort();
	return p;
}

void *xrealloc(void *p, size_t size)
{
	p = realloc(p, size ? size : 1);
	if (!p)
		abort();
	return p;
}

size_t str_utf8_len(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned char c = p[0];
	size_t n, i;

	n = c == 0		     ? 0
	    : c < 0x80		     ? 1
	    : c >= 0xc2 && c <= 0xdf ? 2
	    : c >= 0xe0 && c <= 0xef ? 3
	    : c >= 0xf0 && c <= 0xf4 ? 4
				     : 0;
	for (i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	/* Overlong forms, surrogates and code points past U+10FFFF. */
	if ((c == 0xe0 && n && p[1] < 0xa0) || (c == 0xed && n && p[1] > 0x9f) ||
	    (c == 0xf0 && n && p[1] < 0x90) || (c == 0xf4 && n && p[1] > 0x8f))
		return 0;
	return n;
}

int str_utf8_valid(const char *s, size_t len)
{
	size_t i = 0, n;

	while (i < len) {
		if ((unsigned char)s[i] < 0x80 && s[i]) {
			i++;
			continue;
		}
		n = str_utf8_len(s + i);
		if (n == 0 || n > len - i)
			return 0;
		i += n;
	}
	return 1;
}

int str_json_quote(struct buf *b, const char *s, size_t len, int strict)
{
	size_t i = 0, run = 0, n;
	int bad = buf_addch(b, '"');

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7f) {
			i++;
			continue;
		}
		if (c >= 0x80 && (n = str_utf8_len(s + i)) != 0 && n <= len - i) {
			i += n;
			continue;
		}
		bad |= buf_add(b, s + run, i - run);
		if (c >= 0x80 && strict)
			return -1;
		if (c >= 0x80)
			bad |= buf_add(b, "\xef\xbf\xbd", 3);
		else if (c == '"' || c == '\\')
			bad |= buf_addf(b, "\\%c", c);
		else if (c == '\n')
			bad |= buf_add(b, "\\n", 2);
		else if (c == '\r')
			bad |= buf_add(b, "\\r", 2);
		else if (c == '\t')
			bad |= buf_add(b, "\\t", 2);
		else
			bad |= buf_addf(b, "\\u%04x", c);
		run = ++i;
	}
	bad |= buf_add(b, s + run, i - run);
	bad |= buf_addch(b, '"');
	return bad ? -1 : 0;
}
