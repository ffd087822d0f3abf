/* SPDX-License-Identifier: MIT */
/*
 * hetmm/rbtree.h - intrusive red-black trees and an interval tree on top.
 *
 * Map:
 *   struct rb_node            embedded in the user's object; parent pointer
 *                             and colour share one word, plus two children
 *   struct rb_root            the tree: a pointer to the root node
 *   struct interval_tree_node rb_node plus a closed interval [start, last]
 *                             and the largest @last of its subtree
 *
 * The tree never compares keys itself. The caller walks down to the place
 * where the new node belongs, links it with rb_link_node() and then asks
 * rb_insert_color() to rebalance. The inline helpers rb_add(), rb_find(),
 * rb_find_add() and rb_find_first() do that walk with a comparison
 * callback that the compiler can inline.
 *
 * Augmented trees keep a per-node value computed from the node and its
 * two children (for example the largest interval end in a subtree). The
 * caller supplies one function, update(node), that recomputes the value
 * of @node from its own data and its children's values; the tree calls it
 * bottom-up on every node whose subtree changed.
 *
 * Context: nothing here locks. The caller serialises every mutation and
 * every walk with whatever lock protects the tree.
 */
#ifndef HETMM_RBTREE_H
#define HETMM_RBTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

/**
 * struct rb_node - a node of a red-black tree, embedded in its owner.
 * @__rb_parent_color: private; the parent pointer with the colour in bit 0
 *	(0 red, 1 black). A node detached with RB_CLEAR_NODE() points to
 *	itself. Read it through rb_parent() and RB_EMPTY_NODE().
 * @rb_right: right child (larger keys) or NULL.
 * @rb_left: left child (smaller keys) or NULL.
 */
struct rb_node {
	uintptr_t __rb_parent_color;
	struct rb_node *rb_right;
	struct rb_node *rb_left;
};

/**
 * struct rb_root - a red-black tree.
 * @rb_node: the root node, NULL for an empty tree.
 */
struct rb_root {
	struct rb_node *rb_node;
};

#define RB_ROOT ((struct rb_root){ NULL })

#define rb_entry(ptr, type, member) container_of(ptr, type, member)
/* Like rb_entry() but passes NULL through. */
#define rb_entry_safe(ptr, type, member)                                   \
	({                                                                 \
		__typeof__(ptr) ____p = (ptr);                             \
		____p ? rb_entry(____p, type, member) : NULL;              \
	})

#define RB_EMPTY_ROOT(root) ((root)->rb_node == NULL)
/* True for a node that was cleared with RB_CLEAR_NODE() (not in a tree). */
#define RB_EMPTY_NODE(node) \
	((node)->__rb_parent_color == (uintptr_t)(node))
#define RB_CLEAR_NODE(node) \
	((node)->__rb_parent_color = (uintptr_t)(node))

/* Parent of @node, NULL for the root. */
static inline struct rb_node *rb_parent(const struct rb_node *node)
{
	return (struct rb_node *)(node->__rb_parent_color & ~(uintptr_t)3);
}

/**
 * rb_link_node - hang a new node under @parent at the slot @rb_link.
 * @node: the node to insert; its previous contents are ignored.
 * @parent: the future parent, NULL when the tree is empty.
 * @rb_link: &parent->rb_left, &parent->rb_right, or &root->rb_node.
 *
 * The node starts red with no children; call rb_insert_color() next.
 *
 * Context: caller serialises access to the tree.
 */
static inline void rb_link_node(struct rb_node *node, struct rb_node *parent,
				struct rb_node **rb_link)
{
	node->__rb_parent_color = (uintptr_t)parent;
	node->rb_left = NULL;
	node->rb_right = NULL;
	*rb_link = node;
}

void rb_insert_color(struct rb_node *node, struct rb_root *root);
void rb_erase(struct rb_node *node, struct rb_root *root);
void rb_replace_node(struct rb_node *victim, struct rb_node *new,
		     struct rb_root *root);

struct rb_node *rb_first(const struct rb_root *root);
struct rb_node *rb_last(const struct rb_root *root);
struct rb_node *rb_next(const struct rb_node *node);
struct rb_node *rb_prev(const struct rb_node *node);

struct rb_node *rb_first_postorder(const struct rb_root *root);
struct rb_node *rb_next_postorder(const struct rb_node *node);

int rb_validate(const struct rb_root *root);

/* Recomputes the augmented value of @node from it and its children. */
typedef void (*rb_augment_update_fn)(struct rb_node *node);

void rb_insert_augmented(struct rb_node *node, struct rb_root *root,
			 rb_augment_update_fn update);
void rb_erase_augmented(struct rb_node *node, struct rb_root *root,
			rb_augment_update_fn update);

/*
 * Visit every entry in post-order (children before parents); the body may
 * free @pos, which makes this the way to tear a whole tree down.
 */
#define rbtree_postorder_for_each_entry_safe(pos, n, root, field)          \
	for (pos = rb_entry_safe(rb_first_postorder(root),                  \
				 __typeof__(*pos), field);                  \
	     pos && ({                                                      \
		     n = rb_entry_safe(rb_next_postorder(&pos->field),      \
				       __typeof__(*pos), field);            \
		     1;                                                     \
	     });                                                            \
	     pos = n)

/**
 * rb_add - insert @node into an ordered tree.
 * @node: the node to insert.
 * @tree: the tree.
 * @less: strict order between two nodes; equal keys go to the right, so
 *	duplicates keep insertion order.
 *
 * Context: caller serialises access to the tree.
 */
static inline void rb_add(struct rb_node *node, struct rb_root *tree,
			  bool (*less)(const struct rb_node *,
				       const struct rb_node *))
{
	struct rb_node **link = &tree->rb_node;
	struct rb_node *parent = NULL;

	while (*link) {
		parent = *link;
		if (less(node, parent))
			link = &parent->rb_left;
		else
			link = &parent->rb_right;
	}
	rb_link_node(node, parent, link);
	rb_insert_color(node, tree);
}

/**
 * rb_find_add - insert @node unless a node with an equal key exists.
 * @node: the node to insert.
 * @tree: the tree.
 * @cmp: three-way comparison of two nodes (<0, 0, >0).
 *
 * Return: the existing node with an equal key (and @node is not
 * inserted), or NULL once @node has been inserted.
 * Context: caller serialises access to the tree.
 */
static inline struct rb_node *
rb_find_add(struct rb_node *node, struct rb_root *tree,
	    int (*cmp)(const struct rb_node *, const struct rb_node *))
{
	struct rb_node **link = &tree->rb_node;
	struct rb_node *parent = NULL;
	int c;

	while (*link) {
		parent = *link;
		c = cmp(node, parent);
		if (c < 0)
			link = &parent->rb_left;
		else if (c > 0)
			link = &parent->rb_right;
		else
			return parent;
	}
	rb_link_node(node, parent, link);
	rb_insert_color(node, tree);
	return NULL;
}

/**
 * rb_find - look a key up.
 * @key: the key, passed through to @cmp.
 * @tree: the tree.
 * @cmp: compares @key with a node: <0 if the key sorts before the node,
 *	0 if it matches, >0 if it sorts after.
 *
 * Return: a node matching @key (any one of several equal nodes), or NULL.
 * Context: caller serialises access to the tree.
 */
static inline struct rb_node *
rb_find(const void *key, const struct rb_root *tree,
	int (*cmp)(const void *key, const struct rb_node *))
{
	struct rb_node *node = tree->rb_node;
	int c;

	while (node) {
		c = cmp(key, node);
		if (c < 0)
			node = node->rb_left;
		else if (c > 0)
			node = node->rb_right;
		else
			return node;
	}
	return NULL;
}

/**
 * rb_find_first - lower bound: the first node that does not sort before @key.
 * @key: the key, passed through to @cmp.
 * @tree: the tree.
 * @cmp: as for rb_find().
 *
 * Unlike the kernel helper of the same name, which only returns an exact
 * match, this returns the leftmost node with cmp(@key, node) <= 0: the
 * leftmost match if there is one, else the first node after @key. With
 * cmp(addr, vma) = addr < vma->end ? (addr < vma->start ? -1 : 0) : 1 it
 * finds the first VMA ending above @addr.
 *
 * Return: that node, or NULL if every node sorts before @key.
 * Context: caller serialises access to the tree.
 */
static inline struct rb_node *
rb_find_first(const void *key, const struct rb_root *tree,
	      int (*cmp)(const void *key, const struct rb_node *))
{
	struct rb_node *node = tree->rb_node;
	struct rb_node *best = NULL;

	while (node) {
		if (cmp(key, node) <= 0) {
			best = node;
			node = node->rb_left;
		} else {
			node = node->rb_right;
		}
	}
	return best;
}

/* ------------------------------------------------------- interval tree */

/**
 * struct interval_tree_node - a closed interval kept in an augmented tree.
 * @rb: tree linkage, ordered by @start (equal starts keep insertion order).
 * @start: first point of the interval.
 * @last: last point of the interval (inclusive, @last >= @start).
 * @__subtree_last: private; the largest @last in this node's subtree,
 *	maintained by interval_tree_insert() and interval_tree_remove().
 */
struct interval_tree_node {
	struct rb_node rb;
	unsigned long start;
	unsigned long last;
	unsigned long __subtree_last;
};

void interval_tree_insert(struct interval_tree_node *node,
			  struct rb_root *root);
void interval_tree_remove(struct interval_tree_node *node,
			  struct rb_root *root);
struct interval_tree_node *
interval_tree_iter_first(const struct rb_root *root, unsigned long start,
			 unsigned long last);
struct interval_tree_node *
interval_tree_iter_next(const struct interval_tree_node *node,
			unsigned long start, unsigned long last);
int interval_tree_validate(const struct rb_root *root);

#endif /* HETMM_RBTREE_H */
