// SPDX-License-Identifier: MIT
/*
 * fork.c - hetmm_fork: copying an address space copy-on-write.
 *
 * Locking and invariants:
 *   parent mmap_lock (write) -> child mmap_lock (write, uncontended: the
 *   child is not visible yet) -> parent PTE lock -> child PTE lock.
 *   - Private (COW) mappings: every anonymous page becomes shared between
 *     parent and child: AnonExclusive cleared, both PTEs read-only, one
 *     more reference and mapcount. An exclusive anonymous page that may be
 *     DMA-pinned is copied for the child instead (the parent keeps the
 *     pinned page exclusive and writable), so a pin never observes the
 *     other process's writes.
 *   - Shared mappings are not copied: the child faults them in from the
 *     page cache (they map the same folios).
 *   - VM_DONTCOPY (MADV_DONTFORK) VMAs are left out.
 *   - While PTEs are being write-protected, mm->write_protect_seq is odd
 *     (if the mm was ever pinned), so GUP-fast can tell that a pin it took
 *     raced with fork.
 *   - The parent's TLBs are flushed for every write-protected range before
 *     fork returns (MMU_NOTIFY_PROTECTION_PAGE for subscribers, first).
 *   - On -ENOMEM the half-built child is torn down; the parent keeps all
 *     its data (PTEs made read-only stay so: the next write reuses the
 *     page, as its refcount is back to one).
 */
#include <hetmm/err.h>
#include <hetmm/stats.h>

#include "internal.h"

struct fork_ctx {
	struct vm_area_struct *src_vma, *dst_vma;
};

/*
 * Copy one present PTE. Return 0, or -ENOMEM if a pinned page needed a
 * copy that could not be allocated.
 */
static int copy_present_pte(struct fork_ctx *f, pte_t *src, pte_t *dst)
{
	struct vm_area_struct *vma = f->src_vma;
	struct mm_struct *mm = vma->vm_mm;
	pte_t e = ptep_get(src);
	bool cow = is_cow_mapping(vma->vm_flags);
	struct folio *folio;
	struct page *page;

	if (pte_special(e)) {
		set_pte(dst, e);
		return 0;
	}
	page = pfn_to_page(mm->machine, pte_pfn(e));
	folio = page_folio(page);
	if (folio_test_anon(folio) && PageAnonExclusive(page) &&
	    (atomic_load(&mm->flags) & BIT(MMF_HAS_PINNED)) &&
	    folio_maybe_dma_pinned(folio)) {
		struct folio *copy = folio_alloc(mm->machine, __GFP_MOVABLE, 0);

		if (!copy)
			return -ENOMEM;
		copy_highpage(&copy->page, page);
		folio_set_flag(copy, PG_anon);
		folio_set_flag(copy, PG_swapbacked);
		folio_set_flag(copy, PG_uptodate);
		SetPageAnonExclusive(&copy->page);
		copy->page.mapping = f->dst_vma->anon_vma;
		copy->page.index = page->index;
		page_add_pte_rmap(&copy->page);
		e = pfn_pte(folio_pfn(copy), _PAGE_DIRTY | _PAGE_YOUNG);
		if (vma->vm_flags & VM_WRITE)
			e = pte_mkwrite(e);
		set_pte(dst, e);
		count_stat(HETMM_STAT_fork_eager_copy);
		return 0;
	}
	if (folio_test_anon(folio))
		ClearPageAnonExclusive(page);
	get_page(page);
	page_add_pte_rmap(page);
	if (cow && pte_write(e)) {
		e = pte_wrprotect(e);
		set_pte(src, e);
	}
	set_pte(dst, pte_mkold(e));
	return 0;
}

/*
 * Copy a non-present entry. Device-private entries hold a reference and
 * a mapcount like present ones; migration entries hold neither (the
 * migration restores every mapping it finds through rmap, the child's
 * included). Writable kinds become read-only in a COW mapping.
 */
static void copy_nonpresent_pte(struct fork_ctx *f, pte_t *src, pte_t *dst)
{
	struct vm_area_struct *vma = f->src_vma;
	pte_t e = ptep_get(src);
	enum softleaf_type k = pte_kind(e);
	bool cow = is_cow_mapping(vma->vm_flags);
	softleaf_t s = softleaf_from_pte(e);

	if (is_device_private_kind(k) || k == SOFTLEAF_DEVICE_EXCLUSIVE) {
		struct page *page = pfn_to_page(vma->vm_mm->machine,
						softleaf_pfn(s));

		get_page(page);
		page_add_pte_rmap(page);
		if (folio_test_anon(page_folio(page)))
			ClearPageAnonExclusive(page);
		if (cow && k == SOFTLEAF_DEVICE_PRIVATE_WRITE) {
			e = softleaf_to_pte(
				make_device_private_entry(softleaf_pfn(s), false));
			set_pte(src, e);
		}
	} else if (is_migration_kind(k)) {
		if (cow && k != SOFTLEAF_MIGRATION_READ) {
			softleaf_t r = make_migration_entry(softleaf_pfn(s),
							    false, false);

			if (softleaf_young(s))
				r = softleaf_mkyoung(r);
			if (softleaf_dirty(s))
				r = softleaf_mkdirty(r);
			e = softleaf_to_pte(r);
			set_pte(src, e);
		}
	}
	set_pte(dst, e);
}

/*
 * fork gives a device-exclusive page back to the parent's CPU mapping and
 * copies that (the device loses exclusivity: the fork's PROTECTION_PAGE
 * invalidation of the range told it). Under the PTE lock, so only a
 * trylock of the folio: if somebody holds it, the entry is copied as a
 * mapping instead and restored on the next CPU access in either process.
 */
static bool restore_exclusive_for_fork(struct vm_area_struct *vma, pte_t *pte,
				       unsigned long addr)
{
	pte_t e = ptep_get(pte);
	struct page *page = pfn_to_page(vma->vm_mm->machine,
					softleaf_pfn(softleaf_from_pte(e)));
	struct folio *folio = page_folio(page);

	(void)addr;
	if (!folio_trylock(folio))
		return false;
	set_pte(pte, restore_exclusive_entry(vma, page, e));
	folio_unlock(folio);
	count_stat(HETMM_STAT_fault_exclusive_restore);
	return true;
}

static int copy_pmd(pmd_t *pmd, unsigned long addr, unsigned long end,
		    struct mm_walk *walk)
{
	struct fork_ctx *f = walk->private;
	struct mm_struct *dst_mm = f->dst_vma->vm_mm;
	spinlock_t *src_ptl, *dst_ptl;
	pte_t *src, *dst;
	pmd_t *dst_pmd;
	int ret = 0;

	walk->action = ACTION_CONTINUE;
	if (!pte_none(ptep_get(pmd)) && !pte_present(ptep_get(pmd))) {
		/* A device-private or migrating 2 MiB folio: copied as 512
		 * PTE entries (the kernel copies the PMD entry itself). */
		split_huge_pmd(f->src_vma, pmd, addr);
	}
	if (pmd_leaf(ptep_get(pmd))) {
		ret = copy_huge_pmd(f->dst_vma, f->src_vma, pmd, addr);
		if (ret != -EAGAIN)
			return ret;
		/* Pinned: split it, then copy its PTEs (eagerly). */
		split_huge_pmd(f->src_vma, pmd, addr);
		ret = 0;
	}
	if (!pmd_table(ptep_get(pmd)))
		return 0;
	dst_pmd = pte_table_alloc(dst_mm, addr);
	if (!dst_pmd)
		return -ENOMEM;
	src = pte_offset_map_lock(walk->mm, pmd, addr, &src_ptl);
	if (!src)
		return 0;
	dst = pte_offset_map_lock(dst_mm, dst_pmd, addr, &dst_ptl);
	HETMM_BUG_ON(!dst);
	for (; addr < end; addr += PAGE_SIZE, src++, dst++) {
		pte_t e = ptep_get(src);

		if (pte_none(e))
			continue;
		count_stat(HETMM_STAT_fork_pte_copy);
		if (pte_kind(e) == SOFTLEAF_DEVICE_EXCLUSIVE &&
		    restore_exclusive_for_fork(f->src_vma, src, addr))
			e = ptep_get(src);
		if (!pte_present(e)) {
			copy_nonpresent_pte(f, src, dst);
			continue;
		}
		ret = copy_present_pte(f, src, dst);
		if (ret)
			break;
	}
	spin_unlock(dst_ptl);
	spin_unlock(src_ptl);
	return ret;
}

static const struct mm_walk_ops fork_ops = {
	.pmd_entry = copy_pmd,
	.walk_lock = PGWALK_WRLOCK,
};

static int copy_page_range(struct vm_area_struct *dst_vma,
			   struct vm_area_struct *src_vma)
{
	struct fork_ctx f = { .src_vma = src_vma, .dst_vma = dst_vma };
	struct mm_struct *src_mm = src_vma->vm_mm;
	struct mmu_notifier_range range;
	bool cow = is_cow_mapping(src_vma->vm_flags);
	int ret;

	if (cow) {
		mmu_notifier_range_init(&range, MMU_NOTIFY_PROTECTION_PAGE, 0,
					src_mm, src_vma->vm_start,
					src_vma->vm_end);
		mmu_notifier_invalidate_range_start(&range);
		write_seqcount_begin(&src_mm->write_protect_seq);
	}
	ret = walk_page_range_novma(src_mm, src_vma->vm_start, src_vma->vm_end,
				    &fork_ops, &f);
	if (cow) {
		write_seqcount_end(&src_mm->write_protect_seq);
		flush_tlb_range(src_mm, src_vma->vm_start, src_vma->vm_end);
		mmu_notifier_invalidate_range_end(&range);
	}
	return ret;
}

struct mm_struct *hetmm_fork(struct mm_struct *parent)
{
	struct vm_area_struct *vma;
	struct mm_struct *child;
	int ret = 0;

	if (!parent)
		return ERR_PTR(-EINVAL);
	child = hetmm_process_create(parent->machine);
	if (IS_ERR(child))
		return child;
	process_fork_files(parent, child);
	mmap_write_lock(parent);
	mmap_write_lock(child);
	for (vma = find_vma(parent, 0); vma; vma = vma_next(vma)) {
		struct vm_area_struct *new;

		if (vma->vm_flags & VM_DONTCOPY)
			continue;
		new = vm_area_dup(vma);
		if (!new) {
			ret = -ENOMEM;
			break;
		}
		new->vm_mm = child;
		HETMM_BUG_ON(vma_link(child, new));
		/*
		 * Shared mappings fault in from the page cache; a driver's
		 * mapping (VM_PFNMAP/VM_MIXEDMAP) has no fault handler, so
		 * its entries are always copied.
		 */
		if (!vma->anon_vma &&
		    !(vma->vm_flags & (VM_PFNMAP | VM_MIXEDMAP)))
			continue;
		ret = copy_page_range(new, vma);
		if (ret)
			break;
	}
	mmap_write_unlock(child);
	mmap_write_unlock(parent);
	if (ret) {
		hetmm_exit(child);
		return ERR_PTR(ret);
	}
	count_stat(HETMM_STAT_fork);
	return child;
}
