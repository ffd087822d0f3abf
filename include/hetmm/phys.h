/* SPDX-License-Identifier: MIT */
/*
 * hetmm/phys.h - the simulated machine's physical memory.
 *
 * Map:
 *   struct hetmm_machine   one simulated machine: its RAM, memmap, zones,
 *                          per-thread page lists, fault sites, checkers
 *   struct zone            a buddy allocator over a pfn range (NORMAL,
 *                          MOVABLE); ZONE_DEVICE pages are not buddy-managed
 *   struct per_thread_pages  per-thread cache of order-0 and PMD-order pages
 *
 * Physical address space (pfns):
 *   [0, nr_ram_pages)                     system RAM: ZONE_NORMAL, then
 *                                         ZONE_MOVABLE at the top if asked for
 *   [device_base_pfn, max_pfn)            window for ZONE_DEVICE pgmaps
 *
 * The memmap is a "virtual memmap": one host reservation (MAP_NORESERVE)
 * big enough for a struct page per pfn, so pfn_to_page() is an addition and
 * memory the simulation never touches costs no host memory. A zone
 * initialises its struct pages one section (128 MiB of RAM) at a time, the
 * first time the allocator needs them, so a 1 TiB machine with little in
 * use costs little. Frame bytes live in a second reservation, the arena,
 * unless the machine is metadata-only (carry_data == false), in which case
 * page_address() is NULL and copies/zeroing only count.
 *
 * Locking:
 *   per_thread_pages.lock        (a thread's list; uncontended normally)
 *     zone.lock                  (free lists, nr_free, online cursor)
 *   machine.bad_lock, machine.check_lock are leaves.
 * Invariants (verified by the phys checker):
 *   - every initialised RAM frame is exactly one of: in a free buddy block,
 *     on a per-thread list, part of an allocated folio (head refcount > 0),
 *     or reserved;
 *   - zone.nr_free == sum over orders of nr_free[order] << order;
 *   - no two free buddies of the same order are both free (they merge);
 *   - free frames have refcount 0, mapcount -1 and no flags but PG_buddy
 *     (block head) or PG_pcp.
 */
#ifndef HETMM_PHYS_H
#define HETMM_PHYS_H

#include <stdint.h>

#include "check.h"
#include "compiler.h"
#include "fault_inject.h"
#include "list.h"
#include "lock.h"
#include "page.h"

typedef unsigned int gfp_t;

#define __GFP_ZERO 0x01u    /* zero the frames (when they carry data) */
#define __GFP_MOVABLE 0x02u /* may come from ZONE_MOVABLE (preferred) */
#define __GFP_COMP 0x04u    /* compound; implied for order > 0 */
#define __GFP_NOWARN 0x08u  /* accepted, no effect */
#define __GFP_NORETRY 0x10u /* do not drain per-thread lists on failure */
#define __GFP_VALID_MASK 0x1fu

#define GFP_KERNEL 0u
#define GFP_NOWAIT __GFP_NORETRY
#define GFP_HIGHUSER_MOVABLE __GFP_MOVABLE
#define GFP_TRANSHUGE (__GFP_MOVABLE | __GFP_COMP)

/* A section: the unit in which struct pages are initialised (128 MiB). */
#define PFN_SECTION_SHIFT 15
#define PAGES_PER_SECTION (1UL << PFN_SECTION_SHIFT)

#define HETMM_MAX_MACHINES 1024
#define NR_PCP_SLOTS 64
#define NR_PCP_ORDERS 2 /* order 0 and PMD_ORDER */

/**
 * struct hetmm_machine_config - what a machine is made of.
 * @ram_size: bytes of system RAM; a multiple of 4 MiB, at least 8 MiB.
 * @movable_size: bytes at the top of RAM that form ZONE_MOVABLE (0 = none);
 *                a multiple of 4 MiB, smaller than @ram_size.
 * @device_size: bytes of physical address space reserved for ZONE_DEVICE
 *               pgmaps (0 = none); a multiple of 4 MiB.
 * @page_size: must be 4096.
 * @carry_data: frames hold real bytes (false: metadata only).
 * @nr_cpus: simulated CPUs, 1..256 (used by the mm layer's TLBs).
 */
struct hetmm_machine_config {
	uint64_t ram_size;
	uint64_t movable_size;
	uint64_t device_size;
	uint32_t page_size;
	bool carry_data;
	unsigned int nr_cpus;
};

struct free_area {
	struct list_head free_list;
	unsigned long nr_free; /* blocks */
};

/**
 * struct zone - a buddy allocator over [start_pfn, end_pfn).
 * @lock: protects everything below.
 * @online_end_pfn: struct pages in [start_pfn, online_end_pfn) are
 *                  initialised; the rest are onlined a section at a time.
 * @nr_free: free pages in the buddy lists (not counting per-thread lists).
 * @nr_alloc: pages allocated minus freed through the buddy path directly.
 */
struct zone {
	spinlock_t lock;
	enum zone_type type;
	unsigned long start_pfn, end_pfn;
	unsigned long online_end_pfn;
	unsigned long nr_free;
	long nr_alloc;
	struct free_area free_area[NR_PAGE_ORDERS];
};

struct pcp_list {
	struct list_head list;
	int count;
};

/**
 * struct per_thread_pages - a cache of free pages for the threads hashed to
 * one slot, so the hot path takes no shared lock.
 * @lock: protects the lists and counters.
 * @lists: [zone][0] order-0 pages, [zone][1] PMD-order blocks.
 * @nr_alloc: pages allocated minus freed through this slot.
 */
struct per_thread_pages {
	spinlock_t lock;
	long nr_alloc;
	struct pcp_list lists[2][NR_PCP_ORDERS];
} __attribute__((aligned(64)));

struct hetmm_bad_page_report {
	unsigned long pfn;
	char reason[72];
};

struct hetmm_checker {
	const char *name;
	hetmm_check_fn fn;
	void *arg;
};

/* Slots where higher layers hang their per-machine state. */
enum hetmm_subsys {
	HETMM_SUBSYS_MM,
	HETMM_SUBSYS_MEMREMAP,
	HETMM_SUBSYS_DRIVERS,
	NR_HETMM_SUBSYS,
};

/**
 * struct hetmm_machine - one simulated machine.
 * @id: index in the machine table (struct page::machine_id).
 * @vmemmap: struct page array for pfns [0, max_pfn).
 * @frames: host bytes for every pfn [0, max_pfn), always reserved (untouched
 *          frames cost nothing); page tables live here on every machine.
 * @arena: == @frames if frames carry user data, NULL if metadata-only.
 * @zones: ZONE_NORMAL and ZONE_MOVABLE (the latter empty if not configured).
 * @zero_page: the shared zero page (reserved, never freed).
 * @huge_zero_folio: the huge zero folio, allocated on first use by
 *                   get_huge_zero_folio() (reserved, never freed once
 *                   allocated, like the kernel's persistent one); NULL
 *                   until then.
 * @faults: this machine's fault-injection sites.
 * @device_folio_free: called when a ZONE_DEVICE folio's refcount drops to
 *                     zero (set by the memremap layer).
 * @subsys: per-layer private state, indexed by enum hetmm_subsys.
 * @subsys_destroy: per-layer teardown, called by hetmm_machine_destroy()
 *                  from the highest layer down, after pending RCU callbacks.
 */
struct hetmm_machine {
	uint16_t id;
	struct hetmm_machine_config cfg;
	unsigned long nr_ram_pages;
	unsigned long device_base_pfn;
	unsigned long max_pfn;

	struct page *vmemmap;
	size_t vmemmap_bytes;
	unsigned char *frames;
	unsigned char *arena;
	size_t arena_bytes;

	struct zone zones[2];
	struct per_thread_pages pcp[NR_PCP_SLOTS];
	struct page *zero_page;
	struct folio *_Atomic huge_zero_folio;

	spinlock_t device_lock;       /* device window cursor */
	unsigned long device_next_pfn;
	void (*device_folio_free)(struct folio *folio);

	struct hetmm_faults faults;

	spinlock_t bad_lock;
	unsigned long nr_bad;
	struct hetmm_bad_page_report bad[16];

	struct mutex check_lock;
	unsigned int nr_checkers;
	struct hetmm_checker checkers[HETMM_MAX_CHECKERS];
	char *check_report;

	void *subsys[NR_HETMM_SUBSYS];
	void (*subsys_destroy[NR_HETMM_SUBSYS])(struct hetmm_machine *m);
};

extern struct hetmm_machine *hetmm_machines[HETMM_MAX_MACHINES];

/* Defaults: 256 MiB RAM with data, no movable zone, 1 GiB device window. */
void hetmm_machine_config_default(struct hetmm_machine_config *cfg);

/*
 * hetmm_machine_create - build a machine from @cfg.
 * Return: the machine, ERR_PTR(-EINVAL) for a bad config (the reason is
 * printed by hetmm_machine_config_check), ERR_PTR(-ENOMEM) if the host
 * cannot reserve the memory, ERR_PTR(-EMFILE) if too many machines exist.
 */
struct hetmm_machine *hetmm_machine_create(const struct hetmm_machine_config *cfg);
/* Validate @cfg; on error, if @why is non-NULL, *why names the problem. */
int hetmm_machine_config_check(const struct hetmm_machine_config *cfg,
			       const char **why);
/*
 * Free everything; pages still allocated are simply dropped. Waits for
 * pending call_rcu() callbacks first (they may free this machine's frames).
 * Context: no other thread may use the machine any more.
 */
void hetmm_machine_destroy(struct hetmm_machine *m);

/*
 * A one-entry per-thread cache of the last machine whose memmap a page
 * pointer fell in, so page_machine() -- and with it page_to_pfn() and
 * page_address() -- need not load the struct page itself (the kernel gets
 * the same from its fixed vmemmap and direct map). hetmm_machine_gen
 * changes whenever a machine is destroyed, which invalidates every cache.
 */
struct hetmm_machine_cache {
	uintptr_t lo, hi;
	struct hetmm_machine *m;
	unsigned long gen;
};

extern __hetmm_tls struct hetmm_machine_cache __hetmm_mcache;
extern unsigned long hetmm_machine_gen;
struct hetmm_machine *__page_machine_slow(const struct page *page);

static inline struct hetmm_machine *page_machine(const struct page *page)
{
	uintptr_t p = (uintptr_t)page;

	if (likely(p - __hetmm_mcache.lo < __hetmm_mcache.hi - __hetmm_mcache.lo &&
		   __hetmm_mcache.gen == __atomic_load_n(&hetmm_machine_gen,
							 __ATOMIC_ACQUIRE)))
		return __hetmm_mcache.m;
	return __page_machine_slow(page);
}

static inline struct hetmm_machine *folio_machine(const struct folio *folio)
{
	return page_machine(&folio->page);
}

static inline unsigned long page_to_pfn(const struct page *page)
{
	return (unsigned long)(page - page_machine(page)->vmemmap);
}

static inline unsigned long folio_pfn(const struct folio *folio)
{
	return page_to_pfn(&folio->page);
}

/* The struct page of @pfn; the pfn must be below m->max_pfn. */
static inline struct page *pfn_to_page(struct hetmm_machine *m,
				       unsigned long pfn)
{
	return m->vmemmap + pfn;
}

/* True if @pfn is RAM whose struct page has been initialised. */
bool pfn_valid(struct hetmm_machine *m, unsigned long pfn);

/* Host address of the frame's bytes, NULL on a metadata-only machine. */
static inline void *page_address(const struct page *page)
{
	struct hetmm_machine *m = page_machine(page);

	if (!m->arena)
		return NULL;
	return m->arena + (page - m->vmemmap) * PAGE_SIZE;
}

static inline void *folio_address(const struct folio *folio)
{
	return page_address(&folio->page);
}

/*
 * Host address of a frame's bytes on any machine, metadata-only included:
 * for memory the simulator itself keeps in frames (page tables).
 */
static inline void *page_frame(const struct page *page)
{
	struct hetmm_machine *m = page_machine(page);

	return m->frames + (page - m->vmemmap) * PAGE_SIZE;
}

static inline void *pfn_frame(struct hetmm_machine *m, unsigned long pfn)
{
	return m->frames + pfn * PAGE_SIZE;
}

/*
 * alloc_pages - allocate 2^@order contiguous frames.
 * Orders above 0 are always compound (a folio). The page comes back with
 * refcount 1, unlocked, zeroed if __GFP_ZERO.
 * Return: the first page, or NULL (as in the kernel) when memory is
 * exhausted, a failure was injected at the alloc_pages site, @order exceeds
 * MAX_PAGE_ORDER or @gfp has unknown bits.
 * Context: takes the caller's per-thread list lock and maybe a zone lock.
 */
struct page *alloc_pages(struct hetmm_machine *m, gfp_t gfp, unsigned int order);
struct folio *folio_alloc(struct hetmm_machine *m, gfp_t gfp, unsigned int order);
/* Drop the reference alloc_pages() returned; @order must match. */
void __free_pages(struct page *page, unsigned int order);
/* Release every per-thread list of @m back to the buddy lists. */
void drain_all_pages(struct hetmm_machine *m);

/* Pages currently allocated (excluding the zero page and the huge zero
 * folio). */
long hetmm_pages_in_use(struct hetmm_machine *m);
/* The zero page and, once allocated, the huge zero folio's 512 pages. */
unsigned long hetmm_pages_reserved(struct hetmm_machine *m);
/*
 * get_huge_zero_folio - the machine's huge zero folio, allocated (zeroed,
 * outside ZONE_MOVABLE) on first use; racing first users agree on one.
 * It is never freed. Return: the folio, or NULL if it could not be
 * allocated (the caller falls back to 4 KiB pages).
 */
struct folio *get_huge_zero_folio(struct hetmm_machine *m);
/* Free pages: buddy lists + per-thread lists + never-onlined RAM. */
unsigned long hetmm_pages_free(struct hetmm_machine *m);
/* Struct pages initialised so far (RAM and device). */
unsigned long hetmm_memmap_pages_online(struct hetmm_machine *m);

/*
 * hetmm_device_range_reserve - carve @nr_pages pfns (a multiple of 1024)
 * out of the device window for a pgmap. Struct pages are not initialised
 * yet: see hetmm_device_pages_init().
 * Return: 0 and *@start_pfn, -EINVAL for a bad size, -ENOSPC if the window
 * is exhausted.
 */
int hetmm_device_range_reserve(struct hetmm_machine *m, unsigned long nr_pages,
			       unsigned long *start_pfn);
/* Initialise struct pages [pfn, pfn+nr) as free ZONE_DEVICE pages. */
void hetmm_device_pages_init(struct hetmm_machine *m, unsigned long pfn,
			     unsigned long nr);

/* ----------------------------------------------------------- data helpers */

/* Zero one page / every page of a folio. */
void clear_highpage(struct page *page);
void folio_zero(struct folio *folio);
/* Copy one page's bytes; cannot fail. */
void copy_highpage(struct page *to, struct page *from);
/*
 * hetmm_copy_stream - copy @len bytes with non-temporal stores, the way a
 * copy engine writes around the CPU caches: the destination is not pulled
 * into the cache first and the copy does not evict the working set. @dst
 * and @src must be 64-byte aligned and @len a multiple of 64; on a host
 * without SSE2 it is memcpy.
 */
void hetmm_copy_stream(void *dst, const void *src, size_t len);
/*
 * folio_mc_copy - copy every page of @src to @dst (same order), the way a
 * machine-check-safe copy can fail. Folios of HETMM_COPY_STREAM_NR pages
 * or more are copied with hetmm_copy_stream().
 * Return: 0, -EINVAL if the orders differ, -EIO if a failure was injected at
 * the copy_page site (nothing copied).
 */
int folio_mc_copy(struct folio *dst, struct folio *src);
#define HETMM_COPY_STREAM_NR 16 /* 64 KiB */

/* ------------------------------------------------------------ bad pages */

/* Record a bad-page event for @page; hetmm_check() reports it. */
void hetmm_bad_page(struct page *page, const char *reason);
/* Forget recorded bad pages (tests that provoke them on purpose). */
void hetmm_bad_page_clear(struct hetmm_machine *m);

#endif /* HETMM_PHYS_H */
