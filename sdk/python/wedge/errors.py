"""What the host refuses, as Python exceptions."""

from wit_world.imports import types


class SendError(Exception):
    """`telemetry.send` refused the message; it was not accepted anywhere.

    `kind` is one of `no-route` (no route from the output: `detail` names it), `too-large`
    (`detail` is the limit in bytes), `full` (a destination is full; try again later) and
    `invalid` (`detail` says why).
    """

    def __init__(self, kind, detail=None):
        self.kind = kind
        self.detail = detail
        super().__init__(kind if detail is None else f"{kind}: {detail}")

    @classmethod
    def _from_wit(cls, error):
        if isinstance(error, types.SendError_NoRoute):
            return cls("no-route", error.value)
        if isinstance(error, types.SendError_TooLarge):
            return cls("too-large", error.value)
        if isinstance(error, types.SendError_Full):
            return cls("full")
        return cls("invalid", getattr(error, "value", None))
