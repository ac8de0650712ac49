"""The class a module extends, and `export`, which turns it into the component's export."""

import json
import sys
import traceback

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.module import MethodResponse

from .message import Message

NOT_INITIALISED = "module not initialised"


class Response:
    """A direct method's answer with a status other than 200: `Response(404, {"error": ...})`."""

    __slots__ = ("status", "value")

    def __init__(self, status, value=None):
        self.status = int(status)
        self.value = value


class Module:
    """A wedge module. The host calls one method at a time, never concurrently; one object
    lives from `init` until the host restarts or replaces the module.

    Override what the module needs; the defaults accept and ignore everything (and answer
    methods with 404). Raising an exception reports it as the call's error: from `init` it stops
    the module, from `on_config` it rejects the new configuration (the old one stays active:
    validate everything before changing `self`).
    """

    def init(self, config):
        """Called once with the configuration (a dict: the deployment's `config` overlaid with
        the twin's desired properties)."""

    def on_config(self, config):
        """Called with a changed configuration (a dict)."""

    def on_message(self, input, msg):
        """Called for each message (a `Message`) routed to the input `input`."""

    def on_tick(self):
        """Called every `tick-ms` milliseconds when the deployment sets it."""

    def on_method(self, name, payload):
        """Answers a direct method; `payload` is the parsed JSON request. The return value is
        the JSON answer with status 200; return `Response(status, value)` for another status."""
        return Response(404, {"error": f"method `{name}` is not implemented"})


def _config(text):
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"configuration is not a JSON object: {text[:100]}")
    return value


def _describe(e):
    """One line for the host's log: the exception's type and message, and where it was raised."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
    return f"{type(e).__name__}: {e}{where}"


def export(cls):
    """The export class componentize-py instantiates (bind it to the name `Module` in the
    module's app file). It delegates every call to one instance of `cls`, made by `init`."""
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise TypeError("wedge.export takes a subclass of wedge.Module")

    # The one long-lived object: componentize-py may create a new export object per call, so
    # the instance lives here, not on `self`.
    slot = []

    def call(f):
        try:
            return f()
        except Err:
            raise
        except Exception as e:  # every failure becomes the call's error, never a trap
            # The whole traceback for the module's log (stderr is its log); one line for the
            # call's error, which `wedge status` shows.
            traceback.print_exception(e, file=sys.stderr)
            raise Err(_describe(e)) from None

    def instance():
        if not slot:
            raise Err(NOT_INITIALISED)
        return slot[0]

    class Export(exports.Module):
        def init(self, config):
            # A failing `init` leaves the module uninitialised, not half-replaced.
            slot.clear()

            def make():
                module = cls()
                module.init(_config(config))
                return module

            slot.append(call(make))

        def on_config(self, config):
            module = instance()
            call(lambda: module.on_config(_config(config)))

        def on_message(self, input, msg):
            module = instance()
            call(lambda: module.on_message(input, Message._from_wit(msg)))

        def on_tick(self):
            module = instance()
            call(module.on_tick)

        def on_method(self, name, payload):
            module = instance()

            def answer():
                request = json.loads(payload) if payload.strip() else None
                result = module.on_method(name, request)
                if isinstance(result, Response):
                    return MethodResponse(result.status, json.dumps(result.value))
                return MethodResponse(200, json.dumps(result))

            return call(answer)

    Export.__name__ = "Module"
    Export.__qualname__ = "Module"
    return Export
