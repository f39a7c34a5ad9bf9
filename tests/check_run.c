/*
 * Unit tests of the subprocess runner. Children are /bin/sh scripts and
 * coreutils, or this binary itself (`check_run --child NAME`, libuv-style).
 *
 * Each test makes itself a child subreaper, so the grandchildren a test
 * orphans come back to it: it can reap them, and the teardown can insist
 * that no child of any kind is left (waitpid(-1, __WALL) gives ECHILD).
 */
#include "tests/testutil.h"

#include "core/err.h"
#include "core/run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs `line`, split by run_split(), with the rest of cmd as given. */
static int run_line(struct run_cmd *cmd, const char *line, struct run_result *res, struct err *e)
{
	struct run_vec argv = RUN_VEC_INIT;
	int rc;

	ck_assert_int_eq(run_split(&argv, line, e), 0);
	cmd->argv = argv.v;
	rc = run_cmd(cmd, res, e);
	cmd->argv = NULL;
	run_vec_release(&argv);
	return rc;
}

/* Runs a line that must start; returns the result for the caller to check. */
static void run_ok(struct run_cmd *cmd, const char *line, struct run_result *res)
{
	struct err e = ERR_INIT;

	if (run_line(cmd, line, res, &e) < 0)
		ck_abort_msg("run '%s': %s", line, e.msg);
}

/* The run ended by exiting with `code`, in time. */
static void assert_exit(const struct run_result *res, int code)
{
	ck_assert_int_eq(res->timed_out, 0);
	ck_assert_int_eq(res->signal, 0);
	ck_assert_int_eq(res->exited, 1);
	ck_assert_int_eq(res->exit_code, code);
}

/*
 * Waits until no process of group `pgid` is left, reaping the orphans that
 * came back to us meanwhile (dead ones stay visible to kill() until reaped).
 */
static void assert_group_gone(pid_t pgid)
{
	int64_t end = now_ms() + 5000;

	while (now_ms() < end) {
		while (waitpid(-1, NULL, WNOHANG | __WALL) > 0)
			;
		if (kill(-pgid, 0) < 0 && errno == ESRCH)
			return;
		usleep(10000);
	}
	ck_abort_msg("process group %d still has members", (int)pgid);
}

static void setup(void)
{
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L), 0);
}

static void teardown(void)
{
	errno = 0;
	ck_assert_int_eq(waitpid(-1, NULL, WNOHANG | __WALL), -1);
	ck_assert_int_eq(errno, ECHILD);
}

START_TEST(exit_codes_reported)
{
	static const int codes[] = { 0, 1, 65, 75 };
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	char line[64];
	size_t i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		snprintf(line, sizeof(line), "sh -c 'exit %d'", codes[i]);
		run_ok(&cmd, line, &res);
		assert_exit(&res, codes[i]);
		ck_assert_int_gt(res.pid, 0);
	}
	run_result_release(&res);
}
END_TEST

START_TEST(signal_reported_apart)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	char *dir = test_tmpdir();
	char desc[80];

	run_ok(&cmd, "sh -c 'kill -9 $$'", &res);
	ck_assert_int_eq(res.exited, 0);
	ck_assert_int_eq(res.signal, SIGKILL);
	ck_assert_str_eq(run_result_str(&res, desc, sizeof(desc)), "killed by signal 9 (SIGKILL)");
	cmd.cwd = dir; /* where a core file would go */
	run_ok(&cmd, "sh -c 'kill -SEGV $$'", &res);
	ck_assert_int_eq(res.exited, 0);
	ck_assert_int_eq(res.exit_code, 0);
	ck_assert_int_eq(res.signal, SIGSEGV);
	run_ok(&cmd, "sh -c 'exit 3'", &res);
	ck_assert_str_eq(run_result_str(&res, desc, sizeof(desc)), "exit 3");
	run_result_release(&res);
	test_rmtree(dir);
	free(dir);
}
END_TEST

START_TEST(timeout_kills_group)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	char desc[80];
	int64_t t0 = now_ms(), took;

	cmd.timeout_ms = 300;
	cmd.grace_ms = 5000;
	run_ok(&cmd, "sh -c 'sleep 100 & sleep 100'", &res);
	took = now_ms() - t0;
	ck_assert_int_eq(res.timed_out, 1);
	ck_assert_int_eq(res.exited, 0);
	ck_assert_int_eq(res.signal, SIGTERM);
	ck_assert_int_ge(took, 300);
	ck_assert_int_lt(took, 300 + 3000); /* SIGTERM sufficed: well within the grace */
	ck_assert_str_eq(run_result_str(&res, desc, sizeof(desc)),
			 "timed out, killed by signal 15 (SIGTERM)");
	assert_group_gone(res.pid);
	run_result_release(&res);
}
END_TEST

static void *cancel_later(void *arg)
{
	usleep(300 * 1000);
	*(volatile int *)arg = 1;
	return NULL;
}

/* Another thread's cancel (a lost lease, shutdown) ends the run as a deadline would. */
START_TEST(cancel_from_another_thread)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	volatile int cancel = 0;
	char desc[80];
	pthread_t t;
	int64_t t0 = now_ms(), took;

	cmd.timeout_ms = 60000;
	cmd.cancel = &cancel;
	ck_assert_int_eq(pthread_create(&t, NULL, cancel_later, (void *)&cancel), 0);
	run_ok(&cmd, "sh -c 'sleep 100 & sleep 100'", &res);
	pthread_join(t, NULL);
	took = now_ms() - t0;
	ck_assert_int_eq(res.cancelled, 1);
	ck_assert_int_eq(res.timed_out, 0);
	ck_assert_int_eq(res.signal, SIGTERM);
	ck_assert_int_lt(took, 300 + 2000);
	ck_assert_str_eq(run_result_str(&res, desc, sizeof(desc)),
			 "cancelled, killed by signal 15 (SIGTERM)");
	assert_group_gone(res.pid);
	run_result_release(&res);
}
END_TEST

/*
 * SIGTERM goes to the whole group, so helpers the handler started get to clean
 * up: here a grandchild reports it, while the child takes its time to exit.
 */
START_TEST(timeout_terms_whole_group)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;

	cmd.timeout_ms = 300;
	cmd.grace_ms = 10000;
	run_ok(&cmd,
	       "sh -c 'trap \"sleep 0.5; exit 7\" TERM; "
	       "sh -c \"trap \\\"echo grandchild-term >&2; exit 0\\\" TERM; sleep 100 & wait\" & "
	       "sleep 100'",
	       &res);
	ck_assert_int_eq(res.timed_out, 1);
	ck_assert_int_eq(res.exited, 1);
	ck_assert_int_eq(res.exit_code, 7);
	ck_assert_ptr_nonnull(strstr(res.err.data, "grandchild-term\n"));
	assert_group_gone(res.pid);
	run_result_release(&res);
}
END_TEST

START_TEST(timeout_grace_then_sigkill)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	int64_t t0 = now_ms(), took;

	/* Ignored signals stay ignored in the sleeps, so only SIGKILL ends them. */
	cmd.timeout_ms = 200;
	cmd.grace_ms = 400;
	run_ok(&cmd, "sh -c 'trap \"\" TERM; sleep 100 & sleep 100'", &res);
	took = now_ms() - t0;
	ck_assert_int_eq(res.timed_out, 1);
	ck_assert_int_eq(res.signal, SIGKILL);
	ck_assert_int_ge(took, 600);
	ck_assert_int_lt(took, 600 + 3000);
	assert_group_gone(res.pid);
	run_result_release(&res);
}
END_TEST

START_TEST(grandchild_holding_stdout_does_not_hang)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	int64_t t0 = now_ms();

	cmd.timeout_ms = 30000;
	run_ok(&cmd, "sh -c '(sleep 100) & echo started; exit 0'", &res);
	ck_assert_int_lt(now_ms() - t0, 3000);
	assert_exit(&res, 0);
	ck_assert_str_eq(res.out.data, "started\n");
	assert_group_gone(res.pid);
	run_result_release(&res);
}
END_TEST

/* A grandchild that left the group cannot be killed by it: reading stops anyway. */
START_TEST(escaped_grandchild_bounded)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	int64_t t0 = now_ms();
	int pid = 0;

	cmd.timeout_ms = 30000;
	run_ok(&cmd, "sh -c 'setsid sh -c \"echo \\$\\$; exec sleep 100\" & sleep 0.3; exit 0'",
	       &res);
	ck_assert_int_lt(now_ms() - t0, 3000);
	assert_exit(&res, 0);
	ck_assert_int_eq(sscanf(res.out.data, "%d", &pid), 1);
	ck_assert_int_gt(pid, 1);
	ck_assert_int_eq(kill(pid, 0), 0); /* it escaped, as intended */
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	assert_group_gone(res.pid);
	run_result_release(&res);
}
END_TEST

START_TEST(output_tail_capped)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	int64_t t0 = now_ms();

	cmd.err_cap = 4096;
	run_ok(&cmd, "sh -c 'head -c 52428800 /dev/zero >&2; printf END >&2; echo out'", &res);
	ck_assert_int_lt(now_ms() - t0, 10000);
	assert_exit(&res, 0);
	ck_assert_uint_eq(res.err.len, 4096);
	ck_assert_uint_eq(res.err_total, 52428800 + 3);
	ck_assert_int_eq(res.err_truncated, 1);
	ck_assert_str_eq(res.err.data + 4093, "END");
	ck_assert_int_eq(res.err.data[0], '\0');
	ck_assert_str_eq(res.out.data, "out\n");
	ck_assert_int_eq(res.out_truncated, 0);
	ck_assert_uint_eq(res.out_total, 4);
	run_result_release(&res);
}
END_TEST

/* The kept tail is exactly the last bytes, for a cap that is not a chunk multiple. */
START_TEST(output_tail_exact)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	struct buf want = BUF_INIT;
	int i;

	for (i = 1; i <= 300000; i++)
		buf_addf(&want, "%d\n", i);
	cmd.out_cap = 100003;
	run_ok(&cmd, "seq 1 300000", &res);
	ck_assert_uint_eq(res.out_total, want.len);
	ck_assert_uint_eq(res.out.len, cmd.out_cap);
	ck_assert_int_eq(res.out_truncated, 1);
	ck_assert_mem_eq(res.out.data, want.data + want.len - cmd.out_cap, cmd.out_cap);
	cmd.out_cap = want.len;
	run_ok(&cmd, "seq 1 300000", &res);
	ck_assert_int_eq(res.out_truncated, 0);
	ck_assert_str_eq(res.out.data, want.data);
	buf_release(&want);
	run_result_release(&res);
}
END_TEST

START_TEST(stdin_delivered)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	size_t i, len = 4u << 20;
	char *data = malloc(len);

	/* More than a pipe holds each way: writing and reading must interleave. */
	for (i = 0; i < len; i++)
		data[i] = (char)('a' + (i * 7 + i / 4093) % 26);
	cmd.stdin_data = data;
	cmd.stdin_len = len;
	cmd.out_cap = len;
	run_ok(&cmd, "cat", &res);
	assert_exit(&res, 0);
	ck_assert_uint_eq(res.out.len, len);
	ck_assert_mem_eq(res.out.data, data, len);
	free(data);
	/* No stdin data: the child reads EOF at once. */
	cmd.stdin_data = NULL;
	cmd.stdin_len = 0;
	cmd.timeout_ms = 10000;
	run_ok(&cmd, "cat", &res);
	assert_exit(&res, 0);
	ck_assert_uint_eq(res.out.len, 0);
	run_result_release(&res);
}
END_TEST

START_TEST(stdin_refused_no_sigpipe)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	size_t len = 10u << 20;
	char *data = calloc(1, len);
	sigset_t pending;

	ck_assert_ptr_eq(signal(SIGPIPE, SIG_DFL), SIG_DFL);
	cmd.stdin_data = data;
	cmd.stdin_len = len;
	/* Closes stdin while it runs, so our write fails with EPIPE (and SIGPIPE). */
	run_ok(&cmd, "sh -c 'exec 0<&-; sleep 0.3; exit 3'", &res);
	assert_exit(&res, 3);
	/* Exits without reading. */
	run_ok(&cmd, "true", &res);
	assert_exit(&res, 0);
	sigpending(&pending);
	ck_assert_int_eq(sigismember(&pending, SIGPIPE), 0);
	free(data);
	run_result_release(&res);
}
END_TEST

/* Lists the open descriptors but the one reading the list. */
static int child_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	if (!d)
		return 1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && strtol(de->d_name, NULL, 10) != dirfd(d))
			printf("%s ", de->d_name);
	closedir(d);
	return 0;
}

struct fd_thread {
	pthread_t t;
	int runs;
	int good;
	char bad[128];
};

static void *fd_thread_main(void *arg)
{
	struct fd_thread *ft = arg;
	char a0[] = "check_run", a1[] = "--child", a2[] = "fds";
	char *const argv[] = { a0, a1, a2, NULL };
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	struct err e = ERR_INIT;
	int i;

	cmd.path = "/proc/self/exe";
	cmd.argv = argv;
	cmd.limits.as_bytes = 0; /* an ASan build of this binary reserves terabytes */
	for (i = 0; i < ft->runs; i++) {
		if (run_cmd(&cmd, &res, &e) == 0 && res.exit_code == 0 &&
		    !strcmp(res.out.data, "0 1 2 "))
			ft->good++;
		else
			snprintf(ft->bad, sizeof(ft->bad), "%.60s%.60s", e.msg, res.out.data);
	}
	run_result_release(&res);
	return NULL;
}

START_TEST(no_fd_leak_between_concurrent_spawns)
{
	struct fd_thread ts[8];
	int i, leaky = open("/dev/null", O_RDONLY); /* no O_CLOEXEC, on purpose */

	ck_assert_int_ge(leaky, 3);
	for (i = 0; i < 8; i++) {
		ts[i] = (struct fd_thread){ .runs = 12 };
		ck_assert_int_eq(pthread_create(&ts[i].t, NULL, fd_thread_main, &ts[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(ts[i].t, NULL);
		ck_assert_msg(ts[i].good == ts[i].runs, "thread %d: %d/%d clean, saw '%s'", i,
			      ts[i].good, ts[i].runs, ts[i].bad);
	}
	close(leaky);
}
END_TEST

START_TEST(clean_environment)
{
	struct run_vec env = RUN_VEC_INIT;
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;

	setenv("S3HOOK_TEST_SECRET", "leak", 1);
	run_vec_push(&env, "A=1");
	run_vec_push(&env, "B=two words");
	cmd.envp = env.v;
	run_ok(&cmd, "env", &res);
	ck_assert_str_eq(res.out.data, "A=1\nB=two words\n");
	cmd.envp = NULL;
	run_ok(&cmd, "env", &res);
	ck_assert_str_eq(res.out.data, "");
	run_vec_release(&env);
	run_result_release(&res);
}
END_TEST

START_TEST(env_helpers)
{
	struct run_vec env = RUN_VEC_INIT;
	struct err e = ERR_INIT;

	setenv("PATH", "/x/bin:/bin:/usr/bin", 1);
	setenv("TZ", "Europe/Paris", 1);
	unsetenv("LANG");
	setenv("S3HOOK_TEST_PASS", "passed", 1);
	ck_assert_int_eq(run_env_base(&env, &e), 0);
	ck_assert_int_eq(run_env_set(&env, "S3HOOK_KEY", "a b=c", &e), 0);
	ck_assert_int_eq(run_env_set(&env, "S3HOOK_KEY", "replaced", &e), 0);
	ck_assert_int_eq(run_env_pass(&env, "S3HOOK_TEST_PASS", &e), 0);
	ck_assert_int_eq(run_env_pass(&env, "S3HOOK_TEST_UNSET", &e), 0);
	ck_assert_uint_eq(env.n, 4);
	ck_assert_str_eq(env.v[0], "PATH=/x/bin:/bin:/usr/bin");
	ck_assert_str_eq(env.v[1], "TZ=Europe/Paris");
	ck_assert_str_eq(env.v[2], "S3HOOK_KEY=replaced");
	ck_assert_str_eq(env.v[3], "S3HOOK_TEST_PASS=passed");
	ck_assert_ptr_null(env.v[4]);
	ck_assert_str_eq(run_env_get(env.v, "S3HOOK_KEY"), "replaced");
	ck_assert_ptr_null(run_env_get(env.v, "S3HOOK"));
	ck_assert_int_eq(run_env_set(&env, "A=B", "x", &e), -1);
	ck_assert_int_eq(e.code, ERR_USAGE);
	ck_assert_str_eq(e.msg, "invalid environment variable name 'A=B'");
	run_vec_release(&env);
	unsetenv("PATH");
	ck_assert_int_eq(run_env_base(&env, &e), 0);
	ck_assert_str_eq(env.v[0], "PATH=/usr/local/bin:/usr/bin:/bin");
	run_vec_release(&env);
}
END_TEST

/* The child's PATH, not the daemon's, finds the program. */
START_TEST(path_lookup_uses_child_path)
{
	char *dir = test_tmpdir();
	const char *script = "#!/bin/sh\nprintf 'found %s' \"$0\"\n";
	struct err e = ERR_INIT;
	char path[4200], env_path[4300];
	char *const envp[] = { env_path, NULL };
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;

	snprintf(path, sizeof(path), "%s/s3hook-test-prog", dir);
	test_write_file(path, script, strlen(script));
	ck_assert_int_eq(chmod(path, 0755), 0);
	snprintf(env_path, sizeof(env_path), "PATH=relative:%s", dir);
	cmd.envp = envp;
	run_ok(&cmd, "s3hook-test-prog", &res);
	assert_exit(&res, 0);
	ck_assert_str_eq(res.out.data + 6, path);
	/* Found but not executable: as execvp(), EACCES rather than ENOENT. */
	ck_assert_int_eq(chmod(path, 0644), 0);
	ck_assert_int_eq(run_line(&cmd, "s3hook-test-prog", &res, &e), -1);
	ck_assert_str_eq(e.msg, "cannot run 's3hook-test-prog': Permission denied");
	run_result_release(&res);
	test_rmtree(dir);
	free(dir);
}
END_TEST

START_TEST(rlimits_applied)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	struct rlimit cur;
	char want[64];

	run_ok(&cmd, "sh -c 'ulimit -v'", &res);
	ck_assert_str_eq(res.out.data, "4194304\n"); /* the 4 GiB default, in KiB */
	cmd.limits.nofile = 77;
	run_ok(&cmd, "sh -c 'ulimit -n'", &res);
	ck_assert_str_eq(res.out.data, "77\n");
	/* Limits are only lowered: a request above the hard limit gets the hard limit. */
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &cur), 0);
	cmd.limits.nofile = (uint64_t)1 << 40;
	run_ok(&cmd, "sh -c 'ulimit -n'", &res);
	snprintf(want, sizeof(want), "%llu\n", (unsigned long long)cur.rlim_max);
	ck_assert_str_eq(res.out.data, want);
	run_result_release(&res);
}
END_TEST

START_TEST(rlimit_fsize)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	char *dir = test_tmpdir();
	struct stat st;
	char line[4200], file[4096];

	snprintf(file, sizeof(file), "%s/big", dir);
	ck_assert_int_lt(snprintf(line, sizeof(line),
				  "sh -c 'exec head -c 100000 /dev/zero >\"$0\"' '%.4000s'", file),
			 (int)sizeof(line));
	cmd.limits.fsize_bytes = 4096;
	run_ok(&cmd, line, &res);
	ck_assert_int_eq(res.signal, SIGXFSZ);
	ck_assert_int_eq(stat(file, &st), 0);
	ck_assert_int_eq(st.st_size, 4096);
	run_result_release(&res);
	test_rmtree(dir);
	free(dir);
}
END_TEST

START_TEST(rlimit_cpu)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;

	cmd.limits.cpu_s = 1;
	cmd.timeout_ms = 20000;
	run_ok(&cmd, "sh -c 'while :; do :; done'", &res);
	ck_assert_int_eq(res.timed_out, 0);
	ck_assert_int_eq(res.signal, SIGXCPU);
	/* rusage samples CPU time by ticks; the limit uses the exact runtime. */
	ck_assert_uint_ge(res.user_ms + res.sys_ms, 500);
	run_result_release(&res);
}
END_TEST

START_TEST(exec_failure_reported)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	struct err e = ERR_INIT;
	char *dir = test_tmpdir();
	char path[4200], want[4300];

	ck_assert_int_eq(run_line(&cmd, "/nonexistent/prog arg", &res, &e), -1);
	ck_assert_int_eq(e.code, ERR_RUN);
	ck_assert_int_eq(e.sys_errno, ENOENT);
	ck_assert_str_eq(e.msg, "cannot run '/nonexistent/prog': No such file or directory");
	err_clear(&e);
	ck_assert_int_eq(run_line(&cmd, "s3hook-no-such-program", &res, &e), -1);
	ck_assert_str_eq(e.msg, "cannot run 's3hook-no-such-program': No such file or directory");
	err_clear(&e);
	snprintf(path, sizeof(path), "%s/not-executable", dir);
	test_write_file(path, "#!/bin/sh\n", strlen("#!/bin/sh\n"));
	ck_assert_int_eq(run_line(&cmd, path, &res, &e), -1);
	ck_assert_int_eq(e.sys_errno, EACCES);
	snprintf(want, sizeof(want), "cannot run '%s': Permission denied", path);
	ck_assert_str_eq(e.msg, want);
	err_clear(&e);
	cmd.cwd = "/nonexistent";
	ck_assert_int_eq(run_line(&cmd, "true", &res, &e), -1);
	ck_assert_str_eq(e.msg,
			 "cannot change to directory '/nonexistent': No such file or directory");
	err_clear(&e);
	cmd.argv = NULL;
	ck_assert_int_eq(run_cmd(&cmd, &res, &e), -1);
	ck_assert_int_eq(e.code, ERR_USAGE);
	run_result_release(&res);
	test_rmtree(dir);
	free(dir);
}
END_TEST

START_TEST(no_new_privs_and_session)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	char want[64];

	run_ok(&cmd, "grep NoNewPrivs /proc/self/status", &res);
	ck_assert_str_eq(res.out.data, "NoNewPrivs:\t1\n");
	/* ps: own session and process group, led by the child. */
	run_ok(&cmd, "sh -c 'echo $$ $(ps -o sid= -o pgid= -p $$)'", &res);
	snprintf(want, sizeof(want), "%d %d %d\n", (int)res.pid, (int)res.pid, (int)res.pid);
	ck_assert_str_eq(res.out.data, want);
	run_result_release(&res);
}
END_TEST

START_TEST(signals_reset_in_child)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	sigset_t block;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	run_ok(&cmd, "grep -E ^Sig(Blk|Ign) /proc/self/status", &res);
	ck_assert_str_eq(res.out.data, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
	run_result_release(&res);
}
END_TEST

START_TEST(stdout_and_stderr_apart)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;

	run_ok(&cmd, "sh -c 'echo o; echo e >&2; echo o2'", &res);
	ck_assert_str_eq(res.out.data, "o\no2\n");
	ck_assert_str_eq(res.err.data, "e\n");
	run_result_release(&res);
}
END_TEST

START_TEST(rusage_reported)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;

	run_ok(&cmd, "sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'", &res);
	assert_exit(&res, 0);
	ck_assert_uint_gt(res.user_ms, 0); /* shell arithmetic: user time */
	ck_assert_uint_ge(res.wall_ms + 20, res.user_ms + res.sys_ms);
	ck_assert_int_gt(res.max_rss_kib, 0);
	run_result_release(&res);
}
END_TEST

/* Running as root: drop to nobody; the ids change before chdir, so access is the user's. */
START_TEST(drops_to_user)
{
	struct run_cmd cmd = RUN_CMD_INIT;
	struct run_result res = RUN_RESULT_INIT;
	struct err e = ERR_INIT;
	char *dir = test_tmpdir();

	if (geteuid() != 0) {
		free(dir);
		return; /* needs root */
	}
	cmd.uid = 65534;
	cmd.gid = 65534;
	run_ok(&cmd, "sh -c 'id -u; id -g; id -G'", &res);
	ck_assert_str_eq(res.out.data, "65534\n65534\n65534\n");
	ck_assert_int_eq(chmod(dir, 0700), 0);
	cmd.cwd = dir;
	ck_assert_int_eq(run_line(&cmd, "true", &res, &e), -1);
	ck_assert_int_eq(e.sys_errno, EACCES);
	run_result_release(&res);
	test_rmtree(dir);
	free(dir);
}
END_TEST

/* Splits and compares with a NULL-terminated list of expected words. */
static void assert_split(const char *line, const char *const *want)
{
	struct run_vec v = RUN_VEC_INIT;
	struct err e = ERR_INIT;
	size_t i;

	if (run_split(&v, line, &e) < 0)
		ck_abort_msg("split '%s': %s", line, e.msg);
	for (i = 0; want[i]; i++) {
		ck_assert_uint_lt(i, v.n);
		ck_assert_str_eq(v.v[i], want[i]);
	}
	ck_assert_uint_eq(v.n, i);
	ck_assert_ptr_null(v.v[i]);
	run_vec_release(&v);
}

static void assert_split_fails(const char *line, const char *msg)
{
	struct run_vec v = RUN_VEC_INIT;
	struct err e = ERR_INIT;

	run_vec_push(&v, "kept");
	ck_assert_int_eq(run_split(&v, line, &e), -1);
	ck_assert_int_eq(e.code, ERR_PARSE);
	ck_assert_str_eq(e.msg, msg);
	ck_assert_uint_eq(v.n, 1);
	run_vec_release(&v);
}

START_TEST(split_words)
{
	assert_split("thumbnail --size 256",
		     (const char *[]){ "thumbnail", "--size", "256", NULL });
	assert_split("  a\t\tb \n c  ", (const char *[]){ "a", "b", "c", NULL });
	assert_split("'a b' \"c d\" e\\ f", (const char *[]){ "a b", "c d", "e f", NULL });
	assert_split("x'y'\"z\"w", (const char *[]){ "xyzw", NULL });
	assert_split("'' \"\" a", (const char *[]){ "", "", "a", NULL });
	assert_split("'\\n $HOME \"'", (const char *[]){ "\\n $HOME \"", NULL });
	assert_split("\"a\\\"b\\\\c\\$d\\`e\\nf 'g'\"",
		     (const char *[]){ "a\"b\\c$d`e\\nf 'g'", NULL });
	assert_split("\\'a \\\"b \\\\ \\x", (const char *[]){ "'a", "\"b", "\\", "x", NULL });
	assert_split("a \\\n b\\\nc \"d\\\ne\"", (const char *[]){ "a", "bc", "de", NULL });
	/* Nothing is expanded. */
	assert_split("echo $HOME ~ *.jpg a|b >out ;",
		     (const char *[]){ "echo", "$HOME", "~", "*.jpg", "a|b", ">out", ";", NULL });
}
END_TEST

/* Words are appended, after what the vector held. */
START_TEST(split_appends)
{
	struct run_vec v = RUN_VEC_INIT;
	struct err e = ERR_INIT;

	run_vec_push(&v, "env");
	ck_assert_int_eq(run_split(&v, "a 'b c'", &e), 0);
	ck_assert_uint_eq(v.n, 3);
	ck_assert_str_eq(v.v[0], "env");
	ck_assert_str_eq(v.v[1], "a");
	ck_assert_str_eq(v.v[2], "b c");
	ck_assert_ptr_null(v.v[3]);
	run_vec_release(&v);
}
END_TEST

START_TEST(split_errors)
{
	assert_split_fails("echo 'abc",
			   "unterminated single quote (column 6) in command 'echo 'abc'");
	assert_split_fails("a \"b\\\"",
			   "unterminated double quote (column 3) in command 'a \"b\\\"'");
	assert_split_fails("a b\\", "backslash at the end (column 4) in command 'a b\\'");
	assert_split_fails("", "empty command");
	assert_split_fails(" \t\n ", "empty command");
	assert_split_fails("\\\n", "empty command");
}
END_TEST

static Suite *run_suite(void)
{
	Suite *s = suite_create("run");
	TCase *tc = tcase_create("run");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, exit_codes_reported);
	tcase_add_test(tc, signal_reported_apart);
	tcase_add_test(tc, timeout_kills_group);
	tcase_add_test(tc, cancel_from_another_thread);
	tcase_add_test(tc, timeout_terms_whole_group);
	tcase_add_test(tc, timeout_grace_then_sigkill);
	tcase_add_test(tc, grandchild_holding_stdout_does_not_hang);
	tcase_add_test(tc, escaped_grandchild_bounded);
	tcase_add_test(tc, output_tail_capped);
	tcase_add_test(tc, output_tail_exact);
	tcase_add_test(tc, stdin_delivered);
	tcase_add_test(tc, stdin_refused_no_sigpipe);
	tcase_add_test(tc, no_fd_leak_between_concurrent_spawns);
	tcase_add_test(tc, clean_environment);
	tcase_add_test(tc, env_helpers);
	tcase_add_test(tc, path_lookup_uses_child_path);
	tcase_add_test(tc, rlimits_applied);
	tcase_add_test(tc, rlimit_fsize);
	tcase_add_test(tc, rlimit_cpu);
	tcase_add_test(tc, exec_failure_reported);
	tcase_add_test(tc, no_new_privs_and_session);
	tcase_add_test(tc, signals_reset_in_child);
	tcase_add_test(tc, stdout_and_stderr_apart);
	tcase_add_test(tc, rusage_reported);
	tcase_add_test(tc, drops_to_user);
	tcase_add_test(tc, split_words);
	tcase_add_test(tc, split_appends);
	tcase_add_test(tc, split_errors);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--child") && !strcmp(argv[2], "fds"))
		return child_fds();
	return test_main(run_suite());
}
