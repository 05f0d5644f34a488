"""01-io-sequential: fetch the 30 URLS one after another (requests)."""
import common

requests = common.need("requests")


def fetch(url):
    response = requests.get(url, timeout=common.TIMEOUT)
    response.raise_for_status()
    return url, len(response.content)


if __name__ == "__main__":
    args = common.setup()
    results = [fetch(url) for url in args.urls]
    common.finish(args, fetches=results)
