/*
 * thread.c — one new thread per job, joined by the executor.
 *
 * The study's "threads" cases: no reuse, so the cost of creating a thread is
 * part of what is measured. `workers` > 0 caps the threads alive at once;
 * jobs beyond the cap wait in a FIFO and each finishing thread starts a new
 * thread for the next one (still one thread per job).
 *
 * Finished threads put themselves on a `done` list; submit and destroy join
 * them, so handles never pile up. Destroy waits until no thread is alive
 * (`live` == 0, signalled on exit_cv) before joining the rest and freeing.
 * One lock (mu) guards everything here; it is never held while a job runs
 * or while a thread is being created. A thread is counted in `live` before
 * pthread_create (a reservation), so the cap holds without the lock.
 */
#include "internal.h"

typedef struct th_node th_node;
typedef struct thread_impl thread_impl;

struct th_node {
  pthread_t tid;
  th_node *next;
  weft__job *job;
  thread_impl *im;
};

struct thread_impl {
  pthread_mutex_t mu;
  pthread_cond_t exit_cv;
  int live;                       /* threads started and not yet exited */
  weft__job *qhead, *qtail;       /* jobs waiting for the cap */
  size_t queued;
  th_node *done;                  /* exited (or exiting) threads to join */
};

static void *thread_main(void *arg);

/* Starts a thread for job. The caller has already counted it in `live`;
 * pthread_create runs outside the lock (it is slow, and an exiting thread
 * must be able to take the lock to be joined). 0, WEFT_EAGAIN, WEFT_ENOMEM. */
static int start_thread(thread_impl *im, weft__job *job) {
  th_node *n = weft__malloc(sizeof *n);
  if (!n) return WEFT_ENOMEM;
  n->job = job;
  n->im = im;
  n->next = NULL;
  int rc = pthread_create(&n->tid, NULL, thread_main, n);
  if (rc) {
    weft__free(n);
    return rc == ENOMEM ? WEFT_ENOMEM : WEFT_EAGAIN;
  }
  return 0;
}

/* Gives back a reservation in `live`; mu held. */
static void unreserve_locked(thread_impl *im) {
  if (--im->live == 0) pthread_cond_broadcast(&im->exit_cv);
}

static weft__job *pop_locked(thread_impl *im) {
  weft__job *job = im->qhead;
  if (job) {
    im->qhead = job->next;
    if (!im->qhead) im->qtail = NULL;
    im->queued--;
  }
  return job;
}

static void join_list(th_node *n) {
  while (n) {
    th_node *next = n->next;
    pthread_join(n->tid, NULL);
    weft__free(n);
    n = next;
  }
}

/* Removes n from the done list if it is still there; mu held. */
static bool unlist_locked(thread_impl *im, th_node *n) {
  for (th_node **pp = &im->done; *pp; pp = &(*pp)->next) {
    if (*pp == n) {
      *pp = n->next;
      return true;
    }
  }
  return false;
}

/*
 * Invariant: every thread counted in `live` either will still look at the
 * queue under mu before it stops counting, or has handed its slot to a new
 * thread that will. So a job queued because the cap was reached always has
 * a thread to take it. A finishing thread therefore either finds the queue
 * empty and leaves `live` in the same critical section, or hands its slot to
 * the next job's new thread and, once that thread exists, never touches the
 * executor again (destroy may free it as soon as the new thread is done).
 */
static void *thread_main(void *arg) {
  th_node *self = arg;
  thread_impl *im = self->im;
  weft__job *job = self->job;
  bool listed = false; /* self is on (or was taken from) the done list */
  for (;;) {
    weft__job_run(job);
    pthread_mutex_lock(&im->mu);
    job = pop_locked(im);
    if (!listed) {
      self->next = im->done;
      im->done = self;
      listed = true;
    }
    if (!job) {
      unreserve_locked(im);
      pthread_mutex_unlock(&im->mu);
      return NULL;
    }
    pthread_mutex_unlock(&im->mu);
    /* Our slot in `live` now belongs to the job's thread. */
    if (start_thread(im, job) == 0) return NULL;
    /* The system refused a thread: run the job here rather than lose it.
     * We still hold the slot, so `im` is alive. If a reaper already took our
     * handle, it will join us when we are done (a rare, slow path). */
    pthread_mutex_lock(&im->mu);
    if (unlist_locked(im, self)) listed = false;
    pthread_mutex_unlock(&im->mu);
  }
}

static int thread_init(weft_executor *ex) {
  thread_impl *im = weft__calloc(1, sizeof *im);
  if (!im) return WEFT_ENOMEM;
  if (pthread_mutex_init(&im->mu, NULL) != 0) {
    weft__free(im);
    return WEFT_ENOMEM;
  }
  if (weft__cond_init(&im->exit_cv) != 0) {
    pthread_mutex_destroy(&im->mu);
    weft__free(im);
    return WEFT_ENOMEM;
  }
  ex->impl = im;
  return 0;
}

static int thread_submit(weft_executor *ex, weft__job *job) {
  thread_impl *im = ex->impl;
  pthread_mutex_lock(&im->mu);
  th_node *reap = im->done;
  im->done = NULL;
  bool queue = ex->workers > 0 && im->live >= ex->workers;
  if (queue) {
    job->next = NULL;
    if (im->qtail) im->qtail->next = job;
    else im->qhead = job;
    im->qtail = job;
    im->queued++;
  } else {
    im->live++;
  }
  pthread_mutex_unlock(&im->mu);
  join_list(reap);
  if (queue) return 0;
  int rc = start_thread(im, job);
  if (rc) {
    /* Jobs queued behind our reservation would wait for a thread that will
     * never exist: if no thread is left to take them, they fail too. */
    pthread_mutex_lock(&im->mu);
    unreserve_locked(im);
    weft__job *orphans = NULL;
    if (im->live == 0) {
      orphans = im->qhead;
      im->qhead = im->qtail = NULL;
      im->queued = 0;
    }
    pthread_mutex_unlock(&im->mu);
    while (orphans) {
      weft__job *next = orphans->next;
      weft__job_abort(orphans, rc);
      orphans = next;
    }
  }
  return rc;
}

static int thread_shutdown(weft_executor *ex, int flags, int64_t deadline) {
  thread_impl *im = ex->impl;
  if (flags == WEFT_SHUTDOWN_CANCEL) {
    pthread_mutex_lock(&im->mu);
    weft__job *q = im->qhead;
    im->qhead = im->qtail = NULL;
    im->queued = 0;
    pthread_mutex_unlock(&im->mu);
    while (q) {
      weft__job *next = q->next;
      weft__job_cancel(q);
      q = next;
    }
  }
  return weft__executor_wait_idle(ex, deadline);
}

static void thread_destroy(weft_executor *ex) {
  thread_impl *im = ex->impl;
  pthread_mutex_lock(&im->mu);
  while (im->live > 0) weft__cond_wait(&im->exit_cv, &im->mu, WEFT_FOREVER);
  th_node *reap = im->done;
  im->done = NULL;
  pthread_mutex_unlock(&im->mu);
  join_list(reap);
  pthread_cond_destroy(&im->exit_cv);
  pthread_mutex_destroy(&im->mu);
  weft__free(im);
}

static void thread_stats(weft_executor *ex, weft_executor_stats *st) {
  thread_impl *im = ex->impl;
  pthread_mutex_lock(&im->mu);
  st->size = im->live;
  st->busy = im->live;
  st->queued = im->queued;
  pthread_mutex_unlock(&im->mu);
}

const weft__backend weft__backend_thread = {
    .name = "thread",
    .sizing = WEFT__SIZE_UNLIMITED,
    .init = thread_init,
    .submit = thread_submit,
    .shutdown = thread_shutdown,
    .destroy = thread_destroy,
    .stats = thread_stats,
};
