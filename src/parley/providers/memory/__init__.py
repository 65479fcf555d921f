"""providers memory package: the session hot history and per-turn caches (``TurnStore``)."""
