#include "triggers/reprocess.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/event.h"
#include "core/jobq.h"
#include "core/log.h"
#include "core/str.h"
#include "core/units.h"
#include "core/worker.h"
#include "s3/client.h"
#include "triggers/rules.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES (64 * 1024) /* a manifest line; keys are at most a few KiB encoded */
#define HEAD_THREADS   8	   /* HEADs in flight for a manifest page */
#define TICK_MS	       500	   /* progress and batch counts at most this often */
#define WAIT_MS	       250	   /* sleep between counts while waiting for the batch */
#define MESSAGE_MAX    1000	   /* bytes of a report row's ResultMessage */
#define CP_VERSION     "v1"	   /* checkpoint values; see cp_value() */

/* ---- the manifest ----------------------------------------------------------------------- */

void reprocess_row_release(struct reprocess_row *row)
{
	free(row->bucket);
	free(row->key);
	free(row->version_id);
	memset(row, 0, sizeof(*row));
}

/* One CSV field from s[*i], bare or quoted; leaves *i on the comma or the end. */
static int csv_field(const char *s, size_t len, size_t *i, struct buf *out, unsigned long line,
		     struct err *e)
{
	buf_reset(out);
	if (*i >= len || s[*i] != '"') {
		for (; *i < len && s[*i] != ','; (*i)++) {
			if (s[*i] == '"')
				return err_set(e, ERR_PARSE,
					       "line %lu: a quote inside a bare field", line);
			buf_addch(out, s[*i]);
		}
		return 0;
	}
	for ((*i)++;; (*i)++) {
		if (*i >= len)
			return err_set(e, ERR_PARSE, "line %lu: a quoted field does not end", line);
		if (s[*i] == '"' && (*i + 1 >= len || s[*i + 1] != '"'))
			break;
		if (s[*i] == '"')
			(*i)++; /* "" stands for one quote */
		buf_addch(out, s[*i]);
	}
	(*i)++;
	if (*i < len && s[*i] != ',')
		return err_set(e, ERR_PARSE, "line %lu: text after a quoted field", line);
	return 0;
}

/* Splits a line into at most 3 fields; the count, or -1. */
static int csv_split(const char *s, size_t len, struct buf f[3], unsigned long line, struct err *e)
{
	size_t i = 0;
	int n = 0;

	for (;;) {
		if (n == 3)
			return err_set(e, ERR_PARSE,
				       "line %lu: more than 3 fields; a manifest line is "
				       "bucket,key[,versionId]",
				       line);
		if (csv_field(s, len, &i, &f[n++], line, e) < 0)
			return -1;
		if (i >= len)
			return n;
		i++; /* the comma */
	}
}

static int blank(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!isspace((unsigned char)s[i]))
			return 0;
	return 1;
}

static int decode_field(const struct buf *f, const char *what, unsigned long line, char **out,
			size_t *out_len, struct err *e)
{
	struct buf dec = BUF_INIT;

	if (str_pct_decode(&dec, f->data, f->len, 1) < 0) {
		buf_release(&dec);
		return err_set(e, ERR_PARSE, "line %lu: the %s '%s' has a bad %%-escape", line,
			       what, SHORT(f->data));
	}
	if (out_len)
		*out_len = dec.len;
	*out = buf_detach(&dec, NULL);
	return 0;
}

int reprocess_manifest_line(const char *text, size_t len, unsigned long line,
			    struct reprocess_row *row, struct err *e)
{
	struct buf f[3] = { BUF_INIT, BUF_INIT, BUF_INIT };
	int n, r = -1;

	if (len && text[len - 1] == '\r')
		len--;
	if (blank(text, len))
		return 0;
	if ((n = csv_split(text, len, f, line, e)) < 0)
		goto out;
	if (n < 2 || !f[0].len || !f[1].len) {
		err_set(e, ERR_PARSE, "line %lu: %s; a manifest line is bucket,key[,versionId]",
			line,
			n < 2	    ? "one field"
			: !f[0].len ? "no bucket"
				    : "no key");
		goto out;
	}
	row->line = line;
	row->bucket = xstrdup(f[0].data);
	if (decode_field(&f[1], "key", line, &row->key, &row->key_len, e) < 0 ||
	    decode_field(&f[2], "version id", line, &row->version_id, NULL, e) < 0) {
		reprocess_row_release(row);
		goto out;
	}
	r = 1;
out:
	for (n = 0; n < 3; n++)
		buf_release(&f[n]);
	return r;
}

struct reprocess_manifest {
	FILE *f;
	char *path;
	char *line;
	size_t alloc;
	unsigned long lineno;
	EVP_MD_CTX *md; /* digest of the bytes read, for the checkpoint id; NULL when not taken */
};

struct reprocess_manifest *reprocess_manifest_open(const char *path, struct err *e)
{
	struct reprocess_manifest *m;
	FILE *f = fopen(path, "re");

	if (!f) {
		err_sys(e, ERR_IO, "cannot open manifest '%s'", SHORT(path));
		return NULL;
	}
	m = xcalloc(1, sizeof(*m));
	m->f = f;
	m->path = xstrdup(path);
	return m;
}

/* The next line without its newline; 1, 0 at the end, -1. */
static int manifest_getline(struct reprocess_manifest *m, size_t *len, struct err *e)
{
	ssize_t n;

	errno = 0;
	n = getline(&m->line, &m->alloc, m->f);
	if (n < 0)
		return errno ? err_sys(e, ERR_IO, "cannot read manifest '%s'", SHORT(m->path)) : 0;
	m->lineno++;
	if (m->md)
		EVP_DigestUpdate(m->md, m->line, (size_t)n);
	if (n > 0 && m->line[n - 1] == '\n')
		n--;
	if (m->lineno == 1 && n >= 3 && !memcmp(m->line, "\xef\xbb\xbf", 3)) {
		memmove(m->line, m->line + 3, (size_t)n - 3);
		n -= 3;
	}
	*len = (size_t)n;
	if (n > LINE_MAX_BYTES || memchr(m->line, '\0', (size_t)n))
		return err_set(e, ERR_PARSE, "manifest '%s' line %lu: %s", SHORT(m->path),
			       m->lineno, n > LINE_MAX_BYTES ? "longer than 64 KiB" : "a NUL byte");
	return 1;
}

int reprocess_manifest_next(struct reprocess_manifest *m, struct reprocess_row *row, struct err *e)
{
	size_t len = 0;
	int r;

	reprocess_row_release(row);
	while ((r = manifest_getline(m, &len, e)) > 0) {
		r = reprocess_manifest_line(m->line, len, m->lineno, row, e);
		if (r < 0)
			return err_prefix(e, "manifest '%s'", SHORT(m->path));
		if (r > 0)
			return 1;
	}
	return r;
}

void reprocess_manifest_close(struct reprocess_manifest *m)
{
	if (!m)
		return;
	fclose(m->f);
	free(m->path);
	free(m->line);
	EVP_MD_CTX_free(m->md);
	free(m);
}

/*
 * Reads a whole manifest: checks every line before anything is queued, and
 * takes the digest of its bytes and its number of rows.
 */
static int manifest_scan(const char *path, char hex[65], uint64_t *rows, struct err *e)
{
	struct reprocess_manifest *m = reprocess_manifest_open(path, e);
	struct reprocess_row row = REPROCESS_ROW_INIT;
	unsigned char md[32];
	unsigned int n = 0;
	int r;

	if (!m)
		return -1;
	m->md = EVP_MD_CTX_new();
	if (!m->md || !EVP_DigestInit_ex(m->md, EVP_sha256(), NULL))
		abort();
	*rows = 0;
	while ((r = reprocess_manifest_next(m, &row, e)) > 0)
		(*rows)++;
	if (r == 0) {
		EVP_DigestFinal_ex(m->md, md, &n);
		str_hex(hex, md, sizeof(md));
	}
	reprocess_row_release(&row);
	reprocess_manifest_close(m);
	return r;
}

/* ---- the report ------------------------------------------------------------------------- */

const char reprocess_report_header[] =
	"Bucket,Key,VersionId,TaskStatus,ErrorCode,HTTPStatusCode,ResultMessage\n";

/* URL-encodes as S3 Batch Operations reports do: '+' for a space, %XX for the rest. */
static void form_encode(struct buf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
			buf_addch(out, (char)c);
		else if (c == ' ')
			buf_addch(out, '+');
		else
			buf_addf(out, "%%%c%c", hex[c >> 4], hex[c & 15]);
	}
}

/* A free-text CSV field: one line, at most MESSAGE_MAX bytes, quoted when it needs to be. */
static void csv_text(struct buf *out, const char *s)
{
	size_t i, n = strnlen(s, MESSAGE_MAX);
	int quote = strcspn(s, ",\"") < n;

	if (quote)
		buf_addch(out, '"');
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"')
			buf_adds(out, "\"\"");
		else
			buf_addch(out, c < 0x20 || c == 0x7f ? ' ' : (char)c);
	}
	if (quote)
		buf_addch(out, '"');
}

void reprocess_report_row(struct buf *out, const char *bucket, const char *key, size_t key_len,
			  const char *version_id, const char *error_code, int http_status,
			  const char *message)
{
	csv_text(out, bucket);
	buf_addch(out, ',');
	form_encode(out, key, key_len);
	buf_addch(out, ',');
	form_encode(out, version_id ? version_id : "", version_id ? strlen(version_id) : 0);
	buf_addf(out, ",%s,", error_code ? "failed" : "succeeded");
	csv_text(out, error_code ? error_code : "");
	buf_addf(out, ",%d,", http_status);
	csv_text(out, message);
	buf_addch(out, '\n');
}

/* The last non-empty line of a handler's output, without surrounding blanks. */
static void last_line(struct buf *out, const char *text)
{
	const char *end = text + strlen(text), *start;

	while (end > text && isspace((unsigned char)end[-1]))
		end--;
	for (start = end; start > text && start[-1] != '\n'; start--)
		;
	while (start < end && isspace((unsigned char)*start))
		start++;
	buf_add(out, start, (size_t)(end - start));
}

static void job_message(struct buf *msg, const struct jobq_job *j)
{
	const char *err = j->last_error ? j->last_error : "";

	if (j->state == JOB_DONE) {
		buf_adds(msg, "done");
	} else if (j->state == JOB_DEAD) {
		buf_adds(msg, *err ? err : "failed");
		if (j->stderr_tail && !blank(j->stderr_tail, strlen(j->stderr_tail))) {
			buf_adds(msg, ": ");
			last_line(msg, j->stderr_tail);
		}
	} else {
		buf_addf(msg, "%s%s%s", job_state_name(j->state), *err ? ": " : "", err);
	}
}

void reprocess_report_job(struct buf *out, const struct jobq_job *j)
{
	struct buf msg = BUF_INIT;
	const char *code = NULL;
	int http = 200;

	job_message(&msg, j);
	if (j->state == JOB_GONE)
		http = 404;
	else if (j->state == JOB_SUPERSEDED)
		http = 412;
	else if (j->state == JOB_DEAD)
		code = "PermanentFailure", http = 500;
	else if (!job_state_final(j->state))
		code = "TemporaryFailure", http = 500;
	reprocess_report_row(out, j->bucket, j->key, strlen(j->key), j->version_id, code, http,
			     msg.data);
	buf_release(&msg);
}

/* ---- times ------------------------------------------------------------------------------ */

/* The rest of an ISO 8601 time after the date: "THH:MM[:SS[.fff]]" and "Z", all optional. */
static const char *parse_clock(const char *p, struct tm *tm)
{
	if (*p == 'T' || *p == ' ') {
		p = strptime(p + 1, "%H:%M", tm);
		if (p && *p == ':')
			p = strptime(p + 1, "%S", tm);
		if (p && *p == '.')
			for (p++; isdigit((unsigned char)*p); p++)
				;
	}
	if (p && *p == 'Z')
		p++;
	return p;
}

int reprocess_parse_time(const char *s, int64_t now, int64_t *out, struct err *e)
{
	struct tm tm;
	const char *p;
	uint64_t v;
	size_t n = strlen(s);

	memset(&tm, 0, sizeof(tm));
	if (s[0] == '@' && str_to_u64(s + 1, &v) == 0 && v <= INT64_MAX) {
		*out = (int64_t)v;
		return 0;
	}
	if (isdigit((unsigned char)s[0]) && (p = strptime(s, "%Y-%m-%d", &tm)) &&
	    (p = parse_clock(p, &tm)) && !*p) {
		*out = (int64_t)timegm(&tm);
		return 0;
	}
	if (n && isalpha((unsigned char)s[n - 1]) && units_duration_ms(s, &v) == 0) {
		*out = now - (int64_t)(v / 1000);
		return 0;
	}
	return err_set(e, ERR_USAGE,
		       "'%s' is not a time (2024-05-01, 2024-05-01T12:30:00Z, @SECONDS) "
		       "nor a duration back from now (36h, 7d)",
		       SHORT(s));
}

/* "2024-05-01T12:30:15.000Z", as listings give LastModified. */
static void iso_time(char out[32], time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	if (!strftime(out, 32, "%Y-%m-%dT%H:%M:%S.000Z", &tm))
		out[0] = '\0';
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "name=a,b,c\n": sorted, duplicates once, each percent-encoded. */
static void add_set(struct buf *d, const char *name, const char *const *v)
{
	size_t i, n = 0;
	const char **s;

	while (v && v[n])
		n++;
	s = xcalloc(n + 1, sizeof(*s));
	if (n)
		memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_str);
	buf_addf(d, "%s=", name);
	for (i = 0; i < n; i++) {
		if (i && !strcmp(s[i], s[i - 1]))
			continue;
		if (i)
			buf_addch(d, ',');
		str_pct_encode(d, s[i], strlen(s[i]), 0);
	}
	buf_addch(d, '\n');
	free(s);
}

/* What defines a run, one "name=value" a line; every value encoded, so none can fake another. */
static int describe(struct buf *d, const struct reprocess_opts *o, const char *const *handlers,
		    uint64_t *rows, struct err *e)
{
	char hex[65];
	const char *prefix = o->prefix ? o->prefix : "";

	buf_adds(d, "s3hook reprocess " CP_VERSION "\n");
	if (o->manifest) {
		if (manifest_scan(o->manifest, hex, rows, e) < 0)
			return -1;
		buf_addf(d, "manifest=%s\n", hex);
	} else {
		buf_adds(d, "bucket=");
		str_pct_encode(d, o->bucket, strlen(o->bucket), 0);
		buf_adds(d, "\nprefix=");
		str_pct_encode(d, prefix, strlen(prefix), 0);
		buf_addch(d, '\n');
	}
	add_set(d, "handlers", handlers);
	add_set(d, "suffixes", o->suffixes);
	buf_addf(d,
		 "since=%" PRId64 "\nuntil=%" PRId64 "\nmin_size=%" PRIu64 "\nmax_size=%" PRIu64
		 "\nforce=%d\n",
		 o->since, o->until, o->min_size, o->max_size, !!(o->flags & REPROCESS_FORCE));
	return 0;
}

static int checkpoint_id(const struct reprocess_opts *o, const char *const *handlers,
			 char out[REPROCESS_ID_SIZE], uint64_t *rows, struct err *e)
{
	struct buf d = BUF_INIT;
	unsigned char md[32];
	char hex[65];
	int r = describe(&d, o, handlers, rows, e);

	if (r == 0) {
		EVP_Digest(d.data, d.len, md, NULL, EVP_sha256(), NULL);
		str_hex(hex, md, sizeof(md));
		snprintf(out, REPROCESS_ID_SIZE, "reprocess-%s", hex);
	}
	buf_release(&d);
	return r;
}

int reprocess_checkpoint_id(const struct reprocess_opts *o, const char *const *handlers,
			    char out[REPROCESS_ID_SIZE], struct err *e)
{
	uint64_t rows;

	if (!o->manifest == !o->bucket)
		return err_set(e, ERR_USAGE, "give a bucket or a manifest");
	return checkpoint_id(o, handlers, out, &rows, e);
}

/*
 * A checkpoint's value: "v1 listing BATCH POSITION" while the listing goes
 * on, POSITION being the last object queued (its key percent-encoded, or its
 * manifest line); "v1 listed BATCH" once the listing has ended.
 */
struct cp_state {
	int listed;
	char batch[40];
	char *position; /* decoded; NULL when listed */
};

static int cp_parse(const char *v, struct cp_state *cp)
{
	const char *b, *sp;
	struct buf pos = BUF_INIT;
	size_t n;

	memset(cp, 0, sizeof(*cp));
	cp->listed = str_starts_with(v, CP_VERSION " listed ");
	if (!cp->listed && !str_starts_with(v, CP_VERSION " listing "))
		return -1;
	b = strchr(v + strlen(CP_VERSION) + 1, ' ') + 1;
	sp = strchr(b, ' ');
	n = (size_t)((sp ? sp : b + strlen(b)) - b);
	if (cp->listed != !sp || !n || n >= sizeof(cp->batch))
		return -1;
	snprintf(cp->batch, sizeof(cp->batch), "%.*s", (int)n, b);
	if (cp->listed)
		return 0;
	if (str_pct_decode(&pos, sp + 1, strlen(sp + 1), 0) < 0 || !pos.len ||
	    memchr(pos.data, 0, pos.len)) {
		buf_release(&pos);
		return -1;
	}
	cp->position = buf_detach(&pos, NULL);
	return 0;
}

/* ---- a run -------------------------------------------------------------------------------- */

/* One object to consider: a listing entry or a manifest row (after its HEAD). */
struct object {
	char *bucket;
	char *key;
	size_t key_len;
	uint64_t size;
	char etag[128];
	char *version_id; /* "" when none */
	time_t last_modified;
	unsigned long line; /* manifest line; 0 for a listing entry */
	int http;	    /* manifest: the HEAD's answer (200; 404 no such object) */
	char *problem;	    /* why it cannot be taken (a key with a NUL, an old version) */
};

struct objpage {
	struct object *v;
	size_t n;
	int last; /* nothing comes after it */
};

/* Jobs made but not yet queued, with the events and JSON they borrow. */
struct chunk {
	struct event_list evs;
	char **jsons;
	size_t n_jsons;
	struct jobq_new *jobs;
	size_t n_jobs;
	size_t objects;
};

struct run {
	const struct config *cfg;
	struct s3_client *s3;
	const struct reprocess_opts *o;
	struct reprocess_stats *st;
	const char **handlers; /* the run's, NULL-terminated */
	struct jobq *q;	       /* listing and counting; NULL in a dry run without a queue */
	struct jobq *work_q;
	struct worker_pool *pool;
	char sequencer[64];
	char *after;		 /* listing: the last key listed (or of the checkpoint) */
	char *token;		 /* listing: the continuation token of the next page */
	unsigned long skip_line; /* manifest: rows up to this line are queued already */
	struct reprocess_manifest *manifest;
	struct chunk chunk;
	size_t chunk_objects; /* with --rate: commit every this many objects */
	uint64_t paced;	      /* objects taken, for --rate */
	int64_t paced_from_ms;
	int64_t last_tick_ms;
	unsigned long pages;
	FILE *report;
	char *report_tmp;
	struct buf row;
};

static int cancelled(const struct run *r)
{
	return r->o->cancel && *r->o->cancel;
}

static int dry(const struct run *r)
{
	return r->o->flags & REPROCESS_DRY_RUN;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int64_t unfinished(const struct reprocess_stats *st)
{
	return st->states[JOB_PENDING] + st->states[JOB_RUNNING] + st->states[JOB_RETRY];
}

static int count_batch(struct run *r, struct err *e)
{
	struct jobq_query qu = JOBQ_QUERY_INIT;

	if (!r->q || !r->st->batch[0])
		return 0;
	qu.batch = r->st->batch;
	return jobq_count(r->q, &qu, r->st->states, e);
}

/* Counts the batch and calls the progress callback, at most every TICK_MS unless forced. */
static void tick(struct run *r, int force)
{
	int64_t now = jobq_now_ms();
	struct err e = ERR_INIT;

	if (!force && now - r->last_tick_ms < TICK_MS)
		return;
	r->last_tick_ms = now;
	if (count_batch(r, &e) < 0)
		log_warn("cannot count the run's jobs", "error=%s", e.msg);
	if (r->o->progress)
		r->o->progress(r->o->arg, r->st);
}

static void report_add(struct run *r, const struct object *ob, const char *code, int http,
		       const char *msg)
{
	if (!r->report || (!code && (r->o->flags & REPROCESS_REPORT_FAILED)))
		return;
	buf_reset(&r->row);
	reprocess_report_row(&r->row, ob->bucket, ob->key, ob->key_len, ob->version_id, code, http,
			     msg);
	fwrite(r->row.data, 1, r->row.len, r->report);
}

/* ---- options ---- */

static int pick_handlers(struct run *r, struct err *e)
{
	const struct config *cfg = r->cfg;
	size_t i, n = 0;

	if (!cfg->n_handlers)
		return err_set(e, ERR_CONFIG, "no [handler NAME] is configured");
	for (i = 0; r->o->handlers && r->o->handlers[i]; i++)
		if (!config_handler(cfg, r->o->handlers[i]))
			return err_set(e, ERR_USAGE, "no handler '%s' in the configuration",
				       SHORT(r->o->handlers[i]));
	r->handlers = xcalloc(cfg->n_handlers + i + 1, sizeof(char *));
	if (i)
		memcpy(r->handlers, r->o->handlers, i * sizeof(char *));
	else
		for (n = 0; n < cfg->n_handlers; n++)
			r->handlers[n] = cfg->handlers[n].name;
	return 0;
}

static int check_opts(const struct reprocess_opts *o, struct err *e)
{
	if (!o->manifest == !o->bucket)
		return err_set(e, ERR_USAGE, "give s3://BUCKET[/PREFIX] or --manifest FILE, not %s",
			       o->manifest ? "both" : "neither");
	if ((o->flags & REPROCESS_DRY_RUN) && (o->flags & REPROCESS_ENQUEUE))
		return err_set(e, ERR_USAGE, "--dry-run and --enqueue do not go together");
	if (o->report && (o->flags & (REPROCESS_DRY_RUN | REPROCESS_ENQUEUE)))
		return err_set(e, ERR_USAGE, "--report needs a run that waits for its jobs");
	if (o->since >= o->until || o->min_size > o->max_size)
		return err_set(e, ERR_USAGE, "the %s range is empty",
			       o->since >= o->until ? "--since/--until" : "size");
	if (o->rate < 0)
		return err_set(e, ERR_USAGE, "--rate must be positive");
	return 0;
}

/* ---- starting or resuming ---- */

static void new_batch(struct run *r)
{
	unsigned char rnd[16];

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		abort();
	str_hex(r->st->batch, rnd, sizeof(rnd));
}

/* Takes up an interrupted run; 1 when it did, 0 when the run is over (or there is none). */
static int resume(struct run *r, const struct cp_state *cp, struct err *e)
{
	uint64_t line = 0;

	str_copy(r->st->batch, sizeof(r->st->batch), cp->batch);
	if (cp->listed) {
		if (count_batch(r, e) < 0)
			return -1;
		if (!unfinished(r->st)) {
			memset(r->st->states, 0, sizeof(r->st->states));
			return 0;
		}
		r->st->listing_done = 1;
	} else if (r->o->manifest) {
		if (str_to_u64(cp->position, &line) < 0 || line > ULONG_MAX)
			return 0;
		r->skip_line = (unsigned long)line;
	} else {
		r->after = xstrdup(cp->position);
	}
	r->st->resumed = 1;
	log_info("resuming an interrupted run", "batch=%s listed=%d after=%s", r->st->batch,
		 cp->listed, cp->position ? cp->position : "");
	return 1;
}

static int start(struct run *r, struct err *e)
{
	struct cp_state cp = { 0 };
	char *v = NULL;
	int got = 0;

	if (jobq_checkpoint_get(r->q, r->st->checkpoint, &v, e) < 0)
		return -1;
	if (v && cp_parse(v, &cp) < 0)
		log_warn("a checkpoint cannot be read; starting afresh", "checkpoint=%s",
			 r->st->checkpoint);
	else if (v)
		got = resume(r, &cp, e);
	free(cp.position);
	free(v);
	if (got < 0)
		return -1;
	if (!got)
		new_batch(r);
	snprintf(r->sequencer, sizeof(r->sequencer), "reprocess-%s", r->st->batch);
	return 0;
}

static int open_queue(struct run *r, struct err *e)
{
	struct err e2 = ERR_INIT;

	if (!dry(r))
		return (r->q = jobq_open(r->cfg->queue, 0, e)) ? 0 : -1;
	/* A dry run reads the ledger if there is a queue, and never makes one. */
	r->q = jobq_open(r->cfg->queue, JOBQ_NO_CREATE, &e2);
	if (!r->q)
		log_warn("no queue to read the ledger from; nothing counts as done", "error=%s",
			 e2.msg);
	return 0;
}

static int open_report(struct run *r, struct err *e)
{
	int fd;

	if (asprintf(&r->report_tmp, "%s.XXXXXX", r->o->report) < 0)
		abort();
	fd = mkostemp(r->report_tmp, O_CLOEXEC);
	if (fd < 0 || !(r->report = fdopen(fd, "w"))) {
		err_sys(e, ERR_IO, "cannot create the report next to '%s'", SHORT(r->o->report));
		if (fd >= 0)
			close(fd);
		free(r->report_tmp);
		r->report_tmp = NULL;
		return -1;
	}
	fputs(reprocess_report_header, r->report);
	return 0;
}

static int start_workers(struct run *r, struct err *e)
{
	size_t n = 0;

	if (!(r->work_q = jobq_open(r->cfg->queue, 0, e)))
		return -1;
	/* Jobs a killed run (or serve) left running can run again at once. */
	if (jobq_reclaim_orphans(r->work_q, &n, e) < 0)
		return -1;
	if (n)
		log_info("reclaimed jobs of a process that is gone", "jobs=%zu", n);
	if (!(r->pool = worker_pool_new(r->cfg, r->work_q, r->s3, e)))
		return -1;
	return worker_pool_start(r->pool, e);
}

/* ---- sources: listing pages and manifest pages ---- */

static void objpage_release(struct objpage *pg)
{
	size_t i;

	for (i = 0; i < pg->n; i++) {
		free(pg->v[i].bucket);
		free(pg->v[i].key);
		free(pg->v[i].version_id);
		free(pg->v[i].problem);
	}
	free(pg->v);
	memset(pg, 0, sizeof(*pg));
}

/*
 * Within a run, pages follow continuation tokens (a page may come back short,
 * even empty, and still not be the last); a resumed run starts after the key
 * of its checkpoint.
 */
static int list_page(struct run *r, struct objpage *pg, struct err *e)
{
	struct s3_list_opts lo = { .prefix = r->o->prefix,
				   .token = r->token,
				   .start_after = r->token ? NULL : r->after,
				   .max_keys = REPROCESS_PAGE };
	struct s3_list_page page = S3_LIST_PAGE_INIT;
	size_t i;

	if (s3_list_objects(r->s3, r->o->bucket, &lo, &page, e) < 0) {
		r->st->listing_failed = 1;
		err_prefix(e, "listing page %lu of s3://%s/%s%s%s%s", r->pages + 1, r->o->bucket,
			   r->o->prefix ? SHORT(r->o->prefix) : "", r->after ? " after '" : "",
			   r->after ? SHORT(r->after) : "", r->after ? "'" : "");
		s3_list_page_release(&page);
		return -1;
	}
	pg->v = xcalloc(page.n_entries + 1, sizeof(*pg->v));
	for (i = 0; i < page.n_entries; i++) {
		struct object *ob = &pg->v[pg->n++];
		ob->bucket = xstrdup(r->o->bucket);
		ob->key = page.entries[i].key;
		page.entries[i].key = NULL;
		ob->key_len = strlen(ob->key);
		ob->size = page.entries[i].size;
		str_copy(ob->etag, sizeof(ob->etag), page.entries[i].etag);
		ob->version_id = xstrdup("");
		ob->last_modified = page.entries[i].last_modified;
		ob->http = 200;
	}
	free(r->token);
	r->token = page.truncated && page.next_token && *page.next_token ? xstrdup(page.next_token)
									 : NULL;
	/* Truncated with neither a token nor a key to go on from: nothing more can be asked. */
	pg->last = !page.truncated || (!r->token && !page.n_entries);
	s3_list_page_release(&page);
	return 0;
}

/* HEADs of a manifest page, spread over a few threads. */
struct heads {
	struct run *r;
	struct objpage *pg;
	size_t next;
	pthread_mutex_t mu;
	struct err err; /* the first failure other than 404 */
	unsigned long err_line;
};

static void head_one(struct heads *h, struct object *ob)
{
	struct s3_object_info info = S3_OBJECT_INFO_INIT;
	struct err e = ERR_INIT;
	const char *v = ob->version_id;

	if (s3_head_object(h->r->s3, ob->bucket, ob->key, NULL, &info, &e) < 0) {
		if (e.code == ERR_NOTFOUND) {
			ob->http = 404;
		} else {
			pthread_mutex_lock(&h->mu);
			if (!err_is_set(&h->err) || ob->line < h->err_line) {
				h->err = e;
				h->err_line = ob->line;
			}
			pthread_mutex_unlock(&h->mu);
		}
	} else {
		ob->http = 200;
		ob->size = info.size;
		str_copy(ob->etag, sizeof(ob->etag), info.etag);
		ob->last_modified = info.last_modified;
		/* Handlers read the current object: an older version cannot be handed to them. */
		if (*v && strcmp(v, "null") && strcmp(v, info.version_id))
			ob->problem = xstrdup("version is not the current one");
	}
	s3_object_info_release(&info);
}

static void *head_main(void *arg)
{
	struct heads *h = arg;
	size_t i;

	while ((i = __atomic_fetch_add(&h->next, 1, __ATOMIC_RELAXED)) < h->pg->n)
		if (!h->pg->v[i].problem)
			head_one(h, &h->pg->v[i]);
	return NULL;
}

static int head_all(struct run *r, struct objpage *pg, struct err *e)
{
	struct heads h = { .r = r, .pg = pg, .err = ERR_INIT };
	pthread_t t[HEAD_THREADS];
	size_t i, n = 0;

	pthread_mutex_init(&h.mu, NULL);
	for (i = 0; i < HEAD_THREADS && i < pg->n; i++)
		if (pthread_create(&t[n], NULL, head_main, &h) == 0)
			n++;
	if (!n && pg->n)
		head_main(&h);
	for (i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_destroy(&h.mu);
	if (!err_is_set(&h.err))
		return 0;
	*e = h.err;
	r->st->listing_failed = 1;
	return err_prefix(e, "manifest '%s' line %lu", SHORT(r->o->manifest), h.err_line);
}

static void take_row(struct objpage *pg, struct reprocess_row *row)
{
	struct object *ob = &pg->v[pg->n++];

	ob->bucket = row->bucket;
	ob->key = row->key;
	ob->key_len = row->key_len;
	ob->version_id = row->version_id;
	ob->line = row->line;
	if (memchr(ob->key, '\0', ob->key_len))
		ob->problem = xstrdup("the key decodes to a NUL byte");
	memset(row, 0, sizeof(*row));
}

static int manifest_page(struct run *r, struct objpage *pg, struct err *e)
{
	struct reprocess_row row = REPROCESS_ROW_INIT;
	int got = 1;

	if (!r->manifest && !(r->manifest = reprocess_manifest_open(r->o->manifest, e)))
		goto failed;
	pg->v = xcalloc(REPROCESS_PAGE, sizeof(*pg->v));
	while (pg->n < REPROCESS_PAGE && (got = reprocess_manifest_next(r->manifest, &row, e)) > 0)
		if (row.line > r->skip_line)
			take_row(pg, &row);
	reprocess_row_release(&row);
	if (got < 0)
		goto failed;
	pg->last = got == 0;
	return head_all(r, pg, e);
failed:
	r->st->listing_failed = 1;
	return -1;
}

/* ---- from objects to jobs ---- */

static int selected(const struct reprocess_opts *o, const struct object *ob)
{
	size_t i;
	int suffix = !o->suffixes;

	for (i = 0; !suffix && o->suffixes[i]; i++)
		suffix = str_ends_with(ob->key, o->suffixes[i]);
	return suffix && (int64_t)ob->last_modified >= o->since &&
	       (int64_t)ob->last_modified < o->until && ob->size >= o->min_size &&
	       ob->size <= o->max_size;
}

static int wanted_handler(const struct run *r, const char *name)
{
	size_t i;

	for (i = 0; r->handlers[i]; i++)
		if (!strcmp(r->handlers[i], name))
			return 1;
	return 0;
}

/* Whether the ledger has this job's (object version, handler) done: 1 yes, 0 no, -1. */
static int done_before(struct run *r, const struct jobq_new *j, struct err *e)
{
	if (!r->q || (r->o->flags & REPROCESS_FORCE))
		return 0;
	return jobq_ledger_done(r->q, j->bucket, j->key, *j->version_id ? j->version_id : j->etag,
				j->handler, e);
}

/*
 * Keeps the jobs from `from` on that this run makes: its handlers', less what
 * the ledger has done. *mine counts the jobs of its handlers. Kept, or -1.
 */
static long narrow(struct run *r, const struct object *ob, size_t from, size_t *mine, struct err *e)
{
	struct chunk *c = &r->chunk;
	size_t i, kept = from;
	int d;

	*mine = 0;
	for (i = from; i < c->n_jobs; i++) {
		if (!wanted_handler(r, c->jobs[i].handler))
			continue;
		(*mine)++;
		if ((d = done_before(r, &c->jobs[i], e)) < 0)
			return -1;
		if (d) {
			r->st->already_done++;
			report_add(r, ob, NULL, 200, "skipped: already done");
			continue;
		}
		c->jobs[kept++] = c->jobs[i];
	}
	c->n_jobs = kept;
	return (long)(kept - from);
}

static void reject(struct run *r, const struct object *ob, const char *why)
{
	char what[600];

	r->st->rejected++;
	log_warn("object skipped", "bucket=%s key=%s line=%lu reason=%s", ob->bucket,
		 SHORT(ob->key), ob->line, why);
	snprintf(what, sizeof(what), "not taken: %s", why);
	report_add(r, ob, "PermanentFailure", 400, what);
}

/* The event of an object; 0, or -1 (the object rejected) when it cannot be one. */
static int make_event(struct run *r, const struct object *ob, struct event *ev)
{
	struct err e = ERR_INIT;
	char when[32];

	iso_time(when, ob->last_modified);
	if (event_for_object(ev, ob->bucket, ob->key, ob->size, ob->etag, when, &e) < 0) {
		reject(r, ob, e.msg);
		return -1;
	}
	if (*ob->version_id && strcmp(ob->version_id, "null")) {
		free(ev->version_id);
		ev->version_id = xstrdup(ob->version_id);
	}
	return 0;
}

/* Gives the jobs from `from` on their event JSON, sequencer and batch; -1 (rejected) when the
 * event has no JSON. */
static int finish_jobs(struct run *r, const struct object *ob, const struct event *ev, size_t from)
{
	struct chunk *c = &r->chunk;
	struct buf json = BUF_INIT;
	struct err e = ERR_INIT;
	size_t i;

	if (event_to_json(ev, &json, &e) < 0) {
		buf_release(&json);
		reject(r, ob, e.msg);
		return -1;
	}
	c->jsons = xrealloc(c->jsons, (c->n_jsons + 1) * sizeof(char *));
	c->jsons[c->n_jsons] = buf_detach(&json, NULL);
	for (i = from; i < c->n_jobs; i++) {
		c->jobs[i].event_json = c->jsons[c->n_jsons];
		c->jobs[i].sequencer = r->sequencer;
		c->jobs[i].batch = r->st->batch;
	}
	c->n_jsons++;
	return 0;
}

static void would_run(struct run *r, const struct object *ob, size_t from)
{
	size_t i;

	for (i = from; dry(r) && r->o->would_run && i < r->chunk.n_jobs; i++)
		r->o->would_run(r->o->arg, r->chunk.jobs[i].handler, ob->bucket, ob->key, ob->size);
}

static int take_object(struct run *r, const struct object *ob, struct err *e)
{
	struct chunk *c = &r->chunk;
	struct event ev = EVENT_INIT;
	size_t from = c->n_jobs, mine = 0;
	long kept = 0;

	r->st->listed++;
	if (ob->http == 404) {
		r->st->missing++;
		report_add(r, ob, NULL, 404, "gone: no such object");
		return 0;
	}
	if (ob->problem) {
		reject(r, ob, ob->problem);
		return 0;
	}
	if (!selected(r->o, ob) || make_event(r, ob, &ev) < 0)
		return 0;
	if (rules_jobs(r->cfg, &ev, NULL, 1, &c->jobs, &c->n_jobs))
		kept = narrow(r, ob, from, &mine, e);
	r->st->matched += mine > 0;
	if (kept <= 0 || finish_jobs(r, ob, &ev, from) < 0) {
		c->n_jobs = from;
		event_release(&ev);
		return kept < 0 ? -1 : 0;
	}
	r->st->bytes += ob->size;
	r->st->jobs += (uint64_t)kept;
	c->objects++;
	would_run(r, ob, from);
	event_list_add(&c->evs, &ev);
	return 0;
}

static void chunk_release(struct chunk *c)
{
	size_t i;

	event_list_release(&c->evs);
	for (i = 0; i < c->n_jsons; i++)
		free(c->jsons[i]);
	free(c->jsons);
	free(c->jobs);
	memset(c, 0, sizeof(*c));
}

/* The checkpoint's value after `last` (NULL: the listing ended). */
static char *cp_value(const struct run *r, const struct object *last)
{
	struct buf v = BUF_INIT;

	if (!last) {
		buf_addf(&v, CP_VERSION " listed %s", r->st->batch);
	} else if (last->line) {
		buf_addf(&v, CP_VERSION " listing %s %lu", r->st->batch, last->line);
	} else {
		buf_addf(&v, CP_VERSION " listing %s ", r->st->batch);
		str_pct_encode(&v, last->key, last->key_len, 1);
	}
	return buf_detach(&v, NULL);
}

/* Keeps to --rate: sleeps until `paced` objects are due. */
static void pace(struct run *r)
{
	int64_t due;

	if (r->o->rate <= 0)
		return;
	due = r->paced_from_ms + (int64_t)((double)r->paced * 1000.0 / r->o->rate);
	while (!cancelled(r) && jobq_now_ms() < due) {
		int64_t left = due - jobq_now_ms();
		sleep_ms(left < WAIT_MS ? left : WAIT_MS);
		tick(r, 0);
	}
}

/* Queues the chunk's jobs and moves the checkpoint past `last`, in one transaction. */
static int commit(struct run *r, const struct object *last, struct err *e)
{
	struct chunk *c = &r->chunk;
	size_t added = 0;
	char *v;
	int rc = 0;

	if (!dry(r)) {
		v = cp_value(r, last);
		rc = jobq_enqueue_page(r->q, c->jobs, c->n_jobs, r->st->checkpoint, v, &added, e);
		free(v);
	}
	r->st->queued += added;
	r->paced += c->objects;
	chunk_release(c);
	if (rc == 0 && !dry(r))
		pace(r);
	return rc;
}

static int take_page(struct run *r, struct objpage *pg, struct err *e)
{
	size_t i;

	for (i = 0; i < pg->n; i++) {
		if (cancelled(r))
			return err_set(e, ERR_CANCELLED, "interrupted");
		if (take_object(r, &pg->v[i], e) < 0)
			return -1;
		if (r->chunk_objects && r->chunk.objects >= r->chunk_objects && i + 1 < pg->n &&
		    commit(r, &pg->v[i], e) < 0)
			return -1;
		tick(r, 0);
	}
	return commit(r, pg->last ? NULL : &pg->v[pg->n - 1], e);
}

static int list_all(struct run *r, struct err *e)
{
	struct objpage pg = { 0 };
	int rc = 0;

	r->paced_from_ms = jobq_now_ms();
	while (rc == 0 && !r->st->listing_done) {
		if (cancelled(r)) {
			rc = err_set(e, ERR_CANCELLED, "interrupted");
			break;
		}
		rc = r->o->manifest ? manifest_page(r, &pg, e) : list_page(r, &pg, e);
		if (rc == 0)
			rc = take_page(r, &pg, e);
		if (rc == 0 && pg.n && !r->o->manifest) {
			free(r->after);
			r->after = xstrdup(pg.v[pg.n - 1].key);
		}
		r->pages++;
		r->st->listing_done = rc == 0 && pg.last;
		objpage_release(&pg);
	}
	chunk_release(&r->chunk);
	tick(r, 1);
	return rc;
}

/* ---- waiting and reporting ---- */

static int wait_batch(struct run *r, struct err *e)
{
	for (;;) {
		if (count_batch(r, e) < 0)
			return -1;
		r->last_tick_ms = jobq_now_ms();
		if (r->o->progress)
			r->o->progress(r->o->arg, r->st);
		if (!unfinished(r->st))
			return 0;
		if (cancelled(r))
			return err_set(e, ERR_CANCELLED, "interrupted");
		sleep_ms(WAIT_MS);
	}
}

static int report_job(void *arg, const struct jobq_job *j)
{
	struct run *r = arg;

	if ((r->o->flags & REPROCESS_REPORT_FAILED) && j->state != JOB_DEAD &&
	    job_state_final(j->state))
		return 0;
	buf_reset(&r->row);
	reprocess_report_job(&r->row, j);
	fwrite(r->row.data, 1, r->row.len, r->report);
	return 0;
}

static int write_report(struct run *r, struct err *e)
{
	struct jobq_query qu = JOBQ_QUERY_INIT;
	FILE *f = r->report;
	int rc;

	qu.batch = r->st->batch;
	if (r->st->batch[0] && jobq_list(r->q, &qu, report_job, r, e) < 0)
		return -1;
	r->report = NULL;
	rc = fflush(f) == 0 && !ferror(f) && fsync(fileno(f)) == 0 ? 0 : -1;
	if (fclose(f) != 0 || rc < 0)
		return err_sys(e, ERR_IO, "cannot write the report '%s'", SHORT(r->report_tmp));
	if (rename(r->report_tmp, r->o->report) < 0)
		return err_sys(e, ERR_IO, "cannot rename the report to '%s'", SHORT(r->o->report));
	free(r->report_tmp);
	r->report_tmp = NULL;
	return 0;
}

/* ---- the whole run ---- */

static int prepare(struct run *r, struct err *e)
{
	uint64_t rows = 0;

	if (check_opts(r->o, e) < 0 || pick_handlers(r, e) < 0)
		return -1;
	if (checkpoint_id(r->o, r->handlers, r->st->checkpoint, &rows, e) < 0) {
		r->st->listing_failed = 1;
		return -1;
	}
	r->st->manifest_rows = r->o->manifest ? rows : 0;
	if (r->o->rate > 0)
		r->chunk_objects = r->o->rate >= 4 * REPROCESS_PAGE ? 0
				   : r->o->rate < 4		    ? 1
								    : (size_t)(r->o->rate / 4);
	if (open_queue(r, e) < 0 || (!dry(r) && start(r, e) < 0))
		return -1;
	if (r->o->report && open_report(r, e) < 0)
		return -1;
	if (!dry(r) && !(r->o->flags & REPROCESS_ENQUEUE))
		return start_workers(r, e);
	return 0;
}

static void finish(struct run *r, int ok)
{
	if (r->pool)
		worker_pool_stop(r->pool, r->cfg->shutdown_grace_ms);
	worker_pool_free(r->pool);
	if (r->report)
		fclose(r->report);
	if (r->report_tmp && !ok)
		unlink(r->report_tmp);
	free(r->report_tmp);
	jobq_close(r->work_q);
	jobq_close(r->q);
	reprocess_manifest_close(r->manifest);
	chunk_release(&r->chunk);
	buf_release(&r->row);
	free(r->handlers);
	free(r->after);
	free(r->token);
}

int reprocess_run(const struct config *cfg, struct s3_client *s3, const struct reprocess_opts *o,
		  struct reprocess_stats *st, struct err *e)
{
	struct run r = { .cfg = cfg, .s3 = s3, .o = o, .st = st, .row = BUF_INIT };
	int rc;

	memset(st, 0, sizeof(*st));
	st->started_ms = jobq_now_ms();
	rc = prepare(&r, e);
	if (rc == 0 && !st->listing_done)
		rc = list_all(&r, e);
	if (rc == 0 && r.pool)
		rc = wait_batch(&r, e);
	if (rc == 0)
		tick(&r, 1);
	if (rc == 0 && r.report)
		rc = write_report(&r, e);
	finish(&r, rc == 0);
	return rc;
}
