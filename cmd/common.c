/* What every command shares: the common flags, the configuration, the S3 client. */
#include "cmd/cmd.h"

#include "core/err.h"
#include "core/config.h"
#include "core/ini.h"
#include "core/jobq.h"
#include "core/log.h"
#include "core/str.h"
#include "s3/client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cmd_error(const char *fmt, ...)
{
	va_list ap;

	fputs("s3hook: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cmd_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "s3hook %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 's3hook %s --help'.\n", cmd);
	return EXIT_USAGE;
}

int cmd_common_opt(struct cmd_common *co, int opt, const char *arg)
{
	switch (opt) {
	case 'c':
		co->config = arg;
		return 1;
	case OPT_ENDPOINT:
		co->endpoint = arg;
		return 1;
	case OPT_REGION:
		co->region = arg;
		return 1;
	case OPT_CA_BUNDLE:
		co->ca_bundle = arg;
		return 1;
	case OPT_PATH_STYLE:
		if (strcmp(arg, "auto") && strcmp(arg, "true") && strcmp(arg, "false")) {
			cmd_error("--path-style takes auto, true or false, not '%s'", SHORT(arg));
			return -1;
		}
		co->path_style = strcmp(arg, "auto") == 0 ? -1 : strcmp(arg, "true") == 0;
		return 1;
	case OPT_LOG_LEVEL:
		co->log_level = arg;
		return 1;
	case OPT_LOG_FORMAT:
		co->log_format = arg;
		return 1;
	}
	return 0;
}

/* The first configuration file of the search path that exists, or NULL. */
static char *find_config(void)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	char *path = NULL;

	if (access("s3hook.conf", F_OK) == 0)
		return xstrdup("s3hook.conf");
	if (xdg && *xdg && asprintf(&path, "%s/s3hook/s3hook.conf", xdg) < 0)
		abort();
	else if ((!xdg || !*xdg) && home && *home &&
		 asprintf(&path, "%s/.config/s3hook/s3hook.conf", home) < 0)
		abort();
	if (path && access(path, F_OK) == 0)
		return path;
	free(path);
	if (access("/etc/s3hook/s3hook.conf", F_OK) == 0)
		return xstrdup("/etc/s3hook/s3hook.conf");
	return NULL;
}

static int setup_log(const struct cmd_common *co)
{
	enum log_level level = LOG_INFO;
	const char *lv = co->log_level, *fmt = co->log_format;

	if (!lv && co->conf)
		lv = ini_get(co->conf, "log", "level", NULL);
	if (!fmt && co->conf)
		fmt = ini_get(co->conf, "log", "format", NULL);
	if (lv && log_level_parse(lv, &level) < 0) {
		cmd_error("log level '%s' is not debug, info, warn, error or off", SHORT(lv));
		return -1;
	}
	if (fmt && strcmp(fmt, "logfmt") && strcmp(fmt, "json")) {
		cmd_error("log format '%s' is not logfmt or json", SHORT(fmt));
		return -1;
	}
	log_setup(level, fmt && strcmp(fmt, "json") == 0 ? LOG_JSON : LOG_LOGFMT, 2);
	return 0;
}

int cmd_load_config(struct cmd_common *co)
{
	struct err e = ERR_INIT;
	char *path = co->config ? xstrdup(co->config) : find_config();
	int r = 0;

	if (path && ini_parse_file(&co->conf, path, INI_INLINE_COMMENTS, &e) < 0) {
		cmd_error("%s", e.msg);
		r = -1;
	}
	free(path);
	return r < 0 ? -1 : setup_log(co);
}

struct s3_client *cmd_s3_client(struct cmd_common *co)
{
	struct s3_config cfg = S3_CONFIG_INIT;
	struct s3_client *c = NULL;
	struct err e = ERR_INIT;

	if (co->endpoint)
		cfg.endpoint = xstrdup(co->endpoint);
	if (co->region)
		cfg.region = xstrdup(co->region);
	if (co->ca_bundle)
		cfg.ca_bundle = xstrdup(co->ca_bundle);
	if (co->path_style >= 0)
		cfg.addressing = co->path_style ? S3_ADDR_PATH : S3_ADDR_VIRTUAL;
	if (s3_config_load(&cfg, co->conf, &e) == 0)
		c = s3_client_new(&cfg, &e);
	if (!c)
		cmd_error("%s", e.msg);
	s3_config_release(&cfg);
	return c;
}

void cmd_common_release(struct cmd_common *co)
{
	ini_free(co->conf);
	co->conf = NULL;
}

struct jobq *cmd_open_queue(struct cmd_common *co, const char *flag, int flags)
{
	struct config cfg = CONFIG_INIT;
	struct jobq *q = NULL;
	struct err e = ERR_INIT;

	if (!flag && config_load(&cfg, co->conf, &e) < 0) {
		cmd_error("%s", e.msg);
		return NULL;
	}
	q = jobq_open(flag ? flag : cfg.queue, (enum jobq_flags)flags, &e);
	if (!q)
		cmd_error("%s", e.msg);
	config_release(&cfg);
	return q;
}
