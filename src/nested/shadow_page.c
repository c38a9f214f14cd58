// SPDX-License-Identifier: MIT
/*
 * shadow_page.c - EPT02 table pages: allocation from the nested pool, the
 * (gfn, role) hash, parent records, zapping entries and freeing tables.
 *
 * Every function here runs with the MMU lock held for write.  A table that
 * is unlinked is queued; nested_flush_and_free() flushes remote TLBs (every
 * vCPU in guest mode leaves it once, so no walker is inside the table) and
 * only then gives the page back to the pool.
 */
#include "nested_internal.h"

#include <stdlib.h>
#include <string.h>

int nested_sp_init(struct vmmu_nested *n, uint32_t max_pages)
{
	CDS_INIT_LIST_HEAD(&n->sps);
	return vmmu_pool_init(&n->pool, max_pages, sizeof(struct nsp *));
}

void nested_sp_destroy(struct vmmu_nested *n)
{
	WARN_ON(!cds_list_empty(&n->sps));
	free(n->free_list);
	vmmu_pool_destroy(&n->pool);
}

static unsigned sp_hash(uint64_t gfn, union nested_role role)
{
	uint64_t h = (gfn ^ ((uint64_t)role.word << 40)) * 0x9e3779b97f4a7c15ull;

	return (unsigned)(h >> (64 - NESTED_HASH_BITS));
}

static unsigned sp_gfn_hash(uint64_t gfn)
{
	return (unsigned)((gfn * 0x9e3779b97f4a7c15ull) >> (64 - NESTED_HASH_BITS));
}

/*
 * The hash is keyed by gfn alone (the role is compared in the bucket), so
 * that the write path finds every table shadowing one EPT12 page.
 */
struct nsp *nested_sp_find(struct vmmu_nested *n, uint64_t gfn, union nested_role role)
{
	(void)sp_hash;
	for (struct nsp *sp = n->hash[sp_gfn_hash(gfn)]; sp; sp = sp->hash_next)
		if (sp->gfn == gfn && sp->role.word == role.word && !sp->invalid)
			return sp;
	return NULL;
}

struct nsp *nested_sp_first_of_gfn(struct vmmu_nested *n, uint64_t gfn)
{
	return n->hash[sp_gfn_hash(gfn)];
}

struct nsp *nested_sp_alloc(struct vmmu_nested *n, uint64_t gfn, union nested_role role)
{
	struct nsp *sp = nested_alloc_header(n);
	unsigned b = sp_gfn_hash(gfn);

	if (!sp)
		return NULL;
	sp->spt = nested_alloc_table(n);
	if (!sp->spt) {
		free(sp);
		return NULL;
	}
	__atomic_store_n((struct nsp **)vmmu_pool_meta(&n->pool, sp->spt), sp, __ATOMIC_RELEASE);
	sp->n = n;
	sp->gfn = gfn;
	sp->role = role;
	sp->hash_next = n->hash[b];
	n->hash[b] = sp;
	cds_list_add_tail(&sp->link, &n->sps);
	n->nr_sps++;
	n->cache_miss++;
	/* An indirect table shadows an EPT12 page: L1 writes to it must exit. */
	if (!role.direct)
		sp->tracked = 1;
	return sp;
}

static void sp_unhash(struct vmmu_nested *n, struct nsp *sp)
{
	struct nsp **pp = &n->hash[sp_gfn_hash(sp->gfn)];

	while (*pp && *pp != sp)
		pp = &(*pp)->hash_next;
	if (!WARN_ON(!*pp))
		*pp = sp->hash_next;
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

static void queue_free(struct vmmu_nested *n, struct nsp *sp)
{
	if (n->nr_free == n->cap_free) {
		size_t cap = n->cap_free ? n->cap_free * 2 : 64;
		struct nsp **l = realloc(n->free_list, cap * sizeof(*l));

		if (!l) {
			/* Cannot defer the flush: do it now. */
			vmmu_flush_remote_tlbs(n->vm);
			n->flush_needed = false;
			vmmu_call_rcu(&sp->rcu, sp_free_rcu);
			return;
		}
		n->free_list = l;
		n->cap_free = cap;
	}
	n->free_list[n->nr_free++] = sp;
}

static void sp_free(struct vmmu_nested *n, struct nsp *sp)
{
	for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++)
		nested_zap_spte(n, sp, &sp->spt[i]);
	WARN_ON(sp->nr_leaves || sp->nr_children || sp->more_parents);
	sp_unhash(n, sp);
	cds_list_del(&sp->link);
	if (sp->tracked)
		nested_track_del(n, sp->role.smm, sp->gfn);
	if (sp->leaf_gfns)
		n->sidecar_bytes -= SPTE_ENT_PER_PAGE * sizeof(uint64_t);
	__atomic_store_n((struct nsp **)vmmu_pool_meta(&n->pool, sp->spt), NULL, __ATOMIC_RELEASE);
	n->nr_sps--;
	n->shadow_zapped++;
	if (sp->root) {
		struct nested_root *r = sp->root;

		n->dead_faults += r->faults;
		n->dead_lock_contended += r->lock_contended;
		n->dead_lock_wait_ns += r->lock_wait_ns;
		cds_list_del(&r->link);
		free(r);
		sp->root = NULL;
	}
	queue_free(n, sp);
}

void nested_sp_link(struct vmmu_nested *n, uint64_t *sptep, struct nsp *child)
{
	struct nsp *parent = nsp_of(n, (uint64_t *)((uintptr_t)sptep & ~(uintptr_t)4095));

	if (!child->parent) {
		child->parent = sptep;
	} else {
		struct nsp_parent *p = nested_alloc_desc(n, sizeof(*p));

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

bool nested_zap_spte(struct vmmu_nested *n, struct nsp *sp, uint64_t *sptep)
{
	int level = (int)sp->role.level;
	unsigned idx = (unsigned)(sptep - sp->spt);
	uint64_t old;

	if (!is_shadow_present_pte(nested_read_spte(sptep)))
		return false;
	old = __atomic_exchange_n(sptep, SPTE_NONPRESENT, __ATOMIC_ACQ_REL);
	n->flush_needed = true;
	if (is_last_spte(old, level)) {
		uint64_t gfn = nested_leaf_gfn(sp, idx);

		nested_rmap_del(n, sp->role.smm, level, gfn, sp);
		if (!sp->role.direct)
			__atomic_store_n(&sp->leaf_gfns[idx], 0, __ATOMIC_RELAXED);
		sp->nr_leaves--;
		n->pages[level - 1]--;
	} else {
		struct nsp *child = nsp_of(n, spte_to_child_pt(old));

		sp->nr_children--;
		if (sp_unlink_parent(child, sptep))
			sp_free(n, child);
	}
	return true;
}

void nested_set_leaf(struct vmmu_nested *n, struct nsp *sp, uint64_t *sptep, uint64_t spte,
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
			n->flush_needed = true;
		return;
	}
	nested_zap_spte(n, sp, sptep);
	if (!sp->role.direct) {
		if (!sp->leaf_gfns) {
			uint64_t *gfns = calloc(SPTE_ENT_PER_PAGE, sizeof(uint64_t));

			if (!gfns)
				return; /* nothing installed: the fault comes back */
			__atomic_store_n(&sp->leaf_gfns, gfns, __ATOMIC_RELEASE);
			n->sidecar_bytes += SPTE_ENT_PER_PAGE * sizeof(uint64_t);
		}
		__atomic_store_n(&sp->leaf_gfns[idx], gfn + 1, __ATOMIC_RELAXED);
	}
	if (!nested_rmap_add(n, sp->role.smm, level, gfn, sp)) {
		/* Out of memory: nothing installed, the fault returns -ENOMEM. */
		if (!sp->role.direct)
			__atomic_store_n(&sp->leaf_gfns[idx], 0, __ATOMIC_RELAXED);
		return;
	}
	sp->nr_leaves++;
	n->pages[level - 1]++;
	__atomic_store_n(sptep, spte, __ATOMIC_RELEASE);
}

void nested_put_root(struct vmmu_nested *n, struct nsp *root)
{
	nested_assert_locked(n->vm);
	if (WARN_ON(root->root_count <= 0))
		return;
	if (--root->root_count)
		return;
	n->nr_roots--;
	sp_free(n, root);
}

void nested_zap_all_locked(struct vmmu_nested *n)
{
	struct nsp *sp, *tmp;

	/* Roots first: zapping them frees every table below. */
	cds_list_for_each_entry_safe(sp, tmp, &n->sps, link) {
		if (sp->parent || sp->root_count <= 0)
			continue;
		WRITE_ONCE(sp->invalid, 1);
	}
	for (;;) {
		bool again = false;

		cds_list_for_each_entry(sp, &n->sps, link) {
			if (sp->parent || !sp->invalid || (!sp->nr_leaves && !sp->nr_children))
				continue;
			for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++)
				nested_zap_spte(n, sp, &sp->spt[i]);
			/* The list may have lost entries: start again. */
			again = true;
			break;
		}
		if (!again)
			break;
	}
	WARN_ON(n->pages[0] || n->pages[1] || n->pages[2]);
}

void nested_flush_and_free(struct vmmu_nested *n)
{
	if (n->flush_needed) {
		n->flush_needed = false;
		vmmu_flush_remote_tlbs(n->vm);
	}
	for (size_t i = 0; i < n->nr_free; i++)
		vmmu_call_rcu(&n->free_list[i]->rcu, sp_free_rcu);
	n->nr_free = 0;
}

/* A table shadowing an EPT12 page in [start, end) of @as that still has
 * something to drop. */
static bool shadows_range(const struct nsp *sp, unsigned as, uint64_t start, uint64_t end)
{
	if (sp->role.direct || sp->role.smm != as || sp->gfn < start || sp->gfn >= end)
		return false;
	return sp->parent || !sp->invalid || sp->nr_leaves || sp->nr_children;
}

/* Unlink @sp everywhere (a root becomes obsolete and empty). */
static void zap_shadow_page(struct vmmu_nested *n, struct nsp *sp)
{
	if (!sp->parent) {
		WRITE_ONCE(sp->invalid, 1);
		for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++)
			nested_zap_spte(n, sp, &sp->spt[i]);
		return;
	}
	/* The last unlink frees it: look at sp no more after that. */
	for (;;) {
		uint64_t *sptep = sp->parent;
		bool last = !sp->more_parents;

		nested_zap_spte(n, nsp_of(n, (uint64_t *)((uintptr_t)sptep & ~(uintptr_t)4095)),
				sptep);
		if (last)
			return;
	}
}

void nested_zap_shadowed_range(struct vmmu_nested *n, unsigned as, uint64_t start, uint64_t end)
{
	bool again;

	nested_assert_locked(n->vm);
	do {
		struct nsp *hit = NULL;

		if (end - start <= 64) {
			for (uint64_t gfn = start; gfn < end && !hit; gfn++)
				for (struct nsp *sp = n->hash[sp_gfn_hash(gfn)]; sp && !hit;
				     sp = sp->hash_next)
					if (shadows_range(sp, as, start, end))
						hit = sp;
		} else {
			struct nsp *sp;

			cds_list_for_each_entry(sp, &n->sps, link)
				if (shadows_range(sp, as, start, end)) {
					hit = sp;
					break;
				}
		}
		again = hit != NULL;
		/* Zapping frees tables, maybe others of the range: look again. */
		if (hit)
			zap_shadow_page(n, hit);
	} while (again);
}

void nested_sp_discard(struct vmmu_nested *n, struct nsp *sp)
{
	sp->tracked = 0; /* it took no write-track reference */
	sp_free(n, sp);
}
