/* SPDX-License-Identifier: MIT */
/*
 * hetmm/err.h - the error convention.
 *
 * Every function that can fail returns 0 (or a count) on success and a
 * negative errno value on failure. Functions returning pointers encode the
 * errno in the pointer with ERR_PTR(); the top 4095 addresses are never
 * valid objects, so IS_ERR() can tell them apart.
 */
#ifndef HETMM_ERR_H
#define HETMM_ERR_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"

#define MAX_ERRNO 4095

#define IS_ERR_VALUE(x) unlikely((uintptr_t)(x) >= (uintptr_t)-MAX_ERRNO)

static inline void *ERR_PTR(long error)
{
	return (void *)(intptr_t)error;
}

static inline long PTR_ERR(const void *ptr)
{
	return (long)(intptr_t)ptr;
}

static inline bool IS_ERR(const void *ptr)
{
	return IS_ERR_VALUE((uintptr_t)ptr);
}

static inline bool IS_ERR_OR_NULL(const void *ptr)
{
	return unlikely(!ptr) || IS_ERR_VALUE((uintptr_t)ptr);
}

/* 0 if @ptr is a valid pointer, its errno otherwise. */
static inline int PTR_ERR_OR_ZERO(const void *ptr)
{
	return IS_ERR(ptr) ? (int)PTR_ERR(ptr) : 0;
}

/* Short readable name of a negative errno ("-ENOMEM"), for reports. */
const char *hetmm_errname(int err);

#endif /* HETMM_ERR_H */
