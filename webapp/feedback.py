"""How the studio answers a user's mistake: one sentence next to the input, never a traceback.

Handlers return a status line (a `gr.Markdown` under the form) as their first output.
`user_errors` turns a `HierTuneError` raised anywhere below a handler into that line plus
a warning toast and leaves every other output unchanged; anything else is a bug and keeps
Gradio's error handling (and its traceback in the server log).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import gradio as gr

from hiercore.errors import HierTuneError
from webapp.literal import html_text, md_text


def ok(message: str) -> str:
    """A success line; `message` is plain text (names in it are shown, not rendered)."""
    return f"✅ {md_text(message)}"


def problem(message: str) -> str:
    """A problem line; `message` is plain text (names in it are shown, not rendered)."""
    return f"⚠️ {md_text(message)}"


def user_errors(n_outputs: int) -> Callable[[Callable], Callable]:
    """Decorate a handler whose first of `n_outputs` outputs is its status line."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except HierTuneError as exc:
                gr.Warning(html_text(exc))
                if n_outputs == 1:
                    return problem(str(exc))
                return (problem(str(exc)), *[gr.skip() for _ in range(n_outputs - 1)])

        return wrapper

    return decorate
