// SPDX-License-Identifier: MIT
/*
 * gup_ranges.c - pinning with batched range output (seed 003): the pages
 * pin_user_pages_ranges() pins are described as (folio, offset, length)
 * runs, (physical address, length) runs, or packed PFN words, written into
 * 4 KiB output pages the caller provides; and unpinning by those ranges.
 * The formats are documented, with examples, in hetmm/gup.h.
 *
 * Locking: as GUP-fast (gup.c) for the lock-free part: the walk runs under
 * rcu_read_lock() with speculative grabs re-validated against the PMD and
 * PTE values and mm->write_protect_seq; a chunk it cannot finish goes
 * through the slow path (__gup_longterm_locked, which takes mmap_lock
 * itself). No lock is held while writing the output.
 *
 * Invariants:
 *   - The walk goes one chunk at a time: the part of one PMD (2 MiB) range
 *     that is inside the request. Before a chunk, the free output must
 *     hold the worst case of the whole chunk (16 bytes a page for FOLIO and
 *     PHYS, 8 bytes a page plus 16 for PFN, see enc_worst()); if it does
 *     not, the call stops there, at a PMD boundary, unless nothing was
 *     produced yet (then the chunk is cut to what surely fits). So an
 *     entry never fails to fit, and every pinned page is in the output.
 *   - Pins are per page, as with the page-array calls: out->nr_pages pins
 *     in all, each output run of n pages holds n pins.
 *   - A PMD leaf of a large RAM folio (THP, hugetlb), the case the walk is
 *     tuned for, is pinned inline (gup_try_pin_large) and its pins are
 *     accounted once per call; so are the inline releases of large RAM
 *     folios in unpin_user_ranges(). Everything else is accounted by the
 *     generic calls it goes through. Either way the machine's counts match
 *     the pins when an entry point returns.
 *   - A chunk's pins become output only after mm->write_protect_seq is
 *     found unchanged (and even) around them; otherwise they are dropped
 *     and the chunk goes to the slow path, which excludes fork by
 *     mmap_lock.
 *   - PFN format: per output page, front words + used size words <= 512;
 *     an EXT word's length is always the size word at 511 - k for the k-th
 *     EXT entry of that page; a page whose list ends early has a zero word
 *     right after its last PFN word.
 */
#include <string.h>

#include <hetmm/err.h>
#include <hetmm/gup.h>
#include <hetmm/mm.h>

#include "gup_internal.h"

/* ---------------------------------------------------------------- encoder */

static inline struct gup_folio_range *
folio_slot(struct gup_range_output *o, unsigned long buf, unsigned long i)
{
	return (struct gup_folio_range *)o->bufs[buf] + i;
}

static inline struct phys_vec *phys_slot(struct gup_range_output *o,
					 unsigned long buf, unsigned long i)
{
	return (struct phys_vec *)o->bufs[buf] + i;
}

static inline uint64_t *pfn_words(const struct gup_range_output *o,
				  unsigned long buf)
{
	return (uint64_t *)o->bufs[buf];
}

static void enc_reset(struct gup_range_output *o, struct hetmm_machine *m)
{
	o->machine = m;
	o->nr_entries = 0;
	o->nr_pages = 0;
	o->cur = 0;
	o->front = 0;
	o->back = 0;
}

/* Free bytes left in the output. */
static __always_inline unsigned long enc_free(const struct gup_range_output *o)
{
	if (o->cur >= o->nr_bufs)
		return 0;
	if (o->format == GUP_RANGE_PFN)
		return ((unsigned long)(o->nr_bufs - o->cur - 1) *
				GUP_PFN_WORDS_PER_BUF +
			GUP_PFN_WORDS_PER_BUF - o->front - o->back) *
		       sizeof(uint64_t);
	return ((unsigned long)(o->nr_bufs - o->cur) * GUP_RANGES_PER_BUF -
		o->front) *
	       sizeof(struct phys_vec);
}

/*
 * The most bytes @n more pages can cost: one 16-byte entry per page for
 * FOLIO and PHYS; for PFN at most one word per page (a 4 KiB word covers
 * one page, an EXT entry two words for at least two pages, and turning the
 * last entry into EXT adds one word with at least one page), plus a word
 * lost at an output-page boundary, plus slack.
 */
static __always_inline unsigned long enc_worst(const struct gup_range_output *o,
					       unsigned long n)
{
	if (o->format == GUP_RANGE_PFN)
		return n * sizeof(uint64_t) + 2 * sizeof(uint64_t);
	return n * sizeof(struct phys_vec);
}

/* How many pages surely fit in @bytes of free output. */
static unsigned long enc_fits(const struct gup_range_output *o,
			      unsigned long bytes)
{
	if (o->format == GUP_RANGE_PFN)
		return bytes >= 3 * sizeof(uint64_t) ?
			       bytes / sizeof(uint64_t) - 2 :
			       0;
	return bytes / sizeof(struct phys_vec);
}

/* A new fixed-size entry slot (FOLIO, PHYS), moving to the next page. */
static __always_inline bool enc_next_slot(struct gup_range_output *o)
{
	if (o->front == GUP_RANGES_PER_BUF) {
		o->cur++;
		o->front = 0;
	}
	return o->cur < o->nr_bufs;
}

static __always_inline bool enc_folio(struct gup_range_output *o,
				      struct folio *folio, uint32_t off,
				      unsigned long nr)
{
	struct gup_folio_range *last = NULL;

	if (o->front)
		last = folio_slot(o, o->cur, o->front - 1);
	else if (o->cur)
		last = folio_slot(o, o->cur - 1, GUP_RANGES_PER_BUF - 1);
	if (last && o->nr_entries && last->folio == folio &&
	    last->offset + last->nr_pages == off) {
		last->nr_pages += (uint32_t)nr;
		return true;
	}
	if (!enc_next_slot(o))
		return false;
	*folio_slot(o, o->cur, o->front++) = (struct gup_folio_range){
		.folio = folio, .offset = off, .nr_pages = (uint32_t)nr
	};
	o->nr_entries++;
	return true;
}

static __always_inline bool enc_phys(struct gup_range_output *o,
				     unsigned long pfn, unsigned long nr)
{
	uint64_t paddr = (uint64_t)pfn << PAGE_SHIFT;
	struct phys_vec *last = NULL;

	if (o->front)
		last = phys_slot(o, o->cur, o->front - 1);
	else if (o->cur)
		last = phys_slot(o, o->cur - 1, GUP_RANGES_PER_BUF - 1);
	if (last && o->nr_entries && last->paddr + last->len == paddr) {
		last->len += (uint64_t)nr << PAGE_SHIFT;
		return true;
	}
	if (!enc_next_slot(o))
		return false;
	*phys_slot(o, o->cur, o->front++) =
		(struct phys_vec){ .paddr = paddr,
				   .len = (uint64_t)nr << PAGE_SHIFT };
	o->nr_entries++;
	return true;
}

static inline uint64_t pfn_word(uint64_t size, unsigned long pfn)
{
	return size << GUP_PFN_SIZE_SHIFT | ((uint64_t)pfn & GUP_PFN_MASK);
}

/* The size code a run of @nr pages at @pfn needs. */
static inline uint64_t pfn_code(unsigned long pfn, unsigned long nr)
{
	if (nr == 1)
		return GUP_PFN_4K;
	if (nr == HPAGE_PMD_NR && IS_ALIGNED(pfn, HPAGE_PMD_NR))
		return GUP_PFN_2M;
	return GUP_PFN_EXT;
}

/* End the current output page's list (a zero word, if there is room). */
static void enc_pfn_close(struct gup_range_output *o)
{
	if (o->cur < o->nr_bufs && o->front + o->back < GUP_PFN_WORDS_PER_BUF)
		pfn_words(o, o->cur)[o->front] = 0;
}

/* Try to grow the last entry of the current output page by @nr pages. */
static __always_inline bool enc_pfn_merge(struct gup_range_output *o,
					  unsigned long pfn, unsigned long nr)
{
	uint64_t *w = pfn_words(o, o->cur);
	uint64_t last, code, *size = NULL;
	unsigned long pfn0, len, nlen;

	if (!o->front)
		return false;
	last = w[o->front - 1];
	code = last >> GUP_PFN_SIZE_SHIFT;
	pfn0 = (unsigned long)(last & GUP_PFN_MASK);
	if (code == GUP_PFN_EXT) {
		size = &w[GUP_PFN_WORDS_PER_BUF - o->back];
		len = (unsigned long)*size;
	} else {
		len = code == GUP_PFN_2M ? HPAGE_PMD_NR : 1;
	}
	if (pfn0 + len != pfn)
		return false;
	nlen = len + nr;
	if (pfn_code(pfn0, nlen) == GUP_PFN_2M) {
		/* 256 + 256 aligned pages: back to one word. */
		if (size)
			o->back--;
		w[o->front - 1] = pfn_word(GUP_PFN_2M, pfn0);
		return true;
	}
	if (!size) {
		if (o->front + o->back >= GUP_PFN_WORDS_PER_BUF)
			return false; /* no room for the size word here */
		o->back++;
		size = &w[GUP_PFN_WORDS_PER_BUF - o->back];
		w[o->front - 1] = pfn_word(GUP_PFN_EXT, pfn0);
	}
	*size = nlen;
	return true;
}

static __always_inline bool enc_pfn(struct gup_range_output *o,
				    unsigned long pfn, unsigned long nr)
{
	uint64_t code = pfn_code(pfn, nr);
	unsigned int need = code == GUP_PFN_EXT ? 2 : 1;
	uint64_t *w;

	if (o->cur >= o->nr_bufs)
		return false;
	if (o->nr_entries && enc_pfn_merge(o, pfn, nr))
		return true;
	if (o->front + o->back + need > GUP_PFN_WORDS_PER_BUF) {
		enc_pfn_close(o);
		o->cur++;
		o->front = 0;
		o->back = 0;
		if (o->cur >= o->nr_bufs)
			return false;
	}
	w = pfn_words(o, o->cur);
	w[o->front++] = pfn_word(code, pfn);
	if (code == GUP_PFN_EXT) {
		o->back++;
		w[GUP_PFN_WORDS_PER_BUF - o->back] = nr;
	}
	o->nr_entries++;
	return true;
}

/* Describe @nr pinned pages from @page (consecutive pages of one folio, or
 * physically contiguous for PHYS/PFN). */
static bool enc_add(struct gup_range_output *o, struct page *page,
		    unsigned long nr)
{
	struct folio *folio;

	switch (o->format) {
	case GUP_RANGE_FOLIO:
		folio = page_folio(page);
		return enc_folio(o, folio, (uint32_t)(page - &folio->page), nr);
	case GUP_RANGE_PHYS:
		return enc_phys(o, page_to_pfn(page), nr);
	default:
		return enc_pfn(o, page_to_pfn(page), nr);
	}
}

/* enc_add() for @nr pages at @pfn, the @off-th page of @folio. */
static __always_inline bool enc_add_known(struct gup_range_output *o,
					  struct folio *folio, uint32_t off,
					  unsigned long pfn, unsigned long nr)
{
	switch (o->format) {
	case GUP_RANGE_FOLIO:
		return enc_folio(o, folio, off, nr);
	case GUP_RANGE_PHYS:
		return enc_phys(o, pfn, nr);
	default:
		return enc_pfn(o, pfn, nr);
	}
}

/*
 * Describe pages[0..n) as runs. The caller checked the room; if an entry
 * still does not fit (a bug), its pins are dropped so none leaks.
 */
static void enc_pages(struct gup_range_output *o, struct page **pages,
		      unsigned long n)
{
	for (unsigned long i = 0, j; i < n; i = j) {
		struct folio *folio = page_folio(pages[i]);

		for (j = i + 1; j < n && pages[j] == pages[j - 1] + 1; j++)
			if (o->format == GUP_RANGE_FOLIO &&
			    page_folio(pages[j]) != folio)
				break;
		if (HETMM_WARN_ON_ONCE(!enc_add(o, pages[i], j - i)))
			unpin_user_pages(pages + i, j - i);
		else
			o->nr_pages += j - i;
	}
}

/* ------------------------------------------------------------ the walk */

enum ranges_status {
	RANGES_DONE, /* reached the end */
	RANGES_FULL, /* the output cannot take the next chunk */
	RANGES_SLOW, /* the chunk at *addr needs the slow path */
};

/*
 * How far the chunk at @addr may go: to the PMD boundary (or @end), cut
 * to what surely fits if nothing was produced yet. 0: stop (full). A PMD
 * leaf (@leaf) is one run however many pages it covers.
 */
static __always_inline unsigned long chunk_end(const struct gup_range_output *o,
					       unsigned long addr,
					       unsigned long end, bool leaf)
{
	unsigned long e = pt_addr_end(addr, end, PMD_SIZE);
	unsigned long n = (e - addr) >> PAGE_SHIFT, fit;

	if (enc_worst(o, leaf ? 1 : n) <= enc_free(o))
		return e;
	if (o->nr_pages)
		return 0;
	fit = enc_fits(o, enc_free(o));
	if (leaf && fit)
		return e;
	return fit ? addr + (min(fit, n) << PAGE_SHIFT) : 0;
}

/*
 * A PMD leaf chunk [addr, e): all of it, or false (slow path). A large RAM
 * folio (THP, hugetlb), the common case, is pinned inline and counted in
 * *@acct for the caller to account once; anything else goes through
 * __gup_grab_folio_fast(), which accounts itself.
 */
static inline bool ranges_pmd_leaf(struct gup_range_output *o,
				   struct mm_struct *mm, pmd_t pmd, pmd_t *pmdp,
				   unsigned long addr, unsigned long e,
				   unsigned int flags, unsigned int seq,
				   long *acct)
{
	int nr = (int)((e - addr) >> PAGE_SHIFT);
	unsigned long pfn = pte_pfn(pmd) + pte_index(addr);
	struct page *page;
	struct folio *folio;
	bool ram;

	if (pte_protnone(pmd) ||
	    !pte_access_permitted(pmd, flags & FOLL_WRITE) || pte_special(pmd))
		return false;
	page = pfn_to_page(mm->machine, pfn);
	folio = page_folio(page);
	ram = folio_test_large(folio) && !folio_is_zone_device(folio);
	if (likely(ram)) {
		if (gup_try_pin_large(page, folio, nr, flags))
			return false;
	} else {
		folio = __gup_grab_folio_fast(page, nr, flags);
		if (!folio)
			return false;
	}
	if (unlikely(pte_val(ptep_get(pmdp)) != pte_val(pmd)) ||
	    !gup_fast_folio_allowed(folio, flags) ||
	    (!pte_write(pmd) && gup_must_unshare(NULL, flags, &folio->page)) ||
	    atomic_load_explicit(&mm->write_protect_seq.sequence,
				 memory_order_seq_cst) != seq)
		goto undo;
	if (HETMM_WARN_ON_ONCE(!enc_add_known(o, folio,
					      (uint32_t)(page - &folio->page),
					      pfn, (unsigned long)nr))) {
		if (ram)
			gup_unpin_large(folio, nr);
		else
			__gup_put_folio(folio, nr, flags);
		return true;
	}
	o->nr_pages += (unsigned long)nr;
	if (ram)
		*acct += nr;
	return true;
undo:
	if (ram)
		gup_unpin_large(folio, nr);
	else
		__gup_put_folio(folio, nr, flags);
	return false;
}

/*
 * The lock-free part: chunks from *@addrp while they can be decided
 * without mmap_lock. @batch holds up to HPAGE_PMD_NR pages.
 */
static enum ranges_status
ranges_fast(struct mm_struct *mm, unsigned long *addrp, unsigned long end,
	    unsigned int flags, struct gup_range_output *o, struct page **batch)
{
	struct hetmm_machine *m = mm->machine;
	enum ranges_status st = RANGES_DONE;
	unsigned long addr = *addrp;
	long acct = 0; /* pins of ranges_pmd_leaf() to account */

	rcu_read_lock();
	while (addr < end) {
		pgd_t pgd = ptep_get(pgd_offset(mm, addr));
		unsigned long pud_end = pt_addr_end(addr, end, PUD_SIZE);
		pmd_t *pmdp;
		pud_t pud;

		if (!pmd_table(pgd))
			goto slow;
		pud = ptep_get(pt_table(m, pgd) + pud_index(addr));
		if (!pmd_table(pud))
			goto slow;
		pmdp = pt_table(m, pud) + pmd_index(addr);
		for (; addr < pud_end; pmdp++) {
			unsigned long e, n, got;
			unsigned int seq;
			pmd_t pmd;

			seq = raw_read_seqcount(&mm->write_protect_seq);
			if (seq & 1)
				goto slow; /* fork is write-protecting */
			pmd = ptep_get(pmdp);
			e = chunk_end(o, addr, pud_end, pmd_leaf(pmd));
			if (!e) {
				st = RANGES_FULL;
				goto out;
			}
			n = (e - addr) >> PAGE_SHIFT;
			if (pmd_leaf(pmd)) {
				/*
				 * Head pages of consecutive 2 MiB folios are
				 * 32 KiB apart in the memmap, so they alias
				 * in the caches: start on the next one now.
				 */
				if (e < pud_end) {
					pmd_t next = ptep_get(pmdp + 1);

					if (pmd_leaf(next))
						prefetchw(pfn_to_page(
							m, pte_pfn(next)));
				}
				if (!ranges_pmd_leaf(o, mm, pmd, pmdp, addr, e,
						     flags, seq, &acct))
					goto slow;
				addr = e;
				if (e != pt_addr_end(addr - 1, end, PMD_SIZE))
					goto out_cut;
				continue;
			}
			if (!pmd_table(pmd))
				goto slow;
			got = __gup_fast_pte_range(m, pmd, pmdp, addr, e, flags,
						   batch);
			if (got && atomic_load_explicit(
					   &mm->write_protect_seq.sequence,
					   memory_order_seq_cst) != seq) {
				unpin_user_pages(batch, got);
				goto slow;
			}
			enc_pages(o, batch, got);
			addr += got << PAGE_SHIFT;
			if (got != n)
				goto slow;
			if (e != pt_addr_end(addr - 1, end, PMD_SIZE))
				goto out_cut;
		}
	}
	goto out;
out_cut:
	/* The chunk was cut to fit: the output is full. */
	st = addr < end ? RANGES_FULL : RANGES_DONE;
	goto out;
slow:
	st = RANGES_SLOW;
out:
	rcu_read_unlock();
	if (acct)
		gup_account_machine(m, acct, true);
	*addrp = addr;
	return st;
}

long pin_user_pages_ranges(struct mm_struct *mm, unsigned long start,
			   unsigned long nr_pages, unsigned int gup_flags,
			   struct gup_range_output *out)
{
	struct page *batch[HPAGE_PMD_NR];
	unsigned long addr, end, len;
	long err = 0;

	if (!mm || !out || !out->bufs || !out->nr_bufs ||
	    out->format > GUP_RANGE_PFN)
		return -EINVAL;
	for (unsigned int i = 0; i < out->nr_bufs; i++)
		if (!out->bufs[i] || !IS_ALIGNED((uintptr_t)out->bufs[i], 8))
			return -EINVAL;
	if (!__gup_args_valid(batch, NULL, &gup_flags, FOLL_PIN))
		return -EINVAL;
	if (HETMM_WARN_ON_ONCE(gup_flags &
			       ~(FOLL_WRITE | FOLL_LONGTERM | FOLL_FORCE |
				 FOLL_PIN | FOLL_NOFAULT | FOLL_PCI_P2PDMA |
				 FOLL_HONOR_NUMA_FAULT)))
		return -EINVAL;
	start &= PAGE_MASK;
	if (__builtin_mul_overflow(nr_pages, PAGE_SIZE, &len) ||
	    __builtin_add_overflow(start, len, &end))
		return -EOVERFLOW;
	if (end > TASK_SIZE)
		return -EFAULT;
	enc_reset(out, mm->machine);
	out->next = start;
	if (!nr_pages)
		return 0;
	__gup_set_has_pinned(mm);

	addr = start;
	while (addr < end) {
		enum ranges_status st =
			ranges_fast(mm, &addr, end, gup_flags, out, batch);
		unsigned long e, n;
		int locked = 0;
		long got;

		if (st != RANGES_SLOW)
			break;
		/* The slow path for the rest of this chunk. */
		e = chunk_end(out, addr, end, false);
		if (!e)
			break;
		n = (e - addr) >> PAGE_SHIFT;
		got = __gup_longterm_locked(mm, addr, n, batch, &locked,
					    gup_flags | FOLL_TOUCH |
						    FOLL_UNLOCKABLE);
		if (got <= 0) {
			err = got ? got : -EFAULT;
			break;
		}
		enc_pages(out, batch, (unsigned long)got);
		addr += (unsigned long)got << PAGE_SHIFT;
		if ((unsigned long)got < n)
			break; /* the walk hit something: report the pages */
	}
	if (out->format == GUP_RANGE_PFN)
		enc_pfn_close(out);
	out->next = start + (out->nr_pages << PAGE_SHIFT);
	__gup_flush_accounting();
	if (out->nr_pages)
		return (long)out->nr_pages;
	return err;
}

/* ------------------------------------------------------------ releasing */

void unpin_folio_range(struct folio *folio, unsigned long offset,
		       unsigned long nr_pages, bool make_dirty)
{
	if (!nr_pages)
		return;
	__gup_unpin_range(folio_page(folio, offset), nr_pages, make_dirty);
	__gup_flush_accounting();
}

/*
 * Unpin @n pages from the @off-th page of @folio, one run of an output:
 * a large RAM folio without dirtying, inline, counted in *@released for
 * the caller to account; anything else through __gup_unpin_range().
 */
static inline void unpin_folio_run(struct folio *folio, unsigned long off,
				   unsigned long n, bool make_dirty,
				   long *released)
{
	if (likely(!make_dirty && folio_test_large(folio) &&
		   !folio_is_zone_device(folio) &&
		   off + n <= folio_nr_pages(folio))) {
		if (gup_unpin_large(folio, (int)n))
			*released += (long)n;
		return;
	}
	__gup_unpin_range(folio_page(folio, off), n, make_dirty);
}

/* Unpin the run of @n pages from @page, folio by folio. */
static inline void unpin_page_run(struct page *page, unsigned long n,
				  bool make_dirty, long *released)
{
	while (n) {
		struct folio *folio = page_folio(page);
		unsigned long off = (unsigned long)(page - &folio->page);
		unsigned long k = min(n, folio_nr_pages(folio) - off);

		unpin_folio_run(folio, off, k, make_dirty, released);
		page += k;
		n -= k;
	}
}

static void unpin_phys(struct hetmm_machine *m, uint64_t paddr, uint64_t len,
		       bool make_dirty, long *released)
{
	unsigned long n = (unsigned long)(len >> PAGE_SHIFT);

	if (m && n)
		unpin_page_run(
			pfn_to_page(m, (unsigned long)(paddr >> PAGE_SHIFT)), n,
			make_dirty, released);
}

void unpin_phys_range(struct hetmm_machine *m, uint64_t paddr, uint64_t len,
		      bool make_dirty)
{
	long released = 0;

	unpin_phys(m, paddr, len, make_dirty, &released);
	if (released)
		gup_account_machine(m, released, false);
	__gup_flush_accounting();
}

/* gup_pfn_iter_next(), inline for unpin_user_ranges(). */
static inline bool pfn_iter_next(const struct gup_range_output *out,
				 struct gup_pfn_iter *it, unsigned long *pfn,
				 unsigned long *nr_pages)
{
	while (it->buf < out->nr_bufs && it->seen < out->nr_entries) {
		const uint64_t *w = pfn_words(out, it->buf);
		uint64_t word;

		if (it->front + it->back >= GUP_PFN_WORDS_PER_BUF ||
		    !w[it->front]) {
			it->buf++;
			it->front = 0;
			it->back = 0;
			continue;
		}
		word = w[it->front++];
		*pfn = (unsigned long)(word & GUP_PFN_MASK);
		switch (word >> GUP_PFN_SIZE_SHIFT) {
		case GUP_PFN_4K:
			*nr_pages = 1;
			break;
		case GUP_PFN_2M:
			*nr_pages = HPAGE_PMD_NR;
			break;
		default:
			it->back++;
			*nr_pages = (unsigned long)
				w[GUP_PFN_WORDS_PER_BUF - it->back];
			break;
		}
		it->seen++;
		return true;
	}
	return false;
}

bool gup_pfn_iter_next(const struct gup_range_output *out,
		       struct gup_pfn_iter *it, unsigned long *pfn,
		       unsigned long *nr_pages)
{
	return pfn_iter_next(out, it, pfn, nr_pages);
}

void unpin_user_ranges(const struct gup_range_output *out, bool make_dirty)
{
	struct gup_range_output *o = (struct gup_range_output *)out;
	struct hetmm_machine *m;
	long released = 0;

	if (!out || !out->machine)
		return;
	m = out->machine;
	/*
	 * Each loop looks one run ahead and starts loading its folio's line
	 * (THP head pages alias in the caches, see ranges_fast()).
	 */
	if (out->format == GUP_RANGE_PFN) {
		struct gup_pfn_iter it = { 0 };
		unsigned long pfn, nr, pfn1, nr1;
		bool more = pfn_iter_next(out, &it, &pfn, &nr);

		while (more) {
			more = pfn_iter_next(out, &it, &pfn1, &nr1);
			if (more)
				prefetchw(pfn_to_page(m, pfn1));
			unpin_page_run(pfn_to_page(m, pfn), nr, make_dirty,
				       &released);
			pfn = pfn1;
			nr = nr1;
		}
	} else if (out->format == GUP_RANGE_FOLIO) {
		for (unsigned long j = 0; j < out->nr_entries; j++) {
			/* A folio run never spans folios. */
			struct gup_folio_range *r =
				folio_slot(o, j / GUP_RANGES_PER_BUF,
					   j % GUP_RANGES_PER_BUF);

			if (j + 1 < out->nr_entries)
				prefetchw(
					folio_slot(o,
						   (j + 1) / GUP_RANGES_PER_BUF,
						   (j + 1) % GUP_RANGES_PER_BUF)
						->folio);
			unpin_folio_run(r->folio, r->offset, r->nr_pages,
					make_dirty, &released);
		}
	} else {
		for (unsigned long j = 0; j < out->nr_entries; j++) {
			struct phys_vec *r =
				phys_slot(o, j / GUP_RANGES_PER_BUF,
					  j % GUP_RANGES_PER_BUF);

			if (j + 1 < out->nr_entries)
				prefetchw(pfn_to_page(
					m,
					(unsigned long)(phys_slot(
								o,
								(j +
								 1) / GUP_RANGES_PER_BUF,
								(j +
								 1) % GUP_RANGES_PER_BUF)
								->paddr >>
							PAGE_SHIFT)));
			unpin_phys(m, r->paddr, r->len, make_dirty, &released);
		}
	}
	/* The inline unpins are all of RAM of the output's machine. */
	if (released)
		gup_account_machine(m, released, false);
	__gup_flush_accounting();
}
