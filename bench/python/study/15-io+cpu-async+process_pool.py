"""15-io+cpu-async+process_pool: async fetch (httpx), then fib(32) in a ProcessPoolExecutor."""
import asyncio
from concurrent.futures import ProcessPoolExecutor

import common
from common import fib

httpx = common.need("httpx")


async def task(client, pool, url):
    response = await client.get(url)
    response.raise_for_status()
    value = await asyncio.get_running_loop().run_in_executor(pool, fib, 32)
    return (url, len(response.content)), (32, value)


async def main(urls, pool):
    async with httpx.AsyncClient(timeout=common.TIMEOUT) as client:
        return await asyncio.gather(*(task(client, pool, url) for url in urls))


if __name__ == "__main__":
    args = common.setup()
    workers = common.process_pool_size()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = asyncio.run(main(args.urls, pool))
    common.finish(args, fetches=[f for f, _ in results],
                  fibs=[v for _, v in results], workers=workers)
