"""Helpers shared by several test modules (importable because pyproject puts tests/ on the path)."""
