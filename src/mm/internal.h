/* SPDX-License-Identifier: MIT */
/*
 * internal.h - state and helpers shared by the files of the mm layer.
 *
 * struct mm_machine is the layer's per-machine state (m->subsys[MM]),
 * created with the first address space: the simulated CPUs and their
 * TLBs, the list of live address spaces (for the checker and shootdowns),
 * and the machine's in-memory filesystem.
 *
 * Locking: mm_list_lock protects the list; it nests inside nothing and
 * only the checker and mm_alloc/exit take it.
 */
#ifndef HETMM_MM_INTERNAL_H
#define HETMM_MM_INTERNAL_H

#include <hetmm/fs.h>
#include <hetmm/mmu_notifier.h>
#include <hetmm/rmap.h>
#include <hetmm/tlb.h>
#include <hetmm/uapi.h>

struct mm_machine {
	int thp_mode; /* enum thp_mode */
	int thp_use_zero_page; /* read faults map the huge zero folio */
	struct hetmm_cpu *cpus;
	unsigned int nr_cpus;
	struct mutex mm_list_lock;
	struct list_head mms;
	struct hetmm_fs *fs;
};

/* The layer's state of @m, created on first use. NULL on -ENOMEM. */
struct mm_machine *mm_machine(struct hetmm_machine *m);

static inline struct mm_machine *mm_machine_peek(struct hetmm_machine *m)
{
	return __atomic_load_n((struct mm_machine **)&m->subsys[HETMM_SUBSYS_MM],
			       __ATOMIC_ACQUIRE);
}

static inline bool is_cow_mapping(unsigned long flags)
{
	return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE;
}

/*
 * The protection a fresh entry @e gets in @vma (the kernel's vm_page_prot):
 * PROTNONE and read-only in a VMA without VM_READ, VM_WRITE or VM_EXEC
 * (only FOLL_FORCE faults there; the MMU and GUP-fast refuse the entry),
 * unchanged elsewhere. For PTEs and PMD leaves alike.
 */
static inline pte_t vma_entry_prot(const struct vm_area_struct *vma, pte_t e)
{
	if (!(vma->vm_flags & (VM_READ | VM_WRITE | VM_EXEC)))
		return pte_set_flags(pte_wrprotect(e), _PAGE_PROTNONE);
	return e;
}

/*
 * maybe_mkwrite(): @e made writable only if @vma has VM_WRITE. A write
 * fault without it (FOLL_FORCE in a COW mapping) breaks COW or reuses an
 * exclusive page but leaves the entry read-only.
 */
static inline pte_t maybe_mkwrite(pte_t e, const struct vm_area_struct *vma)
{
	if (vma->vm_flags & VM_WRITE)
		return pte_mkwrite(e);
	return e;
}

/* rmap counting of one PTE mapping of a page (of any folio size). */
static inline void page_add_pte_rmap(struct page *page)
{
	struct folio *folio = page_folio(page);

	atomic_fetch_add_explicit(&page->_mapcount, 1, memory_order_relaxed);
	if (folio_test_large(folio))
		atomic_fetch_add_explicit(&folio->page._large_mapcount, 1,
					  memory_order_relaxed);
}

static inline void page_remove_pte_rmap(struct page *page)
{
	struct folio *folio = page_folio(page);
	int v = atomic_fetch_sub_explicit(&page->_mapcount, 1,
					  memory_order_relaxed) -
		1;

	if (v < -1)
		hetmm_bad_page(page, "mapcount dropped below zero");
	if (folio_test_large(folio))
		atomic_fetch_sub_explicit(&folio->page._large_mapcount, 1,
					  memory_order_relaxed);
}

/* Page-table frames (pgtable.c): allocated zeroed and counted in
 * mm->nr_pt_pages; freed after an RCU grace period. */
struct page *pt_frame_alloc(struct mm_struct *mm);
void pt_frame_free(struct mm_struct *mm, struct page *page);
/* The upper-level entry that points at @table. */
pte_t table_entry(struct page *table);

/* The struct page of the table frame holding @entry. */
static inline struct page *pt_entry_page(struct mm_struct *mm,
					 const void *entry)
{
	return pfn_to_page(mm->machine,
			   (unsigned long)((const unsigned char *)entry -
					   mm->machine->frames) >>
				   PAGE_SHIFT);
}

/* Transparent huge pages (huge.c). */
enum thp_mode {
	THP_NEVER,
	THP_MADVISE,
	THP_ALWAYS,
};
/* May a 2 MiB anon folio back the PMD range of @addr in @vma? */
bool vma_thp_allowed(struct vm_area_struct *vma, unsigned long addr);
/*
 * A fault on a none PMD of a THP-eligible VMA: a write installs a THP, a
 * read the huge zero folio (unless use_zero_page is off, then a THP too,
 * as in the kernel). Return 0 (installed, or lost a race: retry), -EAGAIN
 * (fall back to 4 KiB pages), -ENOMEM.
 */
int do_huge_pmd_anonymous_page(struct vm_area_struct *vma, pmd_t *pmd,
			       unsigned long addr, unsigned int flags);
/* Does the PMD entry @e map the huge zero folio of @m? */
static inline bool is_huge_zero_pmd(struct hetmm_machine *m, pmd_t e)
{
	struct folio *hz =
		atomic_load_explicit(&m->huge_zero_folio, memory_order_acquire);

	return hz && pmd_leaf(e) &&
	       pte_pfn(e) == (unsigned long)(&hz->page - m->vmemmap);
}
/* A fault on a PMD leaf. Return 0 (retry the access) or -errno. */
int do_huge_pmd_fault(struct vm_area_struct *vma, pmd_t *pmd,
		      unsigned long addr, unsigned int flags);
/* Replace the PMD leaf at @pmd (if any) by 512 PTEs. Context: mmap_lock. */
void split_huge_pmd(struct vm_area_struct *vma, pmd_t *pmd,
		    unsigned long addr);
/*
 * A fresh PMD leaf of @pfn in @vma: young and dirty, writable if @writable
 * and the VMA has VM_WRITE, PROTNONE (and read-only) if the VMA allows no
 * access at all.
 */
pmd_t mk_huge_pmd(unsigned long pfn, struct vm_area_struct *vma, bool writable);
/* The anon state of a fresh, exclusive 2 MiB folio at @haddr of @vma. */
void anon_folio_prep(struct folio *folio, struct vm_area_struct *vma,
		     unsigned long haddr);
/*
 * MADV_COLLAPSE over [@start, @end) (khugepaged.c). Return: 0 or -errno.
 * Context: mmap_lock held for read; dropped and retaken inside.
 */
int madvise_collapse(struct mm_struct *mm, unsigned long start,
		     unsigned long end);
/* Split the PMD leaf mapping @addr, if any. */
void split_huge_pmd_address(struct vm_area_struct *vma, unsigned long addr);
/*
 * Deposit / withdraw the PTE table kept for a PMD leaf or a non-present
 * PMD entry (see huge.c). Context: mm->page_table_lock held.
 */
void pgtable_trans_huge_deposit(struct mm_struct *mm, pmd_t *pmd,
				struct page *pgtable);
struct page *pgtable_trans_huge_withdraw(struct mm_struct *mm, pmd_t *pmd);
/* The present PTE a device-exclusive entry @orig of @page stood for. */
pte_t restore_exclusive_entry(struct vm_area_struct *vma, struct page *page,
			      pte_t orig);
/* Zap a whole PMD leaf (zap walker). */
void zap_huge_pmd(struct mmu_gather *tlb, struct vm_area_struct *vma,
		  pmd_t *pmd, unsigned long addr);
/* fork: copy a PMD leaf. Return 0, -EAGAIN (split it, copy PTEs), -ENOMEM. */
int copy_huge_pmd(struct vm_area_struct *dst_vma, struct vm_area_struct *src_vma,
		  pmd_t *src_pmd, unsigned long addr);
/* mprotect: apply the VMA's protection to a PMD leaf. */
void change_huge_pmd(struct vm_area_struct *vma, pmd_t *pmd,
		     unsigned long addr);
/* A fault in a VM_HUGETLB VMA. Return 0 (retry the access) or -errno. */
int hugetlb_fault(struct vm_area_struct *vma, unsigned long addr,
		  unsigned int flags);
/* mremap of hugetlb: move the leaf at @old_addr (if any) to @new_addr,
 * allocating the tables down to the PMD. Return 0 or -ENOMEM. */
int move_huge_pmd(struct vm_area_struct *vma, unsigned long old_addr,
		  unsigned long new_addr);
/* Truncation of a hugetlbfs file: zap the PMD leaves of @vma over
 * [start, end), widened to whole 2 MiB pages. Context: i_mmap lock held,
 * no mmap_lock (huge.c). */
void zap_hugetlb_range_locked(struct vm_area_struct *vma, unsigned long start,
			      unsigned long end);
/* The PTE-equivalent value mapping @addr (PMD leaves included), or none. */
pte_t mm_lookup_pte(struct mm_struct *mm, unsigned long addr);

/* rmap counting of a PMD mapping of a large folio. */
static inline void folio_add_pmd_rmap(struct folio *folio)
{
	atomic_fetch_add_explicit(&folio->page._entire_mapcount, 1,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&folio->page._large_mapcount, 1,
				  memory_order_relaxed);
}

static inline void folio_remove_pmd_rmap(struct folio *folio)
{
	atomic_fetch_sub_explicit(&folio->page._entire_mapcount, 1,
				  memory_order_relaxed);
	if (atomic_fetch_sub_explicit(&folio->page._large_mapcount, 1,
				      memory_order_relaxed) < 0)
		hetmm_bad_page(&folio->page, "large mapcount below zero");
}

/* VMA life cycle (vma.c). */
struct vm_area_struct *vm_area_alloc(struct mm_struct *mm);
/* A copy of @orig with its own references (file, anon_vma); not linked. */
struct vm_area_struct *vm_area_dup(struct vm_area_struct *orig);
void vm_area_free(struct vm_area_struct *vma);
/* Link into the mm tree, the file's i_mmap and the anon_vma list. */
int vma_link(struct mm_struct *mm, struct vm_area_struct *vma);
/* Split @vma at @addr into @vma [start, addr) and @tail [addr, end). */
void split_vma_at(struct vm_area_struct *vma, unsigned long addr,
		  struct vm_area_struct *tail);
/* Change the range (and file offset) of a linked VMA. */
void vma_set_range(struct vm_area_struct *vma, unsigned long start,
		   unsigned long end, unsigned long pgoff);

/*
 * The PMD entry of @addr with a PTE table under it, allocating the tables
 * on the way (memory.c). NULL on -ENOMEM (or if a THP leaf is there).
 */
pmd_t *pte_table_alloc(struct mm_struct *mm, unsigned long addr);
/* Split VMAs so whole VMAs cover [start, end) exactly (mprotect.c). The
 * range must be fully mapped. Return: 0 or -ENOMEM (nothing changed). */
int vma_split_range(struct mm_struct *mm, unsigned long start,
		    unsigned long end);
/*
 * The present entry @e (PTE or PMD leaf) under VMA flags @flags: PROTNONE
 * without access, read-only without VM_WRITE, and made writable at once
 * only where no fault is needed (exclusive anon pages in private
 * mappings, dirty pages in shared ones) (mprotect.c).
 */
pte_t vma_protect_entry(struct hetmm_machine *m, pte_t e, unsigned long flags);
/* True if [start, end) is fully covered by VMAs. */
bool range_mapped(struct mm_struct *mm, unsigned long start,
		  unsigned long end);

/* Zap with an explicit notifier event (memory.c). */
void zap_page_range_event(struct vm_area_struct *vma, unsigned long start,
			  unsigned long end, enum mmu_notifier_event event);
/* Zap [start, end) of the page tables only, no VMA (rmap.c truncate). */
void zap_vma_range_locked(struct vm_area_struct *vma, unsigned long start,
			  unsigned long end, enum mmu_notifier_event event);
/* munmap of [start, end) (mmap.c). Context: mmap_lock held for write. */
int do_munmap(struct mm_struct *mm, unsigned long start, unsigned long end);
/* The highest free gap of @len, or 0 (mmap.c). */
unsigned long get_unmapped_area(struct mm_struct *mm, unsigned long len);
/* Fault every page of [start, end) in (populate). Return 0 or -errno. */
int populate_range(struct mm_struct *mm, unsigned long start,
		   unsigned long end, bool write);

/* VM_* access bits of PROT_* (mmap.c). */
unsigned long vm_flags_from_prot(int prot);
int mmap_place(struct mm_struct *mm, unsigned long *addr, size_t len,
	       int flags, unsigned long align);
/* -EINVAL if [start, end) cuts a hugetlb VMA off a 2 MiB boundary. */
int hugetlb_range_ok(struct mm_struct *mm, unsigned long start,
		     unsigned long end);

/* Process state (process.c). */
/* Back a shared anonymous VMA with an unlinked tmpfs file. */
int shmem_zero_setup(struct mm_struct *mm, struct vm_area_struct *vma);
void process_fork_files(struct mm_struct *parent, struct mm_struct *child);
void process_exit_files(struct mm_struct *mm);
struct file *process_fget(struct mm_struct *mm, int fd);

/* Checkers (check.c). */
void mm_register_checkers(struct hetmm_machine *m);

#endif /* HETMM_MM_INTERNAL_H */
