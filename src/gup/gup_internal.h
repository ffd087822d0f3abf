/* SPDX-License-Identifier: MIT */
/*
 * gup_internal.h - what gup.c shares with gup_ranges.c: the per-thread pin
 * accounting and the lock-free pin and release of a large folio, inline,
 * so that the range walk (one PMD leaf per step) pays for its atomics and
 * little else.
 *
 * Locking: none of its own. gup_try_pin_large() is called under
 * rcu_read_lock() with an entry value the caller read and re-checks after
 * it (see gup.c's invariants); gup_unpin_large() on a pin the caller holds.
 *
 * Invariants:
 *   - __gup_acct holds this thread's pins acquired/released on RAM of
 *     machine @m not yet published; __gup_flush_accounting() publishes it,
 *     and every entry point calls it before it returns.
 *   - gup_try_pin_large() either holds exactly @refs references and @refs
 *     pincounts on the folio it returns 0 for, or holds nothing; it does
 *     no accounting (the caller does, once per folio or once per call).
 */
#ifndef HETMM_GUP_INTERNAL_H
#define HETMM_GUP_INTERNAL_H

#include <hetmm/gup.h>
#include <hetmm/phys.h>

struct gup_acct {
	struct hetmm_machine *m;
	long acquired;
	long released;
};

extern __hetmm_tls struct gup_acct __gup_acct;

/* Publish what this thread counted for another machine, then switch. */
void __gup_acct_switch(struct hetmm_machine *m);

/* Count @n pins of RAM of @m acquired (or released). */
static inline void gup_account_machine(struct hetmm_machine *m, long n,
				       bool acquire)
{
	if (unlikely(__gup_acct.m != m))
		__gup_acct_switch(m);
	if (acquire)
		__gup_acct.acquired += n;
	else
		__gup_acct.released += n;
}

/* Count @n pins of @folio; device memory is not counted (the checker only
 * walks RAM). */
static inline void gup_account(struct folio *folio, long n, bool acquire)
{
	if (folio_is_zone_device(folio))
		return;
	gup_account_machine(folio_machine(folio), n, acquire);
}

static inline void folio_set_pinned_hint(struct folio *folio)
{
	if (!folio_test_flag(folio, PG_has_pinned_hint))
		folio_set_flag(folio, PG_has_pinned_hint);
}

/*
 * Add @add references to @folio unless its count is zero or would
 * overflow. Sequentially consistent: the caller's re-read of the page
 * tables must not pass it (the unmap side clears an entry, then looks
 * for pins).
 */
static inline bool folio_ref_try_add_sc(struct folio *folio, int add)
{
	int v = atomic_load_explicit(&folio->page._refcount,
				     memory_order_relaxed);

	do {
		if (v <= 0 || v > INT32_MAX - add)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(
		&folio->page._refcount, &v, v + add, memory_order_seq_cst,
		memory_order_relaxed));
	return true;
}

/* folio_is_longterm_pinnable() without the call for RAM folios. */
static inline bool gup_longterm_ok(struct folio *folio)
{
	if (unlikely(folio_is_zone_device(folio)))
		return folio_is_longterm_pinnable(folio);
	return folio_zone(folio) != ZONE_MOVABLE;
}

/*
 * GUP-fast may take a file folio for PIN|LONGTERM|WRITE only if it is
 * hugetlb (no dirty tracking). The kernel also lets shmem through by
 * looking at folio->mapping; our inodes are not RCU-freed, so we may not
 * dereference a mapping we hold no reference on: the slow path decides.
 */
static inline bool gup_fast_folio_allowed(struct folio *folio,
					  unsigned int flags)
{
	if ((flags & (FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE)) !=
	    (FOLL_PIN | FOLL_LONGTERM | FOLL_WRITE))
		return true;
	if (folio_test_hugetlb(folio))
		return true;
	return folio_test_anon(folio);
}

/*
 * gup_try_pin_large - pin @refs pages from @page of @folio, which the
 * caller found to be @page's folio and large, without a lock.
 * Return: 0 (pinned; the caller accounts), -EAGAIN (@page left the folio
 * or the folio was split meanwhile: look again), -EFAULT (the folio is
 * being freed, would overflow, or may not be pinned long-term here).
 */
static inline int gup_try_pin_large(struct page *page, struct folio *folio,
				    int refs, unsigned int flags)
{
	if (!folio_ref_try_add_sc(folio, refs))
		return -EFAULT;
	if (unlikely(page_folio(page) != folio || !folio_test_large(folio))) {
		folio_put_refs(folio, refs);
		return -EAGAIN;
	}
	if (unlikely((flags & FOLL_LONGTERM) && !gup_longterm_ok(folio))) {
		folio_put_refs(folio, refs);
		return -EFAULT;
	}
	/* The exact count, before the caller re-reads the entry. */
	atomic_fetch_add_explicit(&folio->page._pincount, refs,
				  memory_order_seq_cst);
	folio_set_pinned_hint(folio);
	return 0;
}

#if HETMM_DEBUG >= 1
bool __gup_unpin_is_bogus(struct folio *folio, int refs);
#else
static inline bool __gup_unpin_is_bogus(struct folio *folio, int refs)
{
	(void)folio;
	(void)refs;
	return false;
}
#endif

/*
 * Drop @refs pins of the large folio @folio (no accounting). False: a
 * debug build found more pins dropped than held, reported it and dropped
 * nothing.
 */
static inline bool gup_unpin_large(struct folio *folio, int refs)
{
	if (unlikely(__gup_unpin_is_bogus(folio, refs)))
		return false;
	atomic_fetch_sub(&folio->page._pincount, refs);
	folio_put_refs(folio, refs);
	return true;
}

#endif /* HETMM_GUP_INTERNAL_H */
