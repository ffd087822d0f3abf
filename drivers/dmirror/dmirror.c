// SPDX-License-Identifier: MIT
/*
 * dmirror.c - the dmirror reference device (the kernel's lib/test_hmm.c),
 * written against hetmm's hmm, migrate and memremap layers. See
 * hetmm/dmirror.h for the model and its differences from test_hmm.
 *
 * Objects:
 *   struct dmirror_module   per machine, in m->subsys[HETMM_SUBSYS_DRIVERS]:
 *                           the devices, released mirrors kept as closed
 *                           shells, the checker's argument
 *   struct dmirror_device   one minor: its chunks and allocator, its open
 *                           mirrors; its address is the owner cookie of all
 *                           its pgmaps (and of its migrations)
 *   struct dmirror_chunk    one DEVMEM_CHUNK_SIZE dev_pagemap and the free
 *                           lists of its page offsets
 *   struct dmirror          one open of a device by one process: a device
 *                           page table (xarray indexed by va >> PAGE_SHIFT)
 *                           and an interval notifier on the process's mm
 *
 * Locking:
 *   mod->lock (mutex)           probe, remove, open, release; the
 *                               devices' @present
 *   mdevice->devmem_lock (mutex) creating chunks, detaching them (RELEASE),
 *                               the dying list, one-pass eviction on close
 *   mdevice->lock (spinlock)    chunks[], every chunk's free lists, cursor,
 *                               counts, @remove; calloc, cfree, in_service.
 *                               Taken by folio_free, which may run under
 *                               page-table locks: nothing sleeps under it.
 *   mdevice->mirrors_lock (mutex) the device's list of open mirrors
 *   dmirror->mutex              the mirror's device page table; its
 *                               invalidate callback takes it (trylock when
 *                               not blockable) and calls set_seq under it
 *   Order: mod->lock -> mmap_lock -> mirrors_lock -> dmirror->mutex;
 *          devmem_lock -> mdevice->lock. Device page locks (migration) are
 *          held across mirrors_lock and dmirror->mutex, never the reverse.
 *          dmirror_mmap() takes no driver lock: its handler runs under
 *          the mapping process's mmap_lock (write), held by the mm layer,
 *          and only allocates system pages and inserts them.
 *          The copy engine (dmirror_copy) runs with the source and
 *          destination folios locked and no driver lock held.
 *          The checker runs under m->check_lock, which mod->lock holders
 *          may take (a lower layer registering its checker lazily), so it
 *          takes no mod->lock: it lists the mirrors under mirrors_lock with
 *          their mm pinned, then takes mmap_lock -> dmirror->mutex.
 *
 * Invariants (the "dmirror" checker verifies them on a quiet machine):
 *   - every entry of an open mirror's table names the page its mm maps at
 *     that address: a present PTE or PMD leaf of that pfn, a device-private
 *     entry of that pfn, or (atomic tag) a device-exclusive entry of it; a
 *     write tag needs a writable CPU entry; a mirror whose mm has exited
 *     has an empty table;
 *   - chunk->in_service == pages of the chunk with a non-zero refcount;
 *     the device's in_service is the sum over its chunks; every offset on
 *     a free list is free (refcount 0) and listed once;
 *   - after dmirror_remove() no chunk is mapped and no page is in service.
 * Device page-table entries hold no page references: the notifier erases
 * them before the CPU drops a page (spec 2.8, 6.1).
 * Every migration (to the device, back by command, by CPU fault, by
 * eviction) fills its destinations in dmirror_alloc_and_copy(): each page
 * is either fully migrated or fully restored. A destination that could
 * not be allocated or whose copy failed (the device_copy and copy_page
 * fault sites) is unlocked and put before the commit and its dst entry
 * left 0, so the core keeps the source; to system memory a large folio
 * moves whole or not at all. Eviction retries such pages until the chunk
 * is empty (RELEASE, remove) or leaves them for the next pass (close).
 * Pages of a device-file mapping (dmirror_mmap) are system pages held only
 * by the PTEs mapping them (refcount == mapcount at rest); the driver
 * keeps no list of them, so they are not in any counter above.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hetmm/check.h"
#include "hetmm/dmirror.h"
#include "hetmm/err.h"
#include "hetmm/hmm.h"
#include "hetmm/memremap.h"
#include "hetmm/migrate.h"
#include "hetmm/mm.h"
#include "hetmm/mmu_notifier.h"
#include "hetmm/xarray.h"

#define DEVMEM_CHUNK_PAGES (DEVMEM_CHUNK_SIZE >> PAGE_SHIFT)
#define DMIRROR_FAULT_PAGES 32UL /* pages per hmm_range_fault() call */
#define DMIRROR_MIGRATE_PAGES 512UL /* pages per migrate_vma transaction */
#define DMIRROR_EVICT_BATCH 512UL
#define DMIRROR_EVICT_TIMEOUT_MS 10000
#define DMIRROR_CHUNKS_RESERVE 16

/* Device page-table entries: value entries holding pfn << 2 | tag. */
#define DPT_TAG_BITS 2
#define DPT_TAG_MASK ((1UL << DPT_TAG_BITS) - 1)

struct dmirror_device;

struct dmirror_chunk {
	struct dev_pagemap pagemap;
	struct dmirror_device *mdevice;
	unsigned long base_pfn;
	unsigned long nr_pages;
	/* Under mdevice->lock: */
	bool remove;
	unsigned long fresh; /* offsets [fresh, nr_pages) never handed out */
	unsigned long *free_pages; /* stack of free order-0 offsets */
	unsigned long nr_free_pages;
	unsigned long *free_folios; /* stack of free PMD-order offsets */
	unsigned long nr_free_folios;
	unsigned long in_service; /* pages of this chunk in service */
	/* Under devmem_lock: */
	struct dmirror_chunk *next_dying;
};

struct dmirror_module;

struct dmirror_device {
	struct dmirror_module *mod;
	unsigned int minor;
	unsigned int zone_device_type; /* HMM_DMIRROR_MEMORY_DEVICE_* */
	bool present;
	uint64_t spm_start; /* coherent: the fixed region of its memory */

	struct mutex devmem_lock;
	struct dmirror_chunk *dying; /* detached, still mapped */
	unsigned int nr_mapped; /* chunks mapped (live + dying + in flight) */

	spinlock_t lock;
	struct dmirror_chunk **chunks;
	unsigned int nr_chunks, cap_chunks;
	unsigned long calloc, cfree, in_service;

	struct mutex mirrors_lock;
	struct list_head mirrors;
	unsigned int nr_mirrors;
};

struct dmirror_module {
	struct hetmm_machine *m;
	struct mutex lock;
	bool probed;
	struct dmirror_device devices[DMIRROR_NDEVICES];
	struct list_head closed; /* released mirrors, freed with the machine */
};

struct dmirror {
	struct dmirror_device *mdevice;
	struct xarray pt;
	struct mmu_interval_notifier notifier;
	struct mutex mutex;
	uint64_t flags; /* HMM_DMIRROR_FLAG_*, atomic accesses */
	bool released;
	struct list_head link; /* mdevice->mirrors, then mod->closed */
};

/* A temporary notifier of one SNAPSHOT step. */
struct dmirror_interval {
	struct mmu_interval_notifier notifier;
	struct dmirror *dmirror;
};

static const struct dev_pagemap_ops dmirror_devmem_ops;
static const struct mmu_interval_notifier_ops dmirror_min_ops;
static const struct mmu_interval_notifier_ops dmirror_mrn_ops;

static pthread_mutex_t dmirror_module_init_lock = PTHREAD_MUTEX_INITIALIZER;

/* ------------------------------------------------------------- helpers */

static uint64_t dmirror_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct hetmm_machine *dmirror_machine(const struct dmirror *d)
{
	return d->mdevice->mod->m;
}

static struct mm_struct *dmirror_mm(const struct dmirror *d)
{
	return d->notifier.mm;
}

static bool dmirror_is_private_zone(const struct dmirror_device *mdevice)
{
	return mdevice->zone_device_type == HMM_DMIRROR_MEMORY_DEVICE_PRIVATE;
}

static unsigned long dmirror_select_device(const struct dmirror_device *mdevice)
{
	return dmirror_is_private_zone(mdevice) ?
		       MIGRATE_VMA_SELECT_DEVICE_PRIVATE :
		       MIGRATE_VMA_SELECT_DEVICE_COHERENT;
}

static void *dpt_entry(unsigned long pfn, unsigned long tag)
{
	return xa_mk_value((pfn << DPT_TAG_BITS) | tag);
}

static unsigned long dpt_pfn(const void *entry)
{
	return xa_to_value(entry) >> DPT_TAG_BITS;
}

static unsigned long dpt_tag(const void *entry)
{
	return xa_to_value(entry) & DPT_TAG_MASK;
}

/* Test-and-clear of a one-shot fault-injection flag. */
static bool dmirror_take_flag(struct dmirror *d, uint64_t flag)
{
	if (!d || !(__atomic_load_n(&d->flags, __ATOMIC_RELAXED) & flag))
		return false;
	return __atomic_fetch_and(&d->flags, ~flag, __ATOMIC_ACQ_REL) & flag;
}

/* Is @page one of dmirror's device pages? */
static bool dmirror_owns_page(const struct page *page)
{
	return is_zone_device_page(page) &&
	       page_pgmap(page)->ops == &dmirror_devmem_ops;
}

static struct dmirror_chunk *dmirror_page_to_chunk(const struct page *page)
{
	return container_of(page_pgmap(page), struct dmirror_chunk, pagemap);
}

/* Copy a page's bytes out/in; a metadata-only machine has none. */
static void dmirror_copy_from_page(void *to, const struct page *page)
{
	const void *from = page_address(page);

	if (from)
		memcpy(to, from, PAGE_SIZE);
	else
		memset(to, 0, PAGE_SIZE);
}

static void dmirror_copy_to_page(struct page *page, const void *from)
{
	void *to = page_address(page);

	if (to)
		memcpy(to, from, PAGE_SIZE);
}

/* --------------------------------------------------- device page tables */

/* Erase [start, end) from @d's table. Context: d->mutex held. */
static void dmirror_do_update(struct dmirror *d, unsigned long start,
			      unsigned long end)
{
	if (end <= start)
		return;
	xa_erase_range(&d->pt, start >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT);
}

/*
 * Erase [start, end) of @mm from every mirror of @mdevice but @except.
 * A migration of this device's own pages sends MIGRATE events that its
 * mirrors ignore, so the migrating code clears them here.
 */
static void dmirror_device_erase(struct dmirror_device *mdevice,
				 struct mm_struct *mm, unsigned long start,
				 unsigned long end, struct dmirror *except)
{
	struct dmirror *d;

	mutex_lock(&mdevice->mirrors_lock);
	list_for_each_entry(d, &mdevice->mirrors, link) {
		if (d == except || dmirror_mm(d) != mm)
			continue;
		mutex_lock(&d->mutex);
		dmirror_do_update(d, start, end);
		mutex_unlock(&d->mutex);
	}
	mutex_unlock(&mdevice->mirrors_lock);
}

static bool dmirror_interval_invalidate(struct mmu_interval_notifier *mni,
					const struct mmu_notifier_range *range,
					unsigned long cur_seq)
{
	struct dmirror *d = container_of(mni, struct dmirror, notifier);

	bool own = range->event == MMU_NOTIFY_MIGRATE &&
		   range->owner == d->mdevice;

	if (mmu_notifier_range_blockable(range))
		mutex_lock(&d->mutex);
	else if (!mutex_trylock(&d->mutex))
		return false;
	mmu_interval_set_seq(mni, cur_seq);
	/*
	 * Our own migrations update the table themselves (they erase while
	 * copying back, and map after migrate_vma_pages()), so the range is
	 * left alone, as test_hmm does. test_hmm does not even record the
	 * sequence: a device fault of this mirror racing the migration could
	 * then install the page being migrated away after the migration
	 * mapped its replacement. Recording it makes that fault retry.
	 */
	if (!own)
		dmirror_do_update(d, range->start, range->end);
	mutex_unlock(&d->mutex);
	return true;
}

static const struct mmu_interval_notifier_ops dmirror_min_ops = {
	.invalidate = dmirror_interval_invalidate,
};

/* ------------------------------------------------------ chunks, allocator */

static void dmirror_chunk_destroy(struct dmirror_chunk *chunk)
{
	free(chunk->free_pages);
	free(chunk->free_folios);
	free(chunk);
}

/* Map a new chunk for @mdevice (not yet published). */
static struct dmirror_chunk *
dmirror_chunk_create(struct dmirror_device *mdevice)
{
	struct hetmm_machine *m = mdevice->mod->m;
	struct dmirror_chunk *chunk;
	uint64_t start;
	int ret;

	chunk = calloc(1, sizeof(*chunk));
	if (!chunk)
		return ERR_PTR(-ENOMEM);
	chunk->nr_pages = DEVMEM_CHUNK_PAGES;
	chunk->free_pages = calloc(chunk->nr_pages, sizeof(unsigned long));
	chunk->free_folios =
		calloc(chunk->nr_pages / HPAGE_PMD_NR, sizeof(unsigned long));
	if (!chunk->free_pages || !chunk->free_folios) {
		ret = -ENOMEM;
		goto err_free;
	}

	if (dmirror_is_private_zone(mdevice)) {
		ret = request_free_mem_region(m, DEVMEM_CHUNK_SIZE, &start);
		if (ret)
			goto err_free;
		chunk->pagemap.type = MEMORY_DEVICE_PRIVATE;
	} else {
		/* The fixed region: a second chunk collides with the first. */
		start = mdevice->spm_start;
		chunk->pagemap.type = MEMORY_DEVICE_COHERENT;
	}
	chunk->pagemap.flags = PGMAP_ON_DEMAND;
	chunk->pagemap.ops = &dmirror_devmem_ops;
	chunk->pagemap.owner = mdevice;
	chunk->pagemap.nr_range = 1;
	chunk->pagemap.ranges[0].start = start;
	chunk->pagemap.ranges[0].end = start + DEVMEM_CHUNK_SIZE - 1;
	chunk->mdevice = mdevice;
	chunk->base_pfn = (unsigned long)(start >> PAGE_SHIFT);

	ret = memremap_pages(m, &chunk->pagemap);
	if (ret)
		goto err_region;
	mutex_lock(&mdevice->devmem_lock);
	mdevice->nr_mapped++;
	mutex_unlock(&mdevice->devmem_lock);
	return chunk;

err_region:
	if (dmirror_is_private_zone(mdevice))
		release_mem_region(m, start, DEVMEM_CHUNK_SIZE);
err_free:
	dmirror_chunk_destroy(chunk);
	return ERR_PTR(ret);
}

/* Unmap an empty, detached chunk and give its region back. */
static void dmirror_chunk_unmap(struct dmirror_chunk *chunk)
{
	struct dmirror_device *mdevice = chunk->mdevice;
	struct hetmm_machine *m = mdevice->mod->m;

	memunmap_pages(&chunk->pagemap);
	if (dmirror_is_private_zone(mdevice))
		release_mem_region(m, chunk->pagemap.ranges[0].start,
				   DEVMEM_CHUNK_SIZE);
	mutex_lock(&mdevice->devmem_lock);
	mdevice->nr_mapped--;
	mutex_unlock(&mdevice->devmem_lock);
	dmirror_chunk_destroy(chunk);
}

/*
 * Publish @chunk in mdevice->chunks. Context: devmem_lock held.
 * Return: 0 or -ENOMEM.
 */
static int dmirror_chunk_publish(struct dmirror_device *mdevice,
				 struct dmirror_chunk *chunk)
{
	struct dmirror_chunk **old = NULL, **new = NULL;
	unsigned int cap = mdevice->cap_chunks;

	if (mdevice->nr_chunks == cap) {
		cap += DMIRROR_CHUNKS_RESERVE;
		new = calloc(cap, sizeof(*new));
		if (!new)
			return -ENOMEM;
	}
	spin_lock(&mdevice->lock);
	if (new) {
		if (mdevice->nr_chunks)
			memcpy(new, mdevice->chunks,
			       mdevice->nr_chunks * sizeof(*new));
		old = mdevice->chunks;
		mdevice->chunks = new;
		mdevice->cap_chunks = cap;
	}
	mdevice->chunks[mdevice->nr_chunks++] = chunk;
	spin_unlock(&mdevice->lock);
	free(old);
	return 0;
}

static void dmirror_push_page(struct dmirror_chunk *chunk, unsigned long off)
{
	if (!HETMM_WARN_ON_ONCE(chunk->nr_free_pages >= chunk->nr_pages))
		chunk->free_pages[chunk->nr_free_pages++] = off;
}

/*
 * Take a free offset of order 0 or PMD_ORDER: a free list first, then
 * never-used space, and for a single page as a last resort a free folio
 * broken up. Accounts the pages as allocated.
 * Context: mdevice->lock held. Return: the chunk, or NULL.
 */
static struct dmirror_chunk *dmirror_take_offset(struct dmirror_device *mdevice,
						 unsigned int order,
						 unsigned long *off)
{
	unsigned long nr = 1UL << order;
	struct dmirror_chunk *c = NULL;
	unsigned int i;

	for (i = 0; i < mdevice->nr_chunks; i++) {
		c = mdevice->chunks[i];
		if (!order && c->nr_free_pages) {
			*off = c->free_pages[--c->nr_free_pages];
			goto got;
		}
		if (order && c->nr_free_folios) {
			*off = c->free_folios[--c->nr_free_folios];
			goto got;
		}
	}
	for (i = 0; i < mdevice->nr_chunks; i++) {
		unsigned long a;

		c = mdevice->chunks[i];
		if (!order && c->fresh < c->nr_pages) {
			*off = c->fresh++;
			goto got;
		}
		a = ALIGN(c->fresh, nr);
		if (order && a + nr <= c->nr_pages) {
			/* The pages skipped for alignment become singles. */
			for (; c->fresh < a; c->fresh++)
				dmirror_push_page(c, c->fresh);
			c->fresh = a + nr;
			*off = a;
			goto got;
		}
	}
	for (i = 0; !order && i < mdevice->nr_chunks; i++) {
		unsigned long f;

		c = mdevice->chunks[i];
		if (!c->nr_free_folios)
			continue;
		f = c->free_folios[--c->nr_free_folios];
		for (unsigned long p = HPAGE_PMD_NR - 1; p > 0; p--)
			dmirror_push_page(c, f + p);
		*off = f;
		goto got;
	}
	return NULL;

got:
	c->in_service += nr;
	mdevice->in_service += nr;
	mdevice->calloc += nr;
	return c;
}

/*
 * Undo the accounting of dmirror_take_offset() for an offset that could
 * not be put into service; the offset itself is leaked, never reused.
 */
static void dmirror_untake_offset(struct dmirror_chunk *chunk,
				  unsigned int order)
{
	struct dmirror_device *mdevice = chunk->mdevice;
	unsigned long nr = 1UL << order;

	spin_lock(&mdevice->lock);
	chunk->in_service -= nr;
	mdevice->in_service -= nr;
	mdevice->calloc -= nr;
	spin_unlock(&mdevice->lock);
}

/* Could dmirror_take_offset() succeed now? Context: mdevice->lock. */
static bool dmirror_has_room(struct dmirror_device *mdevice, unsigned int order)
{
	unsigned long nr = 1UL << order;

	for (unsigned int i = 0; i < mdevice->nr_chunks; i++) {
		struct dmirror_chunk *c = mdevice->chunks[i];

		if (c->nr_free_folios ||
		    ALIGN(c->fresh, nr) + nr <= c->nr_pages)
			return true;
		if (!order && c->nr_free_pages)
			return true;
	}
	return false;
}

/*
 * Make room for an allocation of @order: unless free space appeared
 * meanwhile, map a new chunk. Return: 0 (try again) or a negative errno.
 */
static int dmirror_grow(struct dmirror_device *mdevice, unsigned int order)
{
	struct dmirror_chunk *chunk;
	bool room;
	int ret;

	/* One grower at a time; the others find its chunk afterwards. */
	mutex_lock(&mdevice->devmem_lock);
	spin_lock(&mdevice->lock);
	room = dmirror_has_room(mdevice, order);
	spin_unlock(&mdevice->lock);
	if (room) {
		mutex_unlock(&mdevice->devmem_lock);
		return 0;
	}
	mutex_unlock(&mdevice->devmem_lock);
	chunk = dmirror_chunk_create(mdevice);
	if (IS_ERR(chunk))
		return (int)PTR_ERR(chunk);
	mutex_lock(&mdevice->devmem_lock);
	ret = dmirror_chunk_publish(mdevice, chunk);
	mutex_unlock(&mdevice->devmem_lock);
	if (ret)
		dmirror_chunk_unmap(chunk);
	return ret;
}

/*
 * dmirror_devmem_alloc - a device folio of @order (0 or PMD_ORDER),
 * locked, refcount 1, zone_device_data = @owner on every page; or NULL
 * (device memory exhausted, or an injected device_alloc failure).
 */
static struct folio *dmirror_devmem_alloc(struct dmirror_device *mdevice,
					  struct dmirror *owner,
					  unsigned int order)
{
	struct hetmm_machine *m = mdevice->mod->m;
	struct dmirror_chunk *chunk;
	struct folio *folio;
	unsigned long off;

	if (should_fail(&m->faults, HETMM_FAULT_device_alloc))
		return NULL;
	for (int tries = 0;; tries++) {
		spin_lock(&mdevice->lock);
		chunk = dmirror_take_offset(mdevice, order, &off);
		spin_unlock(&mdevice->lock);
		if (chunk)
			break;
		if (tries == 8 || dmirror_grow(mdevice, order))
			return NULL;
	}
	folio = pgmap_request_folio(&chunk->pagemap, off, order);
	if (HETMM_WARN_ON_ONCE(!folio)) {
		/* Still in service?! Leak the offset rather than reuse it. */
		dmirror_untake_offset(chunk, order);
		return NULL;
	}
	for (unsigned long i = 0; i < folio_nr_pages(folio); i++)
		folio_page(folio, i)->zone_device_data = owner;
	return folio;
}

/* ops->folio_free: the last reference to a device folio went away. */
static void dmirror_devmem_free(struct folio *folio)
{
	struct dmirror_chunk *chunk = dmirror_page_to_chunk(&folio->page);
	struct dmirror_device *mdevice = chunk->mdevice;
	unsigned int order = folio_order(folio);
	unsigned long nr = 1UL << order;
	unsigned long off = folio_pfn(folio) - chunk->base_pfn;

	for (unsigned long i = 0; i < nr; i++)
		folio_page(folio, i)->zone_device_data = NULL;
	spin_lock(&mdevice->lock);
	chunk->in_service -= nr;
	mdevice->in_service -= nr;
	/* A chunk being removed keeps its pages off the free lists. */
	if (!chunk->remove) {
		mdevice->cfree += nr;
		if (order == PMD_ORDER)
			chunk->free_folios[chunk->nr_free_folios++] = off;
		else
			for (unsigned long i = 0; i < nr; i++)
				dmirror_push_page(chunk, off + i);
	}
	spin_unlock(&mdevice->lock);
}

/* ------------------------------------------------------------ copy engine */

/*
 * dmirror_copy - the device's copy engine (its DMA): fill the first @nr
 * pages of @dst from pages @first .. @first + @nr - 1 of @sfolio, or zero
 * them when @sfolio is NULL (a hole: nothing is transferred). A transfer
 * fails the way DMA can: at the machine's device_copy site, and at the
 * copy_page site, through folio_mc_copy() for a whole folio (streaming
 * stores when large) or, for a single page of a larger folio (the split
 * fallbacks, which folio_mc_copy() cannot take), by checking that site
 * itself.
 * Return: 0, or -EIO (@dst holds nothing usable).
 */
static int dmirror_copy(struct folio *dst, struct folio *sfolio,
			unsigned long first, unsigned long nr)
{
	struct hetmm_machine *m = folio_machine(dst);

	if (!sfolio) {
		for (unsigned long p = 0; p < nr; p++)
			clear_highpage(folio_page(dst, p));
		return 0;
	}
	if (should_fail(&m->faults, HETMM_FAULT_device_copy))
		return -EIO;
	if (!first && folio_order(dst) == folio_order(sfolio))
		return folio_mc_copy(dst, sfolio) ? -EIO : 0;
	if (should_fail(&m->faults, HETMM_FAULT_copy_page))
		return -EIO;
	for (unsigned long p = 0; p < nr; p++)
		copy_highpage(folio_page(dst, p),
			      folio_page(sfolio, first + p));
	return 0;
}

/*
 * struct dmirror_xfer - one direction of dmirror_alloc_and_copy(): where
 * destinations come from, and what a destination that cannot be had (no
 * memory, a failed copy) does to the rest of the batch.
 * @mdevice: the device migrating.
 * @d: whose FAIL_ALLOC flag the first allocation of each entry honours,
 *     and the owner recorded in new device pages; NULL (eviction): none.
 * @to_device: destinations are device folios of @mdevice, else system
 *             folios (GFP_HIGHUSER_MOVABLE).
 * @split: an entry whose large destination cannot be allocated falls back
 *         to single pages (the core then splits the source); needs a vma.
 * @stop: the first failure ends the batch and undoes the pages already
 *        filled for that entry (to system: a folio moves whole or not at
 *        all); else only the pages that failed stay behind.
 */
struct dmirror_xfer {
	struct dmirror_device *mdevice;
	struct dmirror *d;
	bool to_device;
	bool split;
	bool stop;
};

/* Is @spage (NULL: a hole or the zero page) a source @x may move? */
static bool dmirror_xfer_source(const struct dmirror_xfer *x,
				struct page *spage)
{
	if (x->to_device)
		return !HETMM_WARN_ON_ONCE(spage && is_zone_device_page(spage));
	return spage && !HETMM_WARN_ON_ONCE(!dmirror_owns_page(spage));
}

/* A destination folio of @order, locked, one reference; or NULL. */
static struct folio *dmirror_xfer_alloc(const struct dmirror_xfer *x,
					unsigned int order, bool first)
{
	struct folio *folio;

	if (first && dmirror_take_flag(x->d, HMM_DMIRROR_FLAG_FAIL_ALLOC))
		return NULL;
	if (x->to_device)
		return dmirror_devmem_alloc(x->mdevice, x->d, order);
	folio = folio_alloc(x->mdevice->mod->m, GFP_HIGHUSER_MOVABLE, order);
	if (folio)
		folio_lock(folio);
	return folio;
}

/* A destination that will not be used: its dst entry stays 0. */
static void dmirror_xfer_drop(struct folio *folio)
{
	folio_unlock(folio);
	folio_put(folio);
}

/*
 * Allocate and fill the destination of the source entry @s (@nr pages of
 * @sfolio; NULL for a hole) into @dst[0 .. @nr): one folio of @order, or
 * with x->split after a failed large allocation one page at a time.
 * Return: 0, -ENOMEM (no destination) or -EIO (a copy failed); the pages
 * left behind have their dst entry 0, so the core restores them.
 */
static int dmirror_xfer_entry(const struct dmirror_xfer *x, unsigned long s,
			      struct folio *sfolio, unsigned int order,
			      unsigned long *dst, unsigned long nr)
{
	struct hetmm_machine *m = x->mdevice->mod->m;
	unsigned long flags = s & MIGRATE_PFN_WRITE;
	struct folio *dfolio;
	int ret = 0, err;

	for (unsigned long p = 1; p < nr; p++)
		dst[p] = 0;
	dfolio = dmirror_xfer_alloc(x, order, true);
	if (dfolio) {
		err = dmirror_copy(dfolio, sfolio, 0, nr);
		if (err) {
			dmirror_xfer_drop(dfolio);
			return err;
		}
		dst[0] = migrate_pfn(folio_pfn(dfolio)) | flags |
			 (order ? MIGRATE_PFN_COMPOUND : 0);
		return 0;
	}
	if (!order || !x->split)
		return -ENOMEM;
	/*
	 * No large destination: single pages, one per subpage; the core then
	 * splits the source folio (or fills the hole page by page).
	 */
	for (unsigned long p = 0; p < nr; p++) {
		dfolio = dmirror_xfer_alloc(x, 0, false);
		err = dfolio ? dmirror_copy(dfolio, sfolio, p, 1) : -ENOMEM;
		if (!err) {
			dst[p] = migrate_pfn(folio_pfn(dfolio)) | flags;
			continue;
		}
		if (dfolio)
			dmirror_xfer_drop(dfolio);
		if (!ret)
			ret = err;
		if (!x->stop)
			continue;
		while (p-- > 0) {
			dmirror_xfer_drop(
				page_folio(migrate_pfn_to_page(m, dst[p])));
			dst[p] = 0;
		}
		break;
	}
	return ret;
}

/*
 * dmirror_alloc_and_copy - the driver's half of a migration, between
 * collection (migrate_vma_setup() or migrate_device_range()) and commit:
 * give every entry of @src[0 .. @npages) marked MIGRATE a locked
 * destination in @dst holding its data. An entry left with dst 0 (no
 * memory, a failed copy, a source we do not move) is restored by the
 * core, so each page ends up fully migrated or fully restored.
 * Return: 0, or the first failure: -ENOMEM or -EIO (with x->stop the
 * entries after it were not tried).
 */
static int dmirror_alloc_and_copy(const struct dmirror_xfer *x,
				  const unsigned long *src, unsigned long *dst,
				  unsigned long npages)
{
	struct hetmm_machine *m = x->mdevice->mod->m;
	unsigned long nr;
	int ret = 0;

	for (unsigned long i = 0; i < npages; i += nr) {
		unsigned long s = src[i];
		struct page *spage = migrate_pfn_to_page(m, s);
		struct folio *sfolio = spage ? page_folio(spage) : NULL;
		unsigned int order = 0;
		int err;

		nr = 1;
		dst[i] = 0;
		if (!(s & MIGRATE_PFN_MIGRATE) ||
		    !dmirror_xfer_source(x, spage))
			continue;
		if (s & MIGRATE_PFN_COMPOUND) {
			/* A device folio is a single page or PMD-sized. */
			order = x->to_device ? PMD_ORDER : folio_order(sfolio);
			nr = sfolio ? folio_nr_pages(sfolio) : HPAGE_PMD_NR;
			nr = min(nr, npages - i);
		}
		err = dmirror_xfer_entry(x, s, sfolio, order, dst + i, nr);
		if (err && !ret)
			ret = err;
		if (err && x->stop)
			break;
	}
	return ret;
}

/* --------------------------------------------------------------- eviction */

/*
 * Migrate the in-service pages of [pfn, pfn + n) back to system memory.
 * Without a vma a source cannot be split: each destination has its
 * source's order, and a page that cannot move now is left for the next
 * pass. Return: 0, -ENOMEM or -EIO (some page stayed on the device).
 */
static int dmirror_evict_batch(struct dmirror_device *mdevice,
			       unsigned long pfn, unsigned long n,
			       unsigned long *src, unsigned long *dst)
{
	const struct dmirror_xfer x = { .mdevice = mdevice };
	struct hetmm_machine *m = mdevice->mod->m;
	int ret;

	migrate_device_range(src, m, pfn, n);
	ret = dmirror_alloc_and_copy(&x, src, dst, n);
	migrate_device_pages(m, src, dst, n);
	migrate_device_finalize(m, src, dst, n);
	return ret;
}

/*
 * Evict every page of @chunk in service. One pass (pages locked or being
 * freed by someone else stay), or with @until_empty until the chunk is
 * empty (failed allocations and failed copies are then retried too: the
 * page is still on the device, intact). Return: 0, -ENOMEM (system memory
 * ran out) or -EIO (copies kept failing) at the deadline, -EBUSY (pages
 * stayed busy for DMIRROR_EVICT_TIMEOUT_MS).
 */
static int dmirror_evict_chunk(struct dmirror_chunk *chunk, bool until_empty)
{
	struct dmirror_device *mdevice = chunk->mdevice;
	uint64_t deadline = dmirror_now_ms() + DMIRROR_EVICT_TIMEOUT_MS;
	unsigned long src[DMIRROR_EVICT_BATCH], dst[DMIRROR_EVICT_BATCH];
	unsigned long left;
	int ret = 0;

	for (;;) {
		for (unsigned long p = 0; p < chunk->nr_pages && !ret;
		     p += DMIRROR_EVICT_BATCH) {
			if (!pgmap_pfn_online(&chunk->pagemap,
					      chunk->base_pfn + p))
				continue;
			ret = dmirror_evict_batch(mdevice, chunk->base_pfn + p,
						  DMIRROR_EVICT_BATCH, src,
						  dst);
		}
		/*
		 * Until empty, a failed allocation or copy is retried like a
		 * busy page (injected failures are transient; a hot-unplug
		 * must not give up on the first one).
		 */
		if (!until_empty || (ret && ret != -ENOMEM && ret != -EIO))
			return ret;
		spin_lock(&mdevice->lock);
		left = chunk->in_service;
		spin_unlock(&mdevice->lock);
		if (!left)
			return 0;
		if (dmirror_now_ms() > deadline)
			return ret ? ret : -EBUSY;
		ret = 0;
		sched_yield();
	}
}

/* One eviction pass over every live chunk of @mdevice (close()). */
static void dmirror_device_evict_all(struct dmirror_device *mdevice)
{
	mutex_lock(&mdevice->devmem_lock);
	for (unsigned int i = 0; i < mdevice->nr_chunks; i++)
		dmirror_evict_chunk(mdevice->chunks[i], false);
	mutex_unlock(&mdevice->devmem_lock);
}

/*
 * RELEASE: detach every chunk (new allocations map new ones), evict it
 * completely, unmap it and give its region back. Chunks that cannot be
 * emptied stay on the dying list for the next attempt.
 */
static int dmirror_device_remove_chunks(struct dmirror_device *mdevice)
{
	struct dmirror_chunk *chunk;
	int ret = 0;

	mutex_lock(&mdevice->devmem_lock);
	spin_lock(&mdevice->lock);
	for (unsigned int i = 0; i < mdevice->nr_chunks; i++) {
		chunk = mdevice->chunks[i];
		chunk->remove = true;
		chunk->nr_free_pages = 0;
		chunk->nr_free_folios = 0;
		chunk->fresh = chunk->nr_pages;
		chunk->next_dying = mdevice->dying;
		mdevice->dying = chunk;
	}
	mdevice->nr_chunks = 0;
	spin_unlock(&mdevice->lock);
	mutex_unlock(&mdevice->devmem_lock);

	for (;;) {
		mutex_lock(&mdevice->devmem_lock);
		chunk = mdevice->dying;
		if (chunk)
			mdevice->dying = chunk->next_dying;
		mutex_unlock(&mdevice->devmem_lock);
		if (!chunk)
			break;
		ret = dmirror_evict_chunk(chunk, true);
		if (ret) {
			mutex_lock(&mdevice->devmem_lock);
			chunk->next_dying = mdevice->dying;
			mdevice->dying = chunk;
			mutex_unlock(&mdevice->devmem_lock);
			break;
		}
		dmirror_chunk_unmap(chunk);
	}
	return ret;
}

/* ---------------------------------------------------------- module state */

static struct dmirror_module *dmirror_module_peek(struct hetmm_machine *m)
{
	return __atomic_load_n(
		(struct dmirror_module **)&m->subsys[HETMM_SUBSYS_DRIVERS],
		__ATOMIC_ACQUIRE);
}

static void dmirror_check(struct hetmm_machine *m, void *arg,
			  struct hetmm_check_ctx *ctx);

static void __dmirror_close(struct dmirror *d);

static void dmirror_module_destroy(struct hetmm_machine *m)
{
	struct dmirror_module *mod = dmirror_module_peek(m);
	struct dmirror *d, *tmp;

	if (!mod)
		return;
	if (HETMM_WARN_ON_ONCE(mod->probed))
		dmirror_remove(m);
	list_for_each_entry_safe(d, tmp, &mod->closed, link) {
		list_del(&d->link);
		mutex_destroy(&d->mutex);
		free(d);
	}
	for (unsigned int i = 0; i < DMIRROR_NDEVICES; i++) {
		struct dmirror_device *mdevice = &mod->devices[i];

		free(mdevice->chunks);
		mutex_destroy(&mdevice->devmem_lock);
		mutex_destroy(&mdevice->mirrors_lock);
	}
	mutex_destroy(&mod->lock);
	free(mod);
	m->subsys[HETMM_SUBSYS_DRIVERS] = NULL;
}

static struct dmirror_module *dmirror_module_get(struct hetmm_machine *m)
{
	struct dmirror_module *mod = dmirror_module_peek(m);

	if (mod)
		return mod;
	pthread_mutex_lock(&dmirror_module_init_lock);
	mod = dmirror_module_peek(m);
	if (mod)
		goto out;
	mod = calloc(1, sizeof(*mod));
	if (!mod)
		goto out;
	mod->m = m;
	mutex_init(&mod->lock);
	INIT_LIST_HEAD(&mod->closed);
	for (unsigned int i = 0; i < DMIRROR_NDEVICES; i++) {
		struct dmirror_device *mdevice = &mod->devices[i];

		mdevice->mod = mod;
		mdevice->minor = i;
		mutex_init(&mdevice->devmem_lock);
		spin_lock_init(&mdevice->lock);
		mutex_init(&mdevice->mirrors_lock);
		INIT_LIST_HEAD(&mdevice->mirrors);
	}
	m->subsys_destroy[HETMM_SUBSYS_DRIVERS] = dmirror_module_destroy;
	__atomic_store_n(
		(struct dmirror_module **)&m->subsys[HETMM_SUBSYS_DRIVERS], mod,
		__ATOMIC_RELEASE);
	hetmm_checker_register(m, "dmirror", dmirror_check, mod);
out:
	pthread_mutex_unlock(&dmirror_module_init_lock);
	return mod;
}

/* Take @mdevice down: its chunks, its spm region. Context: mod->lock. */
static void dmirror_device_teardown(struct dmirror_device *mdevice)
{
	struct hetmm_machine *m = mdevice->mod->m;
	int ret;

	if (!mdevice->present)
		return;
	ret = dmirror_device_remove_chunks(mdevice);
	HETMM_WARN_ON_ONCE(ret);
	if (!ret && !dmirror_is_private_zone(mdevice))
		release_mem_region(m, mdevice->spm_start, DEVMEM_CHUNK_SIZE);
	WRITE_ONCE(mdevice->present, false);
	mdevice->zone_device_type = 0;
}

/* Bring up one device with its first chunk. Context: mod->lock. */
static int dmirror_device_setup(struct dmirror_device *mdevice,
				unsigned int type)
{
	struct hetmm_machine *m = mdevice->mod->m;
	struct dmirror_chunk *chunk;
	int ret;

	mdevice->zone_device_type = type;
	mdevice->calloc = mdevice->cfree = mdevice->in_service = 0;
	if (type == HMM_DMIRROR_MEMORY_DEVICE_COHERENT) {
		ret = request_free_mem_region(m, DEVMEM_CHUNK_SIZE,
					      &mdevice->spm_start);
		if (ret)
			goto err;
	}
	chunk = dmirror_chunk_create(mdevice);
	if (IS_ERR(chunk)) {
		ret = (int)PTR_ERR(chunk);
		goto err_spm;
	}
	mutex_lock(&mdevice->devmem_lock);
	ret = dmirror_chunk_publish(mdevice, chunk);
	mutex_unlock(&mdevice->devmem_lock);
	if (ret) {
		dmirror_chunk_unmap(chunk);
		goto err_spm;
	}
	WRITE_ONCE(mdevice->present, true);
	return 0;

err_spm:
	if (type == HMM_DMIRROR_MEMORY_DEVICE_COHERENT)
		release_mem_region(m, mdevice->spm_start, DEVMEM_CHUNK_SIZE);
err:
	mdevice->zone_device_type = 0;
	return ret;
}

int dmirror_probe(struct hetmm_machine *m, unsigned int nr_private,
		  unsigned int nr_coherent)
{
	struct dmirror_module *mod;
	int ret = 0;

	if (!m || nr_private > 2 || nr_coherent > 2 ||
	    !(nr_private + nr_coherent))
		return -EINVAL;
	mod = dmirror_module_get(m);
	if (!mod)
		return -ENOMEM;
	mutex_lock(&mod->lock);
	if (mod->probed) {
		ret = -EBUSY;
		goto out;
	}
	for (unsigned int i = 0; i < nr_private && !ret; i++)
		ret = dmirror_device_setup(&mod->devices[i],
					   HMM_DMIRROR_MEMORY_DEVICE_PRIVATE);
	for (unsigned int i = 0; i < nr_coherent && !ret; i++)
		ret = dmirror_device_setup(&mod->devices[2 + i],
					   HMM_DMIRROR_MEMORY_DEVICE_COHERENT);
	if (ret) {
		for (unsigned int i = 0; i < DMIRROR_NDEVICES; i++)
			dmirror_device_teardown(&mod->devices[i]);
		goto out;
	}
	mod->probed = true;
out:
	mutex_unlock(&mod->lock);
	return ret;
}

void dmirror_remove(struct hetmm_machine *m)
{
	struct dmirror_module *mod = m ? dmirror_module_peek(m) : NULL;

	if (!mod)
		return;
	mutex_lock(&mod->lock);
	if (!mod->probed)
		goto out;
	for (unsigned int i = 0; i < DMIRROR_NDEVICES; i++) {
		struct dmirror_device *mdevice = &mod->devices[i];

		/* A module cannot go while files are open: close them. */
		for (;;) {
			struct dmirror *d;

			mutex_lock(&mdevice->mirrors_lock);
			d = list_first_entry_or_null(&mdevice->mirrors,
						     struct dmirror, link);
			mutex_unlock(&mdevice->mirrors_lock);
			if (!d)
				break;
			__dmirror_close(d);
		}
		dmirror_device_teardown(mdevice);
	}
	mod->probed = false;
out:
	mutex_unlock(&mod->lock);
}

int dmirror_device_counters(struct hetmm_machine *m, unsigned int minor,
			    struct dmirror_counters *c)
{
	struct dmirror_module *mod = m ? dmirror_module_peek(m) : NULL;
	struct dmirror_device *mdevice;
	int ret = 0;

	if (!mod || minor >= DMIRROR_NDEVICES || !c)
		return -ENODEV;
	mdevice = &mod->devices[minor];
	mutex_lock(&mod->lock);
	if (!mod->probed || !mdevice->present) {
		ret = -ENODEV;
		goto out;
	}
	memset(c, 0, sizeof(*c));
	c->type = mdevice->zone_device_type;
	mutex_lock(&mdevice->devmem_lock);
	c->nr_chunks = mdevice->nr_mapped;
	spin_lock(&mdevice->lock);
	c->calloc = mdevice->calloc;
	c->cfree = mdevice->cfree;
	c->in_service = mdevice->in_service;
	spin_unlock(&mdevice->lock);
	mutex_unlock(&mdevice->devmem_lock);
	mutex_lock(&mdevice->mirrors_lock);
	c->nr_mirrors = mdevice->nr_mirrors;
	mutex_unlock(&mdevice->mirrors_lock);
out:
	mutex_unlock(&mod->lock);
	return ret;
}

/* -------------------------------------------------------- open and close */

struct dmirror *dmirror_open(struct hetmm_machine *m, unsigned int minor,
			     struct mm_struct *mm)
{
	struct dmirror_module *mod;
	struct dmirror_device *mdevice;
	struct dmirror *d;
	int ret;

	if (!m || !mm)
		return ERR_PTR(-EINVAL);
	mod = dmirror_module_peek(m);
	if (!mod || minor >= DMIRROR_NDEVICES)
		return ERR_PTR(-ENODEV);
	mdevice = &mod->devices[minor];
	mutex_lock(&mod->lock);
	if (!mod->probed || !mdevice->present) {
		ret = -ENODEV;
		goto err_unlock;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		ret = -ENOMEM;
		goto err_unlock;
	}
	d->mdevice = mdevice;
	mutex_init(&d->mutex);
	xa_init(&d->pt);
	ret = mmu_interval_notifier_insert(
		&d->notifier, mm, 0, ULONG_MAX & PAGE_MASK, &dmirror_min_ops);
	if (ret) {
		mutex_destroy(&d->mutex);
		free(d);
		goto err_unlock;
	}
	mutex_lock(&mdevice->mirrors_lock);
	list_add_tail(&d->link, &mdevice->mirrors);
	mdevice->nr_mirrors++;
	mutex_unlock(&mdevice->mirrors_lock);
	mutex_unlock(&mod->lock);
	return d;

err_unlock:
	mutex_unlock(&mod->lock);
	return ERR_PTR(ret);
}

/* Close @d, keeping the shell on mod->closed. Context: mod->lock held. */
static void __dmirror_close(struct dmirror *d)
{
	struct dmirror_device *mdevice = d->mdevice;

	/* Unlinked first: listed mirrors have their mm pinned. */
	mutex_lock(&mdevice->mirrors_lock);
	list_del(&d->link);
	mdevice->nr_mirrors--;
	mutex_unlock(&mdevice->mirrors_lock);
	/* Then no callback runs any more; may wait for one to end. */
	mmu_interval_notifier_remove(&d->notifier);
	mutex_lock(&d->mutex);
	xa_destroy(&d->pt);
	WRITE_ONCE(d->released, true);
	mutex_unlock(&d->mutex);
	list_add_tail(&d->link, &mdevice->mod->closed);
}

void dmirror_release(struct dmirror *d)
{
	struct dmirror_module *mod;

	if (IS_ERR_OR_NULL(d))
		return;
	mod = d->mdevice->mod;
	mutex_lock(&mod->lock);
	if (READ_ONCE(d->released)) {
		mutex_unlock(&mod->lock);
		return;
	}
	__dmirror_close(d);
	/* As test_hmm: closing any file evicts the whole device. */
	if (d->mdevice->present)
		dmirror_device_evict_all(d->mdevice);
	mutex_unlock(&mod->lock);
}

/* ------------------------------------------------------------- mmap */

/*
 * The device file's mmap handler (test_hmm's dmirror_fops_mmap): every
 * page of the VMA gets a zeroed system page of its own. The PTE holds the
 * only reference once we drop ours, so the pages go back to the allocator
 * when the mapping goes (munmap, exit, the last COW sharer). They are
 * plain kernel pages: not anon, not in any file, never on the device, and
 * the driver keeps no record of them. Context: mmap_lock held for write.
 */
static int dmirror_fops_mmap(struct vm_area_struct *vma, void *priv)
{
	struct hetmm_machine *m = priv;

	for (unsigned long addr = vma->vm_start; addr < vma->vm_end;
	     addr += PAGE_SIZE) {
		struct folio *folio = folio_alloc(m, __GFP_ZERO, 0);
		int ret;

		if (!folio)
			return -ENOMEM;
		ret = vm_insert_page(vma, addr, &folio->page);
		/* Mapped: the PTE has its own reference. Not: freed. */
		folio_put(folio);
		if (ret)
			return ret;
	}
	return 0;
}

long dmirror_mmap(struct dmirror *d, struct mm_struct *mm, unsigned long addr,
		  size_t len, int prot, int flags)
{
	if (IS_ERR_OR_NULL(d) || READ_ONCE(d->released))
		return -EINVAL;
	if (!mm)
		return -EINVAL;
	return hetmm_mmap_driver(mm, addr, len, prot, flags, dmirror_fops_mmap,
				 dmirror_machine(d));
}

/* ------------------------------------------------------ device faults */

/* Store what hmm_range_fault() returned. Context: d->mutex held. */
static int dmirror_do_fault(struct dmirror *d, struct hmm_range *range)
{
	struct hetmm_machine *m = dmirror_machine(d);
	unsigned long *pfns = range->hmm_pfns;
	unsigned long vpfn;

	for (vpfn = range->start >> PAGE_SHIFT;
	     vpfn < (range->end >> PAGE_SHIFT); vpfn++, pfns++) {
		unsigned long tag = DPT_XA_TAG_READ;
		int ret;

		/* A fault request never comes back ERROR or invalid. */
		if (HETMM_WARN_ON_ONCE((*pfns & HMM_PFN_ERROR) ||
				       !(*pfns & HMM_PFN_VALID)))
			return -EFAULT;
		if (*pfns & HMM_PFN_WRITE)
			tag = DPT_XA_TAG_WRITE;
		else if (HETMM_WARN_ON_ONCE(range->default_flags &
					    HMM_PFN_REQ_WRITE))
			return -EFAULT;
		if (HETMM_WARN_ON_ONCE(hmm_pfn_to_pfn(*pfns) >= m->max_pfn))
			return -EFAULT;
		ret = xa_store(&d->pt, vpfn,
			       dpt_entry(hmm_pfn_to_pfn(*pfns), tag));
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * dmirror_range_fault_lock - the read_begin / hmm_range_fault / read_retry
 * loop of spec 2.8 on range->notifier: fault until a result that no
 * invalidation overtook, retrying -EBUSY within DMIRROR_RANGE_FAULT_TIMEOUT.
 * Return: 0 with d->mutex held, so range->hmm_pfns stays valid until the
 * caller unlocks; or hmm_range_fault()'s error, or -EBUSY when the budget
 * ran out, with d->mutex not held.
 */
static int dmirror_range_fault_lock(struct dmirror *d, struct hmm_range *range)
{
	struct mm_struct *mm = dmirror_mm(d);
	uint64_t deadline = dmirror_now_ms() + DMIRROR_RANGE_FAULT_TIMEOUT;
	unsigned long n = (range->end - range->start) >> PAGE_SHIFT;
	int ret;

	for (;;) {
		if (dmirror_now_ms() > deadline)
			return -EBUSY;
		memset(range->hmm_pfns, 0, n * sizeof(*range->hmm_pfns));
		range->notifier_seq = mmu_interval_read_begin(range->notifier);
		mmap_read_lock(mm);
		ret = hmm_range_fault(range);
		mmap_read_unlock(mm);
		if (ret == -EBUSY)
			continue;
		if (ret)
			return ret;
		mutex_lock(&d->mutex);
		if (!mmu_interval_read_retry(range->notifier,
					     range->notifier_seq))
			return 0;
		mutex_unlock(&d->mutex);
	}
}

/* Fault @range into the device table. */
static int dmirror_range_fault(struct dmirror *d, struct hmm_range *range)
{
	int ret = dmirror_range_fault_lock(d, range);

	if (ret)
		return ret;
	ret = dmirror_do_fault(d, range);
	mutex_unlock(&d->mutex);
	return ret;
}

/* Fault [start, end) into the device table, 32 pages at a time. */
static int dmirror_fault(struct dmirror *d, unsigned long start,
			 unsigned long end, bool write)
{
	struct mm_struct *mm = dmirror_mm(d);
	unsigned long pfns[DMIRROR_FAULT_PAGES];
	struct hmm_range range = {
		.notifier = &d->notifier,
		.hmm_pfns = pfns,
		.pfn_flags_mask = 0,
		.default_flags =
			HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0),
		.dev_private_owner = d->mdevice,
	};
	int ret = 0;

	/* The mirrored process may be gone: nothing to fault then. */
	if (!mmget_not_zero(mm))
		return 0;
	for (unsigned long addr = start; addr < end; addr = range.end) {
		range.start = addr;
		range.end =
			min(addr + (DMIRROR_FAULT_PAGES << PAGE_SHIFT), end);
		ret = dmirror_range_fault(d, &range);
		if (ret)
			break;
	}
	mmput(mm);
	return ret;
}

/*
 * Copy [start, end) from the device's view into @bounce (whose first byte
 * is @base), counting pages in *@cpages; -ENOENT at the first page the
 * table lacks (or lacks write access to, with @write: then copy in).
 * Context: d->mutex held.
 */
static int dmirror_do_access(struct dmirror *d, unsigned long base,
			     unsigned long start, unsigned long end,
			     char *bounce, uint64_t *cpages, bool write)
{
	struct hetmm_machine *m = dmirror_machine(d);

	for (unsigned long addr = start; addr < end; addr += PAGE_SIZE) {
		void *entry = xa_load(&d->pt, addr >> PAGE_SHIFT);
		char *buf = bounce + (addr - base);
		struct page *page;

		if (!entry)
			return -ENOENT;
		if (write && dpt_tag(entry) != DPT_XA_TAG_WRITE)
			return -ENOENT;
		page = pfn_to_page(m, dpt_pfn(entry));
		if (write)
			dmirror_copy_to_page(page, buf);
		else
			dmirror_copy_from_page(buf, page);
		(*cpages)++;
	}
	return 0;
}

/* READ and WRITE: access through the table, faulting what is missing. */
static int dmirror_rw(struct dmirror *d, struct hmm_dmirror_cmd *cmd,
		      bool write)
{
	unsigned long start = cmd->addr;
	unsigned long size = cmd->npages << PAGE_SHIFT;
	unsigned long end = start + size;
	struct mm_struct *mm = dmirror_mm(d);
	uint64_t cpages = 0;
	char *bounce;
	int ret;

	if (!cmd->ptr)
		return -EFAULT;
	bounce = malloc(size);
	if (!bounce)
		return -ENOMEM;
	if (write)
		memcpy(bounce, (const void *)(uintptr_t)cmd->ptr, size);
	/* An exited process: test_hmm would retry forever. */
	if (!mmget_not_zero(mm)) {
		free(bounce);
		return -EINVAL;
	}
	for (;;) {
		mutex_lock(&d->mutex);
		ret = dmirror_do_access(d, start,
					start + (cpages << PAGE_SHIFT), end,
					bounce, &cpages, write);
		mutex_unlock(&d->mutex);
		if (ret != -ENOENT)
			break;
		ret = dmirror_fault(d, start + (cpages << PAGE_SHIFT), end,
				    write);
		if (ret)
			break;
		cmd->faults++;
	}
	mmput(mm);
	if (!ret && !write)
		memcpy((void *)(uintptr_t)cmd->ptr, bounce, size);
	cmd->cpages = cpages;
	free(bounce);
	return ret;
}

/* Read [start, end) back through the table (after a migration). */
static int dmirror_read_back(struct dmirror *d, struct hmm_dmirror_cmd *cmd)
{
	unsigned long start = cmd->addr;
	unsigned long size = cmd->npages << PAGE_SHIFT;
	uint64_t cpages = 0;
	char *bounce;
	int ret;

	bounce = malloc(size);
	if (!bounce)
		return -ENOMEM;
	mutex_lock(&d->mutex);
	ret = dmirror_do_access(d, start, start, start + size, bounce, &cpages,
				false);
	mutex_unlock(&d->mutex);
	if (!ret) {
		if (cmd->ptr)
			memcpy((void *)(uintptr_t)cmd->ptr, bounce, size);
		else
			ret = -EFAULT;
	}
	cmd->cpages = cpages;
	free(bounce);
	return ret;
}

/* ------------------------------------------------- migration to device */

/* After migrate_vma_pages(): map what moved into the device table. */
static void dmirror_migrate_finalize_and_map(struct migrate_vma *args,
					     struct dmirror *d)
{
	struct hetmm_machine *m = dmirror_machine(d);
	struct mm_struct *mm = args->vma->vm_mm;
	unsigned long npages = (args->end - args->start) >> PAGE_SHIFT;
	unsigned long vpfn = args->start >> PAGE_SHIFT;
	int err = 0;

	bool moved = false;

	for (unsigned long i = 0; i < npages && !moved; i++)
		moved = (args->src[i] & MIGRATE_PFN_MIGRATE) &&
			migrate_pfn_to_page(m, args->dst[i]);
	if (!moved)
		return;
	/*
	 * Other mirrors of this device ignored the MIGRATE event too: drop
	 * their view of the range (a refault costs less than precision).
	 */
	dmirror_device_erase(d->mdevice, mm, args->start, args->end, d);

	mutex_lock(&d->mutex);
	for (unsigned long i = 0; i < npages; i++) {
		struct page *dpage = migrate_pfn_to_page(m, args->dst[i]);
		unsigned long tag = (args->dst[i] & MIGRATE_PFN_WRITE) ?
					    DPT_XA_TAG_WRITE :
					    DPT_XA_TAG_READ;
		unsigned long nr = 1;

		if (!(args->src[i] & MIGRATE_PFN_MIGRATE) || !dpage)
			continue;
		if (args->dst[i] & MIGRATE_PFN_COMPOUND)
			nr = folio_nr_pages(page_folio(dpage));
		HETMM_WARN_ON_ONCE(i + nr > npages);
		for (unsigned long p = 0; p < nr && i + p < npages; p++) {
			int ret = xa_store(
				&d->pt, vpfn + i + p,
				dpt_entry(page_to_pfn(dpage) + p, tag));

			if (ret && !err)
				err = ret;
		}
	}
	mutex_unlock(&d->mutex);
	HETMM_WARN_ON_ONCE(err);
}

/*
 * One migrate_vma transaction of a migration command, between
 * migrate_vma_setup() and the end of migrate_vma_finalize(). Return: 0 to
 * go on with the next, or an error that ends the command.
 */
typedef int (*dmirror_migrate_step_t)(struct dmirror *d,
				      struct migrate_vma *args,
				      struct hmm_dmirror_cmd *cmd);

/*
 * Run @step over [cmd->addr, + npages) in transactions of at most
 * DMIRROR_MIGRATE_PAGES pages, none crossing a VMA, selecting @select.
 * Return: 0; -EINVAL (a hole or an unreadable VMA, a bad vma for
 * migrate_vma_setup(), the process gone); -ENOMEM; or @step's error.
 */
static int dmirror_migrate_range(struct dmirror *d, struct hmm_dmirror_cmd *cmd,
				 unsigned long select,
				 dmirror_migrate_step_t step)
{
	unsigned long start = cmd->addr;
	unsigned long end = start + (cmd->npages << PAGE_SHIFT);
	struct mm_struct *mm = dmirror_mm(d);
	unsigned long *src, *dst;
	unsigned long addr, next;
	int ret = 0;

	if (!mmget_not_zero(mm))
		return -EINVAL;
	src = calloc(DMIRROR_MIGRATE_PAGES, sizeof(*src));
	dst = calloc(DMIRROR_MIGRATE_PAGES, sizeof(*dst));
	if (!src || !dst) {
		ret = -ENOMEM;
		goto out_put;
	}
	mmap_read_lock(mm);
	for (addr = start; addr < end; addr = next) {
		struct vm_area_struct *vma = vma_lookup(mm, addr);
		struct migrate_vma args = { 0 };

		if (!vma || !(vma->vm_flags & VM_READ)) {
			ret = -EINVAL;
			break;
		}
		next = min(end, addr + (DMIRROR_MIGRATE_PAGES << PAGE_SHIFT));
		if (next > vma->vm_end)
			next = vma->vm_end;
		args.vma = vma;
		args.src = src;
		args.dst = dst;
		args.start = addr;
		args.end = next;
		args.pgmap_owner = d->mdevice;
		args.flags = select | MIGRATE_VMA_SELECT_COMPOUND;
		ret = migrate_vma_setup(&args);
		if (ret)
			break;
		ret = step(d, &args, cmd);
		if (ret)
			break;
	}
	mmap_read_unlock(mm);
out_put:
	mmput(mm);
	free(src);
	free(dst);
	return ret;
}

static int dmirror_migrate_to_device_step(struct dmirror *d,
					  struct migrate_vma *args,
					  struct hmm_dmirror_cmd *cmd)
{
	const struct dmirror_xfer x = {
		.mdevice = d->mdevice,
		.d = d,
		.to_device = true,
		.split = true,
	};

	(void)cmd;
	/* Pages that did not move are read back as -ENOENT. */
	dmirror_alloc_and_copy(&x, args->src, args->dst,
			       (args->end - args->start) >> PAGE_SHIFT);
	migrate_vma_pages(args);
	dmirror_migrate_finalize_and_map(args, d);
	migrate_vma_finalize(args);
	return 0;
}

static int dmirror_migrate_to_device(struct dmirror *d,
				     struct hmm_dmirror_cmd *cmd)
{
	int ret = dmirror_migrate_range(d, cmd, MIGRATE_VMA_SELECT_SYSTEM,
					dmirror_migrate_to_device_step);

	return ret ? ret : dmirror_read_back(d, cmd);
}

/* ------------------------------------------------- migration to system */

/*
 * Allocate system pages for the device pages collected in @args and copy
 * back; erase the range from the mirrors of this device on the mm first.
 * @flags_from: whose FAIL_ALLOC flag applies (may be NULL).
 * Return: 0; -ENOMEM (an order-0 allocation failed) or -EIO (a copy
 * failed): the entries from the failed one on have no destination (the
 * caller commits the rest, and the core restores these).
 */
static int dmirror_devmem_fault_alloc_and_copy(struct migrate_vma *args,
					       struct dmirror_device *mdevice,
					       struct dmirror *flags_from)
{
	const struct dmirror_xfer x = {
		.mdevice = mdevice,
		.d = flags_from,
		.split = true,
		.stop = true,
	};
	struct hetmm_machine *m = mdevice->mod->m;
	unsigned long npages = (args->end - args->start) >> PAGE_SHIFT;

	for (unsigned long i = 0; i < npages; i++) {
		struct page *spage = migrate_pfn_to_page(m, args->src[i]);

		if (!spage || !(args->src[i] & MIGRATE_PFN_MIGRATE) ||
		    !dmirror_owns_page(spage))
			continue;
		/*
		 * Our mirrors ignored the MIGRATE event: remove their view
		 * before copying, while the pages are locked and unmapped so
		 * no device fault can map them again.
		 */
		dmirror_device_erase(mdevice, args->vma->vm_mm, args->start,
				     args->end, NULL);
		break;
	}
	return dmirror_alloc_and_copy(&x, args->src, args->dst, npages);
}

static unsigned long dmirror_successful_migrated_pages(struct migrate_vma *args)
{
	unsigned long n = 0;

	for (unsigned long i = 0; i < args->npages; i++)
		if ((args->src[i] & MIGRATE_PFN_VALID) &&
		    (args->src[i] & MIGRATE_PFN_MIGRATE))
			n++;
	return n;
}

static int dmirror_migrate_to_system_step(struct dmirror *d,
					  struct migrate_vma *args,
					  struct hmm_dmirror_cmd *cmd)
{
	int ret = dmirror_devmem_fault_alloc_and_copy(args, d->mdevice, d);

	/*
	 * Even after a failure, commit the pages already copied (an entry
	 * without a destination is restored): finalize alone would map
	 * copies that were never committed.
	 */
	migrate_vma_pages(args);
	cmd->cpages += dmirror_successful_migrated_pages(args);
	migrate_vma_finalize(args);
	return ret;
}

static int dmirror_migrate_to_system(struct dmirror *d,
				     struct hmm_dmirror_cmd *cmd)
{
	cmd->cpages = 0;
	return dmirror_migrate_range(d, cmd, dmirror_select_device(d->mdevice),
				     dmirror_migrate_to_system_step);
}

/*
 * The mirror whose FAIL_ALLOC flag a CPU fault on @page honours: the one
 * recorded when the page was migrated in, if it is still open on @mm,
 * else any mirror of the device on @mm. Context: mirrors_lock held.
 */
static struct dmirror *dmirror_fault_mirror(struct dmirror_device *mdevice,
					    struct page *page,
					    struct mm_struct *mm)
{
	struct dmirror *d, *any = NULL;

	list_for_each_entry(d, &mdevice->mirrors, link) {
		if (dmirror_mm(d) != mm)
			continue;
		if (d == page->zone_device_data)
			return d;
		if (!any)
			any = d;
	}
	return any;
}

/* ops->migrate_to_ram (spec 5.7): the CPU touched one of our pages. */
static int dmirror_devmem_fault(struct vm_fault *vmf)
{
	struct page *page = vmf->page;
	struct folio *folio = page_folio(page);
	struct dmirror_device *mdevice = dmirror_page_to_chunk(page)->mdevice;
	struct migrate_vma args = { 0 };
	unsigned long one_src, one_dst;
	struct dmirror *flags_from;
	unsigned int order;
	int ret = 0;

	/*
	 * Through a PTE only this page moves: its folio may be mapped only
	 * in part, or not split yet.
	 */
	order = vmf->pte ? 0 : folio_order(folio);
	args.start = ALIGN_DOWN(vmf->address, PAGE_SIZE << order);
	args.end = args.start + (PAGE_SIZE << order);
	args.vma = vmf->vma;
	args.pgmap_owner = mdevice;
	args.flags = dmirror_select_device(mdevice);
	args.fault_page = page;
	if (order) {
		args.flags |= MIGRATE_VMA_SELECT_COMPOUND;
		args.src = calloc(1UL << order, sizeof(unsigned long));
		args.dst = calloc(1UL << order, sizeof(unsigned long));
		if (!args.src || !args.dst) {
			ret = -ENOMEM;
			goto out;
		}
	} else {
		args.src = &one_src;
		args.dst = &one_dst;
	}
	/* Only static VMA properties can make this fail: SIGBUS. */
	if (migrate_vma_setup(&args)) {
		ret = -EFAULT;
		goto out;
	}
	/* Mirrors are never freed before the machine: keep the pointer. */
	mutex_lock(&mdevice->mirrors_lock);
	flags_from = dmirror_fault_mirror(mdevice, page, vmf->vma->vm_mm);
	mutex_unlock(&mdevice->mirrors_lock);
	ret = dmirror_devmem_fault_alloc_and_copy(&args, mdevice, flags_from);
	/*
	 * On failure the faulting page has no destination and is restored
	 * (the only entry, or the folio that failed as a whole). The table
	 * entries were erased while copying: nothing to map.
	 */
	migrate_vma_pages(&args);
	migrate_vma_finalize(&args);
	/* The copy engine failed: the access cannot be served (SIGBUS). */
	if (ret == -EIO)
		ret = -EFAULT;
out:
	if (order) {
		free(args.src);
		free(args.dst);
	}
	return ret;
}

/* ops->folio_split: a large device folio became @tail (and others). */
static void dmirror_devmem_folio_split(struct folio *head, struct folio *tail)
{
	if (!tail)
		return; /* no backing folio to reset here */
	tail->page.pgmap = head->page.pgmap;
	tail->page.zone_device_data = head->page.zone_device_data;
	tail->page.mapping = head->page.mapping;
}

static const struct dev_pagemap_ops dmirror_devmem_ops = {
	.folio_free = dmirror_devmem_free,
	.migrate_to_ram = dmirror_devmem_fault,
	.folio_split = dmirror_devmem_folio_split,
};

/* ------------------------------------------------------------ exclusive */

static int dmirror_exclusive(struct dmirror *d, struct hmm_dmirror_cmd *cmd)
{
	unsigned long start = cmd->addr;
	unsigned long end = start + (cmd->npages << PAGE_SHIFT);
	struct mm_struct *mm = dmirror_mm(d);
	int ret = 0;

	if (!mmget_not_zero(mm))
		return -EINVAL;
	mmap_read_lock(mm);
	for (unsigned long addr = start; !ret && addr < end;
	     addr += PAGE_SIZE) {
		struct folio *folio;
		struct page *page;

		page = make_device_exclusive(mm, addr, NULL, &folio);
		if (IS_ERR(page)) {
			ret = (int)PTR_ERR(page);
			break;
		}
		mutex_lock(&d->mutex);
		ret = xa_store(&d->pt, addr >> PAGE_SHIFT,
			       dpt_entry(page_to_pfn(page), DPT_XA_TAG_ATOMIC));
		mutex_unlock(&d->mutex);
		folio_unlock(folio);
		folio_put(folio);
	}
	mmap_read_unlock(mm);
	mmput(mm);
	if (ret)
		return ret;
	return dmirror_read_back(d, cmd);
}

static int dmirror_check_atomic(struct dmirror *d, unsigned long start,
				unsigned long end)
{
	unsigned long index;
	void *entry;
	int ret = 0;

	/* Only present entries matter: walk them, not every page. */
	mutex_lock(&d->mutex);
	xa_for_each_range(&d->pt, index, entry, start >> PAGE_SHIFT,
			  (end - 1) >> PAGE_SHIFT) {
		if (dpt_tag(entry) == DPT_XA_TAG_ATOMIC) {
			ret = -EPERM;
			break;
		}
	}
	mutex_unlock(&d->mutex);
	return ret;
}

/* ------------------------------------------------------------- snapshot */

static unsigned char dmirror_mkentry(struct dmirror *d, unsigned long entry)
{
	struct hetmm_machine *m = dmirror_machine(d);
	unsigned int order;
	unsigned char perm;
	struct page *page;

	if (entry & HMM_PFN_ERROR)
		return HMM_DMIRROR_PROT_ERROR;
	if (!(entry & HMM_PFN_VALID))
		return HMM_DMIRROR_PROT_NONE;
	page = hmm_pfn_to_page(m, entry);
	if (is_device_private_page(page))
		perm = page_pgmap(page)->owner == d->mdevice ?
			       HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL :
			       HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE;
	else if (is_device_coherent_page(page))
		perm = page_pgmap(page)->owner == d->mdevice ?
			       HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL :
			       HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE;
	else if (is_zero_page(page))
		perm = HMM_DMIRROR_PROT_ZERO;
	else
		perm = HMM_DMIRROR_PROT_NONE;
	perm |= (entry & HMM_PFN_WRITE) ? HMM_DMIRROR_PROT_WRITE :
					  HMM_DMIRROR_PROT_READ;
	order = hmm_pfn_to_map_order(entry);
	if (order == PMD_SHIFT - PAGE_SHIFT)
		perm |= HMM_DMIRROR_PROT_PMD;
	else if (order == PUD_SHIFT - PAGE_SHIFT)
		perm |= HMM_DMIRROR_PROT_PUD;
	return perm;
}

static bool dmirror_snapshot_invalidate(struct mmu_interval_notifier *mni,
					const struct mmu_notifier_range *range,
					unsigned long cur_seq)
{
	struct dmirror_interval *dmi =
		container_of(mni, struct dmirror_interval, notifier);
	struct dmirror *d = dmi->dmirror;

	if (mmu_notifier_range_blockable(range))
		mutex_lock(&d->mutex);
	else if (!mutex_trylock(&d->mutex))
		return false;
	/* Any invalidation spoils the whole snapshot: just record it. */
	mmu_interval_set_seq(mni, cur_seq);
	mutex_unlock(&d->mutex);
	return true;
}

static const struct mmu_interval_notifier_ops dmirror_mrn_ops = {
	.invalidate = dmirror_snapshot_invalidate,
};

static int dmirror_range_snapshot(struct dmirror *d, struct hmm_range *range,
				  unsigned char *perm)
{
	struct mm_struct *mm = dmirror_mm(d);
	unsigned long n = (range->end - range->start) >> PAGE_SHIFT;
	struct dmirror_interval notifier;
	int ret;

	memset(&notifier, 0, sizeof(notifier));
	notifier.dmirror = d;
	range->notifier = &notifier.notifier;
	ret = mmu_interval_notifier_insert(range->notifier, mm, range->start,
					   range->end - range->start,
					   &dmirror_mrn_ops);
	if (ret)
		return ret;
	ret = dmirror_range_fault_lock(d, range);
	if (!ret) {
		for (unsigned long i = 0; i < n; i++)
			perm[i] = dmirror_mkentry(d, range->hmm_pfns[i]);
		mutex_unlock(&d->mutex);
	}
	mmu_interval_notifier_remove(range->notifier);
	return ret;
}

static int dmirror_snapshot(struct dmirror *d, struct hmm_dmirror_cmd *cmd)
{
	unsigned long start = cmd->addr;
	unsigned long end = start + (cmd->npages << PAGE_SHIFT);
	struct mm_struct *mm = dmirror_mm(d);
	unsigned long pfns[DMIRROR_FAULT_PAGES];
	unsigned char perm[DMIRROR_FAULT_PAGES];
	unsigned char *uptr = (unsigned char *)(uintptr_t)cmd->ptr;
	struct hmm_range range = {
		.hmm_pfns = pfns,
		.dev_private_owner = d->mdevice,
	};
	int ret = 0;

	if (!uptr)
		return -EFAULT;
	if (!mmget_not_zero(mm))
		return -EINVAL;
	for (unsigned long addr = start, next; addr < end; addr = next) {
		unsigned long n;

		next = min(addr + (DMIRROR_FAULT_PAGES << PAGE_SHIFT), end);
		range.start = addr;
		range.end = next;
		ret = dmirror_range_snapshot(d, &range, perm);
		if (ret)
			break;
		n = (next - addr) >> PAGE_SHIFT;
		memcpy(uptr, perm, n);
		cmd->cpages += n;
		uptr += n;
	}
	mmput(mm);
	return ret;
}

/* ---------------------------------------------------------------- ioctl */

int dmirror_ioctl(struct dmirror *d, unsigned int command,
		  struct hmm_dmirror_cmd *arg)
{
	struct hmm_dmirror_cmd cmd;
	int ret;

	if (IS_ERR_OR_NULL(d) || READ_ONCE(d->released))
		return -EINVAL;
	if (!arg)
		return -EFAULT;
	cmd = *arg;
	if (cmd.addr & ~PAGE_MASK)
		return -EINVAL;
	if (cmd.npages > (ULONG_MAX >> PAGE_SHIFT) ||
	    cmd.addr >= cmd.addr + (cmd.npages << PAGE_SHIFT))
		return -EINVAL;
	cmd.cpages = 0;
	cmd.faults = 0;

	switch (command) {
	case HMM_DMIRROR_READ:
		ret = dmirror_rw(d, &cmd, false);
		break;
	case HMM_DMIRROR_WRITE:
		ret = dmirror_rw(d, &cmd, true);
		break;
	case HMM_DMIRROR_MIGRATE_TO_DEV:
		ret = dmirror_migrate_to_device(d, &cmd);
		break;
	case HMM_DMIRROR_MIGRATE_TO_SYS:
		ret = dmirror_migrate_to_system(d, &cmd);
		break;
	case HMM_DMIRROR_EXCLUSIVE:
		ret = dmirror_exclusive(d, &cmd);
		break;
	case HMM_DMIRROR_CHECK_EXCLUSIVE:
		ret = dmirror_check_atomic(
			d, cmd.addr, cmd.addr + (cmd.npages << PAGE_SHIFT));
		break;
	case HMM_DMIRROR_SNAPSHOT:
		ret = dmirror_snapshot(d, &cmd);
		break;
	case HMM_DMIRROR_RELEASE:
		ret = dmirror_device_remove_chunks(d->mdevice);
		break;
	case HMM_DMIRROR_FLAGS:
		__atomic_store_n(&d->flags, cmd.npages, __ATOMIC_RELEASE);
		ret = 0;
		break;
	default:
		return -EINVAL;
	}
	if (ret)
		return ret;
	*arg = cmd;
	return 0;
}

/* ----------------------------------------------------------- test hooks */

int dmirror_debug_lookup(struct dmirror *d, unsigned long addr,
			 unsigned long *pfn, unsigned long *tag)
{
	void *entry;

	if (IS_ERR_OR_NULL(d) || READ_ONCE(d->released))
		return -EINVAL;
	mutex_lock(&d->mutex);
	entry = xa_load(&d->pt, addr >> PAGE_SHIFT);
	if (entry) {
		if (pfn)
			*pfn = dpt_pfn(entry);
		if (tag)
			*tag = dpt_tag(entry);
	}
	mutex_unlock(&d->mutex);
	return entry ? 0 : -ENOENT;
}

int dmirror_debug_store(struct dmirror *d, unsigned long addr,
			unsigned long pfn, unsigned long tag)
{
	int ret = 0;

	if (IS_ERR_OR_NULL(d) || READ_ONCE(d->released) || tag > DPT_TAG_MASK)
		return -EINVAL;
	mutex_lock(&d->mutex);
	if (pfn == -1UL)
		xa_erase(&d->pt, addr >> PAGE_SHIFT);
	else
		ret = xa_store(&d->pt, addr >> PAGE_SHIFT, dpt_entry(pfn, tag));
	mutex_unlock(&d->mutex);
	return ret;
}

/* -------------------------------------------------------------- checker */

/* What the CPU page table of @mm has at @addr. */
struct dmirror_cpu_view {
	enum softleaf_type kind;
	unsigned long pfn;
	bool writable;
	bool huge;
};

static void dmirror_cpu_lookup(struct mm_struct *mm, unsigned long addr,
			       struct dmirror_cpu_view *v)
{
	pmd_t *pmdp = mm_find_pmd(mm, addr);
	unsigned long sub = (addr & ~PMD_MASK) >> PAGE_SHIFT;
	pte_t e;

	memset(v, 0, sizeof(*v));
	v->kind = SOFTLEAF_NONE;
	if (!pmdp)
		return;
	e = ptep_get(pmdp);
	if (pte_none(e))
		return;
	if (pmd_leaf(e) || !pte_present(e)) {
		v->huge = true;
		v->kind = pte_kind(e);
		if (v->kind == SOFTLEAF_PRESENT) {
			v->pfn = pte_pfn(e) + sub;
			v->writable = pte_access_permitted(e, true);
			if (pte_protnone(e))
				v->kind = SOFTLEAF_NONE;
		} else if (softleaf_has_pfn(v->kind)) {
			v->pfn = softleaf_pfn(softleaf_from_pte(e)) + sub;
			v->writable = v->kind == SOFTLEAF_DEVICE_PRIVATE_WRITE;
		}
		return;
	}
	if (!pmd_table(e))
		return;
	e = ptep_get(pte_offset(mm, pmdp, addr));
	v->kind = pte_kind(e);
	if (v->kind == SOFTLEAF_PRESENT) {
		v->pfn = pte_pfn(e);
		v->writable = pte_access_permitted(e, true);
		if (pte_protnone(e))
			v->kind = SOFTLEAF_NONE;
	} else if (softleaf_has_pfn(v->kind)) {
		v->pfn = softleaf_pfn(softleaf_from_pte(e));
		v->writable = v->kind == SOFTLEAF_DEVICE_PRIVATE_WRITE;
	}
}

static void dmirror_check_mirror(struct dmirror *d, struct mm_struct *mm,
				 struct hetmm_check_ctx *ctx)
{
	unsigned long index;
	void *entry;

	if (!mmget_not_zero(mm)) {
		mutex_lock(&d->mutex);
		if (!READ_ONCE(d->released) && !xa_empty(&d->pt))
			hetmm_check_fail(ctx,
					 "dmirror%u mirror %p: entries left "
					 "after its process exited",
					 d->mdevice->minor, (void *)d);
		mutex_unlock(&d->mutex);
		return;
	}
	mmap_read_lock(mm);
	mutex_lock(&d->mutex);
	/* A closed mirror's table is empty (destroyed under d->mutex). */
	xa_for_each(&d->pt, index, entry) {
		unsigned long addr = index << PAGE_SHIFT;
		unsigned long tag = dpt_tag(entry);
		struct dmirror_cpu_view v;
		bool ok;

		dmirror_cpu_lookup(mm, addr, &v);
		switch (v.kind) {
		case SOFTLEAF_PRESENT:
		case SOFTLEAF_DEVICE_PRIVATE_READ:
		case SOFTLEAF_DEVICE_PRIVATE_WRITE:
			ok = tag != DPT_XA_TAG_ATOMIC;
			break;
		case SOFTLEAF_DEVICE_EXCLUSIVE:
			ok = tag == DPT_XA_TAG_ATOMIC;
			break;
		default:
			ok = false;
			break;
		}
		if (!ok || v.pfn != dpt_pfn(entry)) {
			hetmm_check_fail(
				ctx,
				"dmirror%u mirror %p va %#lx: device "
				"maps pfn %#lx tag %lu, CPU entry kind "
				"%d pfn %#lx",
				d->mdevice->minor, (void *)d, addr,
				dpt_pfn(entry), tag, (int)v.kind, v.pfn);
			continue;
		}
		if (tag == DPT_XA_TAG_WRITE && !v.writable)
			hetmm_check_fail(ctx,
					 "dmirror%u mirror %p va %#lx: device "
					 "may write pfn %#lx, the CPU entry is "
					 "read-only",
					 d->mdevice->minor, (void *)d, addr,
					 v.pfn);
	}
	mutex_unlock(&d->mutex);
	mmap_read_unlock(mm);
	mmput(mm);
}

/*
 * A page's own reference count. Not page_ref_count(): a free page may
 * still carry the head_offset of a large folio it belonged to before.
 */
static int dmirror_own_refs(const struct page *page)
{
	return atomic_load_explicit((atomic_int *)&page->_refcount,
				    memory_order_relaxed);
}

/* Set bit @off of @seen; true if it was set already. */
static bool dmirror_seen(unsigned long *seen, unsigned long off)
{
	unsigned long bit = 1UL << (off % (8 * sizeof(long)));
	unsigned long *w = &seen[off / (8 * sizeof(long))];
	bool was = *w & bit;

	*w |= bit;
	return was;
}

/*
 * Count in-service pages of @chunk and check its free lists; @seen has a
 * bit per page of a chunk (scratch space).
 */
static void dmirror_check_chunk(struct dmirror_chunk *chunk,
				unsigned long *seen,
				struct hetmm_check_ctx *ctx)
{
	struct hetmm_machine *m = chunk->mdevice->mod->m;
	unsigned long in_service = 0;
	unsigned int minor = chunk->mdevice->minor;

	for (unsigned long p = 0; p < chunk->nr_pages; p++) {
		unsigned long pfn = chunk->base_pfn + p;
		struct page *page;

		if (!pgmap_pfn_online(&chunk->pagemap, pfn)) {
			p += PGMAP_BLOCK_PAGES - 1;
			continue;
		}
		page = pfn_to_page(m, pfn);
		if (PageTail(page) || dmirror_own_refs(page) <= 0)
			continue;
		in_service += PageHead(page) ? 1UL << page->order : 1;
	}
	if (in_service != chunk->in_service)
		hetmm_check_fail(ctx,
				 "dmirror%u chunk at pfn %#lx: %lu pages in "
				 "service, the allocator counts %lu",
				 minor, chunk->base_pfn, in_service,
				 chunk->in_service);
	memset(seen, 0, DEVMEM_CHUNK_PAGES / 8);
	for (unsigned long i = 0; i < chunk->nr_free_pages; i++) {
		unsigned long off = chunk->free_pages[i];

		if (off >= chunk->fresh || dmirror_seen(seen, off) ||
		    (pgmap_pfn_online(&chunk->pagemap, chunk->base_pfn + off) &&
		     dmirror_own_refs(pfn_to_page(m, chunk->base_pfn + off))))
			hetmm_check_fail(ctx,
					 "dmirror%u chunk at pfn %#lx: free "
					 "offset %#lx is in use",
					 minor, chunk->base_pfn, off);
	}
	for (unsigned long i = 0; i < chunk->nr_free_folios; i++) {
		unsigned long off = chunk->free_folios[i];
		bool twice = false;

		for (unsigned long p = 0;
		     p < HPAGE_PMD_NR && off < chunk->fresh; p++)
			twice |= dmirror_seen(seen, off + p);
		if (off >= chunk->fresh || !IS_ALIGNED(off, HPAGE_PMD_NR) ||
		    twice ||
		    (pgmap_pfn_online(&chunk->pagemap, chunk->base_pfn + off) &&
		     dmirror_own_refs(pfn_to_page(m, chunk->base_pfn + off))))
			hetmm_check_fail(ctx,
					 "dmirror%u chunk at pfn %#lx: free "
					 "folio offset %#lx is in use",
					 minor, chunk->base_pfn, off);
	}
}

static void dmirror_check_device(struct dmirror_device *mdevice,
				 struct hetmm_check_ctx *ctx)
{
	unsigned long *seen = malloc(DEVMEM_CHUNK_PAGES / 8);
	unsigned long sum = 0;

	if (!seen) {
		hetmm_check_fail(ctx, "dmirror: out of memory");
		return;
	}
	mutex_lock(&mdevice->devmem_lock);
	spin_lock(&mdevice->lock);
	for (unsigned int i = 0; i < mdevice->nr_chunks; i++) {
		dmirror_check_chunk(mdevice->chunks[i], seen, ctx);
		sum += mdevice->chunks[i]->in_service;
	}
	for (struct dmirror_chunk *c = mdevice->dying; c; c = c->next_dying) {
		dmirror_check_chunk(c, seen, ctx);
		sum += c->in_service;
	}
	if (sum != mdevice->in_service)
		hetmm_check_fail(ctx,
				 "dmirror%u: %lu pages in service over its "
				 "chunks, the device counts %lu",
				 mdevice->minor, sum, mdevice->in_service);
	if (!mdevice->present && (mdevice->nr_mapped || mdevice->in_service))
		hetmm_check_fail(ctx,
				 "dmirror%u removed with %u chunks mapped and "
				 "%lu pages in service",
				 mdevice->minor, mdevice->nr_mapped,
				 mdevice->in_service);
	spin_unlock(&mdevice->lock);
	mutex_unlock(&mdevice->devmem_lock);
	free(seen);
}

static void dmirror_check(struct hetmm_machine *m, void *arg,
			  struct hetmm_check_ctx *ctx)
{
	struct dmirror_module *mod = arg;

	/*
	 * No mod->lock here: probe and open take it and may register
	 * checkers (m->check_lock, held around us) under it. Mirrors are
	 * collected under mirrors_lock with their mm pinned (mmgrab); a
	 * mirror struct is never freed before the machine.
	 */
	(void)m;
	for (unsigned int i = 0; i < DMIRROR_NDEVICES; i++) {
		struct dmirror_device *mdevice = &mod->devices[i];
		struct dmirror **list;
		unsigned int n = 0;
		struct dmirror *d;

		dmirror_check_device(mdevice, ctx);
		mutex_lock(&mdevice->mirrors_lock);
		list = calloc(mdevice->nr_mirrors + 1, sizeof(*list));
		if (list) {
			list_for_each_entry(d, &mdevice->mirrors, link) {
				mmgrab(dmirror_mm(d));
				list[n++] = d;
			}
		}
		mutex_unlock(&mdevice->mirrors_lock);
		if (!list) {
			hetmm_check_fail(ctx, "dmirror: out of memory");
			continue;
		}
		if (!READ_ONCE(mdevice->present) && n)
			hetmm_check_fail(ctx,
					 "dmirror%u: %u mirrors open on a "
					 "removed device",
					 i, n);
		for (unsigned int j = 0; j < n; j++) {
			struct mm_struct *mm = dmirror_mm(list[j]);

			dmirror_check_mirror(list[j], mm, ctx);
			mmdrop(mm);
		}
		free(list);
	}
}
