"""What a test server is started with: procwire settings and users, from pytest's ini file and markers.

Settings are named as in docs and config/settings.py (``KILL_GRACE``); each becomes ``PROCWIRE_KILL_GRACE``
in the server's environment, a string as it is and anything else as JSON (how the server reads them).
Hashable, so that servers with equal settings can be shared (procwire_client.testing.pool).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "PROCWIRE_"
SETTING_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


class SettingsError(ValueError):
    """A setting the plugin cannot pass on: one line saying why."""


def environment_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _checked(name: str) -> str:
    if name.startswith(ENV_PREFIX):
        raise SettingsError(f"{name}: name the setting without its prefix ({name.removeprefix(ENV_PREFIX)})")
    if not SETTING_NAME.fullmatch(name):
        raise SettingsError(f"{name!r} is not a procwire setting (upper case, as KILL_GRACE)")
    return name


@dataclass(frozen=True)
class ServerSettings:
    values: tuple[tuple[str, str], ...] = ()  # (KEY, its value in the environment), sorted
    users: tuple[tuple[str, str], ...] = ()  # (name, its policy as JSON, "null" for none), sorted

    @classmethod
    def of(
        cls, values: Mapping[str, Any] | None = None, users: Mapping[str, Mapping[str, Any] | None] | None = None
    ) -> ServerSettings:
        """From ``{"KILL_GRACE": 1}`` and ``{"alice": {"allow": ["/bin/*"]}}`` (None: no policy of its own)."""
        return cls(
            tuple(sorted((_checked(name), environment_value(value)) for name, value in (values or {}).items())),
            tuple(sorted((name, json.dumps(policy, sort_keys=True)) for name, policy in (users or {}).items())),
        )

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> ServerSettings:
        """From the ini option's ``KEY=VALUE`` lines."""
        values = {}
        for line in lines:
            name, equals, value = line.partition("=")
            if not equals:
                raise SettingsError(f"procwire_settings: {line!r} is not KEY=VALUE")
            values[name.strip()] = value.strip()
        return cls.of(values)

    def merged(self, other: ServerSettings) -> ServerSettings:
        """These settings, with ``other``'s on top."""
        return ServerSettings(
            tuple(sorted((dict(self.values) | dict(other.values)).items())),
            tuple(sorted((dict(self.users) | dict(other.users)).items())),
        )

    def environment(self) -> dict[str, str]:
        return {ENV_PREFIX + name: value for name, value in self.values}

    def policies(self) -> dict[str, dict[str, Any] | None]:
        return {name: json.loads(policy) for name, policy in self.users}
