/*
 * webhook: the bucket-notification listener of `s3hook serve`.
 *
 * A storage server POSTs a notification; the listener authenticates it,
 * decodes it (core/event.h), matches its events to handlers
 * (triggers/rules.h) and answers 200 only once every job it made is
 * committed to the queue with fsync (DESIGN.md "Delivery semantics"):
 *
 *	POST <any path>   a notification: 200 {"events":N,"jobs":M} once durable;
 *	                  401 not authenticated, 413 over body_limit, 400
 *	                  malformed ({"error":"..."}), 503 + Retry-After when the
 *	                  queue fails, is slow (commit_timeout) or is stopping, or
 *	                  an SNS host could not be reached
 *	GET /healthz      200 when the queue takes a write now, else 503 (both listeners)
 *	GET /readyz       200 once started and until webhook_stop() (admin listener only)
 *	GET /metrics      Prometheus text (admin listener only, see webhook_set_metrics())
 *	GET /             405; other methods on any path 405; other GET paths 404
 *
 * Any path takes a POST because MinIO and Ceph RGW let the user choose the
 * endpoint URL; /healthz, /readyz and /metrics are reserved.
 *
 * Authentication: each way in that [serve] configures suffices on its own;
 * with none configured, anyone is taken.
 *   - auth_token: `Authorization: Bearer TOKEN` (MinIO) or `?token=TOKEN`
 *     (Ceph RGW sends no header of its own), checked at the headers.
 *   - hmac_secrets: `X-S3hook-Signature: sha256=HEX`, the HMAC-SHA256 of the
 *     raw body under any one of the secrets (several while rotating). It is
 *     checked once the whole body is in: a request that carries the header
 *     costs up to body_limit of reading before it can be refused.
 *   - sns_topics: an SNS message (x-amz-sns-message-type) whose own
 *     signature verifies (triggers/sns.h), also once the body is in; its
 *     Message is then decoded as the notification. An SNS envelope is always
 *     verified, whatever else authenticated its request.
 * A request that offers none of the configured ways gets its 401 at the
 * headers. Comparisons are constant-time; neither the token, the query
 * string nor a signature is ever logged.
 *
 * TLS: with tls_cert and tls_key the main listener speaks HTTPS only (TLS
 * 1.2 and 1.3); with tls_client_ca every request on it (healthz too) needs
 * a client certificate that CA signed, else 401. admin_listen stays plain
 * HTTP: it serves probes and scrapers, normally on loopback (a warning is
 * logged when it is not).
 *
 * Every notification gets a request id (16 hex digits: a random prefix per
 * process and a counter), sent back as `X-Request-Id` and logged with each
 * of its events (one info line per event: request id, status, event,
 * bucket, key and the handlers it made jobs for) and with its refusal.
 *
 * Refusals cost little. 401, 413 (by Content-Length) and the 503 of a queue
 * that failed in the last second or has a commit stuck are sent as soon as
 * the headers are in: the body is never read, nor parsed. A chunked body is
 * read up to body_limit, then dropped up to body_limit more to answer 413;
 * past that the connection is closed. A body waits up to a second for one of
 * max_parsing parse slots, then gets 503. Warnings are one line per reason
 * every 5 s at most, with a count of the ones held back.
 *
 * How (the model issue 3 asks for): libmicrohttpd with a pool of epoll
 * threads reads and decodes each request (at most max_parsing bodies at
 * once), suspends the connection and hands it to one committer thread; the
 * committer takes everything waiting (up to commit_batch requests), adds
 * their jobs in one transaction (one fsync) and resumes each connection with
 * its answer. A watchdog thread answers 503 to requests whose commit has not
 * finished commit_timeout after they were handed over: the committer may be
 * stuck in the disk, and a 503 for something that did commit is harmless
 * (the sender retries, the queue's dedupe key absorbs it), while a 200 for
 * something that did not would lose it.
 *
 *	struct webhook *w = webhook_new(&cfg, ingest_q, &e);   q opened with JOBQ_INGEST
 *	if (!w || webhook_start(w, &e) < 0) ...
 *	... webhook_reload(w, &new_cfg, &e) on SIGHUP ...
 *	webhook_stop(w);     every request answered, threads joined
 *	webhook_free(w);
 *	jobq_close(ingest_q);
 *
 * Ownership: `cfg` is borrowed: the listener reads its handlers (rules) until
 * webhook_free() or until a webhook_reload() that replaced it returns; the
 * values of [serve] are copied. The queue is borrowed until webhook_free().
 */
#ifndef S3HOOK_WEBHOOK_H
#define S3HOOK_WEBHOOK_H

#include <stdint.h>

struct buf;
struct config;
struct err;
struct jobq;
struct webhook;

/* Why a notification was not accepted; counted in struct webhook_stats. */
enum webhook_reject {
	WEBHOOK_REJ_AUTH,      /* 401 */
	WEBHOOK_REJ_TOO_LARGE, /* 413 */
	WEBHOOK_REJ_MALFORMED, /* 400 */
	WEBHOOK_REJ_BUSY,      /* 503: max_parsing bodies were being parsed for too long */
	WEBHOOK_REJ_QUEUE,     /* 503: the commit failed, or the queue failed moments ago */
	WEBHOOK_REJ_TIMEOUT,   /* 503: the commit took longer than commit_timeout */
	WEBHOOK_REJ_STOPPING,  /* 503: webhook_stop() had begun */
	WEBHOOK_REJ_UPSTREAM,  /* 503: an SNS certificate or confirmation could not be fetched */
	WEBHOOK_REJ_N
};

/* "auth", "too_large", ...: for logs and metrics. */
const char *webhook_reject_name(enum webhook_reject r);

/* Counters since webhook_new(); each only grows. */
struct webhook_stats {
	uint64_t received; /* POSTs of notifications (headers read) */
	uint64_t accepted; /* answered 200 */
	uint64_t events;   /* events in the accepted notifications */
	uint64_t jobs;	   /* jobs they made, duplicates included */
	uint64_t jobs_new; /* jobs the queue did not have yet */
	uint64_t commits;  /* transactions that succeeded */
	uint64_t commit_failures;
	uint64_t rejected[WEBHOOK_REJ_N];
	uint64_t other; /* requests that are not notifications (health, 404, 405) */
};

/*
 * Makes a listener for cfg's [serve] section that adds jobs to q. Nothing is
 * bound yet. Fails (ERR_CONFIG) on a listen address it cannot parse or TLS
 * files that do not hold a certificate and its key (ERR_IO: cannot be read).
 */
struct webhook *webhook_new(const struct config *cfg, struct jobq *q, struct err *e);

/*
 * Raises RLIMIT_NOFILE to its hard limit, binds `listen` and (unless empty)
 * `admin_listen`, and starts serving. Fails (ERR_NET) when an address cannot
 * be bound; nothing is left running then. Call once.
 */
int webhook_start(struct webhook *w, struct err *e);

/* The port bound by webhook_start() (useful with port 0); 0 when not bound. */
int webhook_port(const struct webhook *w);
int webhook_admin_port(const struct webhook *w);

/*
 * Takes the reloadable keys of cfg ([serve] auth_token, hmac_secrets, the
 * sns_* keys, body_limit, max_parsing, commit_timeout, commit_batch, and the
 * handlers) for the requests that begin from now on; a request already past
 * its headers keeps the token check and body limit it began with (a body
 * signature is checked with the secrets of when its body ended). The keys
 * that need a restart (listen, admin_listen, max_connections,
 * connection_timeout, tls_*) are ignored: config_restart_keys() names
 * them. When this returns, the previous config is no longer read and may be
 * released. Never fails today; the error is for the checks a later key may
 * need.
 */
int webhook_reload(struct webhook *w, const struct config *cfg, struct err *e);

/*
 * Stops accepting connections, lets the requests under way finish (up to
 * commit_timeout and a second), commits or answers 503 to everything handed
 * to the committer, resumes every suspended connection, and stops the
 * threads. readyz answers 503 from the first moment. Does nothing when not
 * started or already stopped. It waits for a commit stuck in the disk to
 * return (the requests of that commit have had their 503 by then).
 */
void webhook_stop(struct webhook *w);

/* Stops (webhook_stop()) and frees. Accepts NULL. */
void webhook_free(struct webhook *w);

/* A consistent-enough snapshot of the counters (each read atomically). */
void webhook_stats(struct webhook *w, struct webhook_stats *out);

/*
 * Serves `GET /metrics` on admin_listen with what fn(arg, out) appends to out
 * (Prometheus text, triggers/metrics.h); fn returns 0, or -1 for a 500. Call
 * before webhook_start(); without it /metrics answers 404. fn runs on the
 * listener's threads, perhaps several at once.
 */
void webhook_set_metrics(struct webhook *w, int (*fn)(void *arg, struct buf *out), void *arg);

#endif
