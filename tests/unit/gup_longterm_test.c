// SPDX-License-Identifier: MIT
/*
 * gup_longterm_test.c - what may be pinned long-term (the kernel's
 * gup_longterm.c selftest, spec 5), and the gup_test.c matrix (every GUP
 * and PIN entry point over private/shared, THP and hugetlb memory, read
 * and write, at batch sizes 1, 512, 123 and the whole range), both in our
 * own words against the process face.
 *
 * gup_longterm: backings memfd (tmpfs), tmpfile (tmpfs here, as /tmp
 * usually is), a "local tmpfile" on a disk-like filesystem (the memfs
 * writeback kind) and a hugetlb memfd; each mapped MAP_SHARED and
 * MAP_PRIVATE, read-write or made read-only with mprotect, pinned with
 * FOLL_LONGTERM (+FOLL_WRITE) through pin_user_pages, pin_user_pages_fast,
 * or as an io_uring fixed buffer (pin_user_pages_fast with
 * FOLL_WRITE|FOLL_LONGTERM, R/W only). Expected (the kernel's table):
 * only a R/W pin of a MAP_SHARED mapping of the disk-like file fails, with
 * -EFAULT; everything else succeeds, and every page pinned is
 * longterm-pinnable (and anonymous for MAP_PRIVATE).
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

struct env {
	struct hetmm_machine *m;
	struct mm_struct *mm;
};

static struct env *env_new(void)
{
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	e->m = test_machine_new(96, true);
	e->mm = hetmm_process_create(e->m);
	assert_false(IS_ERR(e->mm));
	return e;
}

static void env_free(struct env *e)
{
	hetmm_exit(e->mm);
	test_machine_finish(e->m);
	free(e);
}

static void mem_write(struct mm_struct *mm, unsigned long a, size_t len,
		      unsigned char v)
{
	unsigned char buf[512];

	memset(buf, v, sizeof(buf));
	for (size_t off = 0; off < len; off += sizeof(buf))
		ASSERT_OK(hetmm_cpu_write(mm, 0, a + off, buf,
					  min(sizeof(buf), len - off)));
}

/* --------------------------------------------------------- gup_longterm */

enum lt_backing {
	LT_MEMFD,
	LT_TMPFILE,
	LT_LOCAL_TMPFILE,
	LT_MEMFD_HUGETLB,
	NR_LT_BACKINGS,
};

static const char *const lt_backing_names[NR_LT_BACKINGS] = {
	"memfd",
	"tmpfile",
	"local tmpfile",
	"memfd hugetlb (2048 kB)",
};

enum lt_how {
	LT_SLOW,
	LT_FAST,
	LT_IOURING,
	NR_LT_HOW,
};

static const char *const lt_how_names[NR_LT_HOW] = {
	"GUP",
	"GUP-fast",
	"io_uring",
};

struct lt_case {
	enum lt_backing b;
	bool shared;
	bool rw;
	enum lt_how how;
};

static void lt_run(void **state)
{
	const struct lt_case *c = *state;
	struct env *e = env_new();
	int kind = c->b == LT_LOCAL_TMPFILE ? HETMM_FS_WRITEBACK :
		   c->b == LT_MEMFD_HUGETLB ? HETMM_FS_HUGETLBFS :
					      HETMM_FS_TMPFS;
	size_t size = c->b == LT_MEMFD_HUGETLB ? SZ_2M : 16 * PAGE_SIZE;
	unsigned long n = size >> PAGE_SHIFT;
	struct page **pages = calloc(n, sizeof(*pages));
	unsigned int flags = FOLL_LONGTERM | (c->rw ? FOLL_WRITE : 0);
	bool should_work;
	long mem, got;
	int fd;

	assert_non_null(pages);
	fd = hetmm_open_kind(e->mm, "/lt", O_RDWR | O_CREAT, kind);
	assert_true(fd >= 0);
	ASSERT_OK(hetmm_unlink(e->mm, "/lt"));
	ASSERT_OK(hetmm_ftruncate(e->mm, fd, (off_t)size));
	mem = hetmm_mmap(e->mm, 0, size, RW,
			 c->shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
	assert_true(mem > 0);
	/* Fault it all in (the selftest memsets it). */
	mem_write(e->mm, (unsigned long)mem, size, 0);
	if (!c->rw)
		ASSERT_OK(hetmm_mprotect(e->mm, (unsigned long)mem, size,
					 PROT_READ));

	switch (c->how) {
	case LT_SLOW:
		mmap_read_lock(e->mm);
		got = pin_user_pages(e->mm, (unsigned long)mem, n, flags,
				     pages);
		mmap_read_unlock(e->mm);
		break;
	default:
		got = pin_user_pages_fast(e->mm, (unsigned long)mem, (int)n,
					  flags, pages);
		break;
	}
	should_work = !(c->shared && c->rw && kind == HETMM_FS_WRITEBACK);
	if (should_work) {
		assert_int_equal(got, (long)n);
		for (unsigned long i = 0; i < n; i++) {
			struct folio *f = page_folio(pages[i]);

			assert_true(folio_maybe_dma_pinned(f));
			assert_true(folio_is_longterm_pinnable(f));
			assert_true(c->shared ? !folio_test_anon(f) :
						folio_test_anon(f));
		}
		unpin_user_pages(pages, n);
	} else {
		/* gup_test and io_uring both see EFAULT here. */
		assert_int_equal(got, -EFAULT);
	}
	ASSERT_OK(hetmm_close(e->mm, fd));
	free(pages);
	ASSERT_OK(hetmm_check(e->m));
	env_free(e);
}

/* ------------------------------------------------------ gup_test matrix */

enum gt_mem {
	GT_PRIVATE,
	GT_SHARED,
	GT_PRIVATE_THP,
	GT_PRIVATE_HUGETLB,
	GT_SHARED_HUGETLB,
	NR_GT_MEM,
};

static const char *const gt_mem_names[NR_GT_MEM] = {
	"private", "shared", "private THP", "private hugetlb", "shared hugetlb",
};

enum gt_op {
	GT_GUP_FAST,
	GT_PIN_FAST,
	GT_GUP_BASIC,
	GT_PIN_BASIC,
	GT_PIN_LONGTERM,
	GT_DUMP_BASIC,
	GT_PIN_DUMP,
	NR_GT_OPS,
};

static const char *const gt_op_names[NR_GT_OPS] = {
	"GUP_FAST",
	"PIN_FAST",
	"GUP_BASIC",
	"PIN_BASIC",
	"PIN_LONGTERM",
	"DUMP_USER_PAGES (get)",
	"DUMP_USER_PAGES (pin)",
};

struct gt_case {
	enum gt_mem mem;
	enum gt_op op;
	bool write;
};

#define GT_SIZE (2 * SZ_2M)
#define GT_PAGES (GT_SIZE >> PAGE_SHIFT)

static unsigned long gt_map(struct env *e, enum gt_mem mem)
{
	long a;

	switch (mem) {
	case GT_SHARED:
		a = hetmm_mmap(e->mm, 0, GT_SIZE, RW,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		break;
	case GT_PRIVATE_HUGETLB:
		a = hetmm_mmap(e->mm, 0, GT_SIZE, RW, PRIV_ANON | MAP_HUGETLB,
			       -1, 0);
		break;
	case GT_SHARED_HUGETLB:
		a = hetmm_mmap(e->mm, 0, GT_SIZE, RW,
			       MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		break;
	case GT_PRIVATE_THP: {
		unsigned long al;

		a = hetmm_mmap(e->mm, 0, GT_SIZE + SZ_2M, RW, PRIV_ANON, -1, 0);
		assert_true(a > 0);
		al = ALIGN((unsigned long)a, SZ_2M);
		ASSERT_OK(hetmm_madvise(e->mm, al, GT_SIZE, MADV_HUGEPAGE));
		a = (long)al;
		break;
	}
	default:
		a = hetmm_mmap(e->mm, 0, GT_SIZE, RW, PRIV_ANON, -1, 0);
		break;
	}
	assert_true(a > 0);
	return (unsigned long)a;
}

/* One batch: take the pages as @op, check them, release. */
static void gt_batch(struct env *e, const struct gt_case *c, unsigned long a,
		     unsigned long n, struct page **pages)
{
	unsigned int fl = c->write ? FOLL_WRITE : 0;
	long got = 0;

	switch (c->op) {
	case GT_GUP_FAST:
		got = get_user_pages_fast(e->mm, a, (int)n, fl, pages);
		break;
	case GT_PIN_FAST:
		got = pin_user_pages_fast(e->mm, a, (int)n, fl, pages);
		break;
	case GT_GUP_BASIC:
		mmap_read_lock(e->mm);
		got = get_user_pages(e->mm, a, n, fl, pages);
		mmap_read_unlock(e->mm);
		break;
	case GT_PIN_BASIC:
	case GT_PIN_LONGTERM:
		mmap_read_lock(e->mm);
		got = pin_user_pages(
			e->mm, a, n,
			fl | (c->op == GT_PIN_LONGTERM ? FOLL_LONGTERM : 0),
			pages);
		mmap_read_unlock(e->mm);
		break;
	case GT_PIN_DUMP:
		/* Pinned, then "dumped": every page's bytes read. */
		got = pin_user_pages_fast(e->mm, a, (int)n, fl, pages);
		assert_int_equal(got, (long)n);
		for (unsigned long i = 0; i < n; i++)
			assert_int_equal(((unsigned char *)page_address(
						 pages[i]))[PAGE_SIZE / 2],
					 0x5a);
		unpin_user_pages(pages, n);
		return;
	case GT_DUMP_BASIC: {
		int locked = 0;

		/* get_dump_page takes one page at a time. */
		for (unsigned long i = 0; i < n; i++) {
			struct page *p = get_dump_page(e->mm, a + i * PAGE_SIZE,
						       &locked);

			assert_non_null(p);
			put_page(p);
		}
		return;
	}
	default:
		break;
	}
	assert_int_equal(got, (long)n);
	for (unsigned long i = 0; i < n; i++) {
		struct folio *f = page_folio(pages[i]);
		bool pinned = c->op == GT_PIN_FAST || c->op == GT_PIN_BASIC ||
			      c->op == GT_PIN_LONGTERM;

		/* PIN_LONGTERM_BENCHMARK's checks. */
		if (pinned && !is_zero_page(pages[i]))
			assert_true(folio_maybe_dma_pinned(f));
		if (c->op == GT_PIN_LONGTERM)
			assert_true(folio_is_longterm_pinnable(f));
	}
	if (c->op == GT_GUP_FAST || c->op == GT_GUP_BASIC) {
		for (unsigned long i = 0; i < n; i++)
			put_page(pages[i]);
	} else {
		unpin_user_pages(pages, n);
	}
}

static void gt_run(void **state)
{
	const struct gt_case *c = *state;
	static const unsigned long batches[] = { 1, 512, 123, GT_PAGES };
	struct env *e = env_new();
	struct page **pages = calloc(GT_PAGES, sizeof(*pages));
	unsigned long a;

	assert_non_null(pages);
	a = gt_map(e, c->mem);
	/* The selftest writes the whole area first. */
	mem_write(e->mm, a, GT_SIZE, 0x5a);
	for (size_t b = 0; b < ARRAY_SIZE(batches); b++) {
		for (unsigned long i = 0; i < GT_PAGES; i += batches[b])
			gt_batch(e, c, a + i * PAGE_SIZE,
				 min(batches[b], GT_PAGES - i), pages);
	}
	free(pages);
	ASSERT_OK(hetmm_check(e->m));
	env_free(e);
}

int main(void)
{
	enum {
		NR_LT = NR_LT_BACKINGS * 2 * 2 * NR_LT_HOW,
		NR_GT = NR_GT_MEM * NR_GT_OPS * 2
	};
	static struct lt_case lt[NR_LT];
	static struct gt_case gt[NR_GT];
	static struct CMUnitTest tests[NR_LT + NR_GT];
	static char names[NR_LT + NR_GT][128];
	size_t n = 0, k = 0;

	for (int b = 0; b < NR_LT_BACKINGS; b++)
		for (int sh = 1; sh >= 0; sh--)
			for (int rw = 1; rw >= 0; rw--)
				for (int h = 0; h < NR_LT_HOW; h++) {
					struct lt_case *c = &lt[k++];

					/* io_uring always pins R/W. */
					if (h == LT_IOURING && !rw)
						continue;
					*c = (struct lt_case){
						.b = (enum lt_backing)b,
						.shared = sh,
						.rw = rw,
						.how = (enum lt_how)h,
					};
					snprintf(names[n], sizeof(names[n]),
						 "[%s] %s longterm %s pin (%s)",
						 lt_how_names[h],
						 sh ? "shared" : "private",
						 rw ? "R/W" : "R/O",
						 lt_backing_names[b]);
					tests[n] = (struct CMUnitTest){
						.name = names[n],
						.test_func = lt_run,
						.initial_state = c,
					};
					n++;
				}
	k = 0;
	for (int m = 0; m < NR_GT_MEM; m++)
		for (int op = 0; op < NR_GT_OPS; op++)
			for (int w = 0; w < 2; w++) {
				struct gt_case *c = &gt[k++];

				*c = (struct gt_case){
					.mem = (enum gt_mem)m,
					.op = (enum gt_op)op,
					.write = w,
				};
				snprintf(names[n], sizeof(names[n]),
					 "gup_test %s %s %s", gt_op_names[op],
					 gt_mem_names[m], w ? "write" : "read");
				tests[n] = (struct CMUnitTest){
					.name = names[n],
					.test_func = gt_run,
					.initial_state = c,
				};
				n++;
			}
	return _cmocka_run_group_tests("gup_longterm", tests, n, NULL, NULL);
}
