// The account dialog: who is signed in, turning a guest into a full account, this month's usage
// (when the server reports it), API keys (created, shown once with a copy button, listed,
// revoked), and logging out.

import { ApiError, api, session } from "./api.js";
import { byId, copyText, formatCost, formatDate, formatDateTime, formatInteger, h } from "./dom.js";
import { on, state } from "./state.js";
import { announce, confirmAction, describeError } from "./ui.js";

let elements = {};
let onSignOut = () => {};
let onUserChanged = () => {};

export function initAccount({ signOut, userChanged }) {
  onSignOut = signOut;
  onUserChanged = userChanged;
  elements = {
    dialog: byId("account-dialog"),
    button: byId("account-button"),
    who: byId("account-who"),
    upgradeSection: byId("upgrade-section"),
    upgradeForm: byId("upgrade-form"),
    upgradeEmail: byId("upgrade-email"),
    upgradePassword: byId("upgrade-password"),
    upgradeError: byId("upgrade-error"),
    usageSection: byId("usage-section"),
    keyForm: byId("key-form"),
    keyName: byId("key-name"),
    keyError: byId("key-error"),
    newKey: byId("new-key"),
    newKeyValue: byId("new-key-value"),
    copyKey: byId("copy-key"),
    keyList: byId("key-list"),
    keyEmpty: byId("key-empty"),
    logout: byId("logout-button"),
  };
  elements.button.addEventListener("click", () => openAccount());
  elements.dialog.addEventListener("close", () => {
    // The secret is shown once: gone when the dialog closes.
    elements.newKey.hidden = true;
    elements.newKeyValue.value = "";
    elements.button.focus();
  });
  elements.upgradeForm.addEventListener("submit", (event) => {
    event.preventDefault();
    upgrade();
  });
  elements.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    createKey();
  });
  elements.copyKey.addEventListener("click", async () => {
    const copied = await copyText(elements.newKeyValue.value, elements.newKeyValue);
    elements.copyKey.textContent = copied ? "Copied" : "Copy failed";
    announce(copied ? "Key copied to the clipboard." : "Copying failed: select the key and copy it.");
    setTimeout(() => {
      elements.copyKey.textContent = "Copy";
    }, 2000);
  });
  elements.logout.addEventListener("click", () => logOut());
  on("usage-changed", () => {
    if (elements.dialog.open) loadUsage();
  });
}

/** The name shown for the signed-in user. */
export function displayName(user) {
  if (!user) return "";
  if (user.is_guest) return "Guest";
  return user.display_name || user.email || "Account";
}

function renderWho() {
  const user = state.user;
  elements.who.textContent = user.is_guest
    ? "Signed in as a guest."
    : `Signed in as ${user.display_name && user.display_name !== user.email ? `${user.display_name} (${user.email})` : user.email}.`;
  elements.upgradeSection.hidden = !user.is_guest;
}

export async function openAccount() {
  renderWho();
  elements.upgradeError.textContent = "";
  elements.keyError.textContent = "";
  elements.newKey.hidden = true;
  elements.dialog.showModal();
  await Promise.all([loadKeys(), loadUsage()]);
}

async function upgrade() {
  const email = elements.upgradeEmail.value.trim();
  const password = elements.upgradePassword.value;
  elements.upgradeError.textContent = "";
  if (!email || !email.includes("@")) {
    elements.upgradeError.textContent = "Enter your email address.";
    elements.upgradeEmail.focus();
    return;
  }
  if (password.length < 8) {
    elements.upgradeError.textContent = "The password needs at least 8 characters.";
    elements.upgradePassword.focus();
    return;
  }
  try {
    const data = await api("/api/auth/upgrade", { method: "POST", body: { email, password } });
    session.save({ tokens: data.tokens, user: data.user });
    state.user = data.user;
    elements.upgradePassword.value = "";
    onUserChanged(data.user);
    renderWho();
    announce("Your account is saved. Sign in with your email from now on.");
    elements.who.focus?.();
  } catch (error) {
    elements.upgradeError.textContent = describeError(error);
  }
}

async function loadUsage() {
  const now = new Date();
  const from = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
  try {
    const data = await api(`/api/usage?from=${encodeURIComponent(from)}`);
    const totals = data && data.totals;
    if (!totals) throw new Error("no totals");
    byId("usage-requests").textContent = formatInteger(totals.requests);
    byId("usage-input").textContent = formatInteger(totals.input_tokens);
    byId("usage-output").textContent = formatInteger(totals.output_tokens);
    byId("usage-cost").textContent = formatCost(totals.cost_usd);
    elements.usageSection.hidden = false;
  } catch {
    elements.usageSection.hidden = true; // the server does not report usage: say nothing
  }
}

async function loadKeys() {
  try {
    const page = await api("/api/users/me/api-keys?limit=100");
    renderKeys(page.items);
  } catch (error) {
    elements.keyError.textContent = describeError(error);
  }
}

function renderKeys(keys) {
  const items = keys.map((key) => {
    const facts = [`Created ${formatDate(key.created_at)}`];
    facts.push(key.last_used_at ? `last used ${formatDateTime(key.last_used_at)}` : "never used");
    if (key.expires_at) facts.push(`expires ${formatDate(key.expires_at)}`);
    return h(
      "li",
      { class: "key", dataset: { keyId: key.id } },
      h(
        "div",
        { class: "key-text" },
        h("span", { class: "key-name", text: key.name }),
        h("code", { class: "key-prefix", text: `${key.prefix}…` }),
        h("span", { class: "muted small", text: facts.join(" · ") }),
      ),
      h("button", {
        type: "button",
        class: "small danger",
        text: "Revoke",
        "aria-label": `Revoke key ${key.name}`,
        on: { click: () => revokeKey(key) },
      }),
    );
  });
  elements.keyList.replaceChildren(...items);
  elements.keyEmpty.hidden = keys.length > 0;
}

async function createKey() {
  const name = elements.keyName.value.trim();
  elements.keyError.textContent = "";
  if (!name) {
    elements.keyError.textContent = "Give the key a name.";
    elements.keyName.focus();
    return;
  }
  try {
    const created = await api("/api/users/me/api-keys", { method: "POST", body: { name } });
    elements.keyName.value = "";
    elements.newKeyValue.value = created.key;
    elements.newKey.hidden = false;
    elements.copyKey.focus();
    announce("Key created. Copy it now: it is shown only once.");
    await loadKeys();
  } catch (error) {
    elements.keyError.textContent = describeError(error);
  }
}

async function revokeKey(key) {
  // The confirm dialog stacks above the account dialog.
  const confirmed = await confirmAction({
    title: "Revoke this key?",
    text: `Programs using “${key.name}” (${key.prefix}…) will be refused at once.`,
    confirmLabel: "Revoke",
  });
  if (!confirmed) return;
  try {
    await api(`/api/users/me/api-keys/${key.id}`, { method: "DELETE" });
    announce(`Key ${key.name} revoked.`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) elements.keyError.textContent = describeError(error);
  }
  await loadKeys();
  elements.keyName.focus();
}

async function logOut() {
  const refreshToken = session.tokens?.refresh_token;
  if (refreshToken) {
    try {
      await api("/api/auth/logout", { method: "POST", body: { refresh_token: refreshToken }, auth: false });
    } catch {
      // Signed out here whatever the server said.
    }
  }
  elements.dialog.close();
  onSignOut("You are signed out.");
}
