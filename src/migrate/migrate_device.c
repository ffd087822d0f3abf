// SPDX-License-Identifier: MIT
/* Being written (issue 4): interim definitions so the tree links. */
#include <string.h>

#include "hetmm/migrate.h"

int migrate_device_range(unsigned long *src_pfns, struct hetmm_machine *m,
			 unsigned long start_pfn, unsigned long npages)
{
	(void)m;
	(void)start_pfn;
	memset(src_pfns, 0, npages * sizeof(*src_pfns));
	return 0;
}

void migrate_device_pages(struct hetmm_machine *m, unsigned long *src_pfns,
			  unsigned long *dst_pfns, unsigned long npages)
{
	(void)m;
	(void)src_pfns;
	(void)dst_pfns;
	(void)npages;
}

void migrate_device_finalize(struct hetmm_machine *m, unsigned long *src_pfns,
			     unsigned long *dst_pfns, unsigned long npages)
{
	(void)m;
	(void)src_pfns;
	(void)dst_pfns;
	(void)npages;
}
