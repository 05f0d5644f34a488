/*
 * test_sync.c — channel, event and semaphore.
 *
 * Blocking is proven without sleeps: a thread that is about to block
 * publishes its kernel thread id, and the test waits (bounded poll) until
 * /proc shows that thread asleep before it wakes it. That check only makes
 * sure the wake-up path is the one exercised; every assertion would also be
 * right if the thread had not reached its wait yet. "Still blocked" is
 * asserted with a timed wait on an event the thread sets when it returns.
 */
#include "wt.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static int self_tid(void) { return (int)syscall(SYS_gettid); }

/* 1 if thread `tid` of this process sleeps in the kernel (state S, as in a
 * futex wait), 0 if it is running, -1 if it is gone or /proc cannot say. */
static int tid_asleep(int tid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char buf[512];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the name may hold spaces and ')' */
  if (!p || p[1] != ' ' || p[2] == '\0') return -1;
  return p[2] == 'S' ? 1 : 0;
}

/* Polls (at most 10 s) until the thread that publishes its id in *tid is
 * asleep, or gone (then later assertions tell what it did). */
static void wait_asleep(atomic_int *tid) {
  int64_t end = weft_deadline_in(10000);
  while (weft_now() < end) {
    int t = atomic_load(tid);
    if (t != 0 && tid_asleep(t) != 0) return;
    sched_yield();
  }
}

/* One thread making one blocking call. */
struct call {
  pthread_t th;
  atomic_int tid;   /* published just before the call */
  weft_chan *ch;
  weft_event *ev;
  weft_sem *sem;
  int value;        /* element to send, or the one received */
  int64_t deadline; /* default: far enough to mean "a lost wake-up" */
  int rc;           /* what the call returned */
  int64_t returned_at;
  weft_event *done; /* set after the call returned (may be NULL) */
};

static void call_init(struct call *c) {
  memset(c, 0, sizeof *c);
  atomic_init(&c->tid, 0);
  /* A bounded wait turns a lost wake-up into a failed assertion instead of a
   * hang; the tests that need the untimed path set WEFT_FOREVER. */
  c->deadline = weft_deadline_in(20000);
}

static void *call_finish(struct call *c, int rc) {
  c->returned_at = weft_now();
  c->rc = rc;
  if (c->done) ASSERT_OK(weft_event_set(c->done));
  return NULL;
}

static void *do_chan_send(void *arg) {
  struct call *c = arg;
  atomic_store(&c->tid, self_tid());
  return call_finish(c, weft_chan_send(c->ch, &c->value, c->deadline));
}

static void *do_chan_recv(void *arg) {
  struct call *c = arg;
  atomic_store(&c->tid, self_tid());
  return call_finish(c, weft_chan_recv(c->ch, &c->value, c->deadline));
}

static void *do_event_wait(void *arg) {
  struct call *c = arg;
  atomic_store(&c->tid, self_tid());
  return call_finish(c, weft_event_wait(c->ev, c->deadline));
}

static void *do_sem_wait(void *arg) {
  struct call *c = arg;
  atomic_store(&c->tid, self_tid());
  return call_finish(c, weft_sem_wait(c->sem, c->deadline));
}

static void start(struct call *c, void *(*fn)(void *)) {
  ASSERT_EQ(pthread_create(&c->th, NULL, fn, c), 0);
}

/* Joins, and checks that a bounded call was woken rather than rescued by its
 * deadline (a waiter re-checks its condition after a timeout, so a lost
 * wake-up would otherwise still look like success). */
static void join(struct call *c) {
  ASSERT_EQ(pthread_join(c->th, NULL), 0);
  if (c->deadline != WEFT_FOREVER) ASSERT_LT(c->returned_at, c->deadline);
}

/* Allocators for the out-of-memory and accounting tests. */
static void *no_malloc(size_t n) {
  (void)n;
  return NULL;
}
static void *no_realloc(void *p, size_t n) {
  (void)p;
  (void)n;
  return NULL;
}

static atomic_long live_allocs, total_allocs;
static void *count_malloc(size_t n) {
  void *p = malloc(n);
  if (p) {
    atomic_fetch_add(&live_allocs, 1);
    atomic_fetch_add(&total_allocs, 1);
  }
  return p;
}
static void *count_realloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (q && !p) {
    atomic_fetch_add(&live_allocs, 1);
    atomic_fetch_add(&total_allocs, 1);
  }
  return q;
}
static void count_free(void *p) {
  if (p) atomic_fetch_sub(&live_allocs, 1);
  free(p);
}

/* ---- all three ------------------------------------------------------------ */

TEST(create_nomem) {
  static char sentinel;
  weft_chan *ch = (weft_chan *)(void *)&sentinel;
  weft_event *ev = (weft_event *)(void *)&sentinel;
  weft_sem *s = (weft_sem *)(void *)&sentinel;
  weft_set_allocator(no_malloc, no_realloc, free);
  int rc_ch = weft_chan_create(&ch, 4, 4);
  int rc_ev = weft_event_create(&ev);
  int rc_s = weft_sem_create(&s, 1);
  weft_set_allocator(NULL, NULL, NULL);
  ASSERT_RC(rc_ch, WEFT_ENOMEM);
  ASSERT_RC(rc_ev, WEFT_ENOMEM);
  ASSERT_RC(rc_s, WEFT_ENOMEM);
  ASSERT_TRUE(ch == NULL);
  ASSERT_TRUE(ev == NULL);
  ASSERT_TRUE(s == NULL);
}

TEST(alloc_balanced) {
  weft_set_allocator(count_malloc, count_realloc, count_free);
  weft_chan *ch;
  weft_event *ev;
  weft_sem *s;
  ASSERT_OK(weft_chan_create(&ch, 16, 8));
  ASSERT_OK(weft_event_create(&ev));
  ASSERT_OK(weft_sem_create(&s, 0));
  ASSERT_GE(atomic_load(&total_allocs), 3);
  weft_chan_destroy(ch);
  weft_event_destroy(ev);
  weft_sem_destroy(s);
  weft_set_allocator(NULL, NULL, NULL);
  ASSERT_EQ(atomic_load(&live_allocs), 0);
}

/* ---- channel ---------------------------------------------------------------- */

TEST(chan_bad_args) {
  static char sentinel;
  weft_chan *ch = (weft_chan *)(void *)&sentinel;
  ASSERT_RC(weft_chan_create(NULL, 1, 1), WEFT_EINVAL);
  ASSERT_RC(weft_chan_create(&ch, 0, 4), WEFT_EINVAL);
  ASSERT_TRUE(ch == NULL);
  ASSERT_RC(weft_chan_create(&ch, 4, 0), WEFT_EINVAL);
  ASSERT_RC(weft_chan_create(&ch, SIZE_MAX, 2), WEFT_EINVAL);
  ASSERT_RC(weft_chan_create(&ch, 2, SIZE_MAX), WEFT_EINVAL);
  ASSERT_TRUE(ch == NULL);

  ASSERT_OK(weft_chan_create(&ch, 2, sizeof(int)));
  int v = 1;
  ASSERT_RC(weft_chan_send(NULL, &v, WEFT_NOW), WEFT_EINVAL);
  ASSERT_RC(weft_chan_send(ch, NULL, WEFT_FOREVER), WEFT_EINVAL);
  ASSERT_RC(weft_chan_recv(NULL, &v, WEFT_NOW), WEFT_EINVAL);
  ASSERT_RC(weft_chan_recv(ch, NULL, WEFT_FOREVER), WEFT_EINVAL);
  ASSERT_RC(weft_chan_close(NULL), WEFT_EINVAL);
  ASSERT_UEQ(weft_chan_len(NULL), 0);
  weft_chan_destroy(NULL);
  /* None of that touched the channel. */
  ASSERT_UEQ(weft_chan_len(ch), 0);
  ASSERT_OK(weft_chan_send(ch, &v, WEFT_NOW));
  ASSERT_UEQ(weft_chan_len(ch), 1);
  weft_chan_destroy(ch);
}

TEST(chan_fifo) {
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, 4, sizeof(int)));
  for (int i = 0; i < 4; i++) {
    ASSERT_OK(weft_chan_send(ch, &i, WEFT_NOW));
    ASSERT_UEQ(weft_chan_len(ch), (size_t)i + 1);
  }
  int x = 99;
  ASSERT_RC(weft_chan_send(ch, &x, WEFT_NOW), WEFT_ETIMEDOUT);
  ASSERT_UEQ(weft_chan_len(ch), 4);
  for (int i = 0; i < 4; i++) {
    ASSERT_OK(weft_chan_recv(ch, &x, WEFT_NOW));
    ASSERT_EQ(x, i);
  }
  ASSERT_RC(weft_chan_recv(ch, &x, WEFT_NOW), WEFT_ETIMEDOUT);
  ASSERT_UEQ(weft_chan_len(ch), 0);

  /* Keep 3 queued while the ring goes round many times. */
  int next_in = 0, next_out = 0;
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(weft_chan_send(ch, &next_in, WEFT_NOW));
    next_in++;
  }
  for (int i = 0; i < 101; i++) {
    ASSERT_OK(weft_chan_send(ch, &next_in, WEFT_NOW));
    next_in++;
    ASSERT_OK(weft_chan_recv(ch, &x, WEFT_NOW));
    ASSERT_EQ(x, next_out);
    next_out++;
    ASSERT_UEQ(weft_chan_len(ch), 3);
  }
  while (next_out < next_in) {
    ASSERT_OK(weft_chan_recv(ch, &x, WEFT_FOREVER));
    ASSERT_EQ(x, next_out);
    next_out++;
  }
  ASSERT_UEQ(weft_chan_len(ch), 0);
  weft_chan_destroy(ch);
}

TEST(chan_copies_exact_bytes) {
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, 3, 7));
  unsigned char a[7] = {'a', 'b', 'c', 'd', 'e', 'f', 'g'};
  unsigned char b[7] = {1, 2, 3, 4, 5, 6, 7};
  ASSERT_OK(weft_chan_send(ch, a, WEFT_NOW));
  ASSERT_OK(weft_chan_send(ch, b, WEFT_NOW));
  memset(a, 0, sizeof a); /* copied in: the caller's buffer is free again */
  unsigned char got[8];
  memset(got, 0xEE, sizeof got);
  ASSERT_OK(weft_chan_recv(ch, got, WEFT_NOW));
  ASSERT_EQ(memcmp(got, "abcdefg", 7), 0);
  ASSERT_EQ(got[7], 0xEE); /* exactly elem_size bytes copied out */
  memset(got, 0xEE, sizeof got);
  ASSERT_OK(weft_chan_recv(ch, got, WEFT_NOW));
  ASSERT_EQ(memcmp(got, b, 7), 0);
  ASSERT_EQ(got[7], 0xEE);
  weft_chan_destroy(ch);
}

TEST(chan_try_now) {
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, 1, sizeof(int)));
  int v = 5, got = -1;
  int64_t past = 1; /* weft_now() is far beyond 1 ms after boot */
  int64_t t0 = weft_now();
  ASSERT_RC(weft_chan_recv(ch, &got, WEFT_NOW), WEFT_ETIMEDOUT);
  ASSERT_RC(weft_chan_recv(ch, &got, past), WEFT_ETIMEDOUT);
  ASSERT_EQ(got, -1);
  ASSERT_OK(weft_chan_send(ch, &v, WEFT_NOW));
  v = 6;
  ASSERT_RC(weft_chan_send(ch, &v, WEFT_NOW), WEFT_ETIMEDOUT);
  ASSERT_RC(weft_chan_send(ch, &v, past), WEFT_ETIMEDOUT);
  ASSERT_LT(weft_now() - t0, 200);
  /* The failed sends left everything as it was. */
  ASSERT_UEQ(weft_chan_len(ch), 1);
  ASSERT_OK(weft_chan_recv(ch, &got, past));
  ASSERT_EQ(got, 5);
  weft_chan_destroy(ch);
}

TEST(chan_deadline_not_early) {
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, 1, sizeof(int)));
  int v = 1;
  int64_t t0 = weft_now();
  ASSERT_RC(weft_chan_recv(ch, &v, weft_deadline_in(50)), WEFT_ETIMEDOUT);
  int64_t el = weft_now() - t0;
  ASSERT_GE(el, 50);
  ASSERT_LT(el, 5000);

  ASSERT_OK(weft_chan_send(ch, &v, WEFT_NOW));
  t0 = weft_now();
  ASSERT_RC(weft_chan_send(ch, &v, weft_deadline_in(50)), WEFT_ETIMEDOUT);
  el = weft_now() - t0;
  ASSERT_GE(el, 50);
  ASSERT_LT(el, 5000);
  ASSERT_UEQ(weft_chan_len(ch), 1);
  weft_chan_destroy(ch);
}

TEST(chan_send_blocks_until_recv) {
  weft_chan *ch;
  weft_event *done;
  ASSERT_OK(weft_chan_create(&ch, 1, sizeof(int)));
  ASSERT_OK(weft_event_create(&done));
  int first = 1;
  ASSERT_OK(weft_chan_send(ch, &first, WEFT_NOW));

  struct call c;
  call_init(&c);
  c.ch = ch;
  c.value = 2;
  c.done = done;
  start(&c, do_chan_send);
  wait_asleep(&c.tid);
  /* The channel is full: the send must still be waiting. */
  ASSERT_RC(weft_event_wait(done, weft_deadline_in(50)), WEFT_ETIMEDOUT);
  ASSERT_UEQ(weft_chan_len(ch), 1);

  int got = 0;
  ASSERT_OK(weft_chan_recv(ch, &got, WEFT_NOW));
  ASSERT_EQ(got, 1);
  ASSERT_OK(weft_event_wait(done, WEFT_FOREVER)); /* the recv made room */
  join(&c);
  ASSERT_RC(c.rc, 0);
  ASSERT_OK(weft_chan_recv(ch, &got, WEFT_NOW));
  ASSERT_EQ(got, 2);
  weft_event_destroy(done);
  weft_chan_destroy(ch);
}

TEST(chan_recv_blocks_until_send) {
  weft_chan *ch;
  weft_event *done;
  ASSERT_OK(weft_chan_create(&ch, 2, sizeof(int)));
  ASSERT_OK(weft_event_create(&done));
  struct call c;
  call_init(&c);
  c.ch = ch;
  c.value = -1;
  c.done = done;
  start(&c, do_chan_recv);
  wait_asleep(&c.tid);
  ASSERT_RC(weft_event_wait(done, weft_deadline_in(50)), WEFT_ETIMEDOUT);

  int v = 42;
  ASSERT_OK(weft_chan_send(ch, &v, WEFT_NOW));
  join(&c);
  ASSERT_RC(c.rc, 0);
  ASSERT_EQ(c.value, 42);
  ASSERT_UEQ(weft_chan_len(ch), 0);
  weft_event_destroy(done);
  weft_chan_destroy(ch);
}

#define NWAITERS 4

TEST(chan_close_wakes_receivers) {
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, 4, sizeof(int)));
  struct call c[NWAITERS];
  for (int i = 0; i < NWAITERS; i++) {
    call_init(&c[i]);
    c[i].ch = ch;
    c[i].value = -1;
    c[i].deadline = WEFT_FOREVER;
    start(&c[i], do_chan_recv);
  }
  for (int i = 0; i < NWAITERS; i++) wait_asleep(&c[i].tid);
  ASSERT_OK(weft_chan_close(ch));
  for (int i = 0; i < NWAITERS; i++) {
    join(&c[i]);
    ASSERT_RC(c[i].rc, WEFT_ECLOSED);
    ASSERT_EQ(c[i].value, -1);
  }
  weft_chan_destroy(ch);
}

TEST(chan_close_wakes_senders) {
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, 1, sizeof(int)));
  int v = 7;
  ASSERT_OK(weft_chan_send(ch, &v, WEFT_NOW));
  struct call c[NWAITERS];
  for (int i = 0; i < NWAITERS; i++) {
    call_init(&c[i]);
    c[i].ch = ch;
    c[i].value = 100 + i;
    start(&c[i], do_chan_send);
  }
  for (int i = 0; i < NWAITERS; i++) wait_asleep(&c[i].tid);
  ASSERT_UEQ(weft_chan_len(ch), 1);
  ASSERT_OK(weft_chan_close(ch));
  for (int i = 0; i < NWAITERS; i++) {
    join(&c[i]);
    ASSERT_RC(c[i].rc, WEFT_ECLOSED);
  }
  /* Nothing of theirs got in; what was there before close still comes out. */
  ASSERT_UEQ(weft_chan_len(ch), 1);
  int got = 0;
  ASSERT_OK(weft_chan_recv(ch, &got, WEFT_FOREVER));
  ASSERT_EQ(got, 7);
  ASSERT_RC(weft_chan_recv(ch, &got, WEFT_FOREVER), WEFT_ECLOSED);
  weft_chan_destroy(ch);
}

TEST(chan_close_drain) {
  weft_chan *ch;
  ASSERT_OK(weft_chan_create(&ch, 4, sizeof(int)));
  for (int i = 1; i <= 3; i++) ASSERT_OK(weft_chan_send(ch, &i, WEFT_NOW));
  ASSERT_OK(weft_chan_close(ch));
  ASSERT_RC(weft_chan_close(ch), WEFT_ECLOSED);
  int v = 9;
  /* Room left, but closed: refused at once, even with no deadline. */
  ASSERT_RC(weft_chan_send(ch, &v, WEFT_FOREVER), WEFT_ECLOSED);
  ASSERT_UEQ(weft_chan_len(ch), 3);
  for (int i = 1; i <= 3; i++) {
    ASSERT_OK(weft_chan_recv(ch, &v, WEFT_FOREVER));
    ASSERT_EQ(v, i);
  }
  ASSERT_RC(weft_chan_recv(ch, &v, WEFT_FOREVER), WEFT_ECLOSED);
  ASSERT_RC(weft_chan_recv(ch, &v, WEFT_NOW), WEFT_ECLOSED);
  ASSERT_UEQ(weft_chan_len(ch), 0);
  weft_chan_destroy(ch);
}

/* MPMC: every item comes out exactly once, and each producer's items reach
 * any one consumer in the order they were sent. */
#define NPROD 4
#define NCONS 4

struct item {
  uint32_t producer;
  uint32_t seq;
};

struct stress {
  weft_chan *ch;
  long per_producer;
  atomic_uchar *seen; /* NPROD * per_producer */
};

struct prod_arg {
  pthread_t th;
  struct stress *st;
  uint32_t id;
};

struct cons_arg {
  pthread_t th;
  struct stress *st;
  long count;
  uint64_t sum;
};

static void *producer(void *arg) {
  struct prod_arg *p = arg;
  for (long i = 0; i < p->st->per_producer; i++) {
    struct item it = {p->id, (uint32_t)i};
    ASSERT_OK(weft_chan_send(p->st->ch, &it, WEFT_FOREVER));
  }
  return NULL;
}

static void *consumer(void *arg) {
  struct cons_arg *c = arg;
  long last[NPROD];
  for (int i = 0; i < NPROD; i++) last[i] = -1;
  struct item it;
  int rc;
  while ((rc = weft_chan_recv(c->st->ch, &it, WEFT_FOREVER)) == 0) {
    ASSERT_LT(it.producer, NPROD);
    ASSERT_LT(it.seq, c->st->per_producer);
    ASSERT_GT((long)it.seq, last[it.producer]);
    last[it.producer] = (long)it.seq;
    size_t k = (size_t)it.producer * (size_t)c->st->per_producer + it.seq;
    ASSERT_EQ(atomic_fetch_add(&c->st->seen[k], 1), 0);
    c->count++;
    c->sum += k;
  }
  ASSERT_RC(rc, WEFT_ECLOSED);
  return NULL;
}

TEST(chan_mpmc_stress) {
  struct stress st;
  st.per_producer = wt_scaled(100000);
  long total = NPROD * st.per_producer;
  st.seen = calloc((size_t)total, sizeof *st.seen);
  ASSERT_TRUE(st.seen != NULL);
  /* Small: producers and consumers both block often. */
  ASSERT_OK(weft_chan_create(&st.ch, 8, sizeof(struct item)));

  struct prod_arg p[NPROD];
  struct cons_arg c[NCONS];
  for (int i = 0; i < NCONS; i++) {
    c[i].st = &st;
    c[i].count = 0;
    c[i].sum = 0;
    ASSERT_EQ(pthread_create(&c[i].th, NULL, consumer, &c[i]), 0);
  }
  for (int i = 0; i < NPROD; i++) {
    p[i].st = &st;
    p[i].id = (uint32_t)i;
    ASSERT_EQ(pthread_create(&p[i].th, NULL, producer, &p[i]), 0);
  }
  for (int i = 0; i < NPROD; i++) ASSERT_EQ(pthread_join(p[i].th, NULL), 0);
  ASSERT_OK(weft_chan_close(st.ch));
  long count = 0;
  uint64_t sum = 0;
  for (int i = 0; i < NCONS; i++) {
    ASSERT_EQ(pthread_join(c[i].th, NULL), 0);
    count += c[i].count;
    sum += c[i].sum;
  }
  ASSERT_EQ(count, total);
  ASSERT_UEQ(sum, (uint64_t)total * (uint64_t)(total - 1) / 2);
  for (long k = 0; k < total; k++) ASSERT_EQ(atomic_load(&st.seen[k]), 1);
  ASSERT_UEQ(weft_chan_len(st.ch), 0);
  weft_chan_destroy(st.ch);
  free(st.seen);
}

/* ---- event ------------------------------------------------------------------ */

TEST(event_bad_args) {
  ASSERT_RC(weft_event_create(NULL), WEFT_EINVAL);
  ASSERT_RC(weft_event_set(NULL), WEFT_EINVAL);
  ASSERT_RC(weft_event_clear(NULL), WEFT_EINVAL);
  ASSERT_EQ(weft_event_is_set(NULL), 0);
  ASSERT_RC(weft_event_wait(NULL, WEFT_NOW), WEFT_EINVAL);
  ASSERT_RC(weft_event_wait(NULL, WEFT_FOREVER), WEFT_EINVAL);
  weft_event_destroy(NULL);
}

TEST(event_set_clear) {
  weft_event *ev;
  ASSERT_OK(weft_event_create(&ev));
  ASSERT_EQ(weft_event_is_set(ev), 0); /* starts clear */
  ASSERT_RC(weft_event_wait(ev, WEFT_NOW), WEFT_ETIMEDOUT);
  ASSERT_RC(weft_event_wait(ev, 1), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_event_set(ev));
  ASSERT_EQ(weft_event_is_set(ev), 1);
  /* Waiting after the set returns at once, and does not consume it. */
  ASSERT_OK(weft_event_wait(ev, WEFT_NOW));
  ASSERT_OK(weft_event_wait(ev, WEFT_FOREVER));
  ASSERT_EQ(weft_event_is_set(ev), 1);
  ASSERT_OK(weft_event_set(ev)); /* idempotent */
  ASSERT_EQ(weft_event_is_set(ev), 1);
  ASSERT_OK(weft_event_clear(ev));
  ASSERT_EQ(weft_event_is_set(ev), 0);
  ASSERT_RC(weft_event_wait(ev, WEFT_NOW), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_event_clear(ev)); /* idempotent */
  ASSERT_EQ(weft_event_is_set(ev), 0);
  weft_event_destroy(ev);
}

TEST(event_wait_timeout) {
  weft_event *ev;
  ASSERT_OK(weft_event_create(&ev));
  int64_t t0 = weft_now();
  ASSERT_RC(weft_event_wait(ev, weft_deadline_in(50)), WEFT_ETIMEDOUT);
  int64_t el = weft_now() - t0;
  ASSERT_GE(el, 50);
  ASSERT_LT(el, 5000);
  ASSERT_EQ(weft_event_is_set(ev), 0);
  weft_event_destroy(ev);
}

TEST(event_wait_before_set) {
  weft_event *ev, *done;
  ASSERT_OK(weft_event_create(&ev));
  ASSERT_OK(weft_event_create(&done));
  struct call c;
  call_init(&c);
  c.ev = ev;
  c.rc = 1;
  c.done = done;
  start(&c, do_event_wait);
  wait_asleep(&c.tid);
  ASSERT_RC(weft_event_wait(done, weft_deadline_in(50)), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_event_set(ev));
  join(&c);
  ASSERT_RC(c.rc, 0);
  weft_event_destroy(done);
  weft_event_destroy(ev);
}

TEST(event_set_wakes_all) {
  weft_event *ev;
  ASSERT_OK(weft_event_create(&ev));
  enum { N = 8 };
  struct call c[N];
  for (int i = 0; i < N; i++) {
    call_init(&c[i]);
    c[i].ev = ev;
    c[i].rc = 1;
    c[i].deadline = WEFT_FOREVER;
    start(&c[i], do_event_wait);
  }
  for (int i = 0; i < N; i++) wait_asleep(&c[i].tid);
  ASSERT_OK(weft_event_set(ev)); /* one set, every waiter */
  for (int i = 0; i < N; i++) {
    join(&c[i]);
    ASSERT_RC(c[i].rc, 0);
  }
  weft_event_destroy(ev);
}

/* A set at once followed by a clear still releases whoever was waiting.
 * Whether the waiters get back in before the clear is up to the scheduler, so
 * the pulse is repeated to make the race (and a missed pulse) likely. */
size_t weft__event_waiters(weft_event *ev); /* src/sync/event.c */

TEST(event_set_then_clear_releases_waiters) {
  weft_event *ev;
  ASSERT_OK(weft_event_create(&ev));
  for (int round = 0; round < 10; round++) {
    struct call c[NWAITERS];
    for (int i = 0; i < NWAITERS; i++) {
      call_init(&c[i]);
      c[i].ev = ev;
      c[i].rc = 1;
      start(&c[i], do_event_wait);
    }
    /* Every waiter must really be waiting on the event (not merely asleep
     * on its mutex before reading the generation), or the pulse could pass
     * before it starts. Bounded poll of the event's own count. */
    int64_t until = weft_deadline_in(10000);
    while (weft__event_waiters(ev) < NWAITERS) {
      if (weft_now() > until) WT_FAIL("waiters never blocked: %zu", weft__event_waiters(ev));
      sched_yield();
    }
    ASSERT_OK(weft_event_set(ev));
    ASSERT_OK(weft_event_clear(ev));
    for (int i = 0; i < NWAITERS; i++) {
      join(&c[i]);
      ASSERT_RC(c[i].rc, 0);
    }
    ASSERT_EQ(weft_event_is_set(ev), 0);
  }
  weft_event_destroy(ev);
}

/* ---- semaphore ---------------------------------------------------------------- */

TEST(sem_bad_args) {
  static char sentinel;
  weft_sem *s = (weft_sem *)(void *)&sentinel;
  ASSERT_RC(weft_sem_create(NULL, 0), WEFT_EINVAL);
  ASSERT_RC(weft_sem_create(&s, -1), WEFT_EINVAL);
  ASSERT_TRUE(s == NULL);
  ASSERT_RC(weft_sem_create(&s, LONG_MIN), WEFT_EINVAL);
  ASSERT_RC(weft_sem_post(NULL), WEFT_EINVAL);
  ASSERT_RC(weft_sem_wait(NULL, WEFT_NOW), WEFT_EINVAL);
  ASSERT_RC(weft_sem_wait(NULL, WEFT_FOREVER), WEFT_EINVAL);
  ASSERT_EQ(weft_sem_value(NULL), WEFT_EINVAL);
  weft_sem_destroy(NULL);
}

TEST(sem_initial_count) {
  weft_sem *s;
  ASSERT_OK(weft_sem_create(&s, 3));
  ASSERT_EQ(weft_sem_value(s), 3);
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_sem_wait(s, WEFT_NOW));
  ASSERT_EQ(weft_sem_value(s), 0);
  ASSERT_RC(weft_sem_wait(s, WEFT_NOW), WEFT_ETIMEDOUT);
  ASSERT_RC(weft_sem_wait(s, 1), WEFT_ETIMEDOUT);
  ASSERT_EQ(weft_sem_value(s), 0);
  ASSERT_OK(weft_sem_post(s));
  ASSERT_OK(weft_sem_post(s));
  ASSERT_EQ(weft_sem_value(s), 2);
  ASSERT_OK(weft_sem_wait(s, WEFT_FOREVER));
  ASSERT_OK(weft_sem_wait(s, WEFT_NOW));
  ASSERT_EQ(weft_sem_value(s), 0);
  weft_sem_destroy(s);

  ASSERT_OK(weft_sem_create(&s, 0));
  ASSERT_EQ(weft_sem_value(s), 0);
  ASSERT_RC(weft_sem_wait(s, WEFT_NOW), WEFT_ETIMEDOUT);
  weft_sem_destroy(s);
}

TEST(sem_wait_timeout) {
  weft_sem *s;
  ASSERT_OK(weft_sem_create(&s, 0));
  int64_t t0 = weft_now();
  ASSERT_RC(weft_sem_wait(s, weft_deadline_in(50)), WEFT_ETIMEDOUT);
  int64_t el = weft_now() - t0;
  ASSERT_GE(el, 50);
  ASSERT_LT(el, 5000);
  ASSERT_EQ(weft_sem_value(s), 0);
  weft_sem_destroy(s);
}

TEST(sem_post_wakes_waiter) {
  weft_sem *s;
  weft_event *done;
  ASSERT_OK(weft_sem_create(&s, 0));
  ASSERT_OK(weft_event_create(&done));
  struct call c;
  call_init(&c);
  c.sem = s;
  c.rc = 1;
  c.done = done;
  c.deadline = WEFT_FOREVER;
  start(&c, do_sem_wait);
  wait_asleep(&c.tid);
  ASSERT_RC(weft_event_wait(done, weft_deadline_in(50)), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_sem_post(s));
  join(&c);
  ASSERT_RC(c.rc, 0);
  ASSERT_EQ(weft_sem_value(s), 0); /* the waiter took the unit */
  weft_event_destroy(done);
  weft_sem_destroy(s);
}

/* N posts release N distinct sleepers: no wake-up is lost or doubled. */
TEST(sem_posts_wake_each_waiter) {
  weft_sem *s;
  ASSERT_OK(weft_sem_create(&s, 0));
  struct call c[NWAITERS];
  for (int i = 0; i < NWAITERS; i++) {
    call_init(&c[i]);
    c[i].sem = s;
    c[i].rc = 1;
    start(&c[i], do_sem_wait);
  }
  for (int i = 0; i < NWAITERS; i++) wait_asleep(&c[i].tid);
  for (int i = 0; i < NWAITERS; i++) ASSERT_OK(weft_sem_post(s));
  for (int i = 0; i < NWAITERS; i++) {
    join(&c[i]);
    ASSERT_RC(c[i].rc, 0);
  }
  ASSERT_EQ(weft_sem_value(s), 0);
  weft_sem_destroy(s);
}

struct excl {
  weft_sem *s;
  long iters;
  atomic_int inside; /* threads between wait and post: must be <= 1 */
  long counter;      /* guarded by the semaphore alone */
};

static void *excl_worker(void *arg) {
  struct excl *x = arg;
  for (long i = 0; i < x->iters; i++) {
    ASSERT_OK(weft_sem_wait(x->s, WEFT_FOREVER));
    ASSERT_EQ(atomic_fetch_add(&x->inside, 1), 0);
    long v = x->counter;
    if ((i & 63) == 0) sched_yield(); /* widen the window a lost update needs */
    x->counter = v + 1;
    atomic_fetch_sub(&x->inside, 1);
    ASSERT_OK(weft_sem_post(x->s));
  }
  return NULL;
}

TEST(sem_mutual_exclusion) {
  enum { N = 4 };
  struct excl x;
  ASSERT_OK(weft_sem_create(&x.s, 1));
  x.iters = wt_scaled(20000);
  atomic_init(&x.inside, 0);
  x.counter = 0;
  pthread_t th[N];
  for (int i = 0; i < N; i++) ASSERT_EQ(pthread_create(&th[i], NULL, excl_worker, &x), 0);
  for (int i = 0; i < N; i++) ASSERT_EQ(pthread_join(th[i], NULL), 0);
  ASSERT_EQ(x.counter, N * x.iters);
  ASSERT_EQ(weft_sem_value(x.s), 1);
  weft_sem_destroy(x.s);
}

TEST(sem_overflow) {
  weft_sem *s;
  ASSERT_OK(weft_sem_create(&s, LONG_MAX));
  ASSERT_EQ(weft_sem_value(s), LONG_MAX);
  ASSERT_RC(weft_sem_post(s), WEFT_EOVERFLOW);
  ASSERT_EQ(weft_sem_value(s), LONG_MAX); /* unchanged */
  ASSERT_OK(weft_sem_wait(s, WEFT_NOW));
  ASSERT_EQ(weft_sem_value(s), LONG_MAX - 1);
  ASSERT_OK(weft_sem_post(s));
  ASSERT_RC(weft_sem_post(s), WEFT_EOVERFLOW);
  weft_sem_destroy(s);
}
