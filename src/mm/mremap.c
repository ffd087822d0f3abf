// SPDX-License-Identifier: MIT
/*
 * mremap.c - hetmm_mremap: shrink, grow in place, or move a mapping.
 *
 * Locking and invariants: mmap_lock held for write throughout. Every check
 * and allocation that can fail happens before the first change: the old
 * range is split into a VMA of its own, the new VMA and every page table
 * of the new range are allocated, then entries move (no allocation left).
 *   - A move keeps each page's reference, mapcount and anon index: the
 *     new VMA's vm_pgoff is the old range's, so rmap finds moved pages.
 *   - Subscribers hear MMU_NOTIFY_UNMAP for the old range before entries
 *     leave it; the old range is flushed from every TLB before the call
 *     returns.
 *   - While entries move, both VMAs are linked and an entry may be in
 *     either, so an rmap walker (migration, longterm pinning, truncate,
 *     which need no mmap_lock) could look at the new VMA before its entry
 *     arrives and at the old one after it left, and miss the page. The
 *     move therefore holds the VMA's rmap locks for write (i_mmap_rwsem,
 *     then the anon_vma rwsem) from the first entry moved until the old
 *     range is flushed from every TLB. THPs are split before the locks
 *     are taken: a split notifies subscribers, whose callbacks must not
 *     run under rmap locks.
 *   - When both ranges share a PTE table the entries move under its one
 *     lock; otherwise the old table's lock nests outside the new one's
 *     (mremap is the only path holding two PTE locks of one mm, and it
 *     runs under mmap_lock held for write).
 */
#include <hetmm/err.h>
#include <hetmm/stats.h>

#include "internal.h"

struct move_ctx {
	unsigned long old_addr, new_addr;
	struct mmu_gather *tlb;
};

static int move_pte(pte_t *pte, unsigned long addr, unsigned long next,
		    struct mm_walk *walk)
{
	struct move_ctx *mc = walk->private;
	struct mm_struct *mm = walk->mm;
	unsigned long to = mc->new_addr + (addr - mc->old_addr);
	pmd_t *src_pmd = mm_find_pmd(mm, addr);
	pmd_t *dst_pmd = mm_find_pmd(mm, to);
	spinlock_t *dst_ptl;
	pte_t e, *dst;

	(void)next;
	if (pte_none(ptep_get(pte)))
		return 0;
	/* Preallocated: the new range's tables exist. */
	HETMM_BUG_ON(!dst_pmd || !pmd_table(ptep_get(dst_pmd)));
	dst = pte_offset(mm, dst_pmd, to);
	dst_ptl = pte_lockptr(mm, dst_pmd);
	if (dst_ptl != pte_lockptr(mm, src_pmd))
		spin_lock(dst_ptl);
	e = ptep_get_and_clear(pte);
	if (pte_present(e))
		tlb_track(mc->tlb, addr, PAGE_SIZE);
	HETMM_BUG_ON(!pte_none(ptep_get(dst)));
	set_pte(dst, e);
	if (dst_ptl != pte_lockptr(mm, src_pmd))
		spin_unlock(dst_ptl);
	count_stat(HETMM_STAT_mremap_pte_move);
	return 0;
}

/* THPs in the old range are split first, and move as PTEs. */
static int split_pmd(pmd_t *pmd, unsigned long addr, unsigned long next,
		     struct mm_walk *walk)
{
	pmd_t e = ptep_get(pmd);

	(void)next;
	if (!pte_none(e) && !pmd_table(e))
		split_huge_pmd(vma_lookup(walk->mm, addr), pmd, addr);
	return 0;
}

static const struct mm_walk_ops split_ops = {
	.pmd_entry = split_pmd,
	.walk_lock = PGWALK_WRLOCK,
};

static const struct mm_walk_ops move_ops = {
	.pte_entry = move_pte,
	.walk_lock = PGWALK_WRLOCK,
};

/* Keep rmap walkers away from @vma's pages while their entries move. */
static void take_rmap_locks(struct vm_area_struct *vma)
{
	if (vma->vm_file)
		i_mmap_lock_write(vma->vm_file->f_mapping);
	if (vma->anon_vma)
		down_write(&vma->anon_vma->rwsem);
}

static void drop_rmap_locks(struct vm_area_struct *vma)
{
	if (vma->anon_vma)
		up_write(&vma->anon_vma->rwsem);
	if (vma->vm_file)
		i_mmap_unlock_write(vma->vm_file->f_mapping);
}

/* Allocate every PTE table of [start, end). */
static int prealloc_tables(struct mm_struct *mm, unsigned long start,
			   unsigned long end)
{
	for (unsigned long a = start; a < end;
	     a = pt_addr_end(a, end, PMD_SIZE))
		if (!pte_table_alloc(mm, a))
			return -ENOMEM;
	return 0;
}

/*
 * Allocate the destination's page tables before anything changes, so an
 * -ENOMEM leaves the address space as it was (empty tables are freed).
 * hugetlb moves allocate down to the PMD only, in move_hugetlb().
 */
static int prealloc_move(struct vm_area_struct *vma, unsigned long new_addr,
			 unsigned long len)
{
	struct mm_struct *mm = vma->vm_mm;
	int ret;

	if (vma->vm_flags & VM_HUGETLB)
		return 0;
	ret = prealloc_tables(mm, new_addr, new_addr + len);
	if (ret)
		free_pgd_range(mm, new_addr, new_addr + len);
	return ret;
}

/*
 * hugetlb: tables down to the PMD first (the only allocations), then the
 * leaves move whole.
 */
static int move_hugetlb(struct vm_area_struct *vma, unsigned long old_addr,
			unsigned long new_addr, unsigned long len)
{
	struct mm_struct *mm = vma->vm_mm;
	struct mmu_notifier_range range;

	for (unsigned long o = 0; o < len; o += PMD_SIZE) {
		pud_t *pud = pud_alloc(mm, pgd_offset(mm, new_addr + o),
				       new_addr + o);

		if (!pud || !pmd_alloc(mm, pud, new_addr + o))
			return -ENOMEM;
	}
	mmu_notifier_range_init(&range, MMU_NOTIFY_UNMAP, 0, mm, old_addr,
				old_addr + len);
	mmu_notifier_invalidate_range_start(&range);
	take_rmap_locks(vma);
	for (unsigned long o = 0; o < len; o += PMD_SIZE)
		HETMM_BUG_ON(move_huge_pmd(vma, old_addr + o, new_addr + o));
	flush_tlb_range(mm, old_addr, old_addr + len);
	drop_rmap_locks(vma);
	mmu_notifier_invalidate_range_end(&range);
	return 0;
}

/*
 * Move the whole VMA @vma (already split to the old range) to a new VMA
 * at [new_addr, new_addr + new_len), which must be free.
 */
static long move_vma(struct vm_area_struct *vma, unsigned long new_addr,
		     unsigned long new_len, bool dontunmap)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long old_addr = vma->vm_start, old_len = vma->vm_end - old_addr;
	unsigned long moved = min(old_len, new_len);
	struct mmu_notifier_range range;
	struct vm_area_struct *new;
	struct mmu_gather tlb;
	struct move_ctx mc;
	int ret;

	new = vm_area_dup(vma);
	if (!new)
		return -ENOMEM;
	new->vm_start = new_addr;
	new->vm_end = new_addr + new_len;
	ret = vma_link(mm, new);
	if (ret) {
		vm_area_free(new);
		return ret;
	}
	if (vma->vm_flags & VM_HUGETLB) {
		ret = move_hugetlb(vma, old_addr, new_addr, moved);
		goto moved;
	}
	ret = prealloc_tables(mm, new_addr, new_addr + moved);
	if (ret) {
		vma_unlink(new);
		vm_area_free(new);
		free_pgd_range(mm, new_addr, new_addr + new_len);
		return ret;
	}
	mmu_notifier_range_init(&range, MMU_NOTIFY_UNMAP, 0, mm, old_addr,
				old_addr + moved);
	mmu_notifier_invalidate_range_start(&range);
	walk_page_range_novma(mm, old_addr, old_addr + moved, &split_ops, NULL);
	tlb_gather_mmu(&tlb, mm);
	mc = (struct move_ctx){ .old_addr = old_addr, .new_addr = new_addr,
				.tlb = &tlb };
	take_rmap_locks(vma);
	walk_page_range_novma(mm, old_addr, old_addr + moved, &move_ops, &mc);
	tlb_finish_mmu(&tlb);
	drop_rmap_locks(vma);
	mmu_notifier_invalidate_range_end(&range);
moved:
	if (ret) {
		vma_unlink(new);
		vm_area_free(new);
		free_pgd_range(mm, new_addr, new_addr + new_len);
		return ret;
	}
	if (!dontunmap) {
		/* Whatever was not moved (a shrinking move) is unmapped. */
		zap_page_range(vma, old_addr, old_addr + old_len);
		vma_unlink(vma);
		vm_area_free(vma);
		free_pgd_range(mm, old_addr, old_addr + old_len);
	}
	return (long)new_addr;
}

long hetmm_mremap(struct mm_struct *mm, unsigned long old_addr,
		  size_t old_len, size_t new_len, int flags,
		  unsigned long new_addr)
{
	bool fixed = flags & MREMAP_FIXED, maymove = flags & MREMAP_MAYMOVE;
	bool dontunmap = flags & MREMAP_DONTUNMAP;
	struct vm_area_struct *vma, *next;
	unsigned long old_end;
	long ret;

	if (!mm || (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED |
			      MREMAP_DONTUNMAP)))
		return -EINVAL;
	if ((fixed && !maymove) || (dontunmap && !maymove))
		return -EINVAL;
	if (!IS_ALIGNED(old_addr, PAGE_SIZE))
		return -EINVAL;
	old_len = ALIGN(old_len, PAGE_SIZE);
	new_len = ALIGN(new_len, PAGE_SIZE);
	if (!new_len || new_len > TASK_SIZE)
		return -EINVAL;
	if (dontunmap && old_len != new_len)
		return -EINVAL;
	if (old_addr > TASK_SIZE || old_len > TASK_SIZE - old_addr)
		return -EINVAL;
	if (fixed) {
		if (!IS_ALIGNED(new_addr, PAGE_SIZE) ||
		    new_addr > TASK_SIZE - new_len)
			return -EINVAL;
		/* The ranges may not overlap. */
		if (new_addr < old_addr + old_len &&
		    old_addr < new_addr + new_len)
			return -EINVAL;
	}
	old_end = old_addr + old_len;

	mmap_write_lock(mm);
	vma = vma_lookup(mm, old_addr);
	ret = -EFAULT;
	if (!vma)
		goto out;
	if (!old_len) {
		/* Linux: duplicates a shared mapping; nothing else. */
		ret = -EINVAL;
		goto out;
	}
	/* Shrinking unmaps the tail, whatever it spans. */
	if (!fixed && !dontunmap && new_len <= old_len) {
		/* Not through the middle of a huge page (hugetlb). */
		ret = hugetlb_range_ok(mm, old_addr + new_len, old_end) ?:
		      do_munmap(mm, old_addr + new_len, old_end);
		if (!ret)
			ret = (long)old_addr;
		goto out;
	}
	if (old_len > vma->vm_end - old_addr)
		goto out;
	ret = -EINVAL;
	if ((vma->vm_flags & VM_HUGETLB) &&
	    (!IS_ALIGNED(old_addr | old_len | new_len, PMD_SIZE) ||
	     (fixed && !IS_ALIGNED(new_addr, PMD_SIZE))))
		goto out;

	if (fixed) {
		ret = do_munmap(mm, new_addr, new_addr + new_len);
		if (ret)
			goto out;
		/* The unmap may have split the old range's VMA. */
		vma = vma_lookup(mm, old_addr);
		ret = prealloc_move(vma, new_addr, min(old_len, new_len)) ?:
		      vma_split_range(mm, old_addr, old_end);
		if (ret)
			goto out;
		ret = move_vma(vma_lookup(mm, old_addr), new_addr, new_len,
			       dontunmap);
		goto out;
	}
	/* Grow in place if the mapping ends here and the gap allows. */
	next = vma_next(vma);
	if (!dontunmap && old_end == vma->vm_end &&
	    new_len - old_len <= TASK_SIZE - old_end &&
	    (!next || next->vm_start >= old_addr + new_len)) {
		vma_set_range(vma, vma->vm_start, old_addr + new_len,
			      vma->vm_pgoff);
		ret = (long)old_addr;
		goto out;
	}
	ret = -ENOMEM;
	if (!maymove)
		goto out;
	new_addr = get_unmapped_area(mm, new_len);
	if (!new_addr)
		goto out;
	ret = prealloc_move(vma, new_addr, min(old_len, new_len)) ?:
	      vma_split_range(mm, old_addr, old_end);
	if (ret)
		goto out;
	ret = move_vma(vma_lookup(mm, old_addr), new_addr, new_len, dontunmap);
out:
	mmap_write_unlock(mm);
	return ret;
}
