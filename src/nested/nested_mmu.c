// SPDX-License-Identifier: MIT
/*
 * nested_mmu.c - the nested engine's front: the lock, entering and leaving
 * L2, EPT02 roots and the vCPU's cache of them, INVEPT, the emulated write
 * to a tracked page, the dispatch entry points (zap, write-protect, age)
 * and the stats.
 *
 * Locking, decided here and only here: every nested operation takes the
 * MMU lock for write (KVM's design for its shadow MMU today).  A following
 * issue makes this per-root under the lock held for read; it changes
 * nested_lock() and the callers of the dispatch, nothing else.
 */
#include "nested_internal.h"

#include <stdlib.h>
#include <string.h>

/* The engine whose lock this thread holds (one at a time). */
static __thread const struct vmmu_nested *lock_held;

bool nested_lock_held(const struct vmmu_nested *n)
{
	return lock_held == n;
}

void nested_lock_engine(struct vmmu_nested *n)
{
	pthread_mutex_lock(&n->lock);
	lock_held = n;
}

/* Changes made under the lock are final (flushed) before it is dropped. */
void nested_unlock_engine(struct vmmu_nested *n)
{
	nested_flush_and_free(n);
	lock_held = NULL;
	pthread_mutex_unlock(&n->lock);
}

void nested_lock(struct vmmu_vm *vm)
{
	vmmu_write_lock(&vm->mmu_lock);
	nested_lock_engine(vm->nested);
}

/*
 * The global mode's lock is the MMU lock for write: it has no trylock, so
 * an acquisition counts as contended when a writer already holds or wants
 * it (a racy peek, for the stats only); only then is the wait timed.
 */
void nested_lock_root(struct vmmu_vm *vm, struct nested_root *r)
{
	if (READ_ONCE(vm->mmu_lock.writer)) {
		uint64_t t0 = vmmu_now_ns();

		nested_lock(vm);
		r->lock_contended++;
		r->lock_wait_ns += vmmu_now_ns() - t0;
	} else {
		nested_lock(vm);
	}
	r->lock_acquired++;
}

void nested_unlock(struct vmmu_vm *vm)
{
	nested_unlock_engine(vm->nested);
	vmmu_write_unlock(&vm->mmu_lock);
}

/* Milestone 1: the engine still runs the global lock only. */
static bool nested_global(struct vmmu_vm *vm)
{
	(void)vm;
	return true;
}

void nested_assert_locked(struct vmmu_vm *vm)
{
	WARN_ON(!nested_lock_held(vm->nested));
}

/*
 * VM state, created on first use (most VMs never run L2).  Published with
 * release so the TDP fault path can look at it without a lock.
 */
static int nested_get(struct vmmu_vm *vm, struct vmmu_nested **out)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	int r = 0;

	if (n) {
		*out = n;
		return 0;
	}
	pthread_mutex_lock(&vm->vcpus_lock);
	n = vm->nested;
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n) {
			r = -ENOMEM;
		} else {
			n->vm = vm;
			pthread_mutex_init(&n->lock, NULL);
			pthread_mutex_init(&n->track_lock, NULL);
			CDS_INIT_LIST_HEAD(&n->roots);
			/* EPT02 tables: a quarter of the VM's page-table budget
			 * at most (1 GiB of tables by default, enough for 512 GiB
			 * of L2 memory in 4 KiB leaves). */
			r = nested_sp_init(n, vmmu_max(vm->cfg.max_pt_pages / 4, 64u));
			if (r) {
				free(n);
				n = NULL;
			} else {
				__atomic_store_n(&vm->nested, n, __ATOMIC_RELEASE);
			}
		}
	}
	pthread_mutex_unlock(&vm->vcpus_lock);
	*out = n;
	return r;
}

int vmmu_nested_vm_init(struct vmmu_vm *vm)
{
	vm->nested = NULL;
	return 0;
}

void vmmu_nested_vm_destroy(struct vmmu_vm *vm)
{
	struct vmmu_nested *n = vm->nested;

	if (!n)
		return;
	nested_lock(vm);
	nested_zap_all_locked(n);
	nested_unlock(vm);
	vmmu_rcu_barrier(); /* tables are freed after a grace period */
	nested_rmap_destroy(n);
	nested_track_destroy(n);
	nested_sp_destroy(n);
	pthread_mutex_destroy(&n->lock);
	free(n);
	vm->nested = NULL;
}

static struct vmmu_nested_vcpu *nv_get(struct vmmu_vcpu *vcpu)
{
	if (!vcpu->nested)
		vcpu->nested = calloc(1, sizeof(*vcpu->nested));
	return vcpu->nested;
}

bool vmmu_nested_vcpu_in_l2(const struct vmmu_vcpu *vcpu)
{
	return vcpu->nested && vcpu->nested->in_l2;
}

void vmmu_nested_vcpu_destroy(struct vmmu_vcpu *vcpu)
{
	struct vmmu_nested_vcpu *nv = vcpu->nested;
	struct vmmu_vm *vm = vcpu->vm;

	if (!nv)
		return;
	if (vm->nested) {
		nested_lock(vm);
		if (nv->root)
			nested_put_root(vm->nested, nv->root);
		for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++)
			if (nv->prev[i].sp)
				nested_put_root(vm->nested, nv->prev[i].sp);
		nested_unlock(vm);
	}
	free(nv);
	vcpu->nested = NULL;
}

/* Bits 51:12 of an EPTP: the root table's L1 guest-physical address. */
#define EPTP_ADDR_MASK 0x000ffffffffff000ull

static int eptp_check(struct vmmu_vm *vm, uint64_t eptp, struct vmmu_gw_role *role)
{
	struct vmmu_gw_role tmp;

	if (!role)
		role = &tmp;
	/* vmmu emulates EPT12 A/D and execute-only pages in software. */
	if (vmmu_gw_role_init_ept(role, eptp, true, true, vm->guest_maxphyaddr))
		return -EINVAL;
	return 0;
}

static union nested_role root_role(struct vmmu_vcpu *vcpu, uint64_t eptp)
{
	union nested_role role = { .word = 0 };
	unsigned levels = (unsigned)((eptp >> 3) & 7) + 1;

	role.level = levels;
	role.root_level = levels;
	role.ad12 = !!(eptp & VMMU_EPTP_AD);
	role.smm = vcpu->as_id ? 1 : 0;
	role.guest_mode = 1;
	return role;
}

struct nested_root *nested_root_new(struct vmmu_nested *n, struct nsp *sp, uint64_t eptp)
{
	struct nested_root *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->n = n;
	r->sp = sp;
	r->eptp = eptp;
	sp->root = r;
	cds_list_add_tail(&r->link, &n->roots);
	n->roots_created++;
	return r;
}

/* Drop cached roots that became obsolete.  Under the lock. */
static void drop_obsolete_prev(struct vmmu_nested *n, struct vmmu_nested_vcpu *nv)
{
	unsigned k = 0;

	for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++) {
		struct nested_root_info ri = nv->prev[i];

		if (ri.sp && ri.sp->invalid) {
			nested_put_root(n, ri.sp);
			continue;
		}
		if (ri.sp)
			nv->prev[k++] = ri;
	}
	while (k < VMMU_NUM_PREV_ROOTS)
		nv->prev[k++] = (struct nested_root_info){ 0 };
}

bool vmmu_nested_root_stale(struct vmmu_vcpu *vcpu)
{
	struct nsp *root = vcpu->nested->root;

	return !root || READ_ONCE(root->invalid);
}

int vmmu_nested_load_root(struct vmmu_vcpu *vcpu)
{
	struct vmmu_nested_vcpu *nv = vcpu->nested;
	struct vmmu_vm *vm = vcpu->vm;
	struct vmmu_nested *n = vm->nested;
	union nested_role role = root_role(vcpu, nv->eptp);
	uint64_t gfn = (nv->eptp & EPTP_ADDR_MASK) >> VMMU_PAGE_SHIFT;
	struct nsp *sp;
	int r = 0;

	nested_lock(vm);
	drop_obsolete_prev(n, nv);
	if (nv->root && nv->root->invalid) {
		nested_put_root(n, nv->root);
		nv->root = NULL;
	}
	if (!nv->root) {
		sp = nested_sp_find(n, gfn, role);
		if (!sp) {
			sp = nested_sp_alloc(n, gfn, role);
			if (!sp) {
				r = -ENOMEM;
				goto out;
			}
			if (!nested_root_new(n, sp, nv->eptp)) {
				nested_sp_discard(n, sp);
				r = -ENOMEM;
				goto out;
			}
			if (nested_track_add(n, vcpu->as_id, gfn, 63) < 0) {
				nested_sp_discard(n, sp);
				r = -ENOMEM;
				goto out;
			}
		}
		if (!sp->root_count++)
			n->nr_roots++;
		nv->root = sp;
	}
out:
	nested_unlock(vm);
	return r;
}

void vmmu_nested_fill_entry(struct vmmu_vcpu *vcpu, struct vmmu_guest_entry *entry)
{
	struct nsp *root = vcpu->nested->root;

	entry->root = root->spt;
	entry->root_level = (int)root->role.level;
	entry->ad_enabled = vcpu->vm->ad_enabled;
	/* EPT02 is write-protected for dirty logging, never logged by PML:
	 * the processor would log L2 addresses. */
	entry->pml = NULL;
	entry->pml_count = &vcpu->pml_count;
	entry->pml_size = 0;
}

int vmmu_nested_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa, uint64_t exit_qual)
{
	int r;

	if (vmmu_nested_root_stale(vcpu)) {
		r = vmmu_nested_load_root(vcpu);
		if (r)
			return r;
	}
	r = nested_fast_page_fault(vcpu, gpa, exit_qual);
	if (r != VMMU_PF_CONTINUE) {
		vmmu_vcpu_stat_inc(&vcpu->stats.pf_fast);
		return r;
	}
	return nested_page_fault(vcpu, gpa, exit_qual);
}

static bool vcpu_in_guest_mode(struct vmmu_vcpu *vcpu)
{
	return READ_ONCE(vcpu->mode) & VMMU_MODE_IN_GUEST;
}

static void request_flush(struct vmmu_vcpu *vcpu)
{
	__atomic_fetch_or(&vcpu->requests, VMMU_REQ_TLB_FLUSH, __ATOMIC_SEQ_CST);
}

int vmmu_vcpu_nested_enter(struct vmmu_vcpu *vcpu, uint64_t eptp)
{
	struct vmmu_gw_role wrole;
	struct vmmu_nested_vcpu *nv;
	struct vmmu_nested *n;
	int r;

	if (!vcpu || vcpu_in_guest_mode(vcpu))
		return -EINVAL;
	r = eptp_check(vcpu->vm, eptp, &wrole);
	if (r)
		return r;
	/* The root must be a page the VM can address. */
	if ((eptp & EPTP_ADDR_MASK) >> VMMU_PAGE_SHIFT >= vmmu_max_gfn(vcpu->vm))
		return -EINVAL;
	if (vcpu->nested && vcpu->nested->in_l2)
		return -EBUSY;
	r = nested_get(vcpu->vm, &n);
	if (r)
		return r;
	nv = nv_get(vcpu);
	if (!nv)
		return -ENOMEM;

	nested_lock(vcpu->vm);
	drop_obsolete_prev(n, nv);
	/* The previous-roots cache: an L2 that ran before keeps its root. */
	for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++) {
		struct nested_root_info ri = nv->prev[i];

		if (ri.sp && ri.eptp == eptp && !ri.sp->invalid) {
			memmove(&nv->prev[i], &nv->prev[i + 1],
				(VMMU_NUM_PREV_ROOTS - 1 - i) * sizeof(nv->prev[0]));
			nv->prev[VMMU_NUM_PREV_ROOTS - 1] = (struct nested_root_info){ 0 };
			nv->root = ri.sp;
			vmmu_vcpu_stat_inc(&vcpu->mmu.stats.root_cache_hits);
			break;
		}
	}
	if (!nv->root)
		vmmu_vcpu_stat_inc(&vcpu->mmu.stats.root_cache_misses);
	nested_unlock(vcpu->vm);

	/* L2 starts with its paging off; the caller sets vmcs12's guest
	 * state with vmmu_vcpu_set_paging() in L2.  L1's comes back at exit. */
	nv->l1_paging = vcpu->mmu.regs;
	r = vmmu_vcpu_set_paging(vcpu, &(struct vmmu_paging_state){ 0 });
	if (WARN_ON(r))
		return r;
	nv->eptp = eptp;
	nv->walk_role = wrole;
	nv->exit_valid = false;
	nv->saved_not_tdp = vcpu->mmu_not_tdp;
	vcpu->mmu_not_tdp = true; /* pre-faulting is for L1 addresses */
	__atomic_store_n(&nv->in_l2, true, __ATOMIC_RELEASE);
	/* L1's translations must not serve L2. */
	request_flush(vcpu);
	return 0;
}

/* Put the current L2 root at the front of the cache.  Under the lock. */
static void cache_current_root(struct vmmu_nested *n, struct vmmu_nested_vcpu *nv)
{
	if (!nv->root)
		return;
	if (nv->root->invalid) {
		nested_put_root(n, nv->root);
	} else {
		if (nv->prev[VMMU_NUM_PREV_ROOTS - 1].sp)
			nested_put_root(n, nv->prev[VMMU_NUM_PREV_ROOTS - 1].sp);
		memmove(&nv->prev[1], &nv->prev[0],
			(VMMU_NUM_PREV_ROOTS - 1) * sizeof(nv->prev[0]));
		nv->prev[0] = (struct nested_root_info){ .eptp = nv->eptp, .sp = nv->root };
	}
	nv->root = NULL;
}

int vmmu_vcpu_nested_leave(struct vmmu_vcpu *vcpu)
{
	struct vmmu_nested_vcpu *nv;

	if (!vcpu || !vcpu->nested || !vcpu->nested->in_l2 || vcpu_in_guest_mode(vcpu))
		return -EINVAL;
	nv = vcpu->nested;
	nested_lock(vcpu->vm);
	cache_current_root(vcpu->vm->nested, nv);
	nested_unlock(vcpu->vm);
	__atomic_store_n(&nv->in_l2, false, __ATOMIC_RELEASE);
	vcpu->mmu_not_tdp = nv->saved_not_tdp;
	WARN_ON(vmmu_vcpu_set_paging(vcpu, &nv->l1_paging));
	request_flush(vcpu);
	return 0;
}

int vmmu_vcpu_invept(struct vmmu_vcpu *vcpu, unsigned type, uint64_t eptp)
{
	struct vmmu_nested_vcpu *nv;
	struct vmmu_nested *n;

	if (!vcpu || vcpu_in_guest_mode(vcpu))
		return -EINVAL;
	if (type != VMMU_INVEPT_SINGLE && type != VMMU_INVEPT_GLOBAL)
		return -EINVAL;
	if (type == VMMU_INVEPT_SINGLE && eptp_check(vcpu->vm, eptp, NULL))
		return -EINVAL;
	nv = vcpu->nested;
	n = vcpu->vm->nested;
	request_flush(vcpu);
	if (!nv || !n)
		return 0;
	nested_lock(vcpu->vm);
	for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++) {
		struct nested_root_info *ri = &nv->prev[i];

		if (ri->sp && (type == VMMU_INVEPT_GLOBAL || ri->eptp == eptp)) {
			nested_put_root(n, ri->sp);
			*ri = (struct nested_root_info){ 0 };
		}
	}
	if (nv->root && (type == VMMU_INVEPT_GLOBAL || nv->eptp == eptp)) {
		nested_put_root(n, nv->root);
		nv->root = NULL; /* reloaded at the next entry */
	}
	/* Compact the cache, keeping the order. */
	{
		unsigned k = 0;

		for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++)
			if (nv->prev[i].sp)
				nv->prev[k++] = nv->prev[i];
		while (k < VMMU_NUM_PREV_ROOTS)
			nv->prev[k++] = (struct nested_root_info){ 0 };
	}
	nested_unlock(vcpu->vm);
	return 0;
}

int vmmu_vcpu_nested_last_exit(struct vmmu_vcpu *vcpu, struct vmmu_nested_exit *out)
{
	if (!vcpu || !out)
		return -EINVAL;
	if (!vcpu->nested || !vcpu->nested->exit_valid)
		return -ENOENT;
	*out = vcpu->nested->last_exit;
	return 0;
}

int vmmu_vcpu_in_l2(struct vmmu_vcpu *vcpu)
{
	if (!vcpu)
		return -EINVAL;
	return vmmu_nested_vcpu_in_l2(vcpu) ? 1 : 0;
}

/* Drop the EPT02 entries derived from the EPT12 entries at [off, off+len)
 * of tracked page @gfn, in every table shadowing it.  Under the lock. */
static void zap_written_entries(struct vmmu_nested *n, unsigned as, uint64_t gfn, unsigned off,
				size_t len)
{
	unsigned first = off / 8, last = (unsigned)((off + len - 1) / 8);
	bool again;

	/* A zap may free tables (even one of this gfn, if EPT12 points at
	 * itself): look the tables up again after each one. */
	do {
		again = false;
		for (struct nsp *sp = nested_sp_first_of_gfn(n, gfn); sp && !again;
		     sp = sp->hash_next) {
			if (sp->gfn != gfn || sp->role.direct || sp->role.smm != as)
				continue;
			for (unsigned i = first; i <= last && !again; i++)
				again = nested_zap_spte(n, sp, &sp->spt[i]);
		}
	} while (again);
}

int vmmu_vcpu_emulate_write(struct vmmu_vcpu *vcpu, uint64_t gpa, const void *buf, size_t len)
{
	struct vmmu_vm *vm;
	const struct vmmu_memslot *slot;
	struct vmmu_host_page host;
	uint64_t gfn, hva;
	int r = 0;

	if (!vcpu || !buf || !len || len > VMMU_PAGE_SIZE)
		return -EINVAL;
	if ((gpa & (VMMU_PAGE_SIZE - 1)) + len > VMMU_PAGE_SIZE)
		return -EINVAL;
	if (vmmu_nested_vcpu_in_l2(vcpu) || vcpu_in_guest_mode(vcpu))
		return -EINVAL;
	vm = vcpu->vm;
	gfn = gpa >> VMMU_PAGE_SHIFT;
	if (gfn >= vmmu_max_gfn(vm))
		return -EINVAL;

	vmmu_rcu_read_lock();
	slot = vmmu_gfn_to_memslot(vm, vcpu->as_id, gfn);
	if (!slot || slot->invalid || (slot->flags & VMMU_MEM_READONLY)) {
		r = -EFAULT;
		goto out_rcu;
	}
	hva = memslot_gfn_to_hva(slot, gfn);
	if (vm->hostmem && (vmmu_hostmem_lookup(vm->hostmem, hva, &host) || !host.writable)) {
		r = -EFAULT;
		goto out_rcu;
	}
	/* Only pages vmmu write-protects for its own reasons (EPT12 tables it
	 * shadows) are written here; any other page is ordinary memory whose
	 * fault maps it: the caller retries the access or reports the exit. */
	if (!__atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE)) {
		r = -EFAULT; /* nothing is write-tracked in this VM */
		goto out_rcu;
	}
	nested_lock(vm);
	if (!nested_track_find(vm->nested, vcpu->as_id, gfn)) {
		nested_unlock(vm);
		r = -EAGAIN;
		goto out_rcu;
	}
	/* From the store on, a nested fault whose walk may have read the old
	 * entry retries (it compares this sequence before installing). */
	{
		uint8_t *dst = (uint8_t *)(uintptr_t)(hva + (gpa & (VMMU_PAGE_SIZE - 1)));
		uintptr_t a = (uintptr_t)dst;

		/* As the emulator: an aligned access is one atomic store. */
		if (len == 8 && !(a & 7)) {
			uint64_t v;

			memcpy(&v, buf, 8);
			__atomic_store_n((uint64_t *)dst, v, __ATOMIC_RELEASE);
		} else if (len == 4 && !(a & 3)) {
			uint32_t v;

			memcpy(&v, buf, 4);
			__atomic_store_n((uint32_t *)dst, v, __ATOMIC_RELEASE);
		} else if (len == 2 && !(a & 1)) {
			uint16_t v;

			memcpy(&v, buf, 2);
			__atomic_store_n((uint16_t *)dst, v, __ATOMIC_RELEASE);
		} else {
			for (size_t i = 0; i < len; i++)
				__atomic_store_n(&dst[i], ((const uint8_t *)buf)[i],
						 __ATOMIC_RELAXED);
		}
	}
	__atomic_fetch_add(&vm->nested->ept12_wseq, 1, __ATOMIC_SEQ_CST);
	if (memslot_dirty_logged(slot))
		vmmu_mark_page_dirty(vcpu, slot, gfn);
	vm->nested->pte_write++;
	zap_written_entries(vm->nested, vcpu->as_id, gfn, (unsigned)(gpa & (VMMU_PAGE_SIZE - 1)),
			    len);
	/* Flushed before the lock is dropped: L2 no longer uses what the old
	 * entries said once this returns. */
	nested_unlock(vm);
out_rcu:
	vmmu_rcu_read_unlock();
	return r;
}

/*
 * Dispatch entry points.  Called with no MMU lock held.
 */
static bool zap_leaf_cb(struct vmmu_nested *n, struct nsp *sp, uint64_t *sptep, uint64_t gfn,
			int level, void *arg)
{
	(void)gfn, (void)level, (void)arg;
	return nested_zap_spte(n, sp, sptep);
}

/*
 * The tracking barrier (docs/nested-per-root-locking.md 3.2), after a
 * fault made @gfn tracked and dropped its locks.  (1) With per-root locks,
 * the MMU lock taken for write and dropped: every TDP fault that looked at
 * the track hash before the node was published has left its read section,
 * so its leaf, if any, is installed (with the global lock the fault that
 * published the node held the write lock: none can exist).  (2) Under the
 * read lock, the gfn's TDP leaves and the EPT02 leaves mapping it go.
 * (3) The gfn is no longer pending: nested faults may rely on its tables.
 */
void nested_track_settle(struct vmmu_vm *vm, unsigned as, uint64_t gfn, uint64_t epoch)
{
	struct vmmu_nested *n = vm->nested;

	if (!nested_global(vm)) {
		vmmu_write_lock(&vm->mmu_lock);
		vmmu_write_unlock(&vm->mmu_lock);
		__atomic_fetch_add(&n->track_barriers, 1, __ATOMIC_RELAXED);
	}
	vmmu_read_lock(&vm->mmu_lock);
	vmmu_tdp_mmu_zap_leafs(vm, as, gfn, gfn + 1, true);
	nested_lock_engine(n);
	nested_rmap_for_each(n, as, gfn, gfn + 1, zap_leaf_cb, NULL);
	nested_unlock_engine(n);
	vmmu_read_unlock(&vm->mmu_lock);
	nested_track_done(n, as, gfn, epoch);
}

bool vmmu_nested_zap_gfn_range(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	bool r;

	if (!n)
		return false;
	nested_lock_engine(n);
	r = nested_rmap_for_each(n, as, start, end, zap_leaf_cb, NULL);
	/* EPT12 tables in the range: their memory changes or goes (host
	 * invalidation, memslot delete or move), so what EPT02 derived from
	 * them goes too (KVM zaps a deleted slot's shadow pages likewise). */
	if (__atomic_load_n(&n->nr_tracked, __ATOMIC_ACQUIRE)) {
		uint64_t before = n->shadow_zapped;

		nested_zap_shadowed_range(n, as, start, end);
		r |= n->shadow_zapped != before;
	}
	nested_unlock_engine(n);
	return r;
}

void vmmu_nested_zap_all(struct vmmu_vm *vm)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);

	if (!n)
		return;
	nested_lock_engine(n);
	nested_zap_all_locked(n);
	nested_unlock_engine(n);
}

/* Dirty logging: a huge leaf goes (the slot is mapped with 4 KiB leaves
 * now), a small one loses W but stays MMU-writable, so that the next write
 * faults into the lockless path, which logs it. */
static bool wrprot_cb(struct vmmu_nested *n, struct nsp *sp, uint64_t *sptep, uint64_t gfn,
		      int level, void *arg)
{
	uint64_t *mask = arg;
	uint64_t spte = nested_read_spte(sptep);

	/* A huge leaf overlapping the masked pages goes whatever its first
	 * gfn (the walk visits only leaves overlapping them). */
	if (level > PG_LEVEL_4K)
		return nested_zap_spte(n, sp, sptep);
	if (mask && (gfn < mask[1] || gfn >= mask[1] + 64 || !((mask[0] >> (gfn - mask[1])) & 1)))
		return false;
	if (!(spte & EPT_WRITABLE))
		return false;
	/* MMU-writable stays: the next write is fixed locklessly and logged. */
	__atomic_fetch_and(sptep, ~EPT_WRITABLE, __ATOMIC_ACQ_REL);
	n->flush_needed = true;
	return true;
}

/*
 * Write protection for logging unlinks no table: the flush is the
 * caller's, once per harvest, before it reports dirty state (as for the
 * TDP engine).  Returns whether one is owed.
 */
static bool wrprot_flush_owed(struct vmmu_nested *n)
{
	bool owed = n->flush_needed;

	if (!n->nr_free)
		n->flush_needed = false;
	return owed;
}

bool vmmu_nested_wrprot_range(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	bool r;

	if (!n)
		return false;
	nested_lock_engine(n);
	r = nested_rmap_for_each(n, as, start, end, wrprot_cb, NULL);
	r |= wrprot_flush_owed(n);
	nested_unlock_engine(n);
	return r;
}

bool vmmu_nested_wrprot_masked(struct vmmu_vm *vm, unsigned as, uint64_t base, uint64_t mask)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	uint64_t arg[2] = { mask, base };
	bool r;

	if (!n || !mask)
		return false;
	nested_lock_engine(n);
	r = nested_rmap_for_each(n, as, base + (uint64_t)__builtin_ctzll(mask),
				 base + 64 - (uint64_t)__builtin_clzll(mask), wrprot_cb, arg);
	r |= wrprot_flush_owed(n);
	nested_unlock_engine(n);
	return r;
}

static bool age_cb(struct vmmu_nested *n, struct nsp *sp, uint64_t *sptep, uint64_t gfn, int level,
		   void *arg)
{
	bool clear = *(bool *)arg;
	uint64_t spte = nested_read_spte(sptep);

	(void)gfn, (void)level;
	if (!spte_is_young(spte))
		return false;
	if (clear) {
		if (spte_ad_enabled(spte))
			__atomic_fetch_and(sptep, ~EPT_ACCESSED, __ATOMIC_ACQ_REL);
		else
			nested_zap_spte(n, sp, sptep); /* no A bit: unmap, the next
							* access faults it back */
	}
	return true;
}

bool vmmu_nested_age_gfn_range(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end,
			       bool clear)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	bool r;

	if (!n)
		return false;
	nested_lock_engine(n);
	r = nested_rmap_for_each(n, as, start, end, age_cb, &clear);
	nested_unlock_engine(n);
	return r;
}

bool vmmu_nested_active(const struct vmmu_vm *vm)
{
	return __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE) != NULL;
}

int vmmu_nested_stats(struct vmmu_vm *vm, struct vmmu_nested_stats *out)
{
	struct vmmu_nested *n;

	if (!vm || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	if (!n)
		return 0;
	vmmu_nested_split_stats(vm, out);
	nested_lock_engine(n);
	out->ept02_pages_4k = (uint64_t)n->pages[0];
	out->ept02_pages_2m = (uint64_t)n->pages[1];
	out->ept02_pages_1g = (uint64_t)n->pages[2];
	out->shadow_pages = (uint64_t)n->nr_sps;
	out->roots = (uint64_t)n->nr_roots;
	out->mmu_shadow_zapped = n->shadow_zapped;
	out->mmu_pte_write = n->pte_write;
	out->mmu_cache_miss = n->cache_miss;
	out->mmu_unsync = 0;
	out->nested_faults = n->faults;
	out->nested_exits = n->exits;
	out->write_tracked_gfns = (uint64_t)n->nr_tracked;
	out->rmap_bytes = n->nr_rmap_nodes * sizeof(struct rmap_node) + (uint64_t)n->sidecar_bytes +
			  sizeof(n->rmap);
	out->meta_bytes = (uint64_t)n->nr_sps * (sizeof(struct nsp) + sizeof(struct nsp *));
	out->root_lock_contended = n->dead_lock_contended;
	out->root_lock_wait_ns = n->dead_lock_wait_ns;
	{
		struct nested_root *r;

		cds_list_for_each_entry(r, &n->roots, link) {
			out->root_lock_contended += r->lock_contended;
			out->root_lock_wait_ns += r->lock_wait_ns;
		}
	}
	out->roots_created = n->roots_created;
	out->track_barriers = n->track_barriers;
	out->ept12_retries = n->ept12_retries;
	out->cross_root_visits = n->cross_root_visits;
	out->cross_root_skips = n->cross_root_skips;
	nested_unlock_engine(n);
	return 0;
}

/* Tables and leaves of the tree under @sp (a table reached twice counts
 * twice: the figures are the tree's as a walk sees it). */
static void count_tree(struct vmmu_nested *n, struct nsp *sp, struct vmmu_nested_root_stats *o)
{
	int level = (int)sp->role.level;

	o->shadow_pages++;
	for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++) {
		uint64_t spte = nested_read_spte(&sp->spt[i]);

		if (!is_shadow_present_pte(spte))
			continue;
		if (is_last_spte(spte, level)) {
			if (level == PG_LEVEL_4K)
				o->ept02_pages_4k++;
			else if (level == PG_LEVEL_2M)
				o->ept02_pages_2m++;
			else
				o->ept02_pages_1g++;
		} else {
			count_tree(n, nsp_of(n, spte_to_child_pt(spte)), o);
		}
	}
}

int vmmu_nested_root_stats(struct vmmu_vm *vm, struct vmmu_nested_root_stats *out, unsigned max)
{
	struct vmmu_nested *n;
	struct nested_root *r;
	unsigned k = 0;

	if (!vm || (!out && max))
		return -EINVAL;
	n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	if (!n || !max)
		return 0;
	nested_lock_engine(n);
	cds_list_for_each_entry(r, &n->roots, link) {
		struct vmmu_nested_root_stats *o = &out[k];

		if (k == max)
			break;
		memset(o, 0, sizeof(*o));
		o->eptp = r->eptp;
		o->faults = r->faults;
		o->lock_acquired = r->lock_acquired;
		o->lock_contended = r->lock_contended;
		o->lock_wait_ns = r->lock_wait_ns;
		o->invalid = READ_ONCE(r->sp->invalid);
		count_tree(n, r->sp, o);
		k++;
	}
	nested_unlock_engine(n);
	return (int)k;
}
