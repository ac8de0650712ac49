"""The module's durable state: keys and values kept in the host's store across restarts, within
the module's quota."""

import json

from componentize_py_types import Err
from wit_world.imports import state as _wit


class StateError(Exception):
    """The host refused to store a value (quota exceeded, key too long)."""


def get(key):
    """The bytes stored under `key`, or `None`."""
    return _wit.get(key)


def set(key, value):
    """Stores `value` (bytes or str) under `key`; returns once it is on disk."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    try:
        _wit.set(key, bytes(value))
    except Err as e:
        raise StateError(e.value) from None


def delete(key):
    """Removes `key`; nothing happens if it is absent."""
    _wit.delete(key)


def get_json(key, default=None):
    """The JSON value stored under `key`, or `default` when there is none."""
    raw = _wit.get(key)
    return default if raw is None else json.loads(raw)


def set_json(key, value):
    """Stores `value` as JSON under `key`."""
    set(key, json.dumps(value, separators=(",", ":")))
