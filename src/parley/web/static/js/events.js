// The live feed: the signed-in user's events (`GET /api/events`, server-sent events whose data is
// a CloudEvent), so that a change made by the assistant, an MCP client or another tab shows at once.
//
// EventSource cannot send an Authorization header, so the feed is read with fetch (api.js's
// `openStream`: the bearer token, refreshed once on a 401) and parsed here as the SSE format says
// (fields, comments, multi-line data, CR/LF/CRLF line ends, `retry:`). The last event id is kept
// and sent as `Last-Event-ID` when the connection is made again after a drop, so nothing is missed;
// reconnects wait `retry` milliseconds, doubling after failures (capped), and happen at once when
// the browser comes back online or the tab becomes visible. One connection per tab, for one user:
// signing out stops it, and a feed started for another user never hands its events to anyone else.
//
// Parts of the page subscribe with `onEvent(type, handler)`: an exact type
// (`parley.task.created.v1`), a prefix ending in "." or "*" (`parley.task.`), or "*" for all. An
// event delivered twice (same id, e.g. after a reconnect) is handed over once.

import { ApiError, openStream } from "./api.js";

const FEED_PATH = "/api/events";
const DEFAULT_RETRY_MS = 2000;
const MAX_RETRY_MS = 30_000;
// The server sends a comment after 15 s of silence: nothing at all for this long is a dead link.
const STALL_MS = 45_000;
// Ids of the events handed over lately (duplicates come soon after the original, if at all).
const SEEN_LIMIT = 1000;

const subscribers = new Set();
const resyncHandlers = new Set();

/**
 * Call `handler(event)` for each event whose type matches `pattern`; returns a function that
 * unsubscribes.
 * @param {string} pattern an exact type, a prefix ending in "." or "*", or "*"
 * @param {(event: {id: string, type: string, subject?: string, time?: string, data: any}) => unknown} handler
 */
export function onEvent(pattern, handler) {
  const entry = { pattern, handler };
  subscribers.add(entry);
  return () => subscribers.delete(entry);
}

/**
 * Call `handler()` when events may have been missed (the feed started again from "now" after it
 * had been following: the last event id was unknown to the server, or none had come before the
 * connection dropped): what is shown should be read again.
 */
export function onResync(handler) {
  resyncHandlers.add(handler);
  return () => resyncHandlers.delete(handler);
}

/**
 * Whether `resource` (an event's data, or an item of a read) is an older version of `than`, the
 * one shown: events and reads can arrive out of order, and a late one must not undo a newer
 * change. Without a readable `updated_at` on both, neither is older.
 */
export function isOlder(resource, than) {
  const a = Date.parse(resource.updated_at);
  const b = Date.parse(than.updated_at);
  return Number.isFinite(a) && Number.isFinite(b) && a < b;
}

function matches(pattern, type) {
  if (pattern === "*") return true;
  if (pattern.endsWith("*")) return type.startsWith(pattern.slice(0, -1));
  if (pattern.endsWith(".")) return type.startsWith(pattern);
  return type === pattern;
}

function run(handler, ...args) {
  try {
    const result = handler(...args);
    if (result && typeof result.then === "function") result.then(null, (error) => reportError(error));
  } catch (error) {
    reportError(error); // one part's failure must not keep the event from the others
  }
}

function dispatch(event) {
  for (const { pattern, handler } of [...subscribers]) {
    if (matches(pattern, event.type)) run(handler, event);
  }
}

// ---- the SSE format ---------------------------------------------------------------------------

/**
 * A parser of `text/event-stream` (the HTML standard's "interpreting an event stream"), fed text
 * as it arrives: `push(text)` answers the events completed by it, as `{id, type, data}`.
 * `lastEventId` is the id in force after the last event dispatched, `retry` the reconnection
 * time last asked for (or null).
 */
export class SseParser {
  constructor() {
    this.pending = "";
    this.data = [];
    this.type = "";
    this.idBuffer = "";
    this.lastEventId = "";
    this.retry = null;
    this.started = false;
    this.skipNewline = false;
  }

  /** @param {string} text */
  push(text) {
    const events = [];
    if (!text) return events;
    let start = 0;
    if (!this.started) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) start = 1; // a byte order mark is ignored
    }
    if (this.skipNewline) {
      // The previous chunk ended with CR: an LF first here is the same line end (CRLF).
      this.skipNewline = false;
      if (text.charCodeAt(start) === 10) start += 1;
    }
    for (let index = start; index < text.length; index += 1) {
      const code = text.charCodeAt(index);
      if (code !== 10 && code !== 13) continue;
      const line = this.pending + text.slice(start, index);
      this.pending = "";
      if (code === 13) {
        if (index + 1 === text.length) this.skipNewline = true;
        else if (text.charCodeAt(index + 1) === 10) index += 1;
      }
      start = index + 1;
      this.line(line, events);
    }
    this.pending += text.slice(start);
    return events;
  }

  line(line, events) {
    if (line === "") {
      this.dispatchEvent(events);
      return;
    }
    if (line.startsWith(":")) return; // a comment (`: connected`, `: keep-alive`)
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        break;
      case "event":
        this.type = value;
        break;
      case "id":
        if (!value.includes("\0")) this.idBuffer = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  dispatchEvent(events) {
    this.lastEventId = this.idBuffer;
    const type = this.type || "message";
    const data = this.data;
    this.type = "";
    this.data = [];
    if (!data.length) return;
    events.push({ id: this.lastEventId, type, data: data.join("\n") });
  }
}

// ---- following the feed -----------------------------------------------------------------------

let feed = null;

function setStatus(status) {
  if (document.body) document.body.dataset.feed = status;
}

class Feed {
  constructor(userId) {
    this.userId = userId;
    this.lastEventId = "";
    this.retryMs = DEFAULT_RETRY_MS;
    this.failures = 0;
    this.stopped = false;
    this.controller = null;
    this.connected = false;
    this.followedOnce = false;
    this.waking = null;
    this.stallTimer = 0;
    this.seen = new Set();
    this.ready = new Promise((resolve) => {
      this.markReady = resolve;
    });
    this.listeners = {
      online: () => this.wake(),
      offline: () => this.drop(),
      visibilitychange: () => {
        if (document.visibilityState === "visible" && !this.connected) this.wake();
      },
    };
  }

  start() {
    window.addEventListener("online", this.listeners.online);
    window.addEventListener("offline", this.listeners.offline);
    document.addEventListener("visibilitychange", this.listeners.visibilitychange);
    this.loop();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.listeners.online);
    window.removeEventListener("offline", this.listeners.offline);
    document.removeEventListener("visibilitychange", this.listeners.visibilitychange);
    this.drop();
    this.wake();
    this.markReady(false);
    setStatus("closed");
  }

  /** Abandon the connection (offline, stalled, stopped); the loop decides what comes next. */
  drop() {
    this.controller?.abort();
  }

  /** End a pause before its time (back online, tab visible again, stopped). */
  wake() {
    const waking = this.waking;
    this.waking = null;
    waking?.();
  }

  pause(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waking = null;
        resolve();
      }, ms);
      this.waking = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  delay() {
    const base = Math.max(this.retryMs, 250);
    // After a drop or a first failure: `retry`; then twice as long after each failure, capped.
    const backoff = Math.min(MAX_RETRY_MS, base * 2 ** Math.min(Math.max(this.failures - 1, 0), 8));
    // A little jitter, so that tabs dropped together do not all come back in the same instant.
    return Math.round(backoff * (0.9 + Math.random() * 0.2));
  }

  async loop() {
    while (!this.stopped) {
      if (navigator.onLine === false) {
        setStatus("offline");
        this.markReady(false);
        await this.pause(MAX_RETRY_MS); // or until the "online" event
        continue;
      }
      const again = await this.connect();
      if (this.stopped) break;
      if (!again) setStatus("waiting");
      if (!again) await this.pause(this.delay());
    }
  }

  /**
   * One connection, followed until it ends.
   * @returns {Promise<boolean>} true to connect again at once, false to wait first
   */
  async connect() {
    const controller = new AbortController();
    this.controller = controller;
    const resuming = Boolean(this.lastEventId);
    setStatus("connecting");
    try {
      const headers = resuming ? { "Last-Event-ID": this.lastEventId } : {};
      const response = await openStream(FEED_PATH, { headers, signal: controller.signal });
      if (this.stopped) return false;
      if (!response) throw new Error("the feed answered no content");
      await this.read(response, controller, resuming);
      this.failures = this.connected ? 0 : this.failures + 1;
    } catch (error) {
      if (this.stopped) return false;
      if (error instanceof ApiError) {
        if ((error.status === 404 || error.status === 422) && resuming) {
          // The last event is no longer kept: start from now, and have the page read again.
          this.lastEventId = "";
          return true;
        }
        if (error.status === 401) {
          // Not signed in any more (api.js has told the page, which stops this feed).
          this.stop();
          return false;
        }
      }
      this.failures = this.connected ? 0 : this.failures + 1;
    } finally {
      clearTimeout(this.stallTimer);
      if (this.controller === controller) this.controller = null;
      this.connected = false;
    }
    return false;
  }

  async read(response, controller, resuming) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser();
    parser.lastEventId = this.lastEventId;
    parser.idBuffer = this.lastEventId;
    const watch = () => {
      clearTimeout(this.stallTimer);
      this.stallTimer = setTimeout(() => controller.abort(), STALL_MS);
    };
    watch();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.stopped) break;
        watch();
        const events = parser.push(decoder.decode(value, { stream: true }));
        if (parser.retry !== null) this.retryMs = parser.retry;
        if (!this.connected) this.opened(resuming);
        for (const event of events) {
          if (this.stopped) return;
          this.lastEventId = event.id;
          this.handle(event);
        }
        this.lastEventId = parser.lastEventId; // an id without data counts too (the standard's rule)
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  opened(resuming) {
    this.connected = true;
    this.failures = 0;
    setStatus("open");
    // Followed before, and now starting from "now": what happened in between is unknown.
    const missed = this.followedOnce && !resuming;
    this.followedOnce = true;
    this.markReady(true);
    if (missed) for (const handler of [...resyncHandlers]) run(handler);
  }

  handle(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    if (!event || typeof event !== "object" || typeof event.type !== "string") return;
    // The server sends the caller's own events only; this holds even if it ever did not.
    if (event.parleyuser && this.userId && String(event.parleyuser) !== String(this.userId)) return;
    const key = event.id || message.id;
    if (key) {
      if (this.seen.has(key)) return;
      this.seen.add(key);
      if (this.seen.size > SEEN_LIMIT) this.seen.delete(this.seen.values().next().value);
    }
    if (feed !== this || this.stopped) return;
    dispatch(event);
  }
}

/**
 * Follow the feed of `userId` (a no-op when it is followed already; another user's feed is
 * stopped first). Resolves true once the stream is open (false if it could not open for now).
 * @returns {Promise<boolean>}
 */
export function startFeed(userId) {
  if (feed && !feed.stopped && feed.userId === userId) return feed.ready;
  stopFeed();
  feed = new Feed(userId);
  feed.start();
  return feed.ready;
}

/** Stop following (signed out): no event of the old session is handed over after this. */
export function stopFeed() {
  if (!feed) return;
  const old = feed;
  feed = null;
  old.stop();
}
