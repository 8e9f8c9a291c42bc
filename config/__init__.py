"""procwire configuration: defaults, a TOML file, then ``PROCWIRE_*`` variables.

This package imports nothing but the standard library and pydantic, so that
``gunicorn.conf.py`` can read the same settings in the (unpatched) master
process without importing the application.
"""

from config.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
