/* SPDX-License-Identifier: MIT */
/*
 * hetmm/check.h - the invariant checker registry.
 *
 * Each module registers a check function with the machine when it comes
 * up (phys at machine creation, later mm, notifier, memremap, drivers).
 * hetmm_check() runs all of them in registration order; each reports
 * broken invariants through hetmm_check_fail(), and hetmm_check() returns
 * -EUCLEAN if anything was reported. The messages stay readable through
 * hetmm_check_report() until the next hetmm_check().
 *
 * Context: the machine must be quiescent (no thread mutating it) while a
 * check runs; checks take the locks they read under anyway.
 */
#ifndef HETMM_CHECK_H
#define HETMM_CHECK_H

#include "compiler.h"

struct hetmm_machine;
struct hetmm_check_ctx;

typedef void (*hetmm_check_fn)(struct hetmm_machine *m, void *arg,
			       struct hetmm_check_ctx *ctx);

#define HETMM_MAX_CHECKERS 32

/*
 * hetmm_checker_register - add a check to @m.
 * Return: 0, -EINVAL for a NULL fn or name, -ENOSPC if the table is full,
 * -EEXIST if @name is already registered.
 */
int hetmm_checker_register(struct hetmm_machine *m, const char *name,
			   hetmm_check_fn fn, void *arg);
/* Remove the check called @name. Return: 0 or -ENOENT. */
int hetmm_checker_unregister(struct hetmm_machine *m, const char *name);

/* Report one broken invariant (printf format). */
void hetmm_check_fail(struct hetmm_check_ctx *ctx, const char *fmt, ...)
	__printf(2, 3);

/*
 * hetmm_check - run every registered check.
 * Return: 0 if every invariant holds, -EUCLEAN otherwise.
 */
int hetmm_check(struct hetmm_machine *m);
/* Messages of the last hetmm_check(), one per line ("" if clean). */
const char *hetmm_check_report(struct hetmm_machine *m);

#endif /* HETMM_CHECK_H */
