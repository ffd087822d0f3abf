// SPDX-License-Identifier: MIT
/*
 * migrate_test.c - device migration: migrate_vma_setup/pages/finalize,
 * the vma-less migrate_device_* API, try_to_migrate/remove_migration_ptes,
 * through a tiny test driver with a DEVICE_PRIVATE and a DEVICE_COHERENT
 * pgmap whose memory carries real bytes (page_address() of a device page).
 *
 * The driver (struct tdev) keeps a bitmap of pgmap offsets in service,
 * allocates with pgmap_request_folio(), and its migrate_to_ram() migrates
 * the faulting page back with fault_page set. Until the CPU fault path for
 * device-private entries exists, emulate_fault() plays do_swap_page: it
 * locks and references the device folio and calls migrate_to_ram(). Each
 * test ends by evicting every device page with memunmap_pages_evict()
 * (migrate_device_range under the hood), exiting its processes, and the
 * harness's hetmm_check() (mapcounts against entries, refcounts, pgmap
 * references, leaks).
 */
#include <fcntl.h>
#include <pthread.h>

#include <hetmm/memremap.h>
#include <hetmm/migrate.h>
#include <hetmm/mm.h>
#include <hetmm/mmu_notifier.h>
#include <hetmm/stats.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define SZ_2M (2UL << 20)
#define DEV_PAGES 2048UL /* 8 MiB per pgmap */
#define MAXPG 1024UL

/* ------------------------------------------------------- the test driver */

struct tdev {
	struct dev_pagemap pgmap;
	struct hetmm_machine *m;
	uint64_t base;
	unsigned long base_pfn;
	pthread_mutex_t lock; /* used[], nr_used: a leaf lock */
	bool used[DEV_PAGES];
	unsigned long nr_used;
	unsigned long fault_calls;
	unsigned long splits;
	bool small_only; /* migrate_to_ram moves one page even for a PMD */
	bool small_dst; /* ... or 2 MiB, but into small system pages */
	/* Seen inside migrate_to_ram between setup and pages. */
	int fault_src_refcount;
	int fault_src_mapcount;
	bool fault_src_locked;
	unsigned long fault_src;
};

static struct tdev *pgmap_tdev(struct dev_pagemap *pgmap)
{
	return container_of(pgmap, struct tdev, pgmap);
}

static void tdev_folio_free(struct folio *folio)
{
	struct tdev *d = pgmap_tdev(folio->page.pgmap);
	unsigned long off = folio_pfn(folio) - d->base_pfn;
	bool ok = true;

	pthread_mutex_lock(&d->lock);
	for (unsigned long i = 0; i < folio_nr_pages(folio); i++) {
		ok &= d->used[off + i];
		d->used[off + i] = false;
	}
	d->nr_used -= folio_nr_pages(folio);
	pthread_mutex_unlock(&d->lock);
	assert_true(ok);
}

static void tdev_folio_split(struct folio *head, struct folio *tail)
{
	struct tdev *d = pgmap_tdev(head->page.pgmap);

	if (tail)
		d->splits++;
}

/* A locked device folio with one reference, or NULL. */
static struct folio *tdev_alloc(struct tdev *d, unsigned int order)
{
	unsigned long nr = 1UL << order;
	struct folio *folio = NULL;

	pthread_mutex_lock(&d->lock);
	for (unsigned long off = 0; off + nr <= DEV_PAGES; off += nr) {
		unsigned long i;

		for (i = 0; i < nr && !d->used[off + i]; i++)
			;
		if (i < nr)
			continue;
		folio = pgmap_request_folio(&d->pgmap, off, order);
		if (!folio)
			continue;
		for (i = 0; i < nr; i++)
			d->used[off + i] = true;
		d->nr_used += nr;
		break;
	}
	pthread_mutex_unlock(&d->lock);
	return folio;
}

/*
 * The CPU touched a device-private entry: a PTE-level fault moves that one
 * page back (splitting a large device folio if need be), a PMD-level fault
 * (vmf->pte == NULL) the whole 2 MiB folio, as a THP-aware driver does.
 */
static int tdev_migrate_to_ram(struct vm_fault *vmf)
{
	struct tdev *d = pgmap_tdev(page_pgmap(vmf->page));
	bool huge = !vmf->pte && !d->small_only;
	unsigned long n = huge ? HPAGE_PMD_NR : 1;
	unsigned long *src = calloc(n, sizeof(*src));
	unsigned long *dst = calloc(n, sizeof(*dst));
	struct migrate_vma args = {
		.vma = vmf->vma,
		.start = huge ? vmf->address & PMD_MASK : vmf->address,
		.src = src,
		.dst = dst,
		.pgmap_owner = d,
		.flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE |
			 (huge ? MIGRATE_VMA_SELECT_COMPOUND : 0),
		.fault_page = vmf->page,
	};
	struct page *spage;

	assert_non_null(src);
	assert_non_null(dst);
	args.end = args.start + n * PAGE_SIZE;
	d->fault_calls++;
	if (migrate_vma_setup(&args)) {
		free(src);
		free(dst);
		return -EFAULT;
	}
	d->fault_src = src[0];
	spage = migrate_pfn_to_page(d->m, src[0]);
	if (spage) {
		struct folio *sf = page_folio(spage);
		bool compound = src[0] & MIGRATE_PFN_COMPOUND;

		d->fault_src_refcount = folio_ref_count(sf);
		d->fault_src_mapcount = folio_mapcount(sf);
		d->fault_src_locked = folio_test_locked(sf);
		if (compound && !d->small_dst) {
			struct folio *new =
				folio_alloc(d->m, __GFP_MOVABLE, PMD_ORDER);

			assert_non_null(new);
			folio_lock(new);
			assert_int_equal(folio_mc_copy(new, sf), 0);
			dst[0] = migrate_pfn(folio_pfn(new)) |
				 MIGRATE_PFN_COMPOUND;
		} else {
			for (unsigned long i = 0; i < (compound ? n : 1); i++) {
				struct folio *new =
					folio_alloc(d->m, __GFP_MOVABLE, 0);

				assert_non_null(new);
				folio_lock(new);
				copy_highpage(&new->page, spage + i);
				dst[i] = migrate_pfn(folio_pfn(new));
			}
		}
	}
	migrate_vma_pages(&args);
	migrate_vma_finalize(&args);
	free(src);
	free(dst);
	return 0;
}

static const struct dev_pagemap_ops tdev_private_ops = {
	.folio_free = tdev_folio_free,
	.migrate_to_ram = tdev_migrate_to_ram,
	.folio_split = tdev_folio_split,
};

static const struct dev_pagemap_ops tdev_coherent_ops = {
	.folio_free = tdev_folio_free,
};

static struct tdev *tdev_create(struct hetmm_machine *m, enum memory_type type)
{
	struct tdev *d = calloc(1, sizeof(*d));

	assert_non_null(d);
	d->m = m;
	pthread_mutex_init(&d->lock, NULL);
	ASSERT_OK(request_free_mem_region(m, DEV_PAGES * PAGE_SIZE, &d->base));
	d->base_pfn = d->base >> PAGE_SHIFT;
	d->pgmap.type = type;
	d->pgmap.ops = type == MEMORY_DEVICE_PRIVATE ? &tdev_private_ops :
						       &tdev_coherent_ops;
	d->pgmap.owner = d;
	d->pgmap.nr_range = 1;
	d->pgmap.ranges[0].start = d->base;
	d->pgmap.ranges[0].end = d->base + DEV_PAGES * PAGE_SIZE - 1;
	ASSERT_OK(memremap_pages(m, &d->pgmap));
	return d;
}

/*
 * Every page in service must be at rest (refcount == mapcount, unlocked):
 * anything else is a leak the eviction would spin on forever.
 */
static void tdev_assert_at_rest(struct tdev *d)
{
	for (unsigned long off = 0; off < DEV_PAGES; off++) {
		struct page *p = pfn_to_page(d->m, d->base_pfn + off);
		struct folio *f;

		if (!d->used[off] || PageTail(p))
			continue;
		f = page_folio(p);
		assert_int_equal(folio_ref_count(f), folio_mapcount(f));
		assert_false(folio_test_locked(f));
	}
}

static void tdev_destroy(struct tdev *d)
{
	tdev_assert_at_rest(d);
	ASSERT_OK(memunmap_pages_evict(&d->pgmap));
	assert_int_equal(d->nr_used, 0);
	release_mem_region(d->m, d->base, DEV_PAGES * PAGE_SIZE);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* -------------------------------------------------------------- fixture */

struct env {
	struct hetmm_machine *m;
	struct mm_struct *mm;
	struct tdev *priv;
	struct tdev *coh;
	unsigned long src[MAXPG], dst[MAXPG];
};

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	e->m = test_machine_new(64, true);
	e->mm = hetmm_process_create(e->m);
	assert_false(IS_ERR(e->mm));
	e->priv = tdev_create(e->m, MEMORY_DEVICE_PRIVATE);
	e->coh = tdev_create(e->m, MEMORY_DEVICE_COHERENT);
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	/* Everything comes home before the processes go. */
	tdev_destroy(e->priv);
	tdev_destroy(e->coh);
	if (e->mm)
		ASSERT_OK(hetmm_check(e->m));
	if (e->mm)
		hetmm_exit(e->mm);
	test_machine_finish(e->m);
	free(e);
	return 0;
}

static uint64_t stat_now(enum hetmm_stat_item item)
{
	struct hetmm_stats s;

	hetmm_stats_read(&s);
	return s.v[item];
}

/* ------------------------------------------------------------- helpers */

static unsigned long map_anon(struct mm_struct *mm, unsigned long npages,
			      int prot, int flags)
{
	long a = hetmm_mmap(mm, 0, npages * PAGE_SIZE, prot, flags, -1, 0);

	assert_true(a > 0);
	return (unsigned long)a;
}

/* A 2 MiB aligned MADV_HUGEPAGE anonymous region of @n huge pages. */
static unsigned long thp_region(struct mm_struct *mm, unsigned long n)
{
	long a = hetmm_mmap(mm, 0, (n + 1) * SZ_2M, RW, PRIV_ANON, -1, 0);
	unsigned long al;

	assert_true(a > 0);
	al = ALIGN((unsigned long)a, SZ_2M);
	if (al > (unsigned long)a)
		ASSERT_OK(hetmm_munmap(mm, a, al - a));
	ASSERT_OK(hetmm_munmap(mm, al + n * SZ_2M,
			       a + (n + 1) * SZ_2M - (al + n * SZ_2M)));
	ASSERT_OK(hetmm_madvise(mm, al, n * SZ_2M, MADV_HUGEPAGE));
	return al;
}

static unsigned char pat(unsigned long i, unsigned char salt)
{
	return (unsigned char)(i * 7 + salt + 1);
}

/* Write a pattern byte at two offsets of each page. */
static void fill(struct mm_struct *mm, unsigned long a, unsigned long n,
		 unsigned char salt)
{
	for (unsigned long i = 0; i < n; i++) {
		unsigned char v = pat(i, salt);

		ASSERT_OK(hetmm_cpu_write(mm, 0, a + i * PAGE_SIZE + 5, &v, 1));
		ASSERT_OK(hetmm_cpu_write(mm, 0, a + i * PAGE_SIZE + 4000, &v,
					  1));
	}
}

/* Check pages [first, first + n) of the region at @a. */
static void verify_range(struct mm_struct *mm, unsigned long a,
			 unsigned long first, unsigned long n,
			 unsigned char salt)
{
	for (unsigned long i = first; i < first + n; i++) {
		unsigned char v = 0, w = 0, z = 1;

		ASSERT_OK(hetmm_cpu_read(mm, 1, a + i * PAGE_SIZE + 5, &v, 1));
		ASSERT_OK(
			hetmm_cpu_read(mm, 1, a + i * PAGE_SIZE + 4000, &w, 1));
		ASSERT_OK(hetmm_cpu_read(mm, 1, a + i * PAGE_SIZE + 6, &z, 1));
		assert_int_equal(v, pat(i, salt));
		assert_int_equal(w, pat(i, salt));
		assert_int_equal(z, 0);
	}
}

static void verify(struct mm_struct *mm, unsigned long a, unsigned long n,
		   unsigned char salt)
{
	verify_range(mm, a, 0, n, salt);
}

/*
 * The entry mapping @addr: the PTE, or the PMD entry if the PMD is not a
 * table (then *pmd_level is set). Lock-free read (tests are quiescent), so
 * it may be used inside a migration, with mmap_lock held.
 */
static pte_t entry_at(struct mm_struct *mm, unsigned long addr, bool *pmd_level)
{
	pte_t e = __pte(0);
	pmd_t *pmd;

	*pmd_level = false;
	pmd = mm->pgd ? mm_find_pmd(mm, addr) : NULL;
	if (pmd) {
		e = ptep_get(pmd);
		if (pmd_table(e)) {
			e = ptep_get(pte_offset(mm, pmd, addr));
		} else {
			*pmd_level = !pte_none(e);
		}
	}
	return e;
}

static pte_t pte_at(struct mm_struct *mm, unsigned long addr)
{
	bool pmd_level;
	pte_t e = entry_at(mm, addr, &pmd_level);

	assert_false(pmd_level);
	return e;
}

static unsigned long entry_pfn(pte_t e)
{
	return pte_present(e) ? pte_pfn(e) : softleaf_pfn(softleaf_from_pte(e));
}

static struct folio *folio_at(struct hetmm_machine *m, pte_t e)
{
	return page_folio(pfn_to_page(m, entry_pfn(e)));
}

/* The driver's side of a migration. */
struct mig_opts {
	struct tdev *to; /* NULL: system memory */
	unsigned long flags;
	void *owner;
	bool small_dst; /* small pages even for COMPOUND sources */
	unsigned long fail_mod; /* leave dst 0 where i % fail_mod == 1 */
	void (*after_setup)(struct env *e, struct migrate_vma *args);
	void (*after_pages)(struct env *e, struct migrate_vma *args);
};

static struct folio *alloc_dst(struct env *e, const struct mig_opts *o,
			       unsigned int order)
{
	struct folio *f;

	if (o->to)
		return tdev_alloc(o->to, order);
	f = folio_alloc(e->m, __GFP_MOVABLE, order);
	if (f)
		folio_lock(f);
	return f;
}

/* Copy (or zero, for holes) @nr pages into @dst. */
static void copy_in(struct folio *dst, unsigned long di, struct page *spage,
		    unsigned long nr)
{
	for (unsigned long j = 0; j < nr; j++) {
		if (spage)
			copy_highpage(folio_page(dst, di + j), spage + j);
		else
			clear_highpage(folio_page(dst, di + j));
	}
}

/*
 * setup, allocate + copy, pages, finalize over [start, start + n pages).
 * Return: pages committed (MIGRATE after migrate_vma_pages).
 */
static unsigned long migrate(struct env *e, struct mm_struct *mm,
			     unsigned long start, unsigned long n,
			     const struct mig_opts *o)
{
	struct migrate_vma args = {
		.start = start,
		.end = start + n * PAGE_SIZE,
		.src = e->src,
		.dst = e->dst,
		.pgmap_owner = o->owner,
		.flags = o->flags,
	};
	unsigned long done = 0, nr;

	assert_true(n <= MAXPG);
	mmap_read_lock(mm);
	args.vma = vma_lookup(mm, start);
	ASSERT_OK(migrate_vma_setup(&args));
	assert_int_equal(args.npages, n);
	if (o->after_setup)
		o->after_setup(e, &args);
	for (unsigned long i = 0; i < n; i += nr) {
		struct page *spage = migrate_pfn_to_page(e->m, e->src[i]);
		bool compound = e->src[i] & MIGRATE_PFN_COMPOUND;
		struct folio *f;

		nr = compound ? HPAGE_PMD_NR : 1;
		if (!(e->src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		if (o->fail_mod && i % o->fail_mod == 1)
			continue;
		if (compound && !o->small_dst) {
			f = alloc_dst(e, o, PMD_ORDER);
			assert_non_null(f);
			copy_in(f, 0, spage, HPAGE_PMD_NR);
			e->dst[i] = migrate_pfn(folio_pfn(f)) |
				    MIGRATE_PFN_COMPOUND;
			continue;
		}
		for (unsigned long j = 0; j < nr; j++) {
			f = alloc_dst(e, o, 0);
			assert_non_null(f);
			copy_in(f, 0, spage ? spage + j : NULL, 1);
			e->dst[i + j] = migrate_pfn(folio_pfn(f));
		}
	}
	migrate_vma_pages(&args);
	for (unsigned long i = 0; i < n; i++)
		if (e->src[i] & MIGRATE_PFN_MIGRATE)
			done += (e->src[i] & MIGRATE_PFN_COMPOUND) ?
					HPAGE_PMD_NR :
					1;
	if (o->after_pages)
		o->after_pages(e, &args);
	migrate_vma_finalize(&args);
	mmap_read_unlock(mm);
	return done;
}

static unsigned long to_dev(struct env *e, struct mm_struct *mm,
			    unsigned long start, unsigned long n)
{
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM,
			      .owner = e->priv };

	return migrate(e, mm, start, n, &o);
}

static unsigned long to_sys(struct env *e, struct mm_struct *mm,
			    unsigned long start, unsigned long n)
{
	struct mig_opts o = { .flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
			      .owner = e->priv };

	return migrate(e, mm, start, n, &o);
}

/* do_swap_page's device-private branch, until the real one exists. */
static int emulate_fault(struct mm_struct *mm, unsigned long addr)
{
	struct vm_fault vmf = { .address = addr & PAGE_MASK };
	struct hetmm_machine *m = mm->machine;
	struct folio *folio;
	struct page *page;
	pmd_t *pmd;
	pte_t e;
	int ret;

	mmap_read_lock(mm);
	vmf.vma = vma_lookup(mm, addr);
	pmd = mm_find_pmd(mm, addr);
	assert_non_null(pmd);
	e = ptep_get(pmd);
	if (pmd_table(e)) {
		vmf.pte = pte_offset(mm, pmd, addr);
		e = ptep_get(vmf.pte);
		page = pfn_to_page(m, softleaf_pfn(softleaf_from_pte(e)));
	} else {
		page = pfn_to_page(m, softleaf_pfn(softleaf_from_pte(e)) +
					      pte_index(addr));
	}
	assert_true(is_device_private_kind(pte_kind(e)));
	vmf.pmd = pmd;
	vmf.orig_pte = e;
	vmf.page = page;
	folio = page_folio(page);
	assert_true(folio_trylock(folio));
	folio_get(folio);
	ret = page_pgmap(page)->ops->migrate_to_ram(&vmf);
	/* The device folio may have been split: ours is the page's now. */
	folio = page_folio(page);
	folio_unlock(folio);
	folio_put(folio);
	mmap_read_unlock(mm);
	return ret;
}

/* ============================================================== tests */

static void test_sys_to_dev_rw(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 16, RW, PRIV_ANON);
	uint64_t to_device = stat_now(HETMM_STAT_migrate_to_device);
	uint64_t to_system = stat_now(HETMM_STAT_migrate_to_system);
	long in_use;

	fill(e->mm, a, 16, 1);
	in_use = hetmm_pages_in_use(e->m);
	assert_int_equal(to_dev(e, e->mm, a, 16), 16);
	assert_int_equal(stat_now(HETMM_STAT_migrate_to_device) - to_device,
			 16);
	for (unsigned long i = 0; i < 16; i++) {
		pte_t p = pte_at(e->mm, a + i * PAGE_SIZE);
		struct folio *f = folio_at(e->m, p);
		unsigned char *bytes = folio_address(f);

		assert_int_equal(pte_kind(p), SOFTLEAF_DEVICE_PRIVATE_WRITE);
		assert_true(folio_is_device_private(f));
		assert_int_equal(folio_ref_count(f), 1);
		assert_int_equal(folio_mapcount(f), 1);
		assert_false(folio_test_locked(f));
		assert_true(folio_test_anon(f));
		assert_true(PageAnonExclusive(&f->page));
		assert_int_equal(bytes[5], pat(i, 1));
		assert_int_equal(bytes[4000], pat(i, 1));
		assert_int_equal((e->src[i] & ~(~0UL << MIGRATE_PFN_SHIFT)),
				 MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE |
					 MIGRATE_PFN_WRITE);
	}
	/* The system pages went back to the allocator. */
	assert_int_equal(hetmm_pages_in_use(e->m), in_use - 16);
	assert_int_equal(e->priv->nr_used, 16);
	ASSERT_OK(hetmm_check(e->m));

	assert_int_equal(to_sys(e, e->mm, a, 16), 16);
	assert_int_equal(stat_now(HETMM_STAT_migrate_to_system) - to_system,
			 16);
	assert_int_equal(e->priv->nr_used, 0);
	for (unsigned long i = 0; i < 16; i++) {
		pte_t p = pte_at(e->mm, a + i * PAGE_SIZE);
		struct folio *f = folio_at(e->m, p);

		assert_true(pte_present(p));
		assert_true(pte_write(p));
		assert_false(folio_is_zone_device(f));
		assert_int_equal(folio_ref_count(f), 1);
		assert_true(PageAnonExclusive(&f->page));
	}
	verify(e->mm, a, 16, 1);
	fill(e->mm, a, 16, 2); /* writable again without a fault */
	verify(e->mm, a, 16, 2);
	ASSERT_OK(hetmm_check(e->m));
}

/* The reference walkthrough of spec 4.7, sys -> dev, step by step. */
static void walkthrough_after_setup(struct env *e, struct migrate_vma *args)
{
	struct folio *f = page_folio(migrate_pfn_to_page(e->m, args->src[0]));
	pte_t p = pte_at(args->vma->vm_mm, args->start);

	assert_int_equal(args->cpages, 1);
	assert_int_equal(folio_ref_count(f), 1);
	assert_int_equal(folio_mapcount(f), 0);
	assert_true(folio_test_locked(f));
	assert_int_equal(pte_kind(p), SOFTLEAF_MIGRATION_WRITE);
	assert_int_equal(softleaf_pfn(softleaf_from_pte(p)), folio_pfn(f));
	assert_true(softleaf_dirty(softleaf_from_pte(p)));
}

static void walkthrough_after_pages(struct env *e, struct migrate_vma *args)
{
	struct folio *s = page_folio(migrate_pfn_to_page(e->m, args->src[0]));
	struct folio *d = page_folio(migrate_pfn_to_page(e->m, args->dst[0]));

	assert_true(args->src[0] & MIGRATE_PFN_MIGRATE);
	assert_int_equal(folio_ref_count(s), 1);
	assert_int_equal(folio_ref_count(d), 1);
	assert_true(folio_test_locked(d));
	assert_ptr_equal(d->page.mapping, s->page.mapping);
	assert_int_equal(d->page.index, s->page.index);
}

static void test_walkthrough_refcounts(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 1, RW, PRIV_ANON);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM,
			      .owner = e->priv,
			      .after_setup = walkthrough_after_setup,
			      .after_pages = walkthrough_after_pages };
	struct folio *f;
	pte_t p;

	fill(e->mm, a, 1, 9);
	assert_int_equal(migrate(e, e->mm, a, 1, &o), 1);
	p = pte_at(e->mm, a);
	f = folio_at(e->m, p);
	assert_int_equal(folio_ref_count(f), 1);
	assert_int_equal(folio_mapcount(f), 1);

	/* dev -> sys through the fault path: refcounts inside. */
	ASSERT_OK(emulate_fault(e->mm, a));
	assert_int_equal(e->priv->fault_calls, 1);
	assert_int_equal(e->priv->fault_src_refcount, 2);
	assert_int_equal(e->priv->fault_src_mapcount, 0);
	assert_true(e->priv->fault_src_locked);
	assert_true(e->priv->fault_src & MIGRATE_PFN_WRITE);
	assert_int_equal(e->priv->nr_used, 0);
	p = pte_at(e->mm, a);
	assert_true(pte_present(p) && pte_write(p));
	verify(e->mm, a, 1, 9);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_sys_to_dev_readonly(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW, PRIV_ANON);

	fill(e->mm, a, 4, 3);
	ASSERT_OK(hetmm_mprotect(e->mm, a, 4 * PAGE_SIZE, PROT_READ));
	assert_int_equal(to_dev(e, e->mm, a, 4), 4);
	for (unsigned long i = 0; i < 4; i++) {
		pte_t p = pte_at(e->mm, a + i * PAGE_SIZE);

		assert_int_equal(pte_kind(p), SOFTLEAF_DEVICE_PRIVATE_READ);
		assert_false(e->src[i] & MIGRATE_PFN_WRITE);
		/* READ_EXCLUSIVE kept the page exclusive. */
		assert_true(PageAnonExclusive(&folio_at(e->m, p)->page));
	}
	ASSERT_OK(hetmm_check(e->m));
	assert_int_equal(to_sys(e, e->mm, a, 4), 4);
	for (unsigned long i = 0; i < 4; i++) {
		pte_t p = pte_at(e->mm, a + i * PAGE_SIZE);

		assert_true(pte_present(p));
		assert_false(pte_write(p));
		assert_true(PageAnonExclusive(&folio_at(e->m, p)->page));
	}
	verify(e->mm, a, 4, 3);
	/* Exclusive: making it writable needs no copy. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, 4 * PAGE_SIZE, RW));
	fill(e->mm, a, 4, 4);
	verify(e->mm, a, 4, 4);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_zero_page_and_holes(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW, PRIV_ANON);
	uint64_t fills = stat_now(HETMM_STAT_migrate_hole_fill);
	struct anon_vma *av;
	unsigned char c;
	pte_t p;

	mmap_read_lock(e->mm);
	av = vma_lookup(e->mm, a)->anon_vma;
	mmap_read_unlock(e->mm);
	/* page 0: zero page, page 1: hole, page 2: data, page 3: hole */
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a, &c, 1));
	p = pte_at(e->mm, a);
	assert_true(pte_present(p) && pte_special(p));
	c = 0x5a;
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, a + 2 * PAGE_SIZE, &c, 1));

	/* Without SELECT_SYSTEM the zero page and the data page stay. */
	{
		struct mig_opts o = { .to = e->priv, .owner = e->priv };

		assert_int_equal(migrate(e, e->mm, a, 4, &o), 2);
		assert_int_equal(e->src[0], 0);
		assert_int_equal(e->src[2], 0);
		assert_int_equal(pte_kind(pte_at(e->mm, a + PAGE_SIZE)),
				 SOFTLEAF_DEVICE_PRIVATE_WRITE);
		assert_int_equal(pte_kind(pte_at(e->mm, a + 3 * PAGE_SIZE)),
				 SOFTLEAF_DEVICE_PRIVATE_WRITE);
		assert_int_equal(to_sys(e, e->mm, a, 4), 2);
		ASSERT_OK(hetmm_madvise(e->mm, a + PAGE_SIZE, PAGE_SIZE,
					MADV_DONTNEED));
		ASSERT_OK(hetmm_madvise(e->mm, a + 3 * PAGE_SIZE, PAGE_SIZE,
					MADV_DONTNEED));
	}
	fills = stat_now(HETMM_STAT_migrate_hole_fill);
	assert_int_equal(to_dev(e, e->mm, a, 4), 4);
	assert_int_equal(e->src[0], MIGRATE_PFN_MIGRATE);
	assert_int_equal(e->src[1], MIGRATE_PFN_MIGRATE);
	assert_int_equal(e->src[3], MIGRATE_PFN_MIGRATE);
	assert_true(e->src[2] & MIGRATE_PFN_VALID);
	assert_int_equal(stat_now(HETMM_STAT_migrate_hole_fill) - fills, 3);
	for (unsigned long i = 0; i < 4; i++) {
		struct folio *f;

		p = pte_at(e->mm, a + i * PAGE_SIZE);
		assert_int_equal(pte_kind(p), SOFTLEAF_DEVICE_PRIVATE_WRITE);
		f = folio_at(e->m, p);
		assert_int_equal(folio_ref_count(f), 1);
		assert_int_equal(folio_mapcount(f), 1);
		assert_true(folio_test_anon(f) && PageAnonExclusive(&f->page));
		assert_ptr_equal(f->page.mapping, av);
	}
	ASSERT_OK(hetmm_check(e->m));
	assert_int_equal(to_sys(e, e->mm, a, 4), 4);
	for (unsigned long i = 0; i < 4; i++) {
		unsigned char v = 1;

		ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + i * PAGE_SIZE, &v, 1));
		assert_int_equal(v, i == 2 ? 0x5a : 0);
	}
	ASSERT_OK(hetmm_check(e->m));
}

/* Holes of a read-only anon VMA become read-only device entries. */
static void test_hole_readonly_vma(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 2, PROT_READ, PRIV_ANON);

	assert_int_equal(to_dev(e, e->mm, a, 2), 2);
	assert_int_equal(pte_kind(pte_at(e->mm, a)),
			 SOFTLEAF_DEVICE_PRIVATE_READ);
	ASSERT_OK(hetmm_check(e->m));
	assert_int_equal(to_sys(e, e->mm, a, 2), 2);
	{
		pte_t p = pte_at(e->mm, a);

		assert_true(pte_present(p) && !pte_write(p));
	}
	ASSERT_OK(hetmm_check(e->m));
}

static void test_shared_anon_not_migrated(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW, MAP_SHARED | MAP_ANONYMOUS);
	unsigned long pfn[4];

	fill(e->mm, a, 3, 5); /* page 3 stays a hole */
	for (unsigned long i = 0; i < 3; i++)
		pfn[i] = pte_pfn(pte_at(e->mm, a + i * PAGE_SIZE));
	assert_int_equal(to_dev(e, e->mm, a, 4), 0);
	assert_int_equal(e->src[3], 0); /* not an anonymous VMA */
	for (unsigned long i = 0; i < 3; i++) {
		pte_t p = pte_at(e->mm, a + i * PAGE_SIZE);

		assert_true(pte_present(p) && pte_write(p));
		assert_int_equal(pte_pfn(p), pfn[i]);
		/* collected, then refused by migrate_vma_pages */
		assert_true(e->src[i] & MIGRATE_PFN_VALID);
		assert_false(e->src[i] & MIGRATE_PFN_MIGRATE);
	}
	assert_true(pte_none(pte_at(e->mm, a + 3 * PAGE_SIZE)));
	assert_int_equal(e->priv->nr_used, 0);
	verify(e->mm, a, 3, 5);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_file_not_migrated(void **state)
{
	struct env *e = *state;
	int fd = hetmm_open(e->mm, "/f", O_RDWR | O_CREAT);
	char buf[PAGE_SIZE * 2];
	unsigned long a;
	long r;

	assert_true(fd >= 0);
	memset(buf, 0x33, sizeof(buf));
	assert_int_equal(hetmm_pwrite(e->mm, fd, buf, sizeof(buf), 0),
			 sizeof(buf));
	r = hetmm_mmap(e->mm, 0, 2 * PAGE_SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
	assert_true(r > 0);
	a = (unsigned long)r;
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a, buf, 1));
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + PAGE_SIZE, buf, 1));
	assert_int_equal(to_dev(e, e->mm, a, 2), 0);
	for (unsigned long i = 0; i < 2; i++) {
		pte_t p = pte_at(e->mm, a + i * PAGE_SIZE);

		assert_true(pte_present(p));
		assert_false(folio_is_zone_device(folio_at(e->m, p)));
	}
	assert_int_equal(e->priv->nr_used, 0);
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + PAGE_SIZE + 9, buf, 1));
	assert_int_equal((unsigned char)buf[0], 0x33);
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_munmap(e->mm, a, 2 * PAGE_SIZE));
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_unlink(e->mm, "/f"));
}

static void test_pinned_refused(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 2, RW, PRIV_ANON);
	struct folio *f;
	pte_t p;

	fill(e->mm, a, 2, 6);
	p = pte_at(e->mm, a);
	f = folio_at(e->m, p);
	folio_ref_add(f, GUP_PIN_COUNTING_BIAS); /* a FOLL_PIN */
	assert_int_equal(to_dev(e, e->mm, a, 2), 1);
	assert_int_equal(e->src[0], 0); /* exclusive + maybe pinned */
	p = pte_at(e->mm, a);
	assert_true(pte_present(p) && pte_write(p));
	assert_ptr_equal(folio_at(e->m, p), f);
	assert_int_equal(pte_kind(pte_at(e->mm, a + PAGE_SIZE)),
			 SOFTLEAF_DEVICE_PRIVATE_WRITE);
	folio_put_refs(f, GUP_PIN_COUNTING_BIAS);
	verify(e->mm, a, 1, 6);
	ASSERT_OK(hetmm_check(e->m));
}

/* A pinned page that is not exclusive passes collect, fails unmap. */
static void test_pinned_shared_restored(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 1, RW, PRIV_ANON);
	uint64_t skips = stat_now(HETMM_STAT_migrate_skip);
	struct mm_struct *child;
	struct folio *f;
	pte_t p, c;

	fill(e->mm, a, 1, 7);
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	p = pte_at(e->mm, a);
	f = folio_at(e->m, p);
	assert_false(PageAnonExclusive(&f->page));
	folio_ref_add(f, GUP_PIN_COUNTING_BIAS);
	assert_int_equal(to_dev(e, e->mm, a, 1), 0);
	assert_int_equal(e->src[0], 0);
	assert_int_equal(stat_now(HETMM_STAT_migrate_skip) - skips, 1);
	p = pte_at(e->mm, a);
	c = pte_at(child, a);
	assert_true(pte_present(p) && pte_present(c));
	assert_ptr_equal(folio_at(e->m, p), f);
	assert_ptr_equal(folio_at(e->m, c), f);
	assert_int_equal(folio_mapcount(f), 2);
	assert_false(folio_test_locked(f));
	folio_put_refs(f, GUP_PIN_COUNTING_BIAS);
	assert_int_equal(folio_ref_count(f), 2);
	verify(e->mm, a, 1, 7);
	verify(child, a, 1, 7);
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(child);
}

/* A reference taken between setup and pages makes the commit fail. */
static void grab_ref(struct env *e, struct migrate_vma *args)
{
	folio_get(page_folio(migrate_pfn_to_page(e->m, args->src[0])));
}

static void test_extra_ref_after_setup(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 2, RW, PRIV_ANON);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM,
			      .owner = e->priv,
			      .after_setup = grab_ref };
	uint64_t fails = stat_now(HETMM_STAT_migrate_fail);
	struct folio *f;
	pte_t p;

	fill(e->mm, a, 2, 8);
	f = folio_at(e->m, pte_at(e->mm, a));
	assert_int_equal(migrate(e, e->mm, a, 2, &o), 1);
	assert_false(e->src[0] & MIGRATE_PFN_MIGRATE);
	assert_int_equal(stat_now(HETMM_STAT_migrate_fail) - fails, 1);
	p = pte_at(e->mm, a);
	assert_true(pte_present(p) && pte_write(p));
	assert_ptr_equal(folio_at(e->m, p), f);
	assert_int_equal(folio_ref_count(f), 2);
	folio_put(f);
	assert_int_equal(e->priv->nr_used, 1); /* the unused dst was freed */
	verify(e->mm, a, 2, 8);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_alloc_failure_partial(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 8, RW, PRIV_ANON);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM,
			      .owner = e->priv,
			      .fail_mod = 2 };
	unsigned long pfn[8];

	fill(e->mm, a, 8, 10);
	for (unsigned long i = 0; i < 8; i++)
		pfn[i] = pte_pfn(pte_at(e->mm, a + i * PAGE_SIZE));
	assert_int_equal(migrate(e, e->mm, a, 8, &o), 4);
	for (unsigned long i = 0; i < 8; i++) {
		pte_t p = pte_at(e->mm, a + i * PAGE_SIZE);

		if (i % 2) {
			/* fully restored */
			assert_true(pte_present(p) && pte_write(p));
			assert_int_equal(pte_pfn(p), pfn[i]);
			assert_int_equal(folio_ref_count(folio_at(e->m, p)), 1);
		} else {
			/* fully migrated */
			assert_int_equal(pte_kind(p),
					 SOFTLEAF_DEVICE_PRIVATE_WRITE);
		}
	}
	assert_int_equal(e->priv->nr_used, 4);
	ASSERT_OK(hetmm_check(e->m));
	assert_int_equal(to_sys(e, e->mm, a, 8), 4);
	verify(e->mm, a, 8, 10);
	ASSERT_OK(hetmm_check(e->m));
}

/* Finalize right after setup (driver error path): all restored. */
static void test_setup_then_finalize(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW, PRIV_ANON);
	struct migrate_vma args = { .start = a,
				    .end = a + 4 * PAGE_SIZE,
				    .src = e->src,
				    .dst = e->dst,
				    .pgmap_owner = e->priv,
				    .flags = MIGRATE_VMA_SELECT_SYSTEM };

	fill(e->mm, a, 3, 11);
	mmap_read_lock(e->mm);
	args.vma = vma_lookup(e->mm, a);
	ASSERT_OK(migrate_vma_setup(&args));
	assert_int_equal(args.cpages, 4);
	migrate_vma_finalize(&args);
	mmap_read_unlock(e->mm);
	for (unsigned long i = 0; i < 3; i++)
		assert_true(pte_present(pte_at(e->mm, a + i * PAGE_SIZE)));
	assert_true(pte_none(pte_at(e->mm, a + 3 * PAGE_SIZE)));
	verify(e->mm, a, 3, 11);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_einval(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW, PRIV_ANON);
	long h =
		hetmm_mmap(e->mm, 0, SZ_2M, RW, PRIV_ANON | MAP_HUGETLB, -1, 0);
	struct migrate_vma args;
	struct vm_area_struct *vma;
	struct folio *sys, *dev;

	assert_true(h > 0);
	fill(e->mm, a, 1, 12);
	mmap_read_lock(e->mm);
	vma = vma_lookup(e->mm, a);
#define RESET()                                                \
	args = (struct migrate_vma){ .vma = vma,               \
				     .start = a,               \
				     .end = a + 4 * PAGE_SIZE, \
				     .src = e->src,            \
				     .dst = e->dst,            \
				     .pgmap_owner = e->priv,   \
				     .flags = MIGRATE_VMA_SELECT_SYSTEM }
	RESET();
	args.vma = NULL;
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	RESET();
	args.vma = vma_lookup(e->mm, (unsigned long)h);
	args.start = (unsigned long)h;
	args.end = (unsigned long)h + PAGE_SIZE;
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	RESET();
	args.end = a;
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	RESET();
	args.end = a + 100; /* less than a page: no page to migrate */
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	RESET();
	args.start = a - PAGE_SIZE;
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	RESET();
	args.end = a + 5 * PAGE_SIZE;
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	RESET();
	args.src = NULL;
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	RESET();
	args.dst = NULL;
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	/* VM_SPECIAL VMAs (no way to make one through the process face). */
	vma->vm_flags |= VM_IO;
	RESET();
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	vma->vm_flags &= ~VM_IO;
	vma->vm_flags |= VM_PFNMAP;
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	vma->vm_flags &= ~VM_PFNMAP;
	/* fault_page: must be device-private and locked. */
	sys = folio_at(e->m, pte_at(e->mm, a));
	RESET();
	args.fault_page = &sys->page;
	assert_true(folio_trylock(sys));
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	folio_unlock(sys);
	dev = tdev_alloc(e->priv, 0);
	folio_unlock(dev);
	args.fault_page = &dev->page;
	assert_int_equal(migrate_vma_setup(&args), -EINVAL);
	folio_put(dev);
	/* A page-rounded-down range still works. */
	RESET();
	args.start = a + 100;
	args.end = a + PAGE_SIZE + 100;
	args.flags = 0;
	ASSERT_OK(migrate_vma_setup(&args));
	assert_int_equal(args.start, a);
	assert_int_equal(args.end, a + PAGE_SIZE);
	assert_int_equal(args.npages, 1);
	assert_int_equal(args.cpages, 0);
	migrate_vma_finalize(&args);
#undef RESET
	mmap_read_unlock(e->mm);
	assert_int_equal(e->priv->nr_used, 0);
	ASSERT_OK(hetmm_check(e->m));
}

/* A device-private page shared by parent and child after fork. */
static void test_fork_shared_device_page(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 2, RW, PRIV_ANON);
	struct mm_struct *child;
	struct folio *f, *n;
	pte_t p, c;

	fill(e->mm, a, 2, 13);
	assert_int_equal(to_dev(e, e->mm, a, 2), 2);
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	p = pte_at(e->mm, a);
	c = pte_at(child, a);
	assert_int_equal(pte_kind(p), SOFTLEAF_DEVICE_PRIVATE_READ);
	assert_int_equal(pte_kind(c), SOFTLEAF_DEVICE_PRIVATE_READ);
	f = folio_at(e->m, p);
	assert_int_equal(folio_mapcount(f), 2);
	assert_int_equal(folio_ref_count(f), 2);
	ASSERT_OK(hetmm_check(e->m));

	/* A fault in the parent brings the page back for both. */
	ASSERT_OK(emulate_fault(e->mm, a));
	assert_int_equal(e->priv->fault_src_refcount, 2);
	p = pte_at(e->mm, a);
	c = pte_at(child, a);
	assert_true(pte_present(p) && pte_present(c));
	assert_false(pte_write(p) || pte_write(c));
	assert_int_equal(pte_pfn(p), pte_pfn(c));
	n = folio_at(e->m, p);
	assert_false(folio_is_zone_device(n));
	assert_int_equal(folio_mapcount(n), 2);
	assert_int_equal(folio_ref_count(n), 2);
	assert_false(PageAnonExclusive(&n->page));
	verify(e->mm, a, 1, 13);
	verify(child, a, 1, 13);
	ASSERT_OK(hetmm_check(e->m));

	/* Write in the child: COW. */
	{
		unsigned char v = 0xee;

		ASSERT_OK(hetmm_cpu_write(child, 0, a + 5, &v, 1));
	}
	verify(e->mm, a, 1, 13);
	assert_int_not_equal(pte_pfn(pte_at(child, a)),
			     pte_pfn(pte_at(e->mm, a)));
	ASSERT_OK(hetmm_check(e->m));

	/* Page 1 is still on the device in both: explicit migration from
	 * the child converts the parent's entry too (try_to_migrate). */
	assert_int_equal(to_sys(e, child, a + PAGE_SIZE, 1), 1);
	p = pte_at(e->mm, a + PAGE_SIZE);
	c = pte_at(child, a + PAGE_SIZE);
	assert_true(pte_present(p) && pte_present(c));
	assert_int_equal(pte_pfn(p), pte_pfn(c));
	assert_int_equal(e->priv->nr_used, 0);
	verify_range(child, a, 1, 1, 13);
	verify_range(e->mm, a, 1, 1, 13);
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(child);
}

/* Eviction by pfn keeps writability and data, in every process. */
static void test_migrate_device_range(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 8, RW, PRIV_ANON);
	unsigned long *src = e->src, *dst = e->dst;
	struct tdev *d = e->priv;
	unsigned long n = 16, migrated = 0;

	fill(e->mm, a, 8, 15);
	ASSERT_OK(hetmm_mprotect(e->mm, a + 4 * PAGE_SIZE, 4 * PAGE_SIZE,
				 PROT_READ));
	/* one VMA per migrate_vma_setup */
	assert_int_equal(to_dev(e, e->mm, a, 4), 4);
	assert_int_equal(to_dev(e, e->mm, a + 4 * PAGE_SIZE, 4), 4);
	ASSERT_OK(migrate_device_range(src, e->m, d->base_pfn, n));
	for (unsigned long i = 0; i < n; i++) {
		struct page *spage = migrate_pfn_to_page(e->m, src[i]);
		struct folio *f;

		dst[i] = 0;
		if (i >= 8) {
			/* free device pages are not collected */
			assert_int_equal(src[i], 0);
			continue;
		}
		assert_true(src[i] & MIGRATE_PFN_MIGRATE);
		assert_false(src[i] & MIGRATE_PFN_WRITE);
		f = folio_alloc(e->m, __GFP_MOVABLE, 0);
		folio_lock(f);
		copy_highpage(&f->page, spage);
		dst[i] = migrate_pfn(folio_pfn(f));
	}
	migrate_device_pages(e->m, src, dst, n);
	for (unsigned long i = 0; i < n; i++)
		migrated += !!(src[i] & MIGRATE_PFN_MIGRATE);
	assert_int_equal(migrated, 8);
	migrate_device_finalize(e->m, src, dst, n);
	assert_int_equal(d->nr_used, 0);
	for (unsigned long i = 0; i < 8; i++) {
		pte_t p = pte_at(e->mm, a + i * PAGE_SIZE);

		assert_true(pte_present(p));
		assert_int_equal(pte_write(p), i < 4);
	}
	verify(e->mm, a, 8, 15);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_migrate_device_pfns(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW, PRIV_ANON);
	unsigned long *src = e->src, *dst = e->dst;

	fill(e->mm, a, 4, 16);
	assert_int_equal(to_dev(e, e->mm, a, 4), 4);
	/* pages 1 and 3 only, plus a free one */
	src[0] = entry_pfn(pte_at(e->mm, a + PAGE_SIZE));
	src[1] = entry_pfn(pte_at(e->mm, a + 3 * PAGE_SIZE));
	src[2] = e->priv->base_pfn + DEV_PAGES - 1;
	ASSERT_OK(migrate_device_pfns(src, e->m, 3));
	assert_true(src[0] & MIGRATE_PFN_MIGRATE);
	assert_true(src[1] & MIGRATE_PFN_MIGRATE);
	assert_int_equal(src[2], 0);
	for (unsigned long i = 0; i < 3; i++) {
		struct page *spage = migrate_pfn_to_page(e->m, src[i]);
		struct folio *f;

		dst[i] = 0;
		if (!spage)
			continue;
		f = folio_alloc(e->m, __GFP_MOVABLE, 0);
		folio_lock(f);
		copy_highpage(&f->page, spage);
		dst[i] = migrate_pfn(folio_pfn(f));
	}
	migrate_device_pages(e->m, src, dst, 3);
	migrate_device_finalize(e->m, src, dst, 3);
	assert_true(pte_present(pte_at(e->mm, a + PAGE_SIZE)));
	assert_true(pte_present(pte_at(e->mm, a + 3 * PAGE_SIZE)));
	assert_int_equal(pte_kind(pte_at(e->mm, a)),
			 SOFTLEAF_DEVICE_PRIVATE_WRITE);
	assert_int_equal(e->priv->nr_used, 2);
	verify_range(e->mm, a, 1, 1, 16);
	verify_range(e->mm, a, 3, 1, 16);
	ASSERT_OK(hetmm_check(e->m));
}

/* Eviction leaves busy (locked) device pages alone. */
static void test_range_skips_locked(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 2, RW, PRIV_ANON);
	unsigned long *src = e->src, *dst = e->dst;
	struct folio *f;

	fill(e->mm, a, 2, 17);
	assert_int_equal(to_dev(e, e->mm, a, 2), 2);
	f = folio_at(e->m, pte_at(e->mm, a));
	assert_true(folio_trylock(f));
	ASSERT_OK(migrate_device_range(src, e->m, e->priv->base_pfn, 2));
	assert_int_equal(src[folio_pfn(f) - e->priv->base_pfn], 0);
	for (unsigned long i = 0; i < 2; i++) {
		struct page *spage = migrate_pfn_to_page(e->m, src[i]);

		dst[i] = 0;
		if (spage) {
			struct folio *n = folio_alloc(e->m, __GFP_MOVABLE, 0);

			folio_lock(n);
			copy_highpage(&n->page, spage);
			dst[i] = migrate_pfn(folio_pfn(n));
		}
	}
	migrate_device_pages(e->m, src, dst, 2);
	migrate_device_finalize(e->m, src, dst, 2);
	folio_unlock(f);
	assert_int_equal(e->priv->nr_used, 1);
	assert_int_equal(pte_kind(pte_at(e->mm, a)),
			 SOFTLEAF_DEVICE_PRIVATE_WRITE);
	verify_range(e->mm, a, 1, 1, 17);
	ASSERT_OK(hetmm_check(e->m));
}

/* ------------------------------------------------------- notifiers */

struct rec {
	struct mmu_interval_notifier sub;
	int n;
	struct {
		enum mmu_notifier_event ev;
		void *owner;
		unsigned long start, end;
	} ev[64];
};

static bool rec_invalidate(struct mmu_interval_notifier *sub,
			   const struct mmu_notifier_range *range,
			   unsigned long cur_seq)
{
	struct rec *r = container_of(sub, struct rec, sub);

	mmu_interval_set_seq(sub, cur_seq);
	if (r->n < 64) {
		r->ev[r->n].ev = range->event;
		r->ev[r->n].owner = range->owner;
		r->ev[r->n].start = range->start;
		r->ev[r->n].end = range->end;
		r->n++;
	}
	return true;
}

static const struct mmu_interval_notifier_ops rec_ops = {
	.invalidate = rec_invalidate,
};

static void test_notifier_owner(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW, PRIV_ANON);
	struct rec *r = calloc(1, sizeof(*r)), *rc = calloc(1, sizeof(*rc));
	struct mm_struct *child;
	int i;

	fill(e->mm, a, 4, 18);
	ASSERT_OK(mmu_interval_notifier_insert(&r->sub, e->mm, a, 4 * PAGE_SIZE,
					       &rec_ops));
	assert_int_equal(to_dev(e, e->mm, a, 4), 4);
	assert_int_equal(r->n, 1);
	assert_int_equal(r->ev[0].ev, MMU_NOTIFY_MIGRATE);
	assert_ptr_equal(r->ev[0].owner, e->priv);
	assert_int_equal(r->ev[0].start, a);
	assert_int_equal(r->ev[0].end, a + 4 * PAGE_SIZE);

	/* Holes: a second MIGRATE event around the insertion. */
	r->n = 0;
	assert_int_equal(to_sys(e, e->mm, a, 4), 4);
	ASSERT_OK(hetmm_madvise(e->mm, a + 2 * PAGE_SIZE, 2 * PAGE_SIZE,
				MADV_DONTNEED));
	r->n = 0;
	assert_int_equal(to_dev(e, e->mm, a, 4), 4);
	assert_int_equal(r->n, 2);
	assert_int_equal(r->ev[1].ev, MMU_NOTIFY_MIGRATE);
	assert_ptr_equal(r->ev[1].owner, e->priv);
	assert_int_equal(r->ev[1].start, a + 2 * PAGE_SIZE);
	assert_int_equal(r->ev[1].end, a + 4 * PAGE_SIZE);

	/* try_to_migrate sends CLEAR (no owner) to the other process. */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	ASSERT_OK(mmu_interval_notifier_insert(&rc->sub, child, a,
					       4 * PAGE_SIZE, &rec_ops));
	rc->n = 0;
	assert_int_equal(to_sys(e, e->mm, a, 4), 4);
	assert_true(rc->n >= 1);
	for (i = 0; i < rc->n; i++) {
		assert_int_equal(rc->ev[i].ev, MMU_NOTIFY_CLEAR);
		assert_null(rc->ev[i].owner);
	}
	mmu_interval_notifier_remove(&rc->sub);
	mmu_interval_notifier_remove(&r->sub);
	free(r);
	free(rc);
	verify(e->mm, a, 2, 18);
	verify(child, a, 2, 18);
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(child);
}

/* --------------------------------------------------- coherent memory */

static void test_coherent(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 4, RW, PRIV_ANON);
	struct mig_opts o = { .to = e->coh,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM,
			      .owner = e->coh };
	struct folio *f;
	pte_t p;

	fill(e->mm, a, 4, 19);
	assert_int_equal(migrate(e, e->mm, a, 4, &o), 4);
	for (unsigned long i = 0; i < 4; i++) {
		p = pte_at(e->mm, a + i * PAGE_SIZE);
		assert_true(pte_present(p) && pte_write(p));
		assert_true(folio_is_device_coherent(folio_at(e->m, p)));
	}
	/* The CPU reads and writes coherent device memory in place. */
	verify(e->mm, a, 4, 19);
	fill(e->mm, a, 4, 20);
	ASSERT_OK(hetmm_check(e->m));

	/* Not selected without SELECT_DEVICE_COHERENT or with another owner. */
	o = (struct mig_opts){ .flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE |
					MIGRATE_VMA_SELECT_SYSTEM,
			       .owner = e->coh };
	assert_int_equal(migrate(e, e->mm, a, 4, &o), 0);
	o = (struct mig_opts){ .flags = MIGRATE_VMA_SELECT_DEVICE_COHERENT,
			       .owner = e->priv };
	assert_int_equal(migrate(e, e->mm, a, 4, &o), 0);

	/* A long-term pin moves one page off. */
	p = pte_at(e->mm, a);
	f = folio_at(e->m, p);
	folio_get(f);
	ASSERT_OK(migrate_device_coherent_folio(f));
	p = pte_at(e->mm, a);
	assert_false(folio_is_zone_device(folio_at(e->m, p)));
	assert_true(pte_write(p));
	assert_int_equal(e->coh->nr_used, 3);

	/* An extra reference makes it fail. */
	p = pte_at(e->mm, a + PAGE_SIZE);
	f = folio_at(e->m, p);
	folio_get(f);
	folio_get(f);
	assert_int_equal(migrate_device_coherent_folio(f), -EBUSY);
	assert_int_equal(folio_ref_count(f), 2);
	folio_put(f);
	assert_true(pte_present(pte_at(e->mm, a + PAGE_SIZE)));

	o = (struct mig_opts){ .flags = MIGRATE_VMA_SELECT_DEVICE_COHERENT,
			       .owner = e->coh };
	assert_int_equal(migrate(e, e->mm, a, 4, &o), 3);
	assert_int_equal(e->coh->nr_used, 0);
	verify(e->mm, a, 4, 20);
	ASSERT_OK(hetmm_check(e->m));
}

/* device -> device (private to coherent, same driver family). */
static void test_device_to_device(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 2, RW, PRIV_ANON);
	struct mig_opts o = { .to = e->coh,
			      .flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
			      .owner = e->priv };
	uint64_t d2d = stat_now(HETMM_STAT_migrate_device_to_device);

	fill(e->mm, a, 2, 21);
	assert_int_equal(to_dev(e, e->mm, a, 2), 2);
	assert_int_equal(migrate(e, e->mm, a, 2, &o), 2);
	assert_int_equal(stat_now(HETMM_STAT_migrate_device_to_device) - d2d,
			 2);
	assert_int_equal(e->priv->nr_used, 0);
	assert_int_equal(e->coh->nr_used, 2);
	verify(e->mm, a, 2, 21);
	ASSERT_OK(hetmm_check(e->m));
}

/* ------------------------------------------------------ CPU faults */

static void test_cpu_fault_brings_back(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 2, RW, PRIV_ANON);
	unsigned char v;
	int ret;

	fill(e->mm, a, 2, 22);
	assert_int_equal(to_dev(e, e->mm, a, 2), 2);
	ret = hetmm_cpu_read(e->mm, 0, a + 5, &v, 1);
	if (ret == -EFAULT)
		skip(); /* the fault path for device entries is not in yet */
	ASSERT_OK(ret);
	assert_int_equal(v, pat(0, 22));
	assert_true(e->priv->fault_calls >= 1);
	assert_true(pte_present(pte_at(e->mm, a)));
	v = 0x42;
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, a + PAGE_SIZE + 5, &v, 1));
	assert_true(pte_present(pte_at(e->mm, a + PAGE_SIZE)));
	assert_int_equal(e->priv->nr_used, 0);
	ASSERT_OK(hetmm_check(e->m));
}

/* A CPU fault in a child converts the parent's entry too. */
static void test_cpu_fault_fork(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 1, RW, PRIV_ANON);
	struct mm_struct *child;
	pte_t p, c;

	fill(e->mm, a, 1, 30);
	assert_int_equal(to_dev(e, e->mm, a, 1), 1);
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	verify(child, a, 1, 30);
	p = pte_at(e->mm, a);
	c = pte_at(child, a);
	assert_true(pte_present(p) && pte_present(c));
	assert_int_equal(pte_pfn(p), pte_pfn(c));
	assert_int_equal(e->priv->nr_used, 0);
	fill(e->mm, a, 1, 31); /* COW in the parent */
	verify(child, a, 1, 30);
	verify(e->mm, a, 1, 31);
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(child);
}

/* Unmapping device-private entries frees the device pages. */
static void test_munmap_device_pages(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 8, RW, PRIV_ANON);
	unsigned long t = thp_region(e->mm, 1);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->priv };

	fill(e->mm, a, 8, 32);
	fill(e->mm, t, HPAGE_PMD_NR, 33);
	assert_int_equal(to_dev(e, e->mm, a, 8), 8);
	assert_int_equal(migrate(e, e->mm, t, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	assert_int_equal(e->priv->nr_used, 8 + HPAGE_PMD_NR);
	ASSERT_OK(hetmm_munmap(e->mm, a + 2 * PAGE_SIZE, 4 * PAGE_SIZE));
	assert_int_equal(e->priv->nr_used, 4 + HPAGE_PMD_NR);
	ASSERT_OK(hetmm_munmap(e->mm, t, SZ_2M));
	assert_int_equal(e->priv->nr_used, 4);
	ASSERT_OK(hetmm_check(e->m));
	/* Part of a device THP: the PMD entry is split first. */
	t = thp_region(e->mm, 1);
	fill(e->mm, t, HPAGE_PMD_NR, 34);
	assert_int_equal(migrate(e, e->mm, t, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	ASSERT_OK(hetmm_munmap(e->mm, t, SZ_2M / 2));
	assert_int_equal(e->priv->nr_used, 4 + HPAGE_PMD_NR);
	ASSERT_OK(hetmm_check(e->m));
	/* The rest comes back through a PTE-mapped large device folio. */
	assert_int_equal(to_sys(e, e->mm, t + SZ_2M / 2, HPAGE_PMD_NR / 2),
			 HPAGE_PMD_NR / 2);
	assert_int_equal(e->priv->nr_used, 4);
	verify_range(e->mm, t, HPAGE_PMD_NR / 2, HPAGE_PMD_NR / 2, 34);
	ASSERT_OK(hetmm_check(e->m));
}

/* A CPU fault on a device-private PMD entry: the driver moves 2 MiB. */
static void test_thp_cpu_fault_device_pmd(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->priv };
	bool pmd_level;
	pte_t p;

	fill(e->mm, a, HPAGE_PMD_NR, 35);
	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	verify_range(e->mm, a, 7, 1, 35);
	assert_true(e->priv->fault_src & MIGRATE_PFN_COMPOUND);
	p = entry_at(e->mm, a, &pmd_level);
	assert_true(pmd_level && pmd_leaf(p) && pte_write(p));
	assert_int_equal(e->priv->nr_used, 0);
	verify(e->mm, a, HPAGE_PMD_NR, 35);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * A CPU fault at PTE level on a large device folio (its PMD entry was split
 * by a partial munmap) migrates just that page: the folio is split inside
 * migrate_to_ram, and the fault path must unlock and put the folio the
 * faulting page belongs to afterwards, not the large folio it locked.
 */
static void test_thp_cpu_fault_split_folio(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->priv };

	fill(e->mm, a, HPAGE_PMD_NR, 36);
	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	ASSERT_OK(hetmm_munmap(e->mm, a, PAGE_SIZE));
	verify_range(e->mm, a, 9, 1, 36);
	assert_true(pte_present(pte_at(e->mm, a + 9 * PAGE_SIZE)));
	assert_false(e->priv->fault_src & MIGRATE_PFN_COMPOUND);
	assert_int_equal(e->priv->nr_used, HPAGE_PMD_NR - 2);
	ASSERT_OK(hetmm_check(e->m));
	verify_range(e->mm, a, 1, HPAGE_PMD_NR - 1, 36);
	assert_int_equal(e->priv->nr_used, 0);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * A CPU thread writes and reads back while another thread migrates the
 * same pages to the device and back: the CPU waits on migration entries,
 * faults device pages home, and never sees stale data.
 */
struct race {
	struct env *e;
	unsigned long a, n;
	unsigned int iters;
	atomic_bool stop;
	atomic_int errors;
	unsigned long migrated;
};

/* One migrate_vma round without cmocka asserts (runs off the main thread). */
static unsigned long race_round(struct race *r, bool to_device,
				unsigned long *src, unsigned long *dst)
{
	struct env *e = r->e;
	struct mm_struct *mm = e->mm;
	struct migrate_vma args = {
		.start = r->a,
		.end = r->a + r->n * PAGE_SIZE,
		.src = src,
		.dst = dst,
		.pgmap_owner = e->priv,
		.flags = to_device ? MIGRATE_VMA_SELECT_SYSTEM :
				     MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
	};
	unsigned long done = 0;

	mmap_read_lock(mm);
	args.vma = vma_lookup(mm, r->a);
	if (migrate_vma_setup(&args)) {
		atomic_fetch_add(&r->errors, 1);
		mmap_read_unlock(mm);
		return 0;
	}
	for (unsigned long i = 0; i < r->n; i++) {
		struct page *spage = migrate_pfn_to_page(e->m, src[i]);
		struct folio *f;

		if (!(src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		if (to_device) {
			f = tdev_alloc(e->priv, 0);
		} else {
			f = folio_alloc(e->m, __GFP_MOVABLE, 0);
			if (f)
				folio_lock(f);
		}
		if (!f)
			continue;
		if (spage)
			copy_highpage(&f->page, spage);
		else
			clear_highpage(&f->page);
		dst[i] = migrate_pfn(folio_pfn(f));
	}
	migrate_vma_pages(&args);
	for (unsigned long i = 0; i < r->n; i++)
		done += !!(src[i] & MIGRATE_PFN_MIGRATE);
	migrate_vma_finalize(&args);
	mmap_read_unlock(mm);
	return done;
}

static void *race_migrator(void *arg)
{
	struct race *r = arg;
	unsigned long src[16], dst[16];

	for (unsigned int i = 0; i < r->iters; i++) {
		r->migrated += race_round(r, true, src, dst);
		r->migrated += race_round(r, false, src, dst);
	}
	atomic_store(&r->stop, true);
	return NULL;
}

static void *race_cpu(void *arg)
{
	struct race *r = arg;
	uint64_t expect[16] = { 0 };
	uint64_t k = 1;

	while (!atomic_load(&r->stop)) {
		unsigned long i = k % r->n;
		unsigned long addr = r->a + i * PAGE_SIZE + 64;
		uint64_t v;

		if (hetmm_cpu_read(r->e->mm, 2, addr, &v, sizeof(v)) ||
		    v != expect[i])
			atomic_fetch_add(&r->errors, 1);
		if (hetmm_cpu_write(r->e->mm, 2, addr, &k, sizeof(k)))
			atomic_fetch_add(&r->errors, 1);
		expect[i] = k++;
	}
	for (unsigned long i = 0; i < r->n; i++) {
		uint64_t v;

		if (hetmm_cpu_read(r->e->mm, 3, r->a + i * PAGE_SIZE + 64, &v,
				   sizeof(v)) ||
		    v != expect[i])
			atomic_fetch_add(&r->errors, 1);
	}
	return NULL;
}

static void test_race_cpu_vs_migration(void **state)
{
	struct env *e = *state;
	struct race r = { .e = e, .n = 16 };
	pthread_t t1, t2;

	r.a = map_anon(e->mm, r.n, RW, PRIV_ANON);
	r.iters = test_scale(200, 5000);
	atomic_init(&r.stop, false);
	atomic_init(&r.errors, 0);
	fill(e->mm, r.a, r.n, 0);
	for (unsigned long i = 0; i < r.n; i++) {
		uint64_t z = 0;

		ASSERT_OK(hetmm_cpu_write(e->mm, 0, r.a + i * PAGE_SIZE + 64,
					  &z, sizeof(z)));
	}
	assert_int_equal(pthread_create(&t1, NULL, race_migrator, &r), 0);
	assert_int_equal(pthread_create(&t2, NULL, race_cpu, &r), 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	assert_int_equal(atomic_load(&r.errors), 0);
	assert_true(r.migrated > 0);
	ASSERT_OK(hetmm_check(e->m));
}

/* A 2 MiB hole filled with a coherent THP: a present PMD leaf. */
static void test_thp_coherent_hole(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct mig_opts o = { .to = e->coh,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->coh };
	bool pmd_level;
	pte_t p;

	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	p = entry_at(e->mm, a, &pmd_level);
	assert_true(pmd_level && pmd_leaf(p) && pte_write(p));
	assert_true(folio_is_device_coherent(folio_at(e->m, p)));
	fill(e->mm, a, HPAGE_PMD_NR, 37);
	verify(e->mm, a, HPAGE_PMD_NR, 37);
	ASSERT_OK(hetmm_check(e->m));
	o = (struct mig_opts){ .flags = MIGRATE_VMA_SELECT_DEVICE_COHERENT |
					MIGRATE_VMA_SELECT_COMPOUND,
			       .owner = e->coh };
	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	p = entry_at(e->mm, a, &pmd_level);
	assert_true(pmd_level && pmd_leaf(p));
	assert_false(folio_is_zone_device(folio_at(e->m, p)));
	assert_int_equal(e->coh->nr_used, 0);
	verify(e->mm, a, HPAGE_PMD_NR, 37);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * try_to_migrate converts a device-exclusive entry like any mapping (the
 * device hears CLEAR and loses exclusivity); here through the pfn API on
 * a system page.
 */
static void test_exclusive_entry_migrated(void **state)
{
	struct env *e = *state;
	unsigned long a = map_anon(e->mm, 1, RW, PRIV_ANON);
	struct rec *r = calloc(1, sizeof(*r));
	unsigned long src, dst;
	struct folio *folio, *n;
	struct page *page;
	pte_t p;

	fill(e->mm, a, 1, 39);
	mmap_read_lock(e->mm);
	page = make_device_exclusive(e->mm, a, e->priv, &folio);
	mmap_read_unlock(e->mm);
	assert_false(IS_ERR(page));
	folio_unlock(folio);
	folio_put(folio);
	assert_int_equal(pte_kind(pte_at(e->mm, a)), SOFTLEAF_DEVICE_EXCLUSIVE);
	ASSERT_OK(mmu_interval_notifier_insert(&r->sub, e->mm, a, PAGE_SIZE,
					       &rec_ops));
	src = page_to_pfn(page);
	ASSERT_OK(migrate_device_pfns(&src, e->m, 1));
	assert_true(src & MIGRATE_PFN_MIGRATE);
	assert_int_equal(r->n, 1);
	assert_int_equal(r->ev[0].ev, MMU_NOTIFY_CLEAR);
	p = pte_at(e->mm, a);
	assert_int_equal(pte_kind(p), SOFTLEAF_MIGRATION_WRITE);
	n = folio_alloc(e->m, __GFP_MOVABLE, 0);
	folio_lock(n);
	copy_highpage(&n->page, page);
	dst = migrate_pfn(folio_pfn(n));
	migrate_device_pages(e->m, &src, &dst, 1);
	assert_true(src & MIGRATE_PFN_MIGRATE);
	migrate_device_finalize(e->m, &src, &dst, 1);
	p = pte_at(e->mm, a);
	assert_true(pte_present(p) && pte_write(p));
	assert_int_equal(pte_pfn(p), folio_pfn(n));
	assert_int_equal(folio_ref_count(n), 1);
	mmu_interval_notifier_remove(&r->sub);
	free(r);
	verify(e->mm, a, 1, 39);
	ASSERT_OK(hetmm_check(e->m));
}

/* ------------------------------------------------------------ THP */

static void test_thp_whole_folio(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->priv };
	uint64_t large = stat_now(HETMM_STAT_migrate_folio_large);
	struct folio *f;
	bool pmd_level;
	pte_t p;

	fill(e->mm, a, HPAGE_PMD_NR, 23);
	p = entry_at(e->mm, a, &pmd_level);
	assert_true(pmd_level && pmd_leaf(p));
	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	assert_true(e->src[0] & MIGRATE_PFN_COMPOUND);
	assert_int_equal(e->src[1], 0);
	assert_int_equal(stat_now(HETMM_STAT_migrate_folio_large) - large, 1);
	p = entry_at(e->mm, a, &pmd_level);
	assert_true(pmd_level);
	assert_int_equal(pte_kind(p), SOFTLEAF_DEVICE_PRIVATE_WRITE);
	f = folio_at(e->m, p);
	assert_int_equal(folio_order(f), PMD_ORDER);
	assert_int_equal(folio_ref_count(f), 1);
	assert_int_equal(folio_entire_mapcount(f), 1);
	assert_false(folio_test_locked(f));
	{
		unsigned char *b = folio_address(f);

		for (unsigned long i = 0; i < HPAGE_PMD_NR; i++)
			assert_int_equal(b[i * PAGE_SIZE + 5], pat(i, 23));
	}
	ASSERT_OK(hetmm_check(e->m));

	/* Back as one system THP. */
	o = (struct mig_opts){ .flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE |
					MIGRATE_VMA_SELECT_COMPOUND,
			       .owner = e->priv };
	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	p = entry_at(e->mm, a, &pmd_level);
	assert_true(pmd_level && pmd_leaf(p) && pte_write(p));
	assert_int_equal(e->priv->nr_used, 0);
	verify(e->mm, a, HPAGE_PMD_NR, 23);
	ASSERT_OK(hetmm_check(e->m));
}

/* Without SELECT_COMPOUND a THP is split and migrated page by page. */
static void test_thp_split_on_collect(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	long in_use;

	fill(e->mm, a, HPAGE_PMD_NR, 24);
	in_use = hetmm_pages_in_use(e->m);
	/* Only part of it: the rest stays mapped as small pages. */
	assert_int_equal(to_dev(e, e->mm, a + 16 * PAGE_SIZE, 32), 32);
	assert_int_equal(hetmm_pages_in_use(e->m), in_use - 32);
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++) {
		pte_t p = pte_at(e->mm, a + i * PAGE_SIZE);
		struct folio *f = folio_at(e->m, p);

		assert_false(folio_test_large(f));
		if (i >= 16 && i < 48) {
			assert_int_equal(pte_kind(p),
					 SOFTLEAF_DEVICE_PRIVATE_WRITE);
		} else {
			assert_true(pte_present(p) && pte_write(p));
			assert_int_equal(folio_ref_count(f), 1);
			assert_true(PageAnonExclusive(&f->page));
		}
	}
	ASSERT_OK(hetmm_check(e->m));
	assert_int_equal(to_sys(e, e->mm, a, HPAGE_PMD_NR), 32);
	verify(e->mm, a, HPAGE_PMD_NR, 24);
	ASSERT_OK(hetmm_check(e->m));
}

/* A PTE-mapped THP (after mprotect of half of it) is split in collect. */
static void test_thp_pte_mapped(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->priv };

	fill(e->mm, a, HPAGE_PMD_NR, 25);
	ASSERT_OK(hetmm_mprotect(e->mm, a, SZ_2M / 2, PROT_READ));
	assert_true(folio_test_large(folio_at(e->m, pte_at(e->mm, a))));
	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR / 2, &o),
			 HPAGE_PMD_NR / 2);
	assert_int_equal(pte_kind(pte_at(e->mm, a)),
			 SOFTLEAF_DEVICE_PRIVATE_READ);
	assert_false(
		folio_test_large(folio_at(e->m, pte_at(e->mm, a + SZ_2M / 2))));
	ASSERT_OK(hetmm_check(e->m));
	assert_int_equal(to_sys(e, e->mm, a, HPAGE_PMD_NR / 2),
			 HPAGE_PMD_NR / 2);
	verify(e->mm, a, HPAGE_PMD_NR, 25);
	ASSERT_OK(hetmm_check(e->m));
}

/* SELECT_COMPOUND source, small destinations: split in place. */
static void test_thp_small_destinations(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->priv,
			      .small_dst = true };

	fill(e->mm, a, HPAGE_PMD_NR, 26);
	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	assert_false(e->src[0] & MIGRATE_PFN_COMPOUND);
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++) {
		pte_t p = pte_at(e->mm, a + i * PAGE_SIZE);

		assert_true(e->src[i] & MIGRATE_PFN_MIGRATE);
		assert_int_equal(pte_kind(p), SOFTLEAF_DEVICE_PRIVATE_WRITE);
		assert_int_equal(folio_ref_count(folio_at(e->m, p)), 1);
	}
	assert_int_equal(e->priv->nr_used, HPAGE_PMD_NR);
	ASSERT_OK(hetmm_check(e->m));
	assert_int_equal(to_sys(e, e->mm, a, HPAGE_PMD_NR), HPAGE_PMD_NR);
	verify(e->mm, a, HPAGE_PMD_NR, 26);
	ASSERT_OK(hetmm_check(e->m));
}

/* A 2 MiB aligned hole: one COMPOUND entry; large or small dst. */
static void test_thp_compound_hole(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 2);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->priv };
	bool pmd_level;
	pte_t p;

	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	assert_int_equal(e->src[0], MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND);
	p = entry_at(e->mm, a, &pmd_level);
	assert_true(pmd_level);
	assert_int_equal(pte_kind(p), SOFTLEAF_DEVICE_PRIVATE_WRITE);
	assert_int_equal(folio_ref_count(folio_at(e->m, p)), 1);

	o.small_dst = true;
	assert_int_equal(migrate(e, e->mm, a + SZ_2M, HPAGE_PMD_NR, &o),
			 HPAGE_PMD_NR);
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i += 97)
		assert_int_equal(
			pte_kind(pte_at(e->mm, a + SZ_2M + i * PAGE_SIZE)),
			SOFTLEAF_DEVICE_PRIVATE_WRITE);
	ASSERT_OK(hetmm_check(e->m));

	/* Back to system memory: the PMD one as a THP. */
	o = (struct mig_opts){ .flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE |
					MIGRATE_VMA_SELECT_COMPOUND,
			       .owner = e->priv };
	assert_int_equal(migrate(e, e->mm, a, 2 * HPAGE_PMD_NR, &o),
			 2 * HPAGE_PMD_NR);
	p = entry_at(e->mm, a, &pmd_level);
	assert_true(pmd_level && pmd_leaf(p));
	assert_int_equal(e->priv->nr_used, 0);
	for (unsigned long i = 0; i < 2 * HPAGE_PMD_NR; i += 61) {
		unsigned char v = 1;

		ASSERT_OK(
			hetmm_cpu_read(e->mm, 0, a + i * PAGE_SIZE + 3, &v, 1));
		assert_int_equal(v, 0);
	}
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * A device-private PMD entry met without SELECT_COMPOUND: the entry is
 * split into PTEs and the device folio into small folios (the driver
 * hears folio_split); a fault on a tail page migrates just that page.
 */
static void test_thp_device_split_fault(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->priv };
	struct folio *f;
	bool pmd_level;
	pte_t p;

	fill(e->mm, a, HPAGE_PMD_NR, 27);
	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	p = entry_at(e->mm, a, &pmd_level);
	assert_true(pmd_level);
	e->priv->small_only = true;
	ASSERT_OK(emulate_fault(e->mm, a + 7 * PAGE_SIZE));
	assert_int_equal(e->priv->splits, HPAGE_PMD_NR - 1);
	assert_true(e->priv->fault_src_locked);
	p = pte_at(e->mm, a + 7 * PAGE_SIZE);
	assert_true(pte_present(p) && pte_write(p));
	p = pte_at(e->mm, a + 8 * PAGE_SIZE);
	assert_int_equal(pte_kind(p), SOFTLEAF_DEVICE_PRIVATE_WRITE);
	f = folio_at(e->m, p);
	assert_false(folio_test_large(f));
	assert_int_equal(folio_ref_count(f), 1);
	assert_int_equal(e->priv->nr_used, HPAGE_PMD_NR - 1);
	verify_range(e->mm, a, 7, 1, 27);
	ASSERT_OK(hetmm_check(e->m));
	assert_int_equal(to_sys(e, e->mm, a, HPAGE_PMD_NR), HPAGE_PMD_NR - 1);
	verify(e->mm, a, HPAGE_PMD_NR, 27);
	ASSERT_OK(hetmm_check(e->m));
}

/*
 * A PMD-level fault whose driver moves the 2 MiB into small pages: the
 * unmapped device folio is split in place, the fault page's new folio stays
 * locked for the fault path, every other one is unlocked and freed.
 */
static void test_thp_fault_small_destinations(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->priv };

	fill(e->mm, a, HPAGE_PMD_NR, 38);
	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	e->priv->small_dst = true;
	ASSERT_OK(emulate_fault(e->mm, a + 300 * PAGE_SIZE));
	assert_true(e->priv->fault_src & MIGRATE_PFN_COMPOUND);
	assert_int_equal(e->priv->splits, HPAGE_PMD_NR - 1);
	assert_int_equal(e->priv->nr_used, 0);
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i += 37) {
		pte_t p = pte_at(e->mm, a + i * PAGE_SIZE);

		assert_true(pte_present(p) && pte_write(p));
		assert_false(folio_test_large(folio_at(e->m, p)));
	}
	verify(e->mm, a, HPAGE_PMD_NR, 38);
	ASSERT_OK(hetmm_check(e->m));
}

/* Eviction of a large device folio by pfn: COMPOUND, back as a THP. */
static void test_thp_evict_large(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->priv };
	bool pmd_level;
	pte_t p;

	fill(e->mm, a, HPAGE_PMD_NR, 28);
	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	/* memunmap_pages_evict runs migrate_device_range with a THP dst */
	ASSERT_OK(memunmap_pages_evict(&e->priv->pgmap));
	assert_int_equal(e->priv->nr_used, 0);
	p = entry_at(e->mm, a, &pmd_level);
	assert_true(pmd_level && pmd_leaf(p) && pte_write(p));
	verify(e->mm, a, HPAGE_PMD_NR, 28);
	ASSERT_OK(hetmm_check(e->m));
	/* The fixture expects a live pgmap at teardown. */
	release_mem_region(e->m, e->priv->base, DEV_PAGES * PAGE_SIZE);
	pthread_mutex_destroy(&e->priv->lock);
	free(e->priv);
	e->priv = tdev_create(e->m, MEMORY_DEVICE_PRIVATE);
}

/* A THP shared with a child at fork: PMD migration entries in both. */
static void test_thp_fork_shared(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct mig_opts o = { .to = e->priv,
			      .flags = MIGRATE_VMA_SELECT_SYSTEM |
				       MIGRATE_VMA_SELECT_COMPOUND,
			      .owner = e->priv };
	struct mm_struct *child;
	bool pmd_level;
	pte_t p, c;

	fill(e->mm, a, HPAGE_PMD_NR, 29);
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	assert_int_equal(migrate(e, e->mm, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	p = entry_at(e->mm, a, &pmd_level);
	assert_true(pmd_level);
	c = entry_at(child, a, &pmd_level);
	assert_true(pmd_level);
	assert_int_equal(pte_kind(p), SOFTLEAF_DEVICE_PRIVATE_READ);
	assert_int_equal(pte_kind(c), SOFTLEAF_DEVICE_PRIVATE_READ);
	assert_int_equal(folio_entire_mapcount(folio_at(e->m, p)), 2);
	assert_int_equal(folio_ref_count(folio_at(e->m, p)), 2);
	ASSERT_OK(hetmm_check(e->m));
	o = (struct mig_opts){ .flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE |
					MIGRATE_VMA_SELECT_COMPOUND,
			       .owner = e->priv };
	assert_int_equal(migrate(e, child, a, HPAGE_PMD_NR, &o), HPAGE_PMD_NR);
	p = entry_at(e->mm, a, &pmd_level);
	c = entry_at(child, a, &pmd_level);
	assert_true(pmd_leaf(p) && pmd_leaf(c));
	assert_int_equal(pte_pfn(p), pte_pfn(c));
	verify(e->mm, a, HPAGE_PMD_NR, 29);
	verify(child, a, HPAGE_PMD_NR, 29);
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(child);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, env_setup, env_teardown)
	const struct CMUnitTest tests[] = {
		T(test_sys_to_dev_rw),
		T(test_walkthrough_refcounts),
		T(test_sys_to_dev_readonly),
		T(test_zero_page_and_holes),
		T(test_hole_readonly_vma),
		T(test_shared_anon_not_migrated),
		T(test_file_not_migrated),
		T(test_pinned_refused),
		T(test_pinned_shared_restored),
		T(test_extra_ref_after_setup),
		T(test_alloc_failure_partial),
		T(test_setup_then_finalize),
		T(test_einval),
		T(test_fork_shared_device_page),
		T(test_migrate_device_range),
		T(test_migrate_device_pfns),
		T(test_range_skips_locked),
		T(test_notifier_owner),
		T(test_coherent),
		T(test_exclusive_entry_migrated),
		T(test_device_to_device),
		T(test_thp_whole_folio),
		T(test_thp_split_on_collect),
		T(test_thp_pte_mapped),
		T(test_thp_small_destinations),
		T(test_thp_compound_hole),
		T(test_thp_device_split_fault),
		T(test_thp_fault_small_destinations),
		T(test_thp_evict_large),
		T(test_thp_fork_shared),
		T(test_cpu_fault_brings_back),
		T(test_cpu_fault_fork),
		T(test_munmap_device_pages),
		T(test_thp_cpu_fault_device_pmd),
		T(test_thp_cpu_fault_split_folio),
		T(test_thp_coherent_hole),
		T(test_race_cpu_vs_migration),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
