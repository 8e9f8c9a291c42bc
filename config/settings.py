"""Load and validate procwire's settings.

Order of precedence, lowest first: the defaults declared on :class:`Settings`,
the TOML file named by ``PROCWIRE_CONFIG``, then ``PROCWIRE_<KEY>`` environment
variables.  Environment values are parsed the way Flask's
``Config.from_prefixed_env`` does: as JSON when they parse, else as a string.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import tomllib
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from config.programs import ProgramDefaults, ProgramTable
from config.sso import AuthProxySettings, JwtSettings, Role

ENV_PREFIX = "PROCWIRE_"
CONFIG_FILE_VARIABLE = "PROCWIRE_CONFIG"
MIB = 1024 * 1024
REDIS_SCHEMES = ("redis", "rediss", "unix")


class ConfigError(Exception):
    """A setting is invalid; the message is one line naming the key."""


def _split_commas(value: Any) -> Any:
    """Accept ``"a,b"`` as well as a JSON/TOML list for list settings."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _origin(value: str) -> str:
    """``*`` or ``scheme://host[:port]``, as browsers send it in ``Origin``."""
    parts = urlsplit(value)
    if value != "*" and not (parts.scheme in ("http", "https") and parts.netloc and parts.path in ("", "/")):
        raise ValueError(f"not an origin (scheme://host[:port]): {value!r}")
    return value


OriginList = Annotated[list[Annotated[str, AfterValidator(_origin)]], BeforeValidator(_split_commas)]

# -- identities and policies (docs/security.md) ------------------------------------------

RlimitName = Literal["cpu", "as", "nofile", "nproc"]  # prlimit(1) names, as app.launcher takes them
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
DEFAULT_TOKEN_NAME = "default"  # the admin whose token is TOKEN
# Config errors never show these values (a Redis URL may hold a password).
SECRET_KEYS = frozenset({"TOKEN", "sha256", "secret_sha256", "REDIS_URL"})


def _absolute(value: str) -> str:
    """An absolute path, or a glob of absolute paths (``*``, ``?``, ``**``)."""
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"not an absolute path: {value!r}")
    return value


def _variable_pattern(value: str) -> str:
    """A variable name, or a glob of names (``LC_*``)."""
    if not value or "=" in value or "\0" in value:
        raise ValueError(f"not a variable name or glob: {value!r}")
    return value


def _known_user(value: str) -> str:
    try:
        pwd.getpwnam(value)
    except KeyError:
        raise ValueError(f"no such user: {value!r}") from None
    return value


def _known_group(value: str) -> str:
    try:
        grp.getgrnam(value)
    except KeyError:
        raise ValueError(f"no such group: {value!r}") from None
    return value


def _default_state_dir() -> str:
    """Where a server keeps what must outlive it (XDG's state directory)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "procwire")


def _redis_url(value: str) -> str:
    """Empty (no cluster) or a URL redis-py opens: redis://, rediss:// (TLS), unix://."""
    if value and urlsplit(value).scheme not in REDIS_SCHEMES:
        raise ValueError(f"must start with one of {', '.join(s + '://' for s in REDIS_SCHEMES)}")
    return value


def _directory_or_empty(value: str) -> str:
    if value and not (os.path.isabs(value) and os.path.isdir(value)):
        raise ValueError(f"not an absolute path to a directory: {value!r}")
    return value


def _absolute_or_empty(value: str) -> str:
    if value and not os.path.isabs(value):
        raise ValueError(f"not an absolute path: {value!r}")
    return value


def _audit_destination(value: str) -> str:
    """``-`` (stderr), empty (no audit log), or a file the server can append to
    (checked without creating it: validating settings has no side effects)."""
    if value in ("", "-"):
        return value
    if os.path.isdir(value):
        raise ValueError(f"{value} is a directory")
    if os.path.exists(value):
        writable = os.access(value, os.W_OK)
    else:
        directory = os.path.dirname(os.path.abspath(value))
        writable = os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK)
    if not writable:
        raise ValueError(f"cannot append to {value}")
    return value


AbsolutePattern = Annotated[str, AfterValidator(_absolute)]
VariablePattern = Annotated[str, AfterValidator(_variable_pattern)]
PolicySeconds = Annotated[float, Field(gt=0, le=10**9)]
ProcessCount = Annotated[int, Field(ge=0, le=10**6)]


class PolicySettings(BaseModel):
    """A ``[policies.<role>]`` table or a token's ``policy`` table; a key left out
    is inherited (token from role, role from the role's defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    allow: list[AbsolutePattern] | None = None
    deny: list[AbsolutePattern] | None = None
    cwd_roots: list[AbsolutePattern] | None = None
    env: list[VariablePattern] | None = None
    clear_env: bool | None = None
    pty: bool | None = None
    keep: bool | None = None
    max_procs: ProcessCount | None = None
    max_procs_total: ProcessCount | None = None
    default_timeout: PolicySeconds | None = None
    max_timeout: PolicySeconds | None = None
    rlimits: dict[RlimitName, Annotated[int, Field(ge=1, le=2**62)]] | None = None
    user: Annotated[str, AfterValidator(_known_user)] | None = None
    group: Annotated[str, AfterValidator(_known_group)] | None = None
    record: bool | None = None  # every start is recorded (app.recording)
    record_input: bool | None = None  # ... with what was typed too


class TokenSettings(BaseModel):
    """One ``[[tokens]]`` entry: the token itself is never stored, only its SHA-256."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(pattern=f"^{TOKEN_NAME.pattern}$")
    role: Role
    sha256: str = Field(pattern="^[0-9a-fA-F]{64}$")
    policy: PolicySettings | None = None


class Settings(BaseModel):
    """Every setting procwire reads, with its default and its bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    BIND: str = Field("127.0.0.1:9999", min_length=1)
    TOKEN: str = ""
    TOKENS: list[TokenSettings] = Field(default_factory=list)
    POLICIES: dict[Role, PolicySettings] = Field(default_factory=dict)
    JWT: JwtSettings | None = None  # [jwt]: bearer JWTs from an identity provider (config/sso.py)
    AUTH_PROXY: AuthProxySettings | None = None  # [auth_proxy]: the identity a proxy in front vouches for
    AUDIT_LOG: Annotated[str, Field(pattern=r"^[^\x00]*$"), AfterValidator(_audit_destination)] = "-"
    MAX_CONNECTIONS_PER_TOKEN: int = Field(0, ge=0)
    MAX_CONNECTIONS_PER_ADDRESS: int = Field(0, ge=0)
    MAX_MESSAGES_PER_SECOND: float = Field(0.0, ge=0, le=10**6)
    MESSAGE_BURST: int = Field(0, ge=0, le=10**7)
    KILL_GRACE: float = Field(2.0, ge=0, le=3600)
    DRAIN_TIMEOUT: float = Field(2.0, ge=0, le=3600)
    MAX_MESSAGE_BYTES: int = Field(MIB, ge=1024)
    MAX_STDIN_CHUNK: int = Field(512 * 1024, ge=1)
    STDIN_BUFFER_BYTES: int = Field(4 * MIB, ge=1)
    MAX_PROCS_PER_CLIENT: int = Field(64, ge=1)
    MAX_EXITED_PER_CLIENT: int = Field(1024, ge=0)
    DEFAULT_BUFFER_BYTES: int = Field(MIB, ge=0)
    MAX_BUFFER_BYTES: int = Field(16 * MIB, ge=0)
    KEEP_EXITED_SECONDS: float = Field(3600.0, ge=0)
    ALLOWED_ORIGINS: OriginList = Field(default_factory=list)
    PING_INTERVAL: float = Field(25.0, ge=0, le=3600)
    COMPRESSION: bool = False
    PROXY_COUNT: int = Field(0, ge=0, le=10)
    WORKER_CONNECTIONS: int = Field(10_000, ge=1)
    WORKERS: int = Field(1, ge=1, le=256)
    GRACEFUL_TIMEOUT: int = Field(30, ge=1, le=3600)
    LOG_LEVEL: str = Field("info", pattern="^(debug|info|warning|error|critical)$")
    LOG_FORMAT: str = Field("text", pattern="^(text|json)$")
    METRICS_OPEN: bool = False
    REDIS_URL: Annotated[str, AfterValidator(_redis_url)] = ""
    STATE_DIR: str = Field(default_factory=_default_state_dir, min_length=1)
    CLUSTER_HEARTBEAT: float = Field(2.0, gt=0, le=10)
    CLUSTER_NODE_TIMEOUT: float = Field(6.0, gt=0, le=10)
    CLUSTER_TIMEOUT: float = Field(5.0, gt=0, le=10)
    CLUSTER_MIRROR_BYTES: int = Field(64 * MIB, ge=MIB)
    PROGRAMS: ProgramTable = Field(default_factory=dict)
    PROGRAM_DEFAULTS: ProgramDefaults = ProgramDefaults()  # frozen: one shared default is safe
    PROGRAMS_DIR: Annotated[str, AfterValidator(_directory_or_empty)] = ""
    PROGRAMS_ROOT: str = ""  # the program also served at "/" (websocketd's single-program form)
    MAX_PROGRAM_PROCS: int = Field(1024, ge=0)  # per worker, like websocketd's --maxforks; 0: unbounded
    STATIC_DIR: Annotated[str, AfterValidator(_directory_or_empty)] = ""  # files served at "/", like --staticdir
    RECORDINGS_DIR: Annotated[str, AfterValidator(_absolute_or_empty)] = ""  # empty: STATE_DIR/recordings
    RECORDINGS_MAX_AGE: float = Field(30 * 86400.0, ge=0)  # seconds; 0 keeps them whatever their age
    RECORDINGS_MAX_BYTES: int = Field(1024 * MIB, ge=0)  # all of them together; 0: no bound

    @model_validator(mode="after")
    def _consistent_identities(self) -> Settings:
        """Names and hashes are unique; no default timeout above its maximum."""
        names = {DEFAULT_TOKEN_NAME} if self.TOKEN else set()
        digests: set[str] = set()
        for index, entry in enumerate(self.TOKENS):
            if entry.name in names:
                raise ValueError(f"TOKENS[{index}].name: {entry.name!r} is used twice (TOKEN is named 'default')")
            if entry.sha256.lower() in digests:
                raise ValueError(f"TOKENS[{index}].sha256: the same token is listed twice")
            names.add(entry.name)
            digests.add(entry.sha256.lower())
        for role, policy in self.POLICIES.items():
            _check_timeouts(f"POLICIES.{role}", policy, None)
        for index, entry in enumerate(self.TOKENS):
            if entry.policy is not None:
                _check_timeouts(f"TOKENS[{index}].policy", entry.policy, self.POLICIES.get(entry.role))
        if self.AUTH_PROXY is not None and not self.PROXY_COUNT:
            raise ValueError("AUTH_PROXY: needs PROXY_COUNT of at least 1 (the proxies in front)")
        if self.PROGRAMS_ROOT and self.PROGRAMS_ROOT not in self.PROGRAMS:
            raise ValueError(f"PROGRAMS_ROOT: {self.PROGRAMS_ROOT!r} is not in PROGRAMS")
        return self


def _check_timeouts(key: str, policy: PolicySettings, inherited: PolicySettings | None) -> None:
    default, maximum = policy.default_timeout, policy.max_timeout
    if inherited is not None:
        default = inherited.default_timeout if default is None else default
        maximum = inherited.max_timeout if maximum is None else maximum
    if default is not None and maximum is not None and default > maximum:
        raise ValueError(f"{key}: default_timeout {default:g} is above max_timeout {maximum:g}")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Merge defaults, the TOML file and the environment, then validate."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = environ.get(CONFIG_FILE_VARIABLE)
    if config_file:
        values.update(_read_toml(config_file))
    values.update(_read_environment(environ))
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise ConfigError(_first_problem(error)) from None


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"{CONFIG_FILE_VARIABLE}: cannot read {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"{CONFIG_FILE_VARIABLE}: {path} is not valid TOML: {error}") from None
    return {key.upper(): value for key, value in data.items()}


def _read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_FILE_VARIABLE:
            continue
        key = name.removeprefix(ENV_PREFIX)
        if key not in Settings.model_fields:
            raise ConfigError(f"{name}: unknown setting")
        values[key] = raw if Settings.model_fields[key].annotation is str else _parse(raw)
    return values


def _parse(raw: str) -> Any:
    """JSON when it parses (numbers, booleans, lists), else the text itself."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return raw


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    if not problem["loc"] and problem["type"] == "value_error":
        return problem["msg"].removeprefix("Value error, ")  # a check across keys names its key
    key = ".".join(str(part) for part in problem["loc"]) or "settings"
    if problem["loc"] and problem["loc"][-1] in SECRET_KEYS:
        return f"{key}: {problem['msg'].removeprefix('Value error, ')}"  # never echo what may be a token
    return f"{key}: {problem['msg']} (got {problem.get('input')!r})"
