// orchestrate ui: a few enhancements on server-rendered pages. Every text that comes from
// a run is put in with textContent, never as HTML; HTML comes only from our own server.
"use strict";

const MARKS = { waiting: "○", queued: "◌", running: "●", succeeded: "✓", failed: "✗",
  skipped: "↷", cancelled: "■" };

function setStatus(element, status) {
  if (!element) return;
  for (const name of [...element.classList]) {
    if (name.startsWith("status-")) element.classList.remove(name);
  }
  element.classList.add("status-" + status);
}

function duration(ms) {
  if (ms == null) return "";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return Math.floor(ms / 60000) + " min " + Math.floor((ms % 60000) / 1000) + " s";
}

function tokens(usage) {
  if (!usage) return "";
  return (usage.input_tokens + usage.output_tokens).toLocaleString("en-US") + " tok";
}

// As the terminal shows a cost (orchestrate._cost.format_usd): $12.35, $0.0031, ? unknown.
function usd(amount) {
  if (amount == null) return "?";
  if (amount === 0) return "$0";
  if (amount >= 1) return "$" + amount.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const digits = Math.max(4, 1 - Math.floor(Math.log10(amount)));
  const [whole, decimals] = amount.toFixed(digits).split(".");
  return "$" + whole + "." + decimals.replace(/0+$/, "").padEnd(2, "0");
}

// --- times: "3 min ago", the exact time on hover -------------------------------------------
function relativeTimes(root) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time[datetime]")) {
    const then = Date.parse(el.getAttribute("datetime"));
    if (Number.isNaN(then)) continue;
    const s = Math.round((now - then) / 1000);
    let text;
    if (s < 60) text = s + " s ago";
    else if (s < 3600) text = Math.round(s / 60) + " min ago";
    else if (s < 86400) text = Math.round(s / 3600) + " h ago";
    else text = new Date(then).toLocaleString();
    el.title = new Date(then).toLocaleString();
    el.textContent = text;
  }
}

// --- long outputs folded, copy buttons -----------------------------------------------------
function enhance(root) {
  relativeTimes(root);
  for (const el of root.querySelectorAll(".fold")) {
    if (el.dataset.folded || el.scrollHeight < 420) continue;
    el.dataset.folded = "1";
    el.classList.add("folded");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "show-all";
    button.textContent = "show all";
    button.addEventListener("click", () => { el.classList.remove("folded"); button.remove(); });
    el.after(button);
  }
  for (const button of root.querySelectorAll("button.copy")) {
    button.addEventListener("click", () => {
      navigator.clipboard.writeText(button.dataset.copy).then(() => {
        button.textContent = "Copied";
      });
    });
  }
}

// --- the run form: JSON fields checked as they are typed -----------------------------------
function checkJsonFields(form) {
  let ok = true;
  for (const field of form.querySelectorAll("textarea.json-field")) {
    const problem = field.parentElement.querySelector(".json-problem");
    let message = "";
    if (field.value.trim() !== "") {
      try {
        const value = JSON.parse(field.value);
        const wanted = field.dataset.json;
        if (wanted === "array" && !Array.isArray(value)) message = "must be a JSON array";
        if (wanted === "object" && (value === null || typeof value !== "object" || Array.isArray(value)))
          message = "must be a JSON object";
      } catch (error) {
        message = "not valid JSON: " + error.message;
      }
    }
    field.classList.toggle("invalid", message !== "");
    if (problem) { problem.textContent = message; problem.hidden = message === ""; }
    if (message) ok = false;
  }
  return ok;
}

function runForm() {
  const form = document.querySelector("form.run-form");
  if (!form) return;
  form.addEventListener("input", () => checkJsonFields(form));
  form.addEventListener("submit", (event) => { if (!checkJsonFields(form)) event.preventDefault(); });
}

// --- history: pick two runs to compare -----------------------------------------------------
function comparePicker() {
  const form = document.querySelector("form.compare-form");
  if (!form) return;
  const button = form.querySelector("#compare");
  const picked = () => [...form.querySelectorAll("input.pick:checked")].map((box) => box.value);
  form.addEventListener("change", () => { button.disabled = picked().length !== 2; });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const [a, b] = picked().reverse(); // the older run first
    if (a && b) location.href = "/compare?a=" + encodeURIComponent(a) + "&b=" + encodeURIComponent(b);
  });
}

// --- the run page: live statuses, streamed text, step details ------------------------------
function runPage() {
  const page = document.querySelector(".run-page");
  if (!page) return;
  const runId = page.dataset.run;
  let selected = page.dataset.selected || null;

  function stepItem(stepId) {
    return [...document.querySelectorAll("#steps li.step")].find((li) => li.dataset.step === stepId);
  }
  function graphNode(stepId) {
    return [...document.querySelectorAll(".graph-box .node")].find((g) => g.dataset.step === stepId);
  }
  function showStatus(stepId, status) {
    const item = stepItem(stepId);
    setStatus(item, status);
    if (item) item.querySelector(".mark").textContent = MARKS[status] || "";
    setStatus(graphNode(stepId), status);
  }
  function markSelected() {
    for (const li of document.querySelectorAll("#steps li.step")) li.classList.toggle("selected", li.dataset.step === selected);
    for (const g of document.querySelectorAll(".graph-box .node")) g.classList.toggle("selected", g.dataset.step === selected);
  }
  async function openStep(stepId, push) {
    selected = stepId;
    markSelected();
    const response = await fetch("/runs/" + encodeURIComponent(runId) + "/steps/" + encodeURIComponent(stepId) + "/panel");
    if (!response.ok) return;
    const panel = document.getElementById("panel");
    panel.innerHTML = await response.text(); // our own server's escaped HTML
    enhance(panel);
    if (push) history.pushState({ step: stepId }, "", "/runs/" + runId + "/steps/" + stepId);
  }

  document.getElementById("steps").addEventListener("click", (event) => {
    const li = event.target.closest("li.step");
    if (!li || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    openStep(li.dataset.step, true);
  });
  const graph = document.querySelector(".graph-box");
  if (graph) graph.addEventListener("click", (event) => {
    const node = event.target.closest(".node");
    if (node) openStep(node.dataset.step, true);
  });
  window.addEventListener("popstate", () => {
    const match = location.pathname.match(/\/steps\/([^/]+)$/);
    if (match) openStep(decodeURIComponent(match[1]), false);
  });
  markSelected();

  if (page.dataset.live !== "1") return;
  const source = new EventSource("/api/runs/" + encodeURIComponent(runId) + "/events");
  const handlers = {
    step_queued: (r) => showStatus(r.step_id, "queued"),
    step_started: (r) => {
      showStatus(r.step_id, "running");
      if (r.items != null) setItems(r.step_id, 0, r.items);
    },
    item_finished: (r) => setItems(r.step_id, r.done, r.total),
    step_finished: (r) => {
      showStatus(r.step_id, r.status);
      const item = stepItem(r.step_id);
      if (item) {
        item.querySelector(".time").textContent = duration(r.duration_ms);
        item.querySelector(".tok").textContent = tokens(r.usage);
        item.querySelector(".cost").textContent = r.usage ? usd(r.cost_usd) : "";
      }
      if (r.step_id === selected) openStep(r.step_id, false);
    },
    token: (r) => {
      if (r.step_id !== selected) return;
      const box = document.getElementById("streamed");
      if (!box) return;
      box.closest("details").hidden = false;
      box.textContent += r.text;
    },
    run_finished: () => {
      // The finished page is the server's: outputs, buttons, the history's figures.
      source.close();
      location.reload();
    },
  };
  function setItems(stepId, done, total) {
    const item = stepItem(stepId);
    if (item) item.querySelector(".items").textContent = done + "/" + total;
    const panel = document.querySelector(".panel[data-step] .items");
    if (panel && stepId === selected) panel.textContent = done + "/" + total;
  }
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => handle(JSON.parse(event.data)));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  enhance(document);
  runForm();
  comparePicker();
  runPage();
});
