"""Connections and processes: one interface (:mod:`.base`), kept in this
worker's memory (:mod:`.local`) or shared through Redis (:mod:`app.cluster`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from app.registry.base import Registry

EXTENSION = "procwire.registry"


def registry_of(app: Flask) -> Registry:
    """The registry ``create_app`` made for this app."""
    registry: Registry = app.extensions[EXTENSION]
    return registry
