/* SPDX-License-Identifier: MIT */
/* bench.h - what the benchmark files share (bench.c, bench_dev.c,
 * bench_gup.c). */
#ifndef HETMM_TOOLS_BENCH_H
#define HETMM_TOOLS_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

struct hetmm_machine;
struct mm_struct;

/* Repetitions of each timed loop; the fastest one counts. */
#define REPS 7

struct bench_result {
	const char *unit;
	double ours, peer;
	const char *peer_name;
	const char *note;
};

struct hetmm_machine *bench_machine(uint64_t ram, bool data);
/* A machine for the process benchmarks: carries data, warmed. */
struct hetmm_machine *bench_proc_machine(uint64_t ram);
struct mm_struct *bench_process(struct hetmm_machine *m);
/* Print "hetmm: bench: @what failed: ..." and exit. */
void bench_fail(const char *what, long err);
/* Host anonymous memory, 2 MiB aligned if @huge (with MADV_HUGEPAGE). */
void *map_anon(size_t bytes, bool huge);
/* @n populated host 4 KiB pages (no THP). */
unsigned char *host_populated(unsigned long n);
/* Kernel: fault in and free (MADV_DONTNEED) @len bytes at @buf, @n times. */
double kernel_fault_free_ns(unsigned char *buf, size_t len, unsigned long n);

/* Device-memory benchmarks (bench_dev.c). */
void bench_hmmsnap(const struct bench_opts *o, struct bench_result *res);
void bench_migrate4k(const struct bench_opts *o, struct bench_result *res);
void bench_migrate2m(const struct bench_opts *o, struct bench_result *res);
void bench_devfault(const struct bench_opts *o, struct bench_result *res);

/*
 * Pinning benchmarks (bench_gup.c), like the kernel's gup_test, against
 * io_uring buffer registration: GUP_FAST, PIN_FAST, PIN_LONGTERM and the
 * range outputs (folio runs, phys runs, packed PFNs), over 4 KiB-backed
 * (*4k) and THP-backed (*2m) memory.
 */
void bench_gup4k(const struct bench_opts *o, struct bench_result *res);
void bench_gup2m(const struct bench_opts *o, struct bench_result *res);
void bench_pin4k(const struct bench_opts *o, struct bench_result *res);
void bench_pin2m(const struct bench_opts *o, struct bench_result *res);
void bench_pinlt4k(const struct bench_opts *o, struct bench_result *res);
void bench_pinlt2m(const struct bench_opts *o, struct bench_result *res);
void bench_rfolio4k(const struct bench_opts *o, struct bench_result *res);
void bench_rfolio2m(const struct bench_opts *o, struct bench_result *res);
void bench_rphys4k(const struct bench_opts *o, struct bench_result *res);
void bench_rphys2m(const struct bench_opts *o, struct bench_result *res);
void bench_rpfn4k(const struct bench_opts *o, struct bench_result *res);
void bench_rpfn2m(const struct bench_opts *o, struct bench_result *res);

#endif
