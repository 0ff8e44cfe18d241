// Shared by the storefront and the dashboard: the credential and a fetch wrapper for /v1.
// The page never receives an API key. In demo mode it asks /ui/session for short-lived tokens
// (one shopper's, or the dashboard's aggregate figures); otherwise the user pastes a key.
"use strict";
const shoprec = (() => {
  let key = localStorage.getItem("shoprec-key") || "";
  let config = { demo: false, sample_shoppers: [], max_k: 100 };

  async function init() {
    const r = await fetch("/ui/config");
    config = await r.json();
    const box = document.getElementById("key-panel");
    if (config.demo) key = "";
    if (box && !config.demo) {
      box.classList.remove("hidden");
      const input = document.getElementById("key-input");
      input.value = key;
      document.getElementById("key-save").onclick = () => {
        key = input.value.trim();
        localStorage.setItem("shoprec-key", key);
        location.reload();
      };
    }
    return config;
  }

  // Demo mode: a token for {sample: n}, {guest: true} or {dashboard: true}; it replaces the credential.
  async function session(body) {
    const r = await fetch("/ui/session", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await r.json();
    if (!r.ok) throw new Error((data && data.error && data.error.message) || `HTTP ${r.status}`);
    key = data.token;
    return data;
  }

  async function api(method, path, body) {
    const r = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${key}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = r.status === 204 ? null : await r.json();
    if (!r.ok) throw new Error((data && data.error && data.error.message) || `HTTP ${r.status}`);
    return data;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node[k] = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function status(text, isError = false) {
    const s = document.getElementById("status");
    if (!s) return;
    s.textContent = text;
    s.classList.toggle("error", isError);
  }

  return { init, session, api, el, status, get config() { return config; } };
})();
