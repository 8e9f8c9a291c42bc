"""``python -m app.recording.export RECORDINGS_DIR/<id>.rec [-o FILE]``: a recording in its
format (asciicast v2 or timed JSON lines) from its files, with no server running, as
``/api/recordings/<id>`` serves it: for an operator reading the directory of a host
whose server is down, or a copy of it."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import orjson

from app.recording.formats import render
from app.recording.journal import events, file_chunks
from app.recording.store import JOURNAL, META


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.recording.export", description=__doc__)
    parser.add_argument("journal", type=Path, help=f"a recording's journal: RECORDINGS_DIR/<id>{JOURNAL}")
    parser.add_argument("-o", "--output", type=Path, help="write it here rather than to stdout")
    args = parser.parse_args(argv)
    journal: Path = args.journal
    try:
        meta = orjson.loads(journal.with_suffix(META).read_bytes())
        lines = render(meta, events(file_chunks(str(journal))))
        with open(args.output, "wb") if args.output else contextlib.nullcontext(sys.stdout.buffer) as out:
            out.writelines(lines)
    except (OSError, ValueError) as error:
        print(f"cannot export {journal}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
