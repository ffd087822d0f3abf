/* SPDX-License-Identifier: MIT */
/*
 * hetmm/uapi.h - the process face: POSIX-shaped calls on a simulated
 * process, each returning a value or a negative errno.
 *
 * A simulated process is its struct mm_struct (hetmm_process_create()).
 * Constants (PROT_*, MAP_*) are Linux's own, from <sys/mman.h>, so a test
 * reads like a kernel selftest with hetmm_ in front of the calls.
 *
 * Processes have a file-descriptor table over the machine's in-memory
 * filesystem (hetmm/fs.h); fork shares open files, exit closes them.
 *
 * Where Linux applies a call partially before failing (mprotect or
 * madvise over a range with a hole), these calls check the whole range
 * first and change nothing; the errno is Linux's.
 */
#ifndef HETMM_UAPI_H
#define HETMM_UAPI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "mm.h"

/* Fault flags (handle_mm_fault). */
#define FAULT_FLAG_WRITE (1U << 0)
#define FAULT_FLAG_REMOTE (1U << 7)
#define FAULT_FLAG_UNSHARE (1U << 10)

#ifndef MREMAP_MAYMOVE
#define MREMAP_MAYMOVE 1
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

/* Where top-down mmap placement starts. */
#define HETMM_MMAP_BASE 0x7f0000000000UL

/* A new process with an empty address space. Return: it, or ERR_PTR. */
struct mm_struct *hetmm_process_create(struct hetmm_machine *m);
/* The process exits: its files are closed, its address space released. */
void hetmm_exit(struct mm_struct *mm);
/*
 * hetmm_fork - a child process: a copy of @parent's address space (private
 * memory copy-on-write, shared memory shared, VM_DONTCOPY ranges left out)
 * and of its fd table. Return: the child, or ERR_PTR(-ENOMEM) with nothing
 * changed that a process can observe.
 */
struct mm_struct *hetmm_fork(struct mm_struct *parent);

/*
 * hetmm_mmap - map memory, as mmap(2).
 * Anonymous (@fd -1) or file mappings, MAP_PRIVATE or MAP_SHARED (shared
 * anonymous memory is an unlinked tmpfs file, as in Linux).
 * Huge pages (2 MiB, mapped by PMD leaves): MAP_HUGETLB with
 * MAP_ANONYMOUS, private or shared (shared: an unlinked hugetlbfs file,
 * as in Linux), and any mapping of a hugetlbfs file (hetmm_open_kind()
 * kind 2), MAP_HUGETLB or not. The length is rounded up to 2 MiB; the
 * address of MAP_FIXED and the file offset must be 2 MiB aligned, and
 * munmap/mprotect/madvise/mremap of such a range too (-EINVAL). A
 * writable mapping of a hugetlbfs file grows the file to cover it, as
 * Linux does. Faults that find no free 2 MiB page fail with -ENOMEM
 * (Linux reserves huge pages at mmap time and would fail there instead).
 * Return: the address, or -EINVAL (bad length/alignment/flags/offset,
 * MAP_HUGETLB on a file that is not hugetlbfs, a MAP_FIXED range that
 * cuts a huge page of another mapping), -ENOMEM (no room, or a fixed
 * range past TASK_SIZE), -EEXIST (MAP_FIXED_NOREPLACE over a mapping),
 * -EBADF (bad fd), -EACCES (file not open for reading, or a shared
 * writable map of a file not open for writing), -EOVERFLOW (offset +
 * length too big).
 * MAP_POPULATE failures do not fail the call (as in Linux).
 */
long hetmm_mmap(struct mm_struct *mm, unsigned long addr, size_t len,
		int prot, int flags, int fd, off_t off);
/* munmap(2). Return: 0, or -EINVAL for a misaligned or overflowing range. */
int hetmm_munmap(struct mm_struct *mm, unsigned long addr, size_t len);
/*
 * mprotect(2). Return: 0, -EINVAL (misaligned start, unknown prot bits),
 * -ENOMEM (overflow, or part of the range unmapped), -EACCES (PROT_WRITE on
 * a shared mapping of a file opened read-only).
 */
int hetmm_mprotect(struct mm_struct *mm, unsigned long addr, size_t len,
		   int prot);
/*
 * madvise(2) with MADV_DONTNEED, MADV_POPULATE_READ/WRITE, MADV_HUGEPAGE,
 * MADV_NOHUGEPAGE, MADV_DONTFORK, MADV_DOFORK, MADV_COLLAPSE. Return: 0,
 * -EINVAL (bad advice or alignment; populate without permission), -ENOMEM
 * (a hole), -EFAULT (populate beyond the end of a file: SIGBUS).
 * MADV_COLLAPSE (anonymous private memory; synchronous; the THP mode is
 * ignored, as in Linux): every aligned 2 MiB inside the range ends up
 * mapped by one PMD leaf of a new THP, its contents copied (none and
 * zero-page PTEs zero-filled; pages shared with other processes stay
 * theirs). Return: 0 (all collapsed, or already PMD-mapped), -EINVAL (a
 * VMA that cannot have THPs: MADV_NOHUGEPAGE, hugetlb, driver or file
 * mappings; a 2 MiB range without a PTE table or with non-present
 * entries), -EAGAIN (a page is pinned or otherwise referenced, or
 * locked: try again), -ENOMEM (a hole, or no free 2 MiB page), as Linux's
 * madvise_collapse() (see src/mm/khugepaged.c).
 */
int hetmm_madvise(struct mm_struct *mm, unsigned long addr, size_t len,
		  int advice);
/*
 * mremap(2) with MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP.
 * Return: the new address, or -EINVAL (bad flags, alignment, lengths,
 * overlapping ranges), -EFAULT (the old range is not one mapping), -ENOMEM
 * (no room to grow or move).
 */
long hetmm_mremap(struct mm_struct *mm, unsigned long old_addr,
		  size_t old_len, size_t new_len, int flags,
		  unsigned long new_addr);

/*
 * Files of the machine's in-memory filesystem (one per machine, shared by
 * every process). @flags are open(2)'s O_RDONLY/O_WRONLY/O_RDWR, O_CREAT,
 * O_EXCL, O_TRUNC, O_APPEND; hetmm_open_kind() creates a file of the given
 * enum hetmm_fs_kind (0 tmpfs-like, 1 writeback, 2 hugetlbfs: sizes are
 * 2 MiB multiples, ftruncate to anything else is -EINVAL, pwrite only
 * inside the file). Return: an fd >= 0 or a negative errno, as the system
 * calls.
 */
int hetmm_open(struct mm_struct *mm, const char *path, int flags);
int hetmm_open_kind(struct mm_struct *mm, const char *path, int flags,
		    int kind);
int hetmm_close(struct mm_struct *mm, int fd);
int hetmm_ftruncate(struct mm_struct *mm, int fd, off_t len);
ssize_t hetmm_pread(struct mm_struct *mm, int fd, void *buf, size_t len,
		    off_t off);
ssize_t hetmm_pwrite(struct mm_struct *mm, int fd, const void *buf,
		     size_t len, off_t off);
int hetmm_unlink(struct mm_struct *mm, const char *path);
/*
 * hetmm_thp_set_mode - transparent huge pages for anonymous private memory:
 * "always", "madvise" (the default: only VMAs with MADV_HUGEPAGE) or
 * "never", as /sys/kernel/mm/transparent_hugepage/enabled.
 * Return: 0 or -EINVAL.
 */
int hetmm_thp_set_mode(struct hetmm_machine *m, const char *mode);
/*
 * hetmm_thp_set_use_zero_page - whether read faults in THP-eligible
 * memory map the huge zero folio (1, the default) or allocate a THP (0),
 * as /sys/kernel/mm/transparent_hugepage/use_zero_page. Entries already
 * mapping it stay. Return: 0 or -EINVAL (no machine).
 */
int hetmm_thp_set_use_zero_page(struct hetmm_machine *m, int on);
/* The machine's filesystem (created with the first process). */
struct hetmm_fs *hetmm_machine_fs(struct hetmm_machine *m);

/*
 * hetmm_cpu_read/hetmm_cpu_write - a load/store of @len bytes at @addr by
 * simulated CPU @cpu, faulting pages in as the MMU would.
 * Return: 0, -EFAULT (no mapping or no permission: the simulated SIGSEGV;
 * bytes before the faulting page were transferred), -ENOMEM (a fault
 * could not allocate), -EINVAL (bad cpu).
 */
int hetmm_cpu_read(struct mm_struct *mm, unsigned int cpu, unsigned long addr,
		   void *buf, size_t len);
int hetmm_cpu_write(struct mm_struct *mm, unsigned int cpu, unsigned long addr,
		    const void *buf, size_t len);
/*
 * hetmm_cpu_cmpxchg - an atomic 8-byte compare-and-swap at @addr (8-byte
 * aligned) by CPU @cpu: if the value is @old it becomes @new. It faults as
 * a write whether or not it stores, as x86's locked cmpxchg does.
 * Return: 0 and *@prev = the value found (success iff *@prev == @old),
 * -EINVAL (misaligned, bad cpu), -EFAULT, -ENOMEM.
 */
int hetmm_cpu_cmpxchg(struct mm_struct *mm, unsigned int cpu,
		      unsigned long addr, uint64_t old, uint64_t new,
		      uint64_t *prev);

/*
 * handle_mm_fault - resolve a fault at @addr in @vma.
 * @flags: FAULT_FLAG_WRITE or FAULT_FLAG_UNSHARE (not both),
 *         FAULT_FLAG_REMOTE.
 * Checking the access against the VMA's protection is the caller's job
 * (the CPU path, GUP's FOLL_FORCE rules, hmm_range_fault): as in the
 * kernel, only the flags themselves are checked here (a write needs
 * VM_MAYWRITE, and VM_WRITE unless the mapping is copy-on-write; an
 * unshare outside a COW mapping is a read). Entries created in a VMA
 * without access are PROTNONE.
 * Return: 0 (the access may be retried), -EFAULT (flags refused, outside
 * the VMA, beyond EOF, or a driver mapping with no page there), -ENOMEM.
 * Context: mmap_lock held for read.
 */
int handle_mm_fault(struct vm_area_struct *vma, unsigned long addr,
		    unsigned int flags);

/*
 * zap_page_range - remove every mapping in [@start, @end) of @vma, dropping
 * the references the page tables held. Context: mmap_lock held.
 */
void zap_page_range(struct vm_area_struct *vma, unsigned long start,
		    unsigned long end);

#endif /* HETMM_UAPI_H */
