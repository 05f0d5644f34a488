"""04-io-thread_pool: the 30 fetches on a ThreadPoolExecutor (requests)."""
from concurrent.futures import ThreadPoolExecutor

import common

requests = common.need("requests")


def fetch(url):
    response = requests.get(url, timeout=common.TIMEOUT)
    response.raise_for_status()
    return url, len(response.content)


if __name__ == "__main__":
    args = common.setup()
    workers = common.thread_pool_size()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(fetch, args.urls))
    common.finish(args, fetches=results, workers=workers)
