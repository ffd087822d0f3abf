// SPDX-License-Identifier: MIT
/*
 * device_exclusive.c - make_device_exclusive(): lend one anonymous page to
 * a device for atomic access by replacing its PTE with a device-exclusive
 * entry. The CPU gets it back on its next access (do_swap_page in
 * mm/memory.c restores the present PTE) or through fork.
 *
 * Locking: mmap_lock held for read by the caller -> folio lock -> PTE lock.
 * The MMU_NOTIFY_EXCLUSIVE invalidation (owner = the caller's cookie, so a
 * driver can recognise and skip its own event) brackets the PTE change.
 *
 * Invariants:
 *   - only a present, writable PTE of an anonymous, non-hugetlb page at
 *     PTE level becomes device-exclusive (a PMD-mapped THP is split first;
 *     COW is broken by a write fault first, as GUP with FOLL_WRITE would);
 *   - the entry keeps the page's mapping: reference, mapcount and rmap are
 *     unchanged, soft-dirty is carried, a dirty PTE dirties the folio;
 *   - the page is returned with its folio locked and one extra reference,
 *     which the driver drops after mapping it on the device.
 */
#include <hetmm/err.h>
#include <hetmm/migrate.h>
#include <hetmm/mmu_notifier.h>
#include <hetmm/stats.h>
#include <hetmm/tlb.h>
#include <hetmm/uapi.h>

#include "../mm/internal.h"

/*
 * The page mapped writable at @addr, referenced, or an errno: faults it in
 * for writing (breaking COW, bringing device pages back, restoring an
 * earlier exclusive entry) and splits a THP mapping, like GUP with
 * FOLL_WRITE | FOLL_SPLIT_PMD.
 */
static struct page *get_writable_page(struct vm_area_struct *vma,
				      unsigned long addr)
{
	struct mm_struct *mm = vma->vm_mm;

	for (int tries = 0;; tries++) {
		pmd_t *pmd = mm_find_pmd(mm, addr);
		struct page *page = NULL;
		spinlock_t *ptl;
		pte_t *pte;
		int ret;

		if (pmd && !pte_none(ptep_get(pmd)) && !pmd_table(ptep_get(pmd)))
			split_huge_pmd(vma, pmd, addr);
		pte = pmd ? pte_offset_map_lock(mm, pmd, addr, &ptl) : NULL;
		if (pte) {
			pte_t e = ptep_get(pte);

			if (pte_present(e) && pte_write(e) && !pte_special(e)) {
				page = pfn_to_page(mm->machine, pte_pfn(e));
				get_page(page);
			}
			spin_unlock(ptl);
		}
		if (page)
			return page;
		if (HETMM_WARN_ON_ONCE(tries > 1000))
			return ERR_PTR(-EBUSY);
		ret = handle_mm_fault(vma, addr,
				      FAULT_FLAG_WRITE | FAULT_FLAG_REMOTE);
		if (ret)
			return ERR_PTR(ret);
	}
}

struct page *make_device_exclusive(struct mm_struct *mm, unsigned long addr,
				   void *owner, struct folio **foliop)
{
	struct mmu_notifier_range range;
	struct vm_area_struct *vma;

	if (!mm || !foliop)
		return ERR_PTR(-EINVAL);
	mmap_assert_locked(mm);
	addr &= PAGE_MASK;
	vma = vma_lookup(mm, addr);
	if (!vma || (vma->vm_flags & (VM_IO | VM_PFNMAP)))
		return ERR_PTR(-EFAULT);
	if (!(vma->vm_flags & VM_WRITE))
		return ERR_PTR(-EFAULT); /* GUP: FOLL_WRITE on a R/O VMA */
	if (vma->vm_flags & VM_HUGETLB)
		return ERR_PTR(-EOPNOTSUPP);

	for (;;) {
		struct page *page = get_writable_page(vma, addr);
		struct folio *folio;
		spinlock_t *ptl;
		pmd_t *pmd;
		pte_t *pte;
		bool done = false;

		if (IS_ERR(page))
			return page;
		folio = page_folio(page);
		if (!folio_test_anon(folio) || folio_test_hugetlb(folio)) {
			folio_put(folio);
			return ERR_PTR(-EOPNOTSUPP);
		}
		folio_lock(folio);
		mmu_notifier_range_init_owner(&range, MMU_NOTIFY_EXCLUSIVE, 0, mm,
					      addr, addr + PAGE_SIZE, owner);
		mmu_notifier_invalidate_range_start(&range);
		pmd = mm_find_pmd(mm, addr);
		pte = pmd ? pte_offset_map_lock(mm, pmd, addr, &ptl) : NULL;
		if (pte) {
			pte_t e = ptep_get(pte);

			/* Still the same page, at PTE level, writable? */
			if (pte_present(e) && pte_write(e) &&
			    pte_pfn(e) == page_to_pfn(page)) {
				softleaf_t x;

				e = ptep_clear_flush(mm, addr, pte);
				if (pte_dirty(e))
					folio_set_flag(folio, PG_dirty);
				x = make_device_exclusive_entry(page_to_pfn(page));
				if (pte_soft_dirty(e))
					x.val |= _SWP_SOFT_DIRTY;
				set_pte(pte, softleaf_to_pte(x));
				done = true;
			}
			spin_unlock(ptl);
		}
		mmu_notifier_invalidate_range_end(&range);
		if (done) {
			count_stat(HETMM_STAT_device_exclusive);
			*foliop = folio;
			return page;
		}
		/* Lost a race (COW, unmap, migration): try again. */
		folio_unlock(folio);
		folio_put(folio);
	}
}
