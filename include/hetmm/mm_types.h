/* SPDX-License-Identifier: MIT */
/*
 * hetmm/mm_types.h - the address-space objects: mm_struct and VMAs.
 *
 * Map:
 *   struct mm_struct       one simulated process address space
 *   struct vm_area_struct  one mapping [vm_start, vm_end) of an mm, in the
 *                          mm's ordered tree (mm_rb) and, for file
 *                          mappings, in its address_space's i_mmap tree
 *
 * Lifetime: mm_users counts users of the address space (the process, and
 * temporary mmget() holders such as drivers walking it); when it drops to
 * zero the address space is torn down (exit_mmap). mm_count pins the
 * struct itself (mmgrab/mmdrop), so notifiers and devices may keep a
 * pointer after exit; mm_users > 0 holds one mm_count.
 *
 * Locking: mmap_lock (a reader-biased rwsem, see lock.h) protects the VMA tree and every VMA's fields;
 * page tables are protected by the page-table locks (see mm.h) under
 * mmap_lock held for read or write.
 */
#ifndef HETMM_MM_TYPES_H
#define HETMM_MM_TYPES_H

#include <stdatomic.h>

#include "list.h"
#include "lock.h"
#include "phys.h"
#include "rbtree.h"

struct mmu_notifier_subscriptions;
struct file;
struct anon_vma;
struct hetmm_cpu;

/* Simulated CPUs per machine (hetmm_machine_config::nr_cpus <= this). */
#define HETMM_MAX_CPUS 256

/* mm->flags bits */
#define MMF_HAS_PINNED 0 /* FOLL_PIN was used on this mm, never cleared */

/**
 * struct mm_struct - a process address space.
 * @machine: the machine whose memory backs it.
 * @mmap_lock: protects the VMA tree and VMA fields.
 * @mm_rb: VMAs ordered by vm_start; @map_count of them.
 * @mm_users: users of the address space (see file comment).
 * @mm_count: references to the struct.
 * @flags: MMF_* bits.
 * @write_protect_seq: odd while fork write-protects COW mappings (GUP-fast
 *                     checks it).
 * @notifier_subscriptions: mmu notifier state, NULL until the first
 *                          registration (see mmu_notifier.h).
 * @asid: address-space id tagging TLB entries.
 * @pgd: the top-level page table (a frame; see pgtable.h).
 * @page_table_lock: serialises installing upper-level tables (PUD/PMD
 *                   tables); PTE tables have split locks in their page.
 * @nr_pt_pages: page-table frames this mm owns, the PGD included.
 * @cpumask: CPUs that may hold TLB entries tagged @asid (set on fill,
 *           never cleared while the mm lives).
 * @mm_list: link in the machine's list of live address spaces.
 * @cpus, @nr_cpus: the machine's simulated CPUs (cached for the TLB-hit
 *                  path of CPU accesses).
 * @mm_private: the process state (fd table) of the process face.
 */
struct mm_struct {
	/* First: its reader slots start the 64-byte aligned allocation. */
	struct percpu_rw_semaphore mmap_lock;
	struct hetmm_machine *machine;
	struct rb_root mm_rb;
	int map_count;
	atomic_int mm_users;
	atomic_int mm_count;
	atomic_ulong flags;
	seqcount_t write_protect_seq;
	struct mmu_notifier_subscriptions *notifier_subscriptions;
	unsigned int asid;
	void *pgd;
	spinlock_t page_table_lock;
	atomic_long nr_pt_pages;
	atomic_ulong cpumask[HETMM_MAX_CPUS / 64];
	struct list_head mm_list;
	struct hetmm_cpu *cpus;
	unsigned int nr_cpus;
	void *mm_private;
};

/* vm_flags */
#define VM_READ 0x00000001UL
#define VM_WRITE 0x00000002UL
#define VM_EXEC 0x00000004UL
#define VM_SHARED 0x00000008UL
#define VM_MAYREAD 0x00000010UL
#define VM_MAYWRITE 0x00000020UL
#define VM_MAYEXEC 0x00000040UL
#define VM_MAYSHARE 0x00000080UL
#define VM_IO 0x00004000UL
#define VM_DONTCOPY 0x00020000UL     /* MADV_DONTFORK */
#define VM_DONTEXPAND 0x00040000UL   /* mremap cannot grow it (device mmaps) */
#define VM_NORESERVE 0x00200000UL
#define VM_HUGETLB 0x00400000UL
#define VM_PFNMAP 0x00000400UL
#define VM_MIXEDMAP 0x10000000UL
#define VM_HUGEPAGE 0x20000000UL     /* MADV_HUGEPAGE */
#define VM_NOHUGEPAGE 0x40000000UL   /* MADV_NOHUGEPAGE */
/* Mappings the core mm may not treat as ordinary memory. */
#define VM_SPECIAL (VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP)

/**
 * struct vm_area_struct - one mapping.
 * @vm_mm: the owning mm.
 * @vm_start, @vm_end: [start, end), page aligned.
 * @vm_flags: VM_* bits.
 * @vm_pgoff: offset in the file (pages), or the anon linear index base.
 * @vm_file: the mapped file, NULL for anonymous memory.
 * @anon_vma: the anon rmap root shared with fork relatives (private
 *            mappings only; see rmap.h).
 * @anon_vma_node: link in @anon_vma's list of VMAs.
 * @vm_rb: link in mm->mm_rb.
 * @shared_rb: link in the file's i_mmap interval tree.
 */
struct vm_area_struct {
	struct mm_struct *vm_mm;
	unsigned long vm_start, vm_end;
	unsigned long vm_flags;
	unsigned long vm_pgoff;
	struct file *vm_file;
	struct anon_vma *anon_vma;
	struct list_head anon_vma_node;
	struct rb_node vm_rb;
	struct interval_tree_node shared_rb;
};

/*
 * mm_alloc - a new, empty address space on @m (mm_users = mm_count = 1).
 * Return: the mm or ERR_PTR(-ENOMEM)/ERR_PTR(-EINVAL).
 */
struct mm_struct *mm_alloc(struct hetmm_machine *m);
/* Take a user reference; the caller already holds one (or mmap_lock). */
void mmget(struct mm_struct *mm);
/* Take a user reference unless the mm is already exiting. */
bool mmget_not_zero(struct mm_struct *mm);
/* Drop a user reference; the last one tears the address space down. */
void mmput(struct mm_struct *mm);
void mmgrab(struct mm_struct *mm);
/* Drop a struct reference; the last one frees the struct. */
void mmdrop(struct mm_struct *mm);

static inline void mmap_read_lock(struct mm_struct *mm)
{
	percpu_down_read(&mm->mmap_lock);
}

static inline void mmap_read_unlock(struct mm_struct *mm)
{
	percpu_up_read(&mm->mmap_lock);
}

static inline void mmap_write_lock(struct mm_struct *mm)
{
	percpu_down_write(&mm->mmap_lock);
}

static inline void mmap_write_unlock(struct mm_struct *mm)
{
	percpu_up_write(&mm->mmap_lock);
}

#define mmap_assert_locked(mm) rwsem_assert_held(&(mm)->mmap_lock)
#define mmap_assert_write_locked(mm) rwsem_assert_held_write(&(mm)->mmap_lock)

#endif /* HETMM_MM_TYPES_H */
