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

/* rmap counting of one PTE mapping of a page. */
static inline void page_add_pte_rmap(struct page *page)
{
	atomic_fetch_add_explicit(&page->_mapcount, 1, memory_order_relaxed);
}

static inline void page_remove_pte_rmap(struct page *page)
{
	int v = atomic_fetch_sub_explicit(&page->_mapcount, 1,
					  memory_order_relaxed) -
		1;

	if (v < -1)
		hetmm_bad_page(page, "mapcount dropped below zero");
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
/* -EINVAL if [start, end) cuts a hugetlb VMA off a 2 MiB boundary. */
int hugetlb_range_ok(struct mm_struct *mm, unsigned long start,
		     unsigned long end);
/* Whether MAP_HUGETLB is available (huge.c). */
bool hugetlb_supported(void);

/* Process state (process.c). */
/* Back a shared anonymous VMA with an unlinked tmpfs file. */
int shmem_zero_setup(struct mm_struct *mm, struct vm_area_struct *vma);
void process_fork_files(struct mm_struct *parent, struct mm_struct *child);
void process_exit_files(struct mm_struct *mm);
struct file *process_fget(struct mm_struct *mm, int fd);

/* Checkers (check.c). */
void mm_register_checkers(struct hetmm_machine *m);

#endif /* HETMM_MM_INTERNAL_H */
