// Knowledge: the dialog of the user's files (upload, reading progress, download, delete) and
// knowledge bases (create, delete, add and take out files, and which of them the open chat
// searches), the header chip naming the bases the open chat searches, and `watchFile`, which
// follows a file's ingestion (the composer's attachments use it too).

import { api, downloadFile, uploadFile } from "./api.js";
import { byId, clear, formatDateTime, formatInteger, h } from "./dom.js";
import { emit, on, state } from "./state.js";
import { announce, confirmAction, describeError, toast } from "./ui.js";

/** What the file pickers offer (the server reads the type from the bytes, whatever the name). */
export const ACCEPTED_FILES = ".pdf,.docx,.md,.markdown,.html,.htm,.txt,.text,.csv,.json";
const LIMIT = 100;
const POLL_MS = 800;
const SETTLED = new Set(["ready", "failed"]);

let elements = {};
let files = [];
let filesMore = false;
let bases = [];
/** The files of each base opened in the dialog, by base id. */
const baseFiles = new Map();
let pollTimer = null;

export function initKnowledge() {
  elements = {
    dialog: byId("knowledge-dialog"),
    button: byId("knowledge-button"),
    input: byId("file-input"),
    drop: byId("file-drop"),
    target: byId("upload-target"),
    fileList: byId("file-list"),
    fileEmpty: byId("file-empty"),
    baseForm: byId("base-form"),
    baseName: byId("base-name"),
    baseList: byId("base-list"),
    baseEmpty: byId("base-empty"),
    chip: byId("chat-knowledge"),
  };
  elements.input.accept = ACCEPTED_FILES;
  byId("upload-button").addEventListener("click", () => elements.input.click());
  elements.button.addEventListener("click", () => openKnowledge());
  elements.chip.addEventListener("click", () => openKnowledge());
  elements.input.addEventListener("change", () => {
    const picked = [...elements.input.files];
    elements.input.value = "";
    uploadAll(picked);
  });
  elements.drop.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    elements.drop.classList.add("dragging");
  });
  elements.drop.addEventListener("dragleave", () => elements.drop.classList.remove("dragging"));
  elements.drop.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    elements.drop.classList.remove("dragging");
    uploadAll([...event.dataTransfer.files]);
  });
  elements.baseForm.addEventListener("submit", (event) => {
    event.preventDefault();
    createBase();
  });
  elements.dialog.addEventListener("close", () => stopPolling());
  for (const name of ["chat-opened", "chat-changed", "chat-created"]) on(name, () => renderChip());
}

/** Whether a drag carries files (not text dragged within the page). */
export function hasFiles(event) {
  return [...(event.dataTransfer?.types || [])].includes("Files");
}

/** Read the knowledge bases (for the chip and the dialog). */
export async function refreshKnowledge() {
  try {
    const page = await api(`/api/knowledge?limit=${LIMIT}`);
    bases = page.items;
  } catch (error) {
    if (error?.status !== 401) toast(describeError(error));
  }
  renderChip();
  if (elements.dialog.open) renderBases();
}

export function resetKnowledge() {
  files = [];
  bases = [];
  baseFiles.clear();
  state.draftKnowledgeIds = [];
  stopPolling();
  if (elements.fileList) {
    clear(elements.fileList);
    clear(elements.baseList);
    renderChip();
  }
}

export async function openKnowledge() {
  if (!elements.dialog.open) elements.dialog.showModal();
  baseFiles.clear();
  await Promise.all([refreshFiles(), refreshKnowledge()]);
  renderBases();
}

// ---- files ----------------------------------------------------------------------------------

async function refreshFiles() {
  try {
    const page = await api(`/api/files?limit=${LIMIT}`);
    files = page.items;
    filesMore = Boolean(page.next_cursor);
  } catch (error) {
    if (error?.status !== 401) toast(describeError(error));
  }
  renderFiles();
  schedulePoll();
}

function schedulePoll() {
  stopPolling();
  const reading = files.some((file) => !SETTLED.has(file.status));
  if (!reading || !elements.dialog.open) return;
  pollTimer = setTimeout(async () => {
    pollTimer = null;
    const before = new Map(files.map((file) => [file.id, file.status]));
    await refreshFiles();
    // A file that became ready changes its bases' counts.
    if (files.some((file) => before.get(file.id) !== file.status && file.status === "ready")) {
      for (const id of baseFiles.keys()) await loadBaseFiles(id);
      renderBases();
    }
  }, POLL_MS);
}

function stopPolling() {
  if (pollTimer) clearTimeout(pollTimer);
  pollTimer = null;
}

async function uploadAll(picked) {
  if (!picked.length) return;
  const knowledgeId = elements.target.value;
  let uploaded = 0;
  for (const file of picked) {
    try {
      await uploadFile("/api/files", file, knowledgeId ? { knowledge_id: knowledgeId } : {});
      uploaded += 1;
    } catch (error) {
      toast(`${file.name}: ${describeError(error)}`);
    }
  }
  if (uploaded) announce(uploaded === 1 ? "File uploaded: reading it." : `${uploaded} files uploaded: reading them.`);
  if (knowledgeId) baseFiles.delete(knowledgeId);
  await Promise.all([refreshFiles(), refreshKnowledge()]);
  if (knowledgeId) await loadBaseFiles(knowledgeId);
  renderBases();
}

/** "Reading 40%", "Ready · 3 pages · 12 passages", "Could not be read: ...". */
export function fileStatusText(file) {
  if (file.status === "queued") return "Waiting to be read";
  if (file.status === "processing") return `Reading ${Math.round((file.progress || 0) * 100)}%`;
  if (file.status === "failed") return `Could not be read: ${file.error?.message || "unknown error"}`;
  const parts = ["Ready"];
  if (file.pages) parts.push(`${formatInteger(file.pages)} ${file.pages === 1 ? "page" : "pages"}`);
  parts.push(`${formatInteger(file.chunks)} ${file.chunks === 1 ? "passage" : "passages"}`);
  return parts.join(" · ");
}

export function formatBytes(bytes) {
  const value = Number(bytes) || 0;
  if (value < 1024) return `${value} B`;
  const units = ["KB", "MB", "GB"];
  let size = value / 1024;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${size < 10 ? size.toFixed(1) : Math.round(size)} ${units[unit]}`;
}

function renderFiles() {
  const items = files.map((file) =>
    h(
      "li",
      { class: `file file-${file.status}`, dataset: { fileId: file.id, status: file.status } },
      h(
        "div",
        { class: "file-text" },
        h("span", { class: "file-name", text: file.filename }),
        h("span", { class: "muted small", text: `${formatBytes(file.size_bytes)} · ${formatDateTime(file.created_at)}` }),
        h("span", { class: `file-status small status-${file.status}`, text: fileStatusText(file) }),
        file.status === "processing" || file.status === "queued"
          ? h("progress", { max: "1", value: file.progress || 0, "aria-label": `Reading ${file.filename}` })
          : null,
      ),
      h("button", {
        type: "button",
        class: "ghost small",
        text: "Download",
        "aria-label": `Download ${file.filename}`,
        on: { click: () => download(file) },
      }),
      h("button", {
        type: "button",
        class: "ghost small danger",
        text: "Delete",
        "aria-label": `Delete ${file.filename}`,
        on: { click: () => removeFile(file) },
      }),
    ),
  );
  elements.fileList.replaceChildren(...items);
  if (filesMore) elements.fileList.append(h("li", { class: "muted small", text: `Showing the ${LIMIT} newest files.` }));
  elements.fileEmpty.hidden = files.length > 0;
}

/** Save one of the user's files (its original bytes). */
export async function download(file) {
  try {
    await downloadFile(`/api/files/${file.id}/content`, file.filename);
  } catch (error) {
    toast(describeError(error));
  }
}

async function removeFile(file) {
  const confirmed = await confirmAction({
    title: "Delete this file?",
    text: `"${file.filename}" and its passages will be deleted; replies that cited it keep their text.`,
  });
  if (!confirmed) return;
  try {
    await api(`/api/files/${file.id}`, { method: "DELETE" });
    announce(`Deleted: ${file.filename}`);
  } catch (error) {
    toast(describeError(error));
  }
  baseFiles.clear();
  await Promise.all([refreshFiles(), refreshKnowledge()]);
  emit("files-changed");
}

// ---- knowledge bases ------------------------------------------------------------------------

/** The bases the open chat searches (or the new chat will, once it is created). */
export function chatKnowledgeIds() {
  return state.chat ? state.chat.knowledge_ids || [] : state.draftKnowledgeIds;
}

async function createBase() {
  const name = elements.baseName.value.trim();
  if (!name) return;
  try {
    await api("/api/knowledge", { method: "POST", body: { name } });
    elements.baseName.value = "";
    announce(`Knowledge base created: ${name}`);
  } catch (error) {
    toast(describeError(error));
  }
  await refreshKnowledge();
}

async function removeBase(base) {
  const confirmed = await confirmAction({
    title: "Delete this knowledge base?",
    text: `"${base.name}" will be deleted; its files stay in your files.`,
  });
  if (!confirmed) return;
  try {
    await api(`/api/knowledge/${base.id}`, { method: "DELETE" });
    announce(`Deleted: ${base.name}`);
  } catch (error) {
    toast(describeError(error));
  }
  baseFiles.delete(base.id);
  if (chatKnowledgeIds().includes(base.id)) await setUsed(base, false);
  await refreshKnowledge();
}

async function setUsed(base, used) {
  const ids = new Set(chatKnowledgeIds());
  if (used) ids.add(base.id);
  else ids.delete(base.id);
  if (!state.chat) {
    state.draftKnowledgeIds = [...ids];
  } else {
    const chatId = state.chat.id;
    try {
      const chat = await api(`/api/chats/${chatId}`, { method: "PATCH", body: { knowledge_ids: [...ids] } });
      if (state.chat?.id === chatId) state.chat = chat;
      emit("chat-changed", chat);
    } catch (error) {
      toast(describeError(error));
    }
  }
  announce(used ? `This chat searches ${base.name}.` : `This chat no longer searches ${base.name}.`);
  renderChip();
  renderBases();
}

async function loadBaseFiles(baseId) {
  try {
    const page = await api(`/api/knowledge/${baseId}/files?limit=${LIMIT}`);
    baseFiles.set(baseId, page.items);
  } catch (error) {
    baseFiles.delete(baseId);
    if (error?.status !== 404) toast(describeError(error));
  }
}

async function addToBase(base, fileId) {
  try {
    await api(`/api/knowledge/${base.id}/files`, { method: "POST", body: { file_id: fileId } });
  } catch (error) {
    toast(describeError(error));
  }
  await Promise.all([loadBaseFiles(base.id), refreshKnowledge()]);
  renderBases();
}

async function takeOut(base, file) {
  try {
    await api(`/api/knowledge/${base.id}/files/${file.id}`, { method: "DELETE" });
    announce(`${file.filename} taken out of ${base.name}`);
  } catch (error) {
    toast(describeError(error));
  }
  await Promise.all([loadBaseFiles(base.id), refreshKnowledge()]);
  renderBases();
}

function renderBases() {
  const used = new Set(chatKnowledgeIds());
  const target = elements.target;
  const chosen = target.value;
  target.replaceChildren(
    h("option", { value: "", text: "No knowledge base" }),
    ...bases.map((base) => h("option", { value: base.id, text: base.name })),
  );
  target.value = bases.some((base) => base.id === chosen) ? chosen : "";

  const items = bases.map((base) => {
    const checkbox = h("input", {
      type: "checkbox",
      id: `use-${base.id}`,
      checked: used.has(base.id),
      on: { change: (event) => setUsed(base, event.target.checked) },
    });
    const details = h("details", { class: "base-files" });
    const inside = baseFiles.get(base.id);
    details.open = inside !== undefined;
    details.addEventListener("toggle", async () => {
      if (details.open && !baseFiles.has(base.id)) {
        await loadBaseFiles(base.id);
        renderBases();
      } else if (!details.open) baseFiles.delete(base.id);
    });
    details.append(h("summary", { text: `${formatInteger(base.file_count)} ${base.file_count === 1 ? "file" : "files"}` }));
    if (inside) details.append(baseContents(base, inside));
    return h(
      "li",
      { class: "base", dataset: { knowledgeId: base.id } },
      h(
        "div",
        { class: "base-row" },
        checkbox,
        h("label", { for: `use-${base.id}`, class: "base-name" }, base.name, h("span", { class: "visually-hidden", text: " (use in this chat)" })),
        h("button", {
          type: "button",
          class: "ghost small danger",
          text: "Delete",
          "aria-label": `Delete knowledge base ${base.name}`,
          on: { click: () => removeBase(base) },
        }),
      ),
      base.description ? h("p", { class: "muted small", text: base.description }) : null,
      details,
    );
  });
  elements.baseList.replaceChildren(...items);
  elements.baseEmpty.hidden = bases.length > 0;
}

function baseContents(base, inside) {
  const ids = new Set(inside.map((file) => file.id));
  const list = h(
    "ul",
    { class: "base-file-list" },
    inside.map((file) =>
      h(
        "li",
        {},
        h("span", { class: "file-name", text: file.filename }),
        h("span", { class: `small status-${file.status}`, text: fileStatusText(file) }),
        h("button", {
          type: "button",
          class: "ghost small",
          text: "Take out",
          "aria-label": `Take ${file.filename} out of ${base.name}`,
          on: { click: () => takeOut(base, file) },
        }),
      ),
    ),
  );
  const addable = files.filter((file) => !ids.has(file.id) && file.status !== "failed");
  if (!addable.length) return list;
  const select = h(
    "select",
    { "aria-label": `Add a file to ${base.name}` },
    h("option", { value: "", text: "Add a file…" }),
    addable.map((file) => h("option", { value: file.id, text: file.filename })),
  );
  select.addEventListener("change", () => {
    if (select.value) addToBase(base, select.value);
  });
  return [list, select];
}

/** The chip in the chat's header naming the bases it searches (opens the dialog). */
function renderChip() {
  const chip = elements.chip;
  if (!chip) return;
  const names = chatKnowledgeIds()
    .map((id) => bases.find((base) => base.id === id)?.name)
    .filter(Boolean);
  chip.hidden = names.length === 0;
  chip.textContent = names.length === 1 ? `Searching ${names[0]}` : `Searching ${names.length} knowledge bases`;
  chip.title = names.join(", ");
}

// ---- following one file ---------------------------------------------------------------------

/**
 * Follow a file's ingestion until it is ready or failed, calling `onUpdate(file)` as it changes.
 * @returns {Promise<object>} the settled file
 */
export async function watchFile(fileId, onUpdate, { signal } = {}) {
  let delay = POLL_MS / 2;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, delay));
    if (signal?.aborted) throw new DOMException("stopped", "AbortError");
    const file = await api(`/api/files/${fileId}`, { signal });
    onUpdate(file);
    if (SETTLED.has(file.status)) return file;
    delay = Math.min(delay * 1.5, 2000);
  }
}
