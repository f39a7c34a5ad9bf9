/*
 * Unit tests of reprocess's parts that need no S3 server: the manifest CSV,
 * checkpoint ids, the completion report's rows and --since/--until times.
 * The run itself is tested end to end (tests/e2e/reprocess.sh).
 */
#include "tests/testutil.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/jobq.h"
#include "triggers/reprocess.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses one line; the row when it is one (the caller releases it). */
static int line(const char *text, struct reprocess_row *row, struct err *e)
{
	err_clear(e);
	reprocess_row_release(row);
	return reprocess_manifest_line(text, strlen(text), 7, row, e);
}

START_TEST(manifest_line_fields)
{
	struct reprocess_row row = REPROCESS_ROW_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(line("photos,cats/a.jpg", &row, &e), 1);
	ck_assert_str_eq(row.bucket, "photos");
	ck_assert_str_eq(row.key, "cats/a.jpg");
	ck_assert_str_eq(row.version_id, "");
	ck_assert_uint_eq(row.line, 7);
	ck_assert_int_eq(
		line("photos,cats%2Fa+b%25.jpg,3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY\r", &row, &e), 1);
	ck_assert_str_eq(row.key, "cats/a b%.jpg");
	ck_assert_str_eq(row.version_id, "3HL4kqtJlcpXroDTDmJ rmSpXd3dIbrHY");
	/* Quoted fields: commas and doubled quotes inside, an empty version id. */
	ck_assert_int_eq(line("\"photos\",\"a,\"\"b\"\"%E2%82%AC\",\"\"", &row, &e), 1);
	ck_assert_str_eq(row.bucket, "photos");
	ck_assert_str_eq(row.key, "a,\"b\"\xe2\x82\xac");
	ck_assert_str_eq(row.version_id, "");
	/* A key that decodes to a NUL byte is a row; the run rejects it, counted. */
	ck_assert_int_eq(line("b,x%00y", &row, &e), 1);
	ck_assert_uint_eq(row.key_len, 3);
	ck_assert_int_eq(line("", &row, &e), 0);
	ck_assert_int_eq(line("  \r", &row, &e), 0);
	reprocess_row_release(&row);
}
END_TEST

START_TEST(manifest_line_errors_name_the_line)
{
	static const struct {
		const char *text, *msg;
	} bad[] = {
		{ "photos", "line 7: one field; a manifest line is bucket,key[,versionId]" },
		{ "photos,", "line 7: no key; a manifest line is bucket,key[,versionId]" },
		{ ",a.jpg", "line 7: no bucket; a manifest line is bucket,key[,versionId]" },
		{ "b,k,v,extra",
		  "line 7: more than 3 fields; a manifest line is bucket,key[,versionId]" },
		{ "b,\"k", "line 7: a quoted field does not end" },
		{ "b,\"k\"x", "line 7: text after a quoted field" },
		{ "b,k\"x", "line 7: a quote inside a bare field" },
		{ "b,a%2", "line 7: the key 'a%2' has a bad %-escape" },
		{ "b,a,%zz", "line 7: the version id '%zz' has a bad %-escape" },
	};
	struct reprocess_row row = REPROCESS_ROW_INIT;
	struct err e = ERR_INIT;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		ck_assert_int_eq(line(bad[i].text, &row, &e), -1);
		ck_assert_int_eq(e.code, ERR_PARSE);
		ck_assert_str_eq(e.msg, bad[i].msg);
		ck_assert_ptr_null(row.bucket);
	}
}
END_TEST

START_TEST(manifest_file_rows_and_bad_line)
{
	static const char text[] = "\xef\xbb\xbf"
				   "b,first\r\n"
				   "\r\n"
				   "b,second+one,v2\n"
				   "b,\"third\n"
				   "b,never\n";
	struct reprocess_row row = REPROCESS_ROW_INIT;
	struct reprocess_manifest *m;
	struct err e = ERR_INIT;
	char *dir = test_tmpdir(), path[4200], want[4300];

	snprintf(path, sizeof(path), "%s/manifest.csv", dir);
	test_write_file(path, text, sizeof(text) - 1);
	m = reprocess_manifest_open(path, &e);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(reprocess_manifest_next(m, &row, &e), 1);
	ck_assert_str_eq(row.bucket, "b"); /* the byte order mark is not part of it */
	ck_assert_str_eq(row.key, "first");
	ck_assert_uint_eq(row.line, 1);
	ck_assert_int_eq(reprocess_manifest_next(m, &row, &e), 1);
	ck_assert_str_eq(row.key, "second one");
	ck_assert_str_eq(row.version_id, "v2");
	ck_assert_uint_eq(row.line, 3);
	ck_assert_int_eq(reprocess_manifest_next(m, &row, &e), -1);
	snprintf(want, sizeof(want), "manifest '%s': line 4: a quoted field does not end", path);
	ck_assert_str_eq(e.msg, want);
	reprocess_manifest_close(m);
	reprocess_row_release(&row);
	ck_assert_ptr_null(reprocess_manifest_open("/nonexistent/m.csv", &e));
	test_rmtree(dir);
	free(dir);
}
END_TEST

/* Reads the file `text` (len bytes): its first row, then the error of the second line. */
static void second_line_fails(const char *text, size_t len, const char *why)
{
	struct reprocess_row row = REPROCESS_ROW_INIT;
	struct reprocess_manifest *m;
	struct err e = ERR_INIT;
	char *dir = test_tmpdir(), path[4200], want[4400];

	snprintf(path, sizeof(path), "%s/m.csv", dir);
	test_write_file(path, text, len);
	m = reprocess_manifest_open(path, &e);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(reprocess_manifest_next(m, &row, &e), 1);
	ck_assert_int_eq(reprocess_manifest_next(m, &row, &e), -1);
	snprintf(want, sizeof(want), "manifest '%s' line 2: %s", path, why);
	ck_assert_str_eq(e.msg, want);
	reprocess_manifest_close(m);
	reprocess_row_release(&row);
	test_rmtree(dir);
	free(dir);
}

START_TEST(manifest_file_refuses_nul_bytes_and_long_lines)
{
	size_t n = 70000;
	char *big = malloc(n);

	second_line_fails("b,ok\nb,x\0y\n", 11, "a NUL byte");
	memset(big, 'k', n);
	memcpy(big, "b,ok\nb,", 7);
	big[n - 1] = '\n';
	second_line_fails(big, n, "longer than 64 KiB");
	free(big);
}
END_TEST

/* ---- checkpoint ids ---- */

static const char *cp_id(const struct reprocess_opts *o, const char *const *handlers)
{
	static char out[REPROCESS_ID_SIZE];
	struct err e = ERR_INIT;

	ck_assert_msg(reprocess_checkpoint_id(o, handlers, out, &e) == 0, "%s", e.msg);
	return out;
}

START_TEST(checkpoint_id_is_stable)
{
	static const char *const hs[] = { "thumbnail", "text", NULL };
	static const char *const hs_again[] = { "text", "thumbnail", "text", NULL };
	static const char *const sx[] = { ".png", ".jpg", NULL };
	static const char *const sx_again[] = { ".jpg", ".png", NULL };
	struct reprocess_opts o = REPROCESS_OPTS_INIT, o2;
	char first[REPROCESS_ID_SIZE];

	o.bucket = "photos";
	o.prefix = "cats/";
	o.suffixes = sx;
	/*
	 * The SHA-256 of the description below, taken apart from this code; a
	 * change strands the checkpoints of interrupted runs:
	 * "s3hook reprocess v1\nbucket=photos\nprefix=cats%2F\nhandlers=text,thumbnail\n"
	 * "suffixes=.jpg,.png\nsince=-9223372036854775808\nuntil=9223372036854775807\n"
	 * "min_size=0\nmax_size=18446744073709551615\nforce=0\n"
	 */
	ck_assert_str_eq(
		cp_id(&o, hs),
		"reprocess-269db65d859c8f217f0c74c61bc4ef4557fe4c65c349a2692dafaf5873cbfff6");
	snprintf(first, sizeof(first), "%s", cp_id(&o, hs));
	o2 = o;
	o2.suffixes = sx_again;
	ck_assert_str_eq(cp_id(&o2, hs_again), first); /* order and repeats do not matter */
	o2.prefix = "cats";
	ck_assert_str_ne(cp_id(&o2, hs), first);
	o2 = o;
	o2.since = 1700000000;
	ck_assert_str_ne(cp_id(&o2, hs), first);
	o2 = o;
	o2.flags = REPROCESS_FORCE;
	ck_assert_str_ne(cp_id(&o2, hs), first);
	o2.flags = REPROCESS_ENQUEUE | REPROCESS_DRY_RUN; /* how it runs is not what it is */
	ck_assert_str_eq(cp_id(&o2, hs), first);
	o2 = o;
	o2.suffixes = NULL;
	ck_assert_str_ne(cp_id(&o2, hs), first);
	ck_assert_str_ne(cp_id(&o, hs + 1), first);
}
END_TEST

START_TEST(checkpoint_id_fields_cannot_run_together)
{
	static const char *const ab[] = { "a,b", NULL };
	static const char *const a_b[] = { "a", "b", NULL };
	struct reprocess_opts o = REPROCESS_OPTS_INIT;
	char first[REPROCESS_ID_SIZE];

	o.bucket = "b";
	o.prefix = "x\nhandlers=";
	snprintf(first, sizeof(first), "%s", cp_id(&o, ab));
	ck_assert_str_ne(cp_id(&o, a_b), first);
	o.prefix = "";
	ck_assert_str_ne(cp_id(&o, ab), first);
	o.prefix = NULL; /* the same as "" */
	ck_assert_str_eq(cp_id(&o, ab), cp_id(&(struct reprocess_opts){ .bucket = "b",
									.prefix = "",
									.since = INT64_MIN,
									.until = INT64_MAX,
									.max_size = UINT64_MAX },
					      ab));
}
END_TEST

START_TEST(checkpoint_id_of_a_manifest_is_its_bytes)
{
	static const char *const hs[] = { "h", NULL };
	struct reprocess_opts o = REPROCESS_OPTS_INIT;
	char *dir = test_tmpdir(), a[4200], b[4200], c[4200], id[REPROCESS_ID_SIZE];
	struct err e = ERR_INIT;

	snprintf(a, sizeof(a), "%s/a.csv", dir);
	snprintf(b, sizeof(b), "%s/b.csv", dir);
	snprintf(c, sizeof(c), "%s/c.csv", dir);
	test_write_file(a, "b,k1\nb,k2\n", 10);
	test_write_file(b, "b,k1\nb,k2\n", 10);
	test_write_file(c, "b,k1\nb,k3\n", 10);
	o.manifest = a;
	snprintf(id, sizeof(id), "%s", cp_id(&o, hs));
	o.manifest = b;
	ck_assert_str_eq(cp_id(&o, hs), id);
	o.manifest = c;
	ck_assert_str_ne(cp_id(&o, hs), id);
	/* A bad manifest is refused whole, before anything runs. */
	test_write_file(c, "b,k1\nb\n", 7);
	ck_assert_int_eq(reprocess_checkpoint_id(&o, hs, id, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "line 2: one field"));
	o.bucket = "b";
	err_clear(&e);
	ck_assert_int_eq(reprocess_checkpoint_id(&o, hs, id, &e), -1);
	ck_assert_int_eq(e.code, ERR_USAGE);
	test_rmtree(dir);
	free(dir);
}
END_TEST

/* ---- the report ---- */

static const char *row(const char *bucket, const char *key, const char *version, const char *code,
		       int http, const char *msg)
{
	static struct buf b = BUF_INIT;

	buf_reset(&b);
	reprocess_report_row(&b, bucket, key, strlen(key), version, code, http, msg);
	return b.data;
}

START_TEST(report_rows)
{
	ck_assert_str_eq(
		reprocess_report_header,
		"Bucket,Key,VersionId,TaskStatus,ErrorCode,HTTPStatusCode,ResultMessage\n");
	ck_assert_str_eq(row("photos", "cats/a b.jpg", NULL, NULL, 200, "done"),
			 "photos,cats%2Fa+b.jpg,,succeeded,,200,done\n");
	ck_assert_str_eq(
		row("photos", "bad.jpg", "", "PermanentFailure", 500, "exit 65: not an image"),
		"photos,bad.jpg,,failed,PermanentFailure,500,exit 65: not an image\n");
	ck_assert_str_eq(
		row("b", "\xc3\xa9+%,\"", "v 1/2", NULL, 200, "say \"hi\", then\nbye"),
		"b,%C3%A9%2B%25%2C%22,v+1%2F2,succeeded,,200,\"say \"\"hi\"\", then bye\"\n");
}
END_TEST

START_TEST(report_rows_of_jobs)
{
	char bucket[] = "photos", key[] = "bad.jpg", none[] = "", exit65[] = "exit 65",
	     tail[] = "reading...\nnot an image \n\n",
	     gone[] = "HEAD s3://photos/bad.jpg: NoSuchKey", ct[] = "content_type does not match",
	     exit1[] = "exit 1";
	struct jobq_job j = { .bucket = bucket,
			      .key = key,
			      .version_id = none,
			      .last_error = exit65,
			      .stderr_tail = tail };
	struct buf b = BUF_INIT;

	j.state = JOB_DEAD;
	reprocess_report_job(&b, &j);
	ck_assert_str_eq(b.data,
			 "photos,bad.jpg,,failed,PermanentFailure,500,exit 65: not an image\n");
	buf_reset(&b);
	j.state = JOB_DONE;
	reprocess_report_job(&b, &j);
	ck_assert_str_eq(b.data, "photos,bad.jpg,,succeeded,,200,done\n");
	buf_reset(&b);
	j.state = JOB_GONE;
	j.last_error = gone;
	reprocess_report_job(&b, &j);
	ck_assert_str_eq(b.data, "photos,bad.jpg,,succeeded,,404,gone: HEAD s3://photos/bad.jpg: "
				 "NoSuchKey\n");
	buf_reset(&b);
	j.state = JOB_SKIPPED;
	j.last_error = ct;
	reprocess_report_job(&b, &j);
	ck_assert_str_eq(b.data,
			 "photos,bad.jpg,,succeeded,,200,skipped: content_type does not match\n");
	buf_reset(&b);
	j.state = JOB_RETRY;
	j.last_error = exit1;
	reprocess_report_job(&b, &j);
	ck_assert_str_eq(b.data, "photos,bad.jpg,,failed,TemporaryFailure,500,retry: exit 1\n");
	buf_release(&b);
}
END_TEST

/* ---- times ---- */

START_TEST(times)
{
	static const struct {
		const char *text;
		int64_t want;
	} good[] = {
		{ "2024-05-01", 1714521600 },		{ "2024-05-01T12:30", 1714566600 },
		{ "2024-05-01T12:30:15Z", 1714566615 }, { "2024-05-01 12:30:15.250Z", 1714566615 },
		{ "@1714566615", 1714566615 },		{ "36h", 2000000000 - 36 * 3600 },
		{ "7d", 2000000000 - 7 * 86400 },
	};
	static const char *const bad[] = {
		"",  "2024",	  "2024-05-01T", "2024-05-01X",
		"7", "yesterday", "@-1",	 "2024-05-01T12:30:15+02:00"
	};
	struct err e = ERR_INIT;
	int64_t t;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(*good); i++) {
		ck_assert_msg(reprocess_parse_time(good[i].text, 2000000000, &t, &e) == 0, "%s: %s",
			      good[i].text, e.msg);
		ck_assert_int_eq(t, good[i].want);
	}
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		err_clear(&e);
		ck_assert_msg(reprocess_parse_time(bad[i], 2000000000, &t, &e) == -1, "%s", bad[i]);
		ck_assert_int_eq(e.code, ERR_USAGE);
	}
}
END_TEST

static Suite *reprocess_suite(void)
{
	Suite *s = suite_create("reprocess");
	TCase *tc = tcase_create("reprocess");

	tcase_add_test(tc, manifest_line_fields);
	tcase_add_test(tc, manifest_line_errors_name_the_line);
	tcase_add_test(tc, manifest_file_rows_and_bad_line);
	tcase_add_test(tc, manifest_file_refuses_nul_bytes_and_long_lines);
	tcase_add_test(tc, checkpoint_id_is_stable);
	tcase_add_test(tc, checkpoint_id_fields_cannot_run_together);
	tcase_add_test(tc, checkpoint_id_of_a_manifest_is_its_bytes);
	tcase_add_test(tc, report_rows);
	tcase_add_test(tc, report_rows_of_jobs);
	tcase_add_test(tc, times);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return test_main(reprocess_suite());
}
