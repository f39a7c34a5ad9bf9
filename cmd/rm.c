/* s3hook rm s3://BUCKET/KEY... */
#include "cmd/cmd.h"

#include "core/err.h"

#include "core/str.h"
#include "s3/client.h"

#include <stdio.h>
#include <stdlib.h>

static const char rm_help[] = "usage: s3hook rm [OPTIONS] s3://BUCKET/KEY...\n\n"
			      "Deletes each object (deleting a key that does not exist is no "
			      "error, as in S3).\n\n" CMD_COMMON_HELP
			      "\nExit status: 0 all deleted, 1 some failed, 2 usage error.\n";

static int rm_one(struct s3_client *c, const char *url)
{
	char *bucket = NULL, *key = NULL;
	struct err e = ERR_INIT;
	int rc = EXIT_OK;

	if (s3_parse_url(url, &bucket, &key, &e) == 0 && !*key)
		err_set(&e, ERR_USAGE, "'%s' names no key", SHORT(url));
	if (!err_is_set(&e))
		s3_delete_object(c, bucket, key, &e);
	if (err_is_set(&e)) {
		cmd_error("%s", e.msg);
		rc = EXIT_FAILED;
	}
	free(bucket);
	free(key);
	return rc;
}

int cmd_rm(int argc, char **argv)
{
	static const struct option opts[] = { CMD_COMMON_OPTIONS, { NULL, 0, NULL, 0 } };
	struct cmd_common co = CMD_COMMON_INIT;
	struct s3_client *c = NULL;
	int opt, i, rc = EXIT_FAILED;

	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(rm_help, stdout);
			return EXIT_OK;
		}
		if (opt == '?' || cmd_common_opt(&co, opt, optarg) != 1)
			return cmd_usage_error("rm", "bad option");
	}
	if (optind >= argc)
		return cmd_usage_error("rm", "give at least one s3://BUCKET/KEY");
	if (cmd_load_config(&co) == 0 && (c = cmd_s3_client(&co))) {
		rc = EXIT_OK;
		for (i = optind; i < argc; i++)
			if (rm_one(c, argv[i]) != EXIT_OK)
				rc = EXIT_FAILED;
	}
	s3_client_free(c);
	cmd_common_release(&co);
	return rc;
}
