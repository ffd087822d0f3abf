/* SPDX-License-Identifier: MIT */
/*
 * hetmm/rmap.h - reverse mapping: from a folio to every PTE that maps it.
 *
 * Anonymous folios: page.mapping points at the anon_vma of the VMA that
 * created them and page.index is their linear index (vm_pgoff + offset in
 * pages). fork puts the child's VMAs on the parent's anon_vma, so one list
 * holds every VMA of every process that may map the folio; the address in
 * each is vm_start + (index - vm_pgoff) pages (mremap keeps vm_pgoff, so
 * moved pages keep their index).
 * File folios: page.mapping is the address_space; its i_mmap interval tree
 * holds every VMA mapping the file, keyed by file page offset.
 *
 * Locking: anon_vma->rwsem (write: list changes, under mmap_lock write;
 * read: walks) and i_mmap_rwsem nest inside mmap_lock and the folio lock,
 * and outside the PTE locks:
 *   mmap_lock -> folio lock -> anon_vma rwsem / i_mmap_rwsem -> PTE lock
 * A walker holding the anon_vma or i_mmap lock may read the page tables of
 * the VMAs it finds without their mmap_lock: those VMAs stay linked, and
 * page-table frames are RCU-freed (the walk runs under rcu_read_lock()).
 */
#ifndef HETMM_RMAP_H
#define HETMM_RMAP_H

#include "mm.h"

struct anon_vma {
	atomic_int refcount;
	struct rw_semaphore rwsem;
	struct list_head vmas; /* vm_area_struct.anon_vma_node */
};

struct anon_vma *anon_vma_alloc(void);
void anon_vma_get(struct anon_vma *av);
void anon_vma_put(struct anon_vma *av);

/**
 * struct rmap_walk_control - what rmap_walk() does at each mapping.
 * @rmap_one: called for each VMA that may map any page of the folio, with
 *            the address the folio's first page would have in it (for a
 *            large folio that the VMA covers only partly, outside
 *            [vm_start, vm_end): callbacks clamp); return false to stop.
 * @arg: passed through.
 */
struct rmap_walk_control {
	bool (*rmap_one)(struct folio *folio, struct vm_area_struct *vma,
			 unsigned long addr, void *arg);
	void *arg;
};

/*
 * rmap_walk - call rwc->rmap_one for every VMA that may map @folio.
 * Context: the folio locked (or otherwise kept from being freed).
 */
void rmap_walk(struct folio *folio, const struct rmap_walk_control *rwc);

/*
 * rmap_count_ptes - count the PTEs currently mapping @folio in every
 * process, through rmap (tests and the checker compare it with mapcount).
 */
int rmap_count_ptes(struct folio *folio);

#endif /* HETMM_RMAP_H */
