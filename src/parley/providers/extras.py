"""Optional dependencies (``pip install "parley[extra]"``), imported only when configured.

The base install runs everything on the embedded default (SQLite, in-process state, local
models). Redis, PostgreSQL and the hosted-model SDKs come with extras; a setting that needs
one of them checks here first, so a missing package reads as one line naming the extra
rather than a ``ModuleNotFoundError`` from deep inside a third-party import.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from parley.errors import ConfigurationError, ProviderUnavailable


class MissingExtra(ConfigurationError, ProviderUnavailable):
    """A setting asks for a feature whose optional dependency is not installed.

    A configuration error first (its ``code``, and its HTTP status, are those of
    ``ConfigurationError``); also a ``ProviderUnavailable``, which is what a model adapter
    built on a missing SDK has always raised ("not configured, not installed or not reachable").
    """


def require_extra(module: str, *, extra: str, reason: str) -> ModuleType:
    """Import ``module`` (from the ``extra`` extra) or raise :class:`MissingExtra`.

    ``reason`` names the setting that asked for it, e.g. ``"PARLEY_REDIS_URL is set"``. Call
    it once where the feature is built (a factory or constructor), never per request.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f'{reason} but the {extra!r} extra is not installed: pip install "parley[{extra}]"',
            extra=extra,
            module=module,
        ) from exc
