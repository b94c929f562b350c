"""nnU-Net v2 trained model folders as a model source: ``--model nnunet:FOLDER`` (see docs/nnunet.md).

Importing this package registers the ``nnunet`` scheme; nnunetv2 itself is imported only when a folder is loaded.
"""

from volrob.sources.nnunet.loader import load_nnunet

__all__ = ["load_nnunet"]
