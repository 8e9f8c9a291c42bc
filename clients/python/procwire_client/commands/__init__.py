"""The ``procwire`` subcommands, one module per family.

Each module has a ``register(commands, common)`` that adds its subparsers
(with a description and examples) to the top-level parser; :mod:`procwire_client.cli`
puts them together and turns errors into exit codes.
"""
