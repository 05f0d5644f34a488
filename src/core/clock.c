/* clock.c — the monotonic clock that every deadline is measured on. */
#include "internal.h"

#include <time.h>

uint64_t weft_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t weft_now(void) {
  /* CLOCK_MONOTONIC counts from boot, so this is > 0; +1 keeps it so even on
   * a clock that starts at 0 (a fresh time namespace), since 0 means "now". */
  return (int64_t)(weft_now_ns() / 1000000u) + 1;
}

int64_t weft_deadline_in(int64_t ms) {
  if (ms < 0) return WEFT_FOREVER;
  /* Round the current time up, so that a wait for `ms` never ends early. */
  int64_t now = (int64_t)((weft_now_ns() + 999999u) / 1000000u) + 1;
  if (ms > INT64_MAX - now) return INT64_MAX;
  return now + ms;
}

bool weft__deadline_passed(int64_t deadline) {
  return deadline >= 0 && weft_now() >= deadline;
}
