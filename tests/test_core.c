/* Core: error table, clock and deadlines, CPU count (affinity and cgroup
 * quotas, on fake cgroup trees), the replaceable allocator. */
#include "internal.h"
#include "wt.h"

#include <errno.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TEST(strerror_names_every_code) {
#define CHECK_CODE(name, value, msg)                                           \
  ASSERT_STREQ(weft_strerror(WEFT_E##name), msg);                              \
  ASSERT_STREQ(weft_err_name(WEFT_E##name), "WEFT_E" #name);                   \
  ASSERT_LT(WEFT_E##name, 0);
  WEFT_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE
  ASSERT_STREQ(weft_strerror(0), "success");
  ASSERT_STREQ(weft_err_name(0), "WEFT_OK");
  ASSERT_STREQ(weft_err_name(-4999), "WEFT_UNKNOWN");
  ASSERT_STREQ(weft_strerror(-4999), "unknown error");
  /* errno-valued codes agree with strerror for errnos outside the table */
  ASSERT_STREQ(weft_strerror(-EHOSTUNREACH), strerror(EHOSTUNREACH));
  ASSERT_EQ(WEFT_ETIMEDOUT, -ETIMEDOUT);
  ASSERT_STREQ(weft_version(), WEFT_VERSION_STRING);
}

TEST(clock_is_monotonic_and_positive) {
  int64_t a = weft_now();
  ASSERT_GT(a, 0);
  uint64_t n1 = weft_now_ns();
  for (int i = 0; i < 1000; i++) {
    int64_t b = weft_now();
    ASSERT_GE(b, a);
    a = b;
  }
  ASSERT_GE(weft_now_ns(), n1);
}

TEST(deadline_in_rounds_up_and_saturates) {
  ASSERT_EQ(weft_deadline_in(-1), WEFT_FOREVER);
  ASSERT_EQ(weft_deadline_in(-50), WEFT_FOREVER);
  int64_t now = weft_now();
  int64_t d = weft_deadline_in(10);
  ASSERT_GE(d, now + 10);
  ASSERT_LE(d, weft_now() + 11);
  ASSERT_EQ(weft_deadline_in(INT64_MAX), INT64_MAX);
  ASSERT_TRUE(weft__deadline_passed(0));
  ASSERT_TRUE(!weft__deadline_passed(WEFT_FOREVER));
  ASSERT_TRUE(!weft__deadline_passed(weft_deadline_in(10000)));
}

TEST(timed_wait_never_ends_early) {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv;
  ASSERT_OK(weft__cond_init(&cv));
  pthread_mutex_lock(&mu);
  uint64_t t0 = weft_now_ns();
  int64_t deadline = weft_deadline_in(30);
  int rc;
  while ((rc = weft__cond_wait(&cv, &mu, deadline)) == 0) {
  }
  uint64_t waited_ms = (weft_now_ns() - t0) / 1000000u;
  pthread_mutex_unlock(&mu);
  ASSERT_RC(rc, WEFT_ETIMEDOUT);
  ASSERT_GE(waited_ms, 30);
  ASSERT_TRUE(weft__deadline_passed(deadline));
  pthread_cond_destroy(&cv);
}

TEST(cpu_count_follows_affinity) {
  int all = weft_cpu_count();
  ASSERT_GE(all, 1);
  ASSERT_LE(all, (int)sysconf(_SC_NPROCESSORS_ONLN));
  ASSERT_EQ(weft_io_workers(), all + 4 < 32 ? all + 4 : 32);
  /* As under `taskset -c <first cpu>`: in a child pinned to one CPU. */
  pid_t pid = fork();
  ASSERT_TRUE(pid >= 0);
  if (pid == 0) {
    cpu_set_t set, one;
    CPU_ZERO(&one);
    if (sched_getaffinity(0, sizeof set, &set) != 0) _exit(10);
    for (int c = 0; c < CPU_SETSIZE; c++)
      if (CPU_ISSET(c, &set)) {
        CPU_SET(c, &one);
        break;
      }
    if (sched_setaffinity(0, sizeof one, &one) != 0) _exit(11);
    _exit(weft_cpu_count() == 1 && weft_io_workers() == 5 ? 0 : 12);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) WT_FAIL("cannot write %s: %s", path, strerror(errno));
  fputs(text, f);
  fclose(f);
}

static void mkdirs(const char *path) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      mkdir(buf, 0755);
      *p = '/';
    }
  }
  mkdir(buf, 0755);
}

static char *fake_root(void) {
  static char dir[256];
  snprintf(dir, sizeof dir, "/tmp/weft-cg-%d", (int)getpid());
  mkdirs(dir);
  return dir;
}

TEST(cgroup_v2_quota_lowest_along_path) {
  char *root = fake_root();
  char p[512], proc[512];
  snprintf(proc, sizeof proc, "%s/proc-cgroup", root);
  write_file(proc, "0::/app/job\n");
  snprintf(p, sizeof p, "%s/app/job", root);
  mkdirs(p);
  /* no cpu.max anywhere: no limit */
  ASSERT_EQ(weft__cgroup_cpu_limit(proc, root), 0);
  snprintf(p, sizeof p, "%s/app/job/cpu.max", root);
  write_file(p, "max 100000\n");
  ASSERT_EQ(weft__cgroup_cpu_limit(proc, root), 0);
  write_file(p, "150000 100000\n"); /* 1.5 CPUs -> 2 */
  ASSERT_EQ(weft__cgroup_cpu_limit(proc, root), 2);
  snprintf(p, sizeof p, "%s/app/cpu.max", root);
  write_file(p, "50000 100000\n"); /* the parent's half CPU bounds the child */
  ASSERT_EQ(weft__cgroup_cpu_limit(proc, root), 1);
  write_file(p, "800000 100000\n");
  ASSERT_EQ(weft__cgroup_cpu_limit(proc, root), 2);
  /* the root level's file counts too */
  write_file(proc, "0::/\n");
  snprintf(p, sizeof p, "%s/cpu.max", root);
  write_file(p, "300000 100000\n");
  ASSERT_EQ(weft__cgroup_cpu_limit(proc, root), 3);
  /* a missing /proc file means no limit */
  ASSERT_EQ(weft__cgroup_cpu_limit("/nonexistent/cgroup", root), 0);
}

TEST(cgroup_v1_quota) {
  char *root = fake_root();
  char p[512], proc[512];
  snprintf(proc, sizeof proc, "%s/proc-cgroup-v1", root);
  write_file(proc, "5:memory:/x\n4:cpu,cpuacct:/docker/abc\n3:cpuset:/\n");
  snprintf(p, sizeof p, "%s/cpu,cpuacct/docker/abc", root);
  mkdirs(p);
  snprintf(p, sizeof p, "%s/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", root);
  write_file(p, "-1\n");
  snprintf(p, sizeof p, "%s/cpu,cpuacct/docker/abc/cpu.cfs_period_us", root);
  write_file(p, "100000\n");
  ASSERT_EQ(weft__cgroup_cpu_limit(proc, root), 0);
  snprintf(p, sizeof p, "%s/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", root);
  write_file(p, "250000\n");
  ASSERT_EQ(weft__cgroup_cpu_limit(proc, root), 3);
}

/* ---- allocator: counting, and failing after N allocations ---- */

static atomic_long g_allocs, g_live;
static atomic_long g_fail_after = -1;

static void *count_malloc(size_t n) {
  long k = atomic_fetch_add(&g_allocs, 1);
  long lim = atomic_load(&g_fail_after);
  if (lim >= 0 && k >= lim) return NULL;
  void *p = malloc(n);
  if (p) atomic_fetch_add(&g_live, 1);
  return p;
}
static void *count_realloc(void *p, size_t n) { return realloc(p, n); }
static void count_free(void *p) {
  if (p) atomic_fetch_sub(&g_live, 1);
  free(p);
}

static int square(const void *in, size_t size, weft_out *out) {
  (void)size;
  long v = *(const long *)in;
  long r = v * v;
  return weft_out_set(out, &r, sizeof r);
}

TEST(allocator_replaced_and_restored) {
  ASSERT_OK(weft_set_allocator(count_malloc, count_realloc, count_free));
  weft_future *f;
  ASSERT_OK(weft_future_create(&f));
  ASSERT_EQ(atomic_load(&g_allocs), 1);
  ASSERT_EQ(atomic_load(&g_live), 1);
  weft_future_release(f);
  /* the block is recycled, not freed: the next future reuses it */
  ASSERT_OK(weft_future_create(&f));
  ASSERT_EQ(atomic_load(&g_allocs), 1);
  weft_future_release(f);
  ASSERT_EQ(atomic_load(&g_live), 1);
  /* switching allocators gives recycled blocks back to the one they came from */
  ASSERT_OK(weft_set_allocator(NULL, NULL, NULL));
  ASSERT_EQ(atomic_load(&g_live), 0);
}

/* Every allocation weft makes on these paths fails in turn: each call must
 * return an error (or succeed), never crash, and leave nothing allocated. */
TEST(allocation_failures_are_errors) {
  static const char *kinds[] = {"inline", "thread", "thread_pool"};
  long items[64];
  for (int i = 0; i < 64; i++) items[i] = i;
  for (int k = 0; k < 3; k++) {
    int succeeded = 0;
    for (long n = 0; n < 200 && !succeeded; n++) {
      atomic_store(&g_allocs, 0);
      atomic_store(&g_live, 0);
      atomic_store(&g_fail_after, n);
      ASSERT_OK(weft_set_allocator(count_malloc, count_realloc, count_free));
      weft_executor *ex = NULL;
      weft_executor_opts o = {.workers = 2, .chunksize = 4};
      int rc = weft_executor_create(&ex, kinds[k], &o);
      if (rc == 0) {
        weft_future *f = NULL;
        long in = 7, res[64];
        int rs = weft_executor_submit(ex, square, &in, sizeof in, &f);
        if (rs == 0) {
          ASSERT_OK(weft_future_wait(f, WEFT_FOREVER));
          int e = weft_future_error(f);
          ASSERT_TRUE(e == 0 || e == WEFT_ENOMEM);
          weft_future_release(f);
        } else {
          ASSERT_RC(rs, WEFT_ENOMEM);
          ASSERT_TRUE(f == NULL);
        }
        int rm = weft_executor_map(ex, square, items, sizeof(long), 64, res, sizeof(long), NULL,
                                   WEFT_FOREVER);
        if (rm == 0) {
          for (int i = 0; i < 64; i++) ASSERT_EQ(res[i], (long)i * i);
          succeeded = rs == 0;
        } else {
          ASSERT_TRUE(rm == WEFT_ENOMEM || rm == WEFT_EAGAIN);
        }
        weft_executor_destroy(ex);
      } else {
        ASSERT_TRUE(rc == WEFT_ENOMEM || rc == WEFT_EAGAIN);
        ASSERT_TRUE(ex == NULL);
      }
      ASSERT_OK(weft_set_allocator(NULL, NULL, NULL));
      if (atomic_load(&g_live) != 0)
        WT_FAIL("%s: %ld allocations leaked with failure after %ld", kinds[k],
                atomic_load(&g_live), n);
    }
    ASSERT_TRUE(succeeded);
  }
  atomic_store(&g_fail_after, -1);
}
