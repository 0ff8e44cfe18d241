// Shared by the storefront and the dashboard: the API key and a fetch wrapper for /v1.
"use strict";
const shoprec = (() => {
  let key = localStorage.getItem("shoprec-key") || "";
  let config = { demo: false, api_key: null, sample_shoppers: [], max_k: 100 };

  async function init() {
    const r = await fetch("/ui/config");
    config = await r.json();
    if (config.api_key) key = config.api_key;  // demo mode: a read+ingest key for this page
    const box = document.getElementById("key-panel");
    if (box && !config.api_key) {
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

  async function api(method, path, body) {
    const r = await fetch(path, {
      method,
      headers: { "X-API-Key": key, ...(body ? { "Content-Type": "application/json" } : {}) },
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

  return { init, api, el, status, get config() { return config; } };
})();
