// Talking to Parley's API: the session (access and refresh tokens in localStorage), JSON requests
// in the envelope, the refresh on a 401 (once, shared by concurrent requests and by tabs), and the
// server-sent event streams of replies, read with fetch (EventSource can neither POST nor send an
// Authorization header).

const STORAGE_KEY = "parley.session";

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {Array<{field: string, message: string}>} [details]
   */
  constructor(status, code, message, details = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

/** The signed-in session: `{tokens: {access_token, refresh_token, ...}, user}` or null. */
class Session extends EventTarget {
  constructor() {
    super();
    this.value = readStored();
    // Another tab signed in, refreshed or signed out.
    window.addEventListener("storage", (event) => {
      if (event.key !== STORAGE_KEY) return;
      const before = this.value;
      this.value = readStored();
      if (before && !this.value) this.dispatchEvent(new Event("signed-out"));
      else if (before && this.value && before.user?.id !== this.value.user?.id) {
        location.reload(); // someone else signed in, in another tab: show their page
      }
    });
  }

  get tokens() {
    return this.value?.tokens ?? null;
  }

  get user() {
    return this.value?.user ?? null;
  }

  /** Keep new tokens and/or user. */
  save({ tokens, user }) {
    this.value = { tokens: tokens ?? this.tokens, user: user ?? this.user };
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(this.value));
    } catch {
      // Storage full or disabled: the session lives as long as the page.
    }
  }

  clear() {
    this.value = null;
    try {
      localStorage.removeItem(STORAGE_KEY);
    } catch {
      // nothing stored
    }
  }
}

function readStored() {
  try {
    const value = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
    return value && value.tokens && typeof value.tokens.access_token === "string" ? value : null;
  } catch {
    return null;
  }
}

export const session = new Session();

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON
  }
  const error = body && body.error;
  if (error && typeof error.code === "string") {
    return new ApiError(response.status, error.code, String(error.message || error.code), error.details);
  }
  return new ApiError(response.status, "http_error", `The server answered ${response.status}.`);
}

let refreshing = null;

/**
 * Trade the refresh token for new tokens, after `failedToken` (an access token) was refused; true
 * when there are new tokens to try. One refresh at a time, across tabs where the browser can lock.
 */
export function refreshTokens(failedToken) {
  if (!refreshing) {
    const run = async () => {
      const stored = readStored();
      if (stored && stored.tokens.access_token !== failedToken) {
        session.value = stored; // refreshed already (by another request or tab)
        return true;
      }
      const mine = session.tokens;
      if (!mine?.refresh_token) return false;
      const response = await fetch("/api/auth/refresh", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: mine.refresh_token }),
      });
      if (!response.ok) return false;
      const { data } = await response.json();
      session.save({ tokens: data.tokens });
      return true;
    };
    const locked = navigator.locks ? navigator.locks.request("parley-refresh", run) : run();
    refreshing = locked.catch(() => false).finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/**
 * Send a request with the access token, refreshing it once on a 401.
 * @returns {Promise<Response>} a response with a 2xx status (others are thrown as ApiError)
 */
async function send(path, { method = "GET", body, form, headers = {}, signal, auth = true } = {}) {
  let used = null;
  const attempt = () => {
    const allHeaders = { Accept: "application/json", ...headers };
    if (body !== undefined) allHeaders["Content-Type"] = "application/json";
    used = auth && session.tokens ? session.tokens.access_token : null;
    if (used) allHeaders.Authorization = `Bearer ${used}`;
    return fetch(path, {
      method,
      headers: allHeaders,
      // A FormData body sets its own multipart Content-Type (with the boundary).
      body: form !== undefined ? form : body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  };
  let response = await attempt();
  if (response.status === 401 && used) {
    if (await refreshTokens(used)) response = await attempt();
    if (response.status === 401) {
      session.clear();
      session.dispatchEvent(new Event("signed-out"));
    }
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

/**
 * A JSON request: the envelope's `data`, or null for a 204.
 * @returns {Promise<any>}
 */
export async function api(path, options = {}) {
  const response = await send(path, options);
  if (response.status === 204) return null;
  const payload = await response.json();
  return payload.data;
}

/**
 * Upload a file (multipart, field `file`, plus other form fields): the envelope's `data`.
 * @param {string} path
 * @param {File} file
 * @param {Record<string, string>} [fields]
 */
export async function uploadFile(path, file, fields = {}, { signal } = {}) {
  const form = new FormData();
  form.append("file", file, file.name);
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  // FormData is re-read on a retry after a refresh, so the same object can be sent twice.
  const response = await send(path, { method: "POST", form, signal });
  const payload = await response.json();
  return payload.data;
}

/**
 * Save what `path` answers as a file on the user's disk (a download with the Authorization
 * header, which a plain link cannot send): the name comes from Content-Disposition.
 */
export async function downloadFile(path, fallbackName = "download") {
  const response = await send(path, { headers: { Accept: "*/*" } });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filenameFrom(response.headers.get("Content-Disposition")) || fallbackName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** The filename of a Content-Disposition header (RFC 6266: `filename*` first). */
export function filenameFrom(header) {
  if (!header) return "";
  const extended = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(header);
  if (extended) {
    try {
      return decodeURIComponent(extended[1].trim());
    } catch {
      // fall back to the plain name
    }
  }
  const plain = /filename\s*=\s*"([^"]*)"/i.exec(header) || /filename\s*=\s*([^;]+)/i.exec(header);
  return plain ? plain[1].trim() : "";
}

/**
 * Open a reply's event stream (POST a message or a regenerate, or GET a resume).
 * @returns {Promise<Response|null>} the streaming response, or null when the server answered 204
 */
export async function openStream(path, options = {}) {
  const response = await send(path, {
    ...options,
    headers: { Accept: "text/event-stream", ...(options.headers || {}) },
  });
  return response.status === 204 ? null : response;
}

/**
 * The events of a server-sent event stream: `{id, data}` objects, `data` as text.
 * @param {Response} response
 */
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value ?? new Uint8Array(), { stream: !done });
      buffer = buffer.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parseEvent(block);
        if (event) yield event;
      }
      if (done) break;
    }
    const last = parseEvent(buffer);
    if (last) yield last;
  } finally {
    reader.releaseLock();
  }
}

function parseEvent(block) {
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { id, data: data.join("\n") } : null;
}

/** A random key for Idempotency-Key: a retried send never starts a second reply. */
export function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
