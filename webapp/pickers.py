"""Node pickers: the taxonomy as searchable dropdown choices ("Aves / Corvidae / raven").

A Gradio dropdown filters its choices by substring as the user types, so offering every
node under its full path makes "corv" find "Aves / Passeriformes / Corvidae" and all
below it; the value is the node id, which survives renames.
"""

from __future__ import annotations

import gradio as gr

from hiercore.taxonomy import ROOT, Taxonomy

ROOT_CHOICE = ("(top level)", ROOT)


def node_choices(tax: Taxonomy) -> list[tuple[str, str]]:
    """(path text, node id) for every node, depth-first."""
    return [(" / ".join(tax.path_names(n)), n) for n in tax.iter_dfs()]


def node_picker(tax: Taxonomy, value: str | None = None, with_root: bool = False) -> dict:
    """A dropdown update listing the taxonomy; keeps `value` when it is still a node."""
    choices = node_choices(tax)
    if with_root:
        choices = [ROOT_CHOICE, *choices]
    ids = {c[1] for c in choices}
    return gr.update(choices=choices, value=value if value in ids else None)


def text_tree(tax: Taxonomy, counts: dict[str, int] | None = None, limit: int = 3000) -> str:
    """The tree as indented lines, with labelled-image counts (subtree totals) in brackets."""
    if len(tax) == 0:
        return "(empty taxonomy: add a node or import a file)"
    lines = []
    for i, n in enumerate(tax.iter_dfs()):
        if i >= limit:
            lines.append(f"… {len(tax) - limit} more nodes")
            break
        count = f"  [{counts[n]}]" if counts and counts.get(n) else ""
        lines.append("    " * (tax.depth(n) - 1) + tax.name(n) + count)
    return "\n".join(lines)
