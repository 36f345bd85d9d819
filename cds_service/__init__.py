"""Denosumab CDS: a CDS Hooks 2.0 service guarding denosumab orders."""

__version__ = "0.1.0"
