// SPDX-License-Identifier: MIT
/*
 * thp_test.c - transparent huge pages: 2 MiB faults, splitting on partial
 * munmap/mprotect/DONTNEED/mremap, fork sharing and COW, policies, and
 * the fallback to 4 KiB pages when no 2 MiB folio is available; private
 * hugetlb mappings (MAP_HUGETLB); and shared hugetlb: shared anonymous
 * MAP_HUGETLB memory and hugetlbfs files (HETMM_FS_HUGETLBFS), mapped
 * shared and private, with fork, pread/pwrite, truncate, alignment rules
 * and allocation failures; MADV_COLLAPSE of anonymous private memory
 * (4 KiB pages, none and zero-page PTEs, PTE-mapped THPs, pages shared
 * with a child, pins and references, failures restoring everything).
 */
#include <pthread.h>
#include <sched.h>

#include <hetmm/check.h>
#include <hetmm/fs.h>
#include <hetmm/gup.h>
#include <hetmm/mm.h>
#include <hetmm/stats.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define SHARED_HUGE (MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB)
#define SZ_2M (2UL << 20)

struct env {
	struct hetmm_machine *m;
	struct mm_struct *mm;
};

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	e->m = test_machine_new(64, true);
	e->mm = hetmm_process_create(e->m);
	assert_false(IS_ERR(e->mm));
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	if (e->mm)
		hetmm_exit(e->mm);
	test_machine_finish(e->m);
	free(e);
	return 0;
}

static uint64_t stat_now(enum hetmm_stat_item item)
{
	struct hetmm_stats s;

	hetmm_stats_read(&s);
	return s.v[item];
}

/* A 2 MiB aligned, MADV_HUGEPAGE anonymous region of @n huge pages. */
static unsigned long thp_region(struct mm_struct *mm, unsigned long n)
{
	long a = hetmm_mmap(mm, 0, (n + 1) * SZ_2M, RW, PRIV_ANON, -1, 0);
	unsigned long al;

	assert_true(a > 0);
	al = ALIGN((unsigned long)a, SZ_2M);
	if (al > (unsigned long)a)
		ASSERT_OK(hetmm_munmap(mm, a, al - a));
	ASSERT_OK(hetmm_munmap(mm, al + n * SZ_2M,
			       a + (n + 1) * SZ_2M - (al + n * SZ_2M)));
	ASSERT_OK(hetmm_madvise(mm, al, n * SZ_2M, MADV_HUGEPAGE));
	return al;
}

static bool pmd_is_leaf(struct mm_struct *mm, unsigned long addr)
{
	pmd_t *pmd;
	bool leaf;

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	leaf = pmd && pmd_leaf(ptep_get(pmd));
	mmap_read_unlock(mm);
	return leaf;
}

/* Write a pattern byte per 4 KiB page of [a, a + len). */
static void fill(struct mm_struct *mm, unsigned long a, unsigned long len,
		 unsigned char salt)
{
	for (unsigned long o = 0; o < len; o += PAGE_SIZE) {
		unsigned char v = (unsigned char)((o >> PAGE_SHIFT) + salt);

		ASSERT_OK(hetmm_cpu_write(mm, 0, a + o + 7, &v, 1));
	}
}

static void verify(struct mm_struct *mm, unsigned long a, unsigned long len,
		   unsigned char salt)
{
	for (unsigned long o = 0; o < len; o += PAGE_SIZE) {
		unsigned char v, z;

		ASSERT_OK(hetmm_cpu_read(mm, 1, a + o + 7, &v, 1));
		assert_int_equal(v, (unsigned char)((o >> PAGE_SHIFT) + salt));
		ASSERT_OK(hetmm_cpu_read(mm, 1, a + o + 8, &z, 1));
		assert_int_equal(z, 0);
	}
}

static void test_fault_installs_pmd(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 2);
	uint64_t before = stat_now(HETMM_STAT_thp_fault_alloc);

	fill(e->mm, a, 2 * SZ_2M, 3);
	assert_int_equal(stat_now(HETMM_STAT_thp_fault_alloc) - before, 2);
	assert_true(pmd_is_leaf(e->mm, a));
	assert_true(pmd_is_leaf(e->mm, a + SZ_2M));
	verify(e->mm, a, 2 * SZ_2M, 3);
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_munmap(e->mm, a, 2 * SZ_2M));
	ASSERT_OK(hetmm_check(e->m));
}

static void test_policy(void **state)
{
	struct env *e = *state;
	long a = hetmm_mmap(e->mm, 0, 4 * SZ_2M, RW, PRIV_ANON, -1, 0);
	unsigned long al = ALIGN((unsigned long)a, SZ_2M);
	uint64_t before = stat_now(HETMM_STAT_thp_fault_alloc);

	/* madvise mode (default): no THP without MADV_HUGEPAGE. */
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, al, "x", 1));
	assert_false(pmd_is_leaf(e->mm, al));
	ASSERT_OK(hetmm_thp_set_mode(e->m, "always"));
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, al + SZ_2M, "x", 1));
	assert_true(pmd_is_leaf(e->mm, al + SZ_2M));
	ASSERT_OK(hetmm_madvise(e->mm, al + 2 * SZ_2M, SZ_2M, MADV_NOHUGEPAGE));
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, al + 2 * SZ_2M, "x", 1));
	assert_false(pmd_is_leaf(e->mm, al + 2 * SZ_2M));
	ASSERT_OK(hetmm_thp_set_mode(e->m, "never"));
	assert_int_equal(hetmm_thp_set_mode(e->m, "sometimes"), -EINVAL);
	assert_int_equal(stat_now(HETMM_STAT_thp_fault_alloc) - before, 1);
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_thp_set_mode(e->m, "madvise"));
}

static void test_partial_munmap_splits(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	uint64_t before;

	fill(e->mm, a, SZ_2M, 9);
	before = stat_now(HETMM_STAT_thp_split_pmd);
	ASSERT_OK(hetmm_munmap(e->mm, a + 5 * PAGE_SIZE, 3 * PAGE_SIZE));
	assert_int_equal(stat_now(HETMM_STAT_thp_split_pmd) - before, 1);
	assert_false(pmd_is_leaf(e->mm, a));
	verify(e->mm, a, 5 * PAGE_SIZE, 9);
	verify(e->mm, a + 8 * PAGE_SIZE, SZ_2M - 8 * PAGE_SIZE, 9 + 8);
	{
		unsigned char v;

		assert_int_equal(hetmm_cpu_read(e->mm, 0, a + 6 * PAGE_SIZE,
						&v, 1),
				 -EFAULT);
	}
	ASSERT_OK(hetmm_check(e->m));
}

static void test_mprotect_whole_and_partial(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 2);
	uint64_t before;

	fill(e->mm, a, 2 * SZ_2M, 1);
	before = stat_now(HETMM_STAT_thp_split_pmd);
	/* The whole first 2 MiB: the leaf changes in place. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, SZ_2M, PROT_READ));
	assert_true(pmd_is_leaf(e->mm, a));
	assert_int_equal(hetmm_cpu_write(e->mm, 0, a, "x", 1), -EFAULT);
	/* Part of the second one: split. */
	ASSERT_OK(hetmm_mprotect(e->mm, a + SZ_2M, PAGE_SIZE, PROT_NONE));
	assert_false(pmd_is_leaf(e->mm, a + SZ_2M));
	assert_int_equal(stat_now(HETMM_STAT_thp_split_pmd) - before, 1);
	{
		unsigned char v;

		assert_int_equal(hetmm_cpu_read(e->mm, 0, a + SZ_2M, &v, 1),
				 -EFAULT);
	}
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_mprotect(e->mm, a, 2 * SZ_2M, RW));
	verify(e->mm, a, 2 * SZ_2M, 1);
	fill(e->mm, a, 2 * SZ_2M, 2);
	verify(e->mm, a, 2 * SZ_2M, 2);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_fork_cow(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1);
	struct mm_struct *child;
	uint64_t copies;

	fill(e->mm, a, SZ_2M, 4);
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	assert_true(pmd_is_leaf(child, a));
	ASSERT_OK(hetmm_check(e->m));
	verify(child, a, SZ_2M, 4);
	copies = stat_now(HETMM_STAT_fault_wp_copy);
	/* A child write splits its mapping and copies one 4 KiB page. */
	ASSERT_OK(hetmm_cpu_write(child, 0, a + 7, "\x55", 1));
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy) - copies, 1);
	assert_false(pmd_is_leaf(child, a));
	assert_true(pmd_is_leaf(e->mm, a));
	verify(e->mm, a, SZ_2M, 4);
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(child);
	/* The parent is alone again: its write reuses the whole folio. */
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, a + 7, "\x04", 1));
	assert_true(pmd_is_leaf(e->mm, a));
	verify(e->mm, a, SZ_2M, 4);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_dontneed_and_mremap(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 2);
	long n;

	fill(e->mm, a, 2 * SZ_2M, 6);
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_DONTNEED));
	assert_false(pmd_is_leaf(e->mm, a));
	{
		unsigned char v = 1;

		ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + 7, &v, 1));
		assert_int_equal(v, 0);
	}
	n = hetmm_mremap(e->mm, a + SZ_2M, SZ_2M, SZ_2M, MREMAP_MAYMOVE |
				MREMAP_FIXED, a + 8 * SZ_2M);
	assert_int_equal(n, (long)(a + 8 * SZ_2M));
	verify(e->mm, a + 8 * SZ_2M, SZ_2M, (unsigned char)(6 + 512));
	ASSERT_OK(hetmm_check(e->m));
}

static void test_alloc_failure_falls_back(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 2);
	uint64_t before = stat_now(HETMM_STAT_thp_fault_fallback);

	/* Upper tables exist (a read in the second 2 MiB: the huge zero
	 * folio, allocated now)... */
	ASSERT_OK(hetmm_madvise(e->mm, a + 2 * SZ_2M - PAGE_SIZE, PAGE_SIZE,
				MADV_POPULATE_READ));
	/* ...so the first allocation is the 2 MiB folio; it fails. */
	ASSERT_OK(hetmm_fault_parse(&e->m->faults, "alloc_pages:nth=1"));
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, a, "y", 1));
	hetmm_fault_reset(&e->m->faults);
	assert_int_equal(stat_now(HETMM_STAT_thp_fault_fallback) - before, 1);
	assert_false(pmd_is_leaf(e->mm, a));
	ASSERT_OK(hetmm_check(e->m));
}

static void test_hugetlb(void **state)
{
	struct env *e = *state;
	long a = hetmm_mmap(e->mm, 0, 3 * SZ_2M, RW,
			    PRIV_ANON | MAP_HUGETLB, -1, 0);
	uint64_t allocs = stat_now(HETMM_STAT_hugetlb_fault_alloc), copies;
	struct mm_struct *child;
	unsigned char v = 1;
	long n;

	assert_true(a > 0);
	assert_true(IS_ALIGNED((unsigned long)a, SZ_2M));
	/* A read fault allocates a zeroed huge page (no zero page). */
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + 5, &v, 1));
	assert_int_equal(v, 0);
	assert_int_equal(stat_now(HETMM_STAT_hugetlb_fault_alloc) - allocs, 1);
	assert_true(pmd_is_leaf(e->mm, a));
	fill(e->mm, a, 3 * SZ_2M, 2);
	ASSERT_OK(hetmm_check(e->m));
	/* Everything must stay 2 MiB aligned. */
	assert_int_equal(hetmm_munmap(e->mm, a + PAGE_SIZE, PAGE_SIZE), -EINVAL);
	assert_int_equal(hetmm_mprotect(e->mm, a, PAGE_SIZE, PROT_READ),
			 -EINVAL);
	assert_int_equal(hetmm_madvise(e->mm, a + PAGE_SIZE, PAGE_SIZE,
				       MADV_DONTNEED),
			 -EINVAL);
	verify(e->mm, a, 3 * SZ_2M, 2);
	/* fork shares; a write copies the whole 2 MiB. */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	copies = stat_now(HETMM_STAT_fault_wp_copy);
	ASSERT_OK(hetmm_cpu_write(child, 0, a + 7, "\x77", 1));
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy) - copies, 1);
	assert_true(pmd_is_leaf(child, a));
	verify(e->mm, a, 3 * SZ_2M, 2);
	verify(child, a + PAGE_SIZE, SZ_2M - PAGE_SIZE, 3);
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(child);
	/* mprotect, DONTNEED (end rounded up), mremap of whole pages. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, SZ_2M, PROT_READ));
	assert_int_equal(hetmm_cpu_write(e->mm, 0, a, "x", 1), -EFAULT);
	ASSERT_OK(hetmm_mprotect(e->mm, a, SZ_2M, RW));
	ASSERT_OK(hetmm_madvise(e->mm, a + SZ_2M, PAGE_SIZE, MADV_DONTNEED));
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + SZ_2M + SZ_2M - 1, &v, 1));
	assert_int_equal(v, 0);
	n = hetmm_mremap(e->mm, a + 2 * SZ_2M, SZ_2M, SZ_2M,
			 MREMAP_MAYMOVE | MREMAP_FIXED, a + 16 * SZ_2M);
	assert_int_equal(n, (long)(a + 16 * SZ_2M));
	assert_true(pmd_is_leaf(e->mm, a + 16 * SZ_2M));
	verify(e->mm, a + 16 * SZ_2M, SZ_2M, (unsigned char)(2 + 1024));
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_munmap(e->mm, a, 3 * SZ_2M));
	ASSERT_OK(hetmm_check(e->m));
}

/* ------------------------------------------------------- shared hugetlb */

/* The pattern byte at offset @o (of a file, or of a shared region). */
static unsigned char pat(unsigned long o, unsigned int salt)
{
	return (unsigned char)((o ^ (o >> 8) ^ (o >> 16)) * 31 + salt);
}

/* Write pattern bytes @off .. @off + @len - 1 at @a, every byte. */
static void wfill(struct mm_struct *mm, unsigned long a, unsigned long len,
		  unsigned long off, unsigned int salt)
{
	unsigned char *buf = malloc(len);

	assert_non_null(buf);
	for (unsigned long i = 0; i < len; i++)
		buf[i] = pat(off + i, salt);
	ASSERT_OK(hetmm_cpu_write(mm, 0, a, buf, len));
	free(buf);
}

static void bytes_match(const unsigned char *buf, unsigned long len,
			unsigned long off, unsigned int salt, const char *what)
{
	for (unsigned long i = 0; i < len; i++)
		if (buf[i] != pat(off + i, salt))
			fail_msg("%s: byte %#lx is %#x, expected %#x", what,
				 off + i, buf[i], pat(off + i, salt));
}

/* Every byte of [a, a + len) read through CPU 1 is the pattern. */
static void wcheck(struct mm_struct *mm, unsigned long a, unsigned long len,
		   unsigned long off, unsigned int salt)
{
	unsigned char *buf = malloc(len);

	assert_non_null(buf);
	ASSERT_OK(hetmm_cpu_read(mm, 1, a, buf, len));
	bytes_match(buf, len, off, salt, "mapping");
	free(buf);
}

/* Every byte of the file range read with pread is the pattern. */
static void fcheck(struct mm_struct *mm, int fd, unsigned long off,
		   unsigned long len, unsigned int salt)
{
	unsigned char *buf = malloc(len);

	assert_non_null(buf);
	assert_int_equal(hetmm_pread(mm, fd, buf, len, (off_t)off), (long)len);
	bytes_match(buf, len, off, salt, "file");
	free(buf);
}

/* The pfn a PMD leaf maps at @addr, or 0 without a leaf. */
static unsigned long leaf_pfn(struct mm_struct *mm, unsigned long addr)
{
	unsigned long pfn = 0;
	pmd_t *pmd;

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	if (pmd && pmd_leaf(ptep_get(pmd)))
		pfn = pte_pfn(ptep_get(pmd));
	mmap_read_unlock(mm);
	return pfn;
}

static int open_huge(struct mm_struct *mm, const char *name, loff_t size)
{
	int fd =
		hetmm_open_kind(mm, name, O_RDWR | O_CREAT, HETMM_FS_HUGETLBFS);

	assert_true(fd >= 0);
	ASSERT_OK(hetmm_ftruncate(mm, fd, size));
	return fd;
}

/* Is a folio cached at page @index of the file @name? */
static bool cached(struct hetmm_machine *m, const char *name, pgoff_t index)
{
	struct file *f = hetmm_fs_open(hetmm_machine_fs(m), name, O_RDONLY, 0);
	struct folio *folio;

	assert_false(IS_ERR(f));
	folio = filemap_get_folio(f->f_mapping, index);
	fput(f);
	if (IS_ERR(folio))
		return false;
	assert_true(folio_test_hugetlb(folio));
	folio_put(folio);
	return true;
}

static void check_clean(struct hetmm_machine *m)
{
	if (hetmm_check(m))
		fail_msg("%s", hetmm_check_report(m));
}

static void test_hugetlb_shared_anon_fork(void **state)
{
	struct env *e = *state;
	long a = hetmm_mmap(e->mm, 0, 2 * SZ_2M - PAGE_SIZE, RW, SHARED_HUGE,
			    -1, 0);
	uint64_t allocs = stat_now(HETMM_STAT_hugetlb_fault_alloc);
	uint64_t copies = stat_now(HETMM_STAT_fault_wp_copy);
	struct mm_struct *child;

	assert_true(a > 0);
	assert_true(IS_ALIGNED((unsigned long)a, SZ_2M));
	wfill(e->mm, a, 2 * SZ_2M, 0, 1); /* the length was rounded up */
	assert_int_equal(stat_now(HETMM_STAT_hugetlb_fault_alloc) - allocs, 2);
	assert_true(pmd_is_leaf(e->mm, a));
	assert_true(pmd_is_leaf(e->mm, a + SZ_2M));
	check_clean(e->m);

	/* The child maps the same folios: it faults them in, allocating
	 * nothing, and both see each other's writes. */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	wcheck(child, a, 2 * SZ_2M, 0, 1);
	assert_int_equal(leaf_pfn(child, a), leaf_pfn(e->mm, a));
	assert_int_equal(leaf_pfn(child, a + SZ_2M),
			 leaf_pfn(e->mm, a + SZ_2M));
	wfill(child, a + SZ_2M, SZ_2M, SZ_2M, 2);
	wcheck(e->mm, a, SZ_2M, 0, 1);
	wcheck(e->mm, a + SZ_2M, SZ_2M, SZ_2M, 2);
	wfill(e->mm, a, SZ_2M, 0, 3);
	wcheck(child, a, SZ_2M, 0, 3);
	assert_int_equal(stat_now(HETMM_STAT_hugetlb_fault_alloc) - allocs, 2);
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy) - copies, 0);
	check_clean(e->m);

	/* Read-only and back: the leaf becomes writable again, no copy. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, SZ_2M, PROT_READ));
	assert_int_equal(hetmm_cpu_write(e->mm, 0, a, "x", 1), -EFAULT);
	wfill(child, a, PAGE_SIZE, 0, 4);
	wcheck(e->mm, a, PAGE_SIZE, 0, 4);
	ASSERT_OK(hetmm_mprotect(e->mm, a, SZ_2M, RW));
	wfill(e->mm, a, SZ_2M, 0, 5);
	wcheck(child, a, SZ_2M, 0, 5);
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy) - copies, 0);
	check_clean(e->m);

	/* The parent unmaps: the child's view is intact. */
	ASSERT_OK(hetmm_munmap(e->mm, a, 2 * SZ_2M));
	wcheck(child, a, SZ_2M, 0, 5);
	wcheck(child, a + SZ_2M, SZ_2M, SZ_2M, 2);
	check_clean(e->m);
	hetmm_exit(child);
	check_clean(e->m);
}

static void test_hugetlbfs_shared_file(void **state)
{
	struct env *e = *state;
	struct hetmm_fs *fs = hetmm_machine_fs(e->m);
	struct mm_struct *p2 = hetmm_process_create(e->m);
	int fd = open_huge(e->mm, "huge", 2 * SZ_2M), fd2;
	unsigned long inodes = hetmm_fs_nr_inodes(fs);
	uint64_t allocs;
	long a, b;

	assert_false(IS_ERR(p2));
	fd2 = hetmm_open(p2, "huge", O_RDWR); /* the file keeps its kind */
	assert_true(fd2 >= 0);
	a = hetmm_mmap(e->mm, 0, 2 * SZ_2M, RW, MAP_SHARED, fd, 0);
	b = hetmm_mmap(p2, 0, SZ_2M, RW, MAP_SHARED, fd2, SZ_2M);
	assert_true(a > 0 && b > 0);
	assert_true(IS_ALIGNED((unsigned long)b, SZ_2M));
	wfill(e->mm, a, 2 * SZ_2M, 0, 5);
	wcheck(p2, b, SZ_2M, SZ_2M, 5);
	assert_int_equal(leaf_pfn(p2, b), leaf_pfn(e->mm, a + SZ_2M));
	wfill(p2, b, SZ_2M, SZ_2M, 6);
	wcheck(e->mm, a + SZ_2M, SZ_2M, SZ_2M, 6);
	fcheck(p2, fd2, 0, SZ_2M, 5);
	fcheck(e->mm, fd, SZ_2M, SZ_2M, 6);
	check_clean(e->m);

	/* Unmapped everywhere, the data stays in the page cache. */
	ASSERT_OK(hetmm_munmap(e->mm, a, 2 * SZ_2M));
	hetmm_exit(p2);
	assert_true(cached(e->m, "huge", 0));
	assert_true(cached(e->m, "huge", HPAGE_PMD_NR + 7));
	fcheck(e->mm, fd, 0, SZ_2M, 5);
	check_clean(e->m);
	allocs = stat_now(HETMM_STAT_hugetlb_fault_alloc);
	a = hetmm_mmap(e->mm, 0, 2 * SZ_2M, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(a > 0);
	wcheck(e->mm, a, SZ_2M, 0, 5);
	wcheck(e->mm, a + SZ_2M, SZ_2M, SZ_2M, 6);
	assert_int_equal(stat_now(HETMM_STAT_hugetlb_fault_alloc), allocs);

	/* Unlinked and closed while mapped: the mapping keeps the file. */
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_unlink(e->mm, "huge"));
	assert_int_equal(hetmm_fs_nr_inodes(fs), inodes);
	wcheck(e->mm, a, SZ_2M, 0, 5);
	check_clean(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, a, 2 * SZ_2M));
	assert_int_equal(hetmm_fs_nr_inodes(fs), inodes - 1);
	check_clean(e->m);
}

static void test_hugetlbfs_pread_pwrite(void **state)
{
	struct env *e = *state;
	int fd = open_huge(e->mm, "hp", SZ_2M);
	unsigned char *buf = malloc(SZ_2M);
	unsigned char c;
	long a;

	assert_non_null(buf);
	/* pwrite before the mapping exists... */
	for (unsigned long i = 0; i < SZ_2M; i++)
		buf[i] = pat(i, 7);
	assert_int_equal(hetmm_pwrite(e->mm, fd, buf, SZ_2M, 0), (long)SZ_2M);
	a = hetmm_mmap(e->mm, 0, SZ_2M, RW, MAP_SHARED, fd, 0);
	assert_true(a > 0);
	wcheck(e->mm, a, SZ_2M, 0, 7);
	/* ...a store through it shows in pread... */
	wfill(e->mm, a + 12345, 3 * PAGE_SIZE, 12345, 8);
	fcheck(e->mm, fd, 12345, 3 * PAGE_SIZE, 8);
	fcheck(e->mm, fd, 0, 12345, 7);
	/* ...and pwrite into the mapped folio shows through the TLB. */
	assert_int_equal(hetmm_pwrite(e->mm, fd, "HUGE", 4, SZ_2M - 4), 4);
	ASSERT_OK(hetmm_cpu_read(e->mm, 1, a + SZ_2M - 1, &c, 1));
	assert_int_equal(c, 'E');
	/* The file never grows by pwrite: short, or -EINVAL at EOF. */
	assert_int_equal(hetmm_pwrite(e->mm, fd, buf, 100, SZ_2M - 10), 10);
	assert_int_equal(hetmm_pwrite(e->mm, fd, buf, 1, SZ_2M), -EINVAL);
	assert_int_equal(hetmm_pread(e->mm, fd, buf, 1, SZ_2M), 0);
	/* A page faulted in before the pwrite shares it too. */
	ASSERT_OK(hetmm_ftruncate(e->mm, fd, 2 * SZ_2M));
	ASSERT_OK(hetmm_munmap(e->mm, a, SZ_2M));
	a = hetmm_mmap(e->mm, 0, 2 * SZ_2M, RW, MAP_SHARED, fd, 0);
	assert_true(a > 0);
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + SZ_2M + 100, &c, 1));
	assert_int_equal(c, 0);
	assert_int_equal(hetmm_pwrite(e->mm, fd, "z", 1, SZ_2M + 100), 1);
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + SZ_2M + 100, &c, 1));
	assert_int_equal(c, 'z');
	free(buf);
	check_clean(e->m);
	ASSERT_OK(hetmm_unlink(e->mm, "hp"));
}

static void test_hugetlbfs_private(void **state)
{
	struct env *e = *state;
	struct mm_struct *p2 = hetmm_process_create(e->m), *child;
	int fd = open_huge(e->mm, "hpriv", 2 * SZ_2M), fd2;
	uint64_t cows, allocs;
	unsigned long cache_pfn;
	unsigned char c;
	long pv, s;

	assert_false(IS_ERR(p2));
	fd2 = hetmm_open(p2, "hpriv", O_RDWR);
	assert_true(fd2 >= 0);
	s = hetmm_mmap(p2, 0, 2 * SZ_2M, RW, MAP_SHARED, fd2, 0);
	assert_true(s > 0);
	wfill(p2, s, SZ_2M, 0, 7); /* only the first 2 MiB: a hole after */
	pv = hetmm_mmap(e->mm, 0, 2 * SZ_2M, RW, MAP_PRIVATE, fd, 0);
	assert_true(pv > 0);

	/* Reads map the page-cache folio, read-only. */
	wcheck(e->mm, pv, SZ_2M, 0, 7);
	cache_pfn = leaf_pfn(p2, s);
	assert_int_equal(leaf_pfn(e->mm, pv), cache_pfn);
	/* A file write before the private write is visible. */
	wfill(p2, s, PAGE_SIZE, 0, 8);
	wcheck(e->mm, pv, PAGE_SIZE, 0, 8);
	check_clean(e->m);

	/* The private write copies the whole 2 MiB. */
	cows = stat_now(HETMM_STAT_fault_file_cow);
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, pv + 100, "P", 1));
	assert_int_equal(stat_now(HETMM_STAT_fault_file_cow) - cows, 1);
	assert_true(leaf_pfn(e->mm, pv) != 0);
	assert_true(leaf_pfn(e->mm, pv) != cache_pfn);
	ASSERT_OK(hetmm_cpu_read(e->mm, 1, pv + 100, &c, 1));
	assert_int_equal(c, 'P');
	wcheck(e->mm, pv, 100, 0, 8);
	wcheck(e->mm, pv + 101, PAGE_SIZE - 101, 101, 8);
	wcheck(e->mm, pv + PAGE_SIZE, SZ_2M - PAGE_SIZE, PAGE_SIZE, 7);
	/* Invisible to the file and to the other mapper... */
	fcheck(e->mm, fd, 0, PAGE_SIZE, 8);
	wcheck(p2, s, PAGE_SIZE, 0, 8);
	/* ...and later file writes are invisible to the copy. */
	wfill(p2, s + 8192, PAGE_SIZE, 8192, 9);
	wcheck(e->mm, pv + 8192, PAGE_SIZE, 8192, 7);
	check_clean(e->m);

	/* fork: the child shares the private copy until either writes. */
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	assert_int_equal(leaf_pfn(child, pv), leaf_pfn(e->mm, pv));
	ASSERT_OK(hetmm_cpu_write(child, 0, pv + 100, "C", 1));
	ASSERT_OK(hetmm_cpu_read(e->mm, 1, pv + 100, &c, 1));
	assert_int_equal(c, 'P');
	hetmm_exit(child);
	check_clean(e->m);

	/* A hole: the private mapping gets a zeroed anon page and nothing
	 * enters the cache (as Linux), so a later file write there does not
	 * show in it. */
	allocs = stat_now(HETMM_STAT_hugetlb_fault_alloc);
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, pv + SZ_2M + 5, &c, 1));
	assert_int_equal(c, 0);
	assert_int_equal(stat_now(HETMM_STAT_hugetlb_fault_alloc) - allocs, 1);
	assert_false(cached(e->m, "hpriv", HPAGE_PMD_NR));
	wfill(p2, s + SZ_2M, PAGE_SIZE, SZ_2M, 10);
	assert_true(cached(e->m, "hpriv", HPAGE_PMD_NR));
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, pv + SZ_2M + 5, &c, 1));
	assert_int_equal(c, 0);
	/* That anon page is exclusive: writing it reuses it in place. */
	cows = stat_now(HETMM_STAT_fault_wp_copy);
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, pv + SZ_2M + 5, "Q", 1));
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy), cows);
	fcheck(p2, fd2, SZ_2M, PAGE_SIZE, 10);
	check_clean(e->m);
	hetmm_exit(p2);
	check_clean(e->m);
	ASSERT_OK(hetmm_unlink(e->mm, "hpriv"));
}

static void test_hugetlbfs_truncate(void **state)
{
	struct env *e = *state;
	struct hetmm_fs *fs = hetmm_machine_fs(e->m);
	struct mm_struct *p2 = hetmm_process_create(e->m);
	int fd = open_huge(e->mm, "ht", 2 * SZ_2M), fd2;
	unsigned long inodes;
	unsigned char c;
	long a, pv;

	assert_false(IS_ERR(p2));
	fd2 = hetmm_open(p2, "ht", O_RDWR);
	a = hetmm_mmap(e->mm, 0, 2 * SZ_2M, RW, MAP_SHARED, fd, 0);
	pv = hetmm_mmap(p2, 0, 2 * SZ_2M, RW, MAP_PRIVATE, fd2, 0);
	assert_true(fd2 >= 0 && a > 0 && pv > 0);
	wfill(e->mm, a, 2 * SZ_2M, 0, 11);
	wcheck(p2, pv, SZ_2M, 0, 11); /* maps the cache folio */
	ASSERT_OK(hetmm_cpu_write(p2, 0, pv + SZ_2M + 5, "p", 1)); /* copy */
	check_clean(e->m);

	/* Truncation unmaps the dropped huge page everywhere, private copies
	 * included: touching it is SIGBUS (-EFAULT). */
	ASSERT_OK(hetmm_ftruncate(e->mm, fd, SZ_2M));
	assert_false(pmd_is_leaf(e->mm, a + SZ_2M));
	assert_false(pmd_is_leaf(p2, pv + SZ_2M));
	assert_int_equal(hetmm_cpu_read(e->mm, 0, a + SZ_2M, &c, 1), -EFAULT);
	assert_int_equal(hetmm_cpu_read(p2, 0, pv + SZ_2M + 5, &c, 1), -EFAULT);
	assert_int_equal(hetmm_cpu_write(e->mm, 0, a + 2 * SZ_2M - 1, "x", 1),
			 -EFAULT);
	assert_false(cached(e->m, "ht", HPAGE_PMD_NR));
	wcheck(e->mm, a, SZ_2M, 0, 11);
	wcheck(p2, pv, SZ_2M, 0, 11);
	check_clean(e->m);

	/* Grown again, the page reads as zeros. */
	ASSERT_OK(hetmm_ftruncate(e->mm, fd, 2 * SZ_2M));
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + SZ_2M + 5, &c, 1));
	assert_int_equal(c, 0);
	ASSERT_OK(hetmm_cpu_read(p2, 0, pv + SZ_2M + 5, &c, 1));
	assert_int_equal(c, 0);
	check_clean(e->m);

	/* Unlinked while mapped: still works; freed with the last mapping. */
	ASSERT_OK(hetmm_unlink(e->mm, "ht"));
	ASSERT_OK(hetmm_close(e->mm, fd));
	ASSERT_OK(hetmm_close(p2, fd2));
	inodes = hetmm_fs_nr_inodes(fs);
	wfill(e->mm, a + SZ_2M, SZ_2M, SZ_2M, 12);
	wcheck(e->mm, a + SZ_2M, SZ_2M, SZ_2M, 12);
	hetmm_exit(p2);
	assert_int_equal(hetmm_fs_nr_inodes(fs), inodes);
	check_clean(e->m);
	ASSERT_OK(hetmm_munmap(e->mm, a, 2 * SZ_2M));
	assert_int_equal(hetmm_fs_nr_inodes(fs), inodes - 1);
	check_clean(e->m);
}

static void test_hugetlb_shared_alignment(void **state)
{
	struct env *e = *state;
	int fd = open_huge(e->mm, "hm", 0), tfd, fd2;
	unsigned char c;
	long a, b;

	/* File sizes and offsets are 2 MiB multiples. */
	assert_int_equal(hetmm_ftruncate(e->mm, fd, 3 * SZ_2M / 2), -EINVAL);
	assert_int_equal(hetmm_ftruncate(e->mm, fd, SZ_2M + PAGE_SIZE),
			 -EINVAL);
	ASSERT_OK(hetmm_ftruncate(e->mm, fd, SZ_2M));
	assert_int_equal(
		hetmm_mmap(e->mm, 0, SZ_2M, RW, MAP_SHARED, fd, PAGE_SIZE),
		-EINVAL);
	assert_int_equal(hetmm_mmap(e->mm,
				    HETMM_MMAP_BASE - 64 * SZ_2M + PAGE_SIZE,
				    SZ_2M, RW, MAP_SHARED | MAP_FIXED, fd, 0),
			 -EINVAL);
	assert_int_equal(hetmm_mmap(e->mm,
				    HETMM_MMAP_BASE - 64 * SZ_2M + PAGE_SIZE,
				    SZ_2M, RW, SHARED_HUGE | MAP_FIXED, -1, 0),
			 -EINVAL);
	/* MAP_HUGETLB needs a hugetlbfs file. */
	tfd = hetmm_open(e->mm, "tmp", O_RDWR | O_CREAT);
	assert_true(tfd >= 0);
	ASSERT_OK(hetmm_ftruncate(e->mm, tfd, SZ_2M));
	assert_int_equal(hetmm_mmap(e->mm, 0, SZ_2M, RW,
				    MAP_SHARED | MAP_HUGETLB, tfd, 0),
			 -EINVAL);

	/* A one-page length maps one huge page; everything else stays 2 MiB
	 * aligned, as for private hugetlb. */
	a = hetmm_mmap(e->mm, 0, PAGE_SIZE, RW, MAP_SHARED, fd, 0);
	assert_true(a > 0);
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, a + SZ_2M - 1, "e", 1));
	assert_int_equal(hetmm_munmap(e->mm, a, PAGE_SIZE), -EINVAL);
	assert_int_equal(
		hetmm_mprotect(e->mm, a + PAGE_SIZE, PAGE_SIZE, PROT_READ),
		-EINVAL);
	assert_int_equal(hetmm_mremap(e->mm, a, SZ_2M, SZ_2M + PAGE_SIZE,
				      MREMAP_MAYMOVE, 0),
			 -EINVAL);
	assert_int_equal(hetmm_mremap(e->mm, a, SZ_2M, PAGE_SIZE, 0, 0),
			 -EINVAL);
	assert_int_equal(
		hetmm_madvise(e->mm, a + PAGE_SIZE, PAGE_SIZE, MADV_DONTNEED),
		-EINVAL);
	/* A small fixed mapping may not cut a huge page either. */
	assert_int_equal(hetmm_mmap(e->mm, a + PAGE_SIZE, PAGE_SIZE, RW,
				    PRIV_ANON | MAP_FIXED, -1, 0),
			 -EINVAL);
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + SZ_2M - 1, &c, 1));
	assert_int_equal(c, 'e');
	/* DONTNEED drops the mapping, not the data. */
	ASSERT_OK(hetmm_madvise(e->mm, a, PAGE_SIZE, MADV_DONTNEED));
	assert_false(pmd_is_leaf(e->mm, a));
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + SZ_2M - 1, &c, 1));
	assert_int_equal(c, 'e');
	/* mremap moves whole leaves; the moved mapping still shares. */
	b = hetmm_mremap(e->mm, a, SZ_2M, SZ_2M, MREMAP_MAYMOVE | MREMAP_FIXED,
			 HETMM_MMAP_BASE - 64 * SZ_2M);
	assert_int_equal(b, (long)(HETMM_MMAP_BASE - 64 * SZ_2M));
	assert_true(pmd_is_leaf(e->mm, b));
	assert_int_equal(hetmm_pwrite(e->mm, fd, "m", 1, 7), 1);
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, b + 7, &c, 1));
	assert_int_equal(c, 'm');
	ASSERT_OK(hetmm_munmap(e->mm, b, SZ_2M));
	check_clean(e->m);

	/* A writable mapping grows the file to cover it (as Linux); a
	 * read-only one does not, and touching past EOF is SIGBUS. */
	fd2 = open_huge(e->mm, "hgrow", 0);
	a = hetmm_mmap(e->mm, 0, SZ_2M, PROT_READ, MAP_SHARED, fd2, SZ_2M);
	assert_true(a > 0);
	assert_int_equal(hetmm_cpu_read(e->mm, 0, a, &c, 1), -EFAULT);
	assert_int_equal(hetmm_pread(e->mm, fd2, &c, 1, 0), 0);
	b = hetmm_mmap(e->mm, 0, 2 * SZ_2M, RW, MAP_SHARED, fd2, SZ_2M);
	assert_true(b > 0);
	assert_int_equal(hetmm_pread(e->mm, fd2, &c, 1, 3 * SZ_2M - 1), 1);
	assert_int_equal(hetmm_pread(e->mm, fd2, &c, 1, 3 * SZ_2M), 0);
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a, &c, 1));
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, b + 2 * SZ_2M - 1, "g", 1));
	check_clean(e->m);
	ASSERT_OK(hetmm_unlink(e->mm, "hm"));
	ASSERT_OK(hetmm_unlink(e->mm, "tmp"));
	ASSERT_OK(hetmm_unlink(e->mm, "hgrow"));
}

static void test_hugetlb_shared_alloc_failure(void **state)
{
	struct env *e = *state;
	int fd = open_huge(e->mm, "hf", SZ_2M), ret;
	uint64_t allocs;
	unsigned long cache_pfn;
	unsigned char c;
	long a, pv;

	a = hetmm_mmap(e->mm, 0, SZ_2M, RW, MAP_SHARED, fd, 0);
	assert_true(a > 0);
	for (int site = 0; site < 2; site++) {
		enum hetmm_fault_site fs = site ? HETMM_FAULT_pgtable_alloc :
						  HETMM_FAULT_alloc_pages;
		int failures = 0;

		for (int nth = 1;; nth++) {
			assert_true(nth < 16);
			allocs = stat_now(HETMM_STAT_hugetlb_fault_alloc);
			ASSERT_OK(hetmm_fault_set(&e->m->faults, fs, FAULT_NTH,
						  nth, 0));
			ret = hetmm_cpu_write(e->mm, 0, a + 9, "w", 1);
			hetmm_fault_reset(&e->m->faults);
			if (!ret)
				break;
			failures++;
			/* Nothing half done: no leaf, nothing cached. */
			assert_int_equal(ret, -ENOMEM);
			assert_false(pmd_is_leaf(e->mm, a));
			assert_false(cached(e->m, "hf", 0));
			assert_int_equal(
				stat_now(HETMM_STAT_hugetlb_fault_alloc),
				allocs);
			check_clean(e->m);
		}
		assert_true(failures > 0 || site == 1);
		ASSERT_OK(hetmm_cpu_read(e->mm, 1, a + 9, &c, 1));
		assert_int_equal(c, 'w');
		/* Start over: drop the page and the page tables. */
		ASSERT_OK(hetmm_munmap(e->mm, a, SZ_2M));
		ASSERT_OK(hetmm_ftruncate(e->mm, fd, 0));
		ASSERT_OK(hetmm_ftruncate(e->mm, fd, SZ_2M));
		a = hetmm_mmap(e->mm, 0, SZ_2M, RW, MAP_SHARED, fd, 0);
		assert_true(a > 0);
	}

	/* A private copy that cannot be allocated: the cache folio stays
	 * mapped read-only and the file is unchanged. */
	assert_int_equal(hetmm_pwrite(e->mm, fd, "file", 4, 0), 4);
	pv = hetmm_mmap(e->mm, 0, SZ_2M, RW, MAP_PRIVATE, fd, 0);
	assert_true(pv > 0);
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, pv, &c, 1));
	cache_pfn = leaf_pfn(e->mm, pv);
	ASSERT_OK(hetmm_fault_parse(&e->m->faults, "alloc_pages:nth=1"));
	assert_int_equal(hetmm_cpu_write(e->mm, 0, pv, "X", 1), -ENOMEM);
	hetmm_fault_reset(&e->m->faults);
	assert_int_equal(leaf_pfn(e->mm, pv), cache_pfn);
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, pv, &c, 1));
	assert_int_equal(c, 'f');
	check_clean(e->m);
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, pv, "X", 1));
	assert_int_equal(hetmm_pread(e->mm, fd, &c, 1, 0), 1);
	assert_int_equal(c, 'f');
	check_clean(e->m);

	/* Shared anonymous memory under persistent failure: the mmap works
	 * (populate is best effort), touching it is -ENOMEM, later fine. */
	ASSERT_OK(hetmm_fault_set(&e->m->faults, HETMM_FAULT_alloc_pages,
				  FAULT_FROM_NTH, 1, 0));
	a = hetmm_mmap(e->mm, 0, SZ_2M, RW, SHARED_HUGE | MAP_POPULATE, -1, 0);
	assert_true(a > 0);
	assert_int_equal(hetmm_cpu_write(e->mm, 0, a, "s", 1), -ENOMEM);
	hetmm_fault_reset(&e->m->faults);
	assert_false(pmd_is_leaf(e->mm, a));
	check_clean(e->m);
	wfill(e->mm, a, SZ_2M, 0, 13);
	wcheck(e->mm, a, SZ_2M, 0, 13);
	check_clean(e->m);
	ASSERT_OK(hetmm_unlink(e->mm, "hf"));
}

struct race_arg {
	struct mm_struct *mm;
	unsigned long a;
	unsigned int cpu;
	int ret;
};

/* Write slice @cpu (1 MiB) of a 4 MiB shared mapping, every byte. */
static void *race_writer(void *p)
{
	struct race_arg *r = p;
	unsigned long slice = 2 * SZ_2M / 4, off = r->cpu * slice;
	unsigned char *buf = malloc(slice);

	if (!buf) {
		r->ret = -ENOMEM;
		return NULL;
	}
	for (unsigned long i = 0; i < slice; i++)
		buf[i] = pat(off + i, 20);
	r->ret = hetmm_cpu_write(r->mm, r->cpu, r->a + off, buf, slice);
	free(buf);
	return NULL;
}

/* Four processes fault the same two huge pages of a file at once: one
 * folio each ends up in the cache, and everyone sees every write. */
static void test_hugetlbfs_fault_race(void **state)
{
	struct env *e = *state;
	uint64_t allocs = stat_now(HETMM_STAT_hugetlb_fault_alloc);
	struct race_arg r[4];
	pthread_t t[4];
	int fd = open_huge(e->mm, "hrace", 2 * SZ_2M);

	for (unsigned int i = 0; i < 4; i++) {
		int f;

		r[i].mm = i ? hetmm_process_create(e->m) : e->mm;
		assert_false(IS_ERR(r[i].mm));
		f = i ? hetmm_open(r[i].mm, "hrace", O_RDWR) : fd;
		assert_true(f >= 0);
		r[i].a = (unsigned long)hetmm_mmap(r[i].mm, 0, 2 * SZ_2M, RW,
						   MAP_SHARED, f, 0);
		assert_true((long)r[i].a > 0);
		r[i].cpu = i;
	}
	for (unsigned int i = 0; i < 4; i++)
		assert_int_equal(
			pthread_create(&t[i], NULL, race_writer, &r[i]), 0);
	for (unsigned int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ASSERT_OK(r[i].ret);
	}
	assert_int_equal(stat_now(HETMM_STAT_hugetlb_fault_alloc) - allocs, 2);
	for (unsigned int i = 0; i < 4; i++)
		wcheck(r[i].mm, r[i].a, 2 * SZ_2M, 0, 20);
	fcheck(e->mm, fd, 0, 2 * SZ_2M, 20);
	check_clean(e->m);
	for (unsigned int i = 1; i < 4; i++)
		hetmm_exit(r[i].mm);
	ASSERT_OK(hetmm_unlink(e->mm, "hrace"));
	check_clean(e->m);
}

/* The hugetlbfs page cache seen from memfs: lookups by any page of a
 * folio, hole punching (partial huge pages zeroed, whole ones dropped
 * and unmapped). */
static void test_hugetlbfs_page_cache(void **state)
{
	struct env *e = *state;
	struct hetmm_fs *fs = hetmm_machine_fs(e->m);
	struct file *f =
		hetmm_fs_open(fs, "hpc", O_RDWR | O_CREAT, HETMM_FS_HUGETLBFS);
	unsigned char *buf = malloc(2 * SZ_2M);
	struct folio *folio;
	unsigned char c;
	int fd;
	long a;

	assert_false(IS_ERR(f) || !buf);
	assert_true(is_file_hugepages(f));
	assert_int_equal(file_truncate(f, 3 * SZ_2M / 2), -EINVAL);
	ASSERT_OK(file_truncate(f, 2 * SZ_2M));
	for (unsigned long i = 0; i < 2 * SZ_2M; i++)
		buf[i] = pat(i, 30);
	assert_int_equal(file_pwrite(f, buf, 2 * SZ_2M, 0), (long)(2 * SZ_2M));
	folio = filemap_get_folio(f->f_mapping, HPAGE_PMD_NR + 300);
	assert_false(IS_ERR(folio));
	assert_int_equal(folio->page.index, HPAGE_PMD_NR);
	assert_int_equal(folio_order(folio), PMD_ORDER);
	assert_true(folio_test_hugetlb(folio));
	assert_true(folio_test_flag(folio, PG_dirty));
	folio_put(folio);
	assert_int_equal(f->f_mapping->nrpages, 2);

	fd = hetmm_open(e->mm, "hpc", O_RDWR);
	a = hetmm_mmap(e->mm, 0, 2 * SZ_2M, RW, MAP_SHARED, fd, 0);
	assert_true(fd >= 0 && a > 0);
	wcheck(e->mm, a, 2 * SZ_2M, 0, 30);

	/* Inside both huge pages, neither whole: bytes zeroed in place,
	 * mappings kept. */
	inode_lock(file_inode(f));
	truncate_inode_pages_range(f->f_mapping, PAGE_SIZE + 5,
				   3 * SZ_2M / 2 - 1);
	inode_unlock(file_inode(f));
	assert_int_equal(f->f_mapping->nrpages, 2);
	assert_true(pmd_is_leaf(e->mm, a) && pmd_is_leaf(e->mm, a + SZ_2M));
	wcheck(e->mm, a, PAGE_SIZE + 5, 0, 30);
	wcheck(e->mm, a + 3 * SZ_2M / 2, SZ_2M / 2, 3 * SZ_2M / 2, 30);
	assert_int_equal(hetmm_pread(e->mm, fd, buf, SZ_2M, PAGE_SIZE + 5),
			 (long)SZ_2M);
	for (unsigned long i = 0; i < SZ_2M; i++)
		if (buf[i])
			fail_msg("byte %#lx not zeroed", PAGE_SIZE + 5 + i);
	check_clean(e->m);

	/* The whole first huge page: dropped, and unmapped first. */
	inode_lock(file_inode(f));
	truncate_inode_pages_range(f->f_mapping, 0, SZ_2M - 1);
	inode_unlock(file_inode(f));
	assert_int_equal(f->f_mapping->nrpages, 1);
	assert_false(pmd_is_leaf(e->mm, a));
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + 7, &c, 1));
	assert_int_equal(c, 0);
	wcheck(e->mm, a + 3 * SZ_2M / 2, SZ_2M / 2, 3 * SZ_2M / 2, 30);
	check_clean(e->m);

	free(buf);
	fput(f);
	ASSERT_OK(hetmm_unlink(e->mm, "hpc"));
}

/* ------------------------------------------------------ MADV_COLLAPSE */

/* A 2 MiB aligned anonymous region of @n huge pages without
 * MADV_HUGEPAGE: faults map 4 KiB pages in the default "madvise" mode. */
static unsigned long plain_region(struct mm_struct *mm, unsigned long n)
{
	long a = hetmm_mmap(mm, 0, (n + 1) * SZ_2M, RW, PRIV_ANON, -1, 0);
	unsigned long al;

	assert_true(a > 0);
	al = ALIGN((unsigned long)a, SZ_2M);
	if (al > (unsigned long)a)
		ASSERT_OK(hetmm_munmap(mm, a, al - a));
	ASSERT_OK(hetmm_munmap(mm, al + n * SZ_2M,
			       a + (n + 1) * SZ_2M - (al + n * SZ_2M)));
	return al;
}

static struct folio *leaf_folio(struct mm_struct *mm, unsigned long addr)
{
	unsigned long pfn = leaf_pfn(mm, addr);

	assert_true(pfn != 0);
	return page_folio(pfn_to_page(mm->machine, pfn));
}

/* A fresh collapsed THP: order 9, anon, exclusive, mapped once. */
static void assert_collapsed(struct mm_struct *mm, unsigned long addr)
{
	struct folio *folio = leaf_folio(mm, addr);

	assert_int_equal(folio_order(folio), PMD_ORDER);
	assert_true(folio_test_anon(folio));
	assert_true(PageAnonExclusive(&folio->page));
	assert_int_equal(folio_ref_count(folio), 1);
	assert_int_equal(folio_mapcount(folio), 1);
	assert_int_equal(folio_entire_mapcount(folio), 1);
}

/* Full-page random patterns on a few pages, to compare byte for byte. */
static void write_pages(struct mm_struct *mm, unsigned long a,
			const unsigned long *idx, int n, unsigned char *buf)
{
	for (int i = 0; i < n; i++) {
		for (unsigned long b = 0; b < PAGE_SIZE; b++)
			buf[i * PAGE_SIZE + b] =
				(unsigned char)(b * 31 + idx[i] * 7 + 1);
		ASSERT_OK(hetmm_cpu_write(mm, 0, a + idx[i] * PAGE_SIZE,
					  buf + i * PAGE_SIZE, PAGE_SIZE));
	}
}

static void check_pages(struct mm_struct *mm, unsigned long a,
			const unsigned long *idx, int n,
			const unsigned char *buf)
{
	unsigned char *got = malloc(PAGE_SIZE);

	assert_non_null(got);
	for (int i = 0; i < n; i++) {
		ASSERT_OK(hetmm_cpu_read(mm, 1, a + idx[i] * PAGE_SIZE, got,
					 PAGE_SIZE));
		assert_memory_equal(got, buf + i * PAGE_SIZE, PAGE_SIZE);
	}
	free(got);
}

static void assert_zero_page_at(struct mm_struct *mm, unsigned long a)
{
	unsigned char *got = malloc(PAGE_SIZE);

	assert_non_null(got);
	ASSERT_OK(hetmm_cpu_read(mm, 1, a, got, PAGE_SIZE));
	for (unsigned long b = 0; b < PAGE_SIZE; b++)
		assert_int_equal(got[b], 0);
	free(got);
}

static void test_collapse_small_pages(void **state)
{
	static const unsigned long idx[] = { 0, 1, 100, 255, 511 };
	struct env *e = *state;
	unsigned long a = plain_region(e->mm, 1), before;
	unsigned char *buf = malloc(5 * PAGE_SIZE);

	assert_non_null(buf);
	fill(e->mm, a, SZ_2M, 9);
	assert_false(pmd_is_leaf(e->mm, a));
	/* The sysfs mode does not matter (no MADV_HUGEPAGE here). */
	before = hetmm_pages_free(e->m);
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE));
	assert_true(pmd_is_leaf(e->mm, a));
	assert_collapsed(e->mm, a);
	/* 512 old pages freed, one 2 MiB folio taken, the table reused. */
	assert_int_equal(hetmm_pages_free(e->m), before);
	verify(e->mm, a, SZ_2M, 9);
	ASSERT_OK(hetmm_check(e->m));

	/* Byte for byte, and the leaf is writable in place. */
	write_pages(e->mm, a, idx, 5, buf);
	ASSERT_OK(hetmm_mprotect(e->mm, a, PAGE_SIZE, PROT_READ));
	ASSERT_OK(hetmm_mprotect(e->mm, a, PAGE_SIZE, RW));
	assert_false(pmd_is_leaf(e->mm, a));
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE));
	assert_collapsed(e->mm, a);
	check_pages(e->mm, a, idx, 5, buf);
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, a + 3, "w", 1));
	assert_true(pmd_is_leaf(e->mm, a));
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_munmap(e->mm, a, SZ_2M));
	ASSERT_OK(hetmm_check(e->m));
	free(buf);
}

static void test_collapse_none_and_zero_ptes(void **state)
{
	struct env *e = *state;
	unsigned long a = plain_region(e->mm, 1);

	/* Every third page written, the next read (zero page), one none. */
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++) {
		unsigned char v = (unsigned char)(i + 1), z;

		if (i % 3 == 0)
			ASSERT_OK(hetmm_cpu_write(e->mm, 0, a + i * PAGE_SIZE,
						  &v, 1));
		else if (i % 3 == 1)
			ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + i * PAGE_SIZE,
						 &z, 1));
	}
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE));
	assert_collapsed(e->mm, a);
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++) {
		unsigned char v;

		ASSERT_OK(hetmm_cpu_read(e->mm, 1, a + i * PAGE_SIZE, &v, 1));
		assert_int_equal(v, i % 3 == 0 ? (unsigned char)(i + 1) : 0);
	}
	assert_zero_page_at(e->mm, a + PAGE_SIZE);
	assert_zero_page_at(e->mm, a + 2 * PAGE_SIZE);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_collapse_pte_mapped_thp(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1), old, before;

	fill(e->mm, a, SZ_2M, 3);
	old = leaf_pfn(e->mm, a);
	assert_true(old != 0);
	ASSERT_OK(hetmm_mprotect(e->mm, a + PAGE_SIZE, PAGE_SIZE, PROT_READ));
	ASSERT_OK(hetmm_mprotect(e->mm, a + PAGE_SIZE, PAGE_SIZE, RW));
	assert_false(pmd_is_leaf(e->mm, a));
	before = hetmm_pages_free(e->m);
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE));
	/* A new folio, not the old one mapped in place; the old is freed. */
	assert_true(leaf_pfn(e->mm, a) != old);
	assert_collapsed(e->mm, a);
	assert_int_equal(hetmm_pages_free(e->m), before);
	verify(e->mm, a, SZ_2M, 3);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_collapse_shared_with_child(void **state)
{
	struct env *e = *state;
	unsigned long a = plain_region(e->mm, 1);
	struct mm_struct *child;

	fill(e->mm, a, SZ_2M, 5);
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));
	/* Every PTE is read-only and COW-shared: still collapsed (copied). */
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE));
	assert_collapsed(e->mm, a);
	assert_false(pmd_is_leaf(child, a));
	ASSERT_OK(hetmm_check(e->m));
	verify(child, a, SZ_2M, 5);
	fill(e->mm, a, SZ_2M, 6);
	assert_true(pmd_is_leaf(e->mm, a));
	verify(e->mm, a, SZ_2M, 6);
	verify(child, a, SZ_2M, 5);
	ASSERT_OK(hetmm_check(e->m));
	/* The child's pages are its own now: its collapse copies them too. */
	ASSERT_OK(hetmm_madvise(child, a, SZ_2M, MADV_COLLAPSE));
	assert_collapsed(child, a);
	verify(child, a, SZ_2M, 5);
	hetmm_exit(child);
	verify(e->mm, a, SZ_2M, 6);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_collapse_pinned_page(void **state)
{
	struct env *e = *state;
	unsigned long a = plain_region(e->mm, 2), before;
	struct page *pin, *ref;
	unsigned char v;

	fill(e->mm, a, 2 * SZ_2M, 7);
	/* A FOLL_PIN in the first range, a FOLL_GET in the second. */
	assert_int_equal(pin_user_pages_fast(e->mm, a + 10 * PAGE_SIZE, 1,
					     FOLL_WRITE | FOLL_LONGTERM, &pin),
			 1);
	assert_int_equal(get_user_pages_fast(e->mm, a + SZ_2M, 1, 0, &ref), 1);
	before = hetmm_pages_free(e->m);
	assert_int_equal(hetmm_madvise(e->mm, a, 2 * SZ_2M, MADV_COLLAPSE),
			 -EAGAIN);
	assert_false(pmd_is_leaf(e->mm, a));
	assert_false(pmd_is_leaf(e->mm, a + SZ_2M));
	assert_int_equal(hetmm_pages_free(e->m), before);
	verify(e->mm, a, 2 * SZ_2M, 7);
	ASSERT_OK(hetmm_check(e->m));
	/* The pinned page is still the one mapped. */
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, a + 10 * PAGE_SIZE + 7, "P", 1));
	assert_int_equal(((unsigned char *)page_address(pin))[7], 'P');

	/* Without the pin the first range collapses; the second still
	 * fails, and the call says so. */
	unpin_user_page(pin);
	assert_int_equal(hetmm_madvise(e->mm, a, 2 * SZ_2M, MADV_COLLAPSE),
			 -EAGAIN);
	assert_collapsed(e->mm, a);
	assert_false(pmd_is_leaf(e->mm, a + SZ_2M));
	ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + 10 * PAGE_SIZE + 7, &v, 1));
	assert_int_equal(v, 'P');
	put_page(ref);
	ASSERT_OK(hetmm_madvise(e->mm, a, 2 * SZ_2M, MADV_COLLAPSE));
	assert_collapsed(e->mm, a + SZ_2M);
	verify(e->mm, a + SZ_2M, SZ_2M, (unsigned char)(7 + 512));
	ASSERT_OK(hetmm_check(e->m));
}

static void test_collapse_already_pmd(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 1), pfn;

	fill(e->mm, a, SZ_2M, 1);
	pfn = leaf_pfn(e->mm, a);
	assert_true(pfn != 0);
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE));
	assert_int_equal(leaf_pfn(e->mm, a), pfn);
	verify(e->mm, a, SZ_2M, 1);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_collapse_bad_input(void **state)
{
	struct env *e = *state;
	unsigned long a = plain_region(e->mm, 3);
	long h, s;

	fill(e->mm, a, 3 * SZ_2M, 2);
	/* Misaligned start, unknown advice range checks. */
	assert_int_equal(hetmm_madvise(e->mm, a + 1, SZ_2M, MADV_COLLAPSE),
			 -EINVAL);
	/* A hole: -ENOMEM, nothing collapsed. */
	ASSERT_OK(hetmm_munmap(e->mm, a + SZ_2M, PAGE_SIZE));
	assert_int_equal(hetmm_madvise(e->mm, a, 3 * SZ_2M, MADV_COLLAPSE),
			 -ENOMEM);
	assert_false(pmd_is_leaf(e->mm, a));
	/* MADV_NOHUGEPAGE: -EINVAL. */
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_NOHUGEPAGE));
	assert_int_equal(hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE),
			 -EINVAL);
	assert_false(pmd_is_leaf(e->mm, a));
	/* THP mode "never" is ignored by MADV_COLLAPSE. A start inside a
	 * 2 MiB collapses only the whole ranges after it. */
	ASSERT_OK(hetmm_thp_set_mode(e->m, "never"));
	ASSERT_OK(hetmm_madvise(e->mm, a + SZ_2M + PAGE_SIZE,
				2 * SZ_2M - PAGE_SIZE, MADV_COLLAPSE));
	assert_collapsed(e->mm, a + 2 * SZ_2M);
	verify(e->mm, a + 2 * SZ_2M, SZ_2M, (unsigned char)(2 + 1024));
	/* No whole 2 MiB: crossing a boundary, nothing to do; strictly
	 * inside one 2 MiB block, the kernel's count wraps: -EINVAL. */
	ASSERT_OK(hetmm_madvise(e->mm, a + 2 * SZ_2M - PAGE_SIZE, 2 * PAGE_SIZE,
				MADV_COLLAPSE));
	assert_int_equal(hetmm_madvise(e->mm, a + 2 * SZ_2M + PAGE_SIZE,
				       PAGE_SIZE, MADV_COLLAPSE),
			 -EINVAL);
	ASSERT_OK(hetmm_thp_set_mode(e->m, "madvise"));
	/* A range that was never touched has no PTE table: -EINVAL. */
	s = hetmm_mmap(e->mm, 0, 2 * SZ_2M, RW, PRIV_ANON, -1, 0);
	assert_true(s > 0);
	assert_int_equal(hetmm_madvise(e->mm, (unsigned long)s, 2 * SZ_2M,
				       MADV_COLLAPSE),
			 -EINVAL);
	/* hugetlb and shared anonymous memory: -EINVAL. */
	h = hetmm_mmap(e->mm, 0, SZ_2M, RW, PRIV_ANON | MAP_HUGETLB, -1, 0);
	assert_true(h > 0);
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, (unsigned long)h, "h", 1));
	assert_int_equal(
		hetmm_madvise(e->mm, (unsigned long)h, SZ_2M, MADV_COLLAPSE),
		-EINVAL);
	s = hetmm_mmap(e->mm, 0, 2 * SZ_2M, RW, MAP_SHARED | MAP_ANONYMOUS, -1,
		       0);
	assert_true(s > 0);
	fill(e->mm, (unsigned long)s, 2 * SZ_2M, 4);
	assert_int_equal(hetmm_madvise(e->mm, (unsigned long)s, 2 * SZ_2M,
				       MADV_COLLAPSE),
			 -EINVAL);
	ASSERT_OK(hetmm_check(e->m));
}

static void test_collapse_failures_restore(void **state)
{
	struct env *e = *state;
	unsigned long a = plain_region(e->mm, 1), before;

	fill(e->mm, a, SZ_2M, 8);
	before = hetmm_pages_free(e->m);
	/* No 2 MiB page: -ENOMEM, nothing changed. */
	ASSERT_OK(hetmm_fault_parse(&e->m->faults, "alloc_pages:nth=1"));
	assert_int_equal(hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE),
			 -ENOMEM);
	hetmm_fault_reset(&e->m->faults);
	assert_false(pmd_is_leaf(e->mm, a));
	assert_int_equal(hetmm_pages_free(e->m), before);
	verify(e->mm, a, SZ_2M, 8);
	ASSERT_OK(hetmm_check(e->m));
	/* A machine check in the middle of the copy, after the PTEs were
	 * unhooked: the same table goes back (SCAN_COPY_MC: -EINVAL). */
	ASSERT_OK(hetmm_fault_parse(&e->m->faults, "copy_page:nth=100"));
	assert_int_equal(hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE),
			 -EINVAL);
	hetmm_fault_reset(&e->m->faults);
	assert_false(pmd_is_leaf(e->mm, a));
	assert_int_equal(hetmm_pages_free(e->m), before);
	verify(e->mm, a, SZ_2M, 8);
	ASSERT_OK(hetmm_check(e->m));
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE));
	assert_collapsed(e->mm, a);
	verify(e->mm, a, SZ_2M, 8);
	ASSERT_OK(hetmm_check(e->m));
}

struct gup_racer {
	struct mm_struct *mm;
	unsigned long a;
	volatile bool stop;
	unsigned long pins;
	bool wrote[HPAGE_PMD_NR];
};

/* GUP-fast pins (and unpins) pages of the range while it collapses. */
static void *gup_fast_racer(void *p)
{
	struct gup_racer *r = p;
	unsigned long i = 0;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		struct page *page;
		unsigned long n = i++ % HPAGE_PMD_NR;

		if (pin_user_pages_fast(r->mm, r->a + n * PAGE_SIZE, 1,
					FOLL_WRITE, &page) == 1) {
			/* A pinned page stays mapped while pinned: a write
			 * through the pin is never lost to a collapse. */
			sched_yield();
			((unsigned char *)page_address(page))[100] = 0x5a;
			unpin_user_page(page);
			r->wrote[n] = true;
			r->pins++;
		}
		sched_yield();
	}
	return NULL;
}

static void test_collapse_gup_fast_race(void **state)
{
	struct env *e = *state;
	unsigned long a = plain_region(e->mm, 1);
	struct gup_racer r = { .mm = e->mm, .a = a };
	unsigned int done = 0, busy = 0;
	pthread_t t;

	fill(e->mm, a, SZ_2M, 11);
	assert_int_equal(pthread_create(&t, NULL, gup_fast_racer, &r), 0);
	for (int round = 0; round < 2000 && done < 20; round++) {
		int ret = hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE);

		assert_true(ret == 0 || ret == -EAGAIN);
		if (!ret) {
			done++;
			/* PTE-map it again for the next round. */
			ASSERT_OK(
				hetmm_mprotect(e->mm, a, PAGE_SIZE, PROT_READ));
			ASSERT_OK(hetmm_mprotect(e->mm, a, PAGE_SIZE, RW));
		} else {
			busy++;
			sched_yield();
		}
	}
	__atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	printf("# %u collapsed, %u busy, %lu pins\n", done, busy, r.pins);
	/* Alone again: the range collapses (whatever the race left). */
	ASSERT_OK(hetmm_madvise(e->mm, a, SZ_2M, MADV_COLLAPSE));
	assert_collapsed(e->mm, a);
	verify(e->mm, a, SZ_2M, 11);
	for (unsigned long n = 0; n < HPAGE_PMD_NR; n++) {
		unsigned char v;

		ASSERT_OK(hetmm_cpu_read(e->mm, 0, a + n * PAGE_SIZE + 100, &v,
					 1));
		assert_int_equal(v, r.wrote[n] ? 0x5a : 0);
	}
	ASSERT_OK(hetmm_check(e->m));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fault_installs_pmd,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_policy, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_partial_munmap_splits,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_mprotect_whole_and_partial,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_fork_cow, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_dontneed_and_mremap,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_alloc_failure_falls_back,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_hugetlb, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_hugetlb_shared_anon_fork,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_hugetlbfs_shared_file,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_hugetlbfs_pread_pwrite,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_hugetlbfs_private,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_hugetlbfs_truncate,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_hugetlb_shared_alignment,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(
			test_hugetlb_shared_alloc_failure, env_setup,
			env_teardown),
		cmocka_unit_test_setup_teardown(test_hugetlbfs_fault_race,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_hugetlbfs_page_cache,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_collapse_small_pages,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(
			test_collapse_none_and_zero_ptes, env_setup,
			env_teardown),
		cmocka_unit_test_setup_teardown(test_collapse_pte_mapped_thp,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_collapse_shared_with_child,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_collapse_pinned_page,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_collapse_already_pmd,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_collapse_bad_input,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_collapse_failures_restore,
						env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_collapse_gup_fast_race,
						env_setup, env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
