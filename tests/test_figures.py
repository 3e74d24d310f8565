"""`minigrad figures`: the gallery of chapter 10's figures — every file written, every page link good,
and each picture showing what its figure is about (read from the DOT source written beside it)."""
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest

from minigrad_cli.figures import PICTURES, outputs
from minigrad_cli.main import main


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("figures")
    assert main(["figures", "--out", str(folder)]) == 0
    return folder


class Page(HTMLParser):
    """What index.html holds: the doctype, headings, and each figure's image and caption, in order."""

    def __init__(self):
        super().__init__()
        self.doctype, self.headings, self.figures, self.charset = None, [], [], None
        self.links, self.scripts, self._in = [], 0, None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta" and "charset" in a:
            self.charset = a["charset"]
        if tag == "img":
            self.figures.append([a["src"], ""])
        if tag in ("script", "link", "iframe"):
            self.scripts += 1
        if tag == "a":
            self.links.append(a.get("href", ""))
        self._in = tag

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "h2":
            self.headings.append(data)
        elif self._in == "figcaption":
            self.figures[-1][1] += data


@pytest.fixture(scope="module")
def page(out):
    p = Page()
    p.feed((out / "index.html").read_text(encoding="utf-8"))
    p.close()
    return p


def gv(out, stem):
    return (out / f"{stem}.gv").read_text(encoding="utf-8")


def test_every_listed_file_is_written_and_every_svg_parses(out):
    names = outputs()
    assert len(names) == len(set(names)) == 2 * len(PICTURES) + 1
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for name in names:
        if name.endswith(".svg"):
            assert ET.parse(out / name).getroot().tag.endswith("svg"), name


def test_the_page_shows_exactly_the_pictures_in_book_order_with_nothing_from_elsewhere(out, page):
    assert page.doctype.lower() == "doctype html" and page.charset.lower() == "utf-8"
    srcs = [src for src, _ in page.figures]
    assert srcs == [n for n in outputs() if n.endswith(".svg")]
    assert all((out / src).is_file() for src in srcs)
    assert page.scripts == 0 and not any(re.match(r"[a-z]+:", s) for s in srcs + page.links)   # no URL
    assert [link for link in page.links if not link.startswith("#")] == srcs   # each opens at full size
    numbers = [re.search(r"10\.\d+(\.\d+)?", h).group(0) for h in page.headings]
    # the book's order: its figures up to §10.6's, then §10.7, §10.8, and the gated cells of §10.10
    assert numbers == ["10.2", "10.3", "10.4", "10.5", "10.6", "10.9", "10.10", "10.11", "10.12", "10.13", "10.14",
                       "10.7", "10.8", "10.16", "10.10.2"]
    sections = re.findall(r'<section id="([^"]+)"', (out / "index.html").read_text(encoding="utf-8"))
    assert [f"#{a}" for a in sections] == [link for link in page.links if link.startswith("#")]   # contents


def test_each_caption_names_its_figure(page):
    figure_of = {f"{p.stem}.svg": p.figure for p in PICTURES}
    for src, caption in page.figures:
        assert re.search(rf"(Fig\. |§){re.escape(figure_of[src])}(?!\d)", caption), (src, caption)


def test_the_rolled_elman_cell_closes_its_loop_through_a_delay_square(out):
    rolled = gv(out, "fig10-02-rolled")
    assert re.search(r'"viz\.delay\.[^"]+" \[[^]]*shape=square[^]]*xlabel=<1-step delay>', rolled)
    assert "viz.delay" not in gv(out, "fig10-02-unrolled")       # unfolded, the loop is gone


def test_losses_sit_where_their_figures_put_them(out):
    losses = lambda stem: re.findall(r"<b>L\((\d+)\)</b>", gv(out, stem))
    assert losses("fig10-03-unrolled") == ["1", "2", "3"]
    assert losses("fig10-05-unrolled") == ["4"] and "L = L(4)" in gv(out, "fig10-05-unrolled")
    assert losses("fig10-06-train") == ["1", "2", "3"] and losses("fig10-06-test") == []


def test_the_bidirectional_net_has_a_chain_each_way(out):
    assert "1-step advance" in gv(out, "fig10-11-rolled") and "1-step delay" in gv(out, "fig10-11-rolled")
    unrolled = gv(out, "fig10-11-unrolled")
    assert "<b>h(0)</b>" in unrolled and "<b>g(4)</b>" in unrolled      # h starts on the left, g on the right


def test_the_deep_transition_gets_its_skip_connection_only_in_c(out):
    assert "h·Wᵀ" in gv(out, "fig10-13c-skip") and "h·Wᵀ" not in gv(out, "fig10-13b-deep-transition")
    assert "h·W1ᵀ" in gv(out, "fig10-13b-deep-transition")


def test_the_recursive_net_is_drawn_root_on_top(out):
    assert "rankdir=BT" in gv(out, "fig10-14-recursive")


def test_the_echo_state_network_marks_its_frozen_weights(out):
    assert gv(out, "sec10-8-echo-state").count("(frozen)") == 3     # W_in, W, b; not the readout V, c


def test_the_trained_attention_reverses(out):
    """Row t's largest weight falls on source position S − t: the anti-diagonal of reversal."""
    rows = re.findall(r'<tr><td align="right"><b>([^<]*)</b></td>(.*?)</tr>', gv(out, "fig10-12-attention"))
    weights = np.array([[float(v) for v in re.findall(r">([0-9.]+)</font>", cells)] for _, cells in rows])
    letters = [label for label, _ in rows][:weights.shape[1]]
    assert letters == ["d", "c", "b", "a"]                          # it decoded "a b c d" reversed
    assert list(np.argmax(weights[:len(letters)], axis=1)) == [3, 2, 1, 0]


def test_gradient_captions_state_the_ratio_the_pictures_show(out, page):
    """The caption's ‖∂L/∂h(1)‖ / ‖∂L/∂h(T)‖ is computed: it matches the norms the picture prints."""
    captions = dict(page.figures)
    for stem, name in (("sec10-7-tanh-gradient", "tanh RNN"), ("sec10-7-lstm-gradient", "LSTM")):
        norms = dict(re.findall(r"<b>h\((\d+)\)</b>.*?‖∂L/∂h‖ ([0-9.e+-]+)<", gv(out, stem)))
        T = max(int(t) for t in norms)
        stated = float(re.search(rf"{name}: ([0-9.e+-]*[0-9])", captions[f"{stem}.svg"]).group(1))
        assert stated == pytest.approx(float(norms["1"]) / float(norms[str(T)]), rel=0.05)
    tanh, lstm = (float(re.search(rf"{n}: ([0-9.e+-]*[0-9])", captions["sec10-7-tanh-gradient.svg"]).group(1))
                  for n in ("tanh RNN", "LSTM"))
    assert tanh < lstm < 1                                          # what §10.7 says, measured, not assumed


def test_a_thing_in_the_way_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "index.html").mkdir()
    assert main(["figures", "--out", str(tmp_path)]) == 2
    assert "index.html" in capsys.readouterr().err and list(tmp_path.iterdir()) == [tmp_path / "index.html"]


def test_the_drawing_does_not_depend_on_string_hashing():
    """Two processes with different hash seeds write the same DOT (a set's order once leaked into it)."""
    code = ("from minigrad_cli.figures import Lab, PICTURES\n"
            "for p in PICTURES:\n"
            "    if p.stem in ('fig10-02-unrolled', 'fig10-11-unrolled'):\n"
            "        print(p.build(Lab())[0].source)")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    assert runs[0] == runs[1] and "digraph" in runs[0]
