"""The Colab-pinned environment of CI's Colab job (``.ci/colab.sh``): what it holds, and what an install changed.

Run with the pinned environment's own Python:

    python .ci/colab_env.py standins             # Colab's own packages, as metadata (see STANDINS)
    python .ci/colab_env.py snapshot FILE         # installed name -> version, as JSON
    python .ci/colab_env.py stack [FILE]          # the kernel stack, one package a line
    python .ci/colab_env.py check BEFORE AFTER LOG  # exit 1 if a package Colab has changed or pip printed ERROR
    python .ci/colab_env.py pins                  # remake .ci/colab/pins.txt (needs the package index)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FREEZE = HERE / "colab" / "freeze.txt"
PINS = HERE / "colab" / "pins.txt"

#: what a Colab session cannot lose without breaking a kernel start or the widgets
KERNEL_STACK = (
    "ipython", "ipykernel", "ipywidgets", "widgetsnbextension", "jupyterlab-widgets", "jupyter-client",
    "jupyter-core", "traitlets", "tornado", "pyzmq", "notebook", "jupyter-server", "nbformat", "nbclient",
    "psutil", "prompt-toolkit", "matplotlib-inline", "debugpy", "google-colab", "jupyter-kernel-gateway",
)
#: what the pins are the closure of, besides tutor_nb's own requirements: the kernel stack, what Colab's
#: own packages require, and the test runner the job uses (Colab has pytest too)
ROOTS = ("ipykernel", "ipython", "ipywidgets", "jupyter_client", "jupyter_core", "traitlets", "tornado", "pyzmq",
         "notebook", "jupyter_server", "nbclient", "nbformat", "requests", "google-auth", "ipyparallel",
         "portpicker", "setuptools", "pytest")
#: Colab's own builds, which are not on PyPI: the job records them as installed, with the requirements
#: they declare, so that pip's resolver defends them as it does in Colab. google-colab: colabtools'
#: setup.py (googlecolab/colabtools, 2026-04), less its pins that Colab's freeze itself does not meet
#: (google-auth, pandas, jupyter-server, tornado); the kernel gateway: googlecolab/kernel_gateway at
#: commit b134e9945df2, the one the freeze names.
STANDINS = {
    ("google-colab", "1.0.0"): ["ipykernel==6.17.1", "ipyparallel==8.8.0", "ipython==7.34.0",
                                "portpicker==1.5.2", "requests==2.32.4"],
    ("jupyter-kernel-gateway", "2.5.2"): ["jupyter_core>=4.4.0", "jupyter_client<8.0,>=5.2.0",
                                          "notebook<7.0,>=5.7.6", "traitlets>=4.2.0", "tornado>=4.2.0",
                                          "requests<3.0,>=2.7"],
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines (comments and ``@`` lines skipped) -> {normalized name: version}."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[normalize(name)] = version.strip()
    return pins


def installed() -> dict[str, str]:
    return {normalize(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def write_standins() -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    for (name, version), requires in STANDINS.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                 "Summary: stand-in for Colab's own build (metadata only), made by .ci/colab_env.py"]
        (info / "METADATA").write_text("\n".join(lines + [f"Requires-Dist: {r}" for r in requires]) + "\n")
        (info / "INSTALLER").write_text("colab-standin\n")
        (info / "RECORD").write_text("".join(f"{info.name}/{f},,\n" for f in ("METADATA", "INSTALLER", "RECORD")))
        print(f"recorded {name} {version} (Colab's own build) requiring {', '.join(requires)}")


def print_stack(versions: dict[str, str]) -> None:
    for name in KERNEL_STACK:
        print(f"  {name:24} {versions.get(name, '(not installed)')}")


def check(before: dict[str, str], after: dict[str, str], pip_log: str) -> list[str]:
    """Every way the install broke the Colab-pinned environment, as readable lines (none: it did not)."""
    colab = read_pins(FREEZE)
    problems = [f"{name}: {version} -> {after.get(name, 'removed')}"
                for name, version in sorted(before.items()) if after.get(name) != version]
    for name in sorted(set(after) - set(before)):
        if name in colab and colab[name] != after[name]:
            problems.append(f"{name}: added at {after[name]}, but Colab has {colab[name]}")
    problems += [f"pip said: {line}" for line in pip_log.splitlines() if line.startswith("ERROR")]
    return problems


def remake_pins() -> None:
    """Resolve tutor_nb's requirements and ROOTS with Colab's versions as constraints; keep what Colab has."""
    colab = read_pins(FREEZE)
    requirements = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    with tempfile.TemporaryDirectory() as scratch:
        constraints, report = Path(scratch) / "constraints.txt", Path(scratch) / "report.json"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in colab.items()))
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
                        "--report", str(report), "-c", str(constraints), *filter(None, requirements), *ROOTS],
                       check=True)
        resolved = {item["metadata"]["name"]: item["metadata"]["version"]
                    for item in json.loads(report.read_text())["install"]}
    header = [line for line in PINS.read_text().splitlines() if line.startswith("#")]
    kept = sorted((name for name in resolved if normalize(name) in colab), key=str.lower)
    PINS.write_text("\n".join(header + [f"{name}=={resolved[name]}" for name in kept]) + "\n")
    print(f"{len(kept)} pins; not in Colab, so left out: {sorted(set(resolved) - set(kept)) or 'none'}")


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "standins":
        write_standins()
    elif command == "snapshot":
        Path(args[0]).write_text(json.dumps(installed(), indent=1, sort_keys=True))
    elif command == "stack":
        print_stack(json.loads(Path(args[0]).read_text()) if args else installed())
    elif command == "check":
        before, after = (json.loads(Path(path).read_text()) for path in args[:2])
        problems = check(before, after, Path(args[2]).read_text(errors="replace"))
        added = sorted(set(after) - set(before))
        print("added: " + (", ".join(f"{name} {after[name]}" for name in added) or "nothing"))
        for line in problems:
            print(f"FAIL: {line}")
        print("no package Colab has changed, and pip printed no ERROR" if not problems else
              f"{len(problems)} problem(s): the install would change Colab's environment (lower the floor of "
              "the requirement that pulls it in; if requirements.txt changed, remake the pins: "
              "python .ci/colab_env.py pins)")
        return 1 if problems else 0
    elif command == "pins":
        remake_pins()
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["help"]))
