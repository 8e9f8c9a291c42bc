"""The program of the cross-worker stream (bench/workloads/xstream.py): standard library only.

    python -I -S producer.py MODE TOTAL CHUNK SEED

writes TOTAL bytes to stdout, in chunks of CHUNK bytes: chunk ``i`` is its
index (8 bytes, big-endian) followed by a block of pseudo-random bytes drawn
from SEED, so a lost, repeated or reordered chunk changes the sha256.
MODE ``credit``: one chunk per line read from stdin (a credit from the
reader: the producer never runs ahead of it by more than the credits it
was given); ``free``: one line starts it, then it writes everything at
full speed.  End of stdin stops it early.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator


def chunks(total: int, size: int, seed: int) -> Iterator[bytes]:
    block = random.Random(seed).randbytes(size)
    index = sent = 0
    while sent < total:
        length = min(size, total - sent)
        yield (index.to_bytes(8, "big") + block[8:])[:length]
        index += 1
        sent += length


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def main(argv: list[str]) -> int:
    mode, total, size, seed = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    stdin = sys.stdin.buffer
    if mode == "free" and not stdin.readline():
        return 1
    for data in chunks(total, size, seed):
        if mode == "credit" and not stdin.readline():
            return 1
        _write_all(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
