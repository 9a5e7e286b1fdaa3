// The scoring page: sends what is dropped to POST /score (maps=1) and shows the answer:
// the frame with its heat map, the scores, the decision at the slider's threshold and, for
// several frames, a timeline. The threshold only moves decisions, here in the page, as it
// does on the server (anomalous = normalised score > threshold).
'use strict';
const $ = (id) => document.getElementById(id);
let runs = [];
let result = null;        // the last answer, with its frames and heat maps as images
let current = 0;          // the frame shown
let threshold = 0;

const VIDEO_TYPES = { avi: 'video/x-msvideo', mp4: 'video/mp4', mkv: 'video/x-matroska',
                      mov: 'video/quicktime', webm: 'video/webm' };

function selectedRun() { return runs.find((r) => r.id === $('run').value); }

function setStatus(text, bad) {
  $('status').textContent = text;
  $('status').className = bad ? 'anomalous' : 'muted';
}

async function init() {
  const answer = await (await fetch('/api/runs')).json();
  runs = answer.runs;
  $('browse-link').hidden = !answer.browse;
  for (const r of runs) {
    const o = document.createElement('option');
    o.value = r.id;
    o.textContent = `${r.id} (${r.model}, ${r.method})`;
    $('run').appendChild(o);
  }
  if (!runs.length) setStatus('This server serves no run; see the runs page.', true);
  $('run').onchange = chooseRun;
  chooseRun();
  pollReady();
}

function chooseRun() {
  const r = selectedRun();
  if (!r) return;
  const shape = r.input.frame_shape.join('×');
  $('run-input').textContent = r.input.kind === 'clip'
    ? `${r.id} scores videos: clips of ${r.input.clip_length} frames of ${shape}`
    : `${r.id} scores each frame on its own (${shape}, ${r.input.kind})`;
  const preset = $('threshold-preset');
  preset.innerHTML = '';
  for (const [name, value] of Object.entries(r.thresholds)) {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = `${name} (${Number(value).toFixed(3)})`;
    o.selected = name === r.threshold;
    preset.appendChild(o);
  }
  setThreshold(r.thresholds[r.threshold]);
  result = null;
  $('result').hidden = true;
}

async function pollReady() {
  let ok = false;
  try { ok = (await fetch('/ready')).ok; } catch (e) { ok = false; }
  $('ready').textContent = ok ? 'ready' : 'starting…';
  $('ready').className = 'pill ' + (ok ? 'ok' : 'bad');
  if (!ok) setTimeout(pollReady, 1000);
}

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.split(',', 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function imageOf(b64) {
  return new Promise((resolve, reject) => {
    const im = new Image();
    im.onload = () => resolve(im);
    im.onerror = reject;
    im.src = 'data:image/png;base64,' + b64;
  });
}

function typeOf(file) {
  return file.type || VIDEO_TYPES[file.name.split('.').pop().toLowerCase()] ||
    'application/octet-stream';
}

async function score(files) {
  const r = selectedRun();
  if (!r || !files.length) return;
  setStatus(`scoring ${files.length} file(s)…`);
  let response;
  if (files.length === 1) {
    response = await fetch(`/score?maps=1&run=${encodeURIComponent(r.id)}`, {
      method: 'POST', headers: { 'Content-Type': typeOf(files[0]) }, body: files[0] });
  } else {
    const sorted = [...files].sort((a, b) => a.name.localeCompare(b.name));
    const key = r.input.kind === 'clip' ? 'frames' : 'images';
    const body = { [key]: await Promise.all(sorted.map(base64Of)), run: r.id, maps: true };
    response = await fetch('/score', { method: 'POST', body: JSON.stringify(body),
                                       headers: { 'Content-Type': 'application/json' } });
  }
  const answer = await response.json();
  if (!response.ok) {
    setStatus(`refused (${response.status}): ${answer.error}`, true);
    return;
  }
  answer.frames = await Promise.all(answer.results.map((x) => imageOf(x.image)));
  answer.heatmaps = await Promise.all(answer.results.map(
    (x) => (x.heatmap ? imageOf(x.heatmap) : null)));
  result = answer;
  const normalized = answer.results.map((x) => x.normalized);
  current = normalized.indexOf(Math.max(...normalized));
  const top = Math.max(2, ...normalized.map((v) => 1.2 * v),
                       ...Object.values(r.thresholds).map((v) => 1.2 * v));
  $('threshold').max = top.toFixed(3);
  $('threshold').min = Math.min(0, Math.min(...normalized) - 0.05).toFixed(3);
  setThreshold(answer.threshold_value);
  setStatus(`scored ${answer.results.length} frame(s) with ${answer.run}`);
  $('result').hidden = false;
  render();
}

function setThreshold(value) {
  threshold = Number(value);
  $('threshold').value = threshold;
  $('threshold-value').textContent = threshold.toFixed(3);
  if (result) render();
}

// jet, as matplotlib draws the offline overlays
function jet(v) {
  const c = (x) => Math.max(0, Math.min(1, 1.5 - Math.abs(4 * v - x)));
  return [c(3) * 255, c(2) * 255, c(1) * 255];
}

function drawFrame() {
  const canvas = $('frame');
  const im = result.frames[current];
  const zoom = Math.max(1, Math.floor(256 / im.height));
  canvas.width = im.width * zoom;
  canvas.height = im.height * zoom;
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(im, 0, 0, canvas.width, canvas.height);
  const heat = result.heatmaps[current];
  canvas.dataset.heatmap = heat && $('overlay').checked ? '1' : '0';
  if (canvas.dataset.heatmap !== '1') return;
  const off = document.createElement('canvas');
  off.width = heat.width;
  off.height = heat.height;
  const o = off.getContext('2d');
  o.drawImage(heat, 0, 0);
  const px = o.getImageData(0, 0, off.width, off.height);
  for (let i = 0; i < px.data.length; i += 4) {
    const [r, g, b] = jet(px.data[i] / 255);
    px.data[i] = r; px.data[i + 1] = g; px.data[i + 2] = b; px.data[i + 3] = 128;
  }
  o.putImageData(px, 0, 0);
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
}

function drawTimeline() {
  const n = result.results.length;
  $('timeline-box').hidden = n < 2;
  const canvas = $('timeline');
  canvas.dataset.frames = n;
  if (n < 2) return;
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, pad = 8;
  const values = result.results.map((x) => x.normalized);
  const top = Math.max(threshold, ...values) * 1.1 || 1;
  const low = Math.min(0, ...values);
  const x = (i) => pad + (i / (n - 1)) * (w - 2 * pad);
  const y = (v) => h - pad - ((v - low) / (top - low)) * (h - 2 * pad);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = 'rgba(198, 40, 40, 0.18)';      // the anomalous stretches
  let stretches = 0;
  for (let i = 0; i < n; i++) {
    if (values[i] <= threshold) continue;
    let j = i;
    while (j + 1 < n && values[j + 1] > threshold) j++;
    ctx.fillRect(x(i) - 2, 0, Math.max(4, x(j) - x(i) + 4), h);
    stretches++;
    i = j;
  }
  canvas.dataset.stretches = stretches;
  ctx.strokeStyle = '#1565c0';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  values.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
  ctx.stroke();
  ctx.strokeStyle = '#c62828';
  ctx.setLineDash([5, 4]);
  ctx.beginPath();
  ctx.moveTo(pad, y(threshold));
  ctx.lineTo(w - pad, y(threshold));
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.strokeStyle = '#333';
  ctx.beginPath();
  ctx.moveTo(x(current), 0);
  ctx.lineTo(x(current), h);
  ctx.stroke();
}

function render() {
  const rows = result.results;
  const row = rows[current];
  const anomalous = row.normalized > threshold;
  $('score').textContent = row.score.toPrecision(6);
  $('normalized').textContent = row.normalized.toFixed(4);
  $('decision').textContent = anomalous ? 'anomalous' : 'normal';
  $('decision').className = anomalous ? 'anomalous' : 'normal';
  $('anomalous-count').textContent = rows.filter((x) => x.normalized > threshold).length;
  $('frame-count').textContent = rows.length;
  $('frame-index').textContent = `frame ${current} of ${rows.length}`;
  drawFrame();
  drawTimeline();
}

$('threshold').addEventListener('input', (e) => setThreshold(e.target.value));
$('threshold-preset').addEventListener('change', (e) => setThreshold(e.target.value));
$('overlay').addEventListener('change', () => result && render());
$('file').addEventListener('change', (e) => {
  const files = [...e.target.files];
  e.target.value = '';             // the next choice starts afresh (the same file again too)
  score(files).catch((err) => setStatus(`failed: ${err}`, true));
});
$('timeline').addEventListener('click', (e) => {
  const rect = e.target.getBoundingClientRect();
  const n = result.results.length;
  const f = ((e.clientX - rect.left) / rect.width) * (n - 1);
  current = Math.max(0, Math.min(n - 1, Math.round(f)));
  render();
});
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  score(e.dataTransfer.files);
});
init().catch((e) => setStatus(`cannot reach the server: ${e}`, true));
