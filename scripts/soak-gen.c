/*
 * soak-gen: the load generator of scripts/soak. It POSTs bucket notifications
 * shaped as Ceph RGW sends them (byte for byte the requests tests/notify.py
 * makes) at a steady rate over keep-alive HTTP/1.1 connections to 127.0.0.1,
 * all driven by one epoll loop: notify.py (Python threads) tops out around
 * 1,500 notifications/s on 2 cores and the soak runs at 5,000/s.
 *
 *	soak-gen URL --bucket B --count N [--rate R] [--mix P:W,...] [--dup PCT]
 *		 [--concurrency C] [--retry S] [--ok-log FILE] ...	(--help lists all)
 *
 * Send s (from 0) is due at start + s / R. A send that finds every connection
 * busy waits for the next free one, so after a stall (a server restart) the
 * connections catch up as fast as the server answers, as notify.py's threads
 * do; the rate is never exceeded otherwise. Notification i has the key PREFIX
 * + i and the sequencer and event id of i + 1. Failures are retried as
 * notify.py retries them: any attempt not answered 200 (refused, reset, no
 * answer within 10 s, or a non-200 status) is made again 50 ms later, on any
 * connection, until --retry seconds have passed since the first. Only a 200
 * puts the key in --ok-log.
 *
 * Built by scripts/soak with plain cc; it links nothing but libc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S	  1000000000LL
#define NS_PER_MS	  1000000LL
#define RETRY_PAUSE_NS	  (50 * NS_PER_MS)  /* notify.py sleeps 0.05 s between attempts */
#define ANSWER_TIMEOUT_NS (10 * NS_PER_S)   /* notify.py's socket timeout */
#define TICK_NS		  (100 * NS_PER_MS) /* the longest sleep; timeouts are checked as often */
#define RECENT		  1024		    /* half the duplicates re-send one of the last RECENT */
#define HEAD_MAX	  16384		    /* a response head longer than this is refused */
#define SBUF_MAX	  (4u << 20)
#define WHEEL_MAX	  (1u << 20)
#define PREFIX_MAX	  255
#define CONN_MAX	  4096
#define EVENTS_MAX	  64

/* notify.py's record() as json.dumps writes it (", " and ": " separators, keys in order). */
#define BODY_FMT                                                                            \
	"{\"Records\": [{\"eventVersion\": \"2.2\", \"eventSource\": \"ceph:s3\", "         \
	"\"awsRegion\": \"\", \"eventTime\": \"2026-11-26T18:00:00.000000Z\", "             \
	"\"eventName\": \"%s\", \"userIdentity\": {\"principalId\": \"tester\"}, "          \
	"\"requestParameters\": {\"sourceIPAddress\": \"\"}, \"responseElements\": {}, "    \
	"\"s3\": {\"s3SchemaVersion\": \"1.0\", \"configurationId\": \"t\", "               \
	"\"bucket\": {\"name\": \"%s\", \"ownerIdentity\": {\"principalId\": \"tester\"}, " \
	"\"arn\": \"arn:aws:s3:::%s\", \"id\": \"x\"}, "                                    \
	"\"object\": {\"key\": \"%s%0*" PRIu64 "\", \"size\": 0, \"eTag\": \"%s\", "        \
	"\"versionId\": \"\", \"sequencer\": \"%016" PRIX64 "\", \"metadata\": [], "        \
	"\"tags\": []}}, \"eventId\": \"%" PRIu64 ".%" PRIu64 "\", \"opaqueData\": \"\"}]}"

/* The headers http.client sends for notify.py, in its order, then ours (a token), then the body. */
#define HEAD_FMT                                                                               \
	"POST %s HTTP/1.1\r\nHost: %s\r\nAccept-Encoding: identity\r\nContent-Length: %zu\r\n" \
	"Content-Type: application/json\r\n%s\r\n"

static volatile sig_atomic_t stop_signal;

static int error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "soak-gen: MESSAGE" and returns -1, like git's error(). */
static int error(const char *fmt, ...)
{
	va_list ap;

	fputs("soak-gen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* A growable string, NUL-terminated once anything was added, never longer than SBUF_MAX. */
struct sbuf {
	char *p;
	size_t len, cap;
};
#define SBUF_INIT { .p = NULL }

static int sbuf_grow(struct sbuf *b, size_t extra)
{
	size_t cap = b->cap ? b->cap : 1024;
	char *p;

	if (extra >= SBUF_MAX - b->len)
		return error("a request would be longer than %u bytes", SBUF_MAX);
	if (b->len + extra < b->cap)
		return 0;
	while (cap <= b->len + extra)
		cap *= 2;
	if (!(p = realloc(b->p, cap)))
		return error("out of memory");
	b->p = p;
	b->cap = cap;
	return 0;
}

static int sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (sbuf_grow(b, n) < 0)
		return -1;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int sbuf_addf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int sbuf_addf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return error("cannot format a request: %s", strerror(errno));
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return 0;
		}
		if (sbuf_grow(b, (size_t)n) < 0)
			return -1;
	}
}

static void sbuf_release(struct sbuf *b)
{
	free(b->p);
	*b = (struct sbuf)SBUF_INIT;
}

/*
 * Appends s as json.dumps writes it. Bytes above 0x7f are refused: json.dumps
 * would write them as \u escapes of the decoded text, which no test needs.
 */
static int json_escape(struct sbuf *b, const char *what, const char *s)
{
	static const char *const named[0x20] = {
		['\b'] = "\\b", ['\f'] = "\\f", ['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t"
	};
	const char *p;
	int r = sbuf_add(b, "", 0);

	for (p = s; *p && r == 0; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch > 0x7f)
			return error("%s '%s' is not ASCII", what, s);
		if (ch == '"' || ch == '\\')
			r = sbuf_addf(b, "\\%c", ch);
		else if (ch < 0x20)
			r = named[ch] ? sbuf_addf(b, "%s", named[ch]) : sbuf_addf(b, "\\u%04x", ch);
		else
			r = sbuf_add(b, p, 1);
	}
	return r;
}

struct opts {
	const char *url, *bucket, *mix, *prefix, *event, *etag, *token, *ok_log;
	uint64_t count;
	double rate, dup, retry;
	unsigned concurrency;
};
#define OPTS_INIT { .prefix = "k/", .event = "ObjectRemoved:Delete", .etag = "", .concurrency = 16 }

static void usage(FILE *f)
{
	fputs("usage: soak-gen URL --bucket B --count N [options]\n"
	      "\n"
	      "POSTs N bucket notifications shaped as Ceph RGW sends them (the requests\n"
	      "of tests/notify.py) to URL, http://127.0.0.1:PORT/[PATH][?token=T], over\n"
	      "keep-alive HTTP/1.1 connections.\n"
	      "\n"
	      "  --bucket B       the bucket of every record (required)\n"
	      "  --count N        notifications to send, re-sends included (required)\n"
	      "  --rate R         notifications per second (default 0: flat out)\n"
	      "  --mix P:W,...    key prefixes by weight, spread evenly, e.g.\n"
	      "                   skip/:70,count/:25,fail/:5; a key is P and %08d\n"
	      "  --prefix P       without --mix, a key is P and %06d (default k/)\n"
	      "  --dup PCT        this share of the sends re-sends an acknowledged\n"
	      "                   notification byte for byte (half of them one of the\n"
	      "                   last 1024); not logged again\n"
	      "  --event NAME     the eventName (default ObjectRemoved:Delete)\n"
	      "  --etag E         the eTag (default empty)\n"
	      "  --token T        also send \"Authorization: Bearer T\"\n"
	      "  --concurrency C  connections (default 16)\n"
	      "  --retry S        seconds to keep re-sending a notification not answered\n"
	      "                   200, 50 ms apart (default 0: never); after S seconds\n"
	      "                   without a connection, all that is left fails\n"
	      "  --ok-log FILE    append the key of each notification answered 200\n"
	      "                   (buffered, written at exit)\n"
	      "  --help           this text\n"
	      "\n"
	      "Send s is due at start + s / R; behind schedule (a server restart), sends\n"
	      "go out as fast as connections free up until it has caught up. Prints one\n"
	      "line: ok=ACKNOWLEDGED failed=GIVEN_UP dup_ok= sent= retried= no_answer=\n"
	      "connect_failed= non200=STATUS:N,... rate=ACHIEVED/s (of first attempts)\n"
	      "target= lag_max_ms= seconds= cpu=. Exits 1 when a notification was\n"
	      "given up on or the rate achieved was more than 10% short of R.\n",
	      f);
}

static int parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (!*s || *end || *s == '-' || errno || v > max)
		return error("%s '%s': not a whole number up to %" PRIu64, opt, s, max);
	*out = v;
	return 0;
}

static int parse_double(const char *opt, const char *s, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (!*s || *end || errno || !(v >= 0 && v <= max))
		return error("%s '%s': not a number from 0 to %g", opt, s, max);
	*out = v;
	return 0;
}

static int opts_set(struct opts *o, int opt, const char *arg)
{
	uint64_t n;

	switch (opt) {
	case 'b':
		o->bucket = arg;
		return 0;
	case 'm':
		o->mix = arg;
		return 0;
	case 'p':
		o->prefix = arg;
		return 0;
	case 'e':
		o->event = arg;
		return 0;
	case 'E':
		o->etag = arg;
		return 0;
	case 't':
		o->token = arg;
		return 0;
	case 'o':
		o->ok_log = arg;
		return 0;
	case 'n':
		return parse_u64("--count", arg, UINT32_MAX, &o->count);
	case 'r':
		return parse_double("--rate", arg, 1e7, &o->rate);
	case 'd':
		return parse_double("--dup", arg, 99, &o->dup);
	case 'R':
		return parse_double("--retry", arg, 86400, &o->retry);
	case 'c':
		if (parse_u64("--concurrency", arg, CONN_MAX, &n) < 0)
			return -1;
		if (n == 0)
			return error("--concurrency must be at least 1");
		o->concurrency = (unsigned)n;
		return 0;
	}
	return error("unknown option (try --help)");
}

/* Returns 0 to run, 1 after --help, -1 on a usage error. */
static int opts_parse(struct opts *o, int argc, char **argv)
{
	static const struct option longs[] = {
		{ "bucket", 1, NULL, 'b' }, { "count", 1, NULL, 'n' },
		{ "rate", 1, NULL, 'r' },   { "mix", 1, NULL, 'm' },
		{ "prefix", 1, NULL, 'p' }, { "dup", 1, NULL, 'd' },
		{ "event", 1, NULL, 'e' },  { "etag", 1, NULL, 'E' },
		{ "token", 1, NULL, 't' },  { "concurrency", 1, NULL, 'c' },
		{ "retry", 1, NULL, 'R' },  { "ok-log", 1, NULL, 'o' },
		{ "help", 0, NULL, 'h' },   { NULL, 0, NULL, 0 }
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			return 1;
		}
		if (opt == '?' || opts_set(o, opt, optarg) < 0)
			return -1;
	}
	if (optind != argc - 1)
		return error("one URL expected (try --help)");
	o->url = argv[optind];
	if (!o->bucket || !o->count)
		return error("--bucket and --count are required (try --help)");
	return 0;
}

/* Where the requests go: an http:// URL with a numeric IPv4 host. */
struct target {
	struct sockaddr_in addr;
	struct sbuf host; /* the Host header as http.client writes it: no port when it is 80 */
	struct sbuf path; /* path and query; "/" when the URL has no path */
};

static int target_parse(struct target *t, const char *url)
{
	const char *host = url + strlen("http://"), *end, *colon;
	uint64_t port = 80;
	char ip[INET_ADDRSTRLEN];

	if (strncmp(url, "http://", 7))
		return error("URL '%s': only http:// is supported", url);
	end = host + strcspn(host, "/?#");
	colon = memchr(host, ':', (size_t)(end - host));
	if (!colon)
		colon = end;
	if ((size_t)(colon - host) >= sizeof(ip))
		return error("URL '%s': the host must be an IPv4 address", url);
	memcpy(ip, host, (size_t)(colon - host));
	ip[colon - host] = '\0';
	t->addr.sin_family = AF_INET;
	if (inet_pton(AF_INET, ip, &t->addr.sin_addr) != 1)
		return error("URL '%s': the host must be an IPv4 address", url);
	if (colon < end) {
		char num[8] = "";

		if (end - colon > 6)
			return error("URL '%s': bad port", url);
		memcpy(num, colon + 1, (size_t)(end - colon - 1));
		if (parse_u64("port", num, 65535, &port) < 0 || port == 0)
			return -1;
	}
	t->addr.sin_port = htons((uint16_t)port);
	if (port == 80 ? sbuf_addf(&t->host, "%s", ip)
		       : sbuf_addf(&t->host, "%s:%u", ip, (unsigned)port))
		return -1;
	return sbuf_addf(&t->path, "%s%.*s", *end == '/' ? "" : "/", (int)strcspn(end, "#"), end);
}

/*
 * The key prefixes and the wheel that spreads them: notification i gets
 * prefix wheel[i % len]. The wheel is made by smooth weighted round-robin, so
 * count/ events come evenly (not 100 in a row once a second, as notify.py's
 * blocks of each prefix would at 5,000/s).
 */
struct mix {
	size_t n;
	char *raw[PREFIX_MAX];	     /* as in --ok-log */
	struct sbuf esc[PREFIX_MAX]; /* as in the body */
	uint64_t weight[PREFIX_MAX];
	unsigned char *wheel;
	size_t len;
	int width; /* digits of the key number: %08d with --mix, %06d without, as notify.py */
};

static int mix_add(struct mix *m, const char *prefix, size_t len, uint64_t weight)
{
	if (m->n == PREFIX_MAX)
		return error("--mix: more than %d prefixes", PREFIX_MAX);
	if (!(m->raw[m->n] = strndup(prefix, len)))
		return error("out of memory");
	m->weight[m->n] = weight;
	m->n++;
	return json_escape(&m->esc[m->n - 1], "prefix", m->raw[m->n - 1]);
}

/* Parses "P:W,P:W,...", splitting each part at its last ':' as notify.py does. */
static int mix_parse(struct mix *m, const char *spec)
{
	const char *part = spec;

	for (;;) {
		size_t len = strcspn(part, ",");
		const char *colon = memrchr(part, ':', len);
		char num[24] = "";
		uint64_t w;

		if (!colon || (size_t)(part + len - colon) >= sizeof(num))
			return error("--mix '%s': each part is PREFIX:WEIGHT", spec);
		memcpy(num, colon + 1, (size_t)(part + len - colon - 1));
		if (parse_u64("--mix weight", num, WHEEL_MAX, &w) < 0 ||
		    mix_add(m, part, (size_t)(colon - part), w) < 0)
			return -1;
		if (!part[len])
			return 0;
		part += len + 1;
	}
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

static int mix_wheel(struct mix *m)
{
	int64_t cur[PREFIX_MAX] = { 0 };
	uint64_t g = 0, total = 0;
	size_t i, j;

	for (j = 0; j < m->n; j++)
		g = gcd(g, m->weight[j]);
	for (j = 0; g && j < m->n; j++)
		total += (m->weight[j] /= g);
	if (total == 0 || total > WHEEL_MAX)
		return error(
			"--mix: the weights must add up to 1..%u (after dividing by their gcd)",
			WHEEL_MAX);
	if (!(m->wheel = malloc(total)))
		return error("out of memory");
	for (m->len = 0; m->len < total; m->len++) {
		for (i = 0, j = 0; j < m->n; j++)
			if ((cur[j] += (int64_t)m->weight[j]) > cur[i])
				i = j;
		cur[i] -= (int64_t)total;
		m->wheel[m->len] = (unsigned char)i;
	}
	return 0;
}

static int mix_init(struct mix *m, const struct opts *o)
{
	m->width = o->mix ? 8 : 6;
	if (o->mix ? mix_parse(m, o->mix) : mix_add(m, o->prefix, strlen(o->prefix), 1))
		return -1;
	return mix_wheel(m);
}

static void mix_release(struct mix *m)
{
	size_t i;

	for (i = 0; i < m->n; i++) {
		free(m->raw[i]);
		sbuf_release(&m->esc[i]);
	}
	free(m->wheel);
}

/* One notification on its way: its number, and how long its sender keeps trying. */
struct notif {
	uint64_t idx;
	int dup;	    /* a re-send of an acknowledged one: not logged again */
	int64_t deadline;   /* a failure after this gives up (first attempt + --retry) */
	int64_t not_before; /* in the retry queue: the 50 ms pause after a failure */
};

/* Failed attempts waiting for their pause to end; FIFO, so the head is due first. */
struct retryq {
	struct notif *v;
	size_t head, len, cap;
};

static int retryq_push(struct retryq *q, const struct notif *n)
{
	if (q->len == q->cap) {
		size_t cap = q->cap ? 2 * q->cap : 64, i;
		struct notif *v = malloc(cap * sizeof(*v));

		if (!v)
			return error("out of memory");
		for (i = 0; i < q->len; i++)
			v[i] = q->v[(q->head + i) % q->cap];
		free(q->v);
		q->v = v;
		q->cap = cap;
		q->head = 0;
	}
	q->v[(q->head + q->len++) % q->cap] = *n;
	return 0;
}

static struct notif retryq_pop(struct retryq *q)
{
	struct notif n = q->v[q->head];

	q->head = (q->head + 1) % q->cap;
	q->len--;
	return n;
}

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_IDLE, CONN_BUSY, CONN_N };

/* One keep-alive connection, with at most one request on it (no pipelining, as http.client). */
struct conn {
	int fd;
	enum conn_state state;
	int queued;	  /* in the idle ring */
	int want_out;	  /* EPOLLOUT asked for: the request did not fit the socket buffer */
	int64_t since;	  /* CONNECTING, BUSY: when that began, for the timeouts */
	int64_t wake;	  /* DOWN: when to connect again */
	struct notif req; /* BUSY */
	struct sbuf out;
	size_t out_off;
	char in[HEAD_MAX];
	size_t in_len;
	int64_t body_left; /* -1 while the head is incomplete */
	int status, close_after, until_close;
};

struct stats {
	uint64_t sent, ok, dup_ok, failed, retried, no_answer, connect_failures;
	uint64_t status[600];
	int64_t lag_max;
};

struct gen {
	const struct opts *o;
	struct target t;
	struct mix mix;
	struct sbuf event, bucket, etag, auth, body;
	struct conn *conns;
	unsigned n_state[CONN_N];
	unsigned *ring; /* idle connections, FIFO so that all of them share the work */
	unsigned ring_head, ring_len;
	struct retryq rq;
	uint64_t *acked; /* a bit per notification number */
	uint64_t n_fresh, n_dups, rnd;
	int64_t start, end, last_send, retry_ns, last_up, next_tick;
	int failing_since_up, connect_errno, fatal, ep;
	FILE *log;
	struct stats st;
};

static int64_t slot_due(const struct gen *g, uint64_t s)
{
	return g->o->rate > 0 ? g->start + (int64_t)((double)s * 1e9 / g->o->rate) : g->start;
}

/* Whether send s re-sends: --dup PCT spreads evenly, every (100 / PCT)th send. */
static int slot_is_dup(const struct gen *g, uint64_t s)
{
	double f = g->o->dup / 100;

	return (uint64_t)((double)(s + 1) * f) > (uint64_t)((double)s * f);
}

static uint64_t rnd_next(struct gen *g)
{
	g->rnd ^= g->rnd >> 12;
	g->rnd ^= g->rnd << 25;
	g->rnd ^= g->rnd >> 27;
	return g->rnd * 2685821657736338717ULL;
}

static int is_acked(const struct gen *g, uint64_t i)
{
	return (g->acked[i / 64] >> (i % 64)) & 1;
}

/*
 * Picks an acknowledged notification to send again: every other one among
 * the last RECENT (their jobs may still be pending or running), the rest
 * among all so far (long done). Returns 0 when a few tries found none.
 */
static int pick_dup(struct gen *g, uint64_t *idx)
{
	uint64_t lo = 0, tries;

	if (g->st.ok == 0)
		return 0;
	if (g->n_dups % 2 == 0 && g->n_fresh > RECENT)
		lo = g->n_fresh - RECENT;
	for (tries = 0; tries < 16; tries++) {
		*idx = lo + rnd_next(g) % (g->n_fresh - lo);
		if (is_acked(g, *idx))
			return 1;
	}
	return 0;
}

static void conn_set_state(struct gen *g, struct conn *c, enum conn_state s)
{
	g->n_state[c->state]--;
	g->n_state[s]++;
	c->state = s;
	if (s == CONN_IDLE && !c->queued) {
		g->ring[(g->ring_head + g->ring_len++) % g->o->concurrency] =
			(unsigned)(c - g->conns);
		c->queued = 1;
	}
}

static struct conn *idle_pop(struct gen *g)
{
	while (g->ring_len) {
		struct conn *c = &g->conns[g->ring[g->ring_head]];

		g->ring_head = (g->ring_head + 1) % g->o->concurrency;
		g->ring_len--;
		c->queued = 0;
		if (c->state == CONN_IDLE)
			return c;
	}
	return NULL;
}

static void conn_watch(struct gen *g, struct conn *c, int op, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (epoll_ctl(g->ep, op, c->fd, &ev) < 0)
		g->fatal = error("epoll_ctl: %s", strerror(errno));
}

/* Closes c; it connects again at wake. */
static void conn_close(struct gen *g, struct conn *c, int64_t wake)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->want_out = 0;
	c->wake = wake;
	conn_set_state(g, c, CONN_DOWN);
}

static void log_key(struct gen *g, uint64_t idx)
{
	const struct mix *m = &g->mix;

	if (g->log)
		fprintf(g->log, "%s%0*" PRIu64 "\n", m->raw[m->wheel[idx % m->len]], m->width, idx);
}

static void attempt_failed(struct gen *g, struct notif *n, int64_t now)
{
	if (now >= n->deadline) {
		g->st.failed++;
		return;
	}
	n->not_before = now + RETRY_PAUSE_NS;
	if (retryq_push(&g->rq, n) < 0)
		g->fatal = -1;
}

static void answered(struct gen *g, struct notif *n, int status, int64_t now)
{
	if (status != 200) {
		g->st.status[status]++;
		attempt_failed(g, n, now);
	} else if (n->dup) {
		g->st.dup_ok++;
	} else {
		g->st.ok++;
		g->acked[n->idx / 64] |= 1ULL << (n->idx % 64);
		log_key(g, n->idx);
	}
}

/*
 * The connection failed (err is for the give-up message). A request on it
 * had no answer: it is retried, never counted as acknowledged. A connection
 * that worked is made again at once; a failed connect waits 50 ms.
 */
static void conn_lost(struct gen *g, struct conn *c, int64_t now, int err)
{
	if (c->state == CONN_CONNECTING) {
		g->st.connect_failures++;
		g->connect_errno = err;
		g->failing_since_up = 1;
		conn_close(g, c, now + RETRY_PAUSE_NS);
		return;
	}
	if (c->state == CONN_BUSY) {
		g->st.no_answer++;
		attempt_failed(g, &c->req, now);
	}
	conn_close(g, c, now);
}

static void conn_up(struct gen *g, struct conn *c, int64_t now)
{
	g->failing_since_up = 0;
	g->last_up = now;
	conn_watch(g, c, EPOLL_CTL_MOD, EPOLLIN);
	conn_set_state(g, c, CONN_IDLE);
}

static void conn_open(struct gen *g, struct conn *c, int64_t now)
{
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->since = now;
	conn_set_state(g, c, CONN_CONNECTING);
	if (c->fd < 0) {
		conn_lost(g, c, now, errno);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn_watch(g, c, EPOLL_CTL_ADD, EPOLLIN | EPOLLOUT);
	if (connect(c->fd, (const struct sockaddr *)&g->t.addr, sizeof(g->t.addr)) == 0)
		conn_up(g, c, now);
	else if (errno != EINPROGRESS)
		conn_lost(g, c, now, errno);
}

static int header_is(const char *name, size_t len, const char *want)
{
	return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

/* Reads one "Name: value" line of the head; -1 for what a client cannot follow. */
static int head_line(struct conn *c, const char *p, size_t len, int64_t *clen)
{
	const char *colon = memchr(p, ':', len), *v, *end = p + len;
	char *num_end;

	if (!colon)
		return -1;
	for (v = colon + 1; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (header_is(p, (size_t)(colon - p), "content-length")) {
		if (v == end || *v < '0' || *v > '9')
			return -1;
		*clen = strtoll(v, &num_end, 10);
		return num_end == end && *clen >= 0 ? 0 : -1;
	}
	if (header_is(p, (size_t)(colon - p), "transfer-encoding"))
		return header_is(v, (size_t)(end - v), "identity") ? 0 : -1;
	if (header_is(p, (size_t)(colon - p), "connection"))
		c->close_after = header_is(v, (size_t)(end - v), "close") ||
				 (c->close_after && !header_is(v, (size_t)(end - v), "keep-alive"));
	return 0;
}

/* Parses the status line and headers in c->in[0, len) (they end in an empty line). */
static int head_parse(struct conn *c, size_t len)
{
	const char *p = c->in, *end = c->in + len, *eol;
	int64_t clen = -1;

	if (len < 12 || memcmp(p, "HTTP/1.", 7) || p[8] != ' ' || p[9] < '2' || p[9] > '5' ||
	    p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
		return -1; /* 1xx too: nothing here asks for 100-continue */
	c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	c->close_after = p[7] == '0';
	for (p = (const char *)memchr(p, '\n', len) + 1; p < end; p = eol + 1) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == p || (eol == p + 1 && *p == '\r'))
			break;
		if (head_line(c, p, (size_t)(eol - p - (eol[-1] == '\r')), &clen) < 0)
			return -1;
	}
	c->until_close = clen < 0 && c->status != 204 && c->status != 304;
	c->close_after |= c->until_close;
	c->body_left = clen < 0 ? 0 : clen;
	return 0;
}

static void conn_answered(struct gen *g, struct conn *c, int64_t now)
{
	struct notif n = c->req;

	if (c->close_after || c->out_off < c->out.len)
		conn_close(g, c, now);
	else
		conn_set_state(g, c, CONN_IDLE);
	answered(g, &n, c->status, now);
}

/* New bytes of the head: parse it once it is complete. */
static void conn_head(struct gen *g, struct conn *c, size_t n, int64_t now)
{
	const char *end;
	size_t head_len;

	c->in_len += n;
	end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
	if (!end) {
		if (c->in_len == sizeof(c->in))
			conn_lost(g, c, now, EPROTO);
		return;
	}
	head_len = (size_t)(end - c->in) + 4;
	if (head_parse(c, head_len) < 0) {
		conn_lost(g, c, now, EPROTO);
		return;
	}
	if (!c->until_close)
		c->body_left -= (int64_t)(c->in_len - head_len);
	if (c->body_left <= 0 && !c->until_close) {
		/* More than the answer: do not trust the rest. */
		c->close_after |= c->body_left < 0;
		conn_answered(g, c, now);
	}
}

static void conn_read(struct gen *g, struct conn *c, int64_t now)
{
	int head = c->state == CONN_BUSY && c->body_left < 0;
	char *at = head ? c->in + c->in_len : c->in;
	ssize_t n = recv(c->fd, at, head ? sizeof(c->in) - c->in_len : sizeof(c->in), 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == 0 && c->state == CONN_BUSY && c->until_close)
		conn_answered(g, c, now);
	else if (n <= 0 || c->state != CONN_BUSY) /* closed, failed, or bytes nobody asked for */
		conn_lost(g, c, now, n < 0 ? errno : ECONNRESET);
	else if (head)
		conn_head(g, c, (size_t)n, now);
	else if (!c->until_close && (c->body_left -= n) <= 0) {
		c->close_after |= c->body_left < 0;
		conn_answered(g, c, now);
	}
}

static void conn_write(struct gen *g, struct conn *c, int64_t now)
{
	while (c->out_off < c->out.len) {
		ssize_t n =
			send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);

		if (n >= 0) {
			c->out_off += (size_t)n;
		} else if (errno == EAGAIN) {
			if (!c->want_out)
				conn_watch(g, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
			c->want_out = 1;
			return;
		} else if (errno != EINTR) {
			conn_lost(g, c, now, errno);
			return;
		}
	}
	if (c->want_out)
		conn_watch(g, c, EPOLL_CTL_MOD, EPOLLIN);
	c->want_out = 0;
}

static void conn_event(struct gen *g, struct conn *c, uint32_t events, int64_t now)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (c->state == CONN_CONNECTING) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err)
			conn_lost(g, c, now, err);
		else if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			conn_up(g, c, now);
		return;
	}
	if (c->state == CONN_BUSY && (events & EPOLLOUT))
		conn_write(g, c, now);
	if ((c->state == CONN_BUSY || c->state == CONN_IDLE) &&
	    (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		conn_read(g, c, now);
}

static int request_format(struct gen *g, struct sbuf *out, const struct notif *n)
{
	const struct mix *m = &g->mix;
	uint64_t seq = n->idx + 1;

	g->body.len = 0;
	out->len = 0;
	if (sbuf_addf(&g->body, BODY_FMT, g->event.p, g->bucket.p, g->bucket.p,
		      m->esc[m->wheel[n->idx % m->len]].p, m->width, n->idx, g->etag.p, seq, seq,
		      seq) < 0 ||
	    sbuf_addf(out, HEAD_FMT, g->t.path.p, g->t.host.p, g->body.len, g->auth.p) < 0)
		return -1;
	return sbuf_add(out, g->body.p, g->body.len);
}

static void conn_send(struct gen *g, struct conn *c, const struct notif *n, int64_t now)
{
	c->req = *n;
	c->since = now;
	c->out_off = 0;
	c->in_len = 0;
	c->body_left = -1;
	if (request_format(g, &c->out, n) < 0) {
		g->fatal = -1;
		return;
	}
	conn_set_state(g, c, CONN_BUSY);
	conn_write(g, c, now);
}

/* Send s of the schedule: a duplicate when it is one of those and one is there to send. */
static void schedule_take(struct gen *g, int64_t now, struct notif *n)
{
	uint64_t s = g->st.sent++;
	int64_t lag = now - slot_due(g, s);

	g->last_send = now;
	if (lag > g->st.lag_max)
		g->st.lag_max = lag;
	n->dup = slot_is_dup(g, s) && pick_dup(g, &n->idx);
	if (n->dup)
		g->n_dups++;
	else
		n->idx = g->n_fresh++;
	n->deadline = now + g->retry_ns;
	n->not_before = 0;
}

/* The next attempt due at now: a retry first (it is older), then the schedule's next send. */
static int next_attempt(struct gen *g, int64_t now, struct notif *n)
{
	if (g->rq.len && g->rq.v[g->rq.head].not_before <= now) {
		*n = retryq_pop(&g->rq);
		g->st.retried++;
		return 1;
	}
	if (g->st.sent == g->o->count || slot_due(g, g->st.sent) > now)
		return 0;
	schedule_take(g, now, n);
	return 1;
}

static void dispatch(struct gen *g, int64_t now)
{
	struct notif n;

	while (g->n_state[CONN_IDLE] && !g->fatal && next_attempt(g, now, &n))
		conn_send(g, idle_pop(g), &n, now);
}

/* Connects what is due to, and every TICK ends connects and answers that took too long. */
static void conns_check(struct gen *g, int64_t now)
{
	int tick = now >= g->next_tick;
	unsigned i;

	if (tick)
		g->next_tick = now + TICK_NS;
	for (i = 0; i < g->o->concurrency && (tick || g->n_state[CONN_DOWN]); i++) {
		struct conn *c = &g->conns[i];

		if (c->state == CONN_DOWN && c->wake <= now)
			conn_open(g, c, now);
		else if (tick && (c->state == CONN_CONNECTING || c->state == CONN_BUSY) &&
			 now - c->since >= ANSWER_TIMEOUT_NS)
			conn_lost(g, c, now, ETIMEDOUT);
	}
}

/* How long epoll may sleep: until the next send or retry is due, at most a TICK. */
static int sleep_ms(const struct gen *g, int64_t now)
{
	int64_t due = now + TICK_NS;

	if (g->n_state[CONN_DOWN])
		due = now + RETRY_PAUSE_NS / 5;
	if (g->n_state[CONN_IDLE] && g->rq.len && g->rq.v[g->rq.head].not_before < due)
		due = g->rq.v[g->rq.head].not_before;
	if (g->n_state[CONN_IDLE] && g->st.sent < g->o->count && slot_due(g, g->st.sent) < due)
		due = slot_due(g, g->st.sent);
	return due <= now ? 0 : (int)((due - now + NS_PER_MS - 1) / NS_PER_MS);
}

/* After --retry seconds with no connection up and connects failing, nothing will get through. */
static int cannot_connect(struct gen *g, int64_t now)
{
	uint64_t left = g->o->count - g->st.sent + g->rq.len;

	if (g->n_state[CONN_IDLE] || g->n_state[CONN_BUSY])
		g->last_up = now;
	if (!g->failing_since_up || now - g->last_up < g->retry_ns || left == 0)
		return 0;
	g->st.failed += left;
	return error("cannot connect to %s: %s; gave up on %" PRIu64 " notifications after %.1f s",
		     g->t.host.p, strerror(g->connect_errno), left,
		     (double)(now - g->last_up) / NS_PER_S);
}

static int finished(const struct gen *g)
{
	return g->st.sent == g->o->count && g->rq.len == 0 && g->n_state[CONN_BUSY] == 0;
}

static int gen_run(struct gen *g)
{
	struct epoll_event ev[EVENTS_MAX];
	int64_t now = now_ns();
	int i, n;

	g->start = g->last_up = g->next_tick = now;
	while (!stop_signal && !g->fatal) {
		conns_check(g, now);
		if (cannot_connect(g, now) < 0)
			break;
		dispatch(g, now);
		if (finished(g))
			break;
		n = epoll_wait(g->ep, ev, EVENTS_MAX, sleep_ms(g, now));
		if (n < 0 && errno != EINTR)
			g->fatal = error("epoll_wait: %s", strerror(errno));
		now = now_ns();
		for (i = 0; i < n; i++)
			conn_event(g, ev[i].data.ptr, ev[i].events, now);
	}
	g->end = now_ns();
	if (stop_signal)
		return error("stopped by a signal");
	return g->fatal ? -1 : 0;
}

static int gen_init(struct gen *g, const struct opts *o)
{
	unsigned i;

	g->o = o;
	g->retry_ns = (int64_t)(o->retry * NS_PER_S);
	g->rnd = 0x9e3779b97f4a7c15ULL;
	if (target_parse(&g->t, o->url) < 0 || mix_init(&g->mix, o) < 0 ||
	    json_escape(&g->event, "--event", o->event) < 0 ||
	    json_escape(&g->bucket, "--bucket", o->bucket) < 0 ||
	    json_escape(&g->etag, "--etag", o->etag) < 0 || sbuf_add(&g->auth, "", 0) < 0 ||
	    (o->token && sbuf_addf(&g->auth, "Authorization: Bearer %s\r\n", o->token) < 0))
		return -1;
	g->acked = calloc(o->count / 64 + 1, sizeof(*g->acked));
	g->conns = calloc(o->concurrency, sizeof(*g->conns));
	g->ring = calloc(o->concurrency, sizeof(*g->ring));
	if (!g->acked || !g->conns || !g->ring)
		return error("out of memory");
	for (i = 0; i < o->concurrency; i++)
		g->conns[i].fd = -1;
	g->n_state[CONN_DOWN] = o->concurrency;
	if ((g->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return error("epoll_create1: %s", strerror(errno));
	if (o->ok_log && !(g->log = fopen(o->ok_log, "ae")))
		return error("cannot open '%s': %s", o->ok_log, strerror(errno));
	if (g->log && setvbuf(g->log, NULL, _IOFBF, 1 << 20))
		return error("cannot buffer '%s'", o->ok_log);
	return 0;
}

/* Writes out --ok-log; -1 when it could not be written whole. */
static int gen_release(struct gen *g)
{
	int rc = 0;
	unsigned i;

	if (g->log && (fflush(g->log) || ferror(g->log)))
		rc = error("cannot write '%s': %s", g->o->ok_log, strerror(errno));
	if (g->log && fclose(g->log) && rc == 0)
		rc = error("cannot write '%s': %s", g->o->ok_log, strerror(errno));
	for (i = 0; g->conns && i < g->o->concurrency; i++) {
		if (g->conns[i].fd >= 0)
			close(g->conns[i].fd);
		sbuf_release(&g->conns[i].out);
	}
	if (g->ep >= 0)
		close(g->ep);
	free(g->conns);
	free(g->ring);
	free(g->acked);
	free(g->rq.v);
	mix_release(&g->mix);
	sbuf_release(&g->t.host);
	sbuf_release(&g->t.path);
	sbuf_release(&g->event);
	sbuf_release(&g->bucket);
	sbuf_release(&g->etag);
	sbuf_release(&g->auth);
	sbuf_release(&g->body);
	return rc;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/*
 * The rate achieved is that of the first attempts, from the start to the last
 * one (plus the gap after it): retries still going after the last send, and
 * answers still to come, do not make the schedule late.
 */
static double achieved_rate(const struct gen *g)
{
	int64_t ns = g->o->rate > 0 ? g->last_send - g->start + (int64_t)(1e9 / g->o->rate)
				    : g->end - g->start;

	return g->st.sent && ns > 0 ? (double)g->st.sent * NS_PER_S / (double)ns : 0;
}

/* The summary line; returns -1 when the rate achieved was more than 10% short. */
static int report(const struct gen *g)
{
	double secs = (double)(g->end - g->start) / NS_PER_S, cpu = cpu_seconds();
	double rate = achieved_rate(g);
	int i, any = 0;

	printf("ok=%" PRIu64 " failed=%" PRIu64 " dup_ok=%" PRIu64 " sent=%" PRIu64
	       " retried=%" PRIu64 " no_answer=%" PRIu64 " connect_failed=%" PRIu64 " non200=",
	       g->st.ok, g->st.failed, g->st.dup_ok, g->st.sent, g->st.retried, g->st.no_answer,
	       g->st.connect_failures);
	for (i = 0; i < 600; i++)
		if (g->st.status[i])
			printf("%s%d:%" PRIu64, any++ ? "," : "", i, g->st.status[i]);
	printf("%s rate=%.1f/s target=%.0f/s lag_max_ms=%.1f seconds=%.1f cpu=%.1fs",
	       any ? "" : "none", rate, g->o->rate, (double)g->st.lag_max / NS_PER_MS, secs, cpu);
	if (secs >= 1) /* of one core, over the whole run */
		printf("(%.0f%%)", 100 * cpu / secs);
	putchar('\n');
	fflush(stdout);
	if (g->o->rate > 0 && rate < 0.9 * g->o->rate)
		return error("achieved %.1f notifications/s, more than 10%% short of %.0f/s", rate,
			     g->o->rate);
	return 0;
}

static void on_signal(int sig)
{
	stop_signal = sig;
}

int main(int argc, char **argv)
{
	struct opts o = OPTS_INIT;
	struct gen g = { .ep = -1 };
	struct sigaction sa = { .sa_handler = on_signal };
	int rc = opts_parse(&o, argc, argv);

	if (rc)
		return rc < 0 ? 2 : 0;
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (gen_init(&g, &o) < 0) {
		gen_release(&g);
		return 1;
	}
	rc = gen_run(&g);
	if (report(&g) < 0)
		rc = -1;
	if (g.st.failed)
		rc = error("gave up on %" PRIu64 " notifications", g.st.failed);
	if (gen_release(&g) < 0)
		rc = -1;
	return rc < 0 ? 1 : 0;
}
