// SPDX-License-Identifier: MIT
/*
 * memremap_test.c - dev_pagemap life cycle: memremap_pages validation,
 * the device window's region allocator, pages going into service
 * (zone_device_page_init, pgmap_request_folio with on-demand struct
 * pages) and out of it (folio_free, pgmap references), get_dev_pagemap,
 * memunmap_pages waiting for references, and the memremap checker.
 */
#include <pthread.h>
#include <unistd.h>

#include <hetmm/memremap.h>
#include <hetmm/stats.h>

#include "harness.h"

#define SZ_2M (2ULL << 20)

static atomic_int nr_freed;

static void test_folio_free(struct folio *folio)
{
	(void)folio;
	atomic_fetch_add(&nr_freed, 1);
}

static int test_migrate_to_ram(struct vm_fault *vmf)
{
	(void)vmf;
	return -EFAULT;
}

static const struct dev_pagemap_ops test_ops = {
	.folio_free = test_folio_free,
	.migrate_to_ram = test_migrate_to_ram,
};

static int owner_cookie;

static void pgmap_fill(struct dev_pagemap *pgmap, enum memory_type type,
		       uint64_t start, uint64_t size, unsigned int flags)
{
	memset(pgmap, 0, sizeof(*pgmap));
	pgmap->type = type;
	pgmap->flags = flags;
	pgmap->ops = &test_ops;
	pgmap->owner = &owner_cookie;
	pgmap->nr_range = 1;
	pgmap->ranges[0].start = start;
	pgmap->ranges[0].end = start + size - 1;
}

static void test_validation(void **state)
{
	struct hetmm_machine *m = *state;
	uint64_t base = (uint64_t)m->device_base_pfn << PAGE_SHIFT;
	struct dev_pagemap a, b;
	struct dev_pagemap_ops no_fault = { .folio_free = test_folio_free };

	pgmap_fill(&a, MEMORY_DEVICE_PRIVATE, base, 4 * SZ_2M, 0);
	a.nr_range = 0;
	assert_int_equal(memremap_pages(m, &a), -EINVAL);
	pgmap_fill(&a, MEMORY_DEVICE_PRIVATE, base, 4 * SZ_2M, 0);
	a.owner = NULL;
	assert_int_equal(memremap_pages(m, &a), -EINVAL);
	pgmap_fill(&a, MEMORY_DEVICE_PRIVATE, base, 4 * SZ_2M, 0);
	a.ops = &no_fault;
	assert_int_equal(memremap_pages(m, &a), -EINVAL);
	/* COHERENT needs no migrate_to_ram, but an owner. */
	pgmap_fill(&a, MEMORY_DEVICE_COHERENT, base, 4 * SZ_2M, 0);
	a.ops = &no_fault;
	ASSERT_OK(memremap_pages(m, &a));
	memunmap_pages(&a);
	pgmap_fill(&a, MEMORY_DEVICE_PRIVATE, base + 4096, 4 * SZ_2M, 0);
	assert_int_equal(memremap_pages(m, &a), -EINVAL);
	/* System RAM is not device memory. */
	pgmap_fill(&a, MEMORY_DEVICE_PRIVATE, 0, SZ_2M, 0);
	assert_int_equal(memremap_pages(m, &a), -ENXIO);
	pgmap_fill(&a, MEMORY_DEVICE_PRIVATE,
		   (uint64_t)m->max_pfn << PAGE_SHIFT, SZ_2M, 0);
	assert_int_equal(memremap_pages(m, &a), -ENXIO);

	/* Overlap: the second map fails and leaves the first intact. */
	pgmap_fill(&a, MEMORY_DEVICE_PRIVATE, base, 4 * SZ_2M, 0);
	ASSERT_OK(memremap_pages(m, &a));
	pgmap_fill(&b, MEMORY_DEVICE_PRIVATE, base + 3 * SZ_2M, 2 * SZ_2M, 0);
	assert_int_equal(memremap_pages(m, &b), -ENOMEM);
	assert_ptr_equal(get_dev_pagemap(m, (base >> PAGE_SHIFT) + 3 * 512),
			 &a);
	put_dev_pagemap(&a);
	assert_null(get_dev_pagemap(m, (base >> PAGE_SHIFT) + 4 * 512));
	assert_int_equal(hetmm_nr_pgmaps(m), 1);
	ASSERT_OK(hetmm_check(m));
	memunmap_pages(&a);
	assert_int_equal(hetmm_nr_pgmaps(m), 0);
}

static void test_regions(void **state)
{
	struct hetmm_machine *m = *state;
	uint64_t window = (uint64_t)(m->max_pfn - m->device_base_pfn)
			  << PAGE_SHIFT;
	uint64_t a, b, c;

	assert_int_equal(request_free_mem_region(m, 4096, &a), -EINVAL);
	assert_int_equal(request_free_mem_region(m, 0, &a), -EINVAL);
	ASSERT_OK(request_free_mem_region(m, 8 * SZ_2M, &a));
	/* Top down: the first region ends at the top of the window. */
	assert_int_equal(a + 8 * SZ_2M, (uint64_t)m->max_pfn << PAGE_SHIFT);
	ASSERT_OK(request_free_mem_region(m, 8 * SZ_2M, &b));
	assert_int_equal(b + 8 * SZ_2M, a);
	assert_int_equal(request_free_mem_region(m, window, &c), -ENOSPC);
	release_mem_region(m, a, 8 * SZ_2M);
	ASSERT_OK(request_free_mem_region(m, 8 * SZ_2M, &c));
	assert_int_equal(c, a);
	release_mem_region(m, b, 8 * SZ_2M);
	release_mem_region(m, c, 8 * SZ_2M);
	ASSERT_OK(request_free_mem_region(m, window, &c));
	release_mem_region(m, c, window);
}

static void test_page_life_cycle(void **state)
{
	struct hetmm_machine *m = *state;
	struct dev_pagemap pgmap;
	uint64_t start;
	unsigned long pfn;
	struct page *page;

	ASSERT_OK(request_free_mem_region(m, 2 * SZ_2M, &start));
	pgmap_fill(&pgmap, MEMORY_DEVICE_PRIVATE, start, 2 * SZ_2M, 0);
	ASSERT_OK(memremap_pages(m, &pgmap));
	pfn = start >> PAGE_SHIFT;
	for (unsigned long i = 0; i < 1024; i += 100) {
		page = pfn_to_page(m, pfn + i);
		assert_int_equal(page->zone, ZONE_DEVICE);
		assert_ptr_equal(page->pgmap, &pgmap);
		assert_int_equal(folio_ref_count(page_folio(page)), 0);
	}
	assert_int_equal(atomic_load(&pgmap.ref), 1);

	atomic_store(&nr_freed, 0);
	page = pfn_to_page(m, pfn + 7);
	zone_device_page_init(page, &pgmap, 0);
	assert_int_equal(folio_ref_count(page_folio(page)), 1);
	assert_true(folio_test_locked(page_folio(page)));
	assert_true(is_device_private_page(page));
	assert_int_equal(atomic_load(&pgmap.ref), 2);
	ASSERT_OK(hetmm_check(m));
	folio_unlock(page_folio(page));
	folio_put(page_folio(page));
	assert_int_equal(atomic_load(&nr_freed), 1);
	assert_int_equal(folio_ref_count(page_folio(page)), 0);
	assert_int_equal(atomic_load(&pgmap.ref), 1);

	/* A 2 MiB folio, then the same frames as small pages again. */
	page = pfn_to_page(m, pfn + 512);
	zone_device_folio_init(page_folio(page), &pgmap, 9);
	assert_int_equal(folio_order(page_folio(page)), 9);
	assert_ptr_equal(page_folio(page + 17), page_folio(page));
	assert_true(folio_test_flag(page_folio(page), PG_large_rmappable));
	assert_int_equal(atomic_load(&pgmap.ref), 513);
	folio_unlock(page_folio(page));
	folio_put(page_folio(page));
	assert_int_equal(atomic_load(&pgmap.ref), 1);
	zone_device_page_init(page + 3, &pgmap, 0);
	assert_ptr_equal(page_folio(page + 3), (struct folio *)(page + 3));
	assert_int_equal(folio_order(page_folio(page + 3)), 0);
	folio_unlock(page_folio(page + 3));
	folio_put(page_folio(page + 3));
	assert_int_equal(atomic_load(&nr_freed), 3);
	memunmap_pages(&pgmap);
	release_mem_region(m, start, 2 * SZ_2M);
}

static void test_request_folio_on_demand(void **state)
{
	struct hetmm_machine *m = *state;
	uint64_t size = 128 * SZ_2M; /* 256 MiB */
	struct dev_pagemap pgmap;
	struct hetmm_stats s0, s1;
	struct folio *f, *g;
	uint64_t start;

	ASSERT_OK(request_free_mem_region(m, size, &start));
	hetmm_stats_read(&s0);
	pgmap_fill(&pgmap, MEMORY_DEVICE_PRIVATE, start, size,
		   PGMAP_ON_DEMAND);
	ASSERT_OK(memremap_pages(m, &pgmap));
	/* Nothing initialised yet. */
	assert_int_equal(pgmap.nr_blocks_online, 0);
	assert_false(pgmap_pfn_online(&pgmap, start >> PAGE_SHIFT));
	hetmm_stats_read(&s1);
	assert_int_equal(s1.v[HETMM_STAT_pgmap_block_online],
			 s0.v[HETMM_STAT_pgmap_block_online]);
	ASSERT_OK(hetmm_check(m));

	f = pgmap_request_folio(&pgmap, 1000, 0);
	assert_non_null(f);
	assert_int_equal(folio_pfn(f), (start >> PAGE_SHIFT) + 1000);
	assert_int_equal(pgmap.nr_blocks_online, 1);
	assert_true(pgmap_pfn_online(&pgmap, (start >> PAGE_SHIFT) + 600));
	assert_false(pgmap_pfn_online(&pgmap, (start >> PAGE_SHIFT) + 1100));
	/* In service: a second request fails. */
	assert_null(pgmap_request_folio(&pgmap, 1000, 0));
	/* Misaligned, out of range, too big. */
	assert_null(pgmap_request_folio(&pgmap, 3, 1));
	assert_null(pgmap_request_folio(&pgmap, pgmap.nr_pages, 0));
	assert_null(pgmap_request_folio(&pgmap, 0, MAX_PAGE_ORDER + 1));
	/* A 2 MiB folio over a block that holds the small page: refused. */
	assert_null(pgmap_request_folio(&pgmap, 512, 9));
	g = pgmap_request_folio(&pgmap, 64 * 512, 9);
	assert_non_null(g);
	assert_int_equal(folio_order(g), 9);
	assert_int_equal(pgmap.nr_blocks_online, 2);
	assert_int_equal(atomic_load(&pgmap.ref), 1 + 1 + 512);
	ASSERT_OK(hetmm_check(m));
	folio_unlock(f);
	folio_put(f);
	folio_unlock(g);
	folio_put(g);
	assert_int_equal(atomic_load(&pgmap.ref), 1);
	/* Freed offsets can be requested again. */
	f = pgmap_request_folio(&pgmap, 1000, 0);
	assert_non_null(f);
	folio_unlock(f);
	folio_put(f);
	memunmap_pages(&pgmap);
	/* A dying or unmapped pgmap hands out nothing. */
	assert_null(pgmap_request_folio(&pgmap, 0, 0));
	release_mem_region(m, start, size);
}

static void test_other_types(void **state)
{
	struct hetmm_machine *m = *state;
	struct dev_pagemap pgmap;
	uint64_t start;

	ASSERT_OK(request_free_mem_region(m, SZ_2M, &start));
	pgmap_fill(&pgmap, MEMORY_DEVICE_GENERIC, start, SZ_2M, 0);
	pgmap.ops = NULL;
	ASSERT_OK(memremap_pages(m, &pgmap));
	/* Device-dax pages rest at refcount 1, each pinning the pgmap. */
	assert_int_equal(folio_ref_count(page_folio(pfn_to_page(
				 m, start >> PAGE_SHIFT))),
			 1);
	assert_int_equal(atomic_load(&pgmap.ref), 1 + 512);
	assert_null(pgmap_request_folio(&pgmap, 0, 0));
	ASSERT_OK(hetmm_check(m));
	memunmap_pages(&pgmap);
	release_mem_region(m, start, SZ_2M);
}

struct holder {
	struct folio *folio;
	atomic_bool released;
};

static void *release_later(void *arg)
{
	struct holder *h = arg;

	usleep(20000);
	atomic_store(&h->released, true);
	folio_unlock(h->folio);
	folio_put(h->folio);
	return NULL;
}

static void test_unmap_waits_and_lookup(void **state)
{
	struct hetmm_machine *m = *state;
	struct dev_pagemap pgmap;
	struct holder h = { 0 };
	unsigned long pfn;
	uint64_t start;
	pthread_t t;

	ASSERT_OK(request_free_mem_region(m, SZ_2M, &start));
	pgmap_fill(&pgmap, MEMORY_DEVICE_PRIVATE, start, SZ_2M, 0);
	ASSERT_OK(memremap_pages(m, &pgmap));
	pfn = start >> PAGE_SHIFT;
	assert_ptr_equal(get_dev_pagemap(m, pfn + 5), &pgmap);
	assert_int_equal(atomic_load(&pgmap.ref), 2);
	put_dev_pagemap(&pgmap);
	assert_null(get_dev_pagemap(m, 5)); /* RAM */

	h.folio = pgmap_request_folio(&pgmap, 9, 0);
	assert_non_null(h.folio);
	ASSERT_OK(pthread_create(&t, NULL, release_later, &h));
	memunmap_pages(&pgmap); /* returns only once the page is free */
	assert_true(atomic_load(&h.released));
	assert_int_equal(atomic_load(&pgmap.ref), 0);
	assert_null(get_dev_pagemap(m, pfn + 5));
	ASSERT_OK(pthread_join(t, NULL));
	release_mem_region(m, start, SZ_2M);
}

static void test_checker_catches_leaked_ref(void **state)
{
	struct hetmm_machine *m = *state;
	struct dev_pagemap pgmap;
	uint64_t start;

	ASSERT_OK(request_free_mem_region(m, SZ_2M, &start));
	pgmap_fill(&pgmap, MEMORY_DEVICE_PRIVATE, start, SZ_2M, 0);
	ASSERT_OK(memremap_pages(m, &pgmap));
	atomic_fetch_add(&pgmap.ref, 1);
	assert_int_not_equal(hetmm_check(m), 0);
	assert_non_null(strstr(hetmm_check_report(m), "pgmap"));
	atomic_fetch_sub(&pgmap.ref, 1);
	/* A free device page that claims a mapping. */
	atomic_store(&pfn_to_page(m, (start >> PAGE_SHIFT) + 3)->_mapcount, 0);
	assert_int_not_equal(hetmm_check(m), 0);
	assert_non_null(strstr(hetmm_check_report(m), "free device pfn"));
	atomic_store(&pfn_to_page(m, (start >> PAGE_SHIFT) + 3)->_mapcount, -1);
	ASSERT_OK(hetmm_check(m));
	memunmap_pages(&pgmap);
	release_mem_region(m, start, SZ_2M);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_validation,
						test_machine_setup,
						test_machine_teardown),
		cmocka_unit_test_setup_teardown(test_regions, test_machine_setup,
						test_machine_teardown),
		cmocka_unit_test_setup_teardown(test_page_life_cycle,
						test_machine_setup,
						test_machine_teardown),
		cmocka_unit_test_setup_teardown(test_request_folio_on_demand,
						test_machine_setup,
						test_machine_teardown),
		cmocka_unit_test_setup_teardown(test_other_types,
						test_machine_setup,
						test_machine_teardown),
		cmocka_unit_test_setup_teardown(test_unmap_waits_and_lookup,
						test_machine_setup,
						test_machine_teardown),
		cmocka_unit_test_setup_teardown(test_checker_catches_leaked_ref,
						test_machine_setup,
						test_machine_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
