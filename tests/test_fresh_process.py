"""The one way work runs elsewhere: a fresh interpreter, the environment and a launcher in force, one answer."""

import os
import signal
import time

import pytest

from cpu_inference_helpers.infra.fresh_process import FreshProcessError, run_in_fresh_process, start_fresh_process
from cpu_inference_helpers.infra.process_barrier import BrokenBarrierError, FolderBarrier

pytestmark = pytest.mark.stack_independent  # run on the legacy stack only (pyproject's markers)


def test_the_return_value_comes_back_and_the_environment_change_is_in_force():
    assert run_in_fresh_process(os.getenv, "FRESH_PROCESS_PROBE", env={"FRESH_PROCESS_PROBE": "set"}) == "set"
    os.environ["FRESH_PROCESS_PROBE"] = "inherited"
    try:
        assert run_in_fresh_process(os.getenv, "FRESH_PROCESS_PROBE") == "inherited"
        assert run_in_fresh_process(os.getenv, "FRESH_PROCESS_PROBE", env={"FRESH_PROCESS_PROBE": None}) is None
    finally:
        del os.environ["FRESH_PROCESS_PROBE"]


def test_it_is_another_process_under_the_launcher_prefix():
    assert run_in_fresh_process(os.getpid) != os.getpid()
    assert run_in_fresh_process(os.getenv, "SET_BY_LAUNCHER", command_prefix=["env", "SET_BY_LAUNCHER=yes"]) == "yes"


def test_the_childs_exception_comes_back_with_its_type_and_message():
    with pytest.raises(FreshProcessError, match=r"builtins.int failed in its process: ValueError: invalid literal"):
        run_in_fresh_process(int, "not a number")


def _die_by(signal_number: int) -> None:
    os.kill(os.getpid(), signal_number)


@pytest.mark.parametrize(("function", "args", "message"), [
    (os._exit, (3,), r"died without answering \(exit status 3\)"),
    (os.abort, (), r"died without answering \(killed by SIGABRT: native code aborted"),
    (_die_by, (signal.SIGILL,), r"died without answering \(killed by SIGILL: an instruction this CPU"),
    (_die_by, (signal.SIGKILL,), r"died without answering \(killed by SIGKILL: out of memory"),
])
def test_a_child_that_dies_is_reported_with_its_exit_status(function, args, message):
    with pytest.raises(FreshProcessError, match=message):
        run_in_fresh_process(function, *args)


def test_a_child_past_its_timeout_is_stopped():
    started = time.perf_counter()
    with pytest.raises(FreshProcessError, match="did not finish within 1 s; stopped it"):
        run_in_fresh_process(time.sleep, 60, timeout=1)
    assert time.perf_counter() - started < 30


def test_a_function_the_child_cannot_import_is_refused_before_starting():
    def local_function():
        return 1

    with pytest.raises(ValueError, match="module-level function of an importable module"):
        start_fresh_process(local_function)


def test_concurrent_children_meet_at_a_folder_barrier(tmp_path):
    barrier = FolderBarrier(tmp_path, parties=2)
    running = [start_fresh_process(_arrive, barrier, number) for number in range(2)]  # this test module imports
    times = [process.result(timeout=120) for process in running]
    assert abs(times[0] - times[1]) < 0.5  # they left together, the late one's start-up did not matter


def test_an_aborted_barrier_breaks_every_waiter(tmp_path):
    barrier = FolderBarrier(tmp_path, parties=2)
    barrier.abort()
    with pytest.raises(BrokenBarrierError, match="aborted"):
        barrier.wait(member=0, timeout=5)
    lonely = FolderBarrier(tmp_path / "other", parties=2)
    lonely.folder.mkdir()
    with pytest.raises(BrokenBarrierError, match="not every party arrived within 0.2 s"):
        lonely.wait(member=0, timeout=0.2)


def _arrive(barrier: FolderBarrier, member: int) -> float:
    if member == 1:
        time.sleep(1.0)  # arrives late
    barrier.wait(member, timeout=60)
    return time.time()


def test_a_function_of_a_python_dash_m_main_runs_under_its_module_name(tmp_path):
    """`python -m package.module` makes the module `__main__`; its functions and classes still travel to the child."""
    import subprocess
    import sys

    (tmp_path / "probe_main.py").write_text(
        "from dataclasses import dataclass\n"
        "from cpu_inference_helpers.infra.fresh_process import run_in_fresh_process\n"
        "@dataclass\nclass Settings:\n    greeting: str\n"
        "def where(settings):\n    return f'{settings.greeting} from {__name__}'\n"
        "def echo(settings):\n    return settings\n"
        "if __name__ == '__main__':\n    print(run_in_fresh_process(where, Settings('hello')))\n"
        "    print(isinstance(run_in_fresh_process(echo, Settings('back')), Settings))\n")
    finished = subprocess.run([sys.executable, "-m", "probe_main"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split() == ["hello", "from", "probe_main", "True"]  # its own classes come back as such


def test_a_module_beside_a_notebook_or_the_repl_is_importable_in_the_child(tmp_path):
    """Jupyter, the REPL and `python -c` put the working folder on sys.path as ""; the child must see it too."""
    import subprocess
    import sys

    (tmp_path / "beside.py").write_text("def answer():\n    return 42\n")
    code = "import beside\nfrom cpu_inference_helpers.infra.fresh_process import run_in_fresh_process\n" \
           "print(run_in_fresh_process(beside.answer))\n"
    finished = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "42"


def test_the_answer_is_kept_and_an_interrupt_stops_the_child():
    import signal

    process = start_fresh_process(os.getpid)
    assert process.result(timeout=60) == process.result() == process.pid

    sleeper = start_fresh_process(time.sleep, 60)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            sleeper.result(timeout=60)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert not sleeper.running()
