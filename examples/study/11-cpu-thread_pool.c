/*
 * 11-cpu-thread_pool: a pool of min(32, cores + 4) threads, the IO-sized
 * pool the study used here too: more threads than cores buys nothing.
 */
#include "study.h"

int main(int argc, char **argv) {
  study s;
  study_begin_cpu(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, "thread_pool",
                                &(weft_executor_opts){.workers = weft_io_workers()});
  if (rc == 0)
    rc = weft_executor_map(ex, study_fib_task, s.numbers, sizeof s.numbers[0], STUDY_NUMBERS,
                           s.fibs, sizeof s.fibs[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  return study_end_fibs(&s, rc);
}
