/* SPDX-License-Identifier: MIT */
/*
 * hostmem_internal.h - what the library itself asks of host memory
 * (hostmem.c) beyond the public <vmmu/hostmem.h>: attaching VMs, whose
 * notifiers it then calls, and the fault path's host lookups.
 */
#ifndef VMMU_HOSTMEM_INTERNAL_H
#define VMMU_HOSTMEM_INTERNAL_H

#include <vmmu/hostmem.h>

#include <stdbool.h>
#include <stdint.h>

struct vmmu_vm;

int vmmu_hostmem_attach(struct vmmu_hostmem *hm, struct vmmu_vm *vm);
void vmmu_hostmem_detach(struct vmmu_hostmem *hm, struct vmmu_vm *vm);
/*
 * The fault path's one host lookup, inside the caller's RCU read section
 * (no MMU lock may be held: demand paging blocks here until the page at
 * @hva is filled).  Fills @page:
 *   level       the host mapping level, as vmmu_hostmem_level() answers;
 *   writable    whether the host lets the guest write the page;
 *   extent_end  the end of what, from @hva on, has one backing and one
 *               writability and needs no per-page fault-in (for
 *               demand-paged memory: @hva's page alone), for pre-fault runs.
 * 0, or -EFAULT when @hva is not memory of @hm.
 */
struct vmmu_host_page {
	int level;
	bool writable;
	uint64_t extent_end;
};
int vmmu_hostmem_lookup(struct vmmu_hostmem *hm, uint64_t hva, struct vmmu_host_page *page);

#endif /* VMMU_HOSTMEM_INTERNAL_H */
