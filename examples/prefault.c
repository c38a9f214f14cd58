/* SPDX-License-Identifier: MIT */
/*
 * prefault - mapping guest memory before the guest runs, two ways:
 * vmmu_vcpu_pre_fault_memory (KVM_PRE_FAULT_MEMORY), called until the
 * range is used up, and a memslot with VMMU_MEM_DIRECT_BUILD, whose whole
 * map exists when vmmu_set_user_memory_region returns.  Either way the
 * vCPU's accesses afterwards take no EPT violation.
 */
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define GPA (1ull << 32)
#define SIZE (16ull << 20)

static int fail(const char *what, int r)
{
	fprintf(stderr, "%s: %s\n", what, strerror(-r));
	return 1;
}

int main(void)
{
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *cpu;
	struct vmmu_hw_stats hs;
	struct vmmu_pre_fault_memory range = { .gpa = GPA, .size = SIZE };
	uint8_t *mem;
	uint64_t v = 7;
	int r;

	if ((r = vmmu_hostmem_create(&hm)))
		return fail("vmmu_hostmem_create", r);
	if ((r = vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS, 2 * SIZE, 0, (void **)&mem)))
		return fail("vmmu_hostmem_alloc", r);
	r = vmmu_vm_create(&(struct vmmu_vm_config){ .hostmem = hm, .direct_build_workers = 2 },
			   &vm);
	if (r)
		return fail("vmmu_vm_create", r);
	/* Slot 0: ordinary, pre-faulted below.  Slot 1: built on creation. */
	r = vmmu_set_user_memory_region(
		vm, &(struct vmmu_userspace_memory_region){ .slot = 0,
							    .guest_phys_addr = GPA,
							    .memory_size = SIZE,
							    .userspace_addr = (uintptr_t)mem });
	if (r)
		return fail("vmmu_set_user_memory_region", r);
	r = vmmu_set_user_memory_region(vm, &(struct vmmu_userspace_memory_region){
						    .slot = 1,
						    .flags = VMMU_MEM_DIRECT_BUILD,
						    .guest_phys_addr = GPA + SIZE,
						    .memory_size = SIZE,
						    .userspace_addr = (uintptr_t)(mem + SIZE) });
	if (r)
		return fail("vmmu_set_user_memory_region (direct build)", r);
	if ((r = vmmu_vcpu_create(vm, 0, &vcpu)))
		return fail("vmmu_vcpu_create", r);

	/* 0 means progress: call again until the whole range is done. */
	while (range.size)
		if ((r = vmmu_vcpu_pre_fault_memory(vcpu, &range)))
			return fail("vmmu_vcpu_pre_fault_memory", r);

	if ((r = vmmu_hw_vcpu_create(vcpu, NULL, &cpu)))
		return fail("vmmu_hw_vcpu_create", r);
	for (uint64_t off = 0; off < 2 * SIZE; off += 4096)
		if ((r = vmmu_hw_write(cpu, GPA + off, &v, sizeof(v))))
			return fail("vmmu_hw_write", r);
	vmmu_hw_guest_exit(cpu);
	vmmu_hw_stats(cpu, &hs);
	printf("wrote %" PRIu64 " pages, EPT violations: %" PRIu64 "\n",
	       (uint64_t)(2 * SIZE / 4096), hs.ept_violations);
	if (hs.ept_violations || mem[2 * SIZE - 4096] != 7)
		return 1;

	vmmu_hw_vcpu_destroy(cpu);
	vmmu_vm_destroy(vm);
	vmmu_hostmem_free(hm, mem);
	vmmu_hostmem_destroy(hm);
	return 0;
}
