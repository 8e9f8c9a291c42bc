"""What a server decides and says as it starts: its admin token, where the
audit log goes, and the block it prints once it listens.

Runs in gunicorn's master (``gunicorn.conf.py``), so it reads settings only.

The admin token:

* ``TOKEN`` set: that one (the admin named ``default``).
* no ``TOKEN`` and no ``[[tokens]]``: the development token, kept in
  ``STATE_DIR`` (:mod:`config.devtoken`).
* ``[[tokens]]`` of which none is an admin: the development token too, next to
  them, so that adding a user never takes the only admin away; start-up says
  so.  ``TOKEN = ""`` written out turns it off.
* ``[[tokens]]`` with an admin: no token the server could print (it keeps
  only their SHA-256); start-up names them and says how to make one.

When stderr is the systemd journal (``JOURNAL_STREAM``), nothing secret is
printed: no token, no login code.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from config.devtoken import dev_token_file, load_or_create
from config.settings import CONFIG_FILE_VARIABLE, Settings
from config.state import private_directory, server_file

WIDTH = 78
LOGIN_MINUTES = 10
POLICY_DOC = "docs/security.md#policy"
USER_ROLE = "user"  # the role whose defaults allow nothing (app/security/policy.py)


@dataclass(frozen=True)
class Access:
    """The admin token this server knows, and where it came from."""

    token: str | None  # None: only [[tokens]], known by their SHA-256
    dev_file: Path | None = None  # the development token's file, when it is that one
    created: bool = False  # the development token was made at this start
    alongside: bool = False  # the development admin runs next to [[tokens]] without an admin


def resolve_access(settings: Settings) -> Access:
    """Which admin token the server runs with (see the module doc)."""
    if settings.TOKEN:
        return Access(settings.TOKEN)
    has_admin = any(entry.role == "admin" for entry in settings.TOKENS)
    if settings.TOKENS and (has_admin or "TOKEN" in settings.model_fields_set):
        return Access(None)
    path = dev_token_file(settings.STATE_DIR, settings.BIND)
    token, created = load_or_create(path)
    return Access(token, path, created, alongside=bool(settings.TOKENS))


def terminal_audit_file(settings: Settings, stderr_is_terminal: bool) -> Path | None:
    """Where the audit log goes instead of stderr: a file of its own when
    stderr is a terminal and ``AUDIT_LOG`` is not set, so that the terminal
    shows the server's log only.  Elsewhere (the journal, a pipe) it stays."""
    if not stderr_is_terminal or "AUDIT_LOG" in settings.model_fields_set:
        return None
    path = server_file(settings.STATE_DIR, settings.BIND, "audit")
    return path.with_name(f"{path.name}.log")


def create_private_file(path: Path) -> None:
    """Create ``path`` with mode 0600 (audit lines name programs and directories) if missing."""
    private_directory(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))


def stderr_is_journal(environ: Mapping[str, str], stderr_fd: int = 2) -> bool:
    """systemd sets ``JOURNAL_STREAM=<device>:<inode>`` of the stream it connected (systemd.exec(5))."""
    try:
        info = os.fstat(stderr_fd)
    except OSError:
        return False
    return environ.get("JOURNAL_STREAM") == f"{info.st_dev}:{info.st_ino}"


def base_url(bind: str) -> str | None:
    """``http://host:port`` for a TCP ``BIND`` (a wildcard address as loopback); None for a socket."""
    if bind.startswith(("unix:", "fd://")):
        return None
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass
class Announcement:
    """The block printed once the server listens: how to get in, then notes."""

    settings: Settings
    access: Access
    code: str | None = None  # a one-time login code, when the token may be printed
    audit_file: Path | None = None
    journal: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def render(self) -> str:
        notes = self._notes()
        lines = [*self._way_in(), *([""] if notes else []), *notes]
        top = " procwire is ready ".center(WIDTH, "=")
        # Commands and URLs (indented) stay whole, to be copied; sentences are wrapped.
        wrapped = [part for line in lines for part in ([line] if line.startswith(" ") else _wrap(line))]
        body = "\n".join(f"  {line}" if line else "" for line in wrapped)
        return f"\n{top}\n{body}\n{'=' * WIDTH}\n\n"

    # -- how to get in --------------------------------------------------------------

    def _way_in(self) -> list[str]:
        url = base_url(self.settings.BIND)
        site = url or "https://YOUR-PROXY"  # a socket BIND: reached through nginx only
        ws_url = f"{url.replace('http', 'ws', 1)}/ws" if url else "wss://YOUR-PROXY/ws"
        where = [] if url else [f"procwire listens on {self.settings.BIND}: use the address of your proxy below."]
        console = [] if static_index(self.settings) else [f"Console: {site}/"]
        token = self.access.token
        if token is None:
            return [*where, *console, *self._tokens_only(ws_url)]
        if self.journal:
            return [*where, *console, f"CLI: PROCWIRE_URL={ws_url}", self._token_source()]
        if not console:
            return [*where, *self._cli_lines(ws_url, token), self._token_source()]
        return [
            *where,
            f"Console: this link logs you in once, within {LOGIN_MINUTES} minutes (it holds no token):",
            "",
            f"    {site}/?code={self.code}",
            "",
            *self._cli_lines(ws_url, token),
            "",
            f"Link used or expired: open {site}/ and paste the token.",
            self._token_source(),
        ]

    def _cli_lines(self, ws_url: str, token: str) -> list[str]:
        return [
            "CLI: paste these two lines into a shell,",
            "",
            f"    export PROCWIRE_URL={ws_url}",
            f"    export PROCWIRE_TOKEN={shlex.quote(token)}",
            "",
            f"then try `{script('procwire')} run -- uname -a`.",
        ]

    def _tokens_only(self, ws_url: str) -> list[str]:
        names = ", ".join(f"{entry.name} ({entry.role})" for entry in self.settings.TOKENS)
        return [
            f"CLI: export PROCWIRE_URL={ws_url} PROCWIRE_TOKEN=<a token>",
            f"Log in with a configured token: {names}.",
            "procwire keeps only their SHA-256, so it cannot print one. To make one:",
            f"`{script('procwire-token')} NAME --role admin`, add the lines it prints to {self._config_file()}, "
            "restart.",
        ]

    def _token_source(self) -> str:
        if self.access.dev_file is None:
            return "Token: TOKEN, as configured." if self.journal else "Token: TOKEN, as configured (it is not stored)."
        dev_file = shown(self.access.dev_file, self.environ)
        if self.journal:
            return f"Token: the development admin token, in {dev_file} (not printed to the journal)."
        if self.access.created:
            return f"Token: a new development admin token, kept in {dev_file} for the next starts."
        return (
            f"Token: the development admin token kept in {dev_file}, the same at every start "
            "(a new one: make run NEW_TOKEN=1)."
        )

    # -- what start-up did ------------------------------------------------------------

    def _notes(self) -> list[str]:
        notes = []
        if self.access.alongside:
            users = ", ".join(entry.name for entry in self.settings.TOKENS)
            notes.append(
                f"No [[tokens]] entry is an admin ({users}): the development admin token is kept next to them. "
                f"To drop it, add an admin token ({script('procwire-token')} NAME --role admin) "
                f'or set TOKEN = "" in {self._config_file()}.'
            )
        for role, names in unpoliced(self.settings).items():
            notes.append(
                f"Role {role} has no policy: {', '.join(names)} may start nothing. Add a [policies.{role}] "
                f"table (allow, cwd_roots) to {self._config_file()} ({POLICY_DOC})."
            )
        notes += program_notes(self.settings)
        if self.audit_file is not None:
            notes.append(
                f"Audit log: {shown(self.audit_file, self.environ)} (PROCWIRE_AUDIT_LOG=- keeps it in the terminal)."
            )
        return notes

    def _config_file(self) -> str:
        return self.environ.get(CONFIG_FILE_VARIABLE) or "a TOML file named by PROCWIRE_CONFIG"


def static_index(settings: Settings) -> bool:
    """Does ``STATIC_DIR``'s index.html take ``/`` from the console's page (app/operations/static_dir.py)?"""
    return bool(settings.STATIC_DIR) and os.path.isfile(os.path.join(settings.STATIC_DIR, "index.html"))


def program_notes(settings: Settings) -> list[str]:
    """Where the programs are (docs/programs.md) and whether they need the token; where the console is."""
    url = base_url(settings.BIND)
    site = url.replace("http", "ws", 1) if url else "wss://YOUR-PROXY"
    where = [f"{site}/programs/{name}" for name in sorted(settings.PROGRAMS)]
    if settings.PROGRAMS_ROOT:
        where.insert(0, f"{site}/ ({settings.PROGRAMS_ROOT})")
    if settings.PROGRAMS_DIR:
        where.append(f"{site}/programs/NAME for each executable of {settings.PROGRAMS_DIR}")
    notes = []
    if where:
        public = settings.PROGRAM_DEFAULTS.public
        token = "without a token (public)" if public else "with the token (Authorization: Bearer, or ?token=)"
        notes.append(f"Programs: {', '.join(where)}; {token}, unless their own table says otherwise.")
    if static_index(settings):
        notes.append(
            f"Static files: {settings.STATIC_DIR} at / (no token). Its index.html takes / from the console, "
            "which is not served: start without STATIC_DIR to use it."
        )
    return notes


def script(name: str) -> str:
    """How to run one of procwire's commands from here: its bare name when the
    shell finds it, else its path in the virtualenv (``.venv/bin/procwire``
    after ``make install``, whose bin directory is seldom on PATH)."""
    installed = Path(sys.executable).parent / name
    found = shutil.which(name)
    if not installed.exists() or (found and Path(found).resolve() == installed.resolve()):
        return name
    relative = os.path.relpath(installed)
    return str(installed) if relative.startswith("..") else relative


def shown(path: Path, environ: Mapping[str, str]) -> str:
    """``path`` with the home directory as ``~``, as a shell reads it back."""
    home = environ.get("HOME", "")
    if home not in ("", "/") and path.is_relative_to(home):
        return f"~/{path.relative_to(home)}"
    return str(path)


def unpoliced(settings: Settings) -> dict[str, list[str]]:
    """Token names by role, for roles that may start nothing for want of any policy."""
    found: dict[str, list[str]] = {}
    for entry in settings.TOKENS:
        if entry.role == USER_ROLE and entry.policy is None and entry.role not in settings.POLICIES:
            found.setdefault(entry.role, []).append(entry.name)
    return found


def _wrap(text: str) -> list[str]:
    """Lines of at most WIDTH - 2 characters, words kept whole (paths too)."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        if current and len(current) + 1 + len(word) > WIDTH - 2:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current]
