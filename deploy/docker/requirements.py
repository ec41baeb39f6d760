"""Print the service's pip requirements from pyproject.toml: the dependencies plus one extra.

Used by the Dockerfile's builder stage, so the image installs exactly what `pip install '.[cpu]'`
(or `.[gpu]`) would, without building the project itself (no training code, no setuptools run):

    python3 requirements.py --extra cpu [pyproject.toml] > requirements.txt
"""

from __future__ import annotations

import argparse
import sys
import tomllib


def requirements(pyproject: str, extra: str) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    extras = project.get("optional-dependencies", {})
    if extra not in extras:
        raise SystemExit(f"no extra {extra!r} in {pyproject}; have {', '.join(sorted(extras))}")
    return [*project["dependencies"], *extras[extra]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", nargs="?", default="pyproject.toml")
    parser.add_argument("--extra", required=True, help="cpu or gpu")
    args = parser.parse_args(argv)
    sys.stdout.write("".join(f"{req}\n" for req in requirements(args.pyproject, args.extra)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
