"""The model catalog and the providers behind it: which models users may pick (seeded from the
configuration at start-up, edited by admins), how a catalog entry becomes a Pydantic AI model
(OpenAI-compatible servers, Anthropic, Gemini), and the offline model that needs no provider."""
