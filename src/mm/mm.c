// SPDX-License-Identifier: MIT
/*
 * mm.c - address-space lifetime: mm_alloc, mmget/mmput, mmgrab/mmdrop.
 *
 * Locking and invariants:
 *   - mm_users > 0 implies mm_count > 0 (all users together hold one
 *     mm_count reference).
 *   - exit_mmap() runs exactly once, when mm_users drops to zero, with no
 *     other user left; it first tells mmu notifiers (RELEASE), then tears
 *     down every mapping.
 *   - asids are unique per live mm of a process (never reused while the
 *     struct lives, so TLB tags cannot alias).
 */
#include <string.h>

#include <hetmm/err.h>

#include "internal.h"

static atomic_uint next_asid = 1;

struct mm_struct *mm_alloc(struct hetmm_machine *m)
{
	struct mm_machine *mmm;
	struct mm_struct *mm;

	if (!m)
		return ERR_PTR(-EINVAL);
	mmm = mm_machine(m);
	if (!mmm)
		return ERR_PTR(-ENOMEM);
	/* mmap_lock (the first member): each reader slot owns a line. */
	mm = aligned_alloc(64, ALIGN(sizeof(*mm), 64));
	if (!mm)
		return ERR_PTR(-ENOMEM);
	memset(mm, 0, sizeof(*mm));
	mm->machine = m;
	mm->cpus = mmm->cpus;
	mm->nr_cpus = mmm->nr_cpus;
	percpu_init_rwsem(&mm->mmap_lock);
	mm->mm_rb = RB_ROOT;
	atomic_init(&mm->mm_users, 1);
	atomic_init(&mm->mm_count, 1);
	atomic_init(&mm->flags, 0);
	seqcount_init(&mm->write_protect_seq);
	mm->asid = atomic_fetch_add(&next_asid, 1);
	atomic_init(&mm->nr_pt_pages, 0);
	if (pgd_alloc(mm)) {
		percpu_free_rwsem(&mm->mmap_lock);
		free(mm);
		return ERR_PTR(-ENOMEM);
	}
	mutex_lock(&mmm->mm_list_lock);
	list_add_tail(&mm->mm_list, &mmm->mms);
	mutex_unlock(&mmm->mm_list_lock);
	return mm;
}

void mmget(struct mm_struct *mm)
{
	HETMM_DEBUG_BUG_ON(atomic_load(&mm->mm_users) <= 0);
	atomic_fetch_add(&mm->mm_users, 1);
}

bool mmget_not_zero(struct mm_struct *mm)
{
	int v = atomic_load(&mm->mm_users);

	do {
		if (v <= 0)
			return false;
	} while (!atomic_compare_exchange_weak(&mm->mm_users, &v, v + 1));
	return true;
}

void mmgrab(struct mm_struct *mm)
{
	atomic_fetch_add(&mm->mm_count, 1);
}

void mmdrop(struct mm_struct *mm)
{
	int v = atomic_fetch_sub(&mm->mm_count, 1) - 1;

	HETMM_BUG_ON(v < 0);
	if (v)
		return;
	mmu_notifier_subscriptions_destroy(mm);
	percpu_free_rwsem(&mm->mmap_lock);
	free(mm);
}

/*
 * Tear down the address space; the last user is gone. Notifier users hear
 * RELEASE first, then every VMA goes and the page tables are freed.
 */
static void exit_mmap(struct mm_struct *mm)
{
	struct mm_machine *mmm = mm_machine_peek(mm->machine);
	struct rb_node *n;

	mmu_notifier_release(mm);
	mmap_write_lock(mm);
	while ((n = rb_first(&mm->mm_rb))) {
		struct vm_area_struct *vma =
			rb_entry(n, struct vm_area_struct, vm_rb);

		zap_page_range(vma, vma->vm_start, vma->vm_end);
		vma_unlink(vma);
		vm_area_free(vma);
	}
	free_pgd_range(mm, 0, TASK_SIZE);
	mmap_write_unlock(mm);
	HETMM_WARN_ON_ONCE(mm->pgd != NULL);
	mutex_lock(&mmm->mm_list_lock);
	list_del_init(&mm->mm_list);
	mutex_unlock(&mmm->mm_list_lock);
}

void mmput(struct mm_struct *mm)
{
	int v = atomic_fetch_sub(&mm->mm_users, 1) - 1;

	HETMM_BUG_ON(v < 0);
	if (v)
		return;
	exit_mmap(mm);
	mmdrop(mm);
}
