// SPDX-License-Identifier: MIT
/*
 * memremap.c - ZONE_DEVICE pgmaps: memremap_pages/memunmap_pages, the
 * pfn -> pgmap index, device pages going into and out of service, and the
 * device window's region allocator. See hetmm/memremap.h for the model.
 *
 * Per machine (struct memremap_machine in m->subsys[MEMREMAP], created on
 * first use):
 *   lock       mutex: map/unmap, the region bitmap, nr_pgmaps
 *   index      xarray: (pfn >> 9) -> pgmap, one slot per 2 MiB block;
 *              lock-free readers under RCU (get_dev_pagemap)
 *   regions    bitmap of 2 MiB blocks of the device window handed out by
 *              request_free_mem_region()
 *
 * pgmap->ref: 1 for the pgmap itself while it lives, plus 2^order for each
 * PRIVATE/COHERENT folio in service, plus one per page for the other types
 * (taken at map time), plus get_dev_pagemap() holders. memunmap_pages sets
 * @dying, unpublishes the pgmap from the index, waits for an RCU grace
 * period (so no lookup can still be about to take a reference), drops the
 * pgmap's own reference and sleeps until @ref reaches 0.
 *
 * Lock order: memremap lock -> pgmap->init_lock. The folio-free path takes
 * no memremap lock (it may run under page-table locks).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "hetmm/check.h"
#include "hetmm/err.h"
#include "hetmm/memremap.h"
#include "hetmm/migrate.h"
#include "hetmm/rcu.h"
#include "hetmm/stats.h"
#include "hetmm/xarray.h"

#define BLOCK_SHIFT 9 /* 2 MiB blocks of pfns */
#define BLOCK_BYTES (PGMAP_BLOCK_PAGES << PAGE_SHIFT)
#define BITS_PER_UL (8 * sizeof(unsigned long))

struct memremap_machine {
	struct mutex lock;
	struct xarray index;
	unsigned long *regions;
	unsigned long nr_region_blocks;
	unsigned int nr_pgmaps;
};

void init_struct_page(struct hetmm_machine *m, struct page *p,
		      enum zone_type zone);

static pthread_mutex_t memremap_init_lock = PTHREAD_MUTEX_INITIALIZER;

static bool test_bit_ul(const unsigned long *map, unsigned long bit)
{
	return __atomic_load_n(&map[bit / BITS_PER_UL], __ATOMIC_ACQUIRE) &
	       (1UL << (bit % BITS_PER_UL));
}

static void set_bit_ul(unsigned long *map, unsigned long bit)
{
	__atomic_fetch_or(&map[bit / BITS_PER_UL], 1UL << (bit % BITS_PER_UL),
			  __ATOMIC_RELEASE);
}

static void clear_bit_ul(unsigned long *map, unsigned long bit)
{
	__atomic_fetch_and(&map[bit / BITS_PER_UL],
			   ~(1UL << (bit % BITS_PER_UL)), __ATOMIC_RELEASE);
}

static void memremap_folio_free(struct folio *folio);
static void memremap_check(struct hetmm_machine *m, void *arg,
			   struct hetmm_check_ctx *ctx);

static void memremap_machine_destroy(struct hetmm_machine *m)
{
	struct memremap_machine *mm = m->subsys[HETMM_SUBSYS_MEMREMAP];

	if (!mm)
		return;
	HETMM_WARN_ON_ONCE(mm->nr_pgmaps);
	xa_destroy(&mm->index);
	mutex_destroy(&mm->lock);
	free(mm->regions);
	free(mm);
	m->subsys[HETMM_SUBSYS_MEMREMAP] = NULL;
}

static struct memremap_machine *memremap_machine_peek(struct hetmm_machine *m)
{
	return __atomic_load_n(
		(struct memremap_machine **)&m->subsys[HETMM_SUBSYS_MEMREMAP],
		__ATOMIC_ACQUIRE);
}

static struct memremap_machine *memremap_machine(struct hetmm_machine *m)
{
	struct memremap_machine *mm = memremap_machine_peek(m);
	unsigned long blocks;

	if (likely(mm))
		return mm;
	pthread_mutex_lock(&memremap_init_lock);
	mm = memremap_machine_peek(m);
	if (mm)
		goto out;
	mm = calloc(1, sizeof(*mm));
	if (!mm)
		goto out;
	blocks = (m->max_pfn - m->device_base_pfn) >> BLOCK_SHIFT;
	mm->nr_region_blocks = blocks;
	mm->regions = calloc(blocks / BITS_PER_UL + 1, sizeof(unsigned long));
	if (!mm->regions) {
		free(mm);
		mm = NULL;
		goto out;
	}
	mutex_init(&mm->lock);
	xa_init(&mm->index);
	m->device_folio_free = memremap_folio_free;
	m->subsys_destroy[HETMM_SUBSYS_MEMREMAP] = memremap_machine_destroy;
	__atomic_store_n(
		(struct memremap_machine **)&m->subsys[HETMM_SUBSYS_MEMREMAP],
		mm, __ATOMIC_RELEASE);
	hetmm_checker_register(m, "memremap", memremap_check, NULL);
out:
	pthread_mutex_unlock(&memremap_init_lock);
	return mm;
}

/* ------------------------------------------------------------- regions */

int request_free_mem_region(struct hetmm_machine *m, uint64_t size,
			    uint64_t *start)
{
	struct memremap_machine *mm;
	unsigned long need, run = 0;

	if (!m || !start || !size || size % BLOCK_BYTES)
		return -EINVAL;
	mm = memremap_machine(m);
	if (!mm)
		return -ENOMEM;
	need = size / BLOCK_BYTES;
	mutex_lock(&mm->lock);
	/* Top down, as the kernel searches free physical address space. */
	for (unsigned long b = mm->nr_region_blocks; b-- > 0;) {
		if (test_bit_ul(mm->regions, b)) {
			run = 0;
			continue;
		}
		if (++run < need)
			continue;
		for (unsigned long i = b; i < b + need; i++)
			set_bit_ul(mm->regions, i);
		mutex_unlock(&mm->lock);
		*start = (uint64_t)(m->device_base_pfn + (b << BLOCK_SHIFT))
			 << PAGE_SHIFT;
		return 0;
	}
	mutex_unlock(&mm->lock);
	return -ENOSPC;
}

void release_mem_region(struct hetmm_machine *m, uint64_t start,
			uint64_t size)
{
	struct memremap_machine *mm = memremap_machine_peek(m);
	unsigned long first;

	if (!mm || HETMM_WARN_ON_ONCE(start % BLOCK_BYTES || size % BLOCK_BYTES))
		return;
	first = ((start >> PAGE_SHIFT) - m->device_base_pfn) >> BLOCK_SHIFT;
	mutex_lock(&mm->lock);
	for (unsigned long b = first; b < first + size / BLOCK_BYTES &&
				      b < mm->nr_region_blocks;
	     b++) {
		HETMM_WARN_ON_ONCE(!test_bit_ul(mm->regions, b));
		clear_bit_ul(mm->regions, b);
	}
	mutex_unlock(&mm->lock);
}

/* ------------------------------------------------------- pgmap geometry */

static unsigned long range_pfn(const struct range *r)
{
	return (unsigned long)(r->start >> PAGE_SHIFT);
}

static unsigned long range_pages(const struct range *r)
{
	return (unsigned long)(range_len(r) >> PAGE_SHIFT);
}

bool pgmap_pfn_valid(const struct dev_pagemap *pgmap, unsigned long pfn)
{
	for (int i = 0; i < pgmap->nr_range; i++) {
		unsigned long s = range_pfn(&pgmap->ranges[i]);

		if (pfn >= s && pfn - s < range_pages(&pgmap->ranges[i]))
			return true;
	}
	return false;
}

/* Page offset of @pfn in @pgmap (across ranges), or -1UL. */
static unsigned long pgmap_pfn_to_offset(const struct dev_pagemap *pgmap,
					 unsigned long pfn)
{
	unsigned long off = 0;

	for (int i = 0; i < pgmap->nr_range; i++) {
		unsigned long s = range_pfn(&pgmap->ranges[i]);
		unsigned long n = range_pages(&pgmap->ranges[i]);

		if (pfn >= s && pfn - s < n)
			return off + (pfn - s);
		off += n;
	}
	return -1UL;
}

unsigned long pgmap_offset_to_pfn(const struct dev_pagemap *pgmap,
				  unsigned long pgoff)
{
	for (int i = 0; i < pgmap->nr_range; i++) {
		unsigned long n = range_pages(&pgmap->ranges[i]);

		if (pgoff < n)
			return range_pfn(&pgmap->ranges[i]) + pgoff;
		pgoff -= n;
	}
	return -1UL;
}

bool pgmap_pfn_online(const struct dev_pagemap *pgmap, unsigned long pfn)
{
	unsigned long off;

	if (!(pgmap->flags & PGMAP_ON_DEMAND))
		return pgmap_pfn_valid(pgmap, pfn);
	off = pgmap_pfn_to_offset(pgmap, pfn);
	return off != -1UL &&
	       test_bit_ul(pgmap->init_bitmap, off / PGMAP_BLOCK_PAGES);
}

/* Initialise the struct pages of one 2 MiB block as free device pages. */
static void pgmap_init_block(struct dev_pagemap *pgmap, unsigned long pfn)
{
	struct hetmm_machine *m = pgmap->machine;

	for (unsigned long i = 0; i < PGMAP_BLOCK_PAGES; i++) {
		struct page *p = pfn_to_page(m, pfn + i);

		init_struct_page(m, p, ZONE_DEVICE);
		p->pgmap = pgmap;
		p->zone_device_data = NULL;
		if (pgmap->type == MEMORY_DEVICE_GENERIC)
			atomic_store_explicit(&p->_refcount, 1,
					      memory_order_relaxed);
	}
	count_stat(HETMM_STAT_pgmap_block_online);
}

/* Make sure the blocks holding [pfn, pfn + nr) have struct pages. */
static void pgmap_online(struct dev_pagemap *pgmap, unsigned long pfn,
			 unsigned long nr)
{
	unsigned long off, first, last;

	if (!(pgmap->flags & PGMAP_ON_DEMAND))
		return;
	off = pgmap_pfn_to_offset(pgmap, pfn);
	if (HETMM_WARN_ON_ONCE(off == -1UL))
		return;
	first = off / PGMAP_BLOCK_PAGES;
	last = (off + nr - 1) / PGMAP_BLOCK_PAGES;
	for (unsigned long b = first; b <= last; b++) {
		if (test_bit_ul(pgmap->init_bitmap, b))
			continue;
		spin_lock(&pgmap->init_lock);
		if (!test_bit_ul(pgmap->init_bitmap, b)) {
			pgmap_init_block(pgmap,
					 pgmap_offset_to_pfn(
						 pgmap, b * PGMAP_BLOCK_PAGES));
			pgmap->nr_blocks_online++;
			set_bit_ul(pgmap->init_bitmap, b);
		}
		spin_unlock(&pgmap->init_lock);
	}
}

/* --------------------------------------------------- map and unmap */

static void pgmap_ref_put_many(struct dev_pagemap *pgmap, long n)
{
	if (atomic_fetch_sub_explicit(&pgmap->ref, n, memory_order_acq_rel) ==
	    n) {
		pthread_mutex_lock(&pgmap->done_lock);
		pthread_cond_broadcast(&pgmap->done);
		pthread_mutex_unlock(&pgmap->done_lock);
	}
}

static int pgmap_validate(struct hetmm_machine *m, struct dev_pagemap *pgmap)
{
	const struct dev_pagemap_ops *ops = pgmap->ops;

	if (pgmap->nr_range <= 0 || pgmap->nr_range > PGMAP_MAX_RANGES)
		return -EINVAL;
	switch (pgmap->type) {
	case MEMORY_DEVICE_PRIVATE:
		if (!ops || !ops->migrate_to_ram || !ops->folio_free ||
		    !pgmap->owner)
			return -EINVAL;
		break;
	case MEMORY_DEVICE_COHERENT:
		if (!ops || !ops->folio_free || !pgmap->owner)
			return -EINVAL;
		break;
	case MEMORY_DEVICE_FS_DAX:
	case MEMORY_DEVICE_GENERIC:
	case MEMORY_DEVICE_PCI_P2PDMA:
		break;
	default:
		/* The kernel only WARNs for an unknown type. */
		HETMM_WARN_ON_ONCE(1);
		return -EINVAL;
	}
	for (int i = 0; i < pgmap->nr_range; i++) {
		const struct range *r = &pgmap->ranges[i];
		uint64_t lo = (uint64_t)m->device_base_pfn << PAGE_SHIFT;
		uint64_t hi = (uint64_t)m->max_pfn << PAGE_SHIFT;

		if (r->end < r->start || r->start % BLOCK_BYTES ||
		    (r->end + 1) % BLOCK_BYTES)
			return -EINVAL;
		/* Below the window is System RAM; above it, nothing. */
		if (r->start < lo || r->end >= hi)
			return -ENXIO;
	}
	return 0;
}

/* Unpublish blocks of ranges [0, nr) of @pgmap from the index. */
static void pgmap_unindex(struct memremap_machine *mm,
			  struct dev_pagemap *pgmap, int nr)
{
	for (int i = 0; i < nr; i++) {
		const struct range *r = &pgmap->ranges[i];

		xa_erase_range(&mm->index, range_pfn(r) >> BLOCK_SHIFT,
			       (range_pfn(r) + range_pages(r) - 1) >>
				       BLOCK_SHIFT);
	}
}

int memremap_pages(struct hetmm_machine *m, struct dev_pagemap *pgmap)
{
	struct memremap_machine *mm;
	unsigned long nr_pages = 0;
	int ret, done = 0;

	if (!m || !pgmap)
		return -EINVAL;
	ret = pgmap_validate(m, pgmap);
	if (ret)
		return ret;
	mm = memremap_machine(m);
	if (!mm)
		return -ENOMEM;
	for (int i = 0; i < pgmap->nr_range; i++)
		nr_pages += range_pages(&pgmap->ranges[i]);

	pgmap->machine = m;
	pgmap->nr_pages = nr_pages;
	atomic_store(&pgmap->ref, 1);
	atomic_store(&pgmap->dying, false);
	spin_lock_init(&pgmap->init_lock);
	pgmap->nr_blocks_online = 0;
	pgmap->init_bitmap = NULL;
	if (pgmap->flags & PGMAP_ON_DEMAND) {
		unsigned long blocks = nr_pages / PGMAP_BLOCK_PAGES;

		pgmap->init_bitmap =
			calloc(blocks / BITS_PER_UL + 1, sizeof(unsigned long));
		if (!pgmap->init_bitmap)
			return -ENOMEM;
	}
	pthread_mutex_init(&pgmap->done_lock, NULL);
	pthread_cond_init(&pgmap->done, NULL);

	mutex_lock(&mm->lock);
	for (; done < pgmap->nr_range; done++) {
		const struct range *r = &pgmap->ranges[done];
		unsigned long b0 = range_pfn(r) >> BLOCK_SHIFT;
		unsigned long b1 = b0 + (range_pages(r) >> BLOCK_SHIFT);

		for (unsigned long b = b0; b < b1; b++) {
			if (xa_load(&mm->index, b)) {
				/* "conflicting mapping": undo this range. */
				xa_erase_range(&mm->index, b0, b - 1);
				ret = -ENOMEM;
				goto unwind;
			}
			ret = xa_store(&mm->index, b, pgmap);
			if (ret) {
				if (b > b0)
					xa_erase_range(&mm->index, b0, b - 1);
				goto unwind;
			}
		}
	}
	mm->nr_pgmaps++;
	mutex_unlock(&mm->lock);

	if (!(pgmap->flags & PGMAP_ON_DEMAND)) {
		for (int i = 0; i < pgmap->nr_range; i++) {
			const struct range *r = &pgmap->ranges[i];

			for (unsigned long p = 0; p < range_pages(r);
			     p += PGMAP_BLOCK_PAGES)
				pgmap_init_block(pgmap, range_pfn(r) + p);
		}
		pgmap->nr_blocks_online = nr_pages / PGMAP_BLOCK_PAGES;
	}
	/* Types whose free pages are not at refcount 0 pin the pgmap per
	 * page from the start; PRIVATE/COHERENT pin it per page in service. */
	if (pgmap->type != MEMORY_DEVICE_PRIVATE &&
	    pgmap->type != MEMORY_DEVICE_COHERENT)
		atomic_fetch_add(&pgmap->ref, (long)nr_pages);
	return 0;

unwind:
	pgmap_unindex(mm, pgmap, done);
	mutex_unlock(&mm->lock);
	pthread_cond_destroy(&pgmap->done);
	pthread_mutex_destroy(&pgmap->done_lock);
	free(pgmap->init_bitmap);
	pgmap->init_bitmap = NULL;
	pgmap->machine = NULL;
	return ret;
}

static void pgmap_kill(struct dev_pagemap *pgmap)
{
	struct memremap_machine *mm = memremap_machine_peek(pgmap->machine);

	if (atomic_exchange(&pgmap->dying, true))
		return;
	mutex_lock(&mm->lock);
	pgmap_unindex(mm, pgmap, pgmap->nr_range);
	mutex_unlock(&mm->lock);
	/* No lookup can still be between xa_load and its reference. */
	synchronize_rcu();
	if (pgmap->type != MEMORY_DEVICE_PRIVATE &&
	    pgmap->type != MEMORY_DEVICE_COHERENT)
		pgmap_ref_put_many(pgmap, (long)pgmap->nr_pages);
	pgmap_ref_put_many(pgmap, 1);
}

void memunmap_pages(struct dev_pagemap *pgmap)
{
	struct hetmm_machine *m;
	struct memremap_machine *mm;

	if (!pgmap || !pgmap->machine)
		return;
	m = pgmap->machine;
	mm = memremap_machine_peek(m);
	pgmap_kill(pgmap);
	pthread_mutex_lock(&pgmap->done_lock);
	while (atomic_load(&pgmap->ref) > 0)
		pthread_cond_wait(&pgmap->done, &pgmap->done_lock);
	pthread_mutex_unlock(&pgmap->done_lock);

	/* The memmap goes away with the memory: forget every struct page. */
	for (int i = 0; i < pgmap->nr_range; i++) {
		const struct range *r = &pgmap->ranges[i];

		for (unsigned long p = 0; p < range_pages(r);
		     p += PGMAP_BLOCK_PAGES)
			if (pgmap_pfn_online(pgmap, range_pfn(r) + p))
				memset(pfn_to_page(m, range_pfn(r) + p), 0,
				       PGMAP_BLOCK_PAGES * sizeof(struct page));
	}
	free(pgmap->init_bitmap);
	pgmap->init_bitmap = NULL;
	pgmap->nr_blocks_online = 0;
	pthread_cond_destroy(&pgmap->done);
	pthread_mutex_destroy(&pgmap->done_lock);
	mutex_lock(&mm->lock);
	mm->nr_pgmaps--;
	mutex_unlock(&mm->lock);
	pgmap->machine = NULL;
}

#define EVICT_BATCH 512UL

/* Move one batch of in-service pages [pfn, pfn + n) to system memory. */
static int evict_batch(struct hetmm_machine *m, unsigned long pfn,
		       unsigned long n, unsigned long *src, unsigned long *dst)
{
	int ret = 0;

	migrate_device_range(src, m, pfn, n);
	for (unsigned long i = 0; i < n; i++) {
		struct page *spage = migrate_pfn_to_page(m, src[i]);
		unsigned int order;
		struct folio *new;

		dst[i] = 0;
		if (!spage || !(src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		order = (src[i] & MIGRATE_PFN_COMPOUND) ?
				folio_order(page_folio(spage)) :
				0;
		/* No VMA to split with: a large folio moves whole or stays. */
		new = folio_alloc(m, __GFP_MOVABLE, order);
		if (!new) {
			ret = -ENOMEM;
			continue;
		}
		folio_lock(new);
		if (folio_mc_copy(new, page_folio(spage))) {
			/* The page stays on the device, intact. */
			folio_unlock(new);
			folio_put(new);
			ret = -EIO;
			continue;
		}
		dst[i] = migrate_pfn(folio_pfn(new)) |
			 (order ? MIGRATE_PFN_COMPOUND : 0);
	}
	migrate_device_pages(m, src, dst, n);
	migrate_device_finalize(m, src, dst, n);
	return ret;
}

int memunmap_pages_evict(struct dev_pagemap *pgmap)
{
	struct hetmm_machine *m;
	unsigned long *src, *dst;
	int ret = 0;

	if (!pgmap || !pgmap->machine)
		return -EINVAL;
	m = pgmap->machine;
	src = calloc(EVICT_BATCH, sizeof(*src));
	dst = calloc(EVICT_BATCH, sizeof(*dst));
	if (!src || !dst) {
		free(src);
		free(dst);
		return -ENOMEM;
	}
	pgmap_kill(pgmap);
	/*
	 * Pages locked by a concurrent fault or migration, or on their way to
	 * being freed, are skipped by migrate_device_range: go round until
	 * every page has been freed.
	 */
	while (atomic_load(&pgmap->ref) > 0 && !ret) {
		for (int i = 0; i < pgmap->nr_range && !ret; i++) {
			const struct range *r = &pgmap->ranges[i];

			for (unsigned long p = 0; p < range_pages(r) && !ret;
			     p += EVICT_BATCH) {
				if (!pgmap_pfn_online(pgmap, range_pfn(r) + p))
					continue;
				ret = evict_batch(m, range_pfn(r) + p,
						  min(EVICT_BATCH,
						      range_pages(r) - p),
						  src, dst);
			}
		}
		if (atomic_load(&pgmap->ref) > 0 && !ret)
			sched_yield();
	}
	free(src);
	free(dst);
	if (ret)
		return ret;
	memunmap_pages(pgmap);
	return 0;
}

unsigned int hetmm_nr_pgmaps(struct hetmm_machine *m)
{
	struct memremap_machine *mm = memremap_machine_peek(m);

	return mm ? mm->nr_pgmaps : 0;
}

/* ------------------------------------------------------------- lookups */

struct dev_pagemap *get_dev_pagemap(struct hetmm_machine *m,
				    unsigned long pfn)
{
	struct memremap_machine *mm = memremap_machine_peek(m);
	struct dev_pagemap *pgmap;

	if (!mm)
		return NULL;
	rcu_read_lock();
	pgmap = xa_load(&mm->index, pfn >> BLOCK_SHIFT);
	if (pgmap) {
		atomic_fetch_add(&pgmap->ref, 1);
		if (atomic_load(&pgmap->dying)) {
			pgmap_ref_put_many(pgmap, 1);
			pgmap = NULL;
		}
	}
	rcu_read_unlock();
	return pgmap;
}

void put_dev_pagemap(struct dev_pagemap *pgmap)
{
	if (pgmap)
		pgmap_ref_put_many(pgmap, 1);
}

/* ----------------------------------------------- pages into service */

void zone_device_page_init(struct page *page, struct dev_pagemap *pgmap,
			   unsigned int order)
{
	unsigned long nr = 1UL << order;
	unsigned long pfn = page_to_pfn(page);

	if (HETMM_WARN_ON_ONCE(!pgmap || !pgmap->machine ||
			       !IS_ALIGNED(pfn, nr) ||
			       !pgmap_pfn_valid(pgmap, pfn) ||
			       !pgmap_pfn_valid(pgmap, pfn + nr - 1)))
		return;
	pgmap_online(pgmap, pfn, nr);
	/* The kernel WARNs when the pgmap is already dying, and goes on. */
	HETMM_WARN_ON_ONCE(atomic_load(&pgmap->dying));
	for (unsigned long i = 0; i < nr; i++) {
		struct page *p = page + i;

		HETMM_WARN_ON_ONCE(atomic_load_explicit(
			&p->_refcount, memory_order_relaxed));
		/* Forget what an earlier (larger) folio left behind. */
		atomic_store_explicit(&p->flags, 0, memory_order_relaxed);
		p->order = 0;
		__atomic_store_n(&p->head_offset, order ? (uint32_t)i : 0,
				 __ATOMIC_RELAXED);
		p->mapping = NULL;
		p->index = 0;
		p->pgmap = pgmap;
		atomic_store_explicit(&p->_mapcount, -1, memory_order_relaxed);
		atomic_store_explicit(&p->_large_mapcount, -1,
				      memory_order_relaxed);
		atomic_store_explicit(&p->_entire_mapcount, -1,
				      memory_order_relaxed);
		atomic_store_explicit(&p->_pincount, 0, memory_order_relaxed);
	}
	atomic_fetch_add(&pgmap->ref, (long)nr);
	if (order) {
		page->order = (uint8_t)order;
		PageSetFlag(page, PG_head);
	}
	PageSetFlag(page, PG_locked);
	atomic_store_explicit(&page->_refcount, 1, memory_order_release);
	count_stat(HETMM_STAT_pgmap_folio_init);
}

void zone_device_folio_init(struct folio *folio, struct dev_pagemap *pgmap,
			    unsigned int order)
{
	zone_device_page_init(&folio->page, pgmap, order);
	if (order && folio->page.pgmap == pgmap)
		folio_set_flag(folio, PG_large_rmappable);
}

struct folio *pgmap_request_folio(struct dev_pagemap *pgmap,
				  unsigned long pgmap_offset,
				  unsigned int order)
{
	unsigned long nr = 1UL << order, pfn;
	struct hetmm_machine *m;

	if (!pgmap || !pgmap->machine || order > MAX_PAGE_ORDER ||
	    !IS_ALIGNED(pgmap_offset, nr) || pgmap_offset + nr > pgmap->nr_pages)
		return NULL;
	if (pgmap->type != MEMORY_DEVICE_PRIVATE &&
	    pgmap->type != MEMORY_DEVICE_COHERENT)
		return NULL;
	if (atomic_load(&pgmap->dying))
		return NULL;
	pfn = pgmap_offset_to_pfn(pgmap, pgmap_offset);
	/* A folio never straddles two ranges. */
	if (pfn == -1UL || pgmap_offset_to_pfn(pgmap, pgmap_offset + nr - 1) !=
				   pfn + nr - 1)
		return NULL;
	m = pgmap->machine;
	pgmap_online(pgmap, pfn, nr);
	for (unsigned long i = 0; i < nr; i++)
		if (atomic_load_explicit(&pfn_to_page(m, pfn + i)->_refcount,
					 memory_order_acquire))
			return NULL; /* still in service */
	zone_device_folio_init((struct folio *)pfn_to_page(m, pfn), pgmap,
			       order);
	return (struct folio *)pfn_to_page(m, pfn);
}

/* ------------------------------------------------------ out of service */

static void memremap_folio_free(struct folio *folio)
{
	struct dev_pagemap *pgmap = folio->page.pgmap;
	unsigned long nr = folio_nr_pages(folio);

	if (HETMM_WARN_ON_ONCE(!pgmap))
		return;
	if (folio_mapped(folio))
		hetmm_bad_page(&folio->page, "device folio freed while mapped");
	if (folio_test_locked(folio))
		hetmm_bad_page(&folio->page, "device folio freed while locked");
	switch (pgmap->type) {
	case MEMORY_DEVICE_PRIVATE:
	case MEMORY_DEVICE_COHERENT:
		for (unsigned long i = 0; i < nr; i++)
			ClearPageAnonExclusive(folio_page(folio, i));
		folio_clear_flag(folio, PG_anon);
		folio_clear_flag(folio, PG_dirty);
		folio_clear_flag(folio, PG_swapbacked);
		folio->page.mapping = NULL;
		folio->page.index = 0;
		pgmap->ops->folio_free(folio);
		count_stat(HETMM_STAT_pgmap_folio_free);
		pgmap_ref_put_many(pgmap, (long)nr);
		break;
	case MEMORY_DEVICE_PCI_P2PDMA:
		if (pgmap->ops && pgmap->ops->folio_free)
			pgmap->ops->folio_free(folio);
		break;
	case MEMORY_DEVICE_GENERIC:
		/* Device-dax pages rest at refcount 1. */
		folio->page.mapping = NULL;
		atomic_store_explicit(&folio->page._refcount, 1,
				      memory_order_release);
		break;
	default:
		break;
	}
}

/* -------------------------------------------------------------- checker */

static void check_pgmap(struct hetmm_machine *m, struct dev_pagemap *pgmap,
			struct hetmm_check_ctx *ctx)
{
	long expect = atomic_load(&pgmap->dying) ? 0 : 1;
	bool per_page = pgmap->type != MEMORY_DEVICE_PRIVATE &&
			pgmap->type != MEMORY_DEVICE_COHERENT;

	for (int i = 0; i < pgmap->nr_range; i++) {
		const struct range *r = &pgmap->ranges[i];

		for (unsigned long p = 0; p < range_pages(r); p++) {
			unsigned long pfn = range_pfn(r) + p;
			struct page *page = pfn_to_page(m, pfn);
			int ref;

			if (!pgmap_pfn_online(pgmap, pfn)) {
				p += PGMAP_BLOCK_PAGES - 1;
				continue;
			}
			if (per_page) {
				expect++;
				continue;
			}
			if (page->zone != ZONE_DEVICE || page->pgmap != pgmap) {
				hetmm_check_fail(ctx,
						 "device pfn %#lx: struct page not "
						 "in ZONE_DEVICE of its pgmap",
						 pfn);
				continue;
			}
			if (PageTail(page))
				continue;
			ref = folio_ref_count((struct folio *)page);
			if (ref > 0) {
				expect += 1L << folio_order((struct folio *)page);
				continue;
			}
			if (ref < 0 || page_mapcount(page) ||
			    PageTestFlag(page, PG_locked))
				hetmm_check_fail(ctx,
						 "free device pfn %#lx: refcount %d "
						 "mapcount %d locked %d",
						 pfn, ref, page_mapcount(page),
						 PageTestFlag(page, PG_locked));
		}
	}
	if (atomic_load(&pgmap->ref) != expect)
		hetmm_check_fail(ctx,
				 "pgmap %p (owner %p): ref %ld, expected %ld "
				 "(pages in service + its own)",
				 (void *)pgmap, pgmap->owner,
				 (long)atomic_load(&pgmap->ref), expect);
}

static void memremap_check(struct hetmm_machine *m, void *arg,
			   struct hetmm_check_ctx *ctx)
{
	struct memremap_machine *mm = memremap_machine_peek(m);
	struct dev_pagemap *seen[64];
	unsigned int nr_seen = 0;
	unsigned long index = 0;
	void *entry;

	(void)arg;
	if (!mm)
		return;
	mutex_lock(&mm->lock);
	for (entry = xa_find(&mm->index, &index, ULONG_MAX, XA_PRESENT);
	     entry;
	     entry = xa_find_after(&mm->index, &index, ULONG_MAX, XA_PRESENT)) {
		struct dev_pagemap *pgmap = entry;
		bool done = false;

		if (!pgmap_pfn_valid(pgmap, index << BLOCK_SHIFT))
			hetmm_check_fail(ctx,
					 "pfn block %#lx indexes a pgmap that "
					 "does not cover it",
					 index);
		for (unsigned int i = 0; i < nr_seen && !done; i++)
			done = seen[i] == pgmap;
		if (done)
			continue;
		if (nr_seen < 64)
			seen[nr_seen++] = pgmap;
		check_pgmap(m, pgmap, ctx);
	}
	mutex_unlock(&mm->lock);
}
