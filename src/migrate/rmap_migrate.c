// SPDX-License-Identifier: MIT
/*
 * rmap_migrate.c - the rmap side of migration: try_to_migrate() turns every
 * remaining mapping of a folio, in every address space, into a migration
 * entry; remove_migration_ptes() turns the migration entries of a folio
 * back into mappings, of the same folio or of its replacement. Also the
 * move of a page-cache folio (migrate_folio(), migrate_pagecache_folio()):
 * unmap, copy, hand over the cache slot (memfs's folio_migrate_mapping()),
 * remap.
 *
 * Locking:
 *   folio lock (held by the caller throughout; it is what makes a
 *   migration entry valid: whoever meets one waits for the unlock)
 *     anon_vma rwsem / i_mmap_rwsem (read, inside rmap_walk)
 *       mmu notifier start/end (may sleep: never under a spinlock)
 *         mm->page_table_lock (PMD entries) / PTE-table lock
 *           hetmm_cpu.lock (TLB flushes)
 *   page-cache migration: src folio lock -> dst folio lock (a fresh folio:
 *   trylock) -> the rmap locks above; then i_pages.xa_lock alone, inside
 *   folio_migrate_mapping(). No i_rwsem: truncate (which holds it) waits
 *   for the folio lock after zapping, and finds either folio consistent.
 *   The VMAs rmap_walk() hands us stay linked while the rmap lock is held,
 *   and an mm frees its page tables only after unlinking its VMAs, so the
 *   tables we reach through them stay valid; we still read them under
 *   rcu_read_lock() like every lock-free walker.
 *
 * Invariants:
 *   - A migration entry holds neither a folio reference nor a mapcount:
 *     converting a mapping drops both (after the TLB flush), restoring one
 *     takes both.
 *   - Every conversion of a mapping that a device may mirror (present PTE,
 *     PMD leaf, device-private or device-exclusive entry) happens inside an
 *     MMU_NOTIFY_CLEAR invalidation covering it; restoring needs none (an
 *     upgrade).
 *   - An anon-exclusive page that may be DMA-pinned is never converted:
 *     its mapping is put back and try_to_migrate() stops, leaving the
 *     folio mapped (the caller sees folio_mapped() and gives up).
 *   - The entry kind remembers what the mapping allowed: WRITE for a
 *     writable mapping, READ_EXCLUSIVE for a read-only anon-exclusive one,
 *     READ otherwise; young/dirty/soft-dirty are carried. A restored
 *     mapping is writable iff the entry is WRITE (and the VMA still allows
 *     writing), anon-exclusive unless the entry is plain READ.
 *   - A page-cache folio changes hands only once unmapped everywhere and
 *     with no reference beyond the cache's and the migrator's
 *     (folio_migrate_mapping() checks under xa_lock): the data is copied
 *     before the slot switches, so lookups see the old folio or a complete
 *     copy; dirty (slot mark and PG_dirty) moves with the slot.
 *   - PMD leaves of large folios become PMD-level migration entries and
 *     come back as PMD leaves (device-private PMD entries for a
 *     device-private destination); the deposited PTE table stays with the
 *     PMD slot throughout.
 */
#include <hetmm/err.h>
#include <hetmm/fs.h>
#include <hetmm/memremap.h>
#include <hetmm/migrate.h>
#include <hetmm/stats.h>

#include "../mm/internal.h"

/* The mark an anon folio is dirtied with; file folios go through the fs. */
static void migrate_folio_mark_dirty(struct folio *folio)
{
	if (folio_test_anon(folio) || !folio->page.mapping)
		folio_set_flag(folio, PG_dirty);
	else
		folio_mark_dirty(folio);
}

static pte_t make_migration_pte(unsigned long pfn, bool write, bool exclusive,
				bool young, bool dirty, bool soft_dirty)
{
	softleaf_t s = make_migration_entry(pfn, write, exclusive);

	if (young)
		s = softleaf_mkyoung(s);
	if (dirty)
		s = softleaf_mkdirty(s);
	if (soft_dirty)
		s.val |= _SWP_SOFT_DIRTY;
	return softleaf_to_pte(s);
}

/* Is this non-present entry's soft-dirty bit set? */
static bool softleaf_soft_dirty(pte_t e)
{
	return pte_val(e) & _SWP_SOFT_DIRTY;
}

/* ------------------------------------------------------ try_to_migrate */

struct ttm_state {
	bool failed; /* a pinned exclusive page stopped the walk */
};

/*
 * The PMD mapping of a large folio at @haddr, if any, becomes a PMD-level
 * migration entry. Return: 1 converted, 0 nothing there, -EBUSY pinned.
 */
static int ttm_pmd(struct folio *folio, struct vm_area_struct *vma, pmd_t *pmd,
		   unsigned long haddr)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long pfn = folio_pfn(folio);
	bool write, pae, young = false, dirty = false, sd;
	enum softleaf_type k;
	pmd_t e;

	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	k = pte_kind(e);
	if (pmd_leaf(e) && pte_pfn(e) == pfn) {
		pae = folio_test_anon(folio) && PageAnonExclusive(&folio->page);
		e = ptep_get_and_clear(pmd);
		flush_tlb_range(mm, haddr, haddr + PMD_SIZE);
		if (pae && folio_maybe_dma_pinned(folio)) {
			set_pte(pmd, e);
			spin_unlock(&mm->page_table_lock);
			return -EBUSY;
		}
		write = pte_write(e);
		young = pte_young(e);
		dirty = pte_dirty(e);
		sd = pte_soft_dirty(e);
		if (dirty)
			migrate_folio_mark_dirty(folio);
	} else if (is_device_private_kind(k) &&
		   softleaf_pfn(softleaf_from_pte(e)) == pfn) {
		pae = folio_test_anon(folio) && PageAnonExclusive(&folio->page);
		write = k == SOFTLEAF_DEVICE_PRIVATE_WRITE;
		sd = softleaf_soft_dirty(e);
		ptep_get_and_clear(pmd);
	} else {
		spin_unlock(&mm->page_table_lock);
		return 0;
	}
	if (pae)
		ClearPageAnonExclusive(&folio->page);
	set_pte(pmd, make_migration_pte(pfn, write, pae, young, dirty, sd));
	folio_remove_pmd_rmap(folio);
	spin_unlock(&mm->page_table_lock);
	folio_put(folio); /* the mapping's; the caller holds its own */
	return 1;
}

/*
 * Convert the PTE-level mappings of @folio's pages in [start, end) of
 * @vma. Return: 0, or -EBUSY if a pinned exclusive page was met.
 */
static int ttm_ptes(struct folio *folio, struct vm_area_struct *vma,
		    unsigned long fstart, unsigned long start,
		    unsigned long end)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long pfn0 = folio_pfn(folio);

	for (unsigned long a = start; a < end;) {
		unsigned long next = pt_addr_end(a, end, PMD_SIZE);
		pmd_t *pmd = mm_find_pmd(mm, a);
		spinlock_t *ptl;
		pte_t *pte;

		pte = pmd ? pte_offset_map_lock(mm, pmd, a, &ptl) : NULL;
		if (!pte) {
			a = next;
			continue;
		}
		for (; a < next; a += PAGE_SIZE, pte++) {
			unsigned long j = (a - fstart) >> PAGE_SHIFT;
			struct page *page = folio_page(folio, j);
			pte_t e = ptep_get(pte);
			enum softleaf_type k = pte_kind(e);
			bool write, pae, young = false, dirty = false, sd;

			if (k == SOFTLEAF_PRESENT) {
				if (pte_special(e) || pte_pfn(e) != pfn0 + j)
					continue;
			} else if (is_device_private_kind(k) ||
				   k == SOFTLEAF_DEVICE_EXCLUSIVE) {
				if (softleaf_pfn(softleaf_from_pte(e)) !=
				    pfn0 + j)
					continue;
			} else {
				continue;
			}
			pae = folio_test_anon(folio) && PageAnonExclusive(page);
			e = ptep_clear_flush(mm, a, pte);
			if (pae && folio_maybe_dma_pinned(folio)) {
				set_pte(pte, e);
				spin_unlock(ptl);
				return -EBUSY;
			}
			if (k == SOFTLEAF_PRESENT) {
				write = pte_write(e);
				young = pte_young(e);
				dirty = pte_dirty(e);
				sd = pte_soft_dirty(e);
				if (dirty)
					migrate_folio_mark_dirty(folio);
			} else {
				/* An exclusive entry stands for a writable
				 * PTE wherever the VMA allows writing. */
				write = k == SOFTLEAF_DEVICE_PRIVATE_WRITE ||
					(k == SOFTLEAF_DEVICE_EXCLUSIVE &&
					 (vma->vm_flags & VM_WRITE));
				sd = softleaf_soft_dirty(e);
			}
			if (pae)
				ClearPageAnonExclusive(page);
			set_pte(pte, make_migration_pte(pfn0 + j, write, pae,
							young, dirty, sd));
			page_remove_pte_rmap(page);
			folio_put(folio);
		}
		spin_unlock(ptl);
	}
	return 0;
}

static bool try_to_migrate_one(struct folio *folio, struct vm_area_struct *vma,
			       unsigned long addr, void *arg)
{
	struct ttm_state *st = arg;
	struct mm_struct *mm = vma->vm_mm;
	unsigned long size = folio_size(folio);
	unsigned long start = max(addr, vma->vm_start);
	unsigned long end = min(addr + size, vma->vm_end);
	struct mmu_notifier_range range;
	int ret = 0;

	if (start >= end || !mm->pgd)
		return true;
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, start, end);
	mmu_notifier_invalidate_range_start(&range);
	rcu_read_lock();
	if (folio_test_large(folio) && IS_ALIGNED(addr, PMD_SIZE) &&
	    start == addr && end == addr + PMD_SIZE &&
	    folio_order(folio) == PMD_ORDER) {
		pmd_t *pmd = mm_find_pmd(mm, addr);

		if (pmd)
			ret = ttm_pmd(folio, vma, pmd, addr);
	}
	/* A PMD-mapped folio has no PTE mappings in the same VMA slot. */
	if (ret == 0)
		ret = ttm_ptes(folio, vma, addr, start, end);
	rcu_read_unlock();
	mmu_notifier_invalidate_range_end(&range);
	if (ret == -EBUSY) {
		st->failed = true;
		return false;
	}
	/* Nothing left to convert: stop early. */
	return folio_mapped(folio);
}

void try_to_migrate(struct folio *folio)
{
	struct ttm_state st = { 0 };
	struct rmap_walk_control rwc = {
		.rmap_one = try_to_migrate_one,
		.arg = &st,
	};

	HETMM_WARN_ON_ONCE(!folio_test_locked(folio));
	if (!folio_mapped(folio) || !folio->page.mapping)
		return;
	rmap_walk(folio, &rwc);
}

/* ----------------------------------------------- remove_migration_ptes */

struct rmp_state {
	struct folio *src;
};

/* The present entry (PTE or PMD leaf flags) restored from migration @e. */
static pte_t restore_present(unsigned long pfn, pte_t e, struct folio *dst,
			     struct vm_area_struct *vma, bool pmd)
{
	softleaf_t s = softleaf_from_pte(e);
	pte_t n = pmd ? pfn_pmd_leaf(pfn, 0) : pfn_pte(pfn, 0);

	if (softleaf_young(s))
		n = pte_mkyoung(n);
	if (softleaf_dirty(s) && folio_test_flag(dst, PG_dirty))
		n = pte_set_flags(n, _PAGE_DIRTY);
	if (softleaf_soft_dirty(e))
		n = pte_set_flags(n, _PAGE_SOFT_DIRTY);
	if (pte_kind(e) == SOFTLEAF_MIGRATION_WRITE &&
	    (vma->vm_flags & VM_WRITE))
		n = pte_mkwrite(n);
	if (!(vma->vm_flags & (VM_READ | VM_WRITE | VM_EXEC)))
		n = pte_set_flags(pte_wrprotect(n), _PAGE_PROTNONE);
	return n;
}

static pte_t restore_device_private(unsigned long pfn, pte_t e)
{
	softleaf_t s = make_device_private_entry(
		pfn, pte_kind(e) == SOFTLEAF_MIGRATION_WRITE);

	if (softleaf_soft_dirty(e))
		s.val |= _SWP_SOFT_DIRTY;
	return softleaf_to_pte(s);
}

/* Restore a PMD-level migration entry of @src at @pmd. True if done. */
static bool rmp_pmd(struct folio *src, struct folio *dst,
		    struct vm_area_struct *vma, pmd_t *pmd)
{
	struct mm_struct *mm = vma->vm_mm;
	enum softleaf_type k;
	pmd_t e, n;

	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	k = pte_kind(e);
	if (!is_migration_kind(k) ||
	    softleaf_pfn(softleaf_from_pte(e)) != folio_pfn(src) ||
	    folio_order(dst) != PMD_ORDER) {
		spin_unlock(&mm->page_table_lock);
		return false;
	}
	if (folio_is_device_private(dst))
		n = restore_device_private(folio_pfn(dst), e);
	else
		n = restore_present(folio_pfn(dst), e, dst, vma, true);
	if (folio_test_anon(dst)) {
		if (k != SOFTLEAF_MIGRATION_READ)
			SetPageAnonExclusive(&dst->page);
		else
			ClearPageAnonExclusive(&dst->page);
	}
	folio_get(dst);
	folio_add_pmd_rmap(dst);
	set_pte(pmd, n);
	spin_unlock(&mm->page_table_lock);
	return true;
}

static void rmp_ptes(struct folio *src, struct folio *dst,
		     struct vm_area_struct *vma, unsigned long fstart,
		     unsigned long start, unsigned long end)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long spfn = folio_pfn(src), dpfn = folio_pfn(dst);
	bool dev = folio_is_device_private(dst);

	for (unsigned long a = start; a < end;) {
		unsigned long next = pt_addr_end(a, end, PMD_SIZE);
		pmd_t *pmd = mm_find_pmd(mm, a);
		spinlock_t *ptl;
		pte_t *pte;

		pte = pmd ? pte_offset_map_lock(mm, pmd, a, &ptl) : NULL;
		if (!pte) {
			a = next;
			continue;
		}
		for (; a < next; a += PAGE_SIZE, pte++) {
			unsigned long j = (a - fstart) >> PAGE_SHIFT;
			struct page *page = folio_page(dst, j);
			pte_t e = ptep_get(pte);
			enum softleaf_type k = pte_kind(e);

			if (!is_migration_kind(k) ||
			    softleaf_pfn(softleaf_from_pte(e)) != spfn + j)
				continue;
			if (folio_test_anon(dst)) {
				if (k != SOFTLEAF_MIGRATION_READ)
					SetPageAnonExclusive(page);
				else
					ClearPageAnonExclusive(page);
			}
			folio_get(dst);
			page_add_pte_rmap(page);
			set_pte(pte, dev ? restore_device_private(dpfn + j, e) :
					   restore_present(dpfn + j, e, dst,
							   vma, false));
		}
		spin_unlock(ptl);
	}
}

static bool remove_migration_one(struct folio *dst, struct vm_area_struct *vma,
				 unsigned long addr, void *arg)
{
	struct rmp_state *st = arg;
	struct mm_struct *mm = vma->vm_mm;
	unsigned long start = max(addr, vma->vm_start);
	unsigned long end = min(addr + folio_size(dst), vma->vm_end);

	if (start >= end || !mm->pgd)
		return true;
	rcu_read_lock();
	if (folio_test_large(dst) && IS_ALIGNED(addr, PMD_SIZE) &&
	    start == addr && end == addr + PMD_SIZE) {
		pmd_t *pmd = mm_find_pmd(mm, addr);

		if (pmd && rmp_pmd(st->src, dst, vma, pmd)) {
			rcu_read_unlock();
			return true;
		}
	}
	rmp_ptes(st->src, dst, vma, addr, start, end);
	rcu_read_unlock();
	return true;
}

void remove_migration_ptes(struct folio *src, struct folio *dst)
{
	struct rmp_state st = { .src = src };
	struct rmap_walk_control rwc = {
		.rmap_one = remove_migration_one,
		.arg = &st,
	};

	if (HETMM_WARN_ON_ONCE(folio_nr_pages(src) != folio_nr_pages(dst)))
		return;
	if (!dst->page.mapping)
		return;
	rmap_walk(dst, &rwc);
}

/* ------------------------------------------------ page-cache migration */

int migrate_folio(struct address_space *mapping, struct folio *dst,
		  struct folio *src)
{
	/* What folio_migrate_flags() carries besides dirty and swapbacked
	 * (moved with the cache slot). */
	const unsigned int keep = (1U << PG_uptodate) | (1U << PG_referenced) |
				  (1U << PG_active) | (1U << PG_hugetlb);
	int ret;

	HETMM_WARN_ON_ONCE(!folio_test_locked(src));
	HETMM_WARN_ON_ONCE(!folio_test_locked(dst));
	/* The data first: the cache must never expose a partial copy. */
	ret = folio_mc_copy(dst, src);
	if (ret)
		return ret;
	ret = folio_migrate_mapping(mapping, dst, src, 0);
	if (ret)
		return ret;
	atomic_fetch_or(&dst->page.flags, atomic_load(&src->page.flags) & keep);
	return 0;
}

int migrate_pagecache_folio(struct folio *dst, struct folio *src)
{
	struct address_space *mapping = src->page.mapping;
	int ret;

	HETMM_WARN_ON_ONCE(!folio_test_locked(src));
	if (HETMM_WARN_ON_ONCE(folio_test_anon(src) ||
			       folio_order(dst) != folio_order(src)))
		return -EINVAL;
	if (!mapping)
		return 0; /* truncated meanwhile: nothing left to move */
	if (folio_mapped(src))
		try_to_migrate(src);
	/* A mapping left (a racing fault's) keeps its reference: retry. */
	ret = folio_mapped(src) ? -EAGAIN : migrate_folio(mapping, dst, src);
	/* The entries become mappings of the copy, or of @src again. */
	remove_migration_ptes(src, ret ? src : dst);
	return ret;
}
