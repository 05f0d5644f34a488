/*
 * test_http_parse.c — the HTTP/1.1 request parser (async/http_parse.c) and
 * the study's ten sites (async/sites.c).
 *
 * Every vector is parsed twice: all at once (pipelined requests one after
 * another), and fed one byte more at a time, each call on a fresh heap copy
 * of exactly the bytes given (so the buffer moves between calls, and ASan or
 * valgrind catch any read past the length). Both must give the same sequence
 * of results, which must be the expected one.
 */
#include "wt.h"

#include "async/http_parse.h"

#include <stdint.h>

/* ---- running the parser ------------------------------------------------- */

#define MAX_REQS 8

/* One result, as offsets into the whole input so runs can be compared. */
typedef struct res {
  size_t start, size, method_off, method_len, target_off, target_len;
  size_t header_count, head_size, content_length, body_off;
  int minor, keep_alive, has_cl;
} res;

typedef struct run {
  res r[MAX_REQS];
  int n;    /* complete requests */
  int last; /* the final return: 0 (need more) or -status */
} run;

static res to_res(const weft__http_request *q, const char *base, size_t start) {
  res r;
  memset(&r, 0, sizeof r);
  r.start = start;
  r.size = q->size;
  r.method_off = start + (size_t)(q->method - base);
  r.method_len = q->method_len;
  r.target_off = start + (size_t)(q->target - base);
  r.target_len = q->target_len;
  r.header_count = q->header_count;
  r.head_size = q->head_size;
  r.content_length = q->content_length;
  r.body_off = start + (size_t)((const char *)q->body - base);
  r.minor = q->version_minor;
  r.keep_alive = q->keep_alive;
  r.has_cl = q->has_content_length;
  return r;
}

static void run_whole(const char *in, size_t len, size_t mh, size_t mb, run *out) {
  weft__http_parser p;
  weft__http_parser_init(&p, mh, mb);
  memset(out, 0, sizeof *out);
  size_t start = 0;
  for (;;) {
    weft__http_request q;
    int rc = weft__http_parse(&p, in + start, len - start, &q);
    if (rc != 1) {
      out->last = rc;
      return;
    }
    ASSERT_LT(out->n, MAX_REQS);
    ASSERT_GT(q.size, 0);
    ASSERT_LE(q.size, len - start);
    out->r[out->n++] = to_res(&q, in + start, start);
    start += q.size;
  }
}

static void run_bytes(const char *in, size_t len, size_t mh, size_t mb, run *out) {
  weft__http_parser p;
  weft__http_parser_init(&p, mh, mb);
  memset(out, 0, sizeof *out);
  size_t start = 0;
  for (size_t end = 1; end <= len; end++) {
    for (;;) {
      size_t n = end - start;
      char *copy = malloc(n ? n : 1);
      ASSERT_TRUE(copy != NULL);
      memcpy(copy, in + start, n);
      weft__http_request q;
      int rc = weft__http_parse(&p, copy, n, &q);
      if (rc == 1) {
        ASSERT_LT(out->n, MAX_REQS);
        ASSERT_LE(q.size, n);
        out->r[out->n++] = to_res(&q, copy, start);
        start += q.size;
      }
      free(copy);
      out->last = rc;
      if (rc < 0) return;
      if (rc == 0) break;
    }
  }
}

static void same_res(const res *a, const res *b) {
  ASSERT_UEQ(a->start, b->start);
  ASSERT_UEQ(a->size, b->size);
  ASSERT_UEQ(a->method_off, b->method_off);
  ASSERT_UEQ(a->method_len, b->method_len);
  ASSERT_UEQ(a->target_off, b->target_off);
  ASSERT_UEQ(a->target_len, b->target_len);
  ASSERT_UEQ(a->header_count, b->header_count);
  ASSERT_UEQ(a->head_size, b->head_size);
  ASSERT_UEQ(a->content_length, b->content_length);
  ASSERT_UEQ(a->body_off, b->body_off);
  ASSERT_EQ(a->minor, b->minor);
  ASSERT_EQ(a->keep_alive, b->keep_alive);
  ASSERT_EQ(a->has_cl, b->has_cl);
}

/* Parses both ways, checks they agree, returns the whole-buffer run. */
static run parse_both(const char *in, size_t len, size_t mh, size_t mb) {
  run w, b;
  run_whole(in, len, mh, mb, &w);
  run_bytes(in, len, mh, mb, &b);
  ASSERT_EQ(w.n, b.n);
  ASSERT_EQ(w.last, b.last);
  for (int i = 0; i < w.n; i++) same_res(&w.r[i], &b.r[i]);
  return w;
}

#define STR_EQ(in, off, len, lit)                                              \
  do {                                                                         \
    if ((len) != strlen(lit) || memcmp((in) + (off), (lit), (len)) != 0)       \
      WT_FAIL("got \"%.*s\", want \"%s\"", (int)(len), (in) + (off), (lit));   \
  } while (0)

/* ---- valid requests ----------------------------------------------------- */

typedef struct valid_vec {
  const char *in;
  const char *method, *target;
  int minor, keep_alive;
  size_t headers, content_length;
  const char *body; /* NULL: none */
} valid_vec;

static const valid_vec valid[] = {
    {"GET / HTTP/1.1\r\n\r\n", "GET", "/", 1, 1, 0, 0, NULL},
    {"GET /site/3?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\n"
     "Accept: */*\r\n\r\n",
     "GET", "/site/3?x=1", 1, 1, 3, 0, NULL},
    {"GET /a HTTP/1.0\r\n\r\n", "GET", "/a", 0, 0, 0, 0, NULL},
    {"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET", "/a", 0, 1, 1, 0, NULL},
    {"GET /a HTTP/1.0\r\nconnection:Keep-Alive\r\n\r\n", "GET", "/a", 0, 1, 1, 0, NULL},
    {"GET /a HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", "GET", "/a", 0, 0, 1, 0, NULL},
    {"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n", "GET", "/a", 1, 0, 1, 0, NULL},
    {"GET /a HTTP/1.1\r\nCONNECTION: \t Close \t\r\n\r\n", "GET", "/a", 1, 0, 1, 0, NULL},
    {"GET /a HTTP/1.1\r\nConnection: Upgrade, close\r\n\r\n", "GET", "/a", 1, 0, 1, 0, NULL},
    {"GET /a HTTP/1.1\r\nConnection: te\r\nConnection: close\r\n\r\n", "GET", "/a", 1, 0, 2, 0, NULL},
    {"GET /a HTTP/1.1\r\nConnection: closed\r\n\r\n", "GET", "/a", 1, 1, 1, 0, NULL},
    {"GET /a HTTP/1.1\r\nX-Connection: close\r\n\r\n", "GET", "/a", 1, 1, 1, 0, NULL},
    {"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "POST", "/echo", 1, 1, 1, 5, "hello"},
    {"POST /echo HTTP/1.1\r\ncontent-length:0\r\n\r\n", "POST", "/echo", 1, 1, 1, 0, ""},
    {"PUT /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "PUT", "/x", 1, 1, 2, 3, "abc"},
    {"PUT /x HTTP/1.1\r\nContent-Length: 007\r\n\r\n1234567", "PUT", "/x", 1, 1, 1, 7, "1234567"},
    {"\r\n\r\nGET / HTTP/1.1\r\n\r\n", "GET", "/", 1, 1, 0, 0, NULL},
    {"M-SEARCH * HTTP/1.1\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n\r\n", "M-SEARCH", "*", 1, 1, 2, 0, NULL},
    {"OPTIONS http://h:1/p?q=%20#f HTTP/1.1\r\n\r\n", "OPTIONS", "http://h:1/p?q=%20#f", 1, 1, 0, 0, NULL},
};

TEST(valid_requests) {
  for (size_t k = 0; k < sizeof valid / sizeof valid[0]; k++) {
    const valid_vec *v = &valid[k];
    size_t len = strlen(v->in);
    run w = parse_both(v->in, len, 0, 0);
    if (w.n != 1) WT_FAIL("vector %zu: %d requests, last %d", k, w.n, w.last);
    ASSERT_EQ(w.last, 0);
    const res *r = &w.r[0];
    ASSERT_UEQ(r->size, len);
    STR_EQ(v->in, r->method_off, r->method_len, v->method);
    STR_EQ(v->in, r->target_off, r->target_len, v->target);
    ASSERT_EQ(r->minor, v->minor);
    if (r->keep_alive != v->keep_alive) WT_FAIL("vector %zu: keep_alive %d", k, r->keep_alive);
    ASSERT_UEQ(r->header_count, v->headers);
    ASSERT_UEQ(r->content_length, v->content_length);
    ASSERT_EQ(r->has_cl, v->body != NULL);
    ASSERT_UEQ(r->body_off, r->head_size);
    ASSERT_UEQ(r->head_size + r->content_length, r->size);
    if (v->body) STR_EQ(v->in, r->body_off, r->content_length, v->body);
  }
}

/* Every strict prefix of a valid request asks for more bytes. */
TEST(prefixes_need_more) {
  for (size_t k = 0; k < sizeof valid / sizeof valid[0]; k++) {
    size_t len = strlen(valid[k].in);
    for (size_t n = 0; n < len; n++) {
      weft__http_parser p;
      weft__http_parser_init(&p, 0, 0);
      weft__http_request q;
      int rc = weft__http_parse(&p, n ? valid[k].in : NULL, n, &q);
      if (rc != 0) WT_FAIL("vector %zu, %zu of %zu bytes: %d", k, n, len, rc);
    }
  }
}

TEST(pipelined) {
  const char in[] = "GET /site/0 HTTP/1.1\r\nHost: a\r\n\r\n"
                    "POST /p HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET /site/9 HTTP/1.0\r\n\r\n"
                    "GET /partial HTTP/1.1\r\nHo";
  run w = parse_both(in, sizeof in - 1, 0, 0);
  ASSERT_EQ(w.n, 3);
  ASSERT_EQ(w.last, 0); /* the fourth is incomplete */
  STR_EQ(in, w.r[0].target_off, w.r[0].target_len, "/site/0");
  ASSERT_EQ(w.r[0].keep_alive, 1);
  STR_EQ(in, w.r[1].method_off, w.r[1].method_len, "POST");
  STR_EQ(in, w.r[1].body_off, w.r[1].content_length, "body");
  STR_EQ(in, w.r[2].target_off, w.r[2].target_len, "/site/9");
  ASSERT_EQ(w.r[2].minor, 0);
  ASSERT_EQ(w.r[2].keep_alive, 0);
  ASSERT_UEQ(w.r[2].start + w.r[2].size, strstr(in, "GET /partial") - in);
}

/* A pipelined request after an error is never parsed: errors are sticky. */
TEST(error_is_sticky) {
  weft__http_parser p;
  weft__http_parser_init(&p, 0, 0);
  weft__http_request q;
  const char bad[] = "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n";
  ASSERT_EQ(weft__http_parse(&p, bad, sizeof bad - 1, &q), -400);
  const char good[] = "GET / HTTP/1.1\r\n\r\n";
  ASSERT_EQ(weft__http_parse(&p, good, sizeof good - 1, &q), -400);
  weft__http_parser_init(&p, 0, 0);
  ASSERT_EQ(weft__http_parse(&p, good, sizeof good - 1, &q), 1);
}

TEST(headers_iterate_trimmed) {
  const char in[] = "GET / HTTP/1.1\r\nHost:  example \r\nX-Tab:\tv a l\t\r\nX-Empty: \r\n"
                    "Accept:*/*\r\n\r\n";
  weft__http_parser p;
  weft__http_parser_init(&p, 0, 0);
  weft__http_request q;
  ASSERT_EQ(weft__http_parse(&p, in, sizeof in - 1, &q), 1);
  ASSERT_UEQ(q.header_count, 4);
  static const char *const want[][2] = {
      {"Host", "example"}, {"X-Tab", "v a l"}, {"X-Empty", ""}, {"Accept", "*/*"}};
  size_t cur = 0, n = 0;
  weft__http_header h;
  while (weft__http_header_next(&q, &cur, &h)) {
    ASSERT_LT(n, 4);
    STR_EQ(h.name, 0, h.name_len, want[n][0]);
    STR_EQ(h.value, 0, h.value_len, want[n][1]);
    ASSERT_TRUE(h.name >= in && h.value + h.value_len <= in + sizeof in - 1);
    n++;
  }
  ASSERT_UEQ(n, 4);
  const char *v;
  size_t vl;
  ASSERT_EQ(weft__http_header_find(&q, "hOsT", &v, &vl), 1);
  STR_EQ(v, 0, vl, "example");
  ASSERT_EQ(weft__http_header_find(&q, "Hos", &v, &vl), 0);
  ASSERT_EQ(weft__http_header_find(&q, "Hostx", &v, &vl), 0);

  const char none[] = "GET / HTTP/1.1\r\n\r\n";
  ASSERT_EQ(weft__http_parse(&p, none, sizeof none - 1, &q), 1);
  cur = 0;
  ASSERT_EQ(weft__http_header_next(&q, &cur, &h), 0);
  ASSERT_UEQ(q.headers_len, 0);
}

/* ---- errors ------------------------------------------------------------- */

typedef struct err_vec {
  const char *in;
  size_t len; /* 0: strlen */
  int status;
} err_vec;

static const err_vec errs[] = {
    /* request line */
    {"GET/ HTTP/1.1\r\n\r\n", 0, 400},
    {"G@T / HTTP/1.1\r\n\r\n", 0, 400},
    {" GET / HTTP/1.1\r\n\r\n", 0, 400},
    {"GET  / HTTP/1.1\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1 \r\n\r\n", 0, 400},
    {"GET /a\x01 HTTP/1.1\r\n\r\n", 0, 400},
    {"GET /a\x7f HTTP/1.1\r\n\r\n", 0, 400},
    {"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 0, 400},
    {"GET / http/1.1\r\n\r\n", 0, 400},
    {"GET / HTTP/1.10\r\n\r\n", 0, 400},
    {"GET / HTTP/11\r\n\r\n", 0, 400},
    {"GET / HTTP/1.x\r\n\r\n", 0, 400},
    {"GET /\r\n\r\n", 0, 400},
    {"GET\r\n\r\n", 0, 400},
    {"\x16\x03\x01\x02\x00", 0, 400}, /* a TLS hello */
    {"\0GET / HTTP/1.1\r\n\r\n", 19, 400},
    /* line endings: bare LF and bare CR are refused */
    {"GET / HTTP/1.1\n\n", 0, 400},
    {"GET / HTTP/1.1\r\nHost: x\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\n\n", 0, 400},
    {"GET / HTTP/1.1\rX", 0, 400},
    {"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 0, 400},
    {"\nGET / HTTP/1.1\r\n\r\n", 0, 400},
    {"\r\r\n", 0, 400},
    /* header lines */
    {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\n: x\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX(y): z\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 0, 400},  /* obs-fold */
    {"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", 0, 400}, /* obs-fold */
    {"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26, 400},
    {"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX: a\x1b\r\n\r\n", 0, 400},
    /* Content-Length */
    {"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: 1 1\r\n\r\nx", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\nx", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nxx", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 0, 400},
    /* too large bodies (limit 1 MiB by default) */
    {"POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", 0, 413},
    {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999999\r\n\r\n", 0, 413},
    /* Transfer-Encoding: not implemented */
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0, 501},
    {"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n", 0, 501},
    {"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 0, 501},
    {"GET / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 0, 501},
    /* versions */
    {"GET / HTTP/2.0\r\n\r\n", 0, 505},
    {"GET / HTTP/1.2\r\n\r\n", 0, 505},
    {"GET / HTTP/0.9\r\n\r\n", 0, 505},
    {"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 0, 505},
};

TEST(error_statuses) {
  for (size_t k = 0; k < sizeof errs / sizeof errs[0]; k++) {
    const err_vec *e = &errs[k];
    size_t len = e->len ? e->len : strlen(e->in);
    run w = parse_both(e->in, len, 0, 0);
    if (w.n != 0 || w.last != -e->status)
      WT_FAIL("vector %zu: %d requests, last %d, want %d", k, w.n, w.last, -e->status);
  }
}

/* Garbage is refused at its first bad byte, without waiting for more. */
TEST(errors_are_early) {
  weft__http_parser p;
  weft__http_request q;
  weft__http_parser_init(&p, 0, 0);
  ASSERT_EQ(weft__http_parse(&p, "\x16", 1, &q), -400);
  weft__http_parser_init(&p, 0, 0);
  ASSERT_EQ(weft__http_parse(&p, "GET / HTTP/2", 12, &q), 0);
  ASSERT_EQ(weft__http_parse(&p, "GET / HTTP/2.0\r", 15, &q), -505);
  weft__http_parser_init(&p, 0, 0);
  ASSERT_EQ(weft__http_parse(&p, "GET / HTTP/1.1\r\nX: \x01", 20, &q), -400);
}

/* ---- limits ------------------------------------------------------------- */

TEST(header_limit) {
  const char in[] = "GET / HTTP/1.1\r\nHost: 0123456789\r\n\r\n"; /* 36 bytes */
  size_t len = sizeof in - 1;
  ASSERT_UEQ(len, 36);
  run w = parse_both(in, len, len, 0); /* exactly at the limit: fine */
  ASSERT_EQ(w.n, 1);
  ASSERT_UEQ(w.r[0].head_size, len);
  w = parse_both(in, len, len - 1, 0); /* one byte over */
  ASSERT_EQ(w.n, 0);
  ASSERT_EQ(w.last, -431);
  w = parse_both(in, len, 10, 0); /* within the request line */
  ASSERT_EQ(w.last, -431);

  /* Leading empty lines count. */
  const char lead[] = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
  w = parse_both(lead, sizeof lead - 1, sizeof lead - 2, 0);
  ASSERT_EQ(w.last, -431);

  /* The limit holds however the bytes arrive: an endless header. */
  weft__http_parser p;
  weft__http_parser_init(&p, 0, 0); /* default 8 KiB */
  size_t big = WEFT__HTTP_DEFAULT_MAX_HEADER + 100;
  char *buf = malloc(big);
  ASSERT_TRUE(buf != NULL);
  memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
  memset(buf + 19, 'a', big - 19);
  weft__http_request q;
  int rc = 0;
  size_t n = 0;
  while (rc == 0 && n < big) {
    n = n + 1000 < big ? n + 1000 : big;
    rc = weft__http_parse(&p, buf, n, &q);
  }
  ASSERT_EQ(rc, -431);
  ASSERT_GT(n, WEFT__HTTP_DEFAULT_MAX_HEADER);
  free(buf);

  /* The body does not count towards the header limit. */
  const char body[] = "POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\n"
                      "0123456789012345678901234567890123456789";
  w = parse_both(body, sizeof body - 1, 40, 0);
  ASSERT_EQ(w.n, 1);
  ASSERT_UEQ(w.r[0].content_length, 40);
}

TEST(body_limit) {
  const char ok[] = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
  run w = parse_both(ok, sizeof ok - 1, 0, 10);
  ASSERT_EQ(w.n, 1);
  ASSERT_UEQ(w.r[0].content_length, 10);
  const char big[] = "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
  /* 413 as soon as the header section is complete, before any body byte. */
  w = parse_both(big, sizeof big - 1, 0, 10);
  ASSERT_EQ(w.n, 0);
  ASSERT_EQ(w.last, -413);
  /* Default limit: exactly 1 MiB is fine (body still missing: need more). */
  const char mib[] = "POST / HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n";
  w = parse_both(mib, sizeof mib - 1, 0, 0);
  ASSERT_EQ(w.n, 0);
  ASSERT_EQ(w.last, 0);
}

/*
 * Re-feeding a growing buffer one byte at a time costs O(new bytes): a
 * 1 MiB header section fed byte by byte takes ~1M short calls. A parser that
 * rescanned from the start would do ~5e11 byte steps and hit the timeout.
 */
TEST(linear_refeed) /* labels: novalgrind */ {
  size_t big = (size_t)1 << 20;
  char *buf = malloc(big);
  ASSERT_TRUE(buf != NULL);
  const char rl[] = "GET / HTTP/1.1\r\nX: ";
  memcpy(buf, rl, sizeof rl - 1);
  memset(buf + sizeof rl - 1, 'v', big - (sizeof rl - 1) - 4);
  memcpy(buf + big - 4, "\r\n\r\n", 4);
  weft__http_parser p;
  weft__http_parser_init(&p, big, 0);
  weft__http_request q;
  int64_t t0 = weft_now();
  for (size_t n = 1; n < big; n++) {
    int rc = weft__http_parse(&p, buf, n, &q);
    if (rc != 0) WT_FAIL("at %zu bytes: %d", n, rc);
  }
  ASSERT_EQ(weft__http_parse(&p, buf, big, &q), 1);
  ASSERT_UEQ(q.size, big);
  ASSERT_UEQ(q.header_count, 1);
  fprintf(stderr, "1 MiB header fed byte by byte: %" PRId64 " ms\n", weft_now() - t0);
  free(buf);
}

/* A caller that shrinks the buffer (against the contract) gets a rescan,
 * not a read past the length or a wrong answer. */
TEST(shrinking_buffer_rescans) {
  const char in[] = "GET /x HTTP/1.1\r\n\r\n";
  weft__http_parser p;
  weft__http_parser_init(&p, 0, 0);
  weft__http_request q;
  ASSERT_EQ(weft__http_parse(&p, in, 12, &q), 0);
  ASSERT_EQ(weft__http_parse(&p, in, 5, &q), 0);
  ASSERT_EQ(weft__http_parse(&p, in, sizeof in - 1, &q), 1);
  ASSERT_UEQ(q.size, sizeof in - 1);
  STR_EQ(q.target, 0, q.target_len, "/x");
}

TEST(reason_phrases) {
  ASSERT_EQ(strcmp(weft__http_reason(200), "OK"), 0);
  ASSERT_EQ(strcmp(weft__http_reason(400), "Bad Request"), 0);
  ASSERT_EQ(strcmp(weft__http_reason(404), "Not Found"), 0);
  ASSERT_EQ(strcmp(weft__http_reason(413), "Content Too Large"), 0);
  ASSERT_EQ(strcmp(weft__http_reason(431), "Request Header Fields Too Large"), 0);
  ASSERT_EQ(strcmp(weft__http_reason(501), "Not Implemented"), 0);
  ASSERT_EQ(strcmp(weft__http_reason(505), "HTTP Version Not Supported"), 0);
  ASSERT_EQ(strcmp(weft__http_reason(299), "Unknown"), 0);
}

/* ---- the ten sites ------------------------------------------------------ */

TEST(sites_table) {
  static const size_t sizes[WEFT_SITES] = {15655, 12630, 98527, 42000, 120000,
                                           8192,  64000, 250000, 30000, 5000};
  for (int s = 0; s < WEFT_SITES; s++) {
    ASSERT_EQ(weft_site_latency_ms(s), 100 * (s + 1));
    ASSERT_UEQ(weft_site_size(s), sizes[s]);
  }
  int bad[] = {-1, WEFT_SITES, 1000, -1000};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    ASSERT_EQ(weft_site_latency_ms(bad[k]), -1);
    ASSERT_UEQ(weft_site_size(bad[k]), 0);
    ASSERT_EQ(weft_site_byte(bad[k], 0), 0);
  }
}

TEST(sites_bytes) {
  for (int s = 0; s < WEFT_SITES; s++) {
    size_t n = weft_site_size(s);
    unsigned char *a = malloc(n), *b = malloc(n + 100);
    ASSERT_TRUE(a && b);
    size_t counts[256] = {0};
    for (size_t i = 0; i < n; i++) {
      a[i] = weft_site_byte(s, i);
      ASSERT_EQ(a[i], weft_site_byte(s, i)); /* deterministic */
      ASSERT_TRUE(a[i] == '\n' || (a[i] >= 0x21 && a[i] <= 0x7e));
      counts[a[i]]++;
    }
    /* Readable lines, and no byte value dominates. */
    ASSERT_UEQ(counts['\n'], n / 64);
    for (int c = 0x21; c <= 0x7e; c++) ASSERT_LT(counts[c], n / 94 * 2 + 64);
    ASSERT_EQ(weft_site_byte(s, n), 0);
    ASSERT_EQ(weft_site_byte(s, SIZE_MAX), 0);
    /* The fast fill agrees, from any offset, and pads past the end with 0. */
    memset(b, 0xAA, n + 100);
    weft__site_fill(s, 0, b, n + 100);
    ASSERT_EQ(memcmp(a, b, n), 0);
    for (size_t i = n; i < n + 100; i++) ASSERT_EQ(b[i], 0);
    size_t offs[] = {1, 63, 64, 1000, n / 2, n - 1};
    for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++) {
      memset(b, 0xAA, n + 100);
      size_t want = n - offs[k] < 500 ? n - offs[k] : 500;
      weft__site_fill(s, offs[k], b, want);
      ASSERT_EQ(memcmp(a + offs[k], b, want), 0);
      ASSERT_EQ(b[want], 0xAA); /* nothing written past the count */
    }
    memset(b, 0xAA, 10);
    weft__site_fill(s, n + 5, b, 10);
    for (int i = 0; i < 10; i++) ASSERT_EQ(b[i], 0);
    free(a);
    free(b);
  }
  unsigned char z[4] = {1, 2, 3, 4};
  weft__site_fill(-1, 0, z, sizeof z);
  for (int i = 0; i < 4; i++) ASSERT_EQ(z[i], 0);
}

TEST(sites_differ) {
  /* Bodies of different sites differ in most places of their common part. */
  for (int s = 0; s < WEFT_SITES; s++) {
    for (int t = s + 1; t < WEFT_SITES; t++) {
      size_t n = weft_site_size(s) < weft_site_size(t) ? weft_site_size(s) : weft_site_size(t);
      size_t same = 0;
      for (size_t i = 0; i < n; i++) same += weft_site_byte(s, i) == weft_site_byte(t, i);
      /* Chance agreement is ~1/94 plus the shared newlines (1/64). */
      if (same > n / 64 + n / 20) WT_FAIL("sites %d and %d agree on %zu of %zu bytes", s, t, same, n);
    }
  }
}
