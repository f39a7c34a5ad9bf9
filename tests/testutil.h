/*
 * testutil: what every Check unit test shares.
 *
 * Each tests/check_<module>.c builds its suite and ends with
 *	int main(void) { return test_main(module_suite()); }
 * Tests run forked (Check's default), so a crash fails one test, not the run.
 * tests/run-unit sets CK_DEFAULT_TIMEOUT, since sanitizers slow tests down.
 */
#ifndef S3HOOK_TESTUTIL_H
#define S3HOOK_TESTUTIL_H

#include <check.h>
#include <stddef.h>

struct buf;

int test_main(Suite *s);

/* A fresh private directory under $TMPDIR; the caller removes it with test_rmtree(). */
char *test_tmpdir(void);
void test_rmtree(const char *path);

/* Writes a file (aborts the test on failure). */
void test_write_file(const char *path, const void *data, size_t len);

/* Reads a file under tests/ (e.g. "fixtures/ceph-rgw/delete.json") into b. */
void test_read_fixture(struct buf *b, const char *name);

/* Directory that holds tests/ (from S3HOOK_TESTS_DIR or the build's cwd). */
const char *test_dir(void);

#endif
