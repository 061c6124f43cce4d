"""The hostile corpus (issue 11, "Fuzz tier in CI"): values a CMDB record could carry
to break out of data into SLS, shell, nginx or systemd syntax, and keys for mappings."""

from __future__ import annotations

# label -> value. Labels appear in reports; values are substituted for every key path.
VALUES = {
    "newline": "x\ny",
    "yaml-injection": "x\ninjected-by-fuzz:\n  cmd.run:\n    - name: touch /tmp/opskit-fuzz",
    "trailing-newline": "ok\n",
    "cr": "x\ry",
    "cr-unit-line": "x\rExecStartPre=+/bin/sh -c id",
    "tab": "x\ty",
    "nul": "x\0y",
    "u2028": "x\u2028y",
    "u2029": "x\u2029y",
    "nel": "x\x85y",
    "bidi": "x\u202ey",
    "semicolon": "x;y",
    "nginx-directive": "x; internal",
    "braces": "{}",
    "jinja": "{{ 7*7 }}",
    "single-quote": "it's",
    "double-quote": 'say "hi"',
    "command-subst": "$(id)",
    "dollar-var": "${IFS}",
    "backtick": "`id`",
    "dotdot": "../../etc/passwd",
    "percent": "%n%%",
    "scope-id": "[::1%eth0]",
    "scope-id-inject": "[::1%x;}]",
    "backslash": "x\\",
    "64KiB": "x" * 65536,
}

# label -> key, for mapping keys (a CMDB record chooses keys as freely as values).
KEYS = {
    "space": "a b",
    "newline": "a\nb",
    "yaml-injection": "x:\n  injected: 1\ny",
    "u2028": "a\u2028b",
    "semicolon": "a;b",
    "braces": "{}",
    "command-subst": "$(id)",
    "dotdot": "../x",
    "percent": "%n",
    "scope-id": "[::1%eth0]",
}

# Characters no generated file may contain except LF (which separates lines).
REFUSED_IN_FILES = "control, format and line-separator characters"
