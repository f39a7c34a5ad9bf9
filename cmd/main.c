/* s3hook: the command table. */
#include "cmd/cmd.h"

#include "core/err.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "upload", cmd_upload, "upload files with SigV4, multipart and in parallel" },
	{ "serve", cmd_serve, "receive bucket notifications and run the handlers" },
	{ "reprocess", cmd_reprocess, "run the handlers over objects already stored" },
	{ "ls", cmd_ls, "list the objects under a prefix" },
	{ "get", cmd_get, "download an object" },
	{ "rm", cmd_rm, "delete objects" },
	{ "cp", cmd_cp, "copy an object within the server" },
	{ "presign", cmd_presign, "print a presigned URL" },
	{ "jobs", cmd_jobs, "list jobs of the queue" },
	{ "retry", cmd_retry, "run dead or failed jobs again" },
	{ "check-config", cmd_check_config, "validate a configuration file" },
};

static void usage(FILE *out)
{
	size_t i;

	fprintf(out, "usage: s3hook COMMAND [OPTIONS] [ARGS]\n\n"
		     "Turns an S3-compatible object store into an event-driven processing system.\n\n"
		     "Commands:\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-13s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n's3hook COMMAND --help' tells more about each.\n");
}

int main(int argc, char **argv)
{
	size_t i;

	/* A peer that closes its socket must give an error, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("s3hook %s\n", S3HOOK_VERSION);
		return EXIT_OK;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "s3hook: '%s' is not a command\n\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
