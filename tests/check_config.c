/* Unit tests of the configuration, output templates and ingest rules. */
#include "tests/testutil.h"

#include "core/config.h"
#include "core/err.h"
#include "core/event.h"
#include "core/ini.h"
#include "core/buf.h"
#include "core/jobq.h"
#include "core/template.h"
#include "triggers/rules.h"

#include <stdlib.h>
#include <string.h>

/* Loads text as "t.conf"; returns 0/-1 and leaves the error in e. */
static int load(struct config *cfg, const char *text, struct err *e)
{
	struct ini *ini = NULL;
	int r;

	if (ini_parse_string(&ini, "t.conf", text, strlen(text), INI_INLINE_COMMENTS, e) < 0)
		return -1;
	r = config_load(cfg, ini, e);
	if (r == 0)
		r = config_resolve_token(cfg, ini, e);
	ini_free(ini);
	return r;
}

START_TEST(defaults_without_a_file)
{
	struct config cfg = CONFIG_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(config_load(&cfg, NULL, &e), 0);
	ck_assert_str_eq(cfg.listen, "127.0.0.1:8080");
	ck_assert_str_eq(cfg.admin_listen, "127.0.0.1:8081");
	ck_assert_uint_eq(cfg.body_limit, 1 << 20);
	ck_assert_uint_eq(cfg.lease_ms, 60000);
	ck_assert_uint_eq(cfg.keep_done_ms, 7ULL * 86400000);
	ck_assert_int_eq(cfg.max_depth, 4);
	ck_assert_uint_eq(cfg.n_handlers, 0);
	config_release(&cfg);
}
END_TEST

START_TEST(handler_keys_and_defaults)
{
	struct config cfg = CONFIG_INIT;
	struct err e = ERR_INIT;
	const struct handler_conf *h;

	setenv("T_TOKEN", "s3cret", 1);
	ck_assert_msg(load(&cfg, "[serve]\nauth_token = env:T_TOKEN\n"
				 "[handler thumb]\nevents = ObjectCreated:* s3:ObjectRemoved:Delete\n"
				 "suffix = .jpg, .png\ncommand = true --size '2 56'\n"
				 "output = s3://{bucket}/thumbs/{key}.jpg ; a comment\ntimeout = 1500ms\n",
			   &e) == 0,
		      "%s", e.msg);
	ck_assert_str_eq(cfg.auth_token, "s3cret");
	h = config_handler(&cfg, "thumb");
	ck_assert_ptr_nonnull(h);
	ck_assert_uint_eq(h->events.n, 2);
	ck_assert_str_eq(h->events.v[0], "s3:ObjectCreated:*");
	ck_assert_str_eq(h->events.v[1], "s3:ObjectRemoved:Delete");
	ck_assert_uint_eq(h->suffix.n, 2);
	ck_assert_str_eq(h->suffix.v[1], ".png");
	ck_assert_uint_eq(h->argv.n, 3);
	ck_assert_str_eq(h->argv.v[2], "2 56");
	ck_assert_ptr_nonnull(strstr(h->path, "/true"));
	ck_assert_str_eq(h->output, "s3://{bucket}/thumbs/{key}.jpg");
	ck_assert_uint_eq(h->timeout_ms, 1500);
	ck_assert_int_eq(h->max_attempts, 5);
	ck_assert_int_eq(h->download, 1);
	config_release(&cfg);
}
END_TEST

/* Each bad file gives exactly this message. */
static void expect_error(const char *text, const char *msg)
{
	struct config cfg = CONFIG_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(load(&cfg, text, &e), -1);
	ck_assert_str_eq(e.msg, msg);
	config_release(&cfg);
}

START_TEST(errors_name_file_line_and_key)
{
	setenv("T_TOKEN", "x", 1);
	expect_error("[serve]\nauth_token = none\nlisten_x = 1\n", "t.conf:3: [serve] has no key 'listen_x'");
	expect_error("[sevre]\n", "t.conf:1: unknown section '[sevre]'");
	expect_error("[serve]\nauth_token = none\nbody_limit = lots\n",
		     "t.conf:3: [serve] body_limit: 'lots' is not a size (e.g. 1MiB, 64KiB)");
	expect_error("[serve]\nauth_token = none\nbody_limit = 1GiB\n",
		     "t.conf:3: [serve] body_limit: '1GiB' is out of range (1024 to 67108864 bytes)");
	expect_error("[jobs]\nlease = 5 minutes\n",
		     "t.conf:2: [jobs] lease: '5 minutes' is not a duration (e.g. 30s, 500ms, 7d)");
	expect_error("[handler x]\nevents = s3:ObjectCreated:*\n", "t.conf:1: [handler x] needs a command");
	expect_error("[handler x]\ncommand = no-such-program-anywhere\n",
		     "t.conf:2: [handler x] command: 'no-such-program-anywhere' not found (absolute, next "
		     "to the config file, built-in, or on PATH)");
	expect_error("[handler x]\ncommand = true 'open\n",
		     "t.conf:2: [handler x] command: unterminated single quote (column 6) in "
		     "command 'true 'open'");
	expect_error("[handler x]\ncommand = true\noutput = s3://{bucket}/{nope}\n",
		     "t.conf:3: [handler x] output: unknown placeholder in 's3://{bucket}/{nope}' (known: "
		     "{bucket} {key} {dir} {name} {stem} {ext} {file} {handler})");
	expect_error("[handler a/b]\ncommand = true\n",
		     "t.conf:1: handler name 'a/b' may hold only letters, digits, '_', '.' and '-'");
	expect_error("[handler x]\ncommand = true\ndownload = maybe\n",
		     "t.conf:3: [handler x] download: 'maybe' is not true or false");
	expect_error("[s3]\npath_style = sideways\n",
		     "t.conf:2: [s3] path_style: 'sideways' is not auto, true or false");
	unsetenv("T_UNSET_TOKEN");
	expect_error("[serve]\nauth_token = env:T_UNSET_TOKEN\n",
		     "t.conf:2: [serve] auth_token: environment variable T_UNSET_TOKEN is not set");
}
END_TEST

START_TEST(template_expands_every_placeholder)
{
	struct template_vars v = { "photos", "2024/cat.tar.gz", "thumbnail.jpg", "thumb" };
	struct buf b = BUF_INIT, k = BUF_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(template_expand("s3://{bucket}-out/{dir}/{stem}/{ext}/{name}/{file}/{handler}",
					 &v, &b, &k, &e),
			 0);
	ck_assert_str_eq(b.data, "photos-out");
	ck_assert_str_eq(k.data, "2024/cat.tar/gz/cat.tar.gz/thumbnail.jpg/thumb");
	buf_reset(&b);
	buf_reset(&k);
	v.key = "top.jpg";
	ck_assert_int_eq(template_expand("s3://{bucket}/{dir}/t/{key}.jpg", &v, &b, &k, &e), 0);
	ck_assert_str_eq(k.data, "t/top.jpg.jpg");
	buf_release(&b);
	buf_release(&k);
}
END_TEST

START_TEST(template_loop_guard)
{
	ck_assert(template_matches("s3://{bucket}/thumbs/{key}.jpg", "b", "thumbs/a/b.png.jpg"));
	ck_assert(!template_matches("s3://{bucket}/thumbs/{key}.jpg", "b", "photos/a.jpg"));
	ck_assert(!template_matches("s3://other/thumbs/{key}.jpg", "b", "thumbs/a.jpg"));
	ck_assert(template_matches("s3://other/thumbs/{key}.jpg", "other", "thumbs/a.jpg"));
	ck_assert(!template_matches("s3://{bucket}/t/[x]*", "b", "t/x"));
	ck_assert(template_matches("s3://{bucket}/t/[x]*", "b", "t/[x]*"));
}
END_TEST

START_TEST(rules_match_event_bucket_prefix_suffix)
{
	struct config cfg = CONFIG_INIT;
	struct event_list l = EVENT_LIST_INIT;
	struct jobq_new *jobs = NULL;
	struct err e = ERR_INIT;
	struct buf body = BUF_INIT;
	size_t n = 0;

	ck_assert_msg(load(&cfg, "[serve]\nauth_token = none\n"
				 "[handler a]\ncommand = true\nsuffix = .txt\n"
				 "[handler b]\ncommand = true\nevents = ObjectRemoved:*\n"
				 "[handler c]\ncommand = true\nbucket = other\n"
				 "[handler d]\ncommand = true\nprefix = ab\noutput = s3://{bucket}/{key}.out\n",
			   &e) == 0,
		      "%s", e.msg);
	test_read_fixture(&body, "fixtures/ceph-rgw/put-key-with-spaces.json");
	ck_assert_int_eq(event_decode(body.data, body.len, &l, &e), 0);
	ck_assert_uint_eq(l.n, 1);
	rules_jobs(&cfg, &l.v[0], "{}", 0, &jobs, &n);
	/* "dir/with space/a b.txt", a PUT in bucket "bsync": only the .txt rule fires. */
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(jobs[0].handler, "a");
	ck_assert_str_eq(jobs[0].key, "dir/with space/a b.txt");
	ck_assert(!rules_match(&cfg.handlers[1], &l.v[0]));
	ck_assert(!rules_match(&cfg.handlers[2], &l.v[0]));
	free(jobs);
	event_list_release(&l);
	buf_release(&body);
	config_release(&cfg);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, defaults_without_a_file);
	tcase_add_test(tc, handler_keys_and_defaults);
	tcase_add_test(tc, errors_name_file_line_and_key);
	tcase_add_test(tc, template_expands_every_placeholder);
	tcase_add_test(tc, template_loop_guard);
	tcase_add_test(tc, rules_match_event_bucket_prefix_suffix);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return test_main(config_suite());
}
