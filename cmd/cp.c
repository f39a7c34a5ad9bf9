/* s3hook cp s3://BUCKET/KEY s3://BUCKET/KEY: a copy made by the server (CopyObject). */
#include "cmd/cmd.h"

#include "core/err.h"
#include "core/str.h"
#include "s3/client.h"

#include <stdio.h>
#include <stdlib.h>

static const char cp_help[] =
	"usage: s3hook cp [OPTIONS] s3://BUCKET/KEY s3://BUCKET/KEY\n\n"
	"Copies an object within the S3 server (no download), keeping its metadata.\n"
	"Objects up to 5 GiB, as CopyObject allows.\n\n" CMD_COMMON_HELP;

static int copy(struct s3_client *c, const char *from, const char *to)
{
	char *sb = NULL, *sk = NULL, *db = NULL, *dk = NULL;
	struct s3_object_info info = S3_OBJECT_INFO_INIT;
	struct err e = ERR_INIT;
	int rc = EXIT_FAILED;

	if (s3_parse_url(from, &sb, &sk, &e) == 0 && s3_parse_url(to, &db, &dk, &e) == 0 &&
	    (!*sk || !*dk))
		err_set(&e, ERR_USAGE, "both URLs must name a key");
	if (err_is_set(&e)) {
		rc = cmd_usage_error("cp", "%s", e.msg);
	} else if (s3_copy_object(c, sb, sk, db, dk, &info, &e) == 0) {
		printf("s3://%s/%s\n", db, dk);
		rc = EXIT_OK;
	} else {
		cmd_error("%s", e.msg);
	}
	s3_object_info_release(&info);
	free(sb);
	free(sk);
	free(db);
	free(dk);
	return rc;
}

int cmd_cp(int argc, char **argv)
{
	static const struct option opts[] = { CMD_COMMON_OPTIONS, { NULL, 0, NULL, 0 } };
	struct cmd_common co = CMD_COMMON_INIT;
	struct s3_client *c = NULL;
	int opt, rc = EXIT_FAILED;

	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(cp_help, stdout);
			return EXIT_OK;
		}
		if (opt == '?' || cmd_common_opt(&co, opt, optarg) != 1)
			return cmd_usage_error("cp", "bad option");
	}
	if (argc - optind != 2)
		return cmd_usage_error("cp", "give a source and a destination s3://BUCKET/KEY");
	if (cmd_load_config(&co) == 0 && (c = cmd_s3_client(&co)))
		rc = copy(c, argv[optind], argv[optind + 1]);
	s3_client_free(c);
	cmd_common_release(&co);
	return rc;
}
