#include "s3/sigv4.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pair {
	char *name;
	char *value;
};

void sigv4_amz_date(char out[17], time_t when)
{
	struct tm tm;

	gmtime_r(&when, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

void sigv4_sha256_hex(char out[65], const void *data, size_t len)
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(data, len, md);
	str_hex(out, md, sizeof(md));
}

int sigv4_canon_path(struct buf *out, const char *path)
{
	if (!path || !*path)
		return buf_addch(out, '/');
	return str_pct_encode(out, path, strlen(path), 1);
}

/* Decodes one query component and encodes it the SigV4 way into a new string. */
static char *recode(const char *s, size_t len)
{
	struct buf dec = BUF_INIT, enc = BUF_INIT;

	if (str_pct_decode(&dec, s, len, 0) < 0) {
		/* Not a valid escape: sign it as the literal bytes it is. */
		buf_reset(&dec);
		buf_add(&dec, s, len);
	}
	str_pct_encode(&enc, dec.data, dec.len, 0);
	buf_release(&dec);
	return buf_detach(&enc, NULL);
}

static int pair_cmp(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

static size_t split_query(struct pair **out, const char *q)
{
	struct pair *pairs = NULL;
	size_t n = 0;

	while (q && *q) {
		size_t len = strcspn(q, "&");
		const char *eq = memchr(q, '=', len);
		if (len) {
			pairs = xrealloc(pairs, (n + 1) * sizeof(*pairs));
			pairs[n].name = recode(q, eq ? (size_t)(eq - q) : len);
			pairs[n].value = eq ? recode(eq + 1, len - (size_t)(eq - q) - 1) : xstrdup("");
			n++;
		}
		q += len + (q[len] == '&');
	}
	*out = pairs;
	return n;
}

int sigv4_canon_query(struct buf *out, const char *query)
{
	struct pair *pairs;
	size_t n = split_query(&pairs, query), i;
	int r = 0;

	if (n > 1)
		qsort(pairs, n, sizeof(*pairs), pair_cmp);
	for (i = 0; i < n; i++) {
		if (buf_addf(out, "%s%s=%s", i ? "&" : "", pairs[i].name, pairs[i].value) < 0)
			r = -1;
		free(pairs[i].name);
		free(pairs[i].value);
	}
	free(pairs);
	return r;
}

/*
 * The header value trimmed, with runs of spaces folded to one. A value folded
 * over several lines signs its lines joined by ',' (the AWS test suite's
 * get-header-value-multiline); s3hook itself never sends one.
 */
static void add_folded(struct buf *out, const char *v)
{
	int space = 0, newline = 0;

	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v; v++) {
		if (*v == '\n' || *v == '\r') {
			newline = 1;
			continue;
		}
		if (*v == ' ' || *v == '\t') {
			space = 1;
			continue;
		}
		if (newline)
			buf_addch(out, ',');
		else if (space)
			buf_addch(out, ' ');
		space = newline = 0;
		buf_addch(out, *v);
	}
}

struct hdr {
	char *name; /* lower case */
	size_t idx; /* position given, so repeated names keep their order */
};

static int hdr_cmp(const void *a, const void *b)
{
	const struct hdr *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

int sigv4_canon_headers(struct buf *out, struct buf *signed_names, const struct sigv4_header *h,
			size_t n)
{
	struct hdr *sorted = xcalloc(n, sizeof(*sorted));
	size_t i, j;

	for (i = 0; i < n; i++) {
		sorted[i].name = xstrdup(h[i].name);
		sorted[i].idx = i;
		for (j = 0; sorted[i].name[j]; j++)
			if (sorted[i].name[j] >= 'A' && sorted[i].name[j] <= 'Z')
				sorted[i].name[j] = (char)(sorted[i].name[j] - 'A' + 'a');
	}
	qsort(sorted, n, sizeof(*sorted), hdr_cmp);
	for (i = 0; i < n; i++) {
		int first = i == 0 || strcmp(sorted[i - 1].name, sorted[i].name) != 0;
		int last = i + 1 == n || strcmp(sorted[i + 1].name, sorted[i].name) != 0;
		if (first) {
			buf_addf(out, "%s:", sorted[i].name);
			buf_addf(signed_names, "%s%s", signed_names->len ? ";" : "", sorted[i].name);
		} else {
			buf_addch(out, ',');
		}
		add_folded(out, h[sorted[i].idx].value);
		if (last)
			buf_addch(out, '\n');
	}
	for (i = 0; i < n; i++)
		free(sorted[i].name);
	free(sorted);
	return 0;
}

int sigv4_canonical_request(struct buf *out, struct buf *signed_names,
			    const struct sigv4_request *req)
{
	if (!req->method || !req->payload_hash || buf_addf(out, "%s\n", req->method) < 0 ||
	    sigv4_canon_path(out, req->path) < 0 || buf_addch(out, '\n') < 0 ||
	    sigv4_canon_query(out, req->query) < 0 || buf_addch(out, '\n') < 0 ||
	    sigv4_canon_headers(out, signed_names, req->headers, req->n_headers) < 0)
		return -1;
	return buf_addf(out, "\n%s\n%s", signed_names->data, req->payload_hash);
}

/* The credential scope; -1 when it does not fit (an absurd region name). */
static int scope(char *out, size_t size, const struct sigv4_request *req)
{
	char date[17];
	int n;

	sigv4_amz_date(date, req->when);
	n = snprintf(out, size, "%.8s/%s/%s/aws4_request", date, req->region, req->service);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

int sigv4_string_to_sign(struct buf *out, const struct sigv4_request *req,
			 const char *canonical_request)
{
	char date[17], hash[65], sc[256];

	sigv4_amz_date(date, req->when);
	if (scope(sc, sizeof(sc), req) < 0)
		return -1;
	sigv4_sha256_hex(hash, canonical_request, strlen(canonical_request));
	return buf_addf(out, "AWS4-HMAC-SHA256\n%s\n%s\n%s", date, sc, hash);
}

static void hmac(unsigned char out[32], const void *key, size_t key_len, const char *data)
{
	unsigned int len = 32;

	HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, strlen(data), out, &len);
}

void sigv4_signature(char out[65], const char *secret_key, const struct sigv4_request *req,
		     const char *string_to_sign)
{
	unsigned char k[32], sig[32];
	struct buf key = BUF_INIT;
	char date[17];

	sigv4_amz_date(date, req->when);
	date[8] = '\0';
	buf_addf(&key, "AWS4%s", secret_key);
	hmac(k, key.data, key.len, date);
	hmac(k, k, sizeof(k), req->region);
	hmac(k, k, sizeof(k), req->service);
	hmac(k, k, sizeof(k), "aws4_request");
	hmac(sig, k, sizeof(k), string_to_sign);
	str_hex(out, sig, sizeof(sig));
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(key.data, key.len);
	buf_release(&key);
}

/* Signs req: fills the signed-headers list and the hex signature. */
static int sign(struct buf *signed_names, char sig[65], const struct sigv4_request *req,
		const struct sigv4_creds *creds, struct err *e)
{
	struct buf canon = BUF_INIT, sts = BUF_INIT;
	int r = -1;

	if (!creds->access_key || !*creds->access_key || !creds->secret_key)
		return err_set(e, ERR_AUTH, "no credentials to sign the request with");
	if (sigv4_canonical_request(&canon, signed_names, req) < 0 ||
	    sigv4_string_to_sign(&sts, req, canon.data) < 0) {
		err_set(e, ERR_INTERNAL, "cannot build the canonical request");
		goto out;
	}
	sigv4_signature(sig, creds->secret_key, req, sts.data);
	r = 0;
out:
	buf_release(&canon);
	buf_release(&sts);
	return r;
}

int sigv4_authorization(struct buf *out, const struct sigv4_request *req,
			const struct sigv4_creds *creds, struct err *e)
{
	struct buf names = BUF_INIT;
	char sig[65], sc[256];
	int r;

	r = sign(&names, sig, req, creds, e);
	if (r == 0 && scope(sc, sizeof(sc), req) == 0) {
		buf_addf(out, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
			 creds->access_key, sc, names.data, sig);
	}
	buf_release(&names);
	return r;
}

static void add_param(struct buf *q, const char *name, const char *value)
{
	buf_addf(q, "%s%s=", q->len ? "&" : "", name);
	str_pct_encode(q, value, strlen(value), 0);
}

int sigv4_presign(struct buf *out, const struct sigv4_request *req,
		  const struct sigv4_creds *creds, unsigned expires, struct err *e)
{
	struct sigv4_request r = *req;
	struct buf q = BUF_INIT, names = BUF_INIT;
	char date[17], sc[256], cred[512], exp[16], sig[65];
	int rc = -1;

	if (expires < 1 || expires > 604800)
		return err_set(e, ERR_USAGE, "presigned URLs last 1 to 604800 seconds, not %u",
			       expires);
	sigv4_amz_date(date, req->when);
	snprintf(exp, sizeof(exp), "%u", expires);
	if (scope(sc, sizeof(sc), req) < 0 ||
	    snprintf(cred, sizeof(cred), "%s/%s", creds->access_key ? creds->access_key : "", sc) >=
		    (int)sizeof(cred))
		return err_set(e, ERR_AUTH, "the access key or region is too long to sign with");
	if (req->query && *req->query)
		buf_adds(&q, req->query);
	add_param(&q, "X-Amz-Algorithm", "AWS4-HMAC-SHA256");
	add_param(&q, "X-Amz-Credential", cred);
	add_param(&q, "X-Amz-Date", date);
	add_param(&q, "X-Amz-Expires", exp);
	add_param(&q, "X-Amz-SignedHeaders", "host");
	if (creds->session_token && *creds->session_token)
		add_param(&q, "X-Amz-Security-Token", creds->session_token);
	r.query = q.data;
	r.payload_hash = "UNSIGNED-PAYLOAD";
	if (sign(&names, sig, &r, creds, e) == 0) {
		buf_addf(out, "%s&X-Amz-Signature=%s", q.data, sig);
		rc = 0;
	}
	buf_release(&q);
	buf_release(&names);
	return rc;
}
