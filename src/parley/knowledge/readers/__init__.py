"""The format readers behind `parley.knowledge.extraction.extract`, one module per use case.

Each module reads one kind of file into `Section`s: `pdf` (pypdf), `docx` (python-docx), `markdown`
(markdown-it), `html` (the standard library's parser) and `text` (plain text, CSV and JSON), with
what they share in `common`. `extract` imports the one it needs when it is called, so importing the
extraction module (which the API server does at start-up for `detect_media_type`) loads none of
these parsing libraries; this package's `__init__` must therefore import no reader itself.
"""
