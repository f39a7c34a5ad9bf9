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
 * the default) or postgres://... (later). A struct jobq is one connection;
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
	int64_t updated_ms;
	int64_t next_ms; /* when a retry is due */
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
	int64_t max_rss_kib;
	int64_t wall_ms;
};

#define JOBQ_RESULT_INIT { .exit_code = -1, .error = "", .stdout_tail = "", .stderr_tail = "" }

/* Which jobs a worker may claim. */
struct jobq_filter {
	const char *const *handlers; /* NULL-terminated: only these (the handlers configured here) */
	/* Handlers whose concurrency is used up right now (NULL-terminated, may be NULL). */
	const char *const *busy_handlers;
	uint32_t lease_ms;
};

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
 * start time no longer match) are made claimable at once. *n counts them.
 */
int jobq_reclaim_orphans(struct jobq *q, size_t *n, struct err *e);

/*
 * Waits up to timeout_ms for something that may make a job claimable:
 * a job added by this or another process, or the next retry coming due.
 * Returns early on jobq_wake().
 */
void jobq_wait(struct jobq *q, uint32_t timeout_ms);
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

/* Calls fn for each job matching (newest first); stops early when fn returns non-zero. */
int jobq_list(struct jobq *q, const struct jobq_query *qu,
	      int (*fn)(void *arg, const struct jobq_job *job), void *arg, struct err *e);

/* Counts of jobs per state (indexed by enum job_state) matching the query. */
int jobq_count(struct jobq *q, const struct jobq_query *qu, int64_t counts[8], struct err *e);

/* Revives one dead (or retry) job, or every dead job when id is 0: pending, attempts reset. */
int jobq_retry(struct jobq *q, int64_t id, size_t *n, struct err *e);

/* Deletes done, skipped, gone and superseded jobs older than keep_ms (the ledger stays). */
int jobq_prune(struct jobq *q, uint64_t keep_ms, size_t *n, struct err *e);

/* Whether (bucket, key, version or ETag, handler) finished as done before. 1 yes, 0 no. */
int jobq_ledger_done(struct jobq *q, const char *bucket, const char *key, const char *version,
		     const char *handler, struct err *e);

/* Reprocess checkpoints: an opaque position per listing id. *value is the caller's. */
int jobq_checkpoint_get(struct jobq *q, const char *id, char **value, struct err *e);

/*
 * Adds jobs and moves a checkpoint in one transaction, so a crash never loses
 * a page nor lists one twice.
 */
int jobq_enqueue_page(struct jobq *q, const struct jobq_new *jobs, size_t n,
		      const char *checkpoint_id, const char *checkpoint_value, size_t *added,
		      struct err *e);

/* Checks for real that the queue can take a write now (healthz). */
int jobq_check_writable(struct jobq *q, struct err *e);

/* Time of the oldest pending job, ms since the epoch; 0 when none. */
int64_t jobq_oldest_pending_ms(struct jobq *q);

/* Milliseconds since the epoch. */
int64_t jobq_now_ms(void);

#endif
