// SPDX-License-Identifier: MIT
/*
 * workloads.c - the built-in workloads of `hetmm run`.
 *
 * Each workload builds its own machine, drives the machinery, checks the
 * machine's invariants at the end, and reports what happened. A workload
 * fails (non-zero exit) if hetmm_check() finds a broken invariant or if
 * data read back differs from what was written.
 */
#include <pthread.h>
#include <stdio.h>
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
	unsigned int cpu;
	uint64_t seed;
	unsigned long pages;      /* pages of private memory */
	unsigned long written, verified, errors, segv_ok, pt_pages, oom;
	int failed;               /* first unexpected error */
};

/*
 * One CPU thread: a process of its own that maps anonymous memory, reads
 * some of it before writing (zero page), writes a pattern, punches holes
 * with munmap, checks that reads there fault, verifies the rest, and
 * exits; plus its own slice of a shared process.
 */
static void *proc_worker_fn(void *arg)
{
	struct proc_worker *w = arg;
	struct hetmm_machine *m = w->shared->machine;
	struct mm_struct *mm = hetmm_process_create(m);
	unsigned long len = w->pages * PAGE_SIZE;
	uint64_t s = w->seed, v;
	bool *landed = calloc(w->pages, sizeof(bool));
	long a, b;
	int ret;

	if (IS_ERR(mm) || !landed) {
		free(landed);
		if (!IS_ERR(mm))
			hetmm_exit(mm);
		w->failed = IS_ERR(mm) ? (int)PTR_ERR(mm) : -ENOMEM;
		return NULL;
	}
	a = hetmm_mmap(mm, 0, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a < 0) {
		w->failed = (int)a;
		goto out;
	}
	/* Read the first quarter before writing: zero-page mappings. */
	/* -ENOMEM (memory exhausted or injected) is an outcome, not an error. */
	for (unsigned long i = 0; i < w->pages / 4; i++) {
		ret = hetmm_cpu_read(mm, w->cpu, a + i * PAGE_SIZE, &v, sizeof(v));
		if (ret == -ENOMEM)
			w->oom++;
		else if (ret || v != 0)
			w->errors++;
	}
	for (unsigned long i = 0; i < w->pages; i++) {
		v = (uint64_t)a + i * 7919;
		ret = hetmm_cpu_write(mm, w->cpu,
				      a + i * PAGE_SIZE + (i % 500) * 8, &v,
				      sizeof(v));
		if (ret == -ENOMEM) {
			w->oom++;
			continue;
		}
		if (ret)
			w->errors++;
		landed[i] = !ret;
		w->written++;
	}
	w->pt_pages = (unsigned long)atomic_load(&mm->nr_pt_pages);
	/* Punch a hole in the middle: reads there must fault. */
	if (hetmm_munmap(mm, a + len / 4, len / 4))
		w->errors++;
	for (unsigned long i = 0; i < w->pages; i++) {
		bool hole = i >= w->pages / 4 && i < w->pages / 2;

		ret = hetmm_cpu_read(mm, w->cpu,
				     a + i * PAGE_SIZE + (i % 500) * 8, &v,
				     sizeof(v));
		if (hole) {
			if (ret == -EFAULT)
				w->segv_ok++;
			else
				w->errors++;
		} else if (ret == -ENOMEM || (!ret && !landed[i] && v == 0)) {
			w->oom += ret == -ENOMEM;
		} else if (ret || v != (uint64_t)a + i * 7919) {
			w->errors++;
		} else {
			w->verified++;
		}
	}
	/* Our slice of the shared process (mapped by the leader). */
	b = (long)HETMM_MMAP_BASE - (long)(w->cpu + 1) * 64 * (long)PAGE_SIZE;
	for (unsigned long i = 0; i < 64; i++) {
		uint64_t back = 0;

		v = rng_next(&s);
		ret = hetmm_cpu_write(w->shared, w->cpu, b + i * PAGE_SIZE, &v,
				      sizeof(v));
		if (ret == -ENOMEM) {
			w->oom++;
			continue;
		}
		if (ret)
			w->errors++;
		ret = hetmm_cpu_read(w->shared, w->cpu, b + i * PAGE_SIZE, &back,
				     sizeof(back));
		if (ret || back != v)
			w->errors++;
	}
out:
	free(landed);
	hetmm_exit(mm);
	return NULL;
}

static int run_processes(struct hetmm_machine *m, unsigned int nthreads,
			 uint64_t seed, struct report *r)
{
	struct proc_worker w[16];
	pthread_t t[16];
	struct mm_struct *shared = hetmm_process_create(m);
	unsigned long written = 0, verified = 0, errors = 0, segv = 0, pt = 0;
	unsigned long oom = 0;
	int failed = 0;
	long a;

	if (IS_ERR(shared))
		return (int)PTR_ERR(shared);
	a = hetmm_mmap(shared, HETMM_MMAP_BASE - nthreads * 64 * PAGE_SIZE,
		       nthreads * 64 * PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (a < 0) {
		hetmm_exit(shared);
		return (int)a;
	}
	for (unsigned int i = 0; i < nthreads; i++) {
		w[i] = (struct proc_worker){ .shared = shared,
					     .cpu = i % m->cfg.nr_cpus,
					     .seed = seed + i,
					     .pages = 4096 };
		pthread_create(&t[i], NULL, proc_worker_fn, &w[i]);
	}
	for (unsigned int i = 0; i < nthreads; i++) {
		pthread_join(t[i], NULL);
		written += w[i].written;
		verified += w[i].verified;
		errors += w[i].errors;
		segv += w[i].segv_ok;
		pt += w[i].pt_pages;
		oom += w[i].oom;
		if (w[i].failed && !failed)
			failed = w[i].failed;
	}
	hetmm_exit(shared);
	rcu_barrier();
	drain_all_pages(m);
	report_section(r, "processes");
	report_u64(r, "processes", nthreads + 1, NULL);
	report_u64(r, "pages_written", written, NULL);
	report_u64(r, "pages_verified", verified, NULL);
	report_u64(r, "expected_sigsegv", segv, "(reads of unmapped holes)");
	report_u64(r, "page_table_pages_per_process", nthreads ? pt / nthreads : 0,
		   "(at peak)");
	report_u64(r, "out_of_memory", oom, "(accesses that got -ENOMEM)");
	report_u64(r, "errors", errors, NULL);
	report_i64(r, "pages_in_use_after_exit", hetmm_pages_in_use(m), "pages");
	report_end(r);
	if (failed)
		return failed;
	return errors ? -EUCLEAN : 0;
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
	int pret = run_processes(m, nthreads, o->seed, r);

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
	  "tour of what exists: multi-threaded folio allocation, data copies and verification, checker",
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
