"""The one HTTP health wait: probe a URL until it answers healthy or a deadline passes.

:func:`probe` asks once and reports what came back; :func:`wait_healthy` repeats it
until the answer is healthy (status, and optionally a body substring) or the deadline
passes, then returns the answer or raises :class:`HealthError` naming the URL (without
credentials), how long it waited and the last status or error. Requests never go
through a proxy from the environment (health URLs are local) and never follow
redirects.
"""

from __future__ import annotations

import time
import urllib.parse


class HealthError(RuntimeError):
    """The URL did not answer healthy before the deadline; ``answer`` is the last one."""

    def __init__(self, message: str, answer: dict):
        super().__init__(message)
        self.answer = answer


def redact_url(url: str) -> str:
    """``url`` without ``user:password@`` (query strings are kept)."""
    try:
        parts = urllib.parse.urlsplit(str(url))
    except ValueError:
        return "<unparseable URL>"
    if parts.username is None and parts.password is None:
        return str(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"<redacted>@{host}"))


def _describe(answer: dict) -> str:
    if answer.get("status") is None:
        return f"no answer ({answer.get('error') or 'nothing listening'})"
    body = answer.get("body", "")
    return f"HTTP {answer['status']}" + (f" {body[:80]!r}" if body else "")


def probe(
    url: str,
    *,
    timeout: float = 3.0,
    expect_status=(200,),
    expect: str | None = None,
    verify=True,
    cert=None,
    auth=None,
    headers=None,
) -> dict:
    """GET ``url`` once. Returns ``{"url" (redacted), "status", "body" (first 512
    characters), "healthy"}`` plus ``"error"`` when nothing answered."""
    import requests

    shown = redact_url(url)
    session = requests.Session()
    session.trust_env = False
    try:
        resp = session.get(
            url,
            timeout=timeout,
            allow_redirects=False,
            verify=verify,
            cert=cert,
            auth=auth,
            headers=headers,
        )
        body = resp.text[:512]
    except requests.RequestException as err:
        return {
            "url": shown,
            "status": None,
            "body": "",
            "healthy": False,
            "error": str(err).replace(str(url), shown),
        }
    finally:
        session.close()
    healthy = resp.status_code in tuple(expect_status) and (expect is None or expect in body)
    return {"url": shown, "status": resp.status_code, "body": body, "healthy": healthy}


def wait_healthy(
    url: str,
    *,
    timeout: float = 30.0,
    interval: float = 0.5,
    raise_error: bool = True,
    what: str = "",
    **probe_args,
) -> dict:
    """Probe ``url`` until healthy or ``timeout`` seconds passed. Returns the last
    answer with ``waited`` (seconds) and ``attempts``; raises :class:`HealthError` when
    it never got healthy (unless ``raise_error`` is false: then the answer says
    ``healthy: False``). ``what`` names the service in the message."""
    request_timeout = float(probe_args.pop("request_timeout", 3.0))
    deadline = time.monotonic() + float(timeout)
    started, attempts = time.monotonic(), 0
    while True:
        left = deadline - time.monotonic()
        per_try = max(0.1, min(request_timeout, left))
        answer = probe(url, timeout=per_try, **probe_args)
        attempts += 1
        answer.update({"waited": round(time.monotonic() - started, 1), "attempts": attempts})
        if answer["healthy"]:
            return answer
        if time.monotonic() + float(interval) >= deadline:
            break
        time.sleep(float(interval))
    if not raise_error:
        return answer
    expected = probe_args.get("expect")
    wanted = "HTTP " + "/".join(str(s) for s in probe_args.get("expect_status", (200,)))
    if expected:
        wanted += f" with {expected!r} in the body"
    raise HealthError(
        f"{what + ' at ' if what else ''}{answer['url']} did not answer {wanted} within "
        f"{float(timeout):g}s ({attempts} attempts); last: {_describe(answer)}. Check that "
        "the service runs (systemctl status, journalctl -u) and listens on that address.",
        answer,
    )
