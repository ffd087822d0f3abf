/* SPDX-License-Identifier: MIT */
/* Being written (issue 4). */
#include "hetmm/compiler.h"
