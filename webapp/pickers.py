"""Node pickers: the taxonomy as searchable dropdown choices ("Aves / Corvidae / raven").

A Gradio dropdown filters its choices by substring as the user types, so offering every
node under its full path makes "corv" find "Aves / Passeriformes / Corvidae" and all
below it; the value is the node id, which survives renames.

A 16k-node tree cannot be sent that way (1.4 MB per dropdown, and the browser's cost grows
faster than linearly), so above `ALL_CHOICES_UP_TO` nodes a picker starts with its current
value only and `attach_search` asks the server for the best `SEARCH_LIMIT` matches of what
the user types (`NodeSearch`, ranked like `Taxonomy.find`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import gradio as gr

from hiercore.errors import HierTuneError
from hiercore.taxonomy import ROOT, Taxonomy

ROOT_CHOICE = ("(top level)", ROOT)
ALL_CHOICES_UP_TO = 1000
"""Trees up to this many nodes send every choice; larger ones are searched on the server."""
SEARCH_LIMIT = 50
"""Choices a search sends back."""


class NodeSearch:
    """Every node's path text, built in one depth-first pass, searched word by word."""

    def __init__(self, tax: Taxonomy) -> None:
        self.entries: list[tuple[str, str, str, int]] = []  # (path, lower path, id, depth)
        self.path_of: dict[str, str] = {}
        succ, nodes = tax.graph.succ, tax.graph.nodes
        stack = [(child, "", 1) for child in reversed(list(succ[ROOT]))]
        while stack:
            node, above, depth = stack.pop()
            name = nodes[node]["name"]
            path = f"{above} / {name}" if above else name
            self.entries.append((path, path.lower(), node, depth))
            self.path_of[node] = path
            stack.extend((child, path, depth + 1) for child in reversed(list(succ[node])))

    def __len__(self) -> int:
        return len(self.entries)

    def choices(self) -> list[tuple[str, str]]:
        return [(path, node) for path, _, node, _ in self.entries]

    def find(self, query: str, limit: int = SEARCH_LIMIT) -> list[tuple[str, str]]:
        """(path, id) of the best matches: exact name, name prefix, name substring, path."""
        words = query.lower().split()
        if not words:
            return []
        q = " ".join(words)
        ranked = []
        for path, low, node, depth in self.entries:
            if not all(w in low for w in words):
                continue
            name = low.rsplit(" / ", 1)[-1]
            rank = 0 if name == q else 1 if name.startswith(q) else 2 if q in name else 3
            ranked.append((rank, depth, name, path, node))
        ranked.sort()
        return [(r[3], r[4]) for r in ranked[:limit]]


_searches: OrderedDict[tuple, NodeSearch] = OrderedDict()
_searches_lock = threading.Lock()


def node_search(tax: Taxonomy, key: tuple | None = None) -> NodeSearch:
    """A `NodeSearch` of `tax`, kept for a few trees when `key` names its version."""
    if key is None:
        return NodeSearch(tax)
    with _searches_lock:
        if key in _searches:
            _searches.move_to_end(key)
            return _searches[key]
    search = NodeSearch(tax)
    with _searches_lock:
        _searches[key] = search
        while len(_searches) > 8:
            _searches.popitem(last=False)
    return search


def project_search(ws, pid: int) -> NodeSearch:
    """The `NodeSearch` of a project's current tree, shared by every picker and tab.

    The version is read before the tree: an edit in between files the newer tree under
    the older version, which no reader asks for again (the other order would keep the
    older tree under the newer version until the next edit).
    """
    key = (str(ws.root), pid, ws.taxonomy_version(pid))
    with _searches_lock:
        search = _searches.get(key)
    return search if search is not None else node_search(ws.taxonomy(pid, copy=False), key)


def node_choices(tax: Taxonomy) -> list[tuple[str, str]]:
    """(path text, node id) for every node, depth-first."""
    return NodeSearch(tax).choices()


def node_picker(
    tax: Taxonomy,
    value: str | None = None,
    with_root: bool = False,
    search: NodeSearch | None = None,
) -> dict:
    """A dropdown update listing the taxonomy; keeps `value` when it is still a node.

    Above `ALL_CHOICES_UP_TO` nodes only the value (and the top level) is sent: typing
    asks the server (`attach_search`).
    """
    search = search or NodeSearch(tax)
    value = value if (value == ROOT and with_root) or value in search.path_of else None
    if len(search) <= ALL_CHOICES_UP_TO:
        choices = search.choices()
    else:
        choices = [(search.path_of[value], value)] if value in search.path_of else []
    if with_root:
        choices = [ROOT_CHOICE, *choices]
    return gr.update(choices=choices, value=value)


def search_picker(
    search: NodeSearch, query: str, value: str | None = None, with_root: bool = False
) -> dict:
    """The choices of a picker after the user typed `query` (the value stays offered)."""
    choices = search.find(query)
    if value in search.path_of and value not in {c[1] for c in choices}:
        choices.append((search.path_of[value], value))
    if with_root:
        choices = [ROOT_CHOICE, *choices]
    return gr.update(choices=choices)


# Sent with each key press instead of the key event's text: the text in the box a moment
# later. Gradio's dropdown shows every choice a search returns, and one answer in about
# eight arrived after the answer to a later key press (the list for "Genus 1" under
# "Genus 12"); answers to presses made within that moment now ask the same question, so
# the order they land in no longer matters.
QUERY_JS = """
(pid, value, query) => new Promise((resolve) => setTimeout(() => {
  const box = document.querySelector('#%s input');
  resolve([pid, value, box ? box.value : query]);
}, %d))
"""
QUERY_DELAY_MS = 120


def attach_search(dropdown: gr.Dropdown, studio, project, with_root: bool = False) -> None:
    """Answer typing in `dropdown` with the project's matching nodes (large trees only)."""
    if not dropdown.elem_id:
        dropdown.elem_id = f"node-picker-{dropdown._id}"
    query = gr.Textbox(visible=False)

    def typed(pid, value, text, key_up: gr.KeyUpData):
        try:
            pid = studio.project_id(pid)
        except HierTuneError:  # no project open: nothing to search
            return gr.update()
        search = project_search(studio.workspace, pid)
        if len(search) <= ALL_CHOICES_UP_TO:
            return gr.update()  # every choice is in the browser already
        return search_picker(search, text or key_up.input_value, value, with_root)

    dropdown.key_up(
        typed,
        [project, dropdown, query],
        dropdown,
        js=QUERY_JS % (dropdown.elem_id, QUERY_DELAY_MS),
        # every key press is answered, in order: "always_last" re-runs with the first
        # press's event data, so the list would stay on the first letter
        trigger_mode="multiple",
        concurrency_limit=1,
        show_progress="hidden",
        api_visibility="private",
    )


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
