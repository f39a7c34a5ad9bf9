#include "core/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 4, 0))) static void err_vset(struct err *e, enum err_code code,
							   int sys, const char *fmt, va_list ap)
{
	int n;

	e->code = code;
	e->sys_errno = sys;
	n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	if (n < 0)
		e->msg[0] = '\0';
	if (sys && n >= 0 && (size_t)n < sizeof(e->msg))
		snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, ": %s", strerror(sys));
}

int err_set(struct err *e, enum err_code code, const char *fmt, ...)
{
	va_list ap;

	if (!e || err_is_set(e))
		return -1;
	va_start(ap, fmt);
	err_vset(e, code, 0, fmt, ap);
	va_end(ap);
	return -1;
}

int err_sys(struct err *e, enum err_code code, const char *fmt, ...)
{
	int sys = errno;
	va_list ap;

	if (!e || err_is_set(e))
		return -1;
	va_start(ap, fmt);
	err_vset(e, code, sys ? sys : EIO, fmt, ap);
	va_end(ap);
	errno = sys;
	return -1;
}

int err_prefix(struct err *e, const char *fmt, ...)
{
	char head[256], old[sizeof(e->msg)];
	va_list ap;
	int n;

	if (!e || !err_is_set(e))
		return -1;
	va_start(ap, fmt);
	n = vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	memcpy(old, e->msg, sizeof(old));
	n = snprintf(e->msg, sizeof(e->msg), "%s: %s", head, old);
	if (n >= (int)sizeof(e->msg)) {
		/* The cause is the useful part: keep it whole, cut the context. */
		size_t keep = strlen(old) + 2 < sizeof(e->msg) ? sizeof(e->msg) - strlen(old) - 6 : 0;
		if (snprintf(e->msg, sizeof(e->msg), "%.*s...: %s", (int)keep, head, old) < 0)
			memcpy(e->msg, old, sizeof(old));
	}
	return -1;
}

void err_clear(struct err *e)
{
	memset(e, 0, sizeof(*e));
}

const char *err_name(enum err_code code)
{
	switch (code) {
#define ERR_NAME(name, text)                                                                       \
	case ERR_##name:                                                                           \
		return #name;
		ERR_CODES(ERR_NAME)
#undef ERR_NAME
	}
	return "?";
}
