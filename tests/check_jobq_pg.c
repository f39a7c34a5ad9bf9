/*
 * Unit tests of the PostgreSQL queue (core/jobq_pg.c).
 *
 * The model's tests are check_jobq.c's, run here unchanged: that file is
 * included, and its `path` (the URL every test and child opens) names a
 * fresh schema of the local server for each test. The tests after it are
 * this backend's own: several processes claiming one (bucket, key, handler),
 * the database's clock against a host's, lost connections, a commit whose
 * outcome is unknown, read-only databases, and messages without passwords.
 *
 * The server is scripts/local-pg's, started here when it is not up (and
 * stopped at the end then). Without PostgreSQL installed the tests are
 * skipped, loudly; a server that is installed but does not start fails.
 */
#define main check_jobq_sqlite_main
int check_jobq_sqlite_main(void);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"
#include "tests/check_jobq.c"
#pragma GCC diagnostic pop
#undef main

#include "core/log.h"

#include <libpq-fe.h>
#include <sys/mman.h>

static char base_url[1024]; /* the local server, no password: libpq reads PGPASSWORD */
static char schema[64];	    /* this test's */
static char app[96];	    /* application_name of this test's connections */

static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* Runs SQL on the test's schema, as an operator might; the first row's first value, or "". */
static void pg_sql(const char *url, const char *sql, char *out, size_t size)
{
	PGconn *c = PQconnectdb(url);
	PGresult *res;

	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	PQsetNoticeProcessor(c, quiet, NULL);
	res = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK ||
			      PQresultStatus(res) == PGRES_TUPLES_OK,
		      "%s: %s", sql, PQresultErrorMessage(res));
	if (out)
		snprintf(out, size, "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
	PQclear(res);
	PQfinish(c);
}

static void sql(const char *s)
{
	pg_sql(path, s, NULL, 0);
}

/* The queue's URL with extra connection options ("-cname=value", '=' as %3D). */
static void url_with(char *out, size_t size, const char *options)
{
	snprintf(out, size, "%s?application_name=%s&options=-csearch_path%%3D%s%s%s", base_url, app,
		 schema, options ? "%20" : "", options ? options : "");
}

static void pg_setup(void)
{
	char create[128];

	setup();
	snprintf(schema, sizeof(schema), "t%ld_%ld", (long)getpid(), (long)(mono_ms() % 100000));
	snprintf(app, sizeof(app), "s3hook-test-%s", schema);
	snprintf(create, sizeof(create), "CREATE SCHEMA %s", schema);
	pg_sql(base_url, create, NULL, 0);
	url_with(path, sizeof(path), NULL);
}

static void pg_teardown(void)
{
	char drop[128];

	snprintf(drop, sizeof(drop), "DROP SCHEMA %s CASCADE", schema);
	pg_sql(base_url, drop, NULL, 0);
	teardown();
}

/* Ends this test's connections from the server's side, as a restart would. */
static void drop_connections(void)
{
	char q[256];

	snprintf(q, sizeof(q),
		 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
		 "WHERE application_name = '%s'",
		 app);
	pg_sql(base_url, q, NULL, 0);
}

/* ----- the owner of a lease ----- */

START_TEST(pg_reclaim_reads_the_owner)
{
	struct jobq *q = open_q(0);
	struct err e = ERR_INIT;
	struct jobq_job job;
	char s[512];
	size_t n;

	add(q, "thumb", "a", 0);
	ck_assert_int_eq(claim(q, &job), 1);
	/* This pid with another start time: here, a reused pid; on another host, nothing known. */
	snprintf(s, sizeof(s),
		 "UPDATE jobs SET lease_owner = 'pid=%ld start=1 ' || "
		 "substr(lease_owner, strpos(lease_owner, 'pidns='))",
		 (long)getpid());
	sql(s);
	sql("UPDATE jobs SET lease_owner = replace(lease_owner, 'host=', 'host=x')");
	ck_assert_int_eq(jobq_reclaim_orphans(q, &n, &e), 0);
	ck_assert_uint_eq(n, 0);
	sql("UPDATE jobs SET lease_owner = replace(lease_owner, 'host=x', 'host=')");
	ck_assert_int_eq(jobq_reclaim_orphans(q, &n, &e), 0);
	ck_assert_uint_eq(n, 1);
	jobq_job_release(&job);
	/* This host before a reboot. */
	ck_assert_int_eq(claim(q, &job), 1);
	sql("UPDATE jobs SET lease_owner = replace(lease_owner, 'boot=', 'boot=0')");
	ck_assert_int_eq(jobq_reclaim_orphans(q, &n, &e), 0);
	ck_assert_uint_eq(n, 1);
	jobq_job_release(&job);
	/* Another pid namespace: cannot be seen from here. Garbage is left alone too. */
	ck_assert_int_eq(claim(q, &job), 1);
	sql("UPDATE jobs SET lease_owner = 'pid=999999 start=1 pidns=1 ' || "
	    "substr(lease_owner, strpos(lease_owner, 'boot='))");
	ck_assert_int_eq(jobq_reclaim_orphans(q, &n, &e), 0);
	ck_assert_uint_eq(n, 0);
	sql("UPDATE jobs SET lease_owner = 'junk'");
	ck_assert_int_eq(jobq_reclaim_orphans(q, &n, &e), 0);
	ck_assert_uint_eq(n, 0);
	jobq_job_release(&job);
	jobq_close(q);
}
END_TEST

/* ----- several hosts ----- */

#define TRIPLE_JOBS 40

/* Counts, shared with the children: running now and the most that ever ran at once. */
static int *triple_counts;

/* Claims jobs of one (bucket, key, handler) until all are done; 0 when never two ran at once. */
static int triple_child(int unused)
{
	int *running = &triple_counts[0], *most = &triple_counts[1];
	struct jobq_filter f = { NULL, NULL, 30000 };
	struct jobq_query all = JOBQ_QUERY_INIT;
	struct err e = ERR_INIT;
	struct jobq *q = jobq_open(path, 0, &e);
	int64_t counts[8], end = mono_ms() + 40000;
	struct jobq_job job;
	int r, now;

	(void)unused;
	if (!q)
		return 1;
	while (mono_ms() < end) {
		r = jobq_claim(q, &f, &job, &e);
		if (r < 0)
			return 2;
		if (r > 0) {
			now = __atomic_add_fetch(running, 1, __ATOMIC_SEQ_CST);
			if (now > __atomic_load_n(most, __ATOMIC_SEQ_CST))
				__atomic_store_n(most, now, __ATOMIC_SEQ_CST);
			sleep_ms(2);
			__atomic_sub_fetch(running, 1, __ATOMIC_SEQ_CST);
			if (jobq_finish(q, &job, JOB_DONE, NULL, &e) < 0)
				return 3;
			jobq_job_release(&job);
			continue;
		}
		if (jobq_count(q, &all, counts, &e) < 0)
			return 4;
		if (counts[JOB_DONE] == TRIPLE_JOBS)
			return 0;
		jobq_wait(q, 100);
	}
	return 5;
}

/*
 * Processes that claim at once never run two jobs of one (bucket, key,
 * handler) together: neither sees the other's claim before it commits.
 */
START_TEST(pg_one_job_of_a_triple_runs_at_a_time)
{
	struct jobq *q;
	struct jobq_new jobs[TRIPLE_JOBS];
	char seqs[TRIPLE_JOBS][16];
	struct child children[4];
	struct err e = ERR_INIT;
	size_t added;
	int i;

	triple_counts = mmap(NULL, 2 * sizeof(int), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(triple_counts, MAP_FAILED);
	triple_counts[0] = triple_counts[1] = 0;
	for (i = 0; i < 4; i++)
		children[i] = child_start(triple_child, 0);
	q = open_q(JOBQ_INGEST);
	for (i = 0; i < TRIPLE_JOBS; i++) {
		snprintf(seqs[i], sizeof(seqs[i]), "s%02d", i);
		jobs[i] = job_new("thumb", "same.jpg", seqs[i]);
	}
	ck_assert_msg(jobq_enqueue(q, jobs, TRIPLE_JOBS, &added, &e) == 0, "%s", e.msg);
	for (i = 0; i < 4; i++)
		child_go(&children[i]);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(wait_child(children[i].pid), 0);
	ck_assert_int_eq(triple_counts[1], 1);
	ck_assert_int_eq(count_state(q, JOB_DONE), TRIPLE_JOBS);
	munmap(triple_counts, 2 * sizeof(int));
	jobq_close(q);
}
END_TEST

/*
 * Every time is the database's: with its clock an hour ahead of this host's,
 * leases and backoffs still last what they were asked to, and jobq_wait()
 * still wakes when a backoff ends. (statement_timestamp() is shadowed by a
 * function of the test's schema, listed before pg_catalog in search_path.)
 */
START_TEST(pg_times_come_from_the_database)
{
	struct jobq *q, *q2;
	struct jobq_job job, other;
	int64_t t0, took, hour = 3600 * 1000;
	char url[2048];

	sql("CREATE FUNCTION statement_timestamp() RETURNS timestamptz LANGUAGE sql STABLE "
	    "AS 'SELECT pg_catalog.statement_timestamp() + interval ''1 hour'''");
	snprintf(url, sizeof(url), "%s?application_name=%s&options=-csearch_path%%3D%s,pg_catalog",
		 base_url, app, schema);
	snprintf(path, sizeof(path), "%s", url);
	q = open_q(0);
	q2 = open_q(0);
	add(q, "thumb", "a", 0);
	ck_assert_int_eq(claim_f(q, both, NULL, 300, &job), 1);
	ck_assert_int_gt(job.created_ms, jobq_now_ms() + hour - 60000);
	/* The oldest pending job's time is given back on this host's clock. */
	add(q, "thumb", "b", 0);
	ck_assert_int_le(jobq_oldest_pending_ms(q), jobq_now_ms());
	ck_assert_int_gt(jobq_oldest_pending_ms(q), jobq_now_ms() - 60000);
	/* A lease of 300 ms by the database's clock: not over at once, over after. */
	ck_assert_int_eq(claim_f(q2, both, NULL, 300, &other), 1);
	ck_assert_str_eq(other.key, "b");
	jobq_job_release(&other);
	sleep_ms(400);
	ck_assert_int_eq(claim_f(q2, both, NULL, 30000, &other), 1);
	ck_assert_int_eq(other.id, job.id);
	/* A backoff of 400 ms: jobq_wait() wakes when it ends, not an hour off either way. */
	ck_assert_int_eq(jobq_fail(q2, &other, 400, NULL, NULL, NULL), 0);
	jobq_job_release(&other);
	ck_assert_int_eq(claim(q2, &other), 1); /* "b", whose lease ended too */
	jobq_job_release(&other);
	ck_assert_int_eq(claim(q2, &other), 0);
	t0 = mono_ms();
	jobq_wait(q2, 5000);
	took = mono_ms() - t0;
	ck_assert_msg(took >= 300 && took < 1500, "woke after %" PRId64 " ms", took);
	ck_assert_int_eq(claim(q2, &other), 1);
	ck_assert_str_eq(other.key, "a");
	jobq_job_release(&other);
	jobq_job_release(&job);
	jobq_close(q);
	jobq_close(q2);
}
END_TEST

/* ----- connections ----- */

/*
 * A server that drops the connections (as a restart does) costs nothing
 * once it is back: the next call connects again before sending anything,
 * and the listening connection comes back and hears other processes again.
 */
START_TEST(pg_connections_come_back)
{
	struct jobq *worker, *ingest;
	struct jobq_job job;
	struct child child;
	int64_t t0, t1, added_at;
	int fds[2];

	ck_assert_int_eq(pipe(fds), 0);
	child = child_start(late_enqueue_child, fds[1]);
	worker = open_q(0);
	ingest = open_q(JOBQ_INGEST);
	add(ingest, "thumb", "a", 0);
	claim_key(worker, "a", &job);
	drop_connections();
	sleep_ms(100);
	add(ingest, "thumb", "b", 0);
	finish(worker, &job, JOB_DONE);
	jobq_job_release(&job);
	claim_key(worker, "b", &job);
	finish(worker, &job, JOB_DONE);
	jobq_job_release(&job);
	/* The listener tries again every second; then another process's job wakes us. */
	sleep_ms(1500);
	ck_assert_int_eq(claim(worker, &job), 0);
	child_go(&child);
	t0 = mono_ms();
	jobq_wait(worker, 5000);
	t1 = mono_ms();
	ck_assert_int_eq(wait_child(child.pid), 0);
	ck_assert_int_eq(read(fds[0], &added_at, sizeof(added_at)), (ssize_t)sizeof(added_at));
	close(fds[0]);
	close(fds[1]);
	ck_assert_int_ge(t1 - t0, 250);
	ck_assert_msg(t1 - added_at < 500, "woke %" PRId64 " ms after the enqueue", t1 - added_at);
	jobq_close(worker);
	jobq_close(ingest);
}
END_TEST

/* Ends, after ms, the test's connections that are running an INSERT into jobs. */
static int drop_inserter_child(int ms)
{
	char q[512];
	PGconn *c;
	PGresult *res;
	int n = 0;

	sleep_ms(ms);
	snprintf(q, sizeof(q),
		 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
		 "WHERE application_name = '%s' AND state = 'active' "
		 "AND query LIKE '%%INSERT INTO jobs%%'",
		 app);
	c = PQconnectdb(base_url);
	res = PQexec(c, q);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		n = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	PQfinish(c);
	return n == 1 ? 0 : 1;
}

/*
 * The connection lost while a commit is in flight: the outcome is unknown,
 * and says so (the listener answers 503); the sender's retry is absorbed by
 * the dedupe key whichever way it went. Here a trigger holds the commit.
 */
START_TEST(pg_lost_commit_is_unknown)
{
	struct child child = child_start(drop_inserter_child, 500);
	struct jobq *q = open_q(JOBQ_INGEST);
	struct jobq_new j = job_new("thumb", "a", "s1");
	struct err e = ERR_INIT;
	size_t added = 9;

	sql("CREATE TABLE hold (x int); INSERT INTO hold VALUES (1); "
	    "CREATE FUNCTION held() RETURNS trigger LANGUAGE plpgsql AS "
	    "'BEGIN IF EXISTS (SELECT 1 FROM hold) THEN PERFORM pg_sleep(20); END IF; "
	    "RETURN NULL; END'; "
	    "CREATE TRIGGER held AFTER INSERT ON jobs EXECUTE FUNCTION held()");
	child_go(&child);
	ck_assert_int_eq(jobq_enqueue(q, &j, 1, &added, &e), -1);
	ck_assert_int_eq(wait_child(child.pid), 0);
	ck_assert_uint_eq(added, 0);
	ck_assert_int_eq(e.code, ERR_QUEUE);
	ck_assert_msg(strstr(e.msg, "outcome is unknown"), "%s", e.msg);
	sql("DELETE FROM hold");
	err_clear(&e);
	ck_assert_msg(jobq_enqueue(q, &j, 1, &added, &e) == 0, "%s", e.msg);
	ck_assert_msg(jobq_enqueue(q, &j, 1, &added, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(added, 0);
	ck_assert_int_eq(count_state(q, -1), 1);
	jobq_close(q);
}
END_TEST

/* ----- opening ----- */

START_TEST(pg_open_refuses_other_schemas)
{
	struct err e = ERR_INIT;
	struct jobq *q;

	ck_assert_ptr_null(jobq_open(path, JOBQ_NO_CREATE, &e));
	ck_assert_msg(strstr(e.msg, "is empty"), "%s", e.msg);
	sql("CREATE TABLE jobs (id int)");
	err_clear(&e);
	ck_assert_ptr_null(jobq_open(path, 0, &e));
	ck_assert_msg(strstr(e.msg, "is not an s3hook queue"), "%s", e.msg);
	sql("DROP TABLE jobs");
	q = open_q(0);
	jobq_close(q);
	sql("UPDATE meta SET value = '99' WHERE key = 'schema_version'");
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

START_TEST(pg_open_upgrades_an_older_schema)
{
	struct err e = ERR_INIT;
	struct jobq *q = open_q(0);
	char out[256];

	add(q, "thumb", "a", 0);
	jobq_close(q);
	/* A database as version 1 left it: no jobs_batch. */
	sql("DROP INDEX jobs_batch");
	sql("UPDATE meta SET value = '1' WHERE key = 'schema_version'");
	ck_assert_ptr_null(jobq_open(path, JOBQ_NO_CREATE, &e));
	ck_assert_msg(strstr(e.msg, "schema version 1, older than this s3hook's (2)"), "%s",
		      e.msg);
	q = open_q(0);
	ck_assert_int_eq(count_state(q, -1), 1);
	jobq_close(q);
	pg_sql(path, "SELECT value FROM meta WHERE key = 'schema_version'", out, sizeof(out));
	ck_assert_str_eq(out, "2");
	pg_sql(path,
	       "SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_batch' "
	       "AND schemaname = current_schema()",
	       out, sizeof(out));
	ck_assert_msg(strstr(out, "(batch, state) WHERE (batch IS NOT NULL)"), "%s", out);
}
END_TEST

/* A database that takes no writes is refused by serve, but `s3hook jobs` may read it. */
START_TEST(pg_open_refuses_a_read_only_database)
{
	struct err e = ERR_INIT;
	char url[2048];
	struct jobq *q;

	url_with(url, sizeof(url), "-cdefault_transaction_read_only%3Don");
	ck_assert_ptr_null(jobq_open(url, 0, &e));
	ck_assert_int_eq(e.code, ERR_QUEUE);
	ck_assert_msg(strstr(e.msg, "is not writable") && strstr(e.msg, "read-only"), "%s", e.msg);
	q = open_q(0);
	add(q, "thumb", "a", 0);
	jobq_close(q);
	err_clear(&e);
	ck_assert_ptr_null(jobq_open(url, JOBQ_INGEST, &e));
	ck_assert_msg(strstr(e.msg, "is not writable"), "%s", e.msg);
	q = jobq_open(url, JOBQ_NO_CREATE, &e);
	ck_assert_ptr_nonnull(q);
	ck_assert_int_eq(count_state(q, JOB_PENDING), 1);
	jobq_close(q);
}
END_TEST

/* A password in the URL never shows; the messages name the queue without it. */
START_TEST(pg_messages_hold_no_password)
{
	struct err e = ERR_INIT;
	char url[2048], *shown;
	const char *host = strstr(base_url, "@");

	ck_assert_ptr_nonnull(host);
	snprintf(url, sizeof(url), "postgres://s3hook:Sekr1t-pw@%s", host + 1);
	ck_assert_ptr_null(jobq_open(url, 0, &e));
	ck_assert_ptr_null(strstr(e.msg, "Sekr1t"));
	ck_assert_msg(strstr(e.msg, "cannot connect to queue 'postgres://s3hook@"), "%s", e.msg);
	snprintf(url, sizeof(url), "%s?password=Sekr1t-pw&connect_timeout=2", base_url);
	shown = jobq_url_shown(url);
	ck_assert_ptr_null(strstr(shown, "Sekr1t"));
	ck_assert_ptr_nonnull(strstr(base_url, shown));
	free(shown);
	shown = jobq_url_shown("/var/lib/s3hook/queue.db");
	ck_assert_str_eq(shown, "/var/lib/s3hook/queue.db");
	free(shown);
	err_clear(&e);
	ck_assert_ptr_null(jobq_open("postgresql://u:Sekr1t-pw@127.0.0.1:1/db", 0, &e));
	ck_assert_ptr_null(strstr(e.msg, "Sekr1t"));
	ck_assert_msg(strstr(e.msg, "cannot connect to queue 'postgres://u@127.0.0.1:1/db'"), "%s",
		      e.msg);
}
END_TEST

/* Opens and closes the queue at path; what the log said meanwhile into out. */
static void open_logged(enum jobq_flags flags, char *out, size_t size)
{
	char file[4200];
	struct jobq *q;
	ssize_t n;
	int fd;

	snprintf(file, sizeof(file), "%s/log", dir);
	fd = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	log_setup(LOG_INFO, LOG_LOGFMT, fd);
	q = open_q(flags);
	jobq_close(q);
	log_setup(LOG_INFO, LOG_LOGFMT, 2);
	n = pread(fd, out, size - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
}

/* The listener's 200 promises what synchronous_commit = off does not keep: say so at start. */
START_TEST(pg_warns_when_commits_are_not_synchronous)
{
	char url[2048], logged[4096];

	open_logged(JOBQ_INGEST, logged, sizeof(logged));
	ck_assert_msg(!strstr(logged, "synchronous_commit"), "%s", logged);
	url_with(url, sizeof(url), "-csynchronous_commit%3Doff");
	snprintf(path, sizeof(path), "%s", url);
	open_logged(JOBQ_INGEST, logged, sizeof(logged));
	ck_assert_msg(strstr(logged, "synchronous_commit is off"), "%s", logged);
	ck_assert_msg(strstr(logged, "queue=postgres://s3hook@"), "%s", logged);
	/* The workers' handle commits without waiting anyway: no warning there. */
	open_logged(0, logged, sizeof(logged));
	ck_assert_msg(!strstr(logged, "synchronous_commit"), "%s", logged);
}
END_TEST

/* A handler's output is any bytes; a text column takes UTF-8 only. */
START_TEST(pg_output_need_not_be_utf8)
{
	struct jobq *q = open_q(0);
	struct jobq_result res = JOBQ_RESULT_INIT;
	struct err e = ERR_INIT;
	struct jobq_job job;

	add(q, "thumb", "a", 0);
	claim_key(q, "a", &job);
	res.exit_code = 0;
	res.stdout_tail = "ok \xff\xfe end \xc3\xa4 \xed\xa0\x80 \xe2\x82";
	res.stderr_tail = "\xc0\xaf";
	ck_assert_msg(jobq_finish(q, &job, JOB_DONE, &res, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(get(q, job.id).stdout_tail,
			 "ok \xef\xbf\xbd\xef\xbf\xbd end \xc3\xa4 \xef\xbf\xbd\xef\xbf\xbd"
			 "\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd");
	ck_assert_str_eq(get(q, job.id).stderr_tail, "\xef\xbf\xbd\xef\xbf\xbd");
	jobq_job_release(&job);
	jobq_close(q);
}
END_TEST

/* ----- the server ----- */

/* Runs a command, its first line of output into out (may be NULL); its exit status. */
static int run_cmd(const char *cmd, char *out, size_t size)
{
	char line[2048] = "";
	FILE *p = popen(cmd, "r");
	int status;

	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p))
		if (out && !*out)
			snprintf(out, size, "%s", line);
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Sets PG* from `scripts/local-pg env` ("export A=1 B=2 ..."); the URL into base_url. */
static int take_env(const char *script)
{
	char cmd[4400], line[2048] = "", *tok, *next, *eq;

	snprintf(cmd, sizeof(cmd), "'%s' env", script);
	if (run_cmd(cmd, line, sizeof(line)) != 0)
		return -1;
	line[strcspn(line, "\n")] = '\0';
	for (tok = line; tok; tok = next) {
		next = strchr(tok, ' ');
		if (next)
			*next++ = '\0';
		eq = strchr(tok, '=');
		if (eq) {
			*eq = '\0';
			setenv(tok, eq + 1, 1);
		}
	}
	if (!getenv("S3HOOK_PG_URL"))
		return -1;
	snprintf(base_url, sizeof(base_url), "%s", getenv("S3HOOK_PG_URL"));
	return 0;
}

static Suite *pg_suite(void)
{
	Suite *s = suite_create("jobq_pg");
	TCase *model = tcase_create("model"), *own = tcase_create("postgres");

	tcase_add_checked_fixture(model, pg_setup, pg_teardown);
	tcase_set_timeout(model, 60);
	/* check_jobq.c's tests that are the model's, not SQLite's. */
	tcase_add_test(model, enqueue_dedupes);
	tcase_add_test(model, enqueue_refuses_bad_jobs_whole);
	tcase_add_test(model, stored_fields_round_trip);
	tcase_add_test(model, claim_order_priority_then_age);
	tcase_add_test(model, one_running_job_per_key_and_handler);
	tcase_add_test(model, handler_filter_and_busy_handlers);
	tcase_add_test(model, finish_needs_the_current_token);
	tcase_add_test(model, expired_lease_is_taken_over);
	tcase_add_test(model, renew_extends_the_lease);
	tcase_add_test(model, fail_retries_then_dead);
	tcase_add_test(model, retry_revives_dead_jobs);
	tcase_add_test(model, release_gives_the_attempt_back);
	tcase_add_test(model, ledger_keeps_what_finished);
	tcase_add_test(model, prune_deletes_old_finished_jobs_only);
	tcase_add_test(model, prune_in_batches);
	tcase_add_test(model, checkpoint_moves_with_its_page);
	tcase_add_test(model, reclaim_orphans_of_dead_processes);
	tcase_add_test(model, two_processes_claim_each_job_once);
	tcase_add_test(model, concurrent_first_opens_migrate_once);
	tcase_add_test(model, wait_wakes_when_another_process_adds);
	tcase_add_test(model, wait_after_empty_claim_misses_nothing);
	tcase_add_test(model, wait_returns_on_wake_and_when_a_retry_is_due);
	tcase_add_test(model, list_and_count_filter);
	suite_add_tcase(s, model);

	tcase_add_checked_fixture(own, pg_setup, pg_teardown);
	tcase_set_timeout(own, 60);
	tcase_add_test(own, pg_reclaim_reads_the_owner);
	tcase_add_test(own, pg_one_job_of_a_triple_runs_at_a_time);
	tcase_add_test(own, pg_times_come_from_the_database);
	tcase_add_test(own, pg_connections_come_back);
	tcase_add_test(own, pg_lost_commit_is_unknown);
	tcase_add_test(own, pg_open_refuses_other_schemas);
	tcase_add_test(own, pg_open_upgrades_an_older_schema);
	tcase_add_test(own, pg_open_refuses_a_read_only_database);
	tcase_add_test(own, pg_messages_hold_no_password);
	tcase_add_test(own, pg_warns_when_commits_are_not_synchronous);
	tcase_add_test(own, pg_output_need_not_be_utf8);
	suite_add_tcase(s, own);
	return s;
}

int main(void)
{
	char script[4200], cmd[4300];
	const char *bin = getenv("LOCAL_PG_BIN");
	int started = 0, r;

	snprintf(script, sizeof(script), "%s/../scripts/local-pg", test_dir());
	snprintf(cmd, sizeof(cmd), "%s/pg_ctl", bin && *bin ? bin : "/usr/lib/postgresql/15/bin");
	if (access(cmd, X_OK) != 0) {
		fprintf(stderr,
			"\n*** check_jobq_pg: PostgreSQL is not installed (%s): the "
			"PostgreSQL queue is NOT TESTED (scripts/install-deps installs it) ***\n\n",
			cmd);
		return 0;
	}
	snprintf(cmd, sizeof(cmd), "'%s' status >/dev/null 2>&1", script);
	if (run_cmd(cmd, NULL, 0) != 0) {
		snprintf(cmd, sizeof(cmd), "'%s' up >&2", script);
		if (run_cmd(cmd, NULL, 0) != 0) {
			fprintf(stderr, "check_jobq_pg: scripts/local-pg up failed\n");
			return 1;
		}
		started = 1;
	}
	if (take_env(script) < 0) {
		fprintf(stderr, "check_jobq_pg: scripts/local-pg env failed\n");
		r = 1;
	} else {
		r = test_main(pg_suite());
	}
	if (started) {
		snprintf(cmd, sizeof(cmd), "'%s' down >/dev/null 2>&1", script);
		run_cmd(cmd, NULL, 0);
	}
	return r;
}
