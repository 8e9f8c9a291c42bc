"""Make a new token: ``procwire-token NAME [--role user|admin]`` (or ``python -m config.token``).

Prints the token, to give to its holder once, and the ``[[tokens]]`` table to
paste into the TOML file named by ``PROCWIRE_CONFIG``.  The file keeps only
the token's SHA-256, so reading the file does not reveal the token.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys

from config.settings import TOKEN_NAME

TOKEN_BYTES = 32  # 256 bits of randomness, 43 URL-safe characters


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def toml_entry(name: str, role: str, token: str) -> str:
    return f'[[tokens]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{sha256_hex(token)}"\n'


def _name(value: str) -> str:
    if not TOKEN_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: letters, digits and _.@- only, 64 at most, not starting with one of _.@-"
        )
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="procwire-token", description="Print a new procwire token and the TOML lines that grant it."
    )
    parser.add_argument("name", type=_name, help="who holds the token: shown in the audit log and in owner fields")
    parser.add_argument("--role", choices=("user", "admin"), default="user", help="default: user")
    args = parser.parse_args(argv)
    token = new_token()
    print(f"New token for {args.name} (role {args.role}); give it to its holder, it is not shown again:\n")
    print(f"    {token}\n")
    print("Add these lines to the TOML file named by PROCWIRE_CONFIG, then restart procwire:\n")
    print(toml_entry(args.name, args.role, token), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
