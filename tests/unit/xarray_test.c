// SPDX-License-Identifier: MIT
/*
 * xarray_test.c - the sparse index against a shadow array.
 *
 * Every test starts from the process-wide live-node count and checks,
 * after xa_destroy() and rcu_barrier(), that it is back where it was.
 * The randomized test keeps a sorted list of candidate indices with their
 * entries and marks and runs xa_validate() after every step.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include <hetmm/rcu.h>
#include <hetmm/xarray.h>

/* Pointer entries point into here (8-byte aligned). */
static long objs[64];

#define PTR(i) ((void *)&objs[(i)])

/* Live nodes with no array alive; every test must end with this count. */
static long live_baseline(void)
{
	rcu_barrier();
	return xa_live_nodes_total();
}

static void finish(struct xarray *xa, long baseline)
{
	ASSERT_OK(xa_validate(xa));
	xa_destroy(xa);
	assert_int_equal(xa_nr_nodes(xa), 0);
	assert_true(xa_empty(xa));
	rcu_barrier();
	assert_int_equal(xa_live_nodes_total(), baseline);
}

static void test_xa_basic_indices(void **state)
{
	static const unsigned long idx[] = {
		0, 1, 63, 64, 65, 4095, 4096, 262143, 262144, 1UL << 32,
		(1UL << 60) - 1, 1UL << 60, ULONG_MAX - 64, ULONG_MAX - 1,
		ULONG_MAX,
	};
	long base = live_baseline();
	struct xarray xa;
	unsigned int i, j;
	int err = 1;

	(void)state;
	xa_init(&xa);
	assert_true(xa_empty(&xa));
	assert_null(xa_load(&xa, 0));
	assert_null(xa_load(&xa, ULONG_MAX));
	ASSERT_OK(xa_validate(&xa));

	for (i = 0; i < ARRAY_SIZE(idx); i++) {
		ASSERT_OK(xa_store(&xa, idx[i], PTR(i)));
		ASSERT_OK(xa_validate(&xa));
		for (j = 0; j < ARRAY_SIZE(idx); j++)
			assert_ptr_equal(xa_load(&xa, idx[j]),
					 j <= i ? PTR(j) : NULL);
		/* Neighbours stay empty. */
		if (idx[i] != ULONG_MAX && (i + 1 == ARRAY_SIZE(idx) ||
					    idx[i + 1] != idx[i] + 1))
			assert_null(xa_load(&xa, idx[i] + 1));
	}
	/* Overwrite returns the old entry. */
	assert_ptr_equal(xa_store_old(&xa, 64, PTR(40), &err), PTR(3));
	assert_int_equal(err, 0);
	assert_ptr_equal(xa_load(&xa, 64), PTR(40));

	/* Erase in a scrambled order; the tree shrinks back to nothing. */
	for (i = 0; i < ARRAY_SIZE(idx); i++) {
		j = (i * 7) % ARRAY_SIZE(idx);
		assert_non_null(xa_erase(&xa, idx[j]));
		assert_null(xa_erase(&xa, idx[j]));
		assert_null(xa_load(&xa, idx[j]));
		ASSERT_OK(xa_validate(&xa));
	}
	assert_true(xa_empty(&xa));
	assert_int_equal(xa_nr_nodes(&xa), 0);
	finish(&xa, base);
}

/* Height grows to 11 levels for ULONG_MAX and shrinks when it goes. */
static void test_xa_height(void **state)
{
	long base = live_baseline();
	struct xarray xa;

	(void)state;
	xa_init(&xa);
	ASSERT_OK(xa_store(&xa, 5, PTR(0)));
	assert_int_equal(xa_nr_nodes(&xa), 1);
	ASSERT_OK(xa_store(&xa, 64, PTR(1)));
	assert_int_equal(xa_nr_nodes(&xa), 3);	/* root + 2 leaves */
	ASSERT_OK(xa_store(&xa, ULONG_MAX, PTR(2)));
	/* 11 levels: 2 leaves + 1 node at shift 6 under slot 0, plus a
	 * 9-node column grown on top and a 10-node path to ULONG_MAX. */
	assert_int_equal(xa_nr_nodes(&xa), 3 + 9 + 10);
	ASSERT_OK(xa_validate(&xa));
	assert_ptr_equal(xa_erase(&xa, ULONG_MAX), PTR(2));
	assert_int_equal(xa_nr_nodes(&xa), 3);
	assert_ptr_equal(xa_erase(&xa, 64), PTR(1));
	assert_int_equal(xa_nr_nodes(&xa), 1);
	ASSERT_OK(xa_validate(&xa));
	assert_ptr_equal(xa_load(&xa, 5), PTR(0));
	assert_ptr_equal(xa_erase(&xa, 5), PTR(0));
	assert_int_equal(xa_nr_nodes(&xa), 0);
	/* A store of NULL is an erase and allocates nothing. */
	ASSERT_OK(xa_store(&xa, 1UL << 50, NULL));
	assert_int_equal(xa_nr_nodes(&xa), 0);
	finish(&xa, base);
}

static void test_xa_value_entries(void **state)
{
	long base = live_baseline();
	struct xarray xa;
	void *e;

	(void)state;
	xa_init(&xa);
	e = xa_mk_value(0);
	assert_non_null(e);
	assert_true(xa_is_value(e));
	assert_int_equal(xa_to_value(e), 0);
	e = xa_mk_value(LONG_MAX);
	assert_true(xa_is_value(e));
	assert_int_equal(xa_to_value(e), LONG_MAX);
	assert_false(xa_is_value(PTR(1)));

	ASSERT_OK(xa_store(&xa, 10, xa_mk_value(0)));
	ASSERT_OK(xa_store(&xa, 11, xa_mk_value(LONG_MAX)));
	ASSERT_OK(xa_store(&xa, ULONG_MAX, xa_mk_value(0x1234)));
	e = xa_load(&xa, 10);
	assert_true(xa_is_value(e));
	assert_int_equal(xa_to_value(e), 0);
	assert_int_equal(xa_to_value(xa_load(&xa, 11)), LONG_MAX);
	assert_int_equal(xa_to_value(xa_load(&xa, ULONG_MAX)), 0x1234);
	ASSERT_OK(xa_validate(&xa));
	finish(&xa, base);
}

static void test_xa_invalid_entries(void **state)
{
	long base = live_baseline();
	struct xarray xa;
	void *bad = (void *)((char *)PTR(0) + 2);
	int err = 0;

	(void)state;
	xa_init(&xa);
	assert_int_equal(xa_store(&xa, 3, bad), -EINVAL);
	assert_null(xa_store_old(&xa, 3, bad, &err));
	assert_int_equal(err, -EINVAL);
	assert_int_equal(xa_insert(&xa, 3, bad), -EINVAL);
	assert_int_equal(xa_insert(&xa, 3, NULL), -EINVAL);
	assert_null(xa_cmpxchg(&xa, 3, NULL, bad, &err));
	assert_int_equal(err, -EINVAL);
	assert_true(xa_empty(&xa));
	assert_int_equal(xa_nr_nodes(&xa), 0);
	finish(&xa, base);
}

static void test_xa_insert_cmpxchg(void **state)
{
	long base = live_baseline();
	struct xarray xa;
	int err = 1;

	(void)state;
	xa_init(&xa);
	ASSERT_OK(xa_insert(&xa, 4096, PTR(1)));
	assert_int_equal(xa_insert(&xa, 4096, PTR(2)), -EBUSY);
	assert_ptr_equal(xa_load(&xa, 4096), PTR(1));

	/* Mismatch: nothing changes, the current entry comes back. */
	assert_ptr_equal(xa_cmpxchg(&xa, 4096, PTR(2), PTR(3), &err), PTR(1));
	assert_int_equal(err, 0);
	assert_ptr_equal(xa_load(&xa, 4096), PTR(1));
	/* Match: replaced. */
	assert_ptr_equal(xa_cmpxchg(&xa, 4096, PTR(1), PTR(3), &err), PTR(1));
	assert_int_equal(err, 0);
	assert_ptr_equal(xa_load(&xa, 4096), PTR(3));
	/* NULL as old: insert-if-absent; NULL as new: erase. */
	assert_null(xa_cmpxchg(&xa, 7, NULL, xa_mk_value(7), &err));
	assert_int_equal(xa_to_value(xa_load(&xa, 7)), 7);
	assert_ptr_equal(xa_cmpxchg(&xa, 7, NULL, PTR(4), NULL),
			 xa_mk_value(7));
	assert_ptr_equal(xa_cmpxchg(&xa, 7, xa_mk_value(7), NULL, &err),
			 xa_mk_value(7));
	assert_int_equal(err, 0);
	assert_null(xa_load(&xa, 7));
	ASSERT_OK(xa_validate(&xa));

	/* The __ variants under an explicit lock. */
	xa_lock(&xa);
	ASSERT_OK(__xa_store(&xa, 9, PTR(9)));
	assert_int_equal(__xa_insert(&xa, 9, PTR(8)), -EBUSY);
	__xa_set_mark(&xa, 9, XA_MARK_1);
	assert_ptr_equal(__xa_erase(&xa, 9), PTR(9));
	xa_unlock(&xa);
	assert_false(xa_get_mark(&xa, 9, XA_MARK_1));
	finish(&xa, base);
}

static void test_xa_marks(void **state)
{
	long base = live_baseline();
	struct xarray xa;
	unsigned long index, i;
	unsigned int n;
	void *e;

	(void)state;
	xa_init(&xa);
	/* Marks on absent entries are ignored. */
	xa_set_mark(&xa, 5, XA_MARK_0);
	assert_false(xa_get_mark(&xa, 5, XA_MARK_0));
	assert_true(xa_empty(&xa));

	for (i = 0; i < 10000; i += 3)
		ASSERT_OK(xa_store(&xa, i, xa_mk_value(i)));
	ASSERT_OK(xa_store(&xa, ULONG_MAX, PTR(0)));
	xa_set_mark(&xa, 4999, XA_MARK_0);	/* absent: no-op */
	xa_set_mark(&xa, 4998, XA_MARK_0);
	xa_set_mark(&xa, 9999, XA_MARK_0);
	xa_set_mark(&xa, ULONG_MAX, XA_MARK_0);
	xa_set_mark(&xa, 3, XA_MARK_2);
	ASSERT_OK(xa_validate(&xa));
	assert_true(xa_get_mark(&xa, 4998, XA_MARK_0));
	assert_false(xa_get_mark(&xa, 4998, XA_MARK_1));
	assert_false(xa_get_mark(&xa, 4999, XA_MARK_0));
	assert_false(xa_get_mark(&xa, 5001, XA_MARK_0));
	assert_false(xa_get_mark(&xa, 3, XA_MARK_0));
	assert_true(xa_get_mark(&xa, 3, XA_MARK_2));

	/* Marked search skips everything unmarked. */
	index = 0;
	e = xa_find(&xa, &index, ULONG_MAX, XA_MARK_0);
	assert_int_equal(index, 4998);
	assert_int_equal(xa_to_value(e), 4998);
	e = xa_find_after(&xa, &index, ULONG_MAX, XA_MARK_0);
	assert_int_equal(index, 9999);
	e = xa_find_after(&xa, &index, ULONG_MAX, XA_MARK_0);
	assert_int_equal(index, ULONG_MAX);
	assert_ptr_equal(e, PTR(0));
	assert_null(xa_find_after(&xa, &index, ULONG_MAX, XA_MARK_0));
	assert_int_equal(index, ULONG_MAX);
	index = 5000;
	assert_null(xa_find(&xa, &index, 9998, XA_MARK_0));

	n = 0;
	xa_for_each_marked(&xa, index, e, XA_MARK_0)
		n++;
	assert_int_equal(n, 3);

	/* Clearing propagates: the subtree bit goes when its last mark does. */
	xa_clear_mark(&xa, 9999, XA_MARK_0);
	assert_false(xa_get_mark(&xa, 9999, XA_MARK_0));
	ASSERT_OK(xa_validate(&xa));
	/* Erasing an entry clears its marks; a new store starts unmarked. */
	assert_non_null(xa_erase(&xa, 4998));
	ASSERT_OK(xa_validate(&xa));
	ASSERT_OK(xa_store(&xa, 4998, PTR(1)));
	assert_false(xa_get_mark(&xa, 4998, XA_MARK_0));
	/* Replacing keeps the marks. */
	ASSERT_OK(xa_store(&xa, ULONG_MAX, PTR(2)));
	assert_true(xa_get_mark(&xa, ULONG_MAX, XA_MARK_0));
	index = 0;
	assert_ptr_equal(xa_find(&xa, &index, ULONG_MAX, XA_MARK_0), PTR(2));
	assert_int_equal(index, ULONG_MAX);
	ASSERT_OK(xa_validate(&xa));
	finish(&xa, base);
}

static void test_xa_range_iteration(void **state)
{
	long base = live_baseline();
	struct xarray xa;
	unsigned long index, expect;
	unsigned int n;
	void *e;

	(void)state;
	xa_init(&xa);
	for (index = 100; index < 5000; index += 7)
		ASSERT_OK(xa_store(&xa, index, xa_mk_value(index)));
	ASSERT_OK(xa_store(&xa, ULONG_MAX - 1, PTR(1)));
	ASSERT_OK(xa_store(&xa, ULONG_MAX, PTR(2)));

	n = 0;
	expect = 100;
	xa_for_each(&xa, index, e) {
		if (expect < 5000) {
			assert_int_equal(index, expect);
			assert_int_equal(xa_to_value(e), index);
			expect += 7;
		}
		n++;
	}
	assert_int_equal(n, (5000 - 100 + 6) / 7 + 2);

	/* [1000, 2000]: first entry is 1003 (100 + 7 * 129). */
	n = 0;
	expect = 1003;
	xa_for_each_range(&xa, index, e, 1000, 2000) {
		assert_int_equal(index, expect);
		expect += 7;
		n++;
	}
	assert_true(expect - 7 <= 2000 && expect > 2000);
	assert_int_equal(n, (1997 - 1003) / 7 + 1);

	/* Single-index ranges and the top of the index space. */
	n = 0;
	xa_for_each_range(&xa, index, e, 1003, 1003)
		n++;
	assert_int_equal(n, 1);
	n = 0;
	xa_for_each_range(&xa, index, e, 1004, 1009)
		n++;
	assert_int_equal(n, 0);
	n = 0;
	xa_for_each_range(&xa, index, e, ULONG_MAX - 1, ULONG_MAX)
		n++;
	assert_int_equal(n, 2);
	index = 5000;
	assert_ptr_equal(xa_find(&xa, &index, ULONG_MAX, XA_PRESENT), PTR(1));
	assert_int_equal(index, ULONG_MAX - 1);
	index = 5000;
	assert_null(xa_find(&xa, &index, ULONG_MAX - 2, XA_PRESENT));
	assert_int_equal(index, 5000);
	finish(&xa, base);
}

static void test_xa_erase_range(void **state)
{
	long base = live_baseline();
	struct xarray xa;
	unsigned long i, index;
	void *e;

	(void)state;
	xa_init(&xa);
	for (i = 0; i < 10000; i++)
		ASSERT_OK(xa_store(&xa, i, xa_mk_value(i)));
	ASSERT_OK(xa_store(&xa, 1UL << 40, PTR(1)));
	ASSERT_OK(xa_store(&xa, ULONG_MAX, PTR(2)));
	for (i = 0; i < 10000; i += 10)
		xa_set_mark(&xa, i, XA_MARK_1);

	assert_int_equal(xa_erase_range(&xa, 5, 4), 0);
	/* Unaligned edges plus whole 64- and 4096-index subtrees. */
	assert_int_equal(xa_erase_range(&xa, 100, 8999), 8900);
	ASSERT_OK(xa_validate(&xa));
	for (i = 0; i < 10000; i++)
		assert_ptr_equal(xa_load(&xa, i), (i >= 100 && i <= 8999) ?
				 NULL : xa_mk_value(i));
	index = 99;
	e = xa_find_after(&xa, &index, ULONG_MAX, XA_MARK_1);
	assert_int_equal(index, 9000);
	assert_int_equal(xa_to_value(e), 9000);

	/* An empty stretch and a range beyond the last entry. */
	assert_int_equal(xa_erase_range(&xa, 200, 300), 0);
	assert_int_equal(xa_erase_range(&xa, (1UL << 40) + 1, ULONG_MAX - 1),
			 0);
	assert_int_equal(xa_erase_range(&xa, ULONG_MAX, ULONG_MAX), 1);
	ASSERT_OK(xa_validate(&xa));
	assert_int_equal(xa_erase_range(&xa, 0, ULONG_MAX), 100 + 1000 + 1);
	assert_true(xa_empty(&xa));
	assert_int_equal(xa_nr_nodes(&xa), 0);
	finish(&xa, base);
}

/* ------------------------------------------------------- randomized */

struct shadow {
	unsigned long *idx;	/* sorted candidate indices */
	void **val;
	bool (*mark)[XA_MAX_MARKS];
	unsigned int nr;
};

static int cmp_ulong(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a;
	unsigned long y = *(const unsigned long *)b;

	return x < y ? -1 : x > y;
}

static unsigned long random_index(struct test_rng *rng)
{
	switch (test_rng_below(rng, 10)) {
	case 0:
	case 1:
		return test_rng_next(rng);	/* anywhere */
	case 2:
	case 3:
	case 4:
		return test_rng_below(rng, 1UL << 20);
	default:
		return test_rng_below(rng, 4096);
	}
}

static void shadow_init(struct shadow *s, struct test_rng *rng,
			unsigned int want)
{
	static const unsigned long fixed[] = {
		0, 63, 64, 4095, 4096, ULONG_MAX - 1, ULONG_MAX,
	};
	unsigned int i, j;

	s->idx = calloc(want + ARRAY_SIZE(fixed), sizeof(*s->idx));
	assert_non_null(s->idx);
	for (i = 0; i < ARRAY_SIZE(fixed); i++)
		s->idx[i] = fixed[i];
	for (; i < want + ARRAY_SIZE(fixed); i++)
		s->idx[i] = random_index(rng);
	qsort(s->idx, i, sizeof(*s->idx), cmp_ulong);
	for (j = 1, s->nr = 1; j < i; j++)
		if (s->idx[j] != s->idx[s->nr - 1])
			s->idx[s->nr++] = s->idx[j];
	s->val = calloc(s->nr, sizeof(*s->val));
	s->mark = calloc(s->nr, sizeof(*s->mark));
	assert_non_null(s->val);
	assert_non_null(s->mark);
}

static void shadow_free(struct shadow *s)
{
	free(s->idx);
	free(s->val);
	free(s->mark);
}

static void shadow_set(struct shadow *s, unsigned int i, void *entry)
{
	if (!entry || !s->val[i])
		memset(s->mark[i], 0, sizeof(s->mark[i]));
	s->val[i] = entry;
}

/* First candidate >= @start matching @filter, or s->nr. */
static unsigned int shadow_find(const struct shadow *s, unsigned long start,
				unsigned long max, xa_mark_t filter)
{
	unsigned int i;

	for (i = 0; i < s->nr && s->idx[i] <= max; i++) {
		if (s->idx[i] < start || !s->val[i])
			continue;
		if (filter == XA_PRESENT || s->mark[i][filter])
			return i;
	}
	return s->nr;
}

/* Full ordered walks, plain and per mark, against the shadow. */
static void shadow_compare(const struct shadow *s, struct xarray *xa)
{
	unsigned long index;
	unsigned int i, m;
	void *e;

	i = 0;
	xa_for_each(xa, index, e) {
		while (i < s->nr && !s->val[i])
			i++;
		assert_true(i < s->nr);
		assert_int_equal(index, s->idx[i]);
		assert_ptr_equal(e, s->val[i]);
		i++;
	}
	for (; i < s->nr; i++)
		assert_null(s->val[i]);

	for (m = 0; m < XA_MAX_MARKS; m++) {
		i = 0;
		xa_for_each_marked(xa, index, e, m) {
			while (i < s->nr && !(s->val[i] && s->mark[i][m]))
				i++;
			assert_true(i < s->nr);
			assert_int_equal(index, s->idx[i]);
			assert_ptr_equal(e, s->val[i]);
			i++;
		}
		for (; i < s->nr; i++)
			assert_false(s->val[i] && s->mark[i][m]);
	}
}

static void *random_entry(struct test_rng *rng)
{
	if (test_rng_below(rng, 2))
		return xa_mk_value(test_rng_below(rng, 1000));
	return PTR(test_rng_below(rng, ARRAY_SIZE(objs)));
}

static void test_xa_random_shadow(void **state)
{
	unsigned int steps = test_scale(3000, 200000);
	long base = live_baseline();
	unsigned int i, j, k, step, m;
	unsigned long start, nr;
	struct test_rng rng;
	struct shadow s;
	struct xarray xa;
	void *e, *old;
	int err;

	(void)state;
	test_rng_init(&rng, test_seed() + 10);
	shadow_init(&s, &rng, 200);
	xa_init(&xa);

	for (step = 0; step < steps; step++) {
		i = test_rng_below(&rng, s.nr);
		m = test_rng_below(&rng, XA_MAX_MARKS);
		switch (test_rng_below(&rng, 12)) {
		case 0:
		case 1:
		case 2: /* store */
			e = random_entry(&rng);
			old = xa_store_old(&xa, s.idx[i], e, &err);
			ASSERT_OK(err);
			assert_ptr_equal(old, s.val[i]);
			shadow_set(&s, i, e);
			break;
		case 3: /* erase */
			assert_ptr_equal(xa_erase(&xa, s.idx[i]), s.val[i]);
			shadow_set(&s, i, NULL);
			break;
		case 4: /* insert */
			e = random_entry(&rng);
			err = xa_insert(&xa, s.idx[i], e);
			if (s.val[i]) {
				assert_int_equal(err, -EBUSY);
			} else {
				ASSERT_OK(err);
				shadow_set(&s, i, e);
			}
			break;
		case 5: /* cmpxchg, right or wrong guess */
			e = test_rng_below(&rng, 4) ? random_entry(&rng) : NULL;
			old = test_rng_below(&rng, 2) ? s.val[i] : PTR(0);
			assert_ptr_equal(xa_cmpxchg(&xa, s.idx[i], old, e, &err),
					 s.val[i]);
			ASSERT_OK(err);
			if (old == s.val[i])
				shadow_set(&s, i, e);
			break;
		case 6:
		case 7: /* set mark */
			xa_set_mark(&xa, s.idx[i], m);
			if (s.val[i])
				s.mark[i][m] = true;
			break;
		case 8: /* clear mark */
			xa_clear_mark(&xa, s.idx[i], m);
			s.mark[i][m] = false;
			break;
		case 9: /* erase a range, rarely */
			if (test_rng_below(&rng, 8))
				break;
			j = i + test_rng_below(&rng, 8);
			if (j >= s.nr)
				j = s.nr - 1;
			for (nr = 0, k = i; k <= j; k++) {
				nr += !!s.val[k];
				shadow_set(&s, k, NULL);
			}
			assert_int_equal(xa_erase_range(&xa, s.idx[i], s.idx[j]),
					 nr);
			break;
		default: /* look ups */
			assert_ptr_equal(xa_load(&xa, s.idx[i]), s.val[i]);
			assert_int_equal(xa_get_mark(&xa, s.idx[i], m),
					 s.val[i] && s.mark[i][m]);
			start = test_rng_below(&rng, 2) ? s.idx[i] :
							  random_index(&rng);
			k = test_rng_below(&rng, 2) ? XA_PRESENT : m;
			j = shadow_find(&s, start, ULONG_MAX, k);
			e = xa_find(&xa, &start, ULONG_MAX, k);
			if (j == s.nr) {
				assert_null(e);
			} else {
				assert_ptr_equal(e, s.val[j]);
				assert_int_equal(start, s.idx[j]);
			}
			break;
		}
		ASSERT_OK(xa_validate(&xa));
		if (step % 128 == 0)
			shadow_compare(&s, &xa);
	}
	shadow_compare(&s, &xa);
	/* Erase everything one by one: the tree must vanish. */
	for (i = 0; i < s.nr; i++)
		assert_ptr_equal(xa_erase(&xa, s.idx[i]), s.val[i]);
	assert_true(xa_empty(&xa));
	assert_int_equal(xa_nr_nodes(&xa), 0);
	shadow_free(&s);
	finish(&xa, base);
}

/* -------------------------------------------------- fault injection */

/* Fail the allocation after @countdown successes; once or for good. */
struct fail_ctl {
	int countdown;
	bool persistent;
	unsigned int fired;
};

static bool fail_hook(void *arg)
{
	struct fail_ctl *f = arg;

	if (f->countdown < 0)
		return false;
	if (f->countdown > 0) {
		f->countdown--;
		return false;
	}
	f->fired++;
	if (!f->persistent)
		f->countdown = -1;
	return true;
}

/* Contents of @xa as (index, entry) pairs, for before/after comparison. */
static unsigned int snapshot(struct xarray *xa, unsigned long *idx,
			     void **val, unsigned int max)
{
	unsigned long index;
	unsigned int n = 0;
	void *e;

	xa_for_each(xa, index, e) {
		assert_true(n < max);
		idx[n] = index;
		val[n++] = e;
	}
	return n;
}

/*
 * Store at @target with allocation number N failing, for N = 0, 1, ...
 * until the store succeeds; each failure must leave the array (and the
 * live-node count) exactly as before.
 */
static void fault_loop(struct xarray *xa, unsigned long target, bool persistent)
{
	enum { MAX = 64 };
	unsigned long idx0[MAX], idx1[MAX];
	void *val0[MAX], *val1[MAX];
	struct fail_ctl ctl;
	unsigned int n0, n1, failures = 0;
	size_t nodes;
	long live;
	int n, err;

	n0 = snapshot(xa, idx0, val0, MAX);
	for (n = 0;; n++) {
		ctl = (struct fail_ctl){ .countdown = n, .persistent = persistent };
		xa->xa_fail_arg = &ctl;
		xa->xa_fail_alloc = fail_hook;
		nodes = xa_nr_nodes(xa);
		live = xa_live_nodes_total();
		switch (n % 3) {
		case 0:
			err = xa_store(xa, target, PTR(5));
			break;
		case 1:
			err = xa_insert(xa, target, PTR(5));
			break;
		default:
			xa_cmpxchg(xa, target, NULL, PTR(5), &err);
			break;
		}
		xa->xa_fail_alloc = NULL;
		if (!err)
			break;
		assert_int_equal(err, -ENOMEM);
		assert_int_equal(ctl.fired, 1);
		failures++;
		ASSERT_OK(xa_validate(xa));
		assert_int_equal(xa_nr_nodes(xa), nodes);
		/* Unpublished nodes are freed at once, not through RCU. */
		assert_int_equal(xa_live_nodes_total(), live);
		n1 = snapshot(xa, idx1, val1, MAX);
		assert_int_equal(n1, n0);
		assert_memory_equal(idx0, idx1, n0 * sizeof(idx0[0]));
		assert_memory_equal(val0, val1, n0 * sizeof(val0[0]));
		assert_null(xa_load(xa, target));
	}
	assert_int_equal(ctl.fired, 0);
	assert_ptr_equal(xa_load(xa, target), PTR(5));
	assert_int_equal((unsigned int)n, failures);
	ASSERT_OK(xa_validate(xa));
}

static void test_xa_fault_injection(void **state)
{
	long base = live_baseline();
	struct xarray xa;
	unsigned long i;
	int mode;

	(void)state;
	for (mode = 0; mode < 2; mode++) {
		xa_init(&xa);
		/* Empty array: a store at ULONG_MAX needs 11 fresh nodes. */
		fault_loop(&xa, ULONG_MAX, mode);
		for (i = 0; i < 20; i++)
			ASSERT_OK(xa_store(&xa, i * 3, xa_mk_value(i)));
		xa_set_mark(&xa, 9, XA_MARK_0);
		/* Growth from a leaf root plus a new path: 9 + 9 nodes. */
		fault_loop(&xa, 1UL << 59, mode);
		/* A new leaf beside existing ones. */
		fault_loop(&xa, 64 * 5, mode);
		/* No allocation needed: the hook is never consulted. */
		fault_loop(&xa, 61, mode);
		assert_true(xa_get_mark(&xa, 9, XA_MARK_0));
		finish(&xa, base);
	}
}

/* ------------------------------------------------------- concurrency */

enum { CONC_SPACE = 4096 };

struct conc {
	struct xarray xa;
	int stop;
	uint64_t seed;
	unsigned long reads;
};

/* Only NULL, pointers into objs[] and value entries below 1000 are stored. */
static bool valid_entry(const void *e)
{
	if (!e)
		return true;
	if (xa_is_value(e))
		return xa_to_value(e) < 1000;
	return (const long *)e >= objs && (const long *)e < objs + ARRAY_SIZE(objs);
}

static unsigned long conc_index(struct test_rng *rng)
{
	unsigned long i = test_rng_below(rng, CONC_SPACE);

	/* A few indices at the top keep the tree tall at times. */
	if (i % 512 == 7)
		return ULONG_MAX - i;
	return i;
}

/* cmocka asserts only work on the main thread: report through the result. */
static void *conc_writer(void *arg)
{
	struct conc *c = arg;
	struct test_rng rng;
	unsigned long index;
	bool bad = false;

	test_rng_init(&rng, c->seed);
	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		index = conc_index(&rng);
		switch (test_rng_below(&rng, 8)) {
		case 0:
		case 1:
		case 2:
			bad |= xa_store(&c->xa, index, random_entry(&rng)) != 0;
			break;
		case 3:
		case 4:
			xa_erase(&c->xa, index);
			break;
		case 5:
			xa_set_mark(&c->xa, index, XA_MARK_0);
			break;
		case 6:
			if (test_rng_below(&rng, 16) == 0)
				xa_erase_range(&c->xa, index,
					       index + test_rng_below(&rng, 300));
			break;
		default:
			xa_clear_mark(&c->xa, index, XA_MARK_0);
			break;
		}
	}
	return bad ? (void *)1 : NULL;
}

static void *conc_reader(void *arg)
{
	struct conc *c = arg;
	unsigned long index, start, reads = 0;
	struct test_rng rng;
	bool bad = false;
	void *e;

	test_rng_init(&rng, c->seed ^ (uint64_t)(uintptr_t)&rng);
	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) && !bad) {
		rcu_read_lock();
		index = conc_index(&rng);
		e = xa_load(&c->xa, index);
		bad |= !valid_entry(e);
		start = index;
		e = xa_find(&c->xa, &start, ULONG_MAX,
			    test_rng_below(&rng, 2) ? XA_PRESENT : XA_MARK_0);
		bad |= !valid_entry(e);
		bad |= e && start < index;
		rcu_read_unlock();
		reads++;
	}
	__atomic_fetch_add(&c->reads, reads, __ATOMIC_RELAXED);
	return bad ? (void *)1 : NULL;
}

static void test_xa_concurrent_readers(void **state)
{
	long base = live_baseline();
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 500 * 1000 * 1000 };
	pthread_t writer, readers[2];
	struct conc c = { .seed = test_seed() + 99 };
	void *ret;
	int i;

	(void)state;
	xa_init(&c.xa);
	assert_int_equal(pthread_create(&writer, NULL, conc_writer, &c), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&readers[i], NULL, conc_reader,
						&c), 0);
	nanosleep(&ts, NULL);
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
	assert_int_equal(pthread_join(writer, &ret), 0);
	assert_null(ret);
	for (i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(readers[i], &ret), 0);
		assert_null(ret);
	}
	assert_true(c.reads > 0);
	ASSERT_OK(xa_validate(&c.xa));
	finish(&c.xa, base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xa_basic_indices),
		cmocka_unit_test(test_xa_height),
		cmocka_unit_test(test_xa_value_entries),
		cmocka_unit_test(test_xa_invalid_entries),
		cmocka_unit_test(test_xa_insert_cmpxchg),
		cmocka_unit_test(test_xa_marks),
		cmocka_unit_test(test_xa_range_iteration),
		cmocka_unit_test(test_xa_erase_range),
		cmocka_unit_test(test_xa_random_shadow),
		cmocka_unit_test(test_xa_fault_injection),
		cmocka_unit_test(test_xa_concurrent_readers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
