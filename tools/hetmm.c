// SPDX-License-Identifier: MIT
/*
 * hetmm.c - the `hetmm` command: run workloads, run benchmarks.
 *
 * Exit status: 0 on success, 1 if a workload failed (an invariant broke or
 * data did not verify), 2 for bad arguments (one line on stderr).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hetmm/hetmm.h>

#include "cli.h"

static const char *const main_help =
	"usage: hetmm [--version] [--help] COMMAND [ARGS]\n"
	"\n"
	"A user-space model of the Linux heterogeneous memory stack on a\n"
	"simulated machine.\n"
	"\n"
	"commands:\n"
	"  run [WORKLOAD]    run a built-in workload (default: 'default') and report\n"
	"  bench [NAME...]   run microbenchmarks side by side with the kernel/libc\n"
	"  list              list the built-in workloads and benchmarks\n"
	"\n"
	"'hetmm COMMAND --help' describes each command's options.\n";

static const char *const run_help =
	"usage: hetmm run [OPTIONS] [WORKLOAD]\n"
	"\n"
	"Run a built-in workload on a fresh simulated machine and print a report.\n"
	"The run fails (exit 1) if hetmm_check() finds a broken invariant or data\n"
	"read back differs from what was written.\n"
	"\n"
	"options:\n"
	"  --json              print the report as one JSON object\n"
	"  --seed N            seed for the workload's random choices (default: time)\n"
	"  --ram SIZE          simulated RAM, e.g. 512M, 4G, 1T (multiple of 4 MiB)\n"
	"  --metadata-only     frames carry no bytes (large-scale policy runs)\n"
	"  --threads N         CPU threads for multi-threaded workloads (1..16)\n"
	"  --fail SPEC         inject failures: SITE:nth=N | from=N | every=N |\n"
	"                      prob=P[,seed=S], several joined with ';'. Sites:\n"
	"                      alloc_pages memmap_online copy_page pgtable_alloc\n"
	"                      device_alloc device_copy\n"
	"  --help              this text\n";

static const char *const bench_help =
	"usage: hetmm bench [--json] [--quick] [NAME...]\n"
	"\n"
	"Run microbenchmarks (all, or the NAMEs given). Each measures our\n"
	"operation and the closest operation of the real kernel (or memcpy/memset)\n"
	"in the same run, and reports the ratio ours/peer.\n"
	"\n"
	"options:\n"
	"  --json    one JSON object per line: {\"bench\",\"unit\",\"ours\",\"peer\",\n"
	"            \"peer_name\",\"ratio\"}\n"
	"  --quick   fewer iterations (a smoke run)\n"
	"  --list    list the benchmarks\n"
	"  --help    this text\n";

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
	fprintf(stderr, "hetmm: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (try 'hetmm %s--help')\n", cmd);
	return 2;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "512M", "4G", "1T", "65536K" or bytes. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned int shift = 0;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 0:
		break;
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	case 'T': case 't': shift = 40; end++; break;
	default: return -EINVAL;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	struct run_opts o = { .seed = (uint64_t)time(NULL) };
	const char *name = NULL;
	const struct workload *w;
	struct report r;
	int ret;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(run_help, stdout);
			return 0;
		} else if (!strcmp(a, "--json")) {
			o.json = true;
		} else if (!strcmp(a, "--metadata-only")) {
			o.metadata_only = true;
		} else if (!strcmp(a, "--seed")) {
			if (parse_u64(v, &o.seed))
				return usage_error("run ", "--seed needs a number, got '%s'",
						   v ? v : "");
			i++;
		} else if (!strcmp(a, "--ram")) {
			if (parse_size(v, &o.ram_size))
				return usage_error("run ", "--ram needs a size like 512M, got '%s'",
						   v ? v : "");
			i++;
		} else if (!strcmp(a, "--threads")) {
			uint64_t t;

			if (parse_u64(v, &t) || t < 1 || t > 16)
				return usage_error("run ", "--threads needs 1..16, got '%s'",
						   v ? v : "");
			o.threads = (unsigned int)t;
			i++;
		} else if (!strcmp(a, "--fail")) {
			struct hetmm_faults probe = { 0 };

			if (!v || hetmm_fault_parse(&probe, v))
				return usage_error("run ", "bad --fail spec '%s'",
						   v ? v : "");
			o.fail_spec = v;
			i++;
		} else if (a[0] == '-') {
			return usage_error("run ", "unknown option '%s'", a);
		} else if (name) {
			return usage_error("run ", "more than one workload given ('%s')", a);
		} else {
			name = a;
		}
	}
	if (!name)
		name = "default";
	w = workload_find(name);
	if (!w)
		return usage_error("", "unknown workload '%s' (see 'hetmm list')",
				   name);
	if (o.ram_size) {
		struct hetmm_machine_config c;
		const char *why;

		hetmm_machine_config_default(&c);
		c.ram_size = o.ram_size;
		if (hetmm_machine_config_check(&c, &why))
			return usage_error("run ", "--ram: %s", why);
	}
	report_init(&r, stdout, o.json);
	if (!o.json)
		printf("hetmm run %s  (seed %llu)\n", w->name,
		       (unsigned long long)o.seed);
	ret = w->run(&o, &r);
	report_finish(&r);
	if (ret) {
		fprintf(stderr, "hetmm: workload '%s' failed: %s\n", w->name,
			ret == -EUCLEAN ? "invariant check failed (see report)" :
					  hetmm_errname(ret));
		return 1;
	}
	return 0;
}

static int cmd_bench(int argc, char **argv)
{
	struct bench_opts o = { 0 };
	const char **names = calloc((size_t)argc + 1, sizeof(*names));
	int n = 0, ret;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(bench_help, stdout);
			free(names);
			return 0;
		} else if (!strcmp(a, "--list")) {
			bench_list();
			free(names);
			return 0;
		} else if (!strcmp(a, "--json")) {
			o.json = true;
		} else if (!strcmp(a, "--quick")) {
			o.quick = true;
		} else if (a[0] == '-') {
			free(names);
			return usage_error("bench ", "unknown option '%s'", a);
		} else if (!bench_exists(a)) {
			free(names);
			return usage_error("bench ", "unknown benchmark '%s'", a);
		} else {
			names[n++] = a;
		}
	}
	ret = bench_main(&o, names, n);
	free(names);
	return ret;
}

static int cmd_list(void)
{
	printf("workloads (hetmm run NAME):\n");
	for (unsigned int i = 0; i < hetmm_nr_workloads; i++)
		printf("  %-10s %s\n", hetmm_workloads[i].name,
		       hetmm_workloads[i].summary);
	printf("benchmarks (hetmm bench NAME):\n");
	bench_list();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(main_help, stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		fputs(main_help, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("hetmm 0.1.0\n");
		return 0;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 2, argv + 2);
	if (!strcmp(argv[1], "bench"))
		return cmd_bench(argc - 2, argv + 2);
	if (!strcmp(argv[1], "list"))
		return cmd_list();
	return usage_error("", "unknown command '%s'", argv[1]);
}
