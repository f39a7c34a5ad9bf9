/*
 * metrics: `GET /metrics` on admin_listen, in the Prometheus text format
 * (version 0.0.4), for `s3hook serve`.
 *
 *	struct metrics *m = metrics_new(hook, pool, s3, q);
 *	webhook_set_metrics(hook, metrics_render, m);     before webhook_start()
 *	...
 *	webhook_stop(hook);                                no scrape runs after this
 *	metrics_free(m);
 *
 * The listener, pool, client and queue are borrowed (any may be NULL: its
 * metrics are left out) and must outlive m. Every figure comes from a
 * snapshot function of its module: webhook_stats(), worker_pool_stats() and
 * worker_pool_handler_stats(), s3_client_stats(); the queue's counts by state
 * and its oldest pending job are asked of the queue at most once a second,
 * so that scrapes stay cheap however often they come; the process's own
 * figures come from /proc/self. The names and what each means are in
 * README.md ("Metrics").
 *
 * metrics_format() is the rendering alone, from a snapshot filled in by hand
 * (tests).
 */
#ifndef S3HOOK_METRICS_H
#define S3HOOK_METRICS_H

#include "core/worker.h"
#include "s3/client.h"
#include "triggers/webhook.h"

#include <stddef.h>
#include <stdint.h>

struct buf;
struct jobq;
struct metrics;

/* Everything one scrape shows. */
struct metrics_snapshot {
	const char *version;
	int have_webhook;
	struct webhook_stats hook;
	int have_pool;
	struct worker_stats pool;
	const struct worker_handler_stats *handlers;
	size_t n_handlers;
	int have_s3;
	struct s3_stats s3;
	int have_queue;		 /* a queue is configured */
	int queue_ok;		 /* and its counts below could be read */
	int64_t jobs[8];	 /* by enum job_state */
	double oldest_pending_s; /* age of the oldest pending job; 0 when none */
	/* the process */
	uint64_t rss_bytes;
	uint64_t vsize_bytes;
	uint64_t open_fds;
	uint64_t max_fds;
	double cpu_s;
	double start_time_s; /* since the epoch */
};

struct metrics *metrics_new(struct webhook *hook, struct worker_pool *pool, struct s3_client *s3,
			    struct jobq *q);
void metrics_free(struct metrics *m);

/*
 * Appends the text of one scrape to out. `arg` is the struct metrics (so the
 * function can be handed to webhook_set_metrics() as it is). Thread-safe.
 * Returns 0; -1 only when out is capped and full.
 */
int metrics_render(void *arg, struct buf *out);

/* Appends the Prometheus text of a snapshot. */
int metrics_format(const struct metrics_snapshot *s, struct buf *out);

#endif
