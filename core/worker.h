/*
 * worker: the pool that runs jobs. Each worker thread claims a job, checks
 * the object is still the one the event named (HEAD or GET with If-Match),
 * applies the checks that need the object, downloads it into a fresh private
 * folder, runs the handler (core/run.h), uploads what it left in its output
 * folder and ends the job by the exit status (DESIGN.md "Handlers", steps 1
 * to 6). A keeper thread renews the leases of the running jobs.
 *
 *	struct worker_pool *p = worker_pool_new(cfg, q, s3, &e);
 *	worker_pool_start(p, &e);
 *	...
 *	worker_pool_stop(p, grace_ms);   finish running handlers, then release their jobs
 *	worker_pool_free(p);
 *
 * The config, queue and client are borrowed and must outlive the pool;
 * worker_pool_set_config() swaps the config (SIGHUP) for jobs claimed after.
 */
#ifndef S3HOOK_WORKER_H
#define S3HOOK_WORKER_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct err;
struct jobq;
struct jobq_job;
struct s3_client;

struct worker_pool;

/* Outcome counters, for metrics and for `reprocess` to wait on. */
struct worker_stats {
	uint64_t claimed;
	uint64_t done;
	uint64_t retried;
	uint64_t dead;
	uint64_t skipped; /* skipped, gone, superseded */
	uint64_t released;
	uint64_t running;
};

struct worker_pool *worker_pool_new(const struct config *cfg, struct jobq *q,
				    struct s3_client *s3, struct err *e);

/* Starts cfg->workers threads (one per CPU when 0) and the lease keeper. */
int worker_pool_start(struct worker_pool *p, struct err *e);

/*
 * Stops claiming; running handlers get grace_ms to finish, then they are
 * killed and their jobs released (pending again, the attempt not counted).
 */
void worker_pool_stop(struct worker_pool *p, uint64_t grace_ms);
void worker_pool_free(struct worker_pool *p);

/* Uses cfg for jobs claimed from now on (the old one must live until stop). */
void worker_pool_set_config(struct worker_pool *p, const struct config *cfg);

void worker_pool_stats(struct worker_pool *p, struct worker_stats *out);

/* Upper bounds (seconds) of the run-duration histogram's buckets; +Inf is implied. */
#define WORKER_N_BUCKETS 12
extern const double worker_duration_buckets[WORKER_N_BUCKETS];

/* Index of worker_handler_stats.outcomes past the job states: the end could not be recorded. */
#define WORKER_LOST	  8
#define WORKER_N_OUTCOMES 9

/*
 * What one handler's jobs cost since the pool started, for metrics: every
 * attempt counted, not only the last one a job keeps.
 */
struct worker_handler_stats {
	char *name;
	/* attempts by the state they ended in (JOB_PENDING: given back at shutdown), and lost */
	uint64_t outcomes[WORKER_N_OUTCOMES];
	uint64_t runs;				/* attempts in which the program ran */
	uint64_t duration_le[WORKER_N_BUCKETS]; /* runs of at most each bound (cumulative) */
	double duration_sum_s;			/* wall time of the runs */
	double cpu_user_s;
	double cpu_sys_s;
	int64_t max_rss_kib; /* largest peak measured (see struct jobq_result); 0: none */
};

/*
 * A copy of the counters of every handler configured since the pool started
 * (a handler a reload removed keeps its counters), sorted by name; *out is
 * the caller's, freed with worker_handler_stats_free(). Returns how many.
 */
size_t worker_pool_handler_stats(struct worker_pool *p, struct worker_handler_stats **out);
void worker_handler_stats_free(struct worker_handler_stats *s, size_t n);

/*
 * The peak RSS to store for a run (KiB): the child's, or, when it is not above
 * `self_peak_kib` (the daemon's own peak, which a vfork'd child inherits as its
 * floor, see core/run.h), -self_peak_kib: "at most that much, no more is known".
 */
int64_t worker_rss_honest(long child_max_rss_kib, long self_peak_kib);

/* Retry delay after `attempts` failed attempts: base * 2^(attempts-1), at most max, jittered. */
uint64_t worker_backoff_ms(uint64_t base_ms, uint64_t max_ms, int attempts);

#endif
