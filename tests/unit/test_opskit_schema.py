"""_utils/opskit_schema.py: every type accepts what it should, normalises it, and refuses
hostile values with one SettingsError naming each key path and (masked) value."""

from __future__ import annotations

import opskit_schema as s
import pytest
from salt.exceptions import SaltInvocationError

HOSTILE = {
    "newline": "a\nb",
    "trailing-newline": "abc\n",
    "cr": "a\rb",
    "nul": "a\0b",
    "tab": "a\tb",
    "u2028": "a\u2028b",
    "u2029": "a\u2029b",
    "nel": "a\x85b",
    "bidi": "a\u202eb",
    "zwsp": "a\u200bb",
}


def refused(kind, value, root="f"):
    """Validate {key: value}; return the one problem's (path, shown, message)."""
    with pytest.raises(s.SettingsError) as err:
        s.validate(s.Map({"key": kind}), {"key": value}, root)
    assert isinstance(err.value, SaltInvocationError)
    assert len(err.value.problems) == 1, err.value.problems
    path, shown, message = err.value.problems[0]
    assert path == f"{root}:key"
    assert path in str(err.value)
    assert message in str(err.value)
    return shown, message


def accepted(kind, value):
    return s.validate(s.Map({"key": kind}), {"key": value}, "f")["key"]


STRING_TYPES = {
    "Str": s.Str(),
    "Str-pattern": s.Str(r"[a-z]+"),
    "Secret": s.Secret(),
    "Path": s.Path(),
    "Url": s.Url(),
    "Ip": s.Ip(),
    "Host": s.Host(),
    "Network": s.Network(),
    "Listen": s.Listen(),
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
@pytest.mark.parametrize("kind", sorted(STRING_TYPES))
def test_string_types_refuse_control_and_separator_characters(kind, hostile):
    base = {
        "Path": "/srv/x",
        "Url": "http://h/",
        "Ip": "::1",
        "Host": "h",
        "Network": "10.0.0.0/8",
        "Listen": ":80",
    }.get(kind, "abc")
    value = (
        HOSTILE[hostile].replace("a", base[:1] or "a", 1)
        if hostile != "trailing-newline"
        else base + "\n"
    )
    shown, _message = refused(STRING_TYPES[kind], value)
    if kind == "Secret":
        assert shown.startswith("<secret")
    else:
        assert shown.startswith("'")


def test_str_pattern_is_anchored_at_both_ends():
    kind = s.Str(r"[a-z]+", hint="lower-case letters")
    assert accepted(kind, "abc") == "abc"
    for value in ["abc\n", "abc;", "1abc", "", "ab c"]:
        assert refused(kind, value)[1] in (
            "must be lower-case letters",
            "contains a line feed (LF); control and line-separator characters are refused",
        )
    # A pattern written with $ would accept "abc\n" under re.match; fullmatch does not.
    assert refused(s.Str(r"[a-z]+$"), "abc\n")


def test_str_lengths_and_choices():
    assert "longer than 1024" in refused(s.Str(), "x" * 65536)[1]
    assert refused(s.Str(), "x" * 65536)[0].endswith("65536 characters)")
    assert "must not be empty" in refused(s.Str(min_len=1), "")[1]
    assert accepted(s.Str(choices=["a", "b"]), "b") == "b"
    assert "one of a, b" in refused(s.Str(choices=["a", "b"]), "c")[1]
    assert "must be a string" in refused(s.Str(), 5)[1]
    assert accepted(s.Str(allow_tab=True), "a\tb") == "a\tb"


@pytest.mark.parametrize("value", [";", "{}", "$()", "`id`", "'", '"', "%n", "../"])
def test_str_metacharacters_follow_the_pattern(value):
    assert accepted(s.Str(), value) == value  # a plain Str is data; formats quote it
    refused(s.Str(r"[A-Za-z0-9_.-]+"), value)


def test_int_and_float():
    assert accepted(s.Int(1, 10), 5) == 5
    assert accepted(s.Int(1, 10), "7") == 7
    for value in [0, 11, "5\n", "5;", True, 1.5, "0x5", "1e3", "9" * 40]:
        refused(s.Int(1, 10), value)
    assert accepted(s.Float(0, 1), 0.5) == 0.5
    assert accepted(s.Float(0, 1), "0.25") == 0.25
    for value in [float("nan"), float("inf"), "nan", 2, False, "0.5\n"]:
        refused(s.Float(0, 1), value)


def test_bool_and_enum():
    assert accepted(s.Bool(), False) is False
    for value in ["true", 1, None]:
        refused(s.Bool(), value)
    assert accepted(s.Enum("required", "optional"), "optional") == "optional"
    assert "one of required, optional" in refused(s.Enum("required", "optional"), "maybe")[1]
    refused(s.Enum(1, 2), "1")
    refused(s.Enum(1, 2), True)


@pytest.mark.parametrize(
    ("value", "normal"),
    [
        ("/srv/app", "/srv/app"),
        ("/srv//app/", "/srv/app"),
        ("/etc/anubis", "/etc/anubis"),
        ("/var/lib/seafile", "/var/lib/seafile"),
        ("/opt/seafile/x.yml", "/opt/seafile/x.yml"),
    ],
)
def test_path_accepts_and_normalises(value, normal):
    assert accepted(s.Path(), value) == normal


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("/", "system directory"),
        ("//", "system directory"),
        ("/etc", "system directory"),
        ("/etc/", "system directory"),
        ("/usr", "system directory"),
        ("/bin", "system directory"),
        ("/boot", "system directory"),
        ("/proc", "system directory"),
        ("/sys", "system directory"),
        ("/dev", "system directory"),
        ("/var", "system directory"),
        ("/root", "system directory"),
        ("/home", "system directory"),
        ("/var/lib", "system directory"),
        ("/srv/../etc", ". or .."),
        ("/srv/./x", ". or .."),
        ("../etc", "starting with /"),
        ("srv/x", "starting with /"),
        ("/srv/a b", "letters, digits"),
        ("/srv/x;rm", "letters, digits"),
        ("/srv/$(id)", "letters, digits"),
        ("/srv/%n", "letters, digits"),
        ("/srv/`id`", "letters, digits"),
        ("/srv/{}", "letters, digits"),
    ],
)
def test_path_refuses(value, why):
    assert why in refused(s.Path(), value)[1]


def test_path_under_and_suffixes():
    kind = s.Path(under=["/etc/anubis"], suffixes=[".env"])
    assert accepted(kind, "/etc/anubis/app.env") == "/etc/anubis/app.env"
    for value in ["/etc/anubis", "/etc/anubisx/a.env", "/etc/anubis/a.conf", "/etc/a.env"]:
        refused(kind, value)


def test_url():
    kind = s.Url()
    assert accepted(kind, "http://127.0.0.1:8080/x?y=1") == "http://127.0.0.1:8080/x?y=1"
    assert accepted(kind, "https://[::1]:443/") == "https://[::1]:443/"
    cases = {
        "ftp://h/": "scheme ftp",
        "http:///x": "must name a host",
        "http://h:0/": "port",
        "http://h:99999/": "valid URL",
        "http://[::1%25eth0]/": "scope id",
        "http://[::1%eth0]/": "scope id",
        "http://x/;internal": "must not contain ;",
        "http://$http_host/": "must not contain $",
        "http://h/$(id)": "must not contain $",
        "http://h/a b": "cannot hold",
        "http://h/`id`": "cannot hold",
        "http://h/{}": "cannot hold",
        'http://h/"': "cannot hold",
        "http://h_/": "must name a host",
    }
    for value, why in cases.items():
        assert why in refused(kind, value)[1], value
    shown, message = refused(kind, "http://user:hunter2@h/")
    assert "credentials" in message
    assert "hunter2" not in shown


def test_url_with_credentials_allowed_is_secret():
    kind = s.Url(credentials=True)
    assert kind.secret
    assert accepted(kind, "http://u:p@h/") == "http://u:p@h/"
    shown, _ = refused(kind, "http://u:p@h/\n")
    assert shown.startswith("<secret")


def test_ip_host_network():
    assert accepted(s.Ip(), "0:0::1") == "::1"
    assert accepted(s.Ip(4), "10.0.0.1") == "10.0.0.1"
    for value in ["fe80::1%eth0", "[::1]", "10.0.0.256", "::1%x;}", "localhost"]:
        refused(s.Ip(), value)
    refused(s.Ip(4), "::1")
    assert accepted(s.Host(), "web-01.example.com") == "web-01.example.com"
    assert accepted(s.Host(), "::1") == "::1"
    for value in ["-x", "a..b", "a_b", "x" * 64, "fe80::1%eth0", "a;b"]:
        refused(s.Host(), value)
    assert accepted(s.Network(), "10.1.2.3/8") == "10.0.0.0/8"
    refused(s.Network(), "fe80::/64%eth0")


def test_listen():
    kind = s.Listen()
    assert accepted(kind, ":9100") == ":9100"
    assert accepted(kind, "[0:0::1]:80") == "[::1]:80"
    assert accepted(kind, 9100) == ":9100"
    assert accepted(s.Listen(default_port=80), "127.0.0.1") == "127.0.0.1:80"
    for value in [
        "[::1%eth0]:80",
        "[::1%x;}]:80",
        "::1:80",
        "h:80",
        "1.2.3.4:0",
        ":80\n",
        "1.2.3.4:80;",
        True,
    ]:
        refused(kind, value)
    assert accepted(s.Listen(allow_hostname=True), "localhost:80") == "localhost:80"


def test_list():
    kind = s.List(s.Int(), min_items=1, max_items=3, unique=True)
    assert accepted(kind, [1, "2"]) == [1, 2]
    assert "at least 1" in refused(kind, [])[1]
    assert "at most 3" in refused(kind, [1, 2, 3, 4])[1]
    refused(kind, "1,2")
    with pytest.raises(s.SettingsError) as err:
        s.validate(s.Map({"key": kind}), {"key": [1, "x"]}, "f")
    assert err.value.problems[0][0] == "f:key:1"
    with pytest.raises(s.SettingsError) as err:
        s.validate(s.Map({"key": kind}), {"key": [1, 1]}, "f")
    assert "twice" in str(err.value)


def test_map_defaults_unknown_keys_and_nulls():
    schema = s.Map(
        {
            "a": s.Int(default=3),
            "b": s.Str(nullable=True),
            "c": s.DictOf(s.Str(r"[a-z]+"), s.Int()),
            "d": s.Map({"x": s.Bool(default=True)}),
        }
    )
    assert s.validate(schema, {}, "f") == {"a": 3, "b": None, "c": {}, "d": {"x": True}}
    assert s.validate(schema, {"a": None, "d": None}, "f")["a"] == 3
    with pytest.raises(s.SettingsError) as err:
        s.validate(schema, {"zz": 1, "a\n": 2}, "f")
    paths = [p for p, _, _ in err.value.problems]
    assert paths == ["f:zz", "f:'a\\n'"]
    assert "unknown key (known: a, b, c, d)" in str(err.value)
    with pytest.raises(s.SettingsError, match="f = 'x': must be a mapping"):
        s.validate(schema, "x", "f")
    with pytest.raises(s.SettingsError, match="f:need: is required"):
        s.validate(s.Map({"need": s.Str()}), {}, "f")


def test_map_ignores_a_deprecated_key_with_a_warning_and_lets_a_subclass_word_unknown_keys(
    caplog,
):
    class Named(s.Map):
        def unknown(self, key):
            return f"no such thing {key!r}"

    schema = Named({"a": s.Int(default=1)}, deprecated={"old": "use a instead"})
    assert s.validate(schema, {}, "f") == {"a": 1}
    assert "old" not in s.markdown_table(schema, "f")
    with caplog.at_level("WARNING", logger="opskit_schema"):
        assert s.validate(schema, {"old": "secret-value", "a": 4}, "f") == {"a": 4}
    assert [r.getMessage() for r in caplog.records if r.name == "opskit_schema"] == [
        "f:old is deprecated and ignored: use a instead"
    ]
    with pytest.raises(s.SettingsError) as err:
        s.validate(schema, {"old": None, "zz": 2, 7: 3, "a": 4}, "f")
    assert err.value.problems == [
        ("f:zz", "2", "no such thing 'zz'"),
        ("f:7", "3", "no such thing 7"),
    ]
    invalid = {"old": None, "zz": 2, 7: 3, "a": "x"}
    assert s.deprecations(schema, invalid, "f") == [
        "f:old is deprecated and ignored: use a instead"
    ]


def test_deprecations_walks_maps_dicts_lists_and_alternatives_by_path_never_by_value():
    inner = s.Map({"b": s.Int(default=2)}, deprecated={"gone": "say b"})
    schema = s.Map(
        {
            "inner": inner,
            "named": s.DictOf(s.Str(r"[a-z]+"), inner),
            "listed": s.List(inner),
            "either": s.OneOf(s.Int(), inner),
        },
        deprecated={"old": "use inner"},
    )
    data = {
        "old": "v1",
        "inner": {"gone": "v2"},
        "named": {"x": {"gone": "v3", "b": 1}, "y": {}},
        "listed": [{}, {"gone": "v4"}],
        "either": {"gone": "v5"},
        "zz": {"gone": "not walked: zz is no field"},
    }
    notes = s.deprecations(schema, data, "f")
    assert notes == [
        "f:old is deprecated and ignored: use inner",
        "f:inner:gone is deprecated and ignored: say b",
        "f:named:x:gone is deprecated and ignored: say b",
        "f:listed:1:gone is deprecated and ignored: say b",
        "f:either:gone is deprecated and ignored: say b",
    ]
    assert not [value for value in ("v1", "v2", "v3", "v4", "v5") if value in str(notes)]
    assert s.deprecations(schema, {"inner": {}, "either": 3}, "f") == []
    assert s.deprecations(schema, "not a mapping", "f") == []


HOSTILE_KEYS = ["a b", "a\nb", "x:\n  y", "a\u2028", ";", "{}", "$(id)", "../x", "%n", 5, None]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
def test_dictof_refuses_hostile_keys_without_bending_the_message(key):
    schema = s.DictOf(s.Str(r"[A-Za-z0-9_.-]+", hint="a name"), s.Int())
    with pytest.raises(s.SettingsError) as err:
        s.validate(schema, {key: 1}, "tuning:jemalloc:units")
    ((path, _, message),) = err.value.problems
    assert path.startswith("tuning:jemalloc:units:")
    assert "\n" not in path
    assert "\u2028" not in path
    assert any(why in message for why in ("a name", "must be a string", "line-separator"))
    # The whole message has one line per problem: no hostile key adds lines.
    assert len(str(err.value).splitlines()) == 2


def test_all_problems_are_collected_in_one_error():
    schema = s.Map({"a": s.Int(), "b": s.Path(), "c": s.List(s.Ip())})
    with pytest.raises(s.SettingsError) as err:
        s.validate(schema, {"a": "x", "b": "/", "c": ["1.2.3.4", "::1%lo"]}, "formula")
    assert [p for p, _, _ in err.value.problems] == ["formula:a", "formula:b", "formula:c:1"]
    assert str(err.value).startswith("formula: 3 invalid settings")


def test_secret_containers_mask_everything_below():
    schema = s.Map({"env": s.DictOf(s.Str(r"[A-Z_]+"), s.Str(r"[a-z]*"), secret=True)})
    with pytest.raises(s.SettingsError) as err:
        s.validate(schema, {"env": {"PASSWORD": "Hunter2!"}}, "f")
    assert "Hunter2" not in str(err.value)
    assert "<secret, 8 characters>" in str(err.value)


def test_one_of_and_custom_checks():
    kind = s.OneOf(s.Int(min=1024), s.Str(r"[0-9]+%", hint="a share such as 5%"))
    assert accepted(kind, 2048) == 2048
    assert accepted(kind, "5%") == "5%"
    # Only the alternatives that read this kind of value explain the refusal.
    assert "line feed" in refused(kind, "5%\n")[1]
    assert refused(kind, 512)[1] == "must be an integer of at least 1024"
    assert refused(s.OneOf(s.Enum("auto"), kind), "x")[1] == (
        "must be one of auto or an integer of at least 1024 or a share such as 5% "
        "(must be one of auto; must be a share such as 5%)"
    )

    def even(value):
        return None if value % 2 == 0 else "must be even"

    assert accepted(s.Int(check=even), 4) == 4
    assert refused(s.Int(check=even), 3)[1] == "must be even"

    def raises(value):
        raise ValueError(f"{value} is bad")

    assert refused(s.Str(check=raises), "x")[1] == "x is bad"


def test_markdown_table():
    schema = s.Map(
        {
            "port": s.Int(1, 65535, default=8080, doc="TCP port | for clients"),
            "password": s.Secret(doc="the admin password"),
            "units": s.DictOf(
                s.Str(r"[a-z]+"), s.Map({"enabled": s.Bool(default=True)}), placeholder="<unit>"
            ),
        }
    )
    table = s.markdown_table(schema, "thumbnail-server")
    lines = table.splitlines()
    assert lines[0] == "| Key | Type | Default | Description |"
    assert (
        "| `thumbnail-server:port` | an integer from 1 to 65535 | `8080` "
        "| TCP port \\| for clients |" in lines
    )
    assert any(
        line.startswith("| `thumbnail-server:password` | a secret string (secret)")
        for line in lines
    )
    assert any(
        line.startswith("| `thumbnail-server:units:<unit>:enabled` | true or false | `True`")
        for line in lines
    )


def test_masked_hides_every_value_the_schema_flags_secret():
    schema = s.Map(
        {
            "user": s.Str(),
            "password": s.Secret(),
            "tokens": s.List(s.Secret()),
            "env": s.DictOf(s.Str(), s.Str(secret=True)),
            "either": s.OneOf(s.Int(), s.Secret()),
            "nested": s.Map({"key": s.Secret(), "port": s.Int()}),
        }
    )
    settings = {
        "user": "alice",
        "password": "pw-1",
        "tokens": ["tk-1", "tk-2"],
        "env": {"A": "env-1"},
        "either": "alt-1",
        "nested": {"key": "key-1", "port": 8080},
        "unknown": "kept",
    }
    shown = s.masked(schema, settings)
    assert "pw-1" not in repr(shown)
    assert "tk-1" not in repr(shown)
    assert "env-1" not in repr(shown)
    assert "alt-1" not in repr(shown)
    assert "key-1" not in repr(shown)
    assert shown["user"] == "alice"
    assert shown["nested"]["port"] == 8080
    assert shown["password"] == s.mask("pw-1")
    assert shown["unknown"] == "kept"
    assert s.masked(schema, {"either": 5})["either"] == 5
