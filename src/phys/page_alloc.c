// SPDX-License-Identifier: MIT
/*
 * page_alloc.c - the buddy allocator, per-thread page lists, and freeing.
 *
 * Locking and invariants:
 *   per_thread_pages.lock
 *     zone.lock
 *   - A free block of order o starts at a pfn aligned to 2^o, lies inside
 *     [zone.start_pfn, zone.online_end_pfn), and its head has PG_buddy and
 *     page->order == o while it sits on free_area[o]; its other pages carry
 *     no flag.
 *   - Two free buddies of equal order are never both on the free lists:
 *     __free_one() merges them.
 *   - zone.nr_free == sum(free_area[o].nr_free << o).
 *   - Per-thread lists hold order-0 pages and PMD_ORDER blocks marked
 *     PG_pcp; they count as free for the machine but not for nr_free.
 *   - pages in use == sum(pcp.nr_alloc) + sum(zone.nr_alloc) - the
 *     reserved pages (the zero page, and the huge zero folio once
 *     get_huge_zero_folio() allocated it: neither ever returns).
 *   - m->huge_zero_folio goes from NULL to one order-9 folio, once (a
 *     compare-and-swap: a racing loser frees its copy); the folio is
 *     marked PG_huge_zero and PG_reserved before it is published.
 *   - Struct pages of a zone are initialised a section at a time under the
 *     zone lock (zone_online_next), and never de-initialised.
 */
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/phys.h>
#include <hetmm/stats.h>

#include "internal.h"

#define PCP_BATCH_0 32
#define PCP_HIGH_0 256
#define PCP_BATCH_PMD 1
#define PCP_HIGH_PMD 4

void init_struct_page(struct hetmm_machine *m, struct page *p,
		      enum zone_type zone)
{
	memset(p, 0, sizeof(*p));
	p->zone = (uint8_t)zone;
	p->machine_id = m->id;
	atomic_init(&p->_mapcount, -1);
	atomic_init(&p->_large_mapcount, -1);
	atomic_init(&p->_entire_mapcount, -1);
	INIT_LIST_HEAD(&p->lru);
}

void phys_init_zone(struct hetmm_machine *m, struct zone *z,
		    enum zone_type type, unsigned long start, unsigned long end)
{
	(void)m;
	spin_lock_init(&z->lock);
	z->type = type;
	z->start_pfn = start;
	z->end_pfn = end;
	z->online_end_pfn = start;
	for (int o = 0; o < NR_PAGE_ORDERS; o++)
		INIT_LIST_HEAD(&z->free_area[o].free_list);
}

bool pfn_valid(struct hetmm_machine *m, unsigned long pfn)
{
	for (int i = 0; i < 2; i++) {
		struct zone *z = &m->zones[i];

		if (pfn >= z->start_pfn && pfn < z->end_pfn)
			return pfn < READ_ONCE(z->online_end_pfn);
	}
	return false;
}

static inline unsigned int pcp_slot(void)
{
	return hetmm_thread_id() % NR_PCP_SLOTS;
}

static inline int pcp_index(unsigned int order)
{
	return order == 0 ? 0 : order == PMD_ORDER ? 1 : -1;
}

/* Put a free block on its free list. Needs z->lock. */
static void add_to_free_list(struct zone *z, struct page *page,
			     unsigned int order, unsigned long fmt)
{
	PageSetFlag(page, PG_buddy);
	page->order = (uint8_t)order;
	page->index = fmt;
	list_add(&page->lru, &z->free_area[order].free_list);
	z->free_area[order].nr_free++;
	z->nr_free += 1UL << order;
}

static void del_from_free_list(struct zone *z, struct page *page,
			       unsigned int order)
{
	list_del(&page->lru);
	PageClearFlag(page, PG_buddy);
	page->order = 0;
	z->free_area[order].nr_free--;
	z->nr_free -= 1UL << order;
}

/* Free a block of 2^order pages at @pfn, merging with free buddies. */
static void __free_one(struct hetmm_machine *m, struct zone *z,
		       unsigned long pfn, unsigned int order, unsigned long fmt)
{
	lockdep_assert_held(&z->lock);
	while (order < MAX_PAGE_ORDER) {
		unsigned long buddy_pfn = pfn ^ (1UL << order);
		struct page *buddy;

		if (buddy_pfn < z->start_pfn || buddy_pfn >= z->online_end_pfn)
			break;
		buddy = pfn_to_page(m, buddy_pfn);
		if (!PageTestFlag(buddy, PG_buddy) || buddy->order != order)
			break;
		if (buddy->index != fmt)
			fmt = FMT_MIXED;
		del_from_free_list(z, buddy, order);
		count_stat(HETMM_STAT_buddy_merge);
		pfn &= buddy_pfn;
		order++;
	}
	add_to_free_list(z, pfn_to_page(m, pfn), order, fmt);
}

bool zone_online_next(struct hetmm_machine *m, struct zone *z)
{
	unsigned long start = z->online_end_pfn, end, pfn;

	lockdep_assert_held(&z->lock);
	if (start >= z->end_pfn)
		return false;
	if (should_fail(&m->faults, HETMM_FAULT_memmap_online))
		return false;
	end = min(ALIGN(start + 1, PAGES_PER_SECTION), z->end_pfn);
	for (pfn = start; pfn < end; pfn++)
		init_struct_page(m, pfn_to_page(m, pfn), z->type);
	/* Publish before the pages become reachable through the lists. */
	__atomic_store_n(&z->online_end_pfn, end, __ATOMIC_RELEASE);
	for (pfn = start; pfn < end;) {
		unsigned int order = MAX_PAGE_ORDER;

		while (!IS_ALIGNED(pfn, 1UL << order) ||
		       pfn + (1UL << order) > end)
			order--;
		__free_one(m, z, pfn, order, 0);
		pfn += 1UL << order;
	}
	count_stat(HETMM_STAT_section_online);
	return true;
}

/* Take a block of exactly @order off the buddy lists. Needs z->lock. */
static struct page *__rmqueue(struct hetmm_machine *m, struct zone *z,
			      unsigned int order, unsigned long *fmt)
{
	lockdep_assert_held(&z->lock);
	for (;;) {
		for (unsigned int o = order; o < NR_PAGE_ORDERS; o++) {
			struct free_area *area = &z->free_area[o];
			struct page *page;
			unsigned long pfn;

			if (list_empty(&area->free_list))
				continue;
			page = list_first_entry(&area->free_list, struct page,
						lru);
			*fmt = page->index;
			del_from_free_list(z, page, o);
			pfn = page_to_pfn(page);
			/* Split: give back the upper halves. */
			while (o > order) {
				o--;
				add_to_free_list(z,
						 pfn_to_page(m, pfn + (1UL << o)),
						 o, *fmt);
				count_stat(HETMM_STAT_buddy_split);
			}
			return page;
		}
		if (!zone_online_next(m, z))
			return NULL;
	}
}

/* Move up to @batch blocks of @order from the buddy lists to @pl. */
static int pcp_refill(struct hetmm_machine *m, struct zone *z,
		      struct pcp_list *pl, unsigned int order, int batch)
{
	int n = 0;

	spin_lock(&z->lock);
	while (n < batch) {
		unsigned long fmt;
		struct page *page = __rmqueue(m, z, order, &fmt);

		if (!page)
			break;
		PageSetFlag(page, PG_pcp);
		page->order = (uint8_t)order;
		page->index = fmt;
		list_add_tail(&page->lru, &pl->list);
		pl->count++;
		n++;
	}
	spin_unlock(&z->lock);
	if (n)
		count_stat(HETMM_STAT_pcp_refill);
	return n;
}

/* Give the @n oldest blocks of @pl back to the buddy lists. */
static void pcp_drain(struct hetmm_machine *m, struct zone *z,
		      struct pcp_list *pl, int n)
{
	spin_lock(&z->lock);
	while (n-- > 0 && !list_empty(&pl->list)) {
		struct page *page = list_last_entry(&pl->list, struct page, lru);
		unsigned int order = page->order;

		list_del(&page->lru);
		pl->count--;
		PageClearFlag(page, PG_pcp);
		page->order = 0;
		__free_one(m, z, page_to_pfn(page), order, page->index);
	}
	spin_unlock(&z->lock);
	count_stat(HETMM_STAT_pcp_drain);
}

void drain_all_pages(struct hetmm_machine *m)
{
	for (int i = 0; i < NR_PCP_SLOTS; i++) {
		struct per_thread_pages *pcp = &m->pcp[i];

		spin_lock(&pcp->lock);
		for (int z = 0; z < 2; z++)
			for (int o = 0; o < NR_PCP_ORDERS; o++)
				if (pcp->lists[z][o].count)
					pcp_drain(m, &m->zones[z],
						  &pcp->lists[z][o],
						  pcp->lists[z][o].count);
		spin_unlock(&pcp->lock);
	}
}

/* Make a free block into a folio of @order with one reference. */
static void prep_new_folio(struct page *page, unsigned int order,
			   unsigned long fmt)
{
	atomic_store_explicit(&page->flags, 0, memory_order_relaxed);
	__atomic_store_n(&page->head_offset, 0, __ATOMIC_RELAXED);
	page->mapping = NULL;
	page->index = 0;
	INIT_LIST_HEAD(&page->lru);
	if (order) {
		page->order = (uint8_t)order;
		atomic_store_explicit(&page->flags, 1U << PG_head,
				      memory_order_relaxed);
		atomic_store_explicit(&page->_pincount, 0,
				      memory_order_relaxed);
		atomic_store_explicit(&page->_large_mapcount, -1,
				      memory_order_relaxed);
		atomic_store_explicit(&page->_entire_mapcount, -1,
				      memory_order_relaxed);
		if (fmt != order)
			for (unsigned long i = 1; i < (1UL << order); i++)
				__atomic_store_n(&page[i].head_offset,
						 (uint32_t)i, __ATOMIC_RELAXED);
	} else {
		page->order = 0;
	}
	atomic_store_explicit(&page->_refcount, 1, memory_order_release);
}

static struct page *alloc_from_zone(struct hetmm_machine *m, int zi,
				    unsigned int order)
{
	struct zone *z = &m->zones[zi];
	int pi = pcp_index(order);
	unsigned long fmt;
	struct page *page;

	if (z->start_pfn == z->end_pfn)
		return NULL;
	if (pi >= 0) {
		struct per_thread_pages *pcp = &m->pcp[pcp_slot()];
		struct pcp_list *pl = &pcp->lists[zi][pi];

		spin_lock(&pcp->lock);
		if (list_empty(&pl->list) &&
		    !pcp_refill(m, z, pl, order,
				pi ? PCP_BATCH_PMD : PCP_BATCH_0)) {
			spin_unlock(&pcp->lock);
			return NULL;
		}
		page = list_first_entry(&pl->list, struct page, lru);
		list_del(&page->lru);
		pl->count--;
		pcp->nr_alloc += 1L << order;
		fmt = page->index;
		spin_unlock(&pcp->lock);
		PageClearFlag(page, PG_pcp);
		count_stat(HETMM_STAT_pcp_alloc_hit);
	} else {
		spin_lock(&z->lock);
		page = __rmqueue(m, z, order, &fmt);
		if (page)
			z->nr_alloc += 1L << order;
		spin_unlock(&z->lock);
		if (!page)
			return NULL;
	}
	prep_new_folio(page, order, fmt);
	return page;
}

struct page *alloc_pages(struct hetmm_machine *m, gfp_t gfp, unsigned int order)
{
	static const int zl_movable[] = { ZONE_MOVABLE, ZONE_NORMAL };
	static const int zl_normal[] = { ZONE_NORMAL };
	const int *zl;
	int nz;
	struct page *page = NULL;

	if (!m || order > MAX_PAGE_ORDER || (gfp & ~__GFP_VALID_MASK))
		return NULL;
	if (should_fail(&m->faults, HETMM_FAULT_alloc_pages))
		goto fail;
	zl = gfp & __GFP_MOVABLE ? zl_movable : zl_normal;
	nz = gfp & __GFP_MOVABLE ? 2 : 1;
	for (int attempt = 0; attempt < 2 && !page; attempt++) {
		for (int i = 0; i < nz && !page; i++)
			page = alloc_from_zone(m, zl[i], order);
		if (page || (gfp & __GFP_NORETRY))
			break;
		/* Pages may be parked on other threads' lists. */
		drain_all_pages(m);
	}
	if (!page)
		goto fail;
	if ((gfp & __GFP_ZERO) && m->arena)
		folio_zero((struct folio *)page);
	count_stat_n(HETMM_STAT_pgalloc, 1UL << order);
	return page;
fail:
	count_stat(HETMM_STAT_pgalloc_fail);
	return NULL;
}

struct folio *folio_alloc(struct hetmm_machine *m, gfp_t gfp, unsigned int order)
{
	return (struct folio *)alloc_pages(m, gfp | __GFP_COMP, order);
}

void __free_pages(struct page *page, unsigned int order)
{
	if (!page)
		return;
	if (PageTail(page) || folio_order((struct folio *)page) != order) {
		hetmm_bad_page(page, "__free_pages: order does not match");
		return;
	}
	put_page(page);
}

/* Sanity of a folio about to be freed; reports and returns false if bad. */
static bool free_folio_check(struct folio *folio)
{
	struct page *head = &folio->page;
	unsigned int flags = atomic_load_explicit(&head->flags,
						  memory_order_relaxed);

	if (flags & ((1U << PG_buddy) | (1U << PG_pcp))) {
		hetmm_bad_page(head, "freeing a page that is already free");
		return false;
	}
	if (flags & (1U << PG_reserved)) {
		hetmm_bad_page(head, "freeing a reserved page");
		return false;
	}
	if (flags & (1U << PG_locked)) {
		hetmm_bad_page(head, "freeing a locked folio");
		return false;
	}
	if (folio_mapcount(folio) != 0 ||
	    atomic_load_explicit(&head->_mapcount, memory_order_relaxed) !=
		    -1) {
		hetmm_bad_page(head, "freeing a mapped folio");
		return false;
	}
	if (folio_test_large(folio) && folio_pincount(folio)) {
		hetmm_bad_page(head, "freeing a pinned folio");
		return false;
	}
	return true;
}

static void free_folio_to_buddy(struct folio *folio)
{
	struct page *page = &folio->page;
	struct hetmm_machine *m = page_machine(page);
	unsigned int order = folio_order(folio);
	unsigned int flags = atomic_load_explicit(&page->flags,
						  memory_order_relaxed);
	int zi = page->zone;
	int pi = pcp_index(order);

	if (!free_folio_check(folio))
		return;
	/* Per-page state that mapping layers may have set on tail pages. */
	if (order && (flags & (1U << PG_anon))) {
		for (unsigned long i = 1; i < (1UL << order); i++)
			PageClearFlag(page + i, PG_anon_exclusive);
	}
#if HETMM_DEBUG >= 2
	for (unsigned long i = 1; i < (1UL << order); i++)
		if (atomic_load(&page[i]._mapcount) != -1)
			hetmm_bad_page(page + i, "freeing a mapped tail page");
#endif
	atomic_store_explicit(&page->flags, 0, memory_order_relaxed);
	page->mapping = NULL;
	count_stat_n(HETMM_STAT_pgfree, 1UL << order);

	if (pi >= 0) {
		struct per_thread_pages *pcp = &m->pcp[pcp_slot()];
		struct pcp_list *pl = &pcp->lists[zi][pi];

		spin_lock(&pcp->lock);
		PageSetFlag(page, PG_pcp);
		page->order = (uint8_t)order;
		page->index = order;
		list_add(&page->lru, &pl->list);
		pl->count++;
		pcp->nr_alloc -= 1L << order;
		if (pl->count > (pi ? PCP_HIGH_PMD : PCP_HIGH_0))
			pcp_drain(m, &m->zones[zi], pl,
				  pi ? PCP_BATCH_PMD : PCP_BATCH_0);
		spin_unlock(&pcp->lock);
	} else {
		struct zone *z = &m->zones[zi];

		page->order = 0;
		spin_lock(&z->lock);
		z->nr_alloc -= 1L << order;
		__free_one(m, z, page_to_pfn(page), order, order);
		spin_unlock(&z->lock);
	}
}

void __folio_put_last(struct folio *folio, int newcount)
{
	struct hetmm_machine *m = folio_machine(folio);

	if (unlikely(newcount < 0)) {
		hetmm_bad_page(&folio->page,
			       "refcount dropped below zero (double free?)");
		atomic_store_explicit(&folio->page._refcount, 0,
				      memory_order_relaxed);
		return;
	}
	if (folio_is_zone_device(folio)) {
		if (m->device_folio_free)
			m->device_folio_free(folio);
		else
			hetmm_bad_page(&folio->page,
				       "ZONE_DEVICE folio freed with no pgmap");
		return;
	}
	free_folio_to_buddy(folio);
}

long hetmm_pages_in_use(struct hetmm_machine *m)
{
	long n = 0;

	for (int i = 0; i < NR_PCP_SLOTS; i++) {
		spin_lock(&m->pcp[i].lock);
		n += m->pcp[i].nr_alloc;
		spin_unlock(&m->pcp[i].lock);
	}
	for (int z = 0; z < 2; z++) {
		spin_lock(&m->zones[z].lock);
		n += m->zones[z].nr_alloc;
		spin_unlock(&m->zones[z].lock);
	}
	return n - (long)hetmm_pages_reserved(m);
}

unsigned long hetmm_pages_reserved(struct hetmm_machine *m)
{
	return 1 + (atomic_load_explicit(&m->huge_zero_folio,
					 memory_order_acquire) ?
			    HPAGE_PMD_NR :
			    0);
}

struct folio *get_huge_zero_folio(struct hetmm_machine *m)
{
	struct folio *folio =
		atomic_load_explicit(&m->huge_zero_folio, memory_order_acquire);
	struct folio *none = NULL;

	if (likely(folio))
		return folio;
	folio = folio_alloc(m, __GFP_ZERO | __GFP_NORETRY, PMD_ORDER);
	if (!folio) {
		count_stat(HETMM_STAT_thp_zero_page_alloc_failed);
		return NULL;
	}
	/* Marked before it is published: a mapping of it must know it. */
	PageSetFlag(&folio->page, PG_reserved);
	PageSetFlag(&folio->page, PG_huge_zero);
	if (!atomic_compare_exchange_strong_explicit(
		    &m->huge_zero_folio, &none, folio, memory_order_acq_rel,
		    memory_order_acquire)) {
		/* Somebody else's went in first: use theirs. */
		PageClearFlag(&folio->page, PG_huge_zero);
		PageClearFlag(&folio->page, PG_reserved);
		folio_put(folio);
		return none;
	}
	count_stat(HETMM_STAT_thp_zero_page_alloc);
	return folio;
}

unsigned long hetmm_pages_free(struct hetmm_machine *m)
{
	unsigned long n = 0;

	for (int i = 0; i < NR_PCP_SLOTS; i++) {
		spin_lock(&m->pcp[i].lock);
		for (int z = 0; z < 2; z++)
			for (int o = 0; o < NR_PCP_ORDERS; o++)
				n += (unsigned long)m->pcp[i].lists[z][o].count
				     << (o ? PMD_ORDER : 0);
		spin_unlock(&m->pcp[i].lock);
	}
	for (int z = 0; z < 2; z++) {
		struct zone *zn = &m->zones[z];

		spin_lock(&zn->lock);
		n += zn->nr_free + (zn->end_pfn - zn->online_end_pfn);
		spin_unlock(&zn->lock);
	}
	return n;
}

unsigned long hetmm_memmap_pages_online(struct hetmm_machine *m)
{
	unsigned long n = 0;

	for (int z = 0; z < 2; z++)
		n += READ_ONCE(m->zones[z].online_end_pfn) -
		     m->zones[z].start_pfn;
	return n;
}
