/* SPDX-License-Identifier: MIT */
/*
 * tests/harness.h - what every hetmm test file includes.
 *
 * Tests are cmocka groups. A test that needs a simulated machine uses
 * test_machine_setup()/test_machine_teardown() (or its own setup calling
 * test_machine_new()), and the teardown runs hetmm_check() on the machine
 * and fails the test if any invariant is broken or any frame leaked.
 *
 * Randomized tests take their seed from HETMM_SEED (or the clock), print
 * it, and scale their iteration counts by HETMM_LONG (quick by default).
 */
#ifndef HETMM_TESTS_HARNESS_H
#define HETMM_TESTS_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <hetmm/hetmm.h>

/* A machine of @ram_mb MiB with data; asserts on failure. */
struct hetmm_machine *test_machine_new(uint64_t ram_mb, bool data);
/* hetmm_check(), the leak count, and destroy: fails the test on error. */
void test_machine_finish(struct hetmm_machine *m);

/* cmocka fixtures: *state becomes a 64 MiB machine with data. */
int test_machine_setup(void **state);
int test_machine_teardown(void **state);

/* The run's seed (printed once) and a quick/long iteration scale. */
uint64_t test_seed(void);
unsigned int test_scale(unsigned int quick, unsigned int lng);

/* xorshift64* pseudo-random generator, deterministic per seed. */
struct test_rng {
	uint64_t s;
};
void test_rng_init(struct test_rng *r, uint64_t seed);
uint64_t test_rng_next(struct test_rng *r);
/* Uniform in [0, n). */
uint64_t test_rng_below(struct test_rng *r, uint64_t n);

#define ASSERT_OK(expr) assert_int_equal((long)(expr), 0)

#endif
