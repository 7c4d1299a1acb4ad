"""Connection URLs in messages and logs, never with their passwords.

Example:
    >>> redact_url("redis://:s3cret@cache:6379/0")
    'redis://:***@cache:6379/0'
    >>> redact("cannot reach redis://:s3cret@cache:6379/0", "redis://:s3cret@cache:6379/0")
    'cannot reach redis://:***@cache:6379/0'
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MASK = "***"


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password or None
    except ValueError:  # an unparseable port, a bad IPv6 literal
        return None


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return url
    return f"{scheme}{sep}{user}:{MASK}@{host}{slash}{path}"


def redact(text: str, *urls: str | None) -> str:
    """``text`` with every password of ``urls`` (raw or percent-decoded) masked."""
    for url in urls:
        if not url:
            continue
        text = text.replace(url, redact_url(url))
        password = _password(url)
        if password:
            for form in {password, unquote(password)}:
                text = text.replace(form, MASK)
    return text
