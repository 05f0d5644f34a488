/*
 * weft bench — the lab: runs the study's cases against the ten-sites server,
 * measures them (measure.c), and reports the table, the floors, the
 * verdicts and the conclusions (analysis.c, report.c). docs/LAB.md explains.
 *
 * Process tree: the runner forks the server first (bench_server.c, before
 * anything could start a thread), then one supervisor per run (measure.c),
 * which forks the case. The server dies with the runner (PR_SET_PDEATHSIG)
 * and is stopped on every way out: the end, SIGINT/SIGTERM, a failure.
 */
#include "cli.h"
#include "lab.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef WEFT_STUDY_PYDIR_DEFAULT
#define WEFT_STUDY_PYDIR_DEFAULT "bench/python/study"
#endif

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
  lab_measure_interrupt();
  weft_cli_server_signal();
}

/* ---- where things are */

static void study_dir(char *buf, size_t len) {
  const char *env = getenv("WEFT_STUDY_DIR");
  if (env && *env) {
    snprintf(buf, len, "%s", env);
    return;
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) {
    snprintf(buf, len, "study");
    return;
  }
  exe[n] = '\0';
  /* A build tree keeps the cases beside weft; an install, in
   * <prefix>/libexec/weft/study beside <prefix>/bin/weft. */
  const char *dir = dirname(exe);
  snprintf(buf, len, "%s/study", dir);
  if (access(buf, X_OK) != 0) {
    char alt[PATH_MAX + 32];
    snprintf(alt, sizeof alt, "%s/../libexec/weft/study", dir);
    if (access(alt, X_OK) == 0 && strlen(alt) < len) memcpy(buf, alt, strlen(alt) + 1);
  }
}

static const char *python_exe(void) {
  const char *p = getenv("WEFT_PYTHON");
  return p && *p ? p : "/usr/bin/python3";
}

/* Checks python3 and its packages; 0 or 2 (usage error, said why). */
static int check_python(void) {
  const char *py = python_exe();
  if (access(py, X_OK) != 0) {
    fprintf(stderr,
            "weft bench: --python needs %s, which is missing (install python3, e.g. "
            "apt-get install python3 python3-requests python3-httpx)\n",
            py);
    return 2;
  }
  char *argv[] = {(char *)py, "-c",
                  "import importlib.util as u\n"
                  "print(' '.join('python3-' + m for m in ('requests', 'httpx') "
                  "if u.find_spec(m) is None))",
                  NULL};
  lab_measure_opts o = {.argv = argv, .capture = 1, .timeout_s = 60};
  lab_measurement m;
  if (lab_measure(&o, &m) != 0 || !m.exited || m.status != 0) {
    fprintf(stderr, "weft bench: %s does not run: %s\n", py, m.err_tail);
    return 2;
  }
  if (m.out[0]) {
    fprintf(stderr,
            "weft bench: --python needs Python packages that are missing: install %s "
            "(e.g. apt-get install %s)\n",
            m.out, m.out);
    return 2;
  }
  return 0;
}

/* Python's fib costs: fib(27)'s CPU time in python3 pinned to one CPU. */
static int python_fib(lab_fib_costs *c) {
  char *argv[] = {(char *)python_exe(), "-c",
                  "import time\n"
                  "def fib(n):\n"
                  "    return 1 if n <= 2 else fib(n - 1) + fib(n - 2)\n"
                  "best = 1e9\n"
                  "for _ in range(3):\n"
                  "    t = time.thread_time(); fib(27)\n"
                  "    best = min(best, time.thread_time() - t)\n"
                  "print(best)\n",
                  NULL};
  lab_measure_opts o = {.argv = argv, .capture = 1, .timeout_s = 120, .cpus = 1};
  lab_measurement m;
  double v;
  if (lab_measure(&o, &m) != 0 || !m.exited || m.status != 0 ||
      weft_cli_parse_double(m.out, &v) != 0 || !(v > 0))
    return -1;
  lab_fib_from_one(c, 27, v);
  return 0;
}

/* C's fib costs, measured here on the first CPU (the affinity is restored). */
static void c_fib(lab_fib_costs *c) {
  cpu_set_t saved;
  int have = sched_getaffinity(0, sizeof saved, &saved) == 0;
  lab_pin_first_cpus(1);
  lab_fib_measure(c, 5);
  if (have) sched_setaffinity(0, sizeof saved, &saved);
}

/* ---- progress */

typedef struct progress {
  int tty;
  int index, total;
  const char *label;
  const char *impl;
  int cores, run, runs;
} progress;

static void tick(double elapsed, void *arg) {
  const progress *p = arg;
  if (!p->tty) return;
  fprintf(stderr, "\r\033[K[%2d/%d] %s (%s, %d core%s) run %d/%d  %.1f s", p->index, p->total,
          p->label, p->impl, p->cores, p->cores == 1 ? "" : "s", p->run, p->runs, elapsed);
  fflush(stderr);
}

/* Why a run is not ok, from its measurement; "" when it is. */
static void run_error(const lab_measurement *m, double timeout, char *buf, size_t len) {
  int w = 0; /* messages are cut to fit; the return values say so */
  buf[0] = '\0';
  if (m->interrupted)
    snprintf(buf, len, "interrupted");
  else if (m->timed_out)
    snprintf(buf, len, "timed out after %.0f s (--timeout)", timeout);
  else if (m->exec_failed)
    w = snprintf(buf, len, "%.250s", m->err_tail);
  else if (!m->exited)
    snprintf(buf, len, "killed by signal %d (%s)", m->signal, strsignal(m->signal));
  else if (m->status != 0) {
    const char *why = m->status == 1   ? "wrong or failed results"
                      : m->status == 2 ? "usage error"
                      : m->status == 3 ? "missing Python package"
                                       : "failed";
    /* The last line of its stderr says what. */
    const char *last = strrchr(m->err_tail, '\n');
    last = last ? last + 1 : m->err_tail;
    w = snprintf(buf, len, "exit status %d (%s)%s%.160s", m->status, why, *last ? ": " : "",
                 last);
  }
  (void)w;
}

/* Runs one case `repeat` times; fills r. */
static void run_case(lab_result *r, const lab_bench_opts *o, const char *url, const char *cdir,
                     const char *pydir, double timeout, progress *pg) {
  const lab_case *c = &lab_cases[r->case_idx];
  char path[PATH_MAX], scale[32];
  snprintf(scale, sizeof scale, "%g", o->scale);
  int w;
  if (r->impl == LAB_C)
    w = snprintf(path, sizeof path, "%s/%s-%s", cdir, c->num, c->name);
  else
    w = snprintf(path, sizeof path, "%s/%s-%s.py", pydir, c->num, c->name);
  if (w >= (int)sizeof path || access(path, r->impl == LAB_C ? X_OK : R_OK) != 0) {
    w = snprintf(r->error, sizeof r->error, "not found: %.150s%s", path,
                 r->impl == LAB_C ? " (build target weft_study, or set WEFT_STUDY_DIR)"
                                  : " (set WEFT_STUDY_PYDIR)");
    (void)w;
    return;
  }
  char *argv[8];
  int k = 0;
  if (r->impl == LAB_PY) argv[k++] = (char *)python_exe();
  argv[k++] = path;
  argv[k++] = "--url";
  argv[k++] = (char *)url;
  argv[k++] = "--scale";
  argv[k++] = scale;
  argv[k] = NULL;
  double user[16], sys[16], wall[16], pct[16], rss[16];
  lab_measure_opts mo = {.argv = argv, .cpus = r->cores, .timeout_s = timeout, .own_pgrp = 1,
                         .capture = 1, .tick = tick, .tick_arg = pg};
  for (int i = 0; i < o->repeat; i++) {
    pg->run = i + 1;
    lab_measurement m;
    int rc = lab_measure(&mo, &m);
    if (rc != 0) {
      snprintf(r->error, sizeof r->error, "cannot measure: %s", strerror(-rc));
      return;
    }
    run_error(&m, timeout, r->error, sizeof r->error);
    if (r->error[0]) {
      if (pg->tty) fprintf(stderr, "\r\033[K");
      if (!m.interrupted && m.err_tail[0] && !m.exec_failed)
        fprintf(stderr, "weft bench: %s (%s, %d cores) failed; its stderr ends:\n%s\n", pg->label,
                pg->impl, r->cores, m.err_tail);
      return;
    }
    user[i] = m.user_s;
    sys[i] = m.sys_s;
    wall[i] = m.wall_s;
    r->walls[i] = m.wall_s;
    pct[i] = m.wall_s > 0 ? 100 * (m.user_s + m.sys_s) / m.wall_s : 0;
    rss[i] = (double)m.maxrss_kib;
    r->nruns = i + 1;
  }
  int n = r->nruns;
  r->user_s = lab_median(user, n);
  r->sys_s = lab_median(sys, n);
  r->wall_s = lab_median(wall, n);
  r->cpu_pct = lab_median(pct, n);
  r->maxrss_kib = (long)lab_median(rss, n);
  r->ok = 1;
}

static int write_file(const char *path, const lab_report *rep,
                      void (*fn)(FILE *, const lab_report *)) {
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "weft bench: cannot write %s: %s\n", path, strerror(errno));
    return -1;
  }
  fn(f, rep);
  if (fclose(f) != 0) {
    fprintf(stderr, "weft bench: cannot write %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

int weft_cli_bench(int argc, char **argv) {
  lab_bench_opts o;
  char err[256];
  int max_cores = weft_cpu_count();
  int prc = lab_bench_parse(argc, argv, max_cores, &o, err, sizeof err);
  if (prc == 1) {
    lab_bench_usage(stdout);
    return 0;
  }
  if (prc == 2) {
    fprintf(stderr, "weft bench: %s (weft bench --help: the options)\n", err);
    return 2;
  }
  /* Output files: find out now, not after the run, that one cannot be written. */
  const char *outs[] = {o.json, o.markdown, o.svg};
  for (int i = 0; i < 3; i++) {
    FILE *f = outs[i] ? fopen(outs[i], "w") : NULL;
    if (outs[i] && !f) {
      fprintf(stderr, "weft bench: cannot write %s: %s\n", outs[i], strerror(errno));
      return 2;
    }
    if (f) fclose(f);
  }
  if (o.python && check_python() != 0) return 2;

  char cdir[PATH_MAX], pydir[PATH_MAX];
  study_dir(cdir, sizeof cdir);
  const char *pe = getenv("WEFT_STUDY_PYDIR");
  snprintf(pydir, sizeof pydir, "%s", pe && *pe ? pe : WEFT_STUDY_PYDIR_DEFAULT);
  if (!(pe && *pe) && access(pydir, R_OK) != 0) {
    /* Installed: <prefix>/share/weft/python/study, beside <prefix>/libexec. */
    char alt[PATH_MAX + 32];
    snprintf(alt, sizeof alt, "%s/../../share/weft/python/study", cdir);
    if (access(alt, R_OK) == 0 && strlen(alt) < sizeof pydir) memcpy(pydir, alt, strlen(alt) + 1);
  }

  /* Not one case binary: the study was not built (or the path is wrong). */
  int found = 0;
  for (int i = 0; i < LAB_NCASES && !found; i++) {
    char path[PATH_MAX];
    int w = snprintf(path, sizeof path, "%s/%s-%s", cdir, lab_cases[i].num, lab_cases[i].name);
    found = o.sel[i] && w < (int)sizeof path && access(path, X_OK) == 0;
  }
  if (!found) {
    fprintf(stderr,
            "weft bench: none of the selected cases is in %s: build them (target weft_study) "
            "or set WEFT_STUDY_DIR\n",
            cdir);
    return 1;
  }

  /* The server first: nothing has started a thread yet. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  int port = weft_cli_server_start(o.scale, o.port);
  if (port <= 0) {
    weft_cli_server_stop();
    if (g_stop) return 130;
    fprintf(stderr, "weft bench: cannot start the ten-sites server on 127.0.0.1:%d: %s\n", o.port,
            weft_strerror(port));
    return port == -EADDRINUSE ? 2 : 1;
  }
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", port);

  lab_report rep;
  memset(&rep, 0, sizeof rep);
  rep.version = weft_version();
  rep.machine_cpus = max_cores;
  lab_machine_info(&rep);
  rep.scale = o.scale;
  rep.repeat = o.repeat;
  rep.python = o.python;
  rep.ncores = o.ncores;
  memcpy(rep.cores, o.cores, sizeof o.cores);

  int tty = isatty(2);
  fprintf(stderr, "weft bench: server %s, scale %g, repeat %d; measuring fib costs on one core\n",
          url, o.scale, o.repeat);
  c_fib(&rep.fib[LAB_C]);
  rep.have_fib[LAB_C] = 1;
  if (o.python && !g_stop) {
    if (python_fib(&rep.fib[LAB_PY]) == 0)
      rep.have_fib[LAB_PY] = 1;
    else
      fprintf(stderr, "weft bench: could not time Python's fib; Python CPU floors use C's\n");
  }
  if (!rep.have_fib[LAB_PY]) rep.fib[LAB_PY] = rep.fib[LAB_C];

  int nimpl = o.python ? 2 : 1, total = 0;
  /* Case 19 has no Python version, and exists only where MPI was found. */
  int have19 = 0;
  {
    char p19[PATH_MAX];
    const lab_case *c = &lab_cases[LAB_CASE_DISTRIBUTED];
    int w = snprintf(p19, sizeof p19, "%s/%s-%s", cdir, c->num, c->name);
    have19 = w < (int)sizeof p19 && access(p19, X_OK) == 0;
    if (o.sel[LAB_CASE_DISTRIBUTED] && !have19) {
      fprintf(stderr, "weft bench: case %s (%s) skipped: it is built only with MPI "
              "(apt-get install libopenmpi-dev openmpi-bin, then rebuild)\n", c->num, c->name);
      o.sel[LAB_CASE_DISTRIBUTED] = 0;
    }
  }
  for (int i = 0; i < LAB_NCASES; i++)
    total += o.sel[i] * (i == LAB_CASE_DISTRIBUTED ? 1 : nimpl);
  total *= o.ncores;
  lab_result *res = calloc((size_t)total + 1, sizeof *res);
  if (!res) {
    weft_cli_server_stop();
    fprintf(stderr, "weft bench: out of memory\n");
    return 1;
  }
  int n = 0, failed = 0;
  for (int k = 0; k < o.ncores && !g_stop; k++)
    for (int ci = 0; ci < LAB_NCASES && !g_stop; ci++) {
      if (!o.sel[ci]) continue;
      for (int impl = 0; impl < nimpl && !g_stop; impl++) {
        if (ci == LAB_CASE_DISTRIBUTED && impl == LAB_PY) continue;
        lab_result *r = &res[n++];
        r->case_idx = ci;
        r->impl = impl;
        r->cores = o.cores[k];
        r->workers = lab_case_workers(&lab_cases[ci], r->cores);
        const lab_fib_costs *fib = &rep.fib[impl];
        r->floor_s = lab_floor(&lab_cases[ci], r->cores, o.scale, fib, impl == LAB_PY);
        double timeout = o.timeout_s;
        if (!(timeout > 0)) {
          const lab_case *seq = &lab_cases[lab_group_sequential(lab_cases[ci].group)];
          timeout = 10 * lab_floor(seq, 1, o.scale, fib, impl == LAB_PY) + 30;
        }
        char label[96];
        lab_case_label(r, label, sizeof label);
        progress pg = {tty, n, total, label, impl == LAB_C ? "c" : "python", r->cores, 0,
                       o.repeat};
        run_case(r, &o, url, cdir, pydir, timeout, &pg);
        if (g_stop && !r->ok) {
          n--; /* interrupted: not a result */
          break;
        }
        if (tty) fprintf(stderr, "\r\033[K");
        if (r->ok)
          fprintf(stderr, "[%2d/%d] %s (%s, %d core%s): %.3f s wall, floor %.3f s\n", n, total,
                  label, pg.impl, r->cores, r->cores == 1 ? "" : "s", r->wall_s, r->floor_s);
        else
          fprintf(stderr, "[%2d/%d] %s (%s, %d core%s): FAILED: %s\n", n, total, label, pg.impl,
                  r->cores, r->cores == 1 ? "" : "s", r->error);
        failed += !r->ok;
        if (!g_stop && weft_cli_server_died()) {
          fprintf(stderr, "weft bench: the ten-sites server died; stopping the run\n");
          g_stop = 2;
        }
      }
    }
  weft_cli_server_stop();

  /* The fib costs again, now that the cases are done: a neighbour or a
   * cold CPU at the start can make one timing run long, and a floor must be
   * a lower bound, so each n keeps its least cost and the floors follow. */
  if (!g_stop) {
    lab_fib_costs again;
    c_fib(&again);
    for (int i = 0; i < 7; i++)
      if (again.s[i] > 0 && again.s[i] < rep.fib[LAB_C].s[i]) rep.fib[LAB_C].s[i] = again.s[i];
    if (rep.have_fib[LAB_PY] && python_fib(&again) == 0)
      for (int i = 0; i < 7; i++)
        if (again.s[i] > 0 && again.s[i] < rep.fib[LAB_PY].s[i]) rep.fib[LAB_PY].s[i] = again.s[i];
    if (!rep.have_fib[LAB_PY]) rep.fib[LAB_PY] = rep.fib[LAB_C];
    for (int i = 0; i < n; i++)
      res[i].floor_s = lab_floor(&lab_cases[res[i].case_idx], res[i].cores, o.scale,
                                 &rep.fib[res[i].impl], res[i].impl == LAB_PY);
  }

  rep.results = res;
  rep.nresults = n;
  lab_verdicts(res, n);
  lab_conclude(res, n, &rep.concl);
  if (g_stop == 1) fprintf(stderr, "weft bench: interrupted; the results so far:\n");
  lab_report_table(stdout, &rep);
  lab_report_conclusions(stdout, &rep);
  fflush(stdout);
  int wrc = 0;
  if (o.json) wrc |= write_file(o.json, &rep, lab_report_json);
  if (o.markdown) wrc |= write_file(o.markdown, &rep, lab_report_markdown);
  if (o.svg) wrc |= write_file(o.svg, &rep, lab_report_svg);
  free(res);
  if (g_stop == 2) return 1;
  if (g_stop) return 130;
  return failed || wrc ? 1 : 0;
}
