/*
 * fuzz_xml: the S3 response parsers of s3/xml.c on arbitrary bytes, as a
 * hostile or broken server could send them: <Error>, ListBucketResult (plain
 * and url-encoded keys), ListPartsResult and s3_xml_find_text().
 *
 * Besides the sanitizers, each result is checked against what xml.h promises:
 * fixed-size fields are terminated, a failure says why, a truncated listing
 * carries its continuation, part numbers are 1 to 10000, decoded keys are C
 * strings.
 */
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

static void fuzz_list(const char *body, size_t len, int url_encoded)
{
	struct s3_list_page page = S3_LIST_PAGE_INIT;
	struct err e = ERR_INIT;
	size_t i;

	if (s3_xml_parse_list(body, len, url_encoded, &page, &e) < 0) {
		FUZZ_ASSERT(e.code == ERR_PARSE);
		fuzz_check_msg(e.msg);
	} else {
		FUZZ_ASSERT(!err_is_set(&e));
		FUZZ_ASSERT(!page.truncated || (page.next_token && page.next_token[0]));
		for (i = 0; i < page.n_entries; i++) {
			FUZZ_ASSERT(page.entries[i].key != NULL);
			terminated(page.entries[i].etag, sizeof(page.entries[i].etag));
		}
		for (i = 0; i < page.n_prefixes; i++)
			FUZZ_ASSERT(page.prefixes[i] != NULL);
	}
	s3_list_page_release(&page);
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
	fuzz_list(body, size, 0);
	fuzz_list(body, size, 1);
	fuzz_parts(body, size);
	return 0;
}
