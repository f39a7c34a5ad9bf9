#include "s3/xml.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"
#include "s3/client.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* No network, no entities, no DTD: the body comes from a server, not from us. */
static xmlDocPtr parse(const char *body, size_t len)
{
	if (!body || len == 0 || len > S3_XML_MAX)
		return NULL;
	return xmlReadMemory(body, (int)len, "s3.xml", NULL,
			     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
				     XML_PARSE_NOBLANKS);
}

static int is(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* The text of an element into out (truncated to size); "" when empty. */
static void text_into(const xmlNode *n, char *out, size_t size)
{
	xmlChar *t = xmlNodeGetContent(n);

	snprintf(out, size, "%s", t ? (const char *)t : "");
	xmlFree(t);
}

static int text_is(const xmlNode *n, const char *want)
{
	char s[16];

	text_into(n, s, sizeof(s));
	return strcmp(s, want) == 0;
}

static char *text_dup(const xmlNode *n)
{
	xmlChar *t = xmlNodeGetContent(n);
	char *s = xstrdup(t ? (const char *)t : "");

	xmlFree(t);
	return s;
}

static const xmlNode *child(const xmlNode *n, const char *name)
{
	for (n = n ? n->children : NULL; n; n = n->next)
		if (is(n, name))
			return n;
	return NULL;
}

int s3_xml_parse_error(const char *body, size_t len, struct s3_xml_error *out)
{
	xmlDocPtr doc = parse(body, len);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	int r = -1;

	memset(out, 0, sizeof(*out));
	if (root && is(root, "Error")) {
		const xmlNode *n;
		if ((n = child(root, "Code")))
			text_into(n, out->code, sizeof(out->code));
		if ((n = child(root, "Message")))
			text_into(n, out->message, sizeof(out->message));
		if ((n = child(root, "RequestId")))
			text_into(n, out->request_id, sizeof(out->request_id));
		if ((n = child(root, "Key")))
			text_into(n, out->key, sizeof(out->key));
		r = 0;
	}
	xmlFreeDoc(doc);
	return r;
}

static const xmlNode *find(const xmlNode *n, const char *name)
{
	for (; n; n = n->next) {
		const xmlNode *hit;
		if (is(n, name))
			return n;
		if ((hit = find(n->children, name)))
			return hit;
	}
	return NULL;
}

int s3_xml_find_text(const char *body, size_t len, const char *name, char *out, size_t size)
{
	xmlDocPtr doc = parse(body, len);
	const xmlNode *n = doc ? find(xmlDocGetRootElement(doc), name) : NULL;

	if (n)
		text_into(n, out, size);
	xmlFreeDoc(doc);
	return n ? 0 : -1;
}

/* "2026-11-26T18:24:55.000Z" to a time; 0 when it is not one. */
static time_t parse_time(const xmlNode *n)
{
	char s[64];
	struct tm tm;

	if (!n)
		return 0;
	text_into(n, s, sizeof(s));
	memset(&tm, 0, sizeof(tm));
	if (!strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return timegm(&tm);
}

static void strip_quotes(char *etag)
{
	size_t n = strlen(etag);

	if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') {
		memmove(etag, etag + 1, n - 2);
		etag[n - 2] = '\0';
	}
}

/* A key from the listing, decoded when the server encoded it. */
static int take_key(const xmlNode *n, int url_encoded, char **out, struct err *e)
{
	struct buf dec = BUF_INIT;
	char *raw = text_dup(n);

	if (!url_encoded) {
		*out = raw;
		return 0;
	}
	if (str_pct_decode(&dec, raw, strlen(raw), 1) < 0 || memchr(dec.data, 0, dec.len)) {
		err_set(e, ERR_PARSE, "listing holds a badly encoded key '%s'", SHORT(raw));
		free(raw);
		buf_release(&dec);
		return -1;
	}
	free(raw);
	*out = buf_detach(&dec, NULL);
	return 0;
}

static int add_entry(struct s3_list_page *page, const xmlNode *c, int url_encoded, struct err *e)
{
	struct s3_entry *en;
	const xmlNode *n;
	char size[32];

	page->entries = xrealloc(page->entries, (page->n_entries + 1) * sizeof(*page->entries));
	en = &page->entries[page->n_entries];
	memset(en, 0, sizeof(*en));
	if (!(n = child(c, "Key")) || take_key(n, url_encoded, &en->key, e) < 0)
		return err_set(e, ERR_PARSE, "listing holds an object without a key");
	page->n_entries++;
	if ((n = child(c, "Size"))) {
		text_into(n, size, sizeof(size));
		if (str_to_u64(size, &en->size) < 0)
			return err_set(e, ERR_PARSE, "listing holds a bad size '%s'", SHORT(size));
	}
	if ((n = child(c, "ETag")))
		text_into(n, en->etag, sizeof(en->etag));
	strip_quotes(en->etag);
	en->last_modified = parse_time(child(c, "LastModified"));
	return 0;
}

static int add_prefix(struct s3_list_page *page, const xmlNode *c, int url_encoded,
		      struct err *e)
{
	const xmlNode *n = child(c, "Prefix");
	char *p;

	if (!n || take_key(n, url_encoded, &p, e) < 0)
		return err_set(e, ERR_PARSE, "listing holds a common prefix without a prefix");
	page->prefixes = xrealloc(page->prefixes, (page->n_prefixes + 1) * sizeof(char *));
	page->prefixes[page->n_prefixes++] = p;
	return 0;
}

/* A server may repeat the element: the last one counts, and the first must not leak. */
static void set_token(struct s3_list_page *page, const xmlNode *n)
{
	free(page->next_token);
	page->next_token = text_dup(n);
}

int s3_xml_parse_list(const char *body, size_t len, int url_encoded, struct s3_list_page *page,
		      struct err *e)
{
	xmlDocPtr doc = parse(body, len);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL, *n;
	int r = 0;

	if (!root || !is(root, "ListBucketResult")) {
		xmlFreeDoc(doc);
		return err_set(e, ERR_PARSE, "the listing is not a ListBucketResult document");
	}
	for (n = root->children; n && r == 0; n = n->next) {
		if (is(n, "Contents"))
			r = add_entry(page, n, url_encoded, e);
		else if (is(n, "CommonPrefixes"))
			r = add_prefix(page, n, url_encoded, e);
		else if (is(n, "IsTruncated"))
			page->truncated = text_is(n, "true");
		else if (is(n, "NextContinuationToken"))
			set_token(page, n);
	}
	if (r == 0 && page->truncated && (!page->next_token || !*page->next_token))
		r = err_set(e, ERR_PARSE, "a truncated listing gave no continuation token");
	xmlFreeDoc(doc);
	return r;
}

static int add_part(struct s3_part **parts, size_t *n_parts, const xmlNode *p, struct err *e)
{
	struct s3_part *part;
	const xmlNode *n;
	char num[32] = "", size[32] = "";
	uint64_t v;

	*parts = xrealloc(*parts, (*n_parts + 1) * sizeof(**parts));
	part = &(*parts)[*n_parts];
	memset(part, 0, sizeof(*part));
	if ((n = child(p, "PartNumber")))
		text_into(n, num, sizeof(num));
	if (str_to_u64(num, &v) < 0 || v < 1 || v > 10000)
		return err_set(e, ERR_PARSE, "part listing holds a bad part number '%s'", SHORT(num));
	part->number = (unsigned)v;
	if ((n = child(p, "ETag")))
		text_into(n, part->etag, sizeof(part->etag));
	strip_quotes(part->etag);
	if ((n = child(p, "Size")))
		text_into(n, size, sizeof(size));
	if (str_to_u64(size, &part->size) < 0)
		return err_set(e, ERR_PARSE, "part listing holds a bad size '%s'", SHORT(size));
	(*n_parts)++;
	return 0;
}

int s3_xml_parse_parts(const char *body, size_t len, struct s3_part **parts, size_t *n_parts,
		       unsigned *next_marker, struct err *e)
{
	xmlDocPtr doc = parse(body, len);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL, *n;
	char text[32];
	int truncated = 0, r = 0;
	uint64_t marker = 0;

	*next_marker = 0;
	if (!root || !is(root, "ListPartsResult")) {
		xmlFreeDoc(doc);
		return err_set(e, ERR_PARSE, "the part listing is not a ListPartsResult document");
	}
	for (n = root->children; n && r == 0; n = n->next) {
		if (is(n, "Part")) {
			r = add_part(parts, n_parts, n, e);
		} else if (is(n, "IsTruncated")) {
			truncated = text_is(n, "true");
		} else if (is(n, "NextPartNumberMarker")) {
			text_into(n, text, sizeof(text));
			if (str_to_u64(text, &marker) < 0 || marker > 10000)
				marker = 0;
		}
	}
	if (r == 0 && truncated) {
		if (!marker)
			r = err_set(e, ERR_PARSE, "a truncated part listing gave no next marker");
		*next_marker = (unsigned)marker;
	}
	xmlFreeDoc(doc);
	return r;
}
