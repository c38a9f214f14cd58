// SPDX-License-Identifier: MIT
/*
 * write_track.c - write tracking of the EPT12 pages vmmu shadows (KVM's
 * gfn_write_track), without unsync: a tracked L1 gfn is never mapped
 * writable by the TDP engine, and no huge TDP leaf covers it.
 *
 * A hash of counters keyed by (address space, level, frame): level 1 counts
 * the shadow pages of one gfn, levels 2 and 3 count the tracked gfns inside
 * a 2 MiB and a 1 GiB frame, so the TDP fault path asks three lookups at
 * most (and none when nothing is tracked).  It is keyed by gfn rather than
 * kept in the memslots so that it survives memslot flag changes, which
 * replace the slot objects.
 *
 * Changed under the MMU lock held for write; read by the TDP fault path
 * under the lock held for read.  A gfn that becomes tracked may still have
 * writable TDP leaves, made before: it stays "pending" until someone has
 * zapped them (nested_mmu.c does it with the lock held for read, then calls
 * nested_track_done()), and no nested fault relies on an EPT12 page while
 * it is pending.
 */
#include "nested_internal.h"

#include <stdlib.h>

static uint64_t track_key(unsigned as, int level, uint64_t gfn)
{
	uint64_t frame = gfn >> ((unsigned)(level - 1) * SPTE_LEVEL_BITS);

	return ((uint64_t)as << 63) | ((uint64_t)level << 58) | frame;
}

static unsigned track_bucket(uint64_t key)
{
	return (unsigned)((key * 0x9e3779b97f4a7c15ull) >> (64 - TRACK_HASH_BITS));
}

static struct track_node *find_key(struct vmmu_nested *n, uint64_t key)
{
	for (struct track_node *t = __atomic_load_n(&n->track[track_bucket(key)], __ATOMIC_ACQUIRE);
	     t; t = t->next)
		if (t->key == key)
			return t;
	return NULL;
}

struct track_node *nested_track_find(struct vmmu_nested *n, unsigned as, uint64_t gfn)
{
	return find_key(n, track_key(as, PG_LEVEL_4K, gfn));
}

/*
 * Count one more (or one less) at @key; returns the node's new count.  A
 * new node comes from *@spare (allocated by the caller beforehand, so that
 * nothing fails half way); with none left, 0 and nothing changed.
 */
static uint32_t key_add(struct vmmu_nested *n, uint64_t key, int delta, struct track_node **spare)
{
	struct track_node **pp = &n->track[track_bucket(key)], *t;

	for (t = *pp; t; pp = &t->next, t = t->next)
		if (t->key == key)
			break;
	if (!t) {
		if (WARN_ON(delta < 0) || !spare || !*spare)
			return 0;
		t = *spare;
		*spare = NULL;
		t->key = key;
		t->next = n->track[track_bucket(key)];
		__atomic_store_n(&n->track[track_bucket(key)], t, __ATOMIC_RELEASE);
		pp = NULL;
	}
	t->count += (uint32_t)delta;
	if (!t->count) {
		/* pp points at the link to t (t was found, not created). */
		*pp = t->next;
		free(t);
		return 0;
	}
	return t->count;
}

static bool zap_cb(struct vmmu_nested *n, struct nsp *sp, uint64_t *sptep, uint64_t gfn, int level,
		   void *arg)
{
	(void)gfn, (void)level, (void)arg;
	return nested_zap_spte(n, sp, sptep);
}

int nested_track_add(struct vmmu_nested *n, unsigned as, uint64_t gfn)
{
	uint64_t key = track_key(as, PG_LEVEL_4K, gfn);
	struct track_node *spare[3], *t;

	nested_assert_locked(n->vm);
	t = find_key(n, key);
	if (t) {
		t->count++;
		return 0;
	}
	/* First shadow page of this gfn: three counters, allocated first. */
	for (int i = 0; i < 3; i++)
		spare[i] = calloc(1, sizeof(*spare[i]));
	if (!spare[0] || !spare[1] || !spare[2]) {
		for (int i = 0; i < 3; i++)
			free(spare[i]);
		return -ENOMEM;
	}
	key_add(n, key, 1, &spare[0]);
	/* Its frames lose their huge leaves. */
	key_add(n, track_key(as, PG_LEVEL_2M, gfn), 1, &spare[1]);
	key_add(n, track_key(as, PG_LEVEL_1G, gfn), 1, &spare[2]);
	free(spare[1]); /* frames counted already: their node was not needed */
	free(spare[2]);
	t = find_key(n, key);
	t->pending = 1;
	t->epoch = ++n->track_epoch;
	__atomic_add_fetch(&n->nr_tracked, 1, __ATOMIC_RELEASE);
	/* L2 may map this page too: never writable from now on, and never
	 * through a huge leaf.  Leaf zaps free no table, so the caller's walk
	 * down EPT02 stays valid. */
	nested_rmap_for_each(n, as, gfn, gfn + 1, zap_cb, NULL);
	return 1;
}

void nested_track_del(struct vmmu_nested *n, unsigned as, uint64_t gfn)
{
	nested_assert_locked(n->vm);
	if (key_add(n, track_key(as, PG_LEVEL_4K, gfn), -1, NULL))
		return;
	key_add(n, track_key(as, PG_LEVEL_2M, gfn), -1, NULL);
	key_add(n, track_key(as, PG_LEVEL_1G, gfn), -1, NULL);
	__atomic_sub_fetch(&n->nr_tracked, 1, __ATOMIC_RELEASE);
}

bool nested_track_pending(struct vmmu_nested *n, unsigned as, uint64_t gfn, uint64_t *epoch)
{
	struct track_node *t = nested_track_find(n, as, gfn);

	if (!t || !t->pending)
		return false;
	*epoch = t->epoch;
	return true;
}

void nested_track_done(struct vmmu_nested *n, unsigned as, uint64_t gfn, uint64_t epoch)
{
	struct track_node *t = nested_track_find(n, as, gfn);

	if (t && t->epoch == epoch)
		t->pending = 0;
}

void nested_track_destroy(struct vmmu_nested *n)
{
	for (unsigned b = 0; b < (1u << TRACK_HASH_BITS); b++)
		WARN_ON(n->track[b]);
}

/*
 * The TDP fault path's question, under the MMU lock held for read (so no
 * tracking changes meanwhile): may @fault map its gfn writable, and how
 * large?  Returns true if the fault is a write to a tracked gfn (emulate).
 */
static bool track_check(struct vmmu_nested *n, unsigned as, struct vmmu_page_fault *fault);

bool vmmu_nested_tdp_fault_check(struct vmmu_vm *vm, unsigned as, struct vmmu_page_fault *fault)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	bool emulate;

	if (!n || !__atomic_load_n(&n->nr_tracked, __ATOMIC_ACQUIRE))
		return false;
	/* The nested fault path calls this with the engine's lock held. */
	if (nested_lock_held(n))
		return track_check(n, as, fault);
	nested_lock_engine(n);
	emulate = track_check(n, as, fault);
	nested_unlock_engine(n);
	return emulate;
}

static bool track_check(struct vmmu_nested *n, unsigned as, struct vmmu_page_fault *fault)
{
	if (fault->goal_level >= PG_LEVEL_1G && find_key(n, track_key(as, PG_LEVEL_1G, fault->gfn)))
		fault->goal_level = PG_LEVEL_2M;
	if (fault->goal_level >= PG_LEVEL_2M && find_key(n, track_key(as, PG_LEVEL_2M, fault->gfn)))
		fault->goal_level = PG_LEVEL_4K;
	if (fault->max_level > fault->goal_level)
		fault->max_level = fault->goal_level;
	if (fault->gfn_end > fault->gfn + 1) {
		/* A run: the rest goes through its own faults. */
		fault->gfn_end = fault->gfn + 1;
	}
	if (!find_key(n, track_key(as, PG_LEVEL_4K, fault->gfn)))
		return false;
	fault->map_writable = false;
	return fault->write;
}

int vmmu_nested_max_level(struct vmmu_vm *vm, unsigned as, uint64_t gfn, int level)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	bool held;

	if (!n || level <= PG_LEVEL_4K || !__atomic_load_n(&n->nr_tracked, __ATOMIC_ACQUIRE))
		return level;
	held = nested_lock_held(n);
	if (!held)
		nested_lock_engine(n);
	if (level >= PG_LEVEL_1G && find_key(n, track_key(as, PG_LEVEL_1G, gfn)))
		level = PG_LEVEL_2M;
	if (level >= PG_LEVEL_2M && find_key(n, track_key(as, PG_LEVEL_2M, gfn)))
		level = PG_LEVEL_4K;
	if (!held)
		nested_unlock_engine(n);
	return level;
}
