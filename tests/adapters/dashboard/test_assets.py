"""The page's static assets: shipped in the package, nothing loaded from elsewhere, and no way for cluster data to be
parsed as HTML (the browser tests prove the same in Chromium)."""

from __future__ import annotations

import importlib.resources
import re

import pytest

from edgefleet.adapters.dashboard import server

ASSETS = importlib.resources.files("edgefleet.adapters.dashboard").joinpath("static")


def text(name: str) -> str:
    return ASSETS.joinpath(name).read_text(encoding="utf-8")


def test_every_asset_the_server_names_is_in_the_package() -> None:
    for name in [*server.STATIC, "index.html"]:
        assert ASSETS.joinpath(name).is_file(), name


@pytest.mark.parametrize(
    "sink",
    ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute(\"on",
     "setAttribute(\"style", "srcdoc", "javascript:", "DOMParser", "createContextualFragment"],
)  # fmt: skip
def test_the_script_has_no_html_sink(sink: str) -> None:
    assert sink not in text("app.js")


def test_the_page_has_no_inline_script_style_or_handler_and_loads_nothing_from_elsewhere() -> None:
    page = text("index.html")
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/app.js" defer>']
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"\son[a-z]+\s*=", page)
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert attribute.startswith("/static/"), attribute
    for name in ("app.js", "app.css"):
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text(name)), name  # the SVG namespace is no URL
        assert "@import" not in text(name) and "url(" not in text(name)
