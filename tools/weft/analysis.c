/*
 * analysis.c — from measurements to words: medians, each case's verdict
 * within its workload group, and the conclusions (winners, speedups,
 * Amdahl's serial fraction, Martelli's category). Nothing here is written
 * by hand per case; docs/LAB.md states the rules.
 */
#include "lab.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const int lab_predict_cores[4] = {4, 8, 16, 64};

double lab_median(double *v, int n) {
  if (n <= 0) return 0;
  for (int i = 1; i < n; i++) {
    double x = v[i];
    int j = i;
    while (j > 0 && v[j - 1] > x) {
      v[j] = v[j - 1];
      j--;
    }
    v[j] = x;
  }
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int same_cell(const lab_result *a, const lab_result *b) {
  return a->impl == b->impl && a->cores == b->cores &&
         lab_cases[a->case_idx].group == lab_cases[b->case_idx].group;
}

void lab_verdicts(lab_result *r, int n) {
  for (int i = 0; i < n; i++) {
    if (!r[i].ok) {
      snprintf(r[i].verdict, sizeof r[i].verdict, "FAILED");
      continue;
    }
    double best = INFINITY, seq = -1;
    int seq_idx = lab_group_sequential(lab_cases[r[i].case_idx].group);
    for (int j = 0; j < n; j++) {
      if (!r[j].ok || !same_cell(&r[i], &r[j])) continue;
      if (r[j].wall_s < best) best = r[j].wall_s;
      if (r[j].case_idx == seq_idx) seq = r[j].wall_s;
    }
    double w = r[i].wall_s;
    if (w <= best)
      snprintf(r[i].verdict, sizeof r[i].verdict, "fastest of its group");
    else if (w <= best * 1.10)
      snprintf(r[i].verdict, sizeof r[i].verdict, "within 10%% of the fastest");
    else if (seq > 0 && r[i].case_idx != seq_idx && w > seq * 1.10) /* beyond noise */
      snprintf(r[i].verdict, sizeof r[i].verdict, "slower than sequential");
    else
      snprintf(r[i].verdict, sizeof r[i].verdict, "%.1fx the fastest", best > 0 ? w / best : 0);
  }
}

double lab_amdahl_serial(double speedup, int n) {
  if (n <= 1 || !(speedup > 0)) return 1;
  double s = ((double)n / speedup - 1) / (double)(n - 1);
  return s < 0 ? 0 : s > 1 ? 1 : s;
}

double lab_amdahl_speedup(double serial, int p) {
  if (p < 1) p = 1;
  return 1 / (serial + (1 - serial) / (double)p);
}

const char *lab_martelli(double serial, double measured_speedup, double one_core_s) {
  if (measured_speedup < 1.2 || one_core_s < LAB_MARTELLI_SMALL_S) return "1 core";
  /* Beyond 8 cores, does doubling to 16 still give a quarter more? */
  if (lab_amdahl_speedup(serial, 16) < 1.25 * lab_amdahl_speedup(serial, 8)) return "2-8 cores";
  return "9+ cores (distributed)";
}

static const lab_result *find(const lab_result *r, int n, int impl, int cores, int case_idx) {
  for (int i = 0; i < n; i++)
    if (r[i].impl == impl && r[i].cores == cores && r[i].case_idx == case_idx) return &r[i];
  return NULL;
}

void lab_conclude(const lab_result *r, int n, lab_conclusions *out) {
  memset(out, 0, sizeof *out);
  int max_groups = (int)(sizeof out->groups / sizeof out->groups[0]);
  /* Winners: one per (impl, cores, group) that was measured. */
  for (int i = 0; i < n; i++) {
    int g = lab_cases[r[i].case_idx].group, seen = 0;
    for (int k = 0; k < out->ngroups; k++) {
      const lab_group_conclusion *c = &out->groups[k];
      seen |= c->impl == r[i].impl && c->cores == r[i].cores && c->group == g;
    }
    if (seen || out->ngroups == max_groups) continue;
    lab_group_conclusion *c = &out->groups[out->ngroups++];
    c->impl = r[i].impl;
    c->cores = r[i].cores;
    c->group = g;
    c->winner = -1;
    c->sequential = -1;
    double best = INFINITY;
    for (int j = 0; j < n; j++) {
      if (!r[j].ok || !same_cell(&r[i], &r[j])) continue;
      if (r[j].wall_s < best) {
        best = r[j].wall_s;
        c->winner = r[j].case_idx;
        c->wall_s = r[j].wall_s;
        c->maxrss_kib = r[j].maxrss_kib;
      }
    }
    const lab_result *seq = find(r, n, r[i].impl, r[i].cores, lab_group_sequential(g));
    if (seq && seq->ok && c->winner >= 0) {
      c->sequential = seq->case_idx;
      c->speedup = c->wall_s > 0 ? seq->wall_s / c->wall_s : 0;
    }
  }
  /* CPU scaling: the best CPU case on the fewest cores measured against
   * the best on the most (the best model for each machine size: on one
   * core that may be the sequential case, on more a pool). */
  for (int impl = 0; impl < LAB_NIMPL; impl++) {
    int lo = 0, hi = 0;
    for (int i = 0; i < n; i++) {
      if (r[i].impl != impl) continue;
      if (!lo || r[i].cores < lo) lo = r[i].cores;
      if (r[i].cores > hi) hi = r[i].cores;
    }
    if (!lo || lo == hi) continue;
    const lab_result *a = NULL, *b = NULL;
    for (int i = 0; i < n; i++) {
      if (r[i].impl != impl || !r[i].ok || lab_cases[r[i].case_idx].group != LAB_CPU) continue;
      if (r[i].cores == lo && (!a || r[i].wall_s < a->wall_s)) a = &r[i];
      if (r[i].cores == hi && (!b || r[i].wall_s < b->wall_s)) b = &r[i];
    }
    if (!a || !b || !(b->wall_s > 0)) continue;
    lab_scaling *s = &out->scaling[out->nscaling++];
    s->impl = impl;
    s->from_case = a->case_idx;
    s->case_idx = b->case_idx;
    s->from_cores = lo;
    s->to_cores = hi;
    s->from_wall_s = a->wall_s;
    s->to_wall_s = b->wall_s;
    s->speedup = a->wall_s / b->wall_s;
    /* Amdahl over the ratio of core counts (1 -> N: N). */
    int ratio = hi / lo;
    s->serial = lab_amdahl_serial(s->speedup, ratio > 1 ? ratio : 2);
    for (int p = 0; p < 4; p++)
      s->predicted[p] = lab_amdahl_speedup(s->serial, lab_predict_cores[p]);
    double one_core = lo == 1 ? a->wall_s : a->wall_s * lo;
    s->martelli = lab_martelli(s->serial, s->speedup, one_core);
    double gain = lab_amdahl_speedup(s->serial, 16) / lab_amdahl_speedup(s->serial, 8);
    if (s->speedup < 1.2)
      snprintf(s->martelli_why, sizeof s->martelli_why, "%d cores gave only %.2fx", hi, s->speedup);
    else if (one_core < LAB_MARTELLI_SMALL_S)
      snprintf(s->martelli_why, sizeof s->martelli_why,
               "one core does all of this CPU work in %.3f s", one_core);
    else
      snprintf(s->martelli_why, sizeof s->martelli_why,
               "by Amdahl, 16 cores would be %.0f%% faster than 8", (gain - 1) * 100);
  }
}
