"""Where models come from: volrob checkpoints, ``package.module:factory`` networks, and registered kinds of model
folders (``nnunet:FOLDER``, ``bundle:FOLDER``), each turned into a :class:`ModelSource`."""

from volrob.sources.base import (
    DEFAULT_EXTERNAL_ROI,
    ModelSource,
    SourceLoader,
    available_sources,
    load_source,
    register_source,
    source_options,
    source_scheme,
)

__all__ = ["DEFAULT_EXTERNAL_ROI", "ModelSource", "SourceLoader", "available_sources", "load_source",
           "register_source", "source_options", "source_scheme"]
from volrob.sources import bundle as _bundle  # noqa: F401  (registers bundle:)
from volrob.sources import nnunet as _nnunet  # noqa: F401  (registers nnunet:)
