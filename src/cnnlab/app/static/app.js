// cnnlab serve: the page. Plain JS, no build step, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, blob: null, sample: null, layer: null, scale: "channel", cls: null, cell: null };
const loaded = {}; // layer -> feature maps of the current input (for the global scale)
const VIEW = 224; // the input canvas' size in CSS pixels

// -- the URL holds the view: #sample=3&layer=features.0&scale=layer&cls=2&cell=4,5 --------
function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.has("sample")) state.sample = +h.get("sample");
  if (h.has("layer")) state.layer = h.get("layer");
  if (h.has("scale")) state.scale = h.get("scale");
  if (h.has("cls")) state.cls = +h.get("cls");
  if (h.has("cell")) state.cell = h.get("cell").split(",").map(Number);
}
function writeHash() {
  const h = new URLSearchParams();
  if (state.sample !== null) h.set("sample", state.sample);
  if (state.layer) h.set("layer", state.layer);
  if (state.scale !== "channel") h.set("scale", state.scale);
  if (state.cls !== null) h.set("cls", state.cls);
  if (state.cell) h.set("cell", state.cell.join(","));
  history.replaceState(null, "", "#" + h.toString());
}

function status(text) { $("input-line").textContent = text; }

async function api(path, options) {
  const r = await fetch(path, options);
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
const post = (path, blob) => api(path, { method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" } });

// -- colours -------------------------------------------------------------------------------
const STOPS = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]]; // magma-like
function colour(t) {
  t = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(t)), f = t - i;
  return STOPS[i].map((v, k) => Math.round(v + (STOPS[i + 1][k] - v) * f));
}
function jet(t) {
  t = Math.min(1, Math.max(0, t));
  return [Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 3)))),
    Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 2)))),
    Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 1))))];
}
function paint(canvas, grid, lo, hi, ramp = colour, fade = false) {
  const h = grid.length, w = grid[0].length;
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h);
  const span = hi - lo || 1;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const [r, g, b] = ramp((grid[y][x] - lo) / span), o = 4 * (y * w + x);
    img.data[o] = r; img.data[o + 1] = g; img.data[o + 2] = b;
    img.data[o + 3] = fade ? Math.round(220 * Math.min(1, Math.max(0, (grid[y][x] - lo) / span)) ** 0.5) : 255;
  }
  ctx.putImageData(img, 0, 0);
}

// -- 1. input ------------------------------------------------------------------------------
async function useBlob(blob, label) {
  state.blob = blob;
  for (const k of Object.keys(loaded)) delete loaded[k];
  const url = URL.createObjectURL(blob);
  const img = new Image();
  await new Promise((ok, bad) => { img.onload = ok; img.onerror = () => bad(new Error("the browser cannot show this image")); img.src = url; }).catch((e) => status(e.message));
  const ctx = $("input").getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, VIEW, VIEW);
  if (img.naturalWidth) ctx.drawImage(img, 0, 0, VIEW, VIEW);
  $("overlay").getContext("2d").clearRect(0, 0, VIEW, VIEW);
  $("rf-box").hidden = true;
  status(label);
  await predict();
  if (state.layer) await showLayer(state.layer);
  if (state.cell && state.layer) await showField(state.layer, state.cell[0], state.cell[1]);
}

async function predict() {
  try {
    const result = await post("/predict", state.blob);
    const body = $("topk").tBodies[0];
    body.innerHTML = "";
    for (const row of result.top || []) {
      const tr = body.insertRow();
      tr.insertCell().textContent = row.class;
      tr.insertCell().textContent = row.probability.toFixed(3);
      const bar = document.createElement("div");
      bar.className = "bar"; bar.style.width = (160 * row.probability).toFixed(0) + "px";
      tr.insertCell().appendChild(bar);
    }
    $("lines").innerHTML = "";
    for (const [what, value] of result.lines || []) {
      const p = document.createElement("div"); p.textContent = `${what}: ${value}`; $("lines").appendChild(p);
    }
    $("pictures").innerHTML = "";
    for (const [name, uri] of Object.entries(result.pictures || {})) {
      const img = document.createElement("img"); img.src = uri; img.alt = name; img.title = name;
      $("pictures").appendChild(img);
    }
    const s = result.input;
    status(`${$("input-line").textContent.split(" — ")[0]} — ${s.format} ${s.mode} ${s.size[1]}x${s.size[0]}`);
  } catch (e) { status("prediction failed: " + e.message); }
}

function setupDrawing() {
  const c = $("draw"), ctx = c.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, c.width, c.height); };
  clear();
  let down = false;
  const at = (e) => { const r = c.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  c.addEventListener("pointerdown", (e) => { down = true; ctx.beginPath(); ctx.moveTo(...at(e)); });
  c.addEventListener("pointermove", (e) => {
    if (!down) return;
    ctx.lineWidth = 14; ctx.lineCap = "round"; ctx.strokeStyle = "#fff"; ctx.lineTo(...at(e)); ctx.stroke();
  });
  addEventListener("pointerup", () => { down = false; });
  $("draw-clear").onclick = clear;
  $("draw-use").onclick = () => c.toBlob((b) => { state.sample = null; writeHash(); useBlob(b, "your drawing"); }, "image/png");
}

async function loadSamples() {
  const box = $("samples");
  const { items, reason } = await api("/samples");
  box.innerHTML = items.length ? "" : `<span class="muted">none: ${reason || "the run's dataset is not here"}</span>`;
  for (const item of items) {
    const f = document.createElement("figure");
    f.dataset.index = item.index;
    f.innerHTML = `<img src="/samples/${item.index}.png" alt="test image ${item.index}"><figcaption></figcaption>`;
    f.querySelector("figcaption").textContent = item.label ?? "";
    f.onclick = () => pickSample(item.index, item.label);
    box.appendChild(f);
  }
  if (state.sample !== null && items[state.sample]) pickSample(state.sample, items[state.sample].label);
}
async function pickSample(index, label) {
  state.sample = index; writeHash();
  document.querySelectorAll(".samples figure").forEach((f) => f.classList.toggle("chosen", +f.dataset.index === index));
  const blob = await (await fetch(`/samples/${index}.png`)).blob();
  await useBlob(blob, `test image ${index}` + (label ? ` (true class: ${label})` : ""));
}

// -- 3. architecture -----------------------------------------------------------------------
function drawLayers() {
  const box = $("layers");
  box.innerHTML = "";
  for (const layer of state.model.layers) {
    const d = document.createElement("div");
    d.className = "layer" + (layer.maps ? " has-maps" : "");
    d.dataset.name = layer.name;
    d.innerHTML = `<b></b>${layer.kind}<br>${layer.output_shape.join("×")}<br>${layer.params.toLocaleString()} params<br>rf ${layer.rf}, jump ${layer.jump}`;
    d.querySelector("b").textContent = layer.name;
    if (layer.maps) d.onclick = () => { state.cell = null; showLayer(layer.name); };
    box.appendChild(d);
  }
}

// -- 4. feature maps and filters -----------------------------------------------------------
function range(layer, channel) {
  const m = loaded[layer];
  if (state.scale === "channel") return [m.min[channel], m.max[channel]];
  if (state.scale === "layer") return [Math.min(...m.min), Math.max(...m.max)];
  const all = Object.values(loaded);
  return [Math.min(...all.map((v) => Math.min(...v.min))), Math.max(...all.map((v) => Math.max(...v.max)))];
}
function drawMaps(layer) {
  const m = loaded[layer], box = $("maps");
  box.innerHTML = "";
  const [, h, w] = m.shape, zoom = Math.max(1, Math.floor(96 / Math.max(h, w)));
  m.maps.forEach((grid, c) => {
    const canvas = document.createElement("canvas");
    const [lo, hi] = range(layer, c);
    paint(canvas, grid, lo, hi);
    canvas.style.width = w * zoom + "px"; canvas.style.height = h * zoom + "px";
    canvas.dataset.channel = c; canvas.title = `channel ${c}: ${m.min[c]} .. ${m.max[c]}`;
    canvas.onclick = (e) => {
      const y = Math.min(h - 1, Math.floor(e.offsetY / zoom)), x = Math.min(w - 1, Math.floor(e.offsetX / zoom));
      showField(layer, y, x, c);
    };
    box.appendChild(canvas);
  });
}
async function showLayer(name) {
  state.layer = name; writeHash();
  document.querySelectorAll(".layer").forEach((d) => d.classList.toggle("chosen", d.dataset.name === name));
  $("maps-layer").textContent = name;
  if (!state.blob) return;
  try {
    loaded[name] = await post(`/explain?view=maps&layer=${encodeURIComponent(name)}`, state.blob);
    drawMaps(name);
    $("maps").dataset.layer = name; // the browser test waits for this
  } catch (e) { $("maps").textContent = e.message; }
  const layer = state.model.layers.find((l) => l.name === name);
  $("filters").innerHTML = "";
  if (layer && layer.filters) {
    const f = await api(`/filters?layer=${encodeURIComponent(name)}`);
    for (const [o, kernels] of f.weights.slice(0, 32).entries()) {
      for (const [i, k] of kernels.slice(0, 3).entries()) {
        const canvas = document.createElement("canvas");
        const flat = k.flat(), lim = Math.max(...flat.map(Math.abs)) || 1;
        paint(canvas, k, -lim, lim, (t) => { const v = Math.round(255 * t); return [v, v, v]; });
        canvas.style.width = canvas.style.height = 8 * Math.max(k.length, 3) + "px";
        canvas.title = `filter ${o}, input channel ${i}`;
        $("filters").appendChild(canvas);
      }
    }
  }
}

// -- 5. Grad-CAM ---------------------------------------------------------------------------
async function showCam() {
  if (!state.blob) return;
  const cls = $("cam-class").value;
  state.cls = cls === "" ? null : +cls; writeHash();
  const q = state.cls === null ? "" : `&cls=${state.cls}`;
  try {
    const r = await post(`/explain?view=gradcam${q}`, state.blob);
    const cam = $("cam"), ctx = cam.getContext("2d");
    ctx.drawImage($("input"), 0, 0, VIEW, VIEW);
    const heat = document.createElement("canvas");
    paint(heat, r.heatmap, 0, 1, jet);
    ctx.globalAlpha = 0.5; ctx.imageSmoothingEnabled = true;
    ctx.drawImage(heat, 0, 0, VIEW, VIEW); ctx.globalAlpha = 1;
    $("cam-note").textContent = state.cls === null ? "for the predicted class" : `for ${state.model.classes[state.cls]}`;
  } catch (e) { $("cam-note").textContent = e.message; }
}

// -- 6. receptive field --------------------------------------------------------------------
async function showField(layer, y, x, channel) {
  state.cell = [y, x]; writeHash();
  const q = `&layer=${encodeURIComponent(layer)}&y=${y}&x=${x}` + (channel === undefined ? "" : `&channel=${channel}`);
  let r;
  try { r = await post(`/explain?view=rf${q}`, state.blob); } catch (e) { $("rf-text").textContent = e.message; return; }
  const [, H, W] = state.model.input_shape, sy = VIEW / H, sx = VIEW / W;
  const [[y0, y1], [x0, x1]] = r.box, box = $("rf-box");
  Object.assign(box.style, { left: x0 * sx + "px", top: y0 * sy + "px", width: (x1 - x0 + 1) * sx + "px", height: (y1 - y0 + 1) * sy + "px" });
  Object.assign(box.dataset, { y0, y1, x0, x1, layer });
  box.hidden = false;
  const ov = $("overlay"), ctx = ov.getContext("2d");
  const eff = document.createElement("canvas");
  paint(eff, r.effective, 0, 1, jet, true); // transparent where the gradient is zero
  ctx.clearRect(0, 0, VIEW, VIEW); ctx.imageSmoothingEnabled = false; ctx.drawImage(eff, 0, 0, VIEW, VIEW);
  $("rf-text").textContent = `${layer} cell (${y}, ${x}) depends on input rows ${y0}-${y1}, columns ${x0}-${x1}` +
    ` (${r.size.join("×")} pixels; cnnlab summary's rf for this layer: ${r.summary_rf}, jump ${r.jump}; inside the image,` +
    " clipped at its borders). Shading: |gradient| of the cell for this input (the effective field).";
  const a = r.arithmetic, box2 = $("arithmetic");
  box2.innerHTML = "";
  if (!a) return;
  const table = (rows, title) => {
    const t = document.createElement("table"), cap = t.createCaption(); cap.textContent = title;
    for (const row of rows) { const tr = t.insertRow(); for (const v of row) tr.insertCell().textContent = (+v).toFixed(3); }
    return t;
  };
  box2.appendChild(table(a.patch[0], "input patch (channel 0)"));
  box2.appendChild(document.createTextNode(" · "));
  box2.appendChild(table(a.kernel[0], `kernel of filter ${a.channel} (channel 0)`));
  const p = document.createElement("p");
  p.textContent = `Σ patch·kernel over all ${a.patch.length} input channels + bias ${a.bias} = ${a.sum}; the model computed ${a.output}.`;
  box2.appendChild(p);
}

// -- 7. training curves --------------------------------------------------------------------
async function drawCurves() {
  const { rows } = await api("/history");
  const c = $("curves"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  if (!rows.length) { $("curves-line").textContent = "no history.csv in the run folder yet"; return; }
  const keys = Object.keys(rows[0]).filter((k) => !["epoch", "lr", "seconds", "step"].includes(k) && rows.some((r) => r[k] !== "" && isFinite(+r[k])));
  const colours = ["#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b"];
  const legend = [];
  keys.forEach((k, i) => {
    const v = rows.map((r) => (r[k] === "" ? NaN : +r[k])), ok = v.filter(isFinite);
    const lo = Math.min(...ok), hi = Math.max(...ok), span = hi - lo || 1;
    ctx.strokeStyle = colours[i % colours.length]; ctx.lineWidth = 2; ctx.beginPath();
    v.forEach((y, j) => {
      if (!isFinite(y)) return;
      const px = 30 + (c.width - 40) * (rows.length > 1 ? j / (rows.length - 1) : 0.5), py = c.height - 20 - (c.height - 40) * (y - lo) / span;
      j ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
    });
    ctx.stroke();
    legend.push(`${k} ${lo.toPrecision(3)}–${hi.toPrecision(3)}`);
  });
  $("curves-line").textContent = `${rows.length} epochs; each curve scaled to its own range: ` + legend.join(", ");
}

// -- start ---------------------------------------------------------------------------------
async function start() {
  readHash();
  state.model = await api("/model");
  const m = state.model;
  $("title").textContent = `cnnlab — ${m.run_dir}`;
  $("model-line").textContent = `${m.record.architecture}${m.ensemble ? ` (ensemble of ${m.ensemble}; views show member 0)` : ""}, ${m.task}, ` +
    `${m.parameters.toLocaleString()} parameters, input ${m.input_shape.join("×")}`;
  drawLayers();
  const sel = $("cam-class");
  sel.innerHTML = '<option value="">predicted class</option>' + m.classes.map((c, i) => `<option value="${i}"></option>`).join("");
  m.classes.forEach((c, i) => { sel.options[i + 1].textContent = c; });
  if (state.cls !== null) sel.value = state.cls;
  $("gradcam-section").hidden = !m.grad_cam;
  $("cam-go").onclick = showCam;
  document.querySelectorAll('input[name="scale"]').forEach((r) => {
    r.checked = r.value === state.scale;
    r.onchange = () => { state.scale = r.value; writeHash(); if (state.layer && loaded[state.layer]) drawMaps(state.layer); };
  });
  $("file").onchange = (e) => { const f = e.target.files[0]; if (f) { state.sample = null; writeHash(); useBlob(f, f.name); } };
  setupDrawing();
  if (state.layer) showLayer(state.layer);
  await loadSamples();
  await drawCurves();
  setInterval(drawCurves, 5000); // a run still training in the folder: its curves grow
  document.body.dataset.ready = "1";
}
start().catch((e) => status("the page could not start: " + e.message));
