// SPDX-License-Identifier: MIT
/*
 * dmirror_test.c - the dmirror driver itself: module load and open
 * errors, the ioctl's argument checks (spec 5.4), the allocator's
 * counters and chunk growth, RELEASE and reuse, FAIL_ALLOC in both
 * directions, unloading with pages on the devices, eviction on close,
 * two mirrors of one process, fault injection, a small concurrent run,
 * and the "dmirror" checker catching a corrupted device page table.
 * The scenario suite of the kernel's hmm-tests.c is hmm_tests_test.c.
 */
#include <pthread.h>

#include <hetmm/dmirror.h>
#include <hetmm/memremap.h>
#include <hetmm/mm.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define PG PAGE_SIZE
#define SZ_2M (2UL << 20)
#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)

struct env {
	struct hetmm_machine *m;
	struct mm_struct *mm;
};

static struct hetmm_machine *machine_new(uint64_t ram_mb, uint64_t dev_mb)
{
	struct hetmm_machine_config cfg;
	struct hetmm_machine *m;

	hetmm_machine_config_default(&cfg);
	cfg.ram_size = ram_mb << 20;
	cfg.device_size = dev_mb << 20;
	m = hetmm_machine_create(&cfg);
	assert_false(IS_ERR(m));
	return m;
}

static int env_setup_ram(void **state, uint64_t ram_mb)
{
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	e->m = machine_new(ram_mb, 2048);
	e->mm = hetmm_process_create(e->m);
	assert_false(IS_ERR(e->mm));
	*state = e;
	return 0;
}

static int env_setup(void **state)
{
	return env_setup_ram(state, 128);
}

static int env_setup_big(void **state)
{
	return env_setup_ram(state, 640);
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	if (e->mm)
		hetmm_exit(e->mm);
	dmirror_remove(e->m);
	test_machine_finish(e->m);
	free(e);
	return 0;
}

static void check_ok(struct hetmm_machine *m)
{
	int ret = hetmm_check(m);

	if (ret)
		fprintf(stderr, "hetmm_check:\n%s", hetmm_check_report(m));
	assert_int_equal(ret, 0);
}

static unsigned long map(struct mm_struct *mm, unsigned long len, int prot,
			 int flags)
{
	long a = hetmm_mmap(mm, 0, len, prot, flags, -1, 0);

	assert_true(a > 0);
	return (unsigned long)a;
}

/* A 2 MiB aligned MADV_HUGEPAGE window of @n huge pages. */
static unsigned long thp_map(struct mm_struct *mm, unsigned long n)
{
	unsigned long a = map(mm, (n + 1) * SZ_2M, RW, PRIV_ANON);
	unsigned long w = ALIGN(a, SZ_2M);

	if (w > a)
		ASSERT_OK(hetmm_munmap(mm, a, w - a));
	ASSERT_OK(hetmm_munmap(mm, w + n * SZ_2M, a + SZ_2M - w));
	ASSERT_OK(hetmm_madvise(mm, w, n * SZ_2M, MADV_HUGEPAGE));
	return w;
}

/* Page p of a region holds 64-bit words seed ^ (p << 20 | word). */
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

static void expect_page(const uint64_t *buf, unsigned long p, uint64_t seed)
{
	for (unsigned long w = 0; w < PG / 8; w++)
		if (buf[w] != word(seed, p, w)) {
			fprintf(stderr, "# page %lu word %lu: %#llx\n", p, w,
				(unsigned long long)buf[w]);
			assert_true(buf[w] == word(seed, p, w));
		}
}

static void cpu_expect(struct mm_struct *mm, unsigned long addr,
		       unsigned long npages, uint64_t seed)
{
	uint64_t buf[PG / 8];

	for (unsigned long p = 0; p < npages; p++) {
		ASSERT_OK(hetmm_cpu_read(mm, 0, addr + p * PG, buf, PG));
		expect_page(buf, p, seed);
	}
}

static void buf_expect(const void *buf, unsigned long npages, uint64_t seed)
{
	for (unsigned long p = 0; p < npages; p++)
		expect_page((const uint64_t *)buf + p * (PG / 8), p, seed);
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

static struct dmirror_counters counters(struct hetmm_machine *m,
					unsigned int minor)
{
	struct dmirror_counters c;

	ASSERT_OK(dmirror_device_counters(m, minor, &c));
	return c;
}

static struct dmirror *open_ok(struct hetmm_machine *m, unsigned int minor,
			       struct mm_struct *mm)
{
	struct dmirror *d = dmirror_open(m, minor, mm);

	assert_false(IS_ERR(d));
	return d;
}

/* --------------------------------------------------------------- tests */

static void test_probe_and_open_errors(void **state)
{
	struct env *e = *state;
	struct dmirror *d;

	assert_int_equal(PTR_ERR(dmirror_open(e->m, 0, e->mm)), -ENODEV);
	assert_int_equal(dmirror_probe(e->m, 3, 0), -EINVAL);
	assert_int_equal(dmirror_probe(e->m, 0, 3), -EINVAL);
	assert_int_equal(dmirror_probe(e->m, 0, 0), -EINVAL);
	assert_int_equal(dmirror_probe(NULL, 1, 0), -EINVAL);
	ASSERT_OK(dmirror_probe(e->m, 1, 1));
	assert_int_equal(dmirror_probe(e->m, 1, 1), -EBUSY);
	/* Minor 1 and 3 do not exist, nor 4. */
	assert_int_equal(PTR_ERR(dmirror_open(e->m, 1, e->mm)), -ENODEV);
	assert_int_equal(PTR_ERR(dmirror_open(e->m, 3, e->mm)), -ENODEV);
	assert_int_equal(PTR_ERR(dmirror_open(e->m, 4, e->mm)), -ENODEV);
	assert_int_equal(PTR_ERR(dmirror_open(e->m, 0, NULL)), -EINVAL);
	assert_int_equal(counters(e->m, 0).type,
			 HMM_DMIRROR_MEMORY_DEVICE_PRIVATE);
	assert_int_equal(counters(e->m, 2).type,
			 HMM_DMIRROR_MEMORY_DEVICE_COHERENT);
	assert_int_equal(counters(e->m, 0).nr_chunks, 1);
	assert_int_equal(counters(e->m, 2).nr_chunks, 1);
	assert_int_equal(hetmm_nr_pgmaps(e->m), 2);
	{
		struct dmirror_counters c;

		assert_int_equal(dmirror_device_counters(e->m, 1, &c), -ENODEV);
	}
	d = open_ok(e->m, 2, e->mm);
	assert_int_equal(counters(e->m, 2).nr_mirrors, 1);
	dmirror_release(d);
	assert_int_equal(counters(e->m, 2).nr_mirrors, 0);
	check_ok(e->m);

	/* Unload and load again. */
	dmirror_remove(e->m);
	assert_int_equal(hetmm_nr_pgmaps(e->m), 0);
	assert_int_equal(PTR_ERR(dmirror_open(e->m, 0, e->mm)), -ENODEV);
	check_ok(e->m);
	ASSERT_OK(dmirror_probe(e->m, 2, 0));
	assert_int_equal(hetmm_nr_pgmaps(e->m), 2);
	check_ok(e->m);
}

static void test_bad_input(void **state)
{
	struct env *e = *state;
	unsigned long a = map(e->mm, 4 * PG, RW, PRIV_ANON);
	char buf[4 * PG];
	struct hmm_dmirror_cmd c = { .addr = a,
				     .ptr = (uintptr_t)buf,
				     .npages = 1,
				     .cpages = 77,
				     .faults = 88 };
	struct dmirror *d;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);

	/* Misaligned address. */
	c.addr = a + 8;
	assert_int_equal(dmirror_ioctl(d, HMM_DMIRROR_READ, &c), -EINVAL);
	/* On error the command is left as it was. */
	assert_int_equal(c.cpages, 77);
	assert_int_equal(c.faults, 88);
	c.addr = a;
	/* npages 0, and npages running past the end of the address space. */
	c.npages = 0;
	assert_int_equal(dmirror_ioctl(d, HMM_DMIRROR_READ, &c), -EINVAL);
	c.npages = (~0UL - a) / PG + 1;
	assert_int_equal(dmirror_ioctl(d, HMM_DMIRROR_READ, &c), -EINVAL);
	c.npages = 1UL << 52; /* npages << PAGE_SHIFT wraps to 0 */
	assert_int_equal(dmirror_ioctl(d, HMM_DMIRROR_WRITE, &c), -EINVAL);
	c.npages = (1UL << 52) + 1; /* wraps to one page: still refused */
	assert_int_equal(dmirror_ioctl(d, HMM_DMIRROR_READ, &c), -EINVAL);
	c.npages = 1;
	/* Unknown commands: a number past FLAGS, a raw nr, a wrong size. */
	assert_int_equal(dmirror_ioctl(d, HMM_DMIRROR_IOWR(0x0a), &c), -EINVAL);
	assert_int_equal(dmirror_ioctl(d, 0x00, &c), -EINVAL);
	assert_int_equal(dmirror_ioctl(d, HMM_DMIRROR_READ + (1U << 16), &c),
			 -EINVAL);
	/* A NULL command or buffer faults, a NULL file has no private data. */
	assert_int_equal(dmirror_ioctl(d, HMM_DMIRROR_READ, NULL), -EFAULT);
	c.ptr = 0;
	assert_int_equal(dmirror_ioctl(d, HMM_DMIRROR_READ, &c), -EFAULT);
	assert_int_equal(dmirror_ioctl(d, HMM_DMIRROR_WRITE, &c), -EFAULT);
	assert_int_equal(dmirror_ioctl(d, HMM_DMIRROR_SNAPSHOT, &c), -EFAULT);
	c.ptr = (uintptr_t)buf;
	assert_int_equal(dmirror_ioctl(NULL, HMM_DMIRROR_READ, &c), -EINVAL);
	/* Holes and unreadable VMAs cannot migrate; a device read faults. */
	ASSERT_OK(hetmm_munmap(e->mm, a + 2 * PG, PG));
	assert_int_equal(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, 4, NULL),
			 -EINVAL);
	assert_int_equal(
		cmd(d, HMM_DMIRROR_MIGRATE_TO_SYS, a + 2 * PG, buf, 1, NULL),
		-EINVAL);
	assert_int_equal(cmd(d, HMM_DMIRROR_READ, a, buf, 4, NULL), -EFAULT);
	ASSERT_OK(hetmm_mprotect(e->mm, a, PG, PROT_NONE));
	assert_int_equal(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, 1, NULL),
			 -EINVAL);
	/*
	 * And a good command works. (The failed migration above moved the
	 * two pages before the hole: page 1 is on the device, mapped.)
	 */
	ASSERT_OK(cmd(d, HMM_DMIRROR_READ, a + PG, buf, 1, &c));
	assert_int_equal(c.cpages, 1);
	assert_int_equal(c.faults, 0);
	ASSERT_OK(cmd(d, HMM_DMIRROR_SNAPSHOT, a, buf, 2, NULL));
	assert_int_equal((unsigned char)buf[0], HMM_DMIRROR_PROT_ERROR);
	assert_int_equal((unsigned char)buf[1],
			 HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL |
				 HMM_DMIRROR_PROT_WRITE);
	check_ok(e->m);

	/* After close: no private data any more; closing twice is fine. */
	dmirror_release(d);
	assert_int_equal(cmd(d, HMM_DMIRROR_READ, a + PG, buf, 1, NULL),
			 -EINVAL);
	assert_int_equal(cmd(d, HMM_DMIRROR_RELEASE, a + PG, buf, 1, NULL),
			 -EINVAL);
	dmirror_release(d);
	assert_int_equal(dmirror_debug_store(d, a, 0, 0), -EINVAL);
	check_ok(e->m);
}

/* A process that exited leaves its mirror without an address space. */
static void test_commands_after_exit(void **state)
{
	struct env *e = *state;
	struct mm_struct *p = hetmm_process_create(e->m);
	unsigned long a;
	char buf[PG];
	struct dmirror *d;

	assert_false(IS_ERR(p));
	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, p);
	a = map(p, PG, RW, PRIV_ANON);
	cpu_fill(p, a, 1, 5);
	ASSERT_OK(cmd(d, HMM_DMIRROR_READ, a, buf, 1, NULL));
	ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, 1, NULL));
	buf_expect(buf, 1, 5);
	hetmm_exit(p);
	/* The device page went with the process. */
	assert_int_equal(counters(e->m, 0).in_service, 0);
	check_ok(e->m);

	assert_int_equal(cmd(d, HMM_DMIRROR_READ, a, buf, 1, NULL), -EINVAL);
	assert_int_equal(cmd(d, HMM_DMIRROR_WRITE, a, buf, 1, NULL), -EINVAL);
	assert_int_equal(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, 1, NULL),
			 -EINVAL);
	assert_int_equal(cmd(d, HMM_DMIRROR_MIGRATE_TO_SYS, a, buf, 1, NULL),
			 -EINVAL);
	assert_int_equal(cmd(d, HMM_DMIRROR_SNAPSHOT, a, buf, 1, NULL),
			 -EINVAL);
	assert_int_equal(cmd(d, HMM_DMIRROR_EXCLUSIVE, a, buf, 1, NULL),
			 -EINVAL);
	/* Commands that do not touch the address space still work. */
	ASSERT_OK(cmd(d, HMM_DMIRROR_CHECK_EXCLUSIVE, a, buf, 1, NULL));
	assert_int_equal(cmd(d, HMM_DMIRROR_FLAGS, a, buf, 0, NULL), -EINVAL);
	ASSERT_OK(cmd(d, HMM_DMIRROR_FLAGS, a, buf, 1, NULL));
	ASSERT_OK(cmd(d, HMM_DMIRROR_RELEASE, a, buf, 1, NULL));
	check_ok(e->m);
	dmirror_release(d);
	check_ok(e->m);
}

static void test_counters(void **state)
{
	struct env *e = *state;
	unsigned long n = 64, a, t;
	char *buf = malloc(SZ_2M);
	struct dmirror *d0, *d2;
	struct dmirror_counters c;

	ASSERT_OK(dmirror_probe(e->m, 1, 1));
	d0 = open_ok(e->m, 0, e->mm);
	d2 = open_ok(e->m, 2, e->mm);
	c = counters(e->m, 0);
	assert_int_equal(c.calloc, 0);
	assert_int_equal(c.cfree, 0);
	assert_int_equal(c.in_service, 0);

	/* Private: n pages in, then the CPU faults them back one by one. */
	a = map(e->mm, n * PG, RW, PRIV_ANON);
	cpu_fill(e->mm, a, n, 1);
	ASSERT_OK(cmd(d0, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL));
	c = counters(e->m, 0);
	assert_int_equal(c.calloc, n);
	assert_int_equal(c.cfree, 0);
	assert_int_equal(c.in_service, n);
	check_ok(e->m);
	cpu_expect(e->mm, a, n, 1);
	c = counters(e->m, 0);
	assert_int_equal(c.calloc, n);
	assert_int_equal(c.cfree, n);
	assert_int_equal(c.in_service, 0);

	/* A THP goes in as one 512-page device folio. */
	t = thp_map(e->mm, 1);
	cpu_fill(e->mm, t, 512, 2);
	ASSERT_OK(cmd(d0, HMM_DMIRROR_MIGRATE_TO_DEV, t, buf, 512, NULL));
	c = counters(e->m, 0);
	assert_int_equal(c.calloc, n + 512);
	assert_int_equal(c.in_service, 512);
	check_ok(e->m);
	/* munmap frees it on the device. */
	ASSERT_OK(hetmm_munmap(e->mm, t, SZ_2M));
	c = counters(e->m, 0);
	assert_int_equal(c.cfree, n + 512);
	assert_int_equal(c.in_service, 0);

	/* Coherent: in and explicitly back out. */
	ASSERT_OK(cmd(d2, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL));
	assert_int_equal(counters(e->m, 2).in_service, n);
	{
		struct hmm_dmirror_cmd out;

		ASSERT_OK(cmd(d2, HMM_DMIRROR_MIGRATE_TO_SYS, a, buf, n, &out));
		assert_int_equal(out.cpages, n);
	}
	c = counters(e->m, 2);
	assert_int_equal(c.calloc, n);
	assert_int_equal(c.cfree, n);
	assert_int_equal(c.in_service, 0);
	cpu_expect(e->mm, a, n, 1);
	check_ok(e->m);
	dmirror_release(d0);
	dmirror_release(d2);
	free(buf);
}

/* 129 THPs: the first chunk holds 128 device folios, then it grows. */
static void test_chunk_growth(void **state)
{
	struct env *e = *state;
	unsigned long nthp = DEVMEM_CHUNK_SIZE / SZ_2M + 1, t;
	char *buf = malloc(SZ_2M);
	struct dmirror *d0, *d2;
	struct hmm_dmirror_cmd out;

	ASSERT_OK(dmirror_probe(e->m, 1, 1));
	d0 = open_ok(e->m, 0, e->mm);
	d2 = open_ok(e->m, 2, e->mm);
	t = thp_map(e->mm, nthp);
	ASSERT_OK(hetmm_madvise(e->mm, t, nthp * SZ_2M, MADV_POPULATE_WRITE));
	for (unsigned long i = 0; i < nthp; i++)
		cpu_fill(e->mm, t + i * SZ_2M, 1, i);

	for (unsigned long i = 0; i < nthp; i++) {
		ASSERT_OK(cmd(d0, HMM_DMIRROR_MIGRATE_TO_DEV, t + i * SZ_2M,
			      buf, 512, &out));
		assert_int_equal(out.cpages, 512);
		expect_page((uint64_t *)buf, 0, i);
		assert_int_equal(counters(e->m, 0).nr_chunks,
				 i < nthp - 1 ? 1 : 2);
	}
	assert_int_equal(counters(e->m, 0).in_service, nthp * 512);
	check_ok(e->m);

	/* A coherent device has one fixed region: it cannot grow. Move the
	 * pages back from device 0 and fill device 2 instead. */
	for (unsigned long i = 0; i < nthp; i++)
		cpu_expect(e->mm, t + i * SZ_2M, 1, i);
	assert_int_equal(counters(e->m, 0).in_service, 0);
	for (unsigned long i = 0; i < nthp - 1; i++)
		ASSERT_OK(cmd(d2, HMM_DMIRROR_MIGRATE_TO_DEV, t + i * SZ_2M,
			      buf, 512, NULL));
	assert_int_equal(counters(e->m, 2).in_service, (nthp - 1) * 512);
	assert_int_equal(cmd(d2, HMM_DMIRROR_MIGRATE_TO_DEV,
			     t + (nthp - 1) * SZ_2M, buf, 512, NULL),
			 -ENOENT);
	assert_int_equal(counters(e->m, 2).nr_chunks, 1);
	check_ok(e->m);
	for (unsigned long i = 0; i < nthp; i++)
		cpu_expect(e->mm, t + i * SZ_2M, 1, i);
	ASSERT_OK(hetmm_munmap(e->mm, t, nthp * SZ_2M));
	assert_int_equal(counters(e->m, 2).in_service, 0);
	dmirror_release(d0);
	dmirror_release(d2);
	check_ok(e->m);
	free(buf);
}

static void test_release_and_reuse(void **state)
{
	struct env *e = *state;
	unsigned long n = 32, a;
	char *buf = malloc(n * PG);
	unsigned char snap[32];
	struct dmirror *d;

	ASSERT_OK(dmirror_probe(e->m, 1, 1));
	for (unsigned int minor = 0; minor <= 2; minor += 2) {
		d = open_ok(e->m, minor, e->mm);
		a = map(e->mm, n * PG, RW, PRIV_ANON);
		cpu_fill(e->mm, a, n, minor + 10);
		ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL));
		buf_expect(buf, n, minor + 10);

		ASSERT_OK(cmd(d, HMM_DMIRROR_RELEASE, a, buf, n, NULL));
		assert_int_equal(counters(e->m, minor).nr_chunks, 0);
		assert_int_equal(counters(e->m, minor).in_service, 0);
		check_ok(e->m);
		/* Everything came back to system memory. */
		ASSERT_OK(cmd(d, HMM_DMIRROR_SNAPSHOT, a, snap, n, NULL));
		for (unsigned long i = 0; i < n; i++)
			assert_int_equal(snap[i], HMM_DMIRROR_PROT_WRITE);
		cpu_expect(e->mm, a, n, minor + 10);
		/* RELEASE with nothing mapped is fine too. */
		ASSERT_OK(cmd(d, HMM_DMIRROR_RELEASE, a, buf, n, NULL));

		/* The next migration maps a new chunk. */
		memset(buf, 0, n * PG);
		ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL));
		buf_expect(buf, n, minor + 10);
		assert_int_equal(counters(e->m, minor).nr_chunks, 1);
		ASSERT_OK(cmd(d, HMM_DMIRROR_SNAPSHOT, a, snap, n, NULL));
		for (unsigned long i = 0; i < n; i++)
			assert_int_equal(
				snap[i],
				(minor ? HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL :
					 HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL) |
					HMM_DMIRROR_PROT_WRITE);
		check_ok(e->m);
		cpu_expect(e->mm, a, n, minor + 10);
		ASSERT_OK(hetmm_munmap(e->mm, a, n * PG));
		dmirror_release(d);
	}
	free(buf);
}

static void test_fail_alloc(void **state)
{
	struct env *e = *state;
	unsigned long n = 8, a, t;
	char *buf = malloc(SZ_2M);
	unsigned char snap[8];
	struct hmm_dmirror_cmd out;
	struct dmirror *d;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);

	/* To the device, small pages: the first one stays behind. */
	a = map(e->mm, n * PG, RW, PRIV_ANON);
	cpu_fill(e->mm, a, n, 3);
	ASSERT_OK(cmd(d, HMM_DMIRROR_FLAGS, a, buf, HMM_DMIRROR_FLAG_FAIL_ALLOC,
		      NULL));
	assert_int_equal(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL),
			 -ENOENT);
	ASSERT_OK(cmd(d, HMM_DMIRROR_SNAPSHOT, a, snap, n, NULL));
	assert_int_equal(snap[0], HMM_DMIRROR_PROT_WRITE);
	for (unsigned long i = 1; i < n; i++)
		assert_int_equal(snap[i], HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL |
						  HMM_DMIRROR_PROT_WRITE);
	check_ok(e->m);
	/* The flag was used up: the next migration takes the rest. */
	ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL));
	buf_expect(buf, n, 3);

	/* Back to the system, small pages: out of memory, nothing moves. */
	ASSERT_OK(cmd(d, HMM_DMIRROR_FLAGS, a, buf, HMM_DMIRROR_FLAG_FAIL_ALLOC,
		      NULL));
	assert_int_equal(cmd(d, HMM_DMIRROR_MIGRATE_TO_SYS, a, buf, n, NULL),
			 -ENOMEM);
	ASSERT_OK(cmd(d, HMM_DMIRROR_SNAPSHOT, a, snap, n, NULL));
	assert_int_equal(snap[0], HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL |
					  HMM_DMIRROR_PROT_WRITE);
	check_ok(e->m);
	ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_SYS, a, buf, n, &out));
	assert_int_equal(out.cpages, n);
	cpu_expect(e->mm, a, n, 3);

	/* A THP to the device: single device pages instead of a folio. */
	t = thp_map(e->mm, 1);
	cpu_fill(e->mm, t, 512, 4);
	ASSERT_OK(cmd(d, HMM_DMIRROR_FLAGS, t, buf, HMM_DMIRROR_FLAG_FAIL_ALLOC,
		      NULL));
	ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, t, buf, 512, &out));
	assert_int_equal(out.cpages, 512);
	buf_expect(buf, 512, 4);
	check_ok(e->m);
	ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_SYS, t, buf, 512, NULL));
	cpu_expect(e->mm, t, 512, 4);

	/*
	 * A device THP back: single system pages instead of a THP. (A new
	 * THP: the old one was split by the single-page migration.)
	 */
	ASSERT_OK(hetmm_munmap(e->mm, t, SZ_2M));
	t = thp_map(e->mm, 1);
	cpu_fill(e->mm, t, 512, 4);
	ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, t, buf, 512, NULL));
	assert_int_equal(counters(e->m, 0).in_service, 512);
	ASSERT_OK(cmd(d, HMM_DMIRROR_FLAGS, t, buf, HMM_DMIRROR_FLAG_FAIL_ALLOC,
		      NULL));
	ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_SYS, t, buf, 512, &out));
	assert_int_equal(out.cpages, 512);
	assert_int_equal(counters(e->m, 0).in_service, 0);
	check_ok(e->m);
	cpu_expect(e->mm, t, 512, 4);
	check_ok(e->m);

	/*
	 * A CPU fault on the PMD-mapped device THP with the flag set: the
	 * fault handler falls back to single pages, splitting the device
	 * folio under the faulting page.
	 */
	ASSERT_OK(hetmm_munmap(e->mm, t, SZ_2M));
	t = thp_map(e->mm, 1);
	cpu_fill(e->mm, t, 512, 5);
	ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, t, buf, 512, NULL));
	assert_int_equal(counters(e->m, 0).in_service, 512);
	ASSERT_OK(cmd(d, HMM_DMIRROR_FLAGS, t, buf, HMM_DMIRROR_FLAG_FAIL_ALLOC,
		      NULL));
	/* (page 7 alone: its words are those of page 0 of seed 5 ^ 7 << 20) */
	cpu_expect(e->mm, t + 7 * PG, 1, 5 ^ (7UL << 20));
	check_ok(e->m);
	cpu_expect(e->mm, t, 512, 5);
	assert_int_equal(counters(e->m, 0).in_service, 0);
	check_ok(e->m);
	dmirror_release(d);
	free(buf);
}

/* Unloading with pages on both kinds of device loses nothing. */
static void test_remove_with_pages(void **state)
{
	struct env *e = *state;
	unsigned long n = 48, a, b, t;
	char *buf = malloc(SZ_2M);
	struct dmirror *d0, *d2;

	ASSERT_OK(dmirror_probe(e->m, 2, 2));
	d0 = open_ok(e->m, 0, e->mm);
	d2 = open_ok(e->m, 2, e->mm);
	a = map(e->mm, n * PG, RW, PRIV_ANON);
	b = map(e->mm, n * PG, RW, PRIV_ANON);
	t = thp_map(e->mm, 1);
	cpu_fill(e->mm, a, n, 21);
	cpu_fill(e->mm, b, n, 22);
	cpu_fill(e->mm, t, 512, 23);
	ASSERT_OK(cmd(d0, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL));
	ASSERT_OK(cmd(d2, HMM_DMIRROR_MIGRATE_TO_DEV, b, buf, n, NULL));
	ASSERT_OK(cmd(d0, HMM_DMIRROR_MIGRATE_TO_DEV, t, buf, 512, NULL));
	assert_int_equal(counters(e->m, 0).in_service, n + 512);
	assert_int_equal(counters(e->m, 2).in_service, n);
	check_ok(e->m);

	/* Mirrors still open: remove closes them. */
	dmirror_remove(e->m);
	assert_int_equal(hetmm_nr_pgmaps(e->m), 0);
	check_ok(e->m);
	cpu_expect(e->mm, a, n, 21);
	cpu_expect(e->mm, b, n, 22);
	cpu_expect(e->mm, t, 512, 23);
	/* The closed mirrors answer like closed files. */
	assert_int_equal(cmd(d0, HMM_DMIRROR_READ, a, buf, 1, NULL), -EINVAL);
	dmirror_release(d0);
	dmirror_release(d2);
	check_ok(e->m);
	free(buf);
}

/* Closing a file evicts the device, whoever's pages they are. */
static void test_close_evicts(void **state)
{
	struct env *e = *state;
	unsigned long n = 16, a;
	char *buf = malloc(n * PG);
	struct mm_struct *p2 = hetmm_process_create(e->m);
	struct dmirror *d, *other;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	assert_false(IS_ERR(p2));
	d = open_ok(e->m, 0, e->mm);
	other = open_ok(e->m, 0, p2);
	a = map(e->mm, n * PG, RW, PRIV_ANON);
	cpu_fill(e->mm, a, n, 31);
	ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL));
	assert_int_equal(counters(e->m, 0).in_service, n);
	dmirror_release(other);
	assert_int_equal(counters(e->m, 0).in_service, 0);
	check_ok(e->m);
	cpu_expect(e->mm, a, n, 31);
	dmirror_release(d);
	hetmm_exit(p2);
	check_ok(e->m);
	free(buf);
}

/* Two mirrors of the same device in one process stay coherent. */
static void test_two_mirrors_one_mm(void **state)
{
	struct env *e = *state;
	unsigned long n = 16, a, pfn, tag;
	char *buf = malloc(n * PG);
	struct dmirror *da, *db;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	da = open_ok(e->m, 0, e->mm);
	db = open_ok(e->m, 0, e->mm);
	a = map(e->mm, n * PG, RW, PRIV_ANON);
	cpu_fill(e->mm, a, n, 41);
	ASSERT_OK(cmd(da, HMM_DMIRROR_READ, a, buf, n, NULL));
	ASSERT_OK(dmirror_debug_lookup(da, a, &pfn, &tag));
	assert_int_equal(tag, DPT_XA_TAG_WRITE);
	/* B migrates: A's entries for the old system pages must go. */
	ASSERT_OK(cmd(db, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL));
	check_ok(e->m);
	/* B's CPU fault back: B's and A's views of the device pages go. */
	ASSERT_OK(cmd(da, HMM_DMIRROR_READ, a, buf, n, NULL));
	buf_expect(buf, n, 41);
	cpu_expect(e->mm, a, n, 41);
	check_ok(e->m);
	assert_int_equal(dmirror_debug_lookup(da, a, NULL, NULL), -ENOENT);
	assert_int_equal(dmirror_debug_lookup(db, a, NULL, NULL), -ENOENT);
	dmirror_release(da);
	dmirror_release(db);
	free(buf);
}

/* CPU-side changes remove the device's view through the notifier. */
static void test_invalidation(void **state)
{
	struct env *e = *state;
	unsigned long n = 8, a;
	char *buf = malloc(n * PG);
	unsigned long tag;
	struct dmirror *d;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);
	a = map(e->mm, n * PG, RW, PRIV_ANON);
	cpu_fill(e->mm, a, n, 51);
	ASSERT_OK(cmd(d, HMM_DMIRROR_WRITE, a, buf, n, NULL));
	ASSERT_OK(dmirror_debug_lookup(d, a, NULL, &tag));
	assert_int_equal(tag, DPT_XA_TAG_WRITE);
	/* mprotect read-only: the writable view goes. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, n * PG, PROT_READ));
	assert_int_equal(dmirror_debug_lookup(d, a, NULL, NULL), -ENOENT);
	ASSERT_OK(cmd(d, HMM_DMIRROR_READ, a, buf, n, NULL));
	ASSERT_OK(dmirror_debug_lookup(d, a, NULL, &tag));
	assert_int_equal(tag, DPT_XA_TAG_READ);
	check_ok(e->m);
	/* MADV_DONTNEED and munmap. */
	ASSERT_OK(hetmm_madvise(e->mm, a, PG, MADV_DONTNEED));
	assert_int_equal(dmirror_debug_lookup(d, a, NULL, NULL), -ENOENT);
	ASSERT_OK(dmirror_debug_lookup(d, a + PG, NULL, NULL));
	ASSERT_OK(hetmm_munmap(e->mm, a, n * PG));
	assert_int_equal(dmirror_debug_lookup(d, a + PG, NULL, NULL), -ENOENT);
	check_ok(e->m);
	dmirror_release(d);
	free(buf);
}

/* An injected device allocation failure skips pages, loses nothing. */
static void test_device_alloc_injection(void **state)
{
	struct env *e = *state;
	unsigned long n = 16, a;
	char *buf = malloc(n * PG);
	struct dmirror *d;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);
	a = map(e->mm, n * PG, RW, PRIV_ANON);
	cpu_fill(e->mm, a, n, 61);
	ASSERT_OK(hetmm_fault_set(&e->m->faults, HETMM_FAULT_device_alloc,
				  FAULT_EVERY, 3, 0));
	assert_int_equal(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL),
			 -ENOENT);
	assert_true(hetmm_fault_failures(&e->m->faults,
					 HETMM_FAULT_device_alloc) > 0);
	hetmm_fault_reset(&e->m->faults);
	check_ok(e->m);
	cpu_expect(e->mm, a, n, 61);
	ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL));
	buf_expect(buf, n, 61);
	check_ok(e->m);
	dmirror_release(d);
	free(buf);
}

/* The checker compares every device entry with the CPU page table. */
static void test_checker_catches_corruption(void **state)
{
	struct env *e = *state;
	unsigned long n = 4, a, pfn, tag;
	char *buf = malloc(n * PG);
	struct mm_struct *p2 = hetmm_process_create(e->m);
	struct dmirror *d, *d2;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);
	a = map(e->mm, n * PG, RW, PRIV_ANON);
	cpu_fill(e->mm, a, n, 71);
	ASSERT_OK(cmd(d, HMM_DMIRROR_READ, a, buf, n, NULL));
	check_ok(e->m);
	ASSERT_OK(dmirror_debug_lookup(d, a, &pfn, &tag));

	/* The wrong page. */
	ASSERT_OK(dmirror_debug_store(d, a, pfn + 1, tag));
	assert_int_equal(hetmm_check(e->m), -EUCLEAN);
	assert_non_null(strstr(hetmm_check_report(e->m), "dmirror0"));
	ASSERT_OK(dmirror_debug_store(d, a, pfn, tag));
	check_ok(e->m);

	/* Write access the CPU does not have. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, n * PG, PROT_READ));
	ASSERT_OK(cmd(d, HMM_DMIRROR_READ, a, buf, n, NULL));
	check_ok(e->m);
	ASSERT_OK(dmirror_debug_store(d, a, pfn, DPT_XA_TAG_WRITE));
	assert_int_equal(hetmm_check(e->m), -EUCLEAN);
	assert_non_null(strstr(hetmm_check_report(e->m), "read-only"));
	ASSERT_OK(dmirror_debug_store(d, a, -1UL, 0));
	check_ok(e->m);

	/* An address the CPU does not map at all, and an atomic tag
	 * without a device-exclusive entry. */
	ASSERT_OK(dmirror_debug_store(d, a + 64 * PG, pfn, DPT_XA_TAG_READ));
	assert_int_equal(hetmm_check(e->m), -EUCLEAN);
	ASSERT_OK(dmirror_debug_store(d, a + 64 * PG, -1UL, 0));
	ASSERT_OK(dmirror_debug_store(d, a, pfn, DPT_XA_TAG_ATOMIC));
	assert_int_equal(hetmm_check(e->m), -EUCLEAN);
	ASSERT_OK(dmirror_debug_store(d, a, -1UL, 0));
	check_ok(e->m);

	/* Entries left behind by a process that exited. */
	assert_false(IS_ERR(p2));
	d2 = open_ok(e->m, 0, p2);
	hetmm_exit(p2);
	check_ok(e->m);
	ASSERT_OK(dmirror_debug_store(d2, a, pfn, DPT_XA_TAG_READ));
	assert_int_equal(hetmm_check(e->m), -EUCLEAN);
	assert_non_null(strstr(hetmm_check_report(e->m), "exited"));
	ASSERT_OK(dmirror_debug_store(d2, a, -1UL, 0));
	check_ok(e->m);
	dmirror_release(d2);
	dmirror_release(d);
	free(buf);
}

struct worker {
	struct hetmm_machine *m;
	struct mm_struct *mm;
	struct dmirror *d;
	unsigned int cpu;
	unsigned long addr, npages;
	uint64_t seed;
	unsigned int rounds;
	int err;
};

/* Not a cmocka context: errors go to w->err. */
static void *worker_run(void *arg)
{
	struct worker *w = arg;
	char *buf = malloc(w->npages * PG);
	uint64_t page[PG / 8];

	for (unsigned int r = 0; r < w->rounds && !w->err; r++) {
		struct hmm_dmirror_cmd c = { .addr = w->addr,
					     .ptr = (uintptr_t)buf,
					     .npages = w->npages };
		unsigned long p = r % w->npages;

		switch (r % 4) {
		case 0:
			/* Pages on the other device stay there: -ENOENT. */
			w->err = dmirror_ioctl(w->d, HMM_DMIRROR_MIGRATE_TO_DEV,
					       &c);
			if (w->err == -ENOENT) {
				w->err = 0;
				continue;
			}
			break;
		case 1:
			w->err = dmirror_ioctl(w->d, HMM_DMIRROR_READ, &c);
			break;
		case 2:
			w->err = hetmm_cpu_read(w->mm, w->cpu, w->addr + p * PG,
						page, PG);
			for (unsigned long i = 0; !w->err && i < PG / 8; i++)
				if (page[i] != word(w->seed, p, i))
					w->err = -EIO;
			continue;
		default:
			w->err = dmirror_ioctl(w->d, HMM_DMIRROR_MIGRATE_TO_SYS,
					       &c);
			continue;
		}
		for (unsigned long q = 0; q < w->npages && !w->err; q++)
			for (unsigned long i = 0; i < PG / 8; i++)
				if (((uint64_t *)buf)[q * PG / 8 + i] !=
				    word(w->seed, q, i)) {
					w->err = -EIO;
					break;
				}
	}
	free(buf);
	return NULL;
}

/*
 * Two devices, and two mirrors of the first in the same process, migrate
 * the same pages both ways, read them and fault them back concurrently.
 */
static void test_concurrent(void **state)
{
	struct env *e = *state;
	const unsigned int minors[] = { 0, 1, 0 };
	unsigned long n = 32, a;
	struct worker w[3];
	pthread_t th[3];

	ASSERT_OK(dmirror_probe(e->m, 2, 0));
	a = map(e->mm, n * PG, RW, PRIV_ANON);
	cpu_fill(e->mm, a, n, 81);
	for (int i = 0; i < 3; i++) {
		w[i] = (struct worker){ .m = e->m,
					.mm = e->mm,
					.d = open_ok(e->m, minors[i], e->mm),
					.cpu = 1 + i,
					.addr = a,
					.npages = n,
					.seed = 81,
					.rounds = test_scale(80, 800) };
	}
	for (int i = 0; i < 3; i++)
		assert_int_equal(
			pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		if (w[i].err)
			fail_msg("worker %d: %s", i, hetmm_errname(w[i].err));
	}
	check_ok(e->m);
	cpu_expect(e->mm, a, n, 81);
	for (int i = 0; i < 3; i++)
		dmirror_release(w[i].d);
	check_ok(e->m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_probe_and_open_errors,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_commands_after_exit,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_counters, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_chunk_growth,
						env_setup_big, env_teardown),
		cmocka_unit_test_setup_teardown(test_release_and_reuse,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_fail_alloc, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_remove_with_pages,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_close_evicts, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_two_mirrors_one_mm,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_invalidation, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_device_alloc_injection,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_checker_catches_corruption,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, env_setup,
						env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
