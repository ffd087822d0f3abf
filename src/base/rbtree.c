// SPDX-License-Identifier: MIT
/*
 * rbtree.c - red-black tree rebalancing, walks, and the interval tree.
 *
 * Locking and invariants
 *
 *   No locks are taken here: the owner of a tree serialises all access
 *   to it (one lock per tree, held across every call in this file).
 *
 *   Red-black properties, checked by rb_validate():
 *     colour(root) == black
 *     colour(node) == red  =>  colour(child) == black for both children
 *     every path root -> NULL crosses the same number of black nodes
 *     rb_parent(child) == node for every child of every node
 *   Hence height <= 2 * log2(n + 1).
 *
 *   Augmented trees (interval tree):
 *     node->value == f(node, left->value, right->value)
 *   update() restores this for one node; after any structural change the
 *   nodes whose subtree changed are updated bottom-up, and a rotation
 *   updates the two rotated nodes (lower one first) because the subtree
 *   rooted at the rotation point keeps the same set of nodes.
 *
 *   Interval tree:
 *     node->__subtree_last == max(node->last, left->__subtree_last,
 *                                 right->__subtree_last)
 *
 * The algorithms are the textbook ones (insert: recolour while the uncle
 * is red, else one or two rotations; erase: splice out a node with at
 * most one child, then repair a "double black" with the sibling cases).
 */
#include <errno.h>
#include <stdio.h>

#include <hetmm/rbtree.h>

#define RB_RED ((uintptr_t)0)
#define RB_BLACK ((uintptr_t)1)
#define RB_COLOR_MASK ((uintptr_t)1)

/* Deeper than any valid tree over a 64-bit address space. */
#define RB_VALIDATE_MAX_DEPTH 192

static inline bool rb_is_red(const struct rb_node *node)
{
	return node && !(node->__rb_parent_color & RB_COLOR_MASK);
}

static inline bool rb_is_black(const struct rb_node *node)
{
	return !rb_is_red(node);
}

static inline uintptr_t rb_color(const struct rb_node *node)
{
	return node->__rb_parent_color & RB_COLOR_MASK;
}

static inline void rb_set_parent_color(struct rb_node *node,
				       struct rb_node *parent, uintptr_t color)
{
	node->__rb_parent_color = (uintptr_t)parent | color;
}

static inline void rb_set_parent(struct rb_node *node, struct rb_node *parent)
{
	rb_set_parent_color(node, parent, rb_color(node));
}

static inline void rb_set_color(struct rb_node *node, uintptr_t color)
{
	rb_set_parent_color(node, rb_parent(node), color);
}

/* Make whatever pointed at @old (parent's child slot or root) point at @new. */
static inline void rb_relink(struct rb_root *root, struct rb_node *parent,
			     struct rb_node *old, struct rb_node *new)
{
	if (!parent)
		root->rb_node = new;
	else if (parent->rb_left == old)
		parent->rb_left = new;
	else
		parent->rb_right = new;
}

/* Recompute the augmented value of @node and of all its ancestors. */
static void rb_update_to_root(struct rb_node *node, rb_augment_update_fn update)
{
	if (!update)
		return;
	for (; node; node = rb_parent(node))
		update(node);
}

/*
 *     x                y
 *    / \              / \
 *   a   y     ->     x   c
 *      / \          / \
 *     b   c        a   b
 */
static void rb_rotate_left(struct rb_root *root, struct rb_node *x,
			   rb_augment_update_fn update)
{
	struct rb_node *y = x->rb_right;
	struct rb_node *p = rb_parent(x);

	x->rb_right = y->rb_left;
	if (y->rb_left)
		rb_set_parent(y->rb_left, x);
	rb_set_parent(y, p);
	rb_relink(root, p, x, y);
	y->rb_left = x;
	rb_set_parent(x, y);
	if (update) {
		update(x);
		update(y);
	}
}

/* Mirror image of rb_rotate_left(). */
static void rb_rotate_right(struct rb_root *root, struct rb_node *x,
			    rb_augment_update_fn update)
{
	struct rb_node *y = x->rb_left;
	struct rb_node *p = rb_parent(x);

	x->rb_left = y->rb_right;
	if (y->rb_right)
		rb_set_parent(y->rb_right, x);
	rb_set_parent(y, p);
	rb_relink(root, p, x, y);
	y->rb_right = x;
	rb_set_parent(x, y);
	if (update) {
		update(x);
		update(y);
	}
}

/*
 * A freshly linked red @node may have a red parent. Push the violation up
 * by recolouring while the uncle is red; otherwise one or two rotations
 * around the grandparent end it.
 */
static void rb_insert_fixup(struct rb_node *node, struct rb_root *root,
			    rb_augment_update_fn update)
{
	struct rb_node *parent, *grand, *uncle;

	while ((parent = rb_parent(node)) && rb_is_red(parent)) {
		/* A red parent is never the root, so @grand exists. */
		grand = rb_parent(parent);
		if (parent == grand->rb_left) {
			uncle = grand->rb_right;
			if (rb_is_red(uncle)) {
				rb_set_color(parent, RB_BLACK);
				rb_set_color(uncle, RB_BLACK);
				rb_set_color(grand, RB_RED);
				node = grand;
				continue;
			}
			if (node == parent->rb_right) {
				rb_rotate_left(root, parent, update);
				node = parent;
				parent = rb_parent(node);
			}
			rb_set_color(parent, RB_BLACK);
			rb_set_color(grand, RB_RED);
			rb_rotate_right(root, grand, update);
		} else {
			uncle = grand->rb_left;
			if (rb_is_red(uncle)) {
				rb_set_color(parent, RB_BLACK);
				rb_set_color(uncle, RB_BLACK);
				rb_set_color(grand, RB_RED);
				node = grand;
				continue;
			}
			if (node == parent->rb_left) {
				rb_rotate_right(root, parent, update);
				node = parent;
				parent = rb_parent(node);
			}
			rb_set_color(parent, RB_BLACK);
			rb_set_color(grand, RB_RED);
			rb_rotate_left(root, grand, update);
		}
	}
	rb_set_color(root->rb_node, RB_BLACK);
}

/**
 * rb_insert_color - rebalance after rb_link_node().
 * @node: the node just linked.
 * @root: the tree it was linked into.
 *
 * Context: caller serialises access to the tree.
 */
void rb_insert_color(struct rb_node *node, struct rb_root *root)
{
	rb_insert_fixup(node, root, NULL);
}

/**
 * rb_insert_augmented - rebalance an augmented tree after rb_link_node().
 * @node: the node just linked; its augmented value need not be set.
 * @root: the tree it was linked into.
 * @update: recomputes one node's augmented value from its children.
 *
 * The values on the path from @node to the root are recomputed first, so
 * the caller's descent does not have to maintain them.
 *
 * Context: caller serialises access to the tree.
 */
void rb_insert_augmented(struct rb_node *node, struct rb_root *root,
			 rb_augment_update_fn update)
{
	rb_update_to_root(node, update);
	rb_insert_fixup(node, root, update);
}

/*
 * One black node was removed from the paths through @node (possibly NULL,
 * the child slot of @parent that lost it). Restore equal black heights.
 */
static void rb_erase_fixup(struct rb_node *node, struct rb_node *parent,
			   struct rb_root *root, rb_augment_update_fn update)
{
	struct rb_node *sib;

	while (parent && rb_is_black(node)) {
		/*
		 * The side that lost a black node still had black height
		 * >= 1 on the other side, so @sib is never NULL.
		 */
		if (node == parent->rb_left) {
			sib = parent->rb_right;
			if (rb_is_red(sib)) {
				rb_set_color(sib, RB_BLACK);
				rb_set_color(parent, RB_RED);
				rb_rotate_left(root, parent, update);
				sib = parent->rb_right;
			}
			if (rb_is_black(sib->rb_left) &&
			    rb_is_black(sib->rb_right)) {
				rb_set_color(sib, RB_RED);
				node = parent;
				parent = rb_parent(node);
				continue;
			}
			if (rb_is_black(sib->rb_right)) {
				rb_set_color(sib->rb_left, RB_BLACK);
				rb_set_color(sib, RB_RED);
				rb_rotate_right(root, sib, update);
				sib = parent->rb_right;
			}
			rb_set_color(sib, rb_color(parent));
			rb_set_color(parent, RB_BLACK);
			rb_set_color(sib->rb_right, RB_BLACK);
			rb_rotate_left(root, parent, update);
		} else {
			sib = parent->rb_left;
			if (rb_is_red(sib)) {
				rb_set_color(sib, RB_BLACK);
				rb_set_color(parent, RB_RED);
				rb_rotate_right(root, parent, update);
				sib = parent->rb_left;
			}
			if (rb_is_black(sib->rb_left) &&
			    rb_is_black(sib->rb_right)) {
				rb_set_color(sib, RB_RED);
				node = parent;
				parent = rb_parent(node);
				continue;
			}
			if (rb_is_black(sib->rb_left)) {
				rb_set_color(sib->rb_right, RB_BLACK);
				rb_set_color(sib, RB_RED);
				rb_rotate_left(root, sib, update);
				sib = parent->rb_left;
			}
			rb_set_color(sib, rb_color(parent));
			rb_set_color(parent, RB_BLACK);
			rb_set_color(sib->rb_left, RB_BLACK);
			rb_rotate_right(root, parent, update);
		}
		/* The deficit is repaired; stop at the (old) root. */
		node = root->rb_node;
		parent = NULL;
	}
	if (node)
		rb_set_color(node, RB_BLACK);
}

static void rb_erase_common(struct rb_node *node, struct rb_root *root,
			    rb_augment_update_fn update)
{
	struct rb_node *child, *parent, *succ;
	uintptr_t removed_color;

	if (!node->rb_left || !node->rb_right) {
		/* At most one child: it takes @node's place. */
		child = node->rb_left ? node->rb_left : node->rb_right;
		parent = rb_parent(node);
		removed_color = rb_color(node);
		rb_relink(root, parent, node, child);
		if (child)
			rb_set_parent(child, parent);
	} else {
		/*
		 * Two children: the in-order successor (leftmost of the
		 * right subtree, which has no left child) is spliced out of
		 * its spot and takes over @node's place and colour.
		 */
		succ = node->rb_right;
		while (succ->rb_left)
			succ = succ->rb_left;
		removed_color = rb_color(succ);
		child = succ->rb_right;
		if (rb_parent(succ) == node) {
			parent = succ;
		} else {
			parent = rb_parent(succ);
			parent->rb_left = child;
			if (child)
				rb_set_parent(child, parent);
			succ->rb_right = node->rb_right;
			rb_set_parent(node->rb_right, succ);
		}
		succ->rb_left = node->rb_left;
		rb_set_parent(node->rb_left, succ);
		rb_relink(root, rb_parent(node), node, succ);
		succ->__rb_parent_color = node->__rb_parent_color;
	}
	/* Every node from @parent up lost @node from its subtree. */
	rb_update_to_root(parent, update);
	if (removed_color == RB_BLACK)
		rb_erase_fixup(child, parent, root, update);
}

/**
 * rb_erase - unlink @node from @root and rebalance.
 * @node: a node currently in @root.
 * @root: the tree.
 *
 * @node's own fields are left stale; use RB_CLEAR_NODE() if the owner
 * wants to test membership later with RB_EMPTY_NODE().
 *
 * Context: caller serialises access to the tree.
 */
void rb_erase(struct rb_node *node, struct rb_root *root)
{
	rb_erase_common(node, root, NULL);
}

/**
 * rb_erase_augmented - unlink @node from an augmented tree and rebalance.
 * @node: a node currently in @root.
 * @root: the tree.
 * @update: recomputes one node's augmented value from its children.
 *
 * Context: caller serialises access to the tree.
 */
void rb_erase_augmented(struct rb_node *node, struct rb_root *root,
			rb_augment_update_fn update)
{
	rb_erase_common(node, root, update);
}

/**
 * rb_replace_node - put @new where @victim is, without rebalancing.
 * @victim: a node currently in @root.
 * @new: a node not in any tree, with the same key as @victim.
 * @root: the tree.
 *
 * @new inherits @victim's colour, parent and children; @victim is left
 * stale. The caller guarantees the order is unchanged (and, for an
 * augmented tree, that @new's augmented value equals @victim's).
 *
 * Context: caller serialises access to the tree.
 */
void rb_replace_node(struct rb_node *victim, struct rb_node *new,
		     struct rb_root *root)
{
	struct rb_node *parent = rb_parent(victim);

	*new = *victim;
	if (victim->rb_left)
		rb_set_parent(victim->rb_left, new);
	if (victim->rb_right)
		rb_set_parent(victim->rb_right, new);
	rb_relink(root, parent, victim, new);
}

/**
 * rb_first - the smallest node.
 * @root: the tree.
 *
 * Return: the leftmost node, or NULL for an empty tree.
 * Context: caller serialises access to the tree.
 */
struct rb_node *rb_first(const struct rb_root *root)
{
	struct rb_node *node = root->rb_node;

	if (!node)
		return NULL;
	while (node->rb_left)
		node = node->rb_left;
	return node;
}

/**
 * rb_last - the largest node.
 * @root: the tree.
 *
 * Return: the rightmost node, or NULL for an empty tree.
 * Context: caller serialises access to the tree.
 */
struct rb_node *rb_last(const struct rb_root *root)
{
	struct rb_node *node = root->rb_node;

	if (!node)
		return NULL;
	while (node->rb_right)
		node = node->rb_right;
	return node;
}

/**
 * rb_next - in-order successor.
 * @node: a node in a tree.
 *
 * Return: the next larger node, or NULL if @node is the last one or is
 * detached (RB_EMPTY_NODE()).
 * Context: caller serialises access to the tree.
 */
struct rb_node *rb_next(const struct rb_node *node)
{
	struct rb_node *parent;

	if (RB_EMPTY_NODE(node))
		return NULL;
	if (node->rb_right) {
		node = node->rb_right;
		while (node->rb_left)
			node = node->rb_left;
		return (struct rb_node *)node;
	}
	/* Climb while we are a right child; the first left turn is next. */
	while ((parent = rb_parent(node)) && node == parent->rb_right)
		node = parent;
	return parent;
}

/**
 * rb_prev - in-order predecessor.
 * @node: a node in a tree.
 *
 * Return: the next smaller node, or NULL if @node is the first one or is
 * detached (RB_EMPTY_NODE()).
 * Context: caller serialises access to the tree.
 */
struct rb_node *rb_prev(const struct rb_node *node)
{
	struct rb_node *parent;

	if (RB_EMPTY_NODE(node))
		return NULL;
	if (node->rb_left) {
		node = node->rb_left;
		while (node->rb_right)
			node = node->rb_right;
		return (struct rb_node *)node;
	}
	while ((parent = rb_parent(node)) && node == parent->rb_left)
		node = parent;
	return parent;
}

/* The first node of a post-order walk of the subtree at @node. */
static struct rb_node *rb_leftmost_leaf(const struct rb_node *node)
{
	for (;;) {
		if (node->rb_left)
			node = node->rb_left;
		else if (node->rb_right)
			node = node->rb_right;
		else
			return (struct rb_node *)node;
	}
}

/**
 * rb_first_postorder - first node of a post-order (children first) walk.
 * @root: the tree.
 *
 * Return: that node, or NULL for an empty tree.
 * Context: caller serialises access to the tree.
 */
struct rb_node *rb_first_postorder(const struct rb_root *root)
{
	if (!root->rb_node)
		return NULL;
	return rb_leftmost_leaf(root->rb_node);
}

/**
 * rb_next_postorder - next node of a post-order walk.
 * @node: the current node; it may already have been freed by the caller
 *	only if its parent pointer was read first (rbtree_postorder_for_each
 *	_entry_safe() does that).
 *
 * Return: the next node, or NULL after the root.
 * Context: caller serialises access to the tree.
 */
struct rb_node *rb_next_postorder(const struct rb_node *node)
{
	struct rb_node *parent;

	if (!node)
		return NULL;
	parent = rb_parent(node);
	if (parent && node == parent->rb_left && parent->rb_right)
		return rb_leftmost_leaf(parent->rb_right);
	return parent;
}

/* Black height of the subtree at @node, or -1 after reporting a problem. */
static int rb_validate_subtree(const struct rb_node *node,
			       const struct rb_node *parent, int depth)
{
	int lh, rh;

	if (!node)
		return 1;
	if (depth > RB_VALIDATE_MAX_DEPTH) {
		fprintf(stderr, "rbtree: depth above %d (cycle?)\n",
			RB_VALIDATE_MAX_DEPTH);
		return -1;
	}
	if (node->__rb_parent_color & 2) {
		fprintf(stderr, "rbtree: node %p has stray bits %#lx\n",
			(void *)node, (unsigned long)node->__rb_parent_color);
		return -1;
	}
	if (rb_parent(node) != parent) {
		fprintf(stderr, "rbtree: node %p parent %p, expected %p\n",
			(void *)node, (void *)rb_parent(node), (void *)parent);
		return -1;
	}
	if (rb_is_red(node) &&
	    (rb_is_red(node->rb_left) || rb_is_red(node->rb_right))) {
		fprintf(stderr, "rbtree: red node %p has a red child\n",
			(void *)node);
		return -1;
	}
	lh = rb_validate_subtree(node->rb_left, node, depth + 1);
	if (lh < 0)
		return -1;
	rh = rb_validate_subtree(node->rb_right, node, depth + 1);
	if (rh < 0)
		return -1;
	if (lh != rh) {
		fprintf(stderr,
			"rbtree: node %p black heights differ (%d left, %d right)\n",
			(void *)node, lh, rh);
		return -1;
	}
	return lh + (rb_is_black(node) ? 1 : 0);
}

/**
 * rb_validate - check the red-black properties of a tree.
 * @root: the tree.
 *
 * Checks parent links, colours (black root, no red-red edge) and equal
 * black heights. Key order is the owner's business and is not checked.
 * The first problem found is printed on stderr.
 *
 * Return: 0 if the tree is sound, -EUCLEAN otherwise.
 * Context: caller serialises access to the tree.
 */
int rb_validate(const struct rb_root *root)
{
	const struct rb_node *top = root->rb_node;

	if (top && rb_is_red(top)) {
		fprintf(stderr, "rbtree: root %p is red\n", (const void *)top);
		return -EUCLEAN;
	}
	if (rb_validate_subtree(top, NULL, 0) < 0)
		return -EUCLEAN;
	return 0;
}

/* ------------------------------------------------------- interval tree */

static inline struct interval_tree_node *itn(const struct rb_node *rb)
{
	return rb_entry(rb, struct interval_tree_node, rb);
}

static void interval_tree_update(struct rb_node *rb)
{
	struct interval_tree_node *node = itn(rb);
	unsigned long max = node->last;

	if (rb->rb_left && itn(rb->rb_left)->__subtree_last > max)
		max = itn(rb->rb_left)->__subtree_last;
	if (rb->rb_right && itn(rb->rb_right)->__subtree_last > max)
		max = itn(rb->rb_right)->__subtree_last;
	node->__subtree_last = max;
}

/**
 * interval_tree_insert - add the closed interval [@node->start, @node->last].
 * @node: the node, with @start and @last set (@start <= @last).
 * @root: the tree.
 *
 * Intervals may overlap and may be equal; equal starts keep insertion
 * order.
 *
 * Context: caller serialises access to the tree.
 */
void interval_tree_insert(struct interval_tree_node *node,
			  struct rb_root *root)
{
	struct rb_node **link = &root->rb_node;
	struct rb_node *parent = NULL;

	HETMM_DEBUG_BUG_ON(node->start > node->last);
	while (*link) {
		parent = *link;
		if (node->start < itn(parent)->start)
			link = &parent->rb_left;
		else
			link = &parent->rb_right;
	}
	node->__subtree_last = node->last;
	rb_link_node(&node->rb, parent, link);
	rb_insert_augmented(&node->rb, root, interval_tree_update);
}

/**
 * interval_tree_remove - take @node out of the tree.
 * @node: a node currently in @root.
 * @root: the tree.
 *
 * Context: caller serialises access to the tree.
 */
void interval_tree_remove(struct interval_tree_node *node,
			  struct rb_root *root)
{
	rb_erase_augmented(&node->rb, root, interval_tree_update);
}

/*
 * In the subtree at @rb (whose __subtree_last is >= @start), find the
 * first node in start order with last >= @start; it overlaps
 * [@start, @last] iff its start <= @last, and if it does not, no later
 * node can (their starts are no smaller).
 */
static struct interval_tree_node *
interval_subtree_first(const struct rb_node *rb, unsigned long start,
		       unsigned long last)
{
	const struct interval_tree_node *node;

	for (;;) {
		node = itn(rb);
		if (rb->rb_left && itn(rb->rb_left)->__subtree_last >= start) {
			rb = rb->rb_left;
			continue;
		}
		if (node->start > last)
			return NULL;
		if (node->last >= start)
			return (struct interval_tree_node *)node;
		/* Only the right subtree can still reach @start. */
		rb = rb->rb_right;
		if (!rb || itn(rb)->__subtree_last < start)
			return NULL;
	}
}

/**
 * interval_tree_iter_first - first interval overlapping [@start, @last].
 * @root: the tree.
 * @start: first point of the query.
 * @last: last point of the query (inclusive).
 *
 * Return: the overlapping node with the smallest start, or NULL.
 * Context: caller serialises access to the tree.
 */
struct interval_tree_node *
interval_tree_iter_first(const struct rb_root *root, unsigned long start,
			 unsigned long last)
{
	const struct rb_node *rb = root->rb_node;

	if (!rb || itn(rb)->__subtree_last < start)
		return NULL;
	return interval_subtree_first(rb, start, last);
}

/**
 * interval_tree_iter_next - next interval overlapping [@start, @last].
 * @node: the previous result of interval_tree_iter_first() or _next().
 * @start: first point of the query, as passed before.
 * @last: last point of the query, as passed before.
 *
 * Return: the next overlapping node in start order, or NULL.
 * Context: caller serialises access to the tree; the tree must not change
 * between the calls of one iteration.
 */
struct interval_tree_node *
interval_tree_iter_next(const struct interval_tree_node *node,
			unsigned long start, unsigned long last)
{
	const struct rb_node *rb = node->rb.rb_right;
	const struct rb_node *prev;

	for (;;) {
		/* Everything after @rb's node in order: its right subtree... */
		if (rb && itn(rb)->__subtree_last >= start)
			return interval_subtree_first(rb, start, last);
		/* ...then the first ancestor we reach from its left side. */
		rb = &node->rb;
		do {
			prev = rb;
			rb = rb_parent(rb);
			if (!rb)
				return NULL;
		} while (prev == rb->rb_right);
		node = itn(rb);
		if (node->start > last)
			return NULL;
		if (node->last >= start)
			return (struct interval_tree_node *)node;
		rb = rb->rb_right;
	}
}

static int interval_validate_subtree(const struct rb_node *rb)
{
	const struct interval_tree_node *node;
	unsigned long hi;

	if (!rb)
		return 0;
	node = itn(rb);
	if (node->start > node->last) {
		fprintf(stderr, "interval_tree: node %p has start %#lx > last %#lx\n",
			(const void *)node, node->start, node->last);
		return -EUCLEAN;
	}
	hi = node->last;
	if (rb->rb_left) {
		if (itn(rb->rb_left)->start > node->start) {
			fprintf(stderr, "interval_tree: node %p out of order\n",
				(const void *)node);
			return -EUCLEAN;
		}
		hi = max(hi, itn(rb->rb_left)->__subtree_last);
	}
	if (rb->rb_right) {
		if (itn(rb->rb_right)->start < node->start) {
			fprintf(stderr, "interval_tree: node %p out of order\n",
				(const void *)node);
			return -EUCLEAN;
		}
		hi = max(hi, itn(rb->rb_right)->__subtree_last);
	}
	if (node->__subtree_last != hi) {
		fprintf(stderr,
			"interval_tree: node %p subtree_last %#lx, expected %#lx\n",
			(const void *)node, node->__subtree_last, hi);
		return -EUCLEAN;
	}
	if (interval_validate_subtree(rb->rb_left))
		return -EUCLEAN;
	return interval_validate_subtree(rb->rb_right);
}

/**
 * interval_tree_validate - rb_validate() plus interval-tree invariants.
 * @root: the tree.
 *
 * Also checks start <= last, local start order, and every
 * __subtree_last. The first problem found is printed on stderr.
 *
 * Return: 0 if the tree is sound, -EUCLEAN otherwise.
 * Context: caller serialises access to the tree.
 */
int interval_tree_validate(const struct rb_root *root)
{
	int ret = rb_validate(root);

	if (ret)
		return ret;
	return interval_validate_subtree(root->rb_node);
}
