/*
 * weft serve — the study's ten-sites HTTP server on its own
 * (shared/spec/study-workload.md): GET /site/0 ... /site/9 wait that site's
 * latency x scale, then send its body; anything else is 404.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static weft_loop *g_loop;

static void on_signal(int sig) {
  (void)sig;
  if (g_loop) weft_loop_stop(g_loop); /* async-signal-safe: an atomic store and an eventfd write */
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: weft serve [--host H] [--port P] [--scale X]\n"
          "  Serves the study's ten sites until interrupted (SIGINT/SIGTERM).\n"
          "  --host H    address to bind (default 127.0.0.1)\n"
          "  --port P    port (default 8000; 0 = any free port)\n"
          "  --scale X   latency scale, > 0 (default 1.0; 0.1 for quick runs)\n"
          "Prints \"serving http://HOST:PORT/site/0..9 scale X\" on stdout once listening.\n");
}

int weft_cli_serve(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 8000;
  double scale = 1.0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--host") && v) {
      host = argv[++i];
    } else if (!strcmp(a, "--port") && v) {
      if (weft_cli_parse_int(argv[++i], 0, 65535, &port) != 0) {
        fprintf(stderr, "weft serve: --port wants 0..65535, not '%s'\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--scale") && v) {
      if (weft_cli_parse_double(argv[++i], &scale) != 0 || !(scale > 0)) {
        fprintf(stderr, "weft serve: --scale wants a number > 0, not '%s'\n", argv[i]);
        return 2;
      }
    } else {
      fprintf(stderr, "weft serve: unknown or incomplete option '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (weft_loop_create(&g_loop, NULL) != 0) {
    fprintf(stderr, "weft serve: cannot create the event loop\n");
    return 1;
  }
  weft_http_server_opts o = {.host = host, .port = port};
  weft_http_server *srv;
  int rc = weft_http_server_start(&srv, g_loop, &o, weft_sites_handler, &scale);
  if (rc != 0) {
    fprintf(stderr, "weft serve: cannot listen on %s:%d: %s\n", host, port, weft_strerror(rc));
    weft_loop_destroy(g_loop);
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  printf("serving http://%s:%d/site/0..9 scale %g\n", host, weft_http_server_port(srv), scale);
  fflush(stdout);
  weft_loop_run(g_loop);
  weft_http_server_stop(srv);
  weft_loop_destroy(g_loop);
  return 0;
}
