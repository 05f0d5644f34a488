/*
 * 13-io+cpu-async: the first 10 URLS, one task each on one event loop (the
 * "async" executor): an asynchronous fetch, then fib(32) right on the loop.
 * The fetches wait together; the ten fib(32) hold the loop one after another.
 */
#include "study.h"

static int fetch_then_fib(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  study_pair r = {0};
  int rc = study_get(weft_http_get, in, &r.bytes, out); /* the task waits, others run */
  if (rc == 0) r.second = study_fib(study_fib_n);      /* nothing else runs meanwhile */
  return rc ? rc : weft_out_set(out, &r, sizeof r);
}

int main(int argc, char **argv) {
  study s;
  study_begin(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, "async", NULL);
  if (rc == 0)
    rc = weft_executor_map(ex, fetch_then_fib, s.urls, sizeof s.urls[0], 10, s.pairs,
                           sizeof s.pairs[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  return study_end_io_cpu(&s, rc, 10);
}
