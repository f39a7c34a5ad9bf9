/*
 * Tests of what `serve` measures and shows: the Prometheus text of
 * triggers/metrics (checked against the format's grammar), the queue cache,
 * the S3 client's request counters and credentials (credential_process,
 * refresh before expiry and when ~/.aws changes), jobq_summary() and the
 * honest RSS of a vfork'd child.
 */
#include "tests/testutil.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/jobq.h"
#include "core/str.h"
#include "core/worker.h"
#include "s3/client.h"
#include "triggers/metrics.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the text format's grammar (version 0.0.4) ---- */

static int name_char(char c, int first)
{
	return isalpha((unsigned char)c) || c == '_' || c == ':' ||
	       (!first && isdigit((unsigned char)c));
}

/* Skips a metric or label name; NULL when there is none. */
static const char *skip_name(const char *p)
{
	if (!name_char(*p, 1))
		return NULL;
	while (name_char(*p, 0))
		p++;
	return p;
}

/* Skips {name="value",...}; NULL when malformed. */
static const char *skip_labels(const char *p)
{
	if (*p != '{')
		return p;
	p++;
	while (*p != '}') {
		if (!(p = skip_name(p)) || *p++ != '=' || *p++ != '"')
			return NULL;
		while (*p && *p != '"')
			p += *p == '\\' ? 2 : 1;
		if (*p++ != '"')
			return NULL;
		if (*p == ',')
			p++;
		else if (*p != '}')
			return NULL;
	}
	return p + 1;
}

/* The family a sample belongs to, given the TYPE lines seen so far (in `types`). */
static void family_of(const char *name, size_t len, const struct buf *types, char *out, size_t size)
{
	static const char *const suffixes[] = { "_bucket", "_sum", "_count" };
	char probe[256];
	size_t i, n;

	snprintf(out, size, "%.*s", (int)len, name);
	for (i = 0; i < 3; i++) {
		n = strlen(suffixes[i]);
		if (len > n && !strncmp(name + len - n, suffixes[i], n)) {
			snprintf(probe, sizeof(probe), "\n%.*s histogram\n", (int)(len - n), name);
			if (strstr(types->data, probe))
				snprintf(out, size, "%.*s", (int)(len - n), name);
		}
	}
}

/* Every line is a HELP, a TYPE (once per family, before its samples) or a sample. */
static void assert_exposition(const char *text)
{
	struct buf types = BUF_INIT;
	const char *line = text;

	buf_addch(&types, '\n');
	ck_assert_msg(*text && text[strlen(text) - 1] == '\n', "no final newline");
	while (*line) {
		const char *eol = strchr(line, '\n'), *p, *end;
		char fam[256], probe[300];
		ck_assert_ptr_nonnull(eol);
		if (!strncmp(line, "# TYPE ", 7)) {
			snprintf(probe, sizeof(probe), "\n%.*s", (int)(eol - line - 7), line + 7);
			ck_assert_msg(!strstr(types.data, probe), "TYPE twice: %.*s",
				      (int)(eol - line), line);
			buf_addf(&types, "%.*s\n", (int)(eol - line - 7), line + 7);
		} else if (strncmp(line, "# HELP ", 7)) {
			p = skip_name(line);
			ck_assert_msg(p, "bad name: %.*s", (int)(eol - line), line);
			family_of(line, (size_t)(p - line), &types, fam, sizeof(fam));
			snprintf(probe, sizeof(probe), "\n%s ", fam);
			ck_assert_msg(strstr(types.data, probe), "sample before its TYPE: %.*s",
				      (int)(eol - line), line);
			p = skip_labels(p);
			ck_assert_msg(p && *p == ' ', "bad labels: %.*s", (int)(eol - line), line);
			strtod(p + 1, (char **)&end);
			ck_assert_msg(end == eol || !strncmp(p + 1, "+Inf\n", 5), "bad value: %.*s",
				      (int)(eol - line), line);
		}
		line = eol + 1;
	}
	buf_release(&types);
}

static void assert_has(const char *text, const char *line)
{
	ck_assert_msg(strstr(text, line), "no '%s' in:\n%s", line, text);
}

/* ---- rendering ---- */

START_TEST(format_follows_the_text_format)
{
	char name[] = "we\"ird\\name";
	struct worker_handler_stats h = { .name = name, .runs = 4 };
	struct metrics_snapshot s;
	struct buf b = BUF_INIT;
	size_t i;

	memset(&s, 0, sizeof(s));
	s.version = "v1";
	s.have_webhook = s.have_pool = s.have_s3 = s.have_queue = s.queue_ok = 1;
	s.hook.received = 10;
	s.hook.rejected[WEBHOOK_REJ_AUTH] = 2;
	h.outcomes[JOB_DONE] = 3;
	h.outcomes[JOB_RETRY] = 1;
	for (i = 0; i < WORKER_N_BUCKETS; i++)
		h.duration_le[i] =
			worker_duration_buckets[i] >= 1 ? 4 : worker_duration_buckets[i] >= 0.25;
	h.duration_sum_s = 2.5;
	h.cpu_user_s = 1.25;
	h.max_rss_kib = -2048; /* below the daemon's floor: shown as 0 */
	s.handlers = &h;
	s.n_handlers = 1;
	s.s3.requests[S3_OP_GET_OBJECT][S3_ST_2XX] = 7;
	s.jobs[JOB_PENDING] = 2;
	s.jobs[JOB_RETRY] = 3;
	s.oldest_pending_s = 1.5;
	s.open_fds = 9;
	ck_assert_int_eq(metrics_format(&s, &b), 0);
	assert_exposition(b.data);
	assert_has(b.data, "\ns3hook_build_info{version=\"v1\"} 1\n");
	assert_has(b.data, "\ns3hook_notifications_received_total 10\n");
	assert_has(b.data, "\ns3hook_notifications_rejected_total{reason=\"auth\"} 2\n");
	assert_has(
		b.data,
		"\ns3hook_handler_runs_total{handler=\"we\\\"ird\\\\name\",outcome=\"done\"} 3\n");
	assert_has(b.data, "{handler=\"we\\\"ird\\\\name\",le=\"0.25\"} 1\n");
	assert_has(b.data, "{handler=\"we\\\"ird\\\\name\",le=\"+Inf\"} 4\n");
	assert_has(
		b.data,
		"\ns3hook_handler_run_duration_seconds_count{handler=\"we\\\"ird\\\\name\"} 4\n");
	assert_has(b.data, "\ns3hook_handler_cpu_seconds_total{handler=\"we\\\"ird\\\\name\",mode="
			   "\"user\"} 1.25\n");
	assert_has(b.data, "\ns3hook_handler_max_rss_bytes{handler=\"we\\\"ird\\\\name\"} 0\n");
	assert_has(b.data,
		   "\ns3hook_s3_requests_total{operation=\"GetObject\",status=\"2xx\"} 7\n");
	ck_assert_msg(!strstr(b.data, "status=\"5xx\""), "a series that never counted: %s", b.data);
	assert_has(b.data, "\ns3hook_queue_depth 5\n");
	assert_has(b.data, "\ns3hook_jobs{state=\"retry\"} 3\n");
	assert_has(b.data, "\ns3hook_queue_oldest_pending_age_seconds 1.5\n");
	assert_has(b.data, "\nprocess_open_fds 9\n");
	buf_release(&b);
}
END_TEST

START_TEST(format_refuses_to_serve_half)
{
	struct metrics_snapshot s;
	struct buf b = BUF_INIT;

	memset(&s, 0, sizeof(s));
	s.have_webhook = 1;
	buf_init_cap(&b, 300);
	ck_assert_int_eq(metrics_format(&s, &b), -1);
	buf_release(&b);
}
END_TEST

/* Only what is there is shown; the process figures come from /proc/self. */
START_TEST(render_reads_the_process)
{
	struct metrics *m = metrics_new(NULL, NULL, NULL, NULL);
	struct buf b = BUF_INIT;
	unsigned long long fds = 0, rss = 0;
	double start = 0;
	const char *p;

	ck_assert_int_eq(metrics_render(m, &b), 0);
	assert_exposition(b.data);
	ck_assert_ptr_null(strstr(b.data, "s3hook_jobs"));
	ck_assert_ptr_null(strstr(b.data, "s3hook_notifications"));
	ck_assert_ptr_nonnull((p = strstr(b.data, "\nprocess_open_fds ")));
	sscanf(p + 18, "%llu", &fds);
	ck_assert_int_ge(fds, 3);
	ck_assert_ptr_nonnull((p = strstr(b.data, "\nprocess_resident_memory_bytes ")));
	sscanf(p + 31, "%llu", &rss);
	ck_assert_int_gt(rss, 100000);
	ck_assert_ptr_nonnull((p = strstr(b.data, "\nprocess_start_time_seconds ")));
	sscanf(p + 28, "%lf", &start);
	ck_assert_msg(start > (double)time(NULL) - 3600 && start <= (double)time(NULL) + 60,
		      "start %f", start);
	buf_release(&b);
	metrics_free(m);
}
END_TEST

static struct jobq_new job_for(const char *handler, const char *key)
{
	struct jobq_new j = { .handler = handler,
			      .bucket = "b",
			      .key = key,
			      .version_id = "",
			      .etag = key,
			      .sequencer = "",
			      .event_name = "s3:ObjectCreated:Put",
			      .event_json = "{}",
			      .max_attempts = 1 };
	return j;
}

static void add(struct jobq *q, const char *handler, const char *key)
{
	struct jobq_new j = job_for(handler, key);
	struct err e = ERR_INIT;
	size_t added = 0;

	if (jobq_enqueue(q, &j, 1, &added, &e) < 0)
		ck_abort_msg("enqueue: %s", e.msg);
	ck_assert_int_eq(added, 1);
}

/* Scrapes come often; the queue is asked once a second at most. */
START_TEST(queue_counts_are_cached_for_a_second)
{
	char *dir = test_tmpdir(), path[4096];
	struct err e = ERR_INIT;
	struct buf b = BUF_INIT;
	struct jobq *q;
	struct metrics *m;

	snprintf(path, sizeof(path), "%s/q.db", dir);
	ck_assert_ptr_nonnull((q = jobq_open(path, 0, &e)));
	m = metrics_new(NULL, NULL, NULL, q);
	ck_assert_int_eq(metrics_render(m, &b), 0);
	assert_has(b.data, "\ns3hook_jobs{state=\"pending\"} 0\n");
	add(q, "h", "k1");
	buf_reset(&b);
	ck_assert_int_eq(metrics_render(m, &b), 0);
	assert_has(b.data, "\ns3hook_jobs{state=\"pending\"} 0\n");
	usleep(1100 * 1000);
	buf_reset(&b);
	ck_assert_int_eq(metrics_render(m, &b), 0);
	assert_has(b.data, "\ns3hook_jobs{state=\"pending\"} 1\n");
	assert_has(b.data, "\ns3hook_queue_depth 1\n");
	ck_assert_ptr_null(strstr(b.data, "\ns3hook_queue_oldest_pending_age_seconds 0\n"));
	buf_release(&b);
	metrics_free(m);
	jobq_close(q);
	test_rmtree(dir);
	free(dir);
}
END_TEST

/* ---- metering ---- */

START_TEST(rss_below_the_daemons_peak_is_a_bound)
{
	ck_assert_int_eq(worker_rss_honest(300000, 200000), 300000);
	ck_assert_int_eq(worker_rss_honest(200000, 200000), -200000);
	ck_assert_int_eq(worker_rss_honest(1000, 200000), -200000);
}
END_TEST

/* Claims the next job and ends it with the given usage. */
static void run_one(struct jobq *q, int fail, int64_t wall, double cpu, int64_t rss)
{
	struct jobq_filter f = { .lease_ms = 60000 };
	struct jobq_result res = JOBQ_RESULT_INIT;
	struct jobq_job job;
	struct err e = ERR_INIT;

	ck_assert_int_eq(jobq_claim(q, &f, &job, &e), 1);
	res.exit_code = fail ? 1 : 0;
	res.wall_ms = wall;
	res.cpu_user_s = cpu;
	res.cpu_sys_s = cpu / 2;
	res.max_rss_kib = rss;
	if (fail)
		ck_assert_int_eq(jobq_fail(q, &job, 0, &res, NULL, &e), 0);
	else
		ck_assert_int_eq(jobq_finish(q, &job, JOB_DONE, &res, &e), 0);
	jobq_job_release(&job);
}

START_TEST(summary_per_handler)
{
	char *dir = test_tmpdir(), path[4096];
	struct jobq_query qu = JOBQ_QUERY_INIT;
	struct jobq_handler_summary *s = NULL;
	struct err e = ERR_INIT;
	struct jobq *q;
	size_t n = 0, i;

	snprintf(path, sizeof(path), "%s/q.db", dir);
	ck_assert_ptr_nonnull((q = jobq_open(path, 0, &e)));
	for (i = 1; i <= 4; i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%zu", i);
		add(q, "thumb", key);
		run_one(q, i == 3, (int64_t)i * 100, 0.5, i == 2 ? 50000 : -30000);
	}
	add(q, "text", "t1");
	run_one(q, 0, 40, 0.1, -30000);
	add(q, "text", "t2"); /* pending: not run */
	ck_assert_int_eq(jobq_summary(q, &qu, &s, &n, &e), 0);
	ck_assert_int_eq(n, 2);
	ck_assert_str_eq(s[0].handler, "text");
	ck_assert_int_eq(s[0].jobs, 2);
	ck_assert_int_eq(s[0].runs, 1);
	ck_assert_int_eq(s[0].wall_p99_ms, 40);
	ck_assert_int_eq(s[0].max_rss_kib, -30000);
	ck_assert_str_eq(s[1].handler, "thumb");
	ck_assert_int_eq(s[1].jobs, 4);
	ck_assert_int_eq(s[1].runs, 4);
	ck_assert_int_eq(s[1].failures, 1);
	ck_assert_int_eq(s[1].wall_p50_ms, 200);
	ck_assert_int_eq(s[1].wall_p99_ms, 400);
	ck_assert_int_eq(s[1].max_rss_kib, 50000);
	ck_assert_msg(s[1].cpu_user_s > 1.99 && s[1].cpu_user_s < 2.01, "%f", s[1].cpu_user_s);
	jobq_summary_free(s, n);
	qu.handler = "text";
	ck_assert_int_eq(jobq_summary(q, &qu, &s, &n, &e), 0);
	ck_assert_int_eq(n, 1);
	jobq_summary_free(s, n);
	jobq_close(q);
	test_rmtree(dir);
	free(dir);
}
END_TEST

/* ---- the S3 client ---- */

/* A client of an endpoint where nobody listens (requests fail at once). */
static struct s3_client *client_nowhere(unsigned retries)
{
	struct s3_config cfg = S3_CONFIG_INIT;
	struct s3_client *c;
	struct err e = ERR_INIT;

	cfg.endpoint = xstrdup("http://127.0.0.1:9");
	cfg.access_key = xstrdup("AK");
	cfg.secret_key = xstrdup("SK");
	cfg.retries = retries;
	cfg.retry_base_ms = 1;
	ck_assert_ptr_nonnull((c = s3_client_new(&cfg, &e)));
	s3_config_release(&cfg);
	return c;
}

START_TEST(s3_requests_counted_per_try)
{
	struct s3_client *c = client_nowhere(2);
	struct s3_object_info info = S3_OBJECT_INFO_INIT;
	struct s3_stats st;
	struct err e = ERR_INIT;

	ck_assert_int_eq(s3_head_object(c, "b", "k", NULL, &info, &e), -1);
	s3_client_stats(c, &st);
	ck_assert_int_eq(st.requests[S3_OP_HEAD_OBJECT][S3_ST_ERROR], 3);
	ck_assert_int_eq(st.requests[S3_OP_HEAD_OBJECT][S3_ST_2XX], 0);
	ck_assert_int_eq(st.requests[S3_OP_GET_OBJECT][S3_ST_ERROR], 0);
	ck_assert_str_eq(s3_op_name(S3_OP_MPU_PART), "UploadPart");
	ck_assert_str_eq(s3_status_class_name(S3_ST_4XX), "4xx");
	s3_object_info_release(&info);
	s3_client_free(c);
}
END_TEST

/* A temporary HOME whose ~/.aws/config runs `script` as the credential_process. */
struct home {
	char *dir;
	char aws[4200];
	char count[4200];
};

static void home_make(struct home *h)
{
	h->dir = test_tmpdir();
	snprintf(h->aws, sizeof(h->aws), "%s/.aws", h->dir);
	snprintf(h->count, sizeof(h->count), "%s/count", h->dir);
	ck_assert_int_eq(mkdir(h->aws, 0700), 0);
	setenv("HOME", h->dir, 1);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_PROFILE");
	unsetenv("AWS_CONFIG_FILE");
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

static void home_config(struct home *h, const char *config)
{
	char path[4400];

	snprintf(path, sizeof(path), "%s/config", h->aws);
	test_write_file(path, config, strlen(config));
}

/* An executable script in the home ("dir with space/NAME"), whose path is returned. */
static void home_script(struct home *h, const char *name, const char *body, char *path, size_t size)
{
	char dir[4400];

	snprintf(dir, sizeof(dir), "%s/dir with space", h->dir);
	mkdir(dir, 0700);
	snprintf(path, size, "%s/%s", dir, name);
	test_write_file(path, body, strlen(body));
	ck_assert_int_eq(chmod(path, 0700), 0);
}

static int lines_in(const char *path)
{
	struct buf b = BUF_INIT;
	int n = 0;
	size_t i;

	if (buf_read_file(&b, path, 1 << 20, NULL) == 0)
		for (i = 0; i < b.len; i++)
			n += b.data[i] == '\n';
	buf_release(&b);
	return n;
}

/* Prints keys that expire `ttl` seconds from now, and counts its runs. */
static const char *const cred_script =
	"#!/bin/sh\n"
	"echo run >>\"$COUNT\"\n"
	"exp=$(date -u -d @$(( $(date +%%s) + %d )) +%%Y-%%m-%%dT%%H:%%M:%%SZ)\n"
	"printf '{\"Version\": 1, \"AccessKeyId\": \"%%s\", "
	"\"SecretAccessKey\": \"SK\", \"SessionToken\": \"TOK\", "
	"\"Expiration\": \"%%s\"}' \"$1\" \"$exp\"\n";

START_TEST(credential_process_gives_keys)
{
	struct s3_config cfg = S3_CONFIG_INIT;
	struct err e = ERR_INIT;
	struct home h;
	char script[4500], body[1024], conf[5000];
	time_t now = time(NULL);

	home_make(&h);
	snprintf(body, sizeof(body), cred_script, 600);
	home_script(&h, "cred", body, script, sizeof(script));
	snprintf(conf, sizeof(conf),
		 "[default]\nregion = r1\ncredential_process = \"%s\" 'AK one'\n", script);
	home_config(&h, conf);
	setenv("COUNT", h.count, 1);
	ck_assert_msg(s3_config_load(&cfg, NULL, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(cfg.access_key, "AK one");
	ck_assert_str_eq(cfg.secret_key, "SK");
	ck_assert_str_eq(cfg.session_token, "TOK");
	ck_assert_str_eq(cfg.profile, "default");
	ck_assert_str_eq(cfg.region, "r1");
	ck_assert_msg(cfg.expires >= now + 599 && cfg.expires <= now + 602, "expires %ld",
		      (long)(cfg.expires - now));
	ck_assert_int_eq(lines_in(h.count), 1);
	s3_config_release(&cfg);
	test_rmtree(h.dir);
	free(h.dir);
}
END_TEST

/* A failure names the program and its stderr, never its arguments (they may be secret). */
START_TEST(credential_process_failures)
{
	static const struct {
		const char *script, *want;
	} cases[] = {
		{ "#!/bin/sh\necho boom >&2\nexit 3\n", "failed (exit 3): boom" },
		{ "#!/bin/sh\necho '{\"Version\": 2, \"AccessKeyId\": \"a\"}'\n",
		  "Version is not 1" },
		{ "#!/bin/sh\necho 'not json'\n", "printed no JSON object" },
		{ "#!/bin/sh\necho '{\"Version\":1,\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"b\","
		  "\"Expiration\":\"tomorrow\"}'\n",
		  "is not ISO 8601" },
	};
	struct home h;
	char script[4500], conf[5000];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct s3_config cfg = S3_CONFIG_INIT;
		struct err e = ERR_INIT;
		home_make(&h);
		home_script(&h, "cred", cases[i].script, script, sizeof(script));
		snprintf(conf, sizeof(conf),
			 "[default]\ncredential_process = '%s' --token s3cr3t\n", script);
		home_config(&h, conf);
		ck_assert_int_eq(s3_config_load(&cfg, NULL, &e), -1);
		ck_assert_msg(strstr(e.msg, cases[i].want), "case %zu: %s", i, e.msg);
		ck_assert_msg(strstr(e.msg, "cred'"), "case %zu: %s", i, e.msg);
		ck_assert_msg(!strstr(e.msg, "s3cr3t"), "case %zu: %s", i, e.msg);
		s3_config_release(&cfg);
		test_rmtree(h.dir);
		free(h.dir);
	}
}
END_TEST

/* The access key a presigned URL was signed with. */
static void presigned_key(struct s3_client *c, char *out, size_t size)
{
	struct err e = ERR_INIT;
	char *url = NULL;
	const char *p;

	ck_assert_msg(s3_presign(c, "GET", "b", "k", 60, &url, &e) == 0, "%s", e.msg);
	ck_assert_ptr_nonnull((p = strstr(url, "X-Amz-Credential=")));
	p += 17;
	snprintf(out, size, "%.*s", (int)strcspn(p, "%&"), p);
	free(url);
}

/*
 * Keys that expire in 4 s are fetched again at half their life, not at every
 * request. Times are whole seconds: the script's "now + 4" and the client's
 * "now" may fall in different seconds, so the refresh comes 1 to 3 s after
 * the fetch. With 2 s keys it could come at once (a second boundary crossed
 * between the fetch and the first request: it failed a make check once).
 */
START_TEST(credentials_refreshed_before_expiry)
{
	struct s3_config cfg = S3_CONFIG_INIT;
	struct err e = ERR_INIT;
	struct s3_client *c;
	struct s3_stats st;
	struct home h;
	char script[4500], body[1024], conf[5000], key[64];

	home_make(&h);
	snprintf(body, sizeof(body), cred_script, 4);
	home_script(&h, "cred", body, script, sizeof(script));
	snprintf(conf, sizeof(conf), "[default]\ncredential_process = '%s' AK\n", script);
	home_config(&h, conf);
	setenv("COUNT", h.count, 1);
	cfg.endpoint = xstrdup("http://127.0.0.1:9");
	ck_assert_msg(s3_config_load(&cfg, NULL, &e) == 0, "%s", e.msg);
	ck_assert_ptr_nonnull((c = s3_client_new(&cfg, &e)));
	presigned_key(c, key, sizeof(key));
	presigned_key(c, key, sizeof(key));
	ck_assert_int_eq(lines_in(h.count), 1);
	usleep(3100 * 1000); /* past half their life */
	presigned_key(c, key, sizeof(key));
	ck_assert_str_eq(key, "AK");
	ck_assert_int_eq(lines_in(h.count), 2);
	s3_client_stats(c, &st);
	ck_assert_int_eq(st.credential_refreshes, 1);
	s3_client_free(c);
	s3_config_release(&cfg);
	test_rmtree(h.dir);
	free(h.dir);
}
END_TEST

/* Static keys in ~/.aws/credentials are read again when the file changes. */
START_TEST(credentials_reread_when_files_change)
{
	struct s3_config cfg = S3_CONFIG_INIT;
	struct err e = ERR_INIT;
	struct s3_client *c;
	struct home h;
	char path[4500], key[64];
	const char *v1 = "[default]\naws_access_key_id = OLDKEY\naws_secret_access_key = s\n";
	const char *v2 = "[default]\naws_access_key_id = NEWKEY\naws_secret_access_key = s\n";

	home_make(&h);
	snprintf(path, sizeof(path), "%s/credentials", h.aws);
	test_write_file(path, v1, strlen(v1));
	cfg.endpoint = xstrdup("http://127.0.0.1:9");
	ck_assert_msg(s3_config_load(&cfg, NULL, &e) == 0, "%s", e.msg);
	ck_assert_ptr_nonnull((c = s3_client_new(&cfg, &e)));
	presigned_key(c, key, sizeof(key));
	ck_assert_str_eq(key, "OLDKEY");
	test_write_file(path, v2, strlen(v2));
	usleep(1100 * 1000); /* the files are looked at once a second */
	presigned_key(c, key, sizeof(key));
	ck_assert_str_eq(key, "NEWKEY");
	s3_client_free(c);
	s3_config_release(&cfg);
	test_rmtree(h.dir);
	free(h.dir);
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *t = tcase_create("metrics");

	tcase_add_test(t, format_follows_the_text_format);
	tcase_add_test(t, format_refuses_to_serve_half);
	tcase_add_test(t, render_reads_the_process);
	tcase_add_test(t, queue_counts_are_cached_for_a_second);
	tcase_add_test(t, rss_below_the_daemons_peak_is_a_bound);
	tcase_add_test(t, summary_per_handler);
	tcase_add_test(t, s3_requests_counted_per_try);
	tcase_add_test(t, credential_process_gives_keys);
	tcase_add_test(t, credential_process_failures);
	tcase_add_test(t, credentials_refreshed_before_expiry);
	tcase_add_test(t, credentials_reread_when_files_change);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return test_main(metrics_suite());
}
