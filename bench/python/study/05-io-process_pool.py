"""05-io-process_pool: the 30 fetches on a ProcessPoolExecutor (requests)."""
from concurrent.futures import ProcessPoolExecutor

import common

requests = common.need("requests")


def fetch(url):
    response = requests.get(url, timeout=common.TIMEOUT)
    response.raise_for_status()
    return url, len(response.content)


if __name__ == "__main__":
    args = common.setup()
    workers = common.process_pool_size()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(fetch, args.urls))
    common.finish(args, fetches=results, workers=workers)
