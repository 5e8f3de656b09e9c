"""Each provider's SDK and Pydantic AI model, one module a provider (`openai`, `anthropic`,
`gemini`), each imported only when a model of that provider is first built (see `parley.engines`):
together they take seconds to import, which a server that uses one of them (or only the offline
model) need not pay. Each module has `provider(config, settings, http_client, timeout)` and
`model(entry, provider)`."""
