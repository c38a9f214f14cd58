/* SPDX-License-Identifier: MIT */
/*
 * hostmem_internal.h - what the library itself asks of host memory
 * (hostmem.c) beyond the public <vmmu/hostmem.h>: attaching VMs, whose
 * notifiers it then calls, and the fault path's host lookups.
 */
#ifndef VMMU_HOSTMEM_INTERNAL_H
#define VMMU_HOSTMEM_INTERNAL_H

#include <vmmu/hostmem.h>

#include <stdint.h>

struct vmmu_vm;

int vmmu_hostmem_attach(struct vmmu_hostmem *hm, struct vmmu_vm *vm);
void vmmu_hostmem_detach(struct vmmu_hostmem *hm, struct vmmu_vm *vm);
/* The fault path's host lookup: bring the page at @hva in (demand paging
 * blocks here until the page is filled; no MMU lock may be held), then
 * return its host level as vmmu_hostmem_level() does. */
int vmmu_hostmem_fault_in(struct vmmu_hostmem *hm, uint64_t hva);
/* For pre-fault runs: the end of what, from @hva on, has one backing and
 * one writability and needs no per-page fault-in (for demand-paged memory
 * that is @hva's page alone), or 0 if @hva is not memory of @hm. */
uint64_t vmmu_hostmem_extent_end(struct vmmu_hostmem *hm, uint64_t hva);

#endif /* VMMU_HOSTMEM_INTERNAL_H */
