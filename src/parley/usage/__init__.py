"""Usage: a record of the tokens and cost of every chat reply and `/v1` call, the reports over
them (`GET /api/usage`, `GET /api/admin/usage`), and monthly budgets enforced by reservations."""
