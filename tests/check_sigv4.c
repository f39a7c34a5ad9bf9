/*
 * Unit tests of the SigV4 signer against published vectors: the AWS SigV4 test
 * suite, the S3 signing examples of the AWS documentation (both as fixtures under
 * tests/fixtures/sigv4/, whose README says where each came from and which vectors
 * were left out and why), and object keys built to break the path encoding.
 *
 * Each step is checked on its own, as curl's unit1980 does: the canonical request
 * from the raw request, the string to sign from the published canonical request,
 * and the Authorization value end to end. A failure names the vector and step.
 */
#include "tests/testutil.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"
#include "s3/sigv4.h"

#include <stdio.h>
#include <string.h>

#define MAX_HEADERS   16
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The credentials, scope and clock a group of vectors was signed with. */
struct context {
	const char *dir; /* under tests/fixtures/sigv4/ */
	struct sigv4_creds creds;
	const char *region;
	const char *service;
	time_t when;
	/*
	 * The S3 pages print the Authorization value with no space after its
	 * commas, the test suite with one; S3 accepts both.
	 */
	int no_comma_space;
};

static const struct context suite_ctx = {
	.dir = "suite",
	.creds = { "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL },
	.region = "us-east-1",
	.service = "service",
	.when = 1440938160, /* 20150830T123600Z */
};

static const struct context docs_ctx = {
	.dir = "s3-docs",
	.creds = { "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL },
	.region = "us-east-1",
	.service = "s3",
	.when = 1369353600, /* 20130524T000000Z */
	.no_comma_space = 1,
};

/* The AWS SigV4 test suite (2015-08-30 and aws-c-auth), S3 rules only. */
static const char *const suite_vectors[] = {
	"get-header-key-duplicate",
	/* A folded value signs as "value1,value2,value3": each line a value of its own. */
	"get-header-value-multiline",
	"get-header-value-order",
	"get-header-value-trim",
	"get-relative-relative-unnormalized",
	"get-relative-unnormalized",
	"get-slash-dot-slash-unnormalized",
	"get-slash-pointless-dot-unnormalized",
	"get-slash-unnormalized",
	"get-slashes-unnormalized",
	"get-space",
	"get-unreserved",
	"get-utf8",
	"get-vanilla",
	"get-vanilla-empty-query-key",
	"get-vanilla-query",
	"get-vanilla-query-order-encoded",
	"get-vanilla-query-order-key",
	"get-vanilla-query-order-key-case",
	"get-vanilla-query-order-value",
	"get-vanilla-query-unreserved",
	"get-vanilla-utf8-query",
	"get-vanilla-with-session-token",
	"post-header-key-case",
	"post-header-key-sort",
	"post-header-value-case",
	"post-sts-header-after",
	"post-sts-header-before",
	"post-vanilla",
	"post-vanilla-empty-query-value",
	"post-vanilla-query",
	"post-x-www-form-urlencoded",
	"post-x-www-form-urlencoded-parameters",
};

/* "Examples: Signature Calculations" of the S3 single-chunk signing page. */
static const char *const docs_vectors[] = {
	"get-object",
	"put-object",
	"get-bucket-lifecycle",
	"get-bucket-list-objects",
};

/* A .req file parsed into the request the signer takes. */
struct request {
	const char *name;
	struct buf raw;	 /* the file, cut in place into the strings below */
	struct buf path; /* percent-decoded, as the signer takes it */
	struct sigv4_header headers[MAX_HEADERS];
	char payload_hash[65];
	struct sigv4_request req;
};

static void fixture(struct buf *b, const struct context *c, const char *name, const char *ext)
{
	char path[512];
	int n = snprintf(path, sizeof(path), "fixtures/sigv4/%s/%s/%s.%s", c->dir, name, name, ext);

	ck_assert(n > 0 && (size_t)n < sizeof(path));
	test_read_fixture(b, path);
}

/* Ends the line at *p with a NUL, moves *p past it; *nl gets where the '\n' was. */
static char *cut_line(char **p, char **nl)
{
	char *line = *p;

	*nl = strchr(line, '\n');
	if (*nl) {
		**nl = '\0';
		*p = *nl + 1;
	} else {
		*p = line + strlen(line);
	}
	return line;
}

/* "GET /a%20b?x=1 HTTP/1.1": the target runs to the last space, as paths hold spaces. */
static void parse_request_line(struct request *r, char *line)
{
	char *sp1 = strchr(line, ' '), *sp2 = strrchr(line, ' '), *target, *q;

	ck_assert_msg(sp1 && sp2 > sp1, "%s: bad request line '%s'", r->name, line);
	*sp1 = *sp2 = '\0';
	target = sp1 + 1;
	q = strchr(target, '?');
	if (q) {
		*q = '\0';
		r->req.query = q + 1;
	}
	ck_assert_msg(str_pct_decode(&r->path, target, strlen(target), 0) == 0,
		      "%s: bad escape in path '%s'", r->name, target);
	r->req.method = line;
	r->req.path = r->path.data;
}

static void add_header(struct request *r, char *line)
{
	char *colon = strchr(line, ':');

	ck_assert_msg(colon, "%s: header line without ':' '%s'", r->name, line);
	ck_assert_msg(r->req.n_headers < MAX_HEADERS, "%s: too many headers", r->name);
	*colon = '\0';
	r->headers[r->req.n_headers].name = line;
	r->headers[r->req.n_headers].value = colon + 1; /* untrimmed: trimming is the signer's */
	r->req.n_headers++;
}

/* Header lines up to the blank line; *p is left at the body. */
static void parse_headers(struct request *r, char **p)
{
	char *prev_nl = NULL, *nl;

	while (**p) {
		char *line = cut_line(p, &nl);
		if (!*line)
			break;
		if (*line == ' ' || *line == '\t') {
			/* A folded line continues the value above it: undo that cut. */
			ck_assert_msg(prev_nl && r->req.n_headers, "%s: fold before a header",
				      r->name);
			*prev_nl = '\n';
		} else {
			add_header(r, line);
		}
		prev_nl = nl;
	}
}

static void load_request(struct request *r, const struct context *c, const char *name)
{
	char *p, *line, *nl;

	memset(r, 0, sizeof(*r));
	r->name = name;
	r->raw = (struct buf)BUF_INIT;
	r->path = (struct buf)BUF_INIT;
	fixture(&r->raw, c, name, "req");
	p = r->raw.data;
	line = cut_line(&p, &nl);
	parse_request_line(r, line);
	parse_headers(r, &p);
	sigv4_sha256_hex(r->payload_hash, p, r->raw.len - (size_t)(p - r->raw.data));
	r->req.headers = r->headers;
	r->req.payload_hash = r->payload_hash;
	r->req.region = c->region;
	r->req.service = c->service;
	r->req.when = c->when;
}

static void release_request(struct request *r)
{
	buf_release(&r->raw);
	buf_release(&r->path);
}

static void expect_same(const char *vector, const char *step, const char *want, const char *got)
{
	ck_assert_msg(strcmp(want, got) == 0, "%s: %s differs\n--- expected\n%s\n--- got\n%s\n---",
		      vector, step, want, got);
}

/* Drops the space after each comma, for comparing with the S3 pages' spelling. */
static void drop_comma_spaces(struct buf *b)
{
	size_t i, j = 0;

	for (i = 0; i < b->len; i++)
		if (!(b->data[i] == ' ' && i > 0 && b->data[i - 1] == ','))
			b->data[j++] = b->data[i];
	buf_setlen(b, j);
}

static void check_canonical_request(const struct context *c, const char *name)
{
	struct buf want = BUF_INIT, got = BUF_INIT, names = BUF_INIT;
	struct request r;

	load_request(&r, c, name);
	fixture(&want, c, name, "creq");
	ck_assert_msg(sigv4_canonical_request(&got, &names, &r.req) == 0, "%s: failed", name);
	expect_same(name, "canonical request", want.data, got.data);
	release_request(&r);
	buf_release(&want);
	buf_release(&got);
	buf_release(&names);
}

/* From the published canonical request, so that a wrong one does not hide this step. */
static void check_string_to_sign(const struct context *c, const char *name)
{
	struct buf creq = BUF_INIT, want = BUF_INIT, got = BUF_INIT;
	struct request r;

	load_request(&r, c, name);
	fixture(&creq, c, name, "creq");
	fixture(&want, c, name, "sts");
	ck_assert_msg(sigv4_string_to_sign(&got, &r.req, creq.data) == 0, "%s: failed", name);
	expect_same(name, "string to sign", want.data, got.data);
	release_request(&r);
	buf_release(&creq);
	buf_release(&want);
	buf_release(&got);
}

static void check_authorization(const struct context *c, const char *name)
{
	struct buf want = BUF_INIT, got = BUF_INIT;
	struct err e = ERR_INIT;
	struct request r;

	load_request(&r, c, name);
	fixture(&want, c, name, "authz");
	ck_assert_msg(sigv4_authorization(&got, &r.req, &c->creds, &e) == 0, "%s: %s", name, e.msg);
	if (c->no_comma_space)
		drop_comma_spaces(&got);
	expect_same(name, "Authorization", want.data, got.data);
	release_request(&r);
	buf_release(&want);
	buf_release(&got);
}

START_TEST(suite_canonical_request)
{
	check_canonical_request(&suite_ctx, suite_vectors[_i]);
}
END_TEST

START_TEST(suite_string_to_sign)
{
	check_string_to_sign(&suite_ctx, suite_vectors[_i]);
}
END_TEST

START_TEST(suite_authorization)
{
	check_authorization(&suite_ctx, suite_vectors[_i]);
}
END_TEST

START_TEST(docs_canonical_request)
{
	check_canonical_request(&docs_ctx, docs_vectors[_i]);
}
END_TEST

START_TEST(docs_string_to_sign)
{
	check_string_to_sign(&docs_ctx, docs_vectors[_i]);
}
END_TEST

START_TEST(docs_authorization)
{
	check_authorization(&docs_ctx, docs_vectors[_i]);
}
END_TEST

#define PRESIGN "presign-get-object"

/* The presigned query string of the S3 query-parameters page's example, 86400 s. */
static void presign(struct request *r, struct buf *query)
{
	struct err e = ERR_INIT;

	load_request(r, &docs_ctx, PRESIGN);
	ck_assert_msg(sigv4_presign(query, &r->req, &docs_ctx.creds, 86400, &e) == 0,
		      PRESIGN ": %s", e.msg);
}

START_TEST(docs_presigned_query)
{
	struct buf want = BUF_INIT, got = BUF_INIT;
	struct request r;

	presign(&r, &got);
	fixture(&want, &docs_ctx, PRESIGN, "query");
	expect_same(PRESIGN, "presigned query", want.data, got.data);
	release_request(&r);
	buf_release(&want);
	buf_release(&got);
}
END_TEST

/* What sigv4_presign signed: its query without the signature, and no payload hash. */
START_TEST(docs_presigned_canonical_request)
{
	struct buf query = BUF_INIT, want = BUF_INIT, got = BUF_INIT, names = BUF_INIT;
	struct request r;
	char *sig;

	presign(&r, &query);
	sig = strstr(query.data, "&X-Amz-Signature=");
	ck_assert_msg(sig, PRESIGN ": no signature in '%s'", query.data);
	*sig = '\0';
	r.req.query = query.data;
	r.req.payload_hash = "UNSIGNED-PAYLOAD";
	fixture(&want, &docs_ctx, PRESIGN, "creq");
	ck_assert_int_eq(sigv4_canonical_request(&got, &names, &r.req), 0);
	expect_same(PRESIGN, "canonical request", want.data, got.data);
	release_request(&r);
	buf_release(&query);
	buf_release(&want);
	buf_release(&got);
	buf_release(&names);
}
END_TEST

START_TEST(docs_presigned_string_to_sign)
{
	check_string_to_sign(&docs_ctx, PRESIGN);
}
END_TEST

static void expect_path(const char *path, const char *want)
{
	struct buf got = BUF_INIT;

	ck_assert_int_eq(sigv4_canon_path(&got, path), 0);
	ck_assert_msg(strcmp(got.data, want) == 0, "path '%s': expected '%s', got '%s'", path, want,
		      got.data);
	buf_release(&got);
}

START_TEST(canon_path_encodes_reserved_bytes)
{
	expect_path("/bucket/a b.jpg", "/bucket/a%20b.jpg");
	expect_path("/bucket/a+b", "/bucket/a%2Bb");
	expect_path("/bucket/100%", "/bucket/100%25");
	/* Paths come decoded: "%41" is a key of three bytes, and is encoded once. */
	expect_path("/bucket/%41", "/bucket/%2541");
	expect_path("/bucket/why?x=1", "/bucket/why%3Fx%3D1");
	expect_path("/bucket/#top", "/bucket/%23top");
	expect_path("/bucket/!$&'()*,;:@[]\"<>\\^`{|}",
		    "/bucket/%21%24%26%27%28%29%2A%2C%3B%3A%40%5B%5D%22%3C%3E%5C%5E%60%7B%7C%7D");
}
END_TEST

START_TEST(canon_path_keeps_unreserved_bytes)
{
	expect_path("/bucket/~user/-_.~AZaz09", "/bucket/~user/-_.~AZaz09");
	expect_path("", "/");
	expect_path("/", "/");
}
END_TEST

/* S3 keys are names, not file paths: "." and ".." and empty segments are signed as they are. */
START_TEST(canon_path_does_not_normalise)
{
	expect_path("/bucket/a/../b", "/bucket/a/../b");
	expect_path("/bucket/../../etc/passwd", "/bucket/../../etc/passwd");
	expect_path("/bucket/./a/.", "/bucket/./a/.");
	expect_path("/bucket//a//", "/bucket//a//");
}
END_TEST

START_TEST(canon_path_encodes_utf8_bytes)
{
	expect_path("/bucket/\xc3\xbc", "/bucket/%C3%BC");
	expect_path("/bucket/\xe1\x88\xb4", "/bucket/%E1%88%B4");
	expect_path("/bucket/\xe6\x97\xa5\xe6\x9c\xac.txt", "/bucket/%E6%97%A5%E6%9C%AC.txt");
	expect_path("/bucket/\xf0\x9f\x98\x80", "/bucket/%F0%9F%98%80");
}
END_TEST

/* A key of 1,000 bytes (S3 allows 1,024), every other byte one to encode. */
START_TEST(canon_path_long_key)
{
	static const char *const enc[] = { "a", "%20", "b", "%2B" };
	struct buf path = BUF_INIT, want = BUF_INIT;
	size_t i;

	buf_adds(&path, "/bucket/");
	buf_adds(&want, "/bucket/");
	for (i = 0; i < 1000; i++) {
		buf_addch(&path, "a b+"[i % 4]);
		buf_adds(&want, enc[i % 4]);
	}
	ck_assert_uint_eq(want.len, 8 + 250 * 8);
	expect_path(path.data, want.data);
	buf_release(&path);
	buf_release(&want);
}
END_TEST

/* Each control byte and each byte from 0x7f up, alone in a key: one uppercase %XX. */
static void expect_byte_encoded(unsigned c)
{
	char path[16], want[16];
	int n = snprintf(path, sizeof(path), "/b/x%cy", (char)c);
	int m = snprintf(want, sizeof(want), "/b/x%%%02Xy", c);

	ck_assert(n == 6 && m == 8);
	expect_path(path, want);
}

START_TEST(canon_path_encodes_control_and_high_bytes)
{
	unsigned c;

	for (c = 0x01; c <= 0x1f; c++)
		expect_byte_encoded(c);
	for (c = 0x7f; c <= 0xff; c++)
		expect_byte_encoded(c);
}
END_TEST

static void expect_query(const char *query, const char *want)
{
	struct buf got = BUF_INIT;

	ck_assert_int_eq(sigv4_canon_query(&got, query), 0);
	ck_assert_msg(strcmp(got.data, want) == 0, "query '%s': expected '%s', got '%s'", query,
		      want, got.data);
	buf_release(&got);
}

/* A query as sent is decoded and encoded again, so either spelling signs the same. */
START_TEST(canon_query_encodes_once)
{
	expect_query("prefix=photos%2F2024%2F&list-type=2", "list-type=2&prefix=photos%2F2024%2F");
	expect_query("prefix=photos/2024/&list-type=2", "list-type=2&prefix=photos%2F2024%2F");
	expect_query("prefix=a%20b%2Bc", "prefix=a%20b%2Bc");
	expect_query("uploads", "uploads=");
	expect_query("b=2&&a=1&", "a=1&b=2");
	expect_query(NULL, "");
	expect_query("", "");
}
END_TEST

static Suite *sigv4_suite(void)
{
	Suite *s = suite_create("sigv4");
	TCase *suite = tcase_create("aws-test-suite");
	TCase *docs = tcase_create("s3-docs");
	TCase *keys = tcase_create("hostile-keys");
	int n_suite = (int)ARRAY_SIZE(suite_vectors), n_docs = (int)ARRAY_SIZE(docs_vectors);

	tcase_add_loop_test(suite, suite_canonical_request, 0, n_suite);
	tcase_add_loop_test(suite, suite_string_to_sign, 0, n_suite);
	tcase_add_loop_test(suite, suite_authorization, 0, n_suite);
	tcase_add_loop_test(docs, docs_canonical_request, 0, n_docs);
	tcase_add_loop_test(docs, docs_string_to_sign, 0, n_docs);
	tcase_add_loop_test(docs, docs_authorization, 0, n_docs);
	tcase_add_test(docs, docs_presigned_query);
	tcase_add_test(docs, docs_presigned_canonical_request);
	tcase_add_test(docs, docs_presigned_string_to_sign);
	tcase_add_test(keys, canon_path_encodes_reserved_bytes);
	tcase_add_test(keys, canon_path_keeps_unreserved_bytes);
	tcase_add_test(keys, canon_path_does_not_normalise);
	tcase_add_test(keys, canon_path_encodes_utf8_bytes);
	tcase_add_test(keys, canon_path_long_key);
	tcase_add_test(keys, canon_path_encodes_control_and_high_bytes);
	tcase_add_test(keys, canon_query_encodes_once);
	suite_add_tcase(s, suite);
	suite_add_tcase(s, docs);
	suite_add_tcase(s, keys);
	return s;
}

int main(void)
{
	return test_main(sigv4_suite());
}
