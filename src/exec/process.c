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
 * only appends the job to a FIFO under `mu` and pokes the eventfd, so a
 * submitter never blocks on a worker.
 *
 * A slot holds at most one job, and `next`, the first of its items not yet
 * answered. Results come back item by item, in order, so when a worker dies
 * the item it was running is exactly `next`: that item alone fails (with
 * WEFT_ECRASHED and the cause from the server's waitpid status, or with
 * WEFT_ECANCELED when we killed it), and the rest of the job stays on the
 * slot and goes to the slot's next process. A death is acted on when the
 * server reports the exit status (Z_EXIT), not at EOF on the socket, so the
 * cause is always known; results the worker sent before dying are drained
 * from its socket first.
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
 * for the copy. Trips of SHM_MIN bytes or more go through shared memory
 * instead (proc_wire.h). Reads never block (MSG_DONTWAIT) and land straight
 * in the result's own buffer, handed to weft__job_deliver without another
 * copy (a result in shared memory is copied out once).
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
#include <sys/socket.h>
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

struct slot {
  int state;
  pid_t pid;
  int fd;           /* worker socket, -1 if none */
  weft__job *job;   /* running, or waiting for this slot's next process */
  size_t next;      /* first item of job not answered yet */
  int kill_code;    /* 0, or why we are killing it (WEFT_ECANCELED) */
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
  int rx_fd;    /* an fd that came with the result (a new output region) */
  /* Shared memory for large payloads (proc_wire.h). The input region is
   * ours and outlives processes; the output region is the worker's. */
  unsigned char *in_map;
  size_t in_cap;
  int in_fd;
  bool in_sent; /* this slot's process has the input region */
  const unsigned char *out_map;
  size_t out_cap;
  /* The worker's output region: kept open, so that a mapping that failed
   * (no address space) is tried again at the next result; the worker sends
   * a region only once. */
  int out_fd;
  size_t out_size;
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
  weft__process_opts o; /* under mu; init_arg is ours */
  bool configured;      /* weft__process_configure was called */
  /* monitor only */
  weft__process_opts cfg; /* the monitor's copy of o, taken each round */
  struct slot *slots;
  int nslots;
  bool bye;
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

/* Fails items [s->next, count) with `code` and finishes the job. */
static void fail_rest(struct slot *s, int code, const char *why) {
  weft__job *job = s->job;
  for (size_t i = s->next; i < job->count; i++)
    weft__job_deliver(job, i, code, NULL, 0, why ? weft__strdup(why) : NULL);
  s->job = NULL;
  s->next = 0;
  weft__job_finish(job);
}

static void rx_reset(struct slot *s) {
  if (s->rx_fd >= 0) close(s->rx_fd);
  s->rx_fd = -1;
  weft__free(s->msg);
  weft__free(s->data);
  s->msg = NULL;
  s->data = NULL;
  s->phase = 0;
  s->got = 0;
  s->discard = false;
}

static void close_worker(struct proc *p, struct slot *s) {
  if (s->fd < 0) return;
  epoll_ctl(p->ep, EPOLL_CTL_DEL, s->fd, NULL);
  close(s->fd);
  s->fd = -1;
  rx_reset(s);
  if (s->out_map) munmap((void *)s->out_map, s->out_cap);
  s->out_map = NULL;
  s->out_cap = 0;
  if (s->out_fd >= 0) close(s->out_fd);
  s->out_fd = -1;
  s->out_size = 0;
  s->in_sent = false;
}

static void job_done(struct proc *p, struct slot *s) {
  weft__job_finish(s->job);
  s->job = NULL;
  s->next = 0;
  bool recycle = p->cfg.max_tasks_per_worker > 0 && s->tasks >= p->cfg.max_tasks_per_worker;
  if (p->per_job || s->kill_code || recycle) {
    /* EOF makes the worker exit; its exit report frees the slot (and the
     * pool starts a new process). */
    close_worker(p, s);
    s->state = S_DYING;
  } else {
    s->state = S_IDLE;
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

/* recv without blocking; an fd passed along is kept in s->rx_fd. */
static ssize_t rx(struct slot *s, void *dst, size_t want) {
  return weft__recv_fd(s->fd, dst, want, MSG_DONTWAIT, &s->rx_fd);
}

/* A result in the worker's output region: copy it out, ack, deliver. */
static void take_shm_result(struct proc *p, struct slot *s) {
  if (s->rh.shm_size && s->rx_fd >= 0) {
    /* a new (larger) region replaces the old one */
    if (s->out_map) munmap((void *)s->out_map, s->out_cap);
    s->out_map = NULL;
    s->out_cap = 0;
    if (s->out_fd >= 0) close(s->out_fd);
    s->out_fd = s->rx_fd;
    s->out_size = (size_t)s->rh.shm_size;
    s->rx_fd = -1;
  }
  if (s->rx_fd >= 0) close(s->rx_fd);
  s->rx_fd = -1;
  if (!s->out_map && s->out_fd >= 0) {
    void *m = mmap(NULL, s->out_size, PROT_READ, MAP_SHARED, s->out_fd, 0);
    if (m != MAP_FAILED) {
      s->out_map = m;
      s->out_cap = s->out_size;
    }
  }
  size_t size = (size_t)s->rh.size;
  if (s->out_map && size <= s->out_cap) s->data = weft__malloc(size ? size : 1);
  if (s->data) memcpy(s->data, s->out_map, size);
  else s->discard = true;
  unsigned char ack = 1;
  ssize_t n;
  do n = send(s->fd, &ack, 1, MSG_NOSIGNAL); /* the worker may reuse the region */
  while (n < 0 && errno == EINTR);
  deliver(p, s);
}

/* Reads what the worker has sent, without blocking. Returns false at EOF. */
static bool slot_read(struct proc *p, struct slot *s) {
  while (s->fd >= 0) {
    void *dst;
    size_t want;
    unsigned char scratch[4096];
    bool shm = s->rh.flags & WIRE_SHM;
    if (s->phase == 0) {
      dst = (unsigned char *)&s->rh + s->got;
      want = sizeof s->rh - s->got;
    } else if (s->phase == 1) {
      dst = s->msg ? s->msg + s->got : (void *)scratch;
      want = s->rh.msg_len - s->got;
    } else {
      dst = s->data ? s->data + s->got : scratch;
      want = shm ? 0 : (size_t)s->rh.size - s->got;
    }
    if ((s->phase == 1 && !s->msg) || (s->phase == 2 && !s->data))
      if (want > sizeof scratch) want = sizeof scratch;
    ssize_t n = want ? rx(s, dst, want) : 0;
    if (want && n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    if (want && n == 0) return false;
    s->got += (size_t)n;
    if (s->phase == 0 && s->got == sizeof s->rh) {
      s->got = 0;
      s->phase = 1;
      if (s->rh.msg_len) {
        s->msg = weft__malloc((size_t)s->rh.msg_len + 1);
        if (s->msg) s->msg[s->rh.msg_len] = '\0';
      }
      continue;
    }
    if (s->phase == 1 && s->got == s->rh.msg_len) {
      s->got = 0;
      s->phase = 2;
      if (shm) {
        take_shm_result(p, s);
        continue;
      }
      if (s->rh.size) {
        s->data = weft__malloc((size_t)s->rh.size);
        if (!s->data) s->discard = true;
      }
      continue;
    }
    if (s->phase == 2 && s->got == s->rh.size) deliver(p, s);
  }
  return false;
}

/* Makes the slot's input region hold `size` bytes; false if it cannot. */
static bool in_region(struct slot *s, size_t size) {
  if (size <= s->in_cap) return true;
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
  if (s->in_map) {
    munmap(s->in_map, s->in_cap);
    close(s->in_fd);
  }
  s->in_map = m;
  s->in_cap = cap;
  s->in_fd = fd;
  s->in_sent = false;
  return true;
}

static void send_job(struct proc *p, struct slot *s) {
  weft__job *job = s->job;
  const char *name = weft_registry_name(job->fn); /* checked at submit */
  const char *iname = s->fresh && p->cfg.initializer ? weft_registry_name(p->cfg.initializer) : NULL;
  struct req h = {.name_len = (uint32_t)strlen(name),
                  .init_name_len = iname ? (uint32_t)strlen(iname) : 0,
                  .init_arg_size = iname ? p->cfg.init_arg_size : 0,
                  .item_size = job->in_size,
                  .count = job->count - s->next,
                  .max_result = p->cfg.max_payload ? p->cfg.max_payload : MAX_PAYLOAD};
  struct iovec iov[5] = {{&h, sizeof h},
                         {(void *)name, h.name_len},
                         {(void *)iname, h.init_name_len},
                         {(void *)p->cfg.init_arg, (size_t)h.init_arg_size},
                         /* no input at all (in == NULL): no arithmetic on NULL */
                         {job->in ? (void *)(job->in + s->next * job->in_size) : NULL,
                          (size_t)(h.count * h.item_size)}};
  int passfd = -1;
  if (iov[4].iov_len >= SHM_MIN && in_region(s, iov[4].iov_len)) {
    /* a large job: the items go through the input region */
    memcpy(s->in_map, iov[4].iov_base, iov[4].iov_len);
    h.flags = WIRE_SHM;
    if (!s->in_sent) {
      h.shm_size = s->in_cap;
      passfd = s->in_fd;
      s->in_sent = true;
    }
    iov[4].iov_len = 0;
  }
  s->state = S_BUSY;
  s->fresh = false;
  if (p->cfg.task_timeout_ms) s->item_deadline = weft_now() + p->cfg.task_timeout_ms;
  if (weft__send_iov(s->fd, iov, 5, passfd) != 0) {
    /* The worker is dying: its exit report will fail the item. */
    close_worker(p, s);
    s->state = S_DYING;
  }
}

static void on_exit_report(struct proc *p, struct slot *s, int st) {
  if (s->fd >= 0) {
    /* Results it sent before dying; only it held the other end, so the
     * socket is at EOF after them. */
    slot_read(p, s);
    close_worker(p, s);
  }
  if (s->job) {
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
    if (s->next == s->job->count) {
      weft__job_finish(s->job);
      s->job = NULL;
      s->next = 0;
    } else if (code == WEFT_ECANCELED || weft__job_cancel_requested(s->job)) {
      fail_rest(s, WEFT_ECANCELED, NULL);
    }
    /* else the rest of the job waits on this slot for its next process */
  }
  s->state = S_EMPTY;
  s->pid = 0;
  s->kill_code = 0;
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
    if (s->job) fail_rest(s, code, why);
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
    if (s->job && !s->kill_code && weft__job_cancel_requested(s->job)) {
      if (s->state == S_BUSY) {
        s->kill_code = WEFT_ECANCELED;
        s->term_at = now;
        zsend(p, Z_KILL, s->pid, SIGTERM);
      } else if (s->state != S_DYING) {
        fail_rest(s, WEFT_ECANCELED, NULL);
      }
    }
    if (s->job && s->state == S_BUSY && !s->kill_code && p->cfg.task_timeout_ms &&
        now >= s->item_deadline) {
      s->kill_code = WEFT_ETIMEDOUT;
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
  ns[p->nslots] = (struct slot){.state = S_EMPTY, .fd = -1, .rx_fd = -1, .in_fd = -1, .out_fd = -1};
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
    if (s->job) send_job(p, s);
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
    struct epoll_event ev[32];
    int n = epoll_wait(p->ep, ev, 32, busy ? TICK_MS : -1);
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
        if (s->fd >= 0 && !slot_read(p, s)) {
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
    if (p->slots[i].in_map) {
      munmap(p->slots[i].in_map, p->slots[i].in_cap);
      close(p->slots[i].in_fd);
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
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    weft__free(p);
    return WEFT_ENOMEM;
  }
  int rc = 0;
  if (!per_job) {
    p->slots = weft__calloc((size_t)ex->workers, sizeof *p->slots);
    if (!p->slots) rc = WEFT_ENOMEM;
    else p->nslots = ex->workers;
    for (int i = 0; i < p->nslots; i++) p->slots[i] = (struct slot){.state = S_EMPTY, .fd = -1, .rx_fd = -1, .in_fd = -1, .out_fd = -1};
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
  p->spawn_blocked = false;
  pthread_mutex_unlock(&p->mu);
  wake(p);
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
