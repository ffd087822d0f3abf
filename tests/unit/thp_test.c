// SPDX-License-Identifier: MIT
/*
 * thp_test.c - transparent huge pages: 2 MiB faults, splitting on partial
 * munmap/mprotect/DONTNEED/mremap, fork sharing and COW, policies, and
 * the fallback to 4 KiB pages when no 2 MiB folio is available; and
 * private hugetlb mappings (MAP_HUGETLB).
 */
#include <hetmm/mm.h>
#include <hetmm/stats.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)
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

	/* Upper tables exist (a zero-page read in the second 2 MiB)... */
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
	assert_int_equal(hetmm_mmap(e->mm, 0, SZ_2M, RW,
				    MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB,
				    -1, 0),
			 -EOPNOTSUPP);
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
