// SPDX-License-Identifier: MIT
/* base_test.c - errno helpers, lists, assertions' helpers, check registry. */
#include "harness.h"

static void test_err_ptr(void **state)
{
	(void)state;
	void *p = ERR_PTR(-ENOMEM);

	assert_true(IS_ERR(p));
	assert_int_equal(PTR_ERR(p), -ENOMEM);
	assert_true(IS_ERR(ERR_PTR(-MAX_ERRNO)));
	assert_false(IS_ERR(ERR_PTR(-MAX_ERRNO - 1)));
	assert_false(IS_ERR(NULL));
	assert_true(IS_ERR_OR_NULL(NULL));
	assert_int_equal(PTR_ERR_OR_ZERO(&p), 0);
	assert_int_equal(PTR_ERR_OR_ZERO(ERR_PTR(-EFAULT)), -EFAULT);
	assert_string_equal(hetmm_errname(-EBUSY), "-EBUSY");
	assert_string_equal(hetmm_errname(-12345), "-E?");
}

struct item {
	int v;
	struct list_head link;
};

static void test_list(void **state)
{
	(void)state;
	LIST_HEAD(head);
	LIST_HEAD(other);
	struct item it[5], *pos, *n;
	int expect = 0;

	assert_true(list_empty(&head));
	for (int i = 0; i < 5; i++) {
		it[i].v = i;
		list_add_tail(&it[i].link, &head);
	}
	list_for_each_entry(pos, &head, link)
		assert_int_equal(pos->v, expect++);
	assert_int_equal(expect, 5);
	/* Remove odd entries while iterating. */
	list_for_each_entry_safe(pos, n, &head, link)
		if (pos->v & 1)
			list_del(&pos->link);
	expect = 0;
	list_for_each_entry(pos, &head, link) {
		assert_int_equal(pos->v, expect);
		expect += 2;
	}
	list_add(&it[1].link, &other);
	list_splice_init(&other, &head);
	assert_true(list_empty(&other));
	assert_int_equal(list_first_entry(&head, struct item, link)->v, 1);
	list_move_tail(&it[1].link, &head);
	assert_int_equal(list_last_entry(&head, struct item, link)->v, 1);
}

static int check_calls;
static void fake_check(struct hetmm_machine *m, void *arg,
		       struct hetmm_check_ctx *ctx)
{
	(void)m;
	check_calls++;
	if (arg)
		hetmm_check_fail(ctx, "invariant %d broken", *(int *)arg);
}

static void test_checker_registry(void **state)
{
	struct hetmm_machine *m = *state;
	int val = 7;

	assert_int_equal(hetmm_checker_register(m, NULL, fake_check, NULL),
			 -EINVAL);
	assert_int_equal(hetmm_checker_register(m, "fake", NULL, NULL),
			 -EINVAL);
	ASSERT_OK(hetmm_checker_register(m, "fake", fake_check, NULL));
	assert_int_equal(hetmm_checker_register(m, "fake", fake_check, NULL),
			 -EEXIST);
	check_calls = 0;
	ASSERT_OK(hetmm_check(m));
	assert_int_equal(check_calls, 1);
	assert_string_equal(hetmm_check_report(m), "");
	ASSERT_OK(hetmm_checker_register(m, "broken", fake_check, &val));
	assert_int_equal(hetmm_check(m), -EUCLEAN);
	assert_non_null(strstr(hetmm_check_report(m),
			       "broken: invariant 7 broken"));
	ASSERT_OK(hetmm_checker_unregister(m, "broken"));
	assert_int_equal(hetmm_checker_unregister(m, "broken"), -ENOENT);
	ASSERT_OK(hetmm_checker_unregister(m, "fake"));
	ASSERT_OK(hetmm_check(m));
}

static void test_checker_table_full(void **state)
{
	struct hetmm_machine *m = *state;
	static char names[HETMM_MAX_CHECKERS][16];
	int added = 0, ret = 0;

	for (int i = 0; i < HETMM_MAX_CHECKERS; i++) {
		snprintf(names[i], sizeof(names[i]), "c%d", i);
		ret = hetmm_checker_register(m, names[i], fake_check, NULL);
		if (ret)
			break;
		added++;
	}
	assert_int_equal(ret, -ENOSPC);
	for (int i = 0; i < added; i++)
		ASSERT_OK(hetmm_checker_unregister(m, names[i]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_err_ptr),
		cmocka_unit_test(test_list),
		cmocka_unit_test_setup_teardown(test_checker_registry,
						test_machine_setup,
						test_machine_teardown),
		cmocka_unit_test_setup_teardown(test_checker_table_full,
						test_machine_setup,
						test_machine_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
