"""Settings: env parsing, nesting, secrets, and the documented example file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from parley.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def setting_names(prefix: str, model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        default = field.default
        if isinstance(default, BaseModel):
            names |= setting_names(f"{prefix}{name.upper()}__", type(default))
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def test_env_example_is_generated_and_documents_every_setting() -> None:
    from parley.cli.config import env_example

    text = (ROOT / ".env.example").read_text()
    assert text == env_example(), "regenerate with: parley config > .env.example"
    documented = set(re.findall(r"^# (PARLEY_[A-Z0-9_]+)=", text, flags=re.M))
    assert documented == setting_names("PARLEY_", Settings)


def test_env_vars_and_nested_sections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("PARLEY_LLM__PROVIDER", "openai")
    monkeypatch.setenv("PARLEY_LLM__API_KEY", "sk-secret")
    monkeypatch.setenv("PARLEY_RETRIEVAL__TOP_K", "9")
    settings = Settings()
    assert settings.llm.provider == "openai" and settings.retrieval.top_k == 9
    assert "sk-secret" not in repr(settings) and "sk-secret" not in str(settings.model_dump())
    assert (
        settings.llm.api_key is not None and settings.llm.api_key.get_secret_value() == "sk-secret"
    )
    assert settings.resolved_database_url.endswith("/d/parley.db") and settings.is_sqlite


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PARLEY_SERVER__PORT=9123\n")
    assert Settings().server.port == 9123


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARLEY_SERVER__PORT", "70000")
    with pytest.raises(ValueError):
        Settings()
