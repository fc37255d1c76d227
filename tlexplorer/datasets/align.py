"""One label space for two domains, matched by class name."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ClassMismatchError


def align_classes(source_classes: Sequence[str], target_classes: Sequence[str], *,
                  source_name: str = "source", target_name: str = "target") -> list[str]:
    """The shared label space of two domains, in the source domain's order.

    Classes are matched by name; the order of ``source_classes`` is kept (sorted folder names for
    image folders, the dataset's own order for torchvision datasets) so that the source model's
    outputs keep their meaning in the target model.

    Parameters
    ----------
    source_classes, target_classes : sequence of str
    source_name, target_name : str
        Domain names for the error message.

    Returns
    -------
    list of str
        ``list(source_classes)``.

    Raises
    ------
    ClassMismatchError
        When the two sets of names differ, listing the classes missing on each side.
    """
    source, target = [str(c) for c in source_classes], [str(c) for c in target_classes]
    for name, classes in ((source_name, source), (target_name, target)):
        duplicates = sorted({c for c in classes if classes.count(c) > 1})
        if duplicates:
            raise ClassMismatchError(f"duplicate class names in {name}: {duplicates}")
    missing_in_target = [c for c in source if c not in set(target)]
    missing_in_source = [c for c in target if c not in set(source)]
    if missing_in_target or missing_in_source:
        parts = []
        if missing_in_target:
            parts.append(f"missing in target ({target_name}): {missing_in_target}")
        if missing_in_source:
            parts.append(f"missing in source ({source_name}): {missing_in_source}")
        by_case = {c.casefold(): c for c in missing_in_source}
        same = [(c, by_case[c.casefold()]) for c in missing_in_target if c.casefold() in by_case]
        if same:
            pairs = ", ".join(f"{s!r} vs {t!r}" for s, t in same)
            parts.append(f"{pairs} differ only in capitalisation: rename them to match exactly")
        raise ClassMismatchError("classes differ between domains: " + "; ".join(parts))
    return source


def remap_labels(labels: np.ndarray, from_classes: Sequence[str], to_classes: Sequence[str]) -> np.ndarray:
    """Relabel ``labels`` indexing ``from_classes`` so that they index ``to_classes``.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
    from_classes, to_classes : sequence of str
        Every class in ``from_classes`` that a label uses must be in ``to_classes``.

    Returns
    -------
    ndarray of int64, shape (N,)
    """
    position = {c: i for i, c in enumerate(to_classes)}
    lookup = np.array([position.get(str(c), -1) for c in from_classes], dtype=np.int64)
    out = lookup[np.asarray(labels, dtype=np.int64)]
    if (out < 0).any():
        missing = sorted({str(from_classes[j]) for j in np.asarray(labels)[out < 0]})
        raise ClassMismatchError(f"classes not in the label space: {missing}")
    return out
