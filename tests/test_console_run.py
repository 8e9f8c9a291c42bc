"""The console's Run view in a real browser: output, colours, the two layouts, search, downloads,
buttons that follow the process, errors that belong to their start, attaching to others' processes."""

from __future__ import annotations

import re
from pathlib import Path

from tests.client import RpcClient
from tests.console_page import Console, eventually, expect, needs_chromium
from tests.server import Server

pytestmark = needs_chromium
pytest_plugins = ["tests.console_fixtures"]

ACTIONS = ["#stdin", "#send-stdin", "#close-stdin", "#signal", "#send-signal", "#kill"]
TIME = r"\d\d:\d\d:\d\d\.\d\d\d"


def test_echo_hello_shows_hello_and_exit_code_0_in_the_list(console: Console, console_server: Server) -> None:
    console.log_in(console_server.token)
    proc = console.run("echo hello")
    expect(console.page.locator("#stdout")).to_have_text("hello\n")
    expect(console.page.locator("#current-state")).to_have_text("exit 0")
    console.tab("processes")
    row = console.row(proc)
    expect(row.locator(".state")).to_have_text("exited")
    expect(row.locator(".exit")).to_have_text("exit 0")
    expect(row.locator(".command")).to_have_text("echo hello")


def test_stdout_and_stderr_are_shown_apart(console: Console, console_server: Server) -> None:
    console.log_in(console_server.token)
    console.run('sh -c \'echo hello; echo oops >&2; printf "%s\\n" "a b" c; exit 3\'')
    page = console.page
    expect(page.locator("#current-state")).to_have_text("exit 3")
    expect(page.locator("#stdout")).to_have_text("hello\na b\nc\n")
    expect(page.locator("#stderr")).to_have_text("oops\n")


def test_a_json_array_is_taken_as_argv(console: Console, console_server: Server) -> None:
    console.log_in(console_server.token)
    console.run('["printf", "%s|", "two words", "$HOME"]')
    expect(console.page.locator("#stdout")).to_have_text("two words|$HOME|")


def test_stdin_lines_close_stdin_and_signals(console: Console, console_server: Server) -> None:
    console.log_in(console_server.token)
    page = console.page
    console.run("cat")
    page.fill("#stdin", "typed line")
    page.press("#stdin", "Enter")
    expect(page.locator("#stdout")).to_have_text("typed line\n")
    expect(page.locator("#stdin")).to_have_value("")
    page.click("#close-stdin")
    expect(page.locator("#current-state")).to_have_text("exit 0")

    console.run("sleep 60")
    page.select_option("#signal", "SIGINT")
    page.click("#send-signal")
    expect(page.locator("#current-state")).to_have_text("killed by SIGINT")

    console.run("sleep 60")
    page.click("#kill")
    expect(page.locator("#current-state")).to_have_text("killed by SIGKILL")


def test_send_signal_and_kill_are_disabled_once_the_process_exits(console: Console, console_server: Server) -> None:
    console.log_in(console_server.token)
    page = console.page
    console.run("sleep 60")
    for selector in ACTIONS:
        expect(page.locator(selector)).to_be_enabled()
    page.click("#kill")
    expect(page.locator("#current-state")).to_have_text("killed by SIGKILL")
    for selector in ACTIONS:
        expect(page.locator(selector)).to_be_disabled()


def test_the_process_list_shows_state_and_exit_status(console: Console, console_server: Server) -> None:
    console.log_in(console_server.token)
    page = console.page
    done = console.run("echo hello")
    expect(page.locator("#current-state")).to_have_text("exit 0")
    failed = console.run("sh -c 'echo oops >&2; exit 3'")
    expect(page.locator("#current-state")).to_have_text("exit 3")
    sleeper = console.run("sleep 60")
    console.tab("processes")
    expect(console.row(done).locator(".exit")).to_have_text("exit 0")
    expect(console.row(failed).locator(".exit")).to_have_text("exit 3")
    expect(console.row(sleeper).locator(".state")).to_have_text("running")
    expect(console.row(sleeper).locator(".on-disconnect")).to_have_text("kill")
    console.row(sleeper).locator("button[data-action=kill]").click()  # the exit notification refreshes the list
    expect(console.row(sleeper).locator(".exit")).to_have_text("killed by SIGKILL")


def test_a_failed_start_is_shown_with_that_start_and_cleared_by_the_next(
    console: Console, console_server: Server
) -> None:
    console.log_in(console_server.token)
    page = console.page
    console.run("sh -c 'echo before; echo before-err >&2'")
    expect(page.locator("#stdout")).to_have_text("before\n")
    page.fill("#argv", "no-such-program-here --flag")
    page.click("#start")
    expect(page.locator("#run-error")).to_contain_text("executable not found")
    expect(page.locator("#current")).to_contain_text("no-such-program-here --flag")
    expect(page.locator("#current")).not_to_contain_text("before")
    expect(page.locator("#stdout")).to_have_text("")  # not the previous process's output under the error
    expect(page.locator("#stderr")).to_have_text("")
    for selector in ACTIONS:
        expect(page.locator(selector)).to_be_disabled()
    console.tab("processes")
    expect(page.locator("#message")).to_have_text("")  # the error stays with its view
    expect(page.get_by_text("executable not found")).to_be_hidden()
    console.run("echo after")
    expect(page.locator("#run-error")).to_be_hidden()
    expect(page.locator("#stdout")).to_have_text("after\n")


def test_ansi_colours_are_rendered_not_shown_as_codes(console: Console, console_server: Server) -> None:
    console.log_in(console_server.token)
    page = console.page
    console.run(r"""printf '\033[01;34mblue\033[0m plain \033[38;5;196mred\033[0m\n'""")
    expect(page.locator("#stdout")).to_have_text("blue plain red\n")
    blue = page.locator("#stdout span", has_text="blue")
    expect(blue).to_have_css("color", "rgb(97, 175, 239)")
    expect(blue).to_have_css("font-weight", "700")
    expect(page.locator("#stdout span", has_text="red")).to_have_css("color", "rgb(255, 0, 0)")


def test_interleaved_mode_shows_both_streams_in_order_with_times(console: Console, console_server: Server) -> None:
    console.log_in(console_server.token)
    page = console.page
    console.run("sh -c 'echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three'")
    expect(page.locator("#current-state")).to_have_text("exit 0")
    page.click("#mode-interleaved")
    lines = page.locator("#combined .line")
    expect(lines).to_have_count(3)
    texts = [text.strip() for text in lines.all_inner_texts()]
    parsed = [re.fullmatch(rf"{TIME} (out|err) (\w+)", text) for text in texts]
    assert [match.groups() if match else text for match, text in zip(parsed, texts, strict=True)] == [
        ("out", "one"),
        ("err", "two"),
        ("out", "three"),
    ]
    expect(page.locator("#combined .line.stderr .text")).to_have_text("two")
    page.reload()  # the choice stays
    expect(page.locator("#pane-combined")).to_be_visible()
    page.click("#mode-apart")
    expect(page.locator("#stdout")).to_be_visible()


def test_search_counts_highlights_and_steps_through_matches(console: Console, console_server: Server) -> None:
    console.log_in(console_server.token)
    page = console.page
    console.run("seq 1 300")
    expect(page.locator("#current-state")).to_have_text("exit 0")
    text = "".join(f"{n}\n" for n in range(1, 301))
    total = len(re.findall("15", text))
    page.fill("#search", "15")
    expect(page.locator("#search-count")).to_have_text(f"1 of {total}")
    assert page.evaluate("CSS.highlights.get('search').size") == total
    page.press("#search", "Enter")
    expect(page.locator("#search-count")).to_have_text(f"2 of {total}")
    page.click("#search-previous")
    page.click("#search-previous")
    expect(page.locator("#search-count")).to_have_text(f"{total} of {total}")
    page.fill("#search", "no such text")
    expect(page.locator("#search-count")).to_have_text("0 of 0")


def test_the_output_downloads_as_the_exact_bytes_or_as_a_transcript(
    console: Console, console_server: Server, tmp_path: Path
) -> None:
    console.log_in(console_server.token)
    page = console.page
    console.run(r"""sh -c 'printf "a\377b\033[31mred\n"; echo err >&2'""")
    expect(page.locator("#current-state")).to_have_text("exit 0")
    with page.expect_download() as stdout:
        page.click("[data-download=stdout]")
    assert Path(stdout.value.path()).read_bytes() == b"a\xffb\x1b[31mred\n"
    page.click("#mode-interleaved")
    with page.expect_download() as transcript:
        page.click("[data-download=transcript]")
    lines = Path(transcript.value.path()).read_text().splitlines()
    assert sorted(re.sub(TIME, "T", line) for line in lines) == ["T err err", "T out a\ufffdbred"], lines


def test_attach_to_a_kept_process_replays_its_output_then_follows_it(console: Console, console_server: Server) -> None:
    with RpcClient(console_server.url, console_server.token) as other:
        started = other.call(
            "start", argv=["sh", "-c", "echo early; read line; echo got $line"], on_disconnect="keep", name="kept"
        )
    proc = started["proc"]
    console.log_in(console_server.token)
    console.tab("processes")
    row = console.row(proc)
    expect(row.locator(".on-disconnect")).to_have_text("keep")
    row.locator("button[data-action=attach]").click()
    page = console.page
    expect(page.locator("#view-run")).to_be_visible()
    expect(page.locator("#stdout")).to_have_text("early\n")  # replayed from the server's buffer
    page.fill("#stdin", "more")
    page.press("#stdin", "Enter")
    expect(page.locator("#stdout")).to_have_text("early\ngot more\n")
    expect(page.locator("#current-state")).to_have_text("exit 0")


def test_a_process_the_cli_started_with_binary_output_shows_its_output_live(
    console: Console, console_server: Server
) -> None:
    """The CLI asks for binary frames; the page gets its own format (or decodes the frames)."""
    script = "i=0; while [ $i -lt 3 ]; do i=$((i+1)); echo tick-$i; done; echo oops >&2; read line; echo got-$line"
    with RpcClient(console_server.url, console_server.token) as cli:
        proc = cli.call("start", argv=["sh", "-c", script], binary=True, on_disconnect="keep")["proc"]
        cli.call("detach", proc=proc)
    console.log_in(console_server.token)
    console.tab("processes")
    console.row(proc).locator("button[data-action=attach]").click()
    page = console.page
    expect(page.locator("#stdout")).to_have_text("tick-1\ntick-2\ntick-3\n")
    expect(page.locator("#stderr")).to_have_text("oops\n")
    page.fill("#stdin", "live")
    page.press("#stdin", "Enter")
    expect(page.locator("#stdout")).to_have_text("tick-1\ntick-2\ntick-3\ngot-live\n")
    expect(page.locator("#current-state")).to_have_text("exit 0")
    eventually(lambda: page.locator("#kill").is_disabled(), "Kill disabled after the exit")
