#include "s3/transfer.h"

#include "core/buf.h"
#include "core/str.h"
#include "s3/client.h"
#include "s3/sigv4.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#define MIB (1ULL << 20)
#define MAX_PARTS 10000u
#define READ_CHUNK (256u << 10)

/* One multipart file in flight. */
struct mp_file {
	struct s3_upload_item *item;
	int fd;
	uint64_t part_size;
	unsigned n_parts;
	unsigned next_part; /* next part to hand out, 0-based */
	unsigned parts_left; /* parts not finished yet */
	char *upload_id;
	struct s3_part *parts;
	unsigned char *md5s; /* 16 bytes per part */
	unsigned char *have; /* part already on the server (resume) */
	int failed;
	char *state_path;
	struct mp_file *next;
};

struct engine {
	pthread_mutex_t lock;
	struct s3_client *c;
	const struct s3_upload_opts *o;
	struct s3_upload_item *items;
	size_t n_items, next_item, failed;
	struct mp_file *active;
	uint64_t sent, total;
};

void s3_upload_item_release(struct s3_upload_item *item)
{
	free(item->key);
	item->key = NULL;
}

uint64_t s3_part_size(uint64_t file_size, uint64_t want)
{
	uint64_t size = want ? want : 8 * MIB, min = (file_size + MAX_PARTS - 1) / MAX_PARTS;

	if (size < 5 * MIB)
		size = 5 * MIB;
	if (size < min)
		size = (min + MIB - 1) / MIB * MIB;
	return size;
}

char *s3_upload_key(const char *prefix, const char *path)
{
	const char *base = strrchr(path, '/');
	unsigned char u[16];
	char hex[33];
	char *key;

	uuid_generate_random(u);
	str_hex(hex, u, sizeof(u));
	base = base ? base + 1 : path;
	if (asprintf(&key, "%s%s/%s", prefix, hex, base) < 0)
		abort();
	return key;
}

const char *s3_content_type(const char *name)
{
	static const char *const types[] = {
		".jpg",	 "image/jpeg",	    ".jpeg", "image/jpeg",	 ".png",  "image/png",
		".gif",	 "image/gif",	    ".webp", "image/webp",	 ".tif",  "image/tiff",
		".tiff", "image/tiff",	    ".svg",  "image/svg+xml",	 ".avif", "image/avif",
		".heic", "image/heic",	    ".bmp",  "image/bmp",	 ".ico",  "image/x-icon",
		".pdf",	 "application/pdf", ".txt",  "text/plain",	 ".md",	  "text/markdown",
		".csv",	 "text/csv",	    ".html", "text/html",	 ".htm",  "text/html",
		".css",	 "text/css",	    ".js",   "text/javascript", ".json", "application/json",
		".xml",	 "application/xml", ".zip",  "application/zip", ".gz",	  "application/gzip",
		".tar",	 "application/x-tar", ".mp4", "video/mp4",	 ".webm", "video/webm",
		".mov",	 "video/quicktime", ".mp3",  "audio/mpeg",	 ".wav",  "audio/wav",
		".ogg",	 "audio/ogg",	    ".doc",  "application/msword",
		".docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
		NULL,
	};
	const char *dot = strrchr(name, '.');
	size_t i;

	for (i = 0; dot && types[i]; i += 2)
		if (strcasecmp(dot, types[i]) == 0)
			return types[i + 1];
	return "application/octet-stream";
}

int s3_md5_range(int fd, uint64_t offset, uint64_t len, unsigned char md5[16], struct err *e)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char *chunk = malloc(READ_CHUNK);
	uint64_t done = 0;
	int r = -1;

	if (!ctx || !chunk)
		abort();
	EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
	while (done < len) {
		size_t want = len - done < READ_CHUNK ? (size_t)(len - done) : READ_CHUNK;
		ssize_t n = pread(fd, chunk, want, (off_t)(offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			err_sys(e, ERR_IO, "cannot read the file");
			goto out;
		}
		EVP_DigestUpdate(ctx, chunk, (size_t)n);
		done += (uint64_t)n;
	}
	EVP_DigestFinal_ex(ctx, md5, NULL);
	r = 0;
out:
	EVP_MD_CTX_free(ctx);
	free(chunk);
	return r;
}

void s3_md5_base64(char out[25], const unsigned char md5[16])
{
	EVP_EncodeBlock((unsigned char *)out, md5, 16);
}

void s3_multipart_etag(char out[48], const unsigned char *md5s, size_t n)
{
	unsigned char md[16];
	char hex[33];

	EVP_Digest(md5s, n * 16, md, NULL, EVP_md5(), NULL);
	str_hex(hex, md, sizeof(md));
	snprintf(out, 48, "%s-%zu", hex, n);
}

/* Whether a server ETag is an MD5 we can compare: 32 hex digits, then "-N" or nothing. */
static int etag_is_md5(const char *etag, int multipart)
{
	size_t n = strspn(etag, "0123456789abcdefABCDEF");

	if (n != 32)
		return 0;
	return multipart ? etag[32] == '-' : etag[32] == '\0';
}

/* ---- progress ------------------------------------------------------------------- */

static void on_sent(void *arg, size_t n)
{
	struct engine *g = arg;

	pthread_mutex_lock(&g->lock);
	g->sent += n;
	if (g->o->on_progress)
		g->o->on_progress(g->o->arg, g->sent, g->total);
	pthread_mutex_unlock(&g->lock);
}

static void file_done(struct engine *g, struct s3_upload_item *item)
{
	pthread_mutex_lock(&g->lock);
	if (!item->done)
		g->failed++;
	if (g->o->on_file_done)
		g->o->on_file_done(g->o->arg, item);
	pthread_mutex_unlock(&g->lock);
}

static int cancelled(const struct engine *g)
{
	return g->o->cancel && *g->o->cancel;
}

static struct s3_body body_for(struct engine *g, int fd, uint64_t off, uint64_t len,
			       const char *md5b64)
{
	struct s3_body b = S3_BODY_INIT;

	b.fd = fd;
	b.offset = off;
	b.len = len;
	b.content_md5 = md5b64;
	b.on_sent = on_sent;
	b.arg = g;
	b.cancel = g->o->cancel;
	return b;
}

static void put_opts(const struct engine *g, const struct s3_upload_item *item,
		     struct s3_put_opts *po)
{
	po->content_type = item->content_type ? item->content_type : s3_content_type(item->path);
	po->metadata = g->o->metadata;
}

/* ---- single PUT ------------------------------------------------------------------ */

static void upload_single(struct engine *g, struct s3_upload_item *item, int fd)
{
	struct s3_object_info info = S3_OBJECT_INFO_INIT;
	struct s3_put_opts po = { 0 };
	unsigned char md5[16];
	char b64[25], hex[33];
	struct s3_body b;

	if (s3_md5_range(fd, 0, item->size, md5, &item->err) < 0)
		return;
	s3_md5_base64(b64, md5);
	str_hex(hex, md5, sizeof(md5));
	b = body_for(g, fd, 0, item->size, b64);
	put_opts(g, item, &po);
	if (s3_put_object(g->c, item->bucket, item->key, &b, &po, &info, &item->err) == 0) {
		str_copy(item->etag, sizeof(item->etag), info.etag);
		if (etag_is_md5(info.etag, 0) && strcasecmp(info.etag, hex) != 0)
			err_set(&item->err, ERR_INTEGRITY,
				"s3://%s/%s: the server's ETag %s is not the MD5 of the file (%s)",
				item->bucket, SHORT(item->key), info.etag, hex);
		else
			item->done = 1;
	}
	s3_object_info_release(&info);
}

/* ---- resume state ------------------------------------------------------------------ */

/* state_dir/<sha256 of path, size, mtime and destination>.json */
static char *state_path(const struct engine *g, const struct s3_upload_item *item,
			const struct stat *st)
{
	const char *dir = g->o->state_dir;
	char abs[PATH_MAX], hash[65], *path;
	struct buf id = BUF_INIT;

	if (!realpath(item->path, abs))
		str_copy(abs, sizeof(abs), item->path);
	buf_addf(&id, "%s%c%llu%c%lld.%09ld%c%s", abs, 0, (unsigned long long)st->st_size, 0,
		 (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec, 0,
		 item->dest ? item->dest : item->key);
	sigv4_sha256_hex(hash, id.data, id.len);
	buf_release(&id);
	if (asprintf(&path, "%s/%s.json", dir, hash) < 0)
		abort();
	return path;
}

/* Reads a saved upload; 0 with upload_id set when there is one for this file. */
static void state_read(struct mp_file *f, char **key)
{
	json_t *j = json_load_file(f->state_path, 0, NULL);
	const char *id = json_string_value(json_object_get(j, "upload_id"));
	const char *k = json_string_value(json_object_get(j, "key"));
	json_int_t ps = json_integer_value(json_object_get(j, "part_size"));

	if (id && k && ps > 0) {
		f->upload_id = xstrdup(id);
		*key = xstrdup(k);
		f->part_size = (uint64_t)ps;
	}
	json_decref(j);
}

static int mkdir_p(const char *dir)
{
	char tmp[PATH_MAX];
	char *p;

	if (str_copy(tmp, sizeof(tmp), dir))
		return -1;
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/* Written to a temporary file and renamed, so a crash never leaves half a state. */
static int state_write(const struct engine *g, struct mp_file *f, struct err *e)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I}", "upload_id", f->upload_id, "bucket",
			      f->item->bucket, "key", f->item->key, "path", f->item->path,
			      "part_size", (json_int_t)f->part_size);
	struct buf tmp = BUF_INIT;
	int r = -1;

	if (mkdir_p(g->o->state_dir) < 0) {
		err_sys(e, ERR_IO, "cannot create '%s'", SHORT(g->o->state_dir));
		goto out;
	}
	buf_addf(&tmp, "%s.tmp", f->state_path);
	if (json_dump_file(j, tmp.data, JSON_COMPACT) < 0 || rename(tmp.data, f->state_path) < 0) {
		err_sys(e, ERR_IO, "cannot write '%s'", SHORT(f->state_path));
		unlink(tmp.data);
		goto out;
	}
	r = 0;
out:
	json_decref(j);
	buf_release(&tmp);
	return r;
}

/* Marks the parts already uploaded whose ETag matches the local bytes. */
static int take_uploaded_parts(struct engine *g, struct mp_file *f, struct err *e)
{
	struct s3_part *parts = NULL;
	size_t n = 0, i;

	if (s3_mpu_list_parts(g->c, f->item->bucket, f->item->key, f->upload_id, &parts, &n, e) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned idx = parts[i].number - 1;
		uint64_t off = (uint64_t)idx * f->part_size;
		uint64_t len = f->item->size - off < f->part_size ? f->item->size - off : f->part_size;
		char hex[33];
		if (idx >= f->n_parts || parts[i].size != len)
			continue;
		if (s3_md5_range(f->fd, off, len, f->md5s + 16 * idx, e) < 0)
			break;
		str_hex(hex, f->md5s + 16 * idx, 16);
		if (strcasecmp(hex, parts[i].etag) != 0)
			continue;
		f->have[idx] = 1;
		f->parts[idx] = parts[i];
		f->parts_left--;
		g->sent += len;
	}
	free(parts);
	return err_is_set(e) ? -1 : 0;
}

/* ---- multipart ------------------------------------------------------------------------- */

static void mp_free(struct mp_file *f)
{
	if (!f)
		return;
	if (f->fd >= 0)
		close(f->fd);
	free(f->upload_id);
	free(f->parts);
	free(f->md5s);
	free(f->have);
	free(f->state_path);
	free(f);
}

static struct mp_file *mp_new(struct engine *g, struct s3_upload_item *item, int fd)
{
	struct mp_file *f = xcalloc(1, sizeof(*f));

	f->item = item;
	f->fd = fd;
	f->part_size = s3_part_size(item->size, g->o->part_size);
	return f;
}

static void mp_size_parts(struct mp_file *f)
{
	f->n_parts = (unsigned)((f->item->size + f->part_size - 1) / f->part_size);
	f->parts_left = f->n_parts;
	f->parts = xcalloc(f->n_parts, sizeof(*f->parts));
	f->md5s = xcalloc(f->n_parts, 16);
	f->have = xcalloc(f->n_parts, 1);
}

/* Continues a saved upload when there is one; 1 when it did. */
static int mp_try_resume(struct engine *g, struct mp_file *f)
{
	struct err e = ERR_INIT;
	char *key = NULL;

	state_read(f, &key);
	if (!f->upload_id)
		return 0;
	free(f->item->key);
	f->item->key = key;
	mp_size_parts(f);
	if (take_uploaded_parts(g, f, &e) == 0) {
		f->item->resumed = 1;
		return 1;
	}
	/* The upload is gone (aborted, expired): start a new one under the same key. */
	free(f->upload_id);
	free(f->parts);
	free(f->md5s);
	free(f->have);
	f->upload_id = NULL;
	f->part_size = s3_part_size(f->item->size, g->o->part_size);
	return 0;
}

static struct mp_file *mp_start(struct engine *g, struct s3_upload_item *item, int fd,
				const struct stat *st)
{
	struct mp_file *f = mp_new(g, item, fd);
	struct s3_put_opts po = { 0 };

	if (g->o->resume) {
		f->state_path = state_path(g, item, st);
		if (mp_try_resume(g, f))
			return f;
	}
	mp_size_parts(f);
	put_opts(g, item, &po);
	if (s3_mpu_create(g->c, item->bucket, item->key, &po, &f->upload_id, &item->err) < 0 ||
	    (g->o->resume && state_write(g, f, &item->err) < 0)) {
		if (f->upload_id)
			s3_mpu_abort(g->c, item->bucket, item->key, f->upload_id, NULL);
		f->fd = -1; /* the caller closes it */
		mp_free(f);
		return NULL;
	}
	return f;
}

static void mp_finish(struct engine *g, struct mp_file *f)
{
	struct s3_upload_item *item = f->item;
	struct s3_object_info info = S3_OBJECT_INFO_INIT;
	char want[48];

	if (cancelled(g))
		err_set(&item->err, ERR_CANCELLED, "interrupted");
	if (!err_is_set(&item->err) && !f->failed &&
	    s3_mpu_complete(g->c, item->bucket, item->key, f->upload_id, f->parts, f->n_parts,
			    &info, &item->err) == 0) {
		/* Ceph RGW 16 answers with an empty <ETag>: ask for it. */
		if (!info.etag[0])
			s3_head_object(g->c, item->bucket, item->key, NULL, &info, NULL);
		s3_multipart_etag(want, f->md5s, f->n_parts);
		str_copy(item->etag, sizeof(item->etag), info.etag);
		if (etag_is_md5(info.etag, 1) && strcasecmp(info.etag, want) != 0)
			err_set(&item->err, ERR_INTEGRITY,
				"s3://%s/%s: the server's ETag %s does not match the parts (%s)",
				item->bucket, SHORT(item->key), info.etag, want);
		else
			item->done = 1;
	}
	if (item->done || !g->o->resume) {
		if (!item->done)
			s3_mpu_abort(g->c, item->bucket, item->key, f->upload_id, NULL);
		if (f->state_path)
			unlink(f->state_path);
	}
	s3_object_info_release(&info);
}

static void mp_done(struct engine *g, struct mp_file *f);

/* Gives up the parts of f not handed out yet (under the lock). */
static void skip_unsent(struct mp_file *f)
{
	while (f->next_part < f->n_parts)
		if (!f->have[f->next_part++])
			f->parts_left--;
}

static void mp_part(struct engine *g, struct mp_file *f, unsigned idx)
{
	uint64_t off = (uint64_t)idx * f->part_size;
	uint64_t len = f->item->size - off < f->part_size ? f->item->size - off : f->part_size;
	struct err e = ERR_INIT;
	char b64[25], hex[33];
	struct s3_body b;
	int ok = 0, last;

	if (!f->failed && !cancelled(g) &&
	    s3_md5_range(f->fd, off, len, f->md5s + 16 * idx, &e) == 0) {
		s3_md5_base64(b64, f->md5s + 16 * idx);
		str_hex(hex, f->md5s + 16 * idx, 16);
		b = body_for(g, f->fd, off, len, b64);
		f->parts[idx].number = idx + 1;
		f->parts[idx].size = len;
		if (s3_mpu_upload_part(g->c, f->item->bucket, f->item->key, f->upload_id, idx + 1,
				       &b, f->parts[idx].etag, &e) == 0) {
			ok = !etag_is_md5(f->parts[idx].etag, 0) ||
			     strcasecmp(f->parts[idx].etag, hex) == 0;
			if (!ok)
				err_set(&e, ERR_INTEGRITY, "part %u: ETag %s is not the MD5 %s",
					idx + 1, f->parts[idx].etag, hex);
		}
	}
	pthread_mutex_lock(&g->lock);
	if (!ok && !f->failed) {
		f->failed = 1;
		f->item->err = e;
		skip_unsent(f);
	}
	last = --f->parts_left == 0;
	pthread_mutex_unlock(&g->lock);
	if (last)
		mp_done(g, f);
}

/* Completes or abandons a multipart file whose parts have all ended. */
static void mp_done(struct engine *g, struct mp_file *f)
{
	struct mp_file **pp;

	mp_finish(g, f);
	pthread_mutex_lock(&g->lock);
	for (pp = &g->active; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	}
	pthread_mutex_unlock(&g->lock);
	file_done(g, f->item);
	mp_free(f);
}

/* ---- scheduling -------------------------------------------------------------------------- */

static void start_item(struct engine *g, struct s3_upload_item *item)
{
	struct mp_file *f;
	struct stat st;
	int fd;

	fd = open(item->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		err_sys(&item->err, ERR_IO, "cannot open '%s'", SHORT(item->path));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set(&item->err, ERR_IO, "'%s' is not a regular file", SHORT(item->path));
		goto out;
	}
	item->size = (uint64_t)st.st_size;
	if (item->size <= g->o->multipart_threshold) {
		upload_single(g, item, fd);
		goto out;
	}
	if (!(f = mp_start(g, item, fd, &st)))
		goto out;
	if (f->parts_left == 0) {
		mp_done(g, f); /* every part was already there */
		return;
	}
	pthread_mutex_lock(&g->lock);
	f->next = g->active;
	g->active = f;
	pthread_mutex_unlock(&g->lock);
	return;
out:
	if (fd >= 0)
		close(fd);
	if (!item->done && !err_is_set(&item->err))
		err_set(&item->err, ERR_INTERNAL, "upload of '%s' failed", SHORT(item->path));
	file_done(g, item);
}

/* The next part to send (under the lock): a part of a started file before a new file. */
static struct mp_file *next_part(struct engine *g, unsigned *idx)
{
	struct mp_file *f;

	for (f = g->active; f; f = f->next) {
		while (f->next_part < f->n_parts && f->have[f->next_part])
			f->next_part++;
		if (f->next_part < f->n_parts && !f->failed) {
			*idx = f->next_part++;
			return f;
		}
	}
	return NULL;
}

/* Ends the files whose remaining parts were never handed out (we were interrupted). */
static void drop_unsent(struct engine *g)
{
	struct mp_file *f;

	for (;;) {
		pthread_mutex_lock(&g->lock);
		for (f = g->active; f; f = f->next) {
			if (f->next_part < f->n_parts) {
				skip_unsent(f);
				if (f->parts_left == 0)
					break;
			}
		}
		pthread_mutex_unlock(&g->lock);
		if (!f)
			return;
		mp_done(g, f);
	}
}

static void *worker(void *arg)
{
	struct engine *g = arg;
	struct s3_upload_item *item;
	struct mp_file *f;
	unsigned idx;

	for (;;) {
		pthread_mutex_lock(&g->lock);
		item = NULL;
		f = cancelled(g) ? NULL : next_part(g, &idx);
		if (!f && !cancelled(g) && g->next_item < g->n_items)
			item = &g->items[g->next_item++];
		pthread_mutex_unlock(&g->lock);
		if (f)
			mp_part(g, f, idx);
		else if (item)
			start_item(g, item);
		else
			break;
	}
	drop_unsent(g);
	return NULL;
}

static void default_state_dir(char *out, size_t size)
{
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

	if (xdg && *xdg)
		snprintf(out, size, "%s/s3hook", xdg);
	else
		snprintf(out, size, "%s/.local/state/s3hook", home && *home ? home : "/tmp");
}

size_t s3_upload_files(struct s3_client *c, struct s3_upload_item *items, size_t n,
		       const struct s3_upload_opts *opts)
{
	struct engine g = { .c = c, .items = items, .n_items = n };
	struct s3_upload_opts o = *opts;
	unsigned i, threads = o.concurrency ? o.concurrency : 8;
	pthread_t *tids = xcalloc(threads, sizeof(*tids));
	char dir[PATH_MAX];
	struct stat st;
	size_t k;

	if (!o.state_dir) {
		default_state_dir(dir, sizeof(dir));
		o.state_dir = dir;
	}
	g.o = &o;
	pthread_mutex_init(&g.lock, NULL);
	for (k = 0; k < n; k++)
		if (stat(items[k].path, &st) == 0)
			g.total += (uint64_t)st.st_size;
	if (threads > n * 2 + 64)
		threads = (unsigned)(n * 2 + 64);
	for (i = 0; i < threads; i++)
		if (pthread_create(&tids[i], NULL, worker, &g) != 0)
			break;
	if (i == 0)
		worker(&g);
	while (i > 0)
		pthread_join(tids[--i], NULL);
	/* Items never started (interrupted) count as failed. */
	for (k = g.next_item; k < n; k++) {
		err_set(&items[k].err, ERR_CANCELLED, "interrupted before it started");
		g.failed++;
	}
	pthread_mutex_destroy(&g.lock);
	free(tids);
	return g.failed;
}
