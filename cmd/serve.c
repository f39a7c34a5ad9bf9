/* s3hook serve: the bucket-notification webhook target and its workers. */
#include "cmd/cmd.h"

#include "core/err.h"
#include "core/ini.h"
#include "core/log.h"
#include "core/str.h"
#include "triggers/serve.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char serve_help[] =
	"usage: s3hook serve [OPTIONS]\n\n"
	"Receives bucket notifications (MinIO webhook, AWS, Ceph RGW push endpoints) on\n"
	"[serve] listen, stores every job durably before answering, and runs the configured\n"
	"[handler NAME]s on the objects as sandboxed subprocesses, uploading what they produce.\n\n"
	"Signals: SIGTERM or SIGINT stop accepting, let running handlers finish (up to\n"
	"[jobs] shutdown_grace) and exit; SIGHUP reloads the configuration (a bad file is\n"
	"refused and the old one kept).\n\n"
	"Under systemd (Type=notify, scripts/s3hook.service) it says READY=1 once listening,\n"
	"RELOADING=1 and READY=1 around a reload, and STOPPING=1.\n\n" CMD_COMMON_HELP;

/* $NOTIFY_SOCKET, taken out of the environment before any thread or child sees it. */
static char *notify_socket;

/*
 * sd_notify() without libsystemd: one datagram to the socket systemd named
 * ("@..." is in the abstract namespace). Nothing when not started by systemd.
 */
static void notify(const char *state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = notify_socket ? strlen(notify_socket) : 0;
	int fd;

	if (!len || len >= sizeof(sa.sun_path) ||
	    (notify_socket[0] != '/' && notify_socket[0] != '@'))
		return;
	memcpy(sa.sun_path, notify_socket, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		log_warn("cannot notify systemd", "error=%s", strerror(errno));
	close(fd);
}

static void take_notify_socket(void)
{
	const char *v = getenv("NOTIFY_SOCKET");

	if (v && *v)
		notify_socket = xstrdup(v);
	unsetenv("NOTIFY_SOCKET");
}

/* Lets sockets and handler pipes outnumber the usual 1,024. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * The [log] keys of a reloaded file, unless flags set them (flags win, as at
 * start). config_load() has checked the values by the time this runs.
 */
static void take_log_keys(const struct cmd_common *co, const struct ini *ini, enum log_level *level,
			  enum log_format *format)
{
	const char *lv = co->log_level ? co->log_level : ini_get(ini, "log", "level", "info");
	const char *fmt = co->log_format ? co->log_format : ini_get(ini, "log", "format", "logfmt");

	if (log_level_parse(lv, level) < 0)
		*level = LOG_INFO;
	*format = strcmp(fmt, "json") == 0 ? LOG_JSON : LOG_LOGFMT;
}

static void reload(struct serve *s, const struct cmd_common *co)
{
	enum log_level level;
	enum log_format format;
	struct ini *ini = NULL;
	struct err e = ERR_INIT;

	if (!co->conf) {
		log_warn("SIGHUP: there is no configuration file to reload", "file=%s", "");
		return;
	}
	notify("RELOADING=1");
	if (ini_parse_file(&ini, co->conf->path, INI_INLINE_COMMENTS, &e) < 0) {
		log_error("configuration not reloaded; the old one stays", "error=%s", e.msg);
		notify("READY=1");
		return;
	}
	take_log_keys(co, ini, &level, &format);
	if (serve_reload(s, ini, &e) == 0)
		log_setup(level, format, 2);
	notify("READY=1");
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
			notify("STOPPING=1");
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
	take_notify_socket();
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
	notify("READY=1");
	run(s, &co, &set);
	rc = EXIT_OK;
out:
	serve_free(s);
	cmd_common_release(&co);
	free(notify_socket);
	notify_socket = NULL;
	return rc;
}
