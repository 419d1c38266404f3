"""Errors a user can cause, as opposed to bugs.

A `HierTuneError` carries one sentence that names the file, line or node at fault. The
CLI prints it and exits with status 2; the studio shows it next to the input. Anything
else that escapes is a bug and keeps its traceback.
"""


class HierTuneError(ValueError):
    """A problem with the user's input, described in one sentence."""


class TaxonomyError(HierTuneError):
    """A taxonomy that is malformed, or an edit that would make it so."""


class DataError(HierTuneError):
    """An image set, manifest or label that cannot be used."""


class ModelError(HierTuneError):
    """A model that cannot be found, fetched or loaded."""
