// SPDX-License-Identifier: MIT
/* stats_test.c - per-thread counters merged on read, across thread exit. */
#include <pthread.h>

#include "harness.h"

static void *bump(void *arg)
{
	for (long i = 0; i < (long)(uintptr_t)arg; i++)
		count_stat(HETMM_STAT_buddy_merge);
	return NULL;
}

static void test_merge_and_exit(void **state)
{
	(void)state;
	struct hetmm_stats before, after, d;
	pthread_t t[3];

	hetmm_stats_read(&before);
	assert_int_equal(before.version, HETMM_STATS_VERSION);
	assert_int_equal(before.size, sizeof(before));
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, bump, (void *)(uintptr_t)1000);
	count_stat_n(HETMM_STAT_buddy_merge, 5);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	/* The threads have exited: their counts must survive them. */
	hetmm_stats_read(&after);
	hetmm_stats_diff(&d, &after, &before);
	assert_int_equal(d.v[HETMM_STAT_buddy_merge], 3005);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(hetmm_stat_name(HETMM_STAT_pgalloc), "pgalloc");
	assert_non_null(hetmm_stat_desc(HETMM_STAT_pgalloc));
	assert_null(hetmm_stat_name(NR_HETMM_STATS));
	for (int i = 0; i < NR_HETMM_STATS; i++)
		assert_non_null(hetmm_stat_name((enum hetmm_stat_item)i));
}

static void test_alloc_counts(void **state)
{
	struct hetmm_machine *m = *state;
	struct hetmm_stats before, after, d;
	struct page *p;

	hetmm_stats_read(&before);
	p = alloc_pages(m, 0, 3);
	assert_non_null(p);
	__free_pages(p, 3);
	hetmm_stats_read(&after);
	hetmm_stats_diff(&d, &after, &before);
	assert_int_equal(d.v[HETMM_STAT_pgalloc], 8);
	assert_int_equal(d.v[HETMM_STAT_pgfree], 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_merge_and_exit),
		cmocka_unit_test_setup_teardown(test_alloc_counts,
						test_machine_setup,
						test_machine_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
