"""Example module in Python: the `filter` module's behaviour, ported.

A message on any input whose JSON body has a number at `field` (default `temperature`) greater
than `threshold` goes out unchanged on output `alerts`, with the extra property `filter-seen`:
how many messages this instance has received since `init` (kept in memory only, so it shows
whether the host restarted the module). The settings in effect are reported to the twin. The
number of alerts ever sent is kept in the module's state (`alerts`), across restarts; the
`stats` method answers `{"seen": …, "alerts": …}`.
"""

import wedge

OUTPUT = "alerts"


class Settings:
    def __init__(self, config):
        threshold = config.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(f"`threshold` must be a number, got {threshold!r}")
        field = config.get("field", "temperature")
        if not isinstance(field, str):
            raise ValueError(f"`field` must be a string, got {field!r}")
        self.threshold = float(threshold)
        self.field = field

    def report(self):
        # Best effort: the settings are valid and applied either way.
        try:
            wedge.twin.report({"threshold": self.threshold, "field": self.field})
        except wedge.twin.ReportError as e:
            wedge.log.warn(f"cannot report settings to the twin: {e}")


class Filter(wedge.Module):
    def init(self, config):
        self.settings = Settings(config)
        self.settings.report()
        self.seen = 0

    def on_config(self, config):
        # Parsed in full before anything changes, so a rejected config leaves the old one.
        settings = Settings(config)
        settings.report()
        self.settings = settings

    def on_message(self, input, msg):
        self.seen += 1
        field = self.settings.field
        try:
            body = msg.json()
        except ValueError as e:
            raise ValueError(f"message on input `{input}`: {e}") from None
        if field not in body:
            raise ValueError(f"message on input `{input}`: body has no field `{field}`")
        value = body[field]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"message on input `{input}`: field `{field}` is not a number: {value!r}")
        if value > self.settings.threshold:
            wedge.telemetry.send(OUTPUT, msg.with_property("filter-seen", self.seen))
            wedge.state.set_json("alerts", wedge.state.get_json("alerts", 0) + 1)

    def on_method(self, name, payload):
        if name == "stats":
            return {"seen": self.seen, "alerts": wedge.state.get_json("alerts", 0)}
        return super().on_method(name, payload)


Module = wedge.export(Filter)
