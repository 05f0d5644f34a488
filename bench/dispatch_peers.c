/*
 * dispatch_peers.c — the pthread and libuv peers of the dispatch benchmark.
 *
 * pthread: one pthread_create per task, joined; at most PTHREAD_WINDOW
 * threads are alive at once (the oldest is joined before its slot is reused),
 * so a large count does not exhaust the system's thread limit.
 *
 * libuv: uv_queue_work on the default loop with an after_work callback, all n
 * queued from the loop thread, then uv_run(UV_RUN_DEFAULT) until every
 * after_work has run. The uv_work_t array is allocated before the clock starts
 * and reused (libuv's best case: no allocation per task in the timed region).
 * libuv's pool size is whatever the environment gives it (default 4 threads);
 * the pool starts on the first uv_queue_work, so a warm-up runs first.
 */
#include "dispatch.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

/* ---- pthread per task */

#define PTHREAD_WINDOW 256

static void *pthread_body(void *arg) {
  (void)arg;
  atomic_fetch_add(&bench_counter, 1);
  return NULL;
}

static void pthread_start(pthread_t *t) {
  int rc = pthread_create(t, NULL, pthread_body, NULL);
  if (rc != 0) bench_fail("pthread.create_join", "pthread_create", -rc, strerror(rc));
}

void peer_pthread_run(size_t n, uint64_t *ns) {
  pthread_t win[PTHREAD_WINDOW];
  atomic_store(&bench_counter, 0);
  uint64_t t0 = bench_now_ns();
  for (size_t i = 0; i < n; i++) {
    if (i >= PTHREAD_WINDOW) pthread_join(win[i % PTHREAD_WINDOW], NULL);
    pthread_start(&win[i % PTHREAD_WINDOW]);
  }
  size_t alive = n < PTHREAD_WINDOW ? n : PTHREAD_WINDOW;
  for (size_t k = 0; k < alive; k++) pthread_join(win[(n - alive + k) % PTHREAD_WINDOW], NULL);
  *ns = bench_now_ns() - t0;
  bench_check("pthread.create_join", "counter", atomic_load(&bench_counter), n);
}

void peer_pthread_lat(size_t rounds, uint64_t *samples) {
  atomic_store(&bench_counter, 0);
  for (size_t r = 0; r < rounds; r++) {
    pthread_t t;
    uint64_t t0 = bench_now_ns();
    pthread_start(&t);
    pthread_join(t, NULL);
    samples[r] = bench_now_ns() - t0;
  }
  bench_check("pthread.create_join", "counter", atomic_load(&bench_counter), rounds);
}

/* ---- libuv uv_queue_work */

static uv_work_t *uv_reqs;
static size_t uv_nreqs;
static size_t uv_after_count;
static int uv_after_status;

static void uv_body(uv_work_t *req) {
  (void)req;
  atomic_fetch_add(&bench_counter, 1);
}

static void uv_after(uv_work_t *req, int status) {
  (void)req;
  if (status != 0) uv_after_status = status;
  uv_after_count++;
}

static void uv_need(size_t n) {
  if (uv_nreqs >= n) return;
  free(uv_reqs);
  uv_reqs = calloc(n, sizeof *uv_reqs);
  if (uv_reqs == NULL) bench_fail("libuv.queue_work", "calloc", -ENOMEM, "out of memory");
  uv_nreqs = n;
}

/* Queues n work requests and runs the loop until all have completed. */
static void uv_batch(uv_loop_t *loop, size_t n) {
  uv_after_count = 0;
  uv_after_status = 0;
  for (size_t i = 0; i < n; i++) {
    int rc = uv_queue_work(loop, &uv_reqs[i], uv_body, uv_after);
    if (rc != 0) bench_fail("libuv.queue_work", "uv_queue_work", rc, uv_strerror(rc));
  }
  int rc = uv_run(loop, UV_RUN_DEFAULT);
  if (rc != 0) bench_fail("libuv.queue_work", "uv_run", rc, "loop still has active handles");
}

void peer_uv_run(size_t n, uint64_t *ns) {
  uv_loop_t *loop = uv_default_loop();
  uv_need(n > BENCH_WARMUP ? n : BENCH_WARMUP);
  uv_batch(loop, BENCH_WARMUP); /* starts libuv's pool on the first call */
  atomic_store(&bench_counter, 0);
  uint64_t t0 = bench_now_ns();
  uv_batch(loop, n);
  *ns = bench_now_ns() - t0;
  bench_check("libuv.queue_work", "counter", atomic_load(&bench_counter), n);
  bench_check("libuv.queue_work", "after_work calls", uv_after_count, n);
  if (uv_after_status != 0)
    bench_fail("libuv.queue_work", "after_work", uv_after_status, uv_strerror(uv_after_status));
}

void peer_uv_lat(size_t rounds, uint64_t *samples) {
  uv_loop_t *loop = uv_default_loop();
  uv_need(BENCH_WARMUP);
  uv_batch(loop, BENCH_WARMUP);
  atomic_store(&bench_counter, 0);
  size_t after = 0;
  for (size_t r = 0; r < rounds; r++) {
    uint64_t t0 = bench_now_ns();
    uv_batch(loop, 1);
    samples[r] = bench_now_ns() - t0;
    after += uv_after_count;
  }
  bench_check("libuv.queue_work", "counter", atomic_load(&bench_counter), rounds);
  bench_check("libuv.queue_work", "after_work calls", after, rounds);
}

int peer_uv_pool_size(void) {
  /* libuv 1.x: UV_THREADPOOL_SIZE, 0 becomes 1, capped at 1024; default 4. */
  const char *v = getenv("UV_THREADPOOL_SIZE");
  if (v == NULL) return 4;
  int n = atoi(v);
  if (n <= 0) n = 1;
  if (n > 1024) n = 1024;
  return n;
}

const char *peer_uv_version(void) { return uv_version_string(); }
