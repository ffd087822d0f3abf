// SPDX-License-Identifier: MIT
/*
 * folio.c - folio lock waiters, data helpers, bad-page reports, and the
 * phys invariant checker.
 *
 * Locking and invariants:
 *   folio lock: PG_locked is the lock bit. A thread that fails to take it
 *   sleeps on one of WAIT_BUCKETS hashed wait queues (mutex + condvar).
 *   A sleeper sets PG_waiters while holding its bucket mutex before it
 *   re-tests PG_locked; folio_unlock() clears PG_locked with a full barrier
 *   and, if PG_waiters was set, takes the bucket mutex and wakes everyone
 *   on it. Since the waiter's set and test happen under the mutex, and the
 *   unlocker's clear-and-read is one atomic operation, a wakeup is never
 *   lost. Waiters of other folios in the same bucket wake spuriously and
 *   sleep again.
 *   machine.bad_lock protects the bad-page log (a leaf lock).
 */
#include <pthread.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <hetmm/err.h>
#include <hetmm/phys.h>
#include <hetmm/stats.h>

#include "internal.h"

#define WAIT_BUCKETS 256

struct wait_bucket {
	pthread_mutex_t lock;
	pthread_cond_t cond;
} __attribute__((aligned(64)));

static struct wait_bucket wait_table[WAIT_BUCKETS];
static pthread_once_t wait_once = PTHREAD_ONCE_INIT;

static void wait_table_init(void)
{
	for (int i = 0; i < WAIT_BUCKETS; i++) {
		pthread_mutex_init(&wait_table[i].lock, NULL);
		pthread_cond_init(&wait_table[i].cond, NULL);
	}
}

static struct wait_bucket *folio_bucket(const struct folio *folio)
{
	uintptr_t h = (uintptr_t)folio / sizeof(struct page);

	h ^= h >> 8;
	pthread_once(&wait_once, wait_table_init);
	return &wait_table[(h * 0x9E3779B1u) % WAIT_BUCKETS];
}

void __folio_lock_slow(struct folio *folio)
{
	struct wait_bucket *b = folio_bucket(folio);

	count_stat(HETMM_STAT_folio_lock_wait);
	pthread_mutex_lock(&b->lock);
	for (;;) {
		atomic_fetch_or_explicit(&folio->page.flags, 1U << PG_waiters,
					 memory_order_seq_cst);
		if (folio_trylock(folio))
			break;
		pthread_cond_wait(&b->cond, &b->lock);
	}
	pthread_mutex_unlock(&b->lock);
}

void __folio_wake_waiters(struct folio *folio)
{
	struct wait_bucket *b = folio_bucket(folio);

	pthread_mutex_lock(&b->lock);
	/* Sleepers set the bit again before they re-test the lock. */
	atomic_fetch_and_explicit(&folio->page.flags, ~(1U << PG_waiters),
				  memory_order_seq_cst);
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

void folio_wait_locked(struct folio *folio)
{
	struct wait_bucket *b;

	if (!folio_test_locked(folio))
		return;
	b = folio_bucket(folio);
	pthread_mutex_lock(&b->lock);
	for (;;) {
		atomic_fetch_or_explicit(&folio->page.flags, 1U << PG_waiters,
					 memory_order_seq_cst);
		if (!folio_test_locked(folio))
			break;
		pthread_cond_wait(&b->cond, &b->lock);
	}
	pthread_mutex_unlock(&b->lock);
}

/* ----------------------------------------------------------- data helpers */

/*
 * A page-sized length the compiler cannot see as a constant: with a
 * constant, gcc inlines memset/memcpy as "rep stos/movs", which is slower
 * than the C library's vector code on most machines.
 */
static inline size_t opaque_page_size(void)
{
	size_t n = PAGE_SIZE;

	__asm__("" : "+r"(n));
	return n;
}

void clear_highpage(struct page *page)
{
	void *p = page_address(page);

	if (p)
		memset(p, 0, opaque_page_size());
	count_stat(HETMM_STAT_page_zero);
}

void folio_zero(struct folio *folio)
{
	struct hetmm_machine *m = folio_machine(folio);
	unsigned long nr = folio_nr_pages(folio);

	if (m->arena)
		memset(m->arena + (size_t)(&folio->page - m->vmemmap) * PAGE_SIZE,
		       0, nr * PAGE_SIZE);
	count_stat_n(HETMM_STAT_page_zero, nr);
}

void copy_highpage(struct page *to, struct page *from)
{
	void *d = page_address(to), *s = page_address(from);

	if (d && s)
		memcpy(d, s, opaque_page_size());
	count_stat(HETMM_STAT_page_copy);
}

void hetmm_copy_stream(void *dst, const void *src, size_t len)
{
#ifdef __SSE2__
	__m128i *d = dst;
	const __m128i *s = src;

	for (size_t i = 0; i < len / sizeof(*d); i += 4) {
		__m128i a = _mm_load_si128(s + i), b = _mm_load_si128(s + i + 1);
		__m128i c = _mm_load_si128(s + i + 2), e = _mm_load_si128(s + i + 3);

		_mm_stream_si128(d + i, a);
		_mm_stream_si128(d + i + 1, b);
		_mm_stream_si128(d + i + 2, c);
		_mm_stream_si128(d + i + 3, e);
	}
	/* Streaming stores are weakly ordered: fence before anyone looks. */
	_mm_sfence();
#else
	memcpy(dst, src, len);
#endif
}

int folio_mc_copy(struct folio *dst, struct folio *src)
{
	void *d, *s;

	struct hetmm_machine *m;
	unsigned long nr;

	if (!dst || !src || folio_order(dst) != folio_order(src))
		return -EINVAL;
	m = folio_machine(src);
	if (should_fail(&m->faults, HETMM_FAULT_copy_page))
		return -EIO;
	nr = folio_nr_pages(src);
	if (likely(m->arena && folio_machine(dst) == m)) {
		d = m->arena + (size_t)(&dst->page - m->vmemmap) * PAGE_SIZE;
		s = m->arena + (size_t)(&src->page - m->vmemmap) * PAGE_SIZE;
	} else {
		d = folio_address(dst);
		s = folio_address(src);
	}
	if (d && s && nr >= HETMM_COPY_STREAM_NR)
		hetmm_copy_stream(d, s, nr * PAGE_SIZE);
	else if (d && s)
		memcpy(d, s, nr * PAGE_SIZE);
	count_stat_n(HETMM_STAT_page_copy, nr);
	return 0;
}

/* ------------------------------------------------------------- bad pages */

void hetmm_bad_page(struct page *page, const char *reason)
{
	struct hetmm_machine *m = page_machine(page);
	unsigned long pfn = page_to_pfn(page);

	count_stat(HETMM_STAT_bad_page);
#if HETMM_DEBUG >= 1
	fprintf(stderr, "hetmm: bad page: pfn %#lx: %s\n", pfn, reason);
#endif
	spin_lock(&m->bad_lock);
	if (m->nr_bad < ARRAY_SIZE(m->bad)) {
		m->bad[m->nr_bad].pfn = pfn;
		snprintf(m->bad[m->nr_bad].reason,
			 sizeof(m->bad[m->nr_bad].reason), "%s", reason);
	}
	m->nr_bad++;
	spin_unlock(&m->bad_lock);
}

void hetmm_bad_page_clear(struct hetmm_machine *m)
{
	spin_lock(&m->bad_lock);
	m->nr_bad = 0;
	spin_unlock(&m->bad_lock);
}

/* --------------------------------------------------------------- checker */

static const unsigned int free_ok_flags = (1U << PG_buddy) | (1U << PG_pcp);

static void check_free_range(struct hetmm_machine *m,
			     struct hetmm_check_ctx *ctx, unsigned long pfn,
			     unsigned int order, const char *what)
{
	for (unsigned long i = 0; i < (1UL << order); i++) {
		struct page *p = pfn_to_page(m, pfn + i);
		unsigned int fl = atomic_load(&p->flags);

		if (atomic_load(&p->_refcount) != 0)
			hetmm_check_fail(ctx, "pfn %#lx: %s page has refcount %d",
					 pfn + i, what,
					 atomic_load(&p->_refcount));
		if (atomic_load(&p->_mapcount) != -1)
			hetmm_check_fail(ctx, "pfn %#lx: %s page has mapcount %d",
					 pfn + i, what,
					 atomic_load(&p->_mapcount) + 1);
		if (i && (fl & free_ok_flags))
			hetmm_check_fail(ctx,
					 "pfn %#lx: inside a free block of order %u but marked free itself",
					 pfn + i, order);
		if (fl & ~free_ok_flags)
			hetmm_check_fail(ctx, "pfn %#lx: %s page has flags %#x",
					 pfn + i, what, fl & ~free_ok_flags);
	}
}

static void check_allocated(struct hetmm_machine *m,
			    struct hetmm_check_ctx *ctx, unsigned long pfn,
			    unsigned int order)
{
	for (unsigned long i = 1; i < (1UL << order); i++) {
		struct page *p = pfn_to_page(m, pfn + i);

		if (p->head_offset != i)
			hetmm_check_fail(ctx,
					 "pfn %#lx: tail %lu of folio %#lx has head_offset %u",
					 pfn + i, i, pfn, p->head_offset);
		if (atomic_load(&p->_refcount) != 0)
			hetmm_check_fail(ctx,
					 "pfn %#lx: tail page has its own refcount %d",
					 pfn + i, atomic_load(&p->_refcount));
		if (atomic_load(&p->_mapcount) < -1)
			hetmm_check_fail(ctx, "pfn %#lx: mapcount %d", pfn + i,
					 atomic_load(&p->_mapcount) + 1);
	}
}

static void check_zone(struct hetmm_machine *m, struct zone *z,
		       struct hetmm_check_ctx *ctx)
{
	unsigned long blocks[NR_PAGE_ORDERS] = { 0 }, buddy_pages = 0;
	unsigned long pcp_pages = 0, alloc_pages_n = 0, pfn;

	spin_lock(&z->lock);
	for (unsigned int o = 0; o < NR_PAGE_ORDERS; o++) {
		struct page *p;
		unsigned long n = 0;

		list_for_each_entry(p, &z->free_area[o].free_list, lru) {
			unsigned long bpfn = page_to_pfn(p);

			n++;
			if (!PageTestFlag(p, PG_buddy) || p->order != o)
				hetmm_check_fail(ctx,
						 "pfn %#lx: on the order-%u free list without PG_buddy/order",
						 bpfn, o);
			if (!IS_ALIGNED(bpfn, 1UL << o) ||
			    bpfn < z->start_pfn ||
			    bpfn + (1UL << o) > z->online_end_pfn)
				hetmm_check_fail(ctx,
						 "pfn %#lx: misplaced free block of order %u",
						 bpfn, o);
		}
		if (n != z->free_area[o].nr_free)
			hetmm_check_fail(ctx,
					 "zone %d order %u: %lu blocks listed, nr_free says %lu",
					 z->type, o, n, z->free_area[o].nr_free);
	}

	for (pfn = z->start_pfn; pfn < z->online_end_pfn;) {
		struct page *p = pfn_to_page(m, pfn);
		unsigned int fl = atomic_load(&p->flags);
		int ref = atomic_load(&p->_refcount);
		unsigned int order;

		if (p->zone != z->type || p->machine_id != m->id) {
			hetmm_check_fail(ctx, "pfn %#lx: zone/machine id corrupted",
					 pfn);
			pfn++;
			continue;
		}
		if (fl & (1U << PG_buddy)) {
			order = p->order;
			blocks[order]++;
			buddy_pages += 1UL << order;
			check_free_range(m, ctx, pfn, order, "free");
			/* The merge invariant: the buddy is not free too. */
			if (order < MAX_PAGE_ORDER) {
				unsigned long b = pfn ^ (1UL << order);

				if (b >= z->start_pfn && b < z->online_end_pfn &&
				    PageTestFlag(pfn_to_page(m, b), PG_buddy) &&
				    pfn_to_page(m, b)->order == order)
					hetmm_check_fail(ctx,
							 "pfn %#lx: free buddies of order %u not merged",
							 pfn, order);
			}
		} else if (fl & (1U << PG_pcp)) {
			order = p->order;
			pcp_pages += 1UL << order;
			check_free_range(m, ctx, pfn, order, "per-thread-list");
		} else if (ref > 0) {
			order = PageHead(p) ? p->order : 0;
			if (PageTail(p)) {
				hetmm_check_fail(ctx,
						 "pfn %#lx: tail page with refcount %d outside its folio",
						 pfn, ref);
				order = 0;
			}
			alloc_pages_n += 1UL << order;
			check_allocated(m, ctx, pfn, order);
		} else {
			if (ref < 0)
				hetmm_check_fail(ctx, "pfn %#lx: negative refcount %d",
						 pfn, ref);
			else
				hetmm_check_fail(ctx,
						 "pfn %#lx: frame neither free nor allocated (leaked: refcount 0, flags %#x)",
						 pfn, fl);
			order = 0;
		}
		pfn += 1UL << order;
	}
	for (unsigned int o = 0; o < NR_PAGE_ORDERS; o++)
		if (blocks[o] != z->free_area[o].nr_free)
			hetmm_check_fail(ctx,
					 "zone %d: %lu PG_buddy blocks of order %u, %lu on the list",
					 z->type, blocks[o], o,
					 z->free_area[o].nr_free);
	if (buddy_pages != z->nr_free)
		hetmm_check_fail(ctx, "zone %d: nr_free %lu, free blocks hold %lu",
				 z->type, z->nr_free, buddy_pages);
	spin_unlock(&z->lock);
	(void)pcp_pages;
	(void)alloc_pages_n;
}

static void phys_check(struct hetmm_machine *m, void *arg,
		       struct hetmm_check_ctx *ctx)
{
	unsigned long online = 0, free_pages;
	long in_use;

	(void)arg;
	spin_lock(&m->bad_lock);
	for (unsigned long i = 0; i < m->nr_bad && i < ARRAY_SIZE(m->bad); i++)
		hetmm_check_fail(ctx, "bad page: pfn %#lx: %s", m->bad[i].pfn,
				 m->bad[i].reason);
	if (m->nr_bad > ARRAY_SIZE(m->bad))
		hetmm_check_fail(ctx, "%lu more bad page reports",
				 m->nr_bad - ARRAY_SIZE(m->bad));
	spin_unlock(&m->bad_lock);

	/* Per-thread lists hold only PG_pcp blocks of the right order. */
	for (int i = 0; i < NR_PCP_SLOTS; i++) {
		spin_lock(&m->pcp[i].lock);
		for (int z = 0; z < 2; z++)
			for (int o = 0; o < NR_PCP_ORDERS; o++) {
				struct pcp_list *pl = &m->pcp[i].lists[z][o];
				struct page *p;
				int n = 0;

				list_for_each_entry(p, &pl->list, lru) {
					n++;
					if (!PageTestFlag(p, PG_pcp) ||
					    p->order != (o ? PMD_ORDER : 0) ||
					    p->zone != z)
						hetmm_check_fail(ctx,
								 "pfn %#lx: bad entry on per-thread list %d",
								 page_to_pfn(p), i);
				}
				if (n != pl->count)
					hetmm_check_fail(ctx,
							 "per-thread list %d: %d entries, count %d",
							 i, n, pl->count);
			}
		spin_unlock(&m->pcp[i].lock);
	}
	for (int z = 0; z < 2; z++) {
		check_zone(m, &m->zones[z], ctx);
		online += m->zones[z].online_end_pfn - m->zones[z].start_pfn;
	}
	free_pages = hetmm_pages_free(m);
	in_use = hetmm_pages_in_use(m);
	if (in_use < 0 ||
	    (unsigned long)in_use + hetmm_pages_reserved(m) + free_pages !=
		    m->nr_ram_pages)
		hetmm_check_fail(
			ctx,
			"frame accounting: %ld in use + %lu zero pages + %lu free != %lu RAM pages",
			in_use, hetmm_pages_reserved(m), free_pages,
			m->nr_ram_pages);
	(void)online;
}

void phys_register_checker(struct hetmm_machine *m)
{
	hetmm_checker_register(m, "phys", phys_check, NULL);
}
