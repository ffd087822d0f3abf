// SPDX-License-Identifier: MIT
/*
 * pgtable.c - page-table frames, table installation, and the walker.
 *
 * Locking and invariants:
 *   mmap_lock
 *     mm->page_table_lock   installing a PUD/PMD table into an empty entry
 *       page->ptl           (of a PTE table) every change to its entries
 *   - An upper-level entry is none or a present table entry (PMD entries may
 *     also be leaves/softleaves, changed under page_table_lock).
 *   - A table frame is PG_pgtable with refcount 1 while linked; it is
 *     unlinked, then freed through call_rcu(), so lock-free readers that
 *     loaded its pfn before the unlink read a frame that is not reused
 *     until they leave their read-side section.
 *   - mm->nr_pt_pages == number of table frames linked into the mm.
 */
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/mm.h>
#include <hetmm/stats.h>

#include "internal.h"

struct page *pt_frame_alloc(struct mm_struct *mm)
{
	struct hetmm_machine *m = mm->machine;
	struct page *page;

	if (should_fail(&m->faults, HETMM_FAULT_pgtable_alloc))
		return NULL;
	page = alloc_pages(m, GFP_KERNEL, 0);
	if (!page)
		return NULL;
	memset(page_frame(page), 0, PAGE_SIZE);
	PageSetFlag(page, PG_pgtable);
	spin_lock_init(&page->ptl);
	page->pt_used = 0;
	INIT_LIST_HEAD(&page->lru); /* THP deposits, if a PMD table */
	atomic_fetch_add(&mm->nr_pt_pages, 1);
	count_stat(HETMM_STAT_pt_page_alloc);
	return page;
}

static void pt_frame_free_rcu(struct rcu_head *head)
{
	struct page *page = container_of(head, struct page, rcu);

	PageClearFlag(page, PG_pgtable);
	page->mapping = NULL;
	page->index = 0;
	INIT_LIST_HEAD(&page->lru);
	put_page(page);
	count_stat(HETMM_STAT_pt_page_free);
}

/* Free a table frame after a grace period. */
void pt_frame_free(struct mm_struct *mm, struct page *page)
{
	atomic_fetch_sub(&mm->nr_pt_pages, 1);
	call_rcu(&page->rcu, pt_frame_free_rcu);
}

pte_t table_entry(struct page *table)
{
	return pfn_pte(page_to_pfn(table), _PAGE_RW | _PAGE_TABLE);
}

int pgd_alloc(struct mm_struct *mm)
{
	struct page *page = pt_frame_alloc(mm);

	if (!page)
		return -ENOMEM;
	mm->pgd = page_frame(page);
	spin_lock_init(&mm->page_table_lock);
	return 0;
}

/* Install a fresh table into the none entry @entry (race-safe). */
static int install_table(struct mm_struct *mm, pte_t *entry)
{
	struct page *page;

	if (!pte_none(ptep_get(entry)))
		return 0;
	page = pt_frame_alloc(mm);
	if (!page)
		return -ENOMEM;
	spin_lock(&mm->page_table_lock);
	if (pte_none(ptep_get(entry))) {
		set_pte(entry, table_entry(page));
		page = NULL;
	}
	spin_unlock(&mm->page_table_lock);
	if (page) { /* somebody else installed one first */
		atomic_fetch_sub(&mm->nr_pt_pages, 1);
		count_stat(HETMM_STAT_pt_page_free);
		PageClearFlag(page, PG_pgtable);
		page->mapping = NULL;
		put_page(page);
	}
	return 0;
}

pud_t *pud_alloc(struct mm_struct *mm, pgd_t *pgd, unsigned long addr)
{
	if (install_table(mm, pgd))
		return NULL;
	return pud_offset(mm, pgd, addr);
}

pmd_t *pmd_alloc(struct mm_struct *mm, pud_t *pud, unsigned long addr)
{
	if (install_table(mm, pud))
		return NULL;
	return pmd_offset(mm, pud, addr);
}

int __pte_alloc(struct mm_struct *mm, pmd_t *pmd)
{
	return install_table(mm, pmd);
}

pte_t *pte_offset_map_lock(struct mm_struct *mm, pmd_t *pmd,
			   unsigned long addr, spinlock_t **ptlp)
{
	pmd_t v = ptep_get(pmd);
	spinlock_t *ptl;

	if (!pmd_table(v))
		return NULL;
	ptl = &pfn_to_page(mm->machine, pte_pfn(v))->ptl;
	spin_lock(ptl);
	/*
	 * The PMD may have changed (the table freed, or replaced by a THP
	 * leaf) before we got the lock: only the same table will do.
	 */
	if (pte_val(ptep_get(pmd)) != pte_val(v)) {
		spin_unlock(ptl);
		return NULL;
	}
	*ptlp = ptl;
	return pte_offset(mm, pmd, addr);
}

pmd_t *mm_find_pmd(struct mm_struct *mm, unsigned long addr)
{
	pgd_t *pgd = pgd_offset(mm, addr);
	pud_t *pud;

	if (!pmd_table(ptep_get(pgd)))
		return NULL;
	pud = pud_offset(mm, pgd, addr);
	if (!pmd_table(ptep_get(pud)))
		return NULL;
	return pmd_offset(mm, pud, addr);
}

/* ---------------------------------------------------------- freeing */

static bool table_empty(const pte_t *t)
{
	for (int i = 0; i < PTRS_PER_TABLE; i++)
		if (!pte_none(ptep_get(&t[i])))
			return false;
	return true;
}

/*
 * Free the tables below @entry (at @level: 0 = entry is a PGD entry) that
 * lie entirely inside [start, end) and are empty after their own children
 * were freed. Return: true if @entry was cleared.
 */
static bool free_below(struct mm_struct *mm, pte_t *entry, int level,
		       unsigned long base, unsigned long start,
		       unsigned long end)
{
	static const unsigned int shift[] = { PGDIR_SHIFT, PUD_SHIFT,
					      PMD_SHIFT };
	unsigned long span = 1UL << shift[level];
	pte_t e = ptep_get(entry);
	pte_t *t;

	if (!pmd_table(e))
		return false;
	t = pt_table(mm->machine, e);
	if (level < 2) {
		unsigned long child = 1UL << shift[level + 1];

		for (int i = 0; i < PTRS_PER_TABLE; i++) {
			unsigned long a = base + (unsigned long)i * child;

			if (a + child <= start || a >= end)
				continue;
			free_below(mm, &t[i], level + 1, a, start, end);
		}
	}
	if (base < start || base + span > end || !table_empty(t))
		return false;
	ptep_get_and_clear(entry);
	pt_frame_free(mm, pfn_to_page(mm->machine, pte_pfn(e)));
	return true;
}

void free_pgd_range(struct mm_struct *mm, unsigned long start,
		    unsigned long end)
{
	pgd_t *pgd = mm->pgd;

	if (!pgd)
		return;
	start = ALIGN_DOWN(start, PMD_SIZE);
	end = min(ALIGN(end, PMD_SIZE), TASK_SIZE);
	for (unsigned long a = ALIGN_DOWN(start, PGDIR_SIZE); a < end;
	     a += PGDIR_SIZE)
		free_below(mm, &pgd[pgd_index(a)], 0, a, start, end);
	if (start == 0 && end == TASK_SIZE && table_empty(pgd)) {
		struct page *page = pfn_to_page(
			mm->machine,
			(unsigned long)((unsigned char *)pgd -
					mm->machine->frames) >>
				PAGE_SHIFT);

		mm->pgd = NULL;
		pt_frame_free(mm, page);
	}
}

/* ---------------------------------------------------------------- walker */

static int walk_hole(unsigned long a, unsigned long n, int depth,
		     struct mm_walk *w)
{
	return w->ops->pte_hole ? w->ops->pte_hole(a, n, depth, w) : 0;
}

static int walk_pte_range(pmd_t *pmd, unsigned long addr, unsigned long end,
			  struct mm_walk *w)
{
	spinlock_t *ptl;
	pte_t *pte;
	int err = 0;

	pte = pte_offset_map_lock(w->mm, pmd, addr, &ptl);
	if (!pte)
		return walk_hole(addr, end, 3, w);
	for (; addr < end; addr += PAGE_SIZE, pte++) {
		err = w->ops->pte_entry(pte, addr, addr + PAGE_SIZE, w);
		if (err)
			break;
	}
	spin_unlock(ptl);
	return err;
}

static int walk_pmd_range(pud_t *pud, unsigned long addr, unsigned long end,
			  struct mm_walk *w)
{
	pmd_t *pmd = pmd_offset(w->mm, pud, addr);
	unsigned long next;
	int err = 0;

	for (; addr < end; addr = next, pmd++) {
		next = pt_addr_end(addr, end, PMD_SIZE);
again:
		if (pte_none(ptep_get(pmd)) && !w->ops->pmd_entry) {
			err = walk_hole(addr, next, 2, w);
			if (err)
				return err;
			continue;
		}
		w->action = ACTION_SUBTREE;
		if (w->ops->pmd_entry) {
			err = w->ops->pmd_entry(pmd, addr, next, w);
			if (err)
				return err;
			if (w->action == ACTION_AGAIN)
				goto again;
			if (w->action == ACTION_CONTINUE)
				continue;
		}
		if (!w->ops->pte_entry)
			continue;
		if (!pmd_table(ptep_get(pmd))) {
			/* Leaves belong to pmd_entry; none is a hole. */
			if (pte_none(ptep_get(pmd)))
				err = walk_hole(addr, next, 2, w);
			if (err)
				return err;
			continue;
		}
		err = walk_pte_range(pmd, addr, next, w);
		if (err)
			return err;
	}
	return 0;
}

static int walk_pud_range(pgd_t *pgd, unsigned long addr, unsigned long end,
			  struct mm_walk *w)
{
	pud_t *pud = pud_offset(w->mm, pgd, addr);
	unsigned long next;
	int err = 0;

	for (; addr < end; addr = next, pud++) {
		next = pt_addr_end(addr, end, PUD_SIZE);
		w->action = ACTION_SUBTREE;
		if (w->ops->pud_entry) {
			err = w->ops->pud_entry(pud, addr, next, w);
			if (err)
				return err;
			if (w->action == ACTION_CONTINUE)
				continue;
		}
		if (!pmd_table(ptep_get(pud))) {
			err = walk_hole(addr, next, 1, w);
			if (err)
				return err;
			continue;
		}
		if (w->ops->pmd_entry || w->ops->pte_entry || w->ops->pte_hole)
			err = walk_pmd_range(pud, addr, next, w);
		if (err)
			return err;
	}
	return 0;
}

static int walk_pgd_range(unsigned long addr, unsigned long end,
			  struct mm_walk *w)
{
	pgd_t *pgd = pgd_offset(w->mm, addr);
	unsigned long next;
	int err = 0;

	for (; addr < end; addr = next, pgd++) {
		next = pt_addr_end(addr, end, PGDIR_SIZE);
		if (!pmd_table(ptep_get(pgd))) {
			err = walk_hole(addr, next, 0, w);
		} else {
			err = walk_pud_range(pgd, addr, next, w);
		}
		if (err)
			return err;
	}
	return 0;
}

static void walk_assert_locked(struct mm_struct *mm,
			       const struct mm_walk_ops *ops)
{
	switch (ops->walk_lock) {
	case PGWALK_RDLOCK:
		mmap_assert_locked(mm);
		break;
	case PGWALK_WRLOCK:
		mmap_assert_write_locked(mm);
		break;
	case PGWALK_NOLOCK:
		break;
	}
}

static bool walk_range_ok(struct mm_struct *mm, unsigned long start,
			  unsigned long end, const struct mm_walk_ops *ops)
{
	return mm && ops && mm->pgd && start < end && end <= TASK_SIZE &&
	       IS_ALIGNED(start, PAGE_SIZE) && IS_ALIGNED(end, PAGE_SIZE);
}

int walk_page_range_novma(struct mm_struct *mm, unsigned long start,
			  unsigned long end, const struct mm_walk_ops *ops,
			  void *private)
{
	struct mm_walk w = { .ops = ops, .mm = mm, .private = private };

	if (!walk_range_ok(mm, start, end, ops))
		return -EINVAL;
	walk_assert_locked(mm, ops);
	return walk_pgd_range(start, end, &w);
}

int walk_page_range(struct mm_struct *mm, unsigned long start,
		    unsigned long end, const struct mm_walk_ops *ops,
		    void *private)
{
	struct mm_walk w = { .ops = ops, .mm = mm, .private = private };
	struct vm_area_struct *vma;
	unsigned long next;
	int err = 0;

	if (!walk_range_ok(mm, start, end, ops))
		return -EINVAL;
	walk_assert_locked(mm, ops);
	vma = find_vma(mm, start);
	for (; start < end; start = next) {
		if (!vma || start < vma->vm_start) {
			/* A gap without a VMA. */
			next = vma ? min(end, vma->vm_start) : end;
			w.vma = NULL;
			err = walk_hole(start, next, -1, &w);
		} else {
			next = min(end, vma->vm_end);
			w.vma = vma;
			if (ops->test_walk) {
				err = ops->test_walk(start, next, &w);
				if (err > 0) {
					err = 0;
					vma = vma_next(vma);
					continue;
				}
			}
			if (!err)
				err = walk_pgd_range(start, next, &w);
			vma = vma_next(vma);
		}
		if (err)
			break;
	}
	return err;
}
