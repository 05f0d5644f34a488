"""10-cpu-processes: one multiprocessing.Process per number."""
import multiprocessing

import common
from common import fib


def work(n, values, i):
    values[i] = fib(n)


if __name__ == "__main__":
    args = common.setup()
    # Shared memory, one slot per number: a child that failed leaves its 0 there.
    values = multiprocessing.Array("q", len(args.numbers))
    procs = [multiprocessing.Process(target=work, args=(n, values, i))
             for i, n in enumerate(args.numbers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    common.finish(args, fibs=zip(args.numbers, values[:]))
