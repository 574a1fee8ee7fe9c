"""Settings, read once from the environment (and `.env`) by pydantic-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.tokens import FILE_TOKENS

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_REWRITE_MODEL = "claude-haiku-4-5"


class ModelPrice(BaseModel):
    """US dollars per million tokens, for the cost estimate of `/chatbot usage`."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float = Field(ge=0)
    cache_write: float = Field(ge=0)


# The one price table. Keys are model id prefixes: the longest prefix of a model's id prices it (so
# "claude-sonnet" prices every Sonnet not listed on its own). Anthropic's list prices for the models
# named; replace or extend it with CHATBOT_MODEL_PRICES (JSON of the same shape).
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus": ModelPrice(input=15, output=75, cache_read=1.5, cache_write=18.75),
    "claude-opus-4-5": ModelPrice(input=5, output=25, cache_read=0.5, cache_write=6.25),
    "claude-sonnet": ModelPrice(input=3, output=15, cache_read=0.3, cache_write=3.75),
    "claude-haiku": ModelPrice(input=0.8, output=4, cache_read=0.08, cache_write=1),
    "claude-haiku-4-5": ModelPrice(input=1, output=5, cache_read=0.1, cache_write=1.25),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default=Path(".chatbot"), alias="CHATBOT_DATA_DIR")

    convex_url: str | None = Field(default=None, alias="CONVEX_URL")
    convex_service_secret: SecretStr | None = Field(default=None, alias="CONVEX_SERVICE_SECRET")

    weaviate_url: str | None = Field(default=None, alias="WEAVIATE_URL")
    weaviate_grpc_port: int = Field(default=50051, alias="WEAVIATE_GRPC_PORT")
    weaviate_api_key: SecretStr | None = Field(default=None, alias="WEAVIATE_API_KEY")
    # With no WEAVIATE_URL: "hybrid" (FTS5 + local vectors, the default) or "keyword" (FTS5 alone, no model).
    retrieval: str = Field(default="hybrid", alias="CHATBOT_RETRIEVAL")
    embedder: str = Field(default="local", alias="CHATBOT_EMBEDDER")
    embeddings_url: str | None = Field(default=None, alias="CHATBOT_EMBEDDINGS_URL")
    embeddings_api_key: SecretStr | None = Field(default=None, alias="CHATBOT_EMBEDDINGS_API_KEY")
    embeddings_model: str = Field(default="text-embedding-3-small", alias="CHATBOT_EMBEDDINGS_MODEL")
    embeddings_dimensions: int = Field(default=1536, alias="CHATBOT_EMBEDDINGS_DIMENSIONS")

    anthropic_api_key: SecretStr | None = Field(default=None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(default=None, alias="ANTHROPIC_BASE_URL")
    model: str = Field(default=DEFAULT_MODEL, alias="CHATBOT_MODEL")
    # A model stream with no text for this long ends the reply as timed out.
    llm_idle_timeout_s: float = Field(default=20.0, gt=0, alias="CHATBOT_LLM_IDLE_TIMEOUT_S")
    # A reply left streaming and silent this long by an earlier run is finished as interrupted
    # (longer than the idle limit, so a reply waiting on a silent model is never taken); swept this often.
    orphan_after_s: float = Field(default=25.0, ge=0, alias="CHATBOT_ORPHAN_AFTER_S")
    recovery_interval_s: float = Field(default=5.0, gt=0, alias="CHATBOT_RECOVERY_INTERVAL_S")
    # Question rewriting before retrieval (only with an LLM): a small fast model, bounded in time.
    rewrite_model: str = Field(default=DEFAULT_REWRITE_MODEL, alias="CHATBOT_REWRITE_MODEL")
    rewrite_timeout_s: float = Field(default=0.6, alias="CHATBOT_REWRITE_TIMEOUT_S")
    # How often questions kept while the store was unreachable are tried again.
    outbox_retry_s: float = Field(default=5.0, gt=0, alias="CHATBOT_OUTBOX_RETRY_S")
    # Scale-out: a reply whose owner has not heartbeated (every third of this) for this long is taken over.
    owner_stale_s: float = Field(default=10.0, gt=0, alias="CHATBOT_OWNER_STALE_S")
    max_answer_tokens: int = Field(default=1024, alias="CHATBOT_MAX_ANSWER_TOKENS")
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES), alias="CHATBOT_MODEL_PRICES"
    )
    context_token_budget: int = Field(default=6000, alias="CHATBOT_CONTEXT_TOKENS")
    file_token_budget: int = Field(default=FILE_TOKENS, ge=0, alias="CHATBOT_FILE_TOKENS")

    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(default=None, alias="SLACK_API_URL")
    # Slack's own streaming (chat.startStream) for replies in threads; off: placeholder + chat.update.
    slack_native_streaming: bool = Field(default=True, alias="SLACK_NATIVE_STREAMING")
    # Distribution: with a client id, any workspace installs the app at /slack/install (OAuth v2)
    # and each is answered with its own bot token, kept sealed with CHATBOT_TOKEN_KEY (Fernet).
    slack_client_id: str | None = Field(default=None, alias="SLACK_CLIENT_ID")
    slack_client_secret: SecretStr | None = Field(default=None, alias="SLACK_CLIENT_SECRET")
    slack_scopes: str | None = Field(default=None, alias="SLACK_SCOPES")  # unset: the manifest's bot scopes
    slack_redirect_uri: str | None = Field(default=None, alias="SLACK_REDIRECT_URI")
    token_key: SecretStr | None = Field(default=None, alias="CHATBOT_TOKEN_KEY")
    # Apps distributed outside the Marketplace may read threads only once a minute, 15 messages at a time.
    slack_history_limited: bool = Field(default=False, alias="SLACK_HISTORY_LIMITED")

    discord_token: SecretStr | None = Field(default=None, alias="DISCORD_TOKEN")
    discord_api_url: str | None = Field(default=None, alias="DISCORD_API_URL")
    discord_gateway_url: str | None = Field(default=None, alias="DISCORD_GATEWAY_URL")
    # Sharding: this process runs the shards DISCORD_SHARD_IDS ("0,1") of DISCORD_SHARD_COUNT; other
    # processes run the others. Unset: one process, one shard.
    discord_shard_ids: Annotated[tuple[int, ...], NoDecode] = Field(default=(), alias="DISCORD_SHARD_IDS")
    discord_shard_count: int | None = Field(default=None, ge=1, alias="DISCORD_SHARD_COUNT")
    # Several processes share the store (web and shard processes on one Convex, or on one machine's
    # SQLite file): platform budgets are leased from it and replies are owned with heartbeats, so a
    # dead process's replies are taken over. Unset: on with Convex, off with SQLite.
    scale_out: bool | None = Field(default=None, alias="CHATBOT_SCALE_OUT")

    port: int = Field(default=3000, alias="PORT")
    # /healthz, /readyz and /metrics for processes without a web server of their own (Discord, Slack
    # Socket Mode); unset: none. The Slack HTTP server serves them on PORT beside /slack/events.
    health_port: int | None = Field(default=None, alias="CHATBOT_HEALTH_PORT")
    ready_cache_s: float = Field(default=5.0, alias="CHATBOT_READY_CACHE_S")  # /readyz probes at most this often
    log_level: str = Field(default="INFO", alias="CHATBOT_LOG_LEVEL")

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _shard_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.replace(" ", "").split(",") if part)
        return value

    @model_validator(mode="after")
    def _shards_fit(self) -> Settings:
        ids, count = self.discord_shard_ids, self.discord_shard_count
        if ids and count is None:
            raise ValueError("DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT")
        if count is not None and any(not 0 <= i < count for i in ids):
            raise ValueError(f"every shard id must be from 0 to {count - 1} (DISCORD_SHARD_COUNT is {count})")
        if len(set(ids)) != len(ids):
            raise ValueError("DISCORD_SHARD_IDS names a shard twice")
        return self


class MissingSetting(Exception):
    """A required variable is unset; str() is the one clear line to show."""

    def __init__(self, *names: str, purpose: str) -> None:
        super().__init__(f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} not set ({purpose})")
        self.names = names


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
