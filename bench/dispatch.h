/*
 * dispatch.h — what the dispatch benchmark's files share.
 *
 * Every throughput measurement is one function that runs `n` tiny tasks whose
 * body is atomic_fetch_add(&bench_counter, 1), waits until all have run,
 * checks the counter (bench_check fails the whole run loudly) and reports the
 * nanoseconds of its timed region only: setup (creating a pool, allocating
 * request arrays) and a short warm-up happen before the clock starts.
 *
 * Every latency measurement runs `rounds` sequential round trips of one task
 * (submit, wait for it) and stores each round trip's nanoseconds.
 */
#ifndef WEFT_BENCH_DISPATCH_H
#define WEFT_BENCH_DISPATCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* The one counter every task body bumps (defined in dispatch.c). */
extern atomic_size_t bench_counter;

/* Tasks run in the short warm-up before each timed region. */
#define BENCH_WARMUP 1000

/* CLOCK_MONOTONIC in nanoseconds (the same clock for weft and the peers). */
uint64_t bench_now_ns(void);

/* Exits with status 1 and a FAIL line if got != want. */
void bench_check(const char *impl, const char *what, size_t got, size_t want);

/* Exits with status 1 and a FAIL line naming the call and its code. */
_Noreturn void bench_fail(const char *impl, const char *call, int code, const char *msg);

/* A throughput measurement: runs n tasks, sets *ns to the timed region. */
typedef void (*bench_run_fn)(size_t n, uint64_t *ns);
/* A latency measurement: fills samples[0..rounds) with round trips in ns. */
typedef void (*bench_lat_fn)(size_t rounds, uint64_t *samples);

/* Peers (dispatch_peers.c: pthread and libuv; dispatch_omp.c: OpenMP). */
void peer_pthread_run(size_t n, uint64_t *ns);
void peer_pthread_lat(size_t rounds, uint64_t *samples);
void peer_uv_run(size_t n, uint64_t *ns);
void peer_uv_lat(size_t rounds, uint64_t *samples);
/* The size of libuv's pool as libuv will see it (UV_THREADPOOL_SIZE or 4). */
int peer_uv_pool_size(void);
const char *peer_uv_version(void);
void peer_omp_task_run(size_t n, uint64_t *ns);
void peer_omp_for_run(size_t n, uint64_t *ns);
int peer_omp_threads(void);

#endif /* WEFT_BENCH_DISPATCH_H */
