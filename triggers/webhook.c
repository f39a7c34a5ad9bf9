#include "triggers/webhook.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/event.h"
#include "core/jobq.h"
#include "core/log.h"
#include "core/str.h"
#include "core/units.h"
#include "triggers/rules.h"
#include "triggers/sns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A body waits this long for one of the max_parsing slots, then gets a 503. */
#define PARSE_WAIT_MS 1000
/*
 * After a failed commit, notifications get their 503 at once, before the body
 * is read, for this long: a persistent Ceph RGW topic resends every ~45 ms.
 */
#define FAIL_HOLD_MS 1000
/* healthz checks the queue for real this often, in the background. */
#define HEALTH_CACHE_MS 500
/* A background check that has not come back for this long is a failure itself. */
#define HEALTH_STALE_MS 5000
/* One warning per rejection reason this often; the rest are counted. */
#define WARN_EVERY_MS 5000
/* webhook_stop() gives requests under way this long beyond commit_timeout. */
#define DRAIN_EXTRA_MS 1000
/* listen(2) backlog: bursts of connections queue in the kernel, not refused. */
#define LISTEN_BACKLOG 1024
/* Threads in libmicrohttpd's pool, at most: decoding is the CPU work they do. */
#define POOL_MAX 16
/* The body signature header: "sha256=" and 64 hex digits. */
#define SIG_HEADER "X-S3hook-Signature"
/* TLS 1.2 and 1.3 only: what SNS, MinIO and curl speak, without the old versions' flaws. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
/* Largest PEM file read for TLS. */
#define PEM_MAX (1 << 20)

/* Answers that never change, made once and shared by every connection. */
enum canned {
	C_401,
	C_401_SIG,
	C_401_CERT,
	C_404,
	C_405_POST,
	C_405_GET,
	C_413,
	C_503_BUSY,
	C_503_QUEUE,
	C_503_TIMEOUT,
	C_503_STOPPING,
	C_N
};

static const struct {
	unsigned status;
	const char *body;
	const char *allow; /* the Allow header of a 405 */
	int retry;	   /* whether it carries Retry-After */
} canned_def[C_N] = {
	[C_401] = { 401, "{\"error\":\"missing or wrong token or signature\"}\n", NULL, 0 },
	[C_401_SIG] = { 401, "{\"error\":\"wrong signature\"}\n", NULL, 0 },
	[C_401_CERT] = { 401, "{\"error\":\"missing or untrusted client certificate\"}\n", NULL,
			 0 },
	[C_404] = { 404, "{\"error\":\"not found\"}\n", NULL, 0 },
	[C_405_POST] = { 405, "{\"error\":\"method not allowed\"}\n", "POST", 0 },
	[C_405_GET] = { 405, "{\"error\":\"method not allowed\"}\n", "GET, HEAD", 0 },
	[C_413] = { 413, "{\"error\":\"body over the limit\"}\n", NULL, 0 },
	[C_503_BUSY] = { 503, "{\"error\":\"too many notifications being parsed\"}\n", NULL, 1 },
	[C_503_QUEUE] = { 503, "{\"error\":\"job queue failing\"}\n", NULL, 1 },
	[C_503_TIMEOUT] = { 503, "{\"error\":\"job queue too slow\"}\n", NULL, 1 },
	[C_503_STOPPING] = { 503, "{\"error\":\"shutting down\"}\n", NULL, 1 },
};

static const char *const reject_names[WEBHOOK_REJ_N] = {
	[WEBHOOK_REJ_AUTH] = "auth",	       [WEBHOOK_REJ_TOO_LARGE] = "too_large",
	[WEBHOOK_REJ_MALFORMED] = "malformed", [WEBHOOK_REJ_BUSY] = "busy",
	[WEBHOOK_REJ_QUEUE] = "queue",	       [WEBHOOK_REJ_TIMEOUT] = "timeout",
	[WEBHOOK_REJ_STOPPING] = "stopping",   [WEBHOOK_REJ_UPSTREAM] = "upstream",
};

/* What warn_allowed() rate-limits: each rejection reason, and these. */
enum warn_slot {
	WARN_MHD = WEBHOOK_REJ_N, /* libmicrohttpd's own messages */
	WARN_HEALTH,		  /* healthz finding the queue not writable */
	WARN_N
};

enum req_phase {
	REQ_BODY,     /* headers accepted, body being read */
	REQ_WAITING,  /* suspended, handed to the committer */
	REQ_ANSWERED, /* the answer is decided (and the connection resumed if it was suspended) */
};

/* What a notification still has to prove once its body is in. */
enum req_auth {
	AUTH_DONE, /* proven at the headers: the token (or nothing is asked) */
	AUTH_HMAC, /* X-S3hook-Signature over the body */
	AUTH_SNS,  /* an SNS message's own signature */
	AUTH_NO,   /* refused at the headers */
};

/* A request id: 16 hex digits and the NUL. */
#define RID_SIZE 17

/* One notification POST, from its headers to the end of its connection's request. */
struct req {
	struct webhook *w;
	struct MHD_Connection *conn;
	char id[RID_SIZE];
	struct req *next; /* in the pending list */
	/* One for the connection; one for the committer (or watchdog) while it has r. */
	int refs;
	enum req_phase phase;
	enum req_auth auth;
	int sns;       /* the body is an SNS envelope (x-amz-sns-message-type, not raw delivery) */
	int suspended; /* suspended and not yet back in the access handler; under w->lock */
	unsigned status;
	enum canned canned; /* the answer; C_N: `reply` is */
	char *reply;	    /* the body of a 200 or 400 */
	int too_large;
	uint64_t limit;
	uint64_t dropped; /* bytes past the limit */
	int64_t start_ms;
	int64_t deadline_ms;
	struct buf body;
	struct event_list events;
	char **json; /* canonical JSON per event; the jobs point into it */
	struct jobq_new *jobs;
	size_t n_jobs;
	char **handlers; /* copies of the names the jobs point at: a reload may free the config */
	size_t *ev_jobs; /* per event: the end of its jobs in `jobs` (for the log) */
};

struct webhook {
	/* What webhook_reload() swaps. cfg, token, hmac, sns_on under cfg_lock; numbers atomic. */
	pthread_rwlock_t cfg_lock;
	const struct config *cfg;
	char *token;
	size_t token_len;
	char **hmac; /* hmac_secrets */
	size_t n_hmac;
	int sns_on;	 /* sns_topics is set */
	struct sns *sns; /* SNS policy and certificates; its own lock */
	uint64_t body_limit;
	int64_t max_parsing;
	uint64_t commit_timeout_ms;
	int64_t commit_batch;

	/* Fixed at webhook_new(). */
	struct jobq *q;
	char *listen;
	char *admin_listen;
	unsigned max_connections;
	unsigned timeout_s;
	char *tls_cert, *tls_key, *tls_ca; /* PEM text; NULL: plain HTTP, no client certificates */
	struct MHD_Response *canned[C_N];

	int fd, admin_fd; /* ours until handed to libmicrohttpd */
	struct MHD_Daemon *mhd, *admin;
	int port, admin_port;
	int started, stopped;
	int draining; /* atomic */

	/* The commit pipeline: everything below is under `lock`. */
	pthread_mutex_t lock;
	pthread_cond_t work;  /* the committer: something pending, or stop */
	pthread_cond_t watch; /* the watchdog: stop */
	pthread_cond_t quiet; /* webhook_stop(): n_requests or n_suspended reached 0 */
	struct req *head, *tail;
	struct req **batch; /* being committed */
	size_t n_batch, batch_alloc;
	int64_t batch_deadline_ms;
	int stuck; /* the batch missed its deadline and is still in the disk; atomic */
	int accepting;
	int watching;
	size_t n_requests; /* notifications begun and not completed */
	size_t n_suspended;
	pthread_t committer, watchdog;
	int threads;
	int64_t fail_until_ms; /* atomic */

	pthread_mutex_t parse_lock;
	pthread_cond_t parse_cv;
	int64_t n_parsing;

	pthread_mutex_t health_lock;
	pthread_cond_t health_wake;
	pthread_t health_thread;
	int health_running;
	int health_stopping; /* told to end, not joined yet */
	int64_t health_at_ms;
	int health_ok;
	char health_msg[256];

	pthread_mutex_t warn_lock;
	int64_t warn_at_ms[WARN_N];
	uint64_t warn_quiet[WARN_N];

	struct webhook_stats st; /* atomics */

	uint32_t rid_prefix; /* request ids: random per process, then a counter */
	uint64_t rid_next;   /* atomic */
	int (*metrics_fn)(void *arg, struct buf *out); /* set before start */
	void *metrics_arg;
};

#define LOAD(p)	    __atomic_load_n(p, __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n(p, v, __ATOMIC_RELAXED)
#define COUNT(p, n) __atomic_fetch_add(p, n, __ATOMIC_RELAXED)

/* A fresh request id into out (RID_SIZE bytes). */
static const char *request_id(struct webhook *w, char *out)
{
	uint64_t n = COUNT(&w->rid_next, 1);

	snprintf(out, RID_SIZE, "%08x%08x", w->rid_prefix, (uint32_t)n);
	return out;
}

const char *webhook_reject_name(enum webhook_reject r)
{
	return (unsigned)r < WEBHOOK_REJ_N ? reject_names[r] : "?";
}

/* Deadlines run on units_mono_ms(): a clock step must not fire or hold back a 503. */
static struct timespec abs_time(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	return ts;
}

/* A reload must not wait behind a steady stream of requests reading the token. */
static void rwlock_init_writer_first(pthread_rwlock_t *l)
{
	pthread_rwlockattr_t a;

	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(l, &a);
	pthread_rwlockattr_destroy(&a);
}

static void cond_init_mono(pthread_cond_t *c)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

/* Waits on c until woken or until the monotonic time `until_ms`. */
static void cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t until_ms)
{
	struct timespec ts = abs_time(until_ms);

	pthread_cond_timedwait(c, m, &ts);
}

/* ---- answers ---- */

/* One line of JSON: {"k1":"v1"} or {"k1":"v1","k2":"v2"}, escaped by jansson. */
static char *json_line(const char *k1, const char *v1, const char *k2, const char *v2)
{
	json_t *o = k2 ? json_pack("{s:s,s:s}", k1, v1, k2, v2) : json_pack("{s:s}", k1, v1);
	char *s, *line;

	/* A message quoting a key that is not UTF-8 cannot be a JSON string: say less. */
	if (!o)
		o = json_pack("{s:s}", k1, k2 ? v1 : "malformed notification");
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!s || asprintf(&line, "%s\n", s) < 0)
		abort();
	free(s);
	return line;
}

static struct MHD_Response *make_response(const char *body, size_t len,
					  enum MHD_ResponseMemoryMode m)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, m);

	if (!r)
		abort();
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	return r;
}

static struct MHD_Response *canned_one(enum canned i)
{
	struct MHD_Response *r = make_response(canned_def[i].body, strlen(canned_def[i].body),
					       MHD_RESPMEM_PERSISTENT);

	if (canned_def[i].allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, canned_def[i].allow);
	if (canned_def[i].retry)
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	/* Whoever is told to come back later should come back on a fresh connection. */
	if (i == C_503_STOPPING)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	return r;
}

static void canned_make(struct webhook *w)
{
	size_t i;

	for (i = 0; i < C_N; i++)
		w->canned[i] = canned_one((enum canned)i);
}

static enum MHD_Result queue_canned(struct webhook *w, struct MHD_Connection *c, enum canned k)
{
	return MHD_queue_response(c, canned_def[k].status, w->canned[k]);
}

/* A canned answer to a notification, with its X-Request-Id (so not the shared response). */
static enum MHD_Result queue_canned_id(struct MHD_Connection *c, enum canned k, const char *rid)
{
	struct MHD_Response *r = canned_one(k);
	enum MHD_Result ok;

	MHD_add_response_header(r, "X-Request-Id", rid);
	ok = MHD_queue_response(c, canned_def[k].status, r);
	MHD_destroy_response(r);
	return ok;
}

/* Queues a one-off answer; `body` is copied. rid: the X-Request-Id, or NULL. */
static enum MHD_Result queue_body(struct webhook *w, struct MHD_Connection *c, unsigned status,
				  const char *body, const char *rid)
{
	struct MHD_Response *r = make_response(body, strlen(body), MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ok;

	if (rid)
		MHD_add_response_header(r, "X-Request-Id", rid);
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	if (LOAD(&w->draining))
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	ok = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ok;
}

/* ---- logging ---- */

static const char *remote_addr(struct MHD_Connection *c, char *out, size_t size)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	str_copy(out, size, "?");
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, size);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, size);
	return out;
}

/*
 * Whether a warning of this kind may be logged now; *quiet gets how many were
 * held back since the last one. A sender that retries every 45 ms must not
 * turn each retry into a log line.
 */
static int warn_allowed(struct webhook *w, size_t slot, uint64_t *quiet)
{
	int64_t now = units_mono_ms();
	int ok = 0;

	pthread_mutex_lock(&w->warn_lock);
	if (!w->warn_at_ms[slot] || now - w->warn_at_ms[slot] >= WARN_EVERY_MS) {
		*quiet = w->warn_quiet[slot];
		w->warn_quiet[slot] = 0;
		w->warn_at_ms[slot] = now;
		ok = 1;
	} else {
		w->warn_quiet[slot]++;
	}
	pthread_mutex_unlock(&w->warn_lock);
	return ok;
}

/*
 * Counts a refused notification and warns (rate-limited). `path` is the
 * request path without its query string, which may hold the token.
 */
static void refused(struct webhook *w, enum webhook_reject why, struct MHD_Connection *c,
		    const char *path, const char *detail, const char *rid)
{
	char addr[INET6_ADDRSTRLEN];
	uint64_t quiet;

	COUNT(&w->st.rejected[why], 1);
	if (!warn_allowed(w, why, &quiet))
		return;
	log_warn("notification refused",
		 "request=%s reason=%s remote=%s path=%s error=%s suppressed=%llu", rid,
		 reject_names[why], remote_addr(c, addr, sizeof(addr)), SHORT(path), detail,
		 (unsigned long long)quiet);
}

/*
 * libmicrohttpd's own messages (connection limit reached, out of memory...).
 * Anything after a '?' is cut: a message quoting a URI must not log a token.
 */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct webhook *w = cls;
	char msg[512], *q;
	uint64_t quiet;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	vsnprintf(msg, sizeof(msg), fmt, ap);
#pragma GCC diagnostic pop
	if ((q = strchr(msg, '?')))
		*q = '\0';
	msg[strcspn(msg, "\n")] = '\0';
	if (warn_allowed(w, WARN_MHD, &quiet))
		log_warn("libmicrohttpd", "msg=%s suppressed=%llu", msg, (unsigned long long)quiet);
}

/* ---- requests: life and death ---- */

static struct req *req_new(struct webhook *w, struct MHD_Connection *c, uint64_t limit,
			   uint64_t content_length, const char *rid)
{
	struct req *r = xcalloc(1, sizeof(*r));

	r->w = w;
	r->conn = c;
	str_copy(r->id, sizeof(r->id), rid);
	r->refs = 1;
	r->limit = limit;
	r->start_ms = units_mono_ms();
	r->body = (struct buf)BUF_INIT;
	buf_init_cap(&r->body, limit);
	if (content_length)
		buf_grow(&r->body, content_length);
	r->events = (struct event_list)EVENT_LIST_INIT;
	return r;
}

static void req_free(struct req *r)
{
	size_t i;

	buf_release(&r->body);
	for (i = 0; r->json && i < r->events.n; i++)
		free(r->json[i]);
	free(r->json);
	event_list_release(&r->events);
	for (i = 0; i < r->n_jobs; i++)
		free(r->handlers[i]);
	free(r->handlers);
	free(r->ev_jobs);
	free(r->jobs);
	free(r->reply);
	free(r);
}

/* Drops one reference (under w->lock); 1 when it was the last and r must be freed. */
static int req_unref(struct req *r)
{
	return --r->refs == 0;
}

/*
 * Decides r's answer unless it was decided already; 1 when this call decided
 * it (and must resume the connection if it was suspended). Under w->lock once
 * the committer can see r.
 */
static int req_decide(struct req *r, unsigned status, enum canned k)
{
	struct webhook *w = r->w;

	if (r->phase == REQ_ANSWERED)
		return 0;
	r->phase = REQ_ANSWERED;
	r->status = status;
	r->canned = k;
	if (status == MHD_HTTP_OK) {
		COUNT(&w->st.accepted, 1);
		COUNT(&w->st.events, r->events.n);
		COUNT(&w->st.jobs, r->n_jobs);
	}
	return 1;
}

/* Queues the answer decided for r: r->reply when decided with C_N, else the canned one. */
static enum MHD_Result req_reply(struct req *r)
{
	if (r->canned == C_N)
		return queue_body(r->w, r->conn, r->status, r->reply, r->id);
	return queue_canned_id(r->conn, r->canned, r->id);
}

/* ---- the committer ---- */

/* Connections to resume once w->lock is released (libmicrohttpd is never called under it). */
struct resume_list {
	struct MHD_Connection **v;
	size_t n, alloc;
};

static void resume_add(struct resume_list *l, struct MHD_Connection *c)
{
	if (l->n == l->alloc) {
		l->alloc = l->alloc ? 2 * l->alloc : 64;
		l->v = xrealloc(l->v, l->alloc * sizeof(*l->v));
	}
	l->v[l->n++] = c;
}

/*
 * A suspended connection stays put until it is resumed, so these pointers
 * are good without the lock: only whoever decided a request's answer
 * resumes it, and only once.
 */
static void resume_all(struct resume_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		MHD_resume_connection(l->v[i]);
	l->n = 0;
}

/* Moves up to commit_batch pending requests into the batch (under w->lock). */
static void batch_take(struct webhook *w)
{
	size_t max = (size_t)LOAD(&w->commit_batch);

	if (w->batch_alloc < max) {
		w->batch = xrealloc(w->batch, max * sizeof(*w->batch));
		w->batch_alloc = max;
	}
	w->n_batch = 0;
	while (w->head && w->n_batch < max) {
		struct req *r = w->head;
		w->head = r->next;
		r->next = NULL;
		w->batch[w->n_batch++] = r;
	}
	if (!w->head)
		w->tail = NULL;
	w->batch_deadline_ms = w->batch[0]->deadline_ms;
}

/*
 * The jobs of every request in the batch, in one array for one transaction.
 * The requests cannot go away meanwhile: the committer holds a reference.
 */
static size_t batch_jobs(struct webhook *w, struct jobq_new **all, size_t *alloc)
{
	size_t i, n = 0;

	for (i = 0; i < w->n_batch; i++)
		n += w->batch[i]->n_jobs;
	if (*alloc < n) {
		*all = xrealloc(*all, n * sizeof(**all));
		*alloc = n;
	}
	n = 0;
	for (i = 0; i < w->n_batch; i++) {
		memcpy(*all + n, w->batch[i]->jobs, w->batch[i]->n_jobs * sizeof(**all));
		n += w->batch[i]->n_jobs;
	}
	return n;
}

/* Lets go of the batch (under w->lock); the requests to free are chained on the result. */
static struct req *batch_release(struct webhook *w)
{
	struct req *dead = NULL;
	size_t i;

	for (i = 0; i < w->n_batch; i++) {
		if (req_unref(w->batch[i])) {
			w->batch[i]->next = dead;
			dead = w->batch[i];
		}
	}
	w->n_batch = 0;
	STORE(&w->stuck, 0);
	return dead;
}

/* Answers the batch after its commit (the requests the watchdog has not answered yet). */
static void batch_finish(struct webhook *w, int ok, struct resume_list *rl)
{
	struct req *dead, *next;
	size_t i, n_late = 0;

	pthread_mutex_lock(&w->lock);
	for (i = 0; i < w->n_batch; i++) {
		struct req *r = w->batch[i];
		if (!req_decide(r, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
				ok ? C_N : C_503_QUEUE)) {
			n_late++;
			continue;
		}
		resume_add(rl, r->conn);
		if (!ok)
			COUNT(&w->st.rejected[WEBHOOK_REJ_QUEUE], 1);
	}
	pthread_mutex_unlock(&w->lock);
	resume_all(rl);
	pthread_mutex_lock(&w->lock);
	dead = batch_release(w);
	pthread_mutex_unlock(&w->lock);
	for (; dead; dead = next) {
		next = dead->next;
		req_free(dead);
	}
	if (n_late)
		log_info("slow commit ended", "requests=%zu committed=%s", n_late,
			 ok ? "yes" : "no");
}

static void commit_failed(struct webhook *w, const struct err *e, size_t n_req)
{
	uint64_t quiet;

	COUNT(&w->st.commit_failures, 1);
	STORE(&w->fail_until_ms, units_mono_ms() + FAIL_HOLD_MS);
	if (warn_allowed(w, WEBHOOK_REJ_QUEUE, &quiet))
		log_error("commit failed", "requests=%zu error=%s suppressed=%llu", n_req, e->msg,
			  (unsigned long long)quiet);
}

/* One transaction for the whole batch: one fsync however many requests it holds. */
static void batch_commit(struct webhook *w, struct jobq_new **all, size_t *alloc,
			 struct resume_list *rl)
{
	struct err e = ERR_INIT;
	size_t n = batch_jobs(w, all, alloc), added = 0;
	int64_t t0 = units_mono_ms();
	int rc = jobq_enqueue(w->q, *all, n, &added, &e);

	if (rc == 0) {
		COUNT(&w->st.commits, 1);
		COUNT(&w->st.jobs_new, added);
		log_debug("commit", "requests=%zu jobs=%zu new=%zu ms=%lld", w->n_batch, n, added,
			  (long long)(units_mono_ms() - t0));
	} else {
		commit_failed(w, &e, w->n_batch);
	}
	batch_finish(w, rc == 0, rl);
}

static void *committer_main(void *arg)
{
	struct webhook *w = arg;
	struct resume_list rl = { NULL, 0, 0 };
	struct jobq_new *all = NULL;
	size_t alloc = 0;

	pthread_setname_np(pthread_self(), "committer");
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->head && w->accepting)
			pthread_cond_wait(&w->work, &w->lock);
		/* Stopping drains: what was handed over is committed, not dropped. */
		if (!w->head)
			break;
		batch_take(w);
		pthread_mutex_unlock(&w->lock);
		batch_commit(w, &all, &alloc, &rl);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	free(all);
	free(rl.v);
	return NULL;
}

/* ---- the watchdog ---- */

/*
 * Answers 503 to the pending requests whose deadline has passed and takes
 * them out of the queue (under w->lock); they are chained on *late, the
 * committer's reference now the watchdog's.
 */
static void expire_pending(struct webhook *w, int64_t now, struct req **late,
			   struct resume_list *rl)
{
	/*
	 * The list is in arrival order and every deadline is arrival +
	 * commit_timeout, so the expired ones are at the head (a reload that
	 * shortens commit_timeout delays this by at most the difference).
	 */
	while (w->head && w->head->deadline_ms <= now) {
		struct req *r = w->head;
		w->head = r->next;
		req_decide(r, MHD_HTTP_SERVICE_UNAVAILABLE, C_503_TIMEOUT);
		resume_add(rl, r->conn);
		COUNT(&w->st.rejected[WEBHOOK_REJ_TIMEOUT], 1);
		r->next = *late;
		*late = r;
	}
	if (!w->head)
		w->tail = NULL;
}

/*
 * Answers 503 to the batch stuck in the committer (under w->lock). The
 * committer keeps its reference and finds them answered when it returns.
 */
static void expire_batch(struct webhook *w, struct resume_list *rl)
{
	size_t i;

	STORE(&w->stuck, 1);
	for (i = 0; i < w->n_batch; i++) {
		struct req *r = w->batch[i];
		if (req_decide(r, MHD_HTTP_SERVICE_UNAVAILABLE, C_503_TIMEOUT)) {
			resume_add(rl, r->conn);
			COUNT(&w->st.rejected[WEBHOOK_REJ_TIMEOUT], 1);
		}
	}
}

/*
 * The next moment the watchdog has something to check (under w->lock). With
 * nothing waiting it still looks every quarter of commit_timeout, so that a
 * request handed over meanwhile is seen before its deadline: waking the
 * watchdog on every hand-over would cost a context switch per batch.
 */
static int64_t next_deadline(const struct webhook *w, int64_t now)
{
	int64_t t = now + (int64_t)LOAD(&w->commit_timeout_ms) / 4 + 1;

	if (w->head && w->head->deadline_ms < t)
		t = w->head->deadline_ms;
	if (w->n_batch && !w->stuck && w->batch_deadline_ms < t)
		t = w->batch_deadline_ms;
	return t;
}

static void late_release(struct req *late)
{
	struct req *next;

	for (; late; late = next) {
		next = late->next;
		if (req_unref(late))
			req_free(late);
	}
}

static void *watchdog_main(void *arg)
{
	struct webhook *w = arg;
	struct resume_list rl = { NULL, 0, 0 };
	uint64_t quiet;

	pthread_setname_np(pthread_self(), "watchdog");
	pthread_mutex_lock(&w->lock);
	while (w->watching) {
		int64_t now = units_mono_ms();
		struct req *late = NULL;
		expire_pending(w, now, &late, &rl);
		if (w->n_batch && !w->stuck && w->batch_deadline_ms <= now)
			expire_batch(w, &rl);
		if (!rl.n) {
			cond_wait_until(&w->watch, &w->lock, next_deadline(w, now));
			continue;
		}
		pthread_mutex_unlock(&w->lock);
		if (warn_allowed(w, WEBHOOK_REJ_TIMEOUT, &quiet))
			log_warn("commit too slow, answered 503", "requests=%zu timeout_ms=%llu",
				 rl.n, (unsigned long long)LOAD(&w->commit_timeout_ms));
		resume_all(&rl);
		pthread_mutex_lock(&w->lock);
		late_release(late);
	}
	pthread_mutex_unlock(&w->lock);
	free(rl.v);
	return NULL;
}

/* ---- decoding ---- */

static int parse_enter(struct webhook *w)
{
	int64_t until = units_mono_ms() + PARSE_WAIT_MS;
	int ok;

	pthread_mutex_lock(&w->parse_lock);
	while (w->n_parsing >= LOAD(&w->max_parsing) && units_mono_ms() < until)
		cond_wait_until(&w->parse_cv, &w->parse_lock, until);
	ok = w->n_parsing < LOAD(&w->max_parsing);
	w->n_parsing += ok;
	pthread_mutex_unlock(&w->parse_lock);
	return ok ? 0 : -1;
}

static void parse_leave(struct webhook *w)
{
	pthread_mutex_lock(&w->parse_lock);
	w->n_parsing--;
	pthread_cond_signal(&w->parse_cv);
	pthread_mutex_unlock(&w->parse_lock);
}

/* The canonical JSON of every event, which the jobs carry to the handlers. */
static int req_encode(struct req *r, struct err *e)
{
	size_t i;

	r->json = xcalloc(r->events.n ? r->events.n : 1, sizeof(*r->json));
	for (i = 0; i < r->events.n; i++) {
		struct buf b = BUF_INIT;
		if (event_to_json(&r->events.v[i], &b, e) < 0) {
			buf_release(&b);
			return -1;
		}
		r->json[i] = buf_detach(&b, NULL);
	}
	return 0;
}

/* The jobs of every event under the current rules; they must not point into the config. */
static void req_match(struct req *r)
{
	struct webhook *w = r->w;
	size_t i;

	r->ev_jobs = xcalloc(r->events.n ? r->events.n : 1, sizeof(*r->ev_jobs));
	pthread_rwlock_rdlock(&w->cfg_lock);
	for (i = 0; i < r->events.n; i++) {
		rules_jobs(w->cfg, &r->events.v[i], r->json[i], 0, &r->jobs, &r->n_jobs);
		r->ev_jobs[i] = r->n_jobs;
	}
	r->handlers = xcalloc(r->n_jobs ? r->n_jobs : 1, sizeof(*r->handlers));
	for (i = 0; i < r->n_jobs; i++) {
		r->handlers[i] = xstrdup(r->jobs[i].handler);
		r->jobs[i].handler = r->handlers[i];
	}
	pthread_rwlock_unlock(&w->cfg_lock);
}

/*
 * An SNS envelope: checked by sns_open(); 0 when it is a Notification whose
 * m->message is to be decoded, 1 when it was a confirmation and r is
 * answered, -1 with e set when it is refused.
 */
static int req_sns(struct req *r, struct sns_msg *m, struct err *e)
{
	struct webhook *w = r->w;
	int confirmed = 0;

	if (!sns_enabled(w->sns))
		return err_set(e, ERR_PARSE, "an SNS message, and [serve] sns_topics is not set");
	if (sns_open(w->sns, r->body.data, r->body.len, m, e) < 0)
		return -1;
	if (m->type == SNS_NOTIFICATION)
		return 0;
	if (m->type == SNS_SUBSCRIPTION_CONFIRMATION && sns_confirm(w->sns, m, &confirmed, e) < 0)
		return -1;
	if (m->type == SNS_UNSUBSCRIBE_CONFIRMATION)
		log_info("SNS subscription ended", "request=%s topic=%s", r->id, m->topic_arn);
	if (asprintf(&r->reply, "{\"sns\":\"%s\",\"confirmed\":%s}\n", sns_type_name(m->type),
		     confirmed ? "true" : "false") < 0)
		abort();
	req_decide(r, MHD_HTTP_OK, C_N);
	return 1;
}

/* Refuses r for e: 401 (not authentic), 503 (an SNS host failed us), else 400. */
static void req_refuse(struct req *r, const char *path, const struct err *e)
{
	unsigned status = MHD_HTTP_BAD_REQUEST;
	enum webhook_reject why = WEBHOOK_REJ_MALFORMED;

	if (e->code == ERR_AUTH) {
		status = MHD_HTTP_UNAUTHORIZED;
		why = WEBHOOK_REJ_AUTH;
	} else if (e->code == ERR_NET || e->code == ERR_TIMEOUT) {
		status = MHD_HTTP_SERVICE_UNAVAILABLE;
		why = WEBHOOK_REJ_UPSTREAM;
	}
	refused(r->w, why, r->conn, path, e->msg, r->id);
	r->reply = json_line("error", e->msg, NULL, NULL);
	req_decide(r, status, C_N);
}

/* Decodes the body into events and jobs. -1 with r's answer decided when it cannot. */
static int req_decode(struct req *r, const char *path)
{
	struct webhook *w = r->w;
	struct sns_msg m = SNS_MSG_INIT;
	struct err e = ERR_INIT;
	int rc;

	if (parse_enter(w) < 0) {
		refused(w, WEBHOOK_REJ_BUSY, r->conn, path, "max_parsing reached", r->id);
		return req_decide(r, MHD_HTTP_SERVICE_UNAVAILABLE, C_503_BUSY), -1;
	}
	rc = r->sns ? req_sns(r, &m, &e) : 0;
	if (rc == 0 && m.message)
		rc = event_decode(m.message, strlen(m.message), &r->events, &e);
	else if (rc == 0)
		rc = event_decode(r->body.data, r->body.len, &r->events, &e);
	if (rc == 0)
		rc = req_encode(r, &e);
	parse_leave(w);
	buf_release(&r->body);
	sns_msg_release(&m);
	if (rc > 0)
		return -1;
	if (rc < 0)
		return req_refuse(r, path, &e), -1;
	req_match(r);
	if (asprintf(&r->reply, "{\"events\":%zu,\"jobs\":%zu}\n", r->events.n, r->n_jobs) < 0)
		abort();
	return 0;
}

/* ---- the access handler ---- */

/* Whether the request carries the token (Bearer or ?token=); constant time, under cfg_lock. */
static int token_ok(struct webhook *w, struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	const char *v = NULL;
	size_t len = 0;
	int ok = 0;

	if (h && !strncasecmp(h, "Bearer ", 7)) {
		h += 7 + strspn(h + 7, " ");
		ok |= str_consttime_eq(h, strlen(h), w->token, w->token_len);
	}
	if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "token", 5, &v, &len) ==
		    MHD_YES &&
	    v)
		ok |= str_consttime_eq(v, len, w->token, w->token_len);
	return ok;
}

/*
 * What the headers prove. Each configured way in suffices: the token, a body
 * signature, an SNS message's own signature; with none configured, anyone.
 * The last two can only be checked once the body is in, so a request that
 * offers one (the header is there) is read; one that offers nothing is
 * refused now, its body never read.
 */
static enum req_auth authorized(struct webhook *w, struct MHD_Connection *c, int sns)
{
	int signed_body = MHD_lookup_connection_value(c, MHD_HEADER_KIND, SIG_HEADER) != NULL;
	enum req_auth a = AUTH_NO;

	pthread_rwlock_rdlock(&w->cfg_lock);
	if ((!w->token && !w->n_hmac && !w->sns_on) || (w->token && token_ok(w, c)))
		a = AUTH_DONE;
	else if (w->n_hmac && signed_body)
		a = AUTH_HMAC;
	else if (w->sns_on && sns)
		a = AUTH_SNS;
	pthread_rwlock_unlock(&w->cfg_lock);
	return a;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "sha256=" and 64 hex digits into out (32 bytes); -1 when v is not that. */
static int parse_signature(const char *v, unsigned char *out)
{
	size_t i;

	if (strncasecmp(v, "sha256=", 7) || strlen(v + 7) != 64)
		return -1;
	for (i = 0; i < 32; i++) {
		int hi = hex_digit(v[7 + 2 * i]), lo = hex_digit(v[8 + 2 * i]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/*
 * Whether X-S3hook-Signature is the HMAC-SHA256 of the body under one of
 * hmac_secrets. Every secret is tried and compared in constant time, so the
 * time says neither how much matched nor which secret did.
 */
static int signature_ok(struct req *r)
{
	struct webhook *w = r->w;
	const char *v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, SIG_HEADER);
	unsigned char want[32], got[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	size_t i;
	int ok = 0;

	if (!v || parse_signature(v, want) < 0)
		return 0;
	pthread_rwlock_rdlock(&w->cfg_lock);
	for (i = 0; i < w->n_hmac; i++) {
		if (!HMAC(EVP_sha256(), w->hmac[i], (int)strlen(w->hmac[i]),
			  (const unsigned char *)r->body.data, r->body.len, got, &len))
			continue;
		ok |= len == sizeof(want) && CRYPTO_memcmp(got, want, sizeof(want)) == 0;
	}
	pthread_rwlock_unlock(&w->cfg_lock);
	return ok;
}

/*
 * With tls_client_ca, each connection carries an int: whether its client
 * certificate was verified. Checking it once per connection instead of once
 * per request saves about 0.4 ms of CPU per request (measured, P-256).
 */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
			  enum MHD_ConnectionNotificationCode code)
{
	(void)cls;
	(void)c;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_ctx = xcalloc(1, sizeof(int));
	} else {
		free(*socket_ctx);
		*socket_ctx = NULL;
	}
}

/*
 * Whether the connection presented a client certificate that tls_client_ca
 * signed. libmicrohttpd asks for one in the handshake but lets a connection
 * without one through, so it is checked here, at its first request.
 */
static int client_cert_ok(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	const union MHD_ConnectionInfo *sc =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	gnutls_session_t s = ci ? (gnutls_session_t)ci->tls_session : NULL;
	int *verified = sc ? sc->socket_context : NULL;
	unsigned status = 1;

	if (verified && *verified)
		return 1;
	if (!s || gnutls_certificate_type_get(s) != GNUTLS_CRT_X509 ||
	    gnutls_certificate_verify_peers2(s, &status) != 0 || status != 0)
		return 0;
	if (verified)
		*verified = 1;
	return 1;
}

/* Content-Length, or 0 when absent (chunked) or unreadable (libmicrohttpd refuses those). */
static uint64_t content_length(struct MHD_Connection *c)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	uint64_t n = 0;

	if (!v || str_to_u64(v, &n) < 0)
		return 0;
	return n;
}

/* Why notifications get a 503 before their body is even read, or C_N when they do not. */
static enum canned queue_down(struct webhook *w)
{
	if (LOAD(&w->draining))
		return C_503_STOPPING;
	if (units_mono_ms() < LOAD(&w->fail_until_ms))
		return C_503_QUEUE;
	return LOAD(&w->stuck) ? C_503_TIMEOUT : C_N;
}

static enum webhook_reject canned_reason(enum canned k)
{
	switch (k) {
	case C_503_QUEUE:
		return WEBHOOK_REJ_QUEUE;
	case C_503_TIMEOUT:
		return WEBHOOK_REJ_TIMEOUT;
	default:
		return WEBHOOK_REJ_STOPPING;
	}
}

/*
 * The headers of a notification are in. Whatever can be refused is refused
 * now, before the body is read (libmicrohttpd then closes the connection
 * instead of reading the rest).
 */
static enum MHD_Result req_begin(struct webhook *w, struct MHD_Connection *c, const char *path,
				 void **ctx)
{
	uint64_t limit = LOAD(&w->body_limit), len = content_length(c);
	const char *raw = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-amz-sns-rawdelivery");
	/* Raw delivery sends the bare message, unsigned: a plain notification. */
	int sns = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-amz-sns-message-type") &&
		  !(raw && !strcasecmp(raw, "true"));
	enum req_auth auth = authorized(w, c, sns);
	char rid[RID_SIZE];
	enum canned down;
	struct req *r;

	COUNT(&w->st.received, 1);
	request_id(w, rid);
	if (auth == AUTH_NO) {
		refused(w, WEBHOOK_REJ_AUTH, c, path, "no valid token, signature or SNS message",
			rid);
		return queue_canned_id(c, C_401, rid);
	}
	if (len > limit) {
		refused(w, WEBHOOK_REJ_TOO_LARGE, c, path, "content-length over body_limit", rid);
		return queue_canned_id(c, C_413, rid);
	}
	if ((down = queue_down(w)) != C_N) {
		refused(w, canned_reason(down), c, path, "queue failing or stuck, body not read",
			rid);
		return queue_canned_id(c, down, rid);
	}
	r = req_new(w, c, limit, len, rid);
	r->auth = auth;
	r->sns = sns;
	pthread_mutex_lock(&w->lock);
	w->n_requests++;
	pthread_mutex_unlock(&w->lock);
	*ctx = r;
	return MHD_YES;
}

/*
 * A piece of the body. A chunked body that crosses the limit is read on, and
 * dropped, up to the limit again, so the sender still gets its 413; one that
 * goes further gets its connection closed.
 */
static enum MHD_Result req_body(struct req *r, const char *data, size_t *size, const char *path)
{
	if (!r->too_large && buf_add(&r->body, data, *size) < 0) {
		r->too_large = 1;
		buf_release(&r->body);
	}
	if (r->too_large) {
		r->dropped += *size;
		if (r->dropped > r->limit) {
			refused(r->w, WEBHOOK_REJ_TOO_LARGE, r->conn, path,
				"chunked body far over body_limit, connection closed", r->id);
			return MHD_NO;
		}
	}
	*size = 0;
	return MHD_YES;
}

/* Hands r to the committer and suspends its connection until the commit answers it. */
static enum MHD_Result req_submit(struct req *r)
{
	struct webhook *w = r->w;

	r->phase = REQ_WAITING;
	/* Suspended before the committer can see it: a resume must never come first. */
	MHD_suspend_connection(r->conn);
	pthread_mutex_lock(&w->lock);
	r->suspended = 1;
	w->n_suspended++;
	if (!w->accepting) {
		req_decide(r, MHD_HTTP_SERVICE_UNAVAILABLE, C_503_STOPPING);
		COUNT(&w->st.rejected[WEBHOOK_REJ_STOPPING], 1);
		pthread_mutex_unlock(&w->lock);
		MHD_resume_connection(r->conn);
		return MHD_YES;
	}
	r->refs++;
	r->deadline_ms = units_mono_ms() + (int64_t)LOAD(&w->commit_timeout_ms);
	if (w->tail)
		w->tail->next = r;
	else
		w->head = r;
	w->tail = r;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->lock);
	return MHD_YES;
}

/* The suspension of r is over (under w->lock); webhook_stop() may be waiting for the last. */
static void req_unsuspended(struct webhook *w, struct req *r)
{
	if (!r->suspended)
		return;
	r->suspended = 0;
	if (--w->n_suspended == 0)
		pthread_cond_broadcast(&w->quiet);
}

/* Back in the access handler after a resume. */
static void req_back(struct req *r)
{
	struct webhook *w = r->w;

	pthread_mutex_lock(&w->lock);
	req_unsuspended(w, r);
	pthread_mutex_unlock(&w->lock);
}

/* The whole body is in (or the connection was resumed with its answer). */
static enum MHD_Result req_end(struct req *r, const char *path)
{
	switch (r->phase) {
	case REQ_ANSWERED:
		req_back(r);
		return req_reply(r);
	case REQ_WAITING:
		return MHD_YES;
	case REQ_BODY:
		break;
	}
	if (r->too_large) {
		refused(r->w, WEBHOOK_REJ_TOO_LARGE, r->conn, path, "chunked body over body_limit",
			r->id);
		req_decide(r, canned_def[C_413].status, C_413);
		return req_reply(r);
	}
	if (r->auth == AUTH_HMAC && !signature_ok(r)) {
		refused(r->w, WEBHOOK_REJ_AUTH, r->conn, path, "wrong " SIG_HEADER, r->id);
		buf_release(&r->body);
		req_decide(r, canned_def[C_401_SIG].status, C_401_SIG);
		return req_reply(r);
	}
	if (req_decode(r, path) < 0)
		return req_reply(r);
	/* Nothing to make durable (s3:TestEvent, or no rule matched): answer at once. */
	if (r->n_jobs == 0) {
		req_decide(r, MHD_HTTP_OK, C_N);
		return req_reply(r);
	}
	return req_submit(r);
}

/* ---- health ---- */

/* Checks for real that the queue takes a write, and keeps the answer. */
static void health_refresh(struct webhook *w)
{
	struct err e = ERR_INIT;
	int ok = jobq_check_writable(w->q, &e) == 0;
	uint64_t quiet;

	pthread_mutex_lock(&w->health_lock);
	w->health_ok = ok;
	str_copy(w->health_msg, sizeof(w->health_msg), ok ? "" : e.msg);
	w->health_at_ms = units_mono_ms();
	pthread_mutex_unlock(&w->health_lock);
	if (!ok && warn_allowed(w, WARN_HEALTH, &quiet))
		log_warn("queue not writable", "error=%s suppressed=%llu", e.msg,
			 (unsigned long long)quiet);
}

/*
 * The check runs in a thread of its own every HEALTH_CACHE_MS, so /healthz
 * answers from memory at once: a probe never waits behind a group commit's
 * fsync for the queue's lock. A check that has not come back for
 * HEALTH_STALE_MS (a hung disk) is itself a failure.
 */
static void *health_main(void *arg)
{
	struct webhook *w = arg;
	struct timespec until;

	pthread_setname_np(pthread_self(), "health");
	pthread_mutex_lock(&w->health_lock);
	while (w->health_running) {
		pthread_mutex_unlock(&w->health_lock);
		health_refresh(w);
		pthread_mutex_lock(&w->health_lock);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += (long)HEALTH_CACHE_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		if (w->health_running)
			pthread_cond_timedwait(&w->health_wake, &w->health_lock, &until);
	}
	pthread_mutex_unlock(&w->health_lock);
	return NULL;
}

static int health_check(struct webhook *w, char *why, size_t size)
{
	int64_t age;
	int ok;

	pthread_mutex_lock(&w->health_lock);
	if (!w->health_at_ms ||
	    (!w->health_running && units_mono_ms() - w->health_at_ms >= HEALTH_CACHE_MS)) {
		/* Not checked yet, or no background thread (stopped): check inline. */
		pthread_mutex_unlock(&w->health_lock);
		health_refresh(w);
		pthread_mutex_lock(&w->health_lock);
	}
	age = units_mono_ms() - w->health_at_ms;
	ok = w->health_ok && age < HEALTH_STALE_MS;
	if (w->health_ok && !ok)
		snprintf(why, size, "the queue check has not come back for %lld ms", (long long)age);
	else
		str_copy(why, size, w->health_msg);
	pthread_mutex_unlock(&w->health_lock);
	return ok;
}

/*
 * healthz. The admin listener says why the queue is not writable; the main
 * one, which may face the internet, only that it is not.
 */
static enum MHD_Result reply_health(struct webhook *w, struct MHD_Connection *c, int admin)
{
	char why[256];
	enum MHD_Result ok;
	char *body;

	if (health_check(w, why, sizeof(why)))
		return queue_body(w, c, MHD_HTTP_OK, "{\"status\":\"ok\"}\n", NULL);
	body = json_line("status", "unavailable", "error", admin ? why : "queue not writable");
	ok = queue_body(w, c, MHD_HTTP_SERVICE_UNAVAILABLE, body, NULL);
	free(body);
	return ok;
}

static enum MHD_Result reply_ready(struct webhook *w, struct MHD_Connection *c)
{
	if (LOAD(&w->draining))
		return queue_body(w, c, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"status\":\"stopping\"}\n",
				  NULL);
	return queue_body(w, c, MHD_HTTP_OK, "{\"status\":\"ready\"}\n", NULL);
}

/* GET /metrics: the text webhook_set_metrics() gave the function for. */
static enum MHD_Result reply_metrics(struct webhook *w, struct MHD_Connection *c)
{
	struct MHD_Response *r;
	enum MHD_Result ok;
	struct buf b = BUF_INIT;
	size_t len;
	char *text;

	if (w->metrics_fn(w->metrics_arg, &b) < 0) {
		buf_release(&b);
		return queue_body(w, c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				  "{\"error\":\"metrics unavailable\"}\n", NULL);
	}
	text = buf_detach(&b, &len);
	r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r)
		abort();
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				"text/plain; version=0.0.4; charset=utf-8");
	ok = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ok;
}

static int is_get(const char *method)
{
	return !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
}

/* Paths that never take a notification. */
static int reserved(const char *path)
{
	return !strcmp(path, "/healthz") || !strcmp(path, "/readyz") || !strcmp(path, "/metrics");
}

/* Everything that is not a notification POST. */
static enum MHD_Result route_other(struct webhook *w, struct MHD_Connection *c, const char *path,
				   const char *method, int admin)
{
	int get = is_get(method);

	COUNT(&w->st.other, 1);
	if (!strcmp(path, "/healthz"))
		return get ? reply_health(w, c, admin) : queue_canned(w, c, C_405_GET);
	if (admin && !strcmp(path, "/readyz"))
		return get ? reply_ready(w, c) : queue_canned(w, c, C_405_GET);
	if (admin && !strcmp(path, "/metrics") && w->metrics_fn)
		return get ? reply_metrics(w, c) : queue_canned(w, c, C_405_GET);
	if (admin || reserved(path))
		return queue_canned(w, c, get ? C_404 : C_405_GET);
	if (!strcmp(path, "/"))
		return queue_canned(w, c, C_405_POST);
	return queue_canned(w, c, get ? C_404 : C_405_POST);
}

/* Any request on a connection without a trusted client certificate (tls_client_ca). */
static enum MHD_Result refuse_cert(struct webhook *w, struct MHD_Connection *c, const char *path,
				   const char *method)
{
	char rid[RID_SIZE];

	if (strcmp(method, MHD_HTTP_METHOD_POST) || reserved(path)) {
		COUNT(&w->st.other, 1);
		return queue_canned(w, c, C_401_CERT);
	}
	COUNT(&w->st.received, 1);
	refused(w, WEBHOOK_REJ_AUTH, c, path, "missing or untrusted client certificate",
		request_id(w, rid));
	return queue_canned_id(c, C_401_CERT, rid);
}

/* libmicrohttpd gives `path` without the query string (and percent-decoded). */
static enum MHD_Result on_main(void *cls, struct MHD_Connection *c, const char *path,
			       const char *method, const char *version, const char *data,
			       size_t *size, void **ctx)
{
	struct webhook *w = cls;
	struct req *r = *ctx;

	(void)version;
	if (r)
		return *size ? req_body(r, data, size, path) : req_end(r, path);
	if (w->tls_ca && !client_cert_ok(c))
		return refuse_cert(w, c, path, method);
	if (!strcmp(method, MHD_HTTP_METHOD_POST) && !reserved(path)) {
		if (LOAD(&w->draining)) {
			char rid[RID_SIZE];
			COUNT(&w->st.received, 1);
			refused(w, WEBHOOK_REJ_STOPPING, c, path, "shutting down",
				request_id(w, rid));
			return queue_canned_id(c, C_503_STOPPING, rid);
		}
		return req_begin(w, c, path, ctx);
	}
	return route_other(w, c, path, method, 0);
}

static enum MHD_Result on_admin(void *cls, struct MHD_Connection *c, const char *path,
				const char *method, const char *version, const char *data,
				size_t *size, void **ctx)
{
	(void)version;
	(void)data;
	(void)size;
	(void)ctx;
	return route_other(cls, c, path, method, 1);
}

/* One line per event of a notification: what came, what was answered, which handlers it got. */
static void log_events(const struct req *r, unsigned status)
{
	struct buf names = BUF_INIT;
	size_t i, j, from = 0;

	for (i = 0; i < r->events.n; i++) {
		const struct event *ev = &r->events.v[i];
		size_t to = r->ev_jobs ? r->ev_jobs[i] : 0;
		buf_reset(&names);
		for (j = from; j < to; j++)
			buf_addf(&names, "%s%s", j > from ? "," : "", r->jobs[j].handler);
		from = to;
		log_info("event",
			 "request=%s status=%u event=%s bucket=%s key=%s size=%llu handlers=%s",
			 r->id, status, ev->name, ev->bucket, ev->key, (unsigned long long)ev->size,
			 names.data);
	}
	buf_release(&names);
}

static void log_outcome(const struct req *r, enum MHD_RequestTerminationCode toe)
{
	unsigned status = r->phase == REQ_ANSWERED ? r->status : 0;
	char addr[INET6_ADDRSTRLEN];

	if (log_enabled(LOG_INFO))
		log_events(r, status);
	if (!log_enabled(LOG_DEBUG))
		return;
	log_debug("notification",
		  "request=%s status=%u events=%zu jobs=%zu ms=%lld remote=%s closed=%d", r->id,
		  status, r->events.n, r->n_jobs, (long long)(units_mono_ms() - r->start_ms),
		  remote_addr(r->conn, addr, sizeof(addr)),
		  toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx,
			 enum MHD_RequestTerminationCode toe)
{
	struct webhook *w = cls;
	struct req *r = *ctx;
	int dead;

	(void)c;
	if (!r)
		return;
	*ctx = NULL;
	log_outcome(r, toe);
	pthread_mutex_lock(&w->lock);
	req_unsuspended(w, r);
	if (--w->n_requests == 0)
		pthread_cond_broadcast(&w->quiet);
	dead = req_unref(r);
	pthread_mutex_unlock(&w->lock);
	if (dead)
		req_free(r);
}

/* ---- configuration ---- */

static void take_numbers(struct webhook *w, const struct config *cfg)
{
	STORE(&w->body_limit, cfg->body_limit);
	STORE(&w->max_parsing, cfg->max_parsing);
	STORE(&w->commit_timeout_ms, cfg->commit_timeout_ms);
	STORE(&w->commit_batch, cfg->commit_batch);
}

static void strs_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		explicit_bzero(v[i], strlen(v[i]));
		free(v[i]);
	}
	free(v);
}

/* Takes cfg's hmac_secrets and whether SNS is on (the caller holds cfg_lock for writing). */
static void take_secrets(struct webhook *w, const struct config *cfg)
{
	size_t i;

	strs_free(w->hmac, w->n_hmac);
	w->hmac = xcalloc(cfg->hmac_secrets.n ? cfg->hmac_secrets.n : 1, sizeof(*w->hmac));
	for (i = 0; i < cfg->hmac_secrets.n; i++)
		w->hmac[i] = xstrdup(cfg->hmac_secrets.v[i]);
	w->n_hmac = cfg->hmac_secrets.n;
	w->sns_on = cfg->sns_topics.n > 0;
}

/* Never prompts on the terminal for the password of an encrypted key: refuses it. */
static int no_password(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return -1;
}

/*
 * Whether the PEM texts hold what libmicrohttpd will need, checked with
 * OpenSSL now so that the error names the file and what is wrong with it
 * (libmicrohttpd would only fail to start).
 */
static int tls_check(const struct webhook *w, const struct config *cfg, struct err *e)
{
	BIO *b1 = BIO_new_mem_buf(w->tls_cert, -1), *b2 = BIO_new_mem_buf(w->tls_key, -1);
	BIO *b3 = BIO_new_mem_buf(w->tls_ca ? w->tls_ca : "", -1);
	X509 *x = PEM_read_bio_X509(b1, NULL, no_password, NULL);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(b2, NULL, no_password, NULL);
	X509 *ca = w->tls_ca ? PEM_read_bio_X509(b3, NULL, no_password, NULL) : NULL;
	int rc = 0;

	if (!x)
		rc = err_set(e, ERR_CONFIG, "[serve] tls_cert: '%s' holds no PEM certificate",
			     SHORT(cfg->tls_cert));
	else if (!k)
		rc = err_set(e, ERR_CONFIG,
			     "[serve] tls_key: '%s' holds no PEM private key (or it is encrypted)",
			     SHORT(cfg->tls_key));
	else if (X509_check_private_key(x, k) != 1)
		rc = err_set(e, ERR_CONFIG, "[serve] tls_key: '%s' is not the key of tls_cert",
			     SHORT(cfg->tls_key));
	else if (w->tls_ca && !ca)
		rc = err_set(e, ERR_CONFIG, "[serve] tls_client_ca: '%s' holds no PEM certificate",
			     SHORT(cfg->tls_client_ca));
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(k);
	BIO_free(b1);
	BIO_free(b2);
	BIO_free(b3);
	ERR_clear_error();
	return rc;
}

static int read_pem(const char *key, const char *path, char **out, struct err *e)
{
	struct buf b = BUF_INIT;

	if (!path)
		return 0;
	if (buf_read_file(&b, path, PEM_MAX, e) < 0)
		return err_prefix(e, "[serve] %s", key);
	*out = buf_detach(&b, NULL);
	return 0;
}

/* Reads tls_cert, tls_key and tls_client_ca, when set. */
static int tls_load(struct webhook *w, const struct config *cfg, struct err *e)
{
	if (!cfg->tls_cert)
		return 0;
	if (read_pem("tls_cert", cfg->tls_cert, &w->tls_cert, e) < 0 ||
	    read_pem("tls_key", cfg->tls_key, &w->tls_key, e) < 0 ||
	    read_pem("tls_client_ca", cfg->tls_client_ca, &w->tls_ca, e) < 0)
		return -1;
	return tls_check(w, cfg, e);
}

/* Splits "host:port", "[v6]:port" or ":port" and resolves it (numeric port). */
static int resolve(const char *spec, struct addrinfo **res, struct err *e)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	const char *colon = strrchr(spec, ':');
	char host[256];
	int rc;

	if (!colon || !colon[1])
		return err_set(e, ERR_CONFIG, "listen address '%s' has no port", SHORT(spec));
	if (str_copy(host, sizeof(host), spec) || (size_t)(colon - spec) >= sizeof(host))
		return err_set(e, ERR_CONFIG, "listen address '%s' is too long", SHORT(spec));
	host[colon - spec] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, res);
	if (rc)
		return err_set(e, ERR_CONFIG, "listen address '%s': %s", SHORT(spec),
			       gai_strerror(rc));
	return 0;
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Binds and listens ourselves, so a failure says which address and why. */
static int listen_on(const char *spec, int *fd_out, int *port, struct err *e)
{
	struct addrinfo *ai = NULL;
	int fd = -1, one = 1;

	if (resolve(spec, &ai, e) < 0)
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		err_sys(e, ERR_NET, "cannot listen on '%s'", SHORT(spec));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	*fd_out = fd;
	*port = bound_port(fd);
	return 0;
}

/* Every connection is a descriptor: take all the kernel allows this process. */
static void raise_nofile(const struct webhook *w)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)w->max_connections + 64)
		log_warn("open file limit below max_connections", "nofile=%llu max_connections=%u",
			 (unsigned long long)rl.rlim_cur, w->max_connections);
}

/* ---- lifecycle ---- */

struct webhook *webhook_new(const struct config *cfg, struct jobq *q, struct err *e)
{
	struct addrinfo *ai = NULL;
	struct webhook *w;

	if (resolve(cfg->listen, &ai, e) < 0)
		return NULL;
	freeaddrinfo(ai);
	if (cfg->admin_listen && *cfg->admin_listen) {
		if (resolve(cfg->admin_listen, &ai, e) < 0)
			return NULL;
		freeaddrinfo(ai);
	}
	w = xcalloc(1, sizeof(*w));
	rwlock_init_writer_first(&w->cfg_lock);
	pthread_mutex_init(&w->lock, NULL);
	pthread_mutex_init(&w->parse_lock, NULL);
	pthread_mutex_init(&w->health_lock, NULL);
	pthread_cond_init(&w->health_wake, NULL);
	pthread_mutex_init(&w->warn_lock, NULL);
	cond_init_mono(&w->work);
	cond_init_mono(&w->watch);
	cond_init_mono(&w->quiet);
	cond_init_mono(&w->parse_cv);
	w->cfg = cfg;
	w->token = cfg->auth_token ? xstrdup(cfg->auth_token) : NULL;
	w->token_len = w->token ? strlen(w->token) : 0;
	take_secrets(w, cfg);
	w->sns = sns_new();
	sns_configure(w->sns, cfg);
	take_numbers(w, cfg);
	w->q = q;
	w->listen = xstrdup(cfg->listen);
	w->admin_listen = xstrdup(cfg->admin_listen ? cfg->admin_listen : "");
	w->max_connections = (unsigned)cfg->max_connections;
	w->timeout_s = (unsigned)((cfg->connection_timeout_ms + 999) / 1000);
	w->fd = w->admin_fd = -1;
	if (getrandom(&w->rid_prefix, sizeof(w->rid_prefix), 0) < 0)
		w->rid_prefix = (uint32_t)getpid() ^ (uint32_t)time(NULL);
	canned_make(w);
	if (tls_load(w, cfg, e) < 0) {
		webhook_free(w);
		return NULL;
	}
	return w;
}

static int pool_size(const struct webhook *w)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	if (n > POOL_MAX)
		n = POOL_MAX;
	/* libmicrohttpd shares the connection limit out among the threads. */
	if ((unsigned)n > w->max_connections)
		n = w->max_connections;
	return (int)n;
}

/* The TLS options of the main listener, when it has a certificate (o: 6 items). */
static void tls_options(const struct webhook *w, struct MHD_OptionItem *o)
{
	size_t n = 0;

	if (w->tls_cert) {
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0, w->tls_cert };
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0, w->tls_key };
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_PRIORITIES, 0,
						  (void *)TLS_PRIORITIES };
	}
	if (w->tls_ca) {
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_TRUST, 0, w->tls_ca };
		o[n++] = (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_CONNECTION,
						  (intptr_t)on_connection, NULL };
	}
	o[n] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
}

static struct MHD_Daemon *start_mhd(struct webhook *w, int fd, int admin)
{
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
	struct MHD_OptionItem tls[6];

	/* The logger comes first, or libmicrohttpd prints what comes before it itself. */
	if (admin)
		return MHD_start_daemon(
			flags, 0, NULL, NULL, on_admin, w, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, w,
			MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
			MHD_OPTION_CONNECTION_TIMEOUT, w->timeout_s, MHD_OPTION_END);
	/* The admin listener stays plain HTTP: probes and scrapers on loopback. */
	tls_options(w, tls);
	if (w->tls_cert)
		flags |= MHD_USE_TLS;
	return MHD_start_daemon(flags | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_main, w,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, w, MHD_OPTION_ARRAY, tls,
				MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_THREAD_POOL_SIZE,
				(unsigned)pool_size(w), MHD_OPTION_CONNECTION_LIMIT,
				w->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, w->timeout_s,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, w, MHD_OPTION_END);
}

static int start_threads(struct webhook *w, struct err *e)
{
	int rc;

	w->accepting = w->watching = 1;
	rc = pthread_create(&w->committer, NULL, committer_main, w);
	if (rc == 0) {
		rc = pthread_create(&w->watchdog, NULL, watchdog_main, w);
		if (rc) {
			w->accepting = 0;
			pthread_join(w->committer, NULL);
		}
	}
	if (rc == 0) {
		w->health_running = 1;
		if (pthread_create(&w->health_thread, NULL, health_main, w) != 0)
			w->health_running = 0; /* healthz then checks inline */
	}
	if (rc) {
		errno = rc;
		return err_sys(e, ERR_INTERNAL, "cannot start the listener's threads");
	}
	w->threads = 1;
	return 0;
}

static int start_daemons(struct webhook *w, struct err *e)
{
	w->mhd = start_mhd(w, w->fd, 0);
	if (!w->mhd)
		return err_set(e, ERR_NET, "cannot start the listener on '%s'", SHORT(w->listen));
	w->fd = -1; /* libmicrohttpd's now */
	if (w->admin_fd < 0)
		return 0;
	w->admin = start_mhd(w, w->admin_fd, 1);
	if (!w->admin)
		return err_set(e, ERR_NET, "cannot start the admin listener on '%s'",
			       SHORT(w->admin_listen));
	w->admin_fd = -1;
	return 0;
}

static const char *tls_mode(const struct webhook *w)
{
	if (!w->tls_cert)
		return "off";
	return w->tls_ca ? "client-cert" : "on";
}

/* Whether a listen address is on the loopback interface. */
static int loopback(const char *spec)
{
	return str_starts_with(spec, "127.") || str_starts_with(spec, "[::1]:") ||
	       str_starts_with(spec, "localhost:");
}

int webhook_start(struct webhook *w, struct err *e)
{
	if (w->started)
		return err_set(e, ERR_INTERNAL, "the listener was started already");
	raise_nofile(w);
	w->started = 1; /* once only, even after a failure */
	if (listen_on(w->listen, &w->fd, &w->port, e) < 0 ||
	    (*w->admin_listen && listen_on(w->admin_listen, &w->admin_fd, &w->admin_port, e) < 0) ||
	    start_threads(w, e) < 0 || start_daemons(w, e) < 0)
		goto fail;
	if (!w->token && !w->n_hmac && !w->sns_on)
		log_warn("no auth_token, hmac_secrets or sns_topics: anyone can add jobs",
			 "listen=%s", w->listen);
	if (w->tls_cert && *w->admin_listen && !loopback(w->admin_listen))
		log_warn("admin_listen is plain HTTP on an address that is not loopback",
			 "admin_listen=%s", w->admin_listen);
	log_info("listening", "listen=%s port=%d admin_port=%d threads=%d tls=%s", w->listen,
		 w->port, w->admin_port, w->mhd ? pool_size(w) : 0, tls_mode(w));
	return 0;
fail:
	webhook_stop(w);
	return -1;
}

int webhook_port(const struct webhook *w)
{
	return w->port;
}

int webhook_admin_port(const struct webhook *w)
{
	return w->admin_port;
}

int webhook_reload(struct webhook *w, const struct config *cfg, struct err *e)
{
	char *token = cfg->auth_token ? xstrdup(cfg->auth_token) : NULL, *old;
	size_t old_len;

	(void)e;
	pthread_rwlock_wrlock(&w->cfg_lock);
	old = w->token;
	old_len = w->token_len;
	w->token = token;
	w->token_len = token ? strlen(token) : 0;
	take_secrets(w, cfg);
	w->cfg = cfg;
	take_numbers(w, cfg);
	pthread_rwlock_unlock(&w->cfg_lock);
	sns_configure(w->sns, cfg);
	if (old)
		explicit_bzero(old, old_len);
	free(old);
	/* max_parsing may have grown: let waiting bodies look again. */
	pthread_mutex_lock(&w->parse_lock);
	pthread_cond_broadcast(&w->parse_cv);
	pthread_mutex_unlock(&w->parse_lock);
	log_info("listener reloaded", "handlers=%zu token=%s hmac_secrets=%zu sns_topics=%zu",
		 cfg->n_handlers, token ? "yes" : "no", cfg->hmac_secrets.n, cfg->sns_topics.n);
	return 0;
}

/* Waits until *count (under w->lock) is 0 or the monotonic time `until_ms`. */
static void wait_quiet(struct webhook *w, size_t *count, int64_t until_ms)
{
	pthread_mutex_lock(&w->lock);
	while (*count && units_mono_ms() < until_ms)
		cond_wait_until(&w->quiet, &w->lock, until_ms);
	pthread_mutex_unlock(&w->lock);
}

/* Ends the committer (after it has drained what it was given) and the watchdog. */
static void stop_threads(struct webhook *w)
{
	if (!w->threads)
		return;
	pthread_mutex_lock(&w->lock);
	w->accepting = 0;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->committer, NULL);
	pthread_mutex_lock(&w->lock);
	w->watching = 0;
	pthread_cond_signal(&w->watch);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->watchdog, NULL);
	/* The health thread may be inside a check that waits for the queue's lock
	 * (up to its busy timeout): tell it to end, and join it in webhook_free(). */
	pthread_mutex_lock(&w->health_lock);
	w->health_stopping = w->health_running;
	w->health_running = 0;
	pthread_cond_signal(&w->health_wake);
	pthread_mutex_unlock(&w->health_lock);
	w->threads = 0;
}

/* Stops listening; the descriptor comes back to us to close. */
static void quiesce(struct MHD_Daemon *d)
{
	MHD_socket fd = d ? MHD_quiesce_daemon(d) : MHD_INVALID_SOCKET;

	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

void webhook_stop(struct webhook *w)
{
	if (!w || !w->started || w->stopped)
		return;
	w->stopped = 1;
	STORE(&w->draining, 1);
	quiesce(w->mhd);
	/* Requests under way finish normally: their 200s are what they were waiting for. */
	wait_quiet(w, &w->n_requests,
		   units_mono_ms() + (int64_t)LOAD(&w->commit_timeout_ms) + DRAIN_EXTRA_MS);
	/* From here a finished body gets its 503 at once; what was handed over is committed. */
	stop_threads(w);
	/*
	 * Every suspended connection has been resumed by now (libmicrohttpd
	 * refuses to stop with one suspended); give their answers a moment to go out.
	 */
	wait_quiet(w, &w->n_suspended, units_mono_ms() + DRAIN_EXTRA_MS);
	wait_quiet(w, &w->n_requests, units_mono_ms() + DRAIN_EXTRA_MS);
	if (w->mhd)
		MHD_stop_daemon(w->mhd);
	if (w->admin)
		MHD_stop_daemon(w->admin);
	w->mhd = w->admin = NULL;
	if (w->fd >= 0)
		close(w->fd);
	if (w->admin_fd >= 0)
		close(w->admin_fd);
	w->fd = w->admin_fd = -1;
	log_info("listener stopped", "accepted=%llu", (unsigned long long)LOAD(&w->st.accepted));
}

void webhook_free(struct webhook *w)
{
	size_t i;

	if (!w)
		return;
	webhook_stop(w);
	for (i = 0; i < C_N; i++)
		MHD_destroy_response(w->canned[i]);
	if (w->token)
		explicit_bzero(w->token, w->token_len);
	free(w->token);
	strs_free(w->hmac, w->n_hmac);
	sns_free(w->sns);
	if (w->tls_key)
		explicit_bzero(w->tls_key, strlen(w->tls_key));
	free(w->tls_cert);
	free(w->tls_key);
	free(w->tls_ca);
	free(w->listen);
	free(w->admin_listen);
	free(w->batch);
	pthread_rwlock_destroy(&w->cfg_lock);
	pthread_mutex_destroy(&w->lock);
	pthread_mutex_destroy(&w->parse_lock);
	if (w->health_stopping)
		pthread_join(w->health_thread, NULL);
	pthread_mutex_destroy(&w->health_lock);
	pthread_cond_destroy(&w->health_wake);
	pthread_mutex_destroy(&w->warn_lock);
	pthread_cond_destroy(&w->work);
	pthread_cond_destroy(&w->watch);
	pthread_cond_destroy(&w->quiet);
	pthread_cond_destroy(&w->parse_cv);
	free(w);
}

void webhook_set_metrics(struct webhook *w, int (*fn)(void *arg, struct buf *out), void *arg)
{
	w->metrics_fn = fn;
	w->metrics_arg = arg;
}

void webhook_stats(struct webhook *w, struct webhook_stats *out)
{
	size_t i;

	out->received = LOAD(&w->st.received);
	out->accepted = LOAD(&w->st.accepted);
	out->events = LOAD(&w->st.events);
	out->jobs = LOAD(&w->st.jobs);
	out->jobs_new = LOAD(&w->st.jobs_new);
	out->commits = LOAD(&w->st.commits);
	out->commit_failures = LOAD(&w->st.commit_failures);
	out->other = LOAD(&w->st.other);
	for (i = 0; i < WEBHOOK_REJ_N; i++)
		out->rejected[i] = LOAD(&w->st.rejected[i]);
}
