/*
 * opts.c — the options of `weft bench`, parsed strictly: every mistake is
 * a usage error with a message that says what would be right.
 */
#include "lab.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void lab_bench_usage(FILE *f) {
  fprintf(f,
          "usage: weft bench [options]\n"
          "Runs the study's 18 cases (examples/study; with MPI a 19th, cpu-distributed,\n"
          "on the mpi executor's ranks) against the ten-sites server it\n"
          "starts itself, measures each as /usr/bin/time -v does (children included),\n"
          "and prints per core count: case | user s | kernel s | wall s | CPU %% |\n"
          "max RSS KiB | floor s | wall/floor | verdict, then the conclusions.\n"
          "  --cases LIST    numbers (01,06) or groups (io, cpu, io+cpu, io+io_blocking);\n"
          "                  default all\n"
          "  --cores LIST    core counts to run on, by CPU affinity (default 1,N where N\n"
          "                  is what this process may use)\n"
          "  --scale X       latency scale of the server, > 0 (default 1.0)\n"
          "  --repeat N      runs per case; medians are reported (default 3)\n"
          "  --python        also run the Python versions (bench/python/study) with\n"
          "                  /usr/bin/python3 (needs python3-requests and python3-httpx)\n"
          "  --quick         --scale 0.1 --repeat 1 (explicit options still win)\n"
          "  --timeout S     per-case time limit in seconds (default: 10 x the\n"
          "                  sequential floor of its group + 30 s)\n"
          "  --port P        the server's port (default: any free port)\n"
          "  --json FILE     write the results as JSON\n"
          "  --markdown FILE write the tables as Markdown\n"
          "  --svg FILE      write a chart of the wall times\n"
          "Environment: WEFT_STUDY_DIR (C cases; default <weft's dir>/study),\n"
          "WEFT_STUDY_PYDIR (Python cases), WEFT_PYTHON (default /usr/bin/python3).\n"
          "Exit status: 0 all cases ok, 1 some case failed, 2 usage error, 130 interrupted.\n");
}

static int num(const char *s, double *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

int lab_bench_parse(int argc, char **argv, int max_cores, lab_bench_opts *o, char *err,
                    size_t errlen) {
  memset(o, 0, sizeof *o);
  for (int i = 0; i < LAB_NCASES; i++) o->sel[i] = 1;
  o->cores[0] = 1;
  o->ncores = 1;
  if (max_cores > 1) o->cores[o->ncores++] = max_cores;
  int have_scale = 0, have_repeat = 0;
  o->scale = 1.0;
  o->repeat = 3;
  err[0] = '\0';
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    double d;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
    if (!strcmp(a, "--python")) {
      o->python = 1;
      continue;
    }
    if (!strcmp(a, "--quick")) {
      o->quick = 1;
      continue;
    }
    int takes = !strcmp(a, "--cases") || !strcmp(a, "--cores") || !strcmp(a, "--scale") ||
                !strcmp(a, "--repeat") || !strcmp(a, "--json") || !strcmp(a, "--markdown") ||
                !strcmp(a, "--svg") || !strcmp(a, "--timeout") || !strcmp(a, "--port");
    if (!takes) {
      snprintf(err, errlen, "unknown option '%s'", a);
      return 2;
    }
    if (!v) {
      snprintf(err, errlen, "%s needs a value", a);
      return 2;
    }
    i++;
    if (!strcmp(a, "--cases")) {
      if (lab_parse_cases(v, o->sel, err, errlen) != 0) return 2;
    } else if (!strcmp(a, "--cores")) {
      int n = lab_parse_cores(v, max_cores, o->cores, 16, err, errlen);
      if (n < 0) return 2;
      o->ncores = n;
    } else if (!strcmp(a, "--scale")) {
      if (num(v, &d) != 0 || !(d > 0)) {
        snprintf(err, errlen, "--scale wants a number > 0, not '%s'", v);
        return 2;
      }
      o->scale = d;
      have_scale = 1;
    } else if (!strcmp(a, "--repeat")) {
      if (num(v, &d) != 0 || d < 1 || d > 16 || d != floor(d)) {
        snprintf(err, errlen, "--repeat wants a whole number 1..16, not '%s'", v);
        return 2;
      }
      o->repeat = (int)d;
      have_repeat = 1;
    } else if (!strcmp(a, "--timeout")) {
      if (num(v, &d) != 0 || !(d > 0)) {
        snprintf(err, errlen, "--timeout wants seconds > 0, not '%s'", v);
        return 2;
      }
      o->timeout_s = d;
    } else if (!strcmp(a, "--port")) {
      if (num(v, &d) != 0 || d < 0 || d > 65535 || d != floor(d)) {
        snprintf(err, errlen, "--port wants 0..65535, not '%s'", v);
        return 2;
      }
      o->port = (int)d;
    } else if (!strcmp(a, "--json")) {
      o->json = v;
    } else if (!strcmp(a, "--markdown")) {
      o->markdown = v;
    } else {
      o->svg = v;
    }
  }
  if (o->quick) {
    if (!have_scale) o->scale = 0.1;
    if (!have_repeat) o->repeat = 1;
  }
  return 0;
}
