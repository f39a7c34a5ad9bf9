/*
 * transfer: uploading many files at once, the engine behind `s3hook upload`.
 *
 * `concurrency` threads share one queue of requests across all files and
 * across the parts of each file, over the client's reused connections. A
 * file above `multipart_threshold` goes multipart with parts read by pread,
 * never whole in memory, so memory stays flat whatever the sizes. Each body
 * is sent with Content-MD5 (a pre-pass over its bytes) and, where the
 * server's ETag is an MD5, the ETag is checked against the local one.
 *
 * A multipart upload that fails or is cancelled is aborted on the server,
 * unless `resume` is set: then it is kept, with a small state file under
 * `state_dir`, and the same upload run again continues it (ListParts, each
 * part's ETag checked against the local bytes) instead of starting over.
 *
 *	struct s3_upload_item items[n] = { { .path = "a.jpg", .bucket = "b", .key = "k" } };
 *	struct s3_upload_opts o = S3_UPLOAD_OPTS_INIT;
 *	s3_upload_files(client, items, n, &o);
 *	items[i].err tells how each went; s3_upload_item_release() each.
 */
#ifndef S3HOOK_S3_TRANSFER_H
#define S3HOOK_S3_TRANSFER_H

#include "core/err.h"

#include <signal.h>
#include <stdint.h>

struct s3_client;

struct s3_upload_item {
	/* in: the caller's, borrowed for the call */
	const char *path;
	const char *bucket;
	char *key; /* owned; with resume, replaced by the key of the upload being resumed */
	const char *content_type;
	/* What the user asked for ("s3://bucket/prefix/"), naming the upload for resume. */
	const char *dest;
	/* out */
	int done;	/* uploaded and verified */
	int resumed;	/* continued an earlier multipart upload */
	uint64_t size;
	char etag[128];
	struct err err; /* why it failed, when !done */
};

void s3_upload_item_release(struct s3_upload_item *item);

struct s3_upload_opts {
	unsigned concurrency;	      /* requests in flight in total; default 8 */
	uint64_t multipart_threshold; /* default 64 MiB */
	uint64_t part_size;	      /* 0: 8 MiB, raised so no file needs over 10,000 parts */
	int resume;
	const char *state_dir; /* for resume; $XDG_STATE_HOME/s3hook by default */
	const char *const *metadata; /* "name", "value", ..., NULL */
	/* Set to non-zero (e.g. from a SIGINT handler) to stop: transfers end at once. */
	volatile sig_atomic_t *cancel;
	/* Called from worker threads (one at a time) as bytes go out and as files end. */
	void (*on_progress)(void *arg, uint64_t sent, uint64_t total);
	void (*on_file_done)(void *arg, const struct s3_upload_item *item);
	void *arg;
};

#define S3_UPLOAD_OPTS_INIT { .concurrency = 8, .multipart_threshold = 64ULL << 20 }

/* Uploads every item; returns the number that failed (see each item's err). */
size_t s3_upload_files(struct s3_client *c, struct s3_upload_item *items, size_t n,
		       const struct s3_upload_opts *opts);

/* The part size for a file: at least `want` (8 MiB when 0), at most 10,000 parts. */
uint64_t s3_part_size(uint64_t file_size, uint64_t want);

/* "PREFIX" + 32 lowercase hex digits of a random UUID + "/" + basename(path). */
char *s3_upload_key(const char *prefix, const char *path);

/* A Content-Type for a file name, "application/octet-stream" when unknown. */
const char *s3_content_type(const char *name);

/* Hex MD5 of a file range, and the base64 form of the same digest (25 bytes). */
int s3_md5_range(int fd, uint64_t offset, uint64_t len, unsigned char md5[16], struct err *e);
void s3_md5_base64(char out[25], const unsigned char md5[16]);

/*
 * The ETag S3 gives a multipart upload: MD5 of the parts' binary MD5s, then
 * "-N". `md5s` holds n 16-byte digests.
 */
void s3_multipart_etag(char out[48], const unsigned char *md5s, size_t n);

#endif
