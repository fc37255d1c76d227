"""Built-in scenarios: ready-made transfer problems that need no download.

``digits``: printed house-number digits (source) → handwritten digits (target), see
:mod:`tlexplorer.scenarios.digits`.
"""
from __future__ import annotations

import inspect

from ..errors import DataError
from .digits import load_digits_scenario

#: Scenario name → loader returning a :class:`~tlexplorer.datasets.TransferData`.
SCENARIOS = {"digits": load_digits_scenario}


def load_scenario(name: str, **kwargs):
    """Load a built-in scenario by name.

    Parameters
    ----------
    name : str
        A key of :data:`SCENARIOS`.
    **kwargs
        The scenario loader's options (digits: ``seed``, ``per_class``, ``data_dir``, ``progress``).

    Returns
    -------
    TransferData

    Raises
    ------
    DataError
        Unknown scenario name or option.
    """
    loader = SCENARIOS.get(name)
    if loader is None:
        raise DataError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
    try:
        inspect.signature(loader).bind(**kwargs)
    except TypeError as exc:
        raise DataError(f"scenario {name!r}: {exc}") from exc
    return loader(**kwargs)


__all__ = ["SCENARIOS", "load_digits_scenario", "load_scenario"]
