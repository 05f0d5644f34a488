"""03-io-processes: one multiprocessing.Process per URL (requests)."""
import multiprocessing

import common

requests = common.need("requests")


def fetch(url, sizes, i):
    response = requests.get(url, timeout=common.TIMEOUT)
    response.raise_for_status()
    sizes[i] = len(response.content)


if __name__ == "__main__":
    args = common.setup()
    # Shared memory, one slot per URL: a child that failed leaves its 0 there.
    sizes = multiprocessing.Array("q", len(args.urls))
    procs = [multiprocessing.Process(target=fetch, args=(url, sizes, i))
             for i, url in enumerate(args.urls)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    common.finish(args, fetches=zip(args.urls, sizes[:]))
