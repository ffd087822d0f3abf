/* SPDX-License-Identifier: MIT */
/* cli.h - what the hetmm command's files share. */
#ifndef HETMM_TOOLS_CLI_H
#define HETMM_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "report.h"

struct run_opts {
	bool json;
	uint64_t seed;
	uint64_t ram_size;       /* 0 = the workload's default */
	bool metadata_only;
	const char *fail_spec;   /* fault-injection spec, or NULL */
	unsigned int threads;    /* 0 = the workload's default */
};

struct workload {
	const char *name;
	const char *summary;
	/* Runs the workload and writes its report. Return: 0 or -errno. */
	int (*run)(const struct run_opts *o, struct report *r);
};

extern const struct workload hetmm_workloads[];
extern const unsigned int hetmm_nr_workloads;

const struct workload *workload_find(const char *name);

struct bench_opts {
	bool json;
	bool quick;
};

/* Run the benchmarks named in names[0..n) (all if n == 0). */
int bench_main(const struct bench_opts *o, const char *const *names, int n);
/* Print the benchmark names with one line each. */
void bench_list(void);
/* Nonzero if @name is a known benchmark. */
bool bench_exists(const char *name);

/*
 * The device part of the default workload (workload_dev.c): two mirror
 * devices on one process; adds a "devices" report section.
 * Return: 0, or -errno (-EIO for a data mismatch).
 */
struct hetmm_machine;
int run_devices(struct hetmm_machine *m, bool data, struct report *r);

/* Host resident memory of this process, bytes (from /proc/self/statm). */
uint64_t host_rss_bytes(void);
/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

#endif
