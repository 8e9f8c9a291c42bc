"""The pytest plugin for users (procwire_client/pytest_plugin.py, docs/testing.md), run as a user runs it:
pytest in a subprocess of its own, in an empty temporary directory, on a test file of theirs, with the
plugin found through its ``pytest11`` entry point (make install registers it).

The rest of the suite runs on the same fixtures (tests/conftest.py's ``server`` and ``lib``).
"""

from __future__ import annotations

import re

import pytest

from tests.server import ROOT, pid_exists

pytest_plugins = ["pytester"]

DOC = ROOT / "docs" / "testing.md"
RUN_BOUND = 120.0  # seconds for one inner pytest run (it starts one or two servers)
LEFTOVER_WARNING = "error::procwire_client.testing.LeftoverProcessWarning"

LEAVES_A_PROCESS = """
from pathlib import Path


def test_leaves_a_kept_process_behind(procwire_client):
    process = procwire_client.start(["sleep", "600"], on_disconnect="keep")
    Path("leftover.pid").write_text(str(process.pid))


def test_the_next_test_on_the_shared_server_finds_nothing(procwire_client):
    pid = int(Path("leftover.pid").read_text())
    assert not Path(f"/proc/{pid}").exists()
    assert procwire_client.list() == []


def test_a_process_the_server_is_still_stopping_is_no_leftover(procwire_client):
    # Ended with its connection: TERM ignored, so SIGKILL after KILL_GRACE (2 s), while the fixture waits.
    procwire_client.start(["sh", "-c", "trap '' TERM; sleep 600"])
"""

FAILS_WITH_A_REFUSAL = """
import pytest

from procwire_client import Client


@pytest.mark.procwire_settings(users={"bob": {"allow": ["/usr/bin/echo"], "cwd_roots": ["/"]}})
def test_bob_runs_sh(procwire_server):
    with Client(procwire_server.url, procwire_server.token_of("bob")) as bob:
        bob.run(["sh", "-c", "exit 0"])


def test_passes(procwire_client):
    assert procwire_client.run(["true"]).code == 0
"""


def doc_example() -> str:
    """The first Python block under "A complete example" in docs/testing.md."""
    text = DOC.read_text()
    match = re.compile(r"```python\n(.*?)```", re.DOTALL).search(text, text.index("### A complete example\n"))
    assert match is not None, "no Python block under 'A complete example'"
    return match.group(1)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=RUN_BOUND)


def test_the_documented_example_passes_as_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_my_tool=doc_example())
    result = run(pytester)
    result.assert_outcomes(passed=6)
    assert "LeftoverProcessWarning" not in result.stdout.str()


def test_a_failing_test_carries_the_server_log_and_a_passing_one_does_not(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_refused=FAILS_WITH_A_REFUSAL)
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "PermissionDenied" in output
    headers = re.findall(r"-+ procwire server log \(127\.0\.0\.1:\d+\) -+\n", output)
    assert len(headers) == 1, output  # the failing test's only: the passing one's report (-rA) has none
    section = output[output.index(headers[0]) : output.index("= PASSES =")]
    assert '"event":"refused"' in section and '"token":"bob"' in section, section


def test_a_process_left_behind_is_killed_and_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaves=LEAVES_A_PROCESS)
    result = run(pytester)
    result.assert_outcomes(passed=3, warnings=1)
    pid = int((pytester.path / "leftover.pid").read_text())
    output = result.stdout.str()
    assert "LeftoverProcessWarning" in output and "killed by the procwire_server fixture" in output, output
    assert f"pid {pid} (sleep 600; proc " in output and "kept)" in output, output
    assert not pid_exists(pid)


def test_a_process_left_behind_fails_its_test_when_the_warning_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaves=LEAVES_A_PROCESS)
    result = run(pytester, "-W", LEFTOVER_WARNING)
    result.assert_outcomes(passed=3, errors=1)  # at the first test's teardown, after the kill
    assert not pid_exists(int((pytester.path / "leftover.pid").read_text()))


def test_without_the_server_the_fixture_says_how_to_install_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import procwire_client.testing.launcher as launcher\n\n"
        "launcher.server_module = lambda command: None  # as in an environment without the server\n"
    )
    pytester.makepyfile(test_no_server="def test_needs_a_server(procwire_client):\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*not installed in this environment: pip install procwire*"])


def test_markers_and_ini_settings_are_checked(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nprocwire_settings =\n    KILL_GRACE=1\n")
    pytester.makepyfile(
        test_misused="""
import pytest


@pytest.mark.procwire_settings(scope="module")
def test_a_scope_pytest_has_but_the_plugin_does_not(procwire_server):
    pass


@pytest.mark.procwire_settings(PROCWIRE_KILL_GRACE=1)
def test_a_prefixed_name(procwire_server):
    pass


@pytest.mark.procwire_settings(KILL_GRACE="soon", scope="function")
def test_a_bad_value_stops_the_start_with_the_servers_line(procwire_server):
    pass
"""
    )
    result = run(pytester)
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*procwire_settings: scope='module', not one of session, function*",
            "*PROCWIRE_KILL_GRACE: name the setting without its prefix (KILL_GRACE)*",
            "*procwire exited with *",
            "*bad configuration*KILL_GRACE*",
        ]
    )
