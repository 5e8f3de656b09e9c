// Small shared pieces of the interface: notices, the confirm and rename dialogs, announcements for
// screen readers, and the narrow-screen drawers.

import { byId } from "./dom.js";

let toastTimer = null;

/** Show a short notice (errors mostly); it goes away by itself. */
export function toast(message) {
  const element = byId("toast");
  element.textContent = message;
  element.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    element.hidden = true;
  }, 6000);
}

/** Say something to screen readers (a polite live region). */
export function announce(message) {
  const element = byId("live-status");
  element.textContent = "";
  requestAnimationFrame(() => {
    element.textContent = message;
  });
}

/** The message of an error, for a person. */
export function describeError(error) {
  if (error && error.name === "ApiError") {
    const detail = error.details && error.details[0];
    return detail ? `${error.message} (${detail.field}: ${detail.message})` : error.message;
  }
  if (error instanceof TypeError) return "Parley could not be reached. Check your connection.";
  return (error && error.message) || "Something went wrong.";
}

// Cancel buttons close their dialog with nothing chosen (they are not submit buttons, so Enter in
// a field submits the dialog's real action).
document.addEventListener("click", (event) => {
  const cancel = event.target.closest?.(".dialog-cancel");
  if (cancel) cancel.closest("dialog")?.close("cancel");
});

function runDialog(dialog) {
  return new Promise((resolve) => {
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
    dialog.showModal();
  });
}

/** Ask before something that cannot be undone; resolves true when confirmed. */
export async function confirmAction({ title, text, confirmLabel = "Delete" }) {
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  byId("confirm-ok").textContent = confirmLabel;
  const dialog = byId("confirm-dialog");
  const result = runDialog(dialog);
  byId("confirm-ok").focus();
  return (await result) === "confirm";
}

/** Ask for a new chat title; resolves to the title, or null when cancelled. */
export async function askTitle(current) {
  const input = byId("rename-input");
  input.value = current || "";
  const dialog = byId("rename-dialog");
  const result = runDialog(dialog);
  input.focus();
  input.select();
  const value = await result;
  const title = input.value.trim();
  return value === "save" && title ? title : null;
}

const narrow = window.matchMedia("(max-width: 699px)");
const medium = window.matchMedia("(max-width: 1099px)");

/** Whether the sidebar is a drawer (phones). */
export function isNarrow() {
  return narrow.matches;
}

/** Whether the tasks panel is a drawer (phones and tablets). */
export function tasksIsDrawer() {
  return medium.matches;
}

export function onLayoutChange(callback) {
  narrow.addEventListener("change", callback);
  medium.addEventListener("change", callback);
}
