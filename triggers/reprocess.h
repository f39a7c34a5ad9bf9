/*
 * reprocess: `s3hook reprocess` as a library. Runs the handlers over objects
 * that already exist, listed with ListObjectsV2 (pages of 1,000, streamed)
 * or read from a manifest CSV, with the same rules and the same queue as
 * live events:
 *
 *	struct reprocess_opts o = REPROCESS_OPTS_INIT;
 *	struct reprocess_stats st;
 *	o.bucket = "photos";
 *	o.prefix = "cats/";
 *	if (reprocess_run(&cfg, s3, &o, &st, &e) < 0)
 *		... st.listing_failed tells a failed listing (or manifest) from the rest
 *	else if (st.states[JOB_DEAD])
 *		... some jobs failed for good
 *
 * Each object becomes the event event_for_object() builds (s3:ObjectCreated:Put,
 * source "reprocess") and is matched by rules_jobs() as a live event would
 * be, then narrowed by the options. Its jobs get priority 1 (live jobs, 0,
 * run first) and the run's batch id, so the run can count and wait for
 * exactly its own jobs.
 *
 * Resuming. A run is keyed by a checkpoint id, a digest of (bucket, prefix,
 * filters, handlers, --force) or of (the manifest's bytes, filters, handlers,
 * --force). Its checkpoint holds the batch id and the last object queued, and
 * moves in the same transaction as that object's page of jobs
 * (jobq_enqueue_page()): after a crash or Ctrl-C the same command lists on
 * from there, so nothing is missed and nothing is listed twice. A run whose
 * listing ended and whose jobs all ended is over: the next one starts afresh
 * with a new batch (and skips through the ledger what is done).
 *
 * Dedupe. The queue's dedupe key is (bucket, key, version or ETag, sequencer,
 * handler) and a listing has no sequencer, so a reprocess job's sequencer is
 * "reprocess-" + its batch id. A resumed run keeps its batch, so an object it
 * queued before the crash cannot be queued twice; a new run (--force, or after
 * failures) has a new batch, so its jobs are new even beside an old job of the
 * same object. The event the handler reads keeps the sequencer "" (listings
 * have none). Objects whose (version or ETag, handler) the ledger has as done
 * are not queued unless --force, and are counted.
 *
 * Threads: reprocess_run() lists on the calling thread and, unless
 * REPROCESS_ENQUEUE or REPROCESS_DRY_RUN, runs a worker pool (core/worker.h)
 * meanwhile and waits for the batch; those workers may also run live jobs
 * queued at the time. The callbacks run on the calling thread.
 */
#ifndef S3HOOK_REPROCESS_H
#define S3HOOK_REPROCESS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct config;
struct err;
struct jobq_job;
struct s3_client;

/* Objects per listing page (ListObjectsV2's most) and per manifest page. */
#define REPROCESS_PAGE 1000

/* A checkpoint id: "reprocess-" and 64 hex digits. */
#define REPROCESS_ID_SIZE 80

enum reprocess_flags {
	REPROCESS_DRY_RUN = 1 << 0,	  /* report what would run; write nothing */
	REPROCESS_ENQUEUE = 1 << 1,	  /* queue the jobs for a running serve, do not wait */
	REPROCESS_FORCE = 1 << 2,	  /* queue even what the ledger has as done */
	REPROCESS_REPORT_FAILED = 1 << 3, /* the report holds failed tasks only */
};

struct reprocess_stats;

/* What to run on; every pointer is borrowed for the call. */
struct reprocess_opts {
	const char *bucket;	     /* list this bucket ... */
	const char *prefix;	     /* ... under this prefix ("" or NULL: all) */
	const char *manifest;	     /* or read this CSV instead (bucket must be NULL) */
	const char *const *handlers; /* NULL-terminated names; NULL: every handler */
	const char *const *suffixes; /* NULL-terminated; NULL: any key */
	int64_t since, until;	     /* LastModified in [since, until), s since the epoch */
	uint64_t min_size, max_size; /* bytes, inclusive */
	double rate;		     /* objects queued per second; 0: no limit */
	unsigned flags;		     /* enum reprocess_flags */
	const char *report;	     /* completion report CSV to write, or NULL */
	/* Called now and then (every 250 to 500 ms) while the run goes on; may be NULL. */
	void (*progress)(void *arg, const struct reprocess_stats *st);
	/* REPROCESS_DRY_RUN: called for each job that would be queued; may be NULL. */
	void (*would_run)(void *arg, const char *handler, const char *bucket, const char *key,
			  uint64_t size);
	void *arg;
	/* When it points at non-zero the run stops soon (Ctrl-C); may be NULL. */
	volatile sig_atomic_t *cancel;
};

#define REPROCESS_OPTS_INIT                                                    \
	{                                                                      \
		.since = INT64_MIN, .until = INT64_MAX, .max_size = UINT64_MAX \
	}

/* How a run went; filled in as it goes (the progress callback sees it). */
struct reprocess_stats {
	uint64_t listed;	/* objects listed, or manifest rows read */
	uint64_t matched;	/* objects that made at least one job (or would have) */
	uint64_t bytes;		/* their total size */
	uint64_t jobs;		/* jobs made (or that would be made) */
	uint64_t queued;	/* jobs added to the queue (jobs minus those already there) */
	uint64_t already_done;	/* jobs not made: the ledger has them done */
	uint64_t rejected;	/* objects skipped: key not accepted (NUL, too long, not UTF-8) */
	uint64_t missing;	/* manifest rows whose object does not exist (404) */
	uint64_t manifest_rows; /* rows in the manifest; 0 when listing */
	int64_t states[8];	/* the batch's jobs by enum job_state, this run and resumed */
	int resumed;		/* the checkpoint of an unfinished run was found */
	int listing_done;
	int listing_failed; /* reprocess_run() failed listing or reading the manifest */
	char batch[40];	    /* the run's batch id ("" in a dry run) */
	char checkpoint[REPROCESS_ID_SIZE];
	int64_t started_ms;
};

/*
 * Runs the handlers of cfg over the objects o names, as the header comment
 * says. Returns 0 when the listing ended and (unless REPROCESS_ENQUEUE or
 * REPROCESS_DRY_RUN) every job of the batch ended; st->states says how.
 * Returns -1 on failure: st->listing_failed when a listing page or the
 * manifest failed (the error names the page or line and why; the checkpoint
 * keeps what was queued), ERR_CANCELLED when *o->cancel was raised (running
 * handlers get [jobs] shutdown_grace, then their jobs go back to the queue).
 * Unknown handler names are ERR_USAGE. The report, when asked for, is
 * written (to a temporary file renamed into place) only when it returns 0.
 */
int reprocess_run(const struct config *cfg, struct s3_client *s3, const struct reprocess_opts *o,
		  struct reprocess_stats *st, struct err *e);

/*
 * The checkpoint id of a run: "reprocess-" and the SHA-256 of what defines
 * it (the source, the filters, the handlers given in any order, --force).
 * `handlers` is the NULL-terminated set the run uses. A manifest is read
 * whole to take the digest of its bytes. Stable across builds: a change
 * here strands the checkpoints of interrupted runs.
 */
int reprocess_checkpoint_id(const struct reprocess_opts *o, const char *const *handlers,
			    char out[REPROCESS_ID_SIZE], struct err *e);

/* ---- the manifest: S3 Batch Operations CSV, one "bucket,key[,versionId]" a line ---- */

/* One row; strings owned, freed by reprocess_row_release(). */
struct reprocess_row {
	char *bucket;
	char *key; /* decoded; may hold a NUL byte (key_len says how long) */
	size_t key_len;
	char *version_id; /* "" when none */
	unsigned long line;
};

#define REPROCESS_ROW_INIT     \
	{                      \
		.bucket = NULL \
	}
void reprocess_row_release(struct reprocess_row *row);

/*
 * Parses one line (without its newline; a trailing CR is dropped) numbered
 * `line`: two or three fields, each bare or "quoted" ("" is a quote inside),
 * the key (and version id) URL-encoded ('+' is a space). Returns 1 with *row
 * set, 0 for a blank line, -1 (ERR_PARSE, the message naming the line) for
 * anything else. *row must be REPROCESS_ROW_INIT or released.
 */
int reprocess_manifest_line(const char *text, size_t len, unsigned long line,
			    struct reprocess_row *row, struct err *e);

struct reprocess_manifest;

/* Opens a manifest to read rows from; a UTF-8 byte order mark is skipped. */
struct reprocess_manifest *reprocess_manifest_open(const char *path, struct err *e);

/*
 * The next row: 1 with *row set (released first), 0 at the end, -1 on a bad
 * line (the message names file and line) or a read error.
 */
int reprocess_manifest_next(struct reprocess_manifest *m, struct reprocess_row *row, struct err *e);
void reprocess_manifest_close(struct reprocess_manifest *m);

/* ---- the completion report: S3 Batch Operations CSV ---- */

/* The report's first line, with its newline. */
extern const char reprocess_report_header[];

/*
 * Appends one row: Bucket,Key,VersionId,TaskStatus,ErrorCode,HTTPStatusCode,
 * ResultMessage and a newline. TaskStatus is "succeeded" when error_code is
 * NULL, else "failed" with that ErrorCode. The key and version id are
 * URL-encoded ('+' for a space, "%2F" for '/'); the message has its control
 * bytes made spaces and is quoted when it holds a comma or a quote.
 */
void reprocess_report_row(struct buf *out, const char *bucket, const char *key, size_t key_len,
			  const char *version_id, const char *error_code, int http_status,
			  const char *message);

/*
 * Appends the row of a job: done, skipped, gone and superseded are
 * "succeeded" (HTTP 200, 200, 404 and 412, the message naming the state and
 * why); dead is "failed,PermanentFailure,500" with the last error and the
 * last line of the handler's stderr; a job not ended is
 * "failed,TemporaryFailure,500".
 */
void reprocess_report_job(struct buf *out, const struct jobq_job *job);

/*
 * Parses a time for --since and --until: "2024-05-01", "2024-05-01T12:30",
 * "2024-05-01T12:30:15Z" (UTC; ' ' may stand for 'T', fractions are
 * ignored), "@SECONDS", or a duration back from now ("36h", "7d").
 */
int reprocess_parse_time(const char *s, int64_t now, int64_t *out, struct err *e);

#endif
