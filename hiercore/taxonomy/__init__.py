"""The class tree (`Taxonomy`), its per-level indexing (`LevelIndex`) and its file formats."""

from hiercore.taxonomy.levels import LevelIndex
from hiercore.taxonomy.tree import ROOT, EditReport, Node, Taxonomy, new_node_id

__all__ = ["ROOT", "EditReport", "LevelIndex", "Node", "Taxonomy", "new_node_id"]
