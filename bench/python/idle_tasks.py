"""Resident memory per idle asyncio task, for bench/async (weft's async benchmark).

Usage: idle_tasks.py N — creates N tasks that each wait on one asyncio.Event,
lets them all start and block, and prints "asyncio N BYTES_PER_TASK" (the
growth of resident memory, from /proc/self/statm, divided by N). Then sets the
event and checks that every task finished.
"""
import asyncio
import os
import sys


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def waiter(ev, done):
    await ev.wait()
    done.append(1)


async def main(n):
    ev = asyncio.Event()
    done = []
    before = rss()
    tasks = [asyncio.create_task(waiter(ev, done)) for _ in range(n)]
    await asyncio.sleep(0)  # every task runs up to its await
    after = rss()
    ev.set()
    await asyncio.gather(*tasks)
    if len(done) != n:
        print(f"asyncio: only {len(done)} of {n} tasks finished", file=sys.stderr)
        sys.exit(1)
    print(f"asyncio {n} {(after - before) / n:.0f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100000))
