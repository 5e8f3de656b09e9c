// The chat list: newest activity first, search, archived chats, and more pages loaded as the
// list is scrolled to its end. It follows the live feed (events.js): a chat created, renamed,
// titled, archived or deleted elsewhere (another tab, the title job, an MCP client) and a reply
// finished anywhere show at once.

import { api } from "./api.js";
import { byId, clear, h } from "./dom.js";
import { isOlder, onEvent, onResync } from "./events.js";
import { on, state } from "./state.js";
import { describeError, toast } from "./ui.js";

const PAGE_SIZE = 20;
const SEARCH_DELAY_MS = 250;

const list = {
  items: [],
  cursor: null,
  archived: false,
  query: "",
  loading: false,
  generation: 0,
};

let observer = null;
let elements = {};

export function initChats({ onNavigate }) {
  elements = {
    list: byId("chat-list"),
    empty: byId("chat-list-empty"),
    more: byId("chat-list-more"),
    scroller: byId("chat-list-scroller"),
    search: byId("chat-search"),
    active: byId("show-active"),
    archived: byId("show-archived"),
  };
  elements.more.addEventListener("click", () => loadMore());
  // Load the next page when the end of the list comes into view.
  observer = new IntersectionObserver(
    (entries) => {
      if (entries.some((entry) => entry.isIntersecting)) loadMore();
    },
    { root: elements.scroller, rootMargin: "0px 0px 120px 0px" },
  );
  observer.observe(elements.more);

  let searchTimer = null;
  elements.search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      list.query = elements.search.value.trim();
      reloadChats();
    }, SEARCH_DELAY_MS);
  });
  const showArchived = (archived) => {
    if (list.archived === archived) return;
    list.archived = archived;
    elements.active.setAttribute("aria-pressed", String(!archived));
    elements.archived.setAttribute("aria-pressed", String(archived));
    reloadChats();
  };
  elements.active.addEventListener("click", () => showArchived(false));
  elements.archived.addEventListener("click", () => showArchived(true));
  elements.list.addEventListener("click", (event) => {
    const link = event.target.closest("a.chat-link");
    if (link) onNavigate();
  });

  on("chat-created", (chat) => {
    if (!list.archived && !list.query) {
      // Its `created` event may have come first (listed untitled): one entry, at the top.
      const listed = list.items.find((item) => item.id === chat.id);
      list.items = list.items.filter((item) => item.id !== chat.id);
      list.items.unshift(listed?.title ? { ...chat, ...listed } : chat);
      render();
    }
  });
  on("chat-changed", (chat) => {
    const index = list.items.findIndex((item) => item.id === chat.id);
    if (index === -1) return;
    if (chat.archived !== list.archived) list.items.splice(index, 1);
    else list.items[index] = chat;
    render();
  });
  on("chat-activity", (chat) => {
    const index = list.items.findIndex((item) => item.id === chat.id);
    if (index !== -1) list.items.splice(index, 1);
    if (chat.archived === list.archived && (index !== -1 || !list.query)) list.items.unshift(chat);
    render();
  });
  on("chat-removed", (chatId) => {
    list.items = list.items.filter((item) => item.id !== chatId);
    render();
  });
  on("chat-opened", () => markCurrent());

  onEvent("parley.chat.created.v1", (event) => chatFromFeed(event.data));
  onEvent("parley.chat.updated.v1", (event) => chatFromFeed(event.data));
  onEvent("parley.chat.deleted.v1", (event) => {
    const chatId = event.data?.id;
    if (!chatId || !list.items.some((item) => item.id === chatId)) return;
    list.items = list.items.filter((item) => item.id !== chatId);
    render();
  });
  onEvent("parley.message.completed.v1", (event) => replyFinished(event.data?.chat_id));
  onResync(() => refreshFirstPage());
}

/** A chat as an event has it: changed in place, taken off, or put where its activity says. */
function chatFromFeed(chat) {
  if (!chat || typeof chat.id !== "string") return;
  const index = list.items.findIndex((item) => item.id === chat.id);
  if (index !== -1) {
    const current = list.items[index];
    if (isOlder(chat, current)) return;
    if (chat.archived !== list.archived) list.items.splice(index, 1);
    // A new chat is listed under its first line here until the server titles it.
    else list.items[index] = { ...chat, title: chat.title || current.title };
    render();
    return;
  }
  // Not listed: it belongs here if it is of the kind shown (a search is the server's to answer).
  if (chat.archived !== list.archived || list.query) return;
  const at = list.items.findIndex((item) => Date.parse(item.updated_at) < Date.parse(chat.updated_at));
  if (at === -1) {
    if (list.cursor) return; // older than the loaded pages: it comes with a later one
    list.items.push(chat);
  } else list.items.splice(at, 0, chat);
  render();
}

/** A reply was finished (here or anywhere): its chat moves to the top, as the server has it. */
async function replyFinished(chatId) {
  if (typeof chatId !== "string") return;
  const generation = list.generation;
  let chat;
  try {
    chat = await api(`/api/chats/${encodeURIComponent(chatId)}`);
  } catch {
    return; // deleted meanwhile, or unreachable: the next event or read says
  }
  if (generation !== list.generation) return;
  const index = list.items.findIndex((item) => item.id === chat.id);
  const current = index === -1 ? null : list.items[index];
  if (index !== -1) list.items.splice(index, 1);
  if (chat.archived === list.archived && (current || !list.query)) {
    list.items.unshift({ ...chat, title: chat.title || current?.title || null });
  }
  render();
}

/** Read the first page again and merge it (after the feed may have missed events). */
async function refreshFirstPage() {
  if (list.loading) return;
  const generation = list.generation;
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), archived: String(list.archived) });
  if (list.query) params.set("q", list.query);
  let page;
  try {
    page = await api(`/api/chats?${params}`);
  } catch {
    return;
  }
  if (generation !== list.generation) return;
  const fresh = new Set(page.items.map((item) => item.id));
  // Without more pages, the first page is the whole list: what it lacks is gone.
  const rest = page.next_cursor ? list.items.filter((item) => !fresh.has(item.id)) : [];
  list.items = [...page.items, ...rest];
  if (!page.next_cursor) list.cursor = null;
  else if (!list.cursor) list.cursor = page.next_cursor;
  render();
}

/** Start the list again from its first page (after a search, a filter change, a sign-in). */
export async function reloadChats() {
  list.generation += 1;
  list.items = [];
  list.cursor = null;
  list.loading = false;
  render();
  await loadMore();
}

/** Forget the list (signed out). */
export function resetChats() {
  list.generation += 1;
  list.items = [];
  list.cursor = null;
  list.query = "";
  list.archived = false;
  elements.search.value = "";
  elements.active.setAttribute("aria-pressed", "true");
  elements.archived.setAttribute("aria-pressed", "false");
  clear(elements.list);
}

async function loadMore() {
  if (list.loading) return;
  const first = list.items.length === 0 && list.cursor === null;
  if (!first && !list.cursor) return;
  const generation = list.generation;
  list.loading = true;
  elements.more.setAttribute("aria-busy", "true");
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), archived: String(list.archived) });
  if (list.query) params.set("q", list.query);
  if (list.cursor) params.set("cursor", list.cursor);
  try {
    const page = await api(`/api/chats?${params}`);
    if (generation !== list.generation) return;
    const known = new Set(list.items.map((item) => item.id));
    list.items.push(...page.items.filter((item) => !known.has(item.id)));
    list.cursor = page.next_cursor;
  } catch (error) {
    if (generation === list.generation) toast(describeError(error));
  } finally {
    if (generation === list.generation) {
      list.loading = false;
      elements.more.removeAttribute("aria-busy");
      render();
      // Still in view after this page (a tall window): observing again checks once more.
      if (list.cursor && observer) {
        observer.unobserve(elements.more);
        observer.observe(elements.more);
      }
    }
  }
}

function render() {
  const current = state.chat?.id;
  const items = list.items.map((chat) => {
    const link = h(
      "a",
      {
        class: "chat-link",
        dataset: { chatId: chat.id },
        "aria-current": chat.id === current ? "page" : null,
      },
      h("span", { class: "chat-link-title", text: chat.title || "Untitled chat" }),
    );
    link.href = `#/chat/${encodeURIComponent(chat.id)}`;
    return h("li", {}, link);
  });
  elements.list.replaceChildren(...items);
  elements.empty.hidden = list.items.length > 0 || list.loading;
  elements.empty.textContent = list.query
    ? "No chats match your search."
    : list.archived
      ? "No archived chats."
      : "No chats yet.";
  elements.more.hidden = !list.cursor;
}

function markCurrent() {
  const current = state.chat?.id;
  for (const link of elements.list.querySelectorAll("a.chat-link")) {
    if (link.dataset.chatId === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}
