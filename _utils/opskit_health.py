"""The one health wait: probe a URL until it answers healthy or a deadline passes; and
the one wait loop every opskit wait runs on.

:func:`probe` asks once and reports what came back; :func:`wait_healthy` repeats it
until the answer is healthy (status, and optionally a body substring) or the deadline
passes, then returns the answer or raises :class:`HealthError` naming the URL (without
credentials), how long it waited and the last status or error. :func:`wait_until` is
the loop itself (deadline, interval, attempts) for checks that judge more than one
answer, such as an exporter's unit state plus its ``/metrics`` series, a reload's
timestamp, a process's mapped libraries or the Salt mine. Requests never go
through a proxy from the environment (health URLs are local) and never follow
redirects.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
import warnings


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
    body_limit: int | None = 512,
) -> dict:
    """GET ``url`` once. Returns ``{"url" (redacted), "status", "body", "healthy"}``;
    ``body`` is the first ``body_limit`` characters (``None``: all of it). When nothing
    answered, ``status`` is None, ``error`` says why and ``tls`` tells whether the TLS
    handshake failed (a server that requires a client certificate refuses it there).
    ``verify=False`` is for our own service on this host, whose certificate names the
    host rather than the loopback address probed: urllib3's warning is silenced."""
    import requests
    import urllib3

    shown = redact_url(url)
    session = requests.Session()
    session.trust_env = False
    try:
        with warnings.catch_warnings():
            if verify is False:
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            resp = session.get(
                url,
                timeout=timeout,
                allow_redirects=False,
                verify=verify,
                cert=cert,
                auth=auth,
                headers=headers,
            )
        body = resp.text if body_limit is None else resp.text[:body_limit]
    except requests.RequestException as err:
        return {
            "url": shown,
            "status": None,
            "body": "",
            "healthy": False,
            "error": str(err).replace(str(url), shown),
            "tls": isinstance(err, requests.exceptions.SSLError),
        }
    finally:
        session.close()
    healthy = resp.status_code in tuple(expect_status) and (expect is None or expect in body)
    return {"url": shown, "status": resp.status_code, "body": body, "healthy": healthy}


@dataclasses.dataclass
class Waited:
    """What :func:`wait_until` saw last."""

    done: bool
    value: object
    waited: float  # seconds since the first look
    attempts: int


def wait_until(look, *, timeout: float, interval: float = 0.5) -> Waited:
    """Call ``look(seconds_left)`` until it returns ``(True, value)`` or ``timeout``
    seconds passed (it always gets at least one call); ``look`` returns
    ``(done, value)``. Exceptions from ``look`` propagate: they end the wait."""
    started = time.monotonic()
    deadline = started + float(timeout)
    attempts = 0
    while True:
        done, value = look(max(0.1, deadline - time.monotonic()))
        attempts += 1
        if done or time.monotonic() + float(interval) >= deadline:
            return Waited(done, value, round(time.monotonic() - started, 1), attempts)
        time.sleep(float(interval))


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

    def look(left):
        answer = probe(url, timeout=min(request_timeout, left), **probe_args)
        return answer["healthy"], answer

    seen = wait_until(look, timeout=timeout, interval=interval)
    answer, attempts = seen.value, seen.attempts
    answer.update({"waited": seen.waited, "attempts": attempts})
    if seen.done or not raise_error:
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
