/*
 * sem.c — a counting semaphore.
 *
 * Design: the count under a mutex, one condition variable, and a count of
 * sleepers so that post() signals only when somebody waits.
 *
 * Why no lock-free fast path: a common use is "wait for the one post, then
 * destroy the semaphore". With an atomic count, a poster would publish the
 * unit and then still look at the waiter count or lock the mutex to wake a
 * sleeper; a waiter that took the unit in between could already have freed
 * the semaphore under it. Here post() changes the count and signals while
 * holding the mutex, and a waiter cannot see the unit before post() has
 * unlocked, after which post() touches nothing (POSIX lets a mutex be
 * destroyed once unlocked). The uncontended cost is one lock/unlock pair.
 *
 * One signal per unit is enough: a waiter re-checks the count under the mutex
 * even after a timeout, so a wake-up that races with a timeout is not lost —
 * the timed-out thread takes the unit itself.
 */
#include "internal.h"

#include <limits.h>

struct weft_sem {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  long count;
  size_t waiters; /* threads asleep on cv */
};

int weft_sem_create(weft_sem **out, long initial) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  if (initial < 0) return WEFT_EINVAL;
  weft_sem *s = weft__malloc(sizeof *s);
  if (!s) return WEFT_ENOMEM;
  s->count = initial;
  s->waiters = 0;
  /* pthreads can refuse these only for lack of resources. */
  if (pthread_mutex_init(&s->mu, NULL) != 0) {
    weft__free(s);
    return WEFT_ENOMEM;
  }
  if (weft__cond_init(&s->cv) != 0) {
    pthread_mutex_destroy(&s->mu);
    weft__free(s);
    return WEFT_ENOMEM;
  }
  *out = s;
  return 0;
}

int weft_sem_post(weft_sem *s) {
  if (!s) return WEFT_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&s->mu);
  if (s->count == LONG_MAX) {
    rc = WEFT_EOVERFLOW;
  } else {
    s->count++;
    if (s->waiters) pthread_cond_signal(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int weft_sem_wait(weft_sem *s, int64_t deadline) {
  if (!s) return WEFT_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&s->mu);
  while (s->count == 0) {
    /* Deadline 0 and past deadlines try once: no sleep, no syscall. */
    if (weft__deadline_passed(deadline)) {
      rc = WEFT_ETIMEDOUT;
      break;
    }
    s->waiters++;
    int w = weft__cond_wait(&s->cv, &s->mu, deadline);
    s->waiters--;
    if (w == WEFT_ETIMEDOUT && s->count == 0) {
      rc = WEFT_ETIMEDOUT;
      break;
    }
  }
  if (rc == 0) s->count--;
  pthread_mutex_unlock(&s->mu);
  return rc;
}

long weft_sem_value(weft_sem *s) {
  if (!s) return WEFT_EINVAL;
  pthread_mutex_lock(&s->mu);
  long v = s->count;
  pthread_mutex_unlock(&s->mu);
  return v;
}

void weft_sem_destroy(weft_sem *s) {
  if (!s) return;
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  weft__free(s);
}
