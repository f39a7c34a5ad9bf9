/*
 * units: durations ("30s", "1500ms", "7d") and sizes ("1MiB", "64 KiB"), and the
 * monotonic clock that deadlines and durations are measured on.
 */
#ifndef S3HOOK_UNITS_H
#define S3HOOK_UNITS_H

#include <stdint.h>

/* Milliseconds from "N[ms|s|m|h|d]"; a bare number is seconds. -1 on error. */
int units_duration_ms(const char *s, uint64_t *ms);

/* Bytes from "N[B|KiB|MiB|GiB|TiB]" (also K, M, G, KB...: powers of 1024). -1 on error. */
int units_size(const char *s, uint64_t *bytes);

/* CLOCK_MONOTONIC in milliseconds: a step of the wall clock moves no deadline. */
int64_t units_mono_ms(void);

/* Formats a byte count for people: "512 B", "1.5 MiB". */
const char *units_fmt_size(char *out, int size, uint64_t bytes);

#endif
