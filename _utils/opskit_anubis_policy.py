"""Anubis policy files and redirect domains as upstream v1.27.0 reads them.

The rules Anubis applies when it loads a policy file (``POLICY_FNAME``), written once
and used twice: by the opskit ``anubis`` formula, which refuses a policy from pillar at
render time that the binary would refuse at start (the formula adds rules of its own),
and by the lab's Anubis stand-in, which refuses the same files at start-up.

Sources (TecharoHQ/anubis at v1.27.0):

- ``lib/config/config.go``: ``fileConfig.Valid``, ``BotConfig.Valid`` (name, one matcher,
  user agent or path but not both, regexes that do not end in a newline and compile with
  Go's ``regexp``, CIDRs that ``net.ParseCIDR`` accepts, a known action, and for a
  CHALLENGE rule with a ``challenge:`` block ``ChallengeRules.Valid``: an algorithm and a
  difficulty from 0 to 64), ``StatusCodes.Valid`` (0 is refused), ``DnsTTL.Valid``;
- ``lib/config/threshold.go``: a threshold needs a name and an expression, may not WEIGH,
  and a CHALLENGE threshold needs a ``challenge:`` block;
- ``lib/config/expressionorlist.go``: an expression is a string or ``{all: [...]}`` /
  ``{any: [...]}``, not empty, not both; the CEL inside is compiled only by the binary
  (``lib/policy/celchecker.go``), so it is NOT checked here;
- ``lib/policy/checker.go``: at start the binary also parses every CIDR with
  ``netip.ParsePrefix`` (stricter than ``net.ParseCIDR``: no leading zeros in the
  prefix length) and compiles every regex once more with surrounding spaces trimmed;
- ``lib/config/store.go`` and ``lib/store/*``: the backends ``memory``, ``bbolt``
  (needs ``parameters.path``), ``valkey``, ``s3api``;
- ``cmd/anubis/main.go``: each ``REDIRECT_DOMAINS`` entry must parse with Go's
  ``url.Parse`` (fatal otherwise); ``lib/http.go`` ``matchRedirectDomain`` compares the
  redirect URL's host *with its port* to each entry, case-insensitively, with ``*``
  globs (``internal/glob/glob.go``, at most four wildcards).

Pure Python (standard library only): the lab stand-in ships this file next to itself.
"""

from __future__ import annotations

import ipaddress
import re

try:
    import opskit_goregexp  # synced from file_roots, or module_dirs, or the stand-in
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_goregexp

ACTIONS = ("ALLOW", "DENY", "CHALLENGE", "WEIGH", "DEBUG_BENCHMARK")
MATCHERS = (
    "user_agent_regex",
    "path_regex",
    "headers_regex",
    "remote_addresses",
    "expression",
    "asns",
    "geoip",
)
STORE_BACKENDS = ("memory", "bbolt", "valkey", "s3api")
MAX_GLOB_PARTS = 5  # internal/glob/glob.go maxGlobParts
CEL_NOTE = (
    "CEL expressions are not checked by opskit: only the Anubis binary compiles them, at "
    "start (a bad one stops the instance, and the formula's health check then fails)"
)


def _problem(out, path, message):
    out.append((path, message))


def regex_problems(value, path):
    """A policy regex: a string that does not end in a newline and that Go's regexp
    accepts as written and with surrounding spaces trimmed (config.go, checker.go)."""
    out = []
    if not isinstance(value, str):
        _problem(out, path, f"must be a string (a Go regular expression), not {value!r}")
        return out
    if value.endswith("\n"):
        _problem(
            out,
            path,
            "regular expression ends with newline (try >- instead of > in yaml) "
            "[config.Bot, upstream]",
        )
    for text in dict.fromkeys((value, value.strip())):
        try:
            opskit_goregexp.check(text)
        except opskit_goregexp.GoRegexpError as err:
            _problem(
                out,
                path,
                f"{err} -- Anubis uses Go's RE2 syntax: no lookarounds ((?=, (?!, (?<=, "
                "(?<!), no backreferences (\\1), no possessive or atomic groups; \\z, not "
                "\\Z, for the end of text",
            )
            break
    return out


def parse_prefix(text):
    """A CIDR range as upstream accepts it in ``remote_addresses``: ``net.ParseCIDR``
    at load and ``netip.ParsePrefix`` at start (no zone, prefix length in decimal
    without leading zeros, within the address size). Returns an ip_network."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a string")
    addr, sep, bits = text.partition("/")
    if not sep:
        raise ValueError(f"netip.ParsePrefix(\"{text}\"): no '/' (a bare address is not a range)")
    if "%" in addr:
        raise ValueError(f'netip.ParsePrefix("{text}"): IPv6 zones cannot be present in a prefix')
    if not re.fullmatch(r"0|[1-9][0-9]{0,2}", bits):
        raise ValueError(f'netip.ParsePrefix("{text}"): bad bits after slash: "{bits}"')
    try:
        address = ipaddress.ip_address(addr)
    except ValueError as err:
        raise ValueError(f'netip.ParsePrefix("{text}"): {err}') from err
    if int(bits) > address.max_prefixlen:
        raise ValueError(f'netip.ParsePrefix("{text}"): prefix length out of range')
    return ipaddress.ip_network(text, strict=False)


def _challenge_problems(challenge, path):
    """ChallengeRules.Valid (config.go)."""
    out = []
    if not isinstance(challenge, dict):
        _problem(out, path, f"must be a mapping (algorithm, difficulty), not {challenge!r}")
        return out
    if not challenge.get("algorithm"):
        _problem(out, path, "config.ChallengeRules: must have algorithm name set")
    difficulty = challenge.get("difficulty", 0)
    if isinstance(difficulty, bool) or not isinstance(difficulty, int):
        _problem(out, f"{path}:difficulty", f"must be a whole number, not {difficulty!r}")
    elif difficulty < 0:
        _problem(
            out, f"{path}:difficulty", f"difficulty is too low (must be >= 0), got: {difficulty}"
        )
    elif difficulty > 64:
        _problem(
            out, f"{path}:difficulty", f"difficulty is too high (must be <= 64), got: {difficulty}"
        )
    return out


def _expression_problems(expr, path):
    """ExpressionOrList.Valid: the shape only; the CEL itself is the binary's."""
    out = []
    if isinstance(expr, str):
        if not expr:
            _problem(out, path, "config: this expression is empty")
    elif isinstance(expr, dict):
        unknown = set(expr) - {"all", "any"}
        lists = [expr.get(k) for k in ("all", "any") if expr.get(k)]
        if unknown or any(
            not isinstance(v, list) or not all(isinstance(i, str) for i in v) for v in lists
        ):
            _problem(out, path, "must be a string or {all: [strings]} / {any: [strings]}")
        elif not lists:
            _problem(out, path, "config: this expression is empty")
        elif len(lists) == 2:
            _problem(out, path, "config: expression block can't contain multiple expression types")
    else:
        _problem(out, path, "config: this must be a string or an object")
    return out


def _matcher_problems(bot, path):
    """The regexes and CIDR ranges of one bot rule."""
    out = []
    for key in ("user_agent_regex", "path_regex"):
        if key in bot:
            out += regex_problems(bot[key], f"{path}:{key}")
    headers = bot.get("headers_regex")
    if headers is not None:
        if not isinstance(headers, dict):
            _problem(out, f"{path}:headers_regex", "must map header names to regexes")
        else:
            for name, expr in headers.items():
                if name:
                    out += regex_problems(expr, f"{path}:headers_regex:{name}")
    cidrs = bot.get("remote_addresses")
    if cidrs is not None:
        if not isinstance(cidrs, list):
            _problem(out, f"{path}:remote_addresses", "must be a list of CIDR ranges")
        else:
            for index, cidr in enumerate(cidrs):
                try:
                    parse_prefix(cidr)
                except ValueError as err:
                    _problem(
                        out,
                        f"{path}:remote_addresses:{index}",
                        f"config.Bot: invalid CIDR: {err} (write 192.0.2.7/32 for one address)",
                    )
    return out


def bot_problems(bot, path):
    """One ``bots`` entry: BotOrImport.Valid / BotConfig.Valid (config.go)."""
    out = []
    if not isinstance(bot, dict):
        _problem(out, path, f"must be a mapping, not {bot!r}")
        return out
    if "import" in bot:
        if len(bot) > 1:
            _problem(
                out,
                path,
                "config.BotOrImport: can't set bot rules and import values at the same time",
            )
        elif not isinstance(bot["import"], str) or not bot["import"]:
            _problem(out, f"{path}:import", "must be a path or (data)/... name")
        return out
    if not bot.get("name"):
        _problem(out, path, "config.Bot: must set name")
    present = [m for m in MATCHERS if bot.get(m) not in (None, [], {})]
    if not present:
        _problem(
            out,
            path,
            "config.Bot: must set one of user_agent_regex, path_regex, headers_regex, "
            "remote_addresses, expression, or Thoth keyword",
        )
    if "user_agent_regex" in bot and "path_regex" in bot:
        _problem(
            out, path, "config.Bot: must set either user_agent_regex, path_regex, and not both"
        )
    out += _matcher_problems(bot, path)
    if "expression" in bot:
        out += _expression_problems(bot["expression"], f"{path}:expression")
    action = bot.get("action")
    if action not in ACTIONS:
        _problem(out, f"{path}:action", f"config.Bot: unknown action: {action!r}")
    if action == "CHALLENGE" and bot.get("challenge") is not None:
        out += _challenge_problems(bot["challenge"], f"{path}:challenge")
    weight = bot.get("weight")
    if weight is not None and (
        not isinstance(weight, dict)
        or isinstance(weight.get("adjust", 0), bool)
        or not isinstance(weight.get("adjust", 0), int)
    ):
        _problem(out, f"{path}:weight", "must be {adjust: <whole number>}")
    return out


def threshold_problems(threshold, path):
    """One ``thresholds`` entry: Threshold.Valid (threshold.go)."""
    out = []
    if not isinstance(threshold, dict):
        _problem(out, path, f"must be a mapping, not {threshold!r}")
        return out
    if not threshold.get("name"):
        _problem(out, path, "config.Threshold: must set name")
    if threshold.get("expression") is None:
        _problem(out, path, "config.Threshold: must set expression")
    else:
        out += _expression_problems(threshold["expression"], f"{path}:expression")
    action = threshold.get("action")
    if action not in ACTIONS:
        _problem(out, f"{path}:action", f"config.Bot: unknown action: {action!r}")
    if action == "WEIGH":
        _problem(
            out, f"{path}:action", "config.Threshold: a threshold cannot have the WEIGH action"
        )
    challenge = threshold.get("challenge")
    if action == "CHALLENGE" and challenge is None:
        _problem(
            out,
            path,
            "config.Threshold: a threshold with the CHALLENGE action must have challenge set "
            "(challenge: {algorithm: fast, difficulty: 4})",
        )
    if challenge is not None:
        out += _challenge_problems(challenge, f"{path}:challenge")
    return out


def _named(rule, problems):
    """Messages about a rule end with the rule's name, when it has a plain one."""
    name = rule.get("name") if isinstance(rule, dict) else None
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        return problems
    return [(path, f"{message} (rule {name})") for path, message in problems]


def policy_problems(policy, path="policy"):
    """Every problem upstream would report loading ``policy`` (a parsed policy file),
    as (key path, message) pairs, key paths colon-separated as opskit_schema writes
    them (``policy:bots:0:user_agent_regex``); an empty list when the binary would load
    it (CEL expressions aside: see :data:`CEL_NOTE`)."""
    out = []
    if not isinstance(policy, dict):
        return [(path, f"must be a mapping, not {policy!r}")]
    bots = policy.get("bots")
    if not isinstance(bots, list) or not bots:
        _problem(out, f"{path}:bots", "config: must define at least one (1) bot rule")
        bots = []
    for index, bot in enumerate(bots):
        out += _named(bot, bot_problems(bot, f"{path}:bots:{index}"))
    thresholds = policy.get("thresholds")
    if thresholds is not None and not isinstance(thresholds, list):
        _problem(out, f"{path}:thresholds", "must be a list")
        thresholds = []
    for index, threshold in enumerate(thresholds or []):
        out += _named(threshold, threshold_problems(threshold, f"{path}:thresholds:{index}"))
    out += _settings_problems(policy, path)
    return out


def _settings_problems(policy, path):
    """status_codes, dns_ttl and store."""
    out = []
    codes = policy.get("status_codes")
    if codes is not None:
        if not isinstance(codes, dict):
            _problem(out, f"{path}:status_codes", "must be a mapping with CHALLENGE and DENY")
        else:
            for key in ("CHALLENGE", "DENY"):
                code = codes.get(key, 200)
                if isinstance(code, bool) or not isinstance(code, int) or code == 0:
                    _problem(
                        out,
                        f"{path}:status_codes.{key}",
                        "config.StatusCode: status code not valid, must be between 100 and "
                        f"599: {key.lower()} is {code!r}",
                    )
    ttl = policy.get("dns_ttl")
    if isinstance(ttl, dict):
        for key in ("forward", "reverse"):
            value = ttl.get(key, 300)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                _problem(
                    out, f"{path}:dns_ttl.{key}", f"must be a whole number >= 0, not {value!r}"
                )
    out += _store_problems(policy.get("store"), f"{path}:store")
    return out


def _store_problems(store, path):
    """config.Store.Valid and the bbolt factory's Valid (a path)."""
    out = []
    if store is None:
        return out
    backend = store.get("backend") if isinstance(store, dict) else None
    if not backend:
        _problem(out, path, "config.Store: no backend defined")
    elif backend not in STORE_BACKENDS:
        _problem(out, f"{path}:backend", f'config.Store: unknown backend: "{backend}"')
    elif backend == "bbolt":
        params = store.get("parameters") or {}
        if not isinstance(params, dict) or not params.get("path"):
            _problem(out, f"{path}:parameters:path", "bbolt: path is missing from config")
    return out


def redirect_domain_problem(domain):
    """Why Anubis would refuse to start with ``domain`` in REDIRECT_DOMAINS, or None.

    main.go passes each entry to Go's ``url.Parse``: an entry with no valid scheme whose
    first path segment holds a colon (``192.0.2.7:8443``, ``*.example.org:8443``,
    ``1st.example.org:8443``) is a fatal error; ``name.example.org:8443`` parses (as a
    scheme and an opaque part) and is compared as text, which is what upstream means."""
    text = domain.strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "net/url: invalid control character in URL"
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", text)
    if scheme:
        return None
    if text.startswith(":"):
        return "missing protocol scheme"
    first = text.split("/", 1)[0]
    if ":" in first:
        return "first path segment in URL cannot contain colon"
    return None


def glob(pattern, subject):
    """internal/glob/glob.go Glob: '*' matches any run; more than four '*' never match."""
    if pattern == "":
        return subject == ""
    if pattern == "*":
        return True
    parts = pattern.split("*")
    if len(parts) > MAX_GLOB_PARTS:
        return False
    if len(parts) == 1:
        return subject == pattern
    for index, part in enumerate(parts[:-1]):
        found = subject.find(part)
        if (index == 0 and not pattern.startswith("*") and found != 0) or found < 0:
            return False
        subject = subject[found + len(part) :]
    return pattern.endswith("*") or subject.endswith(parts[-1])


def match_redirect_domain(allowed, host):
    """lib/http.go matchRedirectDomain: ``host`` is the redirect URL's host[:port]."""
    host = host.strip().lower()
    for entry in allowed:
        pattern = entry.strip().lower()
        if ("*" in pattern and glob(pattern, host)) or pattern == host:
            return True
    return False
