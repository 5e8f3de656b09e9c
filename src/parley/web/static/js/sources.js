// The sources a reply cites: the passages of the user's files that its `search_knowledge` calls
// returned (`source` parts, `source-document` chunks while it streams). They are listed under the
// reply, numbered as the reply cites them ("[1]"), and the markers in its text become buttons
// too; either opens the passage itself (`GET /api/knowledge/chunks/{id}`) in a dialog, from which
// its file can be downloaded.

import { api } from "./api.js";
import { byId, h } from "./dom.js";
import { download } from "./knowledge.js";
import { describeError } from "./ui.js";

// "[1]" .. "[99]" (a fresh RegExp for each use: a global one keeps `lastIndex` between them).
const MARKER = String.raw`\[(\d{1,2})\]`;
let opened = 0;

/** The message's sources, in order, each once. */
export function sourcesOf(message) {
  const seen = new Set();
  const sources = [];
  for (const part of message.parts || []) {
    if (part.type !== "source" || seen.has(part.source_id)) continue;
    seen.add(part.source_id);
    sources.push(part);
  }
  return sources;
}

function sourceLabel(source) {
  const name = source.filename || source.title || "source";
  return source.page ? `${name}, page ${source.page}` : name;
}

/** The "Sources" list under a reply, or null when it cites none. */
export function sourcesList(sources) {
  if (!sources.length) return null;
  return h(
    "section",
    { class: "sources", "aria-label": "Sources" },
    h("h3", { class: "sources-title", text: "Sources" }),
    h(
      "ol",
      { class: "source-list" },
      sources.map((source, index) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "source-link",
              title: source.title || "",
              dataset: { sourceId: source.source_id },
              on: { click: () => openSource(source, index + 1) },
            },
            h("span", { class: "source-number", text: `${index + 1}` }),
            h("span", { class: "source-name", text: sourceLabel(source) }),
          ),
        ),
      ),
    ),
  );
}

/**
 * Turn the "[n]" markers in a rendered reply into buttons that open source n (not inside code,
 * links or buttons). `root` is the reply's rendered Markdown.
 */
export function linkCitations(root, sources) {
  if (!sources.length) return;
  root.normalize(); // "[", "2", "]" may be separate text nodes after the Markdown renderer
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) =>
      node.parentElement.closest("code, pre, a, button") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const nodes = [];
  while (walker.nextNode()) {
    if (new RegExp(MARKER).test(walker.currentNode.data)) nodes.push(walker.currentNode);
  }
  for (const node of nodes) {
    const pieces = [];
    let last = 0;
    for (const match of node.data.matchAll(new RegExp(MARKER, "g"))) {
      const number = Number(match[1]);
      const source = sources[number - 1];
      if (!source) continue;
      pieces.push(node.data.slice(last, match.index));
      pieces.push(
        h("button", {
          type: "button",
          class: "citation",
          text: `[${number}]`,
          "aria-label": `Source ${number}: ${sourceLabel(source)}`,
          dataset: { sourceId: source.source_id },
          on: { click: () => openSource(source, number) },
        }),
      );
      last = match.index + match[0].length;
    }
    if (!pieces.length) continue;
    pieces.push(node.data.slice(last));
    node.replaceWith(...pieces);
  }
}

/** Show a cited passage: its file, page and heading, and its text. */
export async function openSource(source, number) {
  const dialog = byId("source-dialog");
  const ticket = ++opened;
  byId("source-title").textContent = `Source ${number}: ${source.filename || source.title || ""}`;
  const where = byId("source-where");
  const text = byId("source-text");
  const error = byId("source-error");
  const save = byId("source-download");
  where.textContent = source.page ? `Page ${source.page}` : "";
  text.textContent = "Loading the passage…";
  text.hidden = false;
  error.textContent = "";
  save.hidden = !source.file_id;
  save.onclick = () => download({ id: source.file_id, filename: source.filename || "file" });
  if (!dialog.open) dialog.showModal();
  try {
    const passage = await api(`/api/knowledge/chunks/${encodeURIComponent(source.source_id)}`);
    if (ticket !== opened) return;
    where.textContent = [passage.page ? `Page ${passage.page}` : "", passage.heading || ""].filter(Boolean).join(" · ");
    text.textContent = passage.text;
    save.hidden = false;
    save.onclick = () => download({ id: passage.file_id, filename: passage.filename });
  } catch (failure) {
    if (ticket !== opened) return;
    text.hidden = true;
    save.hidden = true;
    error.textContent =
      failure?.status === 404 ? "This passage is no longer available: its file was deleted." : describeError(failure);
  }
}
