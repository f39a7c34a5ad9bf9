/*
 * rules: which handlers an event triggers, decided at ingest from what the
 * event itself says (name, bucket, key prefix and suffix) and the loop guard
 * on the key (an object that looks like the handler's own output). The checks
 * that need the object (content_type, the s3hook-handler metadata, depth)
 * are the worker's. One event may fire several handlers.
 */
#ifndef S3HOOK_RULES_H
#define S3HOOK_RULES_H

#include <stddef.h>

struct config;
struct event;
struct handler_conf;
struct jobq_new;

/* Whether h takes ev. */
int rules_match(const struct handler_conf *h, const struct event *ev);

/*
 * The jobs ev makes under cfg, appended to *jobs (n of them, grown with
 * xrealloc; the caller frees the array). The jobs borrow ev's strings and
 * `event_json` (the canonical event), which must outlive them.
 */
size_t rules_jobs(const struct config *cfg, const struct event *ev, const char *event_json,
		  int priority, struct jobq_new **jobs, size_t *n);

#endif
