/*
 * 16-io+io_blocking-async: the first 20 URLS, one task each on one event loop
 * (the "async" executor): an asynchronous fetch, then a blocking fetch of the
 * same URL right on the loop, which stops every other task while it waits.
 */
#include "study.h"

static int fetch_twice(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  study_pair r = {0};
  size_t again = 0;
  int rc = study_get(weft_http_get, in, &r.bytes, out);              /* others run */
  if (rc == 0) rc = study_get(weft_http_get_blocking, in, &again, out); /* nothing runs */
  r.second = (long)again;
  return rc ? rc : weft_out_set(out, &r, sizeof r);
}

int main(int argc, char **argv) {
  study s;
  study_begin(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, "async", NULL);
  if (rc == 0)
    rc = weft_executor_map(ex, fetch_twice, s.urls, sizeof s.urls[0], 20, s.pairs,
                           sizeof s.pairs[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  return study_end_io_io(&s, rc, 20);
}
