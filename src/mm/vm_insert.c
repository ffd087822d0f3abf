// SPDX-License-Identifier: MIT
/*
 * vm_insert.c - drivers mapping their own pages into a process:
 * vm_insert_page()/vm_insert_pages() into a VM_MIXEDMAP VMA, and
 * hetmm_mmap_driver(), the mmap(2) of a device file that hands a fresh VMA
 * to the driver's mmap handler (the kernel's f_op->mmap).
 *
 * Locking and invariants:
 *   mmap_lock (write to turn VM_MIXEDMAP on; read is enough once it is on)
 *     PTE-table lock (each insertion re-checks the PTE under it)
 *   - An inserted page is a normal, refcounted mapping: the PTE is not
 *     special, and it holds one reference and one mapcount of the page,
 *     exactly like a page-cache page mapped by a file fault. So zap,
 *     munmap and exit drop both; fork shares the page (reference and
 *     mapcount + 1); mprotect and the COW fault treat it as a non-anon
 *     page (never made writable in a private mapping: a write copies it
 *     into an anon page); hmm_range_fault and GUP see a normal page.
 *   - Only a none PTE is filled: insertion is an upgrade and sends no
 *     mmu notification (hmm-semantics 6.1.1).
 *   - The PTE gets the protection the VMA gives a fresh mapping (the
 *     kernel's vm_page_prot): writable only in a shared writable VMA,
 *     read-only in a private one (copy-on-write), PROTNONE in a VMA that
 *     allows no access; young, not dirty.
 *   - Refused pages: free ones (refcount 0), anonymous ones, page-table
 *     frames, driver-internal (PG_slab_like) and hugetlb pages (the
 *     kernel's page_has_type()), device-private pages (never mapped by a
 *     present PTE), and the zero page where the VMA could let it become
 *     writable (shared writable VMAs). An accepted zero page is mapped
 *     special and uncounted, as the fault path maps it.
 *   - A VMA made by hetmm_mmap_driver() has no file: a private one gets an
 *     anon_vma like any private mapping (COW copies are anonymous pages),
 *     a shared one none. Its vm_pgoff is linear (addr >> PAGE_SHIFT), as
 *     for anonymous memory, so splits and moves keep the COW copies'
 *     indices right.
 */
#include <hetmm/err.h>
#include <hetmm/memremap.h>

#include "internal.h"

/* May the shared zero page be inserted into @vma (never made writable)? */
static bool vm_mixed_zeropage_allowed(struct vm_area_struct *vma)
{
	if (is_cow_mapping(vma->vm_flags))
		return true;
	return !(vma->vm_flags & (VM_WRITE | VM_MAYWRITE));
}

/* The kernel's validate_page_before_insert(): 0 or -EINVAL. */
static int validate_page_before_insert(struct vm_area_struct *vma,
				       struct page *page)
{
	struct folio *folio = page_folio(page);

	if (folio_ref_count(folio) <= 0)
		return -EINVAL;
	if (is_zero_page(page))
		return vm_mixed_zeropage_allowed(vma) ? 0 : -EINVAL;
	if (folio_test_anon(folio))
		return -EINVAL;
	if (PageTestFlag(page, PG_slab_like) ||
	    PageTestFlag(page, PG_pgtable) || folio_test_hugetlb(folio))
		return -EINVAL;
	if (folio_is_device_private(folio))
		return -EINVAL;
	return 0;
}

/* The entry a fresh mapping of @pfn gets in @vma (its vm_page_prot). */
static pte_t mk_pte_vm_page_prot(unsigned long pfn, struct vm_area_struct *vma)
{
	unsigned long flags = vma->vm_flags;
	pte_t e = pfn_pte(pfn, _PAGE_YOUNG);

	if (!(flags & (VM_READ | VM_WRITE | VM_EXEC)))
		return pte_set_flags(e, _PAGE_PROTNONE);
	if ((flags & (VM_SHARED | VM_WRITE)) == (VM_SHARED | VM_WRITE))
		e = pte_mkwrite(e);
	return e;
}

/* Fill the none PTE @pte with @page. Context: its PTE lock held. */
static int insert_page_into_pte_locked(struct vm_area_struct *vma, pte_t *pte,
				       struct page *page)
{
	pte_t e;

	if (!pte_none(ptep_get(pte)))
		return -EBUSY;
	e = mk_pte_vm_page_prot(page_to_pfn(page), vma);
	if (is_zero_page(page)) {
		e = pte_mkspecial(pte_wrprotect(e));
	} else {
		folio_get(page_folio(page)); /* the PTE's reference */
		page_add_pte_rmap(page);
	}
	set_pte(pte, e);
	return 0;
}

/*
 * The PTE of @addr, locked, allocating the tables on the way. NULL with
 * *@err set: -ENOMEM (no frame for a table), -EBUSY (a PMD-level entry,
 * a THP or a device-private folio, covers the address).
 */
static pte_t *get_locked_pte(struct mm_struct *mm, unsigned long addr,
			     spinlock_t **ptlp, int *err)
{
	pud_t *pud = pud_alloc(mm, pgd_offset(mm, addr), addr);
	pmd_t *pmd = pud ? pmd_alloc(mm, pud, addr) : NULL;
	pte_t *pte;

	*err = -ENOMEM;
	if (!pmd || __pte_alloc(mm, pmd))
		return NULL;
	pte = pte_offset_map_lock(mm, pmd, addr, ptlp);
	if (!pte)
		*err = -EBUSY;
	return pte;
}

/*
 * Turn VM_MIXEDMAP on if it is off (only the mmap handler may: it holds
 * mmap_lock for write). Return: 0, or -EINVAL for a VM_PFNMAP VMA (a
 * kernel BUG).
 */
static int vma_set_mixedmap(struct vm_area_struct *vma)
{
	mmap_assert_locked(vma->vm_mm);
	if (vma->vm_flags & VM_MIXEDMAP)
		return 0;
	if (HETMM_WARN_ON_ONCE(vma->vm_flags & VM_PFNMAP))
		return -EINVAL;
	mmap_assert_write_locked(vma->vm_mm);
	vma->vm_flags |= VM_MIXEDMAP;
	return 0;
}

int vm_insert_page(struct vm_area_struct *vma, unsigned long addr,
		   struct page *page)
{
	spinlock_t *ptl;
	pte_t *pte;
	int ret;

	if (!vma || !page)
		return -EINVAL;
	if (addr < vma->vm_start || addr >= vma->vm_end)
		return -EFAULT;
	ret = vma_set_mixedmap(vma);
	if (ret)
		return ret;
	ret = validate_page_before_insert(vma, page);
	if (ret)
		return ret;
	pte = get_locked_pte(vma->vm_mm, addr & PAGE_MASK, &ptl, &ret);
	if (!pte)
		return ret;
	ret = insert_page_into_pte_locked(vma, pte, page);
	spin_unlock(ptl);
	return ret;
}

int vm_insert_pages(struct vm_area_struct *vma, unsigned long addr,
		    struct page **pages, unsigned long *num)
{
	unsigned long done = 0;
	int ret = 0;

	if (!vma || !pages || !num)
		return -EINVAL;
	if (addr < vma->vm_start || addr >= vma->vm_end ||
	    *num > (vma->vm_end - addr) >> PAGE_SHIFT)
		return -EFAULT;
	ret = vma_set_mixedmap(vma);
	if (ret)
		return ret;
	addr &= PAGE_MASK;
	/* One PTE-lock round per PTE table the range touches. */
	while (done < *num) {
		unsigned long left =
			min(*num - done, PTRS_PER_TABLE - pte_index(addr));
		spinlock_t *ptl;
		pte_t *pte = get_locked_pte(vma->vm_mm, addr, &ptl, &ret);

		if (!pte)
			break;
		for (; left; left--, pte++, done++, addr += PAGE_SIZE) {
			ret = validate_page_before_insert(vma, pages[done]) ?:
				      insert_page_into_pte_locked(vma, pte,
								  pages[done]);
			if (ret)
				break;
		}
		spin_unlock(ptl);
		if (ret)
			break;
	}
	*num -= done;
	return ret;
}

long hetmm_mmap_driver(struct mm_struct *mm, unsigned long addr, size_t len,
		       int prot, int flags,
		       int (*mmap)(struct vm_area_struct *vma, void *priv),
		       void *priv)
{
	const int known = MAP_SHARED | MAP_PRIVATE | MAP_FIXED |
			  MAP_FIXED_NOREPLACE | MAP_POPULATE | MAP_NORESERVE;
	const int fixed = MAP_FIXED | MAP_FIXED_NOREPLACE;
	struct vm_area_struct *vma;
	int ret;

	if (!mm || !mmap || !len || (flags & ~known) ||
	    (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
		return -EINVAL;
	if (!(flags & (MAP_SHARED | MAP_PRIVATE)) ||
	    (flags & MAP_SHARED && flags & MAP_PRIVATE))
		return -EINVAL;
	len = ALIGN(len, PAGE_SIZE);
	if (!len || len > TASK_SIZE)
		return -ENOMEM;
	if ((flags & fixed) && !IS_ALIGNED(addr, PAGE_SIZE))
		return -EINVAL;
	if ((flags & fixed) && addr > TASK_SIZE - len)
		return -ENOMEM;

	vma = vm_area_alloc(mm);
	if (!vma)
		return -ENOMEM;
	if (!(flags & MAP_SHARED)) {
		vma->anon_vma = anon_vma_alloc();
		if (!vma->anon_vma) {
			vm_area_free(vma);
			return -ENOMEM;
		}
	}
	mmap_write_lock(mm);
	ret = mmap_place(mm, &addr, len, flags, PAGE_SIZE);
	if (ret)
		goto out_unlock;
	vma->vm_start = addr;
	vma->vm_end = addr + len;
	vma->vm_pgoff = addr >> PAGE_SHIFT;
	vma->vm_flags = vm_flags_from_prot(prot) | VM_MAYREAD | VM_MAYWRITE |
			VM_MAYEXEC;
	if (flags & MAP_SHARED)
		vma->vm_flags |= VM_SHARED | VM_MAYSHARE;
	if (flags & MAP_NORESERVE)
		vma->vm_flags |= VM_NORESERVE;
	ret = vma_link(mm, vma);
	if (ret)
		goto out_unlock;
	/* The handler sees a linked VMA and may insert pages into it. */
	ret = mmap(vma, priv);
	if (ret) {
		/* As the kernel's unmap_region(): what it inserted goes. */
		zap_page_range(vma, vma->vm_start, vma->vm_end);
		vma_unlink(vma);
		free_pgd_range(mm, addr, addr + len);
		goto out_unlock;
	}
	mmap_write_unlock(mm);
	return (long)addr;

out_unlock:
	mmap_write_unlock(mm);
	vm_area_free(vma);
	return ret;
}
