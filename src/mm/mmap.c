// SPDX-License-Identifier: MIT
/*
 * mmap.c - mmap/munmap of private anonymous memory, process lifetime.
 *
 * Locking and invariants: both calls take mmap_lock for write for their
 * whole duration, so they are atomic with respect to faults and other
 * address-space changes. A call that fails changes nothing (MAP_POPULATE
 * is best effort, as in Linux: its failure does not fail the mmap). VMAs
 * never overlap; splitting keeps vm_pgoff consistent so
 * anonymous page indices stay linear.
 */
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/uapi.h>

struct mm_struct *hetmm_process_create(struct hetmm_machine *m)
{
	return mm_alloc(m);
}

void hetmm_exit(struct mm_struct *mm)
{
	if (mm)
		mmput(mm);
}

static unsigned long prot_to_vm_flags(int prot)
{
	unsigned long f = 0;

	if (prot & PROT_READ)
		f |= VM_READ;
	if (prot & PROT_WRITE)
		f |= VM_WRITE | VM_READ; /* x86: writable implies readable */
	if (prot & PROT_EXEC)
		f |= VM_EXEC | VM_READ;
	return f | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
}

/* Highest free gap of @len below HETMM_MMAP_BASE, or 0. */
static unsigned long get_unmapped_area(struct mm_struct *mm, size_t len)
{
	unsigned long top = HETMM_MMAP_BASE;
	struct rb_node *n;

	for (n = rb_last(&mm->mm_rb); n; n = rb_prev(n)) {
		struct vm_area_struct *v = rb_entry(n, struct vm_area_struct,
						    vm_rb);

		if (v->vm_start >= top)
			continue;
		if (v->vm_end <= top && top - v->vm_end >= len)
			return top - len;
		top = v->vm_start;
	}
	return top >= len + PAGE_SIZE ? top - len : 0;
}

/*
 * Split @vma at @addr using the preallocated @tail: @vma keeps
 * [vm_start, addr), @tail takes [addr, vm_end) and is linked in.
 */
static struct vm_area_struct *split_vma_at(struct vm_area_struct *vma,
					   unsigned long addr,
					   struct vm_area_struct *tail)
{
	*tail = *vma;
	RB_CLEAR_NODE(&tail->vm_rb);
	tail->vm_start = addr;
	tail->vm_pgoff += (addr - vma->vm_start) >> PAGE_SHIFT;
	vma->vm_end = addr;
	/* Cannot fail: the two halves cover exactly the old range. */
	HETMM_BUG_ON(insert_vm_struct(vma->vm_mm, tail));
	return tail;
}

/*
 * Remove every mapping in [start, end). Allocates the (at most two) split
 * VMAs first, so it fails with -ENOMEM before changing anything.
 */
static int do_munmap(struct mm_struct *mm, unsigned long start,
		     unsigned long end)
{
	struct vm_area_struct *vma, *next, *spare[2];
	int nspare = 0;

	mmap_assert_write_locked(mm);
	vma = find_vma(mm, start);
	if (!vma || vma->vm_start >= end)
		return 0;
	spare[0] = malloc(sizeof(*spare[0]));
	spare[1] = malloc(sizeof(*spare[1]));
	if (!spare[0] || !spare[1]) {
		free(spare[0]);
		free(spare[1]);
		return -ENOMEM;
	}
	for (; vma && vma->vm_start < end; vma = next) {
		next = vma_next(vma);
		if (vma->vm_start < start) {
			/* Keep [vm_start, start); go on with the rest. */
			next = split_vma_at(vma, start, spare[nspare++]);
			continue;
		}
		if (vma->vm_end > end)
			split_vma_at(vma, end, spare[nspare++]);
		zap_page_range(vma, vma->vm_start, vma->vm_end);
		vma_unlink(vma);
		free(vma);
	}
	while (nspare < 2)
		free(spare[nspare++]);
	free_pgd_range(mm, start, end);
	return 0;
}

long hetmm_mmap(struct mm_struct *mm, unsigned long addr, size_t len,
		int prot, int flags, int fd, off_t off)
{
	const int known = MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
			  MAP_FIXED_NOREPLACE | MAP_POPULATE | MAP_NORESERVE |
			  MAP_HUGETLB;
	struct vm_area_struct *vma;
	unsigned long end;
	int ret;

	(void)off;
	if (!mm || !len || (flags & ~known) ||
	    (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
		return -EINVAL;
	if (!(flags & (MAP_SHARED | MAP_PRIVATE)) ||
	    (flags & MAP_SHARED && flags & MAP_PRIVATE))
		return -EINVAL;
	len = ALIGN(len, PAGE_SIZE);
	if (!len || len > TASK_SIZE)
		return -ENOMEM;
	if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) &&
	    (!IS_ALIGNED(addr, PAGE_SIZE) || addr > TASK_SIZE - len))
		return -EINVAL;
	if (!(flags & MAP_ANONYMOUS) || fd != -1 || (flags & MAP_SHARED) ||
	    (flags & MAP_HUGETLB))
		return -EOPNOTSUPP; /* file, shared and hugetlb come later */

	vma = calloc(1, sizeof(*vma));
	if (!vma)
		return -ENOMEM;
	mmap_write_lock(mm);
	if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
		struct vm_area_struct *o = find_vma(mm, addr);

		if (o && o->vm_start < addr + len) {
			if (flags & MAP_FIXED_NOREPLACE) {
				ret = -EEXIST;
				goto out_unlock;
			}
			ret = do_munmap(mm, addr, addr + len);
			if (ret)
				goto out_unlock;
		}
	} else {
		addr = get_unmapped_area(mm, len);
		if (!addr) {
			ret = -ENOMEM;
			goto out_unlock;
		}
	}
	end = addr + len;
	vma->vm_start = addr;
	vma->vm_end = end;
	vma->vm_flags = prot_to_vm_flags(prot);
	if (!(prot & (PROT_READ | PROT_WRITE | PROT_EXEC)))
		vma->vm_flags &= ~VM_READ;
	if (flags & MAP_NORESERVE)
		vma->vm_flags |= VM_NORESERVE;
	vma->vm_pgoff = addr >> PAGE_SHIFT;
	vma->anon_vma = NULL;
	ret = insert_vm_struct(mm, vma);
	if (ret)
		goto out_unlock;
	if (flags & MAP_POPULATE) {
		unsigned int ff = (vma->vm_flags & VM_WRITE) ? FAULT_FLAG_WRITE :
							       0;

		for (unsigned long a = addr; a < end; a += PAGE_SIZE) {
			if (!(vma->vm_flags & (VM_READ | VM_WRITE)))
				break;
			/* As in Linux, a populate failure does not fail
			 * the mmap: the rest faults in on first touch. */
			if (handle_mm_fault(vma, a, ff))
				break;
		}
	}
	mmap_write_unlock(mm);
	return (long)addr;

out_unlock:
	mmap_write_unlock(mm);
	free(vma);
	return ret;
}

int hetmm_munmap(struct mm_struct *mm, unsigned long addr, size_t len)
{
	int ret;

	if (!mm || !IS_ALIGNED(addr, PAGE_SIZE) || !len)
		return -EINVAL;
	len = ALIGN(len, PAGE_SIZE);
	if (!len || addr > TASK_SIZE || len > TASK_SIZE - addr)
		return -EINVAL;
	mmap_write_lock(mm);
	ret = do_munmap(mm, addr, addr + len);
	mmap_write_unlock(mm);
	return ret;
}
