"""Sharing from the Python clients and the CLI, against the real server (the session's default server)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator

import pytest

import procwire_client as pw
from tests.client import read_close
from tests.server import Server, wait_until
from tests.sharing_support import share_connection
from tests.test_cli_support import BOUND, COMMAND, Terminal, cli_env, opened_terminals, procwire, procwire_line


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    yield from opened_terminals()


def test_sync_client_shares_attaches_in_view_mode_and_unshares(server: Server) -> None:
    with pw.Client(server.url, server.token) as owner:
        process = owner.start(["cat"], on_disconnect="keep")
        share = owner.share(process, expires_in=120, single_use=False)
        assert share.mode == "view" and share.expires_at == pytest.approx(time.time() + 120, abs=30)
        url, token = pw.share_link(share.url)
        with pw.Client(url, token) as guest:
            assert guest.hello["identity"]["share"] == {"id": share.id, "proc": process.proc, "mode": "view"}
            watched = guest.attach(process.proc)
            assert watched.attachment is not None and watched.attachment.extra["mode"] == "view"
            with pytest.raises(pw.PermissionDenied):
                guest.call("write", {"proc": process.proc, "data": "no\n"})
            process.write("shared line\n")
            stream, data = next(iter(watched))
            assert (stream, data) == ("stdout", b"shared line\n")
            owner.unshare(share.id)
        with pytest.raises(pw.AuthenticationError):
            pw.Client(url, token).close()
        viewer = owner.attach(process.proc, mode="view")
        assert viewer.attachment is not None and viewer.attachment.extra["mode"] == "view"
        with pytest.raises(pw.PermissionDenied):
            viewer.kill()
        viewer.detach()
        owner.kill(process.proc)


def test_async_client_shares_and_attaches_with_a_mode(server: Server) -> None:
    async def scenario() -> None:
        async with pw.AsyncClient(server.url, server.token) as owner:
            process = await owner.start(["cat"], on_disconnect="keep")
            share = await owner.share(process.proc, mode="control")
            url, token = pw.share_link(share.url)
            async with pw.AsyncClient(url, token) as guest:
                driven = await guest.attach(process.proc, mode="control")
                await driven.write("driven\n")
                async for stream, data in driven:
                    assert (stream, data) == ("stdout", b"driven\n")
                    break
                with pytest.raises(pw.PermissionDenied):
                    await guest.attach(process.proc + 1000)
            await owner.unshare(share.id)
            await owner.call("kill", {"proc": process.proc})

    asyncio.run(asyncio.wait_for(scenario(), BOUND))


def test_cli_share_prints_a_link_attach_link_streams_and_unshare_revokes(server: Server) -> None:
    with pw.Client(server.url, server.token) as owner:
        process = owner.start(["sh", "-c", "echo before; read line; echo got $line"], on_disconnect="keep")
        shared = procwire(server, "share", str(process.proc), "--expires", "10m")
        assert shared.returncode == 0, shared.stderr
        link = shared.stdout.decode().strip()
        assert link.startswith("ws://127.0.0.1:") and "/ws?share=" in link
        share_id = shared.stderr.decode().split()[2].rstrip(":")
        watcher = subprocess.Popen(
            [*COMMAND, "attach", link], env=cli_env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            guest_seen = wait_until(lambda: len(owner.find(process.pid).extra["viewers"]) == 2, BOUND)
            assert guest_seen, owner.find(process.pid).extra["viewers"]
            process.write("it\n")
            out, err = watcher.communicate(timeout=BOUND)
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait(BOUND)
        assert (watcher.returncode, out) == (0, b"before\ngot it\n"), err
        assert procwire(server, "unshare", share_id).returncode == 0
        refused = procwire(server, "attach", link)
        assert refused.returncode == 1 and refused.stderr.startswith(b"procwire: "), refused.stderr


def test_cli_attach_with_a_view_link_shows_the_screen_and_ignores_keys(
    server: Server, terminals: list[Terminal]
) -> None:
    with pw.Client(server.url, server.token) as owner:
        process = owner.start(["sh"], pty=(24, 80), on_disconnect="keep", env={"PS1": "owner$ "})
        try:
            share = owner.share(process, mode="view")
            terminal = Terminal(f"{procwire_line('attach', share.url)}; echo rc=$?", cli_env(server))
            terminals.append(terminal)
            terminal.read_until("owner\\$")  # the current screen (its trailing blank is not drawn)
            terminal.write("echo typed by the viewer\r")
            process.write("echo from-the-owner\n")
            terminal.read_until("from-the-owner")
            owner.unshare(share.id)
            terminal.read_until("rc=[0-9]+")
        finally:
            owner.kill(process.proc)
        history = owner.attach(process.proc, offset=0)
        assert history.attachment is not None
        seen = b"".join(data for _stream, data in history)
        assert b"typed by the viewer" not in seen


def test_a_revoked_guest_connection_is_closed_by_code(server: Server) -> None:
    with pw.Client(server.url, server.token) as owner:
        process = owner.start(["cat"], on_disconnect="keep")
        share = owner.share(process)
        guest = share_connection(share.url)
        owner.unshare(share.id)
        assert read_close(guest.ws) == (4003, "share revoked")
        owner.call("kill", {"proc": process.proc})
