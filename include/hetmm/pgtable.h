/* SPDX-License-Identifier: MIT */
/*
 * hetmm/pgtable.h - page-table entries and their encodings.
 *
 * Four levels of 512 eight-byte entries (PGD, PUD, PMD, PTE), 4 KiB pages,
 * 47-bit user addresses, as on x86-64. Every table is one frame from the
 * machine's page allocator (PG_pgtable), so page tables count as memory in
 * use, and is freed through call_rcu() so lock-free walkers (GUP-fast)
 * never touch a recycled table.
 *
 * One 64-bit word per entry, at every level:
 *
 *   present (bit 0 set):
 *     63..52  0
 *     51..12  pfn (of the mapped frame, or of the next-level table)
 *     10      soft-dirty
 *      9      special (no refcounted struct page behind it: zero page, pfnmap)
 *      8      protnone (mapped, but the VMA is PROT_NONE: no access)
 *      7      leaf at PMD level (2 MiB THP / hugetlb)
 *      6      dirty
 *      5      young (accessed)
 *      2      table (an upper-level entry pointing at a table)
 *      1      writable
 *
 *   non-present, non-zero ("softleaf", the kernel's swap-entry format):
 *     51..12  offset: pfn for migration/device/hwpoison entries, a swap slot
 *             for swap entries, marker bits for markers
 *      9      soft-dirty
 *      8      exclusive (swap entries: the page was anon-exclusive)
 *      7      dirty (migration entries: restore the PTE dirty)
 *      6      young (migration entries: restore the PTE young)
 *      5..1   type: 0..23 swap files, then the special kinds from the top:
 *             31 marker, 30 device-exclusive, 29 device-private read,
 *             28 device-private write, 27 migration write, 26 migration
 *             read-exclusive, 25 migration read, 24 hwpoison
 *
 *   none: the all-zero word.
 *
 * A PMD entry can hold a leaf (bit 7) or a migration / device-private
 * softleaf for a whole 2 MiB folio; the PTE-level kinds apply unchanged.
 */
#ifndef HETMM_PGTABLE_H
#define HETMM_PGTABLE_H

#include <assert.h>
#include <stdint.h>

#include "compiler.h"
#include "page.h"

#define PTRS_PER_TABLE 512
#define PGDIR_SHIFT 39
#define PUD_SHIFT 30
#define PMD_SHIFT 21
#define PGDIR_SIZE (1UL << PGDIR_SHIFT)
#define PUD_SIZE (1UL << PUD_SHIFT)
#define PMD_SIZE (1UL << PMD_SHIFT)
#define PGDIR_MASK (~(PGDIR_SIZE - 1))
#define PUD_MASK (~(PUD_SIZE - 1))
#define PMD_MASK (~(PMD_SIZE - 1))
/* User addresses are [0, TASK_SIZE). */
#define TASK_SIZE (1UL << 47)

typedef struct {
	uint64_t val;
} pte_t;
typedef pte_t pmd_t;
typedef pte_t pud_t;
typedef pte_t pgd_t;

/* Present-entry bits. */
#define _PAGE_PRESENT BIT(0)
#define _PAGE_RW BIT(1)
#define _PAGE_TABLE BIT(2)
#define _PAGE_YOUNG BIT(5)
#define _PAGE_DIRTY BIT(6)
#define _PAGE_PSE BIT(7)
#define _PAGE_PROTNONE BIT(8)
#define _PAGE_SPECIAL BIT(9)
#define _PAGE_SOFT_DIRTY BIT(10)
#define _PAGE_PFN_SHIFT 12
#define _PAGE_PFN_BITS 40
#define _PAGE_PFN_MASK (((1ULL << _PAGE_PFN_BITS) - 1) << _PAGE_PFN_SHIFT)

/* Softleaf (non-present) bits. */
#define _SWP_TYPE_SHIFT 1
#define _SWP_TYPE_BITS 5
#define _SWP_TYPE_MASK (((1ULL << _SWP_TYPE_BITS) - 1) << _SWP_TYPE_SHIFT)
#define _SWP_YOUNG BIT(6)
#define _SWP_DIRTY BIT(7)
#define _SWP_EXCLUSIVE BIT(8)
#define _SWP_SOFT_DIRTY BIT(9)
#define _SWP_OFFSET_SHIFT 12
#define _SWP_OFFSET_MASK _PAGE_PFN_MASK

static_assert((_PAGE_PFN_MASK & 0xfffULL) == 0, "pfn above the flag bits");
static_assert(((_PAGE_RW | _PAGE_TABLE | _PAGE_YOUNG | _PAGE_DIRTY |
		_PAGE_PSE | _PAGE_PROTNONE | _PAGE_SPECIAL | _PAGE_SOFT_DIRTY) &
	       _PAGE_PFN_MASK) == 0,
	      "present flags below the pfn");
static_assert((_SWP_TYPE_MASK & (_SWP_YOUNG | _SWP_DIRTY | _SWP_EXCLUSIVE |
				 _SWP_SOFT_DIRTY | _PAGE_PRESENT)) == 0,
	      "softleaf type field overlaps a flag");
static_assert(_SWP_TYPE_MASK < (1ULL << _SWP_OFFSET_SHIFT),
	      "softleaf type below the offset");
static_assert((1ULL << (_PAGE_PFN_BITS + PAGE_SHIFT)) >= (1ULL << 52),
	      "pfn field covers 2^52 bytes of physical memory");

/* Softleaf types (the 5-bit type field). */
#define SWP_PTE_MARKER 31
#define SWP_DEVICE_EXCLUSIVE 30
#define SWP_DEVICE_READ 29
#define SWP_DEVICE_WRITE 28
#define SWP_MIGRATION_WRITE 27
#define SWP_MIGRATION_READ_EXCLUSIVE 26
#define SWP_MIGRATION_READ 25
#define SWP_HWPOISON 24
#define MAX_SWAPFILES 24
static_assert(SWP_PTE_MARKER < (1 << _SWP_TYPE_BITS), "types fit 5 bits");

/* PTE marker bits (payload of a SWP_PTE_MARKER entry). */
#define PTE_MARKER_UFFD_WP BIT(0)
#define PTE_MARKER_POISONED BIT(1)
#define PTE_MARKER_GUARD BIT(2)

/* What a non-none entry is. */
enum softleaf_type {
	SOFTLEAF_NONE,      /* the entry is none */
	SOFTLEAF_PRESENT,   /* not a softleaf: a present entry */
	SOFTLEAF_SWAP,
	SOFTLEAF_MIGRATION_READ,
	SOFTLEAF_MIGRATION_READ_EXCLUSIVE,
	SOFTLEAF_MIGRATION_WRITE,
	SOFTLEAF_DEVICE_PRIVATE_READ,
	SOFTLEAF_DEVICE_PRIVATE_WRITE,
	SOFTLEAF_DEVICE_EXCLUSIVE,
	SOFTLEAF_HWPOISON,
	SOFTLEAF_MARKER,
};

static inline pte_t __pte(uint64_t v)
{
	return (pte_t){ v };
}

static inline uint64_t pte_val(pte_t p)
{
	return p.val;
}

/* Entries are read and written atomically: walkers may run lock-free. */
static inline pte_t ptep_get(const pte_t *ptep)
{
	/*
	 * Acquire: an upper-level entry publishes a table whose frame and
	 * struct page (its lock) were initialised with plain stores before
	 * the release in set_pte(). Free on x86.
	 */
	return __pte(__atomic_load_n(&ptep->val, __ATOMIC_ACQUIRE));
}

static inline void set_pte(pte_t *ptep, pte_t p)
{
	__atomic_store_n(&ptep->val, p.val, __ATOMIC_RELEASE);
}

static inline pte_t ptep_get_and_clear(pte_t *ptep)
{
	return __pte(__atomic_exchange_n(&ptep->val, 0, __ATOMIC_ACQ_REL));
}

static inline bool pte_none(pte_t p)
{
	return p.val == 0;
}

static inline bool pte_present(pte_t p)
{
	return p.val & _PAGE_PRESENT;
}

static inline unsigned long pte_pfn(pte_t p)
{
	return (unsigned long)((p.val & _PAGE_PFN_MASK) >> _PAGE_PFN_SHIFT);
}

static inline bool pte_write(pte_t p)
{
	return p.val & _PAGE_RW;
}

static inline bool pte_dirty(pte_t p)
{
	return p.val & _PAGE_DIRTY;
}

static inline bool pte_young(pte_t p)
{
	return p.val & _PAGE_YOUNG;
}

static inline bool pte_special(pte_t p)
{
	return p.val & _PAGE_SPECIAL;
}

static inline bool pte_soft_dirty(pte_t p)
{
	return p.val & _PAGE_SOFT_DIRTY;
}

static inline bool pte_protnone(pte_t p)
{
	return p.val & _PAGE_PROTNONE;
}

/* May a CPU (or GUP-fast) access through present entry @p? */
static inline bool pte_access_permitted(pte_t p, bool write)
{
	return pte_present(p) && !pte_protnone(p) && (!write || pte_write(p));
}

/* A present PMD that maps 2 MiB directly. */
static inline bool pmd_leaf(pmd_t p)
{
	return (p.val & (_PAGE_PRESENT | _PAGE_PSE)) ==
	       (_PAGE_PRESENT | _PAGE_PSE);
}

/* A present upper-level entry pointing at the next table. */
static inline bool pmd_table(pmd_t p)
{
	return (p.val & (_PAGE_PRESENT | _PAGE_TABLE)) ==
	       (_PAGE_PRESENT | _PAGE_TABLE);
}

static inline pte_t pfn_pte(unsigned long pfn, uint64_t flags)
{
	return __pte(((uint64_t)pfn << _PAGE_PFN_SHIFT) | flags |
		     _PAGE_PRESENT);
}

static inline pmd_t pfn_pmd_leaf(unsigned long pfn, uint64_t flags)
{
	return pfn_pte(pfn, flags | _PAGE_PSE);
}

static inline pte_t pte_set_flags(pte_t p, uint64_t f)
{
	return __pte(p.val | f);
}

static inline pte_t pte_clear_flags(pte_t p, uint64_t f)
{
	return __pte(p.val & ~f);
}

#define pte_mkwrite(p) pte_set_flags(p, _PAGE_RW)
#define pte_wrprotect(p) pte_clear_flags(p, _PAGE_RW)
#define pte_mkdirty(p) pte_set_flags(p, _PAGE_DIRTY | _PAGE_SOFT_DIRTY)
#define pte_mkclean(p) pte_clear_flags(p, _PAGE_DIRTY)
#define pte_mkyoung(p) pte_set_flags(p, _PAGE_YOUNG)
#define pte_mkold(p) pte_clear_flags(p, _PAGE_YOUNG)
#define pte_mkspecial(p) pte_set_flags(p, _PAGE_SPECIAL)

/* ---------------------------------------------------------- softleaves */

/* A non-present, non-none entry, viewed as (type, offset, flags). */
typedef struct {
	uint64_t val;
} softleaf_t;

static inline softleaf_t softleaf_from_pte(pte_t p)
{
	return (softleaf_t){ p.val };
}

static inline pte_t softleaf_to_pte(softleaf_t e)
{
	return __pte(e.val);
}

static inline unsigned int __softleaf_swp_type(softleaf_t e)
{
	return (unsigned int)((e.val & _SWP_TYPE_MASK) >> _SWP_TYPE_SHIFT);
}

static inline unsigned long softleaf_offset(softleaf_t e)
{
	return (unsigned long)((e.val & _SWP_OFFSET_MASK) >> _SWP_OFFSET_SHIFT);
}

/* For migration, device and hwpoison entries the offset is a pfn. */
static inline unsigned long softleaf_pfn(softleaf_t e)
{
	return softleaf_offset(e);
}

static inline softleaf_t __softleaf_make(unsigned int type, unsigned long off)
{
	return (softleaf_t){ ((uint64_t)type << _SWP_TYPE_SHIFT) |
			     (((uint64_t)off << _SWP_OFFSET_SHIFT) &
			      _SWP_OFFSET_MASK) };
}

/* Classify any entry. */
static inline enum softleaf_type pte_kind(pte_t p)
{
	if (pte_none(p))
		return SOFTLEAF_NONE;
	if (pte_present(p))
		return SOFTLEAF_PRESENT;
	switch (__softleaf_swp_type(softleaf_from_pte(p))) {
	case SWP_PTE_MARKER:
		return SOFTLEAF_MARKER;
	case SWP_DEVICE_EXCLUSIVE:
		return SOFTLEAF_DEVICE_EXCLUSIVE;
	case SWP_DEVICE_READ:
		return SOFTLEAF_DEVICE_PRIVATE_READ;
	case SWP_DEVICE_WRITE:
		return SOFTLEAF_DEVICE_PRIVATE_WRITE;
	case SWP_MIGRATION_WRITE:
		return SOFTLEAF_MIGRATION_WRITE;
	case SWP_MIGRATION_READ_EXCLUSIVE:
		return SOFTLEAF_MIGRATION_READ_EXCLUSIVE;
	case SWP_MIGRATION_READ:
		return SOFTLEAF_MIGRATION_READ;
	case SWP_HWPOISON:
		return SOFTLEAF_HWPOISON;
	default:
		return SOFTLEAF_SWAP;
	}
}

static inline softleaf_t make_migration_entry(unsigned long pfn, bool write,
					      bool exclusive)
{
	return __softleaf_make(write ? SWP_MIGRATION_WRITE :
				       exclusive ? SWP_MIGRATION_READ_EXCLUSIVE :
						   SWP_MIGRATION_READ,
			       pfn);
}

static inline softleaf_t make_device_private_entry(unsigned long pfn,
						   bool write)
{
	return __softleaf_make(write ? SWP_DEVICE_WRITE : SWP_DEVICE_READ, pfn);
}

static inline softleaf_t make_device_exclusive_entry(unsigned long pfn)
{
	return __softleaf_make(SWP_DEVICE_EXCLUSIVE, pfn);
}

static inline softleaf_t make_hwpoison_entry(unsigned long pfn)
{
	return __softleaf_make(SWP_HWPOISON, pfn);
}

static inline softleaf_t make_pte_marker(unsigned long bits)
{
	return __softleaf_make(SWP_PTE_MARKER, bits);
}

static inline softleaf_t make_swap_entry(unsigned int type, unsigned long off,
					 bool exclusive)
{
	softleaf_t e = __softleaf_make(type, off);

	if (exclusive)
		e.val |= _SWP_EXCLUSIVE;
	return e;
}

static inline bool is_migration_kind(enum softleaf_type k)
{
	return k == SOFTLEAF_MIGRATION_READ ||
	       k == SOFTLEAF_MIGRATION_READ_EXCLUSIVE ||
	       k == SOFTLEAF_MIGRATION_WRITE;
}

static inline bool is_device_private_kind(enum softleaf_type k)
{
	return k == SOFTLEAF_DEVICE_PRIVATE_READ ||
	       k == SOFTLEAF_DEVICE_PRIVATE_WRITE;
}

/* Does this entry kind hold a pfn (and so name a struct page)? */
static inline bool softleaf_has_pfn(enum softleaf_type k)
{
	return is_migration_kind(k) || is_device_private_kind(k) ||
	       k == SOFTLEAF_DEVICE_EXCLUSIVE || k == SOFTLEAF_HWPOISON;
}

static inline softleaf_t softleaf_mkyoung(softleaf_t e)
{
	return (softleaf_t){ e.val | _SWP_YOUNG };
}

static inline softleaf_t softleaf_mkdirty(softleaf_t e)
{
	return (softleaf_t){ e.val | _SWP_DIRTY };
}

static inline bool softleaf_young(softleaf_t e)
{
	return e.val & _SWP_YOUNG;
}

static inline bool softleaf_dirty(softleaf_t e)
{
	return e.val & _SWP_DIRTY;
}

static inline bool softleaf_exclusive(softleaf_t e)
{
	return e.val & _SWP_EXCLUSIVE;
}

/* ------------------------------------------------------------- indices */

static inline unsigned int pgd_index(unsigned long addr)
{
	return (addr >> PGDIR_SHIFT) & (PTRS_PER_TABLE - 1);
}

static inline unsigned int pud_index(unsigned long addr)
{
	return (addr >> PUD_SHIFT) & (PTRS_PER_TABLE - 1);
}

static inline unsigned int pmd_index(unsigned long addr)
{
	return (addr >> PMD_SHIFT) & (PTRS_PER_TABLE - 1);
}

static inline unsigned int pte_index(unsigned long addr)
{
	return (addr >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1);
}

/* End of the block of @size containing @addr, clamped to @end. */
static inline unsigned long pt_addr_end(unsigned long addr, unsigned long end,
					unsigned long size)
{
	unsigned long b = (addr + size) & ~(size - 1);

	return b - 1 < end - 1 ? b : end;
}

#endif /* HETMM_PGTABLE_H */
