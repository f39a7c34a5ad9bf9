/*
 * fuzz_event: the notification decoder, every dialect.
 *
 * Each input is used twice:
 *  - as a whole notification body for event_decode(); every event it yields
 *    must survive event_to_json() -> event_from_json() unchanged, and the
 *    second JSON must equal the first byte for byte (the queue stores the
 *    first and the worker rebuilds the event from it);
 *  - as the object key inside a well-formed record of each dialect (aws:s3,
 *    minio:s3, ceph:s3), where the decoded key is checked against a reference
 *    decoder written here from the rules in core/event.h. Mutating raw bytes
 *    inside valid JSON reaches the key decoding far faster than mutating a
 *    whole body does.
 */
#include "core/buf.h"
#include "core/err.h"
#include "core/event.h"
#include "tests/fuzz/fuzz.h"

#include <jansson.h>

static void check_event_fields(const struct event *ev)
{
	FUZZ_ASSERT(ev->name && ev->bucket && ev->key && ev->etag && ev->version_id &&
		    ev->sequencer && ev->time && ev->raw);
	FUZZ_ASSERT(strncmp(ev->name, "s3:", 3) == 0);
	FUZZ_ASSERT(ev->key_len > 0 && ev->key_len <= EVENT_KEY_MAX);
	FUZZ_ASSERT(strlen(ev->key) == ev->key_len);
	FUZZ_ASSERT(ev->bucket[0] && !strchr(ev->bucket, '/'));
	FUZZ_ASSERT(ev->depth == 0 && ev->size <= INT64_MAX);
	FUZZ_ASSERT(strlen(ev->raw) == ev->raw_len);
}

/* Each event's raw must read back as its record in the body, as jansson reads the body. */
static void check_raw(const uint8_t *data, size_t size, const struct event_list *l)
{
	json_t *root = json_loadb((const char *)data, size, 0, NULL), *recs, *raw;
	size_t i;

	FUZZ_ASSERT(root);
	recs = json_object_get(root, "Records");
	FUZZ_ASSERT(json_array_size(recs) == l->n - 1);
	for (i = 1; i < l->n; i++) {
		raw = json_loads(l->v[i].raw, 0, NULL);
		if (!raw || !json_equal(raw, json_array_get(recs, i - 1)))
			fuzz_fail("raw '%s' is not Records[%zu]", l->v[i].raw, i - 1);
		json_decref(raw);
	}
	json_decref(root);
}

static void check_same(const struct event *a, const struct event *b)
{
	size_t i;

	FUZZ_ASSERT(strcmp(a->name, b->name) == 0);
	FUZZ_ASSERT(strcmp(a->bucket, b->bucket) == 0);
	FUZZ_ASSERT(a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0);
	FUZZ_ASSERT(a->size == b->size && a->depth == b->depth && a->source == b->source);
	FUZZ_ASSERT(strcmp(a->etag, b->etag) == 0);
	FUZZ_ASSERT(strcmp(a->version_id, b->version_id) == 0);
	FUZZ_ASSERT(strcmp(a->sequencer, b->sequencer) == 0);
	FUZZ_ASSERT(strcmp(a->time, b->time) == 0);
	FUZZ_ASSERT(a->raw_len == b->raw_len && strcmp(a->raw, b->raw) == 0);
	FUZZ_ASSERT(a->nmeta == b->nmeta);
	for (i = 0; i < a->nmeta; i++) {
		FUZZ_ASSERT(strcmp(a->meta[i].key, b->meta[i].key) == 0);
		FUZZ_ASSERT(strcmp(a->meta[i].val, b->meta[i].val) == 0);
	}
}

/* The canonical JSON of ev must rebuild the same event, and encode again to the same bytes. */
static void round_trip(const struct event *ev)
{
	struct buf j1 = BUF_INIT, j2 = BUF_INIT;
	struct event back = EVENT_INIT;
	struct err e = ERR_INIT;

	if (event_to_json(ev, &j1, &e) < 0)
		fuzz_fail("event_to_json of a decoded event: %s", e.msg);
	if (event_from_json(j1.data, j1.len, &back, &e) < 0)
		fuzz_fail("event_from_json of '%s': %s", j1.data, e.msg);
	check_same(ev, &back);
	if (event_to_json(&back, &j2, &e) < 0)
		fuzz_fail("event_to_json of a rebuilt event: %s", e.msg);
	if (j1.len != j2.len || memcmp(j1.data, j2.data, j1.len) != 0)
		fuzz_fail("canonical JSON changed:\n%s\n%s", j1.data, j2.data);
	event_release(&back);
	buf_release(&j1);
	buf_release(&j2);
}

/*
 * Decodes body into a list that already holds one event, to check that a
 * failure leaves the list as it was and success only appends. Returns the
 * result; on success *out holds the new events (the caller releases it).
 */
static int decode(const char *body, size_t len, struct event_list *out)
{
	struct event first = EVENT_INIT;
	struct err e = ERR_INIT;
	int r;

	if (event_for_object(&first, "sentinel", "sentinel-key", 1, "\"e\"", "", &e) < 0)
		fuzz_fail("event_for_object: %s", e.msg);
	event_list_add(out, &first);
	r = event_decode(body, len, out, &e);
	FUZZ_ASSERT(out->n >= 1 && strcmp(out->v[0].key, "sentinel-key") == 0);
	if (r < 0) {
		FUZZ_ASSERT(out->n == 1);
		FUZZ_ASSERT(e.code == ERR_PARSE || e.code == ERR_LIMIT);
		fuzz_check_msg(e.msg);
	} else {
		FUZZ_ASSERT(!err_is_set(&e));
	}
	return r;
}

static void fuzz_body(const uint8_t *data, size_t size)
{
	struct event_list l = EVENT_LIST_INIT;
	size_t i;

	if (decode((const char *)data, size, &l) == 0) {
		check_raw(data, size, &l);
		for (i = 1; i < l.n; i++) {
			check_event_fields(&l.v[i]);
			round_trip(&l.v[i]);
		}
	}
	event_list_release(&l);
}

/* ---- the key inside each dialect's record ------------------------------------------- */

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decoding with '+' for a space, as AWS and MinIO encode keys; -1 on a bad escape. */
static int ref_pct_decode(struct buf *out, const uint8_t *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '%') {
			if (len - i < 3 || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
				return -1;
			buf_addch(out, (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
			i += 2;
		} else {
			buf_addch(out, s[i] == '+' ? ' ' : (char)s[i]);
		}
	}
	return 0;
}

/* What the decoder must do with key bytes `s` from `source`: 0 and *want, or -1. */
static int expected_key(const char *source, const uint8_t *s, size_t len, struct buf *want)
{
	/* JSON itself refuses bytes that are not UTF-8, and "\u0000" (JSON_ALLOW_NUL is off). */
	if (!ref_utf8(s, len) || memchr(s, 0, len))
		return -1;
	if (strcmp(source, "ceph:s3") == 0)
		buf_add(want, s, len);
	else if (ref_pct_decode(want, s, len) < 0)
		return -1;
	if (want->len == 0 || want->len > EVENT_KEY_MAX || memchr(want->data, 0, want->len) ||
	    !ref_utf8((const uint8_t *)want->data, want->len))
		return -1;
	return 0;
}

static void fuzz_key(const char *source, const uint8_t *data, size_t size)
{
	struct event_list l = EVENT_LIST_INIT;
	struct buf body = BUF_INIT, want = BUF_INIT;
	int r, expect;

	buf_addf(&body,
		 "{\"Records\":[{\"eventVersion\":\"2.1\",\"eventSource\":\"%s\","
		 "\"eventTime\":\"2026-01-01T00:00:00.000Z\",\"eventName\":\"ObjectCreated:Put\","
		 "\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{\"key\":\"",
		 source);
	json_quote_raw(&body, data, size);
	buf_adds(&body, "\",\"size\":1,\"eTag\":\"e\",\"sequencer\":\"1\"}}}]}");
	expect = expected_key(source, data, size, &want);
	r = decode(body.data, body.len, &l);
	if (r != expect)
		fuzz_fail("%s key of %zu bytes: decode gave %d, the reference %d", source, size, r,
			  expect);
	if (r == 0) {
		FUZZ_ASSERT(l.n == 2);
		check_event_fields(&l.v[1]);
		if (l.v[1].key_len != want.len || memcmp(l.v[1].key, want.data, want.len) != 0)
			fuzz_fail("%s key decoded to '%s', the reference to '%s'", source,
				  l.v[1].key, want.data);
		round_trip(&l.v[1]);
	}
	event_list_release(&l);
	buf_release(&body);
	buf_release(&want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_body(data, size);
	fuzz_key("aws:s3", data, size);
	fuzz_key("minio:s3", data, size);
	fuzz_key("ceph:s3", data, size);
	return 0;
}
