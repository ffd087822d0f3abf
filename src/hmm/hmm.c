// SPDX-License-Identifier: MIT
/*
 * hmm.c - hmm_range_fault(): copy the CPU page tables of a virtual range
 * into a device driver's array of hmm pfns, faulting pages in on request
 * (spec section 2).
 *
 * Locking and invariants:
 *   mmap_lock (read or write; the caller holds it across the whole call)
 *     mm->page_table_lock    taken to decode a non-present PMD entry
 *                            (device-private or migration softleaf), so
 *                            the device page it names stays mapped while
 *                            we look at its pgmap
 *     PTE-table lock         a whole PTE table is decoded under it; a peer
 *                            pgmap's ops->p2p_addr() is called under it
 *                            (or under page_table_lock), so it must not
 *                            sleep
 *   PMD leaves (THP, hugetlb) are read with one atomic load and no lock:
 *   only their value is reported, no struct page is looked at.
 *   No page-table lock is held while the fault handler runs or while we
 *   sleep on a migration: the walk callbacks only record what has to be
 *   done and stop the walk with a private positive code
 *   (HMM_WALK_FAULT/HMM_WALK_MIGRATION); hmm_range_fault() does it, then
 *   walks again from the first entry not yet reported.
 *
 *   - Entries [range->start, last) hold output and entries [last, end)
 *     still hold the caller's request; a pass writes entries only at or
 *     after last, in address order, and leaves a block that must be
 *     faulted untouched (its requests are read again after the fault).
 *   - Output = (input & HMM_PFN_INOUT_FLAGS) | pfn | VALID/WRITE/ERROR/P2P
 *     | order bits. No page reference is taken: the result holds until
 *     the next invalidation of range->notifier, which the caller detects
 *     with mmu_interval_read_retry() under its own lock.
 *   - The notifier sequence is checked before every pass, so no pass runs
 *     after an invalidation of the interval (ours, such as a COW caused
 *     by a write fault, or anybody else's): -EBUSY.
 *   - Page tables change here only through handle_mm_fault().
 *   - A PMD pointer recorded during a walk (for a migration wait) is still
 *     a table entry after the walk: tables are freed only under mmap_lock
 *     held for write.
 */
#include <hetmm/err.h>
#include <hetmm/hmm.h>
#include <hetmm/mm.h>
#include <hetmm/stats.h>
#include <hetmm/uapi.h>

/* What a page or block needs before it can be reported as requested. */
#define HMM_NEED_FAULT 1U
#define HMM_NEED_WRITE_FAULT 2U
#define HMM_NEED_ALL_BITS (HMM_NEED_FAULT | HMM_NEED_WRITE_FAULT)

/* Private reasons for a callback to stop the walk (never errnos). */
enum {
	HMM_WALK_FAULT = 1, /* fault [fault_addr, fault_end), then rewalk */
	HMM_WALK_MIGRATION, /* wait for the migration at wait_addr */
};

static_assert(HMM_PFN_WRITE == (unsigned long)_PAGE_RW << 61,
	      "the PTE write bit shifts onto HMM_PFN_WRITE");

/**
 * struct hmm_vma_walk - state of one hmm_range_fault() call.
 * @range: the caller's request.
 * @last: first entry not yet reported (see the file comment).
 * @zero_pfn: the machine's zero page, reported like a normal page.
 * @max_pfn: pfns at or above it have no struct page.
 * @may_fault: some page may request a fault (the shortcut of spec 2.3).
 * @vma, @fault_addr, @fault_end, @required_fault: the block a callback
 *	found must be faulted, and how.
 * @wait_pmd, @wait_addr, @wait_pte: where a migration entry was met
 *	(@wait_pte: in a PTE table, else the PMD itself).
 * @nr_valid, @nr_p2p, @nr_faulted: for the statistics.
 */
struct hmm_vma_walk {
	struct hmm_range *range;
	unsigned long last;
	unsigned long zero_pfn;
	unsigned long max_pfn;
	bool may_fault;

	struct vm_area_struct *vma;
	unsigned long fault_addr;
	unsigned long fault_end;
	unsigned int required_fault;

	pmd_t *wait_pmd;
	unsigned long wait_addr;
	bool wait_pte;

	unsigned long nr_valid;
	unsigned long nr_p2p;
	unsigned long nr_faulted;
};

static inline unsigned long hmm_pfn_flags_order(unsigned int order)
{
	return (unsigned long)order << HMM_PFN_ORDER_SHIFT;
}

static inline unsigned long *hmm_pfns_at(const struct hmm_vma_walk *hw,
					 unsigned long addr)
{
	const struct hmm_range *range = hw->range;

	return &range->hmm_pfns[(addr - range->start) >> PAGE_SHIFT];
}

/* The request of one page: its input bits the mask lets through. */
static inline unsigned long hmm_req_flags(const struct hmm_range *range,
					  unsigned long input)
{
	return (input & range->pfn_flags_mask) | range->default_flags;
}

/* Does a page with request @input and CPU state @cpu_flags need a fault? */
static inline unsigned int hmm_pte_need_fault(const struct hmm_vma_walk *hw,
					      unsigned long input,
					      unsigned long cpu_flags)
{
	unsigned long req;

	if (!hw->may_fault)
		return 0;
	req = hmm_req_flags(hw->range, input);
	if (!(req & HMM_PFN_REQ_FAULT))
		return 0;
	if ((req & HMM_PFN_REQ_WRITE) && !(cpu_flags & HMM_PFN_WRITE))
		return HMM_NEED_FAULT | HMM_NEED_WRITE_FAULT;
	if (!(cpu_flags & HMM_PFN_VALID))
		return HMM_NEED_FAULT;
	return 0;
}

/* The same for a block of pages sharing @cpu_flags: the union. */
static unsigned int hmm_range_need_fault(const struct hmm_vma_walk *hw,
					 const unsigned long *hmm_pfns,
					 unsigned long npages,
					 unsigned long cpu_flags)
{
	unsigned int required = 0;

	if (!hw->may_fault)
		return 0;
	/* No per-page request bits get through: every page asks the same. */
	if (!(hw->range->pfn_flags_mask &
	      (HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE)))
		return hmm_pte_need_fault(hw, 0, cpu_flags);
	for (unsigned long i = 0; i < npages; i++) {
		required |= hmm_pte_need_fault(hw, hmm_pfns[i], cpu_flags);
		if (required == HMM_NEED_ALL_BITS)
			break;
	}
	return required;
}

static void hmm_pfns_fill(unsigned long *hmm_pfns, unsigned long npages,
			  unsigned long flags)
{
	for (unsigned long i = 0; i < npages; i++)
		hmm_pfns[i] = (hmm_pfns[i] & HMM_PFN_INOUT_FLAGS) | flags;
}

/* Stop the walk: [addr, end) of walk->vma is to be faulted. */
static int hmm_walk_need_fault(struct hmm_vma_walk *hw, struct mm_walk *walk,
			       unsigned long addr, unsigned long end,
			       unsigned int required)
{
	hw->vma = walk->vma;
	hw->fault_addr = addr;
	hw->fault_end = end;
	hw->required_fault = required;
	return HMM_WALK_FAULT;
}

/* Stop the walk: wait for the migration entry at @addr (PTE or PMD). */
static int hmm_walk_need_wait(struct hmm_vma_walk *hw, pmd_t *pmdp,
			      unsigned long addr, bool pte)
{
	hw->wait_pmd = pmdp;
	hw->wait_addr = addr;
	hw->wait_pte = pte;
	return HMM_WALK_MIGRATION;
}

/*
 * May the requester reach @page of a peer's pgmap in place? True, and
 * *@dev_addr set, if the pgmap offers p2p_addr() and it agrees. A dying
 * pgmap is being revoked (our rule, hetmm seed 002): *@revoked is set and
 * the page must be treated as an ordinary foreign page.
 */
static bool hmm_p2p_reach(const struct hmm_range *range, struct page *page,
			  struct dev_pagemap *pgmap, uint64_t *dev_addr,
			  bool *revoked)
{
	if (!pgmap->ops || !pgmap->ops->p2p_addr)
		return false;
	if (atomic_load(&pgmap->dying)) {
		*revoked = true;
		return false;
	}
	return !pgmap->ops->p2p_addr(page, range->dev_private_owner, dev_addr);
}

static void hmm_p2p_store(struct hmm_vma_walk *hw, unsigned long *hmm_pfn,
			  uint64_t dev_addr)
{
	struct hmm_range *range = hw->range;

	if (range->p2p_addrs)
		range->p2p_addrs[hmm_pfn - range->hmm_pfns] = dev_addr;
	hw->nr_p2p++;
}

/* ------------------------------------------------------------ VMA level */

static int hmm_vma_walk_test(unsigned long start, unsigned long end,
			     struct mm_walk *walk)
{
	struct hmm_vma_walk *hw = walk->private;
	struct vm_area_struct *vma = walk->vma;
	unsigned long *hmm_pfns = hmm_pfns_at(hw, start);
	unsigned long npages = (end - start) >> PAGE_SHIFT;

	if (!(vma->vm_flags & (VM_IO | VM_PFNMAP)) && (vma->vm_flags & VM_READ))
		return 0;
	/* Nothing here can be made readable for the device. */
	if (hmm_range_need_fault(hw, hmm_pfns, npages, 0))
		return -EFAULT;
	hmm_pfns_fill(hmm_pfns, npages, HMM_PFN_ERROR);
	return 1; /* skip the VMA */
}

/* No table (depth 0..3) inside a VMA, or no VMA at all (walk->vma NULL). */
static int hmm_vma_walk_hole(unsigned long addr, unsigned long end, int depth,
			     struct mm_walk *walk)
{
	struct hmm_vma_walk *hw = walk->private;
	unsigned long *hmm_pfns = hmm_pfns_at(hw, addr);
	unsigned long npages = (end - addr) >> PAGE_SHIFT;
	unsigned int required;

	(void)depth;
	required = hmm_range_need_fault(hw, hmm_pfns, npages, 0);
	if (!walk->vma) {
		if (required)
			return -EFAULT;
		hmm_pfns_fill(hmm_pfns, npages, HMM_PFN_ERROR);
		return 0;
	}
	if (required)
		return hmm_walk_need_fault(hw, walk, addr, end, required);
	hmm_pfns_fill(hmm_pfns, npages, 0);
	return 0;
}

/* ------------------------------------------------------------ PTE level */

/*
 * Every PTE the loop in hmm_vma_walk_ptes does not decode itself:
 * protnone, special (but the zero page), and the softleaf kinds. Called with
 * the PTE lock held; @end is the end of the PMD block being walked, which
 * is where a fault started here stops.
 */
static __noinline int hmm_vma_handle_pte(struct hmm_vma_walk *hw,
					 struct mm_walk *walk, pmd_t *pmdp,
					 unsigned long addr, unsigned long end,
					 pte_t pte, unsigned long *hmm_pfn)
{
	struct hmm_range *range = hw->range;
	unsigned long input = *hmm_pfn;
	unsigned long out = 0, cpu_flags;
	unsigned int required;
	enum softleaf_type kind = pte_kind(pte);
	struct dev_pagemap *pgmap;
	struct page *page;
	unsigned long pfn;
	uint64_t dev_addr = 0;
	bool revoked = false;

	/* A uffd-wp marker alone stands for an empty PTE. */
	if (kind == SOFTLEAF_MARKER &&
	    softleaf_offset(softleaf_from_pte(pte)) == PTE_MARKER_UFFD_WP)
		kind = SOFTLEAF_NONE;
	switch (kind) {
	case SOFTLEAF_NONE:
		required = hmm_pte_need_fault(hw, input, 0);
		if (required)
			return hmm_walk_need_fault(hw, walk, addr, end,
						   required);
		break;

	case SOFTLEAF_PRESENT:
		pfn = pte_pfn(pte);
		cpu_flags = 0;
		if (!pte_protnone(pte))
			cpu_flags = HMM_PFN_VALID |
				    (pte_write(pte) ? HMM_PFN_WRITE : 0);
		required = hmm_pte_need_fault(hw, input, cpu_flags);
		if (required)
			return hmm_walk_need_fault(hw, walk, addr, end,
						   required);
		/* No struct page behind it (pfnmap-like), unless zero page. */
		if ((pte_special(pte) && pfn != hw->zero_pfn) ||
		    pfn >= hw->max_pfn) {
			if (hmm_pte_need_fault(hw, input, 0))
				return -EFAULT;
			out = HMM_PFN_ERROR;
			break;
		}
		out = pfn | cpu_flags;
		if (cpu_flags)
			hw->nr_valid++;
		break;

	case SOFTLEAF_DEVICE_PRIVATE_READ:
	case SOFTLEAF_DEVICE_PRIVATE_WRITE:
		pfn = softleaf_pfn(softleaf_from_pte(pte));
		page = pfn_to_page(walk->mm->machine, pfn);
		pgmap = page_pgmap(page);
		cpu_flags = HMM_PFN_VALID;
		if (kind == SOFTLEAF_DEVICE_PRIVATE_WRITE)
			cpu_flags |= HMM_PFN_WRITE;
		/* Our own device memory: report it, never fault it back. */
		if (pgmap->owner == range->dev_private_owner) {
			out = pfn | cpu_flags;
			hw->nr_valid++;
			break;
		}
		/* A peer's: in place over the interconnect if allowed. */
		if ((hmm_req_flags(range, input) & HMM_PFN_ALLOW_P2P) &&
		    hmm_p2p_reach(range, page, pgmap, &dev_addr, &revoked)) {
			out = pfn | cpu_flags | HMM_PFN_P2P;
			hmm_p2p_store(hw, hmm_pfn, dev_addr);
			hw->nr_valid++;
			break;
		}
		required = hmm_pte_need_fault(hw, input, 0);
		if (required) /* migrate_to_ram() of its owner */
			return hmm_walk_need_fault(hw, walk, addr, end,
						   required);
		/* Revoked peer memory is unusable until faulted back. */
		out = revoked ? HMM_PFN_ERROR : 0;
		break;

	case SOFTLEAF_SWAP:
	case SOFTLEAF_DEVICE_EXCLUSIVE:
		required = hmm_pte_need_fault(hw, input, 0);
		if (required) /* swap-in, or restore of the exclusive PTE */
			return hmm_walk_need_fault(hw, walk, addr, end,
						   required);
		break;

	case SOFTLEAF_MIGRATION_READ:
	case SOFTLEAF_MIGRATION_READ_EXCLUSIVE:
	case SOFTLEAF_MIGRATION_WRITE:
		if (hmm_pte_need_fault(hw, input, 0))
			return hmm_walk_need_wait(hw, pmdp, addr, true);
		break;

	case SOFTLEAF_HWPOISON:
	case SOFTLEAF_MARKER:
	default:
		/* Poison, guard and poison markers: never made valid. */
		if (hmm_pte_need_fault(hw, input, 0))
			return -EFAULT;
		break;
	}
	*hmm_pfn = (input & HMM_PFN_INOUT_FLAGS) | out;
	return 0;
}

/*
 * A PTE table, read whole under its lock: the walker's per-PTE callback
 * would cost an indirect call per page, and this is the hot loop of a
 * snapshot. Plain present PTEs, the zero page and none PTEs are decoded
 * inline, the rest out of line.
 */
static int hmm_vma_walk_ptes(struct hmm_vma_walk *hw, struct mm_walk *walk,
			     pmd_t *pmdp, unsigned long start,
			     unsigned long end, unsigned long *hmm_pfns)
{
	const unsigned long npages = (end - start) >> PAGE_SHIFT;
	const bool may_fault = hw->may_fault;
	const unsigned long zero_pfn = hw->zero_pfn;
	unsigned long nr_valid = 0;
	spinlock_t *ptl;
	pte_t *ptep;
	int ret = 0;

	ptep = pte_offset_map_lock(walk->mm, pmdp, start, &ptl);
	if (!ptep) {
		/* The table went away before we locked it: look again. */
		walk->action = ACTION_AGAIN;
		return 0;
	}
	for (unsigned long i = 0; i < npages; i++) {
		uint64_t v = pte_val(ptep_get(&ptep[i]));
		unsigned long cpu_flags = 0;
		unsigned int required;

		switch (v & (_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_SPECIAL)) {
		case _PAGE_PRESENT:
			cpu_flags = HMM_PFN_VALID |
				    ((unsigned long)(v & _PAGE_RW) << 61);
			break;
		case _PAGE_PRESENT | _PAGE_SPECIAL:
			/* The zero page is a page like any other. */
			if (((v & _PAGE_PFN_MASK) >> _PAGE_PFN_SHIFT) !=
			    zero_pfn)
				goto slow;
			cpu_flags = HMM_PFN_VALID |
				    ((unsigned long)(v & _PAGE_RW) << 61);
			break;
		default:
			if (v != 0)
				goto slow;
			break;
		}
		if (unlikely(may_fault)) {
			required =
				hmm_pte_need_fault(hw, hmm_pfns[i], cpu_flags);
			if (required) {
				ret = hmm_walk_need_fault(
					hw, walk, start + (i << PAGE_SHIFT),
					end, required);
				break;
			}
		}
		if (!cpu_flags) { /* none */
			hmm_pfns[i] &= HMM_PFN_INOUT_FLAGS;
			continue;
		}
		hmm_pfns[i] = (hmm_pfns[i] & HMM_PFN_INOUT_FLAGS) |
			      (unsigned long)((v & _PAGE_PFN_MASK) >>
					      _PAGE_PFN_SHIFT) |
			      cpu_flags;
		nr_valid++;
		continue;
slow:
		ret = hmm_vma_handle_pte(hw, walk, pmdp,
					 start + (i << PAGE_SHIFT), end,
					 __pte(v), &hmm_pfns[i]);
		if (ret)
			break;
	}
	spin_unlock(ptl);
	hw->nr_valid += nr_valid;
	return ret;
}

/* ------------------------------------------------------------ PMD level */

/* A present PMD leaf (THP), read without a lock. */
static int hmm_vma_handle_pmd(struct hmm_vma_walk *hw, struct mm_walk *walk,
			      unsigned long start, unsigned long end,
			      unsigned long *hmm_pfns, pmd_t pmd)
{
	unsigned long npages = (end - start) >> PAGE_SHIFT;
	unsigned long cpu_flags = 0, pfn;
	unsigned int required;

	if (!pte_protnone(pmd))
		cpu_flags = HMM_PFN_VALID |
			    (pte_write(pmd) ? HMM_PFN_WRITE : 0) |
			    hmm_pfn_flags_order(PMD_ORDER);
	required = hmm_range_need_fault(hw, hmm_pfns, npages, cpu_flags);
	if (required)
		return hmm_walk_need_fault(hw, walk, start, end, required);
	pfn = pte_pfn(pmd) + pte_index(start);
	for (unsigned long i = 0; i < npages; i++)
		hmm_pfns[i] = (hmm_pfns[i] & HMM_PFN_INOUT_FLAGS) | (pfn + i) |
			      cpu_flags;
	if (cpu_flags)
		hw->nr_valid += npages;
	return 0;
}

/*
 * A device-private PMD (a 2 MiB device folio): ours is reported with
 * order 9; a peer's pages whose request allows P2P are reached in place,
 * and for the others the block is faulted back if any of them needs it,
 * else they are ERROR (as every other non-present PMD).
 * Context: page_table_lock held.
 */
static int hmm_vma_handle_device_pmd(struct hmm_vma_walk *hw,
				     struct mm_walk *walk, unsigned long start,
				     unsigned long end, unsigned long *hmm_pfns,
				     pmd_t pmd)
{
	struct hmm_range *range = hw->range;
	struct hetmm_machine *m = walk->mm->machine;
	unsigned long npages = (end - start) >> PAGE_SHIFT;
	unsigned long head = softleaf_pfn(softleaf_from_pte(pmd));
	unsigned long pfn = head + pte_index(start);
	struct dev_pagemap *pgmap = page_pgmap(pfn_to_page(m, head));
	unsigned long cpu_flags =
		HMM_PFN_VALID | hmm_pfn_flags_order(PMD_ORDER);
	uint64_t dev_addr[HPAGE_PMD_NR];
	bool in_place[HPAGE_PMD_NR];
	bool revoked = false;
	unsigned int required = 0;
	unsigned long i;

	if (pte_kind(pmd) == SOFTLEAF_DEVICE_PRIVATE_WRITE)
		cpu_flags |= HMM_PFN_WRITE;
	if (pgmap->owner == range->dev_private_owner) {
		for (i = 0; i < npages; i++)
			hmm_pfns[i] = (hmm_pfns[i] & HMM_PFN_INOUT_FLAGS) |
				      (pfn + i) | cpu_flags;
		hw->nr_valid += npages;
		return 0;
	}
	for (i = 0; i < npages; i++) {
		in_place[i] = (hmm_req_flags(range, hmm_pfns[i]) &
			       HMM_PFN_ALLOW_P2P) &&
			      hmm_p2p_reach(range, pfn_to_page(m, pfn + i),
					    pgmap, &dev_addr[i], &revoked);
		if (!in_place[i])
			required |= hmm_pte_need_fault(hw, hmm_pfns[i], 0);
	}
	if (required)
		return hmm_walk_need_fault(hw, walk, start, end, required);
	for (i = 0; i < npages; i++) {
		unsigned long out = HMM_PFN_ERROR;

		if (in_place[i]) {
			out = (pfn + i) | cpu_flags | HMM_PFN_P2P;
			hmm_p2p_store(hw, &hmm_pfns[i], dev_addr[i]);
			hw->nr_valid++;
		}
		hmm_pfns[i] = (hmm_pfns[i] & HMM_PFN_INOUT_FLAGS) | out;
	}
	return 0;
}

/* A non-present, non-none PMD entry. */
static int hmm_vma_handle_absent_pmd(struct hmm_vma_walk *hw,
				     struct mm_walk *walk, pmd_t *pmdp,
				     unsigned long start, unsigned long end,
				     unsigned long *hmm_pfns)
{
	struct mm_struct *mm = walk->mm;
	unsigned long npages = (end - start) >> PAGE_SHIFT;
	enum softleaf_type kind;
	int ret = 0;
	pmd_t pmd;

	spin_lock(&mm->page_table_lock);
	pmd = ptep_get(pmdp);
	kind = pte_kind(pmd);
	if (kind == SOFTLEAF_NONE || kind == SOFTLEAF_PRESENT) {
		spin_unlock(&mm->page_table_lock);
		walk->action = ACTION_AGAIN; /* changed: look again */
		return 0;
	}
	if (is_device_private_kind(kind)) {
		ret = hmm_vma_handle_device_pmd(hw, walk, start, end, hmm_pfns,
						pmd);
		spin_unlock(&mm->page_table_lock);
		return ret;
	}
	spin_unlock(&mm->page_table_lock);
	if (is_migration_kind(kind)) {
		if (hmm_range_need_fault(hw, hmm_pfns, npages, 0))
			return hmm_walk_need_wait(hw, pmdp, start, false);
		hmm_pfns_fill(hmm_pfns, npages, 0);
		return 0;
	}
	if (hmm_range_need_fault(hw, hmm_pfns, npages, 0))
		return -EFAULT;
	hmm_pfns_fill(hmm_pfns, npages, HMM_PFN_ERROR);
	return 0;
}

/*
 * A PMD of a hugetlb VMA (mapped here only by PMD leaves): the request of
 * the block's first page decides for the whole block, and every entry
 * carries the order of the huge page, as in the kernel's hugetlb walk.
 */
static int hmm_vma_walk_hugetlb(struct hmm_vma_walk *hw, struct mm_walk *walk,
				pmd_t *pmdp, unsigned long start,
				unsigned long end, unsigned long *hmm_pfns)
{
	unsigned long npages = (end - start) >> PAGE_SHIFT;
	unsigned long cpu_flags = hmm_pfn_flags_order(PMD_ORDER);
	pmd_t pmd = ptep_get(pmdp);
	enum softleaf_type kind = pte_kind(pmd);
	unsigned int required;

	if (pmd_leaf(pmd) && !pte_protnone(pmd))
		cpu_flags |=
			HMM_PFN_VALID | (pte_write(pmd) ? HMM_PFN_WRITE : 0);
	required = hmm_pte_need_fault(hw, hmm_pfns[0], cpu_flags);
	if (required) {
		if (is_migration_kind(kind))
			return hmm_walk_need_wait(hw, pmdp, start, false);
		/*
		 * Only an empty entry or a leaf can be faulted here; the
		 * hugetlb fault handler has nothing to do for anything else.
		 */
		if (kind != SOFTLEAF_NONE && !pmd_leaf(pmd))
			return -EFAULT;
		return hmm_walk_need_fault(hw, walk, start, end, required);
	}
	if (pmd_leaf(pmd)) {
		unsigned long pfn = pte_pfn(pmd) + pte_index(start);

		for (unsigned long i = 0; i < npages; i++)
			hmm_pfns[i] = (hmm_pfns[i] & HMM_PFN_INOUT_FLAGS) |
				      (pfn + i) | cpu_flags;
		if (cpu_flags & HMM_PFN_VALID)
			hw->nr_valid += npages;
	} else {
		/* Nothing mapped: no pfn to report (the kernel's is junk). */
		hmm_pfns_fill(hmm_pfns, npages, cpu_flags);
	}
	return 0;
}

static int hmm_vma_walk_pmd(pmd_t *pmdp, unsigned long start, unsigned long end,
			    struct mm_walk *walk)
{
	struct hmm_vma_walk *hw = walk->private;
	unsigned long *hmm_pfns = hmm_pfns_at(hw, start);
	unsigned long npages = (end - start) >> PAGE_SHIFT;
	pmd_t pmd;

	/* PTE tables are read here, whole; never by the walker. */
	walk->action = ACTION_CONTINUE;
	if (walk->vma->vm_flags & VM_HUGETLB)
		return hmm_vma_walk_hugetlb(hw, walk, pmdp, start, end,
					    hmm_pfns);
	pmd = ptep_get(pmdp);
	if (pte_none(pmd))
		return hmm_vma_walk_hole(start, end, 2, walk);
	if (pmd_table(pmd))
		return hmm_vma_walk_ptes(hw, walk, pmdp, start, end, hmm_pfns);
	if (pmd_leaf(pmd))
		return hmm_vma_handle_pmd(hw, walk, start, end, hmm_pfns, pmd);
	if (!pte_present(pmd))
		return hmm_vma_handle_absent_pmd(hw, walk, pmdp, start, end,
						 hmm_pfns);
	/* Present but neither a table nor a leaf: a bad PMD. */
	if (hmm_range_need_fault(hw, hmm_pfns, npages, 0))
		return -EFAULT;
	hmm_pfns_fill(hmm_pfns, npages, HMM_PFN_ERROR);
	return 0;
}

static const struct mm_walk_ops hmm_walk_ops = {
	.pmd_entry = hmm_vma_walk_pmd,
	.pte_hole = hmm_vma_walk_hole,
	.test_walk = hmm_vma_walk_test,
	.walk_lock = PGWALK_RDLOCK,
};

/* ------------------------------------------------------------- the call */

/*
 * Fault every page of the recorded block, the ones that did not ask for
 * it too (the kernel's behaviour). Return: 0, -EPERM (write needed, VMA
 * not writable: nothing faulted), -ENOMEM, -EFAULT.
 */
static int hmm_vma_fault(struct hmm_vma_walk *hw)
{
	struct vm_area_struct *vma = hw->vma;
	unsigned int fault_flags = FAULT_FLAG_REMOTE;

	HETMM_WARN_ON_ONCE(!hw->required_fault);
	hw->last = hw->fault_addr;
	if (hw->required_fault & HMM_NEED_WRITE_FAULT) {
		if (!(vma->vm_flags & VM_WRITE))
			return -EPERM;
		fault_flags |= FAULT_FLAG_WRITE;
	}
	for (unsigned long addr = hw->fault_addr; addr < hw->fault_end;
	     addr += PAGE_SIZE) {
		int ret = handle_mm_fault(vma, addr, fault_flags);

		if (ret)
			return ret == -ENOMEM ? -ENOMEM : -EFAULT;
		hw->nr_faulted++;
	}
	return 0;
}

int hmm_range_fault(struct hmm_range *range)
{
	struct hmm_vma_walk hw = { .range = range };
	struct mm_struct *mm;
	int ret;

	if (!range || !range->notifier || !range->hmm_pfns)
		return -EINVAL;
	if (!IS_ALIGNED(range->start, PAGE_SIZE) ||
	    !IS_ALIGNED(range->end, PAGE_SIZE))
		return -EINVAL;
	if (range->start >= range->end)
		return -EINVAL;
	mm = range->notifier->mm;
	mmap_assert_locked(mm);
	count_stat(HETMM_STAT_hmm_range_fault);

	hw.last = range->start;
	hw.zero_pfn = page_to_pfn(mm->machine->zero_page);
	hw.max_pfn = mm->machine->max_pfn;
	hw.may_fault = (range->default_flags | range->pfn_flags_mask) &
		       HMM_PFN_REQ_FAULT;
	for (;;) {
		/*
		 * Each pass starts here with mmap_lock held as on entry and no
		 * page-table lock: entries before hw.last hold output, the
		 * rest still hold requests. If the interval was invalidated
		 * since read_begin (perhaps by our own fault, a COW), what
		 * was reported may already be stale: give up.
		 */
		if (mmu_interval_check_retry(range->notifier,
					     range->notifier_seq)) {
			ret = -EBUSY;
			count_stat(HETMM_STAT_hmm_range_fault_busy);
			break;
		}
		ret = walk_page_range(mm, hw.last, range->end, &hmm_walk_ops,
				      &hw);
		if (ret == HMM_WALK_FAULT) {
			ret = hmm_vma_fault(&hw);
			if (ret)
				break;
			continue;
		}
		if (ret == HMM_WALK_MIGRATION) {
			/* The entry is back (or replaced) when this returns. */
			if (hw.wait_pte)
				migration_entry_wait(mm, hw.wait_pmd,
						     hw.wait_addr);
			else
				pmd_migration_entry_wait(mm, hw.wait_pmd);
			hw.last = hw.wait_addr;
			continue;
		}
		break;
	}
	if (hw.nr_valid)
		count_stat_n(HETMM_STAT_hmm_pfn_valid, hw.nr_valid);
	if (hw.nr_faulted)
		count_stat_n(HETMM_STAT_hmm_fault, hw.nr_faulted);
	if (hw.nr_p2p)
		count_stat_n(HETMM_STAT_hmm_p2p, hw.nr_p2p);
	return ret;
}
