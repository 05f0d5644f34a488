/*
 * 19-cpu-distributed: the 21 values computed by the worker ranks of an MPI
 * job, through the "mpi" executor; numbers and results travel as messages.
 * The same map as 12-cpu-process_pool; the ranks could be on other machines.
 * Run directly, it starts itself under mpirun with WEFT_STUDY_RANKS ranks
 * (default: cores + 1, so `cores` ranks compute and rank 0 submits).
 */
#define _POSIX_C_SOURCE 200809L /* setenv, execv */
#include "study.h"

int main(int argc, char **argv) {
  study s;
  study_begin_cpu(&s, argc, argv); /* options checked before any launch */
  const char *r = getenv("WEFT_STUDY_RANKS");
  int ranks = r && atoi(r) >= 2 ? atoi(r) : weft_cpu_count() + 1;
  study_mpi_relaunch(STUDY_MPIRUN, ranks, argv);
  int rc = weft_mpi_init(&argc, &argv); /* worker ranks serve, then exit */
  weft_executor *ex = NULL;
  if (rc == 0) rc = weft_executor_create(&ex, "mpi", NULL);
  if (rc == 0)
    rc = weft_executor_map(ex, study_fib_task, s.numbers, sizeof s.numbers[0], STUDY_NUMBERS,
                           s.fibs, sizeof s.fibs[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  weft_mpi_finalize();
  return study_end_fibs(&s, rc);
}
