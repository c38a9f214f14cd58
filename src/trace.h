/* SPDX-License-Identifier: MIT */
/*
 * trace.h - static tracepoints (USDT, <sys/sdt.h>).
 *
 * Each trace_vmmu(name, args...) is a single no-op instruction plus a note
 * in the ELF file naming the probe and where its arguments live; it costs
 * nothing until a tracer (perf, bpftrace, systemtap) attaches to it.  The
 * provider is "vmmu", so perf calls them sdt_vmmu:<name>.  Without the
 * header (VMMU_HAVE_SDT unset) every probe compiles to nothing, and its
 * arguments are not evaluated.
 *
 * Probes and their arguments (at most 12, integers or pointers):
 *   page_fault       vcpu id, gpa, exit qualification
 *   fast_page_fault  vcpu id, gpa, exit qualification, sptep, old spte,
 *                    new spte, result (enum vmmu_pf_result, or
 *                    VMMU_PF_CONTINUE when the slow path takes over)
 *   map              gfn, level, old spte, new spte (a leaf installed)
 *   zap              gfn, level, old spte (an entry made non-present)
 *   split            gfn, level of the huge leaf, huge spte (0 when the
 *                    fault path links a table where nothing was mapped)
 *   remote_flush     vm
 */
#ifndef VMMU_TRACE_H
#define VMMU_TRACE_H

#if defined(VMMU_HAVE_SDT) && VMMU_HAVE_SDT
#define SDT_USE_VARIADIC 1
#include <sys/sdt.h>
#define trace_vmmu(name, ...) STAP_PROBEV(vmmu, name, ##__VA_ARGS__)
#else
#define trace_vmmu(name, ...) ((void)0)
#endif

#endif /* VMMU_TRACE_H */
