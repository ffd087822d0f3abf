// SPDX-License-Identifier: MIT
/*
 * huge_zero_test.c - the huge zero folio: read faults in THP-eligible
 * anonymous memory map it with one read-only special PMD leaf (allocated
 * once per machine, shared by every process, never counted); a write or
 * unshare fault puts a fresh THP in its place, or without memory splits
 * it into 4 KiB zero-page PTEs; use_zero_page off allocates THPs on reads;
 * partial munmap/mprotect/DONTNEED/mremap split it; fork copies it; GUP
 * pins it through the slow path (never GUP-fast), long-term read-only
 * pins unshare, FOLL_DUMP refuses it; range outputs; racing first users
 * agree on one folio (this program belongs in the TSan suite).
 */
#include <pthread.h>

#include <hetmm/check.h>
#include <hetmm/gup.h>
#include <hetmm/mm.h>
#include <hetmm/stats.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define SZ_2M (2UL << 20)

struct env {
	struct hetmm_machine *m;
	struct mm_struct *mm;
};

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	e->m = test_machine_new(64, true);
	e->mm = hetmm_process_create(e->m);
	assert_false(IS_ERR(e->mm));
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	if (e->mm)
		hetmm_exit(e->mm);
	test_machine_finish(e->m);
	free(e);
	return 0;
}

static uint64_t stat_now(enum hetmm_stat_item item)
{
	struct hetmm_stats s;

	hetmm_stats_read(&s);
	return s.v[item];
}

/* A 2 MiB aligned, MADV_HUGEPAGE anonymous region of @n huge pages. */
static unsigned long thp_region(struct mm_struct *mm, unsigned long n, int prot)
{
	long a = hetmm_mmap(mm, 0, (n + 1) * SZ_2M, prot, PRIV_ANON, -1, 0);
	unsigned long al;

	assert_true(a > 0);
	al = ALIGN((unsigned long)a, SZ_2M);
	if (al > (unsigned long)a)
		ASSERT_OK(hetmm_munmap(mm, a, al - a));
	ASSERT_OK(hetmm_munmap(mm, al + n * SZ_2M,
			       a + (n + 1) * SZ_2M - (al + n * SZ_2M)));
	ASSERT_OK(hetmm_madvise(mm, al, n * SZ_2M, MADV_HUGEPAGE));
	return al;
}

/* The PMD entry of @addr (zero if there is no PMD). */
static pmd_t pmd_at(struct mm_struct *mm, unsigned long addr)
{
	pmd_t *pmd, e = { 0 };

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	if (pmd)
		e = ptep_get(pmd);
	mmap_read_unlock(mm);
	return e;
}

/* The PTE mapping @addr (none under a leaf or without a table). */
static pte_t lookup(struct mm_struct *mm, unsigned long addr)
{
	pte_t v = __pte(0);
	pmd_t *pmd;

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	if (pmd && pmd_table(ptep_get(pmd))) {
		spinlock_t *ptl;
		pte_t *p = pte_offset_map_lock(mm, pmd, addr, &ptl);

		if (p) {
			v = ptep_get(p);
			spin_unlock(ptl);
		}
	}
	mmap_read_unlock(mm);
	return v;
}

static struct folio *huge_zero(struct hetmm_machine *m)
{
	return atomic_load(&m->huge_zero_folio);
}

/* Is @addr mapped by the huge zero leaf? */
static bool maps_huge_zero(struct mm_struct *mm, unsigned long addr)
{
	pmd_t e = pmd_at(mm, addr);
	struct folio *hz = huge_zero(mm->machine);

	return hz && pmd_leaf(e) && pte_special(e) &&
	       pte_pfn(e) == page_to_pfn(&hz->page);
}

static unsigned char peek(struct mm_struct *mm, unsigned long a)
{
	unsigned char b = 0xee;

	ASSERT_OK(hetmm_cpu_read(mm, 0, a, &b, 1));
	return b;
}

static void poke(struct mm_struct *mm, unsigned long a, unsigned char v)
{
	ASSERT_OK(hetmm_cpu_write(mm, 0, a, &v, 1));
}

/* Every byte at a few offsets of each page of [a, a + len) is zero. */
static void expect_zero(struct mm_struct *mm, unsigned long a,
			unsigned long len)
{
	for (unsigned long o = 0; o < len; o += PAGE_SIZE) {
		assert_int_equal(peek(mm, a + o), 0);
		assert_int_equal(peek(mm, a + o + PAGE_SIZE - 1), 0);
	}
}

/* ------------------------------------------------------------- faults */

static void test_read_fault_maps_huge_zero(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 2, RW), b;
	uint64_t f0 = stat_now(HETMM_STAT_fault_huge_zero_page);
	long used;
	struct folio *hz;

	assert_null(huge_zero(e->m));
	used = hetmm_pages_in_use(e->m);
	assert_int_equal(peek(e->mm, a + 5 * PAGE_SIZE + 17), 0);
	hz = huge_zero(e->m);
	assert_non_null(hz);
	assert_true(is_huge_zero_folio(hz));
	assert_false(is_zero_folio(hz));
	assert_int_equal(folio_order(hz), PMD_ORDER);
	assert_true(maps_huge_zero(e->mm, a));
	assert_false(pte_write(pmd_at(e->mm, a)));
	assert_int_equal(stat_now(HETMM_STAT_fault_huge_zero_page) - f0, 1);
	/* Reserved, like the zero page: not "in use"; only the deposited
	 * table (and the tables above it) were allocated. */
	assert_true(hetmm_pages_in_use(e->m) - used <= 4);
	assert_int_equal(hetmm_pages_reserved(e->m), 1 + HPAGE_PMD_NR);
	expect_zero(e->mm, a, SZ_2M);
	/* The next one, and another process's, share it. */
	assert_int_equal(peek(e->mm, a + SZ_2M), 0);
	assert_true(maps_huge_zero(e->mm, a + SZ_2M));
	{
		struct mm_struct *other = hetmm_process_create(e->m);

		assert_false(IS_ERR(other));
		b = thp_region(other, 1, RW);
		assert_int_equal(peek(other, b), 0);
		assert_true(maps_huge_zero(other, b));
		assert_ptr_equal(huge_zero(e->m), hz);
		ASSERT_OK(hetmm_check(e->m));
		hetmm_exit(other);
	}
	/* Not counted: no mapcount, one reference (its own). */
	assert_int_equal(folio_mapcount(hz), 0);
	assert_int_equal(folio_ref_count(hz), 1);
	ASSERT_OK(hetmm_check(e->m));
	/* MADV_POPULATE_READ maps it too; zapping it frees only tables. */
	ASSERT_OK(hetmm_munmap(e->mm, a, 2 * SZ_2M));
	a = thp_region(e->mm, 1, RW);
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_POPULATE_READ));
	assert_true(maps_huge_zero(e->mm, a));
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_DONTNEED));
	assert_true(pte_none(pmd_at(e->mm, a)));
	assert_int_equal(folio_ref_count(hz), 1);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_write_replaces_with_thp(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1, RW);
	uint64_t t0 = stat_now(HETMM_STAT_thp_fault_alloc);
	struct folio *f;
	pmd_t p;

	assert_int_equal(peek(e->mm, a), 0);
	assert_true(maps_huge_zero(e->mm, a));
	poke(e->mm, a + 100 * PAGE_SIZE + 3, 0x42);
	assert_int_equal(stat_now(HETMM_STAT_thp_fault_alloc) - t0, 1);
	p = pmd_at(e->mm, a);
	assert_true(pmd_leaf(p));
	assert_false(pte_special(p));
	assert_true(pte_write(p));
	f = page_folio(pfn_to_page(e->m, pte_pfn(p)));
	assert_false(is_huge_zero_folio(f));
	assert_true(folio_test_anon(f));
	assert_true(PageAnonExclusive(&f->page));
	assert_int_equal(folio_order(f), PMD_ORDER);
	assert_int_equal(peek(e->mm, a + 100 * PAGE_SIZE + 3), 0x42);
	assert_int_equal(peek(e->mm, a + 100 * PAGE_SIZE + 2), 0);
	expect_zero(e->mm, a, 100 * PAGE_SIZE);
	/* The huge zero folio itself stays zero. */
	assert_int_equal(folio_ref_count(huge_zero(e->m)), 1);
	assert_int_equal(((unsigned char *)page_address(
				 folio_page(huge_zero(e->m), 100)))[3],
			 0);
	ASSERT_OK(hetmm_check(e->m));
}

/* No 2 MiB folio for the write: 4 KiB zero-page PTEs, one page copied. */
static void test_write_fallback_splits(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1, RW);
	uint64_t s0 = stat_now(HETMM_STAT_thp_split_pmd);
	pte_t z;

	assert_int_equal(peek(e->mm, a), 0);
	assert_true(maps_huge_zero(e->mm, a));
	/* The first allocation (the THP) fails; the rest succeed. */
	ASSERT_OK(hetmm_fault_set(&e->m->faults, HETMM_FAULT_alloc_pages,
				  FAULT_NTH, 1, 0));
	poke(e->mm, a + 7 * PAGE_SIZE, 0x99);
	hetmm_fault_reset(&e->m->faults);
	assert_int_equal(stat_now(HETMM_STAT_thp_split_pmd) - s0, 1);
	assert_true(pmd_table(pmd_at(e->mm, a)));
	assert_int_equal(peek(e->mm, a + 7 * PAGE_SIZE), 0x99);
	z = lookup(e->mm, a + 6 * PAGE_SIZE);
	assert_true(pte_special(z));
	assert_int_equal(pte_pfn(z), page_to_pfn(e->m->zero_page));
	assert_false(pte_write(z));
	assert_false(pte_special(lookup(e->mm, a + 7 * PAGE_SIZE)));
	expect_zero(e->mm, a, 7 * PAGE_SIZE);
	ASSERT_OK(hetmm_check(e->m));
}

/* The huge zero folio cannot be allocated: 4 KiB zero pages. */
static void test_alloc_failure_falls_back(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 2, RW);
	uint64_t f0 = stat_now(HETMM_STAT_thp_zero_page_alloc_failed);
	pte_t z;

	/* Tables down to the PMD first (a THP next door), so that the huge
	 * zero folio is the next allocation. */
	poke(e->mm, a + SZ_2M, 1);
	ASSERT_OK(hetmm_fault_set(&e->m->faults, HETMM_FAULT_alloc_pages,
				  FAULT_NTH, 1, 0));
	assert_int_equal(peek(e->mm, a + PAGE_SIZE), 0);
	hetmm_fault_reset(&e->m->faults);
	assert_int_equal(stat_now(HETMM_STAT_thp_zero_page_alloc_failed) - f0,
			 1);
	assert_null(huge_zero(e->m));
	z = lookup(e->mm, a + PAGE_SIZE);
	assert_true(pte_special(z));
	assert_int_equal(pte_pfn(z), page_to_pfn(e->m->zero_page));
	ASSERT_OK(hetmm_check(e->m));
	/* The next read fault of another 2 MiB gets it. */
	ASSERT_OK(hetmm_munmap(e->mm, a, 2 * SZ_2M));
	a = thp_region(e->mm, 1, RW);
	assert_int_equal(peek(e->mm, a), 0);
	assert_true(maps_huge_zero(e->mm, a));
	ASSERT_OK(hetmm_check(e->m));
}

static void test_use_zero_page_off(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1, RW);
	uint64_t t0 = stat_now(HETMM_STAT_thp_fault_alloc);
	pmd_t p;

	ASSERT_OK(hetmm_thp_set_use_zero_page(e->m, 0));
	assert_int_equal(peek(e->mm, a), 0);
	p = pmd_at(e->mm, a);
	assert_true(pmd_leaf(p));
	assert_false(pte_special(p));
	assert_int_equal(stat_now(HETMM_STAT_thp_fault_alloc) - t0, 1);
	assert_null(huge_zero(e->m));
	ASSERT_OK(hetmm_thp_set_use_zero_page(e->m, 1));
	assert_int_equal(hetmm_thp_set_use_zero_page(NULL, 1), -EINVAL);
	/* Not in THP-ineligible memory: the 4 KiB zero page. */
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_NOHUGEPAGE));
	ASSERT_OK(hetmm_munmap(e->mm, a, SZ_2M));
	assert_int_equal(
		hetmm_mmap(e->mm, a, SZ_2M, RW, PRIV_ANON | MAP_FIXED, -1, 0),
		(long)a);
	assert_int_equal(peek(e->mm, a), 0);
	assert_true(pmd_table(pmd_at(e->mm, a)));
	assert_null(huge_zero(e->m));
	ASSERT_OK(hetmm_check(e->m));
}

/* -------------------------------------------------- address-space ops */

static void test_partial_ops_split(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 4, RW);
	long r;

	for (int i = 0; i < 4; i++)
		assert_int_equal(peek(e->mm, a + i * SZ_2M), 0);
	/* Partial munmap: the rest becomes zero-page PTEs. */
	ASSERT_OK(hetmm_munmap(e->mm, a + PAGE_SIZE, PAGE_SIZE));
	assert_true(pmd_table(pmd_at(e->mm, a)));
	assert_int_equal(peek(e->mm, a), 0);
	assert_true(pte_special(lookup(e->mm, a + 2 * PAGE_SIZE)));
	/* Partial mprotect. */
	ASSERT_OK(hetmm_mprotect(e->mm, a + SZ_2M, PAGE_SIZE, PROT_READ));
	assert_true(pmd_table(pmd_at(e->mm, a + SZ_2M)));
	assert_int_equal(peek(e->mm, a + SZ_2M + PAGE_SIZE), 0);
	/* Whole mprotect: stays one read-only leaf, also after RW again. */
	ASSERT_OK(hetmm_mprotect(e->mm, a + 2 * SZ_2M, SZ_2M, PROT_READ));
	assert_true(maps_huge_zero(e->mm, a + 2 * SZ_2M));
	ASSERT_OK(hetmm_mprotect(e->mm, a + 2 * SZ_2M, SZ_2M, RW));
	assert_true(maps_huge_zero(e->mm, a + 2 * SZ_2M));
	assert_false(pte_write(pmd_at(e->mm, a + 2 * SZ_2M)));
	ASSERT_OK(hetmm_mprotect(e->mm, a + 2 * SZ_2M, SZ_2M, PROT_NONE));
	assert_true(pte_protnone(pmd_at(e->mm, a + 2 * SZ_2M)));
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_mprotect(e->mm, a + 2 * SZ_2M, SZ_2M, RW));
	poke(e->mm, a + 2 * SZ_2M + 9, 1);
	assert_false(maps_huge_zero(e->mm, a + 2 * SZ_2M));
	/* Partial DONTNEED. */
	ASSERT_OK(
		hetmm_madvise(e->mm, a + 3 * SZ_2M, PAGE_SIZE, MADV_DONTNEED));
	assert_true(pmd_table(pmd_at(e->mm, a + 3 * SZ_2M)));
	assert_true(pte_none(lookup(e->mm, a + 3 * SZ_2M)));
	assert_true(pte_special(lookup(e->mm, a + 3 * SZ_2M + PAGE_SIZE)));
	expect_zero(e->mm, a + 3 * SZ_2M, SZ_2M);
	ASSERT_OK(hetmm_check(e->m));
	/* mremap moves it (split) and keeps reading zeroes. */
	ASSERT_OK(hetmm_munmap(e->mm, a, 3 * SZ_2M));
	a = thp_region(e->mm, 1, RW);
	assert_int_equal(peek(e->mm, a), 0);
	r = hetmm_mremap(e->mm, a, SZ_2M, 2 * SZ_2M, MREMAP_MAYMOVE, 0);
	assert_true(r > 0);
	expect_zero(e->mm, (unsigned long)r, SZ_2M);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_fork(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1, RW);
	struct mm_struct *child;

	assert_int_equal(peek(e->mm, a), 0);
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	assert_true(maps_huge_zero(child, a));
	ASSERT_OK(hetmm_check(e->m));
	poke(child, a + 5, 0x11);
	poke(e->mm, a + 6, 0x22);
	assert_int_equal(peek(child, a + 5), 0x11);
	assert_int_equal(peek(child, a + 6), 0);
	assert_int_equal(peek(e->mm, a + 5), 0);
	assert_int_equal(peek(e->mm, a + 6), 0x22);
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(child);
	assert_int_equal(folio_ref_count(huge_zero(e->m)), 1);
	ASSERT_OK(hetmm_check(e->m));
}

/* ---------------------------------------------------------------- GUP */

static void test_gup(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 2, RW);
	struct page *pages[4];
	struct folio *hz, *f;
	int ref;

	assert_int_equal(peek(e->mm, a), 0);
	assert_int_equal(peek(e->mm, a + SZ_2M), 0);
	hz = huge_zero(e->m);
	ref = folio_ref_count(hz);
	/* GUP-fast refuses the special leaf; the slow path pins the folio
	 * itself (a large folio: refcount and pincount). */
	assert_int_equal(
		pin_user_pages_fast(e->mm, a + 2 * PAGE_SIZE, 2, 0, pages), 2);
	assert_ptr_equal(pages[0], folio_page(hz, 2));
	assert_ptr_equal(pages[1], folio_page(hz, 3));
	assert_int_equal(folio_pincount(hz), 2);
	assert_int_equal(folio_ref_count(hz), ref + 2);
	assert_true(folio_maybe_dma_pinned(hz));
	ASSERT_OK(hetmm_check(e->m));
	unpin_user_pages(pages, 2);
	assert_int_equal(folio_pincount(hz), 0);
	assert_int_equal(folio_ref_count(hz), ref);
	assert_true(maps_huge_zero(e->mm, a));
	/* get_user_pages: a reference. */
	mmap_read_lock(e->mm);
	assert_int_equal(get_user_pages(e->mm, a, 1, 0, pages), 1);
	mmap_read_unlock(e->mm);
	assert_ptr_equal(pages[0], &hz->page);
	put_page(pages[0]);
	/* FOLL_DUMP: no zero pages in a dump. */
	mmap_read_lock(e->mm);
	assert_int_equal(get_user_pages(e->mm, a, 1, FOLL_DUMP, pages),
			 -EFAULT);
	mmap_read_unlock(e->mm);
	/* A long-term R/O pin of a COW mapping unshares: a new THP. */
	assert_int_equal(
		pin_user_pages_fast(e->mm, a + SZ_2M, 1, FOLL_LONGTERM, pages),
		1);
	f = page_folio(pages[0]);
	assert_false(is_huge_zero_folio(f));
	assert_true(folio_test_anon(f));
	assert_true(PageAnonExclusive(&f->page));
	assert_false(maps_huge_zero(e->mm, a + SZ_2M));
	poke(e->mm, a + SZ_2M + 1, 0x5a);
	assert_int_equal(((unsigned char *)page_address(pages[0]))[1], 0x5a);
	unpin_user_pages(pages, 1);
	/* A write pin: the same. */
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1, FOLL_WRITE, pages),
			 1);
	assert_false(is_huge_zero_folio(page_folio(pages[0])));
	unpin_user_pages(pages, 1);
	assert_int_equal(folio_ref_count(hz), ref);
	ASSERT_OK(hetmm_check(e->m));
}

/* Range outputs over the huge zero leaf: through the slow path. */
static void test_ranges(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1, RW);
	void *buf[2] = { aligned_alloc(4096, GUP_RANGE_BUF_SIZE),
			 aligned_alloc(4096, GUP_RANGE_BUF_SIZE) };
	/* Two output pages: the slow path reserves room for 512 runs. */
	struct gup_range_output out = { .bufs = buf,
					.nr_bufs = 2,
					.format = GUP_RANGE_PHYS };
	struct phys_vec *v = buf[0];
	struct folio *hz;

	assert_non_null(buf[0]);
	assert_non_null(buf[1]);
	assert_int_equal(peek(e->mm, a), 0);
	hz = huge_zero(e->m);
	assert_int_equal(pin_user_pages_ranges(e->mm, a, HPAGE_PMD_NR, 0, &out),
			 HPAGE_PMD_NR);
	assert_int_equal(out.nr_entries, 1);
	assert_int_equal(v[0].paddr, (uint64_t)page_to_pfn(&hz->page)
					     << PAGE_SHIFT);
	assert_int_equal(v[0].len, SZ_2M);
	assert_int_equal(folio_pincount(hz), HPAGE_PMD_NR);
	unpin_user_ranges(&out, false);
	assert_int_equal(folio_pincount(hz), 0);
	assert_int_equal(folio_ref_count(hz), 1);
	ASSERT_OK(hetmm_check(e->m));
	free(buf[0]);
	free(buf[1]);
}

/* ---------------------------------------------------------- concurrency */

struct racer {
	struct mm_struct *mm;
	unsigned long a;
	pthread_barrier_t *go;
	struct folio *seen;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	unsigned char b = 1;
	pmd_t *pmd;

	pthread_barrier_wait(r->go);
	if (hetmm_cpu_read(r->mm, 0, r->a, &b, 1) || b)
		return NULL;
	mmap_read_lock(r->mm);
	pmd = mm_find_pmd(r->mm, r->a);
	if (pmd && pmd_leaf(ptep_get(pmd)))
		r->seen = page_folio(
			pfn_to_page(r->mm->machine, pte_pfn(ptep_get(pmd))));
	mmap_read_unlock(r->mm);
	return NULL;
}

/* Two processes' first read faults race to allocate it: one folio. */
static void test_first_use_race(void **state)
{
	struct env *e = *state;
	struct mm_struct *other = hetmm_process_create(e->m);
	pthread_barrier_t go;
	struct racer r[2];
	pthread_t t[2];

	assert_false(IS_ERR(other));
	pthread_barrier_init(&go, NULL, 2);
	r[0] = (struct racer){ .mm = e->mm, .go = &go };
	r[1] = (struct racer){ .mm = other, .go = &go };
	r[0].a = thp_region(e->mm, 1, RW);
	r[1].a = thp_region(other, 1, RW);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, racer_main, &r[i]),
				 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	pthread_barrier_destroy(&go);
	assert_non_null(r[0].seen);
	assert_ptr_equal(r[0].seen, r[1].seen);
	assert_ptr_equal(r[0].seen, huge_zero(e->m));
	assert_int_equal(hetmm_pages_reserved(e->m), 1 + HPAGE_PMD_NR);
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(other);
	ASSERT_OK(hetmm_check(e->m));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_fault_maps_huge_zero,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_write_replaces_with_thp,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_write_fallback_splits,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_alloc_failure_falls_back,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_use_zero_page_off,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_partial_ops_split,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_fork, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_gup, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_ranges, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_first_use_race, env_setup,
						env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
