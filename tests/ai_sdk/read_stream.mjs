// Reads one Parley reply stream with the AI SDK's own parser and reader, as useChat does:
// parseJsonEventStream + uiMessageChunkSchema validate every chunk, readUIMessageStream builds the
// UI message. Prints {"chunks": [...], "message": {...}} as JSON; exits 1 on any invalid chunk.
//
// Usage: node read_stream.mjs <url> <method> <bearer token> [json body]
import { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } from "ai";

const [url, method, token, body] = process.argv.slice(2);
const response = await fetch(url, {
  method,
  headers: {
    authorization: `Bearer ${token}`,
    "content-type": "application/json",
  },
  body: method === "GET" ? undefined : body,
});
if (response.status !== 200) {
  console.error(`HTTP ${response.status}: ${await response.text()}`);
  process.exit(1);
}
if (response.headers.get("x-vercel-ai-ui-message-stream") !== "v1") {
  console.error("missing x-vercel-ai-ui-message-stream: v1");
  process.exit(1);
}
const chunks = [];
const chunkStream = parseJsonEventStream({
  stream: response.body,
  schema: uiMessageChunkSchema,
}).pipeThrough(
  new TransformStream({
    transform(result, controller) {
      if (!result.success) {
        throw new Error(`invalid chunk: ${result.error}`);
      }
      chunks.push(result.value);
      controller.enqueue(result.value);
    },
  }),
);
let message;
for await (const current of readUIMessageStream({
  stream: chunkStream,
  onError: (error) => {
    throw error;
  },
})) {
  message = current;
}
console.log(JSON.stringify({ chunks, message }));
