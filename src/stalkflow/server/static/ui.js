// stalkflow run viewer: the runs list (/ui/) and one run (/ui/runs/{id}).
// Plain JavaScript, no dependencies. Every request carries the API key, when one is
// stored, in an Authorization header; the key never goes into a URL. The event log is
// read from the SSE endpoint with fetch() (EventSource cannot send headers).
"use strict";

(() => {
  const body = document.body;
  const apiRoot = body.dataset.apiRoot || "";
  const KEY_ITEM = "stalkflow.apiKey";
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);

  // --- the API key -------------------------------------------------------------------

  // A link may carry the key in its fragment (/ui/#key=...): browsers never send the
  // fragment to a server. Keep it for this tab and take it out of the address bar.
  function adoptKeyFromFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    const key = params.get("key");
    if (key === null) return;
    if (key) sessionStorage.setItem(KEY_ITEM, key);
    params.delete("key");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }

  function apiKey() {
    return sessionStorage.getItem(KEY_ITEM);
  }

  function authHeaders(extra) {
    const headers = Object.assign({ Accept: "application/json" }, extra || {});
    const key = apiKey();
    if (key) headers.Authorization = "Bearer " + key;
    return headers;
  }

  class Unauthorized extends Error {}

  function askForKey() {
    const form = $("key-form");
    $("key-message").textContent = apiKey()
      ? "The server refused this API key. Enter the right one."
      : "This server needs an API key.";
    form.hidden = false;
    $("content").hidden = true;
    $("key-input").focus();
  }

  function setUpKeyControls() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_ITEM, key);
      location.reload();
    });
    const forget = $("forget-key");
    forget.hidden = !apiKey();
    forget.addEventListener("click", () => {
      sessionStorage.removeItem(KEY_ITEM);
      location.reload();
    });
  }

  async function api(path, accept) {
    const response = await fetch(apiRoot + path, {
      headers: authHeaders(accept ? { Accept: accept } : {}),
      cache: "no-store",
    });
    if (response.status === 401) {
      askForKey();
      throw new Unauthorized("API key required");
    }
    return response;
  }

  // --- small helpers -----------------------------------------------------------------

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function when(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleString();
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (text instanceof Node) td.appendChild(text);
    else td.textContent = text == null ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function statusBadge(status) {
    const span = document.createElement("span");
    span.className = "status status-" + status;
    span.textContent = status;
    return span;
  }

  function setStatus(element, status) {
    element.className = "status status-" + status;
    element.textContent = status;
  }

  function compact(value, limit) {
    let text;
    try {
      text = JSON.stringify(value);
    } catch (_) {
      text = String(value);
    }
    if (text === undefined) text = "";
    return limit && text.length > limit ? text.slice(0, limit - 1) + "…" : text;
  }

  // An event's fields for display: dynamic keys (kept under "_data") beside declared ones.
  function fields(value) {
    if (!value || typeof value !== "object" || !value._data || typeof value._data !== "object") {
      return value;
    }
    const flat = Object.assign({}, value, value._data);
    delete flat._data;
    return flat;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const isA = (envelope, name) =>
    envelope.type === name || (envelope.types || []).includes(name);

  // --- the runs list -----------------------------------------------------------------

  async function runsPage() {
    const statusFilter = $("status-filter");
    const workflowFilter = $("workflow-filter");
    const params = new URLSearchParams(location.search);
    statusFilter.value = params.get("status") || "";

    try {
      const response = await api("/workflows");
      if (response.ok) {
        for (const name of (await response.json()).workflows) {
          const option = document.createElement("option");
          option.value = option.textContent = name;
          workflowFilter.appendChild(option);
        }
        workflowFilter.value = params.get("workflow") || "";
      }
    } catch (error) {
      if (error instanceof Unauthorized) return;
    }

    let timer = null;
    async function refresh() {
      clearTimeout(timer);
      const query = new URLSearchParams();
      if (statusFilter.value) query.set("status", statusFilter.value);
      if (workflowFilter.value) query.set("workflow_name", workflowFilter.value);
      try {
        const response = await api("/handlers" + (query.toString() ? "?" + query : ""));
        if (!response.ok) throw new Error("GET /handlers answered " + response.status);
        renderRuns((await response.json()).handlers);
        showError("");
        $("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
      } catch (error) {
        if (error instanceof Unauthorized) return;
        showError("Cannot list the runs: " + error.message);
      }
      timer = setTimeout(refresh, POLL_MS);
    }

    function onFilter() {
      const query = new URLSearchParams();
      if (statusFilter.value) query.set("status", statusFilter.value);
      if (workflowFilter.value) query.set("workflow", workflowFilter.value);
      history.replaceState(null, "", location.pathname + (query.toString() ? "?" + query : ""));
      refresh();
    }
    statusFilter.addEventListener("change", onFilter);
    workflowFilter.addEventListener("change", onFilter);
    refresh();
  }

  function renderRuns(handlers) {
    const tbody = document.querySelector("#runs tbody");
    const rows = handlers.slice().reverse().map((handler) => {
      const row = document.createElement("tr");
      row.dataset.runId = handler.handler_id;
      const link = document.createElement("a");
      link.href = apiRoot + "/ui/runs/" + encodeURIComponent(handler.handler_id);
      link.className = "mono";
      link.textContent = handler.handler_id;
      cell(row, link);
      cell(row, handler.workflow_name);
      cell(row, statusBadge(handler.status), "status-cell");
      cell(row, when(handler.started_at));
      cell(row, when(handler.updated_at));
      cell(row, handler.error || "");
      return row;
    });
    tbody.replaceChildren(...rows);
    $("empty").hidden = rows.length > 0;
  }

  // --- one run -----------------------------------------------------------------------

  async function runPage() {
    const runId = body.dataset.runId;
    const seen = new Set();
    let finished = false;
    let graphFor = null;
    let lastInput = null;
    let latest = null;
    let count = 0;
    let refreshTimer = null;

    async function loadRun() {
      const response = await api("/handlers/" + encodeURIComponent(runId));
      if (response.status === 404) {
        setStatus($("status"), "unknown");
        showError("No run " + runId + " among the runs of this server's workflows.");
        finished = true;
        return null;
      }
      const handler = await response.json();
      latest = handler;
      setStatus($("status"), handler.status);
      $("workflow").textContent = handler.workflow_name;
      $("started").textContent = when(handler.started_at);
      $("updated").textContent = when(handler.updated_at);
      $("completed").textContent = when(handler.completed_at);
      $("result").textContent = handler.result
        ? handler.result.type + " " + compact(fields(handler.result.value))
        : "—";
      $("run-error").textContent = handler.error || "—";
      if (graphFor !== handler.workflow_name) {
        graphFor = handler.workflow_name;
        loadGraph(handler.workflow_name);
      }
      showWaiting();
      return handler;
    }

    async function loadState() {
      const response = await api("/handlers/" + encodeURIComponent(runId) + "/state");
      if (!response.ok) return;
      const doc = await response.json();
      $("state").textContent = JSON.stringify(doc.state, null, 2);
      $("state-meta").textContent =
        (doc.typed ? doc.state_type : "untyped") + " · version " + doc.version;
    }

    async function loadGraph(name) {
      try {
        const response = await api(
          "/workflows/" + encodeURIComponent(name) + "/representation.svg",
          "image/svg+xml",
        );
        if (!response.ok) throw new Error("answered " + response.status);
        const parsed = new DOMParser().parseFromString(await response.text(), "image/svg+xml");
        const svg = parsed.documentElement;
        if (svg.nodeName !== "svg") throw new Error("not an SVG document");
        $("graph").replaceChildren(document.importNode(svg, true));
        for (const type of seen) markSeen(type);
      } catch (error) {
        if (!(error instanceof Unauthorized)) {
          $("graph").textContent = "The graph cannot be drawn: " + error.message;
        }
      }
    }

    function markSeen(type) {
      const node = $("graph").querySelector('[data-node-id="' + CSS.escape(type) + '"]');
      if (node) node.classList.add("seen");
    }

    function showWaiting() {
      const box = $("waiting");
      const waiting = latest && latest.status === "running" && lastInput;
      box.hidden = !waiting;
      if (waiting) {
        const prefix = (fields(lastInput.value) || {}).prefix;
        box.textContent = "Waiting for input (" + lastInput.type + ")" + (prefix ? ": " + prefix : "");
      }
    }

    async function refresh() {
      try {
        await Promise.all([loadRun(), loadState()]);
      } catch (error) {
        if (!(error instanceof Unauthorized)) showError("Cannot read the run: " + error.message);
      }
    }

    function soon() {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(refresh, 100);
    }

    function addEvent(envelope, sequence) {
      const row = document.createElement("tr");
      row.dataset.sequence = String(sequence);
      row.dataset.type = envelope.type;
      row.className = "fresh";
      if (isA(envelope, "InputRequiredEvent")) row.classList.add("event-input");
      if (isA(envelope, "StopEvent")) row.classList.add("event-stop");
      if (/Failed|TimedOut|Cancelled/.test(envelope.type)) row.classList.add("event-failed");
      cell(row, sequence, "seq");
      cell(row, envelope.type, "type");
      cell(row, compact(fields(envelope.value), 600), "value");
      document.querySelector("#events tbody").appendChild(row);
      count += 1;
      $("event-count").textContent = "(" + count + ")";
      $("no-events").hidden = true;
      lastInput = isA(envelope, "InputRequiredEvent") ? envelope : null;
      seen.add(envelope.type);
      markSeen(envelope.type);
      showWaiting();
      soon();
    }

    function setLive(text, on) {
      const live = $("live");
      live.textContent = text;
      live.classList.toggle("on", Boolean(on));
    }

    // Reads GET /events/{id} (text/event-stream) from the last sequence seen, parsing
    // the frames itself; reconnects after a dropped connection until the run is over.
    async function follow() {
      let last = -1;
      let backoff = 500;
      while (true) {
        let response;
        try {
          response = await api(
            "/events/" + encodeURIComponent(runId) + "?sse=true&after_sequence=" + last,
            "text/event-stream",
          );
        } catch (error) {
          if (error instanceof Unauthorized) return;
          setLive("reconnecting…", false);
          await sleep(backoff);
          backoff = Math.min(backoff * 2, 5000);
          continue;
        }
        if (response.status === 204) break; // finished, nothing after the cursor
        if (response.status === 404) return;
        if (!response.ok || !response.body) {
          setLive("stream error " + response.status, false);
          await sleep(backoff);
          backoff = Math.min(backoff * 2, 5000);
          continue;
        }
        backoff = 500;
        setLive("live", true);
        let stopped = false;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value.replace(/\r\n?/g, "\n");
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              const frame = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              let id = null;
              const data = [];
              for (const line of frame.split("\n")) {
                if (line.startsWith(":")) continue; // heartbeat
                const colon = line.indexOf(":");
                const field = colon < 0 ? line : line.slice(0, colon);
                const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
                if (field === "id") id = text;
                else if (field === "data") data.push(text);
              }
              if (!data.length) continue;
              const envelope = JSON.parse(data.join("\n"));
              const sequence = id === null ? last + 1 : Number(id);
              last = Math.max(last, sequence);
              addEvent(envelope, sequence);
              if (isA(envelope, "StopEvent")) stopped = true;
            }
          }
        } catch (_) {
          // the connection dropped: resume from `last`
        }
        if (stopped) break;
        setLive("reconnecting…", false);
        const handler = await loadRun().catch(() => null);
        if (handler && handler.status !== "running") {
          // the stream ended with the run; read what is left after the cursor, if anything
          await sleep(200);
          continue;
        }
        await sleep(backoff);
      }
      finished = true;
      setLive("ended", false);
      await refresh();
    }

    async function poll() {
      await refresh();
      if (!finished) setTimeout(poll, POLL_MS);
    }

    await poll();
    follow();
  }

  // --- start -------------------------------------------------------------------------

  adoptKeyFromFragment();
  setUpKeyControls();
  if (body.dataset.page === "runs") runsPage();
  else if (body.dataset.page === "run") runPage();
})();
