/*
 * The dispatch benchmark's ceiling: run a program N times with K in flight,
 * posix_spawn + waitpid and nothing else. Prints runs per second, then the
 * CPU time per run of this process and of the programs, in microseconds.
 *   spawn-ceiling N K PROGRAM
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double cpu_us(const struct rusage *r)
{
	return (double)(r->ru_utime.tv_sec + r->ru_stime.tv_sec) * 1e6 +
	       (double)(r->ru_utime.tv_usec + r->ru_stime.tv_usec);
}

int main(int argc, char **argv)
{
	struct rusage self, kids;
	struct timespec t0, t1;
	long n, k, started = 0, done = 0;
	char *args[2];

	if (argc != 4)
		return 2;
	n = strtol(argv[1], NULL, 10);
	k = strtol(argv[2], NULL, 10);
	args[0] = argv[3];
	args[1] = NULL;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (done < n) {
		pid_t pid;
		while (started < n && started - done < k) {
			if (posix_spawn(&pid, argv[3], NULL, NULL, args, environ) != 0)
				return 1;
			started++;
		}
		if (wait(NULL) > 0)
			done++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	printf("%.0f %.0f %.0f\n",
	       (double)n / ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9),
	       cpu_us(&self) / (double)n, cpu_us(&kids) / (double)n);
	return 0;
}
