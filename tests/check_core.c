/* Unit tests of the base helpers: buf, str, ini, units, err. */
#include "tests/testutil.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/ini.h"
#include "core/log.h"
#include "core/str.h"
#include "core/units.h"

#include <jansson.h>
#include <string.h>
#include <unistd.h>

START_TEST(buf_grows_and_caps)
{
	struct buf b = BUF_INIT;

	ck_assert_str_eq(b.data, "");
	ck_assert_int_eq(buf_addf(&b, "%s-%d", "a", 12), 0);
	ck_assert_str_eq(b.data, "a-12");
	buf_release(&b);
	buf_init_cap(&b, 5);
	ck_assert_int_eq(buf_adds(&b, "12345"), 0);
	ck_assert_int_eq(buf_addch(&b, 'x'), -1);
	ck_assert_str_eq(b.data, "12345");
	ck_assert_int_eq(buf_addf(&b, "%d", 7), -1);
	buf_release(&b);
}
END_TEST

START_TEST(str_short_escapes_and_shortens)
{
	char big[1100];
	const char *s;

	ck_assert_str_eq(SHORT("a\nb"), "a\\nb");
	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[0] = 'H';
	big[sizeof(big) - 2] = 'T';
	s = SHORT(big);
	ck_assert_uint_lt(strlen(s), 120);
	ck_assert_int_eq(s[0], 'H');
	ck_assert_int_eq(s[strlen(s) - 1], 'T');
	ck_assert_ptr_nonnull(strstr(s, "..."));
}
END_TEST

START_TEST(pct_round_trip)
{
	struct buf enc = BUF_INIT, dec = BUF_INIT;
	const char key[] = "a b/+%?#/../ü~";

	ck_assert_int_eq(str_pct_encode(&enc, key, strlen(key), 1), 0);
	ck_assert_str_eq(enc.data, "a%20b/%2B%25%3F%23/../%C3%BC~");
	ck_assert_int_eq(str_pct_decode(&dec, enc.data, enc.len, 0), 0);
	ck_assert_str_eq(dec.data, key);
	buf_reset(&dec);
	ck_assert_int_eq(str_pct_decode(&dec, "a+b%2", 5, 1), -1);
	buf_reset(&dec);
	ck_assert_int_eq(str_pct_decode(&dec, "a+b%00", 6, 1), 0);
	ck_assert_uint_eq(dec.len, 4);
	ck_assert_int_eq(dec.data[3], '\0');
	buf_release(&enc);
	buf_release(&dec);
}
END_TEST

START_TEST(ini_reads_aws_config_and_comments)
{
	const char text[] = "\xef\xbb\xbf; comment\n[default]\nregion = eu-west-1 ; not a comment\n"
			    "s3 =\n    endpoint_url = http://127.0.0.1:7480\n  addressing_style = path\n"
			    "output=json\r\n[profile dev]\n  aws_access_key_id = AK\n";
	struct err e = ERR_INIT;
	struct ini *ini = NULL;

	ck_assert_int_eq(ini_parse_string(&ini, "config", text, strlen(text), 0, &e), 0);
	ck_assert_str_eq(ini_get(ini, "default", "region", ""), "eu-west-1 ; not a comment");
	ck_assert_str_eq(ini_get(ini, "default", "s3.endpoint_url", ""), "http://127.0.0.1:7480");
	ck_assert_str_eq(ini_get(ini, "default", "s3.addressing_style", ""), "path");
	ck_assert_str_eq(ini_get(ini, "default", "output", ""), "json");
	ck_assert_str_eq(ini_get(ini, "profile dev", "aws_access_key_id", ""), "AK");
	ck_assert_int_eq(ini_find(ini, "default", "s3.endpoint_url")->line, 5);
	ini_free(ini);
}
END_TEST

START_TEST(ini_inline_comments_long_lines_and_errors)
{
	struct err e = ERR_INIT;
	struct ini *ini = NULL;
	struct buf text = BUF_INIT;
	int i;

	buf_adds(&text, "[s3]\nregion = x   ; comment\ntoken = ");
	for (i = 0; i < 3000; i++)
		buf_addch(&text, (char)('a' + i % 26));
	buf_adds(&text, "\n");
	ck_assert_int_eq(ini_parse_string(&ini, "f.conf", text.data, text.len, INI_INLINE_COMMENTS, &e), 0);
	ck_assert_str_eq(ini_get(ini, "s3", "region", ""), "x");
	ck_assert_uint_eq(strlen(ini_get(ini, "s3", "token", "")), 3000);
	ini_free(ini);

	ck_assert_int_eq(ini_parse_string(&ini, "f.conf", "[a]\nx=1\nx=2\n", 12, 0, &e), -1);
	ck_assert_str_eq(e.msg, "f.conf:3: key 'x' given twice in this section");
	err_clear(&e);
	ck_assert_int_eq(ini_parse_string(&ini, "f.conf", "[a]\n\njunk\n", 10, 0, &e), -1);
	ck_assert_str_eq(e.msg, "f.conf:3: expected 'key = value' or '[section]'");
	err_clear(&e);
	ck_assert_int_eq(ini_parse_string(&ini, "f.conf", "[a\n", 3, 0, &e), -1);
	ck_assert_ptr_nonnull(strstr(e.msg, "f.conf:1:"));
	buf_release(&text);
}
END_TEST

START_TEST(ini_sections_compare)
{
	static const char a[] = "[s3]\nendpoint = http://x\nretries = 2\n[jobs]\nworkers = 2\n";
	static const char same[] = "[jobs]\nworkers = 8\n[s3]\nendpoint = http://x\nretries = 2\n";
	static const char changed[] = "[s3]\nendpoint = http://x\nretries = 3\n";
	static const char more[] = "[s3]\nendpoint = http://x\nretries = 2\nregion = r\n";
	struct ini *x = NULL, *y = NULL;
	struct err e = ERR_INIT;

	ck_assert_int_eq(ini_parse_string(&x, "a", a, strlen(a), 0, &e), 0);
	ck_assert_int_eq(ini_parse_string(&y, "b", same, strlen(same), 0, &e), 0);
	ck_assert_int_eq(ini_section_same(x, y, "s3"), 1);
	ck_assert_int_eq(ini_section_same(x, y, "jobs"), 0);
	ck_assert_int_eq(ini_section_same(x, y, "serve"), 1); /* absent from both */
	ini_free(y);
	ck_assert_int_eq(ini_parse_string(&y, "c", changed, strlen(changed), 0, &e), 0);
	ck_assert_int_eq(ini_section_same(x, y, "s3"), 0);
	ck_assert_int_eq(ini_section_same(x, y, "jobs"), 0); /* present in one only */
	ini_free(y);
	ck_assert_int_eq(ini_parse_string(&y, "d", more, strlen(more), 0, &e), 0);
	ck_assert_int_eq(ini_section_same(x, y, "s3"), 0);
	ck_assert_int_eq(ini_section_same(y, x, "s3"), 0);
	ini_free(y);
	ini_free(x);
}
END_TEST

START_TEST(units_parse)
{
	uint64_t v;

	ck_assert_int_eq(units_duration_ms("30s", &v), 0);
	ck_assert_uint_eq(v, 30000);
	ck_assert_int_eq(units_duration_ms("1500ms", &v), 0);
	ck_assert_uint_eq(v, 1500);
	ck_assert_int_eq(units_duration_ms("7d", &v), 0);
	ck_assert_uint_eq(v, 7ULL * 86400000);
	ck_assert_int_eq(units_duration_ms("5", &v), 0);
	ck_assert_uint_eq(v, 5000);
	ck_assert_int_eq(units_duration_ms("5x", &v), -1);
	ck_assert_int_eq(units_duration_ms("-5s", &v), -1);
	ck_assert_int_eq(units_size("1MiB", &v), 0);
	ck_assert_uint_eq(v, 1 << 20);
	ck_assert_int_eq(units_size("64 KiB", &v), 0);
	ck_assert_uint_eq(v, 64 << 10);
	ck_assert_int_eq(units_size("99999999999999999999", &v), -1);
	ck_assert_int_eq(units_size("1 parsec", &v), -1);
}
END_TEST

START_TEST(err_first_wins_and_prefix)
{
	struct err e = ERR_INIT;

	ck_assert_int_eq(err_set(&e, ERR_IO, "cannot open '%s'", "a"), -1);
	err_set(&e, ERR_NET, "later");
	ck_assert_int_eq(e.code, ERR_IO);
	err_prefix(&e, "upload '%s'", "f");
	ck_assert_str_eq(e.msg, "upload 'f': cannot open 'a'");
	ck_assert_str_eq(err_name(e.code), "IO");
}
END_TEST

START_TEST(utf8_lengths)
{
	ck_assert_uint_eq(str_utf8_len("a"), 1);
	ck_assert_uint_eq(str_utf8_len(""), 0);
	ck_assert_uint_eq(str_utf8_len("\xc3\xa9"), 2);	     /* é */
	ck_assert_uint_eq(str_utf8_len("\xe2\x82\xac"), 3);     /* € */
	ck_assert_uint_eq(str_utf8_len("\xf0\x9f\x90\xb1"), 4); /* cat */
	ck_assert_uint_eq(str_utf8_len("\x80"), 0);		     /* stray continuation */
	ck_assert_uint_eq(str_utf8_len("\xc3"), 0);		     /* cut at the end */
	ck_assert_uint_eq(str_utf8_len("\xe2\x82x"), 0);	     /* cut in the middle */
	ck_assert_uint_eq(str_utf8_len("\xc0\xaf"), 0);	     /* overlong '/' */
	ck_assert_uint_eq(str_utf8_len("\xe0\x80\xaf"), 0);     /* overlong '/' */
	ck_assert_uint_eq(str_utf8_len("\xed\xa0\x80"), 0);     /* surrogate */
	ck_assert_uint_eq(str_utf8_len("\xf4\x90\x80\x80"), 0); /* past U+10FFFF */
	ck_assert_uint_eq(str_utf8_len("\xff"), 0);
}
END_TEST

START_TEST(utf8_valid_and_json_quote)
{
	struct buf b = BUF_INIT;

	ck_assert_int_eq(str_utf8_valid("a\xc3\xa9\xf0\x9f\x90\xb1", 7), 1);
	ck_assert_int_eq(str_utf8_valid("", 0), 1);
	ck_assert_int_eq(str_utf8_valid("a\xc3", 2), 0);
	ck_assert_int_eq(str_utf8_valid("a\0b", 3), 0);
	ck_assert_int_eq(str_utf8_valid("\xed\xa0\x80", 3), 0);
	/* Only the first len bytes count: a character cut at len is not valid. */
	ck_assert_int_eq(str_utf8_valid("\xc3\xa9", 1), 0);

	ck_assert_int_eq(str_json_quote(&b, "a\"b\\c\n\r\t\x01\x7f\xc3\xa9/", 13, 1), 0);
	ck_assert_str_eq(b.data, "\"a\\\"b\\\\c\\n\\r\\t\\u0001\\u007f\xc3\xa9/\"");
	buf_reset(&b);
	ck_assert_int_eq(str_json_quote(&b, "x\xffy", 3, 1), -1);
	buf_reset(&b);
	ck_assert_int_eq(str_json_quote(&b, "x\xffy", 3, 0), 0);
	ck_assert_str_eq(b.data, "\"x\xef\xbf\xbdy\"");
	buf_reset(&b);
	ck_assert_int_eq(str_json_quote(&b, "", 0, 1), 0);
	ck_assert_str_eq(b.data, "\"\"");
	buf_release(&b);
}
END_TEST

/* Logs one line with key=KEY through a pipe; returns it (static). */
static const char *log_line(enum log_format fmt, const char *key)
{
	static char line[4096];
	int fds[2];
	ssize_t n;

	ck_assert_int_eq(pipe(fds), 0);
	log_setup(LOG_INFO, fmt, fds[1]);
	log_info("job done", "key=%s n=%d", key, 7);
	log_setup(LOG_INFO, LOG_LOGFMT, 2);
	close(fds[1]);
	n = read(fds[0], line, sizeof(line) - 1);
	close(fds[0]);
	ck_assert_int_gt(n, 0);
	line[n] = '\0';
	return line;
}

/* A key of any bytes leaves every JSON log line valid JSON, and UTF-8 for logfmt. */
START_TEST(log_lines_stay_valid_utf8)
{
	const char *key = "caf\xc3\xa9/\xff\xfe\"x\n\xe2\x82";
	json_error_t jerr;
	json_t *o;
	const char *l;

	l = log_line(LOG_JSON, key);
	o = json_loads(l, 0, &jerr);
	ck_assert_msg(o != NULL, "not JSON: %s (%s)", l, jerr.text);
	ck_assert_str_eq(json_string_value(json_object_get(o, "key")),
			 "caf\xc3\xa9/\xef\xbf\xbd\xef\xbf\xbd\"x\n\xef\xbf\xbd\xef\xbf\xbd");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "n")), 7);
	json_decref(o);
	l = log_line(LOG_LOGFMT, "\xff" "bare");
	ck_assert_msg(strstr(l, " key=\"\xef\xbf\xbd" "bare\""), "%s", l);
	l = log_line(LOG_LOGFMT, "caf\xc3\xa9");
	ck_assert_msg(strstr(l, " key=caf\xc3\xa9 "), "%s", l);
}
END_TEST

static Suite *core_suite(void)
{
	Suite *s = suite_create("core");
	TCase *tc = tcase_create("base");

	tcase_add_test(tc, buf_grows_and_caps);
	tcase_add_test(tc, str_short_escapes_and_shortens);
	tcase_add_test(tc, pct_round_trip);
	tcase_add_test(tc, ini_reads_aws_config_and_comments);
	tcase_add_test(tc, ini_inline_comments_long_lines_and_errors);
	tcase_add_test(tc, ini_sections_compare);
	tcase_add_test(tc, units_parse);
	tcase_add_test(tc, err_first_wins_and_prefix);
	tcase_add_test(tc, utf8_lengths);
	tcase_add_test(tc, utf8_valid_and_json_quote);
	tcase_add_test(tc, log_lines_stay_valid_utf8);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return test_main(core_suite());
}
