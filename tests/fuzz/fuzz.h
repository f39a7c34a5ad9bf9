/*
 * fuzz: what the libFuzzer targets share. A broken invariant is a finding like
 * a sanitizer report: fuzz_fail() prints what broke and aborts, so libFuzzer
 * saves the input as a crash artifact.
 */
#ifndef S3HOOK_FUZZ_H
#define S3HOOK_FUZZ_H

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

#endif
