"""The module's twin: desired properties from the deployment, reported properties to it."""

import json

from componentize_py_types import Err
from wit_world.imports import twin as _wit


class ReportError(Exception):
    """The host refused a reported patch (not an object, too large)."""


def desired():
    """The module's desired properties (its configuration) as a dict."""
    return json.loads(_wit.desired())


def report(patch):
    """Merges `patch` (a dict) into the module's reported properties."""
    try:
        _wit.report(json.dumps(patch, separators=(",", ":")))
    except Err as e:
        raise ReportError(e.value) from None
