/*
 * fuzz_http_parse.c — libFuzzer target for the HTTP/1.1 request parser
 * (src/async/http_parse.c). Built and run by scripts/fuzz.sh, not by CMake.
 *
 * The input is a byte stream as a client would send it (pipelined requests,
 * garbage, anything). It is parsed under two sets of limits (the defaults,
 * and tiny ones so that 413 and 431 are reached), each time:
 *   1. all at once, request after request;
 *   2. one byte more at a time, from a buffer whose bytes past the length
 *      given are poisoned for ASan, so any read past the length crashes;
 * and checks: every complete request consumes 0 < size <= bytes left; every
 * output pointer lies inside the bytes given; the header iterator finds
 * header_count lines; errors are one of the documented statuses; and both
 * ways of feeding give the same results.
 */
#include "async/http_parse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) __asan_poison_memory_region((p), (n))
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#endif
#endif
#ifndef POISON
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c); \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#define MAX_REQS 64

typedef struct res {
  size_t start, size, method_off, method_len, target_off, target_len;
  size_t header_count, head_size, content_length;
  int minor, keep_alive;
} res;

typedef struct run {
  res r[MAX_REQS];
  int n;
  int last;
} run;

static int inside(const void *p, size_t n, const unsigned char *b, size_t len) {
  const unsigned char *q = p;
  return q >= b && n <= len && (size_t)(q - b) <= len - n;
}

/* Checks one complete request against the bytes given (b, len). */
static res check(const weft__http_request *q, const unsigned char *b, size_t len, size_t start) {
  CHECK(q->size > 0 && q->size <= len);
  CHECK(q->head_size <= q->size && q->head_size + q->content_length == q->size);
  CHECK(q->method_len > 0 && inside(q->method, q->method_len, b, q->head_size));
  CHECK(q->target_len > 0 && inside(q->target, q->target_len, b, q->head_size));
  CHECK(inside(q->headers, q->headers_len, b, q->head_size));
  CHECK((const unsigned char *)q->body == b + q->head_size);
  CHECK(inside(q->body, q->content_length, b, len));
  CHECK(q->version_minor == 0 || q->version_minor == 1);
  CHECK(q->keep_alive == 0 || q->keep_alive == 1);
  size_t cur = 0, n = 0;
  weft__http_header h;
  while (weft__http_header_next(q, &cur, &h)) {
    CHECK(h.name_len > 0 && inside(h.name, h.name_len, b, q->head_size));
    CHECK(inside(h.value, h.value_len, b, q->head_size));
    n++;
    CHECK(n <= q->header_count);
  }
  CHECK(n == q->header_count);
  res r;
  memset(&r, 0, sizeof r);
  r.start = start;
  r.size = q->size;
  r.method_off = start + (size_t)(q->method - (const char *)b);
  r.method_len = q->method_len;
  r.target_off = start + (size_t)(q->target - (const char *)b);
  r.target_len = q->target_len;
  r.header_count = q->header_count;
  r.head_size = q->head_size;
  r.content_length = q->content_length;
  r.minor = q->version_minor;
  r.keep_alive = q->keep_alive;
  return r;
}

static void check_last(int rc) {
  CHECK(rc == 0 || rc == -400 || rc == -413 || rc == -431 || rc == -501 || rc == -505);
}

static void whole(const unsigned char *d, size_t len, size_t mh, size_t mb, run *out) {
  weft__http_parser p;
  weft__http_parser_init(&p, mh, mb);
  memset(out, 0, sizeof *out);
  size_t start = 0;
  for (;;) {
    weft__http_request q;
    int rc = weft__http_parse(&p, d + start, len - start, &q);
    if (rc != 1 || out->n == MAX_REQS) {
      out->last = rc == 1 ? 1 : rc;
      if (rc != 1) check_last(rc);
      return;
    }
    out->r[out->n++] = check(&q, d + start, len - start, start);
    start += q.size;
  }
}

/* buf holds a copy of the input, poisoned from `len` on; each step makes
 * one more byte readable. */
static void bytewise(const unsigned char *d, size_t len, size_t mh, size_t mb, run *out) {
  weft__http_parser p;
  weft__http_parser_init(&p, mh, mb);
  memset(out, 0, sizeof *out);
  unsigned char *buf = malloc(len ? len : 1);
  CHECK(buf != NULL);
  memcpy(buf, d, len);
  POISON(buf, len);
  size_t start = 0;
  int rc = 0;
  for (size_t end = 1; end <= len && rc >= 0; end++) {
    UNPOISON(buf + end - 1, 1);
    for (;;) {
      weft__http_request q;
      rc = weft__http_parse(&p, buf + start, end - start, &q);
      if (rc != 1) break;
      if (out->n == MAX_REQS) {
        rc = 1;
        break;
      }
      out->r[out->n++] = check(&q, buf + start, end - start, start);
      start += q.size;
    }
    if (rc == 1) break;
  }
  out->last = rc;
  if (rc != 1) check_last(rc);
  UNPOISON(buf, len);
  free(buf);
}

static void same(const run *a, const run *b) {
  CHECK(a->n == b->n);
  CHECK(a->last == b->last);
  for (int i = 0; i < a->n; i++) {
    const res *x = &a->r[i], *y = &b->r[i];
    CHECK(x->start == y->start && x->size == y->size);
    CHECK(x->method_off == y->method_off && x->method_len == y->method_len);
    CHECK(x->target_off == y->target_off && x->target_len == y->target_len);
    CHECK(x->header_count == y->header_count && x->head_size == y->head_size);
    CHECK(x->content_length == y->content_length);
    CHECK(x->minor == y->minor && x->keep_alive == y->keep_alive);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const size_t limits[][2] = {{0, 0}, {48, 8}};
  for (size_t k = 0; k < 2; k++) {
    static run a, b; /* static: large, and the target is single-threaded */
    whole(data, size, limits[k][0], limits[k][1], &a);
    bytewise(data, size, limits[k][0], limits[k][1], &b);
    same(&a, &b);
  }
  return 0;
}
