/* The [s3] section and the AWS credentials chain, into a struct s3_config. */
#include "s3/client.h"

#include "core/err.h"
#include "core/ini.h"
#include "core/str.h"
#include "core/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static void from_profile(struct s3_config *cfg, const struct ini *creds, const struct ini *config,
			 const char *profile)
{
	char section[512];
	const char *sec = section;
	int have_keys = cfg->access_key != NULL;

	snprintf(section, sizeof(section), "profile %s", profile);
	if (config && strcmp(profile, "default") == 0 && !ini_section(config, section))
		sec = "default";
	if (creds && !have_keys) {
		fill(&cfg->access_key, ini_get(creds, profile, "aws_access_key_id", NULL));
		fill(&cfg->secret_key, ini_get(creds, profile, "aws_secret_access_key", NULL));
		fill(&cfg->session_token, ini_get(creds, profile, "aws_session_token", NULL));
	}
	if (config && !cfg->access_key) {
		fill(&cfg->access_key, ini_get(config, sec, "aws_access_key_id", NULL));
		fill(&cfg->secret_key, ini_get(config, sec, "aws_secret_access_key", NULL));
		fill(&cfg->session_token, ini_get(config, sec, "aws_session_token", NULL));
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
	from_profile(cfg, creds, config, profile);
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
