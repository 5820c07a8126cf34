"""The HTML report and statement rendered by headless Chromium: key figures read back from the laid-out page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium_cdp import Browser, chromium_or_skip, png_size
from report_book import AS_OF, ATTRS, NOW, Book, d

from connector.reports import build_report
from connector.timeutil import zone
from connector.reports.html import to_html as report_html
from connector.statements import StatementLoader
from connector.statements import to_html as statement_html


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module."""
    b = Browser(chromium_or_skip())
    yield b
    b.close()


def visible_text(page: object, selector: str) -> str:
    """innerText of a rendered, visible element ('' when hidden or zero-sized)."""
    js = (f"(() => {{ const e = document.querySelector({selector!r}); if (!e) return null;"
          " const r = e.getBoundingClientRect(); return (r.width > 0 && r.height > 0) ? e.innerText : ''; })()")
    return page.eval(js)  # type: ignore[attr-defined, no-any-return]


def test_report_renders(browser: Browser, sqlite_book: Book, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    html.write_text(report_html(build_report(sqlite_book.engine, AS_OF, attributes=ATTRS)), encoding="utf-8")
    page = browser.page(html.as_uri())
    try:
        assert visible_text(page, "#liability-CNY") == "¥9,700.00"
        assert visible_text(page, "#refund-rules-CNY") == "¥8,900.00"
        assert visible_text(page, "#expiring-30-CNY") == "¥4,000.00"
        assert visible_text(page, "#breakage-90-CNY") == "¥2,666.67"
        assert visible_text(page, "#liability-USD") == "$900.00"
        assert visible_text(page, "#running-out") == "1" and visible_text(page, "#overdue") == "1"
        assert "delta" in visible_text(page, "#running-out-table")
        assert re.search(r"bolt\s+CNY\s+40\s+medium", visible_text(page, "#risk"))
        # Bars drawn with height: the three CNY months with consumption, and the runway buckets in use.
        bars = page.eval("[...document.querySelectorAll('#chart-monthly-CNY rect.bar')]"
                         ".filter(r => r.getBoundingClientRect().height > 0).length")
        assert bars == 3
        assert page.eval("[...document.querySelectorAll('#chart-runway rect.bar')]"
                         ".filter(r => r.getBoundingClientRect().height > 0).length") == 4
        png = page.screenshot(tmp_path / "report.png")
        width, height = png_size(png)
        assert width >= 800 and height >= 1000 and len(png) > 20000
        assert page.eval("performance.getEntriesByType('resource').length") == 0  # nothing fetched
    finally:
        page.close()


def test_statement_renders_and_prints_a4(browser: Browser, sqlite_book: Book, tmp_path: Path) -> None:
    st = StatementLoader(sqlite_book.engine, d(2026, 4, 1), d(2026, 7, 1), attributes=ATTRS).one("acme")
    html = tmp_path / "statement.html"
    html.write_text(statement_html(st, "zh", zone("Asia/Shanghai"), NOW), encoding="utf-8")
    page = browser.page(html.as_uri())
    try:
        assert visible_text(page, "#customer-name") == "Acme 有限公司"
        assert visible_text(page, "#opening-CNY") == "¥10,000.00"
        assert visible_text(page, "#closing-CNY") == "¥4,000.00"
        assert visible_text(page, "#refundable-CNY") == "¥4,000.00"
        rows = visible_text(page, "table.entries")
        assert "期初余额" in rows and rows.count("消费") == 3 and "-¥3,000.00" in rows and "期末余额" in rows
        assert "2026-07-21" in visible_text(page, "table.lots")
        # CJK glyphs laid out with real width (a missing font would still have width; check it is not tofu-narrow).
        assert page.eval("document.querySelector('h1').getBoundingClientRect().width") > 100
        png = page.screenshot(tmp_path / "statement.png")
        assert png_size(png)[0] >= 600
        pdf = page.pdf()
        assert pdf.startswith(b"%PDF")
        # A4 is 595.28 x 841.89 points; every page of the print uses the @page size.
        boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
        assert boxes and all(abs(float(w) - 595.28) < 1 and abs(float(h) - 841.89) < 1 for w, h in boxes)
    finally:
        page.close()
