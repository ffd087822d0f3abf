// SPDX-License-Identifier: MIT
/* fault_inject_test.c - modes, parsing, and per-machine isolation. */
#include "harness.h"

static int count_failures(struct hetmm_faults *f, enum hetmm_fault_site s,
			  int calls, int *first)
{
	int n = 0;

	*first = -1;
	for (int i = 1; i <= calls; i++) {
		if (should_fail(f, s)) {
			if (*first < 0)
				*first = i;
			n++;
		}
	}
	return n;
}

static void test_modes(void **state)
{
	(void)state;
	struct hetmm_faults f = { 0 };
	int first;

	assert_int_equal(count_failures(&f, HETMM_FAULT_copy_page, 100, &first),
			 0);
	ASSERT_OK(hetmm_fault_set(&f, HETMM_FAULT_copy_page, FAULT_NTH, 5, 0));
	assert_int_equal(count_failures(&f, HETMM_FAULT_copy_page, 100, &first),
			 1);
	assert_int_equal(first, 5);
	ASSERT_OK(hetmm_fault_set(&f, HETMM_FAULT_copy_page, FAULT_FROM_NTH, 5,
				  0));
	assert_int_equal(count_failures(&f, HETMM_FAULT_copy_page, 100, &first),
			 96);
	assert_int_equal(first, 5);
	ASSERT_OK(hetmm_fault_set(&f, HETMM_FAULT_copy_page, FAULT_EVERY, 10,
				  0));
	assert_int_equal(count_failures(&f, HETMM_FAULT_copy_page, 100, &first),
			 10);
	assert_int_equal(first, 10);
	assert_int_equal(hetmm_fault_failures(&f, HETMM_FAULT_copy_page), 10);
	ASSERT_OK(hetmm_fault_set(&f, HETMM_FAULT_copy_page, FAULT_PROBABILITY,
				  0.25, 42));
	int n = count_failures(&f, HETMM_FAULT_copy_page, 10000, &first);

	assert_in_range(n, 2000, 3000);
	/* The same seed gives the same sequence. */
	ASSERT_OK(hetmm_fault_set(&f, HETMM_FAULT_copy_page, FAULT_PROBABILITY,
				  0.25, 42));
	assert_int_equal(count_failures(&f, HETMM_FAULT_copy_page, 10000,
					&first),
			 n);
	hetmm_fault_reset(&f);
	assert_int_equal(count_failures(&f, HETMM_FAULT_copy_page, 100, &first),
			 0);
	/* Other sites are untouched by arming one. */
	ASSERT_OK(hetmm_fault_set(&f, HETMM_FAULT_alloc_pages, FAULT_EVERY, 1,
				  0));
	assert_int_equal(count_failures(&f, HETMM_FAULT_copy_page, 10, &first),
			 0);
}

static void test_bad_args(void **state)
{
	(void)state;
	struct hetmm_faults f = { 0 };

	assert_int_equal(hetmm_fault_set(&f, NR_HETMM_FAULT_SITES, FAULT_NTH,
					 1, 0),
			 -EINVAL);
	assert_int_equal(hetmm_fault_set(&f, HETMM_FAULT_copy_page, FAULT_NTH,
					 0, 0),
			 -EINVAL);
	assert_int_equal(hetmm_fault_set(&f, HETMM_FAULT_copy_page, FAULT_NTH,
					 1.5, 0),
			 -EINVAL);
	assert_int_equal(hetmm_fault_set(&f, HETMM_FAULT_copy_page,
					 FAULT_PROBABILITY, 1.5, 0),
			 -EINVAL);
	assert_int_equal(hetmm_fault_set(&f, HETMM_FAULT_copy_page,
					 (enum fault_mode)99, 1, 0),
			 -EINVAL);
}

static void test_parse(void **state)
{
	(void)state;
	struct hetmm_faults f = { 0 };
	int first;

	ASSERT_OK(hetmm_fault_parse(&f, "copy_page:nth=3;alloc_pages:every=2"));
	assert_int_equal(count_failures(&f, HETMM_FAULT_copy_page, 10, &first),
			 1);
	assert_int_equal(first, 3);
	assert_int_equal(count_failures(&f, HETMM_FAULT_alloc_pages, 10,
					&first),
			 5);
	ASSERT_OK(hetmm_fault_parse(&f, "copy_page:prob=0.5,seed=9"));
	ASSERT_OK(hetmm_fault_parse(&f, "copy_page:off;alloc_pages:off"));
	assert_int_equal(count_failures(&f, HETMM_FAULT_alloc_pages, 10,
					&first),
			 0);
	/* Errors arm nothing, even when an earlier item was valid. */
	assert_int_equal(hetmm_fault_parse(&f, "copy_page:nth=2;nosuch:nth=1"),
			 -EINVAL);
	assert_int_equal(count_failures(&f, HETMM_FAULT_copy_page, 10, &first),
			 0);
	assert_int_equal(hetmm_fault_parse(&f, "copy_page:nth=0"), -EINVAL);
	assert_int_equal(hetmm_fault_parse(&f, "copy_page:nth=x"), -EINVAL);
	assert_int_equal(hetmm_fault_parse(&f, "copy_page"), -EINVAL);
	assert_int_equal(hetmm_fault_parse(&f, "copy_page:bogus=1"), -EINVAL);
	assert_int_equal(hetmm_fault_site_lookup("device_copy"),
			 HETMM_FAULT_device_copy);
	assert_string_equal(hetmm_fault_site_name(HETMM_FAULT_alloc_pages),
			    "alloc_pages");
}

/* Failing one machine's allocator leaves another machine alone. */
static void test_per_machine(void **state)
{
	(void)state;
	struct hetmm_machine *a = test_machine_new(16, false);
	struct hetmm_machine *b = test_machine_new(16, false);
	struct page *p;

	ASSERT_OK(hetmm_fault_set(&a->faults, HETMM_FAULT_alloc_pages,
				  FAULT_EVERY, 1, 0));
	assert_null(alloc_pages(a, 0, 0));
	p = alloc_pages(b, 0, 0);
	assert_non_null(p);
	put_page(p);
	hetmm_fault_reset(&a->faults);
	test_machine_finish(a);
	test_machine_finish(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_modes),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_per_machine),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
