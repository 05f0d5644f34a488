/*
 * coro.c — how much a coroutine switch and an idle coroutine cost.
 *
 * In one run, medians of R repeats (default 5), one switch = half of a
 * resume+yield pair:
 *   weft        weft__coro_resume / weft__coro_yield (assembly switch)
 *   weft-uc     the same API on weft's ucontext fallback
 *   swapcontext two raw swapcontext calls (glibc; saves the signal mask
 *               with a syscall each time)
 *   bare        a minimal register switch written here (callee-saved
 *               registers and the stack pointer, no thread-local, no
 *               bookkeeping): the floor
 * then the ratios swapcontext/weft and weft/bare against the goals (>= 10x,
 * <= 2x), and the resident memory per idle coroutine: 100,000 coroutines,
 * each suspended after touching a small frame (RSS from /proc/self/statm
 * before and after, divided).
 *
 * Usage: coro [--switches N] [--repeat R] [--coros N]
 * Output: plain aligned text, plus one `bench=coro ...` line per figure.
 */
#include "async/coro.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_dbl);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static long pairs = 2000000;

/* ---- weft ---- */

static void weft_loop(void *arg) {
  (void)arg;
  for (;;) weft__coro_yield();
}

static double run_weft(bool uc) {
  weft__coro_use_ucontext(uc);
  weft__coro *co;
  if (weft__coro_create(&co, weft_loop, NULL, 0, "bench") != 0) {
    fprintf(stderr, "coro: cannot create a coroutine\n");
    exit(1);
  }
  long n = uc ? pairs / 10 : pairs; /* the fallback is much slower */
  weft__coro_resume(co);
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++) weft__coro_resume(co);
  uint64_t t1 = now_ns();
  weft__coro_destroy(co);
  weft__coro_use_ucontext(false);
  return (double)(t1 - t0) / (2.0 * (double)n);
}

/* ---- raw swapcontext ---- */

static ucontext_t uc_main, uc_co;

static void uc_fn(void) {
  for (;;) swapcontext(&uc_co, &uc_main);
}

static double run_swapcontext(void) {
  static char stack[64 * 1024] __attribute__((aligned(16)));
  getcontext(&uc_co);
  uc_co.uc_stack.ss_sp = stack;
  uc_co.uc_stack.ss_size = sizeof stack;
  uc_co.uc_link = NULL;
  makecontext(&uc_co, uc_fn, 0);
  long n = pairs / 10;
  swapcontext(&uc_main, &uc_co);
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++) swapcontext(&uc_main, &uc_co);
  uint64_t t1 = now_ns();
  return (double)(t1 - t0) / (2.0 * (double)n);
}

/* ---- the floor: a bare register switch ----
 * bare_switch(void **save, void *to): push callee-saved registers, swap
 * stack pointers, pop, return. bare_boot starts the loop function. */
#if defined(__x86_64__)
__asm__(".text\n"
        ".p2align 4\n"
        "bare_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        "bare_boot:\n"
        "  movq %r12, %rdi\n  callq *%r13\n  ud2\n");
#define HAVE_BARE 1
#define BARE_FRAME 7 /* words: 6 registers + return address */
#elif defined(__aarch64__)
__asm__(".text\n"
        ".p2align 4\n"
        "bare_switch:\n"
        "  sub sp, sp, #160\n"
        "  stp x19, x20, [sp, #0]\n  stp x21, x22, [sp, #16]\n  stp x23, x24, [sp, #32]\n"
        "  stp x25, x26, [sp, #48]\n  stp x27, x28, [sp, #64]\n  stp x29, x30, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n  stp d10, d11, [sp, #112]\n  stp d12, d13, [sp, #128]\n"
        "  stp d14, d15, [sp, #144]\n"
        "  mov x9, sp\n  str x9, [x0]\n  mov sp, x1\n"
        "  ldp x19, x20, [sp, #0]\n  ldp x21, x22, [sp, #16]\n  ldp x23, x24, [sp, #32]\n"
        "  ldp x25, x26, [sp, #48]\n  ldp x27, x28, [sp, #64]\n  ldp x29, x30, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n  ldp d10, d11, [sp, #112]\n  ldp d12, d13, [sp, #128]\n"
        "  ldp d14, d15, [sp, #144]\n"
        "  add sp, sp, #160\n  ret\n"
        "bare_boot:\n"
        "  mov x0, x19\n  blr x20\n  brk #0\n");
#define HAVE_BARE 1
#define BARE_FRAME 20 /* words */
#endif

#if defined(HAVE_BARE)
void bare_switch(void **save, void *to) __asm__("bare_switch");
void bare_boot(void) __asm__("bare_boot");
static void *bare_main_sp, *bare_co_sp;

static void bare_fn(void *arg) {
  (void)arg;
  for (;;) bare_switch(&bare_co_sp, bare_main_sp);
}

static double run_bare(void) {
  static uint64_t stack[8192] __attribute__((aligned(16)));
#if defined(__x86_64__)
  /* After the 7 popped words rsp must be 16-byte aligned for bare_boot's call. */
  uint64_t *f = stack + 8192 - 2 - BARE_FRAME;
  memset(f, 0, BARE_FRAME * sizeof *f);
  f[2] = (uint64_t)(uintptr_t)bare_fn;   /* r13 */
  f[6] = (uint64_t)(uintptr_t)bare_boot; /* return address */
#else
  uint64_t *f = stack + 8192 - BARE_FRAME;
  memset(f, 0, BARE_FRAME * sizeof *f);
  f[1] = (uint64_t)(uintptr_t)bare_fn;    /* x20 */
  f[11] = (uint64_t)(uintptr_t)bare_boot; /* x30 */
#endif
  bare_co_sp = f;
  long n = pairs;
  bare_switch(&bare_main_sp, bare_co_sp);
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++) bare_switch(&bare_main_sp, bare_co_sp);
  uint64_t t1 = now_ns();
  return (double)(t1 - t0) / (2.0 * (double)n);
}
#endif

/* ---- memory per idle coroutine ---- */

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, rss = 0;
  if (!f || fscanf(f, "%ld %ld", &size, &rss) != 2) {
    fprintf(stderr, "coro: cannot read /proc/self/statm\n");
    exit(1);
  }
  fclose(f);
  return rss * sysconf(_SC_PAGESIZE);
}

static void idle_fn(void *arg) {
  volatile char frame[256];
  frame[0] = 1;
  (void)arg;
  weft__coro_yield();
  (void)frame[0];
}

static double run_memory(long n) {
  weft__coro **cos = malloc((size_t)n * sizeof *cos);
  if (!cos) exit(1);
  long before = rss_bytes();
  for (long i = 0; i < n; i++) {
    if (weft__coro_create(&cos[i], idle_fn, NULL, 0, "idle") != 0) {
      fprintf(stderr, "coro: create failed at %ld\n", i);
      exit(1);
    }
    weft__coro_resume(cos[i]);
  }
  long after = rss_bytes();
  for (long i = 0; i < n; i++) {
    weft__coro_resume(cos[i]);
    weft__coro_destroy(cos[i]);
  }
  free(cos);
  return (double)(after - before) / (double)n;
}

int main(int argc, char **argv) {
  int repeat = 5;
  long coros = 100000;
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && strcmp(argv[i], "--switches") == 0) pairs = atol(argv[++i]) / 2;
    else if (i + 1 < argc && strcmp(argv[i], "--repeat") == 0) repeat = atoi(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--coros") == 0) coros = atol(argv[++i]);
    else {
      fprintf(stderr, "usage: coro [--switches N] [--repeat R] [--coros N]\n");
      return 2;
    }
  }
  if (repeat < 1 || repeat > 99 || pairs < 10 || coros < 1) {
    fprintf(stderr, "coro: bad argument\n");
    return 2;
  }
  double w[99], wu[99], sc[99], br[99], mem[99];
  for (int r = 0; r < repeat; r++) { /* interleaved, so drift hits all alike */
    w[r] = run_weft(false);
    wu[r] = run_weft(true);
    sc[r] = run_swapcontext();
#if defined(HAVE_BARE)
    br[r] = run_bare();
#else
    br[r] = 0;
#endif
    mem[r] = run_memory(coros);
  }
  double first_mem = mem[0]; /* before the heap holds freed coroutine structs */
  double weft = median(w, repeat), weft_uc = median(wu, repeat), swap = median(sc, repeat),
         bare = median(br, repeat), per = median(mem, repeat);

  printf("Coroutine switch: ns per switch (one resume+yield = 2 switches), median of %d\n", repeat);
  printf("  %-28s %8.2f ns\n", "weft (assembly switch)", weft);
  printf("  %-28s %8.2f ns\n", "weft (ucontext fallback)", weft_uc);
  printf("  %-28s %8.2f ns\n", "swapcontext (glibc)", swap);
  if (bare > 0) printf("  %-28s %8.2f ns\n", "bare register switch", bare);
  else printf("  %-28s %8s\n", "bare register switch", "n/a");
  printf("\nRatios\n");
  double r_swap = swap / weft, r_bare = bare > 0 ? weft / bare : 0;
  printf("  %-28s %8.2fx   goal >= 10x: %s\n", "swapcontext / weft", r_swap,
         r_swap >= 10 ? "met" : "NOT met");
  if (bare > 0)
    printf("  %-28s %8.2fx   goal <=  2x: %s\n", "weft / bare", r_bare, r_bare <= 2 ? "met" : "NOT met");
  printf("\nIdle coroutines: %ld suspended after touching a 256-byte frame (default stack %u KiB)\n",
         coros, WEFT__CORO_DEFAULT_STACK / 1024);
  printf("  %-28s %8.0f bytes   (first run, cold heap: %.0f)\n", "resident memory each", per,
         first_mem);
  weft__coro_stats st;
  weft__coro_stats_get(&st);
  printf("  %-28s %8zu slabs, %zu stacks mapped, guard: %s\n", "stacks", st.slabs,
         st.stacks_mapped, weft__coro_guard_kind());

  printf("\nbench=coro impl=weft ns_per_switch=%.2f\n", weft);
  printf("bench=coro impl=weft-ucontext ns_per_switch=%.2f\n", weft_uc);
  printf("bench=coro impl=swapcontext ns_per_switch=%.2f ratio_vs_weft=%.2f\n", swap, r_swap);
  if (bare > 0) printf("bench=coro impl=bare ns_per_switch=%.2f weft_over_bare=%.2f\n", bare, r_bare);
  printf("bench=coro impl=weft idle_rss_bytes=%.0f coros=%ld\n", per, coros);
  return 0;
}
