// The HuggingGPT chat page: conversations, drag-and-drop uploads, a live task graph per answer, inline artifacts.
"use strict";

const $ = (selector) => document.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";
const STATE_OF = { ok: "done", failed: "failed", timeout: "failed", skipped: "skipped", running: "running" };

const WELCOME = document.querySelector("#welcome").cloneNode(true);

const state = {
  key: localStorage.getItem("hugginggpt.key") || "",
  conversation: null,
  pending: [], // uploaded files waiting to be sent: {id, filename, media_type, preview}
  busy: false,
};

class AuthNeeded extends Error {}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.key) headers.set("Authorization", `Bearer ${state.key}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    $("#key-form").hidden = false;
    throw new AuthNeeded("this server needs an API key");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event: ")) type = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) yield { type, data: JSON.parse(data.join("\n")) };
    }
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function scrollDown() {
  const box = $("#messages");
  box.scrollTop = box.scrollHeight;
}

// The plan as a graph: one column per depth, an edge per dependency; nodes carry state and model.
class TaskGraph {
  constructor(container) {
    this.container = container;
    this.nodes = new Map();
  }

  add(task) {
    const old = this.nodes.get(task.id);
    this.nodes.set(task.id, { ...task, model: old?.model || "", state: old?.state || "pending" });
    this.render();
  }

  update(id, changes) {
    const node = this.nodes.get(id);
    if (!node) return;
    Object.assign(node, changes);
    this.render();
  }

  render() {
    const W = 190, H = 58, GX = 48, GY = 14, PAD = 8;
    const depth = new Map();
    const depthOf = (id, seen = new Set()) => {
      if (depth.has(id)) return depth.get(id);
      const node = this.nodes.get(id);
      const deps = (node?.dep || []).filter((d) => this.nodes.has(d) && !seen.has(d));
      const value = deps.length ? 1 + Math.max(...deps.map((d) => depthOf(d, new Set([...seen, id])))) : 0;
      depth.set(id, value);
      return value;
    };
    const columns = [];
    for (const id of this.nodes.keys()) {
      const column = depthOf(id);
      (columns[column] ||= []).push(id);
    }
    const place = new Map();
    columns.forEach((ids, column) =>
      ids.forEach((id, row) => place.set(id, { x: PAD + column * (W + GX), y: PAD + row * (H + GY) })));
    const rows = Math.max(1, ...columns.map((ids) => ids.length));
    const root = svg("svg", {
      width: PAD * 2 + columns.length * (W + GX) - GX,
      height: PAD * 2 + rows * (H + GY) - GY,
      role: "img",
      "aria-label": "task graph",
    });
    for (const [id, node] of this.nodes) {
      for (const dep of node.dep || []) {
        const from = place.get(dep), to = place.get(id);
        if (!from || !to) continue;
        const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2, mid = (x1 + x2) / 2;
        root.append(svg("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2 - 2},${y2}` }));
      }
    }
    for (const [id, node] of this.nodes) {
      const { x, y } = place.get(id);
      const group = svg("g", { class: "node", "data-task-id": id, "data-state": node.state, transform: `translate(${x},${y})` });
      group.append(svg("rect", { width: W, height: H, rx: 9 }));
      group.append(svg("text", { x: 10, y: 18 }, `#${id} ${node.task}`));
      group.append(svg("text", { x: 10, y: 34, class: "model" }, clip(node.model || "choosing a model…", 30)));
      group.append(svg("text", { x: 10, y: 50, class: "status" }, node.state));
      if (node.error) group.append(svg("title", {}, node.error));
      root.append(group);
    }
    this.container.replaceChildren(root);
    this.container.hidden = this.nodes.size === 0;
  }
}

function clip(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

// One request and its answer on the page.
class Exchange {
  constructor(request, attachments = []) {
    const user = el("div", "bubble user", request);
    if (attachments.length) {
      const chips = el("div", "chips");
      for (const file of attachments) chips.append(el("span", "chip", file.filename));
      user.append(chips);
    }
    this.box = el("div", "bubble assistant");
    const graphBox = el("div", "graph");
    graphBox.hidden = true;
    this.graph = new TaskGraph(graphBox);
    this.artifacts = el("div", "artifacts");
    this.answer = el("div", "answer");
    this.meta = el("div", "meta");
    this.problems = el("div", "problems");
    this.box.append(graphBox, this.problems, this.artifacts, this.answer, this.meta);
    $("#welcome")?.remove();
    $("#messages").append(user, this.box);
    this.shown = new Set();
    scrollDown();
  }

  apply(event) {
    const data = event.data;
    switch (event.type) {
      case "run.start":
        this.box.dataset.runId = data.run_id;
        this.answer.classList.add("streaming");
        break;
      case "plan.task":
        this.graph.add(data.task);
        break;
      case "selection":
        this.graph.update(data.task_id, { model: data.model_id || "no model" });
        break;
      case "task.start":
        this.graph.update(data.task_id, { model: data.model, state: "running" });
        break;
      case "task.end":
        this.graph.update(data.task_id, { model: data.model || undefined, state: STATE_OF[data.status] || "failed", error: data.error });
        this.noteProblem(data.task_id, data.task, data.status, data.error);
        for (const value of Object.values(data.outputs || {})) this.showArtifact(value);
        break;
      case "answer.token":
        this.answer.textContent += data.text;
        break;
      case "answer.done":
        this.finish(data.answer);
        break;
      case "error":
        this.box.append(el("div", "error", `${data.stage}: ${data.message}`));
        break;
      case "run.end":
        this.answer.classList.remove("streaming");
        this.box.dataset.status = data.status;
        if (data.status !== "done") this.box.append(el("div", "error", `run ${data.status}: ${data.error || ""}`));
        break;
    }
    scrollDown();
  }

  finish(answer) {
    this.answer.textContent = answer.text;
    this.answer.classList.remove("streaming");
    const chosen = new Map((answer.selections || []).map((s) => [s.task_id, s.model_id]));
    for (const task of answer.plan || []) this.graph.add(task);
    for (const result of answer.results || []) {
      this.graph.update(result.task_id, {
        model: result.model_id || chosen.get(result.task_id) || "",
        state: STATE_OF[result.status] || "pending",
        error: result.error,
      });
      this.noteProblem(result.task_id, result.task, result.status, result.error);
      for (const value of Object.values(result.outputs || {})) this.showArtifact(value);
    }
    const seconds = answer.timings?.total;
    this.meta.textContent = `${answer.llm_calls} LLM calls` + (seconds !== undefined ? ` · ${seconds.toFixed(2)} s` : "");
    this.box.dataset.status = "done";
  }

  noteProblem(id, task, status, error) {
    if (status === "ok" || !error || this.problems.querySelector(`[data-task-id="${id}"]`)) return;
    const line = el("div", "error", `task ${id} (${task}) ${status}: ${error}`);
    line.dataset.taskId = id;
    this.problems.append(line);
  }

  async showArtifact(value) {
    if (!value || typeof value !== "object" || !value.url || this.shown.has(value.file_id)) return;
    this.shown.add(value.file_id);
    const figure = el("div", "artifact");
    figure.dataset.fileId = value.file_id;
    this.artifacts.append(figure);
    try {
      const blob = await (await api(value.url)).blob();
      const url = URL.createObjectURL(blob);
      let media;
      if (value.media_type.startsWith("image/")) {
        media = el("img");
        media.alt = value.filename;
      } else if (value.media_type.startsWith("audio/")) {
        media = el("audio");
        media.controls = true;
      } else if (value.media_type.startsWith("video/")) {
        media = el("video");
        media.controls = true;
      } else {
        media = el("a", "", "download");
        media.download = value.filename;
      }
      if (media.tagName === "A") media.href = url; else media.src = url;
      figure.append(media, el("span", "", value.name));
    } catch (error) {
      figure.append(el("span", "error", `${value.name}: ${error.message}`));
    }
  }
}

async function ensureConversation() {
  if (state.conversation) return state.conversation;
  const response = await api("/v1/conversations", { method: "POST" });
  state.conversation = (await response.json()).id;
  history.replaceState(null, "", `#${state.conversation}`);
  return state.conversation;
}

async function upload(files) {
  for (const file of files) {
    const chip = el("span", "chip", `uploading ${file.name}…`);
    $("#attachments").append(chip);
    try {
      const form = new FormData();
      form.append("file", file);
      form.append("conversation_id", await ensureConversation());
      const info = await (await api("/v1/files", { method: "POST", body: form })).json();
      state.pending.push({ ...info, preview: file.type.startsWith("image/") ? URL.createObjectURL(file) : null });
    } catch (error) {
      alert(`Upload of ${file.name} failed: ${error.message}`);
    } finally {
      chip.remove();
    }
  }
  showPending();
}

function showPending() {
  const box = $("#attachments");
  box.replaceChildren();
  box.classList.add("chips");
  for (const file of state.pending) {
    const chip = el("span", "chip");
    chip.dataset.fileId = file.id;
    if (file.preview) {
      const thumb = el("img");
      thumb.src = file.preview;
      chip.append(thumb);
    }
    chip.append(document.createTextNode(file.filename));
    const remove = el("button", "", "×");
    remove.type = "button";
    remove.title = "remove";
    remove.addEventListener("click", () => {
      state.pending = state.pending.filter((f) => f !== file);
      showPending();
    });
    chip.append(remove);
    box.append(chip);
  }
}

async function send(message) {
  if (state.busy || !message.trim()) return;
  state.busy = true;
  $("#send").disabled = true;
  const files = state.pending;
  state.pending = [];
  showPending();
  const exchange = new Exchange(message, files);
  try {
    const body = { message, conversation_id: await ensureConversation(), files: files.map((f) => f.id) };
    const response = await api("/v1/runs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    for await (const event of readEvents(response)) exchange.apply(event);
  } catch (error) {
    exchange.apply({ type: "error", data: { stage: "request", message: error.message } });
    exchange.answer.classList.remove("streaming");
  } finally {
    state.busy = false;
    $("#send").disabled = false;
    loadConversations();
  }
}

async function loadConversations() {
  try {
    const { data } = await (await api("/v1/conversations")).json();
    const nav = $("#conversations");
    nav.replaceChildren();
    for (const conversation of data) {
      const link = el("a", conversation.id === state.conversation ? "active" : "", conversation.title || "(untitled)");
      link.href = `#${conversation.id}`;
      link.dataset.conversationId = conversation.id;
      link.addEventListener("click", (event) => {
        event.preventDefault();
        openConversation(conversation.id);
      });
      nav.append(link);
    }
  } catch (error) {
    if (!(error instanceof AuthNeeded)) console.error(error);
  }
}

async function openConversation(id) {
  const conversation = await (await api(`/v1/conversations/${encodeURIComponent(id)}`)).json();
  state.conversation = id;
  state.pending = [];
  showPending();
  $("#messages").replaceChildren();
  const runs = new Map(conversation.runs.map((run) => [run.id, run]));
  for (const message of conversation.messages) {
    const run = message.run_id && runs.get(message.run_id);
    if (!run) {
      $("#messages").append(el("div", `bubble ${message.role === "user" ? "user" : "assistant"}`, message.content));
      continue;
    }
    if (message.role !== "user") continue;
    const exchange = new Exchange(run.request);
    if (run.answer) exchange.finish(run.answer);
    else exchange.apply({ type: "run.end", data: { status: run.status, error: run.error } });
  }
  history.replaceState(null, "", `#${id}`);
  loadConversations();
}

function newChat() {
  state.conversation = null;
  state.pending = [];
  showPending();
  $("#messages").replaceChildren(WELCOME.cloneNode(true));
  history.replaceState(null, "", "#");
  loadConversations();
}

function setup() {
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const prompt = $("#prompt");
    const message = prompt.value;
    prompt.value = "";
    send(message);
  });
  $("#prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  $("#file-input").addEventListener("change", (event) => upload([...event.target.files]));
  $("#new-chat").addEventListener("click", newChat);
  $("#key-button").addEventListener("click", () => { $("#key-form").hidden = false; });
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("#key-input").value.trim();
    localStorage.setItem("hugginggpt.key", state.key);
    $("#key-form").hidden = true;
    loadConversations();
  });
  const main = $("#main");
  let depth = 0;
  main.addEventListener("dragenter", (event) => { event.preventDefault(); depth += 1; $("#drop-overlay").hidden = false; });
  main.addEventListener("dragleave", () => { depth -= 1; if (depth <= 0) { depth = 0; $("#drop-overlay").hidden = true; } });
  main.addEventListener("dragover", (event) => event.preventDefault());
  main.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    $("#drop-overlay").hidden = true;
    upload([...event.dataTransfer.files]);
  });
  const fromHash = location.hash.slice(1);
  if (fromHash) openConversation(fromHash).catch(() => newChat());
  else loadConversations();
}

setup();
