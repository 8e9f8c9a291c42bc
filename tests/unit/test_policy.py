"""app.policy: who may run what, decided without a server (symlinks in tmp_path only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.errors import ErrorCode
from app.security.policy import ADMIN, USER, Grant, Policy, Refused, StartRequest, check_start
from config.settings import PolicySettings

SH = "/usr/bin/sh"


def policy(role: str = USER, token: dict | None = None, **role_keys: object) -> Policy:
    role_table = PolicySettings.model_validate(role_keys) if role_keys else None
    token_table = PolicySettings.model_validate(token) if token is not None else None
    return Policy.build(role, role_table, token_table, "alice")


def refusal(chosen: Policy, request: StartRequest, own: int = 0, total: int = 0) -> Refused:
    with pytest.raises(Refused) as refused:
        check_start(chosen, request, own, total)
    return refused.value


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """bin/tool (executable), bin/link -> tool, bin/shell -> /usr/bin/sh, work/, outside/, work/escape -> outside."""
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (tmp_path / "bin" / "link").symlink_to(tool)
    (tmp_path / "bin" / "shell").symlink_to(SH)
    (tmp_path / "work").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "work" / "escape").symlink_to(tmp_path / "outside")
    (tmp_path / "linkdir").symlink_to(tmp_path / "bin")
    return tmp_path


def user_policy(tree: Path, **keys: object) -> Policy:
    base: dict[str, object] = {"allow": [f"{tree}/bin/*"], "cwd_roots": [str(tree / "work")]}
    base.update(keys)
    return policy(**base)


# -- defaults ----------------------------------------------------------------------------------------------


def test_without_a_policy_admins_may_run_everything_anywhere() -> None:
    chosen = Policy.build(ADMIN)
    grant = check_start(chosen, StartRequest(SH, "/", env={"LD_PRELOAD": "x"}, clear_env=True, pty=True, keep=True))
    assert grant == Grant(timeout=None, rlimits={}, user=None, group=None)


def test_without_a_policy_users_may_run_nothing() -> None:
    refused = refusal(Policy.build(USER), StartRequest("/usr/bin/true", "/"))
    assert refused.code == ErrorCode.PERMISSION_DENIED
    assert refused.rule == "policy"  # not the first rule its empty defaults fail (cwd_roots)
    assert refused.message.startswith("policy: role user has no policy, so nothing may be started")
    assert "[policies.user]" in refused.message and "docs/security.md#policy" in refused.message
    roots_only = policy(cwd_roots=["/"])
    refused = refusal(roots_only, StartRequest("/usr/bin/true", "/"))
    assert refused.rule == "allow"
    assert refused.message == "policy: /usr/bin/true is not in the allow list of role user (by default)"


@pytest.mark.parametrize(("key", "request_keys"), [("pty", {"pty": True}), ("keep", {"keep": True})])
def test_switches_are_off_for_users_by_default(tree: Path, key: str, request_keys: dict) -> None:
    chosen = user_policy(tree)
    request = StartRequest(f"{tree}/bin/tool", str(tree / "work"), **request_keys)
    assert refusal(chosen, request).rule == key
    check_start(user_policy(tree, **{key: True}), request)


def test_clear_env_needs_a_grant(tree: Path) -> None:
    request = StartRequest(f"{tree}/bin/tool", str(tree / "work"), clear_env=True)
    refused = refusal(user_policy(tree), request)
    assert (
        refused.rule == "clear_env" and refused.message == "policy: clear_env is not allowed for role user (by default)"
    )
    check_start(user_policy(tree, clear_env=True), request)


# -- executables -------------------------------------------------------------------------------------------


def test_allowed_executable(tree: Path) -> None:
    assert check_start(user_policy(tree), StartRequest(f"{tree}/bin/tool", str(tree / "work"))).timeout is None


def test_glob_star_stays_in_one_directory(tree: Path) -> None:
    (tree / "bin" / "sub").mkdir()
    nested = tree / "bin" / "sub" / "x"
    nested.write_text("")
    nested.chmod(0o755)
    request = StartRequest(str(nested), str(tree / "work"))
    assert refusal(user_policy(tree), request).rule == "allow"
    check_start(user_policy(tree, allow=[f"{tree}/bin/**"]), request)


def test_deny_wins_over_allow(tree: Path) -> None:
    chosen = user_policy(tree, deny=[f"{tree}/bin/tool"])
    refused = refusal(chosen, StartRequest(f"{tree}/bin/tool", str(tree / "work")))
    assert refused.rule == "deny"
    assert refused.message == f"policy: {tree}/bin/tool is in the deny list of role user"


def test_symlink_to_a_denied_program_is_denied(tree: Path) -> None:
    chosen = user_policy(tree, deny=[f"{tree}/bin/tool"])
    refused = refusal(chosen, StartRequest(f"{tree}/bin/link", str(tree / "work")))
    assert refused.rule == "deny"
    assert f"{tree}/bin/tool (real path of {tree}/bin/link)" in refused.message


def test_symlink_out_of_the_allowed_directory_is_refused(tree: Path) -> None:
    """bin/shell is allowed by name, but its real path /usr/bin/sh (or dash) is not."""
    refused = refusal(user_policy(tree), StartRequest(f"{tree}/bin/shell", str(tree / "work")))
    assert refused.rule == "allow"
    assert f"(real path of {tree}/bin/shell)" in refused.message


def test_symlink_into_the_allowed_directory_under_another_name_is_refused(tree: Path, tmp_path: Path) -> None:
    """A link named like something else (``/elsewhere/sh`` -> allowed busybox) is judged by its own name too."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "sh").symlink_to(tree / "bin" / "tool")
    refused = refusal(user_policy(tree), StartRequest(str(elsewhere / "sh"), str(tree / "work")))
    assert refused.rule == "allow" and refused.message.startswith(f"policy: {elsewhere}/sh is not")


def test_symlinked_directory_resolves_to_the_allowed_one(tree: Path) -> None:
    check_start(user_policy(tree), StartRequest(f"{tree}/linkdir/tool", str(tree / "work")))


def test_dot_dot_in_the_path_is_resolved_before_matching(tree: Path) -> None:
    chosen = user_policy(tree, deny=[f"{tree}/bin/tool"])
    request = StartRequest(f"{tree}/work/../bin/tool", str(tree / "work"))
    assert refusal(chosen, request).rule == "deny"
    # relative to cwd, climbing out of it
    request = StartRequest("../bin/tool", str(tree / "work"))
    assert refusal(chosen, request).rule == "deny"
    check_start(user_policy(tree), request)


def test_dot_dot_cannot_climb_out_of_an_allowed_glob(tree: Path) -> None:
    request = StartRequest(f"{tree}/bin/../outside/../../usr/bin/true", str(tree / "work"))
    refused = refusal(user_policy(tree), request)
    assert refused.rule == "allow" and "/usr/bin/true" in refused.message


def test_denying_sh_denies_it_by_every_name(tree: Path) -> None:
    chosen = policy(allow=["/usr/bin/*", "/bin/*", f"{tree}/bin/*"], deny=[SH], cwd_roots=["/"])
    real_sh = os.path.realpath(SH)
    for executable in (SH, "/bin/sh", real_sh, f"{tree}/bin/shell"):
        assert refusal(chosen, StartRequest(executable, "/")).rule == "deny", executable


def test_allowing_a_symlink_allows_its_target(tree: Path) -> None:
    """``allow = [".../link"]`` covers the program the link points to."""
    chosen = policy(allow=[f"{tree}/bin/link"], cwd_roots=["/"])
    check_start(chosen, StartRequest(f"{tree}/bin/link", "/"))


def test_deny_lists_of_role_and_token_add_up(tree: Path) -> None:
    chosen = policy(token={"deny": [f"{tree}/bin/link"]}, **_user_keys(tree, deny=[f"{tree}/bin/tool"]))
    refused = refusal(chosen, StartRequest(f"{tree}/bin/tool", str(tree / "work")))
    assert refused.message.endswith("deny list of role user")


def test_token_keys_replace_the_roles(tree: Path) -> None:
    chosen = policy(token={"allow": ["/usr/bin/*"]}, **_user_keys(tree))
    refused = refusal(chosen, StartRequest(f"{tree}/bin/tool", str(tree / "work")))
    assert refused.message.endswith("allow list of token alice")


def _user_keys(tree: Path, **extra: object) -> dict[str, object]:
    keys: dict[str, object] = {"allow": [f"{tree}/bin/*"], "cwd_roots": [str(tree / "work")]}
    keys.update(extra)
    return keys


# -- cwd ------------------------------------------------------------------------------------------------------


def test_cwd_inside_a_root(tree: Path) -> None:
    (tree / "work" / "deep").mkdir()
    check_start(user_policy(tree), StartRequest(f"{tree}/bin/tool", str(tree / "work" / "deep")))


@pytest.mark.parametrize("cwd", ["work/..", "work/../outside", "work/escape", "outside", "work-sibling"])
def test_cwd_escapes_are_refused(tree: Path, cwd: str) -> None:
    (tree / "work-sibling").mkdir()
    refused = refusal(user_policy(tree), StartRequest(f"{tree}/bin/tool", f"{tree}/{cwd}"))
    assert refused.rule == "cwd_roots" and refused.code == ErrorCode.PERMISSION_DENIED
    assert "is not inside the cwd_roots of role user" in refused.message


def test_cwd_root_given_through_a_symlink(tree: Path) -> None:
    chosen = user_policy(tree, cwd_roots=[f"{tree}/work/escape"])
    check_start(chosen, StartRequest(f"{tree}/bin/tool", str(tree / "outside")))


# -- environment ---------------------------------------------------------------------------------------------


def test_ld_preload_is_refused_unless_allowed(tree: Path) -> None:
    request = StartRequest(f"{tree}/bin/tool", str(tree / "work"), env={"LD_PRELOAD": "/tmp/evil.so"})
    refused = refusal(user_policy(tree, env=["LANG", "LC_*"]), request)
    assert refused.rule == "env"
    assert refused.message == "policy: environment variable LD_PRELOAD is not in the env allow list of role user"
    check_start(user_policy(tree, env=["LD_*"]), request)


def test_unsetting_a_variable_counts_as_setting_it(tree: Path) -> None:
    request = StartRequest(f"{tree}/bin/tool", str(tree / "work"), env={"PATH": None})
    assert refusal(user_policy(tree, env=["LANG"]), request).rule == "env"


def test_env_globs(tree: Path) -> None:
    request = StartRequest(f"{tree}/bin/tool", str(tree / "work"), env={"LC_ALL": "C", "LANG": "C"})
    check_start(user_policy(tree, env=["LANG", "LC_*"]), request)


# -- timeouts and counts ---------------------------------------------------------------------------------------


def test_default_timeout_applies_when_none_is_given(tree: Path) -> None:
    chosen = user_policy(tree, default_timeout=5, max_timeout=60)
    assert check_start(chosen, StartRequest(f"{tree}/bin/tool", str(tree / "work"))).timeout == 5
    assert check_start(chosen, StartRequest(f"{tree}/bin/tool", str(tree / "work"), timeout=30)).timeout == 30


def test_timeout_above_the_maximum_is_refused(tree: Path) -> None:
    chosen = user_policy(tree, max_timeout=60)
    refused = refusal(chosen, StartRequest(f"{tree}/bin/tool", str(tree / "work"), timeout=61))
    assert refused.rule == "max_timeout" and refused.code == ErrorCode.PERMISSION_DENIED
    assert refused.message == "policy: timeout 61 s is above the max_timeout 60 s of role user"


def test_maximum_timeout_is_the_default_when_no_default_is_written(tree: Path) -> None:
    chosen = user_policy(tree, max_timeout=60)
    assert check_start(chosen, StartRequest(f"{tree}/bin/tool", str(tree / "work"))).timeout == 60


def test_process_caps(tree: Path) -> None:
    chosen = user_policy(tree, max_procs=2, max_procs_total=10)
    request = StartRequest(f"{tree}/bin/tool", str(tree / "work"))
    check_start(chosen, request, 1, 9)
    refused = refusal(chosen, request, 2, 2)
    assert refused.rule == "max_procs" and refused.code == ErrorCode.LIMIT_EXCEEDED
    refused = refusal(chosen, request, 0, 10)
    assert refused.rule == "max_procs_total" and refused.code == ErrorCode.LIMIT_EXCEEDED


def test_grant_carries_rlimits_and_user(tree: Path) -> None:
    user = _any_user()
    chosen = user_policy(tree, rlimits={"cpu": 5, "nofile": 64}, user=user)
    grant = check_start(chosen, StartRequest(f"{tree}/bin/tool", str(tree / "work")))
    assert grant.rlimits == {"cpu": 5, "nofile": 64} and grant.user == user and grant.group is None
    assert chosen.rlimits == {"cpu": 5, "nofile": 64}


def _any_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def test_refusals_are_checked_before_the_executable(tree: Path) -> None:
    """The env rule answers first, so a user PATH pointing at a fake program is named as the problem."""
    request = StartRequest(f"{tree}/outside/ls", str(tree / "work"), env={"PATH": f"{tree}/outside"})
    assert refusal(user_policy(tree), request).rule == "env"
