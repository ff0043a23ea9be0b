"""The one table renderer: wide characters align in text, cells are escaped in HTML."""

from __future__ import annotations

from nbllm.tables import Table, cell_width, html_table, text_table


def test_wide_characters_take_two_columns() -> None:
    assert cell_width("通义千问") == 8 and cell_width("qwen") == 4 and cell_width("ｑ") == 2
    lines = text_table(["NAME", "KEY"], [["通义千问", "ready"], ["Kimi", "missing"]]).splitlines()
    starts = [cell_width(line[: line.index(word)]) for line, word in zip(lines, ["KEY", "ready", "missing"], strict=True)]
    assert starts == [10, 10, 10]  # the second column starts at the same terminal column on every line

def test_html_escapes_every_cell() -> None:
    markup = html_table(["<id>"], [["<script>x</script> & 你好"]])
    assert "<script>" not in markup and "&lt;script&gt;x&lt;/script&gt; &amp; 你好" in markup
    assert markup.startswith("<table><thead><tr><th") and markup.count("<tr>") == 2


def test_a_table_displays_as_html_with_the_text_as_fallback() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    table = Table(["id", "model"], [["ernie", "ernie-4.0-turbo-8k"]])
    data, _ = InteractiveShell.instance().display_formatter.format(table)
    assert data["text/html"] == html_table(table.headers, table.rows) == table.bundle()["text/html"]
    assert data["text/plain"] == str(table) == "id     model\nernie  ernie-4.0-turbo-8k"
