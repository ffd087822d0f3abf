// SPDX-License-Identifier: MIT
/* harness.c - shared fixtures for the cmocka test programs. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"

struct hetmm_machine *test_machine_new(uint64_t ram_mb, bool data)
{
	struct hetmm_machine_config cfg;
	struct hetmm_machine *m;

	hetmm_machine_config_default(&cfg);
	cfg.ram_size = ram_mb << 20;
	cfg.carry_data = data;
	m = hetmm_machine_create(&cfg);
	assert_false(IS_ERR(m));
	return m;
}

void test_machine_finish(struct hetmm_machine *m)
{
	int ret;
	long in_use;

	rcu_barrier(); /* frames freed through call_rcu() are back */
	drain_all_pages(m);
	ret = hetmm_check(m);
	if (ret)
		fprintf(stderr, "hetmm_check failed:\n%s", hetmm_check_report(m));
	in_use = hetmm_pages_in_use(m);
	if (in_use)
		fprintf(stderr, "leak: %ld pages still in use at teardown\n",
			in_use);
	hetmm_machine_destroy(m);
	assert_int_equal(ret, 0);
	assert_int_equal(in_use, 0);
}

int test_machine_setup(void **state)
{
	*state = test_machine_new(64, true);
	return 0;
}

int test_machine_teardown(void **state)
{
	test_machine_finish(*state);
	return 0;
}

uint64_t test_seed(void)
{
	static uint64_t seed;
	static bool printed;

	if (!printed) {
		const char *s = getenv("HETMM_SEED");

		seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL);
		printed = true;
		/* TAP comment line, so it is visible in every output mode. */
		printf("# seed %llu (set HETMM_SEED to replay)\n",
		       (unsigned long long)seed);
		fflush(stdout);
	}
	return seed;
}

unsigned int test_scale(unsigned int quick, unsigned int lng)
{
	const char *l = getenv("HETMM_LONG");

	return l && *l && *l != '0' ? lng : quick;
}

void test_rng_init(struct test_rng *r, uint64_t seed)
{
	r->s = seed ? seed : 0x9E3779B97F4A7C15ULL;
}

uint64_t test_rng_next(struct test_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545F4914F6CDD1DULL;
}

uint64_t test_rng_below(struct test_rng *r, uint64_t n)
{
	return n ? test_rng_next(r) % n : 0;
}
