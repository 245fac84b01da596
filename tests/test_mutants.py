"""The mutant regression suite: every bug in tests/mutants.py, planted in a copy of the
package, must make its tests fail. A mutant that survives fails here, by name.

The copy comes first on PYTHONPATH, so the tests import it instead of the checkout; the
child's conftest checks that (TENANTRY_MUTANT_SRC), so a mutant cannot pass unnoticed by
never being imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tenantry"
# Plugins the targeted tests do not use; hypothesis and schemathesis alone take seconds to
# import, in each of the children.
UNUSED_PLUGINS = ("cacheprovider", "xdist", "hypothesispytest", "schemathesis")


def plant(mutant: Mutant, into: Path) -> Path:
    """A copy of the package with the mutant's replacements made; returns its src dir."""
    src = into / "src"
    shutil.copytree(PACKAGE, src / "tenantry", ignore=shutil.ignore_patterns("__pycache__"))
    target = src / "tenantry" / mutant.path
    code = target.read_text()
    for old, new in mutant.replacements:
        found = code.count(old)
        assert found == 1, f"{mutant.name}: the code it patches changed ({found} matches)"
        code = code.replace(old, new)
    target.write_text(code)
    return src


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda mutant: mutant.name)
def test_the_mutant_is_caught(mutant: Mutant, tmp_path: Path) -> None:
    src = plant(mutant, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(src), "TENANTRY_MUTANT_SRC": str(src)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *mutant.tests, "-x", "-q", "--timeout", "60"]
        + [arg for plugin in UNUSED_PLUGINS for arg in ("-p", f"no:{plugin}")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode != 0, f"the mutant survived: {mutant.name}\n{tail}"
    assert run.returncode == 1, f"the tests did not run (exit {run.returncode}):\n{tail}"
    assert " failed" in run.stdout, tail
