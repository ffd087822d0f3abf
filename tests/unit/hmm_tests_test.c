// SPDX-License-Identifier: MIT
/*
 * hmm_tests_test.c - the kernel's tools/testing/selftests/mm/hmm-tests.c
 * scenarios, retold against hetmm's process face and the dmirror device.
 *
 * Every scenario runs twice, once per variant: device-private memory
 * (devices 0 and 1) and device-coherent memory (devices 2 and 3). A
 * "process" is an mm from hetmm_process_create(), the "fd" is a struct
 * dmirror, fork() is hetmm_fork() and the child runs inline; CPU loads
 * and stores go through hetmm_cpu_read/hetmm_cpu_write on CPU 0. The
 * teardown closes the mirrors, exits the processes, unloads the module
 * and runs the machine's invariant checker (the "dmirror" checker among
 * others) and the leak check. What each scenario asserts is spec 5.8.
 *
 * mixedmap mmap()s the device file: dmirror_mmap() on the mirror stands
 * for mmap(self->fd). hmm_gup_test calls the GUP layer directly (where
 * gup_test's ioctls would), and skips in a tree without hetmm/gup.h.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <hetmm/dmirror.h>
#include <hetmm/mm.h>
#include <hetmm/uapi.h>
#if __has_include(<hetmm/gup.h>)
#include <hetmm/gup.h>
#endif

#include "harness.h"

#define PG PAGE_SIZE
#define ONEKB (1UL << 10)
#define ONEMEG (1UL << 20)
#define TWOMEG (1UL << 21)
#define HMM_BUFFER_SIZE (1024UL << 12)
#define NTIMES 10
#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)

struct variant {
	const char *name;
	unsigned int dev0, dev1;
	bool coherent;
};

static const struct variant device_private_variant = { "device_private", 0, 1,
						       false };
static const struct variant device_coherent_variant = { "device_coherent", 2, 3,
							true };

struct env {
	const struct variant *v;
	struct hetmm_machine *m;
	struct mm_struct *mm;
	struct dmirror *fd; /* variant's first device */
	struct dmirror *fd1; /* its second device (the hmm2 fixture) */
};

/* One buffer of a scenario: the mapping and the caller's mirror copy. */
struct hmm_buffer {
	unsigned long ptr;
	void *mirror;
	unsigned long size;
	uint64_t cpages;
	uint64_t faults;
};

/* ------------------------------------------------------------- fixture */

static struct hetmm_machine *machine_new(void)
{
	struct hetmm_machine_config cfg;
	struct hetmm_machine *m;

	hetmm_machine_config_default(&cfg);
	cfg.ram_size = 256UL << 20;
	cfg.device_size = 2UL << 30;
	m = hetmm_machine_create(&cfg);
	assert_false(IS_ERR(m));
	return m;
}

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	e->v = *state;
	e->m = machine_new();
	ASSERT_OK(dmirror_probe(e->m, 2, 2));
	e->mm = hetmm_process_create(e->m);
	assert_false(IS_ERR(e->mm));
	e->fd = dmirror_open(e->m, e->v->dev0, e->mm);
	assert_false(IS_ERR(e->fd));
	e->fd1 = dmirror_open(e->m, e->v->dev1, e->mm);
	assert_false(IS_ERR(e->fd1));
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	dmirror_release(e->fd);
	dmirror_release(e->fd1);
	hetmm_exit(e->mm);
	dmirror_remove(e->m);
	test_machine_finish(e->m);
	*state = (void *)e->v;
	free(e);
	return 0;
}

static void check_machine(struct hetmm_machine *m)
{
	int ret = hetmm_check(m);

	if (ret)
		fprintf(stderr, "hetmm_check:\n%s", hetmm_check_report(m));
	assert_int_equal(ret, 0);
}

/* ------------------------------------------------------------- helpers */

static struct hmm_buffer *buffer_new(unsigned long size,
				     unsigned long mirror_size)
{
	struct hmm_buffer *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	b->size = size;
	b->mirror = malloc(mirror_size);
	assert_non_null(b->mirror);
	return b;
}

static void buffer_free(struct mm_struct *mm, struct hmm_buffer *b)
{
	if (b->ptr && b->size)
		ASSERT_OK(hetmm_munmap(mm, b->ptr, b->size));
	free(b->mirror);
	free(b);
}

static unsigned long map(struct mm_struct *mm, unsigned long len, int prot,
			 int flags, int fd)
{
	long a = hetmm_mmap(mm, 0, len, prot, flags, fd, 0);

	assert_true(a > 0);
	return (unsigned long)a;
}

static int dmirror_cmd(struct dmirror *d, unsigned int request,
		       struct hmm_buffer *b, unsigned long npages)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = b->ptr,
		.ptr = (uint64_t)(uintptr_t)b->mirror,
		.npages = npages,
	};
	int ret = dmirror_ioctl(d, request, &cmd);

	if (ret)
		return ret;
	b->cpages = cmd.cpages;
	b->faults = cmd.faults;
	return 0;
}

static int migrate_sys_to_dev(struct dmirror *d, struct hmm_buffer *b,
			      unsigned long npages)
{
	return dmirror_cmd(d, HMM_DMIRROR_MIGRATE_TO_DEV, b, npages);
}

static int migrate_dev_to_sys(struct dmirror *d, struct hmm_buffer *b,
			      unsigned long npages)
{
	return dmirror_cmd(d, HMM_DMIRROR_MIGRATE_TO_SYS, b, npages);
}

/* ints[i] = i + base for i in [0, n) */
static void fill(int *ints, unsigned long n, int base)
{
	for (unsigned long i = 0; i < n; i++)
		ints[i] = (int)i + base;
}

static void fill_neg(int *ints, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		ints[i] = -(int)i;
}

/* Assert ints[i] == i * sign + base, stopping at the first mismatch. */
static void expect_seq(const int *ints, unsigned long from, unsigned long n,
		       int sign, int base)
{
	for (unsigned long i = from; i < n; i++)
		if (ints[i] != (int)i * sign + base) {
			fprintf(stderr, "# int %lu is %d, want %d\n", i,
				ints[i], (int)i * sign + base);
			assert_int_equal(ints[i], (int)i * sign + base);
		}
}

static void expect_zero(const void *buf, unsigned long len)
{
	const unsigned char *p = buf;

	for (unsigned long i = 0; i < len; i++)
		if (p[i]) {
			fprintf(stderr, "# byte %lu is %#x, want 0\n", i, p[i]);
			assert_int_equal(p[i], 0);
		}
}

/* The CPU stores i + base as ints over [addr, addr + len). */
static void cpu_fill(struct mm_struct *mm, unsigned long addr,
		     unsigned long len, int base)
{
	int *tmp = malloc(len);

	assert_non_null(tmp);
	fill(tmp, len / sizeof(int), base);
	ASSERT_OK(hetmm_cpu_write(mm, 0, addr, tmp, len));
	free(tmp);
}

/* The CPU loads [addr, addr + len) into a fresh host buffer. */
static int *cpu_load(struct mm_struct *mm, unsigned long addr,
		     unsigned long len)
{
	int *tmp = malloc(len);

	assert_non_null(tmp);
	ASSERT_OK(hetmm_cpu_read(mm, 0, addr, tmp, len));
	return tmp;
}

/* The CPU sees ints i * sign + base over [addr, addr + len). */
static void cpu_expect(struct mm_struct *mm, unsigned long addr,
		       unsigned long len, int sign, int base)
{
	int *tmp = cpu_load(mm, addr, len);

	expect_seq(tmp, 0, len / sizeof(int), sign, base);
	free(tmp);
}

static int cpu_read_int(struct mm_struct *mm, unsigned long addr)
{
	int v;

	ASSERT_OK(hetmm_cpu_read(mm, 0, addr, &v, sizeof(v)));
	return v;
}

static void cpu_write_int(struct mm_struct *mm, unsigned long addr, int v)
{
	ASSERT_OK(hetmm_cpu_write(mm, 0, addr, &v, sizeof(v)));
}

/*
 * A @size-aligned window of @size bytes inside a fresh mapping of
 * @map_size bytes; *@base gets the mapping for the final munmap.
 */
static unsigned long aligned_window(struct mm_struct *mm,
				    unsigned long map_size, unsigned long size,
				    int prot, unsigned long *base)
{
	*base = map(mm, map_size, prot, PRIV_ANON, -1);
	return ALIGN(*base, size);
}

/* Is @addr mapped by a PMD leaf (THP, hugetlb, huge zero page)? */
static bool pmd_leaf_at(struct mm_struct *mm, unsigned long addr)
{
	pmd_t *pmd;
	bool leaf;

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	leaf = pmd && pmd_leaf(ptep_get(pmd));
	mmap_read_unlock(mm);
	return leaf;
}

/* ------------------------------------------------------------ scenarios */

static void open_close(void **state)
{
	struct env *e = *state;

	/* Open and close one more time on top of the fixture's. */
	struct dmirror *d = dmirror_open(e->m, e->v->dev0, e->mm);

	assert_false(IS_ERR(d));
	dmirror_release(d);
	check_machine(e->m);
}

static void anon_read(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);
	unsigned long skip = 2 * PG;
	int *ptr = b->mirror;

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	/* The first two pages stay untouched: pte_none and the zero page. */
	{
		int *tmp = malloc(size);

		fill(tmp, size / sizeof(int), 0);
		ASSERT_OK(hetmm_cpu_write(e->mm, 0, b->ptr + skip,
					  (char *)tmp + skip, size - skip));
		free(tmp);
	}
	ASSERT_OK(hetmm_mprotect(e->mm, b->ptr, size, PROT_READ));
	assert_int_equal(cpu_read_int(e->mm, b->ptr + PG), 0);

	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_READ, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	expect_zero(ptr, skip);
	expect_seq(ptr, skip / sizeof(int), size / sizeof(int), 1, 0);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

/* anon_read variant: the buffer is one PMD-mapped THP. */
static void anon_read_thp(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT, base;
	struct hmm_buffer *b = buffer_new(0, size);

	b->ptr = aligned_window(e->mm, 2 * size, size, RW, &base);
	ASSERT_OK(hetmm_madvise(e->mm, b->ptr, size, MADV_HUGEPAGE));
	cpu_fill(e->mm, b->ptr, size, 7);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_READ, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 7);
	check_machine(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, base, 2 * size));
	buffer_free(e->mm, b);
}

/* anon_read variant: read again after the pages moved to the device. */
static void anon_read_migrated(void **state)
{
	struct env *e = *state;
	unsigned long npages = 64, size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	cpu_fill(e->mm, b->ptr, size, 3);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	/* The migration mapped everything: no fault round is needed. */
	memset(b->mirror, 0, size);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_READ, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 0);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 3);
	/* The other device reads the same data (through migrate_to_ram). */
	memset(b->mirror, 0, size);
	ASSERT_OK(dmirror_cmd(e->fd1, HMM_DMIRROR_READ, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 3);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

static void anon_read_prot(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	fill_neg(b->mirror, size / sizeof(int));
	ASSERT_OK(hetmm_mprotect(e->mm, b->ptr, size, PROT_NONE));

	assert_int_equal(dmirror_cmd(e->fd, HMM_DMIRROR_READ, b, npages),
			 -EFAULT);

	ASSERT_OK(hetmm_mprotect(e->mm, b->ptr, size, PROT_READ));
	cpu_expect(e->mm, b->ptr, size, 1, 0);
	/* The device wrote nothing into the caller's buffer. */
	expect_seq(b->mirror, 0, size / sizeof(int), -1, 0);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

static void anon_write(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	fill(b->mirror, size / sizeof(int), 0);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_WRITE, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	cpu_expect(e->mm, b->ptr, size, 1, 0);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

static void anon_write_prot(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);

	b->ptr = map(e->mm, size, PROT_READ, PRIV_ANON, -1);
	/* The device reads one zero page. */
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_READ, b, 1));
	assert_int_equal(b->cpages, 1);
	assert_int_equal(b->faults, 1);

	fill(b->mirror, size / sizeof(int), 0);
	assert_int_equal(dmirror_cmd(e->fd, HMM_DMIRROR_WRITE, b, npages),
			 -EPERM);
	{
		int *tmp = cpu_load(e->mm, b->ptr, size);

		expect_zero(tmp, size);
		free(tmp);
	}

	/* Writable now: the zero page gets replaced. */
	ASSERT_OK(hetmm_mprotect(e->mm, b->ptr, size, RW));
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_WRITE, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	cpu_expect(e->mm, b->ptr, size, 1, 0);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

static void anon_write_child(void **state)
{
	struct env *e = *state;

	for (int migrate = 0; migrate < 2; migrate++) {
		for (int use_thp = 0; use_thp < 2; use_thp++) {
			unsigned long size = use_thp ? TWOMEG : HMM_BUFFER_SIZE;
			unsigned long npages = size >> PAGE_SHIFT;
			struct hmm_buffer *b = buffer_new(2 * size, size);
			unsigned long base;
			struct mm_struct *child;
			struct dmirror *child_fd;

			base = map(e->mm, 2 * size, RW, PRIV_ANON, -1);
			b->ptr = base;
			if (use_thp) {
				b->ptr = ALIGN(base, size);
				ASSERT_OK(hetmm_madvise(e->mm, b->ptr, size,
							MADV_HUGEPAGE));
			}
			cpu_fill(e->mm, b->ptr, size, 0);
			fill_neg(b->mirror, size / sizeof(int));
			if (migrate) {
				ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
				assert_int_equal(b->cpages, npages);
			}

			child = hetmm_fork(e->mm);
			assert_false(IS_ERR(child));

			/* The child sees the parent's values... */
			cpu_expect(child, b->ptr, size, 1, 0);
			if (!migrate)
				expect_seq(b->mirror, 0, size / sizeof(int), -1,
					   0);
			/* ...and writes through its own mirror (device 0). */
			child_fd = dmirror_open(e->m, 0, child);
			assert_false(IS_ERR(child_fd));
			ASSERT_OK(dmirror_cmd(child_fd, HMM_DMIRROR_WRITE, b,
					      npages));
			assert_int_equal(b->cpages, npages);
			assert_int_equal(b->faults, 1);
			if (!migrate)
				cpu_expect(child, b->ptr, size, -1, 0);
			check_machine(e->m);
			dmirror_release(child_fd);
			hetmm_exit(child);

			/* The parent's copy did not change. */
			cpu_expect(e->mm, b->ptr, size, 1, 0);
			b->ptr = base;
			buffer_free(e->mm, b);
		}
	}
	check_machine(e->m);
}

static void anon_write_child_shared(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);
	struct mm_struct *child;
	struct dmirror *child_fd;

	b->ptr = map(e->mm, size, RW, MAP_SHARED | MAP_ANONYMOUS, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	fill_neg(b->mirror, size / sizeof(int));

	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	cpu_expect(child, b->ptr, size, 1, 0);
	expect_seq(b->mirror, 0, size / sizeof(int), -1, 0);
	child_fd = dmirror_open(e->m, 0, child);
	assert_false(IS_ERR(child_fd));
	ASSERT_OK(dmirror_cmd(child_fd, HMM_DMIRROR_WRITE, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	cpu_expect(child, b->ptr, size, -1, 0);
	check_machine(e->m);
	dmirror_release(child_fd);
	hetmm_exit(child);

	/* Shared memory: the parent sees the child's device write. */
	cpu_expect(e->mm, b->ptr, size, -1, 0);
	buffer_free(e->mm, b);
}

static void anon_write_huge(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT, base;
	struct hmm_buffer *b = buffer_new(0, size);

	b->ptr = aligned_window(e->mm, 2 * size, size, RW, &base);
	ASSERT_OK(hetmm_madvise(e->mm, b->ptr, size, MADV_HUGEPAGE));
	fill(b->mirror, size / sizeof(int), 0);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_WRITE, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	cpu_expect(e->mm, b->ptr, size, 1, 0);
	check_machine(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, base, 2 * size));
	buffer_free(e->mm, b);
}

static void anon_write_hugetlbfs(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);
	long shared;

	/*
	 * Shared hugetlb needs hugetlbfs: -EOPNOTSUPP until hetmm models
	 * it; once it does, the device writes it too.
	 */
	shared = hetmm_mmap(e->mm, 0, size, RW,
			    MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (shared == -EOPNOTSUPP) {
		printf("# MAP_SHARED|MAP_HUGETLB: -EOPNOTSUPP\n");
	} else {
		assert_true(shared > 0);
		b->ptr = (unsigned long)shared;
		fill(b->mirror, size / sizeof(int), 5);
		ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_WRITE, b, npages));
		assert_int_equal(b->cpages, npages);
		assert_int_equal(b->faults, 1);
		cpu_expect(e->mm, b->ptr, size, 1, 5);
		ASSERT_OK(hetmm_munmap(e->mm, b->ptr, size));
	}
	b->ptr = map(e->mm, size, RW, PRIV_ANON | MAP_HUGETLB, -1);
	fill(b->mirror, size / sizeof(int), 0);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_WRITE, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	cpu_expect(e->mm, b->ptr, size, 1, 0);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

/* A file of @size bytes holding ints i (through pwrite). */
static int create_file(struct mm_struct *mm, const char *name,
		       unsigned long size, bool with_data)
{
	int fd = hetmm_open(mm, name, O_RDWR | O_CREAT);

	assert_true(fd >= 0);
	ASSERT_OK(hetmm_ftruncate(mm, fd, (off_t)size));
	if (with_data) {
		int *tmp = malloc(size);

		fill(tmp, size / sizeof(int), 0);
		assert_int_equal(hetmm_pwrite(mm, fd, tmp, size, 0),
				 (ssize_t)size);
		free(tmp);
	}
	return fd;
}

static void file_read(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);
	int fd = create_file(e->mm, "hmm_file_read", size, true);

	memset(b->mirror, 0, size);
	b->ptr = map(e->mm, size, PROT_READ, MAP_SHARED, fd);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_READ, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
	check_machine(e->m);
	buffer_free(e->mm, b);
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_unlink(e->mm, "hmm_file_read"));
}

static void file_write(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);
	int fd = create_file(e->mm, "hmm_file_write", size, false);

	b->ptr = map(e->mm, size, RW, MAP_SHARED, fd);
	fill(b->mirror, size / sizeof(int), 0);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_WRITE, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	cpu_expect(e->mm, b->ptr, size, 1, 0);
	/* The device wrote the file itself. */
	memset(b->mirror, 0, size);
	assert_int_equal(hetmm_pread(e->mm, fd, b->mirror, size, 0),
			 (ssize_t)size);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
	check_machine(e->m);
	buffer_free(e->mm, b);
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_unlink(e->mm, "hmm_file_write"));
}

static void migrate(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

static void migrate_fault(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);

	/* Fault half the pages back with CPU loads. */
	cpu_expect(e->mm, b->ptr, size / 2, 1, 0);
	check_machine(e->m);

	/* Migrate the mix of system and device pages again. */
	memset(b->mirror, 0, size);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

static void migrate_release(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);

	/* Release the device memory: everything comes back. */
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_RELEASE, b, npages));
	check_machine(e->m);
	cpu_expect(e->mm, b->ptr, size / 2, 1, 0);
	buffer_free(e->mm, b);
}

static void migrate_shared(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);

	b->ptr = map(e->mm, size, RW, MAP_SHARED | MAP_ANONYMOUS, -1);
	assert_int_equal(migrate_sys_to_dev(e->fd, b, npages), -ENOENT);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

static void migrate_mixed(void **state)
{
	struct env *e = *state;
	unsigned long npages = 6, size = npages << PAGE_SHIFT, p;
	struct hmm_buffer *b = buffer_new(size, size);
	int val;

	p = map(e->mm, size, PROT_NONE, PRIV_ANON, -1);
	b->ptr = p;
	/* A protected range cannot migrate. */
	assert_int_equal(migrate_sys_to_dev(e->fd1, b, npages), -EINVAL);
	/* Nor a range with a hole. */
	ASSERT_OK(hetmm_munmap(e->mm, p + PG, PG));
	assert_int_equal(migrate_sys_to_dev(e->fd1, b, 3), -EINVAL);

	/* Page 2: the read-only zero page. */
	ASSERT_OK(hetmm_mprotect(e->mm, p + 2 * PG, PG, PROT_READ));
	val = cpu_read_int(e->mm, p + 2 * PG) + 3;
	assert_int_equal(val, 3);
	/* Page 3: read-only data. */
	ASSERT_OK(hetmm_mprotect(e->mm, p + 3 * PG, PG, RW));
	cpu_write_int(e->mm, p + 3 * PG, val);
	ASSERT_OK(hetmm_mprotect(e->mm, p + 3 * PG, PG, PROT_READ));
	/* Pages 4 and 5: read-write data. */
	ASSERT_OK(hetmm_mprotect(e->mm, p + 4 * PG, 2 * PG, RW));
	cpu_write_int(e->mm, p + 4 * PG, val);
	cpu_write_int(e->mm, p + 5 * PG, val);

	/* Pages 2-5 go to device 1. */
	b->ptr = p + 2 * PG;
	ASSERT_OK(migrate_sys_to_dev(e->fd1, b, 4));
	assert_int_equal(b->cpages, 4);
	check_machine(e->m);

	/* Page 5 is on device 1: device 0 cannot take it. */
	b->ptr = p + 5 * PG;
	assert_int_equal(migrate_sys_to_dev(e->fd, b, 1), -ENOENT);
	check_machine(e->m);

	b->ptr = 0;
	ASSERT_OK(hetmm_munmap(e->mm, p, size));
	buffer_free(e->mm, b);
}

static void migrate_multiple(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;

	for (int c = 0; c < NTIMES; c++) {
		struct hmm_buffer *b = buffer_new(size, size);

		b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
		cpu_fill(e->mm, b->ptr, size, 0);
		ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
		assert_int_equal(b->cpages, npages);
		expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
		/* Coherent memory never faults: move it back by hand. */
		if (e->v->coherent) {
			ASSERT_OK(migrate_dev_to_sys(e->fd, b, npages));
			assert_int_equal(b->cpages, npages);
		}
		cpu_expect(e->mm, b->ptr, size, 1, 0);
		buffer_free(e->mm, b);
	}
	check_machine(e->m);
}

static void anon_read_multiple(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;

	for (int c = 0; c < NTIMES; c++) {
		struct hmm_buffer *b = buffer_new(size, size);

		b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
		cpu_fill(e->mm, b->ptr, size, c);
		ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_READ, b, npages));
		assert_int_equal(b->cpages, npages);
		assert_int_equal(b->faults, 1);
		expect_seq(b->mirror, 0, size / sizeof(int), 1, c);
		buffer_free(e->mm, b);
	}
	check_machine(e->m);
}

struct unmapper {
	struct mm_struct *mm;
	unsigned long addr, len;
	unsigned int delay_ns;
	int ret;
};

/* Not a cmocka context: report through u->ret. */
static void *unmap_buffer(void *arg)
{
	struct unmapper *u = arg;
	struct timespec t = { 0, u->delay_ns };

	nanosleep(&t, NULL);
	u->ret = hetmm_munmap(u->mm, u->addr, u->len);
	return NULL;
}

static void anon_teardown(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct test_rng rng;

	test_rng_init(&rng, test_seed());
	for (int c = 0; c < NTIMES; c++) {
		struct hmm_buffer *b = buffer_new(size, size);
		struct unmapper u;
		pthread_t thread;
		int rc;

		b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
		cpu_fill(e->mm, b->ptr, size, c);
		u = (struct unmapper){
			e->mm, b->ptr + size / 2, size / 2,
			(unsigned int)test_rng_below(&rng, 32000), 0
		};
		assert_int_equal(
			pthread_create(&thread, NULL, unmap_buffer, &u), 0);
		/* Racing the unmap: it fails, or it read everything. */
		rc = dmirror_cmd(e->fd, HMM_DMIRROR_READ, b, npages);
		if (rc == 0) {
			assert_int_equal(b->cpages, npages);
			assert_true(b->faults >= 1);
			expect_seq(b->mirror, 0, size / sizeof(int), 1, c);
		} else {
			assert_int_equal(rc, -EFAULT);
		}
		pthread_join(thread, NULL);
		ASSERT_OK(u.ret);
		b->size = size / 2;
		buffer_free(e->mm, b);
	}
	check_machine(e->m);
}

/*
 * A snapshot of a mapping of the device file itself: its pages were put
 * there with vm_insert_page() (a VM_MIXEDMAP VMA), and a private writable
 * mapping of them is read-only.
 */
static void mixedmap(void **state)
{
	struct env *e = *state;
	unsigned long npages = 1, size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, npages);
	unsigned char *m = b->mirror;
	long p;

	p = dmirror_mmap(e->fd, e->mm, 0, size, RW, MAP_PRIVATE);
	assert_true(p > 0);
	b->ptr = (unsigned long)p;

	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_SNAPSHOT, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(m[0], HMM_DMIRROR_PROT_READ);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

static void snapshot(void **state)
{
	struct env *e = *state;
	unsigned long npages = 7, size = npages << PAGE_SHIFT, p;
	struct hmm_buffer *b = buffer_new(size, npages);
	unsigned char *m = b->mirror;
	int val;

	p = map(e->mm, size, PROT_NONE, PRIV_ANON, -1);
	/* Page 1: a hole. */
	ASSERT_OK(hetmm_munmap(e->mm, p + PG, PG));
	/* Page 2: the read-only zero page. */
	ASSERT_OK(hetmm_mprotect(e->mm, p + 2 * PG, PG, PROT_READ));
	val = cpu_read_int(e->mm, p + 2 * PG) + 3;
	assert_int_equal(val, 3);
	/* Page 3: read-only data. */
	ASSERT_OK(hetmm_mprotect(e->mm, p + 3 * PG, PG, RW));
	cpu_write_int(e->mm, p + 3 * PG, val);
	ASSERT_OK(hetmm_mprotect(e->mm, p + 3 * PG, PG, PROT_READ));
	/* Pages 4-6: read-write data. */
	ASSERT_OK(hetmm_mprotect(e->mm, p + 4 * PG, 3 * PG, RW));
	cpu_write_int(e->mm, p + 4 * PG, val);
	/* Page 5 on device 0, page 6 on device 1 (zero-filled holes). */
	{
		struct hmm_buffer one = { .ptr = p + 5 * PG };
		char page_buf[PAGE_SIZE];

		one.mirror = page_buf;
		ASSERT_OK(migrate_sys_to_dev(e->fd, &one, 1));
		assert_int_equal(one.cpages, 1);
		one.ptr = p + 6 * PG;
		ASSERT_OK(migrate_sys_to_dev(e->fd1, &one, 1));
		assert_int_equal(one.cpages, 1);
	}

	b->ptr = p;
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_SNAPSHOT, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(m[0], HMM_DMIRROR_PROT_ERROR);
	assert_int_equal(m[1], HMM_DMIRROR_PROT_ERROR);
	assert_int_equal(m[2], HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ);
	assert_int_equal(m[3], HMM_DMIRROR_PROT_READ);
	assert_int_equal(m[4], HMM_DMIRROR_PROT_WRITE);
	if (!e->v->coherent) {
		assert_int_equal(m[5], HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL |
					       HMM_DMIRROR_PROT_WRITE);
		assert_int_equal(m[6], HMM_DMIRROR_PROT_NONE);
	} else {
		assert_int_equal(m[5], HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL |
					       HMM_DMIRROR_PROT_WRITE);
		assert_int_equal(m[6], HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE |
					       HMM_DMIRROR_PROT_WRITE);
	}
	check_machine(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, p, size));
	b->ptr = 0;
	buffer_free(e->mm, b);
}

static void compound(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, npages);
	unsigned char *m = b->mirror;

	b->ptr = map(e->mm, size, RW, PRIV_ANON | MAP_HUGETLB, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_SNAPSHOT, b, npages));
	assert_int_equal(b->cpages, npages);
	for (unsigned long i = 0; i < npages; i++)
		assert_int_equal(m[i],
				 HMM_DMIRROR_PROT_WRITE | HMM_DMIRROR_PROT_PMD);

	ASSERT_OK(hetmm_mprotect(e->mm, b->ptr, size, PROT_READ));
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_SNAPSHOT, b, npages));
	assert_int_equal(b->cpages, npages);
	for (unsigned long i = 0; i < npages; i++)
		assert_int_equal(m[i],
				 HMM_DMIRROR_PROT_READ | HMM_DMIRROR_PROT_PMD);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

static void double_map(void **state)
{
	struct env *e = *state;
	unsigned long npages = 6, size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(hetmm_mprotect(e->mm, b->ptr, size, PROT_READ));

	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_READ, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);

	ASSERT_OK(dmirror_cmd(e->fd1, HMM_DMIRROR_READ, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
	check_machine(e->m);

	/* Move the pages to device 1; device 0 then faults them back. */
	ASSERT_OK(migrate_sys_to_dev(e->fd1, b, npages));
	assert_int_equal(b->cpages, npages);
	memset(b->mirror, 0, size);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_READ, b, npages));
	assert_int_equal(b->cpages, npages);
	assert_int_equal(b->faults, 1);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

/* The CPU checks ints i + base, then increments each one. */
static void cpu_increment(struct mm_struct *mm, unsigned long addr,
			  unsigned long len, int base)
{
	int *tmp = cpu_load(mm, addr, len);

	expect_seq(tmp, 0, len / sizeof(int), 1, base);
	for (unsigned long i = 0; i < len / sizeof(int); i++)
		tmp[i]++;
	ASSERT_OK(hetmm_cpu_write(mm, 0, addr, tmp, len));
	free(tmp);
}

static void exclusive(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_EXCLUSIVE, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
	/* Atomic access is granted until the CPU touches the pages. */
	assert_int_equal(
		dmirror_cmd(e->fd, HMM_DMIRROR_CHECK_EXCLUSIVE, b, npages),
		-EPERM);
	check_machine(e->m);

	cpu_increment(e->mm, b->ptr, size, 0);
	cpu_expect(e->mm, b->ptr, size, 1, 1);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_CHECK_EXCLUSIVE, b, npages));
	check_machine(e->m);
	buffer_free(e->mm, b);
}

static void exclusive_mprotect(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_EXCLUSIVE, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);

	ASSERT_OK(hetmm_mprotect(e->mm, b->ptr, size, PROT_READ));
	assert_int_equal(dmirror_cmd(e->fd, HMM_DMIRROR_WRITE, b, npages),
			 -EPERM);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

static void exclusive_cow(void **state)
{
	struct env *e = *state;
	unsigned long npages = HMM_BUFFER_SIZE >> PAGE_SHIFT;
	unsigned long size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);
	struct mm_struct *child;

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_EXCLUSIVE, b, npages));
	assert_int_equal(b->cpages, npages);

	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	check_machine(e->m);
	/* Both processes read-modify-write their copy. */
	cpu_increment(child, b->ptr, size, 0);
	cpu_expect(child, b->ptr, size, 1, 1);
	cpu_increment(e->mm, b->ptr, size, 0);
	cpu_expect(e->mm, b->ptr, size, 1, 1);
	check_machine(e->m);
	hetmm_exit(child);
	buffer_free(e->mm, b);
}

#if __has_include(<hetmm/gup.h>)
/*
 * The four gup_test calls of the selftest on four migrated pages: GET
 * (slow), GET fast, PIN fast + LONGTERM, PIN + LONGTERM, each released
 * at once. Device-private pages are always faulted back to the system;
 * device-coherent ones stay unless the pin is long-term.
 */
static void hmm_gup_test(void **state)
{
	struct env *e = *state;
	unsigned long npages = 4, size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);
	unsigned char *m = b->mirror;
	struct page *page;
	long n;

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);

	mmap_read_lock(e->mm);
	n = get_user_pages(e->mm, b->ptr, 1, FOLL_WRITE, &page);
	mmap_read_unlock(e->mm);
	assert_int_equal(n, 1);
	put_page(page);
	assert_int_equal(
		get_user_pages_fast(e->mm, b->ptr + PG, 1, FOLL_WRITE, &page),
		1);
	put_page(page);
	assert_int_equal(pin_user_pages_fast(e->mm, b->ptr + 2 * PG, 1,
					     FOLL_WRITE | FOLL_LONGTERM, &page),
			 1);
	unpin_user_page(page);
	mmap_read_lock(e->mm);
	n = pin_user_pages(e->mm, b->ptr + 3 * PG, 1,
			   FOLL_WRITE | FOLL_LONGTERM, &page);
	mmap_read_unlock(e->mm);
	assert_int_equal(n, 1);
	unpin_user_page(page);
	check_machine(e->m);

	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_SNAPSHOT, b, npages));
	assert_int_equal(b->cpages, npages);
	if (e->v->coherent) {
		assert_int_equal(m[0], HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL |
					       HMM_DMIRROR_PROT_WRITE);
		assert_int_equal(m[1], HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL |
					       HMM_DMIRROR_PROT_WRITE);
	} else {
		assert_int_equal(m[0], HMM_DMIRROR_PROT_WRITE);
		assert_int_equal(m[1], HMM_DMIRROR_PROT_WRITE);
	}
	assert_int_equal(m[2], HMM_DMIRROR_PROT_WRITE);
	assert_int_equal(m[3], HMM_DMIRROR_PROT_WRITE);
	/* No data was lost on the way. */
	cpu_expect(e->mm, b->ptr, size, 1, 0);
	check_machine(e->m);
	buffer_free(e->mm, b);
}
#else
static void hmm_gup_test(void **state)
{
	(void)state;
	printf("# hmm_gup_test: GUP (get/pin_user_pages) is not implemented "
	       "yet\n");
	skip();
}
#endif

static void hmm_cow_in_device(void **state)
{
	struct env *e = *state;
	unsigned long npages = 4, size = npages << PAGE_SHIFT;
	struct hmm_buffer *b = buffer_new(size, size);
	unsigned char *m = b->mirror;
	struct mm_struct *child;

	b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);

	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	check_machine(e->m);
	/* The parent writes its COW pages: new system copies (private
	 * pages come back from the device first). */
	cpu_fill(e->mm, b->ptr, size, 0);
	check_machine(e->m);
	/* The child, left untouched, still sees the data. */
	cpu_expect(child, b->ptr, size, 1, 0);
	hetmm_exit(child);

	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_SNAPSHOT, b, npages));
	assert_int_equal(b->cpages, npages);
	for (unsigned long i = 0; i < npages; i++)
		assert_int_equal(m[i], HMM_DMIRROR_PROT_WRITE);
	check_machine(e->m);
	buffer_free(e->mm, b);
}

/* A huge-page-sized window with MADV_HUGEPAGE inside 2 * size. */
static unsigned long thp_window(struct mm_struct *mm, unsigned long size,
				int prot, unsigned long *base)
{
	unsigned long w = aligned_window(mm, 2 * size, size, prot, base);

	ASSERT_OK(hetmm_madvise(mm, w, size, MADV_HUGEPAGE));
	return w;
}

static void migrate_anon_huge_empty(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT, base;
	struct hmm_buffer *b = buffer_new(0, size);

	memset(b->mirror, 0xFF, size);
	b->ptr = thp_window(e->mm, size, PROT_READ, &base);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_zero(b->mirror, size);
	check_machine(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, base, 2 * size));
	buffer_free(e->mm, b);
}

static void migrate_anon_huge_zero(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT, base;
	struct hmm_buffer *b = buffer_new(0, size);
	int *tmp;

	memset(b->mirror, 0xFF, size);
	b->ptr = thp_window(e->mm, size, PROT_READ, &base);
	/* A read-only (huge) zero page. */
	assert_int_equal(cpu_read_int(e->mm, b->ptr), 0);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_zero(b->mirror, size);
	check_machine(e->m);
	tmp = cpu_load(e->mm, b->ptr, size);
	expect_zero(tmp, size);
	free(tmp);
	check_machine(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, base, 2 * size));
	buffer_free(e->mm, b);
}

static void migrate_anon_huge_free(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT, base;
	struct hmm_buffer *b = buffer_new(0, size);

	memset(b->mirror, 0xFF, size);
	b->ptr = thp_window(e->mm, size, RW, &base);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
	/* hetmm has no MADV_FREE; DONTNEED frees the same way, at once. */
	ASSERT_OK(hetmm_madvise(e->mm, b->ptr, size, MADV_DONTNEED));
	check_machine(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, base, 2 * size));
	buffer_free(e->mm, b);
}

static void migrate_anon_huge_fault(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT, base;
	struct hmm_buffer *b = buffer_new(0, size);

	memset(b->mirror, 0xFF, size);
	b->ptr = thp_window(e->mm, size, RW, &base);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
	check_machine(e->m);
	cpu_expect(e->mm, b->ptr, size, 1, 0);
	check_machine(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, base, 2 * size));
	buffer_free(e->mm, b);
}

static void migrate_partial_unmap_fault(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT;
	const unsigned long offsets[] = { 0, 512 * ONEKB, ONEMEG };

	for (int use_thp = 0; use_thp < 2; use_thp++) {
		for (unsigned int j = 0; j < ARRAY_SIZE(offsets); j++) {
			struct hmm_buffer *b = buffer_new(0, size);
			unsigned long base, off = offsets[j];
			int *tmp;

			memset(b->mirror, 0xFF, size);
			b->ptr = aligned_window(e->mm, 2 * size, size, RW,
						&base);
			ASSERT_OK(hetmm_madvise(e->mm, b->ptr, size,
						use_thp ? MADV_HUGEPAGE :
							  MADV_NOHUGEPAGE));
			cpu_fill(e->mm, b->ptr, size, 0);
			ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
			assert_int_equal(b->cpages, npages);
			expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);

			ASSERT_OK(hetmm_munmap(e->mm, b->ptr + off, ONEMEG));
			check_machine(e->m);
			/* What is still mapped faults back intact. */
			if (off) {
				tmp = cpu_load(e->mm, b->ptr, off);
				expect_seq(tmp, 0, off / sizeof(int), 1, 0);
				free(tmp);
			}
			if (off + ONEMEG < size) {
				tmp = cpu_load(e->mm, b->ptr + off + ONEMEG,
					       size - off - ONEMEG);
				expect_seq(tmp, 0,
					   (size - off - ONEMEG) / sizeof(int),
					   1,
					   (int)((off + ONEMEG) / sizeof(int)));
				free(tmp);
			}
			check_machine(e->m);
			ASSERT_OK(hetmm_munmap(e->mm, base, 2 * size));
			buffer_free(e->mm, b);
		}
	}
}

static void migrate_remap_fault(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT;
	const unsigned long offsets[] = { 0, 512 * ONEKB, ONEMEG };

	/* Every combination of before/after, DONTUNMAP, THP and offset. */
	for (unsigned int k = 0; k < 8 * ARRAY_SIZE(offsets); k++) {
		unsigned int j = k % ARRAY_SIZE(offsets);
		int use_thp = (k / ARRAY_SIZE(offsets)) & 1;
		int dont_unmap = (k / ARRAY_SIZE(offsets)) >> 1 & 1;
		int before = (k / ARRAY_SIZE(offsets)) >> 2 & 1;
		int flags = MREMAP_MAYMOVE | MREMAP_FIXED |
			    (dont_unmap ? MREMAP_DONTUNMAP : 0);
		struct hmm_buffer *b = buffer_new(0, size);
		unsigned long base, w, new_ptr = 0;
		long r;

		memset(b->mirror, 0xFF, size);
		base = map(e->mm, 8 * size, RW, PRIV_ANON, -1);
		w = ALIGN(base, size);
		ASSERT_OK(hetmm_madvise(e->mm, w, size,
					use_thp ? MADV_HUGEPAGE :
						  MADV_NOHUGEPAGE));
		ASSERT_OK(hetmm_munmap(e->mm, w + size, 2 * size));
		b->ptr = w;
		cpu_fill(e->mm, w, size, 0);

		if (before) {
			r = hetmm_mremap(e->mm, w, size, size, flags,
					 w + size + offsets[j]);
			assert_true(r > 0);
			new_ptr = (unsigned long)r;
			b->ptr = new_ptr;
		}
		ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
		assert_int_equal(b->cpages, npages);
		expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
		if (!before) {
			r = hetmm_mremap(e->mm, w, size, size, flags,
					 w + size + offsets[j]);
			assert_true(r > 0);
			new_ptr = (unsigned long)r;
			b->ptr = new_ptr;
		}
		check_machine(e->m);
		cpu_expect(e->mm, b->ptr, size, 1, 0);
		check_machine(e->m);
		ASSERT_OK(hetmm_munmap(e->mm, new_ptr, size));
		ASSERT_OK(hetmm_munmap(e->mm, base, 8 * size));
		buffer_free(e->mm, b);
	}
}

static void migrate_anon_huge_err(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT, base;
	struct hmm_buffer *b = buffer_new(0, 2 * size);

	memset(b->mirror, 0xFF, 2 * size);
	b->ptr = thp_window(e->mm, size, RW, &base);
	cpu_fill(e->mm, b->ptr, size, 0);

	/* The large device allocation fails: single pages instead. */
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_FLAGS, b,
			      HMM_DMIRROR_FLAG_FAIL_ALLOC));
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_seq(b->mirror, 0, size / sizeof(int), 1, 0);
	check_machine(e->m);
	/* Fault back one page. */
	assert_int_equal(cpu_read_int(e->mm, b->ptr + 2048 * sizeof(int)),
			 2048);
	check_machine(e->m);

	/* Start over with a new THP. */
	ASSERT_OK(hetmm_munmap(e->mm, base, 2 * size));
	b->ptr = thp_window(e->mm, size, RW, &base);
	cpu_fill(e->mm, b->ptr, size, 0);
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);

	/* The large system allocation fails on the way back. */
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_FLAGS, b,
			      HMM_DMIRROR_FLAG_FAIL_ALLOC));
	ASSERT_OK(migrate_dev_to_sys(e->fd, b, npages));
	check_machine(e->m);
	assert_int_equal(cpu_read_int(e->mm, b->ptr + 2048 * sizeof(int)),
			 2048);
	cpu_expect(e->mm, b->ptr, size, 1, 0);
	check_machine(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, base, 2 * size));
	buffer_free(e->mm, b);
}

static void migrate_anon_huge_zero_err(void **state)
{
	struct env *e = *state;
	unsigned long size = TWOMEG, npages = size >> PAGE_SHIFT, base;
	struct hmm_buffer *b = buffer_new(0, 2 * size);
	int *tmp;

	memset(b->mirror, 0xFF, 2 * size);
	b->ptr = thp_window(e->mm, size, PROT_READ, &base);
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_FLAGS, b,
			      HMM_DMIRROR_FLAG_FAIL_ALLOC));
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	expect_zero(b->mirror, size);
	assert_int_equal(cpu_read_int(e->mm, b->ptr + 2048 * sizeof(int)), 0);
	check_machine(e->m);

	ASSERT_OK(hetmm_munmap(e->mm, base, 2 * size));
	b->ptr = thp_window(e->mm, size, PROT_READ, &base);
	/* The huge zero folio this time. */
	assert_int_equal(cpu_read_int(e->mm, b->ptr), 0);
	assert_true(pmd_leaf_at(e->mm, b->ptr));
	ASSERT_OK(dmirror_cmd(e->fd, HMM_DMIRROR_FLAGS, b,
			      HMM_DMIRROR_FLAG_FAIL_ALLOC));
	/* A compound hole: the driver falls back to single pages. */
	ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
	assert_int_equal(b->cpages, npages);
	check_machine(e->m);
	tmp = cpu_load(e->mm, b->ptr, size);
	expect_zero(tmp, size);
	free(tmp);
	check_machine(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, base, 2 * size));
	buffer_free(e->mm, b);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* benchmark_thp_migration, cut down: correctness of every round, and the
 * timings as TAP comments (timing is for benches, not tests). */
static void benchmark_thp_migration(void **state)
{
	struct env *e = *state;
	const unsigned long sizes[] = { TWOMEG / 4, TWOMEG / 2, TWOMEG,
					2 * TWOMEG, 4 * TWOMEG };

	for (unsigned int s = 0; s < ARRAY_SIZE(sizes); s++) {
		for (int use_thp = 1; use_thp >= 0; use_thp--) {
			unsigned long size = sizes[s];
			unsigned long npages = size >> PAGE_SHIFT;
			struct hmm_buffer *b = buffer_new(size, size);
			double s2d = 0, d2s = 0, t;

			b->ptr = map(e->mm, size, RW, PRIV_ANON, -1);
			ASSERT_OK(hetmm_madvise(e->mm, b->ptr, size,
						use_thp ? MADV_HUGEPAGE :
							  MADV_NOHUGEPAGE));
			cpu_fill(e->mm, b->ptr, size, (int)s);
			for (int it = 0; it < 3; it++) {
				t = now_ms();
				ASSERT_OK(migrate_sys_to_dev(e->fd, b, npages));
				s2d += now_ms() - t;
				assert_int_equal(b->cpages, npages);
				t = now_ms();
				ASSERT_OK(migrate_dev_to_sys(e->fd, b, npages));
				d2s += now_ms() - t;
			}
			cpu_expect(e->mm, b->ptr, size, 1, (int)s);
			printf("# %s %lu KiB %s: sys->dev %.3f ms, dev->sys "
			       "%.3f ms\n",
			       e->v->name, size >> 10, use_thp ? "THP" : "4K",
			       s2d / 3, d2s / 3);
			buffer_free(e->mm, b);
		}
	}
	check_machine(e->m);
}

/* ----------------------------------------------------------------- main */

/* clang-format off */
#define HMM_TEST(fn, variant)                                           \
	{ #variant "/" #fn, fn, env_setup, env_teardown,                \
	  (void *)&variant##_variant }

#define HMM_TESTS(variant)                             \
	HMM_TEST(open_close, variant),                 \
	HMM_TEST(anon_read, variant),                  \
	HMM_TEST(anon_read_thp, variant),              \
	HMM_TEST(anon_read_migrated, variant),         \
	HMM_TEST(anon_read_prot, variant),             \
	HMM_TEST(anon_write, variant),                 \
	HMM_TEST(anon_write_prot, variant),            \
	HMM_TEST(anon_write_child, variant),           \
	HMM_TEST(anon_write_child_shared, variant),    \
	HMM_TEST(anon_write_huge, variant),            \
	HMM_TEST(anon_write_hugetlbfs, variant),       \
	HMM_TEST(file_read, variant),                  \
	HMM_TEST(file_write, variant),                 \
	HMM_TEST(migrate, variant),                    \
	HMM_TEST(migrate_fault, variant),              \
	HMM_TEST(migrate_release, variant),            \
	HMM_TEST(migrate_shared, variant),             \
	HMM_TEST(migrate_mixed, variant),              \
	HMM_TEST(migrate_multiple, variant),           \
	HMM_TEST(anon_read_multiple, variant),         \
	HMM_TEST(anon_teardown, variant),              \
	HMM_TEST(mixedmap, variant),                   \
	HMM_TEST(snapshot, variant),                   \
	HMM_TEST(compound, variant),                   \
	HMM_TEST(double_map, variant),                 \
	HMM_TEST(exclusive, variant),                  \
	HMM_TEST(exclusive_mprotect, variant),         \
	HMM_TEST(exclusive_cow, variant),              \
	HMM_TEST(hmm_gup_test, variant),               \
	HMM_TEST(hmm_cow_in_device, variant),          \
	HMM_TEST(migrate_anon_huge_empty, variant),    \
	HMM_TEST(migrate_anon_huge_zero, variant),     \
	HMM_TEST(migrate_anon_huge_free, variant),     \
	HMM_TEST(migrate_anon_huge_fault, variant),    \
	HMM_TEST(migrate_partial_unmap_fault, variant), \
	HMM_TEST(migrate_remap_fault, variant),        \
	HMM_TEST(migrate_anon_huge_err, variant),      \
	HMM_TEST(migrate_anon_huge_zero_err, variant), \
	HMM_TEST(benchmark_thp_migration, variant)
/* clang-format on */

int main(void)
{
	/* Both variants in one group, named variant/scenario. */
	const char *filter = getenv("HMM_TESTS_FILTER");
	const char *skip_filter = getenv("HMM_TESTS_SKIP");
	const struct CMUnitTest tests[] = {
		HMM_TESTS(device_private),
		HMM_TESTS(device_coherent),
	};

	/* e.g. HMM_TESTS_FILTER='device_private/migrate*', HMM_TESTS_SKIP */
	if (filter)
		cmocka_set_test_filter(filter);
	if (skip_filter)
		cmocka_set_skip_filter(skip_filter);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
