"""Errors that users see as one line naming the file or value at fault."""


class TLXError(Exception):
    """Base class: the CLI prints ``str(error)`` alone and exits non-zero."""


class DataError(TLXError):
    """A dataset, folder or image that cannot be used."""


class ClassMismatchError(DataError):
    """The two domains' label spaces differ."""


class ModelError(TLXError):
    """An unknown model name or a checkpoint that does not fit the architecture."""


class ClusterError(TLXError):
    """A Dask scheduler that cannot be reached, a missing ``distributed`` extra, a chunk that kept
    killing its workers."""


class LayerError(TLXError):
    """A layer name that is not in the model, or that the forward pass never reaches."""


class BundleError(TLXError):
    """An analysis bundle that is missing, corrupt or of a newer schema."""


class RunError(TLXError):
    """A run directory without models or history."""


class DiskFullError(TLXError, OSError):
    """A write that ran out of disk space. Also an ``OSError``, so code that treats an unwritable
    cache as a miss (``except OSError``) keeps doing so."""
