/* SPDX-License-Identifier: MIT */
/*
 * guest_paging - <vmmu/paging.h>: a guest with its own 4-level page tables
 * in guest memory, turned on with vmmu_hw_set_paging; the hardware model
 * writes through a guest virtual address (the 2-D walk), and
 * vmmu_vcpu_translate says where that address lands and what the guest's
 * tables allow.
 */
#include <vmmu/hw.h>
#include <vmmu/paging.h>
#include <vmmu/vmmu.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIZE (4ull << 20)
#define GVA ((uint64_t)0x00007f0000123000ull)
#define DATA_GPA 0x5000ull

static int fail(const char *what, int r)
{
	fprintf(stderr, "%s: %s\n", what, strerror(-r));
	return 1;
}

int main(void)
{
	uint64_t *mem = aligned_alloc(4096, SIZE), v = 42;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *cpu;
	struct vmmu_translation t;
	struct vmmu_paging_state st = {
		.cr0 = VMMU_CR0_PE | VMMU_CR0_PG | VMMU_CR0_WP,
		.cr3 = 0x1000, /* PML4 at GPA 0x1000, then PDPT, PD, PT */
		.cr4 = VMMU_CR4_PAE,
		.efer = VMMU_EFER_LME | VMMU_EFER_LMA,
	};
	int r;

	if (!mem)
		return 1;
	memset(mem, 0, SIZE);
	/* Guest memory is at GPA 0; entry i of the table at gpa g is
	 * mem[g / 8 + i].  Tables: P | W; the page: P | W. */
	mem[0x1000 / 8 + ((GVA >> 39) & 511)] = 0x2000 | 3;
	mem[0x2000 / 8 + ((GVA >> 30) & 511)] = 0x3000 | 3;
	mem[0x3000 / 8 + ((GVA >> 21) & 511)] = 0x4000 | 3;
	mem[0x4000 / 8 + ((GVA >> 12) & 511)] = DATA_GPA | 3;

	if ((r = vmmu_vm_create(NULL, &vm)))
		return fail("vmmu_vm_create", r);
	r = vmmu_set_user_memory_region(vm, &(struct vmmu_userspace_memory_region){
						    .slot = 0,
						    .memory_size = SIZE,
						    .userspace_addr = (uintptr_t)mem,
					    });
	if (r)
		return fail("vmmu_set_user_memory_region", r);
	if ((r = vmmu_vcpu_create(vm, 0, &vcpu)) || (r = vmmu_hw_vcpu_create(vcpu, NULL, &cpu)))
		return fail("vcpu create", r);

	if ((r = vmmu_hw_set_paging(cpu, &st)))
		return fail("vmmu_hw_set_paging", r);
	if ((r = vmmu_hw_write(cpu, GVA + 8, &v, sizeof(v))))
		return fail("vmmu_hw_write", r);
	vmmu_hw_guest_exit(cpu);
	if ((r = vmmu_vcpu_translate(vcpu, GVA + 8, VMMU_XLATE_USER, &t)))
		return fail("vmmu_vcpu_translate", r);
	printf("user read of 0x%" PRIx64 ": exception %u, #PF error code 0x%x\n", GVA + 8,
	       t.exception, t.error_code);
	if ((r = vmmu_vcpu_translate(vcpu, GVA + 8, VMMU_XLATE_WRITE, &t)))
		return fail("vmmu_vcpu_translate", r);
	printf("kernel write of 0x%" PRIx64 ": GPA 0x%" PRIx64 " (level %u), memory holds %" PRIu64
	       ", guest PTE 0x%" PRIx64 " (A and D set by the walk)\n",
	       GVA + 8, t.gpa, t.level, mem[(DATA_GPA + 8) / 8], mem[0x4000 / 8 + ((GVA >> 12) & 511)]);

	vmmu_hw_vcpu_destroy(cpu);
	vmmu_vm_destroy(vm);
	free(mem);
	return t.gpa == DATA_GPA + 8 ? 0 : 1;
}
