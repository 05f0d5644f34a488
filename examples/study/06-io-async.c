/*
 * 06-io-async: all 30 fetches as concurrent tasks on one event loop. The
 * "async" executor runs every map item as a coroutine task on its loop's
 * thread; inside a task weft_http_get is asynchronous, so the 30 requests
 * wait together and the wall time is close to the slowest site alone.
 */
#include "study.h"

int main(int argc, char **argv) {
  study s;
  study_begin(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, "async", NULL);
  if (rc == 0)
    rc = weft_executor_map(ex, study_fetch_task, s.urls, sizeof s.urls[0], STUDY_URLS, s.bytes,
                           sizeof s.bytes[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  return study_end_fetches(&s, rc, STUDY_URLS);
}
