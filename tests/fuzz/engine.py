"""The fuzz tier's engine: substitute hostile values for every key path of every
``salt/*/pillar.example`` and of every lab inventory record, render what that key
reaches with Salt's real renderers and state compiler, and judge the outcome.

A (key, value) pair passes when the render is refused with a message naming the key,
or when it compiles to the same state IDs and functions as the unmodified pillar and
no generated text (state arguments, file contents, templates rendered by
``file.managed``) carries a control, format or line-separator character the
unmodified pillar did not produce, nor the hostile value's line breaks, and no string a
shell parses (``unless``, ``onlyif``, ``check_cmd``, a ``cmd`` state's command) carries
the hostile value. The nginx and
systemd files produced are checked afterwards with ``nginx -t`` and
``systemd-analyze verify`` (identical outputs once).

Speed: one in-process minion (``salt.state.HighState`` with ``file_client: local`` on
the checkout) per worker process, reused for every render with the pillar swapped in
place; compiled Jinja code and fetched files are memoised (Salt builds a fresh Jinja
environment, and re-fetches every file, on each render); only the SLS that read the
changed pillar root are rendered; one worker per CPU.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import logging
import os
import pathlib
import re
import sys
import tempfile
import unicodedata

from tests.fuzz import corpus

REPO = pathlib.Path(__file__).resolve().parents[2]
LAB_SALT = REPO / "tests" / "lab" / "salt"
INVENTORY = REPO / "tests" / "lab" / "inventory.yaml"
# Pillar roots the top file reads (owned by the foundation's top/common schema).
TOP_ROOTS = {"roles": "top", "extra_sls": "top"}
_READ_RE = re.compile(r"""pillar\.get["']\]\(\s*["']([A-Za-z0-9_-]+)""")
_REF_RE = re.compile(
    r"""["']([a-z][a-z0-9_-]*)/(?:map|macros)\.jinja["']|^\s*-\s+([a-z][a-z0-9_-]*)\s*$""",
    re.MULTILINE,
)
_REFUSED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


_TOP_MATCH_RE = re.compile(r"""^\s*['"]?([A-Za-z0-9_-]+):[^\n]*\n\s*-\s*match:\s*pillar""", re.M)


def top_roots() -> set[str]:
    """The pillar roots salt/top.sls reads or matches on (must equal TOP_ROOTS: the
    engine reuses the top file's matches for every other root)."""
    text = (REPO / "salt" / "top.sls").read_text(encoding="utf-8")
    return set(_READ_RE.findall(text)) | set(_TOP_MATCH_RE.findall(text))


def formulas() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "salt").glob("*/pillar.example"))


def _reads_of_dir(directory: pathlib.Path) -> tuple[set[str], set[str]]:
    reads, refs = set(), set()
    for path in directory.rglob("*"):
        if path.suffix in (".sls", ".jinja") and path.is_file():
            text = path.read_text(encoding="utf-8")
            reads |= set(_READ_RE.findall(text))
            refs |= {a or b for a, b in _REF_RE.findall(text)}
    return reads, refs


def pillar_reads() -> dict[str, set[str]]:
    """SLS root (formula or lab SLS) -> the pillar roots it reads, includes followed."""
    direct = {}
    for directory in sorted((REPO / "salt").iterdir()):
        if directory.is_dir():
            direct[directory.name] = _reads_of_dir(directory)
    for directory in sorted(LAB_SALT.iterdir()):
        if directory.is_dir():
            direct[directory.name] = _reads_of_dir(directory)
    closed = {}
    for name in direct:
        seen, todo, reads = set(), [name], set()
        while todo:
            current = todo.pop()
            if current in seen or current not in direct:
                continue
            seen.add(current)
            reads |= direct[current][0]
            todo += list(direct[current][1])
        closed[name] = reads
    return closed


def root_owner(root: str, reads: dict[str, set[str]]) -> str:
    """Which formula's schema owns a pillar root (for PENDING lists and filtering)."""
    if root in TOP_ROOTS:
        return TOP_ROOTS[root]
    owners = sorted(f for f, r in reads.items() if root in r and (REPO / "salt" / f).is_dir())
    # The formula whose name is the root wins (anubis reads nginx through its include).
    for owner in owners:
        if owner.replace("-", "_") == root.replace("-", "_"):
            return owner
    return owners[0] if owners else "unread"


@dataclasses.dataclass(frozen=True)
class Source:
    """A base pillar and what it renders: a formula's SLS, or a minion's highstate."""

    name: str
    minion_id: str
    pillar: dict
    sls: tuple[str, ...] | None  # None: the top file decides (a highstate)


def sources(only: set[str] | None = None) -> list[Source]:
    import yaml

    found = []
    for formula in formulas():
        pillar = yaml.safe_load((REPO / "salt" / formula / "pillar.example").read_text()) or {}
        sls = [formula]
        if (REPO / "salt" / formula / "clean.sls").exists():
            sls.append(f"{formula}.clean")
        found.append(Source(f"example:{formula}", "fuzz-minion", pillar, tuple(sls)))
    inventory = yaml.safe_load(INVENTORY.read_text())["minions"]
    for minion_id, record in sorted(inventory.items()):
        found.append(Source(f"inventory:{minion_id}", minion_id, record or {}, None))
    return [s for s in found if not only or s.name in only]


@dataclasses.dataclass(frozen=True)
class Case:
    source: str
    path: tuple  # keys and list indices from the pillar root
    kind: str  # "value" or "key"
    label: str


def _walk(node, path=()):
    """Every (path, is_mapping_entry) below a pillar node."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key), True
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*path, index), False
            yield from _walk(value, (*path, index))


def cases(source: Source, reads: dict[str, set[str]], owners: set[str] | None = None):
    """The (key, value) pairs of one source whose root something renders."""
    rendered_roots = set(TOP_ROOTS) if source.sls is None else set()
    for sls in source.sls or reads:
        rendered_roots |= reads.get(sls.split(".")[0], set())
    for path, is_entry in _walk(source.pillar):
        root = str(path[0])
        if root not in rendered_roots:
            continue
        owner = root_owner(root, reads)
        if owner == "unread" or (owners and owner not in owners):
            continue  # lab fixtures (tests/lab/salt) read pillar `lab`: not product code
        for label in corpus.VALUES:
            yield Case(source.name, path, "value", label)
        if is_entry:
            for label in corpus.KEYS:
                yield Case(source.name, path, "key", label)


def mutate(pillar: dict, case: Case) -> dict:
    pillar = copy.deepcopy(pillar)
    parent = pillar
    for step in case.path[:-1]:
        parent = parent[step]
    last = case.path[-1]
    if case.kind == "value":
        parent[last] = corpus.VALUES[case.label]
    else:
        items = list(parent.items())
        parent.clear()
        for key, value in items:
            parent[corpus.KEYS[case.label] if key == last else key] = value
    return pillar


def expected_paths(case: Case) -> list[str]:
    """How a refusal may name the key: the key path as opskit_schema prints it (the
    first component spelled with - or _), or, for a hostile key, its parent."""
    import opskit_schema

    steps = list(case.path) if case.kind == "value" else [*case.path[:-1], corpus.KEYS[case.label]]
    variants = [steps]
    if len(steps) > 2 and steps[1] == "lookup":  # template-formula: lookup overrides keys
        variants.append([steps[0], *steps[2:]])
    found = set()
    for variant in variants:
        text = ""
        for step in variant:
            text = opskit_schema.key_path(text, step)
        if case.kind == "key":
            text = text.rsplit(":", 1)[0] + ":" if len(variant) > 1 else ""
        first, sep, rest = text.partition(":")
        found |= {
            text,
            f"{first.replace('_', '-')}{sep}{rest}",
            f"{first.replace('-', '_')}{sep}{rest}",
        }
    return sorted(found)


# ---------------------------------------------------------------------------------------
# The renderer (one per worker process)
# ---------------------------------------------------------------------------------------
def _memoise_salt():
    """Salt compiles every Jinja template and re-fetches every file on each render;
    nothing changes during a fuzz run, so keep both."""
    import jinja2
    import salt.fileclient

    if getattr(jinja2.Environment.compile, "opskit_fuzz", False):
        return

    original = jinja2.Environment.compile
    compiled = {}

    def compile_once(self, source, name=None, filename=None, raw=False, defer_init=False):  # noqa: PLR0917 - jinja2 signature
        key = (
            source,
            name,
            filename,
            raw,
            defer_init,
            self.trim_blocks,
            self.lstrip_blocks,
            tuple(sorted(self.extensions)),
        )
        if key not in compiled:
            compiled[key] = original(self, source, name, filename, raw, defer_init)
        return compiled[key]

    compile_once.opskit_fuzz = True
    jinja2.Environment.compile = compile_once
    for cls, name in (
        (salt.fileclient.Client, "cache_file"),
        (salt.fileclient.FSClient, "get_file"),
    ):
        fetched, fetch = {}, getattr(cls, name)

        def once(self, *args, _fetch=fetch, _fetched=fetched, **kwargs):
            # Per file_roots: the engine's self-test renders fixture trees too.
            roots = repr(self.opts.get("file_roots"))
            key = (roots, args, tuple(sorted(kwargs.items())))
            if key not in _fetched:
                _fetched[key] = _fetch(self, *args, **kwargs)
            return _fetched[key]

        setattr(cls, name, once)

    # The host's listening sockets (anubis checks its listen addresses against them at
    # render time): psutil walks every process's fds, about 2 s on a busy host, and the
    # answer is the same for every case of a run.
    import opskit_net

    sockets, listening = {}, opskit_net.listening_sockets

    def listening_once(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in sockets:
            sockets[key] = listening(*args, **kwargs)
        return copy.deepcopy(sockets[key])

    opskit_net.listening_sockets = listening_once


class Renderer:
    """An in-process minion rendering SLS for ever-changing pillars."""

    def __init__(self, minion_id: str = "fuzz-minion", file_roots: list[str] | None = None):
        import salt.config
        import salt.state
        import yaml

        if str(REPO / "_utils") not in sys.path:
            sys.path.insert(0, str(REPO / "_utils"))
        _memoise_salt()
        self.root = tempfile.mkdtemp(prefix="opskit-fuzz-")
        conf = pathlib.Path(self.root, "minion")
        conf.write_text(
            yaml.safe_dump(
                {
                    "id": minion_id,
                    "file_client": "local",
                    "root_dir": self.root,
                    "cachedir": f"{self.root}/cache",
                    "pki_dir": f"{self.root}/pki",
                    "sock_dir": f"{self.root}/sock",
                    "log_file": f"{self.root}/minion.log",
                    "file_roots": {"base": file_roots or [str(REPO / "salt")]},
                    "module_dirs": [str(REPO)],
                    "state_top": "salt://top.sls",
                    "log_level": "quiet",
                    "log_level_logfile": "critical",
                }
            )
        )
        self.opts = salt.config.minion_config(str(conf))
        # minion_config leaves grains empty; formulas read os_family, osarch, ...
        import salt.loader

        self.opts["grains"] = salt.loader.grains(self.opts)
        self.high = salt.state.HighState(self.opts, initial_pillar={"opskit-fuzz": True})
        self.functions = self.high.state.functions
        # Every place the state, its loaders and the renderers read the pillar from;
        # each gets the new pillar for every case (loader modules see their pack's
        # entry through NamedLoaderContext at call time).
        state = self.high.state
        self._loaders = [
            state.functions,
            state.states,
            state.rend._dict,
            state.utils,
            state.serializers,
        ]
        self._opts = [self.high.opts, state.opts, *(x.opts for x in self._loaders)]
        self._templates = {}
        # Stop at the first SLS that fails to render (the refusal the user reads first);
        # the other SLS of the run would only repeat the same settings check.
        self._failed = False
        render_state = self.high.render_state

        def render_state_until_failure(*args, **kwargs):
            if self._failed:
                return {}, []
            state, errors = render_state(*args, **kwargs)
            self._failed = bool(errors)
            return state, errors

        self.high.render_state = render_state_until_failure

    def set_pillar(self, pillar: dict, minion_id: str) -> None:
        new = copy.deepcopy(pillar)
        for loader in self._loaders:
            loader.pack["__pillar__"] = new
            grains = loader.pack.get("__grains__")
            if hasattr(grains, "value"):
                grains = grains.value()
            if isinstance(grains, dict) and grains.get("id") != minion_id:
                loader.pack["__grains__"] = {**grains, "id": minion_id}
        for opts in self._opts:
            opts["pillar"] = new
            opts["id"] = minion_id

    def top_sls(self) -> list[str]:
        """The SLS the top file gives this minion (a top that fails to render gives
        none: Salt only logs that)."""
        return list(self.high.top_matches(self.high.get_top()).get("base", []))

    def render(self, sls: list[str]):
        """(chunks, errors) for these SLS under the current pillar."""
        self.high.building_highstate = {}
        self._failed = False
        try:
            high, errors = self.high.render_highstate({"base": list(sls)})
        except Exception as err:  # noqa: BLE001 - a crash is an outcome to report
            return None, [f"render crashed: {type(err).__name__}: {err}"]
        if errors:
            return None, [str(e) for e in errors]
        chunks = self.high.state.compile_high_data(high)
        if isinstance(chunks, tuple):
            chunks, errors = chunks
            if errors:
                return None, [str(e) for e in errors]
        if chunks and isinstance(chunks[0], str):
            return None, list(chunks)
        return chunks, []

    def template(self, chunk: dict) -> str | None:
        """What a ``file.managed`` with a Jinja ``source`` would write."""
        source = chunk.get("source")
        if chunk.get("template") != "jinja" or not isinstance(source, str):
            return None
        if not source.startswith("salt://"):
            return None
        if source not in self._templates:
            path = self.high.client.cache_file(source, "base")
            self._templates[source] = pathlib.Path(path).read_text(encoding="utf-8") if path else ""
        try:
            return self.functions["file.apply_template_on_contents"](
                self._templates[source],
                "jinja",
                copy.deepcopy(chunk.get("context") or {}),
                copy.deepcopy(chunk.get("defaults") or {}),
                "base",
            )
        except Exception as err:  # noqa: BLE001 - a template crash is reported
            return f"<template {source} failed: {type(err).__name__}: {err}>"


# ---------------------------------------------------------------------------------------
# Judging one render
# ---------------------------------------------------------------------------------------
def signature(chunks) -> collections.Counter:
    return collections.Counter((c["__id__"], c["state"], c["fun"]) for c in chunks)


def outputs(renderer: Renderer, chunks) -> dict[str, str]:
    """Every text the compiled states would write or pass on, keyed by where."""
    texts = {}
    for chunk in chunks:
        where = f"{chunk['__id__']}|{chunk['state']}.{chunk['fun']}"
        for key, value in chunk.items():
            if key.startswith("__"):
                continue
            for i, text in enumerate(_strings(value)):
                texts[f"{where}|{key}|{i}"] = text
        if chunk["state"] == "file" and chunk["fun"] == "managed":
            rendered = renderer.template(chunk)
            if rendered is not None:
                texts[f"{where}|<rendered {chunk.get('source')}>"] = rendered
    return texts


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


# State arguments a shell (or shlex) reads: a pillar value must never be part of them
# (issue 11, "No shell strings from pillar"); argv lists are data and are not checked.
SHELL_ARGS = ("unless", "onlyif", "check_cmd")
CMD_SHELL_ARGS = ("name", "args")


def shell_strings(chunks) -> dict[str, str]:
    """Every string a shell would parse in the compiled states, keyed by where."""
    found = {}
    for chunk in chunks:
        where = f"{chunk['__id__']}|{chunk['state']}.{chunk['fun']}"
        names = SHELL_ARGS + (CMD_SHELL_ARGS if chunk["state"] == "cmd" else ())
        for key in names:
            value = chunk.get(key)
            items = value if isinstance(value, list) and key in SHELL_ARGS else [value]
            for i, item in enumerate(items):
                if isinstance(item, str):
                    found[f"{where}|{key}|{i}"] = item
    return found


def refused_chars(text: str) -> set[str]:
    return {c for c in text if c != "\n" and unicodedata.category(c) in _REFUSED}


def file_kind(name: str) -> str | None:
    """Which external validator a managed file goes to."""
    if not isinstance(name, str):
        return None
    if "/nginx/" in name and name.endswith(".conf"):
        return "nginx-main" if name.endswith("/nginx.conf") else "nginx-site"
    if name.endswith((".service", ".timer", ".socket")):
        return "systemd-unit"
    if "/systemd/system/" in name and name.endswith(".conf"):
        return "systemd-dropin"
    return None


def validated_files(renderer: Renderer, chunks) -> dict[str, tuple[str, str]]:
    """state id -> (kind, text) for the nginx and systemd files the states manage."""
    found = {}
    for chunk in chunks:
        if chunk["state"] != "file" or chunk["fun"] != "managed":
            continue
        kind = file_kind(chunk.get("name"))
        if kind is None:
            continue
        text = chunk.get("contents")
        if not isinstance(text, str):
            text = renderer.template(chunk)
        if isinstance(text, str):
            found[chunk["__id__"]] = (kind, text)
    return found


@dataclasses.dataclass
class Outcome:
    case: Case
    # refused | same | unclear-refusal | changed-states | leaked | shell | baseline-failed
    verdict: str
    detail: str = ""
    files: dict = dataclasses.field(default_factory=dict)


def _product(sls: list[str]) -> list[str]:
    """The SLS of opskit's formulas (lab fixtures in tests/lab/salt are not fuzzed)."""
    return [s for s in sls if (REPO / "salt" / s.split(".")[0]).is_dir()]


def judge(case: Case, source: Source, renderer: Renderer, baseline: dict, reads) -> Outcome:
    root = str(case.path[0])
    # A hostile top-level key is just an unknown pillar key: compare with no such root.
    inert_root = root if case.kind == "key" and len(case.path) == 1 else None
    top = None
    if source.sls is None and root not in TOP_ROOTS:
        # The top file reads only TOP_ROOTS: its matches are the unmodified pillar's
        # (computed once; before the mutated pillar is set, as it sets its own).
        top = baseline["top"](None)
    pillar = mutate(source.pillar, case)
    renderer.set_pillar(pillar, source.minion_id)
    if source.sls is None:
        top = top if top is not None else renderer.top_sls()
        sls = _product(top)
        if root not in TOP_ROOTS:  # only what reads the root, plus what the top added
            sls = [
                s
                for s in sls
                if root in reads.get(s.split(".")[0], set()) or s not in baseline["sls"]
            ]
    else:
        sls = [s for s in source.sls if root in reads.get(s.split(".")[0], set())]
    chunks, errors = renderer.render(sls) if sls else ([], [])
    if errors:
        message = "\n".join(errors)
        if any(p and p in message for p in expected_paths(case)):
            return Outcome(case, "refused")
        return Outcome(case, "unclear-refusal", _short(message))
    base_chunks = baseline["chunks"](tuple(sls), inert_root)
    if base_chunks is None:
        return Outcome(case, "baseline-failed", f"the unmodified pillar does not render {sls}")
    have, want = signature(chunks), signature(base_chunks)
    if top is not None and root in TOP_ROOTS:
        have.update(("top", s, "") for s in top)
        want.update(("top", s, "") for s in baseline["top"](inert_root))
    if case.kind == "key":
        have = collections.Counter(
            {
                (i.replace(corpus.KEYS[case.label], str(case.path[-1])), s, f): n
                for (i, s, f), n in have.items()
            }
        )
    if have != want:
        extra = sorted(set(have) - set(want))[:3]
        missing = sorted(set(want) - set(have))[:3]
        return Outcome(case, "changed-states", f"new: {extra} gone: {missing}")
    allowed = baseline["chars"](tuple(sls), inert_root)
    return _inert(case, renderer, chunks, base_chunks, allowed)


def _inert(case: Case, renderer: Renderer, chunks, base_chunks, allowed: set) -> Outcome:
    """The verdict on a render that compiled to the baseline's states."""
    hostile = corpus.VALUES[case.label] if case.kind == "value" else corpus.KEYS[case.label]
    for where, text in outputs(renderer, chunks).items():
        bad = refused_chars(text) - allowed
        if bad:
            return Outcome(case, "leaked", f"{where}: {sorted(map(repr, bad))} in {_short(text)}")
        if "\n" in hostile and hostile in text:
            return Outcome(case, "leaked", f"{where}: the value's line break in {_short(text)}")
    known = set(shell_strings(base_chunks).values())
    for where, text in shell_strings(chunks).items():
        if hostile in text and text not in known:
            return Outcome(case, "shell", f"{where}: the pillar value in {_short(text)}")
    return Outcome(case, "same", files=validated_files(renderer, chunks))


def _short(text: str, limit: int = 300) -> str:
    text = repr(text)
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------
_WORKER: dict = {}


def _worker_init():
    # Verdicts come from the render's return value, never from logs: a worker forked
    # from pytest (log_level DEBUG) would otherwise format and capture every debug
    # record Salt's loader and renderers emit, for each of thousands of renders.
    logging.disable(logging.CRITICAL)
    _WORKER["renderer"] = Renderer()
    _WORKER["reads"] = pillar_reads()
    _WORKER["baselines"] = {}
    _WORKER["sources"] = {s.name: s for s in sources()}


def _baseline(source: Source) -> dict:
    """The unmodified pillar's renders, per set of SLS (and with one root removed, for
    hostile top-level keys), computed on first use."""
    cache = _WORKER["baselines"]
    if source.name in cache:
        return cache[source.name]
    renderer = _WORKER["renderer"]

    def pillar(without):
        return {k: v for k, v in source.pillar.items() if k != without}

    renderer.set_pillar(source.pillar, source.minion_id)
    sls = _product(renderer.top_sls()) if source.sls is None else list(source.sls)
    rendered, tops = {}, {}

    def entry(wanted: tuple, without):
        if (wanted, without) not in rendered:
            renderer.set_pillar(pillar(without), source.minion_id)
            got, errors = renderer.render(list(wanted)) if wanted else ([], [])
            texts = outputs(renderer, got) if got else {}
            chars = set().union(*(refused_chars(t) for t in texts.values())) if texts else set()
            files = validated_files(renderer, got) if got else {}
            rendered[(wanted, without)] = (got, chars, files, errors)
        return rendered[(wanted, without)]

    def top(without):
        if without not in tops:
            renderer.set_pillar(pillar(without), source.minion_id)
            tops[without] = renderer.top_sls()
        return tops[without]

    cache[source.name] = {
        "sls": sls,
        "chunks": lambda wanted, without=None: entry(wanted, without)[0],
        "chars": lambda wanted, without=None: entry(wanted, without)[1],
        "top": top,
        "rendered": rendered,
        "entry": entry,
    }
    return cache[source.name]


def run_batch(batch: list[Case]) -> list[Outcome]:
    results = []
    for case in batch:
        source = _WORKER["sources"][case.source]
        baseline = _baseline(source)
        results.append(judge(case, source, _WORKER["renderer"], baseline, _WORKER["reads"]))
    return results


def baseline_problems(names: list[str]) -> list[str]:
    """Sources whose unmodified pillar does not render (the fuzz would mean nothing)."""
    problems = []
    if top_roots() != set(TOP_ROOTS):
        problems.append(
            f"salt/top.sls reads pillar {sorted(top_roots())}, the engine's TOP_ROOTS "
            f"are {sorted(TOP_ROOTS)}: update TOP_ROOTS in tests/fuzz/engine.py"
        )
    for name in names:
        source = _WORKER["sources"][name]
        baseline = _baseline(source)
        wanted = tuple(baseline["sls"])
        if baseline["chunks"](wanted) is None:
            problems.append(f"{name}: {baseline['entry'](wanted, None)[3]}")
    return problems


def baseline_files(names: list[str]) -> dict[str, dict]:
    files = {}
    for name in names:
        baseline = _baseline(_WORKER["sources"][name])
        baseline["chunks"](tuple(baseline["sls"]))
        for (wanted, without), rendered in baseline["rendered"].items():
            files[f"{name}|{','.join(wanted)}|{without}"] = rendered[2]
    return files


def cpu_count() -> int:
    return max(1, len(os.sched_getaffinity(0)))
