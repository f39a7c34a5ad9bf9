/*
 * str: small string helpers shared by every layer.
 */
#ifndef S3HOOK_STR_H
#define S3HOOK_STR_H

#include <stddef.h>
#include <stdint.h>

struct buf;

/*
 * Copies `s` into `dst` for use in a message: control bytes become escapes
 * (so a key with a newline cannot forge a log line) and a long string is
 * shortened in the middle ("abc...xyz") so the cause after it always fits.
 * Returns dst.
 */
const char *str_short(char *dst, size_t size, const char *s);

/* str_short() into a temporary that lives until the end of the enclosing block. */
#define SHORT(s) str_short((char[120]){ 0 }, 120, (s))

/* Copies src into dst (size bytes, always terminated); 1 when it had to cut, else 0. */
int str_copy(char *dst, size_t size, const char *src);

int str_starts_with(const char *s, const char *prefix);
int str_ends_with(const char *s, const char *suffix);

/* Parses a whole string as a decimal unsigned number; -1 if it is not one. */
int str_to_u64(const char *s, uint64_t *out);
int str_to_int(const char *s, int min, int max, int *out);

/* Compares in time that depends only on the lengths; 1 when equal. */
int str_consttime_eq(const char *a, size_t alen, const char *b, size_t blen);

/* Lowercase hex of `len` bytes into `out` (2*len+1 bytes). */
void str_hex(char *out, const unsigned char *in, size_t len);

/*
 * The length (1 to 4) of the valid UTF-8 character that starts at p, which is
 * NUL-terminated; 0 when the bytes there are not one (a stray continuation
 * byte, a cut sequence, an overlong form, a surrogate, past U+10FFFF, or NUL).
 */
size_t str_utf8_len(const char *p);

/*
 * Whether s (len bytes, s[len] readable, as for str_utf8_len) is valid UTF-8
 * throughout; a NUL byte counts as invalid here.
 */
int str_utf8_valid(const char *s, size_t len);

/*
 * Appends s (len bytes) to b as a quoted JSON string: '"', '\\', and control
 * bytes and DEL escaped ("\\n", "\\r", "\\t", else "\\u00XX"). A byte that is not
 * part of valid UTF-8 fails (-1, nothing useful appended) when `strict`, else
 * becomes U+FFFD. -1 also when b's cap is reached. s[len] must be readable (a
 * NUL-terminated string), as str_utf8_len() reads up to it.
 */
int str_json_quote(struct buf *b, const char *s, size_t len, int strict);

/*
 * Percent-decoding. With `plus_is_space`, '+' decodes to ' ' (HTML form and
 * Go url.QueryEscape style). Fails (-1) on a malformed escape. The result may
 * hold NUL bytes: out->len says how long it is.
 */
int str_pct_decode(struct buf *out, const char *s, size_t len, int plus_is_space);

/*
 * Percent-encodes every byte that is not unreserved (A-Z a-z 0-9 - _ . ~),
 * keeping '/' when `keep_slash`: the encoding of S3 and SigV4.
 */
int str_pct_encode(struct buf *out, const char *s, size_t len, int keep_slash);

/* Duplicates a string, aborting when memory runs out. */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);

#endif
