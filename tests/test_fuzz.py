"""Hostile input: thousands of random and mutated frames on one real connection.

Each Hypothesis example sends a few frames (JSON-RPC with wrong types, deep
nesting, huge numbers, unicode edge cases, mutated and truncated text, batches
of junk, binary garbage, fragmented messages, now and then an oversized one),
then a ``ping`` whose answer marks the end of the example.  An oracle written
from docs/protocol.md (not from the server's code) parses every text frame with
the server's parser (orjson) and says which answers must come:

* every request (a frame or batch element with a usable ``id``) gets exactly one
  well-formed answer with its id; invalid elements get one with ``id`` null;
* notifications get none, except ``write`` notifications and binary stdin frames
  whose bytes were refused (``id`` null);
* a batch gets one array, or nothing when it holds notifications only;
* the connection is never closed, except with 1009 after an oversized message
  (then a new connection goes on), and the worker is never replaced.

No harmful process can start: ``start``/``run`` argv is one of a few safe
commands, or an absolute path under a directory that does not exist; stopping
signals (which would make a ``wait`` hang) are never sent; a batch never waits
for a process it starts itself (a documented limitation).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import struct
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import websocket
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.errors import ErrorCode
from app.protocol.methods import METHODS
from tests.client import read_close
from tests.server import Server, children_of, pid_exists, wait_until

MAX_MESSAGE_BYTES = 65536
MAX_STDIN_CHUNK = 16384
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4000"))  # about 30 s; more for a deeper search
ANSWER_TIMEOUT = 20.0  # the longest any answer may take (safe processes exit in milliseconds)

KNOWN_CODES = {int(code) for code in ErrorCode}
CLOSE_TOO_BIG = 1009

pytestmark = pytest.mark.timeout(120 + EXAMPLES // 40)


# -- what may run ----------------------------------------------------------------------------

SAFE_ARGVS: list[list[str]] = [["echo", "fuzz"], ["echo"], ["true"], ["sleep", "0.01"], ["cat"]]
MISSING = "/nonexistent-procwire-fuzz/"  # argv[0] under it never resolves: -32001
STOP_SIGNALS = {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}


def is_safe_argv(argv: list[str], params: dict[str, Any], method: str) -> bool:
    if argv[0].startswith(MISSING) or argv[0] == "":
        return True
    if argv[0] in ("echo", "true"):
        return True
    if argv == ["sleep", "0.01"]:
        return True
    if argv == ["cat"]:  # cat ends when its stdin is closed: at once in run, /dev/null in start
        return method == "run" or (params.get("stdin") == "null" and params.get("pty") is None)
    return False


def is_stop_signal(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value in STOP_SIGNALS
    if isinstance(value, str):
        name = value.upper()
        return (name if name.startswith("SIG") else "SIG" + name) in {sig.name for sig in STOP_SIGNALS}
    return False


def unsafe(document: Any, newest_proc: int) -> str | None:
    """Why a parsed frame must not be sent, or None.  Conservative: anything that could
    be a start of a program outside the safe list, a stopping signal, or a batch that
    waits for a process it starts itself (never answered: docs, Known limitations)."""
    items = document if isinstance(document, list) else [document]
    starts_here = False
    waits_on_new = False
    for item in items:
        if not isinstance(item, dict):
            continue
        method, params = item.get("method"), item.get("params")
        if not isinstance(params, dict):
            continue
        argv = params.get("argv")
        if method in ("start", "run") and isinstance(argv, list) and argv and isinstance(argv[0], str):
            if not is_safe_argv([a if isinstance(a, str) else "" for a in argv], params, method):
                return f"argv {argv!r}"
            starts_here = starts_here or method == "start"
        if method in ("signal", "stop") and is_stop_signal(params.get("signal")):
            return f"signal {params.get('signal')!r}"
        proc = params.get("proc")
        if method in ("wait", "stop") and isinstance(proc, int) and not isinstance(proc, bool) and proc > newest_proc:
            waits_on_new = True
    if isinstance(document, list) and starts_here and waits_on_new:
        return "a batch that waits for its own start"
    return None


# -- the oracle: which answers a frame must get (docs/protocol.md, section 3) ---------------------


@dataclass
class Expected:
    ids: Counter[bytes] = field(default_factory=Counter)  # non-null ids, canonical JSON
    null_required: int = 0
    null_optional: int = 0  # refused writes
    array_required: int = 0
    array_optional: int = 0

    def add(self, other: Expected) -> None:
        self.ids.update(other.ids)
        self.null_required += other.null_required
        self.null_optional += other.null_optional
        self.array_required += other.array_required
        self.array_optional += other.array_optional


def key(request_id: Any) -> bytes:
    return orjson.dumps(request_id)


def expect_item(item: Any, into: Expected) -> None:
    """One request object (alone or in a batch)."""
    if not isinstance(item, dict):
        into.null_required += 1
        return
    has_id = "id" in item
    request_id = item.get("id")
    if has_id and request_id is not None:
        if isinstance(request_id, bool) or not isinstance(request_id, str | int | float):
            into.null_required += 1
            return
        if isinstance(request_id, float) and abs(request_id) >= 2**53:
            into.null_required += 1
            return
    answer_id = request_id if has_id else None
    well_formed = (
        item.get("jsonrpc") == "2.0"
        and isinstance(item.get("method"), str)
        and not set(item) - {"jsonrpc", "id", "method", "params"}
    )
    if not well_formed or has_id:  # invalid requests are answered even without an id
        if answer_id is None:
            into.null_required += 1
        else:
            into.ids[key(answer_id)] += 1
        return
    if item["method"] == "write" and isinstance(item.get("params", {}), dict):
        into.null_optional += 1  # a write notification whose bytes are refused is answered


def expect_text(text: str) -> Expected:
    expected = Expected()
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        expected.null_required += 1
        return expected
    if isinstance(document, list) and document:
        for item in document:
            expect_item(item, expected)
        # One array holds the answers of all the elements; none when no element is answered.
        if +expected.ids or expected.null_required:
            expected.array_required += 1
        elif expected.null_optional:
            expected.array_optional += 1
        return expected
    if isinstance(document, list):  # an empty batch: one plain error
        expected.null_required += 1
        return expected
    expect_item(document, expected)
    return expected


def expect_binary(frame: bytes) -> Expected:
    expected = Expected()
    if len(frame) < 5 or frame[0] != 0:
        expected.null_required += 1
    else:
        expected.null_optional += 1  # refused stdin (unknown process, exited, too large...)
    return expected


# -- frames ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text inserted as it is (numbers no Python value can hold, escaped surrogates)."""

    text: str


@dataclass(frozen=True)
class Recent:
    """The proc id of the n-th most recent process, resolved when the frame is sent."""

    back: int


def resolve(value: Recent, recent: list[int]) -> int:
    return recent[-1 - value.back] if len(recent) > value.back else 1 + value.back


def dumps(value: Any, ascii_only: bool, recent: list[int]) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Recent):
        return str(resolve(value, recent))
    if isinstance(value, str):
        # A lone surrogate cannot travel as UTF-8: it goes out escaped, as \ud800 in the text.
        surrogate = any(0xD800 <= ord(char) <= 0xDFFF for char in value)
        return json.dumps(value, ensure_ascii=ascii_only or surrogate)
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{dumps(k, ascii_only, recent)}:{dumps(v, ascii_only, recent)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(dumps(item, ascii_only, recent) for item in value) + "]"
    return json.dumps(value)


def weighted(*choices: tuple[st.SearchStrategy[Any], int]) -> st.SearchStrategy[Any]:
    """One of the strategies, picked in proportion to its weight (``one_of`` favours the first)."""
    return st.sampled_from([strategy for strategy, weight in choices for _ in range(weight)]).flatmap(lambda s: s)


EDGE_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u05e9\u05dc\u05d5\u05dd",  # RTL mark, Hebrew
    "\U0001f600",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family: joined emoji
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "e\u0301",
    "\u2028\u2029\u0085",
    "x" * 300,
]
LONE_SURROGATES = ["\ud800", "\udfff", "\ud83d", "a\udc00b"]  # sent escaped (\ud800): a parse error
texts = weighted(
    (st.sampled_from(EDGE_TEXT), 4),
    (st.text(max_size=12), 4),
    (st.text(st.characters(codec="utf-8"), max_size=4), 1),
    (st.sampled_from(LONE_SURROGATES), 1),
)
os_texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
HUGE_NUMBERS = [
    "1e400",
    "-1e400",
    "123456789012345678901234567890",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "9007199254740993",
    "1.5e-320",
    "-0",
    "-0.0",
    "1E2",
    "0.1e-999",
]
numbers = weighted(
    (st.integers(-(2**70), 2**70), 2),
    (st.floats(allow_nan=False, allow_infinity=False), 2),
    (st.sampled_from(HUGE_NUMBERS).map(Raw), 1),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=8
)
deep = st.builds(
    lambda depth, opener: Raw(opener[0] * depth + "1" + opener[1] * depth),
    st.integers(1, 3000),
    st.sampled_from([("[", "]"), ('{"a":', "}")]),
)
wild = weighted((json_values, 5), (deep, 1))

# Params: mostly well-typed values (so that methods really run), some odd ones, some anything at all.
recent_procs = st.builds(Recent, st.integers(0, 6))
safe_argv = weighted(
    (st.sampled_from(SAFE_ARGVS), 6),
    (st.lists(os_texts, max_size=3).map(lambda rest: ["echo", *rest]), 2),
    (st.lists(texts, max_size=3).map(lambda rest: [MISSING + "x", *rest]), 1),
    (st.just([""]), 1),
)
SAFE_SIGNALS = [
    "TERM",
    "SIGTERM",
    "term",
    "kill",
    "SIGKILL",
    "hup",
    "usr1",
    "SIGRTMIN",
    "int",
    "CHLD",
    "cont",
    1,
    9,
    15,
]
VALID: dict[str, st.SearchStrategy[Any]] = {
    "proc": recent_procs,
    "argv": safe_argv,
    "env": st.dictionaries(st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,7}\Z"), st.one_of(os_texts, st.none()), max_size=3),
    "clear_env": st.booleans(),
    "cwd": st.sampled_from(["/", "/tmp", None]),
    "stdin": st.sampled_from(["pipe", "null"]),
    "stderr": st.sampled_from(["pipe", "stdout", "null"]),
    "timeout": st.one_of(st.floats(0.001, 5), st.none()),
    "encoding": st.sampled_from(["text", "base64"]),
    "binary": st.booleans(),
    "pty": st.one_of(st.none(), st.fixed_dictionaries({"rows": st.integers(1, 100), "cols": st.integers(1, 300)})),
    "on_disconnect": st.sampled_from(["kill", "keep"]),
    "buffer": st.one_of(st.integers(0, 2**20), st.none()),
    "name": st.one_of(texts, st.none()),
    "input": texts,
    "input_encoding": st.sampled_from(["text", "base64"]),
    "max_output": st.integers(0, 2**20),
    "data": st.one_of(texts, st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())),
    "signal": st.sampled_from(SAFE_SIGNALS),
    "group": st.booleans(),
    "grace": st.one_of(st.floats(0, 1), st.none()),
    "rows": st.integers(1, 500),
    "cols": st.integers(1, 500),
    "offset": st.one_of(st.integers(0, 100), st.fixed_dictionaries({"stdout": st.integers(0, 99)}), st.none()),
    "pid": st.integers(1, 2**22),
    "file": st.sampled_from(["sh", "true", "/bin/ls", "/etc/passwd", "..", "nosuch", "./x", "/"]),
}
ODD: dict[str, st.SearchStrategy[Any]] = {
    "proc": st.one_of(st.integers(-3, 2**64), numbers),
    "argv": st.one_of(st.just([]), st.lists(wild, max_size=3)),
    "cwd": st.sampled_from(["", "/nonexistent", "/etc/passwd", "rel", "/tmp\x00x"]),
    "stdin": st.sampled_from(["PIPE", "", "stdout"]),
    "stderr": st.sampled_from(["stderr", "", "tty"]),
    "timeout": st.sampled_from([0, -1, 1e9 + 1, 2**63, Raw("1e400")]),
    "grace": st.sampled_from([-1, 1e9 + 1, 2**63, Raw("-0.0")]),
    "encoding": st.sampled_from(["utf-8", "", "BASE64"]),
    "on_disconnect": st.sampled_from(["detach", ""]),
    "buffer": st.sampled_from([-1, 2**40, 1.5]),
    "max_output": st.sampled_from([-1, 2**41, 1.0]),
    "data": st.sampled_from(["@@", "aGk", "=", "\x00"]),
    "signal": st.one_of(st.sampled_from(["SIGFOO", "SIGRTMIN+1", "", "0", 0, 32, 65, -1, 2**31, 15.0]), texts),
    "rows": st.sampled_from([0, -1, 10_001, 2**40]),
    "cols": st.sampled_from([0, -1, 10_001, 2**40]),
    "offset": st.sampled_from([-1, {"stdin": 1}, {"stdout": -1}, [0]]),
    "pid": st.sampled_from([0, -1, 1.0, 2**64]),
    "file": st.sampled_from(["", "a\x00b"]),
    "env": st.sampled_from([{"": "x"}, {"A=B": "x"}, {"X": 5}, {"X": "a\x00"}, []]),
    "pty": st.sampled_from([{"rows": 0, "cols": 1}, {"rows": 1}, [24, 80], {"rows": 1, "cols": 1, "x": 1}]),
}
METHOD_NAMES = sorted(METHODS)
METHOD_KEYS: dict[str, list[str]] = {name: list(METHODS[name].params.model_fields) for name in METHOD_NAMES}


@st.composite
def params_for(draw: st.DrawFn, method: str) -> Any:
    if draw(st.integers(0, 19)) == 7:
        return draw(wild)  # params that are not an object at all
    keys = METHOD_KEYS.get(method, [])
    params: dict[Any, Any] = {}
    if method in ("start", "run") and draw(st.integers(0, 9)) != 7:
        params["argv"] = draw(VALID["argv"])
    for name in draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys))) if keys else []:
        params[name] = draw(weighted((VALID.get(name, wild), 12), (ODD.get(name, wild), 1), (wild, 1)))
    if draw(st.integers(0, 19)) == 7:
        params[draw(texts)] = draw(wild)  # a param no method declares
    return make_safe(method, params, draw)


def make_safe(method: str, params: dict[Any, Any], draw: st.DrawFn) -> dict[Any, Any]:
    argv = params.get("argv")
    if method in ("start", "run") and isinstance(argv, list) and argv and isinstance(argv[0], str):
        strings = [item if isinstance(item, str) else "" for item in argv]
        if not is_safe_argv(strings, params, method):
            params["argv"] = draw(st.sampled_from(SAFE_ARGVS[:4]))
    if is_stop_signal(params.get("signal")):
        params["signal"] = "TERM"
    return params


ids = weighted(
    (st.integers(0, 10**6), 6),
    (st.integers(-(2**63), 2**64 - 1), 1),
    (texts, 2),
    (st.none(), 1),
    (st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15), 1),
    (
        st.sampled_from(
            [True, False, [], {}, [1], {"a": 1}, 2.0**53, Raw("1e300"), Raw("123456789012345678901234567890")]
        ),
        1,
    ),
)


@st.composite
def requests(draw: st.DrawFn, notification: bool = False) -> dict[str, Any]:
    method = draw(weighted((st.sampled_from(METHOD_NAMES), 12), (st.sampled_from(["start", "run"]), 4), (texts, 1)))
    request: dict[str, Any] = {"jsonrpc": "2.0"}
    if not notification:
        request["id"] = draw(ids)
    request["method"] = method
    if draw(st.integers(0, 5)) != 3:
        request["params"] = draw(params_for(method))
    shape = draw(st.sampled_from(["good"] * 16 + ["jsonrpc", "method", "member", "no-jsonrpc"]))
    if shape == "jsonrpc":
        request["jsonrpc"] = draw(st.sampled_from(["1.0", "2", 2.0, None, "2.0 "]))
    elif shape == "method":
        request["method"] = draw(wild)
    elif shape == "member":
        request[draw(st.sampled_from(["extra", "ID", "result", "error"]))] = draw(scalars)
    elif shape == "no-jsonrpc":
        del request["jsonrpc"]
    return request


Mutation = tuple[int, float, str, int]  # operation, where (a fraction of the length), text, count

mutations = st.lists(
    st.tuples(
        st.integers(0, 4),
        st.floats(0, 1),
        st.one_of(st.sampled_from([*'{}[]",:\\0e-. x', "\\ud800", "\\u0000", "null"]), texts),
        st.integers(1, 20),
    ),
    min_size=1,
    max_size=4,
)


def mutate(text: str, operations: list[Mutation]) -> str:
    """Cut, insert, delete, replace and duplicate characters of a JSON text."""
    for operation, fraction, insert, count in operations:
        where = int(fraction * len(text))
        if operation == 0:
            text = text[:where]
        elif operation == 1:
            text = text[:where] + insert + text[where:]
        elif operation == 2:
            text = text[:where] + text[where + count :]
        elif operation == 3:
            text = text[:where] + insert[:1] + text[where + 1 :]
        else:
            text = text[: where + count] + text[where : where + count] + text[where + count :]
    return "".join(char for char in text if not 0xD800 <= ord(char) <= 0xDFFF)  # text frames are UTF-8


@dataclass(frozen=True)
class Frame:
    """One message to send, with every choice drawn in advance: a strategy must not
    depend on what the server answered, or Hypothesis cannot replay it."""

    kind: str  # "text", "binary", "fragments" (a text message sent in pieces)
    value: Any = None
    ascii_only: bool = False
    mutations: list[Mutation] | None = None
    cuts: list[float] = field(default_factory=list)  # where fragments end, as fractions
    pings: list[bool] = field(default_factory=list)  # a Ping after each fragment?


TRUNCATED_UTF8 = [b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3", b"\xff\xfe", b"\xed\xa0\x80", b"ok\xe2"]
binary_frames = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=4),
    st.tuples(
        st.sampled_from([0, 0, 0, 1, 2, 123, 255]),
        st.one_of(st.builds(Recent, st.integers(0, 6)), st.integers(0, 2**32 - 1)),
        st.one_of(st.sampled_from(TRUNCATED_UTF8), st.binary(max_size=64), st.just(b"y" * (MAX_STDIN_CHUNK + 1))),
    ),
)
junk_texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["", " ", "null", "42", '"x"', "[]", "[[]]", "{}", "NaN", "Infinity", "[1,2", '{"a":1}}', "\ufeff{}"]
    ),
    st.sampled_from(HUGE_NUMBERS),
    deep.map(lambda raw: raw.text),
)
elements = weighted((requests(), 4), (requests(notification=True), 2), (wild, 1))
text_values = weighted(
    (requests(), 8),
    (requests(notification=True), 2),
    (st.lists(elements, max_size=10), 3),
    (wild, 1),
    (junk_texts.map(Raw), 1),
)
frames = weighted(
    (st.builds(Frame, st.just("text"), text_values, st.booleans()), 10),
    (
        st.builds(
            Frame,
            st.just("text"),
            weighted((requests(), 3), (st.lists(elements, max_size=5), 1)),
            st.booleans(),
            mutations,
        ),
        3,
    ),
    (st.builds(Frame, st.just("binary"), binary_frames), 3),
    (
        st.builds(
            Frame,
            st.just("fragments"),
            weighted((requests(), 3), (st.lists(elements, max_size=3), 1)),
            st.booleans(),
            st.none(),
            st.lists(st.floats(0, 1), min_size=1, max_size=3),
            st.lists(st.booleans(), min_size=4, max_size=4),
        ),
        2,
    ),
)


# -- the connection under fuzz --------------------------------------------------------------------


class Fuzzer:
    """One connection, kept across examples; the answers it still waits for."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.worker = server.worker_pids()[0]
        self.recent: deque[int] = deque(maxlen=8)
        self.newest_proc = 0
        self.sent = 0
        self.answers = 0
        self.too_big = 0
        self.skipped = 0
        self.outcomes: Counter[Any] = Counter()
        self.history: deque[str] = deque(maxlen=6)
        self.ws = self._connect()
        self._reset()

    def _connect(self) -> websocket.WebSocket:
        ws = websocket.create_connection(
            f"{self.server.url}?token={self.server.token}", timeout=ANSWER_TIMEOUT, skip_utf8_validation=True
        )
        hello = orjson.loads(ws.recv())
        assert hello["method"] == "hello"
        assert hello["params"]["limits"]["max_message_bytes"] == MAX_MESSAGE_BYTES
        return ws

    def _reset(self) -> None:
        self.expected = Expected()
        self.null_seen = 0
        self.array_seen = 0

    # -- sending --

    def send(self, frame: Frame) -> None:
        recent = list(self.recent)
        if frame.kind == "binary":
            value = frame.value
            if isinstance(value, tuple):
                stream, proc, payload = value
                proc = resolve(proc, recent) if isinstance(proc, Recent) else proc
                value = struct.pack("!BI", stream, proc) + payload
            self.expected.add(expect_binary(value))
            self.ws.send_binary(value)
            self.history.append(f"BINARY {value[:40]!r}")
            self.sent += 1
            return
        text = dumps(frame.value, frame.ascii_only, recent)
        if frame.mutations is not None:
            candidate = mutate(text, frame.mutations)
            if self._unsafe(candidate) is None:
                text = candidate
        encoded = text.encode()
        if self._unsafe(text) is not None or len(encoded) > MAX_MESSAGE_BYTES:
            # A batch that would wait for its own start, or a value that happened to be too big
            # (oversized messages are sent on purpose, at the end of an example).
            self.skipped += 1
            return
        self.expected.add(expect_text(text))
        self.history.append(text[:300])
        if frame.kind == "fragments" and len(encoded) > 1:
            # Cut in bytes: a character may straddle two fragments; only the whole message must be UTF-8.
            cuts = sorted({min(len(encoded) - 1, max(1, int(cut * len(encoded)))) for cut in frame.cuts})
            pieces = [encoded[a:b] for a, b in zip([0, *cuts], [*cuts, len(encoded)], strict=True)]
            for index, piece in enumerate(pieces):
                opcode = websocket.ABNF.OPCODE_TEXT if index == 0 else websocket.ABNF.OPCODE_CONT
                fin = 1 if index == len(pieces) - 1 else 0
                self.ws.send_frame(websocket.ABNF.create_frame(piece, opcode, fin))
                if frame.pings[index]:
                    self.ws.ping(b"between fragments")  # control frames may come between pieces
        else:
            self.ws.send(text)
        self.sent += 1

    def _unsafe(self, text: str) -> str | None:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        return unsafe(document, self.newest_proc)

    # -- receiving --

    def sync(self) -> None:
        """A ping after the frames: wait for its answer and for every answer still owed."""
        sentinel = f"sync-{self.sent}"
        self.ws.send(orjson.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "ping"}).decode())
        self.expected.ids[key(sentinel)] += 1
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while (
            +self.expected.ids
            or self.null_seen < self.expected.null_required
            or self.array_seen < self.expected.array_required
        ):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"answers still owed: {self._owed()}; last frames: {list(self.history)}"
            self.ws.settimeout(remaining)
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                raise AssertionError(f"answers still owed: {self._owed()}; last frames: {list(self.history)}") from None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                raise AssertionError(
                    f"the server closed the connection ({code} {data[2:]!r}) after {list(self.history)}"
                )
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self.receive(orjson.loads(data))
        assert self.null_seen <= self.expected.null_required + self.expected.null_optional, (
            f"{self.null_seen} answers with id null, at most {self.expected.null_required} + "
            f"{self.expected.null_optional} expected; last frames: {list(self.history)}"
        )
        assert self.array_seen <= self.expected.array_required + self.expected.array_optional, (
            f"{self.array_seen} batch answers, at most {self.expected.array_required} + {self.expected.array_optional}"
        )

    def _owed(self) -> str:
        return (
            f"ids {dict(+self.expected.ids)}, id null {self.expected.null_required - self.null_seen}, "
            f"arrays {self.expected.array_required - self.array_seen}"
        )

    def receive(self, message: Any) -> None:
        if isinstance(message, list):
            assert message, "an empty batch answer"
            self.array_seen += 1
            for answer in message:
                self.answer(answer)
            return
        assert isinstance(message, dict), message
        if "method" in message:  # output, exit: note the proc ids
            assert set(message) == {"jsonrpc", "method", "params"}, message
            proc = message["params"].get("proc")
            if isinstance(proc, int):
                self.saw_proc(proc)
            return
        self.answer(message)

    def answer(self, answer: Any) -> None:
        assert isinstance(answer, dict), answer
        assert answer.get("jsonrpc") == "2.0", answer
        assert set(answer) in ({"jsonrpc", "id", "result"}, {"jsonrpc", "id", "error"}), answer
        if "error" in answer:
            error = answer["error"]
            assert isinstance(error, dict) and set(error) <= {"code", "message", "data"}, answer
            assert type(error["code"]) is int and error["code"] in KNOWN_CODES, answer
            assert isinstance(error["message"], str) and error["message"], answer
            assert isinstance(error.get("data", {}), dict), answer
            assert error["code"] != ErrorCode.INTERNAL_ERROR, f"an internal error: {answer}; last: {list(self.history)}"
        else:
            result = answer["result"]
            if isinstance(result, dict) and isinstance(result.get("proc"), int):
                self.saw_proc(result["proc"])
        self.answers += 1
        self.outcomes[answer["error"]["code"] if "error" in answer else "result"] += 1
        if answer["id"] is None:
            self.null_seen += 1
            return
        owed = key(answer["id"])
        assert self.expected.ids[owed] > 0, f"an answer nobody asked for (or a second one): {answer}"
        self.expected.ids[owed] -= 1

    def saw_proc(self, proc: int) -> None:
        if proc not in self.recent:
            self.recent.append(proc)
        self.newest_proc = max(self.newest_proc, proc)

    # -- oversized messages: the one legitimate close --

    def send_oversized(self, kind: str, size: int) -> None:
        self.sync()  # nothing owed, so nothing is lost with the connection
        if kind == "text":
            self.ws.send("[" + " " * size + "]")
        elif kind == "binary":
            self.ws.send_binary(b"\x00\x00\x00\x00\x01" + b"y" * size)
        else:
            half = "x" * (size // 2 + 1)
            self.ws.send_frame(websocket.ABNF.create_frame(half, websocket.ABNF.OPCODE_TEXT, 0))
            self.ws.send_frame(websocket.ABNF.create_frame(half, websocket.ABNF.OPCODE_CONT, 1))
        code, reason = read_close(self.ws, ANSWER_TIMEOUT)
        assert (code, reason) == (CLOSE_TOO_BIG, "Message is too big"), (code, reason)
        self.ws.shutdown()
        self.too_big += 1
        self.ws = self._connect()
        self._reset()

    def check_worker(self) -> None:
        assert self.server.worker_pids() == [self.worker], "the worker was replaced"

    def close(self) -> None:
        self.ws.shutdown()


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[Server]:
    env = {
        "PROCWIRE_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        "PROCWIRE_MAX_STDIN_CHUNK": str(MAX_STDIN_CHUNK),
        "PROCWIRE_KILL_GRACE": "0.5",
        "PROCWIRE_DRAIN_TIMEOUT": "0.5",
        "PROCWIRE_MAX_EXITED_PER_CLIENT": "32",
    }
    running = Server(env=env).start()
    try:
        yield running
    finally:
        running.stop()


# About one example in twenty ends with an oversized message (then a new connection).
oversized = weighted(
    (st.none(), 19),
    (
        st.tuples(
            st.sampled_from(["text", "binary", "fragments"]), st.integers(MAX_MESSAGE_BYTES + 1, 2 * MAX_MESSAGE_BYTES)
        ),
        1,
    ),
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: the server keeps state between examples
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
@given(batch=st.lists(frames, min_size=1, max_size=4), too_big=oversized)
def fuzz_one_example(fuzzer: Fuzzer, batch: list[Frame], too_big: tuple[str, int] | None) -> None:
    for frame in batch:
        fuzzer.send(frame)
    fuzzer.sync()
    if too_big is not None:
        fuzzer.send_oversized(*too_big)
    fuzzer.check_worker()


def test_hostile_frames_get_well_formed_answers_and_never_kill_the_connection(fuzz_server: Server) -> None:
    fuzzer = Fuzzer(fuzz_server)
    try:
        fuzz_one_example(fuzzer)
        fuzzer.sync()
        fuzzer.check_worker()
        assert fuzzer.sent >= EXAMPLES, (fuzzer.sent, fuzzer.skipped)
        assert fuzzer.too_big > 0, "no oversized message was sent"
        print(
            f"fuzz: {fuzzer.sent} frames, {fuzzer.answers} answers {dict(fuzzer.outcomes)}, "
            f"{fuzzer.too_big} oversized, {fuzzer.skipped} skipped, newest proc {fuzzer.newest_proc}"
        )
        check_a_normal_request(fuzzer.ws)
        pids = kill_everything(fuzzer.ws)
    finally:
        fuzzer.close()
    worker = fuzzer.worker
    assert wait_until(lambda: children_of(worker) == [], ANSWER_TIMEOUT), children_of(worker)
    assert not [pid for pid in pids if pid_exists(pid)]
    assert fuzz_server.worker_pids() == [worker]


def next_answer(ws: websocket.WebSocket, request_id: str) -> Any:
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while time.monotonic() < deadline:
        message = orjson.loads(ws.recv())
        if isinstance(message, dict) and message.get("id") == request_id:
            return message
    raise AssertionError(f"no answer to {request_id}")


def check_a_normal_request(ws: websocket.WebSocket) -> None:
    """``start echo ok``: its answer, its output, its exit."""
    ws.send(orjson.dumps({"jsonrpc": "2.0", "id": "normal", "method": "start", "params": {"argv": ["echo", "ok"]}}))
    proc = next_answer(ws, "normal")["result"]["proc"]
    output = b""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while time.monotonic() < deadline:
        message = orjson.loads(ws.recv())
        if not isinstance(message, dict) or message.get("params", {}).get("proc") != proc:
            continue
        if message["method"] == "output":
            output += message["params"]["data"].encode()
        elif message["method"] == "exit":
            assert (message["params"]["code"], output) == (0, b"ok\n")
            return
    raise AssertionError(f"no exit from the normal request (output {output!r})")


def kill_everything(ws: websocket.WebSocket) -> list[int]:
    """SIGKILL whatever the fuzz left running; every pid the token knows of."""
    ws.send(orjson.dumps({"jsonrpc": "2.0", "id": "list", "method": "list"}))
    processes = next_answer(ws, "list")["result"]["processes"]
    for info in processes:
        if info["state"] == "running":
            ws.send(
                orjson.dumps(
                    {"jsonrpc": "2.0", "id": f"kill-{info['proc']}", "method": "kill", "params": {"proc": info["proc"]}}
                )
            )
            next_answer(ws, f"kill-{info['proc']}")  # {} or -32005 if it exited meanwhile
    return [info["pid"] for info in processes]


def test_invalid_utf8_in_a_text_frame_closes_with_1007_and_the_worker_lives(fuzz_server: Server) -> None:
    """RFC 6455 section 8.1: a text frame must be UTF-8; the fuzz sends such bytes in binary frames only."""
    worker = fuzz_server.worker_pids()
    ws = websocket.create_connection(f"{fuzz_server.url}?token={fuzz_server.token}", timeout=10)
    try:
        ws.recv()
        ws.send_frame(websocket.ABNF.create_frame(b'{"x":"\xe2\x82"}', websocket.ABNF.OPCODE_TEXT))
        assert read_close(ws)[0] == 1007
    finally:
        ws.shutdown()
    assert fuzz_server.worker_pids() == worker


@pytest.mark.parametrize(
    ("frame", "ids", "null_required", "null_optional", "arrays"),
    [
        ('{"jsonrpc":"2.0","id":1,"method":"ping"}', {1: 1}, 0, 0, (0, 0)),
        ('{"jsonrpc":"2.0","id":null,"method":"ping"}', {}, 1, 0, (0, 0)),
        ('{"jsonrpc":"2.0","method":"ping"}', {}, 0, 0, (0, 0)),
        ('{"jsonrpc":"2.0","method":"ping","params":[1]}', {}, 0, 0, (0, 0)),
        ('{"jsonrpc":"2.0","method":5}', {}, 1, 0, (0, 0)),
        ('{"jsonrpc":"2.0","id":"a","method":"ping","x":1}', {"a": 1}, 0, 0, (0, 0)),
        ('{"jsonrpc":"1.0","id":2,"method":"ping"}', {2: 1}, 0, 0, (0, 0)),
        ('{"jsonrpc":"2.0","id":true,"method":"ping"}', {}, 1, 0, (0, 0)),
        ('{"jsonrpc":"2.0","id":1e300,"method":"ping"}', {}, 1, 0, (0, 0)),
        ('{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}', {}, 1, 0, (0, 0)),
        ('{"jsonrpc":"2.0","method":"write","params":{"proc":1,"data":"x"}}', {}, 0, 1, (0, 0)),
        ("[]", {}, 1, 0, (0, 0)),
        ("[1]", {}, 1, 0, (1, 0)),
        ('[{"jsonrpc":"2.0","method":"ping"}]', {}, 0, 0, (0, 0)),
        ('[{"jsonrpc":"2.0","method":"write","params":{}}]', {}, 0, 1, (0, 1)),
        ('[{"jsonrpc":"2.0","id":3,"method":"ping"},{"jsonrpc":"2.0","method":"ping"},4]', {3: 1}, 1, 0, (1, 0)),
        ("nonsense", {}, 1, 0, (0, 0)),
    ],
)
def test_the_oracle_follows_the_protocol_reference(
    frame: str, ids: dict[Any, int], null_required: int, null_optional: int, arrays: tuple[int, int]
) -> None:
    expected = expect_text(frame)
    assert +expected.ids == Counter({key(request_id): count for request_id, count in ids.items()})
    assert (expected.null_required, expected.null_optional) == (null_required, null_optional)
    assert (expected.array_required, expected.array_optional) == arrays
