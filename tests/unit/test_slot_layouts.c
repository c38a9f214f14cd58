/* SPDX-License-Identifier: MIT */
/*
 * test_slot_layouts - property test of huge-page legality (invariant 8)
 * over random memslot layouts.
 *
 * Each round builds a fresh VM on host buffers of mixed backings: 4 KiB
 * anonymous memory, THP memory in which random 2 MiB chunks were refused
 * huge pages (MADV_NOHUGEPAGE before the first touch, so the host level is
 * mixed inside one allocation), and hugetlb 2 MiB memory when pages can be
 * reserved.  It lays 1 to 6 random slots over them: base, end and host
 * address misaligned or aligned at random, gfn and hva congruent modulo
 * 2 MiB or not, slots sharing host memory.  Random huge frames get their
 * disallow counters raised, as write tracking would.  Then one vCPU writes
 * every page (each write is checked in host memory at the expected address)
 * and, at rest, every page of every slot is checked:
 *   - the translation is exact: vmmu_debug_lookup gives the slot's host
 *     byte for two offsets of the page;
 *   - a leaf at level L lies wholly inside the slot, its gfn and hva are
 *     congruent modulo the leaf size, the host maps the whole range at a
 *     level >= L (read independently from /proc/self/pagemap and
 *     /proc/kpageflags as root, else from vmmu_hostmem_level), and the
 *     frame's disallow counters are zero;
 *   - pages_4k and pages_2m equal the leaves counted by the walk.
 * Seeded: VMMU_SEED=N replays the layouts; VMMU_TEST_ROUNDS sets the
 * number of rounds (default 24).
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#include "../common/hugetlb.h"
#include "../common/test_util.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096ull
#define HUGE_2M (2ull << 20)
#define BUF_BYTES (16ull << 20)
#define HUGETLB_BYTES (8ull << 20)
#define MAX_SLOTS 6

static uint64_t seed;
static unsigned round_no;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s (seed %" PRIu64           \
					", round %u)\n",                                   \
				__FILE__, __LINE__, #cond, seed, round_no);                \
			test_hugetlb_restore();                                    \
			abort();                                                           \
		}                                                                          \
	} while (0)

struct buf {
	enum vmmu_backing backing;
	uint8_t *mem;
	uint64_t size;
};

struct slot {
	uint64_t gpa, size;
	uint8_t *hva;
};

static int pagemap_fd = -1, kpageflags_fd = -1;

/*
 * The host level of the page at @hva, found without vmmu: hugetlb is what
 * was asked for; THP from the kernel's page flags when readable (root),
 * else what vmmu_hostmem_level answers.
 */
static int host_level(struct vmmu_hostmem *hm, const struct buf *b, uint64_t hva)
{
	uint64_t ent, flags;

	if (b->backing == VMMU_BACKING_ANONYMOUS)
		return 1;
	if (b->backing == VMMU_BACKING_ANONYMOUS_HUGETLB_2MB)
		return 2;
	if (pagemap_fd < 0 || kpageflags_fd < 0)
		return vmmu_hostmem_level(hm, hva);
	CHECK(pread(pagemap_fd, &ent, 8, (off_t)((hva >> 12) * 8)) == 8);
	if (!(ent & (1ull << 63)) || !(ent & ((1ull << 55) - 1)))
		return vmmu_hostmem_level(hm, hva);
	CHECK(pread(kpageflags_fd, &flags, 8, (off_t)((ent & ((1ull << 55) - 1)) * 8)) == 8);
	return (flags & (1ull << 22)) ? 2 : 1; /* KPF_THP */
}

/* May the 2 MiB frame at guest address @frame be one leaf? */
static bool frame_legal(struct vmmu_vm *vm, struct vmmu_hostmem *hm, const struct buf *b,
			const struct slot *s, uint64_t frame)
{
	uint64_t fhva = (uint64_t)(uintptr_t)s->hva + (frame - s->gpa);
	struct vmmu_memslot *ms;
	bool ok;

	if (frame < s->gpa || frame + HUGE_2M > s->gpa + s->size || (fhva & (HUGE_2M - 1)))
		return false;
	for (uint64_t h = fhva; h < fhva + HUGE_2M; h += PG * 64)
		if (host_level(hm, b, h) < 2)
			return false;
	vmmu_rcu_read_lock();
	ms = vmmu_gfn_to_memslot(vm, 0, frame >> 12);
	ok = ms->disallow_lpage[0][lpage_index(ms, frame >> 12, 2)] == 0;
	vmmu_rcu_read_unlock();
	return ok;
}

static const struct buf *buf_of(const struct buf *bufs, int nr, const uint8_t *hva)
{
	for (int i = 0; i < nr; i++)
		if (hva >= bufs[i].mem && hva < bufs[i].mem + bufs[i].size)
			return &bufs[i];
	return NULL;
}

static void one_round(struct test_rng *rng, bool hugetlb_ok)
{
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	struct buf bufs[3];
	struct slot slots[MAX_SLOTS];
	int nr_bufs = 0, nr_slots, first_slot;
	uint64_t cursor = 1ull << 32, leaves_4k = 0, leaves_2m = 0, disallowed = 0;
	struct vmmu_vm_stats st;

	CHECK(vmmu_hostmem_create(&hm) == 0);
	bufs[nr_bufs++] = (struct buf){ VMMU_BACKING_ANONYMOUS, NULL, BUF_BYTES };
	bufs[nr_bufs++] = (struct buf){ VMMU_BACKING_ANONYMOUS_THP, NULL, BUF_BYTES };
	if (hugetlb_ok)
		bufs[nr_bufs++] =
			(struct buf){ VMMU_BACKING_ANONYMOUS_HUGETLB_2MB, NULL, HUGETLB_BYTES };
	for (int i = 0; i < nr_bufs; i++) {
		int r = vmmu_hostmem_alloc(hm, bufs[i].backing, bufs[i].size, 0,
					   (void **)&bufs[i].mem);

		if (r == -ENOMEM && bufs[i].backing == VMMU_BACKING_ANONYMOUS_HUGETLB_2MB) {
			nr_bufs--; /* someone else took the pages meanwhile */
			break;
		}
		CHECK(r == 0);
	}
	/* Mixed host levels inside the THP buffer: some chunks refuse huge
	 * pages; then the host decides, before vmmu asks. */
	for (uint64_t off = 0; off < BUF_BYTES; off += HUGE_2M)
		if (test_rng_below(rng, 3) == 0)
			CHECK(madvise(bufs[1].mem + off, HUGE_2M, MADV_NOHUGEPAGE) == 0);
	for (int i = 0; i < nr_bufs; i++)
		memset(bufs[i].mem, 0, bufs[i].size);

	CHECK(vmmu_vm_create(&(struct vmmu_vm_config){ .hostmem = hm }, &vm) == 0);
	nr_slots = (int)test_rng_range(rng, 1, MAX_SLOTS);
	for (int i = 0; i < nr_slots; i++) {
		const struct buf *b = &bufs[test_rng_below(rng, (uint64_t)nr_bufs)];
		uint64_t bpages = b->size / PG, first, npages, hoff, goff;
		struct vmmu_userspace_memory_region r;

		/* Host start: 2 MiB aligned or any page (also inside a
		 * hugetlb page: the slot's own bounds then forbid the frame). */
		first = test_rng_below(rng, 3) ? test_rng_below(rng, bpages / 512) * 512 :
						 test_rng_below(rng, bpages);
		npages = test_rng_below(rng, 4) ? bpages - first - test_rng_below(rng, 700) :
						  test_rng_range(rng, 1, bpages - first);
		npages = vmmu_max(1, vmmu_min(npages, bpages - first));
		if (test_rng_below(rng, 2)) /* end on a 2 MiB boundary of the host */
			npages = ((first + npages) & ~511ull) > first ?
					 ((first + npages) & ~511ull) - first : npages;
		if (first + npages > bpages)
			npages = bpages - first;
		hoff = (uint64_t)(uintptr_t)(b->mem + first * PG) & (HUGE_2M - 1);
		/* Guest start: congruent with the host address or not. */
		cursor = (cursor + HUGE_2M - 1) & ~(HUGE_2M - 1);
		cursor += test_rng_below(rng, 4) * HUGE_2M;
		goff = test_rng_below(rng, 4) ? hoff : test_rng_below(rng, 512) * PG;
		slots[i] = (struct slot){ .gpa = cursor + goff, .size = npages * PG,
					  .hva = b->mem + first * PG };
		cursor = slots[i].gpa + slots[i].size;
		r = (struct vmmu_userspace_memory_region){
			.slot = (uint32_t)i, .guest_phys_addr = slots[i].gpa,
			.memory_size = slots[i].size,
			.userspace_addr = (uint64_t)(uintptr_t)slots[i].hva };
		CHECK(vmmu_set_user_memory_region(vm, &r) == 0);
	}
	/* Write tracking's part: forbid some huge frames (at both levels,
	 * as every disallow event does). */
	vmmu_rcu_read_lock();
	for (int i = 0; i < nr_slots; i++) {
		struct vmmu_memslot *ms = vmmu_gfn_to_memslot(vm, 0, slots[i].gpa >> 12);
		uint64_t n2;

		CHECK(ms);
		n2 = lpage_index(ms, ms->base_gfn + ms->npages - 1, PG_LEVEL_2M) + 1;
		for (uint64_t k = 0; k < n2; k++) {
			uint64_t gfn = vmmu_max(ms->base_gfn, ((ms->base_gfn >> 9) + k) << 9);

			if (test_rng_below(rng, 5))
				continue;
			ms->disallow_lpage[0][lpage_index(ms, gfn, PG_LEVEL_2M)]++;
			ms->disallow_lpage[1][lpage_index(ms, gfn, PG_LEVEL_1G)]++;
			disallowed++;
		}
	}
	vmmu_rcu_read_unlock();

	/* Fault every page in, in a random order of slots, checking each
	 * write lands at the expected host byte. */
	CHECK(vmmu_vcpu_create(vm, 0, &vcpu) == 0);
	CHECK(vmmu_hw_vcpu_create(vcpu, NULL, &hw) == 0);
	first_slot = (int)test_rng_below(rng, (uint64_t)nr_slots);
	for (int i = 0; i < nr_slots; i++) {
		struct slot *s = &slots[(first_slot + i) % nr_slots];

		for (uint64_t off = 0; off < s->size; off += PG) {
			uint64_t v = (s->gpa + off) ^ seed, got;
			uint64_t woff = 8 * test_rng_below(rng, 512);

			if (test_rng_below(rng, 4) == 0) {
				CHECK(vmmu_hw_read(hw, s->gpa + off + woff, &got, 8) == 0);
				continue;
			}
			CHECK(vmmu_hw_write(hw, s->gpa + off + woff, &v, 8) == 0);
			memcpy(&got, s->hva + off + woff, 8);
			CHECK(got == v);
		}
	}
	vmmu_hw_guest_exit(hw);

	/* At rest: exact and legal. */
	for (int i = 0; i < nr_slots; i++) {
		const struct slot *s = &slots[i];
		const struct buf *b = buf_of(bufs, nr_bufs, s->hva);

		for (uint64_t off = 0; off < s->size; off += PG) {
			uint64_t gpa = s->gpa + off, spte, size, frame, fhva;
			void *hva;
			int level;

			CHECK(vmmu_debug_lookup(vm, 0, gpa + 24, &hva, &level, &spte) == 0);
			CHECK(hva == s->hva + off + 24);
			CHECK(vmmu_debug_lookup(vm, 0, gpa + 4095, &hva, NULL, NULL) == 0);
			CHECK(hva == s->hva + off + 4095);
			CHECK(level == 1 || level == 2);
			size = HUGE_2M;
			frame = gpa & ~(size - 1);
			fhva = (uint64_t)(uintptr_t)s->hva + (frame - s->gpa);
			if (level == 1) {
				/* The largest legal level is used: a 4K leaf
				 * means the 2M frame was not allowed. */
				CHECK(!frame_legal(vm, hm, b, s, frame));
				leaves_4k++;
				continue;
			}
			/* Wholly inside the slot. */
			CHECK(frame >= s->gpa && frame + size <= s->gpa + s->size);
			/* Congruent: the leaf's host range is aligned too. */
			CHECK((fhva & (size - 1)) == 0);
			/* Never wider than the host mapping. */
			for (uint64_t h = fhva; h < fhva + size; h += PG * 64)
				CHECK(host_level(hm, b, h) >= level);
			/* Not a frame someone disallowed. */
			vmmu_rcu_read_lock();
			{
				struct vmmu_memslot *ms = vmmu_gfn_to_memslot(vm, 0, gpa >> 12);

				CHECK(ms->disallow_lpage[0][lpage_index(ms, gpa >> 12, 2)] == 0);
			}
			vmmu_rcu_read_unlock();
			if (gpa == frame)
				leaves_2m++;
		}
	}
	CHECK(vmmu_vm_stats(vm, &st) == 0);
	CHECK(st.pages_4k == leaves_4k);
	CHECK(st.pages_2m == leaves_2m);
	CHECK(st.pages_1g == 0);
	printf("round %u: %d slots on %d buffers, %" PRIu64 " frames disallowed: %" PRIu64
	       " 4K + %" PRIu64 " 2M leaves\n",
	       round_no, nr_slots, nr_bufs, disallowed, leaves_4k, leaves_2m);

	CHECK(vmmu_hw_vcpu_destroy(hw) == 0);
	CHECK(vmmu_vm_destroy(vm) == 0);
	for (int i = 0; i < nr_bufs; i++)
		CHECK(vmmu_hostmem_free(hm, bufs[i].mem) == 0);
	CHECK(vmmu_hostmem_destroy(hm) == 0);
}

int main(void)
{
	uint64_t rounds = test_env_u64("VMMU_TEST_ROUNDS", 24);
	bool hugetlb_ok;
	struct test_rng rng;

	setvbuf(stdout, NULL, _IOLBF, 0);
	seed = test_seed();
	test_rng_init(&rng, seed);
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	hugetlb_ok = test_hugetlb_reserve(HUGE_2M, HUGETLB_BYTES);
	printf("host levels from %s; hugetlb 2 MiB %s\n",
	       kpageflags_fd >= 0 ? "/proc/kpageflags" : "vmmu_hostmem_level",
	       hugetlb_ok ? "reserved" : "not available (rounds use anonymous and THP only)");
	for (round_no = 0; round_no < rounds; round_no++)
		one_round(&rng, hugetlb_ok);
	if (pagemap_fd >= 0)
		close(pagemap_fd);
	if (kpageflags_fd >= 0)
		close(kpageflags_fd);
	printf("PASS\n");
	return 0;
}
