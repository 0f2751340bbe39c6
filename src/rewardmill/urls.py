"""URLs that may carry credentials (`https://user:key@host/v1`): connect without them in the URL, show them never.

httpx would otherwise send them as basic auth itself, and log the whole URL (userinfo included) at INFO level, so
the credentials are split off into an explicit `httpx.BasicAuth` and every message shows the URL without them.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit


def _parts(url: str):
    try:
        return urlsplit(url)
    except ValueError:
        return None


def without_credentials(url: str) -> str:
    """`url` with any `user:password@` removed (unchanged when it has none or does not parse)."""
    parts = _parts(url)
    if parts is None or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def shown(url: str | None) -> str:
    """How a URL appears in messages and logs: `https://***@host/v1` when it carries credentials."""
    if url is None:
        return "None"
    parts = _parts(url)
    if parts is None or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def credentials(url: str) -> tuple[str, str] | None:
    """(user, password) from `url`'s userinfo, percent-decoded; None when it has none."""
    parts = _parts(url)
    if parts is None or "@" not in parts.netloc:
        return None
    return unquote(parts.username or ""), unquote(parts.password or "")


def scrub(text: str, url: str | None) -> str:
    """`text` with `url`'s userinfo (raw and decoded, user and password) replaced by ***."""
    if not url:
        return text
    parts = _parts(url)
    if parts is None or "@" not in parts.netloc:
        return text
    userinfo = parts.netloc.rsplit("@", 1)[0]
    secrets = {userinfo, *userinfo.split(":", 1), *(unquote(s) for s in userinfo.split(":", 1))}
    for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
