"""The HTML page beside a command's pictures: one self-contained index.html of figures and captions.

`write_page(out, title, intro, figures)` is shared by the commands that write pictures (`minigrad
figures`, and the demo): UTF-8, valid HTML5, images linked by relative paths, no script and nothing
fetched from elsewhere, so the folder can be copied, mailed or opened offline as it is.
"""
from __future__ import annotations

from html import escape
from itertools import groupby
from urllib.parse import quote

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
         "img{max-width:100%;height:auto;border:1px solid #ddd;background:#fff}"
         "figure{margin:1em 0 2.5em}figcaption{margin-top:.5em}section{margin-top:2.5em}"
         "nav li{margin:.15em 0}")


def write_page(out, title, intro, figures):
    """Write `out`/index.html and return its path.

    figures: (file name, caption) pairs, or (heading, file name, caption) triples; consecutive
    triples under one heading share a section, and a page of headings gets a table of contents.
    File names are relative to `out`, where the page is written.
    """
    items = [f if len(f) == 3 else (None, *f) for f in (tuple(f) for f in figures)]
    bad = [f for f in items if len(f) != 3]
    if bad:
        raise ValueError(f"write_page: each figure is (file, caption) or (heading, file, caption), got {bad[0]!r}")
    sections = [(heading, [(name, caption) for _, name, caption in group])
                for heading, group in groupby(items, key=lambda f: f[0])]
    body = [f"<h1>{escape(title)}</h1>"]
    if intro:
        body.append(f"<p>{escape(intro)}</p>")
    headed = [h for h, _ in sections if h is not None]
    if headed:
        body.append("<nav><ul>" + "".join(f'<li><a href="#{_anchor(i)}">{escape(h)}</a></li>'
                                          for i, h in enumerate(headed)) + "</ul></nav>")
    n = 0
    for heading, pictures in sections:
        figs = "\n".join(_figure(name, caption) for name, caption in pictures)
        if heading is None:
            body.append(figs)
            continue
        body.append(f'<section id="{_anchor(n)}"><h2>{escape(heading)}</h2>\n{figs}\n</section>')
        n += 1
    page = out / "index.html"
    page.write_text("<!DOCTYPE html>\n"
                    f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
                    f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n",
                    encoding="utf-8")
    return page


def _anchor(i):
    return f"s{i + 1}"


def _figure(name, caption):
    # The caption, right below, describes the picture: alt only names it, for when it does not load.
    # A wide picture is shrunk to the page; the link opens it at full size.
    src = escape(quote(name))
    return (f'<figure><a href="{src}"><img src="{src}" alt="{escape(name)}"></a>'
            f"<figcaption>{escape(caption)}</figcaption></figure>")
