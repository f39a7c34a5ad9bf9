/* s3hook get s3://BUCKET/KEY [FILE|-] */
#include "cmd/cmd.h"

#include "core/err.h"

#include "core/buf.h"
#include "core/str.h"
#include "s3/client.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char get_help[] =
	"usage: s3hook get [OPTIONS] s3://BUCKET/KEY [FILE|-]\n\n"
	"Downloads the object to FILE (default: the key's last segment in this folder), or to\n"
	"standard output with '-'. FILE appears only once the whole object has arrived.\n\n" CMD_COMMON_HELP;

/* The file name a key saves to by default, or NULL when it has none that is safe. */
static const char *default_name(const char *key)
{
	const char *base = strrchr(key, '/');

	base = base ? base + 1 : key;
	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return NULL;
	return base;
}

static int get_to_stdout(struct s3_client *c, const char *bucket, const char *key)
{
	struct s3_object_info info = S3_OBJECT_INFO_INIT;
	struct err e = ERR_INIT;
	int r = s3_get_object(c, bucket, key, 1, NULL, &info, &e);

	s3_object_info_release(&info);
	if (r < 0)
		cmd_error("%s", e.msg);
	return r < 0 ? EXIT_FAILED : EXIT_OK;
}

/* Downloads into a temporary file next to `path`, then renames it into place. */
static int get_to_file(struct s3_client *c, const char *bucket, const char *key, const char *path)
{
	struct s3_object_info info = S3_OBJECT_INFO_INIT;
	struct err e = ERR_INIT;
	struct buf tmp = BUF_INIT;
	int fd, rc = EXIT_FAILED;

	buf_addf(&tmp, "%s.s3hook-XXXXXX", path);
	fd = mkostemp(tmp.data, O_CLOEXEC);
	if (fd < 0) {
		cmd_error("cannot create a file next to '%s': %s", SHORT(path), strerror(errno));
		goto out;
	}
	if (s3_get_object(c, bucket, key, fd, NULL, &info, &e) < 0)
		cmd_error("%s", e.msg);
	else if (fchmod(fd, 0644 & ~umask(umask(0))) < 0 || fsync(fd) < 0 || close(fd) < 0 ||
		 (fd = -1, rename(tmp.data, path) < 0))
		cmd_error("cannot write '%s': %s", SHORT(path), strerror(errno));
	else
		rc = EXIT_OK;
	if (fd >= 0)
		close(fd);
	if (rc != EXIT_OK)
		unlink(tmp.data);
out:
	s3_object_info_release(&info);
	buf_release(&tmp);
	return rc;
}

int cmd_get(int argc, char **argv)
{
	static const struct option opts[] = { CMD_COMMON_OPTIONS, { NULL, 0, NULL, 0 } };
	struct cmd_common co = CMD_COMMON_INIT;
	struct s3_client *c = NULL;
	struct err e = ERR_INIT;
	char *bucket = NULL, *key = NULL;
	const char *path;
	int opt, rc = EXIT_USAGE;

	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(get_help, stdout);
			return EXIT_OK;
		}
		if (opt == '?' || cmd_common_opt(&co, opt, optarg) != 1)
			return cmd_usage_error("get", "bad option");
	}
	if (argc - optind < 1 || argc - optind > 2)
		return cmd_usage_error("get", "give s3://BUCKET/KEY and optionally FILE or -");
	if (s3_parse_url(argv[optind], &bucket, &key, &e) < 0 || !*key) {
		rc = cmd_usage_error("get", "%s", e.msg[0] ? e.msg : "the URL names no key");
		goto out;
	}
	path = argc - optind == 2 ? argv[optind + 1] : default_name(key);
	if (!path) {
		rc = cmd_usage_error("get", "the key has no usable file name: give FILE");
		goto out;
	}
	rc = EXIT_FAILED;
	if (cmd_load_config(&co) == 0 && (c = cmd_s3_client(&co)))
		rc = strcmp(path, "-") == 0 ? get_to_stdout(c, bucket, key)
					    : get_to_file(c, bucket, key, path);
out:
	free(bucket);
	free(key);
	s3_client_free(c);
	cmd_common_release(&co);
	return rc;
}
