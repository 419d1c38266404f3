"""2-D maps of embedding spaces: UMAP (McInnes et al., 2018) with cosine distance.

CLIP embeddings are compared by cosine similarity, so the map uses the cosine metric.
UMAP needs a neighbourhood graph: with fewer than `n_neighbors + 2` points it cannot
build a meaningful one, and the map falls back to PCA (numpy SVD of the row-normalised
points). The returned array says which method made it (`.method`, `.note`), so that a
figure can tell the user instead of passing PCA off as UMAP.

`joint_umap` fits ONE map on the union of two sets (e.g. node text embeddings before and
after fine-tuning): two separate fits would have unrelated axes and could not be compared.
umap-learn is imported lazily: its first import compiles numba code (seconds).
"""

from __future__ import annotations

import warnings

import numpy as np

MAP_EPOCHS = 200
"""UMAP optimisation epochs (umap-learn's default is 500 below 10,000 points)."""


class Map2D(np.ndarray):
    """(N, 2) coordinates that remember how they were computed."""

    method: str
    """"umap" or "pca"."""
    note: str
    """One sentence for the user about the method (empty for a regular UMAP fit)."""

    def __new__(cls, coords: np.ndarray, method: str, note: str = "") -> Map2D:
        obj = np.asarray(coords, dtype=np.float64).view(cls)
        obj.method = method
        obj.note = note
        return obj

    def __array_finalize__(self, obj: object) -> None:
        self.method = getattr(obj, "method", "umap")
        self.note = getattr(obj, "note", "")


def _check_points(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"points must have shape (N, D), got {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError("points contain NaN or infinite values.")
    return x


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components of the row-normalised points (zeros past the rank).

    Signs are fixed (largest loading positive) so the result is deterministic.
    """
    x = _normalise(_check_points(x))
    out = np.zeros((x.shape[0], 2))
    if x.shape[0] < 2:
        return out
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, len(s))
    for c in range(k):
        sign = np.sign(vt[c][np.argmax(np.abs(vt[c]))]) or 1.0
        out[:, c] = u[:, c] * s[c] * sign
    return out


def umap_2d(x: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> Map2D:
    """A 2-D UMAP of `x` (N, D) with cosine distance; PCA when N < n_neighbors + 2.

    Deterministic for a given `seed` (umap-learn then runs single-threaded).
    """
    x = _check_points(x)
    n = x.shape[0]
    if n < n_neighbors + 2:
        note = f"PCA instead of UMAP: {n} points are too few for a {n_neighbors}-neighbour graph."
        return Map2D(pca_2d(x), "pca", note)
    import umap  # lazy: the first import compiles numba code

    # 200 epochs from a PCA start: the layout a results view needs, at ~2/3 the time of
    # umap-learn's 500 epochs from a spectral start (which also falls back on small sets)
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        metric="cosine",
        random_state=seed,
        n_epochs=MAP_EPOCHS,
        init="pca",
    )
    with warnings.catch_warnings():
        # "n_jobs overridden by random_state" and spectral-init fallbacks are expected here.
        warnings.simplefilter("ignore", UserWarning)
        coords = reducer.fit_transform(x)
    return Map2D(coords, "umap")


def joint_umap(
    before: np.ndarray, after: np.ndarray, seed: int = 0, n_neighbors: int = 15
) -> tuple[Map2D, Map2D]:
    """Embed two point sets in one map fitted on their concatenation; split it back."""
    before, after = _check_points(before), _check_points(after)
    if before.shape[1] != after.shape[1]:
        raise ValueError(
            f"both sets need the same dimension, got {before.shape[1]} and {after.shape[1]}."
        )
    joint = umap_2d(np.concatenate([before, after]), seed=seed, n_neighbors=n_neighbors)
    return joint[: len(before)], joint[len(before) :]
