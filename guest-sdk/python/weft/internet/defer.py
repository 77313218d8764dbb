"""Deferred results, as Twisted has them (twisted.internet.defer): a chain
of callbacks and errbacks run when a result arrives, `succeed`, `fail`,
`maybeDeferred` and `inlineCallbacks`."""

import functools
import types

from weft import log
from weft.python.failure import Failure


class AlreadyCalledError(Exception):
    """A Deferred was given a result twice."""


class CancelledError(Exception):
    """A Deferred was cancelled."""


def _passthru(result):
    return result


class Deferred:
    """A result that is not there yet. Callbacks added before or after it
    arrives run in order, each given the result of the one before; an
    exception (or a returned Failure) switches the chain to errbacks, and a
    returned Deferred pauses the chain until it has a result."""

    def __init__(self, canceller=None):
        self.callbacks = []
        self.called = False
        self.result = None
        self._canceller = canceller
        self._paused = 0
        self._running = False

    def addCallbacks(self, callback, errback=None, callbackArgs=(), callbackKeywords=None,
                     errbackArgs=(), errbackKeywords=None):
        self.callbacks.append((
            (callback, callbackArgs, callbackKeywords or {}),
            (errback or _passthru, errbackArgs, errbackKeywords or {}),
        ))
        if self.called:
            self._run()
        return self

    def addCallback(self, callback, *args, **kwargs):
        return self.addCallbacks(callback, _passthru, callbackArgs=args, callbackKeywords=kwargs)

    def addErrback(self, errback, *args, **kwargs):
        return self.addCallbacks(_passthru, errback, errbackArgs=args, errbackKeywords=kwargs)

    def addBoth(self, callback, *args, **kwargs):
        return self.addCallbacks(callback, callback, callbackArgs=args, callbackKeywords=kwargs,
                                 errbackArgs=args, errbackKeywords=kwargs)

    def callback(self, result):
        """Give the Deferred its result and run the chain."""
        if isinstance(result, Deferred):
            raise TypeError("a Deferred's result cannot be a Deferred")
        self._start(result)

    def errback(self, fail=None):
        """Give the Deferred a failure and run the chain."""
        if fail is None:
            fail = Failure(CancelledError())
        elif not isinstance(fail, Failure):
            fail = Failure(fail)
        self._start(fail)

    def cancel(self):
        """Stop waiting: the canceller runs, then, unless it gave a result,
        the chain fails with CancelledError."""
        if self.called:
            return
        if self._canceller is not None:
            self._canceller(self)
        if not self.called:
            self.errback(Failure(CancelledError()))

    def _start(self, result):
        if self.called:
            raise AlreadyCalledError()
        self.called = True
        self.result = result
        self._run()

    def _continue(self, result):
        self.result = result
        self._paused -= 1
        self._run()

    def _run(self):
        if self._running or self._paused:
            return
        self._running = True
        try:
            while self.callbacks and not self._paused:
                callback, errback = self.callbacks.pop(0)
                function, args, kwargs = errback if isinstance(self.result, Failure) else callback
                try:
                    self.result = function(self.result, *args, **kwargs)
                except Exception as error:
                    self.result = Failure(error)
                if isinstance(self.result, Deferred):
                    inner, self.result = self.result, None
                    self._paused += 1
                    inner.addBoth(self._continue)
        finally:
            self._running = False
        if not self.callbacks and not self._paused and isinstance(self.result, Failure):
            self._unhandled = self.result

    def __del__(self):
        unhandled = getattr(self, "_unhandled", None)
        if unhandled is not None and isinstance(self.result, Failure):
            log.error(f"Unhandled error in Deferred: {unhandled}")

    def __repr__(self):
        state = f"current result: {self.result!r}" if self.called else "waiting"
        return f"<Deferred at {id(self):#x} {state}>"


def succeed(result):
    """A Deferred that already has `result`."""
    d = Deferred()
    d.callback(result)
    return d


def fail(result=None):
    """A Deferred that already failed with `result`."""
    d = Deferred()
    d.errback(result)
    return d


def maybeDeferred(f, *args, **kwargs):
    """Call `f`; its result, exception or Deferred, as a Deferred."""
    try:
        result = f(*args, **kwargs)
    except Exception as error:
        return fail(Failure(error))
    if isinstance(result, Deferred):
        return result
    if isinstance(result, Failure):
        return fail(result)
    return succeed(result)


def inlineCallbacks(f):
    """Write a chain of Deferreds as a generator: `yield` a Deferred to
    wait for its result (or have its failure raised); `return` the
    generator's result."""

    @functools.wraps(f)
    def run(*args, **kwargs):
        try:
            generator = f(*args, **kwargs)
        except Exception as error:
            return fail(Failure(error))
        if not isinstance(generator, types.GeneratorType):
            return succeed(generator)
        result = Deferred()
        _step(generator, result, None)
        return result

    return run


def _step(generator, result, sent):
    while True:
        try:
            if isinstance(sent, Failure):
                yielded = generator.throw(sent.value)
            else:
                yielded = generator.send(sent)
        except StopIteration as stop:
            result.callback(stop.value)
            return
        except Exception as error:
            result.errback(Failure(error))
            return
        if not isinstance(yielded, Deferred):
            sent = yielded
            continue
        waiting = []

        def resume(value, waiting=waiting):
            if waiting:
                _step(generator, result, value)
            else:
                waiting.append(value)

        yielded.addBoth(resume)
        if not waiting:
            # Not there yet: `resume` carries on when it is.
            waiting.append(None)
            return
        sent = waiting[0]
