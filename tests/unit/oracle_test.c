// SPDX-License-Identifier: MIT
/*
 * oracle_test.c - long random sequences of process-face calls over one to
 * four simulated processes, checked against a flat-memory model of Linux
 * semantics.
 *
 * The model keeps, per process, one record per page of a window of
 * WIN_PAGES pages that ends at HETMM_MMAP_BASE (so top-down placement of
 * non-fixed mmaps and mremap moves lands in it and can be predicted):
 *
 *   vma        an id shared by the pages of one VMA (VMAs are never merged
 *              by the simulator; every split hands the tail a new id)
 *   kind       private/shared, anonymous/file
 *   prot       the PROT_* bits; nowrite = VM_MAYWRITE cleared (a shared
 *              map of a file opened read-only)
 *   dontfork   MADV_DONTFORK
 *   obj, pg    for file and shared anonymous pages: the model object (a
 *              file's bytes and size; shared anonymous memory is an
 *              unlinked file of fixed size) and the page index in it
 *   priv       the page's own bytes: private anonymous pages once written
 *              (NULL reads as zeros), private file pages once COWed (NULL:
 *              the page still shows the file, even after the file changed)
 *
 * Every call's result (value or errno) is predicted by the model and must
 * match; every few steps every page of every process is read back through
 * the CPUs and compared, and hetmm_check() runs after every step.
 *
 * Failed CPU accesses: as uapi.h documents, the bytes of the pages before
 * the faulting one are transferred; the model does the same.
 *
 * HETMM_SEED replays a run (seeds SEED, SEED+1, ...); HETMM_LONG=1 runs
 * many more steps; HETMM_ORACLE_SEEDS=n sets the number of seeds;
 * HETMM_ORACLE_TRACE=1 prints every operation and its result.
 */
#include <fcntl.h>

#include <hetmm/check.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define WIN_PAGES 256
#define WIN_BASE (HETMM_MMAP_BASE - WIN_PAGES * PAGE_SIZE)
#define WIN_END HETMM_MMAP_BASE
#define MAX_PROCS 4
#define NFILES 3
#define FILE_CAP_PAGES 24
#define FILE_CAP (FILE_CAP_PAGES * PAGE_SIZE)
#define HIST 24

enum kind { K_NONE, K_PRIV_ANON, K_SHARED_ANON, K_PRIV_FILE, K_SHARED_FILE };

static const char *const kind_name[] = { "none", "priv-anon", "shared-anon",
					 "priv-file", "shared-file" };

struct mobj {
	size_t size;
	size_t cap;
	unsigned char *data; /* cap bytes; zero beyond round_up(size) */
	int file;            /* index in the file table, -1: shared anon */
	struct mobj *next;   /* every object, for freeing at the end */
};

struct mpage {
	unsigned int vma; /* 0: unmapped */
	unsigned char kind;
	unsigned char prot;
	bool dontfork;
	bool nowrite;
	struct mobj *obj;
	unsigned long pg;
	unsigned char *priv;
};

struct mproc {
	struct mm_struct *mm;
	unsigned int id; /* for messages */
	struct mpage pages[WIN_PAGES];
};

struct mfile {
	struct mobj *obj;
	int fd_rw, fd_ro, fd_wo;
	char name[32];
};

struct oracle {
	struct hetmm_machine *m;
	struct test_rng rng;
	uint64_t seed;
	unsigned int step;
	unsigned int nr_cpus;
	unsigned int next_vma;
	unsigned int next_pid;
	bool trace;
	struct mproc *procs[MAX_PROCS];
	int nproc;
	struct mfile files[NFILES];
	struct mobj *objs;
	unsigned long n_ok, n_err; /* predicted successes and errors */
	char op[256];
	char hist[HIST][280];
	unsigned int nhist;
	unsigned char buf[4 * PAGE_SIZE + 64];
	unsigned char buf2[4 * PAGE_SIZE + 64];
};

static const unsigned char zeros[PAGE_SIZE];

static void dump_history(struct oracle *o)
{
	unsigned int n = o->nhist < HIST ? o->nhist : HIST;

	fprintf(stderr, "oracle: seed %llu step %u, last %u operations:\n",
		(unsigned long long)o->seed, o->step, n);
	for (unsigned int i = o->nhist - n; i < o->nhist; i++)
		fprintf(stderr, "  %s\n", o->hist[i % HIST]);
}

#define OFAIL(o, fmt, ...)                                                     \
	do {                                                                   \
		dump_history(o);                                               \
		fail_msg("seed %llu step %u op [%s]: " fmt,                    \
			 (unsigned long long)(o)->seed, (o)->step, (o)->op,     \
			 ##__VA_ARGS__);                                       \
	} while (0)

#define OEXPECT(o, got, want)                                                  \
	do {                                                                   \
		long __g = (long)(got), __w = (long)(want);                    \
		if (__g != __w)                                                \
			OFAIL(o, "%s returned %ld, model expects %ld", #got,   \
			      __g, __w);                                       \
		if ((o)->trace)                                                \
			fprintf(stderr, "    = %ld\n", __g);                   \
		if (__w < 0)                                                   \
			(o)->n_err++;                                          \
		else                                                           \
			(o)->n_ok++;                                           \
	} while (0)

static void op_set(struct oracle *o, const char *fmt, ...) __printf(2, 3);
static void op_set(struct oracle *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(o->op, sizeof(o->op), fmt, ap);
	va_end(ap);
	snprintf(o->hist[o->nhist % HIST], sizeof(o->hist[0]), "%u: %s",
		 o->step, o->op);
	o->nhist++;
	if (o->trace)
		fprintf(stderr, "%u: %s\n", o->step, o->op);
}

static uint64_t rnd(struct oracle *o, uint64_t n)
{
	return test_rng_below(&o->rng, n);
}

static bool chance(struct oracle *o, unsigned int pct)
{
	return rnd(o, 100) < pct;
}

static unsigned long pg_addr(long idx)
{
	return WIN_BASE + (unsigned long)idx * PAGE_SIZE;
}

/* ------------------------------------------------------------ model */

static struct mobj *obj_new(struct oracle *o, size_t cap, int file)
{
	struct mobj *ob = calloc(1, sizeof(*ob));

	assert_non_null(ob);
	ob->cap = cap;
	ob->data = calloc(1, cap);
	assert_non_null(ob->data);
	ob->file = file;
	ob->next = o->objs;
	o->objs = ob;
	return ob;
}

static unsigned long obj_pages(const struct mobj *ob)
{
	return (ob->size + PAGE_SIZE - 1) / PAGE_SIZE;
}

static bool page_readable(const struct mpage *p)
{
	return p->vma && p->prot;
}

static bool page_writable(const struct mpage *p)
{
	return p->vma && (p->prot & PROT_WRITE);
}

/* The bytes a read of page @p sees, or NULL for -EFAULT. */
static const unsigned char *page_read(const struct mpage *p)
{
	if (!page_readable(p))
		return NULL;
	if (p->priv)
		return p->priv;
	if (p->kind == K_PRIV_ANON)
		return zeros;
	if (p->pg >= obj_pages(p->obj))
		return NULL; /* beyond EOF: SIGBUS */
	return p->obj->data + p->pg * PAGE_SIZE;
}

/* The bytes a write fault on @p makes writable (COW done), or NULL. */
static unsigned char *page_write(struct mpage *p)
{
	if (!page_writable(p))
		return NULL;
	if (p->priv)
		return p->priv;
	if (p->kind == K_PRIV_ANON) {
		p->priv = calloc(1, PAGE_SIZE);
		assert_non_null(p->priv);
		return p->priv;
	}
	if (p->pg >= obj_pages(p->obj))
		return NULL;
	if (p->kind == K_PRIV_FILE) {
		p->priv = malloc(PAGE_SIZE);
		assert_non_null(p->priv);
		memcpy(p->priv, p->obj->data + p->pg * PAGE_SIZE, PAGE_SIZE);
		return p->priv;
	}
	return p->obj->data + p->pg * PAGE_SIZE;
}

static void page_clear(struct mpage *p)
{
	free(p->priv);
	memset(p, 0, sizeof(*p));
}

/* The VMA containing @idx is split so that a VMA starts at @idx. */
static void split_at(struct oracle *o, struct mproc *pr, long idx)
{
	unsigned int v, nv;

	if (idx <= 0 || idx >= WIN_PAGES)
		return;
	v = pr->pages[idx].vma;
	if (!v || pr->pages[idx - 1].vma != v)
		return;
	nv = o->next_vma++;
	for (long i = idx; i < WIN_PAGES && pr->pages[i].vma == v; i++)
		pr->pages[i].vma = nv;
}

static void model_unmap(struct oracle *o, struct mproc *pr, long s, long e)
{
	split_at(o, pr, s);
	split_at(o, pr, e);
	for (long i = s; i < e; i++)
		page_clear(&pr->pages[i]);
}

static bool range_all_mapped(struct mproc *pr, long s, long e)
{
	for (long i = s; i < e; i++)
		if (!pr->pages[i].vma)
			return false;
	return true;
}

static bool range_any_mapped(struct mproc *pr, long s, long e)
{
	for (long i = s; i < e; i++)
		if (pr->pages[i].vma)
			return true;
	return false;
}

static void vma_extent(struct mproc *pr, long idx, long *lo, long *hi)
{
	unsigned int v = pr->pages[idx].vma;
	long a = idx, b = idx + 1;

	while (a > 0 && pr->pages[a - 1].vma == v)
		a--;
	while (b < WIN_PAGES && pr->pages[b].vma == v)
		b++;
	*lo = a;
	*hi = b;
}

/*
 * Where get_unmapped_area() puts @n pages: the top of the highest gap
 * that fits, below HETMM_MMAP_BASE. -1 if that is not inside the window.
 */
static long model_gua(struct mproc *pr, long n)
{
	long top = WIN_PAGES;

	while (top > 0) {
		long j = top;

		while (j > 0 && !pr->pages[j - 1].vma)
			j--;
		if (top - j >= n)
			return top - n;
		if (j == 0)
			return -1;
		while (j > 0 && pr->pages[j - 1].vma)
			j--;
		top = j;
	}
	return -1;
}

/* Drop every COW copy of @ob's pages at or beyond @first (truncate). */
static void model_zap_cows(struct oracle *o, struct mobj *ob,
			   unsigned long first)
{
	for (int i = 0; i < o->nproc; i++)
		for (long k = 0; k < WIN_PAGES; k++) {
			struct mpage *p = &o->procs[i]->pages[k];

			if (p->vma && p->kind == K_PRIV_FILE && p->obj == ob &&
			    p->pg >= first && p->priv) {
				free(p->priv);
				p->priv = NULL;
			}
		}
}

/* Zero the bytes of the last page beyond the size (before growing). */
static void obj_zero_tail(struct mobj *ob)
{
	size_t end = obj_pages(ob) * PAGE_SIZE;

	memset(ob->data + ob->size, 0, end - ob->size);
}

static void model_truncate(struct oracle *o, struct mobj *ob, size_t size)
{
	if (size > ob->size) {
		obj_zero_tail(ob);
	} else if (size < ob->size) {
		size_t old_end = obj_pages(ob) * PAGE_SIZE;

		memset(ob->data + size, 0, old_end - size);
		model_zap_cows(o, ob, (size + PAGE_SIZE - 1) / PAGE_SIZE);
	}
	ob->size = size;
}

/* ------------------------------------------------------------ helpers */

static struct mproc *proc_new(struct oracle *o, struct mm_struct *mm)
{
	struct mproc *pr = calloc(1, sizeof(*pr));

	assert_non_null(pr);
	pr->mm = mm;
	pr->id = o->next_pid++;
	return pr;
}

static void proc_free(struct mproc *pr)
{
	for (long i = 0; i < WIN_PAGES; i++)
		free(pr->pages[i].priv);
	free(pr);
}

static struct mproc *pick_proc(struct oracle *o)
{
	return o->procs[rnd(o, (uint64_t)o->nproc)];
}

/* A mapped page chosen uniformly, or -1 if there is none. */
static long pick_mapped(struct oracle *o, struct mproc *pr)
{
	long n = 0, k;

	for (long i = 0; i < WIN_PAGES; i++)
		n += pr->pages[i].vma != 0;
	if (!n)
		return -1;
	k = (long)rnd(o, (uint64_t)n);
	for (long i = 0; i < WIN_PAGES; i++)
		if (pr->pages[i].vma && !k--)
			return i;
	return -1;
}

/* The run of mapped pages (of any VMAs) around @idx. */
static void mapped_run(struct mproc *pr, long idx, long *lo, long *hi)
{
	long a = idx, b = idx + 1;

	while (a > 0 && pr->pages[a - 1].vma)
		a--;
	while (b < WIN_PAGES && pr->pages[b].vma)
		b++;
	*lo = a;
	*hi = b;
}

/*
 * A page range [*s, *s + *n) in the window: mostly inside mapped memory,
 * sometimes overlapping its edges, sometimes anywhere.
 */
static void pick_range(struct oracle *o, struct mproc *pr, long maxn, long *s,
		       long *n)
{
	unsigned int how = (unsigned int)rnd(o, 100);
	long i = how < 80 ? pick_mapped(o, pr) : -1, lo, hi;

	if (i >= 0 && how < 60) {
		mapped_run(pr, i, &lo, &hi);
		*s = lo + (long)rnd(o, (uint64_t)(hi - lo));
		if (hi - *s < maxn)
			maxn = hi - *s;
		*n = 1 + (long)rnd(o, (uint64_t)maxn);
		return;
	}
	if (i >= 0)
		*s = i - (long)rnd(o, 3);
	else
		*s = (long)rnd(o, WIN_PAGES);
	if (*s < 0)
		*s = 0;
	*n = 1 + (long)rnd(o, (uint64_t)maxn);
	if (*s + *n > WIN_PAGES)
		*n = WIN_PAGES - *s;
}

static int rand_prot(struct oracle *o)
{
	static const int prots[] = { PROT_READ | PROT_WRITE,
				     PROT_READ | PROT_WRITE,
				     PROT_READ | PROT_WRITE,
				     PROT_READ | PROT_WRITE,
				     PROT_READ | PROT_WRITE,
				     PROT_READ,
				     PROT_READ,
				     PROT_NONE,
				     PROT_WRITE,
				     PROT_READ | PROT_EXEC };

	return prots[rnd(o, ARRAY_SIZE(prots))];
}

static void fill_random(struct oracle *o, unsigned char *b, size_t n)
{
	uint64_t v = test_rng_next(&o->rng);

	for (size_t i = 0; i < n; i++) {
		if (!(i & 7))
			v = test_rng_next(&o->rng);
		b[i] = (unsigned char)(v >> ((i & 7) * 8));
	}
	/* Sometimes runs of zeros, so "reads zeros" bugs are not masked. */
	if (n > 16 && chance(o, 10))
		memset(b + n / 4, 0, n / 2);
}

/* ------------------------------------------------------------ checks */

static void check_machine(struct oracle *o)
{
	if (hetmm_check(o->m))
		OFAIL(o, "hetmm_check failed:\n%s", hetmm_check_report(o->m));
}

static void check_page(struct oracle *o, struct mproc *pr, long i)
{
	const struct mpage *p = &pr->pages[i];
	const unsigned char *want = page_read(p);
	unsigned int cpu = (unsigned int)rnd(o, o->nr_cpus);
	int ret;

	if (!p->vma) {
		ret = hetmm_cpu_read(pr->mm, cpu, pg_addr(i) + rnd(o, PAGE_SIZE),
				     o->buf, 1);
		if (ret != -EFAULT)
			OFAIL(o, "proc %u: read of unmapped %#lx returned %d",
			      pr->id, pg_addr(i), ret);
		return;
	}
	ret = hetmm_cpu_read(pr->mm, cpu, pg_addr(i), o->buf, PAGE_SIZE);
	if (ret != (want ? 0 : -EFAULT))
		OFAIL(o, "proc %u: read of %s page %#lx (prot %d pg %lu) returned %d, model expects %d",
		      pr->id, kind_name[p->kind], pg_addr(i), p->prot, p->pg,
		      ret, want ? 0 : -EFAULT);
	if (want && memcmp(o->buf, want, PAGE_SIZE)) {
		size_t k = 0;

		while (o->buf[k] == want[k])
			k++;
		OFAIL(o, "proc %u: %s page %#lx (pg %lu, %s) differs at byte %zu: %#x, model %#x",
		      pr->id, kind_name[p->kind], pg_addr(i), p->pg,
		      p->priv ? "private copy" : "no private copy", k,
		      o->buf[k], want[k]);
	}
}

static void check_all(struct oracle *o)
{
	for (int i = 0; i < o->nproc; i++)
		for (long k = 0; k < WIN_PAGES; k++)
			check_page(o, o->procs[i], k);
}

/* ------------------------------------------------------------ ops */

static int mfile_fd(struct oracle *o, struct mfile *f, int *acc)
{
	unsigned int r = (unsigned int)rnd(o, 10);

	if (r < 7) {
		*acc = O_RDWR;
		return f->fd_rw;
	}
	if (r < 9) {
		*acc = O_RDONLY;
		return f->fd_ro;
	}
	*acc = O_WRONLY;
	return f->fd_wo;
}

static void op_mmap(struct oracle *o)
{
	struct mproc *pr = pick_proc(o);
	enum kind kind = (enum kind)(1 + rnd(o, 4));
	long n = 1 + (long)rnd(o, 12), s;
	int prot = rand_prot(o), flags, fd = -1, acc = O_RDWR;
	bool fixed = chance(o, 50), noreplace = !fixed && chance(o, 15);
	bool populate = chance(o, 12);
	struct mfile *f = NULL;
	unsigned long fpg = 0;
	long want, ret;

	flags = (kind == K_PRIV_ANON || kind == K_PRIV_FILE) ? MAP_PRIVATE :
							       MAP_SHARED;
	if (kind == K_PRIV_ANON || kind == K_SHARED_ANON) {
		flags |= MAP_ANONYMOUS;
	} else {
		f = &o->files[rnd(o, NFILES)];
		fd = mfile_fd(o, f, &acc);
		fpg = rnd(o, 4) ? rnd(o, obj_pages(f->obj) + 1) :
				  rnd(o, FILE_CAP_PAGES);
	}
	if (fixed || noreplace) {
		flags |= fixed ? MAP_FIXED : MAP_FIXED_NOREPLACE;
		pick_range(o, pr, n, &s, &n);
	} else {
		s = model_gua(pr, n);
		if (s < 0)
			return; /* would land below the window */
	}
	if (populate)
		flags |= MAP_POPULATE;
	op_set(o, "proc %u: mmap(%#lx [%ld], %ld pages, prot %d, %s%s%s%s, fd %d (%s), pg %lu)",
	       pr->id, pg_addr(s), s, n, prot, kind_name[kind],
	       fixed ? " FIXED" : "", noreplace ? " FIXED_NOREPLACE" : "",
	       populate ? " POPULATE" : "", fd,
	       acc == O_RDWR ? "rw" : acc == O_RDONLY ? "ro" : "wo", fpg);

	if (f && acc == O_WRONLY)
		want = -EACCES;
	else if (kind == K_SHARED_FILE && acc == O_RDONLY && (prot & PROT_WRITE))
		want = -EACCES;
	else if (noreplace && range_any_mapped(pr, s, s + n))
		want = -EEXIST;
	else
		want = (long)pg_addr(s);
	ret = hetmm_mmap(pr->mm, (fixed || noreplace) ? pg_addr(s) : 0,
			 (size_t)n * PAGE_SIZE, prot, flags, fd,
			 (off_t)(fpg * PAGE_SIZE));
	OEXPECT(o, ret, want);
	if (want < 0)
		return;

	struct mobj *ob = f ? f->obj : NULL;
	unsigned int v = o->next_vma++;

	if (kind == K_SHARED_ANON) {
		ob = obj_new(o, (size_t)n * PAGE_SIZE, -1);
		ob->size = (size_t)n * PAGE_SIZE;
	}
	model_unmap(o, pr, s, s + n);
	for (long i = 0; i < n; i++) {
		struct mpage *p = &pr->pages[s + i];

		p->vma = v;
		p->kind = (unsigned char)kind;
		p->prot = (unsigned char)prot;
		p->obj = ob;
		p->pg = ob ? fpg + (unsigned long)i : 0;
		p->nowrite = kind == K_SHARED_FILE && acc == O_RDONLY;
	}
	if (populate && prot) {
		/* Best effort, page by page; a write populate breaks COW. */
		for (long i = 0; i < n; i++) {
			struct mpage *p = &pr->pages[s + i];

			if (prot & PROT_WRITE) {
				if (!page_write(p))
					break;
			} else if (!page_read(p)) {
				break;
			}
		}
	}
}

static void op_munmap(struct oracle *o)
{
	struct mproc *pr = pick_proc(o);
	long s, n;
	int ret;

	pick_range(o, pr, 20, &s, &n);
	if (chance(o, 4)) {
		op_set(o, "proc %u: munmap(%#lx + 1, %ld pages) misaligned",
		       pr->id, pg_addr(s), n);
		ret = hetmm_munmap(pr->mm, pg_addr(s) + 1, (size_t)n * PAGE_SIZE);
		OEXPECT(o, ret, -EINVAL);
		return;
	}
	op_set(o, "proc %u: munmap(%#lx [%ld], %ld pages)", pr->id, pg_addr(s),
	       s, n);
	ret = hetmm_munmap(pr->mm, pg_addr(s),
			   (size_t)n * PAGE_SIZE - (chance(o, 20) ? 100 : 0));
	OEXPECT(o, ret, 0);
	model_unmap(o, pr, s, s + n);
}

static void op_mprotect(struct oracle *o)
{
	struct mproc *pr = pick_proc(o);
	int prot = rand_prot(o), want, ret;
	long s, n;

	pick_range(o, pr, 10, &s, &n);
	if (chance(o, 3)) {
		op_set(o, "proc %u: mprotect(%#lx, %ld pages, bad prot)", pr->id,
		       pg_addr(s), n);
		ret = hetmm_mprotect(pr->mm, pg_addr(s), (size_t)n * PAGE_SIZE,
				     prot | 0x1000);
		OEXPECT(o, ret, -EINVAL);
		return;
	}
	op_set(o, "proc %u: mprotect(%#lx [%ld], %ld pages, %d)", pr->id,
	       pg_addr(s), s, n, prot);
	want = 0;
	if (!range_all_mapped(pr, s, s + n)) {
		want = -ENOMEM;
	} else if (prot & PROT_WRITE) {
		for (long i = s; i < s + n; i++)
			if (pr->pages[i].nowrite)
				want = -EACCES;
	}
	ret = hetmm_mprotect(pr->mm, pg_addr(s), (size_t)n * PAGE_SIZE, prot);
	OEXPECT(o, ret, want);
	if (want)
		return;
	split_at(o, pr, s);
	split_at(o, pr, s + n);
	for (long i = s; i < s + n; i++)
		pr->pages[i].prot = (unsigned char)prot;
}

static void op_madvise(struct oracle *o)
{
	static const int advs[] = { MADV_DONTNEED, MADV_DONTNEED,
				    MADV_POPULATE_READ, MADV_POPULATE_WRITE,
				    MADV_DONTFORK, MADV_DOFORK };
	static const char *const names[] = { "DONTNEED", "DONTNEED",
					     "POPULATE_READ", "POPULATE_WRITE",
					     "DONTFORK", "DOFORK" };
	struct mproc *pr = pick_proc(o);
	unsigned int a = (unsigned int)rnd(o, ARRAY_SIZE(advs));
	int adv = advs[a], want = 0, ret;
	long s, n;

	pick_range(o, pr, 10, &s, &n);
	op_set(o, "proc %u: madvise(%#lx [%ld], %ld pages, %s)", pr->id,
	       pg_addr(s), s, n, names[a]);
	ret = hetmm_madvise(pr->mm, pg_addr(s), (size_t)n * PAGE_SIZE, adv);
	if (!range_all_mapped(pr, s, s + n)) {
		OEXPECT(o, ret, -ENOMEM);
		return;
	}
	switch (adv) {
	case MADV_DONTNEED:
		for (long i = s; i < s + n; i++) {
			struct mpage *p = &pr->pages[i];

			if (p->kind == K_PRIV_ANON || p->kind == K_PRIV_FILE) {
				free(p->priv);
				p->priv = NULL;
			}
		}
		break;
	case MADV_POPULATE_READ:
	case MADV_POPULATE_WRITE:
		/* Page by page: no permission is -EINVAL, beyond the end of
		 * a file -EFAULT; the pages before stay populated (COWed). */
		for (long i = s; i < s + n; i++) {
			struct mpage *p = &pr->pages[i];
			bool w = adv == MADV_POPULATE_WRITE;

			if (!p->prot || (w && !(p->prot & PROT_WRITE))) {
				want = -EINVAL;
				break;
			}
			if (!(w ? page_write(p) : page_read(p))) {
				want = -EFAULT;
				break;
			}
		}
		break;
	case MADV_DONTFORK:
	case MADV_DOFORK:
		split_at(o, pr, s);
		split_at(o, pr, s + n);
		for (long i = s; i < s + n; i++)
			pr->pages[i].dontfork = adv == MADV_DONTFORK;
		break;
	}
	OEXPECT(o, ret, want);
}

/*
 * Move the VMA [oi, oi + on) (already split to exactly that) to a new VMA
 * at [ni, ni + nn), as move_vma() does.
 */
static void model_move(struct oracle *o, struct mproc *pr, long oi, long on,
		       long ni, long nn, bool dontunmap)
{
	long moved = on < nn ? on : nn;
	unsigned int v = o->next_vma++;
	struct mpage tmpl = pr->pages[oi];
	unsigned long pg0 = tmpl.pg;

	for (long k = 0; k < nn; k++) {
		struct mpage *d = &pr->pages[ni + k];

		HETMM_BUG_ON(d->vma);
		if (k < moved) {
			*d = pr->pages[oi + k];
			pr->pages[oi + k].priv = NULL; /* moved with the PTE */
		} else {
			*d = tmpl;
			d->priv = NULL;
			d->pg = tmpl.obj ? pg0 + (unsigned long)k : 0;
		}
		d->vma = v;
	}
	if (!dontunmap) {
		for (long k = 0; k < on; k++)
			page_clear(&pr->pages[oi + k]);
	}
	/* With DONTUNMAP the old range stays, its PTEs gone: private pages
	 * read zeros or the file again, shared ones the object. */
}

static void op_mremap(struct oracle *o)
{
	struct mproc *pr = pick_proc(o);
	long idx = pick_mapped(o, pr), lo, hi, oi, on, nn, ni = 0;
	unsigned int fl = (unsigned int)rnd(o, 10);
	int flags;
	bool fixed, dontunmap, maymove;
	long want, ret;

	if (idx < 0)
		return;
	vma_extent(pr, idx, &lo, &hi);
	oi = lo + (long)rnd(o, (uint64_t)(hi - lo));
	on = 1 + (long)rnd(o, (uint64_t)(hi - oi));
	if (chance(o, 5))
		on++; /* beyond the VMA: -EFAULT */
	if (oi + on > WIN_PAGES)
		on = WIN_PAGES - oi;
	flags = fl < 2 ? 0 :
		fl < 5 ? MREMAP_MAYMOVE :
		fl < 7 ? MREMAP_MAYMOVE | MREMAP_FIXED :
		fl < 9 ? MREMAP_MAYMOVE | MREMAP_DONTUNMAP :
			 MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP;
	if (chance(o, 2))
		flags = chance(o, 50) ? MREMAP_FIXED : MREMAP_DONTUNMAP;
	fixed = flags & MREMAP_FIXED;
	dontunmap = flags & MREMAP_DONTUNMAP;
	maymove = flags & MREMAP_MAYMOVE;
	nn = 1 + (long)rnd(o, 12);
	if (dontunmap && !chance(o, 5))
		nn = on;
	if (fixed) {
		ni = (long)rnd(o, WIN_PAGES);
		if (ni + nn > WIN_PAGES)
			ni = WIN_PAGES - nn;
		if (!chance(o, 10) && ni < oi + on && oi < ni + nn) {
			/* Mostly avoid the overlap error: put it after or
			 * before the old range if that fits. */
			if (oi + on + nn <= WIN_PAGES)
				ni = oi + on + (long)rnd(o, (uint64_t)(
					WIN_PAGES - (oi + on + nn) + 1));
			else if (oi >= nn)
				ni = (long)rnd(o, (uint64_t)(oi - nn + 1));
		}
	}

	/* The model's answer, following hetmm_mremap's order of checks. */
	if ((fixed && !maymove) || (dontunmap && !maymove))
		want = -EINVAL;
	else if (dontunmap && on != nn)
		want = -EINVAL;
	else if (fixed && ni < oi + on && oi < ni + nn)
		want = -EINVAL;
	else if (!fixed && !dontunmap && nn <= on)
		want = (long)pg_addr(oi); /* shrinks: unmaps the tail */
	else if (oi + on > hi)
		want = -EFAULT;
	else if (fixed)
		want = (long)pg_addr(ni);
	else if (!dontunmap && oi + on == hi && oi + nn <= WIN_PAGES &&
		 !range_any_mapped(pr, oi + on, oi + nn))
		want = (long)pg_addr(oi); /* grows in place */
	else if (!dontunmap && oi + on == hi && oi + nn > WIN_PAGES)
		return; /* would grow out of the window */
	else if (!maymove)
		want = -ENOMEM;
	else if ((ni = model_gua(pr, nn)) < 0)
		return;
	else
		want = (long)pg_addr(ni);

	op_set(o, "proc %u: mremap(%#lx [%ld], %ld pages -> %ld pages, flags %d, new %#lx [%ld]) in VMA [%ld, %ld) %s",
	       pr->id, pg_addr(oi), oi, on, nn, flags,
	       fixed ? pg_addr(ni) : 0, ni, lo, hi,
	       kind_name[pr->pages[oi].kind]);
	ret = hetmm_mremap(pr->mm, pg_addr(oi), (size_t)on * PAGE_SIZE,
			   (size_t)nn * PAGE_SIZE, flags,
			   fixed ? pg_addr(ni) : 0);
	OEXPECT(o, ret, want);
	if (want < 0)
		return;
	if (fixed) {
		model_unmap(o, pr, ni, ni + nn);
		split_at(o, pr, oi);
		split_at(o, pr, oi + on);
		model_move(o, pr, oi, on, ni, nn, dontunmap);
	} else if (!dontunmap && nn <= on) {
		model_unmap(o, pr, oi + nn, oi + on);
	} else if (want == (long)pg_addr(oi)) {
		struct mpage tmpl = pr->pages[oi];

		for (long k = on; k < nn; k++) {
			struct mpage *d = &pr->pages[oi + k];

			*d = tmpl;
			d->priv = NULL;
			d->pg = tmpl.obj ? tmpl.pg + (unsigned long)k : 0;
		}
	} else {
		split_at(o, pr, oi);
		split_at(o, pr, oi + on);
		model_move(o, pr, oi, on, ni, nn, dontunmap);
	}
}

static void op_fork(struct oracle *o)
{
	struct mproc *pr = pick_proc(o), *c;
	struct mm_struct *mm;

	if (o->nproc >= MAX_PROCS)
		return;
	op_set(o, "proc %u: fork -> proc %u", pr->id, o->next_pid);
	mm = hetmm_fork(pr->mm);
	if (IS_ERR(mm))
		OFAIL(o, "fork failed: %ld", PTR_ERR(mm));
	c = proc_new(o, mm);
	for (long i = 0; i < WIN_PAGES; i++) {
		const struct mpage *p = &pr->pages[i];

		if (!p->vma || p->dontfork)
			continue;
		c->pages[i] = *p;
		if (p->priv) {
			c->pages[i].priv = malloc(PAGE_SIZE);
			assert_non_null(c->pages[i].priv);
			memcpy(c->pages[i].priv, p->priv, PAGE_SIZE);
		}
	}
	o->procs[o->nproc++] = c;
}

static void op_exit(struct oracle *o)
{
	int i;

	if (o->nproc <= 1)
		return;
	i = (int)rnd(o, (uint64_t)o->nproc);
	op_set(o, "proc %u: exit", o->procs[i]->id);
	hetmm_exit(o->procs[i]->mm);
	proc_free(o->procs[i]);
	o->procs[i] = o->procs[--o->nproc];
}

static void op_file(struct oracle *o)
{
	struct mproc *pr = pick_proc(o);
	struct mfile *f = &o->files[rnd(o, NFILES)];
	struct mobj *ob = f->obj;
	unsigned int what = (unsigned int)rnd(o, 10);
	int acc, fd = mfile_fd(o, f, &acc);
	size_t off, len;
	long ret, want;

	if (what < 4) { /* pwrite */
		len = 1 + rnd(o, 2 * PAGE_SIZE + 200);
		off = rnd(o, FILE_CAP - len + 1);
		if (chance(o, 30))
			off &= PAGE_MASK;
		op_set(o, "proc %u: pwrite(%s fd %d, off %zu, len %zu) size %zu",
		       pr->id, f->name, fd, off, len, ob->size);
		fill_random(o, o->buf, len);
		ret = hetmm_pwrite(pr->mm, fd, o->buf, len, (off_t)off);
		want = acc == O_RDONLY ? -EBADF : (long)len;
		OEXPECT(o, ret, want);
		if (want < 0)
			return;
		if (off + len > ob->size) {
			obj_zero_tail(ob);
			ob->size = off + len;
		}
		memcpy(ob->data + off, o->buf, len);
	} else if (what < 7) { /* pread */
		len = 1 + rnd(o, 2 * PAGE_SIZE + 200);
		off = rnd(o, FILE_CAP);
		op_set(o, "proc %u: pread(%s fd %d, off %zu, len %zu) size %zu",
		       pr->id, f->name, fd, off, len, ob->size);
		ret = hetmm_pread(pr->mm, fd, o->buf, len, (off_t)off);
		if (acc == O_WRONLY)
			want = -EBADF;
		else if (off >= ob->size)
			want = 0;
		else
			want = (long)(ob->size - off < len ? ob->size - off : len);
		OEXPECT(o, ret, want);
		if (want > 0 && memcmp(o->buf, ob->data + off, (size_t)want))
			OFAIL(o, "pread data differs from the model");
	} else if (what == 7 && chance(o, 25)) { /* open O_TRUNC, close */
		op_set(o, "proc %u: open(%s, O_RDWR | O_TRUNC) + close, size %zu",
		       pr->id, f->name, ob->size);
		fd = hetmm_open(pr->mm, f->name, O_RDWR | O_TRUNC);
		if (fd < 0)
			OFAIL(o, "open O_TRUNC: %d", fd);
		model_truncate(o, ob, 0);
		OEXPECT(o, hetmm_close(pr->mm, fd), 0);
		OEXPECT(o, hetmm_close(pr->mm, fd), -EBADF);
	} else { /* ftruncate */
		size_t size = rnd(o, FILE_CAP + 1);

		if (chance(o, 40))
			size &= PAGE_MASK;
		op_set(o, "proc %u: ftruncate(%s fd %d, %zu) size %zu", pr->id,
		       f->name, fd, size, ob->size);
		ret = hetmm_ftruncate(pr->mm, fd, (off_t)size);
		want = acc == O_RDONLY ? -EINVAL : 0;
		OEXPECT(o, ret, want);
		if (!want)
			model_truncate(o, ob, size);
	}
}

/* A CPU load, store or cmpxchg; faults part way transfer the prefix. */
static void op_access(struct oracle *o)
{
	struct mproc *pr = pick_proc(o);
	unsigned int what = (unsigned int)rnd(o, 10);
	unsigned int cpu = (unsigned int)rnd(o, o->nr_cpus);
	long i = chance(o, 85) ? pick_mapped(o, pr) : -1;
	unsigned long addr, end;
	size_t len;
	int ret, want = 0;

	if (i < 0)
		i = (long)rnd(o, WIN_PAGES);
	addr = pg_addr(i) + rnd(o, PAGE_SIZE);
	if (what < 2) { /* cmpxchg */
		struct mpage *p = &pr->pages[i];
		const unsigned char *cur = page_read(p);
		uint64_t old = 0, new = test_rng_next(&o->rng), prev = 0;
		unsigned char *w;

		addr &= ~7UL;
		if (cur && chance(o, 60))
			memcpy(&old, cur + (addr & ~PAGE_MASK), 8);
		else
			old = chance(o, 50) ? 0 : test_rng_next(&o->rng);
		if (chance(o, 3)) {
			op_set(o, "proc %u cpu %u: cmpxchg(%#lx + 4) misaligned",
			       pr->id, cpu, addr);
			ret = hetmm_cpu_cmpxchg(pr->mm, cpu, addr + 4, old, new,
						&prev);
			OEXPECT(o, ret, -EINVAL);
			return;
		}
		op_set(o, "proc %u cpu %u: cmpxchg(%#lx, %#llx -> %#llx) %s",
		       pr->id, cpu, addr, (unsigned long long)old,
		       (unsigned long long)new, kind_name[p->kind]);
		ret = hetmm_cpu_cmpxchg(pr->mm, cpu, addr, old, new, &prev);
		w = page_write(p);
		OEXPECT(o, ret, w ? 0 : -EFAULT);
		if (!w)
			return;
		uint64_t model;

		memcpy(&model, w + (addr & ~PAGE_MASK), 8);
		if (prev != model)
			OFAIL(o, "cmpxchg found %#llx, model %#llx",
			      (unsigned long long)prev,
			      (unsigned long long)model);
		if (model == old)
			memcpy(w + (addr & ~PAGE_MASK), &new, 8);
		return;
	}
	len = 1 + rnd(o, chance(o, 60) ? 64 : 3 * PAGE_SIZE);
	if (addr + len > WIN_END)
		len = WIN_END - addr;
	if (pr->pages[i].vma && chance(o, 75)) {
		/* Mostly stay inside mapped memory. */
		long lo, hi;

		mapped_run(pr, i, &lo, &hi);
		if (addr + len > pg_addr(hi))
			len = pg_addr(hi) - addr;
	}
	end = addr + len;
	if (what < 6) { /* write */
		op_set(o, "proc %u cpu %u: write(%#lx [%ld], %zu) %s prot %d",
		       pr->id, cpu, addr, i, len, kind_name[pr->pages[i].kind],
		       pr->pages[i].prot);
		fill_random(o, o->buf, len);
		ret = hetmm_cpu_write(pr->mm, cpu, addr, o->buf, len);
		for (unsigned long a = addr; a < end;) {
			unsigned long next = (a & PAGE_MASK) + PAGE_SIZE;
			unsigned char *w;

			if (next > end)
				next = end;
			w = page_write(&pr->pages[(a - WIN_BASE) >> PAGE_SHIFT]);
			if (!w) {
				want = -EFAULT;
				break;
			}
			memcpy(w + (a & ~PAGE_MASK), o->buf + (a - addr),
			       next - a);
			a = next;
		}
		OEXPECT(o, ret, want);
		return;
	}
	/* read */
	op_set(o, "proc %u cpu %u: read(%#lx [%ld], %zu) %s prot %d", pr->id,
	       cpu, addr, i, len, kind_name[pr->pages[i].kind],
	       pr->pages[i].prot);
	memset(o->buf, 0xa5, len);
	ret = hetmm_cpu_read(pr->mm, cpu, addr, o->buf, len);
	for (unsigned long a = addr; a < end;) {
		unsigned long next = (a & PAGE_MASK) + PAGE_SIZE;
		const unsigned char *r;

		if (next > end)
			next = end;
		r = page_read(&pr->pages[(a - WIN_BASE) >> PAGE_SHIFT]);
		if (!r) {
			want = -EFAULT;
			break;
		}
		if (memcmp(o->buf + (a - addr), r + (a & ~PAGE_MASK), next - a))
			OFAIL(o, "read: bytes at %#lx differ from the model", a);
		a = next;
	}
	OEXPECT(o, ret, want);
}

/* Calls that fail before looking at the address space. */
static void op_errors(struct oracle *o)
{
	struct mproc *pr = pick_proc(o);
	unsigned long a = pg_addr((long)rnd(o, WIN_PAGES));
	char c = 0;

	switch (rnd(o, 8)) {
	case 0:
		op_set(o, "proc %u: mmap len 0", pr->id);
		OEXPECT(o, hetmm_mmap(pr->mm, 0, 0, PROT_READ,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
			-EINVAL);
		break;
	case 1:
		op_set(o, "proc %u: mmap bad fd", pr->id);
		OEXPECT(o, hetmm_mmap(pr->mm, 0, PAGE_SIZE, PROT_READ,
				      MAP_SHARED, 200, 0),
			-EBADF);
		break;
	case 2:
		op_set(o, "proc %u: mmap misaligned offset", pr->id);
		OEXPECT(o, hetmm_mmap(pr->mm, 0, PAGE_SIZE, PROT_READ,
				      MAP_SHARED, o->files[0].fd_rw, 100),
			-EINVAL);
		break;
	case 3:
		op_set(o, "proc %u: madvise bad advice", pr->id);
		OEXPECT(o, hetmm_madvise(pr->mm, a, PAGE_SIZE, 12345), -EINVAL);
		break;
	case 4:
		op_set(o, "proc %u: mremap old_len 0 at %#lx", pr->id, a);
		OEXPECT(o, hetmm_mremap(pr->mm, a, 0, PAGE_SIZE, MREMAP_MAYMOVE,
					0),
			pr->pages[(a - WIN_BASE) >> PAGE_SHIFT].vma ? -EINVAL :
								       -EFAULT);
		break;
	case 5:
		op_set(o, "proc %u: read far away", pr->id);
		OEXPECT(o, hetmm_cpu_read(pr->mm, 0, 0x10000, &c, 1), -EFAULT);
		break;
	case 6:
		op_set(o, "proc %u: read bad cpu", pr->id);
		OEXPECT(o, hetmm_cpu_read(pr->mm, o->nr_cpus, a, &c, 1), -EINVAL);
		break;
	default:
		op_set(o, "proc %u: mprotect len 0 at %#lx", pr->id, a);
		OEXPECT(o, hetmm_mprotect(pr->mm, a, 0, PROT_READ), 0);
		break;
	}
}

/* ------------------------------------------------------------ driver */

static void oracle_setup(struct oracle *o, uint64_t seed)
{
	struct mproc *pr;
	struct mm_struct *mm;

	memset(o, 0, sizeof(*o));
	o->seed = seed;
	test_rng_init(&o->rng, seed);
	o->m = test_machine_new(64, true);
	o->nr_cpus = o->m->cfg.nr_cpus;
	o->next_vma = 1;
	o->trace = getenv("HETMM_ORACLE_TRACE") &&
		   *getenv("HETMM_ORACLE_TRACE") == '1';
	mm = hetmm_process_create(o->m);
	assert_false(IS_ERR(mm));
	pr = proc_new(o, mm);
	o->procs[o->nproc++] = pr;
	for (int i = 0; i < NFILES; i++) {
		struct mfile *f = &o->files[i];
		size_t size = rnd(o, FILE_CAP + 1);

		snprintf(f->name, sizeof(f->name), "oracle-%d", i);
		f->fd_rw = hetmm_open_kind(mm, f->name,
					   O_RDWR | O_CREAT | O_TRUNC, i == 2);
		assert_true(f->fd_rw >= 0);
		f->fd_ro = hetmm_open(mm, f->name, O_RDONLY);
		assert_true(f->fd_ro >= 0);
		f->fd_wo = hetmm_open(mm, f->name, O_WRONLY);
		assert_true(f->fd_wo >= 0);
		f->obj = obj_new(o, FILE_CAP, i);
		fill_random(o, f->obj->data, size);
		f->obj->size = size;
		assert_int_equal(hetmm_pwrite(mm, f->fd_rw, f->obj->data, size,
					      0),
				 (long)size);
	}
}

static void oracle_teardown(struct oracle *o)
{
	struct mobj *ob, *next;

	for (int i = 0; i < NFILES; i++)
		ASSERT_OK(hetmm_unlink(o->procs[0]->mm, o->files[i].name));
	while (o->nproc) {
		struct mproc *pr = o->procs[--o->nproc];

		hetmm_exit(pr->mm);
		proc_free(pr);
	}
	for (ob = o->objs; ob; ob = next) {
		next = ob->next;
		free(ob->data);
		free(ob);
	}
	test_machine_finish(o->m);
}

static void oracle_run(uint64_t seed, unsigned int steps)
{
	struct oracle *o = calloc(1, sizeof(*o));
	unsigned int check_in = 1;

	assert_non_null(o);
	oracle_setup(o, seed);
	for (o->step = 0; o->step < steps; o->step++) {
		unsigned int r = (unsigned int)rnd(o, 100);

		if (r < 33)
			op_access(o);
		else if (r < 47)
			op_mmap(o);
		else if (r < 53)
			op_munmap(o);
		else if (r < 61)
			op_mprotect(o);
		else if (r < 70)
			op_madvise(o);
		else if (r < 79)
			op_mremap(o);
		else if (r < 88)
			op_file(o);
		else if (r < 92)
			op_fork(o);
		else if (r < 95)
			op_exit(o);
		else
			op_errors(o);
		check_machine(o);
		if (!--check_in) {
			op_set(o, "full check");
			check_all(o);
			check_in = 1 + (unsigned int)rnd(o, 6);
		}
	}
	op_set(o, "final check");
	check_all(o);
	print_message("# oracle seed %llu: %u steps, %lu calls succeeded, %lu failed as predicted, %u processes, %u VMAs made\n",
		      (unsigned long long)seed, steps, o->n_ok, o->n_err,
		      o->next_pid, o->next_vma);
	oracle_teardown(o);
	free(o);
}

static void test_oracle_random(void **state)
{
	/* Each hetmm_check() waits for an RCU barrier (~10 ms), which
	 * dominates the run time: quick mode is ~750 steps in all. */
	const char *ns = getenv("HETMM_ORACLE_SEEDS");
	unsigned int seeds = ns ? (unsigned int)atoi(ns) : test_scale(3, 20);
	unsigned int steps = test_scale(250, 4000);
	uint64_t seed = test_seed();

	(void)state;
	for (unsigned int i = 0; i < seeds; i++)
		oracle_run(seed + i, steps);
}

/* A short fixed scenario: the model's corner cases, one of each. */
static void test_oracle_corners(void **state)
{
	struct hetmm_machine *m = *state;
	struct mm_struct *p = hetmm_process_create(m), *c;
	const int rw = PROT_READ | PROT_WRITE;
	char b[8] = { 0 };
	long a, f;
	int fd;

	assert_false(IS_ERR(p));
	fd = hetmm_open(p, "corner", O_RDWR | O_CREAT);
	assert_true(fd >= 0);
	assert_int_equal(hetmm_pwrite(p, fd, "AAAA", 4, 0), 4);
	/* Private file page never written tracks the file... */
	f = hetmm_mmap(p, 0, 2 * PAGE_SIZE, rw, MAP_PRIVATE, fd, 0);
	assert_true(f > 0);
	ASSERT_OK(hetmm_cpu_read(p, 0, f, b, 4));
	assert_memory_equal(b, "AAAA", 4);
	assert_int_equal(hetmm_pwrite(p, fd, "BB", 2, 0), 2);
	ASSERT_OK(hetmm_cpu_read(p, 1, f, b, 4));
	assert_memory_equal(b, "BBAA", 4);
	/* ...the second page is beyond EOF... */
	assert_int_equal(hetmm_cpu_read(p, 0, f + PAGE_SIZE, b, 1), -EFAULT);
	/* ...until the file grows. */
	ASSERT_OK(hetmm_ftruncate(p, fd, PAGE_SIZE + 1));
	ASSERT_OK(hetmm_cpu_read(p, 0, f + PAGE_SIZE, b, 1));
	assert_int_equal(b[0], 0);
	/* Written: a private copy, no longer tracking the file. */
	ASSERT_OK(hetmm_cpu_write(p, 2, f + 1, "x", 1));
	assert_int_equal(hetmm_pwrite(p, fd, "CCCC", 4, 0), 4);
	ASSERT_OK(hetmm_cpu_read(p, 0, f, b, 4));
	assert_memory_equal(b, "BxAA", 4);
	/* DONTNEED drops the copy: the file again. */
	ASSERT_OK(hetmm_madvise(p, f, PAGE_SIZE, MADV_DONTNEED));
	ASSERT_OK(hetmm_cpu_read(p, 0, f, b, 4));
	assert_memory_equal(b, "CCCC", 4);
	/* COW copy beyond a truncation is dropped too. */
	ASSERT_OK(hetmm_cpu_write(p, 2, f + PAGE_SIZE, "y", 1));
	ASSERT_OK(hetmm_ftruncate(p, fd, 10));
	assert_int_equal(hetmm_cpu_read(p, 0, f + PAGE_SIZE, b, 1), -EFAULT);
	ASSERT_OK(hetmm_ftruncate(p, fd, 2 * PAGE_SIZE));
	ASSERT_OK(hetmm_cpu_read(p, 0, f + PAGE_SIZE, b, 1));
	assert_int_equal(b[0], 0);

	/* DONTUNMAP: the old private anon range reads zeros. */
	a = hetmm_mmap(p, 0, PAGE_SIZE, rw, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(a > 0);
	ASSERT_OK(hetmm_cpu_write(p, 0, a, "q", 1));
	long n = hetmm_mremap(p, a, PAGE_SIZE, PAGE_SIZE,
			      MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0);
	assert_true(n > 0 && n != a);
	ASSERT_OK(hetmm_cpu_read(p, 0, a, b, 1));
	assert_int_equal(b[0], 0);
	ASSERT_OK(hetmm_cpu_read(p, 0, n, b, 1));
	assert_int_equal(b[0], 'q');

	/* DONTFORK: absent in the child; the rest is a snapshot. */
	ASSERT_OK(hetmm_madvise(p, a, PAGE_SIZE, MADV_DONTFORK));
	c = hetmm_fork(p);
	assert_false(IS_ERR(c));
	assert_int_equal(hetmm_cpu_read(c, 0, a, b, 1), -EFAULT);
	ASSERT_OK(hetmm_cpu_write(p, 0, n, "r", 1));
	ASSERT_OK(hetmm_cpu_read(c, 3, n, b, 1));
	assert_int_equal(b[0], 'q');
	/* mprotect over a hole changes nothing. */
	assert_int_equal(hetmm_mprotect(p, n - PAGE_SIZE, 2 * PAGE_SIZE,
				       PROT_READ),
			 -ENOMEM);
	ASSERT_OK(hetmm_cpu_write(p, 0, n, "s", 1));
	ASSERT_OK(hetmm_check(m));
	hetmm_exit(c);
	ASSERT_OK(hetmm_unlink(p, "corner"));
	hetmm_exit(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_oracle_corners,
						test_machine_setup,
						test_machine_teardown),
		cmocka_unit_test(test_oracle_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
