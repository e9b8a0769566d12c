"""Database URLs: parsing, passwords from the environment or a file, and redaction."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import InputError

# TLS to the database, as libpq names its modes. disable: never; prefer: when the server offers
# it, unverified (the drivers' own default); require: always, unverified; verify-ca: the server's
# certificate must chain to `sslrootcert`; verify-full: that, and name the host connected to.
SSL_MODES = ("disable", "prefer", "require", "verify-ca", "verify-full")
QUERY_OPTIONS = ("password_env", "password_file", "sslmode", "sslrootcert", "statement_timeout")

SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    "dynamodb": "dynamodb",
}
DYNAMODB_OPTIONS = ("endpoint", "profile", "role_arn")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
PROFILE = re.compile(r"[\w+=,.@-]{1,128}")


@dataclass(frozen=True)
class DatabaseUrl:
    dialect: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    path: str | None = None  # sqlite file
    sslmode: str = "prefer"
    # CA certificates (a PEM file) for verify-ca / verify-full; None: the system's trust store.
    sslrootcert: str | None = None
    statement_timeout: float | None = None  # seconds a statement may run (None: no limit)
    # dynamodb://REGION?endpoint=URL&profile=NAME&role_arn=ARN
    region: str | None = None
    endpoint: str | None = None  # a local emulator (None: the region's AWS endpoint)
    profile: str | None = None
    role_arn: str | None = None  # assumed for every call (another account)

    def same_database(self, other: DatabaseUrl) -> bool:
        if self.dialect == "dynamodb" or other.dialect == "dynamodb":
            # The same region and endpoint, in the same account as far as the URL tells (its
            # profile and role).
            return (self.dialect, self.region, self.endpoint, self.profile, self.role_arn) == (
                other.dialect,
                other.region,
                other.endpoint,
                other.profile,
                other.role_arn,
            )
        if self.dialect == "sqlite" and other.dialect == "sqlite":
            return Path(self.path or "").resolve() == Path(other.path or "").resolve()
        ports = {"postgresql": 5432, "mysql": 3306}

        def where(url: DatabaseUrl) -> tuple[object, ...]:
            host = url.host if url.host not in (None, "", "localhost") else "127.0.0.1"
            return (url.dialect, host, url.port or ports.get(url.dialect), url.database)

        return where(self) == where(other)

    def redacted(self) -> str:
        """The URL as it may be shown: never with the password."""
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        if self.dialect == "dynamodb":
            options = [f"{name}={getattr(self, name)}" for name in DYNAMODB_OPTIONS if getattr(self, name)]
            return f"dynamodb://{self.region}" + ("?" + "&".join(options) if options else "")
        user = self.user or ""
        auth = f"{user}:***@" if self.password else (f"{user}@" if user else "")
        port = f":{self.port}" if self.port else ""
        return f"{self.dialect}://{auth}{self.host or ''}{port}/{self.database or ''}"

    def scrub(self, text: str) -> str:
        """Removes the password from a driver's message, in case a driver ever echoes it."""
        if self.password:
            text = text.replace(self.password, "***")
        return text


def parse_url(text: str) -> DatabaseUrl:
    """postgresql://user:pass@host:port/db, mysql://..., sqlite:///path.

    The password may instead come from `?password_env=VAR` or `?password_file=PATH`, so it never
    has to appear on a command line."""
    try:
        parts = urlsplit(text)
    except ValueError:
        raise InputError("cannot read a database URL (expected postgresql://, mysql:// or sqlite:///)") from None
    dialect = SCHEMES.get(parts.scheme.lower())
    if dialect is None:
        shown = parts.scheme or text.split(":", 1)[0][:20]
        raise InputError(
            f"unsupported database URL scheme {shown!r}: use postgresql://, mysql://, sqlite:/// or dynamodb://"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    if dialect == "dynamodb":
        return _dynamodb_url(parts.netloc, query)
    unknown = sorted(set(query) - set(QUERY_OPTIONS))
    if unknown:
        raise InputError(f"unknown URL option {unknown[0]!r}: the options are {', '.join(QUERY_OPTIONS)}")
    if dialect == "sqlite":
        path = unquote(parts.netloc + parts.path)
        if not path or path == "/":
            raise InputError("sqlite URL needs a file: sqlite:///relative/path.db or sqlite:////absolute/path.db")
        # sqlite:///rel.db -> 'rel.db' ; sqlite:////abs.db -> '/abs.db'
        path = path[1:] if path.startswith("/") else path
        return DatabaseUrl(dialect="sqlite", path=path)
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"invalid port in {dialect} URL") from None
    password = unquote(parts.password) if parts.password is not None else None
    if "password_env" in query:
        var = query["password_env"]
        if var not in os.environ:
            raise InputError(f"environment variable {var} (password_env) is not set")
        password = os.environ[var]
    elif "password_file" in query:
        try:
            password = Path(query["password_file"]).read_text().strip()
        except OSError as exc:
            raise InputError(f"cannot read password_file {query['password_file']}: {exc.strerror}") from None
    database = unquote(parts.path.lstrip("/")) or None
    if not database:
        raise InputError(f"{dialect} URL needs a database name: {dialect}://user@host:port/DATABASE")
    sslmode = query.get("sslmode", "prefer")
    if sslmode not in SSL_MODES:
        raise InputError(f"sslmode must be one of {', '.join(SSL_MODES)}, not {sslmode!r}")
    sslrootcert = query.get("sslrootcert") or None
    if sslrootcert is not None and not Path(sslrootcert).is_file():
        raise InputError(f"sslrootcert {sslrootcert} is not a readable file")
    return DatabaseUrl(
        dialect=dialect,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=password,
        database=database,
        sslmode=sslmode,
        sslrootcert=sslrootcert,
        statement_timeout=_seconds(query.get("statement_timeout")),
    )


def _dynamodb_url(region: str, query: dict[str, str]) -> DatabaseUrl:
    unknown = sorted(set(query) - set(DYNAMODB_OPTIONS))
    if unknown:
        raise InputError(f"unknown URL option {unknown[0]!r}: the options are {', '.join(DYNAMODB_OPTIONS)}")
    if not REGION.fullmatch(region):
        raise InputError("a DynamoDB URL names its region: dynamodb://us-east-1")
    endpoint = query.get("endpoint") or None
    if endpoint is not None:
        target = urlsplit(endpoint)
        if target.scheme not in ("http", "https") or not target.hostname:
            raise InputError("endpoint must be an http:// or https:// URL")
    role_arn = query.get("role_arn") or None
    if role_arn is not None and not ROLE_ARN.fullmatch(role_arn):
        raise InputError("role_arn must be an IAM role ARN: arn:aws:iam::123456789012:role/NAME")
    profile = query.get("profile") or None
    if profile is not None and not PROFILE.fullmatch(profile):
        raise InputError("profile must be the name of an AWS profile")
    return DatabaseUrl(dialect="dynamodb", region=region, endpoint=endpoint, profile=profile, role_arn=role_arn)


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86_400:
        raise InputError(f"statement_timeout must be a number of seconds from 0 to 86400, not {text!r}")
    return value
