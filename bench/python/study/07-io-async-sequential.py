"""07-io-async-sequential: one event loop, each fetch awaited before the next (httpx)."""
import asyncio

import common

httpx = common.need("httpx")


async def fetch(client, url):
    response = await client.get(url)
    response.raise_for_status()
    return url, len(response.content)


async def main(urls):
    async with httpx.AsyncClient(timeout=common.TIMEOUT) as client:
        return [await fetch(client, url) for url in urls]


if __name__ == "__main__":
    args = common.setup()
    results = asyncio.run(main(args.urls))
    common.finish(args, fetches=results)
