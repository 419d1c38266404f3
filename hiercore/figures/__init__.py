"""Plotly figures for HierTune, built from data by pure functions.

Computation (metrics, UMAP) lives elsewhere in `hiercore`; these functions only turn
its results into figures, and the studio only places them (FiftyOne's "brain vs App"
split). One colour scheme, keyed by first-level ancestor, runs through every figure
(`ancestor_colors`). Levels are 1-based (docs/method.md §1) throughout.
"""

from hiercore.figures.accuracy import level_accuracy_figure
from hiercore.figures.breakdown import inconsistency_pairs_figure, inconsistency_subtree_figure
from hiercore.figures.comparison import comparison_table_figure
from hiercore.figures.confusion import (
    aggregate_confusion,
    confusion_cell_members,
    group_level,
    top_confusions,
    tree_confusion_figure,
)
from hiercore.figures.embedding import (
    distinct_node_ids,
    image_embedding_figure,
    node_embedding_figure,
)
from hiercore.figures.lineage import ancestor_indices, path_label
from hiercore.figures.palette import ancestor_colors
from hiercore.figures.run_curves import overlaid_curves_figure
from hiercore.figures.training_curves import training_curves_figure
from hiercore.figures.tree import taxonomy_sunburst, taxonomy_treemap, tree_sectors

__all__ = [
    "aggregate_confusion",
    "ancestor_colors",
    "ancestor_indices",
    "comparison_table_figure",
    "confusion_cell_members",
    "distinct_node_ids",
    "group_level",
    "image_embedding_figure",
    "inconsistency_pairs_figure",
    "inconsistency_subtree_figure",
    "level_accuracy_figure",
    "node_embedding_figure",
    "overlaid_curves_figure",
    "path_label",
    "taxonomy_sunburst",
    "taxonomy_treemap",
    "top_confusions",
    "training_curves_figure",
    "tree_confusion_figure",
    "tree_sectors",
]
