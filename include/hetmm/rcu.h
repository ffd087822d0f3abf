/* SPDX-License-Identifier: MIT */
/*
 * hetmm/rcu.h - RCU with the kernel's spelling, backed by liburcu.
 *
 * We use liburcu's "memb" flavour (membarrier-based, no signals, readers
 * must be registered). Registration is automatic: the first
 * rcu_read_lock() of a thread registers it, and the thread is unregistered
 * when it exits. Objects that lock-free readers walk (page-table pages,
 * radix-index nodes) embed a struct rcu_head and are freed with call_rcu().
 *
 * Context: rcu_read_lock() nests and never sleeps. synchronize_rcu() and
 * rcu_barrier() must not be called inside a read-side section.
 */
#ifndef HETMM_RCU_H
#define HETMM_RCU_H

/*
 * Normal builds inline liburcu's read-side fast paths (_LGPL_SOURCE).
 * ThreadSanitizer builds call the out-of-line versions instead: the inline
 * ones use volatile accesses TSan would report, while the library itself is
 * not instrumented, so TSan treats its internals as opaque.
 */
#if defined(__SANITIZE_THREAD__)
#define HETMM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HETMM_TSAN 1
#endif
#endif
#if !defined(HETMM_TSAN) && !defined(_LGPL_SOURCE)
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-memb.h>
#include <urcu/pointer.h>
#include <urcu/call-rcu.h>

#include "compiler.h"

extern __hetmm_tls bool __hetmm_rcu_registered;
void __hetmm_rcu_register_slow(void);

static inline void hetmm_rcu_ensure_registered(void)
{
	if (unlikely(!__hetmm_rcu_registered))
		__hetmm_rcu_register_slow();
}

/*
 * Publication and dereference are plain C11 atomics (release store, acquire
 * load: a normal load on x86), so both the compiler and TSan see the
 * ordering.
 */
#undef rcu_dereference
#undef rcu_assign_pointer
#undef rcu_xchg_pointer
#undef rcu_cmpxchg_pointer
#define rcu_dereference(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define rcu_assign_pointer(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
#define rcu_xchg_pointer(pp, v) __atomic_exchange_n((pp), (v), __ATOMIC_ACQ_REL)

#undef rcu_read_lock
#undef rcu_read_unlock
#undef synchronize_rcu
#undef call_rcu
#undef rcu_barrier

static inline void rcu_read_lock(void)
{
	hetmm_rcu_ensure_registered();
	urcu_memb_read_lock();
}

static inline void rcu_read_unlock(void)
{
	urcu_memb_read_unlock();
}

static inline void synchronize_rcu(void)
{
	hetmm_rcu_ensure_registered();
	urcu_memb_synchronize_rcu();
}

/* Run @func(@head) after a grace period. */
static inline void call_rcu(struct rcu_head *head,
			    void (*func)(struct rcu_head *head))
{
	hetmm_rcu_ensure_registered();
	urcu_memb_call_rcu(head, func);
}

/* Wait until every call_rcu() callback queued so far has run. */
static inline void rcu_barrier(void)
{
	hetmm_rcu_ensure_registered();
	urcu_memb_barrier();
}

#endif /* HETMM_RCU_H */
