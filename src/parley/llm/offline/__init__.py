"""The offline model: a deterministic assistant that needs no network, no keys and no weights.

`model.py` is the Pydantic AI model; `planner.py` decides what it answers and which tools it calls;
`parsing.py` reads dates, titles and task references out of the user's words.
"""
