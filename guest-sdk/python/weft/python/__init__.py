"""twisted.python's helpers that protocols meet."""
