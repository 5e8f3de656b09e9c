// Parley's web page: signing in (or up, or as a guest), then the chat list, the conversation, the
// tasks panel and the knowledge dialog (files and knowledge bases), kept up to date by the live
// feed of the user's events (events.js), with reminders as notifications. Plain JavaScript
// modules, no build step (docs/web.md).

import { displayName, initAccount } from "./account.js";
import { ApiError, api, session } from "./api.js";
import { initChats, reloadChats, resetChats } from "./chats.js";
import { focusComposer, initConversation, isStreaming, newChat, openChat, renderModels, stopReply } from "./conversation.js";
import { byId } from "./dom.js";
import { startFeed, stopFeed } from "./events.js";
import { initKnowledge, refreshKnowledge, resetKnowledge } from "./knowledge.js";
import { initReminders, resetReminders } from "./reminders.js";
import { state } from "./state.js";
import { initTasks, refreshTasks, resetTasks } from "./tasks.js";
import { describeError, isNarrow, onLayoutChange, tasksIsDrawer, toast } from "./ui.js";

const CHAT_ROUTE = /^#\/chat\/([0-9a-fA-F-]{8,64})$/;
// How long the page waits for the live feed to open before reading the lists anyway.
const FEED_WAIT_MS = 3000;

let authMode = "signin";
let inApp = false;

// ---- signing in -------------------------------------------------------------------------------

function setAuthMode(mode) {
  authMode = mode;
  const signup = mode === "signup";
  byId("auth-name-field").hidden = !signup;
  byId("auth-password-hint").hidden = !signup;
  byId("auth-password").autocomplete = signup ? "new-password" : "current-password";
  byId("auth-submit").textContent = signup ? "Create account" : "Sign in";
  byId("auth-lead").textContent = signup ? "Create an account to keep your chats and tasks." : "Sign in to chat with your assistant.";
  byId("auth-switch-text").textContent = signup ? "Have an account?" : "New here?";
  byId("auth-switch").textContent = signup ? "Sign in" : "Create an account";
  byId("auth-error").textContent = "";
}

async function submitAuth(event) {
  event.preventDefault();
  const email = byId("auth-email").value.trim();
  const password = byId("auth-password").value;
  const error = byId("auth-error");
  error.textContent = "";
  if (!email) {
    error.textContent = "Enter your email address.";
    byId("auth-email").focus();
    return;
  }
  if (!password || (authMode === "signup" && password.length < 8)) {
    error.textContent = authMode === "signup" ? "The password needs at least 8 characters." : "Enter your password.";
    byId("auth-password").focus();
    return;
  }
  const body = { email, password };
  const name = byId("auth-name").value.trim();
  if (authMode === "signup" && name) body.display_name = name;
  const submit = byId("auth-submit");
  submit.disabled = true;
  try {
    const path = authMode === "signup" ? "/api/auth/register" : "/api/auth/login";
    const data = await api(path, { method: "POST", body, auth: false });
    byId("auth-password").value = "";
    await signedIn(data);
  } catch (failure) {
    error.textContent =
      failure instanceof ApiError && failure.code === "conflict"
        ? "An account with this email exists already: sign in instead."
        : describeError(failure);
  } finally {
    submit.disabled = false;
  }
}

async function continueAsGuest() {
  const button = byId("guest-button");
  button.disabled = true;
  try {
    await signedIn(await api("/api/auth/guest", { method: "POST", auth: false }));
  } catch (failure) {
    byId("auth-error").textContent = describeError(failure);
  } finally {
    button.disabled = false;
  }
}

async function signedIn({ user, tokens }) {
  session.save({ tokens, user });
  await enterApp(user);
}

function showAuth(message = "") {
  inApp = false;
  setAuthMode("signin");
  byId("boot").hidden = true;
  byId("app-view").hidden = true;
  byId("auth-view").hidden = false;
  document.title = "Sign in · Parley";
  byId("auth-error").textContent = message;
  byId("auth-email").focus();
}

/** Leave the app for the sign-in screen (log out, or a session that ended). */
function signOut(message) {
  stopFeed(); // nothing of this session's events reaches the next one
  session.clear();
  newChat({ focus: false });
  state.user = null;
  byId("account-name").textContent = "";
  resetChats();
  resetTasks();
  resetKnowledge();
  resetReminders();
  history.replaceState(null, "", location.pathname);
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  showAuth(message);
}

// ---- the app ------------------------------------------------------------------------------------

function showUser(user) {
  state.user = user;
  byId("account-name").textContent = displayName(user);
}

async function enterApp(user) {
  showUser(user);
  inApp = true;
  byId("boot").hidden = true;
  byId("auth-view").hidden = true;
  byId("app-view").hidden = false;
  layout();
  // The feed first: the lists read once it is open miss nothing that happens after.
  const feedOpen = Promise.race([startFeed(user.id), new Promise((resolve) => setTimeout(resolve, FEED_WAIT_MS))]);
  try {
    const page = await api("/api/models?limit=100");
    state.models = page.items;
  } catch (error) {
    toast(`The model list could not be read: ${describeError(error)}`);
  }
  renderModels();
  // The conversation opens at once (a model picked meanwhile is kept); the lists wait for the feed.
  const opening = route();
  await feedOpen;
  if (!inApp || state.user?.id !== user.id) return; // signed out meanwhile
  await Promise.all([reloadChats(), refreshTasks(), refreshKnowledge(), opening]);
}

function route() {
  if (!inApp) return Promise.resolve();
  const match = CHAT_ROUTE.exec(location.hash);
  if (match) {
    if (state.chat?.id === match[1]) return Promise.resolve();
    return openChat(match[1]);
  }
  if (state.chat || !byId("messages").childElementCount) newChat();
  return Promise.resolve();
}

// ---- layout: drawers on narrow screens ------------------------------------------------------------

const app = () => byId("app-view");

function layout() {
  // The tasks panel starts open where there is room for it.
  const view = app();
  if (!view.dataset.layoutReady) {
    view.dataset.layoutReady = "1";
    view.classList.toggle("tasks-hidden", tasksIsDrawer());
  }
  if (!isNarrow()) view.classList.remove("sidebar-open");
  if (!tasksIsDrawer()) view.classList.remove("tasks-open");
  syncToggles();
}

function tasksVisible() {
  const view = app();
  return tasksIsDrawer() ? view.classList.contains("tasks-open") : !view.classList.contains("tasks-hidden");
}

function syncToggles() {
  const view = app();
  const sidebarOpen = view.classList.contains("sidebar-open");
  byId("toggle-sidebar").setAttribute("aria-expanded", String(sidebarOpen));
  byId("toggle-tasks").setAttribute("aria-expanded", String(tasksVisible()));
  const drawerOpen = (isNarrow() && sidebarOpen) || (tasksIsDrawer() && view.classList.contains("tasks-open"));
  byId("backdrop").hidden = !drawerOpen;
  // A closed drawer is out of the tab order too (it is visibility: hidden in CSS).
}

function toggleSidebar(open) {
  const view = app();
  const next = open ?? !view.classList.contains("sidebar-open");
  view.classList.toggle("sidebar-open", next);
  if (next) view.classList.remove("tasks-open");
  syncToggles();
  if (next) byId("new-chat").focus();
}

function toggleTasks(open) {
  const view = app();
  const next = open ?? !tasksVisible();
  if (tasksIsDrawer()) {
    view.classList.toggle("tasks-open", next);
    if (next) view.classList.remove("sidebar-open");
  } else view.classList.toggle("tasks-hidden", !next);
  syncToggles();
  if (next) byId("task-input").focus();
  else byId("toggle-tasks").focus();
}

function closeDrawers() {
  const view = app();
  const wasOpen = view.classList.contains("sidebar-open") || view.classList.contains("tasks-open");
  const sidebar = view.classList.contains("sidebar-open");
  view.classList.remove("sidebar-open", "tasks-open");
  syncToggles();
  if (wasOpen) byId(sidebar ? "toggle-sidebar" : "toggle-tasks").focus();
  return wasOpen;
}

function onKeydown(event) {
  if (event.key !== "Escape" || !inApp) return;
  if (document.querySelector("dialog[open]")) return; // the dialog closes itself
  if (isStreaming()) {
    event.preventDefault();
    stopReply();
    return;
  }
  if ((isNarrow() || tasksIsDrawer()) && closeDrawers()) event.preventDefault();
}

// ---- start ----------------------------------------------------------------------------------------

function wire() {
  byId("auth-form").addEventListener("submit", submitAuth);
  byId("auth-switch").addEventListener("click", () => {
    setAuthMode(authMode === "signin" ? "signup" : "signin");
    byId("auth-email").focus();
  });
  byId("guest-button").addEventListener("click", continueAsGuest);
  byId("toggle-sidebar").addEventListener("click", () => toggleSidebar());
  byId("toggle-tasks").addEventListener("click", () => toggleTasks());
  byId("close-tasks").addEventListener("click", () => toggleTasks(false));
  byId("backdrop").addEventListener("click", () => closeDrawers());
  byId("new-chat").addEventListener("click", () => {
    history.pushState(null, "", location.pathname);
    newChat();
    if (isNarrow()) closeDrawers();
    focusComposer();
  });
  document.addEventListener("keydown", onKeydown);
  window.addEventListener("hashchange", () => route());
  onLayoutChange(() => layout());

  initConversation();
  initChats({
    onNavigate: () => {
      if (isNarrow()) closeDrawers();
    },
  });
  initTasks();
  initReminders();
  initKnowledge();
  initAccount({ signOut, userChanged: showUser });
  session.addEventListener("signed-out", () => {
    if (inApp) signOut("Your session has ended: sign in again.");
  });
}

async function boot() {
  wire();
  setAuthMode("signin");
  if (!session.tokens) {
    showAuth();
    return;
  }
  try {
    const user = await api("/api/users/me");
    session.save({ user });
    await enterApp(user);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signOut("");
    else {
      byId("boot").textContent = `Parley could not be reached (${describeError(error)}). Reload the page to try again.`;
    }
  }
}

boot();
