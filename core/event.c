#include "core/event.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Flags for every json_loadb() here. Duplicate object keys are refused: the
 * raw record goes on to handlers whose JSON parsers may keep the other copy,
 * and would then see another key than the one the rules matched. The EOF
 * check stays on (trailing bytes are refused); JSON_DECODE_ANY and
 * JSON_ALLOW_NUL stay off, so a bare scalar and a "\u0000" inside any string
 * are refused by the parser. jansson bounds nesting itself
 * (JSON_PARSER_MAX_DEPTH, 2048 in 2.14), so deep nesting cannot exhaust the
 * stack; a unit test holds it to that.
 */
#define LOAD_FLAGS JSON_REJECT_DUPLICATES

/* Longest event name: the longest S3 defines is under 60 bytes. */
#define NAME_MAX_LEN 128

/* S3 allows 63-byte bucket names, Ceph with relaxed names 255. */
#define BUCKET_MAX_LEN 255

static const char *const source_names[] = {
	[EVENT_SRC_AWS] = "aws",
	[EVENT_SRC_MINIO] = "minio",
	[EVENT_SRC_CEPH] = "ceph",
	[EVENT_SRC_REPROCESS] = "reprocess",
};

void event_release(struct event *ev)
{
	size_t i;

	free(ev->name);
	free(ev->bucket);
	free(ev->key);
	free(ev->etag);
	free(ev->version_id);
	free(ev->sequencer);
	free(ev->time);
	json_decref(ev->raw);
	for (i = 0; i < ev->nmeta; i++) {
		free(ev->meta[i].key);
		free(ev->meta[i].val);
	}
	free(ev->meta);
	*ev = (struct event)EVENT_INIT;
}

void event_list_add(struct event_list *l, struct event *ev)
{
	if (l->n == l->alloc) {
		l->alloc = l->alloc ? 2 * l->alloc : 4;
		l->v = xrealloc(l->v, l->alloc * sizeof(*l->v));
	}
	l->v[l->n++] = *ev;
	*ev = (struct event)EVENT_INIT;
}

void event_list_release(struct event_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		event_release(&l->v[i]);
	free(l->v);
	*l = (struct event_list)EVENT_LIST_INIT;
}

const char *event_source_name(enum event_source src)
{
	if ((size_t)src >= sizeof(source_names) / sizeof(source_names[0]))
		return "?";
	return source_names[src];
}

int event_source_parse(const char *name, enum event_source *out)
{
	size_t i;

	for (i = 0; i < sizeof(source_names) / sizeof(source_names[0]); i++) {
		if (strcmp(name, source_names[i]) == 0) {
			*out = (enum event_source)i;
			return 0;
		}
	}
	return -1;
}

const char *event_meta_get(const struct event *ev, const char *name)
{
	size_t i;

	for (i = 0; i < ev->nmeta; i++)
		if (strcasecmp(ev->meta[i].key, name) == 0)
			return ev->meta[i].val;
	return NULL;
}

static const char *unprefixed(const char *name)
{
	return str_starts_with(name, "s3:") ? name + 3 : name;
}

char *event_name_canonical(const char *name)
{
	struct buf b = BUF_INIT;

	buf_adds(&b, "s3:");
	buf_adds(&b, unprefixed(name));
	return buf_detach(&b, NULL);
}

int event_name_match(const char *pattern, const char *name)
{
	const char *p = unprefixed(pattern), *n = unprefixed(name);
	size_t plen = strlen(p);

	if (plen && p[plen - 1] == '*')
		return strncmp(p, n, plen - 1) == 0;
	return strcmp(p, n) == 0;
}

/* Parsing and field access. */

/*
 * jansson quotes the bytes near a syntax error, which may not be UTF-8; the
 * message ends up in a JSON reply and in logs, so it keeps to ASCII.
 */
static void parse_error(struct err *e, json_error_t *je)
{
	char *p;

	if (json_error_code(je) == json_error_null_character) {
		err_set(e, ERR_PARSE, "a string holds \\u0000 (a NUL byte) at line %d column %d",
			je->line, je->column);
		return;
	}
	for (p = je->text; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	err_set(e, ERR_PARSE, "malformed JSON at line %d column %d: %s", je->line, je->column,
		SHORT(je->text));
}

static json_t *parse_object(const char *s, size_t len, struct err *e)
{
	json_error_t je;
	json_t *root = json_loadb(s, len, LOAD_FLAGS, &je);

	if (!root) {
		parse_error(e, &je);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		err_set(e, ERR_PARSE, "not a JSON object");
		return NULL;
	}
	return root;
}

/*
 * Finds the member at a dotted path ("s3.object.key") below `obj`; *out is
 * NULL when a step is absent. Fails when a step on the way is not an object.
 */
static int lookup(json_t *obj, const char *path, json_t **out, struct err *e)
{
	const char *p = path, *dot;
	char step[64];
	size_t n;

	*out = obj;
	for (;;) {
		if (!json_is_object(*out))
			return err_set(e, ERR_PARSE, "'%.*s' is not an object", (int)(p - path - 1),
				       path);
		dot = strchr(p, '.');
		n = dot ? (size_t)(dot - p) : strlen(p);
		if (n >= sizeof(step))
			return err_set(e, ERR_INTERNAL, "path '%s' is too long", path);
		memcpy(step, p, n);
		step[n] = '\0';
		*out = json_object_get(*out, step);
		if (!dot || !*out)
			return 0;
		p = dot + 1;
	}
}

/*
 * The string at `path`. Absent or null gives `dflt`, or an error when `dflt`
 * is NULL (the field is required). `len` may be NULL.
 */
static int get_str(json_t *obj, const char *path, const char *dflt, const char **out, size_t *len,
		   struct err *e)
{
	json_t *v;

	if (lookup(obj, path, &v, e) < 0)
		return -1;
	if (!v || json_is_null(v)) {
		if (!dflt)
			return err_set(e, ERR_PARSE, "'%s' is missing", path);
		*out = dflt;
	} else if (json_is_string(v)) {
		*out = json_string_value(v);
	} else {
		return err_set(e, ERR_PARSE, "'%s' is not a string", path);
	}
	if (len)
		*len = v && json_is_string(v) ? json_string_length(v) : strlen(*out);
	return 0;
}

/* As get_str(), into a copy of at most EVENT_FIELD_MAX bytes. */
static int take_str(json_t *obj, const char *path, const char *dflt, char **out, struct err *e)
{
	const char *s;
	size_t len;

	if (get_str(obj, path, dflt, &s, &len, e) < 0)
		return -1;
	if (len > EVENT_FIELD_MAX)
		return err_set(e, ERR_LIMIT, "'%s' is %zu bytes, more than the %d allowed", path,
			       len, EVENT_FIELD_MAX);
	*out = xstrdup(s);
	return 0;
}

/*
 * A size: a non-negative integer, as a JSON number or a string of digits
 * (Ceph has sent both). Absent or null is 0 unless `required`: deletes carry
 * no size.
 */
static int get_size(json_t *obj, const char *path, int required, uint64_t *out, struct err *e)
{
	json_t *v;

	if (lookup(obj, path, &v, e) < 0)
		return -1;
	*out = 0;
	if ((!v || json_is_null(v)) && !required)
		return 0;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v) && str_to_u64(json_string_value(v), out) == 0 && *out <= INT64_MAX)
		return 0;
	*out = 0;
	return err_set(e, ERR_PARSE, "'%s' is not a non-negative integer", path);
}

/* Checks on the decoded values, shared by every way an event is made. */

static int name_check(const char *name, const char *path, struct err *e)
{
	size_t i, n = strlen(name);

	for (i = 0; i < n && n <= NAME_MAX_LEN; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr(":._-", name[i]))
			break;
	if (n == 0 || n > NAME_MAX_LEN || i < n)
		return err_set(e, ERR_PARSE, "'%s' is not an event name: '%s'", path, SHORT(name));
	return 0;
}

static int bucket_check(const char *bucket, const char *path, struct err *e)
{
	size_t i, n = strlen(bucket);

	for (i = 0; i < n; i++)
		if ((unsigned char)bucket[i] < 0x20 || bucket[i] == 0x7f || bucket[i] == '/')
			break;
	if (n == 0 || n > BUCKET_MAX_LEN || i < n)
		return err_set(e, ERR_PARSE, "'%s' is not a bucket name: '%s'", path,
			       SHORT(bucket));
	return 0;
}

/*
 * A decoded key must be a C string (no NUL) that the canonical JSON can
 * carry: jansson's own UTF-8 check decides, since it is what will encode it.
 * `as_sent` is what messages show: the decoded bytes may not be printable.
 */
static int key_check(const char *key, size_t len, const char *as_sent, struct err *e)
{
	json_t *probe;

	if (len == 0)
		return err_set(e, ERR_PARSE, "the key is empty");
	if (memchr(key, '\0', len))
		return err_set(e, ERR_PARSE, "key '%s' decodes to a NUL byte", SHORT(as_sent));
	if (len > EVENT_KEY_MAX)
		return err_set(e, ERR_LIMIT, "key '%s' is %zu bytes, more than the %d allowed",
			       SHORT(as_sent), len, EVENT_KEY_MAX);
	probe = json_stringn(key, len);
	if (!probe)
		return err_set(e, ERR_PARSE, "key '%s' is not UTF-8", SHORT(as_sent));
	json_decref(probe);
	return 0;
}

/* ETags are quoted in listings and HTTP headers, bare in notifications. */
static void etag_unquote(char *etag)
{
	size_t n = strlen(etag);

	if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') {
		memmove(etag, etag + 1, n - 2);
		etag[n - 2] = '\0';
	}
}

/* User metadata: Ceph's list of {key, val}, AWS's and MinIO's object. */

static void meta_add(struct event *ev, const char *key, const char *val)
{
	ev->meta = xrealloc(ev->meta, (ev->nmeta + 1) * sizeof(*ev->meta));
	ev->meta[ev->nmeta].key = xstrdup(key);
	ev->meta[ev->nmeta].val = xstrdup(val);
	ev->nmeta++;
}

static int meta_from_list(json_t *list, const char *path, struct event *ev, struct err *e)
{
	size_t i;

	if (!json_is_array(list))
		return err_set(e, ERR_PARSE, "'%s' is not a list", path);
	for (i = 0; i < json_array_size(list); i++) {
		json_t *m = json_array_get(list, i);
		json_t *k = json_object_get(m, "key"), *v = json_object_get(m, "val");

		if (!json_is_string(k) || !json_is_string(v))
			return err_set(e, ERR_PARSE, "'%s[%zu]' is not a {key, val} pair", path, i);
		meta_add(ev, json_string_value(k), json_string_value(v));
	}
	return 0;
}

static int meta_from_object(json_t *obj, const char *path, struct event *ev, struct err *e)
{
	void *it;

	if (!json_is_object(obj))
		return err_set(e, ERR_PARSE, "'%s' is not an object", path);
	for (it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
		const char *k = json_object_iter_key(it);
		json_t *v = json_object_iter_value(it);

		if (!json_is_string(v))
			return err_set(e, ERR_PARSE, "'%s.%s' is not a string", path, SHORT(k));
		meta_add(ev, k, json_string_value(v));
	}
	return 0;
}

/* Takes the metadata of record `rec` by ev->source; a record without any is fine. */
static int take_meta(json_t *rec, struct event *ev, struct err *e)
{
	const char *path;
	json_t *v;

	if (ev->source == EVENT_SRC_REPROCESS)
		return 0;
	path = ev->source == EVENT_SRC_CEPH ? "s3.object.metadata" : "s3.object.userMetadata";
	if (lookup(rec, path, &v, e) < 0)
		return -1;
	if (!v || json_is_null(v))
		return 0;
	if (ev->source == EVENT_SRC_CEPH)
		return meta_from_list(v, path, ev, e);
	return meta_from_object(v, path, ev, e);
}

/* One record of a notification. */

static int record_source(json_t *rec, enum event_source *src, struct err *e)
{
	const char *s;

	if (get_str(rec, "eventSource", NULL, &s, NULL, e) < 0)
		return -1;
	if (strcmp(s, "aws:s3") == 0)
		*src = EVENT_SRC_AWS;
	else if (strcmp(s, "minio:s3") == 0)
		*src = EVENT_SRC_MINIO;
	else if (strcmp(s, "ceph:s3") == 0)
		*src = EVENT_SRC_CEPH;
	else
		return err_set(e, ERR_PARSE,
			       "unknown eventSource '%s' (not aws:s3, minio:s3, ceph:s3)",
			       SHORT(s));
	return 0;
}

/*
 * AWS bumps the major version only for incompatible changes and asks readers
 * to compare it for equality; minor versions only add fields.
 */
static int is_version_2(const char *v)
{
	if (v[0] != '2')
		return 0;
	if (v[1] == '\0')
		return 1;
	return v[1] == '.' && v[2] && strspn(v + 2, "0123456789") == strlen(v + 2);
}

static int record_version(json_t *rec, struct err *e)
{
	const char *v;

	if (get_str(rec, "eventVersion", NULL, &v, NULL, e) < 0)
		return -1;
	if (is_version_2(v))
		return 0;
	return err_set(e, ERR_PARSE, "unsupported eventVersion '%s' (2.x is understood)", SHORT(v));
}

static int record_name(json_t *rec, struct event *ev, struct err *e)
{
	const char *name;

	if (get_str(rec, "eventName", NULL, &name, NULL, e) < 0 ||
	    name_check(name, "eventName", e) < 0)
		return -1;
	ev->name = event_name_canonical(name);
	/*
	 * The queue stores the name with its "s3:" prefix, and event_from_json()
	 * checks it so: a name that fits only without the prefix would make a job
	 * no worker could read back.
	 */
	return name_check(ev->name, "eventName", e);
}

/*
 * Decodes the key exactly once, as its sender encoded it. Ceph sends the key
 * as stored: decoding it would turn a literal "%41" into "A" and '+' into a
 * space, naming another object.
 */
static int record_key(json_t *rec, struct event *ev, struct err *e)
{
	struct buf b = BUF_INIT;
	const char *s;
	size_t len;

	if (get_str(rec, "s3.object.key", NULL, &s, &len, e) < 0)
		return -1;
	if (ev->source == EVENT_SRC_CEPH) {
		buf_add(&b, s, len);
	} else if (str_pct_decode(&b, s, len, 1) < 0) {
		buf_release(&b);
		return err_set(e, ERR_PARSE, "key '%s' has a malformed percent escape", SHORT(s));
	}
	if (key_check(b.data, b.len, s, e) < 0) {
		buf_release(&b);
		return -1;
	}
	ev->key = buf_detach(&b, &ev->key_len);
	return 0;
}

static int record_object(json_t *rec, struct event *ev, struct err *e)
{
	if (take_str(rec, "s3.bucket.name", NULL, &ev->bucket, e) < 0 ||
	    bucket_check(ev->bucket, "s3.bucket.name", e) < 0 || record_key(rec, ev, e) < 0 ||
	    get_size(rec, "s3.object.size", 0, &ev->size, e) < 0 ||
	    take_str(rec, "s3.object.eTag", "", &ev->etag, e) < 0 ||
	    take_str(rec, "s3.object.versionId", "", &ev->version_id, e) < 0 ||
	    take_str(rec, "s3.object.sequencer", "", &ev->sequencer, e) < 0 ||
	    take_str(rec, "eventTime", "", &ev->time, e) < 0 || take_meta(rec, ev, e) < 0)
		return -1;
	etag_unquote(ev->etag);
	return 0;
}

static int decode_record(json_t *rec, struct event *ev, struct err *e)
{
	if (!json_is_object(rec))
		return err_set(e, ERR_PARSE, "not an object");
	if (record_source(rec, &ev->source, e) < 0 || record_version(rec, e) < 0 ||
	    record_name(rec, ev, e) < 0 || record_object(rec, ev, e) < 0)
		return -1;
	ev->depth = 0;
	ev->raw = json_incref(rec);
	return 0;
}

static int decode_records(json_t *root, json_t *records, struct event_list *l, struct err *e)
{
	json_t *wrapper_name = json_object_get(root, "EventName");
	size_t i;

	/* MinIO's webhook wrapper: its EventName and Key repeat the record's. */
	if (wrapper_name && !json_is_string(wrapper_name))
		return err_set(e, ERR_PARSE, "'EventName' is not a string");
	if (!json_is_array(records))
		return err_set(e, ERR_PARSE, "'Records' is not a list");
	for (i = 0; i < json_array_size(records); i++) {
		struct event ev = EVENT_INIT;

		if (decode_record(json_array_get(records, i), &ev, e) < 0) {
			event_release(&ev);
			return err_prefix(e, "Records[%zu]", i);
		}
		event_list_add(l, &ev);
	}
	return 0;
}

/* A body without Records: AWS's s3:TestEvent, sent once a configuration is saved. */
static int decode_other(json_t *root, struct err *e)
{
	const char *event = json_string_value(json_object_get(root, "Event"));

	if (event && strcmp(event, "s3:TestEvent") == 0)
		return 0;
	if (event)
		return err_set(e, ERR_PARSE, "unsupported notification Event '%s'", SHORT(event));
	return err_set(e, ERR_PARSE, "not an S3 event notification: no 'Records'");
}

int event_decode(const char *body, size_t len, struct event_list *out, struct err *e)
{
	struct event_list l = EVENT_LIST_INIT;
	json_t *root, *records;
	size_t i;
	int rc;

	root = parse_object(body, len, e);
	if (!root)
		return -1;
	records = json_object_get(root, "Records");
	rc = records ? decode_records(root, records, &l, e) : decode_other(root, e);
	json_decref(root);
	for (i = 0; rc == 0 && i < l.n; i++)
		event_list_add(out, &l.v[i]);
	event_list_release(&l);
	return rc;
}

/* The canonical JSON. */

static json_t *canonical(const struct event *ev)
{
	json_t *o = json_object();
	int bad = ev->size > INT64_MAX;

	/* jansson keeps insertion order (since 2.8): this is the order handlers see. */
	bad |= json_object_set_new(o, "version", json_integer(EVENT_JSON_VERSION));
	bad |= json_object_set_new(o, "event", json_string(ev->name));
	bad |= json_object_set_new(o, "bucket", json_string(ev->bucket));
	bad |= json_object_set_new(o, "key", ev->key ? json_stringn(ev->key, ev->key_len) : NULL);
	bad |= json_object_set_new(o, "size", json_integer((json_int_t)ev->size));
	bad |= json_object_set_new(o, "etag", json_string(ev->etag));
	bad |= json_object_set_new(o, "version_id", json_string(ev->version_id));
	bad |= json_object_set_new(o, "sequencer", json_string(ev->sequencer));
	bad |= json_object_set_new(o, "time", json_string(ev->time));
	bad |= json_object_set_new(o, "source", json_string(event_source_name(ev->source)));
	bad |= json_object_set_new(o, "depth", json_integer(ev->depth));
	bad |= json_object_set_new(o, "raw", ev->raw ? json_incref(ev->raw) : json_object());
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int dump_to_buf(const char *s, size_t n, void *data)
{
	return buf_add(data, s, n);
}

int event_to_json(const struct event *ev, struct buf *out, struct err *e)
{
	json_t *o = canonical(ev);
	int rc;

	if (!o)
		return err_set(e, ERR_INTERNAL, "cannot encode the event of key '%s'",
			       SHORT(ev->key ? ev->key : ""));
	rc = json_dump_callback(o, dump_to_buf, out, JSON_COMPACT);
	json_decref(o);
	if (rc < 0)
		return err_set(e, ERR_LIMIT, "the event of key '%s' does not fit its buffer",
			       SHORT(ev->key));
	return 0;
}

static int canonical_key(json_t *o, struct event *ev, struct err *e)
{
	const char *key;
	size_t len;

	if (get_str(o, "key", NULL, &key, &len, e) < 0 || key_check(key, len, key, e) < 0)
		return -1;
	ev->key = xstrndup(key, len);
	ev->key_len = len;
	return 0;
}

static int canonical_strings(json_t *o, struct event *ev, struct err *e)
{
	const char *source;
	char *name = NULL;

	if (take_str(o, "event", NULL, &name, e) < 0 || name_check(name, "event", e) < 0) {
		free(name);
		return -1;
	}
	ev->name = event_name_canonical(name);
	free(name);
	if (take_str(o, "bucket", NULL, &ev->bucket, e) < 0 ||
	    bucket_check(ev->bucket, "bucket", e) < 0 || canonical_key(o, ev, e) < 0 ||
	    take_str(o, "etag", NULL, &ev->etag, e) < 0 ||
	    take_str(o, "version_id", NULL, &ev->version_id, e) < 0 ||
	    take_str(o, "sequencer", NULL, &ev->sequencer, e) < 0 ||
	    take_str(o, "time", NULL, &ev->time, e) < 0 ||
	    get_str(o, "source", NULL, &source, NULL, e) < 0)
		return -1;
	if (event_source_parse(source, &ev->source) < 0)
		return err_set(e, ERR_PARSE, "unknown source '%s'", SHORT(source));
	return 0;
}

static int canonical_numbers(json_t *o, struct event *ev, struct err *e)
{
	json_t *version = json_object_get(o, "version"), *depth = json_object_get(o, "depth");

	if (!json_is_integer(version) || json_integer_value(version) != EVENT_JSON_VERSION)
		return err_set(e, ERR_PARSE, "'version' is not %d", EVENT_JSON_VERSION);
	if (!json_is_integer(depth) || json_integer_value(depth) < 0 ||
	    json_integer_value(depth) > EVENT_DEPTH_MAX)
		return err_set(e, ERR_PARSE, "'depth' is not an integer from 0 to %d",
			       EVENT_DEPTH_MAX);
	ev->depth = (int)json_integer_value(depth);
	return get_size(o, "size", 1, &ev->size, e);
}

static int from_canonical(json_t *o, struct event *ev, struct err *e)
{
	json_t *raw = json_object_get(o, "raw");

	if (canonical_numbers(o, ev, e) < 0 || canonical_strings(o, ev, e) < 0)
		return -1;
	if (!json_is_object(raw))
		return err_set(e, ERR_PARSE, "'raw' is not an object");
	ev->raw = json_incref(raw);
	return take_meta(raw, ev, e);
}

int event_from_json(const char *json, size_t len, struct event *ev, struct err *e)
{
	struct event tmp = EVENT_INIT;
	json_t *root = parse_object(json, len, e);
	int rc;

	if (!root)
		return err_prefix(e, "canonical event");
	rc = from_canonical(root, &tmp, e);
	json_decref(root);
	if (rc < 0) {
		event_release(&tmp);
		return err_prefix(e, "canonical event");
	}
	*ev = tmp;
	return 0;
}

/* Events for objects that already exist. */

int event_for_object(struct event *ev, const char *bucket, const char *key, uint64_t size,
		     const char *etag, const char *last_modified, struct err *e)
{
	struct event tmp = EVENT_INIT;

	etag = etag ? etag : "";
	last_modified = last_modified ? last_modified : "";
	if (bucket_check(bucket, "bucket", e) < 0 || key_check(key, strlen(key), key, e) < 0)
		return -1;
	if (size > INT64_MAX || strlen(etag) > EVENT_FIELD_MAX ||
	    strlen(last_modified) > EVENT_FIELD_MAX)
		return err_set(e, ERR_LIMIT, "listing entry of key '%s' is out of range",
			       SHORT(key));
	tmp.raw = json_pack("{s:s, s:s, s:I, s:s, s:s}", "Bucket", bucket, "Key", key, "Size",
			    (json_int_t)size, "ETag", etag, "LastModified", last_modified);
	if (!tmp.raw)
		return err_set(e, ERR_PARSE, "listing entry of key '%s' is not UTF-8", SHORT(key));
	tmp.name = xstrdup("s3:ObjectCreated:Put");
	tmp.bucket = xstrdup(bucket);
	tmp.key = xstrdup(key);
	tmp.key_len = strlen(key);
	tmp.size = size;
	tmp.etag = xstrdup(etag);
	etag_unquote(tmp.etag);
	tmp.version_id = xstrdup("");
	tmp.sequencer = xstrdup("");
	tmp.time = xstrdup(last_modified);
	tmp.source = EVENT_SRC_REPROCESS;
	*ev = tmp;
	return 0;
}
