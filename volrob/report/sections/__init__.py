"""The sections of a report, in page order; each returns None when its stage did not run (left out, not empty)."""
