"""The command-line scaffold (infra.cli): flags generated from dataclasses, usage errors, run errors, outputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from cpu_inference_helpers.infra.cli import DataclassArgumentParser, UsageError, write_output_files
from cpu_inference_helpers.infra.cli_logging import LogSetup
from cpu_inference_helpers.infra.lists import comma_list


@dataclass
class ToySettings:
    """A settings class as the library writes them: help in the metadata, a check in __post_init__."""

    model_name_or_path: str = field(default="tiny", metadata={"help": "which model (default: %(default)s)"})
    batch_size: int = field(default=8, metadata={"help": "windows per batch"})
    limit: int | None = field(default=None, metadata={"help": "only the first N"})
    fast: bool = field(default=False, metadata={"help": "take the fast path"})
    names: list[str] = field(default_factory=lambda: ["a", "b"], metadata={
        "parse": comma_list, "default_text": "a,b", "help": "comma-separated names"})
    attention: str = field(default="sdpa", metadata={"choices": ["sdpa", "eager"], "help": "kernel"})
    secret: bool = field(default=False, metadata={"hidden": True})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("--batch_size must be at least 1")


def toy_parser() -> DataclassArgumentParser:
    return DataclassArgumentParser(ToySettings, prog="toy")


def test_a_field_becomes_a_flag_with_its_help_and_default():
    parser = toy_parser()
    (settings,) = parser.parse_dataclasses([])
    assert settings == ToySettings()
    help_text = " ".join(parser.format_help().split())
    assert "--model_name_or_path MODEL_NAME_OR_PATH which model (default: tiny)" in help_text
    assert "--batch_size BATCH_SIZE windows per batch" in help_text
    assert "--secret" not in help_text  # hidden, but accepted
    (settings,) = parser.parse_dataclasses(["--batch_size", "4", "--limit", "3", "--names", "x, y", "--secret"])
    assert (settings.batch_size, settings.limit, settings.names, settings.secret) == (4, 3, ["x", "y"], True)


def test_a_bool_becomes_a_store_true_flag():
    parser = toy_parser()
    (action,) = [action for action in parser._actions if action.dest == "fast"]
    assert action.nargs == 0 and action.const is True and action.default is False
    assert parser.parse_dataclasses(["--fast"])[0].fast is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--fast", "yes"])


def test_a_bool_that_defaults_to_true_is_refused_when_the_parser_is_built():
    @dataclass
    class Wrong:
        on: bool = True

    with pytest.raises(TypeError, match="must default to False"):
        DataclassArgumentParser(Wrong)


@pytest.mark.parametrize(("argv", "message"), [
    (["--batch_size", "0"], "toy: error: --batch_size must be at least 1"),  # from __post_init__
    (["--batch_size", "x"], "invalid int value: 'x'"),
    (["--attention", "flash"], "invalid choice: 'flash'"),
])
def test_a_settings_value_error_is_a_usage_error_with_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        toy_parser().parse_dataclasses(argv)
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.startswith("usage: toy") and "Traceback" not in error


def test_a_parse_functions_value_error_keeps_its_message(capsys):
    from cpu_inference_helpers.modes import parse_mode_list

    @dataclass
    class WithModes:
        modes: list = field(default_factory=list, metadata={"parse": parse_mode_list, "help": "modes"})

    with pytest.raises(SystemExit):
        DataclassArgumentParser(WithModes, prog="toy").parse_dataclasses(["--modes", "warp"])
    assert "argument --modes: unknown mode 'warp'" in capsys.readouterr().err


def test_run_reports_known_errors_and_usage_errors_with_exit_2(capsys):
    parser = toy_parser()
    quiet = LogSetup(level=logging.WARNING)

    def broken() -> int:
        raise OSError("the disk is full")

    assert parser.run(broken, log=quiet) == 2
    assert capsys.readouterr().err == "error: the disk is full\n"

    def misused() -> int:
        raise UsageError("--shapes 100000x1: too long")

    with pytest.raises(SystemExit) as raised:
        parser.run(misused, log=quiet)
    assert raised.value.code == 2 and "toy: error: --shapes 100000x1: too long" in capsys.readouterr().err

    def unexpected() -> int:
        raise KeyError("a bug")

    with pytest.raises(KeyError):  # not a known run-time error: a bug shows its traceback
        parser.run(unexpected, log=quiet)
    assert parser.run(lambda: None, log=quiet) == 0


def test_an_output_folder_is_untouched_when_the_run_fails_half_way(tmp_path, capsys):
    folder = tmp_path / "results"
    write_output_files(folder, {"results.json": "old json\n", "results.csv": "old csv\n"})

    def failing_plot(path) -> None:
        raise RuntimeError("the plot failed")

    def run() -> int:
        write_output_files(folder, {"results.json": "new json\n", "results.csv": "new csv\n", "plot.png": failing_plot})
        return 0

    assert toy_parser().run(run, log=LogSetup()) == 2
    assert "error: the plot failed" in capsys.readouterr().err
    assert sorted(path.name for path in folder.iterdir()) == ["results.csv", "results.json"]  # no .partial-* left
    assert (folder / "results.json").read_text() == "old json\n" and (folder / "results.csv").read_text() == "old csv\n"
    written = write_output_files(folder, {"results.json": "new json\n", "plot.png": b"\x89PNG"})
    assert written == [folder / "results.json", folder / "plot.png"]
    assert (folder / "plot.png").read_bytes() == b"\x89PNG"


def test_an_unwritable_output_folder_is_a_usage_error(tmp_path, capsys):
    existing_file = tmp_path / "taken"
    existing_file.write_text("")
    with pytest.raises(SystemExit) as raised:
        toy_parser().output_folder(existing_file)
    assert raised.value.code == 2 and "is an existing file, not a folder" in capsys.readouterr().err


def test_subcommands_get_their_own_dataclasses(capsys):
    @dataclass
    class Fetch:
        to: str = field(default="out.json", metadata={"help": "where"})

    parser = DataclassArgumentParser(prog="tool")
    parser.add_command("fetch", Fetch, help_text="download it")
    assert parser.parse_dataclasses(["fetch", "--to", "x.json"]) == (Fetch("x.json"),)
    with pytest.raises(SystemExit):
        parser.parse_dataclasses([])
    assert "required: command" in capsys.readouterr().err


def test_run_qa_parses_the_classic_run_qa_command():
    """transformers' run_qa.py command line, as the guide quotes it, parses into the evaluation settings."""
    from cpu_inference_helpers import run_qa
    from cpu_inference_helpers.modes import ModeSpec

    argv = ["--model_name_or_path", "X", "--dataset_name", "squad", "--do_eval", "--max_seq_length", "384",
            "--doc_stride", "128", "--no_cuda", "--jit_mode_eval", "--use_ipex", "--output_dir", "D"]
    _, flags, settings, engine = run_qa.parse_command_line(argv)
    assert (settings.model_name_or_path, settings.dataset_name, settings.max_seq_length, settings.doc_stride) == (
        "X", "squad", 384, 128)
    assert settings.modes == [ModeSpec("ipex+jit")] and flags.output_dir == "D" and flags.no_cuda
    assert engine is None


@pytest.mark.parametrize("module", ["cpu_inference_helpers.run_qa", "cpu_inference_helpers.bench.__main__",
                                    "cpu_inference_helpers.generation.__main__",
                                    "cpu_inference_helpers.training.train", "cpu_inference_helpers.training.curve"])
def test_every_flag_of_the_ported_mains_has_help(module, capsys):
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as raised:
        main(["--help"])
    assert raised.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    options = [line for line in lines if line.startswith("  --")]
    assert options
    for line in options:  # "  --flag VALUE   help" or the help on the next line
        following = lines[lines.index(line) + 1]
        assert len(line.split("  ")) > 2 or following.startswith(" " * 10), line


@dataclass
class Repeated:
    runs: list[str] = field(default_factory=lambda: ["baseline"], metadata={"repeatable": True, "help": "a run"})


def test_a_repeatable_flag_replaces_its_default_instead_of_adding_to_it():
    parser = DataclassArgumentParser(Repeated, prog="toy")
    assert parser.parse_dataclasses([]) == (Repeated(["baseline"]),)
    assert parser.parse_dataclasses(["--runs", "x", "--runs", "y"]) == (Repeated(["x", "y"]),)
