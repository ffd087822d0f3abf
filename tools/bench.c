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
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <hetmm/hetmm.h>
#include <hetmm/uapi.h>

#include "cli.h"

#define REPS 7

struct bench_result {
	const char *unit;
	double ours, peer;
	const char *peer_name;
	const char *note;
};

struct bench {
	const char *name;
	const char *summary;
	void (*fn)(const struct bench_opts *o, struct bench_result *res);
};

static volatile unsigned char sink;

static struct hetmm_machine *bench_machine(uint64_t ram, bool data)
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

static void *map_anon(size_t bytes, bool huge)
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
static double kernel_fault_free_ns(unsigned char *buf, size_t len,
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
	struct hetmm_machine *m = bench_machine(256ULL << 20, true);
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

/* An 8-byte hetmm_cpu_read of a mapped page (no software TLB yet: this
 * is the page-walk path). Peer: an 8-byte memcpy. */
static void bench_read8(const struct bench_opts *o, struct bench_result *res)
{
	struct hetmm_machine *m = bench_machine(64ULL << 20, true);
	struct mm_struct *mm = hetmm_process_create(m);
	unsigned long n = o->quick ? 200000 : 2000000;
	long a = hetmm_mmap(mm, 0, 64 * PAGE_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	uint64_t v = 0, src[64];
	double best_ours = 1e30, best_peer = 1e30;

	memset(src, 1, sizeof(src));
	for (int r = 0; r < REPS; r++) {
		uint64_t t0 = now_ns();

		for (unsigned long i = 0; i < n; i++)
			hetmm_cpu_read(mm, 0, a + (i & 63) * PAGE_SIZE, &v, 8);
		uint64_t t1 = now_ns();

		for (unsigned long i = 0; i < n; i++) {
			memcpy(&v, &src[i & 63], 8);
			__asm__ volatile("" : : "r"(&v) : "memory");
		}
		uint64_t t2 = now_ns();

		best_ours = min(best_ours, (double)(t1 - t0) / (double)n);
		best_peer = min(best_peer, (double)(t2 - t1) / (double)n);
	}
	sink = (unsigned char)v;
	hetmm_exit(mm);
	hetmm_machine_destroy(m);
	res->ours = best_ours;
	res->peer = best_peer;
	res->unit = "ns/read";
	res->peer_name = "memcpy of 8 bytes";
	res->note = "target (with the TLB, not built yet): ours <= 10 ns";
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
	{ "read8", "8-byte hetmm_cpu_read of a mapped page", bench_read8 },
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
