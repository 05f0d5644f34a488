/*
 * event.c — a flag that threads wait for.
 *
 * Design: a mutex, one condition variable, the flag and a generation count.
 * set() bumps the generation whenever it turns the flag on, and a waiter
 * returns when the flag is on OR the generation has moved since it started
 * waiting. So a set() followed at once by clear() still releases every thread
 * that was waiting at the time of the set(): the waiters need not win the
 * race for the mutex against clear() to see the set they were woken for.
 *
 * set() broadcasts only when somebody sleeps (a count kept under the mutex),
 * and before unlocking, so that a woken thread may destroy the event as soon
 * as it has returned.
 */
#include "internal.h"

struct weft_event {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool set;
  uint64_t gen;   /* times the flag went from clear to set */
  size_t waiters; /* threads asleep on cv */
};

int weft_event_create(weft_event **out) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  weft_event *ev = weft__malloc(sizeof *ev);
  if (!ev) return WEFT_ENOMEM;
  ev->set = false;
  ev->gen = 0;
  ev->waiters = 0;
  /* pthreads can refuse these only for lack of resources. */
  if (pthread_mutex_init(&ev->mu, NULL) != 0) {
    weft__free(ev);
    return WEFT_ENOMEM;
  }
  if (weft__cond_init(&ev->cv) != 0) {
    pthread_mutex_destroy(&ev->mu);
    weft__free(ev);
    return WEFT_ENOMEM;
  }
  *out = ev;
  return 0;
}

int weft_event_set(weft_event *ev) {
  if (!ev) return WEFT_EINVAL;
  pthread_mutex_lock(&ev->mu);
  if (!ev->set) {
    ev->set = true;
    ev->gen++;
    if (ev->waiters) pthread_cond_broadcast(&ev->cv);
  }
  pthread_mutex_unlock(&ev->mu);
  return 0;
}

int weft_event_clear(weft_event *ev) {
  if (!ev) return WEFT_EINVAL;
  pthread_mutex_lock(&ev->mu);
  ev->set = false;
  pthread_mutex_unlock(&ev->mu);
  return 0;
}

int weft_event_is_set(weft_event *ev) {
  if (!ev) return 0;
  pthread_mutex_lock(&ev->mu);
  int v = ev->set;
  pthread_mutex_unlock(&ev->mu);
  return v;
}

int weft_event_wait(weft_event *ev, int64_t deadline) {
  if (!ev) return WEFT_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&ev->mu);
  uint64_t gen = ev->gen;
  while (!ev->set && ev->gen == gen) {
    /* Deadline 0 and past deadlines try once: no sleep, no syscall. */
    if (weft__deadline_passed(deadline)) {
      rc = WEFT_ETIMEDOUT;
      break;
    }
    ev->waiters++;
    int w = weft__cond_wait(&ev->cv, &ev->mu, deadline);
    ev->waiters--;
    /* A set that raced with the timeout still counts. */
    if (w == WEFT_ETIMEDOUT && !ev->set && ev->gen == gen) {
      rc = WEFT_ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&ev->mu);
  return rc;
}

void weft_event_destroy(weft_event *ev) {
  if (!ev) return;
  pthread_cond_destroy(&ev->cv);
  pthread_mutex_destroy(&ev->mu);
  weft__free(ev);
}

/* For tests: threads asleep in weft_event_wait now (under the lock, so a
 * thread counted here has read the generation it waits to see change). */
size_t weft__event_waiters(weft_event *ev) {
  pthread_mutex_lock(&ev->mu);
  size_t n = ev->waiters;
  pthread_mutex_unlock(&ev->mu);
  return n;
}
