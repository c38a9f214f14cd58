// SPDX-License-Identifier: MIT
/*
 * perf_role_switch.c - vmmu-perf role-switch: a guest kernel that toggles
 * CR0.WP around writes to read-only memory (W^X by WP, the grsecurity
 * pattern of seed 004), run with the cpu/root role split and with the old
 * behaviour (unload every root on a role change) in one run; plus the cost
 * of one 4-level guest walk with warm caches.
 */
#define _GNU_SOURCE
#include "perf.h"

#include <vmmu/paging.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GVA_BASE 0x00007f0000000000ull /* the working set */
#define GVA_RO 0xffffffff81100000ull /* "kernel text", read-only; TLB set 256 */
#define PTE_P 1ull
#define PTE_W 2ull

/* A 4-level guest page table built in guest memory, tables after data. */
struct guest_tables {
	uint8_t *mem;      /* host address of TEST_GPA */
	uint64_t next_gpa; /* next free table page */
	uint64_t cr3;
};

static uint64_t *gt_host(struct guest_tables *t, uint64_t gpa)
{
	return (uint64_t *)(t->mem + (gpa - TEST_GPA));
}

static uint64_t gt_alloc(struct guest_tables *t)
{
	uint64_t gpa = t->next_gpa;

	t->next_gpa += PAGE;
	memset(gt_host(t, gpa), 0, PAGE);
	return gpa;
}

static void gt_map(struct guest_tables *t, uint64_t gva, uint64_t gpa, uint64_t flags)
{
	uint64_t table = t->cr3;

	for (int level = 4; level > 1; level--) {
		uint64_t *e = gt_host(t, table) + ((gva >> (12 + 9 * (level - 1))) & 511);

		if (!(*e & PTE_P))
			*e = gt_alloc(t) | PTE_P | PTE_W;
		table = *e & 0x000ffffffffff000ull;
	}
	gt_host(t, table)[(gva >> 12) & 511] = gpa | flags | PTE_P;
}

static struct vmmu_paging_state long_mode(uint64_t cr3, bool wp)
{
	return (struct vmmu_paging_state){
		.cr0 = VMMU_CR0_PE | VMMU_CR0_PG | (wp ? VMMU_CR0_WP : 0),
		.cr3 = cr3,
		.cr4 = VMMU_CR4_PAE,
		.efer = VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE,
	};
}

struct run_result {
	uint64_t loop_ns, toggles;
	uint64_t set_ns, set_toggles; /* vmmu side alone */
	uint64_t roots_built;
	struct vmmu_vcpu_mmu_stats ms;
	struct vmmu_hw_stats hs0, hs1;
};

static void setup(struct perf_vm *p, struct guest_tables *t, unsigned wset, bool unload)
{
	struct vmmu_vm_config cfg = { .unload_roots_on_role_change = unload };

	/* data pages, the read-only page, then room for the tables */
	perf_vm_create_cfg(p, &cfg, 1, (uint64_t)(wset + 64) * PAGE, true,
			   VMMU_BACKING_ANONYMOUS);
	t->mem = p->mem;
	t->next_gpa = TEST_GPA + (uint64_t)(wset + 1) * PAGE;
	t->cr3 = gt_alloc(t);
	for (unsigned i = 0; i < wset; i++)
		gt_map(t, GVA_BASE + (uint64_t)i * PAGE, TEST_GPA + (uint64_t)i * PAGE, PTE_W);
	gt_map(t, GVA_RO, TEST_GPA + (uint64_t)wset * PAGE, 0);
}

static void check(int r, const char *what)
{
	if (r)
		die(what, r);
}

/* One round: WP off, patch the read-only page, WP on, work on the set. */
static void round_once(struct vmmu_hw_vcpu *hw, uint64_t cr3, unsigned wset, uint64_t v)
{
	struct vmmu_paging_state off = long_mode(cr3, false), on = long_mode(cr3, true);

	check(vmmu_hw_set_paging(hw, &off), "set_paging");
	check(vmmu_hw_write(hw, GVA_RO + (v & 511) * 8, &v, 8), "write read-only page");
	check(vmmu_hw_set_paging(hw, &on), "set_paging");
	for (unsigned i = 0; i < wset; i++)
		check(vmmu_hw_write(hw, GVA_BASE + (uint64_t)i * PAGE + (v & 511) * 8, &v, 8),
		      "write");
}

static void run_mode(bool unload, unsigned wset, uint64_t rounds, struct run_result *res)
{
	struct perf_vm p;
	struct guest_tables t;
	struct vmmu_vm_stats vs0, vs1;
	struct vmmu_hw_vcpu *hw;
	uint64_t t0;

	setup(&p, &t, wset, unload);
	hw = p.hw[0];
	for (uint64_t i = 0; i < 16; i++) /* warm: faults, roots, TLBs */
		round_once(hw, t.cr3, wset, i);
	vmmu_vm_stats(p.vm, &vs0);
	vmmu_hw_stats(hw, &res->hs0);
	t0 = now_ns();
	for (uint64_t i = 0; i < rounds; i++)
		round_once(hw, t.cr3, wset, i);
	res->loop_ns = now_ns() - t0;
	res->toggles = 2 * rounds;
	vmmu_hw_stats(hw, &res->hs1);
	vmmu_vm_stats(p.vm, &vs1);
	res->roots_built = vs1.roots_built - vs0.roots_built;
	vmmu_vcpu_mmu_stats(p.vcpus[0], &res->ms);

	/*
	 * The toggle alone, on vmmu's side: set_paging flipping WP and, for
	 * the old behaviour, the root reload the next guest entry does.
	 */
	vmmu_hw_guest_exit(hw);
	{
		struct vmmu_paging_state st = long_mode(t.cr3, true);
		struct vmmu_guest_entry e;
		uint64_t n = rounds * 4;

		t0 = now_ns();
		for (uint64_t i = 0; i < n; i++) {
			st.cr0 ^= VMMU_CR0_WP;
			check(vmmu_vcpu_set_paging(p.vcpus[0], &st), "set_paging");
			if (unload) {
				check(vmmu_vcpu_enter_guest(p.vcpus[0], &e), "enter");
				vmmu_vcpu_exit_guest(p.vcpus[0]);
			}
		}
		res->set_ns = now_ns() - t0;
		res->set_toggles = n;
	}
	perf_vm_destroy(&p);
}

static void print_mode(const char *name, const struct run_result *r)
{
	double ns = (double)r->loop_ns / (double)r->toggles;

	printf("%s: %" PRIu64 " CR0.WP toggles in %.6fs: %.0f toggles/s, %.1f ns per toggle "
	       "(whole guest loop / toggles)\n",
	       name, r->toggles, (double)r->loop_ns / 1e9, 1e9 / ns, ns);
	printf("%s: roots built %" PRIu64 ", root loads %" PRIu64 ", root unloads %" PRIu64
	       ", TLB flushes %" PRIu64 ", 2-D walks %" PRIu64 ", EPT violations %" PRIu64 "\n",
	       name, r->roots_built, r->ms.root_loads, r->ms.root_unloads,
	       r->hs1.tlb_flushes - r->hs0.tlb_flushes, r->hs1.gva_walks - r->hs0.gva_walks,
	       r->hs1.ept_violations - r->hs0.ept_violations);
	printf("%s: toggle alone (vmmu_vcpu_set_paging%s): %.1f ns per toggle\n", name,
	       r->ms.root_unloads ? " + root reload at entry" : "",
	       (double)r->set_ns / (double)r->set_toggles);
	perf_recordf(PERF_METRIC, "ns", ns, "%s: ns per toggle (whole loop)", name);
	perf_recordf(PERF_METRIC, "ns", (double)r->set_ns / (double)r->set_toggles,
		     "%s: ns per toggle alone", name);
}

/*
 * A 4-level guest walk with warm caches: vmmu_vcpu_translate (guest tables
 * read through the memslots, Accessed bits already set), and the hardware
 * model's 2-D walk (INVLPG, then an access: the guest-table pages are in
 * the GPA TLB, so only the guest walk and the final page's EPT lookup run).
 */
static void walk_cost(unsigned wset, uint64_t iters)
{
	struct perf_vm p;
	struct guest_tables t;
	struct vmmu_paging_state st;
	struct vmmu_translation tr;
	struct vmmu_hw_vcpu *hw;
	uint64_t t0, ns_xlate, ns_2d, ns_hit, v = 0, sum = 0;
	unsigned n = wset < 64 ? wset : 64;

	setup(&p, &t, wset, false);
	hw = p.hw[0];
	st = long_mode(t.cr3, true);
	check(vmmu_hw_set_paging(hw, &st), "set_paging");
	for (unsigned i = 0; i < n; i++)
		check(vmmu_hw_read(hw, GVA_BASE + (uint64_t)i * PAGE, &v, 8), "read");
	vmmu_hw_guest_exit(hw);

	t0 = now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		check(vmmu_vcpu_translate(p.vcpus[0], GVA_BASE + (i % n) * PAGE, 0, &tr),
		      "translate");
		sum += tr.gpa;
	}
	ns_xlate = now_ns() - t0;

	t0 = now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		uint64_t gva = GVA_BASE + (i % n) * PAGE;

		vmmu_hw_invlpg(hw, gva);
		check(vmmu_hw_read(hw, gva, &v, 8), "read");
		sum += v;
	}
	ns_2d = now_ns() - t0;

	t0 = now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		check(vmmu_hw_read(hw, GVA_BASE + (i % n) * PAGE, &v, 8), "read");
		sum += v;
	}
	ns_hit = now_ns() - t0;
	vmmu_hw_guest_exit(hw);
	perf_vm_destroy(&p);

	printf("Guest walk (4-level, warm): vmmu_vcpu_translate %.1f ns per walk\n",
	       (double)ns_xlate / (double)iters);
	perf_record(PERF_FLOOR, "Guest walk: vmmu_vcpu_translate ns", "ns",
		    (double)ns_xlate / (double)iters);
	perf_record(PERF_FLOOR, "Guest walk: hw 2-D walk ns after INVLPG", "ns",
		    (double)ns_2d / (double)iters);
	perf_record(PERF_FLOOR, "Guest access: TLB hit ns", "ns", (double)ns_hit / (double)iters);
	printf("Guest walk (4-level, warm): hw 2-D walk %.1f ns per access after INVLPG, "
	       "%.1f ns per access on a TLB hit (%s)\n",
	       (double)ns_2d / (double)iters, (double)ns_hit / (double)iters,
	       sum ? "checked" : "zero");
}

static void usage_role_switch(void)
{
	printf("usage: vmmu-perf role-switch [-i rounds] [-w pages]\n"
	       "  A guest toggles CR0.WP off, writes a read-only page, toggles it on, then\n"
	       "  writes one word in each page of its working set; run with the role split\n"
	       "  and with unload_roots_on_role_change, in one run.\n"
	       "  -i N   rounds (2 toggles each), default 100000\n"
	       "  -w N   working-set pages written between toggles, default 16\n");
}

static int cmd_role_switch(int argc, char **argv)
{
	uint64_t rounds = 100000;
	unsigned wset = 16;
	struct run_result split, unload;
	int c;

	while ((c = getopt(argc, argv, "i:w:h")) != -1) {
		switch (c) {
		case 'i': rounds = strtoull(optarg, NULL, 0); break;
		case 'w': wset = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'h': usage_role_switch(); return 0;
		default: usage_role_switch(); return 2;
		}
	}
	if (!rounds || !wset || wset > 65536) {
		usage_role_switch();
		return 2;
	}
	printf("Testing: EPT 4-level, guest 4-level paging, 1 vCPU, %u working-set pages, "
	       "%" PRIu64 " rounds\n",
	       wset, rounds);
	perf_config("working_set_pages", "%u", wset);
	perf_config("rounds", "%" PRIu64, rounds);
	run_mode(false, wset, rounds, &split);
	run_mode(true, wset, rounds, &unload);
	print_mode("Role split", &split);
	print_mode("Unload on change", &unload);
	printf("Ratio unload-on-change / role split: %.2fx (ns per toggle, whole loop; "
	       "seed 004's figure: about 2.4x)\n",
	       (double)unload.loop_ns / (double)split.loop_ns);
	perf_record(PERF_RATIO, "Ratio unload-on-change / role split", "x",
		    (double)unload.loop_ns / (double)split.loop_ns);
	walk_cost(wset, rounds * 4);
	return 0;
}

VMMU_PERF_EXPERIMENT(role_switch, "role-switch",
		     "guest toggling CR0.WP: cpu/root role split vs unload on every change",
		     cmd_role_switch)
