"use strict";
(() => {
  const { base, get, el, say, when, events } = aiobamboo;
  let cursor = null;

  function row(pipeline) {
    const tr = el("tr", { "data-pipeline-id": pipeline.id });
    const link = el("a", { href: base + "pipelines/" + encodeURIComponent(pipeline.id) }, pipeline.name || "(unnamed)");
    const name = el("td");
    name.append(link);
    const state = el("td");
    state.append(el("span", { class: "state-badge", "data-state": pipeline.state || "" }, pipeline.state || "stored"));
    tr.append(name, el("td", {}, ""), state, el("td", {}, when(pipeline.created_time)), el("td", {}, when(pipeline.archived_time)));
    tr.children[1].append(el("code", {}, pipeline.id));
    return tr;
  }

  async function load(append) {
    const query = new URLSearchParams({ limit: "50" });
    const state = document.getElementById("state-filter").value;
    if (state) query.set("state", state);
    if (append && cursor) query.set("cursor", cursor);
    try {
      const page = await get("api/pipelines?" + query);
      const body = document.querySelector("#pipelines tbody");
      if (!append) body.replaceChildren();
      for (const pipeline of page.pipelines) body.append(row(pipeline));
      cursor = page.cursor;
      document.getElementById("more").hidden = !cursor;
    } catch (error) {
      say(String(error), true);
    }
  }

  let pending = null;
  function reloadSoon() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; load(false); }, 300);
  }

  document.getElementById("state-filter").addEventListener("change", () => load(false));
  document.getElementById("more").addEventListener("click", () => load(true));
  const stream = events("");
  // A root pipeline's own state changed, or one started or ended: the list moved.
  stream.addEventListener("state", (message) => {
    const event = JSON.parse(message.data);
    if (event.node_id === event.root_id) reloadSoon();
  });
  stream.addEventListener("open", () => load(false));
  load(false);
})();
