/*
 * thread_pool.c — the work-stealing thread pool backend ("thread_pool").
 *
 * Design note.
 *
 * Queues. A fixed set of ex->workers threads. Each worker owns a Chase-Lev
 * deque (Chase & Lev 2005, with the C11 orders of Lê et al. 2013): the owner
 * pushes and pops at the bottom, LIFO, so a task's children run while its
 * data is hot; thieves take from the top, FIFO, the oldest work. The paper's
 * standalone seq_cst fences are replaced by seq_cst operations on the same
 * variables, which cost the same on x86 and which TSan understands.
 * Jobs submitted from outside the pool go to the injector: a lock-free LIFO
 * list threaded through job->next (one CAS to push). A worker takes the whole
 * list with one exchange (no ABA: nobody pops single nodes) and moves it into
 * its own deque, newest first, so that it pops the oldest first and the other
 * workers can steal from it. A job submitted by a task running on one of this
 * pool's own workers goes straight to that worker's deque (tls_self).
 *
 * A deque grows by doubling and never shrinks; its old arrays are freed by
 * destroy (a thief may still be reading one), so memory stays at about twice
 * the largest backlog.
 *
 * Worker loop: own deque -> injector -> become a "searcher": steal from the
 * others starting at a random victim, for a bounded spin (pause, then
 * sched_yield) -> park on its own condition variable. At most half the pool
 * (at least one worker) spins at a time; the others park at once (Go's rule
 * too: spinning workers burn CPU that busy ones could use). Every FAIR_TICKS
 * jobs a worker first looks at the injector and at the oldest job of its own
 * deque, so a task that keeps submitting children cannot starve the rest.
 *
 * Sleeping. No syscall per task: a submitter wakes a worker only when some
 * worker is parked (nidle > 0) and none is searching (nsearching == 0); a
 * searcher will find the job anyway. When a searcher finds work and was the
 * last searcher, it wakes one more if work is still visible, so parallelism
 * ramps up one worker at a time (the Go scheduler's rule). A waker counts the
 * worker it wakes as a searcher at once (CAS 0 -> 1), so a burst of submits
 * wakes one worker, not one per submit.
 * No lost wake-up, by two Dekker pairs, all seq_cst:
 *   submitter: push job;            load nidle;  load nsearching
 *   parker:    register in idle (store nidle); fetch_sub nsearching;
 *              re-check every queue
 * Either the submitter sees the parker registered (and nobody searching, so
 * it wakes someone), or the parker's re-check comes later in the single total
 * order and sees the job. A searcher the submitter counted on re-checks (when
 * it parks) or looks for more work (when it finds some) after it stops
 * counting, so it sees the job too.
 *
 * Locks. sleep_mu is the only lock here, and a leaf: while holding it we only
 * signal or wait on condition variables, never call out or take another
 * lock, so it may be taken under any lock a caller holds. Neither
 * weft__job_run nor weft__executor_wait_idle (which takes ex->idle_mu) is
 * ever called with it held.
 *
 * Stats. queued = outstanding - busy: the generic layer already counts
 * every accepted job until it is done, so no per-job counter is kept here.
 *
 * Shutdown. FINISH changes nothing here: workers run until the queues are
 * empty and the generic layer waits until nothing is outstanding. CANCEL sets
 * ex->cancelling (a worker cancels instead of running any job it takes from
 * then on), then empties the injector and steals every deque dry, cancelling
 * each job. Destroy sets `stop`, wakes everyone and joins.
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>

enum {
  RING_MIN = 256,  /* initial deque capacity (a power of two) */
  SPIN_PAUSE = 64, /* search rounds with a short pause between them */
  SPIN_YIELD = 16, /* then rounds with sched_yield, then park */
  PAUSES = 32,     /* cpu pauses per pause round */
  STEAL_RETRIES = 4,
  FAIR_TICKS = 61, /* every so many jobs, look at the oldest work first */
};

/* A deque's circular array. Old arrays stay on the `prev` chain until
 * destroy: a thief may still be reading one after the owner has grown. */
struct ring {
  int64_t cap; /* a power of two */
  struct ring *prev;
  _Atomic(weft__job *) slot[];
};

struct pool;

struct worker {
  /* Written by thieves (CAS) and by the owner taking its last job. */
  _Alignas(WEFT__CACHELINE) _Atomic int64_t top;
  /* Written only by the owner, read by thieves. */
  _Alignas(WEFT__CACHELINE) _Atomic int64_t bottom;
  _Atomic(struct ring *) ring;
  /* Owner's own line: `busy` is written per job and read only by stats. */
  _Alignas(WEFT__CACHELINE) atomic_int busy;
  uint64_t rng;
  unsigned tick; /* jobs taken, for the fairness check */
  struct pool *pool;
  pthread_t thread;
  /* Under pool->sleep_mu. */
  pthread_cond_t cv;
  int idle_pos;  /* index in pool->idle, or -1 */
  bool notified; /* a waker took us off the idle list and counted us searching */
};

struct pool {
  /* Pushed by every submitter, exchanged by takers. */
  _Alignas(WEFT__CACHELINE) _Atomic(weft__job *) inj;
  /* Changes whenever a worker starts or stops searching. */
  _Alignas(WEFT__CACHELINE) atomic_int nsearching;
  /* Read on every submit, written only when a worker parks or unparks. */
  _Alignas(WEFT__CACHELINE) atomic_int nidle; /* == idle_n, readable unlocked */
  atomic_bool stop;                           /* destroy: workers exit */
  pthread_mutex_t sleep_mu;                   /* guards idle, idle_n, w->cv/idle_pos/notified */
  int idle_n;
  struct worker **idle; /* parked (or about to park) workers, a stack */
  int n;
  int started; /* threads created */
  struct worker *w;
  void *raw_pool, *raw_w; /* what weft__calloc returned for the aligned pool and w */
  weft_executor *ex;
};

/* The worker the calling thread is, if it is a pool worker. */
static _Thread_local struct worker *tls_self;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

static uint64_t next_rand(struct worker *w) {
  /* xorshift64*: victim choice only. */
  uint64_t x = w->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  w->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* ------------------------------------------------------------------------ */
/* Chase-Lev deque                                                          */
/* ------------------------------------------------------------------------ */

static struct ring *ring_new(int64_t cap) {
  if ((uint64_t)cap > (SIZE_MAX - sizeof(struct ring)) / sizeof(_Atomic(weft__job *)))
    return NULL;
  struct ring *r = weft__malloc(sizeof *r + (size_t)cap * sizeof r->slot[0]);
  if (!r) return NULL;
  r->cap = cap;
  r->prev = NULL;
  return r;
}

/* Owner only: a ring twice as large holding the jobs [t, b). */
static struct ring *ring_grow(struct worker *w, struct ring *old, int64_t t, int64_t b) {
  if (old->cap > INT64_MAX / 2) return NULL;
  struct ring *r = ring_new(old->cap * 2);
  if (!r) return NULL;
  for (int64_t i = t; i < b; i++)
    atomic_store_explicit(&r->slot[i & (r->cap - 1)],
                          atomic_load_explicit(&old->slot[i & (old->cap - 1)],
                                               memory_order_relaxed),
                          memory_order_relaxed);
  r->prev = old;
  /* release: a thief that loads the new ring (acquire) sees the copies. */
  atomic_store_explicit(&w->ring, r, memory_order_release);
  return r;
}

/* Owner only. A caller that next decides whether to wake someone calls
 * publish_sc() in between (see the note). */
static int deque_push(struct worker *w, weft__job *j) {
  int64_t b = atomic_load_explicit(&w->bottom, memory_order_relaxed);
  /* acquire: pairs with a thief's CAS of top, so its read of the slot we are
   * about to reuse has happened. */
  int64_t t = atomic_load_explicit(&w->top, memory_order_acquire);
  struct ring *r = atomic_load_explicit(&w->ring, memory_order_relaxed);
  if (b - t >= r->cap) {
    r = ring_grow(w, r, t, b);
    if (!r) return WEFT_ENOMEM;
  }
  atomic_store_explicit(&r->slot[b & (r->cap - 1)], j, memory_order_relaxed);
  /* release: publishes the slot and the job's fields to a thief that reads
   * this bottom with acquire. */
  atomic_store_explicit(&w->bottom, b + 1, memory_order_release);
  return 0;
}

/* Owner only: stores bottom again, unchanged, with seq_cst. This is the
 * pusher's half of the wake-up Dekker pair: either a parker's seq_cst
 * re-check of bottom comes after it in the total order and sees the pushes,
 * or the pusher's following seq_cst load of nidle sees the parker. One
 * such store after a batch of release pushes is enough. */
static void publish_sc(struct worker *w) {
  atomic_store_explicit(&w->bottom, atomic_load_explicit(&w->bottom, memory_order_relaxed),
                        memory_order_seq_cst);
}

/* Owner only: the newest job, or NULL. */
static weft__job *deque_pop(struct worker *w) {
  int64_t b = atomic_load_explicit(&w->bottom, memory_order_relaxed);
  /* Empty already (top only grows): skip the seq_cst store below, a full
   * fence that would cost more than the rest of an empty pop. */
  if (atomic_load_explicit(&w->top, memory_order_relaxed) >= b) return NULL;
  b--;
  struct ring *r = atomic_load_explicit(&w->ring, memory_order_relaxed);
  /* seq_cst store then seq_cst load: the owner's half of the Dekker pair
   * with deque_steal (the paper's fence). Either a thief sees the smaller
   * bottom, or we see its incremented top. */
  atomic_store_explicit(&w->bottom, b, memory_order_seq_cst);
  int64_t t = atomic_load_explicit(&w->top, memory_order_seq_cst);
  if (t > b) { /* empty */
    atomic_store_explicit(&w->bottom, b + 1, memory_order_release);
    return NULL;
  }
  weft__job *j = atomic_load_explicit(&r->slot[b & (r->cap - 1)], memory_order_relaxed);
  if (t == b) { /* the last job: race the thieves for it on top */
    if (!atomic_compare_exchange_strong_explicit(&w->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
      j = NULL;
    atomic_store_explicit(&w->bottom, b + 1, memory_order_release);
  }
  return j;
}

/* Any thread: 1 and the oldest job in *out, 0 if empty, -1 if another thread
 * won the race for it (try again). */
static int deque_steal(struct worker *w, weft__job **out) {
  int64_t t = atomic_load_explicit(&w->top, memory_order_seq_cst);
  /* seq_cst (thief's half of the Dekker pair in deque_pop); it is also an
   * acquire of bottom, so the slot and the job's fields are visible. */
  int64_t b = atomic_load_explicit(&w->bottom, memory_order_seq_cst);
  if (t >= b) return 0;
  struct ring *r = atomic_load_explicit(&w->ring, memory_order_acquire);
  weft__job *j = atomic_load_explicit(&r->slot[t & (r->cap - 1)], memory_order_relaxed);
  if (!atomic_compare_exchange_strong_explicit(&w->top, &t, t + 1, memory_order_seq_cst,
                                               memory_order_relaxed))
    return -1;
  *out = j;
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Injector                                                                 */
/* ------------------------------------------------------------------------ */

/* Pushes the chain first..last (linked by next). seq_cst: the submitter's
 * half of the wake-up Dekker pair (it reads nidle next); as an RMW it also
 * releases job fields and next to the taker's acquire exchange — every push
 * is an RMW, so they all belong to one release sequence. */
static void inj_push(struct pool *p, weft__job *first, weft__job *last) {
  weft__job *old = atomic_load_explicit(&p->inj, memory_order_relaxed);
  do {
    last->next = old;
  } while (!atomic_compare_exchange_weak_explicit(&p->inj, &old, first, memory_order_seq_cst,
                                                  memory_order_relaxed));
}

static void wake_one(struct pool *p);

/* Takes the whole injector. Returns its oldest job (to run now) and pushes
 * the others onto w's deque, newest first, so w pops them oldest first. */
static weft__job *take_injector(struct pool *p, struct worker *w) {
  /* A plain load first: do not take the line exclusively when it is empty. */
  if (!atomic_load_explicit(&p->inj, memory_order_relaxed)) return NULL;
  weft__job *j = atomic_exchange_explicit(&p->inj, NULL, memory_order_acquire);
  bool moved = false;
  while (j && j->next) {
    weft__job *next = j->next;
    if (deque_push(w, j) != 0) {
      /* Cannot grow: give back all but the oldest (rare; no memory needed). */
      weft__job *last = j;
      while (last->next->next) last = last->next;
      weft__job *oldest = last->next;
      last->next = NULL;
      inj_push(p, j, last);
      j = oldest;
      moved = true;
      break;
    }
    moved = true;
    j = next;
  }
  if (moved) {
    publish_sc(w);
    wake_one(p);
  }
  return j;
}

/* ------------------------------------------------------------------------ */
/* Sleeping and waking                                                      */
/* ------------------------------------------------------------------------ */

/* Any queue non-empty? seq_cst loads: the re-checking half of the Dekker
 * pairs described in the note. */
static bool work_visible(struct pool *p) {
  if (atomic_load_explicit(&p->inj, memory_order_seq_cst)) return true;
  for (int i = 0; i < p->n; i++) {
    struct worker *v = &p->w[i];
    int64_t t = atomic_load_explicit(&v->top, memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&v->bottom, memory_order_seq_cst);
    if (b > t) return true;
  }
  return false;
}

/* Wakes one parked worker if some are parked and none is searching. Called
 * after making work visible with a seq_cst operation. */
static void wake_one(struct pool *p) {
  /* nidle first: it changes rarely, so on a busy pool this load hits in
   * the cache and the submit costs nothing more. */
  if (atomic_load_explicit(&p->nidle, memory_order_seq_cst) == 0) return;
  if (atomic_load_explicit(&p->nsearching, memory_order_seq_cst) != 0) return;
  int zero = 0;
  /* Count the worker we are about to wake as searching right away, so that
   * concurrent submitters do not wake a second one. */
  if (!atomic_compare_exchange_strong_explicit(&p->nsearching, &zero, 1, memory_order_seq_cst,
                                               memory_order_seq_cst))
    return;
  pthread_mutex_lock(&p->sleep_mu);
  if (p->idle_n == 0) {
    /* Everybody got up meanwhile. Drop the count while holding the lock: a
     * submitter that saw it and did not wake anyone pushed before this, and
     * any worker that parks later registers under this lock after it, so its
     * re-check sees that job. */
    atomic_fetch_sub_explicit(&p->nsearching, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&p->sleep_mu);
    return;
  }
  struct worker *w = p->idle[--p->idle_n];
  w->idle_pos = -1;
  w->notified = true;
  atomic_store_explicit(&p->nidle, p->idle_n, memory_order_seq_cst);
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&p->sleep_mu);
}

/* Under sleep_mu. */
static void idle_remove(struct pool *p, struct worker *w) {
  int i = w->idle_pos;
  WEFT__ASSERT(i >= 0 && i < p->idle_n && p->idle[i] == w);
  struct worker *last = p->idle[--p->idle_n];
  p->idle[i] = last;
  last->idle_pos = i;
  w->idle_pos = -1;
  atomic_store_explicit(&p->nidle, p->idle_n, memory_order_seq_cst);
}

/* Called by a searcher that found nothing. Parks until woken. Returns true
 * with the caller counted as searching again, false if the pool stops. */
static bool park(struct pool *p, struct worker *w) {
  pthread_mutex_lock(&p->sleep_mu);
  w->notified = false;
  w->idle_pos = p->idle_n;
  p->idle[p->idle_n++] = w;
  atomic_store_explicit(&p->nidle, p->idle_n, memory_order_seq_cst);
  pthread_mutex_unlock(&p->sleep_mu);

  /* Registered first, then stop counting, then re-check: see the note. */
  atomic_fetch_sub_explicit(&p->nsearching, 1, memory_order_seq_cst);
  bool stop = atomic_load_explicit(&p->stop, memory_order_seq_cst);
  bool again = stop || work_visible(p);

  pthread_mutex_lock(&p->sleep_mu);
  if (!again) {
    /* stop is set before destroy takes sleep_mu to signal us, so reading it
     * under the lock cannot miss it. */
    while (!w->notified && !(stop = atomic_load_explicit(&p->stop, memory_order_relaxed)))
      weft__cond_wait(&w->cv, &p->sleep_mu, WEFT_FOREVER);
  }
  bool counted = w->notified;
  if (!counted) idle_remove(p, w);
  pthread_mutex_unlock(&p->sleep_mu);
  if (stop) return false;
  if (!counted) atomic_fetch_add_explicit(&p->nsearching, 1, memory_order_seq_cst);
  return true;
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                  */
/* ------------------------------------------------------------------------ */

static weft__job *steal_any(struct pool *p, struct worker *self) {
  int n = p->n;
  if (n < 2) return NULL;
  int start = (int)(next_rand(self) % (uint64_t)n);
  for (int i = 0; i < n; i++) {
    struct worker *v = &p->w[(start + i) % n];
    if (v == self) continue;
    weft__job *j;
    for (int k = 0; k < STEAL_RETRIES; k++) {
      int rc = deque_steal(v, &j);
      if (rc > 0) return j;
      if (rc == 0) break;
      cpu_relax();
    }
  }
  return NULL;
}

/* The searching phase: bounded, then the caller parks. */
static weft__job *search(struct pool *p, struct worker *w) {
  for (int round = 0; round < SPIN_PAUSE + SPIN_YIELD; round++) {
    if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
    weft__job *j = take_injector(p, w);
    if (!j) j = steal_any(p, w);
    if (j) return j;
    if (round < SPIN_PAUSE)
      for (int k = 0; k < PAUSES; k++) cpu_relax();
    else
      sched_yield(); /* let a descheduled submitter run on a busy machine */
  }
  return NULL;
}

static void run_job(struct pool *p, struct worker *w, weft__job *j) {
  atomic_store_explicit(&w->busy, 1, memory_order_relaxed);
  /* relaxed: no data travels with the flag. A job taken before the flag
   * shows was taken before the shutdown, and runs. */
  if (WEFT__UNLIKELY(atomic_load_explicit(&p->ex->cancelling, memory_order_relaxed)))
    weft__job_cancel(j);
  else
    weft__job_run(j);
  atomic_store_explicit(&w->busy, 0, memory_order_relaxed);
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct pool *p = w->pool;
  tls_self = w;
  for (;;) {
    weft__job *j = NULL;
    /* Fairness: LIFO alone would let a task that keeps submitting children
     * starve the injector and the oldest jobs of its own deque (forever, on
     * a one-worker pool). Now and then take the oldest work first. */
    if (WEFT__UNLIKELY(++w->tick % FAIR_TICKS == 0)) {
      j = take_injector(p, w);
      if (!j) deque_steal(w, &j); /* our own top: the oldest local job */
    }
    if (!j) j = deque_pop(w);
    if (!j) j = take_injector(p, w);
    if (!j) {
      /* At most half the pool spins at once; the others go straight to the
       * re-check in park. A woken worker always searches. */
      int before = atomic_fetch_add_explicit(&p->nsearching, 1, memory_order_seq_cst);
      bool spin = before == 0 || 2 * before < p->n;
      while (!(j = spin ? search(p, w) : NULL)) {
        if (!park(p, w)) return NULL;
        spin = true;
      }
      /* Found work: stop searching. The last searcher to stop looks again and
       * wakes a helper if work remains (a submitter may have counted on it). */
      if (atomic_fetch_sub_explicit(&p->nsearching, 1, memory_order_seq_cst) == 1 &&
          work_visible(p))
        wake_one(p);
    }
    run_job(p, w, j);
  }
}

/* ------------------------------------------------------------------------ */
/* Backend interface                                                        */
/* ------------------------------------------------------------------------ */

static void *alloc_aligned(size_t size, void **raw) {
  if (size > SIZE_MAX - WEFT__CACHELINE) return NULL;
  void *r = weft__calloc(1, size + WEFT__CACHELINE);
  if (!r) return NULL;
  *raw = r;
  uintptr_t a = ((uintptr_t)r + WEFT__CACHELINE - 1) & ~(uintptr_t)(WEFT__CACHELINE - 1);
  return (void *)a;
}

/* Stops and joins the first `started` workers. */
static void stop_workers(struct pool *p) {
  atomic_store_explicit(&p->stop, true, memory_order_seq_cst);
  pthread_mutex_lock(&p->sleep_mu);
  for (int i = 0; i < p->started; i++) pthread_cond_signal(&p->w[i].cv);
  pthread_mutex_unlock(&p->sleep_mu);
  for (int i = 0; i < p->started; i++) pthread_join(p->w[i].thread, NULL);
  p->started = 0;
}

/* Frees everything; `ncv` workers have an initialised cv. */
static void free_pool(struct pool *p, int ncv) {
  for (int i = 0; i < p->n; i++) {
    struct ring *r = atomic_load_explicit(&p->w[i].ring, memory_order_relaxed);
    while (r) {
      struct ring *prev = r->prev;
      weft__free(r);
      r = prev;
    }
    if (i < ncv) pthread_cond_destroy(&p->w[i].cv);
  }
  pthread_mutex_destroy(&p->sleep_mu);
  weft__free(p->idle);
  weft__free(p->raw_w);
  weft__free(p->raw_pool);
}

static int pool_init(weft_executor *ex) {
  int n = ex->workers;
  if (n < 1) return WEFT_EINVAL;
  if ((size_t)n > SIZE_MAX / sizeof(struct worker) - 1) return WEFT_ENOMEM;

  void *raw_pool = NULL;
  struct pool *p = alloc_aligned(sizeof *p, &raw_pool);
  if (!p) return WEFT_ENOMEM;
  p->raw_pool = raw_pool;
  p->n = n;
  p->ex = ex;
  atomic_init(&p->inj, NULL);
  atomic_init(&p->nsearching, 0);
  atomic_init(&p->nidle, 0);
  atomic_init(&p->stop, false);
  int rc = pthread_mutex_init(&p->sleep_mu, NULL);
  if (rc) {
    weft__free(raw_pool);
    return WEFT_ENOMEM;
  }
  p->w = alloc_aligned((size_t)n * sizeof(struct worker), &p->raw_w);
  p->idle = weft__calloc((size_t)n, sizeof *p->idle);
  int ncv = 0;
  if (!p->w || !p->idle) goto nomem;
  for (int i = 0; i < n; i++) {
    struct worker *w = &p->w[i];
    atomic_init(&w->top, 0);
    atomic_init(&w->bottom, 0);
    atomic_init(&w->busy, 0);
    atomic_init(&w->ring, ring_new(RING_MIN));
    w->pool = p;
    w->idle_pos = -1;
    /* Any nonzero seed; distinct per worker. */
    w->rng = ((uint64_t)(uintptr_t)w * 0x9E3779B97F4A7C15ULL) | 1;
    if (!atomic_load_explicit(&w->ring, memory_order_relaxed)) goto nomem;
    if (weft__cond_init(&w->cv) != 0) goto nomem;
    ncv++;
  }
  ex->impl = p;

  /* Workers start with every asynchronous signal blocked, so that signals go
   * to the application's threads; faults still reach their handlers. */
  sigset_t all, old;
  sigfillset(&all);
  sigdelset(&all, SIGSEGV);
  sigdelset(&all, SIGBUS);
  sigdelset(&all, SIGFPE);
  sigdelset(&all, SIGILL);
  sigdelset(&all, SIGTRAP);
  sigdelset(&all, SIGABRT);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = 0;
  for (int i = 0; i < n && !rc; i++) {
    rc = pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i]);
    if (!rc) p->started++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc) {
    stop_workers(p);
    free_pool(p, ncv);
    ex->impl = NULL;
    return rc == ENOMEM ? WEFT_ENOMEM : WEFT_EAGAIN;
  }
  return 0;

nomem:
  if (p->w) free_pool(p, ncv);
  else {
    pthread_mutex_destroy(&p->sleep_mu);
    weft__free(p->idle);
    weft__free(raw_pool);
  }
  return WEFT_ENOMEM;
}

static int pool_submit(weft_executor *ex, weft__job *job) {
  struct pool *p = ex->impl;
  struct worker *me = tls_self;
  /* From one of our own tasks: the worker's deque. If it cannot grow, the
   * injector needs no memory. */
  if (me && me->pool == p && deque_push(me, job) == 0) {
    publish_sc(me);
    wake_one(p);
    return 0;
  }
  inj_push(p, job, job);
  wake_one(p);
  return 0;
}

static int pool_shutdown(weft_executor *ex, int flags, int64_t deadline) {
  struct pool *p = ex->impl;
  if (flags & WEFT_SHUTDOWN_CANCEL) {
    /* The generic layer has set ex->cancelling: from here on, workers cancel
     * whatever they take. That covers jobs a worker holds between taking the
     * injector and pushing onto its deque, and submits that raced with close. */
    weft__job *j = atomic_exchange_explicit(&p->inj, NULL, memory_order_acquire);
    weft__job *fifo = NULL; /* cancel in submission order: reverse the list */
    while (j) {
      weft__job *next = j->next;
      j->next = fifo;
      fifo = j;
      j = next;
    }
    while (fifo) {
      weft__job *next = fifo->next; /* the job is freed by cancel */
      weft__job_cancel(fifo);
      fifo = next;
    }
    /* Stealing is safe from any thread, so empty every deque from the top,
     * even those whose owner is blocked in a task. */
    for (int i = 0; i < p->n; i++) {
      int rc;
      while ((rc = deque_steal(&p->w[i], &j)) != 0)
        if (rc > 0) weft__job_cancel(j);
    }
  }
  return weft__executor_wait_idle(ex, deadline);
}

static void pool_destroy(weft_executor *ex) {
  struct pool *p = ex->impl;
  if (!p) return;
  stop_workers(p);
  free_pool(p, p->n);
  ex->impl = NULL;
}

static void pool_stats(weft_executor *ex, weft_executor_stats *st) {
  struct pool *p = ex->impl;
  int busy = 0;
  for (int i = 0; i < p->n; i++) busy += atomic_load_explicit(&p->w[i].busy, memory_order_relaxed);
  /* outstanding counts queued and running jobs; running ones are busy. */
  size_t out = weft__executor_outstanding(ex);
  st->size = p->n;
  st->busy = busy;
  st->queued = out > (size_t)busy ? out - (size_t)busy : 0;
}

const weft__backend weft__backend_thread_pool = {
    .name = "thread_pool",
    .sizing = WEFT__SIZE_CPU,
    .init = pool_init,
    .submit = pool_submit,
    .shutdown = pool_shutdown,
    .destroy = pool_destroy,
    .stats = pool_stats,
};
