// streamfold pages: the API-token list of the dashboard, on the JSON API (/api/tokens).
// Everything else works without JavaScript.
"use strict";

function tokenItem(token, refresh) {
  const li = document.createElement("li");
  const when = token.revoked_at ? "revoked" : "created " + token.created_at.slice(0, 10);
  li.textContent = token.name + " (" + when + ") ";
  if (!token.revoked_at) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Revoke";
    button.addEventListener("click", async () => {
      await fetch("/api/tokens/" + token.id, { method: "DELETE", credentials: "same-origin" });
      refresh();
    });
    li.appendChild(button);
  }
  return li;
}

async function refreshTokens() {
  const list = document.getElementById("tokens");
  const answer = await fetch("/api/tokens", { credentials: "same-origin" });
  if (!answer.ok) {
    list.textContent = "Tokens could not be loaded.";
    return;
  }
  const body = await answer.json();
  list.replaceChildren(...body.tokens.map((t) => tokenItem(t, refreshTokens)));
  if (!body.tokens.length) list.textContent = "No tokens yet.";
}

function setUpTokens() {
  const form = document.getElementById("new-token");
  if (!form) return;
  refreshTokens();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = new FormData(form).get("name");
    const answer = await fetch("/api/tokens", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name }),
    });
    const body = await answer.json();
    const secret = document.getElementById("token-secret");
    secret.hidden = false;
    secret.textContent = answer.ok
      ? "New token (copy it now, it is not shown again): " + body.token
      : "Not created: " + body.detail;
    form.reset();
    refreshTokens();
  });
}

document.addEventListener("DOMContentLoaded", setUpTokens);
