/* SPDX-License-Identifier: MIT */
/*
 * vmmu.h - the MMU of a hypervisor, as a userspace library.
 *
 * The API follows KVM's ioctls: each call names the ioctl it stands for and
 * has the same meaning and errors.  Every call returns 0 or a negative errno.
 * A call that fails because of bad input changes nothing.
 *
 * Threads: any thread may call any function; vmmu registers threads with
 * RCU on first use.  A vCPU is used by one thread at a time (as a KVM vCPU
 * fd is), VM-wide calls may run concurrently with vCPUs.
 *
 * The processor side (what the hardware does: walking the tables vmmu
 * builds, setting A/D bits, acknowledging TLB flushes) is in <vmmu/hw.h>.
 */
#ifndef VMMU_VMMU_H
#define VMMU_VMMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_vm;
struct vmmu_vcpu;

#define VMMU_MAX_VCPUS 256
#define VMMU_ADDRESS_SPACES 2  /* 0: normal, 1: SMM (as on x86 KVM) */
#define VMMU_USER_MEM_SLOTS 32764

struct vmmu_vm_config {
	/* Levels of the EPT tree: 4 (48-bit GPA) or 5 (57-bit GPA).  0 = 4. */
	unsigned root_level;
	/* EPT Accessed/Dirty bits (KVM's eptad).  Default on; set
	 * disable_ept_ad to model a processor without them. */
	bool disable_ept_ad;
	/* Most page-table pages the VM may use; address space is reserved
	 * for them up front but costs nothing until used.  0 = 1M pages
	 * (4 GiB of tables, enough to map 2 TiB with 4 KiB pages).  The
	 * reservation asks for transparent huge pages (MADV_HUGEPAGE: fresh
	 * tables are cheaper and need fewer TLB entries), so where the host
	 * grants them a VM with any table holds at least 2 MiB. */
	uint32_t max_pt_pages;
	/* Capacity of each vCPU's page-table page cache.  0 = 40. */
	unsigned vcpu_cache_capacity;
	/* Where guest memory comes from (<vmmu/hostmem.h>): vmmu asks it for
	 * the host mapping level of each page and receives its invalidation
	 * events.  NULL: every host page is taken to be 4 KiB, so only 4 KiB
	 * leaves are ever created. */
	struct vmmu_hostmem *hostmem;
	/* Measurement switch (<vmmu/paging.h>): unload every root of a vCPU
	 * and flush its TLB whenever its cpu or root role changes, as KVM did
	 * before the cpu/root role split.  Default off. */
	bool unload_roots_on_role_change;
	/* Measurement switch (<vmmu/nested.h>): the nested MMU serialises
	 * every L2 fault, root load and emulated EPT12 write of the VM under
	 * the MMU lock held for write and one engine-wide lock, as before
	 * issue 14.  Default off: each EPT02 root has its own lock, taken
	 * inside the MMU lock held for read, so L2s with different EPT
	 * pointers fault in parallel and never block L1's faults. */
	bool nested_global_lock;
	/* Threads that build the map of a VMMU_MEM_DIRECT_BUILD slot, at most
	 * VMMU_MAX_DIRECT_BUILD_WORKERS.  0 = the number of online CPUs. */
	unsigned direct_build_workers;

	/*
	 * Dirty logging (see "Dirty logging" below).  With EPT A/D bits the
	 * processor logs writes itself (dirty-bit mode: D bits and a
	 * page-modification log, like KVM with PML); without them, or with
	 * dirty_log_wrprot, logged pages are write-protected and the first
	 * write to each faults (like KVM with enable_pml=0).
	 */
	bool dirty_log_wrprot;
	/* Do not split huge pages when logging starts (KVM's
	 * eager_page_split=N): they are split by the vCPUs' write faults. */
	bool disable_eager_split;
	/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: VMMU_DIRTY_LOG_* flags. */
	uint32_t manual_dirty_log_protect;
	/* KVM_CAP_DIRTY_LOG_RING: entries per vCPU ring, a power of two in
	 * [1024, 65536]; 0 = dirty bitmaps.  Rings replace bitmaps. */
	uint32_t dirty_ring_size;

	/*
	 * What deleting or moving a memslot does to the mappings (KVM's
	 * KVM_X86_QUIRK_SLOT_ZAP_ALL; enum vmmu_slot_zap).
	 * VMMU_SLOT_ZAP_RANGE: zap the slot's own gfns, synchronously, in
	 * every root; other slots keep their mappings.  The call takes time
	 * in proportion to what the slot had mapped.
	 * VMMU_SLOT_ZAP_ALL_FAST: make every root obsolete (vCPUs move to new
	 * roots and fault everything in again); the obsolete roots are
	 * emptied afterwards by a per-VM thread, with yielding.  The call
	 * takes about the same time whatever is mapped.
	 */
	unsigned slot_zap;

	/*
	 * Do not fix faults locklessly (KVM has no such switch; it is here to
	 * measure what the fast path buys).  By default a write fault on an
	 * entry write-protected only for dirty logging, and any fault on an
	 * entry made inaccessible by access tracking (disable_ept_ad), is
	 * fixed with one compare-and-exchange without the MMU lock; with this
	 * set every fault takes the locked path.
	 */
	bool disable_fast_page_fault;
};

enum vmmu_slot_zap {
	VMMU_SLOT_ZAP_RANGE = 0,
	VMMU_SLOT_ZAP_ALL_FAST = 1,
};

#define VMMU_MAX_DIRECT_BUILD_WORKERS 64

#define VMMU_DIRTY_LOG_MANUAL_PROTECT (1u << 0)
#define VMMU_DIRTY_LOG_INITIALLY_SET (1u << 1)

/* Create a VM.  0, -EINVAL (bad config: root_level not 0/4/5, unknown
 * manual_dirty_log_protect bits, INITIALLY_SET without MANUAL_PROTECT, a
 * dirty ring size out of range or combined with manual protect, an unknown
 * slot_zap), -ENOMEM. */
int vmmu_vm_create(const struct vmmu_vm_config *cfg, struct vmmu_vm **out);

/*
 * Destroy a VM: zaps every mapping, frees every page-table page after an
 * RCU barrier, destroys remaining vCPUs.  No vCPU may run during the call.
 * 0, or -EINVAL for NULL.
 */
int vmmu_vm_destroy(struct vmmu_vm *vm);

/* KVM_SET_USER_MEMORY_REGION. */
#define VMMU_MEM_LOG_DIRTY_PAGES (1u << 0)
#define VMMU_MEM_READONLY (1u << 1)
/*
 * vmmu's own flag, for pinned memory that is never overcommitted (the
 * "direct build" of parallel memory virtualization): when the slot is
 * created, its whole map is built before the call returns, by
 * vmmu_vm_config.direct_build_workers threads, with the rules of a guest
 * read fault (largest legal leaf, writable where slot and host allow, A
 * and D left clear, MMU-notifier sequence checked, compare-and-exchange
 * under the MMU lock held for read).  Afterwards it is an ordinary map:
 * notifiers, zaps and memslot changes remove parts of it, which are then
 * faulted in on demand.  The flag cannot be added to or removed from an
 * existing slot, and such a slot cannot be moved (-EINVAL): delete it and
 * create it again.
 */
#define VMMU_MEM_DIRECT_BUILD (1u << 16)

struct vmmu_userspace_memory_region {
	uint32_t slot;  /* (address space << 16) | id */
	uint32_t flags; /* VMMU_MEM_* */
	uint64_t guest_phys_addr;
	uint64_t memory_size; /* bytes; 0 deletes the slot */
	uint64_t userspace_addr; /* HVA of the backing memory */
};

/*
 * Create, move (new guest_phys_addr), change the flags of, or delete
 * (memory_size 0) a memslot, with KVM's rules.  Faults on a slot being
 * deleted or moved retry until the call is done.
 *   0        done; when a delete or move returns, no root a vCPU can run
 *            on maps the old range and no vCPU TLB holds a mapping of it.
 *            With VMMU_SLOT_ZAP_RANGE no table at all maps it; with
 *            VMMU_SLOT_ZAP_ALL_FAST the obsolete roots (which no vCPU can
 *            reach, and which host invalidations still zap) may hold
 *            entries until the VM's zap thread has emptied them;
 *            vmmu_zap_all() and vmmu_vm_destroy() wait for it.
 *   -EINVAL  unknown flag, id or address space out of range; gpa, size or
 *            hva not page aligned; gpa+size or hva+size overflow; the range
 *            beyond what the VM's tables can address; on an existing slot a
 *            change of size, hva or READONLY; delete of a slot that does
 *            not exist (as KVM).
 *   -EEXIST  the range overlaps another slot in the same address space.
 *   -ENOMEM  out of memory; nothing changed.  With VMMU_MEM_DIRECT_BUILD
 *            also: the page-table pages for the map ran out
 *            (vmmu_vm_config.max_pt_pages); the slot was removed again
 *            before the call returned, and with it what had been built:
 *            to give its tables back, every mapping of the VM is zapped
 *            (vCPUs fault them back in; the pages return to the pool
 *            after an RCU grace period).  Should that removal itself find
 *            no memory, the slot stays, mapped in part, every mapping
 *            valid.
 *   -EFAULT  (VMMU_MEM_DIRECT_BUILD only) part of the slot's host memory
 *            is not memory of the VM's hostmem; the slot was removed again.
 */
int vmmu_set_user_memory_region(struct vmmu_vm *vm,
				const struct vmmu_userspace_memory_region *region);

/* Look up the HVA behind @gpa in address space @as_id: 0, -EINVAL, -ENOENT. */
int vmmu_gpa_to_hva(struct vmmu_vm *vm, unsigned as_id, uint64_t gpa, void **hva);

/* KVM_CREATE_VCPU.  0, -EINVAL (id >= VMMU_MAX_VCPUS), -EEXIST, -ENOMEM. */
int vmmu_vcpu_create(struct vmmu_vm *vm, unsigned id, struct vmmu_vcpu **out);
/* 0, -EINVAL. */
int vmmu_vcpu_destroy(struct vmmu_vcpu *vcpu);

/* EPT-violation exit qualification bits, as the processor reports them. */
#define VMMU_EPT_ACC_READ (1ull << 0)
#define VMMU_EPT_ACC_WRITE (1ull << 1)
#define VMMU_EPT_ACC_FETCH (1ull << 2)
#define VMMU_EPT_READABLE (1ull << 3)   /* the translation allowed reads */
#define VMMU_EPT_WRITABLE (1ull << 4)
#define VMMU_EPT_EXECUTABLE (1ull << 5)

/* What a page fault came to (KVM's RET_PF_*). */
enum vmmu_pf_result {
	VMMU_PF_FIXED = 0,    /* a mapping was installed: resume the guest */
	VMMU_PF_SPURIOUS = 1, /* someone else fixed it already: resume */
	VMMU_PF_RETRY = 2,    /* a race was lost: resume, it faults again */
	VMMU_PF_EMULATE = 3,  /* no memslot, or a write to a read-only slot: MMIO */
};

/*
 * Handle an EPT violation at @gpa with exit qualification @exit_qual
 * (VMMU_EPT_*).  Returns a non-negative enum vmmu_pf_result, or -EINVAL
 * (gpa beyond the tables), -ENOMEM (could not top up the page caches),
 * -EFAULT (the slot's host memory is no longer memory of the VM's hostmem,
 * as KVM_RUN fails when the host page cannot be found), -ENOBUFS (the
 * vCPU's dirty ring is soft-full, as for vmmu_vcpu_enter_guest(): nothing
 * was done; harvest and reset the ring, then fault again), -EBUSY (the vCPU
 * is in guest mode: a CPU leaves it before it reports a fault).
 * Safe to call concurrently on different vCPUs.
 */
int vmmu_vcpu_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa, uint64_t exit_qual);

/*
 * KVM_PRE_FAULT_MEMORY: map guest-physical [gpa, gpa + size) now, as the
 * vCPU's own faults would, so that its first accesses do not fault.  The
 * range is mapped with the rules of a guest read fault made ahead of time
 * (KVM's prefetch fault, error code without the write bit): the memslots
 * and MMU notifiers of the moment, the largest leaf the slot and host
 * allow, writable where the slot and the host page already allow writes,
 * Accessed and Dirty left clear.  It is a hint: later notifiers, zaps and
 * memslot changes remove mappings as usual.
 *
 * @range->gpa and @range->size are advanced past what was mapped, a huge
 * leaf counting from gpa to its end (clipped to size), also when the call
 * stops early: call again while size is non-zero.  flags must be 0,
 * padding is ignored.
 *   0            some progress was made (size may be non-zero: call again,
 *                the next call reports why it stopped)
 *   -EINVAL      NULL, flags not 0, gpa or size not page aligned, size 0,
 *                gpa + size overflows or is beyond what the VM's tables
 *                address; *range is unchanged
 *   -ENOENT      no memslot at range->gpa (MMIO)
 *   -EOPNOTSUPP  the vCPU's MMU is not the TDP one (shadow paging, nested)
 *   -EINTR       vmmu_vcpu_interrupt() was called before any progress
 *   -EAGAIN      the memslot at range->gpa is being deleted or moved: call
 *                again once the memslot update has returned
 *   -ENOMEM      the page-table pages could not be allocated
 *   -EFAULT      the slot's host memory is not memory of the VM's hostmem
 *   -EBUSY       the vCPU is in guest mode (leave it first)
 * Each error is the one met at range->gpa with nothing mapped; after
 * progress the call returns 0 instead and the next call reports it.
 * Like every vCPU call, on the vCPU's own thread (not in guest mode).
 */
struct vmmu_pre_fault_memory {
	uint64_t gpa;
	uint64_t size;
	uint64_t flags;
	uint64_t padding[5];
};
int vmmu_vcpu_pre_fault_memory(struct vmmu_vcpu *vcpu, struct vmmu_pre_fault_memory *range);

/*
 * Interrupt a long vCPU call, as a signal interrupts a KVM vCPU ioctl: the
 * next check of vmmu_vcpu_pre_fault_memory() (between runs of pages and
 * between retries) returns -EINTR, or 0 if it made progress.  The
 * interruption is consumed by the call it stops; if none is running, by
 * the next one.  Any thread may call it.  0, -EINVAL (NULL).
 */
int vmmu_vcpu_interrupt(struct vmmu_vcpu *vcpu);

/*
 * Zap (unmap) guest frames [gfn_start, gfn_end) in every address space
 * (KVM's kvm_zap_gfn_range).  TLBs are flushed before it returns.
 * 0, -EINVAL (start > end).
 */
int vmmu_zap_gfn_range(struct vmmu_vm *vm, uint64_t gfn_start, uint64_t gfn_end);

/* Zap everything (KVM's kvm_mmu_zap_all).  0. */
int vmmu_zap_all(struct vmmu_vm *vm);

/*
 * Host-facing part: what the host kernel does for KVM.
 *
 * MMU notifier (invalidate_range_start/end): the host is about to change
 * the memory at host addresses [hva_start, hva_end).  start zaps every
 * mapping of it and flushes TLBs before it returns; until the matching end,
 * faults on those gfns retry, and a fault that looked up its host page
 * before or during the invalidation never installs it.  Calls nest and may
 * come from several threads; memslot updates wait until none is active.
 * 0, or -EINVAL (NULL, or hva_start > hva_end; end without start).
 */
int vmmu_notify_invalidate_range_start(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end);
int vmmu_notify_invalidate_range_end(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end);

/*
 * Aging (the host's MMU-notifier aging calls, KVM's clear_young,
 * test_young and clear_flush_young): has the guest used the pages at host
 * addresses [hva_start, hva_end) since they were last aged?
 *
 * A page is "young" when a leaf maps it and, with EPT A/D bits, its
 * Accessed bit is set; without A/D bits (disable_ept_ad), when its leaf is
 * not in the access-tracked state.  Aging clears Accessed, or (without
 * A/D bits) takes every right away from the leaf, saving R and X in
 * software bits, so the next access faults and the lockless fault path
 * restores them.  Aging never changes what a page maps to, never drops
 * dirty state (W is given back only through a write fault, which logs the
 * page), never frees a table, and takes no MMU lock.
 *
 *   clear_young        age; no TLB flush (a translation cached in a TLB
 *                      may be used without setting A again, which only
 *                      makes the next answer less precise)
 *   clear_flush_young  age, then flush TLBs if anything was young
 *                      (KVM's kvm_age_gfn; x86 KVM skips the flush)
 *   test_young         only look
 *
 * *@young is set to whether any page of the range was young.
 * 0, or -EINVAL (NULL vm or young, hva_start > hva_end); *@young is left
 * unchanged on error.
 */
int vmmu_notify_clear_young(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end,
			    bool *young);
int vmmu_notify_clear_flush_young(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end,
				  bool *young);
int vmmu_notify_test_young(struct vmmu_vm *vm, uint64_t hva_start, uint64_t hva_end,
			   bool *young);

/*
 * Idle-page tracking over guest-physical ranges (what Linux's page_idle
 * bitmap does through the notifiers above): vmmu_idle_mark() ages every
 * page mapped in [gpa, gpa + size) of address space @as_id and flushes
 * TLBs, so the next access to each page is seen; vmmu_idle_count() sets
 * *@idle to the number of 4 KiB pages of the range that are mapped and not
 * young (a huge leaf counts for each of its pages inside the range), and
 * *@mapped (may be NULL) to the number of mapped pages.
 * 0, or -EINVAL (NULL vm or idle, as_id out of range, gpa or size not a
 * multiple of 4 KiB, gpa + size overflows or lies beyond what the VM's
 * tables can address); outputs unchanged on error.
 */
int vmmu_idle_mark(struct vmmu_vm *vm, unsigned as_id, uint64_t gpa, uint64_t size);
int vmmu_idle_count(struct vmmu_vm *vm, unsigned as_id, uint64_t gpa, uint64_t size,
		    uint64_t *idle, uint64_t *mapped);

/*
 * Dirty logging.  A slot with VMMU_MEM_LOG_DIRTY_PAGES records every page
 * written from the moment the flag was set, including the guest
 * page-table pages in which vmmu_vcpu_translate() or the processor set
 * Accessed/Dirty bits.  "Protected" below means: not writable in
 * write-protect mode; in dirty-bit mode a 4 KiB leaf without D (the next
 * write sets D and is logged) and a huge leaf not writable.  While the
 * slot is logged, faults map it with 4 KiB leaves only.
 *
 * What the call that sets the flag guarantees when it returns:
 *  - without VMMU_DIRTY_LOG_INITIALLY_SET: every leaf mapping the slot is
 *    protected and every TLB flushed; unless disable_eager_split, its huge
 *    leaves have been split to 4 KiB first (otherwise they stay huge, not
 *    writable, and are split by the first write fault to each);
 *  - with INITIALLY_SET (manual protect): nothing is protected.  Every
 *    page counts as dirty already, so leaves made before, 2 MiB and 1 GiB
 *    writable ones included, stay as they are until a
 *    vmmu_clear_dirty_log() covers part of them; that clear splits the
 *    huge leaves of its range (unless disable_eager_split, in which case
 *    a huge leaf overlapping the range is made non-writable whole) and
 *    protects the pages it clears.  Pages not cleared yet are reported as
 *    dirty by every vmmu_get_dirty_log(), so no write is missed.
 * Moving a logged slot keeps its dirty bitmap (bits not yet harvested are
 * still reported, at the same offsets).  Clearing the flag maps the slot
 * with huge pages again where the host allows it.
 *
 * KVM_GET_DIRTY_LOG: copy the slot's dirty bitmap (one bit per page, bit i
 * of word i / 64 for page i of the slot; the caller's buffer holds
 * ceil(npages / 64) words) into @bitmap.  Without manual protect the copied
 * bits are cleared and their pages protected again, and (if any bit was
 * set) every TLB is flushed, before the call returns: a write that happens
 * after the call returns is in the next bitmap.  With manual protect, nothing is cleared
 * (see vmmu_clear_dirty_log).
 *   0; -EINVAL (NULL, bad slot id or address space); -ENOENT (no such
 *   slot, or the slot is not logged, as KVM); -ENXIO (the VM uses dirty
 *   rings).
 */
int vmmu_get_dirty_log(struct vmmu_vm *vm, uint32_t slot, uint64_t *bitmap);

/*
 * KVM_CLEAR_DIRTY_LOG (manual protect): for the pages first_page + i with
 * bit i of @bitmap set, i < num_pages, clear their dirty bit and protect
 * them again; if any bit was cleared, TLBs are flushed before the call
 * returns.  With INITIALLY_SET, huge pages in the range are split first
 * (unless disable_eager_split).  Only bits the caller passes are touched: clear
 * only what you have fetched with vmmu_get_dirty_log.
 *   0; -EINVAL (NULL, bad slot, first_page not a multiple of 64,
 *   num_pages not a multiple of 64 unless the range ends at the slot's
 *   end, range beyond the slot, manual protect not enabled); -ENOENT (no
 *   such slot / not logged); -ENXIO (dirty rings).  Nothing changes on
 *   error.
 */
int vmmu_clear_dirty_log(struct vmmu_vm *vm, uint32_t slot, uint64_t first_page,
			 uint32_t num_pages, const uint64_t *bitmap);

/*
 * Dirty rings (KVM_CAP_DIRTY_LOG_RING).  Each vCPU owns a ring of
 * dirty_ring_size entries that vmmu fills as the vCPU dirties pages of
 * logged slots.  The collector reads flags with acquire semantics; an
 * entry with VMMU_DIRTY_GFN_F_DIRTY names a dirty page (slot as in
 * vmmu_userspace_memory_region.slot, offset in pages); after using it the
 * collector stores VMMU_DIRTY_GFN_F_RESET (release), and
 * vmmu_reset_dirty_rings() then protects those pages again and recycles
 * the entries.  When a ring is nearly full (its soft limit), entering
 * guest mode, vmmu_vcpu_page_fault() and vmmu_vcpu_translate() fail with
 * -ENOBUFS (KVM_EXIT_DIRTY_RING_FULL) before doing anything, until the
 * ring has been harvested and reset; the entries behind the soft limit
 * are a reserve for what the processor logged before it left guest mode,
 * so no dirty page is ever dropped.
 */
#define VMMU_DIRTY_GFN_F_DIRTY (1u << 0)
#define VMMU_DIRTY_GFN_F_RESET (1u << 1)
struct vmmu_dirty_gfn {
	uint32_t flags;
	uint32_t slot;
	uint64_t offset;
};

/* The ring of @vcpu (what KVM mmaps): 0, -EINVAL (NULL), -ENXIO (no rings). */
int vmmu_vcpu_dirty_ring(struct vmmu_vcpu *vcpu, struct vmmu_dirty_gfn **ring,
			 uint32_t *nr_entries);

/* KVM_RESET_DIRTY_RINGS: recycle every RESET entry of every vCPU's ring,
 * protecting its page again; TLBs flushed before it returns.  *@nr_reset
 * (may be NULL) gets the number of entries recycled.  0, -EINVAL (NULL vm),
 * -ENXIO (no rings). */
int vmmu_reset_dirty_rings(struct vmmu_vm *vm, uint64_t *nr_reset);

/* Binary stats, named as KVM names them. */
struct vmmu_vm_stats {
	uint64_t pages_4k, pages_2m, pages_1g; /* present leaves per level */
	uint64_t pt_pages;                     /* page-table pages in use */
	uint64_t roots;                        /* roots on the VM's list */
	uint64_t roots_built;                  /* roots allocated since creation */
	uint64_t remote_tlb_flush;
	uint64_t remote_tlb_flush_requests;
};

struct vmmu_vcpu_stats {
	uint64_t pf_taken, pf_fixed, pf_spurious, pf_retry, pf_emulate;
	/* Faults the lockless fast path resolved (fixed or spurious); they
	 * are also counted in pf_fixed or pf_spurious. */
	uint64_t pf_fast;
	uint64_t tlb_flush; /* flush requests this vCPU serviced */
};

/* 0, -EINVAL (NULL). */
int vmmu_vm_stats(struct vmmu_vm *vm, struct vmmu_vm_stats *out);
int vmmu_vcpu_stats(struct vmmu_vcpu *vcpu, struct vmmu_vcpu_stats *out);

/*
 * Walk the tables the way the processor would and report the leaf mapping
 * @gpa for address space @as_id: 0 with *hva (the byte @gpa maps to),
 * *level and *spte; -ENOENT if nothing is mapped; -EINVAL.  A debugging and
 * test aid: it takes no lock and sets no A/D bit.
 */
int vmmu_debug_lookup(struct vmmu_vm *vm, unsigned as_id, uint64_t gpa, void **hva,
		      int *level, uint64_t *spte);

/*
 * Processor interface: what a CPU (the hardware model in <vmmu/hw.h>, or an
 * emulator's own) calls around the guest code it runs, like KVM's
 * vcpu_enter_guest().
 *
 * While a vCPU is in guest mode it may use translations it walked or
 * cached; a remote TLB flush waits until every vCPU in guest mode has left
 * it once.  So the CPU must poll *vmmu_vcpu_kick_word() (a relaxed load is
 * enough) between accesses and, when it is non-zero, exit and re-enter:
 * re-entry services the requests and tells it to flush its TLB.  A CPU must
 * leave guest mode before it blocks or calls vmmu_vcpu_page_fault().
 */
struct vmmu_guest_entry {
	uint64_t *root;  /* the EPT root table to walk (entries are uint64_t) */
	int root_level;  /* 4 or 5 */
	bool ad_enabled; /* the processor sets A/D bits */
	bool flush_tlb;  /* drop every cached translation before going on */
	/*
	 * Page-modification log (dirty-bit mode, NULL otherwise): when the
	 * processor sets a leaf's D bit it stores the gpa of the written page
	 * at pml[*pml_count] and increments *pml_count; when *pml_count ==
	 * pml_size it must exit (and re-enter) before setting another D bit.
	 * vmmu empties the log on every exit.
	 */
	uint64_t *pml;
	unsigned *pml_count;
	unsigned pml_size;
};

/* Enter guest mode, servicing pending requests.  0, -EINVAL, -ENOBUFS
 * (the vCPU's dirty ring is soft-full: harvest and reset it first), -ENOMEM (a
 * new root could not be allocated; the vCPU stays outside guest mode). */
int vmmu_vcpu_enter_guest(struct vmmu_vcpu *vcpu, struct vmmu_guest_entry *entry);
/* Leave guest mode (acknowledges flushes).  0, -EINVAL. */
int vmmu_vcpu_exit_guest(struct vmmu_vcpu *vcpu);
/* The word to poll in guest mode; non-zero means "exit".  NULL for NULL. */
const uint64_t *vmmu_vcpu_kick_word(struct vmmu_vcpu *vcpu);
/* The width in bits of the guest-physical addresses the VM's tables map
 * (48 with 4-level tables, 57 with 5-level): a CPU checks an address
 * against it before it enters guest mode or reports a fault (-EINVAL
 * there).  0 with *@bits, -EINVAL (NULL). */
int vmmu_vcpu_gpa_bits(struct vmmu_vcpu *vcpu, unsigned *bits);

#ifdef __cplusplus
}
#endif

#endif /* VMMU_VMMU_H */
