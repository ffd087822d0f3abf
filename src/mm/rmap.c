// SPDX-License-Identifier: MIT
/*
 * rmap.c - anon_vma, rmap walks, and the hooks memfs calls into the mm
 * layer (unmap_mapping_range for truncate, folio_mkclean for writeback).
 *
 * Locking and invariants (see hetmm/rmap.h for the order):
 *   - anon_vma->vmas holds every linked VMA whose anon_vma is this one;
 *     changed under the rwsem held for write with the VMA's mmap_lock held
 *     for write.
 *   - refcount counts the VMAs that point at the anon_vma. Folios hold
 *     no reference: a folio that outlives every VMA of its anon_vma is
 *     unmapped, and rmap is never walked for an unmapped folio (callers
 *     check folio_mapped() under the folio lock).
 *   - Walkers hold the anon_vma or i_mmap lock for read, so the VMAs they
 *     find stay linked (and their mm alive, since exit unlinks every VMA
 *     first); page tables are read under rcu_read_lock().
 *   - A hugetlb folio (anon, or in a hugetlbfs page cache) is found
 *     through its head's index: every VM_HUGETLB VMA covers whole 2 MiB
 *     pages of its file or anon index. Such VMAs hold PMD leaves only, so
 *     the truncate hook zaps them with zap_hugetlb_range_locked(), and
 *     rmap_count_ptes() (PTEs only) never counts them.
 */
#include <hetmm/err.h>
#include <hetmm/stats.h>

#include "internal.h"

struct anon_vma *anon_vma_alloc(void)
{
	struct anon_vma *av = malloc(sizeof(*av));

	if (!av)
		return NULL;
	atomic_init(&av->refcount, 1);
	init_rwsem(&av->rwsem);
	INIT_LIST_HEAD(&av->vmas);
	return av;
}

void anon_vma_get(struct anon_vma *av)
{
	atomic_fetch_add(&av->refcount, 1);
}

void anon_vma_put(struct anon_vma *av)
{
	int v;

	if (!av)
		return;
	v = atomic_fetch_sub(&av->refcount, 1) - 1;
	HETMM_BUG_ON(v < 0);
	if (v)
		return;
	HETMM_WARN_ON_ONCE(!list_empty(&av->vmas));
	rwsem_destroy(&av->rwsem);
	free(av);
}

static unsigned long vma_address(struct vm_area_struct *vma, pgoff_t pgoff)
{
	return vma->vm_start + ((pgoff - vma->vm_pgoff) << PAGE_SHIFT);
}

/* Does @vma map any of the @nr pages from @pgoff? */
static bool vma_covers(struct vm_area_struct *vma, pgoff_t pgoff,
		       unsigned long nr)
{
	pgoff_t first = vma->vm_pgoff;
	pgoff_t last = first + ((vma->vm_end - vma->vm_start) >> PAGE_SHIFT);

	return pgoff < last && pgoff + nr > first;
}

static void rmap_walk_anon(struct folio *folio,
			   const struct rmap_walk_control *rwc)
{
	struct anon_vma *av = folio->page.mapping;
	struct vm_area_struct *vma;
	pgoff_t pgoff = folio->page.index;

	if (!av)
		return;
	down_read(&av->rwsem);
	list_for_each_entry(vma, &av->vmas, anon_vma_node) {
		if (!vma_covers(vma, pgoff, folio_nr_pages(folio)))
			continue;
		if (!rwc->rmap_one(folio, vma, vma_address(vma, pgoff),
				   rwc->arg))
			break;
	}
	up_read(&av->rwsem);
}

static void rmap_walk_file(struct folio *folio,
			   const struct rmap_walk_control *rwc)
{
	struct address_space *mapping = folio->page.mapping;
	pgoff_t pgoff = folio->page.index;
	pgoff_t last = pgoff + folio_nr_pages(folio) - 1;
	struct interval_tree_node *n;

	if (!mapping)
		return;
	i_mmap_lock_read(mapping);
	for (n = interval_tree_iter_first(&mapping->i_mmap, pgoff, last); n;
	     n = interval_tree_iter_next(n, pgoff, last)) {
		struct vm_area_struct *vma =
			container_of(n, struct vm_area_struct, shared_rb);

		if (!rwc->rmap_one(folio, vma, vma_address(vma, pgoff),
				   rwc->arg))
			break;
	}
	i_mmap_unlock_read(mapping);
}

void rmap_walk(struct folio *folio, const struct rmap_walk_control *rwc)
{
	if (folio_test_anon(folio))
		rmap_walk_anon(folio, rwc);
	else
		rmap_walk_file(folio, rwc);
}

/*
 * The PTE of @addr in @vma's mm, locked, if a PTE table exists there.
 * Context: rcu_read_lock() held (no mmap_lock), the VMA linked.
 */
static pte_t *rmap_pte_lock(struct vm_area_struct *vma, unsigned long addr,
			    spinlock_t **ptl)
{
	struct mm_struct *mm = vma->vm_mm;
	pmd_t *pmd;

	if (!mm->pgd)
		return NULL;
	pmd = mm_find_pmd(mm, addr);
	return pmd ? pte_offset_map_lock(mm, pmd, addr, ptl) : NULL;
}

static bool count_one(struct folio *folio, struct vm_area_struct *vma,
		      unsigned long addr, void *arg)
{
	int *n = arg;
	spinlock_t *ptl;
	pte_t *pte;

	/* A VMA covering only tail pages of a large folio: no head PTE. */
	if (addr < vma->vm_start || addr >= vma->vm_end)
		return true;
	rcu_read_lock();
	pte = rmap_pte_lock(vma, addr, &ptl);
	if (pte) {
		pte_t e = ptep_get(pte);

		if (pte_present(e) && !pte_special(e) &&
		    pte_pfn(e) == folio_pfn(folio))
			(*n)++;
		spin_unlock(ptl);
	}
	rcu_read_unlock();
	return true;
}

int rmap_count_ptes(struct folio *folio)
{
	struct rmap_walk_control rwc = { .rmap_one = count_one };
	int n = 0;

	rwc.arg = &n;
	rmap_walk(folio, &rwc);
	return n;
}

/* -------------------------------------------------------- memfs hooks */

static void mm_unmap_mapping_range(struct address_space *mapping,
				   pgoff_t first, pgoff_t last)
{
	struct interval_tree_node *n;

	i_mmap_lock_read(mapping);
	for (n = interval_tree_iter_first(&mapping->i_mmap, first, last); n;
	     n = interval_tree_iter_next(n, first, last)) {
		struct vm_area_struct *vma =
			container_of(n, struct vm_area_struct, shared_rb);
		pgoff_t lo = max(first, vma->vm_pgoff);
		pgoff_t hi = min(last, (pgoff_t)vma->shared_rb.last);

		/* Truncation removes private COW copies too. hugetlbfs
		 * mappings hold PMD leaves only, zapped whole. */
		if (vma->vm_flags & VM_HUGETLB)
			zap_hugetlb_range_locked(vma, vma_address(vma, lo),
						 vma_address(vma, hi) +
							 PAGE_SIZE);
		else
			zap_vma_range_locked(vma, vma_address(vma, lo),
					     vma_address(vma, hi) + PAGE_SIZE,
					     MMU_NOTIFY_CLEAR);
	}
	i_mmap_unlock_read(mapping);
}

static int mm_folio_mkclean(struct folio *folio)
{
	struct address_space *mapping = folio->page.mapping;
	pgoff_t pgoff = folio->page.index;
	struct interval_tree_node *n;
	int dirty = 0;

	if (!mapping)
		return 0;
	i_mmap_lock_read(mapping);
	for (n = interval_tree_iter_first(&mapping->i_mmap, pgoff, pgoff); n;
	     n = interval_tree_iter_next(n, pgoff, pgoff)) {
		struct vm_area_struct *vma =
			container_of(n, struct vm_area_struct, shared_rb);
		unsigned long addr = vma_address(vma, pgoff);
		struct mmu_notifier_range range;
		spinlock_t *ptl;
		pte_t *pte;

		if (!(vma->vm_flags & VM_SHARED))
			continue;
		mmu_notifier_range_init(&range, MMU_NOTIFY_PROTECTION_PAGE, 0,
					vma->vm_mm, addr, addr + PAGE_SIZE);
		mmu_notifier_invalidate_range_start(&range);
		rcu_read_lock();
		pte = rmap_pte_lock(vma, addr, &ptl);
		if (pte) {
			pte_t e = ptep_get(pte);

			if (pte_present(e) && pte_pfn(e) == folio_pfn(folio) &&
			    (pte_dirty(e) || pte_write(e))) {
				if (pte_dirty(e))
					dirty++;
				set_pte(pte, pte_mkclean(pte_wrprotect(e)));
				flush_tlb_page(vma->vm_mm, addr);
			}
			spin_unlock(ptl);
		}
		rcu_read_unlock();
		mmu_notifier_invalidate_range_end(&range);
	}
	i_mmap_unlock_read(mapping);
	return dirty;
}

const struct hetmm_fs_hooks mm_fs_hooks = {
	.unmap_mapping_range = mm_unmap_mapping_range,
	.folio_mkclean = mm_folio_mkclean,
};
