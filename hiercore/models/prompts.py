"""Text prompts for taxonomy nodes (SPEC §2).

A template is a Python format string over a node's context:

- ``{name}``: the node's display name;
- ``{parent}``: its parent's name; ``{root}``: its first-level ancestor's name;
- ``{path}``: the names from the first level down, joined with ", ";
- ``{description}``: the node's description.

A template that needs a context the node lacks (a first-level node has no parent, most
nodes have no description) is skipped for that node; when every template is skipped the
node falls back to its bare name. The embeddings of a node's prompts are averaged after
normalisation (`hierclip.HierClip`).
"""

from __future__ import annotations

import string

from hiercore.errors import HierTuneError
from hiercore.taxonomy import Taxonomy

FIELDS = {"name", "parent", "root", "path", "description"}


def check_templates(templates: list[str] | tuple[str, ...]) -> list[str]:
    """Validate templates; raise one sentence naming the first bad one."""
    out = [t.strip() for t in templates if t and t.strip()]
    if not out:
        raise HierTuneError("Give at least one prompt template, e.g. 'a photo of a {name}.'")
    for t in out:
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
        except ValueError as exc:
            raise HierTuneError(f"Prompt template {t!r} is not a valid template: {exc}.") from None
        unknown = used - FIELDS
        if unknown:
            raise HierTuneError(
                f"Prompt template {t!r} uses unknown field {{{sorted(unknown)[0]}}}; "
                f"use {', '.join('{' + f + '}' for f in sorted(FIELDS))}."
            )
        if "name" not in used:
            raise HierTuneError(f"Prompt template {t!r} must contain {{name}}.")
    return out


def node_context(taxonomy: Taxonomy, node_id: str) -> dict[str, str]:
    names = taxonomy.path_names(node_id)
    return {
        "name": names[-1],
        "parent": names[-2] if len(names) > 1 else "",
        "root": names[0] if len(names) > 1 else "",
        "path": ", ".join(names),
        "description": taxonomy.description(node_id).strip(),
    }


def node_prompts(taxonomy: Taxonomy, node_id: str, templates: list[str]) -> list[str]:
    """The prompts of one node, one per applicable template."""
    ctx = node_context(taxonomy, node_id)
    prompts = []
    for t in templates:
        used = {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
        if any(not ctx[f] for f in used):
            continue
        prompts.append(t.format(**ctx))
    return prompts or [ctx["name"]]
