// Building DOM nodes safely: text always goes in as text (textContent / text nodes), never as
// HTML. The page's Content-Security-Policy requires Trusted Types, so assigning a string as HTML
// (to an element's HTML properties) would throw anyway.

/**
 * Create an element.
 * @param {string} tag
 * @param {Record<string, unknown>} [props] `class`, `text`, `dataset`, `on` ({event: handler}),
 *   boolean properties (`hidden`, `disabled`, ...) and plain attributes. Attribute names starting
 *   with "on" and `href`/`src` are refused here: event handlers are attached with `on`, and links
 *   are made only by the Markdown renderer after checking their URL.
 * @param {...(Node|string|number|null|undefined|false|Array)} children
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") element.className = String(value);
    else if (key === "text") element.textContent = String(value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (["hidden", "disabled", "checked", "readOnly", "open", "value"].includes(key)) {
      element[key] = value;
    } else if (/^on/i.test(key) || key === "href" || key === "src" || key === "srcdoc") {
      throw new Error(`h(): refusing the attribute ${key}`);
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Append children (nodes, strings as text, arrays flattened; null/false skipped). */
export function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.append(child);
    else parent.append(document.createTextNode(String(child)));
  }
  return parent;
}

/** `document.getElementById`, failing loudly when the page and the script disagree. */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`missing element #${id}`);
  return element;
}

/** Remove every child of `element`. */
export function clear(element) {
  element.replaceChildren();
  return element;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const integerFormat = new Intl.NumberFormat("en-US");

/** A date such as "Nov 27, 2026" (due dates are midnight UTC, so they are shown in UTC). */
export function formatDate(iso, { utc = false } = {}) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return utc
    ? new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" }).format(date)
    : dateFormat.format(date);
}

export function formatDateTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : dateTimeFormat.format(date);
}

export function formatInteger(value) {
  return integerFormat.format(Number(value) || 0);
}

/** US dollars: cents for sums of a cent or more, two significant digits below. */
export function formatCost(usd) {
  const value = Number(usd) || 0;
  if (value === 0) return "$0.00";
  const options =
    value >= 0.01
      ? { style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: 4 }
      : { style: "currency", currency: "USD", maximumSignificantDigits: 2 };
  return new Intl.NumberFormat("en-US", options).format(value);
}

/** Copy text to the clipboard (with a fallback for pages not in a secure context). */
export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (input) {
      input.focus();
      input.select();
      return document.execCommand("copy");
    }
    return false;
  }
}
