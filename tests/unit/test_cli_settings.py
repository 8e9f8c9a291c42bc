"""Where ``procwire login`` keeps its file, and how it writes it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from procwire_client import settings


def test_xdg_config_home_only_when_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert settings.config_path() == tmp_path / "xdg" / "procwire" / "config.ini"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # invalid per the XDG spec: ignored
    assert settings.config_path() == tmp_path / "home" / ".config" / "procwire" / "config.ini"


def test_save_load_remove(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "procwire").mkdir(mode=0o755)
    assert settings.load() is None
    token = "t%k=n;with#odd chars"  # no interpolation, no comment handling in values
    path = settings.save(settings.Login("ws://h:1/ws", token))
    assert settings.load() == settings.Login("ws://h:1/ws", token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700  # tightened although it existed
    assert settings.remove() and not settings.remove()
    assert settings.load() is None


def test_an_unreadable_file_is_one_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "procwire").mkdir()
    (tmp_path / "procwire" / "config.ini").write_text("no section header\n")
    with pytest.raises(settings.SettingsError, match="cannot read"):
        settings.load()
