/* s3hook reprocess s3://BUCKET[/PREFIX] | --manifest FILE */
#include "cmd/cmd.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/ini.h"
#include "core/jobq.h"
#include "core/log.h"
#include "core/str.h"
#include "core/units.h"
#include "s3/client.h"
#include "triggers/reprocess.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char reprocess_help[] =
	"usage: s3hook reprocess [OPTIONS] s3://BUCKET[/PREFIX]\n"
	"       s3hook reprocess [OPTIONS] --manifest FILE\n\n"
	"Runs the handlers over objects already stored: each object listed (or named by the\n"
	"manifest) is matched against the handler rules as a live s3:ObjectCreated:Put would be,\n"
	"narrowed by the options below, and its jobs go on the queue after live jobs. By default\n"
	"it runs workers itself and waits until every job it made has ended. Objects the ledger\n"
	"has as done by a handler are skipped. Run the same command again after a crash or\n"
	"Ctrl-C and it resumes where it stopped.\n\n"
	"      --manifest FILE   S3 Batch Operations CSV: bucket,key[,versionId], keys "
	"URL-encoded\n"
	"      --handler NAME    only this handler (repeatable; default: every handler)\n"
	"      --suffix SUFFIX   only keys ending so (repeatable)\n"
	"      --since TIME      only objects modified at TIME or later: 2024-05-01,\n"
	"                        2024-05-01T12:30:00Z, @SECONDS, or back from now: 36h, 7d\n"
	"      --until TIME      only objects modified before TIME\n"
	"      --min-size SIZE   only objects at least this big (1MiB, 500KiB, 1024)\n"
	"      --max-size SIZE   only objects at most this big\n"
	"  -n, --dry-run         print what would run (handler, size, object) and totals;\n"
	"                        touch nothing\n"
	"      --enqueue         only queue the jobs, for a running `s3hook serve`, and return\n"
	"      --force           run even what the ledger has as done\n"
	"      --rate N[/s]      queue at most N objects a second\n"
	"      --report FILE     write a completion report (S3 Batch Operations CSV)\n"
	"      --report-failed   the report holds the failed tasks only\n"
	"      --no-progress     no progress line (shown only when stderr is a "
	"terminal)\n" CMD_COMMON_HELP
	"\nExit status: 0 every job done (or skipped), 1 some failed (or an error), 2 usage\n"
	"error, 3 the listing (or the manifest) failed; its checkpoint is kept.\n";

enum {
	OPT_MANIFEST = OPT_CMD_FIRST,
	OPT_HANDLER,
	OPT_SUFFIX,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_MIN_SIZE,
	OPT_MAX_SIZE,
	OPT_ENQUEUE,
	OPT_FORCE,
	OPT_RATE,
	OPT_REPORT,
	OPT_REPORT_FAILED,
	OPT_NO_PROGRESS,
};

enum { EXIT_LISTING = 3 };

struct reprocess_args {
	struct cmd_common co;
	struct reprocess_opts o;
	const char **handlers; /* NULL-terminated */
	size_t n_handlers;
	const char **suffixes;
	size_t n_suffixes;
	char *bucket;
	char *prefix;
	int progress;
	int shown; /* a progress line is on the terminal */
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = 1;
	/* A second Ctrl-C ends the process at once. */
	signal(sig, SIG_DFL);
}

static void add(const char ***v, size_t *n, const char *s)
{
	*v = xrealloc(*v, (*n + 2) * sizeof(char *));
	(*v)[(*n)++] = s;
	(*v)[*n] = NULL;
}

static int parse_rate(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (end != s && !strcmp(end, "/s"))
		end += 2;
	if (errno || end == s || *end || !isfinite(*out) || *out <= 0)
		return cmd_usage_error("reprocess", "--rate takes N or N/s (N > 0), not '%s'",
				       SHORT(s));
	return 0;
}

static int parse_size(const char *flag, const char *s, uint64_t *out)
{
	if (units_size(s, out) < 0)
		return cmd_usage_error("reprocess", "%s takes a size (1024, 64KiB, 1MiB), not '%s'",
				       flag, SHORT(s));
	return 0;
}

static int parse_time(const char *s, int64_t *out)
{
	struct err e = ERR_INIT;

	if (reprocess_parse_time(s, (int64_t)time(NULL), out, &e) < 0)
		return cmd_usage_error("reprocess", "%s", e.msg);
	return 0;
}

/* One option of this command; 0, or EXIT_USAGE (message printed). */
static int option(struct reprocess_args *a, int opt, const char *arg)
{
	switch (opt) {
	case OPT_MANIFEST:
		a->o.manifest = arg;
		return 0;
	case OPT_HANDLER:
		add(&a->handlers, &a->n_handlers, arg);
		return 0;
	case OPT_SUFFIX:
		add(&a->suffixes, &a->n_suffixes, arg);
		return 0;
	case OPT_SINCE:
		return parse_time(arg, &a->o.since) ? EXIT_USAGE : 0;
	case OPT_UNTIL:
		return parse_time(arg, &a->o.until) ? EXIT_USAGE : 0;
	case OPT_MIN_SIZE:
		return parse_size("--min-size", arg, &a->o.min_size) ? EXIT_USAGE : 0;
	case OPT_MAX_SIZE:
		return parse_size("--max-size", arg, &a->o.max_size) ? EXIT_USAGE : 0;
	case 'n':
		a->o.flags |= REPROCESS_DRY_RUN;
		return 0;
	case OPT_ENQUEUE:
		a->o.flags |= REPROCESS_ENQUEUE;
		return 0;
	case OPT_FORCE:
		a->o.flags |= REPROCESS_FORCE;
		return 0;
	case OPT_RATE:
		return parse_rate(arg, &a->o.rate) ? EXIT_USAGE : 0;
	case OPT_REPORT:
		a->o.report = arg;
		return 0;
	case OPT_REPORT_FAILED:
		a->o.flags |= REPROCESS_REPORT_FAILED;
		return 0;
	case OPT_NO_PROGRESS:
		a->progress = 0;
		return 0;
	}
	return cmd_common_opt(&a->co, opt, arg) == 1 ? 0
						     : cmd_usage_error("reprocess", "bad option");
}

/* -1: --help was given (printed); else 0 or EXIT_USAGE. */
static int parse_args(struct reprocess_args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "manifest", required_argument, NULL, OPT_MANIFEST },
		{ "handler", required_argument, NULL, OPT_HANDLER },
		{ "suffix", required_argument, NULL, OPT_SUFFIX },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "min-size", required_argument, NULL, OPT_MIN_SIZE },
		{ "max-size", required_argument, NULL, OPT_MAX_SIZE },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "enqueue", no_argument, NULL, OPT_ENQUEUE },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "rate", required_argument, NULL, OPT_RATE },
		{ "report", required_argument, NULL, OPT_REPORT },
		{ "report-failed", no_argument, NULL, OPT_REPORT_FAILED },
		{ "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
		{ NULL, 0, NULL, 0 },
	};
	struct err e = ERR_INIT;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:hn", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(reprocess_help, stdout);
			return -1;
		}
		if (opt == '?')
			return cmd_usage_error("reprocess", "bad option");
		if ((rc = option(a, opt, optarg)) != 0)
			return rc;
	}
	if ((a->o.flags & REPROCESS_REPORT_FAILED) && !a->o.report)
		return cmd_usage_error("reprocess", "--report-failed needs --report FILE");
	if (argc - optind != (a->o.manifest ? 0 : 1))
		return cmd_usage_error("reprocess",
				       a->o.manifest ? "--manifest takes the place of s3://BUCKET"
						     : "give one s3://BUCKET[/PREFIX]");
	if (!a->o.manifest && s3_parse_url(argv[optind], &a->bucket, &a->prefix, &e) < 0)
		return cmd_usage_error("reprocess", "%s", e.msg);
	a->o.bucket = a->bucket;
	a->o.prefix = a->prefix;
	a->o.handlers = a->handlers;
	a->o.suffixes = a->suffixes;
	return 0;
}

/* ---- output ---- */

static uint64_t ended(const struct reprocess_stats *st)
{
	return (uint64_t)(st->states[JOB_DONE] + st->states[JOB_DEAD] + st->states[JOB_SKIPPED] +
			  st->states[JOB_GONE] + st->states[JOB_SUPERSEDED]);
}

static uint64_t skipped(const struct reprocess_stats *st)
{
	return st->already_done + (uint64_t)(st->states[JOB_SKIPPED] + st->states[JOB_GONE] +
					     st->states[JOB_SUPERSEDED]);
}

static double seconds(const struct reprocess_stats *st)
{
	return (double)(jobq_now_ms() - st->started_ms) / 1000.0;
}

static void progress(void *arg, const struct reprocess_stats *st)
{
	struct reprocess_args *a = arg;
	double secs = seconds(st), rate = secs > 0 ? (double)ended(st) / secs : 0;
	int64_t left = st->states[JOB_PENDING] + st->states[JOB_RUNNING] + st->states[JOB_RETRY];
	char eta[32] = "";

	if (!a->progress)
		return;
	if (st->listing_done && rate > 0 && left > 0)
		snprintf(eta, sizeof(eta), "  ETA %.0fs", (double)left / rate);
	fprintf(stderr,
		"\r\033[Klisted %llu  queued %llu  running %lld  done %lld  failed %lld  skipped "
		"%llu"
		"  %.0f/s%s",
		(unsigned long long)st->listed, (unsigned long long)st->queued,
		(long long)st->states[JOB_RUNNING], (long long)st->states[JOB_DONE],
		(long long)st->states[JOB_DEAD], (unsigned long long)skipped(st), rate, eta);
	a->shown = 1;
}

static void would_run(void *arg, const char *handler, const char *bucket, const char *key,
		      uint64_t size)
{
	struct buf esc = BUF_INIT;
	const char *p;

	(void)arg;
	/* Control bytes escaped, as `ls` shows them: a key cannot forge a line. */
	for (p = key; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			buf_addf(&esc, "\\x%02x", (unsigned char)*p);
		else
			buf_addch(&esc, *p);
	}
	printf("%s\t%llu\ts3://%s/%s\n", handler, (unsigned long long)size, bucket, esc.data);
	buf_release(&esc);
}

static void summary(const struct reprocess_args *a, const struct reprocess_stats *st)
{
	char size[32];

	if (a->shown)
		fputs("\r\033[K", stderr);
	if (st->resumed)
		fprintf(stderr, "reprocess: resumed the interrupted run %s\n", st->batch);
	if (a->o.flags & REPROCESS_DRY_RUN) {
		printf("would run %llu jobs on %llu objects (%s) of %llu listed; %llu already "
		       "done\n",
		       (unsigned long long)st->jobs, (unsigned long long)st->matched,
		       units_fmt_size(size, sizeof(size), st->bytes),
		       (unsigned long long)st->listed, (unsigned long long)st->already_done);
	} else if (a->o.flags & REPROCESS_ENQUEUE) {
		fprintf(stderr, "reprocess: %llu objects listed, %llu jobs queued (batch %s)",
			(unsigned long long)st->listed, (unsigned long long)st->queued, st->batch);
		fprintf(stderr, ", %llu already done\n", (unsigned long long)st->already_done);
	} else {
		fprintf(stderr,
			"reprocess: %llu objects listed, %llu jobs: %lld done, %lld failed, "
			"%llu skipped (%llu already done); %.1f s\n",
			(unsigned long long)st->listed,
			(unsigned long long)(ended(st) + st->already_done),
			(long long)st->states[JOB_DONE], (long long)st->states[JOB_DEAD],
			(unsigned long long)skipped(st), (unsigned long long)st->already_done,
			seconds(st));
	}
	if (st->rejected || st->missing)
		fprintf(stderr,
			"reprocess: %llu objects not taken (see the warnings), %llu missing\n",
			(unsigned long long)st->rejected, (unsigned long long)st->missing);
	if (st->states[JOB_DEAD] && !(a->o.flags & REPROCESS_ENQUEUE))
		fprintf(stderr, "reprocess: see them with 's3hook jobs --state dead'\n");
}

/* ---- the command ---- */

/* Without --log-level or [log] level, only warnings: a line per job would drown the progress. */
static void quiet_log(const struct cmd_common *co)
{
	const char *fmt = co->log_format;

	if (co->log_level || (co->conf && ini_get(co->conf, "log", "level", NULL)))
		return;
	if (!fmt && co->conf)
		fmt = ini_get(co->conf, "log", "format", NULL);
	log_setup(LOG_WARN, fmt && !strcmp(fmt, "json") ? LOG_JSON : LOG_LOGFMT, 2);
}

static void catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static int run(struct reprocess_args *a, const struct config *cfg, struct s3_client *s3)
{
	struct reprocess_stats st;
	struct err e = ERR_INIT;
	int r;

	a->o.progress = progress;
	a->o.would_run = would_run;
	a->o.arg = a;
	a->o.cancel = &interrupted;
	catch_signals();
	r = reprocess_run(cfg, s3, &a->o, &st, &e);
	if (r < 0 && e.code == ERR_USAGE) {
		if (a->shown)
			fputs("\r\033[K", stderr);
		return cmd_usage_error("reprocess", "%s", e.msg);
	}
	summary(a, &st);
	if (r < 0 && e.code == ERR_CANCELLED)
		cmd_error("interrupted; the same command resumes the run");
	else if (r < 0)
		cmd_error("%s", e.msg);
	if (r < 0)
		return st.listing_failed ? EXIT_LISTING : EXIT_FAILED;
	return st.states[JOB_DEAD] ? EXIT_FAILED : EXIT_OK;
}

int cmd_reprocess(int argc, char **argv)
{
	struct reprocess_args a = { .co = CMD_COMMON_INIT, .o = REPROCESS_OPTS_INIT };
	struct config cfg = CONFIG_INIT;
	struct s3_client *s3 = NULL;
	struct err e = ERR_INIT;
	int rc;

	a.progress = isatty(STDERR_FILENO);
	rc = parse_args(&a, argc, argv);
	if (rc)
		goto out;
	rc = EXIT_FAILED;
	if (cmd_load_config(&a.co) < 0)
		goto out;
	quiet_log(&a.co);
	if (config_load(&cfg, a.co.conf, &e) < 0) {
		cmd_error("%s", e.msg);
		goto out;
	}
	if ((s3 = cmd_s3_client(&a.co)))
		rc = run(&a, &cfg, s3);
out:
	s3_client_free(s3);
	config_release(&cfg);
	cmd_common_release(&a.co);
	free(a.handlers);
	free(a.suffixes);
	free(a.bucket);
	free(a.prefix);
	return rc < 0 ? EXIT_OK : rc;
}
