/* SPDX-License-Identifier: MIT */
/*
 * host_memory - the host side of guest memory, as a VMM sees it:
 *
 * 1. backings: the same guest touches memory backed by 4 KiB pages, by
 *    transparent huge pages and (when pages are reserved) by hugetlb, and
 *    vmmu maps it with leaves of the host's page size;
 * 2. a discard (the host drops pages, e.g. a balloon): vmmu_hostmem_discard
 *    raises an MMU-notifier invalidation, vmmu removes its mappings, and
 *    the guest reads zeros and faults the page in again; a VMM that changes
 *    host memory by itself brackets the change with
 *    vmmu_notify_invalidate_range_start/end the same way;
 * 3. aging: the host asks which pages the guest used (clear_young /
 *    test_young, what Linux's reclaim does through the notifiers), and
 *    idle-page tracking over guest-physical ranges (vmmu_idle_mark/count).
 */
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GPA (1ull << 32)
#define SIZE (4ull << 20)
#define PAGE 4096ull

#define CHECK(what, expr)                                                 \
	do {                                                              \
		int r_ = (expr);                                          \
		if (r_ < 0) {                                             \
			fprintf(stderr, "%s: %s\n", what, strerror(-r_)); \
			exit(1);                                          \
		}                                                         \
	} while (0)
#define EXPECT(cond)                                                                        \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                            \
		}                                                                           \
	} while (0)

struct guest {
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *cpu;
	uint8_t *mem;
};

/* A VM with one slot of SIZE bytes of @backing at GPA and one vCPU.
 * -ENOMEM from the allocation (hugetlb pages not reserved) is returned. */
static int guest_create(struct guest *g, enum vmmu_backing backing)
{
	int r;

	CHECK("vmmu_hostmem_create", vmmu_hostmem_create(&g->hm));
	r = vmmu_hostmem_alloc(g->hm, backing, SIZE, 0, (void **)&g->mem);
	if (r) {
		vmmu_hostmem_destroy(g->hm);
		return r;
	}
	CHECK("vmmu_vm_create",
	      vmmu_vm_create(&(struct vmmu_vm_config){ .hostmem = g->hm }, &g->vm));
	CHECK("vmmu_set_user_memory_region",
	      vmmu_set_user_memory_region(g->vm, &(struct vmmu_userspace_memory_region){
							 .slot = 0,
							 .guest_phys_addr = GPA,
							 .memory_size = SIZE,
							 .userspace_addr = (uintptr_t)g->mem }));
	CHECK("vmmu_vcpu_create", vmmu_vcpu_create(g->vm, 0, &g->vcpu));
	CHECK("vmmu_hw_vcpu_create", vmmu_hw_vcpu_create(g->vcpu, NULL, &g->cpu));
	return 0;
}

static void guest_destroy(struct guest *g)
{
	vmmu_hw_vcpu_destroy(g->cpu);
	vmmu_vm_destroy(g->vm);
	vmmu_hostmem_free(g->hm, g->mem);
	vmmu_hostmem_destroy(g->hm);
}

static void touch_all(struct guest *g)
{
	for (uint64_t off = 0; off < SIZE; off += PAGE) {
		uint64_t v = off;

		CHECK("vmmu_hw_write", vmmu_hw_write(g->cpu, GPA + off, &v, sizeof(v)));
	}
	vmmu_hw_guest_exit(g->cpu);
}

static void backings(void)
{
	printf("== backings: %llu MiB touched by the guest ==\n", SIZE >> 20);
	for (enum vmmu_backing b = VMMU_BACKING_ANONYMOUS; b <= VMMU_BACKING_ANONYMOUS_HUGETLB_2MB;
	     b++) {
		struct vmmu_vm_stats st;
		struct guest g;
		int r = guest_create(&g, b);

		if (r) {
			printf("%-22s not available here (%s: reserve hugetlb pages as root)\n",
			       vmmu_backing_name(b), strerror(-r));
			continue;
		}
		touch_all(&g);
		CHECK("vmmu_vm_stats", vmmu_vm_stats(g.vm, &st));
		printf("%-22s host page %4" PRIu64 " KiB, host level %d; vmmu leaves: 4K %" PRIu64
		       ", 2M %" PRIu64 "\n",
		       vmmu_backing_name(b), vmmu_backing_page_size(b) >> 10,
		       vmmu_hostmem_level(g.hm, (uintptr_t)g.mem), st.pages_4k, st.pages_2m);
		/* Never more than the host gives: 4 KiB backing, 4 KiB leaves. */
		if (b == VMMU_BACKING_ANONYMOUS)
			EXPECT(st.pages_4k == SIZE / PAGE && st.pages_2m == 0);
		guest_destroy(&g);
	}
}

static bool mapped(struct guest *g, uint64_t gpa)
{
	void *hva;
	int level;
	uint64_t spte;

	return vmmu_debug_lookup(g->vm, 0, gpa, &hva, &level, &spte) == 0;
}

static void discard(void)
{
	struct vmmu_vcpu_stats s0, s1;
	struct guest g;
	uint64_t v = 0, off = 5 * PAGE;

	printf("== discard: the host drops a page the guest uses ==\n");
	CHECK("guest_create", guest_create(&g, VMMU_BACKING_ANONYMOUS));
	touch_all(&g);
	EXPECT(mapped(&g, GPA + off));
	/* MADV_DONTNEED inside an invalidate_range_start/end pair. */
	CHECK("vmmu_hostmem_discard", vmmu_hostmem_discard(g.hm, g.mem + off, PAGE));
	printf("after vmmu_hostmem_discard: gpa 0x%llx %s\n", GPA + off,
	       mapped(&g, GPA + off) ? "still mapped (wrong)" : "no longer mapped");
	EXPECT(!mapped(&g, GPA + off) && mapped(&g, GPA + off + PAGE));
	CHECK("vmmu_vcpu_stats", vmmu_vcpu_stats(g.vcpu, &s0));
	CHECK("vmmu_hw_read", vmmu_hw_read(g.cpu, GPA + off, &v, sizeof(v)));
	vmmu_hw_guest_exit(g.cpu);
	CHECK("vmmu_vcpu_stats", vmmu_vcpu_stats(g.vcpu, &s1));
	printf("the guest reads %" PRIu64 " there (zeros) after %" PRIu64 " new fault(s)\n", v,
	       s1.pf_fixed - s0.pf_fixed);
	EXPECT(v == 0 && s1.pf_fixed - s0.pf_fixed == 1);

	/* A VMM changing host memory itself: invalidate around the change. */
	off = 9 * PAGE;
	CHECK("vmmu_notify_invalidate_range_start",
	      vmmu_notify_invalidate_range_start(g.vm, (uintptr_t)g.mem + off,
						 (uintptr_t)g.mem + off + PAGE));
	memset(g.mem + off, 0xab, PAGE);
	CHECK("vmmu_notify_invalidate_range_end",
	      vmmu_notify_invalidate_range_end(g.vm, (uintptr_t)g.mem + off,
					       (uintptr_t)g.mem + off + PAGE));
	EXPECT(!mapped(&g, GPA + off));
	CHECK("vmmu_hw_read", vmmu_hw_read(g.cpu, GPA + off, &v, sizeof(v)));
	vmmu_hw_guest_exit(g.cpu);
	printf("own invalidation around a host change: the guest reads 0x%" PRIx64 "\n", v);
	EXPECT(v == 0xababababababababull);
	guest_destroy(&g);
}

static void aging(void)
{
	uintptr_t base;
	uint64_t idle, nmapped, v;
	struct guest g;
	bool young;

	printf("== aging: which pages did the guest use? ==\n");
	CHECK("guest_create", guest_create(&g, VMMU_BACKING_ANONYMOUS));
	base = (uintptr_t)g.mem;
	touch_all(&g);
	/* The host's reclaim: clear the Accessed state, see who sets it. */
	CHECK("vmmu_notify_clear_young", vmmu_notify_clear_young(g.vm, base, base + SIZE, &young));
	printf("clear_young over all memory: young %d (the guest touched it)\n", young);
	EXPECT(young);
	CHECK("vmmu_notify_test_young", vmmu_notify_test_young(g.vm, base, base + SIZE, &young));
	printf("test_young right after:      young %d\n", young);
	EXPECT(!young);
	/* clear_young does not flush TLBs; flush so the next access is seen. */
	vmmu_hw_tlb_flush(g.cpu);
	CHECK("vmmu_hw_read", vmmu_hw_read(g.cpu, GPA + 3 * PAGE, &v, sizeof(v)));
	vmmu_hw_guest_exit(g.cpu);
	CHECK("vmmu_notify_test_young",
	      vmmu_notify_test_young(g.vm, base + 3 * PAGE, base + 4 * PAGE, &young));
	printf("the guest reads page 3:      page 3 young %d", young);
	EXPECT(young);
	CHECK("vmmu_notify_test_young",
	      vmmu_notify_test_young(g.vm, base + 4 * PAGE, base + SIZE, &young));
	printf(", pages 4.. young %d\n", young);
	EXPECT(!young);

	/* Idle-page tracking by guest-physical range (page_idle). */
	CHECK("vmmu_idle_mark", vmmu_idle_mark(g.vm, 0, GPA, SIZE));
	for (uint64_t p = 0; p < 10; p++)
		CHECK("vmmu_hw_read", vmmu_hw_read(g.cpu, GPA + p * 64 * PAGE, &v, sizeof(v)));
	vmmu_hw_guest_exit(g.cpu);
	CHECK("vmmu_idle_count", vmmu_idle_count(g.vm, 0, GPA, SIZE, &idle, &nmapped));
	printf("idle tracking: marked all idle, the guest read 10 pages: %" PRIu64
	       " idle of %" PRIu64 " mapped\n",
	       idle, nmapped);
	EXPECT(nmapped == SIZE / PAGE && idle == nmapped - 10);
	guest_destroy(&g);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	backings();
	discard();
	aging();
	return 0;
}
