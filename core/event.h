/*
 * event: the canonical event, and its decoding from every notification dialect.
 *
 * One notification body (a POST from AWS S3 or a relay, MinIO's webhook
 * target, a Ceph RGW push endpoint) holds zero or more S3 event records.
 * event_decode() turns each record into a `struct event`, decoding the key
 * exactly once the way its sender encoded it:
 *
 *	eventSource  key as sent                           decoded with
 *	aws:s3       URL-encoded, '+' for space, '/' kept  percent, '+' is space
 *	minio:s3     Go url.QueryEscape ('/' is %2F)       percent, '+' is space
 *	ceph:s3      the raw UTF-8 key                     nothing ("%41" stays)
 *
 * The listener decodes, then enqueues; the queue stores event_to_json() and
 * rebuilds the event with event_from_json(); the worker hands the same JSON
 * to the handler on stdin:
 *
 *	struct event_list l = EVENT_LIST_INIT;
 *	struct err e = ERR_INIT;
 *
 *	if (event_decode(body, len, &l, &e) < 0)
 *		return reply_400(e.msg);	// one line, names what is wrong
 *	for (size_t i = 0; i < l.n; i++)
 *		enqueue(&l.v[i]);
 *	event_list_release(&l);
 *
 * `raw` is the record's own bytes (the whitespace between tokens dropped), not
 * jansson's re-encoding of them: encoding it again cost as much as parsing.
 *
 * The canonical JSON, compact, keys in this order:
 *	{"version":1,"event":"s3:ObjectCreated:Put","bucket":..,"key":..,"size":..,
 *	 "etag":..,"version_id":..,"sequencer":..,"time":..,"source":"aws|minio|ceph|reprocess",
 *	 "depth":0,"raw":{the record as the sender sent it}}
 */
#ifndef S3HOOK_EVENT_H
#define S3HOOK_EVENT_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct err;

/* The canonical JSON's "version". */
#define EVENT_JSON_VERSION 1

/*
 * Longest key accepted, in bytes after decoding. S3 allows 1024; the margin
 * lets servers with longer keys through while a runaway value is still refused.
 */
#define EVENT_KEY_MAX 4096

/* Longest bucket, etag, version id, sequencer, time or event name accepted. */
#define EVENT_FIELD_MAX 1024

/* Deepest `depth` accepted by event_from_json() (handlers' max_depth is far lower). */
#define EVENT_DEPTH_MAX 1000

enum event_source {
	EVENT_SRC_AWS,
	EVENT_SRC_MINIO,
	EVENT_SRC_CEPH,
	EVENT_SRC_REPROCESS,
};

/* One user metadata entry, as the sender named it (Ceph: "x-amz-meta-foo"). */
struct event_meta {
	char *key;
	char *val;
};

/*
 * After a successful event_decode(), event_from_json() or event_for_object()
 * every string below is set (never NULL), owned by the event, and freed by
 * event_release(). An absent optional field is "".
 */
struct event {
	char *name; /* always "s3:"-prefixed: "s3:ObjectCreated:Put" */
	char *bucket;
	char *key; /* decoded bytes; never holds a NUL, so also a C string */
	size_t key_len;
	uint64_t size;	  /* 0 when the sender sent none (deletes) */
	char *etag;	  /* without quotes; "" for deletes */
	char *version_id; /* "" when none */
	char *sequencer;  /* "" when none */
	char *time;	  /* ISO 8601, as sent; "" when none */
	enum event_source source;
	int depth;		 /* 0 for notifications; the producer's depth + 1 later on */
	char *raw;		 /* the record as sent: compact JSON text of one object */
	size_t raw_len;
	struct event_meta *meta; /* Ceph "metadata", AWS/MinIO "userMetadata"; in order sent */
	size_t nmeta;
};

#define EVENT_INIT { .name = NULL }

/* Frees what the event owns and returns it to EVENT_INIT. */
void event_release(struct event *ev);

/* A growable array of events; each is released by event_list_release(). */
struct event_list {
	struct event *v;
	size_t n;
	size_t alloc;
};

#define EVENT_LIST_INIT { .v = NULL, .n = 0, .alloc = 0 }

/* Moves *ev to the end of the list and resets *ev to EVENT_INIT. */
void event_list_add(struct event_list *l, struct event *ev);

/* Releases every event and the array; the list is EVENT_LIST_INIT again. */
void event_list_release(struct event_list *l);

/*
 * Decodes one notification body and appends its events to `out` in record
 * order. Accepted: a bare `Records` array (AWS, Ceph), MinIO's webhook body
 * (`EventName`, `Key`, `Records`; the records are authoritative, `Key` is not
 * read), and AWS's s3:TestEvent. The dialect is chosen per record by
 * `eventSource`. Returns 0 with no events for s3:TestEvent and for an empty
 * `Records` array (a sender with a durable queue would resend a refused body
 * forever, and there is nothing in it to refuse).
 *
 * Fails (-1; ERR_PARSE, or ERR_LIMIT for an over-long field) on malformed
 * JSON, duplicate object keys, nesting deeper than jansson's limit (2048), a
 * body that is not an object, an unknown shape or eventSource, eventVersion
 * other than 2.x, a missing or mistyped bucket, key or eventName, a size that
 * is not a non-negative integer (number or string), a malformed percent
 * escape, or a key that is empty, decodes to a NUL byte, is not UTF-8 or is
 * longer than EVENT_KEY_MAX. The message is one line and names the record
 * and field ("Records[0]: 's3.object.key' is missing"). On failure `out` is
 * left as it was: a notification is taken whole or not at all.
 *
 * `body` need not be NUL-terminated; the caller bounds `len`.
 */
int event_decode(const char *body, size_t len, struct event_list *out, struct err *e);

/*
 * Parses `s` as one JSON object, as event_decode() does: duplicate keys,
 * "\u0000" and trailing bytes refused. NULL with a one-line ASCII message
 * (ERR_PARSE) when it is not one. For other JSON from the same
 * senders (an SNS envelope); json_decref() the result.
 */
struct json_t;
struct json_t *event_json_object(const char *s, size_t len, struct err *e);

/*
 * Appends the canonical JSON of `ev` (compact, one object, no newline) to
 * `out`. Fails when `out`'s cap is reached (ERR_LIMIT) or a field cannot be
 * encoded (ERR_INTERNAL); `out` then holds the bytes appended so far.
 */
int event_to_json(const struct event *ev, struct buf *out, struct err *e);

/*
 * Rebuilds an event from its canonical JSON (what event_to_json() wrote).
 * `ev` must be EVENT_INIT (or released); it is set only on success. The
 * metadata is taken again from `raw`. Every field must be present with its
 * type; version must be EVENT_JSON_VERSION. `raw` sits one level shallower
 * here than in the notification body, so the JSON of every decoded event
 * parses again within jansson's depth limit.
 */
int event_from_json(const char *json, size_t len, struct event *ev, struct err *e);

/*
 * Builds the event `reprocess` runs handlers with for an object that already
 * exists (a ListObjectsV2 entry): name "s3:ObjectCreated:Put", source
 * EVENT_SRC_REPROCESS, depth 0. `key` is the decoded key, `etag` may carry
 * its quotes (they are dropped), `last_modified` becomes `time`. raw is
 * {"Bucket":..,"Key":..,"Size":..,"ETag":..,"LastModified":..} with the
 * values as given. `ev` must be EVENT_INIT; it is set only on success.
 */
int event_for_object(struct event *ev, const char *bucket, const char *key, uint64_t size,
		     const char *etag, const char *last_modified, struct err *e);

/* "aws", "minio", "ceph", "reprocess". */
const char *event_source_name(enum event_source src);

/* The reverse of event_source_name(); -1 for anything else. */
int event_source_parse(const char *name, enum event_source *out);

/* The value of the first metadata entry named `name` (ASCII case ignored); NULL if none. */
const char *event_meta_get(const struct event *ev, const char *name);

/*
 * An event name in its canonical, "s3:"-prefixed form: "ObjectCreated:Put"
 * (AWS, Ceph) and "s3:ObjectCreated:Put" (MinIO) both give
 * "s3:ObjectCreated:Put". The caller frees the result.
 */
char *event_name_canonical(const char *name);

/*
 * Whether event `name` matches `pattern` as S3 notification filters do: an
 * exact name, or a prefix ending in '*' ("s3:ObjectCreated:*", "s3:*").
 * Either may be given with or without the "s3:" prefix. 1 on a match, else 0.
 */
int event_name_match(const char *pattern, const char *name);

#endif
