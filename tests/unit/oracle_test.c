// SPDX-License-Identifier: MIT
/*
 * oracle_test.c - (being written) tests of the process face.
 */
#include <hetmm/uapi.h>

#include "harness.h"

static void test_fork_cow_basic(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = hetmm_process_create(m), *c;
	long a = hetmm_mmap(p, 0, 4096, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char x = 'p', y = 0;

	assert_true(a > 0);
	ASSERT_OK(hetmm_cpu_write(p, 0, a, &x, 1));
	c = hetmm_fork(p);
	assert_false(IS_ERR(c));
	x = 'c';
	ASSERT_OK(hetmm_cpu_write(c, 1, a, &x, 1));
	ASSERT_OK(hetmm_cpu_read(p, 0, a, &y, 1));
	assert_int_equal(y, 'p');
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(c);
	hetmm_exit(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fork_cow_basic,
						test_machine_setup,
						test_machine_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
