"""_utils/opskit_redact.py: the one redaction helper (text, URLs, data)."""

from __future__ import annotations

import pytest
from opskit_redact import MASK
from opskit_redact import is_secret_key
from opskit_redact import redact_data
from opskit_redact import redact_text
from opskit_redact import redact_url

PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


# URLs with credentials ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected", "secret"),
    [
        ("postgres://app:s3cret@db/app", f"postgres://app:{MASK}@db/app", "s3cret"),
        # '@' inside the password: the userinfo runs to the last '@' before the host.
        ("postgres://app:p@ss@w0rd@db:5432/app", f"postgres://app:{MASK}@db:5432/app", "w0rd"),
        ("redis://:p@ss@cache:6379/0", f"redis://:{MASK}@cache:6379/0", "p@ss"),
        # an unencoded '/' in the password does not end the userinfo early
        ("mysql://root:pa/ss@db/x", f"mysql://root:{MASK}@db/x", "pa/ss"),
        ("https://user:1234@host/", f"https://user:{MASK}@host/", "1234"),
        ("see https://ghp_t0ken1234@git.example/x", f"see https://{MASK}@git.example/x", "t0ken"),
        (
            "a http://u:one@h1/ and b http://v:two@h2/",
            f"a http://u:{MASK}@h1/ and b http://v:{MASK}@h2/",
            "one",
        ),
    ],
)
def test_url_passwords_are_masked_including_at_signs(text, expected, secret):
    assert redact_text(text) == expected
    assert secret not in redact_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "https://cmdb.example.com:8443/assets/x/",
        "http://[::1]:9100/metrics",
        "https://host/users/@me",
        "https://host:8443/path/@me",
        "mail me at ops@example.com",
    ],
)
def test_urls_and_text_without_credentials_are_left_alone(text):
    assert redact_text(text) == text


def test_redact_url_keeps_or_drops_the_query_and_always_the_fragment():
    url = "https://salt:hunter2@cmdb.example.com:8443/a/b/?page=2&api_key=K3Y#frag"
    assert (
        redact_url(url) == f"https://salt:{MASK}@cmdb.example.com:8443/a/b/?page=2&api_key={MASK}"
    )
    assert redact_url(url, query=False) == f"https://salt:{MASK}@cmdb.example.com:8443/a/b/"
    assert redact_url("https://h/x?id=1") == "https://h/x?id=1"


# key=value DSNs and friends ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "host=db port=5432 password=s3cret dbname=app",
            f"host=db port=5432 password={MASK} dbname=app",
        ),
        ("host=x password = s3cret user=app", f"host=x password = {MASK} user=app"),
        ("host=x password='s3 cr\\'et' user=app", f"host=x password='{MASK}' user=app"),
        ("Server=db;Uid=app;Pwd=s3cret;", f"Server=db;Uid=app;Pwd={MASK}"),
        ("PGPASSWORD=s3cret psql -h db", f"PGPASSWORD={MASK} psql -h db"),
        ('{"password": "s3 cret", "user": "app"}', f'{{"password": "{MASK}", "user": "app"}}'),
        ("db_password: s3cret", f"db_password: {MASK}"),
        ("client_secret=s3cret&grant=x", f"client_secret={MASK}"),
        ("Authorization: Bearer s3cret.tok", f"Authorization: Bearer {MASK}"),
        ("password='unterminated s3cret\nnext", f"password={MASK}\nnext"),
    ],
)
def test_secret_key_value_pairs_are_masked(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    ["password_file=/etc/salt/cmdb.secret", "keyboard=us", "tokenizer=simple", "user=app"],
)
def test_pairs_whose_key_only_resembles_a_secret_are_kept(text):
    assert redact_text(text) == text


# Known values and private keys ----------------------------------------------------------------
def test_known_secret_values_are_masked_also_percent_encoded():
    text = "login with p@ss/word failed; url https://h/?pw=p%40ss%2Fword; short: ab"
    assert redact_text(text, secrets=["p@ss/word", "ab", None]) == (
        f"login with {MASK} failed; url https://h/?pw={MASK}; short: ab"
    )


def test_private_key_blocks_are_masked_even_when_cut_off():
    assert redact_text(f"key:\n{PEM}\nafter") == f"key:\n{MASK}\nafter"
    assert redact_text(PEM[:60]) == MASK
    certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    assert redact_text(certificate) == certificate


# Mappings ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("DB_PASSWD", True),
        ("passphrase", True),
        ("api-key", True),
        ("ApiKey", True),
        ("ssh_key", True),
        ("key", True),
        ("client_secret", True),
        ("Authorization", True),
        ("pwd", True),
        ("keyboard", False),
        ("monkey", False),
        ("user", False),
        (42, False),
    ],
)
def test_secret_key_names(name, secret):
    assert is_secret_key(name) is secret


def test_redact_data_masks_by_key_and_redacts_every_other_string():
    data = {
        "roles": ["web"],
        "db": {"password": {"nested": 1}, "user": "app", "port": 5432},
        "dsn": "host=db user=app password=s3cret",
        "url": "postgres://app:p@ss@db/app",
        "blob": ("x", PEM),
        "note": "contains hunter22",
        "custom": "hidden",
    }
    masked = redact_data(data, secret_keys=["CUSTOM"], secrets=["hunter22"])
    assert masked == {
        "roles": ["web"],
        "db": {"password": MASK, "user": "app", "port": 5432},
        "dsn": f"host=db user=app password={MASK}",
        "url": f"postgres://app:{MASK}@db/app",
        "blob": ("x", MASK),
        "note": f"contains {MASK}",
        "custom": MASK,
    }
    assert data["db"]["password"] == {"nested": 1}  # the input is not modified
