/*
 * mmu.pml - Promela model of vmmu's lockless protocols for one guest page P
 * (see verify/README.md for the mapping of every process and variable to
 * the C code).
 *
 * One vCPU (hardware model + its own fault handling), one zapper (A), one
 * second thread (B: a zap or a dirty-log harvest, chosen by Spin), aging
 * without A/D bits, a table unlinker (U: a zap that removes the table
 * holding P's leaf) and the RCU grace-period machinery.
 *
 * Rules modelled (the fixed ones, DESIGN.md "Concurrency rules"):
 *  R1  a walker that meets an entry frozen by another thread does not
 *      return before that entry's TLB flush: here it flushes itself;
 *  R2  a harvest that harvested anything flushes;
 *  R3  page-table pages are freed through call_rcu after the unlinker's
 *      flush, never at once.
 * Mutants (each must make Spin report a counterexample):
 *  -DMUT_SKIP_FROZEN   R1 taken out: a frozen entry is skipped
 *  -DMUT_NO_HARVEST_FLUSH  R2 taken out: flush only if an entry changed
 *  -DMUT_FREE_NOW      R3 taken out: the unlinked table is freed at once
 *
 * Invariants (assertions):
 *  I1 no lost dirty page: at the end, every write is covered by a set
 *     bitmap dbit or by a harvest that reported the page;
 *  I2 no access through a freed table (every read or write of the table);
 *  I3 no writable translation (TLB entry or leaf) born before a harvest
 *     or zap that covered P is used after that call has returned.
 */

#ifndef NOPS
#define NOPS 3 /* guest accesses (or exits) the vCPU makes */
#endif

/* Leaf values (spte.h): */
#define NP 0     /* SPTE_NONPRESENT */
#define FROZEN 1 /* FROZEN_SPTE */
#define RO 2     /* present, MMU-writable, W clear (write-protected for log) */
#define WR 3     /* present, W set */
#define AT 4     /* access-tracked (aging without A/D): R/W/X clear */

/* Parent entry (the one linking table T): */
#define PRESENT 2

/* TLB entry for P in the vCPU: */
#define T_NONE 0
#define T_WR 1

byte leaf = WR;        /* T[index(P)] */
byte parent = PRESENT; /* root[index(P)] -> T */
bool t_freed = false;  /* T returned to the pool */
byte leaf_born = 1;    /* ghost: clock when the leaf became writable */
byte clk = 1;          /* ghost clock */
byte cover = 0;        /* ghost: start clock of the latest harvest/zap that returned */

bool dbit = true;       /* dirty bitmap dbit of P */
bool unlogged = false; /* ghost: a write not yet in the bitmap nor reported */

/* vCPU state (mmu.c: vcpu->mode, vcpu->requests; hw.c: its TLB) */
bool in_guest = false;
byte exits = 0;
bool req = false;
byte tlb = T_WR;
byte tlb_born = 1;

/* RCU (platform/rcu.c): read sections per thread, call_rcu pending */
#define NRCU 5 /* 0 vCPU, 1 A, 2 B, 3 U, 4 aging */
bool rcu_in[NRCU];
byte rcu_cnt[NRCU];
bool rcu_pending = false;
bool gp_in[NRCU];
byte gp_cnt[NRCU];

byte done = 0;

inline rcu_lock(me) { rcu_in[me] = true }
inline rcu_unlock(me) { d_step { rcu_in[me] = false; rcu_cnt[me]++ } }

inline touch_t() { assert(!t_freed) } /* I2 */

/* vmmu_flush_remote_tlbs: post the request, wait for the acknowledgement
 * of a vCPU in guest mode (a mode change or the request consumed). */
inline flush() {
	d_step { req = true; m_in = in_guest; m_ex = exits };
	if
	:: m_in -> (!in_guest || exits != m_ex || !req)
	:: else -> skip
	fi
}

inline covered(s) { d_step { if :: cover < s -> cover = s :: else -> skip fi } }

/* A guest write through a writable translation born at @b. */
inline guest_write(b) {
	d_step {
		assert(b > cover); /* I3 */
		if :: !dbit -> unlogged = true :: else -> skip fi
	}
}

inline mark_dirty() { d_step { dbit = true; unlogged = false } }

proctype vcpu() {
	byte ops = NOPS;
	byte e, p;
	do
	:: ops == 0 -> break
	:: else ->
		/* vmmu_vcpu_enter_guest: mode, then requests */
		/* mode store, then request load (both seq_cst); servicing
		 * a request leaves guest mode again and flushes the TLB */
		d_step {
			if
			:: req -> exits++; req = false; tlb = T_NONE; e = 1
			:: else -> in_guest = true; e = 0
			fi
		};
		if :: e -> goto next :: else -> skip fi;
		ops--;
		if
		:: tlb == T_WR -> guest_write(tlb_born) /* TLB hit */
		:: true -> /* TLB miss (or eviction): walk */
			p = parent;
			if
			:: p == PRESENT ->
				d_step { touch_t(); e = leaf;
					if :: e == WR -> tlb = T_WR; tlb_born = leaf_born :: else -> skip fi }
			:: else -> e = NP
			fi;
			if
			:: e == WR -> guest_write(tlb_born)
			:: else -> /* EPT violation: exit, then the fault */
				d_step { in_guest = false; exits++ };
				d_step { rcu_lock(0); p = parent };
				if
				:: p == PRESENT ->
					/* read the leaf and compare-and-exchange it:
					 * RO/AT -> W is fast_pf.c, NP -> W is
					 * tdp_mmu_map_target under the read lock;
					 * frozen or W: give up this access */
					d_step {
						touch_t();
						if
						:: leaf == RO || leaf == AT || leaf == NP ->
							clk++; leaf = WR; leaf_born = clk; e = WR
						:: else -> e = NP
						fi
					};
					/* log the page once W is visible */
					if :: e == WR -> mark_dirty() :: else -> skip fi
				:: else -> skip /* table gone: a new one would be built */
				fi;
				rcu_unlock(0)
			fi
		:: true -> d_step { in_guest = false; exits++ } /* any other exit */
		fi;
next:		skip
	od;
	in_guest = false;
	done++
}

/*
 * A zap of P (tdp_mmu_zap_leafs_root + zap_batch_commit): freeze, flush,
 * non-present.  @me is its RCU slot.
 */
inline zap_leaf(me) {
	d_step { s = clk; rcu_lock(me); p = parent };
	if
	:: p == PRESENT ->
		/* read and freeze (zap_batch_add's cmpxchg; a failed one
		 * re-reads, which this single step subsumes) */
		d_step {
			touch_t(); e = leaf;
			if :: e == RO || e == WR || e == AT -> leaf = FROZEN :: else -> skip fi
		};
		if
		:: e == RO || e == WR || e == AT -> flush(); d_step { touch_t(); leaf = NP }
		:: e == FROZEN ->
#ifndef MUT_SKIP_FROZEN
			flush() /* R1 */
#else
			skip
#endif
		:: else -> skip
		fi
	:: p == FROZEN ->
#ifndef MUT_SKIP_FROZEN
		flush() /* R1 */
#else
		skip
#endif
	:: else -> skip
	fi;
	d_step { rcu_unlock(me); covered(s) }
}

/* vmmu_get_dirty_log for P's word: take the dbit, protect, flush. */
inline harvest(me) {
	changed = false; metfrozen = false;
	d_step { took = dbit; dbit = false; s = clk };
	if
	:: took ->
		d_step { rcu_lock(me); p = parent };
		if
		:: p == PRESENT ->
			/* tdp_mmu_protect_leaf_for_log: read, cmpxchg W -> RO */
			d_step {
				touch_t(); e = leaf;
				if
				:: e == WR -> leaf = RO; changed = true
				:: e == FROZEN -> metfrozen = true
				:: else -> skip /* RO, AT, NP: nothing to protect */
				fi
			}
		:: p == FROZEN -> metfrozen = true
		:: else -> skip
		fi;
		rcu_unlock(me);
#ifndef MUT_SKIP_FROZEN
		if :: metfrozen -> changed = true :: else -> skip fi; /* R1 */
#endif
#ifndef MUT_NO_HARVEST_FLUSH
		flush() /* R2: harvested something */
#else
		if :: changed -> flush() :: else -> skip fi
#endif
		;
		d_step { if :: cover < s -> cover = s :: else -> skip fi; unlogged = false }
	:: else -> skip
	fi
}

proctype zapper() {
	byte s, e, p;
	bool ok, m_in;
	byte m_ex;
	zap_leaf(1);
	done++
}

proctype second() {
	byte s, e, p;
	bool ok, m_in, took, changed, metfrozen;
	byte m_ex;
	if
	:: zap_leaf(2)
	:: harvest(2)
	fi;
	done++
}

/* aging.c without A/D bits: make the leaf access-tracked, no flush. */
proctype aging() {
	byte e, p;
	d_step { rcu_lock(4); p = parent };
	if
	:: p == PRESENT ->
		d_step { touch_t(); e = leaf;
			if :: (e == WR || e == RO) -> leaf = AT :: else -> skip fi }
	:: else -> skip
	fi;
	rcu_unlock(4);
	done++
}

/*
 * A zap that unlinks T (zap of the whole range / memslot delete): freeze
 * the parent, flush, parent non-present, then handle_removed_pt: freeze
 * every entry of T (waiting for an owner's final value), call_rcu.
 */
proctype unlinker() {
	byte s, e, i;
	bool m_in;
	byte m_ex;
	d_step { s = clk; rcu_lock(3); parent = FROZEN };
	flush();
	/* parent non-present, then handle_removed_pt: exchange every entry
	 * of T for FROZEN, waiting while another owner holds one (a walker
	 * already inside T cannot tell the two steps apart: one step) */
	do
	:: d_step {
		parent = NP; touch_t(); e = leaf; leaf = FROZEN;
		if :: e != FROZEN -> e = 0 :: else -> skip fi
	   };
		if :: e == 0 -> break :: else -> skip fi
	od;
#ifdef MUT_FREE_NOW
	d_step { t_freed = true; rcu_unlock(3); covered(s) };
#else
	/* call_rcu: the grace period waits for the readers inside now */
	d_step {
		for (i : 0 .. NRCU - 1) {
			gp_in[i] = rcu_in[i] && i != 3; gp_cnt[i] = rcu_cnt[i]
		}
		rcu_pending = true; rcu_unlock(3); covered(s)
	};
#endif
	done++
}

/* The RCU grace period: ends when every reader that was inside at
 * call_rcu has left (platform/rcu.c, liburcu). */
proctype grace() {
end:	rcu_pending;
	d_step {
		(!gp_in[0] || rcu_cnt[0] != gp_cnt[0]) && (!gp_in[1] || rcu_cnt[1] != gp_cnt[1]) &&
		(!gp_in[2] || rcu_cnt[2] != gp_cnt[2]) && (!gp_in[4] || rcu_cnt[4] != gp_cnt[4]);
		t_freed = true
	}
}

init {
	byte n = 1;
	atomic {
		run vcpu();
#ifndef NO_ZAPPER
		run zapper(); n++;
#endif
#ifndef NO_SECOND
		run second(); n++;
#endif
#ifndef NO_AGING
		run aging(); n++;
#endif
#ifndef NO_UNLINK
		run unlinker(); n++;
		run grace();
#endif
	}
	done == n;
	assert(!unlogged) /* I1 */
}
