/*
 * wt.h — weft's tiny test harness.
 *
 * A test is registered once, where it is written:  TEST(chan_close) { ... }
 * CMake reads the TEST(...) names from each tests/test_*.c and registers every
 * case as its own CTest test (`test_x chan_close`), so each runs in its own
 * process with a timeout. Run by hand: `./test_x` runs all cases in turn,
 * `./test_x NAME...` runs some, `./test_x --list` lists them.
 *
 * Assertions print both sides and the location, then exit(1).
 */
#ifndef WEFT_TEST_WT_H
#define WEFT_TEST_WT_H

#include "weft.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*wt_fn)(void);
struct wt_case {
  const char *name;
  wt_fn fn;
};
#define WT_MAX_CASES 256
static struct wt_case wt_cases[WT_MAX_CASES];
static int wt_ncases;

static inline void wt_register(const char *name, wt_fn fn) {
  if (wt_ncases == WT_MAX_CASES) {
    fprintf(stderr, "wt: too many test cases\n");
    exit(2);
  }
  wt_cases[wt_ncases].name = name;
  wt_cases[wt_ncases].fn = fn;
  wt_ncases++;
}

#define TEST(name)                                                             \
  static void wt_test_##name(void);                                            \
  __attribute__((constructor)) static void wt_reg_##name(void) {               \
    wt_register(#name, wt_test_##name);                                        \
  }                                                                            \
  static void wt_test_##name(void)

#define WT_FAIL(...)                                                           \
  do {                                                                         \
    fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                      \
    fprintf(stderr, __VA_ARGS__);                                              \
    fputc('\n', stderr);                                                       \
    exit(1);                                                                   \
  } while (0)

#define ASSERT_TRUE(c)                                                         \
  do {                                                                         \
    if (!(c)) WT_FAIL("expected true: %s", #c);                                \
  } while (0)

#define WT_CMP(a, op, b)                                                       \
  do {                                                                         \
    long long wt_a = (long long)(a), wt_b = (long long)(b);                    \
    if (!(wt_a op wt_b))                                                       \
      WT_FAIL("%s %s %s: %lld vs %lld", #a, #op, #b, wt_a, wt_b);              \
  } while (0)
#define ASSERT_EQ(a, b) WT_CMP(a, ==, b)
#define ASSERT_NE(a, b) WT_CMP(a, !=, b)
#define ASSERT_LT(a, b) WT_CMP(a, <, b)
#define ASSERT_LE(a, b) WT_CMP(a, <=, b)
#define ASSERT_GT(a, b) WT_CMP(a, >, b)
#define ASSERT_GE(a, b) WT_CMP(a, >=, b)

#define ASSERT_UEQ(a, b)                                                       \
  do {                                                                         \
    unsigned long long wt_a = (unsigned long long)(a),                         \
                       wt_b = (unsigned long long)(b);                         \
    if (wt_a != wt_b) WT_FAIL("%s == %s: %llu vs %llu", #a, #b, wt_a, wt_b);   \
  } while (0)

/* A weft call that must return `want` (a WEFT_E* code or 0). */
#define ASSERT_RC(expr, want)                                                  \
  do {                                                                         \
    int wt_rc = (expr), wt_want = (want);                                      \
    if (wt_rc != wt_want)                                                      \
      WT_FAIL("%s: got %d (%s), want %d (%s)", #expr, wt_rc,                   \
              weft_err_name(wt_rc), wt_want, weft_err_name(wt_want));          \
  } while (0)
#define ASSERT_OK(expr) ASSERT_RC(expr, 0)

#define ASSERT_STREQ(a, b)                                                     \
  do {                                                                         \
    const char *wt_a = (a), *wt_b = (b);                                       \
    if (!wt_a || !wt_b || strcmp(wt_a, wt_b) != 0)                             \
      WT_FAIL("%s == %s: \"%s\" vs \"%s\"", #a, #b, wt_a ? wt_a : "(null)",     \
              wt_b ? wt_b : "(null)");                                         \
  } while (0)

/* Scale for heavy loops: WEFT_TEST_SCALE=0.1 under valgrind. */
static inline double wt_scale(void) {
  const char *s = getenv("WEFT_TEST_SCALE");
  double v = s ? atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}
static inline long wt_scaled(long n) {
  long v = (long)((double)n * wt_scale());
  return v > 0 ? v : 1;
}

/* The file descriptors open in this process now (for leak checks), or -1. */
static inline int wt_count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1; /* the DIR's own fd */
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (int i = 0; i < wt_ncases; i++) printf("%s\n", wt_cases[i].name);
    return 0;
  }
  int ran = 0;
  for (int i = 0; i < wt_ncases; i++) {
    int want = argc == 1;
    for (int j = 1; j < argc && !want; j++) want = strcmp(argv[j], wt_cases[i].name) == 0;
    if (!want) continue;
    wt_cases[i].fn();
    fprintf(stderr, "ok %s\n", wt_cases[i].name);
    ran++;
  }
  if (ran == 0) {
    fprintf(stderr, "wt: no test case matched\n");
    return 2;
  }
  return 0;
}

#endif /* WEFT_TEST_WT_H */
