"""A throwaway plugin distribution, pip-installed offline into a folder of its own, and a gateway
started in a fresh interpreter that sees it: how a third party's plugin reaches a real install."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def install_plugin(tmp_path, distribution: str, module: str, source: str):
    """`pip install` a one-module distribution whose entry point (group `dheera_ai`) is `module`;
    returns the folder it was installed into."""
    root = tmp_path / "src"
    root.mkdir()
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=70.1"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{distribution}"
        version = "0.0.1"

        [project.entry-points.dheera_ai]
        {module} = "{module}"
    """))
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(root)], check=True, capture_output=True)
    return site


def run_with(site, tmp_path, script: str) -> str:
    """Run `script` in a new interpreter with `site` on its path (entry points loaded as installed);
    returns the last line it printed."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]
