"""The one error the knowledge base raises (its own module, so that every reader of seeds/ can
raise it without importing the loader)."""


class KnowledgeError(Exception):
    """The seeds are missing, malformed or inconsistent (message names file and line)."""
