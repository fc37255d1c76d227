"""The analysis bundle: its schema, an atomic resumable writer and a validating lazy reader.

A bundle is a directory with a versioned ``manifest.json``, Parquet tables and ``.npy`` arrays,
and never a pickle. This package knows nothing of models or UI; ``docs/bundle-format.md``
describes the format and ``docs/architecture.md`` what ``pipeline.py`` puts in it.
"""
from tlexplorer.bundle.reader import ArtefactNotFound, Bundle, open_bundle
from tlexplorer.bundle.schema import SCHEMA_VERSION, safe_component, validate_name
from tlexplorer.bundle.writer import BundleWriter, recover_interrupted_replace
from tlexplorer.errors import BundleError

__all__ = [
    "SCHEMA_VERSION", "ArtefactNotFound", "Bundle", "BundleError", "BundleWriter",
    "open_bundle", "recover_interrupted_replace", "safe_component", "validate_name",
]
