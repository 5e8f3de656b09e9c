// The tasks panel: the user's tasks (open first, newest first), ticked complete here, edited here
// (title, due date, reminder, repeat), or changed anywhere else — by the assistant, an MCP client,
// another tab — which the live feed (events.js) brings in at once: each task event is applied in
// place, so nothing flickers, and a task this tab made itself (which comes back as an event too)
// shows once. A full read (`refreshTasks`, after a reply or when the feed may have missed events)
// is merged the same way.

import { ApiError, api } from "./api.js";
import { byId, formatDate, formatDateTime, h } from "./dom.js";
import { isOlder, onEvent, onResync } from "./events.js";
import { syncNotifyButtons, wireNotifyButton } from "./reminders.js";
import { on } from "./state.js";
import { announce, describeError, toast } from "./ui.js";

const LIMIT = 100;
const DAYS = { MO: "Monday", TU: "Tuesday", WE: "Wednesday", TH: "Thursday", FR: "Friday", SA: "Saturday", SU: "Sunday" };
const DAY_CODES = ["SU", "MO", "TU", "WE", "TH", "FR", "SA"];
export const WEEKDAYS_RULE = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR";

let elements = {};
let running = null;
let again = false;
let more = false;
/** The tasks shown, by id. */
const tasks = new Map();
/** Ids of tasks known to be deleted: a late event or read never brings one back. */
const deleted = new Set();
/** A counter of changes applied, and the value at each task's last change (for merging reads). */
let changes = 0;
const touched = new Map();
/** The list item of each task, and the task it was drawn from. */
const nodes = new Map();
let newForm = null;
let editForm = null;
let editing = null;

export function initTasks() {
  elements = {
    list: byId("task-list"),
    empty: byId("task-empty"),
    form: byId("task-form"),
    input: byId("task-input"),
    count: byId("task-count"),
    options: byId("task-options"),
    dialog: byId("task-dialog"),
    editForm: byId("task-edit-form"),
    editTitle: byId("edit-title"),
    editError: byId("edit-error"),
  };
  newForm = new ScheduleFields("task");
  editForm = new ScheduleFields("edit");
  elements.form.addEventListener("submit", (event) => {
    event.preventDefault();
    addTask();
  });
  elements.editForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveEdit();
  });
  elements.dialog.addEventListener("close", () => {
    const task = editing;
    editing = null;
    if (task) document.getElementById(`task-edit-${task.id}`)?.focus();
  });

  on("tasks-changed", () => refreshTasks());
  on("task-saved", (task) => applyTask(task));
  on("task-gone", (taskId) => forgetTask(taskId));
  for (const type of ["parley.task.created.v1", "parley.task.updated.v1", "parley.task.completed.v1"]) {
    onEvent(type, (event) => applyTask(event.data));
  }
  onEvent("parley.task.deleted.v1", (event) => forgetTask(event.data?.id));
  onResync(() => refreshTasks());
}

// ---- the tasks shown ------------------------------------------------------------------------------

/** Open first, then newest first (the API's default order). */
function compare(a, b) {
  if (a.completed !== b.completed) return a.completed ? 1 : -1;
  const byCreated = Date.parse(b.created_at) - Date.parse(a.created_at);
  if (byCreated) return byCreated;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** Whether a task not shown yet belongs in the list (which holds the newest `LIMIT` tasks). */
function belongs(task) {
  if (!more || tasks.size === 0) return true;
  let oldest = Infinity;
  for (const shown of tasks.values()) oldest = Math.min(oldest, Date.parse(shown.created_at));
  return Date.parse(task.created_at) >= oldest;
}

function upsert(task) {
  if (!task || typeof task.id !== "string" || deleted.has(task.id)) return false;
  const current = tasks.get(task.id);
  if (current ? isOlder(task, current) : !belongs(task)) return false;
  tasks.set(task.id, task);
  touched.set(task.id, ++changes);
  return true;
}

/** Show `task` as the server has it now (an answer of the API, or an event's data). */
export function applyTask(task) {
  if (upsert(task)) render();
}

/** Take a task off the list (it was deleted). */
export function forgetTask(taskId) {
  if (!taskId) return;
  deleted.add(taskId);
  touched.set(taskId, ++changes);
  if (tasks.delete(taskId)) render();
}

/** Read the tasks again; calls while one is running make it run once more afterwards. */
export function refreshTasks() {
  if (running) {
    again = true;
    return running;
  }
  running = (async () => {
    do {
      again = false;
      const since = changes;
      try {
        const page = await api(`/api/tasks?limit=${LIMIT}`);
        merge(page.items, since);
        more = Boolean(page.next_cursor);
        render();
      } catch (error) {
        if (error?.status !== 401) toast(describeError(error));
      }
    } while (again);
  })().finally(() => {
    running = null;
  });
  return running;
}

/** Merge a read that started at change `since`: what changed meanwhile (events) is kept. */
function merge(items, since) {
  const fresh = new Map(items.map((task) => [task.id, task]));
  for (const id of [...tasks.keys()]) {
    if (!fresh.has(id) && (touched.get(id) ?? 0) <= since) tasks.delete(id);
  }
  for (const task of items) {
    if (deleted.has(task.id)) continue;
    const current = tasks.get(task.id);
    if (current && isOlder(task, current)) continue;
    tasks.set(task.id, task);
  }
}

export function resetTasks() {
  tasks.clear();
  deleted.clear();
  touched.clear();
  nodes.clear();
  more = false;
  editing = null;
  if (elements.dialog?.open) elements.dialog.close();
  newForm?.clear();
  if (elements.list) {
    elements.list.replaceChildren();
    render();
  }
}

// ---- changing tasks ---------------------------------------------------------------------------------

async function addTask() {
  const title = elements.input.value.trim();
  if (!title) {
    elements.input.focus();
    return;
  }
  newForm.clearErrors();
  const body = { title, ...newForm.values() };
  try {
    const task = await api("/api/tasks", { method: "POST", body });
    applyTask(task); // its own `created` event, when it comes, changes nothing
    elements.input.value = "";
    newForm.clear();
    announce(`Task added: ${title}`);
  } catch (error) {
    if (!newForm.showErrors(error)) toast(describeError(error));
  }
}

async function setCompleted(taskId, completed) {
  const task = tasks.get(taskId);
  if (!task) return;
  try {
    const updated = await api(`/api/tasks/${task.id}`, { method: "PATCH", body: { completed } });
    applyTask(updated);
    announce(completed ? `Completed: ${task.title}` : `Reopened: ${task.title}`);
  } catch (error) {
    toast(describeError(error));
    if (error instanceof ApiError && error.status === 404) forgetTask(task.id);
    else {
      nodes.delete(task.id); // drawn again as it is
      render();
    }
  }
  document.getElementById(`task-${task.id}`)?.focus();
}

async function remove(taskId) {
  const task = tasks.get(taskId);
  if (!task) return;
  const item = nodes.get(taskId)?.item;
  const neighbour = item?.nextElementSibling || item?.previousElementSibling;
  try {
    await api(`/api/tasks/${task.id}`, { method: "DELETE" });
    forgetTask(task.id);
    announce(`Deleted: ${task.title}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) forgetTask(task.id);
    else toast(describeError(error));
  }
  if (!tasks.has(taskId)) {
    const next = neighbour?.querySelector?.("input[type=checkbox]");
    (next && next.isConnected ? next : elements.input).focus();
  }
}

function openEditor(taskId) {
  const task = tasks.get(taskId);
  if (!task) return;
  editing = task;
  elements.editTitle.value = task.title;
  elements.editError.textContent = "";
  editForm.clearErrors();
  editForm.fill(task);
  elements.dialog.showModal();
  elements.editTitle.focus();
}

async function saveEdit() {
  const task = editing;
  if (!task) return;
  const title = elements.editTitle.value.trim();
  elements.editError.textContent = "";
  editForm.clearErrors();
  if (!title) {
    elements.editError.textContent = "A task needs a title.";
    elements.editTitle.focus();
    return;
  }
  const body = editForm.changesFrom(task);
  if (title !== task.title) body.title = title;
  if (!Object.keys(body).length) {
    elements.dialog.close();
    return;
  }
  try {
    const updated = await api(`/api/tasks/${task.id}`, { method: "PATCH", body });
    applyTask(updated);
    elements.dialog.close();
    announce(`Saved: ${updated.title}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      forgetTask(task.id);
      elements.dialog.close();
      toast("That task does not exist any more.");
    } else if (!editForm.showErrors(error)) elements.editError.textContent = describeError(error);
  }
}

// ---- drawing the list --------------------------------------------------------------------------------

function render() {
  const list = elements.list;
  const active = list.contains(document.activeElement) ? document.activeElement.id : "";
  const sorted = [...tasks.values()].sort(compare);
  for (const [id, entry] of [...nodes]) {
    if (!tasks.has(id)) {
      entry.item.remove();
      nodes.delete(id);
    }
  }
  // Items already in place are not touched (no flicker, the focus stays); others move or are new.
  const items = sorted.map((task) => itemFor(task));
  let cursor = list.firstChild;
  for (const item of items) {
    if (item === cursor) {
      cursor = cursor.nextSibling;
      continue;
    }
    list.insertBefore(item, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
  if (more) list.append(h("li", { class: "muted small", text: `Showing the ${LIMIT} newest tasks.` }));
  if (active && !list.contains(document.activeElement)) document.getElementById(active)?.focus();

  const open = sorted.filter((task) => !task.completed).length;
  elements.empty.hidden = tasks.size > 0;
  elements.count.hidden = open === 0;
  elements.count.textContent = String(open);
  elements.count.setAttribute("aria-label", `${open} open`);
}

function itemFor(task) {
  const key = JSON.stringify(task);
  const entry = nodes.get(task.id);
  if (entry && entry.key === key) return entry.item;
  const item = renderTask(task);
  if (entry) entry.item.remove(); // the new one takes its place below
  nodes.set(task.id, { key, item });
  return item;
}

function renderTask(task) {
  const checkbox = h("input", {
    type: "checkbox",
    id: `task-${task.id}`,
    checked: task.completed,
    on: { change: (event) => setCompleted(task.id, event.target.checked) },
  });
  const details = [];
  if (task.due_at) details.push(h("span", { class: "task-due", text: `Due ${formatDate(task.due_at, { utc: true })}` }));
  if (task.priority && task.priority !== "medium") {
    details.push(h("span", { class: `badge priority-${task.priority}`, text: `${task.priority} priority` }));
  }
  if (task.recurrence) {
    details.push(h("span", { class: "task-repeat", title: task.recurrence, text: describeRule(task.recurrence) }));
  }
  if (task.remind_at && !task.completed) {
    details.push(h("span", { class: "task-reminder", text: `Reminder at ${formatDateTime(task.remind_at)}` }));
  }
  for (const tag of task.tags || []) details.push(h("span", { class: "tag", text: `#${tag}` }));
  return h(
    "li",
    { class: task.completed ? "task done" : "task", dataset: { taskId: task.id } },
    checkbox,
    h(
      "div",
      { class: "task-text" },
      h("label", { for: `task-${task.id}`, class: "task-title", text: task.title }),
      details.length ? h("div", { class: "task-details" }, details) : null,
    ),
    h(
      "div",
      { class: "task-buttons" },
      h("button", {
        type: "button",
        id: `task-edit-${task.id}`,
        class: "icon-button small task-edit",
        "aria-label": `Edit task ${task.title}`,
        "aria-haspopup": "dialog",
        title: "Edit: due date, reminder, repeat",
        text: "✎",
        on: { click: () => openEditor(task.id) },
      }),
      h("button", {
        type: "button",
        id: `task-delete-${task.id}`,
        class: "icon-button small task-delete",
        text: "×",
        "aria-label": `Delete task ${task.title}`,
        on: { click: () => remove(task.id) },
      }),
    ),
  );
}

/** "Repeats daily", "Repeats weekly on Monday", ... for an RRULE (the rule itself when unusual). */
export function describeRule(rule) {
  const parts = {};
  for (const piece of String(rule).toUpperCase().replace(/^RRULE:/, "").split(";")) {
    const [name, value = ""] = piece.split("=");
    if (name) parts[name.trim()] = value.trim();
  }
  const interval = Number(parts.INTERVAL || "1");
  const others = Object.keys(parts).filter((name) => !["FREQ", "INTERVAL", "BYDAY", "WKST"].includes(name));
  const days = (parts.BYDAY || "").split(",").filter(Boolean);
  const plainDays = days.every((day) => DAYS[day]);
  if (others.length || !plainDays || !Number.isInteger(interval) || interval < 1) return `Repeats: ${rule}`;
  const every = (one, many) => (interval === 1 ? one : `every ${interval} ${many}`);
  const onDays = days.length ? ` on ${days.map((day) => DAYS[day]).join(", ")}` : "";
  switch (parts.FREQ) {
    case "DAILY":
      return days.length ? `Repeats: ${rule}` : `Repeats ${every("daily", "days")}`;
    case "WEEKLY":
      if (interval === 1 && days.join(",") === "MO,TU,WE,TH,FR") return "Repeats on weekdays";
      return `Repeats ${every("weekly", "weeks")}${onDays}`;
    case "MONTHLY":
      return days.length ? `Repeats: ${rule}` : `Repeats ${every("monthly", "months")}`;
    case "YEARLY":
      return days.length ? `Repeats: ${rule}` : `Repeats ${every("yearly", "years")}`;
    case "HOURLY":
      return days.length ? `Repeats: ${rule}` : `Repeats ${every("hourly", "hours")}`;
    default:
      return `Repeats: ${rule}`;
  }
}

// ---- the due date, reminder and repeat fields ------------------------------------------------------

const pad = (value) => String(value).padStart(2, "0");

/** A `datetime-local` value ("2026-12-07T09:30") as RFC 3339 with the browser's offset. */
export function localToRfc3339(value) {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(value || "");
  if (!match) return null;
  const [, year, month, day, hour, minute, second = "0"] = match;
  const date = new Date(Number(year), Number(month) - 1, Number(day), Number(hour), Number(minute), Number(second));
  if (Number.isNaN(date.getTime())) return null;
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const zone = `${sign}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}${zone}`
  );
}

/** An RFC 3339 time as a `datetime-local` value in the browser's zone. */
function toLocalInput(iso) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return "";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** A due time as the `date` value of its day (due dates are days, kept at midnight UTC). */
function toDateInput(iso) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return "";
  return date.toISOString().slice(0, 10);
}

/**
 * Put a copy of the page's one `#task-schedule-fields` template in place of the form's
 * `[data-schedule-fields=<prefix>]` placeholder, its ids (and the `for` and `aria-describedby`
 * naming them) prefixed: "due" becomes "<prefix>-due".
 */
function mountScheduleFields(prefix) {
  const fields = byId("task-schedule-fields").content.cloneNode(true);
  const named = (name) => `${prefix}-${name}`;
  for (const element of fields.querySelectorAll("[id]")) element.id = named(element.id);
  for (const label of fields.querySelectorAll("label[for]")) label.htmlFor = named(label.htmlFor);
  for (const element of fields.querySelectorAll("[aria-describedby]")) {
    const ids = element.getAttribute("aria-describedby").split(/\s+/).filter(Boolean);
    element.setAttribute("aria-describedby", ids.map(named).join(" "));
  }
  const placeholder = document.querySelector(`[data-schedule-fields="${prefix}"]`);
  if (!placeholder) throw new Error(`missing the schedule fields of the ${prefix} form`);
  placeholder.replaceWith(fields);
}

/** The fields `<prefix>-due`, `-remind`, `-repeat`, `-rrule` of a task form, with their errors. */
class ScheduleFields {
  constructor(prefix) {
    mountScheduleFields(prefix);
    const get = (name) => byId(`${prefix}-${name}`);
    this.due = get("due");
    this.remind = get("remind");
    this.repeat = get("repeat");
    this.rrule = get("rrule");
    this.ruleField = get("rrule-field");
    this.weekly = get("repeat-weekly");
    this.errors = { due_at: get("due-error"), remind_at: get("remind-error"), recurrence: get("repeat-error") };
    this.inputs = { due_at: this.due, remind_at: this.remind, recurrence: this.repeat };
    this.notify = get("notify");
    this.due.addEventListener("input", () => this.sync());
    this.remind.addEventListener("input", () => {
      this.sync();
      syncNotifyButtons();
    });
    this.repeat.addEventListener("change", () => {
      this.sync();
      if (this.repeat.value === "custom") this.rrule.focus();
    });
    wireNotifyButton(this.notify, () => Boolean(this.remind.value));
    this.sync();
  }

  /** The weekday the "Weekly on …" choice repeats on: the due date's, else today's. */
  weekday() {
    const due = /^(\d{4})-(\d{2})-(\d{2})$/.exec(this.due.value);
    const date = due ? new Date(Date.UTC(Number(due[1]), Number(due[2]) - 1, Number(due[3]))) : null;
    return DAY_CODES[date ? date.getUTCDay() : new Date().getDay()];
  }

  sync() {
    const day = this.weekday();
    this.weekly.value = `FREQ=WEEKLY;BYDAY=${day}`;
    this.weekly.textContent = `Weekly on ${DAYS[day]}`;
    this.ruleField.hidden = this.repeat.value !== "custom";
  }

  /** The rule chosen: a preset's, the custom text, or null. */
  rule() {
    if (this.repeat.value === "custom") return this.rrule.value.trim() || null;
    return this.repeat.value || null;
  }

  /** Every field as the API takes it (for a new task: empty ones are left out). */
  values() {
    const body = {};
    if (this.due.value) body.due_at = `${this.due.value}T00:00:00Z`;
    const remind = localToRfc3339(this.remind.value);
    if (remind) body.remind_at = remind;
    const rule = this.rule();
    if (rule) body.recurrence = rule;
    return body;
  }

  /** What differs from `task` (for a PATCH): a field emptied is sent as null. */
  changesFrom(task) {
    const body = {};
    if (this.due.value !== toDateInput(task.due_at)) body.due_at = this.due.value ? `${this.due.value}T00:00:00Z` : null;
    if (this.remind.value !== toLocalInput(task.remind_at)) body.remind_at = localToRfc3339(this.remind.value);
    const rule = this.rule();
    if ((rule || null) !== (task.recurrence || null)) body.recurrence = rule;
    return body;
  }

  fill(task) {
    this.due.value = toDateInput(task.due_at);
    this.remind.value = toLocalInput(task.remind_at);
    this.sync();
    const rule = task.recurrence || "";
    const preset = [...this.repeat.options].find((option) => option.value === rule && option.value !== "custom");
    this.repeat.value = preset ? preset.value : "custom";
    this.rrule.value = preset ? "" : rule;
    this.sync();
    syncNotifyButtons();
  }

  clear() {
    this.due.value = "";
    this.remind.value = "";
    this.repeat.value = "";
    this.rrule.value = "";
    this.clearErrors();
    this.sync();
    syncNotifyButtons();
  }

  clearErrors() {
    for (const [field, element] of Object.entries(this.errors)) {
      element.textContent = "";
      this.target(field).removeAttribute("aria-invalid");
    }
  }

  target(field) {
    return field === "recurrence" && this.repeat.value === "custom" ? this.rrule : this.inputs[field];
  }

  /** Show a 422's messages next to their fields; false when none was about these fields. */
  showErrors(error) {
    if (!(error instanceof ApiError) || error.status !== 422) return false;
    let first = null;
    for (const detail of error.details || []) {
      const field = String(detail.field || "").replace(/^body\./, "").split(".")[0];
      const element = this.errors[field];
      if (!element) continue;
      element.textContent = String(detail.message || error.message).replace(/^Value error, /, "");
      const input = this.target(field);
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    }
    if (!first) return false;
    const options = first.closest("details");
    if (options) options.open = true;
    first.focus();
    return true;
  }
}
