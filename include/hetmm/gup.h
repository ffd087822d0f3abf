/* SPDX-License-Identifier: MIT */
/*
 * hetmm/gup.h - get_user_pages / pin_user_pages: stable references to a
 * process's pages for a device (DMA), the FOLL_* rules, pin accounting,
 * long-term pins, and batched physical-range outputs.
 *
 * Map:
 *   FOLL_*                         request flags (values are the kernel's)
 *   get_user_pages*()              FOLL_GET references, released by put_page()
 *   pin_user_pages*()              FOLL_PIN pins, released by unpin_user_page*()
 *   unpin_user_page*(), unpin_folio*()  releasing pins (optionally dirtying)
 *   folio_add_pin(s)()             extra pins on an already pinned folio
 *   pin_user_pages_ranges()        a pin call whose output is runs, not a
 *                                  page array (struct gup_range_output)
 *   unpin_user_ranges() ...        releasing such output
 *
 * The calls are the kernel's with one adaptation: the kernel works on
 * current->mm, we take the address space as the first argument. Callers of
 * the "locked" variants (get_user_pages, pin_user_pages, *_remote) hold
 * mm->mmap_lock for read; the *_unlocked and *_fast variants take it
 * themselves when they need it. The caller keeps @mm alive (holds an
 * mm_users reference), as current->mm is alive for the kernel's callers.
 *
 * Accounting (spec 2.1): FOLL_GET adds one reference per page. FOLL_PIN
 * adds GUP_PIN_COUNTING_BIAS (1024) references per page to a small folio,
 * and one reference plus one _pincount per page to a large folio (so pins
 * are per page: pinning all 512 pages of a THP adds 512 to both counts,
 * and they may be released page by page). Pins on the shared zero page
 * are no-ops, reported as success. The first FOLL_PIN on an mm sets
 * MMF_HAS_PINNED in mm->flags for good, and every pinned folio gets
 * PG_has_pinned_hint (a debug aid the "gup" checker uses).
 *
 * Return values of the page-array calls (the kernel's, spec 1.3-1.5):
 *   n > 0    pages[0..n) hold a reference (GET) or a pin (PIN) each; the
 *            rest of pages[] is untouched. n may be less than asked: the
 *            error that stopped the walk is not reported.
 *   0        nr_pages was 0; or FOLL_NOWAIT and nothing could be done
 *            without waiting; or (pin_user_pages, pin_user_pages_remote,
 *            pin_user_pages_unlocked only) the arguments were invalid --
 *            the kernel's inconsistency, kept on purpose: a caller looping
 *            on "0 pinned" can spin.
 *   -EINVAL  invalid arguments (get_user_pages*, *_fast), or a flag
 *            outside the fast-path mask (the *_fast calls)
 *   -EFAULT  no VMA; VM_IO/VM_PFNMAP; FOLL_ANON on a file VMA; no
 *            permission; R/W long-term pin of a shared mapping of a file
 *            that needs writeback; FOLL_NOFAULT and a fault was needed; the
 *            fault failed (SIGBUS/SIGSEGV); the *_fast end beyond TASK_SIZE
 *   -ENOMEM  a fault could not allocate; a page's refcount was <= 0 or
 *            would overflow; long-term migration failed
 *   -EBUSY   long-term migration of a device-coherent page failed
 *   -EEXIST  a special PTE without a struct page (VM_MIXEDMAP pfn) with a
 *            pages array
 *   -EREMOTEIO  a PCI P2PDMA page without FOLL_PCI_P2PDMA
 *   -EOPNOTSUPP FOLL_SPLIT_PMD on a hugetlb VMA
 *   -EHWPOISON  a poisoned entry with FOLL_HWPOISON
 *   -EOVERFLOW  the *_fast range wraps around
 * A negative result means no reference is held. For the *_fast calls, an
 * error of the slow part after n > 0 pages were taken fast returns n.
 *
 * Illegal flag combinations (is_valid_gup_args, every one a WARN once):
 *   an internal flag (FOLL_TOUCH, FOLL_TRIED, FOLL_REMOTE, FOLL_PIN,
 *   FOLL_FAST_ONLY, FOLL_UNLOCKABLE, FOLL_MADV_POPULATE) passed in;
 *   *locked != 1; FOLL_GET together with FOLL_PIN (FOLL_GET passed to a
 *   pin_* call); FOLL_LONGTERM without FOLL_PIN (any get_* call);
 *   FOLL_GET/FOLL_PIN without a pages array; FOLL_LONGTERM with
 *   FOLL_PCI_P2PDMA. The *_fast calls then accept only WRITE, LONGTERM,
 *   FORCE, PIN, GET, FAST_ONLY, NOFAULT, PCI_P2PDMA and HONOR_NUMA_FAULT
 *   (e.g. FOLL_NOWAIT, FOLL_ANON, FOLL_DUMP, FOLL_SPLIT_PMD: -EINVAL).
 *
 * Model notes (where we differ from the kernel, and why):
 *   - Faults here never drop mmap_lock (there is no I/O to wait for), so
 *     *locked stays 1 and FOLL_UNLOCKABLE changes nothing; FOLL_NOWAIT
 *     stops (returning what was done, possibly 0) where a fault would have
 *     to wait for a migration to finish. There are no signals: the slow
 *     entry points accept FOLL_INTERRUPTIBLE and never return -EINTR (nor
 *     -EAGAIN for an interrupted mmap_lock).
 *   - nr_pages == 0 to a *_fast call returns 0 (the kernel documents 0).
 *   - A pin that would overflow a folio's refcount fails with -ENOMEM
 *     (the kernel only refuses once the count has gone negative).
 *   - In debug builds an unpin of a folio that cannot hold that many pins
 *     is recorded with hetmm_bad_page() and ignored (the kernel corrupts
 *     the counts). unpin_user_pages_dirty_lock() WARNs on and skips a NULL
 *     entry (the kernel would crash); the zero page is never dirtied.
 *   - GUP-fast does not look at the address_space of a file folio (inodes
 *     are not RCU-freed here): PIN|LONGTERM|WRITE on any file folio other
 *     than hugetlb falls back to the slow path, which decides by the VMA.
 *   - FOLL_LONGTERM migrates ZONE_MOVABLE folios (anonymous: small, THP,
 *     hugetlb; page cache: small and hugetlbfs, via
 *     migrate_pagecache_folio()) and DEVICE_COHERENT folios. A page-cache
 *     folio still held by an unexpected reference after 10 tries fails the
 *     pin with -ENOMEM, as a failed migrate_pages() would, with nothing
 *     left pinned.
 *
 * Locking: see the top of src/gup/gup.c.
 */
#ifndef HETMM_GUP_H
#define HETMM_GUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mm.h"
#include "page.h"

struct file;

/* ------------------------------------------------------------- FOLL_* */

/* clang-format off */
#define FOLL_WRITE 0x01            /* check the PTE is writable */
#define FOLL_GET 0x02              /* take a reference on each page */
#define FOLL_DUMP 0x04             /* core dump: holes and zero page fail */
#define FOLL_FORCE 0x08            /* ignore VM_READ/VM_WRITE (ptrace) */
#define FOLL_NOWAIT 0x10           /* do not wait for a fault to finish */
#define FOLL_NOFAULT 0x20          /* never fault: -EFAULT instead */
#define FOLL_HWPOISON 0x40         /* -EHWPOISON for poisoned entries */
#define FOLL_ANON 0x80             /* only anonymous VMAs */
#define FOLL_LONGTERM 0x100        /* indefinite pin (needs FOLL_PIN) */
#define FOLL_SPLIT_PMD 0x200       /* split a PMD-mapped THP first */
#define FOLL_PCI_P2PDMA 0x400      /* PCI P2PDMA pages may be returned */
#define FOLL_INTERRUPTIBLE 0x800   /* signals interrupt (none modelled) */
#define FOLL_HONOR_NUMA_FAULT 0x1000 /* fault on PROT_NONE hint entries */

/* Internal: set by the entry points, rejected from callers. */
#define FOLL_TOUCH 0x10000         /* mark accessed (and dirty if writing) */
#define FOLL_TRIED 0x20000         /* a retry of a fault */
#define FOLL_REMOTE 0x40000        /* the mm is not the caller's */
#define FOLL_PIN 0x80000           /* pin accounting */
#define FOLL_FAST_ONLY 0x100000    /* GUP-fast only, never the slow path */
#define FOLL_UNLOCKABLE 0x200000   /* mmap_lock may be dropped */
#define FOLL_MADV_POPULATE 0x400000 /* MADV_POPULATE_* semantics */

/* clang-format on */

#define INTERNAL_GUP_FLAGS                                                   \
	(FOLL_TOUCH | FOLL_TRIED | FOLL_REMOTE | FOLL_PIN | FOLL_FAST_ONLY | \
	 FOLL_UNLOCKABLE | FOLL_MADV_POPULATE)

/* ---------------------------------------------------------------- gets */

/*
 * get_user_pages - take a reference on each of @nr_pages pages from
 * @start (rounded down to a page), faulting them in as @gup_flags need.
 * @pages may be NULL to only fault the range in (no FOLL_GET then).
 * Adds FOLL_TOUCH. Return: see the file comment. Release with put_page().
 * Context: mmap_lock held for read; it is never dropped.
 */
long get_user_pages(struct mm_struct *mm, unsigned long start,
		    unsigned long nr_pages, unsigned int gup_flags,
		    struct page **pages);
/*
 * get_user_pages_remote - as get_user_pages on another process's @mm
 * (FOLL_REMOTE: faults carry FAULT_FLAG_REMOTE). @locked, if not NULL,
 * must point at 1 (the lock is held); it would be cleared if the lock had
 * been dropped, which never happens here.
 */
long get_user_pages_remote(struct mm_struct *mm, unsigned long start,
			   unsigned long nr_pages, unsigned int gup_flags,
			   struct page **pages, int *locked);
/* get_user_pages_unlocked - takes and drops mmap_lock itself. */
long get_user_pages_unlocked(struct mm_struct *mm, unsigned long start,
			     unsigned long nr_pages, struct page **pages,
			     unsigned int gup_flags);
/*
 * get_user_pages_fast - walk the page tables without mmap_lock (under RCU)
 * and reference what is mapped as needed; the rest goes through the slow
 * path (which takes mmap_lock). Return: the count, or -errno if nothing
 * was taken. Context: no mmap_lock held by the caller.
 */
int get_user_pages_fast(struct mm_struct *mm, unsigned long start, int nr_pages,
			unsigned int gup_flags, struct page **pages);
/* get_user_pages_fast_only - the lock-free walk only: a count, maybe 0. */
int get_user_pages_fast_only(struct mm_struct *mm, unsigned long start,
			     int nr_pages, unsigned int gup_flags,
			     struct page **pages);

/* ---------------------------------------------------------------- pins */

/*
 * pin_user_pages - FOLL_PIN every page (no FOLL_TOUCH, as the kernel).
 * A read-only pin of a shared anonymous page unshares it first, so the pin
 * stays coherent with the process's later writes; FOLL_LONGTERM moves the
 * pages out of memory that must stay movable first. Invalid arguments
 * return 0 (not -EINVAL: the kernel's behaviour). Release with
 * unpin_user_page*(). Context: mmap_lock held for read.
 */
long pin_user_pages(struct mm_struct *mm, unsigned long start,
		    unsigned long nr_pages, unsigned int gup_flags,
		    struct page **pages);
long pin_user_pages_remote(struct mm_struct *mm, unsigned long start,
			   unsigned long nr_pages, unsigned int gup_flags,
			   struct page **pages, int *locked);
/* Takes and drops mmap_lock itself; adds FOLL_TOUCH. */
long pin_user_pages_unlocked(struct mm_struct *mm, unsigned long start,
			     unsigned long nr_pages, struct page **pages,
			     unsigned int gup_flags);
/*
 * pin_user_pages_fast - GUP-fast with FOLL_PIN. Nothing is pinned
 * lock-free while fork write-protects the mm (write_protect_seq); read-only
 * pins of shared anonymous pages, long-term pins of unpinnable memory and
 * non-present entries go to the slow path. Invalid arguments: -EINVAL.
 * Context: no mmap_lock held by the caller.
 */
int pin_user_pages_fast(struct mm_struct *mm, unsigned long start, int nr_pages,
			unsigned int gup_flags, struct page **pages);

/*
 * get_dump_page - one page for a core dump (FOLL_FORCE|FOLL_DUMP|FOLL_GET):
 * the page with a reference, or NULL for a hole, the zero page or an error.
 * @locked: 0 (the call takes mmap_lock) or 1 (the caller holds it).
 */
struct page *get_dump_page(struct mm_struct *mm, unsigned long addr,
			   int *locked);

/*
 * memfd_pin_folios - pin the folios of the tmpfs or hugetlbfs file
 * @memfd that hold bytes [@start, @end] (inclusive), each folio once
 * whatever its size, looking them up in the page cache (creating missing
 * ones, zero-filled), as long-term pins: the FOLL_LONGTERM migration rule
 * applies. *@offset is the offset of @start in the first folio.
 * Return: the folios pinned (up to @max_folios), or -EINVAL (bad range,
 * @max_folios 0, @end at or beyond the file size, not a tmpfs/hugetlbfs
 * file), -ENOMEM; on error nothing stays pinned. Release with
 * unpin_folios(). Context: may sleep; takes the inode lock shared.
 */
long memfd_pin_folios(struct file *memfd, loff_t start, loff_t end,
		      struct folio **folios, unsigned int max_folios,
		      pgoff_t *offset);

/* ----------------------------------------------------------- releasing */

/* Drop one pin (a no-op on the zero page). */
void unpin_user_page(struct page *page);
/*
 * Drop the pins of @npages entries, one release per run of entries in the
 * same folio; NULL entries are skipped. A negative errno passed as
 * @npages (a caller handing on an error return) WARNs and does nothing.
 */
void unpin_user_pages(struct page **pages, unsigned long npages);
/*
 * As unpin_user_pages, but with @make_dirty each folio that is not dirty
 * is first marked dirty (folio_mark_dirty, under the folio lock), once per
 * run of entries of that folio. With @make_dirty, NULL entries are not
 * allowed (as the kernel).
 */
void unpin_user_pages_dirty_lock(struct page **pages, unsigned long npages,
				 bool make_dirty);
/* The same for @npages physically contiguous pages from @page. */
void unpin_user_page_range_dirty_lock(struct page *page, unsigned long npages,
				      bool make_dirty);
/* One pin of @folio; @npages pins of @folio; folio arrays (runs of the
 * same pointer collapse, NULL entries are skipped). */
void unpin_folio(struct folio *folio);
void unpin_user_folio(struct folio *folio, unsigned long npages);
void unpin_folios(struct folio **folios, unsigned long nfolios);
/*
 * folio_add_pin / folio_add_pins - more pins on a folio that is already
 * pinned (WARN if it is not); no-ops on the zero page. folio_add_pins
 * returns 0 or -ENOMEM/-EREMOTEIO as try_grab_folio.
 */
void folio_add_pin(struct folio *folio);
int folio_add_pins(struct folio *folio, unsigned int pins);

/* ------------------------------------------------------------- queries */

/*
 * May @folio be pinned long-term where it is? False for ZONE_MOVABLE,
 * DEVICE_COHERENT and FS_DAX memory (the zero page is pinnable).
 */
bool folio_is_longterm_pinnable(struct folio *folio);
/*
 * gup_must_unshare - must a request with @flags for @page, mapped
 * read-only, first unshare it (FAULT_FLAG_UNSHARE)? Only for read-only
 * pins: of an anonymous page that is not PageAnonExclusive, or (with
 * FOLL_LONGTERM) of a non-anonymous page in a COW mapping. @vma NULL (the
 * fast path, which does not know the mapping) answers yes for the latter.
 */
bool gup_must_unshare(struct vm_area_struct *vma, unsigned int flags,
		      struct page *page);
/*
 * Pins acquired and released on @m's RAM so far (the kernel's
 * nr_foll_pin_acquired/nr_foll_pin_released; zero page excluded, device
 * memory not counted). Their difference is the pins outstanding.
 */
void gup_pin_counts(struct hetmm_machine *m, unsigned long *acquired,
		    unsigned long *released);

/* -------------------------------------------------------- range output */

/*
 * pin_user_pages_ranges() pins like pin_user_pages_fast() (one pin per
 * page, same accounting and rules) but describes what it pinned as runs,
 * written into output pages the caller provides (seed 003). Each call
 * starts filling at out->bufs[0]; out->next tells where the next call
 * should start, and the walk stops at a PMD (2 MiB) boundary when the
 * output cannot hold the worst case of the next 2 MiB, so the next call
 * never walks a page table twice. (If even the first 2 MiB cannot be
 * guaranteed to fit, the call fills what surely fits and stops mid-way.)
 *
 * Formats (every output page is GUP_RANGE_BUF_SIZE bytes, 8-byte aligned):
 *
 * GUP_RANGE_FOLIO: struct gup_folio_range entries, 256 per output page,
 *   entry j in bufs[j / 256][j % 256]. One entry per run of consecutive
 *   pages of one folio; runs never span folios. Example: a PMD-mapped THP
 *   pinned from its 3rd page for 600 pages, then 2 small folios:
 *     { thp, 2, 510 } { thp2, 0, 90 } { f1, 0, 1 } { f2, 0, 1 }
 *
 * GUP_RANGE_PHYS: struct phys_vec entries, 256 per output page, merging
 *   physically contiguous pages across folios. Example: two small folios
 *   at pfns 0x100 and 0x101, then a THP at pfn 0x200:
 *     { 0x100000, 0x2000 } { 0x200000, 0x200000 }
 *
 * GUP_RANGE_PFN: packed 8-byte words. Each output page holds its own list:
 *   PFN words from the front, and for runs whose size the PFN word cannot
 *   say, their length (in pages, a 64-bit word) from the back: the first
 *   such run of the page uses its last word, the second the one before...
 *   A PFN word is  size << 62 | pfn  (pfn in bits 51..0, bits 61..52 zero)
 *   with size GUP_PFN_4K (1: one page), GUP_PFN_2M (2: 512 pages, pfn
 *   2 MiB aligned), GUP_PFN_EXT (3: length in the next size word from the
 *   back). A zero word ends the page's list early; otherwise the list ends
 *   where the front meets the used size words. Runs are maximal physical
 *   runs (merged across folios), so the common 4 KiB and aligned 2 MiB
 *   cases cost exactly 8 bytes each. Example, one output page holding a
 *   page at pfn 0x105, an aligned THP at pfn 0x400, 3 pages from pfn 0x900
 *   and 1025 pages from pfn 0xc00:
 *     word 0: 1<<62 | 0x105     word 511: 3
 *     word 1: 2<<62 | 0x400     word 510: 1025
 *     word 2: 3<<62 | 0x900
 *     word 3: 3<<62 | 0xc00
 *     word 4: 0 (end)
 *   Decode with gup_pfn_iter_next().
 *
 * Unpinning takes the same output (unpin_user_ranges()), or any part of it
 * (unpin_folio_range(), unpin_phys_range()): pins are per page, so a run
 * may be split and released piecewise.
 */
#define GUP_RANGE_BUF_SIZE 4096UL

enum gup_range_format {
	GUP_RANGE_FOLIO,
	GUP_RANGE_PHYS,
	GUP_RANGE_PFN,
};

/** struct gup_folio_range - @nr_pages pages of @folio from page @offset. */
struct gup_folio_range {
	struct folio *folio;
	uint32_t offset;
	uint32_t nr_pages;
};

/** struct phys_vec - @len bytes of physical memory from @paddr. */
struct phys_vec {
	uint64_t paddr;
	uint64_t len;
};

#define GUP_RANGES_PER_BUF (GUP_RANGE_BUF_SIZE / sizeof(struct phys_vec))
#define GUP_PFN_WORDS_PER_BUF (GUP_RANGE_BUF_SIZE / sizeof(uint64_t))
#define GUP_PFN_SIZE_SHIFT 62
#define GUP_PFN_MASK ((1ULL << 52) - 1)
#define GUP_PFN_4K 1ULL
#define GUP_PFN_2M 2ULL
#define GUP_PFN_EXT 3ULL

/**
 * struct gup_range_output - where pin_user_pages_ranges() writes.
 * @bufs: set by the caller: @nr_bufs output pages of GUP_RANGE_BUF_SIZE.
 * @nr_bufs: set by the caller (at least 1).
 * @format: set by the caller: enum gup_range_format.
 * @machine: out: the machine whose pages the output names.
 * @nr_entries: out: entries written (runs, all output pages together).
 * @nr_pages: out: pages pinned by the call (its return value if > 0).
 * @next: out: the address the next call should start at.
 * @cur, @front, @back: private encoder state (output page in use, its
 *                      words used from the front and from the back).
 */
struct gup_range_output {
	void **bufs;
	unsigned int nr_bufs;
	unsigned int format;
	struct hetmm_machine *machine;
	unsigned long nr_entries;
	unsigned long nr_pages;
	unsigned long next;
	unsigned int cur, front, back;
};

/*
 * pin_user_pages_ranges - pin up to @nr_pages pages from @start (rounded
 * down to a page) and describe them in @out (see above).
 * @gup_flags: as pin_user_pages_fast (FOLL_WRITE, FOLL_LONGTERM,
 *             FOLL_FORCE, FOLL_NOFAULT, FOLL_PCI_P2PDMA,
 *             FOLL_HONOR_NUMA_FAULT).
 * Return: the pages pinned (> 0, possibly fewer than asked: the output was
 * full, or the walk hit an error after the first page), 0 if @nr_pages is
 * 0, or -errno with nothing pinned: -EINVAL (bad @out, unknown format, a
 * flag outside the mask, FOLL_LONGTERM with FOLL_PCI_P2PDMA), -EOVERFLOW,
 * and every error of pin_user_pages_fast.
 * Context: no mmap_lock held by the caller.
 */
long pin_user_pages_ranges(struct mm_struct *mm, unsigned long start,
			   unsigned long nr_pages, unsigned int gup_flags,
			   struct gup_range_output *out);
/*
 * unpin_user_ranges - drop every pin @out describes (after a successful
 * pin_user_pages_ranges), marking each folio dirty first if @make_dirty.
 */
void unpin_user_ranges(const struct gup_range_output *out, bool make_dirty);
/* Drop the pins of pages [@offset, @offset + @nr_pages) of @folio. */
void unpin_folio_range(struct folio *folio, unsigned long offset,
		       unsigned long nr_pages, bool make_dirty);
/* Drop the pins of the pages of [@paddr, @paddr + @len) of @m. */
void unpin_phys_range(struct hetmm_machine *m, uint64_t paddr, uint64_t len,
		      bool make_dirty);

/** struct gup_pfn_iter - a cursor over GUP_RANGE_PFN output. */
struct gup_pfn_iter {
	unsigned int buf, front, back;
	unsigned long seen;
};

/*
 * gup_pfn_iter_next - the next run of GUP_RANGE_PFN output @out: true and
 * *@pfn, *@nr_pages, or false at the end. Start with @it zeroed.
 */
bool gup_pfn_iter_next(const struct gup_range_output *out,
		       struct gup_pfn_iter *it, unsigned long *pfn,
		       unsigned long *nr_pages);

/* ---------------------------------------------- internal to src/gup/ */

/*
 * Shared by gup.c and gup_ranges.c only; not for callers.
 * __gup_args_valid: is_valid_gup_args (adds @to_set on success).
 * __gup_grab_folio_fast: the lock-free grab of @refs pages of @page's
 *   folio (GET or PIN; LONGTERM-pinnable and P2PDMA checks); NULL on
 *   failure. __gup_fast_folio_allowed: the GUP-fast file-folio rule.
 * __gup_put_folio: drop @refs references or pins.
 * __gup_longterm_locked: the slow path with the FOLL_LONGTERM loop.
 * __gup_fast_pte_range: GUP-fast over the PTEs of one table, [@addr, @end)
 *   inside it, @pmd the PMD value read and @pmdp its slot; the pages
 *   taken (stops at the first it cannot decide). Context: rcu_read_lock().
 * __gup_unpin_range: unpin_user_page_range_dirty_lock without publishing
 *   the counts (the caller calls __gup_flush_accounting()).
 * __gup_set_has_pinned: set MMF_HAS_PINNED on @mm (once).
 * __gup_flush_accounting: publish this thread's pending pin counts; every
 *   entry point calls it before returning.
 */
bool __gup_args_valid(struct page **pages, int *locked, unsigned int *gup_flags,
		      unsigned int to_set);
struct folio *__gup_grab_folio_fast(struct page *page, int refs,
				    unsigned int flags);
bool __gup_fast_folio_allowed(struct folio *folio, unsigned int flags);
void __gup_put_folio(struct folio *folio, int refs, unsigned int flags);
long __gup_longterm_locked(struct mm_struct *mm, unsigned long start,
			   unsigned long nr_pages, struct page **pages,
			   int *locked, unsigned int gup_flags);
unsigned long __gup_fast_pte_range(struct hetmm_machine *m, pmd_t pmd,
				   pmd_t *pmdp, unsigned long addr,
				   unsigned long end, unsigned int flags,
				   struct page **pages);
void __gup_unpin_range(struct page *page, unsigned long npages,
		       bool make_dirty);
void __gup_set_has_pinned(struct mm_struct *mm);
void __gup_flush_accounting(void);

#endif /* HETMM_GUP_H */
