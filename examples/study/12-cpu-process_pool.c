/*
 * 12-cpu-process_pool: a pool of `cores` worker processes (the default size)
 * computes the 21 values in parallel; numbers and results travel as bytes.
 */
#include "study.h"

int main(int argc, char **argv) {
  study s;
  study_begin_cpu(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, "process_pool", NULL);
  if (rc == 0)
    rc = weft_executor_map(ex, study_fib_task, s.numbers, sizeof s.numbers[0], STUDY_NUMBERS,
                           s.fibs, sizeof s.fibs[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  return study_end_fibs(&s, rc);
}
