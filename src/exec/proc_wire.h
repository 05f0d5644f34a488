/*
 * proc_wire.h — what the process backends (exec/process.c) and the fork
 * server with its workers (exec/proc_zygote.c) say to each other.
 *
 * Session socket (SOCK_SEQPACKET, one per executor, parent <-> fork server):
 * fixed-size zmsg records. The parent asks SPAWN (arg = its slot number),
 * KILL (pid, arg = signal) and KILLALL; the server answers SPAWNED (pid, or
 * -errno, arg echoed; the worker's socket rides along with SCM_RIGHTS),
 * EXIT (pid, arg = waitpid status) for every worker of the session that it
 * reaped, and BYE once a KILLALL has left no worker alive.
 *
 * Worker socket (SOCK_STREAM, parent <-> one worker): the parent sends a
 * job as a req header, the function's name and count x item_size bytes of
 * items; the worker answers each item in order with a rsp header, the
 * failure message and the result bytes. Native byte order: same machine.
 *
 * Large payloads (SHM_MIN bytes or more) skip the socket. A job's items go
 * in one of the slot's two input regions (req.region: 0 or 1), memfds the
 * parent creates, maps and reuses for every job of that worker (a new,
 * larger one when needed: its fd rides on the req with SCM_RIGHTS,
 * shm_size > 0). Two, so that the next job of a map can be written and
 * sent while the worker still reads the current one; a region is written
 * again only after every item of the job in it has been answered.
 *
 * A large result goes in one of the worker's two output regions
 * (rsp.region), memfds the worker creates (fd on the rsp, shm_size > 0 =
 * the whole region) and reuses: an out_ctl header, then the result at
 * OUT_HDR. Two, so that a worker with a job queued behind (pipelining) can
 * write the next result while the parent copies the last one. A task
 * writes its result in a free region directly (no copy in the worker). A
 * region is free when the parent has acked every result written in it:
 * the worker counts those, the parent counts its acks in out_ctl.acked
 * once it has copied a result out (a futex wake only if the worker sleeps
 * on it). So an ack costs no message and wakes nobody who does not wait,
 * and a req can be queued behind a running job without ordering trouble.
 * (A parent that cannot map a region's head cannot ack: it has the worker
 * killed. A worker waiting for an ack gives up when its socket closes.)
 * Regions are reused so their pages are faulted in once.
 *
 * An fd rides on the first bytes of its req or rsp. Both sides read ahead
 * through a buffer, so a read may bring the next message's fd before the
 * current message is parsed: fds are queued in arrival order, and each
 * message that announces one (shm_size > 0) takes the oldest.
 */
#ifndef WEFT_PROC_WIRE_H
#define WEFT_PROC_WIRE_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
  Z_SPAWN = 1,
  Z_KILL,
  Z_KILLALL,
  Z_SPAWNED,
  Z_EXIT,
  Z_BYE,
  Z_SESSION, /* on the server's main socket: a new session socket rides along */
};

struct zmsg {
  int32_t type;
  int32_t pid;
  int32_t arg;
  int32_t pad;
};

/* Followed by the name, then (init_name_len > 0: the worker's first job
 * only) the initializer's name and init_arg_size bytes of its argument,
 * then the items. */
struct req {
  uint32_t name_len;
  uint32_t init_name_len;
  uint64_t init_arg_size;
  uint64_t item_size;
  uint64_t count;
  uint64_t max_result; /* a bigger result fails its item with WEFT_ETOOBIG */
  uint32_t flags;      /* WIRE_SHM: the items are in input region `region` */
  uint32_t region;     /* 0 or 1 */
  uint64_t shm_size;   /* > 0: a new input region `region` of this size rides along */
};

struct rsp {
  int32_t code;
  uint32_t msg_len;
  uint64_t size;
  uint32_t flags;    /* WIRE_SHM: the result is in output region `region` */
  uint32_t region;   /* 0 or 1 */
  uint64_t shm_size; /* > 0: a new output region of this size (header included) rides along */
};

/* The head of an output region, shared by the worker and the parent. */
struct out_ctl {
  _Atomic uint32_t acked;   /* parent: results of this region copied out */
  _Atomic uint32_t waiting; /* worker: asleep on `acked` (futex) */
};

enum { WIRE_SHM = 1 };
#define SHM_MIN ((size_t)64 << 10)
#define SHM_FIRST ((size_t)1 << 20) /* smallest region (data bytes) */
#define OUT_HDR ((size_t)64)          /* output region: out_ctl, then the result */

/* Settings of a process executor beyond weft_executor_opts' common fields
 * (all 0 = defaults), set with weft__process_configure before its first
 * submit. Meant to become fields of weft_executor_opts. */
typedef struct weft__process_opts {
  int64_t task_timeout_ms;  /* per item; 0 = none */
  size_t max_payload;       /* per item, in and out; 0 = 1 GiB */
  weft_fn initializer;      /* registered; runs once per worker before its first task */
  const void *init_arg;     /* copied */
  size_t init_arg_size;
  int max_tasks_per_worker; /* items; 0 = never recycle */
} weft__process_opts;

/* Once per executor, before its first submit. Returns 0, WEFT_EINVAL (not
 * a process executor, a negative value), WEFT_ENOENT (initializer not
 * registered), WEFT_ETOOBIG (init_arg above max_payload), WEFT_EBUSY
 * (called before), WEFT_ENOMEM. */
int weft__process_configure(weft_executor *ex, const weft__process_opts *o);

/* Opens a new session with the fork server (starting it if needed): *fd
 * receives the parent's end (close-on-exec). 0, WEFT_EAGAIN, WEFT_ENOMEM. */
int weft__zygote_session(int *fd);

/* Sends every byte of iov[0..niov) on a stream socket (blocking; the iov is
 * consumed); passfd >= 0 rides along with SCM_RIGHTS. 0 or -1 (errno). */
struct iovec;
int weft__send_iov(int fd, struct iovec *iov, int niov, int passfd);
/* One recvmsg (EINTR retried) into buf; a passed fd goes to *passed if that
 * is < 0, any other is closed. Returns the bytes read, 0 at EOF, or -1 with
 * errno (EAGAIN with MSG_DONTWAIT in flags). */
ssize_t weft__recv_fd(int sock, void *buf, size_t len, int flags, int *passed);

/* Sends / receives one zmsg, with an optional fd (-1 for none). send: 0 or a
 * negative errno. recv: 1, 0 at EOF, or a negative errno (never blocks when
 * the socket has nothing if dontwait). */
int weft__zmsg_send(int sock, const struct zmsg *m, int fd);
int weft__zmsg_recv(int sock, struct zmsg *m, int *fd, int dontwait);

#endif /* WEFT_PROC_WIRE_H */
