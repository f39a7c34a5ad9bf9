/* s3hook ls s3://BUCKET[/PREFIX] */
#include "cmd/cmd.h"

#include "core/err.h"

#include "core/str.h"
#include "s3/client.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char ls_help[] =
	"usage: s3hook ls [OPTIONS] s3://BUCKET[/PREFIX]\n\n"
	"Lists every object whose key starts with PREFIX: date, size, key (control characters\n"
	"in keys shown escaped; --json gives them exactly).\n\n"
	"      --json            one JSON object per object\n" CMD_COMMON_HELP;

enum { OPT_JSON = OPT_CMD_FIRST };

static void print_entry(const struct s3_entry *en, int json)
{
	char when[32], *s;
	struct tm tm;
	json_t *j;

	gmtime_r(&en->last_modified, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	if (!json) {
		struct buf esc = BUF_INIT;
		const char *p;
		for (p = en->key; *p; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				buf_addf(&esc, "\\x%02x", (unsigned char)*p);
			else
				buf_addch(&esc, *p);
		}
		printf("%s %12llu %s\n", when, (unsigned long long)en->size, esc.data);
		buf_release(&esc);
		return;
	}
	j = json_pack("{s:s, s:I, s:s, s:s}", "key", en->key, "size", (json_int_t)en->size, "etag",
		      en->etag, "last_modified", when);
	s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(j);
}

static int list_all(struct s3_client *c, const char *bucket, const char *prefix, int json)
{
	struct s3_list_opts lo = { .prefix = prefix };
	struct s3_list_page page = S3_LIST_PAGE_INIT;
	struct err e = ERR_INIT;
	char *token = NULL;
	size_t i;
	int rc = EXIT_OK;

	do {
		lo.token = token;
		if (s3_list_objects(c, bucket, &lo, &page, &e) < 0) {
			cmd_error("%s", e.msg);
			rc = EXIT_FAILED;
			break;
		}
		for (i = 0; i < page.n_entries; i++)
			print_entry(&page.entries[i], json);
		free(token);
		token = page.truncated ? xstrdup(page.next_token) : NULL;
	} while (token);
	free(token);
	s3_list_page_release(&page);
	return rc;
}

int cmd_ls(int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_COMMON_OPTIONS,
		{ "json", no_argument, NULL, OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	struct cmd_common co = CMD_COMMON_INIT;
	struct s3_client *c = NULL;
	struct err e = ERR_INIT;
	char *bucket = NULL, *prefix = NULL;
	int opt, json = 0, rc = EXIT_USAGE;

	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(ls_help, stdout);
			return EXIT_OK;
		}
		if (opt == OPT_JSON)
			json = 1;
		else if (opt == '?' || cmd_common_opt(&co, opt, optarg) != 1)
			return cmd_usage_error("ls", "bad option");
	}
	if (argc - optind != 1)
		return cmd_usage_error("ls", "give one s3://BUCKET[/PREFIX]");
	if (s3_parse_url(argv[optind], &bucket, &prefix, &e) < 0) {
		rc = cmd_usage_error("ls", "%s", e.msg);
		goto out;
	}
	rc = EXIT_FAILED;
	if (cmd_load_config(&co) == 0 && (c = cmd_s3_client(&co)))
		rc = list_all(c, bucket, prefix, json);
out:
	free(bucket);
	free(prefix);
	s3_client_free(c);
	cmd_common_release(&co);
	return rc;
}
