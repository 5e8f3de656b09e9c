"""The OpenAI-compatible API at `/v1`: `GET /v1/models`, `POST /v1/chat/completions` and
`POST /v1/embeddings` in exactly OpenAI's formats, passed through to OpenAI-compatible providers and
translated (through Pydantic AI) for the offline model, Anthropic and Gemini, metered against the
caller's budget."""
