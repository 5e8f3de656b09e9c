// The tasks panel: the user's tasks (open first), ticked complete here or changed by the assistant,
// which refreshes the panel as its task tools run.

import { api } from "./api.js";
import { byId, clear, formatDate, h } from "./dom.js";
import { on } from "./state.js";
import { announce, describeError, toast } from "./ui.js";

const LIMIT = 100;

let elements = {};
let running = null;
let again = false;
let tasks = [];
let more = false;

export function initTasks() {
  elements = {
    list: byId("task-list"),
    empty: byId("task-empty"),
    form: byId("task-form"),
    input: byId("task-input"),
    count: byId("task-count"),
  };
  elements.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const title = elements.input.value.trim();
    if (!title) return;
    try {
      await api("/api/tasks", { method: "POST", body: { title } });
      elements.input.value = "";
      announce(`Task added: ${title}`);
      await refreshTasks();
    } catch (error) {
      toast(describeError(error));
    }
  });
  on("tasks-changed", () => refreshTasks());
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
      try {
        const page = await api(`/api/tasks?limit=${LIMIT}`);
        tasks = page.items;
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

export function resetTasks() {
  tasks = [];
  if (elements.list) clear(elements.list);
}

async function setCompleted(task, completed) {
  try {
    await api(`/api/tasks/${task.id}`, { method: "PATCH", body: { completed } });
    announce(completed ? `Completed: ${task.title}` : `Reopened: ${task.title}`);
  } catch (error) {
    toast(describeError(error));
  }
  await refreshTasks();
  document.getElementById(`task-${task.id}`)?.focus();
}

async function remove(task) {
  try {
    await api(`/api/tasks/${task.id}`, { method: "DELETE" });
    announce(`Deleted: ${task.title}`);
  } catch (error) {
    toast(describeError(error));
  }
  await refreshTasks();
}

function render() {
  const open = tasks.filter((task) => !task.completed);
  const done = tasks.filter((task) => task.completed);
  const items = [...open, ...done].map((task) => {
    const checkbox = h("input", {
      type: "checkbox",
      id: `task-${task.id}`,
      checked: task.completed,
      on: { change: (event) => setCompleted(task, event.target.checked) },
    });
    const details = [];
    if (task.due_at) details.push(h("span", { class: "task-due", text: `Due ${formatDate(task.due_at, { utc: true })}` }));
    if (task.priority && task.priority !== "medium") {
      details.push(h("span", { class: `badge priority-${task.priority}`, text: `${task.priority} priority` }));
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
      h("button", {
        type: "button",
        class: "icon-button small task-delete",
        text: "×",
        "aria-label": `Delete task ${task.title}`,
        on: { click: () => remove(task) },
      }),
    );
  });
  elements.list.replaceChildren(...items);
  if (more) elements.list.append(h("li", { class: "muted small", text: `Showing the ${LIMIT} newest tasks.` }));
  elements.empty.hidden = tasks.length > 0;
  elements.count.hidden = open.length === 0;
  elements.count.textContent = String(open.length);
  elements.count.setAttribute("aria-label", `${open.length} open`);
}
