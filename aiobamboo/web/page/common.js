"use strict";
// Shared by the pages: where the API is, the token, requests and messages.
const aiobamboo = (() => {
  // The API sits beside the pages, under whatever prefix the application mounts them.
  const base = location.pathname.replace(/pipelines\/[^/]*\/?$/, "").replace(/\/?$/, "/");
  const tokenKey = "aiobamboo-token";

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    const token = sessionStorage.getItem(tokenKey);
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  function say(text, error) {
    const box = document.getElementById("message");
    if (!box) return;
    box.textContent = text;
    box.className = error ? "error" : "";
  }

  async function get(path) {
    const response = await fetch(base + path, { headers: headers(false) });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || String(response.status));
    return body;
  }

  async function post(path, body) {
    const response = await fetch(base + path, {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify(body || {}),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      say(`${path}: ${response.status} ${answer.error || ""}`, true);
      return null;
    }
    say(`${path}: done`, false);
    return answer;
  }

  function el(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  function setUpToken() {
    const input = document.getElementById("token");
    if (!input) return;
    input.value = sessionStorage.getItem(tokenKey) || "";
    input.addEventListener("change", () => sessionStorage.setItem(tokenKey, input.value.trim()));
  }

  function events(query) {
    return new EventSource(base + "api/events" + (query ? "?" + query : ""));
  }

  document.addEventListener("DOMContentLoaded", setUpToken);
  return { base, get, post, el, say, when, events };
})();
