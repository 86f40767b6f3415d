"""One base for bad input: what a user can fix from the message alone.

The entry points show a `MedadvError` as one line and exit 1; any other exception (a bug in medadv, numpy or
TensorFlow) keeps its traceback, so it is never mistaken for bad input. It subclasses ValueError, as the
built-in errors for bad arguments do.
"""


class MedadvError(ValueError):
    """Bad input (a setting, a file, a name, a model or a run) named in one line."""
