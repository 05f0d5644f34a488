/*
 * weft — the command-line lab. `weft bench` reproduces the study's 18 cases;
 * `weft fetch`, `weft serve` and `weft time` are its parts on their own.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int weft_cli_parse_int(const char *s, int lo, int hi, int *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

int weft_cli_parse_double(const char *s, double *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end) return -1;
  *out = v;
  return 0;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: weft COMMAND [options]   (weft COMMAND --help for its options)\n"
          "  bench   run the study's 18 cases (+ cpu-distributed with MPI), measured, with floors and verdicts\n"
          "  time    measure any command as /usr/bin/time -v does, children included\n"
          "  fetch   fetch URLs concurrently on any executor\n"
          "  serve   the study's ten-sites HTTP server\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version")) {
    printf("weft %s\n", weft_version());
    return 0;
  }
  if (!strcmp(cmd, "serve")) return weft_cli_serve(argc - 1, argv + 1);
  if (!strcmp(cmd, "bench")) return weft_cli_bench(argc - 1, argv + 1);
  if (!strcmp(cmd, "time")) return weft_cli_time(argc - 1, argv + 1);
  if (!strcmp(cmd, "fetch")) return weft_cli_fetch(argc - 1, argv + 1);
  fprintf(stderr, "weft: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
