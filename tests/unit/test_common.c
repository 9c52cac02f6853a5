/*
 * test_common.c - common/: times as people type them.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"

static int64_t parsed(const char *text)
{
	int64_t ms = -12345;

	assert_int_equal(ns_time_parse(text, &ms), 0);
	return ms;
}

static void rejected(const char *text)
{
	int64_t ms = 7;

	errno = 0;
	assert_int_equal(ns_time_parse(text, &ms), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(ms, 7);
}

static void test_time_parse(void **state)
{
	(void)state;
	/* 2026-12-02T14:02:00Z = 1796220120 */
	assert_int_equal(parsed("1796220120"), 1796220120000LL);
	assert_int_equal(parsed("1796220120.25"), 1796220120250LL);
	assert_int_equal(parsed("2026-12-02T14:02:00Z"), 1796220120000LL);
	assert_int_equal(parsed("2026-12-02t14:02:00z"), 1796220120000LL);
	assert_int_equal(parsed("2026-12-02 14:02:00Z"), 1796220120000LL);
	assert_int_equal(parsed("2026-12-02T14:02Z"), 1796220120000LL);
	assert_int_equal(parsed("2026-12-02T14:02:00.5Z"), 1796220120500LL);
	assert_int_equal(parsed("2026-12-02T14:02:00.123456Z"),
			 1796220120123LL);
	assert_int_equal(parsed("2026-12-02T15:02:00+01:00"), 1796220120000LL);
	assert_int_equal(parsed("2026-12-02T09:32:00-0430"), 1796220120000LL);
	assert_int_equal(parsed("2026-12-02"), 1796169600000LL);
	assert_int_equal(parsed("1970-01-01T00:00:00Z"), 0);
	assert_int_equal(parsed("2024-02-29T00:00:00Z"), 1709164800000LL);
	rejected("");
	rejected("yesterday");
	rejected("2026-12-02T14:02:00");	/* no offset */
	rejected("2026-13-02T14:02:00Z");
	rejected("2026-12-02T24:00:00Z");
	rejected("2026-12-02T14:02:00Zjunk");
	rejected("-5");
	rejected("1e9");
	rejected("2026-12-02T14:02:00.Z");
	errno = 0;
	assert_int_equal(ns_time_parse(NULL, &(int64_t){ 0 }), -1);
}

static void test_time_format(void **state)
{
	char buf[NS_TIME_STRLEN];

	(void)state;
	assert_string_equal(ns_time_format(1796220120123LL, buf),
			    "2026-12-02T14:02:00.123Z");
	assert_string_equal(ns_time_format(0, buf), "1970-01-01T00:00:00.000Z");
	/* what it prints, it parses */
	assert_int_equal(parsed(ns_time_format(1709164800999LL, buf)),
			 1709164800999LL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time_parse),
		cmocka_unit_test(test_time_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
