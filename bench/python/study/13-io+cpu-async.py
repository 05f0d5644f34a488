"""13-io+cpu-async: 10 tasks, each an async fetch (httpx) then fib(32) on the loop."""
import asyncio

import common
from common import fib

httpx = common.need("httpx")


async def task(client, url):
    response = await client.get(url)
    response.raise_for_status()
    value = fib(32)  # runs on the loop: every other task waits meanwhile
    return (url, len(response.content)), (32, value)


async def main(urls):
    async with httpx.AsyncClient(timeout=common.TIMEOUT) as client:
        return await asyncio.gather(*(task(client, url) for url in urls))


if __name__ == "__main__":
    args = common.setup()
    results = asyncio.run(main(args.urls))
    common.finish(args, fetches=[f for f, _ in results],
                  fibs=[v for _, v in results])
