"""08-cpu-sequential: fib over the 21 NUMBERS one after another."""
import common
from common import fib

if __name__ == "__main__":
    args = common.setup()
    results = [(n, fib(n)) for n in args.numbers]
    common.finish(args, fibs=results)
