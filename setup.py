"""Packaging for saltext-opskit.

The repository keeps Salt's classic layout (``_modules/``, ``_states/``, ``_pillar/``,
``_runners/``, ``_utils/`` next to the formulas in ``salt/``) so that the same tree can
be dropped into ``file_roots``.  For ``pip install`` the loader directories are mapped
into the namespace package ``saltext.opskit`` under the names Salt's loader looks for
(``modules``, ``states``, ``pillar``, ``runners``, ``utils``), and the package is
registered on the ``salt.loader`` entry point: a master or minion that has it installed
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

# The versions the test suite runs against; keep in step with tests/requirements.txt.
SALT_REQUIREMENT = "salt>=3008.0,<3009"


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


# Only the loader directories the checkout has (setuptools refuses a missing one).
PRESENT = {kind: path for kind, path in LOADER_DIRS.items() if (HERE / path).is_dir()}
packages = [f"saltext.opskit.{kind}" for kind in PRESENT] + ["saltext.opskit.formulas"]
package_dir = {f"saltext.opskit.{kind}": path for kind, path in PRESENT.items()}
package_dir["saltext.opskit.formulas"] = "salt"

setup(
    name="saltext-opskit",
    version=_version(),
    description=(
        "Salt extension for CMDB-driven fleets: a fail-closed CMDB ext_pillar, "
        "verified Prometheus exporters, jemalloc and vm tuning, and formulas"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    install_requires=[SALT_REQUIREMENT, "requests>=2.28", "PyYAML>=6"],
    packages=packages,
    package_dir=package_dir,
    package_data={"saltext.opskit.formulas": _formula_files()},
    entry_points={"salt.loader": ["opskit = saltext.opskit"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Salt",
        "Operating System :: POSIX :: Linux",
        "License :: OSI Approved :: Apache Software License",
    ],
)
