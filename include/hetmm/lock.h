/* SPDX-License-Identifier: MIT */
/*
 * hetmm/lock.h - sleeping and spinning locks with the kernel's names.
 *
 * Map:
 *   spinlock_t           test-and-set lock with a pause loop; short sections only
 *   struct mutex         pthread mutex; may sleep
 *   struct rw_semaphore  pthread rwlock (writer-preferring); may sleep
 *   seqcount_t           sequence counter for lock-free readers that retry
 *
 * Owner tracking: with HETMM_DEBUG >= 1 every lock records the thread
 * that holds it (writers only for rwsems, plus a reader count), so
 * lockdep_assert_held() and friends can check a function's locking
 * contract at its top. In release builds the assertions cost nothing.
 *
 * Thread identity: hetmm_thread_id() is a small positive integer unique to
 * the calling thread for the process lifetime; 0 means "nobody".
 */
#ifndef HETMM_LOCK_H
#define HETMM_LOCK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "compiler.h"

unsigned int __hetmm_thread_id_slow(void);
extern __hetmm_tls unsigned int __hetmm_tid;

/* Small unique id of the calling thread (never 0). */
static inline unsigned int hetmm_thread_id(void)
{
	if (likely(__hetmm_tid))
		return __hetmm_tid;
	return __hetmm_thread_id_slow();
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
#endif
}

/* ---------------------------------------------------------------- spin */

typedef struct {
	atomic_int locked;
#if HETMM_DEBUG >= 1
	atomic_uint owner;
#endif
} spinlock_t;

#define __SPIN_LOCK_UNLOCKED { 0 }

static inline void spin_lock_init(spinlock_t *l)
{
	atomic_init(&l->locked, 0);
#if HETMM_DEBUG >= 1
	atomic_init(&l->owner, 0);
#endif
}

void __spin_lock_slow(spinlock_t *l);

static inline void spin_lock(spinlock_t *l)
{
	if (unlikely(atomic_exchange_explicit(&l->locked, 1,
					      memory_order_acquire)))
		__spin_lock_slow(l);
#if HETMM_DEBUG >= 1
	atomic_store_explicit(&l->owner, hetmm_thread_id(),
			      memory_order_relaxed);
#endif
}

static inline bool spin_trylock(spinlock_t *l)
{
	if (atomic_load_explicit(&l->locked, memory_order_relaxed) ||
	    atomic_exchange_explicit(&l->locked, 1, memory_order_acquire))
		return false;
#if HETMM_DEBUG >= 1
	atomic_store_explicit(&l->owner, hetmm_thread_id(),
			      memory_order_relaxed);
#endif
	return true;
}

static inline void spin_unlock(spinlock_t *l)
{
#if HETMM_DEBUG >= 1
	HETMM_BUG_ON(atomic_load_explicit(&l->owner, memory_order_relaxed) !=
		     hetmm_thread_id());
	atomic_store_explicit(&l->owner, 0, memory_order_relaxed);
#endif
	atomic_store_explicit(&l->locked, 0, memory_order_release);
}

static inline bool spin_is_locked(spinlock_t *l)
{
	return atomic_load_explicit(&l->locked, memory_order_relaxed);
}

/* --------------------------------------------------------------- mutex */

struct mutex {
	pthread_mutex_t m;
#if HETMM_DEBUG >= 1
	atomic_uint owner;
#endif
};

void mutex_init(struct mutex *m);
void mutex_destroy(struct mutex *m);
void mutex_lock(struct mutex *m);
bool mutex_trylock(struct mutex *m);
void mutex_unlock(struct mutex *m);

/* ---------------------------------------------------------------- rwsem */

struct rw_semaphore {
	pthread_rwlock_t rw;
#if HETMM_DEBUG >= 1
	atomic_uint writer;  /* thread id of the writer, 0 if none */
	atomic_int readers;  /* number of read holders */
#endif
};

void init_rwsem(struct rw_semaphore *s);
void rwsem_destroy(struct rw_semaphore *s);
void down_read(struct rw_semaphore *s);
bool down_read_trylock(struct rw_semaphore *s);
void up_read(struct rw_semaphore *s);
void down_write(struct rw_semaphore *s);
bool down_write_trylock(struct rw_semaphore *s);
void up_write(struct rw_semaphore *s);

/* ------------------------------------------------- reader-biased rwsem */

/*
 * struct percpu_rw_semaphore - an rwsem whose readers touch only their
 * own slot (one cache line per slot, threads spread over the slots), so
 * concurrent readers -- CPU faults and TLB misses of many threads in one
 * address space -- do not bounce a shared counter. Writers pay instead:
 * they raise @wflag and wait until every slot drains. Readers that meet a
 * raised flag back off and sleep on @rw, which the writer holds for write.
 * Same owner-tracking fields as struct rw_semaphore in debug builds, so the
 * rwsem assertions work on it. (The kernel's percpu_rw_semaphore; the mm
 * uses it for mmap_lock where the kernel has per-VMA locks.)
 */
#define PCPU_RWSEM_SLOTS 32

struct percpu_rw_semaphore {
	/*
	 * One cache line each when the semaphore starts on a 64-byte
	 * boundary: make it the first member of a 64-byte aligned object
	 * (mm_struct is allocated so). Not an alignment attribute: objects
	 * embedding it sit on lists whose heads are not so aligned, and
	 * list_for_each_entry's end test would then see a misaligned object.
	 */
	struct {
		atomic_long n;
		char pad[64 - sizeof(atomic_long)];
	} slot[PCPU_RWSEM_SLOTS];
	atomic_int wflag;
	pthread_rwlock_t rw;
#if HETMM_DEBUG >= 1
	atomic_uint writer;
	atomic_int readers;
#endif
};

void percpu_init_rwsem(struct percpu_rw_semaphore *s);
void percpu_free_rwsem(struct percpu_rw_semaphore *s);
void percpu_down_read(struct percpu_rw_semaphore *s);
bool percpu_down_read_trylock(struct percpu_rw_semaphore *s);
void percpu_up_read(struct percpu_rw_semaphore *s);
void percpu_down_write(struct percpu_rw_semaphore *s);
void percpu_up_write(struct percpu_rw_semaphore *s);

/* ------------------------------------------------------ owner assertions */

#if HETMM_DEBUG >= 1
#define lockdep_assert_held(l)                                          \
	HETMM_BUG_ON(atomic_load_explicit(&(l)->owner,                  \
					  memory_order_relaxed) !=      \
		     hetmm_thread_id())
#define rwsem_assert_held_write(s)                                      \
	HETMM_BUG_ON(atomic_load_explicit(&(s)->writer,                 \
					  memory_order_relaxed) !=      \
		     hetmm_thread_id())
/* Held for read by somebody, or for write by the caller. */
#define rwsem_assert_held(s)                                            \
	HETMM_BUG_ON(atomic_load_explicit(&(s)->readers,                \
					  memory_order_relaxed) <= 0 && \
		     atomic_load_explicit(&(s)->writer,                 \
					  memory_order_relaxed) !=      \
			     hetmm_thread_id())
#else
#define lockdep_assert_held(l) __hetmm_unused_expr(l)
#define rwsem_assert_held_write(s) __hetmm_unused_expr(s)
#define rwsem_assert_held(s) __hetmm_unused_expr(s)
#endif

/* ------------------------------------------------------------- seqcount */

typedef struct {
	atomic_uint sequence;
} seqcount_t;

static inline void seqcount_init(seqcount_t *s)
{
	atomic_init(&s->sequence, 0);
}

/* Wait for an even sequence and return it; pair with read_seqcount_retry. */
static inline unsigned int read_seqcount_begin(const seqcount_t *s)
{
	unsigned int seq;

	while ((seq = atomic_load_explicit((atomic_uint *)&s->sequence,
					   memory_order_acquire)) & 1)
		cpu_relax();
	return seq;
}

/*
 * True if a writer ran since @start: the reader must retry. The read-only
 * RMW with release order keeps the reader's data loads before it without a
 * standalone fence (which ThreadSanitizer cannot model).
 */
static inline bool read_seqcount_retry(const seqcount_t *s, unsigned int start)
{
	return atomic_fetch_add_explicit((atomic_uint *)&s->sequence, 0,
					 memory_order_release) != start;
}

/*
 * Writers are serialised by their own lock; the count goes odd. Acquire
 * order keeps the writer's data stores after the increment.
 */
static inline void write_seqcount_begin(seqcount_t *s)
{
	atomic_fetch_add_explicit(&s->sequence, 1, memory_order_acq_rel);
}

static inline void write_seqcount_end(seqcount_t *s)
{
	atomic_fetch_add_explicit(&s->sequence, 1, memory_order_release);
}

static inline unsigned int raw_read_seqcount(const seqcount_t *s)
{
	return atomic_load_explicit((atomic_uint *)&s->sequence,
				    memory_order_acquire);
}

#endif /* HETMM_LOCK_H */
