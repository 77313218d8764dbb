"""Records for the host's log, tagged with the service (`weft:protocol/log`)."""

from wit_world.imports import log as _log


def debug(message):
    _log.log(_log.Level.DEBUG, message)


def info(message):
    _log.log(_log.Level.INFO, message)


def warn(message):
    _log.log(_log.Level.WARN, message)


def error(message):
    _log.log(_log.Level.ERROR, message)
