// SPDX-License-Identifier: MIT
/* folio_test.c - refcount rules, compound layout, folio lock, data helpers. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static void test_compound_layout(void **state)
{
	struct hetmm_machine *m = *state;
	struct folio *f = folio_alloc(m, 0, PMD_ORDER);

	assert_non_null(f);
	assert_true(folio_test_large(f));
	assert_int_equal(folio_order(f), PMD_ORDER);
	assert_int_equal(folio_nr_pages(f), 512);
	assert_int_equal(folio_size(f), 2 << 20);
	for (unsigned long i = 0; i < 512; i++) {
		struct page *p = folio_page(f, i);

		assert_ptr_equal(page_folio(p), f);
		assert_int_equal(page_to_pfn(p), folio_pfn(f) + i);
		assert_ptr_equal(pfn_to_page(m, folio_pfn(f) + i), p);
		assert_int_equal(page_mapcount(p), 0);
	}
	assert_int_equal(folio_mapcount(f), 0);
	assert_int_equal(folio_pincount(f), 0);
	/* A tail reference holds the whole folio. */
	get_page(folio_page(f, 17));
	assert_int_equal(folio_ref_count(f), 2);
	put_page(folio_page(f, 300));
	assert_int_equal(folio_ref_count(f), 1);
	folio_put(f);
	/* Reuse at a smaller order rewrites the tails it hands out. */
	struct page *small[512];

	drain_all_pages(m);
	for (int i = 0; i < 512; i++) {
		small[i] = alloc_pages(m, 0, 0);
		assert_non_null(small[i]);
		assert_ptr_equal(page_folio(small[i]), (struct folio *)small[i]);
	}
	for (int i = 0; i < 512; i++)
		put_page(small[i]);
}

static void test_refcount_rules(void **state)
{
	struct hetmm_machine *m = *state;
	struct folio *f = folio_alloc(m, 0, 0);

	assert_int_equal(folio_ref_count(f), 1);
	assert_true(folio_try_get(f));
	assert_true(folio_ref_try_add(f, 3));
	assert_int_equal(folio_ref_count(f), 5);
	folio_put_refs(f, 4);
	assert_int_equal(folio_ref_count(f), 1);
	folio_put(f);
	/* Freed: speculative gets must fail. */
	assert_int_equal(folio_ref_count(f), 0);
	assert_false(folio_try_get(f));
	assert_false(folio_ref_try_add(f, 2));
}

static void test_double_free_caught(void **state)
{
	struct hetmm_machine *m = *state;
	struct folio *f = folio_alloc(m, 0, 0);
	unsigned long pfn = folio_pfn(f);
	char want[64];

	folio_put(f);
	folio_put(f); /* the bug under test */
	assert_int_equal(folio_ref_count(f), 0);
	assert_int_equal(hetmm_check(m), -EUCLEAN);
	snprintf(want, sizeof(want), "pfn %#lx: refcount dropped below zero",
		 pfn);
	assert_non_null(strstr(hetmm_check_report(m), want));
	hetmm_bad_page_clear(m);
	ASSERT_OK(hetmm_check(m));
}

static void test_free_mapped_caught(void **state)
{
	struct hetmm_machine *m = *state;
	struct folio *f = folio_alloc(m, 0, 0);

	atomic_store(&f->page._mapcount, 0); /* pretend one PTE maps it */
	folio_put(f);
	assert_int_equal(hetmm_check(m), -EUCLEAN);
	assert_non_null(strstr(hetmm_check_report(m), "freeing a mapped folio"));
	/* Undo the simulated damage so teardown sees a sane machine. */
	hetmm_bad_page_clear(m);
	atomic_store(&f->page._mapcount, -1);
	atomic_store(&f->page._refcount, 1);
	folio_put(f);
	ASSERT_OK(hetmm_check(m));
}

static void test_free_pages_order_mismatch(void **state)
{
	struct hetmm_machine *m = *state;
	struct page *p = alloc_pages(m, 0, 2);

	__free_pages(p, 1);
	assert_int_equal(hetmm_check(m), -EUCLEAN);
	hetmm_bad_page_clear(m);
	__free_pages(p, 2);
}

static void test_zero_copy(void **state)
{
	struct hetmm_machine *m = *state;
	struct folio *a = folio_alloc(m, 0, 2), *b = folio_alloc(m, __GFP_ZERO, 2);
	struct folio *c = folio_alloc(m, 0, 0);
	unsigned char *pa = folio_address(a), *pb = folio_address(b);

	for (size_t i = 0; i < folio_size(b); i++)
		assert_int_equal(pb[i], 0);
	for (size_t i = 0; i < folio_size(a); i++)
		pa[i] = (unsigned char)(i * 7);
	ASSERT_OK(folio_mc_copy(b, a));
	assert_memory_equal(pa, pb, folio_size(a));
	assert_int_equal(folio_mc_copy(c, a), -EINVAL);
	/* An injected copy failure copies nothing. */
	folio_zero(b);
	ASSERT_OK(hetmm_fault_set(&m->faults, HETMM_FAULT_copy_page, FAULT_NTH,
				  1, 0));
	assert_int_equal(folio_mc_copy(b, a), -EIO);
	hetmm_fault_reset(&m->faults);
	for (size_t i = 0; i < folio_size(b); i++)
		assert_int_equal(pb[i], 0);
	copy_highpage(&c->page, folio_page(a, 1));
	assert_memory_equal(folio_address(c), pa + PAGE_SIZE, PAGE_SIZE);
	clear_highpage(&c->page);
	assert_int_equal(((unsigned char *)folio_address(c))[100], 0);
	folio_put(a);
	folio_put(b);
	folio_put(c);
}

static void test_zero_page(void **state)
{
	struct hetmm_machine *m = *state;
	unsigned char *z = page_address(m->zero_page);

	assert_true(is_zero_page(m->zero_page));
	assert_true(PageTestFlag(m->zero_page, PG_reserved));
	for (size_t i = 0; i < PAGE_SIZE; i++)
		assert_int_equal(z[i], 0);
}

struct lock_arg {
	struct folio *f;
	long *counter;
	int iters;
};

static void *locker(void *arg)
{
	struct lock_arg *a = arg;

	for (int i = 0; i < a->iters; i++) {
		folio_lock(a->f);
		long v = *a->counter;

		if (i % 64 == 0)
			usleep(10); /* make others sleep on the lock */
		*a->counter = v + 1;
		folio_unlock(a->f);
	}
	return NULL;
}

static void test_folio_lock_waiters(void **state)
{
	struct hetmm_machine *m = *state;
	struct folio *f = folio_alloc(m, 0, 0);
	struct hetmm_stats before, after;
	long counter = 0;
	pthread_t t[4];
	struct lock_arg a = { f, &counter, 2000 };

	hetmm_stats_read(&before);
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, locker, &a);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	hetmm_stats_read(&after);
	assert_int_equal(counter, 8000);
	assert_false(folio_test_locked(f));
	assert_false(folio_test_flag(f, PG_waiters) &&
		     folio_test_flag(f, PG_locked));
	/* Contention happened, so the sleeping path was exercised. */
	assert_true(after.v[HETMM_STAT_folio_lock_wait] >
		    before.v[HETMM_STAT_folio_lock_wait]);
	assert_true(folio_trylock(f));
	assert_false(folio_trylock(f));
	folio_unlock(f);
	folio_wait_locked(f);
	folio_put(f);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, test_machine_setup, \
					       test_machine_teardown)
	const struct CMUnitTest tests[] = {
		T(test_compound_layout),
		T(test_refcount_rules),
		T(test_double_free_caught),
		T(test_free_mapped_caught),
		T(test_free_pages_order_mismatch),
		T(test_zero_copy),
		T(test_zero_page),
		T(test_folio_lock_waiters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
