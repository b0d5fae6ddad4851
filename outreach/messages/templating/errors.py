"""The two ways a template fails: at draft time (:class:`TemplateError`) or per recipient.

Kept apart so that the allow-list checker (:mod:`.language`) and the renderer (:mod:`.compiled`)
can both raise them without importing each other.
"""

from __future__ import annotations


class TemplateError(ValueError):
    """The template cannot be used: syntax, an unknown name, a forbidden construct, too long.

    Raised by :func:`compile_template` (draft time). ``message`` is meant for the organizer;
    ``line`` is the 1-based template line when known.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.message = message
        self.line = line


class RenderError(ValueError):
    """One recipient's message cannot be rendered (send time). Never truncated, never sent.

    ``reason`` is a short code for the delivery's skip reason: ``message-too-long``,
    ``merge-value-too-long``, ``render-failed``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
