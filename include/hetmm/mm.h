/* SPDX-License-Identifier: MIT */
/*
 * hetmm/mm.h - the kernel face of an address space: VMA lookup, page-table
 * allocation and locking, and the generic page-table walker.
 *
 * Map:
 *   find_vma / vma_lookup        the VMA tree (mm->mm_rb, under mmap_lock)
 *   pgd_offset .. pte_offset     reaching an entry at each level
 *   pud_alloc, pmd_alloc,        installing missing tables (table frames
 *   __pte_alloc                  come from the page allocator)
 *   pte_offset_map_lock          a PTE with its split lock held
 *   walk_page_range + mm_walk_ops  the one walker every layer uses
 *   free_pgd_range               freeing empty tables (RCU-deferred)
 *   vm_insert_page(s),           drivers mapping their own pages into a
 *   hetmm_mmap_driver            VM_MIXEDMAP VMA (a device file's mmap)
 *
 * Locking:
 *   mmap_lock (read: faults, walks; write: VMA changes, table freeing)
 *     mm->page_table_lock (installing PUD/PMD tables; PMD leaf changes)
 *     PTE-table split lock (page->ptl of the PTE table's frame)
 * Lock-free walkers (GUP-fast) read entries under rcu_read_lock(); tables
 * are freed only after a grace period, so a stale pointer still points at
 * a table frame that is not yet reused.
 */
#ifndef HETMM_MM_H
#define HETMM_MM_H

#include "mm_types.h"
#include "pgtable.h"

/* ------------------------------------------------------------------ VMAs */

/* First VMA with vm_end > @addr, or NULL. Context: mmap_lock held. */
struct vm_area_struct *find_vma(struct mm_struct *mm, unsigned long addr);
/* The VMA containing @addr, or NULL. Context: mmap_lock held. */
struct vm_area_struct *vma_lookup(struct mm_struct *mm, unsigned long addr);
/* The VMA after @vma in address order, or NULL. */
struct vm_area_struct *vma_next(struct vm_area_struct *vma);
/*
 * insert_vm_struct - link @vma into @mm's tree.
 * Return: 0, or -EINVAL if it is misaligned, empty, beyond TASK_SIZE or
 * overlaps an existing VMA. Context: mmap_lock held for write.
 */
int insert_vm_struct(struct mm_struct *mm, struct vm_area_struct *vma);
/* Unlink @vma from its mm's tree. Context: mmap_lock held for write. */
void vma_unlink(struct vm_area_struct *vma);

/* --------------------------------------------------------- page tables */

static inline pgd_t *pgd_offset(struct mm_struct *mm, unsigned long addr)
{
	return (pgd_t *)mm->pgd + pgd_index(addr);
}

/* The table an upper-level entry points at. */
static inline pte_t *pt_table(struct hetmm_machine *m, pte_t entry)
{
	return (pte_t *)pfn_frame(m, pte_pfn(entry));
}

static inline pud_t *pud_offset(struct mm_struct *mm, pgd_t *pgd,
				unsigned long addr)
{
	return pt_table(mm->machine, ptep_get(pgd)) + pud_index(addr);
}

static inline pmd_t *pmd_offset(struct mm_struct *mm, pud_t *pud,
				unsigned long addr)
{
	return pt_table(mm->machine, ptep_get(pud)) + pmd_index(addr);
}

static inline pte_t *pte_offset(struct mm_struct *mm, pmd_t *pmd,
				unsigned long addr)
{
	return pt_table(mm->machine, ptep_get(pmd)) + pte_index(addr);
}

/* The split lock of the PTE table @pmd points at. */
static inline spinlock_t *pte_lockptr(struct mm_struct *mm, pmd_t *pmd)
{
	return &pfn_to_page(mm->machine, pte_pfn(ptep_get(pmd)))->ptl;
}

/*
 * Install missing tables. Return: the entry pointer at the next level, or
 * NULL if a table frame could not be allocated (-ENOMEM for the caller).
 * A racing installer wins harmlessly: the loser frees its frame.
 * Context: mmap_lock held (read is enough).
 */
pud_t *pud_alloc(struct mm_struct *mm, pgd_t *pgd, unsigned long addr);
pmd_t *pmd_alloc(struct mm_struct *mm, pud_t *pud, unsigned long addr);
int __pte_alloc(struct mm_struct *mm, pmd_t *pmd);

/*
 * pte_offset_map_lock - the PTE for @addr with its table's lock held.
 * Return: the entry, or NULL (nothing locked) if @pmd is not a table.
 */
pte_t *pte_offset_map_lock(struct mm_struct *mm, pmd_t *pmd,
			   unsigned long addr, spinlock_t **ptlp);
/* Walk down to the PMD entry for @addr without allocating; NULL if none. */
pmd_t *mm_find_pmd(struct mm_struct *mm, unsigned long addr);

/* Allocate the PGD of a new mm. Return: 0 or -ENOMEM. */
int pgd_alloc(struct mm_struct *mm);
/*
 * free_pgd_range - free every page-table frame of [@start, @end) whose
 * entries are all none (the mappings must have been zapped already), and
 * the PGD too when the whole user range is given. Frames are handed to
 * call_rcu(). A table still holding entries is left alone.
 * Context: mmap_lock held for write, or the mm has no users left.
 */
void free_pgd_range(struct mm_struct *mm, unsigned long start,
		    unsigned long end);

/* ---------------------------------------------------------------- walker */

enum page_walk_lock {
	PGWALK_RDLOCK,  /* mmap_lock held for read */
	PGWALK_WRLOCK,  /* mmap_lock held for write */
	PGWALK_NOLOCK,  /* caller guarantees stability some other way */
};

/* What a callback wants the walker to do next (walk->action). */
enum page_walk_action {
	ACTION_SUBTREE = 0, /* descend into the entry (default) */
	ACTION_CONTINUE,    /* do not descend; go to the next entry */
	ACTION_AGAIN,       /* call the callback again for this entry */
};

struct mm_walk;

/**
 * struct mm_walk_ops - per-level callbacks; each returns 0 to go on or a
 * nonzero value that stops the walk and is returned by walk_page_range().
 * @pud_entry: each PUD entry (present or not).
 * @pmd_entry: each PMD entry, including leaves and softleaves; set
 *             walk->action = ACTION_CONTINUE to skip its PTEs.
 * @pte_entry: each PTE of a PTE table, called with the table's lock held.
 * @pte_hole: a range with no table at @depth (0 PGD .. 3 PTE), or no VMA
 *            (depth -1).
 * @test_walk: per VMA: 0 to walk it, 1 to skip it, <0 to stop with error.
 * @walk_lock: the mmap_lock mode the caller holds (asserted).
 */
struct mm_walk_ops {
	int (*pud_entry)(pud_t *pud, unsigned long addr, unsigned long next,
			 struct mm_walk *walk);
	int (*pmd_entry)(pmd_t *pmd, unsigned long addr, unsigned long next,
			 struct mm_walk *walk);
	int (*pte_entry)(pte_t *pte, unsigned long addr, unsigned long next,
			 struct mm_walk *walk);
	int (*pte_hole)(unsigned long addr, unsigned long next, int depth,
			struct mm_walk *walk);
	int (*test_walk)(unsigned long addr, unsigned long next,
			 struct mm_walk *walk);
	enum page_walk_lock walk_lock;
};

/**
 * struct mm_walk - the state handed to every callback.
 * @ops: the callbacks. @mm: the address space. @vma: the current VMA (NULL
 * for walk_page_range_novma). @private: the walker user's own struct.
 * @action: set by a callback (see enum page_walk_action).
 */
struct mm_walk {
	const struct mm_walk_ops *ops;
	struct mm_struct *mm;
	struct vm_area_struct *vma;
	void *private;
	enum page_walk_action action;
};

/*
 * walk_page_range - walk [@start, @end) VMA by VMA.
 * Return: 0, the first nonzero callback value, or -EINVAL for a bad range.
 * Context: mmap_lock held as ops->walk_lock says.
 */
int walk_page_range(struct mm_struct *mm, unsigned long start,
		    unsigned long end, const struct mm_walk_ops *ops,
		    void *private);
/* The same over raw page tables, ignoring VMAs. */
int walk_page_range_novma(struct mm_struct *mm, unsigned long start,
			  unsigned long end, const struct mm_walk_ops *ops,
			  void *private);

/* ------------------------------------------------ driver-mapped pages */

/*
 * vm_insert_page - map @page, a driver's own page, at @addr of @vma (the
 * kernel's rules, mm/memory.c). The first insertion into a VMA sets
 * VM_MIXEDMAP, which needs mmap_lock held for write (a driver's mmap
 * handler); afterwards read is enough. The PTE is a normal, not special,
 * mapping: it takes a reference and a mapcount of @page, which zap drops;
 * the caller keeps (and usually drops) its own reference. Protection is
 * what the VMA gives a fresh mapping: read-only in a private VMA
 * (copy-on-write), writable in a shared writable one. The zero page is
 * accepted (mapped special) only where it cannot become writable.
 * Return: 0; -EFAULT (@addr outside @vma), -EINVAL (free, anonymous,
 * page-table, driver-internal, hugetlb or device-private page; the zero
 * page in a shared writable VMA; a VM_PFNMAP VMA), -EBUSY (something is
 * mapped there already), -ENOMEM (no frame for a page table).
 * Context: mmap_lock held (write unless VM_MIXEDMAP is already set).
 */
int vm_insert_page(struct vm_area_struct *vma, unsigned long addr,
		   struct page *page);
/*
 * vm_insert_pages - vm_insert_page() of @pages[0 .. *@num) at consecutive
 * addresses from @addr, one PTE-lock round per page table. On return
 * *@num is the number of pages not mapped (0: all were); on an error the
 * pages before the failing one stay mapped. Return: as vm_insert_page();
 * -EFAULT if the whole range does not fit in @vma (nothing mapped).
 */
int vm_insert_pages(struct vm_area_struct *vma, unsigned long addr,
		    struct page **pages, unsigned long *num);
/*
 * hetmm_mmap_driver - mmap(2) of a device file: a new VMA of @len bytes
 * in @mm (placed top-down, or at @addr with MAP_FIXED/MAP_FIXED_NOREPLACE;
 * MAP_SHARED or MAP_PRIVATE, MAP_POPULATE and MAP_NORESERVE accepted) with
 * no file behind it, handed to @mmap (the driver's f_op->mmap) with
 * mmap_lock held for write; the handler fills it, typically with
 * vm_insert_page(). If the handler fails, what it inserted is zapped and
 * the VMA removed (a MAP_FIXED range it replaced stays unmapped, as in
 * Linux).
 * Return: the address; -EINVAL (bad length, alignment, prot or flags),
 * -ENOMEM, -EEXIST (MAP_FIXED_NOREPLACE over a mapping), or the
 * handler's error.
 */
long hetmm_mmap_driver(struct mm_struct *mm, unsigned long addr, size_t len,
		       int prot, int flags,
		       int (*mmap)(struct vm_area_struct *vma, void *priv),
		       void *priv);

/* ------------------------------------------------------ device entries */

/*
 * migration_entry_wait - the PTE (or, with @pte NULL, the PMD) at @addr
 * held a migration entry: sleep until its folio is unlocked (the migration
 * finished), so the caller can retry. Returns at once if the entry changed.
 * Context: mmap_lock held for read; no page-table lock held.
 */
void migration_entry_wait(struct mm_struct *mm, pmd_t *pmd,
			  unsigned long addr);
void pmd_migration_entry_wait(struct mm_struct *mm, pmd_t *pmd);

#endif /* HETMM_MM_H */
