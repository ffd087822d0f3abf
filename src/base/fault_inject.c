// SPDX-License-Identifier: MIT
/*
 * fault_inject.c - the failure decision for armed sites.
 *
 * Locking and invariants: a site's parameters (nth, prob_scaled) are
 * written before its mode is published with a release store and are not
 * changed while armed; calls/failures/rng are atomics, so concurrent
 * callers each get a distinct call number and FAULT_NTH fails exactly one.
 * Arming and disarming must not race with each other (tests do it from
 * the controlling thread).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/fault_inject.h>
#include <hetmm/stats.h>

static const char *const site_names[] = {
#define __HETMM_FAULT_NAME(name, desc) #name,
	HETMM_FAULT_SITES(__HETMM_FAULT_NAME)
#undef __HETMM_FAULT_NAME
};

__noinline void hetmm_fault_hook(enum hetmm_fault_site site)
{
	/* A place for a breakpoint; keep the call from being optimised away. */
	__asm__ volatile("" : : "r"(site) : "memory");
}

static uint64_t rng_next(atomic_uint_fast64_t *state)
{
	uint64_t old = atomic_load_explicit(state, memory_order_relaxed), x;

	do {
		x = old;
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
	} while (!atomic_compare_exchange_weak_explicit(
		state, &old, x, memory_order_relaxed, memory_order_relaxed));
	return x * 0x2545F4914F6CDD1DULL;
}

bool __should_fail(struct hetmm_faults *f, enum hetmm_fault_site site)
{
	struct fault_attr *a = &f->site[site];
	int mode = atomic_load_explicit(&a->mode, memory_order_acquire);
	uint64_t n = atomic_fetch_add_explicit(&a->calls, 1,
					       memory_order_relaxed) +
		     1;
	bool fail = false;

	switch (mode) {
	case FAULT_NTH:
		fail = n == a->nth;
		break;
	case FAULT_FROM_NTH:
		fail = n >= a->nth;
		break;
	case FAULT_EVERY:
		fail = n % a->nth == 0;
		break;
	case FAULT_PROBABILITY:
		fail = (uint32_t)(rng_next(&a->rng) >> 32) < a->prob_scaled;
		break;
	default:
		break;
	}
	if (fail) {
		atomic_fetch_add_explicit(&a->failures, 1,
					  memory_order_relaxed);
		count_stat(HETMM_STAT_fault_injected);
		hetmm_fault_hook(site);
	}
	return fail;
}

int hetmm_fault_set(struct hetmm_faults *f, enum hetmm_fault_site site,
		    enum fault_mode mode, double arg, uint64_t seed)
{
	struct fault_attr *a;

	if (!f)
		return -EINVAL;
	if ((unsigned int)site >= NR_HETMM_FAULT_SITES)
		return -EINVAL;
	switch (mode) {
	case FAULT_OFF:
		break;
	case FAULT_NTH:
	case FAULT_FROM_NTH:
	case FAULT_EVERY:
		if (!(arg >= 1) || arg > 1e18 || arg != floor(arg))
			return -EINVAL;
		break;
	case FAULT_PROBABILITY:
		if (!(arg > 0) || arg > 1)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	a = &f->site[site];
	atomic_store_explicit(&a->mode, FAULT_OFF, memory_order_release);
	a->nth = mode == FAULT_PROBABILITY ? 0 : (uint64_t)arg;
	a->prob_scaled = mode == FAULT_PROBABILITY ?
				 (arg >= 1 ? UINT32_MAX :
					     (uint32_t)(arg * 4294967296.0)) :
				 0;
	atomic_store_explicit(&a->calls, 0, memory_order_relaxed);
	atomic_store_explicit(&a->failures, 0, memory_order_relaxed);
	atomic_store_explicit(&a->rng, seed ? seed : 0x9E3779B97F4A7C15ULL,
			      memory_order_relaxed);
	atomic_store_explicit(&a->mode, mode, memory_order_release);
	return 0;
}

void hetmm_fault_reset(struct hetmm_faults *f)
{
	for (int i = 0; i < NR_HETMM_FAULT_SITES; i++)
		hetmm_fault_set(f, (enum hetmm_fault_site)i, FAULT_OFF, 0, 0);
}

const char *hetmm_fault_site_name(enum hetmm_fault_site site)
{
	if ((unsigned int)site >= NR_HETMM_FAULT_SITES)
		return NULL;
	return site_names[site];
}

int hetmm_fault_site_lookup(const char *name)
{
	if (!name)
		return -EINVAL;
	for (int i = 0; i < NR_HETMM_FAULT_SITES; i++)
		if (!strcmp(name, site_names[i]))
			return i;
	return -EINVAL;
}

uint64_t hetmm_fault_failures(const struct hetmm_faults *f,
			      enum hetmm_fault_site site)
{
	if ((unsigned int)site >= NR_HETMM_FAULT_SITES)
		return 0;
	return atomic_load_explicit(
		(atomic_uint_fast64_t *)&f->site[site].failures,
		memory_order_relaxed);
}

struct parsed_spec {
	int site;
	enum fault_mode mode;
	double arg;
	uint64_t seed;
};

/* Parse one "SITE:key=val[,seed=S]" item of length @len. */
static int parse_one(const char *s, size_t len, struct parsed_spec *out)
{
	char buf[128], *colon, *kv, *save = NULL, *end;

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = 0;
	colon = strchr(buf, ':');
	if (!colon)
		return -EINVAL;
	*colon = 0;
	out->site = hetmm_fault_site_lookup(buf);
	if (out->site < 0)
		return -EINVAL;
	out->mode = FAULT_OFF;
	out->arg = 0;
	out->seed = 0;
	for (kv = strtok_r(colon + 1, ",", &save); kv;
	     kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		double v;

		if (!strcmp(kv, "off")) {
			out->mode = FAULT_OFF;
			continue;
		}
		if (!eq)
			return -EINVAL;
		*eq = 0;
		errno = 0;
		v = strtod(eq + 1, &end);
		if (errno || *end || end == eq + 1)
			return -EINVAL;
		if (!strcmp(kv, "nth"))
			out->mode = FAULT_NTH;
		else if (!strcmp(kv, "from"))
			out->mode = FAULT_FROM_NTH;
		else if (!strcmp(kv, "every"))
			out->mode = FAULT_EVERY;
		else if (!strcmp(kv, "prob"))
			out->mode = FAULT_PROBABILITY;
		else if (!strcmp(kv, "seed")) {
			out->seed = (uint64_t)v;
			continue;
		} else
			return -EINVAL;
		out->arg = v;
	}
	return 0;
}

int hetmm_fault_parse(struct hetmm_faults *f, const char *spec)
{
	struct parsed_spec items[NR_HETMM_FAULT_SITES * 2];
	size_t n = 0;
	const char *p = spec;

	if (!f || !spec)
		return -EINVAL;
	/* Parse and validate everything first, so an error arms nothing. */
	while (*p) {
		const char *semi = strchr(p, ';');
		size_t len = semi ? (size_t)(semi - p) : strlen(p);

		if (n == ARRAY_SIZE(items))
			return -EINVAL;
		if (parse_one(p, len, &items[n]))
			return -EINVAL;
		if (items[n].mode == FAULT_PROBABILITY ?
			    !(items[n].arg > 0 && items[n].arg <= 1) :
		    items[n].mode != FAULT_OFF ?
			    !(items[n].arg >= 1 &&
			      items[n].arg == floor(items[n].arg)) :
			    false)
			return -EINVAL;
		n++;
		p += len;
		if (*p == ';')
			p++;
	}
	for (size_t i = 0; i < n; i++)
		hetmm_fault_set(f, (enum hetmm_fault_site)items[i].site,
				items[i].mode, items[i].arg, items[i].seed);
	return 0;
}
