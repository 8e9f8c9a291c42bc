"""Load and validate procwire's settings.

Order of precedence, lowest first: the defaults declared on :class:`Settings`,
the TOML file named by ``PROCWIRE_CONFIG``, then ``PROCWIRE_<KEY>`` environment
variables.  Environment values are parsed the way Flask's
``Config.from_prefixed_env`` does: as JSON when they parse, else as a string.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

ENV_PREFIX = "PROCWIRE_"
CONFIG_FILE_VARIABLE = "PROCWIRE_CONFIG"
MIB = 1024 * 1024


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


class Settings(BaseModel):
    """Every setting procwire reads, with its default and its bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    BIND: str = Field("127.0.0.1:9999", min_length=1)
    TOKEN: str = ""
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
    key = ".".join(str(part) for part in problem["loc"]) or "settings"
    return f"{key}: {problem['msg']} (got {problem.get('input')!r})"
