// SPDX-License-Identifier: MIT
/*
 * gup.c - get_user_pages and pin_user_pages (the kernel's mm/gup.c): the
 * argument and VMA rules, the slow path (page-table walk under mmap_lock
 * with faults, FAULT_FLAG_UNSHARE for read-only pins of shared anonymous
 * pages), the lock-free fast path, pin accounting and release, the
 * FOLL_LONGTERM migration loop, and the "gup" checker.
 *
 * Locking:
 *   mmap_lock (read; the slow path; held by the caller of the "locked"
 *   entry points, taken here by the *_unlocked and *_fast ones)
 *     mm->page_table_lock (a PMD leaf is followed and grabbed under it)
 *     PTE-table lock (a PTE table is followed and grabbed under it)
 *       i_pages.xa_lock (folio_mark_dirty for FOLL_TOUCH|FOLL_WRITE)
 *   The fault path (handle_mm_fault) and splits run with no page-table
 *   lock held. The long-term migration runs under mmap_lock (read) too:
 *     folio lock (source, then the fresh destination) -> the rmap locks
 *     of try_to_migrate()/remove_migration_ptes(); for page cache, then
 *     i_pages.xa_lock (folio_migrate_mapping). No inode lock is taken.
 *   GUP-fast takes no lock: it reads entries under rcu_read_lock() (page
 *   tables are freed through call_rcu(), so a table it reached stays a
 *   table frame until it leaves the read-side section).
 *
 * Invariants:
 *   - A reference or pin is taken on a folio only while an entry mapping
 *     it is stable: under its page-table lock (slow path), or speculatively
 *     with a try-add that fails on a zero refcount, followed by a re-check
 *     that the page still belongs to the folio and that the PMD and PTE
 *     still hold the value we read (GUP-fast); the re-read is ordered after
 *     the pin increment (a sequentially consistent RMW), pairing with the
 *     unmap side, which clears the entry before it looks for pins.
 *   - Every anonymous page returned with FOLL_PIN is PageAnonExclusive
 *     (writable entries map exclusive pages; read-only pins of shared pages
 *     unshare first), so a later write by the process reuses the page the
 *     pin holds instead of copying it away.
 *   - GUP-fast pins nothing that fork may be write-protecting: it samples
 *     mm->write_protect_seq before the walk (odd: pin nothing) and drops
 *     every pin it took if the sequence moved.
 *   - A pin is GUP_PIN_COUNTING_BIAS references on a small folio, one
 *     reference and one _pincount on a large one; the zero page is never
 *     counted. Pins acquired and released on a machine's RAM are counted
 *     per thread and published before each entry point returns, so at rest
 *     acquired - released == the pins held (the checker verifies it).
 *   - Any negative return means no reference taken by the call is held.
 *   - FOLL_LONGTERM returns only longterm-pinnable pages: unpinnable ones
 *     are unpinned, migrated (device-coherent ones by
 *     migrate_device_coherent_folio, ZONE_MOVABLE anonymous ones here,
 *     ZONE_MOVABLE page cache by migrate_pagecache_folio), and the whole
 *     range pinned again. A folio that cannot be moved (still referenced
 *     after the retries) fails the call with -ENOMEM, as migrate_pages()
 *     failing does in the kernel; memfd_pin_folios() does the same over
 *     folios.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <hetmm/check.h>
#include <hetmm/err.h>
#include <hetmm/gup.h>
#include <hetmm/memremap.h>
#include <hetmm/migrate.h>
#include <hetmm/rmap.h>
#include <hetmm/stats.h>

#include "../mm/internal.h"
#include "gup_internal.h"

/* Faults for one address before we call it a livelock and give up. */
#define GUP_MAX_FAULT_RETRIES 10000
/* migrate_pages() tries each folio this often (NR_MAX_MIGRATE_PAGES_RETRY). */
#define GUP_MIGRATE_RETRIES 10

/* ------------------------------------------------------ pin accounting */

/*
 * Per-machine pin counters and the checker's argument. Indexed by machine
 * id; @m and @gen tell whether the slot still belongs to @m (ids are
 * reused after a machine is destroyed, which moves hetmm_machine_gen).
 */
struct gup_machine {
	struct hetmm_machine *m;
	unsigned long gen;
	atomic_long acquired;
	atomic_long released;
};

static struct gup_machine gup_machines[HETMM_MAX_MACHINES];
static pthread_mutex_t gup_machines_lock = PTHREAD_MUTEX_INITIALIZER;

__hetmm_tls struct gup_acct __gup_acct;

static void gup_check(struct hetmm_machine *m, void *arg,
		      struct hetmm_check_ctx *ctx);

static __noinline struct gup_machine *gup_machine_slow(struct hetmm_machine *m)
{
	struct gup_machine *g = &gup_machines[m->id];
	unsigned long gen;
	int ret;

	pthread_mutex_lock(&gup_machines_lock);
	gen = __atomic_load_n(&hetmm_machine_gen, __ATOMIC_ACQUIRE);
	ret = hetmm_checker_register(m, "gup", gup_check, g);
	/* A machine we have not seen (registered just now): fresh counts. */
	if (ret == 0 || (ret != -EEXIST && READ_ONCE(g->m) != m)) {
		atomic_store(&g->acquired, 0);
		atomic_store(&g->released, 0);
	}
	__atomic_store_n(&g->gen, gen, __ATOMIC_RELAXED);
	__atomic_store_n(&g->m, m, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&gup_machines_lock);
	return g;
}

static inline struct gup_machine *gup_machine(struct hetmm_machine *m)
{
	struct gup_machine *g = &gup_machines[m->id];

	if (likely(__atomic_load_n(&g->m, __ATOMIC_ACQUIRE) == m &&
		   __atomic_load_n(&g->gen, __ATOMIC_RELAXED) ==
			   __atomic_load_n(&hetmm_machine_gen,
					   __ATOMIC_ACQUIRE)))
		return g;
	return gup_machine_slow(m);
}

void __gup_flush_accounting(void)
{
	struct gup_machine *g;

	if (!__gup_acct.m || (!__gup_acct.acquired && !__gup_acct.released))
		return;
	g = gup_machine(__gup_acct.m);
	/* A pin call only acquires, an unpin only releases: one atomic. */
	if (__gup_acct.acquired)
		atomic_fetch_add(&g->acquired, __gup_acct.acquired);
	if (__gup_acct.released)
		atomic_fetch_add(&g->released, __gup_acct.released);
	__gup_acct.acquired = 0;
	__gup_acct.released = 0;
}

void __gup_acct_switch(struct hetmm_machine *m)
{
	__gup_flush_accounting();
	__gup_acct.m = m;
}

void gup_pin_counts(struct hetmm_machine *m, unsigned long *acquired,
		    unsigned long *released)
{
	struct gup_machine *g;

	__gup_flush_accounting();
	g = gup_machine(m);
	if (acquired)
		*acquired = (unsigned long)atomic_load(&g->acquired);
	if (released)
		*released = (unsigned long)atomic_load(&g->released);
}

static inline bool folio_is_pci_p2pdma(const struct folio *folio)
{
	return is_pci_p2pdma_page(&folio->page);
}

/* Would adding @add references overflow @folio's refcount? */
static inline bool ref_would_overflow(struct folio *folio, long add)
{
	return add > INT32_MAX || folio_ref_count(folio) > INT32_MAX - (int)add;
}

/*
 * try_grab_folio - take @refs references (FOLL_GET) or pins (FOLL_PIN) of
 * @folio, whose refcount the caller keeps from dropping to zero (a mapping
 * entry under its lock, or a pin already held).
 * Return: 0 (also when neither flag is set: nothing to do), -ENOMEM (the
 * refcount is not positive, or would overflow), -EREMOTEIO (P2PDMA page
 * without FOLL_PCI_P2PDMA).
 */
static int try_grab_folio(struct folio *folio, long refs, unsigned int flags)
{
	if (HETMM_WARN_ON_ONCE(folio_ref_count(folio) <= 0))
		return -ENOMEM;
	if (unlikely(!(flags & FOLL_PCI_P2PDMA) && folio_is_pci_p2pdma(folio)))
		return -EREMOTEIO;
	if (flags & FOLL_GET) {
		if (ref_would_overflow(folio, refs))
			return -ENOMEM;
		folio_ref_add(folio, (int)refs);
	} else if (flags & FOLL_PIN) {
		/* The zero page is everywhere and goes nowhere: no pins. */
		if (is_zero_folio(folio))
			return 0;
		if (folio_test_large(folio)) {
			if (ref_would_overflow(folio, refs))
				return -ENOMEM;
			folio_ref_add(folio, (int)refs);
			atomic_fetch_add(&folio->page._pincount, (int)refs);
		} else {
			if (refs > INT32_MAX / GUP_PIN_COUNTING_BIAS ||
			    ref_would_overflow(folio,
					       refs * GUP_PIN_COUNTING_BIAS))
				return -ENOMEM;
			atomic_fetch_add(&folio->page._refcount,
					 (int)(refs * GUP_PIN_COUNTING_BIAS));
		}
		folio_set_pinned_hint(folio);
		gup_account(folio, refs, true);
	}
	return 0;
}

/*
 * The lock-free reference: @refs references on @page's folio unless its
 * count is zero (being freed) or would overflow, re-checked that @page
 * still belongs to it (a split may have moved it to another folio).
 */
static struct folio *try_get_folio(struct page *page, int refs)
{
	struct folio *folio;

retry:
	folio = page_folio(page);
	if (HETMM_WARN_ON_ONCE(folio_ref_count(folio) < 0))
		return NULL;
	if (unlikely(folio_ref_count(folio) > INT32_MAX - refs))
		return NULL;
	if (unlikely(!folio_ref_try_add(folio, refs)))
		return NULL;
	if (unlikely(page_folio(page) != folio)) {
		folio_put_refs(folio, refs);
		goto retry;
	}
	return folio;
}

struct folio *__gup_grab_folio_fast(struct page *page, int refs,
				    unsigned int flags)
{
	struct folio *folio;

	if (HETMM_WARN_ON_ONCE(!(flags & (FOLL_GET | FOLL_PIN))))
		return NULL;
	if (unlikely(!(flags & FOLL_PCI_P2PDMA) && is_pci_p2pdma_page(page)))
		return NULL;
	if (flags & FOLL_GET)
		return try_get_folio(page, refs);
	if (is_zero_page(page))
		return page_folio(page);
retry:
	folio = page_folio(page);
	if (HETMM_WARN_ON_ONCE(folio_ref_count(folio) < 0))
		return NULL;
	if (!folio_test_large(folio)) {
		/* A small folio: the whole pin in one step. */
		if (refs > INT32_MAX / (int)GUP_PIN_COUNTING_BIAS ||
		    !folio_ref_try_add_sc(folio,
					  refs * (int)GUP_PIN_COUNTING_BIAS))
			return NULL;
		/* Still this page's folio, and still small? */
		if (unlikely(page_folio(page) != folio ||
			     folio_test_large(folio))) {
			folio_put_refs(folio,
				       refs * (int)GUP_PIN_COUNTING_BIAS);
			goto retry;
		}
		if (unlikely((flags & FOLL_LONGTERM) &&
			     !folio_is_longterm_pinnable(folio))) {
			folio_put_refs(folio,
				       refs * (int)GUP_PIN_COUNTING_BIAS);
			return NULL;
		}
		folio_set_pinned_hint(folio);
	} else {
		int ret = gup_try_pin_large(page, folio, refs, flags);

		if (ret == -EAGAIN)
			goto retry;
		if (ret)
			return NULL;
	}
	gup_account(folio, refs, true);
	return folio;
}

/*
 * An unpin the folio cannot have: in debug builds it is recorded as a bad
 * page and ignored (the kernel would corrupt the counts silently).
 */
#if HETMM_DEBUG >= 1
bool __gup_unpin_is_bogus(struct folio *folio, int refs)
{
	if (folio_test_large(folio)) {
		if (folio_pincount(folio) < refs) {
			hetmm_bad_page(&folio->page,
				       "unpin of a folio that is not pinned");
			return true;
		}
	} else if (!folio_test_flag(folio, PG_has_pinned_hint) ||
		   folio_ref_count(folio) <
			   (long)refs * (long)GUP_PIN_COUNTING_BIAS) {
		hetmm_bad_page(&folio->page,
			       "unpin of a folio that is not pinned");
		return true;
	}
	return false;
}
#endif

void __gup_put_folio(struct folio *folio, int refs, unsigned int flags)
{
	if (flags & FOLL_PIN) {
		if (is_zero_folio(folio))
			return;
		if (folio_test_large(folio)) {
			if (gup_unpin_large(folio, refs))
				gup_account(folio, refs, false);
			return;
		}
		if (unlikely(__gup_unpin_is_bogus(folio, refs)))
			return;
		gup_account(folio, refs, false);
		refs *= GUP_PIN_COUNTING_BIAS;
	}
	folio_put_refs(folio, refs);
}

/*
 * Debug: every anonymous page a pin returns (or an unpin gets) must be
 * exclusive: the head page for small and hugetlb folios; the head or the
 * page itself for a THP, which may be PMD- or PTE-mapped.
 */
static void sanity_check_pinned_pages(struct page **pages, unsigned long npages)
{
#if HETMM_DEBUG >= 1
	for (unsigned long i = 0; i < npages; i++) {
		struct page *page = pages[i];
		struct folio *folio;

		if (!page)
			continue;
		folio = page_folio(page);
		if (is_zero_page(page) || !folio_test_anon(folio))
			continue;
		if (!folio_test_large(folio) || folio_test_hugetlb(folio))
			HETMM_WARN_ON_ONCE(!PageAnonExclusive(&folio->page));
		else
			HETMM_WARN_ON_ONCE(!PageAnonExclusive(&folio->page) &&
					   !PageAnonExclusive(page));
	}
#else
	(void)pages;
	(void)npages;
#endif
}

/* ------------------------------------------------------------ releasing */

void unpin_user_page(struct page *page)
{
	__gup_put_folio(page_folio(page), 1, FOLL_PIN);
	__gup_flush_accounting();
}

void unpin_folio(struct folio *folio)
{
	__gup_put_folio(folio, 1, FOLL_PIN);
	__gup_flush_accounting();
}

void unpin_user_folio(struct folio *folio, unsigned long npages)
{
	__gup_put_folio(folio, (int)npages, FOLL_PIN);
	__gup_flush_accounting();
}

/* The folio of list[i] and how many entries from i belong to it. */
static struct folio *gup_folio_next(struct page **list, unsigned long npages,
				    unsigned long i, unsigned int *ntails)
{
	struct folio *folio = page_folio(list[i]);
	uintptr_t first = (uintptr_t)&folio->page;
	uintptr_t size = folio_nr_pages(folio) * sizeof(struct page);
	unsigned long nr;

	/*
	 * A folio's struct pages are contiguous, and a pinned folio cannot
	 * be split: compare addresses rather than load each entry's
	 * head_offset (a cache line per page, 512 per PMD-mapped THP).
	 */
	for (nr = i + 1; nr < npages; nr++)
		if (!list[nr] || (uintptr_t)list[nr] - first >= size)
			break;
	*ntails = (unsigned int)(nr - i);
	return folio;
}

/* The folio of page @i of the range and how many pages from i are in it. */
static struct folio *gup_folio_range_next(struct page *start,
					  unsigned long npages, unsigned long i,
					  unsigned int *ntails)
{
	struct page *next = start + i;
	struct folio *folio = page_folio(next);
	unsigned long nr = 1;

	if (folio_test_large(folio))
		nr = min(npages - i,
			 folio_nr_pages(folio) -
				 (unsigned long)(next - &folio->page));
	*ntails = (unsigned int)nr;
	return folio;
}

void unpin_user_pages(struct page **pages, unsigned long npages)
{
	unsigned int nr;

	/* Probably an error return handed on as a count. */
	if (HETMM_WARN_ON_ONCE(IS_ERR_VALUE(npages)))
		return;
	sanity_check_pinned_pages(pages, npages);
	for (unsigned long i = 0; i < npages; i += nr) {
		struct folio *folio;

		if (!pages[i]) {
			nr = 1;
			continue;
		}
		folio = gup_folio_next(pages, npages, i, &nr);
		__gup_put_folio(folio, (int)nr, FOLL_PIN);
	}
	__gup_flush_accounting();
}

/* Mark @folio dirty before its pins go (once per run; not the zero page). */
static void gup_folio_make_dirty(struct folio *folio)
{
	if (is_zero_folio(folio) || folio_test_flag(folio, PG_dirty))
		return;
	/* The lock keeps page.mapping stable (a truncated folio has none). */
	folio_lock(folio);
	folio_mark_dirty(folio);
	folio_unlock(folio);
}

void unpin_user_pages_dirty_lock(struct page **pages, unsigned long npages,
				 bool make_dirty)
{
	unsigned int nr;

	if (!make_dirty) {
		unpin_user_pages(pages, npages);
		return;
	}
	if (HETMM_WARN_ON_ONCE(IS_ERR_VALUE(npages)))
		return;
	for (unsigned long i = 0; i < npages; i += nr) {
		struct folio *folio;

		if (HETMM_WARN_ON_ONCE(!pages[i])) {
			nr = 1;
			continue;
		}
		folio = gup_folio_next(pages, npages, i, &nr);
		gup_folio_make_dirty(folio);
		__gup_put_folio(folio, (int)nr, FOLL_PIN);
	}
	__gup_flush_accounting();
}

void __gup_unpin_range(struct page *page, unsigned long npages, bool make_dirty)
{
	unsigned int nr;

	for (unsigned long i = 0; i < npages; i += nr) {
		struct folio *folio =
			gup_folio_range_next(page, npages, i, &nr);

		if (make_dirty)
			gup_folio_make_dirty(folio);
		__gup_put_folio(folio, (int)nr, FOLL_PIN);
	}
}

void unpin_user_page_range_dirty_lock(struct page *page, unsigned long npages,
				      bool make_dirty)
{
	__gup_unpin_range(page, npages, make_dirty);
	__gup_flush_accounting();
}

void unpin_folios(struct folio **folios, unsigned long nfolios)
{
	unsigned long i = 0, j;

	if (HETMM_WARN_ON_ONCE(IS_ERR_VALUE(nfolios)))
		return;
	while (i < nfolios) {
		for (j = i + 1; j < nfolios; j++)
			if (folios[i] != folios[j])
				break;
		if (folios[i])
			__gup_put_folio(folios[i], (int)(j - i), FOLL_PIN);
		i = j;
	}
	__gup_flush_accounting();
}

void folio_add_pin(struct folio *folio)
{
	if (is_zero_folio(folio))
		return;
	if (folio_test_large(folio)) {
		HETMM_WARN_ON_ONCE(folio_pincount(folio) < 1);
		folio_ref_add(folio, 1);
		atomic_fetch_add(&folio->page._pincount, 1);
	} else {
		HETMM_WARN_ON_ONCE(folio_ref_count(folio) <
				   (int)GUP_PIN_COUNTING_BIAS);
		folio_ref_add(folio, (int)GUP_PIN_COUNTING_BIAS);
	}
	folio_set_pinned_hint(folio);
	gup_account(folio, 1, true);
	__gup_flush_accounting();
}

int folio_add_pins(struct folio *folio, unsigned int pins)
{
	int ret;

	HETMM_WARN_ON_ONCE(!folio_maybe_dma_pinned(folio));
	ret = try_grab_folio(folio, pins, FOLL_PIN);
	__gup_flush_accounting();
	return ret;
}

/* -------------------------------------------------------------- queries */

bool folio_is_longterm_pinnable(struct folio *folio)
{
	if (is_zero_folio(folio))
		return true;
	if (folio_is_zone_device(folio)) {
		enum memory_type type = folio->page.pgmap->type;

		/* Both must stay evictable: migrate coherent memory off. */
		if (type == MEMORY_DEVICE_COHERENT ||
		    type == MEMORY_DEVICE_FS_DAX)
			return false;
		/* Other device memory does not move anyway. */
		return true;
	}
	return folio_zone(folio) != ZONE_MOVABLE;
}

bool gup_must_unshare(struct vm_area_struct *vma, unsigned int flags,
		      struct page *page)
{
	struct folio *folio;
	unsigned int pflags;

	/* Only read-only pins: a write fault makes the page exclusive. */
	if ((flags & (FOLL_WRITE | FOLL_PIN)) != FOLL_PIN)
		return false;
	folio = page_folio(page);
	if (!folio_test_anon(folio)) {
		/* Page cache and the zero page: only long-term pins of COW
		 * mappings, which must not keep a page the process may COW
		 * away from; without the VMA (GUP-fast) we cannot tell. */
		if (!(flags & FOLL_LONGTERM))
			return false;
		if (!vma)
			return true;
		return is_cow_mapping(vma->vm_flags);
	}
	/*
	 * Acquire: pairs with the clearing side (fork, migration), which
	 * clears the entry, then PageAnonExclusive. hugetlb keeps the bit in
	 * its head page, a THP in each page.
	 */
	if (folio_test_hugetlb(folio))
		page = &folio->page;
	pflags = atomic_load_explicit(&page->flags, memory_order_acquire);
	return !(pflags & (1U << PG_anon_exclusive));
}

/* ---------------------------------------------------------- slow path */

void __gup_set_has_pinned(struct mm_struct *mm)
{
	if (!(atomic_load_explicit(&mm->flags, memory_order_relaxed) &
	      BIT(MMF_HAS_PINNED)))
		atomic_fetch_or(&mm->flags, BIT(MMF_HAS_PINNED));
}

/* vma_is_anonymous(): private anonymous memory (hugetlb has vm_ops in
 * Linux, so it is not, even when private and anonymous). */
static bool vma_is_anon(const struct vm_area_struct *vma)
{
	return !vma->vm_file && !(vma->vm_flags & VM_HUGETLB);
}

static bool vma_is_accessible(const struct vm_area_struct *vma)
{
	return vma->vm_flags & (VM_READ | VM_WRITE | VM_EXEC);
}

/*
 * A shared writable mapping of a file whose dirty folios must be written
 * back: the filesystem tracks writes through write faults, which a device
 * writing through a long-term pin would bypass.
 */
static bool vma_needs_dirty_tracking(const struct vm_area_struct *vma)
{
	if ((vma->vm_flags & (VM_SHARED | VM_WRITE)) != (VM_SHARED | VM_WRITE))
		return false;
	return vma->vm_file && mapping_needs_writeback(vma->vm_file->f_mapping);
}

static bool writable_file_mapping_allowed(const struct vm_area_struct *vma,
					  unsigned int flags)
{
	if ((flags & (FOLL_PIN | FOLL_LONGTERM)) != (FOLL_PIN | FOLL_LONGTERM))
		return true;
	return !vma_needs_dirty_tracking(vma);
}

/* Spec 1.4, in the kernel's order. */
static int check_vma_flags(struct vm_area_struct *vma, unsigned int flags)
{
	unsigned long vm_flags = vma->vm_flags;

	if (vm_flags & (VM_IO | VM_PFNMAP))
		return -EFAULT;
	if ((flags & FOLL_ANON) && !vma_is_anon(vma))
		return -EFAULT;
	if ((flags & FOLL_SPLIT_PMD) && (vm_flags & VM_HUGETLB))
		return -EOPNOTSUPP;
	if (flags & FOLL_WRITE) {
		if (!vma_is_anon(vma) &&
		    !writable_file_mapping_allowed(vma, flags))
			return -EFAULT;
		if (!(vm_flags & VM_WRITE)) {
			if (!(flags & FOLL_FORCE))
				return -EFAULT;
			/* FORCE writes break COW; shared memory has none. */
			if (!is_cow_mapping(vm_flags))
				return -EFAULT;
		}
	} else if (!(vm_flags & VM_READ)) {
		if (!(flags & FOLL_FORCE))
			return -EFAULT;
		if (!(vm_flags & VM_MAYREAD))
			return -EFAULT;
	}
	return 0;
}

/* Why the walk wants a fault (for the fault's result). */
struct follow_ctx {
	bool hwpoison; /* the entry is a poison entry */
	bool migrating; /* the entry is a migration entry (we would wait) */
};

static void note_nonpresent(struct follow_ctx *ctx, pte_t e)
{
	enum softleaf_type k = pte_kind(e);

	if (k == SOFTLEAF_HWPOISON ||
	    (k == SOFTLEAF_MARKER &&
	     (softleaf_offset(softleaf_from_pte(e)) & PTE_MARKER_POISONED)))
		ctx->hwpoison = true;
	else if (is_migration_kind(k))
		ctx->migrating = true;
}

/* May a PROT_NONE (NUMA hint) entry be followed? */
static bool gup_can_follow_protnone(struct vm_area_struct *vma,
				    unsigned int flags)
{
	if (!(flags & FOLL_HONOR_NUMA_FAULT))
		return true;
	/* No NUMA hinting in inaccessible VMAs: FORCE must progress. */
	return !vma_is_accessible(vma);
}

/*
 * FOLL_FORCE may write through a read-only entry of a private mapping
 * without VM_WRITE once COW is broken, i.e. the page is exclusively ours.
 */
static bool can_follow_write_common(struct page *page,
				    struct vm_area_struct *vma,
				    unsigned int flags)
{
	if (!(flags & FOLL_FORCE))
		return false;
	if (vma->vm_flags & (VM_MAYSHARE | VM_SHARED))
		return false;
	if (!(vma->vm_flags & VM_MAYWRITE))
		return false;
	if (vma->vm_flags & VM_WRITE)
		return false;
	return page && folio_test_anon(page_folio(page)) &&
	       PageAnonExclusive(page);
}

static bool can_follow_write(pte_t e, struct page *page,
			     struct vm_area_struct *vma, unsigned int flags)
{
	if (pte_write(e))
		return true;
	return can_follow_write_common(page, vma, flags);
}

/*
 * Nothing mapped at @addr: 0 (fault it in), or -EFAULT for a core dump of
 * a hole that would read as zeroes.
 */
static long no_page_table(struct vm_area_struct *vma, unsigned int flags,
			  unsigned long addr)
{
	if (!(flags & FOLL_DUMP))
		return 0;
	if (vma->vm_flags & VM_HUGETLB) {
		struct folio *folio;
		pgoff_t idx;

		if (!vma->vm_file)
			return -EFAULT;
		idx = ((addr - vma->vm_start) >> PAGE_SHIFT) + vma->vm_pgoff;
		folio = filemap_get_folio(vma->vm_file->f_mapping, idx);
		if (IS_ERR(folio))
			return -EFAULT;
		folio_put(folio);
		return 0;
	}
	return vma_is_anon(vma) ? -EFAULT : 0;
}

static void gup_fill_pages(struct page *page, unsigned long nr,
			   struct page **pages)
{
	if (!pages)
		return;
	for (unsigned long i = 0; i < nr; i++)
		pages[i] = page + i;
}

/* A special entry with no struct page: -EEXIST (after FOLL_TOUCH). */
static long follow_pfn_pte(pte_t *ptep, pte_t e, unsigned int flags)
{
	if (flags & FOLL_TOUCH) {
		pte_t n = pte_mkyoung(e);

		if (flags & FOLL_WRITE)
			n = pte_mkdirty(n);
		if (pte_val(n) != pte_val(e))
			set_pte(ptep, n);
	}
	return -EEXIST;
}

/*
 * Decide one present-or-not PTE: *pagep = the page to take (0 returned),
 * or NULL with 0 (a fault is needed), -EMLINK (unshare needed), or an
 * error. Called with the PTE lock held.
 */
static long follow_one_pte(struct vm_area_struct *vma, pte_t *ptep, pte_t e,
			   unsigned int flags, struct page **pagep,
			   struct follow_ctx *ctx)
{
	struct hetmm_machine *m = vma->vm_mm->machine;
	struct page *page;

	*pagep = NULL;
	if (!pte_present(e)) {
		if (!pte_none(e))
			note_nonpresent(ctx, e);
		return 0;
	}
	if (pte_protnone(e) && !gup_can_follow_protnone(vma, flags))
		return 0;
	page = pte_special(e) ? NULL : pfn_to_page(m, pte_pfn(e));
	if ((flags & FOLL_WRITE) && !can_follow_write(e, page, vma, flags))
		return 0;
	if (!page) {
		if (flags & FOLL_DUMP)
			return -EFAULT; /* no zero or special pages in dumps */
		if (pte_pfn(e) != page_to_pfn(m->zero_page))
			return follow_pfn_pte(ptep, e, flags);
		page = m->zero_page;
	}
	if (!pte_write(e) && gup_must_unshare(vma, flags, page))
		return -EMLINK;
	*pagep = page;
	return 0;
}

/* FOLL_TOUCH on one followed page (the PTE lock held). */
static void gup_touch_page(struct folio *folio, pte_t e, unsigned int flags)
{
	if (!(flags & FOLL_TOUCH) || is_zero_folio(folio))
		return;
	if ((flags & FOLL_WRITE) && !pte_dirty(e) &&
	    !folio_test_flag(folio, PG_dirty))
		folio_mark_dirty(folio);
	if (!folio_test_flag(folio, PG_referenced))
		folio_set_flag(folio, PG_referenced);
}

/*
 * Follow the PTEs from @addr up to the end of this table, the VMA or @end,
 * taking each page; consecutive pages of one folio are grabbed as one run.
 * Return: the pages taken (> 0), else what the first PTE needs (0: fault,
 * -EMLINK: unshare, or an error).
 */
static long follow_page_pte(struct vm_area_struct *vma, unsigned long addr,
			    unsigned long end, pmd_t *pmd, unsigned int flags,
			    struct page **pages, struct follow_ctx *ctx)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long walk_end, nr = 0, run = 0;
	struct page *run_first = NULL;
	bool need_no_page_table = false;
	spinlock_t *ptl;
	pte_t *ptep;
	long ret = 0;

	ptep = pte_offset_map_lock(mm, pmd, addr, &ptl);
	if (!ptep)
		return no_page_table(vma, flags, addr);
	walk_end = min(pt_addr_end(addr, end, PMD_SIZE), vma->vm_end);
	for (; addr < walk_end; addr += PAGE_SIZE, ptep++) {
		pte_t e = ptep_get(ptep);
		struct page *page;

		ret = follow_one_pte(vma, ptep, e, flags, &page, ctx);
		if (ret || !page) {
			need_no_page_table = !ret && pte_none(e);
			break;
		}
		/* A run is consecutive pages of one folio: one grab. */
		if (run && (page != run_first + run ||
			    page_folio(page) != page_folio(run_first))) {
			ret = try_grab_folio(page_folio(run_first), (long)run,
					     flags);
			if (ret) {
				run = 0;
				break;
			}
			gup_fill_pages(run_first, run,
				       pages ? pages + nr : NULL);
			nr += run;
			run = 0;
		}
		if (!run)
			run_first = page;
		run++;
		gup_touch_page(page_folio(page), e, flags);
	}
	if (run) {
		long r =
			try_grab_folio(page_folio(run_first), (long)run, flags);

		if (r) {
			/* The run's first page is where the walk stopped. */
			ret = r;
			need_no_page_table = false;
		} else {
			gup_fill_pages(run_first, run,
				       pages ? pages + nr : NULL);
			nr += run;
		}
	}
	spin_unlock(ptl);
	if (nr)
		return (long)nr;
	if (need_no_page_table)
		return no_page_table(vma, flags, addr);
	return ret;
}

/* Follow a PMD leaf (THP or hugetlb). Called with page_table_lock held. */
static long follow_huge_pmd(struct vm_area_struct *vma, unsigned long addr,
			    unsigned long end, pmd_t *pmd, unsigned int flags,
			    struct page **headp)
{
	struct hetmm_machine *m = vma->vm_mm->machine;
	pmd_t e = ptep_get(pmd);
	struct page *head = pfn_to_page(m, pte_pfn(e));
	struct folio *folio = page_folio(head);
	unsigned long off, nr;
	long ret;

	if ((flags & FOLL_WRITE) && !can_follow_write(e, head, vma, flags))
		return 0;
	/* No zero pages in core dumps. */
	if ((flags & FOLL_DUMP) && is_huge_zero_folio(folio))
		return -EFAULT;
	if (pte_protnone(e) && !gup_can_follow_protnone(vma, flags))
		return 0;
	/* A PMD-mapped folio keeps its exclusivity in the head page. */
	if (!pte_write(e) && gup_must_unshare(vma, flags, head))
		return -EMLINK;
	off = (addr & ~PMD_MASK) >> PAGE_SHIFT;
	nr = min(HPAGE_PMD_NR - off, (end - addr) >> PAGE_SHIFT);
	ret = try_grab_folio(folio, (long)nr, flags);
	if (ret)
		return ret;
	if ((flags & FOLL_TOUCH) && !folio_test_hugetlb(folio)) {
		pmd_t n = pte_mkyoung(e);

		if (flags & FOLL_WRITE)
			n = pte_mkdirty(n);
		if (pte_val(n) != pte_val(e))
			set_pte(pmd, n);
	}
	*headp = head + off;
	return (long)nr;
}

/*
 * follow_page_mask - take the pages mapped from @addr (at most up to @end,
 * within one page table or one PMD leaf). Return: the count (> 0), 0 (a
 * fault is needed), -EMLINK (an unshare is needed), -EEXIST (no struct
 * page), or an error.
 */
static long follow_page_mask(struct vm_area_struct *vma, unsigned long addr,
			     unsigned long end, unsigned int flags,
			     struct page **pages, struct follow_ctx *ctx)
{
	struct mm_struct *mm = vma->vm_mm;
	struct page *page = NULL;
	pmd_t *pmd = mm_find_pmd(mm, addr);
	pmd_t e;
	long ret;

	if (!pmd)
		return no_page_table(vma, flags, addr);
	e = ptep_get(pmd);
	if (pte_none(e))
		return no_page_table(vma, flags, addr);
	if (!pte_present(e)) {
		note_nonpresent(ctx, e);
		return no_page_table(vma, flags, addr);
	}
	if (pmd_table(e))
		return follow_page_pte(vma, addr, end, pmd, flags, pages, ctx);
	if (pte_protnone(e) && !gup_can_follow_protnone(vma, flags))
		return no_page_table(vma, flags, addr);

	spin_lock(&mm->page_table_lock);
	e = ptep_get(pmd);
	if (!pte_present(e)) {
		spin_unlock(&mm->page_table_lock);
		if (!pte_none(e))
			note_nonpresent(ctx, e);
		return no_page_table(vma, flags, addr);
	}
	if (!pmd_leaf(e)) {
		spin_unlock(&mm->page_table_lock);
		return follow_page_pte(vma, addr, end, pmd, flags, pages, ctx);
	}
	if ((flags & FOLL_SPLIT_PMD) &&
	    !folio_test_hugetlb(
		    page_folio(pfn_to_page(mm->machine, pte_pfn(e))))) {
		spin_unlock(&mm->page_table_lock);
		split_huge_pmd(vma, pmd, addr);
		/* If the PMD was left empty, put a table there. */
		if (__pte_alloc(mm, pmd))
			return -ENOMEM;
		return follow_page_pte(vma, addr, end, pmd, flags, pages, ctx);
	}
	ret = follow_huge_pmd(vma, addr, end, pmd, flags, &page);
	spin_unlock(&mm->page_table_lock);
	/* The references are held: fill the array without the lock. */
	if (ret > 0)
		gup_fill_pages(page, (unsigned long)ret, pages);
	return ret;
}

/*
 * faultin_page - resolve what follow_page_mask asked for at @addr.
 * Return: 0 (follow again), -EBUSY (FOLL_NOWAIT and the fault would wait:
 * stop here), or the error (-EFAULT, -ENOMEM, -EHWPOISON).
 */
static int faultin_page(struct vm_area_struct *vma, unsigned long addr,
			unsigned int flags, bool unshare,
			const struct follow_ctx *ctx)
{
	unsigned int fault_flags = 0;

	if (flags & FOLL_NOFAULT)
		return -EFAULT;
	if (ctx->hwpoison)
		return (flags & FOLL_HWPOISON) ? -EHWPOISON : -EFAULT;
	if ((flags & FOLL_NOWAIT) && ctx->migrating)
		return -EBUSY;
	/*
	 * A FORCE write to a COW mapping without VM_WRITE is a write fault
	 * too: it breaks COW into an exclusive page that stays read-only
	 * (PROTNONE in a PROT_NONE VMA), which can_follow_write_common()
	 * then accepts.
	 */
	if (flags & FOLL_WRITE)
		fault_flags |= FAULT_FLAG_WRITE;
	if (flags & FOLL_REMOTE)
		fault_flags |= FAULT_FLAG_REMOTE;
	if (unshare) {
		/* Only read-only pins unshare. */
		HETMM_WARN_ON_ONCE(fault_flags & FAULT_FLAG_WRITE);
		fault_flags |= FAULT_FLAG_UNSHARE;
	}
	return handle_mm_fault(vma, addr, fault_flags);
}

/*
 * __get_user_pages - the slow walk: VMA checks at each VMA, follow, fault
 * and retry. Return: the pages taken, or (none taken) the error or 0.
 * Context: mmap_lock held for read.
 */
static long __get_user_pages(struct mm_struct *mm, unsigned long start,
			     unsigned long nr_pages, unsigned int flags,
			     struct page **pages)
{
	struct vm_area_struct *vma = NULL;
	long ret = 0, i = 0;

	if (!nr_pages)
		return 0;
	start &= PAGE_MASK;
	HETMM_WARN_ON_ONCE(!!pages != !!(flags & (FOLL_GET | FOLL_PIN)));
	HETMM_WARN_ON_ONCE((flags & (FOLL_PIN | FOLL_GET)) ==
			   (FOLL_PIN | FOLL_GET));
	do {
		struct follow_ctx ctx;
		unsigned long end;
		unsigned int tries = 0;
		long nr;

		if (!vma || start >= vma->vm_end) {
			vma = vma_lookup(mm, start);
			if (flags & FOLL_MADV_POPULATE) {
				if (!vma) {
					ret = -ENOMEM;
					goto out;
				}
				if (check_vma_flags(vma, flags)) {
					ret = -EINVAL;
					goto out;
				}
			} else {
				if (!vma) {
					ret = -EFAULT;
					goto out;
				}
				ret = check_vma_flags(vma, flags);
				if (ret)
					goto out;
			}
		}
		end = nr_pages > (TASK_SIZE - start) >> PAGE_SHIFT ?
			      TASK_SIZE :
			      start + (nr_pages << PAGE_SHIFT);
retry:
		memset(&ctx, 0, sizeof(ctx));
		nr = follow_page_mask(vma, start, end, flags,
				      pages ? pages + i : NULL, &ctx);
		if (nr == 0 || nr == -EMLINK) {
			if (HETMM_WARN_ON_ONCE(++tries >
					       GUP_MAX_FAULT_RETRIES)) {
				ret = -EFAULT;
				goto out;
			}
			ret = faultin_page(vma, start, flags, nr == -EMLINK,
					   &ctx);
			if (ret == 0)
				goto retry;
			if (ret == -EBUSY)
				ret = 0;
			goto out;
		} else if (nr == -EEXIST) {
			/* No struct page: fine for populating, not for pages[]. */
			if (pages) {
				ret = nr;
				goto out;
			}
			nr = 1;
		} else if (nr < 0) {
			ret = nr;
			goto out;
		}
		HETMM_WARN_ON_ONCE((unsigned long)nr > nr_pages);
		i += nr;
		start += (unsigned long)nr << PAGE_SHIFT;
		nr_pages -= (unsigned long)nr;
	} while (nr_pages);
out:
	return i ? i : ret;
}

/*
 * __get_user_pages_locked - take mmap_lock if *@locked is 0 (and drop it
 * before returning, setting *@locked back to 0), mark the mm pinned for
 * FOLL_PIN, add FOLL_GET for a pages array, walk. Faults never drop the
 * lock here, so one pass is the whole story. Return: as __get_user_pages,
 * but never 0 for nr_pages > 0 except under FOLL_NOWAIT.
 */
static long __get_user_pages_locked(struct mm_struct *mm, unsigned long start,
				    unsigned long nr_pages, struct page **pages,
				    int *locked, unsigned int flags)
{
	bool must_unlock = false;
	long ret;

	if (!nr_pages)
		return 0;
	if (!*locked) {
		mmap_read_lock(mm);
		must_unlock = true;
		*locked = 1;
	} else {
		mmap_assert_locked(mm);
	}
	if (flags & FOLL_PIN)
		__gup_set_has_pinned(mm);
	if (pages && !(flags & FOLL_PIN))
		flags |= FOLL_GET;
	ret = __get_user_pages(mm, start, nr_pages, flags, pages);
	if (must_unlock && *locked) {
		mmap_read_unlock(mm);
		*locked = 0;
	}
	/* Nothing done is an error unless we were told not to wait. */
	if (HETMM_WARN_ON_ONCE(ret == 0 && !(flags & FOLL_NOWAIT)))
		return -EFAULT;
	return ret;
}

/* -------------------------------------------------- long-term migration */

/*
 * Migrate an anonymous folio (small, THP or hugetlb) out of ZONE_MOVABLE
 * into ZONE_NORMAL, as migrate_pages() with MR_LONGTERM_PIN would. The
 * caller holds one reference (the "isolation" reference) and no pin.
 * Return: 0, or -ENOMEM (no memory, or the folio kept references or
 * mappings we cannot take away: a pin, a racing GUP).
 */
static int gup_migrate_anon_folio(struct folio *src)
{
	const unsigned int keep = (1U << PG_anon) | (1U << PG_swapbacked) |
				  (1U << PG_uptodate) | (1U << PG_referenced) |
				  (1U << PG_active) | (1U << PG_hugetlb);
	struct hetmm_machine *m = folio_machine(src);
	unsigned int order = folio_order(src);
	unsigned long nr = folio_nr_pages(src);

	for (int attempt = 0; attempt < GUP_MIGRATE_RETRIES; attempt++) {
		struct folio *dst = folio_alloc(m, GFP_KERNEL, order);

		if (!dst)
			return -ENOMEM;
		folio_lock(src);
		HETMM_BUG_ON(!folio_trylock(dst));
		if (folio_mapped(src))
			try_to_migrate(src);
		/* Every mapping gone and only our reference left? */
		if (folio_mapped(src) || folio_ref_count(src) != 1 ||
		    folio_mc_copy(dst, src)) {
			remove_migration_ptes(src, src);
			folio_unlock(src);
			folio_unlock(dst);
			folio_put(dst);
			continue;
		}
		dst->page.mapping = src->page.mapping;
		dst->page.index = src->page.index;
		atomic_fetch_or(&dst->page.flags,
				atomic_load(&src->page.flags) & keep);
		if (folio_test_flag(src, PG_dirty)) {
			folio_clear_flag(src, PG_dirty);
			folio_set_flag(dst, PG_dirty);
		}
		for (unsigned long i = 0; i < nr; i++) {
			if (PageAnonExclusive(folio_page(src, i)))
				SetPageAnonExclusive(folio_page(dst, i));
		}
		remove_migration_ptes(src, dst);
		folio_unlock(dst);
		folio_unlock(src);
		folio_put(dst); /* the allocation's: the mappings hold theirs */
		return 0;
	}
	return -ENOMEM;
}

/*
 * Migrate a page-cache folio (small, or a hugetlbfs folio) out of
 * ZONE_MOVABLE, as migrate_pages() with MR_LONGTERM_PIN would through the
 * mapping's migrate_folio: unmap it everywhere, copy it, hand the cache
 * slot over, map the copy. The caller holds one reference (isolation) and
 * no pin. A folio someone else holds (a short-term pin, a racing read) is
 * -EAGAIN for migrate_pagecache_folio(): retried, then given up.
 * Return: 0 (moved, or truncated meanwhile), or -ENOMEM.
 */
static int gup_migrate_file_folio(struct folio *src)
{
	struct hetmm_machine *m = folio_machine(src);
	unsigned int order = folio_order(src);

	for (int attempt = 0; attempt < GUP_MIGRATE_RETRIES; attempt++) {
		struct folio *dst = folio_alloc(m, GFP_KERNEL, order);
		int ret;

		if (!dst)
			return -ENOMEM;
		folio_lock(src);
		HETMM_BUG_ON(!folio_trylock(dst));
		ret = migrate_pagecache_folio(dst, src);
		folio_unlock(dst);
		folio_unlock(src);
		/* The allocation's: the cache and the mappings hold theirs
		 * (on failure this frees the unused copy). */
		folio_put(dst);
		if (!ret)
			return 0;
		if (ret != -EAGAIN)
			return -ENOMEM;
	}
	return -ENOMEM;
}

/* Can we move this unpinnable folio ourselves (with migrate_pages)? */
static bool gup_folio_migratable(struct folio *folio)
{
	if (folio_is_zone_device(folio))
		return false;
	/* Anonymous memory, or page cache (a folio still in its file). */
	return folio_test_anon(folio) || READ_ONCE(folio->page.mapping);
}

static int gup_migrate_folio(struct folio *folio)
{
	if (folio_test_anon(folio))
		return gup_migrate_anon_folio(folio);
	return gup_migrate_file_folio(folio);
}

static int folio_ptr_cmp(const void *a, const void *b)
{
	struct folio *const *fa = a, *const *fb = b;
	uintptr_t x = (uintptr_t)fa[0], y = (uintptr_t)fb[0];

	return x < y ? -1 : x > y;
}

/* Drop the isolation references of @list. */
static void gup_putback(struct folio **list, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		folio_put(list[i]);
	free(list);
}

/*
 * check_and_migrate_movable_pages - spec 3.6 steps 3-4 over the pinned
 * pages[0..nr). Return: 0 (all pinnable, pins kept), -EAGAIN (unpinnable
 * folios were migrated and everything unpinned: pin the range again), or
 * -ENOMEM/-EBUSY (everything unpinned).
 */
static long check_and_migrate_movable_pages(unsigned long nr,
					    struct page **pages)
{
	struct folio **list = NULL;
	unsigned long collected = 0, listed = 0;
	bool stuck = false;
	long ret = -EAGAIN;

	for (unsigned long i = 0; i < nr;) {
		struct folio *folio = page_folio(pages[i]);
		unsigned long next = i + 1;

		/* One visit per folio: skip the rest of a large one. */
		if (folio_test_large(folio)) {
			unsigned long s = folio_pfn(folio);
			unsigned long e = s + folio_nr_pages(folio);

			while (next < nr && page_to_pfn(pages[next]) >= s &&
			       page_to_pfn(pages[next]) < e)
				next++;
		}
		i = next;
		if (folio_is_longterm_pinnable(folio))
			continue;
		collected++;
		if (folio_is_device_coherent(folio))
			continue;
		if (!gup_folio_migratable(folio)) {
			/* Neither anon nor cached (a truncated file folio
			 * still pinned by someone): nothing can move it. */
			stuck = true;
			continue;
		}
		if (!list) {
			list = calloc(nr, sizeof(*list));
			if (!list) {
				stuck = true;
				continue;
			}
		}
		folio_get(folio); /* isolation */
		list[listed++] = folio;
	}
	if (!collected) {
		free(list);
		return 0;
	}
	if (stuck) {
		ret = -ENOMEM;
		goto err;
	}
	for (unsigned long i = 0; i < nr; i++) {
		struct folio *folio = page_folio(pages[i]);

		if (folio_is_device_coherent(folio)) {
			/* Migration fails on a pinned folio: trade the pin
			 * for the plain reference migration consumes. */
			pages[i] = NULL;
			folio_get(folio);
			__gup_put_folio(folio, 1, FOLL_PIN);
			if (migrate_device_coherent_folio(folio)) {
				ret = -EBUSY;
				goto err;
			}
			continue;
		}
		/* Unexpected references stop migration: drop ours. */
		__gup_put_folio(folio, 1, FOLL_PIN);
		pages[i] = NULL;
	}
	/* The same folio may sit at several places of pages[]. */
	if (listed)
		qsort(list, listed, sizeof(*list), folio_ptr_cmp);
	for (unsigned long i = 0; i < listed; i++) {
		if (i && list[i] == list[i - 1])
			continue;
		if (gup_migrate_folio(list[i])) {
			ret = -ENOMEM;
			goto err;
		}
	}
	if (list)
		gup_putback(list, listed);
	__gup_flush_accounting();
	return -EAGAIN;
err:
	unpin_user_pages(pages, nr); /* skips the entries already cleared */
	if (list)
		gup_putback(list, listed);
	__gup_flush_accounting();
	return ret;
}

long __gup_longterm_locked(struct mm_struct *mm, unsigned long start,
			   unsigned long nr_pages, struct page **pages,
			   int *locked, unsigned int gup_flags)
{
	long rc, nr_pinned;

	if (!(gup_flags & FOLL_LONGTERM))
		return __get_user_pages_locked(mm, start, nr_pages, pages,
					       locked, gup_flags);
	/*
	 * No PF_MEMALLOC_PIN here: faults may still allocate movable pages,
	 * which the loop then moves (one more round).
	 */
	do {
		int lk = *locked;

		nr_pinned = __get_user_pages_locked(mm, start, nr_pages, pages,
						    &lk, gup_flags);
		if (nr_pinned <= 0) {
			rc = nr_pinned;
			break;
		}
		rc = check_and_migrate_movable_pages((unsigned long)nr_pinned,
						     pages);
	} while (rc == -EAGAIN);
	return rc ? rc : nr_pinned;
}

/* ---------------------------------------------------------- entry points */

bool __gup_args_valid(struct page **pages, int *locked, unsigned int *gup_flags,
		      unsigned int to_set)
{
	unsigned int flags = *gup_flags;

	if (HETMM_WARN_ON_ONCE(flags & INTERNAL_GUP_FLAGS))
		return false;
	flags |= to_set;
	if (locked) {
		/* At the interface the lock must be held. */
		if (HETMM_WARN_ON_ONCE(*locked != 1))
			return false;
		flags |= FOLL_UNLOCKABLE;
	}
	if (HETMM_WARN_ON_ONCE((flags & (FOLL_PIN | FOLL_GET)) ==
			       (FOLL_PIN | FOLL_GET)))
		return false;
	if (HETMM_WARN_ON_ONCE(!(flags & FOLL_PIN) && (flags & FOLL_LONGTERM)))
		return false;
	if (HETMM_WARN_ON_ONCE((flags & (FOLL_GET | FOLL_PIN)) && !pages))
		return false;
	/* The pgmap must stay hot-unpluggable at all times. */
	if (HETMM_WARN_ON_ONCE((flags & FOLL_LONGTERM) &&
			       (flags & FOLL_PCI_P2PDMA)))
		return false;
	*gup_flags = flags;
	return true;
}

long get_user_pages_remote(struct mm_struct *mm, unsigned long start,
			   unsigned long nr_pages, unsigned int gup_flags,
			   struct page **pages, int *locked)
{
	int local_locked = 1;
	long ret;

	if (!__gup_args_valid(pages, locked, &gup_flags,
			      FOLL_TOUCH | FOLL_REMOTE))
		return -EINVAL;
	ret = __get_user_pages_locked(mm, start, nr_pages, pages,
				      locked ? locked : &local_locked,
				      gup_flags);
	__gup_flush_accounting();
	return ret;
}

long get_user_pages(struct mm_struct *mm, unsigned long start,
		    unsigned long nr_pages, unsigned int gup_flags,
		    struct page **pages)
{
	int locked = 1;

	if (!__gup_args_valid(pages, NULL, &gup_flags, FOLL_TOUCH))
		return -EINVAL;
	return __get_user_pages_locked(mm, start, nr_pages, pages, &locked,
				       gup_flags);
}

long get_user_pages_unlocked(struct mm_struct *mm, unsigned long start,
			     unsigned long nr_pages, struct page **pages,
			     unsigned int gup_flags)
{
	int locked = 0;

	if (!__gup_args_valid(pages, NULL, &gup_flags,
			      FOLL_TOUCH | FOLL_UNLOCKABLE))
		return -EINVAL;
	return __get_user_pages_locked(mm, start, nr_pages, pages, &locked,
				       gup_flags);
}

long pin_user_pages(struct mm_struct *mm, unsigned long start,
		    unsigned long nr_pages, unsigned int gup_flags,
		    struct page **pages)
{
	int locked = 1;
	long ret;

	if (!__gup_args_valid(pages, NULL, &gup_flags, FOLL_PIN))
		return 0;
	ret = __gup_longterm_locked(mm, start, nr_pages, pages, &locked,
				    gup_flags);
	__gup_flush_accounting();
	return ret;
}

long pin_user_pages_remote(struct mm_struct *mm, unsigned long start,
			   unsigned long nr_pages, unsigned int gup_flags,
			   struct page **pages, int *locked)
{
	int local_locked = 1;
	long ret;

	if (!__gup_args_valid(pages, locked, &gup_flags,
			      FOLL_PIN | FOLL_TOUCH | FOLL_REMOTE))
		return 0;
	ret = __gup_longterm_locked(mm, start, nr_pages, pages,
				    locked ? locked : &local_locked, gup_flags);
	__gup_flush_accounting();
	return ret;
}

long pin_user_pages_unlocked(struct mm_struct *mm, unsigned long start,
			     unsigned long nr_pages, struct page **pages,
			     unsigned int gup_flags)
{
	int locked = 0;
	long ret;

	if (!__gup_args_valid(pages, NULL, &gup_flags,
			      FOLL_PIN | FOLL_TOUCH | FOLL_UNLOCKABLE))
		return 0;
	ret = __gup_longterm_locked(mm, start, nr_pages, pages, &locked,
				    gup_flags);
	__gup_flush_accounting();
	return ret;
}

struct page *get_dump_page(struct mm_struct *mm, unsigned long addr,
			   int *locked)
{
	struct page *page;
	long ret;

	ret = __get_user_pages_locked(mm, addr, 1, &page, locked,
				      FOLL_FORCE | FOLL_DUMP | FOLL_GET);
	return ret == 1 ? page : NULL;
}

/* ---------------------------------------------------------- memfd pins */

/*
 * The longterm check over folios (each listed once): 0 if all may stay
 * pinned; else every pin is dropped, the unpinnable folios are migrated,
 * and -EAGAIN asks for the range to be pinned again (-ENOMEM: they could
 * not be moved).
 */
static long check_and_migrate_movable_folios(unsigned long nr,
					     struct folio **folios)
{
	struct folio **list = NULL;
	unsigned long listed = 0;
	long ret = -EAGAIN;

	for (unsigned long i = 0; i < nr; i++) {
		struct folio *folio = folios[i];

		if (folio_is_longterm_pinnable(folio))
			continue;
		if (!list)
			list = calloc(nr, sizeof(*list));
		/* Page cache only here; a truncated one cannot move. */
		if (!list || !gup_folio_migratable(folio)) {
			ret = -ENOMEM;
			break;
		}
		folio_get(folio); /* isolation */
		list[listed++] = folio;
	}
	if (!list && ret == -EAGAIN)
		return 0;
	unpin_folios(folios, nr);
	for (unsigned long i = 0; i < listed; i++)
		if (ret == -EAGAIN && gup_migrate_folio(list[i]))
			ret = -ENOMEM;
	if (list)
		gup_putback(list, listed);
	return ret;
}

long memfd_pin_folios(struct file *memfd, loff_t start, loff_t end,
		      struct folio **folios, unsigned int max_folios,
		      pgoff_t *offset)
{
	struct address_space *mapping;
	unsigned long step, nr;
	struct inode *inode;
	pgoff_t idx, last;
	long ret;

	if (start < 0 || start > end || !max_folios || !memfd || !folios ||
	    !offset)
		return -EINVAL;
	mapping = memfd->f_mapping;
	if (!shmem_mapping(mapping) && !hugetlbfs_mapping(mapping))
		return -EINVAL;
	inode = file_inode(memfd);
	step = hugetlbfs_mapping(mapping) ? HPAGE_PMD_NR : 1;
	/* Pin, then move what may not stay pinned and pin again. */
	do {
		nr = 0;
		inode_lock_shared(inode);
		if (end >= i_size_read(inode)) {
			inode_unlock_shared(inode);
			return -EINVAL;
		}
		idx = ALIGN_DOWN((pgoff_t)start >> PAGE_SHIFT, step);
		last = (pgoff_t)end >> PAGE_SHIFT;
		for (; idx <= last && nr < max_folios; idx += step) {
			struct folio *folio = filemap_grab_folio(mapping, idx);

			if (IS_ERR(folio)) {
				ret = PTR_ERR(folio) == -ENOMEM ? -ENOMEM :
								  -EINVAL;
				goto err;
			}
			ret = try_grab_folio(folio, 1, FOLL_PIN);
			folio_unlock(folio);
			folio_put(folio);
			if (ret) {
				ret = -EINVAL;
				goto err;
			}
			if (!nr)
				*offset = (pgoff_t)start & (folio_size(folio) - 1);
			folios[nr++] = folio;
		}
		inode_unlock_shared(inode);
		/* Migration takes folio locks: never under the inode lock. */
		ret = check_and_migrate_movable_folios(nr, folios);
		__gup_flush_accounting();
	} while (ret == -EAGAIN);
	return ret ? ret : (long)nr;
err:
	inode_unlock_shared(inode);
	unpin_folios(folios, nr);
	return ret;
}

/* ------------------------------------------------------------ GUP-fast */

/* See gup_fast_folio_allowed() in gup_internal.h. */
bool __gup_fast_folio_allowed(struct folio *folio, unsigned int flags)
{
	return gup_fast_folio_allowed(folio, flags);
}

/* Undo the pins of pages[0..n) after a race (no sanity checks). */
static void gup_fast_unpin_user_pages(struct page **pages, unsigned long n)
{
	unsigned int nr;

	for (unsigned long i = 0; i < n; i += nr) {
		struct folio *folio = gup_folio_next(pages, n, i, &nr);

		__gup_put_folio(folio, (int)nr, FOLL_PIN);
	}
}

static inline void folio_mark_referenced(struct folio *folio)
{
	if (!folio_test_flag(folio, PG_referenced))
		folio_set_flag(folio, PG_referenced);
}

/*
 * The PTEs of one table, from @addr to @end. Stops at the first entry it
 * cannot decide (the slow path takes over there).
 */
unsigned long __gup_fast_pte_range(struct hetmm_machine *m, pmd_t pmd,
				   pmd_t *pmdp, unsigned long addr,
				   unsigned long end, unsigned int flags,
				   struct page **pages)
{
	pte_t *ptep = pt_table(m, pmd) + pte_index(addr);
	bool write = flags & FOLL_WRITE;
	unsigned long nr = 0;

	do {
		pte_t e = ptep_get(ptep);
		struct folio *folio;
		struct page *page;

		/* PROT_NONE: the slow path knows whether the VMA allows it. */
		if (pte_protnone(e) || !pte_access_permitted(e, write) ||
		    pte_special(e))
			break;
		page = pfn_to_page(m, pte_pfn(e));
		folio = __gup_grab_folio_fast(page, 1, flags);
		if (!folio)
			break;
		/* Still the same entry, in the same table? */
		if (unlikely(pte_val(ptep_get(pmdp)) != pte_val(pmd) ||
			     pte_val(ptep_get(ptep)) != pte_val(e))) {
			__gup_put_folio(folio, 1, flags);
			break;
		}
		if (!__gup_fast_folio_allowed(folio, flags) ||
		    (!pte_write(e) && gup_must_unshare(NULL, flags, page))) {
			__gup_put_folio(folio, 1, flags);
			break;
		}
		folio_mark_referenced(folio);
		pages[nr++] = page;
	} while (ptep++, addr += PAGE_SIZE, addr != end);
	return nr;
}

/* A PMD leaf from @addr to @end (inside it): all or nothing. */
static unsigned long gup_fast_pmd_leaf(struct hetmm_machine *m, pmd_t pmd,
				       pmd_t *pmdp, unsigned long addr,
				       unsigned long end, unsigned int flags,
				       struct page **pages)
{
	unsigned long nr = (end - addr) >> PAGE_SHIFT;
	struct page *head, *page;
	struct folio *folio;

	if (pte_protnone(pmd) ||
	    !pte_access_permitted(pmd, flags & FOLL_WRITE) || pte_special(pmd))
		return 0;
	head = pfn_to_page(m, pte_pfn(pmd));
	page = head + pte_index(addr);
	folio = __gup_grab_folio_fast(page, (int)nr, flags);
	if (!folio)
		return 0;
	if (unlikely(pte_val(ptep_get(pmdp)) != pte_val(pmd)) ||
	    !__gup_fast_folio_allowed(folio, flags) ||
	    (!pte_write(pmd) && gup_must_unshare(NULL, flags, &folio->page))) {
		__gup_put_folio(folio, (int)nr, flags);
		return 0;
	}
	for (unsigned long i = 0; i < nr; i++)
		pages[i] = page + i;
	folio_mark_referenced(folio);
	return nr;
}

/* The lock-free walk of [addr, end). Context: rcu_read_lock() held. */
static unsigned long gup_fast_walk(struct mm_struct *mm, unsigned long addr,
				   unsigned long end, unsigned int flags,
				   struct page **pages)
{
	struct hetmm_machine *m = mm->machine;
	unsigned long nr = 0;

	while (addr < end) {
		pgd_t pgd = ptep_get(pgd_offset(mm, addr));
		unsigned long pud_end = pt_addr_end(addr, end, PUD_SIZE);
		pud_t pud;
		pmd_t *pmdp;

		if (!pmd_table(pgd))
			break;
		pud = ptep_get(pt_table(m, pgd) + pud_index(addr));
		if (!pmd_table(pud))
			break;
		pmdp = pt_table(m, pud) + pmd_index(addr);
		for (; addr < pud_end; pmdp++) {
			unsigned long next =
				pt_addr_end(addr, pud_end, PMD_SIZE);
			pmd_t pmd = ptep_get(pmdp);
			unsigned long n;

			if (pmd_leaf(pmd))
				n = gup_fast_pmd_leaf(m, pmd, pmdp, addr, next,
						      flags, pages + nr);
			else if (pmd_table(pmd))
				n = __gup_fast_pte_range(m, pmd, pmdp, addr,
							 next, flags,
							 pages + nr);
			else
				n = 0; /* none, or migrating/device-private */
			nr += n;
			if (n != (next - addr) >> PAGE_SHIFT)
				return nr;
			addr = next;
		}
	}
	return nr;
}

static unsigned long gup_fast(struct mm_struct *mm, unsigned long start,
			      unsigned long end, unsigned int flags,
			      struct page **pages)
{
	unsigned int seq = 0;
	unsigned long nr;

	if (flags & FOLL_PIN) {
		/* fork is write-protecting: do not even try. */
		seq = raw_read_seqcount(&mm->write_protect_seq);
		if (seq & 1)
			return 0;
	}
	rcu_read_lock();
	nr = gup_fast_walk(mm, start, end, flags, pages);
	rcu_read_unlock();
	if (flags & FOLL_PIN) {
		/* A concurrent fork may have shared what we pinned. */
		if (read_seqcount_retry(&mm->write_protect_seq, seq)) {
			gup_fast_unpin_user_pages(pages, nr);
			return 0;
		}
		sanity_check_pinned_pages(pages, nr);
	}
	return nr;
}

static int gup_fast_fallback(struct mm_struct *mm, unsigned long start,
			     unsigned long nr_pages, unsigned int flags,
			     struct page **pages)
{
	unsigned long len, end, nr_pinned;
	int locked = 0;
	long ret;

	if (HETMM_WARN_ON_ONCE(flags &
			       ~(FOLL_WRITE | FOLL_LONGTERM | FOLL_FORCE |
				 FOLL_PIN | FOLL_GET | FOLL_FAST_ONLY |
				 FOLL_NOFAULT | FOLL_PCI_P2PDMA |
				 FOLL_HONOR_NUMA_FAULT)))
		return -EINVAL;
	if (!mm)
		return -EINVAL;
	if (flags & FOLL_PIN)
		__gup_set_has_pinned(mm);
	start &= PAGE_MASK;
	len = nr_pages << PAGE_SHIFT;
	if (__builtin_add_overflow(start, len, &end))
		return -EOVERFLOW;
	if (end > TASK_SIZE)
		return -EFAULT;
	if (!nr_pages)
		return 0;

	nr_pinned = gup_fast(mm, start, end, flags, pages);
	if (nr_pinned == nr_pages || (flags & FOLL_FAST_ONLY))
		return (int)nr_pinned;

	/* The rest through the slow path (which takes mmap_lock). */
	start += nr_pinned << PAGE_SHIFT;
	pages += nr_pinned;
	ret = __gup_longterm_locked(mm, start, nr_pages - nr_pinned, pages,
				    &locked,
				    flags | FOLL_TOUCH | FOLL_UNLOCKABLE);
	if (ret < 0)
		/* The caller must unpin what we have: not an errno then. */
		return nr_pinned ? (int)nr_pinned : (int)ret;
	return (int)(ret + (long)nr_pinned);
}

int get_user_pages_fast_only(struct mm_struct *mm, unsigned long start,
			     int nr_pages, unsigned int gup_flags,
			     struct page **pages)
{
	if (!__gup_args_valid(pages, NULL, &gup_flags,
			      FOLL_GET | FOLL_FAST_ONLY))
		return -EINVAL;
	return gup_fast_fallback(mm, start, (unsigned long)(long)nr_pages,
				 gup_flags, pages);
}

int get_user_pages_fast(struct mm_struct *mm, unsigned long start, int nr_pages,
			unsigned int gup_flags, struct page **pages)
{
	if (!__gup_args_valid(pages, NULL, &gup_flags, FOLL_GET))
		return -EINVAL;
	return gup_fast_fallback(mm, start, (unsigned long)(long)nr_pages,
				 gup_flags, pages);
}

int pin_user_pages_fast(struct mm_struct *mm, unsigned long start, int nr_pages,
			unsigned int gup_flags, struct page **pages)
{
	int ret;

	if (!__gup_args_valid(pages, NULL, &gup_flags, FOLL_PIN))
		return -EINVAL;
	ret = gup_fast_fallback(mm, start, (unsigned long)(long)nr_pages,
				gup_flags, pages);
	__gup_flush_accounting();
	return ret;
}

/* ------------------------------------------------------------- checker */

/*
 * gup_check - pins must balance: per folio, a large folio's pincount is
 * within [0, refcount - mappings], and a small folio holding at least
 * GUP_PIN_COUNTING_BIAS references beyond its mappings was pinned at some
 * point (PG_has_pinned_hint); over the machine's RAM, the pins the
 * counters say are outstanding are the pins the folios hold (a small
 * folio's pins estimated as its non-mapping references / BIAS, exact while
 * nobody holds 1024 plain references).
 */
static void gup_check(struct hetmm_machine *m, void *arg,
		      struct hetmm_check_ctx *ctx)
{
	struct gup_machine *g = arg;
	long found = 0, outstanding;

	if (READ_ONCE(g->m) != m)
		return;
	outstanding = atomic_load(&g->acquired) - atomic_load(&g->released);
	if (outstanding < 0)
		hetmm_check_fail(ctx,
				 "gup: %ld more pins released than acquired",
				 -outstanding);
	for (int z = 0; z < 2; z++) {
		struct zone *zone = &m->zones[z];
		unsigned long end = READ_ONCE(zone->online_end_pfn);

		for (unsigned long pfn = zone->start_pfn; pfn < end; pfn++) {
			struct page *page = pfn_to_page(m, pfn);
			struct folio *folio = (struct folio *)page;
			int refs = atomic_load(&page->_refcount);
			bool hint;
			int mc;

			/* The huge zero folio is reserved but pinnable. */
			if (refs <= 0 || PageTail(page) ||
			    (PageTestFlag(page, PG_reserved) &&
			     !PageTestFlag(page, PG_huge_zero)) ||
			    PageTestFlag(page, PG_pgtable) ||
			    is_zero_page(page))
				continue;
			hint = folio_test_flag(folio, PG_has_pinned_hint);
			mc = folio_mapcount(folio);
			if (folio_test_large(folio)) {
				int pc = folio_pincount(folio);

				if (pc < 0)
					hetmm_check_fail(
						ctx,
						"gup: pfn %#lx: pincount %d",
						pfn, pc);
				else if (pc > refs - mc)
					hetmm_check_fail(
						ctx,
						"gup: pfn %#lx: pincount %d > refcount %d - %d mappings",
						pfn, pc, refs, mc);
				if (pc > 0 && !hint)
					hetmm_check_fail(
						ctx,
						"gup: pfn %#lx: pinned but never marked",
						pfn);
				found += pc > 0 ? pc : 0;
				pfn += folio_nr_pages(folio) - 1;
				continue;
			}
			if (refs - mc >= (int)GUP_PIN_COUNTING_BIAS) {
				if (!hint)
					hetmm_check_fail(
						ctx,
						"gup: pfn %#lx: refcount %d looks pinned but was never pinned",
						pfn, refs);
				found += (refs - mc) /
					 (int)GUP_PIN_COUNTING_BIAS;
			}
		}
	}
	if (found != outstanding)
		hetmm_check_fail(
			ctx,
			"gup: %ld pins outstanding by the counters, %ld held by folios",
			outstanding, found);
}
