"""The report as one self-contained HTML page: figures as base64 data URIs, tables sortable by a click on a header,
no external file and no network access (a Content-Security-Policy forbids both).

The page checks itself when it has loaded and writes the result on ``<body>``, so a headless browser's DOM dump
tells whether it rendered: ``data-check="done"``, ``data-images`` / ``data-images-ok`` (images present / decoded:
complete with a natural width), ``data-tables``, ``data-sort-ok`` (clicking a header sorted its table, and the
sort is monotonic on every column of a copy of every table), ``data-errors`` (JavaScript errors caught by
``window.onerror``) and ``data-error-messages``.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

__all__ = ["render_html"]

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th.t, td.t { text-align: left; }
th { background: #f2f2f2; cursor: pointer; user-select: none; white-space: normal; vertical-align: bottom;
     max-width: 11em; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: 13px; } code { background: #f4f4f4; padding: 0 3px; }
.scroll { overflow-x: auto; }
"""

# first in <head>: every later error is recorded (and written on <body> by the self-check)
_ERRORS = """
window.reportErrors = [];
window.onerror = function (message, source, line) {
  window.reportErrors.push(String(message) + (line ? " (line " + line + ")" : ""));
  if (document.body) { document.body.setAttribute("data-errors", String(window.reportErrors.length)); }
  return false;
};
"""

_SCRIPT = """
(function () {
  function key(cell) {
    var v = cell.getAttribute("data-v");
    if (v === null) { v = cell.textContent; }
    if (v === "") { return {empty: true}; }
    var n = Number(v);
    return isNaN(n) ? {text: v.toLowerCase()} : {num: n};
  }
  function compare(a, b) {
    if (a.empty || b.empty) { return (a.empty ? 1 : 0) - (b.empty ? 1 : 0); }
    if (a.num !== undefined && b.num !== undefined) { return a.num - b.num; }
    var x = a.num !== undefined ? String(a.num) : a.text, y = b.num !== undefined ? String(b.num) : b.text;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  function sortTable(table, col, ascending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = key(r.cells[col]), b = key(s.cells[col]);
      var c = compare(a, b);
      if (a.empty || b.empty) { return c; }  // empty cells last in both directions
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    heads[col].setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  function sorted(table, col, ascending) {
    var rows = table.tBodies[0].rows;
    for (var i = 1; i < rows.length; i++) {
      var a = key(rows[i - 1].cells[col]), b = key(rows[i].cells[col]);
      if (a.empty || b.empty) { if (a.empty && !b.empty) { return false; } continue; }
      var c = compare(a, b);
      if (ascending ? c > 0 : c < 0) { return false; }
    }
    return true;
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.title = "click to sort";
      th.addEventListener("click", function () {
        sortTable(table, col, th.getAttribute("aria-sort") !== "ascending");
      });
    });
  });
  function sortSelfTest() {
    var ok = true;
    Array.prototype.forEach.call(tables, function (table) {
      var n = table.tBodies[0].rows.length;
      var copy = table.cloneNode(true);
      for (var col = 0; col < copy.tHead.rows[0].cells.length; col++) {
        [true, false].forEach(function (asc) {
          sortTable(copy, col, asc);
          ok = ok && sorted(copy, col, asc) && copy.tBodies[0].rows.length === n;
        });
      }
      // a real click on the real header, then the original order back
      var body = table.tBodies[0], order = Array.prototype.slice.call(body.rows);
      var th = table.tHead.rows[0].cells[0];
      th.click();
      ok = ok && th.getAttribute("aria-sort") === "ascending" && sorted(table, 0, true);
      order.forEach(function (r) { body.appendChild(r); });
      th.removeAttribute("aria-sort");
    });
    return ok;
  }
  function check() {
    var body = document.body, images = document.images, decoded = 0, sortOk = false;
    for (var i = 0; i < images.length; i++) {
      if (images[i].complete && images[i].naturalWidth > 0) { decoded++; }
    }
    try { sortOk = sortSelfTest(); } catch (e) { window.reportErrors.push("sort self-test: " + e); }
    body.setAttribute("data-images", String(images.length));
    body.setAttribute("data-images-ok", String(decoded));
    body.setAttribute("data-tables", String(document.querySelectorAll("table").length));
    body.setAttribute("data-sort-ok", String(sortOk));
    body.setAttribute("data-errors", String(window.reportErrors.length));
    body.setAttribute("data-error-messages", window.reportErrors.join(" | "));
    body.setAttribute("data-check", "done");
  }
  if (document.readyState === "complete") { check(); } else { window.addEventListener("load", check); }
})();
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _text(s: Any) -> str:
    """Escaped text with Markdown's `code` spans kept as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(s)))


def _table(table: dict[str, Any]) -> str:
    from .report import numeric_columns

    align = ["" if n else " class=\"t\"" for n in numeric_columns(table)]
    head = "".join(f"<th scope=\"col\"{a}>{html.escape(h)}</th>" for h, a in zip(table["headers"], align))
    body = []
    for row in table["rows"]:
        cells = "".join(f"<td data-v=\"{html.escape(str(v))}\"{a}>{html.escape(str(t))}</td>"
                        for (t, v), a in zip(row, align))
        body.append(f"<tr>{cells}</tr>")
    notes = "".join(f"<p class=\"note\">{_text(n)}</p>" for n in table["notes"])
    return (f"<h2 id=\"{table['id']}\">{html.escape(table['title'])}</h2>\n<div class=\"scroll\">"
            f"<table class=\"sortable\" id=\"table-{table['id']}\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>\n{notes}")


def _figure(section: dict[str, str]) -> str:
    data = base64.b64encode(Path(section["path"]).read_bytes()).decode("ascii")
    title = html.escape(section["title"])
    return (f"<figure id=\"fig-{html.escape(section['id'])}\"><h3>{title}</h3>"
            f"<img src=\"data:image/png;base64,{data}\" alt=\"{title}\">"
            f"<figcaption>{_text(section['caption'])}</figcaption></figure>")


def render_html(info: dict[str, Any], tables: list[dict[str, Any]], sections: list[dict[str, str]],
                missing: dict[str, str]) -> str:
    """The page (see the module docstring); ``sections``' PNG files are read and embedded."""
    from .report import FIGURES

    c = info["counts"]
    link = "<li><a href=\"#{}\">{}</a></li>"
    toc = link.format(tables[0]["id"], html.escape(tables[0]["title"]))
    toc += "".join(link.format(f"fig-{html.escape(s['id'])}", html.escape(s["title"])) for s in sections)
    toc += "".join(link.format(t["id"], html.escape(t["title"])) for t in tables[1:])
    parts = [
        "<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_CSP}\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{html.escape(info['title'])}</title>", f"<script>{_ERRORS}</script>", f"<style>{_CSS}</style>",
        "</head>", "<body data-check=\"pending\">", f"<h1>{html.escape(info['title'])}</h1>",
        f"<p>Database <code>{html.escape(info['db'])}</code>: {c['done']} finished runs ({c['running']} running or "
        f"interrupted, {c['failed']} failed), {c['evaluations']} evaluations. Generated "
        f"{html.escape(info['generated'])}. Click a column header to sort a table.</p>",
        f"<nav><ul>{toc}</ul></nav>",
    ]
    parts.append(_table(tables[0]))
    parts.append("<h2 id=\"figures\">Figures</h2>")
    parts += [_figure(s) for s in sections]
    if missing:
        items = "".join(f"<li>{html.escape(FIGURES[k.partition(':')[0]][1])}: no data in the database; "
                        f"{_text(why)}.</li>" for k, why in missing.items())
        parts.append(f"<h2 id=\"missing\">Figures left out</h2><ul class=\"missing\">{items}</ul>")
    parts += [_table(t) for t in tables[1:]]  # the list of runs, last: it can be long
    parts += [f"<script>{_SCRIPT}</script>", "</body></html>", ""]
    return "\n".join(parts)
