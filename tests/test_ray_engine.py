"""The run_qa comparison on a local 2-CPU Ray cluster: the single-process answers, faults, and early errors.

One cluster serves every test here (starting one costs seconds); the runs are small (12 questions at 128/32).
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (make installs it)")

from cpu_inference_helpers.infra import ray_cluster  # noqa: E402
from cpu_inference_helpers.qa import evaluation  # noqa: E402
from cpu_inference_helpers.qa.evaluation import EvaluationSettings, evaluate_modes  # noqa: E402
from cpu_inference_helpers.qa.ray_engine import ClusterError, QAPredictor, RayEngine  # noqa: E402

pytestmark = pytest.mark.stack_independent  # run on the legacy stack only (pyproject's markers)

SMALL = dict(max_seq_length=128, doc_stride=32, max_eval_samples=12, per_device_eval_batch_size=4)


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster.ray_cluster() as info:
        yield info


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """The reference: the same questions and modes in this process."""
    output = tmp_path_factory.mktemp("one-process")
    return evaluate_modes(_settings("eager,jit"), output), output


def _settings(modes: str) -> EvaluationSettings:
    from cpu_inference_helpers.modes import parse_mode_list

    return EvaluationSettings(modes=parse_mode_list(modes), **SMALL)


def _files(folder) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def ray_run(cluster, single_process, tmp_path_factory):
    output = tmp_path_factory.mktemp("ray")
    return evaluate_modes(_settings("eager,jit"), output, RayEngine(workers=2, questions_per_task=5)), output


def test_ray_data_runs_quietly_inside_the_cluster_context(tmp_path):
    """Ray Data logs every dataset's start, plan and end at INFO to stderr unless told otherwise.

    In a fresh process, as a notebook would run it (under pytest's capture Ray Data's console lines do not
    show up at all, so an in-process check could not fail).
    """
    script = tmp_path / "quiet.py"
    script.write_text(
        "import ray\n"
        "from cpu_inference_helpers.infra.ray_cluster import ray_cluster\n"
        "with ray_cluster():\n"
        "    rows = ray.data.from_items([{'x': v} for v in range(4)]).map_batches(lambda b: b).take_all()\n"
        "print(len(rows))\n"
    )
    environment = {name: value for name, value in os.environ.items() if name != "RAY_DATA_LOG_LEVEL"}
    finished = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                              env=environment)
    assert finished.returncode == 0 and finished.stdout.strip() == "4", finished.stderr[-2000:]
    assert "Starting execution" not in finished.stderr and "execution finished" not in finished.stderr, finished.stderr


def test_the_ray_run_gives_the_single_process_answers_and_files(single_process, ray_run):
    (ours, our_folder), (theirs, their_folder) = single_process, ray_run
    assert theirs.predictions == ours.predictions  # fp32: identical answers in every mode
    assert theirs.nbest["eager"].keys() == ours.nbest["eager"].keys()
    for question, entries in ours.nbest["eager"].items():  # the workers' window logits are this process's
        assert [e["text"] for e in theirs.nbest["eager"][question]] == [e["text"] for e in entries]
        for mine, other in zip(entries, theirs.nbest["eager"][question], strict=True):
            assert other["start_logit"] == pytest.approx(mine["start_logit"], abs=1e-4)
            assert other["end_logit"] == pytest.approx(mine["end_logit"], abs=1e-4)
    assert _files(their_folder) == _files(our_folder)
    for name in ("eager/eval_predictions.json", "jit/eval_predictions.json"):
        assert (their_folder / name).read_text() == (our_folder / name).read_text()
    by_mode = {r.name: r for r in theirs.results}
    for result in ours.results:
        assert by_mode[result.name].exact_match == result.exact_match and by_mode[result.name].f1 == result.f1
        assert by_mode[result.name].samples == result.samples


def test_the_ray_run_reports_its_workers(ray_run):
    evaluation_, folder = ray_run
    metadata = json.loads((folder / "results.json").read_text())["metadata"]
    assert metadata["engine"] == "ray" and metadata["workers"] == 2 and metadata["threads_per_worker"] == 1
    assert metadata["windows"] == metadata["samples"] and metadata["tasks"] == 3  # 12 questions, 5 per task
    for actor in metadata["actors"]:
        assert actor["threads"] == 1 and actor["load_s"] > 0 and set(actor["setup_s"]) == {"eager", "jit"}
    assert "Ray: 2 workers x 1 threads" in evaluation_.title
    assert metadata["worker_stack"] == ray_cluster.stack_facts()


def test_the_ray_throughput_is_measured_on_the_wall_clock(ray_run):
    """Every mode's share of the timed span adds up to the span: windows / samples/s summed over the modes is
    the wall-clock time from the first timed batch to the last (not the busy time divided by the workers)."""
    evaluation_, folder = ray_run
    metadata = json.loads((folder / "results.json").read_text())["metadata"]
    span, busy = metadata["timed_span_s"], metadata["busy_s"]
    assert 0 < span <= metadata["wall_s"]
    shares = [result.samples / result.samples_per_second for result in evaluation_.results]
    assert sum(shares) == pytest.approx(span, rel=1e-6)
    assert span >= busy / metadata["workers"]  # two workers can at best halve the busy time
    for result in evaluation_.results:  # run_qa.py's eval_results.json counts the same wall clock
        metrics = json.loads((folder / result.folder / "eval_results.json").read_text())
        assert metrics["eval_samples_per_second"] == pytest.approx(result.samples_per_second, abs=1e-3)


class DiesOnFirstBatch(QAPredictor):
    """A worker that kills its own process on its first batch, once per run (a marker file remembers)."""

    marker = ""

    def __call__(self, batch):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().__call__(batch)


class AlwaysDies(QAPredictor):
    def __call__(self, batch):
        os._exit(1)


# the workers cannot import this test module: send its classes by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _predictor(base, **attributes):
    return type(base.__name__, (base,), attributes)


def test_a_worker_that_dies_is_restarted_and_the_answers_are_the_same(cluster, single_process, tmp_path):
    marker = tmp_path / "died"
    engine = RayEngine(workers=2, questions_per_task=6, predictor=_predictor(DiesOnFirstBatch, marker=str(marker)))
    run = evaluate_modes(_settings("eager"), tmp_path / "out", engine)
    assert marker.exists()  # a worker did die
    assert run.predictions["eager"] == single_process[0].predictions["eager"]


def test_a_run_that_cannot_complete_leaves_earlier_outputs_untouched(cluster, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "results.json").write_text("earlier")
    engine = RayEngine(workers=1, max_restarts=0, predictor=_predictor(AlwaysDies))
    with pytest.raises(ClusterError, match="could not complete"):
        evaluate_modes(_settings("eager"), output, engine)
    assert [p.name for p in output.iterdir()] == ["results.json"]
    assert (output / "results.json").read_text() == "earlier"


def _forbid_loading_here(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the cluster was checked")

    monkeypatch.setattr(evaluation, "load_qa_model_and_tokenizer", refuse)


def test_more_workers_than_cpus_is_refused_before_the_work(cluster, monkeypatch, tmp_path):
    _forbid_loading_here(monkeypatch)
    with pytest.raises(ClusterError, match=rf"need {cluster.cpus + 1} CPUs; the cluster has {cluster.cpus}"):
        evaluate_modes(_settings("eager"), tmp_path, RayEngine(workers=cluster.cpus + 1))


def test_workers_with_other_software_are_refused_before_the_work(cluster, monkeypatch, tmp_path):
    """Workers that would build the modes differently (here: this process claims another torch) are refused."""
    _forbid_loading_here(monkeypatch)
    real = ray_cluster.stack_facts()
    monkeypatch.setattr("cpu_inference_helpers.qa.ray_engine.stack_facts", lambda: {**real, "torch": "0.0.1"})
    with pytest.raises(ClusterError, match=r"torch: here 0\.0\.1, worker "):
        evaluate_modes(_settings("jit"), tmp_path, RayEngine(workers=1))


def test_a_model_the_workers_cannot_load_is_refused_before_the_work(cluster, monkeypatch, tmp_path):
    _forbid_loading_here(monkeypatch)
    settings = EvaluationSettings(model_name_or_path=str(tmp_path / "no-such-model"), **SMALL)
    with pytest.raises(ClusterError, match="could not load"):
        evaluate_modes(settings, tmp_path / "out", RayEngine(workers=1))


def _free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def test_an_unreachable_address_is_a_clear_error_from_the_cli(tmp_path):
    started = time.perf_counter()
    finished = subprocess.run(
        [sys.executable, "-m", "cpu_inference_helpers.run_qa", "--do_eval", "--engine", "ray", "--workers", "1",
         "--ray_address", f"127.0.0.1:{_free_port()}", "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert finished.returncode == 2
    assert "no Ray cluster answers at 127.0.0.1:" in finished.stderr and "ray start --head" in finished.stderr
    assert "Traceback" not in finished.stderr
    assert time.perf_counter() - started < 60
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "2"], "--workers need --engine ray"),
    (["--engine", "ray", "--threads_per_worker", "0"], "--threads_per_worker must be at least 1"),
    (["--engine", "ray", "--num_threads", "2"], "use --threads_per_worker"),
    (["--engine", "ray", "--ray_address", "10.0.0.1:6379"], "say how many workers"),
])
def test_engine_flags_are_checked(argv, message, capsys):
    from cpu_inference_helpers.run_qa import main

    with pytest.raises(SystemExit) as raised:
        main(["--do_eval", *argv])
    assert raised.value.code == 2 and message in capsys.readouterr().err
