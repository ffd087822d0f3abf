// SPDX-License-Identifier: MIT
/*
 * bench.c - `hetmm bench`: our operations side by side with the closest
 * operation of the real kernel (or memcpy/memset) measured in the same run.
 *
 * Method: each measurement runs its loop REPS times and keeps the fastest
 * repetition (the least disturbed by other load on a shared machine); ours
 * and the peer alternate so both see the same machine state. The ratio
 * ours/peer is the figure to read; absolute times vary between machines.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hetmm/hetmm.h>
#include <hetmm/uapi.h>

#include "bench.h"
#include "cli.h"

struct bench {
	const char *name;
	const char *summary;
	void (*fn)(const struct bench_opts *o, struct bench_result *res);
};

static volatile unsigned char sink;

struct hetmm_machine *bench_machine(uint64_t ram, bool data)
{
	struct hetmm_machine_config cfg;
	struct hetmm_machine *m;

	hetmm_machine_config_default(&cfg);
	cfg.ram_size = ram;
	cfg.carry_data = data;
	m = hetmm_machine_create(&cfg);
	if (IS_ERR(m)) {
		fprintf(stderr, "hetmm: bench: cannot create machine: %s\n",
			hetmm_errname((int)PTR_ERR(m)));
		exit(1);
	}
	return m;
}

/*
 * Touch every frame of @m once (allocate all of it as zeroed 2 MiB folios,
 * then free it), so host page faults on the machine's backing memory do
 * not land inside a timed loop.
 */
static void bench_machine_warm(struct hetmm_machine *m)
{
	unsigned long n = (unsigned long)(m->cfg.ram_size / HPAGE_PMD_SIZE);
	struct folio **f = calloc(n + 1, sizeof(*f));
	unsigned long k = 0;

	if (!f)
		return;
	while (k <= n && (f[k] = folio_alloc(m, __GFP_ZERO, PMD_ORDER)))
		k++;
	while (k--)
		folio_put(f[k]);
	free(f);
	drain_all_pages(m);
}

/* A machine for the process benchmarks: carries data, warmed. */
struct hetmm_machine *bench_proc_machine(uint64_t ram)
{
	struct hetmm_machine *m = bench_machine(ram, true);

	bench_machine_warm(m);
	return m;
}

void *map_anon(size_t bytes, bool huge)
{
	size_t align = huge ? HPAGE_PMD_SIZE : PAGE_SIZE;
	unsigned char *p = mmap(NULL, bytes + align, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("hetmm: bench: mmap");
		exit(1);
	}
	p = (unsigned char *)ALIGN((uintptr_t)p, align);
	madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return p;
}

/* Kernel: fault in and free (MADV_DONTNEED) @len bytes at @buf, @n times. */
double kernel_fault_free_ns(unsigned char *buf, size_t len,
				   unsigned long n)
{
	double best = 1e30;

	for (int r = 0; r < REPS; r++) {
		uint64_t t0 = now_ns();

		for (unsigned long i = 0; i < n; i++) {
			buf[0] = 1;
			madvise(buf, len, MADV_DONTNEED);
		}
		double t = (double)(now_ns() - t0) / (double)n;

		if (t < best)
			best = t;
	}
	return best;
}

static double ours_alloc_free_ns(struct hetmm_machine *m, unsigned int order,
				 unsigned long n)
{
	double best = 1e30;

	for (int r = 0; r < REPS; r++) {
		uint64_t t0 = now_ns();

		for (unsigned long i = 0; i < n; i++) {
			struct page *p = alloc_pages(m, 0, order);

			__free_pages(p, order);
		}
		double t = (double)(now_ns() - t0) / (double)n;

		if (t < best)
			best = t;
	}
	return best;
}

static void bench_alloc0(const struct bench_opts *o, struct bench_result *res)
{
	struct hetmm_machine *m = bench_machine(256ULL << 20, false);
	unsigned long n = o->quick ? 100000 : 2000000;
	unsigned long kn = o->quick ? 2000 : 20000;
	unsigned char *buf = map_anon(PAGE_SIZE, false);

	/* Warm the per-thread list once. */
	__free_pages(alloc_pages(m, 0, 0), 0);
	res->ours = ours_alloc_free_ns(m, 0, n);
	res->peer = kernel_fault_free_ns(buf, PAGE_SIZE, kn);
	res->unit = "ns/page";
	res->peer_name = "kernel first-touch fault + MADV_DONTNEED of 4 KiB";
	res->note = "target: ours <= 40 ns; the kernel peer also zeroes and maps";
	hetmm_machine_destroy(m);
}

static void bench_alloc9(const struct bench_opts *o, struct bench_result *res)
{
	struct hetmm_machine *m = bench_machine(256ULL << 20, false);
	unsigned long n = o->quick ? 20000 : 400000;
	unsigned long kn = o->quick ? 50 : 500;
	unsigned char *buf = map_anon(HPAGE_PMD_SIZE, true);

	__free_pages(alloc_pages(m, 0, PMD_ORDER), PMD_ORDER);
	res->ours = ours_alloc_free_ns(m, PMD_ORDER, n);
	res->peer = kernel_fault_free_ns(buf, HPAGE_PMD_SIZE, kn);
	res->unit = "ns/2MiB";
	res->peer_name = "kernel THP first-touch fault + MADV_DONTNEED of 2 MiB";
	res->note = "target: ours <= 200 ns; the kernel peer also zeroes 2 MiB";
	hetmm_machine_destroy(m);
}

static __noinline void data_ours(struct folio **dst, struct folio **src,
				  unsigned long n, unsigned long iters, bool copy,
				  bool large)
{
	for (unsigned long i = 0; i < iters; i++) {
		unsigned long k = i % n;

		/* Single pages use the page-level helpers, as the kernel does. */
		if (copy && large)
			folio_mc_copy(dst[k], src[k]);
		else if (copy)
			copy_highpage(&dst[k]->page, &src[k]->page);
		else if (large)
			folio_zero(dst[k]);
		else
			clear_highpage(&dst[k]->page);
	}
}

static __noinline void data_peer(unsigned char **hd, unsigned char **hs,
				  unsigned long n, unsigned long iters,
				  size_t unit, bool copy)
{
	for (unsigned long i = 0; i < iters; i++) {
		unsigned long k = i % n;

		if (copy)
			memcpy(hd[k], hs[k], unit);
		else
			memset(hd[k], 0, unit);
		__asm__ volatile("" : : "r"(hd[k]) : "memory");
	}
}

/* Time @fn over @nunits units of @unit bytes in a rotating working set. */
static void bench_data(const struct bench_opts *o, struct bench_result *res,
		       unsigned int order, bool copy)
{
	size_t unit = PAGE_SIZE << order;
	unsigned long nfolios = order ? 8 : 256; /* 16 MiB / 1 MiB sets */
	unsigned long iters = (o->quick ? 64UL : 1024UL) * (order ? 1 : 64);
	struct hetmm_machine *m = bench_machine(256ULL << 20, true);
	struct folio *src[256], *dst[256];
	unsigned char *hs[256], *hd[256];
	double best_ours = 1e30, best_peer = 1e30;

	/*
	 * The peer runs memset/memcpy on the very same frames (through their
	 * host addresses), so layout, cache and TLB effects are identical and
	 * only our code path differs.
	 */
	for (unsigned long i = 0; i < nfolios; i++) {
		src[i] = folio_alloc(m, __GFP_ZERO, order);
		dst[i] = folio_alloc(m, __GFP_ZERO, order);
		hs[i] = folio_address(src[i]);
		hd[i] = folio_address(dst[i]);
		memset(hs[i], (int)i, unit);
	}
	/* Alternate which side runs first, so neither always inherits the
	 * other's cache state. */
	for (int r = 0; r < 2 * REPS; r++) {
		uint64_t t0 = now_ns(), t1, t2;

		if (r & 1) {
			data_peer(hd, hs, nfolios, iters, unit, copy);
			t1 = now_ns();
			data_ours(dst, src, nfolios, iters, copy, order != 0);
			t2 = now_ns();
			best_peer = min(best_peer, (double)(t1 - t0) / (double)iters);
			best_ours = min(best_ours, (double)(t2 - t1) / (double)iters);
		} else {
			data_ours(dst, src, nfolios, iters, copy, order != 0);
			t1 = now_ns();
			data_peer(hd, hs, nfolios, iters, unit, copy);
			t2 = now_ns();
			best_ours = min(best_ours, (double)(t1 - t0) / (double)iters);
			best_peer = min(best_peer, (double)(t2 - t1) / (double)iters);
		}
	}
	sink = hd[0][unit - 1];
	for (unsigned long i = 0; i < nfolios; i++) {
		folio_put(src[i]);
		folio_put(dst[i]);
	}
	hetmm_machine_destroy(m);
	res->ours = best_ours;
	res->peer = best_peer;
	res->unit = order ? "ns/2MiB" : "ns/4KiB";
	res->peer_name = copy ? "memcpy" : "memset";
	res->note = "target: ratio <= 1.11 (>= 90% of the host's bandwidth)";
}

static void bench_zero4k(const struct bench_opts *o, struct bench_result *r)
{
	bench_data(o, r, 0, false);
}

static void bench_zero2m(const struct bench_opts *o, struct bench_result *r)
{
	bench_data(o, r, PMD_ORDER, false);
}

static void bench_copy4k(const struct bench_opts *o, struct bench_result *r)
{
	bench_data(o, r, 0, true);
}

static void bench_copy2m(const struct bench_opts *o, struct bench_result *r)
{
	bench_data(o, r, PMD_ORDER, true);
}

/* Host memory of a 1 TiB metadata-only machine with 1 GiB in use. */
static void bench_memmap(const struct bench_opts *o, struct bench_result *res)
{
	struct hetmm_machine_config cfg;
	struct hetmm_machine *m;
	unsigned long n = (1UL << 30) / HPAGE_PMD_SIZE;
	struct folio **f = calloc(n, sizeof(*f));
	uint64_t rss0, rss1;

	(void)o;
	hetmm_machine_config_default(&cfg);
	cfg.ram_size = 1ULL << 40;
	cfg.carry_data = false;
	rss0 = host_rss_bytes();
	m = hetmm_machine_create(&cfg);
	if (IS_ERR(m))
		exit(1);
	for (unsigned long i = 0; i < n; i++)
		f[i] = folio_alloc(m, 0, PMD_ORDER);
	rss1 = host_rss_bytes();
	for (unsigned long i = 0; i < n; i++)
		folio_put(f[i]);
	free(f);
	hetmm_machine_destroy(m);
	res->ours = (double)(rss1 - rss0) / (1 << 20);
	res->peer = 200;
	res->unit = "MiB";
	res->peer_name = "target: 200 MiB host memory";
	res->note = "1 TiB metadata-only machine, 1 GiB allocated; struct page is 64 bytes";
}

/* First-touch 4 KiB write faults: ours through hetmm_cpu_write, the
 * kernel's on a real anonymous mapping; both include the munmap. */
static void bench_fault(const struct bench_opts *o, struct bench_result *res)
{
	struct hetmm_machine *m = bench_proc_machine(256ULL << 20);
	struct mm_struct *mm = hetmm_process_create(m);
	unsigned long n = o->quick ? 2048 : 16384;
	size_t len = n * PAGE_SIZE;
	double best_ours = 1e30, best_peer = 1e30;

	for (int r = 0; r < REPS; r++) {
		uint64_t t0 = now_ns();
		long a = hetmm_mmap(mm, 0, len, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		for (unsigned long i = 0; i < n; i++)
			hetmm_cpu_write(mm, 0, a + i * PAGE_SIZE, &i, 1);
		hetmm_munmap(mm, a, len);
		uint64_t t1 = now_ns();
		unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		madvise(p, len, MADV_NOHUGEPAGE);
		for (unsigned long i = 0; i < n; i++)
			p[i * PAGE_SIZE] = (unsigned char)i;
		munmap(p, len);
		uint64_t t2 = now_ns();

		best_ours = min(best_ours, (double)(t1 - t0) / (double)n);
		best_peer = min(best_peer, (double)(t2 - t1) / (double)n);
	}
	hetmm_exit(mm);
	hetmm_machine_destroy(m);
	res->ours = best_ours;
	res->peer = best_peer;
	res->unit = "ns/page";
	res->peer_name = "kernel: mmap + first-touch write + munmap, 4 KiB";
	res->note = "target: ratio <= 0.45";
}

/* ------------------------------------------------ processes: helpers */

struct mm_struct *bench_process(struct hetmm_machine *m)
{
	struct mm_struct *mm = hetmm_process_create(m);

	if (IS_ERR(mm)) {
		fprintf(stderr, "hetmm: bench: cannot create a process: %s\n",
			hetmm_errname((int)PTR_ERR(mm)));
		exit(1);
	}
	return mm;
}

void bench_fail(const char *what, long err)
{
	fprintf(stderr, "hetmm: bench: %s failed: %s\n", what,
		err < 0 ? hetmm_errname((int)err) : "unexpected result");
	exit(1);
}

/* Map @n private anonymous pages in @mm and write one byte to each. */
static long ours_populated(struct mm_struct *mm, unsigned long n)
{
	long a = hetmm_mmap(mm, 0, n * PAGE_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (a < 0)
		bench_fail("hetmm_mmap", a);
	for (unsigned long i = 0; i < n; i++) {
		int ret = hetmm_cpu_write(mm, 0, a + i * PAGE_SIZE, &i, 1);

		if (ret)
			bench_fail("hetmm_cpu_write", ret);
	}
	return a;
}

/* The host's counterpart: @n populated 4 KiB pages (no THP). */
unsigned char *host_populated(unsigned long n)
{
	unsigned char *p = mmap(NULL, n * PAGE_SIZE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("hetmm: bench: mmap");
		exit(1);
	}
	madvise(p, n * PAGE_SIZE, MADV_NOHUGEPAGE);
	for (unsigned long i = 0; i < n; i++)
		p[i * PAGE_SIZE] = (unsigned char)i;
	return p;
}

static void host_touch(unsigned char *p, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		p[i * PAGE_SIZE] = (unsigned char)i;
}

/*
 * Kernel fork measurements run while no simulated machine exists: a
 * machine's frames are host memory the kernel would copy at fork (and
 * the parent would then take COW faults on), which is not the operation
 * being compared.
 */

/* Kernel: fork(); the child writes one byte per page (COW faults), times
 * the loop and sends the time through a pipe. Return: ns per page. */
static double kernel_cow_ns(unsigned char *p, unsigned long n)
{
	double best = 1e30;

	for (int r = 0; r < REPS; r++) {
		int fd[2];
		uint64_t dt = 0;
		pid_t pid;

		if (pipe(fd)) {
			perror("hetmm: bench: pipe");
			exit(1);
		}
		fflush(stdout);
		pid = fork();
		if (pid < 0) {
			perror("hetmm: bench: fork");
			exit(1);
		}
		if (pid == 0) {
			uint64_t t0 = now_ns();

			for (unsigned long i = 0; i < n; i++)
				p[i * PAGE_SIZE] = (unsigned char)(i + 1);
			dt = now_ns() - t0;
			if (write(fd[1], &dt, sizeof(dt)) != sizeof(dt))
				_exit(1);
			_exit(0);
		}
		close(fd[1]);
		if (read(fd[0], &dt, sizeof(dt)) != sizeof(dt)) {
			fprintf(stderr, "hetmm: bench: cow child failed\n");
			exit(1);
		}
		close(fd[0]);
		waitpid(pid, NULL, 0);
		best = min(best, (double)dt / (double)n);
	}
	return best;
}

/* Kernel: fork() + child _exit() + waitpid(). Return: ns per page. */
static double kernel_fork_ns(unsigned long n)
{
	double best = 1e30;

	for (int r = 0; r < REPS; r++) {
		uint64_t t0;
		pid_t pid;

		fflush(stdout);
		t0 = now_ns();
		pid = fork();
		if (pid < 0) {
			perror("hetmm: bench: fork");
			exit(1);
		}
		if (pid == 0)
			_exit(0);
		waitpid(pid, NULL, 0);
		double t = (double)(now_ns() - t0) / (double)n;

		best = min(best, t);
	}
	return best;
}

static unsigned long proc_pages(const struct bench_opts *o)
{
	return o->quick ? 4096 : 16384;
}

/* COW write faults after fork, one byte per page, in the child. */
static void bench_cow(const struct bench_opts *o, struct bench_result *res)
{
	unsigned long n = proc_pages(o);
	unsigned char *p = host_populated(n);
	struct hetmm_machine *m;
	struct mm_struct *mm;
	double best = 1e30;
	long a;

	res->peer = kernel_cow_ns(p, n);
	munmap(p, n * PAGE_SIZE);

	m = bench_proc_machine(256ULL << 20);
	mm = bench_process(m);
	a = ours_populated(mm, n);
	for (int r = 0; r < REPS; r++) {
		struct mm_struct *child = hetmm_fork(mm);
		uint64_t t0;

		if (IS_ERR(child))
			bench_fail("hetmm_fork", PTR_ERR(child));
		t0 = now_ns();
		for (unsigned long i = 0; i < n; i++) {
			unsigned char v = (unsigned char)(i + 1);
			int ret = hetmm_cpu_write(child, 1, a + i * PAGE_SIZE,
						  &v, 1);

			if (ret)
				bench_fail("hetmm_cpu_write (COW)", ret);
		}
		double t = (double)(now_ns() - t0) / (double)n;

		best = min(best, t);
		hetmm_exit(child);
	}
	hetmm_exit(mm);
	hetmm_machine_destroy(m);
	res->ours = best;
	res->unit = "ns/page";
	res->peer_name = "kernel: COW write fault in a fork()ed child, 4 KiB";
	res->note = "target: ratio <= 0.4";
}

/* fork + exit of the child, per populated page. */
static void bench_fork(const struct bench_opts *o, struct bench_result *res)
{
	unsigned long n = proc_pages(o);
	unsigned char *p = host_populated(n);
	struct hetmm_machine *m;
	struct mm_struct *mm;
	double best = 1e30;

	res->peer = kernel_fork_ns(n);
	munmap(p, n * PAGE_SIZE);

	m = bench_proc_machine(256ULL << 20);
	mm = bench_process(m);
	ours_populated(mm, n);
	for (int r = 0; r < REPS; r++) {
		uint64_t t0 = now_ns();
		struct mm_struct *child = hetmm_fork(mm);

		if (IS_ERR(child))
			bench_fail("hetmm_fork", PTR_ERR(child));
		hetmm_exit(child);
		double t = (double)(now_ns() - t0) / (double)n;

		best = min(best, t);
	}
	hetmm_exit(mm);
	hetmm_machine_destroy(m);
	res->ours = best;
	res->unit = "ns/page";
	res->peer_name = "kernel: fork() + child _exit() + waitpid()";
	res->note = "target: ratio <= 0.6; per page of populated anon memory";
}

enum unmap_kind { UNMAP_MUNMAP, UNMAP_DONTNEED, UNMAP_MPROTECT };

/* munmap, MADV_DONTNEED, or mprotect RW->RO->RW of populated memory. */
static void bench_unmap(const struct bench_opts *o, struct bench_result *res,
			enum unmap_kind kind)
{
	unsigned long n = proc_pages(o);
	size_t len = n * PAGE_SIZE;
	struct hetmm_machine *m = bench_proc_machine(256ULL << 20);
	struct mm_struct *mm = bench_process(m);
	unsigned char *p = kind == UNMAP_MUNMAP ? NULL : host_populated(n);
	long a = kind == UNMAP_MUNMAP ? 0 : ours_populated(mm, n);
	double best_ours = 1e30, best_peer = 1e30;

	for (int r = 0; r < REPS; r++) {
		uint64_t t0, t1;
		int ret = 0;

		/* Set up (untimed): populated memory on both sides. */
		if (kind == UNMAP_MUNMAP) {
			a = ours_populated(mm, n);
			p = host_populated(n);
		} else if (kind == UNMAP_DONTNEED) {
			for (unsigned long i = 0; i < n && !ret; i++)
				ret = hetmm_cpu_write(mm, 0, a + i * PAGE_SIZE,
						      &i, 1);
			host_touch(p, n);
		}
		t0 = now_ns();
		if (kind == UNMAP_MUNMAP) {
			ret |= hetmm_munmap(mm, a, len);
		} else if (kind == UNMAP_DONTNEED) {
			ret |= hetmm_madvise(mm, a, len, MADV_DONTNEED);
		} else {
			ret |= hetmm_mprotect(mm, a, len, PROT_READ);
			ret |= hetmm_mprotect(mm, a, len,
					      PROT_READ | PROT_WRITE);
		}
		t1 = now_ns();
		if (kind == UNMAP_MUNMAP) {
			munmap(p, len);
		} else if (kind == UNMAP_DONTNEED) {
			madvise(p, len, MADV_DONTNEED);
		} else {
			mprotect(p, len, PROT_READ);
			mprotect(p, len, PROT_READ | PROT_WRITE);
		}
		double tp = (double)(now_ns() - t1) / (double)n;
		double to = (double)(t1 - t0) / (double)n;

		if (ret)
			bench_fail("the operation", ret);
		best_ours = min(best_ours, to);
		best_peer = min(best_peer, tp);
	}
	if (kind != UNMAP_MUNMAP)
		munmap(p, len);
	hetmm_exit(mm);
	hetmm_machine_destroy(m);
	res->ours = best_ours;
	res->peer = best_peer;
	res->unit = "ns/page";
	switch (kind) {
	case UNMAP_MUNMAP:
		res->peer_name = "kernel: munmap of populated anon 4 KiB pages";
		res->note = "target: ratio <= 0.5";
		break;
	case UNMAP_DONTNEED:
		res->peer_name = "kernel: MADV_DONTNEED of populated anon 4 KiB pages";
		res->note = "target: ratio <= 0.5";
		break;
	case UNMAP_MPROTECT:
		res->peer_name = "kernel: mprotect RW->RO->RW of populated anon pages";
		res->note = "target: ratio <= 0.6; both calls, per page";
		break;
	}
}

static void bench_munmap(const struct bench_opts *o, struct bench_result *r)
{
	bench_unmap(o, r, UNMAP_MUNMAP);
}

static void bench_dontneed(const struct bench_opts *o, struct bench_result *r)
{
	bench_unmap(o, r, UNMAP_DONTNEED);
}

static void bench_mprotect(const struct bench_opts *o, struct bench_result *r)
{
	bench_unmap(o, r, UNMAP_MPROTECT);
}

/*
 * scale2: write faults on disjoint halves of one process by simulated
 * CPUs 0 and 1 on two host threads, against one thread doing all of it.
 * The threads live across repetitions, meet at barriers and time
 * themselves: a repetition lasts from the first start to the last end.
 *
 * Two shapes, each also run by the kernel on a host mapping:
 *  - hot (the headline): each thread faults a window of SCALE_WINDOW
 *    pages, then MADV_DONTNEEDs it, again and again. The frames come back
 *    from the per-thread page lists still in cache, as they do in a busy
 *    kernel, so the figure shows how the fault path itself scales: the
 *    locks, counters and cache lines two CPUs share.
 *  - cold: first touch of a fresh 128 MiB range, as one pass. Every fault
 *    zeroes a cache-cold page, so the host's memory bandwidth bounds the
 *    scaling; the note gives memset's own two-thread scaling over as many
 *    cold pages, measured by the same threads, as that bound.
 */
#define SCALE_WINDOW 64UL /* pages: 256 KiB, cache-resident for both CPUs */

enum scale_what {
	SCALE_OURS_HOT,
	SCALE_KERNEL_HOT,
	SCALE_OURS,
	SCALE_KERNEL,
	SCALE_ZERO,
	NR_SCALE
};

struct scale_ctx {
	struct mm_struct *mm;
	pthread_barrier_t start, done;
	long addr;            /* ours */
	unsigned char *host;  /* the kernel's */
	unsigned char *zero;  /* populated host pages for SCALE_ZERO */
	unsigned long n;      /* pages in the range */
	unsigned int workers; /* 1 or 2 this repetition; 0 = quit */
	enum scale_what what;
	int err;
};

struct scale_thread {
	struct scale_ctx *ctx;
	unsigned int id;
	uint64_t t0, t1;
};

/* Write-fault @n pages from @a on simulated CPU @cpu. */
static int scale_ours(struct mm_struct *mm, unsigned int cpu, long a,
		      unsigned long n)
{
	int err = 0;

	for (unsigned long i = 0; i < n; i++) {
		int ret = hetmm_cpu_write(mm, cpu, a + (long)(i * PAGE_SIZE),
					  &i, 8);

		if (ret)
			err = ret;
	}
	return err;
}

static void scale_work(struct scale_ctx *c, unsigned int id)
{
	unsigned long per = c->n / c->workers;
	unsigned long rounds = per / SCALE_WINDOW;
	long base = c->addr + (long)(id * per * PAGE_SIZE);
	unsigned char *host = c->host + id * per * PAGE_SIZE;
	unsigned char *z = c->zero + id * per * PAGE_SIZE;
	int ret;

	switch (c->what) {
	case SCALE_OURS_HOT:
		for (unsigned long r = 0; r < rounds; r++) {
			ret = scale_ours(c->mm, id, base, SCALE_WINDOW);
			if (!ret)
				ret = hetmm_madvise(c->mm, base,
						    SCALE_WINDOW * PAGE_SIZE,
						    MADV_DONTNEED);
			if (ret)
				c->err = ret;
		}
		break;
	case SCALE_KERNEL_HOT:
		for (unsigned long r = 0; r < rounds; r++) {
			host_touch(host, SCALE_WINDOW);
			madvise(host, SCALE_WINDOW * PAGE_SIZE, MADV_DONTNEED);
		}
		break;
	case SCALE_OURS:
		ret = scale_ours(c->mm, id, base, per);
		if (ret)
			c->err = ret;
		break;
	case SCALE_KERNEL:
		host_touch(host, per);
		break;
	case SCALE_ZERO:
		for (unsigned long i = 0; i < per; i++) {
			memset(z + i * PAGE_SIZE, 0, PAGE_SIZE);
			__asm__ volatile("" : : "r"(z) : "memory");
		}
		break;
	case NR_SCALE:
		break;
	}
}

static void *scale_fn(void *arg)
{
	struct scale_thread *t = arg;
	struct scale_ctx *c = t->ctx;

	for (;;) {
		pthread_barrier_wait(&c->start);
		if (!c->workers)
			return NULL;
		if (t->id < c->workers) {
			t->t0 = now_ns();
			scale_work(c, t->id);
			t->t1 = now_ns();
		}
		pthread_barrier_wait(&c->done);
	}
}

/* One repetition; returns pages per microsecond. */
static double scale_rep(struct scale_ctx *c, struct scale_thread *th,
			unsigned int workers, enum scale_what what)
{
	size_t len = c->n * PAGE_SIZE;
	bool kernel = what == SCALE_KERNEL || what == SCALE_KERNEL_HOT;
	bool ours = what == SCALE_OURS || what == SCALE_OURS_HOT;
	uint64_t t0 = UINT64_MAX, t1 = 0;

	c->what = what;
	if (kernel) {
		c->host = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (c->host == MAP_FAILED) {
			perror("hetmm: bench: mmap");
			exit(1);
		}
		madvise(c->host, len, MADV_NOHUGEPAGE);
	} else if (ours) {
		c->addr = hetmm_mmap(c->mm, 0, len, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (c->addr < 0)
			bench_fail("hetmm_mmap", c->addr);
	}
	c->workers = workers;
	pthread_barrier_wait(&c->start);
	pthread_barrier_wait(&c->done);
	for (unsigned int i = 0; i < workers; i++) {
		t0 = min(t0, th[i].t0);
		t1 = max(t1, th[i].t1);
	}
	if (ours)
		hetmm_munmap(c->mm, c->addr, len);
	else if (kernel)
		munmap(c->host, len);
	if (c->err)
		bench_fail("hetmm_cpu_write", c->err);
	return (double)c->n / ((double)(t1 - t0) / 1000.0);
}

static void bench_scale2(const struct bench_opts *o, struct bench_result *res)
{
	static char note[320];
	struct hetmm_machine *m = bench_proc_machine(256ULL << 20);
	struct scale_ctx c = { .mm = bench_process(m) };
	struct scale_thread th[2];
	pthread_t tid[2];
	double best[NR_SCALE][2] = { { 0 } }; /* [what][workers - 1] */

	c.n = o->quick ? 8192 : 32768;
	c.zero = host_populated(c.n);
	pthread_barrier_init(&c.start, NULL, 3);
	pthread_barrier_init(&c.done, NULL, 3);
	for (unsigned int i = 0; i < 2; i++) {
		th[i] = (struct scale_thread){ .ctx = &c, .id = i };
		pthread_create(&tid[i], NULL, scale_fn, &th[i]);
	}
	for (int r = 0; r < 4 * NR_SCALE * REPS; r++) {
		/* Alternate 2,1,1,2 so neither always goes first. */
		unsigned int workers = ((r & 1) ^ ((r >> 1) & 1)) ? 1 : 2;
		enum scale_what what = (enum scale_what)((r >> 2) % NR_SCALE);
		double tput = scale_rep(&c, th, workers, what);

		best[what][workers - 1] = max(best[what][workers - 1], tput);
	}
	c.workers = 0;
	pthread_barrier_wait(&c.start);
	for (unsigned int i = 0; i < 2; i++)
		pthread_join(tid[i], NULL);
	pthread_barrier_destroy(&c.start);
	pthread_barrier_destroy(&c.done);
	hetmm_exit(c.mm);
	hetmm_machine_destroy(m);
	res->ours = best[SCALE_OURS_HOT][1];
	res->peer = best[SCALE_OURS_HOT][0];
	res->unit = "pages/us";
	res->peer_name = "one thread faulting the same pages (throughput ratio)";
	snprintf(note, sizeof(note),
		 "target: ratio >= 1.7; simulated CPUs 0 and 1 on two host "
		 "threads, fault + MADV_DONTNEED of %lu-page windows; kernel "
		 "on the same: %.2f. Cold first touch of %lu MiB: ours %.2f, "
		 "kernel %.2f, memset of as many cold pages (the bandwidth "
		 "bound) %.2f",
		 SCALE_WINDOW,
		 best[SCALE_KERNEL_HOT][1] / best[SCALE_KERNEL_HOT][0],
		 c.n * PAGE_SIZE >> 20,
		 best[SCALE_OURS][1] / best[SCALE_OURS][0],
		 best[SCALE_KERNEL][1] / best[SCALE_KERNEL][0],
		 best[SCALE_ZERO][1] / best[SCALE_ZERO][0]);
	munmap(c.zero, c.n * PAGE_SIZE);
	res->note = note;
}

/*
 * thp: a first-touch write fault that installs a 2 MiB THP (MADV_HUGEPAGE
 * region) through hetmm_cpu_write, mmap/madvise/munmap included. Peer (the
 * issue's target): memset of 2 MiB, over as many distinct 2 MiB chunks of
 * host memory (faulted in beforehand) as our faults zero, so neither side
 * runs from cache. The note also gives the kernel's own THP first touch.
 */
static void bench_thp(const struct bench_opts *o, struct bench_result *res)
{
	static char note[200];
	struct hetmm_machine *m = bench_proc_machine(256ULL << 20);
	struct mm_struct *mm = bench_process(m);
	unsigned long n = o->quick ? 16 : 64;
	size_t len = n * HPAGE_PMD_SIZE;
	double best_ours = 1e30, best_peer = 1e30, best_kernel = 1e30;
	unsigned char *buf = aligned_alloc(HPAGE_PMD_SIZE, len);
	struct hetmm_stats s0, s1;
	uint64_t thp = 0;

	if (!buf) {
		perror("hetmm: bench: aligned_alloc");
		exit(1);
	}
	memset(buf, 1, len);
	for (int r = 0; r < REPS; r++) {
		uint64_t t0, t1, t2, t3;
		unsigned char *raw, *p;
		long a;

		hetmm_stats_read(&s0);
		t0 = now_ns();
		a = hetmm_mmap(mm, 0, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (a < 0)
			bench_fail("hetmm_mmap", a);
		hetmm_madvise(mm, a, len, MADV_HUGEPAGE);
		for (unsigned long i = 0; i < n; i++)
			hetmm_cpu_write(mm, 0, a + i * HPAGE_PMD_SIZE, &i, 1);
		hetmm_munmap(mm, a, len);
		t1 = now_ns();
		hetmm_stats_read(&s1);
		thp += s1.v[HETMM_STAT_thp_fault_alloc] -
		       s0.v[HETMM_STAT_thp_fault_alloc];
		/* memset of 2 MiB, as many times. */
		t2 = now_ns();
		for (unsigned long i = 0; i < n; i++) {
			memset(buf + i * HPAGE_PMD_SIZE, (int)i, HPAGE_PMD_SIZE);
			__asm__ volatile("" : : "r"(buf) : "memory");
		}
		t3 = now_ns();
		/* The kernel's THP first touch, aligned by hand. */
		raw = mmap(NULL, len + HPAGE_PMD_SIZE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (raw == MAP_FAILED) {
			perror("hetmm: bench: mmap");
			exit(1);
		}
		p = (unsigned char *)ALIGN((uintptr_t)raw, HPAGE_PMD_SIZE);
		madvise(p, len, MADV_HUGEPAGE);
		for (unsigned long i = 0; i < n; i++)
			p[i * HPAGE_PMD_SIZE] = (unsigned char)i;
		munmap(raw, len + HPAGE_PMD_SIZE);
		best_ours = min(best_ours, (double)(t1 - t0) / (double)n);
		best_peer = min(best_peer, (double)(t3 - t2) / (double)n);
		best_kernel = min(best_kernel,
				  (double)(now_ns() - t3) / (double)n);
	}
	free(buf);
	hetmm_exit(mm);
	hetmm_machine_destroy(m);
	res->ours = best_ours;
	res->peer = best_peer;
	res->unit = "ns/2MiB";
	res->peer_name = "memset of 2 MiB";
	snprintf(note, sizeof(note),
		 "%llu of %lu of our faults installed a THP; kernel THP first touch %.0f ns/2MiB (ours/kernel %.3f)",
		 (unsigned long long)thp, n * REPS, best_kernel,
		 best_ours / best_kernel);
	res->note = note;
}

/*
 * An 8-byte hetmm_cpu_read that hits the TLB (a warm loop over a few
 * pages). Peer: an 8-byte memcpy from host memory at the same offsets.
 */
static void bench_read8(const struct bench_opts *o, struct bench_result *res)
{
	enum { NP = 16 };
	struct hetmm_machine *m = bench_proc_machine(64ULL << 20);
	struct mm_struct *mm = bench_process(m);
	unsigned long n = o->quick ? 1000000 : 10000000;
	long a = ours_populated(mm, NP);
	unsigned char *host = host_populated(NP);
	struct hetmm_stats s0, s1;
	double best_ours = 1e30, best_peer = 1e30;
	uint64_t v = 0, acc = 0;

	hetmm_stats_read(&s0);
	for (int r = 0; r < REPS; r++) {
		uint64_t t0 = now_ns();

		for (unsigned long i = 0; i < n; i++) {
			hetmm_cpu_read(mm, 0, a + (i % NP) * PAGE_SIZE + 64,
				       &v, 8);
			acc += v;
		}
		uint64_t t1 = now_ns();

		for (unsigned long i = 0; i < n; i++) {
			memcpy(&v, host + (i % NP) * PAGE_SIZE + 64, 8);
			__asm__ volatile("" : : "r"(&v) : "memory");
			acc += v;
		}
		uint64_t t2 = now_ns();

		best_ours = min(best_ours, (double)(t1 - t0) / (double)n);
		best_peer = min(best_peer, (double)(t2 - t1) / (double)n);
	}
	hetmm_stats_read(&s1);
	sink = (unsigned char)acc;
	munmap(host, NP * PAGE_SIZE);
	hetmm_exit(mm);
	hetmm_machine_destroy(m);
	res->ours = best_ours;
	res->peer = best_peer;
	res->unit = "ns/read";
	res->peer_name = "memcpy of 8 bytes from host memory";
	res->note = s1.v[HETMM_STAT_tlb_miss] == s0.v[HETMM_STAT_tlb_miss] ?
			    "target: ours <= 10 ns; every read hit the TLB" :
			    "target: ours <= 10 ns; some reads missed the TLB";
}

static const struct bench benches[] = {
	{ "alloc", "order-0 alloc_pages + __free_pages", bench_alloc0 },
	{ "alloc9", "order-9 (2 MiB) folio alloc + free", bench_alloc9 },
	{ "zero", "clear_highpage (4 KiB) vs memset", bench_zero4k },
	{ "zero2m", "folio_zero of a 2 MiB folio vs memset", bench_zero2m },
	{ "copy", "copy_highpage (4 KiB) vs memcpy", bench_copy4k },
	{ "copy2m", "folio_mc_copy of a 2 MiB folio vs memcpy", bench_copy2m },
	{ "memmap", "host memory of a 1 TiB metadata-only machine", bench_memmap },
	{ "fault", "first-touch 4 KiB write fault vs the kernel's", bench_fault },
	{ "cow", "COW write fault after fork vs the kernel's", bench_cow },
	{ "munmap", "munmap of populated memory vs the kernel's", bench_munmap },
	{ "dontneed", "MADV_DONTNEED of populated memory vs the kernel's",
	  bench_dontneed },
	{ "mprotect", "mprotect RW->RO->RW of populated memory vs the kernel's",
	  bench_mprotect },
	{ "fork", "fork + child exit of a populated process vs the kernel's",
	  bench_fork },
	{ "scale2", "write faults on 2 CPU threads vs 1 (throughput)",
	  bench_scale2 },
	{ "thp", "first-touch 2 MiB THP write fault vs memset of 2 MiB", bench_thp },
	{ "read8", "8-byte hetmm_cpu_read hitting the TLB vs memcpy", bench_read8 },
	{ "hmmsnap", "hmm_range_fault snapshot of populated memory vs pagemap",
	  bench_hmmsnap },
	{ "migrate", "4 KiB pages system -> device -> system vs memcpy",
	  bench_migrate4k },
	{ "migrate2m", "2 MiB folios system -> device -> system vs memcpy",
	  bench_migrate2m },
	{ "devfault", "CPU fault on a device-private page (migrate_to_ram)",
	  bench_devfault },
	{ "gup4k", "get_user_pages_fast + put_page, 4 KiB pages", bench_gup4k },
	{ "gup2m", "get_user_pages_fast + put_page, THP-backed", bench_gup2m },
	{ "pin4k", "pin_user_pages_fast + unpin vs io_uring buffer registration",
	  bench_pin4k },
	{ "pin2m", "pin_user_pages_fast + unpin, THP-backed, vs io_uring",
	  bench_pin2m },
	{ "pinlt4k", "pin_user_pages(FOLL_LONGTERM) under mmap_lock + unpin",
	  bench_pinlt4k },
	{ "pinlt2m", "pin_user_pages(FOLL_LONGTERM) + unpin, THP-backed",
	  bench_pinlt2m },
	{ "rfolio4k", "pin_user_pages_ranges, folio runs, + unpin, 4 KiB pages",
	  bench_rfolio4k },
	{ "rfolio2m", "pin_user_pages_ranges, folio runs, + unpin, THP-backed",
	  bench_rfolio2m },
	{ "rphys4k", "pin_user_pages_ranges, phys runs, + unpin, 4 KiB pages",
	  bench_rphys4k },
	{ "rphys2m", "pin_user_pages_ranges, phys runs, + unpin, THP-backed",
	  bench_rphys2m },
	{ "rpfn4k", "pin_user_pages_ranges, packed PFNs, + unpin, 4 KiB pages",
	  bench_rpfn4k },
	{ "rpfn2m", "pin_user_pages_ranges, packed PFNs, + unpin, THP-backed",
	  bench_rpfn2m },
};

bool bench_exists(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(benches); i++)
		if (!strcmp(benches[i].name, name))
			return true;
	return false;
}

void bench_list(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(benches); i++)
		printf("  %-10s %s\n", benches[i].name, benches[i].summary);
}

int bench_main(const struct bench_opts *o, const char *const *names, int n)
{
	if (!o->json)
		printf("%-8s %-9s %12s %12s %8s  %s\n", "bench", "unit", "ours",
		       "peer", "ratio", "peer / note");
	for (size_t i = 0; i < ARRAY_SIZE(benches); i++) {
		struct bench_result res = { 0 };
		bool want = n == 0;

		for (int k = 0; k < n; k++)
			if (!strcmp(names[k], benches[i].name))
				want = true;
		if (!want)
			continue;
		benches[i].fn(o, &res);
		double ratio = res.peer > 0 ? res.ours / res.peer : 0;

		if (o->json) {
			printf("{\"bench\":");
			json_string(stdout, benches[i].name);
			printf(",\"unit\":");
			json_string(stdout, res.unit);
			printf(",\"ours\":%.4g,\"peer\":%.4g,\"peer_name\":",
			       res.ours, res.peer);
			json_string(stdout, res.peer_name);
			printf(",\"ratio\":%.4g}\n", ratio);
		} else {
			printf("%-8s %-9s %12.2f %12.2f %8.3f  %s\n",
			       benches[i].name, res.unit, res.ours, res.peer,
			       ratio, res.peer_name);
			if (res.note)
				printf("%-8s %-9s %12s %12s %8s  (%s)\n", "", "",
				       "", "", "", res.note);
		}
		fflush(stdout);
	}
	return 0;
}
