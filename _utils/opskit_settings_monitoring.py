"""Settings schema of the ``monitoring`` formula (pillar ``monitoring``).

``salt["opskit.settings"]("monitoring", merged)`` in ``salt/monitoring/map.jinja``
validates the merged settings with it before anything renders. The formula writes
Prometheus's and Alertmanager's configurations as YAML documents built from these
values (never by pasting text), checks them with ``promtool``/``amtool`` before they go
live, and keeps scrape passwords in files of their own (``password_file``); so the
schema's job is to make sure every value is of the kind its key promises: paths are
absolute and plain, names are Prometheus label/job names, URLs carry no credentials
(Alertmanager shows webhook URLs in its API), durations are Prometheus durations.
"""

from __future__ import annotations

try:
    import opskit_schema as s  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_schema as s

_DURATION_RE = r"(?:[0-9]{1,6}(?:ms|s|m|h|d|w|y)){1,4}"


def duration(**kw) -> s.Str:
    """A Prometheus duration: 30s, 5m, 1h30m."""
    return s.Str(_DURATION_RE, hint="a Prometheus duration (30s, 5m, 1h30m)", **kw)


DURATION = duration()
PACKAGE = s.Str(r"[a-z0-9][a-z0-9.+-]*", hint="a Debian package name")
UNIT = s.Str(r"[A-Za-z0-9_.@-]+", hint="a systemd unit name")
ACCOUNT = s.Str(r"[a-z_][a-z0-9_-]{0,31}", hint="a user or group name")
JOB = s.Str(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}", hint="a job (exporter) name: letters, digits, _")
LABEL = s.Str(r"[a-zA-Z_][a-zA-Z0-9_]{0,127}", hint="a Prometheus label name")
_RECEIVER_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
RECEIVER = s.Str(_RECEIVER_RE, hint="a receiver name: letters, digits, . _ -")


def Text(max_len=8192, **kw) -> s.Type:
    """Text of a rule (an expression, a label value, an annotation): one line (the
    shared YAML renderer refuses line breaks, tabs and other control characters, so the
    schema does too, naming the key); promtool checks the rest."""
    kw.setdefault("hint", "one line of text (PromQL, a label value or an annotation)")
    return s.Str(max_len=max_len, **kw)


RULE = s.Map(
    {
        "alert": s.Str(r"[a-zA-Z_][a-zA-Z0-9_]{0,127}", nullable=True, hint="an alert name"),
        "record": s.Str(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,127}", nullable=True, hint="a metric name"),
        "expr": Text(),
        "for": duration(nullable=True),
        "labels": s.DictOf(LABEL, Text(max_len=1024), default={}),
        "annotations": s.DictOf(LABEL, Text(), default={}),
    },
)
RULE_GROUP = s.Map(
    {
        "name": s.Str(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", hint="a rule group name"),
        "interval": duration(nullable=True),
        "rules": s.List(RULE, min_items=1),
    },
    doc="a rule group in Prometheus's rule-file format; promtool check rules decides",
)
WEBHOOK = s.Map(
    {
        "url": s.Url(
            ("http", "https"), doc="no credentials: Alertmanager shows the URL in its API"
        ),
        "send_resolved": s.Bool(default=True),
        "max_alerts": s.Int(min=0, max=100000, default=0),
    }
)
ROUTE = s.Map(
    {
        "matchers": s.List(
            s.Str(max_len=512), min_items=1, doc='Alertmanager matchers (severity="critical")'
        ),
        "receiver": RECEIVER,
        "continue": s.Bool(default=False),
        "group_by": s.List(LABEL, nullable=True),
        "group_wait": duration(nullable=True),
        "group_interval": duration(nullable=True),
        "repeat_interval": duration(nullable=True),
    }
)

SCHEMA = s.Map(
    {
        "packages": s.Map({"prometheus": PACKAGE, "alertmanager": PACKAGE}),
        "user": ACCOUNT,
        "group": ACCOUNT,
        "prometheus": s.Map(
            {
                "service": UNIT,
                "config_file": s.Path(suffixes=(".yml", ".yaml")),
                "url": s.Url(doc="where the formula checks that Prometheus answers and reloaded"),
                "rules_dir": s.Path(doc="every *.yml in it is a rule file"),
                "opskit_rules": s.Bool(default=True, doc="install opskit's alert rules"),
                "rule_groups": s.List(RULE_GROUP, default=[]),
                "global": s.Map(
                    {
                        "scrape_interval": DURATION,
                        "scrape_timeout": DURATION,
                        "evaluation_interval": DURATION,
                        "external_labels": s.DictOf(LABEL, s.Str(max_len=512), default={}),
                    }
                ),
                "reload_timeout": s.Int(min=1, max=600),
            }
        ),
        "targets": s.Map({"dir": s.Path(doc="the file_sd files built from the mine")}),
        "scrape": s.Map(
            {
                "secrets_dir": s.Path(doc="scrape passwords, 0640 root:<group>"),
                "tls": s.Map(
                    {
                        "ca_file": s.Path(nullable=True, doc="CA of the exporters' certificates"),
                        "cert_file": s.Path(nullable=True, doc="client certificate"),
                        "key_file": s.Path(nullable=True, doc="its key (readable by the group)"),
                        "server_name": s.Host(nullable=True),
                        "insecure_skip_verify": s.Bool(default=False),
                    }
                ),
                "basic_auth": s.DictOf(
                    JOB,
                    s.Map(
                        {
                            "username": s.Str(r"[^:\s]{1,128}", hint="a user name without ':'"),
                            "password": s.Secret(
                                r"\S(?:.{0,1022}\S)?",
                                hint="a password without leading or trailing whitespace",
                            ),
                        }
                    ),
                    default={},
                    placeholder="<job>",
                    doc="credentials for targets that want basic auth, per job",
                ),
            }
        ),
        "alertmanager": s.Map(
            {
                "service": UNIT,
                "config_file": s.Path(suffixes=(".yml", ".yaml")),
                "url": s.Url(),
                "reload_timeout": s.Int(min=1, max=600),
                "receivers": s.DictOf(
                    RECEIVER,
                    s.Map({"webhooks": s.List(WEBHOOK, min_items=1)}),
                    default={},
                    placeholder="<receiver>",
                ),
                "route": s.Map(
                    {
                        "receiver": s.Str(
                            _RECEIVER_RE,
                            hint=RECEIVER.hint,
                            nullable=True,
                            doc="default: the first receiver by name",
                        ),
                        "group_by": s.List(LABEL),
                        "group_wait": DURATION,
                        "group_interval": DURATION,
                        "repeat_interval": DURATION,
                        "routes": s.List(ROUTE, default=[]),
                    }
                ),
            }
        ),
    }
)


def check(settings):
    """Rules across keys: routes name receivers that exist; a client certificate comes
    with its key; a rule is either an alert or a recording rule."""
    alertmanager = settings["alertmanager"]
    names = set(alertmanager["receivers"]) or {"opskit-none"}
    route = alertmanager["route"]
    if route.get("receiver") is not None and route["receiver"] not in names:
        yield (
            "monitoring:alertmanager:route:receiver",
            route["receiver"],
            f"is not a receiver (receivers: {', '.join(sorted(names))})",
        )
    for index, child in enumerate(route["routes"]):
        if child["receiver"] not in names:
            yield (
                f"monitoring:alertmanager:route:routes:{index}:receiver",
                child["receiver"],
                f"is not a receiver (receivers: {', '.join(sorted(names))})",
            )
    tls = settings["scrape"]["tls"]
    if bool(tls.get("cert_file")) != bool(tls.get("key_file")):
        yield ("monitoring:scrape:tls", "set both cert_file and key_file, or neither")
    for g, group in enumerate(settings["prometheus"]["rule_groups"]):
        for r, rule in enumerate(group["rules"]):
            if (rule.get("alert") is None) == (rule.get("record") is None):
                yield (
                    f"monitoring:prometheus:rule_groups:{g}:rules:{r}",
                    "give exactly one of alert or record",
                )
