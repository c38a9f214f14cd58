// SPDX-License-Identifier: MIT
/*
 * ept12_walk.c - the nested page fault: walk L1's EPT12 for an L2
 * guest-physical address, and either report the EPT violation L1 must see
 * or install an EPT02 leaf composed of EPT12's rights and vmmu's own view of
 * L1 (KVM's FNAME(page_fault) and FNAME(fetch) for the EPT format, without
 * unsync).
 *
 * The walk runs under the vCPU's root lock (inside the MMU lock held for
 * read; in the global mode, for write).  An emulated write to EPT12 may
 * run meanwhile in another thread: it bumps ept12_wseq after its store, and
 * a fault that sees the sequence changed since before its walk retries
 * instead of installing (the writer zaps, under each root's lock, what the
 * roots listed in the page's track node derived from the old entry).  L1
 * writing a table directly, without an exit, is excluded once the table's
 * page is write-tracked and its TDP leaves are gone: a fault that meets a
 * table whose tracking is still "pending" stops and runs the tracking
 * barrier (nested_track_settle: a write-lock pass, then the gfn's TDP and
 * EPT02 leaves are zapped), and starts again.  The host lookups of the L1
 * page (fault-in, writability, mapping level) happen without the MMU
 * lock, and the MMU-notifier sequence taken before them is checked under
 * it.
 */
#include "nested_internal.h"

#include "../trace.h"

struct l1_mem {
	struct vmmu_vcpu *vcpu;
	unsigned as;
};

static uint64_t *l1_entry(struct l1_mem *m, uint64_t gpa, const struct vmmu_memslot **slotp)
{
	const struct vmmu_memslot *slot =
		vmmu_gfn_to_memslot(m->vcpu->vm, m->as, gpa >> VMMU_PAGE_SHIFT);

	if (!slot || slot->invalid)
		return NULL;
	*slotp = slot;
	return (uint64_t *)(uintptr_t)(memslot_gfn_to_hva(slot, gpa >> VMMU_PAGE_SHIFT) +
				       (gpa & (VMMU_PAGE_SIZE - 1)));
}

static int l1_read_pte(void *opaque, uint64_t gpa, uint64_t *val, unsigned size)
{
	const struct vmmu_memslot *slot;
	uint64_t *p = l1_entry(opaque, gpa, &slot);

	if (!p || size != 8)
		return 1;
	*val = __atomic_load_n(p, __ATOMIC_ACQUIRE);
	return 0;
}

/* EPT12 A/D bits: the processor's locked update, and the page is dirty. */
static int l1_cmpxchg_pte(void *opaque, uint64_t gpa, uint64_t old, uint64_t new_val, unsigned size)
{
	struct l1_mem *m = opaque;
	const struct vmmu_memslot *slot;
	uint64_t *p = l1_entry(m, gpa, &slot);

	if (!p || size != 8 || (slot->flags & VMMU_MEM_READONLY))
		return -1;
	if (!__atomic_compare_exchange_n(p, &old, new_val, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return 1;
	if (memslot_dirty_logged(slot))
		vmmu_mark_page_dirty(m->vcpu, slot, gpa >> VMMU_PAGE_SHIFT);
	return 0;
}

static const struct vmmu_gw_mem_ops l1_ops = {
	.read_pte = l1_read_pte,
	.cmpxchg_pte = l1_cmpxchg_pte,
};

/* What the host said about the L1 page, looked up without the MMU lock. */
struct l1_page {
	uint64_t gfn; /* UINT64_MAX: not looked up */
	const struct vmmu_memslot *slot;
	uint64_t hva;
	uint64_t mmu_seq;
	bool writable;
	int max_level;
};

enum {
	NF_DONE = 100, /* r holds the result */
	NF_PREPARE, /* look the L1 page up, then walk again */
	NF_WP, /* zap TDP leaves of wp_gfn, then walk again */
};

struct nested_fault {
	uint64_t l2_gpa;
	uint64_t exit_qual;
	bool write, exec;
	struct l1_page page;
	uint64_t wp_gfn, wp_epoch;
	uint64_t want_gfn; /* NF_PREPARE: the L1 gfn the walk reached */
	int r;
};

static int prepare_l1_page(struct vmmu_vcpu *vcpu, struct nested_fault *f, uint64_t gfn)
{
	struct vmmu_vm *vm = vcpu->vm;
	struct l1_page *pg = &f->page;
	/* Without a hostmem, guest memory is plain writable 4 KiB pages. */
	struct vmmu_host_page host = { .level = PG_LEVEL_4K, .writable = true };

	pg->gfn = UINT64_MAX;
	pg->slot = vmmu_gfn_to_memslot(vm, vcpu->as_id, gfn);
	if (!pg->slot)
		return VMMU_PF_EMULATE; /* L1 MMIO */
	if (pg->slot->invalid)
		return VMMU_PF_RETRY;
	if (f->write && (pg->slot->flags & VMMU_MEM_READONLY))
		return VMMU_PF_EMULATE;
	pg->mmu_seq = __atomic_load_n(&vm->mmu_invalidate_seq, __ATOMIC_ACQUIRE);
	pg->hva = memslot_gfn_to_hva(pg->slot, gfn);
	/* One host lookup: page in, writability, level (hostmem_internal.h). */
	if (vm->hostmem && vmmu_hostmem_lookup(vm->hostmem, pg->hva, &host))
		return -EFAULT;
	pg->writable = !(pg->slot->flags & VMMU_MEM_READONLY) && host.writable;
	if (f->write && !pg->writable)
		return VMMU_PF_EMULATE;
	pg->max_level = vmmu_max_mapping_level(vm, pg->slot, gfn, pg->hva);
	pg->gfn = gfn;
	return 0;
}

/* Has an MMU-notifier invalidation touched [start, end) of L1 since the
 * lookup?  Under the MMU lock (read or write). */
static bool l1_page_stale(struct vmmu_vm *vm, struct l1_page *pg, uint64_t start, uint64_t end)
{
	if (READ_ONCE(vm->mmu_invalidate_in_progress) &&
	    end > READ_ONCE(vm->mmu_invalidate_range_start) &&
	    start < READ_ONCE(vm->mmu_invalidate_range_end))
		return true;
	return __atomic_load_n(&vm->mmu_invalidate_seq, __ATOMIC_ACQUIRE) != pg->mmu_seq;
}

static void record_exit(struct vmmu_vcpu *vcpu, struct nested_fault *f, uint32_t reason,
			const struct vmmu_gw_result *res)
{
	struct vmmu_nested_vcpu *nv = vcpu->nested;

	nv->last_exit = (struct vmmu_nested_exit){
		.reason = reason,
		.l2_gpa = f->l2_gpa,
		.exit_qual = reason == VMMU_NESTED_EXIT_EPT_VIOLATION ?
				     (res->error_code & 0x3f) | (f->exit_qual & 0x180) :
				     0,
		.level = res->level,
	};
	nv->exit_valid = true;
	__atomic_fetch_add(&vcpu->vm->nested->exits, 1, __ATOMIC_RELAXED);
}

/* The EPT12 table gfn the entry at @level of the walk points to. */
static uint64_t ept12_table_gfn(const struct vmmu_gw_result *res, int level)
{
	return (res->pte[level] & SPTE_ADDR_MASK) >> VMMU_PAGE_SHIFT;
}

/*
 * Does the link @spte lead to the table (gfn, role) the walk wants?  Host
 * writes to EPT12 are not seen, so a link may be out of date: then it goes.
 */
static struct nsp *child_if_matches(struct vmmu_nested *n, uint64_t spte, uint64_t gfn,
				    union nested_role role)
{
	struct nsp *child = nsp_of(n, spte_to_child_pt(spte));

	return child->gfn == gfn && child->role.word == role.word ? child : NULL;
}

/*
 * The links one attempt made (nested_sp_link), top first: at most one per
 * level above the leaf.
 */
struct made_links {
	struct nsp *sp[SPTE_MAX_LEVEL];
	uint64_t *sptep[SPTE_MAX_LEVEL];
	int nr;
};

/*
 * Has an emulated EPT12 write run since the walk (ept12_wseq moved from
 * @wseq)?  Then every link this attempt made goes, deepest first (so each
 * entry zapped is still in a linked table), and true is returned: the
 * attempt must not install and must not leave anything derived from its
 * walk.
 *
 * Why all of them (review of issue 14, finding 1): a link made from an old
 * EPT12 entry is not harmless when it leads to a table that has leaves or
 * may get some.  Say L1 maps one EPT12 table h from two entries, g[i] and
 * e[j], and root A already shadows h with leaves via e[j], while only
 * root B shadows g.  The writer of g[i] = 0 reads g's root bits before this
 * attempt sets A's bit (nested_track_add of the new table of g), so it
 * zaps only B; this attempt links table(g) into A and table(g)[i] to the
 * existing T(h): A keeps the translation L1 removed.  A new, empty table
 * is no safer: a later fault through another EPT12 entry naming the same
 * page finds it by nested_sp_find and fills it.
 *
 * Why this is enough: the check is a seq_cst load sequenced after every
 * nested_track_add (seq_cst fetch-or of this root's bit) of this attempt;
 * the writer does seq_cst wseq++ then a seq_cst load of the bits.  If this
 * load does not see the writer's increment, the increment comes after it in
 * the single order, so the writer's bit load comes after every bit this
 * attempt set and sees this root's bit in the node of each EPT12 page the
 * attempt's links were derived from (tables that existed before the attempt
 * had their bit set by an earlier holder of this root's lock): the writer
 * then zaps those entries under this root's lock, after this attempt
 * unlocks, before it returns.  If it does see it, nothing of the attempt
 * stays.  Links kept by earlier attempts passed the same check.
 */
static bool wseq_moved_undo(struct nested_root *rt, struct vmmu_nested *n, uint64_t wseq,
			    struct made_links *ml)
{
	if (__atomic_load_n(&n->ept12_wseq, __ATOMIC_SEQ_CST) == wseq)
		return false;
	while (ml->nr > 0) {
		ml->nr--;
		nested_zap_spte(rt, ml->sp[ml->nr], ml->sptep[ml->nr]);
	}
	__atomic_fetch_add(&n->ept12_retries, 1, __ATOMIC_RELAXED);
	return true;
}

/*
 * One attempt under the root lock (nested_fault_lock).  Returns NF_DONE
 * with f->r, NF_PREPARE or NF_WP.
 */
static int fault_locked(struct vmmu_vcpu *vcpu, struct nested_fault *f)
{
	struct vmmu_vm *vm = vcpu->vm;
	struct vmmu_nested *n = vm->nested;
	struct vmmu_nested_vcpu *nv = vcpu->nested;
	struct nested_root *rt = nv->root;
	unsigned as = vcpu->as_id;
	struct l1_mem mem = { .vcpu = vcpu, .as = as };
	uint32_t access = f->write ? VMMU_GW_ACCESS_WRITE : f->exec ? VMMU_GW_ACCESS_FETCH : 0;
	uint64_t l2_gfn = f->l2_gpa >> VMMU_PAGE_SHIFT;
	struct vmmu_gw_result res;
	struct nsp *sp;
	struct made_links ml = { .nr = 0 };
	uint64_t l1_gfn, base, spte, wseq;
	int level, target, root_level;
	unsigned acc = 0;
	bool writable, protect;
	int r;

	/* Checked under the root's lock: a zap of the root after it was
	 * made obsolete runs under the same lock (interleaving 10). */
	if (!rt || READ_ONCE(rt->invalid)) {
		f->r = VMMU_PF_RETRY;
		return NF_DONE;
	}
	sp = rt->sp;
	root_level = (int)sp->role.level;
	if (nested_track_pending(n, as, sp->gfn, &f->wp_epoch)) {
		f->wp_gfn = sp->gfn;
		return NF_WP;
	}
	/* Emulated EPT12 writes from here on make the fault retry (3.2). */
	wseq = __atomic_load_n(&n->ept12_wseq, __ATOMIC_ACQUIRE);
	r = vmmu_gw_walk(&nv->walk_role, &l1_ops, &mem, nv->eptp, f->l2_gpa, access, &res);
	switch (r) {
	case VMMU_GW_OK:
		break;
	case VMMU_GW_EPT_VIOLATION:
		record_exit(vcpu, f, VMMU_NESTED_EXIT_EPT_VIOLATION, &res);
		f->r = VMMU_PF_NESTED_EXIT;
		return NF_DONE;
	case VMMU_GW_TABLE_FAULT:
		/* An EPT12 table outside L1's memory: nothing is readable. */
		res.error_code = (uint32_t)(f->write ? VMMU_GW_EPTQ_WRITE :
					    f->exec  ? VMMU_GW_EPTQ_FETCH :
						       VMMU_GW_EPTQ_READ);
		record_exit(vcpu, f, VMMU_NESTED_EXIT_EPT_VIOLATION, &res);
		f->r = VMMU_PF_NESTED_EXIT;
		return NF_DONE;
	case VMMU_GW_EPT_MISCONFIG:
		record_exit(vcpu, f, VMMU_NESTED_EXIT_EPT_MISCONFIG, &res);
		f->r = VMMU_PF_NESTED_EXIT;
		return NF_DONE;
	case VMMU_GW_RETRY:
		f->r = VMMU_PF_RETRY;
		return NF_DONE;
	default:
		f->r = r < 0 ? r : -EFAULT;
		return NF_DONE;
	}

	l1_gfn = res.gpa >> VMMU_PAGE_SHIFT;
	if (f->page.gfn != l1_gfn) {
		f->want_gfn = l1_gfn;
		return NF_PREPARE;
	}
	/* Tests: the walk is done, nothing of it is installed yet (no new
	 * table, no root bit in a track node, no leaf). */
	if (vmmu_unlikely(vm->test_nested_walk_hook))
		vm->test_nested_walk_hook(vcpu, f->l2_gpa, vm->test_nested_walk_hook_arg);

	/* Rights: EPT12's AND L0's. */
	if (res.access & VMMU_GW_ACC_R)
		acc |= ACC_READ;
	if (res.access & VMMU_GW_ACC_X)
		acc |= ACC_EXEC;
	/* MMU-writable: vmmu would allow W here (EPT12 and L0 both do). */
	writable = (res.access & VMMU_GW_ACC_W) && f->page.writable;
	/* With EPT12 A/D, a clean EPT12 leaf is mapped without W so that the
	 * first write sets its D bit (KVM's protect_clean_gpte). */
	if (nv->walk_role.d_mask && !(res.pte[res.level] & nv->walk_role.d_mask))
		writable = false;
	if (nested_track_find(n, as, l1_gfn)) {
		if (f->write) {
			f->r = VMMU_PF_EMULATE; /* L2 writes L1's EPT12 page */
			return NF_DONE;
		}
		writable = false;
	}
	if (writable)
		acc |= ACC_WRITE;
	/* In a logged slot a read maps the page MMU-writable but without W:
	 * the first write is logged by its (lockless) fault. */
	protect = writable && memslot_dirty_logged(f->page.slot) && !f->write;

	/* The largest leaf both EPT12 and L0 allow. */
	target = vmmu_min((int)res.level, f->page.max_level);
	if (target > PG_LEVEL_4K) {
		/* No huge leaf over a tracked EPT12 page (the rule TDP faults
		 * follow too). */
		struct vmmu_page_fault pf = {
			.gfn = l1_gfn,
			.gfn_end = l1_gfn + 1,
			.goal_level = target,
			.max_level = target,
		};

		vmmu_nested_tdp_fault_check(vm, as, &pf);
		target = pf.goal_level;
	}
	base = round_gfn_for_level(l1_gfn, target);
	if (l1_page_stale(vm, &f->page, base, base + spte_pages_per(target))) {
		f->r = VMMU_PF_RETRY;
		return NF_DONE;
	}

	/* Down from the root to the target level, building what is missing. */
	for (level = root_level; level > target; level--) {
		uint64_t *sptep = &sp->spt[spte_index(l2_gfn, level)];
		union nested_role role = sp->role;
		struct nsp *child = NULL;
		uint64_t child_gfn;

		role.level = (unsigned)(level - 1);
		if (level <= (int)res.level) {
			/* Below the EPT12 leaf: a direct table, L1 gfns in a row. */
			role.direct = 1;
			role.access = (res.access & VMMU_GW_ACC_R ? 1 : 0) |
				      (res.access & VMMU_GW_ACC_W ? 2 : 0) |
				      (res.access & VMMU_GW_ACC_X ? 4 : 0);
			child_gfn = l1_gfn - (l2_gfn & (spte_pages_per(level) - 1));
		} else {
			role.direct = 0;
			role.access = 0;
			child_gfn = ept12_table_gfn(&res, level);
		}

		spte = nested_read_spte(sptep);
		if (is_shadow_present_pte(spte) && !is_last_spte(spte, level))
			child = child_if_matches(n, spte, child_gfn, role);
		if (is_shadow_present_pte(spte) && !child)
			nested_zap_spte(rt, sp, sptep); /* a huge leaf, or out of date */
		if (!child) {
			child = nested_sp_find(rt, child_gfn, role);
			if (child) {
				/* An existing table may hold leaves: linked only
				 * if no emulated write ran since the walk, so that
				 * no processor walk can reach a leaf through a
				 * stale link even before the undo. */
				if (wseq_moved_undo(rt, n, wseq, &ml)) {
					f->r = VMMU_PF_RETRY;
					return NF_DONE;
				}
			} else {
				child = nested_sp_alloc(rt, child_gfn, role);
				if (!child) {
					wseq_moved_undo(rt, n, wseq, &ml);
					f->r = -ENOMEM;
					return NF_DONE;
				}
				if (!role.direct &&
				    nested_track_add(n, as, child_gfn, rt->id) < 0) {
					nested_sp_discard(rt, child);
					wseq_moved_undo(rt, n, wseq, &ml);
					f->r = -ENOMEM;
					return NF_DONE;
				}
			}
			nested_sp_link(rt, sptep, child);
			if (!is_shadow_present_pte(nested_read_spte(sptep))) {
				wseq_moved_undo(rt, n, wseq, &ml);
				f->r = -ENOMEM;
				return NF_DONE;
			}
			ml.sp[ml.nr] = sp;
			ml.sptep[ml.nr++] = sptep;
		}
		if (!child->role.direct && nested_track_pending(n, as, child->gfn, &f->wp_epoch)) {
			wseq_moved_undo(rt, n, wseq, &ml);
			f->wp_gfn = child->gfn;
			return NF_WP;
		}
		sp = child;
	}

	/* An emulated write to EPT12 since the walk: what it read may be old.
	 * Either this sees the new sequence and undoes its links, or the
	 * writer saw this root's bit in the track node (set before,
	 * sequentially consistent) and zaps this root's entries once the lock
	 * is free (wseq_moved_undo). */
	if (wseq_moved_undo(rt, n, wseq, &ml)) {
		f->r = VMMU_PF_RETRY;
		return NF_DONE;
	}
	{
		uint64_t *sptep = &sp->spt[spte_index(l2_gfn, target)];
		uint64_t host = memslot_gfn_to_hva(f->page.slot, base);

		spte = nested_read_spte(sptep);
		if (is_shadow_present_pte(spte) && !is_last_spte(spte, target))
			nested_zap_spte(rt, sp, sptep); /* smaller pages before: one leaf now */
		spte = make_leaf_spte(host, target, acc, f->page.writable, vm->ad_enabled, false,
				      f->write);
		if (protect)
			spte &= ~EPT_WRITABLE;
		nested_set_leaf(rt, sp, sptep, spte, base);
		f->r = is_shadow_present_pte(nested_read_spte(sptep)) ? VMMU_PF_FIXED : -ENOMEM;
		/* Logged after the leaf is installed (as the fast fault does): a
		 * harvest that took the bit before this protects the leaf.
		 * Always a release read-modify-write, even if the bit is set
		 * already: the harvest that takes it must see the span that
		 * covers this leaf (vmmu_mark_page_dirty_sync). */
		if (f->r == VMMU_PF_FIXED && f->write && memslot_dirty_logged(f->page.slot))
			vmmu_mark_page_dirty_sync(vcpu, f->page.slot, l1_gfn);
	}
	return NF_DONE;
}

int nested_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa, uint64_t exit_qual)
{
	struct vmmu_vm *vm = vcpu->vm;
	struct nested_fault f = {
		.l2_gpa = gpa,
		.exit_qual = exit_qual,
		.write = exit_qual & VMMU_EPT_ACC_WRITE,
		.exec = (exit_qual & VMMU_EPT_ACC_FETCH) && !(exit_qual & VMMU_EPT_ACC_WRITE),
		.page = { .gfn = UINT64_MAX },
	};
	int r = VMMU_PF_RETRY;

	vmmu_rcu_read_lock();
	for (int tries = 0; tries < 16; tries++) {
		struct nested_root *root = vcpu->nested->root;

		nested_fault_lock(vm, root);
		if (tries == 0)
			__atomic_store_n(&root->faults, root->faults + 1, __ATOMIC_RELAXED);
		r = fault_locked(vcpu, &f);
		nested_fault_unlock(vm, root);
		if (r == NF_DONE) {
			r = f.r;
			break;
		}
		if (r == NF_PREPARE) {
			/* Host lookups without the MMU lock, then walk again. */
			r = prepare_l1_page(vcpu, &f, f.want_gfn);
			if (r)
				break;
			r = VMMU_PF_RETRY;
			continue;
		}
		/* NF_WP: TDP and EPT02 leaves of the page go, then it is relied on. */
		nested_track_settle(vm, vcpu->as_id, f.wp_gfn, f.wp_epoch);
		r = VMMU_PF_RETRY;
	}
	vmmu_rcu_read_unlock();
	return r;
}

/*
 * The lockless fix of a write to an EPT02 leaf that is write-protected for
 * dirty logging only (MMU-writable, W clear): set W (and D) with one
 * compare-and-exchange and log the page, without the MMU lock (KVM's
 * fast_page_fault for shadow pages).  Tables and their metadata are freed
 * after an RCU grace period, so the walk runs in a read section.  Returns
 * VMMU_PF_FIXED or VMMU_PF_SPURIOUS, or VMMU_PF_CONTINUE for the locked
 * path.
 */
int nested_fast_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa, uint64_t exit_qual)
{
	struct vmmu_vm *vm = vcpu->vm;
	struct vmmu_nested *n = vm->nested;
	struct nested_root *root = vcpu->nested->root;
	struct nsp *sp;
	uint64_t gfn = gpa >> VMMU_PAGE_SHIFT, l1_gfn, *pt, *sptep = NULL, spte = 0, want;
	const struct vmmu_memslot *slot;
	int level, r = VMMU_PF_CONTINUE;

	if (!(exit_qual & VMMU_EPT_ACC_WRITE) || vm->cfg.disable_fast_page_fault || !root ||
	    READ_ONCE(root->invalid))
		return VMMU_PF_CONTINUE;
	vmmu_rcu_read_lock();
	pt = root->sp->spt;
	for (level = (int)root->sp->role.level; level >= PG_LEVEL_4K; level--) {
		sptep = &pt[spte_index(gfn, level)];
		spte = nested_read_spte(sptep);
		if (!is_shadow_present_pte(spte) || is_last_spte(spte, level))
			break;
		pt = spte_to_child_pt(spte);
	}
	if (level != PG_LEVEL_4K || !is_shadow_present_pte(spte))
		goto out;
	if (spte & EPT_WRITABLE) {
		r = VMMU_PF_SPURIOUS; /* another vCPU fixed it */
		goto out;
	}
	if (!is_mmu_writable_spte(spte))
		goto out;
	sp = nsp_of(n, (uint64_t *)((uintptr_t)sptep & ~(uintptr_t)4095));
	if (!sp)
		goto out;
	l1_gfn = nested_leaf_gfn(sp, (unsigned)(sptep - pt));
	if (l1_gfn == UINT64_MAX)
		goto out;
	want = spte | EPT_WRITABLE | (spte_ad_enabled(spte) ? EPT_ACCESSED | EPT_DIRTY : 0);
	if (!__atomic_compare_exchange_n(sptep, &spte, want, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		goto out; /* changed under us: the locked path decides */
	/* Logged after W is set, as the TDP fast path does: a harvest that
	 * took the bitmap before this write-protects the leaf again.  The
	 * compare-and-exchange read the leaf its install published after
	 * the span; the release read-modify-write passes that on to the
	 * harvest that takes the bit (vmmu_mark_page_dirty_sync). */
	slot = vmmu_gfn_to_memslot(vm, vcpu->as_id, l1_gfn);
	if (slot && memslot_dirty_logged(slot))
		vmmu_mark_page_dirty_sync(vcpu, slot, l1_gfn);
	r = VMMU_PF_FIXED;
out:
	vmmu_rcu_read_unlock();
	return r;
}
