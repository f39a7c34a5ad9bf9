/*
 * run: runs one program as a subprocess and waits for it, with a deadline,
 * resource limits and bounded capture of its output.
 *
 * This is how `serve` and `reprocess` run handlers (DESIGN.md "Handlers",
 * step 4). There is no shell: the command line from the configuration is
 * split by run_split() and the program is started with execve().
 *
 *	struct run_vec argv = RUN_VEC_INIT, env = RUN_VEC_INIT;
 *	struct run_cmd cmd = RUN_CMD_INIT;
 *	struct run_result res = RUN_RESULT_INIT;
 *
 *	if (run_split(&argv, "thumbnail --size 256", &e) < 0 ||
 *	    run_env_base(&env, &e) < 0 || run_env_set(&env, "S3HOOK_KEY", key, &e) < 0)
 *		goto out;
 *	cmd.argv = argv.v;
 *	cmd.envp = env.v;
 *	cmd.stdin_data = event_json;
 *	cmd.stdin_len = strlen(event_json);
 *	cmd.timeout_ms = 30000;
 *	if (run_cmd(&cmd, &res, &e) < 0)
 *		goto out;            // could not run it at all: e says why
 *	if (res.exited && res.exit_code == 0)
 *		...                  // done; res.out and res.err hold the tails
 *	out:
 *	run_result_release(&res);
 *	run_vec_release(&argv);
 *	run_vec_release(&env);
 *
 * How the child is made (STYLE.md "Subprocesses"): clone(CLONE_VM |
 * CLONE_VFORK) on a small stack, so the cost does not grow with the size of
 * the daemon; in the child only raw system calls: signal dispositions to
 * SIG_DFL and an empty signal mask, setsid() (the child leads its own session
 * and process group), pipes on 0/1/2, every other descriptor closed, resource
 * limits, the optional uid/gid, chdir(), PR_SET_NO_NEW_PRIVS,
 * PR_SET_PDEATHSIG(SIGKILL), execve(). A failure in any of these steps comes
 * back to run_cmd() over a close-on-exec pipe and becomes its error.
 *
 * What the rest of the process must respect:
 * - Nothing else may reap run_cmd()'s children. They are made with no exit
 *   signal, so waitpid(-1, ...) without __WALL does not see them and SIGCHLD
 *   set to SIG_IGN does not reap them away; waitpid(-1, ..., __WALL) would.
 * - SIGPIPE needs no care: run_cmd() blocks it in the calling thread while it
 *   writes stdin and discards the one its own write raised, so a child that
 *   closes its stdin early cannot kill the daemon, whatever SIGPIPE is set to.
 * - The calling thread must outlive the child: PR_SET_PDEATHSIG is tied to
 *   the thread that spawned it. run_cmd() returns only once the child is
 *   reaped, so this holds unless the thread is cancelled (do not).
 * - run_cmd() is thread-safe: any number of threads may run commands at once.
 *   Every descriptor it makes is close-on-exec and the child closes all
 *   descriptors above 2, so children never inherit each other's pipes, nor
 *   descriptors other libraries opened without O_CLOEXEC.
 */
#ifndef S3HOOK_RUN_H
#define S3HOOK_RUN_H

#include "core/buf.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct err;

/*
 * A NULL-terminated vector of strings the vector owns, for argv and envp:
 * `v` is NULL while the vector is empty, else v[n] is NULL, so `v` can be
 * handed to run_cmd as it is.
 */
struct run_vec {
	char **v;
	size_t n;
	size_t alloc;
};

#define RUN_VEC_INIT                          \
	{                                     \
		.v = NULL, .n = 0, .alloc = 0 \
	}

/* Appends a copy of s. */
void run_vec_push(struct run_vec *vec, const char *s);

/* Frees every string and returns the vector to RUN_VEC_INIT. */
void run_vec_release(struct run_vec *vec);

/*
 * Splits a command line into words like a POSIX shell would, and appends them
 * to `argv`: blanks (space, tab, newline) separate words; '...' keeps
 * everything literally; "..." keeps everything but \" \\ \$ \` and
 * backslash-newline, which lose their backslash; outside quotes a backslash
 * makes the next character literal. Nothing else is special and nothing is
 * expanded: $VAR, *, ~, |, ; and > reach the program as they are written.
 * Fails with ERR_PARSE on an unterminated quote, a trailing backslash or a line
 * with no words; `argv` is then left as it was.
 */
int run_split(struct run_vec *argv, const char *line, struct err *e);

/*
 * Environments. A handler gets a clean environment, never the daemon's:
 * run_env_base() adds PATH (the daemon's, else /usr/local/bin:/usr/bin:/bin),
 * and LANG and TZ when the daemon has them set. run_env_set() adds or replaces
 * NAME=VALUE; names must be non-empty and hold no '='. run_env_pass() copies
 * the daemon's value of NAME, when it has one (for the handler's `env` key).
 */
int run_env_base(struct run_vec *env, struct err *e);
int run_env_set(struct run_vec *env, const char *name, const char *value, struct err *e);
int run_env_pass(struct run_vec *env, const char *name, struct err *e);

/* Value of NAME in a NULL-terminated environment, NULL when absent. */
const char *run_env_get(char *const *envp, const char *name);

/* Resource limits for the child; 0 leaves a limit as the daemon has it. */
struct run_limits {
	uint64_t cpu_s;	      /* RLIMIT_CPU: SIGXCPU at cpu_s, SIGKILL a second later */
	uint64_t as_bytes;    /* RLIMIT_AS (address space) */
	uint64_t nofile;      /* RLIMIT_NOFILE */
	uint64_t fsize_bytes; /* RLIMIT_FSIZE: a larger write fails with SIGXFSZ/EFBIG */
};

#define RUN_AS_DEFAULT	    ((uint64_t)4 << 30)
#define RUN_CAPTURE_DEFAULT ((size_t)64 << 10)
#define RUN_NO_ID	    (-1L)

/*
 * What to run. A stack value: start from RUN_CMD_INIT, set what you need.
 * Every pointer is borrowed for the duration of run_cmd().
 */
struct run_cmd {
	/* Program to execute. NULL: argv[0]. A name without '/' is looked up in the
	 * PATH of `envp` (else of the daemon), absolute directories only. */
	const char *path;
	char *const *argv;	/* NULL-terminated; argv[0] is required */
	char *const *envp;	/* the child's whole environment; NULL: empty */
	const char *cwd;	/* NULL: the daemon's */
	const void *stdin_data; /* written to the child's stdin, then closed */
	size_t stdin_len;
	unsigned timeout_ms; /* 0: none; then SIGTERM to the group */
	unsigned grace_ms;   /* after SIGTERM, until SIGKILL to the group */
	struct run_limits limits;
	/* Drop to this user before chdir(); set both (a uid alone keeps our gid and
	 * drops the supplementary groups). Needs root, else ERR_RUN. */
	long uid;	/* RUN_NO_ID: keep; else setuid() after setgroups() and setgid() */
	long gid;	/* RUN_NO_ID: keep; else setgroups({gid}) and setgid() */
	size_t out_cap; /* bytes of the stdout tail kept */
	size_t err_cap; /* bytes of the stderr tail kept */
	/*
	 * When it points at non-zero (set by another thread: the job's lease was
	 * lost, or shutdown ran out of grace), the run ends as at the deadline:
	 * SIGTERM, grace, SIGKILL. Looked at every 100 ms. NULL: never.
	 */
	const volatile int *cancel;
};

#define RUN_CMD_INIT                                                                             \
	{                                                                                        \
		.timeout_ms = 30000, .grace_ms = 5000, .limits = { .as_bytes = RUN_AS_DEFAULT }, \
		.uid = RUN_NO_ID, .gid = RUN_NO_ID, .out_cap = RUN_CAPTURE_DEFAULT,              \
		.err_cap = RUN_CAPTURE_DEFAULT                                                   \
	}

/*
 * How a run ended. `exited` and `signal` are exclusive: either the program
 * exited with `exit_code`, or `signal` ended it. `timed_out` says the deadline
 * passed and run_cmd sent SIGTERM (and SIGKILL after the grace); the program
 * may still have exited by itself in the grace. `out` and `err` hold the last
 * out_cap/err_cap bytes the program wrote (all of it was read, so it never
 * blocks on a full pipe); `*_truncated` says bytes before them were dropped and
 * `*_total` counts every byte. The resource usage is wait4()'s: the child and
 * the descendants it reaped. max_rss_kib is at least the daemon's RSS when it
 * spawned the child: execve() keeps the high-water mark of the memory the
 * child leaves, and with vfork (as with fork) that is the daemon's. Measured:
 * /bin/true from a process with 1 GiB touched reports 1 GiB. Compare it with
 * the daemon's own RSS before reading it as the handler's peak.
 */
struct run_result {
	pid_t pid;
	int exited;
	int exit_code;
	int signal;
	int core_dumped;
	int timed_out;
	int cancelled; /* ended through cmd->cancel */
	struct buf out;
	struct buf err;
	int out_truncated;
	int err_truncated;
	uint64_t out_total;
	uint64_t err_total;
	uint64_t user_ms; /* CPU time in user mode */
	uint64_t sys_ms;  /* CPU time in the kernel */
	long max_rss_kib;
	uint64_t wall_ms; /* from spawn to reap */
};

#define RUN_RESULT_INIT                          \
	{                                        \
		.out = BUF_INIT, .err = BUF_INIT \
	}

/*
 * Runs cmd and waits until it has ended and is reaped; blocks the calling
 * thread. At the deadline the child's process group gets SIGTERM, and SIGKILL
 * `grace_ms` later. When the child ends, its group gets SIGKILL too, so that
 * nothing it started outlives it or holds its output pipes open; output is
 * then read until EOF, for at most half a second (a process that left the
 * group may still hold the pipes).
 *
 * Returns 0 when the program ran, whatever its exit status (see `res`); -1
 * when it could not be run: ERR_USAGE for an empty argv, ERR_RUN with the
 * cause for the rest, e.g. "cannot run 'X': No such file or directory" (when
 * execve() or a step before it failed in the child, the errno it got) or
 * "cannot change to directory 'D': ...". `res` must be RUN_RESULT_INIT or a
 * result of an earlier call; it is reset first, and must be released with
 * run_result_release() either way.
 *
 * No wait is unbounded: the timeout, the grace and the half second of reading
 * after the end all have deadlines, and if the child still has not ended 10 s
 * after SIGKILL (stuck in the kernel), run_cmd gives up with ERR_RUN and
 * leaves it unreaped.
 */
int run_cmd(const struct run_cmd *cmd, struct run_result *res, struct err *e);

/* Frees the captured output and returns res to RUN_RESULT_INIT. */
void run_result_release(struct run_result *res);

/*
 * Describes how the run ended, for logs and job records: "exit 0",
 * "killed by signal 9 (SIGKILL)", "timed out, killed by signal 15 (SIGTERM)".
 * Returns dst.
 */
const char *run_result_str(const struct run_result *res, char *dst, size_t size);

#endif
