/* SPDX-License-Identifier: MIT */
/*
 * mmu_internal.h - every private header of the library at once, for the
 * tests and tools that look inside the objects.  Library sources include
 * the headers they depend on instead:
 *
 *   vm_internal.h   struct vmmu_vm, struct vmmu_vcpu, requests, stats
 *   memslot.h       memslots and gfn lookups
 *   sp.h            page-table roles and metadata
 *   dirty_log.h     dirty bitmaps, rings, page-modification log
 *   mmu.h           the MMU front: faults, fast faults, zaps, pre-faulting
 *   mmu_role.h      cpu and root roles, root loading and the root cache
 *   tdp_mmu.h       the TDP engine
 *   hostmem_internal.h  host memory as the library sees it
 */
#ifndef VMMU_MMU_INTERNAL_H
#define VMMU_MMU_INTERNAL_H

#include "dirty_log.h"
#include "hostmem_internal.h"
#include "memslot.h"
#include "mmu.h"
#include "mmu_role.h"
#include "sp.h"
#include "spte.h"
#include "tdp_iter.h"
#include "tdp_mmu.h"
#include "vm_internal.h"

#endif /* VMMU_MMU_INTERNAL_H */
