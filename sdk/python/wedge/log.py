"""Log records: kept in the module's log ring (`wedge logs`) and the host's log, at the
module's rate (lines over it are counted, not kept). `print` goes to the same place as `info`
lines of stdout."""

from wit_world.imports import log as _wit
from wit_world.imports.log import Level


def trace(message):
    _wit.log(Level.TRACE, str(message))


def debug(message):
    _wit.log(Level.DEBUG, str(message))


def info(message):
    _wit.log(Level.INFO, str(message))


def warn(message):
    _wit.log(Level.WARN, str(message))


def error(message):
    _wit.log(Level.ERROR, str(message))
