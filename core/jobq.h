/*
 * jobq: the durable job queue every source of events shares.
 *
 * One model, whatever the backend: a job is one (object version, handler)
 * to run; it moves through the states below; it is claimed with a lease that
 * its worker renews while the handler runs; only the holder of the current
 * lease token may end it. The same notification delivered twice makes one
 * job (the dedupe key: bucket, key, version id or ETag, sequencer, handler).
 * A ledger of finished (bucket, key, version id or ETag, handler), kept apart
 * from the prunable job rows, lets `reprocess` skip what is already done, and
 * reprocess checkpoints live beside it.
 *
 * The backend is chosen by the URL given to jobq_open(): a file path (SQLite,
 * the default) or postgres://... (core/jobq_pg.c: many hosts share one queue).
 * A struct jobq is one connection;
 * calls on one handle are serialised by a mutex inside, so threads may share
 * it, but a busy process (serve) opens one for ingest and one for workers.
 *
 *	struct jobq *q = jobq_open("/var/lib/s3hook/queue.db", JOBQ_INGEST, &e);
 *	jobq_enqueue(q, jobs, n, &added, &e);     (durable when it returns 0)
 *	jobq_claim(q, &filter, &job, &e);         (1 when a job was claimed)
 *	jobq_renew(q, &job, &e); ... jobq_finish(q, &job, JOB_DONE, &result, &e);
 *	jobq_job_release(&job);
 *	jobq_close(q);
 */
#ifndef S3HOOK_JOBQ_H
#define S3HOOK_JOBQ_H

#include <stddef.h>
#include <stdint.h>

struct err;

enum job_state {
	JOB_PENDING,	/* waiting to run (first attempt or revived) */
	JOB_RUNNING,	/* leased by a worker */
	JOB_RETRY,	/* failed; runs again at next_at */
	JOB_DONE,	/* the handler succeeded */
	JOB_DEAD,	/* failed for good (max_attempts, or exit 65) */
	JOB_SKIPPED,	/* a check that needs the object failed (content_type, loop guard) */
	JOB_GONE,	/* the object was deleted before the job ran (404) */
	JOB_SUPERSEDED, /* the object was overwritten before the job ran (412) */
};

const char *job_state_name(enum job_state s);
int job_state_parse(const char *name, enum job_state *out);

/* Whether a state is final (the job will not run again by itself). */
int job_state_final(enum job_state s);

enum jobq_flags {
	/* Commits wait for the disk (synchronous=FULL): for the listener, whose 200 promises it. */
	JOBQ_INGEST = 1 << 0,
	/* Open an existing queue only; never create or migrate (jobs, retry). */
	JOBQ_NO_CREATE = 1 << 1,
};

/* A job to add. Strings are borrowed for the call. */
struct jobq_new {
	const char *handler;
	const char *bucket;
	const char *key;
	const char *version_id; /* "" when none */
	const char *etag;	/* without quotes; "" for deletes */
	const char *sequencer;	/* "" when none */
	const char *event_name; /* "s3:ObjectCreated:Put" */
	const char *event_json; /* the canonical event (core/event.h), handed to the handler */
	int depth;
	int priority;	   /* 0 live events, 1 reprocess: lower runs first */
	int max_attempts;
	const char *batch; /* reprocess run this job belongs to, or NULL */
};

/* A claimed (or listed) job; strings owned, freed by jobq_job_release(). */
struct jobq_job {
	int64_t id;
	int64_t lease_token; /* proves the claim; 0 when listed, not claimed */
	enum job_state state;
	char *handler;
	char *bucket;
	char *key;
	char *version_id;
	char *etag;
	char *sequencer;
	char *event_name;
	char *event_json;
	int depth;
	int priority;
	int attempts; /* attempts started, this one included */
	int max_attempts;
	int64_t created_ms;
	int64_t updated_ms; /* when the state last changed (renewals do not count) */
	int64_t next_ms;    /* when a retry is due; 0 when none */
	/* the last attempt's outcome */
	int exit_code;	 /* -1 when none */
	int signal;	 /* 0 when none */
	char *last_error;
	char *stdout_tail;
	char *stderr_tail;
	double cpu_user_s;
	double cpu_sys_s;
	int64_t max_rss_kib;
	int64_t wall_ms;
	char *batch;
};

void jobq_job_release(struct jobq_job *job);

/* What an attempt produced, stored with the job. Strings borrowed. */
struct jobq_result {
	int exit_code; /* -1 when the handler did not run or was killed */
	int signal;
	const char *error; /* one line, "" when none */
	const char *stdout_tail;
	const char *stderr_tail;
	double cpu_user_s;
	double cpu_sys_s;
	/*
	 * Peak RSS of the handler, KiB. Negative, -N, when it stayed at most N:
	 * a child made with vfork inherits the daemon's peak as its floor, so a
	 * smaller peak cannot be seen (core/run.h, worker_rss_honest()).
	 */
	int64_t max_rss_kib;
	int64_t wall_ms;
};

#define JOBQ_RESULT_INIT { .exit_code = -1, .error = "", .stdout_tail = "", .stderr_tail = "" }

/* Which jobs a worker may claim. */
struct jobq_filter {
	/* NULL-terminated: only these (the handlers configured here); NULL: any handler. */
	const char *const *handlers;
	/* Handlers whose concurrency is used up right now (NULL-terminated, may be NULL). */
	const char *const *busy_handlers;
	uint32_t lease_ms;
};

/*
 * Opens (creating it and bringing its schema up to date unless
 * JOBQ_NO_CREATE) the queue at url. A SQLite file is made 0600 in a folder
 * that must exist; a file whose schema is newer than this build is refused.
 * jobq_close() accepts NULL.
 */
struct jobq *jobq_open(const char *url, enum jobq_flags flags, struct err *e);
void jobq_close(struct jobq *q);

/*
 * Adds jobs in one transaction, durable (fsynced with JOBQ_INGEST) when it
 * returns 0. Jobs whose dedupe key exists already are left as they are;
 * *added counts the new ones. Nothing is added when it fails.
 */
int jobq_enqueue(struct jobq *q, const struct jobq_new *jobs, size_t n, size_t *added,
		 struct err *e);

/*
 * Claims the next runnable job: pending, or retry whose time has come, or
 * running with an expired lease; lowest priority first, then oldest; never
 * a second job for a (bucket, key, handler) that has one running. Returns
 * 1 with *job filled in, 0 when there is none, -1 on error.
 */
int jobq_claim(struct jobq *q, const struct jobq_filter *f, struct jobq_job *job, struct err *e);

/* Extends the lease by lease_ms; ERR_CONFLICT when the lease was lost (taken over). */
int jobq_renew(struct jobq *q, const struct jobq_job *job, uint32_t lease_ms, struct err *e);

/*
 * Ends an attempt with a final state (DONE, SKIPPED, GONE, SUPERSEDED, DEAD);
 * DONE (and the other non-failures) also go to the ledger. ERR_CONFLICT
 * when the lease token is no longer the current one: nothing changes then.
 */
int jobq_finish(struct jobq *q, const struct jobq_job *job, enum job_state state,
		const struct jobq_result *res, struct err *e);

/*
 * Ends a failed attempt: RETRY at now + delay_ms, or DEAD when the job has
 * used max_attempts. *state_out tells which (may be NULL).
 */
int jobq_fail(struct jobq *q, const struct jobq_job *job, uint64_t delay_ms,
	      const struct jobq_result *res, enum job_state *state_out, struct err *e);

/* Gives a claimed job back untouched (shutdown): pending again, the attempt not counted. */
int jobq_release(struct jobq *q, const struct jobq_job *job, struct err *e);

/*
 * Jobs leased by a process of this host that no longer exists (pid and
 * start time no longer match, or the host has rebooted since) are made
 * claimable at once. *n counts them. Their attempt stays counted, as one
 * taken over after its lease expired does: jobq_fail() still ends a job
 * after max_attempts. Jobs of other hosts (and of other pid namespaces,
 * whose processes cannot be seen from here) are left to their leases.
 */
int jobq_reclaim_orphans(struct jobq *q, size_t *n, struct err *e);

/*
 * Waits up to timeout_ms for something that may make a job claimable:
 * a job added by this or another process, or the next retry coming due.
 * Returns early on jobq_wake(). A jobq_claim() that found nothing followed
 * by jobq_wait() on the same thread cannot miss a job added in between.
 * Other processes are noticed by polling (a few times a second; on
 * PostgreSQL, at once by LISTEN/NOTIFY on handles opened without
 * JOBQ_INGEST or JOBQ_NO_CREATE), this process's handles at once. Never holds the handle's mutex while asleep.
 */
void jobq_wait(struct jobq *q, uint32_t timeout_ms);

/* Wakes every jobq_wait() of this process, on any handle (shutdown, capacity freed). */
void jobq_wake(struct jobq *q);

/* Listing, for `s3hook jobs`. */
struct jobq_query {
	int state;	     /* -1: any */
	const char *handler; /* NULL: any */
	const char *batch;   /* NULL: any */
	int64_t id;	     /* 0: any */
	size_t limit;	     /* 0: no limit */
};

#define JOBQ_QUERY_INIT { .state = -1 }

/*
 * Calls fn for each job matching (newest first); stops early when fn returns
 * non-zero. Jobs are read a page at a time and fn runs with no lock or
 * transaction held, so a slow reader never holds up the queue (it may then
 * see a job moved by others in between); fn may call into q.
 */
int jobq_list(struct jobq *q, const struct jobq_query *qu,
	      int (*fn)(void *arg, const struct jobq_job *job), void *arg, struct err *e);

/* Counts of jobs per state (indexed by enum job_state) matching the query. */
int jobq_count(struct jobq *q, const struct jobq_query *qu, int64_t counts[8], struct err *e);

/*
 * Metering per handler over the jobs matching qu, for `s3hook jobs --summary`.
 * A job keeps only its last attempt's usage, so this sums last attempts (the
 * metrics of `serve` count every attempt); done jobs count until pruned.
 */
struct jobq_handler_summary {
	char *handler;
	uint64_t jobs;	   /* matching jobs */
	uint64_t runs;	   /* of which the handler ran in the last attempt */
	uint64_t failures; /* of which the last attempt failed (retry or dead) */
	double cpu_user_s; /* of the runs */
	double cpu_sys_s;
	int64_t wall_p50_ms; /* of the runs (nearest rank); 0 when none */
	int64_t wall_p99_ms;
	int64_t max_rss_kib; /* largest peak; -N: every run stayed at most N (see jobq_result) */
};

/*
 * Fills *out with one summary per handler, sorted by name (*out is the
 * caller's: jobq_summary_free). Built on jobq_list(), so every backend has it.
 */
int jobq_summary(struct jobq *q, const struct jobq_query *qu, struct jobq_handler_summary **out,
		 size_t *n, struct err *e);
void jobq_summary_free(struct jobq_handler_summary *s, size_t n);

/* Revives one dead (or retry) job, or every dead job when id is 0: pending, attempts reset. */
int jobq_retry(struct jobq *q, int64_t id, size_t *n, struct err *e);

/* Deletes done, skipped, gone and superseded jobs older than keep_ms (the ledger stays). */
int jobq_prune(struct jobq *q, uint64_t keep_ms, size_t *n, struct err *e);

/* Whether (bucket, key, version or ETag, handler) finished as done before. 1 yes, 0 no. */
int jobq_ledger_done(struct jobq *q, const char *bucket, const char *key, const char *version,
		     const char *handler, struct err *e);

/*
 * Reprocess checkpoints: an opaque position per listing id. *value is the
 * caller's (free() it); NULL when the id has none.
 */
int jobq_checkpoint_get(struct jobq *q, const char *id, char **value, struct err *e);

/*
 * Adds jobs and moves a checkpoint in one transaction, so a crash never loses
 * a page nor lists one twice.
 */
int jobq_enqueue_page(struct jobq *q, const struct jobq_new *jobs, size_t n,
		      const char *checkpoint_id, const char *checkpoint_value, size_t *added,
		      struct err *e);

/*
 * Checks for real that the queue can take a write now (healthz): a committed
 * write, and that the file is still the one opened and still writable (a
 * deleted file would keep taking writes through the open descriptor, and be
 * lost at exit; an open descriptor ignores a chmod or a read-only remount).
 */
int jobq_check_writable(struct jobq *q, struct err *e);

/*
 * Time of the oldest pending job, ms since the epoch (since it became pending:
 * added, revived or given back); 0 when none or on error.
 */
int64_t jobq_oldest_pending_ms(struct jobq *q);

/*
 * The queue's URL as logs and messages may show it: a PostgreSQL URL without
 * its password (postgres://USER@HOST:PORT/DB), a file as it is. free() it.
 */
char *jobq_url_shown(const char *url);

/* Milliseconds since the epoch. */
int64_t jobq_now_ms(void);

#ifdef S3HOOK_JOBQ_BACKEND
/*
 * For backends only (core/jobq_<name>.c, which define S3HOOK_JOBQ_BACKEND
 * before including this header). core/jobq.c keeps what does not depend on
 * the storage: it checks arguments, holds the handle's mutex around every
 * call, takes the time, makes lease tokens and owner names, decides which
 * owners are gone, says "lease lost", and waits. A backend stores and
 * queries; each call is one transaction (or none), and every time is ms
 * since the epoch from jobq_now_ms(). The calls that need the current
 * lease (renew, end, unlease) match on id, token and state running, and
 * return 1 when they changed the job, 0 when the lease is not held, -1 on
 * error.
 */
struct jobq_backend;

/*
 * SQL both backends' schemas share: a job's columns in the order each
 * backend's row_job() reads them (tok is the lease token's expression), and
 * what leaves a job's lease behind.
 */
#define JOB_COLS(tok)                                                                         \
	"id, " tok ", state, handler, bucket, key, version_id, etag, sequencer, event_name, " \
	"event_json, depth, priority, attempts, max_attempts, created_ms, updated_ms, "       \
	"next_ms, exit_code, signal, last_error, stdout_tail, stderr_tail, "                  \
	"cpu_user_s, cpu_sys_s, max_rss_kib, wall_ms, batch"
#define UNLEASED "lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL"

/* A claim being made. */
struct jobq_lease {
	int64_t token;	   /* random, never 0 */
	const char *owner; /* this process, as jobq.c names it */
	int64_t until_ms;
};

/* A running job's lease, for jobq_reclaim_orphans(); owner is the array's. */
struct jobq_held {
	int64_t id;
	int64_t token;
	char *owner;
};

struct jobq_ops {
	struct jobq_backend *(*open)(const char *url, enum jobq_flags flags, struct err *e);
	void (*close)(struct jobq_backend *b);
	/* Adds jobs, and sets the checkpoint when cp_id is not NULL, in one transaction. */
	int (*enqueue)(struct jobq_backend *b, const struct jobq_new *jobs, size_t n,
		       const char *cp_id, const char *cp_value, int64_t now, size_t *added,
		       struct err *e);
	/* handlers NULL: any; busy NULL-terminated or NULL. 1 claimed, 0 none, -1 error. */
	int (*claim)(struct jobq_backend *b, const char *const *handlers, const char *const *busy,
		     int64_t now, const struct jobq_lease *lease, struct jobq_job *job,
		     struct err *e);
	int (*renew)(struct jobq_backend *b, int64_t id, int64_t token, int64_t until_ms,
		     struct err *e);
	/*
	 * Ends an attempt as state: a final one (the non-failures go to the
	 * ledger), or JOB_RETRY at next_ms, which becomes JOB_DEAD when the job
	 * has used max_attempts. *out is the state it ended in.
	 */
	int (*end)(struct jobq_backend *b, int64_t id, int64_t token, enum job_state state,
		   int64_t next_ms, const struct jobq_result *res, int64_t now, enum job_state *out,
		   struct err *e);
	/* Makes a running job pending again; uncount: the attempt is not counted. */
	int (*unlease)(struct jobq_backend *b, int64_t id, int64_t token, int uncount, int64_t now,
		       struct err *e);
	/* Every running job's lease; *held is the caller's (jobq_held_free). */
	int (*leases)(struct jobq_backend *b, struct jobq_held **held, size_t *n, struct err *e);
	/* Up to max jobs matching qu with id < below, newest first; *jobs is the caller's. */
	int (*list)(struct jobq_backend *b, const struct jobq_query *qu, int64_t below, size_t max,
		    struct jobq_job **jobs, size_t *n, struct err *e);
	int (*count)(struct jobq_backend *b, const struct jobq_query *qu, int64_t counts[8],
		     struct err *e);
	int (*retry)(struct jobq_backend *b, int64_t id, int64_t now, size_t *n, struct err *e);
	/* Deletes the non-failed final jobs last changed before before_ms. */
	int (*prune)(struct jobq_backend *b, int64_t before_ms, size_t *n, struct err *e);
	int (*ledger_done)(struct jobq_backend *b, const char *bucket, const char *key,
			   const char *version, const char *handler, struct err *e);
	int (*checkpoint_get)(struct jobq_backend *b, const char *id, char **value, struct err *e);
	int (*check_writable)(struct jobq_backend *b, int64_t now, struct err *e);
	int (*oldest_pending)(struct jobq_backend *b, int64_t *ms, struct err *e);
	/* A number that changes when another connection commits (jobq_wait's poll). */
	int (*version)(struct jobq_backend *b, uint64_t *v, struct err *e);
	/* The first time after now when a retry comes due or a lease ends; 0 when none. */
	int (*next_due)(struct jobq_backend *b, int64_t now, int64_t *ms, struct err *e);
};

void jobq_held_free(struct jobq_held *held, size_t n);

/* Wakes every jobq_wait() of this process: for a backend that hears of work from elsewhere. */
void jobq_wake_all(void);

/* jobq_url_shown() of a postgres:// URL. */
char *jobq_pg_url_shown(const char *url);

extern const struct jobq_ops jobq_sqlite_ops;
extern const struct jobq_ops jobq_pg_ops;
#endif

#endif
