// SPDX-License-Identifier: MIT
/*
 * test_guest_walk.c - the guest page-table walker against the SDM.
 *
 * Two kinds of tests:
 *  - sweeps that build a page-table chain in a flat guest memory image for
 *    every combination of entry bits, control bits and access type of a
 *    mode (the approach of kvm-unit-tests' access test), and compare the
 *    walker's outcome, error code, translated address and A/D writes with
 *    guest_walk_ref.h, a plain model written from the SDM;
 *  - literal cases whose expected values are typed in by hand (PSE-36,
 *    1 GiB offsets, canonical addresses, EPT misconfigurations, A/D races).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "guest_walk.h"
#include "guest_walk_ref.h"

/*
 * Guest memory: a flat image with a log of the A/D writes, and hooks for
 * refusing an address or racing with the walker.
 */
#define IMG_SIZE (64 * 1024)

struct image {
	uint8_t buf[IMG_SIZE];
	int nwrites;
	uint64_t wgpa[16], wval[16];
	uint64_t refuse_gpa;	 /* reads of this gpa fail (~0: none) */
	uint64_t race_gpa;	 /* first cmpxchg here sees this change */
	uint64_t race_xor;
	int races_left;
	/* chain entries written by the builder, to undo after a case */
	int nbuilt;
	uint64_t built[8];
};

static uint64_t img_get(const struct image *img, uint64_t gpa, unsigned int size)
{
	uint64_t v = 0;

	memcpy(&v, img->buf + gpa, size);
	return v;
}

static void img_put(struct image *img, uint64_t gpa, uint64_t v, unsigned int size)
{
	memcpy(img->buf + gpa, &v, size);
}

static int img_read(void *opaque, uint64_t gpa, uint64_t *val, unsigned int size)
{
	struct image *img = opaque;

	assert_true(size == 4 || size == 8);
	assert_int_equal(gpa % size, 0);
	if (gpa == img->refuse_gpa || gpa >= IMG_SIZE)
		return -1;
	*val = img_get(img, gpa, size);
	return 0;
}

static int img_cmpxchg(void *opaque, uint64_t gpa, uint64_t old, uint64_t new_val,
		       unsigned int size)
{
	struct image *img = opaque;
	uint64_t cur;

	if (gpa >= IMG_SIZE || gpa == img->refuse_gpa)
		return -1;
	if (gpa == img->race_gpa && img->races_left > 0) {
		img->races_left--;
		img_put(img, gpa, img_get(img, gpa, size) ^ img->race_xor, size);
	}
	cur = img_get(img, gpa, size);
	if (cur != old)
		return 1;
	img_put(img, gpa, new_val, size);
	assert_true(img->nwrites < 16);
	img->wgpa[img->nwrites] = gpa;
	img->wval[img->nwrites] = new_val;
	img->nwrites++;
	return 0;
}

static const struct vmmu_gw_mem_ops img_ops = {
	.read_pte = img_read,
	.cmpxchg_pte = img_cmpxchg,
};

static struct image *img_new(void)
{
	struct image *img = calloc(1, sizeof(*img));

	assert_non_null(img);
	img->refuse_gpa = ~0ULL;
	img->race_gpa = ~0ULL;
	return img;
}

static void img_undo(struct image *img)
{
	for (int i = 0; i < img->nbuilt; i++)
		img_put(img, img->built[i], 0, 8);
	img->nbuilt = 0;
	img->nwrites = 0;
}

/*
 * Page-table builder.  A "shape" says how a mode indexes addresses; the
 * builder puts one entry per level, top level table at TABLE_PAGE(top),
 * each pointing at the next table, the last entry supplied whole.
 */
struct shape {
	const char *name;
	int top;	      /* root level */
	unsigned int esize;   /* entry size */
	int shift[6];	      /* address bit of each level's index */
	unsigned int nidx[6]; /* entries per table */
	uint64_t root;	      /* CR3 / EPTP value for the walk */
	uint64_t root_table;  /* where the top table sits */
};

#define TABLE_PAGE(level) (0x1000ULL * (uint64_t)(6 - (level)))

static const struct shape shape_32 = {
	"32-bit", 2, 4, { 0, 12, 22 }, { 0, 1024, 1024 }, TABLE_PAGE(2), TABLE_PAGE(2)
};
static const struct shape shape_pae = {
	"PAE", 3, 8, { 0, 12, 21, 30 }, { 0, 512, 512, 4 }, TABLE_PAGE(3) + 0x60,
	TABLE_PAGE(3) + 0x60
};
static const struct shape shape_lm4 = {
	"4-level", 4, 8, { 0, 12, 21, 30, 39 }, { 0, 512, 512, 512, 512 },
	TABLE_PAGE(4) | 0x8000000000000abcULL, TABLE_PAGE(4)
};
static const struct shape shape_lm5 = {
	"5-level", 5, 8, { 0, 12, 21, 30, 39, 48 }, { 0, 512, 512, 512, 512, 512 },
	TABLE_PAGE(5) | 0x123, TABLE_PAGE(5)
};

static uint64_t entry_gpa(const struct shape *sh, uint64_t table, int level, uint64_t va)
{
	return table + ((va >> sh->shift[level]) % sh->nidx[level]) * sh->esize;
}

/*
 * Build the chain for va: ent[level] holds the non-address bits of each
 * level from top down to leaf; ent[leaf] is complete (address included).
 */
static void build(struct image *img, const struct shape *sh, uint64_t va, int leaf,
		  const uint64_t *ent)
{
	uint64_t table = sh->root_table;

	for (int level = sh->top; level >= leaf; level--) {
		uint64_t gpa = entry_gpa(sh, table, level, va);
		uint64_t e = ent[level];

		if (level != leaf)
			e |= TABLE_PAGE(level - 1);
		img_put(img, gpa, e, sh->esize);
		img->built[img->nbuilt++] = gpa;
		table = TABLE_PAGE(level - 1);
	}
}

/*
 * Run walker and reference on the same image and compare everything.
 * Returns false (after printing the case) on a mismatch.
 */
static unsigned long cases_run;

static bool check_case(struct image *img, const struct vmmu_gw_role *role,
		       const struct ref_cpu *cpu, uint64_t root, uint64_t va, uint32_t flags,
		       const char *what)
{
	struct ref_mem mem = { img->buf, IMG_SIZE };
	struct vmmu_gw_result res;
	struct ref_out ref;
	int r;
	bool ok;

	if (cpu->ept)
		ref_ept_walk(cpu, &mem, root, va, flags, &ref);
	else
		ref_x86_walk(cpu, &mem, root, va, flags, &ref);
	img->nwrites = 0;
	r = vmmu_gw_walk(role, &img_ops, img, root, va, flags, &res);
	cases_run++;

	ok = r == ref.status;
	if (ok && (r == VMMU_GW_OK))
		ok = res.gpa == ref.gpa && res.level == ref.level && res.access == ref.access;
	if (ok && (r == VMMU_GW_PAGE_FAULT || r == VMMU_GW_EPT_VIOLATION))
		ok = res.error_code == ref.code && res.level == ref.level;
	if (ok && (r == VMMU_GW_TABLE_FAULT || r == VMMU_GW_EPT_MISCONFIG))
		ok = res.fault_gpa == ref.fault_gpa && res.level == ref.level;
	/* A/D: exactly the writes the processor makes, nothing on failure */
	if (ok)
		ok = img->nwrites == ref.nwrites;
	for (int i = 0; ok && i < ref.nwrites; i++)
		ok = img->wgpa[i] == ref.wgpa[i] && img->wval[i] == ref.wval[i];
	if (!ok) {
		print_message("MISMATCH %s: root %#llx va %#llx flags %#x cr0 %#llx cr4 %#llx "
			      "efer %#llx pkru %#x maxphy %u\n",
			      what, (unsigned long long)root, (unsigned long long)va, flags,
			      (unsigned long long)cpu->cr0, (unsigned long long)cpu->cr4,
			      (unsigned long long)cpu->efer, cpu->pkru, cpu->maxphyaddr);
		print_message("  walker: ret %d gpa %#llx code %#x level %d acc %#x fgpa %#llx "
			      "writes %d\n",
			      r, (unsigned long long)res.gpa, res.error_code, res.level, res.access,
			      (unsigned long long)res.fault_gpa, img->nwrites);
		print_message("  ref:    ret %d gpa %#llx code %#x level %d acc %#x fgpa %#llx "
			      "writes %d\n",
			      ref.status, (unsigned long long)ref.gpa, ref.code, ref.level,
			      ref.access, (unsigned long long)ref.fault_gpa, ref.nwrites);
		for (int l = 5; l >= 1; l--)
			if (res.pte_gpa[l])
				print_message("  L%d @%#llx = %#llx\n", l,
					      (unsigned long long)res.pte_gpa[l],
					      (unsigned long long)res.pte[l]);
	}
	return ok;
}

/* Deterministic pseudo-random bits so cases vary A/D and ignored bits. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* The 16 valid access-flag combinations. */
static int access_list(uint32_t *out)
{
	int n = 0;

	for (uint32_t f = 0; f < 1024; f++) {
		if (f & ~(VMMU_GW_ACCESS_WRITE | VMMU_GW_ACCESS_USER | VMMU_GW_ACCESS_FETCH |
			  VMMU_GW_ACCESS_IMPLICIT | VMMU_GW_ACCESS_AC))
			continue;
		if ((f & VMMU_GW_ACCESS_WRITE) && (f & VMMU_GW_ACCESS_FETCH))
			continue;
		if ((f & VMMU_GW_ACCESS_IMPLICIT) &&
		    (f & (VMMU_GW_ACCESS_USER | VMMU_GW_ACCESS_FETCH)))
			continue;
		out[n++] = f;
	}
	return n;
}

/*
 * x86 modes.
 */
struct x86_mode {
	const struct shape *sh;
	uint64_t cr4, efer;
	uint64_t va;
	bool pse;
};

static const struct x86_mode mode_32 = { &shape_32, 0, 0, 0x12f45678ULL, false };
static const struct x86_mode mode_32pse = { &shape_32, VMMU_GW_CR4_PSE, 0, 0xd2f45678ULL, true };
static const struct x86_mode mode_pae = { &shape_pae, VMMU_GW_CR4_PAE, 0, 0x9a5b6789ULL, true };
static const struct x86_mode mode_lm4 = { &shape_lm4, VMMU_GW_CR4_PAE,
					  VMMU_GW_EFER_LME | VMMU_GW_EFER_LMA,
					  0xffffd1a3c5f01678ULL, true };
static const struct x86_mode mode_lm5 = { &shape_lm5, VMMU_GW_CR4_PAE | VMMU_GW_CR4_LA57,
					  VMMU_GW_EFER_LME | VMMU_GW_EFER_LMA,
					  0xff5ad1a3c5f01678ULL, true };

static bool is_long(const struct x86_mode *md)
{
	return md->efer & VMMU_GW_EFER_LMA;
}

static int max_leaf(const struct x86_mode *md)
{
	if (md->sh->esize == 4)
		return md->pse ? 2 : 1;
	return is_long(md) ? 3 : 2;
}

/* A leaf address for a page at level, with high bits below maxphy. */
static uint64_t leaf_addr(const struct x86_mode *md, int leaf, uint64_t salt, unsigned int maxphy)
{
	uint64_t a;

	if (md->sh->esize == 4) {
		if (leaf == 1)
			return (salt << 12) & 0xfffff000ULL;
		/* 4 MiB page: bits 31:22 plus PSE-36 bits at 20:13 */
		a = (salt << 22) & 0xffc00000ULL;
		return a | (((salt >> 10) & ((1ULL << ((maxphy < 40 ? maxphy : 40) - 32)) - 1)) << 13);
	}
	a = (salt << 12) & ((1ULL << maxphy) - 1);
	a &= ~((1ULL << (12 + 9 * (leaf - 1))) - 1);
	if (leaf > 1)
		a |= (salt & 1) << 12; /* PAT bit of a large page */
	return a;
}

static void setup_x86(struct vmmu_gw_role *role, struct ref_cpu *cpu, const struct x86_mode *md,
		      uint64_t cr0x, uint64_t cr4x, uint64_t eferx, uint32_t pkru,
		      unsigned int maxphy, bool no_gb)
{
	struct vmmu_gw_regs regs = {
		.cr0 = VMMU_GW_CR0_PE | VMMU_GW_CR0_PG | cr0x,
		.cr4 = md->cr4 | cr4x,
		.efer = md->efer | eferx,
		.pkru = pkru,
		.maxphyaddr = (uint8_t)maxphy,
		.no_gbpages = no_gb,
	};

	assert_int_equal(vmmu_gw_role_init(role, &regs), 0);
	memset(cpu, 0, sizeof(*cpu));
	cpu->cr0 = regs.cr0;
	cpu->cr4 = regs.cr4;
	cpu->efer = regs.efer;
	cpu->pkru = pkru;
	cpu->maxphyaddr = maxphy;
	cpu->no_gbpages = no_gb;
}

/*
 * Permission sweep: leaf U/W/NX, one intermediate level's U/W/NX, every
 * access, CR0.WP, CR4.SMEP, CR4.SMAP, EFER.NXE, and in long mode CR4.PKE
 * with AD/WD of the leaf's key.
 */
static unsigned long sweep_x86_perm(const struct x86_mode *md)
{
	const struct shape *sh = md->sh;
	struct image *img = img_new();
	uint32_t acc[32];
	int nacc = access_list(acc);
	unsigned long fails = 0, start = cases_run;
	uint64_t n = 0;
	const uint64_t p = 1, w = 2, u = 4, a = 0x20, d = 0x40, ps = 0x80, nx = 1ULL << 63;

	for (int leaf = 1; leaf <= max_leaf(md); leaf++) {
		/*
		 * intermediate level: one of the table levels that has rights,
		 * or none (mid 0: leaf bits only)
		 */
		for (int mid = sh->top > leaf ? sh->top : 0; mid > leaf || mid == 0; mid = mid == leaf + 1 ? 0 : mid - 1) {
			if (sh->esize == 8 && !is_long(md) && mid == 3)
				continue; /* PAE PDPTE: no U/W/NX */
			for (unsigned int bits = 0; bits < (mid ? 64U : 8U); bits++) {
				bool lu = bits & 1, lw = bits & 2, lnx = bits & 4;
				bool mu = bits & 8, mw = bits & 16, mnx = bits & 32;

				if (sh->esize == 4 && (lnx || mnx))
					continue; /* no NX bit in 4-byte entries */
				for (unsigned int ctl = 0; ctl < 16; ctl++) {
					uint64_t cr0x = (ctl & 1) ? VMMU_GW_CR0_WP : 0;
					uint64_t cr4x = ((ctl & 2) ? VMMU_GW_CR4_SMEP : 0) |
							((ctl & 4) ? VMMU_GW_CR4_SMAP : 0);
					uint64_t eferx = (ctl & 8) ? VMMU_GW_EFER_NXE : 0;
					int npk = is_long(md) ? 5 : 1;

					for (int pk = 0; pk < npk; pk++) {
						struct vmmu_gw_role role;
						struct ref_cpu cpu;
						uint64_t ent[6] = { 0 };
						uint64_t r = mix(++n);
						unsigned int key = (unsigned int)(r >> 8) & 15;
						uint32_t pkru = (uint32_t)(r >> 32);

						if (pk) {
							cr4x |= VMMU_GW_CR4_PKE;
							pkru &= ~(3U << (2 * key));
							pkru |= (uint32_t)(pk - 1) << (2 * key);
						}
						setup_x86(&role, &cpu, md, cr0x, cr4x, eferx, pkru,
							  46, false);
						for (int l = sh->top; l > leaf; l--) {
							ent[l] = p | w | u | ((r >> (l + 2)) & 1 ? a : 0);
							if (sh->esize == 8 && !is_long(md) && l == 3)
								ent[l] = p;
						}
						if (mid) {
							ent[mid] &= ~(w | u);
							ent[mid] |= (mu ? u : 0) | (mw ? w : 0) |
								    (mnx ? nx : 0);
						}
						ent[leaf] = p | (lu ? u : 0) | (lw ? w : 0) |
							    (lnx ? nx : 0) | ((r & 1) ? a : 0) |
							    ((r & 2) ? d : 0) | (leaf > 1 ? ps : 0) |
							    leaf_addr(md, leaf, r >> 20, 46);
						if (is_long(md))
							ent[leaf] |= (uint64_t)key << 59;
						build(img, sh, md->va, leaf, ent);
						for (int i = 0; i < nacc; i++) {
							/* restore A/D the previous access set */
							img_undo(img);
							build(img, sh, md->va, leaf, ent);
							if (!check_case(img, &role, &cpu, sh->root,
									md->va, acc[i], sh->name))
								fails++;
						}
						img_undo(img);
					}
				}
			}
		}
	}
	free(img);
	print_message("%-8s permission sweep: %lu cases\n", sh->name, cases_run - start);
	return fails;
}

/*
 * Reserved-bit sweep: on each level of each chain shape, flip each bit of
 * an otherwise valid entry (bit 0 makes it not present, bit 7 changes its
 * meaning) for several MAXPHYADDR values, NXE on/off and 1 GiB pages on/off.
 */
static unsigned long sweep_x86_rsvd(const struct x86_mode *md)
{
	static const unsigned int maxphys[] = { 32, 36, 40, 46, 52 };
	static const uint32_t accs[] = {
		0,
		VMMU_GW_ACCESS_WRITE | VMMU_GW_ACCESS_USER,
		VMMU_GW_ACCESS_FETCH,
		VMMU_GW_ACCESS_FETCH | VMMU_GW_ACCESS_USER,
	};
	const struct shape *sh = md->sh;
	struct image *img = img_new();
	unsigned long fails = 0, start = cases_run;
	uint64_t n = 0;

	for (unsigned int mi = 0; mi < 5; mi++) {
		unsigned int maxphy = maxphys[mi];

		for (unsigned int ctl = 0; ctl < 4; ctl++) {
			struct vmmu_gw_role role;
			struct ref_cpu cpu;
			uint64_t eferx = (ctl & 1) ? VMMU_GW_EFER_NXE : 0;
			bool no_gb = ctl & 2;

			if (no_gb && !is_long(md))
				continue;
			setup_x86(&role, &cpu, md, VMMU_GW_CR0_WP, VMMU_GW_CR4_SMEP, eferx, 0,
				  maxphy, no_gb);
			for (int leaf = 1; leaf <= max_leaf(md); leaf++) {
				for (int target = sh->top; target >= leaf; target--) {
					for (int bit = 0; bit < (int)sh->esize * 8; bit++) {
						uint64_t ent[6] = { 0 };
						uint64_t r = mix(++n);

						for (int l = sh->top; l > leaf; l--)
							ent[l] = 0x27; /* P W U A */
						if (sh->esize == 8 && !is_long(md))
							ent[3] = 1;
						ent[leaf] = 0x67 | (leaf > 1 ? 0x80 : 0) |
							    leaf_addr(md, leaf, r >> 20, maxphy);
						ent[target] ^= 1ULL << bit;
						for (unsigned int i = 0; i < 4; i++) {
							build(img, sh, md->va, leaf, ent);
							if (!check_case(img, &role, &cpu, sh->root,
									md->va, accs[i], sh->name))
								fails++;
							img_undo(img);
						}
					}
				}
			}
		}
	}
	free(img);
	print_message("%-8s reserved sweep:   %lu cases\n", sh->name, cases_run - start);
	return fails;
}

static void run_x86(const struct x86_mode *md)
{
	unsigned long fails = sweep_x86_perm(md) + sweep_x86_rsvd(md);

	if (fails)
		fail_msg("%s: %lu mismatches", md->sh->name, fails);
}

static void test_sweep_32bit(void **state)
{
	(void)state;
	run_x86(&mode_32);
	run_x86(&mode_32pse);
}

static void test_sweep_pae(void **state)
{
	(void)state;
	run_x86(&mode_pae);
}

static void test_sweep_long4(void **state)
{
	(void)state;
	run_x86(&mode_lm4);
}

static void test_sweep_long5(void **state)
{
	(void)state;
	run_x86(&mode_lm5);
}

/* Canonical check: sign bits at every position, in both long modes. */
static void test_sweep_canonical(void **state)
{
	const struct x86_mode *modes[] = { &mode_lm4, &mode_lm5 };
	struct image *img = img_new();
	unsigned long fails = 0;

	(void)state;
	for (int mi = 0; mi < 2; mi++) {
		const struct x86_mode *md = modes[mi];
		struct vmmu_gw_role role;
		struct ref_cpu cpu;

		setup_x86(&role, &cpu, md, 0, 0, 0, 0, 46, false);
		for (int bit = 0; bit < 64; bit++) {
			uint64_t vas[3] = { 1ULL << bit, ~0ULL << bit, (~0ULL << bit) ^ 0x1000 };

			for (int i = 0; i < 3; i++) {
				uint64_t ent[6] = { 0 };

				for (int l = md->sh->top; l >= 1; l--)
					ent[l] = 0x27;
				ent[1] |= 0x3000;
				build(img, md->sh, vas[i], 1, ent);
				if (!check_case(img, &role, &cpu, md->sh->root, vas[i], 0, "canonical"))
					fails++;
				img_undo(img);
			}
		}
	}
	free(img);
	assert_int_equal(fails, 0);
}

/*
 * EPT sweeps.
 */
static const struct shape shape_ept4 = {
	"EPT4", 4, 8, { 0, 12, 21, 30, 39 }, { 0, 512, 512, 512, 512 },
	TABLE_PAGE(4) | (3 << 3) | 6, TABLE_PAGE(4)
};
static const struct shape shape_ept5 = {
	"EPT5", 5, 8, { 0, 12, 21, 30, 39, 48 }, { 0, 512, 512, 512, 512, 512 },
	TABLE_PAGE(5) | (4 << 3) | 6, TABLE_PAGE(5)
};

static void setup_ept(struct vmmu_gw_role *role, struct ref_cpu *cpu, uint64_t eptp,
		      bool exec_only, unsigned int maxphy)
{
	assert_int_equal(vmmu_gw_role_init_ept(role, eptp, true, exec_only, maxphy), 0);
	memset(cpu, 0, sizeof(*cpu));
	cpu->ept = true;
	cpu->exec_only_ok = exec_only;
	cpu->maxphyaddr = maxphy;
}

static unsigned long sweep_ept(const struct shape *sh, uint64_t gpa_in)
{
	static const uint32_t accs[] = { 0, VMMU_GW_ACCESS_WRITE, VMMU_GW_ACCESS_FETCH };
	struct image *img = img_new();
	unsigned long fails = 0, start = cases_run;
	uint64_t n = 0;

	/* permissions: leaf RWX, one intermediate RWX, memory type, A/D, exec-only */
	for (unsigned int cfg = 0; cfg < 4; cfg++) {
		bool ad = cfg & 1, xo = cfg & 2;
		uint64_t eptp = sh->root | (ad ? 1ULL << 6 : 0);
		struct vmmu_gw_role role;
		struct ref_cpu cpu;

		setup_ept(&role, &cpu, eptp, xo, 46);
		for (int leaf = 1; leaf <= 3; leaf++) {
			for (int mid = sh->top; mid > leaf; mid--) {
				for (unsigned int bits = 0; bits < 64 * 16; bits++) {
					uint64_t ent[6] = { 0 };
					uint64_t r = mix(++n);
					unsigned int mt = (bits >> 6) & 7;

					for (int l = sh->top; l > leaf; l--)
						ent[l] = 7 | ((r >> l) & 1 ? 0x100 : 0);
					ent[mid] = (ent[mid] & ~7ULL) | ((bits >> 3) & 7);
					ent[leaf] = (bits & 7) | ((uint64_t)mt << 3) |
						    ((bits & 512) ? 0x40 : 0) | (leaf > 1 ? 0x80 : 0) |
						    (r & 0x300) | (r & (1ULL << 63)) |
						    (((r >> 20) << 12) & ((1ULL << 46) - 1) &
						     ~((1ULL << (12 + 9 * (leaf - 1))) - 1));
					for (int i = 0; i < 3; i++) {
						build(img, sh, gpa_in, leaf, ent);
						if (!check_case(img, &role, &cpu, eptp, gpa_in, accs[i],
								sh->name))
							fails++;
						img_undo(img);
					}
				}
			}
		}
	}

	/* reserved bits: flip every bit of every level */
	for (unsigned int cfg = 0; cfg < 4 * 4; cfg++) {
		static const unsigned int maxphys[] = { 36, 40, 46, 52 };
		bool ad = cfg & 1, xo = cfg & 2;
		unsigned int maxphy = maxphys[cfg >> 2];
		uint64_t eptp = sh->root | (ad ? 1ULL << 6 : 0);
		struct vmmu_gw_role role;
		struct ref_cpu cpu;

		setup_ept(&role, &cpu, eptp, xo, maxphy);
		for (int leaf = 1; leaf <= 3; leaf++) {
			for (int target = sh->top; target >= leaf; target--) {
				for (int bit = 0; bit < 64; bit++) {
					uint64_t ent[6] = { 0 };

					for (int l = sh->top; l > leaf; l--)
						ent[l] = 7;
					ent[leaf] = 7 | (6 << 3) | (leaf > 1 ? 0x80 : 0) |
						    (leaf == 1 ? 0x9000 : 0);
					ent[target] ^= 1ULL << bit;
					for (int i = 0; i < 3; i++) {
						build(img, sh, gpa_in, leaf, ent);
						if (!check_case(img, &role, &cpu, eptp, gpa_in, accs[i],
								sh->name))
							fails++;
						img_undo(img);
					}
				}
			}
		}
	}
	free(img);
	print_message("%-8s EPT sweeps:       %lu cases\n", sh->name, cases_run - start);
	return fails;
}

static void test_sweep_ept(void **state)
{
	(void)state;
	assert_int_equal(sweep_ept(&shape_ept4, 0x00000005c5f01678ULL), 0);
	assert_int_equal(sweep_ept(&shape_ept5, 0x00000005c5f01678ULL), 0);
}

/*
 * Literal cases.
 */
static int walk_simple(const struct vmmu_gw_role *role, struct image *img, uint64_t root,
		       uint64_t va, uint32_t flags, struct vmmu_gw_result *res)
{
	img->nwrites = 0;
	return vmmu_gw_walk(role, &img_ops, img, root, va, flags, res);
}

static void init_regs(struct vmmu_gw_role *role, uint64_t cr0, uint64_t cr4, uint64_t efer,
		      uint32_t pkru, unsigned int maxphy)
{
	struct vmmu_gw_regs regs = { .cr0 = cr0, .cr4 = cr4, .efer = efer, .pkru = pkru,
				     .maxphyaddr = (uint8_t)maxphy };

	assert_int_equal(vmmu_gw_role_init(role, &regs), 0);
}

#define PG_ON (VMMU_GW_CR0_PE | VMMU_GW_CR0_PG)
#define LM (VMMU_GW_EFER_LME | VMMU_GW_EFER_LMA)

/* PSE-36: a 4 MiB PDE carries physical address bits 39:32 in bits 20:13. */
static void test_pse36(void **state)
{
	struct image *img = img_new();
	struct vmmu_gw_role role;
	struct vmmu_gw_result res;

	(void)state;
	/* PDE index 0x4b of va 0x12f45678, at CR3 0x2000 */
	img_put(img, 0x2000 + 0x4b * 4, 0x12c00000 | (0x5aU << 13) | 0x83, 4);
	init_regs(&role, PG_ON, VMMU_GW_CR4_PSE, 0, 0, 40);
	assert_int_equal(walk_simple(&role, img, 0x2000, 0x12f45678, 0, &res), VMMU_GW_OK);
	assert_int_equal(res.gpa, 0x5a12f45678ULL);
	assert_int_equal(res.level, 2);
	/* A set on the PDE, no D for a read */
	assert_int_equal(img_get(img, 0x2000 + 0x4b * 4, 4), 0x12c00000 | (0x5aU << 13) | 0xa3);

	/* MAXPHYADDR 36: bits 17..21 are reserved, and 0x5a << 13 sets bit 17 */
	init_regs(&role, PG_ON, VMMU_GW_CR4_PSE, 0, 0, 36);
	assert_int_equal(walk_simple(&role, img, 0x2000, 0x12f45678, VMMU_GW_ACCESS_WRITE, &res),
			 VMMU_GW_PAGE_FAULT);
	assert_int_equal(res.error_code, 0xb); /* P | W | RSVD */

	/* Without CR4.PSE the PS bit is ignored: the PDE points to a table */
	init_regs(&role, PG_ON, 0, 0, 0, 40);
	assert_int_equal(walk_simple(&role, img, 0x2000, 0x12f45678, 0, &res),
			 VMMU_GW_TABLE_FAULT);
	assert_int_equal(res.fault_gpa, 0x12cb4000 + 0x345 * 4); /* bits 20:13 now address */
	free(img);
}

/* A 1 GiB page keeps 30 bits of offset; its bit 12 is PAT, not address. */
static void test_1g_page(void **state)
{
	struct image *img = img_new();
	struct vmmu_gw_role role;
	struct vmmu_gw_result res;
	uint64_t va = 0x00007ff8babcdef8ULL; /* PML4 0xff, PDPT 0x1e2 */

	(void)state;
	img_put(img, 0x1000 + 0xff * 8, 0x2000 | 0x7, 8);
	img_put(img, 0x2000 + 0x1e2 * 8, 0x140000000ULL | 0x1000 | 0x80 | 0x7, 8);
	init_regs(&role, PG_ON | VMMU_GW_CR0_WP, VMMU_GW_CR4_PAE, LM, 0, 46);
	assert_int_equal(walk_simple(&role, img, 0x1000, va, VMMU_GW_ACCESS_WRITE |
					 VMMU_GW_ACCESS_USER, &res), VMMU_GW_OK);
	assert_int_equal(res.gpa, 0x17abcdef8ULL);
	assert_int_equal(res.level, 3);
	assert_int_equal(res.access, 0xf);
	/* write: A on both levels, D on the leaf */
	assert_int_equal(img_get(img, 0x1000 + 0xff * 8, 8), 0x2027);
	assert_int_equal(img_get(img, 0x2000 + 0x1e2 * 8, 8), 0x1400010e7ULL);
	assert_int_equal(img->nwrites, 2);

	/* bit 13 of a 1 GiB PDPTE is reserved; and without 1 GiB pages PS is */
	img_put(img, 0x2000 + 0x1e2 * 8, 0x140002000ULL | 0x80 | 0x7, 8);
	assert_int_equal(walk_simple(&role, img, 0x1000, va, 0, &res), VMMU_GW_PAGE_FAULT);
	assert_int_equal(res.error_code, 0x9);
	assert_int_equal(res.level, 3);
	free(img);
}

static void test_canonical(void **state)
{
	struct image *img = img_new();
	struct vmmu_gw_role role;
	struct vmmu_gw_result res;

	(void)state;
	init_regs(&role, PG_ON, VMMU_GW_CR4_PAE, LM, 0, 46);
	assert_int_equal(walk_simple(&role, img, 0x1000, 0x0000800000000000ULL, 0, &res),
			 VMMU_GW_NONCANONICAL);
	assert_int_equal(walk_simple(&role, img, 0x1000, 0xffff7fffffffffffULL, 0, &res),
			 VMMU_GW_NONCANONICAL);
	/* canonical, not present */
	assert_int_equal(walk_simple(&role, img, 0x1000, 0xffff800000000000ULL, 0, &res),
			 VMMU_GW_PAGE_FAULT);
	assert_int_equal(res.error_code, 0);
	init_regs(&role, PG_ON, VMMU_GW_CR4_PAE | VMMU_GW_CR4_LA57, LM, 0, 46);
	assert_int_equal(walk_simple(&role, img, 0x1000, 0x0000800000000000ULL, 0, &res),
			 VMMU_GW_PAGE_FAULT);
	assert_int_equal(walk_simple(&role, img, 0x1000, 0xfe00000000000000ULL, 0, &res),
			 VMMU_GW_NONCANONICAL);
	assert_int_equal(walk_simple(&role, img, 0x1000, 0xff00000000000000ULL, 0, &res),
			 VMMU_GW_PAGE_FAULT);
	free(img);
}

static void test_ept_literal(void **state)
{
	struct image *img = img_new();
	struct vmmu_gw_role role;
	struct vmmu_gw_result res;
	const uint64_t eptp = 0x1000 | (3 << 3) | 6 | (1 << 6);
	const uint64_t gpa = 0x0000000040201abcULL; /* idx 0, 1, 1, 1 */

	(void)state;
	assert_int_equal(vmmu_gw_role_init_ept(&role, eptp, true, false, 46), 0);
	img_put(img, 0x1000, 0x2000 | 7, 8);
	img_put(img, 0x2008, 0x3000 | 7, 8);
	img_put(img, 0x3008, 0x4000 | 7, 8);
	img_put(img, 0x4008, 0xabcd000 | (6 << 3) | 5, 8); /* R-X, WB */

	assert_int_equal(walk_simple(&role, img, eptp, gpa, 0, &res), VMMU_GW_OK);
	assert_int_equal(res.gpa, 0xabcdabcULL);
	assert_int_equal(res.ept_memtype, 6);
	assert_int_equal(img_get(img, 0x4008, 8), 0xabcd000 | 0x100 | 0x30 | 5);

	/* write to R-X: violation, qualification W | R | X */
	assert_int_equal(walk_simple(&role, img, eptp, gpa, VMMU_GW_ACCESS_WRITE, &res),
			 VMMU_GW_EPT_VIOLATION);
	assert_int_equal(res.error_code, 0x2 | 0x8 | 0x20);
	assert_int_equal(img->nwrites, 0);

	/* write-only PDPTE: misconfiguration at that entry */
	img_put(img, 0x2008, 0x3000 | 2, 8);
	assert_int_equal(walk_simple(&role, img, eptp, gpa, 0, &res), VMMU_GW_EPT_MISCONFIG);
	assert_int_equal(res.fault_gpa, 0x2008);
	assert_int_equal(res.level, 3);

	/* memory type 2 in a leaf */
	img_put(img, 0x2008, 0x3000 | 7, 8);
	img_put(img, 0x4008, 0xabcd000 | (2 << 3) | 7, 8);
	assert_int_equal(walk_simple(&role, img, eptp, gpa, 0, &res), VMMU_GW_EPT_MISCONFIG);
	assert_int_equal(res.fault_gpa, 0x4008);

	/* execute-only leaf: misconfig without support, fetch-only with it */
	img_put(img, 0x4008, 0xabcd000 | (6 << 3) | 4, 8);
	assert_int_equal(walk_simple(&role, img, eptp, gpa, VMMU_GW_ACCESS_FETCH, &res),
			 VMMU_GW_EPT_MISCONFIG);
	assert_int_equal(vmmu_gw_role_init_ept(&role, eptp, true, true, 46), 0);
	assert_int_equal(walk_simple(&role, img, eptp, gpa, VMMU_GW_ACCESS_FETCH, &res),
			 VMMU_GW_OK);
	assert_int_equal(walk_simple(&role, img, eptp, gpa, 0, &res), VMMU_GW_EPT_VIOLATION);
	assert_int_equal(res.error_code, 0x1 | 0x20);

	/* not present PDE: violation with no rights */
	img_put(img, 0x3008, 0x4000, 8);
	assert_int_equal(walk_simple(&role, img, eptp, gpa, VMMU_GW_ACCESS_FETCH, &res),
			 VMMU_GW_EPT_VIOLATION);
	assert_int_equal(res.error_code, 0x4);
	assert_int_equal(res.level, 2);

	/* address width: beyond 48 bits under a 4-level EPT, beyond MAXPHYADDR */
	assert_int_equal(vmmu_gw_role_init_ept(&role, eptp, true, true, 52), 0);
	assert_int_equal(walk_simple(&role, img, eptp, 1ULL << 48, VMMU_GW_ACCESS_WRITE, &res),
			 VMMU_GW_EPT_VIOLATION);
	assert_int_equal(res.error_code, 0x2);
	assert_int_equal(res.level, 4);
	assert_int_equal(vmmu_gw_role_init_ept(&role, eptp, true, true, 46), 0);
	assert_int_equal(walk_simple(&role, img, eptp, 1ULL << 46, 0, &res), -EINVAL);

	/* EPTP checks */
	assert_int_equal(vmmu_gw_role_init_ept(&role, 0x1000 | (3 << 3) | 5, true, true, 46),
			 -EINVAL);
	assert_int_equal(vmmu_gw_role_init_ept(&role, 0x1000 | (2 << 3) | 6, true, true, 46),
			 -EINVAL);
	assert_int_equal(vmmu_gw_role_init_ept(&role, eptp, false, true, 46), -EINVAL);
	free(img);
}

/* Literal permission cases: SMAP on implicit accesses, PK, WP. */
static void test_perm_literal(void **state)
{
	struct image *img = img_new();
	struct vmmu_gw_role role;
	struct vmmu_gw_result res;
	const uint64_t va = 0x1000; /* indexes 0, 0, 0, 1 */

	(void)state;
	img_put(img, 0x1000, 0x2007, 8);
	img_put(img, 0x2000, 0x3007, 8);
	img_put(img, 0x3000, 0x4007, 8);
	img_put(img, 0x4008, 0x9005 | (5ULL << 59), 8); /* user, read-only, key 5 */

	/* SMAP: an implicit access faults even with EFLAGS.AC=1 */
	init_regs(&role, PG_ON, VMMU_GW_CR4_PAE | VMMU_GW_CR4_SMAP, LM, 0, 46);
	assert_int_equal(walk_simple(&role, img, 0x1000, va,
				     VMMU_GW_ACCESS_IMPLICIT | VMMU_GW_ACCESS_AC, &res),
			 VMMU_GW_PAGE_FAULT);
	assert_int_equal(res.error_code, 0x1);
	assert_int_equal(walk_simple(&role, img, 0x1000, va, VMMU_GW_ACCESS_AC, &res),
			 VMMU_GW_OK);

	/* CR0.WP=0: the kernel writes a read-only page (and sets D) */
	assert_int_equal(walk_simple(&role, img, 0x1000, va,
				     VMMU_GW_ACCESS_WRITE | VMMU_GW_ACCESS_AC, &res),
			 VMMU_GW_OK);
	assert_int_equal(img_get(img, 0x4008, 8), 0x9065 | (5ULL << 59));

	/* PK: user write to key 5 with WD5 set -> P | W | U | PK */
	init_regs(&role, PG_ON | VMMU_GW_CR0_WP, VMMU_GW_CR4_PAE | VMMU_GW_CR4_PKE, LM,
		  2U << 10, 46);
	assert_int_equal(walk_simple(&role, img, 0x1000, va,
				     VMMU_GW_ACCESS_WRITE | VMMU_GW_ACCESS_USER, &res),
			 VMMU_GW_PAGE_FAULT);
	assert_int_equal(res.error_code, 0x27);
	/* fetches ignore PKRU */
	assert_int_equal(walk_simple(&role, img, 0x1000, va,
				     VMMU_GW_ACCESS_FETCH | VMMU_GW_ACCESS_USER, &res),
			 VMMU_GW_OK);
	assert_int_equal(res.pkey, 5);

	/* NX with NXE: a fetch reports I/D */
	img_put(img, 0x4008, 0x9065 | (1ULL << 63), 8);
	init_regs(&role, PG_ON, VMMU_GW_CR4_PAE, LM | VMMU_GW_EFER_NXE, 0, 46);
	assert_int_equal(walk_simple(&role, img, 0x1000, va, VMMU_GW_ACCESS_FETCH, &res),
			 VMMU_GW_PAGE_FAULT);
	assert_int_equal(res.error_code, 0x11);
	/* without NXE bit 63 is reserved, and I/D stays clear */
	init_regs(&role, PG_ON, VMMU_GW_CR4_PAE, LM, 0, 46);
	assert_int_equal(walk_simple(&role, img, 0x1000, va, VMMU_GW_ACCESS_FETCH, &res),
			 VMMU_GW_PAGE_FAULT);
	assert_int_equal(res.error_code, 0x9);
	free(img);
}

/* PAE: PDPTE read at walk time, its reserved bits give #PF RSVD. */
static void test_pae_pdpte(void **state)
{
	struct image *img = img_new();
	struct vmmu_gw_role role;
	struct vmmu_gw_result res;

	(void)state;
	init_regs(&role, PG_ON, VMMU_GW_CR4_PAE, 0, 0, 36);
	/* CR3 0x1020: PDPT at 0x1020, va 0xc0000000 uses PDPTE 3 */
	img_put(img, 0x1038, 0x2000 | 1 | 2, 8); /* bit 1 reserved */
	assert_int_equal(walk_simple(&role, img, 0x1020, 0xc0000000, 0, &res),
			 VMMU_GW_PAGE_FAULT);
	assert_int_equal(res.error_code, 0x9);
	img_put(img, 0x1038, 0x2001, 8);
	img_put(img, 0x2000, 0x3003, 8);
	img_put(img, 0x3000, 0x7003, 8);
	assert_int_equal(walk_simple(&role, img, 0x1020, 0xc0000123, VMMU_GW_ACCESS_WRITE, &res),
			 VMMU_GW_OK);
	assert_int_equal(res.gpa, 0x7123);
	/* no A bit in a PDPTE */
	assert_int_equal(img_get(img, 0x1038, 8), 0x2001);
	assert_int_equal(img_get(img, 0x2000, 8), 0x3023);
	assert_int_equal(img_get(img, 0x3000, 8), 0x7063);
	free(img);
}

/* A/D race: an entry changes between read and update -> walk again. */
static void test_ad_race(void **state)
{
	struct image *img = img_new();
	struct vmmu_gw_role role;
	struct vmmu_gw_result res;

	(void)state;
	init_regs(&role, PG_ON | VMMU_GW_CR0_WP, VMMU_GW_CR4_PAE, LM, 0, 46);
	img_put(img, 0x1000, 0x2007, 8);
	img_put(img, 0x2000, 0x3007, 8);
	img_put(img, 0x3000, 0x4007, 8);
	img_put(img, 0x4000, 0x9007, 8);

	/* another CPU flips an ignored bit of the PDE: one restart, success */
	img->race_gpa = 0x3000;
	img->race_xor = 1ULL << 9;
	img->races_left = 1;
	assert_int_equal(walk_simple(&role, img, 0x1000, 0x123, VMMU_GW_ACCESS_WRITE, &res),
			 VMMU_GW_OK);
	assert_int_equal(res.restarts, 1);
	assert_int_equal(img_get(img, 0x3000, 8), 0x4227);
	assert_int_equal(img_get(img, 0x4000, 8), 0x9067);

	/* another CPU clears W of the leaf: the retried write faults */
	img_put(img, 0x4000, 0x9007, 8);
	img_put(img, 0x3000, 0x4007, 8);
	img->race_gpa = 0x4000;
	img->race_xor = 2;
	img->races_left = 1;
	assert_int_equal(walk_simple(&role, img, 0x1000, 0x123, VMMU_GW_ACCESS_WRITE, &res),
			 VMMU_GW_PAGE_FAULT);
	assert_int_equal(res.error_code, 0x3);
	assert_int_equal(img_get(img, 0x4000, 8), 0x9005);

	/* a CPU that keeps racing: give up with RETRY */
	img_put(img, 0x4000, 0x9007, 8);
	img->race_xor = 1ULL << 10;
	img->races_left = 1000;
	assert_int_equal(walk_simple(&role, img, 0x1000, 0x123, 0, &res), VMMU_GW_RETRY);
	free(img);
}

/* A table the caller cannot reach (e.g. nested EPT violation). */
static void test_table_fault(void **state)
{
	struct image *img = img_new();
	struct vmmu_gw_role role;
	struct vmmu_gw_result res;

	(void)state;
	init_regs(&role, PG_ON, VMMU_GW_CR4_PAE, LM, 0, 46);
	img_put(img, 0x1000, 0x2007, 8);
	img_put(img, 0x2000, 0x3007, 8);
	img_put(img, 0x3000, 0x4007, 8);
	img_put(img, 0x4000, 0x9007, 8);
	img->refuse_gpa = 0x3000;
	assert_int_equal(walk_simple(&role, img, 0x1000, 0x123, 0, &res), VMMU_GW_TABLE_FAULT);
	assert_int_equal(res.fault_gpa, 0x3000);
	assert_int_equal(res.level, 2);
	assert_false(res.fault_write);
	assert_int_equal(img->nwrites, 0);
	free(img);
}

static void test_role_init(void **state)
{
	struct vmmu_gw_role role;
	struct vmmu_gw_result res;
	struct vmmu_gw_regs regs = { .maxphyaddr = 46 };
	struct image *img = img_new();

	(void)state;
	/* nonpaging: identity, 32 bits */
	assert_int_equal(vmmu_gw_role_init(&role, &regs), 0);
	assert_int_equal(walk_simple(&role, img, 0, 0x1234567887654321ULL, 0, &res), VMMU_GW_OK);
	assert_int_equal(res.gpa, 0x87654321ULL);

	regs.cr0 = VMMU_GW_CR0_PG; /* PG without PE */
	assert_int_equal(vmmu_gw_role_init(&role, &regs), -EINVAL);
	regs.cr0 = PG_ON;
	regs.efer = LM; /* long mode without PAE */
	assert_int_equal(vmmu_gw_role_init(&role, &regs), -EINVAL);
	regs.cr4 = VMMU_GW_CR4_PAE;
	regs.efer = VMMU_GW_EFER_LMA; /* LMA without LME */
	assert_int_equal(vmmu_gw_role_init(&role, &regs), -EINVAL);
	regs.efer = LM;
	regs.maxphyaddr = 53;
	assert_int_equal(vmmu_gw_role_init(&role, &regs), -EINVAL);
	regs.maxphyaddr = 46;
	assert_int_equal(vmmu_gw_role_init(&role, &regs), 0);
	/* bad access combinations and an uninitialized role */
	assert_int_equal(walk_simple(&role, img, 0x1000, 0,
				     VMMU_GW_ACCESS_WRITE | VMMU_GW_ACCESS_FETCH, &res), -EINVAL);
	assert_int_equal(walk_simple(&role, img, 0x1000, 0,
				     VMMU_GW_ACCESS_IMPLICIT | VMMU_GW_ACCESS_USER, &res), -EINVAL);
	memset(&role, 0, sizeof(role));
	assert_int_equal(walk_simple(&role, img, 0x1000, 0, 0, &res), -EINVAL);
	free(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_role_init),
		cmocka_unit_test(test_pse36),
		cmocka_unit_test(test_1g_page),
		cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_ept_literal),
		cmocka_unit_test(test_perm_literal),
		cmocka_unit_test(test_pae_pdpte),
		cmocka_unit_test(test_ad_race),
		cmocka_unit_test(test_table_fault),
		cmocka_unit_test(test_sweep_canonical),
		cmocka_unit_test(test_sweep_32bit),
		cmocka_unit_test(test_sweep_pae),
		cmocka_unit_test(test_sweep_long4),
		cmocka_unit_test(test_sweep_long5),
		cmocka_unit_test(test_sweep_ept),
	};
	struct timespec t0, t1;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("guest walker: %lu compared cases in %.2f s\n", cases_run,
		      (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return rc;
}
