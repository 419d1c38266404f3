"""Newick trees as taxonomies: `read_newick` and `write_newick`.

The outermost group is the virtual root: its children are the first level, and a name
written after its `)` (as in `((a,b)c,d)root;`) is ignored. Inner nodes are named after
their `)`; every node needs a name. Following the Newick standard, an underscore in an
unquoted name stands for a blank; names in single quotes are taken literally, with `''`
for a quote. Branch lengths (`:0.1`) and bracketed comments (`[&&NHX...]`) are accepted
and ignored. Newick carries no ids and no descriptions: ids are derived from name paths.

Errors name the 1-based character position of the fault in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hiercore.errors import TaxonomyError
from hiercore.taxonomy.pathtree import MAX_DEPTH, PathTreeBuilder
from hiercore.taxonomy.tree import ROOT, Taxonomy

_DELIMITERS = set("(),:;[]'")
_SAFE_UNQUOTED = re.compile(r"[^\s()\[\]':;,_]+")


@dataclass
class _Parsed:
    name: str | None
    at: int  # 0-based offset of the name, or of the ')' closing an unnamed group
    children: list[_Parsed] = field(default_factory=list)


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0

    def fail(self, at: int, sentence: str) -> TaxonomyError:
        return TaxonomyError(f"{self.source} character {at + 1}: {sentence}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self) -> None:
        """Skip blanks and bracketed comments."""
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c.isspace():
                self.pos += 1
            elif c == "[":
                end = self.text.find("]", self.pos)
                if end < 0:
                    raise self.fail(self.pos, "this comment '[' is never closed with ']'.")
                self.pos = end + 1
            else:
                return

    def tree(self) -> _Parsed:
        root = self.subtree(depth=0)
        self.skip()
        if self.peek() == ";":
            self.pos += 1
            self.skip()
        if self.pos < len(self.text):
            raise self.fail(
                self.pos, f"unexpected {self.text[self.pos]!r} after the end of the tree."
            )
        return root

    def subtree(self, depth: int) -> _Parsed:
        if depth > MAX_DEPTH:
            raise self.fail(self.pos, f"the tree is nested more than {MAX_DEPTH} levels deep.")
        self.skip()
        children = []
        if self.peek() == "(":
            self.pos += 1
            while True:
                children.append(self.subtree(depth + 1))
                self.skip()
                c = self.peek()
                self.pos += 1
                if c == ",":
                    continue
                if c == ")":
                    close = self.pos - 1
                    break
                found = repr(c) if c else "the end of the text"
                raise self.fail(self.pos - 1, f"expected ',' or ')' but found {found}.")
            self.skip()
        at = self.pos
        name = self.label()
        if name is None and children:
            at = close
        self.skip()
        if self.peek() == ":":
            self.pos += 1
            self.skip()
            self.length()
        return _Parsed(name, at, children)

    def label(self) -> str | None:
        if self.peek() == "'":
            start = self.pos
            out = []
            self.pos += 1
            while True:
                end = self.text.find("'", self.pos)
                if end < 0:
                    raise self.fail(start, "this quoted name is never closed with a quote.")
                out.append(self.text[self.pos : end])
                self.pos = end + 1
                if self.peek() == "'":  # '' is a literal quote
                    out.append("'")
                    self.pos += 1
                else:
                    return "".join(out)
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _DELIMITERS:
            self.pos += 1
        raw = self.text[start : self.pos].strip()
        return raw.replace("_", " ") if raw else None

    def length(self) -> None:
        start = self.pos
        while self.pos < len(self.text) and not (
            self.text[self.pos] in _DELIMITERS or self.text[self.pos].isspace()
        ):
            self.pos += 1
        token = self.text[start : self.pos]
        try:
            float(token)
        except ValueError:
            raise self.fail(start, f"the branch length {token!r} is not a number.") from None


def read_newick(text: str, source: str = "taxonomy.nwk") -> Taxonomy:
    """Parse one Newick tree into a taxonomy (see the module docstring for the dialect)."""
    root = _Parser(text, source).tree()
    if not root.children:
        raise TaxonomyError(f"{source}: the tree has no nodes below its root.")
    builder = PathTreeBuilder(source)
    stack = [(ROOT, child) for child in reversed(root.children)]
    while stack:
        parent, node = stack.pop()
        where = f"{source} character {node.at + 1}"
        if node.name is None:
            if node.children:
                raise TaxonomyError(
                    f"{where}: the group closed here has no name (write its name after ')')."
                )
            raise TaxonomyError(f"{where}: a leaf has no name.")
        node_id = builder.child(parent, node.name, where, unique=True)
        stack.extend((node_id, child) for child in reversed(node.children))
    return builder.build()


def quote_newick(name: str) -> str:
    """`name` as a Newick label: bare when safe, else in single quotes."""
    if _SAFE_UNQUOTED.fullmatch(name):
        return name
    return "'" + name.replace("'", "''") + "'"


def write_newick(tax: Taxonomy) -> str:
    """The taxonomy as one Newick tree; the virtual root is the outermost group."""
    out: list[str] = []

    def emit(node: str) -> None:
        kids = tax.children(node)
        if kids:
            out.append("(")
            for i, kid in enumerate(kids):
                if i:
                    out.append(",")
                emit(kid)
            out.append(")")
        if node != ROOT:
            out.append(quote_newick(tax.name(node)))

    emit(ROOT)
    return "".join(out) + ";\n"
