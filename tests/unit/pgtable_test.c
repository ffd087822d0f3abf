// SPDX-License-Identifier: MIT
/*
 * pgtable_test.c - entry encodings, table installation and freeing, and
 * the generic walker, on a bare mm (no mmap yet).
 */
#include <hetmm/mm.h>

#include "harness.h"

struct env {
	struct hetmm_machine *m;
	struct mm_struct *mm;
};

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	e->m = test_machine_new(32, false);
	e->mm = mm_alloc(e->m);
	assert_false(IS_ERR(e->mm));
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	if (e->mm)
		mmput(e->mm);
	test_machine_finish(e->m);
	free(e);
	return 0;
}

static void test_encodings(void **state)
{
	(void)state;
	pte_t p = pfn_pte(0x12345, _PAGE_RW);
	softleaf_t s;

	assert_true(pte_present(p));
	assert_int_equal(pte_pfn(p), 0x12345);
	assert_true(pte_write(p));
	assert_false(pte_write(pte_wrprotect(p)));
	assert_true(pte_dirty(pte_mkdirty(p)));
	assert_true(pte_young(pte_mkyoung(p)));
	assert_int_equal(pte_kind(p), SOFTLEAF_PRESENT);
	assert_int_equal(pte_kind(__pte(0)), SOFTLEAF_NONE);
	assert_true(pmd_leaf(pfn_pmd_leaf(512, 0)));
	assert_false(pmd_leaf(p));

	/* Every softleaf kind round-trips its kind and pfn. */
	struct {
		softleaf_t e;
		enum softleaf_type k;
	} cases[] = {
		{ make_migration_entry(77, false, false), SOFTLEAF_MIGRATION_READ },
		{ make_migration_entry(77, false, true),
		  SOFTLEAF_MIGRATION_READ_EXCLUSIVE },
		{ make_migration_entry(77, true, false), SOFTLEAF_MIGRATION_WRITE },
		{ make_device_private_entry(77, false),
		  SOFTLEAF_DEVICE_PRIVATE_READ },
		{ make_device_private_entry(77, true),
		  SOFTLEAF_DEVICE_PRIVATE_WRITE },
		{ make_device_exclusive_entry(77), SOFTLEAF_DEVICE_EXCLUSIVE },
		{ make_hwpoison_entry(77), SOFTLEAF_HWPOISON },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		pte_t q = softleaf_to_pte(cases[i].e);

		assert_false(pte_present(q));
		assert_false(pte_none(q));
		assert_int_equal(pte_kind(q), cases[i].k);
		assert_true(softleaf_has_pfn(cases[i].k));
		assert_int_equal(softleaf_pfn(cases[i].e), 77);
	}
	/* The largest pfn the field holds survives. */
	s = make_migration_entry((1UL << 40) - 1, true, false);
	assert_int_equal(softleaf_pfn(s), (1UL << 40) - 1);
	s = softleaf_mkdirty(softleaf_mkyoung(s));
	assert_true(softleaf_young(s) && softleaf_dirty(s));
	assert_int_equal(pte_kind(softleaf_to_pte(s)), SOFTLEAF_MIGRATION_WRITE);
	s = make_pte_marker(PTE_MARKER_GUARD);
	assert_int_equal(pte_kind(softleaf_to_pte(s)), SOFTLEAF_MARKER);
	assert_int_equal(softleaf_offset(s), PTE_MARKER_GUARD);
	s = make_swap_entry(3, 999, true);
	assert_int_equal(pte_kind(softleaf_to_pte(s)), SOFTLEAF_SWAP);
	assert_true(softleaf_exclusive(s));
	assert_int_equal(softleaf_offset(s), 999);
}

/* Install a PTE for @addr (tables allocated on the way). */
static int map_one(struct mm_struct *mm, unsigned long addr, pte_t val)
{
	pud_t *pud = pud_alloc(mm, pgd_offset(mm, addr), addr);
	pmd_t *pmd;
	spinlock_t *ptl;
	pte_t *pte;

	if (!pud)
		return -ENOMEM;
	pmd = pmd_alloc(mm, pud, addr);
	if (!pmd || __pte_alloc(mm, pmd))
		return -ENOMEM;
	pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	assert_non_null(pte);
	set_pte(pte, val);
	spin_unlock(ptl);
	return 0;
}

static void unmap_one(struct mm_struct *mm, unsigned long addr)
{
	pmd_t *pmd = mm_find_pmd(mm, addr);
	spinlock_t *ptl;
	pte_t *pte;

	assert_non_null(pmd);
	pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	assert_non_null(pte);
	ptep_get_and_clear(pte);
	spin_unlock(ptl);
}

struct collect {
	unsigned long addrs[64];
	uint64_t vals[64];
	int n;
	int holes;
	int pmds;
	int stop_after;
};

static int c_pte(pte_t *pte, unsigned long addr, unsigned long next,
		 struct mm_walk *walk)
{
	struct collect *c = walk->private;

	(void)next;
	if (pte_none(ptep_get(pte)))
		return 0;
	c->addrs[c->n] = addr;
	c->vals[c->n++] = pte_val(ptep_get(pte));
	return c->stop_after && c->n == c->stop_after ? 42 : 0;
}

static int c_hole(unsigned long addr, unsigned long next, int depth,
		  struct mm_walk *walk)
{
	struct collect *c = walk->private;

	(void)addr;
	(void)next;
	(void)depth;
	c->holes++;
	return 0;
}

static int c_pmd(pmd_t *pmd, unsigned long addr, unsigned long next,
		 struct mm_walk *walk)
{
	struct collect *c = walk->private;

	(void)pmd;
	(void)addr;
	(void)next;
	c->pmds++;
	return 0;
}

static const struct mm_walk_ops collect_ops = {
	.pte_entry = c_pte,
	.pte_hole = c_hole,
	.pmd_entry = c_pmd,
	.walk_lock = PGWALK_RDLOCK,
};

static void test_install_walk_free(void **state)
{
	struct env *e = *state;
	struct mm_struct *mm = e->mm;
	/* Addresses in different PTE/PMD/PUD/PGD tables. */
	unsigned long addrs[] = { 0x1000, 0x2000, 0x200000, 0x40000000,
				  0x8000000000UL, TASK_SIZE - PAGE_SIZE };
	struct collect c = { 0 };
	long base = atomic_load(&mm->nr_pt_pages);

	mmap_write_lock(mm);
	for (size_t i = 0; i < ARRAY_SIZE(addrs); i++)
		ASSERT_OK(map_one(mm, addrs[i], pfn_pte(100 + i, 0)));
	mmap_write_unlock(mm);
	assert_true(atomic_load(&mm->nr_pt_pages) > base);

	mmap_read_lock(mm);
	ASSERT_OK(walk_page_range_novma(mm, 0, TASK_SIZE, &collect_ops, &c));
	assert_int_equal(c.n, ARRAY_SIZE(addrs));
	for (size_t i = 0; i < ARRAY_SIZE(addrs); i++) {
		assert_int_equal(c.addrs[i], addrs[i]);
		assert_int_equal(pte_pfn(__pte(c.vals[i])), 100 + i);
	}
	assert_true(c.holes > 0);
	assert_true(c.pmds > 0);
	/* A callback's nonzero return stops the walk and is returned. */
	memset(&c, 0, sizeof(c));
	c.stop_after = 2;
	assert_int_equal(walk_page_range_novma(mm, 0, TASK_SIZE, &collect_ops,
					       &c),
			 42);
	assert_int_equal(c.n, 2);
	/* Bad ranges. */
	assert_int_equal(walk_page_range_novma(mm, 0, 0, &collect_ops, &c),
			 -EINVAL);
	assert_int_equal(walk_page_range_novma(mm, 1, PAGE_SIZE, &collect_ops,
					       &c),
			 -EINVAL);
	assert_int_equal(walk_page_range_novma(mm, 0, TASK_SIZE + PAGE_SIZE,
					       &collect_ops, &c),
			 -EINVAL);
	mmap_read_unlock(mm);

	/* Tables holding entries survive freeing; empty ones go. */
	mmap_write_lock(mm);
	free_pgd_range(mm, 0, TASK_SIZE);
	assert_non_null(mm->pgd);
	for (size_t i = 0; i < ARRAY_SIZE(addrs); i++)
		unmap_one(mm, addrs[i]);
	free_pgd_range(mm, 0, 0x40000000);
	assert_non_null(mm_find_pmd(mm, 0x40000000));
	assert_null(mm_find_pmd(mm, 0x1000));
	free_pgd_range(mm, 0, TASK_SIZE);
	assert_null(mm->pgd);
	assert_int_equal(atomic_load(&mm->nr_pt_pages), 0);
	mmap_write_unlock(mm);
}

static void test_walk_vmas(void **state)
{
	struct env *e = *state;
	struct mm_struct *mm = e->mm;
	struct vm_area_struct *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct vm_area_struct *bad = calloc(1, sizeof(*bad));
	struct collect c = { 0 };

	/*
	 * 0x10000      0x20000   0x30000      0x40000
	 *    [   a   ]            [    b    ]
	 */
	a->vm_start = 0x10000;
	a->vm_end = 0x20000;
	b->vm_start = 0x30000;
	b->vm_end = 0x40000;
	mmap_write_lock(mm);
	ASSERT_OK(insert_vm_struct(mm, b));
	ASSERT_OK(insert_vm_struct(mm, a));
	bad->vm_start = 0x1f000;
	bad->vm_end = 0x31000;
	assert_int_equal(insert_vm_struct(mm, bad), -EINVAL);
	bad->vm_start = 0x1001;
	assert_int_equal(insert_vm_struct(mm, bad), -EINVAL);
	assert_ptr_equal(find_vma(mm, 0), a);
	assert_ptr_equal(find_vma(mm, 0x1ffff), a);
	assert_ptr_equal(find_vma(mm, 0x20000), b);
	assert_null(find_vma(mm, 0x40000));
	assert_null(vma_lookup(mm, 0x25000));
	assert_ptr_equal(vma_lookup(mm, 0x30000), b);
	ASSERT_OK(map_one(mm, 0x11000, pfn_pte(5, 0)));
	ASSERT_OK(map_one(mm, 0x25000, pfn_pte(6, 0))); /* outside any VMA */
	ASSERT_OK(map_one(mm, 0x3f000, pfn_pte(7, 0)));
	mmap_write_unlock(mm);

	mmap_read_lock(mm);
	ASSERT_OK(walk_page_range(mm, 0, 0x50000, &collect_ops, &c));
	mmap_read_unlock(mm);
	/* Only entries inside VMAs are visited. */
	assert_int_equal(c.n, 2);
	assert_int_equal(c.addrs[0], 0x11000);
	assert_int_equal(c.addrs[1], 0x3f000);

	mmap_write_lock(mm);
	unmap_one(mm, 0x11000);
	unmap_one(mm, 0x25000);
	unmap_one(mm, 0x3f000);
	mmap_write_unlock(mm);
	free(bad);
	/* a and b are freed by exit (mmput in teardown). */
}

static void test_pgtable_alloc_failure(void **state)
{
	struct env *e = *state;
	struct mm_struct *mm = e->mm;
	int ret;

	/* Fail the Nth table allocation until mapping succeeds. */
	for (int nth = 1;; nth++) {
		ASSERT_OK(hetmm_fault_set(&e->m->faults,
					  HETMM_FAULT_pgtable_alloc, FAULT_NTH,
					  nth, 0));
		mmap_write_lock(mm);
		ret = map_one(mm, 0x7f0000000000UL, pfn_pte(9, 0));
		if (ret) {
			free_pgd_range(mm, 0x7f0000000000UL,
				       0x7f0000000000UL + PMD_SIZE);
			mmap_write_unlock(mm);
			assert_int_equal(ret, -ENOMEM);
			continue;
		}
		unmap_one(mm, 0x7f0000000000UL);
		mmap_write_unlock(mm);
		break;
	}
	hetmm_fault_reset(&e->m->faults);
}

/* Every table frame of an exiting mm is freed (after a grace period). */
static void test_exit_frees_tables(void **state)
{
	struct env *e = *state;
	long before = hetmm_pages_in_use(e->m);
	struct mm_struct *mm = mm_alloc(e->m);

	mmap_write_lock(mm);
	for (unsigned long a = 0; a < 64 * PMD_SIZE; a += PMD_SIZE)
		ASSERT_OK(map_one(mm, a, pfn_pte(1, 0)));
	for (unsigned long a = 0; a < 64 * PMD_SIZE; a += PMD_SIZE)
		unmap_one(mm, a);
	mmap_write_unlock(mm);
	assert_true(hetmm_pages_in_use(e->m) >= before + 66);
	mmput(mm);
	rcu_barrier();
	drain_all_pages(e->m);
	assert_int_equal(hetmm_pages_in_use(e->m), before);
}

/*
 * Regression (bench segfault): destroying a machine right after an mm's
 * exit, with page-table frames still waiting for their grace period.
 */
static void test_destroy_with_rcu_pending(void **state)
{
	(void)state;
	for (int i = 0; i < 20; i++) {
		struct hetmm_machine *m = test_machine_new(16, false);
		struct mm_struct *mm = mm_alloc(m);

		mmap_write_lock(mm);
		for (unsigned long a = 0; a < 8 * PMD_SIZE; a += PMD_SIZE) {
			ASSERT_OK(map_one(mm, a, pfn_pte(1, 0)));
			unmap_one(mm, a);
		}
		mmap_write_unlock(mm);
		mmput(mm);
		hetmm_machine_destroy(m); /* no rcu_barrier() by the caller */
	}
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, env_setup, env_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encodings),
		T(test_install_walk_free),
		T(test_walk_vmas),
		T(test_pgtable_alloc_failure),
		T(test_exit_frees_tables),
		cmocka_unit_test(test_destroy_with_rcu_pending),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
