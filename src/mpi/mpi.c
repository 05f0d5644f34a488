/*
 * mpi.c — the "mpi" backend: rank 0 submits, the other ranks run the tasks.
 *
 * It is a library of its own, libweft_mpi (built when MPI is found), so that
 * programs that do not use it do not load MPI: weft_mpi_init adds the "mpi"
 * kind to the executor table (weft__backend_add).
 *
 * Design note.
 *
 * Every rank calls weft_mpi_init. Rank 0 returns and runs the program; the
 * other ranks ("workers") stay inside it and serve until rank 0 calls
 * weft_mpi_finalize (or exits: an atexit hook does it). Functions travel by
 * their registered name (weft_register), inputs and results as bytes.
 *
 * Threads and MPI. One thread per process calls MPI at a time
 * (MPI_THREAD_SERIALIZED): on rank 0 the executor's communication thread
 * ("comm"), between weft_mpi_init and weft_mpi_finalize which the main
 * thread calls while no executor exists; on a worker its main thread, while
 * a task thread of its own runs the tasks. So a worker answers (heartbeats,
 * cancellations) while a long task runs. MPI offers no descriptor to sleep
 * on, so both sides poll: MPI_Improbe/MPI_Test, then a wait on a condition
 * variable (woken by a submit on rank 0, by a result on a worker) that backs
 * off from 16 us to 100 us while work is out, so a busy exchange costs
 * microseconds; a worker without work for a while polls every 2 ms, and
 * rank 0 with nothing out sleeps until a submit.
 *
 * Messages (one communicator, a dup of MPI_COMM_WORLD): rank 0 -> worker on
 * TAG_CTRL, one tag so that a job, a cancel for that job and the stop stay
 * in order: a header (struct hdr) followed by the function's name and, for a
 * job, its items. Worker -> rank 0: TAG_RES carries a header (a result, or a
 * heartbeat) and the failure message; a result's bytes follow on TAG_DATA,
 * received straight into the buffer handed to weft__job_deliver. Rank 0
 * copies a job's items into the message it sends, so a rank presumed dead
 * never reads the caller's memory after its job was failed.
 *
 * Load balancing. Workers run their jobs in order and answer every item in
 * order; rank 0 gives a job to an idle worker first, and a second one (sent
 * behind the first, so the worker does not wait for a round trip) when it
 * is a map's chunk, and up to PIPE when the worker's last job came back
 * within PIPE_MS (tiny tasks). Everything else waits in rank 0's queue for
 * whichever rank frees up first, so a slow rank takes less.
 *
 * Failure. A task's own error comes back with its code and message. Open
 * MPI reports no death of a peer to the survivors (their requests simply
 * never complete), so every wait is bounded: a worker holding work sends a
 * heartbeat every BEAT_MS, and rank 0 presumes dead a worker that holds
 * work and has sent nothing for dead_ms (WEFT_MPI_DEAD_MS, default 10 s).
 * Its undelivered items fail with WEFT_ECRASHED and a message naming the
 * rank and its host; it gets no more work, and anything it sends later is
 * dropped. Its unfinished MPI requests are left to MPI, their buffers freed
 * after MPI_Finalize. (For the survivors to survive at all, mpirun must not
 * end the job when a rank dies: --mca orte_enable_recovery 1.) After a
 * loss no rank calls MPI_Finalize, whose fence could wait for the dead.
 *
 * Locks: `mu` (per executor) guards the submit FIFO and the flags; `gmu`
 * (global) guards the session state read by create and finalize. Neither is
 * held while the other is taken, nor across a call into MPI or a job.
 */
#include "internal.h"

#include <mpi.h>

#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
  TAG_CTRL = 7001, /* rank 0 -> worker: job, cancel, stop */
  TAG_RES = 7002,  /* worker -> rank 0: result header, heartbeat */
  TAG_DATA = 7003, /* worker -> rank 0: a result's bytes */
  M_JOB = 1,
  M_CANCEL = 2,
  M_STOP = 3,
  M_RESULT = 4,
  M_BEAT = 5,
  PIPE = 4,          /* jobs in flight per worker, at most */
  PIPE_MS = 2,       /* ... if the last came back this fast (else 1 or 2) */
  BEAT_MS = 250,     /* worker heartbeat while it holds work */
  DEAD_MS = 10000,   /* default silence before a worker is presumed dead */
  BUSY_WAIT_US = 100,
  IDLE_WAIT_US = 2000,
  IDLE_AFTER_MS = 200, /* a worker without work this long polls slowly */
  SPIN_ROUNDS = 32,
  IDLE_WAIT_MS = 100, /* rank 0 with nothing in flight: wait for a submit */
};
#define MAX_PAYLOAD ((size_t)1 << 30)
/* Where a job's items start in its message: aligned as malloc aligns, so
 * a task may read its item as the type it is. */
#define ITEMS_AT(name_len) ((sizeof(struct hdr) + (name_len) + 15) & ~(size_t)15)

/* The fixed part of every message (same layout on every rank: weft expects
 * a homogeneous cluster, one build of the program everywhere). */
struct hdr {
  uint32_t type;
  int32_t code;      /* result: the item's outcome */
  uint64_t id;       /* the job */
  uint64_t n;        /* job: items; result: the item's index in the job */
  uint64_t size;     /* job: bytes per item; result: the result's bytes */
  uint32_t name_len; /* job: function name; result: failure message */
  uint32_t pad_;
};

/* ---- the session (every rank) ---- */

static pthread_mutex_t gmu = PTHREAD_MUTEX_INITIALIZER;
static int g_state; /* 0 not initialised, 1 running, 2 finalized */
/* A rank was presumed dead: MPI_Finalize, which waits for every rank (a
 * fence in Open MPI), could wait for it for ever, so it is not called. */
static bool g_lost;
static bool g_own_mpi; /* we called MPI_Init_thread, so we finalize */
static int g_rank, g_size;
static MPI_Comm g_comm;
static char (*g_hosts)[MPI_MAX_PROCESSOR_NAME]; /* rank 0: every rank's host */
static bool *g_dead;                            /* rank 0: presumed dead, for good */
static weft_executor *g_ex;                     /* rank 0: the one executor alive */
static uint64_t g_next_id = 1;                  /* rank 0: job ids (comm thread) */

/* A send or receive left to MPI: freed when it completes, or after
 * MPI_Finalize if it never does (a dead peer). */
struct req {
  struct req *next;
  MPI_Request r;
  void *buf;
};
static struct req *g_zombies; /* under gmu */

static int64_t dead_ms(void) {
  const char *e = getenv("WEFT_MPI_DEAD_MS");
  if (e && *e) {
    char *end;
    long long v = strtoll(e, &end, 10);
    if (!*end && v > 0) return v;
  }
  return DEAD_MS;
}

static uint64_t now_us(void) { return weft_now_ns() / 1000; }

/* Waits on c (initialised with weft__cond_init: CLOCK_MONOTONIC) for at most
 * `us` microseconds. The backoff needs waits below weft__cond_wait's
 * millisecond grain; this is a poll interval, never a deadline. */
static void wait_us(pthread_cond_t *c, pthread_mutex_t *m, long us) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_nsec += us * 1000;
  ts.tv_sec += ts.tv_nsec / 1000000000;
  ts.tv_nsec %= 1000000000;
  pthread_cond_timedwait(c, m, &ts);
}

/* How long to wait after `idle` rounds without news: 0 = only yield the
 * CPU and look again (the first SPIN_ROUNDS, some 50 us: the next message
 * of a busy exchange usually comes within them), then 16 us doubling to
 * `cap`: BUSY_WAIT_US while work is out (a sleep's wake-up is late by
 * much more than asked on a busy machine: with 1 ms the study's fib map
 * took a third longer), IDLE_WAIT_US for a worker idle a while. */
static long backoff(int idle, long cap) {
  if (idle <= SPIN_ROUNDS) return 0;
  int k = idle - SPIN_ROUNDS - 1;
  long us = 16L << (k < 7 ? k : 7);
  return us > cap ? cap : us;
}

/* Completes what it can of a list of requests; true if any completed. */
static bool reqs_test(struct req **list) {
  bool any = false;
  for (struct req **pp = list; *pp;) {
    struct req *q = *pp;
    int done = 0;
    if (MPI_Test(&q->r, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) done = 1;
    if (done) {
      *pp = q->next;
      weft__free(q->buf);
      weft__free(q);
      any = true;
    } else {
      pp = &q->next;
    }
  }
  return any;
}

/* Sends buf (ours, freed once sent) to rank `to`; the request joins list. */
static int isend(struct req **list, void *buf, size_t len, int to, int tag) {
  struct req *q = weft__malloc(sizeof *q);
  if (!q) {
    weft__free(buf);
    return WEFT_ENOMEM;
  }
  q->buf = buf;
  if (MPI_Isend(buf, (int)len, MPI_BYTE, to, tag, g_comm, &q->r) != MPI_SUCCESS) {
    weft__free(buf);
    weft__free(q);
    return WEFT_EIO;
  }
  q->next = *list;
  *list = q;
  return 0;
}

static void zombies_add(struct req *list) {
  pthread_mutex_lock(&gmu);
  while (list) {
    struct req *q = list;
    list = q->next;
    q->next = g_zombies;
    g_zombies = q;
  }
  pthread_mutex_unlock(&gmu);
}

/* A message matched by MPI_Improbe, received into a fresh buffer (with a
 * terminating zero after it). Bounded: a sender that dies mid-message is
 * noticed by the caller's deadline, and the receive is left as a zombie. */
struct inmsg {
  MPI_Request r;
  unsigned char *buf;
  int len;
  int src;
};

/* Probes for one message with `tag` from `src`; starts its receive. Returns
 * 1 if one was found (*m filled), 0 if none, < 0 on error. */
static int probe(int src, int tag, struct inmsg *m) {
  int flag = 0;
  MPI_Message msg;
  MPI_Status st;
  if (MPI_Improbe(src, tag, g_comm, &flag, &msg, &st) != MPI_SUCCESS) return WEFT_EIO;
  if (!flag) return 0;
  int len = 0;
  MPI_Get_count(&st, MPI_BYTE, &len);
  m->src = st.MPI_SOURCE;
  m->len = len;
  m->buf = weft__malloc((size_t)len + 1);
  if (!m->buf) {
    /* The matched message must still be taken: receiving it into no room
     * consumes it (MPI_ERR_TRUNCATE) and drops it. */
    char none;
    MPI_Mrecv(&none, len ? 0 : 1, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    return WEFT_ENOMEM;
  }
  m->buf[len] = 0;
  if (MPI_Imrecv(m->buf, len, MPI_BYTE, &msg, &m->r) != MPI_SUCCESS) {
    weft__free(m->buf);
    return WEFT_EIO;
  }
  return 1;
}

/* ======================================================================
 * Worker ranks
 * ====================================================================== */

struct wjob {
  struct wjob *next;
  uint64_t id;
  size_t count, item_size;
  char name[WEFT_REGISTRY_NAME_MAX + 1];
  unsigned char *msg; /* the whole message; items at `in` */
  const unsigned char *in;
  atomic_bool cancel;
};

struct wres {
  struct wres *next;
  uint64_t id;
  size_t index;
  int code;
  void *data;
  size_t size;
  char *msg;
};

struct worker {
  pthread_mutex_t mu;
  pthread_cond_t task_cv; /* task thread: a job arrived, or stop */
  pthread_cond_t comm_cv; /* comm: a result is ready */
  struct wjob *jobs, *jobs_tail; /* received, not finished (running first) */
  struct wres *res, *res_tail;   /* results to send, in order */
  bool stop;
};

static void *worker_tasks(void *arg) {
  struct worker *w = arg;
  pthread_setname_np(pthread_self(), "weft-mpitask");
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->jobs && !w->stop) weft__cond_wait(&w->task_cv, &w->mu, WEFT_FOREVER);
    if (!w->jobs) break;
    struct wjob *j = w->jobs; /* stays at the head (for cancels) until done */
    pthread_mutex_unlock(&w->mu);
    weft_fn fn = weft_registry_find(j->name);
    for (size_t i = 0; i < j->count; i++) {
      weft_out out = {0};
      out.cancel = &j->cancel;
      int rc;
      if (atomic_load_explicit(&j->cancel, memory_order_relaxed))
        rc = WEFT_ECANCELED;
      else if (!fn)
        rc = weft_out_fail(&out, WEFT_ENOENT, "function \"%s\" is not registered on rank %d",
                           j->name, g_rank);
      else
        rc = weft__out_code(&out, fn(j->in + i * j->item_size, j->item_size, &out));
      if (rc >= 0 && out.size > MAX_PAYLOAD)
        rc = weft_out_fail(&out, WEFT_ETOOBIG, "result of %zu bytes is above 1 GiB", out.size);
      struct wres *r = weft__calloc(1, sizeof *r);
      if (!r) {
        /* Without memory for the record the item cannot be answered; the
         * rank stops answering and rank 0 presumes it dead in time. */
        weft__out_reset(&out);
        continue;
      }
      r->id = j->id;
      r->index = i;
      r->code = rc;
      r->msg = out.msg;
      if (rc >= 0) {
        r->data = out.data;
        r->size = out.size;
      } else if (out.data) {
        weft__free(out.data);
      }
      pthread_mutex_lock(&w->mu);
      if (w->res_tail) w->res_tail->next = r;
      else w->res = r;
      w->res_tail = r;
      pthread_cond_signal(&w->comm_cv);
      pthread_mutex_unlock(&w->mu);
    }
    pthread_mutex_lock(&w->mu);
    w->jobs = j->next;
    if (!w->jobs) w->jobs_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    weft__free(j->msg);
    weft__free(j);
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

/* Takes a message from rank 0. Returns false on M_STOP. */
static bool worker_take(struct worker *w, unsigned char *buf, int len) {
  struct hdr h;
  if ((size_t)len < sizeof h) {
    weft__free(buf);
    return true;
  }
  memcpy(&h, buf, sizeof h);
  if (h.type == M_STOP) {
    if (h.code) {
      pthread_mutex_lock(&gmu);
      g_lost = true; /* rank 0 lost a rank: no MPI_Finalize */
      pthread_mutex_unlock(&gmu);
    }
    weft__free(buf);
    return false;
  }
  if (h.type == M_CANCEL) {
    pthread_mutex_lock(&w->mu);
    for (struct wjob *j = w->jobs; j; j = j->next)
      if (j->id == h.id) atomic_store(&j->cancel, true);
    pthread_mutex_unlock(&w->mu);
    weft__free(buf);
    return true;
  }
  if (h.type != M_JOB || h.name_len > WEFT_REGISTRY_NAME_MAX ||
      (h.size && h.n > (uint64_t)len / h.size) || ITEMS_AT(h.name_len) + h.n * h.size > (size_t)len) {
    weft__free(buf);
    return true;
  }
  struct wjob *j = weft__calloc(1, sizeof *j);
  if (!j) {
    weft__free(buf);
    return true; /* unanswered: rank 0 presumes this rank dead in time */
  }
  j->id = h.id;
  j->count = h.n;
  j->item_size = h.size;
  memcpy(j->name, buf + sizeof h, h.name_len);
  j->msg = buf;
  j->in = buf + ITEMS_AT(h.name_len);
  atomic_init(&j->cancel, false);
  pthread_mutex_lock(&w->mu);
  if (w->jobs_tail) w->jobs_tail->next = j;
  else w->jobs = j;
  w->jobs_tail = j;
  pthread_cond_signal(&w->task_cv);
  pthread_mutex_unlock(&w->mu);
  return true;
}

/* Sends one result: header and message, then the bytes (owned by the
 * request until sent). */
static void worker_send(struct req **sends, struct wres *r) {
  size_t mlen = r->msg ? strlen(r->msg) : 0;
  unsigned char *b = weft__malloc(sizeof(struct hdr) + mlen);
  if (b) {
    struct hdr h = {.type = M_RESULT, .code = r->code, .id = r->id, .n = r->index,
                    .size = r->size, .name_len = (uint32_t)mlen};
    memcpy(b, &h, sizeof h);
    if (mlen) memcpy(b + sizeof h, r->msg, mlen);
    isend(sends, b, sizeof h + mlen, 0, TAG_RES);
    if (r->size) isend(sends, r->data, r->size, 0, TAG_DATA);
    else weft__free(r->data);
  } else {
    weft__free(r->data);
  }
  weft__free(r->msg);
  weft__free(r);
}

static void worker_beat(struct req **sends) {
  struct hdr *h = weft__calloc(1, sizeof *h);
  if (!h) return;
  h->type = M_BEAT;
  isend(sends, h, sizeof *h, 0, TAG_RES);
}

/* Serves rank 0 until it says stop. */
static void worker_serve(void) {
  struct worker w;
  memset(&w, 0, sizeof w);
  pthread_mutex_init(&w.mu, NULL);
  weft__cond_init(&w.task_cv);
  weft__cond_init(&w.comm_cv);
  pthread_t tt;
  bool have_thread = pthread_create(&tt, NULL, worker_tasks, &w) == 0;
  struct req *sends = NULL;
  struct inmsg in = {0};
  bool receiving = false, running = true;
  uint64_t last_sent = now_us(), last_busy = last_sent;
  int idle = 0;
  while (running) {
    bool act = false;
    if (!receiving) {
      int rc = probe(0, TAG_CTRL, &in);
      if (rc == 1) receiving = true;
    }
    if (receiving) {
      int done = 0;
      MPI_Test(&in.r, &done, MPI_STATUS_IGNORE);
      if (done) {
        receiving = false;
        act = true;
        if (!worker_take(&w, in.buf, in.len)) running = false;
      }
    }
    if (reqs_test(&sends)) act = true;
    pthread_mutex_lock(&w.mu);
    struct wres *r = w.res;
    w.res = w.res_tail = NULL;
    /* Rank 0 waits for this rank while it receives or holds work, or
     * sends results (a large one may take long): beat meanwhile. Without
     * a task thread nothing runs: no heartbeat, so rank 0 presumes this
     * rank dead instead of waiting for it. */
    bool holding = (receiving || w.jobs != NULL || sends != NULL) && have_thread;
    pthread_mutex_unlock(&w.mu);
    while (r) {
      struct wres *next = r->next;
      worker_send(&sends, r);
      r = next;
      act = true;
      last_sent = now_us();
    }
    if (holding && now_us() - last_sent >= BEAT_MS * 1000) {
      worker_beat(&sends);
      last_sent = now_us();
    }
    idle = act ? 0 : idle + 1;
    uint64_t now = now_us();
    if (act || holding) last_busy = now;
    bool slow = now - last_busy > (uint64_t)IDLE_AFTER_MS * 1000;
    long us = backoff(idle, slow ? IDLE_WAIT_US : BUSY_WAIT_US);
    if (running && us) {
      pthread_mutex_lock(&w.mu);
      if (!w.res) wait_us(&w.comm_cv, &w.mu, us);
      pthread_mutex_unlock(&w.mu);
    } else if (running && idle) {
      sched_yield();
    }
  }
  /* Stop: running work is asked to end; give it a moment, then go. */
  pthread_mutex_lock(&w.mu);
  w.stop = true;
  for (struct wjob *j = w.jobs; j; j = j->next) atomic_store(&j->cancel, true);
  pthread_cond_signal(&w.task_cv);
  pthread_mutex_unlock(&w.mu);
  int64_t until = weft_deadline_in(2000);
  bool joined = !have_thread;
  while (!joined && !weft__deadline_passed(until)) {
    pthread_mutex_lock(&w.mu);
    bool empty = w.jobs == NULL;
    pthread_mutex_unlock(&w.mu);
    if (empty) {
      pthread_join(tt, NULL);
      joined = true;
    } else {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  /* Flush what is being sent (bounded), then the results nobody reads. */
  until = weft_deadline_in(2000);
  while (sends && !weft__deadline_passed(until)) {
    if (!reqs_test(&sends)) {
      struct timespec ts = {0, 100000};
      nanosleep(&ts, NULL);
    }
  }
  if (joined) {
    while (w.res) {
      struct wres *r = w.res;
      w.res = r->next;
      weft__free(r->data);
      weft__free(r->msg);
      weft__free(r);
    }
  }
  zombies_add(sends);
}

/* ======================================================================
 * Rank 0: the executor
 * ====================================================================== */

/* A result received (or being received) from a worker, in its order. */
struct pres {
  struct pres *next;
  MPI_Request r;
  bool receiving; /* r is a pending receive of the bytes */
  uint64_t id;
  size_t index;
  int code;
  void *data;
  size_t size;
  char *msg;
};

struct wk {
  int rank;
  bool dead;
  weft__job *job[PIPE]; /* in flight, oldest first */
  uint64_t id[PIPE];
  bool cancel_sent[PIPE];
  int n;                /* jobs in flight */
  size_t next;          /* job[0]'s first item not delivered */
  uint64_t sent_at;     /* job[0]'s send (or its predecessor's end), us */
  uint64_t last_rtt;    /* jobs' time in flight, a decaying maximum, us */
  int64_t last_seen;    /* ms: the last message from it, or a send to an idle one */
  struct pres *res, *res_tail;
  struct req *sends;
};

struct mpx {
  weft_executor *ex;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  weft__job *head, *tail; /* the submit FIFO */
  size_t nqueued;
  bool sleeping; /* comm waits on cv: a submit must signal */
  bool stop;
  bool joined;   /* the comm thread was joined (at exit) */
  atomic_int size, busy;
  int64_t dead_ms;
  /* comm thread only */
  struct wk *w;
  int nw;
  struct inmsg in;
  bool receiving;
};

static weft__job *fifo_pop(struct mpx *m) {
  pthread_mutex_lock(&m->mu);
  weft__job *j = m->head;
  if (j) {
    m->head = j->next;
    if (!m->head) m->tail = NULL;
    m->nqueued--;
  }
  pthread_mutex_unlock(&m->mu);
  return j;
}

static const char *host_of(int rank) { return g_hosts ? g_hosts[rank] : "?"; }

/* The job at the head of w is complete: the next takes its place. */
static void wk_finish_head(struct wk *w) {
  weft__job *job = w->job[0];
  uint64_t now = now_us();
  /* A decaying maximum: one long job makes the rank count as slow for a
   * while, so mixed work (short, then long items) is not queued deep. */
  uint64_t rtt = now - w->sent_at, decayed = w->last_rtt - w->last_rtt / 8;
  w->last_rtt = rtt > decayed ? rtt : decayed;
  w->sent_at = now;
  for (int k = 1; k < w->n; k++) {
    w->job[k - 1] = w->job[k];
    w->id[k - 1] = w->id[k];
    w->cancel_sent[k - 1] = w->cancel_sent[k];
  }
  w->n--;
  w->next = 0;
  weft__job_finish(job);
}

/* Fails everything w holds: the rank is presumed dead. */
static void wk_bury(struct mpx *m, struct wk *w, const char *why) {
  w->dead = true;
  /* Counted out before its work fails, so whoever sees the failure sees
   * the smaller executor too. */
  int live = 0;
  for (int i = 0; i < m->nw; i++) live += !m->w[i].dead;
  atomic_store_explicit(&m->size, live, memory_order_relaxed);
  pthread_mutex_lock(&gmu);
  if (g_dead) g_dead[w->rank] = true;
  pthread_mutex_unlock(&gmu);
  char msg[256 + MPI_MAX_PROCESSOR_NAME];
  snprintf(msg, sizeof msg, "mpi rank %d on %s %s", w->rank, host_of(w->rank), why);
  while (w->n > 0) {
    weft__job *job = w->job[0];
    for (size_t i = w->next; i < job->count; i++)
      weft__job_deliver(job, i, WEFT_ECRASHED, NULL, 0, weft__strdup(msg));
    wk_finish_head(w);
  }
  struct req *z = NULL;
  for (struct pres *p = w->res; p;) {
    struct pres *next = p->next;
    if (p->receiving) {
      struct req *q = weft__malloc(sizeof *q);
      if (q) {
        q->r = p->r;
        q->buf = p->data;
        q->next = z;
        z = q;
      } /* else the buffer stays with MPI for good */
    } else {
      weft__free(p->data);
    }
    weft__free(p->msg);
    weft__free(p);
    p = next;
  }
  w->res = w->res_tail = NULL;
  zombies_add(z);
  zombies_add(w->sends);
  w->sends = NULL;
}

/* Delivers w's received results from the front, in order. */
static bool wk_deliver(struct mpx *m, struct wk *w) {
  bool any = false;
  while (w->res && !w->dead) {
    struct pres *p = w->res;
    if (p->receiving) {
      int done = 0;
      if (MPI_Test(&p->r, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        wk_bury(m, w, "failed while sending a result");
        return true;
      }
      if (!done) break;
      p->receiving = false;
    }
    w->res = p->next;
    if (!w->res) w->res_tail = NULL;
    any = true;
    if (w->n == 0 || p->id != w->id[0] || p->index != w->next) {
      /* Not the answer expected next: a protocol breach. */
      weft__free(p->data);
      weft__free(p->msg);
      weft__free(p);
      wk_bury(m, w, "sent a result out of order");
      return true;
    }
    weft__job_deliver(w->job[0], w->next++, p->code, p->data, p->code < 0 ? 0 : p->size,
                      p->msg);
    weft__free(p);
    if (w->next == w->job[0]->count) wk_finish_head(w);
  }
  return any;
}

static struct wk *wk_of(struct mpx *m, int rank) {
  for (int i = 0; i < m->nw; i++)
    if (m->w[i].rank == rank) return &m->w[i];
  return NULL;
}

/* Takes a message from a worker (header and failure message). */
static void take_result(struct mpx *m, unsigned char *buf, int len, int src) {
  struct wk *w = wk_of(m, src);
  struct hdr h;
  if (!w || w->dead || (size_t)len < sizeof h) {
    weft__free(buf);
    return; /* a buried rank's late words are dropped */
  }
  memcpy(&h, buf, sizeof h);
  w->last_seen = weft_now();
  if (h.type != M_RESULT) {
    weft__free(buf);
    return;
  }
  struct pres *p = weft__calloc(1, sizeof *p);
  char *msg = NULL;
  if (p && h.name_len && sizeof h + h.name_len <= (size_t)len) {
    msg = weft__malloc(h.name_len + 1);
    if (msg) {
      memcpy(msg, buf + sizeof h, h.name_len);
      msg[h.name_len] = 0;
    }
  }
  weft__free(buf);
  if (!p) {
    wk_bury(m, w, "could not be answered: out of memory on rank 0");
    return;
  }
  p->id = h.id;
  p->index = (size_t)h.n;
  p->code = h.code;
  p->msg = msg;
  p->size = (size_t)h.size;
  if (p->size) {
    /* The bytes follow on TAG_DATA: receive them straight into the buffer
     * the future will own (posted in order, matched in order). */
    p->data = weft__malloc(p->size);
    if (!p->data || MPI_Irecv(p->data, (int)p->size, MPI_BYTE, src, TAG_DATA, g_comm, &p->r) !=
                        MPI_SUCCESS) {
      weft__free(p->data);
      weft__free(p->msg);
      weft__free(p);
      wk_bury(m, w, "could not be answered: no memory for a result on rank 0");
      return;
    }
    p->receiving = true;
  }
  if (w->res_tail) w->res_tail->next = p;
  else w->res = p;
  w->res_tail = p;
}

/* Sends job to w. Returns 0, or an error (the job is not taken). */
static int send_job(struct mpx *m, struct wk *w, weft__job *job) {
  const char *name = weft_registry_name(job->fn); /* checked at submit */
  size_t nlen = strlen(name), bytes = job->count * job->in_size;
  size_t at = ITEMS_AT(nlen);
  unsigned char *b = weft__malloc(at + bytes);
  if (!b) return WEFT_ENOMEM;
  memset(b + sizeof(struct hdr), 0, at - sizeof(struct hdr)); /* name + padding */
  uint64_t id = g_next_id++;
  struct hdr h = {.type = M_JOB, .id = id, .n = job->count, .size = job->in_size,
                  .name_len = (uint32_t)nlen};
  memcpy(b, &h, sizeof h);
  memcpy(b + sizeof h, name, nlen);
  if (bytes) memcpy(b + at, job->in, bytes);
  int rc = isend(&w->sends, b, at + bytes, w->rank, TAG_CTRL);
  if (rc) return rc;
  (void)m;
  if (w->n == 0) {
    w->sent_at = now_us();
    w->last_seen = weft_now();
  }
  w->job[w->n] = job;
  w->id[w->n] = id;
  w->cancel_sent[w->n] = false;
  w->n++;
  return 0;
}

static void send_ctl(struct wk *w, int type, uint64_t id) {
  struct hdr *h = weft__calloc(1, sizeof *h);
  if (!h) return;
  h->type = (uint32_t)type;
  h->id = id;
  isend(&w->sends, h, sizeof *h, w->rank, TAG_CTRL);
}

static int live_workers(struct mpx *m) {
  int n = 0;
  for (int i = 0; i < m->nw; i++) n += !m->w[i].dead;
  return n;
}

/* Hands queued jobs to workers with room. */
static bool dispatch(struct mpx *m) {
  bool any = false;
  for (;;) {
    pthread_mutex_lock(&m->mu);
    bool chunk = m->head && m->head->batch;
    pthread_mutex_unlock(&m->mu);
    struct wk *best = NULL;
    for (int i = 0; i < m->nw; i++) {
      struct wk *w = &m->w[i];
      /* Jobs behind a running one: up to PIPE behind quick ones (a rank
       * that answers within PIPE_MS always has the next at hand), else one
       * map chunk (as the process pool does: a rank never waits for a
       * round trip between chunks, which on a busy machine costs
       * milliseconds of scheduling), else none (a queue of long tasks
       * spreads over the ranks as they free up). */
      bool quick = w->last_rtt && w->last_rtt <= (uint64_t)PIPE_MS * 1000;
      int room = quick ? PIPE : chunk ? 2 : 1;
      if (w->dead || w->n >= room) continue;
      if (!best || w->n < best->n) best = w;
    }
    if (!best) {
      if (live_workers(m) == 0) {
        weft__job *j;
        while ((j = fifo_pop(m))) {
          if (!weft__job_start(j)) {
            weft__job_cancel(j);
            continue;
          }
          for (size_t i = 0; i < j->count; i++)
            weft__job_deliver(j, i, WEFT_ECRASHED, NULL, 0,
                              weft__strdup("no mpi worker rank is left alive"));
          weft__job_finish(j);
        }
      }
      return any;
    }
    weft__job *j = fifo_pop(m);
    if (!j) return any;
    any = true;
    if (!weft__job_start(j)) {
      weft__job_cancel(j);
      continue;
    }
    int rc = send_job(m, best, j);
    if (rc) {
      for (size_t i = 0; i < j->count; i++) weft__job_deliver(j, i, rc, NULL, 0, NULL);
      weft__job_finish(j);
    }
  }
}

/* One look at everything: returns true if anything happened. */
static bool comm_round(struct mpx *m) {
  bool act = false;
  /* Incoming headers, one at a time (a large one is received over rounds). */
  for (int k = 0; k < 64; k++) {
    if (!m->receiving) {
      int rc = probe(MPI_ANY_SOURCE, TAG_RES, &m->in);
      if (rc != 1) break;
      m->receiving = true;
    }
    int done = 0;
    MPI_Test(&m->in.r, &done, MPI_STATUS_IGNORE);
    if (!done) break;
    m->receiving = false;
    take_result(m, m->in.buf, m->in.len, m->in.src);
    act = true;
  }
  int64_t now = weft_now();
  for (int i = 0; i < m->nw; i++) {
    struct wk *w = &m->w[i];
    if (w->dead) continue;
    if (wk_deliver(m, w)) act = true;
    if (w->dead) continue;
    if (reqs_test(&w->sends)) act = true;
    for (int k = 0; k < w->n; k++) {
      if (!w->cancel_sent[k] && weft__job_cancel_requested(w->job[k])) {
        send_ctl(w, M_CANCEL, w->id[k]);
        w->cancel_sent[k] = true;
      }
    }
    if ((w->n > 0 || w->res) && now - w->last_seen > m->dead_ms) {
      char why[96];
      snprintf(why, sizeof why, "stopped answering (nothing for %lld ms): presumed dead",
               (long long)(now - w->last_seen));
      wk_bury(m, w, why);
      act = true;
    }
  }
  if (dispatch(m)) act = true;
  int size = 0, busy = 0;
  for (int i = 0; i < m->nw; i++) {
    size += !m->w[i].dead;
    busy += !m->w[i].dead && m->w[i].n > 0;
  }
  atomic_store_explicit(&m->size, size, memory_order_relaxed);
  atomic_store_explicit(&m->busy, busy, memory_order_relaxed);
  return act;
}

static bool in_flight(struct mpx *m) {
  for (int i = 0; i < m->nw; i++)
    if (!m->w[i].dead && (m->w[i].n || m->w[i].res || m->w[i].sends)) return true;
  return m->receiving;
}

static void *comm_main(void *arg) {
  struct mpx *m = arg;
  pthread_setname_np(pthread_self(), "weft-mpicomm");
  int idle = 0;
  for (;;) {
    bool act = comm_round(m);
    pthread_mutex_lock(&m->mu);
    if (m->stop) {
      pthread_mutex_unlock(&m->mu);
      break;
    }
    idle = act ? 0 : idle + 1;
    bool flying = in_flight(m);
    /* Queued jobs wait for a worker's answer like everything else: an
     * MPI event, found by polling. */
    if (!act) {
      m->sleeping = true;
      long us = backoff(idle, BUSY_WAIT_US);
      if (!flying) weft__cond_wait(&m->cv, &m->mu, weft_deadline_in(IDLE_WAIT_MS));
      else if (us) wait_us(&m->cv, &m->mu, us);
      m->sleeping = false;
      if (flying && !us) {
        pthread_mutex_unlock(&m->mu);
        sched_yield();
        continue;
      }
    }
    pthread_mutex_unlock(&m->mu);
  }
  /* Destroy follows a complete shutdown: nothing is in flight but sends
   * (cancels) that may never complete; leave them to MPI. */
  for (int i = 0; i < m->nw; i++) {
    if (!m->w[i].dead) {
      reqs_test(&m->w[i].sends);
      zombies_add(m->w[i].sends);
      m->w[i].sends = NULL;
    }
  }
  if (m->receiving) {
    struct req *q = weft__malloc(sizeof *q);
    if (q) {
      q->r = m->in.r;
      q->buf = m->in.buf;
      q->next = NULL;
      zombies_add(q);
    }
    m->receiving = false;
  }
  return NULL;
}

static void mpx_free(struct mpx *m) {
  pthread_cond_destroy(&m->cv);
  pthread_mutex_destroy(&m->mu);
  weft__free(m->w);
  weft__free(m);
}

static int mpi_init_ex(weft_executor *ex) {
  pthread_mutex_lock(&gmu);
  int rc = 0;
  if (g_state != 1) rc = WEFT_EINVAL; /* weft_mpi_init first (rank 0) */
  else if (g_ex) rc = WEFT_EBUSY;     /* one mpi executor at a time */
  else if (g_size < 2) rc = WEFT_EAGAIN;
  if (rc) {
    pthread_mutex_unlock(&gmu);
    return rc;
  }
  struct mpx *m = weft__calloc(1, sizeof *m);
  if (m) m->w = weft__calloc((size_t)g_size, sizeof *m->w);
  if (!m || !m->w) {
    pthread_mutex_unlock(&gmu);
    if (m) weft__free(m);
    return WEFT_ENOMEM;
  }
  int want = ex->opts.workers;
  for (int r = 1; r < g_size; r++) {
    if (g_dead[r]) continue;
    if (want > 0 && m->nw == want) break;
    m->w[m->nw].rank = r;
    m->w[m->nw].last_seen = weft_now();
    m->nw++;
  }
  pthread_mutex_unlock(&gmu);
  if (m->nw == 0) {
    weft__free(m->w);
    weft__free(m);
    return WEFT_EAGAIN; /* every worker rank is dead */
  }
  m->ex = ex;
  m->dead_ms = dead_ms();
  atomic_init(&m->size, m->nw);
  atomic_init(&m->busy, 0);
  if (pthread_mutex_init(&m->mu, NULL) != 0) {
    weft__free(m->w);
    weft__free(m);
    return WEFT_ENOMEM;
  }
  if (weft__cond_init(&m->cv) != 0) {
    pthread_mutex_destroy(&m->mu);
    weft__free(m->w);
    weft__free(m);
    return WEFT_ENOMEM;
  }
  ex->workers = m->nw; /* map's automatic chunk size follows the ranks */
  /* The comm thread takes no signals meant for the program's threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(&m->thread, NULL, comm_main, m);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e) {
    mpx_free(m);
    return WEFT_EAGAIN;
  }
  pthread_mutex_lock(&gmu);
  g_ex = ex;
  pthread_mutex_unlock(&gmu);
  ex->impl = m;
  return 0;
}

static int mpi_submit(weft_executor *ex, weft__job *job) {
  struct mpx *m = ex->impl;
  if (!weft_registry_name(job->fn)) return WEFT_ENOENT;
  if (job->in_size && job->count > MAX_PAYLOAD / job->in_size) return WEFT_ETOOBIG;
  job->next = NULL;
  pthread_mutex_lock(&m->mu);
  if (m->tail) m->tail->next = job;
  else m->head = job;
  m->tail = job;
  m->nqueued++;
  if (m->sleeping) pthread_cond_signal(&m->cv);
  pthread_mutex_unlock(&m->mu);
  return 0;
}

static int mpi_shutdown(weft_executor *ex, int flags, int64_t deadline) {
  struct mpx *m = ex->impl;
  if (flags & WEFT_SHUTDOWN_CANCEL) {
    pthread_mutex_lock(&m->mu);
    weft__job *j = m->head;
    m->head = m->tail = NULL;
    m->nqueued = 0;
    pthread_mutex_unlock(&m->mu);
    while (j) {
      weft__job *next = j->next;
      weft__job_cancel(j);
      j = next;
    }
  }
  pthread_mutex_lock(&m->mu);
  pthread_cond_signal(&m->cv); /* running work sees ex->cancelling at once */
  pthread_mutex_unlock(&m->mu);
  return weft__executor_wait_idle(ex, deadline);
}

static void mpi_destroy(weft_executor *ex) {
  struct mpx *m = ex->impl;
  if (!m) return;
  pthread_mutex_lock(&m->mu);
  m->stop = true;
  pthread_cond_signal(&m->cv);
  pthread_mutex_unlock(&m->mu);
  if (!m->joined) pthread_join(m->thread, NULL);
  mpx_free(m);
  ex->impl = NULL;
  pthread_mutex_lock(&gmu);
  g_ex = NULL;
  pthread_mutex_unlock(&gmu);
}

static void mpi_stats(weft_executor *ex, weft_executor_stats *st) {
  struct mpx *m = ex->impl;
  st->size = atomic_load_explicit(&m->size, memory_order_relaxed);
  st->busy = atomic_load_explicit(&m->busy, memory_order_relaxed);
  pthread_mutex_lock(&m->mu);
  st->queued = m->nqueued;
  pthread_mutex_unlock(&m->mu);
}

static const weft__backend weft__backend_mpi = {
    .name = "mpi",
    .sizing = WEFT__SIZE_CPU, /* replaced by the worker ranks at init */
    .init = mpi_init_ex,
    .submit = mpi_submit,
    .shutdown = mpi_shutdown,
    .destroy = mpi_destroy,
    .stats = mpi_stats,
};

/* ======================================================================
 * The session: init and finalize
 * ====================================================================== */

/* Rank 0 leaves (main returned, exit): the workers must be told, or they
 * would wait for it for ever (with mpirun's recovery mode, nothing else
 * ends them). An executor still alive is abandoned: its thread is stopped
 * (work in flight is not waited for) so that this thread may call MPI. */
static void finalize_at_exit(void) {
  pthread_mutex_lock(&gmu);
  weft_executor *ex = g_ex;
  pthread_mutex_unlock(&gmu);
  if (ex) {
    struct mpx *m = ex->impl;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    m->joined = true;
    pthread_mutex_lock(&gmu);
    g_ex = NULL;
    pthread_mutex_unlock(&gmu);
  }
  (void)weft_mpi_finalize();
}

int weft_mpi_init(int *argc, char ***argv) {
  pthread_mutex_lock(&gmu);
  int state = g_state;
  pthread_mutex_unlock(&gmu);
  if (state == 1) return 0;
  if (state == 2) return WEFT_EINVAL; /* MPI cannot be initialised twice */
  int inited = 0, provided = 0;
  MPI_Initialized(&inited);
  if (inited) {
    MPI_Query_thread(&provided);
  } else {
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
      return WEFT_EIO;
    g_own_mpi = true;
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    if (g_own_mpi) MPI_Finalize();
    return WEFT_ENOSYS;
  }
  MPI_Comm comm;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  /* Errors come back as codes: a failing peer must not abort this rank. */
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  /* Every rank's host, for rank 0's error messages. */
  char host[MPI_MAX_PROCESSOR_NAME] = {0};
  int hl = 0;
  MPI_Get_processor_name(host, &hl);
  char(*hosts)[MPI_MAX_PROCESSOR_NAME] = NULL;
  bool *dead = NULL;
  if (rank == 0) {
    hosts = weft__calloc((size_t)size, sizeof *hosts);
    dead = weft__calloc((size_t)size, sizeof *dead);
  }
  MPI_Gather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, hosts ? hosts[0] : NULL,
             MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, comm);
  pthread_mutex_lock(&gmu);
  g_comm = comm;
  g_rank = rank;
  g_size = size;
  g_hosts = hosts;
  g_dead = dead;
  g_state = 1;
  pthread_mutex_unlock(&gmu);
  if (rank == 0) {
    if (!dead || weft__backend_add(&weft__backend_mpi) != 0) {
      weft_mpi_finalize();
      return WEFT_ENOMEM;
    }
    atexit(finalize_at_exit);
    return 0;
  }
  worker_serve();
  weft_mpi_finalize();
  exit(0);
}

int weft_mpi_rank(void) {
  pthread_mutex_lock(&gmu);
  int r = g_state == 1 ? g_rank : WEFT_EINVAL;
  pthread_mutex_unlock(&gmu);
  return r;
}

int weft_mpi_size(void) {
  pthread_mutex_lock(&gmu);
  int r = g_state == 1 ? g_size : WEFT_EINVAL;
  pthread_mutex_unlock(&gmu);
  return r;
}

int weft_mpi_finalize(void) {
  pthread_mutex_lock(&gmu);
  if (g_state != 1) {
    pthread_mutex_unlock(&gmu);
    return 0;
  }
  if (g_ex) {
    pthread_mutex_unlock(&gmu);
    return WEFT_EBUSY; /* an executor still runs: destroy it first */
  }
  g_state = 2;
  pthread_mutex_unlock(&gmu);
  if (g_rank == 0) {
    bool lost = false;
    for (int r = 1; r < g_size; r++) lost |= g_dead[r];
    pthread_mutex_lock(&gmu);
    g_lost |= lost;
    pthread_mutex_unlock(&gmu);
    /* Tell every live worker to stop, and whether a rank was lost;
     * bounded, a dead one never takes it. */
    struct req *sends = NULL;
    for (int r = 1; r < g_size; r++) {
      if (g_dead[r]) continue;
      struct hdr *h = weft__calloc(1, sizeof *h);
      if (!h) continue;
      h->type = M_STOP;
      h->code = lost;
      isend(&sends, h, sizeof *h, r, TAG_CTRL);
    }
    int64_t until = weft_deadline_in(5000);
    while (sends && !weft__deadline_passed(until)) {
      if (!reqs_test(&sends)) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
      }
    }
    zombies_add(sends);
  }
  pthread_mutex_lock(&gmu);
  bool clean = g_zombies == NULL, lost = g_lost;
  pthread_mutex_unlock(&gmu);
  if (lost) {
    /* Open MPI's MPI_Finalize waits for every rank, the dead one too (it
     * was seen to hang): leave MPI as it is; the process exits without it,
     * which mpirun in recovery mode (the only way to get here) accepts.
     * Requests MPI may still use keep their buffers. */
    pthread_mutex_lock(&gmu);
    weft__free(g_hosts);
    g_hosts = NULL;
    pthread_mutex_unlock(&gmu);
    return 0;
  }
  if (clean) MPI_Comm_free(&g_comm); /* else requests still name it */
  if (g_own_mpi) MPI_Finalize();
  /* MPI is gone: what it never completed can be freed now. */
  pthread_mutex_lock(&gmu);
  while (g_zombies) {
    struct req *q = g_zombies;
    g_zombies = q->next;
    weft__free(q->buf);
    weft__free(q);
  }
  weft__free(g_hosts);
  weft__free(g_dead);
  g_hosts = NULL;
  g_dead = NULL;
  pthread_mutex_unlock(&gmu);
  return 0;
}
