// SPDX-License-Identifier: MIT
/* machine_test.c - configuration, lazy memmap, metadata-only, device window. */
#include <string.h>

#include "harness.h"

static void test_config_errors(void **state)
{
	(void)state;
	struct hetmm_machine_config c;
	const char *why;

	hetmm_machine_config_default(&c);
	ASSERT_OK(hetmm_machine_config_check(&c, &why));
	assert_null(why);
	c.page_size = 8192;
	assert_int_equal(hetmm_machine_config_check(&c, &why), -EINVAL);
	assert_non_null(strstr(why, "page_size"));
	assert_true(IS_ERR(hetmm_machine_create(&c)));
	hetmm_machine_config_default(&c);
	c.ram_size = (64ULL << 20) + 4096;
	assert_int_equal(PTR_ERR(hetmm_machine_create(&c)), -EINVAL);
	hetmm_machine_config_default(&c);
	c.ram_size = 4 << 20;
	assert_int_equal(hetmm_machine_config_check(&c, &why), -EINVAL);
	hetmm_machine_config_default(&c);
	c.movable_size = c.ram_size;
	assert_int_equal(hetmm_machine_config_check(&c, &why), -EINVAL);
	hetmm_machine_config_default(&c);
	c.device_size = 3 << 20;
	assert_int_equal(hetmm_machine_config_check(&c, &why), -EINVAL);
	hetmm_machine_config_default(&c);
	c.nr_cpus = 0;
	assert_int_equal(hetmm_machine_config_check(&c, &why), -EINVAL);
	assert_int_equal(hetmm_machine_config_check(NULL, &why), -EINVAL);
	assert_true(IS_ERR(hetmm_machine_create(NULL)));
}

/* A 1 TiB metadata-only machine initialises only what it uses. */
static void test_big_metadata_only(void **state)
{
	(void)state;
	struct hetmm_machine_config c;
	struct hetmm_machine *m;
	unsigned long n = 1UL << (30 - PAGE_SHIFT - PMD_ORDER); /* 1 GiB */
	struct folio **f = calloc(n, sizeof(*f));

	hetmm_machine_config_default(&c);
	c.ram_size = 1ULL << 40;
	c.carry_data = false;
	m = hetmm_machine_create(&c);
	assert_false(IS_ERR(m));
	assert_null(m->arena);
	assert_null(page_address(m->zero_page));
	for (unsigned long i = 0; i < n; i++) {
		f[i] = folio_alloc(m, __GFP_ZERO, PMD_ORDER);
		assert_non_null(f[i]);
	}
	/* 1 GiB in use: at most 9 sections (8 + the zero page's) online. */
	assert_true(hetmm_memmap_pages_online(m) <= 9 * PAGES_PER_SECTION);
	assert_int_equal(hetmm_pages_in_use(m), 1L << 18);
	for (unsigned long i = 0; i < n; i++)
		folio_put(f[i]);
	free(f);
	test_machine_finish(m);
}

static void test_device_window(void **state)
{
	(void)state;
	struct hetmm_machine_config c;
	struct hetmm_machine *m;
	unsigned long a, b;

	hetmm_machine_config_default(&c);
	c.ram_size = 16 << 20;
	c.device_size = 8 << 20;
	m = hetmm_machine_create(&c);
	assert_false(IS_ERR(m));
	assert_int_equal(hetmm_device_range_reserve(m, 1000, &a), -EINVAL);
	assert_int_equal(hetmm_device_range_reserve(m, 0, &a), -EINVAL);
	ASSERT_OK(hetmm_device_range_reserve(m, 1024, &a));
	ASSERT_OK(hetmm_device_range_reserve(m, 1024, &b));
	assert_int_equal(b, a + 1024);
	assert_true(a >= m->nr_ram_pages);
	assert_int_equal(hetmm_device_range_reserve(m, 1024, &b), -ENOSPC);
	hetmm_device_pages_init(m, a, 16);
	struct page *p = pfn_to_page(m, a + 3);

	assert_true(is_zone_device_page(p));
	assert_int_equal(page_ref_count(p), 0);
	assert_int_equal(page_to_pfn(p), a + 3);
	assert_false(pfn_valid(m, a + 3));
	assert_true(pfn_valid(m, page_to_pfn(m->zero_page)));
	test_machine_finish(m);
}

static void test_many_machines(void **state)
{
	(void)state;
	struct hetmm_machine *m[8];

	for (int i = 0; i < 8; i++)
		m[i] = test_machine_new(8, false);
	for (int i = 0; i < 8; i++) {
		struct page *p = alloc_pages(m[i], 0, 0);

		assert_ptr_equal(page_machine(p), m[i]);
		put_page(p);
	}
	for (int i = 0; i < 8; i++)
		test_machine_finish(m[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_big_metadata_only),
		cmocka_unit_test(test_device_window),
		cmocka_unit_test(test_many_machines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
