// SPDX-License-Identifier: MIT
/*
 * bench_dev.c - device-memory benchmarks: hmm_range_fault snapshots
 * against the kernel's /proc/self/pagemap, migration system -> device ->
 * system against memcpy of the same bytes, and CPU faults on
 * device-private pages.
 *
 * The migrations run through a minimal driver of our own (struct bdev): a
 * DEVICE_PRIVATE pgmap whose pages are handed out by pgmap_request_folio
 * from a free list of offsets, so the figures measure the core
 * (migrate_vma_*, memremap) plus the copy, not a test driver's extras.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hetmm/hetmm.h>
#include <hetmm/hmm.h>
#include <hetmm/memremap.h>
#include <hetmm/migrate.h>
#include <hetmm/mm.h>
#include <hetmm/mmu_notifier.h>
#include <hetmm/uapi.h>

#include "bench.h"

/* ------------------------------------------------------ the bench driver */

struct bdev {
	struct dev_pagemap pgmap;
	uint64_t start, size;
	pthread_mutex_t lock;
	unsigned long *free_small, nr_small;
	unsigned long *free_large, nr_large;
	unsigned long next; /* first never-used offset */
};

static struct bdev *pgmap_bdev(struct dev_pagemap *pgmap)
{
	return (struct bdev *)((char *)pgmap - offsetof(struct bdev, pgmap));
}

static void bdev_folio_free(struct folio *folio)
{
	struct bdev *d = pgmap_bdev(folio->page.pgmap);
	unsigned long off = folio_pfn(folio) - (d->start >> PAGE_SHIFT);

	pthread_mutex_lock(&d->lock);
	if (folio_order(folio))
		d->free_large[d->nr_large++] = off;
	else
		d->free_small[d->nr_small++] = off;
	pthread_mutex_unlock(&d->lock);
}

static struct folio *bdev_alloc(struct bdev *d, unsigned int order)
{
	unsigned long nr = 1UL << order, off;

	pthread_mutex_lock(&d->lock);
	if (order && d->nr_large) {
		off = d->free_large[--d->nr_large];
	} else if (!order && d->nr_small) {
		off = d->free_small[--d->nr_small];
	} else {
		off = ALIGN(d->next, nr);
		if (off + nr > d->pgmap.nr_pages) {
			pthread_mutex_unlock(&d->lock);
			return NULL;
		}
		/* Small pages skipped by the alignment stay usable. */
		for (unsigned long i = d->next; i < off; i++)
			d->free_small[d->nr_small++] = i;
		d->next = off + nr;
	}
	pthread_mutex_unlock(&d->lock);
	return pgmap_request_folio(&d->pgmap, off, order);
}

/* Copy @src (NULL: a hole or the zero page) into the locked @dst. */
static void copy_in(struct folio *dst, struct page *src)
{
	if (!src)
		folio_zero(dst);
	else if (folio_mc_copy(dst, page_folio(src)))
		bench_fail("folio_mc_copy", -EIO);
}

static int bdev_migrate_to_ram(struct vm_fault *vmf)
{
	struct bdev *d = pgmap_bdev(page_pgmap(vmf->page));
	unsigned long src = 0, dst = 0;
	struct migrate_vma args = {
		.vma = vmf->vma,
		.start = vmf->address,
		.end = vmf->address + PAGE_SIZE,
		.src = &src,
		.dst = &dst,
		.pgmap_owner = d,
		.flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
		.fault_page = vmf->page,
	};
	struct page *spage;
	struct folio *new;

	if (migrate_vma_setup(&args))
		return -EFAULT;
	spage = migrate_pfn_to_page(d->pgmap.machine, src);
	if (spage && (src & MIGRATE_PFN_MIGRATE)) {
		new = folio_alloc(d->pgmap.machine, __GFP_MOVABLE, 0);
		if (!new) {
			migrate_vma_finalize(&args);
			return -ENOMEM;
		}
		folio_lock(new);
		copy_highpage(&new->page, spage);
		dst = migrate_pfn(folio_pfn(new));
	}
	migrate_vma_pages(&args);
	migrate_vma_finalize(&args);
	return 0;
}

static const struct dev_pagemap_ops bdev_ops = {
	.folio_free = bdev_folio_free,
	.migrate_to_ram = bdev_migrate_to_ram,
};

static struct bdev *bdev_create(struct hetmm_machine *m, uint64_t size)
{
	struct bdev *d = calloc(1, sizeof(*d));
	unsigned long pages = size >> PAGE_SHIFT;
	int ret;

	if (!d)
		bench_fail("calloc", -ENOMEM);
	d->size = size;
	d->free_small = calloc(pages, sizeof(unsigned long));
	d->free_large = calloc(pages / HPAGE_PMD_NR + 1, sizeof(unsigned long));
	pthread_mutex_init(&d->lock, NULL);
	ret = request_free_mem_region(m, size, &d->start);
	if (ret)
		bench_fail("request_free_mem_region", ret);
	d->pgmap.type = MEMORY_DEVICE_PRIVATE;
	d->pgmap.flags = PGMAP_ON_DEMAND;
	d->pgmap.ops = &bdev_ops;
	d->pgmap.owner = d;
	d->pgmap.nr_range = 1;
	d->pgmap.ranges[0].start = d->start;
	d->pgmap.ranges[0].end = d->start + size - 1;
	ret = memremap_pages(m, &d->pgmap);
	if (ret)
		bench_fail("memremap_pages", ret);
	return d;
}

static void bdev_destroy(struct bdev *d)
{
	struct hetmm_machine *m = d->pgmap.machine;
	int ret = memunmap_pages_evict(&d->pgmap);

	if (ret)
		bench_fail("memunmap_pages_evict", ret);
	release_mem_region(m, d->start, d->size);
	free(d->free_small);
	free(d->free_large);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/*
 * Migrate [start, end) of @mm to the device (@to_dev) or back. Return the
 * number of 4 KiB pages that moved.
 */
static unsigned long bdev_migrate(struct bdev *d, struct mm_struct *mm,
				  unsigned long start, unsigned long end,
				  bool to_dev, bool compound,
				  unsigned long *src, unsigned long *dst)
{
	struct hetmm_machine *m = d->pgmap.machine;
	unsigned long moved = 0;

	mmap_read_lock(mm);
	for (unsigned long a = start; a < end; a += PMD_SIZE) {
		struct migrate_vma args = {
			.vma = vma_lookup(mm, a),
			.start = a,
			.end = min(end, a + PMD_SIZE),
			.src = src,
			.dst = dst,
			.pgmap_owner = d,
			.flags = (to_dev ? MIGRATE_VMA_SELECT_SYSTEM :
					   MIGRATE_VMA_SELECT_DEVICE_PRIVATE) |
				 (compound ? MIGRATE_VMA_SELECT_COMPOUND : 0),
		};
		unsigned long n = (args.end - a) >> PAGE_SHIFT;
		int ret = migrate_vma_setup(&args);

		if (ret)
			bench_fail("migrate_vma_setup", ret);
		for (unsigned long i = 0; i < n; i++) {
			struct page *spage = migrate_pfn_to_page(m, src[i]);
			unsigned int order = (src[i] & MIGRATE_PFN_COMPOUND) ?
						     PMD_ORDER :
						     0;
			struct folio *new;

			if (!(src[i] & MIGRATE_PFN_MIGRATE))
				continue;
			if (to_dev) {
				new = bdev_alloc(d, order);
			} else {
				new = folio_alloc(m, __GFP_MOVABLE, order);
				if (new)
					folio_lock(new);
			}
			if (!new)
				bench_fail("device/system allocation", -ENOMEM);
			copy_in(new, spage);
			dst[i] = migrate_pfn(folio_pfn(new)) |
				 (order ? MIGRATE_PFN_COMPOUND : 0);
			moved += 1UL << order;
		}
		migrate_vma_pages(&args);
		migrate_vma_finalize(&args);
	}
	mmap_read_unlock(mm);
	return moved;
}

/* ----------------------------------------------------------- snapshot */

struct snap_sub {
	struct mmu_interval_notifier sub;
	pthread_mutex_t lock;
};

static bool snap_invalidate(struct mmu_interval_notifier *sub,
			    const struct mmu_notifier_range *range,
			    unsigned long cur_seq)
{
	struct snap_sub *s = (struct snap_sub *)sub;

	(void)range;
	pthread_mutex_lock(&s->lock);
	mmu_interval_set_seq(sub, cur_seq);
	pthread_mutex_unlock(&s->lock);
	return true;
}

static const struct mmu_interval_notifier_ops snap_ops = {
	.invalidate = snap_invalidate,
};

void bench_hmmsnap(const struct bench_opts *o, struct bench_result *res)
{
	static char note[240];
	unsigned long n = (o->quick ? 256UL : 1024UL) << (20 - PAGE_SHIFT);
	struct hetmm_machine *m = bench_machine((n << PAGE_SHIFT) + (64 << 20),
						false);
	struct mm_struct *mm = bench_process(m);
	unsigned long *pfns = calloc(n, sizeof(*pfns));
	uint64_t *pm = calloc(n, sizeof(*pm));
	struct snap_sub s = { 0 };
	double ours = 1e30, peer = 1e30, floor = 1e30;
	unsigned char *host;
	long a;
	int fd, ret;

	if (!pfns || !pm)
		bench_fail("calloc", -ENOMEM);
	a = hetmm_mmap(mm, 0, n << PAGE_SHIFT, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (a < 0)
		bench_fail("hetmm_mmap(MAP_POPULATE)", a);
	pthread_mutex_init(&s.lock, NULL);
	ret = mmu_interval_notifier_insert(&s.sub, mm, (unsigned long)a,
					   n << PAGE_SHIFT, &snap_ops);
	if (ret)
		bench_fail("mmu_interval_notifier_insert", ret);

	host = host_populated(n);
	fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		bench_fail("open /proc/self/pagemap", -errno);

	for (int r = 0; r < REPS; r++) {
		struct hmm_range range = {
			.notifier = &s.sub,
			.start = (unsigned long)a,
			.end = (unsigned long)a + (n << PAGE_SHIFT),
			.hmm_pfns = pfns,
			.dev_private_owner = NULL,
		};
		uint64_t t0, t1, t2, t3;
		unsigned long sum = 0;
		pte_t *pt;

		range.notifier_seq = mmu_interval_read_begin(&s.sub);
		t0 = now_ns();
		mmap_read_lock(mm);
		ret = hmm_range_fault(&range);
		mmap_read_unlock(mm);
		t1 = now_ns();
		if (ret)
			bench_fail("hmm_range_fault", ret);
		if (pread(fd, pm, n * sizeof(*pm),
			  (off_t)((uintptr_t)host / PAGE_SIZE * sizeof(*pm))) !=
		    (ssize_t)(n * sizeof(*pm)))
			bench_fail("pread pagemap", -errno);
		t2 = now_ns();
		/* The floor: load every PTE of the range once. */
		for (unsigned long i = 0; i < n; i += PTRS_PER_TABLE) {
			pmd_t *pmd = mm_find_pmd(mm, (unsigned long)a +
							     (i << PAGE_SHIFT));

			pt = pte_offset(mm, pmd, (unsigned long)a +
							 (i << PAGE_SHIFT));
			for (unsigned int j = 0; j < PTRS_PER_TABLE; j++)
				sum += pte_val(ptep_get(&pt[j]));
		}
		__asm__ volatile("" : : "r"(sum) : "memory");
		t3 = now_ns();
		ours = min(ours, (double)(t1 - t0) / (double)n);
		peer = min(peer, (double)(t2 - t1) / (double)n);
		floor = min(floor, (double)(t3 - t2) / (double)n);
	}
	for (unsigned long i = 0; i < n; i++)
		if (!(pfns[i] & HMM_PFN_VALID) || !(pfns[i] & HMM_PFN_WRITE))
			bench_fail("snapshot entry not VALID|WRITE", -EINVAL);
	close(fd);
	munmap(host, n * PAGE_SIZE);
	mmu_interval_notifier_remove(&s.sub);
	hetmm_exit(mm);
	hetmm_machine_destroy(m);
	free(pfns);
	free(pm);
	pthread_mutex_destroy(&s.lock);
	res->unit = "ns/page";
	res->ours = ours;
	res->peer = peer;
	res->peer_name = "kernel: pread of /proc/self/pagemap, same size";
	snprintf(note, sizeof(note),
		 "%lu MiB populated; floor (load each PTE) %.2f ns/page; "
		 "target: ours <= 3 ns/page",
		 n >> (20 - PAGE_SHIFT), floor);
	res->note = note;
}

/* ---------------------------------------------------------- migration */

/*
 * One round trip system -> device -> system of @n pages (THP-backed if
 * @huge) against two memcpys of the same bytes between host buffers.
 */
static void migrate_round_trip(const struct bench_opts *o,
			       struct bench_result *res, bool huge)
{
	static char note[2][400];
	unsigned long n = (o->quick ? 16UL : 64UL) << (20 - PAGE_SHIFT);
	struct hetmm_machine *m = bench_proc_machine((n << PAGE_SHIFT) * 3 +
						     (64 << 20));
	struct mm_struct *mm = bench_process(m);
	struct bdev *d = bdev_create(m, (n << PAGE_SHIFT) + PMD_SIZE);
	unsigned long *src = calloc(HPAGE_PMD_NR, sizeof(*src));
	unsigned long *dst = calloc(HPAGE_PMD_NR, sizeof(*dst));
	unsigned char *h1 = map_anon(n << PAGE_SHIFT, huge);
	unsigned char *h2 = map_anon(n << PAGE_SHIFT, huge);
	double ours = 1e30, peer = 1e30, stream = 1e30;
	unsigned long moved = 0;
	long a;

	if (huge && hetmm_thp_set_mode(m, "always"))
		bench_fail("hetmm_thp_set_mode", -EINVAL);
	a = hetmm_mmap(mm, 0, n << PAGE_SHIFT, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (a < 0)
		bench_fail("hetmm_mmap", a);
	memset(h1, 1, n << PAGE_SHIFT);
	memset(h2, 2, n << PAGE_SHIFT);
	for (int r = 0; r < REPS; r++) {
		uint64_t t0 = now_ns(), t1, t2;

		moved = bdev_migrate(d, mm, (unsigned long)a,
				     (unsigned long)a + (n << PAGE_SHIFT), true,
				     huge, src, dst);
		moved += bdev_migrate(d, mm, (unsigned long)a,
				      (unsigned long)a + (n << PAGE_SHIFT),
				      false, huge, src, dst);
		t1 = now_ns();
		memcpy(h2, h1, n << PAGE_SHIFT);
		__asm__ volatile("" : : "r"(h2) : "memory");
		memcpy(h1, h2, n << PAGE_SHIFT);
		__asm__ volatile("" : : "r"(h1) : "memory");
		t2 = now_ns();
		/* The copy our large folios use, alone, in 2 MiB pieces. */
		for (unsigned long i = 0; huge && i < n; i += HPAGE_PMD_NR)
			hetmm_copy_stream(h2 + (i << PAGE_SHIFT),
					  h1 + (i << PAGE_SHIFT), PMD_SIZE);
		for (unsigned long i = 0; huge && i < n; i += HPAGE_PMD_NR)
			hetmm_copy_stream(h1 + (i << PAGE_SHIFT),
					  h2 + (i << PAGE_SHIFT), PMD_SIZE);
		__asm__ volatile("" : : "r"(h1), "r"(h2) : "memory");
		ours = min(ours, (double)(t1 - t0) / (double)n);
		peer = min(peer, (double)(t2 - t1) / (double)n);
		stream = min(stream, (double)(now_ns() - t2) / (double)n);
	}
	if (moved != 2 * n)
		bench_fail("migration moved fewer pages than asked", -EAGAIN);
	hetmm_exit(mm);
	bdev_destroy(d);
	hetmm_machine_destroy(m);
	munmap(h1, n << PAGE_SHIFT);
	munmap(h2, n << PAGE_SHIFT);
	free(src);
	free(dst);
	res->unit = huge ? "ns/4KiB" : "ns/page";
	res->ours = ours;
	res->peer = peer;
	res->peer_name = "memcpy of the same bytes, both ways";
	snprintf(note[huge], sizeof(note[huge]),
		 "%lu MiB %s, sys->dev->sys; target: ratio <= %s",
		 n >> (20 - PAGE_SHIFT),
		 huge ? "in 2 MiB folios" : "in 4 KiB pages",
		 huge ? "1.05" : "1.3");
	if (huge)
		snprintf(note[huge] + strlen(note[huge]),
			 sizeof(note[huge]) - strlen(note[huge]),
			 "; folios are copied with streaming stores "
			 "(hetmm_copy_stream), which alone take %.0f ns/4KiB: "
			 "overhead beyond the copy %.2fx",
			 stream, ours / stream);
	res->note = note[huge];
}

void bench_migrate4k(const struct bench_opts *o, struct bench_result *res)
{
	migrate_round_trip(o, res, false);
}

void bench_migrate2m(const struct bench_opts *o, struct bench_result *res)
{
	migrate_round_trip(o, res, true);
}

/* ----------------------------------------------------- device faults */

void bench_devfault(const struct bench_opts *o, struct bench_result *res)
{
	unsigned long n = o->quick ? 1024 : 4096;
	struct hetmm_machine *m = bench_proc_machine(256ULL << 20);
	struct mm_struct *mm = bench_process(m);
	struct bdev *d = bdev_create(m, 64ULL << 20);
	unsigned long *src = calloc(HPAGE_PMD_NR, sizeof(*src));
	unsigned long *dst = calloc(HPAGE_PMD_NR, sizeof(*dst));
	unsigned char *host = map_anon(PAGE_SIZE, false);
	double ours = 1e30, peer;
	long a = hetmm_mmap(mm, 0, n << PAGE_SHIFT, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (a < 0)
		bench_fail("hetmm_mmap", a);
	for (int r = 0; r < REPS; r++) {
		uint64_t t0;
		unsigned char b;

		if (bdev_migrate(d, mm, (unsigned long)a,
				 (unsigned long)a + (n << PAGE_SHIFT), true,
				 false, src, dst) != n)
			bench_fail("migration to the device", -EAGAIN);
		t0 = now_ns();
		for (unsigned long i = 0; i < n; i++) {
			int ret = hetmm_cpu_read(mm, 0,
						 (unsigned long)a + (i << PAGE_SHIFT),
						 &b, 1);

			if (ret)
				bench_fail("hetmm_cpu_read", ret);
		}
		ours = min(ours, (double)(now_ns() - t0) / (double)n);
	}
	peer = kernel_fault_free_ns(host, PAGE_SIZE, n);
	hetmm_exit(mm);
	bdev_destroy(d);
	hetmm_machine_destroy(m);
	munmap(host, PAGE_SIZE);
	free(src);
	free(dst);
	res->unit = "ns/fault";
	res->ours = ours;
	res->peer = peer;
	res->peer_name = "kernel: first-touch 4 KiB fault + MADV_DONTNEED";
	res->note = "CPU read of a device-private page: migrate_to_ram of one "
		    "page; target: ours <= 2000 ns";
}
