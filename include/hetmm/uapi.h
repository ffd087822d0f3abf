/* SPDX-License-Identifier: MIT */
/*
 * hetmm/uapi.h - the process face: POSIX-shaped calls on a simulated
 * process, each returning a value or a negative errno.
 *
 * A simulated process is its struct mm_struct (hetmm_process_create()).
 * Constants (PROT_*, MAP_*) are Linux's own, from <sys/mman.h>, so a test
 * reads like a kernel selftest with hetmm_ in front of the calls.
 *
 * Implemented so far: private anonymous mappings (MAP_PRIVATE |
 * MAP_ANONYMOUS with MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE,
 * MAP_NORESERVE), munmap, and CPU reads/writes. Other mapping kinds return
 * -EOPNOTSUPP until their layer lands (see the README's status table).
 */
#ifndef HETMM_UAPI_H
#define HETMM_UAPI_H

#include <stddef.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "mm.h"

/* Fault flags (handle_mm_fault). */
#define FAULT_FLAG_WRITE (1U << 0)
#define FAULT_FLAG_REMOTE (1U << 7)
#define FAULT_FLAG_UNSHARE (1U << 10)

/* Where top-down mmap placement starts. */
#define HETMM_MMAP_BASE 0x7f0000000000UL

/* A new process with an empty address space. Return: it, or ERR_PTR. */
struct mm_struct *hetmm_process_create(struct hetmm_machine *m);
/* The process exits: its address space is released (mmput). */
void hetmm_exit(struct mm_struct *mm);

/*
 * hetmm_mmap - map memory, as mmap(2).
 * Return: the address, or -EINVAL (bad length/alignment/flags, or
 * MAP_FIXED below PAGE_SIZE or past TASK_SIZE), -ENOMEM (no room, or
 * MAP_POPULATE could not allocate), -EEXIST (MAP_FIXED_NOREPLACE over a
 * mapping), -EOPNOTSUPP (a mapping kind not implemented yet).
 */
long hetmm_mmap(struct mm_struct *mm, unsigned long addr, size_t len,
		int prot, int flags, int fd, off_t off);
/* munmap(2). Return: 0, or -EINVAL for a misaligned or overflowing range. */
int hetmm_munmap(struct mm_struct *mm, unsigned long addr, size_t len);

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
 * handle_mm_fault - resolve a fault at @addr in @vma.
 * @flags: FAULT_FLAG_WRITE and/or FAULT_FLAG_UNSHARE (not both),
 *         FAULT_FLAG_REMOTE.
 * Return: 0 (the access may be retried), -EFAULT (not allowed), -ENOMEM.
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
