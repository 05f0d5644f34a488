/* test_coro.c — stackful coroutines (src/async/coro.c, stack.c, switch_*.S).
 * Heavy counts scale with WEFT_TEST_SCALE (wt_scaled). Cases named uc_*
 * run the same checks on the ucontext fallback. */
#include "wt.h"

#include "async/coro.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* ---- ordering and values through shared state ---- */

struct log {
  int seq[16];
  int n;
  int value; /* passed both ways */
};

static void logger(void *arg) {
  struct log *l = arg;
  for (int i = 0; i < 3; i++) {
    l->seq[l->n++] = 100 + i;
    ASSERT_TRUE(weft__coro_self() != NULL);
    l->value = l->value * 2 + 1; /* sees the resumer's write, answers */
    weft__coro_yield();
  }
  l->seq[l->n++] = 199;
}

static void check_order(void) {
  struct log l = {.n = 0, .value = 1};
  weft__coro *co;
  ASSERT_OK(weft__coro_create(&co, logger, &l, 0, "logger"));
  ASSERT_TRUE(weft__coro_self() == NULL);
  ASSERT_EQ(l.n, 0); /* created suspended: nothing ran yet */
  int want_value = 1;
  for (int i = 0; i < 3; i++) {
    l.seq[l.n++] = i;
    l.value += 10;
    want_value = (want_value + 10) * 2 + 1;
    ASSERT_TRUE(weft__coro_resume(co)); /* suspended */
    ASSERT_EQ(l.value, want_value);
  }
  l.seq[l.n++] = 3;
  ASSERT_TRUE(!weft__coro_resume(co)); /* returned: finished */
  ASSERT_TRUE(weft__coro_self() == NULL);
  int want[] = {0, 100, 1, 101, 2, 102, 3, 199};
  ASSERT_EQ(l.n, 8);
  for (int i = 0; i < 8; i++) ASSERT_EQ(l.seq[i], want[i]);
  ASSERT_STREQ(weft__coro_name(co), "logger");
  weft__coro_set_name(co, "renamed");
  ASSERT_STREQ(weft__coro_name(co), "renamed");
  ASSERT_GE(weft__coro_stack_size(co), WEFT__CORO_DEFAULT_STACK);
  weft__coro_destroy(co);
}

TEST(order_and_values) { check_order(); }
TEST(uc_order_and_values) {
  weft__coro_use_ucontext(true);
  check_order();
}

/* ---- finished detection, self ---- */

static void returns_at_once(void *arg) {
  *(weft__coro **)arg = weft__coro_self();
}

TEST(finished_and_self) {
  weft__coro *seen = NULL, *co;
  ASSERT_OK(weft__coro_create(&co, returns_at_once, &seen, 0, "once"));
  ASSERT_TRUE(!weft__coro_resume(co));
  ASSERT_TRUE(seen == co);
  ASSERT_TRUE(weft__coro_self() == NULL);
  weft__coro_destroy(co);
}

/* ---- destroy in every state ---- */

static void yield_forever(void *arg) {
  int *count = arg;
  for (;;) {
    ++*count;
    weft__coro_yield();
  }
}

TEST(destroy_any_state) {
  weft__coro_stats st0, st1;
  weft__coro *a, *b, *c, *seen = NULL;
  int count = 0;
  ASSERT_OK(weft__coro_create(&a, yield_forever, &count, 0, "never-started"));
  ASSERT_OK(weft__coro_create(&b, yield_forever, &count, 0, "suspended"));
  ASSERT_OK(weft__coro_create(&c, returns_at_once, &seen, 0, "finished"));
  weft__coro_stats_get(&st0);
  ASSERT_GE(st0.stacks_in_use, 3);
  ASSERT_TRUE(weft__coro_resume(b));
  ASSERT_TRUE(weft__coro_resume(b));
  ASSERT_EQ(count, 2);
  ASSERT_TRUE(!weft__coro_resume(c));
  weft__coro_destroy(a);
  weft__coro_destroy(b);
  weft__coro_destroy(c);
  weft__coro_destroy(NULL);
  ASSERT_TRUE(seen == c);
  weft__coro_stats_get(&st1);
  ASSERT_EQ(st1.stacks_in_use, st0.stacks_in_use - 3);
  ASSERT_EQ(count, 2); /* a never ran */
  /* The stacks are reused, and a reused stack works (also after a
   * suspended coroutine was dropped from it). */
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(weft__coro_create(&a, yield_forever, &count, 0, "again"));
    ASSERT_TRUE(weft__coro_resume(a));
    weft__coro_destroy(a);
  }
  ASSERT_EQ(count, 5);
  weft__coro_stats_get(&st1);
  ASSERT_EQ(st1.stacks_mapped, st0.stacks_mapped);
}

/* ---- many interleaved ---- */

struct member {
  int id, steps;
  int *turn; /* whose turn it is: checks the round-robin order */
  int nmembers;
};

static void member_fn(void *arg) {
  struct member *m = arg;
  for (int i = 0; i < m->steps; i++) {
    ASSERT_EQ(*m->turn, m->id);
    *m->turn = (m->id + 1) % m->nmembers;
    weft__coro_yield();
  }
}

static void check_interleaved(int n, int steps) {
  weft__coro **cos = calloc((size_t)n, sizeof *cos);
  struct member *ms = calloc((size_t)n, sizeof *ms);
  ASSERT_TRUE(cos && ms);
  int turn = 0;
  for (int i = 0; i < n; i++) {
    ms[i] = (struct member){.id = i, .steps = steps, .turn = &turn, .nmembers = n};
    ASSERT_OK(weft__coro_create(&cos[i], member_fn, &ms[i], 64 * 1024, "member"));
  }
  for (int s = 0; s < steps; s++)
    for (int i = 0; i < n; i++) ASSERT_TRUE(weft__coro_resume(cos[i]));
  for (int i = 0; i < n; i++) {
    ASSERT_TRUE(!weft__coro_resume(cos[i]));
    weft__coro_destroy(cos[i]);
  }
  ASSERT_EQ(turn, 0);
  free(cos);
  free(ms);
}

TEST(many_interleaved) { check_interleaved(200, (int)wt_scaled(200)); }
TEST(uc_many_interleaved) {
  weft__coro_use_ucontext(true);
  check_interleaved(50, (int)wt_scaled(100));
}

/* ---- deep recursion within the stack ---- */

static volatile int sink;

static int recurse(int depth) {
  volatile char frame[1024];
  frame[0] = (char)depth;
  frame[sizeof frame - 1] = (char)depth;
  if (depth == 0) return frame[0];
  return recurse(depth - 1) + frame[sizeof frame - 1];
}

static void deep(void *arg) {
  int depth = *(int *)arg;
  sink = recurse(depth);
  weft__coro_yield();
  sink = recurse(depth); /* again after a switch */
}

TEST(deep_recursion) {
  /* 300 frames of >1 KiB (~1.2 KiB under ASan): 60-70% of a 512 KiB stack. */
  int depth = 300;
  weft__coro *co;
  ASSERT_OK(weft__coro_create(&co, deep, &depth, 512 * 1024, "deep"));
  ASSERT_TRUE(weft__coro_resume(co));
  ASSERT_TRUE(!weft__coro_resume(co));
  weft__coro_destroy(co);
}

/* ---- 100,000 alive at once ---- */

static long count_maps(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  ASSERT_TRUE(f != NULL);
  long n = 0;
  int c;
  while ((c = fgetc(f)) != EOF) n += c == '\n';
  fclose(f);
  return n;
}

static long max_map_count(void) {
  FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
  long v = 65530;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1) v = 65530;
    fclose(f);
  }
  return v;
}

static void small_frame(void *arg) {
  long *done = arg;
  volatile char frame[256];
  frame[0] = 1;
  weft__coro_yield();
  *done += frame[0];
}

TEST(hundred_thousand_alive) /* labels: notsan */ {
  long n = wt_scaled(100000);
  weft__coro **cos = malloc((size_t)n * sizeof *cos);
  ASSERT_TRUE(cos != NULL);
  long done = 0;
  for (long i = 0; i < n; i++) {
    ASSERT_OK(weft__coro_create(&cos[i], small_frame, &done, 0, "idle"));
    ASSERT_TRUE(weft__coro_resume(cos[i]));
  }
  long maps = count_maps(), limit = max_map_count();
  weft__coro_stats st;
  weft__coro_stats_get(&st);
  fprintf(stderr, "%ld coroutines alive: %ld mappings (max %ld), %zu slabs, guard: %s\n", n, maps,
          limit, st.slabs, weft__coro_guard_kind());
  ASSERT_GE(st.stacks_in_use, (size_t)n);
  ASSERT_LT(maps, limit / 2);
  for (long i = 0; i < n; i++) {
    ASSERT_TRUE(!weft__coro_resume(cos[i]));
    weft__coro_destroy(cos[i]);
  }
  ASSERT_EQ(done, n);
  weft__coro_stats_get(&st);
  ASSERT_EQ(st.stacks_in_use, 0);
  free(cos);
}

/* ---- pages go back to the kernel after a burst ---- */

static long rss_pages(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, rss = 0;
  ASSERT_TRUE(f != NULL);
  ASSERT_EQ(fscanf(f, "%ld %ld", &size, &rss), 2);
  fclose(f);
  return rss;
}

static void touch_64k(void *arg) {
  (void)arg;
  volatile char big[64 * 1024];
  for (size_t i = 0; i < sizeof big; i += 512) big[i] = 1;
  weft__coro_yield();
}

TEST(burst_memory_returned) /* labels: novalgrind notsan */ {
  enum { N = 1000 };
  static weft__coro *cos[N];
  long before = rss_pages();
  for (int i = 0; i < N; i++) {
    ASSERT_OK(weft__coro_create(&cos[i], touch_64k, NULL, 128 * 1024, "burst"));
    ASSERT_TRUE(weft__coro_resume(cos[i]));
  }
  long peak = rss_pages();
  for (int i = 0; i < N; i++) weft__coro_destroy(cos[i]);
  long after = rss_pages();
  long page = sysconf(_SC_PAGESIZE);
  fprintf(stderr, "rss: before %ld KiB, peak %ld KiB, after %ld KiB\n", before * page / 1024,
          peak * page / 1024, after * page / 1024);
  ASSERT_GT((peak - before) * page, (long)N * 64 * 1024 * 9 / 10); /* really touched */
  /* Mostly given back; ASan's shadow of the stacks (1/8 of them) stays. */
  long kept = (long)N * 64 * 1024 / 10 + (UNDER_ASAN ? (long)N * 128 * 1024 / 8 : 0);
  ASSERT_LT((after - before) * page, kept);
}

/* ---- overflow: a guard page and a clear message ---- */

static volatile int stop_recursing;

static int runaway(int depth) {
  volatile char frame[512];
  frame[0] = (char)depth;
  if (stop_recursing) return 0;
  return runaway(depth + 1) + frame[0];
}

static void overflow_fn(void *arg) {
  (void)arg;
  sink = runaway(0);
}

/* Runs fn in a coroutine named "deep-thought" (64 KiB stack) in a child
 * process after forcing the guard kind (NULL: the default); returns the
 * child's wait status and its stderr in buf. */
static int in_child(weft__coro_fn fn, const char *guard, char *buf, size_t cap) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    if (guard) weft__coro_force_guard(guard);
    weft__coro *co;
    if (weft__coro_create(&co, fn, NULL, 64 * 1024, "deep-thought") != 0) _exit(3);
    if (guard) fprintf(stderr, "guard: %s\n", weft__coro_guard_kind());
    weft__coro_resume(co);
    _exit(4); /* must not get here */
  }
  close(fds[1]);
  size_t got = 0;
  ssize_t r;
  while (got < cap - 1 && (r = read(fds[0], buf + got, cap - 1 - got)) > 0) got += (size_t)r;
  buf[got] = 0;
  close(fds[0]);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

static const char overflow_text[] =
    "weft: task 'deep-thought' overflowed its stack (65536 bytes; raise weft_task_opts.stack_size)";

static void check_guard_overflow(const char *guard) {
  char buf[8192];
  int status = in_child(overflow_fn, guard, buf, sizeof buf);
  if (!strstr(buf, overflow_text)) WT_FAIL("child stderr lacks the message; it was:\n%s", buf);
  if (guard && !strstr(buf, guard)) WT_FAIL("guard kind not %s:\n%s", guard, buf);
  if (!WIFSIGNALED(status)) WT_FAIL("child status 0x%x; stderr:\n%s", status, buf);
  ASSERT_EQ(WTERMSIG(status), SIGSEGV);
}

TEST(overflow_message) /* labels: novalgrind */ { check_guard_overflow(NULL); }
TEST(overflow_message_mprotect) /* labels: novalgrind */ { check_guard_overflow("mprotect-guard"); }

/* Canary stacks have no guard page: an overflow of less than a page lands in
 * the slot's spare page, and the next switch out finds the canary gone. */
static uintptr_t overrun_floor;
static __attribute__((noinline)) int overrun(void) {
  volatile char frame[256];
  for (size_t i = 0; i < sizeof frame; i++) frame[i] = 1; /* as a real overflow would */
  if ((uintptr_t)__builtin_frame_address(0) < overrun_floor) return frame[0];
  return overrun() + frame[0];
}

static void canary_fn(void *arg) {
  (void)arg;
  /* The frame address, not a local's: under ASan locals may live elsewhere. */
  overrun_floor = (uintptr_t)__builtin_frame_address(0) - 64 * 1024 - 1024; /* 1 KiB below */
  sink = overrun();
  if (UNDER_ASAN) {
    /* ASan's frames have redzones the program never writes, which may
     * cover the canary: write the overrun bytes as a big frame would. */
    for (uintptr_t a = overrun_floor; a < overrun_floor + 2048; a++) *(volatile char *)a = 1;
  }
  weft__coro_yield();
}

TEST(overflow_canary) /* labels: novalgrind */ {
  char buf[8192];
  int status = in_child(canary_fn, "canary", buf, sizeof buf);
  if (!strstr(buf, overflow_text)) WT_FAIL("child stderr lacks the message; it was:\n%s", buf);
  if (!strstr(buf, "guard: canary")) WT_FAIL("guard kind not canary:\n%s", buf);
  if (!WIFSIGNALED(status)) WT_FAIL("child status 0x%x; stderr:\n%s", status, buf);
  ASSERT_EQ(WTERMSIG(status), SIGABRT);
}

/* A fault that is not in a guard page still reaches the handler that was
 * there before ours (here: the default, so the child dies of SIGSEGV with
 * no message). */
TEST(other_faults_chain) /* labels: novalgrind */ {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    weft__coro *co, *seen = NULL;
    if (weft__coro_create(&co, returns_at_once, &seen, 0, "x") != 0) _exit(3);
    weft__coro_resume(co);
    raise(SIGSEGV);
    _exit(4);
  }
  close(fds[1]);
  char buf[8192];
  size_t got = 0;
  ssize_t r;
  while (got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
    got += (size_t)r;
  buf[got] = 0;
  close(fds[0]);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(strstr(buf, "overflowed its stack") == NULL);
  if (UNDER_ASAN || UNDER_TSAN) { /* the sanitizer's handler was there before ours */
    if (!strstr(buf, "Sanitizer: SEGV")) WT_FAIL("no sanitizer report; stderr:\n%s", buf);
    return;
  }
  if (!WIFSIGNALED(status)) WT_FAIL("child status 0x%x; stderr:\n%s", status, buf);
  
  ASSERT_EQ(WTERMSIG(status), SIGSEGV);
}

/* ---- two threads, each with its own coroutines ---- */

struct thread_work {
  int n, steps;
  long total;
};

static void counter_fn(void *arg) {
  struct thread_work *w = arg;
  for (int i = 0; i < w->steps; i++) {
    w->total++;
    weft__coro_yield();
  }
}

static void *thread_main(void *arg) {
  struct thread_work *w = arg;
  weft__coro *cos[64];
  for (int i = 0; i < w->n; i++)
    ASSERT_OK(weft__coro_create(&cos[i], counter_fn, w, 64 * 1024, "worker"));
  bool live = true;
  while (live) {
    live = false;
    for (int i = 0; i < w->n; i++)
      if (cos[i]) {
        if (weft__coro_resume(cos[i])) {
          live = true;
        } else {
          weft__coro_destroy(cos[i]);
          cos[i] = NULL;
        }
      }
  }
  return NULL;
}

TEST(two_threads) {
  struct thread_work w[2] = {{64, (int)wt_scaled(2000), 0}, {64, (int)wt_scaled(2000), 0}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_create(&t[i], NULL, thread_main, &w[i]), 0);
  for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
  for (int i = 0; i < 2; i++) ASSERT_EQ(w[i].total, 64L * w[i].steps);
}

/* A coroutine started on one thread and finished on another. */
static void *resume_once(void *arg) {
  return (void *)(uintptr_t)weft__coro_resume(arg);
}

TEST(resumed_by_another_thread) {
  weft__coro *co;
  struct thread_work w = {0, 2, 0};
  ASSERT_OK(weft__coro_create(&co, counter_fn, &w, 0, "migrant"));
  ASSERT_TRUE(weft__coro_resume(co));
  pthread_t t;
  void *ret;
  ASSERT_EQ(pthread_create(&t, NULL, resume_once, co), 0);
  ASSERT_EQ(pthread_join(t, &ret), 0);
  ASSERT_TRUE(ret != NULL); /* still suspended after its second step */
  ASSERT_TRUE(!weft__coro_resume(co));
  ASSERT_EQ(w.total, 2);
  weft__coro_destroy(co);
}

/* ---- stack reuse ---- */

TEST(stack_reuse) {
  weft__coro_stats st0, st1;
  weft__coro_stats_get(&st0);
  long n = wt_scaled(10000);
  int count = 0;
  for (long i = 0; i < n; i++) {
    weft__coro *co;
    ASSERT_OK(weft__coro_create(&co, yield_forever, &count, 0, "reuse"));
    if (i % 2) ASSERT_TRUE(weft__coro_resume(co)); /* half suspended, half never started */
    weft__coro_destroy(co);
  }
  weft__coro_stats_get(&st1);
  ASSERT_EQ(count, n / 2);
  ASSERT_LE(st1.stacks_mapped, st0.stacks_mapped + 2);
  ASSERT_EQ(st1.slabs, st0.slabs > 0 ? st0.slabs : 1);
}

/* ---- the switch keeps the floating-point control state ---- */

#if defined(__x86_64__)
static unsigned get_mxcsr(void) {
  unsigned v;
  __asm__ volatile("stmxcsr %0" : "=m"(v));
  return v;
}
static void set_mxcsr(unsigned v) { __asm__ volatile("ldmxcsr %0" : : "m"(v)); }

static void rounding_fn(void *arg) {
  unsigned *seen = arg;
  set_mxcsr((get_mxcsr() & ~0x6000u) | 0x2000u); /* round down */
  weft__coro_yield();
  *seen = get_mxcsr();
}

#endif

TEST(fp_control_kept) {
#if defined(__x86_64__)
  unsigned seen = 0, mine = get_mxcsr();
  weft__coro *co;
  ASSERT_OK(weft__coro_create(&co, rounding_fn, &seen, 0, "fp"));
  ASSERT_TRUE(weft__coro_resume(co));
  ASSERT_UEQ(get_mxcsr(), mine); /* the resumer's mode is back */
  ASSERT_TRUE(!weft__coro_resume(co));
  ASSERT_UEQ(seen & 0x6000u, 0x2000u); /* the coroutine's mode survived */
  ASSERT_UEQ(get_mxcsr(), mine);
  weft__coro_destroy(co);
#endif
}
