/* SPDX-License-Identifier: MIT */
/* hetmm/hetmm.h - everything public, for users who want one include. */
#ifndef HETMM_HETMM_H
#define HETMM_HETMM_H

#include "check.h"
#include "compiler.h"
#include "err.h"
#include "fault_inject.h"
#include "list.h"
#include "lock.h"
#include "page.h"
#include "phys.h"
#include "rbtree.h"
#include "rcu.h"
#include "stats.h"
#include "xarray.h"

#endif
