#include "s3/client.h"

#include "core/err.h"
#include "core/str.h"
#include "s3/sigv4.h"
#include "s3/xml.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define MAX_HEADERS 48
/* Credentials are refreshed this long before they expire (or at half their life, if sooner). */
#define CREDS_EARLY_S 300
/* After a failed refresh, the next try waits this long. */
#define CREDS_RETRY_S 10

/* Keys shared by the requests signed with them; freed by the last one. */
struct creds {
	int refs; /* under creds_lock */
	char *access_key;
	char *secret_key;
	char *session_token;
};

struct s3_client {
	struct s3_config cfg; /* its keys are the first creds'; later ones live in `creds` */
	char *scheme;	      /* "http" or "https" */
	char *host;	      /* host[:port], the Host header */
	int path_style;
	pthread_mutex_t lock;
	CURL **idle; /* handles whose connections stay open for the next request */
	size_t n_idle;

	pthread_mutex_t creds_lock;   /* creds and the schedule below */
	pthread_mutex_t refresh_lock; /* one refresh at a time, outside creds_lock */
	struct creds *creds;
	time_t expires;	   /* of creds; 0: never */
	time_t refresh_at; /* 0: not by time */
	time_t checked_at; /* when the ~/.aws files were last looked at */
	uint64_t stamp;	   /* s3_config_files_stamp() of the files creds came from */

	struct s3_stats st; /* atomics */
};

#define COUNT(p) __atomic_fetch_add(p, 1, __ATOMIC_RELAXED)

static const char *const op_names[S3_OP_N] = {
	[S3_OP_GET_OBJECT] = "GetObject",
	[S3_OP_HEAD_OBJECT] = "HeadObject",
	[S3_OP_PUT_OBJECT] = "PutObject",
	[S3_OP_COPY_OBJECT] = "CopyObject",
	[S3_OP_DELETE_OBJECT] = "DeleteObject",
	[S3_OP_LIST_OBJECTS] = "ListObjectsV2",
	[S3_OP_CREATE_BUCKET] = "CreateBucket",
	[S3_OP_DELETE_BUCKET] = "DeleteBucket",
	[S3_OP_MPU_CREATE] = "CreateMultipartUpload",
	[S3_OP_MPU_PART] = "UploadPart",
	[S3_OP_MPU_COMPLETE] = "CompleteMultipartUpload",
	[S3_OP_MPU_ABORT] = "AbortMultipartUpload",
	[S3_OP_MPU_LIST_PARTS] = "ListParts",
};

static const char *const status_names[S3_ST_N] = { "2xx", "3xx", "4xx", "5xx", "error" };

/* One request as the operations describe it. */
struct req {
	enum s3_op op;
	const char *method;
	const char *bucket;
	const char *key; /* NULL for bucket requests */
	struct buf query; /* encoded, without '?' */
	struct sigv4_header hdr[MAX_HEADERS];
	size_t n_hdr;
	const struct s3_body *body;
	int out_fd; /* >= 0: a 2xx body goes here */
	off_t out_start;
	struct buf *out_mem; /* else a 2xx body goes here (capped) */
	int idempotent;
	const struct s3_get_opts *get;
};

/* What came back. */
struct resp {
	long status;
	struct buf body; /* non-2xx bodies and XML answers, capped at S3_XML_MAX */
	struct s3_object_info *info;
	char request_id[128];
	int write_failed;
	uint64_t written; /* 2xx body bytes delivered to the output */
	/* request body position, for the read callback */
	const struct s3_body *src;
	uint64_t sent;
	const struct req *req;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- configuration ------------------------------------------------------------ */

void s3_config_release(struct s3_config *cfg)
{
	free(cfg->endpoint);
	free(cfg->region);
	free(cfg->ca_bundle);
	free(cfg->access_key);
	if (cfg->secret_key)
		explicit_bzero(cfg->secret_key, strlen(cfg->secret_key));
	free(cfg->secret_key);
	free(cfg->session_token);
	free(cfg->profile);
	*cfg = (struct s3_config)S3_CONFIG_INIT;
}

static void copy_config(struct s3_config *dst, const struct s3_config *src)
{
	*dst = *src;
	dst->endpoint = src->endpoint ? xstrdup(src->endpoint) : NULL;
	dst->region = xstrdup(src->region && *src->region ? src->region : "us-east-1");
	dst->ca_bundle = src->ca_bundle ? xstrdup(src->ca_bundle) : NULL;
	dst->access_key = src->access_key ? xstrdup(src->access_key) : NULL;
	dst->secret_key = src->secret_key ? xstrdup(src->secret_key) : NULL;
	dst->session_token = src->session_token ? xstrdup(src->session_token) : NULL;
	dst->profile = src->profile ? xstrdup(src->profile) : NULL;
}

/* Whether a host (without port) is an IPv4 or bracketed IPv6 address. */
static int host_is_ip(const char *host)
{
	size_t n = strcspn(host, ":");

	if (host[0] == '[')
		return 1;
	return strspn(host, "0123456789.") == n;
}

static int parse_endpoint(struct s3_client *c, struct err *e)
{
	const char *ep = c->cfg.endpoint, *p;
	size_t n;

	if (!ep || !*ep) {
		c->scheme = xstrdup("https");
		if (asprintf(&c->host, "s3.%s.amazonaws.com", c->cfg.region) < 0)
			abort();
		c->path_style = c->cfg.addressing == S3_ADDR_PATH;
		return 0;
	}
	if (str_starts_with(ep, "http://"))
		c->scheme = xstrdup("http");
	else if (str_starts_with(ep, "https://"))
		c->scheme = xstrdup("https");
	else
		return err_set(e, ERR_CONFIG, "endpoint '%s' must start with http:// or https://",
			       SHORT(ep));
	p = strstr(ep, "://") + 3;
	n = strcspn(p, "/?#");
	if (n == 0)
		return err_set(e, ERR_CONFIG, "endpoint '%s' has no host", SHORT(ep));
	if (p[n] && strcmp(p + n, "/") != 0)
		return err_set(e, ERR_CONFIG, "endpoint '%s' must not have a path", SHORT(ep));
	c->host = xstrndup(p, n);
	/* Custom endpoints rarely have wildcard DNS for bucket names. */
	c->path_style = c->cfg.addressing != S3_ADDR_VIRTUAL;
	(void)host_is_ip;
	return 0;
}

/* ---- credentials ------------------------------------------------------------------ */

static struct creds *creds_new(const struct s3_config *cfg)
{
	struct creds *cr = xcalloc(1, sizeof(*cr));

	cr->refs = 1;
	cr->access_key = cfg->access_key ? xstrdup(cfg->access_key) : NULL;
	cr->secret_key = cfg->secret_key ? xstrdup(cfg->secret_key) : NULL;
	cr->session_token = cfg->session_token ? xstrdup(cfg->session_token) : NULL;
	return cr;
}

/* Drops one reference (under creds_lock); frees on the last. */
static void creds_unref(struct creds *cr)
{
	if (!cr || --cr->refs > 0)
		return;
	free(cr->access_key);
	if (cr->secret_key)
		explicit_bzero(cr->secret_key, strlen(cr->secret_key));
	free(cr->secret_key);
	free(cr->session_token);
	free(cr);
}

/* When keys that expire at `expires`, fetched at `now`, are to be fetched again. */
static time_t refresh_time(time_t now, time_t expires)
{
	time_t early = (expires - now) / 2;

	if (!expires)
		return 0;
	return expires - (early < CREDS_EARLY_S ? (early > 0 ? early : 0) : CREDS_EARLY_S);
}

/* Swaps in freshly fetched keys (under creds_lock). */
static void creds_install(struct s3_client *c, const struct s3_config *fresh, time_t now)
{
	creds_unref(c->creds);
	c->creds = creds_new(fresh);
	c->expires = fresh->expires;
	c->refresh_at = refresh_time(now, fresh->expires);
}

/* Whether the keys are to be fetched again: their time has come, or the files changed. */
static int creds_stale(const struct s3_client *c, time_t now)
{
	if (c->refresh_at && now >= c->refresh_at)
		return 1;
	return s3_config_files_stamp() != c->stamp;
}

/* As creds_stale(), looking at the files once a second at most (under creds_lock). */
static int creds_due(struct s3_client *c, time_t now)
{
	if (!c->cfg.profile)
		return 0;
	if (c->refresh_at && now >= c->refresh_at)
		return 1;
	if (now == c->checked_at)
		return 0;
	c->checked_at = now;
	return creds_stale(c, now);
}

/*
 * Fetches the keys again, unless another thread is at it and the current keys
 * still work. Fails only when the keys have expired and cannot be renewed.
 */
static int creds_refresh(struct s3_client *c, time_t now, struct err *e)
{
	struct s3_config fresh = S3_CONFIG_INIT;
	struct err fe = ERR_INIT;
	uint64_t stamp;
	int r = 0;

	pthread_mutex_lock(&c->creds_lock);
	r = c->expires && now >= c->expires; /* expired: must wait for the refresh */
	pthread_mutex_unlock(&c->creds_lock);
	if (r)
		pthread_mutex_lock(&c->refresh_lock);
	else if (pthread_mutex_trylock(&c->refresh_lock) != 0)
		return 0;
	pthread_mutex_lock(&c->creds_lock);
	r = creds_stale(c, now); /* another thread may have just done it */
	pthread_mutex_unlock(&c->creds_lock);
	if (!r)
		goto out;
	fresh.profile = xstrdup(c->cfg.profile);
	stamp = s3_config_files_stamp();
	r = s3_config_refresh(&fresh, &fe);
	pthread_mutex_lock(&c->creds_lock);
	c->stamp = stamp; /* these files were read, whatever came of it */
	if (r == 0) {
		COUNT(&c->st.credential_refreshes);
		creds_install(c, &fresh, now);
	} else {
		COUNT(&c->st.credential_failures);
		c->refresh_at = now + CREDS_RETRY_S;
		if (c->expires && now >= c->expires)
			err_set(e, ERR_AUTH, "credentials of profile '%s' expired: %s",
				SHORT(c->cfg.profile), fe.msg);
		else
			r = 0;
	}
	pthread_mutex_unlock(&c->creds_lock);
out:
	pthread_mutex_unlock(&c->refresh_lock);
	s3_config_release(&fresh);
	return r < 0 ? -1 : 0;
}

/* The keys to sign a request with, refreshed first when due; creds_put() them after. */
static struct creds *creds_get(struct s3_client *c, struct err *e)
{
	time_t now = time(NULL);
	struct creds *cr;
	int due;

	pthread_mutex_lock(&c->creds_lock);
	due = creds_due(c, now);
	pthread_mutex_unlock(&c->creds_lock);
	if (due && creds_refresh(c, now, e) < 0)
		return NULL;
	pthread_mutex_lock(&c->creds_lock);
	cr = c->creds;
	cr->refs++;
	pthread_mutex_unlock(&c->creds_lock);
	return cr;
}

static void creds_put(struct s3_client *c, struct creds *cr)
{
	pthread_mutex_lock(&c->creds_lock);
	creds_unref(cr);
	pthread_mutex_unlock(&c->creds_lock);
}

static void creds_init(struct s3_client *c)
{
	time_t now = time(NULL);

	pthread_mutex_init(&c->creds_lock, NULL);
	pthread_mutex_init(&c->refresh_lock, NULL);
	c->creds = creds_new(&c->cfg);
	c->expires = c->cfg.expires;
	c->refresh_at = refresh_time(now, c->cfg.expires);
	c->checked_at = now;
	c->stamp = c->cfg.profile ? s3_config_files_stamp() : 0;
}

void s3_client_stats(struct s3_client *c, struct s3_stats *out)
{
	size_t i, j;

	for (i = 0; i < S3_OP_N; i++)
		for (j = 0; j < S3_ST_N; j++)
			out->requests[i][j] =
				__atomic_load_n(&c->st.requests[i][j], __ATOMIC_RELAXED);
	out->credential_refreshes = __atomic_load_n(&c->st.credential_refreshes, __ATOMIC_RELAXED);
	out->credential_failures = __atomic_load_n(&c->st.credential_failures, __ATOMIC_RELAXED);
}

const char *s3_op_name(enum s3_op op)
{
	return (unsigned)op < S3_OP_N ? op_names[op] : "?";
}

const char *s3_status_class_name(enum s3_status_class s)
{
	return (unsigned)s < S3_ST_N ? status_names[s] : "?";
}

/* Counts one attempt by how it ended. */
static void count_attempt(struct s3_client *c, const struct req *r, CURLcode rc, long status)
{
	enum s3_status_class k = S3_ST_ERROR;

	if (rc == CURLE_OK && status >= 200 && status < 600)
		k = (enum s3_status_class)(status / 100 - 2);
	else if (rc == CURLE_OK && status >= 100 && status < 200)
		k = S3_ST_2XX; /* an interim answer only: cannot be the last */
	COUNT(&c->st.requests[r->op][k]);
}

struct s3_client *s3_client_new(const struct s3_config *cfg, struct err *e)
{
	struct s3_client *c;

	pthread_once(&curl_once, curl_init_once);
	c = xcalloc(1, sizeof(*c));
	copy_config(&c->cfg, cfg);
	pthread_mutex_init(&c->lock, NULL);
	creds_init(c);
	if (parse_endpoint(c, e) < 0) {
		s3_client_free(c);
		return NULL;
	}
	return c;
}

void s3_client_free(struct s3_client *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->n_idle; i++)
		curl_easy_cleanup(c->idle[i]);
	free(c->idle);
	pthread_mutex_destroy(&c->lock);
	creds_unref(c->creds);
	pthread_mutex_destroy(&c->creds_lock);
	pthread_mutex_destroy(&c->refresh_lock);
	s3_config_release(&c->cfg);
	free(c->scheme);
	free(c->host);
	free(c);
}

static CURL *take_handle(struct s3_client *c)
{
	CURL *h = NULL;

	pthread_mutex_lock(&c->lock);
	if (c->n_idle)
		h = c->idle[--c->n_idle];
	pthread_mutex_unlock(&c->lock);
	if (!h)
		h = curl_easy_init();
	else
		curl_easy_reset(h); /* keeps the open connection */
	if (!h)
		abort();
	return h;
}

static void give_handle(struct s3_client *c, CURL *h)
{
	pthread_mutex_lock(&c->lock);
	c->idle = xrealloc(c->idle, (c->n_idle + 1) * sizeof(*c->idle));
	c->idle[c->n_idle++] = h;
	pthread_mutex_unlock(&c->lock);
}

/* ---- URL and signing ------------------------------------------------------------ */

/* The decoded path that is signed and, encoded, sent. */
static void build_path(const struct s3_client *c, const struct req *r, struct buf *path)
{
	if (c->path_style && r->bucket)
		buf_addf(path, "/%s", r->bucket);
	if (r->key) {
		buf_addch(path, '/');
		buf_adds(path, r->key);
	}
	if (!path->len)
		buf_addch(path, '/');
}

static void build_host(const struct s3_client *c, const struct req *r, struct buf *host)
{
	if (!c->path_style && r->bucket)
		buf_addf(host, "%s.", r->bucket);
	buf_adds(host, c->host);
}

static void add_header(struct req *r, const char *name, const char *value)
{
	if (r->n_hdr < MAX_HEADERS) {
		r->hdr[r->n_hdr].name = name;
		r->hdr[r->n_hdr].value = value;
		r->n_hdr++;
	}
}

static const char *empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* Signs and turns the request into curl headers; url receives the full URL. */
static int prepare(struct s3_client *c, const struct req *r, struct buf *url,
		   struct curl_slist **list, struct err *e)
{
	struct creds *cr = creds_get(c, e);
	struct sigv4_creds creds = { NULL, NULL, NULL };
	struct sigv4_request sr = { .method = r->method, .region = c->cfg.region, .service = "s3" };
	struct sigv4_header h[MAX_HEADERS + 4];
	struct buf path = BUF_INIT, host = BUF_INIT, auth = BUF_INIT, line = BUF_INIT;
	char date[17], hash[65];
	size_t n = 0, i;
	int rc = -1;

	if (!cr)
		return -1;
	creds = (struct sigv4_creds){ cr->access_key, cr->secret_key, cr->session_token };
	sr.when = c->cfg.clock ? c->cfg.clock() : time(NULL);
	sigv4_amz_date(date, sr.when);
	if (r->body && !(r->body->fd >= 0) && r->body->len)
		sigv4_sha256_hex(hash, r->body->data, r->body->len);
	else
		snprintf(hash, sizeof(hash), "%s",
			 r->body && r->body->fd >= 0 && r->body->len ? "UNSIGNED-PAYLOAD"
								      : empty_sha256);
	build_path(c, r, &path);
	build_host(c, r, &host);
	h[n++] = (struct sigv4_header){ "host", host.data };
	h[n++] = (struct sigv4_header){ "x-amz-date", date };
	h[n++] = (struct sigv4_header){ "x-amz-content-sha256", hash };
	if (cr->session_token && *cr->session_token)
		h[n++] = (struct sigv4_header){ "x-amz-security-token", cr->session_token };
	for (i = 0; i < r->n_hdr; i++)
		h[n++] = r->hdr[i];
	sr.path = path.data;
	sr.query = r->query.data;
	sr.headers = h;
	sr.n_headers = n;
	sr.payload_hash = hash;
	if (sigv4_authorization(&auth, &sr, &creds, e) < 0)
		goto out;
	buf_addf(url, "%s://%s", c->scheme, host.data);
	sigv4_canon_path(url, path.data);
	if (r->query.len)
		buf_addf(url, "?%s", r->query.data);
	for (i = 0; i < n; i++) {
		buf_reset(&line);
		buf_addf(&line, "%s: %s", h[i].name, h[i].value);
		*list = curl_slist_append(*list, line.data);
	}
	buf_reset(&line);
	buf_addf(&line, "Authorization: %s", auth.data);
	*list = curl_slist_append(*list, line.data);
	/* Waiting for "100 Continue" costs a round trip per part. */
	*list = curl_slist_append(*list, "Expect:");
	rc = 0;
out:
	creds_put(c, cr);
	buf_release(&path);
	buf_release(&host);
	buf_release(&auth);
	buf_release(&line);
	return rc;
}

/* ---- curl callbacks ------------------------------------------------------------- */

static size_t on_read(char *dst, size_t size, size_t nitems, void *arg)
{
	struct resp *rs = arg;
	const struct s3_body *b = rs->src;
	size_t want = size * nitems, left = b->len - rs->sent;
	ssize_t n;

	if (b->cancel && *b->cancel)
		return CURL_READFUNC_ABORT;
	if (want > left)
		want = left;
	if (!want)
		return 0;
	if (b->fd >= 0) {
		n = pread(b->fd, dst, want, (off_t)(b->offset + rs->sent));
		if (n <= 0)
			return CURL_READFUNC_ABORT; /* a file that shrank or failed */
	} else {
		memcpy(dst, (const char *)b->data + rs->sent, want);
		n = (ssize_t)want;
	}
	rs->sent += (uint64_t)n;
	if (b->on_sent)
		b->on_sent(b->arg, (size_t)n);
	return (size_t)n;
}

static int on_seek(void *arg, curl_off_t offset, int origin)
{
	struct resp *rs = arg;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > rs->src->len)
		return CURL_SEEKFUNC_CANTSEEK;
	rs->sent = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static int ok_status(long status)
{
	return status >= 200 && status < 300;
}

static size_t write_all(int fd, const char *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t w = write(fd, p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return 0;
		done += (size_t)w;
	}
	return n;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *arg)
{
	struct resp *rs = arg;
	const struct req *r = rs->req;
	size_t n = size * nmemb;

	if (ok_status(rs->status) && r->out_fd >= 0) {
		if (write_all(r->out_fd, p, n) != n) {
			rs->write_failed = errno ? errno : EIO;
			return 0;
		}
		rs->written += n;
	} else if (ok_status(rs->status) && r->out_mem) {
		if (buf_add(r->out_mem, p, n) < 0)
			return 0;
	} else if (buf_add(&rs->body, p, n) < 0) {
		return 0;
	}
	if (ok_status(rs->status) && r->get && r->get->on_received)
		r->get->on_received(r->get->arg, n);
	return n;
}

static void header_value(char *out, size_t size, const char *v, size_t len)
{
	while (len && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
		len--;
	snprintf(out, size, "%.*s", (int)len, v);
}

static void strip_quotes(char *etag)
{
	size_t n = strlen(etag);

	if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') {
		memmove(etag, etag + 1, n - 2);
		etag[n - 2] = '\0';
	}
}

static void take_info_header(struct s3_object_info *info, const char *name, size_t nlen,
			     const char *v, size_t vlen)
{
	char val[1024];
	uint64_t u;
	struct tm tm;

	header_value(val, sizeof(val), v, vlen);
	if (nlen == 4 && strncasecmp(name, "etag", 4) == 0) {
		str_copy(info->etag, sizeof(info->etag), val);
		strip_quotes(info->etag);
	} else if (nlen == 14 && strncasecmp(name, "content-length", 14) == 0) {
		if (str_to_u64(val, &u) == 0)
			info->size = u;
	} else if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0) {
		str_copy(info->content_type, sizeof(info->content_type), val);
	} else if (nlen == 16 && strncasecmp(name, "x-amz-version-id", 16) == 0) {
		str_copy(info->version_id, sizeof(info->version_id), val);
	} else if (nlen == 13 && strncasecmp(name, "last-modified", 13) == 0) {
		memset(&tm, 0, sizeof(tm));
		if (strptime(val, "%a, %d %b %Y %H:%M:%S GMT", &tm))
			info->last_modified = timegm(&tm);
	} else if (nlen > 11 && strncasecmp(name, "x-amz-meta-", 11) == 0) {
		size_t i;
		for (i = 11; i < nlen; i++)
			buf_addch(&info->metadata, (char)(name[i] >= 'A' && name[i] <= 'Z'
								  ? name[i] - 'A' + 'a'
								  : name[i]));
		buf_addf(&info->metadata, "=%s\n", val);
	}
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct resp *rs = arg;
	size_t n = size * nmemb;
	const char *colon = memchr(p, ':', n);

	if (n > 5 && strncmp(p, "HTTP/", 5) == 0) {
		/* A new response (after "100 Continue" or on a retry): start over. */
		const char *sp = memchr(p, ' ', n);
		rs->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		rs->request_id[0] = '\0';
		if (rs->info) {
			buf_reset(&rs->info->metadata);
			rs->info->etag[0] = rs->info->content_type[0] = '\0';
			rs->info->version_id[0] = '\0';
		}
		return n;
	}
	if (!colon)
		return n;
	if ((size_t)(colon - p) == 16 && strncasecmp(p, "x-amz-request-id", 16) == 0)
		header_value(rs->request_id, sizeof(rs->request_id), colon + 1,
			     n - (size_t)(colon - p) - 1);
	if (rs->info)
		take_info_header(rs->info, p, (size_t)(colon - p), colon + 1,
				 n - (size_t)(colon - p) - 1);
	return n;
}

/* ---- performing a request ----------------------------------------------------- */

static void setup_handle(struct s3_client *c, CURL *h, const struct req *r, struct resp *rs,
			 const char *url, struct curl_slist *list)
{
	curl_easy_setopt(h, CURLOPT_URL, url);
	/* A key such as "a/../b" must be sent as signed, not folded to "b". */
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "s3hook/" S3HOOK_VERSION);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->cfg.connect_timeout_ms);
	/* Below 1 KiB/s for stall_timeout is a stall: a trickle must not hold a worker. */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
			 (long)(c->cfg.stall_timeout_ms + 999) / 1000);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	if (c->cfg.ca_bundle)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->cfg.ca_bundle);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, rs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, rs);
	if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (r->body) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body->len);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, rs);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, rs);
		if (strcmp(r->method, "PUT") != 0)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}
	/* Big bodies may take long; stalls are caught by the low-speed limit. */
	if (!r->body && r->out_fd < 0 && !r->out_mem)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->cfg.request_timeout_ms);
}

static int retryable_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return 1;
	default:
		return 0;
	}
}

static int retryable_status(long status, const struct buf *body)
{
	if (status == 500 || status == 502 || status == 503 || status == 504)
		return 1;
	/* S3 answers 400 RequestTimeout when our body arrived too slowly. */
	return status == 400 && strstr(body->data, "<Code>RequestTimeout</Code>") != NULL;
}

static void backoff(const struct s3_client *c, unsigned attempt)
{
	uint64_t cap = (uint64_t)c->cfg.retry_base_ms << (attempt < 10 ? attempt : 10);
	uint32_t rnd = 0;

	if (cap > 10000)
		cap = 10000;
	if (getrandom(&rnd, sizeof(rnd), 0) < 0)
		rnd = (uint32_t)rand();
	/* "Full jitter": anywhere between half the cap and the cap. */
	usleep((useconds_t)((cap / 2 + rnd % (cap / 2 + 1)) * 1000));
}

static void subject(struct buf *s, const struct req *r)
{
	buf_addf(s, "%s s3://%s", r->method, r->bucket ? r->bucket : "");
	if (r->key)
		buf_addf(s, "/%s", SHORT(r->key));
}

static int http_error(const struct req *r, const struct resp *rs, struct err *e)
{
	struct s3_xml_error x;
	struct buf s = BUF_INIT;
	enum err_code code = ERR_S3;

	subject(&s, r);
	if (s3_xml_parse_error(rs->body.data, rs->body.len, &x) < 0) {
		const char *guess = rs->status == 404 ? "NotFound"
				    : rs->status == 412 ? "PreconditionFailed"
				    : rs->status == 403 ? "Forbidden"
							: "HTTP error";
		str_copy(x.code, sizeof(x.code), guess);
		str_copy(x.request_id, sizeof(x.request_id), rs->request_id);
	}
	if (rs->status == 404)
		code = ERR_NOTFOUND;
	else if (rs->status == 412)
		code = ERR_CONFLICT;
	else if (rs->status == 403 || rs->status == 401)
		code = ERR_AUTH;
	err_set(e, code, "%s: %s (HTTP %ld)%s%s%s%s%s", s.data, x.code, rs->status,
		x.message[0] ? ": " : "", x.message, x.request_id[0] ? " [request id " : "",
		x.request_id, x.request_id[0] ? "]" : "");
	if (e) {
		e->http_status = (int)rs->status;
		str_copy(e->s3_code, sizeof(e->s3_code), x.code);
	}
	buf_release(&s);
	return -1;
}

static int curl_error(const struct s3_client *c, const struct req *r, CURLcode rc,
		      const char *detail, unsigned attempts, struct err *e)
{
	struct buf s = BUF_INIT;

	subject(&s, r);
	err_set(e, rc == CURLE_OPERATION_TIMEDOUT ? ERR_TIMEOUT : ERR_NET,
		"%s: cannot reach %s://%s: %s%s (%u attempt%s)", s.data, c->scheme, c->host,
		detail[0] ? detail : curl_easy_strerror(rc), "", attempts, attempts == 1 ? "" : "s");
	buf_release(&s);
	return -1;
}

/* Rewinds what a failed attempt wrote, so the retry starts clean. */
static int rewind_output(const struct req *r, struct resp *rs)
{
	rs->sent = 0;
	rs->write_failed = 0;
	buf_reset(&rs->body);
	if (r->out_mem)
		buf_reset(r->out_mem);
	if (r->out_fd >= 0 && rs->written) {
		/* A pipe cannot take back what it got: no retry then. */
		if (ftruncate(r->out_fd, r->out_start) < 0 ||
		    lseek(r->out_fd, r->out_start, SEEK_SET) < 0)
			return -1;
	}
	rs->written = 0;
	return 0;
}

static int attempt(struct s3_client *c, CURL *h, const struct req *r, struct resp *rs,
		   CURLcode *rc, char *detail, struct err *e)
{
	struct curl_slist *list = NULL;
	struct buf url = BUF_INIT;

	if (prepare(c, r, &url, &list, e) < 0) {
		buf_release(&url);
		return -1;
	}
	curl_easy_reset(h);
	setup_handle(c, h, r, rs, url.data, list);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, detail);
	detail[0] = '\0';
	rs->status = 0;
	*rc = curl_easy_perform(h);
	count_attempt(c, r, *rc, rs->status);
	curl_slist_free_all(list);
	buf_release(&url);
	return 0;
}

static int perform(struct s3_client *c, const struct req *r, struct resp *rs, struct err *e)
{
	unsigned tries = c->cfg.retries + 1, i;
	char detail[CURL_ERROR_SIZE];
	CURL *h = take_handle(c);
	CURLcode rc = CURLE_OK;
	int ret = -1;

	rs->req = r;
	rs->src = r->body;
	buf_init_cap(&rs->body, S3_XML_MAX);
	for (i = 0; i < tries; i++) {
		if (i && (backoff(c, i - 1), rewind_output(r, rs) < 0)) {
			err_sys(e, ERR_IO, "cannot rewind the output for a retry");
			goto out;
		}
		if (attempt(c, h, r, rs, &rc, detail, e) < 0)
			goto out;
		if (rs->write_failed) {
			errno = rs->write_failed;
			err_sys(e, ERR_IO, "cannot write the downloaded data");
			goto out;
		}
		if (rc == CURLE_OK && (!r->idempotent || !retryable_status(rs->status, &rs->body)))
			break;
		if (rc != CURLE_OK && !retryable_curl(rc))
			break;
		/* A request that may have reached the server is sent again only if idempotent;
		 * one that never connected is always safe to send again. */
		if (rc != CURLE_OK && !r->idempotent && rc != CURLE_COULDNT_CONNECT &&
		    rc != CURLE_COULDNT_RESOLVE_HOST)
			break;
		if (r->body && r->body->cancel && *r->body->cancel)
			break;
	}
	if (rc == CURLE_ABORTED_BY_CALLBACK && r->body && r->body->cancel && *r->body->cancel)
		err_set(e, ERR_CANCELLED, "interrupted");
	else if (rc == CURLE_ABORTED_BY_CALLBACK && r->body && r->body->fd >= 0)
		err_set(e, ERR_IO, "cannot read the file to upload (did it shrink?)");
	else if (rc != CURLE_OK)
		curl_error(c, r, rc, detail, i < tries ? i + 1 : tries, e);
	else if (!ok_status(rs->status))
		http_error(r, rs, e);
	else
		ret = 0;
out:
	give_handle(c, h);
	return ret;
}

/* Performs r; 2xx answers fill info (when given) and keep their body in rs->body. */
static int request(struct s3_client *c, struct req *r, struct s3_object_info *info,
		   struct buf *xml, struct err *e)
{
	struct resp rs = { .info = info, .body = BUF_INIT };
	int ret;

	if (info)
		info->status = 0;
	ret = perform(c, r, &rs, e);
	if (info)
		info->status = (int)rs.status;
	if (ret == 0 && xml)
		buf_add(xml, rs.body.data, rs.body.len);
	buf_release(&rs.body);
	buf_release(&r->query);
	return ret;
}

static struct req req_init(enum s3_op op, const char *method, const char *bucket, const char *key)
{
	struct req r = { .op = op, .method = method, .bucket = bucket, .key = key, .out_fd = -1 };

	r.query = (struct buf)BUF_INIT;
	r.idempotent = strcmp(method, "POST") != 0;
	return r;
}

static void query_add(struct buf *q, const char *name, const char *value)
{
	buf_addf(q, "%s%s", q->len ? "&" : "", name);
	if (value) {
		buf_addch(q, '=');
		str_pct_encode(q, value, strlen(value), 0);
	}
}

/* ---- operations ------------------------------------------------------------------ */

/* Storage for the header lines an operation adds (names must outlive the request). */
struct hdrs {
	struct buf names[MAX_HEADERS / 2];
	size_t n;
};

static void hdrs_release(struct hdrs *hs)
{
	size_t i;

	for (i = 0; i < hs->n; i++)
		buf_release(&hs->names[i]);
}

static void add_put_headers(struct req *r, struct hdrs *hs, const struct s3_body *body,
			    const struct s3_put_opts *opts)
{
	size_t i;

	if (body && body->content_md5)
		add_header(r, "content-md5", body->content_md5);
	if (!opts)
		return;
	if (opts->content_type && *opts->content_type)
		add_header(r, "content-type", opts->content_type);
	for (i = 0; opts->metadata && opts->metadata[i] && opts->metadata[i + 1]; i += 2) {
		if (hs->n >= sizeof(hs->names) / sizeof(hs->names[0]))
			break;
		hs->names[hs->n] = (struct buf)BUF_INIT;
		buf_addf(&hs->names[hs->n], "x-amz-meta-%s", opts->metadata[i]);
		add_header(r, hs->names[hs->n].data, opts->metadata[i + 1]);
		hs->n++;
	}
}

int s3_put_object(struct s3_client *c, const char *bucket, const char *key,
		  const struct s3_body *body, const struct s3_put_opts *opts,
		  struct s3_object_info *info, struct err *e)
{
	struct req r = req_init(S3_OP_PUT_OBJECT, "PUT", bucket, key);
	struct s3_body empty = S3_BODY_INIT;
	struct hdrs hs = { .n = 0 };
	int ret;

	r.body = body ? body : &empty;
	add_put_headers(&r, &hs, r.body, opts);
	ret = request(c, &r, info, NULL, e);
	hdrs_release(&hs);
	return ret;
}

static void add_get_headers(struct req *r, const struct s3_get_opts *opts, char *range,
			    size_t range_size, char *if_match, size_t if_match_size)
{
	if (!opts)
		return;
	r->get = opts;
	if (opts->if_match && *opts->if_match) {
		/* The header wants the quotes; events give the ETag without them. */
		const char *t = opts->if_match + (opts->if_match[0] == '"');
		snprintf(if_match, if_match_size, "\"%.*s\"", (int)strcspn(t, "\""), t);
		add_header(r, "if-match", if_match);
	}
	if (opts->range_len) {
		snprintf(range, range_size, "bytes=%llu-%llu", (unsigned long long)opts->range_start,
			 (unsigned long long)(opts->range_start + opts->range_len - 1));
		add_header(r, "range", range);
	}
}

int s3_get_object(struct s3_client *c, const char *bucket, const char *key, int fd,
		  const struct s3_get_opts *opts, struct s3_object_info *info, struct err *e)
{
	struct req r = req_init(S3_OP_GET_OBJECT, "GET", bucket, key);
	char range[64], if_match[160];

	r.out_fd = fd;
	r.out_start = lseek(fd, 0, SEEK_CUR);
	if (r.out_start < 0)
		r.out_start = 0;
	add_get_headers(&r, opts, range, sizeof(range), if_match, sizeof(if_match));
	return request(c, &r, info, NULL, e);
}

int s3_get_object_mem(struct s3_client *c, const char *bucket, const char *key, size_t cap,
		      struct buf *out, struct s3_object_info *info, struct err *e)
{
	struct req r = req_init(S3_OP_GET_OBJECT, "GET", bucket, key);
	size_t old_cap = out->cap;
	int ret;

	out->cap = cap;
	r.out_mem = out;
	ret = request(c, &r, info, NULL, e);
	out->cap = old_cap;
	if (ret < 0 && e && e->code == ERR_NET && out->len >= cap) {
		err_clear(e);
		err_set(e, ERR_LIMIT, "s3://%s/%s is larger than %zu bytes", bucket, SHORT(key),
			cap);
	}
	return ret;
}

int s3_head_object(struct s3_client *c, const char *bucket, const char *key,
		   const struct s3_get_opts *opts, struct s3_object_info *info, struct err *e)
{
	struct req r = req_init(S3_OP_HEAD_OBJECT, "HEAD", bucket, key);
	char range[64], if_match[160];

	add_get_headers(&r, opts, range, sizeof(range), if_match, sizeof(if_match));
	return request(c, &r, info, NULL, e);
}

int s3_delete_object(struct s3_client *c, const char *bucket, const char *key, struct err *e)
{
	struct req r = req_init(S3_OP_DELETE_OBJECT, "DELETE", bucket, key);

	return request(c, &r, NULL, NULL, e);
}

/* Some answers are 200 with an <Error> body (Copy, CompleteMultipartUpload). */
static int check_embedded_error(const struct req *r, const struct buf *xml, struct err *e)
{
	struct resp rs = { .status = 200, .body = *xml };
	struct s3_xml_error x;

	if (s3_xml_parse_error(xml->data, xml->len, &x) < 0)
		return 0;
	return http_error(r, &rs, e);
}

/* Performs a request whose 200 answer is XML that may hold an <Error>, or the new ETag. */
static int request_xml_result(struct s3_client *c, struct req *r, struct s3_object_info *info,
			      struct err *e)
{
	struct buf xml = BUF_INIT;
	int ret = request(c, r, info, &xml, e);

	if (ret == 0)
		ret = check_embedded_error(r, &xml, e);
	if (ret == 0 && info &&
	    s3_xml_find_text(xml.data, xml.len, "ETag", info->etag, sizeof(info->etag)) == 0)
		strip_quotes(info->etag);
	buf_release(&xml);
	return ret;
}

int s3_copy_object(struct s3_client *c, const char *src_bucket, const char *src_key,
		   const char *bucket, const char *key, struct s3_object_info *info,
		   struct err *e)
{
	struct req r = req_init(S3_OP_COPY_OBJECT, "PUT", bucket, key);
	struct buf src = BUF_INIT;
	int ret;

	buf_addf(&src, "/%s/", src_bucket);
	str_pct_encode(&src, src_key, strlen(src_key), 1);
	add_header(&r, "x-amz-copy-source", src.data);
	ret = request_xml_result(c, &r, info, e);
	buf_release(&src);
	return ret;
}

int s3_create_bucket(struct s3_client *c, const char *bucket, struct err *e)
{
	struct req r = req_init(S3_OP_CREATE_BUCKET, "PUT", bucket, NULL);

	return request(c, &r, NULL, NULL, e);
}

int s3_delete_bucket(struct s3_client *c, const char *bucket, struct err *e)
{
	struct req r = req_init(S3_OP_DELETE_BUCKET, "DELETE", bucket, NULL);

	return request(c, &r, NULL, NULL, e);
}

void s3_list_page_release(struct s3_list_page *page)
{
	size_t i;

	for (i = 0; i < page->n_entries; i++)
		free(page->entries[i].key);
	for (i = 0; i < page->n_prefixes; i++)
		free(page->prefixes[i]);
	free(page->entries);
	free(page->prefixes);
	free(page->next_token);
	memset(page, 0, sizeof(*page));
}

int s3_list_objects(struct s3_client *c, const char *bucket, const struct s3_list_opts *opts,
		    struct s3_list_page *page, struct err *e)
{
	struct req r = req_init(S3_OP_LIST_OBJECTS, "GET", bucket, NULL);
	struct buf xml = BUF_INIT;
	char max[16];
	int ret;

	s3_list_page_release(page);
	query_add(&r.query, "list-type", "2");
	/* Keys may hold bytes XML 1.0 cannot carry (a newline): ask for them encoded. */
	query_add(&r.query, "encoding-type", "url");
	if (opts && opts->prefix && *opts->prefix)
		query_add(&r.query, "prefix", opts->prefix);
	if (opts && opts->delimiter && *opts->delimiter)
		query_add(&r.query, "delimiter", opts->delimiter);
	if (opts && opts->start_after && *opts->start_after)
		query_add(&r.query, "start-after", opts->start_after);
	if (opts && opts->token && *opts->token)
		query_add(&r.query, "continuation-token", opts->token);
	if (opts && opts->max_keys) {
		snprintf(max, sizeof(max), "%u", opts->max_keys);
		query_add(&r.query, "max-keys", max);
	}
	ret = request(c, &r, NULL, &xml, e);
	if (ret == 0 && s3_xml_parse_list(xml.data, xml.len, 1, page, e) < 0) {
		err_prefix(e, "GET s3://%s", bucket);
		ret = -1;
	}
	buf_release(&xml);
	return ret;
}

int s3_mpu_create(struct s3_client *c, const char *bucket, const char *key,
		  const struct s3_put_opts *opts, char **upload_id, struct err *e)
{
	struct req r = req_init(S3_OP_MPU_CREATE, "POST", bucket, key);
	struct buf xml = BUF_INIT;
	struct hdrs hs = { .n = 0 };
	char id[1024];
	int ret;

	query_add(&r.query, "uploads", NULL);
	add_put_headers(&r, &hs, NULL, opts);
	ret = request(c, &r, NULL, &xml, e);
	if (ret == 0 && s3_xml_find_text(xml.data, xml.len, "UploadId", id, sizeof(id)) < 0)
		ret = err_set(e, ERR_PARSE, "POST s3://%s/%s?uploads: no UploadId in the answer",
			      bucket, SHORT(key));
	if (ret == 0)
		*upload_id = xstrdup(id);
	hdrs_release(&hs);
	buf_release(&xml);
	return ret;
}

int s3_mpu_upload_part(struct s3_client *c, const char *bucket, const char *key,
		       const char *upload_id, unsigned part, const struct s3_body *body,
		       char etag[128], struct err *e)
{
	struct req r = req_init(S3_OP_MPU_PART, "PUT", bucket, key);
	struct s3_object_info info = S3_OBJECT_INFO_INIT;
	char num[16];
	int ret;

	snprintf(num, sizeof(num), "%u", part);
	query_add(&r.query, "partNumber", num);
	query_add(&r.query, "uploadId", upload_id);
	r.body = body;
	if (body->content_md5)
		add_header(&r, "content-md5", body->content_md5);
	ret = request(c, &r, &info, NULL, e);
	if (ret == 0 && !info.etag[0])
		ret = err_set(e, ERR_PARSE, "PUT s3://%s/%s part %u: no ETag in the answer", bucket,
			      SHORT(key), part);
	if (ret == 0)
		snprintf(etag, 128, "%s", info.etag);
	s3_object_info_release(&info);
	return ret;
}

int s3_mpu_complete(struct s3_client *c, const char *bucket, const char *key,
		    const char *upload_id, const struct s3_part *parts, size_t n_parts,
		    struct s3_object_info *info, struct err *e)
{
	struct req r = req_init(S3_OP_MPU_COMPLETE, "POST", bucket, key);
	struct buf doc = BUF_INIT;
	struct s3_body body = S3_BODY_INIT;
	size_t i;
	int ret;

	query_add(&r.query, "uploadId", upload_id);
	buf_adds(&doc, "<CompleteMultipartUpload>");
	for (i = 0; i < n_parts; i++)
		buf_addf(&doc, "<Part><PartNumber>%u</PartNumber><ETag>\"%s\"</ETag></Part>",
			 parts[i].number, parts[i].etag);
	buf_adds(&doc, "</CompleteMultipartUpload>");
	body.data = doc.data;
	body.len = doc.len;
	r.body = &body;
	/* Completing the same parts twice gives the same object: safe to retry. */
	r.idempotent = 1;
	ret = request_xml_result(c, &r, info, e);
	buf_release(&doc);
	return ret;
}

int s3_mpu_abort(struct s3_client *c, const char *bucket, const char *key,
		 const char *upload_id, struct err *e)
{
	struct req r = req_init(S3_OP_MPU_ABORT, "DELETE", bucket, key);

	query_add(&r.query, "uploadId", upload_id);
	return request(c, &r, NULL, NULL, e);
}

int s3_mpu_list_parts(struct s3_client *c, const char *bucket, const char *key,
		      const char *upload_id, struct s3_part **parts, size_t *n_parts,
		      struct err *e)
{
	unsigned marker = 0;
	char num[16];
	int ret = 0;

	*parts = NULL;
	*n_parts = 0;
	do {
		struct req r = req_init(S3_OP_MPU_LIST_PARTS, "GET", bucket, key);
		struct buf xml = BUF_INIT;
		query_add(&r.query, "uploadId", upload_id);
		if (marker) {
			snprintf(num, sizeof(num), "%u", marker);
			query_add(&r.query, "part-number-marker", num);
		}
		ret = request(c, &r, NULL, &xml, e);
		if (ret == 0)
			ret = s3_xml_parse_parts(xml.data, xml.len, parts, n_parts, &marker, e);
		buf_release(&xml);
	} while (ret == 0 && marker);
	if (ret < 0) {
		free(*parts);
		*parts = NULL;
		*n_parts = 0;
	}
	return ret;
}

int s3_presign(struct s3_client *c, const char *method, const char *bucket, const char *key,
	       unsigned expires, char **url, struct err *e)
{
	struct sigv4_request sr = { .method = method, .region = c->cfg.region, .service = "s3" };
	struct req r = req_init(S3_OP_GET_OBJECT, method, bucket, key);
	struct buf path = BUF_INIT, host = BUF_INIT, q = BUF_INIT, u = BUF_INIT;
	struct creds *cr = creds_get(c, e);
	struct sigv4_creds creds;
	struct sigv4_header h;
	int ret;

	if (!cr)
		return -1;
	creds = (struct sigv4_creds){ cr->access_key, cr->secret_key, cr->session_token };
	build_path(c, &r, &path);
	build_host(c, &r, &host);
	h = (struct sigv4_header){ "host", host.data };
	sr.when = c->cfg.clock ? c->cfg.clock() : time(NULL);
	sr.path = path.data;
	sr.headers = &h;
	sr.n_headers = 1;
	ret = sigv4_presign(&q, &sr, &creds, expires, e);
	if (ret == 0) {
		buf_addf(&u, "%s://%s", c->scheme, host.data);
		sigv4_canon_path(&u, path.data);
		buf_addf(&u, "?%s", q.data);
		*url = buf_detach(&u, NULL);
	}
	buf_release(&path);
	buf_release(&host);
	buf_release(&q);
	buf_release(&u);
	buf_release(&r.query);
	creds_put(c, cr);
	return ret;
}

/* ---- small helpers ---------------------------------------------------------------- */

void s3_object_info_release(struct s3_object_info *info)
{
	buf_release(&info->metadata);
}

const char *s3_object_info_meta(const struct s3_object_info *info, const char *name, char *out,
				size_t size)
{
	size_t n = strlen(name);
	const char *p = info->metadata.data;

	while (p && *p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		if (len > n && strncmp(p, name, n) == 0 && p[n] == '=') {
			snprintf(out, size, "%.*s", (int)(len - n - 1), p + n + 1);
			return out;
		}
		p = eol ? eol + 1 : NULL;
	}
	return NULL;
}

int s3_parse_url(const char *url, char **bucket, char **key, struct err *e)
{
	const char *p, *slash;

	if (!str_starts_with(url, "s3://"))
		return err_set(e, ERR_USAGE, "'%s' is not an s3://BUCKET[/KEY] URL", SHORT(url));
	p = url + 5;
	slash = strchr(p, '/');
	if ((slash ? (size_t)(slash - p) : strlen(p)) == 0)
		return err_set(e, ERR_USAGE, "'%s' names no bucket", SHORT(url));
	*bucket = slash ? xstrndup(p, (size_t)(slash - p)) : xstrdup(p);
	*key = xstrdup(slash ? slash + 1 : "");
	return 0;
}

int s3_etag_eq(const char *a, const char *b)
{
	size_t la, lb;

	if (*a == '"')
		a++;
	if (*b == '"')
		b++;
	la = strcspn(a, "\"");
	lb = strcspn(b, "\"");
	return la == lb && strncmp(a, b, la) == 0;
}
