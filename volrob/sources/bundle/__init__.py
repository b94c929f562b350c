"""MONAI bundles as a model source: ``--model bundle:FOLDER`` (see docs/bundles.md and
:mod:`volrob.sources.bundle.loader`). Importing this package registers the ``bundle`` scheme."""

from volrob.sources.bundle.loader import OPTIONS, load_bundle

__all__ = ["OPTIONS", "load_bundle"]
