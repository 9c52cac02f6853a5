/*
 * test_kstat.c - parsing the kernel's conntrack statistics and sysctls,
 * and reading them from this machine's /proc.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <cmocka.h>

#include "collector/kstat.h"

/* The header of a 6.x kernel, two CPUs with distinct values, so a column
 * taken from the wrong place shows. */
static const char stat_6x[] =
	"entries  clashres found new invalid ignore delete chainlength insert "
	"insert_failed drop early_drop icmp_error  expect_new expect_create "
	"expect_delete search_restart\n"
	"0000002a  00000003 00000000 00000000 00000005 00000000 00000000 "
	"00000000 00000000 00000010 00000020 00000001 00000000  00000000 "
	"00000000 00000000 00000000\n"
	"0000002a  00000004 00000000 00000000 00000000 00000000 00000000 "
	"00000000 00000000 000000f0 00000002 00000002 00000000  00000000 "
	"00000000 00000000 00000000\n";

static void test_parse_stat(void **state)
{
	struct kstat ks;

	(void)state;
	memset(&ks, 0xff, sizeof(ks));
	assert_int_equal(kstat_parse_stat(stat_6x, &ks), 0);
	assert_int_equal(ks.insert_failed, 0x10 + 0xf0);
	assert_int_equal(ks.drop, 0x22);
	assert_int_equal(ks.early_drop, 3);
	assert_int_equal(ks.clash_resolve, 7);
}

/* An older kernel without clashres: the others still parse, clash_resolve
 * is unknown. */
static void test_parse_stat_old(void **state)
{
	static const char old[] =
		"entries  searched found new invalid ignore delete delete_list "
		"insert insert_failed drop early_drop icmp_error  expect_new "
		"expect_create expect_delete search_restart\n"
		"00000001  00000000 00000000 00000000 00000000 00000000 00000000 "
		"00000000 00000000 00000009 00000000 00000000 00000000  00000000 "
		"00000000 00000000 00000000\n";
	struct kstat ks;

	(void)state;
	assert_int_equal(kstat_parse_stat(old, &ks), 0);
	assert_int_equal(ks.insert_failed, 9);
	assert_int_equal(ks.clash_resolve, -1);
}

static void test_parse_stat_garbage(void **state)
{
	struct kstat ks;
	static const char *bad[] = {
		"",
		"no newline",
		"entries insert_failed drop early_drop\n", /* no rows */
		"entries insert_failed drop early_drop\n00000001 zz 0 0\n",
		"entries insert_failed drop early_drop\n1 2 3\n", /* short row */
		"entries foo bar\n1 2 3\n", /* columns missing */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ks.insert_failed = 77;
		assert_int_equal(kstat_parse_stat(bad[i], &ks), -1);
		assert_int_equal(errno, EBADMSG);
		assert_int_equal(ks.insert_failed, 77); /* untouched */
	}
}

static void test_parse_real_file(void **state)
{
	const char *dir = getenv("NATSCOPE_FIXTURES");
	char path[512], buf[8192];
	struct kstat ks;
	size_t n;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/proc-net-stat-nf_conntrack.txt",
		 dir ? dir : "tests/fixtures");
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	assert_int_equal(kstat_parse_stat(buf, &ks), 0);
	assert_int_equal(ks.insert_failed, 0);
	assert_int_equal(ks.clash_resolve, 0);
}

/* A gateway with 512 CPUs: the file is ~80 KB, ten times what a fixed
 * 8 KB buffer held (51 CPUs); every CPU's counters must be summed. */
static void test_many_cpus(void **state)
{
	char path[] = "/tmp/natscope-test-stat-XXXXXX";
	int fd = mkstemp(path);
	FILE *f;
	struct kstat ks;
	long long want_if = 0, want_drop = 0, want_early = 0, want_clash = 0;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fprintf(f, "entries  clashres found new invalid ignore delete "
		   "chainlength insert insert_failed drop early_drop icmp_error "
		   " expect_new expect_create expect_delete search_restart\n");
	for (int cpu = 0; cpu < 512; cpu++) {
		unsigned clash = (unsigned)cpu * 3, ifail = (unsigned)cpu + 1,
			 drop = (unsigned)cpu % 7, early = 1000u + (unsigned)cpu;

		want_clash += clash;
		want_if += ifail;
		want_drop += drop;
		want_early += early;
		fprintf(f, "%08x  %08x 00000000 00000000 00000000 00000000 "
			   "00000000 00000000 00000000 %08x %08x %08x 00000000  "
			   "00000000 00000000 00000000 00000000\n",
			1000u, clash, ifail, drop, early);
	}
	fclose(f);
	memset(&ks, 0, sizeof(ks));
	assert_int_equal(kstat_read_stat(path, &ks), 0);
	unlink(path);
	assert_int_equal(ks.insert_failed, want_if);
	assert_int_equal(ks.drop, want_drop);
	assert_int_equal(ks.early_drop, want_early);
	assert_int_equal(ks.clash_resolve, want_clash);
	errno = 0;
	assert_int_equal(kstat_read_stat("/nonexistent/stat", &ks), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_port_range(void **state)
{
	int32_t lo = 0, hi = 0;

	(void)state;
	assert_int_equal(kstat_parse_port_range("32768\t60999\n", &lo, &hi), 0);
	assert_int_equal(lo, 32768);
	assert_int_equal(hi, 60999);
	assert_int_equal(kstat_parse_port_range("1024 65535", &lo, &hi), 0);
	assert_int_equal(hi - lo + 1, 64512);
	assert_int_equal(kstat_parse_port_range("60999 32768", &lo, &hi), -1);
	assert_int_equal(kstat_parse_port_range("1 70000", &lo, &hi), -1);
	assert_int_equal(kstat_parse_port_range("abc", &lo, &hi), -1);
	assert_int_equal(kstat_parse_port_range("", &lo, &hi), -1);
}

/* This machine's own figures: whatever they are, they are sane. */
static void test_read_live(void **state)
{
	struct kstat ks;
	FILE *f;
	int lo, hi;

	(void)state;
	kstat_read(&ks);
	f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d %d", &lo, &hi), 2);
	fclose(f);
	assert_int_equal(ks.port_lo, lo);
	assert_int_equal(ks.port_hi, hi);
	assert_true(ks.rss_bytes > 0);
	assert_true(ks.cpu_seconds >= 0);
	if (access("/proc/sys/net/netfilter/nf_conntrack_max", R_OK) == 0) {
		assert_true(ks.max > 0);
		assert_true(ks.count >= 0);
		assert_true(ks.tcp_timeout_time_wait > 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_stat),
		cmocka_unit_test(test_parse_stat_old),
		cmocka_unit_test(test_parse_stat_garbage),
		cmocka_unit_test(test_parse_real_file),
		cmocka_unit_test(test_many_cpus),
		cmocka_unit_test(test_port_range),
		cmocka_unit_test(test_read_live),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
