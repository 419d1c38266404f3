"""Hypothesis strategies for random taxonomies with awkward names.

Names come from a small alphabet with blanks, commas, quotes, parentheses, brackets,
underscores and non-ASCII letters, so every format's quoting is exercised. Letters are
lower case only: the folder export keeps sibling names distinct on case-insensitive
file systems, which would rename "A" next to "a".
"""

from __future__ import annotations

from hypothesis import strategies as st

from hiercore.taxonomy import ROOT, Taxonomy

NAME_ALPHABET = "ab c,'\"()[];:_-éß中🦜"
names = st.text(NAME_ALPHABET, min_size=1, max_size=6).map(str.strip).filter(bool)
descriptions = st.text(NAME_ALPHABET + "\n.", max_size=10).map(str.strip)


@st.composite
def taxonomies(draw, max_nodes: int = 20, with_descriptions: bool = True, names=names) -> Taxonomy:
    """A random tree (ragged in general) with unique sibling names drawn from `names`."""
    tax = Taxonomy()
    ids = [ROOT]
    for _ in range(draw(st.integers(1, max_nodes))):
        parent = draw(st.sampled_from(ids))
        name = draw(names)
        if any(tax.name(c) == name for c in tax.children(parent)):
            continue
        desc = draw(descriptions) if with_descriptions else ""
        ids.append(tax.add(name, parent, desc))
    return tax
