"""The floor every other part stands on: errors, atomic file io, CPU facts, records."""

__version__ = "0.1.0"
