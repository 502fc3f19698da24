"""The cold-start benchmark's contract: rows checked before any work, and its table."""

import pytest

from cpu_inference_helpers.bench.cold_start import (
    ALL_ROWS,
    ColdStart,
    ColdStartSettings,
    format_table,
    main,
    measure_cold_start,
)


def test_unknown_rows_and_bad_settings_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown cold-start row.*choose from eager"):
        measure_cold_start(ColdStartSettings(), tmp_path, rows=["eager", "warp drive"])
    with pytest.raises(ValueError, match="at least 1"):
        measure_cold_start(ColdStartSettings(questions=0), tmp_path, rows=["eager"])
    assert not any(tmp_path.iterdir())  # nothing was built
    with pytest.raises(SystemExit) as exit_info:
        main(["--rows", "warp drive", "--output_dir", str(tmp_path / "cli")])
    assert exit_info.value.code == 2


def test_every_row_is_named_once_and_the_table_shows_each():
    assert len(set(ALL_ROWS)) == len(ALL_ROWS) and {"eager", "export-saved", "cpp-export"} <= set(ALL_ROWS)
    rows = [ColdStart("eager", "eager", 4.0, 1.0, 0.1, 0.2, 5.3, 90.0),
            ColdStart("C++ AOTInductor (.pt2)", "export", 0.4, 0.0, 0.1, 0.2, 0.7, 75.0)]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| eager | eager |") and "**0.70**" in lines[3]


def test_only_the_files_the_rows_load_are_built(tmp_path, monkeypatch):
    """Each saved file costs a build (the package an AOTInductor compile): rows that load none build none."""
    from cpu_inference_helpers.bench import cold_start
    from cpu_inference_helpers.infra import fresh_process

    built, timed = [], []

    def fake_fresh_process(function, *args, **kwargs):
        assert function is cold_start._build_files
        built.append(args[2])

    monkeypatch.setattr(fresh_process, "run_in_fresh_process", fake_fresh_process)
    monkeypatch.setattr(cold_start, "_run_fresh_row", lambda settings, files, row: timed.append(row) or row)
    monkeypatch.setattr(cold_start, "_cpp_rows", lambda settings, files, wanted: [])
    settings = ColdStartSettings("minilm-squad", 1, 64, 16, 1)
    assert measure_cold_start(settings, tmp_path / "a", ["eager", "compile"]) == ["eager", "compile"]
    assert built == []
    measure_cold_start(settings, tmp_path / "b", ["eager", "export-saved", "cpp-export"])
    assert built == [{"model.pt2"}]
    measure_cold_start(settings, tmp_path / "c")
    assert built[-1] == {"model.pt", "model.pt2"} and timed[-1] == "export-saved"
