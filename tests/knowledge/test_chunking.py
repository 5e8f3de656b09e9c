"""Chunking of extracted sections: exact offsets into `document_text`, headings and pages that
start chunks, size bounds, overlap on word boundaries, splitting of long paragraphs (at sentence
ends, at whitespace, hard inside one enormous word), parameter bounds and deterministic output.
Documents are sections made here and real files extracted at run time."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from fpdf import FPDF

from parley.knowledge.chunking import Chunk, chunk_sections, document_text
from parley.knowledge.extraction import MARKDOWN, PDF, Section, extract

WORDS = [
    "river", "stone", "lantern", "orchard", "meadow", "harbor", "willow", "copper",
    "ember", "falcon", "thistle", "quartz", "juniper", "saffron", "glacier", "canyon",
]  # fmt: skip


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 18))]
    return " ".join(words).capitalize() + rng.choice([".", "!", "?", '."'])


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


def mixed_sections(seed: int) -> list[Section]:
    """A document of headings, pages, short and long paragraphs, giant words and blank runs."""
    rng = random.Random(seed)
    sections: list[Section] = []
    heading: str | None = None
    page: int | None = None
    for _ in range(rng.randint(5, 40)):
        roll = rng.random()
        if roll < 0.15:
            heading = f"Heading {rng.randint(1, 99)}"
            sections.append(Section(heading, page, heading))
            continue
        if roll < 0.25:
            page = (page or 0) + 1
        if roll < 0.3:
            text = "x" * rng.randint(1, 5000)
        elif roll < 0.35:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(100, 800)))
        else:
            text = paragraph(rng, rng.choice([1, 2, 3, 10, 40]))
        sections.append(Section(text, page, heading))
    return sections


def assert_chunk_invariants(
    sections: list[Section], chunks: list[Chunk], target: int, overlap: int
) -> None:
    """What every chunking must satisfy, whatever the document."""
    text = document_text(sections)
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    spans = section_spans(sections)
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text
        assert chunk.text == chunk.text.strip()
        assert len(chunk.text) <= target * 1.5
        # A chunk lies within one run of page and heading, and says which; it may start with
        # the headings alone (titles) that came right before that run on its page.
        touched = [s for s, lo, hi in spans if lo < chunk.end and chunk.start < hi]
        own = [
            i for i, s in enumerate(touched) if (s.page, s.heading) == (chunk.page, chunk.heading)
        ]
        assert own, "a chunk names its run"
        assert own == list(range(own[0], len(touched)))
        for title in touched[: own[0]]:
            assert title.text == title.heading
            assert title.page == chunk.page
    for before, after in itertools.pairwise(chunks):
        assert after.start > before.start
        assert after.end > before.end
        if after.start < before.end:
            shared = text[after.start : before.end]
            assert len(shared) <= overlap
            assert (after.page, after.heading) == (before.page, before.heading)
            assert text[after.start - 1].isspace(), "an overlap starts at a word start"
    # Nothing visible is lost.
    covered = bytearray(len(text))
    for chunk in chunks:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))


def section_spans(sections: list[Section]) -> list[tuple[Section, int, int]]:
    spans = []
    offset = 0
    for section in sections:
        spans.append((section, offset, offset + len(section.text)))
        offset += len(section.text) + 2
    return spans


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize(("target", "overlap"), [(100, 0), (300, 120), (1200, 200), (5000, 2499)])
def test_invariants_hold_on_mixed_documents(seed: int, target: int, overlap: int) -> None:
    sections = mixed_sections(seed)

    chunks = chunk_sections(sections, target_chars=target, overlap_chars=overlap)

    assert_chunk_invariants(sections, chunks, target, overlap)


def test_a_title_right_before_a_sub_heading_joins_its_chunk() -> None:
    sections = [
        Section("Bicycle care", None, "Bicycle care"),
        Section("Chains", None, "Chains"),
        Section("Oil the chain every 300 kilometres.", None, "Chains"),
        Section("Tyres", None, "Tyres"),
        Section("Check the pressure weekly.", None, "Tyres"),
        Section("Appendix", None, "Appendix"),
    ]
    chunks = chunk_sections(sections)
    assert [(c.text, c.heading) for c in chunks] == [
        ("Bicycle care\n\nChains\n\nOil the chain every 300 kilometres.", "Chains"),
        ("Tyres\n\nCheck the pressure weekly.", "Tyres"),
        ("Appendix", "Appendix"),  # a heading at the very end stays: nothing follows it
    ]
    assert_chunk_invariants(sections, chunks, 1200, 200)


def test_headings_and_pages_start_chunks() -> None:
    sections = [
        Section("Intro", None, "Intro"),
        Section("Short intro text.", None, "Intro"),
        Section("Method", None, "Method"),
        Section("Short method text.", None, "Method"),
        Section("Same heading, next page.", 2, "Method"),
    ]

    chunks = chunk_sections(sections, target_chars=1000, overlap_chars=100)

    assert [(c.text, c.page, c.heading) for c in chunks] == [
        ("Intro\n\nShort intro text.", None, "Intro"),
        ("Method\n\nShort method text.", None, "Method"),
        ("Same heading, next page.", 2, "Method"),
    ]


def test_pdf_pages_become_chunks_with_their_page(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for number in range(1, 4):
        pdf.add_page()
        pdf.multi_cell(0, 10, f"Page {number} talks about topic number {number}.")
    path = tmp_path / "pages.pdf"
    pdf.output(str(path))
    sections = extract(path, PDF).sections

    chunks = chunk_sections(sections)

    assert [(c.page, f"topic number {c.page}" in c.text) for c in chunks] == [
        (1, True),
        (2, True),
        (3, True),
    ]
    assert_chunk_invariants(sections, chunks, 1200, 200)


def test_extracted_markdown_chunks_follow_its_headings(tmp_path: Path) -> None:
    rng = random.Random(11)
    path = tmp_path / "guide.md"
    code = "code line\n" * 80
    path.write_text(
        f"# Alpha\n\n{paragraph(rng, 30)}\n\n{paragraph(rng, 2)}\n\n"
        f"## Beta\n\n```\n{code}```\n\n- item\n- item two\n\n"
        f"### Gamma\n\n{paragraph(rng, 5)}\n",
        encoding="utf-8",
    )
    sections = extract(path, MARKDOWN).sections

    chunks = chunk_sections(sections, target_chars=400, overlap_chars=80)

    assert_chunk_invariants(sections, chunks, 400, 80)
    headings = [c.heading for c in chunks]
    assert headings == sorted(headings, key=["Alpha", "Beta", "Gamma"].index)
    assert {"Alpha", "Beta", "Gamma"} == set(headings)
    for heading in ("Alpha", "Beta", "Gamma"):
        assert next(c for c in chunks if c.heading == heading).text.startswith(heading)


def test_small_paragraphs_are_packed_whole() -> None:
    sections = [Section(f"Paragraph {n} has a few words.", None, None) for n in range(30)]

    chunks = chunk_sections(sections, target_chars=200, overlap_chars=0)

    assert len(chunks) > 1
    text = document_text(sections)
    boundaries = {0} | {offset for _, offset, _ in section_spans(sections)}
    ends = {hi for _, _, hi in section_spans(sections)}
    for chunk in chunks:
        assert chunk.start in boundaries
        assert chunk.end in ends
        assert len(chunk.text) <= 200
    assert "\n\n".join(c.text for c in chunks) == text


def test_long_paragraph_is_split_at_sentence_ends() -> None:
    rng = random.Random(3)
    sections = [Section(paragraph(rng, 60), None, None)]

    chunks = chunk_sections(sections, target_chars=300, overlap_chars=60)

    assert len(chunks) > 3
    assert all(c.text.endswith((".", "!", "?", '."')) for c in chunks)
    assert_chunk_invariants(sections, chunks, 300, 60)


def test_overlap_is_present_and_on_word_boundaries() -> None:
    rng = random.Random(5)
    sections = [Section(paragraph(rng, 80), None, "Only")]
    text = document_text(sections)

    chunks = chunk_sections(sections, target_chars=400, overlap_chars=150)

    assert len(chunks) > 3
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end, "consecutive chunks share text"
        assert 0 < before.end - after.start <= 150
        assert text[after.start - 1] == " "
        assert text[after.start] != " "


def test_no_overlap_across_headings_or_pages() -> None:
    rng = random.Random(8)
    sections = [
        Section(paragraph(rng, 20), 1, "A"),
        Section(paragraph(rng, 20), 2, "A"),
        Section(paragraph(rng, 20), 2, "B"),
    ]

    chunks = chunk_sections(sections, target_chars=300, overlap_chars=100)

    for before, after in itertools.pairwise(chunks):
        if (before.page, before.heading) != (after.page, after.heading):
            assert after.start >= before.end


def test_enormous_paragraph_without_punctuation_splits_at_whitespace() -> None:
    rng = random.Random(9)
    text = " ".join(rng.choice(WORDS) for _ in range(20_000))
    sections = [Section(text, None, None)]

    chunks = chunk_sections(sections, target_chars=1000, overlap_chars=200)

    assert len(chunks) > 100
    for chunk in chunks:
        assert chunk.start == 0 or text[chunk.start - 1] == " "
        assert chunk.end == len(text) or text[chunk.end] == " "
        assert len(chunk.text) <= 1500
    assert_chunk_invariants(sections, chunks, 1000, 200)


def test_word_longer_than_the_target_is_cut_hard() -> None:
    word = "".join(random.Random(2).choice("abcdefgh") for _ in range(10_000))
    sections = [Section(f"Before {word} after", None, None)]

    chunks = chunk_sections(sections, target_chars=500, overlap_chars=100)

    assert max(len(c.text) for c in chunks) <= 750
    assert "".join(c.text for c in chunks[1:-1]) in word
    assert_chunk_invariants(sections, chunks, 500, 100)


def test_whitespace_only_and_empty_input() -> None:
    assert chunk_sections([]) == []
    assert chunk_sections([Section("   ", None, None), Section("", 1, "H")]) == []
    sections = [Section("  padded text  ", None, None), Section("\n", None, "X")]

    chunks = chunk_sections(sections)

    assert [(c.text, c.start, c.end) for c in chunks] == [("padded text", 2, 13)]


def test_cjk_text_splits_at_full_stops() -> None:
    text = "这是一个句子。" * 200
    sections = [Section(text, None, None)]

    chunks = chunk_sections(sections, target_chars=100, overlap_chars=0)

    assert all(c.text.endswith("。") for c in chunks)
    assert_chunk_invariants(sections, chunks, 100, 0)


def test_output_is_deterministic() -> None:
    sections = mixed_sections(123)

    first = chunk_sections(sections, target_chars=700, overlap_chars=150)
    second = chunk_sections(list(sections), target_chars=700, overlap_chars=150)

    assert first == second


@pytest.mark.parametrize(
    ("target", "overlap"),
    [
        (99, 0),
        (20_001, 0),
        (1000, -1),
        (1000, 500),
        (1000, 1000),
        (True, 0),
        (1000.0, 0),
        (1000, 10.5),
        ("1000", 0),
    ],
)
def test_bad_parameters_raise_value_error(target: object, overlap: object) -> None:
    with pytest.raises(ValueError, match="must be an integer"):
        chunk_sections([Section("text", None, None)], target_chars=target, overlap_chars=overlap)  # type: ignore[arg-type]


def test_bounds_themselves_are_accepted() -> None:
    sections = [Section("word " * 10_000, None, None)]

    assert chunk_sections(sections, target_chars=100, overlap_chars=49)
    assert chunk_sections(sections, target_chars=20_000, overlap_chars=9_999)
