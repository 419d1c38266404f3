"""CSV cells a spreadsheet opens as text, never as a formula (CSV injection, CWE-1236).

Excel, LibreOffice and Google Sheets run a cell that starts with `=`, `+`, `-` or `@`
(and some a tab or carriage return) as a formula, so a node named `=HYPERLINK(...)` in an
exported taxonomy CSV would act when opened. `guard_cell` prefixes such cells with `'`,
which spreadsheets show as the text itself; `unguard_cell` removes that prefix again on
import, so an export reads back to the same names. Numbers such as `-0.5` are left alone
(they stay numbers in a spreadsheet and cannot call anything). A cell that already starts
with apostrophes before a formula character gets one more, so the round trip is exact.
"""

from __future__ import annotations

import re

_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_GUARDED = re.compile(r"'+[=+\-@\t\r]")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def guard_cell(cell: object) -> object:
    """`cell`, with a leading `'` when a spreadsheet would run it as a formula."""
    if not isinstance(cell, str) or not _FORMULA.match(cell) or _NUMBER.fullmatch(cell):
        return cell
    return "'" + cell


def unguard_cell(cell: str) -> str:
    """`cell` as it was before `guard_cell`."""
    return cell[1:] if _GUARDED.match(cell) else cell
