"""11-cpu-thread_pool: fib over the NUMBERS on a ThreadPoolExecutor."""
from concurrent.futures import ThreadPoolExecutor

import common
from common import fib

if __name__ == "__main__":
    args = common.setup()
    workers = common.thread_pool_size()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(zip(args.numbers, pool.map(fib, args.numbers)))
    common.finish(args, fibs=results, workers=workers)
