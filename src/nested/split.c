// SPDX-License-Identifier: MIT
/*
 * split.c - eager splitting of huge EPT02 leaves when dirty logging starts
 * on an L1 slot (or, with initially-all-set, when a range of the log is
 * cleared), the three per-VM split caches, and shrinking them under memory
 * pressure.  See docs/design.md and inventory section 1.15.
 *
 * Without it, a huge EPT02 leaf over a logged slot is zapped when logging
 * starts and every L2 write to one of its 4 KiB pages takes the locked
 * nested fault (the MMU lock for write): the contention seed 000 measures.
 * Here each huge leaf found through the reverse map at 1 GiB, then 2 MiB,
 * is replaced by a link to a direct child table (role: one level down,
 * direct, the EPT12 rights) holding the 512 pieces, each already
 * write-protected for logging (W clear, MMU-writable kept, so the first
 * write is fixed and logged by the lockless nested fast fault).
 *
 * The caches.  A split runs under the engine's lock and must not call the
 * allocator there, so its objects come from three caches topped up with
 * every MMU lock dropped (the slots lock held): split_shadow_page_cache
 * (table pages from the nested pool), split_page_header_cache (struct nsp)
 * and split_desc_cache (reverse-map nodes and parent records, both freed
 * with free()).  Minimum of the desc cache, from this reverse map's worst
 * case for one split, derived the way seed 001 derives 513 for KVM's
 * descriptors: the reverse map is by chunk (rmap.c), one node per (table,
 * chunk of 512 leaf frames).  The 512 pieces of one huge leaf have L1 gfns
 * base + i * size with base aligned to 512 * size, so they all fall in one
 * chunk of one table: at most one new node.  Plus one record to extend the
 * parent list of the child table, when the child already existed (a direct
 * table shared with another huge leaf's split or a fault).  Dropping the
 * huge leaf from its node allocates nothing.  So the minimum is 1 + 1 = 2
 * (KVM: SPTE_ENT_PER_PAGE + 1 = 513), the capacity twice that, so that two
 * huge leaves split without dropping the lock.  Headers and table pages:
 * one per split, minimum 1; their capacity is the desc cache's (4), so
 * that the common split (a new child: one desc) does three per top-up
 * (the fourth would find the desc cache below its minimum).
 *
 * Lifetime: kept when logging stops (a VMM may log some slots and not
 * others); freed at VM destruction, when eager splitting is turned off with
 * vmmu_vm_set_eager_split(), and by vmmu_vm_shrink().
 *
 * Allocation failure: a top-up that cannot reach its minimum stops the
 * splitting; the huge leaves left lose W (they stay huge) and a write to
 * one takes the locked nested fault, which replaces it by 4 KiB leaves
 * (it maps a logged slot at 4 KiB) and logs the page.  Nothing is lost.
 */
#include "nested_internal.h"

#include <stdlib.h>
#include <string.h>

#define SPLIT_DESC_SIZE                                                                    \
	(sizeof(struct rmap_node) > sizeof(struct nsp_parent) ? sizeof(struct rmap_node) : \
								sizeof(struct nsp_parent))
static_assert(NESTED_SPLIT_DESC_MIN == 1 + 1, "one chunk node plus one parent record");

/* ---- The caches ---------------------------------------------------- */

static void *cache_pop(struct nested_obj_cache *c)
{
	int32_t k = c->nobjs - 1;

	if (k < 0)
		return NULL;
	/* nobjs is read by the stats without the slots lock. */
	__atomic_store_n(&c->nobjs, k, __ATOMIC_RELAXED);
	return c->objs[k];
}

/* @r->split_alloc is set only by the splitter, which holds the slots lock
 * (the caches' lock) and @r's lock: a fault in another root never pops the
 * caches (interleaving 12 of the design). */
void *nested_alloc_desc(struct nested_root *r, size_t size)
{
	if (!r->split_alloc)
		return malloc(size);
	if (WARN_ON(size > SPLIT_DESC_SIZE))
		return NULL;
	return cache_pop(&r->n->split_desc_cache);
}

struct nsp *nested_alloc_header(struct nested_root *r)
{
	struct nsp *sp;

	if (!r->split_alloc)
		return calloc(1, sizeof(*sp));
	sp = cache_pop(&r->n->split_page_header_cache);
	if (sp)
		memset(sp, 0, sizeof(*sp));
	return sp;
}

uint64_t *nested_alloc_table(struct nested_root *r)
{
	if (!r->split_alloc)
		return vmmu_pool_alloc(&r->n->pool);
	/* Pool pages come out zeroed and stay so in the cache. */
	return cache_pop(&r->n->split_shadow_page_cache);
}

enum {
	CACHE_DESC,
	CACHE_HEADER,
	CACHE_PAGE
};

static void *cache_new_obj(struct vmmu_nested *n, int kind)
{
	switch (kind) {
	case CACHE_DESC:
		return malloc(SPLIT_DESC_SIZE);
	case CACHE_HEADER:
		return malloc(sizeof(struct nsp));
	default:
		return vmmu_pool_alloc(&n->pool);
	}
}

static void cache_free_obj(struct vmmu_nested *n, int kind, void *obj)
{
	if (kind == CACHE_PAGE)
		vmmu_pool_free(&n->pool, obj); /* never linked: no walker saw it */
	else
		free(obj);
}

static struct nested_obj_cache *cache_of(struct vmmu_nested *n, int kind)
{
	return kind == CACHE_DESC   ? &n->split_desc_cache :
	       kind == CACHE_HEADER ? &n->split_page_header_cache :
				      &n->split_shadow_page_cache;
}

static int cache_min(int kind)
{
	return kind == CACHE_DESC ? NESTED_SPLIT_DESC_MIN : 1;
}

/* Twice the desc minimum for all three: two splits in the worst case, and
 * three in the common one (a new child table takes one desc). */
static int cache_capacity(int kind)
{
	(void)kind;
	return 2 * NESTED_SPLIT_DESC_MIN;
}

/* Fill up to capacity; a failure is an error only below the minimum.
 * Unlike KVM's topup, a cache at or above its minimum is filled too: the
 * lock is dropped for one of them anyway, and so each top-up is good for
 * two splits whatever the cache that ran low. */
static int cache_topup(struct vmmu_nested *n, int kind)
{
	struct nested_obj_cache *c = cache_of(n, kind);
	int min = cache_min(kind), cap = cache_capacity(kind);

	if (!c->objs) {
		c->objs = calloc((size_t)cap, sizeof(void *));
		if (!c->objs)
			return -ENOMEM;
		c->capacity = cap;
	}
	while (c->nobjs < c->capacity) {
		void *o = cache_new_obj(n, kind);

		if (!o)
			return c->nobjs >= min ? 0 : -ENOMEM;
		c->objs[c->nobjs] = o;
		/* Read by the stats without the slots lock. */
		__atomic_store_n(&c->nobjs, c->nobjs + 1, __ATOMIC_RELAXED);
	}
	return 0;
}

static int topup_split_caches(struct vmmu_nested *n)
{
	int r;

	__atomic_fetch_add(&n->split_topups, 1, __ATOMIC_RELAXED);
	r = cache_topup(n, CACHE_DESC);
	if (!r)
		r = cache_topup(n, CACHE_HEADER);
	if (!r)
		r = cache_topup(n, CACHE_PAGE);
	return r;
}

static bool split_caches_ready(struct vmmu_nested *n)
{
	return n->split_desc_cache.nobjs >= NESTED_SPLIT_DESC_MIN &&
	       n->split_page_header_cache.nobjs >= 1 && n->split_shadow_page_cache.nobjs >= 1;
}

uint64_t nested_split_free_caches(struct vmmu_nested *n, uint64_t max)
{
	uint64_t freed = 0;

	for (int kind = CACHE_DESC; kind <= CACHE_PAGE; kind++) {
		struct nested_obj_cache *c = cache_of(n, kind);

		while (c->nobjs && freed < max) {
			cache_free_obj(n, kind, c->objs[c->nobjs - 1]);
			__atomic_store_n(&c->nobjs, c->nobjs - 1, __ATOMIC_RELAXED);
			freed++;
		}
		if (!c->nobjs) {
			free(c->objs);
			c->objs = NULL;
			c->capacity = 0;
		}
	}
	return freed;
}

/* ---- The split walk ------------------------------------------------ */

struct split_walk {
	bool need_topup; /* a cache is below its minimum: stop, top up */
	bool failed; /* stop splitting */
};

/* The EPT12 rights of the child's role.  Below a direct table they are
 * its own; below an indirect one they are read from the leaf (R and X are
 * EPT12's; W is EPT12's unless L0 or EPT12's clean D bit took it: then the
 * fault path finds a different role, zaps this child and builds its own). */
static unsigned child_access(const struct nsp *sp, uint64_t huge)
{
	if (sp->role.direct)
		return sp->role.access;
	return (huge & EPT_READABLE ? 1u : 0u) |
	       (is_writable_pte(huge) || is_mmu_writable_spte(huge) ? 2u : 0u) |
	       (huge & EPT_EXECUTABLE ? 4u : 0u);
}

static void split_one(struct nested_root *r, struct nsp *sp, uint64_t *sptep, uint64_t gfn,
		      int level, struct split_walk *w)
{
	uint64_t huge = nested_read_spte(sptep), per = spte_pages_per(level - 1);
	union nested_role role = sp->role;
	struct nsp *child;

	role.level = (unsigned)(level - 1);
	role.direct = 1;
	role.access = child_access(sp, huge);
	child = nested_sp_find(r, gfn, role);
	if (!child) {
		child = nested_sp_alloc(r, gfn, role);
		if (WARN_ON(!child)) { /* the caches were checked */
			w->failed = true;
			return;
		}
		/* A new table: no walker sees it before the link, so the 512
		 * pieces are written plainly and go on the reverse map as one
		 * count (they share one chunk). */
		if (WARN_ON(!nested_rmap_add_n(r, role.smm, level - 1, gfn, child,
					       SPTE_ENT_PER_PAGE))) {
			w->failed = true; /* unlinked, empty: freed by zap-all */
			return;
		}
		for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++)
			child->spt[i] = make_small_spte(huge, level, i) & ~EPT_WRITABLE;
		child->nr_leaves = SPTE_ENT_PER_PAGE;
		__atomic_store_n(&r->pages[level - 2], r->pages[level - 2] + SPTE_ENT_PER_PAGE,
				 __ATOMIC_RELAXED);
	}
	/* The huge leaf goes off its reverse map, the link takes its place
	 * (the child's parent entry recorded); a vCPU meeting the entry in
	 * between faults and waits for the lock. */
	nested_zap_spte(r, sp, sptep);
	nested_sp_link(r, sptep, child);
	if (WARN_ON(!is_shadow_present_pte(nested_read_spte(sptep)))) {
		w->failed = true; /* unmapped: faults map it again */
		return;
	}
	for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++) {
		uint64_t piece = make_small_spte(huge, level, i) & ~EPT_WRITABLE;

		if (is_shadow_present_pte(nested_read_spte(&child->spt[i])))
			continue; /* a shared child: already mapped */
		nested_set_leaf(r, child, &child->spt[i], piece, gfn + i * per);
	}
	__atomic_fetch_add(&r->n->split_huge, 1, __ATOMIC_RELAXED);
}

static bool split_cb(struct nested_root *r, struct nsp *sp, uint64_t *sptep, uint64_t gfn,
		     int level, void *arg)
{
	struct split_walk *w = arg;

	if (w->need_topup || w->failed || level == PG_LEVEL_4K)
		return false;
	if (!is_present_leaf(nested_read_spte(sptep), level))
		return false;
	if (!split_caches_ready(r->n)) {
		w->need_topup = true;
		return false;
	}
	split_one(r, sp, sptep, gfn, level, w);
	return true;
}

/* Write protection for logging: W goes, MMU-writable stays.  A 4 KiB
 * leaf's next write is fixed locklessly and logged; a huge leaf's (left
 * huge by a failure) takes the locked fault, which maps 4 KiB leaves. */
static bool protect_cb(struct nested_root *r, struct nsp *sp, uint64_t *sptep, uint64_t gfn,
		       int level, void *arg)
{
	uint64_t spte = nested_read_spte(sptep);

	(void)sp, (void)gfn, (void)level, (void)arg;
	if (!(spte & EPT_WRITABLE))
		return false;
	__atomic_fetch_and(sptep, ~EPT_WRITABLE, __ATOMIC_ACQ_REL);
	r->flush_needed = true;
	return true;
}

struct split_arg {
	unsigned as;
	uint64_t start, end;
	bool protect;
	struct split_walk w;
};

/* Protect first (with @protect every leaf, else the huge ones): the
 * pieces copy the huge leaf's rights without W, and a huge leaf that is
 * not split (an allocation failed) stays write-protected. */
static bool protect_root_cb(struct nested_root *r, void *arg)
{
	struct split_arg *a = arg;

	return nested_rmap_for_each_level(r, a->as, a->start, a->end,
					  a->protect ? PG_LEVEL_4K : PG_LEVEL_2M,
					  SPTE_MAX_HUGEPAGE_LEVEL, protect_cb, NULL);
}

static bool split_root_cb(struct nested_root *r, void *arg)
{
	struct split_arg *a = arg;

	if (a->w.need_topup || a->w.failed)
		return false;
	if (!r->pages[PG_LEVEL_2M - 1] && !r->pages[PG_LEVEL_1G - 1])
		return false;
	r->split_alloc = 1;
	/* 1 GiB leaves first: their 2 MiB pieces are split next. */
	for (int level = SPTE_MAX_HUGEPAGE_LEVEL; level > PG_LEVEL_4K; level--)
		nested_rmap_for_each_level(r, a->as, a->start, a->end, level, level, split_cb,
					   &a->w);
	r->split_alloc = 0;
	return false;
}

/*
 * Split (and with @protect, write-protect) the EPT02 leaves of [start,
 * end) of address space @as, root by root under each root's lock.  Called
 * with the slots lock (the caches' lock) and the MMU lock for read held;
 * the MMU lock is dropped and taken again around each top-up of the
 * caches (no root lock held then).  Entries changed are flushed once,
 * before it returns; tables unlinked meanwhile are freed only after that
 * flush.  Returns -ENOMEM if a top-up failed (the leaves left huge are
 * write-protected).
 */
int vmmu_nested_split_range(struct vmmu_vm *vm, unsigned as, uint64_t start, uint64_t end,
			    bool protect)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	struct nested_free_batch batch = { 0 };
	struct split_arg a = { .as = as, .start = start, .end = end, .protect = protect };
	int r = 0;

	if (!n || start >= end)
		return 0;
	nested_for_each_root(n, (int)as, start, end, NESTED_ITER_LEAVES, protect_root_cb, &a,
			     &batch);
	for (;;) {
		a.w = (struct split_walk){ 0 };
		nested_for_each_root(n, (int)as, start, end, NESTED_ITER_LEAVES, split_root_cb, &a,
				     &batch);
		if (!a.w.need_topup)
			break;
		vmmu_read_unlock(&vm->mmu_lock);
		r = topup_split_caches(n);
		vmmu_read_lock(&vm->mmu_lock);
		if (r) {
			/* The huge leaves left were write-protected above. */
			__atomic_fetch_add(&n->split_failed, 1, __ATOMIC_RELAXED);
			break;
		}
	}
	nested_batch_free(n, &batch);
	if (r)
		return r;
	return a.w.failed ? -ENOMEM : 0;
}

void vmmu_nested_free_eager_page_split_caches(struct vmmu_vm *vm)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);

	if (n)
		nested_split_free_caches(n, UINT64_MAX);
}

void vmmu_nested_split_stats(struct vmmu_vm *vm, struct vmmu_nested_stats *out)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	int32_t d, h, p;

	if (!n)
		return;
	d = __atomic_load_n(&n->split_desc_cache.nobjs, __ATOMIC_RELAXED);
	h = __atomic_load_n(&n->split_page_header_cache.nobjs, __ATOMIC_RELAXED);
	p = __atomic_load_n(&n->split_shadow_page_cache.nobjs, __ATOMIC_RELAXED);
	out->split_desc_cache_objs = (uint64_t)d;
	out->split_desc_cache_bytes = (uint64_t)d * SPLIT_DESC_SIZE;
	out->split_page_header_cache_objs = (uint64_t)h;
	out->split_page_header_cache_bytes = (uint64_t)h * sizeof(struct nsp);
	out->split_shadow_page_cache_objs = (uint64_t)p;
	out->split_shadow_page_cache_bytes = (uint64_t)p * VMMU_PAGE_SIZE;
	out->split_topups = __atomic_load_n(&n->split_topups, __ATOMIC_RELAXED);
	out->split_huge_pages = __atomic_load_n(&n->split_huge, __ATOMIC_RELAXED);
	out->split_failures = __atomic_load_n(&n->split_failed, __ATOMIC_RELAXED);
}

/* ---- Public calls -------------------------------------------------- */

int vmmu_vm_set_eager_split(struct vmmu_vm *vm, bool enable)
{
	if (!vm)
		return -EINVAL;
	pthread_mutex_lock(&vm->slots_lock);
	WRITE_ONCE(vm->eager_split, enable);
	if (!enable)
		vmmu_nested_free_eager_page_split_caches(vm);
	pthread_mutex_unlock(&vm->slots_lock);
	return 0;
}

/* Drop the obsolete roots a vCPU keeps in its previous-roots cache (never
 * its current root: a running L2 may use it).  MMU lock held for write. */
static uint64_t drop_obsolete_cached_roots(struct vmmu_nested_vcpu *nv, uint64_t max)
{
	uint64_t freed = 0;
	unsigned k = 0;

	for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++) {
		struct nested_root_info ri = nv->prev[i];

		if (ri.r && READ_ONCE(ri.r->invalid) && freed < max) {
			freed += __atomic_load_n(&ri.r->refcount, __ATOMIC_RELAXED) == 1;
			nested_put_root(ri.r);
			continue;
		}
		if (ri.r)
			nv->prev[k++] = ri;
	}
	while (k < VMMU_NUM_PREV_ROOTS)
		nv->prev[k++] = (struct nested_root_info){ 0 };
	return freed;
}

int vmmu_vm_shrink(struct vmmu_vm *vm, uint64_t nr_to_scan, uint64_t *freed)
{
	struct vmmu_nested *n;
	uint64_t f = 0;

	if (!vm || !freed)
		return -EINVAL;
	*freed = 0;
	n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	if (!n || !nr_to_scan)
		return 0;
	pthread_mutex_lock(&vm->slots_lock);
	f = nested_split_free_caches(n, nr_to_scan);
	pthread_mutex_unlock(&vm->slots_lock);
	if (f < nr_to_scan) {
		/* Order: vcpus_lock, then the MMU lock (a vCPU cannot go away
		 * while its cache is looked at).  For write in both modes: the
		 * previous-roots caches belong to their vCPUs, which change them
		 * under the MMU lock held for read (per-root mode); only the
		 * write lock keeps them still while another thread edits them. */
		pthread_mutex_lock(&vm->vcpus_lock);
		vmmu_write_lock(&vm->mmu_lock);
		for (unsigned i = 0; i < VMMU_MAX_VCPUS && f < nr_to_scan; i++) {
			struct vmmu_vcpu *vcpu = vm->vcpus[i];
			struct vmmu_nested_vcpu *nv =
				vcpu ? __atomic_load_n(&vcpu->nested, __ATOMIC_ACQUIRE) : NULL;

			if (nv)
				f += drop_obsolete_cached_roots(nv, nr_to_scan - f);
		}
		vmmu_write_unlock(&vm->mmu_lock);
		pthread_mutex_unlock(&vm->vcpus_lock);
	}
	*freed = f;
	return 0;
}
