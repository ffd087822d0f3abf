// SPDX-License-Identifier: MIT
/*
 * mmap.c - mmap/munmap: anonymous and file mappings, private and shared.
 *
 * Locking and invariants: both calls take mmap_lock for write for their
 * whole duration, so they are atomic with respect to faults and other
 * address-space changes. A call that fails changes nothing (MAP_POPULATE
 * is best effort, as in Linux: its failure does not fail the mmap). VMAs
 * never overlap; splitting keeps vm_pgoff consistent so
 * anonymous page indices stay linear.
 *
 * hugetlb: MAP_HUGETLB anonymous mappings and every mapping of a
 * hugetlbfs file get VM_HUGETLB: length rounded up to 2 MiB, address
 * (placed or MAP_FIXED) and file offset 2 MiB aligned (-EINVAL
 * otherwise); MAP_HUGETLB with a file of another kind is -EINVAL, as in
 * Linux. Shared anonymous hugetlb memory is an unlinked hugetlbfs file,
 * created before mmap_lock is taken so a failure changes nothing. A
 * writable mapping of a hugetlbfs file grows the file to cover it, as
 * Linux's hugetlbfs mmap does (mmap_lock -> inode lock).
 */
#include <stdio.h>
#include <string.h>

#include <hetmm/err.h>

#include "internal.h"

static unsigned long prot_to_vm_flags(int prot)
{
	unsigned long f = 0;

	if (prot & PROT_READ)
		f |= VM_READ;
	if (prot & PROT_WRITE)
		f |= VM_WRITE | VM_READ; /* x86: writable implies readable */
	if (prot & PROT_EXEC)
		f |= VM_EXEC | VM_READ;
	return f;
}

unsigned long vm_flags_from_prot(int prot)
{
	return prot_to_vm_flags(prot);
}

/*
 * Make room for a new mapping of @len bytes: with MAP_FIXED (or
 * MAP_FIXED_NOREPLACE, which refuses with -EEXIST) at *@addr, unmapping
 * what is there; otherwise at a free range, aligned to @align (PAGE_SIZE
 * or PMD_SIZE), returned in *@addr.
 * Return: 0, -EEXIST, -ENOMEM, or do_munmap()'s error.
 * Context: mmap_lock held for write.
 */
int mmap_place(struct mm_struct *mm, unsigned long *addr, size_t len,
	       int flags, unsigned long align)
{
	if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
		struct vm_area_struct *o = find_vma(mm, *addr);

		if (!o || o->vm_start >= *addr + len)
			return 0;
		if (flags & MAP_FIXED_NOREPLACE)
			return -EEXIST;
		/* Not through the middle of a huge page. */
		return hugetlb_range_ok(mm, *addr, *addr + len) ?:
			       do_munmap(mm, *addr, *addr + len);
	}
	*addr = get_unmapped_area(mm, len + (align > PAGE_SIZE ? align : 0));
	if (!*addr)
		return -ENOMEM;
	*addr = ALIGN(*addr, align);
	return 0;
}

unsigned long get_unmapped_area(struct mm_struct *mm, unsigned long len)
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

int hugetlb_range_ok(struct mm_struct *mm, unsigned long start,
		     unsigned long end)
{
	struct vm_area_struct *vma;

	for (vma = find_vma(mm, start); vma && vma->vm_start < end;
	     vma = vma_next(vma)) {
		if (!(vma->vm_flags & VM_HUGETLB))
			continue;
		if ((start > vma->vm_start && !IS_ALIGNED(start, PMD_SIZE)) ||
		    (end < vma->vm_end && !IS_ALIGNED(end, PMD_SIZE)))
			return -EINVAL;
	}
	return 0;
}

/*
 * Remove every mapping in [start, end). Allocates the (at most two) split
 * VMAs first, so it fails with -ENOMEM before changing anything.
 */
int do_munmap(struct mm_struct *mm, unsigned long start, unsigned long end)
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
			split_vma_at(vma, start, spare[nspare]);
			next = spare[nspare++];
			continue;
		}
		if (vma->vm_end > end)
			split_vma_at(vma, end, spare[nspare++]);
		zap_page_range(vma, vma->vm_start, vma->vm_end);
		vma_unlink(vma);
		vm_area_free(vma);
	}
	while (nspare < 2)
		free(spare[nspare++]);
	free_pgd_range(mm, start, end);
	return 0;
}

/* Shared anonymous hugetlb memory: an unlinked hugetlbfs file of @len. */
static struct file *hugetlb_file_setup(struct mm_struct *mm, size_t len)
{
	static atomic_ulong seq;
	struct hetmm_fs *fs = hetmm_machine_fs(mm->machine);
	struct file *file;
	char name[48];
	int ret;

	if (!fs)
		return ERR_PTR(-ENOMEM);
	snprintf(name, sizeof(name), ".hugetlb-anon-%lu",
		 atomic_fetch_add(&seq, 1));
	file = hetmm_fs_open(fs, name, O_RDWR | O_CREAT | O_EXCL,
			     HETMM_FS_HUGETLBFS);
	if (IS_ERR(file))
		return file;
	hetmm_fs_unlink(fs, name);
	ret = file_truncate(file, (loff_t)len);
	if (ret) {
		fput(file);
		return ERR_PTR(ret);
	}
	return file;
}

long hetmm_mmap(struct mm_struct *mm, unsigned long addr, size_t len,
		int prot, int flags, int fd, off_t off)
{
	const int known = MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
			  MAP_FIXED_NOREPLACE | MAP_POPULATE | MAP_NORESERVE |
			  MAP_HUGETLB;
	const int fixed = MAP_FIXED | MAP_FIXED_NOREPLACE;
	struct vm_area_struct *vma = NULL;
	struct file *file = NULL;
	unsigned long end, pgoff;
	bool huge = flags & MAP_HUGETLB;
	int ret;

	if (!mm || !len || (flags & ~known) ||
	    (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
		return -EINVAL;
	if (!(flags & (MAP_SHARED | MAP_PRIVATE)) ||
	    (flags & MAP_SHARED && flags & MAP_PRIVATE))
		return -EINVAL;
	if (off < 0 || !IS_ALIGNED((unsigned long)off, PAGE_SIZE))
		return -EINVAL;
	/* Files: whether the mapping is hugetlb is the file's kind. */
	if (huge && (flags & MAP_ANONYMOUS)) {
		len = ALIGN(len, PMD_SIZE);
		if ((flags & fixed) && !IS_ALIGNED(addr, PMD_SIZE))
			return -EINVAL;
	}
	len = ALIGN(len, PAGE_SIZE);
	if (!len || len > TASK_SIZE)
		return -ENOMEM;
	if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) &&
	    !IS_ALIGNED(addr, PAGE_SIZE))
		return -EINVAL;
	/* As Linux's get_unmapped_area: a fixed range past TASK_SIZE. */
	if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) &&
	    addr > TASK_SIZE - len)
		return -ENOMEM;
	if (!(flags & MAP_ANONYMOUS)) {
		file = process_fget(mm, fd);
		if (!file)
			return -EBADF;
		ret = -EINVAL;
		if (is_file_hugepages(file)) {
			huge = true;
			if (!IS_ALIGNED((unsigned long)off, PMD_SIZE) ||
			    ((flags & fixed) && !IS_ALIGNED(addr, PMD_SIZE)))
				goto out_fput;
			len = ALIGN(len, PMD_SIZE);
			ret = -ENOMEM;
			if (len > TASK_SIZE ||
			    ((flags & fixed) && addr > TASK_SIZE - len))
				goto out_fput;
		} else if (huge) {
			goto out_fput; /* MAP_HUGETLB needs a hugetlbfs file */
		}
		ret = -EACCES;
		if (!(file->f_mode & FMODE_READ))
			goto out_fput;
		if ((flags & MAP_SHARED) && (prot & PROT_WRITE) &&
		    !(file->f_mode & FMODE_WRITE))
			goto out_fput;
		ret = -EOVERFLOW;
		if ((unsigned long)off + len < (unsigned long)off ||
		    (loff_t)((unsigned long)off + len) > HETMM_FS_MAXBYTES)
			goto out_fput;
	}
	pgoff = file ? (unsigned long)off >> PAGE_SHIFT : 0;

	if (huge && !file && (flags & MAP_SHARED)) {
		/* Before any change: shared anon memory is a hugetlbfs file. */
		file = hugetlb_file_setup(mm, len);
		if (IS_ERR(file)) {
			ret = (int)PTR_ERR(file);
			file = NULL;
			goto out_fput;
		}
	}
	ret = -ENOMEM;
	vma = vm_area_alloc(mm);
	if (!vma)
		goto out_fput;
	if (!(flags & MAP_SHARED)) {
		vma->anon_vma = anon_vma_alloc();
		if (!vma->anon_vma)
			goto out_free;
	}
	mmap_write_lock(mm);
	ret = mmap_place(mm, &addr, len, flags, huge ? PMD_SIZE : PAGE_SIZE);
	if (ret)
		goto out_unlock;
	end = addr + len;
	vma->vm_start = addr;
	vma->vm_end = end;
	vma->vm_flags = prot_to_vm_flags(prot) | VM_MAYREAD | VM_MAYWRITE |
			VM_MAYEXEC;
	if (flags & MAP_SHARED) {
		vma->vm_flags |= VM_SHARED | VM_MAYSHARE;
		if (file && !(file->f_mode & FMODE_WRITE))
			vma->vm_flags &= ~VM_MAYWRITE;
	}
	if (flags & MAP_NORESERVE)
		vma->vm_flags |= VM_NORESERVE;
	if (huge)
		vma->vm_flags |= VM_HUGETLB;
	if (file) {
		vma->vm_file = file;
		vma->vm_pgoff = pgoff;
		file = NULL; /* the VMA holds the reference now */
	} else {
		/* Anonymous: a linear index, so splits and moves keep it. */
		vma->vm_pgoff = addr >> PAGE_SHIFT;
		if (flags & MAP_SHARED) {
			ret = shmem_zero_setup(mm, vma);
			if (ret)
				goto out_unlock;
		}
	}
	ret = vma_link(mm, vma);
	if (ret)
		goto out_unlock;
	if (huge && vma->vm_file && (vma->vm_flags & VM_WRITE))
		hugetlbfs_extend_size(
			file_inode(vma->vm_file),
			(loff_t)((vma->vm_pgoff << PAGE_SHIFT) + len));
	if ((flags & MAP_POPULATE) &&
	    (vma->vm_flags & (VM_READ | VM_WRITE))) {
		/* As in Linux, a populate failure does not fail the mmap:
		 * the rest faults in on first touch. */
		/* Shared mappings are read-faulted: no need to dirty them. */
		populate_range(mm, addr, end,
			       (vma->vm_flags & (VM_WRITE | VM_SHARED)) ==
				       VM_WRITE);
	}
	mmap_write_unlock(mm);
	return (long)addr;

out_unlock:
	mmap_write_unlock(mm);
out_free:
	vm_area_free(vma);
out_fput:
	if (file)
		fput(file);
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
	ret = hugetlb_range_ok(mm, addr, addr + len) ?:
		do_munmap(mm, addr, addr + len);
	mmap_write_unlock(mm);
	return ret;
}
