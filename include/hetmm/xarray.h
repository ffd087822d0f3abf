/* SPDX-License-Identifier: MIT */
/*
 * hetmm/xarray.h - a sparse radix index from unsigned long to pointer.
 *
 * Map:
 *   struct xarray   the index: a spinlock, the root node, a node count and
 *                   an optional allocation-failure hook
 *   struct xa_node  private (xarray.c): 64 slots, 3 mark bitmaps, parent
 *                   link; leaves (shift 0) hold entries, other nodes hold
 *                   child nodes
 *   xa_mark_t       XA_MARK_0..2 select a mark; XA_PRESENT means "any
 *                   entry" in searches
 *
 * Entries: any void * whose two low bits are 00 (a 4-byte aligned
 * pointer), or a value entry made with xa_mk_value() (bit 0 set). NULL
 * means "absent", so storing NULL erases. Entries whose low bits are 10
 * are reserved and rejected with -EINVAL.
 *
 * The tree grows a level (6 index bits) at a time when an index beyond
 * its reach is stored, and shrinks again when the root only has slot 0 in
 * use; empty nodes are removed at once. Nodes are freed with call_rcu(),
 * so xa_load(), xa_get_mark() and xa_find() run without xa_lock.
 *
 * Error convention (differs from the kernel, which encodes errors in the
 * returned entry): functions that only succeed or fail return 0 or a
 * negative errno; functions that return the previous entry take an
 * "int *err" out-parameter (may be NULL) that receives 0 or the errno.
 *
 * Context: the writer functions take xa_lock themselves; the __xa_*
 * variants expect the caller to hold it (xa_lock()/xa_unlock()). Readers
 * need no lock. See each function's Context: line.
 */
#ifndef HETMM_XARRAY_H
#define HETMM_XARRAY_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "lock.h"

/* Mark numbers; XA_PRESENT asks a search for any entry. */
typedef unsigned int xa_mark_t;
#define XA_MARK_0 ((xa_mark_t)0U)
#define XA_MARK_1 ((xa_mark_t)1U)
#define XA_MARK_2 ((xa_mark_t)2U)
#define XA_MAX_MARKS 3
#define XA_PRESENT ((xa_mark_t)8U)

/* Node geometry: 6 index bits per level, 64 slots per node. */
#define XA_CHUNK_SHIFT 6
#define XA_CHUNK_SIZE (1U << XA_CHUNK_SHIFT)
#define XA_CHUNK_MASK (XA_CHUNK_SIZE - 1)

/* Flags for xa_init_flags(); none are defined yet, pass 0. */
#define XA_FLAGS_MASK 0U

struct xa_node;

/**
 * struct xarray - a sparse index.
 * @xa_lock: serialises all writers (stores, erases, marks, destroy).
 * @xa_flags: XA_FLAGS_* given to xa_init_flags(); constant afterwards.
 * @_head: private; the root node or NULL, published with release
 *	stores so lock-free readers can follow it. Protected by @xa_lock.
 * @_nr_nodes: private; nodes currently in the tree, read it with
 *	xa_nr_nodes(). Protected by @xa_lock.
 * @xa_fail_alloc: optional fault-injection hook, called with
 *	@xa_fail_arg (and @xa_lock held) before every node allocation; if
 *	it returns true that allocation fails and the operation returns
 *	-ENOMEM with the array unchanged. Set it before use, or under
 *	@xa_lock.
 * @xa_fail_arg: argument for @xa_fail_alloc.
 */
struct xarray {
	spinlock_t xa_lock;
	unsigned int xa_flags;
	struct xa_node *_head;
	size_t _nr_nodes;
	bool (*xa_fail_alloc)(void *arg);
	void *xa_fail_arg;
};

#define xa_lock(xa) spin_lock(&(xa)->xa_lock)
#define xa_unlock(xa) spin_unlock(&(xa)->xa_lock)

/* ------------------------------------------------------- value entries */

/**
 * xa_mk_value - encode an integer as an entry.
 * @v: the value, 0 <= @v <= LONG_MAX.
 *
 * Return: an entry that xa_is_value() recognises (never NULL).
 */
static inline void *xa_mk_value(unsigned long v)
{
	HETMM_DEBUG_BUG_ON(v > (unsigned long)LONG_MAX);
	return (void *)((v << 1) | 1);
}

/* The integer stored in a value entry. */
static inline unsigned long xa_to_value(const void *entry)
{
	return (uintptr_t)entry >> 1;
}

/* True if @entry was made by xa_mk_value(). */
static inline bool xa_is_value(const void *entry)
{
	return (uintptr_t)entry & 1;
}

/* --------------------------------------------------------------- setup */

void xa_init_flags(struct xarray *xa, unsigned int flags);

/* Initialise an empty xarray with no flags. */
static inline void xa_init(struct xarray *xa)
{
	xa_init_flags(xa, 0);
}

void xa_destroy(struct xarray *xa);

/* True if @xa holds no entries. Context: any; a snapshot without xa_lock. */
static inline bool xa_empty(const struct xarray *xa)
{
	return __atomic_load_n(&xa->_head, __ATOMIC_RELAXED) == NULL;
}

/* ----------------------------------------------------- lock-free reads */

void *xa_load(const struct xarray *xa, unsigned long index);
bool xa_get_mark(const struct xarray *xa, unsigned long index, xa_mark_t mark);
void *xa_find(const struct xarray *xa, unsigned long *index,
	      unsigned long max, xa_mark_t filter);
void *xa_find_after(const struct xarray *xa, unsigned long *index,
		    unsigned long max, xa_mark_t filter);

/* ------------------------------------------------ writers taking the lock */

int xa_store(struct xarray *xa, unsigned long index, void *entry);
void *xa_store_old(struct xarray *xa, unsigned long index, void *entry,
		   int *err);
void *xa_erase(struct xarray *xa, unsigned long index);
int xa_insert(struct xarray *xa, unsigned long index, void *entry);
void *xa_cmpxchg(struct xarray *xa, unsigned long index, void *old,
		 void *entry, int *err);
unsigned long xa_erase_range(struct xarray *xa, unsigned long first,
			     unsigned long last);
void xa_set_mark(struct xarray *xa, unsigned long index, xa_mark_t mark);
void xa_clear_mark(struct xarray *xa, unsigned long index, xa_mark_t mark);

/* --------------------------------------- writers for callers holding it */

int __xa_store(struct xarray *xa, unsigned long index, void *entry);
void *__xa_store_old(struct xarray *xa, unsigned long index, void *entry,
		     int *err);
void *__xa_erase(struct xarray *xa, unsigned long index);
int __xa_insert(struct xarray *xa, unsigned long index, void *entry);
void *__xa_cmpxchg(struct xarray *xa, unsigned long index, void *old,
		   void *entry, int *err);
unsigned long __xa_erase_range(struct xarray *xa, unsigned long first,
			       unsigned long last);
void __xa_set_mark(struct xarray *xa, unsigned long index, xa_mark_t mark);
void __xa_clear_mark(struct xarray *xa, unsigned long index, xa_mark_t mark);

/* ------------------------------------------------------- checks, stats */

size_t xa_nr_nodes(const struct xarray *xa);
long xa_live_nodes_total(void);
int xa_validate(const struct xarray *xa);

/* ----------------------------------------------------------- iteration */

/*
 * Iterators. Each step is an xa_find_after() from the last index, so the
 * body may store and erase (with xa_lock not held by the loop) and the
 * walk just continues after @index. Without a lock or rcu_read_lock the
 * caller must keep the entries alive by other means.
 */
#define xa_for_each_range(xa, index, entry, start, last)                   \
	for ((index) = (start),                                             \
	    (entry) = xa_find((xa), &(index), (last), XA_PRESENT);          \
	     (entry);                                                       \
	     (entry) = xa_find_after((xa), &(index), (last), XA_PRESENT))

#define xa_for_each(xa, index, entry) \
	xa_for_each_range(xa, index, entry, 0, ULONG_MAX)

#define xa_for_each_marked(xa, index, entry, mark)                         \
	for ((index) = 0, (entry) = xa_find((xa), &(index), ULONG_MAX, (mark)); \
	     (entry);                                                       \
	     (entry) = xa_find_after((xa), &(index), ULONG_MAX, (mark)))

#endif /* HETMM_XARRAY_H */
