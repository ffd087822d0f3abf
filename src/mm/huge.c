// SPDX-License-Identifier: MIT
/*
 * huge.c - transparent huge pages: 2 MiB anonymous folios mapped by one
 * PMD leaf, and splitting such a mapping into 512 PTEs.
 *
 * Locking and invariants:
 *   mmap_lock (read: fault, split; write: fork, mprotect, VMA splits)
 *     mm->page_table_lock (every change to a PMD entry, and TLB fills from
 *     a PMD leaf) -> cpu->lock
 *   - A PMD leaf maps a whole order-9 anon folio (head pfn, 2 MiB aligned)
 *     entirely inside one VMA: a VMA split inside a leaf splits the leaf
 *     first. It holds one folio reference, one entire mapcount and one
 *     large mapcount.
 *   - PageAnonExclusive of a PMD-mapped folio is the head page's bit; a
 *     split copies it to every page.
 *   - Each PMD leaf has a PTE-table frame deposited on its PMD table's
 *     page (lru list), allocated at fault or fork, so a split never needs
 *     memory; zapping the leaf frees the deposit.
 *   - A split installs the deposited table with 512 PTEs equivalent to
 *     the leaf (same pfns, write/dirty/young/soft-dirty bits), adds a
 *     reference and a PTE mapcount per page and drops the PMD's, so the
 *     folio stays large and is PTE-mapped. Subscribers hear
 *     MMU_NOTIFY_CLEAR for the 2 MiB range and the TLBs are flushed.
 *   - Read faults on none PMDs map the 4 KiB zero page (no huge zero page);
 *     a write fault in such a range then uses 4 KiB pages.
 */
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/stats.h>

#include "internal.h"

int hetmm_thp_set_mode(struct hetmm_machine *m, const char *mode)
{
	struct mm_machine *mmm = m ? mm_machine(m) : NULL;
	int v;

	if (!mmm || !mode)
		return -EINVAL;
	if (!strcmp(mode, "never"))
		v = THP_NEVER;
	else if (!strcmp(mode, "madvise"))
		v = THP_MADVISE;
	else if (!strcmp(mode, "always"))
		v = THP_ALWAYS;
	else
		return -EINVAL;
	__atomic_store_n(&mmm->thp_mode, v, __ATOMIC_RELAXED);
	return 0;
}

bool vma_thp_allowed(struct vm_area_struct *vma, unsigned long addr)
{
	struct mm_machine *mmm = mm_machine_peek(vma->vm_mm->machine);
	unsigned long haddr = addr & PMD_MASK;
	int mode = __atomic_load_n(&mmm->thp_mode, __ATOMIC_RELAXED);

	if (vma->vm_file || !vma->anon_vma || (vma->vm_flags & VM_NOHUGEPAGE))
		return false;
	if (mode == THP_NEVER ||
	    (mode == THP_MADVISE && !(vma->vm_flags & VM_HUGEPAGE)))
		return false;
	return haddr >= vma->vm_start && haddr + PMD_SIZE <= vma->vm_end;
}

/* Deposit/withdraw the spare PTE table of a leaf in @pmd's table. */
static void pgtable_deposit(struct mm_struct *mm, pmd_t *pmd,
			    struct page *pgtable)
{
	list_add(&pgtable->lru, &pt_entry_page(mm, pmd)->lru);
}

static struct page *pgtable_withdraw(struct mm_struct *mm, pmd_t *pmd)
{
	struct page *owner = pt_entry_page(mm, pmd);
	struct page *pgtable;

	HETMM_BUG_ON(list_empty(&owner->lru));
	pgtable = list_first_entry(&owner->lru, struct page, lru);
	list_del_init(&pgtable->lru);
	return pgtable;
}

static pmd_t mk_huge_pmd(unsigned long pfn, struct vm_area_struct *vma,
			 bool writable)
{
	pmd_t e = pfn_pmd_leaf(pfn, _PAGE_YOUNG | _PAGE_DIRTY | _PAGE_SOFT_DIRTY);

	if (writable && (vma->vm_flags & VM_WRITE))
		e = pte_mkwrite(e);
	return e;
}

int do_huge_pmd_anonymous_page(struct vm_area_struct *vma, pmd_t *pmd,
			       unsigned long addr)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long haddr = addr & PMD_MASK;
	struct page *pgtable;
	struct folio *folio;

	folio = folio_alloc(mm->machine, __GFP_ZERO | __GFP_MOVABLE, PMD_ORDER);
	if (!folio) {
		count_stat(HETMM_STAT_thp_fault_fallback);
		return -EAGAIN;
	}
	pgtable = pt_frame_alloc(mm);
	if (!pgtable) {
		folio_put(folio);
		return -ENOMEM;
	}
	folio_set_flag(folio, PG_anon);
	folio_set_flag(folio, PG_swapbacked);
	folio_set_flag(folio, PG_uptodate);
	SetPageAnonExclusive(&folio->page);
	folio->page.mapping = vma->anon_vma;
	folio->page.index = ((haddr - vma->vm_start) >> PAGE_SHIFT) +
			    vma->vm_pgoff;

	spin_lock(&mm->page_table_lock);
	if (!pte_none(ptep_get(pmd))) {
		spin_unlock(&mm->page_table_lock);
		pt_frame_free(mm, pgtable);
		folio_put(folio);
		return 0;
	}
	pgtable_deposit(mm, pmd, pgtable);
	folio_add_pmd_rmap(folio);
	set_pte(pmd, mk_huge_pmd(folio_pfn(folio), vma, true));
	spin_unlock(&mm->page_table_lock);
	count_stat(HETMM_STAT_thp_fault_alloc);
	return 0;
}

int do_huge_pmd_fault(struct vm_area_struct *vma, pmd_t *pmd,
		      unsigned long addr, unsigned int flags)
{
	struct mm_struct *mm = vma->vm_mm;
	bool write = flags & FAULT_FLAG_WRITE;
	bool unshare = flags & FAULT_FLAG_UNSHARE;
	struct folio *folio;
	pmd_t e;

	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (!pmd_leaf(e)) {
		spin_unlock(&mm->page_table_lock);
		return 0; /* changed under us: retry */
	}
	if (!(write || unshare) || pte_write(e)) {
		e = pte_mkyoung(pte_clear_flags(e, _PAGE_PROTNONE));
		if (write)
			e = pte_mkdirty(e);
		set_pte(pmd, e);
		spin_unlock(&mm->page_table_lock);
		return 0;
	}
	folio = page_folio(pfn_to_page(mm->machine, pte_pfn(e)));
	if (PageAnonExclusive(&folio->page) || folio_ref_count(folio) == 1) {
		/* Ours alone: reuse the whole folio in place. */
		SetPageAnonExclusive(&folio->page);
		if (!unshare)
			set_pte(pmd, pte_mkwrite(pte_mkyoung(pte_mkdirty(e))));
		spin_unlock(&mm->page_table_lock);
		count_stat(HETMM_STAT_fault_wp_reuse);
		return 0;
	}
	spin_unlock(&mm->page_table_lock);
	/* Shared: split, and let the PTE path copy the one page. */
	split_huge_pmd(vma, pmd, addr);
	return 0;
}

void split_huge_pmd(struct vm_area_struct *vma, pmd_t *pmd, unsigned long addr)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long haddr = addr & PMD_MASK;
	struct mmu_notifier_range range;
	struct page *pgtable;
	struct folio *folio;
	uint64_t keep;
	pte_t *ptes;
	pmd_t e;
	bool pae;

	if (!pmd_leaf(ptep_get(pmd)))
		return;
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, haddr,
				haddr + PMD_SIZE);
	mmu_notifier_invalidate_range_start(&range);
	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (!pmd_leaf(e)) {
		spin_unlock(&mm->page_table_lock);
		mmu_notifier_invalidate_range_end(&range);
		return;
	}
	folio = page_folio(pfn_to_page(mm->machine, pte_pfn(e)));
	pae = PageAnonExclusive(&folio->page);
	pgtable = pgtable_withdraw(mm, pmd);
	ptes = page_frame(pgtable);
	keep = pte_val(e) & (_PAGE_RW | _PAGE_DIRTY | _PAGE_YOUNG |
			     _PAGE_SOFT_DIRTY | _PAGE_PROTNONE);
	folio_ref_add(folio, HPAGE_PMD_NR - 1);
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++) {
		struct page *page = folio_page(folio, i);

		if (pae)
			SetPageAnonExclusive(page);
		page_add_pte_rmap(page);
		set_pte(&ptes[i], pfn_pte(folio_pfn(folio) + i, keep));
	}
	folio_remove_pmd_rmap(folio);
	/* The same translations: TLB entries stay correct, but flush anyway
	 * so no entry outlives the leaf it was filled from. */
	set_pte(pmd, table_entry(pgtable));
	flush_tlb_range(mm, haddr, haddr + PMD_SIZE);
	spin_unlock(&mm->page_table_lock);
	mmu_notifier_invalidate_range_end(&range);
	count_stat(HETMM_STAT_thp_split_pmd);
}

void split_huge_pmd_address(struct vm_area_struct *vma, unsigned long addr)
{
	pmd_t *pmd = vma->vm_mm->pgd ? mm_find_pmd(vma->vm_mm, addr) : NULL;

	if (pmd && pmd_leaf(ptep_get(pmd)))
		split_huge_pmd(vma, pmd, addr);
}

void zap_huge_pmd(struct mmu_gather *tlb, struct vm_area_struct *vma,
		  pmd_t *pmd, unsigned long addr)
{
	struct mm_struct *mm = vma->vm_mm;
	struct folio *folio;
	pmd_t e;

	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (!pmd_leaf(e)) {
		spin_unlock(&mm->page_table_lock);
		return;
	}
	ptep_get_and_clear(pmd);
	pt_frame_free(mm, pgtable_withdraw(mm, pmd));
	spin_unlock(&mm->page_table_lock);
	folio = page_folio(pfn_to_page(mm->machine, pte_pfn(e)));
	folio_remove_pmd_rmap(folio);
	tlb_track(tlb, addr & PMD_MASK, PMD_SIZE);
	tlb_remove_page(tlb, &folio->page);
	count_stat(HETMM_STAT_pte_zapped);
}

int copy_huge_pmd(struct vm_area_struct *dst_vma, struct vm_area_struct *src_vma,
		  pmd_t *src_pmd, unsigned long addr)
{
	struct mm_struct *src_mm = src_vma->vm_mm, *dst_mm = dst_vma->vm_mm;
	struct page *pgtable;
	struct folio *folio;
	pmd_t *dst_pmd, e;
	pud_t *pud;

	e = ptep_get(src_pmd);
	folio = page_folio(pfn_to_page(src_mm->machine, pte_pfn(e)));
	/* A maybe-pinned exclusive folio: copy its pages one by one. */
	if (PageAnonExclusive(&folio->page) && folio_maybe_dma_pinned(folio))
		return -EAGAIN;
	pud = pud_alloc(dst_mm, pgd_offset(dst_mm, addr), addr);
	dst_pmd = pud ? pmd_alloc(dst_mm, pud, addr) : NULL;
	if (!dst_pmd)
		return -ENOMEM;
	pgtable = pt_frame_alloc(dst_mm);
	if (!pgtable)
		return -ENOMEM;
	spin_lock(&src_mm->page_table_lock);
	spin_lock(&dst_mm->page_table_lock);
	ClearPageAnonExclusive(&folio->page);
	folio_get(folio);
	folio_add_pmd_rmap(folio);
	if (is_cow_mapping(src_vma->vm_flags) && pte_write(e)) {
		e = pte_wrprotect(e);
		set_pte(src_pmd, e);
	}
	pgtable_deposit(dst_mm, dst_pmd, pgtable);
	set_pte(dst_pmd, pte_mkold(e));
	spin_unlock(&dst_mm->page_table_lock);
	spin_unlock(&src_mm->page_table_lock);
	count_stat(HETMM_STAT_fork_pte_copy);
	return 0;
}

void change_huge_pmd(struct vm_area_struct *vma, pmd_t *pmd, unsigned long addr)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long flags = vma->vm_flags;
	pmd_t e, n;

	(void)addr;
	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (!pmd_leaf(e)) {
		spin_unlock(&mm->page_table_lock);
		return;
	}
	n = pte_clear_flags(e, _PAGE_PROTNONE);
	if (!(flags & (VM_READ | VM_WRITE | VM_EXEC)))
		n = pte_set_flags(pte_wrprotect(n), _PAGE_PROTNONE);
	else if (!(flags & VM_WRITE))
		n = pte_wrprotect(n);
	else if (PageAnonExclusive(pfn_to_page(mm->machine, pte_pfn(n))))
		n = pte_mkwrite(n);
	if (pte_val(n) != pte_val(e)) {
		set_pte(pmd, n);
		count_stat(HETMM_STAT_mprotect_pte);
	}
	spin_unlock(&mm->page_table_lock);
}

pte_t mm_lookup_pte(struct mm_struct *mm, unsigned long addr)
{
	pmd_t *pmd = mm->pgd ? mm_find_pmd(mm, addr) : NULL;
	pmd_t e;

	if (!pmd)
		return __pte(0);
	e = ptep_get(pmd);
	if (pmd_leaf(e))
		return __pte((pte_val(e) & ~(_PAGE_PSE | _PAGE_PFN_MASK)) |
			     ((uint64_t)(pte_pfn(e) + pte_index(addr))
			      << _PAGE_PFN_SHIFT));
	if (!pmd_table(e))
		return __pte(0);
	return ptep_get(pte_offset(mm, pmd, addr));
}
