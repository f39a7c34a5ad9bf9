#include "triggers/rules.h"

#include "core/config.h"
#include "core/event.h"
#include "core/jobq.h"
#include "core/str.h"
#include "core/template.h"

#include <string.h>

static int any_equal(const struct strlist *l, const char *s)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (!strcmp(l->v[i], s))
			return 1;
	return l->n == 0;
}

static int any_prefix(const struct strlist *l, const char *s)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (str_starts_with(s, l->v[i]))
			return 1;
	return l->n == 0;
}

static int any_suffix(const struct strlist *l, const char *s)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (str_ends_with(s, l->v[i]))
			return 1;
	return l->n == 0;
}

static int any_event(const struct strlist *l, const char *name)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (event_name_match(l->v[i], name))
			return 1;
	return 0;
}

int rules_match(const struct handler_conf *h, const struct event *ev)
{
	return any_event(&h->events, ev->name) && any_equal(&h->bucket, ev->bucket) &&
	       any_prefix(&h->prefix, ev->key) && any_suffix(&h->suffix, ev->key) &&
	       !(h->output && template_matches(h->output, ev->bucket, ev->key));
}

size_t rules_jobs(const struct config *cfg, const struct event *ev, const char *event_json,
		  int priority, struct jobq_new **jobs, size_t *n)
{
	size_t i, added = 0;

	for (i = 0; i < cfg->n_handlers; i++) {
		const struct handler_conf *h = &cfg->handlers[i];
		struct jobq_new *j;
		if (!rules_match(h, ev))
			continue;
		*jobs = xrealloc(*jobs, (*n + 1) * sizeof(**jobs));
		j = &(*jobs)[(*n)++];
		memset(j, 0, sizeof(*j));
		j->handler = h->name;
		j->bucket = ev->bucket;
		j->key = ev->key;
		j->version_id = ev->version_id;
		j->etag = ev->etag;
		j->sequencer = ev->sequencer;
		j->event_name = ev->name;
		j->event_json = event_json;
		j->depth = ev->depth;
		j->priority = priority;
		j->max_attempts = (int)h->max_attempts;
		added++;
	}
	return added;
}
