"""Both installation routes load opskit.

pip route: the wheel built from setup.py, installed into a fresh virtualenv, registers
``saltext.opskit`` on the ``salt.loader`` entry point; a minion there loads opskit's
modules with no configuration, and a master's loaders include opskit's pillar and runner
directories. (The classic route, file_roots + saltutil.sync_all, is exercised on real
minions in tests/integration/test_lab.py.)
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from tests.conftest import REPO

# Salt loader type -> directory in the checkout (the mapping setup.py installs).
LOADER_DIRS = {
    "modules": "_modules",
    "states": "_states",
    "pillar": "_pillar",
    "runners": "_runners",
    "utils": "_utils",
}


@pytest.fixture(scope="module")
def pip_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pip-route")
    wheels = tmp / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp,
    )
    assert build.returncode == 0, f"building the wheel failed:\n{build.stdout}\n{build.stderr}"
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Salt and its dependencies come from the test virtualenv; only opskit is installed.
    (venv / "lib").joinpath(site.split("/lib/", 1)[1], "test-deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    wheel = next(wheels.glob("saltext_opskit-*.whl"))
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    return {"python": python, "site": site, "root": tmp}


def _run_python(pip_venv, code: str) -> dict:
    proc = subprocess.run(
        [str(pip_venv["python"]), "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=pip_venv["root"],
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_wheel_installs_every_loader_dir_under_saltext_opskit(pip_venv):
    package = pathlib.Path(pip_venv["site"]) / "saltext" / "opskit"
    for kind, source in LOADER_DIRS.items():
        expected = sorted(p.name for p in (REPO / source).glob("*.py"))
        installed = sorted(p.name for p in (package / kind).glob("*.py"))
        assert installed == expected, kind
    formulas = sorted(str(p.relative_to(REPO / "salt")) for p in (REPO / "salt").rglob("*.sls"))
    shipped = sorted(
        str(p.relative_to(package / "formulas")) for p in (package / "formulas").rglob("*.sls")
    )
    assert shipped == formulas


def test_minion_loads_opskit_from_the_entry_point(pip_venv):
    root = pip_venv["root"] / "minion"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "minion").write_text(f"root_dir: {root}\nfile_client: local\nid: pip-route\n")
    info = _run_python(
        pip_venv,
        f"""
        import json, salt.config, salt.loader
        opts = salt.config.minion_config("{root}/conf/minion")
        opts["grains"] = salt.loader.grains(opts)
        mods = salt.loader.minion_mods(opts)
        print(json.dumps(mods["opskit.info"]()))
        """,
    )
    assert info["route"] == "pip"
    assert info["loaded_from"] == f"{pip_venv['site']}/saltext/opskit/modules"


@pytest.mark.parametrize(
    "kind", [k for k, d in LOADER_DIRS.items() if k != "utils" and any((REPO / d).glob("*.py"))]
)
def test_master_and_minion_loaders_search_the_installed_package(pip_venv, kind):
    root = pip_venv["root"] / "master"
    (root / "conf").mkdir(parents=True, exist_ok=True)
    (root / "conf" / "master").write_text(f"root_dir: {root}\n")
    dirs = _run_python(
        pip_venv,
        f"""
        import json, salt.config, salt.loader
        opts = salt.config.master_config("{root}/conf/master")
        print(json.dumps(salt.loader._module_dirs(opts, "{kind}")))
        """,
    )
    assert f"{pip_venv['site']}/saltext/opskit/{kind}" in dirs


def test_master_loads_the_cmdb_pillar_and_runner_from_the_entry_point(pip_venv):
    """The pip route on a master: the ext_pillar and the runner load from the installed
    package, and find their shared helper (``saltext.opskit.utils.opskit_cmdb``)."""
    root = pip_venv["root"] / "cmdb-master"
    (root / "conf").mkdir(parents=True, exist_ok=True)
    (root / "conf" / "master").write_text(f"root_dir: {root}\n")
    found = _run_python(
        pip_venv,
        f"""
        import json, salt.config, salt.loader
        opts = salt.config.master_config("{root}/conf/master")
        utils = salt.loader.utils(opts)
        pillars = salt.loader.pillars(opts, salt.loader.minion_mods(opts, utils=utils))
        runners = salt.loader.runner(opts, utils=utils)
        pillar = pillars["cmdb"]
        print(json.dumps({{
            "pillar": pillar.__module__,
            "helper": pillar.__globals__["opskit_cmdb"].__file__,
            "runner": "cmdb.invalidate" in runners,
        }}))
        """,
    )
    assert found["runner"] is True
    assert found["helper"] == f"{pip_venv['site']}/saltext/opskit/utils/opskit_cmdb.py"


def test_wheel_metadata_comes_from_pyproject_and_matches_the_checkout(pip_venv):
    """pyproject.toml declares the metadata, setup.py the version and package mapping:
    the installed distribution must carry both, the declared licence must be the one in
    LICENSE, and the Salt the tests pin must satisfy the declared requirement."""
    from packaging.requirements import Requirement

    meta = _run_python(
        pip_venv,
        """
        import json, importlib.metadata as md
        dist = md.distribution("saltext-opskit")
        print(json.dumps({
            "name": dist.metadata["Name"],
            "version": dist.version,
            "license": dist.metadata["License"],
            "license_files": dist.metadata.get_all("License-File") or [],
            "requires": dist.requires or [],
            "python": dist.metadata["Requires-Python"],
            "entry_points": [(e.group, e.name, e.value) for e in dist.entry_points],
            "readme_type": dist.metadata["Description-Content-Type"],
        }))
        """,
    )
    source = (REPO / "_modules" / "opskit.py").read_text(encoding="utf-8")
    assert f'OPSKIT_VERSION = "{meta["version"]}"' in source
    assert meta["name"] == "saltext-opskit"
    assert ["salt.loader", "opskit", "saltext.opskit"] in meta["entry_points"]
    assert meta["readme_type"] == "text/markdown"
    assert meta["license"] == "Apache-2.0"
    assert meta["license_files"] == ["LICENSE"]
    licence = (REPO / "LICENSE").read_text(encoding="utf-8").split()
    assert licence[:4] == ["Apache", "License", "Version", "2.0,"]
    pins = {
        line.split("==")[0].lower(): line.split("==")[1].strip()
        for line in (REPO / "tests" / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    salt_req = next(Requirement(r) for r in meta["requires"] if r.lower().startswith("salt"))
    assert salt_req.specifier.contains(pins["salt"]), (salt_req, pins["salt"])
