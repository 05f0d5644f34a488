/*
 * bench_server.c — `weft bench`'s ten-sites server, in a child process
 * forked before the runner could start a thread. It dies with the runner
 * (PR_SET_PDEATHSIG) and stops on SIGTERM or SIGINT (the terminal's Ctrl-C
 * reaches it too).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t g_server;

void weft_cli_server_signal(void) {
  pid_t s = g_server;
  if (s > 0) kill(s, SIGTERM);
}

static weft_loop *g_srv_loop;

static void srv_on_signal(int sig) {
  (void)sig;
  if (g_srv_loop) weft_loop_stop(g_srv_loop);
}

static void server_child(int wfd, pid_t runner, double scale, int port) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = srv_on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (getppid() != runner) _exit(1);
  int msg;
  weft_http_server *srv = NULL;
  int rc = weft_loop_create(&g_srv_loop, NULL);
  if (rc == 0) {
    weft_http_server_opts o = {.host = "127.0.0.1", .port = port};
    rc = weft_http_server_start(&srv, g_srv_loop, &o, weft_sites_handler, &scale);
  }
  msg = rc != 0 ? rc : weft_http_server_port(srv);
  if (write(wfd, &msg, sizeof msg) != (ssize_t)sizeof msg) rc = -1;
  close(wfd);
  if (rc == 0) weft_loop_run(g_srv_loop);
  if (srv) weft_http_server_stop(srv);
  if (g_srv_loop) weft_loop_destroy(g_srv_loop);
  _exit(rc == 0 ? 0 : 1);
}

/* Starts the server; its port, or a negative code. */
int weft_cli_server_start(double scale, int port) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -errno;
  pid_t runner = getpid();
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    int e = -errno;
    close(p[0]);
    close(p[1]);
    return e;
  }
  if (pid == 0) {
    close(p[0]);
    server_child(p[1], runner, scale, port);
  }
  g_server = pid;
  close(p[1]);
  int msg = 0;
  struct pollfd pf = {p[0], POLLIN, 0};
  ssize_t got = -1;
  if (poll(&pf, 1, 10000) == 1) got = read(p[0], &msg, sizeof msg);
  close(p[0]);
  if (got != (ssize_t)sizeof msg) return WEFT_EIO;
  return msg;
}

/* 1 if the server has exited (it is then reaped). */
int weft_cli_server_died(void) {
  pid_t s = g_server;
  int ws;
  if (s <= 0 || waitpid(s, &ws, WNOHANG) != s) return 0;
  g_server = 0;
  return 1;
}

void weft_cli_server_stop(void) {
  pid_t s = g_server;
  if (s <= 0) return;
  kill(s, SIGTERM);
  int ws;
  /* Bounded: SIGKILL if it has not gone within 5 s. */
  for (int i = 0; i < 500; i++) {
    if (waitpid(s, &ws, WNOHANG) == s) {
      g_server = 0;
      return;
    }
    usleep(10000);
  }
  kill(s, SIGKILL);
  waitpid(s, &ws, 0);
  g_server = 0;
}
