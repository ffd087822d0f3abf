// SPDX-License-Identifier: MIT
/*
 * memfs_test.c - the in-memory filesystem and its page cache.
 *
 * Every test builds its own machine, creates a filesystem on it, and ends
 * with test_machine_finish(), which runs the memfs checker and fails on
 * leaked frames. File contents are compared against flat byte arrays.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <hetmm/fs.h>

#include "harness.h"

#define PS ((loff_t)PAGE_SIZE)

struct fs_fixture {
	struct hetmm_machine *m;
	struct hetmm_fs *fs;
	long base_pages; /* pages in use before the test touched anything */
};

static void fixture_init(struct fs_fixture *fx, bool data)
{
	fx->m = test_machine_new(64, data);
	fx->fs = hetmm_fs_create(fx->m);
	assert_false(IS_ERR(fx->fs));
	drain_all_pages(fx->m);
	fx->base_pages = hetmm_pages_in_use(fx->m);
}

static void fixture_finish(struct fs_fixture *fx)
{
	if (hetmm_check(fx->m))
		fail_msg("%s", hetmm_check_report(fx->m));
	ASSERT_OK(hetmm_fs_destroy(fx->fs));
	test_machine_finish(fx->m);
}

static long pages_used(struct fs_fixture *fx)
{
	return hetmm_pages_in_use(fx->m) - fx->base_pages;
}

static struct file *open_ok(struct hetmm_fs *fs, const char *path, int flags,
			    int kind)
{
	struct file *f = hetmm_fs_open(fs, path, flags, kind);

	if (IS_ERR(f))
		fail_msg("open %s: %s", path, hetmm_errname((int)PTR_ERR(f)));
	return f;
}

static void fill_pattern(unsigned char *buf, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)((i * 131 + seed * 7 + (i >> 12)) | 1);
}

static void assert_check_clean(struct hetmm_machine *m)
{
	if (hetmm_check(m))
		fail_msg("%s", hetmm_check_report(m));
}

/* ------------------------------------------------------------ namespace */

static void test_open_errors(void **state)
{
	struct fs_fixture fx;
	char name[HETMM_FS_NAME_MAX + 2];
	struct file *f, *g;

	(void)state;
	fixture_init(&fx, true);
	assert_ptr_equal(hetmm_fs_create(NULL), ERR_PTR(-EINVAL));
	assert_ptr_equal(hetmm_fs_open(fx.fs, NULL, O_RDWR | O_CREAT, 0),
			 ERR_PTR(-EINVAL));
	assert_ptr_equal(hetmm_fs_open(fx.fs, "", O_RDWR | O_CREAT, 0),
			 ERR_PTR(-EINVAL));
	assert_ptr_equal(hetmm_fs_open(NULL, "a", O_RDWR | O_CREAT, 0),
			 ERR_PTR(-EINVAL));
	assert_ptr_equal(hetmm_fs_open(fx.fs, "a", O_RDWR | O_CREAT, 7),
			 ERR_PTR(-EINVAL));
	assert_ptr_equal(hetmm_fs_open(fx.fs, "a", O_ACCMODE | O_CREAT, 0),
			 ERR_PTR(-EINVAL));
	assert_ptr_equal(hetmm_fs_open(fx.fs, "a", O_RDWR | O_CREAT | O_DIRECT, 0),
			 ERR_PTR(-EINVAL));
	assert_ptr_equal(hetmm_fs_open(fx.fs, "a", O_RDWR, 0),
			 ERR_PTR(-ENOENT));

	/* 255 bytes is fine, 256 is too long. */
	memset(name, 'n', sizeof(name));
	name[HETMM_FS_NAME_MAX + 1] = '\0';
	assert_ptr_equal(hetmm_fs_open(fx.fs, name, O_RDWR | O_CREAT, 0),
			 ERR_PTR(-ENAMETOOLONG));
	assert_int_equal(hetmm_fs_unlink(fx.fs, name), -ENAMETOOLONG);
	name[HETMM_FS_NAME_MAX] = '\0';
	f = open_ok(fx.fs, name, O_RDWR | O_CREAT | O_EXCL, 0);
	fput(f);

	f = open_ok(fx.fs, "a", O_RDWR | O_CREAT | O_EXCL, HETMM_FS_TMPFS);
	assert_ptr_equal(hetmm_fs_open(fx.fs, "a", O_RDWR | O_CREAT | O_EXCL, 0),
			 ERR_PTR(-EEXIST));
	/* O_EXCL without O_CREAT is ignored, as in Linux. */
	g = open_ok(fx.fs, "a", O_RDONLY | O_EXCL, 0);
	assert_ptr_equal(file_inode(g), file_inode(f));
	assert_int_equal(g->f_mode, FMODE_READ);
	assert_int_equal(f->f_mode, FMODE_READ | FMODE_WRITE);
	assert_int_equal(hetmm_fs_nr_inodes(fx.fs), 2);

	/* O_TRUNC empties an existing file; the kind of a new file sticks. */
	assert_int_equal(file_pwrite(f, "hello", 5, 0), 5);
	fput(g);
	g = open_ok(fx.fs, "a", O_WRONLY | O_TRUNC, HETMM_FS_WRITEBACK);
	assert_int_equal(i_size_read(file_inode(g)), 0);
	assert_int_equal(file_inode(g)->i_kind, HETMM_FS_TMPFS);
	assert_int_equal(pages_used(&fx), 0);
	fput(g);
	fput(f);

	assert_int_equal(hetmm_fs_unlink(fx.fs, "missing"), -ENOENT);
	assert_int_equal(hetmm_fs_unlink(fx.fs, ""), -EINVAL);
	assert_int_equal(hetmm_fs_unlink(fx.fs, NULL), -EINVAL);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "a"));
	assert_int_equal(hetmm_fs_unlink(fx.fs, "a"), -ENOENT);
	assert_ptr_equal(hetmm_fs_open(fx.fs, "a", O_RDWR, 0), ERR_PTR(-ENOENT));
	ASSERT_OK(hetmm_fs_unlink(fx.fs, name));
	assert_int_equal(hetmm_fs_nr_inodes(fx.fs), 0);
	fput(NULL);
	fixture_finish(&fx);
}

static void test_access_errors(void **state)
{
	struct fs_fixture fx;
	struct file *rw, *ro, *wo, *ap;
	char buf[16];

	(void)state;
	fixture_init(&fx, true);
	rw = open_ok(fx.fs, "f", O_RDWR | O_CREAT, 0);
	ro = open_ok(fx.fs, "f", O_RDONLY, 0);
	wo = open_ok(fx.fs, "f", O_WRONLY, 0);
	ap = open_ok(fx.fs, "f", O_WRONLY | O_APPEND, 0);

	assert_int_equal(file_pwrite(ro, "x", 1, 0), -EBADF);
	assert_int_equal(file_pread(wo, buf, 1, 0), -EBADF);
	assert_int_equal(file_truncate(ro, 0), -EBADF);
	assert_int_equal(file_truncate(rw, -1), -EINVAL);
	assert_int_equal(file_truncate(rw, HETMM_FS_MAXBYTES + 1), -EFBIG);
	assert_int_equal(file_pread(rw, buf, 1, -1), -EINVAL);
	assert_int_equal(file_pwrite(rw, buf, 1, -1), -EINVAL);
	assert_int_equal(file_pwrite(rw, NULL, 1, 0), -EINVAL);
	assert_int_equal(file_pwrite(rw, buf, 1, HETMM_FS_MAXBYTES), -EFBIG);
	assert_int_equal(file_pwrite(rw, buf, 0, 0), 0);
	assert_int_equal(file_pread(NULL, buf, 1, 0), -EINVAL);

	/* A write crossing the size limit is cut short at it. */
	assert_int_equal(file_pwrite(rw, "abcd", 4, HETMM_FS_MAXBYTES - 2), 2);
	assert_int_equal(i_size_read(file_inode(rw)), HETMM_FS_MAXBYTES);
	assert_int_equal(file_pread(ro, buf, 8, HETMM_FS_MAXBYTES - 3), 3);
	assert_memory_equal(buf, "\0ab", 3);
	ASSERT_OK(file_truncate(wo, HETMM_FS_MAXBYTES));
	ASSERT_OK(file_truncate(wo, 4));
	assert_int_equal(pages_used(&fx), 0);

	/* O_APPEND ignores the offset, as Linux pwrite does. */
	assert_int_equal(file_pwrite(rw, "0123", 4, 0), 4);
	assert_int_equal(file_pwrite(ap, "45", 2, 0), 2);
	assert_int_equal(file_pread(ro, buf, sizeof(buf), 0), 6);
	assert_memory_equal(buf, "012345", 6);
	assert_int_equal(file_pread(ro, buf, sizeof(buf), 6), 0);
	assert_int_equal(file_pread(ro, buf, sizeof(buf), 1000), 0);

	fput(ap);
	fput(wo);
	fput(get_file(ro));
	fput(ro);
	fput(rw);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "f"));
	fixture_finish(&fx);
}

/* ---------------------------------------------------------- data paths */

static void test_rw_roundtrip(void **state)
{
	struct fs_fixture fx;
	enum { LEN = 3 * PAGE_SIZE + 777 };
	unsigned char *in = malloc(LEN), *out = malloc(LEN + 64);
	struct file *f;

	(void)state;
	fixture_init(&fx, true);
	f = open_ok(fx.fs, "rt", O_RDWR | O_CREAT, 0);
	fill_pattern(in, LEN, 1);

	/* Straddles five pages: 4000 .. 4000 + 13065. */
	assert_int_equal(file_pwrite(f, in, LEN, 4000), LEN);
	assert_int_equal(i_size_read(file_inode(f)), 4000 + LEN);
	assert_int_equal(f->f_mapping->nrpages, 5);
	assert_int_equal(pages_used(&fx), 5);
	assert_int_equal(file_pread(f, out, LEN, 4000), LEN);
	assert_memory_equal(in, out, LEN);
	/* The first 4000 bytes are a hole inside page 0. */
	assert_int_equal(file_pread(f, out, 4000, 0), 4000);
	for (int i = 0; i < 4000; i++)
		assert_int_equal(out[i], 0);

	/* Short read at EOF, then nothing. */
	assert_int_equal(file_pread(f, out, LEN + 64, 4100), LEN - 100);
	assert_memory_equal(out, in + 100, LEN - 100);
	assert_int_equal(file_pread(f, out, 10, 4000 + LEN), 0);

	/* Overwrite in the middle, unaligned. */
	fill_pattern(in, 5000, 9);
	assert_int_equal(file_pwrite(f, in, 5000, 6000), 5000);
	assert_int_equal(file_pread(f, out, 5000, 6000), 5000);
	assert_memory_equal(in, out, 5000);
	assert_int_equal(i_size_read(file_inode(f)), 4000 + LEN);

	/* Sparse: a write far away allocates one page, the gap reads zero. */
	assert_int_equal(file_pwrite(f, "z", 1, 100 * PS + 5), 1);
	assert_int_equal(f->f_mapping->nrpages, 6);
	assert_int_equal(file_pread(f, out, 64, 50 * PS), 64);
	for (int i = 0; i < 64; i++)
		assert_int_equal(out[i], 0);
	assert_int_equal(file_pread(f, out, 8, 100 * PS), 6);
	assert_memory_equal(out, "\0\0\0\0\0z", 6);

	assert_check_clean(fx.m);
	fput(f);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "rt"));
	assert_int_equal(pages_used(&fx), 0);
	free(in);
	free(out);
	fixture_finish(&fx);
}

static void test_metadata_only(void **state)
{
	struct fs_fixture fx;
	unsigned char buf[PAGE_SIZE];
	struct file *f;
	struct folio *folio;

	(void)state;
	fixture_init(&fx, false);
	f = open_ok(fx.fs, "meta", O_RDWR | O_CREAT, HETMM_FS_WRITEBACK);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(file_pwrite(f, buf, sizeof(buf), PS / 2),
			 (ssize_t)sizeof(buf));
	assert_int_equal(i_size_read(file_inode(f)), PS + PS / 2);
	assert_int_equal(pages_used(&fx), 2);
	folio = filemap_get_folio(f->f_mapping, 1);
	assert_false(IS_ERR(folio));
	assert_null(folio_address(folio));
	assert_true(folio_test_flag(folio, PG_dirty));
	folio_put(folio);
	/* No bytes are carried: reads see zeros. */
	assert_int_equal(file_pread(f, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(hetmm_fs_writeback(fx.fs), 2);
	ASSERT_OK(file_truncate(f, 1));
	assert_int_equal(pages_used(&fx), 1);
	fput(f);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "meta"));
	assert_int_equal(pages_used(&fx), 0);
	fixture_finish(&fx);
}

/* ------------------------------------------------------------- truncate */

static struct {
	int calls;
	pgoff_t first, last;
	struct address_space *mapping;
	struct folio *keep_mapped; /* pretend this folio stays mapped */
} hook_log;

static void record_unmap(struct address_space *mapping, pgoff_t first,
			 pgoff_t last)
{
	hook_log.calls++;
	hook_log.first = first;
	hook_log.last = last;
	hook_log.mapping = mapping;
	/* Truncate calls us with the inode lock held for write. */
	assert_false(down_read_trylock(&mapping->host->i_rwsem));
}

static const struct hetmm_fs_hooks record_hooks = {
	.unmap_mapping_range = record_unmap,
};

static void test_truncate_shrink_grow(void **state)
{
	struct fs_fixture fx;
	unsigned char *buf = malloc(5 * PAGE_SIZE);
	struct file *f;
	struct folio *folio;
	unsigned char *kaddr;

	(void)state;
	memset(&hook_log, 0, sizeof(hook_log));
	fixture_init(&fx, true);
	hetmm_fs_set_hooks(fx.fs, &record_hooks);
	f = open_ok(fx.fs, "t", O_RDWR | O_CREAT, 0);
	memset(buf, 0xaa, 5 * PAGE_SIZE);
	assert_int_equal(file_pwrite(f, buf, 5 * PAGE_SIZE, 0), 5 * PS);
	assert_int_equal(pages_used(&fx), 5);

	/*
	 * |AAAA|AAAA|AAAA|AAAA|AAAA|   5 pages
	 * |AAAA|AAAA|A000|             truncate to 2 pages + 100
	 */
	ASSERT_OK(file_truncate(f, 2 * PS + 100));
	assert_int_equal(hook_log.calls, 1);
	assert_ptr_equal(hook_log.mapping, f->f_mapping);
	assert_int_equal(hook_log.first, 3);
	assert_int_equal(hook_log.last, 4);
	assert_int_equal(pages_used(&fx), 3);
	assert_int_equal(f->f_mapping->nrpages, 3);
	assert_int_equal(i_size_read(file_inode(f)), 2 * PS + 100);
	assert_ptr_equal(filemap_get_folio(f->f_mapping, 3), ERR_PTR(-ENOENT));
	/* The partial last page keeps its folio, zeroed past EOF. */
	folio = filemap_get_folio(f->f_mapping, 2);
	assert_false(IS_ERR(folio));
	kaddr = folio_address(folio);
	for (size_t i = 0; i < PAGE_SIZE; i++)
		assert_int_equal(kaddr[i], i < 100 ? 0xaa : 0);
	/* Junk written beyond EOF (as through a shared mapping)... */
	memset(kaddr + 200, 0x77, 50);
	folio_put(folio);
	assert_check_clean(fx.m);

	/* Growing allocates nothing and calls no hook; holes read zero. */
	ASSERT_OK(file_truncate(f, 5 * PS));
	assert_int_equal(hook_log.calls, 1);
	assert_int_equal(pages_used(&fx), 3);
	assert_int_equal(file_pread(f, buf, 5 * PAGE_SIZE, 0), 5 * PS);
	for (loff_t i = 0; i < 5 * PS; i++)
		assert_int_equal(buf[i], i < 2 * PS + 100 ? 0xaa : 0);

	/* Shrinking to a page boundary drops the pages beyond it. */
	ASSERT_OK(file_truncate(f, PS));
	assert_int_equal(hook_log.calls, 2);
	assert_int_equal(hook_log.first, 1);
	assert_int_equal(hook_log.last, 4);
	assert_int_equal(pages_used(&fx), 1);
	/* Same size: nothing happens. */
	ASSERT_OK(file_truncate(f, PS));
	assert_int_equal(hook_log.calls, 2);
	ASSERT_OK(file_truncate(f, 0));
	assert_int_equal(hook_log.calls, 3);
	assert_int_equal(hook_log.first, 0);
	assert_int_equal(hook_log.last, 0);
	assert_int_equal(pages_used(&fx), 0);
	assert_int_equal(f->f_mapping->nrpages, 0);

	fput(f);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "t"));
	free(buf);
	fixture_finish(&fx);
}

static void test_punch_hole(void **state)
{
	struct fs_fixture fx;
	unsigned char *buf = malloc(6 * PAGE_SIZE);
	struct inode *inode;
	struct file *f;

	(void)state;
	memset(&hook_log, 0, sizeof(hook_log));
	fixture_init(&fx, true);
	hetmm_fs_set_hooks(fx.fs, &record_hooks);
	f = open_ok(fx.fs, "p", O_RDWR | O_CREAT, HETMM_FS_WRITEBACK);
	inode = file_inode(f);
	memset(buf, 0xcc, 6 * PAGE_SIZE);
	assert_int_equal(file_pwrite(f, buf, 6 * PAGE_SIZE, 0), 6 * PS);
	assert_int_equal(hetmm_fs_writeback(fx.fs), 6);

	/*
	 * |CCCC|CCCC|CCCC|CCCC|CCCC|CCCC|
	 * |CC00|0000|0000|00CC|CCCC|CCCC|   punch [PS + 2048, 3 PS + 2048)
	 */
	inode_lock(inode);
	truncate_inode_pages_range(f->f_mapping, PS + 2048, 3 * PS + 2047);
	inode_unlock(inode);
	assert_int_equal(hook_log.calls, 1);
	assert_int_equal(hook_log.first, 2);
	assert_int_equal(hook_log.last, 2);
	assert_int_equal(f->f_mapping->nrpages, 5);
	assert_int_equal(i_size_read(inode), 6 * PS);
	assert_int_equal(file_pread(f, buf, 6 * PAGE_SIZE, 0), 6 * PS);
	for (loff_t i = 0; i < 6 * PS; i++)
		assert_int_equal(buf[i],
				 i >= PS + 2048 && i < 3 * PS + 2048 ? 0 : 0xcc);
	/* The zeroed edges inside EOF are dirty again. */
	assert_int_equal(hetmm_fs_writeback(fx.fs), 2);

	/* Within one page: nothing unmapped, bytes zeroed. */
	inode_lock(inode);
	truncate_inode_pages_range(f->f_mapping, 5 * PS + 10, 5 * PS + 19);
	inode_unlock(inode);
	assert_int_equal(hook_log.calls, 1);
	assert_int_equal(file_pread(f, buf, 30, 5 * PS), 30);
	for (int i = 0; i < 30; i++)
		assert_int_equal(buf[i], i >= 10 && i < 20 ? 0 : 0xcc);

	/* To the end (-1): whole pages from 5 on, up to the largest index. */
	inode_lock(inode);
	truncate_inode_pages_range(f->f_mapping, 4 * PS, -1);
	inode_unlock(inode);
	assert_int_equal(hook_log.calls, 2);
	assert_int_equal(hook_log.first, 4);
	assert_int_equal(hook_log.last, HETMM_FS_MAX_INDEX);
	assert_int_equal(f->f_mapping->nrpages, 3);

	fput(f);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "p"));
	assert_int_equal(pages_used(&fx), 0);
	free(buf);
	fixture_finish(&fx);
}

/* A hook that "forgets" one folio: truncate must report it. */
static void leaky_unmap(struct address_space *mapping, pgoff_t first,
			pgoff_t last)
{
	(void)mapping;
	(void)first;
	(void)last;
	hook_log.calls++;
}

static void test_truncate_mapped_is_bug(void **state)
{
	static const struct hetmm_fs_hooks leaky = {
		.unmap_mapping_range = leaky_unmap,
	};
	struct fs_fixture fx;
	struct folio *folio;
	struct file *f;

	(void)state;
	memset(&hook_log, 0, sizeof(hook_log));
	fixture_init(&fx, true);
	hetmm_fs_set_hooks(fx.fs, &leaky);
	f = open_ok(fx.fs, "m", O_RDWR | O_CREAT, 0);
	assert_int_equal(file_pwrite(f, "x", 1, 0), 1);

	/* Pretend a process maps page 0 (a mapping holds a reference). */
	folio = filemap_get_folio(f->f_mapping, 0);
	assert_false(IS_ERR(folio));
	atomic_fetch_add(&folio->page._mapcount, 1);

	ASSERT_OK(file_truncate(f, 0));
	assert_int_equal(hook_log.calls, 1);
	assert_int_equal(fx.m->nr_bad, 1);
	/* Out of the cache regardless; the "mapping" still holds it. */
	assert_null(folio->page.mapping);
	assert_int_equal(folio_ref_count(folio), 1);
	assert_int_equal(f->f_mapping->nrpages, 0);

	atomic_fetch_sub(&folio->page._mapcount, 1);
	folio_put(folio);
	hetmm_bad_page_clear(fx.m);
	fput(f);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "m"));
	fixture_finish(&fx);
}

/* ------------------------------------------------------------- lifetime */

static void test_unlink_while_open(void **state)
{
	struct fs_fixture fx;
	unsigned char in[3 * PAGE_SIZE], out[3 * PAGE_SIZE];
	struct file *f, *g;
	struct inode *inode;

	(void)state;
	fixture_init(&fx, true);
	f = open_ok(fx.fs, "u", O_RDWR | O_CREAT, HETMM_FS_WRITEBACK);
	fill_pattern(in, sizeof(in), 3);
	assert_int_equal(file_pwrite(f, in, sizeof(in), 0), (ssize_t)sizeof(in));
	g = get_file(f);
	inode = file_inode(f);
	ihold(inode); /* as a mapping of the file would */

	ASSERT_OK(hetmm_fs_unlink(fx.fs, "u"));
	assert_int_equal(inode->i_nlink, 0);
	assert_ptr_equal(hetmm_fs_open(fx.fs, "u", O_RDWR, 0), ERR_PTR(-ENOENT));
	assert_int_equal(hetmm_fs_nr_inodes(fx.fs), 1);
	/* A new file may take the name; the old one is untouched. */
	fput(open_ok(fx.fs, "u", O_RDWR | O_CREAT | O_EXCL, 0));
	assert_int_equal(hetmm_fs_nr_inodes(fx.fs), 2);

	assert_int_equal(file_pread(g, out, sizeof(out), 0), (ssize_t)sizeof(out));
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(file_pwrite(g, in, 10, 3 * PS), 10);
	assert_int_equal(pages_used(&fx), 4);
	/* Busy filesystems refuse to go away. */
	assert_int_equal(hetmm_fs_destroy(fx.fs), -EBUSY);

	fput(f);
	fput(g);
	assert_int_equal(pages_used(&fx), 4);
	assert_check_clean(fx.m);
	iput(inode); /* the last reference: everything goes */
	assert_int_equal(pages_used(&fx), 0);
	assert_int_equal(hetmm_fs_nr_inodes(fx.fs), 1);

	/* The filesystem drops the still-named "u" on destroy. */
	fixture_finish(&fx);
}

static void test_pinned_folio_outlives_file(void **state)
{
	struct fs_fixture fx;
	struct folio *folio;
	struct file *f;

	(void)state;
	fixture_init(&fx, true);
	f = open_ok(fx.fs, "pin", O_RDWR | O_CREAT, 0);
	assert_int_equal(file_pwrite(f, "abc", 3, 0), 3);
	folio = filemap_get_folio(f->f_mapping, 0);
	assert_false(IS_ERR(folio));
	assert_int_equal(folio_ref_count(folio), 2);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "pin"));
	fput(f);
	/* The cache let go; our reference keeps the frame, detached. */
	assert_int_equal(folio_ref_count(folio), 1);
	assert_null(folio->page.mapping);
	assert_memory_equal(folio_address(folio), "abc", 3);
	assert_int_equal(pages_used(&fx), 1);
	folio_put(folio);
	assert_int_equal(pages_used(&fx), 0);
	fixture_finish(&fx);
}

/*
 * folio_migrate_mapping(): refused (-EAGAIN, nothing changed) while the
 * old folio has a reference beyond the cache's and the migrator's; else
 * the copy takes the slot, the cache's reference, PG_dirty with the dirty
 * mark, and the old folio leaves the cache.
 */
static void test_migrate_mapping(void **state)
{
	struct fs_fixture fx;
	struct folio *src, *dst, *extra, *found;
	struct file *f, *wb;

	(void)state;
	fixture_init(&fx, true);
	f = open_ok(fx.fs, "mig", O_RDWR | O_CREAT, HETMM_FS_TMPFS);
	wb = open_ok(fx.fs, "mig-wb", O_RDWR | O_CREAT, HETMM_FS_WRITEBACK);
	assert_int_equal(file_pwrite(f, "abc", 3, PS + 1), 3);
	src = filemap_get_folio(f->f_mapping, 1); /* the migrator's */
	assert_false(IS_ERR(src));
	extra = filemap_get_folio(f->f_mapping, 1); /* e.g. a pread */
	dst = folio_alloc(fx.m, GFP_KERNEL, 0);
	assert_non_null(dst);
	folio_lock(src);
	assert_true(folio_trylock(dst));
	memcpy(folio_address(dst), folio_address(src), PAGE_SIZE);
	assert_int_equal(folio_migrate_mapping(f->f_mapping, dst, src, 0),
			 -EAGAIN);
	assert_ptr_equal(src->page.mapping, f->f_mapping);
	assert_null(dst->page.mapping);
	assert_int_equal(folio_ref_count(dst), 1);
	/* ... unless the caller says it expects that reference. */
	assert_int_equal(folio_migrate_mapping(f->f_mapping, dst, src, 1), 0);
	folio_put(extra);
	folio_unlock(dst);
	folio_unlock(src);
	assert_null(src->page.mapping);
	assert_false(folio_test_flag(src, PG_dirty));
	assert_int_equal(folio_ref_count(src), 1);
	folio_put(src);
	found = filemap_get_folio(f->f_mapping, 1);
	assert_ptr_equal(found, dst);
	assert_ptr_equal(dst->page.mapping, f->f_mapping);
	assert_int_equal(dst->page.index, 1);
	assert_true(folio_test_flag(dst, PG_dirty));
	assert_true(xa_get_mark(&f->f_mapping->i_pages, 1, PAGECACHE_TAG_DIRTY));
	assert_true(folio_test_flag(dst, PG_swapbacked));
	assert_int_equal(folio_ref_count(dst), 3); /* cache, alloc, lookup */
	folio_put(found);
	folio_put(dst); /* the allocation's: the cache keeps it */
	assert_check_clean(fx.m);

	/* A clean folio of a writeback file stays clean. */
	assert_int_equal(file_pwrite(wb, "x", 1, 0), 1);
	assert_int_equal(hetmm_inode_writeback(file_inode(wb)), 1);
	src = filemap_get_folio(wb->f_mapping, 0);
	dst = folio_alloc(fx.m, GFP_KERNEL, 0);
	assert_non_null(dst);
	folio_lock(src);
	assert_true(folio_trylock(dst));
	assert_int_equal(folio_migrate_mapping(wb->f_mapping, dst, src, 0), 0);
	folio_unlock(dst);
	folio_unlock(src);
	folio_put(src);
	assert_false(folio_test_flag(dst, PG_dirty));
	assert_false(folio_test_flag(dst, PG_swapbacked));
	folio_put(dst);
	assert_check_clean(fx.m);

	fput(f);
	fput(wb);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "mig"));
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "mig-wb"));
	assert_int_equal(pages_used(&fx), 0);
	fixture_finish(&fx);
}

static void test_two_filesystems(void **state)
{
	struct fs_fixture fx;
	struct hetmm_fs *fs2;
	struct file *a, *b;

	(void)state;
	fixture_init(&fx, true);
	fs2 = hetmm_fs_create(fx.m);
	assert_false(IS_ERR(fs2));
	assert_ptr_equal(hetmm_fs_machine(fs2), fx.m);
	a = open_ok(fx.fs, "same", O_RDWR | O_CREAT | O_EXCL, 0);
	b = open_ok(fs2, "same", O_RDWR | O_CREAT | O_EXCL, 0);
	assert_ptr_not_equal(file_inode(a), file_inode(b));
	assert_int_equal(file_pwrite(b, "b", 1, 0), 1);
	assert_int_equal(i_size_read(file_inode(a)), 0);
	assert_check_clean(fx.m);
	fput(a);
	fput(b);
	/* Destroy with names but no users: the pages go too. */
	ASSERT_OK(hetmm_fs_destroy(fs2));
	assert_int_equal(pages_used(&fx), 0);
	ASSERT_OK(hetmm_fs_destroy(NULL));
	fixture_finish(&fx);
}

/* ---------------------------------------------------------- page cache */

struct grab_arg {
	struct address_space *mapping;
	struct folio *folio;
	atomic_int done;
};

static void *grab_thread(void *p)
{
	struct grab_arg *ga = p;

	ga->folio = filemap_grab_folio(ga->mapping, 7);
	atomic_store(&ga->done, 1);
	return NULL;
}

static void test_grab_get(void **state)
{
	struct fs_fixture fx;
	struct address_space *mapping;
	struct folio *folio, *again;
	struct grab_arg ga;
	pthread_t t;
	struct file *f;

	(void)state;
	fixture_init(&fx, true);
	f = open_ok(fx.fs, "g", O_RDWR | O_CREAT, 0);
	mapping = f->f_mapping;
	ASSERT_OK(file_truncate(f, 16 * PS));

	assert_ptr_equal(filemap_get_folio(mapping, 3), ERR_PTR(-ENOENT));
	assert_ptr_equal(filemap_grab_folio(mapping, HETMM_FS_MAX_INDEX + 1),
			 ERR_PTR(-EFBIG));

	/* Created: locked, one cache reference plus ours, zero-filled. */
	inode_lock_shared(file_inode(f));
	folio = filemap_grab_folio(mapping, 3);
	inode_unlock_shared(file_inode(f));
	assert_false(IS_ERR(folio));
	assert_true(folio_test_locked(folio));
	assert_int_equal(folio_ref_count(folio), 2);
	assert_ptr_equal(folio->page.mapping, mapping);
	assert_int_equal(folio->page.index, 3);
	assert_true(folio_test_flag(folio, PG_uptodate));
	assert_true(folio_test_flag(folio, PG_swapbacked));
	assert_false(folio_test_flag(folio, PG_dirty));
	assert_int_equal(folio_mapcount(folio), 0);
	assert_int_equal(((unsigned char *)folio_address(folio))[123], 0);
	assert_int_equal(mapping->nrpages, 1);
	folio_unlock(folio);
	folio_put(folio);
	assert_int_equal(folio_ref_count(folio), 1);

	/* Found: the same folio, with a reference, unlocked for get. */
	again = filemap_get_folio(mapping, 3);
	assert_ptr_equal(again, folio);
	assert_false(folio_test_locked(again));
	assert_int_equal(folio_ref_count(folio), 2);
	folio_put(again);
	again = filemap_grab_folio(mapping, 3);
	assert_ptr_equal(again, folio);
	assert_true(folio_test_locked(again));
	assert_int_equal(mapping->nrpages, 1);

	/* Dirtying tags the slot once. */
	assert_true(folio_mark_dirty(folio));
	assert_false(folio_mark_dirty(folio));
	assert_true(xa_get_mark(&mapping->i_pages, 3, PAGECACHE_TAG_DIRTY));
	folio_unlock(again);
	folio_put(again);

	/* A second grabber sleeps on the folio lock of the first. */
	folio = filemap_grab_folio(mapping, 7);
	assert_false(IS_ERR(folio));
	ga.mapping = mapping;
	ga.folio = NULL;
	atomic_init(&ga.done, 0);
	ASSERT_OK(pthread_create(&t, NULL, grab_thread, &ga));
	usleep(20000);
	assert_int_equal(atomic_load(&ga.done), 0);
	folio_unlock(folio);
	ASSERT_OK(pthread_join(t, NULL));
	assert_ptr_equal(ga.folio, folio);
	assert_int_equal(folio_ref_count(folio), 3);
	folio_unlock(ga.folio);
	folio_put(ga.folio);
	folio_put(folio);

	/* Allocation failures leave nothing behind. */
	ASSERT_OK(hetmm_fault_set(&fx.m->faults, HETMM_FAULT_alloc_pages,
				  FAULT_NTH, 1, 0));
	assert_ptr_equal(filemap_grab_folio(mapping, 9), ERR_PTR(-ENOMEM));
	hetmm_fault_reset(&fx.m->faults);
	assert_ptr_equal(filemap_get_folio(mapping, 9), ERR_PTR(-ENOENT));
	assert_int_equal(mapping->nrpages, 2);
	assert_int_equal(pages_used(&fx), 2);

	fput(f);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "g"));
	assert_int_equal(pages_used(&fx), 0);
	fixture_finish(&fx);
}

static bool fail_always(void *arg)
{
	(void)arg;
	return true;
}

static void test_grab_xarray_enomem(void **state)
{
	struct fs_fixture fx;
	struct address_space *mapping;
	struct file *f;

	(void)state;
	fixture_init(&fx, true);
	f = open_ok(fx.fs, "x", O_RDWR | O_CREAT, 0);
	mapping = f->f_mapping;
	xa_lock(&mapping->i_pages);
	mapping->i_pages.xa_fail_alloc = fail_always;
	xa_unlock(&mapping->i_pages);
	assert_ptr_equal(filemap_grab_folio(mapping, 0), ERR_PTR(-ENOMEM));
	assert_int_equal(file_pwrite(f, "abc", 3, 0), -ENOMEM);
	assert_int_equal(i_size_read(file_inode(f)), 0);
	assert_int_equal(pages_used(&fx), 0);
	assert_int_equal(mapping->nrpages, 0);
	xa_lock(&mapping->i_pages);
	mapping->i_pages.xa_fail_alloc = NULL;
	xa_unlock(&mapping->i_pages);
	assert_int_equal(file_pwrite(f, "abc", 3, 0), 3);
	fput(f);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "x"));
	fixture_finish(&fx);
}

static void test_checker_catches_folio_beyond_eof(void **state)
{
	struct fs_fixture fx;
	struct folio *folio;
	struct file *f;

	(void)state;
	fixture_init(&fx, true);
	f = open_ok(fx.fs, "c", O_RDWR | O_CREAT, 0);
	/* Nobody checked i_size: a folio lands beyond EOF. */
	folio = filemap_grab_folio(f->f_mapping, 5);
	assert_false(IS_ERR(folio));
	folio_unlock(folio);
	assert_int_equal(hetmm_check(fx.m), -EUCLEAN);
	assert_non_null(strstr(hetmm_check_report(fx.m), "beyond EOF"));
	/* PG_dirty set behind the cache's back is caught too. */
	folio_set_flag(folio, PG_dirty);
	assert_int_equal(hetmm_check(fx.m), -EUCLEAN);
	assert_non_null(strstr(hetmm_check_report(fx.m), "dirty tag"));
	folio_clear_flag(folio, PG_dirty);
	folio_put(folio);

	inode_lock(file_inode(f));
	truncate_inode_pages_range(f->f_mapping, 0, -1);
	inode_unlock(file_inode(f));
	assert_check_clean(fx.m);
	fput(f);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "c"));
	fixture_finish(&fx);
}

/* ------------------------------------------------------------ writeback */

static struct {
	int calls;
	int ret;
} mkclean_log;

static int record_mkclean(struct folio *folio)
{
	assert_true(folio_test_locked(folio));
	mkclean_log.calls++;
	return mkclean_log.ret;
}

static void test_kinds_and_writeback(void **state)
{
	static const struct hetmm_fs_hooks hooks = {
		.folio_mkclean = record_mkclean,
	};
	struct fs_fixture fx;
	unsigned char buf[3 * PAGE_SIZE];
	struct file *tmp, *wb;
	struct folio *folio;

	(void)state;
	memset(&mkclean_log, 0, sizeof(mkclean_log));
	fixture_init(&fx, true);
	hetmm_fs_set_hooks(fx.fs, &hooks);
	tmp = open_ok(fx.fs, "tmp", O_RDWR | O_CREAT, HETMM_FS_TMPFS);
	wb = open_ok(fx.fs, "wb", O_RDWR | O_CREAT, HETMM_FS_WRITEBACK);
	assert_false(mapping_needs_writeback(tmp->f_mapping));
	assert_true(shmem_mapping(tmp->f_mapping));
	assert_true(mapping_needs_writeback(wb->f_mapping));
	assert_false(shmem_mapping(wb->f_mapping));
	assert_false(mapping_mapped(wb->f_mapping));

	memset(buf, 1, sizeof(buf));
	assert_int_equal(file_pwrite(tmp, buf, sizeof(buf), 0), 3 * PS);
	assert_int_equal(file_pwrite(wb, buf, sizeof(buf), 0), 3 * PS);

	/* tmpfs has nothing to write back: it stays dirty. */
	assert_int_equal(hetmm_inode_writeback(file_inode(tmp)), 0);
	folio = filemap_get_folio(tmp->f_mapping, 1);
	assert_true(folio_test_flag(folio, PG_dirty));
	folio_put(folio);

	/* The writeback file is cleaned, once, with mkclean asked per folio. */
	folio = filemap_get_folio(wb->f_mapping, 1);
	assert_true(folio_test_flag(folio, PG_dirty));
	assert_false(folio_test_flag(folio, PG_swapbacked));
	assert_int_equal(hetmm_fs_writeback(fx.fs), 3);
	assert_int_equal(mkclean_log.calls, 3);
	assert_false(folio_test_flag(folio, PG_dirty));
	assert_false(folio_test_flag(folio, PG_writeback));
	assert_false(xa_get_mark(&wb->f_mapping->i_pages, 1,
				 PAGECACHE_TAG_DIRTY));
	assert_int_equal(atomic_load(&file_inode(wb)->i_nr_written), 3);
	assert_int_equal(hetmm_fs_writeback(fx.fs), 0);
	assert_int_equal(mkclean_log.calls, 3);

	/* Redirtying one page writes one page; its data are intact. */
	assert_int_equal(file_pwrite(wb, "new", 3, PS + 10), 3);
	assert_true(folio_test_flag(folio, PG_dirty));
	mkclean_log.ret = 1; /* a dirty PTE: still written, then clean */
	assert_int_equal(hetmm_inode_writeback(file_inode(wb)), 1);
	assert_false(folio_test_flag(folio, PG_dirty));
	assert_int_equal(atomic_load(&file_inode(wb)->i_nr_written), 4);
	assert_memory_equal((char *)folio_address(folio) + 10, "new", 3);
	folio_put(folio);

	/* Truncation cancels dirtiness without writing. */
	assert_int_equal(file_pwrite(wb, "x", 1, 2 * PS), 1);
	ASSERT_OK(file_truncate(wb, PS));
	assert_int_equal(hetmm_fs_writeback(fx.fs), 0);
	assert_check_clean(fx.m);

	fput(tmp);
	fput(wb);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "tmp"));
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "wb"));
	assert_int_equal(pages_used(&fx), 0);
	fixture_finish(&fx);
}

/* ------------------------------------------------------ fault injection */

/*
 * Fail the Nth page allocation of a multi-page write, for N = 1, 2, ...
 * until the write completes. Each time the file must hold either its old
 * contents, or the old contents with a prefix of the new bytes written
 * over them (and the size grown to cover that prefix), and nothing leaks.
 */
static void injection_loop(enum fault_mode mode, loff_t old_size, loff_t off)
{
	enum { NEW = 5 * PAGE_SIZE + 300, MAXF = 16 * PAGE_SIZE };
	unsigned char *old = malloc(MAXF), *in = malloc(NEW);
	unsigned char *want = malloc(MAXF), *got = malloc(MAXF);
	struct fs_fixture fx;
	bool completed = false;

	fixture_init(&fx, true);
	fill_pattern(old, MAXF, 5);
	fill_pattern(in, NEW, 6);
	for (unsigned int n = 1; !completed; n++) {
		struct file *f = open_ok(fx.fs, "inj", O_RDWR | O_CREAT | O_EXCL, 0);
		loff_t size, expect_size;
		ssize_t ret;

		assert_true(n < 64);
		assert_int_equal(file_pwrite(f, old, (size_t)old_size, 0),
				 old_size);
		ASSERT_OK(hetmm_fault_set(&fx.m->faults, HETMM_FAULT_alloc_pages,
					  mode, n, 0));
		ret = file_pwrite(f, in, NEW, off);
		hetmm_fault_reset(&fx.m->faults);

		memset(want, 0, MAXF);
		memcpy(want, old, (size_t)old_size);
		expect_size = old_size;
		if (ret == -ENOMEM) {
			ret = 0;
		} else {
			assert_true(ret > 0 && ret <= NEW);
			memcpy(want + off, in, (size_t)ret);
			expect_size = max(old_size, off + ret);
			completed = ret == NEW;
		}
		size = i_size_read(file_inode(f));
		assert_int_equal(size, expect_size);
		assert_int_equal(file_pread(f, got, MAXF, 0), size);
		assert_memory_equal(got, want, (size_t)size);
		assert_check_clean(fx.m);

		fput(f);
		ASSERT_OK(hetmm_fs_unlink(fx.fs, "inj"));
		assert_int_equal(pages_used(&fx), 0);
	}
	free(old);
	free(in);
	free(want);
	free(got);
	fixture_finish(&fx);
}

static void test_pwrite_injection(void **state)
{
	(void)state;
	/* Into an empty file: the first failure leaves it unchanged. */
	injection_loop(FAULT_NTH, 0, 100);
	injection_loop(FAULT_FROM_NTH, 0, 100);
	/* Over and past existing pages, from a hole beyond EOF. */
	injection_loop(FAULT_NTH, 2 * PS - 100, PS + 50);
	injection_loop(FAULT_FROM_NTH, 2 * PS - 100, 3 * PS + 1);
}

/* ----------------------------------------------------------- threads */

#define NR_WORKERS 4
#define SHARED_PAGES 32

struct worker {
	pthread_t thread;
	struct file *own;    /* private region of the shared file */
	struct file *shared; /* everybody grabs the same indices */
	unsigned int id;
	unsigned int rounds;
};

static void *worker_fn(void *p)
{
	struct worker *w = p;
	unsigned char in[2 * PAGE_SIZE], out[2 * PAGE_SIZE];
	loff_t base = (loff_t)w->id * 8 * PS;

	for (unsigned int r = 0; r < w->rounds; r++) {
		struct inode *inode = file_inode(w->shared);
		pgoff_t index = (r * 7 + w->id) % SHARED_PAGES;
		struct folio *folio;

		/* Racing creators of one index must end up with one folio. */
		inode_lock_shared(inode);
		folio = filemap_grab_folio(w->shared->f_mapping, index);
		inode_unlock_shared(inode);
		if (IS_ERR(folio))
			return folio;
		((unsigned char *)folio_address(folio))[w->id] = (unsigned char)r;
		folio_mark_dirty(folio);
		folio_unlock(folio);
		folio_put(folio);

		memset(in, (int)(w->id * 16 + (r & 15)), sizeof(in));
		if (file_pwrite(w->own, in, sizeof(in),
				base + (loff_t)(r % 5) * 1000) !=
		    (ssize_t)sizeof(in))
			return ERR_PTR(-EIO);
		if (file_pread(w->own, out, sizeof(out),
			       base + (loff_t)(r % 5) * 1000) !=
			    (ssize_t)sizeof(out) ||
		    memcmp(in, out, sizeof(in)))
			return ERR_PTR(-EIO);
		if (r % 16 == 0)
			hetmm_fs_writeback(inode->i_fs);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	struct worker w[NR_WORKERS];
	struct fs_fixture fx;
	struct file *own, *shared;
	unsigned long index;
	struct folio *folio;

	(void)state;
	fixture_init(&fx, true);
	own = open_ok(fx.fs, "own", O_RDWR | O_CREAT, HETMM_FS_WRITEBACK);
	shared = open_ok(fx.fs, "shared", O_RDWR | O_CREAT, HETMM_FS_WRITEBACK);
	ASSERT_OK(file_truncate(shared, SHARED_PAGES * PS));
	for (unsigned int i = 0; i < NR_WORKERS; i++) {
		w[i] = (struct worker){ .own = own, .shared = shared, .id = i,
					.rounds = test_scale(300, 5000) };
		ASSERT_OK(pthread_create(&w[i].thread, NULL, worker_fn, &w[i]));
	}
	for (unsigned int i = 0; i < NR_WORKERS; i++) {
		void *ret;

		ASSERT_OK(pthread_join(w[i].thread, &ret));
		assert_null(ret);
	}
	assert_int_equal(shared->f_mapping->nrpages, SHARED_PAGES);
	xa_for_each(&shared->f_mapping->i_pages, index, folio)
		assert_int_equal(folio_ref_count(folio), 1);
	assert_check_clean(fx.m);
	hetmm_fs_writeback(fx.fs);
	assert_int_equal(hetmm_fs_writeback(fx.fs), 0);
	fput(own);
	fput(shared);
	fixture_finish(&fx);
}

/* ------------------------------------------------------------ oracle */

static void test_random_model(void **state)
{
	enum { MAXF = 48 * PAGE_SIZE, MAXIO = 3 * PAGE_SIZE + 500 };
	unsigned char *model = calloc(MAXF, 1), *buf = malloc(MAXF);
	unsigned int steps = test_scale(3000, 60000);
	struct fs_fixture fx;
	struct test_rng rng;
	loff_t size = 0;
	struct file *f;

	(void)state;
	memset(&hook_log, 0, sizeof(hook_log));
	fixture_init(&fx, true);
	hetmm_fs_set_hooks(fx.fs, &record_hooks);
	test_rng_init(&rng, test_seed());
	f = open_ok(fx.fs, "r", O_RDWR | O_CREAT, HETMM_FS_WRITEBACK);
	for (unsigned int s = 0; s < steps; s++) {
		unsigned int op = (unsigned int)test_rng_below(&rng, 100);
		loff_t off = (loff_t)test_rng_below(&rng, MAXF - MAXIO);
		size_t len = (size_t)test_rng_below(&rng, MAXIO);

		if (test_rng_below(&rng, 4) == 0) /* favour page edges */
			off = ALIGN_DOWN(off, PS) + (loff_t)test_rng_below(&rng, 3) - 1;
		if (off < 0)
			off = 0;
		if (op < 40) {
			for (size_t i = 0; i < len; i++)
				buf[i] = (unsigned char)test_rng_next(&rng);
			assert_int_equal(file_pwrite(f, buf, len, off), len);
			memcpy(model + off, buf, len);
			if (len && off + (loff_t)len > size)
				size = off + (loff_t)len;
		} else if (op < 80) {
			ssize_t want = off >= size ? 0 :
				       (ssize_t)min((loff_t)len, size - off);

			assert_int_equal(file_pread(f, buf, len, off), want);
			assert_memory_equal(buf, model + off, (size_t)want);
		} else if (op < 92) {
			loff_t nsize = (loff_t)test_rng_below(&rng, MAXF);

			ASSERT_OK(file_truncate(f, nsize));
			if (nsize < size)
				memset(model + nsize, 0, (size_t)(size - nsize));
			size = nsize;
		} else if (op < 96) {
			/* Punch a hole inside the file. */
			loff_t end = off + (loff_t)len;

			if (!len)
				continue;
			inode_lock(file_inode(f));
			truncate_inode_pages_range(f->f_mapping, off, end - 1);
			inode_unlock(file_inode(f));
			memset(model + off, 0,
			       (size_t)(min(end, MAXF) - off));
			/* Bytes past EOF are zero in the model anyway. */
		} else {
			hetmm_fs_writeback(fx.fs);
		}
		assert_int_equal(i_size_read(file_inode(f)), size);
		assert_true(f->f_mapping->nrpages <=
			    (unsigned long)DIV_ROUND_UP(size, PS));
		if (s % 500 == 0)
			assert_check_clean(fx.m);
	}
	assert_int_equal(file_pread(f, buf, MAXF, 0), size);
	assert_memory_equal(buf, model, (size_t)size);
	fput(f);
	ASSERT_OK(hetmm_fs_unlink(fx.fs, "r"));
	assert_int_equal(pages_used(&fx), 0);
	free(model);
	free(buf);
	fixture_finish(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_access_errors),
		cmocka_unit_test(test_rw_roundtrip),
		cmocka_unit_test(test_metadata_only),
		cmocka_unit_test(test_truncate_shrink_grow),
		cmocka_unit_test(test_punch_hole),
		cmocka_unit_test(test_truncate_mapped_is_bug),
		cmocka_unit_test(test_unlink_while_open),
		cmocka_unit_test(test_pinned_folio_outlives_file),
		cmocka_unit_test(test_migrate_mapping),
		cmocka_unit_test(test_two_filesystems),
		cmocka_unit_test(test_grab_get),
		cmocka_unit_test(test_grab_xarray_enomem),
		cmocka_unit_test(test_checker_catches_folio_beyond_eof),
		cmocka_unit_test(test_kinds_and_writeback),
		cmocka_unit_test(test_pwrite_injection),
		cmocka_unit_test(test_random_model),
		cmocka_unit_test(test_concurrent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
