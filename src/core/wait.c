/* wait.c — the one timed wait. Every blocking call in weft ends up here, with
 * an absolute deadline on weft_now()'s clock (CLOCK_MONOTONIC, so wall-clock
 * jumps do not shorten or stretch waits). */
#include "internal.h"

#include <errno.h>
#include <time.h>

int weft__cond_init(pthread_cond_t *c) {
  pthread_condattr_t a;
  int rc = pthread_condattr_init(&a);
  if (rc) return -rc;
  rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  if (!rc) rc = pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
  return -rc;
}

int weft__cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline) {
  if (deadline < 0) {
    pthread_cond_wait(c, m);
    return 0;
  }
  /* weft_now() is CLOCK_MONOTONIC ms + 1; deadline d means clock >= (d-1) ms. */
  int64_t ms = deadline - 1;
  if (ms < 0) ms = 0;
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  int rc = pthread_cond_timedwait(c, m, &ts);
  return rc == ETIMEDOUT ? WEFT_ETIMEDOUT : 0;
}
