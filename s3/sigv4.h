/*
 * sigv4: AWS Signature Version 4, as small steps that tests can check one by
 * one against the published vectors (canonical request, string to sign,
 * signature), and the two ways S3 uses them: the Authorization header and
 * presigned URLs. The clock is an argument, never read here.
 *
 * Paths are given decoded ("/bucket/a b.jpg") and encoded once, exactly as S3
 * does (every byte but A-Z a-z 0-9 - _ . ~ and '/' as %XX); S3 does not
 * normalise "." or ".." segments, and neither does this. Queries are given as
 * sent on the wire ("b=2&a=1"); each name and value is decoded and encoded
 * again, then sorted.
 */
#ifndef S3HOOK_SIGV4_H
#define S3HOOK_SIGV4_H

#include <stddef.h>
#include <time.h>

struct buf;
struct err;

struct sigv4_header {
	const char *name; /* any case; signed in lower case */
	const char *value;
};

struct sigv4_creds {
	const char *access_key;
	const char *secret_key;
	const char *session_token; /* NULL or "" when none */
};

struct sigv4_request {
	const char *method;
	const char *path;  /* decoded; encoded once while signing */
	const char *query; /* as sent, without '?'; NULL or "" for none */
	const struct sigv4_header *headers; /* every header to sign, host included */
	size_t n_headers;
	const char *payload_hash; /* hex SHA-256, or "UNSIGNED-PAYLOAD" */
	const char *region;
	const char *service; /* "s3" */
	time_t when;
};

/* "20150830T123600Z" and "20150830" for a time. */
void sigv4_amz_date(char out[17], time_t when);

/* The canonical URI: each path byte encoded once, '/' kept. */
int sigv4_canon_path(struct buf *out, const char *path);

/* The canonical query string: pairs decoded, encoded, sorted by name then value. */
int sigv4_canon_query(struct buf *out, const char *query);

/*
 * The canonical headers block ("name:value\n" sorted, values trimmed and
 * inner runs of spaces folded, repeated names joined by ',') and the
 * signed-headers list ("host;x-amz-date").
 */
int sigv4_canon_headers(struct buf *out, struct buf *signed_names, const struct sigv4_header *h,
			size_t n);

/* The whole canonical request; `signed_names` receives the signed-headers list. */
int sigv4_canonical_request(struct buf *out, struct buf *signed_names,
			    const struct sigv4_request *req);

/* "AWS4-HMAC-SHA256\n<amz-date>\n<scope>\n<hex sha256 of canonical request>". */
int sigv4_string_to_sign(struct buf *out, const struct sigv4_request *req,
			 const char *canonical_request);

/* Hex signature of a string to sign. */
void sigv4_signature(char out[65], const char *secret_key, const struct sigv4_request *req,
		     const char *string_to_sign);

/*
 * The Authorization header value for req. The caller has put "host",
 * "x-amz-date" (sigv4_amz_date) and "x-amz-content-sha256" (and, with a
 * session token, "x-amz-security-token") in req->headers.
 */
int sigv4_authorization(struct buf *out, const struct sigv4_request *req,
			const struct sigv4_creds *creds, struct err *e);

/*
 * A presigned query string for req valid `expires` seconds: req->query plus
 * the X-Amz-* parameters and X-Amz-Signature, ready to follow '?'. Only the
 * host header is signed; req->headers must hold just it.
 */
int sigv4_presign(struct buf *out, const struct sigv4_request *req,
		  const struct sigv4_creds *creds, unsigned expires, struct err *e);

/* Hex SHA-256 of data, the payload hash of a request. */
void sigv4_sha256_hex(char out[65], const void *data, size_t len);

#endif
