#include "core/units.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct unit {
	const char *name;
	uint64_t mult;
};

/* Splits "  12 unit " into the number and the unit; -1 when it is not one. */
static int split_number(const char *s, uint64_t *n, const char **unit)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*n = strtoull(s, &end, 10);
	if (errno)
		return -1;
	while (*end == ' ')
		end++;
	*unit = end;
	return 0;
}

static int scale(const char *s, const struct unit *units, size_t n_units, uint64_t *out)
{
	const char *unit;
	uint64_t n;
	size_t i, len;

	if (!s || split_number(s, &n, &unit) < 0)
		return -1;
	len = strlen(unit);
	while (len && (unit[len - 1] == ' ' || unit[len - 1] == '\t'))
		len--;
	for (i = 0; i < n_units; i++) {
		if (strlen(units[i].name) == len && strncasecmp(unit, units[i].name, len) == 0) {
			if (units[i].mult && n > UINT64_MAX / units[i].mult)
				return -1;
			*out = n * units[i].mult;
			return 0;
		}
	}
	return -1;
}

int units_duration_ms(const char *s, uint64_t *ms)
{
	static const struct unit units[] = {
		{ "", 1000 },	   { "ms", 1 },	       { "s", 1000 },	  { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 },
	};

	return scale(s, units, sizeof(units) / sizeof(units[0]), ms);
}

int units_size(const char *s, uint64_t *bytes)
{
	static const struct unit units[] = {
		{ "", 1 },		{ "B", 1 },		 { "K", 1ULL << 10 },
		{ "KB", 1ULL << 10 },	{ "KiB", 1ULL << 10 },	 { "M", 1ULL << 20 },
		{ "MB", 1ULL << 20 },	{ "MiB", 1ULL << 20 },	 { "G", 1ULL << 30 },
		{ "GB", 1ULL << 30 },	{ "GiB", 1ULL << 30 },	 { "T", 1ULL << 40 },
		{ "TB", 1ULL << 40 },	{ "TiB", 1ULL << 40 },
	};

	return scale(s, units, sizeof(units) / sizeof(units[0]), bytes);
}

const char *units_fmt_size(char *out, int size, uint64_t bytes)
{
	static const char *names[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(out, (size_t)size, "%llu B", (unsigned long long)bytes);
	else
		snprintf(out, (size_t)size, "%.1f %s", v, names[i]);
	return out;
}

int64_t units_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
