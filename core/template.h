/*
 * template: a handler's `output` template ("s3://{bucket}/thumbs/{key}.jpg"),
 * expanded for an output file, and matched against a key (the loop guard: a
 * handler never runs on an object that looks like its own output).
 *
 * Placeholders, for the source key "photos/2024/cat.tar.gz":
 *   {bucket} source bucket   {key}  photos/2024/cat.tar.gz   {dir}  photos/2024
 *   {name}   cat.tar.gz      {stem} cat.tar                  {ext}  gz
 *   {file}   the output file's name          {handler} the handler's name
 * An empty {dir} takes the '/' that follows it along, so "{dir}/x" never
 * starts a key with '/'.
 */
#ifndef S3HOOK_TEMPLATE_H
#define S3HOOK_TEMPLATE_H

struct buf;
struct err;

/* The values a template is expanded with; strings borrowed. */
struct template_vars {
	const char *bucket;
	const char *key;
	const char *file;
	const char *handler;
};

/* Expands tpl into the destination bucket and key. */
int template_expand(const char *tpl, const struct template_vars *v, struct buf *bucket,
		    struct buf *key, struct err *e);

/*
 * Whether bucket/key could have been written by tpl from some source in the
 * same bucket: each placeholder matches anything.
 */
int template_matches(const char *tpl, const char *bucket, const char *key);

/* fnmatch() glob on a whole string, e.g. "image/\*"; 1 when it matches. */
int template_glob(const char *pattern, const char *s);

#endif
