// SPDX-License-Identifier: MIT
/*
 * buddy_test.c - the page allocator against a shadow model.
 *
 * The shadow is a byte per frame: 1 while our test owns it. Every
 * allocation must be naturally aligned, inside RAM, and overlap nothing the
 * test already owns; hetmm_check() runs periodically and at teardown.
 */
#include <pthread.h>
#include <string.h>

#include "harness.h"

struct held {
	struct page *page;
	unsigned int order;
};

static void shadow_mark(uint8_t *shadow, struct hetmm_machine *m,
			struct page *p, unsigned int order, uint8_t v)
{
	unsigned long pfn = page_to_pfn(p);

	assert_true(IS_ALIGNED(pfn, 1UL << order));
	assert_true(pfn + (1UL << order) <= m->nr_ram_pages);
	for (unsigned long i = 0; i < (1UL << order); i++) {
		assert_int_equal(shadow[pfn + i], !v);
		shadow[pfn + i] = v;
	}
}

static void test_random_alloc_free(void **state)
{
	struct hetmm_machine *m = *state;
	struct test_rng rng;
	unsigned int steps = test_scale(20000, 400000);
	uint8_t *shadow = calloc(m->nr_ram_pages, 1);
	struct held *h = calloc(4096, sizeof(*h));
	int nh = 0;

	test_rng_init(&rng, test_seed());
	shadow[page_to_pfn(m->zero_page)] = 1;
	for (unsigned int s = 0; s < steps; s++) {
		bool do_alloc = nh == 0 ||
				(nh < 4096 && test_rng_below(&rng, 100) < 55);

		if (do_alloc) {
			/* Mostly small orders, sometimes big ones. */
			unsigned int order = test_rng_below(&rng, 4) ?
						     (unsigned int)test_rng_below(&rng, 3) :
						     (unsigned int)test_rng_below(&rng, NR_PAGE_ORDERS);
			struct page *p = alloc_pages(m, 0, order);

			if (!p)
				continue;
			assert_int_equal(page_ref_count(p), 1);
			assert_int_equal(folio_order(page_folio(p)), order);
			shadow_mark(shadow, m, p, order, 1);
			h[nh++] = (struct held){ p, order };
		} else {
			int i = (int)test_rng_below(&rng, (uint64_t)nh);

			shadow_mark(shadow, m, h[i].page, h[i].order, 0);
			__free_pages(h[i].page, h[i].order);
			h[i] = h[--nh];
		}
		if (s % 2000 == 0) {
			if (hetmm_check(m))
				fail_msg("step %u: %s", s, hetmm_check_report(m));
			assert_int_equal(hetmm_pages_in_use(m) +
						 (long)hetmm_pages_free(m) + 1,
					 (long)m->nr_ram_pages);
		}
	}
	while (nh) {
		nh--;
		shadow_mark(shadow, m, h[nh].page, h[nh].order, 0);
		__free_pages(h[nh].page, h[nh].order);
	}
	free(shadow);
	free(h);
}

static void test_exhaustion_and_merge(void **state)
{
	(void)state;
	struct hetmm_machine *m = test_machine_new(16, false);
	unsigned long n = 0, total = m->nr_ram_pages - 1;
	struct page **pages = calloc(total + 1, sizeof(*pages));
	struct page *p;

	while ((p = alloc_pages(m, 0, 0)))
		pages[n++] = p;
	assert_int_equal(n, total);
	assert_int_equal(hetmm_pages_free(m), 0);
	assert_null(alloc_pages(m, 0, 0));
	ASSERT_OK(hetmm_check(m));
	for (unsigned long i = 0; i < n; i++)
		put_page(pages[i]);
	drain_all_pages(m);
	/* Everything merged back: a max-order block must be available. */
	p = alloc_pages(m, 0, MAX_PAGE_ORDER);
	assert_non_null(p);
	__free_pages(p, MAX_PAGE_ORDER);
	free(pages);
	test_machine_finish(m);
}

static void test_bad_requests(void **state)
{
	struct hetmm_machine *m = *state;

	assert_null(alloc_pages(m, 0, MAX_PAGE_ORDER + 1));
	assert_null(alloc_pages(m, 0x80000000u, 0));
	assert_null(alloc_pages(NULL, 0, 0));
}

/* An operation that allocates several folios and undoes itself on failure. */
static int alloc_batch(struct hetmm_machine *m, struct folio **out)
{
	static const unsigned int orders[] = { 0, 9, 3, 0, 10, 1, 0, 9 };

	for (size_t i = 0; i < ARRAY_SIZE(orders); i++) {
		out[i] = folio_alloc(m, __GFP_ZERO, orders[i]);
		if (!out[i]) {
			while (i--)
				folio_put(out[i]);
			return -ENOMEM;
		}
	}
	return 0;
}

static void test_injection_loop(void **state)
{
	struct hetmm_machine *m = *state;
	struct folio *f[8];
	int ret;

	/* Fail call N (transient), for N = 1, 2, ... until the batch works. */
	for (int nth = 1;; nth++) {
		ASSERT_OK(hetmm_fault_set(&m->faults, HETMM_FAULT_alloc_pages,
					  FAULT_NTH, nth, 0));
		ret = alloc_batch(m, f);
		hetmm_fault_reset(&m->faults);
		if (!ret)
			break;
		assert_int_equal(ret, -ENOMEM);
		assert_int_equal(hetmm_pages_in_use(m), 0);
		if (hetmm_check(m))
			fail_msg("nth=%d: %s", nth, hetmm_check_report(m));
	}
	for (int i = 0; i < 8; i++)
		folio_put(f[i]);
	/* Persistent failure from the first call: nothing ever succeeds. */
	ASSERT_OK(hetmm_fault_set(&m->faults, HETMM_FAULT_alloc_pages,
				  FAULT_FROM_NTH, 1, 0));
	assert_int_equal(alloc_batch(m, f), -ENOMEM);
	hetmm_fault_reset(&m->faults);
	assert_int_equal(hetmm_pages_in_use(m), 0);
}

static void test_online_failure(void **state)
{
	(void)state;
	struct hetmm_machine *m;
	struct page *p, **keep;
	unsigned long n;

	m = test_machine_new(512, false);
	ASSERT_OK(hetmm_fault_set(&m->faults, HETMM_FAULT_memmap_online,
				  FAULT_FROM_NTH, 1, 0));
	/* Section 0 is online; an order-10 request beyond it must fail. */
	n = 0;
	keep = calloc(PAGES_PER_SECTION, sizeof(*keep));
	while ((p = alloc_pages(m, 0, MAX_PAGE_ORDER)))
		keep[n++] = p;
	assert_int_equal(n, PAGES_PER_SECTION / (1UL << MAX_PAGE_ORDER) - 1);
	assert_int_equal(hetmm_memmap_pages_online(m), PAGES_PER_SECTION);
	hetmm_fault_reset(&m->faults);
	p = alloc_pages(m, 0, MAX_PAGE_ORDER);
	assert_non_null(p);
	assert_int_equal(hetmm_memmap_pages_online(m), 2 * PAGES_PER_SECTION);
	keep[n++] = p;
	for (unsigned long i = 0; i < n; i++)
		__free_pages(keep[i], MAX_PAGE_ORDER);
	free(keep);
	test_machine_finish(m);
}

static void test_movable_zone(void **state)
{
	(void)state;
	struct hetmm_machine_config cfg;
	struct hetmm_machine *m;
	struct page *p, *q;

	hetmm_machine_config_default(&cfg);
	cfg.ram_size = 32 << 20;
	cfg.movable_size = 8 << 20;
	m = hetmm_machine_create(&cfg);
	assert_false(IS_ERR(m));
	p = alloc_pages(m, __GFP_MOVABLE, 0);
	q = alloc_pages(m, GFP_KERNEL, 0);
	assert_int_equal(p->zone, ZONE_MOVABLE);
	assert_int_equal(q->zone, ZONE_NORMAL);
	assert_true(page_to_pfn(p) >= (24UL << 20) / PAGE_SIZE);
	put_page(p);
	put_page(q);
	/* GFP_KERNEL never takes movable memory, even when normal runs out. */
	unsigned long n = 0;
	struct page **v = calloc(m->nr_ram_pages, sizeof(*v));

	while ((p = alloc_pages(m, GFP_KERNEL, 0))) {
		assert_int_equal(p->zone, ZONE_NORMAL);
		v[n++] = p;
	}
	assert_int_equal(n, (24UL << 20) / PAGE_SIZE - 1);
	p = alloc_pages(m, __GFP_MOVABLE, 0);
	assert_non_null(p);
	v[n++] = p;
	for (unsigned long i = 0; i < n; i++)
		put_page(v[i]);
	free(v);
	test_machine_finish(m);
}

struct worker_arg {
	struct hetmm_machine *m;
	uint64_t seed;
	atomic_long *failures;
};

static void *alloc_worker(void *arg)
{
	struct worker_arg *a = arg;
	struct test_rng rng;
	struct held h[64];
	int nh = 0;

	test_rng_init(&rng, a->seed);
	for (int i = 0; i < 20000; i++) {
		if (nh < 64 && (nh == 0 || test_rng_below(&rng, 2))) {
			unsigned int order = test_rng_below(&rng, 8) ? 0 : 9;
			struct page *p = alloc_pages(a->m, 0, order);

			if (!p)
				continue; /* memory may run short: not an error */
			/* Ownership check: write our tag, read it back later. */
			*(uint64_t *)page_address(p) = a->seed + (uint64_t)i;
			h[nh].page = p;
			h[nh].order = order;
			h[nh].page->index = a->seed + (uint64_t)i;
			nh++;
		} else {
			int k = (int)test_rng_below(&rng, (uint64_t)nh);

			if (*(uint64_t *)page_address(h[k].page) !=
			    h[k].page->index)
				atomic_fetch_add(a->failures, 1);
			__free_pages(h[k].page, h[k].order);
			h[k] = h[--nh];
		}
	}
	while (nh--)
		__free_pages(h[nh].page, h[nh].order);
	return NULL;
}

static void test_concurrent(void **state)
{
	struct hetmm_machine *m = *state;
	pthread_t t[3];
	struct worker_arg a[3];
	atomic_long failures = 0;

	for (int i = 0; i < 3; i++) {
		a[i] = (struct worker_arg){ m, test_seed() + 1000 * (i + 1),
					    &failures };
		pthread_create(&t[i], NULL, alloc_worker, &a[i]);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&failures), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_random_alloc_free,
						test_machine_setup,
						test_machine_teardown),
		cmocka_unit_test(test_exhaustion_and_merge),
		cmocka_unit_test_setup_teardown(test_bad_requests,
						test_machine_setup,
						test_machine_teardown),
		cmocka_unit_test_setup_teardown(test_injection_loop,
						test_machine_setup,
						test_machine_teardown),
		cmocka_unit_test(test_online_failure),
		cmocka_unit_test(test_movable_zone),
		cmocka_unit_test_setup_teardown(test_concurrent,
						test_machine_setup,
						test_machine_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
