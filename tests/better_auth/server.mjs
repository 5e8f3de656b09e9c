// A real Better Auth server, for tests/accounts/test_better_auth.py: email and password sign-up,
// the JWT plugin (EdDSA keys, its JWKS at /api/auth/jwks, tokens at /api/auth/token), and an
// in-memory database. Listens on 127.0.0.1 only, on the port of argv[2] (or BETTER_AUTH_PORT),
// prints `listening <url>` once ready, and exits when stdin closes or on SIGTERM / SIGINT.
//
//   node tests/better_auth/server.mjs 4123

import http from "node:http";

import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins";

const port = Number(process.argv[2] ?? process.env.BETTER_AUTH_PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error("usage: node server.mjs <port> (or BETTER_AUTH_PORT=<port>)");
  process.exit(2);
}
const baseURL = `http://127.0.0.1:${port}`;

// Every model the adapter is asked for must be a table here: Better Auth's own four, and the
// JWT plugin's `jwks` (its key pairs, created on the first token or JWKS request).
const database = { user: [], session: [], account: [], verification: [], jwks: [] };

const auth = betterAuth({
  baseURL,
  secret: "parley-better-auth-interop-test-secret-0123456789",
  database: memoryAdapter(database),
  emailAndPassword: { enabled: true },
  plugins: [jwt()],
  telemetry: { enabled: false },
});

const server = http.createServer(toNodeHandler(auth));

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}

process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.on("error", stop);
process.stdin.resume();

server.listen(port, "127.0.0.1", () => {
  console.log(`listening ${baseURL}`);
});
