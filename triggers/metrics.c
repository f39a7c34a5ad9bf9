#include "triggers/metrics.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/jobq.h"
#include "core/str.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The queue is asked for its counts at most this often. */
#define QUEUE_CACHE_MS 1000

struct metrics {
	struct webhook *hook;
	struct worker_pool *pool;
	struct s3_client *s3;
	struct jobq *q;

	pthread_mutex_t lock; /* the queue cache */
	int64_t queue_at_ms;  /* monotonic; 0: never read */
	int queue_ok;
	int64_t jobs[8];
	int64_t oldest_pending_ms; /* epoch ms, 0 when none */
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct metrics *metrics_new(struct webhook *hook, struct worker_pool *pool, struct s3_client *s3,
			    struct jobq *q)
{
	struct metrics *m = xcalloc(1, sizeof(*m));

	m->hook = hook;
	m->pool = pool;
	m->s3 = s3;
	m->q = q;
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* ---- the text format ---- */

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, double quote and newline escaped, as the format wants. */
static void label_value(struct buf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			buf_addf(b, "\\%c", *v);
		else if (*v == '\n')
			buf_adds(b, "\\n");
		else
			buf_addch(b, *v);
	}
}

/* name{k="v",...} with the label pairs of ap (NULL-terminated), then a space. */
static void sample_head(struct buf *b, const char *name, va_list ap)
{
	const char *k;
	int n = 0;

	buf_adds(b, name);
	while ((k = va_arg(ap, const char *))) {
		buf_addf(b, "%s%s=\"", n++ ? "," : "{", k);
		label_value(b, va_arg(ap, const char *));
		buf_addch(b, '"');
	}
	buf_adds(b, n ? "} " : " ");
}

/* One sample of an integer; label name/value pairs follow, then NULL. */
static void sample_u(struct buf *b, const char *name, uint64_t v, ...)
{
	va_list ap;

	va_start(ap, v);
	sample_head(b, name, ap);
	va_end(ap);
	buf_addf(b, "%llu\n", (unsigned long long)v);
}

/* One sample of a real number; label name/value pairs follow, then NULL. */
static void sample_d(struct buf *b, const char *name, double v, ...)
{
	va_list ap;

	va_start(ap, v);
	sample_head(b, name, ap);
	va_end(ap);
	buf_addf(b, "%.9g\n", v);
}

/* ---- the families ---- */

static void format_webhook(const struct webhook_stats *st, struct buf *b)
{
	size_t i;

	family(b, "s3hook_notifications_received_total", "counter",
	       "Notification POSTs received (headers read).");
	sample_u(b, "s3hook_notifications_received_total", st->received, NULL);
	family(b, "s3hook_notifications_accepted_total", "counter",
	       "Notifications answered 200 (their jobs durable).");
	sample_u(b, "s3hook_notifications_accepted_total", st->accepted, NULL);
	family(b, "s3hook_notifications_rejected_total", "counter",
	       "Notifications refused, by reason.");
	for (i = 0; i < WEBHOOK_REJ_N; i++)
		sample_u(b, "s3hook_notifications_rejected_total", st->rejected[i], "reason",
			 webhook_reject_name((enum webhook_reject)i), NULL);
	family(b, "s3hook_events_accepted_total", "counter",
	       "Events in the accepted notifications.");
	sample_u(b, "s3hook_events_accepted_total", st->events, NULL);
	family(b, "s3hook_ingest_jobs_total", "counter",
	       "Jobs the accepted events made, duplicates of queued jobs included.");
	sample_u(b, "s3hook_ingest_jobs_total", st->jobs, NULL);
	family(b, "s3hook_ingest_jobs_new_total", "counter",
	       "Jobs the accepted events made that the queue did not have yet.");
	sample_u(b, "s3hook_ingest_jobs_new_total", st->jobs_new, NULL);
	family(b, "s3hook_ingest_commits_total", "counter",
	       "Queue transactions of the listener, by result.");
	sample_u(b, "s3hook_ingest_commits_total", st->commits, "result", "ok", NULL);
	sample_u(b, "s3hook_ingest_commits_total", st->commit_failures, "result", "failed", NULL);
	family(b, "s3hook_http_other_requests_total", "counter",
	       "Requests that are not notifications (health, metrics, 404, 405).");
	sample_u(b, "s3hook_http_other_requests_total", st->other, NULL);
}

static void format_queue(const struct metrics_snapshot *s, struct buf *b)
{
	size_t i;

	family(b, "s3hook_queue_up", "gauge",
	       "1 when the queue answered the last count (the figures below are from it).");
	sample_u(b, "s3hook_queue_up", (uint64_t)s->queue_ok, NULL);
	if (!s->queue_ok)
		return;
	family(b, "s3hook_jobs", "gauge",
	       "Jobs in the queue, by state (read at most once a second).");
	for (i = 0; i < 8; i++)
		sample_u(b, "s3hook_jobs", (uint64_t)s->jobs[i], "state",
			 job_state_name((enum job_state)i), NULL);
	family(b, "s3hook_queue_depth", "gauge", "Jobs waiting to run: pending and retry.");
	sample_u(b, "s3hook_queue_depth", (uint64_t)(s->jobs[JOB_PENDING] + s->jobs[JOB_RETRY]),
		 NULL);
	family(b, "s3hook_queue_oldest_pending_age_seconds", "gauge",
	       "How long the oldest pending job has waited; 0 when none.");
	sample_d(b, "s3hook_queue_oldest_pending_age_seconds", s->oldest_pending_s, NULL);
}

/* The label of an outcome index of worker_handler_stats.outcomes. */
static const char *outcome_name(size_t i)
{
	if (i == WORKER_LOST)
		return "lost";
	if (i == JOB_PENDING)
		return "released";
	return job_state_name((enum job_state)i);
}

static void format_outcomes(const struct metrics_snapshot *s, struct buf *b)
{
	size_t i, k;

	family(b, "s3hook_handler_runs_total", "counter",
	       "Attempts ended, by handler and outcome (done, retry, dead, skipped, gone, "
	       "superseded, released at shutdown, lost: the end could not be recorded).");
	for (i = 0; i < s->n_handlers; i++)
		for (k = 0; k < WORKER_N_OUTCOMES; k++)
			if (k != JOB_RUNNING)
				sample_u(b, "s3hook_handler_runs_total", s->handlers[i].outcomes[k],
					 "handler", s->handlers[i].name, "outcome", outcome_name(k),
					 NULL);
}

static void format_histogram(const struct worker_handler_stats *h, struct buf *b)
{
	const char *name = "s3hook_handler_run_duration_seconds_bucket";
	char le[32];
	size_t k;

	for (k = 0; k < WORKER_N_BUCKETS; k++) {
		snprintf(le, sizeof(le), "%g", worker_duration_buckets[k]);
		sample_u(b, name, h->duration_le[k], "handler", h->name, "le", le, NULL);
	}
	sample_u(b, name, h->runs, "handler", h->name, "le", "+Inf", NULL);
	sample_d(b, "s3hook_handler_run_duration_seconds_sum", h->duration_sum_s, "handler",
		 h->name, NULL);
	sample_u(b, "s3hook_handler_run_duration_seconds_count", h->runs, "handler", h->name, NULL);
}

static void format_handlers(const struct metrics_snapshot *s, struct buf *b)
{
	size_t i;

	format_outcomes(s, b);
	family(b, "s3hook_handler_run_duration_seconds", "histogram",
	       "Wall time of the handler programs, from spawn to reap.");
	for (i = 0; i < s->n_handlers; i++)
		format_histogram(&s->handlers[i], b);
	family(b, "s3hook_handler_cpu_seconds_total", "counter",
	       "CPU time of the handler programs and the children they waited for.");
	for (i = 0; i < s->n_handlers; i++) {
		sample_d(b, "s3hook_handler_cpu_seconds_total", s->handlers[i].cpu_user_s,
			 "handler", s->handlers[i].name, "mode", "user", NULL);
		sample_d(b, "s3hook_handler_cpu_seconds_total", s->handlers[i].cpu_sys_s, "handler",
			 s->handlers[i].name, "mode", "system", NULL);
	}
	family(b, "s3hook_handler_max_rss_bytes", "gauge",
	       "Largest peak RSS of a run; 0 while every run stayed below the daemon's own peak, "
	       "which is all the kernel tells then.");
	for (i = 0; i < s->n_handlers; i++)
		sample_u(b, "s3hook_handler_max_rss_bytes",
			 (uint64_t)(s->handlers[i].max_rss_kib > 0 ? s->handlers[i].max_rss_kib
								   : 0) *
				 1024,
			 "handler", s->handlers[i].name, NULL);
}

static void format_pool(const struct worker_stats *st, struct buf *b)
{
	family(b, "s3hook_worker_running", "gauge", "Jobs being run now.");
	sample_u(b, "s3hook_worker_running", st->running, NULL);
	family(b, "s3hook_worker_claims_total", "counter", "Jobs claimed by the workers.");
	sample_u(b, "s3hook_worker_claims_total", st->claimed, NULL);
}

static void format_s3(const struct s3_stats *st, struct buf *b)
{
	size_t i, k;

	family(b, "s3hook_s3_requests_total", "counter",
	       "S3 requests sent, every try counted, by operation and status class (error: no "
	       "answer); series appear at their first request.");
	for (i = 0; i < S3_OP_N; i++)
		for (k = 0; k < S3_ST_N; k++)
			if (st->requests[i][k])
				sample_u(b, "s3hook_s3_requests_total", st->requests[i][k],
					 "operation", s3_op_name((enum s3_op)i), "status",
					 s3_status_class_name((enum s3_status_class)k), NULL);
	family(b, "s3hook_s3_credential_refreshes_total", "counter",
	       "Credentials fetched again (credential_process, changed ~/.aws files), by result.");
	sample_u(b, "s3hook_s3_credential_refreshes_total", st->credential_refreshes, "result",
		 "ok", NULL);
	sample_u(b, "s3hook_s3_credential_refreshes_total", st->credential_failures, "result",
		 "failed", NULL);
}

static void format_process(const struct metrics_snapshot *s, struct buf *b)
{
	family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
	sample_u(b, "process_resident_memory_bytes", s->rss_bytes, NULL);
	family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
	sample_u(b, "process_virtual_memory_bytes", s->vsize_bytes, NULL);
	family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
	sample_u(b, "process_open_fds", s->open_fds, NULL);
	family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
	sample_u(b, "process_max_fds", s->max_fds, NULL);
	family(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
	sample_d(b, "process_cpu_seconds_total", s->cpu_s, NULL);
	family(b, "process_start_time_seconds", "gauge",
	       "Start time of the process since the epoch in seconds.");
	sample_d(b, "process_start_time_seconds", s->start_time_s, NULL);
}

int metrics_format(const struct metrics_snapshot *s, struct buf *out)
{
	size_t before = out->len;

	family(out, "s3hook_build_info", "gauge", "The running build; always 1.");
	sample_u(out, "s3hook_build_info", 1, "version", s->version ? s->version : "", NULL);
	if (s->have_webhook)
		format_webhook(&s->hook, out);
	if (s->have_queue)
		format_queue(s, out);
	if (s->have_pool) {
		format_pool(&s->pool, out);
		format_handlers(s, out);
	}
	if (s->have_s3)
		format_s3(&s->s3, out);
	format_process(s, out);
	/* A capped buffer refuses what does not fit: say so rather than serve half. */
	return out->len > before && out->data[out->len - 1] == '\n' ? 0 : -1;
}

/* ---- taking a snapshot ---- */

/* The queue's counts and oldest pending job, asked at most once a second. */
static void queue_snapshot(struct metrics *m, struct metrics_snapshot *s)
{
	int64_t now = mono_ms();

	pthread_mutex_lock(&m->lock);
	if (!m->queue_at_ms || now - m->queue_at_ms >= QUEUE_CACHE_MS) {
		struct jobq_query qu = JOBQ_QUERY_INIT;
		struct err e = ERR_INIT;
		memset(m->jobs, 0, sizeof(m->jobs));
		m->queue_ok = jobq_count(m->q, &qu, m->jobs, &e) == 0;
		m->oldest_pending_ms = m->queue_ok ? jobq_oldest_pending_ms(m->q) : 0;
		m->queue_at_ms = mono_ms();
	}
	s->queue_ok = m->queue_ok;
	memcpy(s->jobs, m->jobs, sizeof(s->jobs));
	if (m->oldest_pending_ms > 0)
		s->oldest_pending_s = (double)(jobq_now_ms() - m->oldest_pending_ms) / 1000.0;
	if (s->oldest_pending_s < 0)
		s->oldest_pending_s = 0;
	pthread_mutex_unlock(&m->lock);
}

/* Descriptors open now, not counting the one that reads the folder. */
static uint64_t count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	uint64_t n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n ? n - 1 : 0;
}

/* Fields 22 (start time, clock ticks after boot) and 23 (vsize) of /proc/self/stat. */
static void proc_stat(struct metrics_snapshot *s)
{
	struct buf b = BUF_INIT, st = BUF_INIT;
	unsigned long long start = 0, vsize = 0, btime = 0;
	const char *p, *bt;
	int i;

	if (buf_read_file(&b, "/proc/self/stat", 4096, NULL) == 0 && (p = strrchr(b.data, ')'))) {
		for (i = 2; i < 22 && p; i++)
			p = strchr(p + 1, ' ');
		if (p)
			sscanf(p + 1, "%llu %llu", &start, &vsize);
	}
	if (buf_read_file(&st, "/proc/stat", 1 << 20, NULL) == 0 &&
	    (bt = strstr(st.data, "btime ")))
		sscanf(bt + 6, "%llu", &btime);
	s->vsize_bytes = vsize;
	if (btime && sysconf(_SC_CLK_TCK) > 0)
		s->start_time_s = (double)btime + (double)start / (double)sysconf(_SC_CLK_TCK);
	buf_release(&b);
	buf_release(&st);
}

static void process_snapshot(struct metrics_snapshot *s)
{
	struct buf b = BUF_INIT;
	unsigned long long size = 0, resident = 0;
	struct rusage ru;
	struct rlimit rl;

	if (buf_read_file(&b, "/proc/self/statm", 4096, NULL) == 0 &&
	    sscanf(b.data, "%llu %llu", &size, &resident) == 2)
		s->rss_bytes = resident * (uint64_t)sysconf(_SC_PAGESIZE);
	buf_release(&b);
	s->open_fds = count_fds();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		s->max_fds = (uint64_t)rl.rlim_cur;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		s->cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	proc_stat(s);
}

int metrics_render(void *arg, struct buf *out)
{
	struct metrics *m = arg;
	struct metrics_snapshot s;
	struct worker_handler_stats *hs = NULL;
	int r;

	memset(&s, 0, sizeof(s));
	s.version = S3HOOK_VERSION;
	if ((s.have_webhook = m->hook != NULL))
		webhook_stats(m->hook, &s.hook);
	if ((s.have_pool = m->pool != NULL)) {
		worker_pool_stats(m->pool, &s.pool);
		s.n_handlers = worker_pool_handler_stats(m->pool, &hs);
		s.handlers = hs;
	}
	if ((s.have_s3 = m->s3 != NULL))
		s3_client_stats(m->s3, &s.s3);
	if ((s.have_queue = m->q != NULL))
		queue_snapshot(m, &s);
	process_snapshot(&s);
	r = metrics_format(&s, out);
	worker_handler_stats_free(hs, s.n_handlers);
	return r;
}
