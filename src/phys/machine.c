// SPDX-License-Identifier: MIT
/*
 * machine.c - creating and destroying simulated machines.
 *
 * Locking and invariants:
 *   machines_lock protects hetmm_machines[]: an entry is non-NULL exactly
 *   while its machine exists, and struct page::machine_id indexes it, so
 *   page_machine() is valid for any page of a live machine.
 *   A machine's geometry (cfg, nr_ram_pages, device_base_pfn, max_pfn,
 *   vmemmap, arena) never changes after creation.
 */
#include <string.h>
#include <sys/mman.h>

#include <hetmm/err.h>
#include <hetmm/phys.h>
#include <hetmm/rcu.h>

#include "internal.h"

struct hetmm_machine *hetmm_machines[HETMM_MAX_MACHINES];
static pthread_mutex_t machines_lock = PTHREAD_MUTEX_INITIALIZER;
__hetmm_tls struct hetmm_machine_cache __hetmm_mcache;
unsigned long hetmm_machine_gen = 1;

struct hetmm_machine *__page_machine_slow(const struct page *page)
{
	struct hetmm_machine *m = __atomic_load_n(
		&hetmm_machines[page->machine_id], __ATOMIC_ACQUIRE);
	__hetmm_mcache.gen = __atomic_load_n(&hetmm_machine_gen,
					     __ATOMIC_ACQUIRE);
	__hetmm_mcache.lo = (uintptr_t)m->vmemmap;
	__hetmm_mcache.hi = (uintptr_t)(m->vmemmap + m->max_pfn);
	__hetmm_mcache.m = m;
	return m;
}

#define MAX_BLOCK_BYTES (PAGE_SIZE << MAX_PAGE_ORDER)
/* 2^52 bytes of physical address space is plenty for a simulation. */
#define MAX_PHYS_BYTES (1ULL << 52)

void hetmm_machine_config_default(struct hetmm_machine_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->ram_size = 256ULL << 20;
	cfg->device_size = 1ULL << 30;
	cfg->page_size = PAGE_SIZE;
	cfg->carry_data = true;
	cfg->nr_cpus = 4;
}

int hetmm_machine_config_check(const struct hetmm_machine_config *cfg,
			       const char **why)
{
	const char *w = NULL;

	if (!cfg)
		w = "no configuration";
	else if (cfg->page_size != PAGE_SIZE)
		w = "page_size must be 4096";
	else if (cfg->ram_size < 2 * MAX_BLOCK_BYTES)
		w = "ram_size must be at least 8 MiB";
	else if (cfg->ram_size % MAX_BLOCK_BYTES)
		w = "ram_size must be a multiple of 4 MiB";
	else if (cfg->movable_size % MAX_BLOCK_BYTES)
		w = "movable_size must be a multiple of 4 MiB";
	else if (cfg->movable_size >= cfg->ram_size)
		w = "movable_size must be smaller than ram_size";
	else if (cfg->device_size % MAX_BLOCK_BYTES)
		w = "device_size must be a multiple of 4 MiB";
	else if (cfg->ram_size > MAX_PHYS_BYTES / 2 ||
		 cfg->device_size > MAX_PHYS_BYTES / 2)
		w = "ram_size/device_size too large (limit 2^51 bytes each)";
	else if (cfg->nr_cpus < 1 || cfg->nr_cpus > 256)
		w = "nr_cpus must be 1..256";
	if (why)
		*why = w;
	return w ? -EINVAL : 0;
}

static void *reserve(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static int machine_table_add(struct hetmm_machine *m)
{
	int ret = -EMFILE;

	pthread_mutex_lock(&machines_lock);
	/* Slot 0 stays unused so a zeroed struct page names no machine. */
	for (unsigned int i = 1; i < HETMM_MAX_MACHINES; i++) {
		if (!hetmm_machines[i]) {
			m->id = (uint16_t)i;
			__atomic_store_n(&hetmm_machines[i], m,
					 __ATOMIC_RELEASE);
			ret = 0;
			break;
		}
	}
	pthread_mutex_unlock(&machines_lock);
	return ret;
}

struct hetmm_machine *hetmm_machine_create(const struct hetmm_machine_config *cfg)
{
	struct hetmm_machine *m;
	unsigned long movable_pages;
	int ret;

	ret = hetmm_machine_config_check(cfg, NULL);
	if (ret)
		return ERR_PTR(ret);
	/* The per-thread page lists must each own their cache lines. */
	m = aligned_alloc(_Alignof(struct hetmm_machine),
			  ALIGN(sizeof(*m), _Alignof(struct hetmm_machine)));
	if (!m)
		return ERR_PTR(-ENOMEM);
	memset(m, 0, sizeof(*m));
	m->cfg = *cfg;
	m->nr_ram_pages = cfg->ram_size >> PAGE_SHIFT;
	m->device_base_pfn = ALIGN(m->nr_ram_pages, PAGES_PER_SECTION);
	m->max_pfn = m->device_base_pfn + (cfg->device_size >> PAGE_SHIFT);
	m->device_next_pfn = m->device_base_pfn;
	spin_lock_init(&m->device_lock);
	spin_lock_init(&m->bad_lock);
	mutex_init(&m->check_lock);

	m->vmemmap_bytes = m->max_pfn * sizeof(struct page);
	m->vmemmap = reserve(m->vmemmap_bytes);
	if (!m->vmemmap)
		goto out_free;
	m->arena_bytes = m->max_pfn * PAGE_SIZE;
	m->frames = reserve(m->arena_bytes);
	if (!m->frames)
		goto out_unmap_memmap;
	if (cfg->carry_data) {
		m->arena = m->frames;
		/*
		 * The kernel reaches RAM through a direct map built of huge
		 * pages; back the arena with host THPs where the host allows,
		 * so copies and zeroing are not dominated by host TLB misses.
		 */
		madvise(m->arena, m->arena_bytes, MADV_HUGEPAGE);
	}
	ret = machine_table_add(m);
	if (ret)
		goto out_unmap_arena;

	movable_pages = cfg->movable_size >> PAGE_SHIFT;
	phys_init_zone(m, &m->zones[ZONE_NORMAL], ZONE_NORMAL, 0,
		       m->nr_ram_pages - movable_pages);
	phys_init_zone(m, &m->zones[ZONE_MOVABLE], ZONE_MOVABLE,
		       m->nr_ram_pages - movable_pages, m->nr_ram_pages);
	for (int i = 0; i < NR_PCP_SLOTS; i++) {
		spin_lock_init(&m->pcp[i].lock);
		for (int z = 0; z < 2; z++)
			for (int o = 0; o < NR_PCP_ORDERS; o++)
				INIT_LIST_HEAD(&m->pcp[i].lists[z][o].list);
	}
	phys_register_checker(m);

	m->zero_page = alloc_pages(m, __GFP_ZERO | __GFP_NORETRY, 0);
	if (!m->zero_page) {
		ret = -ENOMEM;
		goto out_destroy;
	}
	PageSetFlag(m->zero_page, PG_reserved);
	PageSetFlag(m->zero_page, PG_zero_page);
	return m;

out_destroy:
	hetmm_machine_destroy(m);
	return ERR_PTR(ret);
out_unmap_arena:
	munmap(m->frames, m->arena_bytes);
out_unmap_memmap:
	munmap(m->vmemmap, m->vmemmap_bytes);
out_free:
	mutex_destroy(&m->check_lock);
	free(m);
	return ERR_PTR(ret ? ret : -ENOMEM);
}

void hetmm_machine_destroy(struct hetmm_machine *m)
{
	if (IS_ERR_OR_NULL(m))
		return;
	/*
	 * Frames freed through call_rcu() (page tables) are still queued:
	 * their callbacks touch this machine's memmap, so let them run first.
	 */
	rcu_barrier();
	for (int i = NR_HETMM_SUBSYS - 1; i >= 0; i--)
		if (m->subsys_destroy[i])
			m->subsys_destroy[i](m);
	rcu_barrier();
	pthread_mutex_lock(&machines_lock);
	__atomic_store_n(&hetmm_machines[m->id], NULL, __ATOMIC_RELEASE);
	/* Invalidate every thread's page_machine() cache. */
	__atomic_fetch_add(&hetmm_machine_gen, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&machines_lock);
	munmap(m->frames, m->arena_bytes);
	munmap(m->vmemmap, m->vmemmap_bytes);
	free(m->check_report);
	mutex_destroy(&m->check_lock);
	free(m);
}

int hetmm_device_range_reserve(struct hetmm_machine *m, unsigned long nr_pages,
			       unsigned long *start_pfn)
{
	int ret = 0;

	if (!m || !start_pfn || !nr_pages || nr_pages % (1UL << MAX_PAGE_ORDER))
		return -EINVAL;
	spin_lock(&m->device_lock);
	if (m->max_pfn - m->device_next_pfn < nr_pages) {
		ret = -ENOSPC;
	} else {
		*start_pfn = m->device_next_pfn;
		m->device_next_pfn += nr_pages;
	}
	spin_unlock(&m->device_lock);
	return ret;
}

void hetmm_device_pages_init(struct hetmm_machine *m, unsigned long pfn,
			     unsigned long nr)
{
	HETMM_BUG_ON(pfn < m->device_base_pfn || pfn + nr > m->max_pfn);
	for (unsigned long i = 0; i < nr; i++)
		init_struct_page(m, pfn_to_page(m, pfn + i), ZONE_DEVICE);
}
