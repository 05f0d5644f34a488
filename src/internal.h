/*
 * internal.h — what weft's own files share and users never see.
 *
 * Layers (arrows point down only):
 *   exec/map.c (map, imap)  ->  exec/executor.c (create, submit, dispatch to a backend)
 *   exec/<backend>.c        ->  job (this file) + core/future.c
 *   sync, core                ->  core: alloc, the one timed wait, errors, clock
 *
 * Naming: non-static internal functions are weft__<name>.
 */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include "weft.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define WEFT__LIKELY(x) __builtin_expect(!!(x), 1)
#define WEFT__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define WEFT__LIKELY(x) (x)
#define WEFT__UNLIKELY(x) (x)
#endif

#define WEFT__CACHELINE 64

/* Aborts with a message on a broken internal invariant (never on user error). */
#define WEFT__ASSERT(cond)                                                     \
  do {                                                                         \
    if (WEFT__UNLIKELY(!(cond))) weft__panic(__FILE__, __LINE__, #cond);       \
  } while (0)
_Noreturn void weft__panic(const char *file, int line, const char *what);

/* ---- allocation (core/alloc.c): every weft allocation goes through these. */
void *weft__malloc(size_t n);
void *weft__calloc(size_t n, size_t size); /* overflow-checked, zeroed */
void *weft__realloc(void *p, size_t n);
void weft__free(void *p);
char *weft__strdup(const char *s);
typedef void (*weft__free_fn)(void *);
/* The free function in force now (blocks remember theirs when recycled). */
weft__free_fn weft__current_free(void);
/* Frees this thread's and the shared cache of recycled futures (core/future.c). */
void weft__future_cache_flush(void);

/* ---- the one timed wait (core/wait.c). Every blocking wait in weft goes
 * through weft__cond_wait, which takes an absolute deadline in weft_now() ms
 * (WEFT_FOREVER, or a past time = do not block; the caller checks its
 * predicate first). Condition variables used with it must be initialised
 * with weft__cond_init (CLOCK_MONOTONIC). Returns 0 (woken, maybe
 * spuriously) or WEFT_ETIMEDOUT. */
int weft__cond_init(pthread_cond_t *c);
int weft__cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline);
/* Nonzero if the deadline has passed (WEFT_FOREVER never passes). */
bool weft__deadline_passed(int64_t deadline);

/* ---- CPUs (core/cpu.c): the cgroup quota in CPUs (rounded up) for the
 * process described by the file `proc_cgroup` under the mount `root`, or 0. */
int weft__cgroup_cpu_limit(const char *proc_cgroup, const char *root);

typedef struct weft__job weft__job;

/* ---- futures (core/future.c) */

/* Completes a future from an executor. The result bytes are handed over
 * (`data` must come from weft__malloc and is freed with the future) unless
 * `data` points into the future's inline buffer. Returns 0, or WEFT_EBUSY if
 * it had already completed (then `data` is freed). */
int weft__future_complete(weft_future *f, int code, void *data, size_t size, char *msg);
/* A new future with `refs` references and room for its submit job, which
 * lives inside it (one allocation per task). NULL on ENOMEM. */
weft_future *weft__future_new(int refs);
weft__job *weft__future_job(weft_future *f);
weft_future *weft__job_future(weft__job *job);
/* The future's inline result buffer (small results need no allocation). */
unsigned char *weft__future_inline(weft_future *f, size_t *size);
/* Frees a future nobody else ever saw (a fire-and-forget submit's): no
 * callbacks, waiters or other references can exist. */
void weft__future_free_detached(weft_future *f);
/* Completes a future the caller moved to RUNNING with weft__future_start:
 * only that caller can leave RUNNING, so no race is possible and the
 * outcome is published with one atomic operation. Same ownership of data
 * and msg as weft__future_complete. */
void weft__future_complete_running(weft_future *f, int code, void *data, size_t size, char *msg);
/* PENDING -> RUNNING; false if it was cancelled (or is not pending). */
bool weft__future_start(weft_future *f);
/* Sets a hook run by the first weft_future_cancel of f while it runs (in the
 * cancelling thread; the caller of cancel holds a reference, so f is alive,
 * but `owner` must stay valid for as long as f can be cancelled: the async
 * task layer passes its loop). `tag` is kept for the owner
 * (weft__future_tag), e.g. the task, which may be gone by the time the hook
 * runs. Set before f starts running. */
void weft__future_set_cancel_hook(weft_future *f, void (*hook)(weft_future *, void *),
                                  void *owner, void *tag);
void *weft__future_tag(const weft_future *f);
/* Nonzero if cancellation was asked while running. */
bool weft__future_cancel_requested(const weft_future *f);

/* ---- jobs: one trip to a worker.
 *
 * A job runs fn over `count` consecutive items. For weft_executor_submit,
 * count == 1 and the job lives inside its future (no second allocation); for
 * map/imap a job is a chunk of a batch. A backend receives jobs through its
 * submit function, owns each until it calls exactly one of weft__job_run
 * (run it here, now) or weft__job_cancel (drop it, completing it as
 * cancelled); after either call the job memory must not be touched. */
struct weft__batch; /* exec/map.c */

struct weft__job {
  weft__job *next;           /* free for the backend's queue while it owns the job */
  weft_fn fn;
  const unsigned char *in;   /* first item */
  size_t in_size;            /* bytes per item */
  size_t count;              /* items in this trip, >= 1 */
  size_t first;              /* batch: index of the first item */
  weft_future *fut;          /* submit: the future the job lives in (executor's reference) */
  bool detached;             /* submit without a future: nobody else can see fut */
  struct weft__batch *batch; /* map/imap: the batch, else NULL */
  weft_executor *ex;         /* the executor it was submitted to */
};

/* Runs every item of the job in the calling thread, delivers results,
 * counts it completed on its executor, and releases the job. */
void weft__job_run(weft__job *job);
/* Completes every item of the job as cancelled without running it. */
void weft__job_cancel(weft__job *job);
/* The same with another reason (e.g. WEFT_EAGAIN: no thread could be had). */
void weft__job_abort(weft__job *job, int code);

/* For backends that run the items elsewhere (another process, another
 * machine), in place of weft__job_run:
 *   if (!weft__job_start(job)) -> the job was cancelled before it started:
 *       call weft__job_cancel(job) and do not send it;
 *   otherwise send it, then for every item i in [0, count):
 *       weft__job_deliver(job, i, code, data, size, msg)   (any order, once each)
 *   and finally weft__job_finish(job) (the job is gone after it).
 * deliver takes ownership of data and msg (weft__malloc'd, or NULL); code < 0
 * fails the item (WEFT_ECANCELED cancels it), and then data is freed.
 * weft__job_cancel_requested tells a backend that running work should be
 * stopped (the future was cancelled while running, or a cancelling shutdown
 * began); it may then kill the work and deliver WEFT_ECANCELED. */
bool weft__job_start(weft__job *job);
void weft__job_deliver(weft__job *job, size_t i, int code, void *data, size_t size, char *msg);
void weft__job_finish(weft__job *job);
bool weft__job_cancel_requested(const weft__job *job);

/* ---- executors (exec/executor.c) and their backends (exec/<name>.c).
 *
 * A backend is one file that defines one `const weft__backend` and is named
 * once in the table in exec/executor.c. The generic layer checks arguments,
 * keeps the counters and the shutdown flag, and builds jobs; the backend
 * queues and runs them. */
typedef enum weft__sizing {
  WEFT__SIZE_CPU,       /* workers default to weft_cpu_count() */
  WEFT__SIZE_UNLIMITED, /* workers = a cap on concurrency, 0 (default) = none */
  WEFT__SIZE_ONE,       /* always one (inline) */
} weft__sizing;

typedef struct weft__backend {
  const char *name;
  weft__sizing sizing;
  /* Map chunks default to one item (async: every item its own task). */
  bool one_item_per_trip;
  /* Sets up ex->impl. ex->workers/chunksize/max_inflight hold the resolved
   * options. Returns 0 or a WEFT_E* code (then nothing is left behind). */
  int (*init)(weft_executor *ex);
  /* Takes ownership of job and arranges for weft__job_run (or _cancel) to be
   * called exactly once, possibly before returning. Returns 0, or an error
   * (WEFT_ENOMEM, WEFT_EAGAIN, WEFT_ESHUTDOWN) with the job NOT taken. Called
   * only after the generic layer has counted the job as outstanding and
   * found the executor open. */
  int (*submit)(weft_executor *ex, weft__job *job);
  /* ex->closed is already set. Finish or cancel (WEFT_SHUTDOWN_CANCEL)
   * the queued jobs, and wait until nothing is outstanding or the deadline. */
  int (*shutdown)(weft_executor *ex, int flags, int64_t deadline);
  /* After a shutdown that returned 0: join threads, free ex->impl. */
  void (*destroy)(weft_executor *ex);
  /* Fills size, busy, queued (the rest is generic). */
  void (*stats)(weft_executor *ex, weft_executor_stats *st);
} weft__backend;

struct weft_executor {
  /* Read-mostly: every submit reads these. */
  const weft__backend *be;
  void *impl;
  int workers;              /* resolved: >= 1 (thread: 0 = unlimited) */
  size_t chunksize;         /* 0 = automatic per map */
  size_t max_inflight;      /* 0 = automatic per map */
  weft_executor_opts opts;  /* as given to create (backend-specific fields) */
  atomic_bool closed;       /* set once by shutdown; submit refuses after */
  atomic_bool cancelling;   /* a cancelling shutdown began: running tasks see it */
  /* Wakes shutdown when nothing is outstanding after close. */
  pthread_mutex_t idle_mu;
  pthread_cond_t idle_cv;
  /* Outstanding jobs are submitted - completed. The two counters sit on
   * their own cache lines: submitters write one, workers the other, so a
   * task costs one read-modify-write on each side and no line ping-pongs
   * between a submitter and a worker. */
  _Alignas(WEFT__CACHELINE) atomic_uint_fast64_t submitted;
  _Alignas(WEFT__CACHELINE) atomic_uint_fast64_t completed;
  char pad_[WEFT__CACHELINE - sizeof(atomic_uint_fast64_t)];
};

/* Jobs accepted and not yet run or cancelled (a racy snapshot, >= 0). */
size_t weft__executor_outstanding(weft_executor *ex);

/* Called by weft__job_run/_cancel once per job: counts it completed and,
 * when that leaves nothing outstanding on a closed executor, wakes
 * weft__executor_wait_idle. */
void weft__executor_job_done(weft_executor *ex);
/* Waits until nothing is outstanding (0) or the deadline (WEFT_ETIMEDOUT). */
int weft__executor_wait_idle(weft_executor *ex, int64_t deadline);
/* Counts a job in and submits it to the backend (generic checks included). */
int weft__executor_submit_job(weft_executor *ex, weft__job *job);

extern const weft__backend weft__backend_inline;
extern const weft__backend weft__backend_thread;
extern const weft__backend weft__backend_thread_pool;
extern const weft__backend weft__backend_process;
extern const weft__backend weft__backend_process_pool;
extern const weft__backend weft__backend_async;
/* Adds a backend from a library of its own (libweft_mpi's "mpi"), after the
 * built-in ones: weft_executor_create and weft_executor_kinds see it from
 * then on. Adding the same one again is harmless. 0 or WEFT_ENOMEM. */
int weft__backend_add(const weft__backend *be);

/* ---- the function registry (core/registry.c): held across the fork of
 * the process fork server (exec/proc_zygote.c). */
void weft__registry_lock(void);
void weft__registry_unlock(void);

/* ---- the task output handle (core/out.c). Stack-allocated by job_run. */
struct weft_out {
  weft_future *fut;          /* cancellation flag source (may be NULL) */
  const atomic_bool *cancel; /* batch cancellation flag (may be NULL) */
  const atomic_bool *ex_cancel; /* the executor's cancelling shutdown (may be NULL) */
  /* Result: either in the fixed slot (map) or a buffer we own. */
  unsigned char *slot;       /* map: the caller's result slot, or NULL */
  size_t slot_size;
  unsigned char *inl;        /* inline buffer for small results (may be NULL) */
  size_t inl_size;
  void *data;                /* the result: == slot, == inl, or weft__malloc'd */
  size_t size;
  char *msg;                 /* weft__malloc'd failure message, or NULL */
  int set_error;             /* WEFT_ETOOBIG / WEFT_ENOMEM from a failed set */
};
/* The outcome of a task that returned rc, given what happened to its out. */
int weft__out_code(const weft_out *out, int rc);
/* Frees an owned result buffer and message (not slot or inline). */
void weft__out_reset(weft_out *out);

#endif /* WEFT_INTERNAL_H */
