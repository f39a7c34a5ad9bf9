/*
 * s3_client: requests to one S3-compatible endpoint over libcurl.
 *
 * The client signs every request (SigV4), reuses connections (a pool of curl
 * handles, one per request in flight), retries idempotent requests on
 * connection errors and on 500/502/503/504 with exponential backoff and
 * jitter, and turns S3's error XML into a `struct err` with the S3 code,
 * message, HTTP status and request id. It knows nothing of events or
 * handlers, and it never prints: errors come back to the caller.
 *
 * Thread-safe: any number of threads may issue requests on one client.
 *
 *	struct s3_config cfg = S3_CONFIG_INIT;
 *	s3_config_load(&cfg, ini, &e);          (or fill it in by hand)
 *	struct s3_client *c = s3_client_new(&cfg, &e);
 *	s3_put_object(c, "bucket", "key", &body, &opts, &info, &e);
 *	s3_client_free(c);
 *	s3_config_release(&cfg);
 */
#ifndef S3HOOK_S3_CLIENT_H
#define S3HOOK_S3_CLIENT_H

#include "core/buf.h"

#include <signal.h>
#include <stdint.h>
#include <time.h>

struct err;
struct ini;

enum s3_addressing { S3_ADDR_AUTO, S3_ADDR_PATH, S3_ADDR_VIRTUAL };

/* Everything the client needs; strings are owned (freed by s3_config_release). */
struct s3_config {
	char *endpoint;	      /* "" or NULL: AWS (https://s3.REGION.amazonaws.com) */
	char *region;	      /* "us-east-1" when unset */
	enum s3_addressing addressing;
	char *ca_bundle;      /* NULL: the system's */
	char *access_key;
	char *secret_key;
	char *session_token;
	unsigned connect_timeout_ms; /* default 10 s */
	unsigned stall_timeout_ms;   /* a transfer slower than 1 KiB/s this long fails; 30 s */
	unsigned request_timeout_ms; /* whole request for small requests; 0: none; 5 min */
	unsigned retries;	     /* extra attempts for idempotent requests; default 4 */
	unsigned retry_base_ms;	     /* first backoff; default 200 ms, doubling, with jitter */
	time_t (*clock)(void);	     /* signing time; time() when NULL */
	/*
	 * Where the keys came from, so that a client that lives long (serve) can
	 * fetch them again: the ~/.aws profile when they came from its files or its
	 * credential_process (NULL: from the environment or flags, never re-read),
	 * and when they expire (0: never; credential_process's Expiration).
	 */
	char *profile;
	time_t expires;
};

#define S3_CONFIG_INIT                                                                             \
	{                                                                                          \
		.addressing = S3_ADDR_AUTO, .connect_timeout_ms = 10000,                           \
		.stall_timeout_ms = 30000, .request_timeout_ms = 300000, .retries = 4,             \
		.retry_base_ms = 200                                                               \
	}

/*
 * Fills cfg from the [s3] section of the s3hook config (may be NULL), then
 * the credentials chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 * AWS_SESSION_TOKEN, else the profile AWS_PROFILE (default "default") in
 * ~/.aws/credentials and ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE and
 * AWS_CONFIG_FILE move them), which may also give region and endpoint_url.
 * Values already set in cfg (from flags) are kept.
 */
int s3_config_load(struct s3_config *cfg, const struct ini *conf, struct err *e);
void s3_config_release(struct s3_config *cfg);

/*
 * The credentials of cfg->profile as the ~/.aws files give them now, in the
 * order awscli takes them: aws_access_key_id in ~/.aws/credentials, else the
 * profile's credential_process (run without a shell; its stdout is the JSON
 * {"Version":1,"AccessKeyId":..,"SecretAccessKey":..,"SessionToken":..,
 * "Expiration":"2030-01-01T00:00:00Z"}), else the keys in ~/.aws/config.
 * Replaces cfg's keys, token and expiry only when it succeeds. Does nothing
 * when cfg->profile is NULL. The client calls it itself (see s3_client_new).
 */
int s3_config_refresh(struct s3_config *cfg, struct err *e);

/* A number that changes when ~/.aws/credentials or ~/.aws/config changes (or appears). */
uint64_t s3_config_files_stamp(void);

/*
 * A client for cfg (copied). When the keys came from a profile, the client
 * fetches them again by itself (s3_config_refresh) before they expire (5
 * minutes before, or half their lifetime when that is shorter) and when the
 * ~/.aws files change (looked at once a second at most, when a request is
 * made); requests under way keep the keys they were signed with. A failed
 * refresh keeps the old keys while they last and is tried again 10 s later;
 * once they have expired, requests fail with the refresh's error.
 */
struct s3_client *s3_client_new(const struct s3_config *cfg, struct err *e);
void s3_client_free(struct s3_client *c);

/* The operations the client counts requests of (struct s3_stats). */
enum s3_op {
	S3_OP_GET_OBJECT,
	S3_OP_HEAD_OBJECT,
	S3_OP_PUT_OBJECT,
	S3_OP_COPY_OBJECT,
	S3_OP_DELETE_OBJECT,
	S3_OP_LIST_OBJECTS,
	S3_OP_CREATE_BUCKET,
	S3_OP_DELETE_BUCKET,
	S3_OP_MPU_CREATE,
	S3_OP_MPU_PART,
	S3_OP_MPU_COMPLETE,
	S3_OP_MPU_ABORT,
	S3_OP_MPU_LIST_PARTS,
	S3_OP_N
};

/* How an attempt ended: the class of the HTTP status, or no answer at all. */
enum s3_status_class { S3_ST_2XX, S3_ST_3XX, S3_ST_4XX, S3_ST_5XX, S3_ST_ERROR, S3_ST_N };

/*
 * Requests sent since s3_client_new(), each attempt counted (a retried
 * request counts once per try), by operation and status class. Only grow.
 */
struct s3_stats {
	uint64_t requests[S3_OP_N][S3_ST_N];
	uint64_t credential_refreshes;
	uint64_t credential_failures;
};

/* A snapshot of the counters (each read atomically). */
void s3_client_stats(struct s3_client *c, struct s3_stats *out);

/* "GetObject", "PutObject", ... (the S3 API's names); "2xx", ..., "error". */
const char *s3_op_name(enum s3_op op);
const char *s3_status_class_name(enum s3_status_class s);

/* A request body: nothing, bytes in memory, or a range of a file read with pread. */
struct s3_body {
	const void *data;
	size_t len;	 /* bytes of data, or of the file range */
	int fd;		 /* >= 0: read the range [offset, offset+len) of this file */
	uint64_t offset;
	const char *content_md5; /* base64 MD5 to send as Content-MD5, or NULL */
	/* Called with each chunk as it is sent (progress); may be NULL. */
	void (*on_sent)(void *arg, size_t n);
	void *arg;
	/* When it points at non-zero, the transfer stops at once (Ctrl-C). */
	volatile sig_atomic_t *cancel;
};

#define S3_BODY_INIT { .fd = -1 }

/* Optional headers of a write. */
struct s3_put_opts {
	const char *content_type;
	const char *const *metadata; /* "name", "value", ..., NULL (x-amz-meta- added) */
};

/* What a HEAD, GET or write tells about the object. */
struct s3_object_info {
	int status;		/* HTTP status */
	char etag[128];		/* without quotes */
	uint64_t size;
	char content_type[256];
	char version_id[256];
	time_t last_modified;
	struct buf metadata;	/* "name=value\n" lines of x-amz-meta-*, names lower case */
};

#define S3_OBJECT_INFO_INIT { .metadata = BUF_INIT }
void s3_object_info_release(struct s3_object_info *info);

/* The value of one x-amz-meta-NAME from info, or NULL; copies into out. */
const char *s3_object_info_meta(const struct s3_object_info *info, const char *name, char *out,
				size_t size);

int s3_put_object(struct s3_client *c, const char *bucket, const char *key,
		  const struct s3_body *body, const struct s3_put_opts *opts,
		  struct s3_object_info *info, struct err *e);

/* Conditions and range of a read; all optional. */
struct s3_get_opts {
	const char *if_match; /* ETag, with or without quotes: 412 -> ERR_CONFLICT */
	uint64_t range_start; /* with range_len > 0 */
	uint64_t range_len;
	/* Called with each chunk as it arrives (progress); may be NULL. */
	void (*on_received)(void *arg, size_t n);
	void *arg;
};

/*
 * Writes the object (or range) into fd, which must be at the position to
 * write from; on a retry the file is truncated back to that position.
 * 404 fails with ERR_NOTFOUND, a failed If-Match with ERR_CONFLICT.
 */
int s3_get_object(struct s3_client *c, const char *bucket, const char *key, int fd,
		  const struct s3_get_opts *opts, struct s3_object_info *info, struct err *e);

/* Reads an object of at most `cap` bytes into memory. */
int s3_get_object_mem(struct s3_client *c, const char *bucket, const char *key, size_t cap,
		      struct buf *out, struct s3_object_info *info, struct err *e);

int s3_head_object(struct s3_client *c, const char *bucket, const char *key,
		   const struct s3_get_opts *opts, struct s3_object_info *info, struct err *e);

int s3_delete_object(struct s3_client *c, const char *bucket, const char *key, struct err *e);

int s3_copy_object(struct s3_client *c, const char *src_bucket, const char *src_key,
		   const char *bucket, const char *key, struct s3_object_info *info,
		   struct err *e);

int s3_create_bucket(struct s3_client *c, const char *bucket, struct err *e);
int s3_delete_bucket(struct s3_client *c, const char *bucket, struct err *e);

/* One object of a listing. */
struct s3_entry {
	char *key; /* decoded */
	uint64_t size;
	char etag[128]; /* without quotes */
	time_t last_modified;
};

/* One page of ListObjectsV2. */
struct s3_list_page {
	struct s3_entry *entries;
	size_t n_entries;
	char **prefixes; /* common prefixes when a delimiter was given */
	size_t n_prefixes;
	int truncated;
	char *next_token; /* continuation token when truncated */
};

#define S3_LIST_PAGE_INIT { 0 }
void s3_list_page_release(struct s3_list_page *page);

struct s3_list_opts {
	const char *prefix;
	const char *delimiter;
	const char *start_after;
	const char *token; /* continuation token of the previous page */
	unsigned max_keys; /* 0: the server's default (1,000) */
};

int s3_list_objects(struct s3_client *c, const char *bucket, const struct s3_list_opts *opts,
		    struct s3_list_page *page, struct err *e);

/* Multipart uploads. */
int s3_mpu_create(struct s3_client *c, const char *bucket, const char *key,
		  const struct s3_put_opts *opts, char **upload_id, struct err *e);

/* Uploads one part; `etag` (128 bytes) receives its ETag without quotes. */
int s3_mpu_upload_part(struct s3_client *c, const char *bucket, const char *key,
		       const char *upload_id, unsigned part, const struct s3_body *body,
		       char etag[128], struct err *e);

struct s3_part {
	unsigned number;
	char etag[128]; /* without quotes */
	uint64_t size;
};

int s3_mpu_complete(struct s3_client *c, const char *bucket, const char *key,
		    const char *upload_id, const struct s3_part *parts, size_t n_parts,
		    struct s3_object_info *info, struct err *e);

int s3_mpu_abort(struct s3_client *c, const char *bucket, const char *key,
		 const char *upload_id, struct err *e);

/* Every part uploaded so far (all pages); *parts is the caller's (free()). */
int s3_mpu_list_parts(struct s3_client *c, const char *bucket, const char *key,
		      const char *upload_id, struct s3_part **parts, size_t *n_parts,
		      struct err *e);

/*
 * A presigned URL for GET (or PUT) of bucket/key valid `expires` seconds.
 * *url is the caller's.
 */
int s3_presign(struct s3_client *c, const char *method, const char *bucket, const char *key,
	       unsigned expires, char **url, struct err *e);

/* Parses "s3://bucket/key" or "s3://bucket" into owned strings (key "" when none). */
int s3_parse_url(const char *url, char **bucket, char **key, struct err *e);

/* Compares ETags, ignoring surrounding quotes. */
int s3_etag_eq(const char *a, const char *b);

#endif
