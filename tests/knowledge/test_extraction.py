"""Document extraction on real files made at run time: each format's text with its pages and
headings, media-type detection from magic bytes, names and declared types, and hostile files (zip
bombs, PDFs with too many pages, encrypted, truncated or image-only PDFs, floods of text or
attributes), each ending in its typed `ExtractionError` within bounded time and memory."""

from __future__ import annotations

import json
import pickle
import random
import time
import tracemalloc
import zipfile
from pathlib import Path

import docx
import pytest
from fpdf import FPDF
from PIL import Image
from pypdf import PdfWriter

from parley.knowledge.extraction import (
    CSV,
    DOCX,
    HTML,
    JSON,
    MARKDOWN,
    PDF,
    PLAIN,
    SUPPORTED_MEDIA_TYPES,
    Extracted,
    ExtractionError,
    ExtractionLimits,
    Section,
    detect_media_type,
    extract,
)

PAGE_SENTENCES = [
    "Aardvarks dig burrows at dawn.",
    "Beetles polish their shells at noon.",
    "Cormorants dry their wings at dusk.",
]


def write_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF with one page per string (fpdf2, core font)."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(path))
    return path


def write_raw_pdf(path: Path, objects: list[bytes]) -> Path:
    """A PDF written by hand: `objects` are numbered from 1, the first is the catalog."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


def write_shared_page_pdf(path: Path, *, kids: int, count: int) -> Path:
    """A PDF whose page tree lists one page object `kids` times and declares `/Count count`: a
    100,000-page PDF in a few hundred KB, built in milliseconds."""
    return write_raw_pdf(
        path,
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Count %d /Kids [" % count + b"3 0 R " * kids + b"] >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        ],
    )


def pdf_stream(data: bytes, entries: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n" % (len(data), entries) + data + b"\nendstream"


def encrypt_pdf(source: Path, target: Path, *, user_password: str) -> Path:
    writer = PdfWriter(clone_from=source)
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    with target.open("wb") as stream:
        writer.write(stream)
    return target


def error_of(
    path: Path, media_type: str, limits: ExtractionLimits | None = None
) -> ExtractionError:
    with pytest.raises(ExtractionError) as caught:
        extract(path, media_type, limits or ExtractionLimits())
    return caught.value


def texts(extracted: Extracted) -> list[str]:
    return [section.text for section in extracted.sections]


# --- formats -----------------------------------------------------------------------------------


def test_pdf_pages_each_carry_their_own_sentence(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "three.pdf", PAGE_SENTENCES)

    extracted = extract(path, PDF)

    assert extracted.pages == 3
    for number, sentence in enumerate(PAGE_SENTENCES, start=1):
        on_page = " ".join(s.text for s in extracted.sections if s.page == number)
        assert sentence in on_page
        assert all(other not in on_page for other in PAGE_SENTENCES if other != sentence)
    assert all(section.heading is None for section in extracted.sections)


def test_pdf_page_whose_text_cannot_be_extracted_is_skipped(tmp_path: Path) -> None:
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 300] /Contents %d 0 R"
    fonts = b" /Resources << /Font << /F1 3 0 R >> >> >>"
    path = write_raw_pdf(
        tmp_path / "one-bad-page.pdf",
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Count 3 /Kids [4 0 R 6 0 R 8 0 R] >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            page % 5 + fonts,
            pdf_stream(b"BT /F1 12 Tf 20 200 Td (First page text) Tj ET"),
            page % 7 + fonts,
            pdf_stream(b"not zlib data at all", b"/Filter /FlateDecode"),
            page % 9 + fonts,
            pdf_stream(b"BT /F1 12 Tf 20 200 Td (Third page text) Tj ET"),
        ],
    )

    extracted = extract(path, PDF)

    assert extracted.pages == 3
    assert [(s.text, s.page) for s in extracted.sections] == [
        ("First page text", 1),
        ("Third page text", 3),
    ]


def test_pdf_with_an_empty_user_password_is_read(tmp_path: Path) -> None:
    plain = write_pdf(tmp_path / "plain.pdf", PAGE_SENTENCES[:1])
    locked = encrypt_pdf(plain, tmp_path / "owner-only.pdf", user_password="")

    extracted = extract(locked, PDF)

    assert PAGE_SENTENCES[0] in texts(extracted)[0]


def test_docx_headings_paragraphs_and_table_rows(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_heading("Annual report", level=0)
    document.add_paragraph("Before   any\theading? No: under the title.")
    document.add_heading("Introduction", level=1)
    document.add_paragraph("Otters hold hands while sleeping.")
    table = document.add_table(rows=2, cols=3)
    for row_index, row in enumerate(table.rows):
        for column_index, cell in enumerate(row.cells):
            cell.text = f"r{row_index}c{column_index}"
    table.cell(1, 0).merge(table.cell(1, 1)).text = "merged"
    document.add_heading("Details", level=2)
    document.add_paragraph("Closing words.")
    path = tmp_path / "report.docx"
    document.save(str(path))

    extracted = extract(path, DOCX)

    assert extracted.pages is None
    assert extracted.sections == [
        Section("Annual report", None, "Annual report"),
        Section("Before any heading? No: under the title.", None, "Annual report"),
        Section("Introduction", None, "Introduction"),
        Section("Otters hold hands while sleeping.", None, "Introduction"),
        Section("r0c0 | r0c1 | r0c2\nmerged | r1c2", None, "Introduction"),
        Section("Details", None, "Details"),
        Section("Closing words.", None, "Details"),
    ]


def test_markdown_nested_headings_code_lists_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text(
        "Preface without a heading.\n\n"
        "# Guide\n\nIntro with *emphasis*, a [link](https://example.com) and `inline code`.\n\n"
        "## Install\n\n- first step\n- second step\n  1. nested step\n\n"
        "```python\ndef answer():\n    return 42\n```\n\n"
        "| tool | use |\n|---|---|\n| uv | install |\n|  |  |\n| | ruff |\n\n"
        "### Deep ![logo](logo.png)\n\nLast words.\n\n"
        "# Another top\n\nAfter.\n",
        encoding="utf-8",
    )

    extracted = extract(path, MARKDOWN)

    assert extracted.sections == [
        Section("Preface without a heading.", None, None),
        Section("Guide", None, "Guide"),
        Section("Intro with emphasis, a link and inline code.", None, "Guide"),
        Section("Install", None, "Install"),
        Section("- first step\n- second step\n1. nested step", None, "Install"),
        Section("def answer():\nreturn 42", None, "Install"),
        Section("tool | use\nuv | install\nruff", None, "Install"),
        Section("Deep logo", None, "Deep logo"),
        Section("Last words.", None, "Deep logo"),
        Section("Another top", None, "Another top"),
        Section("After.", None, "Another top"),
    ]


def test_html_drops_scripts_styles_head_and_nav(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<!doctype html><html><head><title>Tab title</title><style>p { color: red }</style>"
        "<script>var secret = 'script text';</script></head><body>"
        "<nav><a href='/'>Home menu</a></nav>"
        "<h1>Main   title</h1><p>First &amp; foremost<br>second line</p>"
        "<script>document.write('more script')</script>"
        "<div>Block with <b>bold</b> words</div>"
        "<table><tr><th>Name</th><th>Age</th></tr><tr><td>Ada</td><td>36</td></tr>"
        "<tr><td> </td><td></td></tr><tr><td></td><td>Grace</td><td> </td><td>45</td></tr></table>"
        "<h2>Lists</h2><ul><li>one</li><li>two</li></ul>"
        "<pre>code   line\n  indented</pre><noscript>enable js</noscript></body></html>",
        encoding="utf-8",
    )

    extracted = extract(path, HTML)

    assert extracted.sections == [
        Section("Main title", None, "Main title"),
        Section("First & foremost\nsecond line", None, "Main title"),
        Section("Block with bold words", None, "Main title"),
        Section("Name | Age\nAda | 36\nGrace | 45", None, "Main title"),
        Section("Lists", None, "Lists"),
        Section("one", None, "Lists"),
        Section("two", None, "Lists"),
        Section("code line\nindented", None, "Lists"),
    ]


def test_html_with_an_unclosed_head_still_reads_the_body(tmp_path: Path) -> None:
    path = tmp_path / "sloppy.html"
    path.write_text("<html><head><title>x</title><body><p>Body text</p>", encoding="utf-8")

    assert texts(extract(path, HTML)) == ["Body text"]


@pytest.mark.parametrize(
    ("encoding", "prefix"),
    [("utf-8", b""), ("utf-16", b""), ("latin-1", b""), ("utf-8", b"\xef\xbb\xbf")],
)
def test_plain_text_in_each_encoding(tmp_path: Path, encoding: str, prefix: bytes) -> None:
    content = (
        "Café crème\tand   naïve façade.\r\nSame paragraph.\n\n\n  Second paragraph: déjà vu.\n"
    )
    path = tmp_path / "notes.txt"
    # Python's utf-16 codec writes a BOM, as the format requires.
    path.write_bytes(prefix + content.encode(encoding))

    extracted = extract(path, PLAIN)

    assert texts(extracted) == [
        "Café crème and naïve façade.\nSame paragraph.",
        "Second paragraph: déjà vu.",
    ]
    assert extracted.pages is None


def test_windows_1252_punctuation_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "quotes.txt"
    quoted = "\u201cQuoted\u201d \u2013 it\u2019s fine"
    path.write_bytes(quoted.encode("cp1252"))

    assert texts(extract(path, PLAIN)) == [quoted]


def test_csv_is_kept_as_text_in_blocks_of_lines(tmp_path: Path) -> None:
    rows = ["id,name,city"] + [f"{n},person number {n},city {n % 7}" for n in range(200)]
    path = tmp_path / "people.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")

    extracted = extract(path, CSV)

    assert len(extracted.sections) > 1
    assert "\n".join(texts(extracted)).split("\n") == rows
    assert all(len(text) <= 1100 for text in texts(extracted))


def test_json_is_kept_as_text(tmp_path: Path) -> None:
    payload = {"title": "Field notes", "entries": [{"bird": "wren", "count": 3}]}
    path = tmp_path / "notes.json"
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")

    extracted = extract(path, JSON)

    joined = "\n".join(texts(extracted))
    assert '"title": "Field notes",' in joined
    assert '"bird": "wren",' in joined


def test_control_characters_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "controls.txt"
    path.write_bytes(b"bell\x07 and\x00 nul\x1b[0m end")

    assert texts(extract(path, PLAIN)) == ["bell and nul[0m end"]


# --- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "filename", "declared", "expected"),
    [
        (b"%PDF-1.7\n...", "report.pdf", "application/pdf", PDF),
        (b"%PDF-1.7\n...", "renamed.txt", "text/plain", PDF),
        (b"PK\x03\x04rest", "letter.docx", None, DOCX),
        (b"PK\x03\x04rest", "upload.bin", DOCX, DOCX),
        (b"PK\x03\x04rest", "archive.zip", "application/zip", None),
        (b"plain words", "fake.pdf", None, None),
        (b"plain words", "upload", "application/pdf", None),
        (b"plain words", "fake.docx", None, None),
        (b"# Title\n", "notes.md", None, MARKDOWN),
        (b"# Title\n", "notes.markdown", "text/plain", MARKDOWN),
        (b"# Title\n", "upload", "text/markdown; charset=utf-8", MARKDOWN),
        (b"<p>x</p>", "page.htm", None, HTML),
        (b"  <!DOCTYPE html><html>", "page.txt", "text/plain", HTML),
        (b"<html lang=en>", "upload", None, HTML),
        (b"a,b\n1,2\n", "data.csv", None, CSV),
        (b'{"a": 1}', "data.json", None, JSON),
        (b'{"a": 1}', "upload", "application/json", JSON),
        (b"just text", "notes.txt", None, PLAIN),
        (b"just text", "no-extension", None, PLAIN),
        ("caf\u00e9".encode("latin-1"), "latin.txt", None, PLAIN),
        ("UTF-16 text".encode("utf-16"), "wide.txt", None, PLAIN),
        (b"", "empty.txt", None, PLAIN),
        (b"text with a NUL\x00 byte", "sneaky.txt", None, None),
        ("utf-8 cut mid-character: é".encode()[:-1], "cut.txt", None, PLAIN),
    ],
)
def test_detect_media_type(
    head: bytes, filename: str, declared: str | None, expected: str | None
) -> None:
    assert detect_media_type(head, filename, declared) == expected


def test_random_binary_named_txt_is_refused() -> None:
    noise = random.Random(7).randbytes(8192)
    assert detect_media_type(noise, "notes.txt", "text/plain") is None


def test_binary_without_nul_but_full_of_controls_is_refused() -> None:
    noise = bytes(random.Random(3).choice([*range(1, 9), *range(14, 32)]) for _ in range(400))
    assert detect_media_type(b"abc" + noise, "log.txt", None) is None


def test_detection_looks_at_the_real_first_bytes_of_files(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "real.pdf", ["hello"])
    renamed = tmp_path / "renamed.txt"
    renamed.write_bytes(pdf.read_bytes())
    text_as_pdf = tmp_path / "text.pdf"
    text_as_pdf.write_text("I am only text", encoding="utf-8")

    assert detect_media_type(renamed.read_bytes()[:8192], renamed.name, "text/plain") == PDF
    assert detect_media_type(text_as_pdf.read_bytes()[:8192], text_as_pdf.name, PDF) is None


def test_supported_media_types_are_the_constants() -> None:
    assert {PDF, DOCX, MARKDOWN, HTML, PLAIN, CSV, JSON} == SUPPORTED_MEDIA_TYPES


# --- hostile and broken files ------------------------------------------------------------------


def test_docx_zip_bomb_fails_fast_without_unpacking(tmp_path: Path) -> None:
    path = tmp_path / "bomb.docx"
    block = bytes(1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            for _ in range(300):
                member.write(block)
    assert path.stat().st_size < 2 * 1024 * 1024

    tracemalloc.start()
    started = time.perf_counter()
    try:
        error = error_of(path, DOCX)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    assert error.code == "zip_bomb"
    assert time.perf_counter() - started < 2
    assert peak < 20 * 1024 * 1024


def test_docx_member_compressed_too_well_is_a_zip_bomb(tmp_path: Path) -> None:
    path = tmp_path / "dense.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", bytes(5 * 1024 * 1024))

    assert error_of(path, DOCX).code == "zip_bomb"


def test_docx_over_the_unpacked_limit_is_a_zip_bomb(tmp_path: Path) -> None:
    path = tmp_path / "normal.docx"
    document = docx.Document()
    document.add_paragraph("Small but over a tiny limit.")
    document.save(str(path))

    error = error_of(path, DOCX, ExtractionLimits(max_unpacked_bytes=1000))

    assert error.code == "zip_bomb"


def test_zip_that_is_not_a_docx_is_a_type_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "holiday.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("photos/readme.txt", "not a word document")
    head = path.read_bytes()[:8192]

    assert detect_media_type(head, path.name, None) == DOCX
    assert error_of(path, DOCX).code == "type_mismatch"


def test_damaged_zip_named_docx_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "damaged.docx"
    path.write_bytes(b"PK\x03\x04" + bytes(random.Random(1).randbytes(2000)))

    assert error_of(path, DOCX).code == "unreadable"


def test_pdf_over_max_pages_fails(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "twenty.pdf", [f"Page {n}" for n in range(20)])

    assert error_of(path, PDF, ExtractionLimits(max_pages=5)).code == "too_many_pages"
    assert extract(path, PDF, ExtractionLimits(max_pages=20)).pages == 20


def test_hundred_thousand_page_pdf_fails_in_bounded_time_and_memory(tmp_path: Path) -> None:
    path = write_shared_page_pdf(tmp_path / "huge.pdf", kids=100_000, count=100_000)

    started = time.perf_counter()
    assert error_of(path, PDF).code == "too_many_pages"
    # Parsing the 100,000-entry /Kids array is the cost; no page object is built.
    assert time.perf_counter() - started < 10
    tracemalloc.start()
    try:
        assert error_of(path, PDF).code == "too_many_pages"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 1024 * 1024


def test_pdf_whose_count_lies_is_still_counted(tmp_path: Path) -> None:
    small = write_shared_page_pdf(tmp_path / "liar.pdf", kids=50, count=1)
    huge = write_shared_page_pdf(tmp_path / "big-liar.pdf", kids=100_000, count=1)

    assert error_of(small, PDF, ExtractionLimits(max_pages=5)).code == "too_many_pages"
    started = time.perf_counter()
    assert error_of(huge, PDF).code == "too_many_pages"
    assert time.perf_counter() - started < 10


def test_truncated_pdf_is_unreadable(tmp_path: Path) -> None:
    data = write_pdf(tmp_path / "whole.pdf", PAGE_SENTENCES).read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(data[: len(data) // 2])

    assert error_of(path, PDF).code == "unreadable"


def test_corrupt_pdf_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pdf"
    path.write_bytes(b"%PDF-1.7\n" + random.Random(5).randbytes(4000))

    assert error_of(path, PDF).code == "unreadable"


def test_pdf_with_a_real_password_is_encrypted(tmp_path: Path) -> None:
    plain = write_pdf(tmp_path / "plain.pdf", PAGE_SENTENCES)
    locked = encrypt_pdf(plain, tmp_path / "locked.pdf", user_password="correct horse")

    assert error_of(locked, PDF).code == "encrypted"


def test_pdf_of_only_images_has_no_text(tmp_path: Path) -> None:
    picture = tmp_path / "scan.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(picture)
    pdf = FPDF()
    pdf.add_page()
    pdf.image(str(picture), x=10, y=10, w=100)
    path = tmp_path / "scanned.pdf"
    pdf.output(str(path))

    error = error_of(path, PDF)

    assert error.code == "no_text"


def test_text_over_max_chars_fails(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("word " * 5000, encoding="utf-8")
    limits = ExtractionLimits(max_chars=10_000)

    assert error_of(path, PLAIN, limits).code == "too_much_text"
    assert len(texts(extract(path, PLAIN, ExtractionLimits(max_chars=30_000)))[0]) == 24_999


def test_max_chars_stops_reading_early_on_one_enormous_line(tmp_path: Path) -> None:
    path = tmp_path / "one-line.txt"
    with path.open("w", encoding="utf-8") as stream:
        for _ in range(24):
            stream.write("x" * (1024 * 1024))

    tracemalloc.start()
    try:
        error = error_of(path, PLAIN, ExtractionLimits(max_chars=1_000_000))
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    assert error.code == "too_much_text"
    assert peak < 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("media_type", "suffix", "unit"),
    [
        (MARKDOWN, ".md", "Some words here.\n\n"),
        (HTML, ".html", "<p>Some words here.</p>"),
        (CSV, ".csv", "a,b,c,d,e\n"),
        (PDF, ".pdf", None),
        (DOCX, ".docx", None),
    ],
)
def test_too_much_text_in_every_format(
    tmp_path: Path, media_type: str, suffix: str, unit: str | None
) -> None:
    path = tmp_path / f"long{suffix}"
    if media_type == PDF:
        write_pdf(path, ["Some words here. " * 40] * 3)
    elif media_type == DOCX:
        document = docx.Document()
        for _ in range(200):
            document.add_paragraph("Some words here.")
        document.save(str(path))
    else:
        assert unit is not None
        path.write_text(unit * 2000, encoding="utf-8")

    assert error_of(path, media_type, ExtractionLimits(max_chars=1000)).code == "too_much_text"


def test_html_attribute_flood_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "flood.html"
    path.write_text("<p>hi</p><a " + "b=c " * 2_000_000 + ">x</a>", encoding="utf-8")

    started = time.perf_counter()
    error = error_of(path, HTML)

    assert error.code == "unreadable"
    assert time.perf_counter() - started < 5


def test_long_data_uri_attribute_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "inline-image.html"
    image = "A" * 3_000_000
    path.write_text(f'<p>before</p><img src="data:image/png;base64,{image}"><p>after</p>')

    assert texts(extract(path, HTML)) == ["before", "after"]


def test_unterminated_html_comment_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "comment.html"
    path.write_text("<p>hi</p><!--" + "x" * 10_000_000, encoding="utf-8")

    started = time.perf_counter()
    # Python versions differ: newer ones end the comment with the file, older ones read its
    # text as data (too much of it here). Either way the answer is quick and typed.
    try:
        outcome: object = texts(extract(path, HTML))
    except ExtractionError as error:
        outcome = error.code
    assert outcome in (["hi"], "too_much_text")
    assert time.perf_counter() - started < 5


def test_deeply_nested_markdown_does_not_recurse(tmp_path: Path) -> None:
    path = tmp_path / "deep.md"
    path.write_text(">" * 50_000 + " deep\n\n" + "[" * 50_000 + "\n\nend\n", encoding="utf-8")

    assert texts(extract(path, MARKDOWN))[-1] == "end"


def test_markdown_far_past_the_limit_fails_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "markup.md"
    path.write_text("*" * 50_000, encoding="utf-8")

    assert error_of(path, MARKDOWN, ExtractionLimits(max_chars=1000)).code == "too_much_text"


@pytest.mark.parametrize("media_type", [PLAIN, MARKDOWN, HTML, CSV, JSON])
def test_empty_or_blank_text_files_have_no_text(tmp_path: Path, media_type: str) -> None:
    path = tmp_path / "blank"
    path.write_text(" \n\t\n  <p> </p>" if media_type == HTML else "  \n\n\t ", encoding="utf-8")

    assert error_of(path, media_type).code == "no_text"


def test_pdf_media_type_on_a_text_file_is_a_type_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("only text", encoding="utf-8")

    assert error_of(path, PDF).code == "type_mismatch"
    assert error_of(path, DOCX).code == "type_mismatch"


def test_unsupported_media_type_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n")

    assert error_of(path, "image/png").code == "unsupported_media_type"
    assert error_of(tmp_path / "missing.txt", PLAIN).code == "unreadable"


# --- the error and the limits ------------------------------------------------------------------


def test_extraction_error_is_typed_and_pickles() -> None:
    error = ExtractionError("no_text", "The file contains no text.")

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, made just above

    assert (copy.code, copy.message, str(copy)) == ("no_text", error.message, error.message)
    # The ingestion job adds its own codes; nonsense is refused.
    assert ExtractionError("timeout", "Too slow.").code == "timeout"
    for bad in ("", "Not Snake", "x" * 65, "drop table;"):
        with pytest.raises(ValueError, match="snake_case"):
            ExtractionError(bad, "bad code")


@pytest.mark.parametrize(
    "changes",
    [
        {"max_pages": 0},
        {"max_pages": True},
        {"max_chars": -1},
        {"max_chars": 2.5},
        {"max_unpacked_bytes": 0},
        {"max_compression_ratio": 0.5},
        {"max_compression_ratio": float("nan")},
        {"max_compression_ratio": float("inf")},
    ],
)
def test_limits_out_of_bounds_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        ExtractionLimits(**changes)  # type: ignore[arg-type]
