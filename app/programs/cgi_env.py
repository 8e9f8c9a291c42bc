"""The environment a program sees: websocketd's CGI-style variables (RFC 3875 names).

Built from the request's WSGI environ (after ProxyFix, so ``REMOTE_ADDR`` is
the client's address behind nginx), the program's ``passenv`` list of the
server's own variables, and the program's ``env`` table, in that order.  The
token never reaches a program: the ``token`` query argument is cut out of
``QUERY_STRING`` and ``REQUEST_URI``, and ``Authorization`` is not passed on,
nor the auth proxy's secret header (``hidden_headers``).
Pure: no I/O, unit-tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

TOKEN_ARGUMENT = "token"
HIDDEN_HEADERS = frozenset({"HTTP_AUTHORIZATION"})
BLANK = ("AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "REMOTE_IDENT")  # websocketd sets them empty


@dataclass(frozen=True)
class Request:
    """What of one upgrade request a program's environment is made from."""

    environ: Mapping[str, Any]  # the WSGI environ
    script_name: str
    path_info: str
    remote_user: str | None  # the identity's name; None on a public program without a token
    unique_id: str
    software: str
    hidden_headers: frozenset[str] = HIDDEN_HEADERS  # environ names of the headers never passed on


def without_token(query: str) -> str:
    """The query string less every ``token=`` argument, the rest byte for byte as sent."""
    kept = [part for part in query.split("&") if unquote_plus(part.partition("=")[0]) != TOKEN_ARGUMENT]
    return "&".join(kept)


def program_environment(
    request: Request, server_variables: Mapping[str, str], passenv: tuple[str, ...], env: Mapping[str, str]
) -> dict[str, str]:
    """Every variable of the program's environment."""
    variables = {name: server_variables[name] for name in passenv if name in server_variables}
    variables.update(cgi_variables(request))
    variables.update(env)
    return variables


def cgi_variables(request: Request) -> dict[str, str]:
    environ = request.environ
    query = without_token(str(environ.get("QUERY_STRING", "")))
    uri = f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}"
    server_name, server_port = _server_name_and_port(environ)
    variables = dict.fromkeys(BLANK, "")
    variables.update(
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": request.software,
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "SERVER_PROTOCOL": str(environ.get("SERVER_PROTOCOL", "HTTP/1.1")),
            "REQUEST_METHOD": str(environ.get("REQUEST_METHOD", "GET")),
            "REQUEST_URI": f"{uri}?{query}" if query else uri,
            "SCRIPT_NAME": request.script_name,
            "PATH_INFO": request.path_info,
            "PATH_TRANSLATED": uri,  # websocketd's: the request's path (no file-system translation)
            "QUERY_STRING": query,
            "REMOTE_ADDR": str(environ.get("REMOTE_ADDR", "")),
            "REMOTE_HOST": str(environ.get("REMOTE_ADDR", "")),  # no reverse lookup, as websocketd by default
            "REMOTE_PORT": str(environ.get("REMOTE_PORT", "")),
            "REMOTE_USER": request.remote_user or "",
            "UNIQUE_ID": request.unique_id,
        }
    )
    if request.remote_user is not None:
        variables["AUTH_TYPE"] = "Bearer"
    if environ.get("wsgi.url_scheme") == "https":
        variables["HTTPS"] = "on"
    variables.update(_header_variables(environ, request.hidden_headers))
    return variables


def _server_name_and_port(environ: Mapping[str, Any]) -> tuple[str, str]:
    """From the Host header when there is one (what the client asked for), else the socket's."""
    host = str(environ.get("HTTP_HOST") or "")
    if host:
        name, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if colon and port.isdigit():
            return name, port
        default = "443" if environ.get("wsgi.url_scheme") == "https" else "80"
        return host, default
    return str(environ.get("SERVER_NAME", "")), str(environ.get("SERVER_PORT", ""))


def _header_variables(environ: Mapping[str, Any], hidden: frozenset[str]) -> dict[str, str]:
    """``HTTP_*`` for each request header, newlines made spaces; never the hidden ones."""
    return {
        name: " ".join(str(value).splitlines())
        for name, value in environ.items()
        if name.startswith("HTTP_") and name not in hidden
    }


def environ_name(header: str) -> str:
    """A header's WSGI environ name (``X-Secret`` is ``HTTP_X_SECRET``)."""
    return "HTTP_" + header.upper().replace("-", "_")
