/* SPDX-License-Identifier: MIT */
/*
 * hetmm/migrate.h - migrating pages between system memory and device
 * memory (the kernel's mm/migrate_device.c), device-exclusive access, and
 * the rmap side of migration (try_to_migrate / remove_migration_ptes).
 *
 * The three-step protocol, with mmap_lock held for read throughout:
 *
 *   struct migrate_vma args = { .vma, .start, .end, .src, .dst,
 *                               .pgmap_owner, .flags = SELECT_* };
 *   migrate_vma_setup(&args);     collect + unmap: every selected page is
 *                                 locked, isolated, and replaced by
 *                                 migration entries everywhere
 *   for each src[i] & MIGRATE_PFN_MIGRATE:
 *           allocate a locked destination, copy, dst[i] = migrate_pfn(..)
 *   migrate_vma_pages(&args);     commit: check references, move mapping
 *                                 state, insert pages into holes
 *   ... the driver updates its page table ...
 *   migrate_vma_finalize(&args);  migration entries become mappings of the
 *                                 new page (or the old one again), pages
 *                                 unlocked, the loser freed
 *
 * Entry format of src/dst (one unsigned long per page):
 *   pfn << MIGRATE_PFN_SHIFT | MIGRATE_PFN_VALID | MIGRATE | WRITE | COMPOUND
 *
 * Locking: mmap_lock (read) across setup..finalize (for the vma-less
 * migrate_device_* API: none). Source folios are only trylocked (a
 * concurrent migration skips them rather than deadlocks); folio lock ->
 * PTE lock. Migration entries exist only while their folio is locked by
 * the migrating thread; CPU faults and hmm_range_fault meeting one wait
 * for the unlock (migration_entry_wait) and retry.
 */
#ifndef HETMM_MIGRATE_H
#define HETMM_MIGRATE_H

#include "memremap.h"
#include "mm_types.h"
#include "page.h"
#include "phys.h"

#define MIGRATE_PFN_VALID (1UL << 0)
#define MIGRATE_PFN_MIGRATE (1UL << 1)
#define MIGRATE_PFN_WRITE (1UL << 3)
#define MIGRATE_PFN_COMPOUND (1UL << 4)
#define MIGRATE_PFN_SHIFT 6

static inline unsigned long migrate_pfn(unsigned long pfn)
{
	return (pfn << MIGRATE_PFN_SHIFT) | MIGRATE_PFN_VALID;
}

static inline unsigned long migrate_pfn_to_pfn(unsigned long mpfn)
{
	return mpfn >> MIGRATE_PFN_SHIFT;
}

static inline struct page *migrate_pfn_to_page(struct hetmm_machine *m,
					       unsigned long mpfn)
{
	if (!(mpfn & MIGRATE_PFN_VALID))
		return NULL;
	return pfn_to_page(m, mpfn >> MIGRATE_PFN_SHIFT);
}

enum migrate_vma_direction {
	MIGRATE_VMA_SELECT_SYSTEM = 1 << 0,
	MIGRATE_VMA_SELECT_DEVICE_PRIVATE = 1 << 1,
	MIGRATE_VMA_SELECT_DEVICE_COHERENT = 1 << 2,
	MIGRATE_VMA_SELECT_COMPOUND = 1 << 3,
};

/**
 * struct migrate_vma - one migrate_vma_setup() .. finalize() transaction.
 * @vma: the VMA; [@start, @end) must lie inside it.
 * @src, @dst: (end - start) >> PAGE_SHIFT entries each.
 * @cpages: out: entries still migrating after setup.
 * @npages: out: entries produced.
 * @pgmap_owner: selects device pages of this owner; the notifier owner.
 * @flags: enum migrate_vma_direction bits.
 * @fault_page: from migrate_to_ram: the faulting device page (locked and
 *              referenced by the caller).
 */
struct migrate_vma {
	struct vm_area_struct *vma;
	unsigned long *dst;
	unsigned long *src;
	unsigned long cpages;
	unsigned long npages;
	unsigned long start;
	unsigned long end;
	void *pgmap_owner;
	unsigned long flags;
	struct page *fault_page;
};

/*
 * migrate_vma_setup - collect and unmap the pages to migrate.
 * Return: 0 (even when nothing migrates), or -EINVAL (no vma; hugetlb,
 * VM_IO/VM_PFNMAP/VM_MIXEDMAP/VM_DONTEXPAND vma; empty range; range outside
 * the vma; NULL src/dst; fault_page not device-private or not locked).
 */
int migrate_vma_setup(struct migrate_vma *args);
void migrate_vma_pages(struct migrate_vma *args);
void migrate_vma_finalize(struct migrate_vma *args);

/*
 * Eviction without a VMA (device unbind, memory release): collect the
 * device pages at [@start_pfn, @start_pfn + @npages) (or the pfns listed in
 * @src_pfns) that are in service and not locked, and replace all their
 * mappings by migration entries. Always returns 0.
 */
int migrate_device_range(unsigned long *src_pfns, struct hetmm_machine *m,
			 unsigned long start_pfn, unsigned long npages);
int migrate_device_pfns(unsigned long *src_pfns, struct hetmm_machine *m,
			unsigned long npages);
void migrate_device_pages(struct hetmm_machine *m, unsigned long *src_pfns,
			  unsigned long *dst_pfns, unsigned long npages);
void migrate_device_finalize(struct hetmm_machine *m, unsigned long *src_pfns,
			     unsigned long *dst_pfns, unsigned long npages);
/*
 * migrate_device_coherent_folio - move one DEVICE_COHERENT folio to system
 * memory (for FOLL_LONGTERM pins). Return: 0 or -EBUSY.
 */
int migrate_device_coherent_folio(struct folio *folio);

/*
 * make_device_exclusive - replace the PTE mapping @addr by a
 * device-exclusive entry, so the device may access the page atomically
 * until the CPU touches it. Breaks COW first (FOLL_WRITE semantics) and
 * splits a PMD-mapped THP. Sends MMU_NOTIFY_EXCLUSIVE with @owner.
 * Return: the page, its folio locked and referenced (the driver unlocks and
 * puts it after mapping it); or ERR_PTR(-EOPNOTSUPP) for non-anonymous or
 * hugetlb memory, ERR_PTR(-EFAULT) / ERR_PTR(-EPERM) / ERR_PTR(-ENOMEM)
 * when the page cannot be faulted in writable.
 * Context: mmap_lock held for read.
 */
struct page *make_device_exclusive(struct mm_struct *mm, unsigned long addr,
				   void *owner, struct folio **foliop);

/*
 * The rmap side (src/migrate/rmap_migrate.c). try_to_migrate replaces every
 * mapping of the locked @folio (present PTEs, PMD leaves, device-private
 * entries) in every mm by migration entries, sending MMU_NOTIFY_CLEAR;
 * remove_migration_ptes turns every migration entry for @src into a mapping
 * of @dst (which may be @src).
 */
void try_to_migrate(struct folio *folio);
void remove_migration_ptes(struct folio *src, struct folio *dst);

struct address_space;

/*
 * migrate_folio - the kernel's migrate_folio() for memfs page cache: copy
 * @src's data into @dst, hand over the cache slot (folio_migrate_mapping()
 * in fs.h, which refuses while @src has references beyond the cache's and
 * the caller's one) and the folio flags. Both locked; @src unmapped.
 * Return: 0; -EAGAIN (unexpected references: nothing changed, try again);
 * -EIO (the copy failed); -EINVAL (not a cached file folio, or orders
 * differ).
 */
int migrate_folio(struct address_space *mapping, struct folio *dst,
		  struct folio *src);
/*
 * migrate_pagecache_folio - move the page-cache folio @src to the fresh
 * folio @dst (same order, no mapping, the caller's reference), as
 * migrate_pages() does for file memory: try_to_migrate() replaces every
 * mapping of @src in every process by migration entries, migrate_folio()
 * moves data, slot and flags, and remove_migration_ptes() maps @dst where
 * @src was (or @src again on failure). The caller holds both folio locks
 * and exactly one reference to @src (its isolation reference); on
 * success @src is out of the cache and is freed by the caller's put, and
 * @dst holds the cache's and the mappings' references besides the
 * caller's.
 * Return: 0 (also if @src was truncated meanwhile: nothing to move);
 * -EAGAIN (@src is still mapped or referenced elsewhere, e.g. pinned or
 * being read: nothing changed, retry); -EIO (copy failed); -EINVAL.
 * Context: mmap_lock may be held (for read); no i_rwsem, no other folio
 * lock of the file.
 */
int migrate_pagecache_folio(struct folio *dst, struct folio *src);

#endif /* HETMM_MIGRATE_H */
