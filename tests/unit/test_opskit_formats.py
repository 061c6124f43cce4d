"""_utils/opskit_formats.py: one quoting rule per format, and the refusals every format
shares. Where the real reader runs here, the rendered text goes through it:
``systemd-analyze verify`` parses units (Debian's systemd 252), docker-compose reads the
YAML; the env-file reader is a port of systemd's parse_env_file_internal (cited in the
module) checked against hand-written expectations from that source."""

from __future__ import annotations

import shutil
import subprocess

import opskit_formats as fmt
import pytest
import yaml

HOSTILE_CHARS = [
    "\n",
    "\r",
    "\0",
    "\t",
    "\x0b",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\u202e",
    "\u200b",
    "\ufeff",
    "\ud800",
]


def _every_renderer():
    """Each public renderer called with a value (the value is put where data goes)."""
    return {
        "systemd_word": lambda v: fmt.systemd_word(v, "k"),
        "systemd_exec": lambda v: fmt.systemd_exec(["/bin/x", v], "k"),
        "systemd_value": lambda v: fmt.systemd_value(v, "k"),
        "systemd_environment": lambda v: fmt.systemd_environment("A", v, "k"),
        "systemd_unit": lambda v: fmt.systemd_unit({"Unit": {"Description": v}}, path="k"),
        "systemd_env_file": lambda v: fmt.systemd_env_file({"A": v}, path="k"),
        "compose_env_file": lambda v: fmt.compose_env_file({"A": v}, path="k"),
        "nginx_param": lambda v: fmt.nginx_param(v, "k"),
        "nginx_directive": lambda v: fmt.nginx_directive("root", v, path="k"),
        "sysctl_line": lambda v: fmt.sysctl_line("vm.x", v, "k"),
        "yaml_document": lambda v: fmt.yaml_document({"a": [v]}, path="k"),
        "yaml_key": lambda v: fmt.yaml_document({v: 1}, path="k"),
        "comment": lambda v: fmt.comment(f"x{v}", "k"),
    }


CASES = [
    (renderer, char)
    for renderer in sorted(_every_renderer())
    for char in HOSTILE_CHARS
    # comment() takes several lines on purpose: LF separates them (each is checked).
    if not (renderer == "comment" and char == "\n")
]


@pytest.mark.parametrize(("renderer", "char"), CASES, ids=[f"{r}-U+{ord(c):04X}" for r, c in CASES])
def test_every_renderer_refuses_control_and_separator_characters(renderer, char):
    with pytest.raises(fmt.UnsafeValue) as err:
        _every_renderer()[renderer](f"ok{char}injected")
    assert str(err.value).startswith("k"), err.value  # names the key path
    assert "ok" in str(err.value)


def test_unsafe_value_shortens_long_values():
    with pytest.raises(fmt.UnsafeValue) as err:
        fmt.systemd_value("x" * 65536 + "\n", "exporters:x:web:tls:cert")
    message = str(err.value)
    assert message.startswith("exporters:x:web:tls:cert: 'xxx")
    assert len(message) < 300
    assert "65537 characters" in message


# --- systemd ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "word"),
    [
        ("plain-1.0", "plain-1.0"),
        ("a b", '"a b"'),
        (";", '";"'),
        ("$HOME", '"$$HOME"'),
        ("${IFS}", '"$${IFS}"'),
        ("50%", "50%%"),
        ("%n", "%%n"),
        ('q"uote', '"q\\"uote"'),
        ("back\\slash", '"back\\\\slash"'),
        ("`id`", '"`id`"'),
        ("$(id)", '"$$(id)"'),
        ("", '""'),
    ],
)
def test_systemd_word(value, word):
    assert fmt.systemd_word(value) == word
    # Reading it back as systemd splits words gives the value (after $$ -> $).
    assert fmt.split_systemd_words(word) == [word and value.replace("$", "$$")]


def test_systemd_exec_program_must_be_absolute_and_unprefixed():
    assert fmt.systemd_exec(["/usr/bin/x", "--a=b c"]) == '/usr/bin/x "--a=b c"'
    assert fmt.systemd_exec(["/bin/x"], prefix="-") == "-/bin/x"
    for program in ["+/bin/sh", "x", "/bin/../sbin/x", "/bin//x", "-/bin/x"]:
        with pytest.raises(fmt.UnsafeValue, match="absolute"):
            fmt.systemd_exec([program], "k")
    with pytest.raises(fmt.UnsafeValue, match="prefix"):
        fmt.systemd_exec(["/bin/x"], prefix="+;")
    with pytest.raises(fmt.UnsafeValue, match="list"):
        fmt.systemd_exec("/bin/x --flag", "k")


def test_systemd_value_refuses_what_systemd_would_change():
    assert fmt.systemd_value("Thumbnails 100%") == "Thumbnails 100%%"
    assert fmt.systemd_value(True) == "yes"
    assert fmt.systemd_value(512) == "512"
    for value, why in [(" x", "whitespace"), ("x ", "whitespace"), ("x\\", "backslash")]:
        with pytest.raises(fmt.UnsafeValue, match=why):
            fmt.systemd_value(value, "k")


def test_systemd_environment_quotes_and_validates_the_name():
    assert fmt.systemd_environment("A", 'x "y" \\ 5%') == '"A=x \\"y\\" \\\\ 5%%"'
    for name in ["A B", "1A", "A=B", "", "A\n"]:
        with pytest.raises(fmt.UnsafeValue, match="environment variable name"):
            fmt.systemd_environment(name, "v", "k")


HOSTILE_WORDS = [
    "a b",
    ";",
    "; /bin/sh -c id",
    "$(id)",
    "`id`",
    "${IFS}x",
    "%n%%",
    '"',
    "'",
    "\\",
    "\\;",
    "x\\",
    "{}",
    "../../etc/passwd",
    "-/bin/sh",
    "+/bin/sh",
]


def test_unit_round_trip_through_the_split_rules():
    env = {f"V{i}": word for i, word in enumerate(HOSTILE_WORDS)}
    text = fmt.systemd_unit(
        {"Service": {"Environment": env, "ExecStart": ["/usr/bin/prog", *HOSTILE_WORDS]}}
    )
    assert fmt.parse_systemd_environment_lines(text) == env
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    words = fmt.split_systemd_words(exec_line.removeprefix("ExecStart="))
    assert [w.replace("$$", "$") for w in words] == ["/usr/bin/prog", *HOSTILE_WORDS]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_analyze_accepts_hostile_words_as_one_command(tmp_path):
    """A lone ';' would start a second command (config_parse_exec); systemd refuses two
    ExecStart= commands for Type=simple, so a successful verify proves the quoting held."""
    unit = tmp_path / "opskit-fmt-test.service"
    unit.write_text(
        fmt.systemd_unit(
            {
                "Unit": {"Description": "opskit quoting test 100%"},
                "Service": {
                    "Type": "simple",
                    "Environment": {"A": "; x", "B": '"'},
                    "ExecStart": ["/bin/true", *HOSTILE_WORDS],
                },
            }
        )
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    # And the check is real: the same file with a raw ';' is refused.
    unit.write_text("[Service]\nType=simple\nExecStart=/bin/true ; /bin/false\n")
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0


def test_systemd_unit_sections_keys_and_lists():
    text = fmt.systemd_unit(
        {
            "Unit": [("After", "a.service"), ("After", "b.service")],
            "Service": {
                "ReadOnlyPaths": ["/x", "/y"],
                "User": None,
                "ExecStartPre": [["/bin/a"], ["/bin/b", "c"]],
            },
        },
        header="Managed by opskit\nsecond line",
    )
    assert text == (
        "# Managed by opskit\n# second line\n[Unit]\nAfter=a.service\nAfter=b.service\n\n"
        "[Service]\nReadOnlyPaths=/x\nReadOnlyPaths=/y\nExecStartPre=/bin/a\n"
        "ExecStartPre=/bin/b c\n"
    )
    with pytest.raises(fmt.UnsafeValue, match="section"):
        fmt.systemd_unit({"Unit]\n[Service": {}})
    with pytest.raises(fmt.UnsafeValue, match="setting name"):
        fmt.systemd_unit({"Service": {"ExecStart=/bin/sh\nX": "1"}})


def test_systemd_unit_resets_an_exec_list_in_a_drop_in():
    text = fmt.systemd_unit({"Service": [("ExecStart", []), ("ExecStart", ["/opt/x b"])]})
    assert text == '[Service]\nExecStart=\nExecStart="/opt/x b"\n'


# --- env files ----------------------------------------------------------------------
ENV_VALUES = [
    "plain",
    "with space",
    'q"uote',
    "single'q",
    "back\\slash",
    "$HOME",
    "${X}",
    "`id`",
    "$(id)",
    "#hash",
    ";semi",
    "trailing ",
    " leading",
    "",
    "%n",
    "é ü",
]


def test_systemd_env_file_round_trip():
    env = {f"V{i}": v for i, v in enumerate(ENV_VALUES)}
    text = fmt.systemd_env_file(env, header="Managed by opskit")
    assert text.startswith("# Managed by opskit\n")
    assert fmt.parse_systemd_env_file(text) == env


def test_parse_systemd_env_file_follows_env_file_c():
    """Expectations derived from src/basic/env-file.c by hand."""
    text = (
        "# comment\n; also\nA=unquoted value   \nB='single \\ \"x\"'\n"
        'C="esc \\" \\$ \\` \\\\ kept \\n"\nD=back\\ slash\n  E = spaced\nbroken line\n'
        "F=a\rG=after-cr\n"
    )
    assert fmt.parse_systemd_env_file(text) == {
        "A": "unquoted value",
        "B": 'single \\ "x"',
        "C": 'esc " $ ` \\ kept \\n',
        "D": "back slash",
        "E": "spaced",
        "F": "a",
        "G": "after-cr",  # CR ends a line for systemd: the reason CR is refused
    }


def test_compose_env_file_single_quotes_and_refusals():
    env = {f"V{i}": v for i, v in enumerate(ENV_VALUES) if "'" not in v}
    text = fmt.compose_env_file(env)
    assert all(line.count("'") == 2 for line in text.splitlines())
    assert fmt.parse_compose_env_file(text) == env
    with pytest.raises(fmt.UnsafeValue, match="cannot quote"):
        fmt.compose_env_file({"A": "it's"}, path="thumbnail-server:env")
    with pytest.raises(fmt.UnsafeValue, match="backslash"):
        fmt.compose_env_file({"A": "x\\"}, path="thumbnail-server:env")
    with pytest.raises(fmt.UnsafeValue, match="thumbnail-server:env:A B"):
        fmt.compose_env_file({"A B": "x"}, path="thumbnail-server:env")


# --- nginx --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("/var/log/nginx/x.log", "/var/log/nginx/x.log"),
        ("http://127.0.0.1:8923", "http://127.0.0.1:8923"),
        ("a b", '"a b"'),
        ("x;internal", '"x;internal"'),
        ("{}", '"{}"'),
        ("#x", '"#x"'),
        ('"', '"\\""'),
        ("\\", '"\\\\"'),
        ("'", '"\'"'),
        (True, "on"),
        (4, "4"),
    ],
)
def test_nginx_param(value, token):
    assert fmt.nginx_param(value) == token


def test_nginx_refuses_dollar_where_variables_expand():
    with pytest.raises(fmt.UnsafeValue, match="variable"):
        fmt.nginx_param("http://$http_host/", "anubis:instances:app:upstream")
    assert fmt.nginx_param("a$b", variables=False) == '"a$b"'
    assert fmt.nginx_directive("server_name", "a.example", "b.example") == (
        "server_name a.example b.example;"
    )
    with pytest.raises(fmt.UnsafeValue, match="directive name"):
        fmt.nginx_directive("root;\ninclude", "/x")


# --- sysctl -------------------------------------------------------------------------
def test_sysctl():
    text = fmt.sysctl_file(
        {"vm.min_free_kbytes": 1024, "net/ipv4/ip_local_port_range": "1024 65000"},
        header="Managed by opskit",
    )
    assert text == (
        "# Managed by opskit\nvm.min_free_kbytes = 1024\n"
        "net/ipv4/ip_local_port_range = 1024 65000\n"
    )
    assert fmt.parse_sysctl(text) == {
        "vm.min_free_kbytes": "1024",
        "net.ipv4.ip_local_port_range": "1024 65000",
    }
    for key in ["-vm.x", "vm x", "vm.*", "", "vm.x=1"]:
        with pytest.raises(fmt.UnsafeValue, match="sysctl key"):
            fmt.sysctl_line(key, 1)
    for value in ["", " 1", "1 "]:
        with pytest.raises(fmt.UnsafeValue, match="whitespace"):
            fmt.sysctl_line("vm.x", value)


# --- YAML ---------------------------------------------------------------------------
def test_yaml_document_is_data_only():
    data = {
        "a": ["!!python/object:os.system", "- x", "key: value", "&x", "*x", "{}", "'"],
        "n": None,
        "b": True,
        "i": 3,
    }
    text = fmt.yaml_document(data, header="Managed by opskit")
    assert text.startswith("# Managed by opskit\n")
    assert yaml.safe_load(text) == data
    assert fmt.yaml_load(text) == data
    with pytest.raises(fmt.UnsafeValue, match="cannot go into YAML"):
        fmt.yaml_document({"a": object()})


def test_yaml_compose_doubles_dollars(tmp_path):
    data = {"services": {"app": {"image": "busybox", "environment": {"X": "$HOME ${Y} $$"}}}}
    text = fmt.yaml_document(data, compose=True)
    assert "$$HOME $${Y} $$$$" in text
    assert fmt.yaml_load(text, compose=True) == data
    with pytest.raises(fmt.UnsafeValue, match="interpolate"):
        fmt.yaml_document({"$x": 1}, compose=True)
    if shutil.which("docker-compose"):
        # docker-compose (v1, Debian) interpolates like v2 here; it must see literal values.
        (tmp_path / "docker-compose.yml").write_text('version: "3"\n' + text)
        done = subprocess.run(
            ["docker-compose", "config"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": "/usr/bin:/bin", "Y": "INTERPOLATED"},
        )
        assert done.returncode == 0, done.stderr
        assert "INTERPOLATED" not in done.stdout
        assert yaml.safe_load(done.stdout)["services"]["app"]["environment"]["X"] in (
            "$HOME ${Y} $$",
            "$$HOME $${Y} $$$$",  # v1 prints the escaped form back
        )
