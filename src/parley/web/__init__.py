"""The web chat page at `/` (docs/web.md): static files served from the package, no build step."""
