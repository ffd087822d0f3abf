// SPDX-License-Identifier: MIT
/*
 * check.c - the checker registry and report buffer.
 *
 * Locking and invariants: machine.check_lock serialises registration,
 * unregistration and runs of hetmm_check(); checkers[0..nr_checkers) are
 * the registered checks in registration order, names unique. The report
 * buffer belongs to the last run and is replaced by the next.
 */
#include <stdarg.h>
#include <string.h>

#include <hetmm/check.h>
#include <hetmm/err.h>
#include <hetmm/phys.h>
#include <hetmm/rcu.h>

struct hetmm_check_ctx {
	const char *checker;
	unsigned int nfail;
	char *buf;
	size_t len, cap;
};

int hetmm_checker_register(struct hetmm_machine *m, const char *name,
			   hetmm_check_fn fn, void *arg)
{
	int ret = 0;

	if (!m || !name || !fn)
		return -EINVAL;
	mutex_lock(&m->check_lock);
	for (unsigned int i = 0; i < m->nr_checkers; i++) {
		if (!strcmp(m->checkers[i].name, name)) {
			ret = -EEXIST;
			goto out_unlock;
		}
	}
	if (m->nr_checkers == HETMM_MAX_CHECKERS) {
		ret = -ENOSPC;
		goto out_unlock;
	}
	m->checkers[m->nr_checkers++] =
		(struct hetmm_checker){ .name = name, .fn = fn, .arg = arg };
out_unlock:
	mutex_unlock(&m->check_lock);
	return ret;
}

int hetmm_checker_unregister(struct hetmm_machine *m, const char *name)
{
	int ret = -ENOENT;

	if (!m || !name)
		return -EINVAL;
	mutex_lock(&m->check_lock);
	for (unsigned int i = 0; i < m->nr_checkers; i++) {
		if (strcmp(m->checkers[i].name, name))
			continue;
		memmove(&m->checkers[i], &m->checkers[i + 1],
			(m->nr_checkers - i - 1) * sizeof(m->checkers[0]));
		m->nr_checkers--;
		ret = 0;
		break;
	}
	mutex_unlock(&m->check_lock);
	return ret;
}

void hetmm_check_fail(struct hetmm_check_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	int n;

	/* Keep the report readable: the first 64 messages are enough. */
	if (++ctx->nfail > 64)
		return;
	for (;;) {
		size_t room = ctx->cap - ctx->len;

		va_start(ap, fmt);
		n = room ? snprintf(ctx->buf + ctx->len, room, "%s: ",
				    ctx->checker) :
			   -1;
		if (n >= 0 && (size_t)n < room)
			n += vsnprintf(ctx->buf + ctx->len + n, room - n, fmt,
				       ap);
		va_end(ap);
		if (n >= 0 && (size_t)n + 2 <= room) {
			ctx->len += n;
			ctx->buf[ctx->len++] = '\n';
			ctx->buf[ctx->len] = 0;
			return;
		}
		size_t ncap = ctx->cap ? ctx->cap * 2 : 1024;
		char *nb = realloc(ctx->buf, ncap);

		if (!nb)
			return; /* drop the message rather than fail */
		ctx->buf = nb;
		ctx->cap = ncap;
	}
}

int hetmm_check(struct hetmm_machine *m)
{
	struct hetmm_check_ctx ctx = { 0 };

	if (!m)
		return -EINVAL;
	/*
	 * call_rcu() frees (page-table frames) run on liburcu's own thread,
	 * which callers cannot quiesce: let them land before any checker
	 * reads the frame counts.
	 */
	rcu_barrier();
	mutex_lock(&m->check_lock);
	for (unsigned int i = 0; i < m->nr_checkers; i++) {
		ctx.checker = m->checkers[i].name;
		m->checkers[i].fn(m, m->checkers[i].arg, &ctx);
	}
	if (ctx.nfail > 64) {
		ctx.checker = "check";
		unsigned int n = ctx.nfail;

		ctx.nfail = 0;
		hetmm_check_fail(&ctx, "%u more problems not shown", n - 64);
		ctx.nfail = n;
	}
	free(m->check_report);
	m->check_report = ctx.buf;
	mutex_unlock(&m->check_lock);
	return ctx.nfail ? -EUCLEAN : 0;
}

const char *hetmm_check_report(struct hetmm_machine *m)
{
	return m && m->check_report ? m->check_report : "";
}
