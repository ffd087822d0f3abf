/* SPDX-License-Identifier: MIT */
/*
 * hetmm/stats.h - event counters, one X-macro list.
 *
 * Every counter is named once in HETMM_STAT_FIELDS with a one-line
 * description. Each thread increments its own block of counters without
 * atomics read-modify-write (it is the only writer); readers merge every
 * live block plus what exited threads left behind. Counters only grow:
 * callers that want the events of one run take a snapshot before and
 * after and subtract (hetmm_stats_diff). Gauges (current/peak values such
 * as pages in use) live with the object they describe, not here.
 *
 * Context: count_stat() may be called from any thread, in any context,
 * including with spinlocks held. hetmm_stats_read() takes a mutex.
 */
#ifndef HETMM_STATS_H
#define HETMM_STATS_H

#include <stdint.h>

#include "compiler.h"

#define HETMM_STAT_FIELDS(X)                                                   \
	/* phys: buddy allocator */                                             \
	X(pgalloc, "pages handed out by the page allocator (in 4 KiB units)")   \
	X(pgfree, "pages returned to the page allocator (in 4 KiB units)")      \
	X(pgalloc_fail, "allocation requests that failed (no memory or injected)") \
	X(pcp_alloc_hit, "allocations served from a per-thread page list")      \
	X(pcp_refill, "per-thread list refills from the buddy lists")           \
	X(pcp_drain, "per-thread list drains back to the buddy lists")          \
	X(buddy_split, "buddy blocks split to serve a smaller order")           \
	X(buddy_merge, "buddy pairs merged on free")                            \
	X(section_online, "memory sections whose struct pages were initialised") \
	X(page_zero, "pages zeroed by clear_highpage/folio_zero (4 KiB units)") \
	X(page_copy, "pages copied by copy_highpage/folio_mc_copy (4 KiB units)") \
	X(folio_lock_wait, "folio_lock calls that had to sleep")                \
	X(bad_page, "bad page reports (double free, refcount underflow...)")    \
	X(fault_injected, "failures injected by the fault-injection facility") \
	/* mm: faults and page tables */                                        \
	X(fault_zero_page, "read faults that mapped the shared zero page")      \
	X(fault_zero_fill, "write faults that allocated a zeroed anon page")    \
	X(fault_wp_reuse, "write/unshare faults that reused the page in place") \
	X(fault_wp_copy, "write faults that copied the page (COW)")             \
	X(fault_unshare_copy, "unshare faults that copied the page")            \
	X(fault_sigsegv, "faults refused: no mapping or no permission")         \
	X(pt_page_alloc, "page-table frames allocated")                         \
	X(pt_page_free, "page-table frames freed (after an RCU grace period)")  \
	X(pte_zapped, "page-table entries cleared by munmap/exit/DONTNEED")   \
	X(fault_file, "faults that mapped a page-cache folio")                  \
	X(fault_file_cow, "write faults that copied a file page (private map)") \
	X(fault_sigbus, "file faults beyond end of file")                       \
	X(tlb_hit, "CPU accesses served from the TLB")                          \
	X(tlb_miss, "CPU accesses that walked the page tables")                 \
	X(tlb_evict, "TLB fills that replaced another valid entry")             \
	X(tlb_flush, "TLB range flushes requested")                             \
	X(tlb_shootdown, "per-CPU TLB flushes performed (shootdown IPIs)")      \
	X(tlb_entries_flushed, "TLB entries invalidated by flushes")            \
	X(fork, "address spaces copied by fork")                                \
	X(fork_pte_copy, "PTEs copied by fork")                                 \
	X(fork_eager_copy, "pinned exclusive anon pages copied eagerly at fork") \
	X(mprotect_pte, "PTEs changed by mprotect")                             \
	X(mremap_pte_move, "PTEs moved by mremap")                             \
	X(thp_fault_alloc, "write faults that installed a 2 MiB THP")           \
	X(thp_fault_fallback, "THP faults that fell back to 4 KiB (no memory)") \
	X(fault_huge_zero_page, "read faults that mapped the huge zero folio")  \
	X(thp_zero_page_alloc, "huge zero folio allocations (first use)")       \
	X(thp_zero_page_alloc_failed, "huge zero folio allocations that failed") \
	X(thp_split_pmd, "PMD mappings of THPs split into 512 PTEs")           \
	X(thp_collapse_alloc, "MADV_COLLAPSE ranges collapsed into a new THP")   \
	X(hugetlb_fault_alloc, "hugetlb faults that allocated a 2 MiB page")  \
	X(fault_device_private, "CPU faults on device-private entries (migrate_to_ram)") \
	X(fault_migration_wait, "faults that waited for a migration entry")    \
	X(fault_exclusive_restore, "CPU faults that restored a device-exclusive entry") \
	X(hmm_range_fault, "hmm_range_fault calls")                             \
	X(hmm_range_fault_busy, "hmm_range_fault calls that returned -EBUSY")   \
	X(hmm_pfn_valid, "pages hmm_range_fault reported VALID")                \
	X(hmm_fault, "pages hmm_range_fault faulted in")                        \
	X(hmm_p2p, "peer device-private pages reported in place (P2P)")         \
	X(migrate_collect, "pages collected by migrate_vma_setup/migrate_device_*") \
	X(migrate_skip, "pages setup could not collect or had to restore")      \
	X(migrate_to_device, "pages migrated system -> device (4 KiB units)")   \
	X(migrate_to_system, "pages migrated device -> system (4 KiB units)")   \
	X(migrate_device_to_device, "pages migrated device -> device (4 KiB units)") \
	X(migrate_hole_fill, "holes/zero pages filled by migrate_vma_pages")    \
	X(migrate_folio_large, "large folios migrated as one folio")            \
	X(migrate_fail, "committed entries refused (refs changed, no dst...)")  \
	X(device_exclusive, "PTEs made device-exclusive")                       \
	X(pgmap_folio_init, "device folios put into service")                   \
	X(pgmap_folio_free, "device folios returned to their driver")           \
	X(pgmap_block_online, "2 MiB blocks of on-demand device struct pages initialised")

enum hetmm_stat_item {
#define __HETMM_STAT_ENUM(name, desc) HETMM_STAT_##name,
	HETMM_STAT_FIELDS(__HETMM_STAT_ENUM)
#undef __HETMM_STAT_ENUM
	NR_HETMM_STATS
};

#define HETMM_STATS_VERSION 1

/* A merged snapshot; version and size let callers check the layout. */
struct hetmm_stats {
	uint32_t version;
	uint32_t size;
	uint64_t v[NR_HETMM_STATS];
};

struct hetmm_stat_block {
	uint64_t v[NR_HETMM_STATS];
};

extern __hetmm_tls struct hetmm_stat_block *__hetmm_stat_blk;
struct hetmm_stat_block *__hetmm_stat_block_slow(void);

/* Add @n to counter @item of the calling thread. */
static inline void count_stat_n(enum hetmm_stat_item item, uint64_t n)
{
	struct hetmm_stat_block *b = __hetmm_stat_blk;

	if (unlikely(!b))
		b = __hetmm_stat_block_slow();
	__atomic_store_n(&b->v[item],
			 __atomic_load_n(&b->v[item], __ATOMIC_RELAXED) + n,
			 __ATOMIC_RELAXED);
}

static inline void count_stat(enum hetmm_stat_item item)
{
	count_stat_n(item, 1);
}

/* Merge every thread's counters into @out. */
void hetmm_stats_read(struct hetmm_stats *out);
/* @out = @after - @before, counter by counter. */
void hetmm_stats_diff(struct hetmm_stats *out, const struct hetmm_stats *after,
		      const struct hetmm_stats *before);
const char *hetmm_stat_name(enum hetmm_stat_item item);
const char *hetmm_stat_desc(enum hetmm_stat_item item);

#endif /* HETMM_STATS_H */
