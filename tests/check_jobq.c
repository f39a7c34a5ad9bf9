/*
 * Unit tests of the job queue, on real SQLite files in a fresh directory
 * under $TMPDIR (a real disk, so fsync and WAL behave as in production).
 * Tests that need other processes fork children that open their own
 * handles and report through their exit status, never through Check.
 */
#include "tests/testutil.h"

#include "core/err.h"
#include "core/jobq.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *dir;
static char path[4096];

static void setup(void)
{
	dir = test_tmpdir();
	snprintf(path, sizeof(path), "%s/queue.db", dir);
}

static void teardown(void)
{
	test_rmtree(dir);
	free(dir);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static struct jobq *open_q(enum jobq_flags flags)
{
	struct err e = ERR_INIT;
	struct jobq *q = jobq_open(path, flags, &e);

	ck_assert_msg(q != NULL, "open: %s", e.msg);
	return q;
}

/* A job for bucket "bkt", ETag "etag1", three attempts; callers change what they need. */
static struct jobq_new job_new(const char *handler, const char *key, const char *sequencer)
{
	struct jobq_new j = {
		.handler = handler,
		.bucket = "bkt",
		.key = key,
		.version_id = "",
		.etag = "etag1",
		.sequencer = sequencer,
		.event_name = "s3:ObjectCreated:Put",
		.event_json = "{\"version\":1}",
		.max_attempts = 3,
	};
	return j;
}

static size_t add_job(struct jobq *q, struct jobq_new j)
{
	struct err e = ERR_INIT;
	size_t added = 99;

	ck_assert_msg(jobq_enqueue(q, &j, 1, &added, &e) == 0, "enqueue: %s", e.msg);
	return added;
}

static void add(struct jobq *q, const char *handler, const char *key, int priority)
{
	struct jobq_new j = job_new(handler, key, "");

	j.priority = priority;
	ck_assert_uint_eq(add_job(q, j), 1);
}

static const char *const both[] = { "thumb", "text", NULL };

static int claim_f(struct jobq *q, const char *const *handlers, const char *const *busy,
		   uint32_t lease_ms, struct jobq_job *job)
{
	struct jobq_filter f = { handlers, busy, lease_ms };
	struct err e = ERR_INIT;
	int r = jobq_claim(q, &f, job, &e);

	ck_assert_msg(r >= 0, "claim: %s", e.msg);
	return r;
}

static int claim(struct jobq *q, struct jobq_job *job)
{
	return claim_f(q, both, NULL, 30000, job);
}

/* Claims the next job, which must exist and have this key. */
static void claim_key(struct jobq *q, const char *key, struct jobq_job *job)
{
	ck_assert_int_eq(claim(q, job), 1);
	ck_assert_str_eq(job->key, key);
}

static void finish(struct jobq *q, const struct jobq_job *job, enum job_state state)
{
	struct jobq_result res = JOBQ_RESULT_INIT;
	struct err e = ERR_INIT;

	res.exit_code = 0;
	ck_assert_msg(jobq_finish(q, job, state, &res, &e) == 0, "finish: %s", e.msg);
}

/* The scalar fields of one job as it is stored now. */
struct snap {
	int found;
	enum job_state state;
	int attempts, exit_code, signal;
	int64_t next_ms, token, max_rss_kib, wall_ms;
	double cpu_user_s;
	char last_error[64], stdout_tail[64], stderr_tail[64];
};

static int snap_one(void *arg, const struct jobq_job *job)
{
	struct snap *s = arg;

	s->found++;
	s->state = job->state;
	s->attempts = job->attempts;
	s->exit_code = job->exit_code;
	s->signal = job->signal;
	s->next_ms = job->next_ms;
	s->token = job->lease_token;
	s->max_rss_kib = job->max_rss_kib;
	s->wall_ms = job->wall_ms;
	s->cpu_user_s = job->cpu_user_s;
	snprintf(s->last_error, sizeof(s->last_error), "%s", job->last_error);
	snprintf(s->stdout_tail, sizeof(s->stdout_tail), "%s", job->stdout_tail);
	snprintf(s->stderr_tail, sizeof(s->stderr_tail), "%s", job->stderr_tail);
	return 0;
}

static struct snap get(struct jobq *q, int64_t id)
{
	struct jobq_query qu = JOBQ_QUERY_INIT;
	struct snap s = { 0 };
	struct err e = ERR_INIT;

	qu.id = id;
	ck_assert_msg(jobq_list(q, &qu, snap_one, &s, &e) == 0, "list: %s", e.msg);
	ck_assert_int_eq(s.found, 1);
	return s;
}

static int64_t count_state(struct jobq *q, int state)
{
	struct jobq_query qu = JOBQ_QUERY_INIT;
	struct err e = ERR_INIT;
	int64_t counts[8];

	ck_assert_msg(jobq_count(q, &qu, counts, &e) == 0, "count: %s", e.msg);
	if (state >= 0)
		return counts[state];
	return counts[0] + counts[1] + counts[2] + counts[3] + counts[4] + counts[5] + counts[6] +
	       counts[7];
}

/* Runs SQL straight on the file, as an operator (or another version) might. */
static void raw_sql(const char *file, const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;

	ck_assert_int_eq(sqlite3_open(file, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql, msg);
	sqlite3_close(db);
}

/* The query's rows, each column followed by '|', rows by '\n', into out. */
static void raw_rows(const char *file, const char *sql, char *out, size_t size)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	size_t len = 0;
	int i;

	out[0] = '\0';
	ck_assert_int_eq(sqlite3_open(file, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		for (i = 0; i < sqlite3_column_count(st); i++) {
			const unsigned char *t = sqlite3_column_text(st, i);
			len += (size_t)snprintf(out + len, size - len, "%s|", t ? (const char *)t : "");
			ck_assert_uint_lt(len, size);
		}
		len += (size_t)snprintf(out + len, size - len, "\n");
		ck_assert_uint_lt(len, size);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static int wait_child(pid_t pid)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * A child process that runs fn(arg) once child_go() lets it. Tests fork
 * before they open a queue: the PostgreSQL queue has a listening thread, and
 * a fork while that thread is in malloc() leaves the child's allocator locked
 * for good under GCC 12's ASan, which has no fork handler for it.
 */
struct child {
	pid_t pid;
	int go;
};

static struct child child_start(int (*fn)(int), int arg)
{
	struct child c;
	int fds[2];
	char b;

	ck_assert_int_eq(pipe(fds), 0);
	c.pid = fork();
	ck_assert_int_ge(c.pid, 0);
	if (c.pid == 0) {
		close(fds[1]);
		_exit(read(fds[0], &b, 1) == 1 ? fn(arg) : 9);
	}
	close(fds[0]);
	c.go = fds[1];
	return c;
}

static void child_go(struct child *c)
{
	ck_assert_int_eq(write(c->go, "g", 1), 1);
	close(c->go);
	c->go = -1;
}

/*
 * Another process (s3hook jobs) opening and closing the queue while serve has
 * it open twice (listener and workers) must not lose what serve commits after.
 * A second open in one process once did open()+close() on the file, which
 * dropped every POSIX lock the process held on it: the other process then
 * believed it was the last user, checkpointed and deleted the WAL under us.
 */
/* Counts the jobs with the sqlite3 program: another process, with no state of ours. */
static int count_outside(void)
{
	char cmd[4500], out[64] = "";
	FILE *p;

	snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'SELECT count(*) FROM jobs;' 2>&1", path);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(fgets(out, sizeof(out), p));
	pclose(p);
	return (int)strtol(out, NULL, 10);
}

START_TEST(second_handle_keeps_the_locks)
{
	struct jobq *q1 = open_q(JOBQ_INGEST), *q2;
	char wal[4200];

	add_job(q1, job_new("thumb", "before", ""));
	q2 = open_q(0);
	ck_assert_int_eq(count_outside(), 1);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	ck_assert_msg(access(wal, F_OK) == 0, "the WAL was deleted while the queue is open");
	add_job(q1, job_new("thumb", "after", ""));
	ck_assert_msg(count_outside() == 2, "another process does not see the second job");
	jobq_close(q2);
	jobq_close(q1);
}
END_TEST

/* ----- adding ----- */

START_TEST(enqueue_dedupes)
{
	struct jobq *q = open_q(JOBQ_INGEST);
	struct jobq_new batch[3];
	struct err e = ERR_INIT;
	size_t added;

	ck_assert_uint_eq(add_job(q, job_new("thumb", "a.jpg", "s1")), 1);
	/* The same notification again adds nothing. */
	ck_assert_uint_eq(add_job(q, job_new("thumb", "a.jpg", "s1")), 0);
	/* Another sequencer, handler, or ETag is another job. */
	ck_assert_uint_eq(add_job(q, job_new("thumb", "a.jpg", "s2")), 1);
	ck_assert_uint_eq(add_job(q, job_new("text", "a.jpg", "s1")), 1);
	batch[0] = job_new("thumb", "a.jpg", "s1");
	batch[0].etag = "etag2";
	/* With a version id, the version id is the key and the ETag does not count. */
	batch[1] = job_new("thumb", "v.jpg", "s1");
	batch[1].version_id = "v1";
	batch[2] = batch[1];
	batch[2].etag = "etag2";
	ck_assert_msg(jobq_enqueue(q, batch, 3, &added, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(added, 2);
	ck_assert_int_eq(count_state(q, JOB_PENDING), 5);
	ck_assert_int_eq(count_state(q, -1), 5);
	jobq_close(q);
}
END_TEST

START_TEST(enqueue_refuses_bad_jobs_whole)
{
	struct jobq *q = open_q(0);
	struct jobq_new batch[2] = { job_new("thumb", "a", ""), job_new("thumb", "", "") };
	struct err e = ERR_INIT;
	size_t added = 7;

	ck_assert_int_eq(jobq_enqueue(q, batch, 2, &added, &e), -1);
	ck_assert_uint_eq(added, 0);
	ck_assert_ptr_nonnull(strstr(e.msg, "no key"));
	batch[1] = job_new("thumb", "b", "");
	batch[1].max_attempts = 0;
	err_clear(&e);
	ck_assert_int_eq(jobq_enqueue(q, batch, 2, &added, &e), -1);
	ck_assert_int_eq(count_state(q, -1), 0);
	jobq_close(q);
}
END_TEST

START_TEST(stored_fields_round_trip)
{
	struct jobq *q = open_q(0);
	struct jobq_new j = job_new("thumb", "dir/ä b\n.jpg", "00AB");
	struct jobq_job job;
	int64_t before = jobq_now_ms();

	j.version_id = "vid";
	j.depth = 2;
	j.batch = "run-1";
	j.max_attempts = 7;
	add_job(q, j);
	ck_assert_int_eq(claim(q, &job), 1);
	ck_assert_int_gt(job.id, 0);
	ck_assert_int_ne(job.lease_token, 0);
	ck_assert_int_eq(job.state, JOB_RUNNING);
	ck_assert_str_eq(job.handler, "thumb");
	ck_assert_str_eq(job.bucket, "bkt");
	ck_assert_str_eq(job.key, "dir/ä b\n.jpg");
	ck_assert_str_eq(job.version_id, "vid");
	ck_assert_str_eq(job.etag, "etag1");
	ck_assert_str_eq(job.sequencer, "00AB");
	ck_assert_str_eq(job.event_name, "s3:ObjectCreated:Put");
	ck_assert_str_eq(job.event_json, "{\"version\":1}");
	ck_assert_str_eq(job.batch, "run-1");
	ck_assert_int_eq(job.depth, 2);
	ck_assert_int_eq(job.attempts, 1);
	ck_assert_int_eq(job.max_attempts, 7);
	ck_assert_int_eq(job.exit_code, -1);
	ck_assert_int_ge(job.created_ms, before);
	ck_assert_int_le(job.created_ms, jobq_now_ms());
	jobq_job_release(&job);
	jobq_close(q);
}
END_TEST

/* ----- claiming ----- */

START_TEST(claim_order_priority_then_age)
{
	struct jobq *q = open_q(0);
	struct jobq_job job;

	add(q, "thumb", "reprocess-old", 1);
	sleep_ms(3);
	add(q, "text", "live-old", 0);
	sleep_ms(3);
	add(q, "thumb", "live-new", 0);
	sleep_ms(3);
	add(q, "thumb", "reprocess-new", 1);
	claim_key(q, "live-old", &job);
	jobq_job_release(&job);
	claim_key(q, "live-new", &job);
	jobq_job_release(&job);
	claim_key(q, "reprocess-old", &job);
	jobq_job_release(&job);
	claim_key(q, "reprocess-new", &job);
	jobq_job_release(&job);
	ck_assert_int_eq(claim(q, &job), 0);
	jobq_close(q);
}
END_TEST

START_TEST(one_running_job_per_key_and_handler)
{
	struct jobq *q = open_q(0);
	struct jobq_job a, b, c;

	ck_assert_uint_eq(add_job(q, job_new("thumb", "k", "s1")), 1);
	ck_assert_uint_eq(add_job(q, job_new("thumb", "k", "s2")), 1);
	ck_assert_uint_eq(add_job(q, job_new("text", "k", "s1")), 1);
	add(q, "thumb", "other", 0);
	claim_key(q, "k", &a);
	ck_assert_str_eq(a.sequencer, "s1");
	ck_assert_str_eq(a.handler, "thumb");
	/* The second thumb job of k waits; text on k and thumb on other do not. */
	claim_key(q, "k", &b);
	ck_assert_str_eq(b.handler, "text");
	claim_key(q, "other", &c);
	jobq_job_release(&c);
	ck_assert_int_eq(claim(q, &c), 0);
	finish(q, &a, JOB_DONE);
	claim_key(q, "k", &c);
	ck_assert_str_eq(c.sequencer, "s2");
	ck_assert_str_eq(c.handler, "thumb");
	jobq_job_release(&a);
	jobq_job_release(&b);
	jobq_job_release(&c);
	jobq_close(q);
}
END_TEST

START_TEST(handler_filter_and_busy_handlers)
{
	static const char *const thumb[] = { "thumb", NULL };
	static const char *const none[] = { NULL };
	struct jobq *q = open_q(0);
	struct jobq_job job;

	add(q, "text", "t1", 0);
	sleep_ms(2);
	add(q, "thumb", "p1", 0);
	sleep_ms(2);
	add(q, "other", "o1", 0);
	ck_assert_int_eq(claim_f(q, none, NULL, 1000, &job), 0);
	/* Only the handlers configured here, and none whose concurrency is used up. */
	ck_assert_int_eq(claim_f(q, thumb, NULL, 1000, &job), 1);
	ck_assert_str_eq(job.key, "p1");
	jobq_job_release(&job);
	ck_assert_int_eq(claim_f(q, both, both, 1000, &job), 0);
	ck_assert_int_eq(claim_f(q, both, thumb, 1000, &job), 1);
	ck_assert_str_eq(job.key, "t1");
	jobq_job_release(&job);
	ck_assert_int_eq(claim_f(q, both, NULL, 1000, &job), 0);
	/* No list: any handler but the busy ones. */
	ck_assert_int_eq(claim_f(q, NULL, (const char *const[]){ "other", NULL }, 1000, &job), 0);
	ck_assert_int_eq(claim_f(q, NULL, NULL, 1000, &job), 1);
	ck_assert_str_eq(job.key, "o1");
	jobq_job_release(&job);
	jobq_close(q);
}
END_TEST

/* ----- leases ----- */

START_TEST(finish_needs_the_current_token)
{
	struct jobq *q = open_q(0);
	struct jobq_result res = JOBQ_RESULT_INIT;
	struct err e = ERR_INIT;
	struct jobq_job job, stale;
	struct snap s;

	add(q, "thumb", "a", 0);
	ck_assert_int_eq(claim(q, &job), 1);
	stale = job;
	stale.lease_token ^= 1;
	res.exit_code = 3;
	ck_assert_int_eq(jobq_finish(q, &stale, JOB_DONE, &res, &e), -1);
	ck_assert_int_eq(e.code, ERR_CONFLICT);
	ck_assert_ptr_nonnull(strstr(e.msg, "lease lost"));
	s = get(q, job.id);
	ck_assert_int_eq(s.state, JOB_RUNNING);
	ck_assert_int_eq(s.exit_code, -1);
	/* A listed job shows no token. */
	ck_assert_int_eq(s.token, 0);
	res.exit_code = 0;
	res.signal = 0;
	res.error = "";
	res.stdout_tail = "made 1 thumbnail";
	res.stderr_tail = "warning";
	res.cpu_user_s = 1.5;
	res.max_rss_kib = 2048;
	res.wall_ms = 1234;
	err_clear(&e);
	ck_assert_msg(jobq_finish(q, &job, JOB_DONE, &res, &e) == 0, "%s", e.msg);
	s = get(q, job.id);
	ck_assert_int_eq(s.state, JOB_DONE);
	ck_assert_int_eq(s.exit_code, 0);
	ck_assert_str_eq(s.stdout_tail, "made 1 thumbnail");
	ck_assert_str_eq(s.stderr_tail, "warning");
	ck_assert_double_eq(s.cpu_user_s, 1.5);
	ck_assert_int_eq(s.max_rss_kib, 2048);
	ck_assert_int_eq(s.wall_ms, 1234);
	/* Done is done: a second finish, or a renewal, has no lease. */
	err_clear(&e);
	ck_assert_int_eq(jobq_finish(q, &job, JOB_DONE, &res, &e), -1);
	ck_assert_int_eq(e.code, ERR_CONFLICT);
	err_clear(&e);
	ck_assert_int_eq(jobq_renew(q, &job, 1000, &e), -1);
	ck_assert_int_eq(e.code, ERR_CONFLICT);
	err_clear(&e);
	ck_assert_int_eq(jobq_finish(q, &job, JOB_RETRY, &res, &e), -1);
	ck_assert_int_eq(e.code, ERR_INTERNAL);
	jobq_job_release(&job);
	jobq_close(q);
}
END_TEST

START_TEST(expired_lease_is_taken_over)
{
	struct jobq *q = open_q(0), *q2 = open_q(0);
	struct jobq_job first, second;
	struct err e = ERR_INIT;

	add(q, "thumb", "a", 0);
	ck_assert_int_eq(claim_f(q, both, NULL, 50, &first), 1);
	ck_assert_int_eq(claim_f(q2, both, NULL, 50, &second), 0);
	sleep_ms(80);
	ck_assert_int_eq(claim_f(q2, both, NULL, 30000, &second), 1);
	ck_assert_int_eq(second.id, first.id);
	ck_assert_int_ne(second.lease_token, first.lease_token);
	/* The takeover is another attempt. */
	ck_assert_int_eq(second.attempts, 2);
	ck_assert_int_eq(jobq_renew(q, &first, 30000, &e), -1);
	ck_assert_int_eq(e.code, ERR_CONFLICT);
	err_clear(&e);
	ck_assert_int_eq(jobq_finish(q, &first, JOB_DONE, NULL, &e), -1);
	ck_assert_int_eq(e.code, ERR_CONFLICT);
	ck_assert_int_eq(get(q, first.id).state, JOB_RUNNING);
	finish(q2, &second, JOB_DONE);
	jobq_job_release(&first);
	jobq_job_release(&second);
	jobq_close(q);
	jobq_close(q2);
}
END_TEST

START_TEST(renew_extends_the_lease)
{
	struct jobq *q = open_q(0);
	struct jobq_job job, other;
	struct err e = ERR_INIT;

	add(q, "thumb", "a", 0);
	ck_assert_int_eq(claim_f(q, both, NULL, 100, &job), 1);
	ck_assert_msg(jobq_renew(q, &job, 30000, &e) == 0, "%s", e.msg);
	sleep_ms(150);
	ck_assert_int_eq(claim(q, &other), 0);
	finish(q, &job, JOB_DONE);
	jobq_job_release(&job);
	jobq_close(q);
}
END_TEST

START_TEST(fail_retries_then_dead)
{
	struct jobq *q = open_q(0);
	struct jobq_result res = JOBQ_RESULT_INIT;
	struct jobq_new j = job_new("thumb", "a", "");
	struct err e = ERR_INIT;
	enum job_state st;
	struct jobq_job job;
	struct snap s;

	j.max_attempts = 2;
	add_job(q, j);
	ck_assert_int_eq(claim(q, &job), 1);
	res.exit_code = 75;
	res.error = "exit 75";
	ck_assert_msg(jobq_fail(q, &job, 300, &res, &st, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(st, JOB_RETRY);
	s = get(q, job.id);
	ck_assert_int_eq(s.state, JOB_RETRY);
	ck_assert_int_gt(s.next_ms, jobq_now_ms() + 150);
	ck_assert_int_eq(s.exit_code, 75);
	ck_assert_str_eq(s.last_error, "exit 75");
	jobq_job_release(&job);
	/* Not before its time. */
	ck_assert_int_eq(claim(q, &job), 0);
	sleep_ms(350);
	ck_assert_int_eq(claim(q, &job), 1);
	ck_assert_int_eq(job.attempts, 2);
	res.exit_code = -1;
	res.signal = 9;
	ck_assert_msg(jobq_fail(q, &job, 0, &res, &st, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(st, JOB_DEAD);
	s = get(q, job.id);
	ck_assert_int_eq(s.state, JOB_DEAD);
	ck_assert_int_eq(s.signal, 9);
	ck_assert_int_eq(s.exit_code, -1);
	jobq_job_release(&job);
	ck_assert_int_eq(claim(q, &job), 0);
	jobq_close(q);
}
END_TEST

START_TEST(retry_revives_dead_jobs)
{
	struct jobq *q = open_q(0);
	struct jobq_new j = job_new("thumb", "a", "");
	struct err e = ERR_INIT;
	struct jobq_job job, done;
	size_t n = 9;
	int64_t id;

	j.max_attempts = 1;
	add_job(q, j);
	add(q, "thumb", "b", 0);
	claim_key(q, "a", &job);
	ck_assert_int_eq(jobq_fail(q, &job, 0, NULL, NULL, &e), 0);
	id = job.id;
	jobq_job_release(&job);
	claim_key(q, "b", &done);
	finish(q, &done, JOB_DONE);
	ck_assert_int_eq(get(q, id).state, JOB_DEAD);
	ck_assert_int_eq(jobq_retry(q, done.id, &n, &e), -1);
	ck_assert_int_eq(e.code, ERR_CONFLICT);
	err_clear(&e);
	ck_assert_int_eq(jobq_retry(q, 999999, &n, &e), -1);
	ck_assert_int_eq(e.code, ERR_NOTFOUND);
	err_clear(&e);
	ck_assert_msg(jobq_retry(q, 0, &n, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(get(q, id).state, JOB_PENDING);
	ck_assert_int_eq(get(q, id).attempts, 0);
	ck_assert_int_eq(get(q, done.id).state, JOB_DONE);
	claim_key(q, "a", &job);
	ck_assert_int_eq(job.attempts, 1);
	jobq_job_release(&job);
	jobq_job_release(&done);
	jobq_close(q);
}
END_TEST

START_TEST(release_gives_the_attempt_back)
{
	struct jobq *q = open_q(0);
	struct jobq_job job, again, stale;
	struct err e = ERR_INIT;

	add(q, "thumb", "a", 0);
	ck_assert_int_eq(claim(q, &job), 1);
	stale = job;
	stale.lease_token ^= 1;
	ck_assert_int_eq(jobq_release(q, &stale, &e), -1);
	ck_assert_int_eq(e.code, ERR_CONFLICT);
	err_clear(&e);
	ck_assert_msg(jobq_release(q, &job, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(get(q, job.id).state, JOB_PENDING);
	ck_assert_int_eq(get(q, job.id).attempts, 0);
	ck_assert_int_eq(claim(q, &again), 1);
	ck_assert_int_eq(again.id, job.id);
	ck_assert_int_eq(again.attempts, 1);
	jobq_job_release(&job);
	jobq_job_release(&again);
	jobq_close(q);
}
END_TEST

/* ----- ledger, prune, checkpoints ----- */

START_TEST(ledger_keeps_what_finished)
{
	struct jobq *q = open_q(0);
	struct jobq_new j = job_new("thumb", "v", "s1");
	struct err e = ERR_INIT;
	struct jobq_job job;

	ck_assert_int_eq(jobq_ledger_done(q, "bkt", "a", "etag1", "thumb", &e), 0);
	add(q, "thumb", "a", 0);
	add(q, "thumb", "skip", 0);
	j.version_id = "ver1";
	add_job(q, j);
	claim_key(q, "a", &job);
	finish(q, &job, JOB_DONE);
	jobq_job_release(&job);
	claim_key(q, "skip", &job);
	finish(q, &job, JOB_SKIPPED);
	jobq_job_release(&job);
	claim_key(q, "v", &job);
	finish(q, &job, JOB_DONE);
	jobq_job_release(&job);
	ck_assert_int_eq(jobq_ledger_done(q, "bkt", "a", "etag1", "thumb", &e), 1);
	ck_assert_int_eq(jobq_ledger_done(q, "bkt", "a", "etag1", "text", &e), 0);
	ck_assert_int_eq(jobq_ledger_done(q, "bkt", "a", "etag2", "thumb", &e), 0);
	ck_assert_int_eq(jobq_ledger_done(q, "bkt", "skip", "etag1", "thumb", &e), 0);
	/* A version id is the key when there is one. */
	ck_assert_int_eq(jobq_ledger_done(q, "bkt", "v", "ver1", "thumb", &e), 1);
	ck_assert_int_eq(jobq_ledger_done(q, "bkt", "v", "etag1", "thumb", &e), 0);
	/* A later job of the same version that is superseded does not undo done. */
	j = job_new("thumb", "a", "s2");
	add_job(q, j);
	claim_key(q, "a", &job);
	finish(q, &job, JOB_SUPERSEDED);
	jobq_job_release(&job);
	ck_assert_int_eq(jobq_ledger_done(q, "bkt", "a", "etag1", "thumb", &e), 1);
	jobq_close(q);
}
END_TEST

START_TEST(prune_deletes_old_finished_jobs_only)
{
	struct jobq *q = open_q(0);
	struct jobq_new j = job_new("thumb", "dead", "");
	struct err e = ERR_INIT;
	struct jobq_job job;
	size_t n = 9;

	j.max_attempts = 1;
	add(q, "thumb", "done", 0);
	add(q, "thumb", "gone", 0);
	add_job(q, j);
	claim_key(q, "done", &job);
	finish(q, &job, JOB_DONE);
	jobq_job_release(&job);
	claim_key(q, "gone", &job);
	finish(q, &job, JOB_GONE);
	jobq_job_release(&job);
	claim_key(q, "dead", &job);
	ck_assert_int_eq(jobq_fail(q, &job, 0, NULL, NULL, &e), 0);
	jobq_job_release(&job);
	add(q, "thumb", "pending", 0);
	ck_assert_msg(jobq_prune(q, 3600 * 1000, &n, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(n, 0);
	sleep_ms(5);
	ck_assert_msg(jobq_prune(q, 1, &n, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(count_state(q, -1), 2);
	ck_assert_int_eq(count_state(q, JOB_DEAD), 1);
	ck_assert_int_eq(count_state(q, JOB_PENDING), 1);
	ck_assert_int_eq(jobq_ledger_done(q, "bkt", "done", "etag1", "thumb", &e), 1);
	/* The deduplication rows went with them: the same event is a new job now. */
	ck_assert_uint_eq(add_job(q, job_new("thumb", "done", "")), 1);
	jobq_close(q);
}
END_TEST

START_TEST(prune_in_batches)
{
	struct jobq *q = open_q(0);
	struct jobq_new *jobs = calloc(2500, sizeof(*jobs));
	char(*keys)[16] = calloc(2500, 16);
	struct err e = ERR_INIT;
	struct jobq_job job;
	size_t i, n;

	for (i = 0; i < 2500; i++) {
		snprintf(keys[i], 16, "k%zu", i);
		jobs[i] = job_new("thumb", keys[i], "");
	}
	ck_assert_int_eq(jobq_enqueue(q, jobs, 2500, &n, &e), 0);
	ck_assert_uint_eq(n, 2500);
	while (claim(q, &job)) {
		finish(q, &job, JOB_DONE);
		jobq_job_release(&job);
	}
	sleep_ms(5);
	ck_assert_msg(jobq_prune(q, 1, &n, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(n, 2500);
	ck_assert_int_eq(count_state(q, -1), 0);
	free(jobs);
	free(keys);
	jobq_close(q);
}
END_TEST

START_TEST(checkpoint_moves_with_its_page)
{
	struct jobq *q = open_q(0);
	struct jobq_new page[2] = { job_new("thumb", "a", ""), job_new("thumb", "b", "") };
	struct err e = ERR_INIT;
	char *value = (char *)"x";
	size_t added;

	ck_assert_int_eq(jobq_checkpoint_get(q, "list-1", &value, &e), 0);
	ck_assert_ptr_null(value);
	ck_assert_msg(jobq_enqueue_page(q, page, 2, "list-1", "after-b", &added, &e) == 0, "%s",
		      e.msg);
	ck_assert_uint_eq(added, 2);
	ck_assert_int_eq(jobq_checkpoint_get(q, "list-1", &value, &e), 0);
	ck_assert_str_eq(value, "after-b");
	free(value);
	/* A page whose jobs are all known moves the checkpoint all the same. */
	ck_assert_int_eq(jobq_enqueue_page(q, page, 2, "list-1", "after-b2", &added, &e), 0);
	ck_assert_uint_eq(added, 0);
	ck_assert_int_eq(jobq_enqueue_page(q, NULL, 0, "list-1", "end", &added, &e), 0);
	ck_assert_int_eq(jobq_checkpoint_get(q, "list-1", &value, &e), 0);
	ck_assert_str_eq(value, "end");
	free(value);
	/* A page that cannot be added leaves the checkpoint where it was. */
	page[1].bucket = NULL;
	ck_assert_int_eq(jobq_enqueue_page(q, page, 2, "list-1", "bad", &added, &e), -1);
	ck_assert_int_eq(jobq_checkpoint_get(q, "list-1", &value, &e), 0);
	ck_assert_str_eq(value, "end");
	free(value);
	jobq_close(q);
}
END_TEST

/*
 * Room for a few more bytes only: a tmpfs of 512 KiB in a mount namespace of
 * the child's own (ENOSPC: a full disk), or else RLIMIT_FSIZE (EFBIG: a
 * write error). 77 when neither is possible here.
 */
static int limit_room(int tmpfs)
{
	char small[4200];
	struct stat st;
	struct rlimit rl = { 0, RLIM_INFINITY };

	if (!tmpfs) {
		if (stat(path, &st) < 0)
			return 2;
		signal(SIGXFSZ, SIG_IGN);
		rl.rlim_cur = (rlim_t)st.st_size + 100001;
		return setrlimit(RLIMIT_FSIZE, &rl) < 0 ? 3 : 0;
	}
	snprintf(small, sizeof(small), "%s/small", dir);
	if (mkdir(small, 0700) < 0)
		return 2;
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", small, "tmpfs", 0, "size=512k") < 0)
		return 77;
	snprintf(path, sizeof(path), "%s/small/queue.db", dir);
	return 0;
}

/* Adds a page and its checkpoint, then one too big for the room left; sends the error. */
static int fill_child(int fd, int tmpfs)
{
	struct jobq_new *jobs = calloc(300, sizeof(*jobs));
	char(*keys)[16] = calloc(300, 16), *json = calloc(1, 4000);
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	struct err e = ERR_INIT;
	struct jobq *q;
	size_t i, added;
	int r;

	if (!jobs || !keys || !json)
		return 2;
	if (tmpfs && (r = limit_room(1)) != 0)
		return r;
	memset(json, 'x', 3999);
	for (i = 0; i < 300; i++) {
		snprintf(keys[i], 16, "k%zu", i);
		jobs[i] = job_new("thumb", keys[i], "");
		jobs[i].event_json = i < 2 ? "{}" : json;
	}
	q = jobq_open(path, JOBQ_INGEST, &e);
	if (!q || jobq_enqueue_page(q, jobs, 2, "cp", "v1", NULL, &e) < 0)
		return 4;
	if (!tmpfs && (r = limit_room(0)) != 0)
		return r;
	if (jobq_enqueue_page(q, jobs, 300, "cp", "v2", &added, &e) == 0)
		return 5;
	if (write(fd, &e, sizeof(e)) != (ssize_t)sizeof(e))
		return 6;
	jobq_close(q);
	return setrlimit(RLIMIT_FSIZE, &rl) < 0 ? 7 : 0;
}

/* What a child's failed write left: the first page and its checkpoint, nothing more. */
static int left_whole(void)
{
	struct jobq_query qu = JOBQ_QUERY_INIT;
	struct err e = ERR_INIT;
	struct jobq *q = jobq_open(path, 0, &e);
	char *value = NULL;
	int64_t counts[8];
	int ok;

	if (!q)
		return 0;
	ok = jobq_count(q, &qu, counts, &e) == 0 && counts[JOB_PENDING] == 2 &&
	     jobq_checkpoint_get(q, "cp", &value, &e) == 0 && value && !strcmp(value, "v1");
	free(value);
	jobq_close(q);
	return ok;
}

/* Runs fill_child, then checks (in the same child: a tmpfs is only there) what is left. */
static int fill_and_check(int fd, int tmpfs)
{
	int r = fill_child(fd, tmpfs);

	return r ? r : left_whole() ? 0 : 10;
}

static int run_fill(int tmpfs, struct err *child_err)
{
	int fds[2], r;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(fill_and_check(fds[1], tmpfs));
	close(fds[1]);
	r = wait_child(pid);
	if (r == 0)
		ck_assert_int_eq(read(fds[0], child_err, sizeof(*child_err)),
				 (ssize_t)sizeof(*child_err));
	close(fds[0]);
	return r;
}

START_TEST(full_disk_adds_nothing)
{
	struct err e = ERR_INIT;
	int r = run_fill(1, &e);

	if (r == 77) {
		fprintf(stderr, "check_jobq: no mount namespace here, full disk not tested\n");
		return;
	}
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(e.code, ERR_QUEUE);
	ck_assert_msg(strstr(e.msg, "queue '") && strstr(e.msg, "the disk is full"), "%s", e.msg);
}
END_TEST

START_TEST(write_error_adds_nothing)
{
	struct err e = ERR_INIT;

	ck_assert_int_eq(run_fill(0, &e), 0);
	ck_assert_int_eq(e.code, ERR_QUEUE);
	ck_assert_msg(strstr(e.msg, "queue '") && strstr(e.msg, "I/O error"), "%s", e.msg);
}
END_TEST

/* ----- orphans ----- */

/* A child that claims the one job and ends without finishing it; 0 when it claimed. */
static int claim_child(int hold_fd)
{
	struct jobq_filter f = { NULL, NULL, 600000 };
	struct err e = ERR_INIT;
	struct jobq *q = jobq_open(path, 0, &e);
	struct jobq_job job;
	char c;

	if (!q || jobq_claim(q, &f, &job, &e) != 1)
		return 1;
	if (hold_fd >= 0) {
		/* Tells the parent it holds the lease, then waits to be let go. */
		if (write(hold_fd, "c", 1) != 1 || read(hold_fd, &c, 1) != 1)
			return 2;
	}
	return 0;
}

START_TEST(reclaim_orphans_of_dead_processes)
{
	struct jobq *q;
	struct err e = ERR_INIT;
	struct jobq_job job;
	struct child child;
	int sv[2];
	size_t n = 9;
	char c;

	/* A live process's lease stays. */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	child = child_start(claim_child, sv[1]);
	q = open_q(0);
	add(q, "thumb", "a", 0);
	child_go(&child);
	ck_assert_int_eq(read(sv[0], &c, 1), 1);
	ck_assert_msg(jobq_reclaim_orphans(q, &n, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(count_state(q, JOB_RUNNING), 1);
	ck_assert_int_eq(write(sv[0], "x", 1), 1);
	ck_assert_int_eq(wait_child(child.pid), 0);
	close(sv[0]);
	close(sv[1]);
	/* Gone now: claimable at once, its attempt still counted. */
	ck_assert_int_eq(claim(q, &job), 0);
	ck_assert_msg(jobq_reclaim_orphans(q, &n, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(count_state(q, JOB_PENDING), 1);
	ck_assert_int_eq(claim(q, &job), 1);
	ck_assert_int_eq(job.attempts, 2);
	/* This process is alive too. */
	ck_assert_msg(jobq_reclaim_orphans(q, &n, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(n, 0);
	finish(q, &job, JOB_DONE);
	jobq_job_release(&job);
	jobq_close(q);
}
END_TEST

START_TEST(reclaim_reads_the_owner)
{
	struct jobq *q = open_q(0);
	struct err e = ERR_INIT;
	struct jobq_job job;
	char sql[512];
	size_t n;

	add(q, "thumb", "a", 0);
	ck_assert_int_eq(claim(q, &job), 1);
	/* This pid with another start time: here, a reused pid; on another host, nothing known. */
	snprintf(sql, sizeof(sql),
		 "UPDATE jobs SET lease_owner = 'pid=%ld start=1 ' || "
		 "substr(lease_owner, instr(lease_owner, 'pidns='))",
		 (long)getpid());
	raw_sql(path, sql);
	raw_sql(path, "UPDATE jobs SET lease_owner = replace(lease_owner, 'host=', 'host=x')");
	ck_assert_int_eq(jobq_reclaim_orphans(q, &n, &e), 0);
	ck_assert_uint_eq(n, 0);
	raw_sql(path, "UPDATE jobs SET lease_owner = replace(lease_owner, 'host=x', 'host=')");
	ck_assert_int_eq(jobq_reclaim_orphans(q, &n, &e), 0);
	ck_assert_uint_eq(n, 1);
	jobq_job_release(&job);
	/* This host before a reboot. */
	ck_assert_int_eq(claim(q, &job), 1);
	raw_sql(path, "UPDATE jobs SET lease_owner = replace(lease_owner, 'boot=', 'boot=0')");
	ck_assert_int_eq(jobq_reclaim_orphans(q, &n, &e), 0);
	ck_assert_uint_eq(n, 1);
	jobq_job_release(&job);
	/* Another pid namespace: cannot be seen from here. */
	ck_assert_int_eq(claim(q, &job), 1);
	raw_sql(path, "UPDATE jobs SET lease_owner = 'pid=999999 start=1 pidns=1 ' || "
		      "substr(lease_owner, instr(lease_owner, 'boot='))");
	ck_assert_int_eq(jobq_reclaim_orphans(q, &n, &e), 0);
	ck_assert_uint_eq(n, 0);
	/* Garbage is left alone too. */
	raw_sql(path, "UPDATE jobs SET lease_owner = 'junk'");
	ck_assert_int_eq(jobq_reclaim_orphans(q, &n, &e), 0);
	ck_assert_uint_eq(n, 0);
	jobq_job_release(&job);
	jobq_close(q);
}
END_TEST

/* ----- several processes ----- */

#define CONC_JOBS 2000

static int enqueue_child(int which)
{
	struct err e = ERR_INIT;
	struct jobq *q = jobq_open(path, JOBQ_INGEST, &e);
	struct jobq_new batch[20];
	char keys[20][32];
	size_t added;
	int i, k;

	if (!q)
		return 1;
	for (i = 0; i < CONC_JOBS / 2; i += 20) {
		for (k = 0; k < 20; k++) {
			snprintf(keys[k], sizeof(keys[k]), "p%d-%d", which, i + k);
			batch[k] = job_new(k % 2 ? "thumb" : "text", keys[k], "");
		}
		if (jobq_enqueue(q, batch, 20, &added, &e) < 0 || added != 20)
			return 2;
	}
	jobq_close(q);
	return 0;
}

/* Claims and finishes until every job is done; writes the ids it claimed to fd. */
static int claimer_child(int fd)
{
	struct jobq_filter f = { NULL, NULL, 60000 };
	struct jobq_query all = JOBQ_QUERY_INIT;
	struct err e = ERR_INIT;
	struct jobq *q = jobq_open(path, 0, &e);
	int64_t counts[8], end = mono_ms() + 50000;
	struct jobq_job job;
	int r;

	if (!q)
		return 1;
	while (mono_ms() < end) {
		r = jobq_claim(q, &f, &job, &e);
		if (r < 0)
			return 2;
		if (r > 0) {
			if (write(fd, &job.id, sizeof(job.id)) != sizeof(job.id) ||
			    job.attempts != 1 || jobq_finish(q, &job, JOB_DONE, NULL, &e) < 0)
				return 3;
			jobq_job_release(&job);
			continue;
		}
		if (jobq_count(q, &all, counts, &e) < 0)
			return 4;
		if (counts[JOB_DONE] == CONC_JOBS)
			return 0;
		jobq_wait(q, 100);
	}
	return 5;
}

START_TEST(two_processes_claim_each_job_once)
{
	struct jobq *q;
	static unsigned char seen[CONC_JOBS + 1];
	pid_t pids[4];
	int fds[2], i, total = 0;
	int64_t id;

	ck_assert_int_eq(pipe(fds), 0);
	for (i = 0; i < 4; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			close(fds[0]);
			_exit(i < 2 ? claimer_child(fds[1]) : enqueue_child(i));
		}
	}
	close(fds[1]);
	while (read(fds[0], &id, sizeof(id)) == (ssize_t)sizeof(id)) {
		ck_assert_int_ge(id, 1);
		ck_assert_int_le(id, CONC_JOBS);
		ck_assert_msg(!seen[id], "job %" PRId64 " claimed twice", id);
		seen[id] = 1;
		total++;
	}
	close(fds[0]);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(wait_child(pids[i]), 0);
	ck_assert_int_eq(total, CONC_JOBS);
	q = open_q(0);
	ck_assert_int_eq(count_state(q, JOB_DONE), CONC_JOBS);
	jobq_close(q);
}
END_TEST

START_TEST(concurrent_first_opens_migrate_once)
{
	pid_t pids[4];
	struct jobq *q;
	int i;

	for (i = 0; i < 4; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			struct err e = ERR_INIT;
			struct jobq *c = jobq_open(path, 0, &e);
			size_t added;
			struct jobq_new j = job_new("thumb", "same", "");

			if (!c) {
				fprintf(stderr, "child open: %s\n", e.msg);
				_exit(1);
			}
			_exit(jobq_enqueue(c, &j, 1, &added, &e) == 0 ? 0 : 2);
		}
	}
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(wait_child(pids[i]), 0);
	q = open_q(JOBQ_NO_CREATE);
	ck_assert_int_eq(count_state(q, -1), 1);
	jobq_close(q);
}
END_TEST

/* ----- waiting ----- */

static int late_enqueue_child(int fd)
{
	struct jobq_new j = job_new("thumb", "late", "");
	struct err e = ERR_INIT;
	struct jobq *q;
	size_t added;
	int64_t t;

	sleep_ms(300);
	q = jobq_open(path, JOBQ_INGEST, &e);
	if (!q || jobq_enqueue(q, &j, 1, &added, &e) < 0 || added != 1)
		return 1;
	t = mono_ms();
	if (write(fd, &t, sizeof(t)) != sizeof(t))
		return 2;
	jobq_close(q);
	return 0;
}

START_TEST(wait_wakes_when_another_process_adds)
{
	struct jobq *q;
	struct jobq_job job;
	struct child child;
	int64_t t0, t1, added_at;
	int fds[2];

	ck_assert_int_eq(pipe(fds), 0);
	child = child_start(late_enqueue_child, fds[1]);
	q = open_q(0);
	ck_assert_int_eq(claim(q, &job), 0);
	child_go(&child);
	t0 = mono_ms();
	jobq_wait(q, 5000);
	t1 = mono_ms();
	ck_assert_int_eq(wait_child(child.pid), 0);
	ck_assert_int_eq(read(fds[0], &added_at, sizeof(added_at)), (ssize_t)sizeof(added_at));
	close(fds[0]);
	close(fds[1]);
	ck_assert_int_ge(t1 - t0, 250);
	ck_assert_msg(t1 - added_at < 500, "woke %" PRId64 " ms after the enqueue", t1 - added_at);
	claim_key(q, "late", &job);
	jobq_job_release(&job);
	jobq_close(q);
}
END_TEST

START_TEST(wait_after_empty_claim_misses_nothing)
{
	struct jobq *worker = open_q(0), *ingest = open_q(JOBQ_INGEST);
	struct jobq_job job;
	int64_t t0;

	/* Added between the claim that found nothing and the wait: no sleep. */
	ck_assert_int_eq(claim(worker, &job), 0);
	add(ingest, "thumb", "a", 0);
	t0 = mono_ms();
	jobq_wait(worker, 3000);
	ck_assert_int_lt(mono_ms() - t0, 100);
	/* A wait that follows a wait starts afresh: it sleeps. */
	t0 = mono_ms();
	jobq_wait(worker, 300);
	ck_assert_int_ge(mono_ms() - t0, 290);
	jobq_close(worker);
	jobq_close(ingest);
}
END_TEST

static void *waker(void *arg)
{
	sleep_ms(100);
	jobq_wake(arg);
	return NULL;
}

START_TEST(wait_returns_on_wake_and_when_a_retry_is_due)
{
	struct jobq *q = open_q(0), *other = open_q(0);
	struct jobq_job job;
	pthread_t t;
	int64_t t0, took;

	ck_assert_int_eq(pthread_create(&t, NULL, waker, other), 0);
	t0 = mono_ms();
	jobq_wait(q, 5000);
	took = mono_ms() - t0;
	pthread_join(t, NULL);
	ck_assert_int_ge(took, 90);
	ck_assert_int_lt(took, 1000);
	add(q, "thumb", "a", 0);
	ck_assert_int_eq(claim(q, &job), 1);
	ck_assert_int_eq(jobq_fail(q, &job, 400, NULL, NULL, NULL), 0);
	jobq_job_release(&job);
	ck_assert_int_eq(claim(q, &job), 0);
	t0 = mono_ms();
	jobq_wait(q, 5000);
	took = mono_ms() - t0;
	ck_assert_int_ge(took, 300);
	ck_assert_int_lt(took, 1000);
	ck_assert_int_eq(claim(q, &job), 1);
	jobq_job_release(&job);
	jobq_close(q);
	jobq_close(other);
}
END_TEST

/* ----- health ----- */

START_TEST(check_writable_notices_a_deleted_file)
{
	struct jobq *q = open_q(JOBQ_INGEST);
	struct err e = ERR_INIT;
	size_t added = 9;
	struct jobq_new j = job_new("thumb", "a", "");

	ck_assert_msg(jobq_check_writable(q, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(jobq_check_writable(q, &e), -1);
	ck_assert_int_eq(e.code, ERR_QUEUE);
	ck_assert_msg(strstr(e.msg, "deleted"), "%s", e.msg);
	/* Jobs acknowledged into a deleted file would be lost: refused. */
	err_clear(&e);
	ck_assert_int_eq(jobq_enqueue(q, &j, 1, &added, &e), -1);
	ck_assert_uint_eq(added, 0);
	ck_assert_msg(strstr(e.msg, "deleted"), "%s", e.msg);
	jobq_close(q);
}
END_TEST

/* In a mount namespace of its own, a queue on a small tmpfs, then the tmpfs filled. */
static int full_disk_child(void)
{
	char q_path[4200], filler[4200], block[65536] = { 0 };
	struct err e = ERR_INIT;
	struct jobq *q;
	int fd;

	if (unshare(CLONE_NEWNS) < 0)
		return 77;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", dir, "tmpfs", 0, "size=4m") < 0)
		return 77;
	snprintf(q_path, sizeof(q_path), "%s/full.db", dir);
	snprintf(filler, sizeof(filler), "%s/filler", dir);
	if (!(q = jobq_open(q_path, JOBQ_INGEST, &e)))
		return 1;
	if (jobq_check_writable(q, &e) < 0)
		return 2;
	if ((fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return 3;
	while (write(fd, block, sizeof(block)) > 0)
		;
	close(fd);
	/* Said by the free-space check, before any write is tried. */
	if (jobq_check_writable(q, &e) == 0)
		return 4;
	if (e.code != ERR_QUEUE || !strstr(e.msg, "the disk is full ("))
		return 5;
	unlink(filler);
	err_clear(&e);
	if (jobq_check_writable(q, &e) < 0)
		return 6;
	jobq_close(q);
	return 0;
}

START_TEST(check_writable_notices_a_full_disk)
{
	pid_t pid = fork();
	int r;

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(full_disk_child());
	r = wait_child(pid);
	if (r == 77)
		fprintf(stderr, "check_jobq: no mount namespace here, full disk not tested\n");
	else
		ck_assert_int_eq(r, 0);
}
END_TEST

/* In a mount namespace of its own, makes the folder read-only under an open queue. */
static int read_only_child(void)
{
	struct err e = ERR_INIT;
	struct jobq *q = jobq_open(path, 0, &e);

	if (!q)
		return 1;
	if (unshare(CLONE_NEWNS) < 0)
		return 77;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount(dir, dir, NULL, MS_BIND, NULL) < 0 ||
	    mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
		return 77;
	if (jobq_check_writable(q, &e) == 0)
		return 2;
	if (e.code != ERR_QUEUE || !strstr(e.msg, "not writable"))
		return 3;
	jobq_close(q);
	return 0;
}

START_TEST(check_writable_notices_a_read_only_file)
{
	struct jobq *q = open_q(0);
	struct err e = ERR_INIT;
	pid_t pid;
	int r;

	ck_assert_int_eq(chmod(path, 0400), 0);
	if (geteuid() != 0) {
		ck_assert_int_eq(jobq_check_writable(q, &e), -1);
		ck_assert_msg(strstr(e.msg, "not writable"), "%s", e.msg);
	}
	jobq_close(q);
	ck_assert_int_eq(chmod(path, 0600), 0);
	/* Root writes through permission bits; a read-only mount stops it too. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(read_only_child());
	r = wait_child(pid);
	if (r == 77)
		fprintf(stderr,
			"check_jobq: no mount namespace here, read-only mount not tested\n");
	else
		ck_assert_int_eq(r, 0);
}
END_TEST

/* ----- opening and the schema ----- */

START_TEST(open_makes_a_private_file)
{
	struct jobq *q = open_q(JOBQ_INGEST), *q2;
	char side[4200];
	struct stat st;

	add(q, "thumb", "a", 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	snprintf(side, sizeof(side), "%s-wal", path);
	ck_assert_int_eq(stat(side, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	snprintf(side, sizeof(side), "%s-shm", path);
	ck_assert_int_eq(stat(side, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	/* Opening a migrated file again, while it is open, and after, is fine. */
	q2 = open_q(0);
	ck_assert_int_eq(count_state(q2, -1), 1);
	jobq_close(q2);
	jobq_close(q);
	q = open_q(JOBQ_NO_CREATE);
	ck_assert_int_eq(count_state(q, -1), 1);
	jobq_close(q);
}
END_TEST

START_TEST(open_errors_are_clear)
{
	struct err e = ERR_INIT;
	char other[4200];
	struct stat st;

	snprintf(other, sizeof(other), "%s/nodir/q.db", dir);
	ck_assert_ptr_null(jobq_open(other, 0, &e));
	ck_assert_int_eq(e.code, ERR_QUEUE);
	ck_assert_msg(strstr(e.msg, "cannot open queue '") && strstr(e.msg, "nodir/q.db': No such"),
		      "%s", e.msg);
	err_clear(&e);
	ck_assert_ptr_null(jobq_open(path, JOBQ_NO_CREATE, &e));
	ck_assert_msg(strstr(e.msg, "queue '") && strstr(e.msg, "' does not exist"), "%s", e.msg);
	ck_assert_int_eq(stat(path, &st), -1);
	test_write_file(path, "", 0);
	err_clear(&e);
	ck_assert_ptr_null(jobq_open(path, JOBQ_NO_CREATE, &e));
	ck_assert_msg(strstr(e.msg, "is empty"), "%s", e.msg);
	test_write_file(path, "this is not a database, not at all, really", 42);
	err_clear(&e);
	ck_assert_ptr_null(jobq_open(path, 0, &e));
	ck_assert_int_eq(e.code, ERR_QUEUE);
	ck_assert_msg(strstr(e.msg, "not a database"), "%s", e.msg);
	err_clear(&e);
	ck_assert_ptr_null(jobq_open("postgres://u:secret@h/db", 0, &e));
	ck_assert_ptr_null(strstr(e.msg, "secret"));
	err_clear(&e);
	ck_assert_ptr_null(jobq_open("", 0, &e));
	ck_assert_int_eq(e.code, ERR_CONFIG);
}
END_TEST

START_TEST(open_refuses_other_schemas)
{
	struct err e = ERR_INIT;
	struct jobq *q;

	raw_sql(path, "CREATE TABLE photos (id INTEGER)");
	ck_assert_ptr_null(jobq_open(path, 0, &e));
	ck_assert_msg(strstr(e.msg, "is not an s3hook queue"), "%s", e.msg);
	ck_assert_int_eq(unlink(path), 0);
	q = open_q(0);
	jobq_close(q);
	raw_sql(path, "UPDATE meta SET value = '99' WHERE key = 'schema_version'");
	err_clear(&e);
	ck_assert_ptr_null(jobq_open(path, 0, &e));
	ck_assert_int_eq(e.code, ERR_QUEUE);
	ck_assert_msg(strstr(e.msg, "schema version 99, newer than this s3hook knows"), "%s",
		      e.msg);
	err_clear(&e);
	ck_assert_ptr_null(jobq_open(path, JOBQ_NO_CREATE, &e));
	ck_assert_msg(strstr(e.msg, "newer"), "%s", e.msg);
}
END_TEST

START_TEST(open_upgrades_an_older_schema)
{
	struct err e = ERR_INIT;
	struct jobq *q = open_q(0);
	char out[4096];

	add(q, "thumb", "a", 0);
	jobq_close(q);
	/* A file as version 1 left it: no jobs_batch. */
	raw_sql(path, "DROP INDEX jobs_batch; "
		      "UPDATE meta SET value = '1' WHERE key = 'schema_version'");
	ck_assert_ptr_null(jobq_open(path, JOBQ_NO_CREATE, &e));
	ck_assert_msg(strstr(e.msg, "schema version 1, older than this s3hook's (2): serve "
				    "upgrades it"),
		      "%s", e.msg);
	q = open_q(0);
	ck_assert_int_eq(count_state(q, -1), 1);
	jobq_close(q);
	raw_rows(path, "SELECT value FROM meta WHERE key = 'schema_version'", out, sizeof(out));
	ck_assert_str_eq(out, "2|\n");
	/* What reprocess asks twice a second reads the index, not every job. */
	raw_rows(path,
		 "EXPLAIN QUERY PLAN SELECT state, count(*) FROM jobs WHERE 1 AND batch = :batch "
		 "GROUP BY state",
		 out, sizeof(out));
	ck_assert_msg(strstr(out, "USING COVERING INDEX jobs_batch"), "%s", out);
}
END_TEST

/* ----- listing ----- */

struct collect {
	int n, stop_at;
	int64_t last_id;
	int descending;
	struct jobq *q;
};

static int collect_one(void *arg, const struct jobq_job *job)
{
	struct collect *c = arg;
	int64_t counts[8];
	struct jobq_query all = JOBQ_QUERY_INIT;

	if (c->n && job->id >= c->last_id)
		c->descending = 0;
	c->last_id = job->id;
	c->n++;
	/* The callback may use the queue: no lock is held. */
	if (c->q && jobq_count(c->q, &all, counts, NULL) < 0)
		return 1;
	return c->stop_at && c->n >= c->stop_at;
}

static int list_n(struct jobq *q, struct jobq_query *qu, int stop_at)
{
	struct collect c = { .stop_at = stop_at, .descending = 1, .q = q };
	struct err e = ERR_INIT;

	ck_assert_msg(jobq_list(q, qu, collect_one, &c, &e) == 0, "%s", e.msg);
	ck_assert(c.descending);
	return c.n;
}

START_TEST(list_and_count_filter)
{
	struct jobq *q = open_q(0);
	struct jobq_new *jobs = calloc(250, sizeof(*jobs));
	char(*keys)[16] = calloc(250, 16);
	struct jobq_query qu = JOBQ_QUERY_INIT;
	struct err e = ERR_INIT;
	struct jobq_job job;
	int64_t counts[8];
	size_t i, n;

	ck_assert_int_eq(jobq_oldest_pending_ms(q), 0);
	for (i = 0; i < 250; i++) {
		snprintf(keys[i], 16, "k%zu", i);
		jobs[i] = job_new(i % 5 ? "thumb" : "text", keys[i], "");
		jobs[i].batch = i < 10 ? "b1" : NULL;
	}
	ck_assert_int_eq(jobq_enqueue(q, jobs, 250, &n, &e), 0);
	ck_assert_int_le(jobq_oldest_pending_ms(q), jobq_now_ms());
	ck_assert_int_gt(jobq_oldest_pending_ms(q), jobq_now_ms() - 60000);
	ck_assert_int_eq(claim(q, &job), 1);
	finish(q, &job, JOB_DONE);
	jobq_job_release(&job);
	ck_assert_int_eq(claim(q, &job), 1);
	ck_assert_int_eq(jobq_count(q, &qu, counts, &e), 0);
	ck_assert_int_eq(counts[JOB_PENDING], 248);
	ck_assert_int_eq(counts[JOB_RUNNING], 1);
	ck_assert_int_eq(counts[JOB_DONE], 1);
	ck_assert_int_eq(list_n(q, &qu, 0), 250);
	ck_assert_int_eq(list_n(q, &qu, 3), 3);
	qu.limit = 120;
	ck_assert_int_eq(list_n(q, &qu, 0), 120);
	qu.limit = 0;
	qu.handler = "text";
	ck_assert_int_eq(list_n(q, &qu, 0), 50);
	ck_assert_int_eq(jobq_count(q, &qu, counts, &e), 0);
	ck_assert_int_eq(counts[JOB_PENDING] + counts[JOB_RUNNING] + counts[JOB_DONE], 50);
	qu.handler = NULL;
	qu.state = JOB_DONE;
	ck_assert_int_eq(list_n(q, &qu, 0), 1);
	qu.state = -1;
	qu.batch = "b1";
	ck_assert_int_eq(list_n(q, &qu, 0), 10);
	qu.batch = NULL;
	qu.id = job.id;
	ck_assert_int_eq(list_n(q, &qu, 0), 1);
	jobq_job_release(&job);
	free(jobs);
	free(keys);
	jobq_close(q);
}
END_TEST

START_TEST(state_names_round_trip)
{
	enum job_state s;
	int i;

	for (i = JOB_PENDING; i <= JOB_SUPERSEDED; i++) {
		ck_assert_int_eq(job_state_parse(job_state_name((enum job_state)i), &s), 0);
		ck_assert_int_eq(s, i);
	}
	ck_assert_int_eq(job_state_parse("nope", &s), -1);
	ck_assert(!job_state_final(JOB_PENDING) && !job_state_final(JOB_RETRY) &&
		  !job_state_final(JOB_RUNNING));
	ck_assert(job_state_final(JOB_DONE) && job_state_final(JOB_DEAD) &&
		  job_state_final(JOB_GONE) && job_state_final(JOB_SKIPPED) &&
		  job_state_final(JOB_SUPERSEDED));
}
END_TEST

static Suite *jobq_suite(void)
{
	Suite *s = suite_create("jobq");
	TCase *tc = tcase_create("jobq");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, second_handle_keeps_the_locks);
	tcase_add_test(tc, enqueue_dedupes);
	tcase_add_test(tc, enqueue_refuses_bad_jobs_whole);
	tcase_add_test(tc, stored_fields_round_trip);
	tcase_add_test(tc, claim_order_priority_then_age);
	tcase_add_test(tc, one_running_job_per_key_and_handler);
	tcase_add_test(tc, handler_filter_and_busy_handlers);
	tcase_add_test(tc, finish_needs_the_current_token);
	tcase_add_test(tc, expired_lease_is_taken_over);
	tcase_add_test(tc, renew_extends_the_lease);
	tcase_add_test(tc, fail_retries_then_dead);
	tcase_add_test(tc, retry_revives_dead_jobs);
	tcase_add_test(tc, release_gives_the_attempt_back);
	tcase_add_test(tc, ledger_keeps_what_finished);
	tcase_add_test(tc, prune_deletes_old_finished_jobs_only);
	tcase_add_test(tc, prune_in_batches);
	tcase_add_test(tc, checkpoint_moves_with_its_page);
	tcase_add_test(tc, full_disk_adds_nothing);
	tcase_add_test(tc, write_error_adds_nothing);
	tcase_add_test(tc, reclaim_orphans_of_dead_processes);
	tcase_add_test(tc, reclaim_reads_the_owner);
	tcase_add_test(tc, two_processes_claim_each_job_once);
	tcase_add_test(tc, concurrent_first_opens_migrate_once);
	tcase_add_test(tc, wait_wakes_when_another_process_adds);
	tcase_add_test(tc, wait_after_empty_claim_misses_nothing);
	tcase_add_test(tc, wait_returns_on_wake_and_when_a_retry_is_due);
	tcase_add_test(tc, check_writable_notices_a_deleted_file);
	tcase_add_test(tc, check_writable_notices_a_read_only_file);
	tcase_add_test(tc, check_writable_notices_a_full_disk);
	tcase_add_test(tc, open_makes_a_private_file);
	tcase_add_test(tc, open_errors_are_clear);
	tcase_add_test(tc, open_refuses_other_schemas);
	tcase_add_test(tc, open_upgrades_an_older_schema);
	tcase_add_test(tc, list_and_count_filter);
	tcase_add_test(tc, state_names_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return test_main(jobq_suite());
}
