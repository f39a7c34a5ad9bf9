/*
 * fuzz_xml: the S3 response parsers of s3/xml.c on arbitrary bytes, as a
 * hostile or broken server could send them: <Error>, ListBucketResult (plain
 * and url-encoded keys), ListPartsResult and s3_xml_find_text().
 *
 * Besides the sanitizers, each result is checked against what xml.h promises:
 * fixed-size fields are terminated, a failure says why, a truncated listing
 * carries its continuation, part numbers are 1 to 10000. A listing is parsed
 * both plain and url-encoded: the second must be the first with every key and
 * prefix decoded (by a reference decoder here), or refused when one of them
 * does not decode to a C string.
 */
#include "core/buf.h"
#include "core/err.h"
#include "s3/client.h"
#include "s3/xml.h"
#include "tests/fuzz/fuzz.h"

#include <libxml/parser.h>

static void terminated(const char *field, size_t size)
{
	FUZZ_ASSERT(memchr(field, '\0', size) != NULL);
}

static void fuzz_error(const char *body, size_t len)
{
	struct s3_xml_error x;

	if (s3_xml_parse_error(body, len, &x) < 0) {
		FUZZ_ASSERT(!x.code[0] && !x.message[0] && !x.request_id[0] && !x.key[0]);
		return;
	}
	terminated(x.code, sizeof(x.code));
	terminated(x.message, sizeof(x.message));
	terminated(x.request_id, sizeof(x.request_id));
	terminated(x.key, sizeof(x.key));
}

static void fuzz_find(const char *body, size_t len)
{
	static const char *const names[] = { "UploadId", "ETag", "Code", "Key", NULL };
	char out[64];
	size_t i;

	for (i = 0; names[i]; i++) {
		memset(out, 'x', sizeof(out));
		if (s3_xml_find_text(body, len, names[i], out, sizeof(out)) == 0)
			terminated(out, sizeof(out));
	}
}

/* Parses a listing and checks what any listing must hold; returns the parser's result. */
static int list(const char *body, size_t len, int url_encoded, struct s3_list_page *page)
{
	struct err e = ERR_INIT;
	size_t i;

	if (s3_xml_parse_list(body, len, url_encoded, page, &e) < 0) {
		FUZZ_ASSERT(e.code == ERR_PARSE);
		fuzz_check_msg(e.msg);
		return -1;
	}
	FUZZ_ASSERT(!err_is_set(&e));
	FUZZ_ASSERT(!page->truncated || (page->next_token && page->next_token[0]));
	for (i = 0; i < page->n_entries; i++) {
		FUZZ_ASSERT(page->entries[i].key != NULL);
		terminated(page->entries[i].etag, sizeof(page->entries[i].etag));
	}
	for (i = 0; i < page->n_prefixes; i++)
		FUZZ_ASSERT(page->prefixes[i] != NULL);
	return 0;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* encoding-type=url as S3 writes it: %XX, '+' for a space; -1 when bad or holding a NUL. */
static int ref_decode(const char *s, struct buf *out)
{
	size_t i, n = strlen(s);

	buf_reset(out);
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			if (n - i < 3 || hexval((unsigned char)s[i + 1]) < 0 ||
			    hexval((unsigned char)s[i + 2]) < 0)
				return -1;
			c = (char)(hexval((unsigned char)s[i + 1]) * 16 +
				   hexval((unsigned char)s[i + 2]));
			i += 2;
		} else if (c == '+') {
			c = ' ';
		}
		if (c == '\0')
			return -1;
		buf_addch(out, c);
	}
	return 0;
}

/* Whether decoding `plain` as url-encoded gives `decoded`; with decoded NULL, whether it fails. */
static int decodes_to(const char *plain, const char *decoded)
{
	struct buf b = BUF_INIT;
	int r = ref_decode(plain, &b);

	r = decoded ? r == 0 && strcmp(b.data, decoded) == 0 : r < 0;
	buf_release(&b);
	return r;
}

/* The url-encoded parse of a listing must be the plain parse with keys and prefixes decoded. */
static void compare_lists(const struct s3_list_page *plain, const struct s3_list_page *enc)
{
	size_t i;

	FUZZ_ASSERT(plain->n_entries == enc->n_entries && plain->n_prefixes == enc->n_prefixes);
	FUZZ_ASSERT(plain->truncated == enc->truncated);
	FUZZ_ASSERT(!plain->next_token == !enc->next_token);
	FUZZ_ASSERT(!plain->next_token || strcmp(plain->next_token, enc->next_token) == 0);
	for (i = 0; i < plain->n_entries; i++) {
		const struct s3_entry *a = &plain->entries[i], *b = &enc->entries[i];
		if (!decodes_to(a->key, b->key))
			fuzz_fail("listed key '%s' was decoded to '%s'", a->key, b->key);
		FUZZ_ASSERT(a->size == b->size && a->last_modified == b->last_modified);
		FUZZ_ASSERT(strcmp(a->etag, b->etag) == 0);
	}
	for (i = 0; i < plain->n_prefixes; i++)
		if (!decodes_to(plain->prefixes[i], enc->prefixes[i]))
			fuzz_fail("listed prefix '%s' was decoded to '%s'", plain->prefixes[i],
				  enc->prefixes[i]);
}

/* Whether some key or prefix of a listing is not valid url-encoding. */
static int some_bad_escape(const struct s3_list_page *page)
{
	size_t i;

	for (i = 0; i < page->n_entries; i++)
		if (decodes_to(page->entries[i].key, NULL))
			return 1;
	for (i = 0; i < page->n_prefixes; i++)
		if (decodes_to(page->prefixes[i], NULL))
			return 1;
	return 0;
}

static void fuzz_lists(const char *body, size_t len)
{
	struct s3_list_page plain = S3_LIST_PAGE_INIT, enc = S3_LIST_PAGE_INIT;
	int rp = list(body, len, 0, &plain), re = list(body, len, 1, &enc);

	if (rp < 0)
		FUZZ_ASSERT(re < 0);
	else if (re == 0)
		compare_lists(&plain, &enc);
	else if (!some_bad_escape(&plain))
		fuzz_fail("the url-encoded listing was refused, yet every key decodes");
	s3_list_page_release(&plain);
	s3_list_page_release(&enc);
}

static void fuzz_parts(const char *body, size_t len)
{
	struct s3_part *parts = NULL;
	size_t n = 0, i;
	unsigned marker = 12345;
	struct err e = ERR_INIT;

	if (s3_xml_parse_parts(body, len, &parts, &n, &marker, &e) < 0) {
		FUZZ_ASSERT(e.code == ERR_PARSE);
		fuzz_check_msg(e.msg);
	} else {
		FUZZ_ASSERT(!err_is_set(&e));
		FUZZ_ASSERT(marker <= 10000);
		for (i = 0; i < n; i++) {
			FUZZ_ASSERT(parts[i].number >= 1 && parts[i].number <= 10000);
			terminated(parts[i].etag, sizeof(parts[i].etag));
		}
	}
	free(parts);
}

/* libxml2 would print each parse error to stderr; the flags already ask it not to. */
static void quiet(void *ctx, const char *msg, ...)
{
	(void)ctx;
	(void)msg;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	xmlInitParser();
	xmlSetGenericErrorFunc(NULL, quiet);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;

	fuzz_error(body, size);
	fuzz_find(body, size);
	fuzz_lists(body, size);
	fuzz_parts(body, size);
	return 0;
}
