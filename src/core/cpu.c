/* cpu.c — how many CPUs this process may really use.
 *
 * Two limits apply: the affinity mask (taskset, cpusets) and the cgroup CPU
 * quota (a container given "1.5 CPUs" may have 64 CPUs in its mask but gets
 * 1.5 CPUs of time). A pool sized by the mask alone would oversubscribe the
 * quota, so the answer is min(mask, ceil(quota / period)) along the whole
 * cgroup path (a parent's quota bounds its children too). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int affinity_count(void) {
  /* Large masks: grow until sched_getaffinity accepts the size. */
  for (int ncpu = 1024; ncpu <= (1 << 20); ncpu *= 2) {
    size_t sz = CPU_ALLOC_SIZE(ncpu);
    cpu_set_t *set = CPU_ALLOC(ncpu);
    if (!set) break;
    if (sched_getaffinity(0, sz, set) == 0) {
      int n = CPU_COUNT_S(sz, set);
      CPU_FREE(set);
      return n > 0 ? n : 1;
    }
    CPU_FREE(set);
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* ceil(quota / period) for a quota/period pair; 0 if unlimited or bad. */
static int quota_cpus(long long quota, long long period) {
  if (quota <= 0 || period <= 0) return 0;
  long long n = (quota + period - 1) / period;
  if (n < 1) n = 1;
  return n > 1 << 20 ? 0 : (int)n;
}

static int read_line(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "re");
  if (!f) return -1;
  char *r = fgets(buf, (int)len, f);
  fclose(f);
  return r ? 0 : -1;
}

/* cgroup v2: cpu.max is "max 100000" or "150000 100000", at every level from
 * the process's cgroup up to the root. Returns the lowest limit or 0. */
static int cgroup2_limit(const char *root, const char *rel) {
  char path[8192], buf[128];
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", rel);
  int best = 0;
  for (;;) {
    snprintf(path, sizeof path, "%s%s/cpu.max", root, dir);
    if (read_line(path, buf, sizeof buf) == 0) {
      long long q = 0, p = 0;
      if (strncmp(buf, "max", 3) != 0 && sscanf(buf, "%lld %lld", &q, &p) == 2) {
        int n = quota_cpus(q, p);
        if (n && (!best || n < best)) best = n;
      }
    }
    char *slash = strrchr(dir, '/');
    if (!slash || dir[0] == '\0') break;
    if (slash == dir) {
      if (dir[1] == '\0') break;
      dir[1] = '\0';
    } else {
      *slash = '\0';
    }
  }
  return best;
}

/* cgroup v1: the cpu controller's cfs quota at the process's path (or the
 * mount root, as inside containers the path is often not visible). */
static int cgroup1_limit(const char *root, const char *rel) {
  static const char *mounts[] = {"/cpu,cpuacct", "/cpu", NULL};
  char path[4096], buf[64];
  int best = 0;
  for (int i = 0; mounts[i]; i++) {
    const char *rels[] = {rel, ""};
    for (int j = 0; j < 2; j++) {
      long long q = 0, p = 0;
      snprintf(path, sizeof path, "%s%s%s/cpu.cfs_quota_us", root, mounts[i], rels[j]);
      if (read_line(path, buf, sizeof buf)) continue;
      q = atoll(buf);
      snprintf(path, sizeof path, "%s%s%s/cpu.cfs_period_us", root, mounts[i], rels[j]);
      if (read_line(path, buf, sizeof buf)) continue;
      p = atoll(buf);
      int n = quota_cpus(q, p);
      if (n && (!best || n < best)) best = n;
    }
  }
  return best;
}

/* The lowest CPU quota of any cgroup the process is in, or 0 for none.
 * `proc_cgroup` is /proc/self/cgroup and `root` the cgroup mount point;
 * both are parameters so that tests can point them at a fake tree. */
int weft__cgroup_cpu_limit(const char *proc_cgroup, const char *root) {
  FILE *f = fopen(proc_cgroup, "re");
  if (!f) return 0;
  char line[4096];
  int best = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    /* "hierarchy-ID:controller-list:cgroup-path" */
    char *c1 = strchr(line, ':');
    if (!c1) continue;
    char *c2 = strchr(c1 + 1, ':');
    if (!c2) continue;
    *c1 = '\0';
    *c2 = '\0';
    const char *ctrl = c1 + 1, *rel = c2 + 1;
    int n = 0;
    if (strcmp(line, "0") == 0 && *ctrl == '\0') {
      n = cgroup2_limit(root, strcmp(rel, "/") == 0 ? "" : rel);
    } else if (strstr(ctrl, "cpu") && !strstr(ctrl, "cpuset")) {
      n = cgroup1_limit(root, strcmp(rel, "/") == 0 ? "" : rel);
    }
    if (n && (!best || n < best)) best = n;
  }
  fclose(f);
  return best;
}

int weft_cpu_count(void) {
  int n = affinity_count();
  int q = weft__cgroup_cpu_limit("/proc/self/cgroup", "/sys/fs/cgroup");
  if (q > 0 && q < n) n = q;
  return n;
}

int weft_io_workers(void) {
  int n = weft_cpu_count() + 4;
  return n < 32 ? n : 32;
}
