/* s3hook retry ID... | --dead */
#include "cmd/cmd.h"

#include "core/err.h"
#include "core/jobq.h"
#include "core/str.h"

#include <stdio.h>

static const char retry_help[] =
	"usage: s3hook retry [OPTIONS] ID... | --dead\n\n"
	"Makes dead (or waiting-to-retry) jobs pending again with their attempts reset, so a\n"
	"running serve picks them up.\n\n"
	"      --dead            every dead job\n"
	"      --queue PATH      the queue (default: [jobs] queue of the configuration)\n" CMD_COMMON_HELP;

enum { OPT_DEAD = OPT_CMD_FIRST, OPT_QUEUE };

static int retry_ids(struct jobq *q, int argc, char **argv, int all_dead)
{
	struct err e = ERR_INIT;
	size_t n = 0, total = 0;
	uint64_t id;
	int i, rc = EXIT_OK;

	if (all_dead) {
		if (jobq_retry(q, 0, &n, &e) < 0) {
			cmd_error("%s", e.msg);
			return EXIT_FAILED;
		}
		printf("%zu dead job%s pending again\n", n, n == 1 ? "" : "s");
		return EXIT_OK;
	}
	for (i = 0; i < argc; i++) {
		err_clear(&e);
		n = 0;
		if (str_to_u64(argv[i], &id) < 0 || !id) {
			cmd_error("'%s' is not a job id", SHORT(argv[i]));
			rc = EXIT_FAILED;
		} else if (jobq_retry(q, (int64_t)id, &n, &e) < 0) {
			cmd_error("%s", e.msg);
			rc = EXIT_FAILED;
		} else if (!n) {
			cmd_error("job %s is not dead or waiting to retry (or does not exist)", argv[i]);
			rc = EXIT_FAILED;
		}
		total += n;
	}
	printf("%zu job%s pending again\n", total, total == 1 ? "" : "s");
	return rc;
}

int cmd_retry(int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "dead", no_argument, NULL, OPT_DEAD },
		{ "queue", required_argument, NULL, OPT_QUEUE },
		{ NULL, 0, NULL, 0 },
	};
	struct cmd_common co = CMD_COMMON_INIT;
	const char *queue = NULL;
	struct jobq *q = NULL;
	int opt, dead = 0, rc = EXIT_FAILED;

	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(retry_help, stdout);
			return EXIT_OK;
		} else if (opt == OPT_DEAD) {
			dead = 1;
		} else if (opt == OPT_QUEUE) {
			queue = optarg;
		} else if (opt == '?' || cmd_common_opt(&co, opt, optarg) != 1) {
			return cmd_usage_error("retry", "bad option");
		}
	}
	if (dead == (optind < argc))
		return cmd_usage_error("retry", "give job IDs, or --dead");
	if (cmd_load_config(&co) == 0 && (q = cmd_open_queue(&co, queue, JOBQ_NO_CREATE)))
		rc = retry_ids(q, argc - optind, argv + optind, dead);
	jobq_close(q);
	cmd_common_release(&co);
	return rc;
}
