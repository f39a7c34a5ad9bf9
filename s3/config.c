/* The [s3] section and the AWS credentials chain, into a struct s3_config. */
#include "s3/client.h"

#include "core/err.h"
#include "core/ini.h"
#include "core/str.h"
#include "core/units.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* credential_process: its output is capped, and it gets this long to answer. */
#define PROCESS_OUT_MAX	   (64 << 10)
#define PROCESS_TIMEOUT_MS 60000

extern char **environ;

/* Sets *dst to a copy of value when *dst is still unset and value is not empty. */
static void fill(char **dst, const char *value)
{
	if (!*dst && value && *value)
		*dst = xstrdup(value);
}

static int ms_key(const struct ini *conf, const char *key, unsigned *out, struct err *e)
{
	const struct ini_entry *en = conf ? ini_find(conf, "s3", key) : NULL;
	uint64_t ms;

	if (!en)
		return 0;
	if (units_duration_ms(en->value, &ms) < 0 || ms > 86400000)
		return err_set(e, ERR_CONFIG, "%s:%d: [s3] %s: '%s' is not a duration (e.g. 30s)",
			       SHORT(conf->path), en->line, key, SHORT(en->value));
	*out = (unsigned)ms;
	return 0;
}

static int from_conf(struct s3_config *cfg, const struct ini *conf, struct err *e)
{
	const struct ini_entry *en;
	int n;

	if (!conf)
		return 0;
	fill(&cfg->endpoint, ini_get(conf, "s3", "endpoint", NULL));
	fill(&cfg->region, ini_get(conf, "s3", "region", NULL));
	fill(&cfg->ca_bundle, ini_get(conf, "s3", "ca_bundle", NULL));
	if ((en = ini_find(conf, "s3", "path_style"))) {
		if (strcmp(en->value, "auto") == 0)
			cfg->addressing = S3_ADDR_AUTO;
		else if (strcmp(en->value, "true") == 0 || strcmp(en->value, "yes") == 0)
			cfg->addressing = S3_ADDR_PATH;
		else if (strcmp(en->value, "false") == 0 || strcmp(en->value, "no") == 0)
			cfg->addressing = S3_ADDR_VIRTUAL;
		else
			return err_set(e, ERR_CONFIG, "%s:%d: [s3] path_style: '%s' is not auto, true or false",
				       SHORT(conf->path), en->line, SHORT(en->value));
	}
	if ((en = ini_find(conf, "s3", "retries"))) {
		if (str_to_int(en->value, 0, 20, &n) < 0)
			return err_set(e, ERR_CONFIG, "%s:%d: [s3] retries: '%s' is not 0 to 20",
				       SHORT(conf->path), en->line, SHORT(en->value));
		cfg->retries = (unsigned)n;
	}
	if (ms_key(conf, "connect_timeout", &cfg->connect_timeout_ms, e) < 0 ||
	    ms_key(conf, "stall_timeout", &cfg->stall_timeout_ms, e) < 0 ||
	    ms_key(conf, "request_timeout", &cfg->request_timeout_ms, e) < 0 ||
	    ms_key(conf, "retry_base", &cfg->retry_base_ms, e) < 0)
		return -1;
	return 0;
}

/* ~/.aws/NAME, or the file an environment variable names. */
static char *aws_file(const char *env, const char *name)
{
	const char *p = getenv(env), *home = getenv("HOME");
	char *path;

	if (p && *p)
		return xstrdup(p);
	if (!home || !*home)
		return NULL;
	if (asprintf(&path, "%s/.aws/%s", home, name) < 0)
		abort();
	return path;
}

/* Reads an ~/.aws file; a missing file is no error, a broken one is. */
static int read_aws(struct ini **out, const char *env, const char *name, struct err *e)
{
	char *path = aws_file(env, name);
	int r = 0;

	*out = NULL;
	if (path && access(path, F_OK) == 0)
		r = ini_parse_file(out, path, 0, e);
	free(path);
	return r;
}

/* ---- credential_process (awscli's convention) ---------------------------------------- */

/*
 * Splits a command line into words as POSIX shlex does: blanks separate
 * words, '...' and "..." quote, a backslash escapes the next character
 * (inside "..." only before \ " $ `). Nothing is expanded. NULL when a quote
 * is not closed or there is no word.
 */
static char **split_words(const char *s)
{
	char **v = xcalloc(1, sizeof(char *));
	struct buf w = BUF_INIT;
	size_t n = 0;
	char q = 0;
	int in_word = 0;

	for (;; s++) {
		if (!q && (!*s || *s == ' ' || *s == '\t' || *s == '\n')) {
			if (in_word) {
				v = xrealloc(v, (n + 2) * sizeof(char *));
				v[n++] = buf_detach(&w, NULL);
				v[n] = NULL;
			}
			in_word = 0;
			if (!*s)
				break;
			continue;
		}
		if (!*s)
			break; /* an open quote */
		in_word = 1;
		if (q && *s == q) {
			q = 0;
		} else if (!q && (*s == '\'' || *s == '"')) {
			q = *s;
		} else if (*s == '\\' && q != '\'' && s[1] && (!q || strchr("\\\"$`", s[1]))) {
			buf_addch(&w, *++s);
		} else {
			buf_addch(&w, *s);
		}
	}
	buf_release(&w);
	if (q || !n) {
		for (n = 0; v[n]; n++)
			free(v[n]);
		free(v);
		return NULL;
	}
	return v;
}

static void free_words(char **v)
{
	size_t i;

	for (i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/*
 * Starts argv with stdout and stderr on pipes and stdin on /dev/null. Through
 * posix_spawn (a vfork-style clone in glibc), so the cost does not grow with
 * the daemon; the child gets default signal dispositions and an empty mask
 * (serve blocks its signals in every thread).
 */
static pid_t spawn_piped(char **argv, int out[2], int err[2])
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, def;
	pid_t pid = -1;

	sigemptyset(&none);
	sigfillset(&def);
	sigdelset(&def, SIGKILL);
	sigdelset(&def, SIGSTOP);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &def);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	if (posix_spawnp(&pid, argv[0], &fa, &at, argv, environ) != 0)
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return pid;
}

/* Reads both pipes until EOF or the deadline; 0 at EOF, -1 when time ran out. */
static int drain(int out_fd, int err_fd, struct buf *out, struct buf *err)
{
	struct pollfd p[2] = { { out_fd, POLLIN, 0 }, { err_fd, POLLIN, 0 } };
	struct timespec t0, t;
	char chunk[4096];
	int open_fds = 2, i;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (open_fds) {
		long ms;
		clock_gettime(CLOCK_MONOTONIC, &t);
		ms = PROCESS_TIMEOUT_MS -
		     ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (ms <= 0 || poll(p, 2, (int)ms) == 0)
			return -1;
		for (i = 0; i < 2; i++) {
			ssize_t n;
			if (p[i].fd < 0 || !p[i].revents)
				continue;
			n = read(p[i].fd, chunk, sizeof(chunk));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				p[i].fd = -1;
				open_fds--;
			} else {
				/* Past the cap, the rest is dropped. */
				buf_add(i ? err : out, chunk, (size_t)n);
			}
		}
	}
	return 0;
}

/* Runs argv and collects its output and exit status (-1 when it was killed at the deadline). */
static int run_capture(char **argv, struct buf *out, struct buf *errb, int *status, struct err *e)
{
	int op[2] = { -1, -1 }, ep[2] = { -1, -1 }, r = -1, timed_out;
	pid_t pid;

	if (pipe2(op, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0) {
		err_sys(e, ERR_RUN, "cannot make a pipe for credential_process");
		goto out;
	}
	if ((pid = spawn_piped(argv, op, ep)) < 0) {
		err_set(e, ERR_RUN, "credential_process: cannot run '%s'", SHORT(argv[0]));
		goto out;
	}
	close(op[1]);
	close(ep[1]);
	op[1] = ep[1] = -1;
	timed_out = drain(op[0], ep[0], out, errb) < 0;
	if (timed_out)
		kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
	if (timed_out)
		err_set(e, ERR_TIMEOUT, "credential_process '%s' did not answer in %d s",
			SHORT(argv[0]), PROCESS_TIMEOUT_MS / 1000);
	else
		r = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (op[i] >= 0)
			close(op[i]);
		if (ep[i] >= 0)
			close(ep[i]);
	}
	return r;
}

/* "2030-01-02T03:04:05Z" (fraction and a +HH:MM offset allowed) as a time; -1 when not. */
static time_t parse_iso8601(const char *s)
{
	struct tm tm;
	const char *p;
	int sign, hh, mm;

	memset(&tm, 0, sizeof(tm));
	if (!(p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)))
		return -1;
	if (*p == '.')
		p += 1 + strspn(p + 1, "0123456789");
	if ((*p == 'Z' || *p == 'z') && !p[1])
		return timegm(&tm);
	if ((*p != '+' && *p != '-') || sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 || strlen(p) != 6)
		return -1;
	sign = *p == '-' ? 1 : -1;
	return timegm(&tm) + sign * (hh * 3600 + mm * 60);
}

static const char *jstr(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	return json_is_string(v) && *json_string_value(v) ? json_string_value(v) : NULL;
}

/* The process's answer into cfg. Its values are secrets: no message quotes them. */
static int take_process_json(struct s3_config *cfg, const char *prog, const struct buf *out,
			     struct err *e)
{
	json_t *o = json_loadb(out->data, out->len, 0, NULL);
	const char *ak = jstr(o, "AccessKeyId"), *sk = jstr(o, "SecretAccessKey");
	const char *exp = jstr(o, "Expiration");
	time_t t = 0;
	int r = -1;

	if (!json_is_object(o))
		err_set(e, ERR_AUTH, "credential_process '%s' printed no JSON object", prog);
	else if (json_integer_value(json_object_get(o, "Version")) != 1)
		err_set(e, ERR_AUTH, "credential_process '%s': Version is not 1", prog);
	else if (!ak || !sk)
		err_set(e, ERR_AUTH, "credential_process '%s': no AccessKeyId or SecretAccessKey",
			prog);
	else if (exp && (t = parse_iso8601(exp)) < 0)
		err_set(e, ERR_AUTH, "credential_process '%s': Expiration '%s' is not ISO 8601",
			prog, SHORT(exp));
	else
		r = 0;
	if (r == 0) {
		cfg->access_key = xstrdup(ak);
		cfg->secret_key = xstrdup(sk);
		cfg->session_token =
			jstr(o, "SessionToken") ? xstrdup(jstr(o, "SessionToken")) : NULL;
		cfg->expires = t;
	}
	json_decref(o);
	return r;
}

/* Runs a credential_process command line and takes the keys it prints. */
static int from_process(struct s3_config *cfg, const char *command, struct err *e)
{
	struct buf out = BUF_INIT, errb = BUF_INIT;
	char **argv = split_words(command), prog[128];
	int status = 0, r = -1;

	if (!argv)
		return err_set(e, ERR_CONFIG, "credential_process: cannot split the command line");
	/* Only the program is ever quoted: its arguments may carry a secret. */
	str_copy(prog, sizeof(prog), argv[0]);
	buf_init_cap(&out, PROCESS_OUT_MAX);
	buf_init_cap(&errb, 1024);
	if (run_capture(argv, &out, &errb, &status, e) < 0)
		goto out;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		errb.data[strcspn(errb.data, "\n")] = '\0';
		err_set(e, ERR_AUTH, "credential_process '%s' failed (%s %d)%s%s", SHORT(prog),
			WIFEXITED(status) ? "exit" : "signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
			errb.len ? ": " : "", SHORT(errb.data));
		goto out;
	}
	r = take_process_json(cfg, SHORT(prog), &out, e);
out:
	if (out.data)
		explicit_bzero(out.data, out.len);
	buf_release(&out);
	buf_release(&errb);
	free_words(argv);
	return r;
}

/* ---- profiles -------------------------------------------------------------------------- */

/* The section of `profile` in ~/.aws/config: "profile NAME", or "default". */
static const char *config_section(const struct ini *config, const char *profile, char *buf,
				  size_t size)
{
	snprintf(buf, size, "profile %s", profile);
	if (config && strcmp(profile, "default") == 0 && !ini_section(config, buf))
		return "default";
	return buf;
}

/*
 * The keys of a profile, in awscli's order: ~/.aws/credentials, then the
 * credential_process of the profile, then ~/.aws/config. 1 when found, 0 when
 * the profile has none, -1 when credential_process failed.
 */
static int profile_keys(struct s3_config *cfg, const struct ini *creds, const struct ini *config,
			const char *profile, struct err *e)
{
	char section[512];
	const char *sec = config_section(config, profile, section, sizeof(section));
	const char *proc = config ? ini_get(config, sec, "credential_process", NULL) : NULL;

	if (creds) {
		fill(&cfg->access_key, ini_get(creds, profile, "aws_access_key_id", NULL));
		fill(&cfg->secret_key, ini_get(creds, profile, "aws_secret_access_key", NULL));
		fill(&cfg->session_token, ini_get(creds, profile, "aws_session_token", NULL));
	}
	if (!cfg->access_key && !proc && creds)
		proc = ini_get(creds, profile, "credential_process", NULL);
	if (!cfg->access_key && proc && *proc && from_process(cfg, proc, e) < 0)
		return -1;
	if (config && !cfg->access_key) {
		fill(&cfg->access_key, ini_get(config, sec, "aws_access_key_id", NULL));
		fill(&cfg->secret_key, ini_get(config, sec, "aws_secret_access_key", NULL));
		fill(&cfg->session_token, ini_get(config, sec, "aws_session_token", NULL));
	}
	return cfg->access_key != NULL;
}

static int from_profile(struct s3_config *cfg, const struct ini *creds, const struct ini *config,
			const char *profile, struct err *e)
{
	char section[512];
	const char *sec = config_section(config, profile, section, sizeof(section));
	int r;

	if (!cfg->access_key) {
		if ((r = profile_keys(cfg, creds, config, profile, e)) < 0)
			return -1;
		if (r)
			cfg->profile = xstrdup(profile);
	}
	if (config) {
		fill(&cfg->region, ini_get(config, sec, "region", NULL));
		fill(&cfg->endpoint, ini_get(config, sec, "s3.endpoint_url", NULL));
		fill(&cfg->endpoint, ini_get(config, sec, "endpoint_url", NULL));
		if (cfg->addressing == S3_ADDR_AUTO) {
			const char *st = ini_get(config, sec, "s3.addressing_style", "auto");
			cfg->addressing = strcmp(st, "path") == 0	  ? S3_ADDR_PATH
					  : strcmp(st, "virtual") == 0 ? S3_ADDR_VIRTUAL
								       : S3_ADDR_AUTO;
		}
	}
	return 0;
}

int s3_config_load(struct s3_config *cfg, const struct ini *conf, struct err *e)
{
	const char *profile = getenv("AWS_PROFILE");
	struct ini *creds = NULL, *config = NULL;
	int r = -1;

	if (from_conf(cfg, conf, e) < 0)
		return -1;
	fill(&cfg->endpoint, getenv("AWS_ENDPOINT_URL_S3"));
	fill(&cfg->endpoint, getenv("AWS_ENDPOINT_URL"));
	fill(&cfg->ca_bundle, getenv("AWS_CA_BUNDLE"));
	fill(&cfg->region, getenv("AWS_REGION"));
	fill(&cfg->region, getenv("AWS_DEFAULT_REGION"));
	if (!cfg->access_key && getenv("AWS_ACCESS_KEY_ID") && *getenv("AWS_ACCESS_KEY_ID")) {
		fill(&cfg->access_key, getenv("AWS_ACCESS_KEY_ID"));
		fill(&cfg->secret_key, getenv("AWS_SECRET_ACCESS_KEY"));
		fill(&cfg->session_token, getenv("AWS_SESSION_TOKEN"));
	}
	if (!profile || !*profile)
		profile = conf ? ini_get(conf, "s3", "profile", "default") : "default";
	if (read_aws(&creds, "AWS_SHARED_CREDENTIALS_FILE", "credentials", e) < 0 ||
	    read_aws(&config, "AWS_CONFIG_FILE", "config", e) < 0)
		goto out;
	if (from_profile(cfg, creds, config, profile, e) < 0)
		goto out;
	if (!cfg->access_key || !cfg->secret_key) {
		err_set(e, ERR_AUTH,
			"no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
			"give profile '%s' keys in ~/.aws/credentials",
			SHORT(profile));
		goto out;
	}
	r = 0;
out:
	ini_free(creds);
	ini_free(config);
	return r;
}

int s3_config_refresh(struct s3_config *cfg, struct err *e)
{
	struct s3_config fresh = S3_CONFIG_INIT;
	struct ini *creds = NULL, *config = NULL;
	int r = -1;

	if (!cfg->profile)
		return 0;
	if (read_aws(&creds, "AWS_SHARED_CREDENTIALS_FILE", "credentials", e) < 0 ||
	    read_aws(&config, "AWS_CONFIG_FILE", "config", e) < 0)
		goto out;
	if ((r = profile_keys(&fresh, creds, config, cfg->profile, e)) == 0 || !fresh.secret_key)
		r = err_set(e, ERR_AUTH, "profile '%s' has no credentials now",
			    SHORT(cfg->profile));
	if (r < 0)
		goto out;
	free(cfg->access_key);
	if (cfg->secret_key)
		explicit_bzero(cfg->secret_key, strlen(cfg->secret_key));
	free(cfg->secret_key);
	free(cfg->session_token);
	cfg->access_key = fresh.access_key;
	cfg->secret_key = fresh.secret_key;
	cfg->session_token = fresh.session_token;
	cfg->expires = fresh.expires;
	fresh.access_key = fresh.secret_key = fresh.session_token = NULL;
	r = 0;
out:
	s3_config_release(&fresh);
	ini_free(creds);
	ini_free(config);
	return r;
}

/* Mixes what stat() says of one file into h (nothing when it is absent). */
static uint64_t stamp_file(uint64_t h, const char *env, const char *name)
{
	char *path = aws_file(env, name);
	struct stat st;

	if (path && stat(path, &st) == 0) {
		uint64_t v[4] = { (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec,
				  (uint64_t)st.st_size, (uint64_t)st.st_ino };
		for (size_t i = 0; i < 4; i++)
			h = (h ^ v[i]) * 1099511628211ULL; /* FNV-1a, a word at a time */
	}
	free(path);
	return h;
}

uint64_t s3_config_files_stamp(void)
{
	uint64_t h = 14695981039346656037ULL;

	h = stamp_file(h, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
	return stamp_file(h * 31, "AWS_CONFIG_FILE", "config");
}
