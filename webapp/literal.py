"""User text (node, image, project and run names, error sentences) shown inside Markdown.

Names come from uploads and API callers, so they may hold HTML or Markdown syntax: a node
named `<img src=x onerror=...>` or `**x**` must show as those characters, not act. Every
ASCII punctuation character is backslash-escaped, which CommonMark (and Gradio's Markdown)
renders as the character itself; line breaks become spaces so text cannot start a block.
Gradio's toasts (`gr.Warning`) render HTML rather than Markdown: they take `html_text`.
"""

from __future__ import annotations

import html
import re
import string

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")


def md_text(text: object) -> str:
    """`text` as literal characters inside Markdown."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).splitlines()))


def html_text(text: object) -> str:
    """`text` as literal characters inside HTML."""
    return html.escape(str(text))
