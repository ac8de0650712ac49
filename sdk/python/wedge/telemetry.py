"""Sending messages out of the module: the host's routes decide where they go."""

from componentize_py_types import Err
from wit_world.imports import telemetry as _wit

from .errors import SendError
from .message import Message


def send(output, msg):
    """Sends `msg` (a `Message`) on `output`; returns once every destination accepted it
    (for `$upstream`: on disk). Raises `SendError` when it was accepted nowhere."""
    try:
        _wit.send(output, msg._to_wit())
    except Err as e:
        raise SendError._from_wit(e.value) from None


def send_batch(output, msgs):
    """Sends several messages in order, all or none (one disk write for `$upstream`)."""
    try:
        _wit.send_batch(output, [m._to_wit() for m in msgs])
    except Err as e:
        raise SendError._from_wit(e.value) from None


def send_json(output, value, properties=None):
    """Sends `value` as a JSON message (content type application/json, UTF-8)."""
    send(output, Message.of_json(value, properties))
