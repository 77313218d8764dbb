"""Protocol wrappers and mixins (twisted.protocols.policies): TimeoutMixin."""

from weft.internet import reactor


class TimeoutMixin:
    """Time out a connection that stays idle: call `setTimeout(seconds)`,
    `resetTimeout()` on activity; `timeoutConnection()` runs when the time
    is up (by default it aborts the connection)."""

    timeOut = None
    __timeoutCall = None

    def callLater(self, period, func):
        return reactor.callLater(period, func)

    def resetTimeout(self):
        """Restart the timeout: call this on activity."""
        if self.__timeoutCall is not None and self.timeOut is not None:
            self.__timeoutCall.reset(self.timeOut)

    def setTimeout(self, period):
        """Change the timeout (None disables it); returns the old one."""
        prev = self.timeOut
        self.timeOut = period
        if self.__timeoutCall is not None:
            if period is None:
                try:
                    self.__timeoutCall.cancel()
                except ValueError:
                    pass
                self.__timeoutCall = None
            else:
                self.__timeoutCall.reset(period)
        elif period is not None:
            self.__timeoutCall = self.callLater(period, self.__timedOut)
        return prev

    def __timedOut(self):
        self.__timeoutCall = None
        self.timeoutConnection()

    def timeoutConnection(self):
        """The connection was idle for the timeout: abort it."""
        self.transport.abortConnection()
