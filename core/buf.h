/*
 * buf: a growable byte buffer with a hard size cap.
 *
 * `data` is never NULL and always NUL-terminated, so a buf can be used as a C
 * string at any time (like git's strbuf). A buffer refuses to grow past `cap`
 * (SIZE_MAX unless set with buf_init_cap()); the adding functions then return
 * -1 and leave the contents as they were. Running out of memory aborts, as
 * there is nothing sensible to do about it in this program.
 *
 *	struct buf b = BUF_INIT;
 *	buf_addf(&b, "%s/%s", dir, name);
 *	use(b.data);
 *	buf_release(&b);
 */
#ifndef S3HOOK_BUF_H
#define S3HOOK_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

extern char buf_empty[];

struct buf {
	char *data;
	size_t len;
	size_t alloc; /* 0 while data points at buf_empty */
	size_t cap;   /* most bytes the buffer may hold, not counting the NUL */
};

#define BUF_INIT { .data = buf_empty, .len = 0, .alloc = 0, .cap = SIZE_MAX }

void buf_init_cap(struct buf *b, size_t cap);

/* Frees the memory and returns the buffer to BUF_INIT (keeps the cap). */
void buf_release(struct buf *b);

/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *b);

/* Makes room for `extra` more bytes; -1 when that would pass the cap. */
int buf_grow(struct buf *b, size_t extra);

int buf_add(struct buf *b, const void *data, size_t len);
int buf_adds(struct buf *b, const char *s);
int buf_addch(struct buf *b, char c);
int buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vaddf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Cuts the buffer to `len` bytes (len <= b->len). */
void buf_setlen(struct buf *b, size_t len);

/* Hands the memory to the caller (free() it) and resets the buffer. */
char *buf_detach(struct buf *b, size_t *len);

/* Reads a whole file (at most `cap` bytes, else -1 with ERR_LIMIT). */
struct err;
int buf_read_file(struct buf *b, const char *path, size_t cap, struct err *e);

#endif
