"""12-cpu-process_pool: fib over the NUMBERS on a ProcessPoolExecutor."""
from concurrent.futures import ProcessPoolExecutor

import common
from common import fib

if __name__ == "__main__":
    args = common.setup()
    workers = common.process_pool_size()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(zip(args.numbers, pool.map(fib, args.numbers)))
    common.finish(args, fibs=results, workers=workers)
