// SPDX-License-Identifier: MIT
/*
 * khugepaged.c - MADV_COLLAPSE for anonymous private memory: replace the
 * PTE-mapped contents of a 2 MiB range by a freshly allocated order-9
 * anon folio mapped by one PMD leaf (the kernel's madvise_collapse() and
 * collapse_huge_page() in mm/khugepaged.c). There is no khugepaged thread:
 * only the synchronous, user-requested collapse is modelled.
 *
 * Locking:
 *   mmap_lock (read: scan of the range, as hetmm_madvise() calls us; the
 *   lock is dropped for the 2 MiB allocation, then taken for write for
 *   the page-table swap, then taken for read again before returning)
 *     anon_vma rwsem (write: keeps rmap walkers, which never take
 *     mmap_lock, off the PTEs while they are unhooked and copied)
 *       mm->page_table_lock (clearing, restoring or filling the PMD)
 *       PTE-table lock of the unhooked table (isolation, clearing)
 *         folio lock (trylock only, so the usual folio lock -> anon_vma
 *         order cannot deadlock: a busy folio fails the range, -EAGAIN)
 *   The MMU_NOTIFY_CLEAR invalidation of the 2 MiB range is open from
 *   before the PMD is cleared until the new leaf (or the old table) is in.
 *
 * Behaviour (checked against the kernel's mm/khugepaged.c and
 * mm/huge_memory.c):
 *   - Eligibility ignores the THP sysfs mode ("never" and "madvise"
 *     included: madvise_collapse() asks thp_vma_allowable_order() without
 *     TVA_ENFORCE_SYSFS, later TVA_FORCED_COLLAPSE). Refused with -EINVAL
 *     before anything is scanned: VM_NOHUGEPAGE, VM_HUGETLB, driver
 *     mappings (VM_SPECIAL: PFNMAP, MIXEDMAP, IO), file-backed VMAs (shared
 *     anonymous memory is a tmpfs file here; shmem collapse is not
 *     modelled), and VMAs without one whole aligned 2 MiB range.
 *   - The khugepaged limits (max_ptes_none/swap/shared, young bits) do not
 *     apply: none and zero-page PTEs become zeroed subpages, pages shared
 *     with another process are copied (the other keeps them). A PTE-mapped
 *     THP is copied into a new folio too. No PTE needs to be writable (the
 *     kernel dropped SCAN_PAGE_RO in 2025: "mm: drop all references of
 *     writable and SCAN_PAGE_RO"; before that a fully COW-shared range
 *     failed with -EINVAL and cow.c reported SKIP).
 *   - Per-range results are the kernel's scan results. A range already
 *     mapped by a PMD leaf counts as done. Ranges that fail with a result
 *     the kernel lets the loop continue past (no PTE table, a non-present
 *     PTE: migration, device-private/exclusive; a device or special page;
 *     a busy or extra-referenced page) are skipped; any other failure
 *     (allocation, a non-anon page, the VMA changing while the lock was
 *     dropped, a machine check while copying) stops the call.
 *   - VMAs are not merged anywhere else in this model (Linux merges them
 *     in mprotect/madvise, which cow.c's collapse cases rely on: mprotect
 *     one page R/O and back, or MADV_DONTFORK then MADV_DOFORK, leaves one
 *     VMA in Linux). So before collapsing, adjacent VMAs inside the range
 *     that Linux's is_mergeable_vma() would have merged (same flags, both
 *     anonymous with the same anon_vma, contiguous offsets) are merged
 *     here, with mmap_lock held for write.
 *   - Return (madvise_collapse_errno()): 0 when every range is a PMD leaf
 *     afterwards; -ENOMEM for a failed 2 MiB allocation; -EAGAIN when the
 *     last failure was transient (SCAN_PAGE_COUNT: a refcount above the
 *     mapcount, i.e. a GUP pin or other reference; SCAN_PAGE_LOCK: a
 *     locked folio); -EINVAL otherwise (e.g. a range with no PTE table at
 *     all, or a non-present PTE). As in the kernel (per VMA: the first
 *     2 MiB boundary at or after the start, the last at or before the
 *     end), a part of a VMA that lies strictly inside one 2 MiB block,
 *     touching neither of its boundaries, makes the unsigned count of
 *     ranges wrap and fails with -EINVAL; one that holds no whole 2 MiB
 *     but touches or crosses a boundary has zero ranges and succeeds.
 *     Holes in the range are -ENOMEM (checked by hetmm_madvise() before
 *     anything changes).
 *
 * Invariants:
 *   - The collapse runs with mmap_lock held for write, so no fault, slow
 *     GUP, hmm_range_fault or TLB fill reaches the range. Lock-free GUP-fast
 *     is excluded the way the kernel does it: the PMD is cleared (a
 *     sequentially consistent exchange, pairing with GUP-fast's
 *     sequentially consistent reference increment and PMD/PTE re-read)
 *     and the range flushed, then every folio must have refcount ==
 *     mapcount (sequentially consistent reads). A GUP-fast that raced
 *     either sees the cleared PMD and backs off, or holds a reference the
 *     check sees (-EAGAIN, everything restored).
 *   - Until the copy is complete nothing is lost: a failure after the PMD
 *     was cleared puts the very same table back, with every PTE, reference
 *     and mapcount untouched.
 *   - On success the old table becomes the leaf's deposited table (emptied
 *     first), as the kernel deposits pmd_pgtable(_pmd): no table is
 *     allocated and mm->nr_pt_pages is unchanged; the deposit is freed
 *     when the leaf is zapped. Each old present PTE's mapcount and
 *     reference are dropped after the new leaf is visible and the old
 *     folios are unlocked, so pages nobody else maps are freed at once.
 *   - The new folio is anon, exclusive (PageAnonExclusive on the head),
 *     indexed like a THP fault's, and mapped writable when the VMA has
 *     VM_WRITE (PROTNONE in a VMA without access), young and dirty.
 */
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/fault_inject.h>
#include <hetmm/stats.h>

#include "internal.h"

/* The kernel's enum scan_result values that this model can produce. */
enum collapse_result {
	COLLAPSE_FAIL,
	COLLAPSE_SUCCEED,
	COLLAPSE_NO_PTE_TABLE, /* SCAN_PMD_NULL/_NONE, SCAN_NO_PTE_TABLE */
	COLLAPSE_PMD_MAPPED, /* SCAN_PMD_MAPPED */
	COLLAPSE_PTE_NON_PRESENT, /* SCAN_PTE_NON_PRESENT */
	COLLAPSE_PAGE_NULL, /* SCAN_PAGE_NULL: special or device page */
	COLLAPSE_PAGE_ANON, /* SCAN_PAGE_ANON */
	COLLAPSE_PAGE_COUNT, /* SCAN_PAGE_COUNT */
	COLLAPSE_PAGE_LOCK, /* SCAN_PAGE_LOCK */
	COLLAPSE_VMA_NULL, /* SCAN_VMA_NULL */
	COLLAPSE_ADDRESS_RANGE, /* SCAN_ADDRESS_RANGE */
	COLLAPSE_VMA_CHECK, /* SCAN_VMA_CHECK */
	COLLAPSE_ALLOC_FAIL, /* SCAN_ALLOC_HUGE_PAGE_FAIL */
	COLLAPSE_COPY_MC, /* SCAN_COPY_MC */
};

/* madvise_collapse_errno(): what the caller is told about @r. */
static int collapse_errno(enum collapse_result r)
{
	switch (r) {
	case COLLAPSE_ALLOC_FAIL:
		return -ENOMEM;
	case COLLAPSE_PAGE_COUNT:
	case COLLAPSE_PAGE_LOCK:
		return -EAGAIN;
	default:
		return -EINVAL;
	}
}

/* May MADV_COLLAPSE act on @vma at all? (thp_vma_allowable_order() with
 * the sysfs mode ignored, for anonymous private memory.) */
static bool collapse_vma_allowed(const struct vm_area_struct *vma)
{
	unsigned long last;

	if (vma->vm_file ||
	    (vma->vm_flags & (VM_NOHUGEPAGE | VM_HUGETLB | VM_SPECIAL)))
		return false;
	/* At least one aligned 2 MiB inside (the kernel tests the last). */
	if (vma->vm_end - vma->vm_start < PMD_SIZE)
		return false;
	last = (vma->vm_end - PMD_SIZE) & PMD_MASK;
	return last >= vma->vm_start;
}

/* hugepage_vma_revalidate(): @haddr's VMA, after the lock was dropped. */
static enum collapse_result collapse_revalidate(struct mm_struct *mm,
						unsigned long haddr,
						struct vm_area_struct **vmap)
{
	struct vm_area_struct *vma = vma_lookup(mm, haddr);

	*vmap = vma;
	if (!vma)
		return COLLAPSE_VMA_NULL;
	if (haddr < vma->vm_start || haddr + PMD_SIZE > vma->vm_end)
		return COLLAPSE_ADDRESS_RANGE;
	if (!collapse_vma_allowed(vma))
		return COLLAPSE_VMA_CHECK;
	return COLLAPSE_SUCCEED;
}

/* is_refcount_suitable(): no reference beyond the mappings (no swap
 * cache here). */
static bool collapse_refcount_ok(struct folio *folio)
{
	return atomic_load_explicit(&folio->page._refcount,
				    memory_order_seq_cst) ==
	       folio_mapcount(folio);
}

/*
 * Classify one PTE of the range. *@foliop is the anon folio it maps, or
 * NULL for a none or zero-page PTE (a zeroed subpage in the new folio).
 */
static enum collapse_result collapse_check_pte(struct hetmm_machine *m, pte_t e,
					       struct folio **foliop)
{
	struct page *page;
	struct folio *folio;

	*foliop = NULL;
	if (pte_none(e))
		return COLLAPSE_SUCCEED;
	if (!pte_present(e))
		return COLLAPSE_PTE_NON_PRESENT;
	page = pfn_to_page(m, pte_pfn(e));
	if (is_zero_page(page))
		return COLLAPSE_SUCCEED;
	if (pte_special(e) || is_zone_device_page(page))
		return COLLAPSE_PAGE_NULL;
	folio = page_folio(page);
	if (!folio_test_anon(folio))
		return COLLAPSE_PAGE_ANON;
	*foliop = folio;
	return COLLAPSE_SUCCEED;
}

/*
 * hpage_collapse_scan_pmd(): is the range at @haddr worth an allocation?
 * Context: mmap_lock held (read).
 */
static enum collapse_result collapse_scan(struct mm_struct *mm,
					  unsigned long haddr)
{
	struct hetmm_machine *m = mm->machine;
	enum collapse_result r = COLLAPSE_SUCCEED;
	pmd_t *pmd = mm_find_pmd(mm, haddr);
	spinlock_t *ptl;
	pte_t *pte;
	pmd_t e;

	if (!pmd)
		return COLLAPSE_NO_PTE_TABLE;
	e = ptep_get(pmd);
	if (pmd_leaf(e))
		return COLLAPSE_PMD_MAPPED;
	/* None, or a migration/device-private PMD entry. */
	if (!pmd_table(e))
		return COLLAPSE_NO_PTE_TABLE;
	pte = pte_offset_map_lock(mm, pmd, haddr, &ptl);
	if (!pte)
		return COLLAPSE_NO_PTE_TABLE;
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++) {
		struct folio *folio;

		r = collapse_check_pte(m, ptep_get(&pte[i]), &folio);
		if (r != COLLAPSE_SUCCEED)
			break;
		if (!folio)
			continue;
		if (folio_test_locked(folio)) {
			r = COLLAPSE_PAGE_LOCK;
			break;
		}
		/* Racy (a fault elsewhere may be mid-way); rechecked later. */
		if (!collapse_refcount_ok(folio)) {
			r = COLLAPSE_PAGE_COUNT;
			break;
		}
	}
	spin_unlock(ptl);
	return r;
}

/* The folios one collapse has locked (a large folio once). */
struct collapse_locked {
	unsigned int nr;
	struct folio *folios[HPAGE_PMD_NR];
};

static bool collapse_holds(const struct collapse_locked *cl,
			   const struct folio *folio)
{
	for (unsigned int i = 0; i < cl->nr; i++)
		if (cl->folios[i] == folio)
			return true;
	return false;
}

static void collapse_unlock_all(struct collapse_locked *cl)
{
	for (unsigned int i = 0; i < cl->nr; i++)
		folio_unlock(cl->folios[i]);
	cl->nr = 0;
}

/*
 * __collapse_huge_page_isolate(): with the table unhooked, lock every
 * folio it maps and check that nobody else holds a reference.
 * Context: the table's lock held.
 */
static enum collapse_result collapse_isolate(struct hetmm_machine *m,
					     pte_t *ptes,
					     struct collapse_locked *cl)
{
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++) {
		struct folio *folio;
		enum collapse_result r;

		r = collapse_check_pte(m, ptep_get(&ptes[i]), &folio);
		if (r != COLLAPSE_SUCCEED)
			return r;
		if (!folio || collapse_holds(cl, folio))
			continue;
		if (!folio_trylock(folio))
			return COLLAPSE_PAGE_LOCK;
		/*
		 * The table is unreachable: no new reference can come from
		 * this process (GUP-fast backs off, or its reference is
		 * counted here), and others can only COW away from it.
		 */
		if (!collapse_refcount_ok(folio)) {
			folio_unlock(folio);
			return COLLAPSE_PAGE_COUNT;
		}
		cl->folios[cl->nr++] = folio;
	}
	return COLLAPSE_SUCCEED;
}

/*
 * __collapse_huge_page_copy(): fill @folio from the unhooked table. Each
 * copy is machine-check safe (the copy_page fault-injection site): a
 * failure leaves the old mappings in charge.
 */
static enum collapse_result collapse_copy(struct hetmm_machine *m, pte_t *ptes,
					  struct folio *folio)
{
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++) {
		pte_t e = ptep_get(&ptes[i]);
		struct page *dst = folio_page(folio, i);
		struct page *src;

		if (pte_none(e)) {
			clear_highpage(dst);
			continue;
		}
		src = pfn_to_page(m, pte_pfn(e));
		if (is_zero_page(src)) {
			clear_highpage(dst);
			continue;
		}
		if (should_fail(&m->faults, HETMM_FAULT_copy_page))
			return COLLAPSE_COPY_MC;
		copy_highpage(dst, src);
	}
	return COLLAPSE_SUCCEED;
}

/*
 * collapse_huge_page() from the point where the 2 MiB folio exists: swap
 * the PTE table at @haddr for a PMD leaf of @folio. On success @folio is
 * mapped (its reference now the leaf's); otherwise the caller drops it.
 * Context: mmap_lock held for write.
 */
static enum collapse_result
collapse_locked(struct mm_struct *mm, unsigned long haddr, struct folio *folio)
{
	struct hetmm_machine *m = mm->machine;
	struct mmu_notifier_range range;
	struct collapse_locked *cl;
	struct vm_area_struct *vma;
	enum collapse_result r;
	struct anon_vma *av;
	struct page *table;
	pte_t *ptes, *old;
	pmd_t *pmd, orig;

	mmap_assert_write_locked(mm);
	r = collapse_revalidate(mm, haddr, &vma);
	if (r != COLLAPSE_SUCCEED)
		return r;
	if (!vma->anon_vma)
		return COLLAPSE_PAGE_ANON;
	/* check_pmd_still_valid() */
	pmd = mm_find_pmd(mm, haddr);
	if (!pmd)
		return COLLAPSE_NO_PTE_TABLE;
	orig = ptep_get(pmd);
	if (pmd_leaf(orig))
		return COLLAPSE_PMD_MAPPED;
	if (!pmd_table(orig))
		return COLLAPSE_NO_PTE_TABLE;

	cl = malloc(sizeof(*cl));
	old = malloc(HPAGE_PMD_NR * sizeof(*old));
	if (!cl || !old) {
		free(cl);
		free(old);
		return COLLAPSE_FAIL;
	}
	cl->nr = 0;

	av = vma->anon_vma;
	down_write(&av->rwsem);
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, haddr,
				haddr + PMD_SIZE);
	mmu_notifier_invalidate_range_start(&range);
	/* pmdp_collapse_flush(): unhook the table, flush its translations. */
	spin_lock(&mm->page_table_lock);
	if (pte_val(ptep_get(pmd)) != pte_val(orig)) {
		/* Nothing changes a table PMD without mmap_lock; be safe. */
		spin_unlock(&mm->page_table_lock);
		mmu_notifier_invalidate_range_end(&range);
		up_write(&av->rwsem);
		free(cl);
		free(old);
		return COLLAPSE_FAIL;
	}
	/*
	 * Sequentially consistent, as are the refcount reads that follow
	 * (collapse_refcount_ok): pairs with GUP-fast's sequentially
	 * consistent reference increment and PMD re-read, so either it sees
	 * the PMD gone or we see its reference.
	 */
	__atomic_exchange_n(&pmd->val, 0, __ATOMIC_SEQ_CST);
	spin_unlock(&mm->page_table_lock);
	flush_tlb_range(mm, haddr, haddr + PMD_SIZE);

	ptes = pt_table(m, orig);
	table = pt_entry_page(mm, ptes);
	spin_lock(&table->ptl);
	r = collapse_isolate(m, ptes, cl);
	spin_unlock(&table->ptl);
	if (r == COLLAPSE_SUCCEED)
		r = collapse_copy(m, ptes, folio);
	if (r != COLLAPSE_SUCCEED) {
		/* Put the very same table back: nothing changed. */
		collapse_unlock_all(cl);
		spin_lock(&mm->page_table_lock);
		HETMM_BUG_ON(!pte_none(ptep_get(pmd)));
		set_pte(pmd, orig);
		spin_unlock(&mm->page_table_lock);
		mmu_notifier_invalidate_range_end(&range);
		up_write(&av->rwsem);
		free(cl);
		free(old);
		return r;
	}

	anon_folio_prep(folio, vma, haddr);
	/* Empty the old table: it becomes the leaf's deposit. */
	spin_lock(&table->ptl);
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++) {
		old[i] = ptep_get_and_clear(&ptes[i]);
		if (pte_present(old[i]) &&
		    !is_zero_page(pfn_to_page(m, pte_pfn(old[i]))))
			page_remove_pte_rmap(pfn_to_page(m, pte_pfn(old[i])));
	}
	spin_unlock(&table->ptl);
	spin_lock(&mm->page_table_lock);
	HETMM_BUG_ON(!pte_none(ptep_get(pmd)));
	pgtable_trans_huge_deposit(mm, pmd, table);
	folio_add_pmd_rmap(folio);
	set_pte(pmd, mk_huge_pmd(folio_pfn(folio), vma, true));
	spin_unlock(&mm->page_table_lock);
	mmu_notifier_invalidate_range_end(&range);
	up_write(&av->rwsem);
	count_stat(HETMM_STAT_thp_collapse_alloc);

	/* The old pages lose the PTEs' references (and die if unshared). */
	collapse_unlock_all(cl);
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++) {
		struct page *page;

		if (!pte_present(old[i]))
			continue;
		page = pfn_to_page(m, pte_pfn(old[i]));
		if (!is_zero_page(page))
			put_page(page);
	}
	free(cl);
	free(old);
	return COLLAPSE_SUCCEED;
}

/*
 * One 2 MiB range at @haddr: scan, allocate, collapse.
 * Context: mmap_lock held for read on entry and on return; dropped in
 * between when an allocation is made.
 */
static enum collapse_result collapse_one(struct mm_struct *mm,
					 unsigned long haddr)
{
	struct vm_area_struct *vma;
	enum collapse_result r;
	struct folio *folio;

	r = collapse_revalidate(mm, haddr, &vma);
	if (r != COLLAPSE_SUCCEED)
		return r;
	r = collapse_scan(mm, haddr);
	if (r != COLLAPSE_SUCCEED)
		return r;
	/* Like the kernel, allocate without mmap_lock (it may be slow). */
	mmap_read_unlock(mm);
	folio = folio_alloc(mm->machine, __GFP_MOVABLE, PMD_ORDER);
	if (!folio) {
		mmap_read_lock(mm);
		return COLLAPSE_ALLOC_FAIL;
	}
	mmap_write_lock(mm);
	r = collapse_locked(mm, haddr, folio);
	mmap_write_unlock(mm);
	if (r != COLLAPSE_SUCCEED)
		folio_put(folio);
	mmap_read_lock(mm);
	return r;
}

/*
 * madvise_collapse() for the part [@start, @end) of one VMA. Return: 0 or
 * -errno (see the file comment). Context: mmap_lock held for read.
 */
static int collapse_vma_range(struct mm_struct *mm, struct vm_area_struct *vma,
			      unsigned long start, unsigned long end)
{
	unsigned long hstart = ALIGN(start, PMD_SIZE);
	unsigned long hend = end & PMD_MASK;
	enum collapse_result last = COLLAPSE_FAIL;
	unsigned long thps = 0;

	if (!collapse_vma_allowed(vma))
		return -EINVAL;
	for (unsigned long addr = hstart; addr < hend; addr += PMD_SIZE) {
		enum collapse_result r = collapse_one(mm, addr);

		switch (r) {
		case COLLAPSE_SUCCEED:
		case COLLAPSE_PMD_MAPPED:
			thps++;
			break;
		/* The kernel's whitelist: go on with the next range. */
		case COLLAPSE_NO_PTE_TABLE:
		case COLLAPSE_PTE_NON_PRESENT:
		case COLLAPSE_PAGE_NULL:
		case COLLAPSE_PAGE_COUNT:
		case COLLAPSE_PAGE_LOCK:
			last = r;
			break;
		default:
			return collapse_errno(r);
		}
	}
	/* Unsigned, as in the kernel: hstart > hend never matches. */
	return thps == (hend - hstart) >> PMD_SHIFT ? 0 : collapse_errno(last);
}

/* Would Linux have merged @prev and its successor @next? */
static bool collapse_vmas_mergeable(const struct vm_area_struct *prev,
				    const struct vm_area_struct *next)
{
	/* Never driver mappings or hugetlb: only plain anonymous memory. */
	return prev->vm_end == next->vm_start &&
	       !(prev->vm_flags & (VM_SPECIAL | VM_HUGETLB)) &&
	       prev->vm_flags == next->vm_flags && !prev->vm_file &&
	       !next->vm_file && prev->anon_vma == next->anon_vma &&
	       next->vm_pgoff ==
		       prev->vm_pgoff +
			       ((prev->vm_end - prev->vm_start) >> PAGE_SHIFT);
}

/*
 * Merge the mergeable neighbours whose boundary lies inside (@start, @end)
 * (see the file comment). With @dry_run, only say whether there are any.
 * Context: mmap_lock held, for write unless @dry_run.
 */
static bool collapse_merge_vmas(struct mm_struct *mm, unsigned long start,
				unsigned long end, bool dry_run)
{
	struct vm_area_struct *vma = find_vma(mm, start), *next;
	bool found = false;

	while (vma && vma->vm_end < end) {
		next = vma_next(vma);
		if (!next || !collapse_vmas_mergeable(vma, next)) {
			vma = next;
			continue;
		}
		found = true;
		if (dry_run)
			break;
		vma_unlink(next);
		vma_set_range(vma, vma->vm_start, next->vm_end, vma->vm_pgoff);
		vm_area_free(next);
	}
	return found;
}

int madvise_collapse(struct mm_struct *mm, unsigned long start,
		     unsigned long end)
{
	unsigned long at = start;
	int unmapped = 0;

	mmap_assert_locked(mm);
	if (collapse_merge_vmas(mm, start, end, true)) {
		mmap_read_unlock(mm);
		mmap_write_lock(mm);
		collapse_merge_vmas(mm, start, end, false);
		mmap_write_unlock(mm);
		mmap_read_lock(mm);
	}
	while (at < end) {
		struct vm_area_struct *vma = find_vma(mm, at);
		unsigned long vend;
		int ret;

		if (!vma || vma->vm_start >= end)
			return -ENOMEM;
		/* A hole that appeared while the lock was dropped. */
		if (vma->vm_start > at) {
			unmapped = -ENOMEM;
			at = vma->vm_start;
		}
		vend = min(end, vma->vm_end);
		ret = collapse_vma_range(mm, vma, at, vend);
		if (ret)
			return ret;
		at = vend;
	}
	return unmapped;
}
