/* s3hook upload FILE... s3://BUCKET[/PREFIX] */
#include "cmd/cmd.h"

#include "core/err.h"

#include "core/str.h"
#include "core/units.h"
#include "s3/client.h"
#include "s3/transfer.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char upload_help[] =
	"usage: s3hook upload [OPTIONS] FILE... s3://BUCKET[/PREFIX]\n\n"
	"Uploads each FILE to PREFIX<uuid>/<basename>: a fresh random UUID per file (32 hex\n"
	"digits), so uploads never overwrite each other. Prints s3://BUCKET/KEY per file.\n\n"
	"  -k, --key KEY             the exact key (one FILE only)\n"
	"  -t, --content-type TYPE   Content-Type (default: from the file name)\n"
	"  -m, --metadata K=V        user metadata (x-amz-meta-K), repeatable\n"
	"  -j, --concurrency N       requests in flight, across files and parts (default 8)\n"
	"      --multipart-threshold SIZE  files above go multipart (default 64MiB)\n"
	"      --part-size SIZE      multipart part size (default 8MiB, raised to fit 10,000 parts)\n"
	"      --resume              keep an interrupted multipart upload and continue it when\n"
	"                            the same command runs again\n"
	"      --json                one JSON object per file instead of the URL\n"
	"      --no-progress         no progress bar (shown only when stderr is a terminal)\n" CMD_COMMON_HELP
	"\nExit status: 0 all uploaded, 1 some failed, 2 usage error.\n";

enum { OPT_THRESHOLD = OPT_CMD_FIRST, OPT_PART_SIZE, OPT_RESUME, OPT_JSON, OPT_NO_PROGRESS };

struct upload_args {
	struct cmd_common co;
	const char *key;
	const char *content_type;
	const char **metadata; /* name, value, ..., NULL */
	size_t n_meta;
	struct s3_upload_opts o;
	int json;
	int progress;
	char **files;
	size_t n_files;
	char *bucket;
	char *prefix;
	const char *dest;
};

/* Progress and output state shared by the engine's callbacks. */
struct upload_view {
	const struct upload_args *a;
	struct timespec start, last;
	int bar_shown;
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
	/* A second Ctrl-C stops at once. */
	signal(SIGINT, SIG_DFL);
}

static double since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void clear_bar(struct upload_view *v)
{
	if (v->bar_shown)
		fputs("\r\033[K", stderr);
	v->bar_shown = 0;
}

static void on_progress(void *arg, uint64_t sent, uint64_t total)
{
	struct upload_view *v = arg;
	double t = since(&v->start), rate, pct;
	char a[32], b[32], r[32];
	int width = 30, fill;

	if (!v->a->progress || (since(&v->last) < 0.1 && sent < total))
		return;
	clock_gettime(CLOCK_MONOTONIC, &v->last);
	rate = t > 0 ? (double)sent / t : 0;
	pct = total ? (double)sent * 100.0 / (double)total : 100.0;
	fill = (int)(pct * width / 100.0);
	fprintf(stderr, "\r\033[K[%.*s%*s] %3.0f%% %s / %s  %s/s  ETA %.0fs", fill,
		"==============================", width - fill, "", pct,
		units_fmt_size(a, sizeof(a), sent), units_fmt_size(b, sizeof(b), total),
		units_fmt_size(r, sizeof(r), (uint64_t)rate),
		rate > 0 ? (double)(total - sent) / rate : 0.0);
	v->bar_shown = 1;
}

static void print_json(const struct s3_upload_item *it)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:s, s:b}", "file", it->path, "bucket",
			      it->bucket, "key", it->key, "size", (json_int_t)it->size, "etag",
			      it->etag, "resumed", it->resumed);
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);

	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(j);
}

static void on_file_done(void *arg, const struct s3_upload_item *it)
{
	struct upload_view *v = arg;

	clear_bar(v);
	if (!it->done) {
		cmd_error("upload '%s' to s3://%s/%s failed: %s", SHORT(it->path), it->bucket,
			  SHORT(it->key), it->err.msg);
		return;
	}
	if (v->a->json)
		print_json(it);
	else
		printf("s3://%s/%s\n", it->bucket, it->key);
	fflush(stdout);
}

static int parse_size_arg(const char *name, const char *arg, uint64_t *out)
{
	if (units_size(arg, out) < 0 || *out == 0)
		return cmd_usage_error("upload", "%s: '%s' is not a size (e.g. 64MiB)", name,
				       SHORT(arg));
	return 0;
}

static int add_metadata(struct upload_args *a, const char *kv)
{
	const char *eq = strchr(kv, '=');

	if (!eq || eq == kv)
		return cmd_usage_error("upload", "--metadata takes KEY=VALUE, not '%s'", SHORT(kv));
	a->metadata = realloc(a->metadata, (a->n_meta + 3) * sizeof(char *));
	if (!a->metadata)
		abort();
	a->metadata[a->n_meta++] = xstrndup(kv, (size_t)(eq - kv));
	a->metadata[a->n_meta++] = eq + 1;
	a->metadata[a->n_meta] = NULL;
	return 0;
}

static int parse_opt(struct upload_args *a, int opt, const char *arg)
{
	int n, r = cmd_common_opt(&a->co, opt, arg);

	if (r)
		return r < 0 ? EXIT_USAGE : 0;
	switch (opt) {
	case 'k':
		a->key = arg;
		return 0;
	case 't':
		a->content_type = arg;
		return 0;
	case 'm':
		return add_metadata(a, arg);
	case 'j':
		if (str_to_int(arg, 1, 1024, &n) < 0)
			return cmd_usage_error("upload", "--concurrency takes 1 to 1024, not '%s'",
					       SHORT(arg));
		a->o.concurrency = (unsigned)n;
		return 0;
	case OPT_THRESHOLD:
		return parse_size_arg("--multipart-threshold", arg, &a->o.multipart_threshold);
	case OPT_PART_SIZE:
		if (parse_size_arg("--part-size", arg, &a->o.part_size))
			return EXIT_USAGE;
		if (a->o.part_size < (5u << 20) || a->o.part_size > (5ULL << 30))
			return cmd_usage_error("upload", "--part-size must be 5MiB to 5GiB");
		return 0;
	case OPT_RESUME:
		a->o.resume = 1;
		return 0;
	case OPT_JSON:
		a->json = 1;
		return 0;
	case OPT_NO_PROGRESS:
		a->progress = 0;
		return 0;
	default:
		return cmd_usage_error("upload", "unknown option");
	}
}

static int parse_args(struct upload_args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "key", required_argument, NULL, 'k' },
		{ "content-type", required_argument, NULL, 't' },
		{ "metadata", required_argument, NULL, 'm' },
		{ "concurrency", required_argument, NULL, 'j' },
		{ "multipart-threshold", required_argument, NULL, OPT_THRESHOLD },
		{ "part-size", required_argument, NULL, OPT_PART_SIZE },
		{ "resume", no_argument, NULL, OPT_RESUME },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
		{ NULL, 0, NULL, 0 },
	};
	struct err e = ERR_INIT;
	int opt, r;

	while ((opt = getopt_long(argc, argv, "c:hk:t:m:j:", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(upload_help, stdout);
			exit(EXIT_OK);
		}
		if (opt == '?')
			return cmd_usage_error("upload", "bad option");
		if ((r = parse_opt(a, opt, optarg)))
			return r;
	}
	if (argc - optind < 2)
		return cmd_usage_error("upload", "give at least one FILE and the s3://BUCKET[/PREFIX]");
	a->dest = argv[argc - 1];
	if (s3_parse_url(a->dest, &a->bucket, &a->prefix, &e) < 0)
		return cmd_usage_error("upload", "%s", e.msg);
	a->files = argv + optind;
	a->n_files = (size_t)(argc - 1 - optind);
	if (a->key && a->n_files != 1)
		return cmd_usage_error("upload", "--key takes exactly one FILE");
	if (a->key && (!*a->key || strlen(a->key) > 1024))
		return cmd_usage_error("upload", "--key must be 1 to 1024 bytes");
	return 0;
}

static struct s3_upload_item *make_items(const struct upload_args *a)
{
	struct s3_upload_item *items = xcalloc(a->n_files, sizeof(*items));
	size_t i;

	for (i = 0; i < a->n_files; i++) {
		items[i].path = a->files[i];
		items[i].bucket = a->bucket;
		items[i].key = a->key ? xstrdup(a->key) : s3_upload_key(a->prefix, a->files[i]);
		items[i].content_type = a->content_type;
		items[i].dest = a->dest;
	}
	return items;
}

static void release_args(struct upload_args *a)
{
	size_t i;

	for (i = 0; i < a->n_meta; i += 2)
		free((char *)a->metadata[i]);
	free(a->metadata);
	free(a->bucket);
	free(a->prefix);
	cmd_common_release(&a->co);
}

int cmd_upload(int argc, char **argv)
{
	struct upload_args a = { .co = CMD_COMMON_INIT, .o = S3_UPLOAD_OPTS_INIT };
	struct upload_view v = { .a = &a };
	struct s3_upload_item *items = NULL;
	struct s3_client *c = NULL;
	size_t failed = 0, i;
	int rc;

	a.progress = isatty(2);
	if ((rc = parse_args(&a, argc, argv)) != 0)
		goto out;
	rc = EXIT_FAILED;
	if (cmd_load_config(&a.co) < 0 || !(c = cmd_s3_client(&a.co)))
		goto out;
	items = make_items(&a);
	a.o.metadata = a.metadata;
	a.o.cancel = &interrupted;
	a.o.on_progress = on_progress;
	a.o.on_file_done = on_file_done;
	a.o.arg = &v;
	clock_gettime(CLOCK_MONOTONIC, &v.start);
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);
	failed = s3_upload_files(c, items, a.n_files, &a.o);
	clear_bar(&v);
	for (i = 0; i < a.n_files; i++) {
		if (items[i].err.code == 0 && !items[i].done)
			cmd_error("upload '%s' did not run", SHORT(items[i].path));
		s3_upload_item_release(&items[i]);
	}
	if (interrupted)
		cmd_error("interrupted%s", a.o.resume ? ": run the same command again to resume" : "");
	rc = failed ? EXIT_FAILED : EXIT_OK;
out:
	free(items);
	s3_client_free(c);
	release_args(&a);
	return rc;
}
