// SPDX-License-Identifier: MIT
/*
 * report.c - text and JSON report writer.
 *
 * Invariant: depth counts open sections; in JSON mode the top-level object
 * is open from report_init() to report_finish(), and need_comma[d] says
 * whether the next entry at depth d needs a separating comma.
 */
#include <inttypes.h>
#include <math.h>

#include "report.h"

void json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", out);
		else if (c == '\t')
			fputs("\\t", out);
		else if (c < 0x20)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

void report_init(struct report *r, FILE *out, bool json)
{
	r->out = out;
	r->json = json;
	r->depth = 0;
	for (int i = 0; i <= REPORT_MAX_DEPTH; i++)
		r->need_comma[i] = false;
	if (json)
		fputc('{', out);
}

static void key(struct report *r, const char *k)
{
	if (r->json) {
		if (r->need_comma[r->depth])
			fputc(',', r->out);
		r->need_comma[r->depth] = true;
		json_string(r->out, k);
		fputc(':', r->out);
	} else {
		fprintf(r->out, "%*s%-28s ", 2 * r->depth, "", k);
	}
}

void report_section(struct report *r, const char *name)
{
	if (r->depth >= REPORT_MAX_DEPTH)
		return;
	if (r->json) {
		key(r, name);
		fputc('{', r->out);
	} else {
		fprintf(r->out, "%s%*s%s:\n", r->depth ? "" : "\n",
			2 * r->depth, "", name);
	}
	r->depth++;
	r->need_comma[r->depth] = false;
}

void report_end(struct report *r)
{
	if (r->depth == 0)
		return;
	r->depth--;
	if (r->json)
		fputc('}', r->out);
}

static void unit(struct report *r, const char *u)
{
	if (!r->json)
		fprintf(r->out, "%s%s\n", u && *u ? " " : "", u ? u : "");
}

void report_u64(struct report *r, const char *k, uint64_t v, const char *u)
{
	key(r, k);
	fprintf(r->out, "%" PRIu64, v);
	unit(r, u);
}

void report_i64(struct report *r, const char *k, int64_t v, const char *u)
{
	key(r, k);
	fprintf(r->out, "%" PRId64, v);
	unit(r, u);
}

void report_f64(struct report *r, const char *k, double v, const char *u)
{
	key(r, k);
	if (r->json && !isfinite(v))
		fputs("null", r->out);
	else
		fprintf(r->out, r->json ? "%.6g" : "%.3f", v);
	unit(r, u);
}

void report_str(struct report *r, const char *k, const char *v)
{
	key(r, k);
	if (r->json)
		json_string(r->out, v);
	else
		fputs(v, r->out);
	unit(r, NULL);
}

void report_bool(struct report *r, const char *k, bool v)
{
	key(r, k);
	fputs(v ? "true" : "false", r->out);
	unit(r, NULL);
}

void report_finish(struct report *r)
{
	while (r->depth)
		report_end(r);
	if (r->json)
		fputs("}\n", r->out);
}
