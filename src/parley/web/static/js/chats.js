// The chat list: newest activity first, search, archived chats, and more pages loaded as the
// list is scrolled to its end.

import { api } from "./api.js";
import { byId, clear, h } from "./dom.js";
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
      list.items.unshift(chat);
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
