#include "triggers/sns.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/event.h"
#include "core/log.h"
#include "core/str.h"

#include <curl/curl.h>
#include <fnmatch.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Certificates kept, by URL. SNS signs with one per region at a time. */
#define CACHE_MAX 16
/* A URL whose fetch failed is not fetched again for this long. */
#define FAIL_HOLD_MS 60000
/* Largest certificate or confirmation answer read. */
#define FETCH_CAP	   (64 * 1024)
#define CONNECT_TIMEOUT_MS 5000
#define HOST_CHARS	   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"
/* A base64 signature longer than this is no RSA signature of up to 8192 bits. */
#define SIG_B64_MAX 1400

struct cert_entry {
	char *url;
	X509 *cert;	   /* NULL: the fetch failed */
	int64_t failed_ms; /* when, for a failed one */
};

struct sns {
	pthread_mutex_t lock; /* everything below but fetch_lock */
	/* One certificate fetch at a time: a burst for one new URL fetches it once. */
	pthread_mutex_t fetch_lock;
	char **topics, **hosts;
	size_t n_topics, n_hosts;
	char *ca_bundle;
	int confirm;
	struct cert_entry cache[CACHE_MAX];
	size_t next; /* the slot the next new entry takes (oldest first) */
	/* Bumped by sns_configure(): a fetch begun before it must not fill the new cache. */
	uint64_t generation;
	int (*fetch)(void *arg, const char *url, struct buf *out, struct err *e);
	void *fetch_arg;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the envelope ---- */

static const char *const type_names[] = {
	[SNS_NOTIFICATION] = "Notification",
	[SNS_SUBSCRIPTION_CONFIRMATION] = "SubscriptionConfirmation",
	[SNS_UNSUBSCRIBE_CONFIRMATION] = "UnsubscribeConfirmation",
};

const char *sns_type_name(enum sns_type t)
{
	return (unsigned)t <= SNS_UNSUBSCRIBE_CONFIRMATION ? type_names[t] : "?";
}

#define M(f)	 offsetof(struct sns_msg, f)
#define TYPE_OFF SIZE_MAX /* "Type" is kept as m->type */

/* Which types a field is signed in (and required by). */
enum { IN_NOTE = 1 << 0, IN_CONF = 1 << 1, OPTIONAL = 1 << 2 };

/* The signed fields, in the byte order of their names: the order of the string to sign. */
static const struct {
	const char *name;
	size_t off;
	unsigned in;
} signed_fields[] = {
	{ "Message", M(message), IN_NOTE | IN_CONF },
	{ "MessageId", M(message_id), IN_NOTE | IN_CONF },
	{ "Subject", M(subject), IN_NOTE | OPTIONAL },
	{ "SubscribeURL", M(subscribe_url), IN_CONF },
	{ "Timestamp", M(timestamp), IN_NOTE | IN_CONF },
	{ "Token", M(token), IN_CONF },
	{ "TopicArn", M(topic_arn), IN_NOTE | IN_CONF },
	{ "Type", TYPE_OFF, IN_NOTE | IN_CONF },
};

/* Fields read besides the signed ones. */
static const struct {
	const char *name;
	size_t off;
} other_fields[] = {
	{ "Signature", M(signature) },
	{ "SigningCertURL", M(cert_url) },
};

#define N_SIGNED      (sizeof(signed_fields) / sizeof(signed_fields[0]))
#define FIELD(m, off) (*(char **)(void *)((char *)(m) + (off)))

static unsigned type_bit(enum sns_type t)
{
	return t == SNS_NOTIFICATION ? IN_NOTE : IN_CONF;
}

/* Copies the string `name` of o into *out; a field absent or null stays NULL. */
static int take_string(json_t *o, const char *name, char **out, struct err *e)
{
	json_t *v = json_object_get(o, name);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return err_set(e, ERR_PARSE, "SNS message: '%s' is not a string", name);
	*out = xstrndup(json_string_value(v), json_string_length(v));
	return 0;
}

static int parse_type(json_t *o, struct sns_msg *m, struct err *e)
{
	const char *t = json_string_value(json_object_get(o, "Type"));
	const char *v = json_string_value(json_object_get(o, "SignatureVersion"));
	size_t i;

	for (i = 0; t && i <= SNS_UNSUBSCRIBE_CONFIRMATION; i++)
		if (!strcmp(t, type_names[i]))
			break;
	if (!t || i > SNS_UNSUBSCRIBE_CONFIRMATION)
		return err_set(e, ERR_PARSE, "SNS message: 'Type' is %s%s%s", t ? "'" : "missing",
			       t ? SHORT(t) : "", t ? "', not a type s3hook knows" : "");
	m->type = (enum sns_type)i;
	if (!v || (strcmp(v, "1") && strcmp(v, "2")))
		return err_set(e, ERR_PARSE,
			       "SNS message: 'SignatureVersion' is not \"1\" or \"2\"");
	m->version = v[0] - '0';
	return 0;
}

/* Reads every field, and checks those its type signs are there. */
static int parse_fields(json_t *o, struct sns_msg *m, struct err *e)
{
	size_t i;

	for (i = 0; i < N_SIGNED; i++) {
		char **f =
			signed_fields[i].off == TYPE_OFF ? NULL : &FIELD(m, signed_fields[i].off);
		unsigned in = signed_fields[i].in;
		if (!f || !(in & type_bit(m->type)))
			continue;
		if (take_string(o, signed_fields[i].name, f, e) < 0)
			return -1;
		if (!*f && !(in & OPTIONAL))
			return err_set(e, ERR_PARSE, "SNS message: '%s' is missing",
				       signed_fields[i].name);
	}
	for (i = 0; i < sizeof(other_fields) / sizeof(other_fields[0]); i++) {
		char **f = &FIELD(m, other_fields[i].off);
		if (take_string(o, other_fields[i].name, f, e) < 0)
			return -1;
		if (!*f)
			return err_set(e, ERR_PARSE, "SNS message: '%s' is missing",
				       other_fields[i].name);
	}
	return 0;
}

int sns_msg_parse(struct sns_msg *m, const char *body, size_t len, struct err *e)
{
	struct sns_msg tmp = SNS_MSG_INIT;
	json_t *o = event_json_object(body, len, e);
	int rc = -1;

	if (!o)
		return err_prefix(e, "SNS message");
	if (parse_type(o, &tmp, e) == 0 && parse_fields(o, &tmp, e) == 0)
		rc = 0;
	json_decref(o);
	if (rc < 0) {
		sns_msg_release(&tmp);
		return -1;
	}
	*m = tmp;
	return 0;
}

void sns_msg_release(struct sns_msg *m)
{
	free(m->message);
	free(m->message_id);
	free(m->subject);
	free(m->subscribe_url);
	free(m->timestamp);
	free(m->token);
	free(m->topic_arn);
	free(m->signature);
	free(m->cert_url);
	memset(m, 0, sizeof(*m));
}

void sns_string_to_sign(const struct sns_msg *m, struct buf *out)
{
	size_t i;

	for (i = 0; i < N_SIGNED; i++) {
		const char *v;
		if (!(signed_fields[i].in & type_bit(m->type)))
			continue;
		v = signed_fields[i].off == TYPE_OFF ? sns_type_name(m->type)
						     : FIELD(m, signed_fields[i].off);
		if (v)
			buf_addf(out, "%s\n%s\n", signed_fields[i].name, v);
	}
}

/* ---- the signature ---- */

/*
 * Decodes base64 into out (size bytes). Every 4 characters give at most 3
 * bytes; the size is checked here, not left to the caller's arithmetic,
 * because an overflow would happen inside OpenSSL, where no sanitizer looks.
 */
static int b64_decode(const char *s, unsigned char *out, size_t size, size_t *n)
{
	EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
	size_t len = strlen(s);
	int a = 0, b = 0, ok;

	if (!ctx)
		abort();
	EVP_DecodeInit(ctx);
	ok = len <= SIG_B64_MAX && (len + 3) / 4 * 3 <= size &&
	     EVP_DecodeUpdate(ctx, out, &a, (const unsigned char *)s, (int)len) >= 0 &&
	     EVP_DecodeFinal(ctx, out + a, &b) == 1;
	EVP_ENCODE_CTX_free(ctx);
	*n = ok ? (size_t)(a + b) : 0;
	return ok && *n ? 0 : -1;
}

/* Whether x is within its validity period now. */
static int cert_current(X509 *x)
{
	return X509_cmp_current_time(X509_get0_notBefore(x)) < 0 &&
	       X509_cmp_current_time(X509_get0_notAfter(x)) > 0;
}

static int verify_cert(const struct sns_msg *m, X509 *x, struct err *e)
{
	unsigned char sig[SIG_B64_MAX];
	struct buf tbs = BUF_INIT;
	EVP_MD_CTX *ctx = NULL;
	size_t n;
	int ok;

	if (b64_decode(m->signature, sig, sizeof(sig), &n) < 0)
		return err_set(e, ERR_PARSE, "SNS message: 'Signature' is not base64");
	if (!cert_current(x))
		return err_set(e, ERR_AUTH, "SNS signing certificate is expired or not yet valid");
	sns_string_to_sign(m, &tbs);
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		abort();
	ok = EVP_DigestVerifyInit(ctx, NULL, m->version == 1 ? EVP_sha1() : EVP_sha256(), NULL,
				  X509_get0_pubkey(x)) == 1 &&
	     EVP_DigestVerify(ctx, sig, n, (const unsigned char *)tbs.data, tbs.len) == 1;
	EVP_MD_CTX_free(ctx);
	buf_release(&tbs);
	ERR_clear_error();
	if (!ok)
		return err_set(e, ERR_AUTH, "SNS message signature does not verify");
	return 0;
}

static X509 *pem_cert(const char *pem, size_t len)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509 *x;

	if (!bio)
		abort();
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	ERR_clear_error();
	return x;
}

int sns_verify_pem(const struct sns_msg *m, const char *pem, size_t len, struct err *e)
{
	X509 *x = len <= FETCH_CAP ? pem_cert(pem, len) : NULL;
	int rc;

	if (!x)
		return err_set(e, ERR_PARSE, "SNS signing certificate is not a PEM certificate");
	rc = verify_cert(m, x, e);
	X509_free(x);
	return rc;
}

/* ---- hosts ---- */

/*
 * The authority of an https URL into out, or -1. Only letters, digits, '.',
 * '-' and one ":digits" pass: nothing a URL parser (libcurl's, which does
 * the fetch) could read as another host.
 */
static int url_authority(const char *url, char *out, size_t size)
{
	size_t n, host, port;
	const char *colon;

	if (!url || strncasecmp(url, "https://", 8))
		return -1;
	url += 8;
	n = strcspn(url, "/?#");
	if (!n || n >= size)
		return -1;
	memcpy(out, url, n);
	out[n] = '\0';
	colon = strchr(out, ':');
	host = colon ? (size_t)(colon - out) : n;
	if (!host || strspn(out, HOST_CHARS) != host)
		return -1;
	if (colon) {
		port = strspn(colon + 1, "0123456789");
		if (!port || port > 5 || colon[1 + port])
			return -1;
	}
	return 0;
}

/* The region of arn:PARTITION:sns:REGION:ACCOUNT:NAME into out, or -1. */
static int arn_region(const char *arn, char *out, size_t size)
{
	const char *p = arn;
	size_t n;

	if (!arn || !str_starts_with(p, "arn:"))
		return -1;
	p = strchr(p + 4, ':');
	if (!p || !str_starts_with(p, ":sns:"))
		return -1;
	p += 5;
	n = strcspn(p, ":");
	if (!n || n >= size || p[n] != ':' ||
	    strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789-") < n)
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

int sns_url_allowed(const char *url, const char *topic_arn, char *const *hosts, size_t n_hosts)
{
	char auth[256], region[64], aws[128];
	size_t i, n;

	if (url_authority(url, auth, sizeof(auth)) < 0)
		return 0;
	for (i = 0; i < n_hosts; i++)
		if (!strcasecmp(auth, hosts[i]))
			return 1;
	if (arn_region(topic_arn, region, sizeof(region)) < 0)
		return 0;
	n = (size_t)snprintf(aws, sizeof(aws), "sns.%s.amazonaws.com", region);
	if (n >= sizeof(aws))
		return 0;
	return !strncasecmp(auth, aws, n) && (!auth[n] || !strcmp(auth + n, ":443"));
}

const char *sns_url_host(const char *url, char *out, size_t size)
{
	if (url_authority(url, out, size) < 0)
		str_copy(out, size, "?");
	return out;
}

/* ---- the verifier ---- */

static void strs_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static char **strs_copy(char *const *v, size_t n)
{
	char **c = xcalloc(n ? n : 1, sizeof(*c));
	size_t i;

	for (i = 0; i < n; i++)
		c[i] = xstrdup(v[i]);
	return c;
}

static size_t take_body(char *p, size_t size, size_t n, void *arg)
{
	return buf_add(arg, p, size * n) < 0 ? 0 : size * n;
}

/* The real fetch: an HTTPS GET, no redirects, bounded in time and size. */
static int curl_fetch(void *arg, const char *url, struct buf *out, struct err *e)
{
	struct sns *s = arg;
	char detail[CURL_ERROR_SIZE] = "", host[256];
	CURL *h = curl_easy_init();
	char *ca;
	long status = 0;
	CURLcode rc;

	if (!h)
		return err_set(e, ERR_NET, "cannot make a libcurl handle");
	pthread_mutex_lock(&s->lock);
	ca = s->ca_bundle ? xstrdup(s->ca_bundle) : NULL;
	pthread_mutex_unlock(&s->lock);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)SNS_FETCH_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "s3hook/" S3HOOK_VERSION);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, take_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, detail);
	if (ca)
		curl_easy_setopt(h, CURLOPT_CAINFO, ca);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	free(ca);
	/* The URL may hold a token (SubscribeURL): messages name its host only. */
	sns_url_host(url, host, sizeof(host));
	if (rc != CURLE_OK)
		return err_set(e, ERR_NET, "cannot fetch from '%s': %s", host,
			       detail[0] ? detail : curl_easy_strerror(rc));
	if (status / 100 != 2)
		return err_set(e, ERR_NET, "'%s' answered %ld", host, status);
	return 0;
}

struct sns *sns_new(void)
{
	struct sns *s = xcalloc(1, sizeof(*s));

	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->fetch_lock, NULL);
	s->topics = strs_copy(NULL, 0);
	s->hosts = strs_copy(NULL, 0);
	s->fetch = curl_fetch;
	s->fetch_arg = s;
	return s;
}

static void cache_clear(struct sns *s)
{
	size_t i;

	for (i = 0; i < CACHE_MAX; i++) {
		free(s->cache[i].url);
		X509_free(s->cache[i].cert);
		memset(&s->cache[i], 0, sizeof(s->cache[i]));
	}
	s->next = 0;
}

void sns_configure(struct sns *s, const struct config *cfg)
{
	char **topics = strs_copy(cfg->sns_topics.v, cfg->sns_topics.n);
	char **hosts = strs_copy(cfg->sns_hosts.v, cfg->sns_hosts.n);
	char *ca = cfg->sns_ca_bundle ? xstrdup(cfg->sns_ca_bundle) : NULL;

	pthread_mutex_lock(&s->lock);
	strs_free(s->topics, s->n_topics);
	strs_free(s->hosts, s->n_hosts);
	free(s->ca_bundle);
	s->topics = topics;
	s->n_topics = cfg->sns_topics.n;
	s->hosts = hosts;
	s->n_hosts = cfg->sns_hosts.n;
	s->ca_bundle = ca;
	s->confirm = cfg->sns_confirm;
	cache_clear(s);
	s->generation++;
	pthread_mutex_unlock(&s->lock);
}

int sns_enabled(struct sns *s)
{
	int on;

	pthread_mutex_lock(&s->lock);
	on = s->n_topics > 0;
	pthread_mutex_unlock(&s->lock);
	return on;
}

void sns_set_fetch(struct sns *s,
		   int (*fn)(void *arg, const char *url, struct buf *out, struct err *e), void *arg)
{
	s->fetch = fn ? fn : curl_fetch;
	s->fetch_arg = fn ? arg : s;
}

void sns_free(struct sns *s)
{
	if (!s)
		return;
	cache_clear(s);
	strs_free(s->topics, s->n_topics);
	strs_free(s->hosts, s->n_hosts);
	free(s->ca_bundle);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->fetch_lock);
	free(s);
}

/* Whether the topic and the certificate's host are allowed (under s->lock). */
static int check_policy(struct sns *s, const struct sns_msg *m, struct err *e)
{
	char host[256];
	size_t i;
	int ok = 0;

	for (i = 0; i < s->n_topics && !ok; i++)
		ok = fnmatch(s->topics[i], m->topic_arn, 0) == 0;
	if (!ok)
		return err_set(e, ERR_AUTH, "SNS topic '%s' is not in sns_topics",
			       SHORT(m->topic_arn));
	if (!sns_url_allowed(m->cert_url, m->topic_arn, s->hosts, s->n_hosts))
		return err_set(e, ERR_AUTH, "SNS SigningCertURL host '%s' is not allowed",
			       sns_url_host(m->cert_url, host, sizeof(host)));
	return 0;
}

/*
 * The cached entry for url (under s->lock): 1 with *x (a reference of the
 * caller's) when a certificate is there, -1 when a fetch failed lately, 0
 * when there is nothing.
 */
static int cache_find(struct sns *s, const char *url, X509 **x)
{
	size_t i;

	for (i = 0; i < CACHE_MAX; i++) {
		struct cert_entry *c = &s->cache[i];
		if (!c->url || strcmp(c->url, url))
			continue;
		if (c->cert) {
			X509_up_ref(c->cert);
			*x = c->cert;
			return 1;
		}
		return now_ms() - c->failed_ms < FAIL_HOLD_MS ? -1 : 0;
	}
	return 0;
}

/* Adds (or replaces) url's entry (under s->lock); takes a reference of x (NULL: failed). */
static void cache_put(struct sns *s, const char *url, X509 *x)
{
	struct cert_entry *c = NULL;
	size_t i;

	for (i = 0; i < CACHE_MAX && !c; i++)
		if (s->cache[i].url && !strcmp(s->cache[i].url, url))
			c = &s->cache[i];
	if (!c) {
		c = &s->cache[s->next];
		s->next = (s->next + 1) % CACHE_MAX;
	}
	free(c->url);
	X509_free(c->cert);
	c->url = xstrdup(url);
	c->cert = x;
	c->failed_ms = now_ms();
	if (x)
		X509_up_ref(x);
}

static int cache_lookup(struct sns *s, const char *url, X509 **x, uint64_t *gen, struct err *e)
{
	int found;

	pthread_mutex_lock(&s->lock);
	found = cache_find(s, url, x);
	*gen = s->generation;
	pthread_mutex_unlock(&s->lock);
	if (found < 0)
		return err_set(e, ERR_NET,
			       "fetching the SNS signing certificate failed less "
			       "than a minute ago");
	return found;
}

/* Fetches url's certificate; remembers the result unless a reconfigure came meanwhile. */
static X509 *fetch_cert(struct sns *s, const char *url, uint64_t gen, struct err *e)
{
	struct buf b = BUF_INIT;
	X509 *x = NULL;
	int rc;

	buf_init_cap(&b, FETCH_CAP);
	rc = s->fetch(s->fetch_arg, url, &b, e);
	if (rc == 0 && !(x = pem_cert(b.data, b.len)))
		err_set(e, ERR_NET, "not a PEM certificate");
	buf_release(&b);
	pthread_mutex_lock(&s->lock);
	if (gen == s->generation)
		cache_put(s, url, x);
	pthread_mutex_unlock(&s->lock);
	if (!x)
		err_prefix(e, "SNS signing certificate");
	return x;
}

/* The certificate at url: from the cache, or fetched (once, whoever else waits for it). */
static X509 *get_cert(struct sns *s, const char *url, struct err *e)
{
	X509 *x = NULL;
	uint64_t gen;
	int found = cache_lookup(s, url, &x, &gen, e);

	if (found)
		return x;
	pthread_mutex_lock(&s->fetch_lock);
	found = cache_lookup(s, url, &x, &gen, e);
	if (!found)
		x = fetch_cert(s, url, gen, e);
	pthread_mutex_unlock(&s->fetch_lock);
	return x;
}

int sns_open(struct sns *s, const char *body, size_t len, struct sns_msg *m, struct err *e)
{
	struct sns_msg tmp = SNS_MSG_INIT;
	X509 *x = NULL;
	int rc;

	if (sns_msg_parse(&tmp, body, len, e) < 0)
		return -1;
	pthread_mutex_lock(&s->lock);
	rc = check_policy(s, &tmp, e);
	pthread_mutex_unlock(&s->lock);
	if (rc == 0 && (x = get_cert(s, tmp.cert_url, e)))
		rc = verify_cert(&tmp, x, e);
	else
		rc = -1;
	X509_free(x);
	if (rc < 0) {
		sns_msg_release(&tmp);
		return -1;
	}
	*m = tmp;
	return 0;
}

int sns_confirm(struct sns *s, const struct sns_msg *m, int *confirmed, struct err *e)
{
	struct buf b = BUF_INIT;
	char host[256];
	int on, allowed, rc;

	*confirmed = 0;
	sns_url_host(m->subscribe_url, host, sizeof(host));
	pthread_mutex_lock(&s->lock);
	on = s->confirm;
	allowed = sns_url_allowed(m->subscribe_url, m->topic_arn, s->hosts, s->n_hosts);
	pthread_mutex_unlock(&s->lock);
	if (!on || !allowed) {
		log_warn("SNS subscription not confirmed", "topic=%s host=%s reason=%s",
			 m->topic_arn, host,
			 !on ? "sns_confirm is false" : "SubscribeURL host not allowed");
		return 0;
	}
	buf_init_cap(&b, FETCH_CAP);
	rc = s->fetch(s->fetch_arg, m->subscribe_url, &b, e);
	buf_release(&b);
	if (rc < 0)
		return err_prefix(e, "confirming the SNS subscription to '%s'",
				  SHORT(m->topic_arn));
	log_info("SNS subscription confirmed", "topic=%s host=%s", m->topic_arn, host);
	*confirmed = 1;
	return 0;
}
