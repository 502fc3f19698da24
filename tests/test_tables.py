"""Tables: fixed-width text for terminals, HTML (scrolling sideways, never wrapped) for JupyterLab."""

from cpu_inference_helpers.infra.tables import Table, markdown_table

COLUMNS = [("mode", "{}"), ("note", "{}"), ("samples/s", "{:.2f}")]


def test_a_table_prints_as_text_and_renders_as_the_same_cells_in_html():
    table = Table(COLUMNS, [["eager", "<ref>", 12.345], ["jit & co", "", 3.0]], notes=["fallback in jit: x < y"])
    text = str(table)
    assert text.splitlines()[0].split() == ["mode", "note", "samples/s"]
    assert "12.35" in text and text.splitlines()[-1] == "fallback in jit: x < y"
    html = table._repr_html_()
    assert html.count("<tr>") == 3 and "&lt;ref&gt;" in html and "jit &amp; co" in html and "12.35" in html
    assert "white-space:nowrap" in html and "overflow-x:auto" in html and "x &lt; y" in html
    assert repr(table) == text


def test_markdown_tables_align_their_cells_and_escape_pipes():
    lines = markdown_table(["mode", "note", "samples/s"], [["eager", "a | b", "12.35"]]).splitlines()
    assert lines[0] == "| mode | note | samples/s |"
    assert lines[1] == "| --- | --- | ---: |"  # text left, numbers right
    assert lines[2] == "| eager | a \\| b | 12.35 |"  # the pipe cannot split the row
    assert markdown_table(["path", "seq 384, batch 1"], [["eager", "1.00x"]], text_columns=1).splitlines()[1] == \
        "| --- | ---: |"
