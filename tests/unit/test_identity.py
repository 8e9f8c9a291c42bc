"""app.identity, app.connections and the procwire-token command, without a server."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tomllib
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from app.security import audit
from app.security.connections import ConnectionSlots
from app.security.identity import Identities
from config.settings import ConfigError, Settings, load_settings
from config.token import main as token_main
from config.token import sha256_hex, toml_entry


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def settings_with(**values: object) -> Settings:
    return Settings.model_validate(values)


def test_the_single_token_is_an_admin_named_default() -> None:
    identities = Identities.from_settings(settings_with(TOKEN="s3cret"))
    found = identities.lookup("s3cret")
    assert found is not None and (found.name, found.role, found.is_admin) == ("default", "admin", True)
    assert identities.lookup("s3cre") is None and identities.lookup("") is None and identities.lookup(None) is None


def test_listed_tokens_by_hash() -> None:
    identities = Identities.from_settings(
        settings_with(
            TOKEN="root",
            TOKENS=[
                {"name": "alice", "role": "user", "sha256": digest("a-token")},
                {"name": "ops", "role": "admin", "sha256": digest("o-token").upper()},
            ],
        )
    )
    assert len(identities) == 3
    alice, ops = identities.lookup("a-token"), identities.lookup("o-token")
    assert alice is not None and (alice.name, alice.role, alice.is_admin) == ("alice", "user", False)
    assert ops is not None and ops.name == "ops" and ops.is_admin
    assert identities.lookup(digest("a-token")) is None  # the hash is not the token


def test_visibility() -> None:
    identities = Identities.from_settings(
        settings_with(TOKEN="root", TOKENS=[{"name": "alice", "role": "user", "sha256": digest("a")}])
    )
    admin, alice = identities.lookup("root"), identities.lookup("a")
    assert admin is not None and alice is not None
    assert admin.may_see("alice") and admin.may_see("default")
    assert alice.may_see("alice") and not alice.may_see("default") and not alice.may_see("bob")


def test_policies_reach_the_identity() -> None:
    identities = Identities.from_settings(
        settings_with(
            POLICIES={"user": {"allow": ["/usr/bin/*"], "max_procs": 3}},
            TOKENS=[{"name": "ci", "role": "user", "sha256": digest("c"), "policy": {"max_procs": 9}}],
        )
    )
    ci = identities.lookup("c")
    assert ci is not None
    assert ci.policy.allow == ("/usr/bin/*",) and ci.policy.max_procs == 9
    assert ci.policy.source("allow") == "role user" and ci.policy.source("max_procs") == "token ci"


# -- settings ----------------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "procwire.toml"
    path.write_text(text)
    return {"PROCWIRE_CONFIG": str(path)}


def test_tokens_and_policies_from_toml(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            f"""
TOKEN = "root"

[[tokens]]
name = "alice"
role = "user"
sha256 = "{digest("x")}"

[tokens.policy]
max_procs = 2

[policies.user]
allow = ["/usr/bin/*"]
deny = ["/usr/bin/sh"]
cwd_roots = ["/srv"]
env = ["LANG"]
default_timeout = 10
max_timeout = 60
rlimits = {{ cpu = 5, as = 1073741824, nofile = 64, nproc = 32 }}
""",
        )
    )
    assert settings.TOKENS[0].name == "alice" and settings.TOKENS[0].policy is not None
    assert settings.TOKENS[0].policy.max_procs == 2
    user = settings.POLICIES["user"]
    assert user.rlimits == {"cpu": 5, "as": 1073741824, "nofile": 64, "nproc": 32}


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ('[[tokens]]\nname = "a"\nrole = "root"\nsha256 = "' + "0" * 64 + '"\n', "TOKENS.0.role: "),
        ('[[tokens]]\nname = "a b"\nrole = "user"\nsha256 = "' + "0" * 64 + '"\n', "TOKENS.0.name: "),
        ('[[tokens]]\nname = "a"\nrole = "user"\n', "TOKENS.0.sha256: "),
        ('[policies.user]\nallow = ["bin/*"]\n', "POLICIES.user.allow.0: "),
        ('[policies.user]\ncwd_roots = ["."]\n', "POLICIES.user.cwd_roots.0: "),
        ('[policies.user]\nenv = ["A=B"]\n', "POLICIES.user.env.0: "),
        ("[policies.user]\nmax_timeout = 0\n", "POLICIES.user.max_timeout: "),
        ("[policies.user]\nrlimits = { stack = 1 }\n", "POLICIES.user.rlimits.stack"),
        ("[policies.user]\nrlimits = { cpu = 0 }\n", "POLICIES.user.rlimits.cpu: "),
        ("[policies.user]\ncolour = 1\n", "POLICIES.user.colour: "),
        ('[policies.user]\nuser = "no-such-user-here"\n', "POLICIES.user.user: "),
        ("[policies.root]\npty = true\n", "POLICIES.root"),
        ("[policies.user]\ndefault_timeout = 90\nmax_timeout = 60\n", "POLICIES.user: default_timeout 90 is above"),
        ('AUDIT_LOG = "/nonexistent-dir/audit.log"\n', "AUDIT_LOG: "),
    ],
)
def test_bad_identity_settings_name_the_key(tmp_path: Path, text: str, start: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert str(caught.value).startswith(start), caught.value
    assert "\n" not in str(caught.value)


def test_duplicate_names_and_tokens(tmp_path: Path) -> None:
    entry = '[[tokens]]\nname = "{}"\nrole = "user"\nsha256 = "{}"\n'
    with pytest.raises(ConfigError, match=r"^TOKENS\[1\]\.name: 'a' is used twice"):
        load_settings(write(tmp_path, entry.format("a", digest("1")) + entry.format("a", digest("2"))))
    with pytest.raises(ConfigError, match=r"^TOKENS\[1\]\.sha256: the same token is listed twice"):
        load_settings(write(tmp_path, entry.format("a", digest("1")) + entry.format("b", digest("1").upper())))
    with pytest.raises(ConfigError, match=r"^TOKENS\[0\]\.name: 'default' is used twice"):
        load_settings(write(tmp_path, 'TOKEN = "t"\n' + entry.format("default", digest("1"))))
    assert load_settings(write(tmp_path, entry.format("default", digest("1")))).TOKENS[0].name == "default"


def test_token_level_default_above_the_roles_maximum(tmp_path: Path) -> None:
    text = (
        "[policies.user]\nmax_timeout = 60\n"
        f'[[tokens]]\nname = "a"\nrole = "user"\nsha256 = "{digest("1")}"\n[tokens.policy]\ndefault_timeout = 61\n'
    )
    with pytest.raises(ConfigError, match=r"^TOKENS\[0\]\.policy: default_timeout 61 is above max_timeout 60"):
        load_settings(write(tmp_path, text))


def test_a_token_pasted_as_a_hash_is_not_echoed(tmp_path: Path) -> None:
    secret = "my-very-secret-token"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, f'[[tokens]]\nname = "a"\nrole = "user"\nsha256 = "{secret}"\n'))
    assert secret not in str(caught.value)


def test_audit_log_setting_creates_no_file(tmp_path: Path) -> None:
    target = tmp_path / "audit.log"
    settings = load_settings({"PROCWIRE_AUDIT_LOG": str(target)})
    assert str(target) == settings.AUDIT_LOG
    assert not target.exists()
    with pytest.raises(ConfigError, match=r"^AUDIT_LOG: "):
        load_settings({"PROCWIRE_AUDIT_LOG": str(tmp_path)})


def test_tokens_from_the_environment_as_json() -> None:
    raw = json.dumps([{"name": "a", "role": "admin", "sha256": digest("1")}])
    assert load_settings({"PROCWIRE_TOKENS": raw}).TOKENS[0].role == "admin"


# -- the token command ------------------------------------------------------------------------------------------


def test_token_command_prints_a_token_and_a_table_that_loads(tmp_path: Path) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert token_main(["alice", "--role", "admin"]) == 0
    text = out.getvalue()
    token = text.split("\n\n")[1].strip()
    table = text[text.index("[[tokens]]") :]
    assert token not in table
    assert tomllib.loads(table)["tokens"][0] == {"name": "alice", "role": "admin", "sha256": digest(token)}
    found = Identities.from_settings(load_settings(write(tmp_path, table))).lookup(token)
    assert found is not None and found.name == "alice" and found.is_admin


def test_token_command_refuses_a_bad_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        token_main(["no spaces"])
    assert stopped.value.code == 2
    assert "letters, digits" in capsys.readouterr().err


def test_toml_entry_helper() -> None:
    assert toml_entry("a", "user", "t") == f'[[tokens]]\nname = "a"\nrole = "user"\nsha256 = "{sha256_hex("t")}"\n'


# -- connection slots ---------------------------------------------------------------------------------------


def test_connection_slots_per_token_and_address() -> None:
    slots = ConnectionSlots()
    assert slots.take("alice", "10.0.0.1", 2, 3) is None
    assert slots.take("alice", "10.0.0.2", 2, 3) is None
    refusal = slots.take("alice", "10.0.0.3", 2, 3)
    assert refusal is not None and refusal[0] == "MAX_CONNECTIONS_PER_TOKEN" and "alice" in refusal[1]
    assert slots.take("bob", "10.0.0.1", 2, 1) == (
        "MAX_CONNECTIONS_PER_ADDRESS",
        "too many connections from 10.0.0.1: at most 1 (MAX_CONNECTIONS_PER_ADDRESS)",
    )
    slots.release("alice", "10.0.0.1")
    assert slots.take("bob", "10.0.0.1", 2, 1) is None
    slots.release("bob", "10.0.0.1")
    slots.release("alice", "10.0.0.2")
    assert not slots.per_token and not slots.per_address
    assert slots.take("x", None, 0, 0) is None  # 0: no limit


# -- audit lines -------------------------------------------------------------------------------------------


def test_audit_lines_are_json(tmp_path: Path) -> None:
    target = tmp_path / "audit.log"
    audit.configure(str(target))
    try:
        audit.event("start", token="alice", argv=["echo", "é"], path=tmp_path)
        audit.event("exit", code=0)
    finally:
        audit.configure("")
    lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [line["event"] for line in lines] == ["start", "exit"]
    assert lines[0]["argv"] == ["echo", "é"] and lines[0]["path"] == str(tmp_path)
    assert lines[0]["time"].endswith("+00:00") and isinstance(lines[0]["worker"], int)
    assert lines[0]["name"] == "procwire.audit" and lines[0]["levelname"] == "INFO"
    assert not logging.getLogger("procwire.audit").propagate
    audit.event("ignored")  # disabled: nothing, no error


def test_procwire_token_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    from procwire_client.cli import main as procwire_main

    assert procwire_main(["token", "bob", "--role", "admin"]) == 0
    printed = capsys.readouterr().out
    token = printed.split("\n\n")[1].strip()
    entry = tomllib.loads(printed[printed.index("[[tokens]]") :])["tokens"][0]
    assert entry == {"name": "bob", "role": "admin", "sha256": digest(token)}
    assert procwire_main(["token", "no spaces"]) == 2
    assert "letters, digits" in capsys.readouterr().err
