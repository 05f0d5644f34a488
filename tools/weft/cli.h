/* cli.h — what the subcommands of the `weft` tool share. */
#ifndef WEFT_CLI_H
#define WEFT_CLI_H
#include <weft.h>

/* Subcommands: argv[0] is the subcommand's name. Return the exit status
 * (0 ok, 1 failure, 2 usage error). */
int weft_cli_serve(int argc, char **argv);
int weft_cli_bench(int argc, char **argv);
int weft_cli_time(int argc, char **argv);
int weft_cli_fetch(int argc, char **argv);

/* bench_server.c: the ten-sites server of `weft bench` in a child process.
 * start: forks it (call while single-threaded) on 127.0.0.1:port (0 = any
 * free port) with the latency scale; returns the port, or a negative code
 * (-EADDRINUSE ...). died: 1 if it has exited (reaped). stop: SIGTERM, then
 * SIGKILL after 5 s, and reap. signal: async-signal-safe SIGTERM to it. */
int weft_cli_server_start(double scale, int port);
int weft_cli_server_died(void);
void weft_cli_server_stop(void);
void weft_cli_server_signal(void);

/* Strict number parsing: the whole string, in range. 0 or -1. */
int weft_cli_parse_int(const char *s, int lo, int hi, int *out);
int weft_cli_parse_double(const char *s, double *out);

#endif
