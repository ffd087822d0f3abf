// SPDX-License-Identifier: MIT
/*
 * check.c - the mm layer's invariant checks (hetmm_check()).
 *
 * "mm" verifies, over every live address space:
 *   - every PTE lies inside a VMA, grants no more than the VMA allows
 *     (no write without VM_WRITE, PROTNONE iff the VMA allows no access:
 *     PTEs and PMD leaves alike),
 *     and a writable PTE of a private mapping maps an AnonExclusive page;
 *   - a present PTE maps a page with no rmap (neither anonymous nor in a
 *     file: a driver's page from vm_insert_page()) only in a VM_MIXEDMAP
 *     VMA, and never a page-table or driver-internal (PG_slab_like) frame;
 *   - a special PMD leaf maps the huge zero folio, read-only, in private
 *     anonymous memory, with a deposited table, and is not counted;
 *   - each page's mapcount equals the number of entries mapping it
 *     (present PTEs, device-private and device-exclusive entries; not
 *     migration entries, whose pages are unmapped while they migrate);
 *   - refcount >= mapcount (+1 for a folio in the page cache), and every
 *     mapped frame is allocated;
 *   - page-table frames: the live address spaces own exactly the frames
 *     marked PG_pgtable (so a dead process's tables were all freed);
 *   - every valid TLB entry belongs to a live address space and is
 *     permitted by its current PTE (same pfn; write only if the PTE is
 *     writable and dirty).
 * "notifier" runs mmu_notifier_check() on every live address space.
 *
 * Context: the machine must be quiescent; the checks take mm_list_lock,
 * each mmap_lock for read, and each CPU's TLB lock.
 */
#include <stdio.h>
#include <string.h>

#include <hetmm/check.h>
#include <hetmm/err.h>

#include <hetmm/memremap.h>

#include "internal.h"

struct pfn_vec {
	unsigned long *v;
	size_t n, cap;
	bool oom;
};

static void pfn_vec_add(struct pfn_vec *pv, unsigned long pfn)
{
	if (pv->n == pv->cap) {
		size_t cap = pv->cap ? pv->cap * 2 : 1024;
		unsigned long *v = realloc(pv->v, cap * sizeof(*v));

		if (!v) {
			pv->oom = true;
			return;
		}
		pv->v = v;
		pv->cap = cap;
	}
	pv->v[pv->n++] = pfn;
}

static int cmp_ulong(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a;
	unsigned long y = *(const unsigned long *)b;

	return x < y ? -1 : x > y;
}

struct walk_check {
	struct hetmm_check_ctx *ctx;
	struct pfn_vec *pfns;
	struct pfn_vec *heads; /* one per PMD leaf */
	unsigned int asid;
};

/*
 * A special PMD leaf: only the huge zero folio, read-only (PROTNONE iff
 * the VMA allows no access), in a private anonymous VMA, with a deposited
 * table. It is not counted: no mapping of it is recorded.
 */
static void check_huge_zero_pmd(struct walk_check *wc, struct mm_struct *mm,
				struct vm_area_struct *vma, pmd_t *pmd,
				unsigned long addr, pmd_t e)
{
	struct folio *folio = page_folio(pfn_to_page(mm->machine, pte_pfn(e)));

	if (!pte_special(e) || !is_huge_zero_pmd(mm->machine, e) ||
	    !is_huge_zero_folio(folio) || folio_order(folio) != PMD_ORDER) {
		hetmm_check_fail(
			wc->ctx,
			"mm %u: PMD leaf at %#lx: special=%d but pfn %#lx %s the huge zero folio",
			wc->asid, addr, pte_special(e), pte_pfn(e),
			is_huge_zero_pmd(mm->machine, e) ? "is" : "is not");
		return;
	}
	if (pte_write(e))
		hetmm_check_fail(wc->ctx,
				 "mm %u: writable huge zero PMD at %#lx",
				 wc->asid, addr);
	if (pte_protnone(e) !=
	    !(vma->vm_flags & (VM_READ | VM_WRITE | VM_EXEC)))
		hetmm_check_fail(
			wc->ctx,
			"mm %u: huge zero PMD at %#lx protnone=%d, VMA allows %s",
			wc->asid, addr, pte_protnone(e),
			pte_protnone(e) ? "access" : "nothing");
	if (vma->vm_file || (vma->vm_flags & (VM_SHARED | VM_SPECIAL)))
		hetmm_check_fail(
			wc->ctx,
			"mm %u: huge zero PMD at %#lx outside private anonymous memory",
			wc->asid, addr);
	if (list_empty(&pt_entry_page(mm, pmd)->lru))
		hetmm_check_fail(
			wc->ctx,
			"mm %u: huge zero PMD at %#lx without a deposited table",
			wc->asid, addr);
}

static int check_pmd(pmd_t *pmd, unsigned long addr, unsigned long next,
		     struct mm_walk *walk)
{
	struct walk_check *wc = walk->private;
	struct hetmm_machine *m = walk->mm->machine;
	pmd_t e = ptep_get(pmd);
	struct vm_area_struct *vma;
	struct folio *folio;

	(void)next;
	if (!pte_none(e) && !pte_present(e)) {
		enum softleaf_type k = pte_kind(e);
		unsigned long pfn = softleaf_pfn(softleaf_from_pte(e));

		walk->action = ACTION_CONTINUE;
		if (!is_device_private_kind(k) && !is_migration_kind(k)) {
			hetmm_check_fail(wc->ctx, "mm %u: PMD at %#lx holds softleaf kind %d",
					 wc->asid, addr, k);
			return 0;
		}
		if (list_empty(&pt_entry_page(walk->mm, pmd)->lru))
			hetmm_check_fail(wc->ctx, "mm %u: non-present PMD at %#lx without a deposited table",
					 wc->asid, addr);
		if (is_migration_kind(k))
			return 0;
		if (!IS_ALIGNED(pfn, HPAGE_PMD_NR) ||
		    !folio_is_device_private(page_folio(pfn_to_page(m, pfn))) ||
		    folio_order(page_folio(pfn_to_page(m, pfn))) != PMD_ORDER) {
			hetmm_check_fail(wc->ctx, "mm %u: device-private PMD at %#lx: pfn %#lx is not a 2 MiB device-private folio",
					 wc->asid, addr, pfn);
			return 0;
		}
		for (unsigned long i = 0; i < HPAGE_PMD_NR; i++)
			pfn_vec_add(wc->pfns, pfn + i);
		pfn_vec_add(wc->heads, pfn);
		return 0;
	}
	if (!pmd_leaf(e))
		return 0;
	walk->action = ACTION_CONTINUE;
	addr &= PMD_MASK;
	vma = vma_lookup(walk->mm, addr);
	if (!vma || addr + PMD_SIZE > vma->vm_end) {
		hetmm_check_fail(wc->ctx, "mm %u: PMD leaf at %#lx not inside one VMA",
				 wc->asid, addr);
		return 0;
	}
	if (!IS_ALIGNED(pte_pfn(e), HPAGE_PMD_NR) ||
	    pte_pfn(e) + HPAGE_PMD_NR > m->max_pfn) {
		hetmm_check_fail(wc->ctx, "mm %u: PMD leaf at %#lx maps bad pfn %#lx",
				 wc->asid, addr, pte_pfn(e));
		return 0;
	}
	folio = page_folio(pfn_to_page(m, pte_pfn(e)));
	if (pte_special(e) || is_huge_zero_folio(folio)) {
		check_huge_zero_pmd(wc, walk->mm, vma, pmd, addr, e);
		return 0;
	}
	if (folio_order(folio) != PMD_ORDER || &folio->page !=
						     pfn_to_page(m, pte_pfn(e)))
		hetmm_check_fail(wc->ctx, "mm %u: PMD leaf at %#lx does not map a whole 2 MiB folio",
				 wc->asid, addr);
	if (pte_write(e) && !(vma->vm_flags & VM_WRITE))
		hetmm_check_fail(wc->ctx, "mm %u: writable PMD at %#lx in a VMA without VM_WRITE",
				 wc->asid, addr);
	if (pte_protnone(e) !=
	    !(vma->vm_flags & (VM_READ | VM_WRITE | VM_EXEC)))
		hetmm_check_fail(wc->ctx, "mm %u: PMD leaf at %#lx protnone=%d, VMA allows %s",
				 wc->asid, addr, pte_protnone(e),
				 pte_protnone(e) ? "access" : "nothing");
	if (pte_write(e) && !(vma->vm_flags & VM_SHARED) &&
	    !PageAnonExclusive(&folio->page))
		hetmm_check_fail(wc->ctx, "mm %u: writable private PMD at %#lx maps a non-exclusive folio",
				 wc->asid, addr);
	if (folio_test_hugetlb(folio) != !!(vma->vm_flags & VM_HUGETLB))
		hetmm_check_fail(wc->ctx, "mm %u: PMD leaf at %#lx: hugetlb folio and VMA disagree",
				 wc->asid, addr);
	if (!folio_test_hugetlb(folio) &&
	    list_empty(&pt_entry_page(walk->mm, pmd)->lru))
		hetmm_check_fail(wc->ctx, "mm %u: PMD leaf at %#lx without a deposited table",
				 wc->asid, addr);
	for (unsigned long i = 0; i < HPAGE_PMD_NR; i++)
		pfn_vec_add(wc->pfns, pte_pfn(e) + i);
	pfn_vec_add(wc->heads, pte_pfn(e));
	return 0;
}

static int check_pte(pte_t *pte, unsigned long addr, unsigned long next,
		     struct mm_walk *walk)
{
	struct walk_check *wc = walk->private;
	struct hetmm_machine *m = walk->mm->machine;
	pte_t e = ptep_get(pte);
	enum softleaf_type k = pte_kind(e);
	struct vm_area_struct *vma;

	(void)next;
	if (k == SOFTLEAF_NONE)
		return 0;
	vma = vma_lookup(walk->mm, addr);
	if (!vma) {
		hetmm_check_fail(wc->ctx, "mm %u: entry %#llx at %#lx outside any VMA",
				 wc->asid, (unsigned long long)pte_val(e), addr);
		return 0;
	}
	if (k == SOFTLEAF_PRESENT) {
		bool noaccess = !(vma->vm_flags & (VM_READ | VM_WRITE | VM_EXEC));
		struct page *page;

		if (pte_write(e) && !(vma->vm_flags & VM_WRITE))
			hetmm_check_fail(wc->ctx,
					 "mm %u: writable PTE at %#lx in a VMA without VM_WRITE",
					 wc->asid, addr);
		if (pte_protnone(e) != noaccess)
			hetmm_check_fail(wc->ctx,
					 "mm %u: PTE at %#lx protnone=%d, VMA allows %s",
					 wc->asid, addr, pte_protnone(e),
					 noaccess ? "nothing" : "access");
		if (pte_special(e))
			return 0;
		if (pte_pfn(e) >= m->max_pfn) {
			hetmm_check_fail(wc->ctx, "mm %u: PTE at %#lx maps pfn %#lx beyond memory",
					 wc->asid, addr, pte_pfn(e));
			return 0;
		}
		page = pfn_to_page(m, pte_pfn(e));
		if (pte_write(e) && !(vma->vm_flags & VM_SHARED) &&
		    !(folio_test_anon(page_folio(page)) &&
		      PageAnonExclusive(page)))
			hetmm_check_fail(wc->ctx,
					 "mm %u: writable private PTE at %#lx maps pfn %#lx, not an exclusive anon page",
					 wc->asid, addr, pte_pfn(e));
		if (folio_is_device_private(page_folio(page)))
			hetmm_check_fail(wc->ctx,
					 "mm %u: present PTE at %#lx maps device-private pfn %#lx",
					 wc->asid, addr, pte_pfn(e));
		else if (!folio_test_anon(page_folio(page)) &&
			 !page_folio(page)->page.mapping &&
			 !(vma->vm_flags & VM_MIXEDMAP))
			hetmm_check_fail(wc->ctx,
					 "mm %u: PTE at %#lx maps pfn %#lx, which has no rmap, outside a VM_MIXEDMAP VMA",
					 wc->asid, addr, pte_pfn(e));
		if (PageTestFlag(page, PG_pgtable) ||
		    PageTestFlag(page, PG_slab_like))
			hetmm_check_fail(wc->ctx,
					 "mm %u: PTE at %#lx maps page-table or driver-internal pfn %#lx",
					 wc->asid, addr, pte_pfn(e));
		pfn_vec_add(wc->pfns, pte_pfn(e));
	} else if (is_device_private_kind(k) || k == SOFTLEAF_DEVICE_EXCLUSIVE) {
		unsigned long pfn = softleaf_pfn(softleaf_from_pte(e));
		struct folio *folio;

		if (pfn >= m->max_pfn) {
			hetmm_check_fail(wc->ctx, "mm %u: entry at %#lx names pfn %#lx beyond memory",
					 wc->asid, addr, pfn);
			return 0;
		}
		folio = page_folio(pfn_to_page(m, pfn));
		if (is_device_private_kind(k) != folio_is_device_private(folio))
			hetmm_check_fail(wc->ctx,
					 "mm %u: %s entry at %#lx names pfn %#lx which is %sdevice-private",
					 wc->asid,
					 k == SOFTLEAF_DEVICE_EXCLUSIVE ? "device-exclusive" : "device-private",
					 addr, pfn, folio_is_device_private(folio) ? "" : "not ");
		if (!folio_test_anon(folio))
			hetmm_check_fail(wc->ctx, "mm %u: device entry at %#lx names non-anon pfn %#lx",
					 wc->asid, addr, pfn);
		pfn_vec_add(wc->pfns, pfn);
	}
	return 0;
}

static const struct mm_walk_ops check_ops = {
	.pmd_entry = check_pmd,
	.pte_entry = check_pte,
	.walk_lock = PGWALK_RDLOCK,
};

static struct mm_struct *mm_by_asid(struct mm_machine *mmm, unsigned int asid)
{
	struct mm_struct *mm;

	list_for_each_entry(mm, &mmm->mms, mm_list)
		if (mm->asid == asid)
			return mm;
	return NULL;
}

static void check_tlbs(struct mm_machine *mmm, struct hetmm_check_ctx *ctx)
{
	for (unsigned int c = 0; c < mmm->nr_cpus; c++) {
		struct hetmm_cpu *cpu = &mmm->cpus[c];

		spin_lock(&cpu->lock);
		for (unsigned int i = 0; i < HETMM_TLB_ENTRIES; i++) {
			struct tlb_entry *e = &cpu->tlb[i];
			unsigned long addr = e->vpn << PAGE_SHIFT;
			struct mm_struct *mm;
			pte_t pte;

			if (!e->perm)
				continue;
			mm = mm_by_asid(mmm, e->asid);
			if (!mm) {
				hetmm_check_fail(ctx,
						 "cpu %u: TLB entry for %#lx of dead asid %u",
						 c, addr, e->asid);
				continue;
			}
			pte = mm_lookup_pte(mm, addr);
			if (!pte_access_permitted(pte, false) ||
			    pte_pfn(pte) != e->pfn ||
			    ((e->perm & TLB_PERM_WRITE) &&
			     !(pte_write(pte) && pte_dirty(pte))))
				hetmm_check_fail(ctx,
						 "cpu %u: TLB entry asid %u %#lx pfn %#lx perm %u not permitted by PTE %#llx",
						 c, e->asid, addr, e->pfn, e->perm,
						 (unsigned long long)pte_val(pte));
		}
		spin_unlock(&cpu->lock);
	}
}

/* Expected references a mapped page holds beyond its mappings. */
static int base_refs(struct page *page)
{
	struct folio *folio = page_folio(page);

	return !folio_test_anon(folio) && folio->page.mapping ? 1 : 0;
}

static void check_counts(struct hetmm_machine *m, struct pfn_vec *pv,
			 struct pfn_vec *heads, struct hetmm_check_ctx *ctx)
{
	if (pv->n)
		qsort(pv->v, pv->n, sizeof(*pv->v), cmp_ulong);
	for (size_t i = 0; i < pv->n;) {
		unsigned long pfn = pv->v[i];
		struct page *page = pfn_to_page(m, pfn);
		size_t j = i;
		int ref;

		while (j < pv->n && pv->v[j] == pfn)
			j++;
		ref = folio_ref_count(page_folio(page));
		if (page_mapcount(page) != (int)(j - i))
			hetmm_check_fail(ctx, "pfn %#lx: mapcount %d, %zu entries map it",
					 pfn, page_mapcount(page), j - i);
		if (ref <= 0)
			hetmm_check_fail(ctx, "pfn %#lx: mapped but not allocated (refcount %d)",
					 pfn, ref);
		else if (!folio_test_large(page_folio(page)) &&
			 ref < (int)(j - i) + base_refs(page))
			hetmm_check_fail(ctx, "pfn %#lx: refcount %d < %zu mappings + %d",
					 pfn, ref, j - i, base_refs(page));
		else if (folio_is_device_private(page_folio(page)) &&
			 !folio_test_locked(page_folio(page)) &&
			 ref != folio_mapcount(page_folio(page)))
			hetmm_check_fail(ctx, "device-private pfn %#lx at rest: refcount %d != mapcount %d",
					 pfn, ref, folio_mapcount(page_folio(page)));
		else if (folio_test_large(page_folio(page)) &&
			 ref < folio_mapcount(page_folio(page)))
			hetmm_check_fail(ctx, "pfn %#lx: folio refcount %d < folio mapcount %d",
					 pfn, ref, folio_mapcount(page_folio(page)));
		i = j;
	}
	if (heads->n)
		qsort(heads->v, heads->n, sizeof(*heads->v), cmp_ulong);
	for (size_t i = 0; i < heads->n;) {
		struct folio *folio = page_folio(pfn_to_page(m, heads->v[i]));
		size_t j = i;

		while (j < heads->n && heads->v[j] == heads->v[i])
			j++;
		if (folio_entire_mapcount(folio) != (int)(j - i))
			hetmm_check_fail(ctx, "pfn %#lx: entire mapcount %d, %zu PMD leaves map it",
					 heads->v[i], folio_entire_mapcount(folio),
					 j - i);
		i = j;
	}
	/* Mapped pages nobody maps. */
	for (int z = 0; z < 2; z++) {
		struct zone *zone = &m->zones[z];

		for (unsigned long pfn = zone->start_pfn;
		     pfn < zone->online_end_pfn; pfn++) {
			struct page *page = pfn_to_page(m, pfn);

			if (page_mapcount(page) <= 0 || PageTestFlag(page, PG_buddy))
				continue;
			if (!pv->n ||
			    !bsearch(&pfn, pv->v, pv->n, sizeof(*pv->v), cmp_ulong))
				hetmm_check_fail(ctx, "pfn %#lx: mapcount %d, but no entry maps it",
						 pfn, page_mapcount(page));
		}
	}
}

static unsigned long count_pgtable_frames(struct hetmm_machine *m)
{
	unsigned long n = 0;

	for (int z = 0; z < 2; z++)
		for (unsigned long pfn = m->zones[z].start_pfn;
		     pfn < m->zones[z].online_end_pfn; pfn++)
			if (PageTestFlag(pfn_to_page(m, pfn), PG_pgtable))
				n++;
	return n;
}

static void mm_check(struct hetmm_machine *m, void *arg,
		     struct hetmm_check_ctx *ctx)
{
	struct mm_machine *mmm = arg;
	struct pfn_vec pv = { 0 }, heads = { 0 };
	struct mm_struct *mm;
	unsigned long tables = 0, frames;

	mutex_lock(&mmm->mm_list_lock);
	list_for_each_entry(mm, &mmm->mms, mm_list) {
		struct walk_check wc = { .ctx = ctx, .pfns = &pv,
					 .heads = &heads, .asid = mm->asid };

		mmap_read_lock(mm);
		if (mm->pgd)
			walk_page_range_novma(mm, 0, TASK_SIZE, &check_ops, &wc);
		tables += atomic_load(&mm->nr_pt_pages);
		mmap_read_unlock(mm);
	}
	check_tlbs(mmm, ctx);
	mutex_unlock(&mmm->mm_list_lock);
	if (pv.oom || heads.oom)
		hetmm_check_fail(ctx, "mm check: out of memory");
	else
		check_counts(m, &pv, &heads, ctx);
	free(pv.v);
	free(heads.v);
	frames = count_pgtable_frames(m);
	if (frames != tables)
		hetmm_check_fail(ctx,
				 "page tables: %lu PG_pgtable frames, live address spaces own %lu",
				 frames, tables);
}

static void notifier_check(struct hetmm_machine *m, void *arg,
			   struct hetmm_check_ctx *ctx)
{
	struct mm_machine *mmm = arg;
	struct mm_struct *mm;
	char buf[512];

	(void)m;
	mutex_lock(&mmm->mm_list_lock);
	list_for_each_entry(mm, &mmm->mms, mm_list) {
		buf[0] = '\0';
		if (mmu_notifier_check(mm, buf, sizeof(buf)))
			hetmm_check_fail(ctx, "mm %u: notifier: %s", mm->asid,
					 buf);
	}
	mutex_unlock(&mmm->mm_list_lock);
}

void mm_register_checkers(struct hetmm_machine *m)
{
	struct mm_machine *mmm = m->subsys[HETMM_SUBSYS_MM];

	hetmm_checker_register(m, "mm", mm_check, mmm);
	hetmm_checker_register(m, "notifier", notifier_check, mmm);
}
