/*
 * Tests of the SNS envelope: the string to sign (the documented examples,
 * both versions, all three types), signatures made here with a key and
 * certificate made at test time (good and tampered), the host allow-list,
 * and the certificate cache (the fetch replaced by a counter).
 */
#include "tests/testutil.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/ini.h"
#include "core/log.h"
#include "core/str.h"
#include "triggers/sns.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC	 "arn:aws:sns:us-east-2:123456789012:MyTopic"
#define CERT_URL "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-abc.pem"
#define SUB_URL                                                                           \
	"https://sns.us-east-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" TOPIC \
	"&Token=2336412f37"

/*
 * One key and its self-signed certificates for the whole run (made before
 * the forks): one valid now, one that expired an hour ago.
 */
static EVP_PKEY *key;
static char *cert_pem, *expired_pem;

/* A self-signed certificate of `key`, valid from now + from_s to now + to_s, in PEM. */
static char *make_cert(long from_s, long to_s)
{
	X509 *x = X509_new();
	BIO *bio = BIO_new(BIO_s_mem());
	X509_NAME *name;
	char *p, *pem;
	long n;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), from_s);
	X509_gmtime_adj(X509_getm_notAfter(x), to_s);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"sns.test", -1,
				   -1, 0);
	X509_set_issuer_name(x, name);
	ck_assert_int_gt(X509_sign(x, key, EVP_sha256()), 0);
	PEM_write_bio_X509(bio, x);
	n = BIO_get_mem_data(bio, &p);
	pem = xstrndup(p, (size_t)n);
	BIO_free(bio);
	X509_free(x);
	return pem;
}

static void make_key_and_cert(void)
{
	key = EVP_RSA_gen(2048);
	ck_assert_ptr_nonnull(key);
	cert_pem = make_cert(-60, 3600);
	expired_pem = make_cert(-7200, -3600);
}

static void free_key_and_cert(void)
{
	EVP_PKEY_free(key);
	free(cert_pem);
	free(expired_pem);
}

/* What a test sends: the fields of one envelope (NULL: left out). */
struct spec {
	const char *type;
	int version;
	const char *message;
	const char *subject;
	const char *topic;
	const char *cert_url;
	const char *subscribe_url;
	const char *token;
};

static const struct spec notification = {
	"Notification", 1,    "{\"Records\":[]}", "Amazon S3 Notification", TOPIC, CERT_URL,
	NULL,		NULL,
};

static const struct spec confirmation = {
	"SubscriptionConfirmation",
	2,
	"You have chosen to subscribe.\nVisit the SubscribeURL.",
	NULL,
	TOPIC,
	CERT_URL,
	SUB_URL,
	"2336412f37",
};

/* The string to sign, written out here (not by the code under test). */
static void test_string_to_sign(const struct spec *sp, struct buf *out)
{
	int note = !strcmp(sp->type, "Notification");

	buf_addf(out, "Message\n%s\nMessageId\nid-1\n", sp->message);
	if (note && sp->subject)
		buf_addf(out, "Subject\n%s\n", sp->subject);
	if (!note)
		buf_addf(out, "SubscribeURL\n%s\n", sp->subscribe_url);
	buf_addf(out, "Timestamp\n2019-01-31T04:37:04.321Z\n");
	if (!note)
		buf_addf(out, "Token\n%s\n", sp->token);
	buf_addf(out, "TopicArn\n%s\nType\n%s\n", sp->topic, sp->type);
}

static char *sign(const char *data, size_t len, int version)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sig[1024];
	size_t n = sizeof(sig);
	char *b64 = xcalloc(1, 2048);

	ck_assert_int_eq(
		EVP_DigestSignInit(ctx, NULL, version == 1 ? EVP_sha1() : EVP_sha256(), NULL, key),
		1);
	ck_assert_int_eq(EVP_DigestSign(ctx, sig, &n, (const unsigned char *)data, len), 1);
	EVP_EncodeBlock((unsigned char *)b64, sig, (int)n);
	EVP_MD_CTX_free(ctx);
	return b64;
}

static void set_if(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

/* A signed envelope for sp (the caller frees it). */
static char *envelope(const struct spec *sp)
{
	struct buf tbs = BUF_INIT;
	json_t *o = json_object();
	char version[2] = { (char)('0' + sp->version), 0 }, *sig, *s;

	test_string_to_sign(sp, &tbs);
	sig = sign(tbs.data, tbs.len, sp->version);
	set_if(o, "Type", sp->type);
	set_if(o, "MessageId", "id-1");
	set_if(o, "Token", sp->token);
	set_if(o, "TopicArn", sp->topic);
	set_if(o, "Subject", sp->subject);
	set_if(o, "Message", sp->message);
	set_if(o, "SubscribeURL", sp->subscribe_url);
	set_if(o, "Timestamp", "2019-01-31T04:37:04.321Z");
	set_if(o, "SignatureVersion", version);
	set_if(o, "Signature", sig);
	set_if(o, "SigningCertURL", sp->cert_url);
	s = json_dumps(o, JSON_INDENT(2));
	json_decref(o);
	free(sig);
	buf_release(&tbs);
	return s;
}

/* Replaces the first `from` in s (a JSON text) with `to`, keeping the signature. */
static char *tamper(const char *s, const char *from, const char *to)
{
	const char *p = strstr(s, from);
	struct buf b = BUF_INIT;

	ck_assert_ptr_nonnull(p);
	buf_add(&b, s, (size_t)(p - s));
	buf_adds(&b, to);
	buf_adds(&b, p + strlen(from));
	return buf_detach(&b, NULL);
}

static struct sns_msg parsed(const char *body)
{
	struct sns_msg m = SNS_MSG_INIT;
	struct err e = ERR_INIT;

	if (sns_msg_parse(&m, body, strlen(body), &e) < 0)
		ck_abort_msg("parse: %s", e.msg);
	return m;
}

/* ---- the string to sign ---- */

/* The documented Notification example, with and without a Subject. */
START_TEST(string_to_sign_notification)
{
	struct sns_msg m = SNS_MSG_INIT;
	struct buf b = BUF_INIT;

	m.type = SNS_NOTIFICATION;
	m.message = xstrdup("My Test Message");
	m.message_id = xstrdup("4d4dc071-ddbf-465d-bba8-08f81c89da64");
	m.subject = xstrdup("My subject");
	m.timestamp = xstrdup("2019-01-31T04:37:04.321Z");
	m.topic_arn = xstrdup("arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P");
	sns_string_to_sign(&m, &b);
	ck_assert_str_eq(
		b.data, "Message\nMy Test Message\n"
			"MessageId\n4d4dc071-ddbf-465d-bba8-08f81c89da64\n"
			"Subject\nMy subject\n"
			"Timestamp\n2019-01-31T04:37:04.321Z\n"
			"TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n"
			"Type\nNotification\n");
	free(m.subject);
	m.subject = NULL;
	buf_reset(&b);
	sns_string_to_sign(&m, &b);
	ck_assert_ptr_null(strstr(b.data, "Subject"));
	ck_assert(str_starts_with(b.data, "Message\nMy Test Message\nMessageId\n"));
	ck_assert_ptr_nonnull(strstr(b.data, "\nTimestamp\n"));
	sns_msg_release(&m);
	buf_release(&b);
}
END_TEST

/* The documented confirmation example, for a Type. */
#define WANT(type)                                                                   \
	"Message\nMy Test Message\n"                                                 \
	"MessageId\n3d891288-136d-417f-bc05-901c108273ee\n"                          \
	"SubscribeURL\nhttps://sns.us-east-2.amazonaws.com/"                         \
	"?Action=ConfirmSubscription&Token=233\n"                                    \
	"Timestamp\n2019-01-31T19:25:13.719Z\n"                                      \
	"Token\n233\n"                                                               \
	"TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n" \
	"Type\n" type "\n"

/* The documented SubscriptionConfirmation example; UnsubscribeConfirmation signs the same. */
START_TEST(string_to_sign_confirmations)
{
	struct sns_msg m = SNS_MSG_INIT;
	struct buf b = BUF_INIT;

	m.type = SNS_SUBSCRIPTION_CONFIRMATION;
	m.message = xstrdup("My Test Message");
	m.message_id = xstrdup("3d891288-136d-417f-bc05-901c108273ee");
	m.subscribe_url = xstrdup(
		"https://sns.us-east-2.amazonaws.com/?Action=ConfirmSubscription&Token=233");
	m.timestamp = xstrdup("2019-01-31T19:25:13.719Z");
	m.token = xstrdup("233");
	m.topic_arn = xstrdup("arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P");
	m.subject = xstrdup("never signed in a confirmation");
	sns_string_to_sign(&m, &b);
	ck_assert_str_eq(b.data, WANT("SubscriptionConfirmation"));
	m.type = SNS_UNSUBSCRIBE_CONFIRMATION;
	buf_reset(&b);
	sns_string_to_sign(&m, &b);
	ck_assert_str_eq(b.data, WANT("UnsubscribeConfirmation"));
	sns_msg_release(&m);
	buf_release(&b);
}
END_TEST

/* JSON escapes are undone before signing: "\n" in the JSON is a newline in the string. */
START_TEST(parse_unescapes_and_reads_every_field)
{
	char *body = envelope(&confirmation);
	struct sns_msg m = parsed(body);
	struct err e = ERR_INIT;

	ck_assert_int_eq(m.type, SNS_SUBSCRIPTION_CONFIRMATION);
	ck_assert_int_eq(m.version, 2);
	ck_assert_str_eq(m.message, confirmation.message);
	ck_assert_str_eq(m.subscribe_url, SUB_URL);
	ck_assert_str_eq(m.token, "2336412f37");
	ck_assert_str_eq(m.cert_url, CERT_URL);
	ck_assert_ptr_null(m.subject);
	sns_msg_release(&m);
	free(body);
	ck_assert_int_eq(sns_msg_parse(&m, "[]", 2, &e), -1);
	ck_assert_str_eq(e.msg, "SNS message: not a JSON object");
}
END_TEST

static const struct {
	const char *from, *to, *why;
} bad_envelopes[] = {
	{ "\"Type\": \"Notification\"", "\"Type\": \"Other\"", "'Type' is 'Other'" },
	{ "\"Type\": \"Notification\"", "\"Typo\": \"Notification\"", "'Type' is missing" },
	{ "\"SignatureVersion\": \"1\"", "\"SignatureVersion\": \"3\"", "SignatureVersion" },
	{ "\"SignatureVersion\": \"1\"", "\"SignatureVersion\": 1", "SignatureVersion" },
	{ "\"MessageId\": \"id-1\"", "\"MessageID\": \"id-1\"", "'MessageId' is missing" },
	{ "\"TopicArn\"", "\"TopicArn\": 5, \"x\"", "'TopicArn' is not a string" },
	{ "\"SigningCertURL\"", "\"SigningCertUrl\"", "'SigningCertURL' is missing" },
	{ "\"Timestamp\"", "\"Timestamp\": \"x\", \"Timestamp\"", "duplicate" },
	{ "{", "[{", "" },
};

START_TEST(malformed_envelopes_are_refused)
{
	const char *why = bad_envelopes[_i].why;
	char *good = envelope(&notification);
	char *body = tamper(good, bad_envelopes[_i].from, bad_envelopes[_i].to);
	struct sns_msg m = SNS_MSG_INIT;
	struct err e = ERR_INIT;

	ck_assert_int_eq(sns_msg_parse(&m, body, strlen(body), &e), -1);
	ck_assert_int_eq(e.code, ERR_PARSE);
	ck_assert_msg(strstr(e.msg, why), "%s: %s", why, e.msg);
	ck_assert_ptr_null(m.message);
	free(good);
	free(body);
}
END_TEST

/* ---- signatures ---- */

START_TEST(good_signatures_verify)
{
	struct spec sp[4] = { notification, notification, confirmation, confirmation };
	size_t i;

	sp[1].version = 2;
	sp[1].subject = NULL;
	sp[3].type = "UnsubscribeConfirmation";
	sp[3].version = 1;
	for (i = 0; i < 4; i++) {
		char *body = envelope(&sp[i]);
		struct sns_msg m = parsed(body);
		struct err e = ERR_INIT;
		if (sns_verify_pem(&m, cert_pem, strlen(cert_pem), &e) < 0)
			ck_abort_msg("%s v%d: %s", sp[i].type, sp[i].version, e.msg);
		sns_msg_release(&m);
		free(body);
	}
}
END_TEST

static const struct {
	int confirmation;
	const char *from, *to;
} tampered[] = {
	{ 0, "{\\\"Records\\\":[]}", "{\\\"Records\\\":[ ]}" }, /* the Message */
	{ 0, "Amazon S3 Notification", "Amazon S3 notification" },
	{ 0, "\"Subject\": \"Amazon S3 Notification\",", "" }, /* Subject dropped */
	{ 0, "\"SignatureVersion\": \"1\"", "\"SignatureVersion\": \"2\"" },
	{ 0, "2019-01-31T04", "2019-01-31T05" },
	{ 0, "MyTopic", "MyTopiC" },
	{ 1, "Token\": \"2336412f37\"", "Token\": \"2336412f38\"" },
	{ 1, "Action=ConfirmSubscription", "Action=ConfirmSubscriptioN" },
	{ 1, "\"Type\": \"SubscriptionConfirmation\"", "\"Type\": \"UnsubscribeConfirmation\"" },
};

START_TEST(tampered_messages_do_not_verify)
{
	char *good = envelope(tampered[_i].confirmation ? &confirmation : &notification);
	char *body = tamper(good, tampered[_i].from, tampered[_i].to);
	struct sns_msg m = parsed(body);
	struct err e = ERR_INIT;

	ck_assert_int_eq(sns_verify_pem(&m, cert_pem, strlen(cert_pem), &e), -1);
	ck_assert_int_eq(e.code, ERR_AUTH);
	sns_msg_release(&m);
	free(good);
	free(body);
}
END_TEST

/* A certificate that is not PEM or out of its validity period, or a signature not base64. */
START_TEST(bad_certificate_or_base64_is_an_error)
{
	char *good = envelope(&notification), *body;
	struct sns_msg m = parsed(good);
	struct err e = ERR_INIT;

	ck_assert_int_eq(sns_verify_pem(&m, "not a certificate", 17, &e), -1);
	ck_assert_int_eq(e.code, ERR_PARSE);
	err_clear(&e);
	ck_assert_int_eq(sns_verify_pem(&m, expired_pem, strlen(expired_pem), &e), -1);
	ck_assert_int_eq(e.code, ERR_AUTH);
	ck_assert_msg(strstr(e.msg, "expired"), "%s", e.msg);
	sns_msg_release(&m);
	body = tamper(good, "\"Signature\": \"", "\"Signature\": \"!!");
	m = parsed(body);
	err_clear(&e);
	ck_assert_int_eq(sns_verify_pem(&m, cert_pem, strlen(cert_pem), &e), -1);
	ck_assert_msg(strstr(e.msg, "base64"), "%s", e.msg);
	sns_msg_release(&m);
	free(good);
	free(body);
}
END_TEST

/* ---- hosts ---- */

static const struct {
	const char *url;
	int allowed;
} urls[] = {
	{ "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-1.pem", 1 },
	{ "HTTPS://SNS.US-EAST-2.AMAZONAWS.COM/x.pem", 1 },
	{ "https://sns.us-east-2.amazonaws.com:443/x.pem", 1 },
	{ "https://sns.us-east-2.amazonaws.com?x", 1 },
	{ "https://127.0.0.1:8443/x.pem", 1 }, /* in the extra hosts */
	{ "https://test.sns.local/x.pem", 1 },
	{ "http://sns.us-east-2.amazonaws.com/x.pem", 0 },
	{ "https://sns.us-west-1.amazonaws.com/x.pem", 0 }, /* not the topic's region */
	{ "https://sns.us-east-2.amazonaws.com:8443/x.pem", 0 },
	{ "https://sns.us-east-2.amazonaws.com.evil.com/x.pem", 0 },
	{ "https://evil.com/sns.us-east-2.amazonaws.com/x.pem", 0 },
	{ "https://evil.com#@sns.us-east-2.amazonaws.com/x.pem", 0 },
	{ "https://sns.us-east-2.amazonaws.com@evil.com/x.pem", 0 },
	{ "https://user@sns.us-east-2.amazonaws.com/x.pem", 0 },
	{ "https://sns.us-east-2.amazonaws.com\\@evil.com/x.pem", 0 },
	{ "https://sns.us-east-2.amazonaws.com%2f.evil.com/", 0 },
	{ "https://127.0.0.1:8444/x.pem", 0 },
	{ "https://127.0.0.1/x.pem", 0 },
	{ "https:///x.pem", 0 },
	{ "https://sns.us-east-2.amazonaws.com:/x.pem", 0 },
	{ "", 0 },
};

START_TEST(host_allow_list)
{
	char h1[] = "127.0.0.1:8443", h2[] = "TEST.sns.local", *hosts[] = { h1, h2 };
	size_t i;

	for (i = 0; i < sizeof(urls) / sizeof(urls[0]); i++)
		ck_assert_msg(sns_url_allowed(urls[i].url, TOPIC, hosts, 2) == urls[i].allowed,
			      "%s", urls[i].url);
}
END_TEST

START_TEST(region_comes_from_the_topic)
{
	const char *url = "https://sns.eu-west-1.amazonaws.com/x.pem";
	char host[64];

	ck_assert_int_eq(sns_url_allowed(url, "arn:aws:sns:eu-west-1:1:t", NULL, 0), 1);
	ck_assert_int_eq(sns_url_allowed(url, "arn:aws:sns:eu-west-2:1:t", NULL, 0), 0);
	ck_assert_int_eq(sns_url_allowed(url, "arn:aws:s3:eu-west-1:1:t", NULL, 0), 0);
	ck_assert_int_eq(sns_url_allowed(url, "arn:aws:sns:eu-west-1.amazonaws.com/:1:t", NULL, 0),
			 0);
	ck_assert_int_eq(sns_url_allowed(url, "arn:aws:sns::1:t", NULL, 0), 0);
	ck_assert_str_eq(sns_url_host(SUB_URL, host, sizeof(host)), "sns.us-east-2.amazonaws.com");
	ck_assert_str_eq(sns_url_host("https://a@b/", host, sizeof(host)), "?");
}
END_TEST

/* ---- the verifier: cache, policy, confirmation ---- */

struct fetches {
	int n;
	int fail;
	char last[512];
};

static int fake_fetch(void *arg, const char *url, struct buf *out, struct err *e)
{
	struct fetches *f = arg;

	f->n++;
	str_copy(f->last, sizeof(f->last), url);
	if (f->fail)
		return err_set(e, ERR_NET, "cannot fetch");
	buf_adds(out, cert_pem);
	return 0;
}

/* Configures s with `serve` ([serve] keys, one a line). */
static void configure(struct sns *s, const char *serve)
{
	struct config cfg = CONFIG_INIT;
	struct ini *ini = NULL;
	struct err e = ERR_INIT;
	struct buf text = BUF_INIT;

	buf_addf(&text, "[serve]\n%s\n", serve);
	if (ini_parse_string(&ini, "t.conf", text.data, text.len, 0, &e) < 0 ||
	    config_load(&cfg, ini, &e) < 0)
		ck_abort_msg("config: %s", e.msg);
	sns_configure(s, &cfg);
	config_release(&cfg);
	ini_free(ini);
	buf_release(&text);
}

/* A verifier configured with `serve` and the fake fetch. */
static struct sns *verifier(const char *serve, struct fetches *f)
{
	struct sns *s = sns_new();

	sns_set_fetch(s, fake_fetch, f);
	configure(s, serve);
	return s;
}

static int open_body(struct sns *s, const char *body, struct err *e)
{
	struct sns_msg m = SNS_MSG_INIT;
	int rc = sns_open(s, body, strlen(body), &m, e);

	sns_msg_release(&m);
	return rc;
}

START_TEST(certificate_is_fetched_once_per_url)
{
	struct fetches f = { 0 };
	struct sns *s = verifier("sns_topics = " TOPIC, &f);
	struct spec other = notification;
	char *a = envelope(&notification), *b, *c;
	struct err e = ERR_INIT;

	other.cert_url = "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-new.pem";
	b = envelope(&other);
	c = envelope(&confirmation);
	ck_assert_int_eq(open_body(s, a, &e), 0);
	ck_assert_int_eq(f.n, 1);
	ck_assert_str_eq(f.last, CERT_URL);
	ck_assert_int_eq(open_body(s, a, &e), 0);
	ck_assert_int_eq(open_body(s, c, &e), 0);
	ck_assert_int_eq(f.n, 1);
	ck_assert_int_eq(open_body(s, b, &e), 0);
	ck_assert_int_eq(f.n, 2);
	sns_free(s);
	free(a);
	free(b);
	free(c);
}
END_TEST

START_TEST(failed_fetch_is_remembered_and_reconfigure_clears)
{
	struct fetches f = { .fail = 1 };
	struct sns *s = verifier("sns_topics = " TOPIC, &f);
	char *a = envelope(&notification);
	struct err e = ERR_INIT;

	ck_assert_int_eq(open_body(s, a, &e), -1);
	ck_assert_int_eq(e.code, ERR_NET);
	ck_assert_int_eq(f.n, 1);
	err_clear(&e);
	ck_assert_int_eq(open_body(s, a, &e), -1);
	ck_assert_int_eq(e.code, ERR_NET);
	ck_assert_int_eq(f.n, 1); /* not fetched again within the minute */
	/* A reload empties the cache: the next message fetches again. */
	configure(s, "sns_topics = " TOPIC);
	f.fail = 0;
	ck_assert_int_eq(open_body(s, a, &e), 0);
	ck_assert_int_eq(f.n, 2);
	sns_free(s);
	free(a);
}
END_TEST

/* Nothing is fetched for a topic or host that is not allowed. */
START_TEST(policy_is_checked_before_fetching)
{
	struct fetches f = { 0 };
	struct sns *s = verifier("sns_topics = arn:aws:sns:us-east-2:123456789012:Other*", &f);
	struct spec evil = notification;
	char *a = envelope(&notification), *b, *c;
	struct err e = ERR_INIT;

	ck_assert_int_eq(sns_enabled(s), 1);
	ck_assert_int_eq(open_body(s, a, &e), -1);
	ck_assert_int_eq(e.code, ERR_AUTH);
	ck_assert_msg(strstr(e.msg, "not in sns_topics"), "%s", e.msg);
	evil.topic = "arn:aws:sns:us-east-2:123456789012:OtherTopic";
	b = envelope(&evil);
	evil.cert_url = "https://evil.example.com/SimpleNotificationService-abc.pem";
	c = envelope(&evil);
	err_clear(&e);
	ck_assert_int_eq(open_body(s, c, &e), -1);
	ck_assert_int_eq(e.code, ERR_AUTH);
	ck_assert_msg(strstr(e.msg, "'evil.example.com' is not allowed"), "%s", e.msg);
	ck_assert_int_eq(f.n, 0);
	ck_assert_int_eq(open_body(s, b, &e), 0); /* the glob matches */
	ck_assert_int_eq(f.n, 1);
	sns_free(s);
	free(a);
	free(b);
	free(c);
}
END_TEST

START_TEST(tampered_message_is_refused_by_open)
{
	struct fetches f = { 0 };
	struct sns *s = verifier("sns_topics = " TOPIC, &f);
	char *good = envelope(&notification);
	char *bad = tamper(good, "{\\\"Records\\\":[]}", "{\\\"Records\\\":[{}]}");
	struct err e = ERR_INIT;

	ck_assert_int_eq(open_body(s, bad, &e), -1);
	ck_assert_int_eq(e.code, ERR_AUTH);
	ck_assert_int_eq(open_body(s, good, &e), 0);
	sns_free(s);
	free(good);
	free(bad);
}
END_TEST

START_TEST(no_topics_no_sns)
{
	struct fetches f = { 0 };
	struct sns *s = verifier("", &f);
	char *a = envelope(&notification);
	struct err e = ERR_INIT;

	ck_assert_int_eq(sns_enabled(s), 0);
	ck_assert_int_eq(open_body(s, a, &e), -1);
	ck_assert_int_eq(e.code, ERR_AUTH);
	ck_assert_int_eq(f.n, 0);
	sns_free(s);
	free(a);
}
END_TEST

static int confirm(struct sns *s, const struct spec *sp, struct err *e)
{
	char *body = envelope(sp);
	struct sns_msg m = SNS_MSG_INIT;
	int confirmed = -1;

	if (sns_open(s, body, strlen(body), &m, e) < 0)
		ck_abort_msg("open: %s", e->msg);
	if (sns_confirm(s, &m, &confirmed, e) < 0)
		confirmed = -2;
	sns_msg_release(&m);
	free(body);
	return confirmed;
}

START_TEST(confirmation_only_when_asked_and_allowed)
{
	struct fetches f = { 0 };
	struct sns *off = verifier("sns_topics = " TOPIC, &f);
	struct sns *on = verifier("sns_topics = " TOPIC "\nsns_confirm = true", &f);
	struct spec elsewhere = confirmation;
	struct err e = ERR_INIT;

	log_setup(LOG_OFF, LOG_LOGFMT, 2);
	ck_assert_int_eq(confirm(off, &confirmation, &e), 0);
	ck_assert_int_eq(f.n, 1); /* the certificate only */
	ck_assert_int_eq(confirm(on, &confirmation, &e), 1);
	ck_assert_int_eq(f.n, 3); /* its certificate, then SubscribeURL */
	ck_assert_str_eq(f.last, SUB_URL);
	elsewhere.subscribe_url = "https://evil.example.com/?Action=ConfirmSubscription";
	ck_assert_int_eq(confirm(on, &elsewhere, &e), 0);
	ck_assert_int_eq(f.n, 3);
	elsewhere.subscribe_url = "http://sns.us-east-2.amazonaws.com/?Action=ConfirmSubscription";
	ck_assert_int_eq(confirm(on, &elsewhere, &e), 0);
	ck_assert_int_eq(f.n, 3);
	f.fail = 1;
	ck_assert_int_eq(confirm(on, &confirmation, &e), -2);
	ck_assert_int_eq(e.code, ERR_NET);
	ck_assert_ptr_null(strstr(e.msg, "2336412f37")); /* the token is never in a message */
	sns_free(off);
	sns_free(on);
}
END_TEST

static Suite *sns_suite(void)
{
	Suite *s = suite_create("sns");
	TCase *t = tcase_create("sns");

	tcase_add_unchecked_fixture(t, make_key_and_cert, free_key_and_cert);
	tcase_add_test(t, string_to_sign_notification);
	tcase_add_test(t, string_to_sign_confirmations);
	tcase_add_test(t, parse_unescapes_and_reads_every_field);
	tcase_add_loop_test(t, malformed_envelopes_are_refused, 0,
			    (int)(sizeof(bad_envelopes) / sizeof(bad_envelopes[0])));
	tcase_add_test(t, good_signatures_verify);
	tcase_add_loop_test(t, tampered_messages_do_not_verify, 0,
			    (int)(sizeof(tampered) / sizeof(tampered[0])));
	tcase_add_test(t, bad_certificate_or_base64_is_an_error);
	tcase_add_test(t, host_allow_list);
	tcase_add_test(t, region_comes_from_the_topic);
	tcase_add_test(t, certificate_is_fetched_once_per_url);
	tcase_add_test(t, failed_fetch_is_remembered_and_reconfigure_clears);
	tcase_add_test(t, policy_is_checked_before_fetching);
	tcase_add_test(t, tampered_message_is_refused_by_open);
	tcase_add_test(t, no_topics_no_sns);
	tcase_add_test(t, confirmation_only_when_asked_and_allowed);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return test_main(sns_suite());
}
