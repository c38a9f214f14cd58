// SPDX-License-Identifier: MIT
/*
 * nested_mmu.c - the nested engine's front: the locks, EPT02 roots and
 * their life, entering and leaving L2, the vCPU's cache of roots, INVEPT,
 * the emulated write to a tracked page, the dispatch entry points (zap,
 * write-protect, age) and the stats.
 *
 * Locking, decided here and only here (docs/nested-per-root-locking.md):
 * each EPT02 root has its own lock, taken inside the MMU lock held for
 * read; a nested fault never takes the MMU lock for write, L2s with
 * different EPT pointers fault in parallel and an L2 fault never blocks an
 * L1 fault.  With vmmu_vm_config.nested_global_lock every root's lock is
 * the engine's one mutex and the vCPU operations (faults, root loads, L2
 * entry and exit, INVEPT, emulated writes) take the MMU lock for write
 * first, as before issue 14.  Order: vcpus_lock, slots_lock, MMU lock,
 * then roots_lock or one root lock (never both, never two), then the leaf
 * locks (track_lock, pool).
 */
#include "nested_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- Locks -------------------------------------------------------------- */

/* The root whose lock this thread holds (one at a time). */
static __thread const struct nested_root *root_held;

bool nested_global(const struct vmmu_vm *vm)
{
	return vm->cfg.nested_global_lock;
}

static pthread_mutex_t *root_mutex(struct nested_root *r)
{
	return nested_global(r->n->vm) ? &r->n->lock : &r->lock;
}

/* Contention is seen by a failed trylock; only then is the wait timed. */
void nested_root_lock(struct nested_root *r)
{
	pthread_mutex_t *m = root_mutex(r);

	WARN_ON(root_held);
	if (pthread_mutex_trylock(m)) {
		uint64_t t0 = vmmu_now_ns();

		pthread_mutex_lock(m);
		__atomic_fetch_add(&r->lock_contended, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&r->lock_wait_ns, vmmu_now_ns() - t0, __ATOMIC_RELAXED);
	}
	/* Atomic adds: in the global mode the figures of a fault's MMU lock
	 * are added under that lock, not the mutex. */
	__atomic_fetch_add(&r->lock_acquired, 1, __ATOMIC_RELAXED);
	root_held = r;
}

/* Changes made under the lock are final (flushed) before it is dropped. */
void nested_root_unlock(struct nested_root *r)
{
	nested_flush_and_free(r);
	root_held = NULL;
	pthread_mutex_unlock(root_mutex(r));
}

void nested_root_unlock_defer(struct nested_root *r, struct nested_free_batch *b)
{
	nested_defer_free(r, b);
	root_held = NULL;
	pthread_mutex_unlock(root_mutex(r));
}

void nested_root_assert_locked(const struct nested_root *r)
{
	WARN_ON(root_held != r);
}

/*
 * The MMU lock of the vCPU operations: for read with per-root locks, for
 * write in the global mode.  In the global mode an acquisition counts in
 * @r's contention figures when a writer already held or wanted the lock
 * (it has no trylock: a racy peek at its writer flag, for the stats only).
 */
void nested_vcpu_lock(struct vmmu_vm *vm, struct nested_root *r)
{
	if (!nested_global(vm)) {
		vmmu_read_lock(&vm->mmu_lock);
		return;
	}
	if (r && __atomic_load_n(&vm->mmu_lock.writer, __ATOMIC_RELAXED)) {
		uint64_t t0 = vmmu_now_ns();

		vmmu_write_lock(&vm->mmu_lock);
		__atomic_fetch_add(&r->lock_contended, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&r->lock_wait_ns, vmmu_now_ns() - t0, __ATOMIC_RELAXED);
		return;
	}
	vmmu_write_lock(&vm->mmu_lock);
}

void nested_vcpu_unlock(struct vmmu_vm *vm)
{
	if (nested_global(vm))
		vmmu_write_unlock(&vm->mmu_lock);
	else
		vmmu_read_unlock(&vm->mmu_lock);
}

void nested_fault_lock(struct vmmu_vm *vm, struct nested_root *r)
{
	nested_vcpu_lock(vm, r);
	nested_root_lock(r);
}

void nested_fault_unlock(struct vmmu_vm *vm, struct nested_root *r)
{
	nested_root_unlock(r);
	nested_vcpu_unlock(vm);
}

/* ---- Roots -------------------------------------------------------------- */

/*
 * n->roots is an RCU list: readers follow ->next with acquire loads and
 * never look at ->prev; insertions and removals run under roots_lock; a
 * removed root keeps its ->next (a reader on it goes on) and is freed
 * after a grace period.
 */
static void roots_add(struct vmmu_nested *n, struct nested_root *r)
{
	struct cds_list_head *head = &n->roots, *last = head->prev;

	r->link.next = head;
	r->link.prev = last;
	head->prev = &r->link;
	__atomic_store_n(&last->next, &r->link, __ATOMIC_RELEASE);
}

static void roots_del(struct nested_root *r)
{
	struct cds_list_head *prev = r->link.prev, *next = r->link.next;

	next->prev = prev;
	__atomic_store_n(&prev->next, next, __ATOMIC_RELEASE);
}

#define for_each_root_rcu(n, r)                                                                \
	for (struct cds_list_head *pos_ = __atomic_load_n(&(n)->roots.next, __ATOMIC_ACQUIRE); \
	     pos_ != &(n)->roots && ((r) = cds_list_entry(pos_, struct nested_root, link), 1); \
	     pos_ = __atomic_load_n(&pos_->next, __ATOMIC_ACQUIRE))

bool nested_root_tryget(struct nested_root *r)
{
	int32_t c = __atomic_load_n(&r->refcount, __ATOMIC_RELAXED);

	while (c > 0)
		if (__atomic_compare_exchange_n(&r->refcount, &c, c + 1, false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return true;
	return false;
}

static void root_free_rcu(vmmu_rcu_head *head)
{
	struct nested_root *r = vmmu_container_of(head, struct nested_root, rcu);

	vmmu_rcu_callback_enter();
	nested_root_tables_destroy(r);
	pthread_mutex_destroy(&r->lock);
	free(r);
	vmmu_rcu_callback_exit();
}

/*
 * The last reference: off the list (iterators holding the pointer under
 * RCU can no longer take a reference), then its tree is zapped under its
 * lock, flushed and freed, its stats folded into the VM's, and the struct
 * freed after a grace period.  No root lock held by the caller.
 */
void nested_put_root(struct nested_root *r)
{
	struct vmmu_nested *n = r->n;

	if (__atomic_sub_fetch(&r->refcount, 1, __ATOMIC_ACQ_REL))
		return;
	pthread_mutex_lock(&n->roots_lock);
	roots_del(r);
	if (r->id < NESTED_ROOT_IDS) {
		__atomic_store_n(&n->root_by_id[r->id], NULL, __ATOMIC_RELEASE);
		n->root_ids &= ~(1ull << r->id);
	}
	__atomic_store_n(&n->nr_roots, n->nr_roots - 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&n->roots_lock);

	nested_root_lock(r);
	r->dead = 1;
	nested_root_zap_tree(r);
	nested_root_free_tables(r);
	r->sp = NULL;
	nested_root_unlock(r);

	pthread_mutex_lock(&n->roots_lock);
	n->dead.faults += r->faults;
	n->dead.shadow_zapped += r->shadow_zapped;
	n->dead.cache_miss += r->cache_miss;
	n->dead.lock_contended += r->lock_contended;
	n->dead.lock_wait_ns += r->lock_wait_ns;
	pthread_mutex_unlock(&n->roots_lock);
	vmmu_call_rcu(&r->rcu, root_free_rcu);
}

/* A live, valid root of (gfn, role): with a new reference, or NULL.  RCU
 * read side, under the MMU lock (read).  Roots made obsolete under the MMU
 * lock for write (memslot fast zap, invalidate-all) are never found: the
 * caller's lock excludes that.  A root whose root table's EPT12 page goes
 * (zap_shadow_page, under the read lock and the root's lock) may become
 * invalid just after it is found: harmless, its fault sees `invalid` under
 * the root's lock and retries, and the vCPU then reloads its root. */
static struct nested_root *root_lookup(struct vmmu_nested *n, uint64_t gfn, union nested_role role)
{
	struct nested_root *r;

	for_each_root_rcu(n, r)
	{
		if (r->root_gfn != gfn || r->role_word != role.word || READ_ONCE(r->invalid))
			continue;
		if (nested_root_tryget(r))
			return r;
	}
	return NULL;
}

/* A new root (one reference), published on the list; under roots_lock. */
static struct nested_root *root_create(struct vmmu_nested *n, unsigned as, uint64_t gfn,
				       union nested_role role, uint64_t eptp, int *err)
{
	struct nested_root *r = calloc(1, sizeof(*r));
	uint64_t free_ids = ~n->root_ids & ((1ull << NESTED_ROOT_IDS) - 1);

	*err = -ENOMEM;
	if (!r)
		return NULL;
	if (nested_root_tables_init(r)) {
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	r->n = n;
	r->eptp = eptp;
	r->root_gfn = gfn;
	r->role_word = role.word;
	r->as = (uint8_t)as;
	r->refcount = 1;
	r->id = free_ids ? (uint16_t)__builtin_ctzll(free_ids) : NESTED_ROOT_IDS;
	/* Private until published: no lock needed to build it. */
	r->sp = nested_sp_alloc(r, gfn, role);
	if (r->sp) {
		int t = nested_track_add(n, as, gfn, r->id);

		if (t >= 0) {
			*err = 0;
		} else {
			nested_sp_discard(r, r->sp);
			r->sp = NULL;
		}
	}
	if (*err) {
		nested_flush_and_free(r);
		nested_root_tables_destroy(r);
		pthread_mutex_destroy(&r->lock);
		free(r);
		return NULL;
	}
	if (r->id < NESTED_ROOT_IDS) {
		n->root_ids |= 1ull << r->id;
		__atomic_store_n(&n->root_by_id[r->id], r, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&n->nr_roots, n->nr_roots + 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&n->roots_created, 1, __ATOMIC_RELAXED);
	roots_add(n, r);
	return r;
}

/* Find or create the root of (gfn, role): two vCPUs loading one EPTP at
 * once get one root (the creation looks again under roots_lock).  The
 * caller holds the MMU lock (read or write). */
static struct nested_root *root_get_or_create(struct vmmu_nested *n, unsigned as, uint64_t gfn,
					      union nested_role role, uint64_t eptp, int *err)
{
	struct nested_root *r;

	*err = 0;
	vmmu_rcu_read_lock();
	r = root_lookup(n, gfn, role);
	vmmu_rcu_read_unlock();
	if (r)
		return r;
	pthread_mutex_lock(&n->roots_lock);
	vmmu_rcu_read_lock();
	r = root_lookup(n, gfn, role);
	vmmu_rcu_read_unlock();
	if (!r)
		r = root_create(n, as, gfn, role, eptp, err);
	pthread_mutex_unlock(&n->roots_lock);
	return r;
}

bool nested_for_each_root(struct vmmu_nested *n, int as, uint64_t start, uint64_t end,
			  unsigned flags, nested_root_fn fn, void *arg, struct nested_free_batch *b)
{
	struct nested_root *r, *held = NULL;
	struct cds_list_head *pos;
	bool ret = false;

	vmmu_rcu_read_lock();
	for (pos = __atomic_load_n(&n->roots.next, __ATOMIC_ACQUIRE); pos != &n->roots;
	     pos = __atomic_load_n(&pos->next, __ATOMIC_ACQUIRE)) {
		r = cds_list_entry(pos, struct nested_root, link);
		if (as >= 0 && r->as != (unsigned)as)
			continue;
		if ((flags & NESTED_ITER_INVALID) && !READ_ONCE(r->invalid))
			continue;
		if ((flags & NESTED_ITER_OVERFLOW) && r->id < NESTED_ROOT_IDS)
			continue;
		/* The span is read without the root's lock.  A harvest (the
		 * caller took the dirty bits with an acquire exchange) sees
		 * the span of every leaf whose write was logged before that
		 * exchange: the fault released it with the bitmap's
		 * read-modify-write (vmmu_mark_page_dirty_sync). */
		if ((flags & NESTED_ITER_LEAVES) &&
		    (!__atomic_load_n(&r->nr_rmap_nodes, __ATOMIC_ACQUIRE) ||
		     __atomic_load_n(&r->leaf_lo, __ATOMIC_ACQUIRE) >= end ||
		     __atomic_load_n(&r->leaf_hi, __ATOMIC_ACQUIRE) < start)) {
			__atomic_fetch_add(&n->cross_root_skips, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (!nested_root_tryget(r))
			continue;
		/* The reference keeps r on the list: the walk goes on from it. */
		vmmu_rcu_read_unlock();
		if (held)
			nested_put_root(held);
		held = r;
		__atomic_fetch_add(&n->cross_root_visits, 1, __ATOMIC_RELAXED);
		nested_root_lock(r);
		if (!r->dead)
			ret |= fn(r, arg);
		nested_root_unlock_defer(r, b);
		vmmu_rcu_read_lock();
	}
	vmmu_rcu_read_unlock();
	if (held)
		nested_put_root(held);
	return ret;
}

/* ---- VM and vCPU life ----------------------------------------------------- */

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
			pthread_mutex_init(&n->roots_lock, NULL);
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

/* No vCPU left (each put its roots): nothing runs. */
void vmmu_nested_vm_destroy(struct vmmu_vm *vm)
{
	struct vmmu_nested *n = vm->nested;

	if (!n)
		return;
	WARN_ON(!cds_list_empty(&n->roots));
	vmmu_rcu_barrier(); /* tables and roots are freed after a grace period */
	nested_track_destroy(n);
	nested_sp_destroy(n);
	pthread_mutex_destroy(&n->lock);
	pthread_mutex_destroy(&n->roots_lock);
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
		nested_vcpu_lock(vm, NULL);
		if (nv->root)
			nested_put_root(nv->root);
		for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++)
			if (nv->prev[i].r)
				nested_put_root(nv->prev[i].r);
		nested_vcpu_unlock(vm);
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

/* Drop cached roots that became obsolete.  MMU lock held. */
static void drop_obsolete_prev(struct vmmu_nested_vcpu *nv)
{
	unsigned k = 0;

	for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++) {
		struct nested_root_info ri = nv->prev[i];

		if (ri.r && READ_ONCE(ri.r->invalid)) {
			nested_put_root(ri.r);
			continue;
		}
		if (ri.r)
			nv->prev[k++] = ri;
	}
	while (k < VMMU_NUM_PREV_ROOTS)
		nv->prev[k++] = (struct nested_root_info){ 0 };
}

bool vmmu_nested_root_stale(struct vmmu_vcpu *vcpu)
{
	struct nested_root *root = vcpu->nested->root;

	return !root || READ_ONCE(root->invalid);
}

int vmmu_nested_load_root(struct vmmu_vcpu *vcpu)
{
	struct vmmu_nested_vcpu *nv = vcpu->nested;
	struct vmmu_vm *vm = vcpu->vm;
	struct vmmu_nested *n = vm->nested;
	union nested_role role = root_role(vcpu, nv->eptp);
	uint64_t gfn = (nv->eptp & EPTP_ADDR_MASK) >> VMMU_PAGE_SHIFT;
	int r = 0;

	nested_vcpu_lock(vm, NULL);
	drop_obsolete_prev(nv);
	if (nv->root && READ_ONCE(nv->root->invalid)) {
		nested_put_root(nv->root);
		nv->root = NULL;
	}
	if (!nv->root)
		nv->root = root_get_or_create(n, vcpu->as_id, gfn, role, nv->eptp, &r);
	nested_vcpu_unlock(vm);
	return r;
}

void vmmu_nested_fill_entry(struct vmmu_vcpu *vcpu, struct vmmu_guest_entry *entry)
{
	struct nested_root *root = vcpu->nested->root;

	entry->root = root->sp->spt;
	entry->root_level = (int)root->sp->role.level;
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

	nested_vcpu_lock(vcpu->vm, NULL);
	drop_obsolete_prev(nv);
	/* The previous-roots cache: an L2 that ran before keeps its root. */
	for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++) {
		struct nested_root_info ri = nv->prev[i];

		if (ri.r && ri.eptp == eptp && !READ_ONCE(ri.r->invalid)) {
			memmove(&nv->prev[i], &nv->prev[i + 1],
				(VMMU_NUM_PREV_ROOTS - 1 - i) * sizeof(nv->prev[0]));
			nv->prev[VMMU_NUM_PREV_ROOTS - 1] = (struct nested_root_info){ 0 };
			nv->root = ri.r;
			vmmu_vcpu_stat_inc(&vcpu->mmu.stats.root_cache_hits);
			break;
		}
	}
	if (!nv->root)
		vmmu_vcpu_stat_inc(&vcpu->mmu.stats.root_cache_misses);
	nested_vcpu_unlock(vcpu->vm);

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

/* Put the current L2 root at the front of the cache.  MMU lock held. */
static void cache_current_root(struct vmmu_nested_vcpu *nv)
{
	if (!nv->root)
		return;
	if (READ_ONCE(nv->root->invalid)) {
		nested_put_root(nv->root);
	} else {
		if (nv->prev[VMMU_NUM_PREV_ROOTS - 1].r)
			nested_put_root(nv->prev[VMMU_NUM_PREV_ROOTS - 1].r);
		memmove(&nv->prev[1], &nv->prev[0],
			(VMMU_NUM_PREV_ROOTS - 1) * sizeof(nv->prev[0]));
		nv->prev[0] = (struct nested_root_info){ .eptp = nv->eptp, .r = nv->root };
	}
	nv->root = NULL;
}

int vmmu_vcpu_nested_leave(struct vmmu_vcpu *vcpu)
{
	struct vmmu_nested_vcpu *nv;

	if (!vcpu || !vcpu->nested || !vcpu->nested->in_l2 || vcpu_in_guest_mode(vcpu))
		return -EINVAL;
	nv = vcpu->nested;
	nested_vcpu_lock(vcpu->vm, NULL);
	cache_current_root(nv);
	nested_vcpu_unlock(vcpu->vm);
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
	nested_vcpu_lock(vcpu->vm, NULL);
	for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++) {
		struct nested_root_info *ri = &nv->prev[i];

		if (ri->r && (type == VMMU_INVEPT_GLOBAL || ri->eptp == eptp)) {
			nested_put_root(ri->r);
			*ri = (struct nested_root_info){ 0 };
		}
	}
	if (nv->root && (type == VMMU_INVEPT_GLOBAL || nv->eptp == eptp)) {
		nested_put_root(nv->root);
		nv->root = NULL; /* reloaded at the next entry */
	}
	/* Compact the cache, keeping the order. */
	{
		unsigned k = 0;

		for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++)
			if (nv->prev[i].r)
				nv->prev[k++] = nv->prev[i];
		while (k < VMMU_NUM_PREV_ROOTS)
			nv->prev[k++] = (struct nested_root_info){ 0 };
	}
	nested_vcpu_unlock(vcpu->vm);
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

/* ---- The emulated write ------------------------------------------------- */

/* Drop the EPT02 entries of @r derived from the EPT12 entries at [off,
 * off+len) of tracked page @gfn, in every table of @r shadowing it.  Under
 * @r's lock. */
static void zap_written_entries(struct nested_root *r, unsigned as, uint64_t gfn, unsigned off,
				size_t len)
{
	unsigned first = off / 8, last = (unsigned)((off + len - 1) / 8);
	bool again;

	/* A zap may free tables (even one of this gfn, if EPT12 points at
	 * itself): look the tables up again after each one. */
	do {
		again = false;
		for (struct nsp *sp = nested_sp_first_of_gfn(r, gfn); sp && !again;
		     sp = sp->hash_next) {
			if (sp->gfn != gfn || sp->role.direct || sp->role.smm != as)
				continue;
			for (unsigned i = first; i <= last && !again; i++)
				again = nested_zap_spte(r, sp, &sp->spt[i]);
		}
	} while (again);
}

struct written {
	unsigned as, off;
	uint64_t gfn;
	size_t len;
};

static bool zap_written_cb(struct nested_root *r, void *arg)
{
	struct written *w = arg;

	zap_written_entries(r, w->as, w->gfn, w->off, w->len);
	return false;
}

/*
 * Visit the roots whose bit is set in @bits (bit 63: every root with id
 * 63), each under its lock in turn.
 */
static void for_each_root_of_bits(struct vmmu_nested *n, uint64_t bits, nested_root_fn fn,
				  void *arg, struct nested_free_batch *b)
{
	for (unsigned id = 0; id < NESTED_ROOT_IDS; id++) {
		struct nested_root *r;

		if (!(bits & (1ull << id)))
			continue;
		vmmu_rcu_read_lock();
		r = __atomic_load_n(&n->root_by_id[id], __ATOMIC_ACQUIRE);
		if (r && !nested_root_tryget(r))
			r = NULL;
		vmmu_rcu_read_unlock();
		if (!r)
			continue;
		nested_root_lock(r);
		if (!r->dead)
			fn(r, arg);
		nested_root_unlock_defer(r, b);
		nested_put_root(r);
	}
	if (bits & (1ull << NESTED_ROOT_IDS)) {
		/* The overflow id: every root that has it (a visit too many
		 * is harmless: a root that does not shadow the page has no
		 * table of it). */
		nested_for_each_root(n, -1, 0, UINT64_MAX, NESTED_ITER_OVERFLOW, fn, arg, b);
	}
}

int vmmu_vcpu_emulate_write(struct vmmu_vcpu *vcpu, uint64_t gpa, const void *buf, size_t len)
{
	struct vmmu_vm *vm;
	struct vmmu_nested *n;
	const struct vmmu_memslot *slot;
	struct vmmu_host_page host;
	struct track_node *t;
	struct nested_free_batch batch = { 0 };
	uint64_t gfn, hva, bits;
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
	n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	if (!n) {
		r = -EFAULT; /* nothing is write-tracked in this VM */
		goto out_rcu;
	}
	nested_vcpu_lock(vm, NULL);
	t = nested_track_find(n, vcpu->as_id, gfn);
	if (!t) {
		nested_vcpu_unlock(vm);
		r = -EAGAIN;
		goto out_rcu;
	}
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
	/* From the store on, a nested fault whose walk may have read the old
	 * entry retries (it compares this sequence before installing); then
	 * the roots that shadow the page are read (sequentially consistent,
	 * against the fault's bit-then-sequence: 3.2 of the design). */
	__atomic_fetch_add(&n->ept12_wseq, 1, __ATOMIC_SEQ_CST);
	bits = __atomic_load_n(&t->roots, __ATOMIC_SEQ_CST);
	if (memslot_dirty_logged(slot))
		vmmu_mark_page_dirty(vcpu, slot, gfn);
	__atomic_fetch_add(&n->pte_write, 1, __ATOMIC_RELAXED);
	{
		struct written w = {
			.as = vcpu->as_id,
			.off = (unsigned)(gpa & (VMMU_PAGE_SIZE - 1)),
			.gfn = gfn,
			.len = len,
		};

		for_each_root_of_bits(n, bits, zap_written_cb, &w, &batch);
	}
	/* Flushed before returning: L2 no longer uses what the old entries
	 * said once this returns. */
	nested_batch_free(n, &batch);
	nested_vcpu_unlock(vm);
out_rcu:
	vmmu_rcu_read_unlock();
	return r;
}

/* ---- Dispatch entry points ---------------------------------------------- */

static bool zap_leaf_cb(struct nested_root *r, struct nsp *sp, uint64_t *sptep, uint64_t gfn,
			int level, void *arg)
{
	(void)gfn, (void)level, (void)arg;
	return nested_zap_spte(r, sp, sptep);
}

struct range_arg {
	unsigned as;
	uint64_t start, end;
	void *arg;
};

static bool zap_leaves_root_cb(struct nested_root *r, void *arg)
{
	struct range_arg *a = arg;

	return nested_rmap_for_each(r, a->as, a->start, a->end, zap_leaf_cb, NULL);
}

/*
 * The tracking barrier (docs/nested-per-root-locking.md 3.2), after a
 * fault made @gfn tracked and dropped its locks.  (1) With per-root locks,
 * the MMU lock taken for write and dropped: every TDP fault (and every
 * nested fault of another root) that looked at the track hash before the
 * node was published has left its read section, so its leaf, if any, is
 * installed (with the global lock the fault that published the node held
 * the write lock: none can exist).  (2) Under the read lock, the gfn's TDP
 * leaves and, root by root, the EPT02 leaves mapping it go.  (3) The gfn
 * is no longer pending: nested faults may rely on its tables.
 */
void nested_track_settle(struct vmmu_vm *vm, unsigned as, uint64_t gfn, uint64_t epoch)
{
	struct vmmu_nested *n = vm->nested;
	struct range_arg a = { .as = as, .start = gfn, .end = gfn + 1 };
	struct nested_free_batch batch = { 0 };

	if (!nested_global(vm)) {
		vmmu_write_lock(&vm->mmu_lock);
		vmmu_write_unlock(&vm->mmu_lock);
		__atomic_fetch_add(&n->track_barriers, 1, __ATOMIC_RELAXED);
	}
	vmmu_read_lock(&vm->mmu_lock);
	vmmu_tdp_mmu_zap_leafs(vm, as, gfn, gfn + 1, true);
	nested_for_each_root(n, (int)as, gfn, gfn + 1, NESTED_ITER_LEAVES, zap_leaves_root_cb, &a,
			     &batch);
	nested_batch_free(n, &batch);
	vmmu_read_unlock(&vm->mmu_lock);
	nested_track_done(n, as, gfn, epoch);
}

static bool zap_range_root_cb(struct nested_root *r, void *arg)
{
	struct range_arg *a = arg;
	bool ret = nested_rmap_for_each(r, a->as, a->start, a->end, zap_leaf_cb, NULL);

	/* EPT12 tables in the range: their memory changes or goes (host
	 * invalidation, memslot delete or move), so what EPT02 derived from
	 * them goes too (KVM zaps a deleted slot's shadow pages likewise). */
	if (a->arg) {
		uint64_t before = r->shadow_zapped;

		nested_zap_shadowed_range(r, a->as, a->start, a->end);
		ret |= r->shadow_zapped != before;
	}
	return ret;
}

bool vmmu_nested_zap_gfn_range(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	struct nested_free_batch batch = { 0 };
	struct range_arg a = { .as = as, .start = start, .end = end };
	bool r;

	if (!n)
		return false;
	/* Shadowed EPT12 pages are looked for in every root; leaves only in
	 * roots whose span meets the range. */
	a.arg = __atomic_load_n(&n->nr_tracked, __ATOMIC_ACQUIRE) ? &a : NULL;
	r = nested_for_each_root(n, (int)as, start, end, a.arg ? 0 : NESTED_ITER_LEAVES,
				 zap_range_root_cb, &a, &batch);
	nested_batch_free(n, &batch);
	return r;
}

/*
 * Invalidate-all, under the MMU lock for write: every root becomes
 * obsolete (no vCPU loads it again, no fault installs into it: faults
 * check under the root's lock); nothing is zapped here, O(roots).
 */
void vmmu_nested_invalidate_roots(struct vmmu_vm *vm)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	struct nested_root *r;

	if (!n)
		return;
	vmmu_rcu_read_lock();
	for_each_root_rcu(n, r) WRITE_ONCE(r->invalid, 1);
	vmmu_rcu_read_unlock();
}

struct zap_ctx {
	struct vmmu_vm *vm;
	struct nested_free_batch *b;
	int64_t mark; /* r->nr_sps at the last yield check */
};

/*
 * Empty @sp's subtree, children first, so that tables go a few at a time;
 * every 64 tables freed, yield if someone waits for the MMU lock: drop the
 * root's lock and the caller's read lock (the unlinked tables wait in the
 * batch, unflushed and not freed).  Returns true after a yield: the tree
 * may have changed meanwhile (a notifier zap, an emulated write), so the
 * caller starts again from the root.
 */
static bool zap_subtree(struct nested_root *r, struct nsp *sp, struct zap_ctx *c)
{
	int level = (int)sp->role.level;

	for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++) {
		uint64_t spte = nested_read_spte(&sp->spt[i]);

		if (!is_shadow_present_pte(spte))
			continue;
		if (!is_last_spte(spte, level)) {
			struct nsp *child = nsp_of(r->n, spte_to_child_pt(spte));

			if (child->nr_children && zap_subtree(r, child, c))
				return true;
		}
		nested_zap_spte(r, sp, &sp->spt[i]);
		if (c->mark - r->nr_sps < 64)
			continue;
		c->mark = r->nr_sps;
		if (!vmmu_rwlock_contended(&c->vm->mmu_lock))
			continue;
		nested_root_unlock_defer(r, c->b);
		vmmu_read_unlock(&c->vm->mmu_lock);
		vmmu_yield();
		vmmu_read_lock(&c->vm->mmu_lock);
		nested_root_lock(r);
		return true;
	}
	return false;
}

static bool zap_tree_cb(struct nested_root *r, void *arg)
{
	struct zap_ctx *c = arg;

	if (!READ_ONCE(r->invalid))
		return false;
	c->mark = r->nr_sps;
	while (zap_subtree(r, r->sp, c))
		;
	WARN_ON(r->pages[0] || r->pages[1] || r->pages[2]);
	return true;
}

/*
 * Empty the obsolete roots, under the MMU lock for read (the caller's,
 * dropped and taken again to yield to writers), root by root under its
 * lock: vCPUs refaulting into their new roots take other locks and never
 * wait for this.  An emptied root stays until its last vCPU reference
 * goes.
 */
void vmmu_nested_zap_invalidated_roots(struct vmmu_vm *vm)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	struct nested_free_batch batch = { 0 };
	struct zap_ctx c = { .vm = vm, .b = &batch };

	if (!n)
		return;
	nested_for_each_root(n, -1, 0, UINT64_MAX, NESTED_ITER_INVALID, zap_tree_cb, &c, &batch);
	nested_batch_free(n, &batch);
}

/* Dirty logging: a huge leaf goes (the slot is mapped with 4 KiB leaves
 * now), a small one loses W but stays MMU-writable, so that the next write
 * faults into the lockless path, which logs it. */
static bool wrprot_cb(struct nested_root *r, struct nsp *sp, uint64_t *sptep, uint64_t gfn,
		      int level, void *arg)
{
	uint64_t *mask = arg;
	uint64_t spte = nested_read_spte(sptep);

	/* A huge leaf overlapping the masked pages goes whatever its first
	 * gfn (the walk visits only leaves overlapping them). */
	if (level > PG_LEVEL_4K)
		return nested_zap_spte(r, sp, sptep);
	if (mask && (gfn < mask[1] || gfn >= mask[1] + 64 || !((mask[0] >> (gfn - mask[1])) & 1)))
		return false;
	if (!(spte & EPT_WRITABLE))
		return false;
	/* MMU-writable stays: the next write is fixed locklessly and logged. */
	__atomic_fetch_and(sptep, ~EPT_WRITABLE, __ATOMIC_ACQ_REL);
	r->flush_needed = true;
	return true;
}

static bool wrprot_root_cb(struct nested_root *r, void *arg)
{
	struct range_arg *a = arg;

	return nested_rmap_for_each(r, a->as, a->start, a->end, wrprot_cb, a->arg);
}

/*
 * Write protection for logging unlinks no table: the flush is the
 * caller's, once per harvest, before it reports dirty state (as for the
 * TDP engine).  Returns whether one is owed (tables freed meanwhile, by a
 * huge leaf's zap, are flushed and freed here).
 */
static bool wrprot_flush_owed(struct vmmu_nested *n, struct nested_free_batch *b)
{
	bool owed = b->flush;

	if (!b->nr)
		b->flush = false;
	nested_batch_free(n, b);
	return owed;
}

bool vmmu_nested_wrprot_range(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	struct nested_free_batch batch = { 0 };
	struct range_arg a = { .as = as, .start = start, .end = end };
	bool r;

	if (!n)
		return false;
	r = nested_for_each_root(n, (int)as, start, end, NESTED_ITER_LEAVES, wrprot_root_cb, &a,
				 &batch);
	r |= wrprot_flush_owed(n, &batch);
	return r;
}

bool vmmu_nested_wrprot_masked(struct vmmu_vm *vm, unsigned as, uint64_t base, uint64_t mask)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	struct nested_free_batch batch = { 0 };
	uint64_t arg[2] = { mask, base };
	struct range_arg a = { .as = as, .arg = arg };
	bool r;

	if (!n || !mask)
		return false;
	a.start = base + (uint64_t)__builtin_ctzll(mask);
	a.end = base + 64 - (uint64_t)__builtin_clzll(mask);
	r = nested_for_each_root(n, (int)as, a.start, a.end, NESTED_ITER_LEAVES, wrprot_root_cb, &a,
				 &batch);
	r |= wrprot_flush_owed(n, &batch);
	return r;
}

static bool age_cb(struct nested_root *r, struct nsp *sp, uint64_t *sptep, uint64_t gfn, int level,
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
			nested_zap_spte(r, sp, sptep); /* no A bit: unmap, the next
							* access faults it back */
	}
	return true;
}

static bool age_root_cb(struct nested_root *r, void *arg)
{
	struct range_arg *a = arg;

	return nested_rmap_for_each(r, a->as, a->start, a->end, age_cb, a->arg);
}

bool vmmu_nested_age_gfn_range(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end,
			       bool clear)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	struct nested_free_batch batch = { 0 };
	struct range_arg a = { .as = as, .start = start, .end = end, .arg = &clear };
	bool r;

	if (!n)
		return false;
	r = nested_for_each_root(n, (int)as, start, end, NESTED_ITER_LEAVES, age_root_cb, &a,
				 &batch);
	nested_batch_free(n, &batch);
	return r;
}

bool vmmu_nested_active(const struct vmmu_vm *vm)
{
	return __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE) != NULL;
}

/* ---- Stats -------------------------------------------------------------- */

#define RLX(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

int vmmu_nested_stats(struct vmmu_vm *vm, struct vmmu_nested_stats *out)
{
	struct vmmu_nested *n;
	struct nested_root *r;
	uint64_t rmap_nodes = 0, rmap_buckets = 0;
	int64_t sidecar = 0;

	if (!vm || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	if (!n)
		return 0;
	vmmu_nested_split_stats(vm, out);
	pthread_mutex_lock(&n->roots_lock);
	out->nested_faults = n->dead.faults;
	out->mmu_shadow_zapped = n->dead.shadow_zapped;
	out->mmu_cache_miss = n->dead.cache_miss;
	out->root_lock_contended = n->dead.lock_contended;
	out->root_lock_wait_ns = n->dead.lock_wait_ns;
	pthread_mutex_unlock(&n->roots_lock);
	/* Figures, not invariants: a root created or freed meanwhile may be
	 * counted twice or not at all. */
	vmmu_rcu_read_lock();
	for_each_root_rcu(n, r)
	{
		out->ept02_pages_4k += (uint64_t)RLX(r->pages[0]);
		out->ept02_pages_2m += (uint64_t)RLX(r->pages[1]);
		out->ept02_pages_1g += (uint64_t)RLX(r->pages[2]);
		out->shadow_pages += (uint64_t)RLX(r->nr_sps);
		out->mmu_shadow_zapped += RLX(r->shadow_zapped);
		out->mmu_cache_miss += RLX(r->cache_miss);
		out->nested_faults += RLX(r->faults);
		out->root_lock_contended += RLX(r->lock_contended);
		out->root_lock_wait_ns += RLX(r->lock_wait_ns);
		rmap_nodes += RLX(r->nr_rmap_nodes);
		rmap_buckets += 1ull << RLX(r->rmap_bits);
		sidecar += RLX(r->sidecar_bytes);
	}
	vmmu_rcu_read_unlock();
	out->roots = (uint64_t)RLX(n->nr_roots);
	out->mmu_pte_write = RLX(n->pte_write);
	out->mmu_unsync = 0;
	out->nested_exits = RLX(n->exits);
	out->write_tracked_gfns = (uint64_t)RLX(n->nr_tracked);
	out->rmap_bytes = rmap_nodes * sizeof(struct rmap_node) + (uint64_t)sidecar +
			  rmap_buckets * sizeof(struct rmap_node *);
	out->meta_bytes = out->shadow_pages * (sizeof(struct nsp) + sizeof(struct nsp *));
	out->roots_created = RLX(n->roots_created);
	out->track_barriers = RLX(n->track_barriers);
	out->ept12_retries = RLX(n->ept12_retries);
	out->cross_root_visits = RLX(n->cross_root_visits);
	out->cross_root_skips = RLX(n->cross_root_skips);
	return 0;
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
	vmmu_rcu_read_lock();
	for_each_root_rcu(n, r)
	{
		struct vmmu_nested_root_stats *o = &out[k];

		if (k == max)
			break;
		if (!__atomic_load_n(&r->refcount, __ATOMIC_ACQUIRE))
			continue; /* being freed */
		memset(o, 0, sizeof(*o));
		o->eptp = r->eptp;
		o->faults = RLX(r->faults);
		o->lock_acquired = RLX(r->lock_acquired);
		o->lock_contended = RLX(r->lock_contended);
		o->lock_wait_ns = RLX(r->lock_wait_ns);
		o->shadow_pages = (uint64_t)RLX(r->nr_sps);
		o->ept02_pages_4k = (uint64_t)RLX(r->pages[0]);
		o->ept02_pages_2m = (uint64_t)RLX(r->pages[1]);
		o->ept02_pages_1g = (uint64_t)RLX(r->pages[2]);
		o->invalid = READ_ONCE(r->invalid);
		k++;
	}
	vmmu_rcu_read_unlock();
	return (int)k;
}
