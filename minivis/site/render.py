"""Pages to HTML: the Jinja2 templates in ``templates/`` (autoescaped), the CSS and script in ``static/``."""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minivis.site.core import Page, Stage

HERE = Path(__file__).resolve().parent


def environment() -> Any:
    """The Jinja2 environment over ``templates/``, with a clear error when Jinja2 is missing."""
    try:
        import jinja2  # noqa: PLC0415
    except ImportError as err:
        raise ImportError("minivis gallery needs Jinja2 for its HTML templates: pip install 'minivis[site]' "
                          "(or pip install jinja2)") from err
    return jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                              autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render_site(out: Path, built: Sequence[tuple[Stage, list[Page]]], mode: str, notes: Sequence[str] = ()) -> Path:
    """Write ``index.html`` and one HTML file per page into ``out``; copy the assets. Returns the index path."""
    env = environment()
    assets = out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    for item in (HERE / "static").iterdir():
        if item.is_file():
            shutil.copyfile(item, assets / item.name)
    groups = list(dict.fromkeys(stage.group for stage, _ in built))
    common = {"groups": groups, "mode": mode,
              "built": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}
    grouped = [(group, [_StageView(stage, pages) for stage, pages in built if stage.group == group])
               for group in groups]
    pages = {page.name: page for _, stage_pages in built for page in stage_pages}
    if len(pages) != sum(len(p) for _, p in built):
        raise ValueError("site: two pages have the same name")
    index = out / "index.html"
    index.write_text(env.get_template("index.html").render(title="minivis", grouped=grouped, notes=list(notes),
                                                           **common))
    page_template = env.get_template("page.html")
    for page in pages.values():
        crumbs = []
        parent = page.parent
        while parent is not None and parent in pages:
            crumbs.insert(0, pages[parent])
            parent = pages[parent].parent
        children = [p for p in pages.values() if p.parent == page.name and not _linked(page, p)]
        has_map = any(section.embedding for section in page.sections)
        (out / f"{page.name}.html").write_text(page_template.render(title=page.title, page=page, crumbs=crumbs,
                                                                    children=children, has_map=has_map, **common))
    return index


def _linked(page: Page, child: Page) -> bool:
    """Whether ``page`` already links to ``child`` from a figure (then it is not listed again)."""
    return any(fig.href == f"{child.name}.html" for section in page.sections for fig in section.figures)


class _StageView:
    def __init__(self, stage: Stage, pages: list[Page]) -> None:
        self.name, self.title, self.about, self.pages = stage.name, stage.title, stage.about, pages
