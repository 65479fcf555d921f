"""The CPU- and memory-heavy half of ingestion, kept out of the API process.

``prepare`` turns a file's bytes into chunk drafts (parse, then chunk) within the file's
budget; ``process`` runs that in memory-capped, killable parser processes (``child`` is their
entry point); ``preparer`` picks process or inline isolation; ``watch`` lets a long parse
notice that its job was cancelled. Nothing here is imported by the parser processes beyond
``prepare`` and ``child``, so they start small.
"""
