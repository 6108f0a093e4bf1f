"""The one exception type that reaches the user as a one-line message instead of a traceback."""


class TunebenchError(Exception):
    """Bad input or an unmet precondition: the message says what was wrong and how to fix it."""
