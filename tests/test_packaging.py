"""callgate as a vendor installs it: one `callgate` namespace, a small public face, a cheap plugin.

The wheel must install nothing but `callgate` (a vendor's own `model` or `conformance` must never
collide with ours), `python -m callgate` must work, and loading the pytest plugin (pytest does so
in every session where callgate is installed) must not import the harness's heavy libraries.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import callgate

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("hypothesis", "networkx", "jinja2", "z3", "jsonschema")

# The supported API (README, "Public API"). Changing it is a decision: update both together.
PUBLIC = {
    "Adapter", "AdapterFault", "BUDGETS", "Budget", "Capabilities", "CaseResult", "CommandAdapter",
    "Expectations", "NotApplicable", "Observation", "Request", "RunOptions", "Session", "SlotSpec",
    "Summary", "Verdict", "__version__", "run_gate",
}


def test_the_public_face_is_exactly_the_pinned_names() -> None:
    assert set(callgate.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(callgate, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'explorer'"):
        callgate.explorer  # noqa: B018  (internal modules are not reached through the face)


def _loaded_after(statement: str) -> set[str]:
    probe = (f"import sys; {statement}; "
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=60)
    return set(done.stdout.split())


@pytest.mark.parametrize("statement", ["import callgate.conformance.pytest_plugin",
                                       "import callgate"])
def test_loading_the_plugin_or_the_face_imports_no_heavy_library(statement: str) -> None:
    loaded = _loaded_after(statement)
    assert not loaded & set(HEAVY), f"{statement} loaded {sorted(loaded & set(HEAVY))}"


def test_the_probe_sees_a_heavy_import_when_there_is_one() -> None:
    # The check above can fail: the same probe sees the harness's libraries once the gate loads.
    assert {"hypothesis", "jinja2"} <= _loaded_after("import callgate.conformance.gate")


def test_python_dash_m_callgate_is_the_command_line() -> None:
    done = subprocess.run([sys.executable, "-m", "callgate", "model", "rules"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "rules" in done.stdout.splitlines()[-1]


def _site_packages() -> list[str]:
    """The directories this interpreter finds its dependencies in (not callgate itself)."""
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    return sorted(set(dirs))


@pytest.fixture(scope="module")
def wheel_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """callgate built from this checkout into a real wheel (about 6 s)."""
    base = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools reuses build/ in the source tree, where stale files of an
    # earlier build would end up in the wheel.
    source = base / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "reports", "*.egg-info", "__pycache__", ".*_cache"))
    wheels = base / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "--no-build-isolation", "--no-index", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("callgate-*.whl")
    return wheel


@pytest.fixture(scope="module")
def vendor_env(tmp_path_factory: pytest.TempPathFactory, wheel_file: Path) -> tuple[Path, Path]:
    """A fresh virtual environment with callgate installed from this checkout (not editable),
    and a vendor directory holding its own `model.py`, `model/` and `conformance.py`.

    Dependencies come from this interpreter's site-packages through a .pth file, so the test
    needs no network; callgate itself is built from the checkout into a real wheel.
    """
    base = tmp_path_factory.mktemp("vendor")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # Only the dependencies: the .pth adds directories, whose own .pth files (the checkout's
    # editable install among them) are not processed.
    Path(purelib, "deps.pth").write_text("\n".join(_site_packages()) + "\n", encoding="utf-8")
    wheel = wheel_file
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                              "--no-index", str(wheel)],
                             capture_output=True, text=True, timeout=600, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    vendor = base / "project"
    (vendor / "model").mkdir(parents=True)
    (vendor / "model" / "__init__.py").write_text("VENDOR = 'model package'\n", encoding="utf-8")
    (vendor / "model.py").write_text("VENDOR = 'model module'\n", encoding="utf-8")
    (vendor / "conformance.py").write_text("VENDOR = 'conformance module'\n", encoding="utf-8")
    (vendor / "test_own.py").write_text(
        "import model\n\ndef test_own_model() -> None:\n    assert model.VENDOR\n", encoding="utf-8")
    return env_dir, vendor


def _run(env_dir: Path, cwd: Path, *argv: str, timeout: float = 300,
         extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra_env or {})
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.slow
def test_an_installed_callgate_installs_no_top_level_model_or_conformance(
        vendor_env: tuple[Path, Path], tmp_path: Path) -> None:
    env_dir, _ = vendor_env
    python = str(env_dir / "bin" / "python")
    for name in ("model", "conformance"):
        done = _run(env_dir, tmp_path, python, "-c", f"import {name}")
        assert done.returncode != 0 and "No module named" in done.stderr, (name, done.stdout)
    done = _run(env_dir, tmp_path, python, "-c", "import callgate.model.codes as c; print(c.__file__)")
    assert done.returncode == 0 and "site-packages" in done.stdout, done.stderr


@pytest.mark.slow
def test_a_vendor_with_its_own_model_runs_the_gate_and_its_own_tests(
        vendor_env: tuple[Path, Path]) -> None:
    env_dir, vendor = vendor_env
    out = vendor / "gate-out"
    done = _run(env_dir, vendor, str(env_dir / "bin" / "callgate"), "run", "--adapter", "reference",
                "--budget", "quick", "--no-parallel", "--out", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (out / "report.json").is_file()
    # The vendor's pytest session loads callgate's plugin through its entry point, and its own
    # `model` still wins; with the option, callgate's items run beside the vendor's tests.
    done = _run(env_dir, vendor, str(env_dir / "bin" / "python"), "-m", "pytest", "-q",
                "-p", "no:cacheprovider", "test_own.py")
    assert done.returncode == 0, done.stdout[-2000:]
    done = _run(env_dir, vendor, str(env_dir / "bin" / "python"), "-m", "pytest", "-q",
                "-p", "no:cacheprovider", "--callgate-adapter=reference", "-k", "event or own")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "passed" in done.stdout.splitlines()[-1]


WINE_PROBE = ("from callgate.conformance.implementations import wine; import sys; "
              "print(wine.SOURCE); print(wine.program_path()); "
              "print(wine.build() if 'build' in sys.argv else '')")


@pytest.mark.slow
def test_the_wheel_ships_the_wine_sources_and_builds_them_into_the_user_cache(
        wheel_file: Path, vendor_env: tuple[Path, Path], tmp_path: Path) -> None:
    """`callgate run --adapter wine` from a wheel: the C sources are package data, and the program
    is built into $XDG_CACHE_HOME/callgate/wine/<hash>/, never into site-packages."""
    shipped = {ROOT / "examples" / "c-adapter" / "callgate_jsonl.h": "callgate/native/callgate_jsonl.h",
               **{p: f"callgate/native/wine/{p.name}"
                  for p in (ROOT / "adapters" / "wine").glob("*.[ch]")}}
    with zipfile.ZipFile(wheel_file) as wheel:
        for source, name in shipped.items():
            assert wheel.read(name) == source.read_bytes(), name
    env_dir, _ = vendor_env
    python = str(env_dir / "bin" / "python")
    cache = tmp_path / "cache"
    done = _run(env_dir, tmp_path, python, "-c", WINE_PROBE, extra_env={"XDG_CACHE_HOME": str(cache)})
    assert done.returncode == 0, done.stderr[-2000:]
    source_text, program, _ = done.stdout.splitlines()
    installed = Path(source_text).parents[2]
    assert installed.name == "callgate" and installed.parent.name == "site-packages", source_text
    assert Path(program).parent.parent == cache / "callgate" / "wine", program
    assert re.fullmatch("[0-9a-f]{16}", Path(program).parent.name), program
    # Without XDG_CACHE_HOME (or with a relative one, which the XDG rule ignores): ~/.cache.
    home = tmp_path / "home"
    done = _run(env_dir, tmp_path, python, "-c", WINE_PROBE,
                extra_env={"HOME": str(home), "XDG_CACHE_HOME": "relative/cache"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.splitlines()[1]).is_relative_to(home / ".cache" / "callgate" / "wine")
    if shutil.which("x86_64-w64-mingw32-gcc") is None:
        return  # the compile needs mingw-w64 (`make system`); the paths above are checked
    before = {p for p in installed.rglob("*") if "__pycache__" not in p.parts}
    done = _run(env_dir, tmp_path, python, "-c", WINE_PROBE, "build",
                extra_env={"XDG_CACHE_HOME": str(cache)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[2] == program and Path(program).stat().st_size > 0
    assert sorted(p.name for p in Path(program).parent.iterdir()) == [Path(program).name]
    assert {p for p in installed.rglob("*") if "__pycache__" not in p.parts} == before


def test_callgate_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from callgate.conformance.cli.main import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"callgate {callgate.__version__}"


def test_the_python_the_shell_scripts_run_imports_modules_that_exist() -> None:
    """tools/*.sh feed Python to the interpreter; a module they name must exist (a move of a
    module once broke `make wine` this way, and no test ran that script)."""
    import importlib.util
    import re

    scripts = sorted((ROOT / "tools").rglob("*.sh"))
    named = {pair for s in scripts for pair in re.findall(r"^\s*from ([\w.]+) import (\w+)",
                                                         s.read_text(encoding="utf-8"), re.M)}
    assert named, "no Python in the scripts: the test looks at nothing"
    for module, name in named:
        assert module.startswith("callgate."), f"{module}: import callgate's modules by full name"
        found = importlib.util.find_spec(f"{module}.{name}") or hasattr(
            importlib.import_module(module), name)
        assert found, f"from {module} import {name}"
