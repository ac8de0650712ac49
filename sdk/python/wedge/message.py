"""One message: telemetry to the hub, or a message routed between modules."""

import json

from wit_world.imports import types


class Message:
    """A message's body (bytes) and its application properties (str -> str).

    `content_type` and `content_encoding` are the IoT Hub system properties of the same names
    (e.g. `application/json` and `utf-8`); `None` leaves them unset.
    """

    __slots__ = ("body", "properties", "content_type", "content_encoding")

    def __init__(self, body=b"", properties=None, content_type=None, content_encoding=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.body = bytes(body)
        self.properties = dict(properties or {})
        self.content_type = content_type
        self.content_encoding = content_encoding

    @classmethod
    def of_json(cls, value, properties=None):
        """A UTF-8 JSON body with `content-type` application/json."""
        body = json.dumps(value, separators=(",", ":")).encode("utf-8")
        return cls(body, properties, "application/json", "utf-8")

    def json(self):
        """The body parsed as JSON; `ValueError` names what is wrong with it."""
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise ValueError(f"body is not JSON: {e}") from None

    def text(self):
        """The body as UTF-8 text."""
        return self.body.decode("utf-8")

    def with_property(self, key, value):
        """This message with one more application property (replacing one of the same key)."""
        properties = dict(self.properties)
        properties[str(key)] = str(value)
        return Message(self.body, properties, self.content_type, self.content_encoding)

    def __repr__(self):
        return f"Message({self.body!r}, {self.properties!r})"

    # The WIT record and back; the order of properties is kept.
    @classmethod
    def _from_wit(cls, msg):
        return cls(msg.body, dict(msg.properties), msg.content_type, msg.content_encoding)

    def _to_wit(self):
        properties = [(str(k), str(v)) for k, v in self.properties.items()]
        return types.Message(self.body, properties, self.content_type, self.content_encoding)
