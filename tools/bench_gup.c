// SPDX-License-Identifier: MIT
/*
 * bench_gup.c - pinning benchmarks in the manner of the kernel's gup_test:
 * GUP_FAST (get_user_pages_fast + put_page), PIN_FAST (pin_user_pages_fast
 * + unpin_user_pages), PIN_LONGTERM (pin_user_pages with FOLL_LONGTERM
 * under mmap_lock + unpin_user_pages) and the range outputs of
 * pin_user_pages_ranges() (folio runs, physical runs, packed PFNs, each
 * released with unpin_user_ranges()), over populated 4 KiB-backed memory
 * and over THP-backed memory, at several pages per call.
 *
 * The peer is the kernel pinning the same amount of populated host memory
 * long-term: io_uring fixed-buffer registration (IORING_REGISTER_BUFFERS
 * pins each iovec with FOLL_WRITE | FOLL_LONGTERM) and its unregistration,
 * one iovec per call of ours, so both sides make as many pin requests of
 * the same size.
 *
 * A pass pins the whole range, call by call, holding every pin, then
 * releases them all (as gup_test, and as a registration does); the time
 * of a pass divided by its pages (4 KiB) or folios (THP) is the figure.
 * Each pass size is measured 2 * REPS times, ours and the peer
 * alternating which goes first; the fastest of each counts. A sample of
 * ours repeats its pass for at least SAMPLE_NS (at most MAX_INNER times)
 * and keeps the fastest pass, so a pass of a few microseconds (the THP
 * range outputs) is seen about as long as the peer's registration. The
 * row shows the largest batch; the note shows the sweep.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <hetmm/gup.h>
#include <hetmm/hetmm.h>
#include <hetmm/mm.h>
#include <hetmm/uapi.h>

#include "bench.h"

#if __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#else
/* The two opcodes and the setup parameters we use (the kernel's ABI). */
#define IORING_REGISTER_BUFFERS 0
#define IORING_UNREGISTER_BUFFERS 1
struct io_uring_params {
	uint32_t sq_entries, cq_entries, flags, sq_thread_cpu;
	uint32_t sq_thread_idle, features, wq_fd, resv[3];
	uint64_t sq_off[5], cq_off[5];
};
#endif

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

/* The kernel's limits on a registration (IORING_MAX_REG_BUFFERS, SZ_1G). */
#define URING_MAX_IOVECS 16384U
#define URING_MAX_IOV_LEN (1UL << 30)

/* What io_uring registers for us: FOLL_WRITE | FOLL_LONGTERM pins. */
#define PIN_FLAGS (FOLL_WRITE | FOLL_LONGTERM)

enum gup_mode {
	GUP_FAST, /* get_user_pages_fast + put_page */
	PIN_FAST, /* pin_user_pages_fast + unpin_user_pages */
	PIN_LONGTERM, /* mmap_lock, pin_user_pages(LONGTERM) + unpin */
	RANGES_FOLIO, /* pin_user_pages_ranges(FOLIO) + unpin_user_ranges */
	RANGES_PHYS, /* ... GUP_RANGE_PHYS */
	RANGES_PFN, /* ... GUP_RANGE_PFN */
};

static const char *const mode_name[] = {
	[GUP_FAST] = "get_user_pages_fast + put_page",
	[PIN_FAST] = "pin_user_pages_fast + unpin_user_pages",
	[PIN_LONGTERM] = "pin_user_pages(LONGTERM) + unpin_user_pages",
	[RANGES_FOLIO] = "ranges (folio runs) + unpin_user_ranges",
	[RANGES_PHYS] = "ranges (phys runs) + unpin_user_ranges",
	[RANGES_PFN] = "ranges (packed PFNs) + unpin_user_ranges",
};

/*
 * Pages per call: 4 KiB-backed in pages, THP-backed in 2 MiB folios (the
 * last one is the whole range, gup_test's default; capped to the range).
 */
static const unsigned long batch_4k[] = { 1, 32, 512 };
static const unsigned long batch_2m[] = { 1, 8, 64 };
#define NR_BATCHES 3

/* ------------------------------------------------------------ the peer */

struct uring_peer {
	int fd; /* < 0: unavailable */
	char why[128]; /* why not, for the row */
};

static void uring_open(struct uring_peer *u)
{
	struct io_uring_params p;
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	FILE *f;
	int disabled = 0;

	memset(&p, 0, sizeof(p));
	u->why[0] = 0;
	f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
	if (f) {
		if (fscanf(f, "%d", &disabled) != 1)
			disabled = 0;
		fclose(f);
	}
	/* Registered buffers count against RLIMIT_MEMLOCK without
	 * CAP_IPC_LOCK; raise it where we may (root), ignore if not. */
	setrlimit(RLIMIT_MEMLOCK, &rl);
	u->fd = (int)syscall(__NR_io_uring_setup, 4U, &p);
	if (u->fd < 0)
		snprintf(u->why, sizeof(u->why),
			 "io_uring unavailable: %s (io_uring_disabled=%d)",
			 strerror(errno), disabled);
}

static void uring_close(struct uring_peer *u)
{
	if (u->fd >= 0)
		close(u->fd);
}

/*
 * Register @nr iovecs and unregister them. Return: the nanoseconds, or -1
 * (the peer becomes unavailable, with the reason).
 */
static double uring_pass(struct uring_peer *u, const struct iovec *iov,
			 unsigned int nr)
{
	uint64_t t0, t1;
	long ret;

	if (u->fd < 0)
		return -1;
	t0 = now_ns();
	ret = syscall(__NR_io_uring_register, u->fd, IORING_REGISTER_BUFFERS,
		      iov, nr);
	if (ret < 0) {
		struct rlimit rl;
		int err = errno;

		getrlimit(RLIMIT_MEMLOCK, &rl);
		snprintf(u->why, sizeof(u->why),
			 "io_uring IORING_REGISTER_BUFFERS failed: %s "
			 "(RLIMIT_MEMLOCK %llu KiB)",
			 strerror(err), (unsigned long long)rl.rlim_cur >> 10);
		uring_close(u);
		u->fd = -1;
		return -1;
	}
	ret = syscall(__NR_io_uring_register, u->fd, IORING_UNREGISTER_BUFFERS,
		      NULL, 0);
	t1 = now_ns();
	if (ret < 0) {
		snprintf(u->why, sizeof(u->why),
			 "io_uring IORING_UNREGISTER_BUFFERS failed: %s",
			 strerror(errno));
		uring_close(u);
		u->fd = -1;
		return -1;
	}
	return (double)(t1 - t0);
}

/* AnonHugePages of the host mappings overlapping [@p, @p + @len), bytes. */
static unsigned long host_anon_huge(const void *p, size_t len)
{
	unsigned long lo = (unsigned long)p, hi = lo + len, kb = 0, s, e, v;
	bool in = false;
	char line[256];
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		/* A mapping's header line, or one of its fields. */
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2)
			in = s < hi && e > lo;
		else if (in && sscanf(line, "AnonHugePages: %lu kB", &v) == 1)
			kb += v;
	}
	fclose(f);
	return kb << 10;
}

/* The host's THP mode: the bracketed word of .../enabled, or "unknown". */
static void host_thp_mode(char *buf, size_t size)
{
	char line[128], *a, *b;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");

	snprintf(buf, size, "unknown");
	if (!f)
		return;
	if (fgets(line, sizeof(line), f) && (a = strchr(line, '[')) &&
	    (b = strchr(a, ']'))) {
		*b = 0;
		snprintf(buf, size, "%s", a + 1);
	}
	fclose(f);
}

/* ------------------------------------------------------------- ours */

struct gup_bench {
	enum gup_mode mode;
	bool huge;
	struct hetmm_machine *m;
	struct mm_struct *mm;
	unsigned long addr; /* our range, 2 MiB aligned */
	unsigned long npages; /* its pages */
	unsigned long batch; /* pages per call, this sweep point */
	struct page **pages; /* npages entries */
	struct gup_range_output *outs; /* one per call */
	void **bufs; /* the output pages, GUP_RANGE_BUF_SIZE each */
	unsigned char *pool; /* their memory */
	size_t pool_size;
	unsigned char *host; /* the peer's range, as many bytes */
	struct iovec *iov; /* one per call */
};

/* Each sample of ours runs passes for this long, at most MAX_INNER. */
#define SAMPLE_NS 100000ULL
#define MAX_INNER 256UL

/* Output pages a call of @n pages needs, so that it never stops short. */
static unsigned long range_bufs(enum gup_mode mode, unsigned long n)
{
	unsigned long worst =
		mode == RANGES_PFN ?
			n * sizeof(uint64_t) + 2 * sizeof(uint64_t) :
			n * sizeof(struct phys_vec);

	return DIV_ROUND_UP(worst, GUP_RANGE_BUF_SIZE);
}

/* Outputs for the calls of one sweep point (range modes only). */
static void ranges_prepare(struct gup_bench *b)
{
	unsigned long calls = b->npages / b->batch;
	unsigned long per = range_bufs(b->mode, b->batch);
	size_t size = calls * per * GUP_RANGE_BUF_SIZE;

	free(b->outs);
	free(b->bufs);
	if (b->pool)
		munmap(b->pool, b->pool_size);
	b->outs = calloc(calls, sizeof(*b->outs));
	b->bufs = calloc(calls * per, sizeof(*b->bufs));
	b->pool = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	b->pool_size = size;
	if (!b->outs || !b->bufs || b->pool == MAP_FAILED)
		bench_fail("allocating range outputs", -ENOMEM);
	for (unsigned long i = 0; i < calls * per; i++)
		b->bufs[i] = b->pool + i * GUP_RANGE_BUF_SIZE;
	for (unsigned long c = 0; c < calls; c++) {
		b->outs[c].bufs = b->bufs + c * per;
		b->outs[c].nr_bufs = (unsigned int)per;
		b->outs[c].format = b->mode == RANGES_FOLIO ? GUP_RANGE_FOLIO :
				    b->mode == RANGES_PHYS  ? GUP_RANGE_PHYS :
							      GUP_RANGE_PFN;
	}
}

static long ours_call(struct gup_bench *b, unsigned long c)
{
	unsigned long addr = b->addr + c * b->batch * PAGE_SIZE;
	struct page **pages = b->pages + c * b->batch;
	int n = (int)b->batch;
	long got;

	switch (b->mode) {
	case GUP_FAST:
		return get_user_pages_fast(b->mm, addr, n, FOLL_WRITE, pages);
	case PIN_FAST:
		return pin_user_pages_fast(b->mm, addr, n, PIN_FLAGS, pages);
	case PIN_LONGTERM:
		mmap_read_lock(b->mm);
		got = pin_user_pages(b->mm, addr, b->batch, PIN_FLAGS, pages);
		mmap_read_unlock(b->mm);
		return got;
	default:
		return pin_user_pages_ranges(b->mm, addr, b->batch, PIN_FLAGS,
					     &b->outs[c]);
	}
}

static void ours_release(struct gup_bench *b, unsigned long c)
{
	struct page **pages = b->pages + c * b->batch;

	switch (b->mode) {
	case GUP_FAST:
		for (unsigned long i = 0; i < b->batch; i++)
			put_page(pages[i]);
		break;
	case PIN_FAST:
	case PIN_LONGTERM:
		unpin_user_pages(pages, b->batch);
		break;
	default:
		unpin_user_ranges(&b->outs[c], false);
		break;
	}
}

/* One pass over the range: pin it call by call, then release it all. */
static __noinline uint64_t ours_pass(struct gup_bench *b)
{
	unsigned long calls = b->npages / b->batch;
	uint64_t t0 = now_ns();

	for (unsigned long c = 0; c < calls; c++) {
		long got = ours_call(b, c);

		if (got != (long)b->batch)
			bench_fail(mode_name[b->mode], got);
	}
	for (unsigned long c = 0; c < calls; c++)
		ours_release(b, c);
	return now_ns() - t0;
}

/* ------------------------------------------------------------ set-up */

/* Our populated range: 4 KiB pages, or one PMD-mapped THP per 2 MiB. */
static void ours_populate(struct gup_bench *b)
{
	size_t len = b->npages * PAGE_SIZE;
	long raw = hetmm_mmap(b->mm, 0, len + PMD_SIZE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret;

	if (raw < 0)
		bench_fail("hetmm_mmap", raw);
	b->addr = ALIGN((unsigned long)raw, PMD_SIZE);
	ret = hetmm_madvise(b->mm, b->addr, len,
			    b->huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	if (ret)
		bench_fail("hetmm_madvise", ret);
	for (unsigned long i = 0; i < b->npages; i++) {
		ret = hetmm_cpu_write(b->mm, 0, b->addr + i * PAGE_SIZE, &i, 1);
		if (ret)
			bench_fail("hetmm_cpu_write", ret);
	}
}

/*
 * Check the backing once: with @huge, every 2 MiB is one PMD-mapped
 * order-9 folio; without, every 2 MiB is a page table. Fails the bench.
 */
static void ours_verify(struct gup_bench *b)
{
	unsigned long bad = 0;

	mmap_read_lock(b->mm);
	for (unsigned long a = b->addr; a < b->addr + b->npages * PAGE_SIZE;
	     a += PMD_SIZE) {
		pmd_t *pmdp = mm_find_pmd(b->mm, a);
		pmd_t pmd = pmdp ? ptep_get(pmdp) : (pmd_t){ 0 };

		if (!b->huge) {
			bad += !pmdp || !pmd_table(pmd);
			continue;
		}
		if (!pmdp || !pmd_leaf(pmd) ||
		    folio_order(page_folio(pfn_to_page(b->m, pte_pfn(pmd)))) !=
			    PMD_ORDER)
			bad++;
	}
	mmap_read_unlock(b->mm);
	if (bad) {
		fprintf(stderr,
			"hetmm: bench: %lu of %lu 2 MiB ranges are not %s\n",
			bad, b->npages / HPAGE_PMD_NR,
			b->huge ? "one PMD-mapped 2 MiB folio" :
				  "mapped by a page table of 4 KiB pages");
		exit(1);
	}
}

/* The peer's populated host range, as many bytes, 2 MiB aligned. */
static void host_prepare(struct gup_bench *b)
{
	size_t len = b->npages * PAGE_SIZE;

	b->host = map_anon(len, b->huge);
	for (size_t off = 0; off < len; off += PAGE_SIZE)
		b->host[off] = 1;
}

/* The iovecs of one sweep point: one per call of ours. */
static unsigned int host_iovecs(struct gup_bench *b)
{
	unsigned long calls = b->npages / b->batch;

	if (calls > URING_MAX_IOVECS ||
	    b->batch * PAGE_SIZE > URING_MAX_IOV_LEN)
		bench_fail("io_uring iovec limits", -EINVAL);
	free(b->iov);
	b->iov = calloc(calls, sizeof(*b->iov));
	if (!b->iov)
		bench_fail("calloc", -ENOMEM);
	for (unsigned long c = 0; c < calls; c++) {
		b->iov[c].iov_base = b->host + c * b->batch * PAGE_SIZE;
		b->iov[c].iov_len = b->batch * PAGE_SIZE;
	}
	return (unsigned int)calls;
}

/* ------------------------------------------------------------ the bench */

struct sweep_point {
	unsigned long batch; /* in units: pages (4 KiB) or folios (THP) */
	double ours, peer; /* ns per unit; peer < 0: unavailable */
};

/*
 * Time one sweep point (@p->batch units of @unit pages per call): 2 * REPS
 * samples of a pass of ours and a registration of the peer, alternating
 * which goes first; the fastest of each, in ns per unit.
 */
static void measure_point(struct gup_bench *b, struct uring_peer *u,
			  struct sweep_point *p, unsigned long unit)
{
	unsigned long nunits = b->npages / unit;
	double best_ours = 1e30, best_peer = 1e30;
	unsigned long inner;
	unsigned int nr_iov;
	uint64_t t1;

	b->batch = p->batch * unit;
	if (b->mode >= RANGES_FOLIO)
		ranges_prepare(b);
	nr_iov = host_iovecs(b);
	/* Short passes run several times per sample (see the file comment). */
	t1 = max(ours_pass(b), (uint64_t)1);
	inner = min(MAX_INNER, max(1UL, (unsigned long)(SAMPLE_NS / t1)));
	for (int r = 0; r < 2 * REPS; r++) {
		double tp = 0;
		uint64_t t = UINT64_MAX;

		if (r & 1)
			tp = uring_pass(u, b->iov, nr_iov);
		/* Each pass timed alone; the fastest counts, as everywhere. */
		for (unsigned long i = 0; i < inner; i++)
			t = min(t, ours_pass(b));
		if (!(r & 1))
			tp = uring_pass(u, b->iov, nr_iov);
		best_ours = min(best_ours, (double)t / (double)nunits);
		if (tp >= 0)
			best_peer = min(best_peer, tp / (double)nunits);
	}
	p->ours = best_ours;
	p->peer = u->fd < 0 ? -1 : best_peer;
}

/* The note: the sweep, ours/kernel per unit, and the target if any. */
static void gup_note(char *note, size_t size, enum gup_mode mode, bool huge,
		     unsigned long mib, const char *thp, const char *unit,
		     const struct sweep_point *sw)
{
	int w = snprintf(
		note, size,
		"%s, %lu MiB%s; n %s per call, ours/kernel %s (ratio):",
		mode_name[mode], mib, thp, huge ? "2 MiB folios" : "pages",
		unit);

	for (int k = 0; k < NR_BATCHES; k++) {
		if (sw[k].peer > 0)
			w += snprintf(note + w, size - (size_t)w,
				      " n=%lu %.1f/%.1f (%.3f)", sw[k].batch,
				      sw[k].ours, sw[k].peer,
				      sw[k].ours / sw[k].peer);
		else
			w += snprintf(note + w, size - (size_t)w,
				      " n=%lu %.1f/-", sw[k].batch, sw[k].ours);
	}
	if (mode == PIN_FAST) {
		double lim = huge ? 0.5 : 0.4;
		int met = 0, known = 0;
		const char *verdict = "MISSED";

		for (int k = 0; k < NR_BATCHES; k++) {
			known += sw[k].peer > 0;
			met += sw[k].peer > 0 && sw[k].ours <= lim * sw[k].peer;
		}
		if (!known)
			verdict = "no peer";
		else if (thp[0])
			verdict = "not comparable (host not THP-backed)";
		else if (met == known)
			verdict = "met";
		snprintf(note + w, size - (size_t)w,
			 "; target: ratio <= %.1f: %s (%d of %d batch sizes)",
			 lim, verdict, met, known);
	} else if (mode >= RANGES_FOLIO && huge) {
		/* Per folio: judged where the per-call cost is spread over
		 * the whole range (the largest batch). */
		snprintf(note + w, size - (size_t)w,
			 "; target: ours <= 25 ns/2MiB at n=%lu: %s",
			 sw[NR_BATCHES - 1].batch,
			 sw[NR_BATCHES - 1].ours <= 25.0 ? "met" : "MISSED");
	} else {
		snprintf(note + w, size - (size_t)w, "; no target");
	}
}

static void gup_bench_run(const struct bench_opts *o, struct bench_result *res,
			  enum gup_mode mode, bool huge)
{
	static char note[480], peer_name[160];
	/* 4 KiB: 64 MiB (the kernel's 16384 iovecs at 1 page per call);
	 * THP: 128 MiB, 64 folios. */
	unsigned long mib = huge ? (o->quick ? 32 : 128) : (o->quick ? 8 : 64);
	unsigned long unit = huge ? HPAGE_PMD_NR : 1;
	struct gup_bench b = { .mode = mode, .huge = huge };
	struct sweep_point sw[NR_BATCHES];
	struct uring_peer u;
	unsigned long acq0, rel0, acq1, rel1;
	char thp[96] = "";
	size_t len;

	b.npages = mib << (20 - PAGE_SHIFT);
	len = b.npages * PAGE_SIZE;
	b.m = bench_proc_machine((uint64_t)len + (64ULL << 20));
	b.mm = bench_process(b.m);
	b.pages = calloc(b.npages, sizeof(*b.pages));
	if (!b.pages)
		bench_fail("calloc", -ENOMEM);
	ours_populate(&b);
	ours_verify(&b);
	host_prepare(&b);
	uring_open(&u);
	gup_pin_counts(b.m, &acq0, &rel0);

	for (int k = 0; k < NR_BATCHES; k++) {
		sw[k].batch = huge ? min(batch_2m[k], b.npages / unit) :
				     batch_4k[k];
		measure_point(&b, &u, &sw[k], unit);
	}

	/* Every pin went back (the whole bench, all modes). */
	gup_pin_counts(b.m, &acq1, &rel1);
	if (acq1 - acq0 != rel1 - rel0)
		bench_fail("pins and unpins do not balance", -EUCLEAN);
	if (huge) {
		unsigned long anon_huge = host_anon_huge(b.host, len);
		char mode_s[32];

		host_thp_mode(mode_s, sizeof(mode_s));
		if (anon_huge < len)
			snprintf(thp, sizeof(thp),
				 "; HOST THP NOT IN EFFECT: %lu of %lu MiB "
				 "(enabled=%s)",
				 anon_huge >> 20, mib, mode_s);
	}

	res->unit = huge ? "ns/2MiB" : "ns/page";
	res->ours = sw[NR_BATCHES - 1].ours;
	res->peer = sw[NR_BATCHES - 1].peer > 0 ? sw[NR_BATCHES - 1].peer : 0;
	if (u.fd < 0)
		snprintf(peer_name, sizeof(peer_name), "%s", u.why);
	else
		snprintf(
			peer_name, sizeof(peer_name),
			"kernel: io_uring register+unregister, %s, %lu %s/iovec",
			huge ? "THP" : "4 KiB pages", sw[NR_BATCHES - 1].batch,
			huge ? "x 2 MiB" : "pages");

	gup_note(note, sizeof(note), mode, huge, mib, thp, res->unit, sw);
	res->peer_name = peer_name;
	res->note = note;

	uring_close(&u);
	hetmm_exit(b.mm);
	hetmm_machine_destroy(b.m);
	munmap(b.host, len);
	if (b.pool)
		munmap(b.pool, b.pool_size);
	free(b.outs);
	free(b.bufs);
	free(b.iov);
	free(b.pages);
}

void bench_gup4k(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, GUP_FAST, false);
}

void bench_gup2m(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, GUP_FAST, true);
}

void bench_pin4k(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, PIN_FAST, false);
}

void bench_pin2m(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, PIN_FAST, true);
}

void bench_pinlt4k(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, PIN_LONGTERM, false);
}

void bench_pinlt2m(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, PIN_LONGTERM, true);
}

void bench_rfolio4k(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, RANGES_FOLIO, false);
}

void bench_rfolio2m(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, RANGES_FOLIO, true);
}

void bench_rphys4k(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, RANGES_PHYS, false);
}

void bench_rphys2m(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, RANGES_PHYS, true);
}

void bench_rpfn4k(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, RANGES_PFN, false);
}

void bench_rpfn2m(const struct bench_opts *o, struct bench_result *r)
{
	gup_bench_run(o, r, RANGES_PFN, true);
}
