// SPDX-License-Identifier: MIT
/*
 * workloads.c - the built-in workloads of `hetmm run`.
 *
 * Each workload builds its own machine, drives the machinery, checks the
 * machine's invariants at the end, and reports what happened. A workload
 * fails (non-zero exit) if hetmm_check() finds a broken invariant or if
 * data read back differs from what was written.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hetmm/hetmm.h>
#include <hetmm/uapi.h>

#include "cli.h"

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t host_rss_bytes(void)
{
	unsigned long size = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &rss) != 2)
		rss = 0;
	fclose(f);
	return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static void report_stats(struct report *r, const struct hetmm_stats *d)
{
	report_section(r, "events");
	for (int i = 0; i < NR_HETMM_STATS; i++)
		if (d->v[i])
			report_u64(r, hetmm_stat_name((enum hetmm_stat_item)i),
				   d->v[i], NULL);
	report_end(r);
}

static void report_machine(struct report *r, struct hetmm_machine *m)
{
	report_section(r, "machine");
	report_u64(r, "ram", m->cfg.ram_size >> 20, "MiB");
	report_u64(r, "movable", m->cfg.movable_size >> 20, "MiB");
	report_u64(r, "device_window", m->cfg.device_size >> 20, "MiB");
	report_bool(r, "carry_data", m->cfg.carry_data);
	report_u64(r, "struct_page_bytes", sizeof(struct page), NULL);
	report_end(r);
}

/* Check, report the verdict, and say whether the run passed. */
static int report_check(struct report *r, struct hetmm_machine *m)
{
	int ret;

	drain_all_pages(m);
	ret = hetmm_check(m);
	report_section(r, "check");
	report_str(r, "hetmm_check", ret ? "FAILED" : "ok");
	if (ret)
		report_str(r, "problems", hetmm_check_report(m));
	report_end(r);
	return ret;
}

/* ------------------------------------------------------------- phys tour */

struct phys_worker {
	struct hetmm_machine *m;
	uint64_t seed;
	unsigned int rounds;
	unsigned long allocs, failures, verify_errors, bytes_checked;
};

/*
 * One CPU thread's share of the physical-memory tour: keep a working set
 * of folios of mixed orders, fill each with a pattern derived from its
 * pfn, copy some into fresh folios, verify, and free in random order.
 */
static void *phys_worker_fn(void *arg)
{
	struct phys_worker *w = arg;
	enum { SET = 48 };
	struct folio *set[SET] = { 0 };
	uint64_t s = w->seed;

	for (unsigned int round = 0; round < w->rounds; round++) {
		unsigned int i = (unsigned int)(rng_next(&s) % SET);
		uint64_t pick = rng_next(&s) % 16;
		unsigned int order = pick < 11 ? 0 : pick < 14 ? 2 :
				     pick < 15 ? PMD_ORDER : MAX_PAGE_ORDER;
		struct folio *f;

		if (set[i]) {
			uint64_t *p = folio_address(set[i]);

			if (p) {
				uint64_t want = folio_pfn(set[i]) * 31 + 7;

				w->bytes_checked += folio_size(set[i]);
				for (size_t k = 0;
				     k < folio_size(set[i]) / sizeof(*p); k += 64)
					if (p[k] != want + k)
						w->verify_errors++;
			}
			folio_put(set[i]);
			set[i] = NULL;
		}
		f = folio_alloc(w->m, 0, order);
		if (!f) {
			w->failures++;
			continue;
		}
		w->allocs++;
		uint64_t *p = folio_address(f);

		if (p) {
			uint64_t want = folio_pfn(f) * 31 + 7;

			for (size_t k = 0; k < folio_size(f) / sizeof(*p);
			     k += 64)
				p[k] = want + k;
		}
		/* Every few rounds, copy through a checked copy. */
		if (round % 8 == 0) {
			struct folio *c = folio_alloc(w->m, 0, order);

			if (c) {
				if (folio_mc_copy(c, f) == 0 && p &&
				    memcmp(folio_address(c), p, folio_size(f)))
					w->verify_errors++;
				folio_put(c);
			}
		}
		set[i] = f;
	}
	for (unsigned int i = 0; i < SET; i++)
		if (set[i])
			folio_put(set[i]);
	return NULL;
}

/* ------------------------------------------------------ processes tour */

struct proc_worker {
	struct mm_struct *shared; /* one mm all workers touch (disjoint parts) */
	unsigned int id, cpu, cpu2; /* cpu2: the forked child's CPU */
	uint64_t seed;
	unsigned long pages;      /* pages of private anonymous memory */
	bool data;                /* frames carry bytes: compare values */
	unsigned long written, verified, errors, segv_ok, pt_pages, oom;
	unsigned long forks, processes, file_pages, cow_checked, unshared;
	unsigned long moved;
	int failed;               /* first unexpected errno of a setup call */
	char first_error[200];    /* what went wrong first, for the report */
};

enum { FILE_PAGES = 64, SHANON_PAGES = 16 };

static void __attribute__((format(printf, 2, 3)))
bad(struct proc_worker *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	w->errors++;
	if (w->first_error[0])
		return;
	n = snprintf(w->first_error, sizeof(w->first_error), "worker %u: ",
		     w->id);
	va_start(ap, fmt);
	vsnprintf(w->first_error + n, sizeof(w->first_error) - (size_t)n, fmt,
		  ap);
	va_end(ap);
}

/*
 * Read the 8 bytes at @addr and compare them with @want. -ENOMEM (memory
 * exhausted or injected) is an outcome, not an error. Return: 0 checked,
 * 1 skipped (-ENOMEM), -1 wrong (recorded).
 */
static int expect(struct proc_worker *w, struct mm_struct *mm,
		  unsigned int cpu, unsigned long addr, uint64_t want,
		  const char *what)
{
	uint64_t v = ~0ULL;
	int ret = hetmm_cpu_read(mm, cpu, addr, &v, sizeof(v));

	if (ret == -ENOMEM) {
		w->oom++;
		return 1;
	}
	if (ret) {
		bad(w, "%s: read at %#lx failed with %s", what, addr,
		    hetmm_errname(ret));
		return -1;
	}
	if (w->data && v != want) {
		bad(w, "%s: read %#llx at %#lx, expected %#llx", what,
		    (unsigned long long)v, addr, (unsigned long long)want);
		return -1;
	}
	w->verified++;
	return 0;
}

/* Store 8 bytes; same return convention as expect(). */
static int store(struct proc_worker *w, struct mm_struct *mm,
		 unsigned int cpu, unsigned long addr, uint64_t v,
		 const char *what)
{
	int ret = hetmm_cpu_write(mm, cpu, addr, &v, sizeof(v));

	if (ret == -ENOMEM) {
		w->oom++;
		return 1;
	}
	if (ret) {
		bad(w, "%s: write at %#lx failed with %s", what, addr,
		    hetmm_errname(ret));
		return -1;
	}
	w->written++;
	return 0;
}

/* A read that must fault (an unmapped or read-only address). */
static void expect_segv(struct proc_worker *w, struct mm_struct *mm,
			unsigned int cpu, unsigned long addr, bool write,
			const char *what)
{
	uint64_t v = 0;
	int ret = write ? hetmm_cpu_write(mm, cpu, addr, &v, sizeof(v)) :
			  hetmm_cpu_read(mm, cpu, addr, &v, sizeof(v));

	if (ret == -EFAULT)
		w->segv_ok++;
	else
		bad(w, "%s: %s at %#lx returned %s, expected -EFAULT", what,
		    write ? "write" : "read", addr, hetmm_errname(ret));
}

/* Setup calls: -ENOMEM skips the step; anything else fails the worker. */
static bool setup_ok(struct proc_worker *w, long ret, const char *what)
{
	if (ret >= 0)
		return true;
	if (ret == -ENOMEM) {
		w->oom++;
		return false;
	}
	bad(w, "%s failed with %s", what, hetmm_errname((int)ret));
	if (!w->failed)
		w->failed = (int)ret;
	return false;
}

/* Where page @i keeps its checked word, and the values written there. */
static unsigned long word_off(unsigned long i)
{
	return (i % 500) * 8;
}

static uint64_t anon_val(unsigned long i, unsigned int gen)
{
	return 0xa000000000000000ULL | ((uint64_t)gen << 40) | (i * 7919 + 1);
}

static uint64_t file_val(unsigned int id, unsigned long i, unsigned int gen)
{
	return 0xf000000000000000ULL | ((uint64_t)id << 48) |
	       ((uint64_t)gen << 40) | (i + 1);
}

/* Is anon page @i still mapped (not in the munmap hole)? */
static bool kept(const struct proc_worker *w, unsigned long i)
{
	return i < w->pages / 4 || i >= w->pages / 2;
}

struct file_maps {
	int fd;
	long shared, priv, shanon;       /* addresses, or < 0 */
	uint64_t fexp[FILE_PAGES];       /* the file's word of each page */
	uint64_t pexp[FILE_PAGES];       /* private map: 0 = shows the file */
	bool pcow[FILE_PAGES];           /* private page copied */
	uint64_t sexp[SHANON_PAGES];     /* shared anonymous memory */
};

/* The word the private file mapping shows at page @i. */
static uint64_t priv_want(const struct file_maps *f, unsigned long i)
{
	return f->pcow[i] ? f->pexp[i] : f->fexp[i];
}

/*
 * A file of the machine's filesystem written with pwrite, mapped shared
 * and private; shared-map writes reach the file, private-map writes do not
 * (file COW). Plus a shared anonymous mapping for the fork step.
 */
static void file_tour(struct proc_worker *w, struct mm_struct *mm,
		      struct file_maps *f, const char *name)
{
	uint64_t *page = malloc(PAGE_SIZE);
	size_t len = FILE_PAGES * PAGE_SIZE;
	uint64_t v;

	memset(f, 0, sizeof(*f));
	f->shared = f->priv = f->shanon = -1;
	f->fd = hetmm_open(mm, name, O_RDWR | O_CREAT | O_TRUNC);
	if (!page || !setup_ok(w, f->fd, "hetmm_open")) {
		f->fd = -1;
		free(page);
		return;
	}
	if (!setup_ok(w, hetmm_ftruncate(mm, f->fd, (off_t)len),
		      "hetmm_ftruncate"))
		goto out;
	for (unsigned long i = 0; i < FILE_PAGES; i++) {
		ssize_t n;

		for (unsigned long k = 0; k < PAGE_SIZE / 8; k++)
			page[k] = file_val(w->id, i, 0) ^ (k * 8 ^ word_off(i));
		n = hetmm_pwrite(mm, f->fd, page, PAGE_SIZE,
				 (off_t)(i * PAGE_SIZE));
		if (n == PAGE_SIZE)
			f->fexp[i] = file_val(w->id, i, 0);
		else if (n != -ENOMEM)
			bad(w, "hetmm_pwrite of page %lu returned %zd", i, n);
		else
			w->oom++;
	}
	f->shared = hetmm_mmap(mm, 0, len, PROT_READ | PROT_WRITE, MAP_SHARED,
			       f->fd, 0);
	if (!setup_ok(w, f->shared, "hetmm_mmap of a file, shared"))
		goto out;
	f->priv = hetmm_mmap(mm, 0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE,
			     f->fd, 0);
	if (!setup_ok(w, f->priv, "hetmm_mmap of a file, private"))
		goto out;
	/* Reads through both maps see what pwrite wrote. */
	for (unsigned long i = 0; i < FILE_PAGES; i++) {
		expect(w, mm, w->cpu, f->shared + i * PAGE_SIZE + word_off(i),
		       f->fexp[i], "file read through a shared map");
		if (i % 4 == 0)
			expect(w, mm, w->cpu,
			       f->priv + i * PAGE_SIZE + word_off(i),
			       f->fexp[i], "file read through a private map");
		w->file_pages++;
	}
	/* Writes through the shared map reach the file (and the private
	 * map's pages that are not copied yet). */
	for (unsigned long i = 1; i < FILE_PAGES; i += 4)
		if (!store(w, mm, w->cpu, f->shared + i * PAGE_SIZE + word_off(i),
			   file_val(w->id, i, 1), "file write, shared map"))
			f->fexp[i] = file_val(w->id, i, 1);
	/* Writes through the private map do not (file COW). */
	for (unsigned long i = 2; i < FILE_PAGES; i += 4)
		if (!store(w, mm, w->cpu, f->priv + i * PAGE_SIZE + word_off(i),
			   file_val(w->id, i, 2), "file write, private map")) {
			f->pexp[i] = file_val(w->id, i, 2);
			f->pcow[i] = true;
		}
	for (unsigned long i = 0; i < FILE_PAGES; i++) {
		v = ~0ULL;
		if (hetmm_pread(mm, f->fd, &v, 8,
				(off_t)(i * PAGE_SIZE + word_off(i))) != 8)
			bad(w, "hetmm_pread of page %lu failed", i);
		else if (w->data && v != f->fexp[i])
			bad(w, "file page %lu: pread %#llx, expected %#llx", i,
			    (unsigned long long)v,
			    (unsigned long long)f->fexp[i]);
		expect(w, mm, w->cpu, f->priv + i * PAGE_SIZE + word_off(i),
		       priv_want(f, i), "private file map after writes");
	}
	/* Shared anonymous memory (an unlinked tmpfs file underneath). */
	f->shanon = hetmm_mmap(mm, 0, SHANON_PAGES * PAGE_SIZE,
			       PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!setup_ok(w, f->shanon, "hetmm_mmap, shared anonymous"))
		goto out;
	for (unsigned long i = 0; i < SHANON_PAGES; i++)
		if (!store(w, mm, w->cpu, f->shanon + i * PAGE_SIZE,
			   file_val(w->id, i, 3), "shared anon write"))
			f->sexp[i] = file_val(w->id, i, 3);
out:
	free(page);
}

static void file_untour(struct proc_worker *w, struct mm_struct *mm,
			struct file_maps *f, const char *name)
{
	if (f->shared >= 0)
		hetmm_munmap(mm, f->shared, FILE_PAGES * PAGE_SIZE);
	if (f->priv >= 0)
		hetmm_munmap(mm, f->priv, FILE_PAGES * PAGE_SIZE);
	if (f->shanon >= 0)
		hetmm_munmap(mm, f->shanon, SHANON_PAGES * PAGE_SIZE);
	if (f->fd >= 0) {
		hetmm_close(mm, f->fd);
		if (hetmm_unlink(mm, name))
			bad(w, "hetmm_unlink(%s) failed", name);
	}
}

/*
 * fork: the child sees the parent's memory; writes on either side copy
 * (COW) and stay on their side; unshare faults (what a FOLL_PIN of a
 * shared anon page does) copy without changing the bytes; shared file and
 * shared anonymous mappings stay shared; the parent is intact after the
 * child exits.
 */
static void fork_tour(struct proc_worker *w, struct mm_struct *mm, long a,
		      uint64_t *exp, struct file_maps *f)
{
	struct mm_struct *child = hetmm_fork(mm);
	uint64_t *cexp;

	if (IS_ERR(child)) {
		setup_ok(w, PTR_ERR(child), "hetmm_fork");
		return;
	}
	w->forks++;
	w->processes++;
	cexp = malloc(w->pages * sizeof(*cexp));
	if (!cexp) {
		hetmm_exit(child);
		return;
	}
	memcpy(cexp, exp, w->pages * sizeof(*cexp));
	/* The child sees the parent's data. */
	for (unsigned long i = 0; i < w->pages; i += 3)
		if (kept(w, i))
			expect(w, child, w->cpu2, a + i * PAGE_SIZE + word_off(i),
			       cexp[i], "child read after fork");
	/* Unshare some pages in the child (a pin's unshare fault). */
	mmap_read_lock(child);
	for (unsigned long i = 1; i < w->pages / 4; i += 16) {
		struct vm_area_struct *vma = vma_lookup(child, a + i * PAGE_SIZE);
		int ret = vma ? handle_mm_fault(vma, a + i * PAGE_SIZE,
						FAULT_FLAG_UNSHARE) :
				-EFAULT;

		if (ret == -ENOMEM)
			w->oom++;
		else if (ret)
			bad(w, "unshare fault at %#lx failed with %s",
			    a + i * PAGE_SIZE, hetmm_errname(ret));
		else
			w->unshared++;
	}
	mmap_read_unlock(child);
	/* Writes on both sides: COW copies, then reuse. */
	for (unsigned long i = 0; i < w->pages; i += 3)
		if (kept(w, i) &&
		    !store(w, child, w->cpu2, a + i * PAGE_SIZE + word_off(i),
			   anon_val(i, 2), "child COW write"))
			cexp[i] = anon_val(i, 2);
	for (unsigned long i = 0; i < w->pages; i += 5)
		if (kept(w, i) &&
		    !store(w, mm, w->cpu, a + i * PAGE_SIZE + word_off(i),
			   anon_val(i, 3), "parent COW write"))
			exp[i] = anon_val(i, 3);
	for (unsigned long i = 0; i < w->pages; i++) {
		if (!kept(w, i) || (i % 3 && i % 5 && i % 16 != 1))
			continue;
		expect(w, child, w->cpu2, a + i * PAGE_SIZE + word_off(i),
		       cexp[i], "child after COW writes");
		expect(w, mm, w->cpu, a + i * PAGE_SIZE + word_off(i), exp[i],
		       "parent after COW writes");
		w->cow_checked++;
	}
	/* Shared mappings stay shared across fork; private ones copy. */
	if (f->shared >= 0) {
		for (unsigned long i = 3; i < FILE_PAGES; i += 4)
			if (!store(w, child, w->cpu2,
				   f->shared + i * PAGE_SIZE + word_off(i),
				   file_val(w->id, i, 4), "child shared-map write"))
				f->fexp[i] = file_val(w->id, i, 4);
		for (unsigned long i = 0; i < FILE_PAGES; i++)
			expect(w, mm, w->cpu,
			       f->shared + i * PAGE_SIZE + word_off(i), f->fexp[i],
			       "parent reads the child's shared-map write");
	}
	if (f->priv >= 0) {
		for (unsigned long i = 0; i < FILE_PAGES; i += 2) {
			unsigned long ad = f->priv + i * PAGE_SIZE + word_off(i);

			store(w, child, w->cpu2, ad, file_val(w->id, i, 5),
			      "child private-map write");
			expect(w, mm, w->cpu, ad, priv_want(f, i),
			       "parent private map after the child's write");
		}
	}
	if (f->shanon >= 0) {
		for (unsigned long i = 0; i < SHANON_PAGES; i += 2)
			if (!store(w, child, w->cpu2, f->shanon + i * PAGE_SIZE,
				   file_val(w->id, i, 6), "child shared anon write"))
				f->sexp[i] = file_val(w->id, i, 6);
		for (unsigned long i = 0; i < SHANON_PAGES; i++)
			expect(w, mm, w->cpu, f->shanon + i * PAGE_SIZE,
			       f->sexp[i], "parent reads shared anon memory");
	}
	hetmm_exit(child);
	/* The parent is intact after the child is gone. */
	for (unsigned long i = 0; i < w->pages; i++)
		if (kept(w, i))
			expect(w, mm, w->cpu, a + i * PAGE_SIZE + word_off(i),
			       exp[i], "parent after the child exited");
	free(cexp);
}

/*
 * mremap: move the upper part of the anonymous region (growing it) onto a
 * placeholder mapping; data follows, the old range faults, the new tail
 * reads zero. Return: the part's new address (or the old one).
 */
static long mremap_tour(struct proc_worker *w, struct mm_struct *mm, long a,
			const uint64_t *exp)
{
	unsigned long first = w->pages / 2, n = w->pages - first;
	size_t old_len = n * PAGE_SIZE, new_len = old_len + 16 * PAGE_SIZE;
	long from = a + (long)(first * PAGE_SIZE), to, got;

	to = hetmm_mmap(mm, 0, new_len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
	if (!setup_ok(w, to, "hetmm_mmap (mremap target)"))
		return from;
	got = hetmm_mremap(mm, from, old_len, new_len,
			   MREMAP_MAYMOVE | MREMAP_FIXED, to);
	if (!setup_ok(w, got, "hetmm_mremap")) {
		hetmm_munmap(mm, to, new_len);
		return from;
	}
	if (got != to) {
		bad(w, "hetmm_mremap moved to %#lx, asked for %#lx", got, to);
		return got;
	}
	w->moved += n;
	for (unsigned long i = first; i < w->pages; i++)
		expect(w, mm, w->cpu, got + (i - first) * PAGE_SIZE + word_off(i),
		       exp[i], "read after mremap moved the page");
	expect_segv(w, mm, w->cpu, from, false, "old range after mremap");
	for (unsigned long k = 0; k < 16; k++)
		expect(w, mm, w->cpu, got + old_len + k * PAGE_SIZE, 0,
		       "grown tail after mremap");
	return got;
}

/*
 * One CPU thread: a process of its own that maps anonymous memory, reads
 * some before writing (zero page), writes, punches a hole with munmap
 * (reads there must fault); maps a file shared and private and shared
 * anonymous memory; forks and writes through COW on both sides; moves
 * memory with mremap; verifies at every step; unmaps and exits. Plus its
 * own slice of a process shared by every worker, made read-only and back
 * with mprotect (TLB shootdowns on the other workers' CPUs).
 */
static void *proc_worker_fn(void *arg)
{
	struct proc_worker *w = arg;
	struct hetmm_machine *m = w->shared->machine;
	struct mm_struct *mm = hetmm_process_create(m);
	unsigned long len = w->pages * PAGE_SIZE;
	uint64_t s = w->seed, v;
	uint64_t *exp = calloc(w->pages, sizeof(*exp));
	struct file_maps *f = malloc(sizeof(*f));
	char name[32];
	long a, b, moved;

	snprintf(name, sizeof(name), "/wl-%u", w->id);
	if (IS_ERR(mm) || !exp || !f) {
		free(exp);
		free(f);
		if (!IS_ERR(mm))
			hetmm_exit(mm);
		/* A process that cannot be created is an outcome. */
		if (IS_ERR(mm))
			setup_ok(w, PTR_ERR(mm), "hetmm_process_create");
		else
			w->failed = -ENOMEM;
		return NULL;
	}
	w->processes++;
	f->fd = -1;
	f->shared = f->priv = f->shanon = -1;
	a = hetmm_mmap(mm, 0, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!setup_ok(w, a, "hetmm_mmap"))
		goto out;
	/* Read the first quarter before writing: zero-page mappings. */
	for (unsigned long i = 0; i < w->pages / 4; i++)
		expect(w, mm, w->cpu, a + i * PAGE_SIZE + word_off(i), 0,
		       "read of untouched anonymous memory");
	/* Write, and read back at once (through the TLB entry just filled). */
	for (unsigned long i = 0; i < w->pages; i++)
		if (!store(w, mm, w->cpu, a + i * PAGE_SIZE + word_off(i),
			   anon_val(i, 1), "anonymous write")) {
			exp[i] = anon_val(i, 1);
			expect(w, mm, w->cpu, a + i * PAGE_SIZE + word_off(i),
			       exp[i], "anonymous read after write");
		}
	w->pt_pages = (unsigned long)atomic_load(&mm->nr_pt_pages);
	/* Punch a hole in the middle: reads there must fault. */
	if (hetmm_munmap(mm, a + len / 4, len / 4))
		bad(w, "hetmm_munmap of the hole failed");
	for (unsigned long i = 0; i < w->pages; i++) {
		if (kept(w, i))
			expect(w, mm, w->cpu, a + i * PAGE_SIZE + word_off(i),
			       exp[i], "anonymous read back");
		else if (i % 64 == 0)
			expect_segv(w, mm, w->cpu, a + i * PAGE_SIZE, false,
				    "read in the munmap hole");
	}
	file_tour(w, mm, f, name);
	fork_tour(w, mm, a, exp, f);
	moved = mremap_tour(w, mm, a, exp);
	file_untour(w, mm, f, name);
	hetmm_munmap(mm, a, len / 4);
	hetmm_munmap(mm, moved, len / 2 + 16 * PAGE_SIZE);

	/* Our slice of the shared process (mapped by the leader). */
	b = (long)HETMM_MMAP_BASE - (long)(w->id + 1) * 64 * (long)PAGE_SIZE;
	for (unsigned long i = 0; i < 64; i++) {
		v = rng_next(&s);
		if (store(w, w->shared, w->cpu, b + i * PAGE_SIZE, v,
			  "shared process write"))
			continue;
		expect(w, w->shared, w->cpu, b + i * PAGE_SIZE, v,
		       "shared process read back");
	}
	if (hetmm_mprotect(w->shared, b, 64 * PAGE_SIZE, PROT_READ))
		bad(w, "hetmm_mprotect(PROT_READ) of the shared slice failed");
	else
		expect_segv(w, w->shared, w->cpu, b, true,
			    "write to a read-only slice");
	if (hetmm_mprotect(w->shared, b, 64 * PAGE_SIZE,
			   PROT_READ | PROT_WRITE))
		bad(w, "hetmm_mprotect(PROT_READ|PROT_WRITE) failed");
	store(w, w->shared, w->cpu, b, 1, "shared process write after mprotect");
out:
	free(exp);
	free(f);
	hetmm_exit(mm);
	return NULL;
}

static void report_fault_stats(struct report *r, const struct hetmm_stats *d)
{
	report_section(r, "faults");
	report_u64(r, "zero_fill", d->v[HETMM_STAT_fault_zero_fill],
		   "(write to untouched anon memory)");
	report_u64(r, "zero_page", d->v[HETMM_STAT_fault_zero_page],
		   "(read of untouched anon memory)");
	report_u64(r, "cow_copy", d->v[HETMM_STAT_fault_wp_copy], NULL);
	report_u64(r, "reuse", d->v[HETMM_STAT_fault_wp_reuse],
		   "(write fault kept the page)");
	report_u64(r, "unshare", d->v[HETMM_STAT_fault_unshare_copy], NULL);
	report_u64(r, "file", d->v[HETMM_STAT_fault_file], NULL);
	report_u64(r, "file_cow", d->v[HETMM_STAT_fault_file_cow],
		   "(write to a private file map)");
	report_u64(r, "sigsegv", d->v[HETMM_STAT_fault_sigsegv], NULL);
	report_u64(r, "sigbus", d->v[HETMM_STAT_fault_sigbus], NULL);
	report_u64(r, "thp", d->v[HETMM_STAT_thp_fault_alloc],
		   "(2 MiB THP installed)");
	report_u64(r, "thp_fallback", d->v[HETMM_STAT_thp_fault_fallback], NULL);
	report_u64(r, "hugetlb", d->v[HETMM_STAT_hugetlb_fault_alloc], NULL);
	report_end(r);
	report_section(r, "tlb");
	report_u64(r, "hits", d->v[HETMM_STAT_tlb_hit], NULL);
	report_u64(r, "misses", d->v[HETMM_STAT_tlb_miss], NULL);
	report_u64(r, "flushes", d->v[HETMM_STAT_tlb_flush], NULL);
	report_u64(r, "shootdowns", d->v[HETMM_STAT_tlb_shootdown],
		   "(per-CPU flushes)");
	report_u64(r, "entries_flushed", d->v[HETMM_STAT_tlb_entries_flushed],
		   NULL);
	report_u64(r, "evictions", d->v[HETMM_STAT_tlb_evict], NULL);
	report_end(r);
	report_section(r, "page_tables");
	report_u64(r, "allocated", d->v[HETMM_STAT_pt_page_alloc], "pages");
	report_u64(r, "freed", d->v[HETMM_STAT_pt_page_free], "pages");
	report_u64(r, "ptes_copied_by_fork", d->v[HETMM_STAT_fork_pte_copy],
		   NULL);
	report_u64(r, "ptes_changed_by_mprotect", d->v[HETMM_STAT_mprotect_pte],
		   NULL);
	report_u64(r, "ptes_moved_by_mremap", d->v[HETMM_STAT_mremap_pte_move],
		   NULL);
	report_u64(r, "ptes_zapped", d->v[HETMM_STAT_pte_zapped], NULL);
	report_end(r);
}

static int run_processes(struct hetmm_machine *m, unsigned int nthreads,
			 uint64_t seed, bool data, struct report *r)
{
	struct proc_worker w[16];
	pthread_t t[16];
	struct mm_struct *shared;
	struct proc_worker sum = { 0 };
	struct hetmm_stats before, after, d;
	const char *first_error = NULL;
	unsigned long pages;
	long a, in_use;
	int failed = 0;

	hetmm_stats_read(&before);
	/* With injected failures creation may fail: try a few times. */
	for (int tries = 0;; tries++) {
		shared = hetmm_process_create(m);
		if (!IS_ERR(shared) || PTR_ERR(shared) != -ENOMEM || tries == 100)
			break;
	}
	if (IS_ERR(shared))
		return (int)PTR_ERR(shared);
	a = hetmm_mmap(shared, HETMM_MMAP_BASE - nthreads * 64 * PAGE_SIZE,
		       nthreads * 64 * PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (a < 0) {
		hetmm_exit(shared);
		return (int)a;
	}
	/* Each worker and its child fit in a sixth of RAM: up to 4096 pages. */
	pages = (unsigned long)(m->cfg.ram_size >> PAGE_SHIFT) / (6 * nthreads);
	pages = min(max(pages & ~63UL, 64UL), 4096UL);
	for (unsigned int i = 0; i < nthreads; i++) {
		w[i] = (struct proc_worker){ .shared = shared,
					     .id = i,
					     .cpu = i % m->cfg.nr_cpus,
					     .cpu2 = (i + 1) % m->cfg.nr_cpus,
					     .seed = seed + i,
					     .pages = pages,
					     .data = data };
		pthread_create(&t[i], NULL, proc_worker_fn, &w[i]);
	}
	for (unsigned int i = 0; i < nthreads; i++) {
		pthread_join(t[i], NULL);
		sum.processes += w[i].processes;
		sum.forks += w[i].forks;
		sum.written += w[i].written;
		sum.verified += w[i].verified;
		sum.errors += w[i].errors;
		sum.segv_ok += w[i].segv_ok;
		sum.pt_pages += w[i].pt_pages;
		sum.oom += w[i].oom;
		sum.file_pages += w[i].file_pages;
		sum.cow_checked += w[i].cow_checked;
		sum.unshared += w[i].unshared;
		sum.moved += w[i].moved;
		if (w[i].failed && !failed)
			failed = w[i].failed;
		if (w[i].first_error[0] && !first_error)
			first_error = w[i].first_error;
	}
	hetmm_exit(shared);
	rcu_barrier();
	drain_all_pages(m);
	hetmm_stats_read(&after);
	hetmm_stats_diff(&d, &after, &before);
	in_use = hetmm_pages_in_use(m);

	report_section(r, "processes");
	report_u64(r, "cpu_threads", nthreads, NULL);
	report_u64(r, "processes", sum.processes + 1,
		   "(one per thread, their fork children, one shared)");
	report_u64(r, "forks", sum.forks, NULL);
	report_u64(r, "anon_pages_per_process", pages, NULL);
	report_u64(r, "words_written", sum.written, "(8-byte CPU stores)");
	report_u64(r, "words_verified", sum.verified, "(8-byte CPU loads checked)");
	report_bool(r, "data_checked", data);
	report_u64(r, "file_pages_checked", sum.file_pages, NULL);
	report_u64(r, "cow_pages_checked", sum.cow_checked,
		   "(parent and child after COW writes)");
	report_u64(r, "unshare_requests", sum.unshared, NULL);
	report_u64(r, "pages_moved_by_mremap", sum.moved, NULL);
	report_u64(r, "expected_sigsegv", sum.segv_ok,
		   "(unmapped holes, moved-from and read-only ranges)");
	report_u64(r, "page_table_pages_per_process",
		   nthreads ? sum.pt_pages / nthreads : 0, "(at peak)");
	report_u64(r, "out_of_memory", sum.oom, "(accesses that got -ENOMEM)");
	report_u64(r, "errors", sum.errors, NULL);
	if (first_error)
		report_str(r, "first_error", first_error);
	report_fault_stats(r, &d);
	report_i64(r, "pages_in_use_after_exit", in_use, "pages (must be 0)");
	report_str(r, "memory_after_exit",
		   in_use ? "LEAKED: frames still in use after every process exited" :
			    "all freed: every process exited, no frames in use");
	report_end(r);
	if (first_error)
		fprintf(stderr, "hetmm: default: data check failed: %s\n",
			first_error);
	if (failed)
		return failed;
	return sum.errors ? -EIO : 0;
}

static int wl_default(const struct run_opts *o, struct report *r)
{
	struct hetmm_machine_config cfg;
	struct hetmm_machine *m;
	struct hetmm_stats before, after, d;
	unsigned int nthreads = o->threads ? o->threads : 2;
	struct phys_worker w[16];
	pthread_t t[16];
	unsigned long allocs = 0, failures = 0, errors = 0, bytes = 0;
	uint64_t t0, t1;
	int ret;

	if (nthreads > 16)
		nthreads = 16;
	hetmm_machine_config_default(&cfg);
	if (o->ram_size)
		cfg.ram_size = o->ram_size;
	cfg.carry_data = !o->metadata_only;
	m = hetmm_machine_create(&cfg);
	if (IS_ERR(m))
		return (int)PTR_ERR(m);
	if (o->fail_spec) {
		ret = hetmm_fault_parse(&m->faults, o->fail_spec);
		if (ret) {
			hetmm_machine_destroy(m);
			return ret;
		}
	}
	report_str(r, "workload", "default");
	report_u64(r, "seed", o->seed, NULL);
	report_machine(r, m);

	hetmm_stats_read(&before);
	t0 = now_ns();
	for (unsigned int i = 0; i < nthreads; i++) {
		w[i] = (struct phys_worker){ .m = m,
					     .seed = o->seed * 7919 + i + 1,
					     .rounds = 20000 };
		pthread_create(&t[i], NULL, phys_worker_fn, &w[i]);
	}
	for (unsigned int i = 0; i < nthreads; i++) {
		pthread_join(t[i], NULL);
		allocs += w[i].allocs;
		failures += w[i].failures;
		errors += w[i].verify_errors;
		bytes += w[i].bytes_checked;
	}
	t1 = now_ns();

	report_section(r, "phys");
	report_u64(r, "cpu_threads", nthreads, NULL);
	report_u64(r, "folios_allocated", allocs, NULL);
	report_u64(r, "allocation_failures", failures, NULL);
	report_u64(r, "bytes_verified", bytes, "bytes");
	report_u64(r, "verify_errors", errors, NULL);
	report_u64(r, "memmap_pages_initialised", hetmm_memmap_pages_online(m),
		   NULL);
	report_u64(r, "injected_failures",
		   hetmm_fault_failures(&m->faults, HETMM_FAULT_alloc_pages) +
			   hetmm_fault_failures(&m->faults,
						HETMM_FAULT_copy_page),
		   NULL);
	report_i64(r, "pages_in_use_at_end", hetmm_pages_in_use(m), "pages");
	report_f64(r, "elapsed", (double)(t1 - t0) / 1e6, "ms");
	report_end(r);
	int pret = run_processes(m, nthreads, o->seed, cfg.carry_data, r);
	int dret = run_devices(m, cfg.carry_data, r);

	if (!pret)
		pret = dret;

	hetmm_stats_read(&after);
	hetmm_stats_diff(&d, &after, &before);
	report_stats(r, &d);
	ret = report_check(r, m);
	if (!ret && (errors || hetmm_pages_in_use(m)))
		ret = -EUCLEAN;
	if (!ret)
		ret = pret;
	hetmm_machine_destroy(m);
	return ret;
}

/*
 * bigmem: a 1 TiB metadata-only machine with 1 GiB in use, to show what
 * the lazily initialised memmap costs on the host.
 */
static int wl_bigmem(const struct run_opts *o, struct report *r)
{
	struct hetmm_machine_config cfg;
	struct hetmm_machine *m;
	uint64_t rss0, rss1, in_use = 1ULL << 30;
	unsigned long n = (unsigned long)(in_use / HPAGE_PMD_SIZE);
	struct folio **f;
	int ret;

	hetmm_machine_config_default(&cfg);
	cfg.ram_size = o->ram_size ? o->ram_size : 1ULL << 40;
	cfg.carry_data = false;
	rss0 = host_rss_bytes();
	m = hetmm_machine_create(&cfg);
	if (IS_ERR(m))
		return (int)PTR_ERR(m);
	f = calloc(n, sizeof(*f));
	for (unsigned long i = 0; i < n; i++)
		f[i] = folio_alloc(m, 0, PMD_ORDER);
	rss1 = host_rss_bytes();
	report_str(r, "workload", "bigmem");
	report_machine(r, m);
	report_section(r, "host_memory");
	report_u64(r, "simulated_ram", cfg.ram_size >> 30, "GiB");
	report_u64(r, "simulated_in_use", in_use >> 20, "MiB");
	report_u64(r, "memmap_pages_initialised", hetmm_memmap_pages_online(m),
		   NULL);
	report_f64(r, "host_rss_growth", (double)(rss1 - rss0) / (1 << 20),
		   "MiB (target < 200)");
	report_u64(r, "metadata_per_frame", sizeof(struct page),
		   "bytes (target <= 64)");
	report_end(r);
	for (unsigned long i = 0; i < n; i++)
		if (f[i])
			folio_put(f[i]);
	free(f);
	ret = report_check(r, m);
	hetmm_machine_destroy(m);
	return ret;
}

const struct workload hetmm_workloads[] = {
	{ "default",
	  "tour: threaded folio allocation; processes with anon/file memory, fork+COW, mremap, munmap; verified, checked",
	  wl_default },
	{ "bigmem", "1 TiB metadata-only machine with 1 GiB in use: host memory cost",
	  wl_bigmem },
};
const unsigned int hetmm_nr_workloads = ARRAY_SIZE(hetmm_workloads);

const struct workload *workload_find(const char *name)
{
	for (unsigned int i = 0; i < hetmm_nr_workloads; i++)
		if (!strcmp(hetmm_workloads[i].name, name))
			return &hetmm_workloads[i];
	return NULL;
}
