"""The package root: what `import ctlwire` offers, the version, and the layering rule."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import ctlwire
import ctlwire.protocol
import ctlwire.transport

# Private names fixtures still imports until ctlwire.transport exports them.
PUBLIC = {"ctlwire", "ctlwire.protocol", "ctlwire.protocol.wire", "ctlwire.transport"}


def test_the_face_exports_what_an_sdk_needs() -> None:
    for name in ctlwire.__all__:
        assert hasattr(ctlwire, name), name
    assert ctlwire.ControlSession is ctlwire.protocol.ControlSession
    assert ctlwire.SubprocessTransport is ctlwire.transport.SubprocessTransport
    assert ctlwire.__version__ == importlib.metadata.version("ctlwire")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_version_from_the_command_and_python_dash_m() -> None:
    script = Path(sys.executable).with_name("ctlwire")
    for argv in ([str(script)], [sys.executable, "-m", "ctlwire"]):
        out = _run(*argv, "--version")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"ctlwire {ctlwire.__version__}"


def test_importing_the_face_leaves_the_tooling_alone() -> None:
    code = "import sys, ctlwire; print(sorted(m for m in sys.modules if 'fixtures' in m))"
    out = _run(sys.executable, "-c", code)
    assert out.stdout.strip() == "[]", out.stderr


def test_importing_the_face_leaves_the_official_sdk_alone() -> None:
    """ctlwire.sdk needs the ``sdk`` extra; nothing else of ctlwire may load the SDK."""
    code = (
        "import sys, ctlwire, ctlwire.transport, ctlwire.protocol, ctlwire.fixtures\n"
        "print(sorted(m for m in sys.modules if 'claude_agent_sdk' in m or 'ctlwire.sdk' in m))"
    )
    out = _run(sys.executable, "-c", code)
    assert out.stdout.strip() == "[]", out.stderr


def _imports(path: Path, package: str) -> set[str]:
    """Absolute names of the ctlwire modules one source file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "ctlwire"}


def test_layers_import_downwards_through_public_faces() -> None:
    root = Path(ctlwire.__file__).parent
    for layer, lower in [("transport", ()), ("protocol", ("transport",))]:
        for path in (root / layer).glob("*.py"):
            for name in _imports(path, f"ctlwire.{layer}"):
                assert name.split(".")[1] in (layer, *lower), f"{path.name} imports {name}"
    for path in (root / "fixtures").glob("*.py"):
        for name in _imports(path, "ctlwire.fixtures"):
            inside = name.startswith("ctlwire.fixtures")
            assert inside or name in PUBLIC, f"{path.name} imports {name}"
    # ctlwire.sdk sits on the transport's face; it is not a layer anything else imports.
    for path in (root / "sdk").glob("*.py"):
        for name in _imports(path, "ctlwire.sdk"):
            assert name.startswith("ctlwire.sdk") or name == "ctlwire.transport", name
    for path in root.glob("*/*.py"):
        if path.parent.name != "sdk":
            assert "ctlwire.sdk" not in _imports(path, f"ctlwire.{path.parent.name}"), path


def test_every_error_ctlwire_defines_is_a_ctlwire_error() -> None:
    import importlib
    import inspect
    import pkgutil

    found = {}
    for package in (
        ctlwire.transport,
        ctlwire.protocol,
        importlib.import_module("ctlwire.fixtures"),
        importlib.import_module("ctlwire.sdk"),
    ):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                ours = getattr(value, "__module__", None) == info.name and name[0] != "_"
                if ours and inspect.isclass(value) and issubclass(value, BaseException):
                    found[f"{info.name}.{name}"] = value
    assert len(found) >= 15, sorted(found)
    strays = [name for name, cls in found.items() if not issubclass(cls, ctlwire.CtlwireError)]
    assert not strays, strays


def test_the_tooling_face_names_its_api_and_loads_it_on_use() -> None:
    code = (
        "import sys, ctlwire.fixtures as f\n"
        "print(sorted(m for m in sys.modules if m.startswith('ctlwire.fixtures.')))\n"
        "f.read_log\n"
        "print(sorted(m for m in sys.modules if m.startswith('ctlwire.fixtures.')))\n"
    )
    out = _run(sys.executable, "-c", code)
    before, after = out.stdout.splitlines()
    assert before == "[]", out.stderr
    assert "'ctlwire.fixtures.log'" in after and "fake_api" not in after

    from ctlwire import fixtures
    from ctlwire.fixtures import log, real_cli

    assert sorted(fixtures.__all__) == sorted(fixtures._HOME_OF)
    for name in fixtures.__all__:
        assert getattr(fixtures, name).__name__ == name
        assert name in dir(fixtures)
    assert fixtures.read_log is log.read_log and fixtures.find_real_cli is real_cli.find_real_cli
    with pytest.raises(AttributeError, match="no_such_name"):
        fixtures.no_such_name  # noqa: B018


def test_errors_survive_pickling_and_copying() -> None:
    """Errors cross process boundaries (pools, xdist) and get copied: each comes back
    whole, with its message and its fields, whatever its constructor takes."""
    import copy
    import pickle

    from ctlwire.fixtures import LogFormatError, RealCliMissing
    from ctlwire.fixtures.matcher import Mismatch
    from ctlwire.protocol.buffer import SpillError
    from ctlwire.protocol.errors import FrameDecodeError, MalformedFrame
    from ctlwire.sdk import BadCLIOutput
    from ctlwire.transport import InputBroken

    errors = [
        ctlwire.RequestTimeout("req_1", "interrupt", 1.5),
        ctlwire.ControlError("model not found", "req_2", "set_model"),
        ctlwire.SessionClosed("the CLI exited", ValueError("code 1")),
        ctlwire.ProcessExited(1, ["boom"], "the CLI died"),
        ctlwire.LineTooLong(10, 20),
        ctlwire.InputClosed("stdin closed"),
        InputBroken("broken pipe"),
        BadCLIOutput("a stdout line is not valid UTF-8", '{"a": "\\xff"}', ValueError("bad")),
        FrameDecodeError("not JSON", b"{oops"),
        MalformedFrame("no request_id", {"type": "control_request"}, "req_3"),
        SpillError(28, "no space left"),
        LogFormatError("a.jsonl", 3, "not JSON"),
        RealCliMissing("no claude"),
        Mismatch("the SDK's user differs"),
    ]
    for error in errors:
        for again in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
            assert type(again) is type(error) and str(again) == str(error)
            assert again.args == error.args
            assert {k: str(v) for k, v in vars(again).items()} == {
                k: str(v) for k, v in vars(error).items()
            }
    assert pickle.loads(pickle.dumps(errors[-4])).errno == 28

    class DiskFull(SpillError):  # a subclass of an OSError-based error, as users write
        def __init__(self, detail: str) -> None:
            super().__init__(28, f"disk full: {detail}", "/spill/file")
            self.detail = detail

    for error in (SpillError(28, "no space", "/spill/file"), DiskFull("spill")):
        again = copy.copy(error)
        assert (again.errno, again.strerror, again.filename) == (28, error.strerror, "/spill/file")
        assert str(again) == str(error) and vars(again) == vars(error)
    assert pickle.loads(pickle.dumps(SpillError(28, "x", "/f"))).filename == "/f"
