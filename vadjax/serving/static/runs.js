// The runs page: every workdir under the server's --root (GET /api/workdirs), a sortable
// table of its config and mean metrics, and the chosen runs side by side with their
// figures and config.
'use strict';
const $ = (id) => document.getElementById(id);
let workdirs = [];
let sortKey = 'id', sortUp = true;
const chosen = new Set();

function columns() {
  const metrics = new Set();
  workdirs.forEach((w) => Object.keys(w.metrics).forEach((k) => metrics.add(k)));
  return ['id', 'model', 'method', 'dataset', 'date', ...[...metrics].sort()];
}

function value(w, key) { return key in w ? w[key] : w.metrics[key]; }

function cell(v) {
  if (typeof v === 'number') return v.toFixed(4);
  return v === undefined || v === null ? '' : String(v);
}

function render() {
  const cols = columns();
  const head = $('runs').tHead;
  head.innerHTML = '';
  const tr = head.insertRow();
  for (const c of cols) {
    const th = document.createElement('th');
    th.textContent = c + (c === sortKey ? (sortUp ? ' ▲' : ' ▼') : '');
    th.dataset.key = c;
    th.onclick = () => { sortUp = c === sortKey ? !sortUp : true; sortKey = c; render(); };
    tr.appendChild(th);
  }
  const rows = [...workdirs].sort((a, b) => {
    const x = value(a, sortKey), y = value(b, sortKey);
    if (x === y) return 0;
    if (x === undefined || x === null) return 1;
    if (y === undefined || y === null) return -1;
    return (x < y ? -1 : 1) * (sortUp ? 1 : -1);
  });
  const body = $('runs').tBodies[0];
  body.innerHTML = '';
  for (const w of rows) {
    const r = body.insertRow();
    r.dataset.id = w.id;
    r.className = chosen.has(w.id) ? 'selected' : '';
    for (const c of cols) r.insertCell().textContent = cell(value(w, c));
    r.onclick = () => { chosen.has(w.id) ? chosen.delete(w.id) : chosen.add(w.id); render(); };
  }
  compare();
}

function compare() {
  const box = $('compare');
  box.innerHTML = '';
  for (const w of workdirs.filter((x) => chosen.has(x.id))) {
    const card = document.createElement('div');
    card.className = 'card';
    const h = document.createElement('h3');
    h.textContent = w.id;
    card.appendChild(h);
    const metrics = document.createElement('p');
    metrics.textContent = Object.entries(w.metrics).map(([k, v]) => `${k} ${cell(v)}`)
      .join(' · ') || 'not evaluated yet';
    card.appendChild(metrics);
    for (const f of w.figures) {
      const cap = document.createElement('div');
      cap.className = 'muted';
      cap.textContent = f;
      const img = document.createElement('img');
      img.src = `/api/file?workdir=${encodeURIComponent(w.id)}&path=${encodeURIComponent(f)}`;
      img.alt = f;
      card.append(cap, img);
    }
    const pre = document.createElement('pre');
    pre.textContent = JSON.stringify(w.config, null, 1);
    card.appendChild(pre);
    box.appendChild(card);
  }
}

fetch('/api/workdirs').then((r) => r.json()).then((answer) => {
  workdirs = answer.workdirs;
  $('root').textContent = `${answer.root}: ${workdirs.length} workdir(s)`;
  render();
}).catch((e) => { $('root').textContent = `cannot list runs: ${e}`; });
