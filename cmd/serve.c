/* s3hook serve: the bucket-notification webhook target and its workers. */
#include "cmd/cmd.h"

#include "core/err.h"
#include "core/ini.h"
#include "core/log.h"
#include "triggers/serve.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static const char serve_help[] =
	"usage: s3hook serve [OPTIONS]\n\n"
	"Receives bucket notifications (MinIO webhook, AWS, Ceph RGW push endpoints) on\n"
	"[serve] listen, stores every job durably before answering, and runs the configured\n"
	"[handler NAME]s on the objects as sandboxed subprocesses, uploading what they produce.\n\n"
	"Signals: SIGTERM or SIGINT stop accepting, let running handlers finish (up to\n"
	"[jobs] shutdown_grace) and exit; SIGHUP reloads the configuration (a bad file is\n"
	"refused and the old one kept).\n\n" CMD_COMMON_HELP;

/* Lets sockets and handler pipes outnumber the usual 1,024. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void reload(struct serve *s, const struct cmd_common *co)
{
	struct ini *ini = NULL;
	struct err e = ERR_INIT;

	if (!co->conf) {
		log_warn("SIGHUP: there is no configuration file to reload", "%s", "");
		return;
	}
	if (ini_parse_file(&ini, co->conf->path, INI_INLINE_COMMENTS, &e) < 0) {
		log_error("configuration not reloaded; the old one stays", "error=%s", e.msg);
		return;
	}
	serve_reload(s, ini, &e);
}

/* Waits for signals in this thread only; every other thread has them blocked. */
static void run(struct serve *s, const struct cmd_common *co, const sigset_t *set)
{
	struct timespec tick = { 1, 0 };

	for (;;) {
		int sig = sigtimedwait(set, NULL, &tick);
		if (sig == SIGHUP) {
			reload(s, co);
		} else if (sig == SIGTERM || sig == SIGINT) {
			log_info("stopping", "signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
			return;
		}
		serve_tick(s);
	}
}

int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = { CMD_COMMON_OPTIONS, { NULL, 0, NULL, 0 } };
	struct cmd_common co = CMD_COMMON_INIT;
	struct serve *s = NULL;
	struct ini *ini = NULL;
	struct err e = ERR_INIT;
	sigset_t set;
	int opt, rc = EXIT_FAILED;

	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(serve_help, stdout);
			return EXIT_OK;
		}
		if (opt == '?' || cmd_common_opt(&co, opt, optarg) != 1)
			return cmd_usage_error("serve", "bad option");
	}
	if (optind < argc)
		return cmd_usage_error("serve", "takes no arguments");
	if (cmd_load_config(&co) < 0)
		goto out;
	/* Block before any thread starts, so that only run() receives them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	raise_nofile();
	if (co.conf && ini_parse_file(&ini, co.conf->path, INI_INLINE_COMMENTS, &e) < 0) {
		cmd_error("%s", e.msg);
		goto out;
	}
	if (!(s = serve_new(ini, &e)) || serve_start(s, &e) < 0) {
		cmd_error("%s", e.msg);
		goto out;
	}
	run(s, &co, &set);
	rc = EXIT_OK;
out:
	serve_free(s);
	cmd_common_release(&co);
	return rc;
}
