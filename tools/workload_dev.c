// SPDX-License-Identifier: MIT
/*
 * workload_dev.c - the device part of the default workload: two
 * device-private mirror devices (drivers/dmirror) working on one process.
 *
 * The tour, with every byte checked against what the process wrote:
 *   1. a process fills 4 MiB of 4 KiB pages and 2 MiB of THP;
 *   2. device 0 reads it all through hmm_range_fault (device faults);
 *   3. device 0 migrates it into its memory (MIGRATE_TO_DEV, THP as one
 *      2 MiB device folio where it can), then writes a pattern there;
 *   4. the CPU reads every other page: each read faults the page back to
 *      system memory through the driver's migrate_to_ram;
 *   5. device 1 reads the range (its hmm_range_fault pulls device 0's
 *      pages back to RAM) and migrates it into its own memory: the move
 *      to a peer goes through system memory;
 *   6. the process forks; the child reads its copy, then writes half of
 *      it (COW of pages that sit in device memory);
 *   7. device 0 takes some pages for atomic access (EXCLUSIVE), the CPU
 *      increments them (restoring the PTEs), CHECK_EXCLUSIVE sees that;
 *   8. both devices are hot-unplugged (dmirror_remove) while device 1
 *      still holds pages: they are evicted to system memory first;
 *   9. snapshot-style accounting of where every page is, before and
 *      after, then the processes exit and nothing may remain in use.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hetmm/dmirror.h>
#include <hetmm/fault_inject.h>
#include <hetmm/hetmm.h>
#include <hetmm/memremap.h>
#include <hetmm/stats.h>
#include <hetmm/uapi.h>

#include "cli.h"

#define SMALL_PAGES 1024UL /* 4 MiB */
#define HUGE_PAGES 512UL   /* one 2 MiB THP */
#define NPAGES (SMALL_PAGES + HUGE_PAGES)

struct dev_tour {
	struct hetmm_machine *m;
	struct mm_struct *mm;
	struct dmirror *d0, *d1;
	unsigned long small, huge; /* base addresses */
	unsigned char *buf;        /* NPAGES pages */
	unsigned long errors;
	unsigned long bytes_checked;
	unsigned long commands, cpages, dev_faults;
	char first_error[200];
};

static void tour_err(struct dev_tour *t, const char *what, long v)
{
	if (!t->errors++)
		snprintf(t->first_error, sizeof(t->first_error), "%s: %ld", what,
			 v);
}

static unsigned long page_addr(struct dev_tour *t, unsigned long i)
{
	return i < SMALL_PAGES ? t->small + i * PAGE_SIZE :
				 t->huge + (i - SMALL_PAGES) * PAGE_SIZE;
}

static unsigned char pattern(unsigned long i, unsigned int gen)
{
	return (unsigned char)(i * 31 + gen * 7 + 1);
}

/* Run one command over [first, first + n) pages of one of the areas. */
static int cmd(struct dev_tour *t, struct dmirror *d, unsigned int nr,
	       unsigned long first, unsigned long n, void *ptr)
{
	struct hmm_dmirror_cmd c = {
		.addr = page_addr(t, first),
		.ptr = (uint64_t)(uintptr_t)ptr,
		.npages = n,
	};
	int ret = dmirror_ioctl(d, nr, &c);

	t->commands++;
	if (!ret) {
		t->cpages += c.cpages;
		t->dev_faults += c.faults;
	}
	return ret;
}

/* Run @nr over both areas (they are separate VMAs). */
static int cmd_all(struct dev_tour *t, struct dmirror *d, unsigned int nr)
{
	int ret = cmd(t, d, nr, 0, SMALL_PAGES, t->buf);

	if (!ret)
		ret = cmd(t, d, nr, SMALL_PAGES, HUGE_PAGES,
			  t->buf + SMALL_PAGES * PAGE_SIZE);
	return ret;
}

/* Every page of buf must carry the pattern of generation @gen[i]. */
static void check_buf(struct dev_tour *t, const unsigned char *gen,
		      const char *what)
{
	for (unsigned long i = 0; i < NPAGES; i++) {
		const unsigned char *p = t->buf + i * PAGE_SIZE;

		for (unsigned long b = 0; b < PAGE_SIZE; b += 512) {
			if (p[b] != pattern(i, gen[i])) {
				tour_err(t, what, (long)i);
				return;
			}
		}
		t->bytes_checked += PAGE_SIZE;
	}
}

/* The CPU view of the process: every page read back through the MMU. */
static void check_cpu(struct dev_tour *t, struct mm_struct *mm,
		      const unsigned char *gen, unsigned long step,
		      const char *what)
{
	for (unsigned long i = 0; i < NPAGES; i += step) {
		unsigned char v[PAGE_SIZE];
		int ret = hetmm_cpu_read(mm, 0, page_addr(t, i), v, PAGE_SIZE);

		if (ret) {
			tour_err(t, what, ret);
			return;
		}
		if (v[0] != pattern(i, gen[i]) ||
		    v[PAGE_SIZE - 1] != pattern(i, gen[i])) {
			tour_err(t, what, (long)i);
			return;
		}
		t->bytes_checked += PAGE_SIZE;
	}
}

struct placement {
	unsigned long system, dev_local, other, none;
};

static void snapshot(struct dev_tour *t, struct dmirror *d,
		     struct placement *p)
{
	unsigned char *s = calloc(NPAGES, 1);

	memset(p, 0, sizeof(*p));
	if (!s || cmd(t, d, HMM_DMIRROR_SNAPSHOT, 0, SMALL_PAGES, s) ||
	    cmd(t, d, HMM_DMIRROR_SNAPSHOT, SMALL_PAGES, HUGE_PAGES,
		s + SMALL_PAGES)) {
		tour_err(t, "snapshot", -EIO);
		free(s);
		return;
	}
	for (unsigned long i = 0; i < NPAGES; i++) {
		unsigned char type = s[i] & 0xf0;

		if (s[i] == HMM_DMIRROR_PROT_NONE)
			p->none++;
		else if (type == HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL)
			p->dev_local++;
		else if (type == 0 || type == HMM_DMIRROR_PROT_ZERO)
			p->system++;
		else
			p->other++;
	}
	free(s);
}

static void report_placement(struct report *r, const char *key,
			     const struct placement *p)
{
	char v[160];

	snprintf(v, sizeof(v),
		 "system %lu, this device %lu, not mapped for it %lu, other %lu",
		 p->system, p->dev_local, p->none, p->other);
	report_str(r, key, v);
}

static void fill(struct dev_tour *t, unsigned char *gen, unsigned int g)
{
	for (unsigned long i = 0; i < NPAGES; i++) {
		gen[i] = (unsigned char)g;
		memset(t->buf + i * PAGE_SIZE, pattern(i, g), PAGE_SIZE);
	}
}

static uint64_t injected_so_far(struct hetmm_machine *m)
{
	uint64_t n = 0;

	for (int i = 0; i < NR_HETMM_FAULT_SITES; i++)
		n += hetmm_fault_failures(&m->faults, (enum hetmm_fault_site)i);
	return n;
}

int run_devices(struct hetmm_machine *m, bool data, struct report *r)
{
	uint64_t injected0 = injected_so_far(m), injected;
	struct dev_tour t = { .m = m };
	struct hetmm_stats before, after, d;
	struct placement p0 = { 0 }, p1 = { 0 }, pend = { 0 };
	struct dmirror_counters c0 = { 0 }, c1 = { 0 };
	unsigned char *gen = calloc(NPAGES, 1);
	struct mm_struct *child = NULL;
	long ret;

	report_section(r, "devices");
	if (!data) {
		report_str(r, "skipped", "metadata-only machine: devices move data");
		report_end(r);
		free(gen);
		return 0;
	}
	t.buf = malloc(NPAGES * PAGE_SIZE);
	if (!t.buf || !gen) {
		free(t.buf);
		free(gen);
		report_end(r);
		return -ENOMEM;
	}
	hetmm_stats_read(&before);
	ret = dmirror_probe(m, 2, 0);
	if (ret)
		goto out_report;
	t.mm = hetmm_process_create(m);
	if (IS_ERR(t.mm)) {
		ret = PTR_ERR(t.mm);
		t.mm = NULL;
		goto out_remove;
	}
	t.small = (unsigned long)hetmm_mmap(t.mm, 0, SMALL_PAGES * PAGE_SIZE,
					    PROT_READ | PROT_WRITE,
					    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	t.huge = (unsigned long)hetmm_mmap(t.mm, 0, 2 * HUGE_PAGES * PAGE_SIZE,
					   PROT_READ | PROT_WRITE,
					   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (IS_ERR_VALUE(t.small) || IS_ERR_VALUE(t.huge)) {
		ret = -ENOMEM;
		goto out_exit;
	}
	/* A 2 MiB aligned THP inside the larger mapping. */
	t.huge = ALIGN(t.huge, PMD_SIZE);
	hetmm_madvise(t.mm, t.huge, HUGE_PAGES * PAGE_SIZE, MADV_HUGEPAGE);

	/* 1. the CPU fills everything */
	fill(&t, gen, 1);
	for (unsigned long i = 0; i < NPAGES; i++)
		if (hetmm_cpu_write(t.mm, 0, page_addr(&t, i),
				    t.buf + i * PAGE_SIZE, PAGE_SIZE))
			tour_err(&t, "cpu fill", (long)i);

	t.d0 = dmirror_open(m, 0, t.mm);
	t.d1 = dmirror_open(m, 1, t.mm);
	if (IS_ERR(t.d0) || IS_ERR(t.d1)) {
		ret = -ENODEV;
		t.d0 = IS_ERR(t.d0) ? NULL : t.d0;
		t.d1 = IS_ERR(t.d1) ? NULL : t.d1;
		goto out_close;
	}
	/* 2. device 0 reads through hmm_range_fault */
	memset(t.buf, 0, NPAGES * PAGE_SIZE);
	if ((ret = cmd_all(&t, t.d0, HMM_DMIRROR_READ)))
		tour_err(&t, "device 0 READ", ret);
	check_buf(&t, gen, "device 0 read wrong bytes");

	/* 3. device 0 takes the range and writes generation 2 there */
	if ((ret = cmd_all(&t, t.d0, HMM_DMIRROR_MIGRATE_TO_DEV)))
		tour_err(&t, "device 0 MIGRATE_TO_DEV", ret);
	check_buf(&t, gen, "migrated data differs");
	snapshot(&t, t.d0, &p0);
	fill(&t, gen, 2);
	if ((ret = cmd_all(&t, t.d0, HMM_DMIRROR_WRITE)))
		tour_err(&t, "device 0 WRITE", ret);

	/* 4. the CPU touches every other page: migrate_to_ram */
	check_cpu(&t, t.mm, gen, 2, "CPU read after device write");

	/* 5. device 1 reads everything (pulls device 0's pages back), then
	 * takes the range into its own memory */
	memset(t.buf, 0, NPAGES * PAGE_SIZE);
	if ((ret = cmd_all(&t, t.d1, HMM_DMIRROR_READ)))
		tour_err(&t, "device 1 READ", ret);
	check_buf(&t, gen, "device 1 read wrong bytes");
	if ((ret = cmd_all(&t, t.d1, HMM_DMIRROR_MIGRATE_TO_DEV)))
		tour_err(&t, "device 1 MIGRATE_TO_DEV", ret);
	snapshot(&t, t.d1, &p1);

	/* 6. fork with pages in device memory; the child COWs half */
	child = hetmm_fork(t.mm);
	if (IS_ERR(child)) {
		tour_err(&t, "fork", PTR_ERR(child));
		child = NULL;
	} else {
		unsigned char *cgen = malloc(NPAGES);

		check_cpu(&t, child, gen, 1, "child sees parent data");
		if (cgen) {
			memcpy(cgen, gen, NPAGES);
			for (unsigned long i = 0; i < NPAGES; i += 2) {
				unsigned char v = pattern(i, 9);

				cgen[i] = 9;
				for (unsigned long b = 0; b < PAGE_SIZE; b += 512)
					if (hetmm_cpu_write(child, 1,
							    page_addr(&t, i) + b,
							    &v, 1))
						tour_err(&t, "child write", (long)i);
			}
			/* Sample the child: bytes at multiples of 512. */
			for (unsigned long i = 0; i < NPAGES; i++) {
				unsigned char v;

				if (hetmm_cpu_read(child, 1, page_addr(&t, i),
						   &v, 1) ||
				    v != pattern(i, cgen[i]))
					tour_err(&t, "child COW data", (long)i);
			}
			free(cgen);
		}
		hetmm_exit(child);
		child = NULL;
	}
	/* The parent is unchanged by the child's writes. */
	check_cpu(&t, t.mm, gen, 3, "parent after child COW");

	/* 7. atomic access on device 0 for the first 64 pages */
	if ((ret = cmd(&t, t.d0, HMM_DMIRROR_EXCLUSIVE, 0, 64, t.buf)))
		tour_err(&t, "EXCLUSIVE", ret);
	for (unsigned long i = 0; i < 64; i++) {
		uint64_t v;

		if (hetmm_cpu_read(t.mm, 0, page_addr(&t, i), &v, 8)) {
			tour_err(&t, "CPU read after EXCLUSIVE", (long)i);
			continue;
		}
		/* Restore the byte pattern of the page: write it back. */
		if (hetmm_cpu_write(t.mm, 0, page_addr(&t, i), &v, 8))
			tour_err(&t, "CPU write after EXCLUSIVE", (long)i);
	}
	if ((ret = cmd(&t, t.d0, HMM_DMIRROR_CHECK_EXCLUSIVE, 0, 64, t.buf)))
		tour_err(&t, "CHECK_EXCLUSIVE after CPU access", ret);

	/* 8. hot-unplug with device 1 still holding pages */
	if ((ret = cmd(&t, t.d1, HMM_DMIRROR_MIGRATE_TO_DEV, 0, SMALL_PAGES,
		       t.buf)))
		tour_err(&t, "device 1 MIGRATE_TO_DEV before unplug", ret);
	snapshot(&t, t.d1, &pend);
	dmirror_device_counters(m, 0, &c0);
	dmirror_device_counters(m, 1, &c1);
	dmirror_release(t.d0);
	dmirror_release(t.d1);
	t.d0 = t.d1 = NULL;
	dmirror_remove(m);
	check_cpu(&t, t.mm, gen, 1, "data after hot-unplug");
	ret = 0;
	goto out_exit;

out_close:
	if (t.d0)
		dmirror_release(t.d0);
	if (t.d1)
		dmirror_release(t.d1);
out_exit:
	if (t.mm)
		hetmm_exit(t.mm);
out_remove:
	dmirror_remove(m);
out_report:
	hetmm_stats_read(&after);
	hetmm_stats_diff(&d, &after, &before);
	report_u64(r, "devices", 2, "(dmirror, device-private, 256 MiB chunks)");
	report_u64(r, "pages", NPAGES, "(4 MiB of 4 KiB pages + one 2 MiB THP)");
	report_u64(r, "commands", t.commands, NULL);
	report_u64(r, "pages_processed", t.cpages, "(cpages of all commands)");
	report_u64(r, "device_fault_rounds", t.dev_faults, NULL);
	report_u64(r, "hmm_range_fault_calls", d.v[HETMM_STAT_hmm_range_fault],
		   NULL);
	report_u64(r, "hmm_range_fault_busy",
		   d.v[HETMM_STAT_hmm_range_fault_busy], "(retries)");
	report_u64(r, "hmm_pages_faulted", d.v[HETMM_STAT_hmm_fault], NULL);
	report_u64(r, "migrated_to_device", d.v[HETMM_STAT_migrate_to_device],
		   "pages");
	report_u64(r, "migrated_to_system", d.v[HETMM_STAT_migrate_to_system],
		   "pages");
	report_u64(r, "migrated_device_to_device",
		   d.v[HETMM_STAT_migrate_device_to_device], "pages");
	report_u64(r, "migrated_as_2mib_folio",
		   d.v[HETMM_STAT_migrate_folio_large], "folios");
	report_u64(r, "bytes_migrated",
		   (d.v[HETMM_STAT_migrate_to_device] +
		    d.v[HETMM_STAT_migrate_to_system] +
		    d.v[HETMM_STAT_migrate_device_to_device]) *
			   PAGE_SIZE,
		   "bytes");
	report_u64(r, "migration_refused", d.v[HETMM_STAT_migrate_skip] +
						   d.v[HETMM_STAT_migrate_fail],
		   "(pages skipped or restored)");
	report_u64(r, "cpu_faults_on_device_pages",
		   d.v[HETMM_STAT_fault_device_private], "(migrate_to_ram)");
	report_u64(r, "cpu_waits_on_migration",
		   d.v[HETMM_STAT_fault_migration_wait], NULL);
	report_u64(r, "device_exclusive", d.v[HETMM_STAT_device_exclusive],
		   "pages");
	report_u64(r, "exclusive_restored",
		   d.v[HETMM_STAT_fault_exclusive_restore], NULL);
	report_placement(r, "placement_after_dev0_migrate", &p0);
	report_placement(r, "placement_after_dev1_migrate", &p1);
	report_placement(r, "placement_before_unplug", &pend);
	report_str(r, "placement_after_unplug",
		   "system memory: every page read back by the CPU and checked");
	report_u64(r, "dev0_pages_allocated", c0.calloc, NULL);
	report_u64(r, "dev0_pages_freed", c0.cfree, NULL);
	report_u64(r, "dev1_pages_allocated", c1.calloc, NULL);
	report_u64(r, "dev1_pages_in_use_at_unplug", c1.in_service,
		   "(evicted by the unplug)");
	report_u64(r, "pgmaps_left", hetmm_nr_pgmaps(m), "(must be 0)");
	report_u64(r, "bytes_checked", t.bytes_checked, NULL);
	/*
	 * With failures injected (--fail), steps fail with -ENOMEM/-EIO and
	 * later data checks see the data of before the failed step: those
	 * mismatches are reported, not counted as errors. The machine must
	 * still pass hetmm_check and free every device page.
	 */
	injected = injected_so_far(m) - injected0;
	if (injected) {
		report_u64(r, "injected_failures", injected, NULL);
		report_u64(r, "steps_hit_by_injection", t.errors, NULL);
		if (t.errors)
			report_str(r, "first_step_hit", t.first_error);
		t.errors = 0;
		/* Setting up (probe, process, mappings) may be hit too. */
		if (ret == -ENOMEM || ret == -EIO) {
			report_str(r, "stopped_by_injection",
				   hetmm_errname((int)ret));
			ret = 0;
		}
	}
	report_u64(r, "errors", t.errors, NULL);
	if (t.errors)
		report_str(r, "first_error", t.first_error);
	report_end(r);
	free(t.buf);
	free(gen);
	if (ret)
		return (int)ret;
	if (t.errors) {
		fprintf(stderr, "hetmm: default: device check failed: %s\n",
			t.first_error);
		return -EIO;
	}
	return hetmm_nr_pgmaps(m) ? -EUCLEAN : 0;
}
