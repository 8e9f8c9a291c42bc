"""Where the server is: the forms of its address a user may give, and the ones we use."""

from __future__ import annotations

import urllib.parse


def websocket_url(url: str) -> tuple[str, str | None]:
    """The server's WebSocket URL from what a user may paste, and the token it carried.

    ``http(s)://`` becomes ``ws(s)://``, a bare ``host:port`` gets ``ws://``, a
    path not ending in ``/ws`` gets it (``http://host:9999/`` -> ``ws://host:9999/ws``),
    and a ``?token=`` is taken out (it goes as a header, never in the URL).
    """
    if "://" not in url:
        url = "ws://" + url
    parts = urllib.parse.urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    query = urllib.parse.parse_qs(parts.query)
    token = query.pop("token", [None])[0]
    rest = urllib.parse.urlencode(query, doseq=True)
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, rest, "")), token


def http_base(url: str) -> str:
    """``ws://host:port/prefix/ws`` -> ``http://host:port/prefix``."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path[: -len("/ws")] if parts.path.endswith("/ws") else parts.path.rstrip("/")
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))
