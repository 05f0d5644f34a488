/*
 * dispatch.c — dispatch throughput and latency of tiny tasks: weft's
 * executors against pthread-per-task, libuv's uv_queue_work and OpenMP tasks,
 * measured in one run.
 *
 * Every task's body is atomic_fetch_add(&bench_counter, 1); after each timed
 * region the counter is checked and a mismatch fails the run (exit 1).
 *
 * Each measurement runs --repeat times; the repeats are interleaved (round r
 * runs every measurement once, in a fixed order) so that slow phases of a
 * shared machine hit every implementation alike, and the figures reported
 * are medians over the repeats. Ratios compare medians from this same run:
 *   ratio_vs_<peer> = peer's time per task / this impl's time per task
 * so a ratio above 1 means this implementation is faster than the peer.
 *
 * What each timed region includes is stated next to each measurement below
 * and in docs/BENCHMARKS.md. Output: a human table, then one line per
 * measurement, `bench=dispatch ... key=value ...`, on stdout; progress on
 * stderr.
 */
#include "dispatch.h"

#include <weft.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

atomic_size_t bench_counter;

#define DEADLINE_MS 300000 /* a broken library fails the run, not hangs it */

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_check(const char *impl, const char *what, size_t got, size_t want) {
  if (got == want) return;
  fflush(stdout);
  fprintf(stderr, "dispatch: FAIL impl=%s %s=%zu expected=%zu\n", impl, what, got, want);
  exit(1);
}

_Noreturn void bench_fail(const char *impl, const char *call, int code, const char *msg) {
  fflush(stdout);
  fprintf(stderr, "dispatch: FAIL impl=%s %s returned %d (%s)\n", impl, call, code,
          msg ? msg : "");
  exit(1);
}

static void check_rc(const char *impl, const char *call, int rc) {
  if (rc < 0) bench_fail(impl, call, rc, weft_strerror(rc));
}

/* ------------------------------------------------------------------------ */
/* weft tasks                                                               */
/* ------------------------------------------------------------------------ */

/* The plain task: map items and futures carry their own completion. */
static int bump(const void *in, size_t in_size, weft_out *out) {
  (void)in, (void)in_size, (void)out;
  atomic_fetch_add(&bench_counter, 1);
  return 0;
}

/* The fire-and-forget task: the one that brings the counter to done_target
 * sets done_ev, so the submitter can wait without a future per task. */
static weft_event *done_ev;
static size_t done_target;

static int bump_signal(const void *in, size_t in_size, weft_out *out) {
  (void)in, (void)in_size, (void)out;
  if (atomic_fetch_add(&bench_counter, 1) + 1 == done_target) weft_event_set(done_ev);
  return 0;
}

/* Submits n fire-and-forget bump_signal tasks and waits for the last one. */
static void submit_and_wait(const char *impl, weft_executor *ex, size_t n) {
  for (size_t i = 0; i < n; i++)
    check_rc(impl, "weft_executor_submit", weft_executor_submit(ex, bump_signal, NULL, 0, NULL));
  check_rc(impl, "weft_event_wait", weft_event_wait(done_ev, weft_deadline_in(DEADLINE_MS)));
}

/* Resets the counter and the event for a batch of n. No task may be running. */
static void arm(size_t n) {
  weft_event_clear(done_ev);
  done_target = n;
  atomic_store(&bench_counter, 0);
}

/* --pool-workers: thread_pool size (0 = weft's default, weft_cpu_count()). */
static int pool_workers;

static weft_executor *make(const char *impl, const char *kind, size_t chunksize) {
  weft_executor_opts o = {0};
  o.chunksize = chunksize;
  if (strcmp(kind, "thread_pool") == 0) o.workers = pool_workers;
  weft_executor *ex = NULL;
  check_rc(impl, "weft_executor_create", weft_executor_create(&ex, kind, &o));
  return ex;
}

/* Creates the executor and runs a warm-up batch on it (not timed). */
static weft_executor *make_warm(const char *impl, const char *kind, size_t chunksize) {
  weft_executor *ex = make(impl, kind, chunksize);
  arm(BENCH_WARMUP);
  submit_and_wait(impl, ex, BENCH_WARMUP);
  bench_check(impl, "warm-up counter", atomic_load(&bench_counter), BENCH_WARMUP);
  return ex;
}

static void finish(const char *impl, weft_executor *ex) {
  check_rc(impl, "weft_executor_shutdown",
           weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(DEADLINE_MS)));
  weft_executor_destroy(ex);
}

/* ---- throughput */

/* Pool alive (created and warmed before the clock): n submits with fut ==
 * NULL; the clock stops when the last task has run (event). */
static void weft_pool_submit(size_t n, uint64_t *ns) {
  const char *impl = "weft.thread_pool.submit";
  weft_executor *ex = make_warm(impl, "thread_pool", 0);
  arm(n);
  uint64_t t0 = bench_now_ns();
  submit_and_wait(impl, ex, n);
  *ns = bench_now_ns() - t0;
  bench_check(impl, "counter", atomic_load(&bench_counter), n);
  finish(impl, ex);
}

/* Pool alive: n submits, each with a future released right after submit
 * (the common pattern); the clock stops when the last task has run. */
static void weft_pool_submit_future(size_t n, uint64_t *ns) {
  const char *impl = "weft.thread_pool.submit_future";
  weft_executor *ex = make_warm(impl, "thread_pool", 0);
  arm(n);
  uint64_t t0 = bench_now_ns();
  for (size_t i = 0; i < n; i++) {
    weft_future *f = NULL;
    check_rc(impl, "weft_executor_submit", weft_executor_submit(ex, bump_signal, NULL, 0, &f));
    weft_future_release(f);
  }
  check_rc(impl, "weft_event_wait", weft_event_wait(done_ev, weft_deadline_in(DEADLINE_MS)));
  *ns = bench_now_ns() - t0;
  bench_check(impl, "counter", atomic_load(&bench_counter), n);
  finish(impl, ex);
}

/* Everything in the clock: create the pool, n fire-and-forget submits,
 * shutdown(FINISH) as the wait, destroy (joins the workers). */
static void weft_pool_submit_lifecycle(size_t n, uint64_t *ns) {
  const char *impl = "weft.thread_pool.create_submit_shutdown";
  arm((size_t)-1); /* no task signals */
  uint64_t t0 = bench_now_ns();
  weft_executor *ex = make(impl, "thread_pool", 0);
  for (size_t i = 0; i < n; i++)
    check_rc(impl, "weft_executor_submit", weft_executor_submit(ex, bump_signal, NULL, 0, NULL));
  finish(impl, ex);
  *ns = bench_now_ns() - t0;
  bench_check(impl, "counter", atomic_load(&bench_counter), n);
}

static unsigned char *map_items;
static size_t map_nitems;

static void map_run(const char *impl, size_t chunksize, size_t n, uint64_t *ns) {
  if (map_nitems < n) {
    free(map_items);
    map_items = calloc(n, 1);
    if (map_items == NULL) bench_fail(impl, "calloc", WEFT_ENOMEM, "out of memory");
    map_nitems = n;
  }
  weft_executor *ex = make_warm(impl, "thread_pool", chunksize);
  atomic_store(&bench_counter, 0);
  uint64_t t0 = bench_now_ns();
  check_rc(impl, "weft_executor_map",
           weft_executor_map(ex, bump, map_items, 1, n, NULL, 0, NULL,
                             weft_deadline_in(DEADLINE_MS)));
  *ns = bench_now_ns() - t0;
  bench_check(impl, "counter", atomic_load(&bench_counter), n);
  finish(impl, ex);
}

/* Pool alive: one weft_executor_map over n one-byte items, no results;
 * map returns when every item has run. Automatic chunksize. */
static void weft_pool_map(size_t n, uint64_t *ns) {
  map_run("weft.thread_pool.map", 0, n, ns);
}

/* The same with chunksize 1: one trip to a worker per item. */
static void weft_pool_map_chunk1(size_t n, uint64_t *ns) {
  map_run("weft.thread_pool.map_chunk1", 1, n, ns);
}

/* The inline executor: n fire-and-forget submits, each run before submit
 * returns — the sequential cost of weft's dispatch path. */
static void weft_inline_submit(size_t n, uint64_t *ns) {
  const char *impl = "weft.inline.submit";
  weft_executor *ex = make_warm(impl, "inline", 0);
  arm(n);
  uint64_t t0 = bench_now_ns();
  submit_and_wait(impl, ex, n);
  *ns = bench_now_ns() - t0;
  bench_check(impl, "counter", atomic_load(&bench_counter), n);
  finish(impl, ex);
}

/* The thread executor (one thread per task, default: no limit on live
 * threads): n fire-and-forget submits, waits for the last task (event). */
static void weft_thread_submit(size_t n, uint64_t *ns) {
  const char *impl = "weft.thread.submit";
  weft_executor *ex = make_warm(impl, "thread", 0);
  arm(n);
  uint64_t t0 = bench_now_ns();
  submit_and_wait(impl, ex, n);
  *ns = bench_now_ns() - t0;
  bench_check(impl, "counter", atomic_load(&bench_counter), n);
  finish(impl, ex);
}

/* ---- latency: one task submitted with a future and waited for, in turn */

static void weft_lat(const char *impl, const char *kind, size_t rounds, uint64_t *samples) {
  weft_executor *ex = make_warm(impl, kind, 0);
  atomic_store(&bench_counter, 0);
  for (size_t r = 0; r < rounds; r++) {
    weft_future *f = NULL;
    uint64_t t0 = bench_now_ns();
    check_rc(impl, "weft_executor_submit", weft_executor_submit(ex, bump, NULL, 0, &f));
    check_rc(impl, "weft_future_wait", weft_future_wait(f, weft_deadline_in(DEADLINE_MS)));
    samples[r] = bench_now_ns() - t0;
    check_rc(impl, "task", weft_future_error(f));
    weft_future_release(f);
  }
  bench_check(impl, "counter", atomic_load(&bench_counter), rounds);
  finish(impl, ex);
}

static void weft_pool_lat(size_t rounds, uint64_t *samples) {
  weft_lat("weft.thread_pool.submit_wait", "thread_pool", rounds, samples);
}
static void weft_thread_lat(size_t rounds, uint64_t *samples) {
  weft_lat("weft.thread.submit_wait", "thread", rounds, samples);
}
static void weft_inline_lat(size_t rounds, uint64_t *samples) {
  weft_lat("weft.inline.submit_wait", "inline", rounds, samples);
}

/* ------------------------------------------------------------------------ */
/* The driver                                                               */
/* ------------------------------------------------------------------------ */

enum { FULL, REDUCED };

typedef struct tput {
  const char *impl;
  const char *desc;
  int count; /* FULL: --tasks; REDUCED: --thread-tasks */
  bench_run_fn run;
  int on;
  size_t tasks;
  uint64_t *ns; /* one per repeat */
  double med_s, min_s, max_s, ns_per_task;
} tput;

typedef struct lat {
  const char *impl;
  const char *desc;
  bench_lat_fn run;
  int on;
  double *med, *p99; /* one per repeat, ns */
  double med_ns, p99_ns;
} lat;

#define T(name, d, c, fn) {.impl = name, .desc = d, .count = c, .run = fn}
static tput tputs[] = {
    T("weft.thread_pool.submit", "pool alive, submit fut=NULL, wait on last task", FULL,
      weft_pool_submit),
    T("weft.thread_pool.submit_future", "pool alive, submit + release future", FULL,
      weft_pool_submit_future),
    T("weft.thread_pool.map", "pool alive, map, automatic chunksize", FULL, weft_pool_map),
    T("weft.thread_pool.map_chunk1", "pool alive, map, chunksize 1", FULL,
      weft_pool_map_chunk1),
    T("weft.thread_pool.create_submit_shutdown", "create + submit + shutdown(FINISH) + destroy",
      FULL, weft_pool_submit_lifecycle),
    T("weft.inline.submit", "inline executor (sequential floor)", FULL, weft_inline_submit),
    T("weft.thread.submit", "thread executor, one thread per task", REDUCED,
      weft_thread_submit),
    T("libuv.queue_work", "uv_queue_work all, uv_run (libuv pool)", FULL, peer_uv_run),
    T("openmp.task", "omp parallel + single + omp task loop", FULL, peer_omp_task_run),
    T("openmp.for_static", "omp parallel for static (no dispatch)", FULL, peer_omp_for_run),
    T("pthread.create_join", "pthread_create + join per task", REDUCED, peer_pthread_run),
};
#undef T
#define NTPUT (sizeof tputs / sizeof tputs[0])

#define L(name, d, fn) {.impl = name, .desc = d, .run = fn}
static lat lats[] = {
    L("weft.thread_pool.submit_wait", "pool: submit one, future_wait", weft_pool_lat),
    L("weft.thread.submit_wait", "thread executor: submit one, wait", weft_thread_lat),
    L("weft.inline.submit_wait", "inline: submit one, wait", weft_inline_lat),
    L("libuv.queue_work", "uv_queue_work one, uv_run", peer_uv_lat),
    L("pthread.create_join", "pthread_create + join", peer_pthread_lat),
};
#undef L
#define NLAT (sizeof lats / sizeof lats[0])

/* Throughput peers every line is compared with, and latency peers. */
static const char *const tput_peers[] = {"libuv.queue_work", "openmp.task",
                                         "pthread.create_join"};
static const char *const lat_peers[] = {"libuv.queue_work", "pthread.create_join"};

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}
static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of a sorted array (mean of the middle two for an even count). */
static double median_u64(const uint64_t *s, size_t n) {
  return n % 2 ? (double)s[n / 2] : ((double)s[n / 2 - 1] + (double)s[n / 2]) / 2.0;
}
static double median_dbl(const double *s, size_t n) {
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
}
/* Nearest-rank percentile of a sorted array. */
static double pct_u64(const uint64_t *s, size_t n, double p) {
  size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
  if (k < 1) k = 1;
  if (k > n) k = n;
  return (double)s[k - 1];
}

static const tput *find_tput(const char *impl) {
  for (size_t i = 0; i < NTPUT; i++)
    if (tputs[i].on && strcmp(tputs[i].impl, impl) == 0) return &tputs[i];
  return NULL;
}
static const lat *find_lat(const char *impl) {
  for (size_t i = 0; i < NLAT; i++)
    if (lats[i].on && strcmp(lats[i].impl, impl) == 0) return &lats[i];
  return NULL;
}

static void usage(FILE *to) {
  fprintf(to,
          "usage: dispatch [--tasks N] [--thread-tasks N] [--latency-rounds N] [--repeat R]\n"
          "                [--pool-workers N] [--only SUBSTRING]... [--no-latency] [--help]\n"
          "\n"
          "Dispatch throughput and latency of tiny tasks (each bumps an atomic counter):\n"
          "weft's executors against pthread-per-task, libuv uv_queue_work and OpenMP\n"
          "tasks, in one run. Prints a table, then one `bench=dispatch ...` line per\n"
          "measurement with medians over R interleaved repeats and ratios\n"
          "(ratio_vs_<peer> = peer time / impl time; > 1 means faster than the peer).\n"
          "\n"
          "  --tasks N           tasks per throughput measurement (default 1000000)\n"
          "  --thread-tasks N    tasks for one-thread-per-task measurements (default\n"
          "                      20000, at most --tasks); reported scaled to tasks/s\n"
          "  --latency-rounds N  sequential round trips per latency repeat (default 10000)\n"
          "  --repeat R          repeats of every measurement (default 5)\n"
          "  --pool-workers N    thread_pool workers (default: weft's, the usable CPUs)\n"
          "  --only SUBSTRING    run only measurements whose name contains it (repeatable;\n"
          "                      ratios against peers not run print as na)\n"
          "  --no-latency        skip the latency measurements\n"
          "\n"
          "measurements:\n");
  for (size_t i = 0; i < NTPUT; i++) fprintf(to, "  %-40s %s\n", tputs[i].impl, tputs[i].desc);
  for (size_t i = 0; i < NLAT; i++)
    fprintf(to, "  latency %-32s %s\n", lats[i].impl, lats[i].desc);
}

static int parse_count(const char *flag, const char *v, size_t *out) {
  char *end;
  if (v == NULL || *v == '\0' || *v == '-') goto bad;
  unsigned long long x = strtoull(v, &end, 10);
  if (*end != '\0' || x == 0) goto bad;
  *out = (size_t)x;
  return 0;
bad:
  fprintf(stderr, "dispatch: %s needs a positive integer, got '%s'\n", flag, v ? v : "");
  return -1;
}

#define MAX_ONLY 16

int main(int argc, char **argv) {
  size_t tasks = 1000000, thread_tasks = 20000, rounds = 10000, repeat = 5, workers = 0;
  const char *only[MAX_ONLY];
  size_t nonly = 0;
  int latency = 1;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *eq = strchr(a, '=');
    char flag[32];
    size_t fl = eq ? (size_t)(eq - a) : strlen(a);
    if (fl >= sizeof flag) fl = sizeof flag - 1;
    memcpy(flag, a, fl);
    flag[fl] = '\0';
    const char *val = eq ? eq + 1 : NULL;
    size_t *dst = NULL;
    if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(flag, "--no-latency") == 0 && !val) {
      latency = 0;
      continue;
    } else if (strcmp(flag, "--tasks") == 0) {
      dst = &tasks;
    } else if (strcmp(flag, "--thread-tasks") == 0) {
      dst = &thread_tasks;
    } else if (strcmp(flag, "--latency-rounds") == 0) {
      dst = &rounds;
    } else if (strcmp(flag, "--repeat") == 0) {
      dst = &repeat;
    } else if (strcmp(flag, "--pool-workers") == 0) {
      dst = &workers;
    } else if (strcmp(flag, "--only") != 0) {
      fprintf(stderr, "dispatch: unknown argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
    if (!val) {
      if (i + 1 >= argc) {
        fprintf(stderr, "dispatch: %s needs a value\n", flag);
        usage(stderr);
        return 2;
      }
      val = argv[++i];
    }
    if (dst == NULL) { /* --only */
      if (nonly == MAX_ONLY) {
        fprintf(stderr, "dispatch: at most %d --only\n", MAX_ONLY);
        return 2;
      }
      only[nonly++] = val;
    } else if (parse_count(flag, val, dst) != 0) {
      usage(stderr);
      return 2;
    }
  }
  if (thread_tasks > tasks) thread_tasks = tasks;
  if (workers > 1024) {
    fprintf(stderr, "dispatch: --pool-workers at most 1024\n");
    return 2;
  }
  pool_workers = (int)workers;

  size_t ntput = 0, nlat = 0;
  for (size_t i = 0; i < NTPUT; i++) {
    tput *t = &tputs[i];
    t->on = nonly == 0;
    for (size_t k = 0; k < nonly; k++) t->on |= strstr(t->impl, only[k]) != NULL;
    t->tasks = t->count == FULL ? tasks : thread_tasks;
    t->ns = calloc(repeat, sizeof *t->ns);
    if (t->ns == NULL) bench_fail("dispatch", "calloc", WEFT_ENOMEM, "out of memory");
    ntput += t->on;
  }
  for (size_t i = 0; i < NLAT; i++) {
    lat *l = &lats[i];
    l->on = latency && nonly == 0;
    for (size_t k = 0; latency && k < nonly; k++) l->on |= strstr(l->impl, only[k]) != NULL;
    l->med = calloc(repeat, sizeof *l->med);
    l->p99 = calloc(repeat, sizeof *l->p99);
    if (l->med == NULL || l->p99 == NULL)
      bench_fail("dispatch", "calloc", WEFT_ENOMEM, "out of memory");
    nlat += l->on;
  }
  uint64_t *samples = calloc(rounds, sizeof *samples);
  if (samples == NULL) bench_fail("dispatch", "calloc", WEFT_ENOMEM, "out of memory");
  check_rc("dispatch", "weft_event_create", weft_event_create(&done_ev));

  int cpus = weft_cpu_count();
  fprintf(stderr,
          "dispatch: %zu throughput + %zu latency measurements x %zu repeats (tasks=%zu, "
          "thread tasks=%zu, latency rounds=%zu); cpus=%d\n",
          ntput, nlat, repeat, tasks, thread_tasks, rounds, cpus);

  /* Interleaved repeats: round r runs every measurement once. */
  for (size_t r = 0; r < repeat; r++) {
    for (size_t i = 0; i < NTPUT; i++) {
      tput *t = &tputs[i];
      if (!t->on) continue;
      t->run(t->tasks, &t->ns[r]);
      fprintf(stderr, "  [%zu/%zu] %-40s %10.2f ms  %8.1f ns/task\n", r + 1, repeat, t->impl,
              (double)t->ns[r] / 1e6, (double)t->ns[r] / (double)t->tasks);
    }
    for (size_t i = 0; i < NLAT; i++) {
      lat *l = &lats[i];
      if (!l->on) continue;
      l->run(rounds, samples);
      qsort(samples, rounds, sizeof *samples, cmp_u64);
      l->med[r] = median_u64(samples, rounds);
      l->p99[r] = pct_u64(samples, rounds, 99.0);
      fprintf(stderr, "  [%zu/%zu] latency %-32s median %9.0f ns  p99 %9.0f ns\n", r + 1, repeat,
              l->impl, l->med[r], l->p99[r]);
    }
  }

  for (size_t i = 0; i < NTPUT; i++) {
    tput *t = &tputs[i];
    if (!t->on) continue;
    qsort(t->ns, repeat, sizeof *t->ns, cmp_u64);
    t->med_s = median_u64(t->ns, repeat) / 1e9;
    t->min_s = (double)t->ns[0] / 1e9;
    t->max_s = (double)t->ns[repeat - 1] / 1e9;
    t->ns_per_task = t->med_s * 1e9 / (double)t->tasks;
  }
  for (size_t i = 0; i < NLAT; i++) {
    lat *l = &lats[i];
    if (!l->on) continue;
    qsort(l->med, repeat, sizeof *l->med, cmp_dbl);
    qsort(l->p99, repeat, sizeof *l->p99, cmp_dbl);
    l->med_ns = median_dbl(l->med, repeat);
    l->p99_ns = median_dbl(l->p99, repeat);
  }

  /* The human table. */
  const tput *uv = find_tput("libuv.queue_work"), *omp = find_tput("openmp.task");
  printf("\nDispatch throughput: medians of %zu repeats; tasks=%zu (* = %zu tasks, scaled)\n",
         repeat, tasks, thread_tasks);
  printf("%-42s %10s %10s %9s %9s %9s\n", "impl", "median ms", "M tasks/s", "ns/task",
         "vs libuv", "vs omp");
  for (size_t i = 0; i < NTPUT; i++) {
    const tput *t = &tputs[i];
    if (!t->on) continue;
    char name[64], ru[16] = "na", ro[16] = "na";
    snprintf(name, sizeof name, "%s%s", t->impl, t->count == REDUCED ? " *" : "");
    if (uv) snprintf(ru, sizeof ru, "%.2fx", uv->ns_per_task / t->ns_per_task);
    if (omp) snprintf(ro, sizeof ro, "%.2fx", omp->ns_per_task / t->ns_per_task);
    printf("%-42s %10.2f %10.3f %9.1f %9s %9s\n", name, t->med_s * 1e3,
           1e3 / t->ns_per_task, t->ns_per_task, ru, ro);
  }
  const lat *luv = find_lat("libuv.queue_work"), *lpt = find_lat("pthread.create_join");
  if (nlat) {
    printf("\nRound-trip latency of one task (submit, wait): medians of %zu repeats of %zu "
           "rounds\n",
           repeat, rounds);
    printf("%-42s %10s %10s %9s %9s\n", "impl", "median ns", "p99 ns", "vs libuv", "vs pthr");
    for (size_t i = 0; i < NLAT; i++) {
      const lat *l = &lats[i];
      if (!l->on) continue;
      char ru[16] = "na", rp[16] = "na";
      if (luv) snprintf(ru, sizeof ru, "%.2fx", luv->med_ns / l->med_ns);
      if (lpt) snprintf(rp, sizeof rp, "%.2fx", lpt->med_ns / l->med_ns);
      printf("%-42s %10.0f %10.0f %9s %9s\n", l->impl, l->med_ns, l->p99_ns, ru, rp);
    }
  }

  /* The machine-readable lines. */
  printf("\nbench=dispatch.info weft=%s cpus=%d weft_pool_workers=%d libuv=%s "
         "uv_threadpool_size=%d omp_threads=%d tasks=%zu thread_tasks=%zu latency_rounds=%zu "
         "repeats=%zu ratio=peer_time/impl_time\n",
         weft_version(), cpus, pool_workers ? pool_workers : cpus, peer_uv_version(),
         peer_uv_pool_size(), peer_omp_threads(), tasks, thread_tasks, rounds, repeat);
  for (size_t i = 0; i < NTPUT; i++) {
    const tput *t = &tputs[i];
    if (!t->on) continue;
    printf("bench=dispatch impl=%s tasks=%zu repeats=%zu median_s=%.6f min_s=%.6f max_s=%.6f "
           "tasks_per_s=%.0f ns_per_task=%.2f",
           t->impl, t->tasks, repeat, t->med_s, t->min_s, t->max_s, 1e9 / t->ns_per_task,
           t->ns_per_task);
    for (size_t k = 0; k < sizeof tput_peers / sizeof tput_peers[0]; k++) {
      const tput *p = find_tput(tput_peers[k]);
      if (p)
        printf(" ratio_vs_%s=%.3f", tput_peers[k], p->ns_per_task / t->ns_per_task);
      else
        printf(" ratio_vs_%s=na", tput_peers[k]);
    }
    printf("\n");
  }
  for (size_t i = 0; i < NLAT; i++) {
    const lat *l = &lats[i];
    if (!l->on) continue;
    printf("bench=dispatch.latency impl=%s rounds=%zu repeats=%zu median_ns=%.0f p99_ns=%.0f",
           l->impl, rounds, repeat, l->med_ns, l->p99_ns);
    for (size_t k = 0; k < sizeof lat_peers / sizeof lat_peers[0]; k++) {
      const lat *p = find_lat(lat_peers[k]);
      if (p)
        printf(" ratio_vs_%s=%.3f", lat_peers[k], p->med_ns / l->med_ns);
      else
        printf(" ratio_vs_%s=na", lat_peers[k]);
    }
    printf("\n");
  }

  weft_event_destroy(done_ev);
  return 0;
}
