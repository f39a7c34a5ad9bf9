/*
 * fuzz_sns: the SNS envelope (triggers/sns.h) on arbitrary bytes. Nothing
 * here fetches: sns_open() and sns_confirm() do, so the target calls what
 * they are built from instead.
 *
 * Each input is used three ways:
 *  - as a POST body for sns_msg_parse(), against a reading of the header's
 *    rules done here with jansson (same JSON, same duplicate rule): it
 *    succeeds exactly when the reference does; every field it sets equals
 *    its JSON string (escapes undone, no NUL, so never longer than the body);
 *    a failure is ERR_PARSE with a one-line message and leaves m as it was.
 *    On success the string to sign equals one written here from the header's
 *    list of fields, is the same bytes when made twice and is appended after
 *    what the buffer held; SigningCertURL and SubscribeURL go through the
 *    URL checks below with the message's own TopicArn; the envelope's
 *    Signature never verifies with a key made here, while the same message
 *    signed here with that key verifies, and only with its own version's
 *    digest;
 *  - as the Message of a well-formed Notification: it parses exactly when
 *    the bytes are UTF-8 without NUL, and comes back byte for byte. Mutating
 *    raw bytes inside valid JSON reaches the unescaping far faster than
 *    mutating a whole envelope does;
 *  - as `url \0 topic_arn \0 host \0 host ...` for sns_url_allowed() and
 *    sns_url_host(), against a reference of the header's host rule.
 */
#include "core/buf.h"
#include "core/err.h"
#include "triggers/sns.h"
#include "tests/fuzz/fuzz.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <strings.h>

#define TOPIC	     "arn:aws:sns:us-east-2:123456789012:MyTopic"
#define MAX_HOSTS    16
#define HOST_BYTES   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"
#define REGION_BYTES "abcdefghijklmnopqrstuvwxyz0123456789-"

/* The hosts a test configuration trusts besides SNS's (check_sns.c's, tls.sh's). */
static char default_host1[] = "127.0.0.1:8443", default_host2[] = "TEST.sns.local";
static char *const default_hosts[] = { default_host1, default_host2 };

/* A key and its self-signed certificate, made once: the only signer sns_verify_pem() trusts. */
static EVP_PKEY *key;
static char *cert_pem;
static size_t cert_len;

/* The fields each type signs, in the header's order (sns_string_to_sign()). */
static const char *const note_fields[] = { "Message",	"MessageId", "Subject",
					   "Timestamp", "TopicArn",  "Type" };
static const char *const conf_fields[] = { "Message", "MessageId", "SubscribeURL", "Timestamp",
					   "Token",   "TopicArn",  "Type" };

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- URLs ------------------------------------------------------------------------- */

/*
 * The authority of an https URL (scheme in any case) into auth as the header
 * of sns_url_allowed() has it: letters, digits, '.' and '-', then at most one
 * ':' and digits. -1 when the URL is not https or its authority is not that.
 */
static int ref_authority(const char *url, struct buf *auth)
{
	const char *colon;
	size_t host;

	buf_reset(auth);
	if (!url || strncasecmp(url, "https://", 8) != 0)
		return -1;
	buf_add(auth, url + 8, strcspn(url + 8, "/?#"));
	colon = strchr(auth->data, ':');
	host = colon ? (size_t)(colon - auth->data) : auth->len;
	if (!host || strspn(auth->data, HOST_BYTES) != host)
		return -1;
	if (colon && (!colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1)))
		return -1;
	return 0;
}

/*
 * The REGION of arn:PARTITION:sns:REGION:..., or NULL. `strict` asks for the
 * header's form in full (arn:aws:sns:REGION:ACCOUNT:NAME, REGION in lower
 * case like every AWS region); otherwise any partition and anything after.
 */
static char *ref_region(const char *arn, int strict)
{
	const char *f[6];
	size_t n = 0, len;
	const char *p = arn;

	while (n < N(f)) {
		f[n++] = p;
		p = strchr(p, ':');
		if (!p)
			break;
		p++;
	}
	if (n < (strict ? 6u : 5u) || strncmp(f[0], "arn:", 4) != 0 ||
	    strncmp(f[2], "sns:", 4) != 0)
		return NULL;
	if (strict && strncmp(f[1], "aws:", 4) != 0)
		return NULL;
	len = (size_t)(f[4] - f[3]) - 1;
	if (!len || (strict && strspn(f[3], REGION_BYTES) != len))
		return NULL;
	return strndup(f[3], len);
}

/* Whether auth is sns.REGION.amazonaws.com, ASCII case ignored, with no port or 443. */
static int is_sns_host(const char *auth, const char *region)
{
	struct buf want = BUF_INIT;
	int yes;

	buf_addf(&want, "sns.%s.amazonaws.com", region);
	yes = strncasecmp(auth, want.data, want.len) == 0 &&
	      (!auth[want.len] || strcmp(auth + want.len, ":443") == 0);
	buf_release(&want);
	return yes;
}

static int in_hosts(const char *auth, char *const *hosts, size_t n_hosts)
{
	size_t i;

	for (i = 0; i < n_hosts; i++)
		if (strcasecmp(auth, hosts[i]) == 0)
			return 1;
	return 0;
}

/*
 * An accepted URL is https with a clean authority that is one of hosts, or
 * sns.REGION.amazonaws.com[:443] with REGION the topic's. REGION must be one
 * DNS label: a dotted one would reach other amazonaws.com hosts, such as the
 * bucket "sns.x" at sns.x.s3.amazonaws.com.
 */
static void check_accepted(const char *url, const char *topic, char *const *hosts, size_t n_hosts)
{
	struct buf auth = BUF_INIT;
	char *region;

	if (ref_authority(url, &auth) < 0)
		fuzz_fail("'%s' accepted, but it is not https with a clean authority", url);
	if (in_hosts(auth.data, hosts, n_hosts)) {
		buf_release(&auth);
		return;
	}
	region = topic ? ref_region(topic, 0) : NULL;
	if (!region || strchr(region, '.') || !is_sns_host(auth.data, region))
		fuzz_fail("'%s' accepted for topic '%s', but '%s' is neither a trusted host nor "
			  "the topic's sns.REGION.amazonaws.com",
			  url, topic ? topic : "(none)", auth.data);
	free(region);
	buf_release(&auth);
}

/*
 * A URL the header promises to take must be taken. The code reads an
 * authority of up to 255 bytes (no DNS name is longer than 253) and a port of
 * up to 5 digits; longer ones are left out of this direction.
 */
static void check_refused(const char *url, const char *topic, char *const *hosts, size_t n_hosts)
{
	struct buf auth = BUF_INIT;
	const char *colon;
	char *region = NULL;
	int must = 0;

	if (ref_authority(url, &auth) == 0 && auth.len <= 255) {
		colon = strchr(auth.data, ':');
		if (!colon || strlen(colon + 1) <= 5) {
			region = topic ? ref_region(topic, 1) : NULL;
			must = in_hosts(auth.data, hosts, n_hosts) ||
			       (region && is_sns_host(auth.data, region));
		}
	}
	if (must)
		fuzz_fail("'%s' refused for topic '%s', but the header allows it", url,
			  topic ? topic : "(none)");
	free(region);
	buf_release(&auth);
}

static void check_allowed(const char *url, const char *topic, char *const *hosts, size_t n_hosts)
{
	int r = sns_url_allowed(url, topic, hosts, n_hosts);

	FUZZ_ASSERT(r == 0 || r == 1);
	if (r)
		check_accepted(url, topic, hosts, n_hosts);
	else
		check_refused(url, topic, hosts, n_hosts);
}

/*
 * sns_url_host() into buffers of exactly `size` bytes (so ASan sees a write
 * past one): terminated inside, and either "?" (cut to fit) or the whole
 * authority, which holds nothing of the path or query (a SubscribeURL's
 * token). An authority that fits must come out.
 */
static void check_host(const char *url)
{
	static const size_t sizes[] = { 1, 2, 5, 16, 64, 256, 300 };
	struct buf auth = BUF_INIT;
	int valid = ref_authority(url, &auth) == 0;
	const char *colon = valid ? strchr(auth.data, ':') : NULL;
	size_t i;

	if (colon && strlen(colon + 1) > 5)
		valid = 0;
	for (i = 0; i < N(sizes); i++) {
		char *out = malloc(sizes[i]);
		if (!out)
			abort();
		FUZZ_ASSERT(sns_url_host(url, out, sizes[i]) == out);
		FUZZ_ASSERT(memchr(out, '\0', sizes[i]));
		if (valid && auth.len < sizes[i] && strcmp(out, auth.data) != 0)
			fuzz_fail("host of '%s' into %zu bytes is '%s', not '%s'", url, sizes[i],
				  out, auth.data);
		if (strncmp(out, "?", sizes[i] - 1) != 0 && (!valid || strcmp(out, auth.data) != 0))
			fuzz_fail("host of '%s' into %zu bytes is '%s', not its authority", url,
				  sizes[i], out);
		free(out);
	}
	buf_release(&auth);
}

/* url, topic and hosts as the input gives them, with the defaults where it gives none. */
static void fuzz_urls(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size), *end = s + size, *p;
	char *parts[2 + MAX_HOSTS];
	size_t n = 0;

	for (p = s; n < N(parts); p += strlen(p) + 1) {
		parts[n++] = p;
		if (p + strlen(p) >= end)
			break;
	}
	if (n <= 2) {
		check_allowed(parts[0], n > 1 ? parts[1] : TOPIC, default_hosts, N(default_hosts));
	} else {
		check_allowed(parts[0], parts[1], parts + 2, n - 2);
	}
	check_allowed(parts[0], n > 1 ? parts[1] : TOPIC, NULL, 0);
	check_host(parts[0]);
	free(s);
}

/* ---- the envelope ----------------------------------------------------------------- */

static int msg_is_init(const struct sns_msg *m)
{
	return m->type == 0 && m->version == 0 && !m->message && !m->message_id && !m->subject &&
	       !m->subscribe_url && !m->timestamp && !m->token && !m->topic_arn && !m->signature &&
	       !m->cert_url;
}

static const char *type_of(json_t *o)
{
	const char *t = json_string_value(json_object_get(o, "Type"));

	if (t && (!strcmp(t, "Notification") || !strcmp(t, "SubscriptionConfirmation") ||
		  !strcmp(t, "UnsubscribeConfirmation")))
		return t;
	return NULL;
}

/* Whether jansson's reading of the body is an envelope the header says parses. */
static int ref_parses(json_t *o)
{
	const char *t = type_of(o), *v;
	const char *const *f;
	size_t i, n;
	json_t *x;

	if (!t)
		return 0;
	v = json_string_value(json_object_get(o, "SignatureVersion"));
	if (!v || (strcmp(v, "1") && strcmp(v, "2")))
		return 0;
	f = strcmp(t, "Notification") ? conf_fields : note_fields;
	n = strcmp(t, "Notification") ? N(conf_fields) : N(note_fields);
	for (i = 0; i < n; i++) {
		x = json_object_get(o, f[i]);
		/* Subject is optional: absent or null is no Subject. */
		if (!strcmp(f[i], "Subject") ? x && !json_is_null(x) && !json_is_string(x)
					     : !json_is_string(x))
			return 0;
	}
	return json_is_string(json_object_get(o, "Signature")) &&
	       json_is_string(json_object_get(o, "SigningCertURL"));
}

/*
 * A field sns_msg_parse() set must be the JSON string, whole: same length
 * (so no NUL inside) and bytes, and never longer than the body it came from.
 * `required`: set exactly when the JSON has a string there.
 */
static void check_field(json_t *o, const char *name, const char *got, int required, size_t len)
{
	json_t *v = json_object_get(o, name);

	if (!got) {
		if (required && json_is_string(v))
			fuzz_fail("'%s' is a string in the body but was not set", name);
		return;
	}
	if (!json_is_string(v))
		fuzz_fail("'%s' set to '%s' but is no string in the body", name, got);
	if (strlen(got) != json_string_length(v) ||
	    memcmp(got, json_string_value(v), json_string_length(v)) != 0)
		fuzz_fail("'%s' is '%s', the body's is '%s' (%zu bytes)", name, got,
			  json_string_value(v), json_string_length(v));
	FUZZ_ASSERT(strlen(got) <= len);
}

static void check_fields(json_t *o, const struct sns_msg *m, size_t len)
{
	int note = m->type == SNS_NOTIFICATION;

	FUZZ_ASSERT(strcmp(sns_type_name(m->type), type_of(o)) == 0);
	FUZZ_ASSERT(m->version ==
		    json_string_value(json_object_get(o, "SignatureVersion"))[0] - '0');
	FUZZ_ASSERT(m->message && m->message_id && m->timestamp && m->topic_arn);
	FUZZ_ASSERT(m->signature && m->cert_url);
	FUZZ_ASSERT(note || (m->subscribe_url && m->token));
	if (!note && m->subject)
		fuzz_fail("a %s has a Subject", sns_type_name(m->type));
	check_field(o, "Message", m->message, 1, len);
	check_field(o, "MessageId", m->message_id, 1, len);
	check_field(o, "Subject", m->subject, note, len);
	check_field(o, "SubscribeURL", m->subscribe_url, !note, len);
	check_field(o, "Timestamp", m->timestamp, 1, len);
	check_field(o, "Token", m->token, !note, len);
	check_field(o, "TopicArn", m->topic_arn, 1, len);
	check_field(o, "Signature", m->signature, 1, len);
	check_field(o, "SigningCertURL", m->cert_url, 1, len);
}

/* The string to sign, from the JSON: "Name\nvalue\n" for each field the type signs. */
static void ref_string_to_sign(json_t *o, struct buf *out)
{
	int note = !strcmp(type_of(o), "Notification");
	const char *const *f = note ? note_fields : conf_fields;
	size_t i, n = note ? N(note_fields) : N(conf_fields);
	json_t *v;

	for (i = 0; i < n; i++) {
		v = json_object_get(o, f[i]);
		if (!json_is_string(v))
			continue;
		buf_addf(out, "%s\n", f[i]);
		buf_add(out, json_string_value(v), json_string_length(v));
		buf_addch(out, '\n');
	}
}

static void check_string_to_sign(json_t *o, const struct sns_msg *m)
{
	struct buf a = BUF_INIT, b = BUF_INIT, want = BUF_INIT;
	size_t mlen = strlen(m->message);

	sns_string_to_sign(m, &a);
	buf_adds(&b, "held\n");
	sns_string_to_sign(m, &b);
	if (b.len != 5 + a.len || memcmp(b.data, "held\n", 5) != 0 ||
	    memcmp(b.data + 5, a.data, a.len) != 0)
		fuzz_fail("the string to sign differs the second time:\n%s\n%s", a.data, b.data);
	ref_string_to_sign(o, &want);
	if (a.len != want.len || memcmp(a.data, want.data, a.len) != 0)
		fuzz_fail("string to sign:\n%s\nthe header's:\n%s", a.data, want.data);
	FUZZ_ASSERT(a.len > 8 + mlen && memcmp(a.data, "Message\n", 8) == 0 &&
		    memcmp(a.data + 8, m->message, mlen) == 0 && a.data[8 + mlen] == '\n');
	buf_release(&a);
	buf_release(&b);
	buf_release(&want);
}

/* The base64 signature of data with key, SHA1 (version 1) or SHA256 (2); the caller frees it. */
static char *sign(const char *data, size_t len, int version)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[512];
	size_t n = sizeof(sig);
	char *b64 = malloc(4 * sizeof(sig) / 3 + 4);

	if (!ctx || !b64 ||
	    EVP_DigestSignInit(ctx, NULL, version == 1 ? EVP_sha1() : EVP_sha256(), NULL, key) !=
		    1 ||
	    EVP_DigestSign(ctx, sig, &n, (const unsigned char *)data, len) != 1)
		fuzz_fail("cannot sign");
	EVP_EncodeBlock((unsigned char *)b64, sig, (int)n);
	EVP_MD_CTX_free(ctx);
	return b64;
}

/*
 * The envelope's own signature is not ours, so it must not verify; signed
 * here it must, and with the other version's digest it must not.
 */
static void check_signature(struct sns_msg *m)
{
	struct buf tbs = BUF_INIT;
	struct err e = ERR_INIT;
	char *theirs = m->signature;

	if (sns_verify_pem(m, cert_pem, cert_len, &e) == 0)
		fuzz_fail("signature '%s' verifies with a key made by the fuzzer", m->signature);
	FUZZ_ASSERT(e.code == ERR_AUTH || e.code == ERR_PARSE);
	fuzz_check_msg(e.msg);
	sns_string_to_sign(m, &tbs);
	m->signature = sign(tbs.data, tbs.len, m->version);
	err_clear(&e);
	if (sns_verify_pem(m, cert_pem, cert_len, &e) < 0)
		fuzz_fail("the message signed with our key does not verify: %s", e.msg);
	m->version = 3 - m->version;
	err_clear(&e);
	if (sns_verify_pem(m, cert_pem, cert_len, &e) == 0)
		fuzz_fail("a version %d signature verifies as version %d", 3 - m->version,
			  m->version);
	FUZZ_ASSERT(e.code == ERR_AUTH);
	m->version = 3 - m->version;
	free(m->signature);
	m->signature = theirs;
	buf_release(&tbs);
}

/*
 * Parses body and checks the outcome against the reference. Returns what
 * sns_msg_parse() returned.
 */
static int parse_and_check(const char *body, size_t len)
{
	struct sns_msg m = SNS_MSG_INIT;
	struct err e = ERR_INIT;
	json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	int want = o && json_is_object(o) && ref_parses(o);
	int r = sns_msg_parse(&m, body, len, &e);

	if (r != (want ? 0 : -1))
		fuzz_fail("sns_msg_parse gave %d (%s), the header's rules %d", r, e.msg,
			  want ? 0 : -1);
	if (r < 0) {
		FUZZ_ASSERT(e.code == ERR_PARSE && e.msg[0]);
		/* jansson quotes the byte it choked on: {"Type":<0x01>} (regress-*). */
		fuzz_check_msg(e.msg);
		FUZZ_ASSERT(msg_is_init(&m));
	} else {
		FUZZ_ASSERT(!err_is_set(&e));
		check_fields(o, &m, len);
		check_string_to_sign(o, &m);
		check_allowed(m.cert_url, m.topic_arn, default_hosts, N(default_hosts));
		check_host(m.cert_url);
		if (m.subscribe_url) {
			check_allowed(m.subscribe_url, m.topic_arn, default_hosts,
				      N(default_hosts));
			check_host(m.subscribe_url);
		}
		check_signature(&m);
	}
	sns_msg_release(&m);
	FUZZ_ASSERT(msg_is_init(&m));
	json_decref(o);
	return r;
}

/* ---- the input as the Message of a Notification ----------------------------------- */

static void fuzz_message(const uint8_t *data, size_t size)
{
	struct buf body = BUF_INIT;
	int expect = ref_utf8(data, size) && !memchr(data, 0, size);
	struct sns_msg m = SNS_MSG_INIT;
	struct err e = ERR_INIT;

	buf_adds(&body, "{\"Type\":\"Notification\",\"MessageId\":\"m-1\",\"TopicArn\":\"" TOPIC
			"\",\"Subject\":\"Amazon S3 Notification\",\"Message\":\"");
	json_quote_raw(&body, data, size);
	buf_adds(&body, "\",\"Timestamp\":\"2019-01-31T04:37:04.321Z\",\"SignatureVersion\":\"2\","
			"\"Signature\":\"AAAA\",\"SigningCertURL\":"
			"\"https://sns.us-east-2.amazonaws.com/SimpleNotificationService-a.pem\"}");
	if (parse_and_check(body.data, body.len) != (expect ? 0 : -1))
		fuzz_fail("a Message of %zu bytes, %s UTF-8 without NUL, %s", size,
			  expect ? "" : "not", expect ? "refused" : "taken");
	if (expect) {
		/* Parsed again for the field itself: it is the input, byte for byte. */
		FUZZ_ASSERT(sns_msg_parse(&m, body.data, body.len, &e) == 0);
		FUZZ_ASSERT(strlen(m.message) == size && memcmp(m.message, data, size) == 0);
		sns_msg_release(&m);
	}
	buf_release(&body);
}

/* ---- the target ------------------------------------------------------------------- */

/* A self-signed certificate for key, valid from an hour ago for 30 days, as PEM. */
static void make_cert(void)
{
	X509 *x = X509_new();
	BIO *bio = BIO_new(BIO_s_mem());
	X509_NAME *name;
	char *p;
	long n;

	if (!x || !bio)
		abort();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz.sns", -1,
				   -1, 0);
	X509_set_issuer_name(x, name);
	if (!X509_sign(x, key, EVP_sha256()) || !PEM_write_bio_X509(bio, x))
		abort();
	n = BIO_get_mem_data(bio, &p);
	cert_pem = fuzz_strndup((const uint8_t *)p, (size_t)n);
	cert_len = (size_t)n;
	BIO_free(bio);
	X509_free(x);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* 1024 bits: signing every envelope that parses is the slowest step here. */
	key = EVP_RSA_gen(1024);
	if (!key)
		abort();
	make_cert();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	parse_and_check((const char *)data, size);
	fuzz_message(data, size);
	fuzz_urls(data, size);
	return 0;
}
