/*
 * xml: the S3 response bodies s3hook reads, parsed with libxml2 (no network,
 * no entity expansion, no DTD). Separate from the client so the fuzzers and
 * unit tests can feed them bytes directly.
 */
#ifndef S3HOOK_S3_XML_H
#define S3HOOK_S3_XML_H

#include <stddef.h>

struct err;
struct s3_list_page;
struct s3_part;

/* Largest response body the client keeps in memory for parsing. */
#define S3_XML_MAX (16u << 20)

/* The fields of an <Error> document; "" when absent. */
struct s3_xml_error {
	char code[64];
	char message[256];
	char request_id[128];
	char key[128];
};

/* Parses an <Error> body; -1 when the body is not one. */
int s3_xml_parse_error(const char *body, size_t len, struct s3_xml_error *out);

/* The text of the first element named `name` (any depth), into out; -1 when none. */
int s3_xml_find_text(const char *body, size_t len, const char *name, char *out, size_t size);

/*
 * A ListBucketResult (ListObjectsV2) into page. With `url_encoded` (the
 * request asked for encoding-type=url) keys and prefixes are decoded.
 */
int s3_xml_parse_list(const char *body, size_t len, int url_encoded, struct s3_list_page *page,
		      struct err *e);

/*
 * A ListPartsResult: appends the parts to the array at parts (n_parts long); *next_marker is
 * the next part-number marker, 0 when the listing is complete.
 */
int s3_xml_parse_parts(const char *body, size_t len, struct s3_part **parts, size_t *n_parts,
		       unsigned *next_marker, struct err *e);

#endif
