/*
 * mpi_test.c — the "mpi" executor, run under mpirun (tests/mpi/run.sh).
 *
 * Every rank runs this program: weft_mpi_init keeps the worker ranks
 * serving, and rank 0 runs the one case named on the command line (wt.h's
 * runner). A failed assertion exits rank 0 with status 1, and mpirun ends
 * the job with a non-zero status. Cases and their mpirun options are
 * registered in tests/mpi/CMakeLists.txt.
 */
#define main wt_main
#include "wt.h"
#undef main

#include <signal.h>
#include <unistd.h>

/* int in: (in * in, this rank) out. */
typedef struct sq_out {
  long sq;
  int rank;
} sq_out;

static int square_rank(const void *in, size_t size, weft_out *out) {
  (void)size;
  long v = *(const int *)in;
  sq_out r = {v * v, weft_mpi_rank()};
  return weft_out_set(out, &r, sizeof r);
}
WEFT_REGISTER(square_rank);

/* int in: sleeps that many ms, returns it. */
static int nap(const void *in, size_t size, weft_out *out) {
  (void)size;
  int ms = *(const int *)in;
  usleep((useconds_t)ms * 1000);
  return weft_out_set(out, &ms, sizeof ms);
}
WEFT_REGISTER(nap);

/* int in: odd numbers fail with a message. */
static int odd_fails(const void *in, size_t size, weft_out *out) {
  (void)size;
  int v = *(const int *)in;
  if (v % 2) return weft_out_fail(out, WEFT_EINVAL, "odd %d on rank %d", v, weft_mpi_rank());
  return weft_out_set(out, &v, sizeof v);
}
WEFT_REGISTER(odd_fails);

/* bytes in: the same bytes reversed and complemented. */
static int flip(const void *in, size_t size, weft_out *out) {
  const unsigned char *p = in;
  unsigned char *q = weft_out_alloc(out, size);
  if (!q && size) return WEFT_ENOMEM;
  for (size_t i = 0; i < size; i++) q[i] = (unsigned char)~p[size - 1 - i];
  return 0;
}
WEFT_REGISTER(flip);

/* int in: -1 kills this rank (SIGKILL, as a crash would), else naps. */
static int die_or_nap(const void *in, size_t size, weft_out *out) {
  int v = *(const int *)in;
  if (v < 0) raise(SIGKILL);
  return nap(in, size, out);
}
WEFT_REGISTER(die_or_nap);

/* Registered on rank 0 only (at run time, after the workers started). */
static int only_here(const void *in, size_t size, weft_out *out) {
  (void)in;
  (void)size;
  (void)out;
  return 0;
}

/* int in: naps 30 ms on rank 1, 3 ms elsewhere; returns the rank. */
static int slow_on_one(const void *in, size_t size, weft_out *out) {
  (void)in;
  (void)size;
  int r = weft_mpi_rank();
  usleep(r == 1 ? 30000 : 3000);
  return weft_out_set(out, &r, sizeof r);
}
WEFT_REGISTER(slow_on_one);

static weft_executor *make(size_t chunk) {
  weft_executor_opts o = {.chunksize = chunk};
  weft_executor *ex = NULL;
  ASSERT_OK(weft_executor_create(&ex, "mpi", &o));
  return ex;
}

TEST(setup) {
  ASSERT_EQ(weft_mpi_rank(), 0);
  ASSERT_EQ(weft_mpi_size(), 3);
  int found = 0;
  for (const char *const *k = weft_executor_kinds(); *k; k++) found |= !strcmp(*k, "mpi");
  ASSERT_TRUE(found);
  weft_executor *ex = make(0), *ex2 = NULL;
  ASSERT_RC(weft_executor_create(&ex2, "mpi", NULL), WEFT_EBUSY);
  ASSERT_RC(weft_mpi_finalize(), WEFT_EBUSY); /* an executor still exists */
  weft_executor_stats st;
  ASSERT_OK(weft_executor_stats_get(ex, &st));
  ASSERT_STREQ(st.name, "mpi");
  ASSERT_EQ(st.size, 2);
  /* Unregistered functions are refused at submit. */
  weft_future *f = NULL;
  ASSERT_RC(weft_executor_submit(ex, only_here, NULL, 0, &f), WEFT_ENOENT);
  weft_executor_destroy(ex);
  /* One executor at a time, but one after another is fine. */
  ex = make(0);
  weft_executor_destroy(ex);
  weft_executor_opts one = {.workers = 1};
  ASSERT_OK(weft_executor_create(&ex, "mpi", &one));
  ASSERT_OK(weft_executor_stats_get(ex, &st));
  ASSERT_EQ(st.size, 1);
  weft_executor_destroy(ex);
}

static void ordered_map(size_t chunk) {
  weft_executor *ex = make(chunk);
  enum { N = 2000 };
  static int in[N];
  static sq_out res[N];
  static int errs[N];
  for (int i = 0; i < N; i++) in[i] = i - 1000;
  ASSERT_OK(weft_executor_map(ex, square_rank, in, sizeof in[0], N, res, sizeof res[0], errs,
                              weft_deadline_in(60000)));
  int per_rank[3] = {0};
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(errs[i], 0);
    ASSERT_EQ(res[i].sq, (long)in[i] * in[i]);
    ASSERT_TRUE(res[i].rank == 1 || res[i].rank == 2);
    per_rank[res[i].rank]++;
  }
  /* Both worker ranks took part. */
  ASSERT_GT(per_rank[1], 0);
  ASSERT_GT(per_rank[2], 0);
  /* imap: in input order, streaming. */
  weft_imap *it = NULL;
  ASSERT_OK(weft_executor_imap(ex, square_rank, in, sizeof in[0], N, &it));
  weft_item item;
  size_t next = 0;
  while (weft_imap_next(it, weft_deadline_in(60000), &item) == 0) {
    ASSERT_EQ(item.index, next);
    ASSERT_EQ(item.error, 0);
    ASSERT_EQ(item.size, sizeof(sq_out));
    ASSERT_EQ(((const sq_out *)item.data)->sq, (long)in[next] * in[next]);
    next++;
  }
  ASSERT_EQ(next, N);
  weft_imap_destroy(it);
  weft_executor_destroy(ex);
}

TEST(ordered_map) { ordered_map(0); }
TEST(ordered_map_chunk1) { ordered_map(1); }
TEST(ordered_map_chunk64) { ordered_map(64); }

/* Workers take work as they free up: rank 1, ten times slower, takes far
 * fewer items (about a tenth); the margin below is wide. */
TEST(slow_rank_gets_less) {
  weft_executor *ex = make(1);
  enum { N = 60 };
  int in[N], ranks[N];
  for (int i = 0; i < N; i++) in[i] = i;
  ASSERT_OK(weft_executor_map(ex, slow_on_one, in, sizeof in[0], N, ranks, sizeof ranks[0], NULL,
                              weft_deadline_in(60000)));
  int per[3] = {0};
  for (int i = 0; i < N; i++) {
    ASSERT_TRUE(ranks[i] == 1 || ranks[i] == 2);
    per[ranks[i]]++;
  }
  fprintf(stderr, "slow_rank_gets_less: rank 1 (slow) %d items, rank 2 %d\n", per[1], per[2]);
  ASSERT_GT(per[1], 0);
  ASSERT_GT(per[2], 2 * per[1]);
  weft_executor_destroy(ex);
}

TEST(submit_futures) {
  weft_executor *ex = make(0);
  enum { N = 200 };
  int in[N];
  weft_future *f[N];
  for (int i = 0; i < N; i++) {
    in[i] = i;
    ASSERT_OK(weft_executor_submit(ex, square_rank, &in[i], sizeof in[i], &f[i]));
  }
  ASSERT_OK(weft_future_wait_all(f, N, weft_deadline_in(60000)));
  for (int i = 0; i < N; i++) {
    const void *d;
    size_t n;
    ASSERT_OK(weft_future_result(f[i], &d, &n));
    ASSERT_EQ(n, sizeof(sq_out));
    ASSERT_EQ(((const sq_out *)d)->sq, (long)i * i);
    weft_future_release(f[i]);
  }
  /* Fire and forget still runs (shutdown waits for it). */
  ASSERT_OK(weft_executor_submit(ex, square_rank, &in[3], sizeof in[3], NULL));
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(30000)));
  ASSERT_RC(weft_executor_submit(ex, square_rank, &in[3], sizeof in[3], NULL), WEFT_ESHUTDOWN);
  weft_executor_stats st;
  ASSERT_OK(weft_executor_stats_get(ex, &st));
  ASSERT_EQ(st.completed, N + 1);
  weft_executor_destroy(ex);
}

TEST(unordered_map) {
  weft_executor *ex = make(1);
  /* Item 0 naps 600 ms, the rest 1 ms: in completion order item 0 cannot
   * come first, since the other rank finishes many in that time. */
  enum { N = 40 };
  int in[N];
  for (int i = 0; i < N; i++) in[i] = i == 0 ? 600 : 1;
  weft_imap *it = NULL;
  ASSERT_OK(weft_executor_imap_unordered(ex, nap, in, sizeof in[0], N, &it));
  weft_item item;
  int seen[N] = {0}, got = 0;
  size_t first = N;
  while (weft_imap_next(it, weft_deadline_in(60000), &item) == 0) {
    ASSERT_LT(item.index, N);
    ASSERT_EQ(seen[item.index], 0);
    seen[item.index] = 1;
    ASSERT_EQ(item.error, 0);
    ASSERT_EQ(*(const int *)item.data, in[item.index]);
    if (got == 0) first = item.index;
    got++;
  }
  ASSERT_EQ(got, N);
  ASSERT_NE(first, 0);
  weft_imap_destroy(it);
  weft_executor_destroy(ex);
}

TEST(failing_tasks) {
  weft_executor *ex = make(3);
  enum { N = 30 };
  int in[N], out[N], errs[N];
  for (int i = 0; i < N; i++) in[i] = i;
  ASSERT_RC(weft_executor_map(ex, odd_fails, in, sizeof in[0], N, out, sizeof out[0], errs,
                              weft_deadline_in(60000)),
            WEFT_EINVAL);
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(errs[i], i % 2 ? WEFT_EINVAL : 0);
    if (i % 2 == 0) ASSERT_EQ(out[i], i);
  }
  /* The message travels too. */
  weft_imap *it = NULL;
  ASSERT_OK(weft_executor_imap(ex, odd_fails, in, sizeof in[0], 4, &it));
  weft_item item;
  int k = 0;
  while (weft_imap_next(it, weft_deadline_in(60000), &item) == 0) {
    if (k % 2) {
      ASSERT_EQ(item.error, WEFT_EINVAL);
      ASSERT_TRUE(item.errmsg && strstr(item.errmsg, "odd ") == item.errmsg);
    } else {
      ASSERT_EQ(item.error, 0);
    }
    k++;
  }
  ASSERT_EQ(k, 4);
  weft_imap_destroy(it);
  weft_future *f = NULL;
  ASSERT_OK(weft_executor_submit(ex, odd_fails, &in[7], sizeof in[7], &f));
  ASSERT_OK(weft_future_wait(f, weft_deadline_in(30000)));
  ASSERT_EQ(weft_future_error(f), WEFT_EINVAL);
  ASSERT_TRUE(strstr(weft_future_errmsg(f), "odd 7 on rank ") != NULL);
  weft_future_release(f);
  /* A function the worker ranks do not know fails its own task. */
  ASSERT_OK(weft_register("only_here", only_here));
  ASSERT_OK(weft_executor_submit(ex, only_here, NULL, 0, &f));
  ASSERT_OK(weft_future_wait(f, weft_deadline_in(30000)));
  ASSERT_EQ(weft_future_error(f), WEFT_ENOENT);
  ASSERT_TRUE(strstr(weft_future_errmsg(f), "\"only_here\" is not registered on rank") != NULL);
  weft_future_release(f);
  /* ...and the executor still works. */
  ASSERT_OK(weft_executor_map(ex, odd_fails, in, sizeof in[0], 1, out, sizeof out[0], NULL,
                              weft_deadline_in(30000)));
  weft_executor_destroy(ex);
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
  uint64_t x = 0x9E3779B97F4A7C15ull ^ seed;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = (unsigned char)x;
  }
}

static void check_flip(const unsigned char *in, const unsigned char *out, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((out[i] ^ in[n - 1 - i]) != 0xff) WT_FAIL("byte %zu differs", i);
}

TEST(large_payload) {
  weft_executor *ex = make(1);
  const size_t n = (size_t)16 << 20; /* 16 MiB each way */
  unsigned char *a = malloc(2 * n);
  ASSERT_TRUE(a != NULL);
  fill(a, 2 * n, 7);
  weft_future *f = NULL;
  ASSERT_OK(weft_executor_submit(ex, flip, a, n, &f));
  ASSERT_OK(weft_future_wait(f, weft_deadline_in(60000)));
  const void *d;
  size_t got;
  ASSERT_OK(weft_future_result(f, &d, &got));
  ASSERT_UEQ(got, n);
  check_flip(a, d, n);
  weft_future_release(f);
  /* Two 16 MiB items at once, one per rank. */
  weft_imap *it = NULL;
  ASSERT_OK(weft_executor_imap_unordered(ex, flip, a, n, 2, &it));
  weft_item item;
  int k = 0;
  while (weft_imap_next(it, weft_deadline_in(60000), &item) == 0) {
    ASSERT_EQ(item.error, 0);
    ASSERT_UEQ(item.size, n);
    check_flip(a + item.index * n, item.data, n);
    k++;
  }
  ASSERT_EQ(k, 2);
  weft_imap_destroy(it);
  /* An empty input and an empty result. */
  ASSERT_OK(weft_executor_submit(ex, flip, NULL, 0, &f));
  ASSERT_OK(weft_future_wait(f, weft_deadline_in(30000)));
  ASSERT_OK(weft_future_result(f, &d, &got));
  ASSERT_UEQ(got, 0);
  weft_future_release(f);
  weft_executor_destroy(ex);
  free(a);
}

TEST(cancel_and_shutdown) {
  weft_executor *ex = make(1);
  /* 2 ranks busy for 300 ms each; the queued ones are cancelled. */
  enum { N = 12 };
  int in[N];
  weft_future *f[N];
  for (int i = 0; i < N; i++) {
    in[i] = 300;
    ASSERT_OK(weft_executor_submit(ex, nap, &in[i], sizeof in[i], &f[i]));
  }
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL, weft_deadline_in(30000)));
  int done = 0, cancelled = 0;
  for (int i = 0; i < N; i++) {
    ASSERT_TRUE(weft_future_done(f[i]));
    int e = weft_future_error(f[i]);
    if (e == 0) done++;
    else if (e == WEFT_ECANCELED) cancelled++;
    else WT_FAIL("future %d: %s", i, weft_err_name(e));
    weft_future_release(f[i]);
  }
  ASSERT_EQ(done + cancelled, N);
  ASSERT_GT(cancelled, 0);
  weft_executor_destroy(ex);
}

/* Run with --mca orte_enable_recovery 1 and WEFT_MPI_DEAD_MS=3000. */
TEST(killed_rank) {
  weft_executor *ex = make(1);
  enum { N = 24 };
  int in[N];
  for (int i = 0; i < N; i++) in[i] = i == 5 ? -1 : 40;
  int64_t t0 = weft_now();
  weft_imap *it = NULL;
  ASSERT_OK(weft_executor_imap(ex, die_or_nap, in, sizeof in[0], N, &it));
  weft_item item;
  int ok = 0, crashed = 0, killer_failed = 0;
  while (weft_imap_next(it, weft_deadline_in(60000), &item) == 0) {
    if (item.error == 0) {
      ASSERT_EQ(*(const int *)item.data, 40);
      ok++;
      continue;
    }
    ASSERT_EQ(item.error, WEFT_ECRASHED);
    ASSERT_TRUE(item.errmsg != NULL);
    fprintf(stderr, "item %zu: %s\n", item.index, item.errmsg);
    ASSERT_TRUE(strstr(item.errmsg, "presumed dead") != NULL);
    ASSERT_TRUE(strstr(item.errmsg, "mpi rank ") == item.errmsg);
    crashed++;
    killer_failed |= item.index == 5;
  }
  weft_imap_destroy(it);
  int64_t took = weft_now() - t0;
  fprintf(stderr, "killed_rank: %d ok, %d crashed, %lld ms\n", ok, crashed, (long long)took);
  ASSERT_TRUE(killer_failed); /* the item that killed its rank fails itself */
  ASSERT_EQ(ok + crashed, N);
  ASSERT_LT(took, 30000);
  /* The rank left alive serves on, in this executor and the next. */
  weft_executor_stats st;
  ASSERT_OK(weft_executor_stats_get(ex, &st));
  ASSERT_EQ(st.size, 1);
  int v[4] = {1, 2, 3, 4}, r[4];
  ASSERT_OK(weft_executor_map(ex, nap, v, sizeof v[0], 4, r, sizeof r[0], NULL,
                              weft_deadline_in(30000)));
  weft_executor_destroy(ex);
  ex = make(0);
  ASSERT_OK(weft_executor_stats_get(ex, &st));
  ASSERT_EQ(st.size, 1);
  ASSERT_OK(weft_executor_map(ex, nap, v, sizeof v[0], 4, r, sizeof r[0], NULL,
                              weft_deadline_in(30000)));
  for (int i = 0; i < 4; i++) ASSERT_EQ(r[i], v[i]);
  weft_executor_destroy(ex);
}

/* int in: this rank's host name out. */
static int where(const void *in, size_t size, weft_out *out) {
  (void)in;
  (void)size;
  char host[64] = {0};
  gethostname(host, sizeof host - 1);
  return weft_out_set(out, host, sizeof host);
}
WEFT_REGISTER(where);

/* Run by netns.sh: rank 0 on h1, ranks 1 and 2 on h2 and h3, TCP only. */
TEST(across_hosts) {
  char self[64] = {0};
  gethostname(self, sizeof self - 1);
  ASSERT_STREQ(self, "h1");
  ordered_map(0);
  weft_executor *ex = make(1);
  enum { N = 64 };
  int in[N];
  char hosts[N][64];
  for (int i = 0; i < N; i++) in[i] = i;
  ASSERT_OK(weft_executor_map(ex, where, in, sizeof in[0], N, hosts, sizeof hosts[0], NULL,
                              weft_deadline_in(60000)));
  int h2 = 0, h3 = 0;
  for (int i = 0; i < N; i++) {
    if (!strcmp(hosts[i], "h2")) h2++;
    else if (!strcmp(hosts[i], "h3")) h3++;
    else WT_FAIL("item %d ran on '%s'", i, hosts[i]);
  }
  fprintf(stderr, "across_hosts: %d items on h2, %d on h3\n", h2, h3);
  ASSERT_GT(h2, 0);
  ASSERT_GT(h3, 0);
  /* 4 MiB each way over the veth links, byte-exact. */
  const size_t n = (size_t)4 << 20;
  unsigned char *a = malloc(n);
  ASSERT_TRUE(a != NULL);
  fill(a, n, 3);
  weft_future *f = NULL;
  ASSERT_OK(weft_executor_submit(ex, flip, a, n, &f));
  ASSERT_OK(weft_future_wait(f, weft_deadline_in(60000)));
  const void *d;
  size_t got;
  ASSERT_OK(weft_future_result(f, &d, &got));
  ASSERT_UEQ(got, n);
  check_flip(a, d, n);
  weft_future_release(f);
  free(a);
  weft_executor_destroy(ex);
}

/* Run without mpirun and without weft_mpi_init. */
static void not_initialised(void) {
  weft_executor *ex = (weft_executor *)1;
  /* The kind exists from weft_mpi_init on (libweft_mpi adds it). */
  ASSERT_RC(weft_executor_create(&ex, "mpi", NULL), WEFT_ENOENT);
  ASSERT_TRUE(ex == NULL);
  for (const char *const *k = weft_executor_kinds(); *k; k++) ASSERT_TRUE(strcmp(*k, "mpi") != 0);
  ASSERT_RC(weft_mpi_rank(), WEFT_EINVAL);
  ASSERT_RC(weft_mpi_size(), WEFT_EINVAL);
  ASSERT_OK(weft_mpi_finalize());
}

/* Run without mpirun: MPI starts as a job of one rank (a "singleton"). */
TEST(singleton) {
  ASSERT_EQ(weft_mpi_rank(), 0);
  ASSERT_EQ(weft_mpi_size(), 1);
  weft_executor *ex = NULL;
  ASSERT_RC(weft_executor_create(&ex, "mpi", NULL), WEFT_EAGAIN);
  ASSERT_OK(weft_mpi_init(NULL, NULL)); /* again: a no-op */
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "not_initialised")) {
    not_initialised();
    fprintf(stderr, "ok not_initialised\n");
    return 0;
  }
  int rc = weft_mpi_init(&argc, &argv);
  if (rc != 0) {
    fprintf(stderr, "weft_mpi_init: %s\n", weft_strerror(rc));
    return 1;
  }
  rc = wt_main(argc, argv);
  int frc = weft_mpi_finalize();
  if (frc != 0) {
    fprintf(stderr, "weft_mpi_finalize: %s\n", weft_strerror(frc));
    return 1;
  }
  ASSERT_RC(weft_mpi_init(&argc, &argv), WEFT_EINVAL); /* MPI starts once */
  /* mpirun in recovery mode exits 0 whatever rank 0 did: run.sh reads the
   * verdict from this file instead (killed_rank). */
  const char *vf = getenv("WEFT_MPI_VERDICT_FILE");
  if (rc == 0 && vf && *vf) {
    FILE *f = fopen(vf, "w");
    if (!f || fputs("passed", f) < 0 || fclose(f) != 0) WT_FAIL("cannot write %s", vf);
  }
  return rc;
}
