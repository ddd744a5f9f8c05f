"""Run the benchmarks: `python -m bench` runs all, `python -m bench exchange collector` some.

Each benchmark is a module `bench/bench_<name>.py` with a `main()` that prints its figures and
returns them as a Markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(here)])
                   if m.name.startswith("bench_"))
    chosen = argv or names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}")
        return 2
    for name in chosen:
        print(f"== bench {name}")
        importlib.import_module(f"bench.bench_{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
