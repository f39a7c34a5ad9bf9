/*
 * fuzz_sigv4: the SigV4 canonicaliser on arbitrary bytes.
 *
 * The input is NUL-separated fields (C strings cannot hold a NUL anyway):
 *
 *	path \0 query \0 region \0 name \0 value \0 name \0 value ...
 *
 * Each step is checked against what SigV4 requires, not against the code:
 *  - the canonical path holds only unreserved bytes, '/' and %XX with
 *    upper-case hex, and decodes back to the path;
 *  - the canonical query is name=value pairs of the same alphabet (no '/'),
 *    one per non-empty '&' segment, sorted by name then value, equal to a
 *    reference recoding of the segments, and canonical again when fed back;
 *  - the canonical headers are sorted lower-case names, each once, with
 *    values trimmed, blanks folded to one space and no line break;
 *  - the canonical request is the parts joined by '\n'.
 * Then the request is signed and presigned, for the sanitizers.
 */
#include "core/buf.h"
#include "core/err.h"
#include "s3/sigv4.h"
#include "tests/fuzz/fuzz.h"

#define MAX_HEADERS 64

/* 2013-05-24T00:00:00Z, the date of the AWS S3 signing examples. */
#define WHEN ((time_t)1369353600)

static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

static int upper_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static int hexval(unsigned char c)
{
	return c <= '9' ? c - '0' : c - 'A' + 10;
}

/*
 * Checks that s[0..len) is in the SigV4 alphabet (unreserved, %XX upper-case,
 * '/' when `slash`) and appends its decoding to dec.
 */
static void check_encoded(const char *s, size_t len, int slash, struct buf *dec)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%') {
			if (len - i < 3 || !upper_hex((unsigned char)s[i + 1]) ||
			    !upper_hex((unsigned char)s[i + 2]))
				fuzz_fail("bad escape at %zu in '%.*s'", i, (int)len, s);
			buf_addch(dec, (char)(hexval((unsigned char)s[i + 1]) * 16 +
					      hexval((unsigned char)s[i + 2])));
			i += 2;
		} else if (unreserved(c) || (slash && c == '/')) {
			buf_addch(dec, (char)c);
		} else {
			fuzz_fail("byte 0x%02x left unencoded at %zu in '%.*s'", c, i, (int)len, s);
		}
	}
}

static void fuzz_path(const char *path)
{
	struct buf out = BUF_INIT, dec = BUF_INIT;

	FUZZ_ASSERT(sigv4_canon_path(&out, path) == 0);
	check_encoded(out.data, out.len, 1, &dec);
	if (!*path)
		FUZZ_ASSERT(strcmp(out.data, "/") == 0);
	else if (strcmp(dec.data, path) != 0 || dec.len != strlen(path))
		fuzz_fail("canonical path '%s' does not decode to the path", out.data);
	buf_release(&out);
	buf_release(&dec);
}

/* ---- query ------------------------------------------------------------------------- */

struct qpair {
	char *name, *value; /* encoded */
};

static int qpair_cmp(const void *a, const void *b)
{
	const struct qpair *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

/* A component decoded (a bad escape: taken literally) and encoded the SigV4 way. */
static char *ref_recode(const char *s, size_t len)
{
	static const char digits[] = "0123456789ABCDEF";
	struct buf dec = BUF_INIT, enc = BUF_INIT;
	size_t i;
	int ok = 1;

	for (i = 0; i < len && ok; i++) {
		const char *hex = "0123456789abcdefABCDEF";
		if (s[i] != '%') {
			buf_addch(&dec, s[i]);
			continue;
		}
		ok = len - i >= 3 && s[i + 1] && s[i + 2] && strchr(hex, s[i + 1]) &&
		     strchr(hex, s[i + 2]);
		if (ok) {
			char two[3] = { s[i + 1], s[i + 2], 0 };
			buf_addch(&dec, (char)strtol(two, NULL, 16));
			i += 2;
		}
	}
	if (!ok) {
		buf_reset(&dec);
		buf_add(&dec, s, len);
	}
	for (i = 0; i < dec.len; i++) {
		unsigned char c = (unsigned char)dec.data[i];
		if (unreserved(c))
			buf_addch(&enc, (char)c);
		else
			buf_addf(&enc, "%%%c%c", digits[c >> 4], digits[c & 15]);
	}
	buf_release(&dec);
	return buf_detach(&enc, NULL);
}

/* What the canonical query of q must be, built from the SigV4 rules alone. */
static void ref_canon_query(struct buf *out, const char *q)
{
	struct qpair *v = NULL;
	size_t n = 0, i;

	while (*q) {
		size_t len = strcspn(q, "&"), name = strcspn(q, "=");
		if (len) {
			v = realloc(v, (n + 1) * sizeof(*v));
			if (!v)
				abort();
			if (name > len)
				name = len;
			v[n].name = ref_recode(q, name);
			v[n].value = name < len ? ref_recode(q + name + 1, len - name - 1)
						: ref_recode("", 0);
			n++;
		}
		q += len + (q[len] == '&');
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), qpair_cmp);
	for (i = 0; i < n; i++) {
		buf_addf(out, "%s%s=%s", i ? "&" : "", v[i].name, v[i].value);
		free(v[i].name);
		free(v[i].value);
	}
	free(v);
}

/* Each pair is NAME=VALUE in the alphabet without '/', in (name, value) order. */
static void check_query_shape(const char *canon)
{
	struct qpair prev = { NULL, NULL };
	struct buf dec = BUF_INIT;
	char *copy = fuzz_strndup((const uint8_t *)canon, strlen(canon)), *p = copy;

	while (*p) {
		size_t len = strcspn(p, "&"), name = strcspn(p, "=");
		struct qpair cur = { p, p + name + 1 };
		FUZZ_ASSERT(name < len);
		p[name] = '\0';
		check_encoded(cur.name, strlen(cur.name), 0, &dec);
		check_encoded(cur.value, len - name - 1, 0, &dec);
		if (p[len] == '&')
			p[len++] = '\0';
		if (prev.name && qpair_cmp(&prev, &cur) > 0)
			fuzz_fail("canonical query out of order: '%s'", canon);
		prev = cur;
		p += len;
	}
	free(copy);
	buf_release(&dec);
}

static void fuzz_query(const char *query)
{
	struct buf out = BUF_INIT, ref = BUF_INIT, again = BUF_INIT;

	FUZZ_ASSERT(sigv4_canon_query(&out, query) == 0);
	check_query_shape(out.data);
	ref_canon_query(&ref, query);
	if (strcmp(out.data, ref.data) != 0)
		fuzz_fail("canonical query '%s', reference '%s'", out.data, ref.data);
	FUZZ_ASSERT(sigv4_canon_query(&again, out.data) == 0);
	if (strcmp(out.data, again.data) != 0)
		fuzz_fail("canonical query '%s' is not canonical again: '%s'", out.data,
			  again.data);
	buf_release(&out);
	buf_release(&ref);
	buf_release(&again);
}

/* ---- headers ----------------------------------------------------------------------- */

/* Names s3hook could send: not empty, no ':' (ends the name), ';' (splits the list) or newline. */
static int clean_names(const struct sigv4_header *h, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!h[i].name[0] || strpbrk(h[i].name, ":;\n\r"))
			return 0;
	return 1;
}

static void check_value(const char *v, size_t len)
{
	size_t i;

	FUZZ_ASSERT(!memchr(v, '\n', len) && !memchr(v, '\r', len) && !memchr(v, '\t', len));
	FUZZ_ASSERT(len == 0 || (v[0] != ' ' && v[len - 1] != ' '));
	for (i = 1; i < len; i++)
		FUZZ_ASSERT(!(v[i] == ' ' && v[i - 1] == ' '));
}

static void check_headers(const char *canon, const char *names)
{
	const char *line = canon, *name = names, *prev = NULL;
	size_t prev_len = 0, i;

	while (*line) {
		size_t nlen = strcspn(name, ";"), llen = strcspn(line, "\n");
		FUZZ_ASSERT(line[llen] == '\n' && *name);
		FUZZ_ASSERT(strncmp(line, name, nlen) == 0 && line[nlen] == ':');
		for (i = 0; i < nlen; i++)
			FUZZ_ASSERT(!(name[i] >= 'A' && name[i] <= 'Z'));
		if (prev) {
			int c = strncmp(prev, name, prev_len < nlen ? prev_len : nlen);
			FUZZ_ASSERT(c < 0 || (c == 0 && prev_len < nlen));
		}
		check_value(line + nlen + 1, llen - nlen - 1);
		prev = name;
		prev_len = nlen;
		line += llen + 1;
		name += nlen + (name[nlen] == ';');
	}
	FUZZ_ASSERT(*name == '\0');
}

static void fuzz_headers(const struct sigv4_header *h, size_t n)
{
	struct buf out = BUF_INIT, names = BUF_INIT;

	FUZZ_ASSERT(sigv4_canon_headers(&out, &names, h, n) == 0);
	if (clean_names(h, n))
		check_headers(out.data, names.data);
	buf_release(&out);
	buf_release(&names);
}

/* ---- the whole request ------------------------------------------------------------- */

static void fuzz_request(const struct sigv4_request *req)
{
	struct buf all = BUF_INIT, names = BUF_INIT, want = BUF_INIT, n2 = BUF_INIT;
	struct buf sts = BUF_INIT, auth = BUF_INIT, pre = BUF_INIT;
	struct sigv4_creds creds = { "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG", "tok" };
	struct err e = ERR_INIT;
	char sig[65];

	FUZZ_ASSERT(sigv4_canonical_request(&all, &names, req) == 0);
	buf_addf(&want, "%s\n", req->method);
	sigv4_canon_path(&want, req->path);
	buf_addch(&want, '\n');
	sigv4_canon_query(&want, req->query);
	buf_addch(&want, '\n');
	sigv4_canon_headers(&want, &n2, req->headers, req->n_headers);
	buf_addf(&want, "\n%s\n%s", n2.data, req->payload_hash);
	FUZZ_ASSERT(strcmp(names.data, n2.data) == 0 && strcmp(all.data, want.data) == 0);
	if (sigv4_string_to_sign(&sts, req, all.data) == 0) {
		sigv4_signature(sig, creds.secret_key, req, sts.data);
		FUZZ_ASSERT(strlen(sig) == 64);
	}
	sigv4_authorization(&auth, req, &creds, &e);
	err_clear(&e);
	sigv4_presign(&pre, req, &creds, 3600, &e);
	buf_release(&all);
	buf_release(&names);
	buf_release(&want);
	buf_release(&n2);
	buf_release(&sts);
	buf_release(&auth);
	buf_release(&pre);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size), *end = text + size, *p = text;
	const char *field[3] = { "", "", "" };
	struct sigv4_header h[MAX_HEADERS];
	size_t nf = 0, nh = 0;

	for (; p <= end && nf < 3; p += strlen(p) + 1)
		field[nf++] = p;
	for (; p < end && nh < MAX_HEADERS; nh++) {
		h[nh].name = p;
		p += strlen(p) + 1;
		h[nh].value = p < end ? p : "";
		p += p < end ? strlen(p) + 1 : 0;
	}
	fuzz_path(field[0]);
	fuzz_query(field[1]);
	fuzz_headers(h, nh);
	fuzz_request(&(struct sigv4_request){ .method = "PUT",
					      .path = field[0],
					      .query = field[1],
					      .headers = h,
					      .n_headers = nh,
					      .payload_hash = "UNSIGNED-PAYLOAD",
					      .region = field[2],
					      .service = "s3",
					      .when = WHEN });
	free(text);
	return 0;
}
