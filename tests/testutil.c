#include "tests/testutil.h"

#include "core/buf.h"
#include "core/err.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_main(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

char *test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *path;

	if (asprintf(&path, "%s/s3hook-test-XXXXXX", base && *base ? base : "/tmp") < 0)
		abort();
	ck_assert_ptr_nonnull(mkdtemp(path));
	return path;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

void test_rmtree(const char *path)
{
	if (path)
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void test_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

const char *test_dir(void)
{
	const char *d = getenv("S3HOOK_TESTS_DIR");

	return d && *d ? d : "tests";
}

void test_read_fixture(struct buf *b, const char *name)
{
	struct err e = ERR_INIT;
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", test_dir(), name);
	if (buf_read_file(b, path, 64u << 20, &e) < 0)
		ck_abort_msg("%s", e.msg);
}
