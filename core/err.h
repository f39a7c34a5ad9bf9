/*
 * err: the one error value every fallible function fills in.
 *
 * Fallible functions return 0 on success and -1 on failure and take a
 * `struct err *` as their last argument. The first error set wins: a caller
 * that adds context uses err_prefix(), it never overwrites the cause.
 *
 *	struct err e = ERR_INIT;
 *	if (s3_client_put(c, ..., &e) < 0)
 *		fprintf(stderr, "s3hook: %s\n", e.msg);
 */
#ifndef S3HOOK_ERR_H
#define S3HOOK_ERR_H

#include <stddef.h>

/* One table of error codes; err_name() turns one into its symbol. */
#define ERR_CODES(X)                                                                               \
	X(OK, "no error")                                                                          \
	X(USAGE, "usage error")                                                                    \
	X(CONFIG, "configuration error")                                                           \
	X(IO, "input/output error")                                                                \
	X(NOMEM, "out of memory")                                                                  \
	X(PARSE, "malformed input")                                                            \
	X(LIMIT, "limit exceeded")                                                                 \
	X(NET, "network error")                                                                    \
	X(TIMEOUT, "timed out")                                                                    \
	X(S3, "S3 error")                                                                          \
	X(AUTH, "authentication failed")                                                           \
	X(NOTFOUND, "not found")                                                                   \
	X(CONFLICT, "precondition failed")                                                         \
	X(INTEGRITY, "integrity check failed")                                                     \
	X(QUEUE, "queue error")                                                                    \
	X(RUN, "subprocess error")                                                                 \
	X(CANCELLED, "cancelled")                                                                  \
	X(INTERNAL, "internal error")

enum err_code {
#define ERR_ENUM(name, text) ERR_##name,
	ERR_CODES(ERR_ENUM)
#undef ERR_ENUM
};

struct err {
	enum err_code code;
	int sys_errno;	 /* errno at the failure, 0 when none */
	int http_status; /* HTTP status of a failed request, 0 when none */
	char s3_code[64]; /* S3 error code (e.g. "NoSuchKey"), "" when none */
	char msg[512];
};

#define ERR_INIT { .code = ERR_OK }

/* Sets the error unless one is already set; always returns -1. */
int err_set(struct err *e, enum err_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* As err_set(), and appends ": strerror(errno)" and keeps errno. */
int err_sys(struct err *e, enum err_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Adds "context: " in front of an error already set; returns -1. */
int err_prefix(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears the error so the value can be reused. */
void err_clear(struct err *e);

/* Whether an error is set. */
static inline int err_is_set(const struct err *e)
{
	return e->code != ERR_OK;
}

/* "NOTFOUND" and so on; "?" for an unknown code. */
const char *err_name(enum err_code code);

#endif
