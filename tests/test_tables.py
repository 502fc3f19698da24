"""Tables: fixed-width text for terminals, HTML (scrolling sideways, never wrapped) for JupyterLab."""

from cpu_inference_helpers.infra.tables import Table

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
