"""Everything decided about a program connection before its upgrade.

In order: the program exists (404), the token or single sign-on (401,
app/security/identity.py; none needed on a ``public`` program), the Origin (403), the program's ``roles`` and
``tokens`` (403), its query arguments (400), then the limits (429): the
connections of the token and of the address (as on ``/ws``), the
program's ``max_connections``, ``MAX_PROGRAM_PROCS`` (websocketd's
``--maxforks``) and the token's policy caps ``max_procs`` and
``max_procs_total``.  A refused client never starts the program; every
refusal is audited.  Counts are per worker, taken here and given back by
:meth:`Admitted.release` when the connection ends.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from werkzeug.wrappers import Request

from app.programs.catalog import BadArguments, Catalog, Program
from app.registry.base import Registry
from app.security.auth import origin_allowed
from app.security.connections import slots
from app.security.identity import Identities, Identity, Unknown
from app.security.policy import USER, Policy
from config import Settings

PUBLIC_NAME = "(public)"  # the owner of what a public program's tokenless clients start: no token has this name


@dataclass(frozen=True)
class Refusal:
    status: int
    rule: str
    message: str
    token: str | None = None


@dataclass
class ProgramCounts:
    """Program connections open in this worker, in all and per program."""

    total: int = 0
    per_program: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Admitted:
    """An admitted connection: who, to what, and the counts it holds."""

    program: Program
    argv: list[str]
    identity: Identity
    authenticated: bool  # False: a public program's client without a token
    script_name: str
    path_info: str
    remote_addr: str | None
    counts: ProgramCounts

    def release(self) -> None:
        slots.release(self.identity.name, self.remote_addr)
        self.counts.total -= 1
        self.counts.per_program[self.program.name] -= 1
        if self.counts.per_program[self.program.name] <= 0:
            del self.counts.per_program[self.program.name]


class Gate:
    """The checks of one server: its settings, identities, programs and registry."""

    def __init__(self, settings: Settings, identities: Identities, catalog: Catalog, registry: Registry) -> None:
        self.settings = settings
        self.identities = identities
        self.catalog = catalog
        self.registry = registry
        self.counts = ProgramCounts()
        self._anonymous = Identity(PUBLIC_NAME, USER, Policy.build(USER, None))

    def admit(self, request: Request) -> Admitted | Refusal | None:
        """Admitted, refused, or None when the path names no program (404 is a refusal)."""
        found = self.catalog.find(request.path)
        if found is None:
            if request.path.startswith("/programs/") or request.path == "/programs":
                return Refusal(404, "program", f"no such program: {request.path.removeprefix('/programs/')}")
            return None
        program, script_name, path_info = found
        identity, authenticated = self._identity(request, program)
        if isinstance(identity, Unknown):
            return Refusal(401, identity.rule, identity.message)
        refusal = self._access(request, program, identity, authenticated)
        if refusal is not None:
            return refusal
        try:
            argv = program.argv_for(request.args)
        except BadArguments as error:
            return Refusal(400, "args", f"{program.name}: {error}", identity.name)
        refusal = self._limits(request, program, identity)
        if refusal is not None:
            return refusal
        return Admitted(
            program, argv, identity, authenticated, script_name, path_info, request.remote_addr, self.counts
        )

    def _identity(self, request: Request, program: Program) -> tuple[Identity | Unknown, bool]:
        """Who connects; a public program's client that presents no credentials is anonymous."""
        found = self.identities.identify(request)
        if isinstance(found, Unknown) and not found.presented and program.public:
            return self._anonymous, False
        return found, True

    def _access(self, request: Request, program: Program, identity: Identity, authenticated: bool) -> Refusal | None:
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, request.host, self.settings.ALLOWED_ORIGINS):
            return Refusal(403, "origin", f"origin not allowed: {origin}", identity.name)
        if authenticated and not program.public and not program.allows(identity.name, identity.role):
            message = f"token {identity.name} may not connect to program {program.name} (its roles and tokens)"
            return Refusal(403, "program", message, identity.name)
        return None

    def _limits(self, request: Request, program: Program, identity: Identity) -> Refusal | None:
        """Take every count the connection holds, or refuse with the first limit it would pass."""
        name = identity.name
        if self.settings.MAX_PROGRAM_PROCS and self.counts.total >= self.settings.MAX_PROGRAM_PROCS:
            rule = "MAX_PROGRAM_PROCS"
            return Refusal(429, rule, f"too many programs running: at most {self.settings.MAX_PROGRAM_PROCS} ({rule})")
        if program.max_connections and self.counts.per_program[program.name] >= program.max_connections:
            rule = "max_connections"
            message = f"program {program.name} has its {program.max_connections} connections ({rule})"
            return Refusal(429, rule, message, name)
        policy = identity.policy
        if policy.max_procs is not None or policy.max_procs_total is not None:
            own, total = self.registry.running_count(name)
            if policy.max_procs is not None and own >= policy.max_procs:
                return Refusal(429, "max_procs", f"token {name} runs its {policy.max_procs} processes", name)
            if policy.max_procs_total is not None and total >= policy.max_procs_total:
                return Refusal(429, "max_procs_total", f"the server runs its {policy.max_procs_total} processes", name)
        elsewhere = self.registry.connections_elsewhere(name) if self.settings.MAX_CONNECTIONS_PER_TOKEN else 0
        taken = slots.take(
            name,
            request.remote_addr,
            self.settings.MAX_CONNECTIONS_PER_TOKEN,
            self.settings.MAX_CONNECTIONS_PER_ADDRESS,
            elsewhere,
        )
        if taken is not None:
            return Refusal(429, taken[0], taken[1], name)
        self.counts.total += 1
        self.counts.per_program[program.name] += 1
        return None
