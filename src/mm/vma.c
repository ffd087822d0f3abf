// SPDX-License-Identifier: MIT
/*
 * vma.c - the ordered VMA tree of an mm, and VMA life cycle: allocation,
 * duplication (split, fork), linking into the rmap structures.
 *
 * Locking and invariants: mm->mm_rb and every VMA's fields are changed
 * under mmap_lock held for write and read under it held for read. VMAs in
 * the tree never overlap, are page aligned, non-empty and below TASK_SIZE;
 * mm->map_count is the number of VMAs in the tree.
 *   - A linked VMA with a file is in the file's i_mmap tree with
 *     shared_rb = [vm_pgoff, vm_pgoff + pages - 1] and holds a file
 *     reference; range changes happen under i_mmap_lock_write.
 *   - A linked private VMA has an anon_vma and is on its list (changed
 *     under the anon_vma's rwsem for write); it holds one reference.
 */
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/fs.h>
#include <hetmm/mm.h>

#include "internal.h"

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

static int __insert_vm_struct(struct mm_struct *mm, struct vm_area_struct *vma)
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

static void i_mmap_set(struct vm_area_struct *vma)
{
	vma->shared_rb.start = vma->vm_pgoff;
	vma->shared_rb.last =
		vma->vm_pgoff + ((vma->vm_end - vma->vm_start) >> PAGE_SHIFT) - 1;
}

int insert_vm_struct(struct mm_struct *mm, struct vm_area_struct *vma)
{
	int ret = __insert_vm_struct(mm, vma);

	if (ret)
		return ret;
	if (vma->vm_file) {
		struct address_space *mapping = vma->vm_file->f_mapping;

		i_mmap_lock_write(mapping);
		i_mmap_set(vma);
		interval_tree_insert(&vma->shared_rb, &mapping->i_mmap);
		i_mmap_unlock_write(mapping);
	}
	if (vma->anon_vma) {
		down_write(&vma->anon_vma->rwsem);
		list_add_tail(&vma->anon_vma_node, &vma->anon_vma->vmas);
		up_write(&vma->anon_vma->rwsem);
	}
	return 0;
}

int vma_link(struct mm_struct *mm, struct vm_area_struct *vma)
{
	return insert_vm_struct(mm, vma);
}

void vma_unlink(struct vm_area_struct *vma)
{
	struct mm_struct *mm = vma->vm_mm;

	mmap_assert_write_locked(mm);
	if (vma->vm_file) {
		struct address_space *mapping = vma->vm_file->f_mapping;

		i_mmap_lock_write(mapping);
		interval_tree_remove(&vma->shared_rb, &mapping->i_mmap);
		i_mmap_unlock_write(mapping);
	}
	if (vma->anon_vma) {
		down_write(&vma->anon_vma->rwsem);
		list_del_init(&vma->anon_vma_node);
		up_write(&vma->anon_vma->rwsem);
	}
	rb_erase(&vma->vm_rb, &mm->mm_rb);
	RB_CLEAR_NODE(&vma->vm_rb);
	mm->map_count--;
}

struct vm_area_struct *vm_area_alloc(struct mm_struct *mm)
{
	struct vm_area_struct *vma = calloc(1, sizeof(*vma));

	if (!vma)
		return NULL;
	vma->vm_mm = mm;
	RB_CLEAR_NODE(&vma->vm_rb);
	INIT_LIST_HEAD(&vma->anon_vma_node);
	return vma;
}

/* Copy @orig into @new, taking the references a VMA holds. */
static void vma_copy(struct vm_area_struct *new, struct vm_area_struct *orig)
{
	/* Only the fields the VMA owns: its list and tree links belong to
	 * structures other processes change under their own locks. */
	*new = (struct vm_area_struct){
		.vm_mm = orig->vm_mm,
		.vm_start = orig->vm_start,
		.vm_end = orig->vm_end,
		.vm_flags = orig->vm_flags,
		.vm_pgoff = orig->vm_pgoff,
		.vm_file = orig->vm_file,
		.anon_vma = orig->anon_vma,
	};
	RB_CLEAR_NODE(&new->vm_rb);
	INIT_LIST_HEAD(&new->anon_vma_node);
	if (new->vm_file)
		get_file(new->vm_file);
	if (new->anon_vma)
		anon_vma_get(new->anon_vma);
}

struct vm_area_struct *vm_area_dup(struct vm_area_struct *orig)
{
	struct vm_area_struct *vma = malloc(sizeof(*vma));

	if (!vma)
		return NULL;
	vma_copy(vma, orig);
	return vma;
}

void vm_area_free(struct vm_area_struct *vma)
{
	if (!vma)
		return;
	if (vma->vm_file)
		fput(vma->vm_file);
	anon_vma_put(vma->anon_vma);
	free(vma);
}

void vma_set_range(struct vm_area_struct *vma, unsigned long start,
		   unsigned long end, unsigned long pgoff)
{
	struct address_space *mapping =
		vma->vm_file ? vma->vm_file->f_mapping : NULL;

	mmap_assert_write_locked(vma->vm_mm);
	if (mapping) {
		i_mmap_lock_write(mapping);
		interval_tree_remove(&vma->shared_rb, &mapping->i_mmap);
	}
	/* The tree order (by vm_start) is unchanged: callers never move a
	 * VMA past a neighbour. */
	vma->vm_start = start;
	vma->vm_end = end;
	vma->vm_pgoff = pgoff;
	if (mapping) {
		i_mmap_set(vma);
		interval_tree_insert(&vma->shared_rb, &mapping->i_mmap);
		i_mmap_unlock_write(mapping);
	}
}

void split_vma_at(struct vm_area_struct *vma, unsigned long addr,
		  struct vm_area_struct *tail)
{
	unsigned long end = vma->vm_end;

	/* A THP may not straddle two VMAs. */
	if (!IS_ALIGNED(addr, PMD_SIZE))
		split_huge_pmd_address(vma, addr);
	vma_copy(tail, vma);
	tail->vm_start = addr;
	tail->vm_pgoff += (addr - vma->vm_start) >> PAGE_SHIFT;
	vma_set_range(vma, vma->vm_start, addr, vma->vm_pgoff);
	tail->vm_end = end;
	/* Cannot fail: the two halves cover exactly the old range. */
	HETMM_BUG_ON(insert_vm_struct(vma->vm_mm, tail));
}
