/*
 * Tests of the webhook listener: real HTTP on 127.0.0.1 (libcurl, and a raw
 * socket where curl would be too polite), a real SQLite queue in a fresh
 * directory, ports chosen by the kernel (port 0) and read back.
 */
#include "tests/testutil.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/ini.h"
#include "core/jobq.h"
#include "core/log.h"
#include "core/str.h"
#include "triggers/webhook.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TOKEN	 "s3cret-Token-42"
#define CEPH_PUT "fixtures/ceph-rgw/put-key-with-spaces.json"
#define CEPH_KEY "dir/with space/a b.txt"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the listener under test ---- */

struct fx {
	char *dir;
	char queue[4096];
	struct ini *ini;
	struct config cfg;
	struct jobq *q;
	struct webhook *w;
	int port, admin_port;
};

/*
 * A config whose [serve] has `listen` (NULL: port 0), `serve` (one key a
 * line), admin_listen on port 0 unless `serve` names it, and the defaults.
 */
static void config_from(struct config *cfg, struct ini **ini, const char *dir, const char *listen,
			const char *serve)
{
	struct err e = ERR_INIT;
	struct buf text = BUF_INIT;

	buf_addf(&text,
		 "[serve]\nlisten = %s\n%s%s\n"
		 "[jobs]\nqueue = %s/queue.db\n"
		 "[handler h]\nevents = s3:ObjectCreated:*\ncommand = /bin/true\n",
		 listen ? listen : "127.0.0.1:0",
		 strstr(serve, "admin_listen") ? "" : "admin_listen = 127.0.0.1:0\n", serve, dir);
	if (ini_parse_string(ini, "test.conf", text.data, text.len, INI_INLINE_COMMENTS, &e) < 0 ||
	    config_load(cfg, *ini, &e) < 0 || config_resolve_token(cfg, *ini, &e) < 0)
		ck_abort_msg("config: %s", e.msg);
	buf_release(&text);
}

/* Starts a listener whose [serve] section holds `serve` (one key a line) besides the defaults. */
static void fx_start(struct fx *f, const char *serve)
{
	struct err e = ERR_INIT;

	memset(f, 0, sizeof(*f));
	f->dir = test_tmpdir();
	snprintf(f->queue, sizeof(f->queue), "%s/queue.db", f->dir);
	config_from(&f->cfg, &f->ini, f->dir, NULL, serve);
	f->q = jobq_open(f->queue, JOBQ_INGEST, &e);
	if (!f->q)
		ck_abort_msg("jobq_open: %s", e.msg);
	f->w = webhook_new(&f->cfg, f->q, &e);
	if (!f->w || webhook_start(f->w, &e) < 0)
		ck_abort_msg("webhook: %s", e.msg);
	f->port = webhook_port(f->w);
	f->admin_port = webhook_admin_port(f->w);
	ck_assert_int_gt(f->port, 0);
	ck_assert_int_gt(f->admin_port, 0);
}

static void fx_end(struct fx *f)
{
	webhook_free(f->w);
	jobq_close(f->q);
	config_release(&f->cfg);
	ini_free(f->ini);
	test_rmtree(f->dir);
	free(f->dir);
}

static int64_t jobs_in(struct jobq *q)
{
	struct jobq_query qu = JOBQ_QUERY_INIT;
	struct err e = ERR_INIT;
	int64_t counts[8] = { 0 }, n = 0;
	size_t i;

	if (jobq_count(q, &qu, counts, &e) < 0)
		ck_abort_msg("jobq_count: %s", e.msg);
	for (i = 0; i < 8; i++)
		n += counts[i];
	return n;
}

/* ---- an HTTP client ---- */

struct resp {
	long status;
	CURLcode rc;
	struct buf body;
	struct buf headers;
};

#define RESP_INIT                                                  \
	{                                                          \
		.status = 0, .body = BUF_INIT, .headers = BUF_INIT \
	}

static void resp_release(struct resp *r)
{
	buf_release(&r->body);
	buf_release(&r->headers);
}

static size_t take(char *p, size_t size, size_t n, void *arg)
{
	buf_add(arg, p, size * n);
	return size * n;
}

/* Hands the body out in small pieces: with no size given, curl sends it chunked. */
struct reader {
	const char *p;
	size_t left;
};

static size_t give(char *p, size_t size, size_t n, void *arg)
{
	struct reader *rd = arg;
	size_t k = size * n < rd->left ? size * n : rd->left;

	if (k > 1000)
		k = 1000;
	memcpy(p, rd->p, k);
	rd->p += k;
	rd->left -= k;
	return k;
}

struct req {
	const char *method; /* NULL: POST */
	const char *path;   /* with the query string */
	const char *auth;   /* Authorization header, NULL: none */
	const char *header; /* more header lines, NULL: none */
	const char *header2;
	const char *tls_dir; /* https, trusting TLS_DIR/ca.pem; NULL: http */
	const char *cert;    /* the client certificate (TLS_DIR/NAME.pem and .key); NULL: none */
	const char *body;
	size_t len;
	int chunked;
	int port;
};

static void setup_tls(CURL *c, const struct req *rq)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/ca.pem", rq->tls_dir);
	curl_easy_setopt(c, CURLOPT_CAINFO, path);
	if (!rq->cert)
		return;
	snprintf(path, sizeof(path), "%s/%s.pem", rq->tls_dir, rq->cert);
	curl_easy_setopt(c, CURLOPT_SSLCERT, path);
	snprintf(path, sizeof(path), "%s/%s.key", rq->tls_dir, rq->cert);
	curl_easy_setopt(c, CURLOPT_SSLKEY, path);
}

static void setup_handle(CURL *c, const struct req *rq, struct curl_slist **hl, struct resp *out,
			 struct reader *rd)
{
	char url[4200], auth[512];

	snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", rq->tls_dir ? "https" : "http", rq->port,
		 rq->path ? rq->path : "/");
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (rq->tls_dir)
		setup_tls(c, rq);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, take);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, take);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &out->headers);
	*hl = curl_slist_append(*hl, "Expect:");
	*hl = curl_slist_append(*hl, "Content-Type: application/json");
	if (rq->auth) {
		snprintf(auth, sizeof(auth), "Authorization: %s", rq->auth);
		*hl = curl_slist_append(*hl, auth);
	}
	if (rq->header)
		*hl = curl_slist_append(*hl, rq->header);
	if (rq->header2)
		*hl = curl_slist_append(*hl, rq->header2);
	if (rq->chunked) {
		rd->p = rq->body;
		rd->left = rq->len;
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, give);
		curl_easy_setopt(c, CURLOPT_READDATA, rd);
	} else if (rq->body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)rq->len);
	}
	if (rq->method)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hl);
}

/* One request on handle c (kept alive between calls); out->rc says whether it got through. */
static void http_on(CURL *c, const struct req *rq, struct resp *out)
{
	struct curl_slist *hl = NULL;
	struct reader rd = { NULL, 0 };

	buf_reset(&out->body);
	buf_reset(&out->headers);
	out->status = 0;
	setup_handle(c, rq, &hl, out, &rd);
	out->rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	curl_slist_free_all(hl);
}

static long http(const struct req *rq, struct resp *out)
{
	CURL *c = curl_easy_init();

	ck_assert_ptr_nonnull(c);
	http_on(c, rq, out);
	curl_easy_cleanup(c);
	return out->status;
}

/* POSTs body with the Bearer token; the status. */
static long post(struct fx *f, const char *body, size_t len, struct resp *out)
{
	struct req rq = { .path = "/", .auth = "Bearer " TOKEN, .body = body, .len = len };

	rq.port = f->port;
	return http(&rq, out);
}

static long get(int port, const char *path, struct resp *out)
{
	struct req rq = { .method = "GET", .path = path, .port = port };

	return http(&rq, out);
}

/* Whether the response has a header line starting with `line` (case as sent). */
static int has_header(const struct resp *r, const char *line)
{
	return strstr(r->headers.data, line) != NULL;
}

/* A one-line JSON error: {"error":"..."} and a newline, nothing more. */
static void assert_json_error(const struct resp *r)
{
	ck_assert_msg(str_starts_with(r->body.data, "{\"error\":\""), "body: %s", r->body.data);
	ck_assert_msg(str_ends_with(r->body.data, "\"}\n"), "body: %s", r->body.data);
	ck_assert_ptr_eq(strchr(r->body.data, '\n'), r->body.data + r->body.len - 1);
	ck_assert_msg(has_header(r, "Content-Type: application/json"), "%s", r->headers.data);
}

/* The Ceph fixture with its key replaced by `key` (plain ASCII). */
static void ceph_body(struct buf *out, const char *key)
{
	struct buf b = BUF_INIT;
	const char *at;

	test_read_fixture(&b, CEPH_PUT);
	at = strstr(b.data, CEPH_KEY);
	ck_assert_ptr_nonnull(at);
	buf_reset(out);
	buf_add(out, b.data, (size_t)(at - b.data));
	buf_adds(out, key);
	buf_adds(out, at + strlen(CEPH_KEY));
	buf_release(&b);
}

/* ---- accepting ---- */

static int first_key(void *arg, const struct jobq_job *job)
{
	str_copy(arg, 256, job->key);
	ck_assert_str_eq(job->handler, "h");
	ck_assert_str_eq(job->event_name, "s3:ObjectCreated:Put");
	ck_assert_msg(strstr(job->event_json, "\"source\":\"ceph\""), "%s", job->event_json);
	return 1;
}

START_TEST(ceph_notification_makes_a_job)
{
	struct jobq_query qu = JOBQ_QUERY_INIT;
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct err e = ERR_INIT;
	char key[256] = "";
	struct fx f;

	fx_start(&f, "auth_token = " TOKEN);
	test_read_fixture(&body, CEPH_PUT);
	ck_assert_int_eq(post(&f, body.data, body.len, &r), 200);
	ck_assert_str_eq(r.body.data, "{\"events\":1,\"jobs\":1}\n");
	ck_assert(has_header(&r, "Content-Type: application/json"));
	ck_assert_int_eq(jobs_in(f.q), 1);
	ck_assert_int_eq(jobq_list(f.q, &qu, first_key, key, &e), 0);
	ck_assert_str_eq(key, CEPH_KEY);
	buf_release(&body);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

START_TEST(same_notification_twice_is_one_job)
{
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct webhook_stats st;
	struct fx f;

	fx_start(&f, "auth_token = " TOKEN);
	test_read_fixture(&body, CEPH_PUT);
	ck_assert_int_eq(post(&f, body.data, body.len, &r), 200);
	ck_assert_int_eq(post(&f, body.data, body.len, &r), 200);
	ck_assert_int_eq(jobs_in(f.q), 1);
	webhook_stats(f.w, &st);
	ck_assert_uint_eq(st.accepted, 2);
	ck_assert_uint_eq(st.jobs, 2);
	ck_assert_uint_eq(st.jobs_new, 1);
	buf_release(&body);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

START_TEST(test_event_is_200_without_job)
{
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct fx f;

	fx_start(&f, "auth_token = " TOKEN);
	test_read_fixture(&body, "fixtures/aws/test-event.json");
	ck_assert_int_eq(post(&f, body.data, body.len, &r), 200);
	ck_assert_str_eq(r.body.data, "{\"events\":0,\"jobs\":0}\n");
	buf_reset(&body);
	/* A delete matches no handler here (events = s3:ObjectCreated:*): 200, nothing stored. */
	test_read_fixture(&body, "fixtures/ceph-rgw/delete.json");
	ck_assert_int_eq(post(&f, body.data, body.len, &r), 200);
	ck_assert_str_eq(r.body.data, "{\"events\":1,\"jobs\":0}\n");
	ck_assert_int_eq(jobs_in(f.q), 0);
	buf_release(&body);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

/* ---- authentication ---- */

static const struct {
	const char *path;
	const char *auth;
	long status;
} auth_cases[] = {
	{ "/", NULL, 401 },
	{ "/", "Bearer wrong", 401 },
	{ "/", "Bearer " TOKEN "x", 401 },
	{ "/", "Basic " TOKEN, 401 },
	{ "/?token=wrong", NULL, 401 },
	{ "/?token=" TOKEN "%00x", NULL, 401 },
	{ "/?tok=" TOKEN, NULL, 401 },
	{ "/", "Bearer " TOKEN, 200 },
	{ "/", "bearer " TOKEN, 200 },
	{ "/?token=" TOKEN, NULL, 200 },
	{ "/any/path?x=1&token=" TOKEN, NULL, 200 },
	{ "/?token=" TOKEN, "Bearer wrong", 200 },
};

START_TEST(token_is_checked)
{
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct fx f;
	struct req rq = { .path = auth_cases[_i].path, .auth = auth_cases[_i].auth };

	fx_start(&f, "auth_token = " TOKEN);
	test_read_fixture(&body, CEPH_PUT);
	rq.body = body.data;
	rq.len = body.len;
	rq.port = f.port;
	ck_assert_int_eq(http(&rq, &r), auth_cases[_i].status);
	ck_assert_int_eq(jobs_in(f.q), auth_cases[_i].status == 200);
	if (auth_cases[_i].status == 401)
		assert_json_error(&r);
	buf_release(&body);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

/* The token never reaches the log, not even through the query string; rejections do. */
START_TEST(token_is_never_logged)
{
	char *dir = test_tmpdir(), path[4096];
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT, log = BUF_INIT;
	struct err e = ERR_INIT;
	struct fx f;
	struct req rq = { .path = "/hook?token=" TOKEN };
	int fd;

	snprintf(path, sizeof(path), "%s/log", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	log_setup(LOG_DEBUG, LOG_LOGFMT, fd);
	fx_start(&f, "auth_token = " TOKEN);
	test_read_fixture(&body, CEPH_PUT);
	rq.body = body.data;
	rq.len = body.len;
	rq.port = f.port;
	ck_assert_int_eq(http(&rq, &r), 200);
	rq.path = "/hook?token=" TOKEN "-wrong";
	ck_assert_int_eq(http(&rq, &r), 401);
	rq.path = "/hook";
	rq.auth = "Bearer " TOKEN "-wrong";
	ck_assert_int_eq(http(&rq, &r), 401);
	fx_end(&f);
	log_setup(LOG_INFO, LOG_LOGFMT, 2);
	close(fd);
	ck_assert_int_eq(buf_read_file(&log, path, 1 << 20, &e), 0);
	ck_assert_msg(strstr(log.data, "reason=auth"), "log: %s", log.data);
	ck_assert_msg(strstr(log.data, "path=/hook"), "log: %s", log.data);
	ck_assert_msg(!strstr(log.data, TOKEN), "token in the log: %s", log.data);
	ck_assert_msg(!strstr(log.data, "token="), "query string in the log: %s", log.data);
	buf_release(&body);
	buf_release(&log);
	resp_release(&r);
	test_rmtree(dir);
	free(dir);
}
END_TEST

START_TEST(no_token_configured_takes_anyone)
{
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct fx f;
	struct req rq = { .path = "/" };

	fx_start(&f, "auth_token = none");
	test_read_fixture(&body, CEPH_PUT);
	rq.body = body.data;
	rq.len = body.len;
	rq.port = f.port;
	ck_assert_int_eq(http(&rq, &r), 200);
	ck_assert_int_eq(jobs_in(f.q), 1);
	buf_release(&body);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

/* ---- body signatures (hmac_secrets) ---- */

#define SECRET_A "rotating-out-A"
#define SECRET_B "rotating-in-B"

/* "X-S3hook-Signature: sha256=HEX" of body under secret, into out. */
static const char *sig_header(char *out, size_t size, const char *secret, const struct buf *body)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];

	HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body->data,
	     body->len, md, &len);
	str_hex(hex, md, len);
	snprintf(out, size, "X-S3hook-Signature: sha256=%s", hex);
	return out;
}

static const struct {
	const char *serve;  /* the [serve] keys */
	const char *secret; /* signs the body; NULL: no signature */
	int other_body;	    /* the signature is of another body */
	const char *header; /* a signature header as is (when secret is NULL) */
	const char *auth;
	long status;
} hmac_cases[] = {
	{ "auth_token = none", SECRET_A, 0, NULL, NULL, 200 },
	{ "auth_token = none", SECRET_B, 0, NULL, NULL, 200 },
	{ "auth_token = none", "other-secret", 0, NULL, NULL, 401 },
	{ "auth_token = none", SECRET_A, 1, NULL, NULL, 401 },
	{ "auth_token = none", NULL, 0, NULL, NULL, 401 },
	{ "auth_token = none", NULL, 0, NULL, "Bearer " TOKEN, 401 },
	{ "auth_token = none", NULL, 0, "X-S3hook-Signature: sha256=00", NULL, 401 },
	{ "auth_token = none", NULL, 0, "X-S3hook-Signature: ", NULL, 401 },
	/* Either way in suffices when both are configured. */
	{ "auth_token = " TOKEN, SECRET_B, 0, NULL, NULL, 200 },
	{ "auth_token = " TOKEN, NULL, 0, NULL, "Bearer " TOKEN, 200 },
	{ "auth_token = " TOKEN, "other-secret", 0, NULL, "Bearer wrong", 401 },
	{ "auth_token = " TOKEN, NULL, 0, NULL, NULL, 401 },
};

START_TEST(body_signature_is_checked)
{
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT, serve = BUF_INIT, signed_body = BUF_INIT;
	char header[256];
	struct fx f;
	struct req rq = { .path = "/",
			  .auth = hmac_cases[_i].auth,
			  .header = hmac_cases[_i].header };

	buf_addf(&serve, "%s\nhmac_secrets = %s, %s", hmac_cases[_i].serve, SECRET_A, SECRET_B);
	fx_start(&f, serve.data);
	test_read_fixture(&body, CEPH_PUT);
	ceph_body(&signed_body, hmac_cases[_i].other_body ? "another key" : CEPH_KEY);
	if (hmac_cases[_i].secret)
		rq.header = sig_header(header, sizeof(header), hmac_cases[_i].secret, &signed_body);
	rq.body = body.data;
	rq.len = body.len;
	rq.port = f.port;
	ck_assert_int_eq(http(&rq, &r), hmac_cases[_i].status);
	ck_assert_int_eq(jobs_in(f.q), hmac_cases[_i].status == 200);
	if (hmac_cases[_i].status == 401)
		assert_json_error(&r);
	buf_release(&body);
	buf_release(&serve);
	buf_release(&signed_body);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

/* Rotation: a reload that drops the old secret refuses what it signs from then on. */
START_TEST(reload_rotates_hmac_secrets)
{
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct config cfg2 = CONFIG_INIT;
	struct ini *ini2 = NULL;
	struct err e = ERR_INIT;
	char header[256];
	struct req rq = { .path = "/" };
	struct fx f;

	fx_start(&f, "auth_token = none\nhmac_secrets = " SECRET_A);
	test_read_fixture(&body, CEPH_PUT);
	rq.body = body.data;
	rq.len = body.len;
	rq.port = f.port;
	rq.header = sig_header(header, sizeof(header), SECRET_A, &body);
	ck_assert_int_eq(http(&rq, &r), 200);
	config_from(&cfg2, &ini2, f.dir, NULL, "auth_token = none\nhmac_secrets = " SECRET_B);
	ck_assert_int_eq(webhook_reload(f.w, &cfg2, &e), 0);
	ck_assert_int_eq(http(&rq, &r), 401);
	ck_assert_str_eq(r.body.data, "{\"error\":\"wrong signature\"}\n");
	rq.header = sig_header(header, sizeof(header), SECRET_B, &body);
	ck_assert_int_eq(http(&rq, &r), 200);
	webhook_free(f.w);
	f.w = NULL;
	config_release(&cfg2);
	ini_free(ini2);
	buf_release(&body);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

/* An SNS envelope is never taken unverified: without sns_topics it is a 400, token or not. */
START_TEST(sns_message_needs_sns_topics)
{
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct req rq = { .path = "/",
			  .auth = "Bearer " TOKEN,
			  .header = "x-amz-sns-message-type: Notification" };
	struct fx f;

	fx_start(&f, "auth_token = " TOKEN);
	test_read_fixture(&body, CEPH_PUT);
	rq.body = body.data;
	rq.len = body.len;
	rq.port = f.port;
	ck_assert_int_eq(http(&rq, &r), 400);
	ck_assert_msg(strstr(r.body.data, "sns_topics is not set"), "%s", r.body.data);
	/* Raw message delivery is a plain notification, authenticated by the token. */
	rq.header2 = "x-amz-sns-rawdelivery: true";
	ck_assert_int_eq(http(&rq, &r), 200);
	ck_assert_int_eq(jobs_in(f.q), 1);
	buf_release(&body);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

/* ---- refusing bodies ---- */

START_TEST(malformed_body_is_400)
{
	static const char *const bodies[] = {
		"{not json",
		"[0,0,0]",
		"{\"Records\":[{\"eventVersion\":\"2.2\"}]}",
	};
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct fx f;
	size_t i;

	fx_start(&f, "auth_token = " TOKEN);
	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		ck_assert_int_eq(post(&f, bodies[i], strlen(bodies[i]), &r), 400);
		assert_json_error(&r);
	}
	/* A key that decodes to a NUL byte. */
	test_read_fixture(&body, "fixtures/aws/put-special-key.json");
	{
		const char *sent = "photos/a+b%2Bc%26%C3%BC%25.jpg";
		char *at = strstr(body.data, sent);
		struct buf nul = BUF_INIT;
		ck_assert_ptr_nonnull(at);
		buf_add(&nul, body.data, (size_t)(at - body.data));
		buf_adds(&nul, "a%00b");
		buf_adds(&nul, at + strlen(sent));
		ck_assert_int_eq(post(&f, nul.data, nul.len, &r), 400);
		assert_json_error(&r);
		ck_assert_msg(strstr(r.body.data, "NUL"), "%s", r.body.data);
		buf_release(&nul);
	}
	ck_assert_int_eq(jobs_in(f.q), 0);
	buf_release(&body);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

START_TEST(body_over_limit_is_413)
{
	struct resp r = RESP_INIT;
	struct buf big = BUF_INIT, ok = BUF_INIT;
	struct req rq = { .path = "/", .auth = "Bearer " TOKEN };
	struct fx f;

	fx_start(&f, "auth_token = " TOKEN "\nbody_limit = 4KiB");
	rq.port = f.port;
	/* A real notification padded past 4 KiB with a long (ignored) field. */
	ceph_body(&big, "k");
	while (big.len && strchr(" \n", big.data[big.len - 1]))
		buf_setlen(&big, big.len - 1);
	ck_assert(str_ends_with(big.data, "}]}"));
	buf_setlen(&big, big.len - 3);
	buf_adds(&big, ",\"pad\":\"");
	while (big.len < 6000)
		buf_addch(&big, 'x');
	buf_adds(&big, "\"}]}");
	rq.body = big.data;
	rq.len = big.len;
	ck_assert_int_eq(http(&rq, &r), 413);
	assert_json_error(&r);
	rq.chunked = 1;
	ck_assert_int_eq(http(&rq, &r), 413);
	assert_json_error(&r);
	/* Far over the limit, chunked: the connection is closed, nothing stored. */
	while (big.len < 64 * 1024)
		buf_addch(&big, ' ');
	rq.body = big.data;
	rq.len = big.len;
	http(&rq, &r);
	ck_assert_int_ne(r.status, 200);
	/* A body just under the limit still goes through, chunked or not. */
	ceph_body(&ok, "small");
	rq.body = ok.data;
	rq.len = ok.len;
	ck_assert_int_eq(http(&rq, &r), 200);
	rq.chunked = 0;
	ck_assert_int_eq(http(&rq, &r), 200);
	ck_assert_int_eq(jobs_in(f.q), 1);
	buf_release(&big);
	buf_release(&ok);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

/* Sends raw bytes and returns what comes back within timeout_ms (until the peer closes). */
static void raw_exchange(int port, const char *out, struct buf *in, int timeout_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int64_t until = now_ms() + timeout_ms;
	char chunk[4096];

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(write(fd, out, strlen(out)), (ssize_t)strlen(out));
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int left = (int)(until - now_ms());
		if (left <= 0 || poll(&p, 1, left) <= 0)
			break;
		n = read(fd, chunk, sizeof(chunk));
		if (n <= 0)
			break;
		buf_add(in, chunk, (size_t)n);
	}
	close(fd);
}

/* 413 (and 401) as soon as the headers are in: the body is never waited for. */
START_TEST(refusal_does_not_wait_for_the_body)
{
	struct buf in = BUF_INIT;
	struct fx f;
	char out[512];
	int64_t t0;

	fx_start(&f, "auth_token = " TOKEN);
	snprintf(out, sizeof(out),
		 "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
		 "Content-Length: 100000000\r\n\r\n{\"Records\":[",
		 TOKEN);
	t0 = now_ms();
	raw_exchange(f.port, out, &in, 10000);
	ck_assert_msg(str_starts_with(in.data, "HTTP/1.1 413"), "got: %s", in.data);
	ck_assert_int_lt(now_ms() - t0, 5000);
	buf_reset(&in);
	t0 = now_ms();
	raw_exchange(f.port,
		     "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"Records\":[",
		     &in, 10000);
	ck_assert_msg(str_starts_with(in.data, "HTTP/1.1 401"), "got: %s", in.data);
	ck_assert_int_lt(now_ms() - t0, 5000);
	buf_release(&in);
	fx_end(&f);
}
END_TEST

/* ---- other requests ---- */

START_TEST(methods_and_paths)
{
	struct resp r = RESP_INIT;
	struct req rq = { .method = "PUT", .path = "/x", .auth = "Bearer " TOKEN, .body = "{}" };
	struct fx f;

	fx_start(&f, "auth_token = " TOKEN);
	rq.len = 2;
	rq.port = f.port;
	ck_assert_int_eq(get(f.port, "/", &r), 405);
	ck_assert_msg(has_header(&r, "Allow: POST"), "%s", r.headers.data);
	assert_json_error(&r);
	ck_assert_int_eq(http(&rq, &r), 405);
	ck_assert_msg(has_header(&r, "Allow: POST"), "%s", r.headers.data);
	rq.method = "DELETE";
	rq.path = "/";
	ck_assert_int_eq(http(&rq, &r), 405);
	ck_assert_int_eq(get(f.port, "/nope", &r), 404);
	ck_assert_int_eq(get(f.port, "/metrics", &r), 404);
	rq.method = NULL;
	rq.path = "/healthz";
	ck_assert_int_eq(http(&rq, &r), 405);
	ck_assert_msg(has_header(&r, "Allow: GET, HEAD"), "%s", r.headers.data);
	ck_assert_int_eq(get(f.port, "/healthz", &r), 200);
	ck_assert_str_eq(r.body.data, "{\"status\":\"ok\"}\n");
	ck_assert_int_eq(get(f.admin_port, "/healthz", &r), 200);
	ck_assert_int_eq(get(f.admin_port, "/readyz", &r), 200);
	ck_assert_int_eq(get(f.admin_port, "/", &r), 404);
	ck_assert_int_eq(get(f.port, "/readyz", &r), 404);
	ck_assert_int_eq(jobs_in(f.q), 0);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

START_TEST(healthz_fails_when_queue_file_is_gone)
{
	char *dir = test_tmpdir(), path[4096];
	struct resp r = RESP_INIT;
	struct buf log = BUF_INIT;
	struct err e = ERR_INIT;
	const char *p;
	struct fx f;
	int fd, n = 0;

	snprintf(path, sizeof(path), "%s/log", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	log_setup(LOG_WARN, LOG_LOGFMT, fd);
	fx_start(&f, "auth_token = " TOKEN);
	ck_assert_int_eq(get(f.port, "/healthz", &r), 200);
	ck_assert_int_eq(unlink(f.queue), 0);
	usleep(600 * 1000); /* past the cached answer */
	ck_assert_int_eq(get(f.port, "/healthz", &r), 503);
	ck_assert_msg(strstr(r.body.data, "\"status\":\"unavailable\""), "%s", r.body.data);
	ck_assert_int_eq(get(f.admin_port, "/healthz", &r), 503);
	ck_assert_msg(strstr(r.body.data, "queue.db"), "admin names the cause: %s", r.body.data);
	ck_assert_int_eq(get(f.admin_port, "/readyz", &r), 200);
	/* Checked again after the cache expires, but warned about once. */
	usleep(600 * 1000);
	ck_assert_int_eq(get(f.admin_port, "/healthz", &r), 503);
	fx_end(&f);
	log_setup(LOG_INFO, LOG_LOGFMT, 2);
	close(fd);
	ck_assert_int_eq(buf_read_file(&log, path, 1 << 20, &e), 0);
	for (p = log.data; (p = strstr(p, "queue not writable")); p++)
		n++;
	ck_assert_msg(n == 1, "log: %s", log.data);
	buf_release(&log);
	resp_release(&r);
	test_rmtree(dir);
	free(dir);
}
END_TEST

/* ---- a failing or slow queue ---- */

/* The file moved away: every commit fails; the answer is 503 + Retry-After, never 200. */
START_TEST(failing_queue_is_503)
{
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct err e = ERR_INIT;
	struct webhook_stats st;
	char moved[4200];
	struct fx f;
	int64_t t0;

	fx_start(&f, "auth_token = " TOKEN);
	snprintf(moved, sizeof(moved), "%s/moved.db", f.dir);
	ck_assert_int_eq(rename(f.queue, moved), 0);
	ceph_body(&body, "one");
	ck_assert_int_eq(post(&f, body.data, body.len, &r), 503);
	ck_assert_msg(has_header(&r, "Retry-After: 1"), "%s", r.headers.data);
	assert_json_error(&r);
	/* Right after a failure, the next ones are refused before their body is parsed. */
	t0 = now_ms();
	ceph_body(&body, "two");
	ck_assert_int_eq(post(&f, body.data, body.len, &r), 503);
	ck_assert_msg(has_header(&r, "Retry-After: 1"), "%s", r.headers.data);
	ck_assert_int_lt(now_ms() - t0, 900);
	webhook_stats(f.w, &st);
	ck_assert_uint_eq(st.accepted, 0);
	ck_assert_uint_eq(st.commit_failures, 1);
	ck_assert_uint_eq(st.rejected[WEBHOOK_REJ_QUEUE], 2);
	/* Nothing was written: look, once the file is closed and back in its place. */
	webhook_free(f.w);
	f.w = NULL;
	jobq_close(f.q);
	ck_assert_int_eq(rename(moved, f.queue), 0);
	f.q = jobq_open(f.queue, 0, &e);
	ck_assert_msg(f.q != NULL, "%s", e.msg);
	ck_assert_int_eq(jobs_in(f.q), 0);
	buf_release(&body);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

struct poster {
	struct fx *f;
	const char *key;
	long status;
	int retry_after;
	int64_t ms;
	pthread_t t;
};

static void *post_one(void *arg)
{
	struct poster *p = arg;
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	int64_t t0 = now_ms();

	ceph_body(&body, p->key);
	p->status = post(p->f, body.data, body.len, &r);
	p->retry_after = has_header(&r, "Retry-After: 1");
	p->ms = now_ms() - t0;
	buf_release(&body);
	resp_release(&r);
	return NULL;
}

/* Another process holds the write lock: the commit waits in SQLite past commit_timeout. */
static sqlite3 *hold_write_lock(const char *path)
{
	sqlite3 *db;

	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	/* The listener's health check takes the lock now and then: wait it out. */
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	return db;
}

START_TEST(slow_commit_is_503_and_stop_does_not_hang)
{
	struct poster p1 = { .key = "slow-1" }, p2 = { .key = "slow-2" };
	struct webhook_stats st;
	struct fx f;
	sqlite3 *db;
	int64_t t0;

	fx_start(&f, "auth_token = " TOKEN "\ncommit_timeout = 2s");
	p1.f = p2.f = &f;
	db = hold_write_lock(f.queue);
	pthread_create(&p1.t, NULL, post_one, &p1);
	pthread_join(p1.t, NULL);
	ck_assert_int_eq(p1.status, 503);
	ck_assert(p1.retry_after);
	/* The watchdog's 503, not SQLite's busy timeout (5 s). */
	ck_assert_int_ge(p1.ms, 1900);
	ck_assert_int_lt(p1.ms, 4500);
	/* While the commit is stuck, new notifications get their 503 at once. */
	pthread_create(&p2.t, NULL, post_one, &p2);
	pthread_join(p2.t, NULL);
	ck_assert_int_eq(p2.status, 503);
	ck_assert(p2.retry_after);
	ck_assert_int_lt(p2.ms, 1000);
	webhook_stats(f.w, &st);
	ck_assert_uint_eq(st.accepted, 0);
	ck_assert_uint_eq(st.rejected[WEBHOOK_REJ_TIMEOUT], 2);
	/* Stop while the committer is still inside SQLite: it returns once the commit does. */
	t0 = now_ms();
	webhook_stop(f.w);
	ck_assert_int_lt(now_ms() - t0, 15000);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(db);
	fx_end(&f);
}
END_TEST

/* The lock goes away before SQLite gives up: the late commit lands, later POSTs get 200. */
START_TEST(slow_commit_recovers)
{
	struct poster p1 = { .key = "late-1" }, p2 = { .key = "late-2" };
	struct fx f;
	sqlite3 *db;

	fx_start(&f, "auth_token = " TOKEN "\ncommit_timeout = 300ms");
	p1.f = p2.f = &f;
	db = hold_write_lock(f.queue);
	pthread_create(&p1.t, NULL, post_one, &p1);
	pthread_join(p1.t, NULL);
	ck_assert_int_eq(p1.status, 503);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(db);
	/* The stuck commit ends within the busy timeout; then all is normal again. */
	for (int i = 0; i < 100 && p2.status != 200; i++) {
		usleep(100 * 1000);
		post_one(&p2);
	}
	ck_assert_int_eq(p2.status, 200);
	/* A 503 for something that did commit is allowed: dedupe absorbs the retry. */
	ck_assert_int_eq(jobs_in(f.q), 2);
	fx_end(&f);
}
END_TEST

/* A reload while a commit is under way: the jobs keep their handler name, not the old config's. */
START_TEST(reload_during_commit_keeps_jobs_intact)
{
	struct poster p1 = { .key = "reload-1" };
	struct jobq_query qu = JOBQ_QUERY_INIT;
	struct config cfg2 = CONFIG_INIT;
	struct ini *ini2 = NULL;
	struct err e = ERR_INIT;
	char key[256] = "";
	struct fx f;
	sqlite3 *db;

	fx_start(&f, "auth_token = " TOKEN "\ncommit_timeout = 20s");
	p1.f = &f;
	config_from(&cfg2, &ini2, f.dir, NULL, "auth_token = " TOKEN);
	db = hold_write_lock(f.queue);
	pthread_create(&p1.t, NULL, post_one, &p1);
	usleep(500 * 1000); /* decoded and waiting in the committer */
	ck_assert_int_eq(webhook_reload(f.w, &cfg2, &e), 0);
	f.cfg.handlers[0].name[0] = 'X';
	config_release(&f.cfg);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(db);
	pthread_join(p1.t, NULL);
	ck_assert_int_eq(p1.status, 200);
	/* first_key() checks the handler is still "h". */
	ck_assert_int_eq(jobq_list(f.q, &qu, first_key, key, &e), 0);
	ck_assert_str_eq(key, "reload-1");
	webhook_free(f.w);
	f.w = NULL;
	config_release(&cfg2);
	ini_free(ini2);
	fx_end(&f);
}
END_TEST

/*
 * A body that completes while webhook_stop() drains, as its commit cannot
 * start yet: the committer still commits it before it ends, and it gets its
 * 200 (a connection left suspended would make libmicrohttpd abort).
 */
struct stopper {
	struct webhook *w;
	pthread_t t;
};

static void *stop_main(void *arg)
{
	struct stopper *st = arg;

	webhook_stop(st->w);
	return NULL;
}

START_TEST(stop_commits_what_was_handed_over)
{
	struct poster p1 = { .key = "first" };
	struct stopper stp;
	struct buf body = BUF_INIT, in = BUF_INIT, head = BUF_INIT;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct fx f;
	sqlite3 *db;
	int fd;

	fx_start(&f, "auth_token = " TOKEN "\ncommit_timeout = 3s");
	p1.f = &f;
	stp.w = f.w;
	ceph_body(&body, "slow-body");
	db = hold_write_lock(f.queue);
	pthread_create(&p1.t, NULL, post_one, &p1); /* stuck in the committer */
	usleep(100 * 1000);
	/* The slow sender: headers and half the body now. */
	sa.sin_port = htons((uint16_t)f.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	buf_addf(&head,
		 "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
		 "Content-Length: %zu\r\n\r\n",
		 TOKEN, body.len);
	buf_add(&head, body.data, body.len / 2);
	ck_assert_int_eq(write(fd, head.data, head.len), (ssize_t)head.len);
	usleep(100 * 1000);
	/* Stop drains for commit_timeout + 1 s = 4 s. */
	pthread_create(&stp.t, NULL, stop_main, &stp);
	usleep(2500 * 1000);
	/* The rest of the body: it goes to the committer, still inside SQLite. */
	ck_assert_int_eq(write(fd, body.data + body.len / 2, body.len - body.len / 2),
			 (ssize_t)(body.len - body.len / 2));
	/*
	 * Past the drain, and before SQLite's busy timeout (5 s) and the body's
	 * deadline: the stuck commit goes through, then the committer, told to
	 * stop, must still commit the body.
	 */
	usleep(2000 * 1000);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(db);
	pthread_join(stp.t, NULL);
	pthread_join(p1.t, NULL);
	ck_assert_int_eq(p1.status, 503);
	for (;;) {
		char chunk[4096];
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n <= 0)
			break;
		buf_add(&in, chunk, (size_t)n);
		if (strstr(in.data, "\r\n\r\n{"))
			break;
	}
	close(fd);
	ck_assert_msg(str_starts_with(in.data, "HTTP/1.1 200"), "got: %s", in.data);
	buf_release(&body);
	buf_release(&in);
	buf_release(&head);
	fx_end(&f);
}
END_TEST

/* ---- load, stop, reload ---- */

#define N_THREADS 8
#define N_EACH	  200

struct loader {
	struct fx *f;
	int id;
	int n_ok;
	int n_other;
	int stop_on_error; /* end at the first failure (for the stop test) */
	int n_sent;
	char (*ok_keys)[32];
	pthread_t t;
};

static void *load_main(void *arg)
{
	struct loader *l = arg;
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct req rq = { .path = "/", .auth = "Bearer " TOKEN };
	CURL *c = curl_easy_init();
	char key[32];

	rq.port = l->f->port;
	for (int i = 0; i < N_EACH; i++) {
		snprintf(key, sizeof(key), "load/%d/%d", l->id, i);
		ceph_body(&body, key);
		rq.body = body.data;
		rq.len = body.len;
		http_on(c, &rq, &r);
		l->n_sent++;
		if (r.status == 200) {
			str_copy(l->ok_keys[l->n_ok++], 32, key);
		} else {
			l->n_other++;
			if (l->stop_on_error)
				break;
		}
	}
	curl_easy_cleanup(c);
	buf_release(&body);
	resp_release(&r);
	return NULL;
}

static void loaders_run(struct fx *f, struct loader *l, int stop_on_error)
{
	for (int i = 0; i < N_THREADS; i++) {
		l[i] = (struct loader){ .f = f, .id = i, .stop_on_error = stop_on_error };
		l[i].ok_keys = xcalloc(N_EACH, sizeof(*l[i].ok_keys));
		ck_assert_int_eq(pthread_create(&l[i].t, NULL, load_main, &l[i]), 0);
	}
}

START_TEST(concurrent_posts_all_land)
{
	struct loader l[N_THREADS];
	struct webhook_stats st;
	struct fx f;
	int ok = 0;

	fx_start(&f, "auth_token = " TOKEN);
	loaders_run(&f, l, 0);
	for (int i = 0; i < N_THREADS; i++) {
		pthread_join(l[i].t, NULL);
		ok += l[i].n_ok;
		ck_assert_int_eq(l[i].n_other, 0);
		free(l[i].ok_keys);
	}
	ck_assert_int_eq(ok, N_THREADS * N_EACH);
	ck_assert_int_eq(jobs_in(f.q), N_THREADS * N_EACH);
	webhook_stats(f.w, &st);
	ck_assert_uint_eq(st.accepted, N_THREADS * N_EACH);
	ck_assert_uint_eq(st.jobs_new, N_THREADS * N_EACH);
	/* Group commit: concurrent requests share transactions. */
	ck_assert_msg(st.commits < st.accepted, "commits %llu for %llu requests",
		      (unsigned long long)st.commits, (unsigned long long)st.accepted);
	fx_end(&f);
}
END_TEST

/* Collects the keys of every job. */
struct keyset {
	char **v;
	size_t n;
};

static int collect_key(void *arg, const struct jobq_job *job)
{
	struct keyset *ks = arg;

	ks->v = xrealloc(ks->v, (ks->n + 1) * sizeof(*ks->v));
	ks->v[ks->n++] = xstrdup(job->key);
	return 0;
}

static int has_key(const struct keyset *ks, const char *key)
{
	for (size_t i = 0; i < ks->n; i++)
		if (!strcmp(ks->v[i], key))
			return 1;
	return 0;
}

/* Stop under load: it returns, and every notification answered 200 is in the queue. */
START_TEST(stop_under_load_keeps_every_200)
{
	struct jobq_query qu = JOBQ_QUERY_INIT;
	struct loader l[N_THREADS];
	struct keyset ks = { NULL, 0 };
	struct err e = ERR_INIT;
	struct fx f;
	int64_t t0;
	int ok = 0;

	fx_start(&f, "auth_token = " TOKEN);
	loaders_run(&f, l, 1);
	usleep(300 * 1000);
	t0 = now_ms();
	webhook_stop(f.w);
	ck_assert_int_lt(now_ms() - t0, 10000);
	ck_assert_int_eq(jobq_list(f.q, &qu, collect_key, &ks, &e), 0);
	for (int i = 0; i < N_THREADS; i++) {
		pthread_join(l[i].t, NULL);
		for (int k = 0; k < l[i].n_ok; k++)
			ck_assert_msg(has_key(&ks, l[i].ok_keys[k]), "200 but no job: %s",
				      l[i].ok_keys[k]);
		ok += l[i].n_ok;
		free(l[i].ok_keys);
	}
	ck_assert_int_gt(ok, 0);
	ck_assert_int_ge((int)ks.n, ok);
	for (size_t i = 0; i < ks.n; i++)
		free(ks.v[i]);
	free(ks.v);
	fx_end(&f);
}
END_TEST

START_TEST(reload_swaps_token_and_rules)
{
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct config cfg2 = CONFIG_INIT;
	struct ini *ini2 = NULL;
	struct err e = ERR_INIT;
	struct req rq = { .path = "/", .auth = "Bearer other-token" };
	struct fx f;

	fx_start(&f, "auth_token = " TOKEN);
	config_from(&cfg2, &ini2, f.dir, NULL, "auth_token = other-token\nbody_limit = 2KiB");
	/* The new rules take only deletes. */
	free(cfg2.handlers[0].events.v[0]);
	cfg2.handlers[0].events.v[0] = xstrdup("s3:ObjectRemoved:*");
	ck_assert_int_eq(webhook_reload(f.w, &cfg2, &e), 0);
	/* The old config is no longer read. */
	config_release(&f.cfg);
	memset(&f.cfg, 0xa5, sizeof(f.cfg));
	ceph_body(&body, "after-reload");
	ck_assert_int_eq(post(&f, body.data, body.len, &r), 401);
	rq.port = f.port;
	rq.body = body.data;
	rq.len = body.len;
	ck_assert_int_eq(http(&rq, &r), 200);
	ck_assert_str_eq(r.body.data, "{\"events\":1,\"jobs\":0}\n");
	buf_reset(&body);
	test_read_fixture(&body, "fixtures/ceph-rgw/delete.json");
	rq.body = body.data;
	rq.len = body.len;
	ck_assert_int_eq(http(&rq, &r), 200);
	ck_assert_str_eq(r.body.data, "{\"events\":1,\"jobs\":1}\n");
	ck_assert_int_eq(jobs_in(f.q), 1);
	webhook_free(f.w);
	f.w = NULL;
	memset(&f.cfg, 0, sizeof(f.cfg));
	config_release(&cfg2);
	ini_free(ini2);
	buf_release(&body);
	resp_release(&r);
	fx_end(&f);
}
END_TEST

/* ---- TLS ---- */

/* A certificate for key: issued by ca/ca_key (NULL: self-signed, a CA), with an IP SAN or not. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *ca, EVP_PKEY *ca_key, const char *san)
{
	const char *value = ca ? san : "critical,CA:TRUE";
	X509 *x = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(uintptr_t)key & 0x7fffffff);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(ca ? ca : x));
	X509V3_set_ctx(&ctx, ca ? ca : x, x, NULL, NULL, 0);
	if (value) {
		ext = X509V3_EXT_conf_nid(NULL, &ctx,
					  ca ? NID_subject_alt_name : NID_basic_constraints, value);
		ck_assert_ptr_nonnull(ext);
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	ck_assert_int_gt(X509_sign(x, ca_key ? ca_key : key, EVP_sha256()), 0);
	return x;
}

/* Writes DIR/NAME.pem (the certificate) and DIR/NAME.key. */
static void write_pem(const char *dir, const char *name, X509 *x, EVP_PKEY *key)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	PEM_write_X509(f, x);
	fclose(f);
	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
}

/* ca, srv (for 127.0.0.1, by ca), cli (by ca) and rogue (self-signed) in dir. */
static void make_pki(const char *dir)
{
	EVP_PKEY *k[4];
	X509 *ca, *x;
	size_t i;

	for (i = 0; i < 4; i++)
		ck_assert_ptr_nonnull(k[i] = EVP_EC_gen("P-256"));
	ca = make_cert(k[0], "test-ca", NULL, NULL, NULL);
	write_pem(dir, "ca", ca, k[0]);
	x = make_cert(k[1], "127.0.0.1", ca, k[0], "IP:127.0.0.1");
	write_pem(dir, "srv", x, k[1]);
	X509_free(x);
	x = make_cert(k[2], "client", ca, k[0], NULL);
	write_pem(dir, "cli", x, k[2]);
	X509_free(x);
	x = make_cert(k[3], "rogue", NULL, NULL, NULL);
	write_pem(dir, "rogue", x, k[3]);
	X509_free(x);
	X509_free(ca);
	for (i = 0; i < 4; i++)
		EVP_PKEY_free(k[i]);
}

/* HTTPS with client certificates: none or a rogue one gets 401, a good one 200 (twice, kept alive).
 */
START_TEST(tls_client_certificates)
{
	char *pki = test_tmpdir();
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT, serve = BUF_INIT;
	struct req rq = { .path = "/?token=" TOKEN, .tls_dir = pki };
	CURL *c = curl_easy_init();
	struct fx f;

	make_pki(pki);
	buf_addf(&serve,
		 "auth_token = %s\ntls_cert = %s/srv.pem\ntls_key = %s/srv.key\n"
		 "tls_client_ca = %s/ca.pem",
		 TOKEN, pki, pki, pki);
	fx_start(&f, serve.data);
	test_read_fixture(&body, CEPH_PUT);
	rq.body = body.data;
	rq.len = body.len;
	rq.port = f.port;
	ck_assert_int_eq(http(&rq, &r), 401);
	ck_assert_str_eq(r.body.data, "{\"error\":\"missing or untrusted client certificate\"}\n");
	rq.cert = "rogue";
	ck_assert_int_eq(http(&rq, &r), 401);
	ck_assert_int_eq(jobs_in(f.q), 0);
	rq.cert = "cli";
	http_on(c, &rq, &r);
	ck_assert_int_eq(r.status, 200);
	ceph_body(&body, "second");
	rq.body = body.data;
	rq.len = body.len;
	http_on(c, &rq, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(jobs_in(f.q), 2);
	rq.tls_dir = NULL;
	ck_assert_int_eq(http(&rq, &r), 0); /* plain HTTP gets no answer */
	curl_easy_cleanup(c);
	fx_end(&f);
	buf_release(&body);
	buf_release(&serve);
	resp_release(&r);
	test_rmtree(pki);
	free(pki);
}
END_TEST

/* TLS files that cannot serve are refused by webhook_new(), naming the key and the file. */
START_TEST(tls_files_are_checked)
{
	static const struct {
		const char *cert, *key, *why;
		enum err_code code;
	} cases[] = {
		{ "srv.pem", "cli.key", "is not the key of tls_cert",
		  ERR_CONFIG }, /* another key */
		{ "srv.key", "srv.key", "holds no PEM certificate",
		  ERR_CONFIG }, /* no certificate */
		{ "srv.pem", "nothing.key", "[serve] tls_key: cannot", ERR_IO }, /* no file */
	};
	char *pki = test_tmpdir(), *dir = test_tmpdir();
	size_t i;

	make_pki(pki);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config cfg = CONFIG_INIT;
		struct ini *ini = NULL;
		struct err e = ERR_INIT;
		struct buf serve = BUF_INIT;
		buf_addf(&serve, "auth_token = none\ntls_cert = %s/%s\ntls_key = %s/%s", pki,
			 cases[i].cert, pki, cases[i].key);
		config_from(&cfg, &ini, dir, NULL, serve.data);
		ck_assert_ptr_null(webhook_new(&cfg, NULL, &e));
		ck_assert_int_eq(e.code, cases[i].code);
		ck_assert_msg(strstr(e.msg, cases[i].why), "%s", e.msg);
		config_release(&cfg);
		ini_free(ini);
		buf_release(&serve);
	}
	test_rmtree(pki);
	test_rmtree(dir);
	free(pki);
	free(dir);
}
END_TEST

START_TEST(start_fails_on_a_busy_port)
{
	struct config cfg = CONFIG_INIT;
	struct ini *ini = NULL;
	struct err e = ERR_INIT;
	struct webhook *w2;
	struct fx f;
	char listen[64];

	fx_start(&f, "auth_token = " TOKEN);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", f.port);
	config_from(&cfg, &ini, f.dir, listen, "auth_token = none");
	w2 = webhook_new(&cfg, f.q, &e);
	ck_assert_ptr_nonnull(w2);
	ck_assert_int_eq(webhook_start(w2, &e), -1);
	ck_assert_int_eq(e.code, ERR_NET);
	ck_assert_msg(strstr(e.msg, "cannot listen on '127.0.0.1:"), "%s", e.msg);
	webhook_free(w2);
	config_release(&cfg);
	ini_free(ini);
	ini = NULL;
	err_clear(&e);
	config_from(&cfg, &ini, f.dir, "nowhere", "auth_token = none");
	ck_assert_ptr_null(webhook_new(&cfg, f.q, &e));
	ck_assert_int_eq(e.code, ERR_CONFIG);
	config_release(&cfg);
	ini_free(ini);
	fx_end(&f);
}
END_TEST

static int open_fds(void)
{
	char path[64];
	int n = 0;

	for (int fd = 0; fd < 4096; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n += access(path, F_OK) == 0;
	}
	return n;
}

/* Starting, serving, failing to start and stopping leave no descriptor behind. */
START_TEST(no_descriptor_leaks)
{
	struct config cfg = CONFIG_INIT;
	struct resp r = RESP_INIT;
	struct buf body = BUF_INIT;
	struct ini *ini = NULL;
	struct err e = ERR_INIT;
	struct webhook *w2;
	char listen[128];
	struct fx f;
	int before = open_fds();

	fx_start(&f, "auth_token = " TOKEN);
	ceph_body(&body, "fd");
	ck_assert_int_eq(post(&f, body.data, body.len, &r), 200);
	ck_assert_int_eq(get(f.admin_port, "/healthz", &r), 200);
	/* The main address binds, the admin one is taken: what was bound is let go. */
	snprintf(listen, sizeof(listen), "auth_token = none\nadmin_listen = 127.0.0.1:%d",
		 f.admin_port);
	config_from(&cfg, &ini, f.dir, NULL, listen);
	w2 = webhook_new(&cfg, f.q, &e);
	ck_assert_int_eq(webhook_start(w2, &e), -1);
	ck_assert_msg(strstr(e.msg, "cannot listen on"), "%s", e.msg);
	webhook_free(w2);
	config_release(&cfg);
	ini_free(ini);
	fx_end(&f);
	ck_assert_int_eq(open_fds(), before);
	buf_release(&body);
	resp_release(&r);
}
END_TEST

static Suite *webhook_suite(void)
{
	Suite *s = suite_create("webhook");
	TCase *t = tcase_create("webhook");

	tcase_set_timeout(t, 60);
	tcase_add_test(t, ceph_notification_makes_a_job);
	tcase_add_test(t, same_notification_twice_is_one_job);
	tcase_add_test(t, test_event_is_200_without_job);
	tcase_add_loop_test(t, token_is_checked, 0,
			    (int)(sizeof(auth_cases) / sizeof(auth_cases[0])));
	tcase_add_test(t, token_is_never_logged);
	tcase_add_test(t, no_token_configured_takes_anyone);
	tcase_add_loop_test(t, body_signature_is_checked, 0,
			    (int)(sizeof(hmac_cases) / sizeof(hmac_cases[0])));
	tcase_add_test(t, reload_rotates_hmac_secrets);
	tcase_add_test(t, sns_message_needs_sns_topics);
	tcase_add_test(t, tls_client_certificates);
	tcase_add_test(t, tls_files_are_checked);
	tcase_add_test(t, malformed_body_is_400);
	tcase_add_test(t, body_over_limit_is_413);
	tcase_add_test(t, refusal_does_not_wait_for_the_body);
	tcase_add_test(t, methods_and_paths);
	tcase_add_test(t, healthz_fails_when_queue_file_is_gone);
	tcase_add_test(t, failing_queue_is_503);
	tcase_add_test(t, slow_commit_is_503_and_stop_does_not_hang);
	tcase_add_test(t, slow_commit_recovers);
	tcase_add_test(t, reload_during_commit_keeps_jobs_intact);
	tcase_add_test(t, stop_commits_what_was_handed_over);
	tcase_add_test(t, concurrent_posts_all_land);
	tcase_add_test(t, stop_under_load_keeps_every_200);
	tcase_add_test(t, reload_swaps_token_and_rules);
	tcase_add_test(t, start_fails_on_a_busy_port);
	tcase_add_test(t, no_descriptor_leaks);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return test_main(webhook_suite());
}
