/* SPDX-License-Identifier: MIT */
/*
 * hetmm/page.h - struct page, struct folio and their reference counts.
 *
 * Map:
 *   struct page    one per 4 KiB frame (system RAM or ZONE_DEVICE), 64 bytes
 *   struct folio   the head page of a naturally aligned run of 2^order pages
 *                  that is allocated, mapped and freed as one unit; an
 *                  order-0 folio is a single page
 *
 * A folio is its head page (struct folio wraps struct page, same address).
 * Tail pages point back at the head through head_offset, so page_folio()
 * is a subtraction. Folio-wide counts (_large_mapcount, _entire_mapcount,
 * _pincount) and the order are kept in the head page only.
 *
 * Reference counting:
 *   - _refcount counts every holder: the allocator's caller, each page-table
 *     mapping, each GET reference, GUP_PIN_COUNTING_BIAS per FOLL_PIN on a
 *     small folio (one per pin on a large folio, which also bumps _pincount).
 *   - A free page has _refcount == 0. folio_put() that drops the last
 *     reference frees the folio (to the buddy allocator, or to the pgmap's
 *     folio_free callback for ZONE_DEVICE).
 *   - Putting a count below zero is reported as a bad page (named by pfn) and
 *     the count is left at zero; hetmm_check() then fails.
 * Mapcounts start at -1 (unmapped), as in the kernel, and are read through
 * folio_mapcount()/page_mapcount() which add one back.
 *
 * Locking: flags are changed with atomic bit operations; PG_locked is the
 * folio lock (a sleeping lock, see folio_lock()). mapping/index change only
 * under the folio lock or before the folio is visible to others.
 */
#ifndef HETMM_PAGE_H
#define HETMM_PAGE_H

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"
#include "list.h"
#include "lock.h"
#include "rcu.h"

#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define PMD_ORDER 9
#define HPAGE_PMD_NR (1UL << PMD_ORDER)
#define HPAGE_PMD_SIZE (PAGE_SIZE << PMD_ORDER)
/* Largest buddy order: 2^10 pages = 4 MiB. */
#define MAX_PAGE_ORDER 10
#define NR_PAGE_ORDERS (MAX_PAGE_ORDER + 1)
#define GUP_PIN_COUNTING_BIAS (1U << 10)

typedef unsigned long pgoff_t;

enum zone_type {
	ZONE_NORMAL,
	ZONE_MOVABLE,  /* movable/CMA-like RAM: long-term pins migrate off it */
	ZONE_DEVICE,
	NR_ZONES,
};

/* Page flag bits (struct page::flags). */
enum pageflags {
	PG_locked,          /* folio lock held */
	PG_waiters,         /* someone sleeps on the folio lock */
	PG_referenced,
	PG_uptodate,
	PG_dirty,
	PG_lru,
	PG_active,
	PG_head,            /* head page of a large folio */
	PG_anon,            /* anonymous memory (kernel: mapping low bit) */
	PG_anon_exclusive,  /* per page: the only mm mapping it may write */
	PG_swapbacked,
	PG_reserved,        /* never allocated or freed (the zero page) */
	PG_buddy,           /* head of a free buddy block */
	PG_pcp,             /* free, on a per-thread page list */
	PG_large_rmappable,
	PG_hugetlb,
	PG_writeback,
	PG_zero_page,       /* the shared zero page */
	PG_hwpoison,
	PG_pgtable,         /* a page-table page */
	PG_has_pinned_hint, /* debug: was FOLL_PIN'd at least once */
	PG_slab_like,       /* driver/kernel-internal use, never mapped */
	PG_huge_zero,       /* head of the huge zero folio */
	NR_PAGEFLAGS,
};
static_assert(NR_PAGEFLAGS <= 32, "page flags must fit in 32 bits");

struct dev_pagemap;

/**
 * struct page - metadata of one physical frame.
 * @flags: PG_* bits; atomic bit operations only.
 * @order: for the head of a large folio, its order; for a free buddy block
 *         head, the block order; otherwise 0.
 * @zone: enum zone_type.
 * @machine_id: index of the owning machine in the machine table.
 * @head_offset: 0 for a head or small page, else the distance to the head.
 * @_refcount: references; use folio_ref_count()/folio_get()/folio_put().
 * @_mapcount: page-table mappings of this page minus one (PTE level);
 *             use page_mapcount().
 * @_large_mapcount: head of large folio: all mappings of any of its pages
 *                   (PTE and PMD) minus one; use folio_mapcount().
 * @_entire_mapcount: head of large folio: PMD/entire mappings minus one;
 *                    use folio_entire_mapcount().
 * @_pincount: head of large folio: FOLL_PIN pins; use folio_pincount().
 * @mapping: anon_vma-like object for anon folios, address_space for file
 *           folios, NULL otherwise.
 * @index: page offset within @mapping (or the anon linear index).
 * @ptl: PG_pgtable pages only: the split page-table lock of this table
 *       (shares storage with @mapping, unused for table pages).
 * @pt_used: PG_pgtable pages only: non-none entries in the table.
 * @lru: free-list / per-thread-list / LRU linkage (RAM pages).
 * @rcu: PG_pgtable pages only, while waiting for a grace period to be freed.
 * @pgmap: ZONE_DEVICE only: the owning dev_pagemap (device pages are never
 *         on a list, so they reuse @lru's storage, as the kernel does).
 * @zone_device_data: ZONE_DEVICE only: the driver's per-page pointer.
 */
struct page {
	atomic_uint flags;
	uint8_t order;
	uint8_t zone;
	uint16_t machine_id;
	uint32_t head_offset;
	atomic_int _refcount;
	atomic_int _mapcount;
	atomic_int _large_mapcount;
	atomic_int _entire_mapcount;
	atomic_int _pincount;
	union {
		struct {
			void *mapping;
			pgoff_t index;
		};
		struct {
			spinlock_t ptl;
			unsigned long pt_used;
		};
	};
	union {
		struct list_head lru;
		struct {
			struct dev_pagemap *pgmap;
			void *zone_device_data;
		};
		struct rcu_head rcu;
	};
};
static_assert(sizeof(spinlock_t) <= sizeof(void *), "ptl fits in mapping");
static_assert(sizeof(struct rcu_head) <= sizeof(struct list_head),
	      "rcu_head fits in lru");
static_assert(sizeof(struct page) <= 64, "struct page must fit 64 bytes");

/** struct folio - a head page; see the file comment. */
struct folio {
	struct page page;
};
static_assert(sizeof(struct folio) == sizeof(struct page),
	      "a folio is its head page");

/* ------------------------------------------------------------- flags */

static inline bool PageTestFlag(const struct page *p, enum pageflags f)
{
	return atomic_load_explicit((atomic_uint *)&p->flags,
				    memory_order_relaxed) &
	       (1U << f);
}

static inline void PageSetFlag(struct page *p, enum pageflags f)
{
	atomic_fetch_or_explicit(&p->flags, 1U << f, memory_order_relaxed);
}

static inline void PageClearFlag(struct page *p, enum pageflags f)
{
	atomic_fetch_and_explicit(&p->flags, ~(1U << f), memory_order_relaxed);
}

/* Returns the old value of the bit. */
static inline bool PageTestSetFlag(struct page *p, enum pageflags f)
{
	return atomic_fetch_or_explicit(&p->flags, 1U << f,
					memory_order_acq_rel) &
	       (1U << f);
}

static inline bool PageTestClearFlag(struct page *p, enum pageflags f)
{
	return atomic_fetch_and_explicit(&p->flags, ~(1U << f),
					 memory_order_acq_rel) &
	       (1U << f);
}

#define folio_test_flag(folio, f) PageTestFlag(&(folio)->page, f)
#define folio_set_flag(folio, f) PageSetFlag(&(folio)->page, f)
#define folio_clear_flag(folio, f) PageClearFlag(&(folio)->page, f)

static inline bool PageTail(const struct page *p)
{
	return __atomic_load_n(&p->head_offset, __ATOMIC_RELAXED) != 0;
}

static inline bool PageHead(const struct page *p)
{
	return PageTestFlag(p, PG_head);
}

/* ------------------------------------------------------- page <-> folio */

/*
 * gcc -O3 sees callers that may pass NULL (and never dereference the
 * result) and warns about the atomic load: a false positive.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
static inline struct folio *page_folio(const struct page *p)
{
	/* Relaxed: GUP-fast reads it speculatively while the page may be
	 * reallocated; it re-validates afterwards. */
	return (struct folio *)(p - __atomic_load_n(&p->head_offset,
						    __ATOMIC_RELAXED));
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

static inline struct page *folio_page(struct folio *folio, unsigned long n)
{
	return &folio->page + n;
}

static inline bool folio_test_large(const struct folio *folio)
{
	return PageHead(&folio->page);
}

static inline unsigned int folio_order(const struct folio *folio)
{
	return folio_test_large(folio) ? folio->page.order : 0;
}

static inline unsigned long folio_nr_pages(const struct folio *folio)
{
	return 1UL << folio_order(folio);
}

static inline unsigned long folio_size(const struct folio *folio)
{
	return PAGE_SIZE << folio_order(folio);
}

static inline enum zone_type folio_zone(const struct folio *folio)
{
	return (enum zone_type)folio->page.zone;
}

static inline bool folio_is_zone_device(const struct folio *folio)
{
	return folio->page.zone == ZONE_DEVICE;
}

static inline bool is_zone_device_page(const struct page *page)
{
	return page->zone == ZONE_DEVICE;
}

static inline bool folio_test_anon(const struct folio *folio)
{
	return folio_test_flag(folio, PG_anon);
}

static inline bool folio_test_hugetlb(const struct folio *folio)
{
	return PageTestFlag(&folio->page, PG_hugetlb);
}

static inline bool is_zero_page(const struct page *page)
{
	return PageTestFlag(page, PG_zero_page);
}

static inline bool is_zero_folio(const struct folio *folio)
{
	return is_zero_page(&folio->page);
}

/*
 * The huge zero folio (2 MiB of zeroes that read faults in THP-eligible
 * anonymous memory map with one read-only special PMD leaf). As in the
 * kernel, is_zero_page()/is_zero_folio() name only the 4 KiB zero page.
 */
static inline bool is_huge_zero_folio(const struct folio *folio)
{
	return PageTestFlag(&folio->page, PG_huge_zero);
}

static inline bool PageAnonExclusive(const struct page *page)
{
	return PageTestFlag(page, PG_anon_exclusive);
}

static inline void SetPageAnonExclusive(struct page *page)
{
	PageSetFlag(page, PG_anon_exclusive);
}

static inline void ClearPageAnonExclusive(struct page *page)
{
	PageClearFlag(page, PG_anon_exclusive);
}

/* ------------------------------------------------------------ refcount */

static inline int folio_ref_count(const struct folio *folio)
{
	return atomic_load_explicit((atomic_int *)&folio->page._refcount,
				    memory_order_relaxed);
}

static inline int page_ref_count(const struct page *page)
{
	return folio_ref_count(page_folio(page));
}

static inline void folio_ref_add(struct folio *folio, int nr)
{
	atomic_fetch_add_explicit(&folio->page._refcount, nr,
				  memory_order_relaxed);
}

static inline void folio_get(struct folio *folio)
{
	HETMM_DEBUG_BUG_ON(folio_ref_count(folio) <= 0);
	folio_ref_add(folio, 1);
}

static inline void get_page(struct page *page)
{
	folio_get(page_folio(page));
}

/*
 * folio_ref_try_add - add @refs references unless the count is zero (the
 * folio is free or being freed). Used by lock-free walkers (GUP-fast),
 * which must re-check afterwards that the page still belongs to the folio.
 */
static inline bool folio_ref_try_add(struct folio *folio, int refs)
{
	int v = atomic_load_explicit(&folio->page._refcount,
				     memory_order_relaxed);

	do {
		if (v <= 0)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(
		&folio->page._refcount, &v, v + refs, memory_order_acquire,
		memory_order_relaxed));
	return true;
}

static inline bool folio_try_get(struct folio *folio)
{
	return folio_ref_try_add(folio, 1);
}

void __folio_put_last(struct folio *folio, int newcount);

/* Drop @nr references; the last one frees the folio. */
static inline void folio_put_refs(struct folio *folio, int nr)
{
	int v = atomic_fetch_sub_explicit(&folio->page._refcount, nr,
					  memory_order_acq_rel) -
		nr;

	if (unlikely(v <= 0))
		__folio_put_last(folio, v);
}

static inline void folio_put(struct folio *folio)
{
	folio_put_refs(folio, 1);
}

static inline void put_page(struct page *page)
{
	folio_put(page_folio(page));
}

/* ------------------------------------------------------------ mapcount */

static inline int page_mapcount(const struct page *page)
{
	int mc = atomic_load_explicit((atomic_int *)&page->_mapcount,
				      memory_order_relaxed) +
		 1;
	const struct folio *folio = page_folio(page);

	if (folio_test_large(folio))
		mc += atomic_load_explicit(
			      (atomic_int *)&folio->page._entire_mapcount,
			      memory_order_relaxed) +
		      1;
	return mc;
}

static inline int folio_entire_mapcount(const struct folio *folio)
{
	return atomic_load_explicit((atomic_int *)&folio->page._entire_mapcount,
				    memory_order_relaxed) +
	       1;
}

/* Total mappings of any page of the folio (PTE + PMD). */
static inline int folio_mapcount(const struct folio *folio)
{
	if (!folio_test_large(folio))
		return atomic_load_explicit((atomic_int *)&folio->page._mapcount,
					    memory_order_relaxed) +
		       1;
	return atomic_load_explicit((atomic_int *)&folio->page._large_mapcount,
				    memory_order_relaxed) +
	       1;
}

static inline bool folio_mapped(const struct folio *folio)
{
	return folio_mapcount(folio) > 0;
}

static inline int folio_pincount(const struct folio *folio)
{
	return atomic_load_explicit((atomic_int *)&folio->page._pincount,
				    memory_order_relaxed);
}

/* ----------------------------------------------------------- folio lock */

void __folio_lock_slow(struct folio *folio);
void __folio_wake_waiters(struct folio *folio);

/*
 * folio_maybe_dma_pinned - may @folio be pinned with FOLL_PIN? Exact for
 * large folios (the pincount); for small ones a refcount of at least
 * GUP_PIN_COUNTING_BIAS says so, which many plain references also reach
 * (the documented false positive).
 */
static inline bool folio_maybe_dma_pinned(const struct folio *folio)
{
	if (folio_test_large(folio))
		return folio_pincount(folio) > 0;
	return folio_ref_count(folio) >= (int)GUP_PIN_COUNTING_BIAS;
}

static inline bool folio_trylock(struct folio *folio)
{
	return !PageTestSetFlag(&folio->page, PG_locked);
}

/* Sleep until the folio lock is ours. Context: may sleep. */
static inline void folio_lock(struct folio *folio)
{
	if (unlikely(!folio_trylock(folio)))
		__folio_lock_slow(folio);
}

static inline void folio_unlock(struct folio *folio)
{
	unsigned int old;

	HETMM_DEBUG_BUG_ON(!folio_test_flag(folio, PG_locked));
	old = atomic_fetch_and_explicit(&folio->page.flags, ~(1U << PG_locked),
					memory_order_seq_cst);
	if (unlikely(old & (1U << PG_waiters)))
		__folio_wake_waiters(folio);
}

static inline bool folio_test_locked(const struct folio *folio)
{
	return folio_test_flag(folio, PG_locked);
}

/* Sleep until nobody holds the folio lock (without taking it). */
void folio_wait_locked(struct folio *folio);

#endif /* HETMM_PAGE_H */
