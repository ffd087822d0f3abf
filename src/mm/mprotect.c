// SPDX-License-Identifier: MIT
/*
 * mprotect.c - mprotect and madvise: per-range VMA flag changes, and the
 * page-table changes they imply.
 *
 * Locking and invariants: both take mmap_lock for write (MADV_DONTNEED and
 * the populate advices for read), check the whole range before changing
 * anything, and preallocate the (at most two) VMAs a split needs, so a
 * failing call changes nothing.
 *   - After mprotect, no PTE grants more than its VMA: write-protected
 *     where VM_WRITE is gone, PROTNONE where the VMA allows no access;
 *     the range is flushed from every TLB before the call returns, and
 *     subscribers hear MMU_NOTIFY_PROTECTION_VMA first.
 *   - Granting write back makes a PTE writable at once only where no COW
 *     or dirty tracking needs the fault: exclusive anon pages in private
 *     mappings, already-dirty pages in shared ones.
 */
#include <hetmm/err.h>
#include <hetmm/stats.h>

#include "internal.h"

bool range_mapped(struct mm_struct *mm, unsigned long start,
		  unsigned long end)
{
	struct vm_area_struct *vma = find_vma(mm, start);
	unsigned long at = start;

	for (; vma && vma->vm_start <= at && at < end; vma = vma_next(vma))
		at = vma->vm_end;
	return at >= end;
}

int vma_split_range(struct mm_struct *mm, unsigned long start,
		    unsigned long end)
{
	struct vm_area_struct *first = vma_lookup(mm, start);
	struct vm_area_struct *last = vma_lookup(mm, end - 1);
	struct vm_area_struct *spare[2] = { NULL, NULL };
	bool split_start, split_end;

	mmap_assert_write_locked(mm);
	if (!first || !last)
		return -ENOMEM;
	split_start = first->vm_start < start;
	split_end = last->vm_end > end;
	if (split_start && !(spare[0] = malloc(sizeof(*spare[0]))))
		return -ENOMEM;
	if (split_end && !(spare[1] = malloc(sizeof(*spare[1])))) {
		free(spare[0]);
		return -ENOMEM;
	}
	if (split_start) {
		split_vma_at(first, start, spare[0]);
		if (last == first)
			last = spare[0];
	}
	if (split_end)
		split_vma_at(last, end, spare[1]);
	return 0;
}

/* --------------------------------------------------------------- mprotect */

pte_t vma_protect_entry(struct hetmm_machine *m, pte_t e,
			unsigned long flags)
{
	pte_t n = pte_clear_flags(e, _PAGE_PROTNONE);
	struct page *page;

	if (!(flags & (VM_READ | VM_WRITE | VM_EXEC)))
		return pte_set_flags(pte_wrprotect(n), _PAGE_PROTNONE);
	if (!(flags & VM_WRITE))
		return pte_wrprotect(n);
	if (pte_write(n) || pte_special(n))
		return n;
	if (flags & VM_SHARED)
		return pte_dirty(n) ? pte_mkwrite(n) : n;
	page = pfn_to_page(m, pte_pfn(n));
	if (folio_test_anon(page_folio(page)) && PageAnonExclusive(page))
		n = pte_mkwrite(n);
	return n;
}

static int change_pte(pte_t *pte, unsigned long addr, unsigned long next,
		      struct mm_walk *walk)
{
	struct vm_area_struct *vma = walk->vma;
	unsigned long flags = vma->vm_flags;
	pte_t e = ptep_get(pte), n;

	(void)next;
	(void)addr;
	if (pte_none(e))
		return 0;
	if (!pte_present(e)) {
		softleaf_t s = softleaf_from_pte(e);
		enum softleaf_type k = pte_kind(e);

		if (flags & VM_WRITE)
			return 0;
		/* Writable migration/device entries restore read-only. */
		if (k == SOFTLEAF_MIGRATION_WRITE) {
			softleaf_t r = make_migration_entry(softleaf_pfn(s),
							    false, true);

			if (softleaf_young(s))
				r = softleaf_mkyoung(r);
			if (softleaf_dirty(s))
				r = softleaf_mkdirty(r);
			set_pte(pte, softleaf_to_pte(r));
		} else if (k == SOFTLEAF_DEVICE_PRIVATE_WRITE) {
			set_pte(pte, softleaf_to_pte(make_device_private_entry(
					     softleaf_pfn(s), false)));
		}
		return 0;
	}
	n = vma_protect_entry(walk->mm->machine, e, flags);
	if (pte_val(n) != pte_val(e)) {
		set_pte(pte, n);
		count_stat(HETMM_STAT_mprotect_pte);
	}
	return 0;
}

static int change_pmd(pmd_t *pmd, unsigned long addr, unsigned long next,
		      struct mm_walk *walk)
{
	(void)next;
	/* A device-private or migrating 2 MiB folio changes as 512 PTEs. */
	if (!pte_none(ptep_get(pmd)) && !pte_present(ptep_get(pmd)))
		split_huge_pmd(walk->vma, pmd, addr);
	/* Leaves lie inside one VMA (VMA splits split them). */
	if (pmd_leaf(ptep_get(pmd))) {
		change_huge_pmd(walk->vma, pmd, addr);
		walk->action = ACTION_CONTINUE;
	}
	return 0;
}

static const struct mm_walk_ops change_ops = {
	.pmd_entry = change_pmd,
	.pte_entry = change_pte,
	.walk_lock = PGWALK_WRLOCK,
};

static void change_protection(struct vm_area_struct *vma)
{
	struct mm_struct *mm = vma->vm_mm;
	struct mmu_notifier_range range;

	mmu_notifier_range_init(&range, MMU_NOTIFY_PROTECTION_VMA, 0, mm,
				vma->vm_start, vma->vm_end);
	mmu_notifier_invalidate_range_start(&range);
	walk_page_range(mm, vma->vm_start, vma->vm_end, &change_ops, NULL);
	flush_tlb_range(mm, vma->vm_start, vma->vm_end);
	mmu_notifier_invalidate_range_end(&range);
}

int hetmm_mprotect(struct mm_struct *mm, unsigned long addr, size_t len,
		   int prot)
{
	const unsigned long access = VM_READ | VM_WRITE | VM_EXEC;
	unsigned long end, newacc;
	struct vm_area_struct *vma;
	int ret;

	if (!mm || !IS_ALIGNED(addr, PAGE_SIZE) ||
	    (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
		return -EINVAL;
	if (!len)
		return 0;
	len = ALIGN(len, PAGE_SIZE);
	end = addr + len;
	if (!len || end <= addr || end > TASK_SIZE)
		return -ENOMEM;
	newacc = vm_flags_from_prot(prot);

	mmap_write_lock(mm);
	ret = -ENOMEM;
	if (!range_mapped(mm, addr, end))
		goto out;
	for (vma = find_vma(mm, addr); vma && vma->vm_start < end;
	     vma = vma_next(vma)) {
		ret = -EACCES;
		if ((newacc & VM_WRITE) && !(vma->vm_flags & VM_MAYWRITE))
			goto out;
	}
	ret = hugetlb_range_ok(mm, addr, end);
	if (ret)
		goto out;
	ret = vma_split_range(mm, addr, end);
	if (ret)
		goto out;
	for (vma = find_vma(mm, addr); vma && vma->vm_start < end;
	     vma = vma_next(vma)) {
		unsigned long nf = (vma->vm_flags & ~access) | newacc;

		if (nf == vma->vm_flags)
			continue;
		vma->vm_flags = nf;
		change_protection(vma);
	}
	ret = 0;
out:
	mmap_write_unlock(mm);
	return ret;
}

/* ---------------------------------------------------------------- madvise */

static int madvise_flags(struct mm_struct *mm, unsigned long start,
			 unsigned long end, unsigned long set,
			 unsigned long clear)
{
	struct vm_area_struct *vma;
	int ret = vma_split_range(mm, start, end);

	if (ret)
		return ret;
	for (vma = find_vma(mm, start); vma && vma->vm_start < end;
	     vma = vma_next(vma))
		vma->vm_flags = (vma->vm_flags & ~clear) | set;
	return 0;
}

static int madvise_populate(struct mm_struct *mm, unsigned long start,
			    unsigned long end, bool write)
{
	for (unsigned long a = start; a < end; a += PAGE_SIZE) {
		struct vm_area_struct *vma = vma_lookup(mm, a);
		int ret;

		if (!vma)
			return -ENOMEM;
		/* Incompatible mapping or no permission: -EINVAL, as the
		 * kernel's madv_populate selftest expects. */
		if ((vma->vm_flags & (VM_IO | VM_PFNMAP)) ||
		    !(vma->vm_flags & (VM_READ | VM_WRITE)) ||
		    (write && !(vma->vm_flags & VM_WRITE)))
			return -EINVAL;
		/* Populate-write breaks COW, as a write would. */
		ret = handle_mm_fault(vma, a, write ? FAULT_FLAG_WRITE : 0);
		if (ret)
			return ret == -ENOMEM ? -ENOMEM : -EFAULT;
	}
	return 0;
}

int hetmm_madvise(struct mm_struct *mm, unsigned long addr, size_t len,
		  int advice)
{
	struct vm_area_struct *vma;
	unsigned long end;
	bool write_lock;
	int ret;

	if (!mm || !IS_ALIGNED(addr, PAGE_SIZE))
		return -EINVAL;
	switch (advice) {
	case MADV_DONTNEED:
	case MADV_POPULATE_READ:
	case MADV_POPULATE_WRITE:
	case MADV_COLLAPSE: /* takes mmap_lock for write itself, per range */
		write_lock = false;
		break;
	case MADV_HUGEPAGE:
	case MADV_NOHUGEPAGE:
	case MADV_DONTFORK:
	case MADV_DOFORK:
		write_lock = true;
		break;
	default:
		return -EINVAL;
	}
	end = addr + ALIGN(len, PAGE_SIZE);
	if (end < addr || (len && end == addr))
		return -EINVAL;
	if (end == addr)
		return 0;
	if (end > TASK_SIZE)
		return -ENOMEM;

	if (write_lock)
		mmap_write_lock(mm);
	else
		mmap_read_lock(mm);
	ret = -ENOMEM;
	if (!range_mapped(mm, addr, end))
		goto out;
	switch (advice) {
	case MADV_DONTNEED:
		/* hugetlb: the start must be 2 MiB aligned; the end is
		 * rounded up to the huge page, as in Linux. */
		for (vma = find_vma(mm, addr); vma && vma->vm_start < end;
		     vma = vma_next(vma))
			if ((vma->vm_flags & VM_PFNMAP) ||
			    ((vma->vm_flags & VM_HUGETLB) &&
			     !IS_ALIGNED(max(addr, vma->vm_start), PMD_SIZE))) {
				ret = -EINVAL;
				goto out;
			}
		for (vma = find_vma(mm, addr); vma && vma->vm_start < end;
		     vma = vma_next(vma))
			zap_page_range_event(vma, addr,
					     (vma->vm_flags & VM_HUGETLB) ?
						     ALIGN(end, PMD_SIZE) :
						     end,
					     MMU_NOTIFY_CLEAR);
		ret = 0;
		break;
	case MADV_POPULATE_READ:
	case MADV_POPULATE_WRITE:
		ret = madvise_populate(mm, addr, end,
				       advice == MADV_POPULATE_WRITE);
		break;
	case MADV_COLLAPSE:
		/* May drop and retake mmap_lock; returns with it held. */
		ret = madvise_collapse(mm, addr, end);
		break;
	case MADV_HUGEPAGE:
		ret = madvise_flags(mm, addr, end, VM_HUGEPAGE, VM_NOHUGEPAGE);
		break;
	case MADV_NOHUGEPAGE:
		ret = madvise_flags(mm, addr, end, VM_NOHUGEPAGE, VM_HUGEPAGE);
		break;
	case MADV_DONTFORK:
		ret = madvise_flags(mm, addr, end, VM_DONTCOPY, 0);
		break;
	case MADV_DOFORK:
		ret = madvise_flags(mm, addr, end, 0, VM_DONTCOPY);
		break;
	}
out:
	if (write_lock)
		mmap_write_unlock(mm);
	else
		mmap_read_unlock(mm);
	return ret;
}
