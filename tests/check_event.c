/*
 * Unit tests of the canonical event: decoding every dialect (fixtures under
 * tests/fixtures/{aws,minio,ceph-rgw}), refusing what is wrong, the canonical
 * JSON and its round trip, reprocess events and the event-name helpers.
 */
#include "tests/testutil.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/event.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* "photos/a b+c&ü%.jpg": the key of every put-special-key.json fixture. */
#define SPECIAL_KEY "photos/a b+c&\xc3\xbc%.jpg"

/* Decodes a fixture that holds exactly one record into *ev. */
static void decode_one(const char *fixture, struct event *ev)
{
	struct event_list l = EVENT_LIST_INIT;
	struct buf b = BUF_INIT;
	struct err e = ERR_INIT;

	test_read_fixture(&b, fixture);
	if (event_decode(b.data, b.len, &l, &e) < 0)
		ck_abort_msg("%s: %s", fixture, e.msg);
	ck_assert_uint_eq(l.n, 1);
	*ev = l.v[0];
	l.n = 0;
	event_list_release(&l);
	buf_release(&b);
}

/* Decodes a body that must be refused; returns the error. */
static struct err decode_fails(const char *body, size_t len)
{
	struct event_list l = EVENT_LIST_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(event_decode(body, len, &l, &e), -1);
	ck_assert_uint_eq(l.n, 0);
	ck_assert(err_is_set(&e));
	ck_assert_ptr_null(strchr(e.msg, '\n'));
	return e;
}

static void assert_msg_has(const struct err *e, const char *part)
{
	if (!strstr(e->msg, part))
		ck_abort_msg("error '%s' does not mention '%s'", e->msg, part);
}

START_TEST(dialects_decode_one_key_alike)
{
	static const char *const fixtures[] = { "fixtures/aws/put-special-key.json",
						"fixtures/minio/put-special-key.json",
						"fixtures/ceph-rgw/put-special-key.json" };
	static const enum event_source sources[] = { EVENT_SRC_AWS, EVENT_SRC_MINIO,
						     EVENT_SRC_CEPH };
	size_t i;

	for (i = 0; i < 3; i++) {
		struct event ev = EVENT_INIT;

		decode_one(fixtures[i], &ev);
		ck_assert_str_eq(ev.key, SPECIAL_KEY);
		ck_assert_uint_eq(ev.key_len, strlen(SPECIAL_KEY));
		ck_assert_str_eq(ev.name, "s3:ObjectCreated:Put");
		ck_assert_uint_eq(ev.size, 6);
		ck_assert_str_eq(ev.etag, "b1946ac92492d2347c6235b4d2611184");
		ck_assert_int_eq(ev.source, sources[i]);
		ck_assert_int_eq(ev.depth, 0);
		event_release(&ev);
	}
}
END_TEST

START_TEST(dialects_decode_deletes_alike)
{
	struct event aws = EVENT_INIT, minio = EVENT_INIT, ceph = EVENT_INIT;

	decode_one("fixtures/aws/delete.json", &aws);
	decode_one("fixtures/minio/delete.json", &minio);
	decode_one("fixtures/ceph-rgw/delete-special-key.json", &ceph);
	ck_assert_str_eq(aws.key, SPECIAL_KEY);
	ck_assert_str_eq(minio.key, SPECIAL_KEY);
	ck_assert_str_eq(ceph.key, SPECIAL_KEY);
	ck_assert_str_eq(aws.name, "s3:ObjectRemoved:Delete");
	ck_assert_str_eq(minio.name, "s3:ObjectRemoved:Delete");
	ck_assert_str_eq(ceph.name, "s3:ObjectRemoved:Delete");
	/* AWS and MinIO send neither size nor eTag for a delete; RGW sends both. */
	ck_assert_uint_eq(aws.size, 0);
	ck_assert_str_eq(aws.etag, "");
	ck_assert_uint_eq(minio.size, 0);
	ck_assert_str_eq(minio.etag, "");
	ck_assert_uint_eq(ceph.size, 6);
	ck_assert_str_eq(aws.sequencer, "0066F1A2B3C4D5E6F8");
	ck_assert_str_eq(aws.version_id, "");
	ck_assert_str_eq(ceph.sequencer, "147D086B6637062A");
	ck_assert_str_eq(event_meta_get(&ceph, "x-amz-meta-foo"), "bar");
	event_release(&aws);
	event_release(&minio);
	event_release(&ceph);
}
END_TEST

START_TEST(ceph_keys_are_not_decoded)
{
	struct event ev = EVENT_INIT;

	decode_one("fixtures/ceph-rgw/put-literal-escapes.json", &ev);
	ck_assert_str_eq(ev.key, "lit/%41%00+x");
	ck_assert_uint_eq(ev.key_len, 12);
	event_release(&ev);
}
END_TEST

START_TEST(ceph_fixtures)
{
	struct event ev = EVENT_INIT;

	decode_one("fixtures/ceph-rgw/put-key-with-spaces.json", &ev);
	ck_assert_str_eq(ev.name, "s3:ObjectCreated:Put");
	ck_assert_str_eq(ev.bucket, "bsync");
	ck_assert_str_eq(ev.key, "dir/with space/a b.txt");
	ck_assert_uint_eq(ev.size, 5);
	ck_assert_str_eq(ev.etag, "6137cde4893c59f76f005a8123d8e8e6");
	ck_assert_str_eq(ev.version_id, "");
	ck_assert_str_eq(ev.sequencer, "826A086B327FA812");
	ck_assert_str_eq(ev.time, "2026-11-26T17:21:06.311985Z");
	ck_assert_int_eq(ev.source, EVENT_SRC_CEPH);
	ck_assert_uint_eq(ev.nmeta, 2);
	ck_assert_str_eq(event_meta_get(&ev, "X-Amz-Date"), "20261126T172106Z");
	ck_assert_ptr_nonnull(strstr(ev.raw, "\"eventId\":"
					     "\"1795713666.313032.6137cde4893c59f76f005a8123d8e8e6\""));
	event_release(&ev);

	decode_one("fixtures/ceph-rgw/complete-multipart-upload.json", &ev);
	ck_assert_str_eq(ev.name, "s3:ObjectCreated:CompleteMultipartUpload");
	ck_assert_str_eq(ev.key, "multi part/\xc3\xbc+big.bin");
	ck_assert_uint_eq(ev.size, 20971520);
	ck_assert_str_eq(ev.etag, "4f243e34f1e4e656efbb1960869bbe66-3");
	ck_assert_str_eq(ev.sequencer, "F86B086B3F7E961D");
	event_release(&ev);

	decode_one("fixtures/ceph-rgw/delete.json", &ev);
	ck_assert_str_eq(ev.name, "s3:ObjectRemoved:Delete");
	ck_assert_str_eq(ev.key, "plain.txt");
	ck_assert_uint_eq(ev.size, 5);
	ck_assert_uint_eq(ev.nmeta, 3);
	ck_assert_str_eq(ev.meta[2].key, "x-amz-meta-foo");
	ck_assert_str_eq(event_meta_get(&ev, "X-AMZ-META-FOO"), "bar");
	ck_assert_ptr_null(event_meta_get(&ev, "x-amz-meta-bar"));
	event_release(&ev);

	decode_one("fixtures/ceph-rgw/put-long-key.json", &ev);
	ck_assert_uint_eq(ev.key_len, 709);
	ck_assert_uint_eq(strlen(ev.key), 709);
	ck_assert_int_eq(strncmp(ev.key, "long/xxx", 8), 0);
	ck_assert_str_eq(ev.key + 705, ".txt");
	event_release(&ev);
}
END_TEST

START_TEST(aws_and_minio_examples)
{
	struct event ev = EVENT_INIT;

	decode_one("fixtures/aws/put.json", &ev);
	ck_assert_str_eq(ev.name, "s3:ObjectCreated:Put");
	ck_assert_str_eq(ev.bucket, "mybucket");
	ck_assert_str_eq(ev.key, "HappyFace.jpg");
	ck_assert_uint_eq(ev.size, 1024);
	ck_assert_str_eq(ev.etag, "d41d8cd98f00b204e9800998ecf8427e");
	ck_assert_str_eq(ev.version_id, "096fKKXTRTtl3on89fVO.nfljtsv6qko");
	ck_assert_str_eq(ev.sequencer, "0055AED6DCD90281E5");
	ck_assert_str_eq(ev.time, "1970-01-01T00:00:00.000Z");
	ck_assert_uint_eq(ev.nmeta, 0);
	event_release(&ev);

	decode_one("fixtures/minio/put.json", &ev);
	ck_assert_str_eq(ev.name, "s3:ObjectCreated:Put");
	ck_assert_str_eq(ev.bucket, "anze");
	ck_assert_str_eq(ev.key, "hello.jpg");
	ck_assert_uint_eq(ev.size, 224662);
	ck_assert_str_eq(ev.etag, "5fc7298143efe1276d39a3466d4e255f-1");
	ck_assert_str_eq(ev.version_id, "1");
	ck_assert_str_eq(ev.time, "2019-10-22T09:27:27Z");
	ck_assert_int_eq(ev.source, EVENT_SRC_MINIO);
	ck_assert_str_eq(event_meta_get(&ev, "content-type"), "image/jpeg");
	event_release(&ev);
}
END_TEST

START_TEST(test_event_and_empty_records_make_no_events)
{
	static const char empty[] = "{\"Records\":[]}";
	struct event_list l = EVENT_LIST_INIT;
	struct buf b = BUF_INIT;
	struct err e = ERR_INIT;

	test_read_fixture(&b, "fixtures/aws/test-event.json");
	ck_assert_int_eq(event_decode(b.data, b.len, &l, &e), 0);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_int_eq(event_decode(empty, strlen(empty), &l, &e), 0);
	ck_assert_uint_eq(l.n, 0);
	ck_assert(!err_is_set(&e));
	buf_release(&b);
}
END_TEST

/* Two records of one body, and a failed decode leaving earlier events alone. */
START_TEST(records_in_order_and_failure_leaves_list)
{
	static const char two[] =
		"{\"Records\":[{\"eventVersion\":\"2.1\",\"eventSource\":\"aws:s3\","
		"\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"b\"},"
		"\"object\":{\"key\":\"one\",\"size\":\"7\"}}},"
		"{\"eventVersion\":\"2.1\",\"eventSource\":\"aws:s3\","
		"\"eventName\":\"ObjectRemoved:Delete\",\"s3\":{\"bucket\":{\"name\":\"b\"},"
		"\"object\":{\"key\":\"two\"}}}]}";
	static const char second_bad[] =
		"{\"Records\":[{\"eventVersion\":\"2.1\",\"eventSource\":\"aws:s3\","
		"\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"b\"},"
		"\"object\":{\"key\":\"three\"}}},{\"eventVersion\":\"2.1\"}]}";
	struct event_list l = EVENT_LIST_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(event_decode(two, strlen(two), &l, &e), 0);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(l.v[0].key, "one");
	ck_assert_uint_eq(l.v[0].size, 7);
	ck_assert_str_eq(l.v[1].key, "two");
	ck_assert_str_eq(l.v[1].name, "s3:ObjectRemoved:Delete");
	ck_assert_int_eq(event_decode(second_bad, strlen(second_bad), &l, &e), -1);
	assert_msg_has(&e, "Records[1]: 'eventSource' is missing");
	ck_assert_uint_eq(l.n, 2);
	event_list_release(&l);
	ck_assert_ptr_null(l.v);
	ck_assert_uint_eq(l.n, 0);
}
END_TEST

/* The fixture's text with its first `old` replaced by `new`. */
static void fixture_replaced(struct buf *out, const char *fixture, const char *old, const char *new)
{
	struct buf b = BUF_INIT;
	const char *at;

	test_read_fixture(&b, fixture);
	at = strstr(b.data, old);
	ck_assert_ptr_nonnull(at);
	buf_add(out, b.data, (size_t)(at - b.data));
	buf_adds(out, new);
	buf_adds(out, at + strlen(old));
	buf_release(&b);
}

START_TEST(nul_key_is_refused)
{
	static const char *const fixtures[] = { "fixtures/aws/put-special-key.json",
						"fixtures/minio/put-special-key.json" };
	static const char *const sent[] = { "photos/a+b%2Bc%26%C3%BC%25.jpg",
					    "photos%2Fa+b%2Bc%26%C3%BC%25.jpg" };
	static const char *const keys[] = { "a%00b", "%00", "photos/x%00" };
	size_t i, j;

	for (i = 0; i < 2; i++) {
		for (j = 0; j < 3; j++) {
			struct buf body = BUF_INIT;
			struct err e;

			fixture_replaced(&body, fixtures[i], sent[i], keys[j]);
			e = decode_fails(body.data, body.len);
			assert_msg_has(&e, "NUL byte");
			ck_assert_int_eq(e.code, ERR_PARSE);
			buf_release(&body);
		}
	}
}
END_TEST

/*
 * Each case changes one field of a good record (of the dialect given) to
 * `value` (JSON text; NULL removes the field) and expects an error naming
 * `want`.
 */
struct bad_field {
	const char *fixture;
	const char *path;
	const char *value;
	const char *want;
};

#define AWS   "fixtures/aws/put-special-key.json"
#define MINIO "fixtures/minio/put-special-key.json"
#define CEPH  "fixtures/ceph-rgw/put-special-key.json"

static const struct bad_field bad_fields[] = {
	{ AWS, "eventSource", NULL, "Records[0]: 'eventSource' is missing" },
	{ AWS, "eventSource", "\"gcs:storage\"", "unknown eventSource 'gcs:storage'" },
	{ AWS, "eventSource", "7", "'eventSource' is not a string" },
	{ AWS, "eventVersion", NULL, "'eventVersion' is missing" },
	{ AWS, "eventVersion", "\"1.0\"", "unsupported eventVersion '1.0'" },
	{ AWS, "eventVersion", "\"3.0\"", "unsupported eventVersion '3.0'" },
	{ AWS, "eventVersion", "\"2.x\"", "unsupported eventVersion '2.x'" },
	{ AWS, "eventVersion", "\"20.1\"", "unsupported eventVersion '20.1'" },
	{ AWS, "eventVersion", "2.1", "'eventVersion' is not a string" },
	{ AWS, "eventName", NULL, "'eventName' is missing" },
	{ AWS, "eventName", "null", "'eventName' is missing" },
	{ AWS, "eventName", "[]", "'eventName' is not a string" },
	{ AWS, "eventName", "\"\"", "'eventName' is not an event name" },
	{ AWS, "eventName", "\"Object Created\"", "'eventName' is not an event name" },
	{ AWS, "s3", NULL, "'s3.bucket.name' is missing" },
	{ AWS, "s3", "[]", "'s3' is not an object" },
	{ AWS, "s3.bucket", "\"media\"", "'s3.bucket' is not an object" },
	{ AWS, "s3.bucket.name", NULL, "'s3.bucket.name' is missing" },
	{ AWS, "s3.bucket.name", "\"\"", "'s3.bucket.name' is not a bucket name" },
	{ AWS, "s3.bucket.name", "\"a/b\"", "'s3.bucket.name' is not a bucket name" },
	{ AWS, "s3.object", NULL, "'s3.object.key' is missing" },
	{ AWS, "s3.object.key", NULL, "'s3.object.key' is missing" },
	{ AWS, "s3.object.key", "17", "'s3.object.key' is not a string" },
	{ AWS, "s3.object.key", "\"\"", "the key is empty" },
	{ AWS, "s3.object.key", "\"a%zz\"", "key 'a%zz' has a malformed percent escape" },
	{ AWS, "s3.object.key", "\"a%2\"", "malformed percent escape" },
	{ MINIO, "s3.object.key", "\"%FF%FE\"", "key '%FF%FE' is not UTF-8" },
	{ CEPH, "s3.object.key", "\"\"", "the key is empty" },
	{ AWS, "s3.object.size", "-1", "'s3.object.size' is not a non-negative integer" },
	{ AWS, "s3.object.size", "\"-1\"", "'s3.object.size' is not a non-negative integer" },
	{ AWS, "s3.object.size", "1.5", "'s3.object.size' is not a non-negative integer" },
	{ AWS, "s3.object.size", "6.0", "'s3.object.size' is not a non-negative integer" },
	{ CEPH, "s3.object.size", "\"12a\"", "'s3.object.size' is not a non-negative integer" },
	{ CEPH, "s3.object.size", "\" 12\"", "'s3.object.size' is not a non-negative integer" },
	{ CEPH, "s3.object.size", "\"\"", "'s3.object.size' is not a non-negative integer" },
	{ CEPH, "s3.object.size", "\"18446744073709551616\"", "not a non-negative integer" },
	{ CEPH, "s3.object.size", "\"9223372036854775808\"", "not a non-negative integer" },
	{ AWS, "s3.object.size", "true", "'s3.object.size' is not a non-negative integer" },
	{ AWS, "s3.object.eTag", "5", "'s3.object.eTag' is not a string" },
	{ AWS, "s3.object.versionId", "{}", "'s3.object.versionId' is not a string" },
	{ AWS, "s3.object.sequencer", "1", "'s3.object.sequencer' is not a string" },
	{ AWS, "eventTime", "0", "'eventTime' is not a string" },
	{ CEPH, "s3.object.metadata", "{}", "'s3.object.metadata' is not a list" },
	{ CEPH, "s3.object.metadata", "[{\"key\":\"a\"}]",
	  "'s3.object.metadata[0]' is not a {key, val} pair" },
	{ CEPH, "s3.object.metadata", "[1]", "'s3.object.metadata[0]' is not a {key, val} pair" },
	{ MINIO, "s3.object.userMetadata", "[]", "'s3.object.userMetadata' is not an object" },
	{ MINIO, "s3.object.userMetadata", "{\"a\":1}",
	  "'s3.object.userMetadata.a' is not a string" },
};

/* Sets (or, with value NULL, removes) the member at a dotted path. */
static void set_path(json_t *obj, const char *path, const char *value)
{
	char *copy = strdup(path), *dot, *p = copy;
	json_t *v = NULL;

	while ((dot = strchr(p, '.'))) {
		*dot = '\0';
		obj = json_object_get(obj, p);
		ck_assert_ptr_nonnull(obj);
		p = dot + 1;
	}
	if (value) {
		v = json_loads(value, JSON_DECODE_ANY, NULL);
		ck_assert_ptr_nonnull(v);
		ck_assert_int_eq(json_object_set_new(obj, p, v), 0);
	} else {
		ck_assert_int_eq(json_object_del(obj, p), 0);
	}
	free(copy);
}

START_TEST(bad_field_is_refused)
{
	const struct bad_field *c = &bad_fields[_i];
	struct buf b = BUF_INIT;
	json_t *root, *rec;
	struct err e;
	char *body;

	test_read_fixture(&b, c->fixture);
	root = json_loadb(b.data, b.len, 0, NULL);
	ck_assert_ptr_nonnull(root);
	rec = json_array_get(json_object_get(root, "Records"), 0);
	set_path(rec, c->path, c->value);
	body = json_dumps(root, JSON_COMPACT);
	e = decode_fails(body, strlen(body));
	assert_msg_has(&e, c->want);
	free(body);
	json_decref(root);
	buf_release(&b);
}
END_TEST

struct bad_body {
	const char *body;
	const char *want;
};

static const struct bad_body bad_bodies[] = {
	{ "", "malformed JSON" },
	{ "{", "malformed JSON" },
	{ "{\"Records\":[]} x", "malformed JSON" },
	{ "\"Records\"", "malformed JSON" },
	{ "42", "malformed JSON" },
	{ "[]", "not a JSON object" },
	{ "[{\"Records\":[]}]", "not a JSON object" },
	{ "{}", "not an S3 event notification: no 'Records'" },
	{ "{\"records\":[]}", "no 'Records'" },
	{ "{\"Event\":\"s3:Other\"}", "unsupported notification Event 's3:Other'" },
	{ "{\"Records\":{}}", "'Records' is not a list" },
	{ "{\"Records\":null}", "'Records' is not a list" },
	{ "{\"Records\":[1]}", "Records[0]: not an object" },
	{ "{\"Records\":[[]]}", "Records[0]: not an object" },
	{ "{\"EventName\":1,\"Records\":[]}", "'EventName' is not a string" },
	{ "{\"Records\":[],\"Records\":[]}", "duplicate object key" },
	{ "{\"Records\":[{\"eventSource\":\"ceph:s3\",\"eventSource\":\"aws:s3\"}]}",
	  "duplicate object key" },
	{ "{\"Records\":[{\"eventVersion\":\"2.2\",\"eventSource\":\"ceph:s3\","
	  "\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"b\"},"
	  "\"object\":{\"key\":\"a\\u0000b\"}}}]}",
	  "a string holds \\u0000 (a NUL byte) at line 1 column" },
	{ "{\"Records\":[\"\xff\"]}", "malformed JSON at line 1 column" },
	{ "{\"Records\":[\"\xc3\xbc\" \xff]}", "malformed JSON" },
	{ "{\"Records\":\xc3\xbc}", "invalid token near '?\?'" },
};

START_TEST(bad_body_is_refused)
{
	const struct bad_body *c = &bad_bodies[_i];
	struct err e = decode_fails(c->body, strlen(c->body));
	const char *p;

	assert_msg_has(&e, c->want);
	ck_assert_int_eq(e.code, ERR_PARSE);
	for (p = e.msg; *p; p++) /* the listener puts it in a JSON reply */
		ck_assert_uint_lt((unsigned char)*p, 0x80);
}
END_TEST

/* A body whose only record has key `key` as sent, in dialect `source` ("aws:s3"...). */
static char *body_with_key(const char *source, const char *key)
{
	json_t *root =
		json_pack("{s:[{s:s, s:s, s:s, s:{s:{s:s}, s:{s:s}}}]}", "Records", "eventVersion",
			  "2.1", "eventSource", source, "eventName", "ObjectCreated:Put", "s3",
			  "bucket", "name", "b", "object", "key", key);
	char *body;

	ck_assert_ptr_nonnull(root);
	body = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return body;
}

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

START_TEST(key_length_limits)
{
	static const size_t ok[] = { 1, 1024, EVENT_KEY_MAX };
	struct event_list l = EVENT_LIST_INIT;
	struct err e = ERR_INIT;
	char *key, *body;
	size_t i;

	for (i = 0; i < 3; i++) {
		key = repeat('k', ok[i]);
		body = body_with_key("aws:s3", key);
		ck_assert_int_eq(event_decode(body, strlen(body), &l, &e), 0);
		ck_assert_uint_eq(l.v[i].key_len, ok[i]);
		free(body);
		free(key);
	}
	key = repeat('k', EVENT_KEY_MAX + 1);
	body = body_with_key("ceph:s3", key);
	e = decode_fails(body, strlen(body));
	ck_assert_int_eq(e.code, ERR_LIMIT);
	assert_msg_has(&e, "4097 bytes, more than the 4096 allowed");
	ck_assert_uint_lt(strlen(e.msg), 300);
	free(body);
	free(key);
	/* The limit is on the decoded key: 4096 escapes are 4096 bytes. */
	key = malloc(3 * EVENT_KEY_MAX + 1);
	for (i = 0; i < EVENT_KEY_MAX; i++)
		memcpy(key + 3 * i, "%41", 4);
	body = body_with_key("minio:s3", key);
	ck_assert_int_eq(event_decode(body, strlen(body), &l, &e), 0);
	ck_assert_uint_eq(l.v[3].key_len, EVENT_KEY_MAX);
	ck_assert_int_eq(l.v[3].key[0], 'A');
	free(body);
	free(key);
	event_list_release(&l);
}
END_TEST

START_TEST(deep_nesting_is_refused_without_crashing)
{
	static const char head[] = "{\"Records\":[{\"x\":";
	const size_t depth = 100000;
	struct buf b = BUF_INIT;
	struct err e;
	size_t i;

	for (i = 0; i < depth; i++)
		buf_addch(&b, '[');
	for (i = 0; i < depth; i++)
		buf_addch(&b, ']');
	e = decode_fails(b.data, b.len);
	assert_msg_has(&e, "malformed JSON");
	buf_reset(&b);
	buf_adds(&b, head);
	for (i = 0; i < depth; i++)
		buf_adds(&b, "{\"a\":");
	buf_adds(&b, "1");
	for (i = 0; i < depth; i++)
		buf_addch(&b, '}');
	buf_adds(&b, "}]}");
	e = decode_fails(b.data, b.len);
	assert_msg_has(&e, "depth");
	buf_release(&b);
}
END_TEST

/* Nesting within jansson's limit still decodes and encodes. */
START_TEST(moderate_nesting_round_trips)
{
	struct event_list l = EVENT_LIST_INIT;
	struct event back = EVENT_INIT;
	struct buf b = BUF_INIT, out = BUF_INIT;
	struct err e = ERR_INIT;
	size_t i;

	buf_adds(&b, "{\"Records\":[{\"eventVersion\":\"2.2\",\"eventSource\":\"ceph:s3\","
		     "\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"b\"},"
		     "\"object\":{\"key\":\"k\"}},\"x\":");
	for (i = 0; i < 1500; i++)
		buf_addch(&b, '[');
	for (i = 0; i < 1500; i++)
		buf_addch(&b, ']');
	buf_adds(&b, "}]}");
	if (event_decode(b.data, b.len, &l, &e) < 0)
		ck_abort_msg("%s", e.msg);
	ck_assert_int_eq(event_to_json(&l.v[0], &out, &e), 0);
	ck_assert_int_eq(event_from_json(out.data, out.len, &back, &e), 0);
	ck_assert_str_eq(back.key, "k");
	event_release(&back);
	event_list_release(&l);
	buf_release(&b);
	buf_release(&out);
}
END_TEST

START_TEST(canonical_json_is_exact)
{
	static const char body[] =
		"{\"Records\":[{\"eventVersion\":\"2.1\",\"eventSource\":\"aws:s3\","
		"\"eventTime\":\"1970-01-01T00:00:00.000Z\",\"eventName\":\"ObjectCreated:Put\","
		"\"s3\":{\"bucket\":{\"name\":\"mybucket\"},\"object\":{\"key\":"
		"\"red+flower%26%C3%BC%22.jpg\",\"size\":1024,\"eTag\":"
		"\"d41d8cd98f00b204e9800998ecf8427e\",\"versionId\":\"v1\","
		"\"sequencer\":\"0055AED6DCD90281E5\"}}}]}";
	static const char want[] =
		"{\"version\":1,\"event\":\"s3:ObjectCreated:Put\",\"bucket\":\"mybucket\","
		"\"key\":\"red flower&\xc3\xbc\\\".jpg\",\"size\":1024,"
		"\"etag\":\"d41d8cd98f00b204e9800998ecf8427e\",\"version_id\":\"v1\","
		"\"sequencer\":\"0055AED6DCD90281E5\",\"time\":\"1970-01-01T00:00:00.000Z\","
		"\"source\":\"aws\",\"depth\":0,\"raw\":{\"eventVersion\":\"2.1\","
		"\"eventSource\":\"aws:s3\",\"eventTime\":\"1970-01-01T00:00:00.000Z\","
		"\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"mybucket\"},"
		"\"object\":{\"key\":\"red+flower%26%C3%BC%22.jpg\",\"size\":1024,"
		"\"eTag\":\"d41d8cd98f00b204e9800998ecf8427e\",\"versionId\":\"v1\","
		"\"sequencer\":\"0055AED6DCD90281E5\"}}}}";
	struct event_list l = EVENT_LIST_INIT;
	struct buf out = BUF_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(event_decode(body, strlen(body), &l, &e), 0);
	ck_assert_int_eq(event_to_json(&l.v[0], &out, &e), 0);
	ck_assert_str_eq(out.data, want);
	event_list_release(&l);
	buf_release(&out);
}
END_TEST

/* Every event's raw is its record's JSON (as jansson reads the body), compact: one line. */
static void assert_raw_is_records(const char *body, size_t len)
{
	struct event_list l = EVENT_LIST_INIT;
	struct err e = ERR_INIT;
	json_error_t je;
	json_t *root = json_loadb(body, len, 0, &je), *recs, *raw;
	size_t i;

	ck_assert_ptr_nonnull(root);
	recs = json_object_get(root, "Records");
	if (event_decode(body, len, &l, &e) < 0)
		ck_abort_msg("%s", e.msg);
	ck_assert_uint_eq(l.n, json_array_size(recs));
	for (i = 0; i < l.n; i++) {
		ck_assert_uint_eq(strlen(l.v[i].raw), l.v[i].raw_len);
		ck_assert_ptr_null(strpbrk(l.v[i].raw, "\n\r\t"));
		raw = json_loads(l.v[i].raw, 0, &je);
		if (!raw || !json_equal(raw, json_array_get(recs, i)))
			ck_abort_msg("Records[%zu]: raw '%s' is not the record", i, l.v[i].raw);
		json_decref(raw);
	}
	event_list_release(&l);
	json_decref(root);
}

START_TEST(raw_is_the_record_as_sent)
{
	static const char *const fixtures[] = {
		"fixtures/aws/put.json",
		"fixtures/aws/put-special-key.json",
		"fixtures/minio/put.json",
		"fixtures/minio/put-special-key.json",
		"fixtures/ceph-rgw/put-special-key.json",
		"fixtures/ceph-rgw/complete-multipart-upload.json",
		"fixtures/ceph-rgw/put-literal-escapes.json",
	};
#define REC(key, extra)                                                                       \
	"{\"eventVersion\":\"2.1\",\"eventSource\":\"aws:s3\",\"eventName\":\"ObjectCreated:Put\"," \
	"\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{\"key\":\"" key "\",\"size\":1}}" extra "}"
	static const char *const bodies[] = {
		/* Pretty-printed: the whitespace between tokens goes, what is inside strings stays. */
		"{\n  \"Records\" : [\n    " REC("a b", ", \"x\" : [ 1 , 2 ]") " ,\n  " REC("c", "") " ]\n}\n",
		/* "Records" inside a string before the real member; brackets and quotes in strings. */
		"{\"note\":\"\\\"Records\\\":[{]\",\"Records\":[" REC("k", ",\"y\":\"]}\\\\\"") "]}",
		/* The member name escaped: found by jansson, not by the byte scan (encoded instead). */
		"{\"Rec\\u006frds\":[" REC("k", ",\"z\":1.50") "]}",
		/* Numbers and literals as sent. */
		"{\"Records\":[" REC("k", ",\"n\":[1e3,-0.5,true,false,null]") "]}",
	};
#undef REC
	struct buf b = BUF_INIT;
	size_t i;

	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		buf_reset(&b);
		test_read_fixture(&b, fixtures[i]);
		assert_raw_is_records(b.data, b.len);
	}
	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		assert_raw_is_records(bodies[i], strlen(bodies[i]));
	buf_release(&b);
}
END_TEST

static void assert_same_event(const struct event *a, const struct event *b)
{
	size_t i;

	ck_assert_str_eq(a->name, b->name);
	ck_assert_str_eq(a->bucket, b->bucket);
	ck_assert_uint_eq(a->key_len, b->key_len);
	ck_assert_int_eq(memcmp(a->key, b->key, a->key_len), 0);
	ck_assert_uint_eq(a->size, b->size);
	ck_assert_str_eq(a->etag, b->etag);
	ck_assert_str_eq(a->version_id, b->version_id);
	ck_assert_str_eq(a->sequencer, b->sequencer);
	ck_assert_str_eq(a->time, b->time);
	ck_assert_int_eq(a->source, b->source);
	ck_assert_int_eq(a->depth, b->depth);
	ck_assert_uint_eq(a->raw_len, b->raw_len);
	ck_assert_str_eq(a->raw, b->raw);
	ck_assert_uint_eq(a->nmeta, b->nmeta);
	for (i = 0; i < a->nmeta; i++) {
		ck_assert_str_eq(a->meta[i].key, b->meta[i].key);
		ck_assert_str_eq(a->meta[i].val, b->meta[i].val);
	}
}

static void assert_round_trip(const struct event *ev)
{
	struct buf one = BUF_INIT, two = BUF_INIT;
	struct event back = EVENT_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(event_to_json(ev, &one, &e), 0);
	if (event_from_json(one.data, one.len, &back, &e) < 0)
		ck_abort_msg("%s", e.msg);
	assert_same_event(ev, &back);
	ck_assert_int_eq(event_to_json(&back, &two, &e), 0);
	ck_assert_str_eq(one.data, two.data);
	event_release(&back);
	buf_release(&one);
	buf_release(&two);
}

START_TEST(canonical_json_round_trips)
{
	static const char *const fixtures[] = {
		"fixtures/aws/put.json",
		"fixtures/aws/put-special-key.json",
		"fixtures/aws/delete.json",
		"fixtures/minio/put.json",
		"fixtures/minio/put-special-key.json",
		"fixtures/minio/delete.json",
		"fixtures/ceph-rgw/put-key-with-spaces.json",
		"fixtures/ceph-rgw/complete-multipart-upload.json",
		"fixtures/ceph-rgw/delete.json",
		"fixtures/ceph-rgw/put-long-key.json",
		"fixtures/ceph-rgw/put-special-key.json",
		"fixtures/ceph-rgw/put-literal-escapes.json",
	};
	struct event ev = EVENT_INIT;
	size_t i;

	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		decode_one(fixtures[i], &ev);
		ev.depth = (int)i;
		assert_round_trip(&ev);
		event_release(&ev);
	}
	ck_assert_int_eq(event_for_object(&ev, "b", SPECIAL_KEY, 6, "\"abc\"",
					  "2026-01-01T00:00:00.000Z", NULL),
			 0);
	assert_round_trip(&ev);
	event_release(&ev);
}
END_TEST

struct bad_canonical {
	const char *json;
	const char *want;
};

#define CANON_TAIL \
	"\"etag\":\"\",\"version_id\":\"\",\"sequencer\":\"\",\"time\":\"\",\"source\":\"aws\","
#define CANON(version, key, size, depth, raw)                                                 \
	"{\"version\":" version                                                               \
	",\"event\":\"s3:ObjectCreated:Put\",\"bucket\":\"b\",\"key\":" key ",\"size\":" size \
	"," CANON_TAIL "\"depth\":" depth ",\"raw\":" raw "}"

static const struct bad_canonical bad_canonicals[] = {
	{ CANON("2", "\"k\"", "1", "0", "{}"), "canonical event: 'version' is not 1" },
	{ CANON("\"1\"", "\"k\"", "1", "0", "{}"), "'version' is not 1" },
	{ CANON("1", "\"\"", "1", "0", "{}"), "the key is empty" },
	{ CANON("1", "1", "1", "0", "{}"), "'key' is not a string" },
	{ CANON("1", "\"k\"", "-1", "0", "{}"), "'size' is not a non-negative integer" },
	{ CANON("1", "\"k\"", "null", "0", "{}"), "'size' is not a non-negative integer" },
	{ CANON("1", "\"k\"", "1", "-1", "{}"), "'depth' is not an integer from 0 to 1000" },
	{ CANON("1", "\"k\"", "1", "1001", "{}"), "'depth' is not an integer" },
	{ CANON("1", "\"k\"", "1", "0", "[]"), "'raw' is not an object" },
	{ "{\"version\":1,\"event\":\"s3:ObjectCreated:Put\",\"bucket\":\"b\",\"key\":\"k\","
	  "\"size\":1,\"etag\":\"\",\"version_id\":\"\",\"sequencer\":\"\",\"time\":\"\","
	  "\"source\":\"gcs\",\"depth\":0,\"raw\":{}}",
	  "unknown source 'gcs'" },
	{ "{\"version\":1,\"event\":\"s3:ObjectCreated:Put\",\"bucket\":\"b\",\"key\":\"k\","
	  "\"size\":1,\"version_id\":\"\",\"sequencer\":\"\",\"time\":\"\","
	  "\"source\":\"aws\",\"depth\":0,\"raw\":{}}",
	  "'etag' is missing" },
	{ "[]", "canonical event: not a JSON object" },
};

START_TEST(bad_canonical_is_refused)
{
	const struct bad_canonical *c = &bad_canonicals[_i];
	struct event ev = EVENT_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(event_from_json(c->json, strlen(c->json), &ev, &e), -1);
	assert_msg_has(&e, c->want);
	ck_assert_ptr_null(ev.name);
	ck_assert_ptr_null(ev.raw);
}
END_TEST

START_TEST(good_canonical_is_accepted)
{
	static const char json[] = CANON("1", "\"k\"", "\"12\"", "3", "{\"x\":1}");
	struct event ev = EVENT_INIT;
	struct err e = ERR_INIT;

	if (event_from_json(json, strlen(json), &ev, &e) < 0)
		ck_abort_msg("%s", e.msg);
	ck_assert_uint_eq(ev.size, 12);
	ck_assert_int_eq(ev.depth, 3);
	event_release(&ev);
}
END_TEST

START_TEST(events_for_existing_objects)
{
	struct event ev = EVENT_INIT;
	struct buf out = BUF_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(event_for_object(&ev, "media", "photos/a b.jpg", 48213,
					  "\"9b2cf535f27731c974343645a3985328-2\"",
					  "2026-11-26T17:40:11.000Z", &e),
			 0);
	ck_assert_str_eq(ev.name, "s3:ObjectCreated:Put");
	ck_assert_str_eq(ev.etag, "9b2cf535f27731c974343645a3985328-2");
	ck_assert_int_eq(ev.source, EVENT_SRC_REPROCESS);
	ck_assert_int_eq(ev.depth, 0);
	ck_assert_str_eq(ev.time, "2026-11-26T17:40:11.000Z");
	ck_assert_int_eq(event_to_json(&ev, &out, &e), 0);
	ck_assert_str_eq(out.data,
			 "{\"version\":1,\"event\":\"s3:ObjectCreated:Put\",\"bucket\":\"media\","
			 "\"key\":\"photos/a b.jpg\",\"size\":48213,"
			 "\"etag\":\"9b2cf535f27731c974343645a3985328-2\",\"version_id\":\"\","
			 "\"sequencer\":\"\",\"time\":\"2026-11-26T17:40:11.000Z\","
			 "\"source\":\"reprocess\",\"depth\":0,\"raw\":{\"Bucket\":\"media\","
			 "\"Key\":\"photos/a b.jpg\",\"Size\":48213,"
			 "\"ETag\":\"\\\"9b2cf535f27731c974343645a3985328-2\\\"\","
			 "\"LastModified\":\"2026-11-26T17:40:11.000Z\"}}");
	event_release(&ev);
	ck_assert_int_eq(event_for_object(&ev, "media", "", 1, NULL, NULL, &e), -1);
	assert_msg_has(&e, "the key is empty");
	err_clear(&e);
	ck_assert_int_eq(event_for_object(&ev, "", "k", 1, NULL, NULL, &e), -1);
	assert_msg_has(&e, "not a bucket name");
	err_clear(&e);
	ck_assert_int_eq(event_for_object(&ev, "b", "\xff", 1, NULL, NULL, &e), -1);
	assert_msg_has(&e, "not UTF-8");
	ck_assert_ptr_null(ev.name);
	buf_release(&out);
}
END_TEST

START_TEST(to_json_respects_the_cap)
{
	struct event ev = EVENT_INIT;
	struct buf out = BUF_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(event_for_object(&ev, "b", "k", 1, "e", "t", &e), 0);
	buf_init_cap(&out, 40);
	ck_assert_int_eq(event_to_json(&ev, &out, &e), -1);
	ck_assert_int_eq(e.code, ERR_LIMIT);
	event_release(&ev);
	buf_release(&out);
	ck_assert_int_eq(event_to_json(&ev, &out, &e), -1); /* a released event has no key */
}
END_TEST

START_TEST(event_names)
{
	char *s;

	s = event_name_canonical("ObjectCreated:Put");
	ck_assert_str_eq(s, "s3:ObjectCreated:Put");
	free(s);
	s = event_name_canonical("s3:ObjectRemoved:Delete");
	ck_assert_str_eq(s, "s3:ObjectRemoved:Delete");
	free(s);
	ck_assert_int_eq(event_name_match("s3:ObjectCreated:*", "ObjectCreated:Put"), 1);
	ck_assert_int_eq(event_name_match("ObjectCreated:*", "s3:ObjectCreated:Copy"), 1);
	ck_assert_int_eq(event_name_match("s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"), 0);
	ck_assert_int_eq(event_name_match("s3:ObjectCreated:Put", "s3:ObjectCreated:Put"), 1);
	ck_assert_int_eq(event_name_match("s3:ObjectCreated:Put", "ObjectCreated:Post"), 0);
	ck_assert_int_eq(event_name_match("s3:ObjectCreated:Put", "s3:ObjectCreated:PutX"), 0);
	ck_assert_int_eq(event_name_match("s3:*", "ObjectRemoved:Delete"), 1);
	ck_assert_int_eq(event_name_match("*", "s3:ObjectCreated:Put"), 1);
	ck_assert_int_eq(event_name_match("s3:ObjectCreated:*", "ObjectCreated"), 0);
}
END_TEST

START_TEST(source_names)
{
	enum event_source src;

	ck_assert_str_eq(event_source_name(EVENT_SRC_AWS), "aws");
	ck_assert_str_eq(event_source_name(EVENT_SRC_MINIO), "minio");
	ck_assert_str_eq(event_source_name(EVENT_SRC_CEPH), "ceph");
	ck_assert_str_eq(event_source_name(EVENT_SRC_REPROCESS), "reprocess");
	ck_assert_int_eq(event_source_parse("ceph", &src), 0);
	ck_assert_int_eq(src, EVENT_SRC_CEPH);
	ck_assert_int_eq(event_source_parse("reprocess", &src), 0);
	ck_assert_int_eq(src, EVENT_SRC_REPROCESS);
	ck_assert_int_eq(event_source_parse("ceph:s3", &src), -1);
}
END_TEST

static Suite *event_suite(void)
{
	Suite *s = suite_create("event");
	TCase *t = tcase_create("event");

	tcase_set_timeout(t, 60);
	tcase_add_test(t, dialects_decode_one_key_alike);
	tcase_add_test(t, dialects_decode_deletes_alike);
	tcase_add_test(t, ceph_keys_are_not_decoded);
	tcase_add_test(t, ceph_fixtures);
	tcase_add_test(t, aws_and_minio_examples);
	tcase_add_test(t, test_event_and_empty_records_make_no_events);
	tcase_add_test(t, records_in_order_and_failure_leaves_list);
	tcase_add_test(t, nul_key_is_refused);
	tcase_add_loop_test(t, bad_field_is_refused, 0,
			    (int)(sizeof(bad_fields) / sizeof(bad_fields[0])));
	tcase_add_loop_test(t, bad_body_is_refused, 0,
			    (int)(sizeof(bad_bodies) / sizeof(bad_bodies[0])));
	tcase_add_test(t, key_length_limits);
	tcase_add_test(t, deep_nesting_is_refused_without_crashing);
	tcase_add_test(t, moderate_nesting_round_trips);
	tcase_add_test(t, canonical_json_is_exact);
	tcase_add_test(t, raw_is_the_record_as_sent);
	tcase_add_test(t, canonical_json_round_trips);
	tcase_add_loop_test(t, bad_canonical_is_refused, 0,
			    (int)(sizeof(bad_canonicals) / sizeof(bad_canonicals[0])));
	tcase_add_test(t, good_canonical_is_accepted);
	tcase_add_test(t, events_for_existing_objects);
	tcase_add_test(t, to_json_respects_the_cap);
	tcase_add_test(t, event_names);
	tcase_add_test(t, source_names);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return test_main(event_suite());
}
