/*
 * mpi.c — the "mpi" executor against the process pool, on this machine.
 *
 *   fib    the study's CPU workload (fib over 28..34, three times: 21
 *          values; --base B for B..B+6), sequential on rank 0, then on the mpi executor with 2
 *          worker ranks and on a process_pool of 2 workers. Parallel
 *          efficiency = sequential / (2 x parallel), and the ratio mpi /
 *          process_pool.
 *   tiny   20000 tasks that return their input: per-task overhead (wall /
 *          tasks) with chunksize 1 and with chunksize 256, on both.
 *
 * Run directly it starts itself under mpirun with 3 ranks (rank 0 submits,
 * 2 compute; --oversubscribe --bind-to none, so the 2 workers share this
 * process's CPUs). Rounds alternate the executors; medians are printed,
 * one `bench=mpi ...` line per measurement, then the ratios.
 *
 *   mpi [--repeat R] [--tiny N] [--base B]   (default R = 5, N = 20000, B = 28)
 */
#include <weft.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long fib(long n) { return n <= 2 ? 1 : fib(n - 1) + fib(n - 2); }

static int fib_task(const void *in, size_t size, weft_out *out) {
  (void)size;
  long r = fib(*(const long *)in);
  return weft_out_set(out, &r, sizeof r);
}
WEFT_REGISTER(fib_task);

static int echo_task(const void *in, size_t size, weft_out *out) {
  return weft_out_set(out, in, size);
}
WEFT_REGISTER(echo_task);

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

enum { NUMBERS = 21 };
static long numbers[NUMBERS];
static long want[100];

/* One map of the fib workload on `kind` (NULL: sequential, in this thread).
 * Returns seconds, or < 0 on failure. */
static double run_fib(weft_executor *ex) {
  long res[NUMBERS];
  uint64_t t0 = weft_now_ns();
  if (ex) {
    int rc = weft_executor_map(ex, fib_task, numbers, sizeof numbers[0], NUMBERS, res,
                               sizeof res[0], NULL, weft_deadline_in(600000));
    if (rc) {
      fprintf(stderr, "mpi bench: fib map on %s: %s\n", weft_executor_name(ex), weft_strerror(rc));
      return -1;
    }
  } else {
    for (int i = 0; i < NUMBERS; i++) res[i] = fib(numbers[i]);
  }
  double s = (double)(weft_now_ns() - t0) / 1e9;
  for (int i = 0; i < NUMBERS; i++)
    if (res[i] != want[numbers[i]]) {
      fprintf(stderr, "mpi bench: fib(%ld) = %ld\n", numbers[i], res[i]);
      return -1;
    }
  return s;
}

/* n tiny tasks as one map; returns seconds, or < 0 on failure. */
static double run_tiny(weft_executor *ex, const int *in, int *out, size_t n) {
  uint64_t t0 = weft_now_ns();
  int rc = weft_executor_map(ex, echo_task, in, sizeof in[0], n, out, sizeof out[0], NULL,
                             weft_deadline_in(600000));
  double s = (double)(weft_now_ns() - t0) / 1e9;
  if (rc) {
    fprintf(stderr, "mpi bench: tiny map on %s: %s\n", weft_executor_name(ex), weft_strerror(rc));
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    if (out[i] != in[i]) return -1;
  return s;
}

static weft_executor *make(const char *kind, size_t chunk) {
  weft_executor_opts o = {.workers = 2, .chunksize = chunk};
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, kind, &o);
  if (rc) {
    fprintf(stderr, "mpi bench: create %s: %s\n", kind, weft_strerror(rc));
    exit(1);
  }
  return ex;
}

/* Starts this program again under mpirun with 3 ranks, unless it is there. */
static void relaunch(char **argv) {
  if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK")) return;
  char *args[64];
  int k = 0;
  const char *pre[] = {BENCH_MPIRUN, "-np", "3", "--oversubscribe", "--bind-to", "none"};
  for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) args[k++] = (char *)pre[i];
  for (int i = 0; argv[i] && k < 63; i++) args[k++] = argv[i];
  args[k] = NULL;
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  setenv("OMPI_MCA_mpi_warn_on_fork", "0", 0); /* the process pool forks on rank 0 */
  execv(BENCH_MPIRUN, args);
  fprintf(stderr, "mpi bench: cannot run %s: %s\n", BENCH_MPIRUN, strerror(errno));
  exit(1);
}

int main(int argc, char **argv) {
  int reps = 5, base = 28;
  size_t tiny = 20000;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--repeat") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--tiny") && i + 1 < argc) tiny = (size_t)atol(argv[++i]);
    else if (!strcmp(argv[i], "--base") && i + 1 < argc) base = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: mpi [--repeat R] [--tiny N] [--base B]\n");
      return 2;
    }
  }
  if (reps < 1 || reps > 100 || tiny < 1 || base < 3 || base > 40) {
    fprintf(stderr, "mpi bench: bad --repeat, --tiny or --base\n");
    return 2;
  }
  relaunch(argv);
  /* The process pool's fork server starts before MPI's threads (rank 0). */
  const char *r = getenv("OMPI_COMM_WORLD_RANK");
  if (r && !strcmp(r, "0")) weft_process_init();
  int rc = weft_mpi_init(&argc, &argv); /* worker ranks serve, then exit */
  if (rc) {
    fprintf(stderr, "mpi bench: weft_mpi_init: %s\n", weft_strerror(rc));
    return 1;
  }
  if (weft_mpi_size() != 3) {
    fprintf(stderr, "mpi bench: wants 3 ranks, has %d\n", weft_mpi_size());
    weft_mpi_finalize();
    return 1;
  }
  for (int i = 0; i < NUMBERS; i++) numbers[i] = base + i % 7;
  want[1] = want[2] = 1;
  for (int i = 3; i < 100; i++) want[i] = want[i - 1] + want[i - 2];
  int *in = malloc(tiny * sizeof *in), *out = malloc(tiny * sizeof *out);
  if (!in || !out) return 1;
  for (size_t i = 0; i < tiny; i++) in[i] = (int)i;

  double seq[100], fm[100], fp[100], t1m[100], t1p[100], tcm[100], tcp[100];
  weft_executor *mpi1 = NULL, *pool1 = NULL;
  bool failed = false;
  for (int k = 0; k < reps && !failed; k++) {
    /* Executors made afresh per round and kind (one mpi executor at a
     * time); startup is not timed. */
    seq[k] = run_fib(NULL);
    mpi1 = make("mpi", 1);
    run_tiny(mpi1, in, out, 64); /* ranks awake before timing, as for the pool */
    fm[k] = run_fib(mpi1);
    t1m[k] = run_tiny(mpi1, in, out, tiny);
    weft_executor_destroy(mpi1);
    weft_executor *mc = make("mpi", 256);
    run_tiny(mc, in, out, 64);
    tcm[k] = run_tiny(mc, in, out, tiny);
    weft_executor_destroy(mc);
    pool1 = make("process_pool", 1);
    run_tiny(pool1, in, out, 64); /* workers up before timing */
    fp[k] = run_fib(pool1);
    t1p[k] = run_tiny(pool1, in, out, tiny);
    weft_executor_destroy(pool1);
    weft_executor *pc = make("process_pool", 256);
    run_tiny(pc, in, out, 64);
    tcp[k] = run_tiny(pc, in, out, tiny);
    weft_executor_destroy(pc);
    failed = seq[k] < 0 || fm[k] < 0 || fp[k] < 0 || t1m[k] < 0 || t1p[k] < 0 || tcm[k] < 0 ||
             tcp[k] < 0;
    fprintf(stderr, "  [%d] seq %.3f s  mpi %.3f s  pool %.3f s  tiny/1 mpi %.2f us pool %.2f us"
                    "  tiny/256 mpi %.2f us pool %.2f us\n",
            k + 1, seq[k], fm[k], fp[k], t1m[k] / (double)tiny * 1e6, t1p[k] / (double)tiny * 1e6,
            tcm[k] / (double)tiny * 1e6, tcp[k] / (double)tiny * 1e6);
  }
  free(in);
  free(out);
  if (failed) {
    weft_mpi_finalize();
    return 1;
  }
  double s = median(seq, reps), m = median(fm, reps), p = median(fp, reps);
  double a = median(t1m, reps) / (double)tiny * 1e6, b = median(t1p, reps) / (double)tiny * 1e6;
  double c = median(tcm, reps) / (double)tiny * 1e6, d = median(tcp, reps) / (double)tiny * 1e6;
  printf("bench=mpi work=fib numbers=%d..%d impl=sequential seconds=%.4f\n", base, base + 6, s);
  printf("bench=mpi work=fib impl=mpi workers=2 seconds=%.4f speedup=%.3f efficiency=%.3f\n", m,
         s / m, s / (2 * m));
  printf("bench=mpi work=fib impl=process_pool workers=2 seconds=%.4f speedup=%.3f "
         "efficiency=%.3f\n",
         p, s / p, s / (2 * p));
  printf("bench=mpi work=fib ratio mpi/process_pool time=%.3f\n", m / p);
  printf("bench=mpi work=tiny impl=mpi chunksize=1 tasks=%zu us_per_task=%.2f\n", tiny, a);
  printf("bench=mpi work=tiny impl=process_pool chunksize=1 tasks=%zu us_per_task=%.2f\n", tiny, b);
  printf("bench=mpi work=tiny impl=mpi chunksize=256 tasks=%zu us_per_task=%.3f\n", tiny, c);
  printf("bench=mpi work=tiny impl=process_pool chunksize=256 tasks=%zu us_per_task=%.3f\n", tiny,
         d);
  printf("bench=mpi work=tiny ratio mpi/process_pool chunksize=1 %.3f chunksize=256 %.3f; "
         "mpi chunksize 1/256 %.1f\n",
         a / b, c / d, a / c);
  return weft_mpi_finalize() ? 1 : 0;
}
