/*
 * jobq_sqlite: the queue in one SQLite file in WAL mode, the default backend.
 *
 * Every write is one BEGIN IMMEDIATE transaction: writers queue for the one
 * write lock (busy_timeout) up front instead of failing half-way when a read
 * would have to become a write, and no transaction stays open while the
 * caller does anything slow. The ingest handle commits with synchronous=FULL
 * (its 200 promises the jobs are on disk); the others use NORMAL, where a
 * power cut may undo the last claims and finishes, which only runs a job
 * again. Each write also checks that the path still names the file opened:
 * SQLite would go on writing to a deleted file through its descriptor.
 */
#define S3HOOK_JOBQ_BACKEND
#include "core/jobq.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define BUSY_TIMEOUT_MS 5000
#define WAL_KEEP_BYTES	"67108864" /* what a checkpointed WAL is cut back to */
#define BATCH_ROWS	1000	   /* rows prune and mass retry change per transaction */
#define MIN_FREE_BYTES	(1 << 20)  /* less free on the queue's disk fails the health check */
#define STR_(x)		#x
#define STR(x)		STR_(x)

/*
 * The schema's history: migrations[i] takes a file from version i to i + 1,
 * in the transaction that records the new version. Never edit one that has
 * shipped; add the next.
 *
 * due_ms is when a job may be claimed: created_ms while pending (so pending
 * jobs go oldest first), next_ms in retry, the end of the lease while
 * running; NULL once final. So "claimable" is one range, due_ms <= now, and
 * jobs_due holds only the live rows: one handler's best job is a short walk
 * whatever the number of finished rows or of other handlers' jobs.
 */
static const char *const migrations[] = {
	/* 1: the first schema */
	"CREATE TABLE meta (\n"
	"	key TEXT PRIMARY KEY,\n"
	"	value TEXT NOT NULL\n"
	") WITHOUT ROWID;\n"
	"CREATE TABLE jobs (\n"
	"	id INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: a logged id names one job\n"
	"	state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'retry', 'done',\n"
	"		'dead', 'skipped', 'gone', 'superseded')),\n"
	"	handler TEXT NOT NULL,\n"
	"	bucket TEXT NOT NULL,\n"
	"	key TEXT NOT NULL,\n"
	"	version_id TEXT NOT NULL,\n"
	"	etag TEXT NOT NULL,\n"
	"	version_or_etag TEXT NOT NULL, -- version_id, or etag when there is none\n"
	"	sequencer TEXT NOT NULL,\n"
	"	event_name TEXT NOT NULL,\n"
	"	event_json TEXT NOT NULL,\n"
	"	depth INTEGER NOT NULL,\n"
	"	priority INTEGER NOT NULL,\n"
	"	attempts INTEGER NOT NULL DEFAULT 0,\n"
	"	max_attempts INTEGER NOT NULL,\n"
	"	batch TEXT,\n"
	"	created_ms INTEGER NOT NULL,\n"
	"	updated_ms INTEGER NOT NULL,\n"
	"	next_ms INTEGER NOT NULL DEFAULT 0,\n"
	"	due_ms INTEGER,\n"
	"	lease_owner TEXT,\n"
	"	lease_token INTEGER,\n"
	"	lease_until_ms INTEGER,\n"
	"	exit_code INTEGER NOT NULL DEFAULT -1,\n"
	"	signal INTEGER NOT NULL DEFAULT 0,\n"
	"	last_error TEXT NOT NULL DEFAULT '',\n"
	"	stdout_tail TEXT NOT NULL DEFAULT '',\n"
	"	stderr_tail TEXT NOT NULL DEFAULT '',\n"
	"	cpu_user_s REAL NOT NULL DEFAULT 0,\n"
	"	cpu_sys_s REAL NOT NULL DEFAULT 0,\n"
	"	max_rss_kib INTEGER NOT NULL DEFAULT 0,\n"
	"	wall_ms INTEGER NOT NULL DEFAULT 0\n"
	");\n"
	"CREATE UNIQUE INDEX jobs_dedupe ON jobs (bucket, key, version_or_etag, sequencer, "
	"handler);\n"
	"CREATE INDEX jobs_due ON jobs (handler, priority, due_ms) WHERE due_ms IS NOT NULL;\n"
	"CREATE INDEX jobs_running ON jobs (bucket, key, handler, lease_until_ms)\n"
	"	WHERE state = 'running';\n"
	"CREATE INDEX jobs_later ON jobs (due_ms) WHERE state IN ('retry', 'running');\n"
	"CREATE INDEX jobs_state ON jobs (state, updated_ms);\n"
	"CREATE TABLE ledger (\n"
	"	bucket TEXT NOT NULL,\n"
	"	key TEXT NOT NULL,\n"
	"	version_or_etag TEXT NOT NULL,\n"
	"	handler TEXT NOT NULL,\n"
	"	outcome TEXT NOT NULL,\n"
	"	job_id INTEGER NOT NULL,\n"
	"	finished_ms INTEGER NOT NULL,\n"
	"	PRIMARY KEY (bucket, key, version_or_etag, handler)\n"
	") WITHOUT ROWID;\n"
	"CREATE TABLE checkpoints (\n"
	"	id TEXT PRIMARY KEY,\n"
	"	value TEXT NOT NULL,\n"
	"	updated_ms INTEGER NOT NULL\n"
	") WITHOUT ROWID;\n",
	/*
	 * 2: reprocess counts its batch twice a second; without an index that
	 * read every row (0.5 s warm, 1.6 s cold for 243,000 jobs). Partial:
	 * the listener's jobs have no batch and pay nothing for it.
	 */
	"CREATE INDEX jobs_batch ON jobs (batch, state) WHERE batch IS NOT NULL;\n",
};

#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(*migrations)))

enum stmt {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_INSERT,
	ST_CP_SET,
	ST_CP_GET,
	ST_NEXT_HANDLER,
	ST_NEXT_PRIORITY,
	ST_CANDIDATE,
	ST_CLAIM,
	ST_RENEW,
	ST_END,
	ST_LEDGER_PUT,
	ST_UNLEASE,
	ST_LEASES,
	ST_RETRY_ONE,
	ST_RETRY_DEAD,
	ST_STATE_OF,
	ST_PRUNE,
	ST_LEDGER_DONE,
	ST_HEARTBEAT,
	ST_OLDEST,
	ST_NEXT_DUE,
	ST_DATA_VERSION,
	ST_N
};

static const char *const stmt_sql[ST_N] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_INSERT] = "INSERT INTO jobs (state, handler, bucket, key, version_id, etag, "
		      "version_or_etag, sequencer, event_name, event_json, depth, priority, "
		      "max_attempts, batch, created_ms, updated_ms, due_ms) "
		      "VALUES ('pending', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
		      "?14, ?14, ?14) ON CONFLICT DO NOTHING",
	[ST_CP_SET] = "INSERT INTO checkpoints (id, value, updated_ms) VALUES (?1, ?2, ?3) "
		      "ON CONFLICT (id) DO UPDATE SET value = excluded.value, "
		      "updated_ms = excluded.updated_ms",
	[ST_CP_GET] = "SELECT value FROM checkpoints WHERE id = ?1",
	/* One step of a skip scan over jobs_due: the next handler, the next priority. */
	[ST_NEXT_HANDLER] = "SELECT handler FROM jobs WHERE handler > ?1 AND due_ms IS NOT NULL "
			    "ORDER BY handler LIMIT 1",
	[ST_NEXT_PRIORITY] = "SELECT priority FROM jobs WHERE handler = ?1 AND priority > ?2 "
			     "AND due_ms IS NOT NULL ORDER BY priority LIMIT 1",
	/* A claimable job of one handler and priority whose (bucket, key, handler) is free. */
	[ST_CANDIDATE] = "SELECT id, due_ms FROM jobs AS j "
			 "WHERE j.handler = ?1 AND j.priority = ?2 AND j.due_ms <= ?3 "
			 "AND NOT EXISTS (SELECT 1 FROM jobs AS r WHERE r.state = 'running' "
			 "AND r.bucket = j.bucket AND r.key = j.key AND r.handler = j.handler "
			 "AND r.lease_until_ms > ?3 AND r.id <> j.id) "
			 "ORDER BY j.due_ms, j.id LIMIT 1",
	[ST_CLAIM] = "UPDATE jobs SET state = 'running', attempts = attempts + 1, "
		     "lease_token = ?2, lease_owner = ?3, lease_until_ms = ?4, due_ms = ?4, "
		     "updated_ms = ?5 WHERE id = ?1 RETURNING " JOB_COLS("lease_token"),
	[ST_RENEW] = "UPDATE jobs SET lease_until_ms = ?3, due_ms = ?3 "
		     "WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
	/* ?3 is the state asked for; a retry with no attempt left is dead instead. */
	[ST_END] =
		"UPDATE jobs SET "
		"state = CASE WHEN ?3 = 'retry' AND attempts >= max_attempts THEN 'dead' "
		"ELSE ?3 END, "
		"next_ms = CASE WHEN ?3 = 'retry' AND attempts < max_attempts THEN ?4 ELSE 0 END, "
		"due_ms = CASE WHEN ?3 = 'retry' AND attempts < max_attempts THEN ?4 END, " UNLEASED
		", updated_ms = ?5, exit_code = ?6, signal = ?7, last_error = ?8, "
		"stdout_tail = ?9, stderr_tail = ?10, cpu_user_s = ?11, cpu_sys_s = ?12, "
		"max_rss_kib = ?13, wall_ms = ?14 "
		"WHERE id = ?1 AND lease_token = ?2 AND state = 'running' RETURNING state",
	/* A later outcome replaces an earlier one, but nothing replaces done. */
	[ST_LEDGER_PUT] = "INSERT INTO ledger (bucket, key, version_or_etag, handler, outcome, "
			  "job_id, finished_ms) SELECT bucket, key, version_or_etag, handler, "
			  "state, id, ?2 FROM jobs WHERE id = ?1 "
			  "ON CONFLICT (bucket, key, version_or_etag, handler) DO UPDATE SET "
			  "outcome = excluded.outcome, job_id = excluded.job_id, "
			  "finished_ms = excluded.finished_ms "
			  "WHERE ledger.outcome <> 'done' OR excluded.outcome = 'done'",
	[ST_UNLEASE] =
		"UPDATE jobs SET state = 'pending', attempts = MAX(attempts - ?3, 0), " UNLEASED
		", due_ms = created_ms, updated_ms = ?4 "
		"WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
	[ST_LEASES] = "SELECT id, lease_token, lease_owner FROM jobs WHERE state = 'running'",
	[ST_RETRY_ONE] = "UPDATE jobs SET state = 'pending', attempts = 0, next_ms = 0, "
			 "due_ms = created_ms, updated_ms = ?2 "
			 "WHERE id = ?1 AND state IN ('dead', 'retry')",
	[ST_RETRY_DEAD] = "UPDATE jobs SET state = 'pending', attempts = 0, next_ms = 0, "
			  "due_ms = created_ms, updated_ms = ?1 WHERE id IN "
			  "(SELECT id FROM jobs WHERE state = 'dead' LIMIT " STR(BATCH_ROWS) ")",
	[ST_STATE_OF] = "SELECT state FROM jobs WHERE id = ?1",
	[ST_PRUNE] = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs "
		     "WHERE state IN ('done', 'skipped', 'gone', 'superseded') "
		     "AND updated_ms < ?1 LIMIT " STR(BATCH_ROWS) ")",
	[ST_LEDGER_DONE] = "SELECT 1 FROM ledger WHERE bucket = ?1 AND key = ?2 "
			   "AND version_or_etag = ?3 AND handler = ?4 AND outcome = 'done'",
	[ST_HEARTBEAT] = "INSERT INTO meta (key, value) VALUES ('heartbeat', ?1) "
			 "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[ST_OLDEST] = "SELECT MIN(updated_ms) FROM jobs WHERE state = 'pending'",
	/* Without statistics the planner would walk jobs_state over every retry row. */
	[ST_NEXT_DUE] = "SELECT MIN(due_ms) FROM jobs INDEXED BY jobs_later "
			"WHERE state IN ('retry', 'running') AND due_ms > ?1",
	[ST_DATA_VERSION] = "PRAGMA data_version",
};

struct jobq_backend {
	sqlite3 *db;
	char *path; /* as given, for messages */
	char *file; /* the absolute path SQLite opened */
	dev_t dev;  /* the file opened, to notice it deleted or replaced */
	ino_t ino;
	sqlite3_stmt *st[ST_N];
};

/* ----- errors and statements ----- */

/* Sets e from the connection's last error; what names the operation. Returns -1. */
static int db_fail(struct jobq_backend *b, const char *what, struct err *e)
{
	int code = sqlite3_extended_errcode(b->db), sys = sqlite3_system_errno(b->db);
	const char *path = SHORT(b->path);

	if (!e || err_is_set(e))
		return -1;
	if ((code & 0xff) == SQLITE_FULL)
		err_set(e, ERR_QUEUE, "queue '%s': %s: the disk is full", path, what);
	else if (sys && ((code & 0xff) == SQLITE_IOERR || (code & 0xff) == SQLITE_CANTOPEN))
		err_set(e, ERR_QUEUE, "queue '%s': %s: %s (%s)", path, what, sqlite3_errmsg(b->db),
			strerror(sys));
	else
		err_set(e, ERR_QUEUE, "queue '%s': %s: %s", path, what, sqlite3_errmsg(b->db));
	e->sys_errno = (code & 0xff) == SQLITE_IOERR ? sys : 0;
	return -1;
}

/* The cached statement, reset, its bindings cleared; NULL (e set) on failure. */
static sqlite3_stmt *stmt(struct jobq_backend *b, enum stmt id, struct err *e)
{
	sqlite3_stmt *st = b->st[id];

	if (!st && sqlite3_prepare_v3(b->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
				      &b->st[id], NULL) != SQLITE_OK) {
		db_fail(b, "cannot prepare a query", e);
		return NULL;
	}
	st = b->st[id];
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* Runs a statement to its end (any rows unread) and resets it. */
static int run(struct jobq_backend *b, sqlite3_stmt *st, const char *what, struct err *e)
{
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE)
		db_fail(b, what, e);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/*
 * Steps to the first row: 1 there is one (read it, then sqlite3_reset(), or
 * the read transaction stays open), 0 none (reset), -1 error (reset).
 */
static int first_row(struct jobq_backend *b, sqlite3_stmt *st, const char *what, struct err *e)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc != SQLITE_DONE)
		db_fail(b, what, e);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* The first row's first column as a number; *v = 0 when there is no row or it is NULL. */
static int one_int(struct jobq_backend *b, sqlite3_stmt *st, const char *what, int64_t *v,
		   struct err *e)
{
	int r = first_row(b, st, what, e);

	*v = r > 0 ? sqlite3_column_int64(st, 0) : 0;
	if (r > 0)
		sqlite3_reset(st);
	return r;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* A failed bind (too big, out of memory) would leave NULL behind: refuse the write. */
static int bind_fail(struct jobq_backend *b, sqlite3_stmt *st, const char *what, struct err *e)
{
	db_fail(b, what, e);
	sqlite3_reset(st);
	return -1;
}

/* ----- transactions ----- */

/* The path still names the file opened: jobs written to a deleted file are lost at exit. */
static int same_file(struct jobq_backend *b, struct err *e)
{
	struct stat st;

	if (stat(b->file, &st) < 0) {
		if (errno == ENOENT)
			return err_set(e, ERR_QUEUE, "queue '%s' was deleted since it was opened",
				       SHORT(b->path));
		return err_sys(e, ERR_QUEUE, "cannot check queue '%s'", SHORT(b->path));
	}
	if (st.st_dev != b->dev || st.st_ino != b->ino)
		return err_set(e, ERR_QUEUE, "queue '%s' was replaced since it was opened",
			       SHORT(b->path));
	return 0;
}

static void tx_rollback(struct jobq_backend *b)
{
	sqlite3_stmt *st;
	int i;

	/*
	 * A statement left unreset after an error keeps its read transaction: after
	 * SQLITE_FULL or an I/O error the pager then stays in its error state and
	 * every later call fails the same way, even once the disk has room again.
	 */
	for (i = 0; i < ST_N; i++)
		if (b->st[i])
			sqlite3_reset(b->st[i]);

	/* Some errors (full, I/O) have rolled the transaction back already. */
	if (!sqlite3_get_autocommit(b->db) && (st = stmt(b, ST_ROLLBACK, NULL)))
		run(b, st, "cannot roll back", NULL);
}

static int tx_begin(struct jobq_backend *b, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_BEGIN, e);

	if (!st || run(b, st, "cannot start a transaction", e) < 0)
		return -1;
	if (same_file(b, e) == 0)
		return 0;
	tx_rollback(b);
	return -1;
}

/* Commits when ok, else rolls back; 0 only when committed. */
static int tx_end(struct jobq_backend *b, int ok, struct err *e)
{
	sqlite3_stmt *st;
	int full;

	if (ok && (st = stmt(b, ST_COMMIT, e)) && run(b, st, "cannot commit", e) == 0)
		return 0;
	full = (sqlite3_extended_errcode(b->db) & 0xff) == SQLITE_FULL;
	tx_rollback(b);
	/*
	 * A full disk: the WAL only shrinks after a checkpoint, which a commit that
	 * cannot land never reaches. Checkpoint and truncate it now, so the space
	 * it holds comes back as soon as there is room to finish the checkpoint.
	 */
	if (full)
		sqlite3_wal_checkpoint_v2(b->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	return -1;
}

/* ----- opening and the schema ----- */

/* Runs a query of one row; v[i] is its column i (0 for NULL or no row). */
static int query_ints(struct jobq_backend *b, const char *sql, int64_t *v, int n, struct err *e)
{
	sqlite3_stmt *st = NULL;
	int i, r;

	if (sqlite3_prepare_v2(b->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_fail(b, "cannot read the schema", e);
	r = first_row(b, st, "cannot read the schema", e);
	for (i = 0; i < n; i++)
		v[i] = r > 0 ? sqlite3_column_int64(st, i) : 0;
	sqlite3_finalize(st);
	return r < 0 ? -1 : 0;
}

/*
 * The file's schema version: 0 when empty; an error when it is not a queue.
 * One statement, so one snapshot: another process may be committing the
 * first migration right now.
 */
static int schema_version(struct jobq_backend *b, int *v, struct err *e)
{
	int64_t n[2], version;

	if (query_ints(b,
		       "SELECT (SELECT count(*) FROM sqlite_master WHERE name = 'meta'), "
		       "(SELECT count(*) FROM sqlite_master)",
		       n, 2, e) < 0)
		return -1;
	*v = 0;
	if (!n[0] && !n[1])
		return 0;
	if (!n[0] ||
	    query_ints(b,
		       "SELECT CAST(value AS INTEGER) FROM meta "
		       "WHERE key = 'schema_version'",
		       &version, 1, e) < 0 ||
	    version < 1 || version > 1000000)
		return err_set(e, ERR_QUEUE, "'%s' is not an s3hook queue", SHORT(b->path));
	*v = (int)version;
	return 0;
}

static int migrate_from(struct jobq_backend *b, int v, struct err *e)
{
	char sql[128];

	for (; v < SCHEMA_VERSION; v++) {
		if (sqlite3_exec(b->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK)
			return db_fail(b, "cannot upgrade the schema", e);
		snprintf(sql, sizeof(sql),
			 "INSERT INTO meta (key, value) VALUES ('schema_version', '%d') "
			 "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
			 v + 1);
		if (sqlite3_exec(b->db, sql, NULL, NULL, NULL) != SQLITE_OK)
			return db_fail(b, "cannot upgrade the schema", e);
	}
	return 0;
}

static int too_new(struct jobq_backend *b, int v, struct err *e)
{
	return err_set(e, ERR_QUEUE,
		       "queue '%s' has schema version %d, newer than this s3hook knows (%d)",
		       SHORT(b->path), v, SCHEMA_VERSION);
}

/*
 * Brings the schema up to date, in a write transaction: of two processes
 * opening a new file at once, the second finds it done when it gets the lock.
 */
static int migrate(struct jobq_backend *b, struct err *e)
{
	int v, ok;

	if (tx_begin(b, e) < 0)
		return -1;
	ok = schema_version(b, &v, e) == 0 && (v <= SCHEMA_VERSION || too_new(b, v, e) == 0) &&
	     migrate_from(b, v, e) == 0;
	return tx_end(b, ok, e);
}

static int settle_schema(struct jobq_backend *b, enum jobq_flags flags, struct err *e)
{
	int v;

	if (schema_version(b, &v, e) < 0)
		return -1;
	if (v == SCHEMA_VERSION)
		return 0;
	if (v > SCHEMA_VERSION)
		return too_new(b, v, e);
	if (!(flags & JOBQ_NO_CREATE))
		return migrate(b, e);
	if (v == 0)
		return err_set(e, ERR_QUEUE, "queue '%s' is empty (no s3hook has used it yet)",
			       SHORT(b->path));
	return err_set(e, ERR_QUEUE,
		       "queue '%s' has schema version %d, older than this s3hook's (%d): "
		       "serve upgrades it",
		       SHORT(b->path), v, SCHEMA_VERSION);
}

/*
 * Creates the file 0600 before SQLite opens it: SQLite would make it 0644
 * (less the umask), and it gives the -wal and -shm files the database's mode.
 */
static int make_file(const char *path, enum jobq_flags flags, struct err *e)
{
	struct stat st;
	int fd;

	if (!strcmp(path, ":memory:"))
		return err_set(e, ERR_CONFIG, "queue '%s' must be a file", path);
	if (flags & JOBQ_NO_CREATE) {
		if (stat(path, &st) == 0)
			return 0;
		if (errno == ENOENT)
			return err_set(e, ERR_QUEUE, "queue '%s' does not exist", SHORT(path));
		return err_sys(e, ERR_QUEUE, "cannot open queue '%s'", SHORT(path));
	}
	/*
	 * Never open() a file SQLite may already have open in this process (the
	 * listener's and the workers' connections share it): close() would drop
	 * every POSIX lock the process holds on it, SQLite's included, and two
	 * connections could then both write. So only a file that does not exist
	 * yet is created here, with O_EXCL.
	 */
	if (stat(path, &st) == 0)
		return 0;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0 && errno == EEXIST)
		return 0;
	if (fd < 0)
		return err_sys(e, ERR_QUEUE, "cannot open queue '%s'", SHORT(path));
	close(fd);
	return 0;
}

/* Set on every connection (the journal mode, once set, stays with the file). */
static const char *const conn_pragmas[] = {
	("PRAGMA journal_size_limit = " WAL_KEEP_BYTES),
	"PRAGMA trusted_schema = OFF",
	/*
	 * Statement journals (RETURNING and AUTOINCREMENT need them inside a
	 * transaction) in memory, 1 KiB at a time. On disk, the default, each
	 * one cost a 64 KiB malloc that glibc handed back to the kernel and took
	 * again with brk: measured, 70% of the time of a claim or a finish.
	 */
	"PRAGMA temp_store = MEMORY",
};

/* Runs "PRAGMA journal_mode = WAL": 1 when the file is in WAL mode now, 0 when not, -1. */
static int try_wal(struct jobq_backend *b, int *busy, struct err *e)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *mode;
	int r;

	*busy = 0;
	if (sqlite3_prepare_v2(b->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK)
		return db_fail(b, "cannot use WAL mode", e);
	r = sqlite3_step(st);
	*busy = (r & 0xff) == SQLITE_BUSY;
	if (r == SQLITE_ROW) {
		mode = sqlite3_column_text(st, 0);
		r = mode && !strcmp((const char *)mode, "wal");
	} else if (!*busy) {
		db_fail(b, "cannot use WAL mode", e);
		r = -1;
	}
	sqlite3_finalize(st);
	return r;
}

/*
 * Switching a new file to WAL needs it to itself. Two processes opening it
 * at once can each hold what the other waits for, and SQLite then answers
 * busy at once rather than wait (busy_timeout does not apply): try again.
 */
static int use_wal(struct jobq_backend *b, struct err *e)
{
	int busy, r, waited;

	for (waited = 0;; waited += 10) {
		r = try_wal(b, &busy, e);
		if (!busy || waited >= BUSY_TIMEOUT_MS)
			break;
		sqlite3_sleep(10);
	}
	if (busy)
		return db_fail(b, "cannot use WAL mode", e);
	if (r == 0)
		return err_set(e, ERR_QUEUE, "queue '%s': cannot use WAL mode", SHORT(b->path));
	return r < 0 ? -1 : 0;
}

static int pragmas(struct jobq_backend *b, enum jobq_flags flags, struct err *e)
{
	size_t i;

	if (use_wal(b, e) < 0)
		return -1;
	for (i = 0; i < sizeof(conn_pragmas) / sizeof(*conn_pragmas); i++)
		if (sqlite3_exec(b->db, conn_pragmas[i], NULL, NULL, NULL) != SQLITE_OK)
			return db_fail(b, "cannot set up the connection", e);
	/* The ingest handle's 200 promises the jobs are on disk; the rest can only re-run one. */
	if (sqlite3_exec(b->db,
			 flags & JOBQ_INGEST ? "PRAGMA synchronous = FULL"
					     : "PRAGMA synchronous = NORMAL",
			 NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(b, "cannot set up the connection", e);
	return 0;
}

/*
 * Waits for the write lock in steps of 200 us rather than SQLite's default
 * 1, 2, 5, 10... ms: the lock is mostly held for one fsync by the listener's
 * group commit, and a worker that oversleeps it leaves a CPU idle per job.
 */
static int busy_wait(void *arg, int tries)
{
	int64_t waited_us = tries < 50 ? (int64_t)tries * 200 : 10000 + (int64_t)(tries - 50) * 2000;

	(void)arg;
	if (waited_us >= (int64_t)BUSY_TIMEOUT_MS * 1000)
		return 0;
	usleep(tries < 50 ? 200 : 2000);
	return 1;
}

static int connect_db(struct jobq_backend *b, enum jobq_flags flags, struct err *e)
{
	const char *file;
	struct stat st;
	int rc;

	rc = sqlite3_open_v2(b->path, &b->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		if (!b->db)
			return err_set(e, ERR_NOMEM, "cannot open queue '%s'", SHORT(b->path));
		return db_fail(b, "cannot open", e);
	}
	sqlite3_extended_result_codes(b->db, 1);
	sqlite3_busy_handler(b->db, busy_wait, NULL);
	/* SQLite opens a write-protected file read-only: fine to list jobs, not to run them. */
	if (!(flags & JOBQ_NO_CREATE) && sqlite3_db_readonly(b->db, "main") == 1)
		return err_set(e, ERR_QUEUE, "cannot open queue '%s': the file is read-only",
			       SHORT(b->path));
	file = sqlite3_db_filename(b->db, "main");
	b->file = xstrdup(file && *file ? file : b->path);
	if (stat(b->file, &st) < 0)
		return err_sys(e, ERR_QUEUE, "cannot open queue '%s'", SHORT(b->path));
	b->dev = st.st_dev;
	b->ino = st.st_ino;
	return pragmas(b, flags, e);
}

static void sq_close(struct jobq_backend *b)
{
	size_t i;

	if (!b)
		return;
	for (i = 0; i < ST_N; i++)
		sqlite3_finalize(b->st[i]);
	sqlite3_close(b->db);
	free(b->path);
	free(b->file);
	free(b);
}

static struct jobq_backend *sq_open(const char *url, enum jobq_flags flags, struct err *e)
{
	struct jobq_backend *b = xcalloc(1, sizeof(*b));

	b->path = xstrdup(url);
	if (make_file(url, flags, e) < 0 || connect_db(b, flags, e) < 0 ||
	    settle_schema(b, flags, e) < 0) {
		sq_close(b);
		return NULL;
	}
	return b;
}

/* ----- adding ----- */

static int insert_job(struct jobq_backend *b, const struct jobq_new *j, int64_t now, size_t *added,
		      struct err *e)
{
	const char *version = j->version_id ? j->version_id : "";
	const char *etag = j->etag ? j->etag : "";
	sqlite3_stmt *st = stmt(b, ST_INSERT, e);
	int rc;

	if (!st)
		return -1;
	rc = bind_text(st, 1, j->handler) | bind_text(st, 2, j->bucket) | bind_text(st, 3, j->key) |
	     bind_text(st, 4, version) | bind_text(st, 5, etag) |
	     bind_text(st, 6, *version ? version : etag) |
	     bind_text(st, 7, j->sequencer ? j->sequencer : "") |
	     bind_text(st, 8, j->event_name ? j->event_name : "") |
	     bind_text(st, 9, j->event_json) | sqlite3_bind_int(st, 10, j->depth) |
	     sqlite3_bind_int(st, 11, j->priority) | sqlite3_bind_int(st, 12, j->max_attempts) |
	     bind_text(st, 13, j->batch) | sqlite3_bind_int64(st, 14, now);
	if (rc != SQLITE_OK)
		return bind_fail(b, st, "cannot add jobs", e);
	if (run(b, st, "cannot add jobs", e) < 0)
		return -1;
	*added += (size_t)sqlite3_changes(b->db);
	return 0;
}

static int set_checkpoint(struct jobq_backend *b, const char *id, const char *value, int64_t now,
			  struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_CP_SET, e);

	if (!st)
		return -1;
	if ((bind_text(st, 1, id) | bind_text(st, 2, value) | sqlite3_bind_int64(st, 3, now)) !=
	    SQLITE_OK)
		return bind_fail(b, st, "cannot save a checkpoint", e);
	return run(b, st, "cannot save a checkpoint", e);
}

static int sq_enqueue(struct jobq_backend *b, const struct jobq_new *jobs, size_t n,
		      const char *cp_id, const char *cp_value, int64_t now, size_t *added,
		      struct err *e)
{
	size_t i, got = 0;
	int ok = 1;

	if (tx_begin(b, e) < 0)
		return -1;
	for (i = 0; ok && i < n; i++)
		ok = insert_job(b, &jobs[i], now, &got, e) == 0;
	if (ok && cp_id)
		ok = set_checkpoint(b, cp_id, cp_value, now, e) == 0;
	if (tx_end(b, ok, e) < 0)
		return -1;
	*added = got;
	return 0;
}

/* ----- claiming ----- */

/* The best claimable job seen so far: lowest priority, then earliest due, then lowest id. */
struct best {
	int found;
	int64_t id, priority, due;
};

static void consider(struct best *best, int64_t id, int64_t priority, int64_t due)
{
	if (best->found &&
	    (priority > best->priority || (priority == best->priority && due > best->due) ||
	     (priority == best->priority && due == best->due && id > best->id)))
		return;
	*best = (struct best){ 1, id, priority, due };
}

/* The next priority above *prio that handler has live jobs at: 1 found, 0 none, -1 error. */
static int next_priority(struct jobq_backend *b, const char *handler, int64_t *prio, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_NEXT_PRIORITY, e);

	if (!st)
		return -1;
	if ((bind_text(st, 1, handler) | sqlite3_bind_int64(st, 2, *prio)) != SQLITE_OK)
		return bind_fail(b, st, "cannot claim", e);
	return one_int(b, st, "cannot claim", prio, e);
}

static int candidate(struct jobq_backend *b, const char *handler, int64_t prio, int64_t now,
		     struct best *best, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_CANDIDATE, e);
	int r;

	if (!st)
		return -1;
	if ((bind_text(st, 1, handler) | sqlite3_bind_int64(st, 2, prio) |
	     sqlite3_bind_int64(st, 3, now)) != SQLITE_OK)
		return bind_fail(b, st, "cannot claim", e);
	r = first_row(b, st, "cannot claim", e);
	if (r > 0) {
		consider(best, sqlite3_column_int64(st, 0), prio, sqlite3_column_int64(st, 1));
		sqlite3_reset(st);
	}
	return r;
}

/*
 * One handler's best job, into best when it beats what is there: its jobs
 * at the lowest priority that has a claimable one, found by skipping from
 * priority to priority, so jobs not yet due at one priority are never walked.
 */
static int best_of(struct jobq_backend *b, const char *handler, int64_t now, struct best *best,
		   struct err *e)
{
	int64_t prio = INT64_MIN;
	int r;

	while ((r = next_priority(b, handler, &prio, e)) > 0) {
		if (best->found && prio > best->priority)
			return 0;
		r = candidate(b, handler, prio, now, best, e);
		if (r != 0)
			return r < 0 ? -1 : 0;
	}
	return r;
}

static int listed(const char *const *list, const char *s)
{
	for (; list && *list; list++)
		if (!strcmp(*list, s))
			return 1;
	return 0;
}

static int best_listed(struct jobq_backend *b, const char *const *handlers, const char *const *busy,
		       int64_t now, struct best *best, struct err *e)
{
	for (; *handlers; handlers++)
		if (!listed(busy, *handlers) && best_of(b, *handlers, now, best, e) < 0)
			return -1;
	return 0;
}

/* The next handler name after h.data that has live jobs, into h: 1, 0 none, -1 error. */
static int next_handler(struct jobq_backend *b, struct buf *h, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_NEXT_HANDLER, e);
	int r;

	if (!st)
		return -1;
	if (sqlite3_bind_text(st, 1, h->data, -1, SQLITE_TRANSIENT) != SQLITE_OK)
		return bind_fail(b, st, "cannot claim", e);
	r = first_row(b, st, "cannot claim", e);
	if (r > 0) {
		buf_reset(h);
		buf_adds(h, (const char *)sqlite3_column_text(st, 0));
		sqlite3_reset(st);
	}
	return r;
}

/* With no handler list: every handler that has live jobs, by a skip scan of jobs_due. */
static int best_any(struct jobq_backend *b, const char *const *busy, int64_t now, struct best *best,
		    struct err *e)
{
	struct buf h = BUF_INIT;
	int r;

	while ((r = next_handler(b, &h, e)) > 0)
		if (!listed(busy, h.data) && best_of(b, h.data, now, best, e) < 0) {
			r = -1;
			break;
		}
	buf_release(&h);
	return r;
}

static char *col_str(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	return xstrdup(s ? (const char *)s : "");
}

/* Reads a row of JOB_COLS into job. */
static void row_job(sqlite3_stmt *st, struct jobq_job *job)
{
	enum job_state state = JOB_PENDING;

	job->id = sqlite3_column_int64(st, 0);
	job->lease_token = sqlite3_column_int64(st, 1);
	job_state_parse((const char *)sqlite3_column_text(st, 2), &state);
	job->state = state;
	job->handler = col_str(st, 3);
	job->bucket = col_str(st, 4);
	job->key = col_str(st, 5);
	job->version_id = col_str(st, 6);
	job->etag = col_str(st, 7);
	job->sequencer = col_str(st, 8);
	job->event_name = col_str(st, 9);
	job->event_json = col_str(st, 10);
	job->depth = sqlite3_column_int(st, 11);
	job->priority = sqlite3_column_int(st, 12);
	job->attempts = sqlite3_column_int(st, 13);
	job->max_attempts = sqlite3_column_int(st, 14);
	job->created_ms = sqlite3_column_int64(st, 15);
	job->updated_ms = sqlite3_column_int64(st, 16);
	job->next_ms = sqlite3_column_int64(st, 17);
	job->exit_code = sqlite3_column_int(st, 18);
	job->signal = sqlite3_column_int(st, 19);
	job->last_error = col_str(st, 20);
	job->stdout_tail = col_str(st, 21);
	job->stderr_tail = col_str(st, 22);
	job->cpu_user_s = sqlite3_column_double(st, 23);
	job->cpu_sys_s = sqlite3_column_double(st, 24);
	job->max_rss_kib = sqlite3_column_int64(st, 25);
	job->wall_ms = sqlite3_column_int64(st, 26);
	job->batch = sqlite3_column_type(st, 27) == SQLITE_NULL ? NULL : col_str(st, 27);
}

static int take(struct jobq_backend *b, int64_t id, int64_t now, const struct jobq_lease *lease,
		struct jobq_job *job, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_CLAIM, e);
	int r;

	if (!st)
		return -1;
	if ((sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, lease->token) |
	     bind_text(st, 3, lease->owner) | sqlite3_bind_int64(st, 4, lease->until_ms) |
	     sqlite3_bind_int64(st, 5, now)) != SQLITE_OK)
		return bind_fail(b, st, "cannot claim", e);
	r = first_row(b, st, "cannot claim", e);
	if (r <= 0)
		return r < 0 ? -1 : err_set(e, ERR_INTERNAL, "job %" PRId64 " vanished", id);
	row_job(st, job);
	return run(b, st, "cannot claim", e);
}

static int sq_claim(struct jobq_backend *b, const char *const *handlers, const char *const *busy,
		    int64_t now, const struct jobq_lease *lease, struct jobq_job *job,
		    struct err *e)
{
	struct best best = { 0 };
	int ok;

	if (tx_begin(b, e) < 0)
		return -1;
	ok = (handlers ? best_listed(b, handlers, busy, now, &best, e)
		       : best_any(b, busy, now, &best, e)) == 0 &&
	     (!best.found || take(b, best.id, now, lease, job, e) == 0);
	if (tx_end(b, ok, e) < 0) {
		jobq_job_release(job);
		return -1;
	}
	return best.found;
}

/* ----- renewing, ending, giving back ----- */

/* Runs a statement that changes the job if the lease is held: 1 changed, 0 not held, -1. */
static int leased_change(struct jobq_backend *b, sqlite3_stmt *st, const char *what, struct err *e)
{
	if (run(b, st, what, e) < 0)
		return -1;
	return sqlite3_changes(b->db) > 0;
}

static int renew_job(struct jobq_backend *b, int64_t id, int64_t token, int64_t until_ms,
		     struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_RENEW, e);

	if (!st)
		return -1;
	if ((sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, token) |
	     sqlite3_bind_int64(st, 3, until_ms)) != SQLITE_OK)
		return bind_fail(b, st, "cannot renew a lease", e);
	return leased_change(b, st, "cannot renew a lease", e);
}

static int sq_renew(struct jobq_backend *b, int64_t id, int64_t token, int64_t until_ms,
		    struct err *e)
{
	int r;

	if (tx_begin(b, e) < 0)
		return -1;
	r = renew_job(b, id, token, until_ms, e);
	return tx_end(b, r >= 0, e) < 0 ? -1 : r;
}

static int bind_end(sqlite3_stmt *st, int64_t id, int64_t token, enum job_state state,
		    int64_t next_ms, const struct jobq_result *res, int64_t now)
{
	return sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, token) |
	       bind_text(st, 3, job_state_name(state)) | sqlite3_bind_int64(st, 4, next_ms) |
	       sqlite3_bind_int64(st, 5, now) | sqlite3_bind_int(st, 6, res->exit_code) |
	       sqlite3_bind_int(st, 7, res->signal) | bind_text(st, 8, res->error) |
	       bind_text(st, 9, res->stdout_tail) | bind_text(st, 10, res->stderr_tail) |
	       sqlite3_bind_double(st, 11, res->cpu_user_s) |
	       sqlite3_bind_double(st, 12, res->cpu_sys_s) |
	       sqlite3_bind_int64(st, 13, res->max_rss_kib) |
	       sqlite3_bind_int64(st, 14, res->wall_ms);
}

/* Updates the job; 1 with *out its new state, 0 when the lease is not held, -1. */
static int end_job(struct jobq_backend *b, int64_t id, int64_t token, enum job_state state,
		   int64_t next_ms, const struct jobq_result *res, int64_t now, enum job_state *out,
		   struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_END, e);
	int r;

	if (!st)
		return -1;
	if (bind_end(st, id, token, state, next_ms, res, now) != SQLITE_OK)
		return bind_fail(b, st, "cannot end a job", e);
	r = first_row(b, st, "cannot end a job", e);
	if (r <= 0)
		return r;
	job_state_parse((const char *)sqlite3_column_text(st, 0), out);
	return run(b, st, "cannot end a job", e) < 0 ? -1 : 1;
}

static int ledger_put(struct jobq_backend *b, int64_t id, int64_t now, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_LEDGER_PUT, e);

	if (!st)
		return -1;
	if ((sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, now)) != SQLITE_OK)
		return bind_fail(b, st, "cannot write the ledger", e);
	return run(b, st, "cannot write the ledger", e);
}

static int sq_end(struct jobq_backend *b, int64_t id, int64_t token, enum job_state state,
		  int64_t next_ms, const struct jobq_result *res, int64_t now, enum job_state *out,
		  struct err *e)
{
	int r;

	if (tx_begin(b, e) < 0)
		return -1;
	r = end_job(b, id, token, state, next_ms, res, now, out, e);
	/* What finished without failing is known done for reprocess; dead may run again. */
	if (r > 0 && *out != JOB_DEAD && *out != JOB_RETRY && ledger_put(b, id, now, e) < 0)
		r = -1;
	return tx_end(b, r >= 0, e) < 0 ? -1 : r;
}

static int unlease_job(struct jobq_backend *b, int64_t id, int64_t token, int uncount, int64_t now,
		       struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_UNLEASE, e);

	if (!st)
		return -1;
	if ((sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, token) |
	     sqlite3_bind_int(st, 3, uncount ? 1 : 0) | sqlite3_bind_int64(st, 4, now)) !=
	    SQLITE_OK)
		return bind_fail(b, st, "cannot give a job back", e);
	return leased_change(b, st, "cannot give a job back", e);
}

static int sq_unlease(struct jobq_backend *b, int64_t id, int64_t token, int uncount, int64_t now,
		      struct err *e)
{
	int r;

	if (tx_begin(b, e) < 0)
		return -1;
	r = unlease_job(b, id, token, uncount, now, e);
	return tx_end(b, r >= 0, e) < 0 ? -1 : r;
}

static int sq_leases(struct jobq_backend *b, struct jobq_held **held, size_t *n, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_LEASES, e);
	size_t alloc = 0;
	int rc;

	*held = NULL;
	*n = 0;
	if (!st)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == alloc) {
			alloc = alloc ? 2 * alloc : 16;
			*held = xrealloc(*held, alloc * sizeof(**held));
		}
		(*held)[*n].id = sqlite3_column_int64(st, 0);
		(*held)[*n].token = sqlite3_column_int64(st, 1);
		(*held)[(*n)++].owner = col_str(st, 2);
	}
	if (rc != SQLITE_DONE)
		db_fail(b, "cannot read leases", e);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* ----- listing and operating ----- */

/* Appends the query's filters as " AND ..." terms with named parameters. */
static void add_filters(struct buf *sql, const struct jobq_query *qu)
{
	if (qu->state >= 0)
		buf_adds(sql, " AND state = :state");
	if (qu->handler)
		buf_adds(sql, " AND handler = :handler");
	if (qu->batch)
		buf_adds(sql, " AND batch = :batch");
	if (qu->id)
		buf_adds(sql, " AND id = :id");
}

/* Binds text when not NULL, else v, to a parameter the statement may not have. */
static int bind_named(sqlite3_stmt *st, const char *name, const char *text, int64_t v)
{
	int i = sqlite3_bind_parameter_index(st, name);

	if (!i)
		return SQLITE_OK;
	return text ? bind_text(st, i, text) : sqlite3_bind_int64(st, i, v);
}

/* Prepares "head WHERE <the query's filters> tail" for one call; free with sqlite3_finalize(). */
static sqlite3_stmt *prepare_query(struct jobq_backend *b, const char *head,
				   const struct jobq_query *qu, const char *tail, struct err *e)
{
	struct buf sql = BUF_INIT;
	sqlite3_stmt *st = NULL;
	const char *state = qu->state >= 0 ? job_state_name((enum job_state)qu->state) : NULL;

	buf_addf(&sql, "%s WHERE 1", head);
	add_filters(&sql, qu);
	buf_adds(&sql, tail);
	if (sqlite3_prepare_v2(b->db, sql.data, -1, &st, NULL) != SQLITE_OK)
		db_fail(b, "cannot list jobs", e);
	buf_release(&sql);
	if (st && (bind_named(st, ":state", state, 0) | bind_named(st, ":handler", qu->handler, 0) |
		   bind_named(st, ":batch", qu->batch, 0) | bind_named(st, ":id", NULL, qu->id)) !=
			  SQLITE_OK) {
		db_fail(b, "cannot list jobs", e);
		sqlite3_finalize(st);
		st = NULL;
	}
	return st;
}

static int sq_list(struct jobq_backend *b, const struct jobq_query *qu, int64_t below, size_t max,
		   struct jobq_job **jobs, size_t *n, struct err *e)
{
	sqlite3_stmt *st = prepare_query(b, "SELECT " JOB_COLS("0") " FROM jobs", qu,
					 " AND id < :below ORDER BY id DESC LIMIT :max", e);
	int rc = SQLITE_ERROR;

	*jobs = NULL;
	*n = 0;
	if (!st)
		return -1;
	if ((bind_named(st, ":below", NULL, below) | bind_named(st, ":max", NULL, (int64_t)max)) ==
	    SQLITE_OK) {
		*jobs = xcalloc(max ? max : 1, sizeof(**jobs));
		while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
			row_job(st, &(*jobs)[(*n)++]);
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		db_fail(b, "cannot list jobs", e);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static int sq_count(struct jobq_backend *b, const struct jobq_query *qu, int64_t counts[8],
		    struct err *e)
{
	sqlite3_stmt *st =
		prepare_query(b, "SELECT state, count(*) FROM jobs", qu, " GROUP BY state", e);
	enum job_state state;
	int rc;

	if (!st)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (job_state_parse((const char *)sqlite3_column_text(st, 0), &state) == 0)
			counts[state] = sqlite3_column_int64(st, 1);
	if (rc != SQLITE_DONE)
		db_fail(b, "cannot count jobs", e);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Why a job could not be retried: it does not exist, or is in another state. */
static int why_not_retried(struct jobq_backend *b, int64_t id, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_STATE_OF, e);
	int r;

	if (!st)
		return -1;
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK)
		return bind_fail(b, st, "cannot retry a job", e);
	r = first_row(b, st, "cannot retry a job", e);
	if (r == 0)
		return err_set(e, ERR_NOTFOUND, "no job %" PRId64, id);
	if (r > 0) {
		err_set(e, ERR_CONFLICT,
			"job %" PRId64 " is %s: only dead and retry jobs are retried", id,
			(const char *)sqlite3_column_text(st, 0));
		sqlite3_reset(st);
	}
	return -1;
}

static int retry_one(struct jobq_backend *b, int64_t id, int64_t now, size_t *n, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_RETRY_ONE, e);

	if (!st)
		return -1;
	if ((sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, now)) != SQLITE_OK)
		return bind_fail(b, st, "cannot retry a job", e);
	if (run(b, st, "cannot retry a job", e) < 0)
		return -1;
	*n = (size_t)sqlite3_changes(b->db);
	return *n ? 0 : why_not_retried(b, id, e);
}

/*
 * Runs a statement that changes at most BATCH_ROWS rows (bound to v) in
 * transactions until one changes fewer, so the write lock is never held
 * for long: the listener is waiting for it. *n counts the rows.
 */
static int batched(struct jobq_backend *b, enum stmt id, int64_t v, const char *what, size_t *n,
		   struct err *e)
{
	sqlite3_stmt *st;
	int changed;

	*n = 0;
	do {
		if (tx_begin(b, e) < 0)
			return -1;
		changed = -1;
		st = stmt(b, id, e);
		if (st && sqlite3_bind_int64(st, 1, v) != SQLITE_OK)
			bind_fail(b, st, what, e);
		else if (st && run(b, st, what, e) == 0)
			changed = sqlite3_changes(b->db);
		if (tx_end(b, changed >= 0, e) < 0)
			return -1;
		*n += (size_t)changed;
	} while (changed == BATCH_ROWS);
	return 0;
}

static int sq_retry(struct jobq_backend *b, int64_t id, int64_t now, size_t *n, struct err *e)
{
	int r;

	*n = 0;
	if (!id)
		return batched(b, ST_RETRY_DEAD, now, "cannot retry dead jobs", n, e);
	if (tx_begin(b, e) < 0)
		return -1;
	r = retry_one(b, id, now, n, e);
	if (tx_end(b, r == 0, e) < 0) {
		*n = 0;
		return -1;
	}
	return 0;
}

static int sq_prune(struct jobq_backend *b, int64_t before_ms, size_t *n, struct err *e)
{
	if (batched(b, ST_PRUNE, before_ms, "cannot prune jobs", n, e) < 0)
		return -1;
	/*
	 * Autocheckpoints copy the WAL back as it grows; this one also catches
	 * up after a burst. Passive: it never waits for readers, and a reader's
	 * snapshot stops it short (the next one goes on).
	 */
	sqlite3_wal_checkpoint_v2(b->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	return 0;
}

static int sq_ledger_done(struct jobq_backend *b, const char *bucket, const char *key,
			  const char *version, const char *handler, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_LEDGER_DONE, e);
	int64_t v;

	if (!st)
		return -1;
	if ((bind_text(st, 1, bucket) | bind_text(st, 2, key) | bind_text(st, 3, version) |
	     bind_text(st, 4, handler)) != SQLITE_OK)
		return bind_fail(b, st, "cannot read the ledger", e);
	return one_int(b, st, "cannot read the ledger", &v, e);
}

static int sq_checkpoint_get(struct jobq_backend *b, const char *id, char **value, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_CP_GET, e);
	int r;

	if (!st)
		return -1;
	if (bind_text(st, 1, id) != SQLITE_OK)
		return bind_fail(b, st, "cannot read a checkpoint", e);
	r = first_row(b, st, "cannot read a checkpoint", e);
	if (r > 0) {
		*value = col_str(st, 0);
		sqlite3_reset(st);
	}
	return r < 0 ? -1 : 0;
}

static int heartbeat(struct jobq_backend *b, int64_t now, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_HEARTBEAT, e);
	char value[32];

	if (!st)
		return -1;
	snprintf(value, sizeof(value), "%" PRId64, now);
	if (sqlite3_bind_text(st, 1, value, -1, SQLITE_TRANSIENT) != SQLITE_OK)
		return bind_fail(b, st, "cannot write", e);
	return run(b, st, "cannot write", e);
}

static int sq_check_writable(struct jobq_backend *b, int64_t now, struct err *e)
{
	struct statvfs sv;

	if (same_file(b, e) < 0)
		return -1;
	/* The open descriptor writes on after a chmod or a read-only remount; a restart would not.
	 */
	if (faccessat(AT_FDCWD, b->file, W_OK, AT_EACCESS) < 0)
		return err_sys(e, ERR_QUEUE, "queue '%s' is not writable", SHORT(b->path));
	/*
	 * The heartbeat below can land in WAL space a full disk gave the file
	 * earlier, and pass; the next batch of jobs would not. Root may use the
	 * blocks a file system reserves for it, others not.
	 */
	if (statvfs(b->file, &sv) == 0) {
		uint64_t free_bytes = (uint64_t)(geteuid() == 0 ? sv.f_bfree : sv.f_bavail) *
				      (uint64_t)sv.f_frsize;
		if (free_bytes < MIN_FREE_BYTES)
			return err_set(e, ERR_QUEUE,
				       "queue '%s': the disk is full (%" PRIu64 " bytes free)",
				       SHORT(b->path), free_bytes);
	}
	if (tx_begin(b, e) < 0)
		return -1;
	return tx_end(b, heartbeat(b, now, e) == 0, e);
}

static int sq_oldest_pending(struct jobq_backend *b, int64_t *ms, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_OLDEST, e);

	return st && one_int(b, st, "cannot read the queue", ms, e) >= 0 ? 0 : -1;
}

static int sq_version(struct jobq_backend *b, uint64_t *v, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_DATA_VERSION, e);
	int64_t n;

	if (!st || one_int(b, st, "cannot read the queue", &n, e) < 0)
		return -1;
	*v = (uint64_t)n;
	return 0;
}

static int sq_next_due(struct jobq_backend *b, int64_t now, int64_t *ms, struct err *e)
{
	sqlite3_stmt *st = stmt(b, ST_NEXT_DUE, e);

	if (!st)
		return -1;
	if (sqlite3_bind_int64(st, 1, now) != SQLITE_OK)
		return bind_fail(b, st, "cannot read the queue", e);
	return one_int(b, st, "cannot read the queue", ms, e) < 0 ? -1 : 0;
}

const struct jobq_ops jobq_sqlite_ops = {
	.open = sq_open,
	.close = sq_close,
	.enqueue = sq_enqueue,
	.claim = sq_claim,
	.renew = sq_renew,
	.end = sq_end,
	.unlease = sq_unlease,
	.leases = sq_leases,
	.list = sq_list,
	.count = sq_count,
	.retry = sq_retry,
	.prune = sq_prune,
	.ledger_done = sq_ledger_done,
	.checkpoint_get = sq_checkpoint_get,
	.check_writable = sq_check_writable,
	.oldest_pending = sq_oldest_pending,
	.version = sq_version,
	.next_due = sq_next_due,
};
