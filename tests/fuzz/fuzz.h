/*
 * fuzz: what the libFuzzer targets share. A broken invariant is a finding like
 * a sanitizer report: fuzz_fail() prints what broke and aborts, so libFuzzer
 * saves the input as a crash artifact.
 */
#ifndef S3HOOK_FUZZ_H
#define S3HOOK_FUZZ_H

#include "core/buf.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

__attribute__((format(printf, 1, 2), noreturn)) static inline void fuzz_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz invariant broken: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

#define FUZZ_ASSERT(cond)                                                  \
	do {                                                               \
		if (!(cond))                                               \
			fuzz_fail("%s:%d: %s", __FILE__, __LINE__, #cond); \
	} while (0)

/*
 * An error message goes into logs and HTTP replies as one line: it must be
 * set, and hold no byte below 0x20 (SHORT() escapes what it quotes).
 */
static inline void fuzz_check_msg(const char *msg)
{
	size_t i;

	if (!msg[0])
		fuzz_fail("a failure without a message");
	for (i = 0; msg[i]; i++)
		if ((unsigned char)msg[i] < 0x20)
			fuzz_fail("control byte 0x%02x at %zu in message '%s'",
				  (unsigned char)msg[i], i, msg);
}

/* The input as a C string the caller frees (the fuzzer's bytes are not terminated). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. */
static inline int ref_utf8(const uint8_t *s, size_t len)
{
	size_t i = 0, n, k;
	uint32_t cp;

	while (i < len) {
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return 0;
		if (len - i <= n)
			return 0;
		for (k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

/* The bytes as the inside of a JSON string: only '"', '\' and control bytes escaped. */
static inline void json_quote_raw(struct buf *b, const uint8_t *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			buf_addf(b, "\\%c", s[i]);
		else if (s[i] < 0x20)
			buf_addf(b, "\\u%04x", s[i]);
		else
			buf_addch(b, (char)s[i]);
	}
}

#endif
