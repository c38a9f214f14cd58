/* SPDX-License-Identifier: MIT */
/*
 * map_and_touch - the README's usage sketch as a program: host memory with
 * transparent huge pages, one memslot, one vCPU of the hardware model that
 * writes and reads guest memory, and what vmmu mapped for it.
 */
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define GPA (1ull << 32)
#define SIZE (64ull << 20)

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
	struct vmmu_vm_stats st;
	void *mem;
	uint64_t v = 42, back = 0;
	int r;

	if ((r = vmmu_hostmem_create(&hm)))
		return fail("vmmu_hostmem_create", r);
	if ((r = vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_THP, SIZE, 0, &mem)))
		return fail("vmmu_hostmem_alloc", r);
	if ((r = vmmu_vm_create(&(struct vmmu_vm_config){ .hostmem = hm }, &vm)))
		return fail("vmmu_vm_create", r);
	r = vmmu_set_user_memory_region(vm, &(struct vmmu_userspace_memory_region){
						    .slot = 0,
						    .guest_phys_addr = GPA,
						    .memory_size = SIZE,
						    .userspace_addr = (uintptr_t)mem });
	if (r)
		return fail("vmmu_set_user_memory_region", r);
	if ((r = vmmu_vcpu_create(vm, 0, &vcpu)))
		return fail("vmmu_vcpu_create", r);
	if ((r = vmmu_hw_vcpu_create(vcpu, NULL, &cpu)))
		return fail("vmmu_hw_vcpu_create", r);

	/* The first access faults and vmmu maps the page. */
	if ((r = vmmu_hw_write(cpu, GPA + 8, &v, sizeof(v))))
		return fail("vmmu_hw_write", r);
	if ((r = vmmu_hw_read(cpu, GPA + 8, &back, sizeof(back))))
		return fail("vmmu_hw_read", r);
	vmmu_vm_stats(vm, &st);
	printf("wrote %" PRIu64 ", read back %" PRIu64 ", host memory holds %" PRIu64 "\n", v,
	       back, ((uint64_t *)mem)[1]);
	printf("leaves: 4K %" PRIu64 " 2M %" PRIu64 " 1G %" PRIu64 "\n", st.pages_4k,
	       st.pages_2m, st.pages_1g);
	if (back != v || ((uint64_t *)mem)[1] != v || st.pages_4k + st.pages_2m != 1)
		return 1;

	vmmu_hw_vcpu_destroy(cpu);
	vmmu_vm_destroy(vm);
	vmmu_hostmem_free(hm, mem);
	vmmu_hostmem_destroy(hm);
	return 0;
}
