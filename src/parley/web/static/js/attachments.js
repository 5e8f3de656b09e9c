// Files attached to the message being written: picked with the paperclip or dropped on the
// conversation, uploaded at once and read by the server; the message can be sent once every one
// is ready (the assistant then searches them). Each shows as a chip with its state.

import { uploadFile } from "./api.js";
import { byId, h } from "./dom.js";
import { ACCEPTED_FILES, fileStatusText, hasFiles, watchFile } from "./knowledge.js";
import { announce, describeError } from "./ui.js";

const MAX_ATTACHED = 20; // the API's limit per message

/** `{key, name, file (the server's, once uploaded), state: "uploading"|"queued"|"processing"|"ready"|"failed", error, controller}` */
let attached = [];
let elements = {};
let changed = () => {};
let counter = 0;

/** @param {{onChange: () => void}} options called whenever what can be sent changes */
export function initAttachments({ onChange }) {
  changed = onChange;
  elements = {
    list: byId("attachments"),
    input: byId("attach-input"),
    zone: byId("conversation"),
  };
  elements.input.accept = ACCEPTED_FILES;
  byId("attach-button").addEventListener("click", () => elements.input.click());
  elements.input.addEventListener("change", () => {
    const picked = [...elements.input.files];
    elements.input.value = "";
    attach(picked);
  });
  elements.zone.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    elements.zone.classList.add("dragging");
  });
  elements.zone.addEventListener("dragleave", (event) => {
    if (!elements.zone.contains(event.relatedTarget)) elements.zone.classList.remove("dragging");
  });
  elements.zone.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    elements.zone.classList.remove("dragging");
    attach([...event.dataTransfer.files]);
  });
  render();
}

/** Attach files: each is uploaded, then followed until it is read. */
export function attach(picked) {
  const room = MAX_ATTACHED - attached.length;
  if (picked.length > room) announce(`At most ${MAX_ATTACHED} files per message.`);
  for (const file of picked.slice(0, Math.max(room, 0))) {
    const entry = { key: ++counter, name: file.name, file: null, state: "uploading", error: "", controller: new AbortController() };
    attached.push(entry);
    upload(entry, file);
  }
  render();
}

async function upload(entry, file) {
  const { signal } = entry.controller;
  try {
    entry.file = await uploadFile("/api/files", file, {}, { signal });
    entry.state = entry.file.status;
    render();
    if (entry.state !== "ready" && entry.state !== "failed") {
      await watchFile(
        entry.file.id,
        (fresh) => {
          entry.file = fresh;
          entry.state = fresh.status;
          render();
        },
        { signal },
      );
    }
    if (entry.state === "failed") entry.error = entry.file.error?.message || "The file could not be read.";
    else announce(`${entry.name} is ready.`);
  } catch (error) {
    if (signal.aborted) return;
    entry.state = "failed";
    entry.error = describeError(error);
  }
  render();
}

function remove(entry) {
  entry.controller.abort();
  attached = attached.filter((other) => other !== entry);
  render();
  byId("attach-button").focus();
}

/** The message's file parts (the files that are ready). */
export function fileParts() {
  return attached.filter((entry) => entry.state === "ready").map((entry) => ({ type: "file", file_id: entry.file.id }));
}

/** The attachments as the page shows them in the sent message. */
export function shownParts() {
  return attached
    .filter((entry) => entry.state === "ready")
    .map((entry) => ({ type: "file", file_id: entry.file.id, filename: entry.file.filename, media_type: entry.file.media_type }));
}

/** Why the message cannot be sent yet ("" when it can). */
export function notReadyReason() {
  if (attached.some((entry) => entry.state === "failed")) return "Remove the files that could not be read first.";
  if (attached.some((entry) => entry.state !== "ready")) return "Wait until your files are read.";
  return "";
}

/**
 * Take the attachments off the composer (the message is being sent; the files stay in the
 * user's files): returns them, for `restoreAttachments` if the message is refused.
 */
export function clearAttachments() {
  const taken = attached;
  attached = [];
  render();
  return taken;
}

/** Put back the attachments of a message that was refused before its reply began. */
export function restoreAttachments(taken) {
  attached = [...taken, ...attached];
  render();
}

function chipText(entry) {
  if (entry.state === "uploading") return "Uploading…";
  if (entry.state === "failed") return entry.error || "Could not be read";
  return entry.file ? fileStatusText(entry.file) : "";
}

function render() {
  const items = attached.map((entry) =>
    h(
      "li",
      { class: `attachment attachment-${entry.state}`, dataset: { state: entry.state } },
      h("span", { class: "attachment-name", text: entry.name }),
      h("span", { class: "attachment-status small", text: chipText(entry) }),
      h("button", {
        type: "button",
        class: "icon-button small",
        text: "×",
        "aria-label": `Remove ${entry.name}`,
        on: { click: () => remove(entry) },
      }),
    ),
  );
  elements.list.replaceChildren(...items);
  elements.list.hidden = attached.length === 0;
  changed();
}
