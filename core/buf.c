#include "core/buf.h"

#include "core/err.h"
#include "core/str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char buf_empty[1];

void buf_init_cap(struct buf *b, size_t cap)
{
	*b = (struct buf)BUF_INIT;
	b->cap = cap;
}

void buf_release(struct buf *b)
{
	size_t cap = b->cap;

	if (b->alloc)
		free(b->data);
	*b = (struct buf)BUF_INIT;
	b->cap = cap;
}

void buf_reset(struct buf *b)
{
	buf_setlen(b, 0);
}

int buf_grow(struct buf *b, size_t extra)
{
	size_t want, n;
	char *p;

	if (extra > b->cap || b->len > b->cap - extra)
		return -1;
	want = b->len + extra + 1;
	if (want <= b->alloc)
		return 0;
	n = b->alloc ? b->alloc : 64;
	while (n < want)
		n = n > SIZE_MAX / 2 ? want : n * 2;
	p = realloc(b->alloc ? b->data : NULL, n);
	if (!p)
		abort();
	if (!b->alloc)
		p[0] = '\0';
	b->data = p;
	b->alloc = n;
	return 0;
}

int buf_add(struct buf *b, const void *data, size_t len)
{
	if (buf_grow(b, len) < 0)
		return -1;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int buf_addch(struct buf *b, char c)
{
	return buf_add(b, &c, 1);
}

int buf_vaddf(struct buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n;

	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0 || buf_grow(b, (size_t)n) < 0)
		return -1;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = buf_vaddf(b, fmt, ap);
	va_end(ap);
	return r;
}

void buf_setlen(struct buf *b, size_t len)
{
	if (!b->alloc)
		return;
	b->len = len < b->len ? len : b->len;
	b->data[b->len] = '\0';
}

char *buf_detach(struct buf *b, size_t *len)
{
	char *p;

	if (!b->alloc)
		buf_grow(b, 0);
	p = b->data;
	if (len)
		*len = b->len;
	b->data = buf_empty;
	b->len = b->alloc = 0;
	return p;
}

int buf_read_file(struct buf *b, const char *path, size_t cap, struct err *e)
{
	char chunk[16384];
	ssize_t n;
	int fd, r = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(e, ERR_IO, "cannot open '%s'", SHORT(path));
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_sys(e, ERR_IO, "cannot read '%s'", SHORT(path));
			goto out;
		}
		if (n == 0)
			break;
		if (b->len + (size_t)n > cap || buf_add(b, chunk, (size_t)n) < 0) {
			err_set(e, ERR_LIMIT, "'%s' is larger than %zu bytes", SHORT(path), cap);
			goto out;
		}
	}
	r = 0;
out:
	close(fd);
	return r;
}
