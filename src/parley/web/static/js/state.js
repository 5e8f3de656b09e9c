// The page's shared state, and a tiny event bus between its parts (chat list, conversation,
// tasks panel, account dialog, knowledge).

export const state = {
  /** The signed-in user (`/api/users/me`). */
  user: null,
  /** The model catalog (`/api/models`). */
  models: [],
  /** The open chat, or null for a new chat not created yet. */
  chat: null,
  /** The model picked for a new chat before it exists. */
  draftModelId: null,
  /** The knowledge bases picked for a new chat before it exists. */
  draftKnowledgeIds: [],
  /** The messages on the shown branch, oldest first (the loaded part of it). */
  messages: [],
  /** Cursor for messages before the first loaded one, or null. */
  earlierCursor: null,
  /** The reply being streamed into the page: `{chatId, controller, draft, ...}` or null. */
  stream: null,
  /** The id of the user message being edited, or null. */
  editingId: null,
  /** Tool cards the user opened (by tool call id), kept open across re-renders. */
  openTools: new Set(),
};

const bus = new EventTarget();

/** Tell the other parts of the page that something happened. */
export function emit(name, detail = null) {
  bus.dispatchEvent(new CustomEvent(name, { detail }));
}

/** Listen for `name`. */
export function on(name, handler) {
  bus.addEventListener(name, (event) => handler(event.detail));
}

/** The catalog name of a model id (the id itself when it is not in the catalog). */
export function modelName(id) {
  if (!id) return "";
  const model = state.models.find((entry) => entry.id === id);
  return model ? model.name : id;
}

/** The catalog's default model id. */
export function defaultModelId() {
  const model = state.models.find((entry) => entry.is_default) || state.models[0];
  return model ? model.id : null;
}
