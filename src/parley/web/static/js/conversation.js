// The open conversation: its messages (Markdown replies, tool cards, cited sources, attached
// files, tokens and cost), sending with a streamed reply, stop, regenerate, edits into new branches
// and switching between branches, and picking up a reply that was still being written when the
// page was reloaded. Through the live feed (events.js) it also follows what happens to the open
// chat elsewhere: a new title, a deletion, or a reply finished in another tab.

import { ApiError, api, newIdempotencyKey, openStream, readEvents } from "./api.js";
import { clearAttachments, fileParts, initAttachments, notReadyReason, restoreAttachments, shownParts } from "./attachments.js";
import { byId, clear, formatCost, formatInteger, h } from "./dom.js";
import { isOlder, onEvent } from "./events.js";
import { chatKnowledgeIds, download } from "./knowledge.js";
import { renderMarkdown } from "./markdown.js";
import { linkCitations, sourcesList, sourcesOf } from "./sources.js";
import { defaultModelId, emit, modelName, state } from "./state.js";
import { refreshTasks } from "./tasks.js";
import { announce, askTitle, confirmAction, describeError, toast } from "./ui.js";

const TASK_TOOLS = new Set(["add_task", "update_task", "complete_task", "delete_task"]);
const PAGE_SIZE = 50;
const STICK_TO_BOTTOM_PX = 120;

let openGeneration = 0;
/** A new chat's first line, shown as its title until the server titles it. */
const provisional = { chatId: null, title: "" };
/** Replies and loads under way: the message list is aria-busy until they are all done. */
let busy = 0;
/** Ids of the replies streamed into this tab (their end reads the chat back already). */
const streamedHere = new Set();

function setBusy(on) {
  elements.messages.setAttribute("aria-busy", on ? "true" : "false");
}

async function busyWhile(task) {
  busy += 1;
  setBusy(true);
  try {
    return await task();
  } finally {
    busy -= 1;
    setBusy(busy > 0);
  }
}

const elements = {};

export function initConversation() {
  for (const id of [
    "chat-title",
    "chat-actions",
    "model-picker",
    "messages",
    "messages-scroller",
    "empty-chat",
    "load-earlier",
    "composer",
    "composer-input",
    "send-button",
    "stop-button",
    "rename-chat",
    "archive-chat",
    "delete-chat",
  ]) {
    elements[id.replace(/-(\w)/g, (_, c) => c.toUpperCase())] = byId(id);
  }
  const { composer, composerInput, stopButton, modelPicker, loadEarlier } = elements;

  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    submitComposer();
  });
  composerInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey && !event.isComposing) {
      event.preventDefault();
      submitComposer();
    }
  });
  composerInput.addEventListener("input", () => autosize(composerInput));
  stopButton.addEventListener("click", () => stopReply());
  modelPicker.addEventListener("change", () => changeModel(modelPicker.value));
  loadEarlier.addEventListener("click", () => loadEarlierMessages());
  elements.renameChat.addEventListener("click", () => renameChat());
  elements.archiveChat.addEventListener("click", () => toggleArchived());
  elements.deleteChat.addEventListener("click", () => deleteChat());
  initAttachments({ onChange: () => syncSendButton() });

  onEvent("parley.chat.updated.v1", (event) => chatChangedElsewhere(event.data));
  onEvent("parley.chat.deleted.v1", (event) => chatDeletedElsewhere(event.data));
  onEvent("parley.message.completed.v1", (event) => replyFinishedElsewhere(event.data));
}

/** The open chat was changed (renamed, titled, archived, its model changed) somewhere. */
function chatChangedElsewhere(chat) {
  if (!chat || state.chat?.id !== chat.id) return;
  const current = state.chat;
  if (isOlder(chat, current)) return;
  state.chat = { ...current, ...chat };
  renderHeader();
}

/** The open chat was deleted somewhere: show a new chat instead. */
function chatDeletedElsewhere(chat) {
  if (!chat || state.chat?.id !== chat.id) return;
  history.replaceState(null, "", location.pathname);
  newChat({ focus: false });
  toast("This chat was deleted.");
}

/** A reply was finished; if it is in the open chat and was not streamed here, show it. */
function replyFinishedElsewhere(data) {
  if (!data || !state.chat || state.chat.id !== data.chat_id) return;
  if (streamedHere.has(data.message_id)) return;
  // A reply streaming here reads the chat back when it ends; a finished one shown needs nothing.
  if (state.stream) return;
  if (state.messages.some((message) => message.id === data.message_id && message.status !== "streaming")) return;
  busyWhile(() => reload()).catch((error) => toast(describeError(error)));
}

/** Send waits for the attached files to be read. */
function syncSendButton() {
  const reason = notReadyReason();
  elements.sendButton.disabled = Boolean(reason);
  elements.sendButton.title = reason;
}

function autosize(textarea) {
  textarea.style.height = "auto";
  textarea.style.height = `${Math.min(textarea.scrollHeight + 2, 240)}px`;
}

export function focusComposer() {
  elements.composerInput.focus();
}

/** Whether a reply is streaming into the page. */
export function isStreaming() {
  return state.stream !== null;
}

// ---- opening chats --------------------------------------------------------------------------

/** Show an empty conversation; the chat is created with its first message. */
export function newChat({ focus = true } = {}) {
  detachStream();
  openGeneration += 1;
  state.chat = null;
  state.messages = [];
  state.earlierCursor = null;
  state.editingId = null;
  state.draftModelId = null;
  state.draftKnowledgeIds = [];
  renderHeader();
  renderMessages();
  emit("chat-opened", null);
  if (focus) focusComposer();
}

/** Open a chat: its current branch, and the reply in progress if there is one. */
export async function openChat(chatId, { focus = true } = {}) {
  detachStream();
  const generation = ++openGeneration;
  state.editingId = null;
  let chat;
  let page;
  try {
    [chat, page] = await busyWhile(() =>
      Promise.all([
        api(`/api/chats/${encodeURIComponent(chatId)}`),
        api(`/api/chats/${encodeURIComponent(chatId)}/messages?limit=${PAGE_SIZE}`),
      ]),
    );
  } catch (error) {
    if (generation !== openGeneration) return;
    if (error instanceof ApiError && (error.status === 404 || error.status === 422)) {
      toast("That chat does not exist (any more).");
      history.replaceState(null, "", "#");
      newChat({ focus });
    } else toast(describeError(error));
    return;
  }
  if (generation !== openGeneration) return;
  state.chat = chat;
  state.messages = page.items;
  state.earlierCursor = page.next_cursor;
  renderHeader();
  renderMessages({ scroll: "bottom" });
  emit("chat-opened", chat.id);
  if (focus) focusComposer();
  const last = state.messages.at(-1);
  if (last && last.role === "assistant" && last.status === "streaming") {
    await runTurn({ chatId: chat.id, path: `/api/chats/${chat.id}/stream`, method: "GET", resume: last });
  }
}

/** Re-read the open chat and its current branch (after a reply, or a branch switch). */
async function reload() {
  const chat = state.chat;
  if (!chat) return;
  const generation = openGeneration;
  // As many messages as are shown (earlier ones the user loaded stay), within the API's limit.
  const limit = Math.min(100, Math.max(PAGE_SIZE, state.messages.length));
  const [fresh, page] = await Promise.all([
    api(`/api/chats/${chat.id}`),
    api(`/api/chats/${chat.id}/messages?limit=${limit}`),
  ]);
  if (generation !== openGeneration || state.stream) return;
  state.chat = fresh;
  state.messages = page.items;
  state.earlierCursor = page.next_cursor;
  renderHeader();
  renderMessages();
  emit("chat-changed", fresh);
}

async function loadEarlierMessages() {
  const chat = state.chat;
  if (!chat || !state.earlierCursor) return;
  const leaf = state.messages.at(-1);
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), cursor: state.earlierCursor });
  if (leaf?.id) params.set("leaf_id", leaf.id);
  try {
    const page = await api(`/api/chats/${chat.id}/messages?${params}`);
    if (state.chat?.id !== chat.id) return;
    const scroller = elements.messagesScroller;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    state.messages = [...page.items, ...state.messages];
    state.earlierCursor = page.next_cursor;
    renderMessages();
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
  } catch (error) {
    toast(describeError(error));
  }
}

// ---- the header: title, model, actions ------------------------------------------------------

export function renderModels() {
  const picker = elements.modelPicker;
  clear(picker);
  for (const model of state.models) {
    const label = model.is_default ? `${model.name} (default)` : model.name;
    picker.append(h("option", { value: model.id, text: label }));
  }
  renderHeader();
}

function renderHeader() {
  const chat = state.chat;
  const pending = chat && provisional.chatId === chat.id ? provisional.title : "";
  const title = chat ? chat.title || pending || "Untitled chat" : "New chat";
  elements.chatTitle.textContent = title;
  document.title = `${title} · Parley`;
  elements.chatActions.hidden = !chat;
  elements.archiveChat.textContent = chat?.archived ? "Unarchive" : "Archive";
  const modelId = (chat ? chat.model_id : state.draftModelId) || defaultModelId();
  const picker = elements.modelPicker;
  if (modelId && ![...picker.options].some((option) => option.value === modelId)) {
    picker.append(h("option", { value: modelId, text: modelName(modelId) }));
  }
  if (modelId) picker.value = modelId;
  picker.disabled = state.models.length === 0;
}

/** The model change being saved (a reply waits for it, so it uses the model just picked). */
let modelChange = Promise.resolve();

function changeModel(modelId) {
  if (!state.chat) {
    state.draftModelId = modelId;
    return;
  }
  const chatId = state.chat.id;
  modelChange = (async () => {
    try {
      const chat = await api(`/api/chats/${chatId}`, { method: "PATCH", body: { model_id: modelId } });
      if (state.chat?.id === chatId) state.chat = chat;
      emit("chat-changed", chat);
      announce(`Model: ${modelName(modelId)}`);
    } catch (error) {
      toast(describeError(error));
      renderHeader();
    }
  })();
}

async function renameChat() {
  const chat = state.chat;
  if (!chat) return;
  const title = await askTitle(chat.title);
  if (!title || title === chat.title) return;
  try {
    state.chat = await api(`/api/chats/${chat.id}`, { method: "PATCH", body: { title } });
    renderHeader();
    emit("chat-changed", state.chat);
  } catch (error) {
    toast(describeError(error));
  }
}

async function toggleArchived() {
  const chat = state.chat;
  if (!chat) return;
  try {
    state.chat = await api(`/api/chats/${chat.id}`, { method: "PATCH", body: { archived: !chat.archived } });
    renderHeader();
    emit("chat-changed", state.chat);
    announce(state.chat.archived ? "Chat archived." : "Chat moved back to your chats.");
  } catch (error) {
    toast(describeError(error));
  }
}

async function deleteChat() {
  const chat = state.chat;
  if (!chat) return;
  const confirmed = await confirmAction({
    title: "Delete this chat?",
    text: `“${chat.title || "Untitled chat"}” and all its messages will be gone.`,
  });
  if (!confirmed) return;
  try {
    await api(`/api/chats/${chat.id}`, { method: "DELETE" });
    emit("chat-removed", chat.id);
    history.pushState(null, "", "#");
    newChat();
    announce("Chat deleted.");
  } catch (error) {
    toast(describeError(error));
  }
}

// ---- rendering messages -----------------------------------------------------------------------

function isNearBottom() {
  const scroller = elements.messagesScroller;
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < STICK_TO_BOTTOM_PX;
}

function scrollToBottom() {
  const scroller = elements.messagesScroller;
  scroller.scrollTop = scroller.scrollHeight;
}

function renderMessages({ scroll } = {}) {
  const stick = scroll === "bottom" || isNearBottom();
  const list = elements.messages;
  clear(list);
  state.messages.forEach((message, index) => list.append(renderMessage(message, index)));
  elements.emptyChat.hidden = state.messages.length > 0;
  elements.loadEarlier.hidden = !state.earlierCursor;
  setBusy(busy > 0);
  if (stick) scrollToBottom();
}

function renderMessage(message, index) {
  const streaming = state.stream !== null;
  const live = state.stream?.draft === message;
  const item = h("li", {
    class: `message message-${message.role}`,
    dataset: { role: message.role, status: message.status || "complete", index: String(index) },
  });
  if (message.id) item.dataset.id = message.id;
  const label = message.role === "user" ? "You" : message.role === "assistant" ? "Assistant" : "System";
  item.append(h("h2", { class: "visually-hidden", text: `${label}:` }));

  if (message.role === "user" && state.editingId && state.editingId === message.id) {
    item.append(editForm(message));
    return item;
  }

  const body = h("div", { class: "message-body" });
  const results = new Map();
  for (const part of message.parts || []) {
    if (part.type === "tool_result") results.set(part.tool_call_id, part);
  }
  const calls = new Set();
  const sources = message.role === "assistant" ? sourcesOf(message) : [];
  const attachments = [];
  for (const part of message.parts || []) {
    if (part.type === "text") {
      if (message.role === "assistant") {
        const markdown = h("div", { class: "markdown" }, renderMarkdown(part.text));
        linkCitations(markdown, sources);
        body.append(markdown);
      } else body.append(h("p", { class: "user-text", text: part.text }));
    } else if (part.type === "reasoning") {
      body.append(h("details", { class: "reasoning" }, h("summary", { text: "Reasoning" }), h("p", { class: "user-text", text: part.text })));
    } else if (part.type === "tool_call") {
      calls.add(part.tool_call_id);
      body.append(toolCard(part, results.get(part.tool_call_id), message));
    } else if (part.type === "tool_result" && !calls.has(part.tool_call_id)) {
      body.append(toolCard({ tool_call_id: part.tool_call_id, tool_name: part.tool_name, input: undefined }, part, message));
    } else if (part.type === "file") {
      attachments.push(part);
    }
  }
  if (attachments.length) body.append(attachmentList(attachments));
  const cited = sourcesList(sources);
  if (cited) body.append(cited);
  if (live && message.status === "streaming") {
    body.append(h("p", { class: "typing", "aria-label": "The assistant is writing" }, h("span"), h("span"), h("span")));
  }
  if (message.status === "error") {
    body.append(h("p", { class: "message-error", text: message.error?.message || "The reply failed." }));
  }
  item.append(body);

  const meta = h("div", { class: "message-meta" });
  const branches = branchNav(message, index, streaming);
  if (branches) meta.append(branches);
  if (message.role === "assistant") {
    const badge = statusBadge(message, live);
    if (badge) meta.append(badge);
    if (message.model_id) meta.append(h("span", { class: "meta-model", text: modelName(message.model_id) }));
    if (message.usage) {
      meta.append(
        h("span", {
          class: "meta-usage",
          title: "Tokens read and written by the model for this reply, and what they cost",
          text: `${formatInteger(message.usage.input_tokens)} in · ${formatInteger(message.usage.output_tokens)} out tokens · ${formatCost(message.usage.cost_usd)}`,
        }),
      );
    }
    if (message.id && !live) {
      meta.append(
        h("button", {
          type: "button",
          class: "ghost small regenerate",
          text: "Regenerate",
          disabled: streaming,
          "aria-label": "Regenerate this reply",
          on: { click: () => regenerate(message) },
        }),
      );
    }
  } else if (message.role === "user" && message.id) {
    meta.append(
      h("button", {
        type: "button",
        class: "ghost small edit",
        text: "Edit",
        disabled: streaming,
        "aria-label": "Edit this message",
        on: { click: () => startEditing(message) },
      }),
    );
    const isLast = index === state.messages.length - 1;
    if (isLast && !streaming) {
      meta.append(
        h("button", {
          type: "button",
          class: "ghost small regenerate",
          text: "Get a reply",
          on: { click: () => regenerate(message) },
        }),
      );
    }
  }
  if (meta.childElementCount) item.append(meta);
  return item;
}

/** The files a user message carries, each a button that downloads it. */
function attachmentList(parts) {
  return h(
    "ul",
    { class: "message-files", "aria-label": "Attached files" },
    parts.map((part) =>
      h(
        "li",
        {},
        h("button", {
          type: "button",
          class: "file-chip",
          text: part.filename || "file",
          title: `Download ${part.filename || "the file"}`,
          on: { click: () => download({ id: part.file_id, filename: part.filename || "file" }) },
        }),
      ),
    ),
  );
}

function statusBadge(message, live) {
  const labels = {
    cancelled: "Stopped",
    interrupted: "Interrupted",
    error: "Failed",
    streaming: live ? "Replying…" : "In progress",
  };
  const text = labels[message.status];
  return text ? h("span", { class: `badge badge-${message.status}`, text }) : null;
}

function toolLabel(name) {
  const words = String(name || "tool").replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function asJson(value) {
  if (value === undefined) return "…";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

function toolCard(call, result, message) {
  const status = !result ? (message.status === "streaming" ? "running" : "no result") : result.is_error ? "failed" : "done";
  const details = h("details", { class: `tool-card tool-${status.replace(" ", "-")}`, dataset: { toolCallId: call.tool_call_id || "" } });
  details.open = state.openTools.has(call.tool_call_id);
  details.addEventListener("toggle", () => {
    if (details.open) state.openTools.add(call.tool_call_id);
    else state.openTools.delete(call.tool_call_id);
  });
  details.append(
    h(
      "summary",
      {},
      h("span", { class: "tool-name", text: toolLabel(call.tool_name) }),
      h("code", { class: "tool-id", text: call.tool_name || "" }),
      h("span", { class: `tool-status status-${status.replace(" ", "-")}`, text: status }),
    ),
    h(
      "div",
      { class: "tool-body" },
      h("h3", { text: "Input" }),
      h("pre", { class: "tool-input", tabindex: "0", text: asJson(call.input) }),
      result
        ? [h("h3", { text: result.is_error ? "Error" : "Result" }), h("pre", { class: "tool-output", tabindex: "0", text: asJson(result.output) })]
        : null,
    ),
  );
  return details;
}

function branchNav(message, index, streaming) {
  const siblings = message.sibling_ids || [];
  if (!message.id || siblings.length < 2) return null;
  const position = siblings.indexOf(message.id);
  if (position === -1) return null;
  const what = message.role === "user" ? "version of this message" : "version of this reply";
  return h(
    "span",
    { class: "branches", role: "group", "aria-label": `${position + 1} of ${siblings.length} versions` },
    h("button", {
      type: "button",
      class: "ghost small branch-prev",
      text: "‹",
      "aria-label": `Previous ${what}`,
      disabled: streaming || position === 0,
      on: { click: () => switchBranch(message, index, -1) },
    }),
    h("span", { class: "branch-position", text: `${position + 1}/${siblings.length}` }),
    h("button", {
      type: "button",
      class: "ghost small branch-next",
      text: "›",
      "aria-label": `Next ${what}`,
      disabled: streaming || position === siblings.length - 1,
      on: { click: () => switchBranch(message, index, 1) },
    }),
  );
}

// ---- branches and edits ----------------------------------------------------------------------

async function switchBranch(message, index, direction) {
  const chat = state.chat;
  if (!chat || state.stream) return;
  const siblings = message.sibling_ids;
  const target = siblings[siblings.indexOf(message.id) + direction];
  if (!target) return;
  try {
    // The choice is kept by the server (current_leaf_id): a reload shows the same branch.
    const [updated, page] = await busyWhile(async () => {
      const patched = await api(`/api/chats/${chat.id}`, { method: "PATCH", body: { current_leaf_id: target } });
      return [patched, await api(`/api/chats/${chat.id}/messages?limit=${PAGE_SIZE}`)];
    });
    if (state.chat?.id !== chat.id) return;
    state.chat = updated;
    state.messages = page.items;
    state.earlierCursor = page.next_cursor;
    renderMessages();
    const shown = state.messages.find((entry) => entry.id === target);
    const item = shown && elements.messages.querySelector(`li[data-id="${CSS.escape(target)}"]`);
    if (item) {
      const same = item.querySelector(direction < 0 ? ".branch-prev" : ".branch-next");
      const other = item.querySelector(direction < 0 ? ".branch-next" : ".branch-prev");
      (same && !same.disabled ? same : other)?.focus();
      const position = item.querySelector(".branch-position");
      if (position) announce(`Version ${position.textContent}`);
    }
  } catch (error) {
    toast(describeError(error));
  }
}

function startEditing(message) {
  if (state.stream) return;
  state.editingId = message.id;
  renderMessages();
  const textarea = elements.messages.querySelector(".edit-form textarea");
  if (textarea) {
    textarea.focus();
    textarea.setSelectionRange(textarea.value.length, textarea.value.length);
    autosize(textarea);
  }
}

function cancelEditing() {
  const id = state.editingId;
  state.editingId = null;
  renderMessages();
  elements.messages.querySelector(`li[data-id="${CSS.escape(id || "")}"] .edit`)?.focus();
}

function editForm(message) {
  const text = (message.parts || []).filter((part) => part.type === "text").map((part) => part.text).join("\n");
  const textarea = h("textarea", { class: "edit-input", rows: "2", "aria-label": "Edit your message", maxlength: "100000" });
  textarea.value = text;
  const form = h(
    "form",
    { class: "edit-form" },
    textarea,
    h(
      "div",
      { class: "edit-buttons" },
      h("button", { type: "button", text: "Cancel", on: { click: cancelEditing } }),
      h("button", { type: "submit", class: "primary", text: "Send as new version" }),
    ),
  );
  const submit = () => {
    const value = textarea.value.trim();
    if (value) submitEdit(message, value);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  textarea.addEventListener("input", () => autosize(textarea));
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      cancelEditing();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  return form;
}

async function submitEdit(message, text) {
  const chat = state.chat;
  if (!chat || state.stream) return;
  const index = state.messages.indexOf(message);
  state.editingId = null;
  state.messages = state.messages.slice(0, Math.max(index, 0));
  state.messages.push(pendingUserMessage(text, message.parent_id));
  // The edited message's parent (null: a new first message) starts the new branch.
  await runTurn({
    chatId: chat.id,
    path: `/api/chats/${chat.id}/messages`,
    body: { content: text, parent_id: message.parent_id ?? null },
  });
}

async function regenerate(message) {
  const chat = state.chat;
  if (!chat || state.stream || !message.id) return;
  const index = state.messages.indexOf(message);
  // A new reply beside this one (or under this user message).
  state.messages = state.messages.slice(0, message.role === "assistant" ? index : index + 1);
  await runTurn({ chatId: chat.id, path: `/api/chats/${chat.id}/messages/${message.id}/regenerate` });
}

// ---- sending and streaming -----------------------------------------------------------------

function provisionalTitle(text) {
  const line = text.split("\n", 1)[0].trim();
  return line.length > 60 ? `${line.slice(0, 59)}…` : line;
}

function pendingUserMessage(text, parentId, files = []) {
  return {
    id: null,
    role: "user",
    parts: [{ type: "text", text }, ...files],
    status: "complete",
    parent_id: parentId ?? null,
    sibling_ids: [],
  };
}

async function submitComposer() {
  const input = elements.composerInput;
  const text = input.value.trim();
  if (!text || state.stream) return;
  const waiting = notReadyReason();
  if (waiting) {
    toast(waiting);
    return;
  }
  const files = fileParts();
  const shown = shownParts();
  let chat = state.chat;
  input.value = "";
  autosize(input);
  if (!chat) {
    try {
      const body = state.draftModelId ? { model_id: state.draftModelId } : {};
      const knowledgeIds = chatKnowledgeIds();
      if (knowledgeIds.length) body.knowledge_ids = knowledgeIds;
      chat = await api("/api/chats", { method: "POST", body });
    } catch (error) {
      input.value = text;
      toast(describeError(error));
      return;
    }
    openGeneration += 1;
    state.chat = chat;
    state.messages = [];
    state.earlierCursor = null;
    history.pushState(null, "", `#/chat/${chat.id}`);
    // Shown and listed under its first line until the server titles it after the first exchange.
    provisional.chatId = chat.id;
    provisional.title = provisionalTitle(text);
    renderHeader();
    emit("chat-created", { ...chat, title: chat.title || provisional.title });
    emit("chat-opened", chat.id);
  }
  const parent = state.messages.at(-1);
  state.messages.push(pendingUserMessage(text, parent?.id, shown));
  const body = files.length ? { parts: [{ type: "text", text }, ...files] } : { content: text };
  if (parent?.id) body.parent_id = parent.id;
  const taken = clearAttachments();
  const started = await runTurn({ chatId: chat.id, path: `/api/chats/${chat.id}/messages`, body });
  if (!started && !input.value) {
    input.value = text; // refused before it began (busy, rate limited, ...): keep what was typed
    autosize(input);
    restoreAttachments(taken);
  }
}

export async function stopReply() {
  const stream = state.stream;
  if (!stream) return;
  elements.stopButton.disabled = true;
  try {
    await api(`/api/chats/${stream.chatId}/stop`, { method: "POST" });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409)) toast(describeError(error));
  }
}

/** Stop reading the stream shown (the reply goes on on the server; opening the chat resumes). */
function detachStream() {
  const stream = state.stream;
  if (!stream) return;
  stream.detached = true;
  stream.controller.abort();
  state.stream = null;
  setStreaming(false);
}

function setStreaming(on) {
  elements.sendButton.hidden = on;
  elements.stopButton.hidden = !on;
  elements.stopButton.disabled = false;
  // Keep the focus on the composer's button when it swaps.
  if (on && document.activeElement === elements.sendButton) elements.stopButton.focus();
  else if (!on && document.activeElement === elements.stopButton) elements.sendButton.focus();
}

/**
 * Stream a reply into the page: a send or regenerate (POST), or a resume (GET `/stream`, which
 * replays the reply from its first event). Afterwards the branch is read back from the server.
 * @returns {Promise<boolean>} false when the request was refused before the reply began
 */
function runTurn(options) {
  return busyWhile(() => streamTurn(options));
}

async function streamTurn({ chatId, path, method = "POST", body, resume = null }) {
  const draft = resume || {
    id: null,
    role: "assistant",
    parts: [],
    status: "streaming",
    usage: null,
    error: null,
    model_id: state.chat?.model_id || defaultModelId(),
    parent_id: null,
    sibling_ids: [],
  };
  if (!resume) state.messages.push(draft);
  else if (resume.id) streamedHere.add(resume.id);
  const stream = { chatId, controller: new AbortController(), draft, toolNames: new Map(), frame: 0, detached: false };
  state.stream = stream;
  setStreaming(true);
  renderMessages({ scroll: "bottom" });
  announce(resume ? "Resuming the reply in progress." : "The assistant is replying.");

  let refused = false;
  try {
    await modelChange;
    const headers = method === "POST" ? { "Idempotency-Key": newIdempotencyKey() } : {};
    const response = await openStream(path, { method, body, headers, signal: stream.controller.signal });
    if (response) {
      let first = true;
      for await (const event of readEvents(response)) {
        if (event.data === "[DONE]") break;
        let chunk;
        try {
          chunk = JSON.parse(event.data);
        } catch {
          continue;
        }
        if (first && resume && chunk.type === "start") draft.parts = []; // replayed from the start
        first = false;
        applyChunk(stream, chunk);
        scheduleRender(stream);
      }
    }
  } catch (error) {
    if (stream.detached) return true;
    if (error instanceof ApiError) {
      refused = true;
      toast(describeError(error));
    } else {
      draft.status = "error";
      draft.error = { message: "The connection was lost while the reply was streaming." };
    }
  } finally {
    if (stream.frame) cancelAnimationFrame(stream.frame);
    if (state.stream === stream) {
      state.stream = null;
      setStreaming(false);
    }
  }
  if (stream.detached) return true;
  announce(
    draft.status === "cancelled" ? "Reply stopped." : draft.status === "error" ? "The reply failed." : "Reply finished.",
  );
  // The server's view of what happened: the branch (ids, statuses, versions, usage) and the tasks.
  try {
    await Promise.all([reload(), refreshTasks()]);
  } catch (error) {
    toast(describeError(error));
    renderMessages();
  }
  if (state.chat?.id === chatId) emit("chat-activity", state.chat);
  emit("usage-changed");
  return !refused;
}

function partFor(draft, type, streamId) {
  let part = draft.parts.findLast((entry) => entry.type === type && entry.streamId === streamId);
  if (!part) {
    part = { type, text: "", streamId };
    draft.parts.push(part);
  }
  return part;
}

function toolCallPart(draft, toolCallId, toolName) {
  let part = draft.parts.find((entry) => entry.type === "tool_call" && entry.tool_call_id === toolCallId);
  if (!part) {
    part = { type: "tool_call", tool_call_id: toolCallId, tool_name: toolName, input: undefined };
    draft.parts.push(part);
  }
  if (toolName) part.tool_name = toolName;
  return part;
}

/** Apply one chunk of the AI SDK UI message stream to the reply being shown. */
function applyChunk(stream, chunk) {
  const { draft } = stream;
  switch (chunk.type) {
    case "start": {
      if (chunk.messageId) {
        draft.id = chunk.messageId;
        streamedHere.add(chunk.messageId);
      }
      const meta = chunk.messageMetadata || {};
      if (meta.model_id) draft.model_id = meta.model_id;
      if (meta.user_message_id) {
        draft.parent_id = meta.user_message_id;
        const index = state.messages.indexOf(draft);
        const before = state.messages[index - 1];
        if (before && before.role === "user" && !before.id) before.id = meta.user_message_id;
      }
      break;
    }
    case "text-start":
      partFor(draft, "text", chunk.id);
      break;
    case "text-delta":
      partFor(draft, "text", chunk.id).text += chunk.delta || "";
      break;
    case "reasoning-start":
      partFor(draft, "reasoning", chunk.id);
      break;
    case "reasoning-delta":
      partFor(draft, "reasoning", chunk.id).text += chunk.delta || "";
      break;
    case "tool-input-start":
      stream.toolNames.set(chunk.toolCallId, chunk.toolName);
      toolCallPart(draft, chunk.toolCallId, chunk.toolName);
      break;
    case "tool-input-available":
      stream.toolNames.set(chunk.toolCallId, chunk.toolName);
      toolCallPart(draft, chunk.toolCallId, chunk.toolName).input = chunk.input;
      break;
    case "tool-output-available":
    case "tool-output-error": {
      const name = stream.toolNames.get(chunk.toolCallId) || "";
      const failed = chunk.type === "tool-output-error";
      draft.parts.push({
        type: "tool_result",
        tool_call_id: chunk.toolCallId,
        tool_name: name,
        output: failed ? chunk.errorText : chunk.output,
        is_error: failed,
      });
      if (TASK_TOOLS.has(name)) emit("tasks-changed");
      break;
    }
    case "source-document": {
      if (draft.parts.some((part) => part.type === "source" && part.source_id === chunk.sourceId)) break;
      const parley = chunk.providerMetadata?.parley || {};
      draft.parts.push({
        type: "source",
        source_id: chunk.sourceId,
        media_type: chunk.mediaType,
        title: chunk.title,
        filename: chunk.filename ?? null,
        file_id: parley.fileId ?? null,
        page: parley.page ?? null,
      });
      break;
    }
    case "message-metadata": {
      const meta = chunk.messageMetadata || {};
      if (meta.usage) draft.usage = meta.usage;
      if (meta.model_id) draft.model_id = meta.model_id;
      break;
    }
    case "finish":
      if (draft.status === "streaming") draft.status = "complete";
      break;
    case "abort":
      draft.status = "cancelled";
      break;
    case "error":
      draft.status = "error";
      draft.error = { message: chunk.errorText || "The reply failed." };
      break;
    default:
      break; // start-step, finish-step, text-end, tool-input-delta, ...: nothing to show
  }
}

function scheduleRender(stream) {
  if (stream.frame) return;
  stream.frame = requestAnimationFrame(() => {
    stream.frame = 0;
    if (state.stream !== stream) return;
    const index = state.messages.indexOf(stream.draft);
    const old = elements.messages.querySelector(`li[data-index="${index}"]`);
    if (!old) return;
    const stick = isNearBottom();
    // The user message may have got its id from the `start` chunk.
    const before = old.previousElementSibling;
    if (before && !before.dataset.id && state.messages[index - 1]?.id) {
      before.replaceWith(renderMessage(state.messages[index - 1], index - 1));
    }
    old.replaceWith(renderMessage(stream.draft, index));
    if (stick) scrollToBottom();
  });
}
