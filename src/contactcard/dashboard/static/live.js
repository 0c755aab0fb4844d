// The request journal's live view: new requests, sent by the server as events, added at
// the top of the table. Every field goes in with textContent (never as HTML), so a path
// or user agent holding markup shows as the text it is. Without this file the page still
// works: reloading it shows the new requests.
"use strict";
(function () {
  const table = document.getElementById("journal");
  if (!table || !table.dataset.live || !window.EventSource) return;
  const body = table.tBodies[0];
  const state = document.getElementById("live-state");
  const base = table.dataset.base;
  const site = table.dataset.site;
  const KEEP = 500; // rows kept on the page; older ones fall off the bottom

  function cell(row, text, className) {
    const td = row.insertCell();
    if (className) td.className = className;
    if (text !== undefined) td.textContent = text;
    return td;
  }

  function link(td, href, text, wrap) {
    const a = document.createElement("a");
    a.href = href;
    if (wrap) {
      const inner = document.createElement(wrap);
      inner.textContent = text;
      a.appendChild(inner);
    } else {
      a.textContent = text;
    }
    td.appendChild(a);
    return a;
  }

  function isolated(td, text) {
    const bdi = document.createElement("bdi");
    bdi.textContent = text;
    td.appendChild(bdi);
  }

  function add(entry) {
    if (body.querySelector('tr[data-id="' + Number(entry.id) + '"]')) return; // seen already
    const row = document.createElement("tr");
    row.dataset.id = String(entry.id);
    row.dataset.trace = entry.trace_id;
    row.className = "new";
    cell(row, entry.at, "at");
    cell(row, entry.method);
    isolated(cell(row, undefined, "path"), entry.path);
    const number = cell(row);
    if (entry.phone_number) {
      link(number, base + "/requests?number=" + encodeURIComponent(entry.phone_number), entry.phone_number);
    }
    cell(row, String(entry.status), "status s" + Math.floor(Number(entry.status) / 100) + "xx");
    const code = cell(row);
    if (entry.error_code) link(code, site + "/docs/errors/" + encodeURIComponent(entry.error_code), entry.error_code);
    cell(row, entry.duration_ms, "num");
    cell(row, entry.retry_count, "num");
    isolated(cell(row, undefined, "agent"), entry.user_agent);
    const trace = link(cell(row), base + "/requests?trace_id=" + encodeURIComponent(entry.trace_id), entry.trace_id, "code");
    trace.className = "trace";
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > KEEP) body.deleteRow(-1);
    const none = document.getElementById("no-requests");
    if (none) none.remove();
  }

  function show(text) {
    state.textContent = text;
    state.hidden = false;
  }

  const source = new EventSource(table.dataset.live);
  source.addEventListener("open", function () {
    show("Live: new requests appear at the top as they arrive.");
  });
  source.addEventListener("request", function (event) {
    add(JSON.parse(event.data));
  });
  source.addEventListener("error", function () {
    // EventSource connects again by itself (each stream ends after a while); if it has
    // given up (signed out, server gone), say so.
    show(source.readyState === EventSource.CLOSED ? "Live view stopped: reload the page." : "Live view: reconnecting…");
  });
})();
