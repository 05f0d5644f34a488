"""02-io-threads: one threading.Thread per URL (requests)."""
import threading

import common

requests = common.need("requests")


def fetch(url, results):
    response = requests.get(url, timeout=common.TIMEOUT)
    response.raise_for_status()
    results.append((url, len(response.content)))  # list.append is atomic


if __name__ == "__main__":
    args = common.setup()
    results = []
    threads = [threading.Thread(target=fetch, args=(url, results))
               for url in args.urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    common.finish(args, fetches=results)  # a thread that raised left no result
