/*
 * measure.c — runs a command and measures it as `/usr/bin/time -v` does,
 * children included.
 *
 * Design: the runner forks a small supervisor per run. The supervisor pins
 * itself to the requested CPUs (the command inherits the affinity, so its
 * pools, sized by weft_cpu_count(), follow), becomes a child subreaper
 * (descendants whose parent dies — a fork server's workers — are reparented
 * to it, not to init), forks and execs the command, and times it on
 * CLOCK_MONOTONIC from fork to the command's exit. It then reaps every
 * remaining descendant until waitpid says ECHILD (after a grace period it
 * kills them), so that getrusage(RUSAGE_CHILDREN) holds the user and
 * kernel time of the whole tree and the largest max RSS of any of its
 * processes — what time -v reports. The figures come back through a pipe.
 * The supervisor's own time is not in them: RUSAGE_CHILDREN counts only
 * its descendants.
 *
 * A child's max RSS starts at the anonymous memory it inherits at fork (as
 * under time -v), so the supervisor stays small: it is a fork of the
 * single-threaded runner and allocates nothing.
 */
#include "lab.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_interrupted;
static volatile pid_t g_supervisor;

void lab_measure_interrupt(void) {
  g_interrupted = 1;
  pid_t p = g_supervisor;
  if (p > 0) kill(p, SIGTERM);
}

int lab_pin_first_cpus(int cpus) {
  cpu_set_t have, want;
  CPU_ZERO(&have);
  CPU_ZERO(&want);
  if (sched_getaffinity(0, sizeof have, &have) != 0) return -errno;
  int k = 0;
  for (int c = 0; c < CPU_SETSIZE && k < cpus; c++)
    if (CPU_ISSET(c, &have)) {
      CPU_SET(c, &want);
      k++;
    }
  if (k < cpus) return -EINVAL;
  if (sched_setaffinity(0, sizeof want, &want) != 0) return -errno;
  return 0;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double tv_s(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6; }

/* SIGKILL every child of ours (reparented orphans may sit in other process
 * groups) — read from /proc/self/task/<tid>/children. */
static void kill_children(void) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[4096];
  ssize_t got = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (got <= 0) return;
  buf[got] = '\0';
  for (char *p = buf; *p;) {
    char *end;
    long pid = strtol(p, &end, 10);
    if (end == p) break;
    if (pid > 0) kill((pid_t)pid, SIGKILL);
    p = end;
  }
}

/* The supervisor: never returns. */
static void supervise(const lab_measure_opts *o, pid_t runner, int rep, int outfd, int errfd) {
  lab_measurement m;
  memset(&m, 0, sizeof m);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != runner) _exit(1);
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, &old);
  /* The runner's handlers must not run here; signals are taken with
   * sigtimedwait below. */
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  if (o->cpus > 0 && lab_pin_first_cpus(o->cpus) != 0) _exit(3);
  prctl(PR_SET_CHILD_SUBREAPER, 1);

  int ep[2]; /* exec failure: the child writes errno; EOF means exec worked */
  if (pipe2(ep, O_CLOEXEC) != 0) _exit(4);
  double t0 = now_s();
  pid_t pid = fork();
  if (pid < 0) _exit(5);
  if (pid == 0) {
    close(ep[0]);
    if (o->own_pgrp) setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* Ignored signals stay ignored across exec: give the command the
     * defaults `weft time` and `weft bench` changed for themselves. */
    int defaults[] = {SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGHUP, SIGCHLD};
    for (size_t k = 0; k < sizeof defaults / sizeof defaults[0]; k++) signal(defaults[k], SIG_DFL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (o->capture) {
      int nul = open("/dev/null", O_RDONLY);
      if (nul >= 0) dup2(nul, 0);
      dup2(outfd, 1);
      dup2(errfd, 2);
    }
    execvp(o->argv[0], o->argv);
    int e = errno;
    if (write(ep[1], &e, sizeof e) < 0) _exit(127);
    _exit(127);
  }
  close(ep[1]);
  if (o->own_pgrp) setpgid(pid, pid); /* also here: no race with a kill below */
  pid_t target = o->own_pgrp ? -pid : pid;

  int done = 0, st = 0;
  double t1 = 0, deadline = o->timeout_s > 0 ? t0 + o->timeout_s : 0;
  double grace_end = 0;
  for (;;) {
    /* Reap whatever has ended (SIGCHLD coalesces). */
    int w, ws;
    while ((w = waitpid(-1, &ws, WNOHANG)) > 0)
      if (w == pid) {
        t1 = now_s();
        st = ws;
        done = 1;
      }
    if (w < 0 && errno == ECHILD) break;
    double now = now_s();
    if (done && grace_end == 0) grace_end = now + (o->grace_s > 0 ? o->grace_s : 2.0);
    double until = done ? grace_end : deadline;
    if (until > 0 && now >= until) {
      if (!done) m.timed_out = 1;
      /* The command (or what it left behind) overstayed: kill it all. */
      if (o->own_pgrp || !done) kill(target, SIGKILL);
      kill_children();
      if (done) {
        /* Killing a child reparents its own children to us: repeat until
         * none is left (each round kills a generation). */
        for (;;) {
          int w2;
          while ((w2 = waitpid(-1, &ws, WNOHANG)) > 0) {
          }
          if (w2 < 0 && errno == ECHILD) break;
          if (o->own_pgrp) kill(target, SIGKILL);
          kill_children();
          struct timespec nap = {0, 10 * 1000 * 1000};
          nanosleep(&nap, NULL);
        }
        break;
      }
      deadline = 0;
      continue;
    }
    struct timespec ts = {1, 0};
    if (until > 0) {
      double left = until - now;
      ts.tv_sec = (time_t)left;
      ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
    }
    siginfo_t si;
    int sig = sigtimedwait(&set, &si, &ts);
    if (sig == SIGTERM || (sig == SIGINT && o->own_pgrp)) {
      /* The runner is stopping (or died): take the command down with us. */
      m.interrupted = 1;
      if (o->own_pgrp || !done) kill(target, SIGKILL); /* a reaped pid may be reused */
      kill_children();
    } else if (sig == SIGINT) {
      /* Same process group: the command got this SIGINT too; let it decide. */
    }
  }
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);
  int e = 0;
  if (read(ep[0], &e, sizeof e) == (ssize_t)sizeof e) {
    m.exec_failed = 1;
    errno = e;
  }
  m.wall_s = (done ? t1 : now_s()) - t0;
  m.user_s = tv_s(ru.ru_utime);
  m.sys_s = tv_s(ru.ru_stime);
  m.maxrss_kib = ru.ru_maxrss;
  if (WIFEXITED(st)) {
    m.exited = 1;
    m.status = WEXITSTATUS(st);
  } else if (WIFSIGNALED(st)) {
    m.signal = WTERMSIG(st);
  }
  if (m.exec_failed) {
    m.exited = 1;
    m.status = 127;
    snprintf(m.err_tail, sizeof m.err_tail, "cannot run %s: %s", o->argv[0], strerror(e));
  }
  if (write(rep, &m, sizeof m) != (ssize_t)sizeof m) _exit(6);
  _exit(0);
}

/* The first line of a memfd's content. */
static void first_line(int fd, char *buf, size_t cap) {
  buf[0] = '\0';
  ssize_t got = pread(fd, buf, cap - 1, 0);
  if (got <= 0) return;
  buf[got] = '\0';
  char *nl = strchr(buf, '\n');
  if (nl) *nl = '\0';
}

/* The last bytes of a memfd's content, from a line start if possible. */
static void tail(int fd, char *buf, size_t cap) {
  buf[0] = '\0';
  struct stat sb;
  if (fstat(fd, &sb) != 0 || sb.st_size == 0) return;
  off_t off = sb.st_size > (off_t)(cap - 1) ? sb.st_size - (off_t)(cap - 1) : 0;
  ssize_t got = pread(fd, buf, cap - 1, off);
  if (got <= 0) return;
  buf[got] = '\0';
  if (off > 0) {
    char *nl = strchr(buf, '\n');
    if (nl && nl[1]) memmove(buf, nl + 1, strlen(nl + 1) + 1);
  }
  size_t n = strlen(buf);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = '\0';
}

int lab_measure(const lab_measure_opts *o, lab_measurement *m) {
  memset(m, 0, sizeof *m);
  if (!o || !o->argv || !o->argv[0]) return -EINVAL;
  if (g_interrupted) {
    m->interrupted = 1;
    return 0;
  }
  int rep[2];
  if (pipe2(rep, O_CLOEXEC) != 0) return -errno;
  int outfd = -1, errfd = -1;
  if (o->capture) {
    outfd = memfd_create("weft-out", MFD_CLOEXEC);
    errfd = memfd_create("weft-err", MFD_CLOEXEC);
    if (outfd < 0 || errfd < 0) {
      int e = -errno;
      if (outfd >= 0) close(outfd);
      if (errfd >= 0) close(errfd);
      close(rep[0]);
      close(rep[1]);
      return e;
    }
  }
  fflush(NULL); /* nothing buffered may be written twice */
  pid_t runner = getpid();
  double t0 = now_s();
  pid_t sup = fork();
  if (sup < 0) {
    int e = -errno;
    close(rep[0]);
    close(rep[1]);
    if (outfd >= 0) close(outfd);
    if (errfd >= 0) close(errfd);
    return e;
  }
  if (sup == 0) {
    close(rep[0]);
    supervise(o, runner, rep[1], outfd, errfd);
  }
  g_supervisor = sup;
  close(rep[1]);
  if (g_interrupted) kill(sup, SIGTERM); /* a signal came between the checks */
  size_t have = 0;
  char *dst = (char *)m;
  for (;;) {
    struct pollfd p = {rep[0], POLLIN, 0};
    int r = poll(&p, 1, 200);
    if (r == 0 || (r < 0 && errno == EINTR)) {
      if (o->tick) o->tick(now_s() - t0, o->tick_arg);
      continue;
    }
    if (r < 0) break;
    ssize_t got = read(rep[0], dst + have, sizeof *m - have);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    have += (size_t)got;
    if (have == sizeof *m) break;
  }
  close(rep[0]);
  int ws;
  while (waitpid(sup, &ws, 0) < 0 && errno == EINTR) {
  }
  g_supervisor = 0;
  int rc = 0;
  if (have != sizeof *m) {
    memset(m, 0, sizeof *m);
    int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 0;
    /* 3: the CPUs could not be set; else the supervisor itself failed. */
    rc = code == 3 ? -EINVAL : -EIO;
  } else if (o->capture && !m->exec_failed) {
    first_line(outfd, m->out, sizeof m->out);
    tail(errfd, m->err_tail, sizeof m->err_tail);
  }
  if (g_interrupted) m->interrupted = 1;
  if (outfd >= 0) close(outfd);
  if (errfd >= 0) close(errfd);
  return rc;
}
