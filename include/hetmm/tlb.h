/* SPDX-License-Identifier: MIT */
/*
 * hetmm/tlb.h - the software MMU's TLBs, shootdowns and the mmu_gather.
 *
 * Each simulated CPU has a direct-mapped TLB of HETMM_TLB_ENTRIES entries,
 * indexed by virtual page number and tagged by (asid, vpn), with separate
 * read and write permission and the host address of the page's bytes. A
 * CPU access that hits does not touch mmap_lock or the page tables; a miss
 * walks the page tables and fills the entry under the PTE lock.
 *
 * Locking and invariants:
 *   PTE lock -> cpu->lock (fill and flush both nest inside the PTE lock
 *   when they run under one; a hit takes only cpu->lock).
 *   - An entry is filled only from a present PTE that permits the access,
 *     under that PTE's lock: read entries from young PTEs, write entries
 *     from writable, dirty PTEs (the fill sets young/dirty first, as a
 *     hardware walker sets the A/D bits).
 *   - Whoever removes or downgrades a PTE flushes the range (on every CPU
 *     in mm->cpumask) before its caller sees the change, and frees the
 *     pages the PTEs held only after that flush (struct mmu_gather). A CPU
 *     access copies bytes with cpu->lock held, so a flush also waits for
 *     accesses in flight: after flush_tlb_range() returns no CPU touches
 *     the old page through the old entry (the IPI-and-wait of a shootdown).
 *   - hetmm_check() verifies every valid entry against its mm's current
 *     page tables (tlb_check).
 */
#ifndef HETMM_TLB_H
#define HETMM_TLB_H

#include "mm.h"

#define HETMM_TLB_ENTRIES 256
/* A range flush longer than this flushes the whole asid instead. */
#define HETMM_TLB_FLUSH_CEILING 64

#define TLB_PERM_READ 1u
#define TLB_PERM_WRITE 2u

struct tlb_entry {
	unsigned long vpn;  /* virtual page number; valid iff perm != 0 */
	unsigned int asid;
	unsigned int perm;  /* TLB_PERM_* */
	unsigned char *host; /* bytes of the page; NULL on metadata-only */
	unsigned long pfn;
};

struct hetmm_cpu {
	spinlock_t lock;
	unsigned int id;
	struct tlb_entry tlb[HETMM_TLB_ENTRIES];
} __attribute__((aligned(64)));

/* The simulated CPUs of @m (the mm layer's machine state). */
struct hetmm_cpu *hetmm_machine_cpu(struct hetmm_machine *m, unsigned int cpu);

static inline struct tlb_entry *tlb_slot(struct hetmm_cpu *c, unsigned long vpn)
{
	return &c->tlb[vpn & (HETMM_TLB_ENTRIES - 1)];
}

/* Fill (or upgrade) the entry for @addr. Context: the PTE lock held. */
void tlb_fill(struct mm_struct *mm, struct hetmm_cpu *c, unsigned long addr,
	      unsigned long pfn, unsigned char *host, unsigned int perm);

/*
 * flush_tlb_range - drop every entry of @mm for [@start, @end) on every
 * CPU that may hold one, waiting for accesses in flight through them.
 * Context: any; may be called with a PTE lock held.
 */
void flush_tlb_range(struct mm_struct *mm, unsigned long start,
		     unsigned long end);
void flush_tlb_mm(struct mm_struct *mm);
static inline void flush_tlb_page(struct mm_struct *mm, unsigned long addr)
{
	flush_tlb_range(mm, addr & PAGE_MASK, (addr & PAGE_MASK) + PAGE_SIZE);
}

/* Clear a PTE and flush it from every TLB; returns the old entry. */
pte_t ptep_clear_flush(struct mm_struct *mm, unsigned long addr, pte_t *ptep);

/*
 * struct mmu_gather - pages unmapped by a zap, freed only after the TLB
 * flush of the range they were mapped in (tlb_finish_mmu()).
 */
#define MMU_GATHER_BATCH 128
struct mmu_gather {
	struct mm_struct *mm;
	unsigned long start, end; /* range with entries removed so far */
	unsigned int nr;
	struct page *pages[MMU_GATHER_BATCH];
};

void tlb_gather_mmu(struct mmu_gather *tlb, struct mm_struct *mm);
/* Note that a PTE at @addr was removed (the range to flush grows). */
void tlb_track(struct mmu_gather *tlb, unsigned long addr, unsigned long size);
/*
 * Queue one reference to @page to be dropped after the flush. If the
 * batch is full the queued range is flushed and freed now.
 * Context: may be called with a PTE lock held.
 */
void tlb_remove_page(struct mmu_gather *tlb, struct page *page);
/* Flush the tracked range and drop every queued reference. */
void tlb_finish_mmu(struct mmu_gather *tlb);

#endif /* HETMM_TLB_H */
