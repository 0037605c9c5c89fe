"use strict";
(() => {
  const { base, get, post, el, say, when, events } = aiobamboo;
  const SVG = "http://www.w3.org/2000/svg";
  const match = location.pathname.match(/pipelines\/([^/]+)\/?$/);
  const pipelineId = decodeURIComponent(match ? match[1] : "");
  const path = "api/pipelines/" + encodeURIComponent(pipelineId);
  const states = new Map(); // node id -> state
  const nodes = new Map(); // node id -> node of the graph (with .pipeline for a sub-process)
  const expanded = new Set();
  let graph = null;
  let selected = null;

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function index(sub) {
    for (const node of sub.nodes) {
      nodes.set(node.id, node);
      if (node.pipeline) index(node.pipeline);
    }
  }

  function isEvent(type) { return type.endsWith("Event"); }
  function isGateway(type) { return type.endsWith("Gateway"); }

  function size(node) {
    if (isEvent(node.type)) return [36, 36];
    if (isGateway(node.type)) return [44, 44];
    return [150, 46];
  }

  // Flows into or out of an opened sub-process attach to its start or end event.
  function endpoint(id, side) {
    const node = nodes.get(id);
    if (node && node.pipeline && expanded.has(id)) {
      const inner = node.pipeline.nodes.find((n) => n.type.endsWith(side === "in" ? "StartEvent" : "EndEvent"));
      if (inner) return endpoint(inner.id, side);
    }
    return id;
  }

  function add(g, sub, parent) {
    for (const node of sub.nodes) {
      if (node.pipeline && expanded.has(node.id)) {
        g.setNode(node.id, { node, cluster: true, paddingTop: 24 });
        add(g, node.pipeline, node.id);
      } else {
        const [width, height] = size(node);
        g.setNode(node.id, { node, width, height });
      }
      if (parent) g.setParent(node.id, parent);
    }
    for (const flow of sub.flows) {
      g.setEdge(endpoint(flow.source, "out"), endpoint(flow.target, "in"), { flow }, flow.id);
    }
  }

  function label(node) {
    return node.name || node.type.replace(/([a-z])([A-Z])/g, "$1 $2");
  }

  function shape(node) {
    const [width, height] = size(node);
    if (isEvent(node.type)) {
      const circle = svg("circle", { r: width / 2, class: "shape" });
      if (node.type.endsWith("EndEvent")) circle.setAttribute("stroke-width", "3");
      return circle;
    }
    if (isGateway(node.type)) {
      const h = height / 2;
      return svg("polygon", { points: `0,${-h} ${h},0 0,${h} ${-h},0`, class: "shape" });
    }
    const rect = svg("rect", { x: -width / 2, y: -height / 2, width, height, rx: 8, class: "shape" });
    if (node.pipeline) rect.setAttribute("stroke-dasharray", "6 3");
    return rect;
  }

  function draw() {
    const g = new dagre.graphlib.Graph({ compound: true, multigraph: true });
    g.setGraph({ rankdir: "LR", nodesep: 28, ranksep: 46, marginx: 16, marginy: 16 });
    g.setDefaultEdgeLabel(() => ({}));
    add(g, graph, null);
    dagre.layout(g);
    const canvas = document.getElementById("graph");
    const { width, height } = g.graph();
    canvas.setAttribute("width", width);
    canvas.setAttribute("height", height);
    canvas.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8c959f" }));
    defs.append(marker);
    canvas.replaceChildren(defs);
    // Frames of opened sub-processes first, nested ones over their parents.
    const clusters = g.nodes().filter((id) => g.node(id).cluster);
    const depth = (id) => { let d = 0; for (let p = g.parent(id); p; p = g.parent(p)) d += 1; return d; };
    clusters.sort((a, b) => depth(a) - depth(b));
    for (const id of clusters) {
      const box = g.node(id);
      const frame = svg("g", { "data-node-id": id, "data-type": box.node.type, class: "node subprocess open" });
      frame.append(svg("rect", { x: box.x - box.width / 2, y: box.y - box.height / 2, width: box.width, height: box.height, rx: 10, class: "cluster shape" }));
      frame.append(svg("text", { x: box.x - box.width / 2 + 8, y: box.y - box.height / 2 + 15 }, "▾ " + label(box.node)));
      frame.addEventListener("click", (event) => { event.stopPropagation(); expanded.delete(id); select(id); draw(); });
      canvas.append(frame);
    }
    for (const edge of g.edges()) {
      const points = g.edge(edge).points.map((p) => `${p.x},${p.y}`).join(" ");
      canvas.append(svg("polyline", { points, class: "edge", "marker-end": "url(#arrow)", "data-flow-id": edge.name }));
    }
    for (const id of g.nodes()) {
      const box = g.node(id);
      if (box.cluster) continue;
      const group = svg("g", { class: "node", "data-node-id": id, "data-type": box.node.type, transform: `translate(${box.x},${box.y})` });
      group.append(shape(box.node), svg("title", {}, `${label(box.node)} (${box.node.type}) ${id}`));
      const text = label(box.node);
      const shown = text.length > 20 ? text.slice(0, 19) + "…" : text;
      const below = isEvent(box.node.type) || isGateway(box.node.type);
      group.append(svg("text", { "text-anchor": "middle", y: below ? box.height / 2 + 13 : 4 }, (box.node.pipeline ? "▸ " : "") + shown));
      group.addEventListener("click", (event) => {
        event.stopPropagation();
        if (box.node.pipeline) expanded.add(id);
        select(id);
        if (box.node.pipeline) draw();
      });
      canvas.append(group);
    }
    paint();
  }

  function paint() {
    for (const element of document.querySelectorAll("[data-node-id]")) {
      const id = element.getAttribute("data-node-id");
      element.setAttribute("data-state", states.get(id) || "NOT_STARTED");
      element.classList.toggle("selected", id === selected);
    }
    const root = states.get(pipelineId) || "";
    const badge = document.getElementById("pipeline-state");
    badge.textContent = root || "stored";
    badge.setAttribute("data-state", root);
    document.body.setAttribute("data-state", root);
  }

  function collect(entry) {
    if (entry.state) states.set(entry.id, entry.state);
    for (const child of Object.values(entry.children || {})) collect(child);
  }

  async function refresh() {
    try {
      collect(await get(path));
      paint();
      if (selected) showNode(selected);
    } catch (error) {
      say(String(error), true);
    }
  }

  function button(text, action) {
    const b = el("button", {}, text);
    b.addEventListener("click", async () => { await action(); refresh(); });
    return b;
  }

  function jsonOf(textarea) {
    try {
      return textarea.value.trim() ? JSON.parse(textarea.value) : null;
    } catch (error) {
      say("not JSON: " + error.message, true);
      throw error;
    }
  }

  function actions(node, id) {
    const box = el("div");
    const nodePath = "api/nodes/" + encodeURIComponent(id) + "/";
    const type = node ? node.type : "";
    if (type === "ServiceActivity") {
      const data = el("textarea", { rows: 3, placeholder: "callback data (JSON)" });
      box.append(data, el("br"));
      box.append(button("callback", () => post(nodePath + "callback", { data: jsonOf(data) })));
      box.append(button("retry", () => post(nodePath + "retry", {})));
      box.append(button("skip", () => post(nodePath + "skip", {})));
      box.append(button("forced fail", () => post(nodePath + "forced-fail", { ex_data: "forced fail from the page" })));
    }
    if (node && node.pipeline) {
      box.append(button("retry sub-process", () => post(nodePath + "retry-subprocess", {})));
      box.append(button("pause sub-process", () => post("api/pipelines/" + encodeURIComponent(id) + "/pause", {})));
      box.append(button("resume sub-process", () => post("api/pipelines/" + encodeURIComponent(id) + "/resume", {})));
    }
    if (type === "ExclusiveGateway" || type === "ConditionalParallelGateway") {
      const outgoing = [];
      const walk = (sub) => { for (const f of sub.flows) if (f.source === id) outgoing.push(f); for (const n of sub.nodes) if (n.pipeline) walk(n.pipeline); };
      walk(graph);
      const choose = el("select", type === "ConditionalParallelGateway" ? { multiple: "" } : {});
      for (const flow of outgoing) {
        const target = nodes.get(flow.target);
        choose.append(el("option", { value: flow.id }, "to " + (target ? label(target) : flow.target)));
      }
      box.append(choose);
      if (type === "ExclusiveGateway") {
        box.append(button("skip gateway", () => post(nodePath + "skip-exclusive-gateway", { flow_id: choose.value })));
      } else {
        const converge = el("select");
        for (const other of nodes.values()) if (other.type === "ConvergeGateway") converge.append(el("option", { value: other.id }, label(other) + " " + other.id.slice(0, 8)));
        box.append(converge);
        box.append(button("skip gateway", () => post(nodePath + "skip-conditional-parallel-gateway", {
          flow_ids: [...choose.selectedOptions].map((o) => o.value), converge_gateway_id: converge.value })));
      }
    }
    if (!isEvent(type) && id !== pipelineId) {
      box.append(button("pause before", () => post(nodePath + "pause", {})));
      box.append(button("resume", () => post(nodePath + "resume", {})));
    }
    return box;
  }

  async function showNode(id) {
    const panel = document.getElementById("panel");
    const node = nodes.get(id);
    let detail = null;
    try {
      detail = await get("api/nodes/" + encodeURIComponent(id));
    } catch (error) {
      detail = { state: null, inputs: {}, outputs: {}, histories: [] };
    }
    if (selected !== id) return;
    const state = detail.state ? detail.state.state : "NOT_STARTED";
    panel.replaceChildren(
      el("h3", {}, node ? label(node) : id),
      el("p", {}, `${node ? node.type : ""} · `),
      actions(node, id),
      el("h4", {}, "inputs"), el("pre", {}, JSON.stringify(detail.inputs, null, 1)),
      el("h4", {}, "outputs"), el("pre", {}, JSON.stringify(detail.outputs, null, 1)),
      el("h4", {}, `earlier attempts (${detail.histories.length})`),
      el("pre", {}, JSON.stringify(detail.histories.map((h) => ({ started: when(h.started_time), ended: when(h.archived_time), outputs: h.outputs })), null, 1)),
    );
    const badge = el("span", { class: "state-badge", "data-state": state }, state);
    panel.children[1].append(badge, el("code", {}, " " + id));
    if (detail.state && detail.state.started_time) panel.children[1].append(el("span", {}, " started " + when(detail.state.started_time)));
  }

  function select(id) {
    selected = id;
    paint();
    showNode(id);
  }

  async function start() {
    document.getElementById("pipeline-id").textContent = pipelineId;
    try {
      graph = await get(path + "/graph");
    } catch (error) {
      say(String(error), true);
      return;
    }
    document.getElementById("pipeline-name").textContent = graph.name || "(unnamed pipeline)";
    index(graph);
    draw();
    for (const b of document.querySelectorAll("[data-pipeline-action]")) {
      b.addEventListener("click", async () => { await post(path + "/" + b.getAttribute("data-pipeline-action"), {}); refresh(); });
    }
    // The stream's cursor is set when it opens: read the states then, and apply every later change.
    const stream = events("pipeline_id=" + encodeURIComponent(pipelineId));
    stream.addEventListener("open", refresh);
    stream.addEventListener("state", (message) => {
      const event = JSON.parse(message.data);
      states.set(event.node_id, event.state);
      paint();
      if (event.node_id === selected) showNode(selected);
    });
    for (const kind of ["pipeline_finished", "pipeline_revoked", "pipeline_failed"]) stream.addEventListener(kind, refresh);
    refresh();
  }

  start();
})();
