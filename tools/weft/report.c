/*
 * report.c — the lab's results as a text table (stdout), JSON, Markdown
 * and an SVG chart written by hand.
 */
#include "lab.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

static const char *const impl_names[LAB_NIMPL] = {"c", "python"};

void lab_machine_info(lab_report *rep) {
  snprintf(rep->model, sizeof rep->model, "unknown");
  snprintf(rep->kernel, sizeof rep->kernel, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[512];
    while (fgets(line, sizeof line, f)) {
      if (strncmp(line, "model name", 10) != 0 && strncmp(line, "Model", 5) != 0) continue;
      char *colon = strchr(line, ':');
      if (!colon) continue;
      colon++;
      while (*colon == ' ' || *colon == '\t') colon++;
      colon[strcspn(colon, "\n")] = '\0';
      snprintf(rep->model, sizeof rep->model, "%s", colon);
      break;
    }
    fclose(f);
  }
  struct utsname u;
  if (uname(&u) == 0) {
    /* "Linux 6.1.0-13-amd64", cut to fit */
    size_t n = strlen(u.sysname) + 1 + strlen(u.release);
    if (n < sizeof rep->kernel) {
      strcpy(rep->kernel, u.sysname);
      strcat(rep->kernel, " ");
      strcat(rep->kernel, u.release);
    }
  }
}

void lab_case_label(const lab_result *r, char *buf, size_t len) {
  const lab_case *c = &lab_cases[r->case_idx];
  if (c->slots == LAB_SLOTS_IO_POOL || c->slots == LAB_SLOTS_CPU_POOL)
    snprintf(buf, len, "%s-%s (%d worker%s)", c->num, c->name, r->workers,
             r->workers == 1 ? "" : "s");
  else
    snprintf(buf, len, "%s-%s", c->num, c->name);
}

static const lab_result *find_other(const lab_report *rep, const lab_result *r, int impl) {
  for (int i = 0; i < rep->nresults; i++) {
    const lab_result *o = &rep->results[i];
    if (o->impl == impl && o->cores == r->cores && o->case_idx == r->case_idx) return o;
  }
  return NULL;
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0; }

/* ---- text */

void lab_report_table(FILE *f, const lab_report *rep) {
  for (int k = 0; k < rep->ncores; k++) {
    int cores = rep->cores[k];
    fprintf(f, "\n%d core%s (scale %g, median of %d run%s)\n", cores, cores == 1 ? "" : "s",
            rep->scale, rep->repeat, rep->repeat == 1 ? "" : "s");
    fprintf(f, "%-50s %-6s %8s %9s %8s %6s %12s %8s %10s  %s\n", "case", "impl", "user s",
            "kernel s", "wall s", "CPU %", "max RSS KiB", "floor s", "wall/floor", "verdict");
    int last_group = -1;
    for (int i = 0; i < rep->nresults; i++) {
      const lab_result *r = &rep->results[i];
      if (r->cores != cores) continue;
      int g = lab_cases[r->case_idx].group;
      if (g != last_group && last_group >= 0) fputc('\n', f);
      last_group = g;
      char label[96];
      lab_case_label(r, label, sizeof label);
      if (r->ok)
        fprintf(f, "%-50s %-6s %8.2f %9.2f %8.3f %6.0f %12ld %8.3f %10.2f  %s\n", label,
                impl_names[r->impl], r->user_s, r->sys_s, r->wall_s, r->cpu_pct, r->maxrss_kib,
                r->floor_s, ratio(r->wall_s, r->floor_s), r->verdict);
      else
        fprintf(f, "%-50s %-6s %8s %9s %8s %6s %12s %8.3f %10s  FAILED: %s\n", label,
                impl_names[r->impl], "-", "-", "-", "-", "-", r->floor_s, "-", r->error);
      if (r->impl == LAB_PY) {
        const lab_result *c = find_other(rep, r, LAB_C);
        if (c && c->ok && r->ok)
          fprintf(f, "%-50s C/Python: wall %.3f, CPU time %.3f, memory %.3f\n", "",
                  ratio(c->wall_s, r->wall_s), ratio(c->user_s + c->sys_s, r->user_s + r->sys_s),
                  ratio((double)c->maxrss_kib, (double)r->maxrss_kib));
      }
    }
  }
}

static void case_name(int idx, char *buf, size_t len) {
  snprintf(buf, len, "%s-%s", lab_cases[idx].num, lab_cases[idx].name);
}

/* One conclusion sentence per group (prefix: "- " for Markdown). */
static void group_sentence(FILE *f, const lab_group_conclusion *c, const char *prefix) {
  char w[80], s[80];
  if (c->winner < 0) {
    fprintf(f, "%s%s: no case succeeded\n", prefix, lab_group_name(c->group));
    return;
  }
  case_name(c->winner, w, sizeof w);
  fprintf(f, "%s%s: %s wins in %.3f s", prefix, lab_group_name(c->group), w, c->wall_s);
  if (c->sequential >= 0 && c->sequential != c->winner) {
    case_name(c->sequential, s, sizeof s);
    fprintf(f, ", %.1fx faster than %s", c->speedup, s);
  } else if (c->sequential == c->winner) {
    fprintf(f, " (the sequential reference itself)");
  }
  fprintf(f, ", max RSS %ld KiB\n", c->maxrss_kib);
}

static void scaling_sentences(FILE *f, const lab_scaling *s, const char *prefix) {
  char a[80], b[80];
  case_name(s->from_case, a, sizeof a);
  case_name(s->case_idx, b, sizeof b);
  fprintf(f, "%sCPU-bound speedup (%s) from %d to %d cores: %.2fx (%s %.3f s -> %s %.3f s); "
             "Amdahl's serial fraction %.3f\n",
          prefix, impl_names[s->impl], s->from_cores, s->to_cores, s->speedup, a, s->from_wall_s,
          b, s->to_wall_s, s->serial);
  fprintf(f, "%sPredicted speedup:", prefix);
  for (int p = 0; p < 4; p++)
    fprintf(f, "%s %.1fx at %d cores", p ? "," : "", s->predicted[p], lab_predict_cores[p]);
  if (s->serial > 0)
    fprintf(f, "; Amdahl's limit %.1fx\n", 1 / s->serial);
  else
    fprintf(f, "; no serial part measured, so no limit\n");
  fprintf(f, "%sMartelli's category for this CPU work: %s (%s)\n", prefix, s->martelli,
          s->martelli_why);
}

void lab_report_conclusions(FILE *f, const lab_report *rep) {
  const lab_conclusions *cc = &rep->concl;
  fprintf(f, "\nConclusions\n");
  for (int impl = 0; impl < LAB_NIMPL; impl++)
    for (int k = 0; k < rep->ncores; k++) {
      int any = 0;
      for (int i = 0; i < cc->ngroups; i++) {
        const lab_group_conclusion *c = &cc->groups[i];
        if (c->impl != impl || c->cores != rep->cores[k]) continue;
        if (!any)
          fprintf(f, "  %s on %d core%s:\n", impl == LAB_C ? "C" : "Python", rep->cores[k],
                  rep->cores[k] == 1 ? "" : "s");
        any = 1;
        group_sentence(f, c, "    ");
      }
    }
  for (int i = 0; i < cc->nscaling; i++) scaling_sentences(f, &cc->scaling[i], "  ");
  if (cc->nscaling == 0)
    fprintf(f, "  CPU-bound scaling: needs two core counts with CPU cases (e.g. --cores 1,%d)\n",
            rep->machine_cpus > 1 ? rep->machine_cpus : 2);
}

/* ---- JSON */

void lab_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    switch (*p) {
    case '"': fputs("\\\"", f); break;
    case '\\': fputs("\\\\", f); break;
    case '\n': fputs("\\n", f); break;
    case '\r': fputs("\\r", f); break;
    case '\t': fputs("\\t", f); break;
    case '\b': fputs("\\b", f); break;
    case '\f': fputs("\\f", f); break;
    default:
      if (*p < 0x20)
        fprintf(f, "\\u%04x", *p);
      else
        fputc(*p, f);
    }
  }
  fputc('"', f);
}

static void json_num(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.6g", v);
  else
    fputs("null", f);
}

void lab_report_json(FILE *f, const lab_report *rep) {
  fputs("{\"weft_version\": ", f);
  lab_json_string(f, rep->version);
  fprintf(f, ",\n \"machine\": {\"cpus\": %d, \"model\": ", rep->machine_cpus);
  lab_json_string(f, rep->model);
  fputs(", \"kernel\": ", f);
  lab_json_string(f, rep->kernel);
  fputs("},\n \"scale\": ", f);
  json_num(f, rep->scale);
  fprintf(f, ", \"repeat\": %d, \"cores\": [", rep->repeat);
  for (int k = 0; k < rep->ncores; k++) fprintf(f, "%s%d", k ? ", " : "", rep->cores[k]);
  fputs("],\n \"fib_costs_s\": {", f);
  int first = 1;
  for (int impl = 0; impl < LAB_NIMPL; impl++) {
    if (!rep->have_fib[impl]) continue;
    fprintf(f, "%s\"%s\": {", first ? "" : ", ", impl_names[impl]);
    first = 0;
    for (int n = 28; n <= 34; n++) {
      fprintf(f, "%s\"%d\": ", n > 28 ? ", " : "", n);
      json_num(f, rep->fib[impl].s[n - 28]);
    }
    fputc('}', f);
  }
  fputs("},\n \"runs\": [", f);
  for (int i = 0; i < rep->nresults; i++) {
    const lab_result *r = &rep->results[i];
    const lab_case *c = &lab_cases[r->case_idx];
    fprintf(f, "%s\n  {\"case\": \"%s\", \"name\": ", i ? "," : "", c->num);
    lab_json_string(f, c->name);
    fprintf(f, ", \"group\": ");
    lab_json_string(f, lab_group_name(c->group));
    fprintf(f, ", \"impl\": \"%s\", \"cores\": %d, \"workers\": %d, \"ok\": %s",
            impl_names[r->impl], r->cores, r->workers, r->ok ? "true" : "false");
    if (r->ok) {
      fputs(", \"user_s\": ", f);
      json_num(f, r->user_s);
      fputs(", \"sys_s\": ", f);
      json_num(f, r->sys_s);
      fputs(", \"wall_s\": ", f);
      json_num(f, r->wall_s);
      fputs(", \"cpu_pct\": ", f);
      json_num(f, r->cpu_pct);
      fprintf(f, ", \"maxrss_kib\": %ld", r->maxrss_kib);
    } else {
      fputs(", \"user_s\": null, \"sys_s\": null, \"wall_s\": null, \"cpu_pct\": null, "
            "\"maxrss_kib\": null, \"error\": ",
            f);
      lab_json_string(f, r->error);
    }
    fputs(", \"floor_s\": ", f);
    json_num(f, r->floor_s);
    fputs(", \"wall_over_floor\": ", f);
    if (r->ok && r->floor_s > 0)
      json_num(f, r->wall_s / r->floor_s);
    else
      fputs("null", f);
    fputs(", \"verdict\": ", f);
    lab_json_string(f, r->verdict);
    fputs(", \"walls_s\": [", f);
    for (int k = 0; k < r->nruns; k++) {
      if (k) fputs(", ", f);
      json_num(f, r->walls[k]);
    }
    fputs("]}", f);
  }
  fputs("\n ],\n \"conclusions\": {\"groups\": [", f);
  const lab_conclusions *cc = &rep->concl;
  for (int i = 0; i < cc->ngroups; i++) {
    const lab_group_conclusion *c = &cc->groups[i];
    fprintf(f, "%s\n   {\"impl\": \"%s\", \"cores\": %d, \"group\": ", i ? "," : "",
            impl_names[c->impl], c->cores);
    lab_json_string(f, lab_group_name(c->group));
    if (c->winner < 0) {
      fputs(", \"winner\": null}", f);
      continue;
    }
    fprintf(f, ", \"winner\": \"%s\", \"name\": ", lab_cases[c->winner].num);
    lab_json_string(f, lab_cases[c->winner].name);
    fputs(", \"wall_s\": ", f);
    json_num(f, c->wall_s);
    fprintf(f, ", \"maxrss_kib\": %ld, \"sequential\": ", c->maxrss_kib);
    if (c->sequential >= 0) {
      fprintf(f, "\"%s\", \"speedup\": ", lab_cases[c->sequential].num);
      json_num(f, c->speedup);
    } else {
      fputs("null, \"speedup\": null", f);
    }
    fputc('}', f);
  }
  fputs("],\n  \"cpu_scaling\": [", f);
  for (int i = 0; i < cc->nscaling; i++) {
    const lab_scaling *s = &cc->scaling[i];
    fprintf(f, "%s\n   {\"impl\": \"%s\", \"from_case\": \"%s\", \"case\": \"%s\", "
               "\"from_cores\": %d, \"to_cores\": %d, \"from_wall_s\": ",
            i ? "," : "", impl_names[s->impl], lab_cases[s->from_case].num,
            lab_cases[s->case_idx].num, s->from_cores, s->to_cores);
    json_num(f, s->from_wall_s);
    fputs(", \"to_wall_s\": ", f);
    json_num(f, s->to_wall_s);
    fputs(", \"speedup\": ", f);
    json_num(f, s->speedup);
    fputs(", \"serial_fraction\": ", f);
    json_num(f, s->serial);
    fputs(", \"predicted_speedup\": {", f);
    for (int p = 0; p < 4; p++) {
      fprintf(f, "%s\"%d\": ", p ? ", " : "", lab_predict_cores[p]);
      json_num(f, s->predicted[p]);
    }
    fputs("}, \"martelli\": ", f);
    lab_json_string(f, s->martelli);
    fputs(", \"martelli_why\": ", f);
    lab_json_string(f, s->martelli_why);
    fputc('}', f);
  }
  fputs("]}\n}\n", f);
}

/* ---- Markdown */

void lab_report_markdown(FILE *f, const lab_report *rep) {
  fprintf(f, "# weft bench\n\nweft %s on %s (%d CPUs, %s); latency scale %g, median of %d run%s.\n",
          rep->version, rep->model, rep->machine_cpus, rep->kernel, rep->scale, rep->repeat,
          rep->repeat == 1 ? "" : "s");
  for (int k = 0; k < rep->ncores; k++) {
    int cores = rep->cores[k];
    fprintf(f, "\n## %d core%s\n\n", cores, cores == 1 ? "" : "s");
    fprintf(f, "| case | impl | user s | kernel s | wall s | CPU %% | max RSS KiB | floor s | "
               "wall/floor | verdict |\n");
    fprintf(f, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (int i = 0; i < rep->nresults; i++) {
      const lab_result *r = &rep->results[i];
      if (r->cores != cores) continue;
      char label[96];
      lab_case_label(r, label, sizeof label);
      if (r->ok)
        fprintf(f, "| %s | %s | %.2f | %.2f | %.3f | %.0f | %ld | %.3f | %.2f | %s |\n", label,
                impl_names[r->impl], r->user_s, r->sys_s, r->wall_s, r->cpu_pct, r->maxrss_kib,
                r->floor_s, ratio(r->wall_s, r->floor_s), r->verdict);
      else
        fprintf(f, "| %s | %s | - | - | - | - | - | %.3f | - | FAILED |\n", label,
                impl_names[r->impl], r->floor_s);
    }
    if (rep->python) {
      fprintf(f, "\nC/Python ratios (below 1: C is faster / uses less):\n\n"
                 "| case | wall | CPU time | memory |\n|---|---:|---:|---:|\n");
      for (int i = 0; i < rep->nresults; i++) {
        const lab_result *p = &rep->results[i];
        if (p->cores != cores || p->impl != LAB_PY) continue;
        const lab_result *c = find_other(rep, p, LAB_C);
        if (!c || !c->ok || !p->ok) continue;
        fprintf(f, "| %s-%s | %.3f | %.3f | %.3f |\n", lab_cases[p->case_idx].num,
                lab_cases[p->case_idx].name, ratio(c->wall_s, p->wall_s),
                ratio(c->user_s + c->sys_s, p->user_s + p->sys_s),
                ratio((double)c->maxrss_kib, (double)p->maxrss_kib));
      }
    }
  }
  fprintf(f, "\n## Conclusions\n\n");
  const lab_conclusions *cc = &rep->concl;
  for (int impl = 0; impl < LAB_NIMPL; impl++)
    for (int k = 0; k < rep->ncores; k++) {
      int any = 0;
      for (int i = 0; i < cc->ngroups; i++) {
        const lab_group_conclusion *c = &cc->groups[i];
        if (c->impl != impl || c->cores != rep->cores[k]) continue;
        if (!any)
          fprintf(f, "%s on %d core%s:\n\n", impl == LAB_C ? "C" : "Python", rep->cores[k],
                  rep->cores[k] == 1 ? "" : "s");
        any = 1;
        group_sentence(f, c, "- ");
      }
      if (any) fputc('\n', f);
    }
  for (int i = 0; i < cc->nscaling; i++) scaling_sentences(f, &cc->scaling[i], "- ");
}

/* ---- SVG: one panel per core count; per case a bar per implementation,
 * wall time on a log scale (the cases span three orders of magnitude). */

static void svg_text(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '<')
      fputs("&lt;", f);
    else if (*s == '>')
      fputs("&gt;", f);
    else if (*s == '&')
      fputs("&amp;", f);
    else
      fputc(*s, f);
  }
}

void lab_report_svg(FILE *f, const lab_report *rep) {
  const int label_w = 250, bar_w = 260, value_w = 70, panel_w = label_w + bar_w + value_w + 20;
  const int bar_h = 10, top = 84;
  int nimpl = rep->python ? 2 : 1;
  const char *colors[LAB_NIMPL] = {"#1f77b4", "#ff7f0e"};
  /* Range of the log axis over every ok run. */
  double lo = INFINITY, hi = 0;
  for (int i = 0; i < rep->nresults; i++) {
    const lab_result *r = &rep->results[i];
    if (!r->ok || !(r->wall_s > 0)) continue;
    if (r->wall_s < lo) lo = r->wall_s;
    if (r->wall_s > hi) hi = r->wall_s;
  }
  for (int i = 0; i < rep->nresults; i++) /* floors are drawn too */
    if (rep->results[i].floor_s > 0 && rep->results[i].floor_s < lo) lo = rep->results[i].floor_s;
  if (!(hi > 0)) lo = 0.01, hi = 10;
  double d0 = floor(log10(lo)), d1 = ceil(log10(hi));
  if (d1 <= d0) d1 = d0 + 1;
  /* Rows: the cases measured (the same for every core count). */
  int sel[LAB_NCASES] = {0};
  for (int i = 0; i < rep->nresults; i++) sel[rep->results[i].case_idx] = 1;
  int rows = 0, groups = 0, last = -1;
  for (int c = 0; c < LAB_NCASES; c++)
    if (sel[c]) {
      rows++;
      if (lab_cases[c].group != last) groups++;
      last = lab_cases[c].group;
    }
  int row_h = nimpl * bar_h + 8, group_h = 22;
  int height = top + rows * row_h + groups * group_h + 40;
  int width = rep->ncores * panel_w + 20;
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
          "viewBox=\"0 0 %d %d\" "
          "font-family=\"sans-serif\" font-size=\"11\">\n",
          width, height, width, height);
  fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
  fprintf(f, "<text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">weft bench: wall time "
             "per case (log scale, shorter is better)</text>\n");
  fprintf(f, "<text x=\"10\" y=\"38\">scale %g, median of %d; ", rep->scale, rep->repeat);
  svg_text(f, rep->model);
  fprintf(f, "</text>\n");
  for (int impl = 0; impl < nimpl; impl++)
    fprintf(f, "<rect x=\"%d\" y=\"46\" width=\"12\" height=\"10\" fill=\"%s\"/><text x=\"%d\" "
               "y=\"55\">%s</text>\n",
            10 + impl * 90, colors[impl], 26 + impl * 90, impl == LAB_C ? "C (weft)" : "Python");
  fprintf(f, "<line x1=\"%d\" y1=\"45\" x2=\"%d\" y2=\"57\" stroke=\"black\" stroke-width=\"1.5\"/>"
             "<text x=\"%d\" y=\"55\">floor: the least its model could take</text>\n",
          16 + nimpl * 90, 16 + nimpl * 90, 22 + nimpl * 90);
  for (int k = 0; k < rep->ncores; k++) {
    int cores = rep->cores[k], x0 = 10 + k * panel_w, bx = x0 + label_w;
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\" font-weight=\"bold\">%d core%s</text>\n",
            bx, top - 2, cores, cores == 1 ? "" : "s");
    int y_end = height - 30;
    for (double d = d0; d <= d1 + 1e-9; d++) { /* grid lines at decades */
      double gx = bx + (d - d0) / (d1 - d0) * bar_w;
      fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", gx, top,
              gx, y_end);
      fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#666\">%g s</text>\n", gx,
              y_end + 14, pow(10, d));
    }
    int y = top, lastg = -1;
    for (int c = 0; c < LAB_NCASES; c++) {
      if (!sel[c]) continue;
      if (lab_cases[c].group != lastg) {
        lastg = lab_cases[c].group;
        y += group_h;
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\" fill=\"#444\">%s</text>\n", x0,
                y - 6, lab_group_name(lastg));
      }
      fprintf(f, "<text x=\"%d\" y=\"%d\">%s-", x0, y + nimpl * bar_h / 2 + 4, lab_cases[c].num);
      svg_text(f, lab_cases[c].name);
      fputs("</text>\n", f);
      for (int impl = 0; impl < nimpl; impl++) {
        const lab_result *r = NULL;
        for (int i = 0; i < rep->nresults && !r; i++) {
          const lab_result *q = &rep->results[i];
          if (q->case_idx == c && q->cores == cores && q->impl == impl) r = q;
        }
        int by = y + impl * bar_h;
        if (!r) continue;
        if (!r->ok) {
          fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#c00\">FAILED</text>\n", bx + 2, by + 9);
          continue;
        }
        double v = r->wall_s > 0 ? r->wall_s : pow(10, d0);
        double w = (log10(v) - d0) / (d1 - d0) * bar_w;
        if (w < 1) w = 1;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>%s %s: "
                   "%.3f s</title></rect>\n",
                bx, by, w, bar_h - 1, colors[impl], lab_cases[c].num, impl_names[impl], r->wall_s);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"9\">%.3g s</text>\n", bx + w + 3,
                by + 8, r->wall_s);
        if (r->floor_s > 0) { /* the floor: how close the bar came to it */
          double fx = bx + (log10(r->floor_s) - d0) / (d1 - d0) * bar_w;
          if (fx >= bx && fx <= bx + bar_w)
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\" "
                       "stroke-width=\"1.5\"><title>floor %.3f s</title></line>\n",
                    fx, by - 1, fx, by + bar_h, r->floor_s);
        }
      }
      y += row_h;
    }
  }
  fputs("</svg>\n", f);
}
