#include "triggers/serve.h"

#include "core/config.h"
#include "core/err.h"
#include "core/ini.h"
#include "core/jobq.h"
#include "core/log.h"
#include "core/str.h"
#include "core/worker.h"
#include "s3/client.h"
#include "triggers/metrics.h"
#include "triggers/webhook.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PRUNE_EVERY_MS (5 * 60 * 1000)

/* A configuration with the ini it came from; old ones live until serve_free(). */
struct generation {
	struct config cfg;
	struct ini *ini;
	struct generation *older;
};

struct serve {
	struct generation *gen;
	struct s3_client *s3;
	struct jobq *ingest_q;
	struct jobq *work_q;
	struct webhook *hook;
	struct worker_pool *pool;
	struct metrics *metrics;
	int64_t last_prune_ms;
	int started;
};

static struct generation *generation_new(struct ini *ini, struct err *e)
{
	struct generation *g = xcalloc(1, sizeof(*g));

	g->ini = ini;
	if (config_load(&g->cfg, ini, e) < 0 || config_resolve_token(&g->cfg, ini, e) < 0) {
		ini_free(ini);
		free(g);
		return NULL;
	}
	return g;
}

static void warn_about(const struct config *cfg)
{
	size_t i;

	/* An open listener (no token, HMAC secret or SNS topic) is warned about by the webhook. */
	for (i = 0; i < cfg->n_handlers; i++)
		if (!cfg->handlers[i].user && geteuid() == 0)
			log_warn("handler runs as root; set user = NAME to drop privileges",
				 "handler=%s", cfg->handlers[i].name);
}

struct serve *serve_new(struct ini *ini, struct err *e)
{
	struct serve *s = xcalloc(1, sizeof(*s));

	if (!(s->gen = generation_new(ini, e))) {
		free(s);
		return NULL;
	}
	return s;
}

static struct s3_client *make_client(const struct generation *g, struct err *e)
{
	struct s3_config cfg = S3_CONFIG_INIT;
	struct s3_client *c = NULL;

	if (s3_config_load(&cfg, g->ini, e) == 0)
		c = s3_client_new(&cfg, e);
	s3_config_release(&cfg);
	return c;
}

int serve_start(struct serve *s, struct err *e)
{
	const struct config *cfg = &s->gen->cfg;
	size_t n = 0;

	warn_about(cfg);
	if (!(s->s3 = make_client(s->gen, e)) ||
	    !(s->ingest_q = jobq_open(cfg->queue, JOBQ_INGEST, e)) ||
	    !(s->work_q = jobq_open(cfg->queue, 0, e)))
		return -1;
	if (jobq_reclaim_orphans(s->work_q, &n, e) < 0)
		return -1;
	if (n)
		log_info("reclaimed jobs of a process that is gone", "jobs=%zu", n);
	if (!(s->pool = worker_pool_new(cfg, s->work_q, s->s3, e)) ||
	    worker_pool_start(s->pool, e) < 0)
		return -1;
	if (!(s->hook = webhook_new(cfg, s->ingest_q, e)))
		return -1;
	s->metrics = metrics_new(s->hook, s->pool, s->s3, s->work_q);
	webhook_set_metrics(s->hook, metrics_render, s->metrics);
	if (webhook_start(s->hook, e) < 0)
		return -1;
	s->started = 1;
	log_info("serving", "listen=%s admin=%s queue=%s handlers=%zu", cfg->listen,
		 *cfg->admin_listen ? cfg->admin_listen : "off", cfg->queue, cfg->n_handlers);
	return 0;
}

int serve_reload(struct serve *s, struct ini *ini, struct err *e)
{
	struct generation *g = generation_new(ini, e);
	char restart[512];

	if (!g) {
		log_error("configuration not reloaded; the old one stays", "error=%s", e->msg);
		return -1;
	}
	if (s->hook && webhook_reload(s->hook, &g->cfg, e) < 0) {
		log_error("configuration not reloaded; the old one stays", "error=%s", e->msg);
		config_release(&g->cfg);
		ini_free(g->ini);
		free(g);
		return -1;
	}
	if (s->pool)
		worker_pool_set_config(s->pool, &g->cfg);
	config_restart_keys(&s->gen->cfg, s->gen->ini, &g->cfg, g->ini, restart, sizeof(restart));
	g->older = s->gen;
	s->gen = g;
	warn_about(&g->cfg);
	log_info("configuration reloaded", "handlers=%zu needs_restart=%s", g->cfg.n_handlers,
		 restart);
	return 0;
}

void serve_tick(struct serve *s)
{
	int64_t now = jobq_now_ms();
	struct err e = ERR_INIT;
	size_t n = 0;

	if (!s->work_q || now - s->last_prune_ms < PRUNE_EVERY_MS)
		return;
	s->last_prune_ms = now;
	if (jobq_prune(s->work_q, s->gen->cfg.keep_done_ms, &n, &e) < 0)
		log_warn("cannot prune finished jobs", "error=%s", e.msg);
	else if (n)
		log_info("pruned finished jobs", "jobs=%zu", n);
}

void serve_stop(struct serve *s)
{
	if (s->hook)
		webhook_stop(s->hook);
	if (s->pool)
		worker_pool_stop(s->pool, s->gen->cfg.shutdown_grace_ms);
	if (s->started)
		log_info("stopped", "%s", "");
	s->started = 0;
}

void serve_free(struct serve *s)
{
	struct generation *g, *older;

	if (!s)
		return;
	serve_stop(s);
	webhook_free(s->hook);
	metrics_free(s->metrics); /* after the listener: no scrape runs any more */
	worker_pool_free(s->pool);
	jobq_close(s->ingest_q);
	jobq_close(s->work_q);
	s3_client_free(s->s3);
	for (g = s->gen; g; g = older) {
		older = g->older;
		config_release(&g->cfg);
		ini_free(g->ini);
		free(g);
	}
	free(s);
}

int serve_port(const struct serve *s)
{
	return s->hook ? webhook_port(s->hook) : 0;
}

int serve_admin_port(const struct serve *s)
{
	return s->hook ? webhook_admin_port(s->hook) : 0;
}
