/*
 * lab.h — the lab behind `weft bench` and `weft time`: the study's cases,
 * the measurement (measure.c), the floors (sim.c), the verdicts and
 * conclusions (analysis.c) and the reports (report.c). Built as the static
 * library weft_lab so that tests/lab/test_lab.c can link it.
 *
 * All times are seconds (double), memory KiB.
 */
#ifndef WEFT_LAB_H
#define WEFT_LAB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- the study's 18 cases (shared/spec/study-workload.md) */

enum { LAB_IO, LAB_CPU, LAB_IOCPU, LAB_IOBLOCK, LAB_NGROUPS };
/* The study's 18 cases, and a 19th, cpu-distributed (the mpi executor: C
 * only, built only with MPI; skipped with a note otherwise). */
enum { LAB_NCASES = 19, LAB_CASE_DISTRIBUTED = 18 };
/* How many tasks may run at once in a case's model. */
enum { LAB_SLOTS_ONE, LAB_SLOTS_ALL, LAB_SLOTS_IO_POOL, LAB_SLOTS_CPU_POOL };

typedef struct lab_case {
  const char *num;  /* "01" */
  const char *name; /* "io-sequential"; the binary is "<num>-<name>" */
  int group;        /* LAB_IO ... */
  int slots;        /* LAB_SLOTS_*: the model's concurrency for its main work */
  int cpu_work;     /* 1: the pooled work is fib (CPU), 0: fetches (waiting) */
  int threads;      /* 1: the CPU work runs in threads (serialised by Python's GIL) */
  int after_fetch;  /* 1: each task first does an async fetch (cases 13-18) */
  int n;            /* tasks: 30 URLS, 21 NUMBERS, 10 or 20 for 13-18 */
  int sequential;   /* 1: the group's sequential reference (01, 08, 13, 16) */
} lab_case;

extern const lab_case lab_cases[LAB_NCASES];
/* "io", "cpu", "io+cpu", "io+io_blocking". */
const char *lab_group_name(int group);
/* The group's reference case index (0-based: 0, 7, 12, 15). */
int lab_group_sequential(int group);
/* Pool size of the case's model on `cores` cores (0 = unbounded / one per task). */
int lab_case_workers(const lab_case *c, int cores);

/* Parses a --cases list ("01,06", "io,cpu", "6", "all") into sel[18] (1 =
 * selected). 0, or -1 with a message in err. */
int lab_parse_cases(const char *list, int sel[LAB_NCASES], char *err, size_t errlen);
/* Parses a --cores list ("1,2"), each in 1..max, sorted, no duplicates;
 * at most 16 values. Returns how many, or -1 with a message in err. */
int lab_parse_cores(const char *list, int max, int *out, int cap, char *err, size_t errlen);

/* ---- `weft bench` options (opts.c) */

typedef struct lab_bench_opts {
  int sel[LAB_NCASES];
  int cores[16];
  int ncores;
  double scale;
  int repeat;
  int python;
  int quick;
  double timeout_s; /* per case; 0 = 10 x the group's sequential floor + 30 s */
  int port;         /* the ten-sites server's port; 0 = any free one */
  const char *json, *markdown, *svg;
} lab_bench_opts;

/*
 * Parses `weft bench` options (argv[0] is "bench"); max_cores is what this
 * process may use. Returns 0 (run), 1 (--help: print the usage, exit 0) or
 * 2 (usage error, message in err).
 */
int lab_bench_parse(int argc, char **argv, int max_cores, lab_bench_opts *o, char *err,
                    size_t errlen);
/* The usage text of `weft bench`. */
void lab_bench_usage(FILE *f);

/* ---- floors (sim.c) */

/*
 * A small scheduling simulation. Job i becomes ready at arrive[i] (NULL: all
 * at 0) and needs work[i] seconds; at most `slots` jobs run at once (0 =
 * unbounded), taken in order of readiness, ties by index; running jobs share
 * `cpus` processors, each at rate min(1, cpus / running), or each at rate 1
 * when cpus <= 0 (the work is waiting, not computing). Returns the time the
 * last job ends. n <= 256.
 */
double lab_sim_pool(int n, const double *arrive, const double *work, int slots, double cpus);

/* A lower bound of the same that holds for any order in which the jobs
 * are started (and even with preemption): no job ends before its arrival
 * plus its work, and the work that arrives at or after any time t cannot
 * end before t + that work / the pool's capacity (min(slots, cpus)). */
double lab_sim_bound(int n, const double *arrive, const double *work, int slots, double cpus);

/* fib costs on one core, seconds, for n = 28..34 (index n - 28). */
typedef struct lab_fib_costs {
  double s[7];
} lab_fib_costs;

/* The naive recursive Fibonacci (the study's CPU task). */
uint64_t lab_fib(int n);
/* Measures this process's fib(28..34) on the CPU it runs on (the caller pins
 * it): the least CPU time of `tries` runs each. */
void lab_fib_measure(lab_fib_costs *c, int tries);
/* Costs from one measured fib(n0) cost: fib's cost grows with the number of
 * calls, 2 fib(n) - 1. */
void lab_fib_from_one(lab_fib_costs *c, int n0, double cost);

/* The floor of case c on `cores` cores at `scale`: the least wall time its
 * model could reach. `python`: CPU work in threads is serialised (GIL). */
double lab_floor(const lab_case *c, int cores, double scale, const lab_fib_costs *fib,
                 int python);

/* ---- measurement (measure.c) */

typedef struct lab_measure_opts {
  char *const *argv;      /* the command; argv[0] is searched in PATH */
  int cpus;               /* run on the first `cpus` CPUs of our affinity set; 0 = as we are */
  double timeout_s;       /* kill after this long; 0 = never */
  double grace_s;         /* after the command exits: wait this long for its descendants; 0 = 2 s */
  int own_pgrp;           /* the command gets its own process group (bench), else ours (time) */
  int capture;            /* capture stdout and stderr (bench), else inherit */
  /* Called about every 200 ms while the command runs (may be NULL). */
  void (*tick)(double elapsed_s, void *arg);
  void *tick_arg;
} lab_measure_opts;

typedef struct lab_measurement {
  double wall_s, user_s, sys_s;
  long maxrss_kib;
  int exited;    /* 1: exited with `status`; 0: killed by `signal` */
  int status;
  int signal;
  int timed_out;
  int exec_failed;    /* 1: the command could not be started (status is 127) */
  int interrupted;    /* 1: we were asked to stop (lab_measure_interrupt) */
  char out[256];      /* capture: the first line of stdout */
  char err_tail[1024]; /* capture: the end of stderr */
} lab_measurement;

/* Runs the command as `/usr/bin/time -v` would measure it, children
 * included (see measure.c). Returns 0 when measured (whatever the command's
 * outcome), or a negative errno if the supervisor could not be started.
 * Single-threaded callers only (it forks). */
int lab_measure(const lab_measure_opts *o, lab_measurement *m);
/* Async-signal-safe: stops the measurement running now (its command's
 * process group is killed) and makes lab_measure return with interrupted. */
void lab_measure_interrupt(void);
/* Pins the calling process to the first `cpus` CPUs of its affinity set.
 * 0 or a negative errno. */
int lab_pin_first_cpus(int cpus);

/* ---- results, verdicts, conclusions (analysis.c) */

enum { LAB_C, LAB_PY, LAB_NIMPL };

typedef struct lab_result {
  int case_idx;  /* index in lab_cases */
  int impl;      /* LAB_C or LAB_PY */
  int cores;
  int workers;   /* pool size of its model, 0 = none/unbounded */
  int ok;
  char error[256]; /* why not ok */
  int nruns;
  double walls[16]; /* each run's wall time */
  /* Medians over the runs. */
  double user_s, sys_s, wall_s, cpu_pct;
  long maxrss_kib;
  double floor_s;
  char verdict[64];
} lab_result;

/* The median of n values (sorts v); 0 for n <= 0. */
double lab_median(double *v, int n);
/* Fills each result's verdict from the others of its group (same impl and
 * cores): "fastest of its group", "within 10% of the fastest", "slower than
 * sequential" (more than 10% slower than the group's sequential case),
 * "N.Nx the fastest", or "FAILED". */
void lab_verdicts(lab_result *r, int n);

/* Amdahl: the serial fraction s that gives speedup S on N processors,
 * s = (N/S - 1) / (N - 1), clamped to [0, 1]; and the speedup on p. */
double lab_amdahl_serial(double speedup, int n);
double lab_amdahl_speedup(double serial, int p);
/* Martelli's categories: "1 core", "2-8 cores" or "9+ cores (distributed)"
 * (rule in docs/LAB.md): "1 core" when more cores did not help
 * (measured_speedup < 1.2) or one core does all the CPU work in under
 * LAB_MARTELLI_SMALL_S seconds (one_core_s); else "2-8 cores" when Amdahl
 * (serial fraction `serial`) gives less than 25% more from 8 to 16 cores;
 * else "9+ cores (distributed)". */
#define LAB_MARTELLI_SMALL_S 1.0
const char *lab_martelli(double serial, double measured_speedup, double one_core_s);

typedef struct lab_group_conclusion {
  int impl, cores, group;
  int winner;          /* case index, -1 if none ok */
  int sequential;      /* case index of the reference, -1 if not measured ok */
  double wall_s, speedup; /* speedup over the reference (0 if unknown) */
  long maxrss_kib;
} lab_group_conclusion;

/* The CPU-bound speedup: the best CPU case on the fewest cores measured
 * against the best on the most. */
typedef struct lab_scaling {
  int impl;
  int from_case, case_idx; /* the best CPU case on from_cores, on to_cores */
  int from_cores, to_cores;
  double from_wall_s, to_wall_s;
  double speedup, serial;
  double predicted[4]; /* at 4, 8, 16, 64 cores */
  const char *martelli;
  char martelli_why[128]; /* the rule that decided, with its figures */
} lab_scaling;

typedef struct lab_conclusions {
  lab_group_conclusion groups[2 * 16 * LAB_NGROUPS];
  int ngroups;
  lab_scaling scaling[LAB_NIMPL];
  int nscaling;
} lab_conclusions;

/* The core counts of the predictions: 4, 8, 16, 64. */
extern const int lab_predict_cores[4];

/* Computes the conclusions from n results (verdicts not needed): per
 * (impl, cores, group) the winner and its speedup over the group's
 * sequential case; per impl measured on two core counts or more, the
 * CPU-bound scaling with Amdahl and Martelli. */
void lab_conclude(const lab_result *r, int n, lab_conclusions *out);

/* ---- reports (report.c) */

typedef struct lab_report {
  const char *version;
  int machine_cpus;
  char model[128];
  char kernel[128];
  double scale;
  int repeat;
  int cores[16];
  int ncores;
  int python;
  lab_fib_costs fib[LAB_NIMPL];
  int have_fib[LAB_NIMPL];
  lab_result *results;
  int nresults;
  lab_conclusions concl;
} lab_report;

/* Fills rep->model (/proc/cpuinfo) and rep->kernel (uname). */
void lab_machine_info(lab_report *rep);

/* Writes s as a JSON string: quotes, \" \\ \n \r \t \b \f, \u00XX for other
 * control bytes; other bytes (UTF-8) as they are. NULL writes "". */
void lab_json_string(FILE *f, const char *s);
/* The text table, one per core count (stdout of `weft bench`); Python rows
 * follow their C row with a line of C/Python ratios. */
void lab_report_table(FILE *f, const lab_report *rep);
/* The conclusions in sentences (rep->concl). */
void lab_report_conclusions(FILE *f, const lab_report *rep);
/* The whole report as JSON (schema in docs/LAB.md). */
void lab_report_json(FILE *f, const lab_report *rep);
/* The tables, C/Python ratios and conclusions as Markdown. */
void lab_report_markdown(FILE *f, const lab_report *rep);
/* A self-contained SVG chart: a panel per core count, a bar per case and
 * implementation on a log axis, the floors as ticks. */
void lab_report_svg(FILE *f, const lab_report *rep);

/* The case's label as the study writes it: "04-io-thread_pool (6 workers)". */
void lab_case_label(const lab_result *r, char *buf, size_t len);

#endif
