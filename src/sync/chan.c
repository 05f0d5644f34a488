/*
 * chan.c — a bounded MPMC channel of fixed-size elements.
 *
 * Design: a ring buffer under one mutex, with two condition variables:
 * senders wait on not_full, receivers on not_empty. Elements are copied in
 * and out under the mutex; they are small and a copy is cheaper than any
 * scheme that would let two threads touch the ring at once.
 *
 * Each side counts its sleepers, so a send or recv signals the other side
 * only when somebody may be waiting (a signal with no waiter is a wasted
 * syscall on the hot path). The counts are changed only under the mutex,
 * and a waiter counts itself before pthread_cond_wait releases the mutex,
 * so a thread that sees a count of 0 knows nobody can miss its element.
 *
 * One signal per element is enough: a woken thread always re-checks the ring
 * under the mutex, including after a timeout, so a wake-up that races with a
 * timeout is not lost — the timed-out thread takes the element itself.
 *
 * Signals and broadcasts are sent before unlocking, never after: a thread
 * woken by them may return and destroy the channel as soon as it gets the
 * mutex, and the waker must not touch the channel after that point.
 */
#include "internal.h"

#include <string.h>

struct weft_chan {
  pthread_mutex_t mu;
  pthread_cond_t not_full;  /* senders wait here */
  pthread_cond_t not_empty; /* receivers wait here */
  size_t cap;               /* elements */
  size_t esz;               /* bytes per element */
  size_t head;              /* index of the oldest element */
  size_t len;               /* elements queued */
  size_t send_waiters;      /* threads asleep on not_full */
  size_t recv_waiters;      /* threads asleep on not_empty */
  bool closed;
  unsigned char buf[];      /* cap * esz bytes, one allocation with the header */
};

int weft_chan_create(weft_chan **out, size_t capacity, size_t elem_size) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  if (capacity == 0 || elem_size == 0) return WEFT_EINVAL;
  /* A ring that cannot even be described in a size_t is a bad request, not a
   * shortage of memory. */
  if (capacity > (SIZE_MAX - sizeof(weft_chan)) / elem_size) return WEFT_EINVAL;

  weft_chan *ch = weft__malloc(sizeof(weft_chan) + capacity * elem_size);
  if (!ch) return WEFT_ENOMEM;
  ch->cap = capacity;
  ch->esz = elem_size;
  ch->head = 0;
  ch->len = 0;
  ch->send_waiters = 0;
  ch->recv_waiters = 0;
  ch->closed = false;
  /* pthreads can refuse these only for lack of resources. */
  if (pthread_mutex_init(&ch->mu, NULL) != 0) goto fail_mu;
  if (weft__cond_init(&ch->not_full) != 0) goto fail_full;
  if (weft__cond_init(&ch->not_empty) != 0) goto fail_empty;
  *out = ch;
  return 0;

fail_empty:
  pthread_cond_destroy(&ch->not_full);
fail_full:
  pthread_mutex_destroy(&ch->mu);
fail_mu:
  weft__free(ch);
  return WEFT_ENOMEM;
}

/* The wait shared by send and recv: sleeps on `cv` (counting itself in
 * `*waiters`) while `blocked` says so and the channel is open, until the
 * deadline. Called and returns with the mutex held. The caller decides the
 * outcome from the state it finds, so a timeout that races with a wake-up
 * still sees the element or the room that the wake-up was for. */
static void wait_while(weft_chan *ch, pthread_cond_t *cv, size_t *waiters,
                       bool (*blocked)(const weft_chan *), int64_t deadline) {
  while (!ch->closed && blocked(ch)) {
    /* Deadline 0 and past deadlines try once: no sleep, no syscall. */
    if (weft__deadline_passed(deadline)) return;
    (*waiters)++;
    int rc = weft__cond_wait(cv, &ch->mu, deadline);
    (*waiters)--;
    if (rc == WEFT_ETIMEDOUT) return;
  }
}

static bool is_full(const weft_chan *ch) { return ch->len == ch->cap; }
static bool is_empty(const weft_chan *ch) { return ch->len == 0; }

int weft_chan_send(weft_chan *ch, const void *elem, int64_t deadline) {
  if (!ch || !elem) return WEFT_EINVAL;
  int rc;
  pthread_mutex_lock(&ch->mu);
  wait_while(ch, &ch->not_full, &ch->send_waiters, is_full, deadline);
  if (ch->closed) {
    rc = WEFT_ECLOSED;
  } else if (is_full(ch)) {
    rc = WEFT_ETIMEDOUT;
  } else {
    size_t tail = ch->head + ch->len;
    if (tail >= ch->cap) tail -= ch->cap;
    memcpy(ch->buf + tail * ch->esz, elem, ch->esz);
    ch->len++;
    if (ch->recv_waiters) pthread_cond_signal(&ch->not_empty);
    rc = 0;
  }
  pthread_mutex_unlock(&ch->mu);
  return rc;
}

int weft_chan_recv(weft_chan *ch, void *elem, int64_t deadline) {
  if (!ch || !elem) return WEFT_EINVAL;
  int rc;
  pthread_mutex_lock(&ch->mu);
  wait_while(ch, &ch->not_empty, &ch->recv_waiters, is_empty, deadline);
  /* What was sent before close is still delivered: test the ring first. */
  if (!is_empty(ch)) {
    memcpy(elem, ch->buf + ch->head * ch->esz, ch->esz);
    if (++ch->head == ch->cap) ch->head = 0;
    ch->len--;
    if (ch->send_waiters) pthread_cond_signal(&ch->not_full);
    rc = 0;
  } else {
    rc = ch->closed ? WEFT_ECLOSED : WEFT_ETIMEDOUT;
  }
  pthread_mutex_unlock(&ch->mu);
  return rc;
}

int weft_chan_close(weft_chan *ch) {
  if (!ch) return WEFT_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&ch->mu);
  if (ch->closed) {
    rc = WEFT_ECLOSED;
  } else {
    ch->closed = true;
    /* Every sender must fail now; receivers either find what is left or fail,
     * and either way none of them may stay asleep. */
    if (ch->send_waiters) pthread_cond_broadcast(&ch->not_full);
    if (ch->recv_waiters) pthread_cond_broadcast(&ch->not_empty);
  }
  pthread_mutex_unlock(&ch->mu);
  return rc;
}

size_t weft_chan_len(weft_chan *ch) {
  if (!ch) return 0;
  pthread_mutex_lock(&ch->mu);
  size_t n = ch->len;
  pthread_mutex_unlock(&ch->mu);
  return n;
}

void weft_chan_destroy(weft_chan *ch) {
  if (!ch) return;
  pthread_cond_destroy(&ch->not_empty);
  pthread_cond_destroy(&ch->not_full);
  pthread_mutex_destroy(&ch->mu);
  weft__free(ch);
}
