/* SPDX-License-Identifier: MIT */
/*
 * dirty_log.c - dirty logging for live migration: per-slot bitmaps, the
 * per-vCPU dirty rings, the page-modification log the processor fills in
 * dirty-bit mode, and the calls that start, harvest and stop logging.
 *
 * Where dirty pages come from:
 *  - write-protect mode: logged pages are mapped without W; the first write
 *    faults and the fault path logs the page when it maps it writable;
 *  - dirty-bit mode: logged pages are mapped with W but without D; the
 *    processor sets D on the first write and appends the gpa to the vCPU's
 *    page-modification log (PML), which vmmu drains on every exit.
 * Either way the log is fed only when a page becomes writable or dirty,
 * never by looking at what a zap throws away.
 *
 * Harvesting takes the bits (or ring entries), protects their pages again
 * (W or D cleared) and flushes every TLB before the result is handed out,
 * whenever it took anything, even if the walk found no entry left to
 * protect (aging without A/D bits removes W without a flush, so a TLB may
 * still hold a writable translation of a page whose leaf is protected):
 * a write through a stale TLB entry before the flush lands before the
 * caller copies the page; any write after it faults or sets D again.
 *
 * Locks: harvests and slot changes are serialized by slots_lock (as KVM's
 * ioctls are); table changes run under the MMU lock held for read.  Bits
 * are set by vCPUs with atomic ORs and taken with atomic exchanges.
 */
#include "dirty_log.h"
#include "memslot.h"
#include "mmu.h"
#include "vm_internal.h"

#include <string.h>

int vmmu_dirty_log_vm_init(struct vmmu_vm *vm)
{
	const struct vmmu_vm_config *cfg = &vm->cfg;
	uint32_t ring = cfg->dirty_ring_size;

	if (cfg->manual_dirty_log_protect &
	    ~(VMMU_DIRTY_LOG_MANUAL_PROTECT | VMMU_DIRTY_LOG_INITIALLY_SET))
		return -EINVAL;
	if ((cfg->manual_dirty_log_protect & VMMU_DIRTY_LOG_INITIALLY_SET) &&
	    !(cfg->manual_dirty_log_protect & VMMU_DIRTY_LOG_MANUAL_PROTECT))
		return -EINVAL;
	if (ring &&
	    ((ring & (ring - 1)) || ring < 1024 || ring > 65536 || cfg->manual_dirty_log_protect))
		return -EINVAL;
	vm->manual_protect = cfg->manual_dirty_log_protect & VMMU_DIRTY_LOG_MANUAL_PROTECT;
	vm->initially_set = cfg->manual_dirty_log_protect & VMMU_DIRTY_LOG_INITIALLY_SET;
	vm->eager_split = !cfg->disable_eager_split;
	vm->dirty_log_dbit = vm->ad_enabled && !cfg->dirty_log_wrprot;
	return 0;
}

int vmmu_dirty_log_vcpu_init(struct vmmu_vcpu *vcpu)
{
	struct vmmu_vm *vm = vcpu->vm;

	if (vm->dirty_log_dbit) {
		vcpu->pml = calloc(VMMU_PML_ENTRIES, sizeof(*vcpu->pml));
		if (!vcpu->pml)
			return -ENOMEM;
	}
	if (vm->cfg.dirty_ring_size) {
		vcpu->ring.gfns = calloc(vm->cfg.dirty_ring_size, sizeof(*vcpu->ring.gfns));
		if (!vcpu->ring.gfns) {
			free(vcpu->pml);
			vcpu->pml = NULL;
			return -ENOMEM;
		}
		vcpu->ring.size = vm->cfg.dirty_ring_size;
		vcpu->ring.soft_limit = vcpu->ring.size - VMMU_DIRTY_RING_RESERVED;
	}
	return 0;
}

void vmmu_dirty_log_vcpu_destroy(struct vmmu_vcpu *vcpu)
{
	free(vcpu->pml);
	free(vcpu->ring.gfns);
	vcpu->pml = NULL;
	vcpu->ring.gfns = NULL;
}

int vmmu_dirty_log_slot_init(struct vmmu_vm *vm, struct vmmu_memslot *slot)
{
	uint64_t words = memslot_bitmap_words(slot);

	if (!memslot_dirty_logged(slot) || vm->cfg.dirty_ring_size)
		return 0;
	slot->dirty_bitmap = calloc(words, sizeof(uint64_t));
	if (!slot->dirty_bitmap)
		return -ENOMEM;
	if (vm->initially_set) {
		memset(slot->dirty_bitmap, 0xff, words * sizeof(uint64_t));
		if (slot->npages % 64)
			slot->dirty_bitmap[words - 1] = (1ull << (slot->npages % 64)) - 1;
	}
	return 0;
}

/*
 * Start or stop logging in the tables, once every fault that could have
 * used the old slot is over (the caller waited for a grace period).
 */
void vmmu_dirty_log_slot_commit(struct vmmu_vm *vm, const struct vmmu_memslot *old,
				const struct vmmu_memslot *new_)
{
	bool was = old && memslot_dirty_logged(old);
	bool is = new_ && memslot_dirty_logged(new_);

	if (was == is || !new_)
		return;
	vmmu_read_lock(&vm->mmu_lock);
	if (!is) {
		vmmu_mmu_slot_recover_huge_pages(vm, new_);
		vmmu_read_unlock(&vm->mmu_lock);
		return;
	}
	/* With INITIALLY_SET every page counts as dirty already: pages are
	 * protected lazily, chunk by chunk, by vmmu_clear_dirty_log(). */
	if (vm->initially_set) {
		vmmu_read_unlock(&vm->mmu_lock);
		return;
	}
	if (vm->eager_split) {
		bool flush = false;

		(void)vmmu_mmu_slot_split_and_protect(vm, new_, &flush);
	} else {
		vmmu_mmu_slot_protect(vm, new_);
	}
	vmmu_read_unlock(&vm->mmu_lock);
	/* Writable (or dirty) entries made before logging started must not
	 * be used after the call returns, whatever the walk found: flush. */
	vmmu_flush_remote_tlbs(vm);
}

static void dirty_ring_push(struct vmmu_vcpu *vcpu, const struct vmmu_memslot *slot, uint64_t gfn)
{
	struct vmmu_dirty_ring *ring = &vcpu->ring;
	uint32_t used = ring->dirty_index - __atomic_load_n(&ring->reset_index, __ATOMIC_ACQUIRE);
	struct vmmu_dirty_gfn *e;

	/* Nothing that logs runs past the soft limit except the drain of
	 * the PML at an exit (at most VMMU_PML_ENTRIES), and the reserve
	 * behind the limit is larger: entering guest mode, faults and
	 * translations are refused with -ENOBUFS once the limit is reached. */
	if (WARN_ON(used >= ring->size))
		return;
	e = &ring->gfns[ring->dirty_index & (ring->size - 1)];
	e->slot = ((uint32_t)slot->as_id << 16) | slot->id;
	e->offset = gfn - slot->base_gfn;
	/* The collector reads flags with acquire, then slot and offset. */
	__atomic_store_n(&e->flags, VMMU_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
	ring->dirty_index++;
}

static void mark_page_dirty(struct vmmu_vcpu *vcpu, const struct vmmu_memslot *slot, uint64_t gfn,
			    bool test_first)
{
	uint64_t rel = gfn - slot->base_gfn;

	if (WARN_ON(rel >= slot->npages))
		return;
	if (vcpu && vcpu->ring.gfns) {
		dirty_ring_push(vcpu, slot, gfn);
		return;
	}
	if (!slot->dirty_bitmap)
		return;
	/* Test first: the bit is usually set already on hot pages, and a
	 * plain load does not take the cache line exclusive. */
	if (test_first &&
	    __atomic_load_n(&slot->dirty_bitmap[rel / 64], __ATOMIC_RELAXED) >> (rel % 64) & 1)
		return;
	__atomic_fetch_or(&slot->dirty_bitmap[rel / 64], 1ull << (rel % 64), __ATOMIC_RELEASE);
}

void vmmu_mark_page_dirty(struct vmmu_vcpu *vcpu, const struct vmmu_memslot *slot, uint64_t gfn)
{
	mark_page_dirty(vcpu, slot, gfn, true);
}

/*
 * The same, always with a release read-modify-write of the bitmap word
 * (review of issue 14, finding 2).  Litmus, for the nested engine whose
 * harvest skips a root by its leaf span read without the root's lock:
 *
 *   fault T1                         harvest T2
 *   span (release), leaf installed   x = exchange(word, 0) (acq_rel)
 *   fetch_or(word, bit) (release)    read span (acquire): skip the root?
 *
 * The word's modification order puts T1's fetch_or before or after T2's
 * exchange.  Before: T2's exchange reads from the release sequence headed
 * by T1's fetch_or (later read-modify-writes continue it), so T2
 * synchronizes with T1 and sees the span that covers the new leaf, visits
 * the root and protects the leaf.  After: the bit is set again after the
 * harvest took it, so the next harvest reports the page and protects the
 * leaf.  With vmmu_mark_page_dirty()'s early return (bit already set by an
 * earlier writer) T1 only loads: no release, no synchronization, and T2
 * may read the old span, skip the root and leave a writable leaf whose
 * later writes are never logged (store buffering).  The ring path already
 * publishes each entry with a release store.
 */
void vmmu_mark_page_dirty_sync(struct vmmu_vcpu *vcpu, const struct vmmu_memslot *slot,
			       uint64_t gfn)
{
	mark_page_dirty(vcpu, slot, gfn, false);
}

bool vmmu_dirty_ring_soft_full(const struct vmmu_vcpu *vcpu)
{
	const struct vmmu_dirty_ring *ring = &vcpu->ring;

	return ring->gfns &&
	       ring->dirty_index - __atomic_load_n(&ring->reset_index, __ATOMIC_ACQUIRE) >=
		       ring->soft_limit;
}

void vmmu_vcpu_flush_pml(struct vmmu_vcpu *vcpu)
{
	struct vmmu_vm *vm = vcpu->vm;

	if (!vcpu->pml_count)
		return;
	vmmu_rcu_read_lock();
	for (unsigned i = 0; i < vcpu->pml_count; i++) {
		uint64_t gfn = vcpu->pml[i] >> VMMU_PAGE_SHIFT;
		struct vmmu_memslot *slot = vmmu_gfn_to_memslot(vm, vcpu->as_id, gfn);

		/* D is set on pages of slots that are not logged, too. */
		if (slot && memslot_dirty_logged(slot))
			vmmu_mark_page_dirty(vcpu, slot, gfn);
	}
	vmmu_rcu_read_unlock();
	vcpu->pml_count = 0;
}

/*
 * Harvesting.
 */
static int dirty_log_slot_lookup(struct vmmu_vm *vm, uint32_t slot_arg, struct vmmu_memslot **out)
{
	unsigned as_id = slot_arg >> 16, id = slot_arg & 0xffff;
	struct vmmu_memslot *slot;

	if (as_id >= VMMU_ADDRESS_SPACES || id >= VMMU_USER_MEM_SLOTS)
		return -EINVAL;
	/* Under slots_lock: the array cannot change. */
	slot = vmmu_memslot_by_id(vm->memslots[as_id], id);
	if (!slot || !memslot_dirty_logged(slot) || !slot->dirty_bitmap)
		return -ENOENT;
	*out = slot;
	return 0;
}

/* Make every vCPU drain its page-modification log into the bitmaps. */
static void dirty_log_sync(struct vmmu_vm *vm)
{
	if (vm->dirty_log_dbit)
		vmmu_make_all_vcpus_request(vm, VMMU_REQ_FLUSH_PML, true);
}

int vmmu_get_dirty_log(struct vmmu_vm *vm, uint32_t slot_arg, uint64_t *bitmap)
{
	struct vmmu_memslot *slot;
	bool flush = false;
	uint64_t words;
	int r;

	if (!vm || !bitmap)
		return -EINVAL;
	if (vm->cfg.dirty_ring_size)
		return -ENXIO;
	pthread_mutex_lock(&vm->slots_lock);
	r = dirty_log_slot_lookup(vm, slot_arg, &slot);
	if (r)
		goto out;
	dirty_log_sync(vm);
	words = memslot_bitmap_words(slot);
	if (vm->manual_protect) {
		for (uint64_t i = 0; i < words; i++)
			bitmap[i] = __atomic_load_n(&slot->dirty_bitmap[i], __ATOMIC_ACQUIRE);
		goto out;
	}
	vmmu_read_lock(&vm->mmu_lock);
	for (uint64_t i = 0; i < words; i++) {
		uint64_t mask;

		if (!__atomic_load_n(&slot->dirty_bitmap[i], __ATOMIC_RELAXED)) {
			bitmap[i] = 0;
			continue;
		}
		mask = __atomic_exchange_n(&slot->dirty_bitmap[i], 0, __ATOMIC_ACQ_REL);
		bitmap[i] = mask;
		/* Flush even if the walk finds nothing left to protect: aging
		 * without A/D bits may have taken W away already, without a
		 * flush, while a TLB still holds the page writable. */
		flush |= mask != 0;
		flush |= vmmu_mmu_clear_dirty_masked(vm, slot, i * 64, mask);
	}
	vmmu_read_unlock(&vm->mmu_lock);
	if (flush)
		vmmu_flush_remote_tlbs(vm);
out:
	pthread_mutex_unlock(&vm->slots_lock);
	return r;
}

int vmmu_clear_dirty_log(struct vmmu_vm *vm, uint32_t slot_arg, uint64_t first_page,
			 uint32_t num_pages, const uint64_t *bitmap)
{
	struct vmmu_memslot *slot;
	bool flush = false;
	int r;

	if (!vm || (!bitmap && num_pages))
		return -EINVAL;
	if (vm->cfg.dirty_ring_size)
		return -ENXIO;
	if (!vm->manual_protect)
		return -EINVAL;
	if (first_page % 64)
		return -EINVAL;
	pthread_mutex_lock(&vm->slots_lock);
	r = dirty_log_slot_lookup(vm, slot_arg, &slot);
	if (r)
		goto out;
	if (first_page > slot->npages || num_pages > slot->npages - first_page ||
	    ((num_pages % 64) && first_page + num_pages != slot->npages)) {
		r = -EINVAL;
		goto out;
	}
	if (!num_pages)
		goto out;
	dirty_log_sync(vm);
	vmmu_read_lock(&vm->mmu_lock);
	/* With INITIALLY_SET nothing was protected when logging started:
	 * split the huge pages of this chunk now, so it is protected at 4K. */
	if (vm->initially_set && vm->eager_split)
		(void)vmmu_mmu_split_huge_pages(vm, slot, slot->base_gfn + first_page,
						slot->base_gfn + first_page + num_pages);
	for (uint64_t i = 0; i < (num_pages + 63) / 64; i++) {
		uint64_t want = bitmap[i], w = first_page / 64 + i, had;

		if (i == num_pages / 64)
			want &= (1ull << (num_pages % 64)) - 1;
		if (!want)
			continue;
		/* Only bits that were set are protected again. */
		had = __atomic_fetch_and(&slot->dirty_bitmap[w], ~want, __ATOMIC_ACQ_REL) & want;
		/* Anything harvested flushes (see vmmu_get_dirty_log()). */
		flush |= had != 0;
		flush |= vmmu_mmu_clear_dirty_masked(vm, slot, w * 64, had);
	}
	vmmu_read_unlock(&vm->mmu_lock);
	if (flush)
		vmmu_flush_remote_tlbs(vm);
out:
	pthread_mutex_unlock(&vm->slots_lock);
	return r;
}

int vmmu_vcpu_dirty_ring(struct vmmu_vcpu *vcpu, struct vmmu_dirty_gfn **ring, uint32_t *nr_entries)
{
	if (!vcpu || !ring || !nr_entries)
		return -EINVAL;
	if (!vcpu->ring.gfns)
		return -ENXIO;
	*ring = vcpu->ring.gfns;
	*nr_entries = vcpu->ring.size;
	return 0;
}

/*
 * Recycle one vCPU's RESET entries in order.  Runs of pages of one slot
 * within 64 pages are protected with one masked walk.
 */
static bool dirty_ring_reset(struct vmmu_vm *vm, struct vmmu_vcpu *vcpu, uint64_t *count)
{
	struct vmmu_dirty_ring *ring = &vcpu->ring;
	struct vmmu_memslot *cur = NULL;
	uint64_t base = 0, mask = 0;
	uint32_t cur_slot = UINT32_MAX;
	bool flush = false;

	for (;;) {
		struct vmmu_dirty_gfn *e = &ring->gfns[ring->reset_index & (ring->size - 1)];
		uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
		struct vmmu_memslot *slot = NULL;
		uint64_t off;

		if (!(flags & VMMU_DIRTY_GFN_F_RESET))
			break;
		off = e->offset;
		if (e->slot != cur_slot) {
			unsigned as_id = e->slot >> 16, id = e->slot & 0xffff;

			if (as_id < VMMU_ADDRESS_SPACES)
				slot = vmmu_memslot_by_id(vm->memslots[as_id], id);
		} else {
			slot = cur;
		}
		/* Flush the pending mask when the run breaks. */
		if (mask && (slot != cur || !slot || off < base || off >= base + 64)) {
			flush |= vmmu_mmu_clear_dirty_masked(vm, cur, base, mask);
			mask = 0;
		}
		/* A slot deleted or no longer logged needs nothing. */
		if (slot && memslot_dirty_logged(slot) && off < slot->npages) {
			if (!mask)
				base = off;
			mask |= 1ull << (off - base);
			/* Anything harvested flushes, protected by this walk or
			 * not (see vmmu_get_dirty_log()). */
			flush = true;
		}
		cur = slot;
		cur_slot = e->slot;
		__atomic_store_n(&e->flags, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&ring->reset_index, ring->reset_index + 1, __ATOMIC_RELEASE);
		(*count)++;
	}
	if (mask)
		flush |= vmmu_mmu_clear_dirty_masked(vm, cur, base, mask);
	return flush;
}

int vmmu_reset_dirty_rings(struct vmmu_vm *vm, uint64_t *nr_reset)
{
	uint64_t count = 0;
	bool flush = false;

	if (!vm)
		return -EINVAL;
	if (!vm->cfg.dirty_ring_size)
		return -ENXIO;
	pthread_mutex_lock(&vm->slots_lock);
	/* Pages the processor logged but the vCPUs have not handed over yet
	 * go to the rings now, as DIRTY entries for the next harvest. */
	dirty_log_sync(vm);
	pthread_mutex_lock(&vm->vcpus_lock);
	vmmu_read_lock(&vm->mmu_lock);
	for (unsigned i = 0; i < VMMU_MAX_VCPUS; i++)
		if (vm->vcpus[i])
			flush |= dirty_ring_reset(vm, vm->vcpus[i], &count);
	vmmu_read_unlock(&vm->mmu_lock);
	pthread_mutex_unlock(&vm->vcpus_lock);
	if (flush)
		vmmu_flush_remote_tlbs(vm);
	pthread_mutex_unlock(&vm->slots_lock);
	if (nr_reset)
		*nr_reset = count;
	return 0;
}
