/*
 * process.c — the process backends: "process_pool" (a fixed set of worker
 * processes) and "process" (a new process per job).
 *
 * Design note.
 *
 * Processes come from the fork server (exec/proc_zygote.c) through this
 * executor's session socket; the protocol is in proc_wire.h. One monitor
 * thread per executor owns every worker ("slot") and does all the talking:
 * it epolls an eventfd (new work, shutdown), the session socket (workers
 * spawned, workers reaped, bye) and each worker's socket (results). Submit
 * only appends the job to a FIFO under `mu`, and pokes the eventfd only if
 * the monitor sleeps with room for it (want_jobs), so a submitter never
 * blocks on a worker and a map's stream of chunks costs no wake-ups.
 *
 * A slot holds a job and `next`, the first of its items not yet answered,
 * and may hold a second job, job2, sent behind it (pipelining): when a
 * worker is busy and the queue's head is a map's chunk, the chunk goes to
 * the worker at once (items in the slot's other input region), so the
 * worker finds it in its socket when done instead of waiting for a trip
 * through the monitor. Only map chunks: a submitted task stays in the FIFO
 * until a worker is free, so it can be cancelled before it starts.
 * Results come back item by item, in order (job's, then job2's), so when a
 * worker dies the item it was running is exactly job's `next`: that item
 * alone fails (with WEFT_ECRASHED and the cause from the server's waitpid
 * status, or with WEFT_ECANCELED when we killed it), and the rest of job
 * and all of job2 stay on the slot and go to its next process. A death is
 * acted on when the server reports the exit status (Z_EXIT), not at EOF on
 * the socket, so the cause is always known; results the worker sent before
 * dying are drained from its socket first. A kill blames the item only if
 * it was for the job still running (kill_job): if that job finished before
 * the kill landed, nothing is blamed and job2 reruns.
 *
 * Killing. Cancellation of running work (weft__job_cancel_requested) and
 * the per-item timeout (task_timeout_ms, from the item's send or its
 * predecessor's answer) are checked every TICK_MS while a job runs: the
 * server sends SIGTERM, and SIGKILL GRACE_MS later if the worker is still
 * there. The item fails with WEFT_ECANCELED or WEFT_ETIMEDOUT; the rest of
 * a timed-out job goes to the replacement like a crash's.
 *
 * Sends to a worker block the monitor (the socket is blocking): an idle
 * worker reads the whole job before it runs anything, so a send waits only
 * for the copy; a job2 goes only through a region or when small (it then
 * fits the socket's buffer: the worker read job's bytes already). Trips of
 * SHM_MIN bytes or more go through shared memory instead (proc_wire.h).
 * Reads never block (MSG_DONTWAIT); small results are read ahead through a
 * per-slot buffer (one recv for several), large ones land straight in the
 * result's own buffer, handed to weft__job_deliver without another copy (a
 * result in shared memory is copied out once, then acked in the region).
 *
 * Settings (timeout, initializer, recycling, payload limit) come from
 * weft_executor_opts at create; weft__process_configure (internal, for
 * tests) may replace them before the first submit. The monitor copies them
 * under `mu` at the top of every round.
 *
 * Locks: `mu` guards the FIFO, `stop` and the settings; it is a leaf
 * (nothing is called with it held). Everything else belongs to the monitor
 * thread alone.
 */
#include "internal.h"
#include "proc_wire.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
  TICK_MS = 10,   /* cancellation poll while a job runs */
  GRACE_MS = 100, /* SIGTERM -> SIGKILL */
  TAG_WAKE = 0,
  TAG_SESSION = 1,
  TAG_SLOT = 2, /* + slot index */
};
#define MAX_PAYLOAD ((size_t)1 << 30)

enum { S_EMPTY, S_SPAWNING, S_IDLE, S_BUSY, S_DYING };

/* A worker's output region as the parent sees it. */
struct oregion {
  const unsigned char *map; /* the whole region, read-only, or NULL */
  size_t cap;               /* bytes mapped */
  struct out_ctl *ctl;      /* its head, mapped on its own (acks) */
  /* Kept open, so that a mapping that failed (no address space) is tried
   * again at the next result; the worker sends a region only once. */
  int fd;
  size_t size;
};

struct slot {
  int state;
  pid_t pid;
  int fd;           /* worker socket, -1 if none */
  weft__job *job;   /* running, or waiting for this slot's next process */
  size_t next;      /* first item of job not answered yet */
  /* A map's chunk sent behind job (pipelining: the worker finds it in its
   * socket when job is done), or waiting with job for the next process. */
  weft__job *job2;
  int rg, rg2;      /* input region of job / job2, -1 = none */
  int kill_code;    /* 0, or why we are killing it (WEFT_ECANCELED) */
  const weft__job *kill_job; /* the job whose item we are killing it for */
  int64_t term_at;  /* when SIGTERM was asked */
  bool hard;        /* SIGKILL asked */
  bool fresh;       /* no job sent yet: the initializer goes with the first */
  int tasks;        /* items this process answered */
  int64_t item_deadline; /* task_timeout_ms: when the running item times out */
  /* Result being received: header, then message, then data. */
  int phase;
  size_t got;
  struct rsp rh;
  char *msg;
  unsigned char *data;
  bool discard; /* no memory for it: read and drop, fail the item */
  /* fds that came with results (new output regions), oldest first: a
   * read ahead may bring the next result's before this one takes its own */
  int rxq[4];
  int nrx;
  /* Bytes read ahead: several small results cost one recv. */
  size_t rb_off, rb_len;
  unsigned char rbuf[512];
  /* Shared memory for large payloads (proc_wire.h). The input regions are
   * ours and outlive processes; the output regions are the worker's. */
  unsigned char *in_map[2];
  size_t in_cap[2];
  int in_fd[2];
  bool in_sent[2]; /* this slot's process has the input region */
  struct oregion out[2];
};

struct proc {
  weft_executor *ex;
  bool per_job; /* "process": a process runs one job, then exits */
  int limit;    /* slots at most (0 = no limit) */
  int ep, evfd, sess;
  pthread_t thread;
  pthread_mutex_t mu;
  weft__job *head, *tail;
  size_t nqueued;
  bool stop;
  bool spawn_blocked; /* a spawn failed: retry at the next submit */
  atomic_bool lost;   /* the fork server is gone: nothing can run */
  atomic_int size, busy;
  /* The monitor sleeps and could take a new job: a submit must wake it.
   * Otherwise it dispatches before it sleeps again (or is woken by a
   * worker's answer), so a submit saves the eventfd write. */
  atomic_bool want_jobs;
  weft__process_opts o; /* under mu; init_arg is ours */
  bool configured;      /* weft__process_configure was called */
  /* monitor only */
  weft__process_opts cfg; /* the monitor's copy of o, taken each round */
  struct slot *slots;
  int nslots;
  bool bye;
  /* A chunk found no input region to go behind a busy worker (no memory):
   * no more pipelining until some job completes (else the monitor would
   * spin, seeing room it cannot use). */
  bool chunk_stuck;
};

static void wake(struct proc *p) {
  uint64_t one = 1;
  ssize_t n = write(p->evfd, &one, sizeof one);
  (void)n; /* EAGAIN: the counter is already non-zero, the monitor will wake */
}

static void zsend(struct proc *p, int type, pid_t pid, int arg) {
  struct zmsg m = {.type = type, .pid = pid, .arg = arg};
  weft__zmsg_send(p->sess, &m, -1); /* failure shows up as EOF on the session */
}

static weft__job *pop(struct proc *p) {
  pthread_mutex_lock(&p->mu);
  weft__job *j = p->head;
  if (j) {
    p->head = j->next;
    if (!p->head) p->tail = NULL;
    p->nqueued--;
  }
  pthread_mutex_unlock(&p->mu);
  return j;
}

/* The queue's head if it is a map's chunk (job->batch), else NULL. */
static weft__job *pop_chunk(struct proc *p) {
  pthread_mutex_lock(&p->mu);
  weft__job *j = p->head;
  if (j && j->batch) {
    p->head = j->next;
    if (!p->head) p->tail = NULL;
    p->nqueued--;
  } else {
    j = NULL;
  }
  pthread_mutex_unlock(&p->mu);
  return j;
}

/* Puts a popped job back at the head of the queue. */
static void push_front(struct proc *p, weft__job *j) {
  pthread_mutex_lock(&p->mu);
  j->next = p->head;
  p->head = j;
  if (!p->tail) p->tail = j;
  p->nqueued++;
  pthread_mutex_unlock(&p->mu);
}

static char *describe(pid_t pid, int st) {
  char buf[160];
  if (WIFSIGNALED(st)) {
    const char *d = sigdescr_np(WTERMSIG(st));
    snprintf(buf, sizeof buf, "worker %d killed by signal %d (%s)", (int)pid, WTERMSIG(st),
             d ? d : "unknown signal");
  } else {
    snprintf(buf, sizeof buf, "worker %d exited with status %d", (int)pid, WEXITSTATUS(st));
  }
  return weft__strdup(buf);
}

static void slot_init(struct slot *s) {
  *s = (struct slot){.state = S_EMPTY, .fd = -1, .in_fd = {-1, -1},
                     .out = {{.fd = -1}, {.fd = -1}}, .rg = -1, .rg2 = -1};
}

/* Finishes s->job (every item delivered); job2 takes its place. */
static void finish_current(struct slot *s) {
  weft__job *job = s->job;
  if (s->kill_job == job) s->kill_job = NULL; /* its kill blames nobody now */
  s->job = s->job2;
  s->rg = s->rg2;
  s->job2 = NULL;
  s->rg2 = -1;
  s->next = 0;
  weft__job_finish(job);
}

/* Fails items [s->next, count) with `code` and finishes the job. */
static void fail_rest(struct slot *s, int code, const char *why) {
  weft__job *job = s->job;
  for (size_t i = s->next; i < job->count; i++)
    weft__job_deliver(job, i, code, NULL, 0, why ? weft__strdup(why) : NULL);
  finish_current(s);
}

/* Cancels job2, which no process has started. */
static void drop_job2(struct slot *s) {
  weft__job *job = s->job2;
  for (size_t i = 0; i < job->count; i++) weft__job_deliver(job, i, WEFT_ECANCELED, NULL, 0, NULL);
  s->job2 = NULL;
  s->rg2 = -1;
  weft__job_finish(job);
}

static void rx_reset(struct slot *s) {
  while (s->nrx > 0) close(s->rxq[--s->nrx]);
  s->rb_off = s->rb_len = 0;
  weft__free(s->msg);
  weft__free(s->data);
  s->msg = NULL;
  s->data = NULL;
  s->phase = 0;
  s->got = 0;
  s->discard = false;
}

static void oregion_drop(struct oregion *o) {
  if (o->map) munmap((void *)o->map, o->cap);
  if (o->ctl) munmap(o->ctl, OUT_HDR);
  if (o->fd >= 0) close(o->fd);
  *o = (struct oregion){.fd = -1};
}

static void close_worker(struct proc *p, struct slot *s) {
  if (s->fd < 0) return;
  epoll_ctl(p->ep, EPOLL_CTL_DEL, s->fd, NULL);
  close(s->fd);
  s->fd = -1;
  rx_reset(s);
  for (int r = 0; r < 2; r++) oregion_drop(&s->out[r]);
  s->in_sent[0] = s->in_sent[1] = false;
}

static void job_done(struct proc *p, struct slot *s) {
  finish_current(s);
  p->chunk_stuck = false; /* memory may have come back: try again */
  bool recycle = p->cfg.max_tasks_per_worker > 0 && s->tasks >= p->cfg.max_tasks_per_worker;
  if (p->per_job || s->kill_code || recycle) {
    /* EOF makes the worker exit; its exit report frees the slot (and the
     * pool starts a new process). */
    close_worker(p, s);
    s->state = S_DYING;
  } else if (s->state != S_DYING) {
    s->state = s->job ? S_BUSY : S_IDLE; /* job2 is already with the worker */
  }
}

static void deliver(struct proc *p, struct slot *s) {
  int code = s->rh.code;
  void *data = s->data;
  if (s->discard) {
    code = WEFT_ENOMEM;
    weft__free(data);
    data = NULL;
  }
  if (code >= 0 && !data && s->rh.size) code = WEFT_ENOMEM;
  char *msg = s->msg;
  s->msg = NULL;
  s->data = NULL;
  s->phase = 0;
  s->got = 0;
  s->discard = false;
  if (!s->job || s->next >= s->job->count) { /* a worker answering nothing asked */
    weft__free(data);
    weft__free(msg);
    return;
  }
  weft__job_deliver(s->job, s->next++, code, data, code < 0 ? 0 : (size_t)s->rh.size, msg);
  s->tasks++;
  if (p->cfg.task_timeout_ms) s->item_deadline = weft_now() + p->cfg.task_timeout_ms;
  if (s->next == s->job->count) job_done(p, s);
}

/* recv without blocking; an fd passed along joins s->rxq. */
static ssize_t rx(struct slot *s, void *dst, size_t want) {
  int got = -1;
  ssize_t n = weft__recv_fd(s->fd, dst, want, MSG_DONTWAIT, &got);
  if (got >= 0) {
    if (s->nrx < (int)(sizeof s->rxq / sizeof s->rxq[0])) s->rxq[s->nrx++] = got;
    else close(got); /* a worker announcing regions it does not use */
  }
  return n;
}

/* The oldest fd that came with a result, or -1. */
static int rx_take(struct slot *s) {
  if (s->nrx == 0) return -1;
  int fd = s->rxq[0];
  memmove(s->rxq, s->rxq + 1, (size_t)--s->nrx * sizeof s->rxq[0]);
  return fd;
}

/* A result in the worker's output region: copy it out, ack, deliver. */
static void take_shm_result(struct proc *p, struct slot *s) {
  struct oregion *o = &s->out[s->rh.region & 1];
  int nfd = s->rh.shm_size ? rx_take(s) : -1;
  if (nfd >= 0) {
    /* a new (larger) region replaces the old one */
    oregion_drop(o);
    o->fd = nfd;
    o->size = (size_t)s->rh.shm_size;
  }
  if (!o->ctl && o->fd >= 0) {
    void *m = mmap(NULL, OUT_HDR, PROT_READ | PROT_WRITE, MAP_SHARED, o->fd, 0);
    if (m != MAP_FAILED) o->ctl = m;
  }
  if (!o->map && o->fd >= 0) {
    void *m = mmap(NULL, o->size, PROT_READ, MAP_SHARED, o->fd, 0);
    if (m != MAP_FAILED) {
      o->map = m;
      o->cap = o->size;
    }
  }
  size_t size = (size_t)s->rh.size;
  if (o->map && s->rh.region <= 1 && size <= o->cap - OUT_HDR)
    s->data = weft__malloc(size ? size : 1);
  if (s->data) memcpy(s->data, o->map + OUT_HDR, size);
  else s->discard = true;
  struct out_ctl *c = o->ctl;
  if (c) {
    /* The worker may write the region again (proc_wire.h). */
    atomic_fetch_add(&c->acked, 1);
    if (atomic_load(&c->waiting)) syscall(SYS_futex, (uint32_t *)&c->acked, FUTEX_WAKE, 1, NULL, NULL, 0);
  }
  deliver(p, s);
  if (!c && s->fd >= 0) {
    /* No way to ack: the worker would wait forever. Replace it; the item
     * it runs now is not its fault and goes to the next process. */
    s->kill_code = WEFT_ENOMEM;
    s->kill_job = NULL;
    s->hard = true;
    s->term_at = weft_now();
    zsend(p, Z_KILL, s->pid, SIGKILL);
    close_worker(p, s);
    s->state = S_DYING;
  }
}

/* Reads what the worker has sent, without blocking. Returns false at EOF.
 * Stops after a short read (epoll is level-triggered: what comes later
 * wakes us again), unless `drain`: then until there is nothing more. */
static bool slot_read(struct proc *p, struct slot *s, bool drain) {
  while (s->fd >= 0) {
    unsigned char *dst;
    size_t want;
    bool shm = s->rh.flags & WIRE_SHM;
    if (s->phase == 0) {
      dst = (unsigned char *)&s->rh + s->got;
      want = sizeof s->rh - s->got;
    } else if (s->phase == 1) {
      dst = s->msg ? (unsigned char *)s->msg + s->got : NULL; /* NULL: no memory, drop */
      want = s->rh.msg_len - s->got;
    } else {
      dst = s->data ? s->data + s->got : NULL;
      want = shm ? 0 : (size_t)s->rh.size - s->got;
    }
    if (want) {
      size_t n;
      if (s->rb_off < s->rb_len) {
        n = want < s->rb_len - s->rb_off ? want : s->rb_len - s->rb_off;
        if (dst) memcpy(dst, s->rbuf + s->rb_off, n);
        s->rb_off += n;
      } else {
        /* A large result goes straight into its buffer. */
        bool direct = dst && want >= sizeof s->rbuf;
        size_t ask = direct ? want : sizeof s->rbuf;
        ssize_t r = rx(s, direct ? dst : s->rbuf, ask);
        if (r < 0) {
          if (errno == EINTR) continue;
          return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        if (r == 0) return false;
        if (!direct) {
          s->rb_off = 0;
          s->rb_len = (size_t)r;
          continue;
        }
        n = (size_t)r;
        if (n < ask && !drain) {
          s->got += n;
          return true;
        }
      }
      s->got += n;
    }
    if (s->phase == 0 && s->got == sizeof s->rh) {
      s->got = 0;
      s->phase = 1;
      if (s->rh.msg_len) {
        s->msg = weft__malloc((size_t)s->rh.msg_len + 1);
        if (s->msg) s->msg[s->rh.msg_len] = '\0';
      }
    } else if (s->phase == 1 && s->got == s->rh.msg_len) {
      s->got = 0;
      s->phase = 2;
      if (shm) {
        take_shm_result(p, s);
      } else if (s->rh.size) {
        s->data = weft__malloc((size_t)s->rh.size);
        if (!s->data) s->discard = true;
      }
    } else if (s->phase == 2 && s->got == s->rh.size) {
      deliver(p, s);
    }
    /* all read ahead is used and the last recv was short: nothing more now */
    if (!drain && s->rb_off == s->rb_len && s->rb_len < sizeof s->rbuf && s->rb_len > 0 &&
        s->phase == 0 && s->got == 0) {
      s->rb_off = s->rb_len = 0;
      return true;
    }
  }
  return false;
}

/* Makes the slot's input region r hold `size` bytes; false if it cannot. */
static bool in_region(struct slot *s, int r, size_t size) {
  if (size <= s->in_cap[r]) return true;
  size_t cap = SHM_FIRST;
  while (cap < size) cap *= 2;
  int fd = memfd_create("weft-in", MFD_CLOEXEC);
  if (fd < 0) return false;
  void *m = MAP_FAILED;
  if (ftruncate(fd, (off_t)cap) == 0) m = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    close(fd);
    return false;
  }
  if (s->in_map[r]) {
    munmap(s->in_map[r], s->in_cap[r]);
    close(s->in_fd[r]);
  }
  s->in_map[r] = m;
  s->in_cap[r] = cap;
  s->in_fd[r] = fd;
  s->in_sent[r] = false;
  return true;
}

/* Sends s->job from item s->next, or (second) all of s->job2 behind it. */
static void send_job(struct proc *p, struct slot *s, bool second) {
  const weft__process_opts *cfg = &p->cfg;
  weft__job *job = second ? s->job2 : s->job;
  size_t from = second ? 0 : s->next;
  const char *name = weft_registry_name(job->fn); /* checked at submit */
  const char *iname = s->fresh && cfg->initializer ? weft_registry_name(cfg->initializer) : NULL;
  struct req h = {.name_len = (uint32_t)strlen(name),
                  .init_name_len = iname ? (uint32_t)strlen(iname) : 0,
                  .init_arg_size = iname ? cfg->init_arg_size : 0,
                  .item_size = job->in_size,
                  .count = job->count - from,
                  .max_result = cfg->max_payload ? cfg->max_payload : MAX_PAYLOAD};
  struct iovec iov[5] = {{&h, sizeof h},
                         {(void *)name, h.name_len},
                         {(void *)iname, h.init_name_len},
                         {(void *)cfg->init_arg, (size_t)h.init_arg_size},
                         /* no input at all (in == NULL): no arithmetic on NULL */
                         {job->in ? (void *)(job->in + from * job->in_size) : NULL,
                          (size_t)(h.count * h.item_size)}};
  int passfd = -1;
  int *rg = second ? &s->rg2 : &s->rg;
  /* The region the other job does not use: the worker may still read that
   * one (when this job goes second). */
  int r = (second ? s->rg : s->rg2) == 0 ? 1 : 0;
  *rg = -1;
  if (iov[4].iov_len >= SHM_MIN && in_region(s, r, iov[4].iov_len)) {
    /* a large job: the items go through an input region */
    memcpy(s->in_map[r], iov[4].iov_base, iov[4].iov_len);
    h.flags = WIRE_SHM;
    h.region = (uint32_t)r;
    if (!s->in_sent[r]) {
      h.shm_size = s->in_cap[r];
      passfd = s->in_fd[r];
      s->in_sent[r] = true;
    }
    iov[4].iov_len = 0;
    *rg = r;
  }
  if (!second) {
    s->state = S_BUSY;
    if (cfg->task_timeout_ms) s->item_deadline = weft_now() + cfg->task_timeout_ms;
  }
  s->fresh = false;
  if (weft__send_iov(s->fd, iov, 5, passfd) != 0) {
    /* The worker is gone (EPIPE), or cannot be told more and gets EOF: it
     * exits. Its socket stays open until its exit report (or EOF), so what
     * it answered before (it may have been busy: job2) is still read.
     * Gone: it crashed and its exit report blames its item. Not gone: we
     * ended it, nobody is to blame. */
    bool gone = errno == EPIPE || errno == ECONNRESET;
    shutdown(s->fd, SHUT_WR);
    if (!gone && !s->kill_code) {
      s->kill_code = WEFT_ECRASHED;
      s->kill_job = NULL;
      s->hard = true;
      s->term_at = weft_now();
    }
    s->state = S_DYING;
  }
}

static void on_exit_report(struct proc *p, struct slot *s, int st) {
  if (s->fd >= 0) {
    /* Results it sent before dying; only it held the other end, so the
     * socket is at EOF after them. */
    slot_read(p, s, true);
    close_worker(p, s);
  }
  /* A kill for an item of a job that then finished (its job2 went on)
   * blames nobody: the rest waits for the next process. */
  if (s->job && (!s->kill_code || s->kill_job == s->job)) {
    char *why;
    int code = s->kill_code ? s->kill_code : WEFT_ECRASHED;
    if (code == WEFT_ECANCELED) {
      char buf[96];
      snprintf(buf, sizeof buf, "cancelled while running: worker %d killed", (int)s->pid);
      why = weft__strdup(buf);
    } else if (code == WEFT_ETIMEDOUT) {
      char buf[96];
      snprintf(buf, sizeof buf, "timed out after %lld ms: worker %d killed",
               (long long)p->cfg.task_timeout_ms, (int)s->pid);
      why = weft__strdup(buf);
    } else {
      why = describe(s->pid, st);
    }
    weft__job_deliver(s->job, s->next++, code, NULL, 0, why);
    if (s->next == s->job->count) finish_current(s);
    else if (code == WEFT_ECANCELED || weft__job_cancel_requested(s->job))
      fail_rest(s, WEFT_ECANCELED, NULL);
  }
  /* The rest (job, job2) waits on this slot for its next process;
   * check_running fails what is cancelled meanwhile. */
  s->state = S_EMPTY;
  s->pid = 0;
  s->kill_code = 0;
  s->kill_job = NULL;
  s->hard = false;
  s->tasks = 0;
}

static struct slot *slot_by_pid(struct proc *p, pid_t pid) {
  for (int i = 0; i < p->nslots; i++)
    if (p->slots[i].state != S_EMPTY && p->slots[i].state != S_SPAWNING && p->slots[i].pid == pid)
      return &p->slots[i];
  return NULL;
}

/* Nothing can run any more: fail whatever is left. */
static void give_up(struct proc *p, int code, const char *why) {
  for (int i = 0; i < p->nslots; i++) {
    struct slot *s = &p->slots[i];
    close_worker(p, s);
    while (s->job) fail_rest(s, code, why);
    s->state = S_EMPTY;
  }
  weft__job *j;
  while ((j = pop(p)) != NULL) weft__job_abort(j, code);
}

static void session_read(struct proc *p) {
  for (;;) {
    struct zmsg m;
    int fd;
    int rc = weft__zmsg_recv(p->sess, &m, &fd, 1);
    if (rc == -EAGAIN || rc == -EWOULDBLOCK) return;
    if (rc <= 0) {
      if (atomic_load(&p->lost)) return;
      atomic_store(&p->lost, true);
      epoll_ctl(p->ep, EPOLL_CTL_DEL, p->sess, NULL);
      give_up(p, WEFT_ECRASHED, "the process fork server died");
      return;
    }
    if (m.type == Z_SPAWNED && m.arg >= 0 && m.arg < p->nslots) {
      struct slot *s = &p->slots[m.arg];
      if (m.pid < 0 || fd < 0) {
        if (fd >= 0) close(fd);
        s->state = S_EMPTY;
        pthread_mutex_lock(&p->mu);
        p->spawn_blocked = true;
        pthread_mutex_unlock(&p->mu);
        bool alive = false;
        for (int i = 0; i < p->nslots; i++) alive |= p->slots[i].state != S_EMPTY;
        if (!alive) give_up(p, WEFT_EAGAIN, "no worker process could be started");
        continue;
      }
      s->pid = m.pid;
      s->fd = fd;
      s->fresh = true;
      struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_SLOT + (uint64_t)m.arg};
      if (epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close_worker(p, s);
        zsend(p, Z_KILL, s->pid, SIGKILL);
        s->state = S_DYING;
      } else {
        s->state = S_IDLE;
      }
    } else if (m.type == Z_EXIT) {
      if (fd >= 0) close(fd);
      struct slot *s = slot_by_pid(p, m.pid);
      if (s) on_exit_report(p, s, m.arg);
    } else if (m.type == Z_BYE) {
      p->bye = true;
    } else if (fd >= 0) {
      close(fd);
    }
  }
}

/* Cancellation of running work, and of work waiting for a replacement. */
static void check_running(struct proc *p) {
  int64_t now = weft_now();
  for (int i = 0; i < p->nslots; i++) {
    struct slot *s = &p->slots[i];
    if (s->state != S_BUSY && s->state != S_DYING) {
      /* waiting for a process: nothing of it runs, drop what is cancelled */
      while (s->job && weft__job_cancel_requested(s->job)) fail_rest(s, WEFT_ECANCELED, NULL);
      if (s->job2 && weft__job_cancel_requested(s->job2)) drop_job2(s);
    }
    /* (job2 sent behind a running job is killed, if cancelled, once it runs) */
    if (s->job && s->state == S_BUSY && !s->kill_code && weft__job_cancel_requested(s->job)) {
      s->kill_code = WEFT_ECANCELED;
      s->kill_job = s->job;
      s->term_at = now;
      zsend(p, Z_KILL, s->pid, SIGTERM);
    }
    if (s->job && s->state == S_BUSY && !s->kill_code && p->cfg.task_timeout_ms &&
        now >= s->item_deadline) {
      s->kill_code = WEFT_ETIMEDOUT;
      s->kill_job = s->job;
      s->term_at = now;
      zsend(p, Z_KILL, s->pid, SIGTERM);
    }
    if (s->kill_code && !s->hard && s->state != S_EMPTY && now - s->term_at >= GRACE_MS) {
      s->hard = true;
      zsend(p, Z_KILL, s->pid, SIGKILL);
    }
  }
}

static int new_slot(struct proc *p) {
  for (int i = 0; i < p->nslots; i++)
    if (p->slots[i].state == S_EMPTY && !p->slots[i].job) return i;
  struct slot *ns = weft__realloc(p->slots, (size_t)(p->nslots + 1) * sizeof *ns);
  if (!ns) return -1;
  p->slots = ns;
  slot_init(&ns[p->nslots]);
  return p->nslots++;
}

static void spawn(struct proc *p, int i) {
  p->slots[i].state = S_SPAWNING;
  zsend(p, Z_SPAWN, 0, i);
}

static void dispatch(struct proc *p) {
  pthread_mutex_lock(&p->mu);
  bool blocked = p->spawn_blocked;
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nslots; i++) {
    struct slot *s = &p->slots[i];
    if (s->state == S_EMPTY && !blocked && (!p->per_job || s->job)) spawn(p, i);
    if (s->state != S_IDLE) continue;
    while (!s->job) {
      weft__job *j = pop(p);
      if (!j) break;
      if (!weft__job_start(j)) {
        weft__job_cancel(j);
        continue;
      }
      s->job = j;
      s->next = 0;
    }
    if (s->job) send_job(p, s, false);
    if (s->job2 && s->state == S_BUSY) send_job(p, s, true);
  }
  if (!p->per_job && p->cfg.max_tasks_per_worker == 0 && !p->chunk_stuck) {
    /* Pipelining: a busy worker gets the next chunk of a map now and finds
     * it in its socket (its items already in an input region) when it is
     * done. Only map chunks: a submitted task stays queued, and so can be
     * cancelled before it starts, until a worker is free. Not with
     * recycling, which would close a worker with a chunk in its socket. */
    for (int i = 0; i < p->nslots; i++) {
      struct slot *s = &p->slots[i];
      if (s->state != S_BUSY || !s->job || s->job2 || s->kill_code || s->fd < 0) continue;
      weft__job *j = pop_chunk(p);
      if (!j) break;
      /* Items that would not fit a region go through the socket, and a
       * busy worker does not read its socket: the send could block the
       * monitor. Such a chunk waits for a free worker instead. */
      size_t bytes = j->count * j->in_size;
      if (bytes >= SHM_MIN && !in_region(s, s->rg == 0 ? 1 : 0, bytes)) {
        push_front(p, j);
        p->chunk_stuck = true;
        break;
      }
      if (!weft__job_start(j)) {
        weft__job_cancel(j);
        i--; /* this slot again, with the next chunk */
        continue;
      }
      s->job2 = j;
      send_job(p, s, true);
    }
  }
  if (!p->per_job || blocked) return;
  /* "process": a new process for every job no spawning process will take. */
  size_t avail = 0;
  int active = 0;
  for (int i = 0; i < p->nslots; i++) {
    struct slot *s = &p->slots[i];
    if (s->state != S_EMPTY) active++;
    if ((s->state == S_SPAWNING || s->state == S_IDLE) && !s->job) avail++;
  }
  pthread_mutex_lock(&p->mu);
  size_t queued = p->nqueued;
  pthread_mutex_unlock(&p->mu);
  while (queued > avail && (p->limit == 0 || active < p->limit)) {
    int i = new_slot(p);
    if (i < 0) break; /* no memory now: jobs wait for a slot to free up */
    spawn(p, i);
    avail++;
    active++;
  }
}

/* What dispatch would do with a new job: ROOM_ANY, a slot takes any job
 * (idle, or empty and allowed to spawn); ROOM_CHUNK, a busy slot takes a
 * map's chunk behind its job; 0, nothing. Not for "process", whose submits
 * always wake the monitor. */
enum { ROOM_ANY = 1, ROOM_CHUNK = 2 };
static int room(struct proc *p, bool blocked) {
  if (p->per_job) return 0;
  bool pipe = p->cfg.max_tasks_per_worker == 0 && !p->chunk_stuck;
  int r = 0;
  for (int i = 0; i < p->nslots; i++) {
    const struct slot *s = &p->slots[i];
    if (!s->job && (s->state == S_IDLE || (s->state == S_EMPTY && !blocked))) r |= ROOM_ANY;
    if (pipe && s->state == S_BUSY && s->job && !s->job2 && !s->kill_code && s->fd >= 0)
      r |= ROOM_CHUNK;
  }
  return r;
}

/* Publishes the stats; true while some job or kill needs the tick. */
static bool stats_update(struct proc *p) {
  int size = 0, busy = 0;
  bool tick = false;
  for (int i = 0; i < p->nslots; i++) {
    const struct slot *s = &p->slots[i];
    size += s->state == S_IDLE || s->state == S_BUSY || s->state == S_DYING;
    busy += s->state == S_BUSY;
    tick |= s->job != NULL || s->kill_code != 0;
  }
  atomic_store_explicit(&p->size, size, memory_order_relaxed);
  atomic_store_explicit(&p->busy, busy, memory_order_relaxed);
  return tick;
}

static void *monitor(void *arg) {
  struct proc *p = arg;
  bool killall = false;
  pthread_setname_np(pthread_self(), "weft-procmon"); /* for ps, top and perf */
  for (;;) {
    pthread_mutex_lock(&p->mu);
    bool stop = p->stop;
    p->cfg = p->o;
    pthread_mutex_unlock(&p->mu);
    bool lost = atomic_load(&p->lost);
    if (stop) {
      /* Nothing is outstanding (destroy follows a complete shutdown). */
      if (lost) break;
      if (p->bye) {
        /* The server closes our session right after BYE: wait (bounded)
         * for that close, so that when destroy returns the server holds no
         * descriptor of this executor. */
        struct pollfd pf = {.fd = p->sess, .events = POLLIN};
        int64_t until = weft_deadline_in(2000);
        char c;
        while (!weft__deadline_passed(until) && poll(&pf, 1, 100) >= 0 &&
               !(pf.revents & (POLLIN | POLLHUP)))
          ;
        while (recv(p->sess, &c, 1, MSG_DONTWAIT) > 0)
          ;
        break;
      }
      if (!killall) {
        zsend(p, Z_KILLALL, 0, 0);
        killall = true;
      }
    }
    check_running(p);
    if (!stop && !lost) dispatch(p);
    if (lost) give_up(p, WEFT_ECRASHED, "the process fork server died");
    bool busy = stats_update(p); /* jobs just sent count too */
    int timeout = busy ? TICK_MS : -1;
    if (!stop && !lost) {
      pthread_mutex_lock(&p->mu);
      bool blocked = p->spawn_blocked;
      pthread_mutex_unlock(&p->mu);
      int r = room(p, blocked);
      if (r) {
        /* Announce, then look again: a submit that missed the announcement
         * is seen here (its job was queued under mu before it looked). */
        atomic_store(&p->want_jobs, true);
        pthread_mutex_lock(&p->mu);
        weft__job *h = p->head;
        if (h && ((r & ROOM_ANY) || h->batch)) timeout = 0;
        pthread_mutex_unlock(&p->mu);
      }
    }
    struct epoll_event ev[32];
    int n = epoll_wait(p->ep, ev, 32, timeout);
    atomic_store(&p->want_jobs, false);
    for (int k = 0; k < n; k++) {
      uint64_t tag = ev[k].data.u64;
      if (tag == TAG_WAKE) {
        uint64_t v;
        ssize_t r = read(p->evfd, &v, sizeof v);
        (void)r;
      } else if (tag == TAG_SESSION) {
        session_read(p);
      } else if (tag - TAG_SLOT < (uint64_t)p->nslots) {
        struct slot *s = &p->slots[tag - TAG_SLOT];
        if (s->fd >= 0 && !slot_read(p, s, false)) {
          /* EOF: the worker is gone; act on its exit report. */
          close_worker(p, s);
          if (s->state != S_EMPTY) s->state = S_DYING;
        }
      }
    }
  }
  for (int i = 0; i < p->nslots; i++) close_worker(p, &p->slots[i]);
  return NULL;
}

/* ---- the backend ---- */

static void free_proc(struct proc *p) {
  if (p->ep >= 0) close(p->ep);
  if (p->evfd >= 0) close(p->evfd);
  if (p->sess >= 0) close(p->sess);
  pthread_mutex_destroy(&p->mu);
  for (int i = 0; i < p->nslots; i++) {
    for (int r = 0; r < 2; r++) {
      if (p->slots[i].in_map[r]) {
        munmap(p->slots[i].in_map[r], p->slots[i].in_cap[r]);
        close(p->slots[i].in_fd[r]);
      }
    }
  }
  weft__free((void *)p->o.init_arg);
  weft__free(p->slots);
  weft__free(p);
}

static int set_opts(struct proc *p, const weft__process_opts *o);

static int init_common(weft_executor *ex, bool per_job) {
  struct proc *p = weft__calloc(1, sizeof *p);
  if (!p) return WEFT_ENOMEM;
  p->ex = ex;
  p->per_job = per_job;
  p->limit = ex->workers;
  p->ep = p->evfd = p->sess = -1;
  atomic_init(&p->lost, false);
  atomic_init(&p->size, 0);
  atomic_init(&p->busy, 0);
  atomic_init(&p->want_jobs, false);
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    weft__free(p);
    return WEFT_ENOMEM;
  }
  int rc = 0;
  if (!per_job) {
    p->slots = weft__calloc((size_t)ex->workers, sizeof *p->slots);
    if (!p->slots) rc = WEFT_ENOMEM;
    else p->nslots = ex->workers;
    for (int i = 0; i < p->nslots; i++) slot_init(&p->slots[i]);
  }
  const weft_executor_opts *eo = &ex->opts;
  weft__process_opts po = {.task_timeout_ms = eo->task_timeout_ms,
                           .max_payload = eo->max_payload,
                           .initializer = eo->initializer,
                           .init_arg = eo->init_arg,
                           .init_arg_size = eo->init_arg_size,
                           .max_tasks_per_worker = eo->max_tasks_per_worker};
  if (!rc) rc = set_opts(p, &po);
  if (!rc) rc = weft__zygote_session(&p->sess);
  if (!rc) {
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event e1 = {.events = EPOLLIN, .data.u64 = TAG_WAKE};
    struct epoll_event e2 = {.events = EPOLLIN, .data.u64 = TAG_SESSION};
    if (p->ep < 0 || p->evfd < 0 || epoll_ctl(p->ep, EPOLL_CTL_ADD, p->evfd, &e1) != 0 ||
        epoll_ctl(p->ep, EPOLL_CTL_ADD, p->sess, &e2) != 0)
      rc = errno == ENOMEM ? WEFT_ENOMEM : WEFT_EAGAIN;
  }
  if (!rc) {
    /* The monitor takes no signals meant for the program's own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&p->thread, NULL, monitor, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) rc = e == ENOMEM ? WEFT_ENOMEM : WEFT_EAGAIN;
  }
  if (rc) {
    free_proc(p);
    return rc;
  }
  ex->impl = p;
  return 0;
}

static int pool_init(weft_executor *ex) { return init_common(ex, false); }
static int process_init(weft_executor *ex) { return init_common(ex, true); }

static int proc_submit(weft_executor *ex, weft__job *job) {
  struct proc *p = ex->impl;
  if (!weft_registry_name(job->fn)) return WEFT_ENOENT;
  if (atomic_load(&p->lost)) return WEFT_EAGAIN;
  job->next = NULL;
  pthread_mutex_lock(&p->mu);
  if (job->in_size > (p->o.max_payload ? p->o.max_payload : MAX_PAYLOAD)) {
    pthread_mutex_unlock(&p->mu);
    return WEFT_ETOOBIG;
  }
  if (p->tail) p->tail->next = job;
  else p->head = job;
  p->tail = job;
  p->nqueued++;
  bool retry = p->spawn_blocked; /* a failed spawn is retried now */
  p->spawn_blocked = false;
  pthread_mutex_unlock(&p->mu);
  if (p->per_job || retry || atomic_load(&p->want_jobs)) wake(p);
  return 0;
}

static int proc_shutdown(weft_executor *ex, int flags, int64_t deadline) {
  struct proc *p = ex->impl;
  if (flags & WEFT_SHUTDOWN_CANCEL) {
    pthread_mutex_lock(&p->mu);
    weft__job *j = p->head;
    p->head = p->tail = NULL;
    p->nqueued = 0;
    pthread_mutex_unlock(&p->mu);
    while (j) {
      weft__job *next = j->next; /* the job is gone after cancel */
      weft__job_cancel(j);
      j = next;
    }
  }
  wake(p); /* running work sees ex->cancelling at the monitor's next look */
  return weft__executor_wait_idle(ex, deadline);
}

static void proc_destroy(weft_executor *ex) {
  struct proc *p = ex->impl;
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_mutex_unlock(&p->mu);
  wake(p);
  pthread_join(p->thread, NULL);
  free_proc(p);
  ex->impl = NULL;
}

/* Checks and takes the settings (once: the monitor may be using the
 * first init_arg; all-zero settings do not count). */
static int set_opts(struct proc *p, const weft__process_opts *o) {
  if (o->task_timeout_ms < 0 || o->max_tasks_per_worker < 0 || (!o->init_arg && o->init_arg_size))
    return WEFT_EINVAL;
  if (o->initializer && !weft_registry_name(o->initializer)) return WEFT_ENOENT;
  if (o->init_arg_size > (o->max_payload ? o->max_payload : MAX_PAYLOAD)) return WEFT_ETOOBIG;
  bool any = o->task_timeout_ms || o->max_payload || o->initializer || o->max_tasks_per_worker;
  void *arg = NULL;
  if (o->initializer) {
    arg = weft__malloc(o->init_arg_size ? o->init_arg_size : 1);
    if (!arg) return WEFT_ENOMEM;
    if (o->init_arg_size) memcpy(arg, o->init_arg, o->init_arg_size);
  }
  pthread_mutex_lock(&p->mu);
  bool again = p->configured;
  if (!again && any) {
    p->o = *o;
    p->o.init_arg = arg;
    if (!o->initializer) p->o.init_arg_size = 0;
    p->configured = true;
    arg = NULL;
  }
  pthread_mutex_unlock(&p->mu);
  weft__free(arg);
  return again ? WEFT_EBUSY : 0;
}

int weft__process_configure(weft_executor *ex, const weft__process_opts *o) {
  if (!ex || !o || (ex->be != &weft__backend_process && ex->be != &weft__backend_process_pool))
    return WEFT_EINVAL;
  return set_opts(ex->impl, o);
}

static void proc_stats(weft_executor *ex, weft_executor_stats *st) {
  struct proc *p = ex->impl;
  st->size = atomic_load_explicit(&p->size, memory_order_relaxed);
  st->busy = atomic_load_explicit(&p->busy, memory_order_relaxed);
  pthread_mutex_lock(&p->mu);
  st->queued = p->nqueued;
  pthread_mutex_unlock(&p->mu);
}

const weft__backend weft__backend_process_pool = {
    .name = "process_pool",
    .sizing = WEFT__SIZE_CPU,
    .init = pool_init,
    .submit = proc_submit,
    .shutdown = proc_shutdown,
    .destroy = proc_destroy,
    .stats = proc_stats,
};

const weft__backend weft__backend_process = {
    .name = "process",
    .sizing = WEFT__SIZE_UNLIMITED,
    .init = process_init,
    .submit = proc_submit,
    .shutdown = proc_shutdown,
    .destroy = proc_destroy,
    .stats = proc_stats,
};
