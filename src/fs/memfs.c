// SPDX-License-Identifier: MIT
/*
 * memfs.c - an in-memory filesystem: flat namespace, inodes, open files,
 * and the page cache the mm layer faults file pages from.
 *
 * Locking and invariants
 *
 *   mm.mmap_lock                     (mm layer; only ever taken outside)
 *     inode.i_rwsem                  write: pwrite, truncate, O_TRUNC
 *       |                            read: pread, the mm fault path
 *       folio lock                   insertion into / removal from the
 *         |                          cache, partial-page zeroing, writeback,
 *         |                          migration (both folios; the migrator
 *         |                          holds no i_rwsem, only mmap_lock)
 *         i_mmap_rwsem               (taken by the mm layer's hooks)
 *           page-table lock          (mm layer)
 *             i_pages.xa_lock        slots, marks, nrpages, page.mapping
 *                                    of a folio leaving the cache
 *   fs.lock (mutex, leaf)            the name tree, the inode list,
 *                                    i_nlink, i_ino allocation
 *
 *   The hooks run with i_rwsem held for write (unmap_mapping_range) or a
 *   folio lock held (folio_mkclean) and must not take mmap_lock: the
 *   fault path takes i_rwsem for read under mmap_lock.
 *
 * Invariants (checked by memfs_check()):
 *   - every i_pages entry is an order-0 folio f with f.mapping == the
 *     address_space, f.index == its slot, PG_uptodate, refcount >= 1, and
 *     slot < DIV_ROUND_UP(i_size, PAGE_SIZE);
 *   - hugetlbfs files: every entry is instead a PG_hugetlb folio of order
 *     PMD_ORDER whose slot is a multiple of HPAGE_PMD_NR (the slots of
 *     its other pages stay empty; lookups round the index down), with
 *     refcount >= 1 + folio_mapcount; i_size is a multiple of
 *     HUGETLBFS_PAGE_SIZE, so truncation only ever drops whole folios
 *     (hole punching zeroes the covered bytes of partial ones);
 *   - nrpages == number of i_pages entries;
 *   - PG_dirty(f) <=> the slot carries PAGECACHE_TAG_DIRTY;
 *   - refcount(f) == 1 (the cache) + mappings + other holders, so a cached
 *     folio never drops to zero while in the cache;
 *   - i_count >= i_nlink >= 0, i_nlink in {0, 1}, and i_nlink == 1 iff a
 *     name refers to the inode; 0 <= i_size <= HETMM_FS_MAXBYTES;
 *   - every VMA in i_mmap maps this file and spans
 *     [vm_pgoff, vm_pgoff + pages - 1].
 *
 * Lifetime: an inode is on fs.inodes from creation until its last iput(),
 * which unlinks it under fs.lock before freeing its folios, so a walker
 * holding fs.lock may take a reference to any inode whose i_count is not
 * zero. Nobody can find an inode with i_count == 0: names hold a
 * reference, and unnamed inodes are reached only through files and VMAs,
 * which hold references too.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <hetmm/check.h>
#include <hetmm/err.h>
#include <hetmm/fs.h>
#include <hetmm/mm_types.h>

/* Flags hetmm_fs_open() understands. */
#define MEMFS_OPEN_FLAGS (O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND)

/**
 * struct hetmm_fs - one filesystem instance.
 * @machine: the machine whose allocator backs the page cache; constant.
 * @lock: protects @dentries, @inodes, @nr_inodes, @next_ino and every
 *	inode's i_nlink.
 * @dentries: names, ordered by strcmp().
 * @inodes: every live inode (named, open or mapped).
 * @nr_inodes: length of @inodes.
 * @next_ino: next inode number.
 * @hooks: the mm layer's callbacks; set before files are mapped.
 * @check_name: the name this instance's checker is registered under.
 */
struct hetmm_fs {
	struct hetmm_machine *machine;
	struct mutex lock;
	struct rb_root dentries;
	struct list_head inodes;
	unsigned long nr_inodes;
	unsigned long next_ino;
	struct hetmm_fs_hooks hooks;
	char check_name[24];
};

/**
 * struct memfs_dentry - a name.
 * @d_rb: link in hetmm_fs::dentries.
 * @d_inode: the inode; the name holds one reference to it.
 * @d_name: the NUL-terminated name.
 */
struct memfs_dentry {
	struct rb_node d_rb;
	struct inode *d_inode;
	char d_name[];
};

static struct hetmm_machine *mapping_machine(const struct address_space *mapping)
{
	return mapping->host->i_fs->machine;
}

static void i_size_write(struct inode *inode, loff_t size)
{
	rwsem_assert_held_write(&inode->i_rwsem);
	__atomic_store_n(&inode->i_size, size, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------ page cache */

/* The slot of the folio that holds page @index. */
static pgoff_t memfs_folio_slot(const struct address_space *mapping,
				pgoff_t index)
{
	return hugetlbfs_mapping(mapping) ? ALIGN_DOWN(index, HPAGE_PMD_NR) :
					    index;
}

/* Host address of page @index of @folio, or NULL on a metadata-only
 * machine. */
static char *folio_index_address(struct folio *folio, pgoff_t index)
{
	char *kaddr = folio_address(folio);

	return kaddr ? kaddr + ((index - folio->page.index) << PAGE_SHIFT) :
		       NULL;
}

/**
 * filemap_get_folio - look a cached folio up.
 * @mapping: the page cache.
 * @index: page index in the file (for hugetlbfs, any page of the folio).
 *
 * The slot is read and the reference taken under xa_lock, so a folio that
 * is being removed is either found with its cache reference still held or
 * not found at all. The folio is not locked: it may leave the cache as soon
 * as this returns; callers that care lock it and re-check page.mapping.
 *
 * Return: the folio with a reference the caller must folio_put(), or
 * ERR_PTR(-ENOENT) if nothing is cached at @index.
 * Context: any; takes xa_lock.
 */
struct folio *filemap_get_folio(struct address_space *mapping, pgoff_t index)
{
	struct folio *folio;

	index = memfs_folio_slot(mapping, index);
	xa_lock(&mapping->i_pages);
	folio = xa_load(&mapping->i_pages, index);
	if (folio)
		folio_get(folio);
	xa_unlock(&mapping->i_pages);
	return folio ? folio : ERR_PTR(-ENOENT);
}

/*
 * A new zero-filled folio for slot @index (2 MiB for hugetlbfs), locked,
 * with the caller's reference.
 */
static struct folio *memfs_new_folio(struct address_space *mapping,
				     pgoff_t index)
{
	bool huge = hugetlbfs_mapping(mapping);
	struct folio *folio;

	folio = folio_alloc(mapping_machine(mapping),
			    GFP_HIGHUSER_MOVABLE | __GFP_ZERO,
			    huge ? PMD_ORDER : 0);
	if (!folio)
		return NULL;
	if (huge)
		folio_set_flag(folio, PG_hugetlb);
	/* Not visible to anyone yet: the trylock cannot fail. */
	if (NEVER(!folio_trylock(folio))) {
		folio_put(folio);
		return NULL;
	}
	folio->page.mapping = mapping;
	folio->page.index = index;
	folio_set_flag(folio, PG_uptodate);
	if (shmem_mapping(mapping))
		folio_set_flag(folio, PG_swapbacked);
	return folio;
}

/* Undo memfs_new_folio() for a folio that never entered the cache. */
static void memfs_discard_new_folio(struct folio *folio)
{
	folio->page.mapping = NULL;
	folio_unlock(folio);
	folio_put(folio);
}

/**
 * filemap_grab_folio - find or create the folio at @index, locked.
 * @mapping: the page cache.
 * @index: page index in the file.
 *
 * A created folio is zero-filled and order 0 (for hugetlbfs: the 2 MiB
 * PG_hugetlb folio of the 2 MiB-aligned range holding @index, marked
 * dirty as Linux's hugetlbfs does); it enters the cache holding
 * the cache's reference, and the caller gets a second one. The caller is
 * responsible for @index being inside the file (see the fault path
 * protocol in fs.h): nothing here looks at i_size.
 *
 * Return: the folio, locked, with a reference (unlock it, then put it);
 * ERR_PTR(-EFBIG) if @index is beyond HETMM_FS_MAX_INDEX; ERR_PTR(-ENOMEM)
 * if the folio or an index node could not be allocated (nothing is left
 * behind).
 * Context: may sleep (folio lock); the caller holds the inode lock, shared
 * or exclusive, and no folio lock of this file.
 */
struct folio *filemap_grab_folio(struct address_space *mapping, pgoff_t index)
{
	return __filemap_grab_folio(mapping, index, NULL);
}

/**
 * __filemap_grab_folio - filemap_grab_folio(), telling whether it created.
 * @mapping: the page cache.
 * @index: page index in the file.
 * @created: if not NULL, set to true when the folio returned was created
 *	(and inserted) by this call, false otherwise.
 *
 * Return and context: as filemap_grab_folio().
 */
struct folio *__filemap_grab_folio(struct address_space *mapping, pgoff_t index,
				   bool *created)
{
	struct folio *folio;
	int ret;

	if (created)
		*created = false;
	if (index > HETMM_FS_MAX_INDEX)
		return ERR_PTR(-EFBIG);
	index = memfs_folio_slot(mapping, index);
	for (;;) {
		folio = filemap_get_folio(mapping, index);
		if (!IS_ERR(folio)) {
			folio_lock(folio);
			/* Removed from the cache while we slept? */
			if (likely(folio->page.mapping == mapping &&
				   folio->page.index == index))
				return folio;
			folio_unlock(folio);
			folio_put(folio);
			continue;
		}

		folio = memfs_new_folio(mapping, index);
		if (!folio)
			return ERR_PTR(-ENOMEM);
		xa_lock(&mapping->i_pages);
		ret = __xa_insert(&mapping->i_pages, index, folio);
		if (!ret)
			mapping->nrpages++;
		xa_unlock(&mapping->i_pages);
		if (!ret) {
			folio_get(folio); /* the caller's; the first is the cache's */
			if (hugetlbfs_mapping(mapping))
				folio_mark_dirty(folio);
			if (created)
				*created = true;
			return folio;
		}
		memfs_discard_new_folio(folio);
		if (ret != -EBUSY)
			return ERR_PTR(ret);
		/* Lost a race with another grab: use its folio. */
	}
}

/**
 * folio_mark_dirty - mark a folio dirty.
 * @folio: an anonymous folio, a folio in no mapping, or a page-cache
 *	folio; for the last, the dirty mark in i_pages is set along with
 *	PG_dirty, atomically with respect to writeback.
 *
 * Return: true if the folio was clean before.
 * Context: for a file folio the caller holds the folio lock or has the
 * folio mapped through a VMA of its file (which keeps the inode alive).
 * Takes xa_lock.
 */
bool folio_mark_dirty(struct folio *folio)
{
	struct address_space *mapping;
	bool was_dirty;

	mapping = folio_test_anon(folio) ? NULL :
		  READ_ONCE(folio->page.mapping);
	if (!mapping)
		return !PageTestSetFlag(&folio->page, PG_dirty);

	xa_lock(&mapping->i_pages);
	was_dirty = PageTestSetFlag(&folio->page, PG_dirty);
	/* page.mapping only changes under this lock once cached. */
	if (!was_dirty && folio->page.mapping == mapping)
		__xa_set_mark(&mapping->i_pages, folio->page.index,
			      PAGECACHE_TAG_DIRTY);
	xa_unlock(&mapping->i_pages);
	return !was_dirty;
}

int folio_migrate_mapping(struct address_space *mapping,
			  struct folio *newfolio, struct folio *folio,
			  int extra_count)
{
	/* The cache's reference and the caller's. */
	int expected = 2 + extra_count;
	pgoff_t index = folio->page.index;

	HETMM_DEBUG_BUG_ON(!folio_test_locked(folio));
	HETMM_DEBUG_BUG_ON(!folio_test_locked(newfolio));
	if (HETMM_WARN_ON_ONCE(!mapping || folio_test_anon(folio) ||
			       folio_order(folio) != folio_order(newfolio) ||
			       newfolio->page.mapping))
		return -EINVAL;

	xa_lock(&mapping->i_pages);
	/*
	 * References are taken under xa_lock by lookups (and not at all
	 * through an unmapped folio), so a count that matches now stays
	 * matched until the slot points at the copy.
	 */
	if (folio->page.mapping != mapping ||
	    xa_load(&mapping->i_pages, index) != folio ||
	    folio_mapped(folio) || folio_ref_count(folio) != expected) {
		xa_unlock(&mapping->i_pages);
		return -EAGAIN;
	}
	newfolio->page.mapping = mapping;
	newfolio->page.index = index;
	folio_get(newfolio); /* the cache's */
	/* What every cached folio carries from the moment it is visible
	 * (the caller copied the data already). */
	folio_set_flag(newfolio, PG_uptodate);
	if (folio_test_flag(folio, PG_swapbacked))
		folio_set_flag(newfolio, PG_swapbacked);
	if (folio_test_hugetlb(folio))
		folio_set_flag(newfolio, PG_hugetlb);
	/* An existing slot is overwritten in place: no allocation, and the
	 * dirty mark stays with the slot, so PG_dirty moves along. */
	if (__xa_store(&mapping->i_pages, index, newfolio)) {
		newfolio->page.mapping = NULL;
		xa_unlock(&mapping->i_pages);
		folio_put(newfolio);
		return -EAGAIN;
	}
	if (folio_test_flag(folio, PG_dirty)) {
		folio_clear_flag(folio, PG_dirty);
		folio_set_flag(newfolio, PG_dirty);
	}
	folio->page.mapping = NULL;
	xa_unlock(&mapping->i_pages);
	folio_put(folio); /* the cache's: the caller's remains */
	return 0;
}

/*
 * Drop @folio from the cache. The caller holds the folio lock and a
 * reference of its own; the cache's reference is dropped here.
 */
static void memfs_remove_folio(struct address_space *mapping,
			       struct folio *folio)
{
	HETMM_DEBUG_BUG_ON(!folio_test_locked(folio));
	if (folio->page.mapping != mapping)
		return; /* somebody else removed it first */
	if (unlikely(folio_mapped(folio)))
		hetmm_bad_page(&folio->page,
			       "page-cache folio still mapped when truncated");

	xa_lock(&mapping->i_pages);
	__xa_erase(&mapping->i_pages, folio->page.index);
	mapping->nrpages--;
	folio->page.mapping = NULL;
	folio_clear_flag(folio, PG_dirty);
	xa_unlock(&mapping->i_pages);
	folio_put(folio);
}

/* Remove every cached folio in [first, last]. */
static void memfs_remove_range(struct address_space *mapping, pgoff_t first,
			       pgoff_t last)
{
	unsigned long index;
	struct folio *entry, *folio;

	xa_for_each_range(&mapping->i_pages, index, entry, first, last) {
		folio = filemap_get_folio(mapping, index);
		if (IS_ERR(folio))
			continue;
		folio_lock(folio);
		memfs_remove_folio(mapping, folio);
		folio_unlock(folio);
		folio_put(folio);
	}
}

/*
 * Zero bytes [from, to) of the cached folio at @index, if there is one;
 * mark it dirty when the zeroed bytes lie inside the file.
 */
static void memfs_zero_partial(struct address_space *mapping, pgoff_t index,
			       size_t from, size_t to)
{
	loff_t start = ((loff_t)index << PAGE_SHIFT) + (loff_t)from;
	struct folio *folio;
	char *kaddr;

	HETMM_DEBUG_BUG_ON(from >= to || to > PAGE_SIZE);
	folio = filemap_get_folio(mapping, index);
	if (IS_ERR(folio))
		return;
	folio_lock(folio);
	if (folio->page.mapping == mapping) {
		kaddr = folio_index_address(folio, index);
		if (kaddr)
			memset(kaddr + from, 0, to - from);
		if (start < i_size_read(mapping->host))
			folio_mark_dirty(folio);
	}
	folio_unlock(folio);
	folio_put(folio);
}

/* Zero bytes [from, to) of whatever is cached there, page by page. */
static void memfs_zero_bytes(struct address_space *mapping, loff_t from,
			     loff_t to)
{
	while (from < to) {
		size_t off = (size_t)(from & ~PAGE_MASK);
		size_t n = (size_t)min((loff_t)(PAGE_SIZE - off), to - from);

		memfs_zero_partial(mapping, (pgoff_t)(from >> PAGE_SHIFT), off,
				   off + n);
		from += (loff_t)n;
	}
}

/*
 * hugetlbfs: only whole 2 MiB folios leave the cache (and every page
 * table); the bytes of partly covered ones are zeroed in place.
 */
static void hugetlbfs_truncate_range(struct address_space *mapping,
				     loff_t lstart, loff_t end, bool unmap)
{
	struct hetmm_fs *fs = mapping->host->i_fs;
	loff_t hstart = ALIGN(lstart, HUGETLBFS_PAGE_SIZE);
	loff_t hend = ALIGN_DOWN(end, HUGETLBFS_PAGE_SIZE);
	pgoff_t first, last;

	if (hstart >= hend) {
		memfs_zero_bytes(mapping, lstart, end);
		return;
	}
	first = (pgoff_t)(hstart >> PAGE_SHIFT);
	last = (pgoff_t)(hend >> PAGE_SHIFT) - 1;
	if (unmap && fs->hooks.unmap_mapping_range)
		fs->hooks.unmap_mapping_range(mapping, first, last);
	memfs_remove_range(mapping, first, last);
	memfs_zero_bytes(mapping, lstart, hstart);
	memfs_zero_bytes(mapping, hend, end);
}

static void __truncate_inode_pages_range(struct address_space *mapping,
					 loff_t lstart, loff_t lend,
					 bool unmap)
{
	struct hetmm_fs *fs = mapping->host->i_fs;
	loff_t end = lend < 0 ? HETMM_FS_MAXBYTES :
				min(lend + 1, HETMM_FS_MAXBYTES);
	pgoff_t first = (pgoff_t)DIV_ROUND_UP(lstart, (loff_t)PAGE_SIZE);
	pgoff_t end_index = (pgoff_t)(end >> PAGE_SHIFT); /* exclusive */
	pgoff_t start_index = (pgoff_t)(lstart >> PAGE_SHIFT);
	size_t start_off = (size_t)(lstart & ~PAGE_MASK);
	size_t end_off = (size_t)(end & ~PAGE_MASK);

	if (lstart >= end)
		return;
	if (hugetlbfs_mapping(mapping)) {
		hugetlbfs_truncate_range(mapping, lstart, end, unmap);
		return;
	}

	/* Whole pages: out of every page table first, then out of the cache. */
	if (first < end_index) {
		if (unmap && fs->hooks.unmap_mapping_range)
			fs->hooks.unmap_mapping_range(mapping, first,
						      end_index - 1);
		memfs_remove_range(mapping, first, end_index - 1);
	}

	/* Partial pages at either edge keep their folio; zero the range. */
	if (start_index == end_index) {
		memfs_zero_partial(mapping, start_index, start_off, end_off);
		return;
	}
	if (start_off)
		memfs_zero_partial(mapping, start_index, start_off, PAGE_SIZE);
	if (end_off)
		memfs_zero_partial(mapping, end_index, 0, end_off);
}

/**
 * truncate_inode_pages_range - drop the cached data of a byte range.
 * @mapping: the page cache.
 * @lstart: first byte, >= 0.
 * @lend: last byte (inclusive), or -1 for "to the end of the file".
 *
 * Whole pages inside the range are first unmapped from every process
 * through the unmap_mapping_range hook, then removed from the cache (each
 * under its folio lock); a folio still mapped after the hook is reported
 * with hetmm_bad_page(). Partial pages at the edges stay cached and have
 * the covered bytes zeroed (for hugetlbfs "page" means the 2 MiB folio).
 * Does not change i_size: truncation sets it first, hole punching leaves
 * it.
 *
 * Context: may sleep; the caller holds the inode lock for write.
 */
void truncate_inode_pages_range(struct address_space *mapping, loff_t lstart,
				loff_t lend)
{
	if (HETMM_WARN_ON_ONCE(lstart < 0 || (lend >= 0 && lend < lstart) ||
			       lend < -1))
		return;
	rwsem_assert_held_write(&mapping->host->i_rwsem);
	__truncate_inode_pages_range(mapping, lstart, lend, true);
}

/*
 * The bytes of the last page beyond i_size may hold data written through
 * a shared mapping; zero them before i_size grows over them so they read
 * back as a hole.
 */
static void memfs_zero_eof_tail(struct inode *inode)
{
	loff_t size = inode->i_size;
	size_t off = (size_t)(size & ~PAGE_MASK);

	if (off)
		memfs_zero_partial(inode->i_mapping,
				   (pgoff_t)(size >> PAGE_SHIFT), off,
				   PAGE_SIZE);
}

/* ------------------------------------------------------------- writeback */

/* Write back one locked, cached folio if it is dirty. Return: 1 or 0. */
static int memfs_writeback_folio(struct address_space *mapping,
				 struct folio *folio)
{
	struct hetmm_fs *fs = mapping->host->i_fs;
	bool dirty;

	if (fs->hooks.folio_mkclean && fs->hooks.folio_mkclean(folio) > 0)
		folio_mark_dirty(folio);

	xa_lock(&mapping->i_pages);
	dirty = PageTestClearFlag(&folio->page, PG_dirty);
	__xa_clear_mark(&mapping->i_pages, folio->page.index,
			PAGECACHE_TAG_DIRTY);
	if (dirty)
		folio_set_flag(folio, PG_writeback);
	xa_unlock(&mapping->i_pages);
	if (!dirty)
		return 0;
	/* The "I/O": the bytes are already where they need to be. */
	folio_clear_flag(folio, PG_writeback);
	return 1;
}

/**
 * hetmm_inode_writeback - write every dirty folio of @inode back.
 * @inode: the file.
 *
 * For HETMM_FS_WRITEBACK files, each dirty-tagged folio is locked, its
 * shared PTEs cleaned through the folio_mkclean hook (a dirty PTE keeps
 * the folio dirty), and then PG_dirty and the tag are cleared. tmpfs files
 * have nothing to write back and keep their dirty state.
 *
 * Return: the number of folios written back (>= 0).
 * Context: may sleep; the caller holds a reference to @inode and no folio
 * lock of it.
 */
long hetmm_inode_writeback(struct inode *inode)
{
	struct address_space *mapping = inode->i_mapping;
	unsigned long index;
	struct folio *entry, *folio;
	long nr = 0;

	if (!mapping_needs_writeback(mapping))
		return 0;
	xa_for_each_marked(&mapping->i_pages, index, entry,
			   PAGECACHE_TAG_DIRTY) {
		folio = filemap_get_folio(mapping, index);
		if (IS_ERR(folio))
			continue;
		folio_lock(folio);
		if (folio->page.mapping == mapping)
			nr += memfs_writeback_folio(mapping, folio);
		folio_unlock(folio);
		folio_put(folio);
	}
	atomic_fetch_add(&inode->i_nr_written, (unsigned long)nr);
	return nr;
}

/* Take a reference unless the inode is already on its way out. */
static bool inode_tryget(struct inode *inode)
{
	int v = atomic_load(&inode->i_count);

	do {
		if (v <= 0)
			return false;
	} while (!atomic_compare_exchange_weak(&inode->i_count, &v, v + 1));
	return true;
}

/**
 * hetmm_fs_writeback - write back every file of @fs (like sync).
 * @fs: the filesystem.
 *
 * Return: the number of folios written back.
 * Context: may sleep; takes fs.lock, dropping it around each inode.
 */
long hetmm_fs_writeback(struct hetmm_fs *fs)
{
	struct inode *inode, *prev = NULL;
	long nr = 0;

	mutex_lock(&fs->lock);
	list_for_each_entry(inode, &fs->inodes, i_sb_list) {
		/* Our reference keeps @inode on the list while unlocked. */
		if (!inode_tryget(inode))
			continue;
		mutex_unlock(&fs->lock);
		if (prev)
			iput(prev);
		nr += hetmm_inode_writeback(inode);
		prev = inode;
		mutex_lock(&fs->lock);
	}
	mutex_unlock(&fs->lock);
	if (prev)
		iput(prev);
	return nr;
}

/* ---------------------------------------------------------------- inodes */

static struct inode *memfs_inode_alloc(struct hetmm_fs *fs,
				       enum hetmm_fs_kind kind)
{
	struct inode *inode = calloc(1, sizeof(*inode));

	if (!inode)
		return NULL;
	inode->i_fs = fs;
	inode->i_kind = kind;
	init_rwsem(&inode->i_rwsem);
	atomic_init(&inode->i_count, 1);
	atomic_init(&inode->i_nr_written, 0);
	inode->i_data.host = inode;
	inode->i_data.kind = kind;
	xa_init(&inode->i_data.i_pages);
	init_rwsem(&inode->i_data.i_mmap_rwsem);
	inode->i_data.i_mmap = RB_ROOT;
	inode->i_mapping = &inode->i_data;
	INIT_LIST_HEAD(&inode->i_sb_list);
	return inode;
}

/* The last reference is gone: free the page cache and the inode. */
static void memfs_evict(struct inode *inode)
{
	struct hetmm_fs *fs = inode->i_fs;
	struct address_space *mapping = inode->i_mapping;

	mutex_lock(&fs->lock);
	HETMM_WARN_ON_ONCE(inode->i_nlink);
	list_del(&inode->i_sb_list);
	fs->nr_inodes--;
	mutex_unlock(&fs->lock);

	/* Nobody maps the file any more (VMAs hold references): no unmap. */
	HETMM_WARN_ON_ONCE(mapping_mapped(mapping));
	__truncate_inode_pages_range(mapping, 0, -1, false);
	HETMM_WARN_ON_ONCE(mapping->nrpages);
	xa_destroy(&mapping->i_pages);
	rwsem_destroy(&mapping->i_mmap_rwsem);
	rwsem_destroy(&inode->i_rwsem);
	free(inode);
}

/**
 * ihold - take another reference to an inode.
 * @inode: an inode the caller already holds a reference to (directly, or
 *	through a file or a VMA).
 *
 * Context: any.
 */
void ihold(struct inode *inode)
{
	int old = atomic_fetch_add(&inode->i_count, 1);

	HETMM_WARN_ON_ONCE(old <= 0);
}

/**
 * iput - drop a reference to an inode.
 * @inode: the inode.
 *
 * The last reference (no name, no open file, no mapping) frees every
 * cached folio (pinned folios live on, detached from the file) and the
 * inode.
 *
 * Context: may sleep; the caller holds no folio lock of this file and no
 * i_mmap_rwsem of it.
 */
void iput(struct inode *inode)
{
	int v = atomic_fetch_sub(&inode->i_count, 1) - 1;

	if (likely(v > 0))
		return;
	if (HETMM_WARN_ON_ONCE(v < 0)) {
		atomic_store(&inode->i_count, 0);
		return;
	}
	memfs_evict(inode);
}

/* ----------------------------------------------------------------- names */

static int dentry_cmp_key(const void *key, const struct rb_node *node)
{
	return strcmp(key, rb_entry(node, struct memfs_dentry, d_rb)->d_name);
}

static int dentry_cmp(const struct rb_node *a, const struct rb_node *b)
{
	return strcmp(rb_entry(a, struct memfs_dentry, d_rb)->d_name,
		      rb_entry(b, struct memfs_dentry, d_rb)->d_name);
}

static struct memfs_dentry *memfs_lookup(struct hetmm_fs *fs, const char *name)
{
	struct rb_node *node;

	lockdep_assert_held(&fs->lock);
	node = rb_find(name, &fs->dentries, dentry_cmp_key);
	return node ? rb_entry(node, struct memfs_dentry, d_rb) : NULL;
}

/* Return: the name's length, -EINVAL (NULL or empty) or -ENAMETOOLONG. */
static long memfs_check_name(const char *path)
{
	size_t len;

	if (!path || !*path)
		return -EINVAL;
	len = strnlen(path, HETMM_FS_NAME_MAX + 1);
	if (len > HETMM_FS_NAME_MAX)
		return -ENAMETOOLONG;
	return (long)len;
}

/*
 * Create @path as a new inode of @kind and link it.
 * Return: the inode (its reference belongs to the name) or NULL.
 * Context: fs.lock held; the name does not exist.
 */
static struct inode *memfs_create(struct hetmm_fs *fs, const char *path,
				  size_t len, enum hetmm_fs_kind kind)
{
	struct memfs_dentry *dentry;
	struct inode *inode;

	lockdep_assert_held(&fs->lock);
	dentry = malloc(sizeof(*dentry) + len + 1);
	if (!dentry)
		return NULL;
	inode = memfs_inode_alloc(fs, kind);
	if (!inode) {
		free(dentry);
		return NULL;
	}
	memcpy(dentry->d_name, path, len + 1);
	dentry->d_inode = inode;
	inode->i_ino = ++fs->next_ino;
	inode->i_nlink = 1;
	list_add_tail(&inode->i_sb_list, &fs->inodes);
	fs->nr_inodes++;
	/* The caller checked that the name is free. */
	HETMM_BUG_ON(rb_find_add(&dentry->d_rb, &fs->dentries, dentry_cmp));
	return inode;
}

/* ----------------------------------------------------------------- files */

static struct file *memfs_file_alloc(struct inode *inode, int flags)
{
	struct file *file = calloc(1, sizeof(*file));
	int acc = flags & O_ACCMODE;

	if (!file)
		return NULL;
	atomic_init(&file->f_count, 1);
	file->f_flags = (unsigned int)(flags & (O_ACCMODE | O_APPEND));
	if (acc == O_RDONLY || acc == O_RDWR)
		file->f_mode |= FMODE_READ;
	if (acc == O_WRONLY || acc == O_RDWR)
		file->f_mode |= FMODE_WRITE;
	file->f_inode = inode;
	file->f_mapping = inode->i_mapping;
	return file;
}

/* Shrink or grow to @size. Context: inode lock held for write. */
static void memfs_setsize(struct inode *inode, loff_t size)
{
	loff_t old = inode->i_size;

	rwsem_assert_held_write(&inode->i_rwsem);
	if (size == old)
		return;
	if (size > old) {
		memfs_zero_eof_tail(inode);
		i_size_write(inode, size);
		return;
	}
	/*
	 * Set the size first: the fault path refuses offsets beyond it. The
	 * range ends on the old last page's boundary, so that page is dropped
	 * as a whole and the hook sees exactly the pages that existed.
	 */
	i_size_write(inode, size);
	__truncate_inode_pages_range(inode->i_mapping, size,
				     ALIGN(old, (loff_t)PAGE_SIZE) - 1, true);
}

/**
 * hetmm_fs_open - open (and maybe create) a file.
 * @fs: the filesystem.
 * @path: the file's name: 1..HETMM_FS_NAME_MAX bytes, any characters.
 * @flags: O_RDONLY, O_WRONLY or O_RDWR, plus any of O_CREAT, O_EXCL,
 *	O_TRUNC and O_APPEND. O_EXCL without O_CREAT is ignored and O_TRUNC
 *	truncates even with O_RDONLY, as in Linux.
 * @kind: enum hetmm_fs_kind of a file that O_CREAT creates; an existing
 *	file keeps its own kind.
 *
 * Return: a new struct file with one reference (release with fput()), or
 * ERR_PTR() of: -EINVAL for a NULL @fs, NULL or empty @path, unknown
 * @flags bits, O_ACCMODE == 3 or an unknown @kind; -ENAMETOOLONG for a
 * name over HETMM_FS_NAME_MAX bytes; -ENOENT if the file does not exist
 * and O_CREAT is not given; -EEXIST if it exists and O_CREAT|O_EXCL is
 * given; -ENOMEM if memory ran out (nothing is created then).
 * Context: may sleep; takes fs.lock, and the inode lock for O_TRUNC.
 */
struct file *hetmm_fs_open(struct hetmm_fs *fs, const char *path, int flags,
			   int kind)
{
	struct memfs_dentry *dentry;
	struct inode *inode;
	struct file *file;
	long len;

	if (!fs)
		return ERR_PTR(-EINVAL);
	len = memfs_check_name(path);
	if (len < 0)
		return ERR_PTR(len);
	if (flags & ~MEMFS_OPEN_FLAGS)
		return ERR_PTR(-EINVAL);
	if ((flags & O_ACCMODE) == O_ACCMODE)
		return ERR_PTR(-EINVAL);
	if (kind < 0 || kind >= NR_HETMM_FS_KINDS)
		return ERR_PTR(-EINVAL);

	mutex_lock(&fs->lock);
	dentry = memfs_lookup(fs, path);
	if (dentry) {
		if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
			goto out_eexist;
		inode = dentry->d_inode;
		ihold(inode);
	} else {
		if (!(flags & O_CREAT))
			goto out_enoent;
		inode = memfs_create(fs, path, (size_t)len,
				     (enum hetmm_fs_kind)kind);
		if (!inode)
			goto out_enomem;
		ihold(inode);
	}
	mutex_unlock(&fs->lock);

	file = memfs_file_alloc(inode, flags);
	if (!file) {
		/* A file we just created stays, as Linux leaves it too. */
		iput(inode);
		return ERR_PTR(-ENOMEM);
	}
	if (flags & O_TRUNC) {
		inode_lock(inode);
		memfs_setsize(inode, 0);
		inode_unlock(inode);
	}
	return file;

out_eexist:
	mutex_unlock(&fs->lock);
	return ERR_PTR(-EEXIST);
out_enoent:
	mutex_unlock(&fs->lock);
	return ERR_PTR(-ENOENT);
out_enomem:
	mutex_unlock(&fs->lock);
	return ERR_PTR(-ENOMEM);
}

/**
 * hetmm_fs_unlink - remove a name.
 * @fs: the filesystem.
 * @path: the name.
 *
 * The inode lives on while files or mappings hold references to it; the
 * last of them frees it.
 *
 * Return: 0; -EINVAL for a NULL @fs or a NULL or empty @path;
 * -ENAMETOOLONG for an over-long name; -ENOENT if no such name exists.
 * Context: may sleep; takes fs.lock.
 */
int hetmm_fs_unlink(struct hetmm_fs *fs, const char *path)
{
	struct memfs_dentry *dentry;
	struct inode *inode;
	long len;

	if (!fs)
		return -EINVAL;
	len = memfs_check_name(path);
	if (len < 0)
		return (int)len;

	mutex_lock(&fs->lock);
	dentry = memfs_lookup(fs, path);
	if (!dentry) {
		mutex_unlock(&fs->lock);
		return -ENOENT;
	}
	rb_erase(&dentry->d_rb, &fs->dentries);
	inode = dentry->d_inode;
	inode->i_nlink = 0;
	mutex_unlock(&fs->lock);

	free(dentry);
	iput(inode); /* the name's reference */
	return 0;
}

/**
 * get_file - take another reference to an open file.
 * @file: a file the caller holds a reference to.
 *
 * Return: @file.
 * Context: any.
 */
struct file *get_file(struct file *file)
{
	long old = atomic_fetch_add(&file->f_count, 1);

	HETMM_WARN_ON_ONCE(old <= 0);
	return file;
}

/**
 * fput - drop a reference to an open file.
 * @file: the file; NULL and ERR_PTR values are ignored.
 *
 * The last reference frees the file and drops its inode reference.
 *
 * Context: may sleep (see iput()).
 */
void fput(struct file *file)
{
	long v;

	if (IS_ERR_OR_NULL(file))
		return;
	v = atomic_fetch_sub(&file->f_count, 1) - 1;
	if (likely(v > 0))
		return;
	if (HETMM_WARN_ON_ONCE(v < 0)) {
		atomic_store(&file->f_count, 0);
		return;
	}
	iput(file->f_inode);
	free(file);
}

/**
 * file_pread - read from a file at an offset.
 * @file: the file.
 * @buf: destination.
 * @len: bytes wanted (clamped to HETMM_FS_MAX_RW_COUNT).
 * @off: file offset.
 *
 * Holes read as zeros; so does everything on a metadata-only machine.
 *
 * Return: bytes read (short at end of file, 0 at or beyond it); -EBADF if
 * @file was not opened for reading; -EINVAL for a negative @off or a NULL
 * @file, or a NULL @buf with a non-zero @len.
 * Context: may sleep; takes the inode lock shared.
 */
ssize_t file_pread(struct file *file, void *buf, size_t len, loff_t off)
{
	struct inode *inode;
	struct address_space *mapping;
	size_t done = 0;
	loff_t size;

	if (!file)
		return -EINVAL;
	if (!(file->f_mode & FMODE_READ))
		return -EBADF;
	if (off < 0)
		return -EINVAL;
	if (!buf && len)
		return -EINVAL;
	len = min(len, HETMM_FS_MAX_RW_COUNT);
	inode = file->f_inode;
	mapping = inode->i_mapping;

	inode_lock_shared(inode);
	size = inode->i_size;
	if (off >= size) {
		inode_unlock_shared(inode);
		return 0;
	}
	len = (size_t)min((loff_t)len, size - off);
	while (done < len) {
		loff_t pos = off + (loff_t)done;
		size_t pg_off = (size_t)(pos & ~PAGE_MASK);
		size_t n = min(PAGE_SIZE - pg_off, len - done);
		struct folio *folio;
		char *kaddr = NULL;

		folio = filemap_get_folio(mapping, (pgoff_t)(pos >> PAGE_SHIFT));
		if (!IS_ERR(folio))
			kaddr = folio_index_address(
				folio, (pgoff_t)(pos >> PAGE_SHIFT));
		if (kaddr)
			memcpy((char *)buf + done, kaddr + pg_off, n);
		else
			memset((char *)buf + done, 0, n);
		if (!IS_ERR(folio))
			folio_put(folio);
		done += n;
	}
	inode_unlock_shared(inode);
	return (ssize_t)done;
}

/**
 * file_pwrite - write to a file at an offset.
 * @file: the file.
 * @buf: source.
 * @len: bytes to write (clamped to HETMM_FS_MAX_RW_COUNT).
 * @off: file offset; ignored for O_APPEND files, which always append (as
 *	Linux pwrite does).
 *
 * The file grows to cover what was written; dirtied folios get PG_dirty.
 * Pages are filled one at a time, so when memory runs out part way the
 * bytes already written stay and their count is returned (a correct
 * prefix), as Linux does; if not even the first page could be allocated
 * the file is unchanged.
 *
 * A hugetlbfs file never grows this way (its size stays a multiple of
 * 2 MiB; Linux has no write(2) on hugetlbfs at all): the write is clamped
 * to i_size, and one starting at or beyond i_size fails with -EINVAL.
 *
 * Return: bytes written (short if the write would cross
 * HETMM_FS_MAXBYTES, or i_size of a hugetlbfs file, or memory ran out
 * part way); -EBADF if @file was not opened for writing; -EINVAL for a
 * negative @off or a NULL @file, or a NULL @buf with a non-zero @len, or
 * a hugetlbfs write at or beyond i_size; -EFBIG if the write starts at or
 * beyond HETMM_FS_MAXBYTES; -ENOMEM if nothing could be written.
 * Context: may sleep; takes the inode lock exclusively.
 */
ssize_t file_pwrite(struct file *file, const void *buf, size_t len,
		    loff_t off)
{
	struct inode *inode;
	struct address_space *mapping;
	size_t done = 0;
	int err = 0;

	if (!file)
		return -EINVAL;
	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (off < 0)
		return -EINVAL;
	if (!buf && len)
		return -EINVAL;
	len = min(len, HETMM_FS_MAX_RW_COUNT);
	inode = file->f_inode;
	mapping = inode->i_mapping;

	inode_lock(inode);
	if (file->f_flags & O_APPEND)
		off = inode->i_size;
	if (!len)
		goto out_unlock;
	if (hugetlbfs_mapping(mapping)) {
		/* Only inside the file: its size stays a 2 MiB multiple. */
		if (off >= inode->i_size) {
			err = -EINVAL;
			goto out_unlock;
		}
		len = (size_t)min((loff_t)len, inode->i_size - off);
	}
	if (off >= HETMM_FS_MAXBYTES) {
		err = -EFBIG;
		goto out_unlock;
	}
	len = (size_t)min((loff_t)len, HETMM_FS_MAXBYTES - off);
	if (off + (loff_t)len > inode->i_size)
		memfs_zero_eof_tail(inode);

	while (done < len) {
		loff_t pos = off + (loff_t)done;
		size_t pg_off = (size_t)(pos & ~PAGE_MASK);
		size_t n = min(PAGE_SIZE - pg_off, len - done);
		struct folio *folio;
		char *kaddr;

		folio = filemap_grab_folio(mapping, (pgoff_t)(pos >> PAGE_SHIFT));
		if (IS_ERR(folio)) {
			err = (int)PTR_ERR(folio);
			break;
		}
		kaddr = folio_index_address(folio,
					    (pgoff_t)(pos >> PAGE_SHIFT));
		if (kaddr)
			memcpy(kaddr + pg_off, (const char *)buf + done, n);
		folio_mark_dirty(folio);
		folio_unlock(folio);
		folio_put(folio);
		done += n;
	}
	if (done && off + (loff_t)done > inode->i_size)
		i_size_write(inode, off + (loff_t)done);
out_unlock:
	inode_unlock(inode);
	return done ? (ssize_t)done : err;
}

/**
 * file_truncate - set a file's size (ftruncate).
 * @file: the file.
 * @size: the new size.
 *
 * Shrinking unmaps the pages beyond the new end from every process (the
 * unmap_mapping_range hook, range DIV_ROUND_UP(@size) .. last old page),
 * frees them, and zeroes the tail of a partial last page. Growing
 * allocates nothing: the new range is a hole that reads as zeros.
 *
 * Return: 0; -EINVAL for a negative @size or a NULL @file, or a hugetlbfs
 * @size that is not a multiple of HUGETLBFS_PAGE_SIZE; -EBADF if @file
 * was not opened for writing (Linux says -EINVAL here; POSIX allows
 * both); -EFBIG if @size exceeds HETMM_FS_MAXBYTES.
 * Context: may sleep; takes the inode lock exclusively.
 */
int file_truncate(struct file *file, loff_t size)
{
	struct inode *inode;

	if (!file)
		return -EINVAL;
	if (size < 0)
		return -EINVAL;
	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (size > HETMM_FS_MAXBYTES)
		return -EFBIG;
	if (is_file_hugepages(file) && !IS_ALIGNED(size, HUGETLBFS_PAGE_SIZE))
		return -EINVAL;
	inode = file->f_inode;
	inode_lock(inode);
	memfs_setsize(inode, size);
	inode_unlock(inode);
	return 0;
}

/**
 * hugetlbfs_extend_size - grow a hugetlbfs file to cover a mapping.
 * @inode: a HETMM_FS_HUGETLBFS inode.
 * @size: where the mapping ends in the file: a multiple of
 *	HUGETLBFS_PAGE_SIZE, at most HETMM_FS_MAXBYTES.
 *
 * As Linux's hugetlbfs does when a file is mapped writable: i_size becomes
 * @size if it was smaller; nothing is allocated and nothing shrinks.
 *
 * Context: may sleep; takes the inode lock exclusively (mmap calls it with
 * mmap_lock held, which is outside it in the lock order).
 */
void hugetlbfs_extend_size(struct inode *inode, loff_t size)
{
	if (HETMM_WARN_ON_ONCE(!hugetlbfs_mapping(inode->i_mapping) ||
			       !IS_ALIGNED(size, HUGETLBFS_PAGE_SIZE) ||
			       size > HETMM_FS_MAXBYTES))
		return;
	inode_lock(inode);
	if (size > inode->i_size)
		i_size_write(inode, size);
	inode_unlock(inode);
}

/* --------------------------------------------------------------- checker */

static void memfs_check_mmap(struct inode *inode, struct hetmm_check_ctx *ctx)
{
	struct address_space *mapping = inode->i_mapping;
	struct rb_node *node;

	if (interval_tree_validate(&mapping->i_mmap))
		hetmm_check_fail(ctx, "memfs ino %lu: i_mmap tree is corrupt",
				 inode->i_ino);
	for (node = rb_first(&mapping->i_mmap); node; node = rb_next(node)) {
		struct interval_tree_node *it =
			rb_entry(node, struct interval_tree_node, rb);
		struct vm_area_struct *vma =
			container_of(it, struct vm_area_struct, shared_rb);
		unsigned long pages = (vma->vm_end - vma->vm_start) >> PAGE_SHIFT;

		if (!vma->vm_file || vma->vm_file->f_mapping != mapping)
			hetmm_check_fail(ctx,
					 "memfs ino %lu: VMA %#lx-%#lx in i_mmap maps another file",
					 inode->i_ino, vma->vm_start,
					 vma->vm_end);
		if (it->start != vma->vm_pgoff ||
		    it->last != vma->vm_pgoff + pages - 1)
			hetmm_check_fail(ctx,
					 "memfs ino %lu: VMA %#lx-%#lx keyed [%lu, %lu], expected [%lu, %lu]",
					 inode->i_ino, vma->vm_start,
					 vma->vm_end, it->start, it->last,
					 vma->vm_pgoff,
					 vma->vm_pgoff + pages - 1);
	}
}

static void memfs_check_pages(struct inode *inode, struct hetmm_check_ctx *ctx)
{
	struct address_space *mapping = inode->i_mapping;
	pgoff_t eof = (pgoff_t)DIV_ROUND_UP(inode->i_size, (loff_t)PAGE_SIZE);
	bool huge = hugetlbfs_mapping(mapping);
	unsigned long index, nr = 0;
	struct folio *folio;

	if (xa_validate(&mapping->i_pages))
		hetmm_check_fail(ctx, "memfs ino %lu: i_pages is corrupt",
				 inode->i_ino);
	xa_for_each(&mapping->i_pages, index, folio) {
		bool tagged = xa_get_mark(&mapping->i_pages, index,
					  PAGECACHE_TAG_DIRTY);

		nr++;
		if (xa_is_value(folio)) {
			hetmm_check_fail(ctx,
					 "memfs ino %lu index %lu: value entry in the page cache",
					 inode->i_ino, index);
			continue;
		}
		if (folio->page.mapping != mapping ||
		    folio->page.index != index)
			hetmm_check_fail(ctx,
					 "memfs ino %lu index %lu: folio pfn %#lx says mapping %p index %lu",
					 inode->i_ino, index, folio_pfn(folio),
					 folio->page.mapping, folio->page.index);
		if (folio_ref_count(folio) < 1)
			hetmm_check_fail(ctx,
					 "memfs ino %lu index %lu: cached folio has refcount %d",
					 inode->i_ino, index,
					 folio_ref_count(folio));
		if (huge) {
			if (PageTail(&folio->page) ||
			    folio_order(folio) != PMD_ORDER ||
			    !folio_test_hugetlb(folio) ||
			    !IS_ALIGNED(index, HPAGE_PMD_NR))
				hetmm_check_fail(ctx,
						 "memfs ino %lu index %lu: not a 2 MiB hugetlb folio at a 2 MiB slot",
						 inode->i_ino, index);
			else if (folio_ref_count(folio) <
				 1 + folio_mapcount(folio))
				hetmm_check_fail(ctx,
						 "memfs ino %lu index %lu: refcount %d < 1 + %d mappings",
						 inode->i_ino, index,
						 folio_ref_count(folio),
						 folio_mapcount(folio));
		} else if (folio_test_large(folio) || PageTail(&folio->page)) {
			hetmm_check_fail(ctx,
					 "memfs ino %lu index %lu: cached folio is not order 0",
					 inode->i_ino, index);
		}
		if (!folio_test_flag(folio, PG_uptodate))
			hetmm_check_fail(ctx,
					 "memfs ino %lu index %lu: cached folio not uptodate",
					 inode->i_ino, index);
		if (index >= eof)
			hetmm_check_fail(ctx,
					 "memfs ino %lu index %lu: folio beyond EOF (size %lld)",
					 inode->i_ino, index,
					 (long long)inode->i_size);
		if (tagged != folio_test_flag(folio, PG_dirty))
			hetmm_check_fail(ctx,
					 "memfs ino %lu index %lu: PG_dirty %d but dirty tag %d (use folio_mark_dirty)",
					 inode->i_ino, index,
					 folio_test_flag(folio, PG_dirty), tagged);
	}
	if (nr != mapping->nrpages)
		hetmm_check_fail(ctx,
				 "memfs ino %lu: nrpages %lu but %lu folios cached",
				 inode->i_ino, mapping->nrpages, nr);
}

static void memfs_check(struct hetmm_machine *m, void *arg,
			struct hetmm_check_ctx *ctx)
{
	struct hetmm_fs *fs = arg;
	unsigned long nr_inodes = 0, nr_linked = 0, nr_names = 0;
	struct inode *inode;
	struct rb_node *node;

	(void)m;
	mutex_lock(&fs->lock);
	for (node = rb_first(&fs->dentries); node; node = rb_next(node)) {
		struct memfs_dentry *d =
			rb_entry(node, struct memfs_dentry, d_rb);

		nr_names++;
		if (d->d_inode->i_nlink != 1)
			hetmm_check_fail(ctx, "memfs '%s': named inode %lu has nlink %u",
					 d->d_name, d->d_inode->i_ino,
					 d->d_inode->i_nlink);
	}
	list_for_each_entry(inode, &fs->inodes, i_sb_list) {
		int count = atomic_load(&inode->i_count);

		nr_inodes++;
		nr_linked += inode->i_nlink;
		if (count < 0 || count < (int)inode->i_nlink)
			hetmm_check_fail(ctx, "memfs ino %lu: i_count %d, i_nlink %u",
					 inode->i_ino, count, inode->i_nlink);
		if (inode->i_size < 0 || inode->i_size > HETMM_FS_MAXBYTES ||
		    (inode->i_kind == HETMM_FS_HUGETLBFS &&
		     !IS_ALIGNED(inode->i_size, HUGETLBFS_PAGE_SIZE)))
			hetmm_check_fail(ctx, "memfs ino %lu: i_size %lld",
					 inode->i_ino, (long long)inode->i_size);
		if (inode->i_mapping != &inode->i_data ||
		    inode->i_data.host != inode ||
		    inode->i_data.kind != inode->i_kind)
			hetmm_check_fail(ctx, "memfs ino %lu: address_space links broken",
					 inode->i_ino);
		memfs_check_pages(inode, ctx);
		memfs_check_mmap(inode, ctx);
	}
	if (nr_inodes != fs->nr_inodes)
		hetmm_check_fail(ctx, "memfs: %lu inodes listed, nr_inodes says %lu",
				 nr_inodes, fs->nr_inodes);
	if (nr_linked != nr_names)
		hetmm_check_fail(ctx, "memfs: %lu names but %lu linked inodes",
				 nr_names, nr_linked);
	mutex_unlock(&fs->lock);
}

/* ------------------------------------------------------------ filesystem */

/**
 * hetmm_fs_create - a new, empty filesystem on @m.
 * @m: the machine whose allocator backs the page cache.
 *
 * The checker is registered as "memfs" (further instances on the same
 * machine as "memfs.2", "memfs.3", ...).
 *
 * Return: the filesystem; ERR_PTR(-EINVAL) for a NULL @m; ERR_PTR(-ENOMEM)
 * if memory ran out; ERR_PTR(-ENOSPC) if the machine's checker table is
 * full.
 * Context: may sleep.
 */
struct hetmm_fs *hetmm_fs_create(struct hetmm_machine *m)
{
	struct hetmm_fs *fs;
	int ret = -EEXIST;

	if (!m)
		return ERR_PTR(-EINVAL);
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return ERR_PTR(-ENOMEM);
	fs->machine = m;
	mutex_init(&fs->lock);
	fs->dentries = RB_ROOT;
	INIT_LIST_HEAD(&fs->inodes);

	for (unsigned int i = 1; ret == -EEXIST && i <= HETMM_MAX_CHECKERS;
	     i++) {
		if (i == 1)
			snprintf(fs->check_name, sizeof(fs->check_name),
				 "memfs");
		else
			snprintf(fs->check_name, sizeof(fs->check_name),
				 "memfs.%u", i);
		ret = hetmm_checker_register(m, fs->check_name, memfs_check,
					     fs);
	}
	if (ret) {
		mutex_destroy(&fs->lock);
		free(fs);
		return ERR_PTR(ret == -EEXIST ? -ENOSPC : ret);
	}
	return fs;
}

/**
 * hetmm_fs_destroy - remove every name and free the filesystem.
 * @fs: the filesystem; NULL and ERR_PTR values are ignored.
 *
 * Return: 0; -EBUSY if some file is still open or mapped (an inode holds
 * references beyond its name), in which case nothing changes.
 * Context: may sleep.
 */
int hetmm_fs_destroy(struct hetmm_fs *fs)
{
	struct memfs_dentry *dentry, *next;
	struct inode *inode;
	struct rb_root names;

	if (IS_ERR_OR_NULL(fs))
		return 0;
	mutex_lock(&fs->lock);
	list_for_each_entry(inode, &fs->inodes, i_sb_list) {
		if (atomic_load(&inode->i_count) != (int)inode->i_nlink) {
			mutex_unlock(&fs->lock);
			return -EBUSY;
		}
	}
	names = fs->dentries;
	fs->dentries = RB_ROOT;
	rbtree_postorder_for_each_entry_safe(dentry, next, &names, d_rb)
		dentry->d_inode->i_nlink = 0;
	mutex_unlock(&fs->lock);

	hetmm_checker_unregister(fs->machine, fs->check_name);
	rbtree_postorder_for_each_entry_safe(dentry, next, &names, d_rb) {
		iput(dentry->d_inode);
		free(dentry);
	}
	HETMM_WARN_ON_ONCE(!list_empty(&fs->inodes));
	mutex_destroy(&fs->lock);
	free(fs);
	return 0;
}

/**
 * hetmm_fs_set_hooks - tell memfs how to reach the mm layer.
 * @fs: the filesystem.
 * @h: the hooks (copied), or NULL to clear them.
 *
 * Context: set before any file of @fs is mapped; the hooks are read
 * without a lock.
 */
void hetmm_fs_set_hooks(struct hetmm_fs *fs, const struct hetmm_fs_hooks *h)
{
	mutex_lock(&fs->lock);
	if (h)
		fs->hooks = *h;
	else
		memset(&fs->hooks, 0, sizeof(fs->hooks));
	mutex_unlock(&fs->lock);
}

/* The machine @fs allocates from. Context: any. */
struct hetmm_machine *hetmm_fs_machine(const struct hetmm_fs *fs)
{
	return fs->machine;
}

/* Live inodes: named, open or mapped. Context: takes fs.lock. */
unsigned long hetmm_fs_nr_inodes(struct hetmm_fs *fs)
{
	unsigned long nr;

	mutex_lock(&fs->lock);
	nr = fs->nr_inodes;
	mutex_unlock(&fs->lock);
	return nr;
}
