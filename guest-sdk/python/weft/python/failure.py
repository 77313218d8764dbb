"""The reason passed to connectionLost (twisted.python.failure.Failure)."""


class Failure:
    """An exception wrapped for a callback, as Twisted passes it."""

    def __init__(self, value):
        self.value = value
        self.type = type(value)

    def check(self, *types):
        """The first of `types` the exception is an instance of, or None."""
        for candidate in types:
            if isinstance(self.value, candidate):
                return candidate
        return None

    def trap(self, *types):
        """Return the matching type, or re-raise the exception."""
        found = self.check(*types)
        if found is None:
            raise self.value
        return found

    def getErrorMessage(self):
        return str(self.value)

    def __repr__(self):
        return f"<twisted.python.failure.Failure {self.type.__module__}.{self.type.__name__}: {self.value}>"

    __str__ = __repr__
