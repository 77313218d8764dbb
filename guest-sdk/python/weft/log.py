"""Records for the host's log, tagged with the service (`weft:protocol/log`),
and Twisted's log (`twisted.logger`, `twisted.python.log`) sent there."""

import sys

from wit_world.imports import log as _log

# Set by the first call into the component: until then the program is
# being built, and its log goes to the build's output.
serving = False


def debug(message):
    _log.log(_log.Level.DEBUG, message)


def info(message):
    _log.log(_log.Level.INFO, message)


def warn(message):
    _log.log(_log.Level.WARN, message)


def error(message):
    _log.log(_log.Level.ERROR, message)


def _observe(event):
    """A Twisted log observer: one host record per event, a failure's
    traceback on the same line (file names and line numbers; the sandbox
    has no source to quote)."""
    from twisted.logger import LogLevel, formatEvent

    failure = event.get("log_failure")
    if failure is None and event.get("log_format") == "{log_io}":
        # A line written to a log file (twisted.web's access log, one per
        # request): the line is the text, without formatEvent's parsing of
        # the format string, a sixth of a small request's time.
        text = event["log_io"]
    else:
        text = formatEvent(event)
    if failure is not None:
        frames = [line.strip() for line in failure.getTraceback().splitlines() if line.strip()]
        text = f"{text} ({' | '.join(frames)})"
    if not serving:
        print(text, file=sys.stderr)
        return
    level = event.get("log_level")
    if level in (LogLevel.error, LogLevel.critical):
        error(text)
    elif level == LogLevel.warn:
        warn(text)
    elif level == LogLevel.debug:
        debug(text)
    else:
        info(text)


def begin_twisted_logging():
    """Send Twisted's log events here; otherwise Twisted buffers them in
    the guest's memory until someone begins logging."""
    from twisted.logger import globalLogBeginner, globalLogPublisher
    from twisted.python import log as legacy

    globalLogBeginner.beginLoggingTo([_observe], redirectStandardIO=False)
    _write_lines_straight(legacy.logfile, globalLogPublisher)


def _write_lines_straight(logfile, publisher):
    """Have `logfile` (twisted.python.log's, where twisted.web writes its
    access log, a line per request) send each line to the host at INFO
    while `_observe` is the only observer: the record `_observe` would
    make, without building and publishing an event for it, which took a
    sixth of a small request's time. With another observer added, the
    lines go through Twisted's log as before."""
    twisteds_write = logfile.write

    def write(message):
        observers = publisher._observers
        if not serving or len(observers) != 1 or observers[0] is not _observe:
            return twisteds_write(message)
        if logfile.closed:
            raise ValueError("I/O operation on closed file")
        text = message.decode(logfile._encoding) if isinstance(message, bytes) else message
        *lines, logfile._buffer = (logfile._buffer + text).split("\n")
        for line in lines:
            info(line)

    logfile.write = write
