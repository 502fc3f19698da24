import contextlib
import io
import logging
import os
import re
import sys

import pytest
import torch
from conftest import requires_ipex

from cpu_inference_helpers.techniques import ipex_support
from cpu_inference_helpers.techniques.ipex_support import (
    DISABLE_ENV_VAR,
    IMPORT_CHATTY_LOGGER,
    IPEX_MODULE,
    check_version_compatibility,
    optimize_with_ipex,
    probe_ipex,
)


@pytest.mark.parametrize(
    ("ipex_version", "torch_version", "compatible"),
    [("2.8.0", "2.8.0+cu128", True), ("2.8.0+cpu", "2.8.1", True), ("2.8.0", "2.13.0", False), ("2.8.0", "x", False)],
)
def test_version_compatibility(ipex_version, torch_version, compatible):
    reason = check_version_compatibility(ipex_version, torch_version)
    assert (reason is None) is compatible
    if not compatible:
        assert "pip install" in reason


def test_disabled_by_environment(monkeypatch, fresh_ipex_probe):
    monkeypatch.setenv(DISABLE_ENV_VAR, "1")
    status = probe_ipex(refresh=True)
    assert not status.usable and DISABLE_ENV_VAR in status.reason
    assert ipex_support.load_ipex() is None


def test_import_error_is_caught(monkeypatch, fresh_ipex_probe):
    monkeypatch.setattr(ipex_support, "installed_version", lambda name: "2.8.0")
    monkeypatch.setattr(torch, "__version__", "2.8.0")  # versions match: the import itself must fail
    monkeypatch.setitem(sys.modules, IPEX_MODULE, None)  # makes `import intel_extension_for_pytorch` fail
    status = probe_ipex(refresh=True)
    assert not status.usable
    assert re.search(r"import failed with (ModuleNotFound|Import)Error", status.reason)


def test_an_ipex_that_exits_while_importing_does_not_kill_the_process(tmp_path, monkeypatch, fresh_ipex_probe):
    fake = tmp_path / IPEX_MODULE
    fake.mkdir()
    (fake / "__init__.py").write_text("raise SystemExit(127)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, IPEX_MODULE, None)  # records the original entry (or its absence) for undo
    monkeypatch.delitem(sys.modules, IPEX_MODULE)
    monkeypatch.setattr(ipex_support, "installed_version", lambda name: "2.8.0")
    monkeypatch.setattr(torch, "__version__", "2.8.0")
    status = probe_ipex(refresh=True)
    assert not status.usable and "SystemExit" in status.reason


def test_torch_mismatch_is_detected_before_importing(monkeypatch, fresh_ipex_probe):
    monkeypatch.setattr(ipex_support, "installed_version", lambda name: "2.8.0")
    monkeypatch.setattr(torch, "__version__", "2.13.0")
    monkeypatch.setitem(sys.modules, IPEX_MODULE, None)  # importing would fail: the check must come first
    status = probe_ipex(refresh=True)
    assert not status.usable and "needs torch 2.8.*" in status.reason


def test_not_installed(monkeypatch, fresh_ipex_probe):
    monkeypatch.setattr(ipex_support, "installed_version", lambda name: None)
    monkeypatch.setattr(ipex_support.importlib.util, "find_spec", lambda name: None)
    status = probe_ipex(refresh=True)
    assert not status.usable and "not installed" in status.reason


def test_optimize_falls_back_with_one_log_line(monkeypatch, fresh_ipex_probe, tiny_model, caplog):
    monkeypatch.setenv(DISABLE_ENV_VAR, "1")
    probe_ipex(refresh=True)
    with caplog.at_level(logging.WARNING, logger="cpu_inference_helpers"):
        result = optimize_with_ipex(tiny_model)
    assert result.mode == "eager" and result.fallbacks[0].step == "ipex" and result.model is tiny_model
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("cpu_inference_helpers")]
    assert len(messages) == 1 and DISABLE_ENV_VAR in messages[0]


@requires_ipex
@pytest.mark.parametrize("auto_kernel_selection", [False, True])
def test_optimize_applies_and_keeps_outputs(tiny_model, example_batch, auto_kernel_selection):
    result = optimize_with_ipex(tiny_model, auto_kernel_selection=auto_kernel_selection)
    assert result.mode == "ipex" and not result.fell_back and result.model is not tiny_model
    with torch.no_grad():
        expected = tiny_model(**example_batch).start_logits
        actual = result.model(**example_batch).start_logits
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


@requires_ipex
def test_ipex_replaces_linear_layers(tiny_model):
    result = optimize_with_ipex(tiny_model)
    linear_types = {type(m).__name__ for m in result.model.modules() if "Linear" in type(m).__name__}
    assert linear_types and linear_types != {"Linear"}, linear_types


def test_ipex_import_leaves_the_root_logger_alone(tmp_path, monkeypatch, fresh_ipex_probe):
    fake = tmp_path / IPEX_MODULE
    fake.mkdir()
    (fake / "__init__.py").write_text("import logging\nlogging.basicConfig(format='%(asctime)s %(message)s')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, IPEX_MODULE, None)  # records the original entry (or its absence) for undo
    monkeypatch.delitem(sys.modules, IPEX_MODULE)
    monkeypatch.setattr(ipex_support, "installed_version", lambda name: "2.8.0")
    monkeypatch.setattr(torch, "__version__", "2.8.0")
    root = logging.getLogger()
    before = list(root.handlers)
    assert probe_ipex(refresh=True).usable
    assert root.handlers == before


def test_ipex_import_chatter_stays_out_of_the_output_but_later_warnings_do_not(
    tmp_path, monkeypatch, fresh_ipex_probe, caplog
):
    """A stand-in IPEX that prints like the real one: native stderr, and a log handler of its own."""
    fake = tmp_path / IPEX_MODULE
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import logging, os\n"
        "os.write(2, b'[W OperatorEntry.cpp:218] Warning: Overriding a previously registered kernel\\n')\n"
        "log = logging.getLogger('fake_ipex_chatter')\n"
        "log.addHandler(logging.StreamHandler())\n"
        "log.propagate = False\n"
        "log.warning('IPEX start-up notice')\n"
        f"logging.getLogger('{IMPORT_CHATTY_LOGGER}').warning('No CUDA runtime is found, using CUDA_HOME=/usr/local')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, IPEX_MODULE, None)
    monkeypatch.delitem(sys.modules, IPEX_MODULE)
    monkeypatch.setattr(ipex_support, "installed_version", lambda name: "2.8.0")
    monkeypatch.setattr(torch, "__version__", "2.8.0")
    native = tmp_path / "fd2.txt"
    python_stderr = io.StringIO()
    saved = os.dup(2)
    earlier_logger = logging.getLogger(IMPORT_CHATTY_LOGGER)  # like torch's handler, made before IPEX is imported
    monkeypatch.setattr(earlier_logger, "propagate", False)
    users_stream = io.StringIO()  # a handler of the user's: IPEX's import must leave it alone
    users_handler = logging.StreamHandler(users_stream)
    logging.getLogger("users_app").addHandler(users_handler)
    with native.open("wb") as sink, contextlib.redirect_stderr(python_stderr), \
            caplog.at_level(logging.DEBUG, logger="cpu_inference_helpers.techniques.ipex_support"):
        earlier_handler = logging.StreamHandler()  # bound to the current sys.stderr, as in a Jupyter kernel
        earlier_logger.addHandler(earlier_handler)
        os.dup2(sink.fileno(), 2)
        try:
            assert probe_ipex(refresh=True).usable
            logging.getLogger("fake_ipex_chatter").warning("a later IPEX warning")
            earlier_logger.warning("a later torch warning")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            earlier_logger.removeHandler(earlier_handler)
            logging.getLogger("users_app").removeHandler(users_handler)
    assert users_handler.stream is users_stream and earlier_handler.stream is python_stderr
    printed = native.read_text() + python_stderr.getvalue()
    assert "OperatorEntry" not in printed and "CUDA_HOME" not in printed and "start-up notice" not in printed
    assert "a later IPEX warning" in printed and "a later torch warning" in printed
    assert "OperatorEntry" in caplog.text and "CUDA_HOME" in caplog.text  # kept, at DEBUG level
