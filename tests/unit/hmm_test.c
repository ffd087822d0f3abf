// SPDX-License-Identifier: MIT
/*
 * hmm_test.c - hmm_range_fault(): snapshots of every kind of entry
 * (none, zero page, read-only, writable, PROT_NONE, holes, THP, hugetlb,
 * special and softleaf entries, device-private pages of the caller, of a
 * peer, over P2P), faults on request (read, write with COW, per-page
 * masks, the block rule), the error codes, sticky flags, -EBUSY after an
 * invalidation, the driver protocol under concurrent changes, and the
 * cost of a snapshot per page.
 *
 * Each test gets its own machine and process, and a "mirror": an interval
 * notifier whose ->invalidate() bumps the sequence under the mirror's
 * lock, as a driver's would (spec 2.8).
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <hetmm/hmm.h>
#include <hetmm/memremap.h>
#include <hetmm/mm.h>
#include <hetmm/mmu_notifier.h>
#include <hetmm/stats.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define PG PAGE_SIZE
#define SZ_2M (2UL << 20)
/* A 2 MiB aligned spot for fixed mappings. */
#define BASE 0x10000000UL
#define V HMM_PFN_VALID
#define W HMM_PFN_WRITE
#define ORDER9 (9UL << HMM_PFN_ORDER_SHIFT)

/* ------------------------------------------------------------ mirror */

struct mirror {
	struct mmu_interval_notifier sub;
	pthread_mutex_t lock;
	struct mm_struct *mm;
	bool inserted;
	unsigned long invalidations; /* under @lock */
};

static bool mirror_invalidate(struct mmu_interval_notifier *sub,
			      const struct mmu_notifier_range *range,
			      unsigned long cur_seq)
{
	struct mirror *mi = container_of(sub, struct mirror, sub);

	if (mmu_notifier_range_blockable(range))
		pthread_mutex_lock(&mi->lock);
	else if (pthread_mutex_trylock(&mi->lock))
		return false;
	mmu_interval_set_seq(sub, cur_seq);
	mi->invalidations++;
	pthread_mutex_unlock(&mi->lock);
	return true;
}

static const struct mmu_interval_notifier_ops mirror_ops = {
	.invalidate = mirror_invalidate,
};

static void mirror_insert(struct mirror *mi, struct mm_struct *mm,
			  unsigned long start, unsigned long len)
{
	mi->mm = mm;
	ASSERT_OK(mmu_interval_notifier_insert(&mi->sub, mm, start, len,
					       &mirror_ops));
	mi->inserted = true;
}

static void mirror_remove(struct mirror *mi)
{
	if (mi->inserted)
		mmu_interval_notifier_remove(&mi->sub);
	mi->inserted = false;
}

/* ------------------------------------------------------------ fixture */

struct env {
	struct hetmm_machine *m;
	struct mm_struct *mm;
	struct mirror mi;
	unsigned long zero_pfn;
};

static int env_setup_size(void **state, uint64_t mb, bool data)
{
	struct env *e = calloc(1, sizeof(*e));

	e->m = test_machine_new(mb, data);
	e->mm = hetmm_process_create(e->m);
	assert_false(IS_ERR(e->mm));
	pthread_mutex_init(&e->mi.lock, NULL);
	e->zero_pfn = page_to_pfn(e->m->zero_page);
	*state = e;
	return 0;
}

static int env_setup(void **state)
{
	return env_setup_size(state, 64, true);
}

static int env_setup_big(void **state)
{
	return env_setup_size(state, 256, false);
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	mirror_remove(&e->mi);
	if (e->mm)
		hetmm_exit(e->mm);
	test_machine_finish(e->m);
	pthread_mutex_destroy(&e->mi.lock);
	free(e);
	return 0;
}

/* ------------------------------------------------------------ helpers */

static uint64_t stat_now(enum hetmm_stat_item item)
{
	struct hetmm_stats s;

	hetmm_stats_read(&s);
	return s.v[item];
}

static void range_init(struct hmm_range *r, struct mirror *mi,
		       unsigned long start, unsigned long npages,
		       unsigned long *pfns, unsigned long default_flags,
		       unsigned long mask)
{
	memset(r, 0, sizeof(*r));
	r->notifier = &mi->sub;
	r->start = start;
	r->end = start + npages * PG;
	r->hmm_pfns = pfns;
	r->default_flags = default_flags;
	r->pfn_flags_mask = mask;
}

static unsigned long range_npages(const struct hmm_range *r)
{
	return (r->end - r->start) >> PAGE_SHIFT;
}

/* One call with a fresh sequence, no retry. */
static int hmm_once(struct mirror *mi, struct hmm_range *r)
{
	int ret;

	r->notifier_seq = mmu_interval_read_begin(&mi->sub);
	mmap_read_lock(mi->mm);
	ret = hmm_range_fault(r);
	mmap_read_unlock(mi->mm);
	return ret;
}

/*
 * The driver protocol (spec 2.8): retry on -EBUSY and on a collision seen
 * under the mirror lock, restoring the requests (@input, or zeros) before
 * every attempt. Return: 0 with mi->lock held (the result is stable until
 * it is dropped), or hmm_range_fault()'s error. *@busy counts -EBUSY.
 */
static int mirror_fault_locked(struct mirror *mi, struct hmm_range *r,
			       const unsigned long *input, unsigned int *busy)
{
	size_t n = range_npages(r);

	for (unsigned int tries = 0; tries < 100000; tries++) {
		int ret;

		if (input)
			memcpy(r->hmm_pfns, input, n * sizeof(*input));
		else
			memset(r->hmm_pfns, 0, n * sizeof(*r->hmm_pfns));
		ret = hmm_once(mi, r);
		if (ret == -EBUSY) {
			if (busy)
				(*busy)++;
			continue;
		}
		if (ret)
			return ret;
		pthread_mutex_lock(&mi->lock);
		if (!mmu_interval_read_retry(&mi->sub, r->notifier_seq))
			return 0;
		pthread_mutex_unlock(&mi->lock);
	}
	fail_msg("driver protocol did not converge");
	return -EBUSY;
}

static int mirror_fault(struct mirror *mi, struct hmm_range *r,
			const unsigned long *input, unsigned int *busy)
{
	int ret = mirror_fault_locked(mi, r, input, busy);

	if (!ret)
		pthread_mutex_unlock(&mi->lock);
	return ret;
}

/*
 * The CPU's view of @addr: its PTE, or the PMD leaf narrowed to the page
 * (*@order 9). Lock-free, as GUP-fast: tables are RCU-freed.
 */
static pte_t cpu_entry(struct mm_struct *mm, unsigned long addr,
		       unsigned int *order)
{
	pte_t e = __pte(0);
	pmd_t *pmd;

	if (order)
		*order = 0;
	rcu_read_lock();
	pmd = mm->pgd ? mm_find_pmd(mm, addr) : NULL;
	if (pmd) {
		pmd_t p = ptep_get(pmd);

		if (pmd_leaf(p)) {
			e = __pte((pte_val(p) & ~(_PAGE_PFN_MASK | _PAGE_PSE)) |
				  ((uint64_t)(pte_pfn(p) + pte_index(addr))
				   << _PAGE_PFN_SHIFT));
			if (order)
				*order = 9;
		} else if (pmd_table(p)) {
			e = ptep_get(pte_offset(mm, pmd, addr));
		}
	}
	rcu_read_unlock();
	return e;
}

static unsigned long cpu_pfn(struct mm_struct *mm, unsigned long addr)
{
	pte_t e = cpu_entry(mm, addr, NULL);

	assert_true(pte_present(e));
	return pte_pfn(e);
}

static bool cpu_none(struct mm_struct *mm, unsigned long addr)
{
	return pte_none(cpu_entry(mm, addr, NULL));
}

/* Replace the PTE of @addr (its table must exist); return the old one. */
static pte_t pte_swap(struct mm_struct *mm, unsigned long addr, pte_t new)
{
	spinlock_t *ptl;
	pmd_t *pmd;
	pte_t *pte = NULL, old = __pte(0);

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	if (pmd)
		pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	if (pte) {
		old = ptep_get(pte);
		set_pte(pte, new);
		spin_unlock(ptl);
	}
	mmap_read_unlock(mm);
	assert_non_null(pte); /* (not under the locks: cmocka longjmps) */
	return old;
}

/* Install @e in the PMD of @addr (whose PMD table must exist). */
static pmd_t pmd_swap(struct mm_struct *mm, unsigned long addr, pmd_t e)
{
	pmd_t *pmd, old = __pte(0);

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	if (pmd) {
		spin_lock(&mm->page_table_lock);
		old = ptep_get(pmd);
		set_pte(pmd, e);
		spin_unlock(&mm->page_table_lock);
	}
	mmap_read_unlock(mm);
	assert_non_null(pmd);
	return old;
}

static void folio_pmd_mapcount(struct folio *folio, int delta)
{
	atomic_fetch_add(&folio->page._entire_mapcount, delta);
	atomic_fetch_add(&folio->page._large_mapcount, delta);
}

static void map_fixed(struct env *e, unsigned long addr, unsigned long len,
		      int prot, int flags)
{
	assert_int_equal(
		hetmm_mmap(e->mm, addr, len, prot, flags | MAP_FIXED, -1, 0),
		(long)addr);
}

static void populate(struct env *e, unsigned long addr, unsigned long len,
		     bool write)
{
	ASSERT_OK(hetmm_madvise(e->mm, addr, len,
				write ? MADV_POPULATE_WRITE :
					MADV_POPULATE_READ));
}

static void cpu_write_byte(struct env *e, unsigned long addr, unsigned char v)
{
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, addr, &v, 1));
}

static void cpu_read_byte(struct env *e, unsigned long addr)
{
	unsigned char v;

	ASSERT_OK(hetmm_cpu_read(e->mm, 0, addr, &v, 1));
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

static void assert_pfn_eq(unsigned long got, unsigned long want,
			  unsigned long i)
{
	if (got != want)
		fail_msg("entry %lu: got %#lx, want %#lx", i, got, want);
}

/* ---------------------------------------------------------- arguments */

static void test_invalid_args(void **state)
{
	struct env *e = *state;
	unsigned long pfns[4] = { 0 };
	struct hmm_range r;

	map_fixed(e, BASE, 4 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 4 * PG);

	range_init(&r, &e->mi, BASE + 1, 2, pfns, 0, 0);
	assert_int_equal(hmm_once(&e->mi, &r), -EINVAL);
	range_init(&r, &e->mi, BASE, 2, pfns, 0, 0);
	r.end -= 8;
	assert_int_equal(hmm_once(&e->mi, &r), -EINVAL);
	range_init(&r, &e->mi, BASE, 0, pfns, 0, 0);
	assert_int_equal(hmm_once(&e->mi, &r), -EINVAL);
	range_init(&r, &e->mi, BASE + 2 * PG, 0, pfns, 0, 0);
	r.end = BASE;
	assert_int_equal(hmm_once(&e->mi, &r), -EINVAL);
	range_init(&r, &e->mi, BASE, 2, NULL, 0, 0);
	assert_int_equal(hmm_once(&e->mi, &r), -EINVAL);
	range_init(&r, &e->mi, TASK_SIZE - PG, 2, pfns, 0, 0);
	assert_int_equal(hmm_once(&e->mi, &r), -EINVAL);
	assert_int_equal(hmm_range_fault(NULL), -EINVAL);
	/* Nothing was touched. */
	for (int i = 0; i < 4; i++)
		assert_int_equal(pfns[i], 0);
}

/* ---------------------------------------------------------- snapshots */

/*
 * page:  0     1     2    3-4   5-7    8     9     10-15  16-17
 *        none  zero  RW   hole  NONE   RO    RO    RW     unmapped
 *                                      (w)   none
 */
static void test_snapshot_kinds(void **state)
{
	struct env *e = *state;
	unsigned long pfns[18], input[18], want[18];
	uint64_t valid0 = stat_now(HETMM_STAT_hmm_pfn_valid);
	uint64_t fault0 = stat_now(HETMM_STAT_hmm_fault);
	uint64_t calls0 = stat_now(HETMM_STAT_hmm_range_fault);
	struct hmm_range r;

	map_fixed(e, BASE, 16 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 18 * PG);
	cpu_read_byte(e, BASE + 1 * PG);
	cpu_write_byte(e, BASE + 2 * PG, 2);
	cpu_write_byte(e, BASE + 8 * PG, 8);
	for (int i = 10; i < 16; i++)
		cpu_write_byte(e, BASE + i * PG, (unsigned char)i);
	ASSERT_OK(hetmm_munmap(e->mm, BASE + 3 * PG, 2 * PG));
	ASSERT_OK(hetmm_mprotect(e->mm, BASE + 5 * PG, 3 * PG, PROT_NONE));
	ASSERT_OK(hetmm_mprotect(e->mm, BASE + 8 * PG, 2 * PG, PROT_READ));

	want[0] = 0;
	want[1] = e->zero_pfn | V;
	want[2] = cpu_pfn(e->mm, BASE + 2 * PG) | V | W;
	want[3] = want[4] = HMM_PFN_ERROR;
	want[5] = want[6] = want[7] = HMM_PFN_ERROR;
	want[8] = cpu_pfn(e->mm, BASE + 8 * PG) | V;
	want[9] = 0;
	for (int i = 10; i < 16; i++)
		want[i] = cpu_pfn(e->mm, BASE + i * PG) | V | W;
	want[16] = want[17] = HMM_PFN_ERROR;

	/*
	 * Sticky bits survive; request bits the mask hides, ALLOW_P2P and
	 * junk below them do not.
	 */
	for (int i = 0; i < 18; i++)
		input[i] = (i & 1) ? (V | W | HMM_PFN_ALLOW_P2P | 0x1234) :
				     (HMM_PFN_DMA_MAPPED | HMM_PFN_P2PDMA_BUS);
	memcpy(pfns, input, sizeof(pfns));
	range_init(&r, &e->mi, BASE, 18, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < 18; i++)
		assert_pfn_eq(pfns[i],
			      (input[i] & HMM_PFN_INOUT_FLAGS) | want[i], i);
	/* A snapshot faults nothing. */
	assert_true(cpu_none(e->mm, BASE));
	assert_true(cpu_none(e->mm, BASE + 9 * PG));
	assert_int_equal(stat_now(HETMM_STAT_hmm_fault), fault0);
	assert_int_equal(stat_now(HETMM_STAT_hmm_range_fault) - calls0, 1);
	assert_int_equal(stat_now(HETMM_STAT_hmm_pfn_valid) - valid0, 9);

	/* The same over a sub-range that starts inside a hole. */
	memset(pfns, 0, sizeof(pfns));
	range_init(&r, &e->mi, BASE + 4 * PG, 6, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < 6; i++)
		assert_pfn_eq(pfns[i], want[4 + i], i);
}

/* Nothing mapped anywhere near: holes at the top levels are errors. */
static void test_snapshot_empty_mm(void **state)
{
	struct env *e = *state;
	unsigned long pfns[8] = { 0 };
	struct hmm_range r;

	map_fixed(e, BASE + SZ_2M, PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 8 * PG);
	memset(pfns, 0, sizeof(pfns));
	range_init(&r, &e->mi, BASE, 8, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (int i = 0; i < 8; i++)
		assert_int_equal(pfns[i], HMM_PFN_ERROR);
	/* A VMA whose tables were never allocated: all 0. */
	range_init(&r, &e->mi, BASE + SZ_2M, 1, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_int_equal(pfns[0], 0);
}

/* ------------------------------------------------------------- faults */

static void test_fault_read(void **state)
{
	struct env *e = *state;
	unsigned long pfns[8] = { 0 };
	uint64_t fault0 = stat_now(HETMM_STAT_hmm_fault);
	struct hmm_range r;

	map_fixed(e, BASE, 8 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 8 * PG);
	memset(pfns, 0, sizeof(pfns));
	range_init(&r, &e->mi, BASE, 8, pfns, HMM_PFN_REQ_FAULT, 0);
	/* Read faults map the zero page: no invalidation, no -EBUSY. */
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < 8; i++) {
		assert_pfn_eq(pfns[i], e->zero_pfn | V, i);
		assert_int_equal(cpu_pfn(e->mm, BASE + i * PG), e->zero_pfn);
	}
	assert_int_equal(stat_now(HETMM_STAT_hmm_fault) - fault0, 8);
	/* Already valid: nothing more to fault. */
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_int_equal(stat_now(HETMM_STAT_hmm_fault) - fault0, 8);
}

static void test_fault_write(void **state)
{
	struct env *e = *state;
	unsigned long pfns[8] = { 0 };
	unsigned int busy = 0;
	struct hmm_range r;

	map_fixed(e, BASE, 8 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 8 * PG);
	/* Pages 0-3 none: write faults allocate, nobody is invalidated. */
	memset(pfns, 0, sizeof(pfns));
	range_init(&r, &e->mi, BASE, 4, pfns,
		   HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < 4; i++) {
		assert_pfn_eq(pfns[i], cpu_pfn(e->mm, BASE + i * PG) | V | W,
			      i);
		assert_int_not_equal(hmm_pfn_to_pfn(pfns[i]), e->zero_pfn);
	}

	/* Pages 4-7 map the zero page: the write faults COW it. */
	populate(e, BASE + 4 * PG, 4 * PG, false);
	range_init(&r, &e->mi, BASE + 4 * PG, 4, pfns,
		   HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, 0);
	/* The COW invalidated our own interval: the next pass sees it. */
	assert_int_equal(hmm_once(&e->mi, &r), -EBUSY);
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, &busy));
	assert_int_equal(busy, 0);
	for (unsigned long i = 0; i < 4; i++) {
		unsigned long pfn = cpu_pfn(e->mm, BASE + (4 + i) * PG);

		assert_pfn_eq(pfns[i], pfn | V | W, i);
		assert_int_not_equal(pfn, e->zero_pfn);
	}
}

static void test_eperm_readonly(void **state)
{
	struct env *e = *state;
	unsigned long pfns[8] = { 0 };
	struct hmm_range r;

	map_fixed(e, BASE, 4 * PG, RW, PRIV_ANON);
	map_fixed(e, BASE + 4 * PG, 4 * PG, PROT_READ, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 8 * PG);

	/* Write wanted in a read-only VMA: -EPERM before faulting it. */
	for (int i = 0; i < 8; i++)
		pfns[i] = HMM_PFN_DMA_MAPPED;
	range_init(&r, &e->mi, BASE, 8, pfns,
		   HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, 0);
	assert_int_equal(hmm_once(&e->mi, &r), -EPERM);
	/* The writable VMA before it was done and reported... */
	for (unsigned long i = 0; i < 4; i++)
		assert_pfn_eq(pfns[i],
			      cpu_pfn(e->mm, BASE + i * PG) | V | W |
				      HMM_PFN_DMA_MAPPED,
			      i);
	/* ...the read-only one neither faulted nor written. */
	for (unsigned long i = 4; i < 8; i++) {
		assert_true(cpu_none(e->mm, BASE + i * PG));
		assert_pfn_eq(pfns[i], HMM_PFN_DMA_MAPPED, i);
	}

	/* Read access is fine there. */
	range_init(&r, &e->mi, BASE + 4 * PG, 4, pfns, HMM_PFN_REQ_FAULT, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < 4; i++)
		assert_pfn_eq(pfns[i], e->zero_pfn | V | HMM_PFN_DMA_MAPPED, i);
	/* Write asked of one page of the RO VMA only, through the mask. */
	memset(pfns, 0, sizeof(pfns));
	pfns[5] = HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE;
	range_init(&r, &e->mi, BASE + 2 * PG, 4, pfns + 2, 0,
		   HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
	assert_int_equal(hmm_once(&e->mi, &r), -EPERM);
}

static void test_efault(void **state)
{
	struct env *e = *state;
	unsigned long pfns[12] = { 0 };
	struct hmm_range r;

	/* 0-3 RW, 4-5 hole, 6-7 PROT_NONE, 8-11 RW */
	map_fixed(e, BASE, 12 * PG, RW, PRIV_ANON);
	ASSERT_OK(hetmm_munmap(e->mm, BASE + 4 * PG, 2 * PG));
	ASSERT_OK(hetmm_mprotect(e->mm, BASE + 6 * PG, 2 * PG, PROT_NONE));
	mirror_insert(&e->mi, e->mm, BASE, 12 * PG);

	/* Faulting into the hole fails; what came before is output. */
	for (int i = 0; i < 12; i++)
		pfns[i] = HMM_PFN_P2PDMA;
	range_init(&r, &e->mi, BASE, 12, pfns, HMM_PFN_REQ_FAULT, 0);
	assert_int_equal(hmm_once(&e->mi, &r), -EFAULT);
	for (unsigned long i = 0; i < 4; i++)
		assert_pfn_eq(pfns[i], e->zero_pfn | V | HMM_PFN_P2PDMA, i);
	for (unsigned long i = 4; i < 12; i++)
		assert_pfn_eq(pfns[i], HMM_PFN_P2PDMA, i);

	/* PROT_NONE with a fault request. */
	range_init(&r, &e->mi, BASE + 6 * PG, 2, pfns, HMM_PFN_REQ_FAULT, 0);
	assert_int_equal(hmm_once(&e->mi, &r), -EFAULT);
	/* A request outside them only: holes and PROT_NONE are errors. */
	memset(pfns, 0, sizeof(pfns));
	pfns[9] = HMM_PFN_REQ_FAULT;
	range_init(&r, &e->mi, BASE, 12, pfns, 0, HMM_PFN_REQ_FAULT);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 4; i < 8; i++)
		assert_pfn_eq(pfns[i], HMM_PFN_ERROR, i);
	assert_pfn_eq(pfns[9], e->zero_pfn | V, 9);
	/* Past every VMA. */
	range_init(&r, &e->mi, BASE + 12 * PG, 1, pfns, HMM_PFN_REQ_FAULT, 0);
	assert_int_equal(hmm_once(&e->mi, &r), -EFAULT);
}

/*
 * Per-page requests through the mask. A PTE that needs a fault faults
 * the rest of its PMD block too (spec 2.5 step 3): pages before it are
 * left alone.
 */
static void test_per_page_mask(void **state)
{
	struct env *e = *state;
	unsigned long pfns[16], input[16];
	unsigned int busy = 0;
	struct hmm_range r;

	map_fixed(e, BASE, 16 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 16 * PG);
	cpu_write_byte(e, BASE + 15 * PG, 1); /* the PTE table exists */

	memset(input, 0, sizeof(input));
	input[3] = HMM_PFN_REQ_FAULT | HMM_PFN_DMA_MAPPED;
	memcpy(pfns, input, sizeof(pfns));
	range_init(&r, &e->mi, BASE, 16, pfns, 0, HMM_PFN_REQ_FAULT);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < 3; i++) {
		assert_pfn_eq(pfns[i], 0, i);
		assert_true(cpu_none(e->mm, BASE + i * PG));
	}
	assert_pfn_eq(pfns[3], e->zero_pfn | V | HMM_PFN_DMA_MAPPED, 3);
	for (unsigned long i = 4; i < 15; i++)
		assert_pfn_eq(pfns[i], e->zero_pfn | V, i);
	assert_pfn_eq(pfns[15], cpu_pfn(e->mm, BASE + 15 * PG) | V | W, 15);

	/* A mask without REQ_FAULT: requests are ignored (the shortcut). */
	for (int i = 0; i < 16; i++)
		input[i] = HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE;
	memcpy(pfns, input, sizeof(pfns));
	range_init(&r, &e->mi, BASE, 16, pfns, 0, HMM_PFN_REQ_WRITE);
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_true(cpu_none(e->mm, BASE));
	assert_pfn_eq(pfns[0], 0, 0);
	assert_pfn_eq(pfns[5], e->zero_pfn | V, 5);
	/* REQ_WRITE alone asks nothing. */
	range_init(&r, &e->mi, BASE, 16, pfns, HMM_PFN_REQ_WRITE, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_true(cpu_none(e->mm, BASE));

	/*
	 * Fault everything, page 5 writable (hmm.rst's example): the read
	 * faults cover the block, then page 5 faults [5, 16) for write; the
	 * zero pages there are COWed, which the protocol retries over.
	 */
	memset(input, 0, sizeof(input));
	input[5] = HMM_PFN_REQ_WRITE;
	range_init(&r, &e->mi, BASE, 16, pfns, HMM_PFN_REQ_FAULT,
		   HMM_PFN_REQ_WRITE);
	ASSERT_OK(mirror_fault(&e->mi, &r, input, &busy));
	assert_true(busy >= 1);
	for (unsigned long i = 0; i < 5; i++)
		assert_pfn_eq(pfns[i], e->zero_pfn | V, i);
	for (unsigned long i = 5; i < 16; i++) {
		assert_pfn_eq(pfns[i], cpu_pfn(e->mm, BASE + i * PG) | V | W,
			      i);
		assert_int_not_equal(hmm_pfn_to_pfn(pfns[i]), e->zero_pfn);
	}
}

/* Pages COW-shared with a child after fork: read-only until faulted. */
static void test_fork_cow(void **state)
{
	struct env *e = *state;
	unsigned long pfns[8] = { 0 }, old[8];
	unsigned int busy = 0;
	struct mm_struct *child;
	struct hmm_range r;

	map_fixed(e, BASE, 8 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 8 * PG);
	populate(e, BASE, 8 * PG, true);
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));

	range_init(&r, &e->mi, BASE, 8, pfns, 0, 0);
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	for (unsigned long i = 0; i < 8; i++) {
		old[i] = hmm_pfn_to_pfn(pfns[i]);
		assert_pfn_eq(pfns[i], old[i] | V, i);
		assert_int_equal(cpu_pfn(child, BASE + i * PG), old[i]);
	}
	range_init(&r, &e->mi, BASE, 8, pfns,
		   HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, 0);
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, &busy));
	assert_true(busy >= 1);
	for (unsigned long i = 0; i < 8; i++) {
		assert_pfn_eq(pfns[i], cpu_pfn(e->mm, BASE + i * PG) | V | W,
			      i);
		assert_int_not_equal(hmm_pfn_to_pfn(pfns[i]), old[i]);
		assert_int_equal(cpu_pfn(child, BASE + i * PG), old[i]);
	}
	hetmm_exit(child);
}

/* ------------------------------------------------------ huge mappings */

static void test_thp_order(void **state)
{
	struct env *e = *state;
	unsigned long a = thp_region(e->mm, 2);
	unsigned long n = 2 * SZ_2M / PG, *pfns = calloc(n, sizeof(*pfns));
	unsigned long head0, head1;
	unsigned int order;
	struct hmm_range r;

	mirror_insert(&e->mi, e->mm, a, 2 * SZ_2M);
	cpu_write_byte(e, a, 1);
	cpu_write_byte(e, a + SZ_2M, 2);
	cpu_entry(e->mm, a, &order);
	assert_int_equal(order, 9);
	head0 = cpu_pfn(e->mm, a);
	head1 = cpu_pfn(e->mm, a + SZ_2M);

	range_init(&r, &e->mi, a, n, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < n; i++) {
		unsigned long head = i < 512 ? head0 : head1;

		assert_pfn_eq(pfns[i], (head + i % 512) | V | W | ORDER9, i);
		assert_int_equal(hmm_pfn_to_map_order(pfns[i]), 9);
	}
	/* A range starting in the middle of a leaf. */
	range_init(&r, &e->mi, a + SZ_2M / 2, 512, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < 512; i++) {
		unsigned long p = 256 + i;
		unsigned long head = p < 512 ? head0 : head1;

		assert_pfn_eq(pfns[i], (head + p % 512) | V | W | ORDER9, i);
	}
	/* Split by a partial mprotect: order 0 from then on. */
	ASSERT_OK(hetmm_mprotect(e->mm, a, PG, PROT_READ));
	range_init(&r, &e->mi, a, 512, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_pfn_eq(pfns[0], head0 | V, 0);
	for (unsigned long i = 1; i < 512; i++)
		assert_pfn_eq(pfns[i], (head0 + i) | V | W, i);
	free(pfns);
}

/* Faults in a THP-enabled VMA install huge pages. */
static void test_thp_fault(void **state)
{
	struct env *e = *state;
	unsigned long n = SZ_2M / PG, *pfns = calloc(n, sizeof(*pfns));
	uint64_t thp0 = stat_now(HETMM_STAT_thp_fault_alloc);
	unsigned long a = thp_region(e->mm, 1), head;
	struct hmm_range r;
	long b;

	mirror_insert(&e->mi, e->mm, a, SZ_2M);
	range_init(&r, &e->mi, a, n, pfns,
		   HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_int_equal(stat_now(HETMM_STAT_thp_fault_alloc) - thp0, 1);
	head = cpu_pfn(e->mm, a);
	for (unsigned long i = 0; i < n; i++)
		assert_pfn_eq(pfns[i], (head + i) | V | W | ORDER9, i);
	mirror_remove(&e->mi);

	/* "always": no madvise needed. */
	ASSERT_OK(hetmm_thp_set_mode(e->m, "always"));
	b = hetmm_mmap(e->mm, 0, 2 * SZ_2M, RW, PRIV_ANON, -1, 0);
	assert_true(b > 0);
	a = ALIGN((unsigned long)b, SZ_2M);
	mirror_insert(&e->mi, e->mm, a, SZ_2M);
	range_init(&r, &e->mi, a, n, pfns,
		   HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_int_equal(stat_now(HETMM_STAT_thp_fault_alloc) - thp0, 2);
	for (unsigned long i = 0; i < n; i++)
		assert_int_equal(hmm_pfn_to_map_order(pfns[i]), 9);
	ASSERT_OK(hetmm_thp_set_mode(e->m, "madvise"));
	free(pfns);
}

/*
 * The huge zero folio: a read-faulted THP range snapshots as its pfns,
 * read-only, order 9 (as the kernel's hmm_vma_handle_pmd reports any
 * leaf); REQ_FAULT alone leaves it; REQ_WRITE puts a THP in its place,
 * and the subscriber hears the invalidation.
 */
static void test_thp_huge_zero(void **state)
{
	struct env *e = *state;
	unsigned long n = SZ_2M / PG, *pfns = calloc(n, sizeof(*pfns));
	unsigned long a = thp_region(e->mm, 1), hz, head;
	uint64_t thp0 = stat_now(HETMM_STAT_thp_fault_alloc);
	unsigned int order;
	struct hmm_range r;
	unsigned long seq;

	mirror_insert(&e->mi, e->mm, a, SZ_2M);
	cpu_read_byte(e, a + 3 * PG);
	cpu_entry(e->mm, a, &order);
	assert_int_equal(order, 9);
	hz = cpu_pfn(e->mm, a);
	assert_true(is_huge_zero_folio(page_folio(pfn_to_page(e->m, hz))));
	for (int pass = 0; pass < 2; pass++) {
		range_init(&r, &e->mi, a, n, pfns, pass ? HMM_PFN_REQ_FAULT : 0,
			   0);
		ASSERT_OK(hmm_once(&e->mi, &r));
		for (unsigned long i = 0; i < n; i++)
			assert_pfn_eq(pfns[i], (hz + i) | V | ORDER9, i);
	}
	assert_int_equal(stat_now(HETMM_STAT_thp_fault_alloc), thp0);
	seq = mmu_interval_read_begin(&e->mi.sub);
	range_init(&r, &e->mi, a, n, pfns,
		   HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, 0);
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	assert_true(mmu_interval_read_retry(&e->mi.sub, seq));
	assert_int_equal(stat_now(HETMM_STAT_thp_fault_alloc) - thp0, 1);
	head = cpu_pfn(e->mm, a);
	assert_true(head != hz);
	for (unsigned long i = 0; i < n; i++)
		assert_pfn_eq(pfns[i], (head + i) | V | W | ORDER9, i);
	ASSERT_OK(hetmm_check(e->m));
	free(pfns);
}

static void test_hugetlb(void **state)
{
	struct env *e = *state;
	unsigned long n = SZ_2M / PG, *pfns = calloc(2 * n, sizeof(*pfns));
	unsigned long h, head0, head1;
	struct hmm_range r;
	long a;

	a = hetmm_mmap(e->mm, 0, 2 * SZ_2M, RW, PRIV_ANON | MAP_HUGETLB, -1, 0);
	assert_true(a > 0);
	h = (unsigned long)a;
	assert_true(IS_ALIGNED(h, SZ_2M));
	mirror_insert(&e->mi, e->mm, h, 2 * SZ_2M);
	cpu_write_byte(e, h, 1); /* huge page 0; the PMD table exists now */
	head0 = cpu_pfn(e->mm, h);

	/* Unpopulated huge page: not valid (the huge order is reported). */
	range_init(&r, &e->mi, h + SZ_2M, n, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < n; i++) {
		assert_false(pfns[i] & (V | W | HMM_PFN_ERROR));
		assert_int_equal(hmm_pfn_to_map_order(pfns[i]), 9);
	}

	/* Only the first page's request counts for a hugetlb block. */
	memset(pfns, 0, n * sizeof(*pfns));
	pfns[5] = HMM_PFN_REQ_FAULT;
	range_init(&r, &e->mi, h + SZ_2M, n, pfns, 0, HMM_PFN_REQ_FAULT);
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_true(cpu_none(e->mm, h + SZ_2M));
	assert_false(pfns[5] & V);
	memset(pfns, 0, n * sizeof(*pfns));
	pfns[0] = HMM_PFN_REQ_FAULT;
	ASSERT_OK(hmm_once(&e->mi, &r));
	head1 = cpu_pfn(e->mm, h + SZ_2M);
	for (unsigned long i = 0; i < n; i++)
		assert_pfn_eq(pfns[i], (head1 + i) | V | ORDER9, i);

	/* Write over both: the read-only one is made writable in place. */
	range_init(&r, &e->mi, h, 2 * n, pfns,
		   HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < 2 * n; i++)
		assert_pfn_eq(
			pfns[i],
			((i < n ? head0 : head1) + i % n) | V | W | ORDER9, i);
	/* From the middle of one into the next. */
	range_init(&r, &e->mi, h + SZ_2M / 2, n, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < n; i++) {
		unsigned long p = n / 2 + i;

		assert_pfn_eq(
			pfns[i],
			((p < n ? head0 : head1) + p % n) | V | W | ORDER9, i);
	}
	free(pfns);
}

/* --------------------------------------------- special entries by hand */

static void test_special_entries(void **state)
{
	struct env *e = *state;
	unsigned long pfns[8] = { 0 };
	struct hmm_range r;
	pte_t old;

	map_fixed(e, BASE, 8 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 8 * PG);
	populate(e, BASE + 7 * PG, PG, true);
	range_init(&r, &e->mi, BASE, 8, pfns, 0, 0);

	/* A special PTE that is not the zero page (a pfnmap-like page). */
	pte_swap(e->mm, BASE, pte_mkspecial(pfn_pte(e->zero_pfn + 1, 0)));
	/* Swap, hwpoison, poison marker, uffd-wp marker. */
	pte_swap(e->mm, BASE + 1 * PG,
		 softleaf_to_pte(make_swap_entry(3, 77, true)));
	pte_swap(e->mm, BASE + 2 * PG,
		 softleaf_to_pte(make_hwpoison_entry(e->zero_pfn + 2)));
	pte_swap(e->mm, BASE + 3 * PG,
		 softleaf_to_pte(make_pte_marker(PTE_MARKER_POISONED)));
	pte_swap(e->mm, BASE + 4 * PG,
		 softleaf_to_pte(make_pte_marker(PTE_MARKER_UFFD_WP)));
	pte_swap(e->mm, BASE + 5 * PG,
		 softleaf_to_pte(make_pte_marker(PTE_MARKER_GUARD)));
	for (int i = 0; i < 8; i++)
		pfns[i] = HMM_PFN_DMA_MAPPED;
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_pfn_eq(pfns[0], HMM_PFN_ERROR | HMM_PFN_DMA_MAPPED, 0);
	for (unsigned long i = 1; i < 7; i++)
		assert_pfn_eq(pfns[i], HMM_PFN_DMA_MAPPED, i);
	assert_pfn_eq(
		pfns[7],
		cpu_pfn(e->mm, BASE + 7 * PG) | V | W | HMM_PFN_DMA_MAPPED, 7);

	/* With a fault request each of them is -EFAULT. */
	for (unsigned long i = 0; i < 6; i++) {
		if (i == 4)
			continue; /* uffd-wp: an empty PTE, see below */
		memset(pfns, 0, sizeof(pfns));
		pfns[i] = HMM_PFN_REQ_FAULT;
		range_init(&r, &e->mi, BASE + i * PG, 1, pfns + i, 0,
			   HMM_PFN_REQ_FAULT);
		assert_int_equal(hmm_once(&e->mi, &r), -EFAULT);
	}
	for (unsigned long i = 0; i < 6; i++)
		pte_swap(e->mm, BASE + i * PG, __pte(0));
	/* A uffd-wp marker reads as none: a fault request faults it. */
	pte_swap(e->mm, BASE + 4 * PG,
		 softleaf_to_pte(make_pte_marker(PTE_MARKER_UFFD_WP)));
	range_init(&r, &e->mi, BASE + 4 * PG, 1, pfns, HMM_PFN_REQ_FAULT, 0);
	pfns[0] = 0;
	assert_int_equal(hmm_once(&e->mi, &r), -EFAULT); /* no uffd here */
	pte_swap(e->mm, BASE + 4 * PG, __pte(0));

	/* A NUMA-hint-like protnone PTE in a readable VMA: pfn, no flags. */
	old = pte_swap(e->mm, BASE + 7 * PG, __pte(0));
	pte_swap(e->mm, BASE + 7 * PG, pte_set_flags(old, _PAGE_PROTNONE));
	range_init(&r, &e->mi, BASE + 7 * PG, 1, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_pfn_eq(pfns[0], pte_pfn(old), 0);
	/* A fault resolves it. */
	range_init(&r, &e->mi, BASE + 7 * PG, 1, pfns, HMM_PFN_REQ_FAULT, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_pfn_eq(pfns[0], pte_pfn(old) | V | W, 0);
	assert_int_equal(pte_val(cpu_entry(e->mm, BASE + 7 * PG, NULL)),
			 pte_val(old));
}

/* VM_IO / VM_PFNMAP VMAs are never mirrored. */
static void test_io_pfnmap_vma(void **state)
{
	static const unsigned long bad[] = { VM_IO, VM_PFNMAP };
	struct env *e = *state;
	unsigned long pfns[4] = { 0 };
	struct vm_area_struct *vma;
	struct hmm_range r;

	map_fixed(e, BASE, 4 * PG, RW, PRIV_ANON);
	populate(e, BASE, 4 * PG, true);
	mirror_insert(&e->mi, e->mm, BASE, 4 * PG);
	for (unsigned int k = 0; k < ARRAY_SIZE(bad); k++) {
		mmap_write_lock(e->mm);
		vma = vma_lookup(e->mm, BASE);
		vma->vm_flags |= bad[k];
		mmap_write_unlock(e->mm);
		range_init(&r, &e->mi, BASE, 4, pfns, 0, 0);
		ASSERT_OK(hmm_once(&e->mi, &r));
		for (int i = 0; i < 4; i++)
			assert_int_equal(pfns[i], HMM_PFN_ERROR);
		range_init(&r, &e->mi, BASE, 4, pfns, HMM_PFN_REQ_FAULT, 0);
		assert_int_equal(hmm_once(&e->mi, &r), -EFAULT);
		mmap_write_lock(e->mm);
		vma->vm_flags &= ~bad[k];
		mmap_write_unlock(e->mm);
	}
	range_init(&r, &e->mi, BASE, 4, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_true(pfns[0] & V);
}

/* ---------------------------------------------- -EBUSY and the protocol */

static void test_ebusy(void **state)
{
	struct env *e = *state;
	unsigned long pfns[8] = { 0 };
	uint64_t busy0 = stat_now(HETMM_STAT_hmm_range_fault_busy);
	struct hmm_range r;
	unsigned char v = 1;

	map_fixed(e, BASE, 8 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 8 * PG);
	populate(e, BASE, 8 * PG, false); /* zero pages */
	range_init(&r, &e->mi, BASE, 8, pfns, 0, 0);

	/* munmap of part of the range after read_begin. */
	r.notifier_seq = mmu_interval_read_begin(&e->mi.sub);
	ASSERT_OK(hetmm_munmap(e->mm, BASE + 6 * PG, 2 * PG));
	mmap_read_lock(e->mm);
	assert_int_equal(hmm_range_fault(&r), -EBUSY);
	mmap_read_unlock(e->mm);

	/* A CPU write that COWs the zero page. */
	r.notifier_seq = mmu_interval_read_begin(&e->mi.sub);
	ASSERT_OK(hetmm_cpu_write(e->mm, 0, BASE, &v, 1));
	mmap_read_lock(e->mm);
	assert_int_equal(hmm_range_fault(&r), -EBUSY);
	mmap_read_unlock(e->mm);

	/* mprotect. */
	r.notifier_seq = mmu_interval_read_begin(&e->mi.sub);
	ASSERT_OK(hetmm_mprotect(e->mm, BASE, PG, PROT_READ));
	mmap_read_lock(e->mm);
	assert_int_equal(hmm_range_fault(&r), -EBUSY);
	mmap_read_unlock(e->mm);
	assert_int_equal(stat_now(HETMM_STAT_hmm_range_fault_busy) - busy0, 3);

	/* A fault into a none PTE invalidates nobody. */
	r.notifier_seq = mmu_interval_read_begin(&e->mi.sub);
	mmap_read_lock(e->mm);
	ASSERT_OK(hmm_range_fault(&r));
	mmap_read_unlock(e->mm);
	pthread_mutex_lock(&e->mi.lock);
	assert_false(mmu_interval_read_retry(&e->mi.sub, r.notifier_seq));
	pthread_mutex_unlock(&e->mi.lock);

	/* A change after hmm_range_fault is caught by read_retry. */
	r.notifier_seq = mmu_interval_read_begin(&e->mi.sub);
	mmap_read_lock(e->mm);
	ASSERT_OK(hmm_range_fault(&r));
	mmap_read_unlock(e->mm);
	ASSERT_OK(hetmm_madvise(e->mm, BASE, PG, MADV_DONTNEED));
	pthread_mutex_lock(&e->mi.lock);
	assert_true(mmu_interval_read_retry(&e->mi.sub, r.notifier_seq));
	pthread_mutex_unlock(&e->mi.lock);
}

/* The whole protocol across a sequence of CPU-side changes. */
static void test_protocol_loop(void **state)
{
	struct env *e = *state;
	unsigned long pfns[8] = { 0 }, first;
	struct hmm_range r;

	map_fixed(e, BASE, 8 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 8 * PG);
	range_init(&r, &e->mi, BASE, 8, pfns, HMM_PFN_REQ_FAULT, 0);
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	for (unsigned long i = 0; i < 8; i++)
		assert_pfn_eq(pfns[i], e->zero_pfn | V, i);

	cpu_write_byte(e, BASE, 7);
	first = cpu_pfn(e->mm, BASE);
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	assert_pfn_eq(pfns[0], first | V | W, 0);

	ASSERT_OK(hetmm_madvise(e->mm, BASE, 8 * PG, MADV_DONTNEED));
	range_init(&r, &e->mi, BASE, 8, pfns, 0, 0);
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	for (unsigned long i = 0; i < 8; i++)
		assert_pfn_eq(pfns[i], 0, i);

	ASSERT_OK(hetmm_munmap(e->mm, BASE, 8 * PG));
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	for (unsigned long i = 0; i < 8; i++)
		assert_pfn_eq(pfns[i], HMM_PFN_ERROR, i);
	range_init(&r, &e->mi, BASE, 8, pfns, HMM_PFN_REQ_FAULT, 0);
	assert_int_equal(mirror_fault(&e->mi, &r, NULL, NULL), -EFAULT);
}

/* ------------------------------------------------------ migration wait */

struct waiter {
	struct env *e;
	struct hmm_range r;
	unsigned long pfn;
	int ret;
	atomic_bool done;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->ret = hmm_once(&w->e->mi, &w->r);
	atomic_store(&w->done, true);
	return NULL;
}

/* Until the waiter sleeps on the folio lock (with a hang guard). */
static void wait_for_migration_waiter(struct waiter *w, uint64_t before)
{
	for (int i = 0; i < 10000; i++) {
		if (stat_now(HETMM_STAT_fault_migration_wait) > before)
			break;
		usleep(1000);
	}
	assert_true(stat_now(HETMM_STAT_fault_migration_wait) > before);
	usleep(10 * 1000);
	assert_false(atomic_load(&w->done));
}

/*
 * A migration entry (made by hand: folio locked, PTE replaced, mapcount
 * dropped, as try_to_migrate does): a snapshot reports 0 at once; a
 * fault request sleeps until the migration ends, then reports the page.
 */
static void test_migration_wait(void **state)
{
	struct env *e = *state;
	unsigned long pfns[2] = { 0 };
	struct waiter w = { .e = e };
	uint64_t wait0 = stat_now(HETMM_STAT_fault_migration_wait);
	struct hmm_range r;
	struct page *page;
	pthread_t t;
	pte_t old;

	map_fixed(e, BASE, 2 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 2 * PG);
	populate(e, BASE, 2 * PG, true);
	w.pfn = cpu_pfn(e->mm, BASE + PG);
	page = pfn_to_page(e->m, w.pfn);

	folio_lock(page_folio(page));
	old = pte_swap(
		e->mm, BASE + PG,
		softleaf_to_pte(make_migration_entry(w.pfn, true, false)));
	atomic_fetch_sub(&page->_mapcount, 1);

	range_init(&r, &e->mi, BASE, 2, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_true(pfns[0] & V);
	assert_pfn_eq(pfns[1], 0, 1);

	range_init(&w.r, &e->mi, BASE, 2, pfns, HMM_PFN_REQ_FAULT, 0);
	assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
	wait_for_migration_waiter(&w, wait0);
	/* The "migration" ends: the old mapping comes back. */
	atomic_fetch_add(&page->_mapcount, 1);
	pte_swap(e->mm, BASE + PG, old);
	folio_unlock(page_folio(page));
	assert_int_equal(pthread_join(t, NULL), 0);
	ASSERT_OK(w.ret);
	assert_pfn_eq(pfns[1], w.pfn | V | W, 1);
}

/* The same for a THP whose PMD holds a migration entry. */
static void test_migration_wait_pmd(void **state)
{
	struct env *e = *state;
	const unsigned long n = SZ_2M / PG;
	unsigned long *pfns = calloc(n, sizeof(*pfns));
	unsigned long a = thp_region(e->mm, 1), head;
	struct waiter w = { .e = e };
	uint64_t wait0 = stat_now(HETMM_STAT_fault_migration_wait);
	struct hmm_range r;
	struct folio *folio;
	pthread_t t;
	pmd_t old;

	mirror_insert(&e->mi, e->mm, a, SZ_2M);
	populate(e, a, SZ_2M, true);
	head = cpu_pfn(e->mm, a);
	folio = page_folio(pfn_to_page(e->m, head));
	assert_true(folio_test_large(folio));
	folio_lock(folio);
	old = pmd_swap(
		e->mm, a,
		softleaf_to_pte(make_migration_entry(head, true, false)));
	folio_pmd_mapcount(folio, -1);

	range_init(&r, &e->mi, a, n, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < n; i++)
		assert_pfn_eq(pfns[i], 0, i);

	memset(pfns, 0, n * sizeof(*pfns));
	pfns[300] = HMM_PFN_REQ_FAULT;
	range_init(&w.r, &e->mi, a, n, pfns, 0, HMM_PFN_REQ_FAULT);
	assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
	wait_for_migration_waiter(&w, wait0);
	folio_pmd_mapcount(folio, 1);
	pmd_swap(e->mm, a, old);
	folio_unlock(folio);
	assert_int_equal(pthread_join(t, NULL), 0);
	ASSERT_OK(w.ret);
	for (unsigned long i = 0; i < n; i++)
		assert_pfn_eq(pfns[i], (head + i) | V | W | ORDER9, i);
	free(pfns);
}

/* ------------------------------------------------------ device memory */

/*
 * Two simulated devices with device-private pgmaps. Pages are put into
 * service and mapped by hand (there is no migration in these tests): a
 * device-private entry counts as a mapping (mapcount and refcount one
 * each, spec 0.1).
 */
struct ddev {
	struct dev_pagemap pgmap;
	int owner; /* its address is the owner cookie */
	bool p2p_ok;
	bool migrate_ok; /* migrate_to_ram works (else it fails: SIGBUS) */
	uint64_t bar; /* P2P address of the first page */
	unsigned long p2p_calls;
	unsigned long migrated;
	unsigned long freed;
};

static struct ddev *pgmap_ddev(struct dev_pagemap *pgmap)
{
	return container_of(pgmap, struct ddev, pgmap);
}

static void ddev_folio_free(struct folio *folio)
{
	pgmap_ddev(folio->page.pgmap)->freed += folio_nr_pages(folio);
}

/*
 * A minimal migrate_to_ram() by hand (PTE entries only): a fresh
 * exclusive anon page with the device page's bytes replaces the entry,
 * announced as a MIGRATE invalidation by this device.
 */
static int ddev_migrate_to_ram(struct vm_fault *vmf)
{
	struct ddev *d = pgmap_ddev(page_pgmap(vmf->page));
	struct vm_area_struct *vma = vmf->vma;
	struct mm_struct *mm = vma->vm_mm;
	struct mmu_notifier_range range;
	struct folio *folio;
	bool done = false;
	spinlock_t *ptl;
	pte_t *pte, e;

	if (!d->migrate_ok || !vmf->pte)
		return -EFAULT;
	folio = folio_alloc(mm->machine, __GFP_MOVABLE, 0);
	if (!folio)
		return -ENOMEM;
	folio_set_flag(folio, PG_anon);
	folio_set_flag(folio, PG_swapbacked);
	folio_set_flag(folio, PG_uptodate);
	SetPageAnonExclusive(&folio->page);
	folio->page.mapping = vma->anon_vma;
	folio->page.index =
		((vmf->address - vma->vm_start) >> PAGE_SHIFT) + vma->vm_pgoff;
	memcpy(page_frame(&folio->page),
	       pfn_frame(mm->machine, page_to_pfn(vmf->page)), PG);
	e = pfn_pte(folio_pfn(folio), _PAGE_YOUNG | _PAGE_DIRTY);
	if (vma->vm_flags & VM_WRITE)
		e = pte_mkwrite(e);
	mmu_notifier_range_init_owner(&range, MMU_NOTIFY_MIGRATE, 0, mm,
				      vmf->address, vmf->address + PG,
				      &d->owner);
	mmu_notifier_invalidate_range_start(&range);
	pte = pte_offset_map_lock(mm, vmf->pmd, vmf->address, &ptl);
	if (pte) {
		if (pte_val(ptep_get(pte)) == pte_val(vmf->orig_pte)) {
			atomic_fetch_add(&folio->page._mapcount, 1);
			set_pte(pte, e);
			done = true;
		}
		spin_unlock(ptl);
	}
	mmu_notifier_invalidate_range_end(&range);
	if (done) {
		atomic_fetch_sub(&vmf->page->_mapcount, 1);
		put_page(vmf->page); /* the entry's reference */
		d->migrated++;
	} else {
		folio_put(folio);
	}
	return 0;
}

static int ddev_p2p_addr(struct page *page, const void *requester,
			 uint64_t *dev_addr)
{
	struct ddev *d = pgmap_ddev(page_pgmap(page));

	d->p2p_calls++;
	if (!d->p2p_ok || !requester)
		return -EOPNOTSUPP;
	*dev_addr = d->bar + (page_to_pfn(page) -
			      (unsigned long)((d->pgmap.ranges[0].start) >>
					      PAGE_SHIFT)) *
				     PG;
	return 0;
}

static const struct dev_pagemap_ops ddev_ops = {
	.folio_free = ddev_folio_free,
	.migrate_to_ram = ddev_migrate_to_ram,
	.p2p_addr = ddev_p2p_addr,
};

static const struct dev_pagemap_ops ddev_ops_nop2p = {
	.folio_free = ddev_folio_free,
	.migrate_to_ram = ddev_migrate_to_ram,
};

static void ddev_init(struct hetmm_machine *m, struct ddev *d,
		      const struct dev_pagemap_ops *ops)
{
	uint64_t start;

	memset(d, 0, sizeof(*d));
	ASSERT_OK(request_free_mem_region(m, 4 * SZ_2M, &start));
	d->pgmap.type = MEMORY_DEVICE_PRIVATE;
	d->pgmap.ops = ops;
	d->pgmap.owner = &d->owner;
	d->pgmap.nr_range = 1;
	d->pgmap.ranges[0].start = start;
	d->pgmap.ranges[0].end = start + 4 * SZ_2M - 1;
	d->bar = 0xb0000000000ULL + start;
	ASSERT_OK(memremap_pages(m, &d->pgmap));
}

static void ddev_fini(struct hetmm_machine *m, struct ddev *d)
{
	memunmap_pages(&d->pgmap);
	release_mem_region(m, d->pgmap.ranges[0].start,
			   range_len(&d->pgmap.ranges[0]));
}

static unsigned long ddev_pfn(struct ddev *d, unsigned long i)
{
	return (unsigned long)((d->pgmap.ranges[0].start) >> PAGE_SHIFT) + i;
}

/* Map device page @i of @d at @addr (unpopulated anon memory). */
static void ddev_map(struct env *e, struct ddev *d, unsigned long i,
		     unsigned long addr, bool write)
{
	unsigned long pfn = ddev_pfn(d, i);
	struct page *page = pfn_to_page(e->m, pfn);
	pte_t old;

	/* A zero-page PTE (no rmap) makes sure the PTE table exists. */
	populate(e, addr, PG, false);
	zone_device_page_init(page, &d->pgmap, 0);
	folio_set_flag(page_folio(page), PG_anon);
	atomic_fetch_add(&page->_mapcount, 1);
	old = pte_swap(e->mm, addr,
		       softleaf_to_pte(make_device_private_entry(pfn, write)));
	folio_unlock(page_folio(page));
	assert_int_equal(pte_pfn(old), e->zero_pfn);
}

static void ddev_unmap(struct env *e, struct ddev *d, unsigned long i,
		       unsigned long addr)
{
	struct page *page = pfn_to_page(e->m, ddev_pfn(d, i));
	pte_t old = pte_swap(e->mm, addr, __pte(0));

	assert_true(is_device_private_kind(pte_kind(old)));
	atomic_fetch_sub(&page->_mapcount, 1);
	put_page(page);
}

static bool memremap_ready(void)
{
	/* src/memremap is written in parallel; skip until it works. */
	struct hetmm_machine *m = test_machine_new(8, false);
	struct ddev d;
	uint64_t start;
	int ret;

	if (request_free_mem_region(m, SZ_2M, &start)) {
		test_machine_finish(m);
		return false;
	}
	memset(&d, 0, sizeof(d));
	d.pgmap.type = MEMORY_DEVICE_PRIVATE;
	d.pgmap.ops = &ddev_ops;
	d.pgmap.owner = &d.owner;
	d.pgmap.nr_range = 1;
	d.pgmap.ranges[0].start = start;
	d.pgmap.ranges[0].end = start + SZ_2M - 1;
	ret = memremap_pages(m, &d.pgmap);
	if (!ret)
		memunmap_pages(&d.pgmap);
	release_mem_region(m, start, SZ_2M);
	test_machine_finish(m);
	return ret == 0;
}

/*
 * page:  0          1           2          3          4-7
 *        A, write   A, read     B, write   B, read    RW anon
 * Mirror of device A: its own pages are reported, never faulted; B's
 * read as 0 in a snapshot and are faulted with a request.
 */
static void test_device_private(void **state)
{
	struct env *e = *state;
	unsigned long pfns[8] = { 0 };
	struct ddev *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	uint64_t fault0;
	struct hmm_range r;
	int ret;

	if (!memremap_ready())
		skip();
	ddev_init(e->m, a, &ddev_ops);
	ddev_init(e->m, b, &ddev_ops);
	map_fixed(e, BASE, 8 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 8 * PG);
	populate(e, BASE + 4 * PG, 4 * PG, true);
	ddev_map(e, a, 0, BASE, true);
	ddev_map(e, a, 1, BASE + PG, false);
	ddev_map(e, b, 0, BASE + 2 * PG, true);
	ddev_map(e, b, 1, BASE + 3 * PG, false);
	ASSERT_OK(hetmm_check(e->m));

	range_init(&r, &e->mi, BASE, 8, pfns, 0, 0);
	r.dev_private_owner = &a->owner;
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	assert_pfn_eq(pfns[0], ddev_pfn(a, 0) | V | W, 0);
	assert_pfn_eq(pfns[1], ddev_pfn(a, 1) | V, 1);
	assert_pfn_eq(pfns[2], 0, 2);
	assert_pfn_eq(pfns[3], 0, 3);
	assert_true(pfns[4] & V);

	/* Own pages are never faulted, even for a write to a RO one. */
	fault0 = stat_now(HETMM_STAT_hmm_fault);
	range_init(&r, &e->mi, BASE, 2, pfns,
		   HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, 0);
	r.dev_private_owner = &a->owner;
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_pfn_eq(pfns[0], ddev_pfn(a, 0) | V | W, 0);
	assert_pfn_eq(pfns[1], ddev_pfn(a, 1) | V, 1);
	assert_int_equal(stat_now(HETMM_STAT_hmm_fault), fault0);

	/*
	 * A peer's page with a fault request goes to the fault handler
	 * (migrate_to_ram of B, which refuses here: -EFAULT).
	 */
	range_init(&r, &e->mi, BASE + 2 * PG, 1, pfns, HMM_PFN_REQ_FAULT, 0);
	r.dev_private_owner = &a->owner;
	ret = hmm_once(&e->mi, &r);
	assert_int_equal(ret, -EFAULT);
	assert_true(stat_now(HETMM_STAT_hmm_fault) == fault0);

	/* No owner at all: every device page is foreign. */
	range_init(&r, &e->mi, BASE, 4, pfns, 0, 0);
	ASSERT_OK(hmm_once(&e->mi, &r));
	for (unsigned long i = 0; i < 4; i++)
		assert_pfn_eq(pfns[i], 0, i);

	for (unsigned long i = 0; i < 2; i++) {
		ddev_unmap(e, a, i, BASE + i * PG);
		ddev_unmap(e, b, i, BASE + (2 + i) * PG);
	}
	mirror_remove(&e->mi);
	ddev_fini(e->m, a);
	ddev_fini(e->m, b);
	assert_int_equal(a->freed, 2);
	free(a);
	free(b);
}

/*
 * P2P (seed 002): B's pages are reached in place by A's mirror when the
 * request allows it and B's p2p_addr() agrees.
 */
static void test_device_p2p(void **state)
{
	struct env *e = *state;
	unsigned long pfns[4], input[4];
	uint64_t addrs[4];
	struct ddev *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct ddev *c = calloc(1, sizeof(*c));
	uint64_t p2p0 = stat_now(HETMM_STAT_hmm_p2p);
	struct hmm_range r;

	if (!memremap_ready())
		skip();
	ddev_init(e->m, a, &ddev_ops);
	ddev_init(e->m, b, &ddev_ops);
	ddev_init(e->m, c, &ddev_ops_nop2p);
	b->p2p_ok = true;
	map_fixed(e, BASE, 4 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 4 * PG);
	ddev_map(e, b, 0, BASE, true);
	ddev_map(e, b, 1, BASE + PG, false);
	ddev_map(e, c, 0, BASE + 2 * PG, true);
	ddev_map(e, a, 0, BASE + 3 * PG, true);

	/* Allowed for pages 0-2 by default_flags. */
	memset(addrs, 0xee, sizeof(addrs));
	range_init(&r, &e->mi, BASE, 4, pfns, HMM_PFN_ALLOW_P2P, 0);
	r.dev_private_owner = &a->owner;
	r.p2p_addrs = addrs;
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	assert_pfn_eq(pfns[0], ddev_pfn(b, 0) | V | W | HMM_PFN_P2P, 0);
	assert_pfn_eq(pfns[1], ddev_pfn(b, 1) | V | HMM_PFN_P2P, 1);
	assert_pfn_eq(pfns[2], 0, 2); /* C has no p2p_addr op */
	assert_pfn_eq(pfns[3], ddev_pfn(a, 0) | V | W, 3); /* ours */
	assert_int_equal(addrs[0], b->bar);
	assert_int_equal(addrs[1], b->bar + PG);
	assert_int_equal(addrs[2], 0xeeeeeeeeeeeeeeeeULL);
	assert_int_equal(addrs[3], 0xeeeeeeeeeeeeeeeeULL);
	assert_int_equal(stat_now(HETMM_STAT_hmm_p2p) - p2p0, 2);

	/* Without ALLOW_P2P (or with it masked off): a foreign page. */
	range_init(&r, &e->mi, BASE, 2, pfns, 0, 0);
	r.dev_private_owner = &a->owner;
	memset(pfns, 0, sizeof(pfns));
	pfns[0] = HMM_PFN_ALLOW_P2P;
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_pfn_eq(pfns[0], 0, 0);
	/* Per page through the mask; p2p_addrs is optional. */
	memset(input, 0, sizeof(input));
	input[1] = HMM_PFN_ALLOW_P2P | HMM_PFN_DMA_MAPPED;
	range_init(&r, &e->mi, BASE, 2, pfns, 0, HMM_PFN_ALLOW_P2P);
	r.dev_private_owner = &a->owner;
	ASSERT_OK(mirror_fault(&e->mi, &r, input, NULL));
	assert_pfn_eq(pfns[0], 0, 0);
	assert_pfn_eq(pfns[1],
		      ddev_pfn(b, 1) | V | HMM_PFN_P2P | HMM_PFN_DMA_MAPPED, 1);

	/* A P2P page satisfies a fault request: nothing is faulted. */
	range_init(&r, &e->mi, BASE, 2, pfns,
		   HMM_PFN_ALLOW_P2P | HMM_PFN_REQ_FAULT, 0);
	r.dev_private_owner = &a->owner;
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	assert_true(pfns[0] & HMM_PFN_P2P);

	/* The device refuses: an ordinary foreign page again. */
	b->p2p_ok = false;
	range_init(&r, &e->mi, BASE, 2, pfns, HMM_PFN_ALLOW_P2P, 0);
	r.dev_private_owner = &a->owner;
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	assert_pfn_eq(pfns[0], 0, 0);
	b->p2p_ok = true;

	/* A dying pgmap is revoked: ERROR, or faulted back on request. */
	atomic_store(&b->pgmap.dying, true);
	b->p2p_calls = 0;
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	assert_pfn_eq(pfns[0], HMM_PFN_ERROR, 0);
	assert_pfn_eq(pfns[1], HMM_PFN_ERROR, 1);
	assert_int_equal(b->p2p_calls, 0);
	range_init(&r, &e->mi, BASE, 2, pfns,
		   HMM_PFN_ALLOW_P2P | HMM_PFN_REQ_FAULT, 0);
	r.dev_private_owner = &a->owner;
	assert_int_equal(hmm_once(&e->mi, &r), -EFAULT); /* B refuses */
	atomic_store(&b->pgmap.dying, false);

	ddev_unmap(e, b, 0, BASE);
	ddev_unmap(e, b, 1, BASE + PG);
	ddev_unmap(e, c, 0, BASE + 2 * PG);
	ddev_unmap(e, a, 0, BASE + 3 * PG);
	mirror_remove(&e->mi);
	ddev_fini(e->m, a);
	ddev_fini(e->m, b);
	ddev_fini(e->m, c);
	free(a);
	free(b);
	free(c);
}

/*
 * A 2 MiB device-private folio mapped by one PMD softleaf [THP]: the
 * owner sees order 9; a peer sees ERROR, or faults it back, or reaches
 * it over P2P page by page.
 *
 *   BASE            BASE + 2M        BASE + 4M
 *   | B's folio (PMD) | anon, page 0 written |
 */
static void test_device_private_pmd(void **state)
{
	struct env *e = *state;
	const unsigned long n = SZ_2M / PG;
	unsigned long *pfns = calloc(2 * n, sizeof(*pfns));
	unsigned long *input = calloc(n, sizeof(*input));
	uint64_t *addrs = calloc(n, sizeof(*addrs));
	struct ddev *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	unsigned long head, anon;
	struct folio *folio;
	struct hmm_range r;
	pmd_t old;

	if (!memremap_ready())
		skip();
	ddev_init(e->m, a, &ddev_ops);
	ddev_init(e->m, b, &ddev_ops);
	map_fixed(e, BASE, 2 * SZ_2M, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 2 * SZ_2M);
	cpu_write_byte(e, BASE + SZ_2M, 1); /* the PMD table exists */
	anon = cpu_pfn(e->mm, BASE + SZ_2M);
	head = ddev_pfn(b, n);
	folio = page_folio(pfn_to_page(e->m, head));
	zone_device_folio_init(folio, &b->pgmap, PMD_ORDER);
	folio_set_flag(folio, PG_anon);
	folio_pmd_mapcount(folio, 1);
	old = pmd_swap(e->mm, BASE,
		       softleaf_to_pte(make_device_private_entry(head, true)));
	assert_true(pte_none(old));
	folio_unlock(folio);

	/* The owner: pfn + VALID + WRITE + order 9, from mid-block too. */
	range_init(&r, &e->mi, BASE + SZ_2M / 2, n, pfns, 0, 0);
	r.dev_private_owner = &b->owner;
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	for (unsigned long i = 0; i < n / 2; i++)
		assert_pfn_eq(pfns[i], (head + n / 2 + i) | V | W | ORDER9, i);
	assert_pfn_eq(pfns[n / 2], anon | V | W, n / 2);
	assert_pfn_eq(pfns[n / 2 + 1], 0, n / 2 + 1);
	/* ...even with a fault request: never faulted. */
	range_init(&r, &e->mi, BASE, n, pfns,
		   HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, 0);
	r.dev_private_owner = &b->owner;
	ASSERT_OK(hmm_once(&e->mi, &r));
	assert_pfn_eq(pfns[7], (head + 7) | V | W | ORDER9, 7);

	/* A peer: ERROR in a snapshot (unlike a PTE), fault on request. */
	range_init(&r, &e->mi, BASE, n, pfns, 0, 0);
	r.dev_private_owner = &a->owner;
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	for (unsigned long i = 0; i < n; i++)
		assert_pfn_eq(pfns[i], HMM_PFN_ERROR, i);
	memset(pfns, 0, n * sizeof(*pfns));
	pfns[100] = HMM_PFN_REQ_FAULT;
	range_init(&r, &e->mi, BASE, n, pfns, 0, HMM_PFN_REQ_FAULT);
	r.dev_private_owner = &a->owner;
	/* migrate_to_ram of B refuses in this test: the fault fails. */
	assert_int_equal(hmm_once(&e->mi, &r), -EFAULT);

	/* P2P, per page: pages 10-19 allowed, 100 wants a fault. */
	b->p2p_ok = true;
	memset(input, 0, n * sizeof(*input));
	for (unsigned long i = 10; i < 20; i++)
		input[i] = HMM_PFN_ALLOW_P2P;
	range_init(&r, &e->mi, BASE, n, pfns, 0,
		   HMM_PFN_ALLOW_P2P | HMM_PFN_REQ_FAULT);
	r.dev_private_owner = &a->owner;
	r.p2p_addrs = addrs;
	ASSERT_OK(mirror_fault(&e->mi, &r, input, NULL));
	for (unsigned long i = 0; i < n; i++) {
		if (i >= 10 && i < 20) {
			assert_pfn_eq(pfns[i],
				      (head + i) | V | W | ORDER9 | HMM_PFN_P2P,
				      i);
			assert_int_equal(addrs[i], b->bar + (n + i) * PG);
		} else {
			assert_pfn_eq(pfns[i], HMM_PFN_ERROR, i);
		}
	}
	input[100] = HMM_PFN_REQ_FAULT;
	assert_int_equal(mirror_fault(&e->mi, &r, input, NULL), -EFAULT);
	/* A request of a P2P page is satisfied in place. */
	input[100] = HMM_PFN_REQ_FAULT | HMM_PFN_ALLOW_P2P;
	ASSERT_OK(mirror_fault(&e->mi, &r, input, NULL));
	assert_true(pfns[100] & HMM_PFN_P2P);
	/* Revoked: ERROR again. */
	atomic_store(&b->pgmap.dying, true);
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	for (unsigned long i = 0; i < n; i++)
		assert_pfn_eq(pfns[i], HMM_PFN_ERROR, i);
	atomic_store(&b->pgmap.dying, false);

	old = pmd_swap(e->mm, BASE, __pte(0));
	assert_true(is_device_private_kind(pte_kind(old)));
	folio_pmd_mapcount(folio, -1);
	folio_put(folio);
	mirror_remove(&e->mi);
	ddev_fini(e->m, a);
	ddev_fini(e->m, b);
	assert_int_equal(b->freed, n);
	free(a);
	free(b);
	free(pfns);
	free(input);
	free(addrs);
}

/*
 * A peer's page with a fault request is migrated back by its driver
 * (migrate_to_ram through handle_mm_fault) and then reported as RAM.
 */
static void test_device_private_fault_back(void **state)
{
	struct env *e = *state;
	unsigned long pfns[4] = { 0 }, input[4] = { 0 };
	struct ddev *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	uint64_t dp0 = stat_now(HETMM_STAT_fault_device_private);
	unsigned int busy = 0;
	struct hmm_range r;
	unsigned char v;

	if (!memremap_ready())
		skip();
	ddev_init(e->m, a, &ddev_ops);
	ddev_init(e->m, b, &ddev_ops);
	b->migrate_ok = true;
	map_fixed(e, BASE, 4 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 4 * PG);
	for (unsigned long i = 0; i < 4; i++) {
		memset(pfn_frame(e->m, ddev_pfn(b, i)), 0x40 + (int)i, PG);
		ddev_map(e, b, i, BASE + i * PG, i != 2);
	}

	/* Only page 1 asked: pages 1-3 (its block) come back, 0 stays. */
	input[1] = HMM_PFN_REQ_FAULT;
	range_init(&r, &e->mi, BASE, 4, pfns, 0, HMM_PFN_REQ_FAULT);
	r.dev_private_owner = &a->owner;
	ASSERT_OK(mirror_fault(&e->mi, &r, input, &busy));
	assert_true(busy >= 1); /* the migration invalidated the interval */
	assert_int_equal(stat_now(HETMM_STAT_fault_device_private) - dp0, 3);
	assert_int_equal(b->migrated, 3);
	assert_pfn_eq(pfns[0], 0, 0);
	for (unsigned long i = 1; i < 4; i++) {
		unsigned long pfn = cpu_pfn(e->mm, BASE + i * PG);

		assert_true(pfn < e->m->device_base_pfn);
		assert_pfn_eq(pfns[i], pfn | V | W, i);
		ASSERT_OK(hetmm_cpu_read(e->mm, 0, BASE + i * PG + 9, &v, 1));
		assert_int_equal(v, 0x40 + i);
	}
	assert_int_equal(b->freed, 3);
	/* The owner still sees page 0 as its own. */
	range_init(&r, &e->mi, BASE, 4, pfns, 0, 0);
	r.dev_private_owner = &b->owner;
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	assert_pfn_eq(pfns[0], ddev_pfn(b, 0) | V | W, 0);
	ASSERT_OK(hetmm_check(e->m));

	ddev_unmap(e, b, 0, BASE);
	mirror_remove(&e->mi);
	ddev_fini(e->m, a);
	ddev_fini(e->m, b);
	free(a);
	free(b);
}

/*
 * Device-exclusive entries (made by hand: the PTE of an anon page becomes
 * an exclusive entry, still a mapping): 0 in a snapshot, restored by a
 * fault request.
 */
static void test_device_exclusive(void **state)
{
	struct env *e = *state;
	unsigned long pfns[4] = { 0 }, pfn;
	uint64_t ex0 = stat_now(HETMM_STAT_fault_exclusive_restore);
	unsigned int busy = 0;
	struct hmm_range r;
	pte_t old;

	map_fixed(e, BASE, 4 * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, 4 * PG);
	populate(e, BASE, 4 * PG, true);
	pfn = cpu_pfn(e->mm, BASE + PG);
	old = pte_swap(e->mm, BASE + PG,
		       softleaf_to_pte(make_device_exclusive_entry(pfn)));
	assert_true(pte_write(old));

	range_init(&r, &e->mi, BASE, 4, pfns, 0, 0);
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, NULL));
	assert_true(pfns[0] & V);
	assert_pfn_eq(pfns[1], 0, 1);
	ASSERT_OK(hetmm_check(e->m));

	range_init(&r, &e->mi, BASE, 4, pfns, HMM_PFN_REQ_FAULT, 0);
	ASSERT_OK(mirror_fault(&e->mi, &r, NULL, &busy));
	assert_true(busy >= 1); /* the restore is a CLEAR invalidation */
	assert_int_equal(stat_now(HETMM_STAT_fault_exclusive_restore) - ex0, 1);
	assert_pfn_eq(pfns[1], pfn | V | W, 1);
	assert_int_equal(pte_kind(cpu_entry(e->mm, BASE + PG, NULL)),
			 SOFTLEAF_PRESENT);
}

/* ------------------------------------------------------- concurrency */

#define CONC_PAGES 64

struct conc {
	struct env *e;
	atomic_bool stop;
	unsigned long checked, rounds, efault;
	uint64_t seed;
};

/*
 * Under the mirror lock after read_retry said no collision, every VALID
 * entry is what the CPU maps now: any change to it would have to run our
 * ->invalidate() first, which waits for this lock.
 */
static void conc_verify(struct conc *c, const unsigned long *pfns)
{
	struct env *e = c->e;

	for (unsigned long i = 0; i < CONC_PAGES; i++) {
		unsigned long addr = BASE + i * PG;
		pte_t pte;

		if (!(pfns[i] & V))
			continue;
		pte = cpu_entry(e->mm, addr, NULL);
		if (!pte_present(pte) || pte_protnone(pte) ||
		    pte_pfn(pte) != hmm_pfn_to_pfn(pfns[i]) ||
		    ((pfns[i] & W) && !pte_write(pte)))
			fail_msg("page %lu: mirror %#lx, CPU entry %#llx", i,
				 pfns[i], (unsigned long long)pte_val(pte));
		c->checked++;
	}
}

static void *conc_driver(void *arg)
{
	struct conc *c = arg;
	struct env *e = c->e;
	unsigned long pfns[CONC_PAGES] = { 0 };
	static const unsigned long modes[] = {
		0, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE
	};
	struct test_rng rng;
	struct hmm_range r;

	test_rng_init(&rng, c->seed + 1);
	while (!atomic_load(&c->stop)) {
		unsigned long first = test_rng_below(&rng, CONC_PAGES);
		unsigned long n = 1 + test_rng_below(&rng, CONC_PAGES - first);
		int ret;

		range_init(&r, &e->mi, BASE + first * PG, n, pfns,
			   modes[test_rng_below(&rng, 3)], 0);
		ret = mirror_fault_locked(&e->mi, &r, NULL, NULL);
		if (ret) {
			/* Holes, PROT_NONE, RO VMAs come and go. */
			if (ret != -EFAULT && ret != -EPERM)
				fail_msg("hmm_range_fault: %d", ret);
			c->efault++;
			continue;
		}
		/* Shift to index from BASE for the check. */
		{
			unsigned long all[CONC_PAGES] = { 0 };

			memcpy(all + first, pfns, n * sizeof(*pfns));
			conc_verify(c, all);
		}
		pthread_mutex_unlock(&e->mi.lock);
		c->rounds++;
	}
	return NULL;
}

static void *conc_mutator(void *arg)
{
	struct conc *c = arg;
	struct env *e = c->e;
	unsigned int iters = test_scale(3000, 50000);
	struct test_rng rng;

	test_rng_init(&rng, c->seed);
	for (unsigned int it = 0; it < iters; it++) {
		unsigned long first = test_rng_below(&rng, CONC_PAGES);
		unsigned long n =
			1 + test_rng_below(&rng, min(8UL, CONC_PAGES - first));
		unsigned long addr = BASE + first * PG;
		unsigned char v = (unsigned char)it;

		switch (test_rng_below(&rng, 6)) {
		case 0: /* unmap and map again */
			ASSERT_OK(hetmm_munmap(e->mm, addr, n * PG));
			map_fixed(e, addr, n * PG, RW, PRIV_ANON);
			break;
		case 1:
			ASSERT_OK(hetmm_mprotect(e->mm, addr, n * PG,
						 test_rng_below(&rng, 2) ?
							 PROT_READ :
							 PROT_NONE));
			ASSERT_OK(hetmm_mprotect(e->mm, addr, n * PG, RW));
			break;
		case 2:
		case 3:
			hetmm_cpu_write(e->mm, 1, addr, &v, 1);
			break;
		case 4:
			ASSERT_OK(hetmm_madvise(e->mm, addr, n * PG,
						MADV_DONTNEED));
			break;
		case 5: {
			struct mm_struct *child = hetmm_fork(e->mm);

			assert_false(IS_ERR(child));
			hetmm_cpu_write(child, 2, addr, &v, 1);
			hetmm_exit(child);
			break;
		}
		}
	}
	atomic_store(&c->stop, true);
	return NULL;
}

static void test_concurrent(void **state)
{
	struct env *e = *state;
	struct conc c = { .e = e, .seed = test_seed() };
	pthread_t drv, mut;

	map_fixed(e, BASE, CONC_PAGES * PG, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, CONC_PAGES * PG);
	populate(e, BASE, CONC_PAGES * PG, true);
	assert_int_equal(pthread_create(&drv, NULL, conc_driver, &c), 0);
	assert_int_equal(pthread_create(&mut, NULL, conc_mutator, &c), 0);
	assert_int_equal(pthread_join(mut, NULL), 0);
	assert_int_equal(pthread_join(drv, NULL), 0);
	print_message(
		"# concurrent: %lu rounds, %lu entries checked, %lu refused\n",
		c.rounds, c.checked, c.efault);
	assert_true(c.rounds > 0);
}

/* ---------------------------------------------------------- the cost */

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The best time of @reps snapshots of @r, per page. */
static double snapshot_ns(struct env *e, struct hmm_range *r, unsigned int reps)
{
	double best = 1e30;

	for (unsigned int i = 0; i < reps; i++) {
		double t0 = now_ns(), dt;

		ASSERT_OK(hmm_once(&e->mi, r));
		dt = now_ns() - t0;
		if (dt < best)
			best = dt;
	}
	return best / (double)range_npages(r);
}

/*
 * Snapshots of a 32 MiB range: populated with anon pages, with zero
 * pages, and empty (PTE tables left by DONTNEED). Printed, not asserted.
 */
static void test_snapshot_cost(void **state)
{
	struct env *e = *state;
	const unsigned long len = 32UL << 20, n = len / PG;
	unsigned long *pfns = calloc(n, sizeof(*pfns));
	unsigned int reps = test_scale(20, 200);
	struct hmm_range r;
	double anon, zero, none;

	map_fixed(e, BASE, len, RW, PRIV_ANON);
	mirror_insert(&e->mi, e->mm, BASE, len);
	populate(e, BASE, len, true);
	range_init(&r, &e->mi, BASE, n, pfns, 0, 0);
	anon = snapshot_ns(e, &r, reps);
	for (unsigned long i = 0; i < n; i++)
		assert_true((pfns[i] & (V | W)) == (V | W));
	ASSERT_OK(hetmm_madvise(e->mm, BASE, len, MADV_DONTNEED));
	none = snapshot_ns(e, &r, reps);
	assert_int_equal(pfns[n - 1], 0);
	populate(e, BASE, len, false);
	zero = snapshot_ns(e, &r, reps);
	assert_int_equal(pfns[n - 1], e->zero_pfn | V);
	print_message("# snapshot of %lu pages, ns/page (best of %u): "
		      "anon %.2f, zero page %.2f, none %.2f\n",
		      n, reps, anon, zero, none);
	free(pfns);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, env_setup, env_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_invalid_args),
		T(test_snapshot_kinds),
		T(test_snapshot_empty_mm),
		T(test_fault_read),
		T(test_fault_write),
		T(test_eperm_readonly),
		T(test_efault),
		T(test_per_page_mask),
		T(test_fork_cow),
		T(test_thp_order),
		T(test_thp_fault),
		T(test_thp_huge_zero),
		T(test_hugetlb),
		T(test_special_entries),
		T(test_io_pfnmap_vma),
		T(test_ebusy),
		T(test_protocol_loop),
		T(test_migration_wait),
		T(test_migration_wait_pmd),
		T(test_device_private),
		T(test_device_p2p),
		T(test_device_private_pmd),
		T(test_device_private_fault_back),
		T(test_device_exclusive),
		T(test_concurrent),
		cmocka_unit_test_setup_teardown(test_snapshot_cost,
						env_setup_big, env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
