// SPDX-License-Identifier: MIT
/*
 * migrate_inject_test.c - injected failures during device migration
 * (issue 4, "Fault injection"), and the bad input of the migration
 * commands that dmirror_test.c does not cover.
 *
 * For each fault site (alloc_pages, device_alloc, device_copy, copy_page)
 * and each migration -- system to device, device to system (command and
 * CPU fault), device to the peer device -- of 4 KiB pages and of a 2 MiB
 * THP, on the device-private and the device-coherent dmirror pair, the
 * site is armed to fail its Nth call once (FAULT_NTH), N = 1, 2, 3, ...,
 * until a run completes without an injected failure (the loop of SQLite's
 * OOM tests). After every run:
 *   - the return code is one the command may give, and success (with the
 *     full cpages) is required when nothing was injected;
 *   - every page is in exactly one place, the source or the destination,
 *     as the snapshots of both devices tell (never lost, never on both);
 *   - the devices' pages in service are the pages the snapshots place on
 *     them (no leaked or double-counted device page);
 *   - hetmm_check() passes, before and after the data is read back;
 *   - every byte reads back as written.
 * Every site must fail in some of these runs: one that never does is not
 * honoured by the migration paths, and the test fails. A failed copy
 * (device_copy, copy_page) must leave the page where it was, as a failed
 * allocation does: it shows as -EIO from MIGRATE_TO_SYS, -EFAULT (SIGBUS)
 * from a CPU fault or a device fault that could not migrate the page
 * back, -ENOENT from MIGRATE_TO_DEV.
 *
 * Eviction (HMM_DMIRROR_RELEASE, the hot-unplug of the device's memory)
 * runs the same loop for the copy sites, with 4 KiB pages and a THP on the
 * device: a failed copy is retried, so RELEASE succeeds and every page
 * comes back intact.
 */
#include <fcntl.h>

#include <hetmm/check.h>
#include <hetmm/dmirror.h>
#include <hetmm/mm.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define PG PAGE_SIZE
#define SZ_2M (2UL << 20)
#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define SMALL_PAGES 8
#define MAX_N 4096

struct env {
	struct hetmm_machine *m;
	struct mm_struct *mm;
	struct dmirror *a, *b;
	unsigned int minor_a, minor_b;
	bool coherent;
	char *buf;
};

static int env_setup(void **state, bool coherent)
{
	struct hetmm_machine_config cfg;
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	hetmm_machine_config_default(&cfg);
	cfg.ram_size = 128UL << 20;
	cfg.device_size = 2048UL << 20;
	cfg.carry_data = true;
	e->m = hetmm_machine_create(&cfg);
	assert_false(IS_ERR(e->m));
	e->mm = hetmm_process_create(e->m);
	assert_false(IS_ERR(e->mm));
	e->coherent = coherent;
	ASSERT_OK(dmirror_probe(e->m, coherent ? 0 : 2, coherent ? 2 : 0));
	e->minor_a = coherent ? 2 : 0;
	e->minor_b = e->minor_a + 1;
	e->a = dmirror_open(e->m, e->minor_a, e->mm);
	e->b = dmirror_open(e->m, e->minor_b, e->mm);
	assert_false(IS_ERR(e->a));
	assert_false(IS_ERR(e->b));
	e->buf = malloc(SZ_2M);
	assert_non_null(e->buf);
	*state = e;
	return 0;
}

static int setup_private(void **state)
{
	return env_setup(state, false);
}

static int setup_coherent(void **state)
{
	return env_setup(state, true);
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	hetmm_fault_reset(&e->m->faults);
	dmirror_release(e->a);
	dmirror_release(e->b);
	hetmm_exit(e->mm);
	dmirror_remove(e->m);
	test_machine_finish(e->m);
	free(e->buf);
	free(e);
	return 0;
}

static void check_ok(struct hetmm_machine *m, const char *when)
{
	int ret = hetmm_check(m);

	if (ret)
		fprintf(stderr, "hetmm_check (%s):\n%s", when,
			hetmm_check_report(m));
	assert_int_equal(ret, 0);
}

static int cmd(struct dmirror *d, unsigned int request, unsigned long addr,
	       void *ptr, unsigned long npages, struct hmm_dmirror_cmd *out)
{
	struct hmm_dmirror_cmd c = {
		.addr = addr,
		.ptr = (uint64_t)(uintptr_t)ptr,
		.npages = npages,
	};
	int ret = dmirror_ioctl(d, request, &c);

	if (out)
		*out = c;
	return ret;
}

static unsigned long in_service(struct env *e, unsigned int minor)
{
	struct dmirror_counters c;

	ASSERT_OK(dmirror_device_counters(e->m, minor, &c));
	return c.in_service;
}

/* Page p of a run holds 64-bit words seed ^ (p << 20 | word). */
static uint64_t word(uint64_t seed, unsigned long p, unsigned long w)
{
	return seed ^ ((uint64_t)p << 20 | w);
}

static void cpu_fill(struct mm_struct *mm, unsigned long addr,
		     unsigned long npages, uint64_t seed)
{
	uint64_t buf[PG / 8];

	for (unsigned long p = 0; p < npages; p++) {
		for (unsigned long w = 0; w < PG / 8; w++)
			buf[w] = word(seed, p, w);
		ASSERT_OK(hetmm_cpu_write(mm, 0, addr + p * PG, buf, PG));
	}
}

static void cpu_expect(struct mm_struct *mm, unsigned long addr,
		       unsigned long npages, uint64_t seed)
{
	uint64_t buf[PG / 8];

	for (unsigned long p = 0; p < npages; p++) {
		ASSERT_OK(hetmm_cpu_read(mm, 0, addr + p * PG, buf, PG));
		for (unsigned long w = 0; w < PG / 8; w++)
			if (buf[w] != word(seed, p, w))
				fail_msg("page %lu word %lu: %#llx, not %#llx",
					 p, w, (unsigned long long)buf[w],
					 (unsigned long long)word(seed, p, w));
	}
}

static unsigned long map_small(struct env *e)
{
	long a = hetmm_mmap(e->mm, 0, SMALL_PAGES * PG, RW, PRIV_ANON, -1, 0);

	assert_true(a > 0);
	return (unsigned long)a;
}

/* A 2 MiB aligned MADV_HUGEPAGE window holding one THP once touched. */
static unsigned long map_thp(struct env *e)
{
	long r = hetmm_mmap(e->mm, 0, 2 * SZ_2M, RW, PRIV_ANON, -1, 0);
	unsigned long a, w;

	assert_true(r > 0);
	a = (unsigned long)r;
	w = ALIGN(a, SZ_2M);
	if (w > a)
		ASSERT_OK(hetmm_munmap(e->mm, a, w - a));
	ASSERT_OK(hetmm_munmap(e->mm, w + SZ_2M, a + SZ_2M - w));
	ASSERT_OK(hetmm_madvise(e->mm, w, SZ_2M, MADV_HUGEPAGE));
	return w;
}

/* Where a page is, by the snapshots of both devices. */
enum where { AT_SYS, AT_A, AT_B, AT_BAD };

static const char *const where_name[] = { "system", "device A", "device B",
					  "nowhere" };

static enum where where_of(const struct env *e, unsigned char sa,
			   unsigned char sb)
{
	unsigned char local = e->coherent ?
				      HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL :
				      HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL;

	/*
	 * A private PMD entry of the other device reads ERROR (at PTE
	 * level: NONE), so one device's snapshot decides.
	 */
	if (sa != HMM_DMIRROR_PROT_ERROR && (sa & 0xf0) == local)
		return (sb != HMM_DMIRROR_PROT_ERROR && (sb & 0xf0) == local) ?
			       AT_BAD :
			       AT_A;
	if (sb != HMM_DMIRROR_PROT_ERROR && (sb & 0xf0) == local)
		return AT_B;
	if (sa == HMM_DMIRROR_PROT_ERROR || sb == HMM_DMIRROR_PROT_ERROR)
		return AT_BAD;
	/* On neither device: a mapped system page, seen alike by both. */
	if (sa == sb && !(sa & 0xf0) &&
	    (sa & (HMM_DMIRROR_PROT_READ | HMM_DMIRROR_PROT_WRITE)))
		return AT_SYS;
	return AT_BAD;
}

/* What the current run is, for failure messages. */
static char cur_run[128];

/* Snapshot [addr, +n pages) from both devices into @at. */
static void locate(struct env *e, unsigned long addr, unsigned long n,
		   enum where *at)
{
	unsigned char *sa = malloc(n), *sb = malloc(n);

	assert_non_null(sa);
	assert_non_null(sb);
	ASSERT_OK(cmd(e->a, HMM_DMIRROR_SNAPSHOT, addr, sa, n, NULL));
	ASSERT_OK(cmd(e->b, HMM_DMIRROR_SNAPSHOT, addr, sb, n, NULL));
	for (unsigned long p = 0; p < n; p++) {
		at[p] = where_of(e, sa[p], sb[p]);
		if (at[p] == AT_BAD)
			fail_msg("%s: page %lu: snapshots %#x (A) and %#x (B)",
				 cur_run, p, sa[p], sb[p]);
	}
	free(sa);
	free(sb);
}

static unsigned long count_at(const enum where *at, unsigned long n,
			      enum where w)
{
	unsigned long k = 0;

	for (unsigned long p = 0; p < n; p++)
		k += at[p] == w;
	return k;
}

enum scenario { TO_DEV, TO_SYS, CPU_FAULT, PEER, NR_SCENARIOS };

static const char *const scenario_name[] = { "to device", "to system",
					     "cpu fault", "to peer" };

/* Where a scenario starts and where it goes. */
static const enum where from_of[] = { AT_SYS, AT_A, AT_A, AT_A };
static const enum where to_of[] = { AT_A, AT_SYS, AT_SYS, AT_B };

/*
 * The migration of one run, with the site armed. Return: the first
 * error of its commands (0 if all succeeded); *@cpages: the last
 * command's cpages.
 */
static int run_op(struct env *e, enum scenario s, unsigned long addr,
		  unsigned long n, uint64_t *cpages)
{
	struct hmm_dmirror_cmd c = { 0 };
	uint64_t w;
	int ret = 0;

	switch (s) {
	case TO_DEV:
		ret = cmd(e->a, HMM_DMIRROR_MIGRATE_TO_DEV, addr, e->buf, n,
			  &c);
		break;
	case TO_SYS:
		ret = cmd(e->a, HMM_DMIRROR_MIGRATE_TO_SYS, addr, e->buf, n,
			  &c);
		break;
	case CPU_FAULT:
		/* Each read of a device-private page faults it back. */
		for (unsigned long p = 0; p < n && !ret; p++)
			ret = hetmm_cpu_read(e->mm, 1, addr + p * PG, &w, 8);
		c.cpages = n;
		break;
	case PEER:
		if (e->coherent)
			/* Coherent pages stay put for a device read: they
			 * go back to system memory first. */
			ret = cmd(e->a, HMM_DMIRROR_MIGRATE_TO_SYS, addr,
				  e->buf, n, &c);
		else
			/* B's fault pulls them off A (migrate_to_ram). */
			ret = cmd(e->b, HMM_DMIRROR_READ, addr, e->buf, n, &c);
		if (!ret)
			ret = cmd(e->b, HMM_DMIRROR_MIGRATE_TO_DEV, addr,
				  e->buf, n, &c);
		break;
	default:
		fail();
	}
	*cpages = c.cpages;
	return ret;
}

static bool is_copy_site(enum hetmm_fault_site site)
{
	return site == HETMM_FAULT_device_copy || site == HETMM_FAULT_copy_page;
}

/* May @s give @ret when a failure was injected at @site? */
static bool ret_allowed(enum hetmm_fault_site site, enum scenario s, int ret)
{
	switch (ret) {
	case 0:
		return true;
	case -ENOENT: /* a page did not reach the device */
		return s == TO_DEV || s == PEER;
	case -ENOMEM: /* no system page to come back to */
		return s != TO_DEV && !is_copy_site(site);
	case -EIO: /* MIGRATE_TO_SYS: a copy back failed */
		return (s == TO_SYS || s == PEER) && is_copy_site(site);
	case -EFAULT: /* a CPU or device fault whose migrate_to_ram failed */
		return s == PEER || (s == CPU_FAULT && is_copy_site(site));
	default:
		return false;
	}
}

struct tally {
	unsigned long runs, injected, partial, thp_entry_cpages;
};

/*
 * One run with @site failing its @nth call. Return: true if a failure
 * was injected.
 */
static bool one_run(struct env *e, enum hetmm_fault_site site, uint64_t nth,
		    enum scenario s, bool thp, struct tally *t)
{
	unsigned long n = thp ? HPAGE_PMD_NR : SMALL_PAGES;
	unsigned long addr = thp ? map_thp(e) : map_small(e);
	uint64_t seed = (uint64_t)site << 40 | nth << 8 | s << 1 | thp;
	enum where *at = calloc(n, sizeof(*at));
	unsigned long moved;
	uint64_t failures, cpages = 0;
	int ret;

	assert_non_null(at);
	snprintf(cur_run, sizeof(cur_run), "%s %s, %s failing call %llu",
		 scenario_name[s], thp ? "THP" : "4K",
		 hetmm_fault_site_name(site), (unsigned long long)nth);
	cpu_fill(e->mm, addr, n, seed);
	if (from_of[s] == AT_A) {
		struct hmm_dmirror_cmd c;

		ASSERT_OK(cmd(e->a, HMM_DMIRROR_MIGRATE_TO_DEV, addr, e->buf, n,
			      &c));
		assert_int_equal(c.cpages, n);
	}
	locate(e, addr, n, at);
	assert_int_equal(count_at(at, n, from_of[s]), n);

	ASSERT_OK(hetmm_fault_set(&e->m->faults, site, FAULT_NTH, (double)nth,
				  0));
	ret = run_op(e, s, addr, n, &cpages);
	failures = hetmm_fault_failures(&e->m->faults, site);
	hetmm_fault_reset(&e->m->faults);

	if (!ret_allowed(site, s, ret) || (!failures && ret))
		fail_msg("%s: %s (%llu injected)", cur_run, hetmm_errname(ret),
			 (unsigned long long)failures);

	/* Each page at its source or its destination; counters agree. */
	locate(e, addr, n, at);
	for (unsigned long p = 0; p < n; p++)
		if (at[p] != from_of[s] && at[p] != to_of[s] &&
		    !(s == PEER && at[p] == AT_SYS))
			fail_msg("%s: page %lu on %s", scenario_name[s], p,
				 where_name[at[p]]);
	assert_int_equal(in_service(e, e->minor_a), count_at(at, n, AT_A));
	assert_int_equal(in_service(e, e->minor_b), count_at(at, n, AT_B));
	moved = count_at(at, n, to_of[s]);
	if (!failures)
		assert_int_equal(moved, n);
	if (!ret && s != CPU_FAULT && s != TO_SYS) {
		/* Success reads every page back. */
		assert_int_equal(cpages, n);
		if (s == TO_DEV)
			assert_int_equal(moved, n);
	}
	if (s == TO_SYS && !ret) {
		assert_int_equal(moved, n);
		/*
		 * test_hmm counts the migrated src entries: a THP that
		 * came back whole is one entry, one split is 512.
		 */
		if (cpages != n && !(thp && cpages == 1))
			fail_msg("%s: cpages %llu", cur_run,
				 (unsigned long long)cpages);
		t->thp_entry_cpages += cpages != n;
	}
	check_ok(e->m, "after the injected run");

	cpu_expect(e->mm, addr, n, seed);
	check_ok(e->m, "after reading back");
	ASSERT_OK(hetmm_munmap(e->mm, addr, thp ? SZ_2M : n * PG));
	assert_int_equal(in_service(e, e->minor_a), 0);
	assert_int_equal(in_service(e, e->minor_b), 0);
	free(at);
	t->runs++;
	if (failures) {
		t->injected++;
		t->partial += moved && moved < n;
	}
	return failures > 0;
}

static void inject_site(void **state, enum hetmm_fault_site site)
{
	struct env *e = *state;
	struct tally t = { 0 };

	for (int s = 0; s < NR_SCENARIOS; s++) {
		/* A coherent page is CPU-accessible: no CPU fault path. */
		if (s == CPU_FAULT && e->coherent)
			continue;
		for (int thp = 0; thp < 2; thp++) {
			uint64_t nth = 1;

			while (one_run(e, site, nth, s, thp, &t))
				assert_true(++nth < MAX_N);
			/* Every one of these migrations copies data. */
			if (is_copy_site(site) && nth == 1)
				fail_msg("%s %s: %s never failed",
					 scenario_name[s], thp ? "THP" : "4K",
					 hetmm_fault_site_name(site));
		}
	}
	printf("# %s: %lu runs, %lu with an injected failure (%lu left a partial migration; %lu THP returns counted as one page)\n",
	       hetmm_fault_site_name(site), t.runs, t.injected, t.partial,
	       t.thp_entry_cpages);
	if (!t.injected)
		fail_msg("%s: no migration path honours this fault site",
			 hetmm_fault_site_name(site));
}

static void inject_alloc_pages(void **state)
{
	inject_site(state, HETMM_FAULT_alloc_pages);
}

static void inject_device_alloc(void **state)
{
	inject_site(state, HETMM_FAULT_device_alloc);
}

static void inject_device_copy(void **state)
{
	inject_site(state, HETMM_FAULT_device_copy);
}

static void inject_copy_page(void **state)
{
	inject_site(state, HETMM_FAULT_copy_page);
}

/*
 * RELEASE (hot-unplug of A's memory) with @site failing its @nth call,
 * while A holds 4 KiB pages and a THP. Failed copies are retried: the
 * command succeeds and every page is back in system memory, intact.
 * Return: true if a failure was injected.
 */
static bool one_release(struct env *e, enum hetmm_fault_site site, uint64_t nth)
{
	unsigned long small = map_small(e), thp = map_thp(e);
	uint64_t seed = (uint64_t)site << 40 | nth << 8 | 0xe;
	enum where at[HPAGE_PMD_NR];
	struct hmm_dmirror_cmd c;
	uint64_t failures;

	snprintf(cur_run, sizeof(cur_run), "release, %s failing call %llu",
		 hetmm_fault_site_name(site), (unsigned long long)nth);
	cpu_fill(e->mm, small, SMALL_PAGES, seed);
	cpu_fill(e->mm, thp, HPAGE_PMD_NR, seed + 1);
	ASSERT_OK(cmd(e->a, HMM_DMIRROR_MIGRATE_TO_DEV, small, e->buf,
		      SMALL_PAGES, &c));
	ASSERT_OK(cmd(e->a, HMM_DMIRROR_MIGRATE_TO_DEV, thp, e->buf,
		      HPAGE_PMD_NR, &c));
	assert_int_equal(in_service(e, e->minor_a), SMALL_PAGES + HPAGE_PMD_NR);

	ASSERT_OK(hetmm_fault_set(&e->m->faults, site, FAULT_NTH, (double)nth,
				  0));
	if (cmd(e->a, HMM_DMIRROR_RELEASE, small, e->buf, 1, &c))
		fail_msg("%s: RELEASE failed", cur_run);
	failures = hetmm_fault_failures(&e->m->faults, site);
	hetmm_fault_reset(&e->m->faults);

	assert_int_equal(in_service(e, e->minor_a), 0);
	locate(e, small, SMALL_PAGES, at);
	assert_int_equal(count_at(at, SMALL_PAGES, AT_SYS), SMALL_PAGES);
	locate(e, thp, HPAGE_PMD_NR, at);
	assert_int_equal(count_at(at, HPAGE_PMD_NR, AT_SYS), HPAGE_PMD_NR);
	check_ok(e->m, "after the injected release");
	cpu_expect(e->mm, small, SMALL_PAGES, seed);
	cpu_expect(e->mm, thp, HPAGE_PMD_NR, seed + 1);
	check_ok(e->m, "after reading back");
	ASSERT_OK(hetmm_munmap(e->mm, small, SMALL_PAGES * PG));
	ASSERT_OK(hetmm_munmap(e->mm, thp, SZ_2M));
	return failures > 0;
}

static void inject_release(void **state, enum hetmm_fault_site site)
{
	struct env *e = *state;
	uint64_t nth = 1;

	while (one_release(e, site, nth))
		assert_true(++nth < MAX_N);
	printf("# release, %s: %llu runs with an injected failure\n",
	       hetmm_fault_site_name(site), (unsigned long long)(nth - 1));
	/* At least the first copy of every run is retried. */
	assert_true(nth > 1);
}

static void inject_release_device_copy(void **state)
{
	inject_release(state, HETMM_FAULT_device_copy);
}

static void inject_release_copy_page(void **state)
{
	inject_release(state, HETMM_FAULT_copy_page);
}

/* ------------------------------------------------------------- bad input */

/* Snapshot of both devices and the data, to show nothing changed. */
struct state {
	unsigned char sa[8], sb[8];
	unsigned long ina, inb;
};

static void take_state(struct env *e, unsigned long addr, unsigned long n,
		       struct state *st)
{
	memset(st, 0, sizeof(*st));
	ASSERT_OK(cmd(e->a, HMM_DMIRROR_SNAPSHOT, addr, st->sa, n, NULL));
	ASSERT_OK(cmd(e->b, HMM_DMIRROR_SNAPSHOT, addr, st->sb, n, NULL));
	st->ina = in_service(e, e->minor_a);
	st->inb = in_service(e, e->minor_b);
}

static void expect_state(struct env *e, unsigned long addr, unsigned long n,
			 const struct state *before)
{
	struct state now;

	take_state(e, addr, n, &now);
	assert_memory_equal(now.sa, before->sa, n);
	assert_memory_equal(now.sb, before->sb, n);
	assert_int_equal(now.ina, before->ina);
	assert_int_equal(now.inb, before->inb);
	check_ok(e->m, "after bad input");
}

/*
 * Migration commands on what cannot migrate: file-backed memory (private
 * and shared), a VM_PFNMAP/VM_IO VMA, hugetlb, pages of the other device
 * (a foreign owner), empty and misaligned ranges, and a closed device.
 * Each gives the kernel's errno and leaves pages and counters as they
 * were.
 */
static void bad_input_migrate(void **state)
{
	struct env *e = *state;
	unsigned long n = 4, a;
	struct hmm_dmirror_cmd c;
	struct state st;
	int fd;
	long f;

	/* A file, mapped private (read: page-cache pages) and shared. */
	fd = hetmm_open(e->mm, "inject_bad_file", O_RDWR | O_CREAT);
	assert_true(fd >= 0);
	ASSERT_OK(hetmm_ftruncate(e->mm, fd, (off_t)(n * PG)));
	for (int shared = 0; shared < 2; shared++) {
		f = hetmm_mmap(e->mm, 0, n * PG, RW,
			       shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
		assert_true(f > 0);
		ASSERT_OK(hetmm_madvise(e->mm, (unsigned long)f, n * PG,
					shared ? MADV_POPULATE_WRITE :
						 MADV_POPULATE_READ));
		take_state(e, (unsigned long)f, n, &st);
		/* Page-cache pages never go to device memory. */
		assert_int_equal(cmd(e->a, HMM_DMIRROR_MIGRATE_TO_DEV,
				     (unsigned long)f, e->buf, n, NULL),
				 -ENOENT);
		expect_state(e, (unsigned long)f, n, &st);
		ASSERT_OK(cmd(e->a, HMM_DMIRROR_MIGRATE_TO_SYS,
			      (unsigned long)f, e->buf, n, &c));
		assert_int_equal(c.cpages, 0);
		expect_state(e, (unsigned long)f, n, &st);
		ASSERT_OK(hetmm_munmap(e->mm, (unsigned long)f, n * PG));
	}
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_unlink(e->mm, "inject_bad_file"));

	/* Special VMAs (as a driver's mmap would mark them). */
	a = map_small(e);
	cpu_fill(e->mm, a, n, 91);
	take_state(e, a, n, &st);
	for (int k = 0; k < 2; k++) {
		unsigned long flag = k ? VM_PFNMAP : VM_IO;
		struct vm_area_struct *vma;
		int r1, r2;

		mmap_write_lock(e->mm);
		vma = vma_lookup(e->mm, a);
		assert_non_null(vma);
		vma->vm_flags |= flag;
		mmap_write_unlock(e->mm);
		r1 = cmd(e->a, HMM_DMIRROR_MIGRATE_TO_DEV, a, e->buf, n, NULL);
		r2 = cmd(e->a, HMM_DMIRROR_MIGRATE_TO_SYS, a, e->buf, n, NULL);
		mmap_write_lock(e->mm);
		vma->vm_flags &= ~flag;
		mmap_write_unlock(e->mm);
		assert_int_equal(r1, -EINVAL);
		assert_int_equal(r2, -EINVAL);
		expect_state(e, a, n, &st);
	}

	/* Pages of the other device: A neither takes nor returns them. */
	ASSERT_OK(cmd(e->b, HMM_DMIRROR_MIGRATE_TO_DEV, a, e->buf, n, NULL));
	take_state(e, a, n, &st);
	assert_int_equal(st.inb, n);
	assert_int_equal(
		cmd(e->a, HMM_DMIRROR_MIGRATE_TO_DEV, a, e->buf, n, NULL),
		-ENOENT);
	expect_state(e, a, n, &st);
	ASSERT_OK(cmd(e->a, HMM_DMIRROR_MIGRATE_TO_SYS, a, e->buf, n, &c));
	assert_int_equal(c.cpages, 0);
	expect_state(e, a, n, &st);

	/* Empty and misaligned ranges, for every migration command. */
	{
		static const unsigned int reqs[] = { HMM_DMIRROR_MIGRATE_TO_DEV,
						     HMM_DMIRROR_MIGRATE_TO_SYS,
						     HMM_DMIRROR_SNAPSHOT,
						     HMM_DMIRROR_EXCLUSIVE };

		for (unsigned int i = 0; i < ARRAY_SIZE(reqs); i++) {
			assert_int_equal(cmd(e->a, reqs[i], a, e->buf, 0, NULL),
					 -EINVAL);
			assert_int_equal(
				cmd(e->a, reqs[i], a + 64, e->buf, n, NULL),
				-EINVAL);
		}
	}
	expect_state(e, a, n, &st);

	/* hugetlb memory does not migrate to a device. */
	f = hetmm_mmap(e->mm, 0, SZ_2M, RW, PRIV_ANON | MAP_HUGETLB, -1, 0);
	if (f > 0) {
		struct state hs;

		ASSERT_OK(hetmm_madvise(e->mm, (unsigned long)f, PG,
					MADV_POPULATE_WRITE));
		take_state(e, (unsigned long)f, 1, &hs);
		assert_int_equal(cmd(e->a, HMM_DMIRROR_MIGRATE_TO_DEV,
				     (unsigned long)f, e->buf, 1, NULL),
				 -EINVAL);
		expect_state(e, (unsigned long)f, 1, &hs);
		ASSERT_OK(hetmm_munmap(e->mm, (unsigned long)f, SZ_2M));
	}

	/* A closed device: every command is refused, B keeps its pages. */
	dmirror_release(e->a);
	assert_int_equal(in_service(e, e->minor_b), n);
	assert_int_equal(
		cmd(e->a, HMM_DMIRROR_MIGRATE_TO_DEV, a, e->buf, n, NULL),
		-EINVAL);
	assert_int_equal(
		cmd(e->a, HMM_DMIRROR_MIGRATE_TO_SYS, a, e->buf, n, NULL),
		-EINVAL);
	assert_int_equal(cmd(e->a, HMM_DMIRROR_SNAPSHOT, a, e->buf, n, NULL),
			 -EINVAL);
	assert_int_equal(in_service(e, e->minor_b), n);
	check_ok(e->m, "after commands on a closed device");
	cpu_expect(e->mm, a, n, 91);
	ASSERT_OK(hetmm_munmap(e->mm, a, SMALL_PAGES * PG));
}

#define INJECT_TESTS(setup)                                                 \
	cmocka_unit_test_setup_teardown(inject_alloc_pages, setup,          \
					env_teardown),                      \
		cmocka_unit_test_setup_teardown(inject_device_alloc, setup, \
						env_teardown),              \
		cmocka_unit_test_setup_teardown(inject_device_copy, setup,  \
						env_teardown),              \
		cmocka_unit_test_setup_teardown(inject_copy_page, setup,    \
						env_teardown),              \
		cmocka_unit_test_setup_teardown(inject_release_device_copy, \
						setup, env_teardown),       \
		cmocka_unit_test_setup_teardown(inject_release_copy_page,   \
						setup, env_teardown),       \
		cmocka_unit_test_setup_teardown(bad_input_migrate, setup,   \
						env_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		INJECT_TESTS(setup_private),
		INJECT_TESTS(setup_coherent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
