"""A base install (no extras) runs every entry point; a setting that needs a missing extra
fails with one line naming it.

Each case runs in a fresh interpreter whose ``sys.meta_path`` refuses one optional package
(and its submodules), as if it were not installed: the packages are all installed in the
dev environment, ``pip uninstall`` would break it for everyone, and a blocked import in this
process would leave half-imported modules behind for the other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs in the child: argv = [blocked package, scratch dir, JSON list of negative cases].
_CHILD = r"""
import asyncio, importlib.abc, json, os, sys
from pathlib import Path

BLOCKED, DATA, CASES = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == BLOCKED or name.startswith(BLOCKED + "."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


assert not any(m.partition(".")[0] == BLOCKED for m in sys.modules), "imported too early"
sys.meta_path.insert(0, Blocker())

from typer.testing import CliRunner

import parley.jobs.worker  # noqa: F401
from parley.api.app import create_app
from parley.cli.main import app as cli
from parley.container import Container
from parley.errors import ConfigurationError
from parley.settings import Settings


async def build(settings):
    container = Container.build(settings)
    try:
        await container.prepare_database()
    finally:
        await container.aclose()


# Nothing configured: the embedded default must not need the blocked package.
create_app(Settings(data_dir=DATA / "app"))
asyncio.run(build(Settings(data_dir=DATA / "container")))
runner = CliRunner()
cli_env = {"PARLEY_DATA_DIR": str(DATA / "container")}  # prepared (migrated) just above
for args in (["--help"], ["collections"]):
    result = runner.invoke(cli, args, env=cli_env)
    assert result.exit_code == 0, (args, result.output, result.exception)

# Configured: the container refuses with the domain error, the CLI with a non-zero exit.
report = []
for i, env in enumerate(CASES):
    os.environ.update(env)
    try:
        asyncio.run(build(Settings(data_dir=DATA / f"case{i}")))
    except ConfigurationError as exc:
        error = {"type": type(exc).__name__, "detail": exc.detail}
    else:
        error = None
    result = runner.invoke(cli, ["collections"], env=cli_env)
    output = " ".join(result.output.split())
    report.append({"error": error, "cli_exit": result.exit_code, "cli_output": output})
    for name in env:
        del os.environ[name]
print(json.dumps(report))
"""

SECRET = "hunter2"
PG_URL = f"postgresql+asyncpg://parley:{SECRET}@127.0.0.1:1/parley"
# An external database needs an explicit JWT secret; it is not what these cases are about.
PG = {"PARLEY_DATABASE_URL": PG_URL, "PARLEY_JWT_SECRET": "j" * 48}
OPENAI_LLM = {
    "PARLEY_LLM__PROVIDER": "openai",
    "PARLEY_LLM__MODEL": "m",
    "PARLEY_LLM__API_KEY": SECRET,
}

# blocked package → [(environment, extra, setting named in the message)]
CASES: dict[str, list[tuple[dict[str, str], str, str]]] = {
    "redis": [
        ({"PARLEY_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:1/0"}, "redis", "PARLEY_REDIS_URL"),
    ],
    "asyncpg": [(PG, "postgres", "PARLEY_DATABASE_URL")],
    "pgvector": [(PG, "postgres", "PARLEY_DATABASE_URL")],
    "openai": [
        (OPENAI_LLM, "openai", "PARLEY_LLM__PROVIDER"),
        (
            {
                "PARLEY_EMBEDDINGS__PROVIDER": "openai",
                "PARLEY_EMBEDDINGS__MODEL": "e",
                "PARLEY_EMBEDDINGS__BASE_URL": "http://127.0.0.1:1/v1",
            },
            "openai",
            "PARLEY_EMBEDDINGS__PROVIDER",
        ),
    ],
    "anthropic": [
        (
            {"PARLEY_LLM__PROVIDER": "anthropic", "PARLEY_LLM__MODEL": "m"},
            "anthropic",
            "PARLEY_LLM__PROVIDER",
        ),
    ],
}


def _clean_env() -> dict[str, str]:
    # The developer's own PARLEY_* settings (a Redis URL, say) must not leak into the child.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["COLUMNS"] = "250"  # rich wraps CLI errors at the terminal width
    return env


@pytest.mark.parametrize("blocked", sorted(CASES))
def test_base_install_runs_and_missing_extras_are_named(blocked: str, tmp_path: Path) -> None:
    cases = CASES[blocked]
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, blocked, str(tmp_path), json.dumps([c[0] for c in cases])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # no .env of the repository
        env=_clean_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for (_env, extra, setting), outcome in zip(cases, report, strict=True):
        error = outcome["error"]
        assert error is not None, f"{setting}: the container was built without {blocked}"
        detail = error["detail"]
        assert error["type"] == "MissingExtra"
        assert detail.startswith(setting), detail
        assert f"the '{extra}' extra is not installed" in detail
        assert detail.endswith(f'pip install "parley[{extra}]"'), detail
        assert "\n" not in detail and SECRET not in detail
        assert outcome["cli_exit"] != 0
        assert f'extra is not installed: pip install "parley[{extra}]"' in outcome["cli_output"]
        assert "Traceback" not in outcome["cli_output"] and SECRET not in outcome["cli_output"]
