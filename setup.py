"""Packaging for saltext-opskit.

The repository keeps Salt's classic layout (``_modules/``, ``_states/``, ``_pillar/``,
``_runners/``, ``_utils/`` next to the formulas in ``salt/``) so that the same tree can
be dropped into ``file_roots``.  For ``pip install`` the loader directories are mapped
into the namespace package ``saltext.opskit`` under the names Salt's loader looks for
(``modules``, ``states``, ``pillar``, ``runners``, ``utils``), and the package is
registered on the ``salt.loader`` entry point (declared in ``pyproject.toml``, with the
rest of the project metadata): a master or minion that has it installed
loads opskit without any configuration.  Formulas ship as package data under
``saltext/opskit/formulas`` for operators who want them on ``file_roots`` from the
installed copy.
"""

import pathlib
import re

from setuptools import setup

HERE = pathlib.Path(__file__).parent

# Salt loader type -> directory in this repository.
LOADER_DIRS = {
    "modules": "_modules",
    "states": "_states",
    "pillar": "_pillar",
    "runners": "_runners",
    "utils": "_utils",
}


def _version():
    source = (HERE / "_modules" / "opskit.py").read_text(encoding="utf-8")
    return re.search(r'^OPSKIT_VERSION = "([^"]+)"', source, re.MULTILINE).group(1)


def _formula_files():
    root = HERE / "salt"
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


# Only directories that hold modules: git does not keep empty ones.
present = {kind: path for kind, path in LOADER_DIRS.items() if any((HERE / path).glob("*.py"))}
packages = [f"saltext.opskit.{kind}" for kind in present] + ["saltext.opskit.formulas"]
package_dir = {f"saltext.opskit.{kind}": path for kind, path in present.items()}
package_dir["saltext.opskit.formulas"] = "salt"

# Name, description, dependencies and the salt.loader entry point are in pyproject.toml;
# what needs code stays here, and the licence (see the note in pyproject.toml).
setup(
    version=_version(),
    license="Apache-2.0",
    packages=packages,
    package_dir=package_dir,
    package_data={"saltext.opskit.formulas": _formula_files()},
)
