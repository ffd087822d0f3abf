// SPDX-License-Identifier: MIT
/*
 * mmu_notifier.c - interval and classic mmu notifiers of an mm.
 *
 * Locking and invariants
 *
 *   mm.mmap_lock (write)            creating the subscription state,
 *                                   registering, setting has_itree
 *     subs->srcu_sync_lock (mutex)  serialises classic-list grace periods
 *       subs->wq_lock (mutex)       sleepers' condition variable
 *         subs->lock (spinlock)     every field below; always a leaf
 *
 *   Callbacks (->invalidate, classic ops) run with none of these held,
 *   only whatever the caller of start/end/release holds (often mmap_lock
 *   for read).
 *
 *   Interval side. seq = subs->invalidate_seq, act =
 *   subs->active_invalidate_ranges:
 *     seq starts at 2; seq odd  =>  act > 0
 *     act == 0  =>  seq even and deferred_list empty
 *     seq odd: the tree is frozen. Starts that found an intersecting
 *       interval walk it without the lock; inserts and removes queue on
 *       deferred_list and are applied by the end that brings act to 0
 *       (which also makes seq even and wakes every sleeper).
 *     every interval in the tree, or queued for insertion, has an odd
 *       invalidate_seq; on deferred_list while RB_EMPTY_NODE = pending
 *       insert, while in the tree = pending remove (only while seq odd)
 *     nr_intervals == number of nodes in itree
 *     each interval holds one mm_count from insert until remove returns
 *
 *   Classic side: subs->list is walked without the lock inside a private
 *   sleepable read-side section (srcu_read_lock/unlock below, a two-epoch
 *   counter in the style of SRCU). Writers link and unlink under the lock
 *   with release stores of ->next; an unlinked entry keeps its ->next and
 *   gets _link.prev = NULL, and is reusable only after mn_srcu_sync().
 *     srcu_readers[0], srcu_readers[1] >= 0
 *     every hooked subscriber (_link.prev != NULL) holds one mm_count,
 *     dropped by mmu_notifier_unregister()
 *
 *   Range side: a start that entered the interval bookkeeping sets
 *   __MMU_NOTIFIER_RANGE_ITREE_ACTIVE in the range; the end (or the
 *   failing nonblock start) clears it and decrements act exactly once.
 *
 *   Registration excludes only invalidations run under mmap_lock, as the
 *   state is set up under mmap_lock held for write (the kernel's
 *   mm_take_all_locks also excludes rmap-side invalidators).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <hetmm/err.h>
#include <hetmm/mm_types.h>
#include <hetmm/mmu_notifier.h>

/**
 * struct mmu_notifier_subscriptions - per-mm notifier state.
 * @lock: protects every field below except the pthread objects.
 * @invalidate_seq: even when no invalidation touching an interval runs.
 * @active_invalidate_ranges: starts that entered the interval bookkeeping
 *	and have not ended yet.
 * @itree: the interval notifiers, keyed by [start, last].
 * @nr_intervals: nodes in @itree.
 * @deferred_list: inserts and removes waiting for @invalidate_seq to turn
 *	even.
 * @has_itree: interval mode is on (read locklessly by starts).
 * @list: classic subscribers, newest first.
 * @srcu_epoch: low bit selects the read-side counter new readers use.
 * @srcu_readers: classic-list walkers per epoch.
 * @srcu_sync_waiting: a grace period waits for a counter to reach 0.
 * @srcu_sync_lock: one grace period at a time.
 * @wq_lock: with @wq, where read_begin, remove and grace periods sleep.
 * @wq: broadcast whenever a condition someone may wait for turns true.
 */
struct mmu_notifier_subscriptions {
	spinlock_t lock;
	unsigned long invalidate_seq;
	long active_invalidate_ranges;
	struct rb_root itree;
	unsigned long nr_intervals;
	struct list_head deferred_list;
	bool has_itree;

	struct list_head list;
	unsigned long srcu_epoch;
	long srcu_readers[2];
	bool srcu_sync_waiting;
	pthread_mutex_t srcu_sync_lock;

	pthread_mutex_t wq_lock;
	pthread_cond_t wq;
};

/* ------------------------------------------------------------ counters */

static struct mmu_notifier_stats mn_stats;

#define mn_stat_inc(field) \
	__atomic_fetch_add(&mn_stats.field, 1, __ATOMIC_RELAXED)

/**
 * mmu_notifier_stats_read - snapshot the process-wide counters.
 * @st: filled in.
 *
 * Context: any. Counters are monotonic; compare two snapshots.
 */
void mmu_notifier_stats_read(struct mmu_notifier_stats *st)
{
	st->invalidations = READ_ONCE(mn_stats.invalidations);
	st->interval_callbacks = READ_ONCE(mn_stats.interval_callbacks);
	st->nonblock_failures = READ_ONCE(mn_stats.nonblock_failures);
	st->read_begin_sleeps = READ_ONCE(mn_stats.read_begin_sleeps);
	st->remove_sleeps = READ_ONCE(mn_stats.remove_sleeps);
	st->deferred_ops = READ_ONCE(mn_stats.deferred_ops);
}

/* ------------------------------------------------------------- helpers */

static struct mmu_notifier_subscriptions *mn_subs(struct mm_struct *mm)
{
	return __atomic_load_n(&mm->notifier_subscriptions, __ATOMIC_ACQUIRE);
}

static struct mmu_interval_notifier *
mn_interval_entry(struct interval_tree_node *node)
{
	return node ? container_of(node, struct mmu_interval_notifier,
				   interval_tree) :
		      NULL;
}

/* Wake every sleeper; call after the awaited state changed, unlocked. */
static void mn_wake_all(struct mmu_notifier_subscriptions *subs)
{
	pthread_mutex_lock(&subs->wq_lock);
	pthread_cond_broadcast(&subs->wq);
	pthread_mutex_unlock(&subs->wq_lock);
}

/*
 * Sleep until @cond holds. @cond is evaluated with wq_lock held and must
 * take subs->lock itself; wakers change the state first and then take
 * wq_lock to broadcast, so no wake-up is lost between test and sleep.
 */
#define mn_wait_event(subs, cond)                                         \
	do {                                                              \
		pthread_mutex_lock(&(subs)->wq_lock);                     \
		while (!(cond))                                           \
			pthread_cond_wait(&(subs)->wq, &(subs)->wq_lock); \
		pthread_mutex_unlock(&(subs)->wq_lock);                   \
	} while (0)

/* True once the mm's sequence moved past @seq (that invalidation ended). */
static bool mn_seq_released(struct mmu_notifier_subscriptions *subs,
			    unsigned long seq)
{
	bool ret;

	spin_lock(&subs->lock);
	ret = subs->invalidate_seq != seq;
	spin_unlock(&subs->lock);
	return ret;
}

static bool mn_itree_is_invalidating(struct mmu_notifier_subscriptions *subs)
{
	lockdep_assert_held(&subs->lock);
	return subs->invalidate_seq & 1;
}

static void mn_itree_link(struct mmu_notifier_subscriptions *subs,
			  struct mmu_interval_notifier *sub)
{
	interval_tree_insert(&sub->interval_tree, &subs->itree);
	subs->nr_intervals++;
}

static void mn_itree_unlink(struct mmu_notifier_subscriptions *subs,
			    struct mmu_interval_notifier *sub)
{
	interval_tree_remove(&sub->interval_tree, &subs->itree);
	RB_CLEAR_NODE(&sub->interval_tree.rb);
	subs->nr_intervals--;
}

/* ------------------------------------------------ interval invalidation */

/*
 * Enter the bookkeeping for an invalidation of [start, last] and return
 * the first intersecting interval (the tree is then frozen) with the
 * sequence value its callbacks must record in *seq.
 */
static struct mmu_interval_notifier *
mn_itree_inv_start_range(struct mmu_notifier_subscriptions *subs,
			 unsigned long start, unsigned long last,
			 unsigned long *seq)
{
	struct interval_tree_node *node = NULL;

	spin_lock(&subs->lock);
	subs->active_invalidate_ranges++;
	if (start <= last)
		node = interval_tree_iter_first(&subs->itree, start, last);
	if (node)
		subs->invalidate_seq |= 1;
	*seq = subs->invalidate_seq;
	spin_unlock(&subs->lock);
	return mn_interval_entry(node);
}

/* Next interval after @sub in [start, last]; the tree is frozen. */
static struct mmu_interval_notifier *
mn_itree_inv_next(struct mmu_interval_notifier *sub, unsigned long start,
		  unsigned long last)
{
	return mn_interval_entry(
		interval_tree_iter_next(&sub->interval_tree, start, last));
}

/* Leave the bookkeeping; the last one out thaws the tree. */
static void mn_itree_inv_end(struct mmu_notifier_subscriptions *subs)
{
	struct mmu_interval_notifier *sub, *tmp;

	spin_lock(&subs->lock);
	if (HETMM_WARN_ON_ONCE(subs->active_invalidate_ranges <= 0)) {
		spin_unlock(&subs->lock);
		return;
	}
	if (--subs->active_invalidate_ranges ||
	    !mn_itree_is_invalidating(subs)) {
		spin_unlock(&subs->lock);
		return;
	}
	subs->invalidate_seq++;
	/*
	 * Structural changes were queued rather than blocking the inserter
	 * or spinning on the tree; apply them now that nobody walks it.
	 */
	list_for_each_entry_safe(sub, tmp, &subs->deferred_list,
				 deferred_item) {
		if (RB_EMPTY_NODE(&sub->interval_tree.rb))
			mn_itree_link(subs, sub);
		else
			mn_itree_unlink(subs, sub);
		list_del_init(&sub->deferred_item);
	}
	spin_unlock(&subs->lock);
	mn_wake_all(subs);
}

/*
 * Call ->invalidate() of every interval intersecting @range. On success
 * the range stays in the bookkeeping until the end call.
 */
static int mn_itree_invalidate(struct mmu_notifier_subscriptions *subs,
			       struct mmu_notifier_range *range)
{
	unsigned long start = range->start, last = range->end - 1;
	struct mmu_interval_notifier *sub;
	unsigned long cur_seq;

	/* An empty range still counts as running; it just hits nothing. */
	if (HETMM_WARN_ON_ONCE(range->start >= range->end)) {
		start = 1;
		last = 0;
	}
	HETMM_WARN_ON_ONCE(range->flags & __MMU_NOTIFIER_RANGE_ITREE_ACTIVE);
	range->flags |= __MMU_NOTIFIER_RANGE_ITREE_ACTIVE;
	for (sub = mn_itree_inv_start_range(subs, start, last, &cur_seq); sub;
	     sub = mn_itree_inv_next(sub, start, last)) {
		bool ok = sub->ops->invalidate(sub, range, cur_seq);

		mn_stat_inc(interval_callbacks);
		if (ok)
			continue;
		/* Refusing is only legal when the caller cannot sleep. */
		if (HETMM_WARN_ON_ONCE(mmu_notifier_range_blockable(range)))
			continue;
		range->flags &= ~__MMU_NOTIFIER_RANGE_ITREE_ACTIVE;
		mn_itree_inv_end(subs);
		return -EAGAIN;
	}
	return 0;
}

/* One RELEASE invalidation over everything for every interval. */
static void mn_itree_release(struct mmu_notifier_subscriptions *subs,
			     struct mm_struct *mm)
{
	struct mmu_notifier_range range;
	struct mmu_interval_notifier *sub;
	unsigned long cur_seq;

	mmu_notifier_range_init(&range, MMU_NOTIFY_RELEASE,
				MMU_NOTIFIER_RANGE_BLOCKABLE, mm, 0, ULONG_MAX);
	/* [0, ULONG_MAX] inclusive, so an interval ending at ULONG_MAX counts. */
	for (sub = mn_itree_inv_start_range(subs, 0, ULONG_MAX, &cur_seq); sub;
	     sub = mn_itree_inv_next(sub, 0, ULONG_MAX)) {
		bool ok = sub->ops->invalidate(sub, &range, cur_seq);

		mn_stat_inc(interval_callbacks);
		HETMM_WARN_ON_ONCE(!ok);
	}
	mn_itree_inv_end(subs);
}

/* ------------------------------------------ classic list read-side domain */

static int mn_srcu_read_lock(struct mmu_notifier_subscriptions *subs)
{
	int idx;

	spin_lock(&subs->lock);
	idx = subs->srcu_epoch & 1;
	subs->srcu_readers[idx]++;
	spin_unlock(&subs->lock);
	return idx;
}

static void mn_srcu_read_unlock(struct mmu_notifier_subscriptions *subs,
				int idx)
{
	bool wake;

	spin_lock(&subs->lock);
	HETMM_DEBUG_BUG_ON(subs->srcu_readers[idx] <= 0);
	wake = --subs->srcu_readers[idx] == 0 && subs->srcu_sync_waiting;
	spin_unlock(&subs->lock);
	if (wake)
		mn_wake_all(subs);
}

static bool mn_srcu_drained(struct mmu_notifier_subscriptions *subs, int idx)
{
	bool ret;

	spin_lock(&subs->lock);
	ret = subs->srcu_readers[idx] == 0;
	spin_unlock(&subs->lock);
	return ret;
}

/*
 * Wait until every classic-list walker that might still see an entry
 * unlinked before this call has finished. Grace periods are serialised,
 * so every walker older than the previous flip was already waited for;
 * flipping the epoch sends new walkers to the other counter and only
 * the old one has to drain.
 */
static void mn_srcu_sync(struct mmu_notifier_subscriptions *subs)
{
	int idx;

	pthread_mutex_lock(&subs->srcu_sync_lock);
	spin_lock(&subs->lock);
	idx = subs->srcu_epoch & 1;
	subs->srcu_epoch++;
	subs->srcu_sync_waiting = true;
	spin_unlock(&subs->lock);

	mn_wait_event(subs, mn_srcu_drained(subs, idx));

	spin_lock(&subs->lock);
	subs->srcu_sync_waiting = false;
	spin_unlock(&subs->lock);
	pthread_mutex_unlock(&subs->srcu_sync_lock);
}

/* -------------------------------------------------------- classic list */

static bool mn_hlist_empty(struct mmu_notifier_subscriptions *subs)
{
	return __atomic_load_n(&subs->list.next, __ATOMIC_ACQUIRE) ==
	       &subs->list;
}

/* The first subscriber, or NULL; lockless, inside mn_srcu_read_lock(). */
static struct mmu_notifier *
mn_hlist_first(struct mmu_notifier_subscriptions *subs)
{
	struct list_head *first =
		__atomic_load_n(&subs->list.next, __ATOMIC_ACQUIRE);

	if (first == &subs->list)
		return NULL;
	return list_entry(first, struct mmu_notifier, _link);
}

/* The subscriber after @sn, or NULL; even if @sn was unhooked meanwhile. */
static struct mmu_notifier *
mn_hlist_next(struct mmu_notifier_subscriptions *subs, struct mmu_notifier *sn)
{
	struct list_head *next =
		__atomic_load_n(&sn->_link.next, __ATOMIC_ACQUIRE);

	if (next == &subs->list)
		return NULL;
	return list_entry(next, struct mmu_notifier, _link);
}

static void mn_hlist_add_head(struct mmu_notifier_subscriptions *subs,
			      struct mmu_notifier *sn)
{
	struct list_head *head = &subs->list;
	struct list_head *first = head->next;

	lockdep_assert_held(&subs->lock);
	sn->_link.next = first;
	sn->_link.prev = head;
	first->prev = &sn->_link;
	__atomic_store_n(&head->next, &sn->_link, __ATOMIC_RELEASE);
}

/* Unhook @sn; walkers standing on it can still move on through ->next. */
static void mn_hlist_del(struct mmu_notifier_subscriptions *subs,
			 struct mmu_notifier *sn)
{
	struct list_head *prev = sn->_link.prev;
	struct list_head *next = sn->_link.next;

	lockdep_assert_held(&subs->lock);
	next->prev = prev;
	__atomic_store_n(&prev->next, next, __ATOMIC_RELEASE);
	sn->_link.prev = NULL;
}

static int
mn_hlist_invalidate_range_start(struct mmu_notifier_subscriptions *subs,
				const struct mmu_notifier_range *range)
{
	bool blockable = mmu_notifier_range_blockable(range);
	struct mmu_notifier *sn;
	int ret = 0;
	int idx;

	idx = mn_srcu_read_lock(subs);
	for (sn = mn_hlist_first(subs); sn; sn = mn_hlist_next(subs, sn)) {
		const struct mmu_notifier_ops *ops = sn->ops;
		int err;

		if (!ops->invalidate_range_start)
			continue;
		err = ops->invalidate_range_start(sn, range);
		if (!err)
			continue;
		HETMM_WARN_ON_ONCE(blockable || err != -EAGAIN);
		/* Nobody can tell it its start failed, so it has no end. */
		HETMM_WARN_ON_ONCE(ops->invalidate_range_end);
		ret = err;
	}
	if (ret) {
		/* Those whose start succeeded expect their end: give it now. */
		for (sn = mn_hlist_first(subs); sn;
		     sn = mn_hlist_next(subs, sn)) {
			if (sn->ops->invalidate_range_end)
				sn->ops->invalidate_range_end(sn, range);
		}
	}
	mn_srcu_read_unlock(subs, idx);
	return ret;
}

static void mn_hlist_invalidate_end(struct mmu_notifier_subscriptions *subs,
				    const struct mmu_notifier_range *range)
{
	struct mmu_notifier *sn;
	int idx;

	idx = mn_srcu_read_lock(subs);
	for (sn = mn_hlist_first(subs); sn; sn = mn_hlist_next(subs, sn)) {
		if (sn->ops->invalidate_range_end)
			sn->ops->invalidate_range_end(sn, range);
	}
	mn_srcu_read_unlock(subs, idx);
}

/* ->release for every classic subscriber, then unhook them all. */
static void mn_hlist_release(struct mmu_notifier_subscriptions *subs,
			     struct mm_struct *mm)
{
	struct mmu_notifier *sn;
	int idx;

	idx = mn_srcu_read_lock(subs);
	for (sn = mn_hlist_first(subs); sn; sn = mn_hlist_next(subs, sn)) {
		if (sn->ops->release)
			sn->ops->release(sn, mm);
	}
	spin_lock(&subs->lock);
	while (!list_empty(&subs->list))
		mn_hlist_del(subs, list_entry(subs->list.next,
					      struct mmu_notifier, _link));
	spin_unlock(&subs->lock);
	mn_srcu_read_unlock(subs, idx);
	/*
	 * A concurrent mmu_notifier_unregister() may be running ->release
	 * itself; do not let the teardown go on before it returned.
	 */
	mn_srcu_sync(subs);
}

/* ---------------------------------------------------------- write side */

/**
 * __mmu_notifier_invalidate_range_start - slow path of the start calls.
 * @range: the range; BLOCKABLE already set or cleared by the caller.
 *
 * Use mmu_notifier_invalidate_range_start() or its _nonblock variant.
 *
 * Context: the mm has subscription state. May sleep if @range is
 * blockable.
 * Return: 0, or -EAGAIN if a non-blockable start was refused (the
 * invalidation is then already ended).
 */
int __mmu_notifier_invalidate_range_start(struct mmu_notifier_range *range)
{
	struct mmu_notifier_subscriptions *subs = mn_subs(range->mm);
	int ret;

	mn_stat_inc(invalidations);
	if (READ_ONCE(subs->has_itree)) {
		ret = mn_itree_invalidate(subs, range);
		if (ret)
			goto out_fail;
	}
	if (!mn_hlist_empty(subs)) {
		ret = mn_hlist_invalidate_range_start(subs, range);
		if (ret)
			goto out_end_itree;
	}
	return 0;

out_end_itree:
	/* The caller will not call end: leave the interval side now. */
	if (range->flags & __MMU_NOTIFIER_RANGE_ITREE_ACTIVE) {
		range->flags &= ~__MMU_NOTIFIER_RANGE_ITREE_ACTIVE;
		mn_itree_inv_end(subs);
	}
out_fail:
	mn_stat_inc(nonblock_failures);
	return ret;
}

/**
 * __mmu_notifier_invalidate_range_end - slow path of the end call.
 * @range: the range given to a successful start.
 *
 * Context: the mm has subscription state. May sleep if classic
 * ->invalidate_range_end() does.
 */
void __mmu_notifier_invalidate_range_end(struct mmu_notifier_range *range)
{
	struct mmu_notifier_subscriptions *subs = mn_subs(range->mm);

	if (range->flags & __MMU_NOTIFIER_RANGE_ITREE_ACTIVE) {
		range->flags &= ~__MMU_NOTIFIER_RANGE_ITREE_ACTIVE;
		mn_itree_inv_end(subs);
	}
	if (!mn_hlist_empty(subs))
		mn_hlist_invalidate_end(subs, range);
}

/* ------------------------------------------------------- registration */

static struct mmu_notifier_subscriptions *mn_subs_alloc(void)
{
	struct mmu_notifier_subscriptions *subs = calloc(1, sizeof(*subs));

	if (!subs)
		return NULL;
	spin_lock_init(&subs->lock);
	subs->invalidate_seq = 2;
	subs->itree = RB_ROOT;
	INIT_LIST_HEAD(&subs->deferred_list);
	INIT_LIST_HEAD(&subs->list);
	pthread_mutex_init(&subs->srcu_sync_lock, NULL);
	pthread_mutex_init(&subs->wq_lock, NULL);
	pthread_cond_init(&subs->wq, NULL);
	return subs;
}

/**
 * __mmu_notifier_register - attach a classic notifier (or interval mode).
 * @subscription: the notifier, with ->ops set; NULL turns on interval mode.
 * @mm: the address space; the caller holds a user reference (mmget).
 *
 * Creates the mm's subscription state on first use. The notifier pins
 * the mm struct (mmgrab) until mmu_notifier_unregister().
 *
 * Context: mmap_lock held for write.
 * Return: 0; -EINVAL for a notifier without ops or an mm with no users
 * left; -ENOMEM if the state could not be allocated.
 */
int __mmu_notifier_register(struct mmu_notifier *subscription,
			    struct mm_struct *mm)
{
	struct mmu_notifier_subscriptions *subs;

	mmap_assert_write_locked(mm);
	if (subscription && !subscription->ops)
		return -EINVAL;
	if (HETMM_WARN_ON_ONCE(atomic_load(&mm->mm_users) <= 0))
		return -EINVAL;

	subs = mn_subs(mm);
	if (!subs) {
		subs = mn_subs_alloc();
		if (!subs)
			return -ENOMEM;
		/* Publish only a fully initialised state to lockless readers. */
		__atomic_store_n(&mm->notifier_subscriptions, subs,
				 __ATOMIC_RELEASE);
	}

	if (!subscription) {
		spin_lock(&subs->lock);
		WRITE_ONCE(subs->has_itree, true);
		spin_unlock(&subs->lock);
		return 0;
	}
	/* Pairs with the mmdrop() in mmu_notifier_unregister(). */
	mmgrab(mm);
	subscription->mm = mm;
	spin_lock(&subs->lock);
	mn_hlist_add_head(subs, subscription);
	spin_unlock(&subs->lock);
	return 0;
}

/**
 * mmu_notifier_register - attach a classic notifier to @mm.
 * @subscription: the notifier, with ->ops set.
 * @mm: the address space; the caller holds a user reference (mmget).
 *
 * Context: takes mmap_lock for write; the caller must hold neither it nor
 * any lock the callbacks take.
 * Return: as __mmu_notifier_register().
 */
int mmu_notifier_register(struct mmu_notifier *subscription,
			  struct mm_struct *mm)
{
	int ret;

	mmap_write_lock(mm);
	ret = __mmu_notifier_register(subscription, mm);
	mmap_write_unlock(mm);
	return ret;
}

/**
 * mmu_notifier_unregister - detach a classic notifier.
 * @subscription: a registered notifier.
 * @mm: its mm (a struct reference is enough; mm_users may be 0).
 *
 * Calls ->release unless mmu_notifier_release() already did, waits for
 * every callback of this notifier still running elsewhere, and drops the
 * mm pin (which may free the mm).
 *
 * Context: may sleep; not from a callback of the same mm.
 */
void mmu_notifier_unregister(struct mmu_notifier *subscription,
			     struct mm_struct *mm)
{
	struct mmu_notifier_subscriptions *subs = mn_subs(mm);
	bool hooked;

	HETMM_BUG_ON(atomic_load(&mm->mm_count) <= 0);
	HETMM_BUG_ON(!subs);

	spin_lock(&subs->lock);
	hooked = subscription->_link.prev != NULL;
	spin_unlock(&subs->lock);
	if (hooked) {
		int idx = mn_srcu_read_lock(subs);

		/* Release first, so mappings are gone before pages may be. */
		if (subscription->ops->release)
			subscription->ops->release(subscription, mm);
		mn_srcu_read_unlock(subs, idx);

		spin_lock(&subs->lock);
		/* mmu_notifier_release() may have unhooked it meanwhile. */
		if (subscription->_link.prev)
			mn_hlist_del(subs, subscription);
		spin_unlock(&subs->lock);
	}
	/* Also waits for a ->release run by mmu_notifier_release(). */
	mn_srcu_sync(subs);
	mmdrop(mm);
}

/* ---------------------------------------------------- interval notifiers */

static int
__mmu_interval_notifier_insert(struct mmu_interval_notifier *sub,
			       struct mm_struct *mm,
			       struct mmu_notifier_subscriptions *subs)
{
	/* Pairs with the mmdrop() in mmu_interval_notifier_remove(). */
	mmgrab(mm);

	/*
	 * While invalidations run we cannot know which ranges they cover, so
	 * the new interval is assumed to be hit: its seq equals the mm's
	 * odd seq, and its first read_begin sleeps until they all end. A
	 * frozen tree takes the node at the last end instead of now.
	 */
	spin_lock(&subs->lock);
	if (subs->active_invalidate_ranges) {
		if (mn_itree_is_invalidating(subs)) {
			list_add(&sub->deferred_item, &subs->deferred_list);
			mn_stat_inc(deferred_ops);
		} else {
			subs->invalidate_seq |= 1;
			mn_itree_link(subs, sub);
		}
		WRITE_ONCE(sub->invalidate_seq, subs->invalidate_seq);
	} else {
		HETMM_WARN_ON_ONCE(mn_itree_is_invalidating(subs));
		/* Odd, and far from anything the mm's seq reaches soon. */
		WRITE_ONCE(sub->invalidate_seq, subs->invalidate_seq - 1);
		mn_itree_link(subs, sub);
	}
	spin_unlock(&subs->lock);
	return 0;
}

/* Argument checks shared by both insert variants; fills in @sub. */
static int mn_interval_prepare(struct mmu_interval_notifier *sub,
			       struct mm_struct *mm, unsigned long start,
			       unsigned long length,
			       const struct mmu_interval_notifier_ops *ops)
{
	unsigned long last;

	if (!sub || !mm || !ops || !ops->invalidate)
		return -EINVAL;
	if (length == 0)
		return -EOVERFLOW;
	if (__builtin_add_overflow(start, length - 1, &last))
		return -EOVERFLOW;
	/* The caller must hold mmget(); a dead mm gets no new notifiers. */
	if (HETMM_WARN_ON_ONCE(atomic_load(&mm->mm_users) <= 0))
		return -EINVAL;

	sub->mm = mm;
	sub->ops = ops;
	RB_CLEAR_NODE(&sub->interval_tree.rb);
	sub->interval_tree.start = start;
	sub->interval_tree.last = last;
	INIT_LIST_HEAD(&sub->deferred_item);
	return 0;
}

/**
 * mmu_interval_notifier_insert - subscribe to [start, start + length - 1].
 * @sub: the subscription (caller's memory, valid until remove returns).
 * @mm: the address space; the caller holds a user reference (mmget).
 * @start: first address watched.
 * @length: bytes watched.
 * @ops: the callbacks; ->invalidate is required.
 *
 * On return the interval may not be in the tree yet (an invalidation was
 * running); the read_begin/read_retry protocol covers that window. The
 * subscription pins the mm struct (mmgrab) until removed.
 *
 * Context: may take mmap_lock for write (first interval of the mm), so
 * the caller must not hold it; see mmu_interval_notifier_insert_locked().
 * Return: 0; -EOVERFLOW if @length is 0 or the interval wraps; -EINVAL
 * for missing arguments or an mm without users; -ENOMEM if the mm's
 * state could not be allocated.
 */
int mmu_interval_notifier_insert(struct mmu_interval_notifier *sub,
				 struct mm_struct *mm, unsigned long start,
				 unsigned long length,
				 const struct mmu_interval_notifier_ops *ops)
{
	struct mmu_notifier_subscriptions *subs;
	int ret;

	ret = mn_interval_prepare(sub, mm, start, length, ops);
	if (ret)
		return ret;
	subs = mn_subs(mm);
	if (!subs || !READ_ONCE(subs->has_itree)) {
		mmap_write_lock(mm);
		ret = __mmu_notifier_register(NULL, mm);
		mmap_write_unlock(mm);
		if (ret)
			return ret;
		subs = mn_subs(mm);
	}
	return __mmu_interval_notifier_insert(sub, mm, subs);
}

/**
 * mmu_interval_notifier_insert_locked - insert with mmap_lock held.
 * @sub: the subscription.
 * @mm: the address space; the caller holds a user reference (mmget).
 * @start: first address watched.
 * @length: bytes watched.
 * @ops: the callbacks; ->invalidate is required.
 *
 * Context: mmap_lock held for write.
 * Return: as mmu_interval_notifier_insert().
 */
int mmu_interval_notifier_insert_locked(
	struct mmu_interval_notifier *sub, struct mm_struct *mm,
	unsigned long start, unsigned long length,
	const struct mmu_interval_notifier_ops *ops)
{
	struct mmu_notifier_subscriptions *subs;
	int ret;

	ret = mn_interval_prepare(sub, mm, start, length, ops);
	if (ret)
		return ret;
	mmap_assert_write_locked(mm);
	subs = mn_subs(mm);
	if (!subs || !READ_ONCE(subs->has_itree)) {
		ret = __mmu_notifier_register(NULL, mm);
		if (ret)
			return ret;
		subs = mn_subs(mm);
	}
	return __mmu_interval_notifier_insert(sub, mm, subs);
}

/**
 * mmu_interval_notifier_remove - end a subscription.
 * @sub: an inserted subscription.
 *
 * If invalidations are running with the tree frozen, a still-queued
 * insert is simply dropped; otherwise the removal is queued and the call
 * sleeps until they have all ended. On return no ->invalidate() of @sub
 * runs or will run, and @sub's memory may be reused. Drops the mm pin,
 * which may free the mm.
 *
 * Context: may sleep; never from a callback; the caller must not hold a
 * lock ->invalidate() takes.
 */
void mmu_interval_notifier_remove(struct mmu_interval_notifier *sub)
{
	struct mm_struct *mm = sub->mm;
	struct mmu_notifier_subscriptions *subs = mn_subs(mm);
	unsigned long seq = 0;
	bool wait = false;

	spin_lock(&subs->lock);
	if (mn_itree_is_invalidating(subs)) {
		if (RB_EMPTY_NODE(&sub->interval_tree.rb)) {
			/* Inserted while frozen and not yet applied: forget it. */
			HETMM_WARN_ON_ONCE(list_empty(&sub->deferred_item));
			list_del_init(&sub->deferred_item);
		} else {
			list_add(&sub->deferred_item, &subs->deferred_list);
			mn_stat_inc(deferred_ops);
			seq = subs->invalidate_seq;
			wait = true;
		}
	} else if (!HETMM_WARN_ON_ONCE(RB_EMPTY_NODE(&sub->interval_tree.rb))) {
		mn_itree_unlink(subs, sub);
	}
	spin_unlock(&subs->lock);

	if (wait) {
		mn_stat_inc(remove_sleeps);
		mn_wait_event(subs, mn_seq_released(subs, seq));
	}
	mmdrop(mm);
}

/**
 * mmu_interval_read_begin - start a collision-retry read of an interval.
 * @sub: the subscription.
 *
 * If an invalidation that already ran ->invalidate() on @sub is still in
 * progress, sleeps until every running invalidation has ended (so a
 * retry is not needed for it). Hand the result to mmu_interval_read_retry().
 *
 * Context: may sleep; must not hold the driver lock or any lock the
 * callbacks take.
 * Return: the sequence value to check against (odd).
 */
unsigned long mmu_interval_read_begin(struct mmu_interval_notifier *sub)
{
	struct mmu_notifier_subscriptions *subs = mn_subs(sub->mm);
	unsigned long seq;
	bool busy;

	/*
	 * Equal values mean this interval was hit by the invalidation that
	 * is running now. Any later hit changes sub's seq to a newer odd
	 * value, which read_retry sees; no barrier beyond the driver lock
	 * that orders set_seq and read_retry is needed.
	 */
	spin_lock(&subs->lock);
	seq = READ_ONCE(sub->invalidate_seq);
	busy = seq == subs->invalidate_seq;
	spin_unlock(&subs->lock);

	if (busy) {
		mn_stat_inc(read_begin_sleeps);
		mn_wait_event(subs, mn_seq_released(subs, seq));
	}
	return seq;
}

/* ------------------------------------------------------------ lifetime */

/**
 * mmu_notifier_release - the address space is being torn down.
 * @mm: the mm; its last user is gone (mm_users == 0).
 *
 * Every interval notifier gets one MMU_NOTIFY_RELEASE invalidation of
 * [0, ULONG_MAX) (blockable), then every classic notifier gets ->release
 * and is unhooked (mmu_notifier_unregister() still has to be called to
 * drop its mm pin). Intervals stay registered until removed.
 *
 * Context: may sleep; called once, from exit_mmap. Safe without state.
 */
void mmu_notifier_release(struct mm_struct *mm)
{
	struct mmu_notifier_subscriptions *subs = mn_subs(mm);

	if (!subs)
		return;
	if (READ_ONCE(subs->has_itree))
		mn_itree_release(subs, mm);
	if (!mn_hlist_empty(subs))
		mn_hlist_release(subs, mm);
}

/**
 * mmu_notifier_subscriptions_destroy - free the state of a dead mm.
 * @mm: the mm struct being freed (mm_count reached 0).
 *
 * Context: no notifier can be registered any more (each one pinned the
 * struct); safe when the mm never had state.
 */
void mmu_notifier_subscriptions_destroy(struct mm_struct *mm)
{
	struct mmu_notifier_subscriptions *subs = mn_subs(mm);

	if (!subs)
		return;
	HETMM_BUG_ON(!list_empty(&subs->list));
	HETMM_WARN_ON_ONCE(!RB_EMPTY_ROOT(&subs->itree));
	HETMM_WARN_ON_ONCE(!list_empty(&subs->deferred_list));
	HETMM_WARN_ON_ONCE(subs->active_invalidate_ranges);
	pthread_cond_destroy(&subs->wq);
	pthread_mutex_destroy(&subs->wq_lock);
	pthread_mutex_destroy(&subs->srcu_sync_lock);
	free(subs);
	__atomic_store_n(&mm->notifier_subscriptions, NULL, __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------- diagnostics */

struct mn_check_buf {
	char *buf;
	size_t len;
	size_t pos;
	int nr;
};

static __printf(2, 3) void mn_check_fail(struct mn_check_buf *cb,
					 const char *fmt, ...)
{
	va_list ap;
	int n;

	cb->nr++;
	if (!cb->buf || cb->pos + 1 >= cb->len)
		return;
	if (cb->pos) {
		cb->buf[cb->pos++] = '\n';
		cb->buf[cb->pos] = '\0';
		if (cb->pos + 1 >= cb->len)
			return;
	}
	va_start(ap, fmt);
	n = vsnprintf(cb->buf + cb->pos, cb->len - cb->pos, fmt, ap);
	va_end(ap);
	if (n > 0)
		cb->pos = min(cb->pos + (size_t)n, cb->len - 1);
}

static void mn_check_itree(struct mm_struct *mm,
			   struct mmu_notifier_subscriptions *subs,
			   struct mn_check_buf *cb)
{
	unsigned long n = 0;

	if (interval_tree_validate(&subs->itree))
		mn_check_fail(cb, "mmu_notifier: interval tree malformed");
	for (struct rb_node *rb = rb_first(&subs->itree); rb;
	     rb = rb_next(rb)) {
		struct mmu_interval_notifier *sub = rb_entry(
			rb, struct mmu_interval_notifier, interval_tree.rb);
		unsigned long seq = READ_ONCE(sub->invalidate_seq);

		n++;
		if (!(seq & 1))
			mn_check_fail(
				cb,
				"mmu_notifier: interval [%#lx, %#lx] has even seq %lu",
				sub->interval_tree.start,
				sub->interval_tree.last, seq);
		if (sub->mm != mm)
			mn_check_fail(
				cb,
				"mmu_notifier: interval [%#lx, %#lx] belongs to another mm",
				sub->interval_tree.start,
				sub->interval_tree.last);
		if (!sub->ops || !sub->ops->invalidate)
			mn_check_fail(
				cb,
				"mmu_notifier: interval [%#lx, %#lx] has no invalidate op",
				sub->interval_tree.start,
				sub->interval_tree.last);
	}
	if (n != subs->nr_intervals)
		mn_check_fail(
			cb, "mmu_notifier: %lu intervals in tree, %lu counted",
			n, subs->nr_intervals);
	if (!subs->has_itree && (n || !list_empty(&subs->deferred_list)))
		mn_check_fail(cb,
			      "mmu_notifier: intervals without interval mode");
}

static void mn_check_seq(struct mmu_notifier_subscriptions *subs,
			 struct mn_check_buf *cb)
{
	struct mmu_interval_notifier *sub;
	long active = subs->active_invalidate_ranges;
	unsigned long seq = subs->invalidate_seq;

	if (active < 0)
		mn_check_fail(cb, "mmu_notifier: %ld active invalidations",
			      active);
	if (active == 0 && (seq & 1))
		mn_check_fail(cb, "mmu_notifier: idle mm with odd seq %lu",
			      seq);
	if (active == 0 && !list_empty(&subs->deferred_list))
		mn_check_fail(cb,
			      "mmu_notifier: deferred items left while idle");
	list_for_each_entry(sub, &subs->deferred_list, deferred_item) {
		unsigned long s = READ_ONCE(sub->invalidate_seq);

		if (RB_EMPTY_NODE(&sub->interval_tree.rb) && !(s & 1))
			mn_check_fail(
				cb,
				"mmu_notifier: pending interval [%#lx, %#lx] has even seq %lu",
				sub->interval_tree.start,
				sub->interval_tree.last, s);
	}
}

static void mn_check_hlist(struct mm_struct *mm,
			   struct mmu_notifier_subscriptions *subs,
			   struct mn_check_buf *cb)
{
	struct list_head *pos;

	if (subs->srcu_readers[0] < 0 || subs->srcu_readers[1] < 0)
		mn_check_fail(cb,
			      "mmu_notifier: negative classic reader count");
	for (pos = subs->list.next; pos != &subs->list; pos = pos->next) {
		struct mmu_notifier *sn =
			list_entry(pos, struct mmu_notifier, _link);

		if (pos->next->prev != pos || !pos->prev) {
			mn_check_fail(cb, "mmu_notifier: classic list corrupt");
			break;
		}
		if (sn->mm != mm || !sn->ops)
			mn_check_fail(
				cb,
				"mmu_notifier: classic notifier %p has mm %p, ops %p",
				(void *)sn, (void *)sn->mm,
				(const void *)sn->ops);
	}
}

/**
 * mmu_notifier_check - validate the notifier state of @mm.
 * @mm: the address space.
 * @buf: receives one line per broken invariant (may be NULL).
 * @len: size of @buf.
 *
 * Checks the sequence rules (idle means even seq, no deferred work, no
 * negative count), every interval's seq parity and owner, the interval
 * tree's shape and count, and the classic list's links.
 *
 * Context: takes the subscription lock; meaningful when the caller knows
 * no invalidation is half-way through a state change (any quiescent point
 * or mid-invalidation both pass when healthy).
 * Return: 0 if healthy (or no state), -EUCLEAN otherwise.
 */
int mmu_notifier_check(struct mm_struct *mm, char *buf, size_t len)
{
	struct mn_check_buf cb = { .buf = buf, .len = len };
	struct mmu_notifier_subscriptions *subs = mn_subs(mm);

	if (buf && len)
		buf[0] = '\0';
	if (!subs)
		return 0;
	spin_lock(&subs->lock);
	mn_check_seq(subs, &cb);
	mn_check_itree(mm, subs, &cb);
	mn_check_hlist(mm, subs, &cb);
	spin_unlock(&subs->lock);
	return cb.nr ? -EUCLEAN : 0;
}
