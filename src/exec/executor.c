/*
 * executor.c — the generic layer over every executor backend.
 *
 * It checks arguments, resolves options, keeps the counters and the shutdown
 * flag, and turns a submit into a job; a backend (one file, one
 * weft__backend) only queues and runs jobs. Adding a backend is that file
 * plus one line in `backends` below.
 *
 * Shutdown protocol. A job is outstanding from the moment a submit counts
 * it in `submitted` until weft__job_run/_cancel counts it in `completed`.
 * Submit increments `submitted` before reading `closed`; shutdown sets
 * `closed` before comparing the counters. All of these are sequentially
 * consistent, so either the submit sees `closed` (and backs out, taking its
 * count back) or shutdown sees the job and waits for it: no job slips in
 * unseen. Whoever changes a counter last on a closed executor (a completing
 * job, or a submit backing out) sees the two counters equal and wakes the
 * shutdown waiter under idle_mu. Backends join their threads in destroy
 * before the executor is freed, so a worker still inside
 * weft__executor_job_done never touches freed memory.
 */
#include "internal.h"

#include <string.h>

static const weft__backend *const backends[] = {
    &weft__backend_inline,
    &weft__backend_thread,
    &weft__backend_thread_pool,
    &weft__backend_async,
    &weft__backend_process,
    &weft__backend_process_pool,
    NULL,
};

#define NBACKENDS (sizeof backends / sizeof backends[0] - 1)

/* Backends that live in libraries of their own (libweft_mpi) are added when
 * their library is initialised, so that programs that do not use them do
 * not load what they need. The names' array is only ever appended to: a
 * reader sees a NULL-terminated prefix of it. */
#define MAX_EXTRA 8
static const weft__backend *_Atomic extra[MAX_EXTRA];
static atomic_int nextra;
static pthread_mutex_t extra_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *_Atomic kind_names[NBACKENDS + MAX_EXTRA + 1];
static pthread_once_t kind_names_once = PTHREAD_ONCE_INIT;

static void kind_names_init(void) {
  for (size_t i = 0; i < NBACKENDS; i++) atomic_store(&kind_names[i], backends[i]->name);
}

const char *const *weft_executor_kinds(void) {
  pthread_once(&kind_names_once, kind_names_init);
  return (const char *const *)kind_names;
}

int weft__backend_add(const weft__backend *be) {
  pthread_once(&kind_names_once, kind_names_init);
  pthread_mutex_lock(&extra_mu);
  int n = atomic_load(&nextra), rc = 0;
  for (int i = 0; i < n; i++)
    if (atomic_load(&extra[i]) == be) goto out; /* added before */
  if (n == MAX_EXTRA) {
    rc = WEFT_ENOMEM;
    goto out;
  }
  atomic_store(&extra[n], be);
  atomic_store(&kind_names[NBACKENDS + (size_t)n], be->name);
  atomic_store(&nextra, n + 1);
out:
  pthread_mutex_unlock(&extra_mu);
  return rc;
}

static const weft__backend *find_backend(const char *kind) {
  for (int i = 0; backends[i]; i++)
    if (strcmp(backends[i]->name, kind) == 0) return backends[i];
  int n = atomic_load(&nextra);
  for (int i = 0; i < n; i++) {
    const weft__backend *be = atomic_load(&extra[i]);
    if (strcmp(be->name, kind) == 0) return be;
  }
  return NULL;
}

int weft_executor_create(weft_executor **out, const char *kind, const weft_executor_opts *opts) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  if (!kind) return WEFT_EINVAL;
  weft_executor_opts o = {0};
  if (opts) o = *opts;
  if (o.workers < 0) return WEFT_EINVAL;
  const weft__backend *be = find_backend(kind);
  if (!be) return WEFT_ENOENT;

  weft_executor *ex = weft__calloc(1, sizeof *ex);
  if (!ex) return WEFT_ENOMEM;
  ex->be = be;
  switch (be->sizing) {
  case WEFT__SIZE_CPU: ex->workers = o.workers ? o.workers : weft_cpu_count(); break;
  case WEFT__SIZE_UNLIMITED: ex->workers = o.workers; break; /* 0 = no limit */
  case WEFT__SIZE_ONE: ex->workers = 1; break;
  }
  ex->chunksize = o.chunksize;
  ex->max_inflight = o.max_inflight;
  ex->opts = o;
  atomic_init(&ex->closed, false);
  atomic_init(&ex->cancelling, false);
  atomic_init(&ex->submitted, 0);
  atomic_init(&ex->completed, 0);
  if (pthread_mutex_init(&ex->idle_mu, NULL) != 0) {
    weft__free(ex);
    return WEFT_ENOMEM;
  }
  int rc = weft__cond_init(&ex->idle_cv);
  if (rc == 0) {
    rc = be->init(ex);
    if (rc) pthread_cond_destroy(&ex->idle_cv);
  } else {
    rc = WEFT_ENOMEM;
  }
  if (rc) {
    pthread_mutex_destroy(&ex->idle_mu);
    weft__free(ex);
    return rc;
  }
  *out = ex;
  return 0;
}

const char *weft_executor_name(const weft_executor *ex) { return ex ? ex->be->name : "?"; }

size_t weft__executor_outstanding(weft_executor *ex) {
  /* completed first: every completed job was submitted, so this is >= 0
   * except when a submit backed out in between. */
  uint64_t c = atomic_load_explicit(&ex->completed, memory_order_relaxed);
  uint64_t s = atomic_load_explicit(&ex->submitted, memory_order_relaxed);
  return s > c ? (size_t)(s - c) : 0;
}

static void wake_idle(weft_executor *ex) {
  pthread_mutex_lock(&ex->idle_mu);
  pthread_cond_broadcast(&ex->idle_cv);
  pthread_mutex_unlock(&ex->idle_mu);
}

void weft__executor_job_done(weft_executor *ex) {
  uint64_t c = atomic_fetch_add(&ex->completed, 1) + 1;
  if (WEFT__UNLIKELY(atomic_load(&ex->closed)) && atomic_load(&ex->submitted) == c) wake_idle(ex);
}

int weft__executor_wait_idle(weft_executor *ex, int64_t deadline) {
  int rc = 0;
  pthread_mutex_lock(&ex->idle_mu);
  while (atomic_load(&ex->submitted) != atomic_load(&ex->completed)) {
    if (weft__deadline_passed(deadline) ||
        weft__cond_wait(&ex->idle_cv, &ex->idle_mu, deadline) == WEFT_ETIMEDOUT) {
      if (atomic_load(&ex->submitted) != atomic_load(&ex->completed)) rc = WEFT_ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&ex->idle_mu);
  return rc;
}

/* Takes a job back out of the count when it never reached a backend. */
static void uncount(weft_executor *ex) {
  uint64_t s = atomic_fetch_sub(&ex->submitted, 1) - 1;
  if (atomic_load(&ex->closed) && atomic_load(&ex->completed) == s) wake_idle(ex);
}

int weft__executor_submit_job(weft_executor *ex, weft__job *job) {
  atomic_fetch_add(&ex->submitted, 1);
  if (WEFT__UNLIKELY(atomic_load(&ex->closed))) {
    uncount(ex);
    return WEFT_ESHUTDOWN;
  }
  job->ex = ex;
  int rc = ex->be->submit(ex, job);
  if (WEFT__UNLIKELY(rc)) uncount(ex);
  return rc;
}

int weft_executor_submit(weft_executor *ex, weft_fn fn, const void *in, size_t in_size,
                         weft_future **fut) {
  if (fut) *fut = NULL;
  if (!ex || !fn || (!in && in_size)) return WEFT_EINVAL;
  /* One reference for the executor (given back by job_run/cancel), one
   * for the caller if a future is wanted. */
  weft_future *f = weft__future_new(fut ? 2 : 1);
  if (!f) return WEFT_ENOMEM;
  weft__job *job = weft__future_job(f);
  job->next = NULL;
  job->fn = fn;
  job->in = in;
  job->in_size = in_size;
  job->count = 1;
  job->first = 0;
  job->fut = f;
  job->detached = fut == NULL;
  job->batch = NULL;
  int rc = weft__executor_submit_job(ex, job);
  if (rc) {
    weft_future_release(f);
    if (fut) weft_future_release(f);
    return rc;
  }
  if (fut) *fut = f;
  return 0;
}

/* ---- running a submit job (batch jobs are run by exec/map.c) ---- */

void weft__batch_run(weft__job *job);
void weft__batch_abort(weft__job *job, int code);

void weft__job_run(weft__job *job) {
  if (job->batch) {
    weft__batch_run(job);
    return;
  }
  weft_future *f = job->fut;
  weft_executor *ex = job->ex;
  if (job->detached) {
    /* Fire and forget: no one can cancel, wait for or read this future, so
     * the state machine is skipped; only the cancelling flag is visible. */
    weft_out out = {0};
    out.ex_cancel = &ex->cancelling;
    out.inl = weft__future_inline(f, &out.inl_size);
    job->fn(job->in, job->in_size, &out);
    weft__out_reset(&out);
    weft__future_free_detached(f);
    weft__executor_job_done(ex);
    return;
  }
  if (weft__future_start(f)) {
    weft_out out = {0};
    out.fut = f;
    out.ex_cancel = &ex->cancelling;
    out.inl = weft__future_inline(f, &out.inl_size);
    int rc = job->fn(job->in, job->in_size, &out);
    rc = weft__out_code(&out, rc);
    if (rc < 0 && out.data && out.data != out.inl) {
      weft__free(out.data);
      out.data = NULL;
    }
    weft__future_complete_running(f, rc, rc < 0 ? NULL : out.data, rc < 0 ? 0 : out.size,
                                  out.msg);
  }
  /* The job lives in f: read what we need first, then give back our ref. */
  weft_future_release(f);
  weft__executor_job_done(ex);
}

void weft__job_abort(weft__job *job, int code) {
  if (job->batch) {
    weft__batch_abort(job, code);
    return;
  }
  weft_future *f = job->fut;
  weft_executor *ex = job->ex;
  if (job->detached) {
    weft__future_free_detached(f);
  } else {
    /* EBUSY if the user cancelled it already: it is complete either way. */
    weft__future_complete(f, code, NULL, 0, NULL);
    weft_future_release(f);
  }
  weft__executor_job_done(ex);
}

void weft__job_cancel(weft__job *job) { weft__job_abort(job, WEFT_ECANCELED); }

/* ---- remote execution: start, deliver, finish (see internal.h) ---- */

bool weft__batch_start(weft__job *job);
void weft__batch_deliver(weft__job *job, size_t i, int code, void *data, size_t size, char *msg);
void weft__batch_finish(weft__job *job);
bool weft__batch_cancel_requested(const weft__job *job);

bool weft__job_start(weft__job *job) {
  if (job->batch) return weft__batch_start(job);
  return job->detached || weft__future_start(job->fut);
}

void weft__job_deliver(weft__job *job, size_t i, int code, void *data, size_t size, char *msg) {
  if (job->batch) {
    weft__batch_deliver(job, i, code, data, size, msg);
    return;
  }
  WEFT__ASSERT(i == 0);
  if (job->detached) {
    weft__free(data);
    weft__free(msg);
    return;
  }
  weft__future_complete_running(job->fut, code, code < 0 ? NULL : data, code < 0 ? 0 : size, msg);
  if (code < 0) weft__free(data);
}

void weft__job_finish(weft__job *job) {
  if (job->batch) {
    weft__batch_finish(job);
    return;
  }
  weft_future *f = job->fut;
  weft_executor *ex = job->ex;
  if (job->detached) weft__future_free_detached(f);
  else weft_future_release(f);
  weft__executor_job_done(ex);
}

bool weft__job_cancel_requested(const weft__job *job) {
  if (atomic_load_explicit(&job->ex->cancelling, memory_order_relaxed)) return true;
  if (job->batch) return weft__batch_cancel_requested(job);
  return !job->detached && weft__future_cancel_requested(job->fut);
}

/* ---- shutdown, destroy, stats ---- */

int weft_executor_shutdown(weft_executor *ex, int flags, int64_t deadline) {
  if (!ex || (flags != WEFT_SHUTDOWN_FINISH && flags != WEFT_SHUTDOWN_CANCEL)) return WEFT_EINVAL;
  atomic_store(&ex->closed, true);
  if (flags == WEFT_SHUTDOWN_CANCEL) atomic_store(&ex->cancelling, true);
  return ex->be->shutdown(ex, flags, deadline);
}

void weft_executor_destroy(weft_executor *ex) {
  if (!ex) return;
  atomic_store(&ex->closed, true);
  atomic_store(&ex->cancelling, true);
  int rc = ex->be->shutdown(ex, WEFT_SHUTDOWN_CANCEL, WEFT_FOREVER);
  WEFT__ASSERT(rc == 0);
  ex->be->destroy(ex);
  pthread_cond_destroy(&ex->idle_cv);
  pthread_mutex_destroy(&ex->idle_mu);
  weft__free(ex);
}

int weft_executor_stats_get(weft_executor *ex, weft_executor_stats *st) {
  if (!ex || !st) return WEFT_EINVAL;
  memset(st, 0, sizeof *st);
  st->name = ex->be->name;
  ex->be->stats(ex, st);
  st->submitted = atomic_load_explicit(&ex->submitted, memory_order_relaxed);
  st->completed = atomic_load_explicit(&ex->completed, memory_order_relaxed);
  return 0;
}
