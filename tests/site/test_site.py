"""The site generator against tiny fixture models: every page, figure, caption and link; the cache; errors."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minivis.vis as vis_module
from minivis.site import Cache, Stage, build_site
from minivis.site.microscope import pick_channels
from tests.site.fixtures import build_tiny_site, tiny_fashion


class _Collect(HTMLParser):
    """Links, image sources, ids, figures with their call lines, and the inline map data of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.links, self.images, self.ids, self.scripts = [], [], set(), []
        self.figures: list[dict] = []
        self._in_code = self._in_json = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag in ("a", "link") and "href" in a:
            self.links.append(a["href"])
        if tag == "img":
            self.images.append(a["src"])
            if self.figures and self.figures[-1]["img"] is None:
                self.figures[-1]["img"] = a["src"]
        if tag == "script" and "src" in a:
            self.scripts.append(a["src"])
        if tag == "figure":
            self.figures.append({"img": None, "call": ""})
        self._in_code = tag == "code" and a.get("class") == "call"
        self._in_json = tag == "script" and a.get("type") == "application/json"
        if self._in_json:
            self.json = ""

    def handle_endtag(self, tag):
        self._in_code = self._in_json = False

    def handle_data(self, data):
        if self._in_code:
            self.figures[-1]["call"] += data
        if self._in_json:
            self.json += data


def _parse(path: Path) -> _Collect:
    parser = _Collect()
    parser.feed(path.read_text())
    return parser


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return build_tiny_site(tmp_path_factory.mktemp("site"))


def test_every_page_is_reachable_and_every_link_and_image_resolves(site):
    root = site.parent
    seen, todo = set(), ["index.html"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        page = _parse(root / name)
        for src in page.images + page.scripts:
            assert (root / src).is_file(), f"{name}: missing {src}"
        for href in page.links:
            assert "://" not in href and not href.startswith("//"), f"{name}: external link {href}"
            target, _, anchor = href.partition("#")
            target = target or name
            assert (root / target).is_file(), f"{name}: broken link {href}"
            if anchor:
                assert anchor in _parse(root / target).ids, f"{name}: no #{anchor} in {target}"
            if target.endswith(".html"):
                todo.append(target)
    written = {p.name for p in root.glob("*.html")}
    assert written == seen, f"pages not linked from anywhere: {written - seen}"
    # photos (2) + microscope (model, 2 layers, 2 channels each, twice) + embeddings + 7 synthesis pages
    assert len(written) == 1 + 2 + 2 * (1 + 2 * (1 + 2)) + 1 + 7
    assert {"synth-fast-style.html", "synth-texture.html", "synth-decoder-inversion.html"} <= written


def test_every_figure_is_a_png_with_a_caption_and_a_minivis_call(site):
    figures = 0
    for path in site.parent.glob("*.html"):
        page = _parse(path)
        for fig in page.figures:
            figures += 1
            with Image.open(site.parent / fig["img"]) as img:
                assert img.format == "PNG" and min(img.size) > 0
    assert figures > 40
    calls = [f["call"] for p in site.parent.glob("*.html") for f in _parse(p).figures if f["call"]]
    assert calls and all(c.startswith("mv.") or c.startswith("Y = mv.") or c.startswith("x = ") for c in calls)
    text = (site.parent / "photo-alpha.html").read_text()
    for method in ("saliency", "SmoothGrad", "guided backprop", "DeconvNet", "integrated gradients", "Grad-CAM",
                   "guided Grad-CAM", "CAM variants", "gradient x input", "LRP", "DeepLIFT", "occlusion"):
        assert f"<figcaption>{method} (" in text, method
    assert "composite=epsilon_gamma_box" in text and "methods=(&#39;grad_cam_pp&#39;, &#39;xgrad_cam&#39;" in text
    assert "score_cam" not in text  # a forward pass per channel: --full only
    channel = (site.parent / "mic-fashion_cnn-features.0-c0.html").read_text()
    for heading in ("Filter", "Feature visualisation", "Top-9 dataset patches", "DeconvNet projections",
                    "Dead-filter statistics"):
        assert f"<h2>{heading}</h2>" in channel
    synth = {name: (site.parent / f"synth-{name}.html").read_text() for name in ("fast-style", "texture",
                                                                              "decoder-inversion")}
    for call in ("mv.vis.stylize(mv.models.load_fast_style(&#39;mosaic&#39;), photo)",
                 "mv.vis.interpolate_styles(mv.models.load_fast_style(), photo, &#39;mosaic&#39;, &#39;waves&#39;"):
        assert call in synth["fast-style"], call
    for call in ("mv.vis.texture_synthesis(m, mv.vis.style_input(m, mv.data.style_image(&#39;mosaic&#39;, 32))",
                 "mv.vis.efros_leung(sample[:16, :16], 20, window=5)", "mv.vis.style_transfer(m, "):
        assert call in synth["texture"], call
    assert "mv.vis.compare_inversions(m, {l: mv.models.load_decoder(l)" in synth["decoder-inversion"]
    assert "<td>features.4</td>" in synth["decoder-inversion"]
    assert "<h2>Filter</h2>" not in (site.parent / "mic-fashion_cnn-features.5-c7.html").read_text()


def test_the_microscope_matches_the_methods_it_calls(site):
    """The dead-filter table of a channel page is what mv.vis.dead_filters says for that channel."""
    from tests.site.fixtures import tiny_models

    model = tiny_models()["fashion_cnn"]
    images, _ = tiny_fashion()
    report = vis_module.dead_filters(model, images, "features.5")
    page = (site.parent / "mic-fashion_cnn-features.5-c7.html").read_text()
    assert f"<td>{report.dead_fraction[7]:.1%}</td>" in page
    assert f"<td>{report.mean[7]:.4f}</td>" in page and f"<td>{report.max[7]:.4f}</td>" in page
    top = vis_module.top_activations(model, images, "features.5", k=9, crop=False)["features.5"]
    for rank in range(9):
        row = f"<td>{rank + 1}</td><td>{top.patch_index[7, rank]}</td><td>{top.patch_value[7, rank]:.3f}</td>"
        assert row in page.replace("\n", "").replace(" ", ""), rank


def test_interactive_map_data(site):
    page = _parse(site.parent / "embeddings.html")
    data = json.loads(page.json)
    assert data == json.loads((site.parent / "tsne_points.json").read_text())
    n = len(data["x"])
    assert n == 40 and len(data["y"]) == n and len(data["label"]) == n
    assert min(data["x"]) == 0.0 and max(data["x"]) == 1.0 and 0.0 <= min(data["y"]) and max(data["y"]) <= 1.0
    _, labels = tiny_fashion()
    assert data["label"] == labels[:40].tolist()
    with Image.open(site.parent / data["atlas"]) as atlas:
        assert atlas.size == (data["cols"] * 28, -(-n // data["cols"]) * 28)
        tile = np.asarray(atlas)[28:56, 56:84]  # image 2 * cols + ... : row 1, column 2
    images, _ = tiny_fashion()
    np.testing.assert_array_equal(tile, images[data["cols"] + 2])


def test_second_run_only_redraws(site, monkeypatch, tmp_path):
    """With every result cached, the second build calls no method: patch them to fail and build again."""
    import shutil

    out = tmp_path / "again"
    shutil.copytree(site.parent / "_cache", out / "_cache")

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed a cached result")

    for name in ("saliency", "smoothgrad", "guided_backprop", "deconvnet", "integrated_gradients", "occlusion",
                 "grad_cam", "guided_grad_cam", "top_activations", "crop_patches", "dead_filters", "class_model",
                 "feature_codes", "pca", "tsne", "deepdream", "inversion_table", "fgsm", "targeted_attack", "cam",
                 "gradient_x_input", "lrp", "deeplift", "project_top_activations", "stylize", "interpolate_styles",
                 "texture_synthesis", "style_transfer", "efros_leung", "compare_inversions"):
        monkeypatch.setattr(vis_module, name, refuse)
    index = build_tiny_site(out)
    assert index.is_file() and (out / "photo-alpha.html").is_file()


def _without_timestamp(html: str) -> str:
    """The page without the build's date and the seconds a method took (the decoder page reports them)."""
    return re.sub(r"\d+\.\d+ s\b", "", re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d", "", html))


def test_a_parallel_build_writes_the_same_site(site, tmp_path):
    """Two worker processes (forked, one thread each) build the same pages, figures and captions."""
    from minivis.site.parallel import can_fork

    if not can_fork():
        pytest.skip("no fork on this platform: the build runs its parts in one process")
    index = build_tiny_site(tmp_path / "par", workers=2)
    one, two = site.parent, index.parent
    assert {p.name for p in one.glob("*.html")} == {p.name for p in two.glob("*.html")}
    assert sorted(p.relative_to(one).as_posix() for p in one.rglob("*.png")) == \
        sorted(p.relative_to(two).as_posix() for p in two.rglob("*.png"))
    for page in one.glob("*.html"):
        assert _without_timestamp(page.read_text()) == _without_timestamp((two / page.name).read_text()), page.name


def test_a_skipped_part_leaves_the_others(tmp_path):
    from minivis.site import Page, Part, stage_of_parts

    def fine(ctx):
        return [Page("fine", "Fine", [], card=None)]

    def gone(ctx):
        raise FileNotFoundError("the data of part two is missing; apt-get install it")

    stage = stage_of_parts("two", "Synthesis", "Two parts", lambda ctx: [Part("one", fine), Part("two", gone)])
    for workers in (1, 2):
        index = build_site(tmp_path / str(workers), mode="fast", stages=[stage], photo_arrays={}, progress=False,
                           workers=workers)
        text = index.read_text()
        assert "Synthesis / Two parts (two) skipped: the data of part two is missing" in text
        assert (index.parent / "fine.html").is_file()
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        build_site(tmp_path, stages=[stage], workers=0)


def test_cache_keys_on_parameters_and_survives_a_truncated_file(tmp_path):
    cache = Cache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(3)}

    np.testing.assert_array_equal(cache.get("k", {"p": 1}, compute)["a"], np.arange(3))
    cache.get("k", {"p": 1}, compute)
    assert len(calls) == 1
    cache.get("k", {"p": 2}, compute)
    assert len(calls) == 2
    cache.path("k", {"p": 1}).write_bytes(b"PK\x03\x04 truncated")
    np.testing.assert_array_equal(cache.get("k", {"p": 1}, compute)["a"], np.arange(3))
    assert len(calls) == 3


def test_pick_channels():
    assert pick_channels(32, 8).tolist() == [0, 4, 9, 13, 18, 22, 27, 31]
    assert pick_channels(4, 8).tolist() == [0, 1, 2, 3]
    assert pick_channels(5, None).tolist() == [0, 1, 2, 3, 4]


def test_missing_data_is_a_note_and_other_errors_stop_the_build(tmp_path):
    def missing(ctx):
        raise FileNotFoundError("Fashion-MNIST not found; apt-get install dataset-fashion-mnist")

    index = build_site(tmp_path, mode="fast", stages=[Stage("gone", "Microscope", "gone", missing)],
                       photo_arrays={}, progress=False)
    assert "Microscope / gone skipped: Fashion-MNIST not found; apt-get install" in index.read_text()

    def broken(ctx):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        build_site(tmp_path, mode="fast", stages=[Stage("bug", "X", "bug", broken)], progress=False)


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"build_site: mode must be one of \('fast', 'default', 'full'\), got 'quick'"):
        build_site(tmp_path, mode="quick")


def test_a_photo_whose_package_is_missing_is_skipped_with_a_note(tmp_path, monkeypatch):
    import minivis.data
    from minivis.site.photos import PHOTO_METHODS, photo_stage
    from tests.site.fixtures import tiny_models, tiny_photos

    def photo(name):
        raise ImportError("photo('china') needs the optional package 'scikit-learn'")

    monkeypatch.setattr(minivis.data, "photo", photo)
    stage = photo_stage("efficientnet_lite0", cam_layer="blocks.3",
                        methods=[m for m in PHOTO_METHODS if m.key == "saliency"])
    index = build_site(tmp_path, mode="fast", photos=["alpha", "china"], stages=[stage], models=tiny_models(),
                       photo_arrays={"alpha": tiny_photos()["alpha"]}, progress=False)
    text = index.read_text()
    assert "photo-alpha.html" in text and "photo-china.html" not in text
    assert "photo &#39;china&#39; skipped: photo(&#39;china&#39;) needs the optional package" in text
