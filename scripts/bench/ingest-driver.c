/*
 * ingest-driver: the webhook listener alone (no workers), for scripts/bench/ingest.
 *
 *	ingest-driver QUEUE_FILE [--no-sync]
 *
 * Serves on 127.0.0.1 (a port the kernel picks, printed as "port N" on
 * stdout) with one handler (/bin/true, every ObjectCreated event) and the
 * token "bench", until SIGTERM or SIGINT; then stops and prints its counters
 * and the number of jobs in the queue as "key=value" lines. --no-sync opens
 * the queue as a worker would (synchronous=NORMAL): not durable, only to show
 * what the fsyncs cost. Built by the script against build/libs3hook.a.
 */
#include "core/config.h"
#include "core/err.h"
#include "core/ini.h"
#include "core/jobq.h"
#include "core/log.h"
#include "triggers/webhook.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load_config(struct config *cfg, struct ini **ini, const char *queue, struct err *e)
{
	char text[8192];
	int n = snprintf(text, sizeof(text),
			 "[serve]\nlisten = 127.0.0.1:0\nadmin_listen =\nauth_token = bench\n"
			 "max_connections = 4096\n"
			 "[jobs]\nqueue = %s\n"
			 "[handler h]\nevents = s3:ObjectCreated:*\ncommand = /bin/true\n",
			 queue);

	if (n < 0 || (size_t)n >= sizeof(text))
		return err_set(e, ERR_USAGE, "queue path too long");
	if (ini_parse_string(ini, "bench.conf", text, (size_t)n, 0, e) < 0 ||
	    config_load(cfg, *ini, e) < 0 || config_resolve_token(cfg, *ini, e) < 0)
		return -1;
	return 0;
}

/* Waits for SIGTERM or SIGINT (blocked in every thread, so sigwait gets it). */
static void wait_for_signal(const sigset_t *set)
{
	int sig;

	sigwait(set, &sig);
}

static void print_stats(struct webhook *w, struct jobq *q)
{
	struct jobq_query qu = JOBQ_QUERY_INIT;
	struct webhook_stats st;
	struct err e = ERR_INIT;
	int64_t counts[8] = { 0 }, jobs = 0;
	size_t i;

	webhook_stats(w, &st);
	if (jobq_count(q, &qu, counts, &e) == 0)
		for (i = 0; i < 8; i++)
			jobs += counts[i];
	printf("received=%llu\naccepted=%llu\ncommits=%llu\njobs_new=%llu\nqueued=%lld\n",
	       (unsigned long long)st.received, (unsigned long long)st.accepted,
	       (unsigned long long)st.commits, (unsigned long long)st.jobs_new, (long long)jobs);
	for (i = 0; i < WEBHOOK_REJ_N; i++)
		printf("rejected_%s=%llu\n", webhook_reject_name(i),
		       (unsigned long long)st.rejected[i]);
}

int main(int argc, char **argv)
{
	struct config cfg = CONFIG_INIT;
	struct ini *ini = NULL;
	struct err e = ERR_INIT;
	struct webhook *w = NULL;
	struct jobq *q = NULL;
	sigset_t set;
	int rc = 1;

	if (argc < 2) {
		fprintf(stderr, "usage: ingest-driver QUEUE_FILE [--no-sync]\n");
		return 2;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	log_setup(LOG_WARN, LOG_LOGFMT, 2);
	if (load_config(&cfg, &ini, argv[1], &e) < 0)
		goto out;
	q = jobq_open(argv[1], argc > 2 && !strcmp(argv[2], "--no-sync") ? 0 : JOBQ_INGEST, &e);
	if (!q || !(w = webhook_new(&cfg, q, &e)) || webhook_start(w, &e) < 0)
		goto out;
	printf("port %d\n", webhook_port(w));
	fflush(stdout);
	wait_for_signal(&set);
	webhook_stop(w);
	print_stats(w, q);
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "ingest-driver: %s\n", e.msg);
	webhook_free(w);
	jobq_close(q);
	config_release(&cfg);
	ini_free(ini);
	return rc;
}
