"""The one exception type whose message is shown to users as `error: ...`."""


class UserError(Exception):
    """Bad input: the message is one sentence that says what was wrong and what to do."""
