/*
 * http_client.c — weft_http_get on libcurl.
 *
 * Two paths share the option set-up and the outcome mapping:
 *
 *  - Blocking (outside a task, or weft_http_get_blocking): curl's easy
 *    interface on one easy handle per thread, reset before each call, so its
 *    connection cache keeps connections alive from call to call (like a
 *    requests.Session). A pthread key frees it when the thread exits.
 *
 *  - Async (inside a task): curl's multi socket interface driven by the
 *    task's loop. curl says which fds to watch (socket callback ->
 *    weft_loop_watch, level-triggered) and when to call it back (timer
 *    callback -> one intrusive loop timer), so nothing runs while no socket
 *    is ready and no curl timer is due. There is one multi handle per loop,
 *    made by the loop's first fetch and freed when its last transfer is
 *    removed: the loop has no destroy notification for us, and a multi that
 *    only exists while transfers do can never outlive its loop (destroying a
 *    loop cancels its tasks, and each cancelled fetch removes its transfer).
 *    Keep-alive across that gap comes from a per-thread CURLSH holding the
 *    connection and DNS caches, so connections outlive the multi handle.
 *
 * A transfer lives on its task's stack while the task is suspended. The task
 * itself removes its easy handle from the multi once it resumes (finished,
 * timed out or cancelled), and only then frees it, so no curl callback can
 * reach a transfer that is gone; curl's callbacks never free anything.
 */
#include "internal.h"
#include "async/loop.h"
#include "async/task.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- process and thread state ------------------------------------------- */

/* What a thread keeps between calls. */
typedef struct tstate {
  CURL *easy;                     /* blocking path */
  char errbuf[CURL_ERROR_SIZE];   /* the easy handle's CURLOPT_ERRORBUFFER */
  CURLSH *share;                  /* async path: connections and DNS */
  pid_t pid;                      /* the process that made it */
  struct tstate *stale_next;      /* g_stale */
} tstate;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static CURLcode g_init_rc = CURLE_FAILED_INIT;
static pthread_key_t g_key;
static int g_key_rc = -1;
/* States inherited through fork and dropped: kept reachable (not freed:
 * freeing would close the parent's sockets), so no leak checker minds. */
static _Atomic(tstate *) g_stale;

static void tstate_free(void *p) {
  tstate *ts = p;
  if (!ts) return;
  if (ts->easy) curl_easy_cleanup(ts->easy);
  /* Refused (CURLSHE_IN_USE) only if easy handles still use it, i.e. this
   * thread exits with a loop holding live transfers: leaking beats freeing
   * what curl still uses. */
  if (ts->share && curl_share_cleanup(ts->share) != CURLSHE_OK) ts->share = NULL;
  weft__free(ts);
}

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static void global_init(void) {
  g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  g_key_rc = pthread_key_create(&g_key, tstate_free);
  if (g_key_rc == 0) g_key_rc = pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* The calling thread's state, created on first use; NULL on ENOMEM or when
 * curl could not be initialised. */
static tstate *tstate_get(void) {
  pthread_once(&g_once, global_init);
  if (g_init_rc != CURLE_OK || g_key_rc != 0) return NULL;
  tstate *ts = pthread_getspecific(g_key);
  pid_t pid = getpid();
  /* A forked child (e.g. the process executors' fork server and its
   * workers) inherits the thread's handles, but their sockets are the
   * parent's or closed (and the numbers maybe reused): it must not touch
   * them, not even to close them, so it drops them unused. */
  if (ts && ts->pid == pid) return ts;
  if (ts) {
    ts->stale_next = atomic_load(&g_stale);
    while (!atomic_compare_exchange_weak(&g_stale, &ts->stale_next, ts)) {
    }
  }
  ts = weft__calloc(1, sizeof *ts);
  if (!ts) return NULL;
  ts->pid = pid;
  if (pthread_setspecific(g_key, ts) != 0) {
    weft__free(ts);
    return NULL;
  }
  return ts;
}

/* ---- shared by both paths ----------------------------------------------- */

/* The body grows in resp->body; `cap` is its allocated size. */
typedef struct body {
  weft_http_response *resp;
  CURL *easy;
  size_t cap;
  bool nomem;
} body;

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg) {
  body *b = arg;
  weft_http_response *r = b->resp;
  size_t n = size * nmemb; /* curl promises size == 1 */
  if (n == 0) return 0;
  if (n > SIZE_MAX - r->body_size) goto nomem;
  if (r->body_size + n > b->cap) {
    size_t cap = b->cap ? b->cap : 16384;
    curl_off_t len = -1;
    /* First chunk: one allocation for a body of announced size (within
     * reason: the header is the peer's word, not a promise). */
    if (!b->cap &&
        curl_easy_getinfo(b->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len) == CURLE_OK &&
        len > 0 && len <= 64 * 1024 * 1024 && (size_t)len > cap)
      cap = (size_t)len;
    while (cap < r->body_size + n) cap = cap > SIZE_MAX / 2 ? r->body_size + n : cap * 2;
    unsigned char *p = weft__realloc(r->body, cap);
    if (!p) goto nomem;
    r->body = p;
    b->cap = cap;
  }
  memcpy(r->body + r->body_size, data, n);
  r->body_size += n;
  return n;
nomem:
  b->nomem = true;
  return 0; /* makes curl stop with CURLE_WRITE_ERROR */
}

static void set_error(weft_http_response *resp, const char *msg) {
  snprintf(resp->error, sizeof resp->error, "%s", msg);
}

static void drop_body(weft_http_response *resp) {
  weft__free(resp->body);
  resp->body = NULL;
  resp->body_size = 0;
}

/* Options common to both paths on a fresh (or reset) easy handle. */
static CURLcode setup(CURL *e, const char *url, body *b, char *errbuf) {
  CURLcode c;
  errbuf[0] = '\0';
#define SET(opt, val)                                                          \
  do {                                                                         \
    if ((c = curl_easy_setopt(e, opt, val)) != CURLE_OK) return c;             \
  } while (0)
  b->easy = e;
  SET(CURLOPT_ERRORBUFFER, errbuf);
  SET(CURLOPT_URL, url);
  /* A GET is an HTTP thing: other schemes are a bad URL. */
#if LIBCURL_VERSION_NUM >= 0x075500
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  /* Timeouts are ours (deadlines); signals would hit the whole process. */
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_WRITEFUNCTION, on_write);
  SET(CURLOPT_WRITEDATA, b);
  SET(CURLOPT_USERAGENT, "weft");
#undef SET
  return CURLE_OK;
}

/* The outcome of a finished transfer: status, error text and return code. */
static int finish(CURL *e, CURLcode cc, const char *errbuf, body *b) {
  weft_http_response *resp = b->resp;
  if (b->nomem || cc == CURLE_OUT_OF_MEMORY) {
    drop_body(resp);
    set_error(resp, "out of memory");
    return WEFT_ENOMEM;
  }
  if (cc != CURLE_OK) {
    long oserr = 0;
    curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &oserr);
    drop_body(resp);
    resp->status = 0;
    set_error(resp, errbuf[0] ? errbuf : curl_easy_strerror(cc));
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
      /* curl says "couldn't connect" for any failed connect(); the errno
       * tells a refusal from an unreachable network. */
      if (oserr == 0 || oserr == ECONNREFUSED) return WEFT_ECONNREFUSED;
      if (oserr == ETIMEDOUT) return WEFT_ETIMEDOUT;
      return WEFT_EIO;
    case CURLE_COULDNT_RESOLVE_HOST:
      return WEFT_EDNS;
    case CURLE_OPERATION_TIMEDOUT:
      return WEFT_ETIMEDOUT;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return WEFT_EINVAL;
    default:
      return WEFT_EIO;
    }
  }
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  resp->status = (int)status;
  if (status >= 400) {
    snprintf(resp->error, sizeof resp->error, "HTTP %ld", status);
    return WEFT_EHTTP;
  }
  return 0;
}

/* Checks the arguments and zeroes *resp. */
static int begin(const char *url, weft_http_response *resp) {
  if (!resp) return WEFT_EINVAL;
  memset(resp, 0, sizeof *resp);
  if (!url) {
    set_error(resp, "no URL");
    return WEFT_EINVAL;
  }
  return 0;
}

/* ---- blocking path -------------------------------------------------------- */

static int get_blocking(const char *url, int64_t deadline, weft_http_response *resp) {
  if (weft__deadline_passed(deadline)) {
    set_error(resp, weft_strerror(WEFT_ETIMEDOUT));
    return WEFT_ETIMEDOUT;
  }
  tstate *ts = tstate_get();
  if (!ts) {
    set_error(resp, "libcurl could not be initialised");
    return WEFT_ENOMEM;
  }
  if (ts->easy) {
    curl_easy_reset(ts->easy); /* options only: connections stay */
  } else if (!(ts->easy = curl_easy_init())) {
    set_error(resp, "out of memory");
    return WEFT_ENOMEM;
  }
  CURL *e = ts->easy;
  body b = {.resp = resp};
  CURLcode cc = setup(e, url, &b, ts->errbuf);
  if (cc == CURLE_OK && deadline >= 0) {
    int64_t left = deadline - weft_now();
    if (left < 1) left = 1; /* passed just now: curl times out at once */
    cc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)left);
  }
  if (cc == CURLE_OK) cc = curl_easy_perform(e);
  return finish(e, cc, ts->errbuf, &b);
}

int weft_http_get_blocking(const char *url, int64_t deadline, weft_http_response *resp) {
  int rc = begin(url, resp);
  return rc ? rc : get_blocking(url, deadline, resp);
}

void weft_http_response_free(weft_http_response *resp) {
  if (!resp) return;
  drop_body(resp);
}

/* ---- async path ----------------------------------------------------------- */

struct xfer;

/* One multi handle and what drives it, per loop with live transfers. */
typedef struct hmulti {
  struct hmulti *next; /* g_multis */
  weft_loop *loop;
  CURLM *multi;
  weft__timer timer;
  size_t transfers;    /* fetches using it (g_multis_mu) */
  struct xfer *xfers;  /* transfers in the multi (loop thread) */
  int *fds;            /* fds we watch for curl (loop thread) */
  size_t nfds, fds_cap;
  bool dead;           /* failed: out of g_multis, freed by its last fetch */
} hmulti;

/* Multi handles by loop. A global list (not a thread-local one) because a
 * loop may be run by another thread later, and the task that frees an entry
 * runs on whichever thread runs the loop then. Touched twice per fetch. */
static pthread_mutex_t g_multis_mu = PTHREAD_MUTEX_INITIALIZER;
static hmulti *g_multis;
/* A forked child starts with no multi handle: the parent's belong to the
 * parent's loops and sockets (kept reachable, never touched). */
static hmulti *g_multis_forked;

static void fork_prepare(void) { pthread_mutex_lock(&g_multis_mu); }
static void fork_parent(void) { pthread_mutex_unlock(&g_multis_mu); }
static void fork_child(void) {
  if (g_multis) {
    hmulti *last = g_multis;
    while (last->next) last = last->next;
    last->next = g_multis_forked;
    g_multis_forked = g_multis;
    g_multis = NULL;
  }
  pthread_mutex_unlock(&g_multis_mu);
}

/* One fetch, on its task's stack. */
typedef struct xfer {
  struct xfer *prev, *next; /* hmulti.xfers */
  weft__task *task;
  body b;
  char errbuf[CURL_ERROR_SIZE];
  bool done;
  CURLcode result;
  CURLMcode mfail; /* the multi handle failed under this transfer */
} xfer;

/* After every curl_multi_socket_action: wake the tasks whose transfers are
 * done. Their easy handles stay in the multi until the tasks remove them. */
static void drain(hmulti *m) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(m->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    char *priv = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
    xfer *x = (xfer *)(void *)priv;
    x->done = true;
    x->result = msg->data.result;
    weft__task_wake(x->task, 0);
  }
}

/* curl failed as a whole (one of our callbacks failed, e.g. a watch that
 * could not be added, and curl then marks the multi handle dead): no DONE
 * message would ever come, so every transfer still in it fails now, and the
 * next fetch on this loop gets a fresh multi handle. */
static void multi_kill(hmulti *m, CURLMcode mc) {
  if (m->dead) return;
  pthread_mutex_lock(&g_multis_mu);
  hmulti **pp = &g_multis;
  while (*pp != m) pp = &(*pp)->next;
  *pp = m->next;
  m->dead = true;
  pthread_mutex_unlock(&g_multis_mu);
  for (xfer *x = m->xfers; x; x = x->next) {
    if (x->done) continue;
    x->done = true;
    x->mfail = mc;
    weft__task_wake(x->task, 0);
  }
}

/* Drives curl for one ready fd (or its timeout), then wakes whoever is
 * done. */
static void action(hmulti *m, curl_socket_t fd, int flags) {
  int running;
  CURLMcode mc = curl_multi_socket_action(m->multi, fd, flags, &running);
  drain(m);
  if (mc != CURLM_OK) multi_kill(m, mc);
}

static void on_fd(int fd, unsigned events, void *arg) {
  int flags = 0;
  if (events & WEFT_READABLE) flags |= CURL_CSELECT_IN;
  if (events & WEFT_WRITABLE) flags |= CURL_CSELECT_OUT;
  if (events & WEFT_FD_ERROR) flags |= CURL_CSELECT_ERR;
  action(arg, fd, flags);
}

static void on_timer(void *arg) { action(arg, CURL_SOCKET_TIMEOUT, 0); }

/* CURLMOPT_SOCKETFUNCTION: curl wants fd watched for `what`. */
static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)e;
  (void)socketp;
  hmulti *m = userp;
  unsigned ev = 0;
  switch (what) {
  case CURL_POLL_IN: ev = WEFT_READABLE; break;
  case CURL_POLL_OUT: ev = WEFT_WRITABLE; break;
  case CURL_POLL_INOUT: ev = WEFT_READABLE | WEFT_WRITABLE; break;
  default: ev = 0; break; /* CURL_POLL_REMOVE */
  }
  size_t i = 0;
  while (i < m->nfds && m->fds[i] != fd) i++;
  if (ev && i == m->nfds && i == m->fds_cap) {
    size_t cap = m->fds_cap ? 2 * m->fds_cap : 8;
    int *p = weft__realloc(m->fds, cap * sizeof *p);
    if (!p) return -1;
    m->fds = p;
    m->fds_cap = cap;
  }
  int rc = weft_loop_watch(m->loop, fd, ev, on_fd, m);
  /* A failed watch makes curl fail the multi handle (see multi_kill). */
  if (rc < 0 && ev) return -1;
  if (ev && i == m->nfds) m->fds[m->nfds++] = fd;
  if (!ev && i < m->nfds) m->fds[i] = m->fds[--m->nfds];
  return 0;
}

/* CURLMOPT_TIMERFUNCTION: call curl back in timeout_ms (-1 = never). */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  hmulti *m = userp;
  if (timeout_ms < 0) {
    weft__loop_timer_disarm(m->loop, &m->timer);
    return 0;
  }
  return weft__loop_timer_arm(m->loop, &m->timer, weft_now() + timeout_ms, on_timer, m) < 0 ? -1
                                                                                             : 0;
}

/* The loop's multi handle, made if needed, with one more transfer counted. */
static hmulti *multi_get(weft_loop *loop) {
  pthread_mutex_lock(&g_multis_mu);
  hmulti *m = g_multis;
  while (m && m->loop != loop) m = m->next;
  if (!m && (m = weft__calloc(1, sizeof *m))) {
    m->loop = loop;
    m->timer.heap_index = (size_t)-1;
    if (!(m->multi = curl_multi_init()) ||
        curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m) != CURLM_OK ||
        curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m) != CURLM_OK) {
      if (m->multi) curl_multi_cleanup(m->multi);
      weft__free(m);
      m = NULL;
    } else {
      m->next = g_multis;
      g_multis = m;
    }
  }
  if (m) m->transfers++;
  pthread_mutex_unlock(&g_multis_mu);
  return m;
}

/* One transfer fewer; the last one frees the multi handle. */
static void multi_put(hmulti *m) {
  pthread_mutex_lock(&g_multis_mu);
  bool last = --m->transfers == 0;
  if (last && !m->dead) {
    hmulti **pp = &g_multis;
    while (*pp != m) pp = &(*pp)->next;
    *pp = m->next;
  }
  pthread_mutex_unlock(&g_multis_mu);
  if (!last) return;
  /* No easy handle is left, so curl watches no socket; it may still call
   * the timer callback while cleaning up, which needs m. */
  curl_multi_cleanup(m->multi);
  weft__loop_timer_disarm(m->loop, &m->timer);
  /* Normally none is left (curl removes every watch before it closes a
   * socket); a dead multi handle may not have said so. No callback may be
   * left pointing at m. */
  for (size_t i = 0; i < m->nfds; i++) (void)weft_loop_watch(m->loop, m->fds[i], 0, NULL, NULL);
  weft__free(m->fds);
  weft__free(m);
}

static int get_async(weft__task *self, const char *url, int64_t deadline,
                     weft_http_response *resp) {
  if (weft__deadline_passed(deadline)) {
    set_error(resp, weft_strerror(WEFT_ETIMEDOUT));
    return WEFT_ETIMEDOUT;
  }
  tstate *ts = tstate_get();
  if (!ts) {
    set_error(resp, "libcurl could not be initialised");
    return WEFT_ENOMEM;
  }
  if (!ts->share) {
    CURLSH *sh = curl_share_init();
    if (!sh || curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
        curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
      if (sh) curl_share_cleanup(sh);
      set_error(resp, "out of memory");
      return WEFT_ENOMEM;
    }
    ts->share = sh;
  }
  xfer x = {.task = self, .b = {.resp = resp}};
  CURL *e = curl_easy_init();
  if (!e) {
    set_error(resp, "out of memory");
    return WEFT_ENOMEM;
  }
  CURLcode cc = setup(e, url, &x.b, x.errbuf);
  if (cc == CURLE_OK) cc = curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)&x);
  if (cc == CURLE_OK) cc = curl_easy_setopt(e, CURLOPT_SHARE, ts->share);
  if (cc != CURLE_OK) {
    int rc = finish(e, cc, x.errbuf, &x.b);
    curl_easy_cleanup(e);
    return rc;
  }
  hmulti *m = multi_get(weft__task_loop(self));
  if (!m) {
    curl_easy_cleanup(e);
    set_error(resp, "out of memory");
    return WEFT_ENOMEM;
  }
  int rc;
  CURLMcode mc = curl_multi_add_handle(m->multi, e);
  if (mc != CURLM_OK) {
    if (mc == CURLM_ABORTED_BY_CALLBACK) multi_kill(m, mc);
    set_error(resp, curl_multi_strerror(mc));
    rc = mc == CURLM_OUT_OF_MEMORY ? WEFT_ENOMEM : WEFT_EIO;
  } else {
    x.next = m->xfers;
    if (m->xfers) m->xfers->prev = &x;
    m->xfers = &x;
    /* Only action() wakes us (code 0), after setting x.done; loop anyway
     * in case someone else wakes this task. */
    rc = 0;
    while (!x.done && rc == 0) rc = weft__task_suspend(deadline);
    /* Finished or not, the transfer leaves the multi before x goes away;
     * an unfinished one has its connection closed by curl. */
    curl_multi_remove_handle(m->multi, e);
    if (x.prev) x.prev->next = x.next;
    else m->xfers = x.next;
    if (x.next) x.next->prev = x.prev;
    if (rc != 0) {
      drop_body(resp);
      set_error(resp, weft_strerror(rc)); /* "deadline passed", "cancelled" */
    } else if (x.mfail != CURLM_OK) {
      drop_body(resp);
      set_error(resp, curl_multi_strerror(x.mfail));
      rc = x.mfail == CURLM_OUT_OF_MEMORY ? WEFT_ENOMEM : WEFT_EIO;
    } else {
      rc = finish(e, x.result, x.errbuf, &x.b);
    }
  }
  curl_easy_cleanup(e);
  multi_put(m);
  return rc;
}

int weft_http_get(const char *url, int64_t deadline, weft_http_response *resp) {
  int rc = begin(url, resp);
  if (rc) return rc;
  weft__task *self = weft__task_self();
  return self ? get_async(self, url, deadline, resp) : get_blocking(url, deadline, resp);
}
