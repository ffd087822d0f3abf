/* SPDX-License-Identifier: MIT */
/*
 * hetmm/fault_inject.h - named failure points.
 *
 * Each site in HETMM_FAULT_SITES is a place where the machine can be told
 * to fail: the buddy allocator, page copies, section onlining, and (later
 * layers) page-table, device-memory and device-copy allocation. Every
 * machine owns one struct fault_attr per site, so tests that fail one
 * machine never disturb another.
 *
 * Modes (set with hetmm_fault_set() or parsed by hetmm_fault_parse()):
 *   FAULT_OFF         never fail (the default)
 *   FAULT_NTH         fail the Nth call after arming, once ("transient")
 *   FAULT_FROM_NTH    fail the Nth call and every later one ("persistent")
 *   FAULT_EVERY       fail every Nth call
 *   FAULT_PROBABILITY fail each call with probability p (seeded, reproducible)
 *
 * An injected failure calls hetmm_fault_hook(), an empty out-of-line
 * function that exists as a debugger breakpoint.
 *
 * Context: should_fail() is lock-free and may be called under spinlocks.
 */
#ifndef HETMM_FAULT_INJECT_H
#define HETMM_FAULT_INJECT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"

#define HETMM_FAULT_SITES(X)                                                  \
	X(alloc_pages, "page allocator: any alloc_pages/folio_alloc call")    \
	X(memmap_online, "initialising the struct pages of a memory section") \
	X(copy_page, "checked page copies (folio_mc_copy)")                   \
	X(pgtable_alloc, "page-table page allocation")                        \
	X(device_alloc, "device memory allocation by a driver")               \
	X(device_copy, "device copy engine / DMA transfer")

enum hetmm_fault_site {
#define __HETMM_FAULT_ENUM(name, desc) HETMM_FAULT_##name,
	HETMM_FAULT_SITES(__HETMM_FAULT_ENUM)
#undef __HETMM_FAULT_ENUM
	NR_HETMM_FAULT_SITES
};

enum fault_mode {
	FAULT_OFF = 0,
	FAULT_NTH,
	FAULT_FROM_NTH,
	FAULT_EVERY,
	FAULT_PROBABILITY,
};

struct fault_attr {
	atomic_int mode;          /* enum fault_mode; FAULT_OFF = fast path */
	uint64_t nth;             /* N for NTH/FROM_NTH/EVERY */
	uint32_t prob_scaled;     /* probability * 2^32 for PROBABILITY */
	atomic_uint_fast64_t calls;    /* calls since armed */
	atomic_uint_fast64_t failures; /* failures injected since armed */
	atomic_uint_fast64_t rng;      /* PROBABILITY generator state */
};

struct hetmm_faults {
	struct fault_attr site[NR_HETMM_FAULT_SITES];
};

bool __should_fail(struct hetmm_faults *f, enum hetmm_fault_site site);

/* True if this call at @site of @f must fail. */
static inline bool should_fail(struct hetmm_faults *f,
			       enum hetmm_fault_site site)
{
	if (likely(atomic_load_explicit(&f->site[site].mode,
					memory_order_relaxed) == FAULT_OFF))
		return false;
	return __should_fail(f, site);
}

/*
 * hetmm_fault_set - arm or disarm one site.
 * @arg: N for the counting modes, the probability (0..1] for
 *       FAULT_PROBABILITY; @seed seeds its generator.
 * Return: 0, or -EINVAL for an unknown site/mode or an out-of-range @arg.
 */
int hetmm_fault_set(struct hetmm_faults *f, enum hetmm_fault_site site,
		    enum fault_mode mode, double arg, uint64_t seed);
/* Disarm every site and zero its counters. */
void hetmm_fault_reset(struct hetmm_faults *f);
/*
 * hetmm_fault_parse - arm a site from text: "SITE:nth=N", "SITE:from=N",
 * "SITE:every=N", "SITE:prob=P[,seed=S]" or "SITE:off". Several specs may
 * be joined with ';'. Return: 0 or -EINVAL (nothing armed on error).
 */
int hetmm_fault_parse(struct hetmm_faults *f, const char *spec);
const char *hetmm_fault_site_name(enum hetmm_fault_site site);
/* Site id for @name, or -EINVAL. */
int hetmm_fault_site_lookup(const char *name);
uint64_t hetmm_fault_failures(const struct hetmm_faults *f,
			      enum hetmm_fault_site site);
/* Empty breakpoint hook called on every injected failure. */
void hetmm_fault_hook(enum hetmm_fault_site site);

#endif /* HETMM_FAULT_INJECT_H */
