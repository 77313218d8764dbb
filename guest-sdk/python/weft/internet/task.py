"""Repeated and deferred calls (twisted.internet.task): LoopingCall and
deferLater, over the host's timers."""

from weft.internet import defer, reactor as _reactor


class LoopingCall:
    """Call `f(*a, **kw)` every `interval` seconds, on the interval's grid
    from `start`, skipping beats that were missed. A call that raises, or
    returns a Deferred that fails, stops the loop and fails the Deferred
    `start` returned; `stop` fires it with the LoopingCall."""

    call = None
    running = False
    interval = None
    starttime = None

    def __init__(self, f, *a, **kw):
        self.f, self.a, self.kw = f, a, kw
        self.clock = _reactor

    def start(self, interval, now=True):
        assert not self.running, "Tried to start an already running LoopingCall."
        if interval < 0:
            raise ValueError("interval must be >= 0")
        self.running = True
        self._deferred = defer.Deferred()
        self.starttime = self.clock.seconds()
        self.interval = interval
        if now:
            self()
        else:
            self._schedule()
        return self._deferred

    def stop(self):
        assert self.running, "Tried to stop a LoopingCall that was not running."
        self.running = False
        if self.call is not None:
            self.call.cancel()
            self.call = None
        d, self._deferred = self._deferred, None
        d.callback(self)

    def reset(self):
        assert self.running, "Tried to reset a LoopingCall that was not running."
        if self.call is not None:
            self.call.cancel()
        self.starttime = self.clock.seconds()
        self._schedule()

    def __call__(self):
        self.call = None
        d = defer.maybeDeferred(self.f, *self.a, **self.kw)

        def again(_):
            if self.running:
                self._schedule()

        def failed(failure):
            self.running = False
            d, self._deferred = self._deferred, None
            d.errback(failure)

        d.addCallbacks(again, failed)

    def _schedule(self):
        if self.interval == 0:
            self.call = self.clock.callLater(0, self)
            return
        now = self.clock.seconds()
        beats = int((now - self.starttime) / self.interval) + 1
        self.call = self.clock.callLater(self.starttime + beats * self.interval - now, self)


def deferLater(clock, delay, callable=None, *args, **kw):
    """A Deferred that fires with `callable(*args, **kw)` after `delay`."""
    d = defer.Deferred(lambda deferred: call.cancel())

    def fire():
        d.callback(None)

    call = (clock or _reactor).callLater(delay, fire)
    if callable is not None:
        d.addCallback(lambda _: callable(*args, **kw))
    return d
