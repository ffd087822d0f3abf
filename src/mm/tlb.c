// SPDX-License-Identifier: MIT
/*
 * tlb.c - per-CPU software TLBs, range shootdowns and the mmu_gather.
 *
 * Locking and invariants: see hetmm/tlb.h. In short, fills happen under
 * the PTE lock and cpu->lock; hits and flushes take cpu->lock only; pages
 * leave a zap through the gather, after the flush.
 */
#include <string.h>

#include <hetmm/stats.h>

#include "internal.h"

struct hetmm_cpu *hetmm_machine_cpu(struct hetmm_machine *m, unsigned int cpu)
{
	struct mm_machine *mmm = mm_machine(m);

	if (!mmm || cpu >= mmm->nr_cpus)
		return NULL;
	return &mmm->cpus[cpu];
}

void tlb_fill(struct mm_struct *mm, struct hetmm_cpu *c, unsigned long addr,
	      unsigned long pfn, unsigned char *host, unsigned int perm)
{
	unsigned long vpn = addr >> PAGE_SHIFT;
	struct tlb_entry *e = tlb_slot(c, vpn);
	unsigned int bit = c->id;

	if (!(atomic_load_explicit(&mm->cpumask[bit / 64],
				   memory_order_relaxed) &
	      (1UL << (bit % 64))))
		atomic_fetch_or(&mm->cpumask[bit / 64], 1UL << (bit % 64));
	spin_lock(&c->lock);
	if (e->perm && !(e->vpn == vpn && e->asid == mm->asid))
		count_stat(HETMM_STAT_tlb_evict);
	e->vpn = vpn;
	e->asid = mm->asid;
	e->pfn = pfn;
	e->host = host;
	e->perm = perm;
	spin_unlock(&c->lock);
}

static unsigned long flush_one_cpu(struct hetmm_cpu *c, unsigned int asid,
				   unsigned long start, unsigned long end)
{
	unsigned long svpn = start >> PAGE_SHIFT, evpn = end >> PAGE_SHIFT;
	unsigned long n = 0;

	spin_lock(&c->lock);
	if (evpn - svpn > HETMM_TLB_FLUSH_CEILING) {
		for (unsigned int i = 0; i < HETMM_TLB_ENTRIES; i++) {
			struct tlb_entry *e = &c->tlb[i];

			if (e->perm && e->asid == asid && e->vpn >= svpn &&
			    e->vpn < evpn) {
				e->perm = 0;
				n++;
			}
		}
	} else {
		for (unsigned long v = svpn; v < evpn; v++) {
			struct tlb_entry *e = tlb_slot(c, v);

			if (e->perm && e->asid == asid && e->vpn == v) {
				e->perm = 0;
				n++;
			}
		}
	}
	spin_unlock(&c->lock);
	return n;
}

void flush_tlb_range(struct mm_struct *mm, unsigned long start,
		     unsigned long end)
{
	struct mm_machine *mmm = mm_machine_peek(mm->machine);
	unsigned long dropped = 0;

	if (!mmm || start >= end)
		return;
	count_stat(HETMM_STAT_tlb_flush);
	for (unsigned int w = 0; w < HETMM_MAX_CPUS / 64; w++) {
		unsigned long bits = atomic_load(&mm->cpumask[w]);

		while (bits) {
			unsigned int cpu = w * 64 + __builtin_ctzl(bits);

			bits &= bits - 1;
			if (cpu >= mmm->nr_cpus)
				break;
			count_stat(HETMM_STAT_tlb_shootdown);
			dropped += flush_one_cpu(&mmm->cpus[cpu], mm->asid,
						 start, end);
		}
	}
	count_stat_n(HETMM_STAT_tlb_entries_flushed, dropped);
}

void flush_tlb_mm(struct mm_struct *mm)
{
	flush_tlb_range(mm, 0, TASK_SIZE);
}

pte_t ptep_clear_flush(struct mm_struct *mm, unsigned long addr, pte_t *ptep)
{
	pte_t old = ptep_get_and_clear(ptep);

	if (pte_present(old))
		flush_tlb_page(mm, addr);
	return old;
}

/* ------------------------------------------------------------- gather */

void tlb_gather_mmu(struct mmu_gather *tlb, struct mm_struct *mm)
{
	tlb->mm = mm;
	tlb->start = ULONG_MAX;
	tlb->end = 0;
	tlb->nr = 0;
}

void tlb_track(struct mmu_gather *tlb, unsigned long addr, unsigned long size)
{
	if (addr < tlb->start)
		tlb->start = addr;
	if (addr + size > tlb->end)
		tlb->end = addr + size;
}

static void tlb_flush_and_free(struct mmu_gather *tlb)
{
	if (tlb->end > tlb->start)
		flush_tlb_range(tlb->mm, tlb->start, tlb->end);
	tlb->start = ULONG_MAX;
	tlb->end = 0;
	for (unsigned int i = 0; i < tlb->nr; i++)
		put_page(tlb->pages[i]);
	tlb->nr = 0;
}

void tlb_remove_page(struct mmu_gather *tlb, struct page *page)
{
	if (tlb->nr == MMU_GATHER_BATCH)
		tlb_flush_and_free(tlb);
	tlb->pages[tlb->nr++] = page;
}

void tlb_finish_mmu(struct mmu_gather *tlb)
{
	tlb_flush_and_free(tlb);
}
