"""``procwire serve``: websocketd's command line, served by procwire's gunicorn.

``procwire serve [flags] COMMAND ARGS...`` serves one program at ``/`` and at
``/programs/NAME`` (websocketd's single-program form); ``--dir`` serves every
executable of a directory.  The flags keep websocketd's meaning; each one
becomes a ``PROCWIRE_*`` variable (docs/programs.md), on top of whatever the
file named by ``PROCWIRE_CONFIG`` and the environment already say, and
gunicorn is then exec'd with ``gunicorn.conf.py``, as ``make run`` does.

Runs before any server: it reads settings only, never the application.  A
token is never a flag (``ps`` would show it to every user of the machine):
the server takes ``PROCWIRE_TOKEN``, ``TOKEN`` in the TOML file, or makes
its development token and prints it once it listens.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.programs import PROGRAM_NAME, stop_sequence
from config.settings import CONFIG_FILE_VARIABLE, ENV_PREFIX, ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent  # the checkout: gunicorn.conf.py and wsgi.py
DEFAULT_ADDRESS = "127.0.0.1"  # websocketd listens on every interface; procwire on loopback unless told
DEFAULT_PORT = 9999

USAGE = """\
procwire serve: websocketd's command line, served by procwire (docs/programs.md)

Usage:

  Serve one program, at ws://HOST:PORT/ and ws://HOST:PORT/programs/NAME (NAME: its file name):
    procwire serve [options] COMMAND [command args]

  Or every executable of a directory, each at ws://HOST:PORT/programs/NAME:
    procwire serve [options] --dir=SOMEDIR

Options (websocketd's):
  --port=PORT              port to listen on (default 9999)
  --address=ADDRESS        interface to listen on (default 127.0.0.1, not every interface);
                           repeat it to listen on several
  --dir=DIR                serve every executable of DIR at /programs/NAME
  --staticdir=DIR          serve DIR's files at / (index.html) and /FILE, without a token
  --binary                 binary messages both ways, as bytes come (default: one text message a line)
  --passenv=VAR[,VAR...]   the server's variables programs see (default PATH,LD_LIBRARY_PATH)
  --maxforks=N             refuse (429) a connection when N programs run (per worker; 0: no limit)
  --closems=MS             wait MS longer before each signal after the client goes (INT, TERM, KILL)
  --sameorigin             accepted: procwire always refuses a browser from another site
  --origin=HOST[:PORT],... also accept browsers from these sites (http:// or https://)
  --loglevel=LEVEL         debug, trace, access, info, error or fatal
  --version, --help

procwire's own:
  --public                 programs need no token (websocketd's never do); otherwise every
                           connection needs the admin token: Authorization: Bearer TOKEN or ?token=TOKEN

The token is never a flag (ps would show it): PROCWIRE_TOKEN in the environment, TOKEN in the
TOML file named by PROCWIRE_CONFIG, or else the development token, printed once the server listens.
Any setting of that file or of PROCWIRE_* applies too; these flags win.  TLS: nginx in front
(docs/deploy.md).
"""

BOOLEAN_FLAGS = frozenset({"binary", "sameorigin", "public", "help", "h", "version"})
VALUE_FLAGS = frozenset({"port", "address", "dir", "staticdir", "passenv", "maxforks", "closems", "origin", "loglevel"})
TLS = "TLS belongs to nginx in front of procwire (docs/deploy.md)"
UNSUPPORTED = {
    "ssl": TLS,
    "sslcert": TLS,
    "sslkey": TLS,
    "cgidir": "procwire serves WebSocket programs and static files, not CGI scripts",
    "devconsole": "procwire's own console is at / (docs/programs.md)",
    "reverselookup": "REMOTE_HOST is the client's address, never looked up",
    "header": "set extra response headers in nginx (docs/deploy.md)",
    "header-ws": "set extra response headers in nginx (docs/deploy.md)",
    "header-http": "set extra response headers in nginx (docs/deploy.md)",
    "license": "procwire's license is in its repository",
    "token": "a token on the command line shows in ps: set PROCWIRE_TOKEN, or TOKEN in the PROCWIRE_CONFIG file, "
    "or use the development token the server prints",
}
LOG_LEVELS = {
    "debug": "debug",
    "trace": "debug",
    "access": "info",
    "info": "info",
    "error": "error",
    "fatal": "critical",
}
TRUE, FALSE = ("true", "t", "1"), ("false", "f", "0")  # Go's strconv.ParseBool, lower case


class UsageError(Exception):
    """A command line websocketd would refuse, or one procwire serves differently: one line."""


@dataclass
class Options:
    flags: dict[str, Any] = field(default_factory=dict)
    addresses: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


def parse(argv: list[str]) -> Options:
    """Go's flag syntax, as websocketd reads it: ``-flag`` or ``--flag``, ``=VALUE`` or the next
    argument, booleans without a value; the first argument that is not a flag starts the command."""
    options = Options()
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            index += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, has_value, value = arg.lstrip("-").partition("=")
        if name in UNSUPPORTED:
            raise UsageError(f"--{name} is not supported by procwire serve: {UNSUPPORTED[name]}")
        if name in BOOLEAN_FLAGS:
            options.flags[name] = _boolean(name, value) if has_value else True
        elif name in VALUE_FLAGS:
            if not has_value:
                index += 1
                if index == len(argv):
                    raise UsageError(f"--{name} needs a value")
                value = argv[index]
            if name == "address":
                options.addresses.append(value)
            else:
                options.flags[name] = value
        else:
            raise UsageError(f"unknown flag {arg.partition('=')[0]} (procwire serve --help lists the flags)")
        index += 1
    options.command = argv[index:]
    return options


def _boolean(name: str, value: str) -> bool:
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise UsageError(f"--{name}={value}: true or false")


def _count(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"--{name}={value}: not a number") from None
    if not low <= number <= high:
        raise UsageError(f"--{name}={value}: from {low} to {high}")
    return number


def _directory(name: str, value: str) -> str:
    path = os.path.abspath(value)
    if not os.path.isdir(path):
        raise UsageError(f"--{name}={value}: no such directory")
    return path


def _origins(value: str) -> list[str]:
    """websocketd's ``host[:port]`` entries (``http://`` optional) as procwire's ``scheme://host[:port]``."""
    origins: list[str] = []
    for entry in filter(None, (part.strip() for part in value.split(","))):
        origins += [entry] if "://" in entry else [f"http://{entry}", f"https://{entry}"]
    return origins


def binds(options: Options) -> list[str]:
    """``host:port`` for each ``--address`` (``[v6]:port``); none when neither flag is given."""
    if "port" not in options.flags and not options.addresses:
        return []
    port = _count("port", options.flags.get("port", str(DEFAULT_PORT)), 1, 65535)
    hosts = options.addresses or [DEFAULT_ADDRESS]
    return [f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}" for host in hosts]


def single_program(command: list[str]) -> tuple[str, dict[str, Any]]:
    """websocketd's ``COMMAND ARGS...``: a program named after the command's file."""
    path = os.path.abspath(command[0]) if os.sep in command[0] else shutil.which(command[0])
    if path is None or not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise UsageError(f"{command[0]}: not an executable file")
    name = os.path.basename(path)
    if not PROGRAM_NAME.fullmatch(name):
        raise UsageError(f"{name}: a program's name is letters, digits and _.- (it is its URL: /programs/NAME)")
    return name, {"argv": [path, *command[1:]]}


def overrides(options: Options, base: Settings, cwd: str) -> dict[str, Any]:
    """The settings the flags set, by key: each one replaces the configured value, and
    ``program_defaults`` and ``programs`` are merged key by key with the configured ones.
    Programs run in ``cwd`` (where ``procwire serve`` was started, as under websocketd)
    unless ``program_defaults`` names another directory: gunicorn itself runs in the checkout."""
    flags = options.flags
    values: dict[str, Any] = {}
    addresses = binds(options)
    if addresses:
        values["BIND"] = addresses[0]
    if "dir" in flags:
        values["PROGRAMS_DIR"] = _directory("dir", flags["dir"])
    if "staticdir" in flags:
        values["STATIC_DIR"] = _directory("staticdir", flags["staticdir"])
    if "maxforks" in flags:
        values["MAX_PROGRAM_PROCS"] = _count("maxforks", flags["maxforks"], 0, 10**6)
    if "origin" in flags:
        values["ALLOWED_ORIGINS"] = _origins(flags["origin"])
    if "loglevel" in flags:
        if flags["loglevel"] not in LOG_LEVELS:
            raise UsageError(f"--loglevel={flags['loglevel']}: one of {', '.join(LOG_LEVELS)}")
        values["LOG_LEVEL"] = LOG_LEVELS[flags["loglevel"]]
    configured = base.PROGRAM_DEFAULTS.model_dump(mode="json", exclude_none=True)
    values["PROGRAM_DEFAULTS"] = {"cwd": cwd, **configured, **_program_defaults(flags)}
    if options.command:
        name, table = single_program(options.command)
        programs = {key: value.model_dump(mode="json", exclude_none=True) for key, value in base.PROGRAMS.items()}
        values["PROGRAMS"] = {**programs, name: table}
        values["PROGRAMS_ROOT"] = name
    return values


def _program_defaults(flags: Mapping[str, Any]) -> dict[str, Any]:
    """What ``--binary``, ``--passenv``, ``--closems`` and ``--public`` set for every program that does not say."""
    defaults: dict[str, Any] = {}
    if flags.get("binary"):
        defaults["mode"] = "binary"
    if "passenv" in flags:
        defaults["passenv"] = [name.strip() for name in flags["passenv"].split(",") if name.strip()]
    if "closems" in flags:
        close_ms = _count("closems", flags["closems"], 0, 3_600_000)
        defaults["stop"] = [step.model_dump(mode="json") for step in stop_sequence(close_ms)]
    if flags.get("public"):
        defaults["public"] = True
    return defaults


def server_environment(options: Options, environ: Mapping[str, str], cwd: str) -> dict[str, str]:
    """The environment gunicorn runs with: ``environ`` and the flags' ``PROCWIRE_*``, checked
    as the server will load it.  Relative paths (``PROCWIRE_CONFIG``, the flags') are made
    absolute: gunicorn runs in the checkout."""
    env = dict(environ)
    if env.get(CONFIG_FILE_VARIABLE):
        env[CONFIG_FILE_VARIABLE] = os.path.join(cwd, env[CONFIG_FILE_VARIABLE])
    for key, value in overrides(options, load_settings(env), cwd).items():
        env[ENV_PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
    load_settings(env)
    return env


def server_command() -> list[str]:
    """``make run``'s gunicorn, to be run in ``ROOT``; its settings come from ``PROCWIRE_*``.  Also what
    ``procwire_client``'s pytest plugin starts (procwire_client/testing/launcher.py): the one recipe."""
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]


def gunicorn_command(options: Options) -> list[str]:
    """``make run``'s gunicorn (run in the checkout); one ``--bind`` per ``--address``."""
    command = server_command()
    addresses = binds(options)
    if len(addresses) > 1:
        command += [part for address in addresses for part in ("--bind", address)]
    return command


def main(argv: list[str] | None = None) -> int:
    """Parse, check, then become gunicorn (exec: the pid that started is the server's master)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        options = parse(argv)
        if options.flags.get("help") or options.flags.get("h"):
            print(USAGE, end="")
            return 0
        if options.flags.get("version"):
            from importlib.metadata import version

            print(f"procwire {version('procwire')}")
            return 0
        cwd = os.getcwd()
        env = server_environment(options, os.environ, cwd)
    except (UsageError, ConfigError) as error:
        print(f"procwire serve: {error}", file=sys.stderr)
        return 2
    if not (ROOT / "gunicorn.conf.py").is_file():
        print(f"procwire serve: no gunicorn.conf.py in {ROOT}: run it from a procwire checkout", file=sys.stderr)
        return 1
    command = gunicorn_command(options)
    # In the checkout, as `make run`: gunicorn puts its directory first on sys.path before it reads
    # gunicorn.conf.py, and a config.py or wsgi.py where serve was started must not be imported.
    os.chdir(ROOT)
    os.execve(command[0], command, env)


if __name__ == "__main__":
    sys.exit(main())
