"""Native extensions the default install loads must coexist, in either import order.

usearch 2.26.2 to 2.26.6 crash the interpreter when onnxruntime is imported after them, which
a server hits when a large (HNSW) collection loads before the first query is embedded.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "order",
    [
        ("usearch.index", "onnxruntime", "tokenizers"),
        ("onnxruntime", "tokenizers", "usearch.index"),
    ],
)
def test_import_order_does_not_crash(order: tuple[str, ...]) -> None:
    code = "; ".join(f"import {name}" for name in order) + "; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == "ok"
