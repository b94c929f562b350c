"""Data: manifests, readers, label conventions, preprocessing and synthetic BraTS-like volumes."""
