/* s3hook check-config [FILE] [--keys] */
#include "cmd/cmd.h"

#include "core/config.h"
#include "core/err.h"
#include "core/ini.h"
#include "core/str.h"

#include <stdio.h>
#include <string.h>

static const char check_help[] =
	"usage: s3hook check-config [OPTIONS] [FILE]\n\n"
	"Validates a configuration file (FILE, or -c, or the search path) without starting\n"
	"anything: every section and key, handler commands found, the auth token readable.\n"
	"Every error names file, line and key.\n\n"
	"      --keys            print the table of every key (Markdown) and exit\n" CMD_COMMON_HELP;

enum { OPT_KEYS = OPT_CMD_FIRST };

static const char *type_name(enum config_type t)
{
	static const char *const names[] = { "string",	 "bool", "integer", "duration",
					     "size",	 "list", "secret" };
	return names[t];
}

/* The key table README.md carries (a test keeps the two the same). */
static void print_keys(void)
{
	size_t i;

	printf("| section | key | type | default | reload | meaning |\n");
	printf("|---|---|---|---|---|---|\n");
	for (i = 0; i < config_n_keys; i++) {
		const struct config_key *k = &config_keys[i];
		int code = k->def && *k->def;
		printf("| `[%s%s]` | `%s` | %s | %s%s%s | %s | %s |\n", k->section,
		       strcmp(k->section, "handler") ? "" : " NAME", k->key, type_name(k->type),
		       code ? "`" : "", !k->def ? "(none)" : code ? k->def : "(empty)",
		       code ? "`" : "", k->reload ? "yes" : "restart", k->help);
	}
}

static int check(struct cmd_common *co)
{
	struct config cfg = CONFIG_INIT;
	struct err e = ERR_INIT;
	size_t i;
	int rc = EXIT_FAILED;

	if (!co->conf) {
		cmd_error("no configuration file found (give one, or -c FILE)");
		return EXIT_FAILED;
	}
	if (config_load(&cfg, co->conf, &e) < 0 || config_resolve_token(&cfg, co->conf, &e) < 0) {
		cmd_error("%s", e.msg);
		goto out;
	}
	printf("%s: ok\n", cfg.path);
	printf("  listen %s, admin %s, auth:%s%s%s%s\n", cfg.listen,
	       *cfg.admin_listen ? cfg.admin_listen : "off", cfg.auth_token ? " token" : "",
	       cfg.hmac_secrets.n ? " hmac" : "", cfg.sns_topics.n ? " sns" : "",
	       cfg.auth_token || cfg.hmac_secrets.n || cfg.sns_topics.n ? "" : " NONE (open)");
	printf("  queue %s, workdir %s\n", cfg.queue, cfg.workdir);
	for (i = 0; i < cfg.n_handlers; i++)
		printf("  handler %s: %s\n", cfg.handlers[i].name, cfg.handlers[i].path);
	if (!cfg.n_handlers)
		printf("  no handlers: notifications will be accepted and nothing run\n");
	rc = EXIT_OK;
out:
	config_release(&cfg);
	return rc;
}

int cmd_check_config(int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "keys", no_argument, NULL, OPT_KEYS },
		{ NULL, 0, NULL, 0 },
	};
	struct cmd_common co = CMD_COMMON_INIT;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(check_help, stdout);
			return EXIT_OK;
		}
		if (opt == OPT_KEYS) {
			print_keys();
			return EXIT_OK;
		}
		if (opt == '?' || cmd_common_opt(&co, opt, optarg) != 1)
			return cmd_usage_error("check-config", "bad option");
	}
	if (argc - optind > 1)
		return cmd_usage_error("check-config", "give at most one FILE");
	if (optind < argc)
		co.config = argv[optind];
	rc = cmd_load_config(&co) < 0 ? EXIT_FAILED : check(&co);
	cmd_common_release(&co);
	return rc;
}
