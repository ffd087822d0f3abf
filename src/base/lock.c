// SPDX-License-Identifier: MIT
/*
 * lock.c - slow paths of spinlock, mutex and rwsem.
 *
 * Locking and invariants:
 *   - A spinlock's owner (debug builds) is set after the lock is won and
 *     cleared before it is released, so owner != 0 implies locked.
 *   - An rwsem's writer field names the writing thread while it holds the
 *     lock; readers is the number of read holders. Both are debug-only and
 *     only feed assertions.
 *   - The rwsem prefers writers, so a steady stream of readers (CPU faults)
 *     cannot starve munmap or fork.
 *   - percpu_rw_semaphore: a reader is inside iff its slot increment is
 *     visible while wflag is 0. Reader (increment slot, then read wflag)
 *     and writer (set wflag, then read every slot) use sequentially
 *     consistent operations, so at least one sees the other: a writer owns
 *     the lock only once all slots are 0 with wflag set; a reader that sees
 *     wflag set undoes its increment and waits on rw. Writers serialise on
 *     rw (held for write while wflag is up), so they too prefer themselves
 *     over new readers and cannot be starved.
 */
#include <sched.h>

#include <hetmm/lock.h>

void __spin_lock_slow(spinlock_t *l)
{
	for (;;) {
		while (atomic_load_explicit(&l->locked, memory_order_relaxed))
			cpu_relax();
		if (!atomic_exchange_explicit(&l->locked, 1,
					      memory_order_acquire))
			return;
	}
}

void mutex_init(struct mutex *m)
{
	pthread_mutex_init(&m->m, NULL);
#if HETMM_DEBUG >= 1
	atomic_init(&m->owner, 0);
#endif
}

void mutex_destroy(struct mutex *m)
{
	pthread_mutex_destroy(&m->m);
}

void mutex_lock(struct mutex *m)
{
#if HETMM_DEBUG >= 1
	HETMM_BUG_ON(atomic_load_explicit(&m->owner, memory_order_relaxed) ==
		     hetmm_thread_id());
#endif
	pthread_mutex_lock(&m->m);
#if HETMM_DEBUG >= 1
	atomic_store_explicit(&m->owner, hetmm_thread_id(),
			      memory_order_relaxed);
#endif
}

bool mutex_trylock(struct mutex *m)
{
	if (pthread_mutex_trylock(&m->m))
		return false;
#if HETMM_DEBUG >= 1
	atomic_store_explicit(&m->owner, hetmm_thread_id(),
			      memory_order_relaxed);
#endif
	return true;
}

void mutex_unlock(struct mutex *m)
{
#if HETMM_DEBUG >= 1
	HETMM_BUG_ON(atomic_load_explicit(&m->owner, memory_order_relaxed) !=
		     hetmm_thread_id());
	atomic_store_explicit(&m->owner, 0, memory_order_relaxed);
#endif
	pthread_mutex_unlock(&m->m);
}

void init_rwsem(struct rw_semaphore *s)
{
	pthread_rwlockattr_t attr;

	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(
		&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->rw, &attr);
	pthread_rwlockattr_destroy(&attr);
#if HETMM_DEBUG >= 1
	atomic_init(&s->writer, 0);
	atomic_init(&s->readers, 0);
#endif
}

void rwsem_destroy(struct rw_semaphore *s)
{
	pthread_rwlock_destroy(&s->rw);
}

void down_read(struct rw_semaphore *s)
{
#if HETMM_DEBUG >= 1
	HETMM_BUG_ON(atomic_load_explicit(&s->writer, memory_order_relaxed) ==
		     hetmm_thread_id());
#endif
	pthread_rwlock_rdlock(&s->rw);
#if HETMM_DEBUG >= 1
	atomic_fetch_add_explicit(&s->readers, 1, memory_order_relaxed);
#endif
}

bool down_read_trylock(struct rw_semaphore *s)
{
	if (pthread_rwlock_tryrdlock(&s->rw))
		return false;
#if HETMM_DEBUG >= 1
	atomic_fetch_add_explicit(&s->readers, 1, memory_order_relaxed);
#endif
	return true;
}

void up_read(struct rw_semaphore *s)
{
#if HETMM_DEBUG >= 1
	HETMM_BUG_ON(atomic_fetch_sub_explicit(&s->readers, 1,
					       memory_order_relaxed) <= 0);
#endif
	pthread_rwlock_unlock(&s->rw);
}

void down_write(struct rw_semaphore *s)
{
#if HETMM_DEBUG >= 1
	HETMM_BUG_ON(atomic_load_explicit(&s->writer, memory_order_relaxed) ==
		     hetmm_thread_id());
#endif
	pthread_rwlock_wrlock(&s->rw);
#if HETMM_DEBUG >= 1
	atomic_store_explicit(&s->writer, hetmm_thread_id(),
			      memory_order_relaxed);
#endif
}

bool down_write_trylock(struct rw_semaphore *s)
{
	if (pthread_rwlock_trywrlock(&s->rw))
		return false;
#if HETMM_DEBUG >= 1
	atomic_store_explicit(&s->writer, hetmm_thread_id(),
			      memory_order_relaxed);
#endif
	return true;
}

void up_write(struct rw_semaphore *s)
{
#if HETMM_DEBUG >= 1
	HETMM_BUG_ON(atomic_load_explicit(&s->writer, memory_order_relaxed) !=
		     hetmm_thread_id());
	atomic_store_explicit(&s->writer, 0, memory_order_relaxed);
#endif
	pthread_rwlock_unlock(&s->rw);
}

/* ------------------------------------------------- reader-biased rwsem */

static atomic_uint pcpu_next_slot;
static __hetmm_tls int pcpu_slot = -1;

static inline int my_slot(void)
{
	if (unlikely(pcpu_slot < 0))
		pcpu_slot = (int)(atomic_fetch_add(&pcpu_next_slot, 1) %
				  PCPU_RWSEM_SLOTS);
	return pcpu_slot;
}

void percpu_init_rwsem(struct percpu_rw_semaphore *s)
{
	for (int i = 0; i < PCPU_RWSEM_SLOTS; i++)
		atomic_init(&s->slot[i].n, 0);
	atomic_init(&s->wflag, 0);
	pthread_rwlock_init(&s->rw, NULL);
#if HETMM_DEBUG >= 1
	atomic_init(&s->writer, 0);
	atomic_init(&s->readers, 0);
#endif
}

void percpu_free_rwsem(struct percpu_rw_semaphore *s)
{
	pthread_rwlock_destroy(&s->rw);
}

static bool pcpu_read_enter(struct percpu_rw_semaphore *s, int i)
{
	atomic_fetch_add_explicit(&s->slot[i].n, 1, memory_order_seq_cst);
	if (likely(!atomic_load_explicit(&s->wflag, memory_order_seq_cst)))
		return true;
	atomic_fetch_sub_explicit(&s->slot[i].n, 1, memory_order_release);
	return false;
}

void percpu_down_read(struct percpu_rw_semaphore *s)
{
	int i = my_slot();

#if HETMM_DEBUG >= 1
	HETMM_BUG_ON(atomic_load_explicit(&s->writer, memory_order_relaxed) ==
		     hetmm_thread_id());
#endif
	while (!pcpu_read_enter(s, i)) {
		/* Sleep until the writer lets go of rw. */
		pthread_rwlock_rdlock(&s->rw);
		pthread_rwlock_unlock(&s->rw);
	}
#if HETMM_DEBUG >= 1
	atomic_fetch_add_explicit(&s->readers, 1, memory_order_relaxed);
#endif
}

bool percpu_down_read_trylock(struct percpu_rw_semaphore *s)
{
	if (!pcpu_read_enter(s, my_slot()))
		return false;
#if HETMM_DEBUG >= 1
	atomic_fetch_add_explicit(&s->readers, 1, memory_order_relaxed);
#endif
	return true;
}

void percpu_up_read(struct percpu_rw_semaphore *s)
{
#if HETMM_DEBUG >= 1
	HETMM_BUG_ON(atomic_fetch_sub_explicit(&s->readers, 1,
					       memory_order_relaxed) <= 0);
#endif
	atomic_fetch_sub_explicit(&s->slot[my_slot()].n, 1,
				  memory_order_release);
}

static long pcpu_readers(struct percpu_rw_semaphore *s)
{
	long sum = 0;

	for (int i = 0; i < PCPU_RWSEM_SLOTS; i++)
		sum += atomic_load_explicit(&s->slot[i].n, memory_order_seq_cst);
	return sum;
}

void percpu_down_write(struct percpu_rw_semaphore *s)
{
#if HETMM_DEBUG >= 1
	HETMM_BUG_ON(atomic_load_explicit(&s->writer, memory_order_relaxed) ==
		     hetmm_thread_id());
#endif
	pthread_rwlock_wrlock(&s->rw);
	atomic_store_explicit(&s->wflag, 1, memory_order_seq_cst);
	for (unsigned int spins = 0; pcpu_readers(s); spins++) {
		if (spins < 64)
			cpu_relax();
		else
			sched_yield();
	}
#if HETMM_DEBUG >= 1
	atomic_store_explicit(&s->writer, hetmm_thread_id(),
			      memory_order_relaxed);
#endif
}

void percpu_up_write(struct percpu_rw_semaphore *s)
{
#if HETMM_DEBUG >= 1
	HETMM_BUG_ON(atomic_load_explicit(&s->writer, memory_order_relaxed) !=
		     hetmm_thread_id());
	atomic_store_explicit(&s->writer, 0, memory_order_relaxed);
#endif
	atomic_store_explicit(&s->wflag, 0, memory_order_release);
	pthread_rwlock_unlock(&s->rw);
}
