// SPDX-License-Identifier: MIT
/*
 * memory.c - the CPU fault path, zapping, and CPU accesses.
 *
 * Locking and invariants:
 *   mmap_lock (read for faults and accesses, write for VMA changes)
 *     PTE-table lock (every PTE change; allocations may nest inside it:
 *     ptl -> per-thread page list -> zone lock)
 *   - A present PTE mapping a normal folio holds one reference and one
 *     mapcount of that page: refcount >= mapcount (+ other holders).
 *   - The shared zero page is mapped special and read-only, and is never
 *     counted.
 *   - A writable PTE of a private anonymous mapping maps a PageAnonExclusive
 *     page; a page that is not exclusive is mapped read-only.
 *   - A fault re-checks the PTE under its lock before installing anything,
 *     so racing faults on one address install exactly one page.
 */
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/mmu_notifier.h>
#include <hetmm/stats.h>
#include <hetmm/uapi.h>

static unsigned long zero_pfn(struct mm_struct *mm)
{
	return page_to_pfn(mm->machine->zero_page);
}

static bool is_cow_mapping(unsigned long flags)
{
	return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE;
}

/* Add/remove one PTE mapping of an order-0 page. */
static void page_add_pte_rmap(struct page *page)
{
	atomic_fetch_add_explicit(&page->_mapcount, 1, memory_order_relaxed);
}

static void page_remove_pte_rmap(struct page *page)
{
	int v = atomic_fetch_sub_explicit(&page->_mapcount, 1,
					  memory_order_relaxed) -
		1;

	if (v < -1)
		hetmm_bad_page(page, "mapcount dropped below zero");
}

/* Walk to the PTE of @addr, allocating tables. NULL on -ENOMEM. */
static pmd_t *fault_pmd(struct mm_struct *mm, unsigned long addr)
{
	pud_t *pud = pud_alloc(mm, pgd_offset(mm, addr), addr);
	pmd_t *pmd;

	if (!pud)
		return NULL;
	pmd = pmd_alloc(mm, pud, addr);
	if (!pmd || __pte_alloc(mm, pmd))
		return NULL;
	return pmd;
}

static struct folio *new_anon_folio(struct vm_area_struct *vma,
				    unsigned long addr)
{
	struct folio *folio = folio_alloc(vma->vm_mm->machine,
					  __GFP_ZERO | __GFP_MOVABLE, 0);

	if (!folio)
		return NULL;
	folio_set_flag(folio, PG_anon);
	folio_set_flag(folio, PG_swapbacked);
	folio_set_flag(folio, PG_uptodate);
	SetPageAnonExclusive(&folio->page);
	folio->page.mapping = vma->anon_vma;
	folio->page.index = (addr - vma->vm_start) / PAGE_SIZE + vma->vm_pgoff;
	return folio;
}

/* A none PTE: the zero page for reads, a fresh page for writes. */
static int do_anonymous_page(struct vm_area_struct *vma, pmd_t *pmd,
			     unsigned long addr, unsigned int flags)
{
	struct mm_struct *mm = vma->vm_mm;
	struct folio *folio = NULL;
	spinlock_t *ptl;
	pte_t *pte, entry;

	if (!(flags & FAULT_FLAG_WRITE)) {
		entry = pte_mkspecial(pfn_pte(zero_pfn(mm), _PAGE_YOUNG));
	} else {
		folio = new_anon_folio(vma, addr);
		if (!folio)
			return -ENOMEM;
		entry = pfn_pte(folio_pfn(folio), _PAGE_YOUNG | _PAGE_DIRTY);
		if (vma->vm_flags & VM_WRITE)
			entry = pte_mkwrite(entry);
	}
	pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	if (!pte || !pte_none(ptep_get(pte))) {
		/* Somebody else got here first: theirs stands. */
		if (pte)
			spin_unlock(ptl);
		if (folio)
			folio_put(folio);
		return 0;
	}
	if (folio)
		page_add_pte_rmap(&folio->page);
	set_pte(pte, entry);
	spin_unlock(ptl);
	count_stat(folio ? HETMM_STAT_fault_zero_fill :
			   HETMM_STAT_fault_zero_page);
	return 0;
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
		return false; /* large folios: copy (no THP yet) */
	return folio_ref_count(folio) == 1;
}

/*
 * A write or unshare fault on a present, read-only PTE. Called with the
 * PTE lock held; returns with it released.
 */
static int do_wp_page(struct vm_area_struct *vma, pmd_t *pmd, pte_t *pte,
		      spinlock_t *ptl, unsigned long addr, unsigned int flags)
{
	pte_t orig = ptep_get(pte), entry;
	struct mmu_notifier_range range;
	struct page *old = NULL;
	struct folio *copy;
	bool unshare = flags & FAULT_FLAG_UNSHARE;

	if (!pte_special(orig))
		old = pfn_to_page(vma->vm_mm->machine, pte_pfn(orig));
	if (old && wp_can_reuse_anon_page(old)) {
		SetPageAnonExclusive(old);
		if (!unshare) {
			entry = pte_mkyoung(pte_mkdirty(orig));
			if (vma->vm_flags & VM_WRITE)
				entry = pte_mkwrite(entry);
			set_pte(pte, entry);
		}
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
	copy = new_anon_folio(vma, addr);
	if (!copy) {
		if (old)
			put_page(old);
		return -ENOMEM;
	}
	if (old)
		copy_highpage(&copy->page, old);
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, vma->vm_mm, addr,
				addr + PAGE_SIZE);
	mmu_notifier_invalidate_range_start(&range);
	pte = pte_offset_map_lock(vma->vm_mm, pmd, addr, &ptl);
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
	if (!unshare) {
		entry = pte_mkdirty(entry);
		if (vma->vm_flags & VM_WRITE)
			entry = pte_mkwrite(entry);
	}
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

int handle_mm_fault(struct vm_area_struct *vma, unsigned long addr,
		    unsigned int flags)
{
	struct mm_struct *mm;
	bool write = flags & FAULT_FLAG_WRITE;
	bool unshare = flags & FAULT_FLAG_UNSHARE;
	spinlock_t *ptl;
	pmd_t *pmd;
	pte_t *pte, orig;

	if (!vma || (write && unshare))
		return -EFAULT;
	mm = vma->vm_mm;
	mmap_assert_locked(mm);
	if (addr < vma->vm_start || addr >= vma->vm_end)
		return -EFAULT;
	addr &= PAGE_MASK;
	if (write && !(vma->vm_flags & VM_WRITE))
		return -EFAULT;
	if (!write && !(vma->vm_flags & (VM_READ | VM_WRITE)) && !unshare)
		return -EFAULT;
	/* Unshare only means something in a COW mapping. */
	if (unshare && !is_cow_mapping(vma->vm_flags))
		flags &= ~FAULT_FLAG_UNSHARE;

	pmd = fault_pmd(mm, addr);
	if (!pmd)
		return -ENOMEM;
	pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	if (!pte)
		return -EFAULT;
	orig = ptep_get(pte);
	if (pte_none(orig)) {
		spin_unlock(ptl);
		/* Unshare of nothing is a read fault (maps the zero page). */
		return do_anonymous_page(vma, pmd, addr,
					 flags & ~FAULT_FLAG_UNSHARE);
	}
	if (!pte_present(orig)) {
		/* Migration/device entries arrive with their layers. */
		spin_unlock(ptl);
		return -EFAULT;
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

/* ------------------------------------------------------------------ zap */

struct zap_ctx {
	unsigned long zapped;
};

static int zap_pte(pte_t *pte, unsigned long addr, unsigned long next,
		   struct mm_walk *walk)
{
	struct zap_ctx *z = walk->private;
	pte_t old = ptep_get_and_clear(pte);
	struct page *page;

	(void)addr;
	(void)next;
	if (pte_none(old))
		return 0;
	z->zapped++;
	count_stat(HETMM_STAT_pte_zapped);
	if (!pte_present(old)) {
		HETMM_WARN_ON_ONCE(1); /* no softleaf kinds are created yet */
		return 0;
	}
	if (pte_special(old))
		return 0;
	page = pfn_to_page(walk->mm->machine, pte_pfn(old));
	page_remove_pte_rmap(page);
	put_page(page);
	return 0;
}

static const struct mm_walk_ops zap_ops = {
	.pte_entry = zap_pte,
	.walk_lock = PGWALK_RDLOCK,
};

void zap_page_range(struct vm_area_struct *vma, unsigned long start,
		    unsigned long end)
{
	struct mmu_notifier_range range;
	struct zap_ctx z = { 0 };

	start = max(start, vma->vm_start);
	end = min(end, vma->vm_end);
	if (start >= end)
		return;
	/* Device mirrors drop their view before the CPU's goes. */
	mmu_notifier_range_init(&range, MMU_NOTIFY_UNMAP, 0, vma->vm_mm, start,
				end);
	mmu_notifier_invalidate_range_start(&range);
	walk_page_range_novma(vma->vm_mm, start, end, &zap_ops, &z);
	mmu_notifier_invalidate_range_end(&range);
}

/* ---------------------------------------------------------- CPU access */

/*
 * Access the bytes of one page at @addr (len within the page). Faults the
 * page in as needed. Context: mmap_lock held for read.
 */
static int access_one_page(struct mm_struct *mm, unsigned long addr,
			   void *buf, size_t len, bool write)
{
	struct vm_area_struct *vma = vma_lookup(mm, addr);
	unsigned long need = write ? VM_WRITE : VM_READ;
	int ret;

	if (!vma || !(vma->vm_flags & need)) {
		count_stat(HETMM_STAT_fault_sigsegv);
		return -EFAULT;
	}
	for (;;) {
		pmd_t *pmd = mm_find_pmd(mm, addr);
		spinlock_t *ptl;
		pte_t *pte = pmd ? pte_offset_map_lock(mm, pmd, addr, &ptl) :
				   NULL;

		if (pte) {
			pte_t e = ptep_get(pte);

			if (pte_present(e) && (!write || pte_write(e))) {
				unsigned char *p = page_address(
					pfn_to_page(mm->machine, pte_pfn(e)));

				if (p) {
					p += addr & ~PAGE_MASK;
					if (write)
						memcpy(p, buf, len);
					else
						memcpy(buf, p, len);
				} else if (!write) {
					memset(buf, 0, len); /* metadata-only */
				}
				e = pte_mkyoung(e);
				if (write)
					e = pte_mkdirty(e);
				set_pte(pte, e);
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
		      unsigned long addr, void *buf, size_t len, bool write)
{
	int ret = 0;

	if (!mm || (!buf && len) || cpu >= mm->machine->cfg.nr_cpus)
		return -EINVAL;
	if (addr + len < addr)
		return -EFAULT;
	mmap_read_lock(mm);
	while (len) {
		size_t chunk = min(len, PAGE_SIZE - (addr & ~PAGE_MASK));

		ret = access_one_page(mm, addr, buf, chunk, write);
		if (ret)
			break;
		addr += chunk;
		buf = (unsigned char *)buf + chunk;
		len -= chunk;
	}
	mmap_read_unlock(mm);
	return ret;
}

int hetmm_cpu_read(struct mm_struct *mm, unsigned int cpu, unsigned long addr,
		   void *buf, size_t len)
{
	return cpu_access(mm, cpu, addr, buf, len, false);
}

int hetmm_cpu_write(struct mm_struct *mm, unsigned int cpu, unsigned long addr,
		    const void *buf, size_t len)
{
	return cpu_access(mm, cpu, addr, (void *)buf, len, true);
}
