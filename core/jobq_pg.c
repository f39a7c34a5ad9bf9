/*
 * jobq_pg: the queue in PostgreSQL, shared by serve processes on many hosts.
 *
 * The model is jobq_sqlite.c's: the same states, columns, dedupe key, ledger,
 * checkpoints and migration history, in this engine's DDL. What differs is
 * how several writers on several hosts meet.
 *
 * Clock: every time stored or compared comes from the database's clock
 * (statement_timestamp()), never a host's: hosts disagree, and a lease must
 * end at the same moment for all of them. jobq.c hands a backend host times;
 * this one takes only durations from them (a lease's until - now), and turns
 * the times it gives back (next due, oldest pending) into host times.
 *
 * Claims: one call of s3hook_claim(), a function of the schema, so a claim
 * is one round trip. FOR UPDATE SKIP LOCKED takes the best free row without
 * waiting for rows other claimers hold. Two hosts must not start two jobs of
 * one (bucket, key, handler) at once, and neither sees the other's claim
 * before it commits: so a claim also takes a transaction-scoped advisory lock
 * on that triple (with try: never waiting, so never deadlocking), and checks
 * in a later statement, whose snapshot is taken after the lock, that nothing
 * of the triple is running. A lock it cannot get means another claim of the
 * triple is under way: that row is passed over, as a locked one is.
 *
 * Waking: what makes a job claimable (an enqueue, a job given back or
 * revived, a job ended while another of its triple waits) also does
 * NOTIFY s3hook_jobs with this process's tag, delivered at commit. A handle
 * that claims LISTENs on a second connection, read by a thread that wakes
 * this process's jobq_wait()s when another process notified (this process's
 * own writes wake them directly). Nothing notifies when a backoff or a lease
 * runs out: next_due gives jobq_wait() the time to look again.
 *
 * Durability: the listener's handle (JOBQ_INGEST) commits as the server's
 * synchronous_commit says (a warning at open when that is off: its 200
 * promises the jobs are on disk); the others commit with it off, so a crash
 * of the server may forget their last claims and ends, which only runs a
 * job again (as SQLite's synchronous=NORMAL does for that backend).
 *
 * Connections: a connection found dropped before a call (the server
 * restarted) is made again, with nothing sent on the dead one. One lost in
 * the middle of a call fails the call; when the call was a commit, the
 * message says that its outcome is unknown: the listener answers 503, and the
 * dedupe key absorbs the sender's retry. The URL may hold a password: it is
 * shown only as postgres://USER@HOST:PORT/DB.
 */
#define S3HOOK_JOBQ_BACKEND
#include "core/jobq.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "core/str.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHANNEL	     "s3hook_jobs"
#define LOCK_MIGRATE "1932814445" /* advisory lock classes: 's3hm', 's3hq' */
#define LOCK_CLAIM   "1932814449"
#define CLAIM_TRIES  "16" /* rows one claim may pass over (taken by others meanwhile) */
#define BATCH_ROWS   1000 /* rows prune and mass retry change per transaction */
#define BATCH_ROWS_S STR(BATCH_ROWS)
#define RECONNECT_MS 1000 /* between attempts of the listening connection */
#define STR_(x)	     #x
#define STR(x)	     STR_(x)
#define MAX_PARAMS   16

/* The database's clock, ms since the epoch; one value for the whole statement. */
#define NOW "(floor(extract(epoch FROM statement_timestamp()) * 1000)::int8)"

/* In s3hook_claim(): another job of j's (bucket, key, handler) holds a live lease. */
#define RUNNING_OTHER                                                                \
	"SELECT 1 FROM jobs AS r WHERE r.state = 'running' AND r.bucket = j.bucket " \
	"AND r.key = j.key AND r.handler = j.handler AND r.lease_until_ms > now_ms " \
	"AND r.id <> j.id"

/*
 * The schema's history: migrations[i] takes a database from version i to
 * i + 1, in the transaction that records the new version. Never edit one that
 * has shipped; add the next. Version numbers are jobq_sqlite.c's: version 1
 * there and here is the same model. due_ms is as there: when a job may be
 * claimed (created_ms while pending, next_ms in retry, the lease's end while
 * running; NULL once final), so "claimable" is one range of jobs_due.
 */
static const char *const migrations[] = {
	/* 1: the first schema */
	"CREATE TABLE meta (\n"
	"	key text PRIMARY KEY,\n"
	"	value text NOT NULL\n"
	");\n"
	"CREATE TABLE jobs (\n"
	"	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- never reused\n"
	"	state text NOT NULL CHECK (state IN ('pending', 'running', 'retry', 'done',\n"
	"		'dead', 'skipped', 'gone', 'superseded')),\n"
	"	handler text NOT NULL,\n"
	"	bucket text NOT NULL,\n"
	"	key text NOT NULL,\n"
	"	version_id text NOT NULL,\n"
	"	etag text NOT NULL,\n"
	"	version_or_etag text NOT NULL, -- version_id, or etag when there is none\n"
	"	sequencer text NOT NULL,\n"
	"	event_name text NOT NULL,\n"
	"	event_json text NOT NULL,\n"
	"	depth integer NOT NULL,\n"
	"	priority integer NOT NULL,\n"
	"	attempts integer NOT NULL DEFAULT 0,\n"
	"	max_attempts integer NOT NULL,\n"
	"	batch text,\n"
	"	created_ms bigint NOT NULL,\n"
	"	updated_ms bigint NOT NULL,\n"
	"	next_ms bigint NOT NULL DEFAULT 0,\n"
	"	due_ms bigint,\n"
	"	lease_owner text,\n"
	"	lease_token bigint,\n"
	"	lease_until_ms bigint,\n"
	"	exit_code integer NOT NULL DEFAULT -1,\n"
	"	signal integer NOT NULL DEFAULT 0,\n"
	"	last_error text NOT NULL DEFAULT '',\n"
	"	stdout_tail text NOT NULL DEFAULT '',\n"
	"	stderr_tail text NOT NULL DEFAULT '',\n"
	"	cpu_user_s double precision NOT NULL DEFAULT 0,\n"
	"	cpu_sys_s double precision NOT NULL DEFAULT 0,\n"
	"	max_rss_kib bigint NOT NULL DEFAULT 0,\n"
	"	wall_ms bigint NOT NULL DEFAULT 0\n"
	");\n"
	"CREATE UNIQUE INDEX jobs_dedupe ON jobs (bucket, key, version_or_etag, sequencer, "
	"handler);\n"
	"CREATE INDEX jobs_due ON jobs (priority, due_ms, id) WHERE due_ms IS NOT NULL;\n"
	"CREATE INDEX jobs_running ON jobs (bucket, key, handler) WHERE state = 'running';\n"
	"CREATE INDEX jobs_later ON jobs (due_ms) WHERE state IN ('retry', 'running');\n"
	"CREATE INDEX jobs_state ON jobs (state, updated_ms);\n"
	"CREATE TABLE ledger (\n"
	"	bucket text NOT NULL,\n"
	"	key text NOT NULL,\n"
	"	version_or_etag text NOT NULL,\n"
	"	handler text NOT NULL,\n"
	"	outcome text NOT NULL,\n"
	"	job_id bigint NOT NULL,\n"
	"	finished_ms bigint NOT NULL,\n"
	"	PRIMARY KEY (bucket, key, version_or_etag, handler)\n"
	");\n"
	"CREATE TABLE checkpoints (\n"
	"	id text PRIMARY KEY,\n"
	"	value text NOT NULL,\n"
	"	updated_ms bigint NOT NULL\n"
	");\n"
	/*
	 * A claim, in one round trip. Volatile: each statement in it takes a
	 * new snapshot, so the UPDATE, run with the triple's lock held, sees
	 * any claim of the triple that committed before the lock was had.
	 */
	"CREATE FUNCTION s3hook_claim(p_handlers text[], p_busy text[], p_token bigint,\n"
	"	p_owner text, p_lease_ms bigint) RETURNS SETOF jobs\n"
	"LANGUAGE plpgsql VOLATILE AS $f$\n"
	"DECLARE\n"
	"	now_ms bigint := " NOW ";\n"
	"	c record;\n"
	"	passed bigint[] := '{}';\n"
	"	t jobs;\n"
	"BEGIN\n"
	"	FOR i IN 1 .. " CLAIM_TRIES " LOOP\n"
	"		-- the best claimable row nobody else holds, locked\n"
	"		SELECT j.id, j.bucket, j.key, j.handler INTO c FROM jobs AS j\n"
	"		WHERE j.due_ms <= now_ms\n"
	"		AND (p_handlers IS NULL OR j.handler = ANY (p_handlers))\n"
	"		AND j.handler <> ALL (p_busy) AND j.id <> ALL (passed)\n"
	"		AND NOT EXISTS (" RUNNING_OTHER ")\n"
	"		ORDER BY j.priority, j.due_ms, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED;\n"
	"		IF NOT FOUND THEN\n"
	"			RETURN;\n"
	"		END IF;\n"
	"		-- not had: another claim of its triple is under way; pass over it\n"
	"		IF pg_try_advisory_xact_lock(" LOCK_CLAIM ",\n"
	"				hashtext(c.bucket || '/' || c.key || '/' || c.handler)) "
	"THEN\n"
	"			UPDATE jobs AS j SET state = 'running', attempts = j.attempts + "
	"1,\n"
	"				lease_token = p_token, lease_owner = p_owner,\n"
	"				lease_until_ms = now_ms + p_lease_ms,\n"
	"				due_ms = now_ms + p_lease_ms, updated_ms = now_ms\n"
	"			WHERE j.id = c.id AND NOT EXISTS (" RUNNING_OTHER ")\n"
	"			RETURNING j.* INTO t;\n"
	"			IF FOUND THEN\n"
	"				RETURN NEXT t;\n"
	"				RETURN;\n"
	"			END IF;\n"
	"		END IF;\n"
	"		passed := passed || c.id;\n"
	"	END LOOP;\n"
	"END\n"
	"$f$;\n",
	/* 2: reprocess's batch counts, as in jobq_sqlite.c */
	"CREATE INDEX jobs_batch ON jobs (batch, state) WHERE batch IS NOT NULL;\n",
};

#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(*migrations)))

/* The dedupe key, in a byte order that every transaction inserts in (no deadlocks). */
#define DEDUPE_ORDER                                                          \
	"b COLLATE \"C\", k COLLATE \"C\", (CASE WHEN v <> '' THEN v ELSE t " \
	"END) COLLATE \"C\", s COLLATE \"C\", h COLLATE \"C\""

#define NOTIFY(payload, from) "(SELECT pg_notify('" CHANNEL "', " payload ") FROM " from ")"

enum stmt {
	ST_ENQUEUE,
	ST_CP_GET,
	ST_CLAIM,
	ST_RENEW,
	ST_END,
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
	ST_N
};

static const char *const stmt_sql[ST_N] = {
	/*
	 * One statement: the jobs, the checkpoint and the notification commit
	 * together, in one round trip whatever the batch's size (arrays).
	 */
	[ST_ENQUEUE] = "WITH ins AS (INSERT INTO jobs (state, handler, bucket, key, version_id, "
		       "etag, version_or_etag, sequencer, event_name, event_json, depth, priority, "
		       "max_attempts, batch, created_ms, updated_ms, due_ms) "
		       "SELECT 'pending', h, b, k, v, t, CASE WHEN v <> '' THEN v ELSE t END, "
		       "s, n, j, d, p, m, bt, " NOW ", " NOW ", " NOW " "
		       "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
		       "$6::text[], $7::text[], $8::text[], $9::int4[], $10::int4[], $11::int4[], "
		       "$12::text[]) AS u(h, b, k, v, t, s, n, j, d, p, m, bt) "
		       "ORDER BY " DEDUPE_ORDER " ON CONFLICT DO NOTHING RETURNING 1), "
		       "cp AS (INSERT INTO checkpoints (id, value, updated_ms) "
		       "SELECT $13::text, $14::text, " NOW " WHERE $13::text IS NOT NULL "
		       "ON CONFLICT (id) DO UPDATE SET value = excluded.value, "
		       "updated_ms = excluded.updated_ms), "
		       "n AS (SELECT count(*) AS added FROM ins) "
		       "SELECT added, " NOTIFY("$15", "n WHERE added > 0") " FROM n",
	[ST_CP_GET] = "SELECT value FROM checkpoints WHERE id = $1",
	[ST_CLAIM] = "SELECT " JOB_COLS("lease_token") " FROM s3hook_claim($1::text[], $2::text[], "
						       "$3::int8, $4::text, $5::int8)",
	[ST_RENEW] = "UPDATE jobs SET lease_until_ms = " NOW " + $3, due_ms = " NOW " + $3 "
		     "WHERE id = $1 AND lease_token = $2 AND state = 'running'",
	/*
	 * $3 is the state asked for; a retry with no attempt left is dead
	 * instead. What finished without failing goes to the ledger (a later
	 * outcome replaces an earlier one, but nothing replaces done). Another
	 * job of the triple waiting may run now: tell the other hosts.
	 */
	[ST_END] = "WITH e AS (UPDATE jobs SET state = CASE WHEN $3::text = 'retry' "
		   "AND attempts >= max_attempts THEN 'dead' ELSE $3::text END, "
		   "next_ms = CASE WHEN $3::text = 'retry' AND attempts < max_attempts "
		   "THEN " NOW " + $4 ELSE 0 END, "
		   "due_ms = CASE WHEN $3::text = 'retry' AND attempts < max_attempts "
		   "THEN " NOW " + $4 END, " UNLEASED ", updated_ms = " NOW ", "
		   "exit_code = $5, signal = $6, last_error = $7, stdout_tail = $8, "
		   "stderr_tail = $9, cpu_user_s = $10, cpu_sys_s = $11, max_rss_kib = $12, "
		   "wall_ms = $13 WHERE id = $1 AND lease_token = $2 AND state = 'running' "
		   "RETURNING id, state, bucket, key, version_or_etag, handler), "
		   "l AS (INSERT INTO ledger (bucket, key, version_or_etag, handler, outcome, "
		   "job_id, finished_ms) SELECT bucket, key, version_or_etag, handler, state, "
		   "id, " NOW " FROM e WHERE state NOT IN ('dead', 'retry') "
		   "ON CONFLICT (bucket, key, version_or_etag, handler) DO UPDATE SET "
		   "outcome = excluded.outcome, job_id = excluded.job_id, "
		   "finished_ms = excluded.finished_ms "
		   "WHERE ledger.outcome <> 'done' OR excluded.outcome = 'done') "
		   "SELECT state, (SELECT pg_notify('" CHANNEL "', $14) FROM jobs AS w "
		   "WHERE w.bucket = e.bucket AND w.key = e.key AND w.handler = e.handler "
		   "AND w.id <> e.id AND w.due_ms IS NOT NULL LIMIT 1) FROM e",
	[ST_UNLEASE] =
		"WITH u AS (UPDATE jobs SET state = 'pending', "
		"attempts = GREATEST(attempts - $3, 0), " UNLEASED ", due_ms = created_ms, "
		"updated_ms = " NOW " WHERE id = $1 AND lease_token = $2 AND state = 'running' "
		"RETURNING 1) SELECT count(*), " NOTIFY("$4", "u LIMIT 1") " FROM u",
	[ST_LEASES] = "SELECT id, lease_token, lease_owner FROM jobs WHERE state = 'running'",
	[ST_RETRY_ONE] = "WITH r AS (UPDATE jobs SET state = 'pending', attempts = 0, next_ms = 0, "
			 "due_ms = created_ms, updated_ms = " NOW " "
			 "WHERE id = $1 AND state IN ('dead', 'retry') RETURNING 1) "
			 "SELECT count(*), " NOTIFY("$2", "r LIMIT 1") " FROM r",
	[ST_RETRY_DEAD] =
		"WITH r AS (UPDATE jobs SET state = 'pending', attempts = 0, next_ms = 0, "
		"due_ms = created_ms, updated_ms = " NOW " WHERE id IN (SELECT id FROM jobs "
		"WHERE state = 'dead' LIMIT " BATCH_ROWS_S ") RETURNING 1) "
		"SELECT count(*), " NOTIFY("$1", "r LIMIT 1") " FROM r",
	[ST_STATE_OF] = "SELECT state FROM jobs WHERE id = $1",
	/* $1: how old (ms) a final job must be, by the database's clock. */
	[ST_PRUNE] = "WITH d AS (DELETE FROM jobs WHERE id IN (SELECT id FROM jobs "
		     "WHERE state IN ('done', 'skipped', 'gone', 'superseded') "
		     "AND updated_ms < " NOW " - $1 LIMIT " BATCH_ROWS_S ") RETURNING 1) "
		     "SELECT count(*) FROM d",
	[ST_LEDGER_DONE] = "SELECT 1 FROM ledger WHERE bucket = $1 AND key = $2 "
			   "AND version_or_etag = $3 AND handler = $4 AND outcome = 'done'",
	[ST_HEARTBEAT] = "INSERT INTO meta (key, value) VALUES ('heartbeat', " NOW "::text) "
			 "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	/* Ages, not times: the caller adds its own clock. */
	[ST_OLDEST] = "SELECT min(updated_ms) - " NOW " FROM jobs WHERE state = 'pending'",
	[ST_NEXT_DUE] = "SELECT min(due_ms) - " NOW " FROM jobs "
			"WHERE state IN ('retry', 'running') AND due_ms > " NOW,
};

/* What each does, for messages: "cannot <what>". */
static const char *const stmt_what[ST_N] = {
	[ST_ENQUEUE] = "add jobs",
	[ST_CP_GET] = "read a checkpoint",
	[ST_CLAIM] = "claim",
	[ST_RENEW] = "renew a lease",
	[ST_END] = "end a job",
	[ST_UNLEASE] = "give a job back",
	[ST_LEASES] = "read leases",
	[ST_RETRY_ONE] = "retry a job",
	[ST_RETRY_DEAD] = "retry dead jobs",
	[ST_STATE_OF] = "retry a job",
	[ST_PRUNE] = "prune jobs",
	[ST_LEDGER_DONE] = "read the ledger",
	[ST_HEARTBEAT] = "write",
	[ST_OLDEST] = "read the queue",
	[ST_NEXT_DUE] = "read the queue",
};

/* The statements that, run on their own, are transactions that write. */
#define COMMITS                                                                \
	(1u << ST_ENQUEUE | 1u << ST_RENEW | 1u << ST_END | 1u << ST_UNLEASE | \
	 1u << ST_RETRY_ONE | 1u << ST_RETRY_DEAD | 1u << ST_PRUNE | 1u << ST_HEARTBEAT)

/* The LISTEN side of a handle: its own connection, read by its own thread. */
struct listener {
	pthread_t thread;
	int stop_fd; /* an eventfd: readable once close asks the thread to end */
	PGconn *conn;
	const char *url;  /* the handle's */
	const char *name; /* the handle's */
	const char *tag;  /* the handle's */
	uint64_t heard;	  /* notifications of other processes, and reconnections (atomic) */
};

struct jobq_backend {
	PGconn *conn;
	char *url;		      /* as given; may hold a password: never shown */
	char *name;		      /* postgres://USER@HOST:PORT/DB, for messages and logs */
	char tag[HOST_NAME_MAX + 64]; /* this process, in NOTIFY payloads */
	enum jobq_flags flags;
	uint32_t prepared;    /* bit i: stmt_sql[i] is prepared on this connection */
	int fatal;	      /* the server said, outside an answer, that it is going away */
	struct listener *lis; /* handles that may claim (neither JOBQ_INGEST nor JOBQ_NO_CREATE) */
};

/* ----- connections and errors ----- */

/*
 * What the server says outside an answer: libpq would print it on stderr,
 * which a library must not. A FATAL one, or one of class 57P (the server is
 * shutting down, crashed, or ended this backend: an immediate shutdown says
 * so as a WARNING), means the connection is going away: arg is where to note
 * that, so the next call makes it again before sending anything.
 */
static void notice(void *arg, const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (arg && ((sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC"))) ||
		    (state && str_starts_with(state, "57P"))))
		*(int *)arg = 1;
	log_debug("queue notice", "message=%s", PQresultErrorMessage(res));
}

/* The first line of the connection's last error. */
static const char *conn_msg(PGconn *c, char *out, size_t size)
{
	str_copy(out, size, c ? PQerrorMessage(c) : "out of memory");
	out[strcspn(out, "\n")] = '\0';
	return out;
}

/*
 * The URL shown in messages and logs: no password, whether in the userinfo
 * or a parameter, and nothing else that is not needed to tell queues apart.
 */
char *jobq_pg_url_shown(const char *url)
{
	PQconninfoOption *opts = PQconninfoParse(url, NULL), *o;
	const char *user = NULL, *host = NULL, *port = NULL, *db = NULL;
	struct buf b = BUF_INIT;

	for (o = opts; o && o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		if (!strcmp(o->keyword, "user"))
			user = o->val;
		else if (!strcmp(o->keyword, "host"))
			host = o->val;
		else if (!strcmp(o->keyword, "port"))
			port = o->val;
		else if (!strcmp(o->keyword, "dbname"))
			db = o->val;
	}
	buf_adds(&b, "postgres://");
	if (user)
		buf_addf(&b, "%s@", user);
	buf_adds(&b, host ? host : "");
	if (port)
		buf_addf(&b, ":%s", port);
	buf_addf(&b, "/%s", db ? db : "");
	PQconninfoFree(opts);
	return buf_detach(&b, NULL);
}

/*
 * Connects with s3hook's defaults, which the URL may override (it comes
 * last), but for the encoding: keys are UTF-8.
 */
static PGconn *connect_url(const char *url, int *fatal)
{
	static const char *const keys[] = {
		"connect_timeout",
		"keepalives",
		"keepalives_idle",
		"keepalives_interval",
		"keepalives_count",
		"fallback_application_name",
		"dbname",
		"client_encoding",
		NULL,
	};
	const char *const vals[] = { "5", "1", "30", "10", "3", "s3hook", url, "UTF8", NULL };
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (c)
		PQsetNoticeReceiver(c, notice, fatal);
	return c;
}

/*
 * Sets e from a failed call; what names it. A connection lost during a
 * statement that commits leaves its outcome unknown: the message says so.
 */
static int db_fail(struct jobq_backend *b, const PGresult *res, const char *what, int commits,
		   struct err *e)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *name = SHORT(b->name);
	char msg[256];

	if (!e || err_is_set(e))
		return -1;
	if (!primary || PQstatus(b->conn) != CONNECTION_OK)
		primary = conn_msg(b->conn, msg, sizeof(msg));
	if (PQstatus(b->conn) != CONNECTION_OK && commits)
		return err_set(e, ERR_QUEUE,
			       "queue '%s': cannot %s: the connection was lost before the commit "
			       "was confirmed, so its outcome is unknown (%s)",
			       name, what, primary);
	if (PQstatus(b->conn) != CONNECTION_OK)
		return err_set(e, ERR_QUEUE, "queue '%s': cannot %s: connection lost (%s)", name,
			       what, primary);
	if (state && (!strcmp(state, "25006") || !strcmp(state, "42501")))
		return err_set(e, ERR_QUEUE, "queue '%s' is not writable: cannot %s: %s", name,
			       what, primary);
	if (state && !strcmp(state, "53100"))
		return err_set(e, ERR_QUEUE, "queue '%s': cannot %s: the disk is full (%s)", name,
			       what, primary);
	return err_set(e, ERR_QUEUE, "queue '%s': cannot %s: %s", name, what, primary);
}

/* The result when it succeeded, else NULL with e set (and the result cleared). */
static PGresult *checked(struct jobq_backend *b, PGresult *res, const char *what, int commits,
			 struct err *e)
{
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	db_fail(b, res, what, commits, e);
	PQclear(res);
	return NULL;
}

/*
 * Whether an idle connection has been dropped: the server has hung up, or
 * said that it is going away (it restarted, or ended this backend). Costs a
 * poll(), sends nothing. What it said and its hang-up may come apart: read
 * until there is nothing more (a few times at most).
 */
static int dropped(struct jobq_backend *b)
{
	struct pollfd p = { .fd = PQsocket(b->conn), .events = POLLIN };
	int i;

	for (i = 0; i < 4; i++) {
		if (PQstatus(b->conn) != CONNECTION_OK || p.fd < 0 || b->fatal)
			return 1;
		if (poll(&p, 1, 0) <= 0)
			return 0;
		if (!PQconsumeInput(b->conn))
			return 1;
		/* Parses what came in, so that notice() sees it. */
		PQisBusy(b->conn);
	}
	return PQstatus(b->conn) != CONNECTION_OK || b->fatal;
}

/* The session's settings, after each (re)connection. */
static int session_setup(struct jobq_backend *b, struct err *e)
{
	const char *enc = PQparameterStatus(b->conn, "server_encoding");
	PGresult *res;

	b->prepared = 0;
	if (enc && strcmp(enc, "UTF8") != 0 && strcmp(enc, "SQL_ASCII") != 0)
		return err_set(e, ERR_QUEUE,
			       "queue '%s': the database's encoding is %s; s3hook needs UTF8",
			       SHORT(b->name), enc);
	if (b->flags & JOBQ_INGEST)
		return 0;
	/* Losing the last claims or ends to a crash of the server only runs a job again. */
	res = PQexec(b->conn, "SET synchronous_commit = off");
	if (!checked(b, res, "set up the connection", 0, e))
		return -1;
	PQclear(res);
	return 0;
}

static int connect_db(struct jobq_backend *b, struct err *e)
{
	char msg[256];

	b->conn = connect_url(b->url, &b->fatal);
	if (PQstatus(b->conn) != CONNECTION_OK)
		return err_set(e, ERR_QUEUE, "cannot connect to queue '%s': %s", SHORT(b->name),
			       conn_msg(b->conn, msg, sizeof(msg)));
	return session_setup(b, e);
}

/* Makes the connection usable: again, if the server dropped it. */
static int ready(struct jobq_backend *b, struct err *e)
{
	char msg[256];

	if (!dropped(b))
		return 0;
	b->fatal = 0;
	PQreset(b->conn);
	if (PQstatus(b->conn) != CONNECTION_OK)
		return err_set(e, ERR_QUEUE, "cannot connect to queue '%s': %s", SHORT(b->name),
			       conn_msg(b->conn, msg, sizeof(msg)));
	if (session_setup(b, e) < 0)
		return -1;
	log_info("queue connection made again", "queue=%s", b->name);
	return 0;
}

/* ----- statements ----- */

/* Parameters in text form; numbers are printed into num. */
struct params {
	int n;
	const char *v[MAX_PARAMS];
	char num[MAX_PARAMS][32];
};

static void param_str(struct params *p, const char *s)
{
	p->v[p->n++] = s;
}

static void param_i64(struct params *p, int64_t x)
{
	snprintf(p->num[p->n], sizeof(p->num[0]), "%" PRId64, x);
	param_str(p, p->num[p->n]);
}

static void param_dbl(struct params *p, double x)
{
	snprintf(p->num[p->n], sizeof(p->num[0]), "%.17g", x);
	param_str(p, p->num[p->n]);
}

static int prepare(struct jobq_backend *b, enum stmt id, struct err *e)
{
	char name[32];
	PGresult *res;

	if (b->prepared & (1u << id))
		return 0;
	snprintf(name, sizeof(name), "s3hook_%d", (int)id);
	res = checked(b, PQprepare(b->conn, name, stmt_sql[id], 0, NULL), stmt_what[id], 0, e);
	if (!res)
		return -1;
	PQclear(res);
	b->prepared |= 1u << id;
	return 0;
}

/* Runs a statement on a ready connection: its result (PQclear() it), or NULL with e set. */
static PGresult *exec_st(struct jobq_backend *b, enum stmt id, const struct params *p,
			 struct err *e)
{
	char name[32];

	if (prepare(b, id, e) < 0)
		return NULL;
	snprintf(name, sizeof(name), "s3hook_%d", (int)id);
	return checked(b, PQexecPrepared(b->conn, name, p->n, p->v, NULL, NULL, 0), stmt_what[id],
		       (COMMITS >> id) & 1, e);
}

/* Runs one statement as its own transaction: ready, run. */
static PGresult *exec_one(struct jobq_backend *b, enum stmt id, const struct params *p,
			  struct err *e)
{
	return ready(b, e) < 0 ? NULL : exec_st(b, id, p, e);
}

/* Runs a statement that returns a number: 1 with *v, 0 when none (no row, NULL), -1. */
static int exec_int(struct jobq_backend *b, enum stmt id, const struct params *p, int64_t *v,
		    struct err *e)
{
	PGresult *res = exec_one(b, id, p, e);
	int r;

	if (!res)
		return -1;
	r = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0);
	*v = r ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	PQclear(res);
	return r;
}

static int exec_plain(struct jobq_backend *b, const char *sql, const char *what, int commits,
		      struct err *e)
{
	PGresult *res = checked(b, PQexec(b->conn, sql), what, commits, e);

	PQclear(res);
	return res ? 0 : -1;
}

static int tx_begin(struct jobq_backend *b, struct err *e)
{
	return ready(b, e) < 0 ? -1 : exec_plain(b, "BEGIN", "start a transaction", 0, e);
}

/* Commits when ok, else rolls back; 0 only when committed. */
static int tx_end(struct jobq_backend *b, int ok, const char *what, struct err *e)
{
	if (ok && PQtransactionStatus(b->conn) == PQTRANS_INTRANS)
		return exec_plain(b, "COMMIT", what, 1, e);
	if (PQstatus(b->conn) == CONNECTION_OK && PQtransactionStatus(b->conn) != PQTRANS_IDLE)
		exec_plain(b, "ROLLBACK", "roll back", 0, NULL);
	return ok ? err_set(e, ERR_QUEUE, "queue '%s': cannot %s: the transaction failed",
			    SHORT(b->name), what)
		  : -1;
}

static char *col_str(const PGresult *res, int row, int col)
{
	return xstrdup(PQgetvalue(res, row, col));
}

static int64_t col_i64(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* ----- text arrays ----- */

/* Appends s to a text[] literal being built in a: quoted, '"' and '\' escaped; NULL as NULL. */
static void array_add(struct buf *a, const char *s)
{
	size_t n;

	buf_addch(a, a->len ? ',' : '{');
	if (!s) {
		buf_adds(a, "NULL");
		return;
	}
	buf_addch(a, '"');
	while (*s) {
		n = strcspn(s, "\"\\");
		buf_add(a, s, n);
		s += n;
		if (*s) {
			buf_addch(a, '\\');
			buf_addch(a, *s++);
		}
	}
	buf_addch(a, '"');
}

static void array_add_int(struct buf *a, int v)
{
	buf_addch(a, a->len ? ',' : '{');
	buf_addf(a, "%d", v);
}

static const char *array_end(struct buf *a)
{
	if (!a->len)
		buf_addch(a, '{');
	buf_addch(a, '}');
	return a->data;
}

/* A NULL-terminated list as a text[] literal; NULL for NULL when null_ok, else "{}". */
static const char *array_of(struct buf *a, const char *const *list, int null_ok)
{
	if (!list && null_ok)
		return NULL;
	for (; list && *list; list++)
		array_add(a, *list);
	return array_end(a);
}

/*
 * Appends s with each byte that is not part of valid UTF-8 replaced by U+FFFD:
 * a handler's output is any bytes, and a text column takes only UTF-8.
 */
static void add_utf8(struct buf *out, const char *s)
{
	size_t n;

	for (; *s; s += n ? n : 1) {
		n = str_utf8_len(s);
		if (n)
			buf_add(out, s, n);
		else
			buf_adds(out, "\xef\xbf\xbd");
	}
}

/* ----- the schema ----- */

/*
 * The schema's version: 0 when there is none; an error when the tables are
 * someone else's. Read from pg_class, not with to_regclass(): in the
 * migration's transaction, after the lock, the name cache may still say
 * that the tables another process has just made do not exist.
 */
static int schema_version(struct jobq_backend *b, int *v, struct err *e)
{
	PGresult *res;
	int64_t meta, jobs;
	long n;

	*v = 0;
	res = checked(b,
		      PQexec(b->conn,
			     "SELECT count(*) FILTER (WHERE relname = 'meta'), "
			     "count(*) FILTER (WHERE relname = 'jobs') FROM pg_catalog.pg_class "
			     "WHERE relname IN ('meta', 'jobs') AND relnamespace = "
			     "(SELECT oid FROM pg_catalog.pg_namespace "
			     "WHERE nspname = current_schema())"),
		      "read the schema", 0, e);
	if (!res)
		return -1;
	meta = col_i64(res, 0, 0);
	jobs = col_i64(res, 0, 1);
	PQclear(res);
	if (!meta && !jobs)
		return 0;
	res = meta ? checked(b,
			     PQexec(b->conn, "SELECT value FROM meta WHERE key = 'schema_version'"),
			     "read the schema", 0, e)
		   : NULL;
	if (meta && !res)
		return -1;
	n = res && PQntuples(res) == 1 ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	PQclear(res);
	if (n < 1 || n > 1000000)
		return err_set(e, ERR_QUEUE, "'%s' is not an s3hook queue", SHORT(b->name));
	*v = (int)n;
	return 0;
}

static int too_new(struct jobq_backend *b, int v, struct err *e)
{
	return err_set(e, ERR_QUEUE,
		       "queue '%s' has schema version %d, newer than this s3hook knows (%d)",
		       SHORT(b->name), v, SCHEMA_VERSION);
}

static int migrate_from(struct jobq_backend *b, int v, struct err *e)
{
	char sql[160];

	for (; v < SCHEMA_VERSION; v++) {
		if (exec_plain(b, migrations[v], "create the schema", 0, e) < 0)
			return -1;
		snprintf(sql, sizeof(sql),
			 "INSERT INTO meta (key, value) VALUES ('schema_version', '%d') "
			 "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
			 v + 1);
		if (exec_plain(b, sql, "create the schema", 0, e) < 0)
			return -1;
	}
	return 0;
}

/*
 * Brings the schema up to date in one transaction, under an advisory lock:
 * of several processes starting at once, one migrates, and the others find
 * it done when they get the lock (the version is read after it).
 */
static int migrate(struct jobq_backend *b, struct err *e)
{
	int v, ok;

	if (tx_begin(b, e) < 0)
		return -1;
	ok = exec_plain(b, "SELECT pg_advisory_xact_lock(" LOCK_MIGRATE ", 0)", "create the schema",
			0, e) == 0 &&
	     schema_version(b, &v, e) == 0 && (v <= SCHEMA_VERSION || too_new(b, v, e) == 0) &&
	     migrate_from(b, v, e) == 0;
	return tx_end(b, ok, "create the schema", e);
}

static int settle_schema(struct jobq_backend *b, struct err *e)
{
	int v;

	if (schema_version(b, &v, e) < 0)
		return -1;
	if (v == SCHEMA_VERSION)
		return 0;
	if (v > SCHEMA_VERSION)
		return too_new(b, v, e);
	if (!(b->flags & JOBQ_NO_CREATE))
		return migrate(b, e);
	if (v == 0)
		return err_set(e, ERR_QUEUE, "queue '%s' is empty (no s3hook has used it yet)",
			       SHORT(b->name));
	return err_set(e, ERR_QUEUE,
		       "queue '%s' has schema version %d, older than this s3hook's (%d): "
		       "serve upgrades it",
		       SHORT(b->name), v, SCHEMA_VERSION);
}

/* The listener's 200 promises the jobs are on disk: say when the server does not keep that. */
static void warn_async_commit(struct jobq_backend *b)
{
	PGresult *res = PQexec(b->conn, "SELECT current_setting('synchronous_commit')");

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    !strcmp(PQgetvalue(res, 0, 0), "off"))
		log_warn("synchronous_commit is off on the queue's server: a crash of the server "
			 "may lose notifications already answered 200",
			 "queue=%s", b->name);
	PQclear(res);
}

/* ----- listening ----- */

/* This process, as NOTIFY payloads name it: pid, pid namespace, host. */
static void process_tag(char *out, size_t size)
{
	char host[HOST_NAME_MAX + 1] = "";
	struct stat st;
	unsigned long long ns = 0;

	if (stat("/proc/self/ns/pid", &st) == 0)
		ns = (unsigned long long)st.st_ino;
	gethostname(host, sizeof(host) - 1);
	snprintf(out, size, "%ld.%llu.%s", (long)getpid(), ns, host);
}

static void heard(struct listener *l)
{
	__atomic_add_fetch(&l->heard, 1, __ATOMIC_RELAXED);
	jobq_wake_all();
}

static int listen_connect(struct listener *l, struct err *e)
{
	char msg[256];
	PGresult *res;

	l->conn = connect_url(l->url, NULL);
	if (PQstatus(l->conn) == CONNECTION_OK) {
		res = PQexec(l->conn, "LISTEN " CHANNEL);
		if (PQresultStatus(res) == PGRES_COMMAND_OK) {
			PQclear(res);
			return 0;
		}
		PQclear(res);
	}
	err_set(e, ERR_QUEUE, "queue '%s': cannot listen for new jobs: %s", SHORT(l->name),
		conn_msg(l->conn, msg, sizeof(msg)));
	PQfinish(l->conn);
	l->conn = NULL;
	return -1;
}

/* Waits up to ms for the stop signal: 1 when it came. */
static int stop_wait(struct listener *l, int ms)
{
	struct pollfd p = { .fd = l->stop_fd, .events = POLLIN };

	return poll(&p, 1, ms) > 0;
}

/* Connects again after a loss, every RECONNECT_MS; 0 when asked to stop first. */
static int listen_again(struct listener *l)
{
	struct err e = ERR_INIT;

	while (!stop_wait(l, RECONNECT_MS)) {
		err_clear(&e);
		if (listen_connect(l, &e) == 0) {
			log_info("listening for new jobs again", "queue=%s", l->name);
			/* What was notified meanwhile is lost: have the waiters look. */
			heard(l);
			return 1;
		}
	}
	return 0;
}

/* Reads what arrived; notifications of other processes wake this one's waiters. */
static void listen_read(struct listener *l)
{
	char msg[256];
	PGnotify *n;
	int others = 0;

	if (!PQconsumeInput(l->conn) || PQstatus(l->conn) != CONNECTION_OK) {
		log_warn("lost the connection that listens for new jobs", "queue=%s error=%s",
			 l->name, conn_msg(l->conn, msg, sizeof(msg)));
		PQfinish(l->conn);
		l->conn = NULL;
		return;
	}
	while ((n = PQnotifies(l->conn))) {
		others |= strcmp(n->extra, l->tag) != 0;
		PQfreemem(n);
	}
	if (others)
		heard(l);
}

static void *listen_main(void *arg)
{
	struct listener *l = arg;
	struct pollfd p[2];

	pthread_setname_np(pthread_self(), "pg-listen");
	for (;;) {
		if (!l->conn && !listen_again(l))
			break;
		p[0] = (struct pollfd){ .fd = PQsocket(l->conn), .events = POLLIN };
		p[1] = (struct pollfd){ .fd = l->stop_fd, .events = POLLIN };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents)
			listen_read(l);
	}
	return NULL;
}

static void listener_free(struct listener *l)
{
	uint64_t one = 1;

	if (!l)
		return;
	if (write(l->stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		abort(); /* an eventfd write fails only on overflow */
	pthread_join(l->thread, NULL);
	PQfinish(l->conn);
	close(l->stop_fd);
	free(l);
}

/*
 * Starts listening, before any claim: whatever commits after a claim looked
 * is notified, and what committed before, the claim saw.
 */
static int listener_start(struct jobq_backend *b, struct err *e)
{
	struct listener *l = xcalloc(1, sizeof(*l));

	l->url = b->url;
	l->name = b->name;
	l->tag = b->tag;
	l->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (l->stop_fd < 0) {
		free(l);
		return err_sys(e, ERR_QUEUE, "cannot make an eventfd");
	}
	if (listen_connect(l, e) < 0 || pthread_create(&l->thread, NULL, listen_main, l) != 0) {
		err_set(e, ERR_QUEUE, "cannot start the thread that listens for new jobs");
		PQfinish(l->conn);
		close(l->stop_fd);
		free(l);
		return -1;
	}
	b->lis = l;
	return 0;
}

/* ----- open, close ----- */

static void pg_close(struct jobq_backend *b)
{
	if (!b)
		return;
	listener_free(b->lis);
	PQfinish(b->conn);
	free(b->url);
	free(b->name);
	free(b);
}

static int check_writable(struct jobq_backend *b, struct err *e)
{
	struct params p = { 0 };
	PGresult *res = exec_one(b, ST_HEARTBEAT, &p, e);

	PQclear(res);
	return res ? 0 : -1;
}

static struct jobq_backend *pg_open(const char *url, enum jobq_flags flags, struct err *e)
{
	struct jobq_backend *b = xcalloc(1, sizeof(*b));

	b->url = xstrdup(url);
	b->name = jobq_pg_url_shown(url);
	b->flags = flags;
	process_tag(b->tag, sizeof(b->tag));
	if (connect_db(b, e) < 0 || settle_schema(b, e) < 0 ||
	    (!(flags & JOBQ_NO_CREATE) && check_writable(b, e) < 0)) {
		pg_close(b);
		return NULL;
	}
	if (flags & JOBQ_INGEST)
		warn_async_commit(b);
	/* A handle that may claim listens from the start: claims never wait for that. */
	if (!(flags & (JOBQ_INGEST | JOBQ_NO_CREATE)) && listener_start(b, e) < 0) {
		pg_close(b);
		return NULL;
	}
	return b;
}

/* ----- adding ----- */

enum {
	A_HANDLER,
	A_BUCKET,
	A_KEY,
	A_VERSION,
	A_ETAG,
	A_SEQ,
	A_EVENT,
	A_JSON,
	A_DEPTH,
	A_PRIO,
	A_MAX,
	A_BATCH,
	A_N
};

static void add_to_arrays(struct buf *a, const struct jobq_new *j)
{
	array_add(&a[A_HANDLER], j->handler);
	array_add(&a[A_BUCKET], j->bucket);
	array_add(&a[A_KEY], j->key);
	array_add(&a[A_VERSION], j->version_id ? j->version_id : "");
	array_add(&a[A_ETAG], j->etag ? j->etag : "");
	array_add(&a[A_SEQ], j->sequencer ? j->sequencer : "");
	array_add(&a[A_EVENT], j->event_name ? j->event_name : "");
	array_add(&a[A_JSON], j->event_json);
	array_add_int(&a[A_DEPTH], j->depth);
	array_add_int(&a[A_PRIO], j->priority);
	array_add_int(&a[A_MAX], j->max_attempts);
	array_add(&a[A_BATCH], j->batch);
}

static int pg_enqueue(struct jobq_backend *b, const struct jobq_new *jobs, size_t n,
		      const char *cp_id, const char *cp_value, int64_t now, size_t *added,
		      struct err *e)
{
	struct buf a[A_N];
	struct params p = { 0 };
	int64_t got = 0;
	size_t i;
	int r;

	(void)now;
	for (i = 0; i < A_N; i++)
		a[i] = (struct buf)BUF_INIT;
	for (i = 0; i < n; i++)
		add_to_arrays(a, &jobs[i]);
	for (i = 0; i < A_N; i++)
		param_str(&p, array_end(&a[i]));
	param_str(&p, cp_id);
	param_str(&p, cp_value);
	param_str(&p, b->tag);
	r = exec_int(b, ST_ENQUEUE, &p, &got, e);
	for (i = 0; i < A_N; i++)
		buf_release(&a[i]);
	if (r < 0)
		return -1;
	*added = (size_t)got;
	return 0;
}

/* ----- claiming ----- */

/* Reads row `row` of JOB_COLS into job. */
static void row_job(const PGresult *res, int row, struct jobq_job *job)
{
	enum job_state state = JOB_PENDING;

	job->id = col_i64(res, row, 0);
	job->lease_token = col_i64(res, row, 1);
	job_state_parse(PQgetvalue(res, row, 2), &state);
	job->state = state;
	job->handler = col_str(res, row, 3);
	job->bucket = col_str(res, row, 4);
	job->key = col_str(res, row, 5);
	job->version_id = col_str(res, row, 6);
	job->etag = col_str(res, row, 7);
	job->sequencer = col_str(res, row, 8);
	job->event_name = col_str(res, row, 9);
	job->event_json = col_str(res, row, 10);
	job->depth = (int)col_i64(res, row, 11);
	job->priority = (int)col_i64(res, row, 12);
	job->attempts = (int)col_i64(res, row, 13);
	job->max_attempts = (int)col_i64(res, row, 14);
	job->created_ms = col_i64(res, row, 15);
	job->updated_ms = col_i64(res, row, 16);
	job->next_ms = col_i64(res, row, 17);
	job->exit_code = (int)col_i64(res, row, 18);
	job->signal = (int)col_i64(res, row, 19);
	job->last_error = col_str(res, row, 20);
	job->stdout_tail = col_str(res, row, 21);
	job->stderr_tail = col_str(res, row, 22);
	job->cpu_user_s = strtod(PQgetvalue(res, row, 23), NULL);
	job->cpu_sys_s = strtod(PQgetvalue(res, row, 24), NULL);
	job->max_rss_kib = col_i64(res, row, 25);
	job->wall_ms = col_i64(res, row, 26);
	job->batch = PQgetisnull(res, row, 27) ? NULL : col_str(res, row, 27);
}

static int pg_claim(struct jobq_backend *b, const char *const *handlers, const char *const *busy,
		    int64_t now, const struct jobq_lease *lease, struct jobq_job *job,
		    struct err *e)
{
	struct buf hs = BUF_INIT, bs = BUF_INIT;
	struct params p = { 0 };
	PGresult *res;
	int r = -1;

	param_str(&p, array_of(&hs, handlers, 1));
	param_str(&p, array_of(&bs, busy, 0));
	param_i64(&p, lease->token);
	param_str(&p, lease->owner);
	/* The lease's length; when it ends is the database's. */
	param_i64(&p, lease->until_ms - now);
	res = exec_one(b, ST_CLAIM, &p, e);
	if (res) {
		r = PQntuples(res) == 1;
		if (r)
			row_job(res, 0, job);
		PQclear(res);
	}
	buf_release(&hs);
	buf_release(&bs);
	return r;
}

/* ----- renewing, ending, giving back ----- */

/* Runs a statement that changes the job if the lease is held: 1 changed, 0 not held, -1. */
static int leased_change(struct jobq_backend *b, enum stmt id, const struct params *p,
			 struct err *e)
{
	PGresult *res = exec_one(b, id, p, e);
	int r;

	if (!res)
		return -1;
	r = PQntuples(res) > 0 && strtoll(PQgetvalue(res, 0, 0), NULL, 10) > 0;
	PQclear(res);
	return r;
}

static int pg_renew(struct jobq_backend *b, int64_t id, int64_t token, int64_t until_ms,
		    struct err *e)
{
	struct params p = { 0 };
	PGresult *res;
	int r;

	param_i64(&p, id);
	param_i64(&p, token);
	/* A duration from jobq.c's clock, which it read just now; the end is the database's. */
	param_i64(&p, until_ms - jobq_now_ms());
	res = exec_one(b, ST_RENEW, &p, e);
	if (!res)
		return -1;
	r = strcmp(PQcmdTuples(res), "0") != 0;
	PQclear(res);
	return r;
}

static int pg_end(struct jobq_backend *b, int64_t id, int64_t token, enum job_state state,
		  int64_t next_ms, const struct jobq_result *res, int64_t now, enum job_state *out,
		  struct err *e)
{
	struct buf text[3] = { BUF_INIT, BUF_INIT, BUF_INIT };
	struct params p = { 0 };
	PGresult *r;
	int changed = -1;
	size_t i;

	add_utf8(&text[0], res->error);
	add_utf8(&text[1], res->stdout_tail);
	add_utf8(&text[2], res->stderr_tail);
	param_i64(&p, id);
	param_i64(&p, token);
	param_str(&p, job_state_name(state));
	param_i64(&p, next_ms - now); /* the backoff; when it ends is the database's */
	param_i64(&p, res->exit_code);
	param_i64(&p, res->signal);
	for (i = 0; i < 3; i++)
		param_str(&p, text[i].data);
	param_dbl(&p, res->cpu_user_s);
	param_dbl(&p, res->cpu_sys_s);
	param_i64(&p, res->max_rss_kib);
	param_i64(&p, res->wall_ms);
	param_str(&p, b->tag);
	r = exec_one(b, ST_END, &p, e);
	if (r) {
		changed = PQntuples(r) == 1;
		if (changed)
			job_state_parse(PQgetvalue(r, 0, 0), out);
		PQclear(r);
	}
	for (i = 0; i < 3; i++)
		buf_release(&text[i]);
	return changed;
}

static int pg_unlease(struct jobq_backend *b, int64_t id, int64_t token, int uncount, int64_t now,
		      struct err *e)
{
	struct params p = { 0 };

	(void)now;
	param_i64(&p, id);
	param_i64(&p, token);
	param_i64(&p, uncount ? 1 : 0);
	param_str(&p, b->tag);
	return leased_change(b, ST_UNLEASE, &p, e);
}

static int pg_leases(struct jobq_backend *b, struct jobq_held **held, size_t *n, struct err *e)
{
	struct params p = { 0 };
	PGresult *res = exec_one(b, ST_LEASES, &p, e);
	int i, rows;

	*held = NULL;
	*n = 0;
	if (!res)
		return -1;
	rows = PQntuples(res);
	*held = xcalloc(rows ? (size_t)rows : 1, sizeof(**held));
	for (i = 0; i < rows; i++) {
		(*held)[i].id = col_i64(res, i, 0);
		(*held)[i].token = col_i64(res, i, 1);
		(*held)[i].owner = col_str(res, i, 2);
	}
	*n = (size_t)rows;
	PQclear(res);
	return 0;
}

/* ----- listing and operating ----- */

/* Appends the query's filters as " AND ..." terms, their values to p. */
static void add_filters(struct buf *sql, const struct jobq_query *qu, struct params *p)
{
	if (qu->state >= 0) {
		param_str(p, job_state_name((enum job_state)qu->state));
		buf_addf(sql, " AND state = $%d", p->n);
	}
	if (qu->handler) {
		param_str(p, qu->handler);
		buf_addf(sql, " AND handler = $%d", p->n);
	}
	if (qu->batch) {
		param_str(p, qu->batch);
		buf_addf(sql, " AND batch = $%d", p->n);
	}
	if (qu->id) {
		param_i64(p, qu->id);
		buf_addf(sql, " AND id = $%d", p->n);
	}
}

/* Runs a query made for one call. */
static PGresult *exec_sql(struct jobq_backend *b, const char *sql, const struct params *p,
			  const char *what, struct err *e)
{
	if (ready(b, e) < 0)
		return NULL;
	return checked(b, PQexecParams(b->conn, sql, p->n, NULL, p->v, NULL, NULL, 0), what, 0, e);
}

static int pg_list(struct jobq_backend *b, const struct jobq_query *qu, int64_t below, size_t max,
		   struct jobq_job **jobs, size_t *n, struct err *e)
{
	struct buf sql = BUF_INIT;
	struct params p = { 0 };
	PGresult *res;
	int i, rows;

	*jobs = NULL;
	*n = 0;
	buf_adds(&sql, "SELECT " JOB_COLS("0") " FROM jobs WHERE true");
	add_filters(&sql, qu, &p);
	param_i64(&p, below);
	buf_addf(&sql, " AND id < $%d", p.n);
	param_i64(&p, (int64_t)max);
	buf_addf(&sql, " ORDER BY id DESC LIMIT $%d", p.n);
	res = exec_sql(b, sql.data, &p, "list jobs", e);
	buf_release(&sql);
	if (!res)
		return -1;
	rows = PQntuples(res);
	*jobs = xcalloc(rows ? (size_t)rows : 1, sizeof(**jobs));
	for (i = 0; i < rows; i++)
		row_job(res, i, &(*jobs)[i]);
	*n = (size_t)rows;
	PQclear(res);
	return 0;
}

static int pg_count(struct jobq_backend *b, const struct jobq_query *qu, int64_t counts[8],
		    struct err *e)
{
	struct buf sql = BUF_INIT;
	struct params p = { 0 };
	enum job_state state;
	PGresult *res;
	int i;

	buf_adds(&sql, "SELECT state, count(*) FROM jobs WHERE true");
	add_filters(&sql, qu, &p);
	buf_adds(&sql, " GROUP BY state");
	res = exec_sql(b, sql.data, &p, "count jobs", e);
	buf_release(&sql);
	if (!res)
		return -1;
	for (i = 0; i < PQntuples(res); i++)
		if (job_state_parse(PQgetvalue(res, i, 0), &state) == 0)
			counts[state] = col_i64(res, i, 1);
	PQclear(res);
	return 0;
}

/* Why a job could not be retried: it does not exist, or is in another state. */
static int why_not_retried(struct jobq_backend *b, int64_t id, struct err *e)
{
	struct params p = { 0 };
	PGresult *res;

	param_i64(&p, id);
	res = exec_one(b, ST_STATE_OF, &p, e);
	if (!res)
		return -1;
	if (PQntuples(res) == 0)
		err_set(e, ERR_NOTFOUND, "no job %" PRId64, id);
	else
		err_set(e, ERR_CONFLICT,
			"job %" PRId64 " is %s: only dead and retry jobs are retried", id,
			PQgetvalue(res, 0, 0));
	PQclear(res);
	return -1;
}

/*
 * Runs a statement that changes at most BATCH_ROWS rows, each run its own
 * transaction, until one changes fewer: no lock is held for long. *n counts.
 */
static int batched(struct jobq_backend *b, enum stmt id, const struct params *p, size_t *n,
		   struct err *e)
{
	int64_t changed;

	*n = 0;
	do {
		if (exec_int(b, id, p, &changed, e) < 0)
			return -1;
		*n += (size_t)changed;
	} while (changed == BATCH_ROWS);
	return 0;
}

static int pg_retry(struct jobq_backend *b, int64_t id, int64_t now, size_t *n, struct err *e)
{
	struct params p = { 0 };
	int64_t changed;

	(void)now;
	*n = 0;
	if (id)
		param_i64(&p, id);
	param_str(&p, b->tag);
	if (!id)
		return batched(b, ST_RETRY_DEAD, &p, n, e);
	if (exec_int(b, ST_RETRY_ONE, &p, &changed, e) < 0)
		return -1;
	*n = (size_t)changed;
	return changed ? 0 : why_not_retried(b, id, e);
}

static int pg_prune(struct jobq_backend *b, int64_t before_ms, size_t *n, struct err *e)
{
	struct params p = { 0 };

	/* How old, from jobq.c's clock, which it read just now; old by the database's clock. */
	param_i64(&p, jobq_now_ms() - before_ms);
	return batched(b, ST_PRUNE, &p, n, e);
}

static int pg_ledger_done(struct jobq_backend *b, const char *bucket, const char *key,
			  const char *version, const char *handler, struct err *e)
{
	struct params p = { 0 };
	int64_t v;

	param_str(&p, bucket);
	param_str(&p, key);
	param_str(&p, version);
	param_str(&p, handler);
	return exec_int(b, ST_LEDGER_DONE, &p, &v, e);
}

static int pg_checkpoint_get(struct jobq_backend *b, const char *id, char **value, struct err *e)
{
	struct params p = { 0 };
	PGresult *res;

	param_str(&p, id);
	res = exec_one(b, ST_CP_GET, &p, e);
	if (!res)
		return -1;
	if (PQntuples(res) > 0)
		*value = col_str(res, 0, 0);
	PQclear(res);
	return 0;
}

static int pg_check_writable(struct jobq_backend *b, int64_t now, struct err *e)
{
	(void)now;
	return check_writable(b, e);
}

static int pg_oldest_pending(struct jobq_backend *b, int64_t *ms, struct err *e)
{
	struct params p = { 0 };
	int64_t age;
	int r = exec_int(b, ST_OLDEST, &p, &age, e);

	/* The database's age, on this host's clock. */
	*ms = r > 0 ? jobq_now_ms() + age : 0;
	return r < 0 ? -1 : 0;
}

/* Notifications of other processes heard: handles that claim listen. */
static int pg_version(struct jobq_backend *b, uint64_t *v, struct err *e)
{
	if (!b->lis)
		return err_set(e, ERR_INTERNAL, "queue '%s': this handle does not listen",
			       SHORT(b->name));
	*v = __atomic_load_n(&b->lis->heard, __ATOMIC_RELAXED);
	return 0;
}

static int pg_next_due(struct jobq_backend *b, int64_t now, int64_t *ms, struct err *e)
{
	struct params p = { 0 };
	int64_t in;
	int r = exec_int(b, ST_NEXT_DUE, &p, &in, e);

	/* How long until then by the database's clock, from now on this host's. */
	*ms = r > 0 ? now + in : 0;
	return r < 0 ? -1 : 0;
}

const struct jobq_ops jobq_pg_ops = {
	.open = pg_open,
	.close = pg_close,
	.enqueue = pg_enqueue,
	.claim = pg_claim,
	.renew = pg_renew,
	.end = pg_end,
	.unlease = pg_unlease,
	.leases = pg_leases,
	.list = pg_list,
	.count = pg_count,
	.retry = pg_retry,
	.prune = pg_prune,
	.ledger_done = pg_ledger_done,
	.checkpoint_get = pg_checkpoint_get,
	.check_writable = pg_check_writable,
	.oldest_pending = pg_oldest_pending,
	.version = pg_version,
	.next_due = pg_next_due,
};
