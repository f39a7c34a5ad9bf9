/*
 * run: the subprocess runner. The parent prepares everything (pipes, the
 * program's path, clamped limits) so the child, which shares the parent's
 * memory until it calls execve(), only makes raw system calls; see run.h.
 */
#include "core/run.h"

#include "core/err.h"
#include "core/str.h"
#include "core/units.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* New system calls have one number on every architecture. */
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
/* 32-bit x86 and arm have 16-bit ids in the plain calls. */
#ifdef SYS_setuid32
#define SYS_SETUID    SYS_setuid32
#define SYS_SETGID    SYS_setgid32
#define SYS_SETGROUPS SYS_setgroups32
#else
#define SYS_SETUID    SYS_setuid
#define SYS_SETGID    SYS_setgid
#define SYS_SETGROUPS SYS_setgroups
#endif

#define RUN_CHUNK     (64 << 10)	    /* bytes per read() of output */
#define RUN_DRAIN_MS  500		    /* reading output after the child ended */
#define RUN_REAP_MS   10000		    /* waiting for the end after SIGKILL */
#define CHILD_STACK   16384		    /* the child's stack, on the calling thread's */
#define KSIGSET_BYTES ((size_t)(_NSIG / 8)) /* the kernel's sigset_t, not glibc's */
#define DEFAULT_PATH  "/usr/local/bin:/usr/bin:/bin"

/*
 * Code that runs in the child before execve(). It shares the parent's memory
 * and runs on a borrowed stack, so it must not be instrumented (the sanitizer
 * runtime would act for the parent thread) and calls nothing but syscall(),
 * whose variadic arguments are read as longs: pass sizes and pointers full width.
 */
#define CHILD_FN __attribute__((noinline, no_sanitize("address", "undefined")))

/* ----- vectors, splitting, environments ----- */

static void vec_push_owned(struct run_vec *vec, char *s)
{
	if (vec->n + 2 > vec->alloc) {
		vec->alloc = vec->alloc ? vec->alloc * 2 : 8;
		vec->v = xrealloc(vec->v, vec->alloc * sizeof(*vec->v));
	}
	vec->v[vec->n++] = s;
	vec->v[vec->n] = NULL;
}

void run_vec_push(struct run_vec *vec, const char *s)
{
	vec_push_owned(vec, xstrdup(s));
}

void run_vec_release(struct run_vec *vec)
{
	size_t i;

	for (i = 0; i < vec->n; i++)
		free(vec->v[i]);
	free(vec->v);
	*vec = (struct run_vec)RUN_VEC_INIT;
}

/* Adds the inside of '...' to w; returns what follows the closing quote, NULL if none. */
static const char *split_single(struct buf *w, const char *p)
{
	const char *end = strchr(p, '\'');

	if (!end)
		return NULL;
	buf_add(w, p, (size_t)(end - p));
	return end + 1;
}

/* As split_single() for "...", where a backslash escapes only \ " $ ` and newline. */
static const char *split_double(struct buf *w, const char *p)
{
	for (; *p && *p != '"'; p++) {
		if (*p == '\\' && p[1] && strchr("\\\"$`\n", p[1])) {
			if (*++p == '\n')
				continue;
		}
		buf_addch(w, *p);
	}
	return *p ? p + 1 : NULL;
}

static int split_error(const char *line, const char *at, const char *what, struct err *e)
{
	return err_set(e, ERR_PARSE, "%s (column %zu) in command '%s'", what,
		       (size_t)(at - line) + 1, SHORT(line));
}

/* Reads one word (any mix of quoted and plain parts) from *pp into w. */
static int split_word(struct buf *w, const char *line, const char **pp, struct err *e)
{
	const char *p = *pp, *q;

	while (*p && !strchr(" \t\n", *p)) {
		if (*p == '\'' || *p == '"') {
			q = *p == '\'' ? split_single(w, p + 1) : split_double(w, p + 1);
			if (!q)
				return split_error(line, p,
						   *p == '\'' ? "unterminated single quote"
							      : "unterminated double quote",
						   e);
			p = q;
		} else if (*p == '\\') {
			if (!p[1])
				return split_error(line, p, "backslash at the end", e);
			if (p[1] != '\n')
				buf_addch(w, p[1]);
			p += 2;
		} else {
			buf_addch(w, *p++);
		}
	}
	*pp = p;
	return 0;
}

int run_split(struct run_vec *argv, const char *line, struct err *e)
{
	struct run_vec words = RUN_VEC_INIT;
	struct buf w = BUF_INIT;
	const char *p = line;
	size_t i;
	int rc = -1;

	for (;;) {
		/* Blanks and backslash-newline (a continued line) separate words. */
		while (*p && (strchr(" \t\n", *p) || (p[0] == '\\' && p[1] == '\n')))
			p += *p == '\\' ? 2 : 1;
		if (!*p)
			break;
		buf_reset(&w);
		if (split_word(&w, line, &p, e) < 0)
			goto out;
		run_vec_push(&words, w.data);
	}
	if (!words.n) {
		err_set(e, ERR_PARSE, "empty command");
		goto out;
	}
	for (i = 0; i < words.n; i++)
		vec_push_owned(argv, words.v[i]);
	words.n = 0;
	rc = 0;
out:
	buf_release(&w);
	run_vec_release(&words);
	return rc;
}

const char *run_env_get(char *const *envp, const char *name)
{
	size_t len = strlen(name);

	for (; envp && *envp; envp++)
		if (!strncmp(*envp, name, len) && (*envp)[len] == '=')
			return *envp + len + 1;
	return NULL;
}

int run_env_set(struct run_vec *env, const char *name, const char *value, struct err *e)
{
	struct buf var = BUF_INIT;
	size_t i, len = strlen(name);

	if (!len || strchr(name, '='))
		return err_set(e, ERR_USAGE, "invalid environment variable name '%s'", SHORT(name));
	buf_addf(&var, "%s=%s", name, value);
	for (i = 0; i < env->n; i++) {
		if (!strncmp(env->v[i], name, len) && env->v[i][len] == '=') {
			free(env->v[i]);
			env->v[i] = buf_detach(&var, NULL);
			return 0;
		}
	}
	vec_push_owned(env, buf_detach(&var, NULL));
	return 0;
}

int run_env_pass(struct run_vec *env, const char *name, struct err *e)
{
	const char *value = getenv(name);

	if (!*name || strchr(name, '='))
		return err_set(e, ERR_USAGE, "invalid environment variable name '%s'", SHORT(name));
	return value ? run_env_set(env, name, value, e) : 0;
}

int run_env_base(struct run_vec *env, struct err *e)
{
	const char *path = getenv("PATH");

	if (run_env_set(env, "PATH", path && *path ? path : DEFAULT_PATH, e) < 0)
		return -1;
	if (run_env_pass(env, "LANG", e) < 0 || run_env_pass(env, "TZ", e) < 0)
		return -1;
	return 0;
}

/* ----- the child ----- */

/* The steps before execve(), for the message when one fails. */
enum child_stage {
	STAGE_SIGNALS = 1,
	STAGE_SETSID,
	STAGE_STDIO,
	STAGE_CLOSE,
	STAGE_LIMITS,
	STAGE_IDS,
	STAGE_CHDIR,
	STAGE_PRCTL,
	STAGE_EXEC,
};

static const char *const stage_names[] = {
	[STAGE_SIGNALS] = "resetting signals",
	[STAGE_SETSID] = "setsid",
	[STAGE_STDIO] = "setting up standard input and output",
	[STAGE_CLOSE] = "closing inherited descriptors",
	[STAGE_LIMITS] = "setrlimit",
	[STAGE_PRCTL] = "prctl",
};

/* What the child sends back when a step fails. */
struct child_report {
	int stage;
	int err;
};

/* The kernel's struct rlimit64, as prlimit64 takes it on every architecture. */
struct klimit {
	uint64_t cur;
	uint64_t max;
};

/* Everything the child needs, prepared by the parent: the child cannot allocate. */
struct child_args {
	const char *path;
	char *const *argv;
	char *const *envp;
	const char *cwd;
	int stdio[3]; /* become 0, 1 and 2; all are > 2 */
	int report_fd;
	pid_t ppid;
	long uid, gid;
	int nlimits;
	int limit_res[4];
	struct klimit limits[4];
};

static CHILD_FN __attribute__((noreturn)) void child_fail(const struct child_args *a, int stage)
{
	struct child_report r = { .stage = stage, .err = errno };

	syscall(SYS_write, a->report_fd, &r, sizeof(r));
	for (;;)
		syscall(SYS_exit_group, 127);
}

/*
 * Every signal back to SIG_DFL, then an empty mask. The parent blocked all
 * signals around clone(), so none of its handlers can run here meanwhile; an
 * ignored signal would stay ignored across execve() (SIGPIPE in particular).
 * An all-zero kernel sigaction is SIG_DFL with no flags on every ABI.
 */
static CHILD_FN int child_signals(void)
{
	unsigned long zero[16] = { 0 };
	int sig;

	for (sig = 1; sig < _NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (syscall(SYS_rt_sigaction, sig, zero, NULL, KSIGSET_BYTES) < 0 &&
		    errno != EINVAL)
			return -1;
	}
	return (int)syscall(SYS_rt_sigprocmask, SIG_SETMASK, zero, NULL, KSIGSET_BYTES);
}

static CHILD_FN int child_stdio(const struct child_args *a)
{
	int fd;

	/* The sources are all above 2, so dup3() never meets itself. */
	for (fd = 0; fd < 3; fd++)
		if (syscall(SYS_dup3, a->stdio[fd], fd, 0) < 0)
			return -1;
	return 0;
}

static CHILD_FN int child_close(unsigned lo, unsigned hi)
{
	struct klimit lim;
	unsigned fd;

	if (lo > hi || syscall(SYS_close_range, lo, hi, 0) == 0)
		return 0;
	if (errno != ENOSYS)
		return -1;
	/* Before Linux 5.9: close what the descriptor limit allows. */
	if (syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &lim) < 0)
		return -1;
	if (lim.cur > (1u << 20))
		lim.cur = 1u << 20;
	for (fd = lo; fd <= hi && fd < lim.cur; fd++)
		syscall(SYS_close, fd);
	return 0;
}

/* Closes every descriptor above 2 but the report pipe, which execve() closes. */
static CHILD_FN int child_close_fds(const struct child_args *a)
{
	unsigned keep = (unsigned)a->report_fd;

	if (child_close(3, keep - 1) < 0)
		return -1;
	return child_close(keep + 1, ~0U);
}

static CHILD_FN int child_limits(const struct child_args *a)
{
	int i;

	for (i = 0; i < a->nlimits; i++)
		if (syscall(SYS_prlimit64, 0, a->limit_res[i], &a->limits[i], NULL) < 0)
			return -1;
	return 0;
}

/* Groups first: after setuid() we could no longer change them. */
static CHILD_FN int child_ids(const struct child_args *a)
{
	gid_t gid = (gid_t)a->gid;

	if (a->gid != RUN_NO_ID) {
		if (syscall(SYS_SETGROUPS, 1, &gid) < 0 || syscall(SYS_SETGID, gid) < 0)
			return -1;
	} else if (a->uid != RUN_NO_ID && syscall(SYS_SETGROUPS, 0, NULL) < 0) {
		return -1;
	}
	if (a->uid != RUN_NO_ID && syscall(SYS_SETUID, (uid_t)a->uid) < 0)
		return -1;
	return 0;
}

/*
 * No new privileges, and SIGKILL when the spawning thread dies. Both after the
 * ids change, which clears the death signal. If the daemon died before the
 * death signal was armed, nobody would kill us: stop here.
 */
static CHILD_FN int child_prctl(const struct child_args *a)
{
	if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) < 0)
		return -1;
	if (syscall(SYS_prctl, PR_SET_PDEATHSIG, (long)SIGKILL, 0L, 0L, 0L) < 0)
		return -1;
	if (syscall(SYS_getppid) != a->ppid)
		for (;;)
			syscall(SYS_exit_group, 127);
	return 0;
}

static CHILD_FN int child_main(void *arg)
{
	const struct child_args *a = arg;

	if (child_signals() < 0)
		child_fail(a, STAGE_SIGNALS);
	if (syscall(SYS_setsid) < 0)
		child_fail(a, STAGE_SETSID);
	if (child_stdio(a) < 0)
		child_fail(a, STAGE_STDIO);
	if (child_close_fds(a) < 0)
		child_fail(a, STAGE_CLOSE);
	if (child_limits(a) < 0)
		child_fail(a, STAGE_LIMITS);
	if (child_ids(a) < 0)
		child_fail(a, STAGE_IDS);
	if (a->cwd && syscall(SYS_chdir, a->cwd) < 0)
		child_fail(a, STAGE_CHDIR);
	if (child_prctl(a) < 0)
		child_fail(a, STAGE_PRCTL);
	syscall(SYS_execve, a->path, a->argv, a->envp);
	child_fail(a, STAGE_EXEC);
}

/*
 * clone(CLONE_VM | CLONE_VFORK): the child borrows our memory and this
 * thread sleeps until it has called execve() or exited, so its stack can
 * live in our frame. No exit signal: see run.h. All signals stay blocked in
 * this thread meanwhile, so no handler of ours runs in the child.
 */
static pid_t clone_child(struct child_args *a)
{
	char stack[CHILD_STACK] __attribute__((aligned(16)));
	sigset_t all, old;
	pid_t pid;
	int saved;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = clone(child_main, stack + sizeof(stack), CLONE_VM | CLONE_VFORK, a);
	saved = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = saved;
	return pid;
}

/* ----- the parent: preparing ----- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Moves a descriptor above 2, so that it cannot collide with the child's stdio. */
static int fd_above_stdio(int *fd)
{
	int high;

	if (*fd > 2)
		return 0;
	high = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
	if (high < 0)
		return -1;
	close(*fd);
	*fd = high;
	return 0;
}

static int make_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	if (fd_above_stdio(&p[0]) < 0 || fd_above_stdio(&p[1]) < 0) {
		close_fd(&p[0]);
		close_fd(&p[1]);
		return -1;
	}
	return 0;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int is_executable(const char *path, int *denied)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		*denied |= errno == EACCES;
		return 0;
	}
	if (S_ISREG(st.st_mode) && faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) == 0)
		return 1;
	*denied = 1;
	return 0;
}

/*
 * Finds the program as execvp() would, in the PATH the child will have (the
 * daemon's when it has none), but only in absolute directories: an empty or
 * relative entry would depend on the working directory.
 */
static int find_program(const struct run_cmd *cmd, const char *name, struct buf *path,
			struct err *e)
{
	const char *dirs = run_env_get(cmd->envp, "PATH"), *p, *end;
	int denied = 0;

	if (strchr(name, '/'))
		return buf_adds(path, name);
	if (!dirs)
		dirs = getenv("PATH");
	for (p = dirs ? dirs : DEFAULT_PATH; *name; p = end + 1) {
		end = strchrnul(p, ':');
		if (*p == '/') {
			buf_reset(path);
			buf_add(path, p, (size_t)(end - p));
			buf_addf(path, "/%s", name);
			if (is_executable(path->data, &denied))
				return 0;
		}
		if (!*end)
			break;
	}
	errno = denied ? EACCES : ENOENT;
	return err_sys(e, ERR_RUN, "cannot run '%s'", SHORT(name));
}

/* Lowers limits only: a request above the daemon's hard limit gets the hard limit. */
static void prepare_limits(const struct run_limits *l, struct child_args *a)
{
	static const int res[4] = { RLIMIT_CPU, RLIMIT_AS, RLIMIT_NOFILE, RLIMIT_FSIZE };
	const uint64_t want[4] = { l->cpu_s, l->as_bytes, l->nofile, l->fsize_bytes };
	struct rlimit cur;
	struct klimit *k;
	int i;

	for (i = 0; i < 4; i++) {
		if (!want[i] || getrlimit(res[i], &cur) < 0)
			continue;
		k = &a->limits[a->nlimits];
		/* CPU: SIGXCPU at the soft limit leaves the program a second to stop. */
		k->max = res[i] == RLIMIT_CPU && want[i] < UINT64_MAX ? want[i] + 1 : want[i];
		if (k->max > cur.rlim_max)
			k->max = cur.rlim_max;
		k->cur = want[i] < k->max ? want[i] : k->max;
		a->limit_res[a->nlimits++] = res[i];
	}
}

/* ----- the parent: running ----- */

enum { P_IN, P_OUT, P_ERR, P_REPORT };

/* A running child and the parent's ends of its pipes (-1 once closed). */
struct child {
	pid_t pid;
	int pidfd;
	int in_fd, out_fd, err_fd;
};

static int reap(pid_t pid, struct run_result *res)
{
	struct rusage ru;
	int status;

	while (wait4(pid, &status, __WALL, &ru) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(status)) {
		res->exited = 1;
		res->exit_code = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		res->signal = WTERMSIG(status);
		res->core_dumped = WCOREDUMP(status) != 0;
	}
	res->user_ms = (uint64_t)ru.ru_utime.tv_sec * 1000 + (uint64_t)ru.ru_utime.tv_usec / 1000;
	res->sys_ms = (uint64_t)ru.ru_stime.tv_sec * 1000 + (uint64_t)ru.ru_stime.tv_usec / 1000;
	res->max_rss_kib = ru.ru_maxrss;
	return 0;
}

static int report_error(const struct run_cmd *cmd, const char *name, const struct child_report *r,
			struct err *e)
{
	errno = r->err;
	switch (r->stage) {
	case STAGE_EXEC:
		return err_sys(e, ERR_RUN, "cannot run '%s'", SHORT(name));
	case STAGE_CHDIR:
		return err_sys(e, ERR_RUN, "cannot change to directory '%s'", SHORT(cmd->cwd));
	case STAGE_IDS:
		return err_sys(e, ERR_RUN, "cannot switch to uid %ld gid %ld", cmd->uid, cmd->gid);
	default:
		return err_sys(e, ERR_RUN, "cannot start '%s': %s", SHORT(name),
			       r->stage > 0 && r->stage < STAGE_EXEC && stage_names[r->stage]
				       ? stage_names[r->stage]
				       : "?");
	}
}

/*
 * After clone() returned, the child has either called execve() (the report
 * pipe closed empty) or failed a step and exited (a report came).
 */
static int check_started(const struct run_cmd *cmd, const char *name, pid_t pid, int report_fd,
			 struct err *e)
{
	struct child_report r;
	struct run_result ignore = RUN_RESULT_INIT;
	ssize_t n;

	do
		n = read(report_fd, &r, sizeof(r));
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	if (n != (ssize_t)sizeof(r))
		r = (struct child_report){ .stage = STAGE_EXEC, .err = n < 0 ? errno : EIO };
	reap(pid, &ignore);
	return report_error(cmd, name, &r, e);
}

/* The pipes; on failure all are closed. */
static int open_pipes(int p[4][2], struct err *e)
{
	int i;

	for (i = 0; i < 4; i++)
		if (make_pipe(p[i]) < 0)
			goto fail;
	if (set_nonblock(p[P_IN][1]) < 0 || set_nonblock(p[P_OUT][0]) < 0 ||
	    set_nonblock(p[P_ERR][0]) < 0)
		goto fail;
	return 0;
fail:
	err_sys(e, ERR_RUN, "cannot make a pipe");
	for (i = 0; i < 4; i++) {
		close_fd(&p[i][0]);
		close_fd(&p[i][1]);
	}
	return -1;
}

/* Kills and reaps a child we cannot watch (no pidfd). */
static void abandon(pid_t pid)
{
	struct run_result ignore = RUN_RESULT_INIT;

	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	reap(pid, &ignore);
}

static int start(const struct run_cmd *cmd, const char *path, const char *name, struct child *c,
		 struct err *e)
{
	int p[4][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 } }, i, rc;
	struct child_args a = {
		.path = path, .argv = cmd->argv, .cwd = cmd->cwd, .uid = cmd->uid, .gid = cmd->gid
	};
	static char *const no_env[] = { NULL };

	if (open_pipes(p, e) < 0)
		return -1;
	a.envp = cmd->envp ? cmd->envp : no_env;
	a.stdio[0] = p[P_IN][0];
	a.stdio[1] = p[P_OUT][1];
	a.stdio[2] = p[P_ERR][1];
	a.report_fd = p[P_REPORT][1];
	a.ppid = getpid();
	prepare_limits(&cmd->limits, &a);
	c->pid = clone_child(&a);
	rc = c->pid < 0 ? err_sys(e, ERR_RUN, "cannot start '%s'", SHORT(name)) : 0;
	for (i = 0; i < 4; i++)
		close_fd(&p[i][i == P_IN ? 0 : 1]);
	if (!rc)
		rc = check_started(cmd, name, c->pid, p[P_REPORT][0], e);
	close_fd(&p[P_REPORT][0]);
	if (!rc && (c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0)) < 0) {
		rc = err_sys(e, ERR_RUN, "cannot watch '%s': pidfd_open", SHORT(name));
		abandon(c->pid);
	}
	c->in_fd = p[P_IN][1];
	c->out_fd = p[P_OUT][0];
	c->err_fd = p[P_ERR][0];
	if (rc < 0) {
		close_fd(&c->in_fd);
		close_fd(&c->out_fd);
		close_fd(&c->err_fd);
	}
	return rc;
}

/* ----- the parent: waiting ----- */

#define RUN_CANCEL_POLL_MS 100

enum phase {
	PH_RUN,	  /* until the deadline */
	PH_TERM,  /* SIGTERM sent, grace running */
	PH_KILL,  /* SIGKILL sent, waiting for the end */
	PH_DRAIN, /* the child ended: reading what is left in the pipes */
};

struct watch {
	const struct run_cmd *cmd;
	struct run_result *res;
	struct child *c;
	const char *in_p;
	size_t in_left;
	enum phase phase;
	int64_t deadline; /* ms, CLOCK_MONOTONIC; -1: none */
};

/* The group first, then the child by pidfd, in case it left its group. */
static void signal_child(struct watch *w, int sig)
{
	kill(-w->c->pid, sig);
	syscall(SYS_pidfd_send_signal, w->c->pidfd, sig, NULL, 0);
}

static void escalate(struct watch *w, int64_t now)
{
	if (w->phase == PH_RUN) {
		if (w->cmd->cancel && *w->cmd->cancel)
			w->res->cancelled = 1;
		else
			w->res->timed_out = 1;
		signal_child(w, SIGTERM);
		w->phase = PH_TERM;
		w->deadline = now + w->cmd->grace_ms;
	} else {
		signal_child(w, SIGKILL);
		w->phase = PH_KILL;
		w->deadline = now + RUN_REAP_MS;
	}
}

/*
 * The child ended. Kill what is left of its group now, before it is reaped:
 * until then its pid (the group's id) cannot be reused, so the signal cannot
 * reach a stranger.
 */
static void ended(struct watch *w, int64_t now)
{
	kill(-w->c->pid, SIGKILL);
	close_fd(&w->c->in_fd);
	w->phase = PH_DRAIN;
	w->deadline = now + RUN_DRAIN_MS;
}

static void write_stdin(struct watch *w)
{
	ssize_t n = write(w->c->in_fd, w->in_p, w->in_left);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		/* EPIPE: the child does not want the rest. */
		w->in_left = 0;
	} else {
		w->in_p += n;
		w->in_left -= (size_t)n;
	}
	if (!w->in_left)
		close_fd(&w->c->in_fd);
}

/* Keeps the last `cap` bytes of b. */
static void keep_tail(struct buf *b, size_t cap)
{
	if (b->len <= cap)
		return;
	memmove(b->data, b->data + b->len - cap, cap);
	b->len = cap;
	b->data[cap] = '\0';
}

/*
 * Reads one chunk into the tail buffer, which grows to twice the cap before it
 * is cut back, so each byte is moved at most once more. The chunk lands on the
 * stack first: growing the buffer by a whole chunk before each read made every
 * run allocate and free 128 KiB twice, even with no output at all, and glibc
 * gave that back to the kernel each time (munmap or madvise, with a TLB flush
 * on every CPU): a tenth of serve's CPU when handlers are short.
 */
static void read_output(int *fd, struct buf *b, size_t cap, uint64_t *total)
{
	char chunk[RUN_CHUNK];
	ssize_t n = read(*fd, chunk, sizeof(chunk));

	if (n > 0) {
		if (b->len > cap && b->len - cap > cap)
			keep_tail(b, cap);
		if (buf_add(b, chunk, (size_t)n) < 0) {
			keep_tail(b, 0);
			buf_add(b, chunk, (size_t)n);
		}
		*total += (uint64_t)n;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		close_fd(fd);
	}
}

static void dispatch(struct watch *w, const struct pollfd *p, int fd, int64_t now)
{
	struct child *c = w->c;

	if (!p->revents)
		return;
	if (fd == c->pidfd)
		ended(w, now);
	else if (fd == c->in_fd)
		write_stdin(w);
	else if (fd == c->out_fd)
		read_output(&c->out_fd, &w->res->out, w->cmd->out_cap, &w->res->out_total);
	else if (fd == c->err_fd)
		read_output(&c->err_fd, &w->res->err, w->cmd->err_cap, &w->res->err_total);
}

static int poll_once(struct watch *w, int64_t now)
{
	struct child *c = w->c;
	struct pollfd p[4];
	int n = 0, i, timeout = -1, ready;

	if (w->phase != PH_DRAIN)
		p[n++] = (struct pollfd){ .fd = c->pidfd, .events = POLLIN };
	if (c->in_fd >= 0)
		p[n++] = (struct pollfd){ .fd = c->in_fd, .events = POLLOUT };
	if (c->out_fd >= 0)
		p[n++] = (struct pollfd){ .fd = c->out_fd, .events = POLLIN };
	if (c->err_fd >= 0)
		p[n++] = (struct pollfd){ .fd = c->err_fd, .events = POLLIN };
	if (w->deadline >= 0)
		timeout = w->deadline - now > INT_MAX ? INT_MAX : (int)(w->deadline - now);
	if (w->cmd->cancel && w->phase == PH_RUN && (timeout < 0 || timeout > RUN_CANCEL_POLL_MS))
		timeout = RUN_CANCEL_POLL_MS;
	ready = poll(p, (nfds_t)n, timeout);
	if (ready < 0)
		return errno == EINTR ? 0 : -1;
	/* Each fd is compared before any is closed: they are distinct while open. */
	for (i = 0; i < n; i++)
		dispatch(w, &p[i], p[i].fd, now);
	return 0;
}

static int watch(struct watch *w, struct err *e)
{
	int64_t now;

	for (;;) {
		now = units_mono_ms();
		if (w->deadline >= 0 && now >= w->deadline) {
			if (w->phase == PH_DRAIN)
				return 0;
			if (w->phase == PH_KILL)
				return err_set(e, ERR_RUN,
					       "process %d did not end %d s after SIGKILL",
					       (int)w->c->pid, RUN_REAP_MS / 1000);
			escalate(w, now);
			continue;
		}
		if (w->phase == PH_DRAIN && w->c->out_fd < 0 && w->c->err_fd < 0)
			return 0;
		if (w->phase == PH_RUN && w->cmd->cancel && *w->cmd->cancel) {
			escalate(w, now);
			continue;
		}
		if (poll_once(w, now) < 0)
			return err_sys(e, ERR_RUN, "cannot wait for process %d", (int)w->c->pid);
	}
}

/*
 * SIGPIPE is thread-directed when our own write() raises it: block it in this
 * thread while we write, and take away the one we caused (but not one that
 * was pending before) before unblocking.
 */
struct sigpipe {
	sigset_t old;
	int was_pending;
};

static void sigpipe_block(struct sigpipe *sp)
{
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &sp->old);
	sigpending(&pending);
	sp->was_pending = sigismember(&pending, SIGPIPE);
}

static void sigpipe_unblock(const struct sigpipe *sp)
{
	const struct timespec zero = { 0, 0 };
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigpending(&pending);
	if (!sp->was_pending && sigismember(&pending, SIGPIPE))
		while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
			;
	pthread_sigmask(SIG_SETMASK, &sp->old, NULL);
}

static int wait_child(const struct run_cmd *cmd, struct child *c, struct run_result *res,
		      struct err *e)
{
	struct watch w = { .cmd = cmd, .res = res, .c = c, .phase = PH_RUN, .deadline = -1 };
	struct sigpipe sp;
	int rc, writes;

	w.in_p = cmd->stdin_data;
	w.in_left = cmd->stdin_data ? cmd->stdin_len : 0;
	if (!w.in_left)
		close_fd(&c->in_fd);
	if (cmd->timeout_ms)
		w.deadline = units_mono_ms() + cmd->timeout_ms;
	writes = w.in_left != 0;
	if (writes)
		sigpipe_block(&sp);
	rc = watch(&w, e);
	if (writes)
		sigpipe_unblock(&sp);
	close_fd(&c->in_fd);
	close_fd(&c->out_fd);
	close_fd(&c->err_fd);
	close_fd(&c->pidfd);
	if (rc == 0 && reap(c->pid, res) < 0)
		rc = err_sys(e, ERR_RUN, "cannot reap process %d", (int)c->pid);
	return rc;
}

int run_cmd(const struct run_cmd *cmd, struct run_result *res, struct err *e)
{
	struct child c = { .pid = -1, .pidfd = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1 };
	struct buf path = BUF_INIT;
	const char *name;
	int64_t t0 = units_mono_ms();
	int rc = -1;

	run_result_release(res);
	if (!cmd->argv || !cmd->argv[0])
		return err_set(e, ERR_USAGE, "empty command");
	name = cmd->path ? cmd->path : cmd->argv[0];
	if (find_program(cmd, name, &path, e) < 0 || start(cmd, path.data, name, &c, e) < 0)
		goto out;
	res->pid = c.pid;
	rc = wait_child(cmd, &c, res, e);
	keep_tail(&res->out, cmd->out_cap);
	keep_tail(&res->err, cmd->err_cap);
	res->out_truncated = res->out_total > cmd->out_cap;
	res->err_truncated = res->err_total > cmd->err_cap;
	res->wall_ms = (uint64_t)(units_mono_ms() - t0);
out:
	buf_release(&path);
	return rc;
}

void run_result_release(struct run_result *res)
{
	buf_release(&res->out);
	buf_release(&res->err);
	*res = (struct run_result)RUN_RESULT_INIT;
}

const char *run_result_str(const struct run_result *res, char *dst, size_t size)
{
	const char *abbrev = sigabbrev_np(res->signal);
	const char *pre = res->timed_out ? "timed out, " : res->cancelled ? "cancelled, " : "";
	int n;

	/* A description cut short by a small dst is still a description. */
	if (res->exited)
		n = snprintf(dst, size, "%sexit %d", pre, res->exit_code);
	else
		n = snprintf(dst, size, "%skilled by signal %d (SIG%s)%s", pre, res->signal,
			     abbrev ? abbrev : "?", res->core_dumped ? ", core dumped" : "");
	if (n < 0 && size)
		dst[0] = '\0';
	return dst;
}
