"""Files into and out of a terminal session through the console, in a real browser: exact bytes
(not UTF-8, larger than one write), in the session's current directory, refusals said."""

from __future__ import annotations

from pathlib import Path

from tests.console_page import Console, expect, needs_chromium
from tests.server import Server

pytestmark = needs_chromium
pytest_plugins = ["tests.console_fixtures"]

# Every byte value, invalid UTF-8 included, over several writes (the test server's MAX_STDIN_CHUNK is 64 KiB).
PAYLOAD = bytes(range(256)) * 700 + b"\xff\xfe\x80 end"


def in_directory(console: Console, directory: Path) -> None:
    """The session's shell moves there: transfers go where the shell is, not where it started."""
    console.tab("terminal")
    console.running_terminal()
    console.type_in_terminal(f"cd {directory} && echo in-$((1+1))")
    console.wait_for_line("in-2")


def test_upload_writes_the_exact_bytes_into_the_sessions_directory(
    console: Console, console_server: Server, tmp_path: Path
) -> None:
    page = console.page
    console.log_in(console_server.token)
    in_directory(console, tmp_path)
    page.set_input_files(
        "#upload-file", files=[{"name": "blob.bin", "mimeType": "application/octet-stream", "buffer": PAYLOAD}]
    )
    expect(page.locator("#transfer-status")).to_have_text(f"uploaded {tmp_path}/blob.bin ({len(PAYLOAD)} bytes)")
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD


def test_download_saves_the_exact_bytes_of_a_file_in_the_session(
    console: Console, console_server: Server, tmp_path: Path
) -> None:
    page = console.page
    (tmp_path / "data.bin").write_bytes(PAYLOAD)
    console.log_in(console_server.token)
    in_directory(console, tmp_path)
    page.click("#download")
    page.fill("#download-path", "data.bin")
    with page.expect_download() as download:
        page.click("#download-go")
    assert download.value.suggested_filename == "data.bin"
    assert Path(download.value.path()).read_bytes() == PAYLOAD
    expect(page.locator("#transfer-status")).to_have_text(f"downloaded data.bin ({len(PAYLOAD)} bytes)")


def test_transfers_that_fail_say_why(console: Console, console_server: Server, tmp_path: Path) -> None:
    page = console.page
    console.log_in(console_server.token)
    (tmp_path / "taken").mkdir()
    in_directory(console, tmp_path)
    page.click("#download")
    page.fill("#download-path", "missing.bin")
    page.click("#download-go")
    expect(page.locator("#transfer-status")).to_contain_text("missing.bin: No such file or directory")
    expect(page.locator("#transfer-status")).to_have_class("error")
    page.set_input_files("#upload-file", files=[{"name": "taken", "mimeType": "text/plain", "buffer": b"x" * 100_000}])
    expect(page.locator("#transfer-status")).to_contain_text("upload of taken failed")
    expect(page.locator("#transfer-status")).to_contain_text("Is a directory")
