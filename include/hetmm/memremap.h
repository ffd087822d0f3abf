/* SPDX-License-Identifier: MIT */
/*
 * hetmm/memremap.h - ZONE_DEVICE memory: struct dev_pagemap and its pages.
 *
 * A device driver describes a physical range of device memory with a
 * struct dev_pagemap (pgmap) and hands it to memremap_pages(), which gives
 * every 4 KiB of the range a struct page in ZONE_DEVICE. The kernel has no
 * allocator for device memory: the driver keeps its own, and puts a page
 * into service with zone_device_page_init()/zone_device_folio_init() (by
 * pfn, the traditional way) or pgmap_request_folio() (by offset into the
 * pgmap, as proposed in seed 000: the driver never looks at an idle page).
 *
 * Types (as in the kernel):
 *   MEMORY_DEVICE_PRIVATE   not CPU addressable; mapped only by
 *                           device-private softleaf entries; a CPU access
 *                           calls ops->migrate_to_ram()
 *   MEMORY_DEVICE_COHERENT  CPU addressable (present PTEs); must stay
 *                           evictable (long-term pins migrate it off)
 *   MEMORY_DEVICE_FS_DAX    accepted by memremap_pages, otherwise unused
 *   MEMORY_DEVICE_GENERIC   device-dax like: pages start with refcount 1
 *   MEMORY_DEVICE_PCI_P2PDMA  a PCI BAR for peer-to-peer DMA
 *
 * Simulation: device pfns live in the machine's device window (see
 * phys.h) and have host bytes in m->frames like RAM, so a driver keeps the
 * contents of its device memory in the device frames themselves (the
 * kernel's test_hmm needs a "backing" system page per device page because
 * it has nowhere else to put them; we do not). The CPU still never maps a
 * device-private frame: only drivers read and write it.
 *
 * Page life cycle for PRIVATE and COHERENT (spec section 1.7): a free
 * device page has refcount 0 and holds no pgmap reference; putting it in
 * service gives refcount 1, the folio locked, and 2^order pgmap
 * references; the last folio_put() calls ops->folio_free() and drops the
 * pgmap references; the refcount stays 0.
 *
 * On-demand struct pages (PGMAP_ON_DEMAND): memremap_pages() normally
 * initialises every struct page of the pgmap. With PGMAP_ON_DEMAND it
 * initialises none; each 2 MiB block (PGMAP_BLOCK_PAGES struct pages) is
 * initialised the first time one of its pages is put into service, so a
 * pgmap covering a large device costs (almost) no host memory until used.
 * Code that looks at arbitrary device pfns must use pgmap_pfn_online().
 *
 * Locking:
 *   memremap_lock (global mutex)   memremap_pages/memunmap_pages, the
 *                                  pfn -> pgmap index and the device
 *                                  window's region allocator
 *   pgmap->init_lock (spinlock)    the on-demand block bitmap
 *   get_dev_pagemap() is lock-free (RCU + a tryget on the pgmap ref).
 *
 * Invariants (checked by the "memremap" checker):
 *   - a live pgmap's ref == 1 (its own) + sum of 2^order over its folios
 *     in service + transient get_dev_pagemap() references;
 *   - a device page with refcount 0 has mapcount 0 and is not locked;
 *   - every pfn of a mapped range indexes its pgmap; no two pgmaps overlap.
 */
#ifndef HETMM_MEMREMAP_H
#define HETMM_MEMREMAP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lock.h"
#include "page.h"
#include "pgtable.h"
#include "phys.h"

struct vm_area_struct;

enum memory_type {
	/* 0 is reserved: an uninitialised pgmap */
	MEMORY_DEVICE_PRIVATE = 1,
	MEMORY_DEVICE_COHERENT,
	MEMORY_DEVICE_FS_DAX,
	MEMORY_DEVICE_GENERIC,
	MEMORY_DEVICE_PCI_P2PDMA,
};

/* An inclusive physical byte range, as struct range in the kernel. */
struct range {
	uint64_t start;
	uint64_t end;
};

static inline uint64_t range_len(const struct range *r)
{
	return r->end - r->start + 1;
}

/**
 * struct vm_fault - what a fault handler knows about the fault.
 * @vma: the faulting VMA; @address: the page-aligned faulting address.
 * @flags: FAULT_FLAG_*.
 * @page: for a device-private fault, the device page (locked, referenced).
 * @pmd: the PMD covering @address.
 * @pte: NULL when the fault came through a PMD-level entry.
 * @orig_pte: the entry the fault saw (PTE or PMD).
 */
struct vm_fault {
	struct vm_area_struct *vma;
	unsigned long address;
	unsigned int flags;
	struct page *page;
	pmd_t *pmd;
	pte_t *pte;
	pte_t orig_pte;
};

struct dev_pagemap;

/**
 * struct dev_pagemap_ops - the driver's side of a pgmap.
 * @folio_free: a folio in service dropped its last reference. Required for
 *              PRIVATE and COHERENT. The refcount stays 0.
 * @migrate_to_ram: the CPU touched a device-private entry of vmf->page
 *                  (locked, referenced by the caller). Must migrate at least
 *                  that page to system memory. Return 0 (also when a race
 *                  was lost: the fault is retried), -ENOMEM (OOM) or
 *                  -EFAULT (SIGBUS). Required for PRIVATE.
 * @memory_failure: poison of [pfn, pfn + nr); -EOPNOTSUPP for the default.
 * @folio_split: a device-private large folio @head was split; called once
 *               per new folio @tail, then once with @tail NULL.
 * @p2p_addr: may a device whose owner cookie is @requester reach @page in
 *            place over the interconnect (seed 002)? 0 and *@dev_addr =
 *            the address the requester uses, or -EOPNOTSUPP. Optional.
 *            Called from hmm_range_fault() with a page-table spinlock
 *            held: must not sleep.
 */
struct dev_pagemap_ops {
	void (*folio_free)(struct folio *folio);
	int (*migrate_to_ram)(struct vm_fault *vmf);
	int (*memory_failure)(struct dev_pagemap *pgmap, unsigned long pfn,
			      unsigned long nr_pages, int mf_flags);
	void (*folio_split)(struct folio *head, struct folio *tail);
	int (*p2p_addr)(struct page *page, const void *requester,
			uint64_t *dev_addr);
};

#define PGMAP_ALTMAP_VALID (1U << 0) /* accepted, no altmap is modelled */
#define PGMAP_ON_DEMAND (1U << 8)    /* hetmm: struct pages on first use */

#define PGMAP_MAX_RANGES 8
/* On-demand initialisation granule: one 2 MiB block of struct pages. */
#define PGMAP_BLOCK_PAGES 512UL

/**
 * struct dev_pagemap - a collection of ZONE_DEVICE pages.
 * @type: enum memory_type.
 * @flags: PGMAP_*.
 * @ops: the driver's callbacks.
 * @owner: opaque cookie, mandatory for PRIVATE and COHERENT; compared with
 *         hmm_range::dev_private_owner, migrate_vma::pgmap_owner and a
 *         notifier range's owner.
 * @nr_range: ranges in @ranges (1..PGMAP_MAX_RANGES).
 * @ranges: inclusive physical byte ranges, 2 MiB aligned and sized.
 *
 * Set by memremap_pages (read-only for the driver):
 * @machine: the machine the pages belong to.
 * @ref: live references (see the file comment); @dying once memunmap began;
 *       @done is signalled when @ref reaches 0.
 * @nr_pages: pages over all ranges.
 * @init_bitmap / @nr_blocks_online: PGMAP_ON_DEMAND bookkeeping.
 */
struct dev_pagemap {
	enum memory_type type;
	unsigned int flags;
	const struct dev_pagemap_ops *ops;
	void *owner;
	int nr_range;
	struct range ranges[PGMAP_MAX_RANGES];

	struct hetmm_machine *machine;
	atomic_long ref;
	atomic_bool dying;
	pthread_mutex_t done_lock;
	pthread_cond_t done;
	unsigned long nr_pages;
	spinlock_t init_lock;
	unsigned long *init_bitmap;
	unsigned long nr_blocks_online;
};

/*
 * memremap_pages - give the ranges of @pgmap struct pages in ZONE_DEVICE.
 * Return: 0, or -EINVAL (no range, misaligned range, type rules of spec
 * 1.4 unmet: PRIVATE needs ops->migrate_to_ram, ops->folio_free and owner;
 * COHERENT needs ops->folio_free and owner), -ENOMEM (a range overlaps
 * another pgmap), -ENXIO (a range is not inside the machine's device
 * window: it would hit System RAM or nothing). Nothing changes on error.
 * (The kernel returns the kernel address of range 0; we have none.)
 */
int memremap_pages(struct hetmm_machine *m, struct dev_pagemap *pgmap);
/*
 * memunmap_pages - take @pgmap out of service. New get_dev_pagemap() and
 * allocations fail from now on. Waits until every page is free again; the
 * driver must evict pages in use first (migrate_device_range()), or this
 * never returns -- as in the kernel. Use memunmap_pages_evict() for the
 * safe hot-unplug that issue 4 asks for.
 */
void memunmap_pages(struct dev_pagemap *pgmap);
/*
 * memunmap_pages_evict - hot-unplug without losing data: kill the pgmap,
 * migrate every device page still in use back to system memory through
 * migrate_device_range() (retrying pages that are locked or being freed),
 * then wait for the references to drain and unmap.
 * Return: 0, or -ENOMEM if system memory ran out or -EIO if a copy
 * failed (either way the pgmap stays mapped, dying, with the pages that
 * could not move, their data intact; call again).
 */
int memunmap_pages_evict(struct dev_pagemap *pgmap);

/*
 * request_free_mem_region - find @size bytes (a multiple of 2 MiB) of free
 * physical address space in the device window for a pgmap.
 * Return: 0 and *@start, -EINVAL or -ENOSPC.
 */
int request_free_mem_region(struct hetmm_machine *m, uint64_t size,
			    uint64_t *start);
void release_mem_region(struct hetmm_machine *m, uint64_t start,
			uint64_t size);

/*
 * get_dev_pagemap - the live pgmap covering @pfn, with a reference, or
 * NULL (no pgmap, or it is being torn down). Drop with put_dev_pagemap().
 */
struct dev_pagemap *get_dev_pagemap(struct hetmm_machine *m,
				    unsigned long pfn);
void put_dev_pagemap(struct dev_pagemap *pgmap);
/* Is @pfn inside one of @pgmap's ranges? */
bool pgmap_pfn_valid(const struct dev_pagemap *pgmap, unsigned long pfn);
/* Has @pfn's struct page been initialised (always, unless ON_DEMAND)? */
bool pgmap_pfn_online(const struct dev_pagemap *pgmap, unsigned long pfn);
/* The pfn at page offset @pgoff of @pgmap (across ranges), or -1UL. */
unsigned long pgmap_offset_to_pfn(const struct dev_pagemap *pgmap,
				  unsigned long pgoff);

/*
 * zone_device_page_init / zone_device_folio_init - put a free device page
 * (@order 0) or 2^@order naturally aligned pages into service: refcount 1,
 * locked, 2^order pgmap references; order > 0 builds a compound folio
 * (the folio_ variant also marks it large-rmappable). Clears state left by
 * an earlier use. WARNs (and returns without effect for a dying pgmap) as
 * the kernel does.
 */
void zone_device_page_init(struct page *page, struct dev_pagemap *pgmap,
			   unsigned int order);
void zone_device_folio_init(struct folio *folio, struct dev_pagemap *pgmap,
			    unsigned int order);
/*
 * pgmap_request_folio - put the folio at page offset @pgmap_offset (a
 * multiple of 2^@order) of @pgmap into service, initialising its struct
 * pages first if the pgmap is ON_DEMAND. The driver brings its own
 * allocator of offsets.
 * Return: the folio (refcount 1, locked), or NULL if the offset is out of
 * range or misaligned, a page there is still in service, or the pgmap is
 * dying.
 */
struct folio *pgmap_request_folio(struct dev_pagemap *pgmap,
				  unsigned long pgmap_offset,
				  unsigned int order);

static inline struct dev_pagemap *page_pgmap(const struct page *page)
{
	return page_folio(page)->page.pgmap;
}

static inline bool folio_is_device_private(const struct folio *folio)
{
	return folio_is_zone_device(folio) &&
	       folio->page.pgmap->type == MEMORY_DEVICE_PRIVATE;
}

static inline bool is_device_private_page(const struct page *page)
{
	return folio_is_device_private(page_folio(page));
}

static inline bool folio_is_device_coherent(const struct folio *folio)
{
	return folio_is_zone_device(folio) &&
	       folio->page.pgmap->type == MEMORY_DEVICE_COHERENT;
}

static inline bool is_device_coherent_page(const struct page *page)
{
	return folio_is_device_coherent(page_folio(page));
}

static inline bool is_pci_p2pdma_page(const struct page *page)
{
	return is_zone_device_page(page) &&
	       page_pgmap(page)->type == MEMORY_DEVICE_PCI_P2PDMA;
}

/* Pgmaps mapped on @m now (for reports and tests). */
unsigned int hetmm_nr_pgmaps(struct hetmm_machine *m);

#endif /* HETMM_MEMREMAP_H */
