"""How fast ``read_params`` reads a large MXNet ``.params`` file (a benchmark, not a test).

Issue 12 asks for under 2 s for 100 MB. The file is written with ``write_params`` (what
``mx.nd.save`` writes, byte for byte) and shaped like a real checkpoint: a few hundred conv,
BatchNorm and dense arrays. The first read after writing finds the file in the page cache, as a
second import of the same checkpoint would; ``--cold`` asks the kernel to drop it first (needs
root) for a read from disk. MXNet's own ``mx.nd.load`` is timed beside it when MXNet is installed.

    python -m netparity.compare.bench_params [--megabytes 100] [--repeats 5] [--cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..backends.mxnet.importer import read_params, write_params


def checkpoint_arrays(megabytes: float, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 arrays totalling ``megabytes``: blocks of a 3x3 conv and its BatchNorm (weights,
    gamma, beta and running statistics under arg:/aux: names), then one dense layer for the rest."""
    rng = np.random.default_rng(seed)
    budget = int(megabytes * 1e6) // 4
    arrays: dict[str, np.ndarray] = {}
    block = 0
    channels = 256
    while budget > channels * channels * 9 + 4 * channels + 1_000_000:
        arrays[f"arg:conv{block}_weight"] = rng.standard_normal((channels, channels, 3, 3), np.float32)
        for name in ("gamma", "beta"):
            arrays[f"arg:bn{block}_{name}"] = rng.standard_normal(channels, np.float32)
        for name in ("moving_mean", "moving_var"):
            arrays[f"aux:bn{block}_{name}"] = rng.standard_normal(channels, np.float32)
        budget -= channels * channels * 9 + 4 * channels
        block += 1
    arrays["arg:fc_weight"] = rng.standard_normal((budget // 1000, 1000), np.float32)
    return arrays


def _drop_page_cache(path: Path) -> bool:
    """Evict ``path`` from the page cache (os.posix_fadvise DONTNEED); True if the kernel was asked."""
    try:
        with open(path, "rb") as stream:
            os.fsync(stream.fileno())
            os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except (AttributeError, OSError):
        return False


def _time(function, repeats: int, before=None) -> list[float]:
    times = []
    for _ in range(repeats):
        if before:
            before()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="evict the file from the page cache before each read")
    args = parser.parse_args(argv)

    arrays = checkpoint_arrays(args.megabytes)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench-0000.params"
        write_params(path, arrays)
        size = path.stat().st_size
        before = (lambda: _drop_page_cache(path)) if args.cold else None
        ours = _time(lambda: read_params(path), args.repeats, before)
        read = read_params(path)
        assert all(np.array_equal(read[k], v) for k, v in arrays.items())
        load = os.getloadavg()[0]
        print(f"file: {size / 1e6:.1f} MB, {len(arrays)} arrays; {'cold' if args.cold else 'page cache warm'}; "
              f"load average {load:.2f}; {os.cpu_count()} cores")
        print(f"read_params: median {statistics.median(ours):.3f} s, best {min(ours):.3f} s over {args.repeats} "
              f"reads ({size / 1e6 / statistics.median(ours):.0f} MB/s)")
        try:
            from ..backends.frameworks import import_mxnet

            mx = import_mxnet()
        except ImportError:
            print("mx.nd.load: MXNet is not installed")
            return
        theirs = _time(lambda: {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}, args.repeats, before)
        print(f"mx.nd.load + asnumpy: median {statistics.median(theirs):.3f} s, best {min(theirs):.3f} s")


if __name__ == "__main__":
    main()
