"""16-io+io_blocking-async: 20 tasks, each an async fetch (httpx) then a
blocking fetch of the same URL (requests) right on the loop."""
import asyncio

import common

httpx = common.need("httpx")
requests = common.need("requests")


def fetch_blocking(url):
    response = requests.get(url, timeout=common.TIMEOUT)
    response.raise_for_status()
    return url, len(response.content)


async def task(client, url):
    response = await client.get(url)
    response.raise_for_status()
    blocking = fetch_blocking(url)  # blocks the loop: every other task waits
    return (url, len(response.content)), blocking


async def main(urls):
    async with httpx.AsyncClient(timeout=common.TIMEOUT) as client:
        return await asyncio.gather(*(task(client, url) for url in urls))


if __name__ == "__main__":
    args = common.setup()
    results = asyncio.run(main(args.urls))
    common.finish(args, fetches=[f for pair in results for f in pair])
