/* SPDX-License-Identifier: MIT */
/*
 * hetmm/fs.h - memfs: an in-memory filesystem with a page cache.
 *
 * Map:
 *   struct hetmm_fs        one filesystem on a machine (opaque): a flat
 *                          namespace of names -> inodes, the list of live
 *                          inodes, the mm layer's hooks, a checker
 *   struct inode           one file: size, link count, references, kind
 *                          and i_rwsem; embeds its page cache (i_data)
 *   struct address_space   the page cache of an inode: i_pages (page index
 *                          -> folio: order 0, or 2 MiB for hugetlbfs) and
 *                          i_mmap (interval tree of the VMAs that map the
 *                          file)
 *   struct file            an open file: access mode, O_* flags, inode
 *   struct hetmm_fs_hooks  callbacks into the mm layer: unmap a range of
 *                          the file from every process (truncate), clean
 *                          the PTEs of a folio (writeback)
 *
 * File kinds: HETMM_FS_TMPFS behaves like shmem (no writeback, folios are
 * swap-backed, a shared writable mapping needs no dirty tracking).
 * HETMM_FS_WRITEBACK behaves like a disk filesystem (ext4): dirty folios
 * are tagged and hetmm_fs_writeback() cleans them, and
 * mapping_needs_writeback() is true, so the GUP layer refuses R/W
 * long-term pins of its shared mappings.
 * HETMM_FS_HUGETLBFS behaves like hugetlbfs with 2 MiB pages: its page
 * cache holds PG_hugetlb folios of order PMD_ORDER, each in the slot of
 * its first page (a multiple of HPAGE_PMD_NR), and the mm layer maps them
 * only with PMD leaves (VM_HUGETLB). i_size is always a multiple of
 * HUGETLBFS_PAGE_SIZE: ftruncate to anything else fails with -EINVAL.
 * Folios are marked dirty when created (nothing ever writes them back).
 * Linux has no write(2) on hugetlbfs; here pwrite works inside i_size
 * (a test convenience) and fails with -EINVAL at or beyond it, so only
 * ftruncate and a writable mmap (hugetlbfs_extend_size()) grow a file.
 *
 * Page cache rules (what the mm layer may rely on):
 *   - a cached folio may be replaced by a copy (page migration, e.g. off
 *     ZONE_MOVABLE for a long-term pin) with folio_migrate_mapping(),
 *     under both folio locks once it is unmapped; a lookup that races
 *     either holds a reference (the migration gives up) or finds the
 *     copy, and a locker of the old folio sees page.mapping change;
 *   - a cached folio is order 0 (order PMD_ORDER, PG_hugetlb, for
 *     hugetlbfs), has page.mapping == its address_space, page.index ==
 *     its slot, PG_uptodate, and the cache holds exactly one reference:
 *     refcount == 1 + mappings + other holders;
 *   - no folio is cached at or beyond DIV_ROUND_UP(i_size, PAGE_SIZE);
 *   - a folio leaves the cache only with its folio lock held, after the
 *     unmap_mapping_range hook has removed it from every page table;
 *     page.mapping is then NULL (a pinned folio may outlive its file);
 *   - PG_dirty on a cached folio <=> the PAGECACHE_TAG_DIRTY mark on its
 *     slot; set it with folio_mark_dirty(), never folio_set_flag();
 *   - bytes of the last page beyond i_size read as zero once the size
 *     grows over them (pwrite and truncate zero that tail first).
 *
 * Fault path protocol: take inode_lock_shared(), check the offset against
 * i_size, filemap_grab_folio(), install the PTE, unlock the folio, then
 * inode_unlock_shared(). Truncate holds the inode lock exclusively, so no
 * folio can be faulted in behind its unmap.
 *
 * i_mmap convention: a VMA mapping the file is inserted with
 * shared_rb.start = vm_pgoff and shared_rb.last = vm_pgoff + pages - 1,
 * under i_mmap_lock_write(); the checker verifies this.
 *
 * Lifetime: i_count counts the namespace link (while i_nlink == 1), every
 * struct file, and every ihold() (the mm layer holds one per VMA, or a
 * file reference). The last iput() frees every cached folio and the inode.
 *
 * Lock order (see the top of src/fs/memfs.c; matches docs/locking.md):
 *   mm.mmap_lock -> inode.i_rwsem -> folio lock -> i_mmap_rwsem
 *     -> page-table lock -> i_pages.xa_lock;
 * the filesystem's namespace lock is a leaf. The hooks are called with
 * i_rwsem held (truncate) or a folio lock held (mkclean); they must not
 * take mmap_lock. The last iput() locks the inode's folios, so it must
 * not run under one of them.
 *
 * Sizes: loff_t and ssize_t come from <sys/types.h> (the project builds
 * with _GNU_SOURCE); the O_* flags from <fcntl.h>.
 */
#ifndef HETMM_FS_H
#define HETMM_FS_H

#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "compiler.h"
#include "list.h"
#include "lock.h"
#include "page.h"
#include "phys.h"
#include "rbtree.h"
#include "xarray.h"

struct hetmm_fs;
struct inode;

/* The page size of HETMM_FS_HUGETLBFS files: 2 MiB. */
#define HUGETLBFS_PAGE_SIZE ((loff_t)PAGE_SIZE << PMD_ORDER)

/* Largest file: 1 TiB. Offsets at or beyond it fail with -EFBIG. */
#define HETMM_FS_MAXBYTES ((loff_t)1 << 40)
/* Largest page index a file can hold. */
#define HETMM_FS_MAX_INDEX ((pgoff_t)(HETMM_FS_MAXBYTES >> PAGE_SHIFT) - 1)
/* Longest name, in bytes, not counting the terminating NUL. */
#define HETMM_FS_NAME_MAX 255
/* Largest single read or write, as in Linux (larger ones are short). */
#define HETMM_FS_MAX_RW_COUNT ((size_t)(INT32_MAX & PAGE_MASK))

/* The i_pages mark of dirty folios. */
#define PAGECACHE_TAG_DIRTY XA_MARK_0

/* struct file::f_mode bits. */
#define FMODE_READ 0x1u
#define FMODE_WRITE 0x2u

/**
 * enum hetmm_fs_kind - how a file's data is backed.
 * @HETMM_FS_TMPFS: shmem-like; no writeback (the default).
 * @HETMM_FS_WRITEBACK: disk-filesystem-like; dirty folios are written back.
 * @HETMM_FS_HUGETLBFS: hugetlbfs-like; 2 MiB folios, 2 MiB-multiple sizes.
 * @NR_HETMM_FS_KINDS: number of kinds.
 */
enum hetmm_fs_kind {
	HETMM_FS_TMPFS = 0,
	HETMM_FS_WRITEBACK = 1,
	HETMM_FS_HUGETLBFS = 2,
	NR_HETMM_FS_KINDS,
};

/**
 * struct address_space - the page cache of one inode.
 * @host: the owning inode; constant.
 * @kind: the host's enum hetmm_fs_kind; constant.
 * @i_pages: page index -> folio; the cache's reference to each folio
 *	belongs to its slot (for hugetlbfs, only the slot of a folio's first
 *	page is used). Changed under its xa_lock with the folio locked; read
 *	lock-free.
 * @nrpages: folios in @i_pages. Protected by @i_pages.xa_lock.
 * @i_mmap_rwsem: protects @i_mmap; use i_mmap_lock_*().
 * @i_mmap: interval tree of the VMAs mapping this file, keyed by page
 *	offset (struct vm_area_struct::shared_rb; see the file comment).
 */
struct address_space {
	struct inode *host;
	enum hetmm_fs_kind kind;
	struct xarray i_pages;
	unsigned long nrpages;
	struct rw_semaphore i_mmap_rwsem;
	struct rb_root i_mmap;
};

/**
 * struct inode - one file.
 * @i_fs: the filesystem; constant.
 * @i_ino: inode number, unique per filesystem; constant.
 * @i_kind: enum hetmm_fs_kind; constant.
 * @i_rwsem: the inode lock: held for write by pwrite and truncate (which
 *	change @i_size and the set of cached folios), for read by pread and
 *	by the mm fault path. Use inode_lock*().
 * @i_size: file size in bytes. Written under @i_rwsem held for write;
 *	read with i_size_read().
 * @i_count: references (see the file comment). Use ihold()/iput().
 * @i_nlink: 1 while a name refers to the inode, else 0. Protected by the
 *	filesystem's namespace lock.
 * @i_nr_written: folios written back so far (WRITEBACK kind only).
 * @i_data: the page cache.
 * @i_mapping: &@i_data.
 * @i_sb_list: link in the filesystem's list of live inodes. Protected by
 *	the namespace lock.
 */
struct inode {
	struct hetmm_fs *i_fs;
	unsigned long i_ino;
	enum hetmm_fs_kind i_kind;
	struct rw_semaphore i_rwsem;
	loff_t i_size;
	atomic_int i_count;
	unsigned int i_nlink;
	atomic_ulong i_nr_written;
	struct address_space i_data;
	struct address_space *i_mapping;
	struct list_head i_sb_list;
};

/**
 * struct file - an open file.
 * @f_count: references; use get_file()/fput(). The last fput() drops the
 *	file's inode reference.
 * @f_flags: O_ACCMODE and O_APPEND as given to hetmm_fs_open(); constant.
 * @f_mode: FMODE_READ and/or FMODE_WRITE, derived from @f_flags; constant.
 * @f_inode: the inode (the file holds a reference); constant.
 * @f_mapping: @f_inode's page cache; constant.
 */
struct file {
	atomic_long f_count;
	unsigned int f_flags;
	unsigned int f_mode;
	struct inode *f_inode;
	struct address_space *f_mapping;
};

/**
 * struct hetmm_fs_hooks - what memfs asks of the mm layer.
 * @unmap_mapping_range: remove the PTEs of every VMA of @mapping that
 *	map file pages [@first, @last] (inclusive), including private COW
 *	copies of those pages, as truncation requires. Called with the
 *	inode lock held for write, before those folios leave the cache.
 *	Must not take mmap_lock. May be NULL.
 * @folio_mkclean: write-protect and clean every shared PTE mapping
 *	@folio so the next write through a mapping dirties the folio again.
 *	Called with @folio locked during writeback. Return: how many PTEs
 *	were dirty (the folio is then treated as dirty). May be NULL.
 */
struct hetmm_fs_hooks {
	void (*unmap_mapping_range)(struct address_space *mapping,
				    pgoff_t first, pgoff_t last);
	int (*folio_mkclean)(struct folio *folio);
};

/* ------------------------------------------------------------ filesystem */

struct hetmm_fs *hetmm_fs_create(struct hetmm_machine *m);
int hetmm_fs_destroy(struct hetmm_fs *fs);
void hetmm_fs_set_hooks(struct hetmm_fs *fs, const struct hetmm_fs_hooks *h);
struct hetmm_machine *hetmm_fs_machine(const struct hetmm_fs *fs);
unsigned long hetmm_fs_nr_inodes(struct hetmm_fs *fs);

struct file *hetmm_fs_open(struct hetmm_fs *fs, const char *path, int flags,
			   int kind);
int hetmm_fs_unlink(struct hetmm_fs *fs, const char *path);

long hetmm_inode_writeback(struct inode *inode);
long hetmm_fs_writeback(struct hetmm_fs *fs);

/* ----------------------------------------------------------------- files */

struct file *get_file(struct file *file);
void fput(struct file *file);
ssize_t file_pread(struct file *file, void *buf, size_t len, loff_t off);
ssize_t file_pwrite(struct file *file, const void *buf, size_t len,
		    loff_t off);
int file_truncate(struct file *file, loff_t size);

static inline struct inode *file_inode(const struct file *file)
{
	return file->f_inode;
}

/* ---------------------------------------------------------------- inodes */

void ihold(struct inode *inode);
void iput(struct inode *inode);

/* The file size; a snapshot unless the caller holds the inode lock. */
static inline loff_t i_size_read(const struct inode *inode)
{
	return __atomic_load_n(&inode->i_size, __ATOMIC_ACQUIRE);
}

/* Context: may sleep. Exclusive: pwrite, truncate. */
static inline void inode_lock(struct inode *inode)
{
	down_write(&inode->i_rwsem);
}

static inline void inode_unlock(struct inode *inode)
{
	up_write(&inode->i_rwsem);
}

/* Context: may sleep. Shared: pread and the mm fault path. */
static inline void inode_lock_shared(struct inode *inode)
{
	down_read(&inode->i_rwsem);
}

static inline void inode_unlock_shared(struct inode *inode)
{
	up_read(&inode->i_rwsem);
}

/* ------------------------------------------------------- address spaces */

static inline void i_mmap_lock_write(struct address_space *mapping)
{
	down_write(&mapping->i_mmap_rwsem);
}

static inline void i_mmap_unlock_write(struct address_space *mapping)
{
	up_write(&mapping->i_mmap_rwsem);
}

static inline void i_mmap_lock_read(struct address_space *mapping)
{
	down_read(&mapping->i_mmap_rwsem);
}

static inline void i_mmap_unlock_read(struct address_space *mapping)
{
	up_read(&mapping->i_mmap_rwsem);
}

#define i_mmap_assert_locked(mapping) \
	rwsem_assert_held(&(mapping)->i_mmap_rwsem)
#define i_mmap_assert_write_locked(mapping) \
	rwsem_assert_held_write(&(mapping)->i_mmap_rwsem)

/* True if some VMA maps the file; a snapshot without i_mmap_rwsem. */
static inline bool mapping_mapped(const struct address_space *mapping)
{
	return !RB_EMPTY_ROOT(&mapping->i_mmap);
}

/*
 * True if dirty folios of @mapping must be written back, so a shared
 * writable mapping needs dirty tracking (and may not be R/W long-term
 * pinned).
 */
static inline bool mapping_needs_writeback(const struct address_space *mapping)
{
	return mapping->kind == HETMM_FS_WRITEBACK;
}

/* True for tmpfs (shmem-like) files. */
static inline bool shmem_mapping(const struct address_space *mapping)
{
	return mapping->kind == HETMM_FS_TMPFS;
}

/* True for hugetlbfs files: 2 MiB folios, mapped only by PMD leaves. */
static inline bool hugetlbfs_mapping(const struct address_space *mapping)
{
	return mapping->kind == HETMM_FS_HUGETLBFS;
}

static inline bool is_file_hugepages(const struct file *file)
{
	return hugetlbfs_mapping(file->f_mapping);
}

/* ------------------------------------------------------------ page cache */

/* For hugetlbfs, both return the 2 MiB folio that contains page @index. */
struct folio *filemap_get_folio(struct address_space *mapping, pgoff_t index);
struct folio *filemap_grab_folio(struct address_space *mapping,
				 pgoff_t index);
struct folio *__filemap_grab_folio(struct address_space *mapping, pgoff_t index,
				   bool *created);
bool folio_mark_dirty(struct folio *folio);
/*
 * folio_migrate_mapping - hand @folio's page-cache slot to @newfolio (the
 * kernel's folio_migrate_mapping(), called by migrate_folio()). @folio is
 * locked, unmapped (try_to_migrate()) and cached in @mapping; the caller
 * holds one reference to it (the migration's), and @extra_count more are
 * expected. @newfolio is locked, of the same order, in no cache, with the
 * caller's reference, and already holds the data. Under xa_lock: if
 * @folio has any reference beyond the cache's, the caller's and
 * @extra_count (a racing lookup, a GUP pin or reference, a pread), nothing
 * changes; else @newfolio takes the slot (its marks stay), page.mapping,
 * page.index, the cache's reference, PG_dirty, PG_swapbacked and
 * PG_hugetlb, and is marked PG_uptodate (the cache rules below hold from
 * the moment it is visible); @folio leaves the cache (page.mapping NULL,
 * the cache's reference dropped).
 * Return: 0, or -EAGAIN (unexpected references, or @folio is no longer
 * cached: try again later).
 * Context: both folio locks held; takes xa_lock.
 */
int folio_migrate_mapping(struct address_space *mapping,
			  struct folio *newfolio, struct folio *folio,
			  int extra_count);
void truncate_inode_pages_range(struct address_space *mapping, loff_t lstart,
				loff_t lend);
void hugetlbfs_extend_size(struct inode *inode, loff_t size);

#endif /* HETMM_FS_H */
