"""The base of the library's errors that a person can act on and that are neither ValueError nor OSError."""


class UserError(Exception):
    """A failure a person can act on that is not a ValueError or an OSError (the registry's, say): the library's
    own error classes derive from it or from those, so the command line needs to know none of them
    (lvm.util.user_errors)."""
