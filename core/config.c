#include "core/config.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/event.h"
#include "core/ini.h"
#include "core/run.h"
#include "core/str.h"
#include "core/units.h"

#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NONE SIZE_MAX /* validated, stored elsewhere ([s3], [log]) */
#define C(f) offsetof(struct config, f)
#define H(f) offsetof(struct handler_conf, f)
#define KIB 1024ULL
#define MIB (1024ULL * 1024)
#define GIB (1024ULL * 1024 * 1024)
#define DAY 86400000ULL

const struct config_key config_keys[] = {
	{ "s3", "endpoint", CONF_STR, "", 0, 0, 0, "S3 endpoint URL; empty: AWS", NONE },
	{ "s3", "region", CONF_STR, "us-east-1", 0, 0, 0, "signing region", NONE },
	{ "s3", "path_style", CONF_STR, "auto", 0, 0, 0,
	  "auto, true or false: bucket in the path or in the host name", NONE },
	{ "s3", "ca_bundle", CONF_STR, NULL, 0, 0, 0, "CA certificates for https", NONE },
	{ "s3", "profile", CONF_STR, "default", 0, 0, 0, "profile in ~/.aws when AWS_PROFILE is unset",
	  NONE },
	{ "s3", "retries", CONF_INT, "4", 0, 20, 0, "extra attempts of a failed idempotent request",
	  NONE },
	{ "s3", "retry_base", CONF_DURATION, "200ms", 1, 60000, 0, "first retry backoff, doubling",
	  NONE },
	{ "s3", "connect_timeout", CONF_DURATION, "10s", 100, DAY, 0, "TCP/TLS connect timeout",
	  NONE },
	{ "s3", "stall_timeout", CONF_DURATION, "30s", 1000, DAY, 0,
	  "a transfer slower than 1 KiB/s this long fails", NONE },
	{ "s3", "request_timeout", CONF_DURATION, "5m", 1000, DAY, 0,
	  "whole-request limit for requests without a large body", NONE },
	{ "log", "level", CONF_STR, "info", 0, 0, 1, "debug, info, warn, error or off", NONE },
	{ "log", "format", CONF_STR, "logfmt", 0, 0, 1, "logfmt or json", NONE },
	{ "serve", "listen", CONF_STR, "127.0.0.1:8080", 0, 0, 0, "address of the webhook listener",
	  C(listen) },
	{ "serve", "admin_listen", CONF_STR, "127.0.0.1:8081", 0, 0, 0,
	  "address of /healthz, /readyz, /metrics; empty: off", C(admin_listen) },
	{ "serve", "auth_token", CONF_SECRET, "env:S3HOOK_TOKEN", 0, 0, 1,
	  "token notifications must carry (Bearer or ?token=): literal, env:NAME, file:PATH, or "
	  "none",
	  C(auth_token) },
	{ "serve", "body_limit", CONF_SIZE, "1MiB", KIB, 64 * MIB, 1,
	  "largest notification body; larger: 413", C(body_limit) },
	{ "serve", "max_connections", CONF_INT, "1024", 1, 1000000, 0,
	  "connections the listener holds at once", C(max_connections) },
	{ "serve", "connection_timeout", CONF_DURATION, "30s", 100, DAY, 0,
	  "an idle or slow connection is closed after this", C(connection_timeout_ms) },
	{ "serve", "max_parsing", CONF_INT, "8", 1, 1024, 1,
	  "bodies parsed at once; more wait (bounds memory and CPU)", C(max_parsing) },
	{ "serve", "commit_timeout", CONF_DURATION, "5s", 10, 600000, 1,
	  "a commit slower than this answers 503", C(commit_timeout_ms) },
	{ "serve", "commit_batch", CONF_INT, "256", 1, 100000, 1,
	  "most requests committed in one transaction", C(commit_batch) },
	{ "serve", "tls_cert", CONF_STR, NULL, 0, 0, 0,
	  "PEM certificate (chain) of the listener; with tls_key it speaks HTTPS only",
	  C(tls_cert) },
	{ "serve", "tls_key", CONF_STR, NULL, 0, 0, 0, "PEM private key of tls_cert, unencrypted",
	  C(tls_key) },
	{ "serve", "tls_client_ca", CONF_STR, NULL, 0, 0, 0,
	  "PEM CA certificates; set: every request needs a client certificate they signed",
	  C(tls_client_ca) },
	{ "serve", "hmac_secrets", CONF_LIST, NULL, 0, 0, 1,
	  "secrets for X-S3hook-Signature: sha256=HMAC of the body, each literal, env:NAME or "
	  "file:PATH; several while rotating",
	  C(hmac_secrets) },
	{ "serve", "sns_topics", CONF_LIST, NULL, 0, 0, 1,
	  "SNS TopicArns ('*' wildcards) whose signed messages are taken; empty: no SNS",
	  C(sns_topics) },
	{ "serve", "sns_confirm", CONF_BOOL, "false", 0, 0, 1,
	  "confirm SNS subscriptions of sns_topics (GET SubscribeURL)", C(sns_confirm) },
	{ "serve", "sns_hosts", CONF_LIST, NULL, 0, 0, 1,
	  "hosts trusted for SigningCertURL and SubscribeURL besides sns.REGION.amazonaws.com "
	  "(tests; not for production)",
	  C(sns_hosts) },
	{ "serve", "sns_ca_bundle", CONF_STR, NULL, 0, 0, 1,
	  "CA certificates for fetching from SNS hosts; unset: the system's", C(sns_ca_bundle) },
	{ "jobs", "queue", CONF_STR, "/var/lib/s3hook/queue.db", 0, 0, 0,
	  "SQLite file, or postgres://... to scale out", C(queue) },
	{ "jobs", "workers", CONF_INT, "0", 0, 4096, 0, "handler runs at once; 0: one per CPU",
	  C(workers) },
	{ "jobs", "workdir", CONF_STR, "/var/lib/s3hook/work", 0, 0, 0,
	  "where each job gets its private folder", C(workdir) },
	{ "jobs", "lease", CONF_DURATION, "60s", 100, DAY, 1,
	  "claim length; renewed while a handler runs", C(lease_ms) },
	{ "jobs", "keep_done", CONF_DURATION, "7d", 0, 3650 * DAY, 1,
	  "finished jobs are pruned after this (the ledger stays)", C(keep_done_ms) },
	{ "jobs", "shutdown_grace", CONF_DURATION, "30s", 0, DAY, 1,
	  "on SIGTERM, running handlers get this long before their jobs are released",
	  C(shutdown_grace_ms) },
	{ "jobs", "max_depth", CONF_INT, "4", 0, 1000, 1,
	  "no job runs on an object made by a chain deeper than this", C(max_depth) },
	{ "handler", "events", CONF_LIST, "s3:ObjectCreated:*", 0, 0, 1,
	  "event names, '*' wildcards, 's3:' optional", H(events) },
	{ "handler", "bucket", CONF_LIST, NULL, 0, 0, 1, "buckets (any when unset)", H(bucket) },
	{ "handler", "prefix", CONF_LIST, NULL, 0, 0, 1, "key prefixes (any when unset)",
	  H(prefix) },
	{ "handler", "suffix", CONF_LIST, NULL, 0, 0, 1, "key suffixes (any when unset)",
	  H(suffix) },
	{ "handler", "content_type", CONF_STR, NULL, 0, 0, 1,
	  "glob on the object's Content-Type; checked by the worker", H(content_type) },
	{ "handler", "command", CONF_STR, NULL, 0, 0, 1,
	  "program and arguments, split like a shell would (nothing expanded)", H(command) },
	{ "handler", "output", CONF_STR, NULL, 0, 0, 1,
	  "where outputs go: s3://{bucket}/thumbs/{key}.jpg ({bucket} {key} {dir} {name} {stem} "
	  "{ext} {file})",
	  H(output) },
	{ "handler", "timeout", CONF_DURATION, "60s", 100, DAY, 1,
	  "then SIGTERM to the handler's process group", H(timeout_ms) },
	{ "handler", "grace", CONF_DURATION, "5s", 0, 600000, 1, "after SIGTERM, until SIGKILL",
	  H(grace_ms) },
	{ "handler", "max_attempts", CONF_INT, "5", 1, 1000, 1, "then the job is dead",
	  H(max_attempts) },
	{ "handler", "concurrency", CONF_INT, "0", 0, 4096, 1, "runs at once; 0: up to workers",
	  H(concurrency) },
	{ "handler", "download", CONF_BOOL, "true", 0, 0, 1,
	  "download the object to $S3HOOK_INPUT first", H(download) },
	{ "handler", "cpu", CONF_DURATION, "0", 0, DAY, 1, "CPU time limit (RLIMIT_CPU); 0: none",
	  H(cpu_s) },
	{ "handler", "address_space", CONF_SIZE, "4GiB", 0, 1024 * GIB, 1,
	  "RLIMIT_AS; 0: none", H(address_space) },
	{ "handler", "nofile", CONF_INT, "1024", 0, 1048576, 1, "RLIMIT_NOFILE; 0: inherit",
	  H(nofile) },
	{ "handler", "fsize", CONF_SIZE, "0", 0, 1024 * GIB, 1,
	  "largest file the handler may write (RLIMIT_FSIZE); 0: none", H(fsize) },
	{ "handler", "user", CONF_STR, NULL, 0, 0, 1, "run as this user (s3hook must be root)",
	  H(user) },
	{ "handler", "env", CONF_LIST, NULL, 0, 0, 1,
	  "extra environment: NAME (passed through) or NAME=VALUE", H(env) },
	{ "handler", "backoff", CONF_DURATION, "1s", 1, DAY, 1,
	  "first retry delay, doubling, with jitter", H(backoff_ms) },
	{ "handler", "backoff_max", CONF_DURATION, "10m", 1, 30 * DAY, 1, "longest retry delay",
	  H(backoff_max_ms) },
	{ "handler", "output_tail", CONF_SIZE, "64KiB", 0, 16 * MIB, 1,
	  "bytes of stdout and of stderr kept with the job", H(output_tail) },
};

const size_t config_n_keys = sizeof(config_keys) / sizeof(config_keys[0]);

/* ---- values -------------------------------------------------------------------- */

static void strlist_release(struct strlist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static void strlist_add(struct strlist *l, const char *s, size_t len)
{
	l->v = xrealloc(l->v, (l->n + 2) * sizeof(char *));
	l->v[l->n++] = xstrndup(s, len);
	l->v[l->n] = NULL;
}

/* Words separated by spaces or commas. */
static void split_list(struct strlist *l, const char *s)
{
	while (*s) {
		size_t n;
		s += strspn(s, " \t,");
		n = strcspn(s, " \t,");
		if (n)
			strlist_add(l, s, n);
		s += n;
	}
}

int config_secret(const char *spec, char **out, struct err *e)
{
	struct buf b = BUF_INIT;
	const char *v;

	*out = NULL;
	if (str_starts_with(spec, "env:")) {
		v = getenv(spec + 4);
		if (!v || !*v)
			return err_set(e, ERR_CONFIG, "environment variable %s is not set",
				       SHORT(spec + 4));
		*out = xstrdup(v);
		return 0;
	}
	if (str_starts_with(spec, "file:")) {
		if (buf_read_file(&b, spec + 5, 64 * KIB, e) < 0)
			return -1;
		while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
			buf_setlen(&b, b.len - 1);
		if (!b.len) {
			buf_release(&b);
			return err_set(e, ERR_CONFIG, "'%s' is empty", SHORT(spec + 5));
		}
		*out = buf_detach(&b, NULL);
		return 0;
	}
	*out = xstrdup(spec);
	return 0;
}

__attribute__((format(printf, 4, 5))) static int bad(const struct ini *ini, int line,
						       struct err *e, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(e, ERR_CONFIG, "%s:%d: %s", ini ? SHORT(ini->path) : "(defaults)", line,
		       msg);
}

static int parse_number(const struct config_key *k, const char *v, uint64_t *out)
{
	int r;

	if (k->type == CONF_DURATION)
		r = units_duration_ms(v, out);
	else if (k->type == CONF_SIZE)
		r = units_size(v, out);
	else
		r = str_to_u64(v, out);
	if (r < 0)
		return -1;
	return (*out < k->min || (k->max && *out > k->max)) ? -2 : 0;
}

static const char *type_hint(enum config_type t)
{
	switch (t) {
	case CONF_DURATION:
		return "a duration (e.g. 30s, 500ms, 7d)";
	case CONF_SIZE:
		return "a size (e.g. 1MiB, 64KiB)";
	case CONF_BOOL:
		return "true or false";
	default:
		return "a whole number";
	}
}

/* Stores one value (or the default, when v is NULL) at base + k->offset. */
static int store(void *base, const struct config_key *k, const char *v, const struct ini *ini,
		 int line, const char *sec, struct err *e)
{
	char *field = (char *)base + k->offset;
	uint64_t n;
	int r;

	if (!v)
		v = k->def;
	if (!v)
		return 0;
	switch (k->type) {
	case CONF_STR:
	case CONF_SECRET:
		*(char **)(void *)field = xstrdup(v);
		return 0;
	case CONF_LIST:
		strlist_release((struct strlist *)(void *)field);
		split_list((struct strlist *)(void *)field, v);
		return 0;
	case CONF_BOOL:
		if (strcmp(v, "true") && strcmp(v, "false") && strcmp(v, "yes") && strcmp(v, "no"))
			return bad(ini, line, e, "[%s] %s: '%s' is not true or false", sec, k->key,
				   SHORT(v));
		*(int *)(void *)field = !strcmp(v, "true") || !strcmp(v, "yes");
		return 0;
	default:
		break;
	}
	r = parse_number(k, v, &n);
	if (r == -1)
		return bad(ini, line, e, "[%s] %s: '%s' is not %s", sec, k->key, SHORT(v),
			   type_hint(k->type));
	if (r == -2)
		return bad(ini, line, e, "[%s] %s: '%s' is out of range (%llu to %llu%s)", sec,
			   k->key, SHORT(v), (unsigned long long)k->min, (unsigned long long)k->max,
			   k->type == CONF_DURATION ? " ms" : k->type == CONF_SIZE ? " bytes" : "");
	if (k->type == CONF_INT)
		*(int64_t *)(void *)field = (int64_t)n;
	else
		*(uint64_t *)(void *)field = n;
	return 0;
}

static const struct config_key *find_key(const char *section, const char *key)
{
	size_t i;

	for (i = 0; i < config_n_keys; i++)
		if (!strcmp(config_keys[i].section, section) && !strcmp(config_keys[i].key, key))
			return &config_keys[i];
	return NULL;
}

/* ---- sections ------------------------------------------------------------------ */

/* Checks a value of [s3] or [log], which other modules store. */
static int check_only(const struct config_key *k, const struct ini_entry *en,
		      const struct ini *ini, struct err *e)
{
	uint64_t n;
	int r;

	if (k->type == CONF_STR) {
		if (!strcmp(k->key, "path_style") && strcmp(en->value, "auto") &&
		    strcmp(en->value, "true") && strcmp(en->value, "false"))
			return bad(ini, en->line, e, "[s3] path_style: '%s' is not auto, true or false",
				   SHORT(en->value));
		if (!strcmp(k->section, "log") && !strcmp(k->key, "format") &&
		    strcmp(en->value, "logfmt") && strcmp(en->value, "json"))
			return bad(ini, en->line, e, "[log] format: '%s' is not logfmt or json",
				   SHORT(en->value));
		return 0;
	}
	r = parse_number(k, en->value, &n);
	if (r < 0)
		return bad(ini, en->line, e, "[%s] %s: '%s' is %s", k->section, k->key,
			   SHORT(en->value), r == -1 ? type_hint(k->type) : "out of range");
	return 0;
}

/* Fills base with the defaults of a section kind, then with the entries of one section. */
static int load_section(void *base, const char *kind, const char *name, const struct ini *ini,
			struct err *e)
{
	size_t i;

	for (i = 0; i < config_n_keys; i++)
		if (!strcmp(config_keys[i].section, kind) && config_keys[i].offset != NONE &&
		    store(base, &config_keys[i], NULL, ini, 0, name, e) < 0)
			return -1;
	for (i = 0; ini && i < ini->n_entries; i++) {
		const struct ini_entry *en = &ini->entries[i];
		const struct config_key *k;
		char *field;
		if (strcmp(en->section, name))
			continue;
		if (!(k = find_key(kind, en->key)))
			return bad(ini, en->line, e, "[%s] has no key '%s'", SHORT(name),
				   SHORT(en->key));
		if (k->offset == NONE) {
			if (check_only(k, en, ini, e) < 0)
				return -1;
			continue;
		}
		field = (char *)base + k->offset;
		if (k->type == CONF_STR || k->type == CONF_SECRET) {
			free(*(char **)(void *)field);
			*(char **)(void *)field = NULL;
		}
		if (store(base, k, en->value, ini, en->line, name, e) < 0)
			return -1;
	}
	return 0;
}

static int line_of(const struct ini *ini, const char *section, const char *key)
{
	const struct ini_entry *en = ini ? ini_find(ini, section, key) : NULL;
	const struct ini_section *s = ini ? ini_section(ini, section) : NULL;

	return en ? en->line : s ? s->line : 0;
}

static int resolve_token(struct config *cfg, const struct ini *ini, struct err *e)
{
	char *spec = cfg->auth_token;
	struct err inner = ERR_INIT;

	cfg->auth_token = NULL;
	if (!strcmp(spec, "none") || !*spec) {
		free(spec);
		return 0;
	}
	if (config_secret(spec, &cfg->auth_token, &inner) < 0) {
		free(spec);
		return bad(ini, line_of(ini, "serve", "auth_token"), e, "[serve] auth_token: %s",
			   inner.msg);
	}
	free(spec);
	return 0;
}

/* Each spec of hmac_secrets becomes the secret it names. */
static int resolve_hmac(struct config *cfg, const struct ini *ini, struct err *e)
{
	struct err inner = ERR_INIT;
	size_t i;

	for (i = 0; i < cfg->hmac_secrets.n; i++) {
		char *secret;
		if (config_secret(cfg->hmac_secrets.v[i], &secret, &inner) < 0)
			return bad(ini, line_of(ini, "serve", "hmac_secrets"), e,
				   "[serve] hmac_secrets: %s", inner.msg);
		free(cfg->hmac_secrets.v[i]);
		cfg->hmac_secrets.v[i] = secret;
	}
	return 0;
}

static void secrets_release(struct strlist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		explicit_bzero(l->v[i], strlen(l->v[i]));
	strlist_release(l);
}

/* An optional path written empty ("tls_cert =") is no path. */
static void unset_empty(char **path)
{
	if (*path && !**path) {
		free(*path);
		*path = NULL;
	}
}

/* The [serve] keys that only make sense together. */
static int check_serve(struct config *cfg, const struct ini *ini, struct err *e)
{
	size_t i;

	unset_empty(&cfg->tls_cert);
	unset_empty(&cfg->tls_key);
	unset_empty(&cfg->tls_client_ca);
	unset_empty(&cfg->sns_ca_bundle);
	if (!cfg->tls_cert != !cfg->tls_key)
		return bad(ini, line_of(ini, "serve", cfg->tls_cert ? "tls_cert" : "tls_key"), e,
			   "[serve] tls_cert and tls_key go together");
	if (cfg->tls_client_ca && !cfg->tls_cert)
		return bad(ini, line_of(ini, "serve", "tls_client_ca"), e,
			   "[serve] tls_client_ca needs tls_cert and tls_key");
	for (i = 0; i < cfg->sns_topics.n; i++)
		if (!str_starts_with(cfg->sns_topics.v[i], "arn:"))
			return bad(ini, line_of(ini, "serve", "sns_topics"), e,
				   "[serve] sns_topics: '%s' is not a TopicArn (arn:aws:sns:...)",
				   SHORT(cfg->sns_topics.v[i]));
	return 0;
}

static int valid_name(const char *s)
{
	return *s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
			     strlen(s);
}

static int check_sections(const struct ini *ini, struct err *e)
{
	static const char *const known[] = { "s3", "log", "serve", "jobs", NULL };
	size_t i, j;

	for (i = 0; ini && i < ini->n_sections; i++) {
		const struct ini_section *s = &ini->sections[i];
		int ok = 0;
		for (j = 0; known[j]; j++)
			ok |= !strcmp(s->name, known[j]);
		if (str_starts_with(s->name, "handler ")) {
			if (!valid_name(s->name + 8))
				return bad(ini, s->line, e,
					   "handler name '%s' may hold only letters, digits, '_', "
					   "'.' and '-'",
					   SHORT(s->name + 8));
			ok = 1;
		}
		if (!ok)
			return bad(ini, s->line, e, "unknown section '[%s]'", SHORT(s->name));
	}
	for (i = 0; ini && i < ini->n_entries; i++)
		if (!*ini->entries[i].section)
			return bad(ini, ini->entries[i].line, e, "key '%s' is outside any section",
				   SHORT(ini->entries[i].key));
	return 0;
}

/* ---- handlers ------------------------------------------------------------------ */

static char *executable_in(const char *dir, const char *name)
{
	char *p;

	if (!dir || !*dir)
		return NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		abort();
	if (access(p, X_OK) == 0) {
		char *abs = realpath(p, NULL);
		free(p);
		return abs;
	}
	free(p);
	return NULL;
}

/* Built-in handler folders: the installed one, and beside the binary (a build tree). */
static char *builtin_command(const char *name)
{
	char exe[PATH_MAX], dir[PATH_MAX + 32], *slash, *found;
	ssize_t n;

	if ((found = executable_in(getenv("S3HOOK_LIBEXEC"), name)))
		return found;
	if ((found = executable_in(S3HOOK_LIBEXEC, name)))
		return found;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	if ((slash = strrchr(exe, '/')))
		*slash = '\0';
	snprintf(dir, sizeof(dir), "%s/../libexec/s3hook", exe);
	if ((found = executable_in(dir, name)))
		return found;
	snprintf(dir, sizeof(dir), "%s/../scripts/handlers", exe);
	return executable_in(dir, name);
}

char *config_find_command(const char *name, const char *dir)
{
	const char *path = getenv("PATH");
	char *found;

	if (name[0] == '/')
		return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
	if ((found = executable_in(dir, name)) || strchr(name, '/'))
		return found;
	if ((found = builtin_command(name)))
		return found;
	while (path && *path) {
		size_t n = strcspn(path, ":");
		char d[PATH_MAX];
		if (n && n < sizeof(d) && path[0] == '/') {
			memcpy(d, path, n);
			d[n] = '\0';
			if ((found = executable_in(d, name)))
				return found;
		}
		path += n + (path[n] == ':');
	}
	return NULL;
}

/* The line of a handler's key, or of its header when the key is not given. */
static int hline(const struct ini *ini, const struct handler_conf *h, const char *key)
{
	struct buf sec = BUF_INIT;
	int line;

	/* Handler names have no length limit: a fixed buffer would cut one and find no line. */
	buf_addf(&sec, "handler %s", h->name);
	line = line_of(ini, sec.data, key);
	buf_release(&sec);
	return line;
}

static int check_output(const struct handler_conf *h, const struct ini *ini, struct err *e)
{
	static const char *const names[] = { "bucket", "key", "dir", "name", "stem",
					     "ext",    "file", "handler", NULL };
	const char *p;
	size_t i;

	if (!h->output)
		return 0;
	if (!str_starts_with(h->output, "s3://") || strlen(h->output) < 6)
		return bad(ini, hline(ini, h, "output"), e,
			   "[handler %s] output: '%s' must start with s3://BUCKET/", h->name,
			   SHORT(h->output));
	for (p = strchr(h->output, '{'); p; p = strchr(p + 1, '{')) {
		size_t n = strcspn(p + 1, "}");
		int ok = 0;
		for (i = 0; names[i]; i++)
			ok |= strlen(names[i]) == n && !strncmp(p + 1, names[i], n) && p[n + 1];
		if (!ok)
			return bad(ini, hline(ini, h, "output"), e,
				   "[handler %s] output: unknown placeholder in '%s' (known: {bucket} "
				   "{key} {dir} {name} {stem} {ext} {file} {handler})",
				   h->name, SHORT(h->output));
	}
	return 0;
}

static int load_command(struct handler_conf *h, const struct config *cfg, const struct ini *ini,
			struct err *e)
{
	struct run_vec argv = RUN_VEC_INIT;
	struct err inner = ERR_INIT;
	size_t i;

	if (!h->command || !*h->command)
		return bad(ini, h->line, e, "[handler %s] needs a command", h->name);
	if (run_split(&argv, h->command, &inner) < 0 || argv.n == 0) {
		run_vec_release(&argv);
		return bad(ini, hline(ini, h, "command"), e, "[handler %s] command: %s", h->name,
			   inner.msg[0] ? inner.msg : "empty");
	}
	for (i = 0; i < argv.n; i++)
		strlist_add(&h->argv, argv.v[i], strlen(argv.v[i]));
	run_vec_release(&argv);
	h->path = config_find_command(h->argv.v[0], cfg->dir);
	if (!h->path)
		return bad(ini, hline(ini, h, "command"), e,
			   "[handler %s] command: '%s' not found (absolute, next to the config "
			   "file, built-in, or on PATH)",
			   h->name, SHORT(h->argv.v[0]));
	return 0;
}

static int load_events(struct handler_conf *h, const struct ini *ini, struct err *e)
{
	size_t i;

	if (!h->events.n)
		return bad(ini, hline(ini, h, "events"), e, "[handler %s] events: none given",
			   h->name);
	for (i = 0; i < h->events.n; i++) {
		char *c = event_name_canonical(h->events.v[i]);
		if (!c || strlen(c) < 4)
			return free(c), bad(ini, hline(ini, h, "events"), e,
					    "[handler %s] events: '%s' is not an event name",
					    h->name, SHORT(h->events.v[i]));
		free(h->events.v[i]);
		h->events.v[i] = c;
	}
	return 0;
}

static int lookup_user(const char *name, long *uid, long *gid)
{
	struct passwd pw, *res = NULL;
	char scratch[4096];

	if (getpwnam_r(name, &pw, scratch, sizeof(scratch), &res) != 0 || !res)
		return -1;
	*uid = (long)pw.pw_uid;
	*gid = (long)pw.pw_gid;
	return 0;
}

static int load_env_and_user(struct handler_conf *h, const struct ini *ini, struct err *e)
{
	size_t i;

	for (i = 0; i < h->env.n; i++) {
		size_t n = strcspn(h->env.v[i], "=");
		if (!n || strspn(h->env.v[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					      "0123456789_") != n)
			return bad(ini, hline(ini, h, "env"), e,
				   "[handler %s] env: '%s' is not NAME or NAME=VALUE", h->name,
				   SHORT(h->env.v[i]));
	}
	h->uid = h->gid = -1;
	if (h->user && lookup_user(h->user, &h->uid, &h->gid) < 0)
		return bad(ini, hline(ini, h, "user"), e, "[handler %s] user: no user '%s'",
			   h->name, SHORT(h->user));
	return 0;
}

static int load_handler(struct config *cfg, const struct ini_section *s, const struct ini *ini,
			struct err *e)
{
	struct handler_conf *h;

	cfg->handlers = xrealloc(cfg->handlers, (cfg->n_handlers + 1) * sizeof(*cfg->handlers));
	h = &cfg->handlers[cfg->n_handlers++];
	memset(h, 0, sizeof(*h));
	h->name = xstrdup(s->name + 8);
	h->line = s->line;
	if (load_section(h, "handler", s->name, ini, e) < 0 || load_command(h, cfg, ini, e) < 0 ||
	    load_events(h, ini, e) < 0 || check_output(h, ini, e) < 0 ||
	    load_env_and_user(h, ini, e) < 0)
		return -1;
	if (h->backoff_max_ms < h->backoff_ms)
		h->backoff_max_ms = h->backoff_ms;
	return 0;
}

static void set_paths(struct config *cfg, const struct ini *ini)
{
	char *slash;

	cfg->path = xstrdup(ini ? ini->path : "");
	cfg->dir = xstrdup(ini ? ini->path : ".");
	slash = strrchr(cfg->dir, '/');
	if (slash)
		*slash = '\0';
	else
		str_copy(cfg->dir, strlen(cfg->dir) + 1, ".");
	if (!ini) {
		free(cfg->dir);
		cfg->dir = xstrdup(".");
	}
}

/* A relative path in the file is relative to the file's folder, not to where s3hook runs. */
static void make_absolute(char **path, const char *dir)
{
	char *p;

	if (!*path || (*path)[0] == '/' || strstr(*path, "://") || !strcmp(dir, "."))
		return;
	if (asprintf(&p, "%s/%s", dir, *path) < 0)
		abort();
	free(*path);
	*path = p;
}

int config_load(struct config *cfg, const struct ini *ini, struct err *e)
{
	size_t i;

	memset(cfg, 0, sizeof(*cfg));
	set_paths(cfg, ini);
	if (check_sections(ini, e) < 0 || load_section(cfg, "serve", "serve", ini, e) < 0 ||
	    load_section(cfg, "jobs", "jobs", ini, e) < 0 ||
	    load_section(cfg, "s3", "s3", ini, e) < 0 || load_section(cfg, "log", "log", ini, e) < 0)
		goto fail;
	for (i = 0; ini && i < ini->n_sections; i++)
		if (str_starts_with(ini->sections[i].name, "handler ") &&
		    load_handler(cfg, &ini->sections[i], ini, e) < 0)
			goto fail;
	if (check_serve(cfg, ini, e) < 0)
		goto fail;
	make_absolute(&cfg->queue, cfg->dir);
	make_absolute(&cfg->workdir, cfg->dir);
	make_absolute(&cfg->tls_cert, cfg->dir);
	make_absolute(&cfg->tls_key, cfg->dir);
	make_absolute(&cfg->tls_client_ca, cfg->dir);
	make_absolute(&cfg->sns_ca_bundle, cfg->dir);
	return 0;
fail:
	config_release(cfg);
	return -1;
}

/* The [serve] auth_token, resolved: separate, so commands that do not serve need no token. */
int config_resolve_token(struct config *cfg, const struct ini *ini, struct err *e)
{
	if (cfg->auth_token && resolve_token(cfg, ini, e) < 0)
		return -1;
	return resolve_hmac(cfg, ini, e);
}

static void handler_release(struct handler_conf *h)
{
	free(h->name);
	strlist_release(&h->events);
	strlist_release(&h->bucket);
	strlist_release(&h->prefix);
	strlist_release(&h->suffix);
	free(h->content_type);
	free(h->command);
	free(h->path);
	strlist_release(&h->argv);
	free(h->output);
	free(h->user);
	strlist_release(&h->env);
}

void config_release(struct config *cfg)
{
	size_t i;

	free(cfg->path);
	free(cfg->dir);
	free(cfg->listen);
	free(cfg->admin_listen);
	if (cfg->auth_token)
		explicit_bzero(cfg->auth_token, strlen(cfg->auth_token));
	free(cfg->auth_token);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->tls_client_ca);
	secrets_release(&cfg->hmac_secrets);
	strlist_release(&cfg->sns_topics);
	strlist_release(&cfg->sns_hosts);
	free(cfg->sns_ca_bundle);
	free(cfg->queue);
	free(cfg->workdir);
	for (i = 0; i < cfg->n_handlers; i++)
		handler_release(&cfg->handlers[i]);
	free(cfg->handlers);
	memset(cfg, 0, sizeof(*cfg));
}

const struct handler_conf *config_handler(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->n_handlers; i++)
		if (!strcmp(cfg->handlers[i].name, name))
			return &cfg->handlers[i];
	return NULL;
}

static void name_if_changed(struct buf *b, const char *key, const char *x, const char *y)
{
	if (strcmp(x ? x : "", y ? y : ""))
		buf_addf(b, "%s%s", b->len ? ", " : "", key);
}

void config_restart_keys(const struct config *a, const struct ini *ia, const struct config *b,
			 const struct ini *ib, char *out, size_t size)
{
	struct buf names = BUF_INIT;

	name_if_changed(&names, "[serve] listen", a->listen, b->listen);
	name_if_changed(&names, "[serve] admin_listen", a->admin_listen, b->admin_listen);
	name_if_changed(&names, "[serve] tls_cert", a->tls_cert, b->tls_cert);
	name_if_changed(&names, "[serve] tls_key", a->tls_key, b->tls_key);
	name_if_changed(&names, "[serve] tls_client_ca", a->tls_client_ca, b->tls_client_ca);
	name_if_changed(&names, "[jobs] queue", a->queue, b->queue);
	name_if_changed(&names, "[jobs] workdir", a->workdir, b->workdir);
	if (a->workers != b->workers)
		buf_addf(&names, "%s[jobs] workers", names.len ? ", " : "");
	if (a->max_connections != b->max_connections)
		buf_addf(&names, "%s[serve] max_connections", names.len ? ", " : "");
	if (a->connection_timeout_ms != b->connection_timeout_ms)
		buf_addf(&names, "%s[serve] connection_timeout", names.len ? ", " : "");
	if (!ini_section_same(ia, ib, "s3"))
		buf_addf(&names, "%s[s3]", names.len ? ", " : "");
	str_copy(out, size, names.data);
	buf_release(&names);
}
