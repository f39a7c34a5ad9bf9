#include "core/worker.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/event.h"
#include "core/jobq.h"
#include "core/log.h"
#include "core/run.h"
#include "core/str.h"
#include "core/template.h"
#include "core/units.h"
#include "s3/client.h"
#include "s3/transfer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* A job being run, known to the lease keeper and to stop(). */
struct running {
	struct jobq_job *job;
	const char *handler;
	volatile int cancel; /* the lease was lost, or stop() ran out of grace */
	volatile int ending; /* the job is being ended: the keeper leaves it alone */
	int64_t renew_ms;    /* when the keeper renews its lease next (monotonic) */
	struct running *next;
};

struct worker_pool {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	const struct config *cfg;
	struct jobq *q;
	struct s3_client *s3;
	pthread_t *threads;
	size_t n_threads;
	pthread_t keeper;
	int keeper_started;
	int stopping;
	struct running *running;
	struct worker_stats stats;
	struct worker_handler_stats *hs; /* per handler, in the order first seen */
	size_t n_hs;
};

const double worker_duration_buckets[WORKER_N_BUCKETS] = { 0.05, 0.1, 0.25, 0.5, 1,   2.5,
							   5,	 10,  30,   60,	 120, 300 };

/*
 * A worker's folder, kept from job to job and emptied in between. Making and
 * removing a folder per job cost a block allocation and free each (and, on a
 * file system mounted with `discard`, a synchronous discard): more than the
 * rest of a short job's own work. A slot serves one handler only, and a folder
 * given to a handler's `user` is not kept: a process that escaped its group
 * (setsid) could still write to it, and must not reach another handler's job.
 *
 * The slot's folder is flock()ed while it exists, so that a process that
 * died without removing its slots (SIGKILL, a crash, a power cut) leaves
 * them unlocked: the next serve or reprocess removes them when it starts
 * (sweep_slots()). The kernel drops the lock with its holder, whatever the
 * pid namespace, and a reused pid fools nothing.
 */
struct slot {
	char dir[4096]; /* "" until made */
	char out[4200];
	char *handler; /* whose jobs it serves */
	int lock_fd;   /* the folder, flock()ed; -1 until made */
};

#define SLOT_INIT { .dir = "", .lock_fd = -1 }
#define SLOT_NAME "worker-XXXXXX" /* mkdtemp() fills in the Xs */

/* What one job needs while it runs. */
struct job_run {
	struct worker_pool *p;
	const struct config *cfg;
	const struct handler_conf *h;
	struct jobq_job *job;
	struct running *reg;
	struct slot *slot;
	struct event ev;
	struct s3_object_info info;
	const char *dir;    /* the job's private folder: its worker's slot */
	const char *outdir; /* S3HOOK_OUTPUT_DIR, in the slot */
	char input[4200];   /* S3HOOK_INPUT */
	int depth;	    /* of the source object */
	int removed;	    /* an ObjectRemoved event: nothing to fetch */
	int ran;	    /* the handler program ran (res holds its usage) */
	int64_t rss_kib;    /* its peak RSS as stored (worker_rss_honest) */
	struct run_result res;
	struct buf error; /* one line for the job record */
};

uint64_t worker_backoff_ms(uint64_t base_ms, uint64_t max_ms, int attempts)
{
	uint64_t d = base_ms;
	uint32_t rnd = 0;
	int i;

	for (i = 1; i < attempts && d < max_ms; i++)
		d *= 2;
	if (d > max_ms)
		d = max_ms;
	if (getrandom(&rnd, sizeof(rnd), 0) < 0)
		rnd = (uint32_t)rand();
	/* Anywhere in the upper half, so retries of many jobs spread out. */
	return d / 2 + (d / 2 ? rnd % (d / 2 + 1) : 0);
}

/* ---- the pool's bookkeeping ---------------------------------------------------------- */

static size_t running_count(const struct worker_pool *p, const char *handler)
{
	const struct running *r;
	size_t n = 0;

	for (r = p->running; r; r = r->next)
		n += !strcmp(r->handler, handler);
	return n;
}

/* Handlers whose concurrency is used up (under the lock); NULL-terminated, caller frees. */
static const char **busy_handlers(const struct worker_pool *p)
{
	const struct config *cfg = p->cfg;
	const char **busy = xcalloc(cfg->n_handlers + 1, sizeof(char *));
	size_t i, n = 0;

	for (i = 0; i < cfg->n_handlers; i++) {
		const struct handler_conf *h = &cfg->handlers[i];
		if (h->concurrency > 0 && running_count(p, h->name) >= (size_t)h->concurrency)
			busy[n++] = h->name;
	}
	return busy;
}

static const char **handler_names(const struct config *cfg)
{
	const char **names = xcalloc(cfg->n_handlers + 1, sizeof(char *));
	size_t i;

	for (i = 0; i < cfg->n_handlers; i++)
		names[i] = cfg->handlers[i].name;
	return names;
}

static void unregister(struct worker_pool *p, struct running *reg)
{
	struct running **pp;

	pthread_mutex_lock(&p->lock);
	for (pp = &p->running; *pp; pp = &(*pp)->next) {
		if (*pp == reg) {
			*pp = reg->next;
			break;
		}
	}
	p->stats.running--;
	/*
	 * Only a stop waits for jobs to end. The keeper need not hear of it: it
	 * wakes for the earliest renewal due, and a job that ended has none.
	 * Waking it at every end cost it 60-80 us of CPU per job (/bin/true jobs).
	 */
	if (p->stopping)
		pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
}

/*
 * Claims a job and registers it, under the pool lock so that two threads never
 * both take the last free slot of a handler. 1 claimed, 0 none, -1 error.
 */
static int claim(struct worker_pool *p, struct jobq_job *job, struct running **reg,
		 const struct config **cfg, struct err *e)
{
	struct jobq_filter f = { 0 };
	const char **names, **busy;
	int r;

	pthread_mutex_lock(&p->lock);
	*cfg = p->cfg;
	names = handler_names(p->cfg);
	busy = busy_handlers(p);
	f.handlers = names;
	f.busy_handlers = busy;
	f.lease_ms = (uint32_t)p->cfg->lease_ms;
	r = p->stopping ? 0 : jobq_claim(p->q, &f, job, e);
	if (r == 1) {
		*reg = xcalloc(1, sizeof(**reg));
		(*reg)->job = job;
		(*reg)->handler = job->handler;
		(*reg)->renew_ms = units_mono_ms() + f.lease_ms / 3;
		(*reg)->next = p->running;
		p->running = *reg;
		p->stats.claimed++;
		p->stats.running++;
	}
	pthread_mutex_unlock(&p->lock);
	free(names);
	free(busy);
	return r;
}

/* The counters of a handler, made when first seen (under the lock). */
static struct worker_handler_stats *hstats(struct worker_pool *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->n_hs; i++)
		if (!strcmp(p->hs[i].name, name))
			return &p->hs[i];
	p->hs = xrealloc(p->hs, (p->n_hs + 1) * sizeof(*p->hs));
	memset(&p->hs[p->n_hs], 0, sizeof(*p->hs));
	p->hs[p->n_hs].name = xstrdup(name);
	return &p->hs[p->n_hs++];
}

/* Every configured handler has its counters from the start, zeros included (under the lock). */
static void hstats_config(struct worker_pool *p, const struct config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->n_handlers; i++)
		hstats(p, cfg->handlers[i].name);
}

int64_t worker_rss_honest(long child_max_rss_kib, long self_peak_kib)
{
	if (child_max_rss_kib > self_peak_kib)
		return child_max_rss_kib;
	return -(int64_t)self_peak_kib;
}

static long self_peak_kib(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return ru.ru_maxrss;
}

/* Counts an attempt's end, and what its run cost, for the handler's metrics. */
static void record(struct job_run *jr, int outcome)
{
	struct worker_pool *p = jr->p;
	struct worker_handler_stats *h;
	double s = (double)jr->res.wall_ms / 1000.0;
	size_t i;

	pthread_mutex_lock(&p->lock);
	h = hstats(p, jr->job->handler);
	h->outcomes[outcome]++;
	if (jr->ran) {
		h->runs++;
		for (i = 0; i < WORKER_N_BUCKETS; i++)
			h->duration_le[i] += s <= worker_duration_buckets[i];
		h->duration_sum_s += s;
		h->cpu_user_s += (double)jr->res.user_ms / 1000.0;
		h->cpu_sys_s += (double)jr->res.sys_ms / 1000.0;
		if (jr->rss_kib > h->max_rss_kib)
			h->max_rss_kib = jr->rss_kib;
	}
	pthread_mutex_unlock(&p->lock);
}

static void count(struct worker_pool *p, uint64_t *counter)
{
	pthread_mutex_lock(&p->lock);
	(*counter)++;
	pthread_mutex_unlock(&p->lock);
}

/* ---- steps 1-3: the object ------------------------------------------------------------ */

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* Removes every entry of folder `path` but the one named `keep` (may be NULL); 0 if all went. */
static int empty_dir(const char *path, const char *keep)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char sub[8400];
	int rc = 0;

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    (keep && !strcmp(de->d_name, keep)))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (nftw(sub, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
			rc = -1;
	}
	closedir(d);
	return rc;
}

static void slot_drop(struct slot *sl)
{
	if (sl->dir[0])
		nftw(sl->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	sl->dir[0] = '\0';
	free(sl->handler);
	sl->handler = NULL;
	if (sl->lock_fd >= 0)
		close(sl->lock_fd);
	sl->lock_fd = -1;
}

/*
 * Locks the folder just made at sl->dir. A sweep in another process may have
 * found it unlocked in the moment before, and be removing it (it holds the
 * lock), or have removed it (the path is gone or names another folder):
 * then it is not ours to use. 1 locked, 0 taken away, -1 error.
 */
static int slot_lock(struct slot *sl)
{
	struct stat fst, pst;

	sl->lock_fd = open(sl->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sl->lock_fd < 0)
		return errno == ENOENT ? 0 : -1;
	if (flock(sl->lock_fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? 0 : -1;
	if (fstat(sl->lock_fd, &fst) < 0)
		return -1;
	if (lstat(sl->dir, &pst) < 0)
		return errno == ENOENT ? 0 : -1;
	return fst.st_dev == pst.st_dev && fst.st_ino == pst.st_ino;
}

/* Whether `path` is still the folder we made: a real directory of ours, mode 0700. */
static int ours(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
	       (st.st_mode & 07777) == 0700;
}

/*
 * After a job: the slot emptied for the next, or dropped when it cannot be
 * trusted to be empty and ours (a handler may chmod, replace or fill it).
 */
static void slot_reset(struct slot *sl, int given_away)
{
	if (!sl->dir[0])
		return;
	if (given_away || !ours(sl->dir) || !ours(sl->out) || empty_dir(sl->dir, "out") < 0 ||
	    empty_dir(sl->out, NULL) < 0)
		slot_drop(sl);
}

/* The slot for a job of `handler` under `workdir`: made unless the last one fits. */
static int slot_get(struct slot *sl, const char *workdir, const char *handler, struct err *e)
{
	size_t n = strlen(workdir);
	int len;

	if (sl->dir[0] && (strncmp(sl->dir, workdir, n) != 0 || sl->dir[n] != '/' ||
			   strcmp(sl->handler, handler) != 0))
		slot_drop(sl);
	if (sl->dir[0])
		return 0;
	for (;;) {
		int r;
		len = snprintf(sl->dir, sizeof(sl->dir), "%s/" SLOT_NAME, workdir);
		if (len < 0 || (size_t)len >= sizeof(sl->dir)) {
			sl->dir[0] = '\0';
			return err_set(e, ERR_CONFIG, "workdir '%s' is too long", SHORT(workdir));
		}
		if (!mkdtemp(sl->dir)) {
			sl->dir[0] = '\0';
			return err_sys(e, ERR_IO, "cannot create a folder in '%s'", SHORT(workdir));
		}
		if ((r = slot_lock(sl)) > 0)
			break;
		if (r < 0) {
			err_sys(e, ERR_IO, "cannot lock '%s'", SHORT(sl->dir));
			slot_drop(sl);
			return -1;
		}
		/* A sweep in another process has it: leave it to the sweep. */
		sl->dir[0] = '\0';
		slot_drop(sl);
	}
	snprintf(sl->out, sizeof(sl->out), "%s/out", sl->dir);
	sl->handler = xstrdup(handler);
	if (mkdir(sl->out, 0700) < 0) {
		err_sys(e, ERR_IO, "cannot create '%s'", SHORT(sl->out));
		slot_drop(sl);
		return -1;
	}
	return 0;
}

static int make_dirs(struct job_run *jr, struct err *e)
{
	const char *ext = strrchr(jr->ev.key, '.');

	if (slot_get(jr->slot, jr->cfg->workdir, jr->job->handler, e) < 0)
		return -1;
	jr->dir = jr->slot->dir;
	jr->outdir = jr->slot->out;
	/* Keep a short, safe extension: some tools go by the file name. */
	if (!ext || strchr(ext, '/') || strlen(ext) > 10 ||
	    strspn(ext + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") !=
		    strlen(ext + 1))
		ext = "";
	snprintf(jr->input, sizeof(jr->input), "%s/input%s", jr->dir, ext);
	if (jr->h->uid >= 0 && (chown(jr->dir, (uid_t)jr->h->uid, (gid_t)jr->h->gid) < 0 ||
				chown(jr->outdir, (uid_t)jr->h->uid, (gid_t)jr->h->gid) < 0))
		return err_sys(e, ERR_IO, "cannot give '%s' to user '%s'", SHORT(jr->dir),
			       SHORT(jr->h->user));
	return 0;
}

/* HEAD, or GET into the input file, with If-Match on the event's ETag. */
static int fetch(struct job_run *jr, struct err *e)
{
	struct s3_get_opts o = { .if_match = jr->ev.etag };
	int fd, r;

	if (!jr->h->download)
		return s3_head_object(jr->p->s3, jr->ev.bucket, jr->ev.key, &o, &jr->info, e);
	fd = open(jr->input, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_sys(e, ERR_IO, "cannot create '%s'", SHORT(jr->input));
	r = s3_get_object(jr->p->s3, jr->ev.bucket, jr->ev.key, fd, &o, &jr->info, e);
	if (close(fd) < 0 && r == 0)
		r = err_sys(e, ERR_IO, "cannot write '%s'", SHORT(jr->input));
	if (r == 0 && jr->h->uid >= 0 &&
	    chown(jr->input, (uid_t)jr->h->uid, (gid_t)jr->h->gid) < 0)
		r = err_sys(e, ERR_IO, "cannot give '%s' to the handler's user", SHORT(jr->input));
	return r;
}

/* The checks that need the object; a reason (static) when the job is to be skipped. */
static const char *object_checks(struct job_run *jr)
{
	char v[64];
	int d;

	if (s3_object_info_meta(&jr->info, "s3hook-handler", v, sizeof(v)) &&
	    !strcmp(v, jr->h->name))
		return "loop guard: the object was made by this handler";
	if (s3_object_info_meta(&jr->info, "s3hook-depth", v, sizeof(v)) &&
	    str_to_int(v, 0, 1000000, &d) == 0)
		jr->depth = d;
	if (jr->depth > jr->cfg->max_depth)
		return "max_depth: the object was made by too long a chain of handlers";
	if (jr->h->content_type && !template_glob(jr->h->content_type, jr->info.content_type))
		return "content_type does not match";
	return NULL;
}

/* ---- step 4: the handler ----------------------------------------------------------------- */

static int build_env(struct job_run *jr, struct run_vec *env, struct err *e)
{
	char size[32], attempt[16];
	size_t i;

	snprintf(size, sizeof(size), "%llu",
		 (unsigned long long)(jr->removed ? jr->ev.size : jr->info.size));
	snprintf(attempt, sizeof(attempt), "%d", jr->job->attempts);
	if (run_env_base(env, e) < 0 ||
	    run_env_set(env, "S3HOOK_INPUT", jr->h->download && !jr->removed ? jr->input : "", e) ||
	    run_env_set(env, "S3HOOK_OUTPUT_DIR", jr->outdir, e) ||
	    run_env_set(env, "S3HOOK_BUCKET", jr->ev.bucket, e) ||
	    run_env_set(env, "S3HOOK_KEY", jr->ev.key, e) ||
	    run_env_set(env, "S3HOOK_EVENT", jr->ev.name, e) ||
	    run_env_set(env, "S3HOOK_SIZE", size, e) ||
	    run_env_set(env, "S3HOOK_ETAG", jr->removed ? jr->ev.etag : jr->info.etag, e) ||
	    run_env_set(env, "S3HOOK_CONTENT_TYPE", jr->info.content_type, e) ||
	    run_env_set(env, "S3HOOK_HANDLER", jr->h->name, e) ||
	    run_env_set(env, "S3HOOK_ATTEMPT", attempt, e))
		return -1;
	for (i = 0; i < jr->h->env.n; i++) {
		const char *kv = jr->h->env.v[i], *eq = strchr(kv, '=');
		char name[256];
		if (!eq) {
			if (run_env_pass(env, kv, e) < 0)
				return -1;
			continue;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(eq - kv), kv);
		if (run_env_set(env, name, eq + 1, e) < 0)
			return -1;
	}
	return 0;
}

static int run_handler(struct job_run *jr, struct err *e)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_vec env = RUN_VEC_INIT;
	struct buf in = BUF_INIT;
	int r = -1;

	jr->ev.depth = jr->depth;
	if (build_env(jr, &env, e) < 0 || event_to_json(&jr->ev, &in, e) < 0)
		goto out;
	cmd.path = jr->h->path;
	cmd.argv = jr->h->argv.v;
	cmd.envp = env.v;
	cmd.cwd = jr->dir;
	cmd.stdin_data = in.data;
	cmd.stdin_len = in.len;
	cmd.timeout_ms = (unsigned)jr->h->timeout_ms;
	cmd.grace_ms = (unsigned)jr->h->grace_ms;
	cmd.limits.cpu_s = (jr->h->cpu_s + 999) / 1000;
	cmd.limits.as_bytes = jr->h->address_space;
	cmd.limits.nofile = (uint64_t)jr->h->nofile;
	cmd.limits.fsize_bytes = jr->h->fsize;
	cmd.uid = jr->h->uid;
	cmd.gid = jr->h->gid;
	cmd.out_cap = cmd.err_cap = (size_t)jr->h->output_tail;
	cmd.cancel = &jr->reg->cancel;
	r = run_cmd(&cmd, &jr->res, e);
	if (r == 0) {
		jr->ran = 1;
		/* Read after the run: the floor the child inherited is at most this. */
		jr->rss_kib = worker_rss_honest(jr->res.max_rss_kib, self_peak_kib());
	}
out:
	run_vec_release(&env);
	buf_release(&in);
	return r;
}

/* ---- step 5: outputs --------------------------------------------------------------------- */

static int by_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The regular files the handler left (symlinks and anything else ignored),
 * sorted; -1 when `dir` is no longer a real folder: a handler that swapped it
 * for a symlink would otherwise have us upload what it points to.
 */
static ssize_t list_outputs(const char *dir, char ***names, struct err *e)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;
	struct stat st;
	size_t k = 0;

	*names = NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return err_sys(e, ERR_IO, "the output folder is no longer a folder");
	}
	while ((de = readdir(d))) {
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
			*names = xrealloc(*names, (k + 1) * sizeof(char *));
			(*names)[k++] = xstrdup(de->d_name);
		}
	}
	closedir(d);
	if (k)
		qsort(*names, k, sizeof(char *), by_strcmp);
	return (ssize_t)k;
}

static int upload_outputs(struct job_run *jr, struct err *e)
{
	struct s3_upload_opts o = S3_UPLOAD_OPTS_INIT;
	struct s3_upload_item *items = NULL;
	struct buf src = BUF_INIT, depth = BUF_INIT, bucket = BUF_INIT;
	struct template_vars v = { jr->ev.bucket, jr->ev.key, NULL, jr->h->name };
	const char *meta[7];
	char **names, **paths;
	ssize_t listed = list_outputs(jr->outdir, &names, e);
	size_t n = listed > 0 ? (size_t)listed : 0, i, failed = 0;
	int r = -1;

	if (listed < 0)
		return -1;
	if (n && !jr->h->output) {
		log_warn("handler left outputs but has no output template; ignored", "job=%lld handler=%s files=%zu",
			 (long long)jr->job->id, jr->h->name, n);
		n = 0;
	}
	paths = xcalloc(n + 1, sizeof(char *));
	items = xcalloc(n + 1, sizeof(*items));
	buf_addf(&src, "%s/", jr->ev.bucket);
	str_pct_encode(&src, jr->ev.key, strlen(jr->ev.key), 1);
	buf_addf(&depth, "%d", jr->depth + 1);
	meta[0] = "s3hook-handler", meta[1] = jr->h->name, meta[2] = "s3hook-source";
	meta[3] = src.data, meta[4] = "s3hook-depth", meta[5] = depth.data, meta[6] = NULL;
	for (i = 0; i < n; i++) {
		struct buf key = BUF_INIT;
		buf_reset(&bucket);
		v.file = names[i];
		if (template_expand(jr->h->output, &v, &bucket, &key, e) < 0)
			goto out;
		if (asprintf(&paths[i], "%s/%s", jr->outdir, names[i]) < 0)
			abort();
		items[i].path = paths[i];
		items[i].bucket = xstrdup(bucket.data);
		items[i].key = buf_detach(&key, NULL);
	}
	o.concurrency = 2;
	o.metadata = meta;
	failed = n ? s3_upload_files(jr->p->s3, items, n, &o) : 0;
	for (i = 0; i < n && failed; i++)
		if (!items[i].done)
			err_set(e, items[i].err.code, "output '%s': %s", SHORT(names[i]),
				items[i].err.msg);
	r = failed ? -1 : 0;
out:
	for (i = 0; i < n; i++) {
		free(names[i]);
		free(paths[i]);
		free((char *)items[i].bucket);
		s3_upload_item_release(&items[i]);
	}
	free(names);
	free(paths);
	free(items);
	buf_release(&src);
	buf_release(&depth);
	buf_release(&bucket);
	return r;
}

/* ---- step 6: ending the job ------------------------------------------------------------- */

static void fill_result(const struct job_run *jr, struct jobq_result *res)
{
	res->exit_code = jr->res.exited ? jr->res.exit_code : -1;
	res->signal = jr->res.signal;
	res->error = jr->error.data;
	res->stdout_tail = jr->res.out.data;
	res->stderr_tail = jr->res.err.data;
	res->cpu_user_s = (double)jr->res.user_ms / 1000.0;
	res->cpu_sys_s = (double)jr->res.sys_ms / 1000.0;
	res->max_rss_kib = jr->rss_kib;
	res->wall_ms = (int64_t)jr->res.wall_ms;
}

static const char *end_job(struct job_run *jr, enum job_state state, int failed)
{
	struct jobq_result res = JOBQ_RESULT_INIT;
	struct worker_pool *p = jr->p;
	enum job_state final = state;
	struct err e = ERR_INIT;
	int r;

	fill_result(jr, &res);
	jr->reg->ending = 1;
	if (jr->reg->cancel && p->stopping) {
		r = jobq_release(p->q, jr->job, &e);
		final = JOB_PENDING;
		count(p, &p->stats.released);
	} else if (failed) {
		uint64_t d = worker_backoff_ms(jr->h->backoff_ms, jr->h->backoff_max_ms,
					       jr->job->attempts);
		r = jobq_fail(p->q, jr->job, d, &res, &final, &e);
	} else {
		r = jobq_finish(p->q, jr->job, state, &res, &e);
	}
	if (r < 0) {
		log_warn("cannot record the job's end", "job=%lld handler=%s error=%s",
			 (long long)jr->job->id, jr->job->handler, e.msg);
		record(jr, WORKER_LOST);
		return "lost";
	}
	record(jr, (int)final);
	count(p, final == JOB_DONE	    ? &p->stats.done
		 : final == JOB_RETRY	    ? &p->stats.retried
		 : final == JOB_DEAD	    ? &p->stats.dead
		 : final == JOB_PENDING ? &p->stats.released
					    : &p->stats.skipped);
	return job_state_name(final);
}

/* A failure before or after the handler (S3, disk): retried like a temporary failure. */
static const char *fail_job(struct job_run *jr, const struct err *e)
{
	buf_reset(&jr->error);
	buf_adds(&jr->error, e->msg);
	if (e->code == ERR_NOTFOUND)
		return end_job(jr, JOB_GONE, 0);
	if (e->code == ERR_CONFLICT)
		return end_job(jr, JOB_SUPERSEDED, 0);
	return end_job(jr, JOB_RETRY, 1);
}

/* Steps 4-6 once the object is here: run, judge the exit, upload. */
static const char *run_and_judge(struct job_run *jr)
{
	struct err e = ERR_INIT;
	char how[128];

	if (run_handler(jr, &e) < 0)
		return fail_job(jr, &e);
	run_result_str(&jr->res, how, sizeof(how));
	if (jr->res.exited && jr->res.exit_code == 0) {
		if (upload_outputs(jr, &e) < 0) {
			/* Even a 404 here (no such output bucket) is worth retrying. */
			buf_adds(&jr->error, e.msg);
			return end_job(jr, JOB_RETRY, 1);
		}
		return end_job(jr, JOB_DONE, 0);
	}
	buf_adds(&jr->error, how);
	if (jr->res.exited && jr->res.exit_code == 65) /* EX_DATAERR: retrying cannot help */
		return end_job(jr, JOB_DEAD, 0);
	return end_job(jr, JOB_RETRY, 1);
}

static const char *process(struct job_run *jr)
{
	struct err e = ERR_INIT;
	const char *why;

	if (!jr->h) {
		buf_adds(&jr->error, "no such handler here");
		return end_job(jr, JOB_RETRY, 1);
	}
	if (event_from_json(jr->job->event_json, strlen(jr->job->event_json), &jr->ev, &e) < 0) {
		buf_addf(&jr->error, "bad stored event: %s", e.msg);
		return end_job(jr, JOB_DEAD, 0);
	}
	jr->depth = jr->ev.depth;
	jr->removed = str_starts_with(jr->ev.name, "s3:ObjectRemoved");
	if (make_dirs(jr, &e) < 0 || (!jr->removed && fetch(jr, &e) < 0))
		return fail_job(jr, &e);
	if (!jr->removed && (why = object_checks(jr))) {
		buf_adds(&jr->error, why);
		return end_job(jr, JOB_SKIPPED, 0);
	}
	return run_and_judge(jr);
}

static void run_job(struct worker_pool *p, const struct config *cfg, struct jobq_job *job,
		    struct running *reg, struct slot *slot)
{
	struct job_run jr = { .p = p, .cfg = cfg, .job = job, .reg = reg, .slot = slot };
	const char *outcome;

	jr.h = config_handler(cfg, job->handler);
	jr.info = (struct s3_object_info)S3_OBJECT_INFO_INIT;
	jr.res = (struct run_result)RUN_RESULT_INIT;
	jr.error = (struct buf)BUF_INIT;
	buf_init_cap(&jr.error, 2000);
	outcome = process(&jr);
	log_info("job ended",
		 "job=%lld handler=%s bucket=%s key=%s attempt=%d outcome=%s ms=%llu cpu_ms=%llu "
		 "rss_kib=%lld error=%s",
		 (long long)job->id, job->handler, job->bucket, job->key, job->attempts, outcome,
		 (unsigned long long)jr.res.wall_ms,
		 (unsigned long long)(jr.res.user_ms + jr.res.sys_ms), (long long)jr.rss_kib,
		 jr.error.data);
	slot_reset(slot, jr.h && jr.h->uid >= 0);
	event_release(&jr.ev);
	s3_object_info_release(&jr.info);
	run_result_release(&jr.res);
	buf_release(&jr.error);
}

/* ---- threads ------------------------------------------------------------------------------ */

static void *worker_main(void *arg)
{
	struct worker_pool *p = arg;
	struct slot slot = SLOT_INIT;
	unsigned errors = 0;

	pthread_setname_np(pthread_self(), "worker");
	for (;;) {
		struct jobq_job job = { 0 };
		const struct config *cfg;
		struct running *reg = NULL;
		struct err e = ERR_INIT;
		int r;

		pthread_mutex_lock(&p->lock);
		r = p->stopping;
		pthread_mutex_unlock(&p->lock);
		if (r)
			break;
		r = claim(p, &job, &reg, &cfg, &e);
		if (r < 0) {
			/* Say it once, then every 60th time: the queue may be down for a while. */
			if (errors++ % 60 == 0)
				log_error("cannot claim a job", "error=%s", e.msg);
			jobq_wait(p->q, 1000);
			continue;
		}
		errors = 0;
		if (r == 0) {
			jobq_wait(p->q, 1000);
			continue;
		}
		run_job(p, cfg, &job, reg, &slot);
		unregister(p, reg);
		free(reg);
		jobq_job_release(&job);
	}
	slot_drop(&slot);
	return NULL;
}

/* Waits (under p->lock) for p->changed, or ms at most. */
static void wait_changed(struct worker_pool *p, int64_t ms)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&p->changed, &p->lock, &until);
}

/*
 * Renews the lease of each running job a third of a lease after its claim or
 * last renewal; cancels the jobs whose lease was lost. Only jobs that are due:
 * renewing every running job whenever any job ended cost a write transaction
 * per job, and held the pool lock that claims wait for.
 */
static void *keeper_main(void *arg)
{
	struct worker_pool *p = arg;

	pthread_setname_np(pthread_self(), "lease-keeper");
	pthread_mutex_lock(&p->lock);
	while (!p->stopping || p->running) {
		uint32_t lease = (uint32_t)p->cfg->lease_ms;
		int64_t now = units_mono_ms(), next = now + lease / 3;
		struct running *r;

		for (r = p->running; r; r = r->next) {
			struct err e = ERR_INIT;
			if (r->renew_ms > now) {
				next = r->renew_ms < next ? r->renew_ms : next;
				continue;
			}
			r->renew_ms = now + lease / 3;
			if (r->cancel || r->ending || jobq_renew(p->q, r->job, lease, &e) == 0 ||
			    r->ending)
				continue;
			if (e.code == ERR_CONFLICT) {
				/* Another worker has it now: running it twice helps no one. */
				log_warn("lease lost; stopping the handler", "job=%lld handler=%s",
					 (long long)r->job->id, r->handler);
				r->cancel = 1;
			} else {
				log_warn("cannot renew a lease", "job=%lld error=%s",
					 (long long)r->job->id, e.msg);
			}
		}
		wait_changed(p, next - now);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct worker_pool *worker_pool_new(const struct config *cfg, struct jobq *q,
				    struct s3_client *s3, struct err *e)
{
	struct worker_pool *p;

	if (mkdir(cfg->workdir, 0700) < 0 && errno != EEXIST) {
		err_sys(e, ERR_IO, "cannot create workdir '%s'", SHORT(cfg->workdir));
		return NULL;
	}
	p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->changed, NULL);
	p->cfg = cfg;
	p->q = q;
	p->s3 = s3;
	hstats_config(p, cfg);
	return p;
}

/*
 * Removes the job folders (worker-XXXXXX) that no live process holds: the
 * slots of a process that died without removing them, with whatever its
 * jobs had downloaded.
 */
static void sweep_slots(const char *workdir)
{
	DIR *d = opendir(workdir);
	struct dirent *de;
	char path[8400];
	size_t n = 0, failed = 0;

	if (!d)
		return;
	while ((de = readdir(d))) {
		int fd;
		if (strncmp(de->d_name, SLOT_NAME, 7) != 0 ||
		    strlen(de->d_name) != sizeof(SLOT_NAME) - 1)
			continue;
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			snprintf(path, sizeof(path), "%s/%s", workdir, de->d_name);
			if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0)
				n++;
			else
				failed++;
		}
		close(fd);
	}
	closedir(d);
	if (n || failed)
		log_info("removed job folders a process that ended had left",
			 "workdir=%s removed=%zu failed=%zu", workdir, n, failed);
}

int worker_pool_start(struct worker_pool *p, struct err *e)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = p->cfg->workers > 0 ? (size_t)p->cfg->workers : (size_t)(cpus > 0 ? cpus : 1);

	sweep_slots(p->cfg->workdir);
	p->threads = xcalloc(n, sizeof(pthread_t));
	if (pthread_create(&p->keeper, NULL, keeper_main, p) != 0)
		return err_set(e, ERR_INTERNAL, "cannot start the lease keeper thread");
	p->keeper_started = 1;
	for (p->n_threads = 0; p->n_threads < n; p->n_threads++)
		if (pthread_create(&p->threads[p->n_threads], NULL, worker_main, p) != 0)
			return err_set(e, ERR_INTERNAL, "cannot start worker thread %zu", p->n_threads);
	return 0;
}

void worker_pool_stop(struct worker_pool *p, uint64_t grace_ms)
{
	struct timespec until;
	struct running *r;
	size_t i;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)(grace_ms / 1000);
	until.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->changed);
	while (p->running && pthread_cond_timedwait(&p->changed, &p->lock, &until) == 0)
		;
	for (r = p->running; r; r = r->next)
		r->cancel = 1; /* out of grace: kill the handlers, release the jobs */
	pthread_mutex_unlock(&p->lock);
	jobq_wake(p->q);
	for (i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	p->n_threads = 0;
	if (p->keeper_started) {
		pthread_mutex_lock(&p->lock);
		pthread_cond_broadcast(&p->changed);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->keeper, NULL);
		p->keeper_started = 0;
	}
}

void worker_pool_free(struct worker_pool *p)
{
	if (!p)
		return;
	worker_pool_stop(p, 0);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->changed);
	worker_handler_stats_free(p->hs, p->n_hs);
	free(p->threads);
	free(p);
}

void worker_pool_set_config(struct worker_pool *p, const struct config *cfg)
{
	pthread_mutex_lock(&p->lock);
	p->cfg = cfg;
	hstats_config(p, cfg);
	/* A shorter lease makes the next claims' renewals due before the keeper's next wake. */
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
}

void worker_pool_stats(struct worker_pool *p, struct worker_stats *out)
{
	pthread_mutex_lock(&p->lock);
	*out = p->stats;
	pthread_mutex_unlock(&p->lock);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct worker_handler_stats *)a)->name,
		      ((const struct worker_handler_stats *)b)->name);
}

size_t worker_pool_handler_stats(struct worker_pool *p, struct worker_handler_stats **out)
{
	size_t i, n;

	pthread_mutex_lock(&p->lock);
	n = p->n_hs;
	*out = xcalloc(n ? n : 1, sizeof(**out));
	for (i = 0; i < n; i++) {
		(*out)[i] = p->hs[i];
		(*out)[i].name = xstrdup(p->hs[i].name);
	}
	pthread_mutex_unlock(&p->lock);
	qsort(*out, n, sizeof(**out), by_name);
	return n;
}

void worker_handler_stats_free(struct worker_handler_stats *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(s[i].name);
	free(s);
}
