"""The registry of comparison methods: one interface, found by name (timm's `create_model`).

Each family module decorates small factories with `@register_method("name")`; a factory
takes keyword options and returns a `Method`. The comparison table is then a loop over
`list_methods()`::

    method = create_method("tip-adapter")
    result = method.fit(taxonomy, train_samples, eval_samples, config, out_dir)
    result.metrics()  # the same docs/method.md §5 metrics for every method
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path

from hiercore.baselines.result import MethodResult
from hiercore.config import RunConfig
from hiercore.errors import HierTuneError
from hiercore.taxonomy import Taxonomy

ProgressFn = Callable[..., None]


class Method:
    """A way of turning labelled images into per-level logits; subclasses implement `fit`."""

    name: str = ""
    """Registry name (set by `create_method`)."""
    notes: str = ""
    """One line for the comparison table: what the row is and how its levels were made."""

    def fit(
        self,
        taxonomy: Taxonomy,
        train_samples: list,
        val_samples: list,
        config: RunConfig,
        out_dir: str | Path,
        progress: ProgressFn | None = None,
        stop_event: threading.Event | None = None,
    ) -> MethodResult:
        """Train on `train_samples`; return logits on `val_samples` (the evaluation set)."""
        raise NotImplementedError


_REGISTRY: dict[str, Callable[..., Method]] = {}
_ORDER: list[str] = []


def register_method(name: str) -> Callable[[Callable[..., Method]], Callable[..., Method]]:
    """Decorator: make a factory (or a `Method` class) available under `name`."""

    def decorate(factory: Callable[..., Method]) -> Callable[..., Method]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"Method {name!r} is registered twice.")
        if name not in _REGISTRY:
            _ORDER.append(name)
        _REGISTRY[name] = factory
        return factory

    return decorate


FAMILIES = ("zero_shot", "lora_losses", "coop", "clip_adapter", "tip_adapter", "lathadapter")
"""Modules whose decorated factories fill the registry, in the order of the table's rows."""


def _load_families() -> None:
    for module in FAMILIES:
        importlib.import_module(f"hiercore.baselines.{module}")


def list_methods() -> list[str]:
    """Registered method names, in the order of the comparison table."""
    _load_families()

    def rank(name: str) -> tuple[int, int]:
        module = _REGISTRY[name].__module__.rsplit(".", 1)[-1]
        family = FAMILIES.index(module) if module in FAMILIES else len(FAMILIES)
        return family, _ORDER.index(name)

    return sorted(_ORDER, key=rank)


def describe_methods() -> dict[str, str]:
    """Method name -> its one-line note (what the studio shows beside each choice)."""
    return {name: create_method(name).notes for name in list_methods()}


def create_method(name: str, **kwargs) -> Method:
    """A fresh method by registry name; keyword options go to its factory."""
    _load_families()
    factory = _REGISTRY.get(name)
    if factory is None:
        raise HierTuneError(f"Unknown method {name!r}; known methods: {', '.join(list_methods())}.")
    try:
        method = factory(**kwargs)
    except TypeError as exc:
        raise HierTuneError(f"Method {name!r} does not take these options: {exc}.") from None
    method.name = name
    return method


def resolve_methods(spec: str | list[str]) -> list[str]:
    """'all', a comma-separated string or a list -> validated method names."""
    _load_families()  # a list of names is checked against the filled registry
    names = list_methods() if spec == "all" else spec
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise HierTuneError("Name at least one method to compare (or 'all').")
    for n in names:
        if n not in _REGISTRY:
            known = ", ".join(list_methods())
            raise HierTuneError(f"Unknown method {n!r}; known methods: {known}.")
    return list(dict.fromkeys(names))
