/*
 * jobq: the queue's model, whatever stores it: arguments, the handle's
 * mutex, lease tokens and their owners, which owners are gone, and waiting
 * for work. The storage is a backend's (core/jobq_sqlite.c, core/jobq_pg.c);
 * see jobq.h.
 */
#define S3HOOK_JOBQ_BACKEND
#include "core/jobq.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WAIT_POLL_MS 200 /* how often a waiter asks whether another process added work */
#define LIST_PAGE    100 /* jobs jobq_list() reads per transaction */
#define OWNER_MAX    512 /* an owner name: ids, a boot id and a hostname */
#define DELAY_MAX    ((uint64_t)1 << 45) /* ~1,100 years: keeps now + delay from overflowing */

struct jobq {
	const struct jobq_ops *ops;
	struct jobq_backend *b;
	pthread_mutex_t mu;
	uint64_t serial; /* tells handles apart in a thread's `seen` record */
};

/* ----- states and time ----- */

static const char *const state_names[] = {
	[JOB_PENDING] = "pending", [JOB_RUNNING] = "running",
	[JOB_RETRY] = "retry",	   [JOB_DONE] = "done",
	[JOB_DEAD] = "dead",	   [JOB_SKIPPED] = "skipped",
	[JOB_GONE] = "gone",	   [JOB_SUPERSEDED] = "superseded",
};

#define N_STATES (sizeof(state_names) / sizeof(*state_names))

const char *job_state_name(enum job_state s)
{
	return (unsigned)s < N_STATES ? state_names[s] : "?";
}

int job_state_parse(const char *name, enum job_state *out)
{
	size_t i;

	for (i = 0; i < N_STATES; i++) {
		if (!strcmp(name, state_names[i])) {
			*out = (enum job_state)i;
			return 0;
		}
	}
	return -1;
}

int job_state_final(enum job_state s)
{
	return s == JOB_DONE || s == JOB_DEAD || s == JOB_SKIPPED || s == JOB_GONE ||
	       s == JOB_SUPERSEDED;
}

static int64_t clock_ms(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t jobq_now_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

void jobq_job_release(struct jobq_job *job)
{
	char **strs[] = { &job->handler,    &job->bucket,      &job->key,	  &job->version_id,
			  &job->etag,	    &job->sequencer,   &job->event_name,  &job->event_json,
			  &job->last_error, &job->stdout_tail, &job->stderr_tail, &job->batch };
	size_t i;

	for (i = 0; i < sizeof(strs) / sizeof(*strs); i++)
		free(*strs[i]);
	memset(job, 0, sizeof(*job));
}

void jobq_held_free(struct jobq_held *held, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(held[i].owner);
	free(held);
}

/* ----- lease owners: who holds a lease, and whether that process still exists ----- */

/*
 * A process, told apart from every other that ever ran on its host: a pid
 * is reused, but not with the same start time (clock ticks since boot) in
 * the same boot. The pid namespace says whether its pid can be looked up
 * from here at all.
 */
struct owner {
	long pid;
	unsigned long long start;
	unsigned long long pidns;
	char boot[40];
	char host[HOST_NAME_MAX + 1];
};

#define OWNER_FMT "pid=%ld start=%llu pidns=%llu boot=%s host=%s"

/* Reads the state (field 3) and start time (field 22) of /proc/PID/stat; -1 and errno on failure.
 */
static int proc_stat(long pid, char *state, unsigned long long *start)
{
	struct buf b = BUF_INIT;
	char path[64], *p, *end;
	int i, r = -1;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if (buf_read_file(&b, path, 4096, NULL) < 0)
		goto out;
	/* The name (field 2) may hold spaces and ')': the fields resume after the last ')'. */
	p = strrchr(b.data, ')');
	if (!p || p[1] != ' ' || !p[2])
		goto bad;
	*state = p[2];
	for (i = 3; i < 22 && p; i++)
		p = strchr(p + 1, ' ');
	if (!p)
		goto bad;
	errno = 0;
	*start = strtoull(p + 1, &end, 10);
	if (errno || end == p + 1)
		goto bad;
	r = 0;
	goto out;
bad:
	errno = EINVAL;
out:
	buf_release(&b);
	return r;
}

/* The first line of a small file, "" when it cannot be read. */
static void read_line(const char *path, char *out, size_t size)
{
	struct buf b = BUF_INIT;

	out[0] = '\0';
	if (buf_read_file(&b, path, 4096, NULL) == 0) {
		b.data[strcspn(b.data, "\n")] = '\0';
		str_copy(out, size, b.data);
	}
	buf_release(&b);
}

static int find_self(struct owner *o, struct err *e)
{
	struct stat st;
	char state;

	memset(o, 0, sizeof(*o));
	o->pid = (long)getpid();
	if (proc_stat(o->pid, &state, &o->start) < 0)
		return err_sys(e, ERR_QUEUE, "cannot read /proc/%ld/stat", o->pid);
	if (stat("/proc/self/ns/pid", &st) == 0)
		o->pidns = (unsigned long long)st.st_ino;
	read_line("/proc/sys/kernel/random/boot_id", o->boot, sizeof(o->boot));
	if (gethostname(o->host, sizeof(o->host) - 1) < 0)
		return err_sys(e, ERR_QUEUE, "cannot get the hostname");
	return 0;
}

/* This process as a lease owner. Computed once, and again in a forked child. */
static int self_owner(struct owner *o, struct err *e)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static struct owner cached;
	int r = 0;

	pthread_mutex_lock(&mu);
	if (cached.pid != (long)getpid())
		r = find_self(&cached, e);
	if (r == 0)
		*o = cached;
	else
		cached.pid = 0;
	pthread_mutex_unlock(&mu);
	return r;
}

static int owner_parse(const char *s, struct owner *o)
{
	int n = -1;

	memset(o, 0, sizeof(*o));
	if (sscanf(s, "pid=%ld start=%llu pidns=%llu boot=%39s host=%n", &o->pid, &o->start,
		   &o->pidns, o->boot, &n) != 4 ||
	    n < 0)
		return -1;
	str_copy(o->host, sizeof(o->host), s + n);
	return 0;
}

/*
 * Whether the process that took a lease is gone for sure. A host is known by
 * its name; one that has rebooted since has no process of before. Anything
 * that cannot be seen from here (another host, another pid namespace) lives
 * as far as this knows, and is left to its lease.
 */
static int owner_gone(const struct owner *o, const struct owner *self)
{
	unsigned long long start;
	char state;

	if (strcmp(o->host, self->host) != 0 || !o->boot[0] || !self->boot[0])
		return 0;
	if (strcmp(o->boot, self->boot) != 0)
		return 1;
	if (o->pidns != self->pidns || o->pid <= 0 || o->pid > INT_MAX)
		return 0;
	if (kill((pid_t)o->pid, 0) < 0 && errno == ESRCH)
		return 1;
	if (proc_stat(o->pid, &state, &start) < 0)
		return errno == ENOENT;
	/* A zombie has stopped for good; a different start time is a reused pid. */
	return state == 'Z' || state == 'X' || start != o->start;
}

static int orphaned(const char *owner, const struct owner *self)
{
	struct owner o;

	return owner && owner_parse(owner, &o) == 0 && owner_gone(&o, self);
}

static int lease_token(int64_t *token, struct err *e)
{
	uint64_t v = 0;

	while (!v) {
		if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
			if (errno == EINTR)
				continue;
			return err_sys(e, ERR_QUEUE, "cannot make a lease token");
		}
		v &= INT64_MAX;
	}
	*token = (int64_t)v;
	return 0;
}

/* ----- waking: one generation for the whole process ----- */

/*
 * Every handle's jobq_wait() sleeps on this, and whatever may make a job
 * claimable here (an enqueue, a finish, jobq_wake()) moves the generation
 * on: the listener and the workers use different handles, so a per-handle
 * condition would not hear the listener. Other processes are polled.
 */
static struct {
	pthread_once_t once;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	uint64_t gen;
} wake = { PTHREAD_ONCE_INIT, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };

static void wake_init(void)
{
	pthread_condattr_t attr;

	/* Deadlines on the monotonic clock: setting the wall clock must not stall a waiter. */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&wake.cond, &attr);
	pthread_condattr_destroy(&attr);
}

static uint64_t wake_gen(void)
{
	uint64_t gen;

	pthread_once(&wake.once, wake_init);
	pthread_mutex_lock(&wake.mu);
	gen = wake.gen;
	pthread_mutex_unlock(&wake.mu);
	return gen;
}

static void wake_all(void)
{
	pthread_once(&wake.once, wake_init);
	pthread_mutex_lock(&wake.mu);
	wake.gen++;
	pthread_cond_broadcast(&wake.cond);
	pthread_mutex_unlock(&wake.mu);
}

/*
 * Sleeps until the generation moves on from gen, the end (monotonic ms), or
 * the next poll. 1 when the wait is over (woken or ended), 0 to poll.
 */
static int sleep_once(uint64_t gen, int64_t end)
{
	int64_t until = clock_ms(CLOCK_MONOTONIC) + WAIT_POLL_MS;
	struct timespec ts;
	int over;

	if (until > end)
		until = end;
	ts.tv_sec = (time_t)(until / 1000);
	ts.tv_nsec = (long)(until % 1000) * 1000000;
	pthread_once(&wake.once, wake_init);
	pthread_mutex_lock(&wake.mu);
	while (wake.gen == gen && pthread_cond_timedwait(&wake.cond, &wake.mu, &ts) != ETIMEDOUT)
		;
	over = wake.gen != gen || until >= end;
	pthread_mutex_unlock(&wake.mu);
	return over;
}

/*
 * What a thread saw when it last looked for a job, so that the jobq_wait()
 * that follows a claim which found nothing wakes for what came in between.
 */
struct seen {
	uint64_t serial; /* the handle looked at; 0 when nothing is recorded */
	uint64_t gen;
	uint64_t version;
	int have_version;
};

static __thread struct seen seen;

/* Called with q->mu held. */
static void see(struct jobq *q, struct seen *s)
{
	s->serial = q->serial;
	s->gen = wake_gen();
	s->have_version = q->ops->version(q->b, &s->version, NULL) == 0;
}

/* Whether another process committed since s was taken. */
static int changed(struct jobq *q, const struct seen *s)
{
	uint64_t v;
	int r;

	if (!s->have_version)
		return 0;
	pthread_mutex_lock(&q->mu);
	r = q->ops->version(q->b, &v, NULL) == 0 && v != s->version;
	pthread_mutex_unlock(&q->mu);
	return r;
}

void jobq_wait(struct jobq *q, uint32_t timeout_ms)
{
	struct seen from = seen;
	int64_t end = clock_ms(CLOCK_MONOTONIC) + timeout_ms, now, due = 0;

	/* A second wait without a claim in between starts from what is there then. */
	seen.serial = 0;
	pthread_mutex_lock(&q->mu);
	if (from.serial != q->serial)
		see(q, &from);
	now = jobq_now_ms();
	/* +1: both clocks are cut to whole ms, and waking before due would find nothing. */
	if (q->ops->next_due(q->b, now, &due, NULL) == 0 && due > now && due - now < timeout_ms)
		end = clock_ms(CLOCK_MONOTONIC) + (due - now) + 1;
	pthread_mutex_unlock(&q->mu);
	while (!sleep_once(from.gen, end) && !changed(q, &from))
		;
}

void jobq_wake(struct jobq *q)
{
	(void)q;
	wake_all();
}

void jobq_wake_all(void)
{
	wake_all();
}

/* ----- open, close ----- */

static int is_postgres(const char *url)
{
	return str_starts_with(url, "postgres://") || str_starts_with(url, "postgresql://");
}

char *jobq_url_shown(const char *url)
{
	if (!url)
		return xstrdup("");
	return is_postgres(url) ? jobq_pg_url_shown(url) : xstrdup(url);
}

struct jobq *jobq_open(const char *url, enum jobq_flags flags, struct err *e)
{
	static uint64_t serials;
	const struct jobq_ops *ops = &jobq_sqlite_ops;
	struct jobq *q;

	if (!url || !*url) {
		err_set(e, ERR_CONFIG, "no queue given");
		return NULL;
	}
	if (is_postgres(url))
		ops = &jobq_pg_ops;
	q = xcalloc(1, sizeof(*q));
	q->b = ops->open(url, flags, e);
	if (!q->b) {
		free(q);
		return NULL;
	}
	q->ops = ops;
	pthread_mutex_init(&q->mu, NULL);
	q->serial = __atomic_add_fetch(&serials, 1, __ATOMIC_RELAXED);
	return q;
}

void jobq_close(struct jobq *q)
{
	if (!q)
		return;
	q->ops->close(q->b);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

/* ----- adding ----- */

static int check_new(const struct jobq_new *j, size_t i, struct err *e)
{
	const char *missing = !j->handler || !*j->handler ? "handler"
			      : !j->bucket || !*j->bucket ? "bucket"
			      : !j->key || !*j->key	  ? "key"
			      : !j->event_json		  ? "event_json"
							  : NULL;

	if (missing)
		return err_set(e, ERR_INTERNAL, "job %zu to add has no %s", i, missing);
	if (j->max_attempts < 1)
		return err_set(e, ERR_INTERNAL, "job %zu to add has max_attempts %d (at least 1)",
			       i, j->max_attempts);
	return 0;
}

int jobq_enqueue_page(struct jobq *q, const struct jobq_new *jobs, size_t n,
		      const char *checkpoint_id, const char *checkpoint_value, size_t *added,
		      struct err *e)
{
	size_t i, got = 0;
	int r;

	if (added)
		*added = 0;
	for (i = 0; i < n; i++)
		if (check_new(&jobs[i], i, e) < 0)
			return -1;
	if (checkpoint_id && !checkpoint_value)
		return err_set(e, ERR_INTERNAL, "checkpoint '%s' has no value",
			       SHORT(checkpoint_id));
	if (!n && !checkpoint_id)
		return 0;
	pthread_mutex_lock(&q->mu);
	r = q->ops->enqueue(q->b, jobs, n, checkpoint_id, checkpoint_value, jobq_now_ms(), &got, e);
	pthread_mutex_unlock(&q->mu);
	if (r < 0)
		return -1;
	if (got)
		wake_all();
	if (added)
		*added = got;
	return 0;
}

int jobq_enqueue(struct jobq *q, const struct jobq_new *jobs, size_t n, size_t *added,
		 struct err *e)
{
	return jobq_enqueue_page(q, jobs, n, NULL, NULL, added, e);
}

/* ----- claiming and ending ----- */

int jobq_claim(struct jobq *q, const struct jobq_filter *f, struct jobq_job *job, struct err *e)
{
	char name[OWNER_MAX];
	struct jobq_lease lease = { .owner = name };
	struct owner self;
	int64_t now;
	int r;

	memset(job, 0, sizeof(*job));
	if (!f->lease_ms)
		return err_set(e, ERR_INTERNAL, "a claim needs a lease");
	if (self_owner(&self, e) < 0 || lease_token(&lease.token, e) < 0)
		return -1;
	snprintf(name, sizeof(name), OWNER_FMT, self.pid, self.start, self.pidns, self.boot,
		 self.host);
	pthread_mutex_lock(&q->mu);
	/* Before looking: whatever commits after this wakes the next jobq_wait(). */
	see(q, &seen);
	now = jobq_now_ms();
	lease.until_ms = now + f->lease_ms;
	r = q->ops->claim(q->b, f->handlers, f->busy_handlers, now, &lease, job, e);
	pthread_mutex_unlock(&q->mu);
	return r;
}

static int lease_lost(const struct jobq_job *job, struct err *e)
{
	return err_set(e, ERR_CONFLICT, "job %" PRId64 ": lease lost", job->id);
}

int jobq_renew(struct jobq *q, const struct jobq_job *job, uint32_t lease_ms, struct err *e)
{
	int r;

	pthread_mutex_lock(&q->mu);
	r = q->ops->renew(q->b, job->id, job->lease_token, jobq_now_ms() + lease_ms, e);
	pthread_mutex_unlock(&q->mu);
	return r > 0 ? 0 : r < 0 ? -1 : lease_lost(job, e);
}

/* An attempt's result with "" for what the caller left NULL (columns are NOT NULL). */
static struct jobq_result result_of(const struct jobq_result *res)
{
	struct jobq_result r = JOBQ_RESULT_INIT;

	if (res)
		r = *res;
	r.error = r.error ? r.error : "";
	r.stdout_tail = r.stdout_tail ? r.stdout_tail : "";
	r.stderr_tail = r.stderr_tail ? r.stderr_tail : "";
	return r;
}

static int end(struct jobq *q, const struct jobq_job *job, enum job_state state, int64_t next_ms,
	       const struct jobq_result *res, enum job_state *out, struct err *e)
{
	struct jobq_result r = result_of(res);
	enum job_state st = state;
	int rc;

	pthread_mutex_lock(&q->mu);
	rc = q->ops->end(q->b, job->id, job->lease_token, state, next_ms, &r, jobq_now_ms(), &st,
			 e);
	pthread_mutex_unlock(&q->mu);
	if (rc <= 0)
		return rc < 0 ? -1 : lease_lost(job, e);
	if (out)
		*out = st;
	/* Its (bucket, key, handler), and its handler's concurrency, are free again. */
	wake_all();
	return 0;
}

int jobq_finish(struct jobq *q, const struct jobq_job *job, enum job_state state,
		const struct jobq_result *res, struct err *e)
{
	if (!job_state_final(state))
		return err_set(e, ERR_INTERNAL, "job %" PRId64 " cannot finish as %s", job->id,
			       job_state_name(state));
	return end(q, job, state, 0, res, NULL, e);
}

int jobq_fail(struct jobq *q, const struct jobq_job *job, uint64_t delay_ms,
	      const struct jobq_result *res, enum job_state *state_out, struct err *e)
{
	if (delay_ms > DELAY_MAX)
		delay_ms = DELAY_MAX;
	return end(q, job, JOB_RETRY, jobq_now_ms() + (int64_t)delay_ms, res, state_out, e);
}

int jobq_release(struct jobq *q, const struct jobq_job *job, struct err *e)
{
	int r;

	pthread_mutex_lock(&q->mu);
	r = q->ops->unlease(q->b, job->id, job->lease_token, 1, jobq_now_ms(), e);
	pthread_mutex_unlock(&q->mu);
	if (r <= 0)
		return r < 0 ? -1 : lease_lost(job, e);
	wake_all();
	return 0;
}

/* Called with q->mu held. */
static int reclaim(struct jobq *q, const struct owner *self, size_t *n, struct err *e)
{
	struct jobq_held *held = NULL;
	size_t i, nheld = 0;
	int r;

	if (q->ops->leases(q->b, &held, &nheld, e) < 0)
		return -1;
	for (i = 0; i < nheld; i++) {
		if (!orphaned(held[i].owner, self))
			continue;
		/* 0: its lease moved on since it was read (claimed again): not an orphan now. */
		r = q->ops->unlease(q->b, held[i].id, held[i].token, 0, jobq_now_ms(), e);
		if (r < 0)
			break;
		*n += (size_t)r;
	}
	jobq_held_free(held, nheld);
	return i < nheld ? -1 : 0;
}

int jobq_reclaim_orphans(struct jobq *q, size_t *n, struct err *e)
{
	struct owner self;
	size_t got = 0;
	int r;

	if (n)
		*n = 0;
	if (self_owner(&self, e) < 0)
		return -1;
	pthread_mutex_lock(&q->mu);
	r = reclaim(q, &self, &got, e);
	pthread_mutex_unlock(&q->mu);
	if (got)
		wake_all();
	if (n)
		*n = got;
	return r;
}

/* ----- listing and operating ----- */

/* Reads one page below *below; 1 when there may be more, 0 at the end (or stopped), -1. */
static int list_page(struct jobq *q, const struct jobq_query *qu, int64_t *below, size_t *left,
		     int (*fn)(void *arg, const struct jobq_job *job), void *arg, struct err *e)
{
	struct jobq_job *page = NULL;
	size_t i, n = 0, want = *left < LIST_PAGE ? *left : LIST_PAGE;
	int r, stop = 0;

	pthread_mutex_lock(&q->mu);
	r = q->ops->list(q->b, qu, *below, want, &page, &n, e);
	pthread_mutex_unlock(&q->mu);
	if (r < 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (!stop)
			stop = fn(arg, &page[i]);
		*below = page[i].id;
		jobq_job_release(&page[i]);
	}
	free(page);
	*left -= n;
	return !stop && n == want && *left > 0;
}

int jobq_list(struct jobq *q, const struct jobq_query *qu,
	      int (*fn)(void *arg, const struct jobq_job *job), void *arg, struct err *e)
{
	size_t left = qu->limit ? qu->limit : SIZE_MAX;
	int64_t below = INT64_MAX;
	int r;

	while ((r = list_page(q, qu, &below, &left, fn, arg, e)) > 0)
		;
	return r;
}

/* ----- summary (on top of jobq_list, for every backend) ----- */

/* One handler's summary being gathered: the runs' wall times for the percentiles. */
struct summing {
	struct jobq_handler_summary s;
	int64_t *walls;
	size_t n_walls, alloc;
	int64_t rss_seen, rss_floor; /* largest measured peak; largest "at most" */
};

struct summary_acc {
	struct summing *v;
	size_t n;
};

static struct summing *summing_of(struct summary_acc *acc, const char *handler)
{
	size_t i;

	for (i = 0; i < acc->n; i++)
		if (!strcmp(acc->v[i].s.handler, handler))
			return &acc->v[i];
	acc->v = xrealloc(acc->v, (acc->n + 1) * sizeof(*acc->v));
	memset(&acc->v[acc->n], 0, sizeof(*acc->v));
	acc->v[acc->n].s.handler = xstrdup(handler);
	return &acc->v[acc->n++];
}

static int summary_add(void *arg, const struct jobq_job *j)
{
	struct summing *h = summing_of(arg, j->handler);

	h->s.jobs++;
	h->s.failures += j->state == JOB_RETRY || j->state == JOB_DEAD;
	if (j->exit_code < 0 && j->signal <= 0)
		return 0; /* the handler did not run in the last attempt */
	h->s.runs++;
	h->s.cpu_user_s += j->cpu_user_s;
	h->s.cpu_sys_s += j->cpu_sys_s;
	if (j->max_rss_kib > h->rss_seen)
		h->rss_seen = j->max_rss_kib;
	if (-j->max_rss_kib > h->rss_floor)
		h->rss_floor = -j->max_rss_kib;
	if (h->n_walls == h->alloc) {
		h->alloc = h->alloc ? 2 * h->alloc : 64;
		h->walls = xrealloc(h->walls, h->alloc * sizeof(*h->walls));
	}
	h->walls[h->n_walls++] = j->wall_ms;
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static int cmp_summary(const void *a, const void *b)
{
	return strcmp(((const struct jobq_handler_summary *)a)->handler,
		      ((const struct jobq_handler_summary *)b)->handler);
}

/* The nearest-rank percentile p (0-100) of n sorted values. */
static int64_t percentile(const int64_t *v, size_t n, unsigned p)
{
	size_t rank = (n * p + 99) / 100;

	return n ? v[rank ? rank - 1 : 0] : 0;
}

static void summing_end(struct summing *h, struct jobq_handler_summary *out)
{
	qsort(h->walls, h->n_walls, sizeof(*h->walls), cmp_i64);
	h->s.wall_p50_ms = percentile(h->walls, h->n_walls, 50);
	h->s.wall_p99_ms = percentile(h->walls, h->n_walls, 99);
	h->s.max_rss_kib = h->rss_seen >= h->rss_floor ? h->rss_seen : -h->rss_floor;
	*out = h->s;
	free(h->walls);
}

int jobq_summary(struct jobq *q, const struct jobq_query *qu, struct jobq_handler_summary **out,
		 size_t *n, struct err *e)
{
	struct summary_acc acc = { NULL, 0 };
	size_t i;
	int r = jobq_list(q, qu, summary_add, &acc, e);

	*out = xcalloc(acc.n ? acc.n : 1, sizeof(**out));
	for (i = 0; i < acc.n; i++)
		summing_end(&acc.v[i], &(*out)[i]);
	*n = acc.n;
	free(acc.v);
	qsort(*out, *n, sizeof(**out), cmp_summary);
	if (r < 0) {
		jobq_summary_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return r;
}

void jobq_summary_free(struct jobq_handler_summary *s, size_t n)
{
	size_t i;

	for (i = 0; s && i < n; i++)
		free(s[i].handler);
	free(s);
}

int jobq_count(struct jobq *q, const struct jobq_query *qu, int64_t counts[8], struct err *e)
{
	int r;

	memset(counts, 0, 8 * sizeof(*counts));
	pthread_mutex_lock(&q->mu);
	r = q->ops->count(q->b, qu, counts, e);
	pthread_mutex_unlock(&q->mu);
	return r;
}

int jobq_retry(struct jobq *q, int64_t id, size_t *n, struct err *e)
{
	size_t got = 0;
	int r;

	pthread_mutex_lock(&q->mu);
	r = q->ops->retry(q->b, id, jobq_now_ms(), &got, e);
	pthread_mutex_unlock(&q->mu);
	if (got)
		wake_all();
	if (n)
		*n = got;
	return r;
}

int jobq_prune(struct jobq *q, uint64_t keep_ms, size_t *n, struct err *e)
{
	size_t got = 0;
	int r;

	if (keep_ms > DELAY_MAX)
		keep_ms = DELAY_MAX;
	pthread_mutex_lock(&q->mu);
	r = q->ops->prune(q->b, jobq_now_ms() - (int64_t)keep_ms, &got, e);
	pthread_mutex_unlock(&q->mu);
	if (n)
		*n = got;
	return r;
}

int jobq_ledger_done(struct jobq *q, const char *bucket, const char *key, const char *version,
		     const char *handler, struct err *e)
{
	int r;

	pthread_mutex_lock(&q->mu);
	r = q->ops->ledger_done(q->b, bucket, key, version ? version : "", handler, e);
	pthread_mutex_unlock(&q->mu);
	return r;
}

int jobq_checkpoint_get(struct jobq *q, const char *id, char **value, struct err *e)
{
	int r;

	*value = NULL;
	pthread_mutex_lock(&q->mu);
	r = q->ops->checkpoint_get(q->b, id, value, e);
	pthread_mutex_unlock(&q->mu);
	return r;
}

int jobq_check_writable(struct jobq *q, struct err *e)
{
	int r;

	pthread_mutex_lock(&q->mu);
	r = q->ops->check_writable(q->b, jobq_now_ms(), e);
	pthread_mutex_unlock(&q->mu);
	return r;
}

int64_t jobq_oldest_pending_ms(struct jobq *q)
{
	int64_t ms = 0;

	pthread_mutex_lock(&q->mu);
	if (q->ops->oldest_pending(q->b, &ms, NULL) < 0)
		ms = 0;
	pthread_mutex_unlock(&q->mu);
	return ms;
}
