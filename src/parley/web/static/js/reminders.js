// Reminders: a task's `parley.reminder.due.v1` event shows as a card in the page's reminder area
// (a polite live region: the title, when the task is due, "Mark done" and "Dismiss"), and, when
// the user has allowed it, as a system notification. Permission is asked only when the user
// presses a "Turn on notifications" button, never by itself. The same reminder arriving twice
// (after a reconnect, or in an event redelivered) shows once; a reminder whose task is completed
// or deleted (here, in another tab, by the assistant) goes away.

import { api } from "./api.js";
import { byId, formatDate, formatDateTime, h } from "./dom.js";
import { onEvent } from "./events.js";
import { emit } from "./state.js";
import { announce, describeError, toast } from "./ui.js";

export const REMINDER_DUE = "parley.reminder.due.v1";

let elements = {};
/** Reminders shown (or shown and dismissed) in this page: event ids and task/time keys. */
const shown = new Set();
/** The cards showing: key -> {card, taskId}. */
const cards = new Map();
const notifyButtons = new Set();
let cardNumber = 0;

/** Whether the browser can show system notifications here at all. */
function notificationsSupported() {
  return typeof window.Notification === "function";
}

function permission() {
  return notificationsSupported() ? window.Notification.permission : "unsupported";
}

export function initReminders() {
  elements = { area: byId("reminders"), list: byId("reminder-list"), notify: byId("reminders-notify") };
  wireNotifyButton(elements.notify, () => cards.size > 0);
  onEvent(REMINDER_DUE, (event) => showReminder(event));
  onEvent("parley.task.completed.v1", (event) => dismissTask(event.data?.id));
  onEvent("parley.task.deleted.v1", (event) => dismissTask(event.data?.id));
}

/** Forget every reminder (signed out). */
export function resetReminders() {
  shown.clear();
  for (const { card } of cards.values()) card.remove();
  cards.clear();
  syncArea();
}

// ---- permission -------------------------------------------------------------------------------

/**
 * Make `button` ask for notifications when pressed; it shows while `wanted()` and the choice is
 * still to be made. Call `syncNotifyButtons()` when `wanted()` may have changed.
 */
export function wireNotifyButton(button, wanted) {
  button.wanted = wanted;
  notifyButtons.add(button);
  button.addEventListener("click", () => askPermission());
  syncNotifyButtons();
}

export function syncNotifyButtons() {
  const undecided = permission() === "default";
  for (const button of notifyButtons) button.hidden = !(undecided && button.wanted());
}

async function askPermission() {
  if (!notificationsSupported()) return;
  let answer;
  try {
    answer = await window.Notification.requestPermission();
  } catch {
    answer = window.Notification.permission;
  }
  syncNotifyButtons();
  if (answer === "granted") announce("Notifications are on: reminders show on your screen.");
  else if (answer === "denied") toast("Notifications are blocked: allow them in your browser's site settings.");
}

// ---- showing a reminder ----------------------------------------------------------------------------

function showReminder(event) {
  const task = event.data?.task;
  if (!task || typeof task.id !== "string") return;
  const remindAt = event.data.remind_at || task.remind_at || "";
  const key = `${task.id}|${remindAt}`;
  if ((event.id && shown.has(event.id)) || shown.has(key)) return;
  if (event.id) shown.add(event.id);
  shown.add(key);
  if (task.completed) return;

  const titleId = `reminder-title-${++cardNumber}`;
  const due = task.due_at ? `Due ${formatDate(task.due_at, { utc: true })}` : "";
  const when = remindAt ? formatDateTime(remindAt) : "";
  const done = h("button", { type: "button", class: "primary small", text: "Mark done" });
  const dismiss = h("button", { type: "button", class: "small", text: "Dismiss" });
  const card = h(
    "li",
    { class: "reminder", "aria-labelledby": titleId, dataset: { taskId: task.id } },
    h("p", { class: "reminder-kicker", text: when ? `Reminder · ${when}` : "Reminder" }),
    h("p", { class: "reminder-title", id: titleId, text: task.title }),
    due ? h("p", { class: "reminder-due", text: due }) : null,
    h("div", { class: "reminder-actions" }, done, dismiss),
  );
  done.setAttribute("aria-describedby", titleId);
  dismiss.setAttribute("aria-describedby", titleId);
  done.addEventListener("click", () => markDone(key, task, done));
  dismiss.addEventListener("click", () => {
    removeCard(key);
    announce(`Reminder dismissed: ${task.title}`);
  });
  cards.set(key, { card, taskId: task.id });
  elements.list.append(card);
  syncArea();
  notify(task, due, key);
}

function notify(task, due, key) {
  if (permission() !== "granted") return;
  try {
    const notification = new window.Notification(`Reminder: ${task.title}`, {
      body: due || "A task of yours in Parley.",
      // The same reminder shown by several tabs replaces itself rather than piling up.
      tag: `parley-reminder-${key}`,
    });
    notification.addEventListener?.("click", () => {
      window.focus();
      notification.close?.();
      cards.get(key)?.card.querySelector("button")?.focus();
    });
  } catch {
    // Some browsers only show notifications from a service worker: the card is there anyway.
  }
}

async function markDone(key, task, button) {
  button.disabled = true;
  try {
    const updated = await api(`/api/tasks/${encodeURIComponent(task.id)}`, { method: "PATCH", body: { completed: true } });
    emit("task-saved", updated);
    removeCard(key);
    announce(`Completed: ${task.title}`);
  } catch (error) {
    button.disabled = false;
    if (error?.status === 404) {
      emit("task-gone", task.id);
      removeCard(key);
      toast("That task does not exist any more.");
    } else toast(describeError(error));
  }
}

function dismissTask(taskId) {
  if (!taskId) return;
  for (const [key, entry] of [...cards]) if (entry.taskId === taskId) removeCard(key);
}

function removeCard(key) {
  const entry = cards.get(key);
  if (!entry) return;
  const hadFocus = entry.card.contains(document.activeElement);
  const next = entry.card.nextElementSibling || entry.card.previousElementSibling;
  entry.card.remove();
  cards.delete(key);
  syncArea();
  if (hadFocus) {
    const target = next?.querySelector("button") || document.getElementById("composer-input");
    target?.focus();
  }
}

function syncArea() {
  elements.area.hidden = cards.size === 0;
  syncNotifyButtons();
}
