/* SPDX-License-Identifier: MIT */
/*
 * test_uffd - demand paging with the anonymous_uffd backing.
 *
 * Guest memory starts missing; handler threads fill each page on first
 * touch with a known pattern (derived from its host address).  Two vCPU
 * threads read and write every page of their halves: every read sees the
 * pattern (or what this vCPU wrote), every page was filled exactly once
 * (the handlers' count equals the page count), the mappings are exact.
 * A discard through the backing makes a range missing again: the guest
 * then reads the pattern again, not its old writes, and the count grows by
 * the discarded pages.  Skipped (77) where userfaultfd is not available.
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "../common/test_util.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#define PG 4096ull
#define SIZE (8ull << 20)
#define NPAGES (SIZE / PG)
#define GPA (1ull << 32)
#define NR_VCPUS 2

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,  \
				#cond);                                                    \
			abort();                                                           \
		}                                                                          \
	} while (0)

static uint8_t *mem;

static uint64_t pattern(uint64_t hva, unsigned word)
{
	return (hva + word * 8) * 0x9e3779b97f4a7c15ull;
}

static void fill(void *arg, uint64_t hva, void *page)
{
	uint64_t *w = page;

	CHECK(arg == &mem);
	for (unsigned i = 0; i < PG / 8; i++)
		w[i] = pattern(hva, i);
}

struct vcpu_arg {
	struct vmmu_hw_vcpu *hw;
	uint64_t first, nr;
};

static void *vcpu_thread(void *opaque)
{
	struct vcpu_arg *a = opaque;

	for (uint64_t p = a->first; p < a->first + a->nr; p++) {
		uint64_t hva = (uint64_t)(uintptr_t)mem + p * PG, v;
		unsigned w = (unsigned)(p % 512);

		CHECK(vmmu_hw_read(a->hw, GPA + p * PG + w * 8, &v, 8) == 0);
		CHECK(v == pattern(hva, w));
		if (p % 3 == 0) {
			v = ~v;
			CHECK(vmmu_hw_write(a->hw, GPA + p * PG + w * 8, &v, 8) == 0);
			CHECK(vmmu_hw_read(a->hw, GPA + p * PG + w * 8, &v, 8) == 0);
			CHECK(v == ~pattern(hva, w));
		}
	}
	vmmu_hw_guest_exit(a->hw);
	return NULL;
}

int main(void)
{
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpus[NR_VCPUS];
	struct vcpu_arg args[NR_VCPUS];
	pthread_t th[NR_VCPUS];
	struct vmmu_vm_stats st;
	uint64_t filled, v;
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	CHECK(vmmu_hostmem_create(&hm) == 0);
	CHECK(vmmu_hostmem_set_uffd(hm, &(struct vmmu_uffd_config){
						.nr_handlers = 2, .fill = fill, .arg = &mem }) == 0);
	CHECK(vmmu_hostmem_set_uffd(hm, &(struct vmmu_uffd_config){ .nr_handlers = 65 }) ==
	      -EINVAL);
	r = vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_UFFD, SIZE, 0, (void **)&mem);
	if (r == -EOPNOTSUPP) {
		printf("userfaultfd not available: skipped\n");
		CHECK(vmmu_hostmem_destroy(hm) == 0);
		return 77;
	}
	CHECK(r == 0);
	CHECK(vmmu_hostmem_uffd_pages(hm, mem, &filled) == 0 && filled == 0);
	CHECK(vmmu_vm_create(&(struct vmmu_vm_config){ .hostmem = hm }, &vm) == 0);
	CHECK(vmmu_set_user_memory_region(vm, &(struct vmmu_userspace_memory_region){
						      .slot = 0, .guest_phys_addr = GPA,
						      .memory_size = SIZE,
						      .userspace_addr = (uintptr_t)mem }) == 0);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		CHECK(vmmu_vcpu_create(vm, i, &vcpus[i]) == 0);
		args[i] = (struct vcpu_arg){ .first = i * NPAGES / NR_VCPUS,
					     .nr = NPAGES / NR_VCPUS };
		CHECK(vmmu_hw_vcpu_create(vcpus[i], NULL, &args[i].hw) == 0);
	}
	for (unsigned i = 0; i < NR_VCPUS; i++)
		CHECK(pthread_create(&th[i], NULL, vcpu_thread, &args[i]) == 0);
	for (unsigned i = 0; i < NR_VCPUS; i++)
		CHECK(pthread_join(th[i], NULL) == 0);
	CHECK(vmmu_hostmem_uffd_pages(hm, mem, &filled) == 0);
	printf("pages filled by the handlers: %" PRIu64 " of %llu\n", filled, (unsigned long long)NPAGES);
	CHECK(filled == NPAGES);
	for (uint64_t p = 0; p < NPAGES; p += 97) {
		void *hva;

		CHECK(vmmu_debug_lookup(vm, 0, GPA + p * PG + 8, &hva, NULL, NULL) == 0);
		CHECK(hva == mem + p * PG + 8);
	}
	CHECK(vmmu_vm_stats(vm, &st) == 0);
	CHECK(st.pages_4k == NPAGES);

	/* Discarded pages are missing again: the guest reads the pattern,
	 * not what it wrote there. */
	CHECK(vmmu_hostmem_discard(hm, mem, 16 * PG) == 0);
	for (uint64_t p = 0; p < 16; p++) {
		CHECK(vmmu_hw_read(args[0].hw, GPA + p * PG, &v, 8) == 0);
		CHECK(v == pattern((uint64_t)(uintptr_t)mem + p * PG, 0));
	}
	vmmu_hw_guest_exit(args[0].hw);
	CHECK(vmmu_hostmem_uffd_pages(hm, mem, &filled) == 0);
	CHECK(filled == NPAGES + 16);

	for (unsigned i = 0; i < NR_VCPUS; i++)
		CHECK(vmmu_hw_vcpu_destroy(args[i].hw) == 0);
	CHECK(vmmu_vm_destroy(vm) == 0);
	CHECK(vmmu_hostmem_free(hm, mem) == 0);
	CHECK(vmmu_hostmem_destroy(hm) == 0);
	printf("PASS\n");
	return 0;
}
