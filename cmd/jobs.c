/* s3hook jobs [--state S] [--handler H] [--id ID] [--limit N] [--json] [--summary] */
#include "cmd/cmd.h"

#include "core/err.h"
#include "core/jobq.h"
#include "core/str.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char jobs_help[] =
	"usage: s3hook jobs [OPTIONS]\n\n"
	"Lists the jobs of the queue, newest first: id, state, handler, attempts, how the last\n"
	"attempt ended, what it cost (wall time, CPU seconds user+system, peak RSS; '<20M': at\n"
	"most that, below what can be measured), and the object. Failed jobs show their last\n"
	"error and the tail of their stderr.\n\n"
	"  -s, --state STATE     pending, running, retry, done, dead, skipped, gone, superseded\n"
	"      --handler NAME    only this handler's jobs\n"
	"      --id ID           only this job, in full\n"
	"  -n, --limit N         at most N jobs (default 50; 0: all)\n"
	"      --json            one JSON object per job (per handler with --summary), every field\n"
	"      --summary         per handler: jobs, runs, failures, CPU seconds, p50/p99 wall\n"
	"                        time and largest peak RSS of the jobs' last attempts\n"
	"      --queue PATH      the queue (default: [jobs] queue of the configuration)\n" CMD_COMMON_HELP;

enum { OPT_HANDLER = OPT_CMD_FIRST, OPT_ID, OPT_JSON, OPT_QUEUE, OPT_SUMMARY };

struct jobs_view {
	int json;
	int full;
	size_t shown;
};

static void print_tail(const char *label, const char *text)
{
	const char *p = text;
	size_t n = strlen(text);

	if (!n)
		return;
	/* The last lines are the telling ones. */
	if (n > 600)
		p = text + n - 600;
	printf("    %s: %s%s\n", label, p != text ? "..." : "", p);
}

/* Whether the job's last attempt ran the handler (so its usage means something). */
static int ran(const struct jobq_job *j)
{
	return j->exit_code >= 0 || j->signal > 0;
}

/* "850ms", "12.3s", "7m05s". */
static const char *fmt_ms(char *out, size_t size, int64_t ms)
{
	if (ms < 1000)
		snprintf(out, size, "%lldms", (long long)ms);
	else if (ms < 60000)
		snprintf(out, size, "%.1fs", (double)ms / 1000.0);
	else
		snprintf(out, size, "%lldm%02llds", (long long)(ms / 60000),
			 (long long)(ms / 1000 % 60));
	return out;
}

/* "812K", "45M", "1.2G"; a negative -N (at most N, see jobq_result) as "<N". */
static const char *fmt_kib(char *out, size_t size, int64_t kib)
{
	const char *lt = kib < 0 ? "<" : "";

	if (kib < 0)
		kib = -kib;
	if (kib < 1024)
		snprintf(out, size, "%s%lldK", lt, (long long)kib);
	else if (kib < 1024 * 1024)
		snprintf(out, size, "%s%lldM", lt, (long long)(kib + 512) / 1024);
	else
		snprintf(out, size, "%s%.1fG", lt, (double)kib / (1024.0 * 1024.0));
	return out;
}

/* The wall, CPU and RSS columns of a job. */
static void usage_cols(const struct jobq_job *j, char *wall, char *cpu, char *rss, size_t size)
{
	if (!ran(j)) {
		snprintf(wall, size, "-");
		snprintf(cpu, size, "-");
		snprintf(rss, size, "-");
		return;
	}
	fmt_ms(wall, size, j->wall_ms);
	snprintf(cpu, size, "%.2fs", j->cpu_user_s + j->cpu_sys_s);
	fmt_kib(rss, size, j->max_rss_kib);
}

static int print_job(void *arg, const struct jobq_job *j)
{
	struct jobs_view *v = arg;
	char how[64], when[32], wall[32], cpu[32], rss[32];
	time_t t = (time_t)(j->updated_ms / 1000);
	struct tm tm;

	v->shown++;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	if (j->signal)
		snprintf(how, sizeof(how), "signal %d", j->signal);
	else if (j->exit_code >= 0)
		snprintf(how, sizeof(how), "exit %d", j->exit_code);
	else
		snprintf(how, sizeof(how), "-");
	usage_cols(j, wall, cpu, rss, sizeof(wall));
	printf("%-8lld %-10s %-14s %2d/%-2d %-10s %7s %7s %6s %s  s3://%s/%s\n", (long long)j->id,
	       job_state_name(j->state), j->handler, j->attempts, j->max_attempts, how, wall, cpu,
	       rss, when, j->bucket, SHORT(j->key));
	if (j->last_error && *j->last_error &&
	    (v->full || j->state == JOB_DEAD || j->state == JOB_RETRY || j->state == JOB_SKIPPED))
		printf("    error: %s\n", j->last_error);
	if (v->full || j->state == JOB_DEAD || j->state == JOB_RETRY)
		print_tail("stderr", j->stderr_tail ? j->stderr_tail : "");
	if (v->full)
		print_tail("stdout", j->stdout_tail ? j->stdout_tail : "");
	return 0;
}

static int print_json(void *arg, const struct jobq_job *j)
{
	struct jobs_view *v = arg;
	json_t *o = json_object();
	char *s;

	v->shown++;
	json_object_set_new(o, "id", json_integer(j->id));
	json_object_set_new(o, "state", json_string(job_state_name(j->state)));
	json_object_set_new(o, "handler", json_string(j->handler));
	json_object_set_new(o, "bucket", json_string(j->bucket));
	json_object_set_new(o, "key", json_string(j->key));
	json_object_set_new(o, "version_id", json_string(j->version_id ? j->version_id : ""));
	json_object_set_new(o, "etag", json_string(j->etag ? j->etag : ""));
	json_object_set_new(o, "event", json_string(j->event_name));
	json_object_set_new(o, "attempts", json_integer(j->attempts));
	json_object_set_new(o, "max_attempts", json_integer(j->max_attempts));
	json_object_set_new(o, "exit_code", j->exit_code >= 0 ? json_integer(j->exit_code) : json_null());
	json_object_set_new(o, "signal", j->signal ? json_integer(j->signal) : json_null());
	json_object_set_new(o, "error", json_string(j->last_error ? j->last_error : ""));
	json_object_set_new(o, "stderr_tail", json_string(j->stderr_tail ? j->stderr_tail : ""));
	json_object_set_new(o, "stdout_tail", json_string(j->stdout_tail ? j->stdout_tail : ""));
	json_object_set_new(o, "created_ms", json_integer(j->created_ms));
	json_object_set_new(o, "updated_ms", json_integer(j->updated_ms));
	json_object_set_new(o, "cpu_user_s", json_real(j->cpu_user_s));
	json_object_set_new(o, "cpu_sys_s", json_real(j->cpu_sys_s));
	/* Known peak, or null with the bound it stayed below (see jobq_result). */
	json_object_set_new(o, "max_rss_kib",
			    j->max_rss_kib > 0 ? json_integer(j->max_rss_kib) : json_null());
	json_object_set_new(o, "max_rss_below_kib",
			    j->max_rss_kib < 0 ? json_integer(-j->max_rss_kib) : json_null());
	json_object_set_new(o, "wall_ms", json_integer(j->wall_ms));
	s = json_dumps(o, JSON_COMPACT);
	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(o);
	return 0;
}

static void print_summary_json(const struct jobq_handler_summary *h)
{
	json_t *o = json_object();
	char *s;

	json_object_set_new(o, "handler", json_string(h->handler));
	json_object_set_new(o, "jobs", json_integer((json_int_t)h->jobs));
	json_object_set_new(o, "runs", json_integer((json_int_t)h->runs));
	json_object_set_new(o, "failures", json_integer((json_int_t)h->failures));
	json_object_set_new(o, "cpu_user_s", json_real(h->cpu_user_s));
	json_object_set_new(o, "cpu_sys_s", json_real(h->cpu_sys_s));
	json_object_set_new(o, "wall_p50_ms", json_integer(h->wall_p50_ms));
	json_object_set_new(o, "wall_p99_ms", json_integer(h->wall_p99_ms));
	json_object_set_new(o, "max_rss_kib",
			    h->max_rss_kib > 0 ? json_integer(h->max_rss_kib) : json_null());
	json_object_set_new(o, "max_rss_below_kib",
			    h->max_rss_kib < 0 ? json_integer(-h->max_rss_kib) : json_null());
	s = json_dumps(o, JSON_COMPACT);
	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(o);
}

static void print_summary_line(const struct jobq_handler_summary *h)
{
	char p50[32], p99[32], rss[32];

	if (!h->runs) {
		snprintf(p50, sizeof(p50), "-");
		snprintf(p99, sizeof(p99), "-");
		snprintf(rss, sizeof(rss), "-");
	} else {
		fmt_ms(p50, sizeof(p50), h->wall_p50_ms);
		fmt_ms(p99, sizeof(p99), h->wall_p99_ms);
		fmt_kib(rss, sizeof(rss), h->max_rss_kib);
	}
	printf("%-16s %8llu %8llu %8llu %10.2f %8s %8s %7s\n", h->handler,
	       (unsigned long long)h->jobs, (unsigned long long)h->runs,
	       (unsigned long long)h->failures, h->cpu_user_s + h->cpu_sys_s, p50, p99, rss);
}

/* --summary: the metering of the jobs' last attempts, per handler. */
static int summary(struct jobq *q, struct jobq_query *qu, int json)
{
	struct jobq_handler_summary *hs = NULL;
	struct err e = ERR_INIT;
	size_t n = 0, i;

	qu->limit = 0;
	if (jobq_summary(q, qu, &hs, &n, &e) < 0) {
		cmd_error("%s", e.msg);
		return EXIT_FAILED;
	}
	if (!json)
		printf("%-16s %8s %8s %8s %10s %8s %8s %7s\n", "handler", "jobs", "runs",
		       "failures", "cpu-s", "p50", "p99", "max-rss");
	for (i = 0; i < n; i++) {
		if (json)
			print_summary_json(&hs[i]);
		else
			print_summary_line(&hs[i]);
	}
	jobq_summary_free(hs, n);
	return EXIT_OK;
}

int cmd_jobs(int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "state", required_argument, NULL, 's' },
		{ "handler", required_argument, NULL, OPT_HANDLER },
		{ "id", required_argument, NULL, OPT_ID },
		{ "limit", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "queue", required_argument, NULL, OPT_QUEUE },
		{ "summary", no_argument, NULL, OPT_SUMMARY },
		{ NULL, 0, NULL, 0 },
	};
	struct cmd_common co = CMD_COMMON_INIT;
	struct jobq_query qu = JOBQ_QUERY_INIT;
	struct jobs_view v = { 0 };
	const char *queue = NULL;
	struct jobq *q = NULL;
	struct err e = ERR_INIT;
	enum job_state st;
	uint64_t n;
	int opt, rc = EXIT_FAILED, sum = 0;

	qu.limit = 50;
	while ((opt = getopt_long(argc, argv, "c:hs:n:", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(jobs_help, stdout);
			return EXIT_OK;
		} else if (opt == 's') {
			if (job_state_parse(optarg, &st) < 0)
				return cmd_usage_error("jobs", "'%s' is not a job state", SHORT(optarg));
			qu.state = (int)st;
		} else if (opt == OPT_HANDLER) {
			qu.handler = optarg;
		} else if (opt == OPT_ID) {
			if (str_to_u64(optarg, &n) < 0 || !n)
				return cmd_usage_error("jobs", "--id takes a job number");
			qu.id = (int64_t)n;
			v.full = 1;
		} else if (opt == 'n') {
			if (str_to_u64(optarg, &n) < 0)
				return cmd_usage_error("jobs", "--limit takes a number");
			qu.limit = (size_t)n;
		} else if (opt == OPT_JSON) {
			v.json = 1;
		} else if (opt == OPT_QUEUE) {
			queue = optarg;
		} else if (opt == OPT_SUMMARY) {
			sum = 1;
		} else if (opt == '?' || cmd_common_opt(&co, opt, optarg) != 1) {
			return cmd_usage_error("jobs", "bad option");
		}
	}
	if (optind < argc)
		return cmd_usage_error("jobs", "takes no arguments");
	if (cmd_load_config(&co) < 0 || !(q = cmd_open_queue(&co, queue, JOBQ_NO_CREATE)))
		goto out;
	if (sum) {
		rc = summary(q, &qu, v.json);
		goto out;
	}
	if (jobq_list(q, &qu, v.json ? print_json : print_job, &v, &e) < 0)
		cmd_error("%s", e.msg);
	else
		rc = EXIT_OK;
	if (rc == EXIT_OK && qu.id && !v.shown) {
		cmd_error("no job %lld", (long long)qu.id);
		rc = EXIT_FAILED;
	}
out:
	jobq_close(q);
	cmd_common_release(&co);
	return rc;
}
