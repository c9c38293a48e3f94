"""Typed configuration, one model per concern, loaded once at start-up.

Every setting comes from a `BATON_*` environment variable or, with lower precedence, from the section of the
optional TOML file named by `BATON_CONFIG_FILE` (`[server] port = 50051`). `load_config()` validates everything
and raises `ConfigError` with one line per problem naming the variable, the bad value and what is allowed.
No other module reads the environment; the models are passed down explicitly.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from baton.eventloop import uvloop_available

ENV_PREFIX = "BATON_"
CONFIG_FILE_VARIABLE = "BATON_CONFIG_FILE"


def setting(default: Any, allowed: str, description: str, **constraints: Any) -> Any:
    """A field with the text used in error messages ("is not <allowed>") and in the reference table."""
    return Field(default, description=description, json_schema_extra={"allowed": allowed}, **constraints)


class _TomlSection(PydanticBaseSettingsSource):
    """Values from one `[section]` of the TOML configuration file."""

    def __init__(self, settings_cls: type[BaseSettings], values: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = dict(values)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


class _Environ(EnvSettingsSource):
    """`BATON_*` variables from the mapping given to load_config (os.environ by default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=False, env_prefix=ENV_PREFIX)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        # Malformed JSON is left as the raw string so validation reports it like any other bad value.
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value


class _Section(BaseSettings):
    """Base of every concern's model: `BATON_` variables first, then the TOML section, then defaults."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)
    section: ClassVar[str] = ""
    _toml_values: ClassVar[Mapping[str, Any]] = {}
    _environ: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _Environ(settings_cls, cls._environ), _TomlSection(settings_cls, cls._toml_values)


class ServerConfig(_Section):
    """The gRPC listener, its limits and its lifecycle."""

    section: ClassVar[str] = "server"
    host: str = setting("127.0.0.1", "a host name or IP address", "Address the gRPC server binds.", min_length=1)
    port: int = setting(50051, "an integer between 1 and 65535", "gRPC port.", ge=1, le=65535)
    metrics_host: str = setting("127.0.0.1", "a host name or IP address", "Address of the /metrics endpoint.")
    metrics_port: int = setting(
        9464, "an integer between 0 and 65535", "Prometheus /metrics port; 0 turns it off.", ge=0, le=65535
    )
    max_message_bytes: int = setting(
        4 * 1024 * 1024,
        "an integer between 1024 and 134217728",
        "Largest request or response message; larger ones get RESOURCE_EXHAUSTED.",
        ge=1024,
        le=128 * 1024 * 1024,
    )
    max_concurrent_rpcs: int = setting(
        10_000,
        "an integer between 1 and 1000000",
        "Concurrent RPCs before new ones are refused (`RESOURCE_EXHAUSTED`, reason `SERVER_OVERLOADED`; health "
        "and reflection not counted).",
        ge=1,
        le=10**6,
    )
    grace_seconds: float = setting(
        10.0, "a number between 0 and 600", "Time in-flight RPCs get to finish on shutdown.", ge=0, le=600
    )
    drain_seconds: float = setting(
        1.0,
        "a number between 0 and 120",
        "Time between health turning NOT_SERVING and the listener closing, so load balancers notice.",
        ge=0,
        le=120,
    )
    keepalive_time_seconds: float = setting(
        30.0, "a number between 1 and 7200", "Interval of server keepalive pings.", ge=1, le=7200
    )
    keepalive_timeout_seconds: float = setting(
        10.0, "a number between 1 and 600", "Time to wait for a keepalive ack.", ge=1, le=600
    )
    min_client_ping_seconds: float = setting(
        10.0, "a number between 1 and 3600", "Most frequent client keepalive ping accepted.", ge=1, le=3600
    )
    event_loop: Literal["auto", "uvloop", "asyncio"] = setting(
        "auto",
        "one of auto, uvloop, asyncio",
        "Event loop of `baton serve`: uvloop when installed (auto), uvloop or refuse to start, or asyncio's own.",
    )
    tls_cert_file: Path | None = setting(None, "a readable PEM file", "Server certificate chain (turns on TLS).")
    tls_key_file: Path | None = setting(None, "a readable PEM file", "Server private key.")
    tls_client_ca_file: Path | None = setting(
        None, "a readable PEM file", "CA bundle for client certificates (turns on mTLS: clients must present one)."
    )

    @field_validator("event_loop", mode="before")
    @classmethod
    def _lower_loop(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("tls_cert_file", "tls_key_file", "tls_client_ca_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not (value.is_file() and os.access(value, os.R_OK)):
            raise ValueError("not a readable file")
        return value

    @model_validator(mode="after")
    def _loop_installed(self) -> ServerConfig:
        if self.event_loop == "uvloop" and not uvloop_available():
            raise ValueError(
                "BATON_EVENT_LOOP=uvloop needs uvloop installed (it is not built for Windows); use auto or asyncio"
            )
        return self

    @model_validator(mode="after")
    def _tls_pairs(self) -> ServerConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("BATON_TLS_CERT_FILE and BATON_TLS_KEY_FILE must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("BATON_TLS_CLIENT_CA_FILE needs BATON_TLS_CERT_FILE and BATON_TLS_KEY_FILE")
        return self

    @property
    def tls_enabled(self) -> bool:
        """Whether the listener uses TLS."""
        return self.tls_cert_file is not None


class StorageConfig(_Section):
    """The database."""

    section: ClassVar[str] = "storage"
    database_url: SecretStr = setting(
        SecretStr("sqlite+aiosqlite:///./baton.db"),
        "a sqlite+aiosqlite:// or postgresql+asyncpg:// URL",
        "SQLAlchemy URL of the database; SQLite is embedded, PostgreSQL for several replicas.",
    )
    auto_migrate: bool = setting(True, "true or false", "Apply migrations when the server starts.")
    pool_size: int = setting(10, "an integer between 1 and 200", "PostgreSQL connection pool size.", ge=1, le=200)
    sqlite_busy_timeout_ms: int = setting(
        5000, "an integer between 0 and 600000", "How long SQLite waits for a lock.", ge=0, le=600_000
    )
    sqlite_writes_on_loop: bool = setting(
        True,
        "true or false",
        "Run SQLite write transactions on the event loop (false: in a writer thread, which shares the GIL).",
    )
    sqlite_group_commit_ms: float = setting(
        5.0,
        "a number of milliseconds between 0 and 100",
        "How long a SQLite write on the loop waits after the last write transaction for others to share its own.",
        ge=0,
        le=100,
    )

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("unsupported driver")
        return value

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        """Which database backend the URL names."""
        return "sqlite" if self.database_url.get_secret_value().startswith("sqlite") else "postgresql"


class AuthConfig(_Section):
    """Credentials: JWT signing, token lifetimes, API-key caching and the bootstrap admin."""

    section: ClassVar[str] = "auth"
    jwt_secret: SecretStr | None = setting(
        None, "a string of at least 32 characters", "HS256 signing secret for access tokens.", min_length=32
    )
    jwt_private_key_file: Path | None = setting(
        None, "a readable PEM file", "Private key for RS256/ES256/EdDSA access tokens (instead of the secret)."
    )
    jwt_public_key_file: Path | None = setting(None, "a readable PEM file", "Public key matching the private key.")
    jwt_algorithm: Literal["HS256", "RS256", "ES256", "EdDSA"] = setting(
        "HS256", "one of HS256, RS256, ES256, EdDSA", "Signing algorithm; tokens with another are refused."
    )
    jwt_issuer: str = setting("baton", "a non-empty string", "`iss` of issued tokens, checked on use.", min_length=1)
    jwt_audience: str = setting("baton", "a non-empty string", "`aud` of issued tokens, checked on use.", min_length=1)
    access_token_ttl_seconds: int = setting(
        900, "an integer between 60 and 86400", "Access token lifetime.", ge=60, le=86_400
    )
    refresh_token_ttl_seconds: int = setting(
        30 * 86_400, "an integer between 300 and 31536000", "Refresh token lifetime.", ge=300, le=31_536_000
    )
    api_key_cache_seconds: float = setting(
        30.0,
        "a number between 0 and 3600",
        "How long a verified API key is trusted without the database; bounds how late a revocation "
        "made on another replica takes effect (revocations on this replica apply at once).",
        ge=0,
        le=3600,
    )
    bootstrap_admin_api_key: SecretStr | None = setting(
        None,
        "a string of at least 32 characters",
        "Creates an admin service account holding this key at start when no admin exists.",
        min_length=32,
    )

    @field_validator("jwt_private_key_file", "jwt_public_key_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not (value.is_file() and os.access(value, os.R_OK)):
            raise ValueError("not a readable file")
        return value

    @model_validator(mode="after")
    def _key_material(self) -> AuthConfig:
        asymmetric = self.jwt_algorithm != "HS256"
        if asymmetric and (self.jwt_private_key_file is None or self.jwt_public_key_file is None):
            raise ValueError(
                f"BATON_JWT_ALGORITHM={self.jwt_algorithm} needs BATON_JWT_PRIVATE_KEY_FILE and "
                "BATON_JWT_PUBLIC_KEY_FILE"
            )
        return self


class RateLimitConfig(_Section):
    """Token buckets per principal; Redis shares them between replicas."""

    section: ClassVar[str] = "rate_limit"
    rate_limit_enabled: bool = setting(True, "true or false", "Turn rate limiting on or off.")
    rate_limit_rps: float = setting(
        100.0, "a number between 0.01 and 1000000", "Tokens added per second to each bucket.", ge=0.01, le=10**6
    )
    rate_limit_burst: int = setting(
        200, "an integer between 1 and 10000000", "Bucket capacity (the largest burst).", ge=1, le=10**7
    )
    rate_limit_role_multipliers: dict[str, float] = setting(
        {"admin": 10.0, "operator": 5.0, "worker": 20.0},
        'a JSON object of role name to positive number, e.g. {"worker": 20}',
        "Per-role multiplier of rate and burst; a principal gets its highest role's.",
    )
    redis_url: SecretStr | None = setting(
        None, "a redis:// or rediss:// URL", "Redis for shared buckets; local buckets when unset or unreachable."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("unsupported scheme")
        return value

    @field_validator("rate_limit_role_multipliers")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v <= 0 for v in value.values()):
            raise ValueError("multipliers must be positive")
        return value


class TelemetryConfig(_Section):
    """Logs; traces are configured by the standard OTEL_* variables."""

    section: ClassVar[str] = "telemetry"
    log_format: Literal["json", "console"] = setting(
        "json", "one of json, console", "Log output: JSON lines or readable console output."
    )
    log_level: Literal["debug", "info", "warning", "error"] = setting(
        "info", "one of debug, info, warning, error", "Lowest level logged."
    )
    access_log: bool = setting(True, "true or false", "One access line per RPC.")
    service_name: str = setting("baton", "a non-empty string", "service.name of traces and build info.")
    # Standard OpenTelemetry variables (no BATON_ prefix); the SDK reads the rest of OTEL_* itself.
    otel_sdk_disabled: bool = Field(
        False,
        validation_alias="OTEL_SDK_DISABLED",
        description="Turns tracing off whatever else is set.",
        json_schema_extra={"allowed": "true or false"},
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="OTLP/gRPC collector; when set, spans are exported. Without an exporter no spans are recorded.",
        json_schema_extra={"allowed": "a URL such as http://collector:4317"},
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        description="OTLP/gRPC endpoint for traces only (overrides the one above).",
        json_schema_extra={"allowed": "a URL such as http://collector:4317"},
    )
    otel_traces_exporter: Literal["otlp", "console", "none"] | None = Field(
        None,
        validation_alias="OTEL_TRACES_EXPORTER",
        description="otlp (the default when an endpoint is set), console (spans to stdout) or none.",
        json_schema_extra={"allowed": "one of otlp, console, none"},
    )

    @property
    def traces_exporter(self) -> str | None:
        """The span exporter to use, or None when no spans should be recorded."""
        if self.otel_sdk_disabled or self.otel_traces_exporter == "none":
            return None
        if self.otel_traces_exporter is not None:
            return self.otel_traces_exporter
        if self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint:
            return "otlp"
        return None

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class EngineConfig(_Section):
    """Defaults of the orchestration engine, used where a handler leaves a value unset."""

    section: ClassVar[str] = "engine"
    default_max_attempts: int = setting(3, "an integer between 1 and 1000", "Attempts per step.", ge=1, le=1000)
    default_initial_backoff_seconds: float = setting(
        1.0, "a number between 0 and 86400", "Backoff before the second attempt.", ge=0, le=86_400
    )
    default_backoff_coefficient: float = setting(
        2.0, "a number between 1 and 100", "Growth factor of the backoff.", ge=1, le=100
    )
    default_max_backoff_seconds: float = setting(
        300.0, "a number between 0 and 604800", "Upper bound of the backoff.", ge=0, le=604_800
    )
    default_lease_timeout_seconds: float = setting(
        300.0, "a number between 1 and 86400", "Start-to-close timeout of an attempt.", ge=1, le=86_400
    )
    max_poll_wait_seconds: float = setting(
        60.0, "a number between 0 and 600", "Longest PollSteps long-poll.", ge=0, le=600
    )
    graph_weight_downstream: float = setting(
        1.0, "a number between 0 and 1000", "Impact-score weight of blocked downstream steps.", ge=0, le=1000
    )
    graph_weight_critical_path: float = setting(
        2.0, "a number between 0 and 1000", "Impact-score weight of being on the critical path.", ge=0, le=1000
    )
    graph_weight_failures: float = setting(
        0.5, "a number between 0 and 1000", "Impact-score weight of failed attempts.", ge=0, le=1000
    )


SECTIONS: tuple[type[_Section], ...] = (
    ServerConfig,
    StorageConfig,
    AuthConfig,
    RateLimitConfig,
    TelemetryConfig,
    EngineConfig,
)


@dataclass(frozen=True)
class Config:
    """The whole configuration: one validated model per concern."""

    server: ServerConfig
    storage: StorageConfig
    auth: AuthConfig
    rate_limit: RateLimitConfig
    telemetry: TelemetryConfig
    engine: EngineConfig
    config_file: Path | None = None


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def env_name(field_name: str, section: type[_Section] | None = None) -> str:
    """The environment variable of a field (its alias for the standard OTEL_* ones)."""
    if section is not None:
        field = section.model_fields.get(field_name)
        if field is not None and isinstance(field.validation_alias, str):
            return field.validation_alias
    return f"{ENV_PREFIX}{field_name.upper()}"


def _describe(section: type[_Section], error: Mapping[str, Any]) -> str:
    loc = error.get("loc", ())
    if not loc:
        return str(error.get("msg", "invalid")).removeprefix("Value error, ")
    name = str(loc[0])
    for field_name, info in section.model_fields.items():
        if info.validation_alias == name:
            name = field_name
    field = section.model_fields.get(name)
    variable = env_name(name, section)
    extra = field.json_schema_extra if field is not None else None
    allowed = extra.get("allowed") if isinstance(extra, dict) else None
    value = error.get("input")
    shown = "(hidden)" if field is not None and "SecretStr" in str(field.annotation) else repr(value)
    if allowed:
        return f"{variable}: {shown} is not {allowed}"
    return f"{variable}: {shown}: {error.get('msg', 'invalid')}"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError([f"{CONFIG_FILE_VARIABLE}: cannot read {str(path)!r}: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{CONFIG_FILE_VARIABLE}: {str(path)!r} is not valid TOML: {exc}"]) from None


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate every section; raise ConfigError listing every problem at once."""
    env = dict(os.environ if environ is None else environ)
    file_name = env.get(CONFIG_FILE_VARIABLE)
    config_file = Path(file_name) if file_name else None
    document = _read_toml(config_file) if config_file is not None else {}
    problems: list[str] = []
    unknown = set(document) - {s.section for s in SECTIONS}
    problems.extend(f"{CONFIG_FILE_VARIABLE}: unknown section [{name}]" for name in sorted(unknown))
    loaded: dict[str, _Section] = {}
    for section in SECTIONS:
        values = document.get(section.section, {})
        if not isinstance(values, dict):
            problems.append(f"{CONFIG_FILE_VARIABLE}: [{section.section}] must be a table")
            values = {}
        problems.extend(
            f"{CONFIG_FILE_VARIABLE}: unknown key {key!r} in [{section.section}]"
            for key in sorted(set(values) - set(section.model_fields))
        )
        attrs = {"_toml_values": values, "_environ": env, "__doc__": section.__doc__}
        model = type(section.__name__, (section,), attrs)
        try:
            loaded[section.section] = model()
        except ValidationError as exc:
            problems.extend(_describe(section, e) for e in exc.errors())
    if problems:
        raise ConfigError(problems)
    return Config(config_file=config_file, **loaded)  # type: ignore[arg-type]


def redacted(config: Config) -> dict[str, dict[str, Any]]:
    """The effective configuration as plain data with every secret replaced by '**********'."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("server", "storage", "auth", "rate_limit", "telemetry", "engine"):
        model: _Section = getattr(config, name)
        values: dict[str, Any] = {}
        for key in type(model).model_fields:
            value = getattr(model, key)
            if isinstance(value, SecretStr):
                value = _redact_secret(key, value)
            elif isinstance(value, Path):
                value = str(value)
            values[key] = value
        out[name] = values
    return out


def _redact_secret(key: str, value: SecretStr) -> str:
    raw = value.get_secret_value()
    if key.endswith("_url") and "://" in raw:
        from sqlalchemy.engine import make_url

        try:
            return make_url(raw).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - a URL we cannot parse is hidden whole
            return "**********"
    return "**********"


def reference_markdown() -> str:
    """The configuration reference as a Markdown table per section (kept in the README by a test)."""
    lines: list[str] = []
    for section in SECTIONS:
        lines += [f"**[{section.section}]** — {section.__doc__}", ""]
        lines += ["| variable | default | allowed | meaning |", "| --- | --- | --- | --- |"]
        for name, field in section.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            default = field.default
            if isinstance(default, SecretStr):
                default = default.get_secret_value()
            shown = "unset" if default is None else f"`{_toml_value(default)}`"
            allowed = str(extra.get("allowed", "")).replace("|", "\\|")
            lines.append(f"| `{env_name(name, section)}` | {shown} | {allowed} | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        import json

        return json.dumps(value)
    return str(value)
