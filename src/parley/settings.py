"""One Settings object, read once at the entry point and passed down.

Environment variables use the ``PARLEY_`` prefix; nested sections use ``__``
(``PARLEY_LLM__PROVIDER=openai``). A ``.env`` file in the working directory is read too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "parley"


class ServerSettings(BaseModel):
    """HTTP server and logging."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"
    log_json: bool | None = Field(
        default=None,
        description="true = JSON lines, false = console lines; empty = console on a terminal, "
        "JSON otherwise (files, pipes, log collectors)",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed to call the API (JSON list); empty = none",
    )

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        # A wildcard would let any site call the API with the user's credentials.
        if any(origin.strip() == "*" for origin in value):
            raise ValueError("CORS origins must be listed explicitly; '*' is not allowed")
        return [origin.rstrip("/") for origin in value]


class LimitSettings(BaseModel):
    """Sizes and counts every endpoint enforces."""

    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0, description="per file")
    max_files_per_request: int = Field(default=20, gt=0)
    max_request_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    max_message_chars: int = Field(default=8000, gt=0)
    max_query_chars: int = Field(default=2000, gt=0)
    max_top_k: int = Field(default=50, gt=0)
    max_collections_per_query: int = Field(default=20, gt=0)
    max_name_chars: int = Field(default=200, gt=0)


class EmbeddingSettings(BaseModel):
    """Which embedder turns text into vectors."""

    provider: Literal["local", "openai", "fake"] = Field(
        default="local",
        description="local = MiniLM ONNX shipped in a wheel; openai = any /v1/embeddings server",
    )
    model: str = "all-MiniLM-L6-v2-onnx-int8"
    base_url: str | None = None
    api_key: SecretStr | None = None
    dimension: int = Field(default=384, gt=0)
    batch_size: int = Field(
        default=8,
        gt=0,
        description="texts per model call (8 is fastest for the local model on 2 cores)",
    )
    max_tokens: int = Field(default=256, gt=0, description="input truncation for the local model")
    timeout_s: float = Field(default=30.0, gt=0)
    threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads; 0 = auto")
    query_cache_size: int = Field(default=4096, ge=0)


class LLMSettings(BaseModel):
    """Which model writes answers. ``extractive`` needs no model at all."""

    provider: Literal["extractive", "openai", "anthropic", "fake"] = "extractive"
    model: str | None = Field(default=None, description="required for openai and anthropic")
    base_url: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=32, gt=0)
    max_output_tokens: int = Field(default=800, gt=0)
    temperature: float = Field(default=0.2, ge=0, le=2)
    rewrite_followups: bool = True


class RetrievalSettings(BaseModel):
    """Hybrid search: dense + keyword, fused with reciprocal-rank fusion."""

    top_k: int = Field(default=6, gt=0)
    candidates: int = Field(default=40, gt=0, description="per retriever, before fusion")
    rrf_k: int = Field(default=60, gt=0)
    hnsw_threshold: int = Field(default=20_000, gt=0, description="vectors per collection")
    hnsw_connectivity: int = Field(default=16, gt=1)
    hnsw_expansion_add: int = Field(default=128, gt=0)
    hnsw_expansion_search: int = Field(default=128, gt=0)
    index_sync_interval_s: float = Field(default=1.0, ge=0)
    search_cache_size: int = Field(default=2048, ge=0)
    search_cache_ttl_s: float = Field(default=300.0, ge=0)


class ChunkingSettings(BaseModel):
    """How documents are cut into chunks."""

    tokenizer: Literal["local", "approx"] = "local"
    max_tokens: int = Field(default=200, ge=16)
    overlap_tokens: int = Field(default=40, ge=0)


class IngestLimitSettings(BaseModel):
    """Budgets of one uploaded file, enforced while it is parsed; a file over one fails alone."""

    parse_isolation: Literal["process", "inline"] = Field(
        default="process",
        description="process = parse and chunk each file in a separate, memory-capped process; "
        "inline = in this process (fast unit tests only: no memory ceiling, no hard kill)",
    )
    parse_processes: int = Field(
        default=2, ge=1, description="parser processes, started on first use and reused"
    )
    parse_memory_mb: int = Field(
        default=1024, ge=256, description="address-space ceiling of a parser process (MiB)"
    )
    parse_timeout_s: float = Field(
        default=120.0, gt=0, description="wall-clock limit to parse and chunk one file"
    )
    parse_tasks_per_child: int = Field(
        default=50, ge=1, description="files a parser process handles before it is replaced"
    )
    max_document_chars: int = Field(
        default=10_000_000, gt=0, description="characters of text extracted from one file"
    )
    max_sections: int = Field(default=50_000, gt=0, description="sections of one file")
    max_chunks: int = Field(default=20_000, gt=0, description="chunks of one file")
    max_csv_rows: int = Field(default=1_000_000, gt=0, description="rows of one CSV file")
    max_csv_fields: int = Field(default=2_000, gt=0, description="fields of one CSV row")
    max_json_nodes: int = Field(default=1_000_000, gt=0, description="values in one JSON file")
    max_json_depth: int = Field(default=100, gt=0, description="nesting of arrays and objects")
    max_html_nodes: int = Field(default=500_000, gt=0, description="elements in one HTML file")
    max_html_depth: int = Field(
        default=512, gt=0, description="element nesting (browsers stop nesting at 512)"
    )
    max_docx_paragraphs: int = Field(
        default=100_000, gt=0, description="paragraphs of one .docx, those in tables included"
    )
    max_docx_xml_bytes: int = Field(
        default=128 * 1024 * 1024, gt=0, description="decompressed size of word/document.xml"
    )
    max_pdf_pages: int = Field(default=2_000, gt=0, description="pages of one PDF")
    tokenize_batch_chars: int = Field(
        default=256 * 1024, ge=1024, description="characters handed to the tokenizer at once"
    )


class ChatSettings(BaseModel):
    """Token budget shared by history and retrieved context."""

    context_budget_tokens: int = Field(default=3000, gt=0)
    history_share: float = Field(default=0.3, ge=0, le=1)
    history_messages: int = Field(default=20, ge=0)
    prompts_dir: Path | None = None


class JobSettings(BaseModel):
    """Durable ingestion jobs."""

    run_in_process: bool = True
    auto_migrate: bool = True
    concurrency: int = Field(default=1, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)
    max_attempts: int = Field(default=3, gt=0)
    lease_s: float = Field(default=60.0, gt=0)
    retry_backoff_s: float = Field(
        default=5.0, ge=0, description="first retry delay; doubles with each attempt"
    )
    retry_backoff_max_s: float = Field(default=300.0, ge=0)


class DatabaseSettings(BaseModel):
    """Connection pool and search options for an external database (PostgreSQL)."""

    pool_size: int = Field(default=10, gt=0)
    max_overflow: int = Field(default=10, ge=0)
    pool_recycle_s: int = Field(default=1800, gt=0)
    pool_pre_ping: bool = True
    pool_timeout_s: float = Field(default=10.0, gt=0)
    statement_timeout_ms: int = Field(default=30_000, ge=0, description="0 = none")
    search_language: str = Field(
        default="english", description="PostgreSQL text search configuration for keyword search"
    )


class RedisSettings(BaseModel):
    """Hot state in Redis (used when PARLEY_REDIS_URL is set). The database stays the truth."""

    socket_timeout_s: float = Field(default=0.25, gt=0)
    connect_timeout_s: float = Field(default=0.5, gt=0)
    max_connections: int = Field(default=64, gt=0)
    retry_after_s: float = Field(
        default=2.0, gt=0, description="after a failure, skip Redis this long before probing"
    )
    history_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    history_max_messages: int = Field(default=50, gt=0)
    cache_ttl_s: int = Field(default=3600, gt=0)
    key_prefix: str = "parley:"


class SecuritySettings(BaseModel):
    """Accounts, tokens and API keys."""

    access_token_ttl_s: int = Field(default=900, ge=30, description="JWT access token lifetime")
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    password_min_chars: int = Field(default=12, ge=8)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=1024)
    argon2_parallelism: int = Field(default=4, ge=1)
    key_cache_ttl_s: float = Field(
        default=30.0,
        ge=0,
        description="how long a verified API key / token family is trusted without a DB read "
        "(revocation on another instance takes effect within this time)",
    )
    access_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="how long a user's readable-collections set is cached"
    )
    lockout_attempts: int = Field(default=5, gt=0, description="failed logins before lockout")
    lockout_window_s: int = Field(default=900, gt=0)
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="peer addresses or CIDR networks whose X-Forwarded-For is believed "
        "(JSON list); empty = none",
    )


class RateLimitSettings(BaseModel):
    """Requests allowed per class, in ``limits`` notation (``"60/minute;1000/hour"``).

    Each class is counted per principal (API key or user) and, separately, per client IP.
    """

    enabled: bool = True
    auth: str = Field(default="10/minute;60/hour", description="login/refresh, per email + IP")
    auth_ip: str = "30/minute;300/hour"
    chat: str = "60/minute"
    chat_ip: str = "240/minute"
    ingest: str = "30/minute"
    ingest_ip: str = "120/minute"
    admin: str = "120/minute"
    admin_ip: str = "240/minute"
    read: str = Field(default="600/minute", description="listing and reading resources")
    read_ip: str = "1200/minute"

    @field_validator(
        "auth",
        "auth_ip",
        "chat",
        "chat_ip",
        "ingest",
        "ingest_ip",
        "admin",
        "admin_ip",
        "read",
        "read_ip",
    )
    @classmethod
    def _valid_rule(cls, value: str) -> str:
        from parley.services.rate_limits import validate_rule

        return validate_rule(value)


class QuotaSettings(BaseModel):
    """Per-user token quotas (input + output tokens of generated answers); 0 = unlimited."""

    daily_tokens: int = Field(default=0, ge=0)
    monthly_tokens: int = Field(default=0, ge=0)


class Settings(BaseSettings):
    """Everything Parley can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="PARLEY_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    redis_url: SecretStr | None = None
    sql_echo: bool = False
    auth: Literal["on", "off"] = Field(
        default="on", description="off = local dev mode, refused unless bound to loopback"
    )
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="at least 32 bytes; generated into the data dir on the embedded default",
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        description="encrypts users' provider keys at rest; derived from the JWT secret if unset",
    )
    db: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    server: ServerSettings = ServerSettings()
    limits: LimitSettings = LimitSettings()
    embeddings: EmbeddingSettings = EmbeddingSettings()
    llm: LLMSettings = LLMSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    ingest_limits: IngestLimitSettings = IngestLimitSettings()
    chat: ChatSettings = ChatSettings()
    jobs: JobSettings = JobSettings()
    security: SecuritySettings = SecuritySettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    quotas: QuotaSettings = QuotaSettings()

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def resolved_database_url(self) -> str:
        """The configured database URL, or the embedded SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'parley.db').resolve()}"

    @property
    def is_postgres(self) -> bool:
        """Whether the relational store is PostgreSQL."""
        return self.resolved_database_url.startswith("postgresql")

    @property
    def is_sqlite(self) -> bool:
        """Whether the relational store is the embedded SQLite file."""
        return self.resolved_database_url.startswith("sqlite")
