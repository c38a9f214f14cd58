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
 * VM-wide, shared by every root (docs/nested-per-root-locking.md 3.2):
 * counts change under the leaf mutex track_lock; nodes are published with a
 * release store and freed after an RCU grace period, so lookups (the TDP
 * fault path, the nested fault, the emulated write) take no lock.  A gfn
 * that becomes tracked may still have writable TDP leaves (made by a TDP
 * fault that looked before the node was published) and EPT02 leaves: it
 * stays "pending" until nested_track_settle() has waited for those TDP
 * faults and zapped both kinds of leaves, and no nested fault relies on an
 * EPT12 page while it is pending.  Each level-1 node also records, in
 * @roots, which roots shadow the page (bit = root id, 63 = any id >= 63),
 * for the emulated write to visit only those.
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

/* Lockless (RCU read side, or track_lock held). */
static struct track_node *find_key(struct vmmu_nested *n, uint64_t key)
{
	for (struct track_node *t = __atomic_load_n(&n->track[track_bucket(key)], __ATOMIC_ACQUIRE);
	     t; t = __atomic_load_n(&t->next, __ATOMIC_ACQUIRE))
		if (t->key == key && __atomic_load_n(&t->count, __ATOMIC_ACQUIRE))
			return t;
	return NULL;
}

struct track_node *nested_track_find(struct vmmu_nested *n, unsigned as, uint64_t gfn)
{
	return find_key(n, track_key(as, PG_LEVEL_4K, gfn));
}

static void track_free_rcu(vmmu_rcu_head *head)
{
	vmmu_rcu_callback_enter();
	free(vmmu_container_of(head, struct track_node, rcu));
	vmmu_rcu_callback_exit();
}

/*
 * Count one more (or one less) at @key, under track_lock; returns the
 * node's new count.  A new node comes from *@spare (allocated by the
 * caller beforehand, so that nothing fails half way); with none left, 0
 * and nothing changed.  A node whose count drops to 0 is unlinked and
 * freed after a grace period (lockless readers may still be on it).
 */
static uint32_t key_add(struct vmmu_nested *n, uint64_t key, int delta, struct track_node **spare,
			struct track_node **out)
{
	struct track_node **pp = &n->track[track_bucket(key)], *t;
	uint32_t count;

	for (t = *pp; t; pp = &t->next, t = t->next)
		if (t->key == key)
			break;
	if (!t) {
		if (WARN_ON(delta < 0) || !spare || !*spare)
			return 0;
		t = *spare;
		*spare = NULL;
		t->key = key;
		t->count = (uint32_t)delta;
		t->next = n->track[track_bucket(key)];
		if (out)
			*out = t;
		__atomic_store_n(&n->track[track_bucket(key)], t, __ATOMIC_RELEASE);
		return t->count;
	}
	count = t->count + (uint32_t)delta;
	__atomic_store_n(&t->count, count, __ATOMIC_RELEASE);
	if (out)
		*out = t;
	if (!count) {
		/* pp points at the link to t. */
		__atomic_store_n(pp, t->next, __ATOMIC_RELEASE);
		vmmu_call_rcu(&t->rcu, track_free_rcu);
	}
	return count;
}

static void set_root_bit(struct track_node *t, unsigned root_id)
{
	uint64_t bit = 1ull << (root_id < 63 ? root_id : 63);

	/* Sequentially consistent: ordered before the fault's second look at
	 * ept12_wseq (the writer increments it, then reads the bits). */
	if ((__atomic_load_n(&t->roots, __ATOMIC_SEQ_CST) & bit) != bit)
		__atomic_fetch_or(&t->roots, bit, __ATOMIC_SEQ_CST);
}

/* Under track_lock: count one more shadow page of an already tracked
 * @key for root @root_id.  False when @key is not tracked yet. */
static bool track_get_locked(struct vmmu_nested *n, uint64_t key, unsigned root_id)
{
	struct track_node *t;

	for (t = n->track[track_bucket(key)]; t; t = t->next)
		if (t->key == key)
			break;
	if (!t)
		return false;
	__atomic_store_n(&t->count, t->count + 1, __ATOMIC_RELEASE);
	set_root_bit(t, root_id);
	return true;
}

int nested_track_add(struct vmmu_nested *n, unsigned as, uint64_t gfn, unsigned root_id)
{
	uint64_t key = track_key(as, PG_LEVEL_4K, gfn);
	struct track_node *spare[3];

	pthread_mutex_lock(&n->track_lock);
	if (track_get_locked(n, key, root_id)) {
		pthread_mutex_unlock(&n->track_lock);
		return 0;
	}
	pthread_mutex_unlock(&n->track_lock);
	/* First shadow page of this gfn: three counters, allocated first. */
	for (int i = 0; i < 3; i++)
		spare[i] = calloc(1, sizeof(*spare[i]));
	if (!spare[0] || !spare[1] || !spare[2]) {
		for (int i = 0; i < 3; i++)
			free(spare[i]);
		return -ENOMEM;
	}
	pthread_mutex_lock(&n->track_lock);
	/* Looked up again: another root may have tracked it meanwhile. */
	if (track_get_locked(n, key, root_id)) {
		pthread_mutex_unlock(&n->track_lock);
		for (int i = 0; i < 3; i++)
			free(spare[i]);
		return 0;
	}
	/* Pending and its epoch are set before the node is published. */
	spare[0]->pending = 1;
	spare[0]->epoch = ++n->track_epoch;
	spare[0]->roots = 1ull << (root_id < 63 ? root_id : 63);
	/* The frames first: a TDP fault that sees the gfn tracked also sees
	 * its frames lose their huge leaves. */
	key_add(n, track_key(as, PG_LEVEL_2M, gfn), 1, &spare[1], NULL);
	key_add(n, track_key(as, PG_LEVEL_1G, gfn), 1, &spare[2], NULL);
	key_add(n, key, 1, &spare[0], NULL);
	__atomic_add_fetch(&n->nr_tracked, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&n->track_lock);
	free(spare[1]); /* frames counted already: their node was not needed */
	free(spare[2]);
	/* The caller returns NF_WP and runs nested_track_settle(): L2 may map
	 * this page writable through EPT02 leaves, L1 through TDP leaves. */
	return 1;
}

void nested_track_del(struct vmmu_nested *n, unsigned as, uint64_t gfn)
{
	pthread_mutex_lock(&n->track_lock);
	if (!key_add(n, track_key(as, PG_LEVEL_4K, gfn), -1, NULL, NULL)) {
		key_add(n, track_key(as, PG_LEVEL_2M, gfn), -1, NULL, NULL);
		key_add(n, track_key(as, PG_LEVEL_1G, gfn), -1, NULL, NULL);
		__atomic_sub_fetch(&n->nr_tracked, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&n->track_lock);
}

bool nested_track_pending(struct vmmu_nested *n, unsigned as, uint64_t gfn, uint64_t *epoch)
{
	struct track_node *t = nested_track_find(n, as, gfn);

	if (!t || !__atomic_load_n(&t->pending, __ATOMIC_ACQUIRE))
		return false;
	*epoch = t->epoch;
	return true;
}

void nested_track_done(struct vmmu_nested *n, unsigned as, uint64_t gfn, uint64_t epoch)
{
	struct track_node *t;

	pthread_mutex_lock(&n->track_lock);
	t = nested_track_find(n, as, gfn);
	if (t && t->epoch == epoch)
		__atomic_store_n(&t->pending, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&n->track_lock);
}

void nested_track_destroy(struct vmmu_nested *n)
{
	for (unsigned b = 0; b < (1u << TRACK_HASH_BITS); b++)
		WARN_ON(n->track[b]);
	pthread_mutex_destroy(&n->track_lock);
}

/*
 * The TDP fault path's question, in the RCU read section and MMU read
 * section that also install the leaf: may @fault map its gfn writable, and
 * how large?  Returns true if the fault is a write to a tracked gfn
 * (emulate).  No lock: a gfn tracked after this look is made safe by the
 * tracking barrier of nested_track_settle(), which waits for this read
 * section to end before zapping the gfn's TDP leaves.
 */
bool vmmu_nested_tdp_fault_check(struct vmmu_vm *vm, unsigned as, struct vmmu_page_fault *fault)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);
	bool emulate = false;

	if (!n || !__atomic_load_n(&n->nr_tracked, __ATOMIC_ACQUIRE))
		return false;
	vmmu_rcu_read_lock();
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
	if (find_key(n, track_key(as, PG_LEVEL_4K, fault->gfn))) {
		fault->map_writable = false;
		emulate = fault->write;
	}
	vmmu_rcu_read_unlock();
	return emulate;
}

int vmmu_nested_max_level(struct vmmu_vm *vm, unsigned as, uint64_t gfn, int level)
{
	struct vmmu_nested *n = __atomic_load_n(&vm->nested, __ATOMIC_ACQUIRE);

	if (!n || level <= PG_LEVEL_4K || !__atomic_load_n(&n->nr_tracked, __ATOMIC_ACQUIRE))
		return level;
	vmmu_rcu_read_lock();
	if (level >= PG_LEVEL_1G && find_key(n, track_key(as, PG_LEVEL_1G, gfn)))
		level = PG_LEVEL_2M;
	if (level >= PG_LEVEL_2M && find_key(n, track_key(as, PG_LEVEL_2M, gfn)))
		level = PG_LEVEL_4K;
	vmmu_rcu_read_unlock();
	return level;
}
