/*
 * test_lab.c — the lab behind `weft bench` and `weft time` (tools/weft):
 * floors, Amdahl, verdicts, conclusions, the JSON writer, option parsing,
 * the measurement itself, and the `weft` binary's usage errors, interrupt
 * handling and process hygiene (run through WEFT_BIN with stand-in cases).
 */
#include "wt.h"

#include "lab.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ASSERT_NEAR(a, b, eps)                                                                 \
  do {                                                                                         \
    double wt_x = (a), wt_y = (b);                                                             \
    if (!(fabs(wt_x - wt_y) <= (eps))) WT_FAIL("%s ~ %s: %.6f vs %.6f", #a, #b, wt_x, wt_y);   \
  } while (0)

static const lab_case *case_named(const char *num) {
  for (int i = 0; i < LAB_NCASES; i++)
    if (!strcmp(lab_cases[i].num, num)) return &lab_cases[i];
  WT_FAIL("no case %s", num);
  return NULL;
}

/* fib costs where fib(n) costs n - 27 seconds: 1..7, sum 28 per round. */
static lab_fib_costs simple_costs(void) {
  lab_fib_costs c;
  for (int n = 28; n <= 34; n++) c.s[n - 28] = n - 27;
  return c;
}

/* ---- floors */

TEST(floor_io_examples) {
  lab_fib_costs fib = simple_costs();
  /* The examples: 30 fetches on 6 threads (2 cores: min(32, 2 + 4))
   * started in order cannot finish before 3.2 s; all 30 at once not before
   * 1.0 s. A pool may run them in another order (weft's thread pool did, in
   * 2.92 s), so its floor is the order-free bound 16.5 s / 6. */
  double lat[30];
  for (int i = 0; i < 30; i++) lat[i] = 0.1 * (i % 10 + 1);
  ASSERT_NEAR(lab_sim_pool(30, NULL, lat, 6, 0), 3.2, 1e-9);
  ASSERT_NEAR(lab_floor(case_named("04"), 2, 1.0, &fib, 0), 2.75, 1e-9);
  ASSERT_NEAR(lab_floor(case_named("06"), 2, 1.0, &fib, 0), 1.0, 1e-9);
  ASSERT_NEAR(lab_floor(case_named("02"), 1, 1.0, &fib, 0), 1.0, 1e-9);
  ASSERT_NEAR(lab_floor(case_named("03"), 1, 1.0, &fib, 1), 1.0, 1e-9);
  /* Sequentially: 3 x 5.5 s. */
  ASSERT_NEAR(lab_floor(case_named("01"), 1, 1.0, &fib, 0), 16.5, 1e-9);
  ASSERT_NEAR(lab_floor(case_named("07"), 2, 1.0, &fib, 0), 16.5, 1e-9);
  /* One process on one core is sequential; the scale scales it all. */
  ASSERT_NEAR(lab_floor(case_named("05"), 1, 1.0, &fib, 0), 16.5, 1e-9);
  ASSERT_NEAR(lab_floor(case_named("01"), 1, 0.1, &fib, 0), 1.65, 1e-9);
  ASSERT_NEAR(lab_floor(case_named("04"), 2, 0.1, &fib, 0), 0.275, 1e-9);
}

TEST(floor_cpu) {
  lab_fib_costs fib = simple_costs(); /* 21 jobs, 3 x (1..7) = 84 s */
  ASSERT_NEAR(lab_floor(case_named("08"), 1, 1.0, &fib, 0), 84, 1e-9);
  ASSERT_NEAR(lab_floor(case_named("08"), 2, 1.0, &fib, 0), 84, 1e-9);
  /* On one core, no model beats the sum. */
  for (int i = 8; i <= 12; i++) {
    char num[4];
    snprintf(num, sizeof num, "%02d", i);
    ASSERT_NEAR(lab_floor(case_named(num), 1, 1.0, &fib, 0), 84, 1e-6);
  }
  /* Two cores: threads and processes share them: the sum / 2. */
  ASSERT_NEAR(lab_floor(case_named("09"), 2, 1.0, &fib, 0), 42, 1e-6);
  ASSERT_NEAR(lab_floor(case_named("10"), 2, 1.0, &fib, 0), 42, 1e-6);
  /* A pool of 6 threads takes jobs in order: the last fib(34) starts late. */
  double f11 = lab_floor(case_named("11"), 2, 1.0, &fib, 0);
  ASSERT_TRUE(f11 >= 42 && f11 <= 43.5);
  /* A pool of 2 processes: its dispatch order is not fixed, so the floor
   * holds for any order: 84 / 2. (In order, 1..7 x3 on two workers would
   * end at 44.) */
  ASSERT_NEAR(lab_floor(case_named("12"), 2, 1.0, &fib, 0), 42, 1e-6);
  /* Python threads hold the GIL: the sum, whatever the cores. */
  ASSERT_NEAR(lab_floor(case_named("09"), 2, 1.0, &fib, 1), 84, 1e-6);
  ASSERT_NEAR(lab_floor(case_named("11"), 2, 1.0, &fib, 1), 84, 1e-6);
  ASSERT_NEAR(lab_floor(case_named("10"), 2, 1.0, &fib, 1), 42, 1e-6);
}

TEST(floor_combined) {
  lab_fib_costs fib = simple_costs(); /* fib(32) = 5 s */
  /* 13: fetches return at 0.1..1.0 s, then 10 x fib(32) on the one loop. */
  ASSERT_NEAR(lab_floor(case_named("13"), 2, 1.0, &fib, 0), 0.1 + 50, 1e-6);
  /* 14 on 2 cores: from the first return at 0.1 s, 50 s of fib on two. */
  ASSERT_NEAR(lab_floor(case_named("14"), 2, 1.0, &fib, 0), 0.1 + 25, 1e-6);
  ASSERT_NEAR(lab_floor(case_named("14"), 2, 1.0, &fib, 1), 0.1 + 50, 1e-6); /* GIL */
  /* 16: the blocking fetches serialise on the loop from the first return at
   * 0.1 s: 0.1 + 2 x 5.5 s. */
  ASSERT_NEAR(lab_floor(case_named("16"), 1, 1.0, &fib, 0), 11.1, 1e-6);
  /* 17 and 18: pools fed over time, in any order. 18 on 2 cores: 11 s of
   * waiting from 0.1 s on 2 workers; 17 (6 workers): what arrives from
   * 0.3 s on (10.4 s) on 6, or on 5 on 1 core. */
  ASSERT_NEAR(lab_floor(case_named("18"), 2, 1.0, &fib, 0), 0.1 + 5.5, 1e-6);
  ASSERT_NEAR(lab_floor(case_named("17"), 2, 1.0, &fib, 0), 0.3 + 10.4 / 6, 1e-6);
  ASSERT_NEAR(lab_floor(case_named("17"), 1, 1.0, &fib, 0), 0.3 + 10.4 / 5, 1e-6);
  /* 05: a process pool's dispatch is not fixed: 16.5 s over 2 workers. */
  ASSERT_NEAR(lab_floor(case_named("05"), 2, 1.0, &fib, 0), 8.25, 1e-6);
}

TEST(sim_pool) {
  double w[3] = {1, 1, 1};
  ASSERT_NEAR(lab_sim_pool(3, NULL, w, 1, 0), 3, 1e-9);
  ASSERT_NEAR(lab_sim_pool(3, NULL, w, 0, 0), 1, 1e-9);
  ASSERT_NEAR(lab_sim_pool(3, NULL, w, 0, 1), 3, 1e-9);   /* one CPU shared */
  ASSERT_NEAR(lab_sim_pool(3, NULL, w, 0, 1.5), 2, 1e-9); /* 3 s of work, 1.5 CPUs */
  double a[3] = {5, 0, 0};
  ASSERT_NEAR(lab_sim_pool(3, a, w, 1, 0), 6, 1e-9); /* idle until 5 */
  ASSERT_NEAR(lab_sim_pool(0, NULL, w, 1, 0), 0, 1e-9);
}

TEST(sim_bound) {
  double w[4] = {1, 2, 3, 4};
  /* In order on 2 workers: 1|2, 3 at 1, 4 at 2: ends at 6; any order: 5. */
  ASSERT_NEAR(lab_sim_pool(4, NULL, w, 2, 0), 6, 1e-9);
  ASSERT_NEAR(lab_sim_bound(4, NULL, w, 2, 0), 5, 1e-9);
  ASSERT_NEAR(lab_sim_bound(4, NULL, w, 0, 0), 4, 1e-9); /* the longest job */
  ASSERT_NEAR(lab_sim_bound(4, NULL, w, 0, 1), 10, 1e-9); /* one CPU */
  double a[4] = {0, 0, 0, 9};
  ASSERT_NEAR(lab_sim_bound(4, a, w, 2, 0), 13, 1e-9); /* the late one */
  /* The bound never exceeds what the in-order schedule reaches. */
  double b[6] = {0.3, 0.1, 0.2, 0.2, 0.5, 0.1}, v[6] = {0.5, 0.4, 0.3, 0.2, 0.1, 0.7};
  for (int slots = 1; slots <= 6; slots++)
    ASSERT_TRUE(lab_sim_bound(6, b, v, slots, 0) <= lab_sim_pool(6, b, v, slots, 0) + 1e-12);
}

TEST(fib_costs) {
  ASSERT_UEQ(lab_fib(20), 6765);
  ASSERT_UEQ(lab_fib(28), 317811);
  lab_fib_costs c;
  lab_fib_from_one(&c, 27, 0.1);
  /* fib(28) makes 2 x 317811 - 1 calls, fib(27) 2 x 196418 - 1. */
  ASSERT_NEAR(c.s[0], 0.1 * 635621.0 / 392835.0, 1e-9);
  ASSERT_TRUE(c.s[6] > c.s[5] * 1.6 && c.s[6] < c.s[5] * 1.65);
  lab_fib_measure(&c, 1);
  for (int i = 0; i < 7; i++) ASSERT_TRUE(c.s[i] > 0);
  ASSERT_TRUE(c.s[6] > c.s[0]);
}

/* ---- Amdahl, Martelli, verdicts, conclusions */

TEST(amdahl) {
  ASSERT_NEAR(lab_amdahl_serial(2.0, 2), 0.0, 1e-12);
  ASSERT_NEAR(lab_amdahl_serial(1.6, 2), 0.25, 1e-12);
  ASSERT_NEAR(lab_amdahl_serial(1.0, 2), 1.0, 1e-12);
  ASSERT_NEAR(lab_amdahl_serial(3.0, 2), 0.0, 1e-12); /* faster than linear: clamped */
  ASSERT_NEAR(lab_amdahl_serial(5.0, 10), (10 / 5.0 - 1) / 9, 1e-12);
  ASSERT_NEAR(lab_amdahl_speedup(0.25, 4), 1 / (0.25 + 0.75 / 4), 1e-12);
  ASSERT_NEAR(lab_amdahl_speedup(0.0, 64), 64, 1e-9);
  ASSERT_NEAR(lab_amdahl_speedup(1.0, 64), 1, 1e-12);
}

TEST(martelli) {
  ASSERT_STREQ(lab_martelli(0.9, 1.05, 100), "1 core");  /* cores did not help */
  ASSERT_STREQ(lab_martelli(0.0, 2.0, 0.05), "1 core");  /* small: one core is enough */
  ASSERT_STREQ(lab_martelli(0.25, 1.6, 10), "2-8 cores");
  ASSERT_STREQ(lab_martelli(0.01, 1.98, 10), "9+ cores (distributed)");
}

static lab_result mk(const char *num, int impl, int cores, double wall, int ok) {
  lab_result r;
  memset(&r, 0, sizeof r);
  r.case_idx = (int)(case_named(num) - lab_cases);
  r.impl = impl;
  r.cores = cores;
  r.wall_s = wall;
  r.ok = ok;
  r.maxrss_kib = 1000 + (long)(wall * 10);
  return r;
}

TEST(verdicts) {
  lab_result r[] = {
      mk("01", LAB_C, 1, 16.0, 1), mk("02", LAB_C, 1, 1.05, 1), mk("03", LAB_C, 1, 1.2, 1),
      mk("06", LAB_C, 1, 1.0, 1),  mk("07", LAB_C, 1, 18.0, 1), mk("05", LAB_C, 1, 0, 0),
      mk("04", LAB_C, 1, 17.0, 1), /* slower than 01, but within noise */
      /* another cell: not compared with the first */
      mk("01", LAB_C, 2, 2.0, 1), mk("06", LAB_C, 2, 3.0, 1),
      mk("08", LAB_PY, 1, 10.0, 1),
  };
  int n = (int)(sizeof r / sizeof r[0]);
  lab_verdicts(r, n);
  ASSERT_STREQ(r[0].verdict, "16.0x the fastest");
  ASSERT_STREQ(r[1].verdict, "within 10% of the fastest");
  ASSERT_STREQ(r[2].verdict, "1.2x the fastest");
  ASSERT_STREQ(r[3].verdict, "fastest of its group");
  ASSERT_STREQ(r[4].verdict, "slower than sequential");
  ASSERT_STREQ(r[5].verdict, "FAILED");
  ASSERT_STREQ(r[6].verdict, "17.0x the fastest");
  ASSERT_STREQ(r[7].verdict, "fastest of its group");
  ASSERT_STREQ(r[8].verdict, "slower than sequential");
  ASSERT_STREQ(r[9].verdict, "fastest of its group");

  lab_conclusions c;
  lab_conclude(r, n, &c);
  ASSERT_EQ(c.ngroups, 3);
  ASSERT_EQ(c.groups[0].winner, 5); /* 06 */
  ASSERT_EQ(c.groups[0].sequential, 0);
  ASSERT_NEAR(c.groups[0].speedup, 16.0, 1e-9);
  ASSERT_EQ(c.groups[0].maxrss_kib, 1010);
  ASSERT_EQ(c.groups[1].winner, 0); /* 2 cores: 01 itself */
  ASSERT_EQ(c.nscaling, 0);         /* no CPU case on two core counts */
}

TEST(conclude_scaling) {
  lab_result r[] = {
      mk("08", LAB_C, 1, 10.0, 1), mk("12", LAB_C, 1, 10.5, 1),
      mk("08", LAB_C, 2, 10.0, 1), mk("12", LAB_C, 2, 6.25, 1),
  };
  lab_conclusions c;
  lab_conclude(r, 4, &c);
  ASSERT_EQ(c.nscaling, 1);
  ASSERT_EQ(c.scaling[0].from_case, 7); /* 08 on 1 core */
  ASSERT_EQ(c.scaling[0].case_idx, 11); /* 12 on 2 cores */
  ASSERT_NEAR(c.scaling[0].speedup, 1.6, 1e-9);
  ASSERT_NEAR(c.scaling[0].serial, 0.25, 1e-9);
  ASSERT_NEAR(c.scaling[0].predicted[0], 1 / (0.25 + 0.75 / 4), 1e-9);
  ASSERT_STREQ(c.scaling[0].martelli, "2-8 cores");
  ASSERT_STREQ(c.scaling[0].martelli_why, "by Amdahl, 16 cores would be 16% faster than 8");
}

TEST(median) {
  double a[] = {3, 1, 2};
  ASSERT_NEAR(lab_median(a, 3), 2, 0);
  double b[] = {4, 1, 3, 2};
  ASSERT_NEAR(lab_median(b, 4), 2.5, 0);
  double c[] = {7};
  ASSERT_NEAR(lab_median(c, 1), 7, 0);
}

/* ---- reports */

static char *capture(void (*fn)(FILE *, const void *), const void *arg) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ASSERT_TRUE(f != NULL);
  fn(f, arg);
  fclose(f);
  return buf;
}

static void json_str_cb(FILE *f, const void *arg) { lab_json_string(f, arg); }

TEST(json_escaping) {
  char *s = capture(json_str_cb, "a\"b\\c\nd\te\x01" "f/\xc3\xa9");
  ASSERT_STREQ(s, "\"a\\\"b\\\\c\\nd\\te\\u0001f/\xc3\xa9\"");
  free(s);
  s = capture(json_str_cb, NULL);
  ASSERT_STREQ(s, "\"\"");
  free(s);
}

static void json_cb(FILE *f, const void *arg) { lab_report_json(f, arg); }
static void md_cb(FILE *f, const void *arg) { lab_report_markdown(f, arg); }
static void svg_cb(FILE *f, const void *arg) { lab_report_svg(f, arg); }
static void table_cb(FILE *f, const void *arg) {
  lab_report_table(f, arg);
  lab_report_conclusions(f, arg);
}

TEST(reports) {
  lab_result r[] = {mk("06", LAB_C, 1, 0.11, 1), mk("06", LAB_PY, 1, 0.5, 1),
                    mk("12", LAB_C, 1, 0, 0)};
  r[1].maxrss_kib = 30000;
  r[0].floor_s = r[1].floor_s = 0.1;
  snprintf(r[2].error, sizeof r[2].error, "exit status 1 (wrong \"results\")");
  lab_report rep;
  memset(&rep, 0, sizeof rep);
  rep.version = "0.1.0";
  rep.machine_cpus = 2;
  snprintf(rep.model, sizeof rep.model, "Test <CPU> & \"co\"");
  snprintf(rep.kernel, sizeof rep.kernel, "Linux 6");
  rep.scale = 0.1;
  rep.repeat = 1;
  rep.cores[0] = 1;
  rep.ncores = 1;
  rep.python = 1;
  rep.results = r;
  rep.nresults = 3;
  lab_verdicts(r, 3);
  lab_conclude(r, 3, &rep.concl);
  char *j = capture(json_cb, &rep);
  ASSERT_TRUE(strstr(j, "\"model\": \"Test <CPU> & \\\"co\\\"\"") != NULL);
  ASSERT_TRUE(strstr(j, "{\"case\": \"06\", \"name\": \"io-async\"") != NULL);
  ASSERT_TRUE(strstr(j, "\"impl\": \"python\"") != NULL);
  ASSERT_TRUE(strstr(j, "\"wall_s\": 0.11,") != NULL);
  ASSERT_TRUE(strstr(j, "\"ok\": false") != NULL);
  ASSERT_TRUE(strstr(j, "wrong \\\"results\\\"") != NULL);
  ASSERT_TRUE(strstr(j, "\"conclusions\": {\"groups\": [") != NULL);
  free(j);
  char *t = capture(table_cb, &rep);
  ASSERT_TRUE(strstr(t, "FAILED: exit status 1") != NULL);
  ASSERT_TRUE(strstr(t, "C/Python: wall 0.220") != NULL);
  ASSERT_TRUE(strstr(t, "io: 06-io-async wins in 0.110 s") != NULL);
  free(t);
  char *m = capture(md_cb, &rep);
  ASSERT_TRUE(strstr(m, "| case | impl | user s |") != NULL);
  ASSERT_TRUE(strstr(m, "| 06-io-async | 0.220 |") != NULL);
  free(m);
  char *s = capture(svg_cb, &rep);
  ASSERT_TRUE(strncmp(s, "<svg ", 5) == 0);
  ASSERT_TRUE(strstr(s, "Test &lt;CPU&gt; &amp;") != NULL);
  ASSERT_TRUE(strstr(s, "FAILED") != NULL);
  ASSERT_TRUE(strstr(s, "</svg>\n") != NULL);
  free(s);
}

/* ---- options */

static int parse(const char *line, lab_bench_opts *o, char *err, size_t len) {
  static char buf[512]; /* o->json etc. point into it */
  char *argv[32];
  int argc = 0;
  snprintf(buf, sizeof buf, "bench %s", line);
  for (char *p = strtok(buf, " "); p && argc < 31; p = strtok(NULL, " ")) argv[argc++] = p;
  argv[argc] = NULL;
  return lab_bench_parse(argc, argv, 2, o, err, len);
}

TEST(options) {
  lab_bench_opts o;
  char err[256];
  ASSERT_EQ(parse("", &o, err, sizeof err), 0);
  ASSERT_EQ(o.ncores, 2);
  ASSERT_EQ(o.cores[0], 1);
  ASSERT_EQ(o.cores[1], 2);
  ASSERT_NEAR(o.scale, 1.0, 0);
  ASSERT_EQ(o.repeat, 3);
  for (int i = 0; i < LAB_NCASES; i++) ASSERT_EQ(o.sel[i], 1);
  ASSERT_EQ(parse("--quick", &o, err, sizeof err), 0);
  ASSERT_NEAR(o.scale, 0.1, 1e-12);
  ASSERT_EQ(o.repeat, 1);
  ASSERT_EQ(parse("--quick --repeat 2 --scale 0.5", &o, err, sizeof err), 0);
  ASSERT_NEAR(o.scale, 0.5, 1e-12);
  ASSERT_EQ(o.repeat, 2);
  ASSERT_EQ(parse("--cases 01,6,cpu --cores 2", &o, err, sizeof err), 0);
  /* cpu: 08-12 and 19 (cpu-distributed) */
  int want[LAB_NCASES] = {1, 0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1};
  for (int i = 0; i < LAB_NCASES; i++) ASSERT_EQ(o.sel[i], want[i]);
  ASSERT_EQ(o.ncores, 1);
  ASSERT_EQ(o.cores[0], 2);
  ASSERT_EQ(parse("--cases io+io_blocking,io+cpu --python --json x.json", &o, err, sizeof err), 0);
  ASSERT_EQ(o.sel[12] + o.sel[17] + o.sel[0], 2);
  ASSERT_EQ(o.python, 1);
  ASSERT_STREQ(o.json, "x.json");
  ASSERT_EQ(parse("--cores 2,1,2", &o, err, sizeof err), 0);
  ASSERT_EQ(o.ncores, 2);
  ASSERT_EQ(parse("--help", &o, err, sizeof err), 1);
  /* Usage errors: 2, with a message that names the problem. */
  ASSERT_EQ(parse("--cores 3", &o, err, sizeof err), 2);
  ASSERT_TRUE(strstr(err, "more than the 2 CPUs") != NULL);
  ASSERT_EQ(parse("--cores 0", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--cores x", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--cases 20", &o, err, sizeof err), 2);
  ASSERT_TRUE(strstr(err, "unknown case or group '20'") != NULL);
  ASSERT_EQ(parse("--cases gpu", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--cases 01,,02", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--scale 0", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--scale -1", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--scale abc", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--scale nan", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--repeat 0", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--repeat 1.5", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--timeout 0", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--port 70000", &o, err, sizeof err), 2);
  ASSERT_EQ(parse("--json", &o, err, sizeof err), 2);
  ASSERT_TRUE(strstr(err, "needs a value") != NULL);
  ASSERT_EQ(parse("--frobnicate", &o, err, sizeof err), 2);
  ASSERT_TRUE(strstr(err, "unknown option '--frobnicate'") != NULL);
}

/* ---- the measurement */

/* Helpers run as commands: this binary with LAB_HELPER set. */
TEST(helper) {
  const char *h = getenv("LAB_HELPER");
  if (!h) return;
  if (!strcmp(h, "alloc")) { /* touch 64 MiB */
    size_t n = 64u << 20;
    char *p = malloc(n);
    ASSERT_TRUE(p != NULL);
    for (size_t i = 0; i < n; i += 4096) p[i] = (char)i;
    volatile char sink = p[n / 2];
    (void)sink;
    free(p);
  } else if (!strcmp(h, "cpus")) {
    printf("%d\n", weft_cpu_count());
  } else if (!strcmp(h, "orphan_burn")) { /* leave a child burning CPU, exit at once */
    if (fork() == 0) {
      volatile uint64_t v = lab_fib(37);
      (void)v;
      _exit(0);
    }
  }
  fflush(stdout);
  _exit(0);
}

static lab_measurement run_helper(const char *what, int cpus) {
  setenv("LAB_HELPER", what, 1);
  char *argv[] = {"/proc/self/exe", "helper", NULL};
  lab_measure_opts o = {.argv = argv, .cpus = cpus, .capture = 1, .own_pgrp = 1,
                        .timeout_s = 60};
  lab_measurement m;
  ASSERT_OK(lab_measure(&o, &m));
  unsetenv("LAB_HELPER");
  ASSERT_EQ(m.exited, 1);
  ASSERT_EQ(m.status, 0);
  return m;
}

TEST(measure_exit_and_capture) {
  char *argv[] = {"sh", "-c", "echo first line; echo second; echo oops >&2; exit 3", NULL};
  lab_measure_opts o = {.argv = argv, .capture = 1, .own_pgrp = 1};
  lab_measurement m;
  ASSERT_OK(lab_measure(&o, &m));
  ASSERT_EQ(m.exited, 1);
  ASSERT_EQ(m.status, 3);
  ASSERT_STREQ(m.out, "first line");
  ASSERT_STREQ(m.err_tail, "oops");
  ASSERT_TRUE(m.wall_s > 0 && m.wall_s < 10);
  ASSERT_EQ(m.timed_out, 0);
  char *bad[] = {"/nonexistent/weft-lab-test", NULL};
  o.argv = bad;
  ASSERT_OK(lab_measure(&o, &m));
  ASSERT_EQ(m.exec_failed, 1);
  ASSERT_EQ(m.status, 127);
  ASSERT_TRUE(strstr(m.err_tail, "No such file") != NULL);
}

TEST(measure_signal_and_timeout) {
  char *argv[] = {"sh", "-c", "kill -SEGV $$", NULL};
  lab_measure_opts o = {.argv = argv, .capture = 1, .own_pgrp = 1};
  lab_measurement m;
  ASSERT_OK(lab_measure(&o, &m));
  ASSERT_EQ(m.exited, 0);
  ASSERT_EQ(m.signal, SIGSEGV);
  /* A hang, and a grandchild holding on: both killed at the limit. */
  char *hang[] = {"sh", "-c", "sleep 30 & sleep 30", NULL};
  o.argv = hang;
  o.timeout_s = 0.3;
  uint64_t t0 = weft_now_ns();
  ASSERT_OK(lab_measure(&o, &m));
  double took = (double)(weft_now_ns() - t0) * 1e-9;
  ASSERT_EQ(m.timed_out, 1);
  ASSERT_EQ(m.signal, SIGKILL);
  ASSERT_TRUE(m.wall_s >= 0.3 && took < 5);
}

/* `weft time` mode (same process group): the command exits at once and
 * leaves two generations of sleepers behind; after the grace period all are
 * killed and reaped, so lab_measure returns soon and nothing is left. */
TEST(measure_leftovers_killed) {
  char *argv[] = {"sh", "-c", "sh -c 'sleep 30 & sleep 30' & exit 0", NULL};
  lab_measure_opts o = {.argv = argv, .capture = 1, .grace_s = 0.2};
  lab_measurement m;
  uint64_t t0 = weft_now_ns();
  ASSERT_OK(lab_measure(&o, &m));
  double took = (double)(weft_now_ns() - t0) * 1e-9;
  ASSERT_EQ(m.exited, 1);
  ASSERT_EQ(m.status, 0);
  if (!(took < 5)) WT_FAIL("took %.2f s", took);
  ASSERT_TRUE(m.wall_s < took);
}

TEST(measure_children_included) /* labels: novalgrind */ {
  /* The helper exits at once; its orphan burns fib(31). The subreaper
   * waits for it and its CPU time is counted. */
  lab_measurement m = run_helper("orphan_burn", 0);
  /* Its cost here, in CPU time (wall time would count the neighbours). */
  struct timespec a, b;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
  volatile uint64_t v = lab_fib(37);
  (void)v;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
  double cost = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
  if (!(m.user_s + m.sys_s >= 0.5 * cost))
    WT_FAIL("CPU %.3f s, fib(37) alone %.3f s", m.user_s + m.sys_s, cost);
  /* max RSS: the largest process, 64 MiB touched. */
  m = run_helper("alloc", 0);
  ASSERT_GE(m.maxrss_kib, 64 * 1024);
}

TEST(measure_affinity) /* labels: novalgrind */ {
  lab_measurement m = run_helper("cpus", 1);
  ASSERT_STREQ(m.out, "1");
  int n = weft_cpu_count();
  m = run_helper("cpus", 0);
  char want[16];
  snprintf(want, sizeof want, "%d", n);
  ASSERT_STREQ(m.out, want);
}

/* ---- the `weft` binary */

static void write_case(const char *dir, const char *name, const char *body);

static lab_measurement weft(char **args, const char *env_dir) {
  char *argv[32];
  int k = 0;
  argv[k++] = WEFT_BIN;
  for (; args[k - 1] && k < 31; k++) argv[k] = args[k - 1];
  argv[k] = NULL;
  if (env_dir)
    setenv("WEFT_STUDY_DIR", env_dir, 1);
  else
    unsetenv("WEFT_STUDY_DIR");
  lab_measure_opts o = {.argv = argv, .capture = 1, .own_pgrp = 1, .timeout_s = 60};
  lab_measurement m;
  ASSERT_OK(lab_measure(&o, &m));
  ASSERT_EQ(m.exited, 1);
  return m;
}

TEST(cli_usage_errors) {
  char *a1[] = {"bench", "--cores", "999", NULL};
  lab_measurement m = weft(a1, NULL);
  ASSERT_EQ(m.status, 2);
  ASSERT_TRUE(strstr(m.err_tail, "--cores: 999 is more than") != NULL);
  char *a2[] = {"bench", "--scale", "0", NULL};
  ASSERT_EQ(weft(a2, NULL).status, 2);
  char *a3[] = {"bench", "--cases", "nope", NULL};
  ASSERT_EQ(weft(a3, NULL).status, 2);
  char *a4[] = {"time", NULL};
  ASSERT_EQ(weft(a4, NULL).status, 2);
  char *a5[] = {"fetch", NULL};
  ASSERT_EQ(weft(a5, NULL).status, 2);
  char *a6[] = {"fetch", "--executor", "quantum", "http://127.0.0.1:1/", NULL};
  ASSERT_EQ(weft(a6, NULL).status, 2);
  char *a7[] = {"frob", NULL};
  ASSERT_EQ(weft(a7, NULL).status, 2);
  char *a8[] = {"bench", "--help", NULL};
  m = weft(a8, NULL);
  ASSERT_EQ(m.status, 0);
  ASSERT_STREQ(m.out, "usage: weft bench [options]");
  char *a10[] = {"bench", "--json", "/nonexistent/dir/out.json", NULL};
  m = weft(a10, NULL);
  ASSERT_EQ(m.status, 2);
  ASSERT_TRUE(strstr(m.err_tail, "cannot write /nonexistent/dir/out.json") != NULL);
  char *a9[] = {"time", "--", "sh", "-c", "exit 7", NULL};
  m = weft(a9, NULL);
  ASSERT_EQ(m.status, 7);
  ASSERT_TRUE(strstr(m.err_tail, "Exit status: 7") != NULL);
}

TEST(cli_environment_errors) {
  /* --python without python3: says what to install, exit 2. */
  setenv("WEFT_PYTHON", "/nonexistent/python3", 1);
  char *a1[] = {"bench", "--python", "--cases", "06", NULL};
  lab_measurement m = weft(a1, NULL);
  unsetenv("WEFT_PYTHON");
  ASSERT_EQ(m.status, 2);
  ASSERT_TRUE(strstr(m.err_tail, "python3-requests python3-httpx") != NULL);
  /* --port in use: exit 2, and the message says so (a stand-in case, so
   * that the study need not be built). */
  char dir[] = "/tmp/weft-lab-XXXXXX";
  ASSERT_TRUE(mkdtemp(dir) != NULL);
  write_case(dir, "06-io-async", "echo ok");
  int fd, port;
  ASSERT_OK(weft_tcp_listen("127.0.0.1", 0, 4, &fd, &port));
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  char *a2[] = {"bench", "--port", ps, "--cases", "06", "--quick", NULL};
  m = weft(a2, dir);
  ASSERT_EQ(m.status, 2);
  ASSERT_TRUE(strstr(m.err_tail, "cannot start the ten-sites server") != NULL);
  ASSERT_TRUE(strstr(m.err_tail, "in use") != NULL);
  close(fd);
  /* No study at all: exit 1, saying where it looked and what to build. */
  char *a3[] = {"bench", "--cases", "06", "--quick", NULL};
  m = weft(a3, "/nonexistent/study");
  ASSERT_EQ(m.status, 1);
  ASSERT_TRUE(strstr(m.err_tail, "none of the selected cases is in /nonexistent/study") != NULL);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ASSERT_EQ(system(cmd), 0);
}

TEST(cli_fetch_refused) {
  /* Port 1 on loopback: refused, reported, exit 1. */
  char *a[] = {"fetch", "--executor", "thread", "http://127.0.0.1:1/x", NULL};
  lab_measurement m = weft(a, NULL);
  ASSERT_EQ(m.status, 1);
  ASSERT_TRUE(strstr(m.err_tail, "http://127.0.0.1:1/x error:") != NULL);
}

/* The ten-sites server in a child process (forked while we have no thread);
 * its port. The child dies with us. */
static weft_loop *g_child_loop;
static void child_stop(int sig) {
  (void)sig;
  weft_loop_stop(g_child_loop);
}
static int start_sites(pid_t *pid) {
  static double scale = 0.01;
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  *pid = fork();
  ASSERT_TRUE(*pid >= 0);
  if (*pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGTERM, child_stop);
    weft_http_server *srv;
    int port = -1;
    if (weft_loop_create(&g_child_loop, NULL) == 0) {
      weft_http_server_opts o = {0};
      if (weft_http_server_start(&srv, g_child_loop, &o, weft_sites_handler, &scale) == 0)
        port = weft_http_server_port(srv);
    }
    if (write(p[1], &port, sizeof port) != (ssize_t)sizeof port || port < 0) _exit(1);
    weft_loop_run(g_child_loop);
    _exit(0);
  }
  close(p[1]);
  int port = -1;
  ASSERT_EQ(read(p[0], &port, sizeof port), (ssize_t)sizeof port);
  close(p[0]);
  ASSERT_GT(port, 0);
  return port;
}

TEST(cli_fetch_executors) /* labels: novalgrind */ {
  pid_t srv;
  int port = start_sites(&srv);
  char u0[64], u7[64], bad[64];
  snprintf(u0, sizeof u0, "http://127.0.0.1:%d/site/0", port);
  snprintf(u7, sizeof u7, "http://127.0.0.1:%d/site/7", port);
  snprintf(bad, sizeof bad, "http://127.0.0.1:%d/site/99", port);
  const char *kinds[] = {"thread_pool", "thread", "process_pool", "process", "async", "inline"};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    char *a[] = {"fetch", "--executor", (char *)kinds[k], u7, u0, NULL};
    lab_measurement m = weft(a, NULL);
    if (m.status != 0) WT_FAIL("%s: status %d: %s", kinds[k], m.status, m.err_tail);
    /* The first line is whichever finished first: both are right. */
    char want0[96], want7[96];
    snprintf(want0, sizeof want0, "%s 15655", u0);
    snprintf(want7, sizeof want7, "%s 250000", u7);
    if (strcmp(m.out, want0) != 0 && strcmp(m.out, want7) != 0)
      WT_FAIL("%s: first line '%s'", kinds[k], m.out);
    char *b[] = {"fetch", "--executor", (char *)kinds[k], "--workers", "2", bad, u0, NULL};
    m = weft(b, NULL);
    ASSERT_EQ(m.status, 1);
    ASSERT_STREQ(m.out, want0);
    ASSERT_TRUE(strstr(m.err_tail, "/site/99 error: HTTP status 404") != NULL);
  }
  kill(srv, SIGTERM);
  int st;
  ASSERT_EQ(waitpid(srv, &st, 0), srv);
}

/* A temporary directory of stand-in cases (shell scripts). */
static void write_case(const char *dir, const char *name, const char *body) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  ASSERT_TRUE(f != NULL);
  fprintf(f, "#!/bin/sh\n%s\n", body);
  fclose(f);
  ASSERT_EQ(chmod(path, 0755), 0);
}

static char *read_all(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

TEST(cli_bench_standins) /* labels: novalgrind */ {
  char dir[] = "/tmp/weft-lab-XXXXXX";
  ASSERT_TRUE(mkdtemp(dir) != NULL);
  /* 01 fetches site 0 through the real server (curl may be missing: then it
   * just checks its arguments); 06 is right; 08 is wrong; 10 crashes. */
  write_case(dir, "01-io-sequential",
             "[ \"$1\" = --url ] && [ \"$3\" = --scale ] || exit 2\n"
             "if command -v curl >/dev/null; then\n"
             "  n=$(curl -s \"$2/site/0\" | wc -c); [ \"$n\" -eq 15655 ] || exit 1\n"
             "fi\necho 30 fetches ok");
  write_case(dir, "06-io-async", "echo ok");
  write_case(dir, "08-cpu-sequential", "echo 'fib(30) = 0, want 832040' >&2; exit 1");
  write_case(dir, "10-cpu-processes", "kill -SEGV $$");
  char json[600];
  snprintf(json, sizeof json, "%s/out.json", dir);
  char *a[] = {"bench", "--cases", "01,06,08,10", "--cores", "1", "--quick", "--json", json, NULL};
  lab_measurement m = weft(a, dir);
  ASSERT_EQ(m.status, 1); /* some cases failed */
  char *j = read_all(json);
  ASSERT_TRUE(j != NULL);
  ASSERT_TRUE(strstr(j, "{\"case\": \"01\", \"name\": \"io-sequential\", \"group\": \"io\", "
                        "\"impl\": \"c\", \"cores\": 1, \"workers\": 1, \"ok\": true") != NULL);
  ASSERT_TRUE(strstr(j, "\"case\": \"08\"") != NULL);
  ASSERT_TRUE(strstr(j, "exit status 1 (wrong or failed results): fib(30) = 0, want 832040") !=
              NULL);
  ASSERT_TRUE(strstr(j, "killed by signal 11") != NULL);
  ASSERT_TRUE(strstr(j, "\"scale\": 0.1, \"repeat\": 1") != NULL);
  /* The rest of the run went on: 06 was measured after 01 and 08 failed. */
  ASSERT_TRUE(strstr(j, "{\"case\": \"06\", \"name\": \"io-async\", \"group\": \"io\", "
                        "\"impl\": \"c\", \"cores\": 1, \"workers\": 0, \"ok\": true") != NULL);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ASSERT_EQ(system(cmd), 0);
}

/* Runs `weft bench` on a hanging stand-in and interrupts it: exit 130 soon,
 * and nothing it started outlives it (we are a subreaper: a leaked server
 * or case would be reparented to us). */
TEST(cli_bench_interrupt) /* labels: novalgrind */ {
  char dir[] = "/tmp/weft-lab-XXXXXX";
  ASSERT_TRUE(mkdtemp(dir) != NULL);
  char marker[600];
  snprintf(marker, sizeof marker, "%s/started", dir);
  char body[800];
  snprintf(body, sizeof body, "touch %s\nsleep 60 & sleep 60", marker);
  write_case(dir, "01-io-sequential", body);
  setenv("WEFT_STUDY_DIR", dir, 1);
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  pid_t pid = fork();
  ASSERT_TRUE(pid >= 0);
  if (pid == 0) {
    int nul = open("/dev/null", O_WRONLY);
    dup2(nul, 1);
    dup2(nul, 2);
    execl(WEFT_BIN, WEFT_BIN, "bench", "--cases", "01", "--cores", "1", "--quick", (char *)NULL);
    _exit(127);
  }
  /* Wait (bounded) until the case runs. */
  for (int i = 0; i < 1000 && access(marker, F_OK) != 0; i++) usleep(10000);
  ASSERT_EQ(access(marker, F_OK), 0);
  kill(pid, SIGINT);
  int st;
  uint64_t t0 = weft_now_ns();
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE((weft_now_ns() - t0) < 5000000000ull);
  ASSERT_TRUE(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 130);
  /* Nothing left: no child of ours at all. */
  errno = 0;
  ASSERT_EQ(waitpid(-1, &st, WNOHANG), -1);
  ASSERT_EQ(errno, ECHILD);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ASSERT_EQ(system(cmd), 0);
}
