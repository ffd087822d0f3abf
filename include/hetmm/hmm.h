/* SPDX-License-Identifier: MIT */
/*
 * hetmm/hmm.h - mirroring a process address space: hmm_range_fault().
 *
 * A driver snapshots (and optionally faults in) the CPU page tables of a
 * virtual range into an array of "hmm pfns", one unsigned long per 4 KiB
 * page, and programs its own page table from it under the interval
 * notifier protocol (spec section 2.8):
 *
 *   again:
 *     range.notifier_seq = mmu_interval_read_begin(range.notifier);
 *     mmap_read_lock(mm);
 *     ret = hmm_range_fault(&range);
 *     mmap_read_unlock(mm);
 *     if (ret == -EBUSY) goto again;       (with a time budget)
 *     lock(driver->update_lock);
 *     if (mmu_interval_read_retry(range.notifier, range.notifier_seq)) {
 *             unlock(...); goto again;
 *     }
 *     ... program the device page table from range.hmm_pfns ...
 *     unlock(driver->update_lock);
 *
 * The returned pfns carry no page references: they are valid until the
 * next invalidation of the interval.
 *
 * Entry format (64 bits): the pfn in the low bits (below bit 40 here), then
 *   63 HMM_PFN_VALID      (in: HMM_PFN_REQ_FAULT)
 *   62 HMM_PFN_WRITE      (in: HMM_PFN_REQ_WRITE)
 *   61 HMM_PFN_ERROR
 *   60 HMM_PFN_DMA_MAPPED, 59 HMM_PFN_P2PDMA, 58 HMM_PFN_P2PDMA_BUS (sticky:
 *      kept from input to output, never set by hmm_range_fault)
 *   57..53 order of the CPU mapping covering the page (0, 9 PMD, 18 PUD)
 *   52 HMM_PFN_ALLOW_P2P  (in, hetmm, seed 002: a peer's device-private page
 *                          may be reported in place instead of faulted)
 *   51 HMM_PFN_P2P        (out, hetmm: this VALID entry is a peer device's
 *                          private page reached in place)
 *
 * Locking: the caller holds mmap_lock (read or write) across the call and a
 * reference on the mm (mmget_not_zero). hmm_range_fault takes page-table
 * locks and may run the fault handler, which may call a pgmap's
 * migrate_to_ram().
 */
#ifndef HETMM_HMM_H
#define HETMM_HMM_H

#include <stdint.h>

#include "compiler.h"
#include "memremap.h"
#include "mmu_notifier.h"
#include "phys.h"

#define HMM_PFN_VALID (1UL << 63)
#define HMM_PFN_WRITE (1UL << 62)
#define HMM_PFN_ERROR (1UL << 61)
#define HMM_PFN_DMA_MAPPED (1UL << 60)
#define HMM_PFN_P2PDMA (1UL << 59)
#define HMM_PFN_P2PDMA_BUS (1UL << 58)
#define HMM_PFN_ORDER_SHIFT 53
#define HMM_PFN_ORDER_BITS 5
#define HMM_PFN_ORDER_MASK (((1UL << HMM_PFN_ORDER_BITS) - 1) << HMM_PFN_ORDER_SHIFT)
#define HMM_PFN_ALLOW_P2P (1UL << 52)
#define HMM_PFN_P2P (1UL << 51)

/* Flags kept from the input entry into the output. */
#define HMM_PFN_INOUT_FLAGS \
	(HMM_PFN_DMA_MAPPED | HMM_PFN_P2PDMA | HMM_PFN_P2PDMA_BUS)
/* Every non-pfn bit. */
#define HMM_PFN_FLAGS                                                      \
	(HMM_PFN_VALID | HMM_PFN_WRITE | HMM_PFN_ERROR | HMM_PFN_INOUT_FLAGS | \
	 HMM_PFN_ORDER_MASK | HMM_PFN_ALLOW_P2P | HMM_PFN_P2P)

#define HMM_PFN_REQ_FAULT HMM_PFN_VALID
#define HMM_PFN_REQ_WRITE HMM_PFN_WRITE

/* Suggested bound, in ms, for a driver's -EBUSY retry loop. */
#define HMM_RANGE_DEFAULT_TIMEOUT 1000

static_assert((HMM_PFN_FLAGS & ((1UL << 40) - 1)) == 0,
	      "hmm pfn flags stay above any pfn of a 2^52-byte machine");

/**
 * struct hmm_range - one hmm_range_fault() request.
 * @notifier: the interval notifier covering the range (its mm is walked).
 * @notifier_seq: from mmu_interval_read_begin(); checked every pass.
 * @start, @end: page-aligned virtual range, @end exclusive.
 * @hmm_pfns: (end - start) >> PAGE_SHIFT entries: in = per-page request,
 *            out = result (see the file comment).
 * @default_flags: request flags for every page.
 * @pfn_flags_mask: which bits of each input entry are honoured.
 * @dev_private_owner: device-private pages of this owner are reported,
 *                     not faulted.
 * @p2p_addrs: optional (NULL = not wanted): for each HMM_PFN_P2P entry,
 *             the device address the pgmap's p2p_addr op returned; other
 *             entries are left untouched.
 */
struct hmm_range {
	struct mmu_interval_notifier *notifier;
	unsigned long notifier_seq;
	unsigned long start;
	unsigned long end;
	unsigned long *hmm_pfns;
	unsigned long default_flags;
	unsigned long pfn_flags_mask;
	void *dev_private_owner;
	uint64_t *p2p_addrs;
};

/*
 * hmm_range_fault - fill range->hmm_pfns, faulting pages in as requested.
 * Return: 0; -EBUSY if the notifier sequence changed (restart from
 * mmu_interval_read_begin); -EFAULT if a requested page cannot be made
 * valid (no VMA, unreadable/VM_IO/VM_PFNMAP VMA, special PTE, poison, fault
 * error); -EPERM for a write request to a VMA without VM_WRITE; -ENOMEM
 * when the fault handler runs out of memory (the mm tree's behaviour);
 * -EINVAL for a misaligned or empty range.
 * Entries before the point reached hold output, later ones input.
 */
int hmm_range_fault(struct hmm_range *range);

static inline unsigned long hmm_pfn_to_pfn(unsigned long hmm_pfn)
{
	return hmm_pfn & ~HMM_PFN_FLAGS;
}

static inline struct page *hmm_pfn_to_page(struct hetmm_machine *m,
					   unsigned long hmm_pfn)
{
	return pfn_to_page(m, hmm_pfn_to_pfn(hmm_pfn));
}

static inline uint64_t hmm_pfn_to_phys(unsigned long hmm_pfn)
{
	return (uint64_t)hmm_pfn_to_pfn(hmm_pfn) << PAGE_SHIFT;
}

static inline unsigned int hmm_pfn_to_map_order(unsigned long hmm_pfn)
{
	return (hmm_pfn >> HMM_PFN_ORDER_SHIFT) &
	       ((1UL << HMM_PFN_ORDER_BITS) - 1);
}

#endif /* HETMM_HMM_H */
