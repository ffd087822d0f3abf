// SPDX-License-Identifier: MIT
/*
 * process_test.c - scenario tests of the process face, in the style of the
 * kernel's mm selftests with hetmm_ in front of the system calls: mmap
 * (anonymous/file, private/shared, MAP_FIXED*, MAP_POPULATE, errors), fork
 * (shared memory, COW, MADV_DONTFORK), file mappings (visibility, private
 * COW, truncation, writeback), mprotect, madvise, mremap, cmpxchg, the
 * software TLB, rmap after fork, mmu notifier events, and injected
 * allocation failures that must leave a process's observable state alone.
 *
 * Expected values are Linux's; where a test pins down a Linux behaviour
 * that differs from hetmm's own documentation the comment says so.
 */
#include <fcntl.h>

#include <hetmm/fs.h>
#include <hetmm/mmu_notifier.h>
#include <hetmm/rmap.h>
#include <hetmm/tlb.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define PA (MAP_PRIVATE | MAP_ANONYMOUS)
#define SA (MAP_SHARED | MAP_ANONYMOUS)
#define RW (PROT_READ | PROT_WRITE)
#define PG PAGE_SIZE
/* A fixed low address for layouts the tests place themselves. */
#define LOW 0x10000000UL

/* ------------------------------------------------------------- helpers */

static struct mm_struct *proc_new(struct hetmm_machine *m)
{
	struct mm_struct *mm = hetmm_process_create(m);

	assert_false(IS_ERR(mm));
	return mm;
}

static struct mm_struct *do_fork(struct mm_struct *parent)
{
	struct mm_struct *c = hetmm_fork(parent);

	if (IS_ERR(c))
		fail_msg("hetmm_fork: %ld", PTR_ERR(c));
	return c;
}

static void check_ok(struct hetmm_machine *m)
{
	if (hetmm_check(m))
		fail_msg("hetmm_check:\n%s", hetmm_check_report(m));
}

static uint64_t stat_now(enum hetmm_stat_item item)
{
	struct hetmm_stats s;

	hetmm_stats_read(&s);
	return s.v[item];
}

/* Pages in use once RCU-freed tables and per-thread lists are back. */
static long settled_pages(struct hetmm_machine *m)
{
	rcu_barrier();
	drain_all_pages(m);
	return hetmm_pages_in_use(m);
}

/* mmap that must succeed (at @addr exactly if MAP_FIXED*). */
static unsigned long map(struct mm_struct *mm, unsigned long addr, size_t len,
			 int prot, int flags, int fd, off_t off)
{
	long a = hetmm_mmap(mm, addr, len, prot, flags, fd, off);

	if (a < 0)
		fail_msg("mmap(%#lx, %zu, %d, %#x, %d, %lld) = %ld", addr, len,
			 prot, flags, fd, (long long)off, a);
	assert_true(IS_ALIGNED((unsigned long)a, PG));
	if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
		assert_int_equal(a, addr);
	return (unsigned long)a;
}

static int open_file(struct mm_struct *mm, const char *name, int flags,
		     size_t size)
{
	int fd = hetmm_open(mm, name, flags);

	assert_true(fd >= 0);
	if (size)
		ASSERT_OK(hetmm_ftruncate(mm, fd, (off_t)size));
	return fd;
}

/* Byte @i of the pattern @seed. */
static unsigned char pat(unsigned int seed, size_t i)
{
	return (unsigned char)(seed * 131u + i * 7u + (i >> 12) * 13u + 1u);
}

/* Write pattern @seed, bytes 0..@len-1, at @addr through @cpu. */
static void fill_cpu(struct mm_struct *mm, unsigned int cpu,
		     unsigned long addr, size_t len, unsigned int seed)
{
	unsigned char *buf = malloc(len);

	assert_non_null(buf);
	for (size_t i = 0; i < len; i++)
		buf[i] = pat(seed, i);
	ASSERT_OK(hetmm_cpu_write(mm, cpu, addr, buf, len));
	free(buf);
}

static void fill(struct mm_struct *mm, unsigned long addr, size_t len,
		 unsigned int seed)
{
	fill_cpu(mm, 0, addr, len, seed);
}

/* Expect bytes @off..@off+@len-1 of pattern @seed at @addr (via @cpu). */
static void expect_cpu(struct mm_struct *mm, unsigned int cpu,
		       unsigned long addr, size_t len, unsigned int seed,
		       size_t off)
{
	unsigned char *buf = malloc(len);
	int ret;

	assert_non_null(buf);
	ret = hetmm_cpu_read(mm, cpu, addr, buf, len);
	if (ret)
		fail_msg("read %#lx+%zu: %d", addr, len, ret);
	for (size_t i = 0; i < len; i++)
		if (buf[i] != pat(seed, off + i))
			fail_msg("byte at %#lx: %#x, expected %#x (seed %u)",
				 addr + i, buf[i], pat(seed, off + i), seed);
	free(buf);
}

static void expect(struct mm_struct *mm, unsigned long addr, size_t len,
		   unsigned int seed, size_t off)
{
	expect_cpu(mm, 0, addr, len, seed, off);
}

static void expect_zero(struct mm_struct *mm, unsigned long addr, size_t len)
{
	unsigned char *buf = malloc(len);

	assert_non_null(buf);
	memset(buf, 0xcc, len);
	ASSERT_OK(hetmm_cpu_read(mm, 0, addr, buf, len));
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			fail_msg("byte at %#lx: %#x, expected 0", addr + i,
				 buf[i]);
	free(buf);
}

static unsigned char rd8(struct mm_struct *mm, unsigned int cpu,
			 unsigned long addr)
{
	unsigned char c;
	int ret = hetmm_cpu_read(mm, cpu, addr, &c, 1);

	if (ret)
		fail_msg("read %#lx on cpu %u: %d", addr, cpu, ret);
	return c;
}

static void wr8(struct mm_struct *mm, unsigned int cpu, unsigned long addr,
		unsigned char v)
{
	int ret = hetmm_cpu_write(mm, cpu, addr, &v, 1);

	if (ret)
		fail_msg("write %#lx on cpu %u: %d", addr, cpu, ret);
}

static int try_rd(struct mm_struct *mm, unsigned int cpu, unsigned long addr)
{
	unsigned char c;

	return hetmm_cpu_read(mm, cpu, addr, &c, 1);
}

static int try_wr(struct mm_struct *mm, unsigned int cpu, unsigned long addr)
{
	unsigned char c = 0x5a;

	return hetmm_cpu_write(mm, cpu, addr, &c, 1);
}

/* The PTE for @addr (no tables allocated), or a none PTE. */
static pte_t get_pte(struct mm_struct *mm, unsigned long addr)
{
	pmd_t *pmd;
	spinlock_t *ptl;
	pte_t *p, v = __pte(0);

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	p = pmd ? pte_offset_map_lock(mm, pmd, addr, &ptl) : NULL;
	if (p) {
		v = ptep_get(p);
		spin_unlock(ptl);
	}
	mmap_read_unlock(mm);
	return v;
}

/* The normal page mapped at @addr, or NULL (none, special, non-present). */
static struct page *page_at(struct mm_struct *mm, unsigned long addr)
{
	pte_t p = get_pte(mm, addr);

	if (!pte_present(p) || pte_special(p))
		return NULL;
	return pfn_to_page(mm->machine, pte_pfn(p));
}

static struct page *page_at_nonnull(struct mm_struct *mm, unsigned long addr)
{
	struct page *pg = page_at(mm, addr);

	if (!pg)
		fail_msg("no page mapped at %#lx", addr);
	return pg;
}

/* A copy of the VMA at @addr (asserted present). */
static struct vm_area_struct vma_at(struct mm_struct *mm, unsigned long addr)
{
	struct vm_area_struct *vma, copy = { 0 };

	mmap_read_lock(mm);
	vma = vma_lookup(mm, addr);
	if (vma)
		copy = *vma;
	mmap_read_unlock(mm);
	if (!vma)
		fail_msg("no VMA at %#lx", addr);
	return copy;
}

static bool has_vma(struct mm_struct *mm, unsigned long addr)
{
	bool ret;

	mmap_read_lock(mm);
	ret = vma_lookup(mm, addr) != NULL;
	mmap_read_unlock(mm);
	return ret;
}

#define SNAP_MAX 32

/* The VMA layout of an mm, for before/after comparisons. */
struct vma_snap {
	int n, map_count;
	struct {
		unsigned long start, end, flags, pgoff;
		struct file *file;
	} v[SNAP_MAX];
};

static void snap(struct mm_struct *mm, struct vma_snap *s)
{
	struct vm_area_struct *vma;

	memset(s, 0, sizeof(*s));
	mmap_read_lock(mm);
	for (vma = find_vma(mm, 0); vma; vma = vma_next(vma)) {
		assert_true(s->n < SNAP_MAX);
		s->v[s->n].start = vma->vm_start;
		s->v[s->n].end = vma->vm_end;
		s->v[s->n].flags = vma->vm_flags;
		s->v[s->n].pgoff = vma->vm_pgoff;
		s->v[s->n].file = vma->vm_file;
		s->n++;
	}
	s->map_count = mm->map_count;
	mmap_read_unlock(mm);
}

static void assert_snap_equal(const struct vma_snap *a,
			      const struct vma_snap *b)
{
	if (a->n != b->n || a->map_count != b->map_count)
		fail_msg("VMA count changed: %d (map_count %d) -> %d (map_count %d)",
			 a->n, a->map_count, b->n, b->map_count);
	for (int i = 0; i < a->n; i++)
		if (a->v[i].start != b->v[i].start ||
		    a->v[i].end != b->v[i].end ||
		    a->v[i].flags != b->v[i].flags ||
		    a->v[i].pgoff != b->v[i].pgoff ||
		    a->v[i].file != b->v[i].file)
			fail_msg("VMA %d changed: %#lx-%#lx flags %#lx pgoff %#lx -> %#lx-%#lx flags %#lx pgoff %#lx",
				 i, a->v[i].start, a->v[i].end, a->v[i].flags,
				 a->v[i].pgoff, b->v[i].start, b->v[i].end,
				 b->v[i].flags, b->v[i].pgoff);
}

static void assert_layout_unchanged(struct mm_struct *mm,
				    const struct vma_snap *before)
{
	struct vma_snap now;

	snap(mm, &now);
	assert_snap_equal(before, &now);
}

/* ---------------------------------------------------------------- mmap */

static void test_mmap_anon_private(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	unsigned long a = map(p, 0, 4 * PG, RW, PA, -1, 0);
	unsigned long b = map(p, 0, 2 * PG, RW, PA, -1, 0);
	struct vm_area_struct v;

	assert_true(a + 4 * PG <= HETMM_MMAP_BASE);
	/* The two placements do not overlap. */
	assert_true(b + 2 * PG <= a || a + 4 * PG <= b);
	assert_int_equal(p->map_count, 2);
	v = vma_at(p, a);
	assert_int_equal(v.vm_start, a);
	assert_int_equal(v.vm_end, a + 4 * PG);
	assert_true(v.vm_flags & VM_READ);
	assert_true(v.vm_flags & VM_WRITE);
	assert_false(v.vm_flags & VM_SHARED);
	assert_null(v.vm_file);
	assert_non_null(v.anon_vma);

	expect_zero(p, a, 4 * PG);
	fill(p, a, 4 * PG, 1);
	expect_cpu(p, 1, a, 4 * PG, 1, 0);
	expect_zero(p, b, 2 * PG);
	/* The written pages are private, exclusive anonymous pages. */
	for (int i = 0; i < 4; i++) {
		struct page *pg = page_at_nonnull(p, a + i * PG);

		assert_true(folio_test_anon(page_folio(pg)));
		assert_true(PageAnonExclusive(pg));
		assert_int_equal(page_mapcount(pg), 1);
	}
	ASSERT_OK(hetmm_check(m));

	ASSERT_OK(hetmm_munmap(p, a, 4 * PG));
	assert_int_equal(try_rd(p, 0, a), -EFAULT);
	assert_int_equal(try_rd(p, 1, a + 3 * PG), -EFAULT);
	assert_int_equal(p->map_count, 1);
	ASSERT_OK(hetmm_munmap(p, b, 2 * PG));
	assert_int_equal(p->map_count, 0);
	hetmm_exit(p);
}

static void test_mmap_anon_shared(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	unsigned long a = map(p, 0, 3 * PG, RW, SA, -1, 0);
	unsigned long b;
	struct vm_area_struct v = vma_at(p, a);
	struct page *pg;

	assert_true((v.vm_flags & (VM_SHARED | VM_MAYSHARE)) ==
		    (VM_SHARED | VM_MAYSHARE));
	/* Shared anonymous memory is an unlinked tmpfs file. */
	assert_non_null(v.vm_file);
	assert_null(v.anon_vma);
	expect_zero(p, a, 3 * PG);
	fill(p, a, 3 * PG, 2);
	expect_cpu(p, 2, a, 3 * PG, 2, 0);
	pg = page_at_nonnull(p, a + PG);
	assert_false(folio_test_anon(page_folio(pg)));
	assert_ptr_equal(pg->mapping, v.vm_file->f_mapping);
	assert_int_equal(pg->index, 1);

	/* A second shared anonymous mapping is a different object. */
	b = map(p, 0, 3 * PG, RW, SA, -1, 0);
	expect_zero(p, b, 3 * PG);
	assert_ptr_not_equal(vma_at(p, b).vm_file, v.vm_file);
	ASSERT_OK(hetmm_check(m));
	ASSERT_OK(hetmm_munmap(p, a, 3 * PG));
	ASSERT_OK(hetmm_munmap(p, b, 3 * PG));
	hetmm_exit(p);
}

static void test_mmap_file_shared(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	int fd = open_file(p, "data", O_RDWR | O_CREAT, 3 * PG);
	unsigned char *buf = malloc(3 * PG);
	char s[8] = { 0 };
	unsigned long a, b;

	for (size_t i = 0; i < 3 * PG; i++)
		buf[i] = pat(3, i);
	assert_int_equal(hetmm_pwrite(p, fd, buf, 3 * PG, 0), 3 * PG);
	a = map(p, 0, 3 * PG, RW, MAP_SHARED, fd, 0);
	expect(p, a, 3 * PG, 3, 0);

	/* Stores through the mapping reach the file... */
	ASSERT_OK(hetmm_cpu_write(p, 0, a + PG + 10, "hello", 5));
	assert_int_equal(hetmm_pread(p, fd, s, 5, PG + 10), 5);
	assert_string_equal(s, "hello");
	/* ...and writes to the file reach the mapping. */
	assert_int_equal(hetmm_pwrite(p, fd, "world", 5, 2 * PG + 5), 5);
	ASSERT_OK(hetmm_cpu_read(p, 1, a + 2 * PG + 5, s, 5));
	assert_string_equal(s, "world");

	/* A second mapping at offset one page maps the same page. */
	b = map(p, 0, PG, PROT_READ, MAP_SHARED, fd, PG);
	ASSERT_OK(hetmm_cpu_read(p, 0, b + 10, s, 5));
	assert_string_equal(s, "hello");
	assert_ptr_equal(page_at_nonnull(p, b), page_at_nonnull(p, a + PG));
	assert_int_equal(page_at_nonnull(p, b)->index, 1);
	assert_int_equal(vma_at(p, b).vm_pgoff, 1);
	assert_int_equal(try_wr(p, 0, b), -EFAULT);

	/* The mapping outlives the descriptor. */
	ASSERT_OK(hetmm_close(p, fd));
	ASSERT_OK(hetmm_cpu_read(p, 0, a + PG + 10, s, 5));
	assert_string_equal(s, "hello");
	ASSERT_OK(hetmm_check(m));
	ASSERT_OK(hetmm_munmap(p, a, 3 * PG));
	ASSERT_OK(hetmm_munmap(p, b, PG));
	free(buf);
	ASSERT_OK(hetmm_unlink(p, "data"));
	hetmm_exit(p);
}

static void test_mmap_fixed_replace(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	int fd = open_file(p, "f", O_RDWR | O_CREAT, 2 * PG);
	unsigned char *buf = malloc(2 * PG);

	for (size_t i = 0; i < 2 * PG; i++)
		buf[i] = pat(7, i);
	assert_int_equal(hetmm_pwrite(p, fd, buf, 2 * PG, 0), 2 * PG);
	map(p, LOW, 8 * PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 8 * PG, 3);

	/*
	 * LOW                                   LOW+8p
	 * [a0][a1][f0][f1][a4][a5][a6][a7]   file over pages 2..3
	 */
	map(p, LOW + 2 * PG, 2 * PG, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
	assert_int_equal(p->map_count, 3);
	expect(p, LOW, 2 * PG, 3, 0);
	expect(p, LOW + 2 * PG, 2 * PG, 7, 0);
	expect(p, LOW + 4 * PG, 4 * PG, 3, 4 * PG);
	assert_int_equal(try_wr(p, 0, LOW + 2 * PG), -EFAULT);
	assert_int_equal(vma_at(p, LOW + 4 * PG).vm_pgoff,
			 (LOW + 4 * PG) >> PAGE_SHIFT);
	ASSERT_OK(hetmm_check(m));

	/* Anonymous MAP_FIXED over everything: one zeroed mapping. */
	map(p, LOW, 8 * PG, RW, PA | MAP_FIXED, -1, 0);
	assert_int_equal(p->map_count, 1);
	expect_zero(p, LOW, 8 * PG);
	/* The file was not touched by the replacement. */
	memset(buf, 0, 2 * PG);
	assert_int_equal(hetmm_pread(p, fd, buf, 2 * PG, 0), 2 * PG);
	for (size_t i = 0; i < 2 * PG; i++)
		assert_int_equal(buf[i], pat(7, i));
	free(buf);
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

static void test_mmap_fixed_noreplace(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	struct vma_snap s;

	map(p, LOW, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 4 * PG, 4);
	snap(p, &s);
	assert_int_equal(hetmm_mmap(p, LOW + 3 * PG, 2 * PG, RW,
				    PA | MAP_FIXED_NOREPLACE, -1, 0),
			 -EEXIST);
	assert_int_equal(hetmm_mmap(p, LOW - PG, 2 * PG, RW,
				    PA | MAP_FIXED_NOREPLACE, -1, 0),
			 -EEXIST);
	assert_int_equal(hetmm_mmap(p, LOW + PG, PG, PROT_READ,
				    PA | MAP_FIXED_NOREPLACE, -1, 0),
			 -EEXIST);
	assert_int_equal(hetmm_mmap(p, LOW - PG, 6 * PG, RW,
				    SA | MAP_FIXED_NOREPLACE, -1, 0),
			 -EEXIST);
	assert_layout_unchanged(p, &s);
	expect(p, LOW, 4 * PG, 4, 0);

	/* Adjacent free ranges are fine. */
	map(p, LOW + 4 * PG, PG, RW, PA | MAP_FIXED_NOREPLACE, -1, 0);
	map(p, LOW - PG, PG, RW, PA | MAP_FIXED_NOREPLACE, -1, 0);
	assert_int_equal(p->map_count, 3);
	expect(p, LOW, 4 * PG, 4, 0);
	expect_zero(p, LOW - PG, PG);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(p);
}

static void test_mmap_populate(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	int fd = open_file(p, "f", O_RDWR | O_CREAT, 3 * PG);
	uint64_t zf = stat_now(HETMM_STAT_fault_zero_fill);
	uint64_t zp, ff, wc, wr;
	unsigned long a, b, c, d;

	a = map(p, 0, 4 * PG, RW, PA | MAP_POPULATE, -1, 0);
	assert_int_equal(stat_now(HETMM_STAT_fault_zero_fill) - zf, 4);
	for (int i = 0; i < 4; i++) {
		pte_t e = get_pte(p, a + i * PG);

		assert_true(pte_present(e) && pte_write(e) && !pte_special(e));
	}
	/* Populated: the accesses take no fault. */
	zf = stat_now(HETMM_STAT_fault_zero_fill);
	zp = stat_now(HETMM_STAT_fault_zero_page);
	wc = stat_now(HETMM_STAT_fault_wp_copy);
	wr = stat_now(HETMM_STAT_fault_wp_reuse);
	fill(p, a, 4 * PG, 5);
	expect(p, a, 4 * PG, 5, 0);
	assert_int_equal(stat_now(HETMM_STAT_fault_zero_fill), zf);
	assert_int_equal(stat_now(HETMM_STAT_fault_zero_page), zp);
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy), wc);
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_reuse), wr);

	/* Read-only private: the zero page, read-only. */
	b = map(p, 0, 2 * PG, PROT_READ, PA | MAP_POPULATE, -1, 0);
	assert_int_equal(stat_now(HETMM_STAT_fault_zero_page) - zp, 2);
	assert_true(pte_special(get_pte(p, b + PG)));

	/* A file mapping maps its page-cache folios. */
	ff = stat_now(HETMM_STAT_fault_file);
	c = map(p, 0, 3 * PG, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
	assert_int_equal(stat_now(HETMM_STAT_fault_file) - ff, 3);
	assert_non_null(page_at(p, c + 2 * PG));

	/* PROT_NONE: nothing to populate, and no error. */
	d = map(p, 0, 2 * PG, PROT_NONE, PA | MAP_POPULATE, -1, 0);
	assert_true(pte_none(get_pte(p, d)));
	ASSERT_OK(hetmm_check(m));
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

/*
 * MAP_POPULATE on a shared writable mapping faults the pages in for read
 * (Linux: populate_vma_page_range() uses FOLL_WRITE only for private
 * writable mappings, "we would not want to dirty them for nothing"), so
 * the populated folios of a writeback file stay clean.
 */
static void test_mmap_populate_shared_stays_clean(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	struct hetmm_fs *fs = hetmm_machine_fs(m);
	int fd = hetmm_open_kind(p, "wb", O_RDWR | O_CREAT, 1);
	unsigned char *buf = malloc(4 * PG);
	unsigned long a;

	assert_true(fd >= 0);
	ASSERT_OK(hetmm_ftruncate(p, fd, 4 * PG));
	for (size_t i = 0; i < 4 * PG; i++)
		buf[i] = pat(6, i);
	assert_int_equal(hetmm_pwrite(p, fd, buf, 4 * PG, 0), 4 * PG);
	assert_int_equal(hetmm_fs_writeback(fs), 4);

	a = map(p, 0, 4 * PG, RW, MAP_SHARED | MAP_POPULATE, fd, 0);
	for (int i = 0; i < 4; i++) {
		struct page *pg = page_at_nonnull(p, a + i * PG);

		if (PageTestFlag(pg, PG_dirty))
			fail_msg("MAP_POPULATE dirtied file page %d", i);
		assert_false(pte_dirty(get_pte(p, a + i * PG)));
	}
	assert_int_equal(hetmm_fs_writeback(fs), 0);
	expect(p, a, 4 * PG, 6, 0);
	free(buf);
	ASSERT_OK(hetmm_unlink(p, "wb"));
	hetmm_exit(p);
}

static void test_mmap_errors(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	int rw = open_file(p, "f", O_RDWR | O_CREAT, PG);
	int ro = open_file(p, "f", O_RDONLY, 0);
	int wo = open_file(p, "f", O_WRONLY, 0);
	int closed = open_file(p, "g", O_RDWR | O_CREAT, PG);
	struct vma_snap s;

	ASSERT_OK(hetmm_close(p, closed));
	snap(p, &s);
	/* -EINVAL: length, mapping type, alignment, offset. */
	assert_int_equal(hetmm_mmap(p, 0, 0, RW, PA, -1, 0), -EINVAL);
	assert_int_equal(hetmm_mmap(p, 0, PG, RW, MAP_ANONYMOUS, -1, 0),
			 -EINVAL);
	assert_int_equal(hetmm_mmap(p, 0, PG, RW, 0, rw, 0), -EINVAL);
	assert_int_equal(hetmm_mmap(p, LOW + 1, PG, RW, PA | MAP_FIXED, -1, 0),
			 -EINVAL);
	assert_int_equal(hetmm_mmap(p, LOW + 100, PG, RW,
				    PA | MAP_FIXED_NOREPLACE, -1, 0),
			 -EINVAL);
	assert_int_equal(hetmm_mmap(p, 0, PG, RW, MAP_SHARED, rw, 100),
			 -EINVAL);
	assert_int_equal(hetmm_mmap(p, 0, PG, RW, MAP_PRIVATE, rw, PG + 1),
			 -EINVAL);
	/* -EBADF: no such descriptor. */
	assert_int_equal(hetmm_mmap(p, 0, PG, RW, MAP_SHARED, -1, 0), -EBADF);
	assert_int_equal(hetmm_mmap(p, 0, PG, RW, MAP_PRIVATE, 200, 0),
			 -EBADF);
	assert_int_equal(hetmm_mmap(p, 0, PG, PROT_READ, MAP_SHARED, closed, 0),
			 -EBADF);
	/* -EACCES: shared writable on read-only, anything on write-only. */
	assert_int_equal(hetmm_mmap(p, 0, PG, RW, MAP_SHARED, ro, 0), -EACCES);
	assert_int_equal(hetmm_mmap(p, 0, PG, PROT_WRITE, MAP_SHARED, ro, 0),
			 -EACCES);
	assert_int_equal(hetmm_mmap(p, 0, PG, PROT_READ, MAP_SHARED, wo, 0),
			 -EACCES);
	assert_int_equal(hetmm_mmap(p, 0, PG, PROT_READ, MAP_PRIVATE, wo, 0),
			 -EACCES);
	/* -EOVERFLOW: beyond the largest file offset. */
	assert_int_equal(hetmm_mmap(p, 0, PG, PROT_READ, MAP_SHARED, rw,
				    HETMM_FS_MAXBYTES),
			 -EOVERFLOW);
	/* -ENOMEM: more than the address space. */
	assert_int_equal(hetmm_mmap(p, 0, TASK_SIZE + PG, RW, PA, -1, 0),
			 -ENOMEM);
	/* Nothing was mapped by the failures. */
	assert_layout_unchanged(p, &s);
	assert_int_equal(p->map_count, 0);

	/* Allowed: read-only shared and writable private of an O_RDONLY fd. */
	map(p, 0, PG, PROT_READ, MAP_SHARED, ro, 0);
	map(p, 0, PG, RW, MAP_PRIVATE, ro, 0);
	assert_int_equal(p->map_count, 2);
	ASSERT_OK(hetmm_check(m));
	ASSERT_OK(hetmm_unlink(p, "f"));
	ASSERT_OK(hetmm_unlink(p, "g"));
	hetmm_exit(p);
}

/* ---------------------------------------------------------------- fork */

static void test_fork_shared_anon(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c, *g;
	unsigned long a = map(p, 0, 3 * PG, RW, SA, -1, 0);
	uint64_t copies;

	fill(p, a, 3 * PG, 1);
	copies = stat_now(HETMM_STAT_fault_wp_copy) +
		 stat_now(HETMM_STAT_fault_file_cow);
	c = do_fork(p);
	expect(c, a, 3 * PG, 1, 0);
	/* Both directions. */
	wr8(c, 1, a + PG + 1, 'c');
	assert_int_equal(rd8(p, 0, a + PG + 1), 'c');
	wr8(p, 0, a + 2 * PG, 'p');
	assert_int_equal(rd8(c, 1, a + 2 * PG), 'p');
	assert_ptr_equal(page_at_nonnull(p, a), page_at_nonnull(c, a));

	/* A grandchild shares the same memory. */
	g = do_fork(c);
	wr8(g, 2, a, 'g');
	assert_int_equal(rd8(p, 0, a), 'g');
	assert_int_equal(rd8(c, 0, a), 'g');
	/* Nothing was ever copied. */
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy) +
				 stat_now(HETMM_STAT_fault_file_cow),
			 copies);
	ASSERT_OK(hetmm_check(m));

	/* The memory outlives its creator. */
	hetmm_exit(p);
	wr8(c, 0, a + 3, 'x');
	assert_int_equal(rd8(g, 1, a + 3), 'x');
	expect(g, a + PG + 2, PG - 2, 1, PG + 2);
	hetmm_exit(c);
	hetmm_exit(g);
}

static void test_fork_private_cow(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c, *g;
	unsigned long a = map(p, 0, 4 * PG, RW, PA, -1, 0);
	struct page *orig[4];
	uint64_t forks, wc, wr;

	/* Fill from CPU 0, then leave write TLB entries on CPU 1 too. */
	fill(p, a, 4 * PG, 1);
	fill_cpu(p, 1, a, 4 * PG, 1);
	for (int i = 0; i < 4; i++)
		orig[i] = page_at_nonnull(p, a + i * PG);
	forks = stat_now(HETMM_STAT_fork);
	c = do_fork(p);
	assert_int_equal(stat_now(HETMM_STAT_fork) - forks, 1);
	expect(c, a, 4 * PG, 1, 0);
	for (int i = 0; i < 4; i++) {
		pte_t e = get_pte(p, a + i * PG);

		/* Shared now: read-only in both, not exclusive, two maps. */
		assert_false(pte_write(e));
		assert_false(pte_write(get_pte(c, a + i * PG)));
		assert_ptr_equal(page_at(c, a + i * PG), orig[i]);
		assert_false(PageAnonExclusive(orig[i]));
		assert_int_equal(page_mapcount(orig[i]), 2);
		assert_int_equal(page_ref_count(orig[i]), 2);
	}
	ASSERT_OK(hetmm_check(m));

	/* Child writes page 0: it gets a copy, the parent keeps its byte. */
	wc = stat_now(HETMM_STAT_fault_wp_copy);
	wr8(c, 0, a + 5, 'C');
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy) - wc, 1);
	assert_int_equal(rd8(p, 0, a + 5), pat(1, 5));
	assert_int_equal(rd8(p, 1, a + 5), pat(1, 5));
	assert_ptr_not_equal(page_at(c, a), orig[0]);
	assert_ptr_equal(page_at(p, a), orig[0]);

	/* Parent writes page 1 on CPU 1 (its pre-fork write entry is gone). */
	wr8(p, 1, a + PG + 5, 'P');
	assert_int_equal(rd8(c, 1, a + PG + 5), pat(1, PG + 5));
	assert_int_equal(rd8(c, 0, a + PG + 5), pat(1, PG + 5));
	assert_ptr_equal(page_at(c, a + PG), orig[1]);

	/* The last mapper of a page reuses it in place. */
	wr = stat_now(HETMM_STAT_fault_wp_reuse);
	wr8(p, 0, a + 6, 'p');
	wr8(c, 0, a + PG + 6, 'c');
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_reuse) - wr, 2);
	assert_ptr_equal(page_at(p, a), orig[0]);
	assert_ptr_equal(page_at(c, a + PG), orig[1]);
	assert_true(PageAnonExclusive(orig[0]));
	/* Pages 2 and 3 are still shared. */
	assert_ptr_equal(page_at(p, a + 2 * PG), page_at(c, a + 2 * PG));

	/* A grandchild sees the child's view and is isolated as well. */
	g = do_fork(c);
	assert_int_equal(rd8(g, 0, a + 5), 'C');
	assert_int_equal(rd8(g, 0, a + PG + 5), pat(1, PG + 5));
	wr8(g, 2, a + 2 * PG, 'G');
	assert_int_equal(rd8(c, 0, a + 2 * PG), pat(1, 2 * PG));
	assert_int_equal(rd8(p, 0, a + 2 * PG), pat(1, 2 * PG));
	wr8(p, 1, a + 3 * PG, 'Q');
	assert_int_equal(rd8(c, 1, a + 3 * PG), pat(1, 3 * PG));
	assert_int_equal(rd8(g, 1, a + 3 * PG), pat(1, 3 * PG));
	expect(c, a + 2 * PG, 2 * PG, 1, 2 * PG);
	ASSERT_OK(hetmm_check(m));

	/* The child's exit leaves the others intact. */
	hetmm_exit(c);
	assert_int_equal(rd8(g, 0, a + 5), 'C');
	assert_int_equal(rd8(p, 0, a + 5), pat(1, 5));
	assert_int_equal(rd8(p, 0, a + 6), 'p');
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(g);
	hetmm_exit(p);
}

static void test_fork_dontfork(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c, *c2;
	unsigned long a = map(p, 0, 3 * PG, RW, PA, -1, 0);

	fill(p, a, 3 * PG, 2);
	ASSERT_OK(hetmm_madvise(p, a + PG, PG, MADV_DONTFORK));
	assert_int_equal(p->map_count, 3);
	assert_true(vma_at(p, a + PG).vm_flags & VM_DONTCOPY);
	assert_false(vma_at(p, a).vm_flags & VM_DONTCOPY);

	c = do_fork(p);
	assert_int_equal(c->map_count, 2);
	assert_false(has_vma(c, a + PG));
	assert_int_equal(try_rd(c, 0, a + PG), -EFAULT);
	assert_int_equal(try_wr(c, 0, a + PG), -EFAULT);
	expect(c, a, PG, 2, 0);
	expect(c, a + 2 * PG, PG, 2, 2 * PG);
	/* The parent keeps the range. */
	expect(p, a, 3 * PG, 2, 0);
	/* The parent's DONTFORK page was not write-protected by fork. */
	assert_true(pte_write(get_pte(p, a + PG)));

	ASSERT_OK(hetmm_madvise(p, a + PG, PG, MADV_DOFORK));
	assert_false(vma_at(p, a + PG).vm_flags & VM_DONTCOPY);
	c2 = do_fork(p);
	expect(c2, a, 3 * PG, 2, 0);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(c2);
	hetmm_exit(c);
	hetmm_exit(p);
}

/* --------------------------------------------------------- file mappings */

static void test_file_shared_two_processes(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p1 = proc_new(m), *p2 = proc_new(m), *c;
	int fd1 = open_file(p1, "shared", O_RDWR | O_CREAT, 2 * PG);
	int fd2 = open_file(p2, "shared", O_RDWR, 0);
	unsigned long a1 = map(p1, 0, 2 * PG, RW, MAP_SHARED, fd1, 0);
	unsigned long a2 = map(p2, LOW, 2 * PG, RW, MAP_SHARED | MAP_FIXED,
			       fd2, 0);
	char s[8] = { 0 };
	struct page *pg;

	ASSERT_OK(hetmm_cpu_write(p1, 0, a1 + 100, "one", 3));
	ASSERT_OK(hetmm_cpu_read(p2, 1, a2 + 100, s, 3));
	assert_string_equal(s, "one");
	memset(s, 0, sizeof(s));
	assert_int_equal(hetmm_pread(p2, fd2, s, 3, 100), 3);
	assert_string_equal(s, "one");

	ASSERT_OK(hetmm_cpu_write(p2, 1, a2 + PG, "two", 3));
	ASSERT_OK(hetmm_cpu_read(p1, 0, a1 + PG, s, 3));
	assert_string_equal(s, "two");
	assert_int_equal(hetmm_pread(p1, fd1, s, 3, PG), 3);
	assert_string_equal(s, "two");

	assert_int_equal(hetmm_pwrite(p1, fd1, "three", 5, PG + 50), 5);
	ASSERT_OK(hetmm_cpu_read(p1, 2, a1 + PG + 50, s, 5));
	assert_string_equal(s, "three");
	ASSERT_OK(hetmm_cpu_read(p2, 3, a2 + PG + 50, s, 5));
	assert_string_equal(s, "three");

	/* One page-cache folio, mapped by both processes. */
	pg = page_at_nonnull(p1, a1);
	assert_ptr_equal(pg, page_at_nonnull(p2, a2));
	assert_int_equal(rmap_count_ptes(page_folio(pg)), 2);
	assert_int_equal(page_mapcount(pg), 2);

	/* A child of p1 shares the file pages too. */
	c = do_fork(p1);
	memset(s, 0, sizeof(s));
	ASSERT_OK(hetmm_cpu_read(c, 0, a1 + 100, s, 3));
	assert_string_equal(s, "one");
	ASSERT_OK(hetmm_cpu_write(c, 0, a1 + 200, "four", 4));
	ASSERT_OK(hetmm_cpu_read(p2, 0, a2 + 200, s, 4));
	assert_string_equal(s, "four");
	assert_int_equal(rmap_count_ptes(page_folio(pg)), 3);
	/* The child inherited p1's descriptor; closing it is the child's. */
	memset(s, 0, sizeof(s));
	assert_int_equal(hetmm_pread(c, fd1, s, 4, 200), 4);
	assert_string_equal(s, "four");
	ASSERT_OK(hetmm_close(c, fd1));
	assert_int_equal(hetmm_pread(c, fd1, s, 4, 200), -EBADF);
	assert_int_equal(hetmm_pread(p1, fd1, s, 4, 200), 4);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(c);
	hetmm_exit(p1);
	/* p1's exit closed its fd; the file and p2's mapping live on. */
	ASSERT_OK(hetmm_cpu_read(p2, 0, a2 + 200, s, 4));
	assert_string_equal(s, "four");
	ASSERT_OK(hetmm_unlink(p2, "shared"));
	hetmm_exit(p2);
}

/*
 * Splitting and moving a file mapping keeps each piece on the right file
 * offset, and truncation still finds every piece (i_mmap).
 */
static void test_file_mapping_split_move(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	int fd = open_file(p, "f", O_RDWR | O_CREAT, 6 * PG);
	unsigned char *buf = malloc(6 * PG);
	long r;

	for (size_t i = 0; i < 6 * PG; i++)
		buf[i] = pat(11, i);
	assert_int_equal(hetmm_pwrite(p, fd, buf, 6 * PG, 0), 6 * PG);
	/* File pages 1..5 at LOW..LOW+5p. */
	map(p, LOW, 5 * PG, RW, MAP_SHARED | MAP_FIXED, fd, PG);
	expect(p, LOW, 5 * PG, 11, PG);
	ASSERT_OK(hetmm_mprotect(p, LOW + PG, PG, PROT_READ));
	ASSERT_OK(hetmm_munmap(p, LOW + 3 * PG, PG));
	assert_int_equal(p->map_count, 4);
	assert_int_equal(vma_at(p, LOW + PG).vm_pgoff, 2);
	assert_int_equal(vma_at(p, LOW + 2 * PG).vm_pgoff, 3);
	assert_int_equal(vma_at(p, LOW + 4 * PG).vm_pgoff, 5);
	expect(p, LOW, 3 * PG, 11, PG);
	expect(p, LOW + 4 * PG, PG, 11, 5 * PG);
	check_ok(m);

	/* Move the last piece (file page 5) far away. */
	r = hetmm_mremap(p, LOW + 4 * PG, PG, PG,
			 MREMAP_MAYMOVE | MREMAP_FIXED, LOW + 64 * PG);
	assert_int_equal(r, LOW + 64 * PG);
	expect(p, r, PG, 11, 5 * PG);
	wr8(p, 1, r + 1, 'm');
	assert_int_equal(hetmm_pread(p, fd, buf, 1, 5 * PG + 1), 1);
	assert_int_equal(buf[0], 'm');
	check_ok(m);

	/* Truncate to 3 pages: pieces mapping pages >= 3 lose them. */
	ASSERT_OK(hetmm_ftruncate(p, fd, 3 * PG));
	expect(p, LOW, 2 * PG, 11, PG);
	assert_int_equal(try_rd(p, 0, LOW + 2 * PG), -EFAULT);
	assert_int_equal(try_rd(p, 1, r), -EFAULT);
	check_ok(m);
	free(buf);
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

static void test_file_private_cow(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c;
	int fd = open_file(p, "f", O_RDWR | O_CREAT, 2 * PG);
	int ro = open_file(p, "f", O_RDONLY, 0);
	char s[8] = { 0 };
	unsigned long a, b, r;
	struct page *cached, *pg;
	uint64_t fc;

	assert_int_equal(hetmm_pwrite(p, fd, "AAAA", 4, 0), 4);
	assert_int_equal(hetmm_pwrite(p, fd, "BBBB", 4, PG), 4);
	a = map(p, 0, 2 * PG, RW, MAP_PRIVATE, fd, 0);
	ASSERT_OK(hetmm_cpu_read(p, 0, a, s, 4));
	assert_string_equal(s, "AAAA");
	/* Before any write it maps the page-cache folio, read-only. */
	cached = page_at_nonnull(p, a);
	assert_false(folio_test_anon(page_folio(cached)));
	assert_false(pte_write(get_pte(p, a)));

	/* File writes show through until the page is copied. */
	assert_int_equal(hetmm_pwrite(p, fd, "CCCC", 4, 0), 4);
	ASSERT_OK(hetmm_cpu_read(p, 1, a, s, 4));
	assert_string_equal(s, "CCCC");

	/* A write copies: the file does not see it. */
	ASSERT_OK(hetmm_cpu_write(p, 0, a, "xx", 2));
	ASSERT_OK(hetmm_cpu_read(p, 1, a, s, 4));
	assert_string_equal(s, "xxCC");
	assert_int_equal(hetmm_pread(p, fd, s, 4, 0), 4);
	assert_string_equal(s, "CCCC");
	pg = page_at_nonnull(p, a);
	assert_ptr_not_equal(pg, cached);
	assert_true(folio_test_anon(page_folio(pg)));
	assert_true(PageAnonExclusive(pg));

	/* After the copy, file writes no longer show in that page... */
	assert_int_equal(hetmm_pwrite(p, fd, "DDDD", 4, 0), 4);
	ASSERT_OK(hetmm_cpu_read(p, 0, a, s, 4));
	assert_string_equal(s, "xxCC");
	/* ...but do in the page that was never written. */
	assert_int_equal(hetmm_pwrite(p, fd, "EEEE", 4, PG), 4);
	ASSERT_OK(hetmm_cpu_read(p, 0, a + PG, s, 4));
	assert_string_equal(s, "EEEE");

	/* A first access that writes copies straight away. */
	b = map(p, 0, PG, RW, MAP_PRIVATE, fd, PG);
	fc = stat_now(HETMM_STAT_fault_file_cow);
	ASSERT_OK(hetmm_cpu_write(p, 2, b + 1, "zz", 2));
	assert_int_equal(stat_now(HETMM_STAT_fault_file_cow) - fc, 1);
	ASSERT_OK(hetmm_cpu_read(p, 2, b, s, 4));
	assert_string_equal(s, "EzzE");
	assert_int_equal(hetmm_pread(p, fd, s, 4, PG), 4);
	assert_string_equal(s, "EEEE");

	/* Private writable mapping of a read-only descriptor. */
	r = map(p, 0, PG, RW, MAP_PRIVATE, ro, 0);
	ASSERT_OK(hetmm_cpu_write(p, 0, r, "rr", 2));
	assert_int_equal(hetmm_pread(p, fd, s, 4, 0), 4);
	assert_string_equal(s, "DDDD");

	/* Fork: the copied page is COW between the processes. */
	c = do_fork(p);
	ASSERT_OK(hetmm_cpu_write(c, 0, a, "cc", 2));
	ASSERT_OK(hetmm_cpu_read(p, 0, a, s, 4));
	assert_string_equal(s, "xxCC");
	ASSERT_OK(hetmm_cpu_read(c, 0, a, s, 4));
	assert_string_equal(s, "ccCC");
	assert_int_equal(hetmm_pread(p, fd, s, 4, 0), 4);
	assert_string_equal(s, "DDDD");
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(c);
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

static void test_file_truncate_sigbus(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	int fd = open_file(p, "f", O_RDWR | O_CREAT, 4 * PG);
	unsigned char *buf = malloc(4 * PG);
	unsigned long a, b;
	uint64_t sb;

	for (size_t i = 0; i < 4 * PG; i++)
		buf[i] = pat(8, i);
	assert_int_equal(hetmm_pwrite(p, fd, buf, 4 * PG, 0), 4 * PG);
	a = map(p, 0, 4 * PG, RW, MAP_SHARED, fd, 0);
	b = map(p, 0, 4 * PG, RW, MAP_PRIVATE, fd, 0);
	/* TLB entries on CPUs 0 and 1; private COW copies of pages 0, 3. */
	expect_cpu(p, 0, a, 4 * PG, 8, 0);
	expect_cpu(p, 1, a, 4 * PG, 8, 0);
	wr8(p, 0, b, 'b');
	wr8(p, 0, b + 3 * PG, 'B');

	sb = stat_now(HETMM_STAT_fault_sigbus);
	ASSERT_OK(hetmm_ftruncate(p, fd, PG + 100));
	/* Below EOF: still there; the tail of the last page reads zero. */
	expect(p, a, PG + 100, 8, 0);
	assert_int_equal(rd8(p, 1, a + PG + 200), 0);
	/* Beyond EOF: SIGBUS (-EFAULT), through stale TLB entries too. */
	assert_int_equal(try_rd(p, 0, a + 2 * PG), -EFAULT);
	assert_int_equal(try_rd(p, 1, a + 3 * PG), -EFAULT);
	assert_int_equal(try_wr(p, 0, a + 2 * PG), -EFAULT);
	assert_int_equal(stat_now(HETMM_STAT_fault_sigbus) - sb, 3);
	/* Truncation removes private COW copies beyond EOF as well. */
	assert_int_equal(try_rd(p, 0, b + 3 * PG), -EFAULT);
	assert_int_equal(stat_now(HETMM_STAT_fault_sigbus) - sb, 4);
	/* The private copy below EOF stays private. */
	assert_int_equal(rd8(p, 0, b), 'b');
	/* The mapping itself is untouched. */
	assert_int_equal(vma_at(p, a).vm_end, a + 4 * PG);
	ASSERT_OK(hetmm_check(m));

	/* Growing the file again: holes read as zero. */
	ASSERT_OK(hetmm_ftruncate(p, fd, 4 * PG));
	expect_zero(p, a + 2 * PG, 2 * PG);
	expect_zero(p, a + PG + 100, PG - 100);
	wr8(p, 0, a + 3 * PG, 'z');
	assert_int_equal(hetmm_pread(p, fd, buf, 1, 3 * PG), 1);
	assert_int_equal(buf[0], 'z');
	ASSERT_OK(hetmm_check(m));
	free(buf);
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

static void test_file_writeback_redirty(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	struct hetmm_fs *fs = hetmm_machine_fs(m);
	int fd = hetmm_open_kind(p, "wb", O_RDWR | O_CREAT, 1);
	int tfd = open_file(p, "tmp", O_RDWR | O_CREAT, PG);
	char s[4] = { 0 };
	unsigned long a, t;
	struct page *pg;
	uint64_t reuse;
	pte_t e;

	assert_true(fd >= 0);
	ASSERT_OK(hetmm_ftruncate(p, fd, 2 * PG));
	a = map(p, 0, 2 * PG, RW, MAP_SHARED, fd, 0);
	wr8(p, 0, a, 'x');
	pg = page_at_nonnull(p, a);
	assert_true(PageTestFlag(pg, PG_dirty));
	e = get_pte(p, a);
	assert_true(pte_write(e) && pte_dirty(e));

	assert_int_equal(hetmm_fs_writeback(fs), 1);
	assert_false(PageTestFlag(pg, PG_dirty));
	e = get_pte(p, a);
	assert_false(pte_write(e));
	assert_false(pte_dirty(e));
	/* Reads do not dirty. */
	assert_int_equal(rd8(p, 0, a), 'x');
	assert_false(PageTestFlag(pg, PG_dirty));

	/* A write through the mapping (same CPU as before) re-dirties. */
	reuse = stat_now(HETMM_STAT_fault_wp_reuse);
	wr8(p, 0, a + 1, 'y');
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_reuse) - reuse, 1);
	assert_true(PageTestFlag(pg, PG_dirty));
	assert_ptr_equal(page_at(p, a), pg);
	e = get_pte(p, a);
	assert_true(pte_write(e) && pte_dirty(e));
	assert_int_equal(hetmm_pread(p, fd, s, 2, 0), 2);
	assert_memory_equal(s, "xy", 2);
	assert_int_equal(hetmm_fs_writeback(fs), 1);
	assert_int_equal(hetmm_fs_writeback(fs), 0);

	/* tmpfs files have no writeback. */
	t = map(p, 0, PG, RW, MAP_SHARED, tfd, 0);
	wr8(p, 0, t, 't');
	assert_int_equal(hetmm_fs_writeback(fs), 0);
	ASSERT_OK(hetmm_check(m));
	ASSERT_OK(hetmm_unlink(p, "wb"));
	ASSERT_OK(hetmm_unlink(p, "tmp"));
	hetmm_exit(p);
}

/* ------------------------------------------------------------ mprotect */

static void test_mprotect_basic(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	unsigned long a = map(p, 0, 4 * PG, RW, PA, -1, 0);

	fill(p, a, 4 * PG, 2);
	fill_cpu(p, 2, a, 4 * PG, 2);        /* write entries on CPU 2 */
	expect_cpu(p, 1, a, 4 * PG, 2, 0);   /* read entries on CPU 1 */

	ASSERT_OK(hetmm_mprotect(p, a, 4 * PG, PROT_READ));
	assert_false(vma_at(p, a).vm_flags & VM_WRITE);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(try_wr(p, 0, a + i * PG), -EFAULT);
		assert_int_equal(try_wr(p, 2, a + i * PG), -EFAULT);
		assert_false(pte_write(get_pte(p, a + i * PG)));
	}
	expect_cpu(p, 1, a, 4 * PG, 2, 0);
	expect_cpu(p, 2, a, 4 * PG, 2, 0);

	ASSERT_OK(hetmm_mprotect(p, a, 4 * PG, PROT_NONE));
	assert_int_equal(try_rd(p, 1, a), -EFAULT);
	assert_int_equal(try_rd(p, 2, a + 3 * PG), -EFAULT);
	assert_int_equal(try_wr(p, 0, a), -EFAULT);
	assert_true(pte_protnone(get_pte(p, a)));
	ASSERT_OK(hetmm_check(m));

	ASSERT_OK(hetmm_mprotect(p, a, 4 * PG, RW));
	expect_cpu(p, 1, a, 4 * PG, 2, 0);
	/* Exclusive pages get their write permission back directly. */
	assert_true(pte_write(get_pte(p, a)));
	fill_cpu(p, 2, a, 4 * PG, 3);
	expect_cpu(p, 0, a, 4 * PG, 3, 0);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(p);
}

static void test_mprotect_split(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	struct vm_area_struct v;

	map(p, LOW, 8 * PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 8 * PG, 4);
	/*
	 * [0 1][2 3][4 5 6 7]  pages 2..3 read-only
	 */
	ASSERT_OK(hetmm_mprotect(p, LOW + 2 * PG, 2 * PG, PROT_READ));
	assert_int_equal(p->map_count, 3);
	v = vma_at(p, LOW);
	assert_int_equal(v.vm_end, LOW + 2 * PG);
	assert_true(v.vm_flags & VM_WRITE);
	v = vma_at(p, LOW + 2 * PG);
	assert_int_equal(v.vm_start, LOW + 2 * PG);
	assert_int_equal(v.vm_end, LOW + 4 * PG);
	assert_false(v.vm_flags & VM_WRITE);
	assert_true(v.vm_flags & VM_READ);
	/* Anonymous page indices stay linear across the split. */
	assert_int_equal(v.vm_pgoff, (LOW + 2 * PG) >> PAGE_SHIFT);
	v = vma_at(p, LOW + 4 * PG);
	assert_int_equal(v.vm_start, LOW + 4 * PG);
	assert_int_equal(v.vm_end, LOW + 8 * PG);
	assert_true(v.vm_flags & VM_WRITE);
	assert_int_equal(v.vm_pgoff, (LOW + 4 * PG) >> PAGE_SHIFT);
	wr8(p, 0, LOW + PG, pat(4, PG));
	assert_int_equal(try_wr(p, 0, LOW + 2 * PG), -EFAULT);
	assert_int_equal(try_wr(p, 0, LOW + 3 * PG + 5), -EFAULT);
	wr8(p, 0, LOW + 4 * PG, pat(4, 4 * PG));

	/* [0 1][2 3][4 5][6][7]  page 6 inaccessible */
	ASSERT_OK(hetmm_mprotect(p, LOW + 6 * PG, PG, PROT_NONE));
	assert_int_equal(p->map_count, 5);
	assert_int_equal(try_rd(p, 0, LOW + 6 * PG), -EFAULT);
	assert_int_equal(rd8(p, 0, LOW + 7 * PG + 1), pat(4, 7 * PG + 1));
	ASSERT_OK(hetmm_check(m));

	/* One call over several VMAs restores everything. */
	ASSERT_OK(hetmm_mprotect(p, LOW, 8 * PG, RW));
	expect(p, LOW + 2 * PG, 6 * PG, 4, 2 * PG);
	fill(p, LOW, 8 * PG, 5);
	expect(p, LOW, 8 * PG, 5, 0);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(p);
}

static void test_mprotect_errors(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	int ro = open_file(p, "f", O_RDWR | O_CREAT, 2 * PG);
	struct vma_snap s;
	unsigned long f;

	ASSERT_OK(hetmm_close(p, ro));
	ro = open_file(p, "f", O_RDONLY, 0);
	/* [LOW, +4p) anon, hole [+4p, +6p), [+6p, +8p) anon */
	map(p, LOW, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
	map(p, LOW + 6 * PG, 2 * PG, RW, PA | MAP_FIXED, -1, 0);
	/* [+16p, +17p) anon next to [+17p, +18p) shared read-only file */
	map(p, LOW + 16 * PG, PG, RW, PA | MAP_FIXED, -1, 0);
	map(p, LOW + 17 * PG, PG, PROT_READ, MAP_SHARED | MAP_FIXED, ro, 0);
	fill(p, LOW, 4 * PG, 6);
	fill(p, LOW + 6 * PG, 2 * PG, 7);
	snap(p, &s);

	assert_int_equal(hetmm_mprotect(p, LOW + 1, PG, PROT_READ), -EINVAL);
	assert_int_equal(hetmm_mprotect(p, LOW, PG, 0x100), -EINVAL);
	/* A hole: -ENOMEM, and nothing changed (no split, still writable). */
	assert_int_equal(hetmm_mprotect(p, LOW + 2 * PG, 6 * PG, PROT_READ),
			 -ENOMEM);
	assert_int_equal(hetmm_mprotect(p, LOW + 4 * PG, PG, PROT_READ),
			 -ENOMEM);
	assert_int_equal(hetmm_mprotect(p, LOW + 7 * PG, 2 * PG, PROT_NONE),
			 -ENOMEM);
	/* -EACCES: PROT_WRITE on a shared mapping of an O_RDONLY file. */
	assert_int_equal(hetmm_mprotect(p, LOW + 17 * PG, PG, RW), -EACCES);
	assert_int_equal(hetmm_mprotect(p, LOW + 16 * PG, 2 * PG, RW), -EACCES);
	/* Zero length is a no-op. */
	ASSERT_OK(hetmm_mprotect(p, LOW, 0, PROT_NONE));
	assert_layout_unchanged(p, &s);
	wr8(p, 0, LOW + 3 * PG, pat(6, 3 * PG));
	wr8(p, 0, LOW + 6 * PG, pat(7, 0));
	wr8(p, 0, LOW + 16 * PG, 1);
	expect(p, LOW, 4 * PG, 6, 0);
	expect(p, LOW + 6 * PG, 2 * PG, 7, 0);
	assert_int_equal(try_wr(p, 0, LOW + 17 * PG), -EFAULT);

	/* Allowed: read-only stays, and a private map may become writable. */
	ASSERT_OK(hetmm_mprotect(p, LOW + 17 * PG, PG, PROT_READ));
	f = map(p, 0, PG, PROT_READ, MAP_PRIVATE, ro, 0);
	ASSERT_OK(hetmm_mprotect(p, f, PG, RW));
	wr8(p, 0, f, 'w');
	ASSERT_OK(hetmm_check(m));
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

/* ------------------------------------------------------------- madvise */

static void test_madv_dontneed_anon(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c;
	unsigned long a = map(p, 0, 4 * PG, RW, PA, -1, 0);
	long used;

	fill(p, a, 4 * PG, 3);
	expect_cpu(p, 1, a, 4 * PG, 3, 0);
	used = settled_pages(m);
	ASSERT_OK(hetmm_madvise(p, a + PG, 2 * PG, MADV_DONTNEED));
	assert_true(pte_none(get_pte(p, a + PG)));
	assert_true(pte_none(get_pte(p, a + 2 * PG)));
	assert_int_equal(settled_pages(m), used - 2);
	assert_int_equal(p->map_count, 1);
	/* Zero-filled on the next touch, from any CPU. */
	expect_zero(p, a + PG, 2 * PG);
	assert_int_equal(rd8(p, 1, a + PG + 7), 0);
	expect(p, a, PG, 3, 0);
	expect(p, a + 3 * PG, PG, 3, 3 * PG);
	ASSERT_OK(hetmm_madvise(p, a, 0, MADV_DONTNEED));
	expect(p, a, PG, 3, 0);

	/* After fork: the parent drops its view, the child keeps the data. */
	c = do_fork(p);
	ASSERT_OK(hetmm_madvise(p, a, 4 * PG, MADV_DONTNEED));
	expect_zero(p, a, 4 * PG);
	expect(c, a, PG, 3, 0);
	expect(c, a + 3 * PG, PG, 3, 3 * PG);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(c);
	hetmm_exit(p);
}

static void test_madv_dontneed_file(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	int fd = open_file(p, "f", O_RDWR | O_CREAT, 2 * PG);
	unsigned long a = map(p, 0, 2 * PG, RW, MAP_SHARED, fd, 0);
	unsigned long b = map(p, 0, 2 * PG, RW, MAP_PRIVATE, fd, 0);
	char s[8] = { 0 };
	uint64_t ff;

	ASSERT_OK(hetmm_cpu_write(p, 0, a + 10, "dirty", 5));
	ASSERT_OK(hetmm_madvise(p, a, 2 * PG, MADV_DONTNEED));
	assert_true(pte_none(get_pte(p, a)));
	/* Shared file pages come back from the page cache. */
	ff = stat_now(HETMM_STAT_fault_file);
	ASSERT_OK(hetmm_cpu_read(p, 1, a + 10, s, 5));
	assert_string_equal(s, "dirty");
	assert_int_equal(stat_now(HETMM_STAT_fault_file) - ff, 1);

	/* A private COW copy is discarded: the file shows through again. */
	ASSERT_OK(hetmm_cpu_write(p, 0, b + 10, "priv!", 5));
	ASSERT_OK(hetmm_cpu_read(p, 0, b + 10, s, 5));
	assert_string_equal(s, "priv!");
	ASSERT_OK(hetmm_madvise(p, b, PG, MADV_DONTNEED));
	ASSERT_OK(hetmm_cpu_read(p, 0, b + 10, s, 5));
	assert_string_equal(s, "dirty");
	assert_int_equal(hetmm_pread(p, fd, s, 5, 10), 5);
	assert_string_equal(s, "dirty");

	/* Shared anonymous memory keeps its contents too (it is tmpfs). */
	{
		unsigned long sh = map(p, 0, 2 * PG, RW, SA, -1, 0);

		fill(p, sh, 2 * PG, 12);
		ASSERT_OK(hetmm_madvise(p, sh, 2 * PG, MADV_DONTNEED));
		assert_true(pte_none(get_pte(p, sh)));
		expect(p, sh, 2 * PG, 12, 0);
	}
	ASSERT_OK(hetmm_check(m));
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

static void test_madv_populate(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c;
	int fd = open_file(p, "f", O_RDWR | O_CREAT, 2 * PG);
	unsigned long a = map(p, 0, 4 * PG, RW, PA, -1, 0);
	unsigned long b = map(p, 0, 4 * PG, RW, PA, -1, 0);
	unsigned long f = map(p, 0, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
	uint64_t zp, zf, wc, wr, ff;

	zp = stat_now(HETMM_STAT_fault_zero_page);
	ASSERT_OK(hetmm_madvise(p, a, 4 * PG, MADV_POPULATE_READ));
	assert_int_equal(stat_now(HETMM_STAT_fault_zero_page) - zp, 4);
	for (int i = 0; i < 4; i++)
		assert_true(pte_special(get_pte(p, a + i * PG)));
	/* Already populated for read: no more faults. */
	zp = stat_now(HETMM_STAT_fault_zero_page);
	ASSERT_OK(hetmm_madvise(p, a, 4 * PG, MADV_POPULATE_READ));
	assert_int_equal(stat_now(HETMM_STAT_fault_zero_page), zp);

	/* Populate-write replaces the zero pages with private pages. */
	wc = stat_now(HETMM_STAT_fault_wp_copy);
	ASSERT_OK(hetmm_madvise(p, a, 4 * PG, MADV_POPULATE_WRITE));
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy) - wc, 4);
	for (int i = 0; i < 4; i++) {
		pte_t e = get_pte(p, a + i * PG);

		assert_true(pte_write(e) && !pte_special(e));
	}
	zf = stat_now(HETMM_STAT_fault_zero_fill);
	ASSERT_OK(hetmm_madvise(p, b, 4 * PG, MADV_POPULATE_WRITE));
	assert_int_equal(stat_now(HETMM_STAT_fault_zero_fill) - zf, 4);

	/* Writes to populated memory fault no more. */
	zf = stat_now(HETMM_STAT_fault_zero_fill);
	zp = stat_now(HETMM_STAT_fault_zero_page);
	wc = stat_now(HETMM_STAT_fault_wp_copy);
	wr = stat_now(HETMM_STAT_fault_wp_reuse);
	fill(p, b, 4 * PG, 9);
	fill(p, a, 4 * PG, 8);
	assert_int_equal(stat_now(HETMM_STAT_fault_zero_fill), zf);
	assert_int_equal(stat_now(HETMM_STAT_fault_zero_page), zp);
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy), wc);
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_reuse), wr);

	/* File pages. */
	ff = stat_now(HETMM_STAT_fault_file);
	ASSERT_OK(hetmm_madvise(p, f, 2 * PG, MADV_POPULATE_READ));
	assert_int_equal(stat_now(HETMM_STAT_fault_file) - ff, 2);

	/* In a fork child, populate-write breaks COW like a write. */
	c = do_fork(p);
	wc = stat_now(HETMM_STAT_fault_wp_copy);
	ASSERT_OK(hetmm_madvise(c, b, 4 * PG, MADV_POPULATE_WRITE));
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy) - wc, 4);
	assert_ptr_not_equal(page_at(c, b), page_at(p, b));
	expect(c, b, 4 * PG, 9, 0);
	fill(c, b, 4 * PG, 10);
	expect(p, b, 4 * PG, 9, 0);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(c);
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

/*
 * MADV_POPULATE_* on a VMA without the needed permission: Linux returns
 * -EINVAL (madvise(2); tools/testing/selftests/mm/madv_populate.c
 * test_prot_read expects EINVAL for MADV_POPULATE_WRITE on PROT_READ).
 * hetmm's uapi.h documents -EFAULT instead.
 */
static void test_madv_populate_no_permission(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	unsigned long ro = map(p, 0, 2 * PG, PROT_READ, PA, -1, 0);
	unsigned long none = map(p, 0, 2 * PG, PROT_NONE, PA, -1, 0);

	ASSERT_OK(hetmm_madvise(p, ro, 2 * PG, MADV_POPULATE_READ));
	/* Nothing is populated by a refused call. */
	assert_int_equal(hetmm_madvise(p, none, 2 * PG, MADV_POPULATE_READ),
			 -EINVAL);
	assert_true(pte_none(get_pte(p, none)));
	assert_int_equal(hetmm_madvise(p, ro, 2 * PG, MADV_POPULATE_WRITE),
			 -EINVAL);
	assert_true(pte_special(get_pte(p, ro)));
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(p);
}

static void test_madv_errors(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	int fd = open_file(p, "f", O_RDWR | O_CREAT, PG);
	struct vma_snap s;
	unsigned long f;

	map(p, LOW, 2 * PG, RW, PA | MAP_FIXED, -1, 0);
	map(p, LOW + 3 * PG, PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 2 * PG, 1);
	fill(p, LOW + 3 * PG, PG, 2);
	snap(p, &s);
	assert_int_equal(hetmm_madvise(p, LOW + 1, PG, MADV_DONTNEED), -EINVAL);
	assert_int_equal(hetmm_madvise(p, LOW, PG, 12345), -EINVAL);
	assert_int_equal(hetmm_madvise(p, LOW, PG, -1), -EINVAL);
	/* A hole: -ENOMEM (and, as hetmm documents, nothing applied). */
	assert_int_equal(hetmm_madvise(p, LOW, 4 * PG, MADV_DONTNEED), -ENOMEM);
	assert_int_equal(hetmm_madvise(p, LOW + 2 * PG, PG, MADV_POPULATE_READ),
			 -ENOMEM);
	assert_int_equal(hetmm_madvise(p, LOW + PG, 3 * PG, MADV_HUGEPAGE),
			 -ENOMEM);
	assert_int_equal(hetmm_madvise(p, LOW + 8 * PG, PG, MADV_DONTFORK),
			 -ENOMEM);
	assert_layout_unchanged(p, &s);
	expect(p, LOW, 2 * PG, 1, 0);
	expect(p, LOW + 3 * PG, PG, 2, 0);

	/* Populating beyond the end of a file: SIGBUS, -EFAULT. */
	f = map(p, 0, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_OK(hetmm_madvise(p, f, PG, MADV_POPULATE_READ));
	assert_int_equal(hetmm_madvise(p, f, 2 * PG, MADV_POPULATE_READ),
			 -EFAULT);
	ASSERT_OK(hetmm_check(m));
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

static unsigned long vm_flags_at(struct mm_struct *mm, unsigned long addr)
{
	struct vm_area_struct *vma;
	unsigned long flags;

	mmap_read_lock(mm);
	vma = find_vma(mm, addr);
	assert_non_null(vma);
	assert_true(vma->vm_start <= addr);
	flags = vma->vm_flags;
	mmap_read_unlock(mm);
	return flags;
}

static void test_madv_hugepage_flags(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);

	map(p, LOW, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 4 * PG, 3);
	ASSERT_OK(hetmm_madvise(p, LOW, 4 * PG, MADV_HUGEPAGE));
	assert_int_equal(p->map_count, 1);
	assert_true(vm_flags_at(p, LOW) & VM_HUGEPAGE);
	assert_false(vm_flags_at(p, LOW) & VM_NOHUGEPAGE);

	ASSERT_OK(hetmm_madvise(p, LOW + PG, 2 * PG, MADV_NOHUGEPAGE));
	assert_int_equal(p->map_count, 3);
	assert_true(vm_flags_at(p, LOW) & VM_HUGEPAGE);
	assert_true(vm_flags_at(p, LOW + PG) & VM_NOHUGEPAGE);
	assert_false(vm_flags_at(p, LOW + PG) & VM_HUGEPAGE);
	assert_true(vm_flags_at(p, LOW + 2 * PG) & VM_NOHUGEPAGE);
	assert_true(vm_flags_at(p, LOW + 3 * PG) & VM_HUGEPAGE);
	assert_int_equal(vma_at(p, LOW + PG).vm_end, LOW + 3 * PG);
	/* The access bits are unchanged, and so are the contents. */
	assert_true(vm_flags_at(p, LOW + PG) & VM_WRITE);
	expect(p, LOW, 4 * PG, 3, 0);
	wr8(p, 0, LOW + 2 * PG, 1);

	ASSERT_OK(hetmm_madvise(p, LOW, 4 * PG, MADV_HUGEPAGE));
	for (int i = 0; i < 4; i++) {
		assert_true(vm_flags_at(p, LOW + i * PG) & VM_HUGEPAGE);
		assert_false(vm_flags_at(p, LOW + i * PG) & VM_NOHUGEPAGE);
	}
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(p);
}

/* -------------------------------------------------------------- mremap */

static void test_mremap_shrink(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	long used;

	map(p, LOW, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 4 * PG, 1);
	expect_cpu(p, 1, LOW, 4 * PG, 1, 0);
	used = settled_pages(m);
	assert_int_equal(hetmm_mremap(p, LOW, 4 * PG, 2 * PG, 0, 0), LOW);
	assert_int_equal(vma_at(p, LOW).vm_end, LOW + 2 * PG);
	assert_int_equal(p->map_count, 1);
	assert_int_equal(try_rd(p, 0, LOW + 2 * PG), -EFAULT);
	assert_int_equal(try_rd(p, 1, LOW + 3 * PG), -EFAULT);
	expect(p, LOW, 2 * PG, 1, 0);
	assert_int_equal(settled_pages(m), used - 2);
	/* Same size: a no-op returning the address. */
	assert_int_equal(hetmm_mremap(p, LOW, 2 * PG, 2 * PG, MREMAP_MAYMOVE,
				      0),
			 LOW);
	expect(p, LOW, 2 * PG, 1, 0);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(p);
}

/*
 * Linux always allows a shrinking remap when a VMA starts at the address:
 * it unmaps [addr + new_len, addr + old_len) whatever VMAs that covers
 * ("Always allow a shrinking remap: that just unmaps the unnecessary
 * pages..", mm/mremap.c); only growing or moving needs one VMA.
 */
static void test_mremap_shrink_across_vmas(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);

	map(p, LOW, 2 * PG, RW, PA | MAP_FIXED, -1, 0);
	map(p, LOW + 2 * PG, 2 * PG, PROT_READ, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 2 * PG, 1);
	assert_int_equal(hetmm_mremap(p, LOW, 4 * PG, PG, 0, 0), LOW);
	assert_int_equal(p->map_count, 1);
	assert_int_equal(try_rd(p, 0, LOW + PG), -EFAULT);
	assert_int_equal(try_rd(p, 0, LOW + 3 * PG), -EFAULT);
	expect(p, LOW, PG, 1, 0);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(p);
}

static void test_mremap_grow_in_place(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	int fd = open_file(p, "f", O_RDWR | O_CREAT, 3 * PG);
	unsigned long f;

	map(p, LOW, 2 * PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 2 * PG, 2);
	assert_int_equal(hetmm_mremap(p, LOW, 2 * PG, 4 * PG, 0, 0), LOW);
	assert_int_equal(p->map_count, 1);
	assert_int_equal(vma_at(p, LOW).vm_end, LOW + 4 * PG);
	expect(p, LOW, 2 * PG, 2, 0);
	expect_zero(p, LOW + 2 * PG, 2 * PG);
	wr8(p, 0, LOW + 3 * PG, 7);
	/* With MAYMOVE and room it still stays in place. */
	assert_int_equal(hetmm_mremap(p, LOW, 4 * PG, 6 * PG, MREMAP_MAYMOVE,
				      0),
			 LOW);
	expect(p, LOW, 2 * PG, 2, 0);
	assert_int_equal(rd8(p, 0, LOW + 3 * PG), 7);

	/* A file mapping grows over more of the file. */
	assert_int_equal(hetmm_pwrite(p, fd, "22", 2, 2 * PG), 2);
	f = map(p, LOW + 32 * PG, PG, RW, MAP_SHARED | MAP_FIXED, fd, 0);
	assert_int_equal(hetmm_mremap(p, f, PG, 3 * PG, 0, 0), f);
	assert_int_equal(rd8(p, 0, f + 2 * PG + 1), '2');
	wr8(p, 0, f + PG, 'x');
	{
		char c = 0;

		assert_int_equal(hetmm_pread(p, fd, &c, 1, PG), 1);
		assert_int_equal(c, 'x');
	}
	ASSERT_OK(hetmm_check(m));
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

static void test_mremap_maymove(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	struct page *orig[4];
	uint64_t moved, wc, wr;
	long r;

	map(p, LOW, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
	map(p, LOW + 4 * PG, PG, RW, PA | MAP_FIXED, -1, 0); /* neighbour */
	fill(p, LOW, 4 * PG, 1);
	fill(p, LOW + 4 * PG, PG, 2);
	expect_cpu(p, 1, LOW, 4 * PG, 1, 0);
	for (int i = 0; i < 4; i++)
		orig[i] = page_at_nonnull(p, LOW + i * PG);

	moved = stat_now(HETMM_STAT_mremap_pte_move);
	r = hetmm_mremap(p, LOW, 4 * PG, 8 * PG, MREMAP_MAYMOVE, 0);
	assert_true(r > 0);
	assert_int_not_equal(r, LOW);
	assert_true((unsigned long)r + 8 * PG <= LOW ||
		    (unsigned long)r >= LOW + 5 * PG);
	assert_int_equal(stat_now(HETMM_STAT_mremap_pte_move) - moved, 4);
	assert_int_equal(p->map_count, 2);
	/* The pages themselves moved: same frames, no copy. */
	for (int i = 0; i < 4; i++) {
		assert_ptr_equal(page_at(p, r + i * PG), orig[i]);
		assert_int_equal(rmap_count_ptes(page_folio(orig[i])), 1);
	}
	expect_cpu(p, 1, r, 4 * PG, 1, 0);
	expect_zero(p, r + 4 * PG, 4 * PG);
	/* The old range is gone, on the CPU that had it cached too. */
	assert_int_equal(try_rd(p, 1, LOW), -EFAULT);
	assert_int_equal(try_rd(p, 0, LOW + 3 * PG), -EFAULT);
	expect(p, LOW + 4 * PG, PG, 2, 0);
	/* Still exclusive: writes neither copy nor fault for COW. */
	wc = stat_now(HETMM_STAT_fault_wp_copy);
	wr = stat_now(HETMM_STAT_fault_wp_reuse);
	fill(p, r, 4 * PG, 3);
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy), wc);
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_reuse), wr);
	expect(p, r, 4 * PG, 3, 0);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(p);
}

static void test_mremap_fixed(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	int fd = open_file(p, "f", O_RDWR | O_CREAT, 2 * PG);
	char c = 0;

	map(p, LOW, 2 * PG, RW, PA | MAP_FIXED, -1, 0);
	map(p, LOW + 16 * PG, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 2 * PG, 1);
	fill(p, LOW + 16 * PG, 4 * PG, 9);
	expect_cpu(p, 2, LOW + 16 * PG, 4 * PG, 9, 0);

	/* Onto the middle of another mapping, which is replaced. */
	assert_int_equal(hetmm_mremap(p, LOW, 2 * PG, 2 * PG,
				      MREMAP_MAYMOVE | MREMAP_FIXED,
				      LOW + 17 * PG),
			 LOW + 17 * PG);
	assert_int_equal(try_rd(p, 0, LOW), -EFAULT);
	expect_cpu(p, 2, LOW + 16 * PG, PG, 9, 0);
	expect_cpu(p, 2, LOW + 17 * PG, 2 * PG, 1, 0);
	expect_cpu(p, 2, LOW + 19 * PG, PG, 9, 3 * PG);
	assert_int_equal(p->map_count, 3);
	assert_int_equal(vma_at(p, LOW + 17 * PG).vm_end, LOW + 19 * PG);

	/* A shared file mapping keeps mapping the file where it lands. */
	assert_int_equal(hetmm_pwrite(p, fd, "F", 1, PG), 1);
	map(p, LOW + 32 * PG, 2 * PG, RW, MAP_SHARED | MAP_FIXED, fd, 0);
	assert_int_equal(hetmm_mremap(p, LOW + 32 * PG, 2 * PG, 2 * PG,
				      MREMAP_MAYMOVE | MREMAP_FIXED,
				      LOW + 40 * PG),
			 LOW + 40 * PG);
	assert_int_equal(rd8(p, 0, LOW + 41 * PG), 'F');
	wr8(p, 0, LOW + 40 * PG, 'G');
	assert_int_equal(hetmm_pread(p, fd, &c, 1, 0), 1);
	assert_int_equal(c, 'G');

	/* Moving and shrinking at once. */
	assert_int_equal(hetmm_mremap(p, LOW + 40 * PG, 2 * PG, PG,
				      MREMAP_MAYMOVE | MREMAP_FIXED,
				      LOW + 48 * PG),
			 LOW + 48 * PG);
	assert_int_equal(rd8(p, 0, LOW + 48 * PG), 'G');
	assert_int_equal(try_rd(p, 0, LOW + 49 * PG), -EFAULT);
	assert_int_equal(try_rd(p, 0, LOW + 41 * PG), -EFAULT);
	ASSERT_OK(hetmm_check(m));

	/* Within one VMA: pages 4..5 of [+80p, +88p) onto pages 0..1. */
	map(p, LOW + 80 * PG, 8 * PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW + 80 * PG, 8 * PG, 13);
	assert_int_equal(hetmm_mremap(p, LOW + 84 * PG, 2 * PG, 2 * PG,
				      MREMAP_MAYMOVE | MREMAP_FIXED,
				      LOW + 80 * PG),
			 LOW + 80 * PG);
	expect(p, LOW + 80 * PG, 2 * PG, 13, 4 * PG);
	expect(p, LOW + 82 * PG, 2 * PG, 13, 2 * PG);
	assert_int_equal(try_rd(p, 0, LOW + 84 * PG), -EFAULT);
	assert_int_equal(try_rd(p, 0, LOW + 85 * PG), -EFAULT);
	expect(p, LOW + 86 * PG, 2 * PG, 13, 6 * PG);
	assert_int_equal(rmap_count_ptes(page_folio(
				 page_at_nonnull(p, LOW + 80 * PG))),
			 1);
	ASSERT_OK(hetmm_check(m));
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

static void test_mremap_dontunmap(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	long r;

	map(p, LOW, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 4 * PG, 4);
	expect_cpu(p, 1, LOW, 4 * PG, 4, 0);
	r = hetmm_mremap(p, LOW, 4 * PG, 4 * PG,
			 MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0);
	assert_true(r > 0);
	assert_int_not_equal(r, LOW);
	assert_int_equal(p->map_count, 2);
	/* The old mapping stays, empty: private anon reads zeroes. */
	assert_true(has_vma(p, LOW));
	assert_true(pte_none(get_pte(p, LOW)));
	expect_zero(p, LOW, 4 * PG);
	assert_int_equal(rd8(p, 1, LOW + PG), 0);
	expect_cpu(p, 1, r, 4 * PG, 4, 0);
	/* The two are independent. */
	fill(p, LOW, 4 * PG, 5);
	expect(p, r, 4 * PG, 4, 0);
	expect(p, LOW, 4 * PG, 5, 0);
	ASSERT_OK(hetmm_check(m));

	/* With MREMAP_FIXED as well. */
	assert_int_equal(hetmm_mremap(p, r, 4 * PG, 4 * PG,
				      MREMAP_MAYMOVE | MREMAP_DONTUNMAP |
					      MREMAP_FIXED,
				      LOW + 64 * PG),
			 LOW + 64 * PG);
	expect(p, LOW + 64 * PG, 4 * PG, 4, 0);
	expect_zero(p, r, 4 * PG);
	assert_int_equal(p->map_count, 3);
	ASSERT_OK(hetmm_check(m));

	/* A shared file mapping: both ranges still show the file. */
	{
		int fd = open_file(p, "f", O_RDWR | O_CREAT, 2 * PG);
		unsigned long f = map(p, LOW + 96 * PG, 2 * PG, RW,
				      MAP_SHARED | MAP_FIXED, fd, 0);
		long nf;

		wr8(p, 0, f + PG, 'S');
		nf = hetmm_mremap(p, f, 2 * PG, 2 * PG,
				  MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0);
		assert_true(nf > 0 && (unsigned long)nf != f);
		assert_int_equal(rd8(p, 0, nf + PG), 'S');
		assert_int_equal(rd8(p, 1, f + PG), 'S');
		wr8(p, 1, f, 'T');
		assert_int_equal(rd8(p, 0, nf), 'T');
		ASSERT_OK(hetmm_unlink(p, "f"));
		ASSERT_OK(hetmm_check(m));
	}
	hetmm_exit(p);
}

static void test_mremap_errors(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	const int MF = MREMAP_MAYMOVE | MREMAP_FIXED;
	struct vma_snap s;

	map(p, LOW, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
	map(p, LOW + 4 * PG, PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 4 * PG, 6);
	fill(p, LOW + 4 * PG, PG, 7);
	snap(p, &s);
	/* -EINVAL */
	assert_int_equal(hetmm_mremap(p, LOW, PG, PG, 0x80, 0), -EINVAL);
	assert_int_equal(hetmm_mremap(p, LOW, PG, PG, MREMAP_FIXED,
				      LOW + 32 * PG),
			 -EINVAL);
	assert_int_equal(hetmm_mremap(p, LOW, PG, PG, MREMAP_DONTUNMAP, 0),
			 -EINVAL);
	assert_int_equal(hetmm_mremap(p, LOW + 1, PG, 2 * PG, MREMAP_MAYMOVE,
				      0),
			 -EINVAL);
	assert_int_equal(hetmm_mremap(p, LOW, PG, 0, MREMAP_MAYMOVE, 0),
			 -EINVAL);
	assert_int_equal(hetmm_mremap(p, LOW, 2 * PG, 2 * PG, MF, LOW + PG),
			 -EINVAL);
	assert_int_equal(hetmm_mremap(p, LOW + 2 * PG, 2 * PG, 2 * PG, MF,
				      LOW + PG),
			 -EINVAL);
	assert_int_equal(hetmm_mremap(p, LOW, PG, PG, MF, LOW + 32 * PG + 1),
			 -EINVAL);
	assert_int_equal(hetmm_mremap(p, LOW, 2 * PG, 4 * PG,
				      MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0),
			 -EINVAL);
	/* -EFAULT: nothing mapped there, or more than one mapping. */
	assert_int_equal(hetmm_mremap(p, LOW + 8 * PG, PG, 2 * PG,
				      MREMAP_MAYMOVE, 0),
			 -EFAULT);
	assert_int_equal(hetmm_mremap(p, LOW + 8 * PG, PG, PG, MF,
				      LOW + 32 * PG),
			 -EFAULT);
	assert_int_equal(hetmm_mremap(p, LOW + 3 * PG, 2 * PG, 4 * PG,
				      MREMAP_MAYMOVE, 0),
			 -EFAULT);
	assert_int_equal(hetmm_mremap(p, LOW + 2 * PG, 3 * PG, 3 * PG, MF,
				      LOW + 32 * PG),
			 -EFAULT);
	/* -ENOMEM: no room to grow and not allowed to move. */
	assert_int_equal(hetmm_mremap(p, LOW, 4 * PG, 6 * PG, 0, 0), -ENOMEM);
	assert_int_equal(hetmm_mremap(p, LOW + 2 * PG, 2 * PG, 3 * PG, 0, 0),
			 -ENOMEM);
	assert_layout_unchanged(p, &s);
	expect(p, LOW, 4 * PG, 6, 0);
	expect(p, LOW + 4 * PG, PG, 7, 0);
	/* The target of a refused MREMAP_FIXED was left alone. */
	assert_false(has_vma(p, LOW + 32 * PG));
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(p);
}

/* ------------------------------------------------------------- cmpxchg */

static void test_cmpxchg(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c;
	unsigned long a = map(p, 0, 2 * PG, RW, PA, -1, 0);
	unsigned long ro = map(p, 0, PG, PROT_READ, PA, -1, 0);
	uint64_t prev = 1, v = 0, zf, wc;
	struct page *shared;

	/* On a none PTE it faults as a write: a fresh zeroed page. */
	zf = stat_now(HETMM_STAT_fault_zero_fill);
	ASSERT_OK(hetmm_cpu_cmpxchg(p, 0, a + 8, 5, 6, &prev));
	assert_int_equal(prev, 0);
	assert_int_equal(stat_now(HETMM_STAT_fault_zero_fill) - zf, 1);
	/* Success. */
	ASSERT_OK(hetmm_cpu_cmpxchg(p, 1, a + 8, 0, 42, &prev));
	assert_int_equal(prev, 0);
	ASSERT_OK(hetmm_cpu_read(p, 0, a + 8, &v, 8));
	assert_int_equal(v, 42);
	/* Failure: the old value is reported, memory unchanged. */
	ASSERT_OK(hetmm_cpu_cmpxchg(p, 0, a + 8, 41, 7, &prev));
	assert_int_equal(prev, 42);
	ASSERT_OK(hetmm_cpu_read(p, 1, a + 8, &v, 8));
	assert_int_equal(v, 42);
	/* Errors. */
	assert_int_equal(hetmm_cpu_cmpxchg(p, 0, a + 4, 0, 1, &prev), -EINVAL);
	assert_int_equal(hetmm_cpu_cmpxchg(p, 0, a + 1, 0, 1, &prev), -EINVAL);
	assert_int_equal(hetmm_cpu_cmpxchg(p, 0, ro, 0, 1, &prev), -EFAULT);
	assert_int_equal(hetmm_cpu_cmpxchg(p, 0, a + 2 * PG + 3 * PG, 0, 1,
					   &prev),
			 -EFAULT);

	/* A COW-shared page after fork: even a failing cmpxchg copies. */
	c = do_fork(p);
	shared = page_at_nonnull(p, a);
	assert_ptr_equal(page_at(c, a), shared);
	wc = stat_now(HETMM_STAT_fault_wp_copy);
	ASSERT_OK(hetmm_cpu_cmpxchg(p, 0, a + 8, 1, 2, &prev));
	assert_int_equal(prev, 42);
	assert_int_equal(stat_now(HETMM_STAT_fault_wp_copy) - wc, 1);
	assert_ptr_not_equal(page_at(p, a), shared);
	assert_true(pte_write(get_pte(p, a)));
	/* A successful one in the child: the child's page is its own. */
	ASSERT_OK(hetmm_cpu_cmpxchg(c, 1, a + 8, 42, 99, &prev));
	assert_int_equal(prev, 42);
	ASSERT_OK(hetmm_cpu_read(p, 0, a + 8, &v, 8));
	assert_int_equal(v, 42);
	ASSERT_OK(hetmm_cpu_read(c, 0, a + 8, &v, 8));
	assert_int_equal(v, 99);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(c);
	hetmm_exit(p);
}

/* ----------------------------------------------------------------- TLB */

static void test_tlb_hit(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	unsigned long a = map(p, 0, 2 * PG, RW, PA, -1, 0);
	uint64_t hit, miss;
	unsigned char c;

	wr8(p, 0, a, 'h');
	miss = stat_now(HETMM_STAT_tlb_miss);
	hit = stat_now(HETMM_STAT_tlb_hit);
	/* CPU 1 has never seen the page: a miss, then a hit. */
	ASSERT_OK(hetmm_cpu_read(p, 1, a, &c, 1));
	assert_int_equal(stat_now(HETMM_STAT_tlb_miss) - miss, 1);
	assert_int_equal(stat_now(HETMM_STAT_tlb_hit) - hit, 0);
	ASSERT_OK(hetmm_cpu_read(p, 1, a + 100, &c, 1));
	assert_int_equal(stat_now(HETMM_STAT_tlb_miss) - miss, 1);
	assert_int_equal(stat_now(HETMM_STAT_tlb_hit) - hit, 1);
	assert_int_equal(c, 0);
	/* The write entry on CPU 0 serves reads too. */
	ASSERT_OK(hetmm_cpu_read(p, 0, a, &c, 1));
	assert_int_equal(c, 'h');
	assert_int_equal(stat_now(HETMM_STAT_tlb_hit) - hit, 2);
	/* A read entry does not serve a write: the write misses. */
	miss = stat_now(HETMM_STAT_tlb_miss);
	ASSERT_OK(hetmm_cpu_read(p, 2, a + PG, &c, 1)); /* zero page */
	wr8(p, 2, a + PG, 'w');
	assert_int_equal(stat_now(HETMM_STAT_tlb_miss) - miss, 2);
	assert_int_equal(rd8(p, 2, a + PG), 'w');
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(p);
}

static void test_tlb_stale_entries(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	unsigned long a = map(p, LOW, 2 * PG, RW, PA | MAP_FIXED, -1, 0);
	uint64_t fl, sd;

	/* Entries on CPUs 0 and 3. */
	wr8(p, 0, a, 'a');
	wr8(p, 3, a + PG, 'b');
	assert_int_equal(rd8(p, 3, a), 'a');
	assert_int_equal(rd8(p, 0, a + PG), 'b');

	/* munmap: both CPUs are shot down; no access through old entries. */
	fl = stat_now(HETMM_STAT_tlb_flush);
	sd = stat_now(HETMM_STAT_tlb_shootdown);
	ASSERT_OK(hetmm_munmap(p, a, 2 * PG));
	assert_true(stat_now(HETMM_STAT_tlb_flush) - fl >= 1);
	assert_true(stat_now(HETMM_STAT_tlb_shootdown) - sd >= 2);
	assert_int_equal(try_rd(p, 0, a), -EFAULT);
	assert_int_equal(try_rd(p, 3, a), -EFAULT);
	assert_int_equal(try_wr(p, 3, a + PG), -EFAULT);
	/* A new mapping at the same address shows its own (zero) bytes. */
	map(p, LOW, 2 * PG, RW, PA | MAP_FIXED, -1, 0);
	assert_int_equal(rd8(p, 0, a), 0);
	assert_int_equal(rd8(p, 3, a + PG), 0);
	ASSERT_OK(hetmm_check(m));

	/* mprotect: write entries are dropped everywhere. */
	wr8(p, 0, a, 'c');
	wr8(p, 3, a, 'd');
	fl = stat_now(HETMM_STAT_tlb_flush);
	sd = stat_now(HETMM_STAT_tlb_shootdown);
	ASSERT_OK(hetmm_mprotect(p, a, 2 * PG, PROT_READ));
	assert_true(stat_now(HETMM_STAT_tlb_flush) - fl >= 1);
	assert_true(stat_now(HETMM_STAT_tlb_shootdown) - sd >= 2);
	assert_int_equal(try_wr(p, 0, a), -EFAULT);
	assert_int_equal(try_wr(p, 3, a), -EFAULT);
	assert_int_equal(rd8(p, 0, a), 'd');
	ASSERT_OK(hetmm_mprotect(p, a, 2 * PG, PROT_NONE));
	assert_int_equal(try_rd(p, 0, a), -EFAULT);
	assert_int_equal(try_rd(p, 3, a), -EFAULT);
	ASSERT_OK(hetmm_mprotect(p, a, 2 * PG, RW));

	/* DONTNEED: the old page must not be read through a stale entry. */
	assert_int_equal(rd8(p, 3, a), 'd');
	ASSERT_OK(hetmm_madvise(p, a, PG, MADV_DONTNEED));
	assert_int_equal(rd8(p, 3, a), 0);
	assert_int_equal(rd8(p, 0, a), 0);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(p);
}

/* A COW break on one CPU invalidates another CPU's entry for the page. */
static void test_tlb_cow_other_cpu(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c;
	unsigned long a = map(p, 0, PG, RW, PA, -1, 0);

	wr8(p, 0, a, 'o');
	c = do_fork(p);
	/* CPU 1 caches the shared page (read) in the parent. */
	assert_int_equal(rd8(p, 1, a), 'o');
	/* CPU 0 writes: copy. CPU 1 must now see the new page. */
	wr8(p, 0, a, 'n');
	assert_int_equal(rd8(p, 1, a), 'n');
	assert_int_equal(rd8(c, 1, a), 'o');
	/* And a write on CPU 1 goes to the parent's new page. */
	wr8(p, 1, a, 'm');
	assert_int_equal(rd8(p, 0, a), 'm');
	assert_int_equal(rd8(c, 0, a), 'o');
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(c);
	hetmm_exit(p);
}

/* ---------------------------------------------------------------- rmap */

static void test_rmap_after_fork(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c, *g;
	unsigned long a = map(p, 0, 2 * PG, RW, PA, -1, 0);
	struct folio *f0, *f1, *copy;

	fill(p, a, 2 * PG, 1);
	f0 = page_folio(page_at_nonnull(p, a));
	f1 = page_folio(page_at_nonnull(p, a + PG));
	assert_int_equal(rmap_count_ptes(f0), 1);
	c = do_fork(p);
	assert_int_equal(rmap_count_ptes(f0), 2);
	assert_int_equal(rmap_count_ptes(f1), 2);
	assert_int_equal(folio_mapcount(f0), 2);
	g = do_fork(c);
	assert_int_equal(rmap_count_ptes(f0), 3);
	assert_int_equal(folio_mapcount(f0), 3);

	/* The child's COW copy is mapped once; the original one less. */
	wr8(c, 0, a, 'c');
	copy = page_folio(page_at_nonnull(c, a));
	assert_ptr_not_equal(copy, f0);
	assert_int_equal(rmap_count_ptes(copy), 1);
	assert_int_equal(rmap_count_ptes(f0), 2);
	assert_int_equal(folio_mapcount(f0), 2);
	/* After an exit, only the survivors' PTEs count. */
	hetmm_exit(g);
	assert_int_equal(rmap_count_ptes(f0), 1);
	assert_int_equal(rmap_count_ptes(f1), 2);
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(c);
	assert_int_equal(rmap_count_ptes(f1), 1);
	hetmm_exit(p);
}

/* ------------------------------------------------------- mmu notifiers */

#define REC_MAX 64

struct rec {
	struct mmu_notifier mn;
	int n;
	int ev[REC_MAX];
	unsigned long start[REC_MAX], end[REC_MAX];
	int ends;
	int releases;
};

static int rec_start(struct mmu_notifier *mn,
		     const struct mmu_notifier_range *range)
{
	struct rec *r = container_of(mn, struct rec, mn);

	if (r->n < REC_MAX) {
		r->ev[r->n] = range->event;
		r->start[r->n] = range->start;
		r->end[r->n] = range->end;
	}
	r->n++;
	return 0;
}

static void rec_end(struct mmu_notifier *mn,
		    const struct mmu_notifier_range *range)
{
	(void)range;
	container_of(mn, struct rec, mn)->ends++;
}

static void rec_release(struct mmu_notifier *mn, struct mm_struct *mm)
{
	(void)mm;
	container_of(mn, struct rec, mn)->releases++;
}

static const struct mmu_notifier_ops rec_ops = {
	.release = rec_release,
	.invalidate_range_start = rec_start,
	.invalidate_range_end = rec_end,
};

/* Expect exactly one event since @from, of type @ev over [start, end). */
static void expect_one_event(struct rec *r, int from, int ev,
			     unsigned long start, unsigned long end)
{
	if (r->n != from + 1)
		fail_msg("%d events, expected 1", r->n - from);
	assert_int_equal(r->ev[from], ev);
	assert_int_equal(r->start[from], start);
	assert_int_equal(r->end[from], end);
	assert_int_equal(r->ends, r->n);
}

static void test_notifier_events(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c;
	unsigned long a, blk;
	struct rec r;
	int from;
	long nw;

	memset(&r, 0, sizeof(r));
	r.mn.ops = &rec_ops;
	a = map(p, LOW, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
	blk = map(p, LOW + 4 * PG, PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, a, 4 * PG, 1);
	ASSERT_OK(mmu_notifier_register(&r.mn, p));

	/* fork of a private mapping write-protects it: PROTECTION_PAGE. */
	from = r.n;
	c = do_fork(p);
	assert_true(r.n - from >= 1);
	for (int i = from; i < r.n; i++)
		assert_int_equal(r.ev[i], MMU_NOTIFY_PROTECTION_PAGE);
	assert_int_equal(r.start[from], a);
	assert_int_equal(r.end[from], a + 4 * PG);

	/* COW fault: CLEAR of the one page. */
	from = r.n;
	wr8(p, 0, a + PG, 'x');
	expect_one_event(&r, from, MMU_NOTIFY_CLEAR, a + PG, a + 2 * PG);
	/* Reuse of a page the child no longer shares: nothing. */
	wr8(c, 0, a + 2 * PG, 'c'); /* the child copies page 2 */
	from = r.n;
	wr8(p, 0, a + 2 * PG, 'p');
	assert_int_equal(r.n, from);

	/* mprotect: PROTECTION_VMA. */
	from = r.n;
	ASSERT_OK(hetmm_mprotect(p, a, 4 * PG, PROT_READ));
	expect_one_event(&r, from, MMU_NOTIFY_PROTECTION_VMA, a, a + 4 * PG);
	ASSERT_OK(hetmm_mprotect(p, a, 4 * PG, RW));

	/* MADV_DONTNEED: CLEAR. */
	from = r.n;
	ASSERT_OK(hetmm_madvise(p, a + 3 * PG, PG, MADV_DONTNEED));
	expect_one_event(&r, from, MMU_NOTIFY_CLEAR, a + 3 * PG, a + 4 * PG);

	/* mremap move: UNMAP of the old range. */
	from = r.n;
	nw = hetmm_mremap(p, a, 4 * PG, 8 * PG, MREMAP_MAYMOVE, 0);
	assert_true(nw > 0 && (unsigned long)nw != a);
	assert_true(r.n - from >= 1);
	for (int i = from; i < r.n; i++) {
		assert_int_equal(r.ev[i], MMU_NOTIFY_UNMAP);
		assert_true(r.start[i] >= a && r.end[i] <= a + 4 * PG);
	}
	assert_int_equal(r.start[from], a);
	assert_int_equal(r.end[from], a + 4 * PG);
	assert_int_equal(rd8(p, 0, nw + PG), 'x');

	/* munmap: UNMAP. */
	from = r.n;
	ASSERT_OK(hetmm_munmap(p, blk, PG));
	expect_one_event(&r, from, MMU_NOTIFY_UNMAP, blk, blk + PG);

	/* The child's activity is not the parent's business. */
	from = r.n;
	ASSERT_OK(hetmm_munmap(c, a, 4 * PG));
	hetmm_exit(c);
	assert_int_equal(r.n, from);
	assert_int_equal(r.releases, 0);
	ASSERT_OK(hetmm_check(m));

	/* exit: release, exactly once, also across unregister. */
	mmgrab(p);
	hetmm_exit(p);
	assert_int_equal(r.releases, 1);
	mmu_notifier_unregister(&r.mn, p);
	assert_int_equal(r.releases, 1);
	mmdrop(p);
}

/* ----------------------------------------------------- fault injection */

static const enum hetmm_fault_site inject_sites[] = {
	HETMM_FAULT_alloc_pages,
	HETMM_FAULT_pgtable_alloc,
};

/* Arm @site to fail its @nth call from now on, once. */
static void inject_nth(struct hetmm_machine *m, enum hetmm_fault_site site,
		       int nth)
{
	hetmm_fault_reset(&m->faults);
	ASSERT_OK(hetmm_fault_set(&m->faults, site, FAULT_NTH, nth, 0));
}

static void test_inject_write_fault(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);
	unsigned long k = 0;

	map(p, LOW, PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, PG, 9);
	for (size_t s = 0; s < ARRAY_SIZE(inject_sites); s++) {
		int nth, ret, failures = 0;
		unsigned long a;

		for (nth = 1;; nth++) {
			struct vma_snap before;

			assert_true(nth < 64);
			/* A fresh PGD slot each time: every level is new. */
			a = LOW + ++k * PGDIR_SIZE;
			map(p, a, 2 * PG, RW, PA | MAP_FIXED, -1, 0);
			snap(p, &before);
			inject_nth(m, inject_sites[s], nth);
			ret = hetmm_cpu_write(p, 0, a + PG + 8, "data", 4);
			hetmm_fault_reset(&m->faults);
			if (!ret)
				break;
			failures++;
			assert_int_equal(ret, -ENOMEM);
			/* Nothing observable happened. */
			assert_layout_unchanged(p, &before);
			assert_true(pte_none(get_pte(p, a + PG)));
			expect(p, LOW, PG, 9, 0);
			check_ok(m);
			expect_zero(p, a + PG, 16);
			ASSERT_OK(hetmm_munmap(p, a, 2 * PG));
		}
		assert_true(failures >= 2);
		{
			char s4[5] = { 0 };

			ASSERT_OK(hetmm_cpu_read(p, 1, a + PG + 8, s4, 4));
			assert_string_equal(s4, "data");
		}
		check_ok(m);
	}
	hetmm_exit(p);
}

/* A COW fault that cannot allocate its copy leaves both sides alone. */
static void test_inject_cow_fault(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c;
	unsigned long a = map(p, 0, 2 * PG, RW, PA, -1, 0);
	struct page *shared;
	int nth, ret, failures = 0;

	fill(p, a, 2 * PG, 4);
	c = do_fork(p);
	shared = page_at_nonnull(p, a);
	for (nth = 1;; nth++) {
		assert_true(nth < 64);
		inject_nth(m, HETMM_FAULT_alloc_pages, nth);
		ret = hetmm_cpu_write(c, 0, a + 4, "cow", 3);
		hetmm_fault_reset(&m->faults);
		if (!ret)
			break;
		failures++;
		assert_int_equal(ret, -ENOMEM);
		assert_ptr_equal(page_at(c, a), shared);
		assert_ptr_equal(page_at(p, a), shared);
		assert_false(pte_write(get_pte(c, a)));
		expect(c, a, 2 * PG, 4, 0);
		expect(p, a, 2 * PG, 4, 0);
		check_ok(m);
	}
	assert_true(failures >= 1);
	assert_ptr_not_equal(page_at(c, a), shared);
	expect(p, a, 2 * PG, 4, 0);
	assert_int_equal(rd8(c, 0, a + 4), 'c');
	check_ok(m);
	hetmm_exit(c);
	hetmm_exit(p);
}

static void test_inject_fork(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m), *c;
	int fd = open_file(p, "f", O_RDWR | O_CREAT, 2 * PG);
	unsigned long far = LOW + 3 * PGDIR_SIZE;
	unsigned long sh, fp;
	struct vma_snap before;
	long used;

	/* Private anon at two far apart places, shared anon, private file. */
	map(p, LOW, 3 * PG, RW, PA | MAP_FIXED, -1, 0);
	map(p, far, 2 * PG, RW, PA | MAP_FIXED, -1, 0);
	sh = map(p, 0, 2 * PG, RW, SA, -1, 0);
	fp = map(p, 0, 2 * PG, RW, MAP_PRIVATE, fd, 0);
	fill(p, LOW, 3 * PG, 1);
	fill(p, far, 2 * PG, 2);
	fill(p, sh, 2 * PG, 3);
	fill(p, fp, PG, 4);		/* page 0 copied, page 1 file */
	assert_int_equal(hetmm_pwrite(p, fd, "file", 4, PG), 4);
	assert_int_equal(rd8(p, 0, fp + PG), 'f');
	snap(p, &before);
	used = settled_pages(m);

	for (size_t s = 0; s < ARRAY_SIZE(inject_sites); s++) {
		int nth, failures = 0;

		for (nth = 1;; nth++) {
			assert_true(nth < 256);
			inject_nth(m, inject_sites[s], nth);
			c = hetmm_fork(p);
			hetmm_fault_reset(&m->faults);
			if (!IS_ERR(c))
				break;
			failures++;
			assert_int_equal(PTR_ERR(c), -ENOMEM);
			assert_layout_unchanged(p, &before);
			expect(p, LOW, 3 * PG, 1, 0);
			expect(p, far, 2 * PG, 2, 0);
			expect(p, sh, 2 * PG, 3, 0);
			expect(p, fp, PG, 4, 0);
			assert_int_equal(rd8(p, 0, fp + PG), 'f');
			assert_int_equal(settled_pages(m), used);
			check_ok(m);
		}
		assert_true(failures >= 1);
		expect(c, LOW, 3 * PG, 1, 0);
		expect(c, far, 2 * PG, 2, 0);
		expect(c, sh, 2 * PG, 3, 0);
		expect(c, fp, PG, 4, 0);
		hetmm_exit(c);
		/* The parent writes in place again, no copies needed. */
		fill(p, LOW, 3 * PG, 1);
		check_ok(m);
	}
	/* After all that, the parent still works as a private process. */
	fill(p, far, 2 * PG, 5);
	expect(p, far, 2 * PG, 5, 0);
	ASSERT_OK(hetmm_unlink(p, "f"));
	hetmm_exit(p);
}

/*
 * Run one mremap with the @nth allocation at @site failing, for N = 1, 2,
 * ... until it succeeds; each failure must be -ENOMEM and leave the VMA
 * layout and the bytes of [@old, @old + @data_len) alone.
 */
static long inject_mremap(struct hetmm_machine *m, struct mm_struct *p,
			  enum hetmm_fault_site site, unsigned long old,
			  size_t old_len, size_t new_len, int flags,
			  unsigned long target, size_t data_len,
			  unsigned int seed)
{
	struct vma_snap before;
	int failures = 0;
	long r;

	snap(p, &before);
	for (int nth = 1;; nth++) {
		assert_true(nth < 64);
		inject_nth(m, site, nth);
		r = hetmm_mremap(p, old, old_len, new_len, flags, target);
		hetmm_fault_reset(&m->faults);
		if (r >= 0)
			break;
		failures++;
		assert_int_equal(r, -ENOMEM);
		assert_layout_unchanged(p, &before);
		expect(p, old, data_len, seed, 0);
		check_ok(m);
	}
	assert_true(failures >= 1);
	return r;
}

static void test_inject_mremap_move(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);

	for (size_t s = 0; s < ARRAY_SIZE(inject_sites); s++) {
		long r;

		map(p, LOW, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
		/* A neighbour blocks growth in place. */
		map(p, LOW + 4 * PG, PG, RW, PA | MAP_FIXED, -1, 0);
		fill(p, LOW, 4 * PG, 5);
		/* Growing a whole VMA: it moves away (new tables needed). */
		r = inject_mremap(m, p, inject_sites[s], LOW, 4 * PG, 8 * PG,
				  MREMAP_MAYMOVE, 0, 4 * PG, 5);
		assert_int_not_equal(r, LOW);
		expect(p, r, 4 * PG, 5, 0);
		expect_zero(p, r + 4 * PG, 4 * PG);
		assert_int_equal(try_rd(p, 0, LOW), -EFAULT);
		assert_int_equal(p->map_count, 2);
		check_ok(m);
		ASSERT_OK(hetmm_munmap(p, r, 8 * PG));
		ASSERT_OK(hetmm_munmap(p, LOW + 4 * PG, PG));
	}
	hetmm_exit(p);
}

/*
 * Moving part of a VMA: a failed move must not leave the VMA split
 * (Linux splits the source only once the page tables have moved).
 */
static void test_inject_mremap_move_partial(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);

	for (size_t s = 0; s < ARRAY_SIZE(inject_sites); s++) {
		unsigned long to = LOW + (s + 1) * PGDIR_SIZE;
		long r;

		map(p, LOW, 8 * PG, RW, PA | MAP_FIXED, -1, 0);
		fill(p, LOW, 8 * PG, 6);
		r = inject_mremap(m, p, inject_sites[s], LOW, 2 * PG, 2 * PG,
				  MREMAP_MAYMOVE | MREMAP_FIXED, to, 8 * PG,
				  6);
		assert_int_equal(r, to);
		expect(p, to, 2 * PG, 6, 0);
		expect(p, LOW + 2 * PG, 6 * PG, 6, 2 * PG);
		assert_int_equal(try_rd(p, 0, LOW), -EFAULT);
		check_ok(m);
		ASSERT_OK(hetmm_munmap(p, to, 2 * PG));
		ASSERT_OK(hetmm_munmap(p, LOW, 8 * PG));
	}
	hetmm_exit(p);
}

static void test_inject_mprotect_split(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = proc_new(m);

	map(p, LOW, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
	fill(p, LOW, 4 * PG, 7);
	for (size_t s = 0; s < ARRAY_SIZE(inject_sites); s++) {
		struct vma_snap before;
		int nth, ret;

		snap(p, &before);
		for (nth = 1;; nth++) {
			assert_true(nth < 64);
			inject_nth(m, inject_sites[s], nth);
			ret = hetmm_mprotect(p, LOW + PG, PG,
					     s ? PROT_READ : PROT_NONE);
			hetmm_fault_reset(&m->faults);
			if (!ret)
				break;
			assert_int_equal(ret, -ENOMEM);
			assert_layout_unchanged(p, &before);
			expect(p, LOW, 4 * PG, 7, 0);
			wr8(p, 0, LOW + PG, pat(7, PG));
			check_ok(m);
		}
		assert_int_equal(p->map_count, 3);
		assert_int_equal(try_wr(p, 0, LOW + PG), -EFAULT);
		expect(p, LOW + 2 * PG, 2 * PG, 7, 2 * PG);
		ASSERT_OK(hetmm_mprotect(p, LOW + PG, PG, RW));
		expect(p, LOW, 4 * PG, 7, 0);
		check_ok(m);
		/* Back to one VMA for the next site. */
		map(p, LOW, 4 * PG, RW, PA | MAP_FIXED, -1, 0);
		fill(p, LOW, 4 * PG, 7);
	}
	hetmm_exit(p);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, test_machine_setup, \
					      test_machine_teardown)
	const struct CMUnitTest tests[] = {
		T(test_mmap_anon_private),
		T(test_mmap_anon_shared),
		T(test_mmap_file_shared),
		T(test_mmap_fixed_replace),
		T(test_mmap_fixed_noreplace),
		T(test_mmap_populate),
		T(test_mmap_populate_shared_stays_clean),
		T(test_mmap_errors),
		T(test_fork_shared_anon),
		T(test_fork_private_cow),
		T(test_fork_dontfork),
		T(test_file_shared_two_processes),
		T(test_file_mapping_split_move),
		T(test_file_private_cow),
		T(test_file_truncate_sigbus),
		T(test_file_writeback_redirty),
		T(test_mprotect_basic),
		T(test_mprotect_split),
		T(test_mprotect_errors),
		T(test_madv_dontneed_anon),
		T(test_madv_dontneed_file),
		T(test_madv_populate),
		T(test_madv_populate_no_permission),
		T(test_madv_errors),
		T(test_madv_hugepage_flags),
		T(test_mremap_shrink),
		T(test_mremap_shrink_across_vmas),
		T(test_mremap_grow_in_place),
		T(test_mremap_maymove),
		T(test_mremap_fixed),
		T(test_mremap_dontunmap),
		T(test_mremap_errors),
		T(test_cmpxchg),
		T(test_tlb_hit),
		T(test_tlb_stale_entries),
		T(test_tlb_cow_other_cpu),
		T(test_rmap_after_fork),
		T(test_notifier_events),
		T(test_inject_write_fault),
		T(test_inject_cow_fault),
		T(test_inject_fork),
		T(test_inject_mremap_move),
		T(test_inject_mremap_move_partial),
		T(test_inject_mprotect_split),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
