"""Helpers the lab integration tests share: what a state run failed or changed, a shell
command on a minion, and a bcrypt hash for exporter-toolkit's basic auth."""

from __future__ import annotations


def failures(states: dict) -> dict:
    """State id -> comment for every state that failed."""
    return {sid: s["comment"] for sid, s in states.items() if s["result"] is False}


def changed(states: dict) -> list[str]:
    """The ids of the states that reported changes, sorted."""
    return sorted(sid for sid, s in states.items() if s["changes"])


def sh(lab, minion_id: str, command: str, check: bool = True) -> str:
    """Run ``command`` with bash on ``minion_id``; its standard output."""
    return lab.minions[minion_id].run(["bash", "-c", command], check=check, timeout=120).stdout


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash from the C library's crypt(3) (libxcrypt), as htpasswd -B makes."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10)  # noqa: S324 - bcrypt is what exporter-toolkit checks
    return crypt.crypt(password, salt)
