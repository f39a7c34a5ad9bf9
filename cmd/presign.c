/* s3hook presign s3://BUCKET/KEY [--expires SECONDS] [--put] */
#include "cmd/cmd.h"

#include "core/err.h"

#include "core/str.h"
#include "s3/client.h"

#include <stdio.h>
#include <stdlib.h>

static const char presign_help[] =
	"usage: s3hook presign [OPTIONS] s3://BUCKET/KEY\n\n"
	"Prints a URL that lets anyone GET (or PUT) the object until it expires.\n\n"
	"  -e, --expires SECONDS  how long the URL works (default 3600, at most 604800)\n"
	"      --put              a URL to upload with (curl -T FILE URL)\n" CMD_COMMON_HELP;

enum { OPT_PUT = OPT_CMD_FIRST };

static int presign(struct s3_client *c, const char *url, const char *method, unsigned expires)
{
	char *bucket = NULL, *key = NULL, *out = NULL;
	struct err e = ERR_INIT;
	int rc = EXIT_FAILED;

	if (s3_parse_url(url, &bucket, &key, &e) == 0 && !*key)
		err_set(&e, ERR_USAGE, "'%s' names no key", SHORT(url));
	if (!err_is_set(&e) && s3_presign(c, method, bucket, key, expires, &out, &e) == 0) {
		printf("%s\n", out);
		rc = EXIT_OK;
	}
	if (err_is_set(&e))
		rc = e.code == ERR_USAGE ? cmd_usage_error("presign", "%s", e.msg)
					 : (cmd_error("%s", e.msg), EXIT_FAILED);
	free(bucket);
	free(key);
	free(out);
	return rc;
}

int cmd_presign(int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "expires", required_argument, NULL, 'e' },
		{ "put", no_argument, NULL, OPT_PUT },
		{ NULL, 0, NULL, 0 },
	};
	struct cmd_common co = CMD_COMMON_INIT;
	struct s3_client *c = NULL;
	const char *method = "GET";
	int opt, n, expires = 3600, rc = EXIT_FAILED;

	while ((opt = getopt_long(argc, argv, "c:he:", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(presign_help, stdout);
			return EXIT_OK;
		} else if (opt == 'e') {
			if (str_to_int(optarg, 1, 604800, &n) < 0)
				return cmd_usage_error("presign", "--expires takes 1 to 604800");
			expires = n;
		} else if (opt == OPT_PUT) {
			method = "PUT";
		} else if (opt == '?' || cmd_common_opt(&co, opt, optarg) != 1) {
			return cmd_usage_error("presign", "bad option");
		}
	}
	if (argc - optind != 1)
		return cmd_usage_error("presign", "give one s3://BUCKET/KEY");
	if (cmd_load_config(&co) == 0 && (c = cmd_s3_client(&co)))
		rc = presign(c, argv[optind], method, (unsigned)expires);
	s3_client_free(c);
	cmd_common_release(&co);
	return rc;
}
