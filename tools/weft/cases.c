/*
 * cases.c — the study's 18 cases (and a 19th, cpu-distributed) as data: what
 * each model may run at once,
 * which work it does, and the parsing of --cases and --cores.
 */
#include "lab.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* num, name, group, slots, cpu_work, threads, after_fetch, n, sequential */
const lab_case lab_cases[LAB_NCASES] = {
    {"01", "io-sequential", LAB_IO, LAB_SLOTS_ONE, 0, 0, 0, 30, 1},
    {"02", "io-threads", LAB_IO, LAB_SLOTS_ALL, 0, 1, 0, 30, 0},
    {"03", "io-processes", LAB_IO, LAB_SLOTS_ALL, 0, 0, 0, 30, 0},
    {"04", "io-thread_pool", LAB_IO, LAB_SLOTS_IO_POOL, 0, 1, 0, 30, 0},
    {"05", "io-process_pool", LAB_IO, LAB_SLOTS_CPU_POOL, 0, 0, 0, 30, 0},
    {"06", "io-async", LAB_IO, LAB_SLOTS_ALL, 0, 0, 0, 30, 0},
    {"07", "io-async-sequential", LAB_IO, LAB_SLOTS_ONE, 0, 0, 0, 30, 0},
    {"08", "cpu-sequential", LAB_CPU, LAB_SLOTS_ONE, 1, 0, 0, 21, 1},
    {"09", "cpu-threads", LAB_CPU, LAB_SLOTS_ALL, 1, 1, 0, 21, 0},
    {"10", "cpu-processes", LAB_CPU, LAB_SLOTS_ALL, 1, 0, 0, 21, 0},
    {"11", "cpu-thread_pool", LAB_CPU, LAB_SLOTS_IO_POOL, 1, 1, 0, 21, 0},
    {"12", "cpu-process_pool", LAB_CPU, LAB_SLOTS_CPU_POOL, 1, 0, 0, 21, 0},
    /* 13: fib on the loop itself — one at a time, on the loop's thread. */
    {"13", "io+cpu-async", LAB_IOCPU, LAB_SLOTS_ONE, 1, 1, 1, 10, 1},
    {"14", "io+cpu-async+thread_pool", LAB_IOCPU, LAB_SLOTS_IO_POOL, 1, 1, 1, 10, 0},
    {"15", "io+cpu-async+process_pool", LAB_IOCPU, LAB_SLOTS_CPU_POOL, 1, 0, 1, 10, 0},
    /* 16: the blocking fetch blocks the loop — one at a time. */
    {"16", "io+io_blocking-async", LAB_IOBLOCK, LAB_SLOTS_ONE, 0, 0, 1, 20, 1},
    {"17", "io+io_blocking-async+thread_pool", LAB_IOBLOCK, LAB_SLOTS_IO_POOL, 0, 1, 1, 20, 0},
    {"18", "io+io_blocking-async+process_pool", LAB_IOBLOCK, LAB_SLOTS_CPU_POOL, 0, 0, 1, 20, 0},
    /* 19: fib over the mpi executor's worker ranks (one per core). */
    {"19", "cpu-distributed", LAB_CPU, LAB_SLOTS_CPU_POOL, 1, 0, 0, 21, 0},
};

static const char *const group_names[LAB_NGROUPS] = {"io", "cpu", "io+cpu", "io+io_blocking"};

const char *lab_group_name(int group) {
  return group >= 0 && group < LAB_NGROUPS ? group_names[group] : "?";
}

int lab_group_sequential(int group) {
  for (int i = 0; i < LAB_NCASES; i++)
    if (lab_cases[i].group == group && lab_cases[i].sequential) return i;
  return -1;
}

int lab_case_workers(const lab_case *c, int cores) {
  switch (c->slots) {
  case LAB_SLOTS_ONE: return 1;
  case LAB_SLOTS_IO_POOL: return cores + 4 < 32 ? cores + 4 : 32;
  case LAB_SLOTS_CPU_POOL: return cores;
  default: return 0;
  }
}

/* One comma-separated token into out (trimmed); returns the rest or NULL. */
static const char *next_token(const char *s, char *out, size_t cap) {
  while (*s == ' ') s++;
  size_t k = 0;
  while (*s && *s != ',') {
    if (k + 1 < cap) out[k++] = *s;
    s++;
  }
  while (k > 0 && out[k - 1] == ' ') k--;
  out[k] = '\0';
  return *s == ',' ? s + 1 : NULL;
}

int lab_parse_cases(const char *list, int sel[LAB_NCASES], char *err, size_t errlen) {
  memset(sel, 0, sizeof(int) * LAB_NCASES);
  if (!list || !*list) {
    snprintf(err, errlen, "--cases wants a list such as 01,06 or io,cpu");
    return -1;
  }
  const char *p = list;
  char tok[64];
  while (p) {
    p = next_token(p, tok, sizeof tok);
    if (!tok[0]) {
      snprintf(err, errlen, "--cases: empty item in '%s'", list);
      return -1;
    }
    int found = 0;
    if (!strcmp(tok, "all")) {
      for (int i = 0; i < LAB_NCASES; i++) sel[i] = 1;
      found = 1;
    }
    for (int g = 0; g < LAB_NGROUPS && !found; g++)
      if (!strcmp(tok, group_names[g])) {
        for (int i = 0; i < LAB_NCASES; i++)
          if (lab_cases[i].group == g) sel[i] = 1;
        found = 1;
      }
    if (!found && isdigit((unsigned char)tok[0])) {
      char *end;
      long v = strtol(tok, &end, 10);
      if (*end == '\0' && v >= 1 && v <= LAB_NCASES) {
        sel[v - 1] = 1;
        found = 1;
      }
    }
    for (int i = 0; i < LAB_NCASES && !found; i++) {
      char full[80];
      snprintf(full, sizeof full, "%s-%s", lab_cases[i].num, lab_cases[i].name);
      if (!strcmp(tok, full) || !strcmp(tok, lab_cases[i].name)) {
        sel[i] = 1;
        found = 1;
      }
    }
    if (!found) {
      snprintf(err, errlen,
               "--cases: unknown case or group '%s' (cases 01..19, groups io, cpu, "
               "io+cpu, io+io_blocking, or all)",
               tok);
      return -1;
    }
  }
  return 0;
}

int lab_parse_cores(const char *list, int max, int *out, int cap, char *err, size_t errlen) {
  if (!list || !*list) {
    snprintf(err, errlen, "--cores wants a list such as 1,2");
    return -1;
  }
  int n = 0;
  const char *p = list;
  char tok[32];
  while (p) {
    p = next_token(p, tok, sizeof tok);
    char *end;
    long v = tok[0] ? strtol(tok, &end, 10) : 0;
    if (!tok[0] || *end || v < 1) {
      snprintf(err, errlen, "--cores: '%s' is not a number of cores >= 1", tok);
      return -1;
    }
    if (v > max) {
      snprintf(err, errlen, "--cores: %ld is more than the %d CPU%s this process may use", v,
               max, max == 1 ? "" : "s");
      return -1;
    }
    int dup = 0;
    for (int i = 0; i < n; i++) dup |= out[i] == (int)v;
    if (dup) continue;
    if (n == cap) {
      snprintf(err, errlen, "--cores: at most %d values", cap);
      return -1;
    }
    /* insert sorted */
    int i = n++;
    while (i > 0 && out[i - 1] > v) {
      out[i] = out[i - 1];
      i--;
    }
    out[i] = (int)v;
  }
  return n;
}
