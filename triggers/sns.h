/*
 * sns: Amazon SNS HTTP(S) subscriptions, the way real AWS buckets notify
 * (S3 -> SNS topic -> HTTPS subscription -> s3hook).
 *
 * SNS POSTs a JSON envelope (the `x-amz-sns-message-type` header names its
 * Type): a SubscriptionConfirmation when the subscription is made, then one
 * Notification per message published (its `Message` is the S3 event JSON, as
 * a string), and an UnsubscribeConfirmation at the end. Each is signed by SNS:
 * `Signature` is the base64 RSA signature (SignatureVersion 1: SHA1, 2:
 * SHA256) of a string built from named fields in a fixed order, made with the
 * key of the certificate at `SigningCertURL`.
 *
 * An envelope is taken only when (sns_open()):
 *   - its TopicArn matches [serve] sns_topics: a signature proves only that
 *     *some* SNS topic sent it, and anyone can subscribe our URL to theirs;
 *   - SigningCertURL is https on sns.REGION.amazonaws.com (REGION from the
 *     TopicArn) or on a host of [serve] sns_hosts, with nothing else in the
 *     authority (no user, no odd characters that parsers read differently);
 *   - the certificate there (fetched once per URL and cached; a failure is
 *     remembered for a minute) is in its validity period and its key verifies
 *     the signature.
 * A SubscriptionConfirmation is then confirmed (GET SubscribeURL, with the
 * same host rule) only when [serve] sns_confirm is true; otherwise it is
 * logged with the topic and the URL's host, never the URL (it holds the
 * subscription token).
 *
 *	struct sns *s = sns_new();
 *	sns_configure(s, cfg);                  at start and on every reload
 *	struct sns_msg m = SNS_MSG_INIT;
 *	if (sns_open(s, body, len, &m, &e) < 0) ...   ERR_PARSE 400, ERR_AUTH 401, else 503
 *	if (m.type == SNS_NOTIFICATION) event_decode(m.message, strlen(m.message), ...);
 *	else if (m.type == SNS_SUBSCRIPTION_CONFIRMATION) sns_confirm(s, &m, &confirmed, &e);
 *	sns_msg_release(&m);
 *	sns_free(s);
 *
 * Thread-safe: any number of threads may call sns_open() and sns_confirm()
 * at once, and sns_configure() meanwhile. The fetches (certificate,
 * confirmation) block the calling thread up to SNS_FETCH_TIMEOUT_MS.
 */
#ifndef S3HOOK_SNS_H
#define S3HOOK_SNS_H

#include <stddef.h>

struct buf;
struct config;
struct err;
struct sns;

/* The longest a certificate fetch or a confirmation GET may take. */
#define SNS_FETCH_TIMEOUT_MS 10000

enum sns_type {
	SNS_NOTIFICATION,
	SNS_SUBSCRIPTION_CONFIRMATION,
	SNS_UNSUBSCRIBE_CONFIRMATION,
};

/*
 * One envelope, as parsed by sns_msg_parse(). Every string is owned by the
 * message (JSON escapes already undone, as the string to sign needs them);
 * a field the envelope did not have is NULL.
 */
struct sns_msg {
	enum sns_type type;
	int version; /* SignatureVersion: 1 (SHA1) or 2 (SHA256) */
	char *message;
	char *message_id;
	char *subject; /* Notification only, and optional */
	char *subscribe_url;
	char *timestamp;
	char *token;
	char *topic_arn;
	char *signature; /* base64 */
	char *cert_url;	 /* SigningCertURL */
};

#define SNS_MSG_INIT            \
	{                       \
		.message = NULL \
	}

/*
 * Parses an envelope. Fails (ERR_PARSE) unless it is a JSON object whose
 * Type is one of the three, whose SignatureVersion is "1" or "2", and which
 * has (as strings) every field its Type signs, plus Signature and
 * SigningCertURL. `m` must be SNS_MSG_INIT; it is set only on success.
 */
int sns_msg_parse(struct sns_msg *m, const char *body, size_t len, struct err *e);
void sns_msg_release(struct sns_msg *m);

/* "Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation". */
const char *sns_type_name(enum sns_type t);

/*
 * Appends the string SNS signed: "Name\nvalue\n" for each field the Type
 * signs, in byte order of the names. Notification: Message, MessageId,
 * Subject (when present), Timestamp, TopicArn, Type; the confirmations:
 * Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type.
 */
void sns_string_to_sign(const struct sns_msg *m, struct buf *out);

/*
 * Verifies m's signature with the public key of the PEM certificate `pem`
 * (which must be within its validity period). ERR_AUTH when it does not
 * verify, ERR_PARSE when the certificate or the base64 is unreadable.
 */
int sns_verify_pem(const struct sns_msg *m, const char *pem, size_t len, struct err *e);

/*
 * Whether `url` is https on sns.REGION.amazonaws.com (port 443 or none) or
 * on one of `hosts` ("host" or "host:port", ASCII case ignored), REGION
 * being the region of `topic_arn` (arn:aws:sns:REGION:ACCOUNT:NAME). An
 * authority with anything but letters, digits, '.', '-' and one ':port' is
 * refused. 1 when allowed, else 0.
 */
int sns_url_allowed(const char *url, const char *topic_arn, char *const *hosts, size_t n_hosts);

/* The host (and port) of url into out, for logs; "?" when there is none. */
const char *sns_url_host(const char *url, char *out, size_t size);

/* A new verifier with nothing allowed until sns_configure(). */
struct sns *sns_new(void);

/*
 * Takes [serve] sns_topics, sns_confirm, sns_hosts and sns_ca_bundle from
 * cfg (copied) and empties the certificate cache (a host or CA bundle that
 * changed must not keep vouching for what it fetched).
 */
void sns_configure(struct sns *s, const struct config *cfg);

/* Whether sns_topics is non-empty: SNS envelopes are taken at all. */
int sns_enabled(struct sns *s);

/*
 * Parses `body` into *m and checks it as the header comment says. 0: m is
 * an envelope SNS signed for an allowed topic. -1: ERR_PARSE (malformed),
 * ERR_AUTH (topic, host or signature refused), ERR_NET (the certificate
 * could not be fetched: worth a retry). m is set only on success.
 */
int sns_open(struct sns *s, const char *body, size_t len, struct sns_msg *m, struct err *e);

/*
 * Confirms the subscription of a SubscriptionConfirmation that sns_open()
 * took: GET SubscribeURL when sns_confirm is true and the URL's host is
 * allowed (*confirmed = 1 once it answered 2xx), else only logs why not
 * (*confirmed = 0, and 0 is returned). -1 (ERR_NET) when the GET failed.
 */
int sns_confirm(struct sns *s, const struct sns_msg *m, int *confirmed, struct err *e);

/*
 * Replaces the HTTPS GET (certificate and confirmation) with fn, which
 * appends what `url` holds to out (a buf capped at 64 KiB) or fails. For
 * tests, before any other call; NULL restores the real one.
 */
void sns_set_fetch(struct sns *s,
		   int (*fn)(void *arg, const char *url, struct buf *out, struct err *e),
		   void *arg);

void sns_free(struct sns *s);

#endif
