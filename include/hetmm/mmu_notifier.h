/* SPDX-License-Identifier: MIT */
/*
 * hetmm/mmu_notifier.h - telling secondary MMUs that CPU page tables change.
 *
 * Map:
 *   struct mmu_notifier_range          one invalidation: [start, end) of an
 *                                      mm, why (event), may it sleep (flags)
 *   struct mmu_interval_notifier       a driver's subscription to a closed
 *                                      VA interval [start, start + length - 1]
 *                                      of one mm, with a collision-retry
 *                                      sequence number (invalidate_seq)
 *   struct mmu_interval_notifier_ops   its single callback, ->invalidate()
 *   struct mmu_notifier                a classic whole-mm subscription
 *   struct mmu_notifier_ops            its ->release / start / end callbacks
 *   struct mmu_notifier_subscriptions  per-mm state, private to
 *                                      mmu_notifier.c, hung off
 *                                      mm->notifier_subscriptions on the
 *                                      first registration and freed with the
 *                                      mm struct
 *
 * Writers (the core mm changing PTEs) bracket the change with
 * mmu_notifier_invalidate_range_start() / _end(). Interval notifiers that
 * intersect the range get ->invalidate() once, during start; classic
 * notifiers get ->invalidate_range_start() after them and
 * ->invalidate_range_end() at end.
 *
 * Readers (drivers building device mappings) use the collision-retry
 * protocol:
 *
 *	again:
 *		seq = mmu_interval_read_begin(sub);     // may sleep
 *		... look at the CPU page tables (hmm_range_fault) ...
 *		mutex_lock(&driver_lock);
 *		if (mmu_interval_read_retry(sub, seq)) {
 *			mutex_unlock(&driver_lock);
 *			goto again;
 *		}
 *		... install device mappings ...
 *		mutex_unlock(&driver_lock);
 *
 * and their ->invalidate() takes driver_lock, calls mmu_interval_set_seq()
 * and tears down device mappings in the range. If any ->invalidate() for
 * the interval runs after read_begin returned and before read_retry,
 * read_retry returns true.
 */
#ifndef HETMM_MMU_NOTIFIER_H
#define HETMM_MMU_NOTIFIER_H

#include <stdbool.h>
#include <stddef.h>

#include "compiler.h"
#include "list.h"
#include "mm_types.h"
#include "rbtree.h"

struct mmu_notifier;
struct mmu_interval_notifier;

/**
 * enum mmu_notifier_event - why an invalidation happens.
 * @MMU_NOTIFY_UNMAP: the range is unmapped (munmap, exit teardown, mremap).
 * @MMU_NOTIFY_CLEAR: PTEs cleared or replaced (zap, COW break, reclaim,
 *                    try_to_migrate, restoring a device-exclusive entry).
 * @MMU_NOTIFY_PROTECTION_VMA: permissions change to follow the VMA.
 * @MMU_NOTIFY_PROTECTION_PAGE: per-page write-protect (fork, page_mkclean).
 * @MMU_NOTIFY_SOFT_DIRTY: soft-dirty bits cleared.
 * @MMU_NOTIFY_RELEASE: the mm is being torn down; interval notifiers only,
 *                      range [0, ULONG_MAX), blockable.
 * @MMU_NOTIFY_MIGRATE: device migration collect/insert; owner is the
 *                      migrating pgmap owner.
 * @MMU_NOTIFY_EXCLUSIVE: make_device_exclusive(); owner is the caller's.
 */
enum mmu_notifier_event {
	MMU_NOTIFY_UNMAP = 0,
	MMU_NOTIFY_CLEAR,
	MMU_NOTIFY_PROTECTION_VMA,
	MMU_NOTIFY_PROTECTION_PAGE,
	MMU_NOTIFY_SOFT_DIRTY,
	MMU_NOTIFY_RELEASE,
	MMU_NOTIFY_MIGRATE,
	MMU_NOTIFY_EXCLUSIVE,
};

/* The callbacks may sleep (set by mmu_notifier_invalidate_range_start()). */
#define MMU_NOTIFIER_RANGE_BLOCKABLE (1 << 0)
/*
 * Private: set by a start that entered the interval-tree bookkeeping, so
 * the matching end leaves it exactly once. Callers never set it.
 */
#define __MMU_NOTIFIER_RANGE_ITREE_ACTIVE (1 << 7)

/**
 * struct mmu_notifier_range - one invalidation.
 * @mm: the address space whose PTEs change.
 * @start: first address of the range.
 * @end: first address after the range (exclusive).
 * @flags: MMU_NOTIFIER_RANGE_BLOCKABLE (set or cleared by the start call).
 * @event: why; see enum mmu_notifier_event.
 * @owner: for MIGRATE and EXCLUSIVE, who asked (so a driver can ignore its
 *         own invalidations); NULL otherwise.
 *
 * Callbacks see the range as const; only the core fills it in, with
 * mmu_notifier_range_init() or mmu_notifier_range_init_owner().
 */
struct mmu_notifier_range {
	struct mm_struct *mm;
	unsigned long start;
	unsigned long end;
	unsigned int flags;
	enum mmu_notifier_event event;
	void *owner;
};

/**
 * struct mmu_interval_notifier_ops - what an interval subscriber implements.
 * @invalidate: called once per intersecting invalidation, during its start.
 *	It must call mmu_interval_set_seq(@sub, @cur_seq) under the driver
 *	lock that guards mmu_interval_read_retry(), and remove device
 *	mappings of the range before returning. It may sleep if the range is
 *	blockable. Returning false is allowed only for a non-blockable range
 *	(it could not take its lock): the invalidation then fails with
 *	-EAGAIN. It must not insert or remove interval notifiers of the mm.
 */
struct mmu_interval_notifier_ops {
	bool (*invalidate)(struct mmu_interval_notifier *sub,
			   const struct mmu_notifier_range *range,
			   unsigned long cur_seq);
};

/**
 * struct mmu_interval_notifier - a subscription to a VA interval.
 * @interval_tree: the interval [start, last] (inclusive) and the link in
 *	the mm's tree; RB_EMPTY_NODE() while not in the tree. Written only
 *	by mmu_notifier.c, under the subscriptions lock.
 * @ops: the callbacks; constant after insert.
 * @mm: the mm, pinned with mmgrab() from insert until remove.
 * @deferred_item: link in the mm's deferred list while an insert or a
 *	remove waits for the running invalidations to end. Private.
 * @invalidate_seq: collision-retry sequence; always odd. Read it only
 *	through mmu_interval_read_begin/read_retry/check_retry, write it only
 *	through mmu_interval_set_seq().
 *
 * The caller owns the memory; it must stay valid until
 * mmu_interval_notifier_remove() returns.
 */
struct mmu_interval_notifier {
	struct interval_tree_node interval_tree;
	const struct mmu_interval_notifier_ops *ops;
	struct mm_struct *mm;
	struct list_head deferred_item;
	unsigned long invalidate_seq;
};

/**
 * struct mmu_notifier_ops - what a classic (whole-mm) subscriber implements.
 * @release: the address space is being torn down (or the subscriber is
 *	being unregistered first); called exactly once. Every device mapping
 *	must be gone when it returns. Optional.
 * @invalidate_range_start: PTEs of the range are about to change. May
 *	fail with -EAGAIN only for a non-blockable range; a subscriber whose
 *	start can fail must not implement @invalidate_range_end. Optional.
 * @invalidate_range_end: the change is complete. Optional.
 *
 * None of them may register or unregister notifiers of the same mm.
 */
struct mmu_notifier_ops {
	void (*release)(struct mmu_notifier *subscription,
			struct mm_struct *mm);
	int (*invalidate_range_start)(struct mmu_notifier *subscription,
				      const struct mmu_notifier_range *range);
	void (*invalidate_range_end)(struct mmu_notifier *subscription,
				     const struct mmu_notifier_range *range);
};

/**
 * struct mmu_notifier - a classic subscription to a whole mm.
 * @ops: the callbacks; set by the caller before registering.
 * @mm: the mm, set by registration and pinned (mmgrab) until unregister.
 * @_link: link in the mm's subscriber list; _link.prev is NULL once the
 *	subscriber is unhooked (by release or unregister). Private.
 */
struct mmu_notifier {
	const struct mmu_notifier_ops *ops;
	struct mm_struct *mm;
	struct list_head _link;
};

/* ---------------------------------------------------------------- range */

/**
 * mmu_notifier_range_init - describe an invalidation.
 * @range: filled in.
 * @event: why.
 * @flags: initial flags (the start call sets or clears BLOCKABLE anyway).
 * @mm: the address space.
 * @start: first address.
 * @end: first address after the range.
 *
 * @owner is set to NULL; use mmu_notifier_range_init_owner() to name one.
 */
static inline void mmu_notifier_range_init(struct mmu_notifier_range *range,
					   enum mmu_notifier_event event,
					   unsigned int flags,
					   struct mm_struct *mm,
					   unsigned long start,
					   unsigned long end)
{
	range->mm = mm;
	range->start = start;
	range->end = end;
	range->flags = flags & ~__MMU_NOTIFIER_RANGE_ITREE_ACTIVE;
	range->event = event;
	range->owner = NULL;
}

/* As mmu_notifier_range_init(), and record @owner (MIGRATE, EXCLUSIVE). */
static inline void
mmu_notifier_range_init_owner(struct mmu_notifier_range *range,
			      enum mmu_notifier_event event, unsigned int flags,
			      struct mm_struct *mm, unsigned long start,
			      unsigned long end, void *owner)
{
	mmu_notifier_range_init(range, event, flags, mm, start, end);
	range->owner = owner;
}

/* True if the callbacks for @range may sleep. */
static inline bool
mmu_notifier_range_blockable(const struct mmu_notifier_range *range)
{
	return range->flags & MMU_NOTIFIER_RANGE_BLOCKABLE;
}

/* ----------------------------------------------------------- write side */

/* True once anything was ever registered on @mm (the cheap test). */
static inline bool mm_has_notifiers(struct mm_struct *mm)
{
	return unlikely(__atomic_load_n(&mm->notifier_subscriptions,
					__ATOMIC_ACQUIRE) != NULL);
}

int __mmu_notifier_invalidate_range_start(struct mmu_notifier_range *range);
void __mmu_notifier_invalidate_range_end(struct mmu_notifier_range *range);

/**
 * mmu_notifier_invalidate_range_start - announce that PTEs will change.
 * @range: the range, from mmu_notifier_range_init().
 *
 * Runs every intersecting interval notifier's ->invalidate(), then every
 * classic ->invalidate_range_start(). Pair with
 * mmu_notifier_invalidate_range_end() on the same @range once the PTEs
 * are changed. Invalidations may nest and run concurrently.
 *
 * Context: may sleep (callbacks may); marks @range blockable. The caller
 * must not hold a lock the callbacks take (driver locks).
 * Return: 0.
 */
static inline int
mmu_notifier_invalidate_range_start(struct mmu_notifier_range *range)
{
	range->flags |= MMU_NOTIFIER_RANGE_BLOCKABLE;
	if (mm_has_notifiers(range->mm))
		return __mmu_notifier_invalidate_range_start(range);
	return 0;
}

/**
 * mmu_notifier_invalidate_range_start_nonblock - the same, without sleeping.
 * @range: the range; marked non-blockable.
 *
 * Context: callbacks must not sleep; they may refuse instead.
 * Return: 0, or -EAGAIN if a subscriber could not proceed without
 * sleeping. After -EAGAIN the invalidation is already over: the caller
 * must not change the PTEs and must not call the end function.
 */
static inline int
mmu_notifier_invalidate_range_start_nonblock(struct mmu_notifier_range *range)
{
	range->flags &= ~MMU_NOTIFIER_RANGE_BLOCKABLE;
	if (mm_has_notifiers(range->mm))
		return __mmu_notifier_invalidate_range_start(range);
	return 0;
}

/**
 * mmu_notifier_invalidate_range_end - the PTE change is complete.
 * @range: the range given to a successful start.
 *
 * Runs classic ->invalidate_range_end(); when the last running
 * invalidation of the mm ends, applies deferred interval inserts/removes
 * and wakes mmu_interval_read_begin() and mmu_interval_notifier_remove()
 * sleepers.
 *
 * Context: may sleep if the classic callbacks do.
 */
static inline void
mmu_notifier_invalidate_range_end(struct mmu_notifier_range *range)
{
	if (mm_has_notifiers(range->mm))
		__mmu_notifier_invalidate_range_end(range);
}

/* ------------------------------------------------------ interval notifiers */

int mmu_interval_notifier_insert(struct mmu_interval_notifier *sub,
				 struct mm_struct *mm, unsigned long start,
				 unsigned long length,
				 const struct mmu_interval_notifier_ops *ops);
int mmu_interval_notifier_insert_locked(
	struct mmu_interval_notifier *sub, struct mm_struct *mm,
	unsigned long start, unsigned long length,
	const struct mmu_interval_notifier_ops *ops);
void mmu_interval_notifier_remove(struct mmu_interval_notifier *sub);

unsigned long mmu_interval_read_begin(struct mmu_interval_notifier *sub);

/**
 * mmu_interval_set_seq - record that an invalidation hit this interval.
 * @sub: the interval, as passed to ->invalidate().
 * @cur_seq: the value passed to ->invalidate().
 *
 * Context: only from ->invalidate(), under the driver lock that also
 * guards mmu_interval_read_retry().
 */
static inline void mmu_interval_set_seq(struct mmu_interval_notifier *sub,
					unsigned long cur_seq)
{
	WRITE_ONCE(sub->invalidate_seq, cur_seq);
}

/**
 * mmu_interval_read_retry - did an invalidation collide with the read?
 * @sub: the interval.
 * @seq: the value mmu_interval_read_begin() returned.
 *
 * Context: under the driver lock that ->invalidate() holds while calling
 * mmu_interval_set_seq(); keep holding it while installing mappings.
 * Return: true if the caller must drop what it read and start over.
 */
static inline bool mmu_interval_read_retry(struct mmu_interval_notifier *sub,
					   unsigned long seq)
{
	return READ_ONCE(sub->invalidate_seq) != seq;
}

/**
 * mmu_interval_check_retry - lockless early collision test.
 * @sub: the interval.
 * @seq: the value mmu_interval_read_begin() returned.
 *
 * Context: any; no lock needed.
 * Return: true if a collision certainly happened (retry now); false is
 * only a hint, mmu_interval_read_retry() under the driver lock decides.
 */
static inline bool mmu_interval_check_retry(struct mmu_interval_notifier *sub,
					    unsigned long seq)
{
	return READ_ONCE(sub->invalidate_seq) != seq;
}

/* ------------------------------------------------------- classic notifiers */

int mmu_notifier_register(struct mmu_notifier *subscription,
			  struct mm_struct *mm);
int __mmu_notifier_register(struct mmu_notifier *subscription,
			    struct mm_struct *mm);
void mmu_notifier_unregister(struct mmu_notifier *subscription,
			     struct mm_struct *mm);

/* ------------------------------------------------------------- lifetime */

void mmu_notifier_release(struct mm_struct *mm);
void mmu_notifier_subscriptions_destroy(struct mm_struct *mm);

/* ---------------------------------------------------------- diagnostics */

int mmu_notifier_check(struct mm_struct *mm, char *buf, size_t len);

/**
 * struct mmu_notifier_stats - process-wide monotonic event counters.
 * @invalidations: start calls that reached the subscription state.
 * @interval_callbacks: ->invalidate() calls (release included).
 * @nonblock_failures: starts that returned -EAGAIN.
 * @read_begin_sleeps: mmu_interval_read_begin() calls that had to sleep.
 * @remove_sleeps: mmu_interval_notifier_remove() calls that had to sleep.
 * @deferred_ops: inserts and removes queued on a deferred list.
 */
struct mmu_notifier_stats {
	unsigned long invalidations;
	unsigned long interval_callbacks;
	unsigned long nonblock_failures;
	unsigned long read_begin_sleeps;
	unsigned long remove_sleeps;
	unsigned long deferred_ops;
};

void mmu_notifier_stats_read(struct mmu_notifier_stats *st);

#endif /* HETMM_MMU_NOTIFIER_H */
