// SPDX-License-Identifier: MIT
/*
 * memory.c - the CPU fault path (anonymous and file), zapping, and CPU
 * accesses through the software MMU.
 *
 * Locking and invariants:
 *   mmap_lock (read for faults and TLB-miss accesses, write for VMA changes)
 *     inode i_rwsem (shared, file faults) -> folio lock
 *       PTE-table lock (every PTE change; allocations may nest inside it:
 *       ptl -> per-thread page list -> zone lock; TLB fills and flushes
 *       nest inside it: ptl -> cpu->lock)
 *   - A present PTE mapping a normal folio holds one reference and one
 *     mapcount of that page: refcount >= mapcount (+ other holders).
 *   - The shared zero page is mapped special and read-only, and is never
 *     counted.
 *   - A writable PTE of a private mapping maps a PageAnonExclusive anon
 *     page; a page that is not exclusive is mapped read-only. A writable
 *     PTE of a shared file mapping maps a folio marked dirty.
 *   - A fault re-checks the PTE under its lock before installing anything,
 *     so racing faults on one address install exactly one page.
 *   - handle_mm_fault() checks only what the kernel's sanitize_fault_flags()
 *     does; VMA access is its callers' business (the CPU path refuses
 *     inaccessible VMAs before faulting; GUP lets FOLL_FORCE in). Entries
 *     made in a VMA without VM_READ/VM_WRITE/VM_EXEC, PTEs and PMD leaves
 *     (huge.c) alike, are PROTNONE and read-only (the MMU and GUP-fast
 *     refuse them), and never writable without VM_WRITE (a FOLL_FORCE
 *     write leaves an exclusive read-only page or folio).
 *   - A PTE that is removed or replaced is flushed from the TLBs before the
 *     page it mapped loses the PTE's reference (mmu_gather, or
 *     ptep_clear_flush for a single replacement).
 *   - A CPU access that hits the TLB holds only cpu->lock; see tlb.h.
 *   - Non-present entries (do_swap_page): a migration entry is waited out
 *     (its folio is locked by the migrating thread) and the fault retried;
 *     a device-private entry calls its pgmap's migrate_to_ram() with the
 *     device folio locked and referenced, the PTE lock dropped; a
 *     device-exclusive entry is turned back into a present PTE under the
 *     folio lock, inside an MMU_NOTIFY_CLEAR invalidation. Device-private
 *     and device-exclusive entries are mappings (a reference and a
 *     mapcount each); migration entries are neither.
 */
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/memremap.h>
#include <hetmm/stats.h>

#include "internal.h"

static unsigned long zero_pfn(struct mm_struct *mm)
{
	return page_to_pfn(mm->machine->zero_page);
}

pmd_t *pte_table_alloc(struct mm_struct *mm, unsigned long addr)
{
	pud_t *pud = pud_alloc(mm, pgd_offset(mm, addr), addr);
	pmd_t *pmd;

	if (!pud)
		return NULL;
	pmd = pmd_alloc(mm, pud, addr);
	if (!pmd || __pte_alloc(mm, pmd) || !pmd_table(ptep_get(pmd)))
		return NULL;
	return pmd;
}

static pgoff_t linear_page_index(struct vm_area_struct *vma,
				 unsigned long addr)
{
	return ((addr - vma->vm_start) >> PAGE_SHIFT) + vma->vm_pgoff;
}

static struct folio *new_anon_folio(struct vm_area_struct *vma,
				    unsigned long addr, bool zero)
{
	struct folio *folio = folio_alloc(vma->vm_mm->machine,
					  (zero ? __GFP_ZERO : 0) |
						  __GFP_MOVABLE,
					  0);

	if (!folio)
		return NULL;
	folio_set_flag(folio, PG_anon);
	folio_set_flag(folio, PG_swapbacked);
	folio_set_flag(folio, PG_uptodate);
	SetPageAnonExclusive(&folio->page);
	folio->page.mapping = vma->anon_vma;
	folio->page.index = linear_page_index(vma, addr);
	return folio;
}

/* vma_is_accessible(): may the CPU touch this VMA at all? */
static bool vma_is_accessible(const struct vm_area_struct *vma)
{
	return vma->vm_flags & (VM_READ | VM_WRITE | VM_EXEC);
}

/* The PTE bits a fresh mapping of a page gets in @vma. */
static pte_t mk_pte_vma(unsigned long pfn, struct vm_area_struct *vma,
			bool writable, bool dirty)
{
	pte_t e = pfn_pte(pfn, _PAGE_YOUNG);

	if (dirty)
		e = pte_mkdirty(e);
	if (writable)
		e = maybe_mkwrite(e, vma);
	return vma_entry_prot(vma, e);
}

/* Install @entry at a none PTE; false if somebody else got there first. */
static bool install_pte(struct mm_struct *mm, pmd_t *pmd, unsigned long addr,
			pte_t entry, struct page *page)
{
	spinlock_t *ptl;
	pte_t *pte = pte_offset_map_lock(mm, pmd, addr, &ptl);

	if (!pte || !pte_none(ptep_get(pte))) {
		if (pte)
			spin_unlock(ptl);
		return false;
	}
	if (page)
		page_add_pte_rmap(page);
	set_pte(pte, entry);
	spin_unlock(ptl);
	return true;
}

/* A none PTE in anon memory: the zero page for reads, a fresh page else. */
static int do_anonymous_page(struct vm_area_struct *vma, pmd_t *pmd,
			     unsigned long addr, unsigned int flags)
{
	struct mm_struct *mm = vma->vm_mm;
	struct folio *folio = NULL;
	pte_t entry;

	if (!(flags & FAULT_FLAG_WRITE)) {
		entry = pte_mkspecial(pfn_pte(zero_pfn(mm), _PAGE_YOUNG));
		entry = vma_entry_prot(vma, entry);
	} else {
		folio = new_anon_folio(vma, addr, true);
		if (!folio)
			return -ENOMEM;
		entry = mk_pte_vma(folio_pfn(folio), vma, true, true);
	}
	if (!install_pte(mm, pmd, addr, entry, folio ? &folio->page : NULL)) {
		if (folio)
			folio_put(folio);
		return 0;
	}
	count_stat(folio ? HETMM_STAT_fault_zero_fill :
			   HETMM_STAT_fault_zero_page);
	return 0;
}

/*
 * A none PTE in a file mapping: map the page-cache folio, or (write to a
 * private mapping) a private anon copy of it.
 */
static int do_file_fault(struct vm_area_struct *vma, pmd_t *pmd,
			 unsigned long addr, unsigned int flags)
{
	struct mm_struct *mm = vma->vm_mm;
	struct inode *inode = file_inode(vma->vm_file);
	pgoff_t pgoff = linear_page_index(vma, addr);
	bool write = flags & FAULT_FLAG_WRITE;
	struct folio *folio, *copy = NULL;
	int ret = 0;
	pte_t entry;

	inode_lock_shared(inode);
	if ((loff_t)pgoff >=
	    (i_size_read(inode) + (loff_t)PAGE_SIZE - 1) >> PAGE_SHIFT) {
		/* Beyond EOF: SIGBUS in Linux; the caller sees -EFAULT. */
		inode_unlock_shared(inode);
		count_stat(HETMM_STAT_fault_sigbus);
		return -EFAULT;
	}
	folio = filemap_grab_folio(vma->vm_file->f_mapping, pgoff);
	if (IS_ERR(folio)) {
		inode_unlock_shared(inode);
		return PTR_ERR(folio) == -ENOMEM ? -ENOMEM : -EFAULT;
	}
	if (write && !(vma->vm_flags & VM_SHARED)) {
		copy = new_anon_folio(vma, addr, false);
		if (!copy) {
			ret = -ENOMEM;
			goto out;
		}
		copy_highpage(&copy->page, &folio->page);
		entry = mk_pte_vma(folio_pfn(copy), vma, true, true);
		if (install_pte(mm, pmd, addr, entry, &copy->page)) {
			copy = NULL;
			count_stat(HETMM_STAT_fault_file_cow);
		}
		goto out;
	}
	if (write)
		folio_mark_dirty(folio);
	entry = mk_pte_vma(folio_pfn(folio), vma, write, write);
	folio_get(folio); /* the PTE's reference */
	if (install_pte(mm, pmd, addr, entry, &folio->page))
		count_stat(HETMM_STAT_fault_file);
	else
		folio_put(folio);
out:
	folio_unlock(folio);
	folio_put(folio);
	inode_unlock_shared(inode);
	if (copy)
		folio_put(copy);
	return ret;
}

/*
 * May this anon page be reused in place for a write or unshare? Exclusive
 * pages always; others only if we hold the only reference (the refcount,
 * not the mapcount, decides: any pin or other holder forces a copy).
 */
static bool wp_can_reuse_anon_page(struct page *page)
{
	struct folio *folio = page_folio(page);

	if (!folio_test_anon(folio))
		return false;
	if (PageAnonExclusive(page))
		return true;
	if (folio_test_large(folio))
		return false;
	/* Acquire, pairing with folio_put(): a copier is done reading. */
	return atomic_load_explicit(&folio->page._refcount,
				    memory_order_acquire) == 1;
}

/*
 * A write fault on a read-only PTE of a shared mapping: the page stays,
 * becomes writable, and its folio is dirtied (the write notification the
 * writeback kind relies on). Called with the PTE lock held; releases it.
 */
static int wp_page_shared(struct vm_area_struct *vma, pte_t *pte,
			  spinlock_t *ptl)
{
	pte_t orig = ptep_get(pte);

	if (!pte_special(orig))
		folio_mark_dirty(page_folio(
			pfn_to_page(vma->vm_mm->machine, pte_pfn(orig))));
	set_pte(pte, pte_mkwrite(pte_mkyoung(pte_mkdirty(orig))));
	spin_unlock(ptl);
	count_stat(HETMM_STAT_fault_wp_reuse);
	return 0;
}

/*
 * A write or unshare fault on a present, read-only PTE of a private
 * mapping. Called with the PTE lock held; returns with it released.
 */
static int do_wp_page(struct vm_area_struct *vma, pmd_t *pmd, pte_t *pte,
		      spinlock_t *ptl, unsigned long addr, unsigned int flags)
{
	struct mm_struct *mm = vma->vm_mm;
	pte_t orig = ptep_get(pte), entry;
	struct mmu_notifier_range range;
	bool unshare = flags & FAULT_FLAG_UNSHARE;
	struct page *old = NULL;
	struct folio *copy;

	if (!unshare && (vma->vm_flags & VM_SHARED))
		return wp_page_shared(vma, pte, ptl);
	if (!pte_special(orig))
		old = pfn_to_page(mm->machine, pte_pfn(orig));
	if (old && wp_can_reuse_anon_page(old)) {
		SetPageAnonExclusive(old);
		if (!unshare)
			set_pte(pte,
				maybe_mkwrite(pte_mkyoung(pte_mkdirty(orig)),
					      vma));
		spin_unlock(ptl);
		count_stat(HETMM_STAT_fault_wp_reuse);
		return 0;
	}
	/*
	 * Copy: a fresh exclusive page replaces the shared one. Notifier
	 * subscribers may sleep, so drop the PTE lock around them and re-check
	 * afterwards that the PTE is still the one we decided on (a racing
	 * fault or zap wins; the caller retries the access).
	 */
	if (old)
		get_page(old);
	spin_unlock(ptl);
	copy = new_anon_folio(vma, addr, !old);
	if (!copy) {
		if (old)
			put_page(old);
		return -ENOMEM;
	}
	if (old)
		copy_highpage(&copy->page, old);
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, addr,
				addr + PAGE_SIZE);
	mmu_notifier_invalidate_range_start(&range);
	pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	if (!pte || pte_val(ptep_get(pte)) != pte_val(orig)) {
		if (pte)
			spin_unlock(ptl);
		mmu_notifier_invalidate_range_end(&range);
		folio_put(copy);
		if (old)
			put_page(old);
		return 0;
	}
	entry = pfn_pte(folio_pfn(copy), _PAGE_YOUNG);
	if (!unshare)
		entry = maybe_mkwrite(pte_mkdirty(entry), vma);
	entry = vma_entry_prot(vma, entry);
	/* No CPU may read the old page through a stale entry after this. */
	ptep_clear_flush(mm, addr, pte);
	page_add_pte_rmap(&copy->page);
	set_pte(pte, entry);
	spin_unlock(ptl);
	mmu_notifier_invalidate_range_end(&range);
	if (old) {
		page_remove_pte_rmap(old);
		put_page(old); /* the PTE's reference */
		put_page(old); /* ours */
	}
	count_stat(unshare ? HETMM_STAT_fault_unshare_copy :
			     HETMM_STAT_fault_wp_copy);
	return 0;
}

/* ------------------------------------------------- non-present entries */

void migration_entry_wait(struct mm_struct *mm, pmd_t *pmd,
			  unsigned long addr)
{
	spinlock_t *ptl;
	struct folio *folio;
	pte_t *pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	pte_t e;

	if (!pte)
		return;
	e = ptep_get(pte);
	if (!is_migration_kind(pte_kind(e))) {
		spin_unlock(ptl);
		return;
	}
	folio = page_folio(pfn_to_page(mm->machine,
				       softleaf_pfn(softleaf_from_pte(e))));
	/* The migration holds a reference while its entries exist. */
	if (!folio_try_get(folio)) {
		spin_unlock(ptl);
		return;
	}
	spin_unlock(ptl);
	count_stat(HETMM_STAT_fault_migration_wait);
	folio_wait_locked(folio);
	folio_put(folio);
}

void pmd_migration_entry_wait(struct mm_struct *mm, pmd_t *pmd)
{
	struct folio *folio;
	pmd_t e;

	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (!is_migration_kind(pte_kind(e))) {
		spin_unlock(&mm->page_table_lock);
		return;
	}
	folio = page_folio(pfn_to_page(mm->machine,
				       softleaf_pfn(softleaf_from_pte(e))));
	if (!folio_try_get(folio)) {
		spin_unlock(&mm->page_table_lock);
		return;
	}
	spin_unlock(&mm->page_table_lock);
	count_stat(HETMM_STAT_fault_migration_wait);
	folio_wait_locked(folio);
	folio_put(folio);
}

/*
 * The present PTE a device-exclusive entry of @page stood for: old, soft
 * dirty carried, writable (and dirty if the folio is) only where the VMA
 * allows writing and the page is still exclusive to this mm.
 */
pte_t restore_exclusive_entry(struct vm_area_struct *vma, struct page *page,
			      pte_t orig)
{
	pte_t e = pfn_pte(page_to_pfn(page), 0);

	if (pte_val(orig) & _SWP_SOFT_DIRTY)
		e = pte_set_flags(e, _PAGE_SOFT_DIRTY);
	if ((vma->vm_flags & VM_WRITE) && PageAnonExclusive(page)) {
		e = pte_mkwrite(e);
		if (folio_test_flag(page_folio(page), PG_dirty))
			e = pte_mkdirty(e);
	}
	return vma_entry_prot(vma, e);
}

/* A CPU touched a device-exclusive entry: give the page back. */
static int remove_device_exclusive_entry(struct vm_area_struct *vma,
					 pmd_t *pmd, pte_t *pte,
					 spinlock_t *ptl, unsigned long addr,
					 pte_t orig)
{
	struct mm_struct *mm = vma->vm_mm;
	struct page *page = pfn_to_page(mm->machine,
					softleaf_pfn(softleaf_from_pte(orig)));
	struct folio *folio = page_folio(page);
	struct mmu_notifier_range range;

	/* The entry is a mapping, so it holds a reference: this cannot fail
	 * while we hold the PTE lock. */
	folio_get(folio);
	spin_unlock(ptl);
	folio_lock(folio);
	mmu_notifier_range_init_owner(&range, MMU_NOTIFY_CLEAR, 0, mm, addr,
				      addr + PAGE_SIZE, NULL);
	mmu_notifier_invalidate_range_start(&range);
	pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	if (pte) {
		if (pte_val(ptep_get(pte)) == pte_val(orig)) {
			set_pte(pte, restore_exclusive_entry(vma, page, orig));
			count_stat(HETMM_STAT_fault_exclusive_restore);
		}
		spin_unlock(ptl);
	}
	mmu_notifier_invalidate_range_end(&range);
	folio_unlock(folio);
	folio_put(folio);
	return 0;
}

/* Hand a device-private fault to the page's driver. */
static int device_private_fault(struct vm_fault *vmf, spinlock_t *ptl)
{
	struct folio *folio = page_folio(vmf->page);
	struct dev_pagemap *pgmap = page_pgmap(vmf->page);
	int ret;

	/* The entry holds a reference, so the folio cannot go away here. */
	folio_get(folio);
	if (!folio_trylock(folio)) {
		/* Somebody migrates it right now: wait, then retry. */
		spin_unlock(ptl);
		folio_wait_locked(folio);
		folio_put(folio);
		return 0;
	}
	spin_unlock(ptl);
	count_stat(HETMM_STAT_fault_device_private);
	ret = pgmap->ops->migrate_to_ram(vmf);
	/* The driver may have split a large device folio: the lock and our
	 * reference are now on the folio of vmf->page. */
	folio = page_folio(vmf->page);
	folio_unlock(folio);
	folio_put(folio);
	return ret;
}

/*
 * do_swap_page - a fault on a non-present PTE. Called with the PTE lock
 * held; returns with it dropped. Return: 0 (retry the access), -EFAULT
 * (SIGBUS: poison, markers; there is no swap), or the driver's error.
 */
static int do_swap_page(struct vm_area_struct *vma, pmd_t *pmd, pte_t *pte,
			spinlock_t *ptl, unsigned long addr, unsigned int flags,
			pte_t orig)
{
	struct mm_struct *mm = vma->vm_mm;
	enum softleaf_type k = pte_kind(orig);

	if (is_migration_kind(k)) {
		spin_unlock(ptl);
		migration_entry_wait(mm, pmd, addr);
		return 0;
	}
	if (is_device_private_kind(k)) {
		struct vm_fault vmf = {
			.vma = vma,
			.address = addr,
			.flags = flags,
			.page = pfn_to_page(mm->machine,
					    softleaf_pfn(softleaf_from_pte(orig))),
			.pmd = pmd,
			.pte = pte,
			.orig_pte = orig,
		};

		return device_private_fault(&vmf, ptl);
	}
	if (k == SOFTLEAF_DEVICE_EXCLUSIVE)
		return remove_device_exclusive_entry(vma, pmd, pte, ptl, addr,
						     orig);
	spin_unlock(ptl);
	count_stat(HETMM_STAT_fault_sigbus);
	return -EFAULT;
}

/* A fault on a non-present PMD: a THP under migration or on a device. */
static int do_huge_pmd_nonpresent(struct vm_area_struct *vma, pmd_t *pmd,
				  unsigned long addr, unsigned int flags)
{
	struct mm_struct *mm = vma->vm_mm;
	pmd_t e;

	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (pte_none(e) || pte_present(e)) {
		spin_unlock(&mm->page_table_lock);
		return 0; /* changed: retry */
	}
	if (is_migration_kind(pte_kind(e))) {
		spin_unlock(&mm->page_table_lock);
		pmd_migration_entry_wait(mm, pmd);
		return 0;
	}
	if (is_device_private_kind(pte_kind(e))) {
		struct vm_fault vmf = {
			.vma = vma,
			.address = addr,
			.flags = flags,
			.page = pfn_to_page(mm->machine,
					    softleaf_pfn(softleaf_from_pte(e)) +
						    ((addr & ~PMD_MASK) >>
						     PAGE_SHIFT)),
			.pmd = pmd,
			.pte = NULL,
			.orig_pte = e,
		};

		return device_private_fault(&vmf, &mm->page_table_lock);
	}
	spin_unlock(&mm->page_table_lock);
	count_stat(HETMM_STAT_fault_sigbus);
	return -EFAULT;
}

/*
 * The kernel's sanitize_fault_flags(): an unshare outside a COW mapping is
 * a read fault; a write needs VM_MAYWRITE, and without VM_WRITE (FOLL_FORCE)
 * a COW mapping, where the write breaks COW into a page the process still
 * cannot write. Return: 0 or -EFAULT (SIGSEGV).
 */
static int sanitize_fault_flags(struct vm_area_struct *vma,
				unsigned int *flags)
{
	unsigned long vm_flags = vma->vm_flags;

	if (*flags & FAULT_FLAG_UNSHARE) {
		if (*flags & FAULT_FLAG_WRITE)
			return -EFAULT;
		if (!is_cow_mapping(vm_flags))
			*flags &= ~FAULT_FLAG_UNSHARE;
	} else if (*flags & FAULT_FLAG_WRITE) {
		if (!(vm_flags & VM_MAYWRITE))
			return -EFAULT;
		if (!(vm_flags & VM_WRITE) && !is_cow_mapping(vm_flags))
			return -EFAULT;
	}
	return 0;
}

/*
 * handle_mm_fault - see uapi.h. As in the kernel, the VMA's access bits
 * are not checked here beyond sanitize_fault_flags(): the callers decide
 * (the CPU path and hmm_range_fault() refuse inaccessible VMAs, GUP lets
 * FOLL_FORCE through). A fault in a PROT_NONE VMA installs PROTNONE
 * entries (PTEs, THP and hugetlb leaves), which GUP follows and the MMU
 * refuses. A write without VM_WRITE (FOLL_FORCE in a COW mapping) leaves
 * an exclusive, read-only page or folio.
 */
int handle_mm_fault(struct vm_area_struct *vma, unsigned long addr,
		    unsigned int flags)
{
	struct mm_struct *mm;
	spinlock_t *ptl;
	bool write;
	pud_t *pud;
	pmd_t *pmd;
	pte_t *pte, orig;

	if (!vma)
		return -EFAULT;
	mm = vma->vm_mm;
	mmap_assert_locked(mm);
	if (addr < vma->vm_start || addr >= vma->vm_end)
		return -EFAULT;
	addr &= PAGE_MASK;
	if (sanitize_fault_flags(vma, &flags))
		return -EFAULT;
	write = flags & FAULT_FLAG_WRITE;

	if (vma->vm_flags & VM_HUGETLB)
		return hugetlb_fault(vma, addr, flags);
	pud = pud_alloc(mm, pgd_offset(mm, addr), addr);
	pmd = pud ? pmd_alloc(mm, pud, addr) : NULL;
	if (!pmd)
		return -ENOMEM;
	if (pte_none(ptep_get(pmd)) && vma_thp_allowed(vma, addr)) {
		/* Unshare of nothing is a read fault. */
		int ret = do_huge_pmd_anonymous_page(
			vma, pmd, addr, flags & ~FAULT_FLAG_UNSHARE);

		if (ret != -EAGAIN)
			return ret;
	}
	if (pmd_leaf(ptep_get(pmd)))
		return do_huge_pmd_fault(vma, pmd, addr, flags);
	if (!pte_none(ptep_get(pmd)) && !pte_present(ptep_get(pmd)))
		return do_huge_pmd_nonpresent(vma, pmd, addr, flags);
	if (__pte_alloc(mm, pmd))
		return -ENOMEM;
	pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	if (!pte)
		return 0; /* the table changed under us: retry */
	orig = ptep_get(pte);
	if (pte_none(orig)) {
		spin_unlock(ptl);
		/* Unshare of nothing is a read fault. */
		flags &= ~FAULT_FLAG_UNSHARE;
		if (vma->vm_file)
			return do_file_fault(vma, pmd, addr, flags);
		/* A driver's mapping has no fault handler here: SIGBUS. */
		if (vma->vm_flags & (VM_PFNMAP | VM_MIXEDMAP)) {
			count_stat(HETMM_STAT_fault_sigbus);
			return -EFAULT;
		}
		return do_anonymous_page(vma, pmd, addr, flags);
	}
	if (!pte_present(orig))
		return do_swap_page(vma, pmd, pte, ptl, addr, flags, orig);
	if (pte_protnone(orig) && vma_is_accessible(vma)) {
		/* The VMA allows access again (mprotect raced): restore. */
		orig = pte_clear_flags(orig, _PAGE_PROTNONE);
		set_pte(pte, orig);
	}
	if ((flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE)) &&
	    !pte_write(orig)) {
		if ((flags & FAULT_FLAG_UNSHARE) && !pte_special(orig) &&
		    PageAnonExclusive(pfn_to_page(mm->machine,
						  pte_pfn(orig)))) {
			spin_unlock(ptl); /* already exclusive */
			return 0;
		}
		return do_wp_page(vma, pmd, pte, ptl, addr, flags);
	}
	set_pte(pte, write ? pte_mkdirty(pte_mkyoung(orig)) : pte_mkyoung(orig));
	spin_unlock(ptl);
	return 0;
}

int populate_range(struct mm_struct *mm, unsigned long start,
		   unsigned long end, bool write)
{
	mmap_assert_locked(mm);
	for (unsigned long a = start; a < end; a += PAGE_SIZE) {
		struct vm_area_struct *vma = vma_lookup(mm, a);
		int ret;

		if (!vma)
			return -ENOMEM;
		ret = handle_mm_fault(vma, a, write ? FAULT_FLAG_WRITE : 0);
		if (ret)
			return ret;
	}
	return 0;
}

/* ------------------------------------------------------------------ zap */

static int zap_pte(pte_t *pte, unsigned long addr, unsigned long next,
		   struct mm_walk *walk)
{
	struct mmu_gather *tlb = walk->private;
	pte_t old = ptep_get_and_clear(pte);
	struct folio *folio;
	struct page *page;

	(void)next;
	if (pte_none(old))
		return 0;
	count_stat(HETMM_STAT_pte_zapped);
	if (!pte_present(old)) {
		enum softleaf_type k = pte_kind(old);

		/* Device-private and device-exclusive entries are mappings
		 * (no TLB entry can exist for them); the rest hold nothing. */
		if (is_device_private_kind(k) ||
		    k == SOFTLEAF_DEVICE_EXCLUSIVE) {
			page = pfn_to_page(walk->mm->machine,
					   softleaf_pfn(softleaf_from_pte(old)));
			page_remove_pte_rmap(page);
			tlb_remove_page(tlb, page);
		}
		return 0;
	}
	tlb_track(tlb, addr, PAGE_SIZE);
	if (pte_special(old))
		return 0;
	page = pfn_to_page(walk->mm->machine, pte_pfn(old));
	folio = page_folio(page);
	if (pte_dirty(old) && !folio_test_anon(folio) && folio->page.mapping)
		folio_mark_dirty(folio);
	page_remove_pte_rmap(page);
	tlb_remove_page(tlb, page);
	return 0;
}

/* A PMD leaf: zapped whole if the range covers it, else split first. */
static int zap_pmd(pmd_t *pmd, unsigned long addr, unsigned long next,
		   struct mm_walk *walk)
{
	struct vm_area_struct *vma;
	pmd_t e = ptep_get(pmd);

	/* Leaves, and non-present entries standing for a whole folio. */
	if (!pmd_leaf(e) && (pte_none(e) || pmd_table(e)))
		return 0;
	vma = vma_lookup(walk->mm, addr);
	if (HETMM_WARN_ON_ONCE(!vma))
		return 0;
	if (IS_ALIGNED(addr, PMD_SIZE) && next - addr == PMD_SIZE) {
		zap_huge_pmd(walk->private, vma, pmd, addr);
		walk->action = ACTION_CONTINUE;
	} else if (!(vma->vm_flags & VM_HUGETLB)) {
		split_huge_pmd(vma, pmd, addr);
	} else {
		HETMM_WARN_ON_ONCE(1); /* callers keep hugetlb ranges aligned */
		walk->action = ACTION_CONTINUE;
	}
	return 0;
}

static const struct mm_walk_ops zap_ops = {
	.pmd_entry = zap_pmd,
	.pte_entry = zap_pte,
	.walk_lock = PGWALK_RDLOCK,
};

/* rmap-driven zaps (file truncation) never meet THPs: file memory is
 * mapped with 4 KiB pages. */
static const struct mm_walk_ops zap_ops_nolock = {
	.pte_entry = zap_pte,
	.walk_lock = PGWALK_NOLOCK,
};

static void zap_range(struct vm_area_struct *vma, unsigned long start,
		      unsigned long end, enum mmu_notifier_event event,
		      bool locked)
{
	struct mm_struct *mm = vma->vm_mm;
	struct mmu_notifier_range range;
	struct mmu_gather tlb;

	start = max(start, vma->vm_start);
	end = min(end, vma->vm_end);
	if (start >= end)
		return;
	/* Device mirrors drop their view before the CPU's goes. */
	mmu_notifier_range_init(&range, event, 0, mm, start, end);
	mmu_notifier_invalidate_range_start(&range);
	tlb_gather_mmu(&tlb, mm);
	if (locked) {
		walk_page_range_novma(mm, start, end, &zap_ops, &tlb);
	} else {
		rcu_read_lock();
		if (mm->pgd)
			walk_page_range_novma(mm, start, end, &zap_ops_nolock,
					      &tlb);
		rcu_read_unlock();
	}
	tlb_finish_mmu(&tlb);
	mmu_notifier_invalidate_range_end(&range);
}

void zap_page_range_event(struct vm_area_struct *vma, unsigned long start,
			  unsigned long end, enum mmu_notifier_event event)
{
	mmap_assert_locked(vma->vm_mm);
	zap_range(vma, start, end, event, true);
}

void zap_vma_range_locked(struct vm_area_struct *vma, unsigned long start,
			  unsigned long end, enum mmu_notifier_event event)
{
	zap_range(vma, start, end, event, false);
}

void zap_page_range(struct vm_area_struct *vma, unsigned long start,
		    unsigned long end)
{
	zap_page_range_event(vma, start, end, MMU_NOTIFY_UNMAP);
}

/* ---------------------------------------------------------- CPU access */

enum access_op {
	ACCESS_READ,
	ACCESS_WRITE,
	ACCESS_CMPXCHG,
};

struct access {
	enum access_op op;
	unsigned char *buf;
	uint64_t old, new, prev; /* cmpxchg */
};

/* Move the bytes of one page (@host may be NULL: metadata-only). */
static void access_bytes(struct access *a, unsigned char *host, size_t len)
{
	switch (a->op) {
	case ACCESS_READ:
		if (host)
			memcpy(a->buf, host, len);
		else
			memset(a->buf, 0, len);
		break;
	case ACCESS_WRITE:
		if (host)
			memcpy(host, a->buf, len);
		break;
	case ACCESS_CMPXCHG:
		if (host) {
			uint64_t expect = a->old;

			__atomic_compare_exchange_n((uint64_t *)host, &expect,
						    a->new, false,
						    __ATOMIC_SEQ_CST,
						    __ATOMIC_SEQ_CST);
			a->prev = expect;
		} else {
			a->prev = 0;
		}
		break;
	}
}

/* A TLB hit does the access under cpu->lock. True if it hit. */
static inline bool tlb_access(struct hetmm_cpu *c, struct mm_struct *mm,
			      unsigned long addr, struct access *a, size_t len)
{
	unsigned long vpn = addr >> PAGE_SHIFT;
	unsigned int need = a->op == ACCESS_READ ? TLB_PERM_READ :
						   TLB_PERM_WRITE;
	struct tlb_entry *e = tlb_slot(c, vpn);

	spin_lock(&c->lock);
	if (likely(e->vpn == vpn && e->asid == mm->asid && (e->perm & need))) {
		access_bytes(a, e->host ? e->host + (addr & ~PAGE_MASK) : NULL,
			     len);
		spin_unlock(&c->lock);
		count_stat(HETMM_STAT_tlb_hit);
		return true;
	}
	spin_unlock(&c->lock);
	return false;
}

/* Access through a PMD leaf if it permits; true if done. */
static bool access_huge(struct hetmm_cpu *c, struct mm_struct *mm, pmd_t *pmd,
			unsigned long addr, struct access *a, size_t len)
{
	bool write = a->op != ACCESS_READ;
	unsigned int perm = TLB_PERM_READ;
	unsigned char *host;
	unsigned long pfn;
	pmd_t e;

	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (!pmd_leaf(e) || !pte_access_permitted(e, write)) {
		spin_unlock(&mm->page_table_lock);
		return false;
	}
	e = pte_mkyoung(e);
	if (write)
		e = pte_mkdirty(e);
	set_pte(pmd, e);
	pfn = pte_pfn(e) + pte_index(addr);
	host = page_address(pfn_to_page(mm->machine, pfn));
	if (pte_write(e) && pte_dirty(e))
		perm |= TLB_PERM_WRITE;
	tlb_fill(mm, c, addr, pfn, host, perm);
	access_bytes(a, host ? host + (addr & ~PAGE_MASK) : NULL, len);
	spin_unlock(&mm->page_table_lock);
	return true;
}

/*
 * A TLB miss: walk, fault as needed, access, fill the TLB. Context:
 * mmap_lock held for read.
 */
static int access_slow(struct hetmm_cpu *c, struct mm_struct *mm,
		       unsigned long addr, struct access *a, size_t len)
{
	struct vm_area_struct *vma = vma_lookup(mm, addr);
	bool write = a->op != ACCESS_READ;
	unsigned long need = write ? VM_WRITE : (VM_READ | VM_WRITE);
	int ret;

	count_stat(HETMM_STAT_tlb_miss);
	if (!vma || !(vma->vm_flags & need)) {
		count_stat(HETMM_STAT_fault_sigsegv);
		return -EFAULT;
	}
	for (;;) {
		pmd_t *pmd = mm_find_pmd(mm, addr);
		spinlock_t *ptl;
		pte_t *pte;

		if (pmd && pmd_leaf(ptep_get(pmd))) {
			if (access_huge(c, mm, pmd, addr, a, len))
				return 0;
			pte = NULL;
		} else {
			pte = pmd ? pte_offset_map_lock(mm, pmd, addr, &ptl) :
				    NULL;
		}
		if (pte) {
			pte_t e = ptep_get(pte);

			if (pte_access_permitted(e, write)) {
				unsigned char *host = page_address(
					pfn_to_page(mm->machine, pte_pfn(e)));
				unsigned int perm = TLB_PERM_READ;

				e = pte_mkyoung(e);
				if (write)
					e = pte_mkdirty(e);
				set_pte(pte, e);
				if (pte_write(e) && pte_dirty(e))
					perm |= TLB_PERM_WRITE;
				tlb_fill(mm, c, addr, pte_pfn(e), host, perm);
				access_bytes(a,
					     host ? host + (addr & ~PAGE_MASK) :
						    NULL,
					     len);
				spin_unlock(ptl);
				return 0;
			}
			spin_unlock(ptl);
		}
		ret = handle_mm_fault(vma, addr, write ? FAULT_FLAG_WRITE : 0);
		if (ret)
			return ret;
	}
}

static int cpu_access(struct mm_struct *mm, unsigned int cpu,
		      unsigned long addr, size_t len, struct access *a)
{
	struct mm_machine *mmm;
	struct hetmm_cpu *c;
	bool locked = false;
	int ret = 0;

	if (unlikely(!mm || (!a->buf && len)))
		return -EINVAL;
	mmm = mm_machine_peek(mm->machine);
	if (unlikely(!mmm || cpu >= mmm->nr_cpus))
		return -EINVAL;
	if (unlikely(addr + len < addr || addr + len > TASK_SIZE))
		return -EFAULT;
	c = &mmm->cpus[cpu];
	while (len) {
		size_t chunk = min(len, PAGE_SIZE - (addr & ~PAGE_MASK));

		if (!tlb_access(c, mm, addr, a, chunk)) {
			if (!locked) {
				mmap_read_lock(mm);
				locked = true;
			}
			ret = access_slow(c, mm, addr, a, chunk);
			if (ret)
				break;
		}
		addr += chunk;
		a->buf += chunk;
		len -= chunk;
	}
	if (locked)
		mmap_read_unlock(mm);
	return ret;
}

int hetmm_cpu_read(struct mm_struct *mm, unsigned int cpu, unsigned long addr,
		   void *buf, size_t len)
{
	struct access a = { .op = ACCESS_READ, .buf = buf };

	/* The TLB-hit fast path of a read within one page. */
	if (likely(mm && buf && cpu < mm->nr_cpus &&
		   len <= PAGE_SIZE - (addr & ~PAGE_MASK) && addr < TASK_SIZE)) {
		struct hetmm_cpu *c = &mm->cpus[cpu];
		unsigned long vpn = addr >> PAGE_SHIFT;
		struct tlb_entry *e = tlb_slot(c, vpn);

		spin_lock(&c->lock);
		if (likely(e->vpn == vpn && e->asid == mm->asid && e->perm &&
			   e->host)) {
			if (len == 8)
				memcpy(buf, e->host + (addr & ~PAGE_MASK), 8);
			else
				memcpy(buf, e->host + (addr & ~PAGE_MASK), len);
			spin_unlock(&c->lock);
			count_stat(HETMM_STAT_tlb_hit);
			return 0;
		}
		spin_unlock(&c->lock);
	}
	return cpu_access(mm, cpu, addr, len, &a);
}

int hetmm_cpu_write(struct mm_struct *mm, unsigned int cpu, unsigned long addr,
		    const void *buf, size_t len)
{
	struct access a = { .op = ACCESS_WRITE, .buf = (void *)buf };

	/* The TLB-hit fast path of a write within one page. */
	if (likely(mm && buf && cpu < mm->nr_cpus &&
		   len <= PAGE_SIZE - (addr & ~PAGE_MASK) && addr < TASK_SIZE)) {
		struct hetmm_cpu *c = &mm->cpus[cpu];
		unsigned long vpn = addr >> PAGE_SHIFT;
		struct tlb_entry *e = tlb_slot(c, vpn);

		spin_lock(&c->lock);
		if (likely(e->vpn == vpn && e->asid == mm->asid &&
			   (e->perm & TLB_PERM_WRITE) && e->host)) {
			memcpy(e->host + (addr & ~PAGE_MASK), buf, len);
			spin_unlock(&c->lock);
			count_stat(HETMM_STAT_tlb_hit);
			return 0;
		}
		spin_unlock(&c->lock);
	}
	return cpu_access(mm, cpu, addr, len, &a);
}

int hetmm_cpu_cmpxchg(struct mm_struct *mm, unsigned int cpu,
		      unsigned long addr, uint64_t old, uint64_t new,
		      uint64_t *prev)
{
	uint64_t dummy;
	struct access a = { .op = ACCESS_CMPXCHG, .buf = (void *)&dummy,
			    .old = old, .new = new };
	int ret;

	if (!prev || !IS_ALIGNED(addr, sizeof(uint64_t)))
		return -EINVAL;
	ret = cpu_access(mm, cpu, addr, sizeof(uint64_t), &a);
	if (!ret)
		*prev = a.prev;
	return ret;
}
