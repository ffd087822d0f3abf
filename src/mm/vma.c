// SPDX-License-Identifier: MIT
/*
 * vma.c - the ordered VMA tree of an mm.
 *
 * Locking and invariants: mm->mm_rb and every VMA's fields are changed
 * under mmap_lock held for write and read under it held for read. VMAs in
 * the tree never overlap, are page aligned, non-empty and below TASK_SIZE;
 * mm->map_count is the number of VMAs in the tree.
 */
#include <hetmm/err.h>
#include <hetmm/mm.h>

static int vma_cmp_end(const void *key, const struct rb_node *n)
{
	unsigned long addr = *(const unsigned long *)key;
	const struct vm_area_struct *v = rb_entry(n, struct vm_area_struct,
						  vm_rb);

	/* Order: the first VMA with vm_end > addr is the lower bound. */
	return addr < v->vm_end ? -1 : 1;
}

struct vm_area_struct *find_vma(struct mm_struct *mm, unsigned long addr)
{
	struct rb_node *n;

	mmap_assert_locked(mm);
	n = rb_find_first(&addr, &mm->mm_rb, vma_cmp_end);
	return n ? rb_entry(n, struct vm_area_struct, vm_rb) : NULL;
}

struct vm_area_struct *vma_lookup(struct mm_struct *mm, unsigned long addr)
{
	struct vm_area_struct *vma = find_vma(mm, addr);

	return vma && vma->vm_start <= addr ? vma : NULL;
}

struct vm_area_struct *vma_next(struct vm_area_struct *vma)
{
	struct rb_node *n = rb_next(&vma->vm_rb);

	return n ? rb_entry(n, struct vm_area_struct, vm_rb) : NULL;
}

static bool vma_less(const struct rb_node *a, const struct rb_node *b)
{
	return rb_entry(a, struct vm_area_struct, vm_rb)->vm_start <
	       rb_entry(b, struct vm_area_struct, vm_rb)->vm_start;
}

int insert_vm_struct(struct mm_struct *mm, struct vm_area_struct *vma)
{
	struct vm_area_struct *next;

	mmap_assert_write_locked(mm);
	if (!vma || vma->vm_start >= vma->vm_end ||
	    !IS_ALIGNED(vma->vm_start, PAGE_SIZE) ||
	    !IS_ALIGNED(vma->vm_end, PAGE_SIZE) || vma->vm_end > TASK_SIZE)
		return -EINVAL;
	next = find_vma(mm, vma->vm_start);
	if (next && next->vm_start < vma->vm_end)
		return -EINVAL;
	vma->vm_mm = mm;
	rb_add(&vma->vm_rb, &mm->mm_rb, vma_less);
	mm->map_count++;
	return 0;
}

void vma_unlink(struct vm_area_struct *vma)
{
	struct mm_struct *mm = vma->vm_mm;

	mmap_assert_write_locked(mm);
	rb_erase(&vma->vm_rb, &mm->mm_rb);
	RB_CLEAR_NODE(&vma->vm_rb);
	mm->map_count--;
}
