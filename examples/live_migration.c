/* SPDX-License-Identifier: MIT */
/*
 * live_migration - what a VMM does to migrate a running guest, with vmmu's
 * dirty logging: once with dirty bitmaps (KVM_GET_DIRTY_LOG) and once with
 * dirty rings (KVM_CAP_DIRTY_LOG_RING).
 *
 * Two vCPUs of the hardware model keep writing guest memory (mostly a small
 * hot set, sometimes anywhere).  The "source" VMM turns dirty logging on for
 * the slot, copies all of memory to a "destination" buffer, then runs
 * pre-copy rounds: harvest the pages written since the last harvest and copy
 * them again, until few pages are dirty (or a round limit).  Then it stops
 * the vCPUs, harvests once more and copies the rest (stop and copy): the
 * destination must now equal the source byte for byte.
 *
 * The copy reads each 8-byte word with an atomic load because the vCPUs
 * write it at the same time (their 8-byte writes are atomic, as on x86).
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GPA (1ull << 32)
#define SIZE (16ull << 20)
#define NPAGES (SIZE / 4096)
#define NR_VCPUS 2
#define HOT_PAGES 64
#define MAX_ROUNDS 10
#define FEW_PAGES 256 /* stop pre-copying when a round finds fewer */

static struct vmmu_vm *vm;
static uint64_t *src, *dst; /* guest memory (host side) and the copy */
static int stop;

struct vcpu {
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	unsigned id;
	uint32_t ring_next; /* next ring entry to collect */
	uint64_t writes;
	int err;
};
static struct vcpu vcpus[NR_VCPUS];

#define CHECK(what, expr)                                                 \
	do {                                                              \
		int r_ = (expr);                                          \
		if (r_ < 0) {                                             \
			fprintf(stderr, "%s: %s\n", what, strerror(-r_)); \
			exit(1);                                          \
		}                                                         \
	} while (0)

/* The guest: writes forever, until the VMM stops it. */
static void *guest(void *arg)
{
	struct vcpu *c = arg;
	uint64_t x = 0x9e3779b97f4a7c15ull * (c->id + 1);

	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		uint64_t page, v;
		int r;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		page = (x & 15) ? (x >> 8) % HOT_PAGES : (x >> 8) % NPAGES;
		v = ((uint64_t)c->id << 56) | ++c->writes;
		r = vmmu_hw_write(c->hw, GPA + page * 4096 + ((x >> 40) % 512) * 8, &v, sizeof(v));
		if (r == -ENOBUFS) {
			/* The dirty ring is full (KVM_EXIT_DIRTY_RING_FULL):
			 * wait until the VMM has harvested and reset it. */
			c->writes--;
			while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE) &&
			       vmmu_hw_guest_enter(c->hw) == -ENOBUFS)
				sched_yield();
			continue;
		}
		if (r) {
			c->err = r;
			break;
		}
		if (!(c->writes % 64)) {
			/* A guest that also computes.  Leave guest mode before
			 * sleeping (the processor contract in vmmu.h). */
			vmmu_hw_guest_exit(c->hw);
			usleep(50);
		}
	}
	vmmu_hw_guest_exit(c->hw);
	return NULL;
}

static void copy_page(uint64_t p)
{
	for (unsigned i = 0; i < 512; i++)
		dst[p * 512 + i] = __atomic_load_n(&src[p * 512 + i], __ATOMIC_RELAXED);
}

/* Harvest the pages dirtied since the last harvest and copy them. */
static uint64_t harvest_and_copy(bool rings)
{
	static uint64_t bitmap[NPAGES / 64];
	static uint8_t dirty[NPAGES];
	uint64_t n = 0;

	memset(dirty, 0, sizeof(dirty));
	if (rings) {
		/* Each vCPU's ring: take the DIRTY entries, hand them back
		 * (RESET), then let vmmu protect those pages again. */
		for (unsigned v = 0; v < NR_VCPUS; v++) {
			struct vmmu_dirty_gfn *ring;
			uint32_t size;

			CHECK("vmmu_vcpu_dirty_ring",
			      vmmu_vcpu_dirty_ring(vcpus[v].vcpu, &ring, &size));
			for (;;) {
				struct vmmu_dirty_gfn *e = &ring[vcpus[v].ring_next & (size - 1)];

				if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) &
				      VMMU_DIRTY_GFN_F_DIRTY))
					break;
				if (e->slot == 0 && e->offset < NPAGES)
					dirty[e->offset] = 1;
				__atomic_store_n(&e->flags, VMMU_DIRTY_GFN_F_RESET,
						 __ATOMIC_RELEASE);
				vcpus[v].ring_next++;
			}
		}
		CHECK("vmmu_reset_dirty_rings", vmmu_reset_dirty_rings(vm, NULL));
	} else {
		/* KVM_GET_DIRTY_LOG: fetches and re-protects in one call. */
		CHECK("vmmu_get_dirty_log", vmmu_get_dirty_log(vm, 0, bitmap));
		for (uint64_t p = 0; p < NPAGES; p++)
			dirty[p] = bitmap[p / 64] >> (p % 64) & 1;
	}
	for (uint64_t p = 0; p < NPAGES; p++)
		if (dirty[p]) {
			copy_page(p);
			n++;
		}
	return n;
}

static int migrate(bool rings)
{
	struct vmmu_vm_config cfg = { .dirty_ring_size = rings ? 4096 : 0 };
	struct vmmu_userspace_memory_region slot;
	struct vmmu_hostmem *hm;
	pthread_t th[NR_VCPUS];
	uint64_t n, rounds = 0, writes = 0;

	printf("== live migration with dirty %s ==\n", rings ? "rings" : "bitmaps");
	CHECK("vmmu_hostmem_create", vmmu_hostmem_create(&hm));
	CHECK("vmmu_hostmem_alloc",
	      vmmu_hostmem_alloc(hm, VMMU_BACKING_ANONYMOUS_THP, SIZE, 0, (void **)&src));
	dst = calloc(NPAGES, 4096);
	if (!dst)
		return 1;
	cfg.hostmem = hm;
	CHECK("vmmu_vm_create", vmmu_vm_create(&cfg, &vm));
	slot = (struct vmmu_userspace_memory_region){ .slot = 0,
						      .guest_phys_addr = GPA,
						      .memory_size = SIZE,
						      .userspace_addr = (uintptr_t)src };
	CHECK("vmmu_set_user_memory_region", vmmu_set_user_memory_region(vm, &slot));
	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		vcpus[i] = (struct vcpu){ .id = i };
		CHECK("vmmu_vcpu_create", vmmu_vcpu_create(vm, i, &vcpus[i].vcpu));
		CHECK("vmmu_hw_vcpu_create",
		      vmmu_hw_vcpu_create(vcpus[i].vcpu, NULL, &vcpus[i].hw));
		if (pthread_create(&th[i], NULL, guest, &vcpus[i]))
			return 1;
	}
	usleep(5000); /* the guest runs for a while before the migration */

	/* 1. Dirty logging on: from now on every write is recorded. */
	slot.flags = VMMU_MEM_LOG_DIRTY_PAGES;
	CHECK("vmmu_set_user_memory_region (log dirty pages)",
	      vmmu_set_user_memory_region(vm, &slot));
	/* 2. Copy everything once, while the guest runs. */
	for (uint64_t p = 0; p < NPAGES; p++)
		copy_page(p);
	printf("full copy: %" PRIu64 " pages\n", (uint64_t)NPAGES);
	/* 3. Pre-copy rounds: copy what was dirtied meanwhile. */
	do {
		usleep(2000);
		n = harvest_and_copy(rings);
		printf("pre-copy round %" PRIu64 ": %" PRIu64 " dirty pages copied\n", ++rounds, n);
	} while (n >= FEW_PAGES && rounds < MAX_ROUNDS);
	/* 4. Stop and copy: the vCPUs stop, the last dirty pages move. */
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		pthread_join(th[i], NULL);
		if (vcpus[i].err) {
			fprintf(stderr, "vCPU %u: %s\n", i, strerror(-vcpus[i].err));
			return 1;
		}
		writes += vcpus[i].writes;
	}
	n = harvest_and_copy(rings);
	printf("stop and copy: %" PRIu64 " pages (the guest wrote %" PRIu64 " times in all)\n", n,
	       writes);
	/* 5. The destination must be the source, byte for byte. */
	if (memcmp(src, dst, SIZE)) {
		for (uint64_t p = 0; p < NPAGES; p++)
			if (memcmp(&src[p * 512], &dst[p * 512], 4096))
				fprintf(stderr, "page %" PRIu64 " differs\n", p);
		fprintf(stderr, "destination differs from the source\n");
		return 1;
	}
	printf("destination == source: %llu bytes checked\n", SIZE);

	slot.flags = 0; /* migration over (or cancelled): logging off */
	CHECK("vmmu_set_user_memory_region (logging off)", vmmu_set_user_memory_region(vm, &slot));
	for (unsigned i = 0; i < NR_VCPUS; i++) {
		vmmu_hw_vcpu_destroy(vcpus[i].hw);
		vmmu_vcpu_destroy(vcpus[i].vcpu);
	}
	vmmu_vm_destroy(vm);
	vmmu_hostmem_free(hm, src);
	vmmu_hostmem_destroy(hm);
	free(dst);
	return 0;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (migrate(false) || migrate(true))
		return 1;
	return 0;
}
