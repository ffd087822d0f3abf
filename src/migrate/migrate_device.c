// SPDX-License-Identifier: MIT
/*
 * migrate_device.c - moving pages between system memory and device memory
 * (spec section 4): migrate_vma_setup/pages/finalize over a VMA range, the
 * vma-less eviction API (migrate_device_range/pfns/pages/finalize), and
 * migrate_device_coherent_folio for long-term pins. The core never copies
 * data; drivers do, between setup and pages.
 *
 * Locking:
 *   mmap_lock (read, held by the caller of the migrate_vma_* API from setup
 *   to finalize; none for the migrate_device_* API)
 *     MMU_NOTIFY_MIGRATE invalidation (owner = pgmap_owner) around the
 *     collect walk, and around hole insertion in migrate_vma_pages
 *       folio lock (sources: trylock only, so two migrations never wait for
 *       each other; the fault page arrives locked by do_swap_page)
 *         anon_vma rwsem (rmap walks, rmap_migrate.c)
 *           mm->page_table_lock (PMD entries) / PTE-table lock
 *             hetmm_cpu.lock (TLB flushes)
 *   The collect walk runs its pte_entry under the PTE lock, so it only
 *   trylocks; a large folio met at PTE level stops the walk (a sentinel
 *   return), is split with no page-table lock held, and the walk restarts.
 *
 * Invariants (the setup -> finalize bracket, spec 6.1.9):
 *   - After setup, every entry is 0, MIGRATE alone (a hole or the zero page
 *     of an anonymous VMA; MIGRATE|COMPOUND for a PMD-sized aligned hole),
 *     or pfn|VALID|MIGRATE[|WRITE][|COMPOUND]: the folio is locked, holds
 *     one reference for the migration, and every former mapping of it, in
 *     every mm, is a migration entry (so it has mapcount 0).
 *   - A page whose mapping is put back (restore) loses its entry (0).
 *   - migrate_*_pages commits an entry only if the folio holds exactly the
 *     references the migration accounts for (migrate_folio_state);
 *     otherwise MIGRATE is cleared and finalize restores the source.
 *   - finalize leaves no migration entry for the arrays' folios, every
 *     folio unlocked (except the caller's fault page), and exactly one of
 *     source and destination mapped in each former mapping slot; the
 *     loser's last reference is dropped (buddy free, or folio_free).
 *   - Destinations arrive locked with one reference (the driver's); they
 *     leave unlocked with that reference dropped, so a mapped destination
 *     ends with refcount == mapcount.
 *   - For the vma-less API the anon_vma of each collected anon folio is
 *     referenced from collect to finalize, so the rmap walks that restore
 *     the mappings never meet a freed anon_vma (with a VMA, the caller's
 *     mmap_lock keeps it alive). An anon folio that is no longer mapped
 *     when it is collected by pfn is left alone: nothing keeps its
 *     anon_vma alive, and it is about to be freed anyway.
 */
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/memremap.h>
#include <hetmm/migrate.h>
#include <hetmm/stats.h>

#include "../mm/internal.h"

/* A collect walk stops with this to have a large folio split. */
#define COLLECT_SPLIT 1

static bool vma_is_anonymous(const struct vm_area_struct *vma)
{
	return !vma->vm_file && vma->anon_vma;
}

static pgoff_t vma_linear_index(const struct vm_area_struct *vma,
				unsigned long addr)
{
	return ((addr - vma->vm_start) >> PAGE_SHIFT) + vma->vm_pgoff;
}

static bool soft_dirty_of(pte_t e)
{
	return pte_present(e) ? pte_soft_dirty(e) :
				(pte_val(e) & _SWP_SOFT_DIRTY) != 0;
}

static pte_t mk_migration_pte(unsigned long pfn, bool write, bool exclusive,
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

static void mark_folio_dirty(struct folio *folio)
{
	if (folio_test_anon(folio) || !folio->page.mapping)
		folio_set_flag(folio, PG_dirty);
	else
		folio_mark_dirty(folio);
}

/* The file-backed folios the page cache holds a reference to. */
static bool folio_is_file(const struct folio *folio)
{
	return !folio_test_anon(folio) && folio->page.mapping;
}

/* ------------------------------------------------- splitting large folios */

/**
 * struct split_ctl - what the new small folios of a split get.
 * @held: references the caller accounts for on the large folio, beyond
 *        one per mapping.
 * @base: references each new folio keeps beyond its mappings.
 * @ref_page: the page whose new folio also keeps @extra more.
 * @lock_all: every new folio stays locked; otherwise only the one of
 *            @lock_page (if any) does, and the rest are unlocked.
 */
struct split_ctl {
	int held;
	int base;
	struct page *ref_page;
	int extra;
	bool lock_all;
	struct page *lock_page;
};

/*
 * split_large_folio - turn the locked, PTE-mapped (or unmapped) large
 * @folio into small folios in place: mappings stay as they are, each page
 * keeps its own mapcount and gets references per @c. New folios left
 * with no reference are freed. A device-private folio's driver hears
 * ops->folio_split for each new folio, then once with NULL.
 * Return: 0, or -EBUSY if the folio is PMD-mapped, hugetlb, or holds
 * references nobody accounts for (a pin, GUP) -- nothing changed then.
 */
static int split_large_folio(struct folio *folio, const struct split_ctl *c)
{
	const unsigned int keep = (1U << PG_referenced) | (1U << PG_uptodate) |
				  (1U << PG_dirty) | (1U << PG_active) |
				  (1U << PG_anon) | (1U << PG_swapbacked);
	unsigned long nr = folio_nr_pages(folio);
	struct page *head = &folio->page;
	struct dev_pagemap *pgmap = NULL;
	unsigned int hflags;
	int expected;

	if (!folio_test_large(folio) || folio_test_hugetlb(folio) ||
	    folio_entire_mapcount(folio) || !folio_test_locked(folio))
		return -EBUSY;
	expected = folio_mapcount(folio) + c->held;
	/* Freeze: lock-free getters (GUP-fast) fail while we rebuild. */
	if (!atomic_compare_exchange_strong(&head->_refcount, &expected, 0))
		return -EBUSY;
	if (folio_is_device_private(folio))
		pgmap = head->pgmap;
	hflags = atomic_load(&head->flags);
	for (unsigned long i = 1; i < nr; i++) {
		struct page *p = head + i;
		unsigned int f = (hflags & keep) | (atomic_load(&p->flags) &
						    (1U << PG_anon_exclusive));

		if (c->lock_all || p == c->lock_page)
			f |= 1U << PG_locked;
		atomic_store(&p->flags, f);
		p->mapping = head->mapping;
		p->index = head->index + i;
		p->order = 0;
		atomic_store(&p->_large_mapcount, -1);
		atomic_store(&p->_entire_mapcount, -1);
		atomic_store(&p->_pincount, 0);
		__atomic_store_n(&p->head_offset, 0, __ATOMIC_RELEASE);
	}
	PageClearFlag(head, PG_head);
	PageClearFlag(head, PG_large_rmappable);
	head->order = 0;
	atomic_store(&head->_large_mapcount, -1);
	atomic_store(&head->_entire_mapcount, -1);
	atomic_store(&head->_pincount, 0);
	for (unsigned long i = nr; i-- > 0;) {
		struct page *p = head + i;
		int ref = atomic_load(&p->_mapcount) + 1 + c->base;

		if (p == c->ref_page)
			ref += c->extra;
		atomic_store_explicit(&p->_refcount, ref, memory_order_release);
	}
	if (pgmap && pgmap->ops->folio_split) {
		for (unsigned long i = 1; i < nr; i++)
			pgmap->ops->folio_split(folio,
						(struct folio *)(head + i));
		pgmap->ops->folio_split(folio, NULL);
	}
	if (!c->lock_all && c->lock_page != head)
		folio_unlock(folio);
	/* Pages nobody maps or holds are free now. */
	for (unsigned long i = 0; i < nr; i++) {
		struct folio *f = (struct folio *)(head + i);

		if (folio_ref_count(f) == 0) {
			atomic_store(&f->page._refcount, 1);
			folio_put(f);
		}
	}
	return 0;
}

/* ------------------------------------------------ splitting PMD mappings */

/* Does the PMD entry @e map (or stand for) the whole of @folio? */
static bool pmd_is_folio(pmd_t e, const struct folio *folio)
{
	enum softleaf_type k = pte_kind(e);

	if (pmd_leaf(e))
		return pte_pfn(e) == folio_pfn(folio);
	if (is_device_private_kind(k) || is_migration_kind(k))
		return softleaf_pfn(softleaf_from_pte(e)) == folio_pfn(folio);
	return false;
}

/*
 * rmap: split every PMD-level entry of @folio (a leaf, a device-private
 * entry, or with @arg set a migration entry) into 512 PTE-level ones.
 */
static bool split_pmd_one(struct folio *folio, struct vm_area_struct *vma,
			  unsigned long addr, void *arg)
{
	bool migration = arg;
	pmd_t *pmd;
	pmd_t e;

	if (!IS_ALIGNED(addr, PMD_SIZE) || addr < vma->vm_start ||
	    addr + PMD_SIZE > vma->vm_end || !vma->vm_mm->pgd)
		return true;
	pmd = mm_find_pmd(vma->vm_mm, addr);
	if (!pmd)
		return true;
	e = ptep_get(pmd);
	if (pmd_is_folio(e, folio) &&
	    is_migration_kind(pte_kind(e)) == migration)
		split_huge_pmd(vma, pmd, addr);
	return true;
}

/* Split the PMD mappings (or, @migration, PMD migration entries). */
static void split_pmd_entries(struct folio *folio, bool migration)
{
	struct rmap_walk_control rwc = {
		.rmap_one = split_pmd_one,
		.arg = migration ? (void *)1 : NULL,
	};

	if (folio->page.mapping)
		rmap_walk(folio, &rwc);
}

/* ---------------------------------------------------------------- collect */

struct collect {
	struct migrate_vma *args;
	struct hetmm_machine *m;
	struct folio *split; /* COLLECT_SPLIT: the folio, referenced */
	unsigned long restart; /* COLLECT_SPLIT: where to resume */
};

static unsigned long entry_index(const struct migrate_vma *args,
				 unsigned long addr)
{
	return (addr - args->start) >> PAGE_SHIFT;
}

static struct folio *fault_folio(const struct migrate_vma *args)
{
	return args->fault_page ? page_folio(args->fault_page) : NULL;
}

/* Does @args select pages of this folio? */
static bool collect_selects(const struct migrate_vma *args,
			    const struct folio *folio)
{
	if (!folio_is_zone_device(folio))
		return args->flags & MIGRATE_VMA_SELECT_SYSTEM;
	if (folio_is_device_private(folio))
		return (args->flags & MIGRATE_VMA_SELECT_DEVICE_PRIVATE) &&
		       folio->page.pgmap->owner == args->pgmap_owner;
	if (folio_is_device_coherent(folio))
		return (args->flags & MIGRATE_VMA_SELECT_DEVICE_COHERENT) &&
		       folio->page.pgmap->owner == args->pgmap_owner;
	return false;
}

static int collect_hole(unsigned long start, unsigned long end, int depth,
			struct mm_walk *walk)
{
	struct collect *c = walk->private;
	struct migrate_vma *args = c->args;

	(void)depth;
	if (!walk->vma || !vma_is_anonymous(walk->vma))
		return 0;
	for (unsigned long a = start; a < end;) {
		unsigned long next = pt_addr_end(a, end, PMD_SIZE);

		if ((args->flags & MIGRATE_VMA_SELECT_COMPOUND) &&
		    IS_ALIGNED(a, PMD_SIZE) && next - a == PMD_SIZE) {
			args->src[entry_index(args, a)] =
				MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND;
			args->cpages++;
			count_stat(HETMM_STAT_migrate_collect);
		} else {
			for (unsigned long b = a; b < next; b += PAGE_SIZE)
				args->src[entry_index(args, b)] =
					MIGRATE_PFN_MIGRATE;
			args->cpages += (next - a) >> PAGE_SHIFT;
			count_stat_n(HETMM_STAT_migrate_collect,
				     (next - a) >> PAGE_SHIFT);
		}
		a = next;
	}
	return 0;
}

/*
 * A whole PMD-mapped folio (THP leaf, or device-private PMD entry) becomes
 * one PMD migration entry and one COMPOUND src entry. Return: true if the
 * PMD is dealt with (collected or skipped), false to fall back to a split.
 */
static bool collect_pmd_folio(struct collect *c, struct mm_walk *walk,
			      pmd_t *pmd, unsigned long addr, pmd_t orig,
			      struct folio *folio)
{
	struct migrate_vma *args = c->args;
	struct mm_struct *mm = walk->mm;
	bool present = pmd_leaf(orig);
	bool write, pae, young = false, dirty = false, sd;
	unsigned long pfn = folio_pfn(folio);
	pmd_t e;

	if (folio_order(folio) != PMD_ORDER || !folio->page.mapping)
		return false;
	folio_get(folio);
	if (folio != fault_folio(args) && !folio_trylock(folio)) {
		folio_put(folio);
		count_stat_n(HETMM_STAT_migrate_skip, HPAGE_PMD_NR);
		return true;
	}
	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (pte_val(e) != pte_val(orig))
		goto fallback;
	pae = folio_test_anon(folio) && PageAnonExclusive(&folio->page);
	sd = soft_dirty_of(e);
	if (present) {
		e = ptep_get_and_clear(pmd);
		flush_tlb_range(mm, addr, addr + PMD_SIZE);
		if (pae && folio_maybe_dma_pinned(folio)) {
			set_pte(pmd, e);
			spin_unlock(&mm->page_table_lock);
			if (folio != fault_folio(args))
				folio_unlock(folio);
			folio_put(folio);
			count_stat_n(HETMM_STAT_migrate_skip, HPAGE_PMD_NR);
			return true;
		}
		write = pte_write(e);
		young = pte_young(e);
		dirty = pte_dirty(e);
		if (dirty)
			mark_folio_dirty(folio);
	} else {
		write = pte_kind(e) == SOFTLEAF_DEVICE_PRIVATE_WRITE;
		ptep_get_and_clear(pmd);
	}
	if (pae)
		ClearPageAnonExclusive(&folio->page);
	set_pte(pmd, mk_migration_pte(pfn, write, pae, young, dirty, sd));
	folio_remove_pmd_rmap(folio);
	spin_unlock(&mm->page_table_lock);
	folio_put(folio); /* the mapping's; the collect reference stays */
	args->src[entry_index(args, addr)] =
		migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND |
		(write ? MIGRATE_PFN_WRITE : 0);
	args->cpages++;
	count_stat(HETMM_STAT_migrate_collect);
	return true;

fallback:
	spin_unlock(&mm->page_table_lock);
	if (folio != fault_folio(args))
		folio_unlock(folio);
	folio_put(folio);
	return false;
}

static int collect_pmd(pmd_t *pmd, unsigned long addr, unsigned long next,
		       struct mm_walk *walk)
{
	struct collect *c = walk->private;
	struct migrate_vma *args = c->args;
	pmd_t e = ptep_get(pmd);
	enum softleaf_type k = pte_kind(e);
	bool whole = IS_ALIGNED(addr, PMD_SIZE) && next - addr == PMD_SIZE &&
		     (args->flags & MIGRATE_VMA_SELECT_COMPOUND);
	struct folio *folio;

	if (pte_none(e) || pmd_table(e))
		return 0; /* a hole, or PTEs below: the walker goes on */
	if (pmd_leaf(e)) {
		folio = page_folio(pfn_to_page(c->m, pte_pfn(e)));
		if (!collect_selects(args, folio)) {
			walk->action = ACTION_CONTINUE;
			return 0;
		}
		if (is_huge_zero_folio(folio)) {
			/* Nothing to copy: a hole (the destination replaces
			 * the leaf, or splits it for 4 KiB pages). */
			walk->action = ACTION_CONTINUE;
			return collect_hole(addr, next, -1, walk);
		}
		if (whole && collect_pmd_folio(c, walk, pmd, addr & PMD_MASK, e,
					       folio)) {
			walk->action = ACTION_CONTINUE;
			return 0;
		}
		/* Map it with PTEs; the PTE walk splits the folio. */
		split_huge_pmd(walk->vma, pmd, addr);
		walk->action = ACTION_AGAIN;
		return 0;
	}
	if (is_device_private_kind(k)) {
		folio = page_folio(
			pfn_to_page(c->m, softleaf_pfn(softleaf_from_pte(e))));
		if (!collect_selects(args, folio)) {
			walk->action = ACTION_CONTINUE;
			return 0;
		}
		if (whole && collect_pmd_folio(c, walk, pmd, addr & PMD_MASK, e,
					       folio)) {
			walk->action = ACTION_CONTINUE;
			return 0;
		}
		split_huge_pmd(walk->vma, pmd, addr);
		walk->action = pmd_table(ptep_get(pmd)) ? ACTION_AGAIN :
							  ACTION_CONTINUE;
		return 0;
	}
	/*
	 * A PMD migration entry (another migration owns the folio) or any
	 * other non-present PMD: skip it rather than sleep inside our
	 * invalidation for someone else's unlock.
	 */
	walk->action = ACTION_CONTINUE;
	return 0;
}

static int collect_pte(pte_t *pte, unsigned long addr, unsigned long next,
		       struct mm_walk *walk)
{
	struct collect *c = walk->private;
	struct migrate_vma *args = c->args;
	struct mm_struct *mm = walk->mm;
	unsigned long i = entry_index(args, addr), pfn;
	pte_t e = ptep_get(pte);
	enum softleaf_type k = pte_kind(e);
	bool write, pae, young = false, dirty = false, sd;
	struct folio *folio;
	struct page *page;

	(void)next;
	if (k == SOFTLEAF_NONE) {
		if (vma_is_anonymous(walk->vma)) {
			args->src[i] = MIGRATE_PFN_MIGRATE;
			args->cpages++;
			count_stat(HETMM_STAT_migrate_collect);
		}
		return 0;
	}
	if (k == SOFTLEAF_PRESENT) {
		if (pte_special(e)) {
			if (is_zero_page(pfn_to_page(c->m, pte_pfn(e))) &&
			    (args->flags & MIGRATE_VMA_SELECT_SYSTEM)) {
				args->src[i] = MIGRATE_PFN_MIGRATE;
				args->cpages++;
				count_stat(HETMM_STAT_migrate_collect);
			}
			return 0;
		}
		pfn = pte_pfn(e);
		write = pte_write(e);
	} else if (is_device_private_kind(k)) {
		pfn = softleaf_pfn(softleaf_from_pte(e));
		write = k == SOFTLEAF_DEVICE_PRIVATE_WRITE;
	} else {
		return 0; /* swap, migration, exclusive, poison, marker */
	}
	page = pfn_to_page(c->m, pfn);
	folio = page_folio(page);
	if (!collect_selects(args, folio) || !folio->page.mapping)
		return 0;
	if (folio_test_large(folio)) {
		folio_get(folio);
		c->split = folio;
		c->restart = addr;
		return COLLECT_SPLIT;
	}
	folio_get(folio);
	if (folio != fault_folio(args) && !folio_trylock(folio)) {
		folio_put(folio);
		count_stat(HETMM_STAT_migrate_skip);
		return 0;
	}
	pae = folio_test_anon(folio) && PageAnonExclusive(page);
	sd = soft_dirty_of(e);
	e = ptep_clear_flush(mm, addr, pte);
	if (pae && folio_maybe_dma_pinned(folio)) {
		/* It may be pinned: it cannot become shared. */
		set_pte(pte, e);
		if (folio != fault_folio(args))
			folio_unlock(folio);
		folio_put(folio);
		count_stat(HETMM_STAT_migrate_skip);
		return 0;
	}
	if (k == SOFTLEAF_PRESENT) {
		young = pte_young(e);
		dirty = pte_dirty(e);
		if (dirty)
			mark_folio_dirty(folio);
	}
	if (pae)
		ClearPageAnonExclusive(page);
	set_pte(pte, mk_migration_pte(pfn, write, pae, young, dirty, sd));
	page_remove_pte_rmap(page);
	folio_put(folio); /* the mapping's; the collect reference stays */
	args->src[i] = migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE |
		       (write ? MIGRATE_PFN_WRITE : 0);
	args->cpages++;
	count_stat(HETMM_STAT_migrate_collect);
	return 0;
}

static const struct mm_walk_ops collect_ops = {
	.pmd_entry = collect_pmd,
	.pte_entry = collect_pte,
	.pte_hole = collect_hole,
	.walk_lock = PGWALK_RDLOCK,
};

/*
 * Split the large folio the walk stopped at (it holds our reference).
 * Return: 0, or -EBUSY (locked by someone else, pinned, PMD-mapped
 * somewhere we could not split).
 */
static int collect_split(struct collect *c, struct folio *folio)
{
	struct migrate_vma *args = c->args;
	struct page *fp = args->fault_page;
	bool ours = folio != fault_folio(args);
	bool inside = fp && page_folio(fp) == folio;
	struct split_ctl ctl = {
		.held = 1 + (inside ? 1 : 0),
		.base = 0,
		.ref_page = inside ? fp : &folio->page,
		.extra = 1 + (inside ? 1 : 0),
		.lock_all = false,
		.lock_page = inside ? fp : NULL,
	};
	int ret;

	if (ours && !folio_trylock(folio)) {
		folio_put(folio);
		return -EBUSY;
	}
	if (folio_entire_mapcount(folio))
		split_pmd_entries(folio, false);
	ret = split_large_folio(folio, &ctl);
	if (ret) {
		if (ours)
			folio_unlock(folio);
		folio_put(folio);
		return ret;
	}
	folio_put(page_folio(ctl.ref_page)); /* our walk reference */
	return 0;
}

static void migrate_vma_collect(struct migrate_vma *args)
{
	struct mm_struct *mm = args->vma->vm_mm;
	struct collect c = { .args = args, .m = mm->machine };
	struct mmu_notifier_range range;
	unsigned long addr = args->start;

	mmu_notifier_range_init_owner(&range, MMU_NOTIFY_MIGRATE, 0, mm,
				      args->start, args->end,
				      args->pgmap_owner);
	mmu_notifier_invalidate_range_start(&range);
	while (addr < args->end) {
		int ret;

		c.split = NULL;
		ret = walk_page_range(mm, addr, args->end, &collect_ops, &c);
		if (ret != COLLECT_SPLIT)
			break;
		addr = c.restart;
		if (collect_split(&c, c.split)) {
			/* Give up on the rest of this PMD range. */
			unsigned long next =
				pt_addr_end(addr, args->end, PMD_SIZE);

			count_stat_n(HETMM_STAT_migrate_skip,
				     (next - addr) >> PAGE_SHIFT);
			addr = next;
		}
	}
	mmu_notifier_invalidate_range_end(&range);
}

/* ------------------------------------------------------------------ unmap */

/* The anon_vma a vma-less migration keeps referenced for @folio. */
static struct anon_vma *pinned_anon_vma(struct folio *folio)
{
	return folio_test_anon(folio) ? folio->page.mapping : NULL;
}

/*
 * A vma-less migration takes the folio's anon_vma reference at collect.
 * Only a mapped folio's anon_vma is known to be alive (a VMA still links
 * it); an anon folio with no mapping left is on its way to being freed and
 * is not taken at all. Return: false to skip the folio.
 */
static bool pin_anon_vma(struct folio *folio)
{
	struct anon_vma *av = pinned_anon_vma(folio);

	if (!av)
		return true;
	if (!folio_mapped(folio))
		return false;
	anon_vma_get(av);
	return true;
}

/*
 * migrate_device_unmap - replace every remaining mapping of each collected
 * folio by migration entries and check that no unaccounted reference is
 * left; entries that fail are restored and zeroed.
 * Return: the entries still migrating (holes included).
 */
static unsigned long migrate_device_unmap(struct hetmm_machine *m,
					  unsigned long *src,
					  unsigned long npages,
					  struct page *fault_page, bool novma)
{
	struct folio *ff = fault_page ? page_folio(fault_page) : NULL;
	unsigned long cpages = 0, restore = 0, nr;

	for (unsigned long i = 0; i < npages; i += nr) {
		struct page *page = migrate_pfn_to_page(m, src[i]);
		struct folio *folio;
		int extra;

		nr = 1;
		if (!page) {
			if (src[i] & MIGRATE_PFN_MIGRATE)
				cpages++;
			continue;
		}
		folio = page_folio(page);
		if (folio_test_large(folio)) {
			src[i] |= MIGRATE_PFN_COMPOUND;
			nr = folio_nr_pages(folio);
		}
		/* No LRU is modelled: isolation keeps the collect reference. */
		if (folio_mapped(folio))
			try_to_migrate(folio);
		extra = 1 + (folio == ff) + folio_is_zone_device(folio) +
			folio_is_file(folio);
		if (folio_mapped(folio) ||
		    folio_ref_count(folio) - extra > folio_mapcount(folio)) {
			src[i] &= ~MIGRATE_PFN_MIGRATE;
			restore++;
			continue;
		}
		cpages++;
	}
	if (!restore)
		return cpages;
	for (unsigned long i = 0; i < npages; i += nr) {
		struct page *page = migrate_pfn_to_page(m, src[i]);
		struct anon_vma *av;
		struct folio *folio;

		nr = 1;
		if (!page)
			continue;
		folio = page_folio(page);
		if (src[i] & MIGRATE_PFN_COMPOUND)
			nr = folio_nr_pages(folio);
		if (src[i] & MIGRATE_PFN_MIGRATE)
			continue;
		av = novma ? pinned_anon_vma(folio) : NULL;
		remove_migration_ptes(folio, folio);
		src[i] = 0;
		if (folio != ff)
			folio_unlock(folio);
		folio_put(folio);
		if (av)
			anon_vma_put(av);
		count_stat_n(HETMM_STAT_migrate_skip, nr);
	}
	return cpages;
}

/* ------------------------------------------------------------------ setup */

int migrate_vma_setup(struct migrate_vma *args)
{
	unsigned long nr_pages;
	struct vm_area_struct *vma;

	if (!args)
		return -EINVAL;
	/* Counted before the bounds are rounded down, as the kernel does. */
	nr_pages = args->end > args->start ?
			   (args->end - args->start) >> PAGE_SHIFT :
			   0;
	args->start &= PAGE_MASK;
	args->end &= PAGE_MASK;
	vma = args->vma;
	if (!vma || (vma->vm_flags & (VM_HUGETLB | VM_SPECIAL)))
		return -EINVAL;
	if (!nr_pages)
		return -EINVAL;
	if (args->start < vma->vm_start || args->start >= vma->vm_end)
		return -EINVAL;
	if (args->end <= vma->vm_start || args->end > vma->vm_end)
		return -EINVAL;
	if (!args->src || !args->dst)
		return -EINVAL;
	if (args->fault_page &&
	    (!is_device_private_page(args->fault_page) ||
	     !folio_test_locked(page_folio(args->fault_page))))
		return -EINVAL;
	mmap_assert_locked(vma->vm_mm);

	nr_pages = (args->end - args->start) >> PAGE_SHIFT;
	memset(args->src, 0, nr_pages * sizeof(*args->src));
	memset(args->dst, 0, nr_pages * sizeof(*args->dst));
	args->cpages = 0;
	args->npages = 0;
	if (vma->vm_mm->pgd)
		migrate_vma_collect(args);
	args->npages = nr_pages;
	if (args->cpages)
		args->cpages = migrate_device_unmap(vma->vm_mm->machine,
						    args->src, args->npages,
						    args->fault_page, false);
	return 0;
}

/* ------------------------------------------------------------------ pages */

/*
 * Move the mapping state of @src to @dst (both locked, unmapped). The
 * folio must hold exactly the migration's reference (+@extra for the fault
 * page): a GUP reference or pin taken since setup makes this fail.
 * Return: 0 or -EAGAIN.
 */
static int migrate_folio_state(struct folio *dst, struct folio *src, int extra)
{
	const unsigned int copy = (1U << PG_uptodate) | (1U << PG_referenced) |
				  (1U << PG_active) | (1U << PG_anon) |
				  (1U << PG_swapbacked);
	unsigned long nr = folio_nr_pages(src);
	int expected = 1 + extra;

	if (folio_ref_count(src) != expected)
		return -EAGAIN;
	dst->page.index = src->page.index;
	dst->page.mapping = src->page.mapping;
	atomic_fetch_or(&dst->page.flags, atomic_load(&src->page.flags) & copy);
	if (folio_test_flag(src, PG_dirty)) {
		folio_clear_flag(src, PG_dirty);
		folio_set_flag(dst, PG_dirty);
	}
	for (unsigned long i = 0; i < nr; i++) {
		if (PageAnonExclusive(folio_page(src, i)))
			SetPageAnonExclusive(folio_page(dst, i));
		else
			ClearPageAnonExclusive(folio_page(dst, i));
	}
	return 0;
}

static void count_migration(struct folio *src, struct folio *dst)
{
	unsigned long nr = folio_nr_pages(src);

	if (folio_test_large(src))
		count_stat(HETMM_STAT_migrate_folio_large);
	if (!folio_is_zone_device(src) && folio_is_zone_device(dst))
		count_stat_n(HETMM_STAT_migrate_to_device, nr);
	else if (folio_is_zone_device(src) && !folio_is_zone_device(dst))
		count_stat_n(HETMM_STAT_migrate_to_system, nr);
	else if (folio_is_zone_device(src) && folio_is_zone_device(dst))
		count_stat_n(HETMM_STAT_migrate_device_to_device, nr);
}

/* Give a fresh destination folio the anon identity of @addr in @vma. */
static void anon_folio_setup(struct folio *folio, struct vm_area_struct *vma,
			     unsigned long addr)
{
	folio_set_flag(folio, PG_anon);
	folio_set_flag(folio, PG_swapbacked);
	folio_set_flag(folio, PG_uptodate);
	SetPageAnonExclusive(&folio->page);
	folio->page.mapping = vma->anon_vma;
	folio->page.index = vma_linear_index(vma, addr);
}

/* The new entry mapping @folio (first page pfn @pfn) at PTE or PMD level. */
static bool hole_entry(struct folio *folio, struct vm_area_struct *vma,
		       bool pmd, pte_t *entry)
{
	unsigned long pfn = folio_pfn(folio);
	bool write = vma->vm_flags & VM_WRITE;
	pte_t e;

	if (folio_is_device_private(folio)) {
		*entry = softleaf_to_pte(make_device_private_entry(pfn, write));
		return true;
	}
	if (folio_is_zone_device(folio) && !folio_is_device_coherent(folio))
		return false;
	e = pmd ? pfn_pmd_leaf(pfn, _PAGE_YOUNG) : pfn_pte(pfn, _PAGE_YOUNG);
	if (write)
		e = pte_mkwrite(pte_mkdirty(e));
	if (!(vma->vm_flags & (VM_READ | VM_WRITE | VM_EXEC)))
		e = pte_set_flags(pte_wrprotect(e), _PAGE_PROTNONE);
	*entry = e;
	return true;
}

/* Insert a PMD-sized destination into a PMD-aligned hole. */
static bool insert_pmd(struct migrate_vma *migrate, unsigned long addr,
		       struct folio *folio)
{
	struct vm_area_struct *vma = migrate->vma;
	struct mm_struct *mm = vma->vm_mm;
	struct page *pgtable;
	pud_t *pud;
	pmd_t *pmd, orig;
	pte_t entry;

	if (folio_order(folio) != PMD_ORDER || !IS_ALIGNED(addr, PMD_SIZE) ||
	    addr < vma->vm_start || addr + PMD_SIZE > vma->vm_end)
		return false;
	if (!hole_entry(folio, vma, true, &entry))
		return false;
	pud = pud_alloc(mm, pgd_offset(mm, addr), addr);
	pmd = pud ? pmd_alloc(mm, pud, addr) : NULL;
	if (!pmd || (!pte_none(ptep_get(pmd)) &&
		     !is_huge_zero_pmd(mm->machine, ptep_get(pmd))))
		return false;
	pgtable = pt_frame_alloc(mm);
	if (!pgtable)
		return false;
	anon_folio_setup(folio, vma, addr);
	folio_set_flag(folio, PG_large_rmappable);
	spin_lock(&mm->page_table_lock);
	orig = ptep_get(pmd);
	if ((!pte_none(orig) && !is_huge_zero_pmd(mm->machine, orig)) ||
	    !atomic_load(&mm->mm_users)) {
		spin_unlock(&mm->page_table_lock);
		pt_frame_free(mm, pgtable);
		return false;
	}
	if (pte_none(orig)) {
		pgtable_trans_huge_deposit(mm, pmd, pgtable);
	} else {
		/* The huge zero leaf's table serves the new leaf. */
		pt_frame_free(mm, pgtable);
		ptep_get_and_clear(pmd);
		flush_tlb_range(mm, addr, addr + PMD_SIZE);
	}
	folio_get(folio);
	folio_add_pmd_rmap(folio);
	set_pte(pmd, entry);
	spin_unlock(&mm->page_table_lock);
	count_stat(HETMM_STAT_migrate_folio_large);
	return true;
}

/*
 * migrate_vma_insert_page - map the destination of a hole (or zero-page)
 * entry; clears MIGRATE in *@src on failure (a CPU fault won the race, no
 * memory for tables, a non-anonymous VMA, an unsuitable destination).
 */
static void migrate_vma_insert_page(struct migrate_vma *migrate,
				    unsigned long addr, unsigned long *dst,
				    unsigned long *src)
{
	struct vm_area_struct *vma = migrate->vma;
	struct mm_struct *mm = vma->vm_mm;
	struct page *page = migrate_pfn_to_page(mm->machine, *dst);
	struct folio *folio;
	spinlock_t *ptl;
	pud_t *pud;
	pmd_t *pmd;
	pte_t *pte, orig, entry;

	if (!page || !vma_is_anonymous(vma))
		goto abort;
	folio = page_folio(page);
	if (*dst & MIGRATE_PFN_COMPOUND) {
		if (!(*src & MIGRATE_PFN_COMPOUND) ||
		    !insert_pmd(migrate, addr, folio))
			goto abort;
		count_stat_n(HETMM_STAT_migrate_hole_fill, HPAGE_PMD_NR);
		return;
	}
	if (folio_test_large(folio) || (*src & MIGRATE_PFN_COMPOUND))
		goto abort;
	if (!hole_entry(folio, vma, false, &entry))
		goto abort;
	pud = pud_alloc(mm, pgd_offset(mm, addr), addr);
	pmd = pud ? pmd_alloc(mm, pud, addr) : NULL;
	if (!pmd)
		goto abort;
	/* The huge zero leaf gives way to zero-page PTEs, one of which this
	 * replaces; any other leaf or softleaf PMD is somebody's. */
	if (is_huge_zero_pmd(mm->machine, ptep_get(pmd)))
		split_huge_pmd(vma, pmd, addr);
	if (!pte_none(ptep_get(pmd)) && !pmd_table(ptep_get(pmd)))
		goto abort;
	if (__pte_alloc(mm, pmd))
		goto abort;
	anon_folio_setup(folio, vma, addr);
	pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	if (!pte)
		goto abort;
	orig = ptep_get(pte);
	if (!atomic_load(&mm->mm_users) ||
	    (!pte_none(orig) &&
	     !(pte_present(orig) && pte_special(orig) &&
	       is_zero_page(pfn_to_page(mm->machine, pte_pfn(orig)))))) {
		spin_unlock(ptl);
		goto abort;
	}
	folio_get(folio); /* the mapping's */
	page_add_pte_rmap(page);
	if (!pte_none(orig))
		ptep_clear_flush(mm, addr, pte);
	set_pte(pte, entry);
	spin_unlock(ptl);
	count_stat(HETMM_STAT_migrate_hole_fill);
	return;
abort:
	*src &= ~MIGRATE_PFN_MIGRATE;
	count_stat(HETMM_STAT_migrate_fail);
}

/*
 * The PMD-sized source folio of entry @i is unmapped and locked; its
 * destination is small pages. Split its PMD migration entries into PTE
 * ones, split the folio into 512 locked, referenced folios and expand
 * src[i..i+511]. Return: 0 or -EBUSY (nothing of the folio split).
 */
static int split_unmapped_source(struct migrate_vma *migrate,
				 unsigned long *src, unsigned long i,
				 struct folio *folio)
{
	struct page *fp = migrate->fault_page;
	bool inside = fp && page_folio(fp) == folio;
	struct split_ctl ctl = {
		.held = 1 + (inside ? 1 : 0),
		.base = 1,
		.ref_page = inside ? fp : NULL,
		.extra = inside ? 1 : 0,
		.lock_all = true,
	};
	unsigned long flags =
		src[i] & (MIGRATE_PFN_MIGRATE | MIGRATE_PFN_WRITE);
	unsigned long pfn = folio_pfn(folio), nr = folio_nr_pages(folio);

	if (i + nr > migrate->npages)
		return -EBUSY;
	split_pmd_entries(folio, true);
	if (split_large_folio(folio, &ctl))
		return -EBUSY;
	for (unsigned long j = 0; j < nr; j++)
		src[i + j] = migrate_pfn(pfn + j) | flags;
	return 0;
}

static void __migrate_device_pages(struct hetmm_machine *m, unsigned long *src,
				   unsigned long *dst, unsigned long npages,
				   struct migrate_vma *migrate)
{
	struct mmu_notifier_range range;
	bool notified = false;
	unsigned long nr;

	for (unsigned long i = 0; i < npages; i += nr) {
		struct page *newpage = migrate_pfn_to_page(m, dst[i]);
		struct page *page = migrate_pfn_to_page(m, src[i]);
		struct folio *folio, *newfolio;
		struct page *fp;

		nr = 1;
		if (!(src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		if (!newpage) {
			src[i] &= ~MIGRATE_PFN_MIGRATE;
			count_stat(HETMM_STAT_migrate_fail);
			if (page && (src[i] & MIGRATE_PFN_COMPOUND))
				nr = folio_nr_pages(page_folio(page));
			continue;
		}
		if (!page) {
			unsigned long addr;

			if (!migrate) {
				src[i] &= ~MIGRATE_PFN_MIGRATE;
				count_stat(HETMM_STAT_migrate_fail);
				continue;
			}
			addr = migrate->start + i * PAGE_SIZE;
			if (!notified) {
				notified = true;
				mmu_notifier_range_init_owner(
					&range, MMU_NOTIFY_MIGRATE, 0,
					migrate->vma->vm_mm, addr, migrate->end,
					migrate->pgmap_owner);
				mmu_notifier_invalidate_range_start(&range);
			}
			if ((src[i] & MIGRATE_PFN_COMPOUND) &&
			    !(dst[i] & MIGRATE_PFN_COMPOUND)) {
				/* A 2 MiB hole filled with small pages. */
				nr = min(HPAGE_PMD_NR, npages - i);
				src[i] &= ~MIGRATE_PFN_COMPOUND;
				for (unsigned long j = 0; j < nr; j++) {
					src[i + j] |= MIGRATE_PFN_MIGRATE;
					migrate_vma_insert_page(
						migrate, addr + j * PAGE_SIZE,
						&dst[i + j], &src[i + j]);
				}
				continue;
			}
			migrate_vma_insert_page(migrate, addr, &dst[i],
						&src[i]);
			if (src[i] & MIGRATE_PFN_COMPOUND)
				nr = min(HPAGE_PMD_NR, npages - i);
			continue;
		}
		folio = page_folio(page);
		newfolio = page_folio(newpage);
		if (src[i] & MIGRATE_PFN_COMPOUND) {
			nr = folio_nr_pages(folio);
			if (!(dst[i] & MIGRATE_PFN_COMPOUND)) {
				if (!migrate ||
				    split_unmapped_source(migrate, src, i,
							  folio)) {
					src[i] &= ~MIGRATE_PFN_MIGRATE;
					count_stat(HETMM_STAT_migrate_fail);
					continue;
				}
				/* Go on with the first page; the rest come
				 * in the following iterations. */
				nr = 1;
				folio = page_folio(page);
			}
		} else if (dst[i] & MIGRATE_PFN_COMPOUND) {
			src[i] &= ~MIGRATE_PFN_MIGRATE;
			count_stat(HETMM_STAT_migrate_fail);
			continue;
		}
		if (folio_nr_pages(newfolio) != folio_nr_pages(folio) ||
		    &newfolio->page != newpage) {
			src[i] &= ~MIGRATE_PFN_MIGRATE;
			count_stat(HETMM_STAT_migrate_fail);
			continue;
		}
		if (folio_is_zone_device(newfolio)) {
			/* Only anonymous memory goes to the device. */
			if ((!folio_is_device_private(newfolio) &&
			     !folio_is_device_coherent(newfolio)) ||
			    folio_is_file(folio)) {
				src[i] &= ~MIGRATE_PFN_MIGRATE;
				count_stat(HETMM_STAT_migrate_fail);
				continue;
			}
		} else if (folio_is_file(folio)) {
			/* No page-cache replacement is modelled. */
			src[i] &= ~MIGRATE_PFN_MIGRATE;
			count_stat(HETMM_STAT_migrate_fail);
			continue;
		}
		fp = migrate ? migrate->fault_page : NULL;
		if (migrate_folio_state(newfolio, folio,
					fp && page_folio(fp) == folio)) {
			src[i] &= ~MIGRATE_PFN_MIGRATE;
			count_stat(HETMM_STAT_migrate_fail);
			continue;
		}
		count_migration(folio, newfolio);
	}
	if (notified)
		mmu_notifier_invalidate_range_end(&range);
}

void migrate_vma_pages(struct migrate_vma *args)
{
	mmap_assert_locked(args->vma->vm_mm);
	__migrate_device_pages(args->vma->vm_mm->machine, args->src, args->dst,
			       args->npages, args);
}

void migrate_device_pages(struct hetmm_machine *m, unsigned long *src_pfns,
			  unsigned long *dst_pfns, unsigned long npages)
{
	__migrate_device_pages(m, src_pfns, dst_pfns, npages, NULL);
}

/* --------------------------------------------------------------- finalize */

static void release_dst(struct hetmm_machine *m, unsigned long mpfn)
{
	struct page *page = migrate_pfn_to_page(m, mpfn);

	if (page) {
		folio_unlock(page_folio(page));
		folio_put(page_folio(page));
	}
}

static void __migrate_device_finalize(struct hetmm_machine *m,
				      unsigned long *src, unsigned long *dst,
				      unsigned long npages,
				      struct page *fault_page, bool novma)
{
	unsigned long nr;

	for (unsigned long i = 0; i < npages; i += nr) {
		struct page *page = migrate_pfn_to_page(m, src[i]);
		struct page *newpage = migrate_pfn_to_page(m, dst[i]);
		struct folio *folio, *newfolio;
		struct anon_vma *av;

		nr = 1;
		if (!page) {
			release_dst(m, dst[i]);
			continue;
		}
		folio = page_folio(page);
		if (src[i] & MIGRATE_PFN_COMPOUND)
			nr = min(folio_nr_pages(folio), npages - i);
		/*
		 * migrate_*_pages() hands every committed destination the
		 * source's mapping; a destination without it was never
		 * committed (a driver that finalizes without calling
		 * migrate_*_pages() after filling dst). Mapping it would
		 * lose the data and the anon identity: restore the source.
		 */
		if ((src[i] & MIGRATE_PFN_MIGRATE) && newpage &&
		    HETMM_WARN_ON_ONCE(page_folio(newpage)->page.mapping !=
				       folio->page.mapping))
			src[i] &= ~MIGRATE_PFN_MIGRATE;
		if (!(src[i] & MIGRATE_PFN_MIGRATE) || !newpage) {
			release_dst(m, dst[i]);
			newfolio = folio;
		} else {
			newfolio = page_folio(newpage);
		}
		/* Small destinations a failed large source did not use. */
		for (unsigned long j = 1; j < nr; j++)
			release_dst(m, dst[i + j]);
		av = novma ? pinned_anon_vma(folio) : NULL;
		remove_migration_ptes(folio, newfolio);
		if (!fault_page || folio != page_folio(fault_page))
			folio_unlock(folio);
		folio_put(folio); /* the migration's */
		if (newfolio != folio) {
			folio_unlock(newfolio);
			folio_put(newfolio); /* the allocation's */
		}
		if (av)
			anon_vma_put(av);
	}
}

void migrate_vma_finalize(struct migrate_vma *args)
{
	__migrate_device_finalize(args->vma->vm_mm->machine, args->src,
				  args->dst, args->npages, args->fault_page,
				  false);
}

void migrate_device_finalize(struct hetmm_machine *m, unsigned long *src_pfns,
			     unsigned long *dst_pfns, unsigned long npages)
{
	__migrate_device_finalize(m, src_pfns, dst_pfns, npages, NULL, true);
}

/* ------------------------------------------------- eviction without a VMA */

/*
 * Take the folio at @pfn for migration: referenced only if it is in use
 * (refcount > 0) and @pfn is not a tail page, then trylocked.
 * Return: the folio (locked, referenced) or NULL.
 */
static struct folio *collect_pfn(struct hetmm_machine *m, unsigned long pfn)
{
	struct page *page;
	struct folio *folio;

	if (pfn >= m->max_pfn)
		return NULL;
	page = pfn_to_page(m, pfn);
	if (PageTail(page))
		return NULL;
	folio = page_folio(page);
	if (!folio_try_get(folio))
		return NULL;
	/* It may have become part of a larger folio meanwhile. */
	if (PageTail(page) || page_folio(page) != folio) {
		folio_put(folio);
		return NULL;
	}
	if (!folio_trylock(folio)) {
		folio_put(folio);
		count_stat(HETMM_STAT_migrate_skip);
		return NULL;
	}
	if (!pin_anon_vma(folio)) {
		folio_unlock(folio);
		folio_put(folio);
		count_stat(HETMM_STAT_migrate_skip);
		return NULL;
	}
	count_stat(HETMM_STAT_migrate_collect);
	return folio;
}

int migrate_device_range(unsigned long *src_pfns, struct hetmm_machine *m,
			 unsigned long start_pfn, unsigned long npages)
{
	unsigned long nr;

	for (unsigned long i = 0; i < npages; i += nr) {
		struct folio *folio = collect_pfn(m, start_pfn + i);

		nr = 1;
		src_pfns[i] = 0;
		if (!folio)
			continue;
		src_pfns[i] = migrate_pfn(start_pfn + i) | MIGRATE_PFN_MIGRATE;
		if (folio_test_large(folio)) {
			src_pfns[i] |= MIGRATE_PFN_COMPOUND;
			nr = min(folio_nr_pages(folio), npages - i);
			for (unsigned long j = 1; j < nr; j++)
				src_pfns[i + j] = 0;
		}
	}
	migrate_device_unmap(m, src_pfns, npages, NULL, true);
	return 0;
}

int migrate_device_pfns(unsigned long *src_pfns, struct hetmm_machine *m,
			unsigned long npages)
{
	unsigned long nr;

	for (unsigned long i = 0; i < npages; i += nr) {
		unsigned long pfn = src_pfns[i];
		struct folio *folio = collect_pfn(m, pfn);
		unsigned long j;

		nr = 1;
		src_pfns[i] = 0;
		if (!folio)
			continue;
		if (folio_test_large(folio)) {
			/* The tails must follow their head in the list. */
			nr = folio_nr_pages(folio);
			for (j = 1; j < nr && i + j < npages; j++)
				if (src_pfns[i + j] != pfn + j)
					break;
			if (j < nr) {
				struct anon_vma *av = pinned_anon_vma(folio);

				folio_unlock(folio);
				folio_put(folio);
				if (av)
					anon_vma_put(av);
				count_stat(HETMM_STAT_migrate_skip);
				nr = 1;
				continue;
			}
			for (j = 1; j < nr; j++)
				src_pfns[i + j] = 0;
			src_pfns[i] = migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE |
				      MIGRATE_PFN_COMPOUND;
			continue;
		}
		src_pfns[i] = migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE;
	}
	migrate_device_unmap(m, src_pfns, npages, NULL, true);
	return 0;
}

/*
 * migrate_device_coherent_folio - the caller hands over one reference to
 * @folio (it is consumed whatever the outcome, as in the kernel, where the
 * caller converts its pin into that reference first).
 */
int migrate_device_coherent_folio(struct folio *folio)
{
	struct hetmm_machine *m;
	unsigned long src, dst = 0;
	struct folio *dfolio;

	if (!folio)
		return -EBUSY;
	if (HETMM_WARN_ON_ONCE(!folio_is_device_coherent(folio) ||
			       folio_test_large(folio))) {
		folio_put(folio);
		return -EBUSY;
	}
	m = folio_machine(folio);
	folio_lock(folio);
	if (!pin_anon_vma(folio)) {
		folio_unlock(folio);
		folio_put(folio);
		return -EBUSY;
	}
	count_stat(HETMM_STAT_migrate_collect);
	src = migrate_pfn(folio_pfn(folio)) | MIGRATE_PFN_MIGRATE;
	migrate_device_unmap(m, &src, 1, NULL, true);
	if (!(src & MIGRATE_PFN_MIGRATE))
		return -EBUSY;
	/* Long-term pins come here: not back into movable memory. */
	dfolio = folio_alloc(m, 0, 0);
	if (dfolio) {
		folio_lock(dfolio);
		dst = migrate_pfn(folio_pfn(dfolio));
	}
	migrate_device_pages(m, &src, &dst, 1);
	if (src & MIGRATE_PFN_MIGRATE)
		copy_highpage(&dfolio->page, &folio->page);
	migrate_device_finalize(m, &src, &dst, 1);
	return (src & MIGRATE_PFN_MIGRATE) ? 0 : -EBUSY;
}
