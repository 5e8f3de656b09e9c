"""The OpenAI-compatible API at `/v1`: `GET /v1/models` and `POST /v1/chat/completions` in exactly
OpenAI's formats, passed through to OpenAI-compatible providers and translated (through Pydantic AI)
for the offline model, Anthropic and Gemini, metered against the caller's budget."""
