/*
 * log: one line per event, logfmt (default) or JSON, written with one write().
 *
 * Fields are given as a printf-style string of space-separated `name=%spec`
 * pairs; each value is escaped for the chosen format, so a hostile object
 * key cannot forge a line:
 *
 *	log_info("job done", "job=%lld handler=%s key=%s ms=%llu", id, h, key, ms);
 *
 * Supported specs: %s %d %u %ld %lu %lld %llu %zu %x %f %.Nf. Never pass a
 * secret. log_warn_sys() also logs errno. Thread-safe.
 */
#ifndef S3HOOK_LOG_H
#define S3HOOK_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };
enum log_format { LOG_LOGFMT, LOG_JSON };

/* Defaults: LOG_INFO, LOG_LOGFMT, stderr. */
void log_setup(enum log_level min, enum log_format format, int fd);
int log_level_parse(const char *s, enum log_level *out);
int log_enabled(enum log_level level);

void log_write(enum log_level level, const char *msg, const char *fields, ...)
	__attribute__((format(printf, 3, 4)));

#define log_debug(msg, ...) log_write(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_write(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_write(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_ERROR, msg, __VA_ARGS__)

#endif
