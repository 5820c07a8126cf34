"""The HTML report and statement rendered by headless Chromium: key figures read back from the laid-out
page."""

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
    js = (
        f"(() => {{ const e = document.querySelector({selector!r}); if (!e) return null;"
        " const r = e.getBoundingClientRect(); return (r.width > 0 && r.height > 0) ? e.innerText : ''; })()")
    return page.eval(js)  # type: ignore[attr-defined, no-any-return]


def test_report_renders(browser: Browser, sqlite_book: Book, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    html.write_text(report_html(build_report(sqlite_book.engine, AS_OF, attributes=ATTRS)), encoding="utf-8")
    page = browser.page(html.as_uri())
    try:
        assert visible_text(page, "#liability-CNY") == "CN¥9,700.00"
        assert visible_text(page, "#refund-rules-CNY") == "CN¥8,900.00"
        assert visible_text(page, "#expiring-30-CNY") == "CN¥4,000.00"
        assert visible_text(page, "#breakage-90-CNY") == "CN¥2,666.67"
        assert visible_text(page, "#liability-USD") == "$900.00"
        assert visible_text(page, "#running-out") == "1" and visible_text(page, "#overdue") == "1"
        assert "delta" in visible_text(page, "#running-out-table")
        assert re.search(r"Bolt \(bolt\)\s+CNY\s+40\s+medium", visible_text(page, "#risk"))
        # Bars drawn with height: the three CNY months with consumption, and the runway buckets in use.
        bars = page.eval("[...document.querySelectorAll('#chart-monthly-CNY rect.bar')]"
                         ".filter(r => r.getBoundingClientRect().height > 0).length")
        assert bars == 3
        assert page.eval("[...document.querySelectorAll('#chart-runway rect.bar')]"
                         ".filter(r => r.getBoundingClientRect().height > 0).length") == 4
        png = page.screenshot(tmp_path / "report.png")
        width, height = png_size(png)
        assert width >= 700 and height >= 1000 and len(png) > 20000
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
        assert visible_text(page, "#opening-CNY") == "CN¥10,000.00"
        assert visible_text(page, "#closing-CNY") == "CN¥4,000.00"
        assert visible_text(page, "#refundable-CNY") == "CN¥4,000.00"
        rows = visible_text(page, "table.entries")
        assert ("期初余额" in rows and rows.count("消费") == 3 and "-CN¥3,000.00" in rows
                and "期末余额" in rows)
        assert "2026年7月21日" in visible_text(page, "table.lots")  # dates for people
        assert "2026年4月1日" in visible_text(page, "#period")
        # CJK glyphs laid out with real width (a missing font would still have width; check it is not
        # tofu-narrow).
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


A4_CSS_PX = 794  # 210 mm at 96 px per inch: the width of an A4 page on screen


def _at_a4(page: object) -> None:
    page.send("Emulation.setDeviceMetricsOverride", width=A4_CSS_PX, height=1123,  # type: ignore[attr-defined]
              deviceScaleFactor=1, mobile=False)


def _overflowing(page: object) -> list[str]:
    """Tables (and cells) wider than the page body: what would be cut off on paper."""
    return page.eval(  # type: ignore[attr-defined, no-any-return]
        "(() => { const w = document.body.getBoundingClientRect().right + 1;"
        " return [...document.querySelectorAll('table, td, th')]"
        ".filter(e => e.getBoundingClientRect().right > w)"
        ".map(e => e.tagName + ':' + e.innerText.slice(0, 30)); })()"
    )


def test_statement_fits_a4_with_a_long_reference(browser: Browser, sqlite_book: Book, tmp_path: Path) -> None:
    """Issue 11.9: a long reference no longer squeezes the type column until 期初余额 stacks one character
    per line; the reference shows its system once; the customer's name comes first, its key second."""
    lg = sqlite_book.ledger
    lg.deposit("acme", "1", "CNY", "long-1", effective_at=d(2026, 4, 2),
               source=("zoho", "zoho:Prepaid_Payments:4876876000000123456789"), memo="x" * 80)
    st = StatementLoader(sqlite_book.engine, d(2026, 4, 1), d(2026, 7, 1), attributes=ATTRS).one("acme")
    html = tmp_path / "statement.html"
    html.write_text(statement_html(st, "zh", zone("Asia/Shanghai"), NOW), encoding="utf-8")
    page = browser.page(html.as_uri())
    try:
        _at_a4(page)
        line = page.eval(
            "parseFloat(getComputedStyle(document.querySelector('tr.opening td.label')).lineHeight)"
            " || 20")
        height = page.eval("document.querySelector('tr.opening td.label').getBoundingClientRect().height")
        assert height < 2 * line + 12, f"期初余额 wraps: {height}px for a {line}px line"
        assert _overflowing(page) == []
        rows = visible_text(page, "table.entries")
        assert "zoho:Prepaid_Payments:4876876000000123456789" in rows.replace("\n", "")
        assert "zoho:zoho:" not in rows.replace("\n", "")
        assert visible_text(page, "#customer-name") == "Acme 有限公司"
        assert visible_text(page, "#basis-CNY")  # the rule that decided the refundable amount is said
    finally:
        page.close()


def test_report_fits_a4_and_names_customers(browser: Browser, sqlite_book: Book, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    html.write_text(report_html(build_report(sqlite_book.engine, AS_OF, attributes=ATTRS)), encoding="utf-8")
    page = browser.page(html.as_uri())
    try:
        _at_a4(page)
        assert _overflowing(page) == []
        assert "Acme 有限公司 (acme)" in visible_text(page, "#late-payers")
        assert re.search(r"\d{1,2} [A-Z][a-z]{2} 20\d\d", visible_text(page, "h1"))  # a date for people
        assert "override the contract" in visible_text(page, "#refund-basis")
        assert visible_text(page, "#standing-overdue").isdigit()
    finally:
        page.close()
