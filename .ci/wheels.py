"""CI: a wheel of every distribution builds (the root, plugins/*/, examples/plugins/*/), and
the root wheel holds every package.

Run from any folder, in a virtualenv with setuptools>=77. Offline-safe: no build isolation,
no dependency fetched. Prints each wheel built; exits 1 if one fails or a package is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The packages the gigq wheel must hold; any other package folder at the root must be too.
PACKAGES = frozenset({"gigq", "gigq_core", "gigq_sql", "gigq_sqlite", "gigq_cli"})
#: Package folders at the root that are not shipped.
NOT_SHIPPED = frozenset({"tests", "benchmarks"})


def copy_sources(dest: Path) -> None:
    """Copy the files git would ship (tracked, or new and not ignored) into `dest`, so that
    no stale build/ output or egg-info can stand in for a missing file."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def build_wheel(source: Path, out: Path) -> Path | None:
    """The wheel built from the distribution in `source`, or None when it does not build."""
    before = set(out.glob("*.whl"))
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    result = subprocess.run([*command, "-w", str(out), str(source)], check=False)
    built = set(out.glob("*.whl")) - before
    return built.pop() if result.returncode == 0 and len(built) == 1 else None


def top_level_folders(wheel: Path) -> set[str]:
    """The top-level folders of a wheel, without its .dist-info and .data."""
    with zipfile.ZipFile(wheel) as archive:
        folders = {name.split("/")[0] for name in archive.namelist() if "/" in name}
    return {name for name in folders if not name.endswith((".dist-info", ".data"))}


def main() -> int:
    """Build every wheel; returns the exit code."""
    with tempfile.TemporaryDirectory(prefix="gigq-wheels-") as tmp:
        sources, out = Path(tmp) / "src", Path(tmp) / "wheels"
        out.mkdir()
        copy_sources(sources)
        plugins = [*sources.glob("plugins/*/pyproject.toml")]
        plugins += sources.glob("examples/plugins/*/pyproject.toml")
        dists = [sources, *sorted(path.parent for path in plugins)]
        problems = []
        for dist in dists:
            name = str(dist.relative_to(sources)) if dist != sources else "the root"
            wheel = build_wheel(dist, out)
            if wheel is None:
                problems.append(f"{name} does not build a wheel")
                continue
            print(f"{name}: {wheel.name}")
            if dist == sources:
                packages = {path.parent.name for path in sources.glob("*/__init__.py")}
                missing = (PACKAGES | packages) - NOT_SHIPPED - top_level_folders(wheel)
                if missing:
                    problems.append(f"the root wheel lacks {', '.join(sorted(missing))}")
    for problem in problems:
        print(f"wheels: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
