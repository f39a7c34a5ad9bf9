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
	free(ev->raw);
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
 * message ends up in a JSON reply and in logs, so it keeps to ASCII (and
 * SHORT() escapes control bytes).
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

json_t *event_json_object(const char *s, size_t len, struct err *e)
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
 * carry: valid UTF-8, as strict as jansson is when it reads the JSON back.
 * `as_sent` is what messages show: the decoded bytes may not be printable.
 */
static int key_check(const char *key, size_t len, const char *as_sent, struct err *e)
{
	if (len == 0)
		return err_set(e, ERR_PARSE, "the key is empty");
	if (memchr(key, '\0', len))
		return err_set(e, ERR_PARSE, "key '%s' decodes to a NUL byte", SHORT(as_sent));
	if (len > EVENT_KEY_MAX)
		return err_set(e, ERR_LIMIT, "key '%s' is %zu bytes, more than the %d allowed",
			       SHORT(as_sent), len, EVENT_KEY_MAX);
	if (!str_utf8_valid(key, len))
		return err_set(e, ERR_PARSE, "key '%s' is not UTF-8", SHORT(as_sent));
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

/*
 * The record's own bytes. The text has been parsed by jansson, so it is valid
 * JSON; these walk it again only to find where each record lies, so that the
 * queue stores the record as sent rather than jansson's encoding of its copy
 * (which cost as much as the parse).
 */

struct span {
	size_t off, len;
};

static size_t skip_ws(const char *s, size_t len, size_t i)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* s[i] is the opening '"': the index just past the closing one. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return len;
}

/* The index just past the value that starts at s[i]. */
static size_t skip_value(const char *s, size_t len, size_t i)
{
	size_t depth = 0;

	if (i < len && s[i] == '"')
		return skip_string(s, len, i);
	if (i < len && s[i] != '{' && s[i] != '[') {
		while (i < len && !strchr(",}] \t\r\n", s[i]))
			i++;
		return i;
	}
	for (; i < len; i++) {
		if (s[i] == '"')
			i = skip_string(s, len, i) - 1;
		else if (s[i] == '{' || s[i] == '[')
			depth++;
		else if ((s[i] == '}' || s[i] == ']') && --depth == 0)
			return i + 1;
	}
	return len;
}

/*
 * Where the value of member `name` of the object at s[i] lies: 1, or 0 when
 * the object has no such member, or -1 when a member name holds an escape
 * (which might spell `name`) or the text is not an object.
 */
static int span_member(const char *s, size_t len, size_t i, const char *name, struct span *out)
{
	size_t nlen = strlen(name), end;
	int match;

	i = skip_ws(s, len, i);
	if (i >= len || s[i] != '{')
		return -1;
	i = skip_ws(s, len, i + 1);
	while (i < len && s[i] == '"') {
		end = skip_string(s, len, i);
		if (memchr(s + i + 1, '\\', end - i - 1))
			return -1;
		match = end - i - 2 == nlen && memcmp(s + i + 1, name, nlen) == 0;
		i = skip_ws(s, len, skip_ws(s, len, end) + 1); /* past the ':' */
		end = skip_value(s, len, i);
		if (match) {
			*out = (struct span){ i, end - i };
			return 1;
		}
		i = skip_ws(s, len, end);
		if (i < len && s[i] == ',')
			i = skip_ws(s, len, i + 1);
	}
	return 0;
}

/*
 * The spans of the n elements of the array at `arr`, into out[]; -1 when
 * there are not exactly n (the caller then encodes each record itself).
 */
static int span_elements(const char *s, struct span arr, struct span *out, size_t n)
{
	size_t len = arr.off + arr.len, i = arr.off, end, k = 0;

	if (i >= len || s[i] != '[')
		return -1;
	i = skip_ws(s, len, i + 1);
	while (i < len && s[i] != ']') {
		end = skip_value(s, len, i);
		if (k == n)
			return -1;
		out[k++] = (struct span){ i, end - i };
		i = skip_ws(s, len, end);
		if (i < len && s[i] == ',')
			i = skip_ws(s, len, i + 1);
	}
	return k == n ? 0 : -1;
}

/* The JSON text at sp without the whitespace between its tokens, as a string. */
static char *span_compact(const char *s, struct span sp, size_t *len_out)
{
	char *out = xcalloc(sp.len + 1, 1);
	size_t i, k, end = sp.off + sp.len, n = 0;

	for (i = sp.off; i < end; i++) {
		if (s[i] == '"') {
			k = skip_string(s, end, i);
			memcpy(out + n, s + i, k - i);
			n += k - i;
			i = k - 1;
		} else if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
			out[n++] = s[i];
		}
	}
	*len_out = n;
	return out;
}

static int dump_to_buf(const char *s, size_t n, void *data)
{
	return buf_add(data, s, n);
}

/* jansson's compact encoding of v: for records whose bytes could not be found. */
static int encode_raw(json_t *v, struct event *ev, struct err *e)
{
	struct buf b = BUF_INIT;

	if (json_dump_callback(v, dump_to_buf, &b, JSON_COMPACT) < 0) {
		buf_release(&b);
		return err_set(e, ERR_INTERNAL, "cannot encode the record");
	}
	ev->raw = buf_detach(&b, &ev->raw_len);
	return 0;
}

/* The record as sent: its bytes at sp in text s, or (sp NULL) jansson's encoding of v. */
static int take_raw(json_t *v, const char *s, const struct span *sp, struct event *ev,
		    struct err *e)
{
	if (!sp)
		return encode_raw(v, ev, e);
	ev->raw = span_compact(s, *sp, &ev->raw_len);
	return 0;
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

/* Record `rec`, whose bytes are at sp in the body (NULL when not known). */
static int decode_record(json_t *rec, const char *body, const struct span *sp, struct event *ev,
			 struct err *e)
{
	if (!json_is_object(rec))
		return err_set(e, ERR_PARSE, "not an object");
	if (record_source(rec, &ev->source, e) < 0 || record_version(rec, e) < 0 ||
	    record_name(rec, ev, e) < 0 || record_object(rec, ev, e) < 0)
		return -1;
	ev->depth = 0;
	return take_raw(rec, body, sp, ev, e);
}

/* Where each record lies in the body, or NULL (each is then encoded by jansson). */
static struct span *record_spans(const char *body, size_t len, size_t n)
{
	struct span arr, *sp;

	if (n == 0 || span_member(body, len, 0, "Records", &arr) != 1)
		return NULL;
	sp = xcalloc(n, sizeof(*sp));
	if (span_elements(body, arr, sp, n) < 0) {
		free(sp);
		return NULL;
	}
	return sp;
}

static int decode_records(json_t *root, json_t *records, const char *body, size_t len,
			  struct event_list *l, struct err *e)
{
	json_t *wrapper_name = json_object_get(root, "EventName");
	struct span *sp;
	size_t i;
	int rc = 0;

	/* MinIO's webhook wrapper: its EventName and Key repeat the record's. */
	if (wrapper_name && !json_is_string(wrapper_name))
		return err_set(e, ERR_PARSE, "'EventName' is not a string");
	if (!json_is_array(records))
		return err_set(e, ERR_PARSE, "'Records' is not a list");
	sp = record_spans(body, len, json_array_size(records));
	for (i = 0; i < json_array_size(records); i++) {
		struct event ev = EVENT_INIT;

		if (decode_record(json_array_get(records, i), body, sp ? &sp[i] : NULL, &ev, e) <
		    0) {
			event_release(&ev);
			rc = err_prefix(e, "Records[%zu]", i);
			break;
		}
		event_list_add(l, &ev);
	}
	free(sp);
	return rc;
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

	root = event_json_object(body, len, e);
	if (!root)
		return -1;
	records = json_object_get(root, "Records");
	rc = records ? decode_records(root, records, body, len, &l, e) : decode_other(root, e);
	json_decref(root);
	for (i = 0; rc == 0 && i < l.n; i++)
		event_list_add(out, &l.v[i]);
	event_list_release(&l);
	return rc;
}

/* The canonical JSON. */

/* `name` (the text before the value: ",\"key\":") and the value as a JSON string. */
static int add_str(struct buf *b, const char *name, const char *v, size_t len)
{
	return buf_adds(b, name) | str_json_quote(b, v, len, 1);
}

int event_to_json(const struct event *ev, struct buf *out, struct err *e)
{
	const char *key = ev->key ? ev->key : "";
	int bad = 0;

	if (ev->size > INT64_MAX || !ev->name || !ev->bucket || !ev->etag || !ev->version_id ||
	    !ev->sequencer || !ev->time)
		return err_set(e, ERR_INTERNAL, "cannot encode the event of key '%s'", SHORT(key));
	/* This order is the order handlers see. */
	bad |= buf_addf(out, "{\"version\":%d", EVENT_JSON_VERSION);
	bad |= add_str(out, ",\"event\":", ev->name, strlen(ev->name));
	bad |= add_str(out, ",\"bucket\":", ev->bucket, strlen(ev->bucket));
	bad |= add_str(out, ",\"key\":", key, ev->key ? ev->key_len : 0);
	bad |= buf_addf(out, ",\"size\":%llu", (unsigned long long)ev->size);
	bad |= add_str(out, ",\"etag\":", ev->etag, strlen(ev->etag));
	bad |= add_str(out, ",\"version_id\":", ev->version_id, strlen(ev->version_id));
	bad |= add_str(out, ",\"sequencer\":", ev->sequencer, strlen(ev->sequencer));
	bad |= add_str(out, ",\"time\":", ev->time, strlen(ev->time));
	bad |= add_str(out, ",\"source\":", event_source_name(ev->source),
		       strlen(event_source_name(ev->source)));
	bad |= buf_addf(out, ",\"depth\":%d,\"raw\":", ev->depth);
	bad |= ev->raw ? buf_add(out, ev->raw, ev->raw_len) : buf_adds(out, "{}");
	bad |= buf_addch(out, '}');
	if (bad)
		return err_set(e, ERR_LIMIT,
			       "the event of key '%s' does not fit its buffer or is not UTF-8",
			       SHORT(key));
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

/* The canonical event o, parsed from text s (len bytes). */
static int from_canonical(json_t *o, const char *s, size_t len, struct event *ev, struct err *e)
{
	json_t *raw = json_object_get(o, "raw");
	struct span sp;

	if (canonical_numbers(o, ev, e) < 0 || canonical_strings(o, ev, e) < 0)
		return -1;
	if (!json_is_object(raw))
		return err_set(e, ERR_PARSE, "'raw' is not an object");
	if (take_raw(raw, s, span_member(s, len, 0, "raw", &sp) == 1 ? &sp : NULL, ev, e) < 0)
		return -1;
	return take_meta(raw, ev, e);
}

int event_from_json(const char *json, size_t len, struct event *ev, struct err *e)
{
	struct event tmp = EVENT_INIT;
	json_t *root = event_json_object(json, len, e);
	int rc;

	if (!root)
		return err_prefix(e, "canonical event");
	rc = from_canonical(root, json, len, &tmp, e);
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
	json_t *raw;
	int rc;

	etag = etag ? etag : "";
	last_modified = last_modified ? last_modified : "";
	if (bucket_check(bucket, "bucket", e) < 0 || key_check(key, strlen(key), key, e) < 0)
		return -1;
	if (size > INT64_MAX || strlen(etag) > EVENT_FIELD_MAX ||
	    strlen(last_modified) > EVENT_FIELD_MAX)
		return err_set(e, ERR_LIMIT, "listing entry of key '%s' is out of range",
			       SHORT(key));
	raw = json_pack("{s:s, s:s, s:I, s:s, s:s}", "Bucket", bucket, "Key", key, "Size",
			(json_int_t)size, "ETag", etag, "LastModified", last_modified);
	if (!raw)
		return err_set(e, ERR_PARSE, "listing entry of key '%s' is not UTF-8", SHORT(key));
	rc = encode_raw(raw, &tmp, e);
	json_decref(raw);
	if (rc < 0)
		return -1;
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
