// SPDX-License-Identifier: MIT
/*
 * xarray.c - the sparse radix index.
 *
 * Locking and invariants
 *
 *   xa->xa_lock              serialises every change: _head, node slots,
 *                            counts, marks, parent/offset links, _nr_nodes
 *     (call_rcu frees)       nodes leave the tree under xa_lock and are
 *                            freed after a grace period
 *
 *   Readers (xa_load, xa_get_mark, xa_find) take only rcu_read_lock. They
 *   read _head and slots with acquire loads and marks with relaxed loads,
 *   and use only fields that never change after a node is published
 *   (shift); they never follow parent links. Writers publish a node with
 *   a release store after filling it in, and never modify a node after
 *   unlinking it, so a reader that wandered into a detached node sees a
 *   consistent older state.
 *
 *   Geometry: a node of shift s holds slots for index bits [s, s + 6);
 *   leaves have s = 0 and hold entries, other nodes hold children of
 *   shift s - 6. The root's shift is the smallest multiple of 6 that
 *   reaches the largest index stored (at most XA_MAX_SHIFT).
 *
 *   For every node n:
 *     n->count == number of non-NULL n->slots[], and n->count > 0
 *     child->parent == n, child->offset == its slot, child->shift == s - 6
 *     leaf:     bit i of n->marks[m] set  =>  slots[i] != NULL
 *     internal: bit i of n->marks[m] == (slots[i] && slots[i]->marks[m])
 *   For the root: shift == 0, or not (count == 1 and slots[0] != NULL)
 *   (otherwise it would have been shrunk).
 *   xa->_nr_nodes == nodes reachable from _head.
 *   xa_live_nodes == nodes allocated and not yet freed, all arrays.
 *
 *   A store that needs nodes allocates all of them before touching the
 *   tree, so -ENOMEM leaves the array exactly as it was.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <hetmm/rcu.h>
#include <hetmm/xarray.h>

#define XA_BITS_PER_LONG ((unsigned int)(sizeof(unsigned long) * CHAR_BIT))
/* Shift of the tallest root: 60 with 64-bit indices (11 levels). */
#define XA_MAX_SHIFT \
	(((XA_BITS_PER_LONG - 1) / XA_CHUNK_SHIFT) * XA_CHUNK_SHIFT)
#define XA_MAX_HEIGHT (XA_MAX_SHIFT / XA_CHUNK_SHIFT + 1)

/* Low entry bits 10 are reserved for internal use. */
#define XA_ENTRY_TAG_MASK ((uintptr_t)3)
#define XA_ENTRY_RESERVED ((uintptr_t)2)

/**
 * struct xa_node - one level of the radix tree.
 * @shift: index bits below this level (0 for leaves); constant.
 * @offset: slot in @parent that points here. Under xa_lock.
 * @count: non-NULL slots. Under xa_lock.
 * @parent: the node above, NULL for the root. Under xa_lock; readers
 *	never use it.
 * @array: the xarray this node belongs to (checked by xa_validate()).
 * @retired: set (release) when the node is handed to call_rcu() and read
 *	(acquire) by the callback: this checks that only retired nodes are
 *	freed, and shows ThreadSanitizer the hand-off from the thread that
 *	unlinked the node to the callback thread, which liburcu performs
 *	in code TSan does not see.
 * @rcu: for call_rcu() when the node is freed.
 * @slots: child nodes (@shift > 0) or entries (@shift == 0); written
 *	with release stores under xa_lock, read with acquire loads.
 * @marks: per mark, bit i set when slot i is (or leads to) a marked
 *	entry; written under xa_lock, read with relaxed loads.
 */
struct xa_node {
	unsigned char shift;
	unsigned char offset;
	unsigned char count;
	struct xa_node *parent;
	struct xarray *array;
	bool retired;
	struct rcu_head rcu;
	void *slots[XA_CHUNK_SIZE];
	uint64_t marks[XA_MAX_MARKS];
};

_Static_assert(XA_CHUNK_SIZE == 64, "marks are one 64-bit word per node");
_Static_assert(XA_CHUNK_SIZE <= UCHAR_MAX, "count fits in a byte");
_Static_assert(XA_PRESENT >= XA_MAX_MARKS, "XA_PRESENT is not a mark");

static long xa_live_nodes;

/* Nodes one store may need: new levels on top plus a fresh path down. */
struct xa_prealloc {
	unsigned int nr;
	unsigned int used;
	struct xa_node *nodes[2 * XA_MAX_HEIGHT];
};

/* ------------------------------------------------------------ helpers */

static inline struct xa_node *xa_head_load(const struct xarray *xa)
{
	return __atomic_load_n(&xa->_head, __ATOMIC_ACQUIRE);
}

static inline void xa_head_store(struct xarray *xa, struct xa_node *node)
{
	__atomic_store_n(&xa->_head, node, __ATOMIC_RELEASE);
}

static inline void *xa_slot_load(const struct xa_node *node, unsigned int off)
{
	return __atomic_load_n(&node->slots[off], __ATOMIC_ACQUIRE);
}

static inline void xa_slot_store(struct xa_node *node, unsigned int off,
				 void *entry)
{
	__atomic_store_n(&node->slots[off], entry, __ATOMIC_RELEASE);
}

static inline uint64_t xa_marks_load(const struct xa_node *node, xa_mark_t m)
{
	return __atomic_load_n(&node->marks[m], __ATOMIC_RELAXED);
}

static inline void xa_marks_store(struct xa_node *node, xa_mark_t m,
				  uint64_t bits)
{
	__atomic_store_n(&node->marks[m], bits, __ATOMIC_RELAXED);
}

static inline bool xa_mark_test(const struct xa_node *node, xa_mark_t m,
				unsigned int off)
{
	return (xa_marks_load(node, m) >> off) & 1;
}

static inline unsigned int xa_offset(unsigned long index, unsigned int shift)
{
	return (index >> shift) & XA_CHUNK_MASK;
}

/* Mask of the low @bits bits of an index (all ones from the word size on). */
static inline unsigned long xa_low_mask(unsigned int bits)
{
	if (bits >= XA_BITS_PER_LONG)
		return ULONG_MAX;
	return (1UL << bits) - 1;
}

/* Largest index a root of this shift can reach. */
static inline unsigned long xa_node_reach(const struct xa_node *node)
{
	return xa_low_mask(node->shift + XA_CHUNK_SHIFT);
}

/* Smallest root shift that reaches @index. */
static unsigned int xa_shift_for(unsigned long index)
{
	unsigned int shift = 0;

	while (shift < XA_MAX_SHIFT && (index >> (shift + XA_CHUNK_SHIFT)))
		shift += XA_CHUNK_SHIFT;
	return shift;
}

static inline bool xa_entry_reserved(const void *entry)
{
	return ((uintptr_t)entry & XA_ENTRY_TAG_MASK) == XA_ENTRY_RESERVED;
}

static inline bool xa_mark_valid(xa_mark_t mark)
{
	return mark < XA_MAX_MARKS;
}

static inline void xa_set_err(int *err, int val)
{
	if (err)
		*err = val;
}

/* ------------------------------------------------------ node lifetime */

static struct xa_node *xa_node_alloc(struct xarray *xa)
{
	struct xa_node *node;

	if (xa->xa_fail_alloc && xa->xa_fail_alloc(xa->xa_fail_arg))
		return NULL;
	node = calloc(1, sizeof(*node));
	if (!node)
		return NULL;
	node->array = xa;
	__atomic_fetch_add(&xa_live_nodes, 1, __ATOMIC_RELAXED);
	return node;
}

/* Free a node that was never published. */
static void xa_node_free_now(struct xa_node *node)
{
	free(node);
	__atomic_fetch_sub(&xa_live_nodes, 1, __ATOMIC_RELAXED);
}

static void xa_node_free_rcu(struct rcu_head *head)
{
	struct xa_node *node = container_of(head, struct xa_node, rcu);

	HETMM_BUG_ON(!__atomic_load_n(&node->retired, __ATOMIC_ACQUIRE));
	xa_node_free_now(node);
}

/* @node has just been unlinked from @xa: free it after a grace period. */
static void xa_node_retire(struct xarray *xa, struct xa_node *node)
{
	WRITE_ONCE(xa->_nr_nodes, xa->_nr_nodes - 1);
	HETMM_DEBUG_BUG_ON(node->retired);
	__atomic_store_n(&node->retired, true, __ATOMIC_RELEASE);
	call_rcu(&node->rcu, xa_node_free_rcu);
}

/* A node is about to be linked into @xa. */
static void xa_node_attach(struct xarray *xa, struct xa_node *node,
			   struct xa_node *parent, unsigned int off,
			   unsigned int shift)
{
	node->shift = (unsigned char)shift;
	node->parent = parent;
	node->offset = (unsigned char)off;
	WRITE_ONCE(xa->_nr_nodes, xa->_nr_nodes + 1);
}

static int xa_prealloc_fill(struct xarray *xa, struct xa_prealloc *pool,
			    unsigned int nr)
{
	HETMM_BUG_ON(nr > ARRAY_SIZE(pool->nodes));
	pool->used = 0;
	for (pool->nr = 0; pool->nr < nr; pool->nr++) {
		pool->nodes[pool->nr] = xa_node_alloc(xa);
		if (!pool->nodes[pool->nr])
			goto out_free;
	}
	return 0;

out_free:
	while (pool->nr)
		xa_node_free_now(pool->nodes[--pool->nr]);
	return -ENOMEM;
}

static struct xa_node *xa_prealloc_take(struct xa_prealloc *pool)
{
	HETMM_BUG_ON(pool->used >= pool->nr);
	return pool->nodes[pool->used++];
}

/* ------------------------------------------------------ marks (locked) */

/* Set @m for slot @off of @node and every ancestor on the way up. */
static void xa_mark_set_up(struct xa_node *node, unsigned int off, xa_mark_t m)
{
	while (node) {
		uint64_t bits = xa_marks_load(node, m);

		if (bits & (1ULL << off))
			return;	/* ancestors already carry it */
		xa_marks_store(node, m, bits | (1ULL << off));
		off = node->offset;
		node = node->parent;
	}
}

/* Clear @m for slot @off and in each ancestor whose subtree lost its last. */
static void xa_mark_clear_up(struct xa_node *node, unsigned int off,
			     xa_mark_t m)
{
	while (node) {
		uint64_t bits = xa_marks_load(node, m);

		if (!(bits & (1ULL << off)))
			return;
		bits &= ~(1ULL << off);
		xa_marks_store(node, m, bits);
		if (bits)
			return;
		off = node->offset;
		node = node->parent;
	}
}

/* ------------------------------------------------- tree shape (locked) */

/* The leaf that holds @index, or NULL if there is none. */
static struct xa_node *xa_leaf_locked(const struct xarray *xa,
				      unsigned long index)
{
	struct xa_node *node = xa->_head;

	if (!node || index > xa_node_reach(node))
		return NULL;
	while (node && node->shift)
		node = node->slots[xa_offset(index, node->shift)];
	return node;
}

/* How many nodes a store at @index must allocate. */
static unsigned int xa_nodes_needed(const struct xarray *xa,
				    unsigned long index)
{
	const struct xa_node *node = xa->_head;
	unsigned int want = xa_shift_for(index);
	const struct xa_node *child;

	if (!node)
		return want / XA_CHUNK_SHIFT + 1;
	if (want > node->shift) {
		/*
		 * New levels on top; @index then lies outside slot 0 of
		 * the new root, so its whole path below is new as well.
		 */
		return (want - node->shift) / XA_CHUNK_SHIFT +
		       want / XA_CHUNK_SHIFT;
	}
	while (node->shift) {
		child = node->slots[xa_offset(index, node->shift)];
		if (!child)
			return node->shift / XA_CHUNK_SHIFT;
		node = child;
	}
	return 0;
}

/* Add levels on top of the root until it has shift @want. */
static void xa_grow(struct xarray *xa, unsigned int want,
		    struct xa_prealloc *pool)
{
	struct xa_node *head = xa->_head;
	struct xa_node *top;
	xa_mark_t m;

	while (head->shift < want) {
		top = xa_prealloc_take(pool);
		xa_node_attach(xa, top, NULL, 0, head->shift + XA_CHUNK_SHIFT);
		top->slots[0] = head;
		top->count = 1;
		for (m = 0; m < XA_MAX_MARKS; m++)
			if (xa_marks_load(head, m))
				top->marks[m] = 1;
		head->parent = top;
		head->offset = 0;
		xa_head_store(xa, top);
		head = top;
	}
}

/* Walk to the leaf for @index, creating missing nodes from @pool. */
static struct xa_node *xa_create_path(struct xarray *xa, unsigned long index,
				      struct xa_prealloc *pool)
{
	struct xa_node *node = xa->_head;
	struct xa_node *child;
	unsigned int off;

	if (!node) {
		node = xa_prealloc_take(pool);
		xa_node_attach(xa, node, NULL, 0, xa_shift_for(index));
		xa_head_store(xa, node);
	}
	while (node->shift) {
		off = xa_offset(index, node->shift);
		child = node->slots[off];
		if (!child) {
			child = xa_prealloc_take(pool);
			xa_node_attach(xa, child, node, off,
				       node->shift - XA_CHUNK_SHIFT);
			xa_slot_store(node, off, child);
			node->count++;
		}
		node = child;
	}
	return node;
}

/* Unlink @node and its ancestors for as long as they are empty. */
static void xa_delete_empty(struct xarray *xa, struct xa_node *node)
{
	struct xa_node *parent;
	xa_mark_t m;

	while (node && node->count == 0) {
		for (m = 0; m < XA_MAX_MARKS; m++)
			HETMM_DEBUG_BUG_ON(xa_marks_load(node, m));
		parent = node->parent;
		if (parent) {
			xa_slot_store(parent, node->offset, NULL);
			parent->count--;
		} else {
			xa_head_store(xa, NULL);
		}
		xa_node_retire(xa, node);
		node = parent;
	}
}

/* Drop root levels whose only child is in slot 0. */
static void xa_shrink(struct xarray *xa)
{
	struct xa_node *head, *child;

	for (;;) {
		head = xa->_head;
		if (!head || !head->shift || head->count != 1)
			return;
		child = head->slots[0];
		if (!child)
			return;
		/*
		 * @head keeps pointing at @child, so a reader still inside
		 * @head finds the same entries a little longer.
		 */
		child->parent = NULL;
		child->offset = 0;
		xa_head_store(xa, child);
		xa_node_retire(xa, head);
	}
}

/* Retire a detached subtree; return how many entries it held. */
static unsigned long xa_free_subtree(struct xarray *xa, struct xa_node *node)
{
	unsigned long nr = 0;
	struct xa_node *child;
	unsigned int off;

	if (!node->shift) {
		nr = node->count;
	} else {
		for (off = 0; off < XA_CHUNK_SIZE; off++) {
			child = node->slots[off];
			if (child)
				nr += xa_free_subtree(xa, child);
		}
	}
	xa_node_retire(xa, node);
	return nr;
}

/* ---------------------------------------------------------------- setup */

/**
 * xa_init_flags - initialise an empty xarray.
 * @xa: the array.
 * @flags: XA_FLAGS_* (none are defined yet: pass 0).
 *
 * The fault-injection hook starts unset.
 *
 * Context: before @xa is shared.
 */
void xa_init_flags(struct xarray *xa, unsigned int flags)
{
	HETMM_WARN_ON_ONCE(flags & ~XA_FLAGS_MASK);
	spin_lock_init(&xa->xa_lock);
	xa->xa_flags = flags & XA_FLAGS_MASK;
	xa->_head = NULL;
	xa->_nr_nodes = 0;
	xa->xa_fail_alloc = NULL;
	xa->xa_fail_arg = NULL;
}

/**
 * xa_destroy - remove every entry and free every node.
 * @xa: the array.
 *
 * The entries themselves belong to the caller and are not touched. Nodes
 * are freed after an RCU grace period; rcu_barrier() waits for that. @xa
 * stays usable (empty) afterwards.
 *
 * Context: takes xa_lock.
 */
void xa_destroy(struct xarray *xa)
{
	xa_lock(xa);
	if (xa->_head) {
		xa_free_subtree(xa, xa->_head);
		xa_head_store(xa, NULL);
	}
	xa_unlock(xa);
}

/* ----------------------------------------------------------- lock-free */

/**
 * xa_load - the entry at @index.
 * @xa: the array.
 * @index: any index.
 *
 * Return: the entry, or NULL if there is none.
 * Context: any; takes rcu_read_lock (not xa_lock) itself, so it may be
 * called with xa_lock held or inside an rcu_read_lock() section. The
 * entry is only as stable as the caller makes it (xa_lock, or an RCU
 * section plus entries freed through RCU).
 */
void *xa_load(const struct xarray *xa, unsigned long index)
{
	struct xa_node *node;
	void *entry = NULL;

	rcu_read_lock();
	node = xa_head_load(xa);
	if (node && index <= xa_node_reach(node)) {
		for (;;) {
			entry = xa_slot_load(node, xa_offset(index, node->shift));
			if (!node->shift || !entry)
				break;
			node = entry;
		}
	}
	rcu_read_unlock();
	return entry;
}

/**
 * xa_get_mark - whether the entry at @index carries @mark.
 * @xa: the array.
 * @index: any index.
 * @mark: XA_MARK_0, XA_MARK_1 or XA_MARK_2.
 *
 * Return: true if an entry is present at @index and has @mark set.
 * Context: any; takes rcu_read_lock (not xa_lock) itself.
 */
bool xa_get_mark(const struct xarray *xa, unsigned long index, xa_mark_t mark)
{
	struct xa_node *node;
	unsigned int off;
	bool set = false;

	if (NEVER(!xa_mark_valid(mark)))
		return false;
	rcu_read_lock();
	node = xa_head_load(xa);
	if (node && index <= xa_node_reach(node)) {
		for (;;) {
			off = xa_offset(index, node->shift);
			if (!xa_mark_test(node, mark, off))
				break;
			if (!node->shift) {
				set = xa_slot_load(node, off) != NULL;
				break;
			}
			node = xa_slot_load(node, off);
			if (!node)
				break;
		}
	}
	rcu_read_unlock();
	return set;
}

/*
 * First slot at or after @off in @node that is in use and, unless the
 * filter is XA_PRESENT, carries the mark. Returns XA_CHUNK_SIZE if none.
 */
static unsigned int xa_node_scan(const struct xa_node *node, unsigned int off,
				 xa_mark_t filter, void **slotp)
{
	uint64_t bits;
	void *slot;

	if (filter == XA_PRESENT) {
		for (; off < XA_CHUNK_SIZE; off++) {
			slot = xa_slot_load(node, off);
			if (slot) {
				*slotp = slot;
				return off;
			}
		}
		return XA_CHUNK_SIZE;
	}
	bits = xa_marks_load(node, filter) & (~0ULL << off);
	for (; bits; bits &= bits - 1) {
		off = (unsigned int)__builtin_ctzll(bits);
		/* A racing erase may have emptied a marked slot. */
		slot = xa_slot_load(node, off);
		if (slot) {
			*slotp = slot;
			return off;
		}
	}
	return XA_CHUNK_SIZE;
}

/*
 * Search from the root for the first match at or after *@indexp. When a
 * node has nothing left, move past its whole range and start again from
 * the root: that needs no parent links, which a lock-free reader could
 * not trust.
 */
static void *xa_find_from(const struct xarray *xa, unsigned long *indexp,
			  unsigned long max, xa_mark_t filter)
{
	unsigned long index = *indexp;
	unsigned long span;
	struct xa_node *node;
	void *entry = NULL;
	void *slot = NULL;
	unsigned int off, found;

	rcu_read_lock();
	while (index <= max) {
		node = xa_head_load(xa);
		if (!node || index > xa_node_reach(node))
			goto out;
		for (;;) {
			off = xa_offset(index, node->shift);
			found = xa_node_scan(node, off, filter, &slot);
			span = xa_low_mask(node->shift + XA_CHUNK_SHIFT);
			if (found == XA_CHUNK_SIZE) {
				if ((index | span) == ULONG_MAX)
					goto out;
				index = (index | span) + 1;
				break;	/* restart from the root */
			}
			if (found != off)
				index = (index & ~span) |
					((unsigned long)found << node->shift);
			if (index > max)
				goto out;
			if (!node->shift) {
				entry = slot;
				*indexp = index;
				goto out;
			}
			node = slot;
		}
	}
out:
	rcu_read_unlock();
	return entry;
}

/**
 * xa_find - first entry at or after *@index.
 * @xa: the array.
 * @index: in: where to start; out: the index of the entry found.
 * @max: largest index to consider.
 * @filter: XA_PRESENT for any entry, or a mark the entry must carry.
 *
 * Marked searches skip whole subtrees that hold no marked entry.
 *
 * Return: the entry, or NULL if none is in [*@index, @max] (then *@index
 * is left unchanged).
 * Context: any; takes rcu_read_lock (not xa_lock) itself.
 */
void *xa_find(const struct xarray *xa, unsigned long *index,
	      unsigned long max, xa_mark_t filter)
{
	if (filter != XA_PRESENT && NEVER(!xa_mark_valid(filter)))
		return NULL;
	return xa_find_from(xa, index, max, filter);
}

/**
 * xa_find_after - first entry strictly after *@index.
 * @xa: the array.
 * @index: in: the previous position; out: the index of the entry found.
 * @max: largest index to consider.
 * @filter: XA_PRESENT for any entry, or a mark the entry must carry.
 *
 * Return: the entry, or NULL if none is in (*@index, @max] (then *@index
 * is left unchanged).
 * Context: any; takes rcu_read_lock (not xa_lock) itself.
 */
void *xa_find_after(const struct xarray *xa, unsigned long *index,
		    unsigned long max, xa_mark_t filter)
{
	unsigned long next;
	void *entry;

	if (*index >= max)
		return NULL;
	next = *index + 1;
	entry = xa_find(xa, &next, max, filter);
	if (entry)
		*index = next;
	return entry;
}

/* ----------------------------------------------------- locked writers */

/**
 * __xa_store_old - store @entry at @index and return what was there.
 * @xa: the array.
 * @index: any index.
 * @entry: the new entry; NULL erases.
 * @err: if not NULL, receives 0, -EINVAL or -ENOMEM.
 *
 * Marks of an entry that is replaced stay set; a new entry starts with
 * no marks.
 *
 * Return: the previous entry (NULL if none), or NULL on error. On error
 * *@err is -EINVAL (@entry has the reserved low bits 10, for example a
 * pointer that is not 4-byte aligned) or -ENOMEM (a node allocation
 * failed), and the array is unchanged.
 * Context: caller holds xa_lock.
 */
void *__xa_store_old(struct xarray *xa, unsigned long index, void *entry,
		     int *err)
{
	struct xa_prealloc pool;
	struct xa_node *leaf;
	unsigned int off, want;
	void *old;
	int ret;

	lockdep_assert_held(&xa->xa_lock);
	if (xa_entry_reserved(entry)) {
		xa_set_err(err, -EINVAL);
		return NULL;
	}
	xa_set_err(err, 0);
	if (!entry)
		return __xa_erase(xa, index);

	ret = xa_prealloc_fill(xa, &pool, xa_nodes_needed(xa, index));
	if (ret) {
		xa_set_err(err, ret);
		return NULL;
	}
	want = xa_shift_for(index);
	if (xa->_head && want > xa->_head->shift)
		xa_grow(xa, want, &pool);
	leaf = xa_create_path(xa, index, &pool);
	HETMM_DEBUG_BUG_ON(pool.used != pool.nr);

	off = xa_offset(index, 0);
	old = leaf->slots[off];
	xa_slot_store(leaf, off, entry);
	if (!old)
		leaf->count++;
	return old;
}

/**
 * __xa_store - store @entry at @index.
 * @xa: the array.
 * @index: any index.
 * @entry: the new entry; NULL erases.
 *
 * Return: 0; -EINVAL if @entry has the reserved low bits 10; -ENOMEM if
 * a node allocation failed. On error the array is unchanged.
 * Context: caller holds xa_lock.
 */
int __xa_store(struct xarray *xa, unsigned long index, void *entry)
{
	int err;

	__xa_store_old(xa, index, entry, &err);
	return err;
}

/**
 * __xa_erase - remove the entry at @index.
 * @xa: the array.
 * @index: any index.
 *
 * The entry's marks are cleared, emptied nodes are freed (after a grace
 * period) and the tree shrinks if it can.
 *
 * Return: the entry that was removed, or NULL if there was none.
 * Context: caller holds xa_lock.
 */
void *__xa_erase(struct xarray *xa, unsigned long index)
{
	struct xa_node *leaf;
	unsigned int off;
	xa_mark_t m;
	void *old;

	lockdep_assert_held(&xa->xa_lock);
	leaf = xa_leaf_locked(xa, index);
	if (!leaf)
		return NULL;
	off = xa_offset(index, 0);
	old = leaf->slots[off];
	if (!old)
		return NULL;
	xa_slot_store(leaf, off, NULL);
	leaf->count--;
	for (m = 0; m < XA_MAX_MARKS; m++)
		xa_mark_clear_up(leaf, off, m);
	xa_delete_empty(xa, leaf);
	xa_shrink(xa);
	return old;
}

/**
 * __xa_insert - store @entry at @index only if nothing is there.
 * @xa: the array.
 * @index: any index.
 * @entry: the new entry, not NULL.
 *
 * Return: 0; -EBUSY if an entry is present; -EINVAL if @entry is NULL or
 * has the reserved low bits 10; -ENOMEM if a node allocation failed.
 * Context: caller holds xa_lock.
 */
int __xa_insert(struct xarray *xa, unsigned long index, void *entry)
{
	struct xa_node *leaf;

	lockdep_assert_held(&xa->xa_lock);
	if (!entry)
		return -EINVAL;
	if (xa_entry_reserved(entry))
		return -EINVAL;
	leaf = xa_leaf_locked(xa, index);
	if (leaf && leaf->slots[xa_offset(index, 0)])
		return -EBUSY;
	return __xa_store(xa, index, entry);
}

/**
 * __xa_cmpxchg - replace the entry at @index if it is @old.
 * @xa: the array.
 * @index: any index.
 * @old: the expected current entry (NULL: expect no entry).
 * @entry: the new entry (NULL erases).
 * @err: if not NULL, receives 0, -EINVAL or -ENOMEM.
 *
 * Return: the entry at @index before the call; the exchange happened iff
 * that equals @old and *@err is 0. On error (-EINVAL: @entry has the
 * reserved low bits 10; -ENOMEM: a node allocation failed) the array is
 * unchanged.
 * Context: caller holds xa_lock.
 */
void *__xa_cmpxchg(struct xarray *xa, unsigned long index, void *old,
		   void *entry, int *err)
{
	struct xa_node *leaf;
	void *cur = NULL;
	int ret;

	lockdep_assert_held(&xa->xa_lock);
	leaf = xa_leaf_locked(xa, index);
	if (leaf)
		cur = leaf->slots[xa_offset(index, 0)];
	if (xa_entry_reserved(entry)) {
		xa_set_err(err, -EINVAL);
		return cur;
	}
	xa_set_err(err, 0);
	if (cur != old)
		return cur;
	__xa_store_old(xa, index, entry, &ret);
	xa_set_err(err, ret);
	return cur;
}

/*
 * Erase [@first, @last] below @node, whose slot 0 is at index @base.
 * Slots entirely inside the range are unlinked as whole subtrees; the
 * rest recurse. Marks of @node are brought up to date for every slot
 * touched; the caller fixes its own slot for @node.
 */
static unsigned long xa_erase_range_node(struct xarray *xa,
					 struct xa_node *node,
					 unsigned long base,
					 unsigned long first,
					 unsigned long last)
{
	unsigned int shift = node->shift;
	unsigned long slot_span = xa_low_mask(shift);
	unsigned long nr = 0;
	unsigned long lo, hi;
	unsigned int off, lo_off, hi_off;
	struct xa_node *child;
	xa_mark_t m;

	lo_off = first > base ? xa_offset(first, shift) : 0;
	if (last - base >= xa_low_mask(shift + XA_CHUNK_SHIFT))
		hi_off = XA_CHUNK_MASK;
	else
		hi_off = xa_offset(last, shift);

	for (off = lo_off; off <= hi_off; off++) {
		child = node->slots[off];
		if (!child)
			continue;
		lo = base + ((unsigned long)off << shift);
		hi = lo + slot_span;
		if (first <= lo && hi <= last) {
			/* Whole slot in range: one store drops all of it. */
			xa_slot_store(node, off, NULL);
			node->count--;
			nr += shift ? xa_free_subtree(xa, child) : 1;
		} else {
			nr += xa_erase_range_node(xa, child, lo, first, last);
			if (!child->count) {
				xa_slot_store(node, off, NULL);
				node->count--;
				xa_node_retire(xa, child);
			}
		}
		/* The slot is now empty or a child that kept some entries. */
		child = node->slots[off];
		for (m = 0; m < XA_MAX_MARKS; m++) {
			if (child && xa_marks_load(child, m))
				continue;
			xa_marks_store(node, m, xa_marks_load(node, m) &
						~(1ULL << off));
		}
	}
	return nr;
}

/**
 * __xa_erase_range - remove every entry in [@first, @last].
 * @xa: the array.
 * @first: first index of the range.
 * @last: last index of the range (inclusive).
 *
 * Subtrees that lie entirely inside the range are unlinked with a single
 * store each and their nodes freed without visiting entries one by one.
 *
 * Return: the number of entries removed (0 if @first > @last).
 * Context: caller holds xa_lock.
 */
unsigned long __xa_erase_range(struct xarray *xa, unsigned long first,
			       unsigned long last)
{
	struct xa_node *head = xa->_head;
	unsigned long nr;

	lockdep_assert_held(&xa->xa_lock);
	if (first > last || !head || first > xa_node_reach(head))
		return 0;
	nr = xa_erase_range_node(xa, head, 0, first, last);
	if (!head->count) {
		xa_head_store(xa, NULL);
		xa_node_retire(xa, head);
	}
	xa_shrink(xa);
	return nr;
}

/**
 * __xa_set_mark - set @mark on the entry at @index.
 * @xa: the array.
 * @index: any index.
 * @mark: XA_MARK_0, XA_MARK_1 or XA_MARK_2.
 *
 * Does nothing if no entry is present at @index.
 *
 * Context: caller holds xa_lock.
 */
void __xa_set_mark(struct xarray *xa, unsigned long index, xa_mark_t mark)
{
	struct xa_node *leaf;
	unsigned int off = xa_offset(index, 0);

	lockdep_assert_held(&xa->xa_lock);
	if (NEVER(!xa_mark_valid(mark)))
		return;
	leaf = xa_leaf_locked(xa, index);
	if (leaf && leaf->slots[off])
		xa_mark_set_up(leaf, off, mark);
}

/**
 * __xa_clear_mark - clear @mark on the entry at @index.
 * @xa: the array.
 * @index: any index.
 * @mark: XA_MARK_0, XA_MARK_1 or XA_MARK_2.
 *
 * Does nothing if no entry is present at @index.
 *
 * Context: caller holds xa_lock.
 */
void __xa_clear_mark(struct xarray *xa, unsigned long index, xa_mark_t mark)
{
	struct xa_node *leaf;

	lockdep_assert_held(&xa->xa_lock);
	if (NEVER(!xa_mark_valid(mark)))
		return;
	leaf = xa_leaf_locked(xa, index);
	if (leaf)
		xa_mark_clear_up(leaf, xa_offset(index, 0), mark);
}

/* ------------------------------------------------- writers taking lock */

/**
 * xa_store_old - store @entry at @index and return what was there.
 * @xa: the array.
 * @index: any index.
 * @entry: the new entry; NULL erases.
 * @err: if not NULL, receives 0, -EINVAL or -ENOMEM.
 *
 * Return: as for __xa_store_old().
 * Context: takes xa_lock.
 */
void *xa_store_old(struct xarray *xa, unsigned long index, void *entry,
		   int *err)
{
	void *old;

	xa_lock(xa);
	old = __xa_store_old(xa, index, entry, err);
	xa_unlock(xa);
	return old;
}

/**
 * xa_store - store @entry at @index.
 * @xa: the array.
 * @index: any index.
 * @entry: the new entry; NULL erases.
 *
 * Use xa_store_old() to learn the previous entry.
 *
 * Return: 0; -EINVAL if @entry has the reserved low bits 10 (a pointer
 * that is not 4-byte aligned); -ENOMEM if a node allocation failed. On
 * error the array is unchanged.
 * Context: takes xa_lock.
 */
int xa_store(struct xarray *xa, unsigned long index, void *entry)
{
	int err;

	xa_lock(xa);
	err = __xa_store(xa, index, entry);
	xa_unlock(xa);
	return err;
}

/**
 * xa_erase - remove the entry at @index.
 * @xa: the array.
 * @index: any index.
 *
 * Return: the entry that was removed, or NULL if there was none.
 * Context: takes xa_lock.
 */
void *xa_erase(struct xarray *xa, unsigned long index)
{
	void *old;

	xa_lock(xa);
	old = __xa_erase(xa, index);
	xa_unlock(xa);
	return old;
}

/**
 * xa_insert - store @entry at @index only if nothing is there.
 * @xa: the array.
 * @index: any index.
 * @entry: the new entry, not NULL.
 *
 * Return: 0; -EBUSY if an entry is present; -EINVAL if @entry is NULL or
 * has the reserved low bits 10; -ENOMEM if a node allocation failed.
 * Context: takes xa_lock.
 */
int xa_insert(struct xarray *xa, unsigned long index, void *entry)
{
	int err;

	xa_lock(xa);
	err = __xa_insert(xa, index, entry);
	xa_unlock(xa);
	return err;
}

/**
 * xa_cmpxchg - replace the entry at @index if it is @old.
 * @xa: the array.
 * @index: any index.
 * @old: the expected current entry (NULL: expect no entry).
 * @entry: the new entry (NULL erases).
 * @err: if not NULL, receives 0, -EINVAL or -ENOMEM.
 *
 * Return: as for __xa_cmpxchg().
 * Context: takes xa_lock.
 */
void *xa_cmpxchg(struct xarray *xa, unsigned long index, void *old,
		 void *entry, int *err)
{
	void *cur;

	xa_lock(xa);
	cur = __xa_cmpxchg(xa, index, old, entry, err);
	xa_unlock(xa);
	return cur;
}

/**
 * xa_erase_range - remove every entry in [@first, @last].
 * @xa: the array.
 * @first: first index of the range.
 * @last: last index of the range (inclusive).
 *
 * Return: the number of entries removed.
 * Context: takes xa_lock.
 */
unsigned long xa_erase_range(struct xarray *xa, unsigned long first,
			     unsigned long last)
{
	unsigned long nr;

	xa_lock(xa);
	nr = __xa_erase_range(xa, first, last);
	xa_unlock(xa);
	return nr;
}

/**
 * xa_set_mark - set @mark on the entry at @index.
 * @xa: the array.
 * @index: any index.
 * @mark: XA_MARK_0, XA_MARK_1 or XA_MARK_2.
 *
 * Does nothing if no entry is present at @index.
 *
 * Context: takes xa_lock.
 */
void xa_set_mark(struct xarray *xa, unsigned long index, xa_mark_t mark)
{
	xa_lock(xa);
	__xa_set_mark(xa, index, mark);
	xa_unlock(xa);
}

/**
 * xa_clear_mark - clear @mark on the entry at @index.
 * @xa: the array.
 * @index: any index.
 * @mark: XA_MARK_0, XA_MARK_1 or XA_MARK_2.
 *
 * Context: takes xa_lock.
 */
void xa_clear_mark(struct xarray *xa, unsigned long index, xa_mark_t mark)
{
	xa_lock(xa);
	__xa_clear_mark(xa, index, mark);
	xa_unlock(xa);
}

/* -------------------------------------------------------- checks, stats */

/**
 * xa_nr_nodes - nodes currently in the tree.
 * @xa: the array.
 *
 * Return: the count (0 for an empty array).
 * Context: any; a snapshot unless the caller holds xa_lock.
 */
size_t xa_nr_nodes(const struct xarray *xa)
{
	return READ_ONCE(xa->_nr_nodes);
}

/**
 * xa_live_nodes_total - nodes allocated and not yet freed, all arrays.
 *
 * Nodes removed from a tree count until their RCU grace period ends: call
 * rcu_barrier() first for an exact figure.
 *
 * Return: the count.
 * Context: any.
 */
long xa_live_nodes_total(void)
{
	return __atomic_load_n(&xa_live_nodes, __ATOMIC_RELAXED);
}

struct xa_check {
	const struct xarray *xa;
	size_t nodes;
};

#define xa_corrupt(node, fmt, ...)                                           \
	({                                                                  \
		fprintf(stderr, "xarray: node %p: " fmt "\n",               \
			(const void *)(node), ##__VA_ARGS__);               \
		-EUCLEAN;                                                   \
	})

static int xa_validate_node(struct xa_check *chk, const struct xa_node *node,
			    const struct xa_node *parent, unsigned int offset,
			    unsigned int shift)
{
	unsigned int off, count = 0;
	const struct xa_node *child;
	uint64_t present = 0, bits;
	xa_mark_t m;
	void *slot;
	int ret;

	if (++chk->nodes > chk->xa->_nr_nodes)
		return xa_corrupt(node, "more nodes than _nr_nodes %zu",
				  chk->xa->_nr_nodes);
	if (node->array != chk->xa)
		return xa_corrupt(node, "belongs to array %p",
				  (void *)node->array);
	if (node->shift != shift)
		return xa_corrupt(node, "shift %u, expected %u", node->shift,
				  shift);
	if (node->parent != parent)
		return xa_corrupt(node, "parent %p, expected %p",
				  (void *)node->parent, (const void *)parent);
	if (parent && node->offset != offset)
		return xa_corrupt(node, "offset %u, expected %u", node->offset,
				  offset);
	for (off = 0; off < XA_CHUNK_SIZE; off++) {
		slot = node->slots[off];
		if (!slot)
			continue;
		count++;
		present |= 1ULL << off;
		if (!shift) {
			if (xa_entry_reserved(slot))
				return xa_corrupt(node, "slot %u holds reserved entry %p",
						  off, slot);
			continue;
		}
		child = slot;
		ret = xa_validate_node(chk, child, node, off,
				       shift - XA_CHUNK_SHIFT);
		if (ret)
			return ret;
	}
	if (count != node->count || !count)
		return xa_corrupt(node, "count %u, %u slots in use",
				  node->count, count);
	for (m = 0; m < XA_MAX_MARKS; m++) {
		bits = node->marks[m];
		if (bits & ~present)
			return xa_corrupt(node, "mark %u set on empty slots %#llx",
					  m, (unsigned long long)(bits & ~present));
		if (!shift)
			continue;
		for (off = 0; off < XA_CHUNK_SIZE; off++) {
			child = node->slots[off];
			if (!child)
				continue;
			if (!!(bits & (1ULL << off)) != !!child->marks[m])
				return xa_corrupt(node, "mark %u of slot %u disagrees with child",
						  m, off);
		}
	}
	return 0;
}

/**
 * xa_validate - check the structure of an xarray.
 * @xa: the array.
 *
 * Checks shifts, parent and offset links, slot counts, mark propagation
 * (a node's mark bit is set iff the child subtree has that mark), that
 * the root could not be shrunk, that no slot reaches beyond ULONG_MAX,
 * and that the node count matches xa_nr_nodes(). The first problem found
 * is printed on stderr.
 *
 * Return: 0 if the array is sound, -EUCLEAN otherwise.
 * Context: takes xa_lock.
 */
int xa_validate(const struct xarray *xa)
{
	/* The lock is not part of the array's value: locking it is fine. */
	struct xarray *mut = (struct xarray *)xa;
	struct xa_check chk = { .xa = xa, .nodes = 0 };
	const struct xa_node *head;
	unsigned int off;
	int ret = 0;

	xa_lock(mut);
	head = xa->_head;
	if (!head)
		goto out_count;
	if (head->shift > XA_MAX_SHIFT || head->shift % XA_CHUNK_SHIFT) {
		ret = xa_corrupt(head, "root shift %u", head->shift);
		goto out_unlock;
	}
	if (head->shift && head->count == 1 && head->slots[0]) {
		ret = xa_corrupt(head, "root should have been shrunk");
		goto out_unlock;
	}
	if ((unsigned int)head->shift + XA_CHUNK_SHIFT > XA_BITS_PER_LONG) {
		for (off = 1U << (XA_BITS_PER_LONG - head->shift);
		     off < XA_CHUNK_SIZE; off++) {
			if (head->slots[off]) {
				ret = xa_corrupt(head, "slot %u beyond ULONG_MAX",
						 off);
				goto out_unlock;
			}
		}
	}
	ret = xa_validate_node(&chk, head, NULL, 0, head->shift);
	if (ret)
		goto out_unlock;
out_count:
	if (chk.nodes != xa->_nr_nodes)
		ret = xa_corrupt(head, "%zu nodes reachable, _nr_nodes %zu",
				 chk.nodes, xa->_nr_nodes);
out_unlock:
	xa_unlock(mut);
	return ret;
}
