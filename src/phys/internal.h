/* SPDX-License-Identifier: MIT */
/* phys/internal.h - declarations shared by the phys layer's files only. */
#ifndef HETMM_PHYS_INTERNAL_H
#define HETMM_PHYS_INTERNAL_H

#include <hetmm/phys.h>

/*
 * For a free block head (PG_buddy or PG_pcp), struct page::index holds the
 * order its pages' head_offset fields are laid out for (head_offset ==
 * pfn & ((1 << fmt) - 1) on every page), or FMT_MIXED. An allocation of
 * exactly that order need not rewrite its tail pages; this keeps order-9
 * alloc+free from touching 32 KiB of struct pages.
 */
#define FMT_MIXED 0xffUL

void phys_init_zone(struct hetmm_machine *m, struct zone *z,
		    enum zone_type type, unsigned long start,
		    unsigned long end);
/* Initialise the struct pages of the next section of @z. Needs z->lock. */
bool zone_online_next(struct hetmm_machine *m, struct zone *z);
void phys_register_checker(struct hetmm_machine *m);
void init_struct_page(struct hetmm_machine *m, struct page *p,
		      enum zone_type zone);

#endif
