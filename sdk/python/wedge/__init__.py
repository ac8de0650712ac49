"""The wedge SDK for Python modules.

A wedge module is a WebAssembly component built with `componentize-py` against `wit/wedge.wit`
(world `edge-module`). With this package a module is one class::

    import wedge

    class Doubler(wedge.Module):
        def init(self, config):
            self.factor = config.get("factor", 2)

        def on_message(self, input, msg):
            reading = msg.json()
            wedge.telemetry.send_json("out", {"value": reading["value"] * self.factor})

    Module = wedge.export(Doubler)

`wedge.export` returns the class `componentize-py` looks for (named `Module`, the WIT export).
componentize-py may make a new instance of that class for every call, so it keeps the module's
one long-lived object itself: `init` creates it, every later call goes to the same object.

Any exception a handler raises becomes the call's error (the host logs it and counts it); the
module keeps running, as a Rust module returning `Err` does.
"""

from . import log, state, telemetry, twin
from .errors import SendError
from .message import Message
from .module import Module, Response, export

__all__ = ["Module", "Message", "Response", "SendError", "export", "log", "state", "telemetry", "twin"]
