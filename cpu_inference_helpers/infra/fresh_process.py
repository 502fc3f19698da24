"""Running a function in a fresh Python process: the one way this project runs work elsewhere.

    result = run_in_fresh_process(measure_one_row, settings, env={"OMP_NUM_THREADS": "1"})

    running = [start_fresh_process(instance, number, env=..., command_prefix=["numactl", "-N", "0"])
               for number in range(4)]            # concurrent; each pins itself, meets the others
    results = [process.result(timeout=600) for process in running]

A fresh interpreter (not a fork) starts with none of this process's state: no imported torch, no compiled
graphs, no prepacked weights, and only the environment travels, so a cold start is really cold, an
allocator set through `LD_PRELOAD` or a launcher prefix (`numactl`, `taskset`) is really in force, and
memory is really given back when the work ends. The function and its arguments travel pickled in a file,
and so does the one result channel back: the return value, or the child's exception as "Type: message"
with its traceback. A child that dies without answering (a segfault, the OOM killer) is reported with
its exit status and the tail of its stderr. The child imports only the function's module (and what
that imports), from the same `sys.path` as this process; the function must live in an importable
module (not a notebook's `__main__`).
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_STDERR_TAIL = 2000
_SIGNAL_CAUSES = {
    "SIGKILL": "out of memory (the kernel's OOM killer), or killed from outside",
    "SIGILL": "an instruction this CPU or its virtual machine does not allow, in native code",
    "SIGSEGV": "a crash in native code",
    "SIGABRT": "native code aborted (a failed assertion or an uncaught C++ exception)",
}


class FreshProcessError(RuntimeError):
    """The function raised in the fresh process, or the process died before it could answer."""


class FreshProcess:
    """A function running in a fresh Python process; `result()` waits for its answer."""

    def __init__(self, function: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any],
                 env: Mapping[str, str | None] | None, command_prefix: Sequence[str]) -> None:
        main_module = _main_module_name()  # `python -m package.module`: the child finds `__main__`'s names there
        self._main_module = main_module
        name = getattr(function, "__qualname__", repr(function))
        if (getattr(function, "__module__", "__main__") == "__main__" and main_module is None) or "<locals>" in name:
            raise ValueError(f"{name} must be a module-level function of an importable module to run in a fresh "
                             "process (a notebook's or script's own functions are not importable there): move it "
                             "into a .py file")
        self.description = f"{getattr(function, '__module__', '?')}.{name}"
        self._outcome: tuple[str, Any] | None = None  # ("ok", value) or ("error", FreshProcessError), once known
        self._folder = tempfile.TemporaryDirectory(prefix="fresh-process-")
        folder = Path(self._folder.name)
        self._request, self._answer, self._stderr_path = folder / "request", folder / "answer", folder / "stderr"
        self._request.write_bytes(pickle.dumps((main_module, pickle.dumps((function, tuple(args), dict(kwargs))))))
        # what this process can import, the child can (a notebook's folder, a test folder); then the caller's env
        # ("" is the working folder: a notebook's or the REPL's own modules are found there)
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(path) for path in sys.path)}
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        # this file as a script: the child imports nothing but the function's own module (not this package)
        command = [*command_prefix, sys.executable, __file__, str(self._request), str(self._answer)]
        with self._stderr_path.open("wb") as stderr:
            self._process = subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=stderr)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._process.pid

    def running(self) -> bool:
        """Whether the child has not exited yet."""
        return self._process.poll() is None

    def kill(self) -> None:
        """Stop the child now (no answer will come)."""
        if self.running():
            self._process.kill()
            self._process.wait()

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the child (at most `timeout` seconds, then kill it) and return what the function returned.

        Raises `FreshProcessError` with the child's exception, or with its exit status and stderr when it died.
        An interrupt (Ctrl-C, a notebook's stop button) while waiting stops the child too. Asking again gives
        the same answer.
        """
        if self._outcome is None:
            self._outcome = self._wait_for_answer(timeout)
        status, value = self._outcome
        if status == "error":
            raise value
        return value

    def _wait_for_answer(self, timeout: float | None) -> tuple[str, Any]:
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return "error", FreshProcessError(f"{self.description} did not finish within {timeout:g} s; stopped "
                                              f"it. {self._stderr_tail()}".strip())
        except BaseException:  # an interrupt: the child must not run on, holding its cores and memory
            self.kill()
            self._folder.cleanup()
            raise
        try:
            if not self._answer.exists():
                return "error", FreshProcessError(f"{self.description} died without answering "
                                                  f"({self._exit_status()}). {self._stderr_tail()}".strip())
            status, value, details = _MainAliasUnpickler(io.BytesIO(self._answer.read_bytes()), self._main_module,
                                                         to_main=True).load()
            captured = self._stderr_path.read_text(errors="replace").strip()
            if captured:
                logger.debug("stderr of %s (pid %d):\n%s", self.description, self.pid, captured)
            if status == "error":
                logger.debug("traceback in %s:\n%s", self.description, details)
                return "error", FreshProcessError(f"{self.description} failed in its process: {value}")
            return "ok", value
        finally:
            self._folder.cleanup()

    def died_hard(self) -> bool:
        """Whether the child has exited without being able to answer (killed by a signal, or a non-zero exit)."""
        code = self._process.poll()
        return code is not None and code != 0

    def _exit_status(self) -> str:
        code = self._process.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                return f"killed by signal {-code}"
            return f"killed by {name}: {_SIGNAL_CAUSES.get(name, 'a crash in native code')}"
        return f"exit status {code}"

    def _stderr_tail(self) -> str:
        text = self._stderr_path.read_text(errors="replace").strip() if self._stderr_path.exists() else ""
        return f"Its stderr ends: {text[-_STDERR_TAIL:]}" if text else ""


def start_fresh_process(function: Callable[..., Any], /, *args: Any, env: Mapping[str, str | None] | None = None,
                        command_prefix: Sequence[str] = (), **kwargs: Any) -> FreshProcess:
    """Start `function(*args, **kwargs)` in a fresh Python process and return at once.

    Args:
        function: a module-level function of an importable module; its return value must pickle.
        env: environment changes for the child (a value of None removes the variable); the rest is inherited.
        command_prefix: a launcher to run Python under, e.g. ["numactl", "--cpunodebind=0", "--membind=0"].
    """
    return FreshProcess(function, args, kwargs, env, command_prefix)


def run_in_fresh_process(function: Callable[..., Any], /, *args: Any, env: Mapping[str, str | None] | None = None,
                         command_prefix: Sequence[str] = (), timeout: float | None = None, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)` in a fresh Python process; its return value, or `FreshProcessError`."""
    return start_fresh_process(function, *args, env=env, command_prefix=command_prefix, **kwargs).result(timeout)


def _main_module_name() -> str | None:
    """The module name this process's `__main__` was run as with `python -m`, or None."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None and spec.name else None


class _MainAliasUnpickler(pickle.Unpickler):
    """Unpickles across a `python -m package.module` parent: the child finds the parent's `__main__` names in
    `package.module`; with `to_main`, the parent finds the child's `package.module` names in its own `__main__`
    (the same classes, so `isinstance` holds)."""

    def __init__(self, data: io.BytesIO, main_module: str | None, to_main: bool = False) -> None:
        super().__init__(data)
        self.main_module, self.to_main = main_module, to_main

    def find_class(self, module: str, name: str) -> Any:
        if self.main_module:
            if not self.to_main and module == "__main__":
                module = self.main_module
            elif self.to_main and module == self.main_module:
                module = "__main__"
        return super().find_class(module, name)


def _serve(request: Path, answer: Path) -> None:
    """The child's side: call the pickled function and write its answer (atomically) for the parent."""
    try:
        main_module, call = pickle.loads(request.read_bytes())
        function, args, kwargs = _MainAliasUnpickler(io.BytesIO(call), main_module).load()
        payload = ("ok", function(*args, **kwargs), "")
    except BaseException as error:  # noqa: BLE001 - every failure is the parent's to report
        payload = ("error", f"{type(error).__name__}: {error}", traceback.format_exc())
    partial = answer.with_name(answer.name + ".partial")
    try:
        partial.write_bytes(pickle.dumps(payload))
    except Exception as error:  # noqa: BLE001 - e.g. a return value that does not pickle
        partial.write_bytes(pickle.dumps(("error", f"the result could not be sent back ({error})", "")))
    os.replace(partial, answer)


if __name__ == "__main__":
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)  # this file's folder: its modules must not shadow others (PYTHONPATH has the parent's path)
    _serve(Path(sys.argv[1]), Path(sys.argv[2]))
