// SPDX-License-Identifier: MIT
/*
 * rbtree_test.c - red-black tree and interval tree against shadow models.
 *
 * The randomized tests keep a plain array next to the tree (a presence
 * bitmap for keys, a list for intervals), run rb_validate() after every
 * step and compare lookups and in-order walks with the array.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include <hetmm/rbtree.h>

struct item {
	struct rb_node rb;
	unsigned long key;
	unsigned int seq;	/* insertion order, for duplicates */
};

static inline struct item *to_item(const struct rb_node *rb)
{
	return rb_entry(rb, struct item, rb);
}

static bool item_less(const struct rb_node *a, const struct rb_node *b)
{
	return to_item(a)->key < to_item(b)->key;
}

static int item_cmp(const struct rb_node *a, const struct rb_node *b)
{
	unsigned long ka = to_item(a)->key, kb = to_item(b)->key;

	return ka < kb ? -1 : ka > kb;
}

static int key_cmp(const void *key, const struct rb_node *rb)
{
	unsigned long k = *(const unsigned long *)key;
	unsigned long nk = to_item(rb)->key;

	return k < nk ? -1 : k > nk;
}

/* Walk forwards and backwards; both must list exactly the present keys. */
static void check_order(const struct rb_root *root, const bool *present,
			unsigned long nr_keys)
{
	const struct rb_node *rb = rb_first(root);
	unsigned long k;

	for (k = 0; k < nr_keys; k++) {
		if (!present[k])
			continue;
		assert_non_null(rb);
		assert_int_equal(to_item(rb)->key, k);
		rb = rb_next(rb);
	}
	assert_null(rb);

	rb = rb_last(root);
	for (k = nr_keys; k-- > 0;) {
		if (!present[k])
			continue;
		assert_non_null(rb);
		assert_int_equal(to_item(rb)->key, k);
		rb = rb_prev(rb);
	}
	assert_null(rb);
}

static void test_rb_empty(void **state)
{
	struct rb_root root = RB_ROOT;
	struct item it = { .key = 7 };
	unsigned long key = 7;

	(void)state;
	assert_true(RB_EMPTY_ROOT(&root));
	assert_null(rb_first(&root));
	assert_null(rb_last(&root));
	assert_null(rb_first_postorder(&root));
	assert_null(rb_find(&key, &root, key_cmp));
	assert_null(rb_find_first(&key, &root, key_cmp));
	ASSERT_OK(rb_validate(&root));

	RB_CLEAR_NODE(&it.rb);
	assert_true(RB_EMPTY_NODE(&it.rb));
	assert_null(rb_next(&it.rb));
	assert_null(rb_prev(&it.rb));

	rb_add(&it.rb, &root, item_less);
	assert_false(RB_EMPTY_ROOT(&root));
	assert_false(RB_EMPTY_NODE(&it.rb));
	assert_ptr_equal(rb_first(&root), &it.rb);
	assert_ptr_equal(rb_last(&root), &it.rb);
	ASSERT_OK(rb_validate(&root));
	rb_erase(&it.rb, &root);
	assert_true(RB_EMPTY_ROOT(&root));
}

/* Ascending then descending insertion: the worst cases for a plain BST. */
static void test_rb_sequential(void **state)
{
	enum { N = 2000 };
	struct item *items = calloc(N, sizeof(*items));
	struct rb_root root = RB_ROOT;
	struct rb_node *rb;
	unsigned long i;

	(void)state;
	assert_non_null(items);
	for (i = 0; i < N; i++) {
		items[i].key = i;
		rb_add(&items[i].rb, &root, item_less);
	}
	ASSERT_OK(rb_validate(&root));
	for (i = 0, rb = rb_first(&root); rb; rb = rb_next(rb), i++)
		assert_int_equal(to_item(rb)->key, i);
	assert_int_equal(i, N);
	/* Erase in order, always the minimum. */
	while ((rb = rb_first(&root))) {
		rb_erase(rb, &root);
		if (to_item(rb)->key % 97 == 0)
			ASSERT_OK(rb_validate(&root));
	}
	assert_true(RB_EMPTY_ROOT(&root));

	for (i = N; i-- > 0;)
		rb_add(&items[i].rb, &root, item_less);
	ASSERT_OK(rb_validate(&root));
	/* Erase from the maximum down. */
	while ((rb = rb_last(&root)))
		rb_erase(rb, &root);
	ASSERT_OK(rb_validate(&root));
	free(items);
}

static void test_rb_random_shadow(void **state)
{
	const unsigned long nr_keys = 512;
	unsigned int steps = test_scale(20000, 500000);
	struct item *items = calloc(nr_keys, sizeof(*items));
	bool *present = calloc(nr_keys, sizeof(*present));
	struct rb_root root = RB_ROOT;
	unsigned long k, lb, nr = 0;
	struct test_rng rng;
	struct rb_node *rb;
	unsigned int i;

	(void)state;
	assert_non_null(items);
	assert_non_null(present);
	test_rng_init(&rng, test_seed());
	for (k = 0; k < nr_keys; k++)
		items[k].key = k;

	for (i = 0; i < steps; i++) {
		k = test_rng_below(&rng, nr_keys);
		switch (test_rng_below(&rng, 4)) {
		case 0: /* insert with rb_add */
			if (present[k])
				break;
			rb_add(&items[k].rb, &root, item_less);
			present[k] = true;
			nr++;
			break;
		case 1: /* insert with rb_find_add */
			rb = rb_find_add(&items[k].rb, &root, item_cmp);
			if (present[k]) {
				assert_ptr_equal(rb, &items[k].rb);
			} else {
				assert_null(rb);
				present[k] = true;
				nr++;
			}
			break;
		case 2: /* erase */
			if (!present[k])
				break;
			rb_erase(&items[k].rb, &root);
			RB_CLEAR_NODE(&items[k].rb);
			present[k] = false;
			nr--;
			break;
		default: /* lookups */
			rb = rb_find(&k, &root, key_cmp);
			assert_ptr_equal(rb, present[k] ? &items[k].rb : NULL);
			for (lb = k; lb < nr_keys && !present[lb]; lb++)
				;
			rb = rb_find_first(&k, &root, key_cmp);
			assert_ptr_equal(rb, lb < nr_keys ? &items[lb].rb : NULL);
			break;
		}
		ASSERT_OK(rb_validate(&root));
		if (i % 256 == 0)
			check_order(&root, present, nr_keys);
	}
	check_order(&root, present, nr_keys);
	assert_int_equal(RB_EMPTY_ROOT(&root), nr == 0);
	free(present);
	free(items);
}

/* Equal keys: rb_add keeps insertion order, rb_find_first finds the first. */
static void test_rb_duplicates(void **state)
{
	enum { N = 64 };
	struct item items[N];
	struct rb_root root = RB_ROOT;
	struct rb_node *rb;
	unsigned long key = 3;
	unsigned int i, seq;

	(void)state;
	for (i = 0; i < N; i++) {
		items[i].key = i % 8;
		items[i].seq = i;
		rb_add(&items[i].rb, &root, item_less);
	}
	ASSERT_OK(rb_validate(&root));
	rb = rb_find_first(&key, &root, key_cmp);
	assert_ptr_equal(rb, &items[3].rb);
	for (i = 0; i < N / 8; i++, rb = rb_next(rb)) {
		assert_int_equal(to_item(rb)->key, 3);
		assert_int_equal(to_item(rb)->seq, 3 + 8 * i);
	}
	assert_int_equal(to_item(rb)->key, 4);

	/* Whole walk: keys non-decreasing, ties in insertion order. */
	seq = 0;
	key = 0;
	for (rb = rb_first(&root); rb; rb = rb_next(rb)) {
		if (to_item(rb)->key != key) {
			assert_true(to_item(rb)->key > key);
			key = to_item(rb)->key;
		} else if (rb != rb_first(&root)) {
			assert_true(to_item(rb)->seq > seq);
		}
		seq = to_item(rb)->seq;
	}
	key = 8;
	assert_null(rb_find_first(&key, &root, key_cmp));
}

static void test_rb_replace_node(void **state)
{
	enum { N = 100 };
	struct item items[N], spare;
	struct rb_root root = RB_ROOT;
	struct rb_node *rb;
	unsigned long k;
	unsigned int i;

	(void)state;
	for (i = 0; i < N; i++) {
		items[i].key = i * 2;
		rb_add(&items[i].rb, &root, item_less);
	}
	/* Replace the root, a leaf and the maximum in turn. */
	for (i = 0; i < 3; i++) {
		struct rb_node *victim = i == 0 ? root.rb_node :
					 i == 1 ? rb_first(&root) :
						  rb_last(&root);

		spare.key = to_item(victim)->key;
		rb_replace_node(victim, &spare.rb, &root);
		ASSERT_OK(rb_validate(&root));
		k = spare.key;
		assert_ptr_equal(rb_find(&k, &root, key_cmp), &spare.rb);
		/* Put the original back. */
		rb_replace_node(&spare.rb, victim, &root);
		ASSERT_OK(rb_validate(&root));
		assert_ptr_equal(rb_find(&k, &root, key_cmp), victim);
	}
	for (i = 0, rb = rb_first(&root); rb; rb = rb_next(rb), i++)
		assert_ptr_equal(rb, &items[i].rb);
	assert_int_equal(i, N);
}

static void test_rb_postorder_teardown(void **state)
{
	enum { N = 300 };
	struct rb_root root = RB_ROOT;
	struct item *pos, *n;
	struct test_rng rng;
	unsigned int i, freed = 0;

	(void)state;
	test_rng_init(&rng, test_seed() + 1);
	for (i = 0; i < N; i++) {
		struct item *it = malloc(sizeof(*it));

		assert_non_null(it);
		it->key = test_rng_below(&rng, 1000);
		rb_add(&it->rb, &root, item_less);
	}
	/* Children come before parents: freeing as we go must be safe. */
	rbtree_postorder_for_each_entry_safe(pos, n, &root, rb) {
		free(pos);
		freed++;
	}
	assert_int_equal(freed, N);
}

/* Corruptions the validator must notice. */
static void test_rb_validate_detects(void **state)
{
	enum { N = 32 };
	struct item items[N];
	struct rb_root root = RB_ROOT;
	struct rb_node *rb, *saved;
	uintptr_t pc;
	unsigned int i;

	(void)state;
	for (i = 0; i < N; i++) {
		items[i].key = i;
		rb_add(&items[i].rb, &root, item_less);
	}
	ASSERT_OK(rb_validate(&root));

	/* Flip the root's colour to red. */
	rb = root.rb_node;
	rb->__rb_parent_color ^= 1;
	assert_int_equal(rb_validate(&root), -EUCLEAN);
	rb->__rb_parent_color ^= 1;
	ASSERT_OK(rb_validate(&root));

	/* Break a parent link. */
	rb = rb_first(&root);
	pc = rb->__rb_parent_color;
	rb->__rb_parent_color = (uintptr_t)&items[N - 1].rb | (pc & 1);
	assert_int_equal(rb_validate(&root), -EUCLEAN);
	rb->__rb_parent_color = pc;
	ASSERT_OK(rb_validate(&root));

	/* Unbalance black heights by dropping a subtree. */
	saved = root.rb_node->rb_left;
	root.rb_node->rb_left = NULL;
	assert_int_equal(rb_validate(&root), -EUCLEAN);
	root.rb_node->rb_left = saved;
	ASSERT_OK(rb_validate(&root));
}

/* ---------------------------------------- lower bound as a VMA lookup */

struct range {
	struct rb_node rb;
	unsigned long start, end;	/* [start, end) */
};

static bool range_less(const struct rb_node *a, const struct rb_node *b)
{
	return rb_entry(a, struct range, rb)->start <
	       rb_entry(b, struct range, rb)->start;
}

/* 0 inside, <0 before, >0 at or after the end: lower bound = end > addr. */
static int addr_cmp(const void *key, const struct rb_node *rb)
{
	unsigned long addr = *(const unsigned long *)key;
	const struct range *r = rb_entry(rb, struct range, rb);

	if (addr >= r->end)
		return 1;
	return addr < r->start ? -1 : 0;
}

static void test_rb_find_first_ranges(void **state)
{
	/*
	 *   0    10   20   30   40   50   60
	 *   |    AAAAA     BB   CCCCC          (A=[10,20) B=[30,35) C=[40,50))
	 */
	struct range r[3] = {
		{ .start = 10, .end = 20 },
		{ .start = 30, .end = 35 },
		{ .start = 40, .end = 50 },
	};
	static const struct {
		unsigned long addr;
		int want;	/* index into r[], -1 for none */
	} cases[] = {
		{ 0, 0 }, { 9, 0 }, { 10, 0 }, { 19, 0 }, { 20, 1 }, { 34, 1 },
		{ 35, 2 }, { 49, 2 }, { 50, -1 }, { ~0UL, -1 },
	};
	struct rb_root root = RB_ROOT;
	struct rb_node *rb;
	unsigned int i;

	(void)state;
	for (i = 0; i < 3; i++)
		rb_add(&r[i].rb, &root, range_less);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		rb = rb_find_first(&cases[i].addr, &root, addr_cmp);
		if (cases[i].want < 0)
			assert_null(rb);
		else
			assert_ptr_equal(rb, &r[cases[i].want].rb);
	}
}

/* ------------------------------------------------------ interval tree */

static bool overlaps(const struct interval_tree_node *n, unsigned long start,
		     unsigned long last)
{
	return n->start <= last && n->last >= start;
}

/* Query [start, last] and compare with a brute-force scan of @nodes. */
static void check_query(const struct rb_root *root,
			const struct interval_tree_node *nodes,
			const bool *in, unsigned int nr, unsigned long start,
			unsigned long last)
{
	const struct interval_tree_node *it, *prev = NULL;
	unsigned int i, want = 0, got = 0;

	for (i = 0; i < nr; i++)
		if (in[i] && overlaps(&nodes[i], start, last))
			want++;
	for (it = interval_tree_iter_first(root, start, last); it;
	     it = interval_tree_iter_next(it, start, last)) {
		assert_true(overlaps(it, start, last));
		assert_true(in[it - nodes]);
		if (prev)
			assert_true(prev->start <= it->start);
		prev = it;
		got++;
	}
	assert_int_equal(got, want);
}

static void test_interval_tree_random(void **state)
{
	enum { NR = 200, SPACE = 1000 };
	unsigned int steps = test_scale(10000, 200000);
	struct interval_tree_node *nodes = calloc(NR, sizeof(*nodes));
	bool *in = calloc(NR, sizeof(*in));
	struct rb_root root = RB_ROOT;
	unsigned long a, b;
	struct test_rng rng;
	unsigned int i, k;

	(void)state;
	assert_non_null(nodes);
	assert_non_null(in);
	test_rng_init(&rng, test_seed() + 2);
	for (i = 0; i < steps; i++) {
		k = test_rng_below(&rng, NR);
		if (!in[k]) {
			a = test_rng_below(&rng, SPACE);
			/* Mostly short intervals, some long ones. */
			b = a + (test_rng_below(&rng, 8) ?
				 test_rng_below(&rng, 20) :
				 test_rng_below(&rng, SPACE));
			nodes[k].start = a;
			nodes[k].last = b;
			interval_tree_insert(&nodes[k], &root);
			in[k] = true;
		} else {
			interval_tree_remove(&nodes[k], &root);
			in[k] = false;
		}
		ASSERT_OK(interval_tree_validate(&root));
		a = test_rng_below(&rng, SPACE + 50);
		b = a + test_rng_below(&rng, 60);
		check_query(&root, nodes, in, NR, a, b);
	}
	check_query(&root, nodes, in, NR, 0, ~0UL);
	check_query(&root, nodes, in, NR, ~0UL, ~0UL);
	free(in);
	free(nodes);
}

static void test_interval_tree_edges(void **state)
{
	struct interval_tree_node a = { .start = 0, .last = ~0UL };
	struct interval_tree_node b = { .start = 5, .last = 5 };
	struct interval_tree_node c = { .start = ~0UL, .last = ~0UL };
	struct rb_root root = RB_ROOT;
	struct interval_tree_node *it;

	(void)state;
	assert_null(interval_tree_iter_first(&root, 0, ~0UL));
	interval_tree_insert(&b, &root);
	assert_null(interval_tree_iter_first(&root, 0, 4));
	assert_null(interval_tree_iter_first(&root, 6, ~0UL));
	assert_ptr_equal(interval_tree_iter_first(&root, 5, 5), &b);
	interval_tree_insert(&a, &root);
	interval_tree_insert(&c, &root);
	ASSERT_OK(interval_tree_validate(&root));

	it = interval_tree_iter_first(&root, 6, ~0UL);
	assert_ptr_equal(it, &a);
	it = interval_tree_iter_next(it, 6, ~0UL);
	assert_ptr_equal(it, &c);
	assert_null(interval_tree_iter_next(it, 6, ~0UL));

	interval_tree_remove(&a, &root);
	ASSERT_OK(interval_tree_validate(&root));
	assert_null(interval_tree_iter_first(&root, 6, ~0UL - 1));
	interval_tree_remove(&b, &root);
	interval_tree_remove(&c, &root);
	assert_true(RB_EMPTY_ROOT(&root));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rb_empty),
		cmocka_unit_test(test_rb_sequential),
		cmocka_unit_test(test_rb_random_shadow),
		cmocka_unit_test(test_rb_duplicates),
		cmocka_unit_test(test_rb_replace_node),
		cmocka_unit_test(test_rb_postorder_teardown),
		cmocka_unit_test(test_rb_validate_detects),
		cmocka_unit_test(test_rb_find_first_ranges),
		cmocka_unit_test(test_interval_tree_random),
		cmocka_unit_test(test_interval_tree_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
