/* SPDX-License-Identifier: MIT */
/*
 * hetmm/compiler.h - compiler helpers shared by every layer.
 *
 * Map: likely/unlikely branch hints, READ_ONCE/WRITE_ONCE (relaxed atomic
 * accesses on plain objects), container_of, array and alignment helpers,
 * and the graded assertions HETMM_BUG_ON / HETMM_WARN_ON_ONCE.
 *
 * HETMM_DEBUG selects the checking level: 0 = release (assertions compile
 * to nothing but still consume their expression), 1 = debug (cheap checks,
 * lock owner tracking), 2 and 3 = costlier validation.
 */
#ifndef HETMM_COMPILER_H
#define HETMM_COMPILER_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef HETMM_DEBUG
#define HETMM_DEBUG 0
#endif

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define __maybe_unused __attribute__((unused))
#define __noinline __attribute__((noinline))
#define __cold __attribute__((cold))
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
/* Start loading the line at @x to write it (never faults). */
#define prefetchw(x) __builtin_prefetch((x), 1)
#define __printf(a, b) __attribute__((format(printf, a, b)))
#define __must_check __attribute__((warn_unused_result))
/*
 * Thread-local variables of the library. initial-exec keeps each access a
 * single %fs-relative load even in -fPIC objects (the library is never
 * dlopen()ed after start-up, which is that model's one requirement).
 */
#define __hetmm_tls _Thread_local __attribute__((tls_model("initial-exec")))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define ALIGN(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define IS_ALIGNED(x, a) (((x) & ((__typeof__(x))(a) - 1)) == 0)
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define min(a, b) ((a) < (b) ? (a) : (b))
#define max(a, b) ((a) > (b) ? (a) : (b))
#define BIT(n) (1UL << (n))

/* Relaxed single-copy-atomic accesses to plain shared objects. */
#define READ_ONCE(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define smp_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define smp_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

/* Consume an expression without evaluating it (the sizeof trick). */
#define __hetmm_unused_expr(x) ((void)sizeof(!!(x)))

__cold void hetmm_bug(const char *file, int line, const char *func,
		      const char *expr) __attribute__((noreturn));
__cold void hetmm_warn(const char *file, int line, const char *func,
		       const char *expr);

/* Fatal invariant: always checked, aborts with the failing expression. */
#define HETMM_BUG_ON(cond)                                                  \
	do {                                                                \
		if (unlikely(cond))                                         \
			hetmm_bug(__FILE__, __LINE__, __func__, #cond);     \
	} while (0)

/* Survivable oddity: reported once per call site, evaluates to cond. */
#define HETMM_WARN_ON_ONCE(cond)                                            \
	({                                                                  \
		static bool __warned;                                       \
		bool __c = !!(cond);                                        \
		if (unlikely(__c) && !READ_ONCE(__warned)) {                \
			WRITE_ONCE(__warned, true);                         \
			hetmm_warn(__FILE__, __LINE__, __func__, #cond);    \
		}                                                           \
		__c;                                                        \
	})

/* Debug-only assertion (HETMM_DEBUG >= 1); free in release builds. */
#if HETMM_DEBUG >= 1
#define HETMM_DEBUG_BUG_ON(cond) HETMM_BUG_ON(cond)
#else
#define HETMM_DEBUG_BUG_ON(cond) __hetmm_unused_expr(cond)
#endif

/*
 * ALWAYS/NEVER wrap defensive conditions that are believed impossible:
 * in debug builds they assert, in release builds they pass the value on.
 */
#if HETMM_DEBUG >= 1
#define ALWAYS(x) ({ bool __a = !!(x); HETMM_BUG_ON(!__a); __a; })
#define NEVER(x) ({ bool __n = !!(x); HETMM_BUG_ON(__n); __n; })
#else
#define ALWAYS(x) (!!(x))
#define NEVER(x) (!!(x))
#endif

#endif /* HETMM_COMPILER_H */
