/*
 * serve: `s3hook serve` as a library, so tests can run it in-process: the
 * configuration, the S3 client, the queue (one connection for ingest, one
 * for the workers), the webhook listener and the worker pool, started and
 * stopped in the right order.
 *
 *	struct serve *s = serve_new(ini, &e);     takes the ini
 *	serve_start(s, &e);
 *	... serve_tick(s) every second or so; serve_reload(s, new_ini, &e) on SIGHUP ...
 *	serve_stop(s);                            stop accepting, drain, release
 *	serve_free(s);
 */
#ifndef S3HOOK_SERVE_H
#define S3HOOK_SERVE_H

struct err;
struct ini;
struct serve;

/* Validates the configuration; takes ownership of ini (NULL: defaults), even on failure. */
struct serve *serve_new(struct ini *ini, struct err *e);

/* Opens the queue, reclaims orphaned jobs, starts the workers and the listener. */
int serve_start(struct serve *s, struct err *e);

/*
 * Applies a new configuration atomically: handlers, rules, limits, token. A
 * bad one is refused (-1, the old one kept). Keys that need a restart are
 * logged by name. Takes ownership of ini.
 */
int serve_reload(struct serve *s, struct ini *ini, struct err *e);

/* Housekeeping: prunes finished jobs past keep_done (at most every few minutes). */
void serve_tick(struct serve *s);

/* Stops accepting (every waiting request answered), lets handlers finish, releases the rest. */
void serve_stop(struct serve *s);
void serve_free(struct serve *s);

/* The bound ports (for tests that listen on port 0). */
int serve_port(const struct serve *s);
int serve_admin_port(const struct serve *s);

#endif
