"""The files opskit writes for an exporter (its systemd unit, the exporter-toolkit web
configuration, nginx's stub_status block) rendered from Jinja templates that a site can
override from its own ``file_roots``, the way template-formula's TOFS pattern
("template override and files switch") does it.

Lookup order for a template ``T`` (``exporter.service.jinja``,
``web-config.yml.jinja``, ``stub_status.conf.jinja``); each name in angle brackets is a
configuration key read with ``config.get`` (minion options, grains, then pillar):

1. for each switch ``S`` in ``<exporters:tofs:files_switch>`` (default ``[id,
   os_family]``), for each file name ``F`` (those listed under
   ``<exporters:tofs:source_files:T>`` first, then ``T``), for each value ``V`` of
   ``config.get(S)`` (a list gives several): ``salt://P/D/V/F``;
2. for each ``F``: ``salt://P/D/<exporters:tofs:dirs:default>/F`` (default
   ``default``), which is where opskit's own templates live
   (``salt/exporters/files/default/``);
3. the same file in the opskit package (``saltext/opskit/formulas/exporters/files/
   default/``), for minions that run a pip-installed opskit against a master without the
   formula on its ``file_roots``.

``P`` is ``<exporters:tofs:path_prefix>`` (default ``exporters``) and ``D`` is
``<exporters:tofs:dirs:files>`` (default ``files``). Every segment must be a plain
file or directory name (letters, digits, ``._-``; never ``..``): the values come from
pillar, which opskit does not trust. The first candidate the fileserver has wins;
``exporter.render`` reports which one was used.

Templates are rendered in Jinja's sandbox with undefined names as errors. Values reach
them as data and go through the filters below, each applying the file format's quoting
rule; any other ``{{ ... }}`` output that holds a control character is refused, so a
site template that forgets a filter cannot let a hostile value start a new line.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re

try:
    import opskit_formats  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_formats

SOURCE_FILES = ("exporter.service.jinja", "web-config.yml.jinja", "stub_status.conf.jinja")
SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


# ---------------------------------------------------------------------------------------
# Quoting rules: each filter is opskit_formats' one rule for its format
# ---------------------------------------------------------------------------------------
class Quoted(str):
    """Text a quoting filter produced; the renderer's final check lets it through."""


class TemplateError(ValueError):
    """A template that cannot be found or rendered (the message names it)."""


@dataclasses.dataclass(frozen=True)
class Word:
    """An ExecStart= word and whether it may use systemd specifiers (``%d``): only
    words opskit builds itself, never pillar data."""

    text: str
    specifiers: bool = False


def _word(value) -> Word:
    return value if isinstance(value, Word) else Word(str(value))


def systemd_exec(words, path: str = "ExecStart") -> Quoted:
    """The command line of ExecStart=, one word per continuation line
    (``opskit_formats.systemd_word``; the program must be an absolute path)."""
    words = [_word(w) for w in words]
    if not words:
        raise opskit_formats.UnsafeValue(path, words, "must be a non-empty list of arguments")
    program = opskit_formats.check_text(words[0].text, f"{path}:0")
    if not program.startswith("/") or posixpath.normpath(program) != program:
        raise opskit_formats.UnsafeValue(
            f"{path}:0", program, "must be an absolute, normalised path"
        )
    quoted = [
        opskit_formats.systemd_word(w.text, f"{path}:{i}", specifiers=w.specifiers)
        for i, w in enumerate(words)
    ]
    return Quoted(" \\\n    ".join(quoted))


def systemd_environment(value, name: str) -> Quoted:
    """``"NAME=value"`` for Environment=; a ``Word`` value may use specifiers (``%d``)."""
    word = _word(value)
    return Quoted(
        opskit_formats.systemd_environment(
            name, word.text, "Environment", specifiers=word.specifiers
        )
    )


def systemd_value(value, path: str = "value") -> Quoted:
    """A plain ``Key=value`` value (``opskit_formats.systemd_value``)."""
    return Quoted(opskit_formats.systemd_value(value, path))


def yaml_document(data, path: str = "value") -> Quoted:
    """A YAML document (``opskit_formats.yaml_document``: ``yaml.safe_dump``), without
    its final line break (the template ends the line)."""
    return Quoted(opskit_formats.yaml_document(data, path=path).rstrip("\n"))


def nginx_value(value, path: str = "value") -> Quoted:
    """One nginx parameter (``opskit_formats.nginx_param``)."""
    return Quoted(opskit_formats.nginx_param(value, path))


FILTERS = {
    "systemd_exec": systemd_exec,
    "systemd_environment": systemd_environment,
    "systemd_value": systemd_value,
    "yaml_document": yaml_document,
    "nginx_value": nginx_value,
}


def _finalize(value):
    if isinstance(value, Quoted):
        return value
    return opskit_formats.check_text(value, "template value")


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------
class Renderer:
    """Renders opskit's templates; ``load(name)`` returns ``(source, text)``."""

    def __init__(self, load):
        import jinja2.sandbox

        self._load = load
        self.sources: dict[str, str] = {}
        self._env = jinja2.sandbox.SandboxedEnvironment(
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            extensions=["jinja2.ext.do"],
            autoescape=False,
            finalize=_finalize,
        )
        self._env.filters.update(FILTERS)

    def render(self, name: str, **context) -> str:
        import jinja2

        source, text = self._load(name)
        self.sources[name] = source
        try:
            return self._env.from_string(text).render(**context)
        except ValueError as err:  # UnsafeValue from a filter or the final check
            raise TemplateError(f"rendering {source}: {err}") from err
        except jinja2.TemplateError as err:
            raise TemplateError(f"rendering {source}: {err}") from err


def file_loader(directory):
    """Templates from a directory (tests; the packaged copy)."""
    import pathlib

    root = pathlib.Path(directory)

    def load(name: str) -> tuple[str, str]:
        path = root / name
        try:
            return str(path), path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TemplateError(f"no template {name} in {root}") from None

    return load


def packaged_directory():
    """Where a pip-installed opskit keeps the formula's default templates (or None)."""
    try:
        import importlib.resources

        root = importlib.resources.files("saltext.opskit.formulas")
    except (ImportError, TypeError):
        return None
    directory = root / "exporters" / "files" / "default"
    return directory if directory.is_dir() else None


# ---------------------------------------------------------------------------------------
# TOFS lookup
# ---------------------------------------------------------------------------------------
def _segments(value, key: str) -> list[str]:
    """Path segments from a configuration value; anything but plain names refused."""
    values = value if isinstance(value, list) else [value]
    found = []
    for item in values:
        text = str(item).strip("/")
        parts = text.split("/") if text else []
        if not parts or not all(SEGMENT_RE.match(p) and p != ".." for p in parts):
            raise TemplateError(
                f"{key} = {str(item)[:60]!r} is not a relative path of plain names "
                "(letters, digits, '._-')"
            )
        found.append("/".join(parts))
    return found


def candidates(config_get, name: str, root: str = "exporters") -> list[str]:
    """The salt:// URLs to try for template ``name``, in TOFS order."""
    tofs = f"{root}:tofs"
    prefix = _segments(config_get(f"{tofs}:path_prefix", root), f"{tofs}:path_prefix")[0]
    files_dir = _segments(config_get(f"{tofs}:dirs:files", "files"), f"{tofs}:dirs:files")[0]
    default_dir = _segments(config_get(f"{tofs}:dirs:default", "default"), f"{tofs}:dirs:default")[
        0
    ]
    switches = config_get(f"{tofs}:files_switch", ["id", "os_family"])
    if not isinstance(switches, list):
        raise TemplateError(f"{tofs}:files_switch must be a list of configuration keys")
    names = config_get(f"{tofs}:source_files:{name}", [])
    names = _segments(names, f"{tofs}:source_files:{name}") if names else []
    names.append(name)
    urls = []
    for switch in [*switches, None]:
        for file_name in names:
            if switch is None:
                directories = [default_dir]
            else:
                value = config_get(str(switch), None)
                if value in (None, "", []):
                    continue
                # A grain or pillar value that is no plain name (a minion id with a
                # slash, say) selects no directory rather than another path.
                try:
                    directories = _segments(value, str(switch))
                except TemplateError:
                    continue
            urls += [f"salt://{prefix}/{files_dir}/{d}/{file_name}" for d in directories]
    return list(dict.fromkeys(urls))


def salt_loader(salt, saltenv: str, context: dict, root: str = "exporters"):
    """A loader for ``Renderer`` that looks templates up through the fileserver.

    One file listing per job (kept in ``context``, Salt's ``__context__``), then the
    chosen file itself; the packaged copy when the fileserver has none.
    """

    def listing(prefix: str) -> set[str]:
        key = f"opskit_exporter_templates.listing.{saltenv}.{prefix}"
        if key not in context:
            context[key] = set(salt["cp.list_master"](saltenv=saltenv, prefix=prefix) or [])
        return context[key]

    def load(name: str) -> tuple[str, str]:
        urls = candidates(salt["config.get"], name, root)
        files = listing(urls[0].removeprefix("salt://").split("/", 1)[0] + "/")
        for url in urls:
            if url.removeprefix("salt://") in files:
                text = salt["cp.get_file_str"](url, saltenv=saltenv)
                if text is False or text is None:
                    raise TemplateError(f"{url} is listed by the fileserver but cannot be read")
                return url, text
        packaged = packaged_directory()
        if packaged is not None and (packaged / name).is_file():
            return f"{packaged}/{name}", (packaged / name).read_text(encoding="utf-8")
        raise TemplateError(
            f"template {name} not found: tried {', '.join(urls)} (saltenv {saltenv}) and "
            "the opskit package; put salt/exporters on the master's file_roots"
        )

    return load
