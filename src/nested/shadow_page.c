// SPDX-License-Identifier: MIT
/*
 * shadow_page.c - EPT02 table pages: allocation from the nested pool, the
 * (gfn, role) hash, parent records, zapping entries and freeing tables.
 *
 * Every function here works on one root's tables, under that root's lock
 * (nested_root_lock).  A table that is unlinked is queued on the root's
 * free list; nested_flush_and_free() (or, for an operation over several
 * roots, nested_batch_free() once after the last) flushes remote TLBs
 * (every vCPU in guest mode leaves it once, so no walker is inside the
 * table) and only then gives the page back to the pool, after an RCU
 * grace period.
 */
#include "nested_internal.h"

#include <stdlib.h>
#include <string.h>

int nested_sp_init(struct vmmu_nested *n, uint32_t max_pages)
{
	return vmmu_pool_init(&n->pool, max_pages, sizeof(struct nsp *));
}

void nested_sp_destroy(struct vmmu_nested *n)
{
	vmmu_pool_destroy(&n->pool);
}

int nested_root_tables_init(struct nested_root *r)
{
	CDS_INIT_LIST_HEAD(&r->sps);
	r->hash_bits = NESTED_HASH_BITS_MIN;
	r->rmap_bits = RMAP_HASH_BITS_MIN;
	r->hash = calloc(1ull << r->hash_bits, sizeof(*r->hash));
	r->rmap = calloc(1ull << r->rmap_bits, sizeof(*r->rmap));
	r->leaf_lo = UINT64_MAX;
	r->leaf_hi = 0;
	if (!r->hash || !r->rmap) {
		free(r->hash);
		free(r->rmap);
		return -ENOMEM;
	}
	return 0;
}

void nested_root_tables_destroy(struct nested_root *r)
{
	WARN_ON(!cds_list_empty(&r->sps));
	WARN_ON(r->nr_rmap_nodes || r->nr_free);
	for (size_t b = 0; b < (1ull << r->rmap_bits); b++)
		WARN_ON(r->rmap[b]);
	free(r->hash);
	free(r->rmap);
	free(r->free_list);
}

static unsigned sp_gfn_hash(const struct nested_root *r, uint64_t gfn)
{
	return (unsigned)((gfn * 0x9e3779b97f4a7c15ull) >> (64 - r->hash_bits));
}

/* Double the buckets under the root's lock (nobody reads the hash without
 * it).  Out of memory: keep the small hash. */
static void sp_hash_grow(struct nested_root *r)
{
	uint32_t old_bits = r->hash_bits;
	struct nsp **old = r->hash, **nh = calloc(1ull << (old_bits + 1), sizeof(*nh));

	if (!nh)
		return;
	r->hash = nh;
	r->hash_bits = old_bits + 1;
	for (size_t b = 0; b < (1ull << old_bits); b++) {
		struct nsp *sp = old[b], *next;

		for (; sp; sp = next) {
			unsigned nb = sp_gfn_hash(r, sp->gfn);

			next = sp->hash_next;
			sp->hash_next = nh[nb];
			nh[nb] = sp;
		}
	}
	free(old);
}

/*
 * The hash is keyed by gfn alone (the role is compared in the bucket), so
 * that the write path finds every table shadowing one EPT12 page.
 */
struct nsp *nested_sp_find(struct nested_root *r, uint64_t gfn, union nested_role role)
{
	for (struct nsp *sp = r->hash[sp_gfn_hash(r, gfn)]; sp; sp = sp->hash_next)
		if (sp->gfn == gfn && sp->role.word == role.word && sp != r->sp)
			return sp;
	return NULL;
}

struct nsp *nested_sp_first_of_gfn(struct nested_root *r, uint64_t gfn)
{
	return r->hash[sp_gfn_hash(r, gfn)];
}

struct nsp *nested_sp_alloc(struct nested_root *r, uint64_t gfn, union nested_role role)
{
	struct vmmu_nested *n = r->n;
	struct nsp *sp = nested_alloc_header(r);
	unsigned b;

	if (!sp)
		return NULL;
	sp->spt = nested_alloc_table(r);
	if (!sp->spt) {
		free(sp);
		return NULL;
	}
	__atomic_store_n((struct nsp **)vmmu_pool_meta(&n->pool, sp->spt), sp, __ATOMIC_RELEASE);
	sp->n = n;
	sp->r = r;
	sp->gfn = gfn;
	sp->role = role;
	if (r->nr_hashed >= 2ull << r->hash_bits && r->hash_bits < NESTED_HASH_BITS_MAX &&
	    !r->split_alloc)
		sp_hash_grow(r);
	b = sp_gfn_hash(r, gfn);
	sp->hash_next = r->hash[b];
	r->hash[b] = sp;
	r->nr_hashed++;
	cds_list_add_tail(&sp->link, &r->sps);
	__atomic_store_n(&r->nr_sps, r->nr_sps + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&r->cache_miss, r->cache_miss + 1, __ATOMIC_RELAXED);
	/* An indirect table shadows an EPT12 page: L1 writes to it must exit. */
	if (!role.direct)
		sp->tracked = 1;
	return sp;
}

static void sp_unhash(struct nested_root *r, struct nsp *sp)
{
	struct nsp **pp = &r->hash[sp_gfn_hash(r, sp->gfn)];

	while (*pp && *pp != sp)
		pp = &(*pp)->hash_next;
	if (!WARN_ON(!*pp)) {
		*pp = sp->hash_next;
		r->nr_hashed--;
	}
}

/*
 * A table is gone for good only after (1) a remote TLB flush, so no
 * processor walk is inside it, and (2) an RCU grace period, so no lockless
 * fault path (nested_fast_page_fault) still reads it or its metadata.
 */
static void sp_free_rcu(vmmu_rcu_head *head)
{
	struct nsp *sp = vmmu_container_of(head, struct nsp, rcu);

	vmmu_rcu_callback_enter();
	vmmu_pool_free(&sp->n->pool, sp->spt);
	free(sp->leaf_gfns);
	free(sp);
	vmmu_rcu_callback_exit();
}

static void queue_free(struct nested_root *r, struct nsp *sp)
{
	if (r->nr_free == r->cap_free) {
		size_t cap = r->cap_free ? r->cap_free * 2 : 64;
		struct nsp **l = realloc(r->free_list, cap * sizeof(*l));

		if (!l) {
			/* Cannot defer the flush: do it now. */
			vmmu_flush_remote_tlbs(r->n->vm);
			r->flush_needed = false;
			vmmu_call_rcu(&sp->rcu, sp_free_rcu);
			return;
		}
		r->free_list = l;
		r->cap_free = cap;
	}
	r->free_list[r->nr_free++] = sp;
}

static void sp_free(struct nested_root *r, struct nsp *sp)
{
	struct vmmu_nested *n = r->n;

	for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++)
		nested_zap_spte(r, sp, &sp->spt[i]);
	WARN_ON(sp->nr_leaves || sp->nr_children || sp->more_parents);
	sp_unhash(r, sp);
	cds_list_del(&sp->link);
	if (sp->tracked)
		nested_track_del(n, sp->role.smm, sp->gfn);
	if (sp->leaf_gfns)
		__atomic_store_n(&r->sidecar_bytes,
				 r->sidecar_bytes - (int64_t)(SPTE_ENT_PER_PAGE * sizeof(uint64_t)),
				 __ATOMIC_RELAXED);
	__atomic_store_n((struct nsp **)vmmu_pool_meta(&n->pool, sp->spt), NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&r->nr_sps, r->nr_sps - 1, __ATOMIC_RELAXED);
	__atomic_store_n(&r->shadow_zapped, r->shadow_zapped + 1, __ATOMIC_RELAXED);
	queue_free(r, sp);
}

void nested_sp_link(struct nested_root *r, uint64_t *sptep, struct nsp *child)
{
	struct nsp *parent = nsp_of(r->n, (uint64_t *)((uintptr_t)sptep & ~(uintptr_t)4095));

	if (!child->parent) {
		child->parent = sptep;
	} else {
		struct nsp_parent *p = nested_alloc_desc(r, sizeof(*p));

		/* Out of memory: do not share, the fault retries. */
		if (!p)
			return;
		p->sptep = sptep;
		p->next = child->more_parents;
		child->more_parents = p;
	}
	parent->nr_children++;
	/* A/D enabled type, all rights: the leaf decides. */
	__atomic_store_n(sptep, make_nonleaf_spte(child->spt, true), __ATOMIC_RELEASE);
}

/* Forget that @sptep points at @child; true if nothing points at it now. */
static bool sp_unlink_parent(struct nsp *child, uint64_t *sptep)
{
	if (child->parent == sptep) {
		struct nsp_parent *p = child->more_parents;

		if (p) {
			child->parent = p->sptep;
			child->more_parents = p->next;
			free(p);
		} else {
			child->parent = NULL;
		}
	} else {
		struct nsp_parent **pp = &child->more_parents;

		while (*pp && (*pp)->sptep != sptep)
			pp = &(*pp)->next;
		if (!WARN_ON(!*pp)) {
			struct nsp_parent *p = *pp;

			*pp = p->next;
			free(p);
		}
	}
	return !child->parent;
}

uint64_t nested_leaf_gfn(struct nsp *sp, unsigned idx)
{
	if (sp->role.direct)
		return sp->gfn + (uint64_t)idx * spte_pages_per((int)sp->role.level);
	uint64_t *gfns = __atomic_load_n(&sp->leaf_gfns, __ATOMIC_ACQUIRE);

	return gfns ? __atomic_load_n(&gfns[idx], __ATOMIC_RELAXED) - 1 : UINT64_MAX;
}

static void pages_add(struct nested_root *r, int level, int64_t d)
{
	__atomic_store_n(&r->pages[level - 1], r->pages[level - 1] + d, __ATOMIC_RELAXED);
}

bool nested_zap_spte(struct nested_root *r, struct nsp *sp, uint64_t *sptep)
{
	int level = (int)sp->role.level;
	unsigned idx = (unsigned)(sptep - sp->spt);
	uint64_t old;

	if (!is_shadow_present_pte(nested_read_spte(sptep)))
		return false;
	old = __atomic_exchange_n(sptep, SPTE_NONPRESENT, __ATOMIC_ACQ_REL);
	r->flush_needed = true;
	if (is_last_spte(old, level)) {
		uint64_t gfn = nested_leaf_gfn(sp, idx);

		nested_rmap_del(r, sp->role.smm, level, gfn, sp);
		if (!sp->role.direct)
			__atomic_store_n(&sp->leaf_gfns[idx], 0, __ATOMIC_RELAXED);
		sp->nr_leaves--;
		pages_add(r, level, -1);
	} else {
		struct nsp *child = nsp_of(r->n, spte_to_child_pt(old));

		sp->nr_children--;
		if (sp_unlink_parent(child, sptep))
			sp_free(r, child);
	}
	return true;
}

void nested_set_leaf(struct nested_root *r, struct nsp *sp, uint64_t *sptep, uint64_t spte,
		     uint64_t gfn)
{
	int level = (int)sp->role.level;
	unsigned idx = (unsigned)(sptep - sp->spt);
	uint64_t old = nested_read_spte(sptep);

	if (is_present_leaf(old, level) && spte_addr(old) == spte_addr(spte) &&
	    nested_leaf_gfn(sp, idx) == gfn) {
		/* Same page: only the rights change (A/D may change under us). */
		old = __atomic_exchange_n(sptep, spte, __ATOMIC_ACQ_REL);
		if (leaf_spte_change_needs_tlb_flush(old, spte) ||
		    ((old & EPT_RWX_MASK) & ~(spte & EPT_RWX_MASK)))
			r->flush_needed = true;
		return;
	}
	nested_zap_spte(r, sp, sptep);
	if (!sp->role.direct) {
		if (!sp->leaf_gfns) {
			uint64_t *gfns = calloc(SPTE_ENT_PER_PAGE, sizeof(uint64_t));

			if (!gfns)
				return; /* nothing installed: the fault comes back */
			__atomic_store_n(&sp->leaf_gfns, gfns, __ATOMIC_RELEASE);
			__atomic_store_n(&r->sidecar_bytes,
					 r->sidecar_bytes +
						 (int64_t)(SPTE_ENT_PER_PAGE * sizeof(uint64_t)),
					 __ATOMIC_RELAXED);
		}
		__atomic_store_n(&sp->leaf_gfns[idx], gfn + 1, __ATOMIC_RELAXED);
	}
	/* On the reverse map (and inside the root's span) before it exists. */
	if (!nested_rmap_add(r, sp->role.smm, level, gfn, sp)) {
		/* Out of memory: nothing installed, the fault returns -ENOMEM. */
		if (!sp->role.direct)
			__atomic_store_n(&sp->leaf_gfns[idx], 0, __ATOMIC_RELAXED);
		return;
	}
	sp->nr_leaves++;
	pages_add(r, level, 1);
	__atomic_store_n(sptep, spte, __ATOMIC_RELEASE);
}

void nested_root_zap_tree(struct nested_root *r)
{
	for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++)
		nested_zap_spte(r, r->sp, &r->sp->spt[i]);
	WARN_ON(r->pages[0] || r->pages[1] || r->pages[2]);
}

void nested_root_free_tables(struct nested_root *r)
{
	struct nsp *root = r->sp;

	if (root)
		sp_free(r, root);
}

void nested_flush_and_free(struct nested_root *r)
{
	if (r->flush_needed) {
		r->flush_needed = false;
		vmmu_flush_remote_tlbs(r->n->vm);
	}
	for (size_t i = 0; i < r->nr_free; i++)
		vmmu_call_rcu(&r->free_list[i]->rcu, sp_free_rcu);
	r->nr_free = 0;
}

/*
 * The op has not returned: nobody relies on the unflushed state, and the
 * pages are not back in the pool before the batch's flush.
 *
 * But another thread may: a second operation that takes this root's lock
 * after us finds the entries we zapped already gone, has nothing of its
 * own to flush, and would return while vCPUs still hold the translations
 * we removed (a slot delete returning while L2 still reads the slot's old
 * pages through a TLB).  So an op that leaves changes unflushed counts
 * itself in n->unflushed_ops before it drops the root's lock, and an op
 * that sees the count above 0 under a root's lock flushes before it
 * returns (the mutex orders the count's increment before that read).  The
 * same rule as the TDP engine's frozen entries: whoever meets another's
 * unflushed change does not return before a flush.  Called with @r locked.
 */
void nested_defer_free(struct nested_root *r, struct nested_free_batch *b)
{
	struct vmmu_nested *n = r->n;

	if (__atomic_load_n(&n->unflushed_ops, __ATOMIC_SEQ_CST))
		b->flush = true;
	b->flush |= r->flush_needed;
	r->flush_needed = false;
	if (!r->nr_free)
		goto count;
	if (b->nr + r->nr_free > b->cap) {
		size_t cap = vmmu_max(b->cap * 2, b->nr + r->nr_free);
		struct nsp **l = realloc(b->list, cap * sizeof(*l));

		if (!l) {
			/* Cannot defer: flush now, as a fault does. */
			b->flush = false;
			r->flush_needed = true;
			nested_flush_and_free(r);
			return;
		}
		b->list = l;
		b->cap = cap;
	}
	memcpy(&b->list[b->nr], r->free_list, r->nr_free * sizeof(struct nsp *));
	b->nr += r->nr_free;
	r->nr_free = 0;
count:
	if ((b->flush || b->nr) && !b->counted) {
		__atomic_fetch_add(&n->unflushed_ops, 1, __ATOMIC_SEQ_CST);
		b->counted = true;
	}
}

void nested_batch_free(struct vmmu_nested *n, struct nested_free_batch *b)
{
	if (b->flush || b->nr)
		vmmu_flush_remote_tlbs(n->vm);
	/* Only after the flush: others stop flushing on our behalf. */
	if (b->counted)
		__atomic_fetch_sub(&n->unflushed_ops, 1, __ATOMIC_SEQ_CST);
	for (size_t i = 0; i < b->nr; i++)
		vmmu_call_rcu(&b->list[i]->rcu, sp_free_rcu);
	free(b->list);
	*b = (struct nested_free_batch){ 0 };
}

/* A table of @r shadowing an EPT12 page in [start, end) of @as that still
 * has something to drop. */
static bool shadows_range(const struct nested_root *r, const struct nsp *sp, unsigned as,
			  uint64_t start, uint64_t end)
{
	if (sp->role.direct || sp->role.smm != as || sp->gfn < start || sp->gfn >= end)
		return false;
	return sp->parent || (sp == r->sp && !READ_ONCE(r->invalid)) || sp->nr_leaves ||
	       sp->nr_children;
}

/* Unlink @sp everywhere (the root becomes obsolete and empty). */
static void zap_shadow_page(struct nested_root *r, struct nsp *sp)
{
	if (!sp->parent) {
		WRITE_ONCE(r->invalid, 1);
		for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++)
			nested_zap_spte(r, sp, &sp->spt[i]);
		return;
	}
	/* The last unlink frees it: look at sp no more after that. */
	for (;;) {
		uint64_t *sptep = sp->parent;
		bool last = !sp->more_parents;

		nested_zap_spte(r, nsp_of(r->n, (uint64_t *)((uintptr_t)sptep & ~(uintptr_t)4095)),
				sptep);
		if (last)
			return;
	}
}

void nested_zap_shadowed_range(struct nested_root *r, unsigned as, uint64_t start, uint64_t end)
{
	bool again;

	do {
		struct nsp *hit = NULL;

		if (end - start <= 64) {
			for (uint64_t gfn = start; gfn < end && !hit; gfn++)
				for (struct nsp *sp = r->hash[sp_gfn_hash(r, gfn)]; sp && !hit;
				     sp = sp->hash_next)
					if (shadows_range(r, sp, as, start, end))
						hit = sp;
		} else {
			struct nsp *sp;

			cds_list_for_each_entry(sp, &r->sps, link)
				if (shadows_range(r, sp, as, start, end)) {
					hit = sp;
					break;
				}
		}
		again = hit != NULL;
		/* Zapping frees tables, maybe others of the range: look again. */
		if (hit)
			zap_shadow_page(r, hit);
	} while (again);
}

void nested_sp_discard(struct nested_root *r, struct nsp *sp)
{
	sp->tracked = 0; /* it took no write-track reference */
	sp_free(r, sp);
}
