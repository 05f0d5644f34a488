/*
 * 07-io-async-sequential: the same event loop and the same asynchronous
 * fetch as 06, but one task awaits each fetch before it starts the next: the
 * loop has nothing else to run while it waits, so the wall time is 01's.
 */
#include "study.h"

/* The one task: fetch every URL in turn. */
static int fetch_each(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  study *s = (study *)in; /* in-process: the task may write the results there */
  for (int i = 0; i < STUDY_URLS; i++) {
    weft_http_response r = {0};
    s->errors[i] = weft_http_get(s->urls[i].url, s->deadline, &r); /* the task awaits it */
    s->bytes[i] = r.body_size;
    weft_http_response_free(&r);
  }
  return 0;
}

int main(int argc, char **argv) {
  study s;
  study_begin(&s, argc, argv);
  weft_loop *loop = NULL;
  weft_future *f = NULL;
  int rc = weft_loop_create(&loop, NULL);
  if (rc == 0) rc = weft_spawn(loop, fetch_each, &s, sizeof s, NULL, &f);
  if (rc == 0) rc = weft_loop_run_until(loop, f, s.deadline);
  if (rc == 0) rc = weft_future_error(f);
  weft_future_release(f);
  weft_loop_destroy(loop);
  return study_end_fetches(&s, rc, STUDY_URLS);
}
