// SPDX-License-Identifier: MIT
/*
 * huge.c - transparent huge pages: 2 MiB anonymous folios mapped by one
 * PMD leaf, and splitting such a mapping into 512 PTEs.
 *
 * Locking and invariants:
 *   mmap_lock (read: fault, split; write: fork, mprotect, VMA splits)
 *     [hugetlbfs faults: inode i_rwsem (shared) -> folio lock]
 *     mm->page_table_lock (every change to a PMD entry, and TLB fills from
 *     a PMD leaf) -> cpu->lock; -> i_pages.xa_lock (folio_mark_dirty)
 *   truncation of a hugetlbfs file, without mmap_lock: inode i_rwsem
 *     (write) -> i_mmap_rwsem (read) -> rcu_read_lock ->
 *     mm->page_table_lock
 *   - A PMD leaf maps a whole order-9 folio (head pfn, 2 MiB aligned):
 *     anon, or a hugetlbfs page-cache folio. It lies entirely inside one
 *     VMA: a VMA split inside a leaf splits the leaf first (hugetlb
 *     leaves are never split: such splits are refused). It holds one
 *     folio reference, one entire mapcount and one large mapcount.
 *   - PageAnonExclusive of a PMD-mapped folio is the head page's bit; a
 *     split copies it to every page.
 *   - Each PMD leaf has a PTE-table frame deposited on its PMD table's
 *     page (lru list), allocated at fault or fork, so a split never needs
 *     memory; zapping the leaf frees the deposit.
 *   - A split installs the deposited table with 512 PTEs equivalent to
 *     the leaf (same pfns, write/dirty/young/soft-dirty bits), adds a
 *     reference and a PTE mapcount per page and drops the PMD's, so the
 *     folio stays large and is PTE-mapped. Subscribers hear
 *     MMU_NOTIFY_CLEAR for the 2 MiB range and the TLBs are flushed.
 *   - A non-present PMD entry (a THP under migration, or a device-private
 *     2 MiB folio) keeps the deposited table of the leaf it replaced; a
 *     device-private PMD counts like a leaf (reference, entire and large
 *     mapcount), a migration PMD counts nothing. split_huge_pmd turns
 *     either into 512 PTE entries of the same kind.
 *   - Read faults on none PMDs map the machine's huge zero folio
 *     (get_huge_zero_folio) with a read-only special leaf, PROTNONE in a
 *     VMA without access, unless use_zero_page is off (then they allocate
 *     a THP, as write faults do). Such a leaf holds no reference and no
 *     mapcount, has no rmap, and has a deposited table like any leaf. A
 *     write or unshare fault replaces it by a fresh zeroed THP under an
 *     MMU_NOTIFY_CLEAR invalidation (the kernel's do_huge_zero_wp_pmd), or
 *     without memory splits it into 512 special PTEs of the 4 KiB zero
 *     page, as does any split; zap and fork just drop or copy the entry.
 *     GUP-fast refuses special leaves; the slow path pins the folio like
 *     any large folio (FOLL_DUMP: -EFAULT), and long-term read-only pins
 *     of a COW mapping unshare it first.
 *   - New leaves (THP and hugetlb) get the VMA's protection (mk_huge_pmd):
 *     in a VMA without VM_READ/VM_WRITE/VM_EXEC, which only FOLL_FORCE
 *     faults reach, a leaf is PROTNONE and read-only; GUP follows it, the
 *     MMU and GUP-fast refuse it, and a fault keeps it PROTNONE. A write
 *     fault makes a leaf writable only with VM_WRITE: a FOLL_FORCE write
 *     to a read-only private mapping reuses an exclusive folio in place
 *     (or copies: hugetlb all 2 MiB, THP by a split and a 4 KiB COW) and
 *     leaves the entry read-only.
 *
 * hugetlb (MAP_HUGETLB, and every mapping of a HETMM_FS_HUGETLBFS file):
 * VMAs with VM_HUGETLB are 2 MiB aligned (file offsets too) and only ever
 * mapped by PMD leaves of PG_hugetlb folios, which are never split and
 * have no deposited table. Operations on such VMAs must be 2 MiB aligned
 * (mmap.c, mprotect.c, mremap.c check it). There is no hugetlb zero page
 * and no reservation pool: a fault that cannot allocate returns -ENOMEM
 * where Linux (which reserves at mmap time) would raise SIGBUS.
 *   - Private anonymous: every fault (read too) allocates a zeroed 2 MiB
 *     anon folio; COW copies the whole 2 MiB.
 *   - Shared (a hugetlbfs file, or shared anonymous memory, which is an
 *     unlinked hugetlbfs file as in Linux): faults follow the page-cache
 *     protocol of hetmm/fs.h (inode lock shared, i_size check -> SIGBUS,
 *     find or create the folio, install, unlock) and map the cache's
 *     2 MiB folio, writable at once when the VMA is (no dirty tracking:
 *     cache folios are dirty from birth). Such a leaf holds a folio
 *     reference and an entire/large mapcount like any other; the cache
 *     holds one more. Nothing is ever copied: fork leaves shared VMAs to
 *     fault again in the child, and a write fault on a read-only shared
 *     leaf just makes it writable.
 *   - Private file mappings: a read fault maps the cache folio read-only;
 *     a write fault (or a later write) maps a private 2 MiB anon copy. A
 *     fault on a hole of the file maps a zeroed anon folio without adding
 *     anything to the cache, as Linux does, so such a mapping no longer
 *     sees later writes to that part of the file.
 *   - Truncation reaches the leaves through the file rmap:
 *     zap_hugetlb_range_locked() zaps whole leaves (shared ones and
 *     private copies) with the i_mmap lock held and no mmap_lock.
 */
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/stats.h>

#include "internal.h"

int hetmm_thp_set_mode(struct hetmm_machine *m, const char *mode)
{
	struct mm_machine *mmm = m ? mm_machine(m) : NULL;
	int v;

	if (!mmm || !mode)
		return -EINVAL;
	if (!strcmp(mode, "never"))
		v = THP_NEVER;
	else if (!strcmp(mode, "madvise"))
		v = THP_MADVISE;
	else if (!strcmp(mode, "always"))
		v = THP_ALWAYS;
	else
		return -EINVAL;
	__atomic_store_n(&mmm->thp_mode, v, __ATOMIC_RELAXED);
	return 0;
}

int hetmm_thp_set_use_zero_page(struct hetmm_machine *m, int on)
{
	struct mm_machine *mmm = m ? mm_machine(m) : NULL;

	if (!mmm)
		return -EINVAL;
	__atomic_store_n(&mmm->thp_use_zero_page, !!on, __ATOMIC_RELAXED);
	return 0;
}

bool vma_thp_allowed(struct vm_area_struct *vma, unsigned long addr)
{
	struct mm_machine *mmm = mm_machine_peek(vma->vm_mm->machine);
	unsigned long haddr = addr & PMD_MASK;
	int mode = __atomic_load_n(&mmm->thp_mode, __ATOMIC_RELAXED);

	/* Never in a driver's mapping (VM_PFNMAP/VM_MIXEDMAP/VM_IO). */
	if (vma->vm_file || !vma->anon_vma ||
	    (vma->vm_flags & (VM_NOHUGEPAGE | VM_SPECIAL)))
		return false;
	if (mode == THP_NEVER ||
	    (mode == THP_MADVISE && !(vma->vm_flags & VM_HUGEPAGE)))
		return false;
	return haddr >= vma->vm_start && haddr + PMD_SIZE <= vma->vm_end;
}

/* Deposit/withdraw the spare PTE table of a leaf in @pmd's table. */
static void pgtable_deposit(struct mm_struct *mm, pmd_t *pmd,
			    struct page *pgtable)
{
	list_add(&pgtable->lru, &pt_entry_page(mm, pmd)->lru);
}

static struct page *pgtable_withdraw(struct mm_struct *mm, pmd_t *pmd)
{
	struct page *owner = pt_entry_page(mm, pmd);
	struct page *pgtable;

	HETMM_BUG_ON(list_empty(&owner->lru));
	pgtable = list_first_entry(&owner->lru, struct page, lru);
	list_del_init(&pgtable->lru);
	return pgtable;
}

/*
 * A fresh PMD leaf of @pfn in @vma: young and dirty, writable if @writable
 * and the VMA has VM_WRITE, PROTNONE (and read-only) if the VMA allows no
 * access at all.
 */
pmd_t mk_huge_pmd(unsigned long pfn, struct vm_area_struct *vma, bool writable)
{
	pmd_t e = pfn_pmd_leaf(pfn, _PAGE_YOUNG | _PAGE_DIRTY | _PAGE_SOFT_DIRTY);

	if (writable)
		e = maybe_mkwrite(e, vma);
	return vma_entry_prot(vma, e);
}

static int hugetlb_wp(struct vm_area_struct *vma, pmd_t *pmd,
		      unsigned long addr, pmd_t orig, bool unshare);

/*
 * A read fault on a none PMD: map the huge zero folio read-only with a
 * special leaf (no reference, no mapcount, no rmap; a deposited table like
 * any leaf, so that a split needs no memory).
 */
static int do_huge_zero_page(struct vm_area_struct *vma, pmd_t *pmd)
{
	struct mm_struct *mm = vma->vm_mm;
	struct page *pgtable;
	struct folio *zero;
	pmd_t e;

	zero = get_huge_zero_folio(mm->machine);
	if (!zero) {
		count_stat(HETMM_STAT_thp_fault_fallback);
		return -EAGAIN;
	}
	pgtable = pt_frame_alloc(mm);
	if (!pgtable)
		return -ENOMEM;
	e = pte_mkspecial(pfn_pmd_leaf(folio_pfn(zero), _PAGE_YOUNG));
	e = vma_entry_prot(vma, e);
	spin_lock(&mm->page_table_lock);
	if (!pte_none(ptep_get(pmd))) {
		spin_unlock(&mm->page_table_lock);
		pt_frame_free(mm, pgtable);
		return 0;
	}
	pgtable_deposit(mm, pmd, pgtable);
	set_pte(pmd, e);
	spin_unlock(&mm->page_table_lock);
	count_stat(HETMM_STAT_fault_huge_zero_page);
	return 0;
}

int do_huge_pmd_anonymous_page(struct vm_area_struct *vma, pmd_t *pmd,
			       unsigned long addr, unsigned int flags)
{
	struct mm_struct *mm = vma->vm_mm;
	struct mm_machine *mmm = mm_machine_peek(mm->machine);
	unsigned long haddr = addr & PMD_MASK;
	struct page *pgtable;
	struct folio *folio;

	if (!(flags & FAULT_FLAG_WRITE) &&
	    __atomic_load_n(&mmm->thp_use_zero_page, __ATOMIC_RELAXED))
		return do_huge_zero_page(vma, pmd);
	folio = folio_alloc(mm->machine, __GFP_ZERO | __GFP_MOVABLE, PMD_ORDER);
	if (!folio) {
		count_stat(HETMM_STAT_thp_fault_fallback);
		return -EAGAIN;
	}
	pgtable = pt_frame_alloc(mm);
	if (!pgtable) {
		folio_put(folio);
		return -ENOMEM;
	}
	anon_folio_prep(folio, vma, haddr);
	spin_lock(&mm->page_table_lock);
	if (!pte_none(ptep_get(pmd))) {
		spin_unlock(&mm->page_table_lock);
		pt_frame_free(mm, pgtable);
		folio_put(folio);
		return 0;
	}
	pgtable_deposit(mm, pmd, pgtable);
	folio_add_pmd_rmap(folio);
	set_pte(pmd, mk_huge_pmd(folio_pfn(folio), vma, true));
	spin_unlock(&mm->page_table_lock);
	count_stat(HETMM_STAT_thp_fault_alloc);
	return 0;
}

void anon_folio_prep(struct folio *folio, struct vm_area_struct *vma,
		     unsigned long haddr)
{
	folio_set_flag(folio, PG_anon);
	folio_set_flag(folio, PG_swapbacked);
	folio_set_flag(folio, PG_uptodate);
	SetPageAnonExclusive(&folio->page);
	folio->page.mapping = vma->anon_vma;
	folio->page.index = ((haddr - vma->vm_start) >> PAGE_SHIFT) +
			    vma->vm_pgoff;
	if (vma->vm_flags & VM_HUGETLB)
		folio_set_flag(folio, PG_hugetlb);
}

/*
 * A write (or unshare) fault on the huge zero folio: a fresh zeroed THP
 * takes its place (the kernel's do_huge_zero_wp_pmd), writable if the VMA
 * is; without memory for one, split the leaf into zero-page PTEs and let
 * the PTE path copy 4 KiB.
 */
static int huge_zero_wp(struct vm_area_struct *vma, pmd_t *pmd,
			unsigned long addr, pmd_t orig)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long haddr = addr & PMD_MASK;
	struct mmu_notifier_range range;
	struct folio *folio;

	folio = folio_alloc(mm->machine, __GFP_ZERO | __GFP_MOVABLE, PMD_ORDER);
	if (!folio) {
		count_stat(HETMM_STAT_thp_fault_fallback);
		split_huge_pmd(vma, pmd, addr);
		return 0;
	}
	anon_folio_prep(folio, vma, haddr);
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, haddr,
				haddr + PMD_SIZE);
	mmu_notifier_invalidate_range_start(&range);
	spin_lock(&mm->page_table_lock);
	if (pte_val(ptep_get(pmd)) != pte_val(orig)) {
		/* Somebody else went first: retry. */
		spin_unlock(&mm->page_table_lock);
		mmu_notifier_invalidate_range_end(&range);
		folio_put(folio);
		return 0;
	}
	/* The deposited table stays: it serves the new leaf. */
	ptep_get_and_clear(pmd);
	flush_tlb_range(mm, haddr, haddr + PMD_SIZE);
	folio_add_pmd_rmap(folio);
	set_pte(pmd, mk_huge_pmd(folio_pfn(folio), vma, true));
	spin_unlock(&mm->page_table_lock);
	mmu_notifier_invalidate_range_end(&range);
	count_stat(HETMM_STAT_thp_fault_alloc);
	return 0;
}

int do_huge_pmd_fault(struct vm_area_struct *vma, pmd_t *pmd,
		      unsigned long addr, unsigned int flags)
{
	struct mm_struct *mm = vma->vm_mm;
	bool write = flags & FAULT_FLAG_WRITE;
	bool unshare = flags & FAULT_FLAG_UNSHARE;
	struct folio *folio;
	pmd_t e;

	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (!pmd_leaf(e)) {
		spin_unlock(&mm->page_table_lock);
		return 0; /* changed under us: retry */
	}
	if (pte_protnone(e) &&
	    (vma->vm_flags & (VM_READ | VM_WRITE | VM_EXEC))) {
		/* The VMA allows access again (mprotect raced): restore. */
		e = pte_clear_flags(e, _PAGE_PROTNONE);
		set_pte(pmd, e);
	}
	if (!(write || unshare) || pte_write(e)) {
		/* Just accessed; a PROTNONE leaf (FOLL_FORCE in a PROT_NONE
		 * VMA) stays PROTNONE. */
		e = pte_mkyoung(e);
		if (write)
			e = pte_mkdirty(e);
		set_pte(pmd, e);
		spin_unlock(&mm->page_table_lock);
		return 0;
	}
	folio = page_folio(pfn_to_page(mm->machine, pte_pfn(e)));
	if (is_huge_zero_folio(folio)) {
		spin_unlock(&mm->page_table_lock);
		return huge_zero_wp(vma, pmd, addr, e);
	}
	if (vma->vm_flags & VM_SHARED) {
		/* Shared hugetlb: never COW; the cache folio becomes writable
		 * (a write after mprotect made the leaf read-only). A write
		 * here has VM_WRITE: sanitize_fault_flags() refuses the rest. */
		if (write) {
			folio_mark_dirty(folio);
			set_pte(pmd, pte_mkwrite(pte_mkyoung(pte_mkdirty(e))));
		}
		spin_unlock(&mm->page_table_lock);
		count_stat(HETMM_STAT_fault_wp_reuse);
		return 0;
	}
	if (folio_test_anon(folio) &&
	    (PageAnonExclusive(&folio->page) ||
	     atomic_load_explicit(&folio->page._refcount,
				  memory_order_acquire) == 1)) {
		/*
		 * Ours alone: reuse the whole folio in place. Without VM_WRITE
		 * (a FOLL_FORCE write) COW is broken, but the leaf stays
		 * read-only, and PROTNONE in a PROT_NONE VMA.
		 */
		SetPageAnonExclusive(&folio->page);
		if (!unshare)
			set_pte(pmd, maybe_mkwrite(pte_mkyoung(pte_mkdirty(e)),
						   vma));
		spin_unlock(&mm->page_table_lock);
		count_stat(HETMM_STAT_fault_wp_reuse);
		return 0;
	}
	spin_unlock(&mm->page_table_lock);
	if (folio_test_hugetlb(folio))
		return hugetlb_wp(vma, pmd, addr, e, unshare);
	/* Shared: split, and let the PTE path copy the one page. */
	split_huge_pmd(vma, pmd, addr);
	return 0;
}

/* COW of a shared hugetlb folio: copy all 2 MiB. */
static int hugetlb_wp(struct vm_area_struct *vma, pmd_t *pmd,
		      unsigned long addr, pmd_t orig, bool unshare)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long haddr = addr & PMD_MASK;
	struct folio *old = page_folio(pfn_to_page(mm->machine, pte_pfn(orig)));
	struct mmu_notifier_range range;
	struct folio *copy;

	folio_get(old);
	copy = folio_alloc(mm->machine, __GFP_MOVABLE, PMD_ORDER);
	if (!copy) {
		folio_put(old);
		return -ENOMEM;
	}
	if (folio_mc_copy(copy, old)) {
		/* A machine check while reading the source: SIGBUS. */
		folio_put(copy);
		folio_put(old);
		return -EFAULT;
	}
	anon_folio_prep(copy, vma, haddr);
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, haddr,
				haddr + PMD_SIZE);
	mmu_notifier_invalidate_range_start(&range);
	spin_lock(&mm->page_table_lock);
	if (pte_val(ptep_get(pmd)) != pte_val(orig)) {
		spin_unlock(&mm->page_table_lock);
		mmu_notifier_invalidate_range_end(&range);
		folio_put(copy);
		folio_put(old);
		return 0;
	}
	ptep_get_and_clear(pmd);
	flush_tlb_range(mm, haddr, haddr + PMD_SIZE);
	folio_add_pmd_rmap(copy);
	set_pte(pmd, mk_huge_pmd(folio_pfn(copy), vma, !unshare));
	spin_unlock(&mm->page_table_lock);
	mmu_notifier_invalidate_range_end(&range);
	folio_remove_pmd_rmap(old);
	if (unshare)
		count_stat(HETMM_STAT_fault_unshare_copy);
	else if (!folio_test_anon(old)) /* a private map of a file */
		count_stat(HETMM_STAT_fault_file_cow);
	else
		count_stat(HETMM_STAT_fault_wp_copy);
	folio_put(old); /* the PMD's */
	folio_put(old); /* ours */
	return 0;
}

/*
 * A fault on a none PMD of a hugetlb mapping of a file (see the file
 * comment): the page-cache folio, a private copy of it, or for a private
 * mapping of a hole a zeroed anon folio.
 */
static int hugetlb_file_fault(struct vm_area_struct *vma, pmd_t *pmd,
			      unsigned long addr, unsigned int flags)
{
	struct mm_struct *mm = vma->vm_mm;
	struct inode *inode = file_inode(vma->vm_file);
	struct address_space *mapping = vma->vm_file->f_mapping;
	unsigned long haddr = addr & PMD_MASK;
	pgoff_t idx = ((haddr - vma->vm_start) >> PAGE_SHIFT) + vma->vm_pgoff;
	bool shared = vma->vm_flags & VM_SHARED;
	bool write = flags & FAULT_FLAG_WRITE;
	struct folio *folio, *map, *anon = NULL;
	bool created = false, writable, installed = false;
	int ret = 0;

	inode_lock_shared(inode);
	if ((loff_t)idx >= i_size_read(inode) >> PAGE_SHIFT) {
		/* Beyond EOF: SIGBUS in Linux; the caller sees -EFAULT. */
		inode_unlock_shared(inode);
		count_stat(HETMM_STAT_fault_sigbus);
		return -EFAULT;
	}
	if (shared) {
		folio = __filemap_grab_folio(mapping, idx, &created);
	} else {
		/* The inode lock keeps a found folio in the cache. */
		folio = filemap_get_folio(mapping, idx);
		if (!IS_ERR(folio))
			folio_lock(folio);
	}
	if (IS_ERR(folio) && PTR_ERR(folio) != -ENOENT) {
		inode_unlock_shared(inode);
		return PTR_ERR(folio) == -ENOMEM ? -ENOMEM : -EFAULT;
	}
	if (IS_ERR(folio) || (write && !shared)) {
		/* Private: a hole gets a zeroed page, a write a copy. */
		anon = folio_alloc(mm->machine,
				   (IS_ERR(folio) ? __GFP_ZERO : 0) |
					   __GFP_MOVABLE,
				   PMD_ORDER);
		if (!anon) {
			ret = -ENOMEM;
			goto out;
		}
		if (!IS_ERR(folio) && folio_mc_copy(anon, folio)) {
			folio_put(anon);
			ret = -EFAULT;
			goto out;
		}
		anon_folio_prep(anon, vma, haddr);
		map = anon;
		writable = write;
	} else {
		folio_get(folio); /* the PMD's reference */
		map = folio;
		writable = shared;
	}
	spin_lock(&mm->page_table_lock);
	if (pte_none(ptep_get(pmd))) {
		folio_add_pmd_rmap(map);
		set_pte(pmd, mk_huge_pmd(folio_pfn(map), vma, writable));
		installed = true;
	}
	spin_unlock(&mm->page_table_lock);
	if (!installed)
		folio_put(map);
	else if (!anon)
		count_stat(HETMM_STAT_fault_file);
	else if (!IS_ERR(folio))
		count_stat(HETMM_STAT_fault_file_cow);
	if (created || (installed && anon && IS_ERR(folio)))
		count_stat(HETMM_STAT_hugetlb_fault_alloc);
out:
	if (!IS_ERR(folio)) {
		folio_unlock(folio);
		folio_put(folio);
	}
	inode_unlock_shared(inode);
	return ret;
}

int hugetlb_fault(struct vm_area_struct *vma, unsigned long addr,
		  unsigned int flags)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long haddr = addr & PMD_MASK;
	struct folio *folio;
	pud_t *pud;
	pmd_t *pmd;

	pud = pud_alloc(mm, pgd_offset(mm, addr), addr);
	pmd = pud ? pmd_alloc(mm, pud, addr) : NULL;
	if (!pmd)
		return -ENOMEM;
	if (!pte_none(ptep_get(pmd)))
		return do_huge_pmd_fault(vma, pmd, addr, flags);
	if (vma->vm_file)
		return hugetlb_file_fault(vma, pmd, addr, flags);
	folio = folio_alloc(mm->machine, __GFP_ZERO | __GFP_MOVABLE, PMD_ORDER);
	if (!folio)
		return -ENOMEM;
	anon_folio_prep(folio, vma, haddr);
	spin_lock(&mm->page_table_lock);
	if (!pte_none(ptep_get(pmd))) {
		spin_unlock(&mm->page_table_lock);
		folio_put(folio);
		return 0;
	}
	folio_add_pmd_rmap(folio);
	set_pte(pmd, mk_huge_pmd(folio_pfn(folio), vma,
				 flags & FAULT_FLAG_WRITE));
	spin_unlock(&mm->page_table_lock);
	count_stat(HETMM_STAT_hugetlb_fault_alloc);
	return 0;
}

int move_huge_pmd(struct vm_area_struct *vma, unsigned long old_addr,
		  unsigned long new_addr)
{
	struct mm_struct *mm = vma->vm_mm;
	pmd_t *src = mm_find_pmd(mm, old_addr), *dst;
	pud_t *pud;

	pud = pud_alloc(mm, pgd_offset(mm, new_addr), new_addr);
	dst = pud ? pmd_alloc(mm, pud, new_addr) : NULL;
	if (!dst)
		return -ENOMEM;
	if (!src)
		return 0;
	spin_lock(&mm->page_table_lock);
	if (pmd_leaf(ptep_get(src))) {
		HETMM_BUG_ON(!pte_none(ptep_get(dst)));
		set_pte(dst, ptep_get_and_clear(src));
	}
	spin_unlock(&mm->page_table_lock);
	return 0;
}

/* A PMD entry split_huge_pmd can turn into 512 PTEs. */
static bool pmd_splittable(pmd_t e)
{
	enum softleaf_type k = pte_kind(e);

	return pmd_leaf(e) || is_device_private_kind(k) || is_migration_kind(k);
}

/* The PTE for page @i of a split non-present PMD entry @e. */
static pte_t split_softleaf(pmd_t e, unsigned long i)
{
	softleaf_t s = softleaf_from_pte(e);
	enum softleaf_type k = pte_kind(e);
	softleaf_t r;

	if (is_device_private_kind(k))
		return softleaf_to_pte(make_device_private_entry(
			softleaf_pfn(s) + i, k == SOFTLEAF_DEVICE_PRIVATE_WRITE));
	r = make_migration_entry(softleaf_pfn(s) + i,
				 k == SOFTLEAF_MIGRATION_WRITE,
				 k == SOFTLEAF_MIGRATION_READ_EXCLUSIVE);
	if (softleaf_young(s))
		r = softleaf_mkyoung(r);
	if (softleaf_dirty(s))
		r = softleaf_mkdirty(r);
	r.val |= s.val & _SWP_SOFT_DIRTY;
	return softleaf_to_pte(r);
}

void pgtable_trans_huge_deposit(struct mm_struct *mm, pmd_t *pmd,
				struct page *pgtable)
{
	pgtable_deposit(mm, pmd, pgtable);
}

struct page *pgtable_trans_huge_withdraw(struct mm_struct *mm, pmd_t *pmd)
{
	return pgtable_withdraw(mm, pmd);
}

void split_huge_pmd(struct vm_area_struct *vma, pmd_t *pmd, unsigned long addr)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long haddr = addr & PMD_MASK;
	struct mmu_notifier_range range;
	struct page *pgtable;
	struct folio *folio;
	uint64_t keep;
	pte_t *ptes;
	pmd_t e;
	bool pae;

	if (!pmd_splittable(ptep_get(pmd)))
		return;
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, haddr,
				haddr + PMD_SIZE);
	mmu_notifier_invalidate_range_start(&range);
	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (!pmd_splittable(e)) {
		spin_unlock(&mm->page_table_lock);
		mmu_notifier_invalidate_range_end(&range);
		return;
	}
	pgtable = pgtable_withdraw(mm, pmd);
	ptes = page_frame(pgtable);
	if (is_migration_kind(pte_kind(e))) {
		/* Not a mapping: no references or mapcounts move. */
		for (unsigned long i = 0; i < HPAGE_PMD_NR; i++)
			set_pte(&ptes[i], split_softleaf(e, i));
		set_pte(pmd, table_entry(pgtable));
		spin_unlock(&mm->page_table_lock);
		mmu_notifier_invalidate_range_end(&range);
		count_stat(HETMM_STAT_thp_split_pmd);
		return;
	}
	folio = page_folio(pfn_to_page(
		mm->machine, pte_present(e) ? pte_pfn(e) :
					      softleaf_pfn(softleaf_from_pte(e))));
	if (is_huge_zero_folio(folio)) {
		/* 512 PTEs of the 4 KiB zero page; nothing is counted. */
		pte_t z = pte_mkspecial(
			pfn_pte(page_to_pfn(mm->machine->zero_page),
				pte_val(e) & (_PAGE_YOUNG | _PAGE_SOFT_DIRTY |
					      _PAGE_PROTNONE)));

		for (unsigned long i = 0; i < HPAGE_PMD_NR; i++)
			set_pte(&ptes[i], z);
		set_pte(pmd, table_entry(pgtable));
		flush_tlb_range(mm, haddr, haddr + PMD_SIZE);
		spin_unlock(&mm->page_table_lock);
		mmu_notifier_invalidate_range_end(&range);
		count_stat(HETMM_STAT_thp_split_pmd);
		return;
	}
	pae = PageAnonExclusive(&folio->page);
	keep = pte_val(e) & (_PAGE_RW | _PAGE_DIRTY | _PAGE_YOUNG |
			     _PAGE_SOFT_DIRTY | _PAGE_PROTNONE);
	folio_ref_add(folio, HPAGE_PMD_NR - 1);
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++) {
		struct page *page = folio_page(folio, i);

		if (pae)
			SetPageAnonExclusive(page);
		page_add_pte_rmap(page);
		set_pte(&ptes[i], pte_present(e) ?
					  pfn_pte(folio_pfn(folio) + i, keep) :
					  split_softleaf(e, i));
	}
	folio_remove_pmd_rmap(folio);
	/* The same translations: TLB entries stay correct, but flush anyway
	 * so no entry outlives the leaf it was filled from. */
	set_pte(pmd, table_entry(pgtable));
	flush_tlb_range(mm, haddr, haddr + PMD_SIZE);
	spin_unlock(&mm->page_table_lock);
	mmu_notifier_invalidate_range_end(&range);
	count_stat(HETMM_STAT_thp_split_pmd);
}

void split_huge_pmd_address(struct vm_area_struct *vma, unsigned long addr)
{
	pmd_t *pmd = vma->vm_mm->pgd ? mm_find_pmd(vma->vm_mm, addr) : NULL;

	if (pmd && pmd_splittable(ptep_get(pmd)))
		split_huge_pmd(vma, pmd, addr);
}

void zap_huge_pmd(struct mmu_gather *tlb, struct vm_area_struct *vma,
		  pmd_t *pmd, unsigned long addr)
{
	struct mm_struct *mm = vma->vm_mm;
	struct folio *folio;
	pmd_t e;

	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (!pmd_splittable(e)) {
		spin_unlock(&mm->page_table_lock);
		return;
	}
	ptep_get_and_clear(pmd);
	if (!pte_present(e)) {
		/* A device-private folio is a mapping, a migration entry is
		 * not; both keep the deposited table. */
		pt_frame_free(mm, pgtable_withdraw(mm, pmd));
		spin_unlock(&mm->page_table_lock);
		count_stat(HETMM_STAT_pte_zapped);
		if (is_migration_kind(pte_kind(e)))
			return;
		folio = page_folio(pfn_to_page(
			mm->machine, softleaf_pfn(softleaf_from_pte(e))));
		folio_remove_pmd_rmap(folio);
		tlb_remove_page(tlb, &folio->page);
		return;
	}
	folio = page_folio(pfn_to_page(mm->machine, pte_pfn(e)));
	if (!folio_test_hugetlb(folio))
		pt_frame_free(mm, pgtable_withdraw(mm, pmd));
	spin_unlock(&mm->page_table_lock);
	if (is_huge_zero_folio(folio)) {
		/* Not counted: only the TLBs need to forget it. */
		tlb_track(tlb, addr & PMD_MASK, PMD_SIZE);
		count_stat(HETMM_STAT_pte_zapped);
		return;
	}
	if (pte_dirty(e) && !folio_test_anon(folio) && folio->page.mapping)
		folio_mark_dirty(folio);
	folio_remove_pmd_rmap(folio);
	tlb_track(tlb, addr & PMD_MASK, PMD_SIZE);
	tlb_remove_page(tlb, &folio->page);
	count_stat(HETMM_STAT_pte_zapped);
}

void zap_hugetlb_range_locked(struct vm_area_struct *vma, unsigned long start,
			      unsigned long end)
{
	struct mm_struct *mm = vma->vm_mm;
	struct mmu_notifier_range range;
	struct mmu_gather tlb;

	start = max(start & PMD_MASK, vma->vm_start);
	end = min(ALIGN(end, PMD_SIZE), vma->vm_end);
	if (start >= end)
		return;
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, start, end);
	mmu_notifier_invalidate_range_start(&range);
	tlb_gather_mmu(&tlb, mm);
	rcu_read_lock();
	for (unsigned long a = start; mm->pgd && a < end; a += PMD_SIZE) {
		pmd_t *pmd = mm_find_pmd(mm, a);

		/* zap_huge_pmd re-reads the entry under the lock. */
		if (pmd && pmd_leaf(ptep_get(pmd)))
			zap_huge_pmd(&tlb, vma, pmd, a);
	}
	rcu_read_unlock();
	tlb_finish_mmu(&tlb);
	mmu_notifier_invalidate_range_end(&range);
}

int copy_huge_pmd(struct vm_area_struct *dst_vma, struct vm_area_struct *src_vma,
		  pmd_t *src_pmd, unsigned long addr)
{
	struct mm_struct *src_mm = src_vma->vm_mm, *dst_mm = dst_vma->vm_mm;
	struct page *pgtable;
	struct folio *folio;
	pmd_t *dst_pmd, e;
	pud_t *pud;

	e = ptep_get(src_pmd);
	folio = page_folio(pfn_to_page(src_mm->machine, pte_pfn(e)));
	pud = pud_alloc(dst_mm, pgd_offset(dst_mm, addr), addr);
	dst_pmd = pud ? pmd_alloc(dst_mm, pud, addr) : NULL;
	if (!dst_pmd)
		return -ENOMEM;
	if (is_huge_zero_folio(folio)) {
		/* Read-only already; nothing is counted. */
		pgtable = pt_frame_alloc(dst_mm);
		if (!pgtable)
			return -ENOMEM;
		spin_lock(&src_mm->page_table_lock);
		spin_lock(&dst_mm->page_table_lock);
		pgtable_deposit(dst_mm, dst_pmd, pgtable);
		set_pte(dst_pmd, pte_mkold(ptep_get(src_pmd)));
		spin_unlock(&dst_mm->page_table_lock);
		spin_unlock(&src_mm->page_table_lock);
		count_stat(HETMM_STAT_fork_pte_copy);
		return 0;
	}
	/* A maybe-pinned exclusive folio may not be shared. */
	if (PageAnonExclusive(&folio->page) &&
	    (atomic_load(&src_mm->flags) & BIT(MMF_HAS_PINNED)) &&
	    folio_maybe_dma_pinned(folio)) {
		struct folio *copy;

		if (!folio_test_hugetlb(folio))
			return -EAGAIN; /* THP: split, copy pages one by one */
		copy = folio_alloc(dst_mm->machine, __GFP_MOVABLE, PMD_ORDER);
		if (!copy)
			return -ENOMEM;
		if (folio_mc_copy(copy, folio)) {
			folio_put(copy);
			return -ENOMEM;
		}
		anon_folio_prep(copy, dst_vma, addr & PMD_MASK);
		folio_add_pmd_rmap(copy);
		set_pte(dst_pmd, mk_huge_pmd(folio_pfn(copy), dst_vma, true));
		count_stat(HETMM_STAT_fork_eager_copy);
		return 0;
	}
	pgtable = NULL;
	if (!folio_test_hugetlb(folio)) {
		pgtable = pt_frame_alloc(dst_mm);
		if (!pgtable)
			return -ENOMEM;
	}
	spin_lock(&src_mm->page_table_lock);
	spin_lock(&dst_mm->page_table_lock);
	if (folio_test_anon(folio))
		ClearPageAnonExclusive(&folio->page);
	folio_get(folio);
	folio_add_pmd_rmap(folio);
	if (is_cow_mapping(src_vma->vm_flags) && pte_write(e)) {
		e = pte_wrprotect(e);
		set_pte(src_pmd, e);
	}
	if (pgtable)
		pgtable_deposit(dst_mm, dst_pmd, pgtable);
	set_pte(dst_pmd, pte_mkold(e));
	spin_unlock(&dst_mm->page_table_lock);
	spin_unlock(&src_mm->page_table_lock);
	count_stat(HETMM_STAT_fork_pte_copy);
	return 0;
}

void change_huge_pmd(struct vm_area_struct *vma, pmd_t *pmd, unsigned long addr)
{
	struct mm_struct *mm = vma->vm_mm;
	pmd_t e, n;

	(void)addr;
	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (!pmd_leaf(e)) {
		spin_unlock(&mm->page_table_lock);
		return;
	}
	/* The leaf's head page carries the folio's AnonExclusive bit. */
	n = vma_protect_entry(mm->machine, e, vma->vm_flags);
	if (pte_val(n) != pte_val(e)) {
		set_pte(pmd, n);
		count_stat(HETMM_STAT_mprotect_pte);
	}
	spin_unlock(&mm->page_table_lock);
}

pte_t mm_lookup_pte(struct mm_struct *mm, unsigned long addr)
{
	pmd_t *pmd = mm->pgd ? mm_find_pmd(mm, addr) : NULL;
	pmd_t e;

	if (!pmd)
		return __pte(0);
	e = ptep_get(pmd);
	if (pmd_leaf(e))
		return __pte((pte_val(e) & ~(_PAGE_PSE | _PAGE_PFN_MASK)) |
			     ((uint64_t)(pte_pfn(e) + pte_index(addr))
			      << _PAGE_PFN_SHIFT));
	if (!pmd_table(e))
		return __pte(0);
	return ptep_get(pte_offset(mm, pmd, addr));
}
