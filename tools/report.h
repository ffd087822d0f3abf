/* SPDX-License-Identifier: MIT */
/*
 * report.h - one writer for the text and JSON forms of a report.
 *
 * A report is a tree of named sections holding key/value entries. The
 * text form prints "section:" headings and aligned "key  value  unit"
 * lines; the JSON form prints the same tree as nested objects, so a script
 * can read what a person reads.
 */
#ifndef HETMM_TOOLS_REPORT_H
#define HETMM_TOOLS_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define REPORT_MAX_DEPTH 8

struct report {
	FILE *out;
	bool json;
	int depth;
	bool need_comma[REPORT_MAX_DEPTH + 1];
};

void report_init(struct report *r, FILE *out, bool json);
void report_section(struct report *r, const char *name);
void report_end(struct report *r);
void report_u64(struct report *r, const char *key, uint64_t v,
		const char *unit);
void report_i64(struct report *r, const char *key, int64_t v,
		const char *unit);
void report_f64(struct report *r, const char *key, double v,
		const char *unit);
void report_str(struct report *r, const char *key, const char *v);
void report_bool(struct report *r, const char *key, bool v);
/* Close every open section (and the JSON object). */
void report_finish(struct report *r);
/* Print @s as a JSON string literal. */
void json_string(FILE *out, const char *s);

#endif
