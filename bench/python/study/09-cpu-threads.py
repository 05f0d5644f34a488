"""09-cpu-threads: one threading.Thread per number (the GIL runs one at a time)."""
import threading

import common
from common import fib


def work(n, results):
    results.append((n, fib(n)))  # list.append is atomic


if __name__ == "__main__":
    args = common.setup()
    results = []
    threads = [threading.Thread(target=work, args=(n, results))
               for n in args.numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    common.finish(args, fibs=results)  # a thread that raised left no result
