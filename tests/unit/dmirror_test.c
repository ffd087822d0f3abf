// SPDX-License-Identifier: MIT
/*
 * dmirror_test.c - the dmirror driver itself: module load and open
 * errors, the ioctl's argument checks (spec 5.4), the allocator's
 * counters and chunk growth, RELEASE and reuse, FAIL_ALLOC in both
 * directions, unloading with pages on the devices, eviction on close,
 * two mirrors of one process, fault injection (device allocation, and
 * copies failing in each direction), a small concurrent run,
 * the "dmirror" checker catching a corrupted device page table, and the
 * device-file mmap: vm_insert_page()'s rules, private (COW) and shared
 * mappings of driver pages, fork, mremap, munmap and exit releasing them,
 * and the mm checker's rule for such pages.
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

/*
 * A copy the device's engine fails (the device_copy site; copy_page
 * likewise) leaves the page where it was, in every direction: MIGRATE_TO_DEV
 * reads back -ENOENT, MIGRATE_TO_SYS stops with -EIO after committing the
 * pages before it, and a CPU fault on a device page fails with -EFAULT
 * (SIGBUS) and can be retried.
 */
static void test_device_copy_injection(void **state)
{
	struct env *e = *state;
	unsigned long n = 4, a;
	char *buf = malloc(n * PG);
	struct hmm_dmirror_cmd c;
	unsigned char snap[4];
	struct dmirror *d;
	uint64_t w;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);
	a = map(e->mm, n * PG, RW, PRIV_ANON);
	cpu_fill(e->mm, a, n, 67);

	/* To the device: the second page stays in system memory. */
	ASSERT_OK(hetmm_fault_set(&e->m->faults, HETMM_FAULT_device_copy,
				  FAULT_NTH, 2, 0));
	assert_int_equal(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, &c),
			 -ENOENT);
	assert_int_equal(
		hetmm_fault_failures(&e->m->faults, HETMM_FAULT_device_copy),
		1);
	hetmm_fault_reset(&e->m->faults);
	assert_int_equal(counters(e->m, 0).in_service, n - 1);
	ASSERT_OK(cmd(d, HMM_DMIRROR_SNAPSHOT, a, snap, n, NULL));
	assert_int_equal(snap[1], HMM_DMIRROR_PROT_WRITE);
	check_ok(e->m);
	ASSERT_OK(cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, a, buf, n, NULL));
	buf_expect(buf, n, 67);
	assert_int_equal(counters(e->m, 0).in_service, n);

	/* Back: the first page comes back, the second fails, the rest wait. */
	ASSERT_OK(hetmm_fault_set(&e->m->faults, HETMM_FAULT_device_copy,
				  FAULT_NTH, 2, 0));
	assert_int_equal(cmd(d, HMM_DMIRROR_MIGRATE_TO_SYS, a, buf, n, &c),
			 -EIO);
	hetmm_fault_reset(&e->m->faults);
	assert_int_equal(counters(e->m, 0).in_service, n - 1);
	ASSERT_OK(cmd(d, HMM_DMIRROR_SNAPSHOT, a, snap, n, NULL));
	assert_int_equal(snap[0], HMM_DMIRROR_PROT_WRITE);
	assert_int_equal(snap[1], HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL |
					  HMM_DMIRROR_PROT_WRITE);
	check_ok(e->m);

	/* A CPU fault whose copy fails: SIGBUS, the page stays put. */
	ASSERT_OK(hetmm_fault_set(&e->m->faults, HETMM_FAULT_copy_page,
				  FAULT_NTH, 1, 0));
	assert_int_equal(hetmm_cpu_read(e->mm, 0, a + PG, &w, sizeof(w)),
			 -EFAULT);
	assert_int_equal(
		hetmm_fault_failures(&e->m->faults, HETMM_FAULT_copy_page), 1);
	hetmm_fault_reset(&e->m->faults);
	assert_int_equal(counters(e->m, 0).in_service, n - 1);
	check_ok(e->m);

	/* Nothing was lost: every page reads back, faulting home. */
	cpu_expect(e->mm, a, n, 67);
	assert_int_equal(counters(e->m, 0).in_service, 0);
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

/* ------------------------------------------ device-file mmap (MIXEDMAP) */

/* The PTE at @addr (none if no table), read under mmap_lock. */
static pte_t pte_at(struct mm_struct *mm, unsigned long addr)
{
	pte_t e = __pte(0);
	pmd_t *pmd;

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	if (pmd && pmd_table(ptep_get(pmd)))
		e = ptep_get(pte_offset(mm, pmd, addr));
	mmap_read_unlock(mm);
	return e;
}

static unsigned long vm_flags_at(struct mm_struct *mm, unsigned long addr)
{
	struct vm_area_struct *vma;
	unsigned long flags;

	mmap_read_lock(mm);
	vma = vma_lookup(mm, addr);
	assert_non_null(vma);
	flags = vma->vm_flags;
	mmap_read_unlock(mm);
	return flags;
}

/* The page a present, normal (not special) PTE at @addr maps. */
static struct page *mapped_page(struct hetmm_machine *m, struct mm_struct *mm,
				unsigned long addr)
{
	pte_t e = pte_at(mm, addr);

	assert_true(pte_present(e));
	assert_false(pte_special(e));
	return pfn_to_page(m, pte_pfn(e));
}

/* A driver page inserted once: the PTE's reference and mapcount only. */
static void expect_driver_page(struct page *page, int mappings)
{
	assert_false(folio_test_anon(page_folio(page)));
	assert_null(page->mapping);
	assert_int_equal(page_mapcount(page), mappings);
	assert_int_equal(folio_ref_count(page_folio(page)), mappings);
}

/*
 *   dmirror_mmap private RW, 4 pages: [ d0 | d1 | d2 | d3 ]  read-only PTEs
 *   CPU write to page 0:              [ A  | d1 | d2 | d3 ]  COW copy
 *   device WRITE to page 1:           [ A  | A' | d2 | d3 ]
 *   munmap: every page freed.
 */
static void test_mmap_private(void **state)
{
	struct env *e = *state;
	unsigned long n = 4, a;
	struct page *pages[4];
	uint64_t buf[PG / 8];
	unsigned char snap[4];
	struct hmm_dmirror_cmd c;
	struct dmirror *d;
	long p;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);
	p = dmirror_mmap(d, e->mm, 0, n * PG, RW, MAP_PRIVATE);
	assert_true(p > 0);
	a = (unsigned long)p;
	assert_true(vm_flags_at(e->mm, a) & VM_MIXEDMAP);
	for (unsigned long i = 0; i < n; i++) {
		pte_t pte = pte_at(e->mm, a + i * PG);

		pages[i] = mapped_page(e->m, e->mm, a + i * PG);
		assert_false(pte_write(pte));
		expect_driver_page(pages[i], 1);
		for (unsigned long j = 0; j < i; j++)
			assert_ptr_not_equal(pages[i], pages[j]);
	}
	check_ok(e->m);

	/* Zeroed pages; the device reads them through hmm_range_fault. */
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + 3 * PG, buf, PG));
	for (unsigned long w = 0; w < PG / 8; w++)
		assert_true(buf[w] == 0);
	memset(buf, 0xa5, sizeof(buf));
	ASSERT_OK(cmd(d, HMM_DMIRROR_READ, a + 2 * PG, buf, 1, &c));
	assert_int_equal(c.cpages, 1);
	for (unsigned long w = 0; w < PG / 8; w++)
		assert_true(buf[w] == 0);
	ASSERT_OK(cmd(d, HMM_DMIRROR_SNAPSHOT, a, snap, n, &c));
	for (unsigned long i = 0; i < n; i++)
		assert_int_equal(snap[i], HMM_DMIRROR_PROT_READ);

	/* A CPU write copies the page; the driver page goes. */
	cpu_fill(e->mm, a, 1, 7);
	assert_true(folio_test_anon(page_folio(mapped_page(e->m, e->mm, a))));
	assert_int_equal(folio_ref_count(page_folio(pages[0])), 0);
	cpu_expect(e->mm, a, 1, 7);
	/* So does a device write (a write fault through hmm_range_fault). */
	for (unsigned long w = 0; w < PG / 8; w++)
		buf[w] = word(8, 0, w);
	ASSERT_OK(cmd(d, HMM_DMIRROR_WRITE, a + PG, buf, 1, &c));
	assert_int_equal(folio_ref_count(page_folio(pages[1])), 0);
	cpu_expect(e->mm, a + PG, 1, 8);
	ASSERT_OK(cmd(d, HMM_DMIRROR_SNAPSHOT, a, snap, n, &c));
	assert_int_equal(snap[0], HMM_DMIRROR_PROT_WRITE);
	assert_int_equal(snap[1], HMM_DMIRROR_PROT_WRITE);
	assert_int_equal(snap[2], HMM_DMIRROR_PROT_READ);
	check_ok(e->m);

	/* mprotect does not make a driver page writable in a COW mapping. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, n * PG, PROT_READ));
	ASSERT_OK(hetmm_mprotect(e->mm, a, n * PG, RW));
	assert_false(pte_write(pte_at(e->mm, a + 2 * PG)));
	check_ok(e->m);

	/* munmap of one page frees it, the rest stay. */
	ASSERT_OK(hetmm_munmap(e->mm, a + 2 * PG, PG));
	assert_int_equal(folio_ref_count(page_folio(pages[2])), 0);
	expect_driver_page(pages[3], 1);
	check_ok(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, a, n * PG));
	assert_int_equal(folio_ref_count(page_folio(pages[3])), 0);
	check_ok(e->m);
	dmirror_release(d);
}

/* A shared writable mapping of the device file: writable PTEs in place. */
static void test_mmap_shared(void **state)
{
	struct env *e = *state;
	unsigned long n = 3, a;
	unsigned char snap[3];
	struct hmm_dmirror_cmd c;
	struct page *page;
	struct dmirror *d;
	uint64_t buf[PG / 8];
	long p;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);
	p = dmirror_mmap(d, e->mm, 0, n * PG, RW, MAP_SHARED);
	assert_true(p > 0);
	a = (unsigned long)p;
	page = mapped_page(e->m, e->mm, a);
	assert_true(pte_write(pte_at(e->mm, a)));
	ASSERT_OK(cmd(d, HMM_DMIRROR_SNAPSHOT, a, snap, n, &c));
	for (unsigned long i = 0; i < n; i++)
		assert_int_equal(snap[i], HMM_DMIRROR_PROT_WRITE);
	/* Writes land in the driver's page itself, CPU and device alike. */
	cpu_fill(e->mm, a, 1, 21);
	assert_ptr_equal(mapped_page(e->m, e->mm, a), page);
	expect_driver_page(page, 1);
	ASSERT_OK(cmd(d, HMM_DMIRROR_READ, a, buf, 1, &c));
	buf_expect(buf, 1, 21);
	for (unsigned long w = 0; w < PG / 8; w++)
		buf[w] = word(22, 0, w);
	ASSERT_OK(cmd(d, HMM_DMIRROR_WRITE, a + PG, buf, 1, &c));
	cpu_expect(e->mm, a + PG, 1, 22);
	check_ok(e->m);
	/* Read-only again, then writable: a write fault in place. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, n * PG, PROT_READ));
	assert_false(pte_write(pte_at(e->mm, a)));
	check_ok(e->m);
	ASSERT_OK(hetmm_mprotect(e->mm, a, n * PG, RW));
	cpu_fill(e->mm, a, 1, 23);
	assert_ptr_equal(mapped_page(e->m, e->mm, a), page);
	check_ok(e->m);
	dmirror_release(d);
	/* The mapping outlives the file: exit releases the pages. */
	hetmm_exit(e->mm);
	e->mm = NULL;
	assert_int_equal(folio_ref_count(page_folio(page)), 0);
}

/*
 * fork shares the driver pages of a private mapping (reference and
 * mapcount + 1 each); a write in either process copies its own page.
 */
/* A driver mapping emptied by MADV_DONTNEED has no fault handler: SIGBUS. */
static void test_mmap_dontneed_sigbus(void **state)
{
	struct env *e = *state;
	struct dmirror *d;
	unsigned char b = 1;
	unsigned long a;
	long p;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);
	p = dmirror_mmap(d, e->mm, 0, 2 * PG, RW, MAP_SHARED);
	assert_true(p > 0);
	a = (unsigned long)p;
	ASSERT_OK(hetmm_madvise(e->mm, a, PG, MADV_DONTNEED));
	assert_int_equal(hetmm_cpu_read(e->mm, 0, a, &b, 1), -EFAULT);
	assert_int_equal(hetmm_cpu_write(e->mm, 0, a, &b, 1), -EFAULT);
	/* The page left mapped still works; nothing was made up. */
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, a + PG, &b, 1));
	check_ok(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, a, 2 * PG));
	check_ok(e->m);
	dmirror_release(d);
}

static void test_mmap_fork_shared(void **state)
{
	struct env *e = *state;
	struct mm_struct *child;
	struct page *page;
	struct dmirror *d;
	unsigned long a;
	long p;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);
	p = dmirror_mmap(d, e->mm, 0, PG, RW, MAP_SHARED);
	assert_true(p > 0);
	a = (unsigned long)p;
	page = mapped_page(e->m, e->mm, a);
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	assert_ptr_equal(mapped_page(e->m, child, a), page);
	expect_driver_page(page, 2);
	cpu_fill(child, a, 1, 41);
	cpu_expect(e->mm, a, 1, 41);
	check_ok(e->m);
	hetmm_exit(child);
	expect_driver_page(page, 1);
	check_ok(e->m);
	dmirror_release(d);
}

static void test_mmap_fork(void **state)
{
	struct env *e = *state;
	unsigned long n = 2, a;
	struct mm_struct *child;
	struct page *page;
	struct dmirror *d;
	long p;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);
	p = dmirror_mmap(d, e->mm, 0, n * PG, RW, MAP_PRIVATE);
	assert_true(p > 0);
	a = (unsigned long)p;
	page = mapped_page(e->m, e->mm, a);

	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	assert_ptr_equal(mapped_page(e->m, child, a), page);
	assert_true(vm_flags_at(child, a) & VM_MIXEDMAP);
	expect_driver_page(page, 2);
	check_ok(e->m);

	cpu_fill(child, a, 1, 31);
	cpu_expect(child, a, 1, 31);
	expect_driver_page(page, 1);
	assert_ptr_equal(mapped_page(e->m, e->mm, a), page);
	{
		uint64_t buf[PG / 8];

		ASSERT_OK(hetmm_cpu_read(e->mm, 0, a, buf, PG));
		for (unsigned long w = 0; w < PG / 8; w++)
			assert_true(buf[w] == 0);
	}
	check_ok(e->m);
	hetmm_exit(child);
	expect_driver_page(page, 1);
	check_ok(e->m);
	/* mremap moves the PTEs with their references. */
	page = mapped_page(e->m, e->mm, a + PG);
	p = hetmm_mremap(e->mm, a, n * PG, n * PG,
			 MREMAP_MAYMOVE | MREMAP_FIXED, a - 16 * PG);
	assert_int_equal(p, (long)(a - 16 * PG));
	assert_ptr_equal(mapped_page(e->m, e->mm, a - 15 * PG), page);
	assert_true(vm_flags_at(e->mm, a - 15 * PG) & VM_MIXEDMAP);
	expect_driver_page(page, 1);
	check_ok(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, a - 16 * PG, n * PG));
	assert_int_equal(folio_ref_count(page_folio(page)), 0);
	dmirror_release(d);
}

/* What a test mmap handler tries, and what came back. */
struct insert_rules {
	struct hetmm_machine *m;
	struct page *pages[3], *anon, *freed, *internal;
	int ret[12];
	unsigned long left, too_many;
	unsigned long flags_before, flags_after;
	int fail; /* the handler's own return value */
};

/*
 *   VMA:   a      a+1    a+2    a+3    a+4    a+5
 *          p0     zero   p1     -      -      -
 *   (vm_insert_pages of {p1, anon, p2} at a+2 stops at anon)
 */
static int rules_mmap(struct vm_area_struct *vma, void *priv)
{
	struct insert_rules *r = priv;
	unsigned long a = vma->vm_start, num;
	struct page *batch[3] = { r->pages[1], r->anon, r->pages[2] };
	int i = 0;

	r->flags_before = vma->vm_flags;
	r->ret[i++] = vm_insert_page(vma, a - PG, r->pages[0]);
	r->ret[i++] = vm_insert_page(vma, vma->vm_end, r->pages[0]);
	r->ret[i++] = vm_insert_page(vma, a, r->freed);
	r->ret[i++] = vm_insert_page(vma, a, r->anon);
	r->ret[i++] = vm_insert_page(vma, a, r->internal);
	r->ret[i++] = vm_insert_page(vma, a, r->pages[0]);
	r->flags_after = vma->vm_flags;
	r->ret[i++] = vm_insert_page(vma, a, r->pages[1]);
	r->ret[i++] = vm_insert_page(vma, a + PG, r->m->zero_page);
	num = 3;
	r->ret[i++] = vm_insert_pages(vma, a + 2 * PG, batch, &num);
	r->left = num;
	r->too_many = 5;
	r->ret[i++] = vm_insert_pages(vma, a + 2 * PG, batch, &r->too_many);
	return r->fail;
}

static struct page *page_new(struct hetmm_machine *m)
{
	struct folio *folio = folio_alloc(m, __GFP_ZERO, 0);

	assert_non_null(folio);
	return &folio->page;
}

static void rules_init(struct insert_rules *r, struct hetmm_machine *m)
{
	memset(r, 0, sizeof(*r));
	r->m = m;
	for (int i = 0; i < 3; i++)
		r->pages[i] = page_new(m);
	r->anon = page_new(m);
	folio_set_flag(page_folio(r->anon), PG_anon);
	r->internal = page_new(m);
	PageSetFlag(r->internal, PG_slab_like);
	r->freed = page_new(m);
	folio_put(page_folio(r->freed));
}

static void rules_fini(struct insert_rules *r)
{
	folio_clear_flag(page_folio(r->anon), PG_anon);
	PageClearFlag(r->internal, PG_slab_like);
	folio_put(page_folio(r->anon));
	folio_put(page_folio(r->internal));
	for (int i = 0; i < 3; i++)
		folio_put(page_folio(r->pages[i]));
}

static void test_vm_insert_page_rules(void **state)
{
	struct env *e = *state;
	struct insert_rules r;
	unsigned long a;
	long p;

	rules_init(&r, e->m);
	p = hetmm_mmap_driver(e->mm, 0, 6 * PG, RW, MAP_PRIVATE, rules_mmap,
			      &r);
	assert_true(p > 0);
	a = (unsigned long)p;
	assert_int_equal(r.ret[0], -EFAULT);
	assert_int_equal(r.ret[1], -EFAULT);
	assert_int_equal(r.ret[2], -EINVAL); /* free page */
	assert_int_equal(r.ret[3], -EINVAL); /* anon page */
	assert_int_equal(r.ret[4], -EINVAL); /* driver-internal page */
	assert_int_equal(r.ret[5], 0);
	assert_false(r.flags_before & VM_MIXEDMAP);
	assert_true(r.flags_after & VM_MIXEDMAP);
	assert_int_equal(r.ret[6], -EBUSY);
	assert_int_equal(r.ret[7], 0); /* zero page: fine in a COW mapping */
	assert_int_equal(r.ret[8], -EINVAL);
	assert_int_equal(r.left, 2);
	assert_int_equal(r.ret[9], -EFAULT);
	assert_int_equal(r.too_many, 5);

	/* p0 at a: the caller's reference and the PTE's; read-only. */
	assert_ptr_equal(mapped_page(e->m, e->mm, a), r.pages[0]);
	assert_false(pte_write(pte_at(e->mm, a)));
	assert_int_equal(page_mapcount(r.pages[0]), 1);
	assert_int_equal(folio_ref_count(page_folio(r.pages[0])), 2);
	/* The zero page: special, uncounted. */
	assert_true(pte_special(pte_at(e->mm, a + PG)));
	assert_int_equal(pte_pfn(pte_at(e->mm, a + PG)),
			 page_to_pfn(e->m->zero_page));
	assert_ptr_equal(mapped_page(e->m, e->mm, a + 2 * PG), r.pages[1]);
	assert_true(pte_none(pte_at(e->mm, a + 3 * PG)));
	assert_int_equal(folio_ref_count(page_folio(r.pages[2])), 1);
	assert_int_equal(page_mapcount(r.anon), 0);
	check_ok(e->m);

	/* Once VM_MIXEDMAP is set, mmap_lock for read is enough. */
	mmap_read_lock(e->mm);
	assert_int_equal(
		vm_insert_page(vma_lookup(e->mm, a), a + 3 * PG, r.pages[2]),
		0);
	mmap_read_unlock(e->mm);
	check_ok(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, a, 6 * PG));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(page_mapcount(r.pages[i]), 0);
		assert_int_equal(folio_ref_count(page_folio(r.pages[i])), 1);
	}
	check_ok(e->m);
	rules_fini(&r);
}

/* A shared writable VMA: writable PTEs, and no zero page. */
static int shared_mmap(struct vm_area_struct *vma, void *priv)
{
	struct insert_rules *r = priv;

	r->ret[0] = vm_insert_page(vma, vma->vm_start, r->m->zero_page);
	r->ret[1] = vm_insert_page(vma, vma->vm_start, r->pages[0]);
	return r->fail;
}

static void test_vm_insert_page_shared_and_failure(void **state)
{
	struct env *e = *state;
	struct insert_rules r;
	unsigned long a;
	long p;

	rules_init(&r, e->m);
	p = hetmm_mmap_driver(e->mm, 0, PG, RW, MAP_SHARED, shared_mmap, &r);
	assert_true(p > 0);
	a = (unsigned long)p;
	assert_int_equal(r.ret[0], -EINVAL);
	assert_int_equal(r.ret[1], 0);
	assert_true(pte_write(pte_at(e->mm, a)));
	check_ok(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, a, PG));
	assert_int_equal(folio_ref_count(page_folio(r.pages[0])), 1);

	/* A failing handler: what it inserted is unmapped, the VMA gone. */
	r.fail = -EIO;
	p = hetmm_mmap_driver(e->mm, a, 6 * PG, RW, MAP_PRIVATE | MAP_FIXED,
			      rules_mmap, &r);
	assert_int_equal(p, -EIO);
	assert_int_equal(r.ret[5], 0);
	mmap_read_lock(e->mm);
	assert_null(vma_lookup(e->mm, a));
	mmap_read_unlock(e->mm);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(page_mapcount(r.pages[i]), 0);
		assert_int_equal(folio_ref_count(page_folio(r.pages[i])), 1);
	}
	check_ok(e->m);
	rules_fini(&r);
}

static void test_mmap_errors(void **state)
{
	struct env *e = *state;
	struct dmirror *d;
	long p;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);
	assert_int_equal(dmirror_mmap(NULL, e->mm, 0, PG, RW, MAP_PRIVATE),
			 -EINVAL);
	assert_int_equal(dmirror_mmap(d, NULL, 0, PG, RW, MAP_PRIVATE),
			 -EINVAL);
	assert_int_equal(dmirror_mmap(d, e->mm, 0, 0, RW, MAP_PRIVATE),
			 -EINVAL);
	assert_int_equal(
		dmirror_mmap(d, e->mm, 0, PG, RW, MAP_PRIVATE | MAP_ANONYMOUS),
		-EINVAL);
	assert_int_equal(
		dmirror_mmap(d, e->mm, 0, PG, RW, MAP_PRIVATE | MAP_SHARED),
		-EINVAL);
	assert_int_equal(dmirror_mmap(d, e->mm, 0, PG, RW, 0), -EINVAL);
	assert_int_equal(
		dmirror_mmap(d, e->mm, 1, PG, RW, MAP_PRIVATE | MAP_FIXED),
		-EINVAL);
	p = dmirror_mmap(d, e->mm, 0, 2 * PG, RW, MAP_PRIVATE);
	assert_true(p > 0);
	assert_int_equal(dmirror_mmap(d, e->mm, (unsigned long)p + PG, PG, RW,
				      MAP_PRIVATE | MAP_FIXED_NOREPLACE),
			 -EEXIST);
	/* Out of memory half way: nothing stays mapped or allocated. */
	ASSERT_OK(hetmm_fault_set(&e->m->faults, HETMM_FAULT_alloc_pages,
				  FAULT_NTH, 3, 0));
	assert_int_equal(dmirror_mmap(d, e->mm, 0, 8 * PG, RW, MAP_PRIVATE),
			 -ENOMEM);
	hetmm_fault_reset(&e->m->faults);
	check_ok(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, (unsigned long)p, 2 * PG));
	dmirror_release(d);
	assert_int_equal(dmirror_mmap(d, e->mm, 0, PG, RW, MAP_PRIVATE),
			 -EINVAL);
}

/* The checker's rule: a page without rmap only in a VM_MIXEDMAP VMA. */
static void test_checker_mixedmap_rule(void **state)
{
	struct env *e = *state;
	struct vm_area_struct *vma;
	struct dmirror *d;
	long p;

	ASSERT_OK(dmirror_probe(e->m, 1, 0));
	d = open_ok(e->m, 0, e->mm);
	p = dmirror_mmap(d, e->mm, 0, PG, PROT_READ, MAP_SHARED);
	assert_true(p > 0);
	check_ok(e->m);
	mmap_write_lock(e->mm);
	vma = vma_lookup(e->mm, (unsigned long)p);
	vma->vm_flags &= ~VM_MIXEDMAP;
	mmap_write_unlock(e->mm);
	assert_int_equal(hetmm_check(e->m), -EUCLEAN);
	assert_non_null(strstr(hetmm_check_report(e->m), "no rmap"));
	mmap_write_lock(e->mm);
	vma->vm_flags |= VM_MIXEDMAP;
	mmap_write_unlock(e->mm);
	check_ok(e->m);
	dmirror_release(d);
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
		cmocka_unit_test_setup_teardown(test_device_copy_injection,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_checker_catches_corruption,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_mmap_private, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_mmap_shared, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_mmap_fork, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_vm_insert_page_rules,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(
			test_vm_insert_page_shared_and_failure, env_setup,
			env_teardown),
		cmocka_unit_test_setup_teardown(test_mmap_errors, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_checker_mixedmap_rule,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_mmap_fork_shared,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_mmap_dontneed_sigbus,
						env_setup, env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
