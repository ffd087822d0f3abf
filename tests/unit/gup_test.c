// SPDX-License-Identifier: MIT
/*
 * gup_test.c - the gup layer call by call: argument and flag rules with
 * the kernel's return values, VMA checks, pin accounting (bias, pincount,
 * zero page, MMF_HAS_PINNED, counters, checker), the unpin family, the
 * fast path against the slow path, FOLL_* behaviours (WRITE, FORCE,
 * NOFAULT, NOWAIT, HWPOISON, DUMP, ANON, SPLIT_PMD, PCI_P2PDMA, LONGTERM
 * with device and movable memory), the range outputs, pins held across
 * fork/mremap/munmap/mprotect/migration, a randomized run against a
 * flat-memory oracle, and concurrent pin/unpin vs fork/write/unmap tests
 * (test_concurrent_pin_vs_fork with page arrays,
 * test_concurrent_ranges_thp_vs_fork with range outputs over THPs: this
 * program belongs in the TSan suite).
 */
#include <pthread.h>

#include <hetmm/check.h>
#include <hetmm/fs.h>
#include <hetmm/gup.h>
#include <hetmm/memremap.h>
#include <hetmm/migrate.h>
#include <hetmm/mm.h>
#include <hetmm/stats.h>
#include <hetmm/tlb.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define SZ_2M (2UL << 20)
#define NPG 64

struct env {
	struct hetmm_machine *m;
	struct mm_struct *mm;
};

static int env_setup_mb(void **state, uint64_t ram_mb, uint64_t movable_mb)
{
	struct env *e = calloc(1, sizeof(*e));
	struct hetmm_machine_config cfg;

	assert_non_null(e);
	hetmm_machine_config_default(&cfg);
	cfg.ram_size = ram_mb << 20;
	cfg.movable_size = movable_mb << 20;
	cfg.carry_data = true;
	e->m = hetmm_machine_create(&cfg);
	assert_false(IS_ERR(e->m));
	e->mm = hetmm_process_create(e->m);
	assert_false(IS_ERR(e->mm));
	*state = e;
	return 0;
}

static int env_setup(void **state)
{
	return env_setup_mb(state, 64, 0);
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

/* ------------------------------------------------------------- helpers */

static unsigned long map_anon(struct mm_struct *mm, unsigned long npages,
			      int prot)
{
	long a = hetmm_mmap(mm, 0, npages * PAGE_SIZE, prot, PRIV_ANON, -1, 0);

	assert_true(a > 0);
	return (unsigned long)a;
}

/* A 2 MiB aligned MADV_HUGEPAGE anonymous region of @n huge pages. */
static unsigned long thp_region(struct mm_struct *mm, unsigned long n)
{
	long a = hetmm_mmap(mm, 0, (n + 1) * SZ_2M, RW, PRIV_ANON, -1, 0);
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

/* Write one byte into each of @n pages (faults them in writable). */
static void touch(struct mm_struct *mm, unsigned long a, unsigned long n,
		  unsigned char v)
{
	for (unsigned long i = 0; i < n; i++) {
		unsigned char b = (unsigned char)(v + i);

		ASSERT_OK(hetmm_cpu_write(mm, 0, a + i * PAGE_SIZE, &b, 1));
	}
}

static unsigned char peek(struct mm_struct *mm, unsigned long a)
{
	unsigned char b;

	ASSERT_OK(hetmm_cpu_read(mm, 0, a, &b, 1));
	return b;
}

static void poke(struct mm_struct *mm, unsigned long a, unsigned char v)
{
	ASSERT_OK(hetmm_cpu_write(mm, 0, a, &v, 1));
}

/* hetmm_cpu_read's result for one byte at @a. */
static int peek_err(struct mm_struct *mm, unsigned long a)
{
	unsigned char b;

	return hetmm_cpu_read(mm, 0, a, &b, 1);
}

/* The byte at offset @off of a pinned page, read "by DMA". */
static unsigned char dma_read(struct page *page, unsigned long off)
{
	return ((unsigned char *)page_address(page))[off];
}

static void dma_write(struct page *page, unsigned long off, unsigned char v)
{
	((unsigned char *)page_address(page))[off] = v;
}

/* The PTE-equivalent entry mapping @addr (PMD leaves included). */
static pte_t lookup(struct mm_struct *mm, unsigned long addr)
{
	pmd_t *pmd;
	pte_t v = __pte(0);

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	if (pmd) {
		pmd_t e = ptep_get(pmd);

		if (pmd_leaf(e)) {
			v = __pte((pte_val(e) & ~(_PAGE_PSE | _PAGE_PFN_MASK)) |
				  ((uint64_t)(pte_pfn(e) + pte_index(addr))
				   << _PAGE_PFN_SHIFT));
		} else if (pmd_table(e)) {
			spinlock_t *ptl;
			pte_t *p = pte_offset_map_lock(mm, pmd, addr, &ptl);

			if (p) {
				v = ptep_get(p);
				spin_unlock(ptl);
			}
		}
	}
	mmap_read_unlock(mm);
	return v;
}

/* The page mapped at @addr now, or NULL. */
static struct page *mapped_page(struct mm_struct *mm, unsigned long addr)
{
	pte_t e = lookup(mm, addr);

	if (!pte_present(e))
		return NULL;
	return pfn_to_page(mm->machine, pte_pfn(e));
}

static bool pmd_is_leaf(struct mm_struct *mm, unsigned long addr)
{
	pmd_t *pmd;
	bool leaf;

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	leaf = pmd && pmd_leaf(ptep_get(pmd));
	mmap_read_unlock(mm);
	return leaf;
}

static long gup_locked(struct mm_struct *mm, unsigned long a, unsigned long n,
		       unsigned int flags, struct page **pages)
{
	long r;

	mmap_read_lock(mm);
	r = get_user_pages(mm, a, n, flags, pages);
	mmap_read_unlock(mm);
	return r;
}

static long pup_locked(struct mm_struct *mm, unsigned long a, unsigned long n,
		       unsigned int flags, struct page **pages)
{
	long r;

	mmap_read_lock(mm);
	r = pin_user_pages(mm, a, n, flags, pages);
	mmap_read_unlock(mm);
	return r;
}

static void put_pages(struct page **pages, long n)
{
	for (long i = 0; i < n; i++)
		put_page(pages[i]);
}

static bool mm_has_pinned(struct mm_struct *mm)
{
	return atomic_load(&mm->flags) & BIT(MMF_HAS_PINNED);
}

static long pins_outstanding(struct hetmm_machine *m)
{
	unsigned long a, r;

	gup_pin_counts(m, &a, &r);
	return (long)(a - r);
}

/* ------------------------------------------------------ argument rules */

static void test_args_invalid(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW);
	struct page *pages[4];
	int locked;

	touch(e->mm, a, 4, 1);
	/* Internal flags: -EINVAL from get_*, 0 from pin_* (but -EINVAL
	 * from pin_user_pages_fast). */
	static const unsigned int internal[] = {
		FOLL_TOUCH,	FOLL_TRIED,	 FOLL_REMOTE,	     FOLL_PIN,
		FOLL_FAST_ONLY, FOLL_UNLOCKABLE, FOLL_MADV_POPULATE,
	};
	for (size_t i = 0; i < ARRAY_SIZE(internal); i++) {
		unsigned int f = internal[i];

		assert_int_equal(gup_locked(e->mm, a, 1, f, pages), -EINVAL);
		assert_int_equal(pup_locked(e->mm, a, 1, f, pages), 0);
		assert_int_equal(get_user_pages_fast(e->mm, a, 1, f, pages),
				 -EINVAL);
		assert_int_equal(pin_user_pages_fast(e->mm, a, 1, f, pages),
				 -EINVAL);
		assert_int_equal(get_user_pages_unlocked(e->mm, a, 1, pages, f),
				 -EINVAL);
		assert_int_equal(pin_user_pages_unlocked(e->mm, a, 1, pages, f),
				 0);
	}
	/* FOLL_GET passed to a pin call. */
	assert_int_equal(pup_locked(e->mm, a, 1, FOLL_GET, pages), 0);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1, FOLL_GET, pages),
			 -EINVAL);
	assert_int_equal(pin_user_pages_unlocked(e->mm, a, 1, pages, FOLL_GET),
			 0);
	/* FOLL_LONGTERM without FOLL_PIN. */
	assert_int_equal(gup_locked(e->mm, a, 1, FOLL_LONGTERM, pages),
			 -EINVAL);
	assert_int_equal(get_user_pages_fast(e->mm, a, 1, FOLL_LONGTERM, pages),
			 -EINVAL);
	assert_int_equal(
		get_user_pages_fast_only(e->mm, a, 1, FOLL_LONGTERM, pages),
		-EINVAL);
	/* No pages array for a pin (a get without one only faults in). */
	assert_int_equal(pup_locked(e->mm, a, 1, 0, NULL), 0);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1, 0, NULL), -EINVAL);
	assert_int_equal(get_user_pages_fast(e->mm, a, 1, 0, NULL), -EINVAL);
	assert_int_equal(gup_locked(e->mm, a, 2, FOLL_GET, NULL), -EINVAL);
	assert_int_equal(gup_locked(e->mm, a, 2, 0, NULL), 2);
	/* LONGTERM with PCI_P2PDMA. */
	assert_int_equal(
		pup_locked(e->mm, a, 1, FOLL_LONGTERM | FOLL_PCI_P2PDMA, pages),
		0);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1,
					     FOLL_LONGTERM | FOLL_PCI_P2PDMA,
					     pages),
			 -EINVAL);
	/* *locked must be 1 at the interface. */
	mmap_read_lock(e->mm);
	locked = 0;
	assert_int_equal(get_user_pages_remote(e->mm, a, 1, 0, pages, &locked),
			 -EINVAL);
	assert_int_equal(pin_user_pages_remote(e->mm, a, 1, 0, pages, &locked),
			 0);
	locked = 1;
	assert_int_equal(pin_user_pages_remote(e->mm, a, 1, 0, pages, &locked),
			 1);
	assert_int_equal(locked, 1);
	mmap_read_unlock(e->mm);
	unpin_user_page(pages[0]);
	/* The fast paths accept only their mask. */
	static const unsigned int not_fast[] = {
		FOLL_NOWAIT,	FOLL_ANON,     FOLL_DUMP,
		FOLL_SPLIT_PMD, FOLL_HWPOISON, FOLL_INTERRUPTIBLE,
	};
	for (size_t i = 0; i < ARRAY_SIZE(not_fast); i++) {
		unsigned int f = not_fast[i];

		assert_int_equal(get_user_pages_fast(e->mm, a, 1, f, pages),
				 -EINVAL);
		assert_int_equal(pin_user_pages_fast(e->mm, a, 1, f, pages),
				 -EINVAL);
		/* ... which the slow entry points take. */
		assert_int_equal(gup_locked(e->mm, a, 1, f, pages), 1);
		put_page(pages[0]);
	}
	assert_int_equal(pins_outstanding(e->m), 0);
}

static void test_fast_range_checks(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW);
	struct page *pages[4];

	touch(e->mm, a, 4, 1);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 0, 0, pages), 0);
	assert_int_equal(get_user_pages_fast(e->mm, a, 0, 0, pages), 0);
	/* The end beyond the user address space. */
	assert_int_equal(
		pin_user_pages_fast(e->mm, TASK_SIZE - PAGE_SIZE, 2, 0, pages),
		-EFAULT);
	/* A negative count wraps the range (as the kernel's int -> long). */
	assert_int_equal(pin_user_pages_fast(e->mm, a, -1, 0, pages),
			 -EOVERFLOW);
	/* An unaligned start is rounded down. */
	assert_int_equal(pin_user_pages_fast(e->mm, a + 123, 1, 0, pages), 1);
	assert_ptr_equal(pages[0], mapped_page(e->mm, a));
	unpin_user_page(pages[0]);
	/* The slow path takes nr_pages == 0 as 0. */
	assert_int_equal(pup_locked(e->mm, a, 0, 0, pages), 0);
	assert_int_equal(gup_locked(e->mm, a, 0, 0, pages), 0);
	/* A count running past the end of the address space: the walk
	 * stops at the end of the mapping (as the kernel: no wrap check). */
	assert_int_equal(pup_locked(e->mm, a, ~0UL >> PAGE_SHIFT, 0, pages), 4);
	unpin_user_pages(pages, 4);
	assert_int_equal(gup_locked(e->mm, a + 2 * PAGE_SIZE, ~0UL, 0, pages),
			 2);
	put_pages(pages, 2);
}

/* ------------------------------------------------------------ accounting */

static void test_get_and_pin_small(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 8, RW);
	struct page *pages[8], *p;
	struct folio *f;
	int base;

	touch(e->mm, a, 8, 10);
	p = mapped_page(e->mm, a);
	f = page_folio(p);
	base = folio_ref_count(f);
	assert_false(mm_has_pinned(e->mm));

	/* GET: +1 per page, not "maybe pinned". */
	assert_int_equal(gup_locked(e->mm, a, 8, 0, pages), 8);
	assert_ptr_equal(pages[0], p);
	assert_int_equal(folio_ref_count(f), base + 1);
	assert_false(folio_maybe_dma_pinned(f));
	assert_false(mm_has_pinned(e->mm));
	put_pages(pages, 8);
	assert_int_equal(folio_ref_count(f), base);

	/* PIN: +1024 on a small folio; MMF_HAS_PINNED; the hint. */
	assert_int_equal(pup_locked(e->mm, a, 8, 0, pages), 8);
	assert_int_equal(folio_ref_count(f), base + (int)GUP_PIN_COUNTING_BIAS);
	assert_true(folio_maybe_dma_pinned(f));
	assert_true(folio_test_flag(f, PG_has_pinned_hint));
	assert_true(mm_has_pinned(e->mm));
	assert_int_equal(pins_outstanding(e->m), 8);
	ASSERT_OK(hetmm_check(e->m));
	for (int i = 0; i < 8; i++)
		assert_ptr_equal(pages[i],
				 mapped_page(e->mm, a + i * PAGE_SIZE));
	unpin_user_pages(pages, 8);
	assert_int_equal(folio_ref_count(f), base);
	assert_false(folio_maybe_dma_pinned(f));
	assert_int_equal(pins_outstanding(e->m), 0);
	/* MMF_HAS_PINNED is never cleared. */
	assert_true(mm_has_pinned(e->mm));

	/* Fast variants account the same. */
	assert_int_equal(pin_user_pages_fast(e->mm, a, 8, FOLL_WRITE, pages),
			 8);
	assert_int_equal(folio_ref_count(f), base + (int)GUP_PIN_COUNTING_BIAS);
	unpin_user_pages(pages, 8);
	assert_int_equal(get_user_pages_fast(e->mm, a, 8, 0, pages), 8);
	assert_int_equal(folio_ref_count(f), base + 1);
	put_pages(pages, 8);
	assert_int_equal(get_user_pages_fast_only(e->mm, a, 8, 0, pages), 8);
	put_pages(pages, 8);
	assert_int_equal(pins_outstanding(e->m), 0);
}

static void test_zero_page(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW);
	struct page *zero = e->m->zero_page, *pages[4];
	int zref = page_ref_count(zero);
	unsigned long acq, rel;

	/* A read maps the zero page. */
	assert_int_equal(peek(e->mm, a), 0);
	assert_ptr_equal(mapped_page(e->mm, a), zero);
	/* GET references it... */
	assert_int_equal(gup_locked(e->mm, a, 1, 0, pages), 1);
	assert_ptr_equal(pages[0], zero);
	assert_int_equal(page_ref_count(zero), zref + 1);
	put_page(pages[0]);
	/* ...a short-term R/O PIN returns it without counting. */
	gup_pin_counts(e->m, &acq, &rel);
	assert_int_equal(pup_locked(e->mm, a, 1, 0, pages), 1);
	assert_ptr_equal(pages[0], zero);
	assert_int_equal(page_ref_count(zero), zref);
	unpin_user_page(pages[0]); /* a no-op */
	assert_int_equal(page_ref_count(zero), zref);
	/* GUP-fast leaves the (special) zero page to the slow path. */
	assert_int_equal(get_user_pages_fast_only(e->mm, a, 1, 0, pages), 0);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1, 0, pages), 1);
	assert_ptr_equal(pages[0], zero);
	unpin_user_pages(pages, 1);
	assert_int_equal(page_ref_count(zero), zref);
	gup_pin_counts(e->m, &acq, &rel);
	assert_int_equal(acq - rel, 0);
	/* A R/O LONGTERM pin unshares it: a fresh zeroed exclusive page,
	 * mapped read-only. */
	assert_int_equal(pup_locked(e->mm, a, 1, FOLL_LONGTERM, pages), 1);
	assert_ptr_not_equal(pages[0], zero);
	assert_ptr_equal(mapped_page(e->mm, a), pages[0]);
	assert_true(PageAnonExclusive(pages[0]));
	assert_false(pte_write(lookup(e->mm, a)));
	assert_int_equal(dma_read(pages[0], 0), 0);
	/* A write now reuses the pinned page: the pin sees it. */
	poke(e->mm, a, 77);
	assert_int_equal(dma_read(pages[0], 0), 77);
	assert_ptr_equal(mapped_page(e->mm, a), pages[0]);
	unpin_user_page(pages[0]);
	/* FOLL_WRITE never returns the zero page. */
	assert_int_equal(peek(e->mm, a + PAGE_SIZE), 0);
	assert_int_equal(pup_locked(e->mm, a + PAGE_SIZE, 1, FOLL_WRITE, pages),
			 1);
	assert_ptr_not_equal(pages[0], zero);
	unpin_user_page(pages[0]);
}

static void test_thp_pincount(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct page **pages = calloc(HPAGE_PMD_NR, sizeof(*pages));
	struct folio *f;
	int base;

	assert_non_null(pages);
	touch(e->mm, a, 1, 1);
	assert_true(pmd_is_leaf(e->mm, a));
	f = page_folio(mapped_page(e->mm, a));
	assert_true(folio_test_large(f));
	base = folio_ref_count(f);

	/* Slow path: 512 pins in one grab, pages filled per subpage. */
	assert_int_equal(pup_locked(e->mm, a, HPAGE_PMD_NR, FOLL_WRITE, pages),
			 HPAGE_PMD_NR);
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++)
		assert_ptr_equal(pages[i], folio_page(f, i));
	assert_int_equal(folio_pincount(f), HPAGE_PMD_NR);
	assert_int_equal(folio_ref_count(f), base + (int)HPAGE_PMD_NR);
	assert_true(folio_maybe_dma_pinned(f));
	ASSERT_OK(hetmm_check(e->m));
	/* Released page by page. */
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++)
		unpin_user_page(pages[i]);
	assert_int_equal(folio_pincount(f), 0);
	assert_int_equal(folio_ref_count(f), base);
	assert_false(folio_maybe_dma_pinned(f));

	/* Fast path, from the middle, across the end of the folio. */
	assert_int_equal(
		pin_user_pages_fast(e->mm, a + 100 * PAGE_SIZE, 12, 0, pages),
		12);
	assert_ptr_equal(pages[0], folio_page(f, 100));
	assert_int_equal(folio_pincount(f), 12);
	unpin_user_pages(pages, 12);
	assert_int_equal(folio_pincount(f), 0);
	/* GET on a THP: references only. */
	assert_int_equal(get_user_pages_fast(e->mm, a, 16, 0, pages), 16);
	assert_int_equal(folio_pincount(f), 0);
	assert_int_equal(folio_ref_count(f), base + 16);
	put_pages(pages, 16);
	assert_int_equal(pins_outstanding(e->m), 0);
	free(pages);
}

static void test_hugetlb_pincount(void **state)
{
	struct env *e = *state;
	long a =
		hetmm_mmap(e->mm, 0, SZ_2M, RW, PRIV_ANON | MAP_HUGETLB, -1, 0);
	struct page *pages[8];
	struct folio *f;
	int base;

	assert_true(a > 0);
	touch(e->mm, (unsigned long)a, 1, 3);
	f = page_folio(mapped_page(e->mm, (unsigned long)a));
	assert_true(folio_test_hugetlb(f));
	base = folio_ref_count(f);
	assert_int_equal(
		pin_user_pages_fast(e->mm,
				    (unsigned long)a + SZ_2M - 4 * PAGE_SIZE, 4,
				    FOLL_WRITE | FOLL_LONGTERM, pages),
		4);
	assert_ptr_equal(pages[3], folio_page(f, HPAGE_PMD_NR - 1));
	assert_int_equal(folio_pincount(f), 4);
	assert_int_equal(folio_ref_count(f), base + 4);
	unpin_user_pages_dirty_lock(pages, 4, true);
	assert_int_equal(folio_pincount(f), 0);
	assert_true(folio_test_flag(f, PG_dirty));
	/* FOLL_SPLIT_PMD is refused on hugetlb. */
	assert_int_equal(
		gup_locked(e->mm, (unsigned long)a, 1, FOLL_SPLIT_PMD, pages),
		-EOPNOTSUPP);
}

/* ------------------------------------------------------------ VMA rules */

static void test_vma_checks(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 6, RW);
	unsigned long ro = map_anon(e->mm, 2, PROT_READ);
	struct vm_area_struct *vma;
	struct page *pages[8];
	int fd;
	long f, h;

	touch(e->mm, a, 6, 1);
	/* No VMA at all. */
	assert_int_equal(pup_locked(e->mm, 0x1000, 1, 0, pages), -EFAULT);
	assert_int_equal(gup_locked(e->mm, 0x1000, 1, 0, pages), -EFAULT);
	assert_int_equal(pin_user_pages_fast(e->mm, 0x1000, 1, 0, pages),
			 -EFAULT);
	/* A hole in the middle: the part before it. */
	ASSERT_OK(hetmm_munmap(e->mm, a + 3 * PAGE_SIZE, PAGE_SIZE));
	assert_int_equal(pup_locked(e->mm, a, 6, 0, pages), 3);
	unpin_user_pages(pages, 3);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 6, 0, pages), 3);
	unpin_user_pages(pages, 3);
	/* PROT_NONE. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, PAGE_SIZE, PROT_NONE));
	assert_int_equal(pup_locked(e->mm, a, 1, 0, pages), -EFAULT);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1, 0, pages), -EFAULT);
	/* FOLL_FORCE reads a populated PROT_NONE page (VM_MAYREAD). */
	assert_int_equal(gup_locked(e->mm, a, 1, FOLL_FORCE, pages), 1);
	assert_int_equal(dma_read(pages[0], 0), 1);
	put_page(pages[0]);
	/* Not through GUP-fast, even with FORCE: it cannot see the VMA. */
	assert_int_equal(
		get_user_pages_fast_only(e->mm, a, 1, FOLL_FORCE, pages), 0);
	ASSERT_OK(hetmm_mprotect(e->mm, a, PAGE_SIZE, RW));
	/* A write to a read-only mapping. */
	assert_int_equal(pup_locked(e->mm, ro, 1, FOLL_WRITE, pages), -EFAULT);
	assert_int_equal(pin_user_pages_fast(e->mm, ro, 1, FOLL_WRITE, pages),
			 -EFAULT);
	/* FOLL_ANON on a file mapping (shared anonymous memory is shmem). */
	f = hetmm_mmap(e->mm, 0, PAGE_SIZE, RW, MAP_SHARED | MAP_ANONYMOUS, -1,
		       0);
	assert_true(f > 0);
	assert_int_equal(
		gup_locked(e->mm, (unsigned long)f, 1, FOLL_ANON, pages),
		-EFAULT);
	assert_int_equal(gup_locked(e->mm, a, 1, FOLL_ANON, pages), 1);
	put_page(pages[0]);
	/* hugetlb is not "anonymous" either (it has vm_ops in Linux). */
	h = hetmm_mmap(e->mm, 0, SZ_2M, RW, PRIV_ANON | MAP_HUGETLB, -1, 0);
	assert_true(h > 0);
	assert_int_equal(
		gup_locked(e->mm, (unsigned long)h, 1, FOLL_ANON, pages),
		-EFAULT);
	/* FOLL_FORCE writes do not apply to shared mappings. */
	ASSERT_OK(
		hetmm_mprotect(e->mm, (unsigned long)f, PAGE_SIZE, PROT_READ));
	assert_int_equal(gup_locked(e->mm, (unsigned long)f, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 -EFAULT);
	/* VM_IO and VM_PFNMAP VMAs (as a driver's mmap would set). */
	mmap_write_lock(e->mm);
	vma = vma_lookup(e->mm, a);
	vma->vm_flags |= VM_IO;
	mmap_write_unlock(e->mm);
	assert_int_equal(gup_locked(e->mm, a, 1, 0, pages), -EFAULT);
	mmap_write_lock(e->mm);
	vma->vm_flags ^= VM_IO | VM_PFNMAP;
	mmap_write_unlock(e->mm);
	assert_int_equal(pup_locked(e->mm, a, 1, 0, pages), -EFAULT);
	mmap_write_lock(e->mm);
	vma->vm_flags &= ~VM_PFNMAP;
	mmap_write_unlock(e->mm);
	/* A file of the writeback kind. */
	fd = hetmm_open_kind(e->mm, "/wb", O_RDWR | O_CREAT,
			     HETMM_FS_WRITEBACK);
	assert_true(fd >= 0);
	ASSERT_OK(hetmm_ftruncate(e->mm, fd, 4 * PAGE_SIZE));
	f = hetmm_mmap(e->mm, 0, 4 * PAGE_SIZE, RW, MAP_SHARED, fd, 0);
	assert_true(f > 0);
	/* Short-term R/W pins and R/O long-term pins are fine... */
	assert_int_equal(
		pup_locked(e->mm, (unsigned long)f, 2, FOLL_WRITE, pages), 2);
	unpin_user_pages(pages, 2);
	assert_int_equal(
		pup_locked(e->mm, (unsigned long)f, 2, FOLL_LONGTERM, pages),
		2);
	unpin_user_pages(pages, 2);
	/* ...a R/W long-term pin is not, through either path. */
	assert_int_equal(pup_locked(e->mm, (unsigned long)f, 2,
				    FOLL_WRITE | FOLL_LONGTERM, pages),
			 -EFAULT);
	assert_int_equal(pin_user_pages_fast(e->mm, (unsigned long)f, 2,
					     FOLL_WRITE | FOLL_LONGTERM, pages),
			 -EFAULT);
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_unlink(e->mm, "/wb"));
	assert_int_equal(pins_outstanding(e->m), 0);
}

static void test_force_write_cow(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 2, PROT_READ);
	struct page *pages[2];
	struct mm_struct *child;

	/* Unpopulated: the FORCE write breaks COW into an exclusive page
	 * that stays mapped read-only (ptrace poking a breakpoint). */
	assert_int_equal(
		gup_locked(e->mm, a, 1, FOLL_WRITE | FOLL_FORCE, pages), 1);
	assert_ptr_equal(mapped_page(e->mm, a), pages[0]);
	assert_true(PageAnonExclusive(pages[0]));
	assert_false(pte_write(lookup(e->mm, a)));
	dma_write(pages[0], 5, 42);
	put_page(pages[0]);
	assert_int_equal(peek(e->mm, a + 5), 42);
	/* Shared with a child: the FORCE write copies, the child keeps the
	 * old contents. */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	assert_int_equal(
		gup_locked(e->mm, a, 1, FOLL_WRITE | FOLL_FORCE, pages), 1);
	assert_ptr_not_equal(pages[0], mapped_page(child, a));
	dma_write(pages[0], 5, 43);
	put_page(pages[0]);
	assert_int_equal(peek(e->mm, a + 5), 43);
	assert_int_equal(peek(child, a + 5), 42);
	hetmm_exit(child);
	/* Without FORCE: refused. */
	assert_int_equal(gup_locked(e->mm, a, 1, FOLL_WRITE, pages), -EFAULT);
}

/* ------------------------------------------------------------ the rest */

static void test_unshare_on_ro_pin(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 2, RW);
	struct page *pages[2], *old;
	struct mm_struct *child;

	touch(e->mm, a, 2, 5);
	old = mapped_page(e->mm, a);
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	assert_false(PageAnonExclusive(old));
	/* A R/O GET does not unshare: it returns the shared page. */
	assert_int_equal(gup_locked(e->mm, a, 1, 0, pages), 1);
	assert_ptr_equal(pages[0], old);
	put_page(pages[0]);
	/* A R/O pin does: a copy, exclusive, mapped read-only. */
	assert_int_equal(get_user_pages_fast_only(e->mm, a, 1, 0, pages), 1);
	put_page(pages[0]);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1, 0, pages), 1);
	assert_ptr_not_equal(pages[0], old);
	assert_ptr_equal(mapped_page(e->mm, a), pages[0]);
	assert_true(PageAnonExclusive(pages[0]));
	assert_false(pte_write(lookup(e->mm, a)));
	assert_ptr_equal(mapped_page(child, a), old);
	/* The parent writes: reused in place, the pin sees it, not the
	 * child. */
	poke(e->mm, a, 99);
	assert_int_equal(dma_read(pages[0], 0), 99);
	assert_int_equal(peek(child, a), 5);
	unpin_user_page(pages[0]);
	hetmm_exit(child);
}

static void test_nofault_and_fast_only(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW);
	struct page *pages[4];

	/* Nothing mapped: NOFAULT refuses, fast-only gets nothing. */
	assert_int_equal(pup_locked(e->mm, a, 2, FOLL_NOFAULT, pages), -EFAULT);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 2, FOLL_NOFAULT, pages),
			 -EFAULT);
	assert_int_equal(get_user_pages_fast_only(e->mm, a, 2, 0, pages), 0);
	touch(e->mm, a, 2, 1);
	assert_int_equal(pup_locked(e->mm, a, 4, FOLL_NOFAULT, pages), 2);
	unpin_user_pages(pages, 2);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 4, FOLL_NOFAULT, pages),
			 2);
	unpin_user_pages(pages, 2);
	assert_int_equal(get_user_pages_fast_only(e->mm, a, 4, 0, pages), 2);
	put_pages(pages, 2);
	/* A write request to a read-only PTE needs a fault. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, 4 * PAGE_SIZE, PROT_READ));
	ASSERT_OK(hetmm_mprotect(e->mm, a, 4 * PAGE_SIZE, RW));
	assert_int_equal(pin_user_pages_fast(e->mm, a, 2,
					     FOLL_NOFAULT | FOLL_WRITE, pages),
			 2);
	unpin_user_pages(pages, 2);
}

static void test_unpin_family(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW);
	unsigned long t = thp_region(e->mm, 1);
	struct page *pages[8], *arr[6];
	struct folio *folios[5];
	struct folio *f, *tf;
	int base, tbase;

	touch(e->mm, a, 4, 1);
	touch(e->mm, t, 1, 1);
	f = page_folio(mapped_page(e->mm, a));
	tf = page_folio(mapped_page(e->mm, t));
	base = folio_ref_count(f);
	tbase = folio_ref_count(tf);

	/* unpin_user_pages skips NULL entries. */
	assert_int_equal(pup_locked(e->mm, a, 4, 0, pages), 4);
	arr[0] = NULL;
	arr[1] = pages[0];
	arr[2] = NULL;
	arr[3] = pages[1];
	arr[4] = pages[2];
	arr[5] = pages[3];
	unpin_user_pages(arr, 6);
	assert_int_equal(folio_ref_count(f), base);
	/* A negative errno handed on as a count does nothing. */
	unpin_user_pages(arr, (unsigned long)-EFAULT);
	assert_int_equal(pins_outstanding(e->m), 0);

	/* Dirtying: anon folios get PG_dirty, once per folio. */
	folio_clear_flag(f, PG_dirty);
	assert_int_equal(pup_locked(e->mm, a, 1, FOLL_WRITE, pages), 1);
	unpin_user_pages_dirty_lock(pages, 1, false);
	assert_false(folio_test_flag(f, PG_dirty));
	assert_int_equal(pup_locked(e->mm, a, 1, FOLL_WRITE, pages), 1);
	unpin_user_pages_dirty_lock(pages, 1, true);
	assert_true(folio_test_flag(f, PG_dirty));
	assert_int_equal(folio_ref_count(f), base);

	/* A physically contiguous range of a THP. */
	assert_int_equal(pup_locked(e->mm, t + 8 * PAGE_SIZE, 8, 0, pages), 8);
	assert_int_equal(folio_pincount(tf), 8);
	unpin_user_page_range_dirty_lock(pages[0], 8, true);
	assert_int_equal(folio_pincount(tf), 0);
	assert_int_equal(folio_ref_count(tf), tbase);

	/* Folio forms: runs of the same pointer collapse, NULLs skipped. */
	assert_int_equal(pup_locked(e->mm, t, 3, 0, pages), 3);
	assert_int_equal(pup_locked(e->mm, a, 1, 0, pages + 3), 1);
	folios[0] = tf;
	folios[1] = tf;
	folios[2] = NULL;
	folios[3] = tf;
	folios[4] = f;
	unpin_folios(folios, 5);
	assert_int_equal(folio_pincount(tf), 0);
	assert_int_equal(folio_ref_count(f), base);
	assert_int_equal(pup_locked(e->mm, t, 5, 0, pages), 5);
	unpin_user_folio(tf, 4);
	unpin_folio(tf);
	assert_int_equal(folio_ref_count(tf), tbase);

	/* Extra pins on pinned folios. */
	assert_int_equal(pup_locked(e->mm, t, 1, 0, pages), 1);
	folio_add_pin(tf);
	ASSERT_OK(folio_add_pins(tf, 10));
	assert_int_equal(folio_pincount(tf), 12);
	unpin_user_folio(tf, 12);
	assert_int_equal(pup_locked(e->mm, a, 1, 0, pages), 1);
	folio_add_pin(f);
	assert_int_equal(folio_ref_count(f),
			 base + 2 * (int)GUP_PIN_COUNTING_BIAS);
	unpin_user_folio(f, 2);
	assert_int_equal(folio_ref_count(f), base);
	/* The zero page takes no pins. */
	folio_add_pin(page_folio(e->m->zero_page));
	ASSERT_OK(folio_add_pins(page_folio(e->m->zero_page), 3));
	assert_int_equal(pins_outstanding(e->m), 0);
}

static void test_unpin_bogus(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 1, RW);
	unsigned long t = thp_region(e->mm, 1);
	struct page *p, *tp, *pages[1];
	struct folio *f;
	int base;

	touch(e->mm, a, 1, 1);
	touch(e->mm, t, 1, 1);
	p = mapped_page(e->mm, a);
	tp = mapped_page(e->mm, t);
	(void)tp; /* used by the debug-build checks only */
	f = page_folio(p);
	base = folio_ref_count(f);
#if HETMM_DEBUG >= 1
	/* Unpinning what was never pinned: a bad page, counts untouched. */
	unpin_user_page(p);
	unpin_user_page(tp);
	assert_int_equal(folio_ref_count(f), base);
	assert_int_not_equal(hetmm_check(e->m), 0);
	hetmm_bad_page_clear(e->m);
	ASSERT_OK(hetmm_check(e->m));
#endif
	/* A pin released with put_page: the checker sees the imbalance. */
	assert_int_equal(pup_locked(e->mm, a, 1, 0, pages), 1);
	put_page(p);
	assert_int_not_equal(hetmm_check(e->m), 0);
	get_page(p);
	ASSERT_OK(hetmm_check(e->m));
	unpin_user_page(p);
	assert_int_equal(folio_ref_count(f), base);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_refcount_limit(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 1, RW);
	struct page *p, *pages[1];
	struct folio *f;
	int add;

	touch(e->mm, a, 1, 1);
	p = mapped_page(e->mm, a);
	f = page_folio(p);
	/* Close to the top: a pin (1024 references) no longer fits. */
	add = INT32_MAX - folio_ref_count(f) - 1000;
	folio_ref_add(f, add);
	assert_int_equal(pup_locked(e->mm, a, 1, 0, pages), -ENOMEM);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1, 0, pages), -ENOMEM);
	/* A get still fits. */
	assert_int_equal(get_user_pages_fast(e->mm, a, 1, 0, pages), 1);
	put_page(pages[0]);
	folio_ref_add(f, -add);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1, 0, pages), 1);
	unpin_user_page(pages[0]);
}

/*
 * Known model differences outside the gup layer, checked against the
 * kernel's behaviour: reported as XFAIL (skipped, loudly) until fixed.
 */
static void xfail(const char *why)
{
	printf("# XFAIL %s\n", why);
	skip();
}

/* I10: without MMF_HAS_PINNED, fork never copies eagerly, however many
 * references a page has. */
static void test_fork_eager_copy_needs_has_pinned(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 1, RW);
	struct page *p, *pages[1];
	struct mm_struct *child;
	bool shared;

	touch(e->mm, a, 1, 1);
	p = mapped_page(e->mm, a);
	/* 1100 plain references: "maybe pinned" by the refcount alone. */
	for (int i = 0; i < 1100; i++)
		assert_int_equal(get_user_pages_fast(e->mm, a, 1, 0, pages), 1);
	assert_true(folio_maybe_dma_pinned(page_folio(p)));
	assert_false(mm_has_pinned(e->mm));
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	shared = mapped_page(child, a) == p;
	hetmm_exit(child);
	for (int i = 0; i < 1100; i++)
		put_page(p);
	if (!shared)
		xfail("fork.c copies maybe-pinned pages without MMF_HAS_PINNED");
}

/*
 * FOLL_FORCE reads PROT_NONE memory that was never populated: the fault
 * maps the zero page with the VMA's protection (a PROTNONE entry), which
 * GUP then follows; the CPU still cannot touch the range.
 */
static void test_force_read_unpopulated_prot_none(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 1, PROT_NONE);
	struct page *pages[1];
	unsigned char b = 7;
	pte_t p;

	/* Without FORCE: nothing is faulted, nothing is mapped. */
	assert_int_equal(gup_locked(e->mm, a, 1, 0, pages), -EFAULT);
	assert_true(pte_none(lookup(e->mm, a)));
	assert_int_equal(gup_locked(e->mm, a, 1, FOLL_FORCE, pages), 1);
	assert_ptr_equal(pages[0], e->m->zero_page);
	put_page(pages[0]);
	p = lookup(e->mm, a);
	assert_true(pte_present(p));
	assert_true(pte_protnone(p));
	assert_false(pte_write(p));
	assert_int_equal(pte_pfn(p), page_to_pfn(e->m->zero_page));
	/* GUP-fast never follows a PROTNONE entry; FORCE is not its flag. */
	assert_int_equal(get_user_pages_fast_only(e->mm, a, 1, 0, pages), 0);
	/* The CPU is refused, and the entry does not change. */
	assert_int_equal(hetmm_cpu_read(e->mm, 0, a, &b, 1), -EFAULT);
	assert_int_equal(hetmm_cpu_write(e->mm, 0, a, &b, 1), -EFAULT);
	assert_int_equal(b, 7);
	assert_int_equal(pte_val(lookup(e->mm, a)), pte_val(p));
	/* A pin (read-only, FORCE) takes the zero page too: not counted. */
	assert_int_equal(pup_locked(e->mm, a, 1, FOLL_FORCE, pages), 1);
	assert_ptr_equal(pages[0], e->m->zero_page);
	unpin_user_page(pages[0]);
	assert_int_equal(pins_outstanding(e->m), 0);
	ASSERT_OK(hetmm_check(e->m));
	/* Made readable, the range reads zeroes. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, PAGE_SIZE, PROT_READ));
	assert_int_equal(peek(e->mm, a), 0);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * FOLL_FORCE writes PROT_NONE private memory (ptrace pokes): the write
 * fault breaks COW into an exclusive page that stays PROTNONE, which GUP
 * follows; the data shows once the range is made readable. Shared
 * PROT_NONE memory has no COW to break: -EFAULT.
 */
static void test_force_write_prot_none(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 2, PROT_NONE);
	struct page *pages[2];
	unsigned char b;
	long s;
	pte_t p;

	assert_int_equal(gup_locked(e->mm, a, 2, FOLL_WRITE, pages), -EFAULT);
	assert_int_equal(gup_locked(e->mm, a, 2, FOLL_WRITE | FOLL_FORCE,
				    pages),
			 2);
	for (int i = 0; i < 2; i++) {
		assert_false(is_zero_page(pages[i]));
		assert_true(folio_test_anon(page_folio(pages[i])));
		assert_true(PageAnonExclusive(pages[i]));
		dma_write(pages[i], 5, (unsigned char)(0x40 + i));
		p = lookup(e->mm, a + (unsigned long)i * PAGE_SIZE);
		assert_true(pte_protnone(p));
		assert_false(pte_write(p));
		assert_ptr_equal(mapped_page(e->mm,
					     a + (unsigned long)i * PAGE_SIZE),
				 pages[i]);
	}
	put_pages(pages, 2);
	assert_int_equal(hetmm_cpu_read(e->mm, 0, a + 5, &b, 1), -EFAULT);
	ASSERT_OK(hetmm_check(e->m));
	/* Again: the exclusive pages are reused, not copied. */
	assert_int_equal(gup_locked(e->mm, a, 1, FOLL_WRITE | FOLL_FORCE,
				    pages),
			 1);
	assert_ptr_equal(pages[0], mapped_page(e->mm, a));
	put_page(pages[0]);
	ASSERT_OK(hetmm_mprotect(e->mm, a, 2 * PAGE_SIZE, PROT_READ));
	assert_int_equal(peek(e->mm, a + 5), 0x40);
	assert_int_equal(peek(e->mm, a + PAGE_SIZE + 5), 0x41);
	/* Still no CPU write: mprotect gave read access only. */
	assert_int_equal(hetmm_cpu_write(e->mm, 0, a, &b, 1), -EFAULT);
	ASSERT_OK(hetmm_check(e->m));

	s = hetmm_mmap(e->mm, 0, PAGE_SIZE, PROT_NONE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(s > 0);
	assert_int_equal(gup_locked(e->mm, (unsigned long)s, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 -EFAULT);
	/* A FORCE read of it maps the shared page PROTNONE. */
	assert_int_equal(gup_locked(e->mm, (unsigned long)s, 1, FOLL_FORCE,
				    pages),
			 1);
	assert_true(pte_protnone(lookup(e->mm, (unsigned long)s)));
	put_page(pages[0]);
	ASSERT_OK(hetmm_check(e->m));
}

static char pread_byte(struct mm_struct *mm, int fd, off_t off);

/* The entry of @addr, asserted to be a PROTNONE read-only PMD leaf. */
static pte_t assert_protnone_leaf(struct mm_struct *mm, unsigned long addr)
{
	pte_t p = lookup(mm, addr);

	assert_true(pmd_is_leaf(mm, addr));
	assert_true(pte_present(p));
	assert_true(pte_protnone(p));
	assert_false(pte_write(p));
	return p;
}

/*
 * The CPU and GUP-fast refuse the PROTNONE leaf at @addr, whose byte at
 * @addr is @v, without changing the entry or the byte.
 */
static void assert_cpu_refused(struct mm_struct *mm, unsigned long addr,
			       unsigned char v)
{
	pte_t before = lookup(mm, addr);
	struct page *page = mapped_page(mm, addr), *pages[1];
	unsigned char b = (unsigned char)~v;

	assert_int_equal(hetmm_cpu_read(mm, 0, addr, &b, 1), -EFAULT);
	assert_int_equal(b, (unsigned char)~v);
	assert_int_equal(hetmm_cpu_write(mm, 0, addr, &b, 1), -EFAULT);
	assert_int_equal(pte_val(lookup(mm, addr)), pte_val(before));
	assert_int_equal(dma_read(page, addr & ~PAGE_MASK), v);
	/* GUP-fast leaves PROT_NONE to the slow path (FORCE is not its). */
	assert_int_equal(get_user_pages_fast_only(mm, addr, 1, 0, pages), 0);
	assert_int_equal(
		get_user_pages_fast_only(mm, addr, 1, FOLL_WRITE, pages), 0);
	/* Falling back without FORCE: the VMA check refuses. */
	assert_int_equal(get_user_pages_fast(mm, addr, 1, 0, pages), -EFAULT);
	assert_int_equal(pte_val(lookup(mm, addr)), pte_val(before));
}

/*
 * THP and PROT_NONE, as in the kernel: a FORCE write fault in an
 * inaccessible THP-eligible range makes a PROTNONE, read-only THP (an
 * exclusive folio), which GUP follows for reads and FORCE writes alike
 * (reused, never split) while the CPU and GUP-fast are refused; mprotect
 * back to RW makes it an ordinary writable THP with GUP's bytes. A
 * populated THP made PROT_NONE is followed the same way. A FORCE read of
 * an unpopulated range maps the huge zero folio (PROTNONE), and a later
 * FORCE write there puts an exclusive read-only THP in its place.
 */
static void test_force_prot_none_thp(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 3), b = a + SZ_2M, c = b + SZ_2M;
	struct page *pages[8], *head;
	pte_t p;

	ASSERT_OK(hetmm_mprotect(e->mm, a, SZ_2M, PROT_NONE));
	assert_int_equal(gup_locked(e->mm, a + PAGE_SIZE, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 1);
	if (!pmd_is_leaf(e->mm, a)) {
		put_page(pages[0]);
		skip(); /* no THP on this machine */
		return;
	}
	head = mapped_page(e->mm, a);
	assert_ptr_equal(pages[0], head + 1);
	assert_int_equal(folio_order(page_folio(head)), PMD_ORDER);
	assert_true(folio_test_anon(page_folio(head)));
	assert_true(PageAnonExclusive(head));
	p = assert_protnone_leaf(e->mm, a);
	assert_true(pte_dirty(p));
	dma_write(pages[0], 0, 0x5a);
	put_page(pages[0]);
	assert_cpu_refused(e->mm, a + PAGE_SIZE, 0x5a);
	ASSERT_OK(hetmm_check(e->m));
	/* A FORCE read follows the leaf, 8 pages at once. */
	assert_int_equal(gup_locked(e->mm, a, 8, FOLL_FORCE, pages), 8);
	for (int i = 0; i < 8; i++)
		assert_ptr_equal(pages[i], head + i);
	assert_int_equal(dma_read(pages[1], 0), 0x5a);
	put_pages(pages, 8);
	/* A FORCE pin too; the leaf does not change. */
	assert_int_equal(
		pup_locked(e->mm, a + 2 * PAGE_SIZE, 1, FOLL_FORCE, pages), 1);
	assert_ptr_equal(pages[0], head + 2);
	unpin_user_page(pages[0]);
	assert_int_equal(pte_val(lookup(e->mm, a)), pte_val(p));
	/* Another FORCE write reuses the exclusive folio in place. */
	assert_int_equal(gup_locked(e->mm, a + 3 * PAGE_SIZE, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 1);
	assert_ptr_equal(pages[0], head + 3);
	dma_write(pages[0], 7, 0x5b);
	put_page(pages[0]);
	assert_protnone_leaf(e->mm, a);
	assert_cpu_refused(e->mm, a + 3 * PAGE_SIZE + 7, 0x5b);
	assert_int_equal(pins_outstanding(e->m), 0);
	ASSERT_OK(hetmm_check(e->m));
	/* Accessible again: GUP's bytes, an ordinary writable leaf. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, SZ_2M, RW));
	p = lookup(e->mm, a);
	assert_false(pte_protnone(p));
	assert_true(pte_write(p));
	assert_int_equal(peek(e->mm, a + PAGE_SIZE), 0x5a);
	assert_int_equal(peek(e->mm, a + 3 * PAGE_SIZE + 7), 0x5b);
	assert_int_equal(peek(e->mm, a), 0);
	poke(e->mm, a + 9, 0x5c);
	assert_int_equal(dma_read(head, 9), 0x5c);
	assert_ptr_equal(mapped_page(e->mm, a), head);
	ASSERT_OK(hetmm_check(e->m));

	/* A populated THP made PROT_NONE. */
	touch(e->mm, b, 1, 9);
	assert_true(pmd_is_leaf(e->mm, b));
	head = mapped_page(e->mm, b);
	ASSERT_OK(hetmm_mprotect(e->mm, b, SZ_2M, PROT_NONE));
	assert_protnone_leaf(e->mm, b);
	assert_int_equal(gup_locked(e->mm, b + 3 * PAGE_SIZE, 1, FOLL_FORCE,
				    pages),
			 1);
	assert_ptr_equal(pages[0], head + 3);
	put_page(pages[0]);
	assert_int_equal(gup_locked(e->mm, b, 1, FOLL_WRITE | FOLL_FORCE,
				    pages),
			 1);
	assert_ptr_equal(pages[0], head);
	dma_write(pages[0], 1, 0x77);
	put_page(pages[0]);
	assert_protnone_leaf(e->mm, b);
	assert_cpu_refused(e->mm, b + 1, 0x77);
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_mprotect(e->mm, b, SZ_2M, PROT_READ));
	assert_int_equal(peek(e->mm, b + 1), 0x77);
	assert_int_equal(peek(e->mm, b), 9);
	ASSERT_OK(hetmm_check(e->m));

	/*
	 * A FORCE read first: the huge zero folio, PROTNONE; a FORCE write
	 * then puts an exclusive THP in its place, still PROTNONE and
	 * read-only (the kernel's do_huge_zero_wp_pmd).
	 */
	ASSERT_OK(hetmm_mprotect(e->mm, c, SZ_2M, PROT_NONE));
	assert_int_equal(
		gup_locked(e->mm, c + 5 * PAGE_SIZE, 1, FOLL_FORCE, pages), 1);
	assert_true(is_huge_zero_folio(page_folio(pages[0])));
	assert_ptr_equal(pages[0], folio_page(page_folio(pages[0]), 5));
	put_page(pages[0]);
	p = assert_protnone_leaf(e->mm, c);
	assert_true(pte_special(p));
	ASSERT_OK(hetmm_check(e->m));
	assert_int_equal(gup_locked(e->mm, c + PAGE_SIZE, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 1);
	head = mapped_page(e->mm, c);
	assert_false(is_huge_zero_folio(page_folio(head)));
	assert_true(folio_test_anon(page_folio(head)));
	assert_true(PageAnonExclusive(head));
	assert_ptr_equal(pages[0], head + 1);
	p = assert_protnone_leaf(e->mm, c);
	assert_false(pte_special(p));
	dma_write(pages[0], 0, 0x5d);
	put_page(pages[0]);
	assert_int_equal(peek_err(e->mm, c + PAGE_SIZE), -EFAULT);
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_mprotect(e->mm, c, SZ_2M, RW));
	assert_int_equal(peek(e->mm, c + PAGE_SIZE), 0x5d);
	assert_int_equal(peek(e->mm, c), 0);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * hugetlb and PROT_NONE, as in the kernel's hugetlb_fault(): a FORCE read
 * allocates the (zeroed) 2 MiB folio and maps it PROTNONE, a FORCE write
 * too (exclusive, read-only); GUP follows, the CPU and GUP-fast do not;
 * mprotect back to RW shows GUP's bytes. Shared PROT_NONE hugetlb: FORCE
 * reads map the cache folio PROTNONE, FORCE writes are refused.
 */
static void test_force_prot_none_hugetlb(void **state)
{
	struct env *e = *state;
	long r = hetmm_mmap(e->mm, 0, 2 * SZ_2M, PROT_NONE,
			    PRIV_ANON | MAP_HUGETLB, -1, 0);
	unsigned long a = (unsigned long)r, b = a + SZ_2M;
	struct page *pages[4], *head;
	struct folio *f;
	pte_t p;

	assert_true(r > 0);
	/* Without FORCE: nothing is faulted. */
	assert_int_equal(gup_locked(e->mm, a, 1, 0, pages), -EFAULT);
	assert_int_equal(gup_locked(e->mm, a, 1, FOLL_WRITE, pages), -EFAULT);
	assert_false(pmd_is_leaf(e->mm, a));
	/* A FORCE read. */
	assert_int_equal(
		gup_locked(e->mm, a + 5 * PAGE_SIZE, 4, FOLL_FORCE, pages), 4);
	head = mapped_page(e->mm, a);
	f = page_folio(head);
	assert_true(folio_test_hugetlb(f));
	assert_true(PageAnonExclusive(head));
	for (int i = 0; i < 4; i++) {
		assert_ptr_equal(pages[i], head + 5 + i);
		assert_int_equal(dma_read(pages[i], 11), 0);
	}
	dma_write(pages[0], 11, 0x31);
	put_pages(pages, 4);
	p = assert_protnone_leaf(e->mm, a);
	assert_cpu_refused(e->mm, a + 5 * PAGE_SIZE + 11, 0x31);
	ASSERT_OK(hetmm_check(e->m));
	/* A FORCE write of the exclusive folio: followed as it is. */
	assert_int_equal(gup_locked(e->mm, a + 6 * PAGE_SIZE, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 1);
	assert_ptr_equal(pages[0], head + 6);
	dma_write(pages[0], 0, 0x32);
	put_page(pages[0]);
	assert_int_equal(pte_val(lookup(e->mm, a)), pte_val(p));
	/* A FORCE write fault: a fresh exclusive folio, read-only. */
	assert_int_equal(pup_locked(e->mm, b + PAGE_SIZE, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 1);
	head = mapped_page(e->mm, b);
	assert_ptr_equal(pages[0], head + 1);
	assert_true(folio_test_hugetlb(page_folio(head)));
	assert_true(PageAnonExclusive(head));
	assert_protnone_leaf(e->mm, b);
	dma_write(pages[0], 3, 0x33);
	unpin_user_pages_dirty_lock(pages, 1, true);
	assert_cpu_refused(e->mm, b + PAGE_SIZE + 3, 0x33);
	assert_int_equal(pins_outstanding(e->m), 0);
	ASSERT_OK(hetmm_check(e->m));
	/* Accessible again. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, 2 * SZ_2M, RW));
	assert_false(pte_protnone(lookup(e->mm, a)));
	assert_false(pte_protnone(lookup(e->mm, b)));
	assert_int_equal(peek(e->mm, a + 5 * PAGE_SIZE + 11), 0x31);
	assert_int_equal(peek(e->mm, a + 6 * PAGE_SIZE), 0x32);
	assert_int_equal(peek(e->mm, b + PAGE_SIZE + 3), 0x33);
	assert_int_equal(peek(e->mm, b), 0);
	poke(e->mm, a, 0x34);
	assert_int_equal(peek(e->mm, a), 0x34);
	assert_ptr_equal(mapped_page(e->mm, b), head);
	ASSERT_OK(hetmm_check(e->m));

	/* Shared: no COW to break, but a FORCE read maps PROTNONE. */
	r = hetmm_mmap(e->mm, 0, SZ_2M, PROT_NONE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	assert_true(r > 0);
	assert_int_equal(gup_locked(e->mm, (unsigned long)r, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 -EFAULT);
	assert_int_equal(
		gup_locked(e->mm, (unsigned long)r, 1, FOLL_FORCE, pages), 1);
	assert_true(folio_test_hugetlb(page_folio(pages[0])));
	dma_write(pages[0], 0, 0x35);
	put_page(pages[0]);
	assert_protnone_leaf(e->mm, (unsigned long)r);
	assert_cpu_refused(e->mm, (unsigned long)r, 0x35);
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_mprotect(e->mm, (unsigned long)r, SZ_2M, PROT_READ));
	assert_int_equal(peek(e->mm, (unsigned long)r), 0x35);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * A FORCE write to a read-only private THP (ptrace poking a breakpoint),
 * as the kernel's do_huge_pmd_wp_page(): an exclusive folio is followed
 * as it is; one whose COW is broken by nobody else (the child exited) is
 * reused in place but stays read-only (maybe_mkwrite); one shared with a
 * child is split and the one page copied, read-only, the child keeping
 * the old bytes. An unpopulated read-only range gets a read-only THP.
 */
static void test_force_write_ro_thp(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 2), b = a + SZ_2M;
	struct page *pages[1], *head, *copy;
	struct mm_struct *child;
	unsigned char v = 1;
	pte_t p;

	touch(e->mm, a, 4, 0x10);
	if (!pmd_is_leaf(e->mm, a)) {
		skip(); /* no THP on this machine */
		return;
	}
	head = mapped_page(e->mm, a);
	ASSERT_OK(hetmm_mprotect(e->mm, a, 2 * SZ_2M, PROT_READ));
	assert_false(pte_write(lookup(e->mm, a)));
	/* Exclusive: followed without a fault. */
	assert_int_equal(gup_locked(e->mm, a + PAGE_SIZE, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 1);
	assert_ptr_equal(pages[0], head + 1);
	dma_write(pages[0], 1, 0x21);
	put_page(pages[0]);
	/* A child makes it non-exclusive; once it is gone, the FORCE write
	 * fault reuses the folio, which stays read-only. */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	hetmm_exit(child);
	assert_false(PageAnonExclusive(head));
	assert_int_equal(gup_locked(e->mm, a + 2 * PAGE_SIZE, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 1);
	assert_ptr_equal(pages[0], head + 2);
	assert_true(PageAnonExclusive(head));
	assert_true(pmd_is_leaf(e->mm, a));
	p = lookup(e->mm, a);
	assert_false(pte_write(p));
	assert_false(pte_protnone(p));
	dma_write(pages[0], 2, 0x22);
	put_page(pages[0]);
	assert_int_equal(peek(e->mm, a + PAGE_SIZE + 1), 0x21);
	assert_int_equal(peek(e->mm, a + 2 * PAGE_SIZE + 2), 0x22);
	assert_int_equal(hetmm_cpu_write(e->mm, 0, a, &v, 1), -EFAULT);
	ASSERT_OK(hetmm_check(e->m));
	/* Shared with a live child: split, one page copied (read-only). */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	assert_int_equal(gup_locked(e->mm, a + 3 * PAGE_SIZE, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 1);
	copy = pages[0];
	assert_false(pmd_is_leaf(e->mm, a));
	assert_ptr_not_equal(copy, head + 3);
	assert_ptr_equal(mapped_page(e->mm, a + 3 * PAGE_SIZE), copy);
	assert_true(PageAnonExclusive(copy));
	assert_false(pte_write(lookup(e->mm, a + 3 * PAGE_SIZE)));
	assert_int_equal(dma_read(copy, 0), 0x13);
	dma_write(copy, 0, 0x23);
	put_page(copy);
	assert_int_equal(peek(e->mm, a + 3 * PAGE_SIZE), 0x23);
	assert_int_equal(peek(child, a + 3 * PAGE_SIZE), 0x13);
	assert_ptr_equal(mapped_page(child, a + 3 * PAGE_SIZE), head + 3);
	/* The rest is still shared with the child. */
	assert_ptr_equal(mapped_page(e->mm, a), head);
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(child);
	/* Writable again: the bytes GUP wrote, the CPU writes. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, SZ_2M, RW));
	assert_int_equal(peek(e->mm, a + 3 * PAGE_SIZE), 0x23);
	assert_int_equal(peek(e->mm, a + 2 * PAGE_SIZE + 2), 0x22);
	assert_int_equal(peek(e->mm, a), 0x10);
	poke(e->mm, a + 3 * PAGE_SIZE, 0x24);
	assert_int_equal(dma_read(copy, 0), 0x24);
	ASSERT_OK(hetmm_check(e->m));

	/* Unpopulated and read-only: a read-only exclusive THP. */
	assert_int_equal(gup_locked(e->mm, b + PAGE_SIZE, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 1);
	assert_true(pmd_is_leaf(e->mm, b));
	head = mapped_page(e->mm, b);
	assert_ptr_equal(pages[0], head + 1);
	assert_true(PageAnonExclusive(head));
	p = lookup(e->mm, b);
	assert_false(pte_write(p));
	assert_false(pte_protnone(p));
	dma_write(pages[0], 0, 0x25);
	put_page(pages[0]);
	assert_int_equal(peek(e->mm, b + PAGE_SIZE), 0x25);
	assert_int_equal(hetmm_cpu_write(e->mm, 0, b, &v, 1), -EFAULT);
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_mprotect(e->mm, b, SZ_2M, RW));
	assert_true(pte_write(lookup(e->mm, b)));
	poke(e->mm, b, 0x26);
	assert_int_equal(peek(e->mm, b + PAGE_SIZE), 0x25);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * A FORCE write to read-only private hugetlb memory (the kernel's
 * hugetlb_wp() with set_huge_ptep_maybe_writable()): reuse of a folio
 * nobody else maps, a 2 MiB copy of one shared with a child or of a
 * hugetlbfs file's cache folio; the entry stays read-only every time,
 * and neither the child nor the file sees the write.
 */
static void test_force_write_ro_hugetlb(void **state)
{
	struct env *e = *state;
	long r =
		hetmm_mmap(e->mm, 0, SZ_2M, RW, PRIV_ANON | MAP_HUGETLB, -1, 0);
	unsigned long a = (unsigned long)r, f;
	struct page *pages[1], *head;
	struct mm_struct *child;
	unsigned char v = 1;
	int fd;

	assert_true(r > 0);
	touch(e->mm, a, 2, 0x40);
	head = mapped_page(e->mm, a);
	ASSERT_OK(hetmm_mprotect(e->mm, a, SZ_2M, PROT_READ));
	/* Not exclusive, but nobody else maps it: reused, read-only. */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	hetmm_exit(child);
	assert_false(PageAnonExclusive(head));
	assert_int_equal(
		gup_locked(e->mm, a, 1, FOLL_WRITE | FOLL_FORCE, pages), 1);
	assert_ptr_equal(pages[0], head);
	assert_true(PageAnonExclusive(head));
	assert_false(pte_write(lookup(e->mm, a)));
	dma_write(pages[0], 1, 0x41);
	put_page(pages[0]);
	assert_int_equal(peek(e->mm, a + 1), 0x41);
	assert_int_equal(hetmm_cpu_write(e->mm, 0, a, &v, 1), -EFAULT);
	ASSERT_OK(hetmm_check(e->m));
	/* Shared with a live child: a 2 MiB copy, read-only. */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	assert_int_equal(gup_locked(e->mm, a + PAGE_SIZE, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 1);
	assert_ptr_not_equal(pages[0], head + 1);
	assert_ptr_equal(mapped_page(e->mm, a + PAGE_SIZE), pages[0]);
	assert_true(PageAnonExclusive(&page_folio(pages[0])->page));
	assert_false(pte_write(lookup(e->mm, a)));
	assert_int_equal(dma_read(pages[0], 0), 0x41);
	dma_write(pages[0], 0, 0x42);
	put_page(pages[0]);
	assert_int_equal(peek(e->mm, a + PAGE_SIZE), 0x42);
	assert_int_equal(peek(e->mm, a + 1), 0x41);
	assert_int_equal(peek(child, a + PAGE_SIZE), 0x41);
	assert_ptr_equal(mapped_page(child, a), head);
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(child);
	ASSERT_OK(hetmm_mprotect(e->mm, a, SZ_2M, RW));
	poke(e->mm, a + 2, 0x43);
	assert_int_equal(peek(e->mm, a + PAGE_SIZE), 0x42);
	ASSERT_OK(hetmm_check(e->m));

	/* A private read-only map of a hugetlbfs file. */
	fd = hetmm_open_kind(e->mm, "/huge-ro", O_RDWR | O_CREAT, 2);
	assert_true(fd >= 0);
	ASSERT_OK(hetmm_ftruncate(e->mm, fd, SZ_2M));
	assert_int_equal(hetmm_pwrite(e->mm, fd, "F", 1, PAGE_SIZE + 1), 1);
	r = hetmm_mmap(e->mm, 0, SZ_2M, PROT_READ, MAP_PRIVATE, fd, 0);
	assert_true(r > 0);
	f = (unsigned long)r;
	assert_int_equal(peek(e->mm, f + PAGE_SIZE + 1), 'F');
	head = mapped_page(e->mm, f);
	assert_false(folio_test_anon(page_folio(head)));
	assert_int_equal(gup_locked(e->mm, f + PAGE_SIZE, 1,
				    FOLL_WRITE | FOLL_FORCE, pages),
			 1);
	assert_ptr_not_equal(pages[0], head + 1);
	assert_true(folio_test_anon(page_folio(pages[0])));
	assert_true(PageAnonExclusive(&page_folio(pages[0])->page));
	assert_false(pte_write(lookup(e->mm, f)));
	dma_write(pages[0], 1, 'G');
	put_page(pages[0]);
	assert_int_equal(peek(e->mm, f + PAGE_SIZE + 1), 'G');
	assert_int_equal(pread_byte(e->mm, fd, PAGE_SIZE + 1), 'F');
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_mprotect(e->mm, f, SZ_2M, RW));
	assert_int_equal(peek(e->mm, f + PAGE_SIZE + 1), 'G');
	poke(e->mm, f, 'H');
	assert_int_equal(pread_byte(e->mm, fd, 0), 0);
	ASSERT_OK(hetmm_munmap(e->mm, f, SZ_2M));
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_unlink(e->mm, "/huge-ro"));
	ASSERT_OK(hetmm_check(e->m));
}

/* ------------------------------------------------- a small device driver */

/*
 * gdev: one pgmap (PRIVATE, COHERENT or PCI_P2PDMA) of GDEV_PAGES pages
 * with a bitmap allocator; to_device() migrates a process range into it
 * with migrate_vma_*; a private page's CPU fault migrates it back.
 */
#define GDEV_PAGES 1024UL

struct gdev {
	struct dev_pagemap pgmap;
	struct hetmm_machine *m;
	uint64_t base;
	unsigned long base_pfn;
	pthread_mutex_t lock;
	bool used[GDEV_PAGES];
};

static struct gdev *to_gdev(struct dev_pagemap *pgmap)
{
	return container_of(pgmap, struct gdev, pgmap);
}

static void gdev_folio_free(struct folio *folio)
{
	struct gdev *d = to_gdev(folio->page.pgmap);

	pthread_mutex_lock(&d->lock);
	d->used[folio_pfn(folio) - d->base_pfn] = false;
	pthread_mutex_unlock(&d->lock);
}

/* A device page in service: locked, one reference. */
static struct folio *gdev_alloc(struct gdev *d)
{
	struct folio *folio = NULL;

	pthread_mutex_lock(&d->lock);
	for (unsigned long off = 0; off < GDEV_PAGES && !folio; off++) {
		if (d->used[off])
			continue;
		folio = pgmap_request_folio(&d->pgmap, off, 0);
		if (folio)
			d->used[off] = true;
	}
	pthread_mutex_unlock(&d->lock);
	assert_non_null(folio);
	return folio;
}

/* The CPU touched a device-private page: bring that page home. */
static int gdev_migrate_to_ram(struct vm_fault *vmf)
{
	struct gdev *d = to_gdev(page_pgmap(vmf->page));
	unsigned long src = 0, dst = 0;
	struct migrate_vma args = {
		.vma = vmf->vma,
		.start = vmf->address,
		.end = vmf->address + PAGE_SIZE,
		.src = &src,
		.dst = &dst,
		.pgmap_owner = d,
		.flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
		.fault_page = vmf->page,
	};
	struct page *spage;

	if (migrate_vma_setup(&args))
		return -EFAULT;
	spage = migrate_pfn_to_page(d->m, src);
	if (spage && (src & MIGRATE_PFN_MIGRATE)) {
		struct folio *new = folio_alloc(d->m, 0, 0);

		assert_non_null(new);
		folio_lock(new);
		copy_highpage(&new->page, spage);
		dst = migrate_pfn(folio_pfn(new));
	}
	migrate_vma_pages(&args);
	migrate_vma_finalize(&args);
	return 0;
}

static const struct dev_pagemap_ops gdev_private_ops = {
	.folio_free = gdev_folio_free,
	.migrate_to_ram = gdev_migrate_to_ram,
};

static const struct dev_pagemap_ops gdev_ops = {
	.folio_free = gdev_folio_free,
};

static struct gdev *gdev_create(struct hetmm_machine *m, enum memory_type type)
{
	struct gdev *d = calloc(1, sizeof(*d));

	assert_non_null(d);
	d->m = m;
	pthread_mutex_init(&d->lock, NULL);
	ASSERT_OK(request_free_mem_region(m, GDEV_PAGES * PAGE_SIZE, &d->base));
	d->base_pfn = d->base >> PAGE_SHIFT;
	d->pgmap.type = type;
	d->pgmap.ops =
		type == MEMORY_DEVICE_PRIVATE ? &gdev_private_ops : &gdev_ops;
	d->pgmap.owner = d;
	d->pgmap.nr_range = 1;
	d->pgmap.ranges[0].start = d->base;
	d->pgmap.ranges[0].end = d->base + GDEV_PAGES * PAGE_SIZE - 1;
	ASSERT_OK(memremap_pages(m, &d->pgmap));
	return d;
}

static void gdev_destroy(struct gdev *d)
{
	ASSERT_OK(memunmap_pages_evict(&d->pgmap));
	release_mem_region(d->m, d->base, GDEV_PAGES * PAGE_SIZE);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* Migrate [a, a + n pages) of @mm onto the device. Return: pages moved. */
static unsigned long gdev_to_device(struct gdev *d, struct mm_struct *mm,
				    unsigned long a, unsigned long n)
{
	unsigned long *src = calloc(n, sizeof(*src));
	unsigned long *dst = calloc(n, sizeof(*dst));
	struct migrate_vma args = {
		.start = a,
		.end = a + n * PAGE_SIZE,
		.src = src,
		.dst = dst,
		.pgmap_owner = d,
		.flags = MIGRATE_VMA_SELECT_SYSTEM,
	};
	unsigned long moved = 0;

	assert_non_null(src);
	assert_non_null(dst);
	mmap_read_lock(mm);
	args.vma = vma_lookup(mm, a);
	ASSERT_OK(migrate_vma_setup(&args));
	for (unsigned long i = 0; i < n; i++) {
		struct page *sp = migrate_pfn_to_page(d->m, src[i]);
		struct folio *df;

		if (!(src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		df = gdev_alloc(d);
		if (sp)
			copy_highpage(&df->page, sp);
		else
			clear_highpage(&df->page);
		dst[i] = migrate_pfn(folio_pfn(df));
	}
	migrate_vma_pages(&args);
	for (unsigned long i = 0; i < n; i++)
		moved += !!(src[i] & MIGRATE_PFN_MIGRATE);
	migrate_vma_finalize(&args);
	mmap_read_unlock(mm);
	free(src);
	free(dst);
	return moved;
}

static bool is_device_private_entry(struct mm_struct *mm, unsigned long a)
{
	return is_device_private_kind(pte_kind(lookup(mm, a)));
}

/* hmm-tests' hmm_gup_test: private pages always come home; coherent ones
 * stay for short-term references and move for long-term pins. */
static void test_device_private(void **state)
{
	struct env *e = *state;
	struct gdev *d = gdev_create(e->m, MEMORY_DEVICE_PRIVATE);
	unsigned long a = map_anon(e->mm, 5, RW);
	struct page *pages[1];

	touch(e->mm, a, 5, 40);
	assert_int_equal(gdev_to_device(d, e->mm, a, 5), 5);
	for (int i = 0; i < 5; i++)
		assert_true(is_device_private_entry(e->mm, a + i * PAGE_SIZE));
	/* Never returned: NOFAULT cannot bring it home. */
	assert_int_equal(
		pup_locked(e->mm, a + 4 * PAGE_SIZE, 1, FOLL_NOFAULT, pages),
		-EFAULT);
	assert_int_equal(get_user_pages_fast_only(e->mm, a, 1, 0, pages), 0);
	assert_int_equal(gup_locked(e->mm, a, 1, FOLL_WRITE, pages), 1);
	assert_false(is_zone_device_page(pages[0]));
	assert_int_equal(dma_read(pages[0], 0), 40);
	put_page(pages[0]);
	assert_int_equal(
		get_user_pages_fast(e->mm, a + PAGE_SIZE, 1, FOLL_WRITE, pages),
		1);
	assert_false(is_zone_device_page(pages[0]));
	assert_int_equal(dma_read(pages[0], 0), 41);
	put_page(pages[0]);
	assert_int_equal(pin_user_pages_fast(e->mm, a + 2 * PAGE_SIZE, 1,
					     FOLL_WRITE | FOLL_LONGTERM, pages),
			 1);
	assert_false(is_zone_device_page(pages[0]));
	assert_int_equal(dma_read(pages[0], 0), 42);
	unpin_user_page(pages[0]);
	assert_int_equal(
		pup_locked(e->mm, a + 3 * PAGE_SIZE, 1, FOLL_LONGTERM, pages),
		1);
	assert_false(is_zone_device_page(pages[0]));
	assert_ptr_equal(mapped_page(e->mm, a + 3 * PAGE_SIZE), pages[0]);
	assert_int_equal(dma_read(pages[0], 0), 43);
	unpin_user_page(pages[0]);
	for (int i = 0; i < 4; i++)
		assert_int_equal(peek(e->mm, a + i * PAGE_SIZE), 40 + i);
	assert_true(is_device_private_entry(e->mm, a + 4 * PAGE_SIZE));
	gdev_destroy(d);
	assert_int_equal(peek(e->mm, a + 4 * PAGE_SIZE), 44);
}

static void test_device_coherent(void **state)
{
	struct env *e = *state;
	struct gdev *d = gdev_create(e->m, MEMORY_DEVICE_COHERENT);
	unsigned long a = map_anon(e->mm, 4, RW);
	struct page *pages[4];

	touch(e->mm, a, 4, 50);
	assert_int_equal(gdev_to_device(d, e->mm, a, 4), 4);
	/* Short-term: the device page itself. */
	assert_int_equal(gup_locked(e->mm, a, 1, FOLL_WRITE, pages), 1);
	assert_true(is_device_coherent_page(pages[0]));
	put_page(pages[0]);
	assert_int_equal(
		get_user_pages_fast(e->mm, a + PAGE_SIZE, 1, FOLL_WRITE, pages),
		1);
	assert_true(is_device_coherent_page(pages[0]));
	put_page(pages[0]);
	assert_int_equal(pin_user_pages_fast(e->mm, a + PAGE_SIZE, 1, 0, pages),
			 1);
	assert_true(is_device_coherent_page(pages[0]));
	unpin_user_page(pages[0]);
	assert_true(is_device_coherent_page(mapped_page(e->mm, a)));
	/* Long-term: migrated to system memory first. */
	assert_int_equal(pin_user_pages_fast(e->mm, a + 2 * PAGE_SIZE, 1,
					     FOLL_WRITE | FOLL_LONGTERM, pages),
			 1);
	assert_false(is_zone_device_page(pages[0]));
	assert_true(folio_is_longterm_pinnable(page_folio(pages[0])));
	assert_ptr_equal(mapped_page(e->mm, a + 2 * PAGE_SIZE), pages[0]);
	assert_int_equal(dma_read(pages[0], 0), 52);
	unpin_user_page(pages[0]);
	assert_int_equal(pup_locked(e->mm, a, 4, FOLL_LONGTERM, pages), 4);
	for (int i = 0; i < 4; i++) {
		assert_false(is_zone_device_page(pages[i]));
		assert_int_equal(dma_read(pages[i], 0), 50 + i);
	}
	unpin_user_pages(pages, 4);
	gdev_destroy(d);
	assert_int_equal(pins_outstanding(e->m), 0);
}

static void test_p2pdma(void **state)
{
	struct env *e = *state;
	struct gdev *d = gdev_create(e->m, MEMORY_DEVICE_PCI_P2PDMA);
	unsigned long a = map_anon(e->mm, 2, RW);
	struct folio *bar = page_folio(pfn_to_page(e->m, d->base_pfn));
	struct page *old, *pages[2];
	spinlock_t *ptl;
	pte_t *pte;

	/* A P2PDMA allocator hands a free BAR page out with one reference. */
	assert_int_equal(folio_ref_count(bar), 0);
	atomic_store(&bar->page._refcount, 1);
	/* "Map" it as a driver's mmap would (vm_insert_page() into a
	 * VM_MIXEDMAP VMA): it replaces a page. */
	touch(e->mm, a, 2, 1);
	mmap_write_lock(e->mm);
	vma_lookup(e->mm, a)->vm_flags |= VM_MIXEDMAP;
	pte = pte_offset_map_lock(e->mm, mm_find_pmd(e->mm, a), a, &ptl);
	old = pfn_to_page(e->m, pte_pfn(ptep_get(pte)));
	ptep_clear_flush(e->mm, a, pte);
	folio_get(bar);
	atomic_fetch_add(&bar->page._mapcount, 1);
	set_pte(pte, pfn_pte(folio_pfn(bar), _PAGE_YOUNG));
	spin_unlock(ptl);
	atomic_fetch_sub(&old->_mapcount, 1);
	put_page(old);
	mmap_write_unlock(e->mm);

	assert_int_equal(pup_locked(e->mm, a, 2, 0, pages), -EREMOTEIO);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 2, 0, pages),
			 -EREMOTEIO);
	assert_int_equal(gup_locked(e->mm, a, 1, 0, pages), -EREMOTEIO);
	assert_int_equal(get_user_pages_fast_only(e->mm, a, 1, 0, pages), 0);
	assert_int_equal(
		pin_user_pages_fast(e->mm, a, 2, FOLL_PCI_P2PDMA, pages), 2);
	assert_ptr_equal(pages[0], &bar->page);
	unpin_user_pages(pages, 2);
	assert_int_equal(pup_locked(e->mm, a, 1, FOLL_PCI_P2PDMA, pages), 1);
	unpin_user_page(pages[0]);
	assert_int_equal(
		get_user_pages_fast_only(e->mm, a, 1, FOLL_PCI_P2PDMA, pages),
		1);
	put_page(pages[0]);
	/* The page after the BAR page stops a walk that may not take it. */
	assert_int_equal(pup_locked(e->mm, a + PAGE_SIZE, 1, 0, pages), 1);
	unpin_user_page(pages[0]);
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_munmap(e->mm, a, 2 * PAGE_SIZE));
	assert_int_equal(folio_ref_count(bar), 1);
	folio_put(bar);
	gdev_destroy(d);
}

static int env_setup_movable(void **state)
{
	return env_setup_mb(state, 96, 48);
}

static bool page_in_movable(struct page *page)
{
	return page_folio(page)->page.zone == ZONE_MOVABLE;
}

static void test_longterm_movable(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 8, RW);
	unsigned long t = thp_region(e->mm, 1);
	long h =
		hetmm_mmap(e->mm, 0, SZ_2M, RW, PRIV_ANON | MAP_HUGETLB, -1, 0);
	struct page *pages[8], *before;
	long f;

	touch(e->mm, a, 8, 60);
	before = mapped_page(e->mm, a);
	assert_true(page_in_movable(before));
	/* Short-term pins stay where the page is. */
	assert_int_equal(pin_user_pages_fast(e->mm, a, 8, FOLL_WRITE, pages),
			 8);
	assert_ptr_equal(pages[0], before);
	unpin_user_pages(pages, 8);
	/* Long-term: moved to ZONE_NORMAL, data and mapping follow. */
	assert_int_equal(pin_user_pages_fast(e->mm, a, 8,
					     FOLL_WRITE | FOLL_LONGTERM, pages),
			 8);
	for (int i = 0; i < 8; i++) {
		assert_false(page_in_movable(pages[i]));
		assert_ptr_equal(mapped_page(e->mm, a + i * PAGE_SIZE),
				 pages[i]);
		assert_int_equal(dma_read(pages[i], 0), 60 + i);
		assert_true(PageAnonExclusive(pages[i]));
	}
	/* Coherent both ways. */
	poke(e->mm, a, 1);
	assert_int_equal(dma_read(pages[0], 0), 1);
	unpin_user_pages(pages, 8);
	/* A R/O long-term pin too (the fast path refuses movable pages). */
	touch(e->mm, a, 1, 9);
	assert_int_equal(pup_locked(e->mm, a, 1, FOLL_LONGTERM, pages), 1);
	assert_false(page_in_movable(pages[0]));
	unpin_user_page(pages[0]);

	/* A THP moves as a whole. */
	touch(e->mm, t, 1, 70);
	assert_true(page_in_movable(mapped_page(e->mm, t)));
	assert_int_equal(pin_user_pages_fast(e->mm, t + 5 * PAGE_SIZE, 2,
					     FOLL_LONGTERM, pages),
			 2);
	assert_false(page_in_movable(pages[0]));
	assert_true(folio_test_large(page_folio(pages[0])));
	assert_true(pmd_is_leaf(e->mm, t));
	assert_int_equal(dma_read(page_folio(pages[0])->page.mapping ?
					  &page_folio(pages[0])->page :
					  pages[0],
				  0),
			 70);
	unpin_user_pages(pages, 2);

	/* hugetlb too. */
	assert_true(h > 0);
	touch(e->mm, (unsigned long)h, 1, 80);
	assert_int_equal(pin_user_pages_fast(e->mm, (unsigned long)h, 1,
					     FOLL_WRITE | FOLL_LONGTERM, pages),
			 1);
	assert_false(page_in_movable(pages[0]));
	assert_true(folio_test_hugetlb(page_folio(pages[0])));
	assert_int_equal(dma_read(pages[0], 0), 80);
	unpin_user_page(pages[0]);

	/* A page held by a short-term pin cannot move: -ENOMEM, as a
	 * failed migrate_pages(). */
	touch(e->mm, a + PAGE_SIZE, 1, 1);
	ASSERT_OK(hetmm_munmap(e->mm, a + 2 * PAGE_SIZE, 6 * PAGE_SIZE));
	f = hetmm_mmap(e->mm, a + 2 * PAGE_SIZE, PAGE_SIZE, RW,
		       PRIV_ANON | MAP_FIXED, -1, 0);
	assert_int_equal(f, (long)(a + 2 * PAGE_SIZE));
	touch(e->mm, (unsigned long)f, 1, 1);
	assert_true(page_in_movable(mapped_page(e->mm, (unsigned long)f)));
	assert_int_equal(pin_user_pages_fast(e->mm, (unsigned long)f, 1,
					     FOLL_WRITE, pages),
			 1);
	assert_int_equal(pin_user_pages_fast(e->mm, (unsigned long)f, 1,
					     FOLL_WRITE | FOLL_LONGTERM,
					     pages + 1),
			 -ENOMEM);
	unpin_user_page(pages[0]);

	assert_int_equal(pins_outstanding(e->m), 0);
}

/*
 * A shared file mapping of @npages pages of the file @path in @mm (the
 * file created, sized and filled with bytes 'A' + page index if @fill),
 * every page faulted in by a read. Returns the address; *@fdp the fd.
 */
static unsigned long map_file(struct mm_struct *mm, const char *path,
			      unsigned long npages, int prot, int flags,
			      bool fill, int *fdp)
{
	int fd = hetmm_open(mm, path, O_RDWR | O_CREAT);
	long f;

	assert_true(fd >= 0);
	if (fill) {
		ASSERT_OK(hetmm_ftruncate(mm, fd, (off_t)(npages * PAGE_SIZE)));
		for (unsigned long i = 0; i < npages; i++) {
			char b = (char)('A' + i);

			assert_int_equal(hetmm_pwrite(mm, fd, &b, 1,
						      (off_t)(i * PAGE_SIZE + 9)),
					 1);
		}
	}
	f = hetmm_mmap(mm, 0, npages * PAGE_SIZE, prot, flags, fd, 0);
	assert_true(f > 0);
	for (unsigned long i = 0; i < npages; i++)
		(void)peek(mm, (unsigned long)f + i * PAGE_SIZE);
	*fdp = fd;
	return (unsigned long)f;
}

static char pread_byte(struct mm_struct *mm, int fd, off_t off)
{
	char b = 0;

	assert_int_equal(hetmm_pread(mm, fd, &b, 1, off), 1);
	return b;
}

/*
 * Page cache in ZONE_MOVABLE, mapped shared by two processes: a long-term
 * pin migrates the folio first (unmapped from both, copied, the cache slot
 * handed over, both remapped), then pins the copy, as the kernel does.
 */
static void test_longterm_movable_pagecache(void **state)
{
	struct env *e = *state;
	struct mm_struct *mm2 = hetmm_process_create(e->m);
	struct page *pages[2], *before;
	unsigned long a, b;
	int fd, fd2;

	assert_false(IS_ERR(mm2));
	a = map_file(e->mm, "/shm", 2, RW, MAP_SHARED, true, &fd);
	b = map_file(mm2, "/shm", 2, PROT_READ, MAP_SHARED, false, &fd2);
	ASSERT_OK(hetmm_unlink(e->mm, "/shm"));
	poke(e->mm, a + PAGE_SIZE + 3, 'w'); /* dirty page 1 via the PTE */
	before = mapped_page(e->mm, a + PAGE_SIZE);
	assert_ptr_equal(mapped_page(mm2, b + PAGE_SIZE), before);
	if (!page_in_movable(before)) {
		hetmm_exit(mm2);
		skip(); /* the cache did not use ZONE_MOVABLE */
		return;
	}
	assert_int_equal(pin_user_pages_fast(e->mm, a, 2,
					     FOLL_WRITE | FOLL_LONGTERM, pages),
			 2);
	for (int i = 0; i < 2; i++) {
		unsigned long off = (unsigned long)i * PAGE_SIZE;

		assert_false(page_in_movable(pages[i]));
		assert_false(folio_test_anon(page_folio(pages[i])));
		assert_ptr_equal(mapped_page(e->mm, a + off), pages[i]);
		assert_ptr_equal(mapped_page(mm2, b + off), pages[i]);
		assert_int_equal(dma_read(pages[i], 9), 'A' + i);
		assert_int_equal(pread_byte(e->mm, fd, (off_t)off + 9), 'A' + i);
		assert_int_equal(peek(mm2, b + off + 9), 'A' + i);
	}
	assert_true(pages[1] != before);
	/* The dirty data and state moved with the slot. */
	assert_int_equal(pread_byte(mm2, fd2, PAGE_SIZE + 3), 'w');
	assert_true(folio_test_flag(page_folio(pages[1]), PG_dirty));
	assert_true(pte_write(lookup(e->mm, a + PAGE_SIZE)));
	/* Coherent both ways: the device writes, the CPUs write. */
	dma_write(pages[0], 100, 'd');
	assert_int_equal(peek(mm2, b + 100), 'd');
	assert_int_equal(pread_byte(mm2, fd2, 100), 'd');
	poke(e->mm, a + 200, 'c');
	assert_int_equal(dma_read(pages[0], 200), 'c');
	ASSERT_OK(hetmm_check(e->m));
	unpin_user_pages(pages, 2);
	assert_int_equal(pins_outstanding(e->m), 0);
	/* Pinning again finds nothing to move. */
	assert_int_equal(pin_user_pages_fast(e->mm, a, 2,
					     FOLL_WRITE | FOLL_LONGTERM, pages),
			 2);
	assert_ptr_equal(mapped_page(e->mm, a), pages[0]);
	unpin_user_pages(pages, 2);
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_close(mm2, fd2));
	hetmm_exit(mm2);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * A private file mapping: a long-term pin never keeps page cache there
 * (R/O pins unshare, writes COW), so the pin is an anon copy, moved off
 * ZONE_MOVABLE; the cached folio stays as it was.
 */
static void test_longterm_movable_pagecache_private(void **state)
{
	struct env *e = *state;
	struct page *pages[1], *cached;
	unsigned long a;
	int fd;

	a = map_file(e->mm, "/priv", 1, RW, MAP_PRIVATE, true, &fd);
	cached = mapped_page(e->mm, a);
	assert_false(folio_test_anon(page_folio(cached)));
	for (int w = 0; w < 2; w++) {
		assert_int_equal(pin_user_pages_fast(e->mm, a, 1,
						     (w ? FOLL_WRITE : 0) |
							     FOLL_LONGTERM,
						     pages),
				 1);
		assert_true(folio_test_anon(page_folio(pages[0])));
		assert_false(page_in_movable(pages[0]));
		assert_ptr_equal(mapped_page(e->mm, a), pages[0]);
		assert_int_equal(dma_read(pages[0], 9), 'A');
		unpin_user_page(pages[0]);
	}
	dma_write(pages[0], 9, 'z');
	assert_int_equal(peek(e->mm, a + 9), 'z');
	/* The file did not change, nor did its cached folio. */
	assert_int_equal(pread_byte(e->mm, fd, 9), 'A');
	assert_ptr_equal(page_folio(cached)->page.mapping != NULL, true);
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_unlink(e->mm, "/priv"));
	assert_int_equal(pins_outstanding(e->m), 0);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * An extra reference to a movable page-cache folio (a short-term GUP
 * reference here) makes folio_migrate_mapping() refuse (-EAGAIN); after
 * the retries the long-term pin fails as migrate_pages() failing does
 * (-ENOMEM), nothing pinned, nothing moved. Once the reference is gone
 * the pin migrates and succeeds.
 */
static void test_longterm_pagecache_busy(void **state)
{
	struct env *e = *state;
	struct page *pages[1], *ref[1], *before;
	struct folio *src, *dst;
	unsigned long a;
	int fd;

	a = map_file(e->mm, "/busy", 1, RW, MAP_SHARED, true, &fd);
	before = mapped_page(e->mm, a);
	if (!page_in_movable(before)) {
		skip();
		return;
	}
	assert_int_equal(get_user_pages_fast(e->mm, a, 1, 0, ref), 1);
	assert_ptr_equal(ref[0], before);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1,
					     FOLL_WRITE | FOLL_LONGTERM, pages),
			 -ENOMEM);
	assert_int_equal(pins_outstanding(e->m), 0);
	assert_ptr_equal(mapped_page(e->mm, a), before);
	assert_int_equal(pread_byte(e->mm, fd, 9), 'A');
	ASSERT_OK(hetmm_check(e->m));

	/* The step itself: -EAGAIN with the reference, 0 without. */
	src = page_folio(before);
	folio_get(src); /* isolation */
	dst = folio_alloc(e->m, GFP_KERNEL, 0);
	assert_non_null(dst);
	folio_lock(src);
	assert_true(folio_trylock(dst));
	mmap_read_lock(e->mm);
	assert_int_equal(migrate_pagecache_folio(dst, src), -EAGAIN);
	mmap_read_unlock(e->mm);
	assert_ptr_equal(mapped_page(e->mm, a), before);
	assert_null(dst->page.mapping);
	put_page(ref[0]);
	mmap_read_lock(e->mm);
	assert_int_equal(migrate_pagecache_folio(dst, src), 0);
	mmap_read_unlock(e->mm);
	folio_unlock(dst);
	folio_unlock(src);
	assert_null(src->page.mapping);
	assert_int_equal(folio_ref_count(src), 1);
	assert_ptr_equal(mapped_page(e->mm, a), &dst->page);
	folio_put(src);
	folio_put(dst);
	assert_int_equal(pread_byte(e->mm, fd, 9), 'A');
	assert_int_equal(peek(e->mm, a + 9), 'A');
	ASSERT_OK(hetmm_check(e->m));

	/* And through GUP: now nothing to move (dst is not movable). */
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1,
					     FOLL_WRITE | FOLL_LONGTERM, pages),
			 1);
	assert_ptr_equal(pages[0], &dst->page);
	unpin_user_page(pages[0]);
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_unlink(e->mm, "/busy"));
	ASSERT_OK(hetmm_check(e->m));
}

/* A short-term pin taken first makes the long-term one fail: retry. */
static void test_longterm_pagecache_pinned_retry(void **state)
{
	struct env *e = *state;
	struct page *pages[1], *st[1], *before;
	unsigned long a;
	int fd;

	a = map_file(e->mm, "/pinned", 1, RW, MAP_SHARED, true, &fd);
	before = mapped_page(e->mm, a);
	if (!page_in_movable(before)) {
		skip();
		return;
	}
	assert_int_equal(pin_user_pages_fast(e->mm, a, 1, FOLL_WRITE, st), 1);
	assert_int_equal(pup_locked(e->mm, a, 1, FOLL_WRITE | FOLL_LONGTERM,
				    pages),
			 -ENOMEM);
	assert_int_equal(pins_outstanding(e->m), 1);
	assert_ptr_equal(mapped_page(e->mm, a), before);
	unpin_user_page(st[0]);
	assert_int_equal(pup_locked(e->mm, a, 1, FOLL_WRITE | FOLL_LONGTERM,
				    pages),
			 1);
	assert_false(page_in_movable(pages[0]));
	assert_int_equal(dma_read(pages[0], 9), 'A');
	unpin_user_page(pages[0]);
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_unlink(e->mm, "/pinned"));
	assert_int_equal(pins_outstanding(e->m), 0);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * hugetlbfs, the large page cache memfs has: a 2 MiB folio in
 * ZONE_MOVABLE is migrated whole (PMD migration entries) before a
 * long-term pin, in both processes mapping it; memfd_pin_folios too.
 */
static void test_longterm_movable_pagecache_huge(void **state)
{
	struct env *e = *state;
	struct mm_struct *mm2 = hetmm_process_create(e->m);
	struct hetmm_fs *fs = hetmm_machine_fs(e->m);
	struct page *pages[2], *head;
	struct folio *folios[1];
	struct file *file;
	unsigned long a, b;
	pgoff_t off;
	int fd, fd2;
	long f;

	assert_false(IS_ERR(mm2));
	fd = hetmm_open_kind(e->mm, "/huge", O_RDWR | O_CREAT, 2);
	assert_true(fd >= 0);
	ASSERT_OK(hetmm_ftruncate(e->mm, fd, SZ_2M));
	assert_int_equal(hetmm_pwrite(e->mm, fd, "H", 1, PAGE_SIZE + 1), 1);
	fd2 = hetmm_open(mm2, "/huge", O_RDWR);
	assert_true(fd2 >= 0);
	f = hetmm_mmap(e->mm, 0, SZ_2M, RW, MAP_SHARED, fd, 0);
	assert_true(f > 0);
	a = (unsigned long)f;
	f = hetmm_mmap(mm2, 0, SZ_2M, PROT_READ, MAP_SHARED, fd2, 0);
	assert_true(f > 0);
	b = (unsigned long)f;
	assert_int_equal(peek(e->mm, a + PAGE_SIZE + 1), 'H');
	assert_int_equal(peek(mm2, b + PAGE_SIZE + 1), 'H');
	head = mapped_page(e->mm, a);
	if (!page_in_movable(head)) {
		hetmm_exit(mm2);
		skip();
		return;
	}
	assert_int_equal(pin_user_pages_fast(e->mm, a + PAGE_SIZE, 2,
					     FOLL_WRITE | FOLL_LONGTERM, pages),
			 2);
	assert_false(page_in_movable(pages[0]));
	assert_true(folio_test_hugetlb(page_folio(pages[0])));
	assert_ptr_equal(pages[1], pages[0] + 1);
	assert_true(pmd_is_leaf(e->mm, a) && pmd_is_leaf(mm2, b));
	assert_ptr_equal(mapped_page(e->mm, a + PAGE_SIZE), pages[0]);
	assert_ptr_equal(mapped_page(mm2, b + PAGE_SIZE), pages[0]);
	assert_int_equal(dma_read(pages[0], 1), 'H');
	dma_write(pages[1], 0, 'J');
	assert_int_equal(peek(mm2, b + 2 * PAGE_SIZE), 'J');
	assert_int_equal(pread_byte(mm2, fd2, 2 * PAGE_SIZE), 'J');
	ASSERT_OK(hetmm_check(e->m));
	unpin_user_pages(pages, 2);
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_close(mm2, fd2));
	hetmm_exit(mm2);
	ASSERT_OK(hetmm_check(e->m));

	/* memfd_pin_folios: a fresh movable cache folio moves too. */
	file = hetmm_fs_open(fs, "/memfd-mv", O_RDWR | O_CREAT,
			     HETMM_FS_TMPFS);
	assert_false(IS_ERR(file));
	ASSERT_OK(file_truncate(file, PAGE_SIZE));
	assert_int_equal(file_pwrite(file, "m", 1, 5), 1);
	assert_int_equal(memfd_pin_folios(file, 0, 10, folios, 1, &off), 1);
	assert_false(folio_zone(folios[0]) == ZONE_MOVABLE);
	assert_int_equal(((char *)folio_address(folios[0]))[5], 'm');
	unpin_folios(folios, 1);
	fput(file);
	ASSERT_OK(hetmm_fs_unlink(fs, "/memfd-mv"));
	ASSERT_OK(hetmm_unlink(e->mm, "/huge"));
	assert_int_equal(pins_outstanding(e->m), 0);
	ASSERT_OK(hetmm_check(e->m));
}

/* --------------------------------------------------------- other flags */

static void test_nowait_migration_entry(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 1, RW);
	struct page *pages[1];
	struct folio *f;

	touch(e->mm, a, 1, 7);
	f = page_folio(mapped_page(e->mm, a));
	/* Freeze the page under a migration (its entry waits for us). */
	folio_get(f);
	folio_lock(f);
	try_to_migrate(f);
	assert_true(is_migration_kind(pte_kind(lookup(e->mm, a))));
	/* FOLL_NOWAIT: nothing done, not an error. */
	assert_int_equal(pup_locked(e->mm, a, 1, FOLL_NOWAIT, pages), 0);
	assert_int_equal(gup_locked(e->mm, a, 1, FOLL_NOWAIT, pages), 0);
	assert_int_equal(get_user_pages_fast_only(e->mm, a, 1, 0, pages), 0);
	remove_migration_ptes(f, f);
	folio_unlock(f);
	folio_put(f);
	assert_int_equal(pup_locked(e->mm, a, 1, FOLL_NOWAIT, pages), 1);
	assert_ptr_equal(pages[0], &f->page);
	unpin_user_page(pages[0]);
}

static void test_hwpoison_entry(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 2, RW);
	struct page *pages[2];
	spinlock_t *ptl;
	pte_t *pte;

	touch(e->mm, a, 1, 1);
	mmap_write_lock(e->mm);
	pte = pte_offset_map_lock(e->mm, mm_find_pmd(e->mm, a), a + PAGE_SIZE,
				  &ptl);
	set_pte(pte, softleaf_to_pte(make_hwpoison_entry(0)));
	spin_unlock(ptl);
	mmap_write_unlock(e->mm);
	assert_int_equal(pup_locked(e->mm, a + PAGE_SIZE, 1, 0, pages),
			 -EFAULT);
	assert_int_equal(
		gup_locked(e->mm, a + PAGE_SIZE, 1, FOLL_HWPOISON, pages),
		-EHWPOISON);
	/* The page before it is still returned. */
	assert_int_equal(gup_locked(e->mm, a, 2, FOLL_HWPOISON, pages), 1);
	put_page(pages[0]);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 2, 0, pages), 1);
	unpin_user_page(pages[0]);
	ASSERT_OK(hetmm_munmap(e->mm, a, 2 * PAGE_SIZE));
}

static void test_dump_page(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 3, RW);
	struct page *p;
	int locked = 0;
	long f;

	/* A hole and the zero page are left out of a dump. */
	assert_null(get_dump_page(e->mm, a, &locked));
	assert_int_equal(locked, 0);
	assert_int_equal(peek(e->mm, a + PAGE_SIZE), 0);
	assert_null(get_dump_page(e->mm, a + PAGE_SIZE, &locked));
	touch(e->mm, a + 2 * PAGE_SIZE, 1, 3);
	p = get_dump_page(e->mm, a + 2 * PAGE_SIZE, &locked);
	assert_ptr_equal(p, mapped_page(e->mm, a + 2 * PAGE_SIZE));
	put_page(p);
	/* FOLL_FORCE: PROT_NONE memory dumps too. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, 3 * PAGE_SIZE, PROT_NONE));
	p = get_dump_page(e->mm, a + 2 * PAGE_SIZE, &locked);
	assert_non_null(p);
	put_page(p);
	/* A hole of a file mapping is read in (it has a fault handler). */
	f = hetmm_mmap(e->mm, 0, PAGE_SIZE, RW, MAP_SHARED | MAP_ANONYMOUS, -1,
		       0);
	assert_true(f > 0);
	p = get_dump_page(e->mm, (unsigned long)f, &locked);
	assert_non_null(p);
	put_page(p);
	/* A hole of private hugetlb memory is not. */
	f = hetmm_mmap(e->mm, 0, SZ_2M, RW, PRIV_ANON | MAP_HUGETLB, -1, 0);
	assert_true(f > 0);
	assert_null(get_dump_page(e->mm, (unsigned long)f, &locked));
}

static void test_split_pmd(void **state)
{
	struct env *e = *state;
	unsigned long t = thp_region(e->mm, 1);
	struct page *pages[4];
	struct folio *f;

	touch(e->mm, t, 1, 1);
	assert_true(pmd_is_leaf(e->mm, t));
	f = page_folio(mapped_page(e->mm, t));
	assert_int_equal(gup_locked(e->mm, t + 3 * PAGE_SIZE, 4,
				    FOLL_SPLIT_PMD | FOLL_WRITE, pages),
			 4);
	assert_false(pmd_is_leaf(e->mm, t));
	assert_ptr_equal(page_folio(pages[0]), f);
	assert_ptr_equal(pages[0], folio_page(f, 3));
	put_pages(pages, 4);
	/* Pinning a PTE-mapped THP: per-page pins of the large folio. */
	assert_int_equal(pin_user_pages_fast(e->mm, t, 4, 0, pages), 4);
	assert_int_equal(folio_pincount(f), 4);
	unpin_user_pages(pages, 4);
}

static void test_remote(void **state)
{
	struct env *e = *state;
	struct mm_struct *other = hetmm_process_create(e->m);
	unsigned long a;
	struct page *pages[3];
	int locked = 1;

	assert_false(IS_ERR(other));
	a = map_anon(other, 3, RW);
	mmap_read_lock(other);
	assert_int_equal(
		get_user_pages_remote(other, a, 3, FOLL_WRITE, pages, NULL), 3);
	put_pages(pages, 3);
	assert_int_equal(
		pin_user_pages_remote(other, a, 3, FOLL_WRITE, pages, &locked),
		3);
	assert_int_equal(locked, 1);
	mmap_read_unlock(other);
	assert_true(mm_has_pinned(other));
	assert_false(mm_has_pinned(e->mm));
	unpin_user_pages_dirty_lock(pages, 3, true);
	assert_int_equal(pin_user_pages_unlocked(other, a, 3, pages, 0), 3);
	unpin_user_pages(pages, 3);
	assert_int_equal(get_user_pages_unlocked(other, a, 3, pages, 0), 3);
	put_pages(pages, 3);
	hetmm_exit(other);
}

/* For the same page tables, both paths name the same pages. */
static void test_fast_slow_agree(void **state)
{
	struct env *e = *state;
	unsigned long t = thp_region(e->mm, 1);
	unsigned long a = map_anon(e->mm, 32, RW);
	struct page *slow[32], *fast[32];
	struct mm_struct *child;

	touch(e->mm, t, 1, 1);
	touch(e->mm, a, 16, 1);
	for (int i = 16; i < 24; i++)
		peek(e->mm, a + i * PAGE_SIZE); /* the zero page */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	for (int w = 0; w < 2; w++) {
		unsigned int fl = w ? FOLL_WRITE : 0;

		assert_int_equal(gup_locked(e->mm, a, 32, fl, slow), 32);
		assert_int_equal(get_user_pages_fast(e->mm, a, 32, fl, fast),
				 32);
		assert_memory_equal(slow, fast, sizeof(slow));
		put_pages(slow, 32);
		put_pages(fast, 32);
		assert_int_equal(gup_locked(e->mm, t + SZ_2M - 16 * PAGE_SIZE,
					    16, fl, slow),
				 16);
		assert_int_equal(get_user_pages_fast(e->mm,
						     t + SZ_2M - 16 * PAGE_SIZE,
						     16, fl, fast),
				 16);
		assert_memory_equal(slow, fast, 16 * sizeof(*slow));
		put_pages(slow, 16);
		put_pages(fast, 16);
	}
	/* Pins: the slow path unshares first; then both agree. */
	assert_int_equal(pup_locked(e->mm, a, 32, 0, slow), 32);
	assert_int_equal(pin_user_pages_fast(e->mm, a, 32, 0, fast), 32);
	assert_memory_equal(slow, fast, sizeof(slow));
	for (int i = 0; i < 16; i++)
		assert_true(PageAnonExclusive(slow[i]));
	unpin_user_pages(slow, 32);
	unpin_user_pages(fast, 32);
	hetmm_exit(child);
	assert_int_equal(pins_outstanding(e->m), 0);
}

static void test_file_private_longterm(void **state)
{
	struct env *e = *state;
	int fd = hetmm_open(e->mm, "/f", O_RDWR | O_CREAT);
	struct page *pages[2];
	struct folio *cache;
	long p, s;

	assert_true(fd >= 0);
	assert_int_equal(hetmm_pwrite(e->mm, fd, "ab", 2, 0), 2);
	ASSERT_OK(hetmm_ftruncate(e->mm, fd, 2 * PAGE_SIZE));
	p = hetmm_mmap(e->mm, 0, 2 * PAGE_SIZE, RW, MAP_PRIVATE, fd, 0);
	s = hetmm_mmap(e->mm, 0, 2 * PAGE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p > 0 && s > 0);
	assert_int_equal(peek(e->mm, (unsigned long)p), 'a');
	cache = page_folio(mapped_page(e->mm, (unsigned long)p));
	assert_false(folio_test_anon(cache));
	/* Short-term R/O pin: the page-cache page itself. */
	assert_int_equal(pup_locked(e->mm, (unsigned long)p, 1, 0, pages), 1);
	assert_ptr_equal(page_folio(pages[0]), cache);
	unpin_user_page(pages[0]);
	/* R/O long-term pin in a COW mapping: unshared into anon. */
	assert_int_equal(pin_user_pages_fast(e->mm, (unsigned long)p, 1,
					     FOLL_LONGTERM, pages),
			 1);
	assert_true(folio_test_anon(page_folio(pages[0])));
	assert_ptr_equal(mapped_page(e->mm, (unsigned long)p), pages[0]);
	poke(e->mm, (unsigned long)p, 'z');
	assert_int_equal(dma_read(pages[0], 0), 'z');
	/* The file (and the shared view) did not change. */
	assert_int_equal(peek(e->mm, (unsigned long)s), 'a');
	unpin_user_page(pages[0]);
	/* The shared mapping: the cache page, no unshare (not COW). */
	assert_int_equal(pin_user_pages_fast(e->mm, (unsigned long)s, 1,
					     FOLL_LONGTERM, pages),
			 1);
	assert_ptr_equal(page_folio(pages[0]), cache);
	unpin_user_page(pages[0]);
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_unlink(e->mm, "/f"));
}

static void test_memfd_pin_folios(void **state)
{
	struct env *e = *state;
	struct hetmm_fs *fs = hetmm_machine_fs(e->m);
	struct file *f =
		hetmm_fs_open(fs, "/memfd", O_RDWR | O_CREAT, HETMM_FS_TMPFS);
	struct file *h = hetmm_fs_open(fs, "/memfd-huge", O_RDWR | O_CREAT,
				       HETMM_FS_HUGETLBFS);
	struct file *w = hetmm_fs_open(fs, "/wbfile", O_RDWR | O_CREAT,
				       HETMM_FS_WRITEBACK);
	struct folio *folios[4];
	pgoff_t off = 0;

	assert_false(IS_ERR(f) || IS_ERR(h) || IS_ERR(w));
	ASSERT_OK(file_truncate(f, 3 * PAGE_SIZE));
	ASSERT_OK(file_truncate(h, 2 * SZ_2M));
	ASSERT_OK(file_truncate(w, PAGE_SIZE));
	assert_int_equal(file_pwrite(f, "xyz", 3, PAGE_SIZE + 7), 3);
	/* Missing folios are created; each folio pinned once. */
	assert_int_equal(
		memfd_pin_folios(f, 100, 2 * PAGE_SIZE + 5, folios, 4, &off),
		3);
	assert_int_equal(off, 100);
	assert_int_equal(((char *)folio_address(folios[1]))[7], 'x');
	for (int i = 0; i < 3; i++)
		assert_true(folio_maybe_dma_pinned(folios[i]));
	assert_int_equal(pins_outstanding(e->m), 3);
	unpin_folios(folios, 3);
	/* Fewer slots than folios. */
	assert_int_equal(
		memfd_pin_folios(f, 0, 3 * PAGE_SIZE - 1, folios, 2, &off), 2);
	unpin_folios(folios, 2);
	/* hugetlbfs: one 2 MiB folio, the offset inside it. */
	assert_int_equal(
		memfd_pin_folios(h, SZ_2M + 10, SZ_2M + 20, folios, 4, &off),
		1);
	assert_int_equal(off, 10);
	assert_true(folio_test_hugetlb(folios[0]));
	assert_int_equal(folio_pincount(folios[0]), 1);
	unpin_folio(folios[0]);
	/* The kernel's -EINVAL cases. */
	assert_int_equal(memfd_pin_folios(f, 10, 5, folios, 4, &off), -EINVAL);
	assert_int_equal(memfd_pin_folios(f, -1, 5, folios, 4, &off), -EINVAL);
	assert_int_equal(memfd_pin_folios(f, 0, 5, folios, 0, &off), -EINVAL);
	assert_int_equal(memfd_pin_folios(f, 0, 3 * PAGE_SIZE, folios, 4, &off),
			 -EINVAL);
	assert_int_equal(memfd_pin_folios(w, 0, 5, folios, 4, &off), -EINVAL);
	assert_int_equal(pins_outstanding(e->m), 0);
	fput(f);
	fput(h);
	fput(w);
	ASSERT_OK(hetmm_fs_unlink(fs, "/memfd"));
	ASSERT_OK(hetmm_fs_unlink(fs, "/memfd-huge"));
	ASSERT_OK(hetmm_fs_unlink(fs, "/wbfile"));
}

/* --------------------------------------------------------- range output */

struct rbufs {
	void *buf[8];
	struct gup_range_output out;
};

static void rbufs_init(struct rbufs *r, unsigned int nbufs,
		       enum gup_range_format fmt)
{
	memset(r, 0, sizeof(*r));
	for (unsigned int i = 0; i < nbufs; i++) {
		r->buf[i] = aligned_alloc(4096, GUP_RANGE_BUF_SIZE);
		assert_non_null(r->buf[i]);
		/* Garbage, so a missing terminator shows. */
		memset(r->buf[i], 0xa5, GUP_RANGE_BUF_SIZE);
	}
	r->out.bufs = r->buf;
	r->out.nr_bufs = nbufs;
	r->out.format = fmt;
}

static void rbufs_free(struct rbufs *r)
{
	for (unsigned int i = 0; i < 8; i++)
		free(r->buf[i]);
}

/*
 * The pages an output names, in order (decoded independently of
 * gup_pfn_iter_next for PFN, which is cross-checked), checking the
 * encoding rules and that runs are maximal.
 */
static unsigned long ranges_to_pages(const struct gup_range_output *o,
				     struct page **pages, unsigned long max)
{
	struct hetmm_machine *m = o->machine;
	unsigned long n = 0, entries = 0;

	if (o->format == GUP_RANGE_FOLIO) {
		const struct gup_folio_range *prev = NULL;

		for (unsigned long j = 0; j < o->nr_entries; j++) {
			const struct gup_folio_range *r =
				(const struct gup_folio_range *)
					o->bufs[j / GUP_RANGES_PER_BUF] +
				j % GUP_RANGES_PER_BUF;

			assert_true(r->nr_pages >= 1);
			assert_true(r->offset + r->nr_pages <=
				    folio_nr_pages(r->folio));
			if (prev)
				assert_false(prev->folio == r->folio &&
					     prev->offset + prev->nr_pages ==
						     r->offset);
			for (uint32_t k = 0; k < r->nr_pages; k++) {
				assert_true(n < max);
				pages[n++] =
					folio_page(r->folio, r->offset + k);
			}
			prev = r;
		}
		return n;
	}
	if (o->format == GUP_RANGE_PHYS) {
		const struct phys_vec *prev = NULL;

		for (unsigned long j = 0; j < o->nr_entries; j++) {
			const struct phys_vec *r =
				(const struct phys_vec *)
					o->bufs[j / GUP_RANGES_PER_BUF] +
				j % GUP_RANGES_PER_BUF;

			assert_true(r->len && !(r->len & ~PAGE_MASK) &&
				    !(r->paddr & ~PAGE_MASK));
			if (prev)
				assert_true(prev->paddr + prev->len !=
					    r->paddr);
			for (uint64_t k = 0; k < r->len >> PAGE_SHIFT; k++) {
				assert_true(n < max);
				pages[n++] = pfn_to_page(
					m, (unsigned long)(r->paddr >>
							   PAGE_SHIFT) +
						   (unsigned long)k);
			}
			prev = r;
		}
		return n;
	}
	/* PFN: walk the raw words. */
	struct gup_pfn_iter it = { 0 };
	for (unsigned int b = 0; b < o->nr_bufs && entries < o->nr_entries;
	     b++) {
		const uint64_t *w = o->bufs[b];
		unsigned int front = 0, back = 0;
		unsigned long last_end = (unsigned long)-1;

		while (front + back < GUP_PFN_WORDS_PER_BUF && w[front] &&
		       entries < o->nr_entries) {
			uint64_t word = w[front++];
			unsigned long pfn =
				(unsigned long)(word & GUP_PFN_MASK);
			unsigned long nr, ipfn, inr;

			assert_int_equal((word >> 52) & 0x3ff, 0);
			switch (word >> GUP_PFN_SIZE_SHIFT) {
			case GUP_PFN_4K:
				nr = 1;
				break;
			case GUP_PFN_2M:
				nr = HPAGE_PMD_NR;
				assert_true(IS_ALIGNED(pfn, HPAGE_PMD_NR));
				break;
			case GUP_PFN_EXT:
				nr = (unsigned long)
					w[GUP_PFN_WORDS_PER_BUF - ++back];
				/* Sizes a PFN word can say are not EXT. */
				assert_true(nr >= 2);
				assert_false(nr == HPAGE_PMD_NR &&
					     IS_ALIGNED(pfn, HPAGE_PMD_NR));
				break;
			default:
				fail_msg("bad size code");
				return 0;
			}
			assert_true(pfn != last_end); /* maximal in a page */
			last_end = pfn + nr;
			assert_true(gup_pfn_iter_next(o, &it, &ipfn, &inr));
			assert_int_equal(ipfn, pfn);
			assert_int_equal(inr, nr);
			for (unsigned long k = 0; k < nr; k++) {
				assert_true(n < max);
				pages[n++] = pfn_to_page(m, pfn + k);
			}
			entries++;
		}
	}
	assert_int_equal(entries, o->nr_entries);
	{
		unsigned long x, y;

		assert_false(gup_pfn_iter_next(o, &it, &x, &y));
	}
	return n;
}

/* Pin [a, a + n) with @fmt and check the output against the page tables. */
static long ranges_check(struct env *e, struct rbufs *r, unsigned long a,
			 unsigned long n, unsigned int flags)
{
	struct page **got = calloc(n, sizeof(*got));
	long ret;

	assert_non_null(got);
	ret = pin_user_pages_ranges(e->mm, a, n, flags, &r->out);
	if (ret > 0) {
		assert_int_equal(ret, r->out.nr_pages);
		assert_int_equal(r->out.next,
				 a + ((unsigned long)ret << PAGE_SHIFT));
		assert_int_equal(ranges_to_pages(&r->out, got, n),
				 (unsigned long)ret);
		for (long i = 0; i < ret; i++)
			assert_ptr_equal(got[i],
					 mapped_page(e->mm, a + i * PAGE_SIZE));
	}
	free(got);
	return ret;
}

static void test_ranges_formats(void **state)
{
	struct env *e = *state;
	unsigned long t = thp_region(e->mm, 2);
	unsigned long a = map_anon(e->mm, 64, RW);
	struct rbufs r;

	touch(e->mm, t, 1, 1);
	touch(e->mm, t + SZ_2M, 1, 1);
	touch(e->mm, a, 64, 1);
	for (int fmt = GUP_RANGE_FOLIO; fmt <= GUP_RANGE_PFN; fmt++) {
		struct folio *f0 = page_folio(mapped_page(e->mm, t));

		rbufs_init(&r, 2, fmt);
		/* Two THPs from the middle of the first. */
		assert_int_equal(ranges_check(e, &r, t + 100 * PAGE_SIZE,
					      2 * HPAGE_PMD_NR - 100,
					      FOLL_WRITE),
				 2 * HPAGE_PMD_NR - 100);
		assert_int_equal(folio_pincount(f0), HPAGE_PMD_NR - 100);
		if (fmt == GUP_RANGE_FOLIO)
			assert_int_equal(r.out.nr_entries, 2);
		else
			assert_true(r.out.nr_entries <= 2);
		unpin_user_ranges(&r.out, true);
		assert_int_equal(folio_pincount(f0), 0);
		/* Small pages: one folio each; physical runs may merge. */
		assert_int_equal(ranges_check(e, &r, a, 64, 0), 64);
		if (fmt == GUP_RANGE_FOLIO)
			assert_int_equal(r.out.nr_entries, 64);
		assert_int_equal(pins_outstanding(e->m), 64);
		unpin_user_ranges(&r.out, false);
		assert_int_equal(pins_outstanding(e->m), 0);
		rbufs_free(&r);
	}
	ASSERT_OK(hetmm_check(e->m));
}

/* A region of 4 KiB pages starting on a 2 MiB boundary. */
static unsigned long small_region_aligned(struct mm_struct *mm,
					  unsigned long n2m)
{
	long a = hetmm_mmap(mm, 0, (n2m + 1) * SZ_2M, RW, PRIV_ANON, -1, 0);
	unsigned long al;

	assert_true(a > 0);
	al = ALIGN((unsigned long)a, SZ_2M);
	ASSERT_OK(hetmm_madvise(mm, (unsigned long)a, (n2m + 1) * SZ_2M,
				MADV_NOHUGEPAGE));
	return al;
}

static void test_ranges_resume(void **state)
{
	struct env *e = *state;
	const unsigned long total = 3 * HPAGE_PMD_NR + 77;
	unsigned long a = small_region_aligned(e->mm, 4), done;
	struct rbufs r;

	touch(e->mm, a, total, 1);
	/* One output page of FOLIO entries: 256 pages a call, cut mid-way
	 * (nothing else would fit a 2 MiB chunk). */
	rbufs_init(&r, 1, GUP_RANGE_FOLIO);
	for (done = 0; done < total;) {
		long n = ranges_check(e, &r, a + done * PAGE_SIZE, total - done,
				      FOLL_WRITE);

		assert_true(n > 0 && n <= (long)GUP_RANGES_PER_BUF);
		unpin_user_ranges(&r.out, false);
		done += (unsigned long)n;
	}
	rbufs_free(&r);
	/* Two pages hold a whole 2 MiB chunk of single pages: the walk
	 * stops at each PMD boundary. */
	rbufs_init(&r, 2, GUP_RANGE_PHYS);
	for (done = 0; done < total;) {
		long n = ranges_check(e, &r, a + done * PAGE_SIZE, total - done,
				      0);

		assert_true(n > 0);
		done += (unsigned long)n;
		assert_true(done == total ||
			    IS_ALIGNED(a + done * PAGE_SIZE, SZ_2M));
		unpin_user_ranges(&r.out, false);
	}
	rbufs_free(&r);
	/* PFN words: 8 bytes a page at worst. */
	rbufs_init(&r, 1, GUP_RANGE_PFN);
	for (done = 0; done < total;) {
		long n = ranges_check(e, &r, a + done * PAGE_SIZE, total - done,
				      0);

		assert_true(n > 0);
		done += (unsigned long)n;
		unpin_user_ranges(&r.out, false);
	}
	rbufs_free(&r);
	assert_int_equal(pins_outstanding(e->m), 0);
}

static void test_ranges_thp_pfn(void **state)
{
	struct env *e = *state;
	unsigned long t = thp_region(e->mm, 8);
	struct rbufs r;
	long n;

	touch(e->mm, t, 1, 1);
	for (int i = 1; i < 8; i++)
		touch(e->mm, t + i * SZ_2M, 1, 1);
	/* THPs cost a word or two each: one output page holds them all. */
	rbufs_init(&r, 1, GUP_RANGE_PFN);
	n = ranges_check(e, &r, t, 8 * HPAGE_PMD_NR,
			 FOLL_WRITE | FOLL_LONGTERM);
	assert_int_equal(n, 8 * HPAGE_PMD_NR);
	assert_true(r.out.nr_entries <= 8);
	/* Unpin piecewise: pins are per page. */
	unpin_folio_range(page_folio(mapped_page(e->mm, t)), 0, 100, true);
	unpin_phys_range(e->m,
			 (uint64_t)page_to_pfn(mapped_page(e->mm, t)) *
					 PAGE_SIZE +
				 100 * PAGE_SIZE,
			 (HPAGE_PMD_NR - 100) * PAGE_SIZE, false);
	assert_int_equal(folio_pincount(page_folio(mapped_page(e->mm, t))), 0);
	assert_int_equal(pins_outstanding(e->m), 7 * HPAGE_PMD_NR);
	for (int i = 1; i < 8; i++)
		unpin_user_folio(page_folio(mapped_page(e->mm, t + i * SZ_2M)),
				 HPAGE_PMD_NR);
	assert_int_equal(pins_outstanding(e->m), 0);
	rbufs_free(&r);
}

static void test_ranges_errors_and_slow(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 16, RW);
	struct gup_range_output bad = { 0 };
	struct mm_struct *child;
	struct rbufs r;
	void *nul[1] = { NULL };

	rbufs_init(&r, 1, GUP_RANGE_FOLIO);
	assert_int_equal(pin_user_pages_ranges(e->mm, a, 1, 0, NULL), -EINVAL);
	assert_int_equal(pin_user_pages_ranges(e->mm, a, 1, 0, &bad), -EINVAL);
	bad.bufs = nul;
	bad.nr_bufs = 1;
	assert_int_equal(pin_user_pages_ranges(e->mm, a, 1, 0, &bad), -EINVAL);
	r.out.format = 7;
	assert_int_equal(pin_user_pages_ranges(e->mm, a, 1, 0, &r.out),
			 -EINVAL);
	r.out.format = GUP_RANGE_FOLIO;
	assert_int_equal(pin_user_pages_ranges(e->mm, a, 1, FOLL_PIN, &r.out),
			 -EINVAL);
	assert_int_equal(
		pin_user_pages_ranges(e->mm, a, 1, FOLL_NOWAIT, &r.out),
		-EINVAL);
	assert_int_equal(pin_user_pages_ranges(e->mm, a, 1,
					       FOLL_LONGTERM | FOLL_PCI_P2PDMA,
					       &r.out),
			 -EINVAL);
	assert_int_equal(pin_user_pages_ranges(e->mm, a, 0, 0, &r.out), 0);
	assert_int_equal(pin_user_pages_ranges(e->mm, 0x1000, 1, 0, &r.out),
			 -EFAULT);
	assert_int_equal(pin_user_pages_ranges(e->mm, TASK_SIZE - PAGE_SIZE, 2,
					       0, &r.out),
			 -EFAULT);
	assert_int_equal(pin_user_pages_ranges(e->mm, a, ~0UL >> 4, 0, &r.out),
			 -EOVERFLOW);
	assert_int_equal(
		pin_user_pages_ranges(e->mm, a, 1, FOLL_NOFAULT, &r.out),
		-EFAULT);
	/* Nothing populated: all through the slow path. */
	assert_int_equal(ranges_check(e, &r, a, 16, FOLL_WRITE), 16);
	unpin_user_ranges(&r.out, true);
	/* A hole: the part before it. */
	ASSERT_OK(hetmm_munmap(e->mm, a + 10 * PAGE_SIZE, PAGE_SIZE));
	assert_int_equal(ranges_check(e, &r, a, 16, 0), 10);
	unpin_user_ranges(&r.out, false);
	/* Shared after fork: R/O range pins unshare. */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	assert_int_equal(ranges_check(e, &r, a, 10, 0), 10);
	for (int i = 0; i < 10; i++) {
		assert_true(PageAnonExclusive(
			mapped_page(e->mm, a + i * PAGE_SIZE)));
		assert_ptr_not_equal(mapped_page(e->mm, a + i * PAGE_SIZE),
				     mapped_page(child, a + i * PAGE_SIZE));
	}
	unpin_user_ranges(&r.out, false);
	hetmm_exit(child);
	rbufs_free(&r);
	assert_int_equal(pins_outstanding(e->m), 0);
}

static void test_ranges_longterm_movable(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 8, RW);
	unsigned long t = thp_region(e->mm, 1);
	struct rbufs r;

	touch(e->mm, a, 8, 3);
	touch(e->mm, t, 1, 4);
	rbufs_init(&r, 1, GUP_RANGE_PHYS);
	assert_int_equal(ranges_check(e, &r, a, 8, FOLL_WRITE | FOLL_LONGTERM),
			 8);
	for (int i = 0; i < 8; i++)
		assert_false(
			page_in_movable(mapped_page(e->mm, a + i * PAGE_SIZE)));
	unpin_user_ranges(&r.out, false);
	assert_int_equal(ranges_check(e, &r, t, HPAGE_PMD_NR, FOLL_LONGTERM),
			 HPAGE_PMD_NR);
	assert_false(page_in_movable(mapped_page(e->mm, t)));
	assert_int_equal(peek(e->mm, t), 4);
	unpin_user_ranges(&r.out, false);
	rbufs_free(&r);
}

/*
 * The THP fast path of the range walk and its release (inline pins,
 * counted once per call): every format, whole and from the middle, clean
 * and dirty; a read-only pin of a THP shared with a child unshares it; a
 * second release of the same output is reported, not applied.
 */
static void test_ranges_thp_batch(void **state)
{
	struct env *e = *state;
	const unsigned long nf = 4, n = nf * HPAGE_PMD_NR;
	unsigned long t = thp_region(e->mm, nf);
	struct folio *f[4];
	struct mm_struct *child;
	struct rbufs r;

	for (unsigned long i = 0; i < nf; i++) {
		touch(e->mm, t + i * SZ_2M, 1, (unsigned char)(20 + i));
		f[i] = page_folio(mapped_page(e->mm, t + i * SZ_2M));
		assert_int_equal(folio_order(f[i]), PMD_ORDER);
	}
	for (int fmt = GUP_RANGE_FOLIO; fmt <= GUP_RANGE_PFN; fmt++) {
		int base = folio_ref_count(f[1]);

		rbufs_init(&r, 1, fmt);
		assert_int_equal(
			ranges_check(e, &r, t, n, FOLL_WRITE | FOLL_LONGTERM),
			(long)n);
		assert_int_equal(pins_outstanding(e->m), (long)n);
		for (unsigned long i = 0; i < nf; i++)
			assert_int_equal(folio_pincount(f[i]), HPAGE_PMD_NR);
		assert_int_equal(folio_ref_count(f[1]), base + HPAGE_PMD_NR);
		ASSERT_OK(hetmm_check(e->m));
		unpin_user_ranges(&r.out, fmt == GUP_RANGE_PHYS);
		assert_int_equal(pins_outstanding(e->m), 0);
		for (unsigned long i = 0; i < nf; i++)
			assert_int_equal(folio_pincount(f[i]), 0);
		assert_int_equal(folio_ref_count(f[1]), base);
		/* From the middle of one THP to the middle of another. */
		assert_int_equal(ranges_check(e, &r, t + 300 * PAGE_SIZE,
					      HPAGE_PMD_NR * 2, 0),
				 2 * HPAGE_PMD_NR);
		assert_int_equal(folio_pincount(f[0]), HPAGE_PMD_NR - 300);
		assert_int_equal(folio_pincount(f[1]), HPAGE_PMD_NR);
		assert_int_equal(folio_pincount(f[2]), 300);
		unpin_user_ranges(&r.out, false);
		assert_int_equal(pins_outstanding(e->m), 0);
		rbufs_free(&r);
	}
#if HETMM_DEBUG >= 1
	{
		struct folio *g = page_folio(mapped_page(e->mm, t));
		int base = folio_ref_count(g);

		/* A second release: a bad page, counts untouched. */
		rbufs_init(&r, 1, GUP_RANGE_FOLIO);
		assert_int_equal(
			ranges_check(e, &r, t, HPAGE_PMD_NR, FOLL_WRITE),
			HPAGE_PMD_NR);
		unpin_user_ranges(&r.out, false);
		unpin_user_ranges(&r.out, false);
		assert_int_equal(folio_ref_count(g), base);
		assert_int_equal(folio_pincount(g), 0);
		assert_int_equal(pins_outstanding(e->m), 0);
		assert_int_not_equal(hetmm_check(e->m), 0);
		hetmm_bad_page_clear(e->m);
		rbufs_free(&r);
	}
#endif
	/* Shared with a child: a read-only pin takes the slow path, which
	 * unshares page by page (the PMD is split first, as in the kernel);
	 * the child keeps the old folio. 512 entries a chunk: 8 output
	 * pages hold the four. */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	rbufs_init(&r, 8, GUP_RANGE_FOLIO);
	assert_int_equal(ranges_check(e, &r, t, n, 0), (long)n);
	for (unsigned long i = 0; i < nf; i++) {
		struct page *p = mapped_page(e->mm, t + i * SZ_2M);

		assert_true(PageAnonExclusive(p));
		assert_ptr_not_equal(p, mapped_page(child, t + i * SZ_2M));
		assert_int_equal(peek(e->mm, t + i * SZ_2M), 20 + i);
		assert_int_equal(peek(child, t + i * SZ_2M), 20 + i);
	}
	poke(child, t, 99);
	assert_int_equal(peek(e->mm, t), 20);
	unpin_user_ranges(&r.out, false);
	assert_int_equal(pins_outstanding(e->m), 0);
	hetmm_exit(child);
	rbufs_free(&r);
	ASSERT_OK(hetmm_check(e->m));
}

/* ------------------------------------------- pins across address-space ops */

static void test_pins_across_ops(void **state)
{
	struct env *e = *state;
	struct gdev *d = gdev_create(e->m, MEMORY_DEVICE_COHERENT);
	unsigned long a = map_anon(e->mm, 8, RW), b;
	struct page *pages[8];
	struct mm_struct *child;
	long in_use, moved;
	struct folio *f;

	touch(e->mm, a, 8, 10);
	/* As io_uring registers a fixed buffer. */
	assert_int_equal(pin_user_pages_fast(e->mm, a, 8,
					     FOLL_WRITE | FOLL_LONGTERM, pages),
			 8);
	/* fork: the child gets copies, the parent keeps the pinned pages. */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	for (int i = 0; i < 8; i++) {
		assert_ptr_equal(mapped_page(e->mm, a + i * PAGE_SIZE),
				 pages[i]);
		assert_ptr_not_equal(mapped_page(child, a + i * PAGE_SIZE),
				     pages[i]);
	}
	poke(e->mm, a, 100);
	poke(child, a + PAGE_SIZE, 101);
	assert_int_equal(dma_read(pages[0], 0), 100);
	assert_int_equal(dma_read(pages[1], 0), 11);
	assert_int_equal(peek(child, a), 10);
	dma_write(pages[2], 0, 102);
	assert_int_equal(peek(e->mm, a + 2 * PAGE_SIZE), 102);
	assert_int_equal(peek(child, a + 2 * PAGE_SIZE), 12);
	hetmm_exit(child);
	/* mprotect R, then RW, then a write: still the pinned page. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, 8 * PAGE_SIZE, PROT_READ));
	ASSERT_OK(hetmm_mprotect(e->mm, a, 8 * PAGE_SIZE, RW));
	poke(e->mm, a + 3 * PAGE_SIZE, 103);
	assert_int_equal(dma_read(pages[3], 0), 103);
	/* A migration attempt (onto a device) leaves pinned pages alone and
	 * says so: no entry is marked MIGRATE. */
	moved = (long)gdev_to_device(d, e->mm, a, 8);
	assert_int_equal(moved, 0);
	f = page_folio(pages[4]);
	folio_lock(f);
	try_to_migrate(f);
	assert_true(folio_mapped(f));
	folio_unlock(f);
	for (int i = 0; i < 8; i++)
		assert_ptr_equal(mapped_page(e->mm, a + i * PAGE_SIZE),
				 pages[i]);
	/* mremap: the pages move with the mapping. */
	b = (unsigned long)hetmm_mremap(e->mm, a, 8 * PAGE_SIZE, 16 * PAGE_SIZE,
					MREMAP_MAYMOVE, 0);
	assert_true(IS_ALIGNED(b, PAGE_SIZE) && b < TASK_SIZE);
	assert_ptr_equal(mapped_page(e->mm, b + 5 * PAGE_SIZE), pages[5]);
	poke(e->mm, b + 5 * PAGE_SIZE, 105);
	assert_int_equal(dma_read(pages[5], 0), 105);
	/* munmap: the pins keep the pages (and their data). */
	in_use = hetmm_pages_in_use(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, b, 16 * PAGE_SIZE));
	assert_int_equal(dma_read(pages[5], 0), 105);
	assert_int_equal(pins_outstanding(e->m), 8);
	ASSERT_OK(hetmm_check(e->m));
	unpin_user_pages_dirty_lock(pages, 8, true);
	assert_true(hetmm_pages_in_use(e->m) <= in_use - 8);
	gdev_destroy(d);
}

/*
 * Random writes (CPU and DMA), pins and unpins of every kind, fork,
 * mprotect and MADV_DONTNEED, against a flat model of the memory: every
 * CPU read and every read through a still-coherent pin must match it.
 */
#define RND_SMALL 64UL
#define RND_PAGES (HPAGE_PMD_NR + RND_SMALL)
#define RND_PINS 32

struct rnd_pin {
	struct page *page;
	unsigned long idx;
	bool write;
	bool coherent; /* the VA still maps this page's contents */
};

struct rnd {
	struct env *e;
	unsigned long t, a, spare;
	uint8_t model[RND_PAGES];
	uint8_t child_model[RND_PAGES];
	struct rnd_pin pins[RND_PINS];
	int npins;
	struct test_rng rng;
};

static unsigned long rnd_addr(struct rnd *r, unsigned long i)
{
	return i < HPAGE_PMD_NR ? r->t + i * PAGE_SIZE :
				  r->a + (i - HPAGE_PMD_NR) * PAGE_SIZE;
}

static void rnd_verify(struct rnd *r)
{
	for (unsigned long i = 0; i < RND_PAGES; i++)
		assert_int_equal(peek(r->e->mm, rnd_addr(r, i) + 8),
				 r->model[i]);
	for (int k = 0; k < r->npins; k++)
		if (r->pins[k].coherent)
			assert_int_equal(dma_read(r->pins[k].page, 8),
					 r->model[r->pins[k].idx]);
}

static void rnd_pin(struct rnd *r)
{
	unsigned long i = test_rng_below(&r->rng, RND_PAGES);
	unsigned long n = 1 + test_rng_below(&r->rng, 8);
	unsigned int flags = 0;
	struct page *pages[8];
	long got;

	if (i < HPAGE_PMD_NR && i + n > HPAGE_PMD_NR)
		n = HPAGE_PMD_NR - i;
	if (i >= HPAGE_PMD_NR && i + n > RND_PAGES)
		n = RND_PAGES - i;
	if (r->npins + (int)n > RND_PINS)
		return;
	if (test_rng_below(&r->rng, 2))
		flags |= FOLL_WRITE;
	if (test_rng_below(&r->rng, 2))
		flags |= FOLL_LONGTERM;
	switch (test_rng_below(&r->rng, 3)) {
	case 0:
		got = pin_user_pages_fast(r->e->mm, rnd_addr(r, i), (int)n,
					  flags, pages);
		break;
	case 1:
		got = pup_locked(r->e->mm, rnd_addr(r, i), n, flags, pages);
		break;
	default: {
		struct rbufs rb;

		rbufs_init(&rb, 1,
			   (enum gup_range_format)test_rng_below(&r->rng, 3));
		got = pin_user_pages_ranges(r->e->mm, rnd_addr(r, i), n, flags,
					    &rb.out);
		assert_int_equal(got, (long)n);
		assert_int_equal(ranges_to_pages(&rb.out, pages, 8), n);
		rbufs_free(&rb);
		break;
	}
	}
	assert_int_equal(got, (long)n);
	for (unsigned long j = 0; j < n; j++) {
		struct rnd_pin *p = &r->pins[r->npins++];

		p->page = pages[j];
		p->idx = i + j;
		p->write = flags & FOLL_WRITE;
		/* R/O short-term pins of the zero page see no later write. */
		p->coherent = !is_zero_page(pages[j]);
		assert_int_equal(dma_read(pages[j], 8), r->model[i + j]);
		if (p->coherent && folio_test_anon(page_folio(pages[j])))
			assert_true(
				PageAnonExclusive(pages[j]) ||
				PageAnonExclusive(&page_folio(pages[j])->page));
	}
}

static void rnd_unpin(struct rnd *r)
{
	int k;

	if (!r->npins)
		return;
	k = (int)test_rng_below(&r->rng, (uint64_t)r->npins);
	if (r->pins[k].coherent)
		assert_int_equal(dma_read(r->pins[k].page, 8),
				 r->model[r->pins[k].idx]);
	unpin_user_page(r->pins[k].page);
	r->pins[k] = r->pins[--r->npins];
}

static void test_random_oracle(void **state)
{
	struct env *e = *state;
	struct rnd *r = calloc(1, sizeof(*r));
	unsigned int steps = test_scale(3000, 60000);
	struct mm_struct *child = NULL;

	assert_non_null(r);
	r->e = e;
	test_rng_init(&r->rng, test_seed());
	r->t = thp_region(e->mm, 1);
	r->a = map_anon(e->mm, RND_SMALL, RW);
	r->spare = map_anon(e->mm, RND_SMALL, PROT_NONE);
	for (unsigned int s = 0; s < steps; s++) {
		unsigned long i = test_rng_below(&r->rng, RND_PAGES);
		uint8_t v = (uint8_t)(1 + test_rng_below(&r->rng, 255));

		switch (test_rng_below(&r->rng, 14)) {
		case 0:
		case 1:
		case 2:
			poke(e->mm, rnd_addr(r, i) + 8, v);
			r->model[i] = v;
			break;
		case 3:
		case 4:
			rnd_pin(r);
			break;
		case 5:
			rnd_unpin(r);
			break;
		case 6: { /* DMA write through a R/W pin */
			int k;

			if (!r->npins)
				break;
			k = (int)test_rng_below(&r->rng, (uint64_t)r->npins);
			if (!r->pins[k].write || !r->pins[k].coherent)
				break;
			dma_write(r->pins[k].page, 8, v);
			r->model[r->pins[k].idx] = v;
			break;
		}
		case 7: /* fork; the previous child exits */
			if (child)
				hetmm_exit(child);
			child = hetmm_fork(e->mm);
			assert_false(IS_ERR(child));
			memcpy(r->child_model, r->model, sizeof(r->model));
			poke(child, rnd_addr(r, i) + 8, (uint8_t)(v ^ 0xff));
			r->child_model[i] = (uint8_t)(v ^ 0xff);
			break;
		case 8:
			ASSERT_OK(hetmm_mprotect(
				e->mm, r->a, RND_SMALL * PAGE_SIZE, PROT_READ));
			ASSERT_OK(hetmm_mprotect(e->mm, r->a,
						 RND_SMALL * PAGE_SIZE, RW));
			break;
		case 9: /* DONTNEED: the VA no longer maps pinned pages */
			ASSERT_OK(hetmm_madvise(e->mm, rnd_addr(r, i),
						PAGE_SIZE, MADV_DONTNEED));
			r->model[i] = 0;
			for (int k = 0; k < r->npins; k++)
				if (r->pins[k].idx == i)
					r->pins[k].coherent = false;
			break;
		case 11: /* munmap + remap one small page: a new zero page */
			if (i < HPAGE_PMD_NR)
				break;
			ASSERT_OK(
				hetmm_munmap(e->mm, rnd_addr(r, i), PAGE_SIZE));
			assert_int_equal(
				hetmm_mmap(e->mm, rnd_addr(r, i), PAGE_SIZE, RW,
					   PRIV_ANON | MAP_FIXED, -1, 0),
				(long)rnd_addr(r, i));
			r->model[i] = 0;
			for (int k = 0; k < r->npins; k++)
				if (r->pins[k].idx == i)
					r->pins[k].coherent = false;
			break;
		case 12: /* mremap a page away and back: pins stay coherent */
			assert_int_equal(
				hetmm_mremap(e->mm, rnd_addr(r, i), PAGE_SIZE,
					     PAGE_SIZE,
					     MREMAP_MAYMOVE | MREMAP_FIXED,
					     r->spare),
				(long)r->spare);
			assert_int_equal(peek(e->mm, r->spare + 8),
					 r->model[i]);
			assert_int_equal(
				hetmm_mremap(e->mm, r->spare, PAGE_SIZE,
					     PAGE_SIZE,
					     MREMAP_MAYMOVE | MREMAP_FIXED,
					     rnd_addr(r, i)),
				(long)rnd_addr(r, i));
			break;
		case 10: /* the child sees only its own writes */
			for (unsigned long j = 0; child && j < RND_PAGES; j++)
				assert_int_equal(
					peek(child, rnd_addr(r, j) + 8),
					r->child_model[j]);
			break;
		default:
			rnd_verify(r);
			if (s % 64 == 0)
				ASSERT_OK(hetmm_check(e->m));
			break;
		}
	}
	rnd_verify(r);
	while (r->npins)
		rnd_unpin(r);
	if (child)
		hetmm_exit(child);
	assert_int_equal(pins_outstanding(e->m), 0);
	ASSERT_OK(hetmm_check(e->m));
	free(r);
}

/*
 * One thread pins and unpins with pin_user_pages_fast while another forks,
 * writes and unmaps/remaps the same memory. Every pin taken must be of an
 * exclusive anonymous page (never of one fork is sharing), and at the end
 * the counts balance. Run under TSan in the 'concurrent' suite.
 */
struct conc {
	struct mm_struct *mm;
	unsigned long a;
	unsigned long npages;
	unsigned int iters;
	atomic_bool stop;
	atomic_long pinned, bad, errors;
	uint64_t seed;
};

static void *conc_pinner(void *arg)
{
	struct conc *c = arg;
	struct test_rng rng;
	struct page *pages[16];

	test_rng_init(&rng, c->seed);
	while (!atomic_load(&c->stop)) {
		unsigned long i = test_rng_below(&rng, c->npages - 16);
		unsigned int fl = test_rng_below(&rng, 2) ? FOLL_WRITE : 0;
		int n = pin_user_pages_fast(c->mm, c->a + i * PAGE_SIZE,
					    1 + (int)test_rng_below(&rng, 16),
					    fl, pages);

		if (n < 0) {
			atomic_fetch_add(&c->errors, 1); /* a hole: fine */
			continue;
		}
		for (int k = 0; k < n; k++) {
			struct folio *f = page_folio(pages[k]);

			if (is_zero_page(pages[k]))
				continue;
			if (!folio_test_anon(f) ||
			    !(PageAnonExclusive(pages[k]) ||
			      PageAnonExclusive(&f->page)) ||
			    !folio_maybe_dma_pinned(f))
				atomic_fetch_add(&c->bad, 1);
		}
		atomic_fetch_add(&c->pinned, n);
		unpin_user_pages(pages, (unsigned long)n);
	}
	return NULL;
}

static void test_concurrent_pin_vs_fork(void **state)
{
	struct env *e = *state;
	struct conc c = { 0 };
	struct test_rng rng;
	pthread_t t;

	c.mm = e->mm;
	c.npages = 128;
	c.a = map_anon(e->mm, c.npages, RW);
	c.seed = test_seed() + 1;
	touch(e->mm, c.a, c.npages, 1);
	test_rng_init(&rng, test_seed());
	assert_int_equal(pthread_create(&t, NULL, conc_pinner, &c), 0);
	for (unsigned int it = 0; it < test_scale(150, 3000); it++) {
		struct mm_struct *child = hetmm_fork(e->mm);
		unsigned long i = test_rng_below(&rng, c.npages);

		assert_false(IS_ERR(child));
		poke(child, c.a + i * PAGE_SIZE, 1);
		poke(e->mm, c.a + i * PAGE_SIZE, 2);
		if (it % 3 == 0)
			hetmm_exit(child);
		else
			poke(e->mm, c.a + ((i + 7) % c.npages) * PAGE_SIZE, 3);
		if (it % 3)
			hetmm_exit(child);
		if (it % 5 == 0) {
			unsigned long j = test_rng_below(&rng, c.npages - 4);
			long r;

			ASSERT_OK(hetmm_munmap(e->mm, c.a + j * PAGE_SIZE,
					       4 * PAGE_SIZE));
			r = hetmm_mmap(e->mm, c.a + j * PAGE_SIZE,
				       4 * PAGE_SIZE, RW, PRIV_ANON | MAP_FIXED,
				       -1, 0);
			assert_int_equal(r, (long)(c.a + j * PAGE_SIZE));
		}
		if (it % 7 == 0) {
			ASSERT_OK(hetmm_mprotect(
				e->mm, c.a, c.npages * PAGE_SIZE, PROT_READ));
			ASSERT_OK(hetmm_mprotect(e->mm, c.a,
						 c.npages * PAGE_SIZE, RW));
		}
	}
	atomic_store(&c.stop, true);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(atomic_load(&c.bad), 0);
	assert_true(atomic_load(&c.pinned) > 0);
	assert_int_equal(pins_outstanding(e->m), 0);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * The same race over THPs with pin_user_pages_ranges (the inline PMD-leaf
 * path, accounted once per call) in every format: each run's first and
 * last pages must be exclusive anonymous pages of a pinned folio while
 * the other thread forks, COWs (splitting PMDs), remaps and mprotects.
 */
struct conc_ranges {
	struct conc c;
	void *buf[8];
	struct gup_range_output out;
};

static bool conc_run_ok(struct page *p)
{
	struct folio *f = page_folio(p);

	if (is_zero_page(p) || is_huge_zero_folio(f))
		return true; /* read-only pins of unpopulated memory */
	return folio_test_anon(f) &&
	       (PageAnonExclusive(p) || PageAnonExclusive(&f->page)) &&
	       folio_maybe_dma_pinned(f);
}

static void *conc_ranges_pinner(void *arg)
{
	struct conc_ranges *cr = arg;
	struct conc *c = &cr->c;
	struct gup_range_output *o = &cr->out;
	struct test_rng rng;

	test_rng_init(&rng, c->seed);
	while (!atomic_load(&c->stop)) {
		unsigned long i = test_rng_below(&rng, c->npages / 2);
		unsigned long n = 1 + test_rng_below(&rng, c->npages - i);
		unsigned int fl = test_rng_below(&rng, 2) ? FOLL_WRITE : 0;
		long got, bad = 0, seen = 0;

		o->format = (enum gup_range_format)test_rng_below(&rng, 3);
		got = pin_user_pages_ranges(c->mm, c->a + i * PAGE_SIZE, n, fl,
					    o);
		if (got <= 0) {
			atomic_fetch_add(&c->errors, 1); /* a hole: fine */
			continue;
		}
		if (o->format == GUP_RANGE_PFN) {
			struct gup_pfn_iter it = { 0 };
			unsigned long pfn, nr;

			while (gup_pfn_iter_next(o, &it, &pfn, &nr)) {
				bad += !conc_run_ok(
					       pfn_to_page(o->machine, pfn)) ||
				       !conc_run_ok(pfn_to_page(o->machine,
								pfn + nr - 1));
				seen += (long)nr;
			}
		} else {
			for (unsigned long j = 0; j < o->nr_entries; j++) {
				void *b = o->bufs[j / GUP_RANGES_PER_BUF];
				unsigned long k = j % GUP_RANGES_PER_BUF;
				struct page *first, *last;
				unsigned long nr;

				if (o->format == GUP_RANGE_FOLIO) {
					struct gup_folio_range *r =
						(struct gup_folio_range *)b + k;

					first = folio_page(r->folio, r->offset);
					nr = r->nr_pages;
				} else {
					struct phys_vec *r =
						(struct phys_vec *)b + k;

					first = pfn_to_page(
						o->machine,
						(unsigned long)(r->paddr >>
								PAGE_SHIFT));
					nr = (unsigned long)(r->len >>
							     PAGE_SHIFT);
				}
				last = first + nr - 1;
				bad += !conc_run_ok(first) ||
				       !conc_run_ok(last);
				seen += (long)nr;
			}
		}
		if (seen != got)
			bad++;
		atomic_fetch_add(&c->bad, bad);
		atomic_fetch_add(&c->pinned, got);
		unpin_user_ranges(o, fl & FOLL_WRITE);
	}
	return NULL;
}

static void test_concurrent_ranges_thp_vs_fork(void **state)
{
	struct env *e = *state;
	const unsigned long nthp = 4;
	struct conc_ranges cr = { 0 };
	struct conc *c = &cr.c;
	struct test_rng rng;
	pthread_t t;

	c->mm = e->mm;
	c->npages = nthp * HPAGE_PMD_NR;
	c->a = thp_region(e->mm, nthp);
	c->seed = test_seed() + 2;
	for (unsigned long i = 0; i < nthp; i++)
		touch(e->mm, c->a + i * SZ_2M, 1, 1);
	for (unsigned int i = 0; i < 8; i++) {
		cr.buf[i] = aligned_alloc(4096, GUP_RANGE_BUF_SIZE);
		assert_non_null(cr.buf[i]);
	}
	cr.out.bufs = cr.buf;
	cr.out.nr_bufs = 8; /* the worst case of four PTE-mapped chunks */
	test_rng_init(&rng, test_seed());
	assert_int_equal(pthread_create(&t, NULL, conc_ranges_pinner, &cr), 0);
	for (unsigned int it = 0; it < test_scale(100, 1500); it++) {
		unsigned long i = test_rng_below(&rng, c->npages);
		unsigned long a = c->a + (i / HPAGE_PMD_NR) * SZ_2M;

		/* A fresh PMD-mapped THP in place of one 2 MiB. */
		ASSERT_OK(hetmm_munmap(e->mm, a, SZ_2M));
		assert_int_equal(hetmm_mmap(e->mm, a, SZ_2M, RW,
					    PRIV_ANON | MAP_FIXED, -1, 0),
				 (long)a);
		ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_HUGEPAGE));
		poke(e->mm, a, 4);
		if (it % 4 == 1) {
			/* Share everything, then COW one page both ways. */
			struct mm_struct *child = hetmm_fork(e->mm);

			assert_false(IS_ERR(child));
			poke(child, c->a + i * PAGE_SIZE, 1);
			poke(e->mm, c->a + i * PAGE_SIZE, 2);
			hetmm_exit(child);
		}
		if (it % 7 == 0) {
			ASSERT_OK(hetmm_mprotect(
				e->mm, c->a, c->npages * PAGE_SIZE, PROT_READ));
			ASSERT_OK(hetmm_mprotect(e->mm, c->a,
						 c->npages * PAGE_SIZE, RW));
		}
	}
	atomic_store(&c->stop, true);
	assert_int_equal(pthread_join(t, NULL), 0);
	for (unsigned int i = 0; i < 8; i++)
		free(cr.buf[i]);
	assert_int_equal(atomic_load(&c->bad), 0);
	assert_true(atomic_load(&c->pinned) > 0);
	assert_int_equal(pins_outstanding(e->m), 0);
	ASSERT_OK(hetmm_check(e->m));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_args_invalid, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_fast_range_checks,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_get_and_pin_small,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_zero_page, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_thp_pincount, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_hugetlb_pincount,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_vma_checks, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_force_write_cow, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_unshare_on_ro_pin,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_nofault_and_fast_only,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_unpin_family, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_unpin_bogus, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_refcount_limit, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(
			test_fork_eager_copy_needs_has_pinned, env_setup,
			env_teardown),
		cmocka_unit_test_setup_teardown(
			test_force_read_unpopulated_prot_none, env_setup,
			env_teardown),
		cmocka_unit_test_setup_teardown(test_force_write_prot_none,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_force_prot_none_thp,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_force_prot_none_hugetlb,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_force_write_ro_thp,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_force_write_ro_hugetlb,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_device_private, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_device_coherent, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_p2pdma, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(
			test_longterm_movable, env_setup_movable, env_teardown),
		cmocka_unit_test_setup_teardown(test_longterm_movable_pagecache,
						env_setup_movable,
						env_teardown),
		cmocka_unit_test_setup_teardown(
			test_longterm_movable_pagecache_private,
			env_setup_movable, env_teardown),
		cmocka_unit_test_setup_teardown(test_longterm_pagecache_busy,
						env_setup_movable,
						env_teardown),
		cmocka_unit_test_setup_teardown(
			test_longterm_pagecache_pinned_retry, env_setup_movable,
			env_teardown),
		cmocka_unit_test_setup_teardown(
			test_longterm_movable_pagecache_huge, env_setup_movable,
			env_teardown),
		cmocka_unit_test_setup_teardown(test_nowait_migration_entry,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_hwpoison_entry, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_dump_page, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_split_pmd, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_remote, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_fast_slow_agree, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_file_private_longterm,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_memfd_pin_folios,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_ranges_formats, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_ranges_resume, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_ranges_thp_pfn, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_ranges_errors_and_slow,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_ranges_thp_batch,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_ranges_longterm_movable,
						env_setup_movable,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_pins_across_ops, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_random_oracle, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(
			test_concurrent_ranges_thp_vs_fork, env_setup,
			env_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_pin_vs_fork,
						env_setup, env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
