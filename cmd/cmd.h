/*
 * cmd: the command-line front end. Only this layer prints to the user and
 * chooses exit codes; the work itself lives in the library below.
 */
#ifndef S3HOOK_CMD_H
#define S3HOOK_CMD_H

#include <getopt.h>

struct err;
struct ini;
struct s3_client;
struct jobq;

enum cmd_exit { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

/* Flags every command takes; see CMD_COMMON_OPTIONS. */
struct cmd_common {
	const char *config;
	const char *endpoint;
	const char *region;
	const char *ca_bundle;
	int path_style; /* -1 unset, 0 virtual, 1 path */
	const char *log_level;
	const char *log_format;
	/* loaded */
	struct ini *conf;
};

#define CMD_COMMON_INIT { .path_style = -1 }

enum {
	OPT_ENDPOINT = 1000,
	OPT_REGION,
	OPT_CA_BUNDLE,
	OPT_PATH_STYLE,
	OPT_LOG_LEVEL,
	OPT_LOG_FORMAT,
	OPT_CMD_FIRST /* commands number their own long options from here */
};

#define CMD_COMMON_OPTIONS                                                                         \
	{ "config", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' },           \
		{ "endpoint", required_argument, NULL, OPT_ENDPOINT },                             \
		{ "region", required_argument, NULL, OPT_REGION },                                 \
		{ "ca-bundle", required_argument, NULL, OPT_CA_BUNDLE },                           \
		{ "path-style", required_argument, NULL, OPT_PATH_STYLE },                         \
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },                           \
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT }

#define CMD_COMMON_HELP                                                                            \
	"  -c, --config FILE     configuration file (default: ./s3hook.conf,\n"                   \
	"                        $XDG_CONFIG_HOME/s3hook/s3hook.conf, /etc/s3hook/s3hook.conf)\n" \
	"      --endpoint URL    S3 endpoint (overrides [s3] endpoint)\n"                         \
	"      --region NAME     signing region (overrides [s3] region)\n"                        \
	"      --ca-bundle FILE  CA certificates for https endpoints\n"                           \
	"      --path-style auto|true|false  bucket in the path or in the host name\n"            \
	"      --log-level L     debug, info, warn, error (default info)\n"                       \
	"      --log-format F    logfmt (default) or json\n"                                      \
	"  -h, --help            this help\n"

/*
 * Handles one common option from getopt_long; returns 1 when it was one,
 * 0 when not, -1 (usage message printed) when its value is bad.
 */
int cmd_common_opt(struct cmd_common *co, int opt, const char *arg);

/* Loads the configuration (-c or the search path); prints the error itself. */
int cmd_load_config(struct cmd_common *co);

/* An S3 client from the config, the environment and the flags; prints the error itself. */
struct s3_client *cmd_s3_client(struct cmd_common *co);

void cmd_common_release(struct cmd_common *co);

/* "s3hook: " + message on stderr. */
void cmd_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints the usage hint after a bad argument and returns EXIT_USAGE. */
int cmd_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int cmd_upload(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_cp(int argc, char **argv);
int cmd_presign(int argc, char **argv);
int cmd_check_config(int argc, char **argv);
int cmd_jobs(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_reprocess(int argc, char **argv);

/* Opens the queue [jobs] queue names (or the --queue flag); prints the error itself. */
struct jobq *cmd_open_queue(struct cmd_common *co, const char *flag, int flags);

#endif
