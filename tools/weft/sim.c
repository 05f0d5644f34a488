/*
 * sim.c — floors: the least wall time a case's model could reach on this
 * workload, from a small scheduling simulation (docs/LAB.md).
 *
 * Every case is "n jobs through a pool": jobs become ready (at 0, or when
 * their async fetch returns in cases 13-18), wait for a free slot of the
 * model (1 for sequential, the pool size, or unbounded), and then either
 * wait (a fetch: any number wait at once) or compute (fib: running jobs
 * share the cores; in Python threads they share one, the GIL). Nothing
 * costs anything else — no start-up, no trips, no parsing — so a real run
 * can only be slower; wall/floor says by how much.
 */
#include "lab.h"

#include <weft.h>

#include <math.h>
#include <string.h>
#include <time.h>

#define EPS 1e-12

double lab_sim_pool(int n, const double *arrive, const double *work, int slots, double cpus) {
  if (n <= 0) return 0;
  if (n > 256) n = 256;
  if (slots <= 0 || slots > n) slots = n;
  int ord[256];
  double rem[256];
  int run[256], nrun = 0;
  /* Readiness order, ties by index (insertion sort: n is small). */
  for (int i = 0; i < n; i++) {
    int j = i;
    double a = arrive ? arrive[i] : 0;
    while (j > 0 && (arrive ? arrive[ord[j - 1]] : 0) > a) {
      ord[j] = ord[j - 1];
      j--;
    }
    ord[j] = i;
  }
  double t = 0;
  int next = 0, done = 0;
  while (done < n) {
    while (nrun < slots && next < n && (arrive ? arrive[ord[next]] : 0) <= t + EPS) {
      int i = ord[next++];
      rem[i] = work[i];
      run[nrun++] = i;
    }
    if (nrun == 0) {
      t = arrive[ord[next]]; /* idle until the next job is ready */
      continue;
    }
    double rate = cpus > 0 && cpus < nrun ? cpus / nrun : 1.0;
    double dt = INFINITY;
    for (int k = 0; k < nrun; k++)
      if (rem[run[k]] / rate < dt) dt = rem[run[k]] / rate;
    if (nrun < slots && next < n) {
      double da = arrive[ord[next]] - t;
      if (da < dt) dt = da;
    }
    t += dt;
    for (int k = 0; k < nrun;) {
      rem[run[k]] -= dt * rate;
      if (rem[run[k]] <= EPS) {
        run[k] = run[--nrun];
        done++;
      } else {
        k++;
      }
    }
  }
  return t;
}

double lab_sim_bound(int n, const double *arrive, const double *work, int slots, double cpus) {
  if (n <= 0) return 0;
  double cap = slots > 0 && slots < n ? slots : n;
  if (cpus > 0 && cpus < cap) cap = cpus;
  double lb = 0;
  for (int i = 0; i < n; i++) {
    double a = arrive ? arrive[i] : 0;
    if (a + work[i] > lb) lb = a + work[i]; /* no job runs faster than rate 1 */
    /* Everything released at a or later: at best spread over the whole pool. */
    double rest = 0;
    for (int j = 0; j < n; j++)
      if ((arrive ? arrive[j] : 0) >= a) rest += work[j];
    if (a + rest / cap > lb) lb = a + rest / cap;
  }
  return lb;
}

/* Written as the C cases write it (examples/study/study.h), so that the
 * same compiler makes the same code of it; called through a volatile
 * pointer so that nothing is folded. */
static long fib_rec(long n) { return n <= 2 ? 1 : fib_rec(n - 1) + fib_rec(n - 2); }
static long (*volatile fib_fn)(long) = fib_rec;

uint64_t lab_fib(int n) { return (uint64_t)fib_fn(n); }

void lab_fib_measure(lab_fib_costs *c, int tries) {
  if (tries < 1) tries = 1;
  for (int n = 28; n <= 34; n++) {
    double best = INFINITY;
    for (int k = 0; k < tries; k++) {
      /* CPU time, not wall time: a neighbour taking the CPU for a moment
       * must not raise the floors. */
      struct timespec a, b;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
      volatile uint64_t v = lab_fib(n);
      (void)v;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
      double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
      if (s < best) best = s;
    }
    c->s[n - 28] = best;
  }
}

/* fib(n) makes 2 fib(n) - 1 calls; its cost is proportional to that. */
static double calls(int n) {
  double a = 1, b = 1; /* fib(1), fib(2) */
  for (int i = 3; i <= n; i++) {
    double t = a + b;
    a = b;
    b = t;
  }
  return 2 * (n <= 2 ? 1 : b) - 1;
}

void lab_fib_from_one(lab_fib_costs *c, int n0, double cost) {
  for (int n = 28; n <= 34; n++) c->s[n - 28] = cost * calls(n) / calls(n0);
}

double lab_floor(const lab_case *c, int cores, double scale, const lab_fib_costs *fib,
                 int python) {
  double arrive[32], work[32];
  int n = c->n;
  for (int i = 0; i < n; i++) {
    double lat = weft_site_latency_ms(i % WEFT_SITES) / 1000.0 * scale;
    arrive[i] = c->after_fetch ? lat : 0;
    if (!c->cpu_work)
      work[i] = lat;
    else if (c->after_fetch)
      work[i] = fib->s[32 - 28];
    else
      work[i] = fib->s[i % 7];
  }
  int slots = lab_case_workers(c, cores);
  double cpus = 0;
  if (c->cpu_work) cpus = python && c->threads ? 1 : cores;
  /* Unbounded threads and sequential code start the tasks in their order,
   * so the in-order schedule is what they would do with no overhead. A
   * pool's order is not fixed: weft's thread pool takes work from per-worker
   * deques and from other workers (case 04 ran 30 fetches on 6 threads in
   * 2.92 s, under the 3.2 s of the in-order schedule), a process pool's
   * dispatch varies, and tasks that arrive after their fetch reach the pool
   * in any order: there the floor must hold for any order. */
  int pooled = c->slots == LAB_SLOTS_IO_POOL || c->slots == LAB_SLOTS_CPU_POOL;
  if (pooled) return lab_sim_bound(n, arrive, work, slots, cpus);
  return lab_sim_pool(n, arrive, work, slots, cpus);
}
