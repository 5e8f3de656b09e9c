// A small, careful Markdown renderer for replies. It builds DOM nodes and puts every piece of the
// source in as text: no HTML in a message is ever parsed, and links keep only http(s) URLs.
//
// Blocks: paragraphs (single newlines kept as line breaks), ATX headings, fenced code blocks
// (``` or ~~~, with a language and a copy button), bullet and numbered lists (nested by
// indentation), block quotes, horizontal rules, and simple pipe tables.
// Inline: `code`, **strong**, *emphasis* (and the _ forms), ~~strikethrough~~, [links](https://..),
// <https://autolinks>, bare https:// URLs, and backslash escapes. Images become links.

import { copyText, h } from "./dom.js";

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;
const BLANK = /^\s*$/;
const TABLE_DIVIDER = /^ {0,3}\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;
const MAX_DEPTH = 12;

/**
 * Render Markdown source as a fragment of safe DOM nodes.
 * @param {string} source
 * @returns {DocumentFragment}
 */
export function renderMarkdown(source) {
  const fragment = document.createDocumentFragment();
  renderBlocks(String(source ?? "").replace(/\r\n?/g, "\n").split("\n"), fragment, 0);
  return fragment;
}

function startsBlock(line) {
  return (
    FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || LIST_ITEM.test(line)
  );
}

function indentOf(line) {
  const match = /^ */.exec(line.replace(/\t/g, "    "));
  return match ? match[0].length : 0;
}

function renderBlocks(lines, parent, depth) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK.test(line)) {
      i += 1;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const marker = fence[1];
      const body = [];
      i += 1;
      while (i < lines.length && !isClosingFence(lines[i], marker)) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (or the end, while a reply is still streaming)
      parent.append(codeBlock(body.join("\n"), fence[2] || ""));
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      // The page's own headings are h1/h2: a reply's start at h3.
      const level = Math.min(heading[1].length + 2, 6);
      parent.append(inline(heading[2] || "", h(`h${level}`)));
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      parent.append(h("hr"));
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && !BLANK.test(lines[i])) {
        const quoted = QUOTE.exec(lines[i]);
        if (!quoted && startsBlock(lines[i])) break;
        inner.push(quoted ? quoted[1] : lines[i]);
        i += 1;
      }
      const quote = h("blockquote");
      if (depth < MAX_DEPTH) renderBlocks(inner, quote, depth + 1);
      else quote.append(inner.join("\n"));
      parent.append(quote);
      continue;
    }
    if (LIST_ITEM.test(line)) {
      i = renderList(lines, i, parent, depth);
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_DIVIDER.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      i = renderTable(lines, i, parent);
      continue;
    }
    const paragraph = [line.trim()];
    i += 1;
    while (i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines[i])) {
      paragraph.push(lines[i].trim());
      i += 1;
    }
    parent.append(inline(paragraph.join("\n"), h("p")));
  }
}

function isClosingFence(line, marker) {
  const trimmed = line.trim();
  return trimmed.length >= marker.length && /^(`+|~+)$/.test(trimmed) && trimmed[0] === marker[0] && indentOf(line) <= 3;
}

function renderList(lines, start, parent, depth) {
  const first = LIST_ITEM.exec(lines[start]);
  const baseIndent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const list = h(ordered ? "ol" : "ul");
  if (ordered) {
    const number = Number.parseInt(first[2], 10);
    if (number !== 1 && Number.isFinite(number)) list.setAttribute("start", String(number));
  }
  let i = start;
  while (i < lines.length) {
    const item = LIST_ITEM.exec(lines[i]);
    if (!item || item[1].length !== baseIndent || /\d/.test(item[2]) !== ordered) break;
    const contentIndent = baseIndent + item[2].length + 1;
    const content = [item[3] || ""];
    i += 1;
    // The item goes on while lines are indented under it, or are lazy continuations of its text.
    while (i < lines.length) {
      const next = lines[i];
      if (BLANK.test(next)) {
        const following = lines.slice(i + 1).find((l) => !BLANK.test(l));
        if (following !== undefined && indentOf(following) >= contentIndent) {
          content.push("");
          i += 1;
          continue;
        }
        break;
      }
      if (indentOf(next) >= Math.min(contentIndent, baseIndent + 2)) {
        content.push(next.slice(Math.min(indentOf(next), contentIndent)));
        i += 1;
        continue;
      }
      if (startsBlock(next)) break;
      content.push(next.trim());
      i += 1;
    }
    const li = h("li");
    if (depth < MAX_DEPTH) renderBlocks(content, li, depth + 1);
    else li.append(content.join("\n"));
    // A tight item (one paragraph): its text straight in the <li>.
    if (li.childElementCount >= 1 && li.firstElementChild.tagName === "P") {
      const paragraph = li.firstElementChild;
      paragraph.replaceWith(...paragraph.childNodes);
    }
    list.append(li);
    // Blank lines between items of the same list keep the list going.
    let j = i;
    while (j < lines.length && BLANK.test(lines[j])) j += 1;
    if (j > i && j < lines.length) {
      const again = LIST_ITEM.exec(lines[j]);
      if (again && again[1].length === baseIndent && /\d/.test(again[2]) === ordered) i = j;
    }
  }
  parent.append(list);
  return i;
}

function splitRow(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  const cells = [];
  let current = "";
  for (let k = 0; k < row.length; k += 1) {
    if (row[k] === "\\" && row[k + 1] === "|") {
      current += "|";
      k += 1;
    } else if (row[k] === "|") {
      cells.push(current.trim());
      current = "";
    } else current += row[k];
  }
  cells.push(current.trim());
  return cells;
}

function renderTable(lines, start, parent) {
  const header = splitRow(lines[start]);
  const aligns = splitRow(lines[start + 1]).map((cell) =>
    cell.startsWith(":") && cell.endsWith(":") ? "center" : cell.endsWith(":") ? "right" : cell.startsWith(":") ? "left" : "",
  );
  const cellOf = (tag, text, index) => {
    const cell = inline(text, h(tag));
    if (aligns[index]) cell.style.textAlign = aligns[index];
    return cell;
  };
  const thead = h("thead", {}, h("tr", {}, header.map((text, index) => cellOf("th", text, index))));
  const tbody = h("tbody");
  let i = start + 2;
  while (i < lines.length && !BLANK.test(lines[i]) && lines[i].includes("|")) {
    const cells = splitRow(lines[i]);
    tbody.append(h("tr", {}, header.map((_, index) => cellOf("td", cells[index] ?? "", index))));
    i += 1;
  }
  parent.append(h("div", { class: "table-scroll" }, h("table", {}, thead, tbody)));
  return i;
}

function codeBlock(code, language) {
  const lang = /^[\w+#.-]{1,32}$/.test(language) ? language : "";
  const codeElement = h("code", { text: code });
  if (lang) codeElement.className = `language-${lang}`;
  const button = h("button", {
    type: "button",
    class: "code-copy",
    text: "Copy",
    "aria-label": lang ? `Copy ${lang} code` : "Copy code",
    on: {
      click: async () => {
        const copied = await copyText(code);
        button.textContent = copied ? "Copied" : "Copy failed";
        setTimeout(() => {
          button.textContent = "Copy";
        }, 1500);
      },
    },
  });
  return h(
    "div",
    { class: "code-block" },
    h("div", { class: "code-header" }, h("span", { text: lang || "code" }), button),
    h("pre", { tabindex: "0" }, codeElement),
  );
}

/** A URL that is safe to link to (absolute http or https), or null. */
export function safeUrl(raw) {
  const text = String(raw ?? "").trim();
  if (!/^https?:\/\//i.test(text)) return null;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function link(url, children) {
  const anchor = document.createElement("a");
  anchor.href = url; // checked by safeUrl: http(s) only
  anchor.rel = "noopener noreferrer nofollow";
  anchor.target = "_blank";
  anchor.append(...children);
  return anchor;
}

const PUNCTUATION = /[!-/:-@[-`{-~]/;
const WORD_CHAR = /[\p{L}\p{N}]/u;
const BARE_URL = /^https?:\/\/[^\s<>"'`]+/i;

/**
 * Render inline Markdown into `parent` and return it.
 * @param {string} text
 * @param {HTMLElement} parent
 * @param {{links?: boolean, depth?: number}} [options]
 */
function inline(text, parent, options = {}) {
  const links = options.links !== false;
  const depth = options.depth ?? 0;
  let buffer = "";
  const flush = () => {
    if (buffer) parent.append(document.createTextNode(buffer));
    buffer = "";
  };
  const nested = (inner, element, nestedOptions = {}) =>
    depth < MAX_DEPTH ? inline(inner, element, { links, depth: depth + 1, ...nestedOptions }) : (element.append(inner), element);

  let i = 0;
  while (i < text.length) {
    const char = text[i];
    if (char === "\\" && i + 1 < text.length && PUNCTUATION.test(text[i + 1])) {
      buffer += text[i + 1];
      i += 2;
      continue;
    }
    if (char === "\n") {
      flush();
      parent.append(h("br"));
      i += 1;
      continue;
    }
    if (char === "`") {
      const run = /^`+/.exec(text.slice(i))[0];
      const close = findBacktickRun(text, i + run.length, run.length);
      if (close !== -1) {
        let code = text.slice(i + run.length, close).replace(/\n/g, " ");
        if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ") && code.trim()) code = code.slice(1, -1);
        flush();
        parent.append(h("code", { text: code }));
        i = close + run.length;
        continue;
      }
      buffer += run;
      i += run.length;
      continue;
    }
    if (links && (char === "[" || (char === "!" && text[i + 1] === "["))) {
      const image = char === "!";
      const parsed = parseLink(text, image ? i + 1 : i);
      if (parsed) {
        flush();
        const url = safeUrl(parsed.url);
        const label = parsed.label || (image ? parsed.url : "");
        if (url) parent.append(link(url, [nested(label, document.createDocumentFragment(), { links: false })]));
        else nested(label, parent, { links: false });
        i = parsed.end;
        continue;
      }
    }
    if (links && char === "<") {
      const auto = /^<(https?:\/\/[^\s<>]+)>/i.exec(text.slice(i));
      const url = auto && safeUrl(auto[1]);
      if (url) {
        flush();
        parent.append(link(url, [auto[1]]));
        i += auto[0].length;
        continue;
      }
    }
    if (links && (char === "h" || char === "H") && (i === 0 || !WORD_CHAR.test(text[i - 1]))) {
      const bare = BARE_URL.exec(text.slice(i));
      if (bare) {
        const raw = trimUrl(bare[0]);
        const url = safeUrl(raw);
        if (url) {
          flush();
          parent.append(link(url, [raw]));
          i += raw.length;
          continue;
        }
      }
    }
    if (char === "*" || char === "_" || char === "~") {
      const emphasis = parseEmphasis(text, i);
      if (emphasis) {
        flush();
        parent.append(nested(emphasis.inner, h(emphasis.tag)));
        i = emphasis.end;
        continue;
      }
      const run = new RegExp(`^\\${char}+`).exec(text.slice(i))[0];
      buffer += run;
      i += run.length;
      continue;
    }
    buffer += char;
    i += 1;
  }
  flush();
  return parent;
}

function findBacktickRun(text, from, length) {
  let k = from;
  while (k < text.length) {
    const index = text.indexOf("`", k);
    if (index === -1) return -1;
    const run = /^`+/.exec(text.slice(index))[0];
    if (run.length === length) return index;
    k = index + run.length;
  }
  return -1;
}

function trimUrl(url) {
  let result = url;
  for (;;) {
    const last = result.at(-1);
    if (/[.,;:!?*_~]/.test(last)) result = result.slice(0, -1);
    else if (last === ")" && (result.match(/\(/g) || []).length < (result.match(/\)/g) || []).length) result = result.slice(0, -1);
    else return result;
  }
}

/** `[label](url "title")` starting at `start` (the "["), or null. */
function parseLink(text, start) {
  let depth = 0;
  let k = start;
  for (; k < text.length; k += 1) {
    const c = text[k];
    if (c === "\\") {
      k += 1;
      continue;
    }
    if (c === "[") depth += 1;
    else if (c === "]") {
      depth -= 1;
      if (depth === 0) break;
    }
  }
  if (k >= text.length || text[k + 1] !== "(") return null;
  const label = text.slice(start + 1, k);
  let m = k + 2;
  let parens = 0;
  let target = "";
  for (; m < text.length; m += 1) {
    const c = text[m];
    if (c === "\\" && m + 1 < text.length) {
      target += text[m + 1];
      m += 1;
      continue;
    }
    if (c === "(") parens += 1;
    else if (c === ")") {
      if (parens === 0) break;
      parens -= 1;
    } else if (c === "\n") return null;
    target += c;
  }
  if (m >= text.length) return null;
  let url = target.trim();
  const titled = /^(\S+)\s+("[^"]*"|'[^']*')$/.exec(url);
  if (titled) url = titled[1];
  if (url.startsWith("<") && url.endsWith(">")) url = url.slice(1, -1);
  return { label, url, end: m + 1 };
}

/** `**strong**`, `*em*`, `~~del~~` (and `__`/`_`) starting at `start`, or null. */
function parseEmphasis(text, start) {
  const char = text[start];
  const run = new RegExp(`^\\${char}+`).exec(text.slice(start))[0];
  let size;
  if (char === "~") {
    if (run.length !== 2) return null;
    size = 2;
  } else size = run.length >= 2 ? 2 : 1;
  const opener = text.slice(start, start + size);
  const after = text[start + size];
  if (after === undefined || /\s/.test(after)) return null;
  // `_` inside a word (snake_case) is not emphasis.
  if (char === "_" && start > 0 && WORD_CHAR.test(text[start - 1])) return null;
  let k = start + size;
  while (k < text.length) {
    const index = text.indexOf(opener, k);
    if (index === -1) return null;
    const closingRun = new RegExp(`^\\${char}+`).exec(text.slice(index))[0];
    const before = text[index - 1];
    const followed = text[index + size];
    const fits = size === 1 ? closingRun.length === 1 || closingRun.length === 3 : closingRun.length >= 2;
    const rightFlanking = before !== undefined && !/\s/.test(before) && index > start + size;
    const wordAfter = char === "_" && followed !== undefined && WORD_CHAR.test(followed);
    if (fits && rightFlanking && !wordAfter) {
      const inner = text.slice(start + size, index);
      if (inner.includes("\n\n")) return null;
      const tag = char === "~" ? "del" : size === 2 ? "strong" : "em";
      return { tag, inner, end: index + size };
    }
    k = index + closingRun.length;
  }
  return null;
}
