/*
 * weft time — the lab's measurement (measure.c) for any command: user and
 * kernel time, wall time, CPU % and max RSS of the command and all its
 * descendants, printed like `/usr/bin/time -v` (on stderr).
 */
#include "cli.h"
#include "lab.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: weft time [--cores K] [--timeout S] [--] CMD [ARG...]\n"
          "Runs CMD and prints, on stderr, what /usr/bin/time -v would: user and\n"
          "kernel time, wall time, CPU %% and max RSS, children included.\n"
          "  --cores K    run on the first K CPUs this process may use\n"
          "  --timeout S  kill CMD (and what it started) after S seconds\n"
          "Exit status: CMD's; 128+N if killed by signal N; 127 if it cannot run.\n");
}

static void print_elapsed(double s) {
  long cs = (long)(s * 100 + 0.5);
  long h = cs / 360000, m = cs / 6000 % 60, sec = cs / 100 % 60, frac = cs % 100;
  if (h)
    fprintf(stderr, "%ld:%02ld:%02ld", h, m, sec);
  else
    fprintf(stderr, "%ld:%02ld.%02ld", m, sec, frac);
}

int weft_cli_time(int argc, char **argv) {
  int cores = 0, i = 1;
  double timeout = 0;
  for (; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--")) {
      i++;
      break;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--cores") && v) {
      int max = weft_cpu_count();
      if (weft_cli_parse_int(argv[++i], 1, max, &cores) != 0) {
        fprintf(stderr,
                "weft time: --cores wants 1..%d (the CPUs this process may use), not '%s'\n", max,
                argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--timeout") && v) {
      if (weft_cli_parse_double(argv[++i], &timeout) != 0 || !(timeout > 0)) {
        fprintf(stderr, "weft time: --timeout wants seconds > 0, not '%s'\n", argv[i]);
        return 2;
      }
    } else if (a[0] == '-') {
      fprintf(stderr, "weft time: unknown or incomplete option '%s'\n", a);
      usage(stderr);
      return 2;
    } else {
      break;
    }
  }
  if (i >= argc) {
    fprintf(stderr, "weft time: no command given\n");
    usage(stderr);
    return 2;
  }
  /* As time(1): the command shares our terminal and process group and gets
   * Ctrl-C itself; we wait for it to decide. */
  signal(SIGINT, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  lab_measure_opts o = {.argv = argv + i, .cpus = cores, .timeout_s = timeout};
  lab_measurement m;
  int rc = lab_measure(&o, &m);
  if (rc != 0) {
    fprintf(stderr, "weft time: cannot measure: %s\n", strerror(-rc));
    return 1;
  }
  if (m.exec_failed) fprintf(stderr, "weft time: %s\n", m.err_tail);
  if (m.timed_out) fprintf(stderr, "weft time: killed after the %g s time limit\n", timeout);
  fprintf(stderr, "\tCommand being timed: \"");
  for (int k = i; k < argc; k++) fprintf(stderr, "%s%s", k > i ? " " : "", argv[k]);
  fprintf(stderr, "\"\n");
  fprintf(stderr, "\tUser time (seconds): %.2f\n", m.user_s);
  fprintf(stderr, "\tSystem time (seconds): %.2f\n", m.sys_s);
  fprintf(stderr, "\tPercent of CPU this job got: %.0f%%\n",
          m.wall_s > 0 ? 100 * (m.user_s + m.sys_s) / m.wall_s : 0.0);
  fprintf(stderr, "\tElapsed (wall clock) time (h:mm:ss or m:ss): ");
  print_elapsed(m.wall_s);
  fprintf(stderr, "\n\tElapsed (wall clock) time (seconds): %.3f\n", m.wall_s);
  fprintf(stderr, "\tMaximum resident set size (kbytes): %ld\n", m.maxrss_kib);
  if (m.exited) {
    fprintf(stderr, "\tExit status: %d\n", m.status);
    return m.status;
  }
  fprintf(stderr, "\tCommand terminated by signal %d\n", m.signal);
  return 128 + m.signal;
}
