// SPDX-License-Identifier: MIT
/*
 * cow_test.c - the kernel's cow.c selftest as scenario suites, in our own
 * words, against the process face (spec 4.8). One cmocka test per
 * (scenario, backing); a "child" is a forked address space, "vmsplice" a
 * R/O get_user_pages() reference kept as a pipe would, an io_uring fixed
 * buffer a FOLL_WRITE|FOLL_LONGTERM pin_user_pages_fast(), and the
 * gup_test R/O pins FOLL_LONGTERM pins without FOLL_WRITE.
 *
 * A. Anonymous memory, 14 scenarios x backings: a base page, a PMD-mapped
 *    THP, a PTE-mapped THP, a single remaining PTE of a THP, a partially
 *    mremap()ed THP, a partially shared THP (the rest MADV_DONTFORK), and
 *    hugetlb (2 MiB). Swapped variants SKIP: there is no swap.
 * B. THP collapse (MADV_COLLAPSE) of a PTE-mapped THP: before fork, and
 *    after fork with the whole THP, its lower half or its upper half
 *    COW-shared (the rest MADV_DONTFORK, then MADV_DOFORK again); the
 *    parent then writes everything and the child must not see it.
 * C. Non-anonymous pages in private mappings x {shared zero page, memfd,
 *    tmpfile, hugetlb memfd, huge zero page}: basic COW, R/O longterm pin
 *    (slow and fast).
 * Expected: every case PASS (the kernel allows XFAIL for vmsplice on
 * hugetlb; our hugetlb reuse is refcount based, so those pass too).
 */
#include <stdio.h>

#include <hetmm/check.h>
#include <hetmm/fs.h>
#include <hetmm/gup.h>
#include <hetmm/mm.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define SZ_2M (2UL << 20)
#define MAXPAGES HPAGE_PMD_NR

struct env {
	struct hetmm_machine *m;
	struct mm_struct *mm;
};

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	e->m = test_machine_new(96, true);
	e->mm = hetmm_process_create(e->m);
	assert_false(IS_ERR(e->mm));
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	hetmm_exit(e->mm);
	test_machine_finish(e->m);
	free(e);
	return 0;
}

/* ------------------------------------------------------------- helpers */

static void mem_write(struct mm_struct *mm, unsigned long a, size_t len,
		      unsigned char v)
{
	unsigned char buf[256];

	memset(buf, v, sizeof(buf));
	for (size_t off = 0; off < len; off += sizeof(buf))
		ASSERT_OK(hetmm_cpu_write(mm, 0, a + off, buf,
					  min(sizeof(buf), len - off)));
}

/* Fill with a per-page pattern, the way cow.c memsets 0 then writes. */
static void mem_fill(struct mm_struct *mm, unsigned long a, size_t len)
{
	for (size_t off = 0; off < len; off += PAGE_SIZE) {
		unsigned char v = (unsigned char)(off >> PAGE_SHIFT) + 1;

		ASSERT_OK(hetmm_cpu_write(mm, 0, a + off, &v, 1));
		ASSERT_OK(
			hetmm_cpu_write(mm, 0, a + off + PAGE_SIZE - 1, &v, 1));
	}
}

/* Does @mm read @want at [a, a + len)? (Two probe bytes per page.) */
static bool mem_equals(struct mm_struct *mm, unsigned long a, size_t len,
		       const unsigned char *want)
{
	for (size_t off = 0; off < len; off += PAGE_SIZE) {
		unsigned char x, y;

		ASSERT_OK(hetmm_cpu_read(mm, 0, a + off, &x, 1));
		ASSERT_OK(
			hetmm_cpu_read(mm, 0, a + off + PAGE_SIZE - 1, &y, 1));
		if (x != want[2 * (off >> PAGE_SHIFT)] ||
		    y != want[2 * (off >> PAGE_SHIFT) + 1])
			return false;
	}
	return true;
}

static void mem_snapshot(struct mm_struct *mm, unsigned long a, size_t len,
			 unsigned char *out)
{
	for (size_t off = 0; off < len; off += PAGE_SIZE) {
		ASSERT_OK(hetmm_cpu_read(mm, 0, a + off,
					 &out[2 * (off >> PAGE_SHIFT)], 1));
		ASSERT_OK(hetmm_cpu_read(mm, 0, a + off + PAGE_SIZE - 1,
					 &out[2 * (off >> PAGE_SHIFT) + 1], 1));
	}
}

/* What pages[] hold, as the probe bytes (a device reading the pin). */
static void pages_snapshot(struct page **pages, unsigned long n,
			   unsigned char *out)
{
	for (unsigned long i = 0; i < n; i++) {
		const unsigned char *p = page_address(pages[i]);

		out[2 * i] = p[0];
		out[2 * i + 1] = p[PAGE_SIZE - 1];
	}
}

/* Read one byte of each page (read faults). */
static void read_in(struct mm_struct *mm, unsigned long a, size_t len)
{
	for (size_t off = 0; off < len; off += PAGE_SIZE) {
		unsigned char x;

		ASSERT_OK(hetmm_cpu_read(mm, 0, a + off, &x, 1));
	}
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

/* The page a PMD leaf at @addr maps first (NULL if no leaf). */
static struct page *mapped_head(struct mm_struct *mm, unsigned long addr)
{
	struct page *page = NULL;
	pmd_t *pmd;

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	if (pmd && pmd_leaf(ptep_get(pmd)))
		page = pfn_to_page(mm->machine, pte_pfn(ptep_get(pmd)));
	mmap_read_unlock(mm);
	return page;
}

static unsigned long thp_region(struct mm_struct *mm)
{
	long a = hetmm_mmap(mm, 0, 2 * SZ_2M, RW, PRIV_ANON, -1, 0);
	unsigned long al;

	assert_true(a > 0);
	al = ALIGN((unsigned long)a, SZ_2M);
	if (al > (unsigned long)a)
		ASSERT_OK(hetmm_munmap(mm, a, al - a));
	ASSERT_OK(hetmm_munmap(mm, al + SZ_2M, a + 2 * SZ_2M - (al + SZ_2M)));
	ASSERT_OK(hetmm_madvise(mm, al, SZ_2M, MADV_HUGEPAGE));
	return al;
}

/* -------------------------------------------------------- anon backings */

enum backing {
	B_BASE,
	B_BASE_SWAPPED,
	B_THP_PMD,
	B_THP_PMD_SWAPPED,
	B_THP_PTE,
	B_THP_PTE_SWAPPED,
	B_THP_SINGLE_PTE,
	B_THP_SINGLE_PTE_SWAPPED,
	B_THP_PARTIAL_MREMAP,
	B_THP_PARTIAL_SHARED,
	B_HUGETLB,
	NR_BACKINGS,
};

static const char *const backing_names[NR_BACKINGS] = {
	"base page",
	"swapped-out base page",
	"PMD-mapped THP",
	"swapped-out PMD-mapped THP",
	"PTE-mapped THP",
	"swapped-out PTE-mapped THP",
	"single PTE-mapped THP",
	"swapped-out single PTE-mapped THP",
	"partially mremap()'ed THP",
	"partially shared THP",
	"hugetlb (2048 kB)",
};

struct region {
	unsigned long addr;
	size_t size;
	enum backing b;
};

/* Build the backing; false: SKIP (with the reason printed). */
static bool make_backing(struct env *e, enum backing b, struct region *r)
{
	unsigned long t;
	long x;

	r->b = b;
	switch (b) {
	case B_BASE:
		r->addr = (unsigned long)hetmm_mmap(e->mm, 0, PAGE_SIZE, RW,
						    PRIV_ANON, -1, 0);
		r->size = PAGE_SIZE;
		mem_fill(e->mm, r->addr, r->size);
		return true;
	case B_BASE_SWAPPED:
	case B_THP_PMD_SWAPPED:
	case B_THP_PTE_SWAPPED:
	case B_THP_SINGLE_PTE_SWAPPED:
		printf("# SKIP MADV_PAGEOUT did not work, is swap enabled?\n");
		return false;
	case B_HUGETLB:
		x = hetmm_mmap(e->mm, 0, SZ_2M, RW, PRIV_ANON | MAP_HUGETLB, -1,
			       0);
		if (x < 0) {
			printf("# SKIP need more free huge pages\n");
			return false;
		}
		r->addr = (unsigned long)x;
		r->size = SZ_2M;
		mem_fill(e->mm, r->addr, r->size);
		return true;
	default:
		break;
	}
	/* The THP variants start from a populated PMD-mapped THP. */
	t = thp_region(e->mm);
	mem_fill(e->mm, t, SZ_2M);
	if (!pmd_is_leaf(e->mm, t)) {
		printf("# SKIP did not get a THP populated\n");
		return false;
	}
	r->addr = t;
	r->size = SZ_2M;
	if (b == B_THP_PMD)
		return true;
	/* PTE-map it: mprotect one subpage away and back. */
	ASSERT_OK(hetmm_mprotect(e->mm, t, PAGE_SIZE, PROT_READ));
	ASSERT_OK(hetmm_mprotect(e->mm, t, PAGE_SIZE, RW));
	assert_false(pmd_is_leaf(e->mm, t));
	switch (b) {
	case B_THP_SINGLE_PTE:
		/* All but one subpage discarded: one PTE maps one subpage. */
		ASSERT_OK(hetmm_madvise(e->mm, t + PAGE_SIZE, SZ_2M - PAGE_SIZE,
					MADV_DONTNEED));
		r->size = PAGE_SIZE;
		break;
	case B_THP_PARTIAL_MREMAP: {
		/* The second half moves elsewhere: test there. */
		long to = hetmm_mmap(e->mm, 0, SZ_2M / 2, PROT_NONE, PRIV_ANON,
				     -1, 0);

		assert_true(to > 0);
		x = hetmm_mremap(e->mm, t + SZ_2M / 2, SZ_2M / 2, SZ_2M / 2,
				 MREMAP_MAYMOVE | MREMAP_FIXED,
				 (unsigned long)to);
		assert_int_equal(x, to);
		r->addr = (unsigned long)to;
		r->size = SZ_2M / 2;
		break;
	}
	case B_THP_PARTIAL_SHARED:
		/* Only the first page will be shared with a child. */
		ASSERT_OK(hetmm_madvise(e->mm, t + PAGE_SIZE, SZ_2M - PAGE_SIZE,
					MADV_DONTFORK));
		r->size = PAGE_SIZE;
		break;
	default:
		break;
	}
	return true;
}

/* --------------------------------------------------- anon scenarios (A) */

struct ctx {
	struct env *e;
	struct region r;
	unsigned char *old, *now;
};

/* 1, 2: COW after fork; the parent writes (after mprotect R, RW). */
static bool do_cow_in_parent(struct ctx *c, bool mprotect_opt)
{
	struct mm_struct *child;
	bool ok;

	mem_snapshot(c->e->mm, c->r.addr, c->r.size, c->old);
	child = hetmm_fork(c->e->mm);
	assert_false(IS_ERR(child));
	if (mprotect_opt) {
		ASSERT_OK(hetmm_mprotect(c->e->mm, c->r.addr, c->r.size,
					 PROT_READ));
		ASSERT_OK(hetmm_mprotect(c->e->mm, c->r.addr, c->r.size, RW));
	}
	mem_write(c->e->mm, c->r.addr, c->r.size, 0xff);
	ok = mem_equals(child, c->r.addr, c->r.size, c->old);
	if (!ok)
		printf("# Leak from parent into child\n");
	hetmm_exit(child);
	return ok;
}

/* 3, 4: the child vmsplice()s (R/O GET) and unmaps; the parent writes;
 * the pipe must still hold the old data. */
static bool do_vmsplice_in_child(struct ctx *c, bool mprotect_opt)
{
	unsigned long n = c->r.size >> PAGE_SHIFT;
	struct page **pipe = calloc(n, sizeof(*pipe));
	struct mm_struct *child;
	bool ok;
	long got;

	assert_non_null(pipe);
	mem_snapshot(c->e->mm, c->r.addr, c->r.size, c->old);
	child = hetmm_fork(c->e->mm);
	assert_false(IS_ERR(child));
	mmap_read_lock(child);
	got = get_user_pages(child, c->r.addr, n, 0, pipe);
	mmap_read_unlock(child);
	assert_int_equal(got, (long)n);
	ASSERT_OK(hetmm_munmap(child, c->r.addr, c->r.size));
	if (mprotect_opt) {
		ASSERT_OK(hetmm_mprotect(c->e->mm, c->r.addr, c->r.size,
					 PROT_READ));
		ASSERT_OK(hetmm_mprotect(c->e->mm, c->r.addr, c->r.size, RW));
	}
	mem_write(c->e->mm, c->r.addr, c->r.size, 0xff);
	pages_snapshot(pipe, n, c->now);
	ok = !memcmp(c->old, c->now, 2 * n);
	if (!ok)
		printf("# Leak from parent into child\n");
	for (unsigned long i = 0; i < n; i++)
		put_page(pipe[i]);
	hetmm_exit(child);
	free(pipe);
	return ok;
}

/* 5, 6: the parent vmsplice()s (before or after fork) and unmaps; the
 * child writes; the parent's pipe must hold the old data. */
static bool do_vmsplice_in_parent(struct ctx *c, bool before_fork)
{
	unsigned long n = c->r.size >> PAGE_SHIFT;
	struct page **pipe = calloc(n, sizeof(*pipe));
	struct mm_struct *child = NULL;
	bool ok;
	long got;

	assert_non_null(pipe);
	mem_snapshot(c->e->mm, c->r.addr, c->r.size, c->old);
	if (!before_fork) {
		child = hetmm_fork(c->e->mm);
		assert_false(IS_ERR(child));
	}
	mmap_read_lock(c->e->mm);
	got = get_user_pages(c->e->mm, c->r.addr, n, 0, pipe);
	mmap_read_unlock(c->e->mm);
	assert_int_equal(got, (long)n);
	if (before_fork) {
		child = hetmm_fork(c->e->mm);
		assert_false(IS_ERR(child));
	}
	ASSERT_OK(hetmm_munmap(c->e->mm, c->r.addr, c->r.size));
	mem_write(child, c->r.addr, c->r.size, 0xff);
	pages_snapshot(pipe, n, c->now);
	ok = !memcmp(c->old, c->now, 2 * n);
	if (!ok)
		printf("# Leak from child into parent\n");
	for (unsigned long i = 0; i < n; i++)
		put_page(pipe[i]);
	hetmm_exit(child);
	free(pipe);
	return ok;
}

/* 7, 8: an io_uring fixed buffer (R/W longterm pin); then R/O-map it and
 * back (7), or fork with the child alive (8); the parent writes; what the
 * device reads through the pin must be the new data. */
static bool do_iouring(struct ctx *c, bool use_fork)
{
	unsigned long n = c->r.size >> PAGE_SHIFT;
	struct page **buf = calloc(n, sizeof(*buf));
	struct mm_struct *child = NULL;
	bool ok;
	int got;

	assert_non_null(buf);
	got = pin_user_pages_fast(c->e->mm, c->r.addr, (int)n,
				  FOLL_WRITE | FOLL_LONGTERM, buf);
	assert_int_equal(got, (int)n);
	if (use_fork) {
		child = hetmm_fork(c->e->mm);
		assert_false(IS_ERR(child));
	} else {
		ASSERT_OK(hetmm_mprotect(c->e->mm, c->r.addr, c->r.size,
					 PROT_READ));
		ASSERT_OK(hetmm_mprotect(c->e->mm, c->r.addr, c->r.size, RW));
	}
	mem_write(c->e->mm, c->r.addr, c->r.size, 0xfe);
	mem_snapshot(c->e->mm, c->r.addr, c->r.size, c->old);
	pages_snapshot(buf, n, c->now);
	ok = !memcmp(c->old, c->now, 2 * n);
	if (!ok)
		printf("# Longterm R/W pin is not reliable\n");
	unpin_user_pages(buf, n);
	if (child)
		hetmm_exit(child);
	free(buf);
	return ok;
}

enum ro_pin_test {
	RO_PIN_SHARED,
	RO_PIN_PREVIOUSLY_SHARED,
	RO_PIN_RO_EXCLUSIVE,
};

/* 9-14: a R/O longterm pin (slow or fast), then the parent writes; the
 * pin must see the write. */
static bool do_ro_pin(struct ctx *c, enum ro_pin_test t, bool fast)
{
	unsigned long n = c->r.size >> PAGE_SHIFT;
	struct page **pins = calloc(n, sizeof(*pins));
	struct mm_struct *child = NULL;
	bool ok;
	long got;

	assert_non_null(pins);
	switch (t) {
	case RO_PIN_SHARED:
		child = hetmm_fork(c->e->mm);
		assert_false(IS_ERR(child));
		break;
	case RO_PIN_PREVIOUSLY_SHARED:
		child = hetmm_fork(c->e->mm);
		assert_false(IS_ERR(child));
		hetmm_exit(child);
		child = NULL;
		break;
	case RO_PIN_RO_EXCLUSIVE:
		/* An exclusive page mapped R/O. */
		ASSERT_OK(hetmm_mprotect(c->e->mm, c->r.addr, c->r.size,
					 PROT_READ));
		break;
	}
	if (fast) {
		got = pin_user_pages_fast(c->e->mm, c->r.addr, (int)n,
					  FOLL_LONGTERM, pins);
	} else {
		mmap_read_lock(c->e->mm);
		got = pin_user_pages(c->e->mm, c->r.addr, n, FOLL_LONGTERM,
				     pins);
		mmap_read_unlock(c->e->mm);
	}
	assert_int_equal(got, (long)n);
	if (t == RO_PIN_RO_EXCLUSIVE)
		ASSERT_OK(hetmm_mprotect(c->e->mm, c->r.addr, c->r.size, RW));
	mem_write(c->e->mm, c->r.addr, c->r.size, 0xfd);
	mem_snapshot(c->e->mm, c->r.addr, c->r.size, c->old);
	pages_snapshot(pins, n, c->now);
	ok = !memcmp(c->old, c->now, 2 * n);
	if (!ok)
		printf("# Longterm R/O pin is not reliable\n");
	unpin_user_pages(pins, n);
	if (child)
		hetmm_exit(child);
	free(pins);
	return ok;
}

enum anon_test {
	T_COW,
	T_COW_MPROTECT,
	T_VMSPLICE_CHILD,
	T_VMSPLICE_CHILD_MPROTECT,
	T_VMSPLICE_BEFORE_FORK,
	T_VMSPLICE_AFTER_FORK,
	T_IOURING_RO,
	T_IOURING_FORK,
	T_RO_PIN_SHARED,
	T_RO_FAST_PIN_SHARED,
	T_RO_PIN_PREV_SHARED,
	T_RO_FAST_PIN_PREV_SHARED,
	T_RO_PIN_RO_EXCL,
	T_RO_FAST_PIN_RO_EXCL,
	NR_ANON_TESTS,
};

static const char *const anon_test_names[NR_ANON_TESTS] = {
	"Basic COW after fork()",
	"Basic COW after fork() with mprotect() optimization",
	"vmsplice() + unmap in child",
	"vmsplice() + unmap in child with mprotect() optimization",
	"vmsplice() before fork(), unmap in parent after fork()",
	"vmsplice() + unmap in parent after fork()",
	"R/O-mapping a page registered as iouring fixed buffer",
	"fork() with an iouring fixed buffer",
	"R/O GUP pin on R/O-mapped shared page",
	"R/O GUP-fast pin on R/O-mapped shared page",
	"R/O GUP pin on R/O-mapped previously-shared page",
	"R/O GUP-fast pin on R/O-mapped previously-shared page",
	"R/O GUP pin on R/O-mapped exclusive page",
	"R/O GUP-fast pin on R/O-mapped exclusive page",
};

struct anon_case {
	enum anon_test t;
	enum backing b;
};

static void run_anon_case(struct env *e, const struct anon_case *ac)
{
	struct ctx c = { .e = e };
	bool ok = false, xfail_ok;

	if (!make_backing(e, ac->b, &c.r)) {
		skip();
		return;
	}
	c.old = calloc(2, MAXPAGES);
	c.now = calloc(2, MAXPAGES);
	assert_non_null(c.old);
	assert_non_null(c.now);
	switch (ac->t) {
	case T_COW:
		ok = do_cow_in_parent(&c, false);
		break;
	case T_COW_MPROTECT:
		ok = do_cow_in_parent(&c, true);
		break;
	case T_VMSPLICE_CHILD:
		ok = do_vmsplice_in_child(&c, false);
		break;
	case T_VMSPLICE_CHILD_MPROTECT:
		ok = do_vmsplice_in_child(&c, true);
		break;
	case T_VMSPLICE_BEFORE_FORK:
		ok = do_vmsplice_in_parent(&c, true);
		break;
	case T_VMSPLICE_AFTER_FORK:
		ok = do_vmsplice_in_parent(&c, false);
		break;
	case T_IOURING_RO:
		ok = do_iouring(&c, false);
		break;
	case T_IOURING_FORK:
		ok = do_iouring(&c, true);
		break;
	case T_RO_PIN_SHARED:
	case T_RO_FAST_PIN_SHARED:
		ok = do_ro_pin(&c, RO_PIN_SHARED,
			       ac->t == T_RO_FAST_PIN_SHARED);
		break;
	case T_RO_PIN_PREV_SHARED:
	case T_RO_FAST_PIN_PREV_SHARED:
		ok = do_ro_pin(&c, RO_PIN_PREVIOUSLY_SHARED,
			       ac->t == T_RO_FAST_PIN_PREV_SHARED);
		break;
	case T_RO_PIN_RO_EXCL:
	case T_RO_FAST_PIN_RO_EXCL:
		ok = do_ro_pin(&c, RO_PIN_RO_EXCLUSIVE,
			       ac->t == T_RO_FAST_PIN_RO_EXCL);
		break;
	default:
		break;
	}
	free(c.old);
	free(c.now);
	/* cow.c accepts a failure of the vmsplice cases on hugetlb. */
	xfail_ok = ac->b == B_HUGETLB && ac->t >= T_VMSPLICE_CHILD &&
		   ac->t <= T_VMSPLICE_AFTER_FORK;
	if (!ok && xfail_ok)
		printf("# XFAIL (hugetlb reuse is mapcount based in Linux)\n");
	else
		assert_true(ok);
	ASSERT_OK(hetmm_check(e->m));
}

/* ------------------------------------------- non-anon backings (part C) */

enum nonanon_backing {
	NB_ZERO,
	NB_HUGE_ZERO,
	NB_MEMFD,
	NB_TMPFILE,
	NB_HUGETLB_MEMFD,
	NR_NONANON_BACKINGS,
};

static const char *const nonanon_names[NR_NONANON_BACKINGS] = {
	"with shared zeropage", "with huge zeropage",		"with memfd",
	"with tmpfile",		"with memfd hugetlb (2048 kB)",
};

enum nonanon_test {
	NT_COW,
	NT_RO_PIN,
	NT_RO_FAST_PIN,
	NR_NONANON_TESTS,
};

static const char *const nonanon_test_names[NR_NONANON_TESTS] = {
	"Basic COW",
	"R/O longterm GUP pin",
	"R/O longterm GUP-fast pin",
};

struct nonanon_case {
	enum nonanon_test t;
	enum nonanon_backing b;
};

/*
 * mem: the private mapping; smem: a second view that must not change (the
 * file's shared mapping, or another private zero-page mapping).
 */
static bool make_nonanon(struct env *e, enum nonanon_backing b,
			 unsigned long *mem, unsigned long *smem, size_t *size,
			 int *fdp)
{
	static int seq;
	char name[32];
	int kind = HETMM_FS_TMPFS, fd;
	long x, y;

	*fdp = -1;
	switch (b) {
	case NB_ZERO:
		*size = PAGE_SIZE;
		x = hetmm_mmap(e->mm, 0, *size, RW, PRIV_ANON, -1, 0);
		y = hetmm_mmap(e->mm, 0, *size, RW, PRIV_ANON, -1, 0);
		assert_true(x > 0 && y > 0);
		*mem = (unsigned long)x;
		*smem = (unsigned long)y;
		/* Read faults map the shared zero page in both. */
		read_in(e->mm, *mem, *size);
		read_in(e->mm, *smem, *size);
		return true;
	case NB_HUGE_ZERO:
		/* Two THP-eligible 2 MiB ranges, both read-faulted: each
		 * maps the huge zero folio with one read-only leaf. */
		*size = SZ_2M;
		*mem = thp_region(e->mm);
		*smem = thp_region(e->mm);
		read_in(e->mm, *mem, PAGE_SIZE);
		read_in(e->mm, *smem, PAGE_SIZE);
		assert_true(pmd_is_leaf(e->mm, *mem));
		assert_true(pmd_is_leaf(e->mm, *smem));
		assert_ptr_equal(mapped_head(e->mm, *mem),
				 mapped_head(e->mm, *smem));
		assert_true(is_huge_zero_folio(
			page_folio(mapped_head(e->mm, *mem))));
		return true;
	case NB_HUGETLB_MEMFD:
		kind = HETMM_FS_HUGETLBFS;
		*size = SZ_2M;
		break;
	default:
		*size = PAGE_SIZE;
		break;
	}
	snprintf(name, sizeof(name), "/cow-%d", seq++);
	fd = hetmm_open_kind(e->mm, name, O_RDWR | O_CREAT, kind);
	assert_true(fd >= 0);
	ASSERT_OK(hetmm_unlink(e->mm, name)); /* as memfd/tmpfile */
	ASSERT_OK(hetmm_ftruncate(e->mm, fd, (off_t)*size));
	x = hetmm_mmap(e->mm, 0, *size, RW, MAP_PRIVATE, fd, 0);
	y = hetmm_mmap(e->mm, 0, *size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(x > 0 && y > 0);
	*mem = (unsigned long)x;
	*smem = (unsigned long)y;
	/* Give the file contents, then read them through the private
	 * mapping (which maps the page cache read-only). */
	for (size_t off = 0; off < *size; off += PAGE_SIZE) {
		unsigned char one = 1;

		assert_int_equal(hetmm_pwrite(e->mm, fd, &one, 1, (off_t)off),
				 1);
	}
	read_in(e->mm, *mem, *size);
	*fdp = fd;
	return true;
}

static void run_nonanon_case(struct env *e, const struct nonanon_case *nc)
{
	unsigned long mem, smem, n;
	unsigned char *old, *now;
	struct page **pins;
	size_t size;
	bool ok;
	int fd;

	if (!make_nonanon(e, nc->b, &mem, &smem, &size, &fd)) {
		skip();
		return;
	}
	n = size >> PAGE_SHIFT;
	old = calloc(2, n);
	now = calloc(2, n);
	pins = calloc(n, sizeof(*pins));
	assert_non_null(old);
	assert_non_null(now);
	assert_non_null(pins);
	mem_snapshot(e->mm, smem, size, old);
	switch (nc->t) {
	case NT_COW:
		/* Writing the private mapping leaves the other alone. */
		mem_write(e->mm, mem, size, 0xff);
		ok = mem_equals(e->mm, smem, size, old);
		if (!ok)
			printf("# Other mapping modified\n");
		break;
	default: {
		long got;

		if (nc->t == NT_RO_FAST_PIN) {
			got = pin_user_pages_fast(e->mm, mem, (int)n,
						  FOLL_LONGTERM, pins);
		} else {
			mmap_read_lock(e->mm);
			got = pin_user_pages(e->mm, mem, n, FOLL_LONGTERM,
					     pins);
			mmap_read_unlock(e->mm);
		}
		assert_int_equal(got, (long)n);
		/* The pin unshared: later writes are seen through it. */
		mem_write(e->mm, mem, size, 0xff);
		mem_snapshot(e->mm, mem, size, old);
		pages_snapshot(pins, n, now);
		ok = !memcmp(old, now, 2 * n);
		if (!ok)
			printf("# Longterm R/O pin is not reliable\n");
		unpin_user_pages(pins, n);
		break;
	}
	}
	free(old);
	free(now);
	free(pins);
	if (fd >= 0)
		ASSERT_OK(hetmm_close(e->mm, fd));
	assert_true(ok);
	ASSERT_OK(hetmm_check(e->m));
}

/* ------------------------------------------------ THP collapse (B) */

enum collapse_test {
	COLLAPSE_UNSHARED, /* collapse, then fork */
	COLLAPSE_FULLY_SHARED, /* fork, then collapse */
	COLLAPSE_LOWER_SHARED, /* upper half MADV_DONTFORK, fork, DOFORK */
	COLLAPSE_UPPER_SHARED, /* lower half MADV_DONTFORK, fork, DOFORK */
};

/*
 * A PTE-mapped THP collapsed before or after fork: the parent then writes
 * the whole range, and the child must still read what it shared.
 */
static void run_collapse_case(struct env *e, enum collapse_test t)
{
	unsigned char *old = malloc(2 * MAXPAGES);
	unsigned long mem, cmp = 0, cmp_size = SZ_2M;
	struct mm_struct *child;
	bool ok;

	assert_non_null(old);
	mem = thp_region(e->mm);
	mem_fill(e->mm, mem, SZ_2M);
	if (!pmd_is_leaf(e->mm, mem)) {
		free(old);
		printf("# SKIP did not get a THP populated\n");
		skip();
	}
	/* PTE-map the THP: one subpage R/O and back. */
	ASSERT_OK(hetmm_mprotect(e->mm, mem + PAGE_SIZE, PAGE_SIZE, PROT_READ));
	ASSERT_OK(hetmm_mprotect(e->mm, mem + PAGE_SIZE, PAGE_SIZE, RW));
	assert_false(pmd_is_leaf(e->mm, mem));

	switch (t) {
	case COLLAPSE_UNSHARED:
		ASSERT_OK(hetmm_madvise(e->mm, mem, SZ_2M, MADV_COLLAPSE));
		assert_true(pmd_is_leaf(e->mm, mem));
		break;
	case COLLAPSE_LOWER_SHARED:
		ASSERT_OK(hetmm_madvise(e->mm, mem + SZ_2M / 2, SZ_2M / 2,
					MADV_DONTFORK));
		cmp_size = SZ_2M / 2;
		break;
	case COLLAPSE_UPPER_SHARED:
		ASSERT_OK(hetmm_madvise(e->mm, mem, SZ_2M / 2, MADV_DONTFORK));
		cmp = SZ_2M / 2;
		cmp_size = SZ_2M / 2;
		break;
	default:
		break;
	}
	mem_snapshot(e->mm, mem + cmp, cmp_size, old);
	child = hetmm_fork(e->mm);
	assert_false(IS_ERR(child));

	switch (t) {
	case COLLAPSE_LOWER_SHARED:
	case COLLAPSE_UPPER_SHARED:
		/* Revert MADV_DONTFORK so the range is one VMA again. */
		ASSERT_OK(hetmm_madvise(e->mm, mem, SZ_2M, MADV_DOFORK));
		/* fall through */
	case COLLAPSE_FULLY_SHARED:
		/* Collapse before anybody wrote to the COW-shared pages. */
		ASSERT_OK(hetmm_madvise(e->mm, mem, SZ_2M, MADV_COLLAPSE));
		assert_true(pmd_is_leaf(e->mm, mem));
		break;
	default:
		break;
	}
	ASSERT_OK(hetmm_check(e->m));

	mem_write(e->mm, mem, SZ_2M, 0xff);
	ok = mem_equals(child, mem + cmp, cmp_size, old);
	if (!ok)
		printf("# Leak from parent into child\n");
	ASSERT_OK(hetmm_check(e->m));
	hetmm_exit(child);
	free(old);
	assert_true(ok);
	ASSERT_OK(hetmm_check(e->m));
}

/* ------------------------------------------------------------------ main */

/* cmocka hands the fixture the test's initial state; we keep the case in
 * slot 1 next to the environment. */
struct fixture {
	struct env *e;
	const void *c;
};

static int case_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	void *e;

	assert_non_null(f);
	f->c = *state;
	env_setup(&e);
	f->e = e;
	*state = f;
	return 0;
}

static int case_teardown(void **state)
{
	struct fixture *f = *state;
	void *e = f->e;

	env_teardown(&e);
	free(f);
	return 0;
}

static void anon_entry(void **state)
{
	struct fixture *f = *state;

	run_anon_case(f->e, f->c);
}

static void nonanon_entry(void **state)
{
	struct fixture *f = *state;

	run_nonanon_case(f->e, f->c);
}

static void collapse_entry(void **state)
{
	struct fixture *f = *state;

	run_collapse_case(f->e, *(const enum collapse_test *)f->c);
}

static const char *const collapse_names[] = {
	"Anon THP collapse before fork()",
	"Anon THP collapse after fork() (fully shared)",
	"Anon THP collapse after fork() (lower shared)",
	"Anon THP collapse after fork() (upper shared)",
};

int main(void)
{
	enum {
		NR = NR_ANON_TESTS * NR_BACKINGS +
		     NR_NONANON_TESTS * NR_NONANON_BACKINGS + 4
	};
	static struct anon_case anon[NR_ANON_TESTS * NR_BACKINGS];
	static struct nonanon_case
		nonanon[NR_NONANON_TESTS * NR_NONANON_BACKINGS];
	static struct CMUnitTest tests[NR];
	static char names[NR][128];
	int n = 0;

	for (int t = 0; t < NR_ANON_TESTS; t++) {
		for (int b = 0; b < NR_BACKINGS; b++) {
			struct anon_case *ac = &anon[t * NR_BACKINGS + b];

			ac->t = (enum anon_test)t;
			ac->b = (enum backing)b;
			snprintf(names[n], sizeof(names[n]), "%s ... with %s",
				 anon_test_names[t], backing_names[b]);
			tests[n] = (struct CMUnitTest){
				.name = names[n],
				.test_func = anon_entry,
				.setup_func = case_setup,
				.teardown_func = case_teardown,
				.initial_state = ac,
			};
			n++;
		}
	}
	for (int i = 0; i < 4; i++) {
		static const enum collapse_test ct[] = {
			COLLAPSE_UNSHARED,
			COLLAPSE_FULLY_SHARED,
			COLLAPSE_LOWER_SHARED,
			COLLAPSE_UPPER_SHARED,
		};

		snprintf(names[n], sizeof(names[n]), "%s", collapse_names[i]);
		tests[n] = (struct CMUnitTest){
			.name = names[n],
			.test_func = collapse_entry,
			.setup_func = case_setup,
			.teardown_func = case_teardown,
			.initial_state = (void *)&ct[i],
		};
		n++;
	}
	for (int t = 0; t < NR_NONANON_TESTS; t++) {
		for (int b = 0; b < NR_NONANON_BACKINGS; b++) {
			struct nonanon_case *nc =
				&nonanon[t * NR_NONANON_BACKINGS + b];

			nc->t = (enum nonanon_test)t;
			nc->b = (enum nonanon_backing)b;
			snprintf(names[n], sizeof(names[n]), "%s ... %s",
				 nonanon_test_names[t], nonanon_names[b]);
			tests[n] = (struct CMUnitTest){
				.name = names[n],
				.test_func = nonanon_entry,
				.setup_func = case_setup,
				.teardown_func = case_teardown,
				.initial_state = nc,
			};
			n++;
		}
	}
	return _cmocka_run_group_tests("cow", tests, (size_t)n, NULL, NULL);
}
