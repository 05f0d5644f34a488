"""18-io+io_blocking-async+process_pool: async fetch (httpx), then a blocking
fetch of the same URL (requests) in a ProcessPoolExecutor."""
import asyncio
from concurrent.futures import ProcessPoolExecutor

import common

httpx = common.need("httpx")
requests = common.need("requests")


def fetch_blocking(url):
    response = requests.get(url, timeout=common.TIMEOUT)
    response.raise_for_status()
    return url, len(response.content)


async def task(client, pool, url):
    response = await client.get(url)
    response.raise_for_status()
    loop = asyncio.get_running_loop()
    blocking = await loop.run_in_executor(pool, fetch_blocking, url)
    return (url, len(response.content)), blocking


async def main(urls, pool):
    async with httpx.AsyncClient(timeout=common.TIMEOUT) as client:
        return await asyncio.gather(*(task(client, pool, url) for url in urls))


if __name__ == "__main__":
    args = common.setup()
    workers = common.process_pool_size()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = asyncio.run(main(args.urls, pool))
    common.finish(args, fetches=[f for pair in results for f in pair],
                  workers=workers)
