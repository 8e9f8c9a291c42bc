"""Make a new token: ``procwire-token NAME [--role user|admin]``, ``procwire token NAME``
or ``python -m config.token NAME``.

Prints the token, to give to its holder once, and the ``[[tokens]]`` table to
paste into the TOML file named by ``PROCWIRE_CONFIG``.  The file keeps only
the token's SHA-256, so reading the file does not reveal the token.

``procwire-token --new-dev-token`` (``make run NEW_TOKEN=1``) replaces the
development token of the server these settings describe (config/devtoken.py).
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
from typing import TextIO

from config.settings import TOKEN_NAME

TOKEN_BYTES = 32  # 256 bits of randomness, 43 URL-safe characters


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def toml_entry(name: str, role: str, token: str) -> str:
    return f'[[tokens]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{sha256_hex(token)}"\n'


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a token, or None."""
    if TOKEN_NAME.fullmatch(name):
        return None
    return f"{name!r}: letters, digits and _.@- only, 64 at most, not starting with one of _.@-"


def print_new_token(name: str, role: str, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    token = new_token()
    print(f"New token for {name} (role {role}); give it to its holder, it is not shown again:\n", file=out)
    print(f"    {token}\n", file=out)
    print("Add these lines to the TOML file named by PROCWIRE_CONFIG, then restart procwire:\n", file=out)
    print(toml_entry(name, role, token), end="", file=out)


def _name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def new_dev_token(out: TextIO | None = None) -> int:
    """Replace the development token of the server that ``PROCWIRE_*`` and the TOML file describe."""
    from config.devtoken import dev_token_file, regenerate
    from config.settings import ConfigError, load_settings
    from config.state import StateError

    out = out or sys.stdout
    try:
        settings = load_settings()
        path = dev_token_file(settings.STATE_DIR, settings.BIND)
        regenerate(path)
    except (ConfigError, StateError, OSError) as error:
        print(f"procwire-token: {error}", file=sys.stderr)
        return 1
    print(f"New development token for {settings.BIND} in {path}: (re)start the server to use it.", file=out)
    if settings.TOKEN:
        print("Note: TOKEN is set, and a set TOKEN wins over the development token.", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="procwire-token",
        description="Print a new procwire token and the TOML lines that grant it.",
        epilog="examples: procwire-token alice | procwire-token ops --role admin | procwire-token --new-dev-token",
    )
    parser.add_argument(
        "name", type=_name, nargs="?", help="who holds the token: shown in the audit log and in owner fields"
    )
    parser.add_argument("--role", choices=("user", "admin"), default="user", help="default: user")
    parser.add_argument(
        "--new-dev-token",
        action="store_true",
        help="replace the development token that a server without TOKEN keeps in STATE_DIR (make run NEW_TOKEN=1)",
    )
    args = parser.parse_args(argv)
    if args.new_dev_token:
        return new_dev_token()
    if args.name is None:
        parser.error("give the NAME of the token's holder, or --new-dev-token")
    print_new_token(args.name, args.role)
    return 0


if __name__ == "__main__":
    sys.exit(main())
