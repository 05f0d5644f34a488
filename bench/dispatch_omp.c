/*
 * dispatch_omp.c — the OpenMP peers of the dispatch benchmark.
 *
 * openmp.task: `omp parallel` + `omp single`, in which one thread creates n
 * `omp task`s; the barrier at the end of the region waits for all of them.
 * The timed region includes entering the parallel region (the team's threads
 * already exist: a warm-up region runs first). libgomp may run a task
 * undeferred in the creating thread when too many are queued; that is part of
 * what OpenMP tasks cost.
 *
 * openmp.for_static: `omp parallel for schedule(static)` over n iterations
 * with the same body — no per-item dispatch at all, the floor.
 */
#include "dispatch.h"

#include <omp.h>

static void warm_up(void) {
#pragma omp parallel
  {
    atomic_fetch_add(&bench_counter, 1);
  }
}

void peer_omp_task_run(size_t n, uint64_t *ns) {
  warm_up();
  atomic_store(&bench_counter, 0);
  uint64_t t0 = bench_now_ns();
#pragma omp parallel
#pragma omp single
  {
    for (size_t i = 0; i < n; i++) {
#pragma omp task
      atomic_fetch_add(&bench_counter, 1);
    }
  }
  *ns = bench_now_ns() - t0;
  bench_check("openmp.task", "counter", atomic_load(&bench_counter), n);
}

void peer_omp_for_run(size_t n, uint64_t *ns) {
  warm_up();
  atomic_store(&bench_counter, 0);
  long count = (long)n;
  uint64_t t0 = bench_now_ns();
#pragma omp parallel for schedule(static)
  for (long i = 0; i < count; i++) atomic_fetch_add(&bench_counter, 1);
  *ns = bench_now_ns() - t0;
  bench_check("openmp.for_static", "counter", atomic_load(&bench_counter), n);
}

int peer_omp_threads(void) { return omp_get_max_threads(); }
