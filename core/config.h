/*
 * config: the s3hook.conf keys, as one table (section, key, type, default,
 * bounds, whether SIGHUP reloads it, meaning) that validation, check-config
 * and README's key table all come from, and the parsed configuration.
 *
 *	struct config cfg = CONFIG_INIT;
 *	if (config_load(&cfg, ini, &e) < 0) ...   every error names file, line and key
 *	... cfg.handlers[i] ...
 *	config_release(&cfg);
 *
 * The [s3] section is read by s3_config_load(); it is validated here too.
 */
#ifndef S3HOOK_CONFIG_H
#define S3HOOK_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct err;
struct ini;

enum config_type {
	CONF_STR,
	CONF_BOOL,
	CONF_INT,
	CONF_DURATION, /* milliseconds */
	CONF_SIZE,     /* bytes */
	CONF_LIST,     /* words separated by spaces */
	CONF_SECRET,   /* literal, env:NAME or file:PATH; never logged */
};

/* One key of the table. */
struct config_key {
	const char *section; /* "handler" stands for every [handler NAME] */
	const char *key;
	enum config_type type;
	const char *def; /* default as written in the file; NULL: none */
	uint64_t min, max; /* bounds for numbers (ms for durations, bytes for sizes) */
	int reload;	   /* SIGHUP applies it without a restart */
	const char *help;
	size_t offset; /* where it goes in struct config or struct handler_conf */
};

extern const struct config_key config_keys[];
extern const size_t config_n_keys;

/* A list of strings (CONF_LIST). */
struct strlist {
	char **v;
	size_t n;
};

struct handler_conf {
	char *name;
	int line; /* of its [handler NAME] header */
	struct strlist events; /* canonical names, "s3:" prefix, '*' wildcards */
	struct strlist bucket;
	struct strlist prefix;
	struct strlist suffix;
	char *content_type; /* glob; NULL: any */
	char *command;	    /* as written */
	char *path;	    /* the program found (absolute) */
	struct strlist argv; /* split like a shell would; argv.v[0] as written */
	char *output;	     /* template, NULL: outputs are not uploaded */
	uint64_t timeout_ms;
	uint64_t grace_ms;
	int64_t max_attempts;
	int64_t concurrency;
	int download;
	uint64_t cpu_s;
	uint64_t address_space;
	int64_t nofile;
	uint64_t fsize;
	char *user;
	struct strlist env; /* NAME or NAME=VALUE */
	uint64_t backoff_ms;
	uint64_t backoff_max_ms;
	uint64_t output_tail;
	long uid, gid; /* of `user`; -1 when unset */
};

struct config {
	char *path;  /* the file, "" when none */
	char *dir;   /* its folder: relative handler commands are found here */
	/* [serve] */
	char *listen;
	char *admin_listen;
	char *auth_token; /* the secret itself, resolved */
	uint64_t body_limit;
	int64_t max_connections;
	uint64_t connection_timeout_ms;
	int64_t max_parsing;
	uint64_t commit_timeout_ms;
	int64_t commit_batch;
	char *tls_cert;	     /* PEM files; with both, the listener speaks HTTPS */
	char *tls_key;
	char *tls_client_ca; /* set: a client certificate it signed is required */
	/* The secrets themselves once config_resolve_token() ran; their specs until then. */
	struct strlist hmac_secrets;
	struct strlist sns_topics; /* TopicArn globs; empty: SNS messages are refused */
	int sns_confirm;
	struct strlist sns_hosts; /* trusted besides sns.REGION.amazonaws.com */
	char *sns_ca_bundle;
	/* [jobs] */
	char *queue;
	int64_t workers;
	char *workdir;
	uint64_t lease_ms;
	uint64_t keep_done_ms;
	uint64_t shutdown_grace_ms;
	int64_t max_depth;
	/* [handler NAME] */
	struct handler_conf *handlers;
	size_t n_handlers;
};

#define CONFIG_INIT { .path = NULL }

/*
 * Validates every section and key of ini (NULL: defaults only) and fills cfg.
 * `path` is the file the ini came from (for messages and relative commands).
 */
int config_load(struct config *cfg, const struct ini *ini, struct err *e);
void config_release(struct config *cfg);

/*
 * Resolves [serve] auth_token (env:NAME, file:PATH, literal; "none" leaves
 * it NULL) and each of hmac_secrets. Apart from config_load() so commands
 * that do not serve need no token.
 */
int config_resolve_token(struct config *cfg, const struct ini *ini, struct err *e);

/* The handler named `name`, or NULL. */
const struct handler_conf *config_handler(const struct config *cfg, const char *name);

/* Resolves a secret: "env:NAME", "file:PATH" or the literal. *out is the caller's. */
int config_secret(const char *spec, char **out, struct err *e);

/* Finds a handler program: absolute; relative to dir; the built-in folder; PATH. */
char *config_find_command(const char *name, const char *dir);

/*
 * Names into `out` the keys that need a restart and differ between `a` (read
 * from ia) and `b` (from ib): "[serve] listen, [s3]". The whole [s3] section
 * counts as one: the S3 client is made once, at start.
 */
void config_restart_keys(const struct config *a, const struct ini *ia, const struct config *b,
			 const struct ini *ib, char *out, size_t size);

#endif
