// crackseg annotate: the page. Plain JavaScript, no build step, no dependency.
// Every change is one request that carries the photo's revision; the server saves it at once, or answers
// 409 when another page saved first (this page then shows what was saved and drops its queued changes).
"use strict";
(() => {
  const TOKEN = new URLSearchParams(location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);
  const canvas = $("view");
  const ctx = canvas.getContext("2d");
  const key = (x, y) => `${x},${y}`;
  const unkey = (k) => k.split(",").map(Number);

  const S = {
    photos: [], index: -1, progress: { done: 0, total: 0 }, patchSize: 64, suggest: null,
    photo: null,            // the saved state of the shown photo
    revs: {},               // stem -> the latest revision this page knows
    image: null,            // the shown photo's label as this page has it
    marked: new Set(),      // its crack patches ("x,y")
    suggested: new Set(), dismissed: new Set(),
    img: null, overlay: null,
    tool: "patches", width: 3,
    trace: [], stroke: null, drag: null, pan: null, mouse: null,
    zoom: 1, panX: 0, panY: 0,
    queue: Promise.resolve(), pending: 0, gen: 0, loading: Promise.resolve(),
  };

  // -- server ------------------------------------------------------------------------------------------
  const photoUrl = (stem, what) => `/api/photos/${encodeURIComponent(stem)}${what ? "/" + what : ""}`;
  const withToken = (url, extra) => `${url}?token=${encodeURIComponent(TOKEN)}${extra || ""}`;

  async function request(method, path, body) {
    const opts = { method, headers: { "X-Crackseg-Token": TOKEN } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, opts);
    } catch (e) {
      return { status: 0, body: { error: "the server does not answer (was it stopped?)" } };
    }
    let data = {};
    try { data = await r.json(); } catch (e) { /* not JSON */ }
    return { status: r.status, body: data };
  }

  function say(text, kind) {
    const m = $("message");
    m.textContent = text || "";
    m.hidden = !text;
    m.className = "message" + (kind === "info" ? " info" : "");
  }

  const current = () => S.photos[S.index];
  const currentStem = () => (current() ? current().stem : null);

  // A change: its body is taken now (what the user sees), its revision when it is sent (after the
  // changes queued before it). A conflict drops the changes queued after it (S.gen).
  function change(kind, body) {
    const stem = currentStem();
    if (!stem) return S.queue;
    const gen = S.gen;
    S.pending++;
    showSaving();
    let answered = false;
    S.queue = S.queue.then(async () => {
      if (gen !== S.gen) return;
      const res = await request("POST", photoUrl(stem, kind), { ...body, rev: S.revs[stem] });
      S.pending--;
      answered = true;
      handle(stem, kind, res);
    }).catch((e) => say(String(e)))
      .finally(() => { if (!answered) S.pending--; showSaving(); render(); });
    return S.queue;
  }

  function handle(stem, kind, res) {
    const body = res.body || {};
    if (body.progress) setProgress(body.progress);
    if (res.status === 200 || res.status === 409) {
      const st = body.state;
      S.revs[stem] = st.rev;
      const entry = S.photos.find((p) => p.stem === stem);
      if (entry) entry.done = st.done;
      if (res.status === 409) {
        S.gen++;
        if (stem === currentStem()) {
          showState(st, true);
          loadOverlay(st);
        }
        say("This photo was changed in another page: showing what was saved there. Redo your last change.");
        return;
      }
      if (stem === currentStem()) {
        showState(st, kind === "undo" || (S.pending === 0 && !S.drag));  // a drag's marks are not saved yet
        if (kind !== "labels") loadOverlay(st);
        if (kind === "undo" && !body.undone) say("Nothing to undo here.", "info");
      }
      return;
    }
    S.gen++;
    say(body.error || `the server answered ${res.status}`);
    if (stem === currentStem()) loadPhoto(S.index, false);
  }

  // -- state -------------------------------------------------------------------------------------------
  function showState(st, labelsToo) {
    S.photo = st;
    S.revs[st.stem] = st.rev;
    if (labelsToo) {
      S.image = st.image;
      S.marked = new Set(st.patches.map(([x, y]) => key(x, y)));
    }
    renderBar();
    render();
  }

  function setProgress(p) {
    S.progress = p;
    $("progress").textContent = `${p.done} of ${p.total} photos done`;
  }

  function showSaving() {
    const el = $("saving");
    el.textContent = S.pending > 0 ? "saving…" : "saved";
    el.classList.toggle("busy", S.pending > 0);
  }

  function loadOverlay(st) {
    if (!st.has_mask) {
      S.overlay = null;
      render();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const im = new Image();
      im.onload = () => { if (st.stem === currentStem()) { S.overlay = im; render(); } resolve(); };
      im.onerror = () => resolve();
      im.src = withToken(photoUrl(st.stem, "mask"), `&rev=${st.rev}`);
    });
  }

  async function loadSuggestions(stem) {
    S.suggested = new Set();
    if (!S.suggest) return;
    $("accept").disabled = true;
    const res = await request("GET", photoUrl(stem, "suggestions"));
    if (stem !== currentStem()) return;
    if (res.status !== 200) { say(res.body.error || `suggestions: ${res.status}`); return; }
    S.suggested = new Set(res.body.patches.map(([x, y]) => key(x, y)));
    renderBar();
    render();
  }

  function loadPhoto(index, resetView = true) {
    if (index < 0 || index >= S.photos.length) return S.loading;
    S.index = index;
    const stem = currentStem();
    S.trace = [];
    S.stroke = null;
    S.dismissed = new Set();
    if (resetView) { S.zoom = 1; S.panX = 0; S.panY = 0; }
    history.replaceState(null, "", `${location.pathname}${location.search}#${encodeURIComponent(stem)}`);
    renderBar();
    S.loading = (async () => {
      const res = await request("GET", photoUrl(stem));
      if (stem !== currentStem()) return;
      if (res.status !== 200) { say(res.body.error || `the server answered ${res.status}`); return; }
      showState(res.body, true);
      const img = new Image();
      const loaded = new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; });
      img.src = withToken(photoUrl(stem, "image"));
      await loaded;
      if (stem !== currentStem()) return;
      if (!img.naturalWidth) say(`${current().name}: the browser cannot show this photo`);
      S.img = img;
      await loadOverlay(res.body);
      render();
      await loadSuggestions(stem);
    })();
    return S.loading;
  }

  function go(delta, onlyOpen) {
    let i = S.index;
    for (let n = 0; n < S.photos.length; n++) {
      i += delta;
      if (i < 0 || i >= S.photos.length) return;
      if (!onlyOpen || !S.photos[i].done) break;
    }
    if (i !== S.index) loadPhoto(i);
  }

  // -- edits -------------------------------------------------------------------------------------------
  function saveLabels() {
    if (S.marked.size && S.image !== "crack") S.image = "crack";
    const entry = current();
    if (entry) entry.done = S.image !== null;
    renderBar();
    render();
    return change("labels", { image: S.image, patches: [...S.marked].map(unkey) });
  }

  function setImage(value) {
    if (S.image === value) value = null;
    if (value !== "crack") S.marked.clear();
    S.image = value;
    const saved = saveLabels();
    if (value === "no_crack" || value === "skip") go(1, false);
    return saved;
  }

  function acceptSuggestions() {
    let added = 0;
    for (const k of S.suggested) if (!S.dismissed.has(k) && !S.marked.has(k)) { S.marked.add(k); added++; }
    if (added) saveLabels();
  }

  function undo() { S.trace = []; return change("undo", {}); }

  function setTool(tool) {
    S.tool = tool;
    S.trace = [];
    renderBar();
    render();
  }

  function setWidth(w) {
    S.width = Math.max(1, Math.min(40, Math.round(w)));
    $("width").value = String(S.width);
    $("width-value").textContent = String(S.width);
    render();
  }

  // -- geometry ----------------------------------------------------------------------------------------
  function layout() {
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!S.img || !S.img.naturalWidth) return { scale: 1, ox: 0, oy: 0 };
    const fit = Math.min(w / S.img.naturalWidth, h / S.img.naturalHeight);
    const scale = fit * S.zoom;
    return { scale, ox: (w - S.img.naturalWidth * scale) / 2 + S.panX, oy: (h - S.img.naturalHeight * scale) / 2 + S.panY };
  }

  function toImage(clientX, clientY) {
    const r = canvas.getBoundingClientRect(), L = layout();
    return [(clientX - r.left - L.ox) / L.scale, (clientY - r.top - L.oy) / L.scale];
  }

  function toClient(x, y) {
    const r = canvas.getBoundingClientRect(), L = layout();
    return [r.left + L.ox + x * L.scale, r.top + L.oy + y * L.scale];
  }

  function inside([x, y]) {
    return S.photo && x >= 0 && y >= 0 && x < S.photo.width && y < S.photo.height;
  }

  function clamp([x, y]) {
    return [Math.min(Math.max(x, 0), S.photo.width - 1), Math.min(Math.max(y, 0), S.photo.height - 1)];
  }

  function cellAt([x, y]) {
    const size = S.photo.patch_size;
    return key(Math.floor(x / size) * size, Math.floor(y / size) * size);
  }

  // -- drawing -----------------------------------------------------------------------------------------
  function render() {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (!S.img || !S.img.naturalWidth || !S.photo) return;
    const L = layout(), st = S.photo, size = st.patch_size, px = 1 / L.scale;
    ctx.save();
    ctx.translate(L.ox, L.oy);
    ctx.scale(L.scale, L.scale);
    ctx.beginPath();
    ctx.rect(0, 0, st.width, st.height);
    ctx.clip();  // the last row and column of patches may reach past the photo's edge
    ctx.imageSmoothingEnabled = L.scale < 1;
    ctx.drawImage(S.img, 0, 0);
    if (S.image === "no_crack" || S.image === "skip") {
      ctx.fillStyle = S.image === "skip" ? "rgba(40,40,40,0.55)" : "rgba(30,80,160,0.30)";
      ctx.fillRect(0, 0, st.width, st.height);
    }
    if (S.overlay) {
      ctx.globalAlpha = 0.6;
      ctx.drawImage(S.overlay, 0, 0);
      ctx.globalAlpha = 1;
    }
    ctx.lineWidth = px;
    ctx.strokeStyle = "rgba(255,255,255,0.30)";
    ctx.beginPath();
    for (let x = size; x < st.width; x += size) { ctx.moveTo(x, 0); ctx.lineTo(x, st.height); }
    for (let y = size; y < st.height; y += size) { ctx.moveTo(0, y); ctx.lineTo(st.width, y); }
    ctx.stroke();
    if (S.image !== "no_crack" && S.image !== "skip") {
      ctx.setLineDash([4 * px, 3 * px]);
      ctx.lineWidth = 2 * px;
      for (const k of S.suggested) {
        if (S.marked.has(k) || S.dismissed.has(k)) continue;
        const [x, y] = unkey(k);
        ctx.fillStyle = "rgba(255,200,0,0.14)";
        ctx.fillRect(x, y, size, size);
        ctx.strokeStyle = "rgba(255,200,0,0.95)";
        ctx.strokeRect(x + px, y + px, size - 2 * px, size - 2 * px);
      }
      ctx.setLineDash([]);
    }
    for (const k of S.marked) {
      const [x, y] = unkey(k);
      ctx.fillStyle = "rgba(232,67,58,0.32)";
      ctx.fillRect(x, y, size, size);
      ctx.strokeStyle = "rgba(232,67,58,0.95)";
      ctx.lineWidth = 2 * px;
      ctx.strokeRect(x + px, y + px, size - 2 * px, size - 2 * px);
    }
    if (S.stroke && S.stroke.length) {
      ctx.strokeStyle = "rgba(255,255,255,0.6)";
      ctx.lineWidth = S.width;
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      S.stroke.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
    }
    for (const [x, y] of S.trace) {
      ctx.fillStyle = "#27e0ff";
      ctx.beginPath();
      ctx.arc(x, y, Math.max(3 * px, S.width / 2), 0, 2 * Math.PI);
      ctx.fill();
    }
    if (S.mouse && S.tool !== "patches" && inside(S.mouse)) {
      ctx.strokeStyle = S.tool === "erase" ? "rgba(255,255,255,0.9)" : "rgba(39,224,255,0.9)";
      ctx.lineWidth = px;
      ctx.beginPath();
      ctx.arc(S.mouse[0], S.mouse[1], Math.max(S.width / 2, 2 * px), 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.restore();
  }

  function renderBar() {
    const entry = current();
    $("where").textContent = entry ? `${S.index + 1} / ${S.photos.length} · ${entry.name}` : "";
    document.querySelectorAll("[data-image]").forEach((b) => b.classList.toggle("active", b.dataset.image === S.image));
    document.querySelectorAll("[data-tool]").forEach((b) => b.classList.toggle("active", b.dataset.tool === S.tool));
    const open = [...S.suggested].filter((k) => !S.marked.has(k) && !S.dismissed.has(k)).length;
    $("accept").hidden = !S.suggest;
    $("accept").disabled = !open;
    $("accept").textContent = `Accept suggestions${open ? ` (${open})` : ""}`;
    $("prev").disabled = S.index <= 0;
    $("next").disabled = S.index >= S.photos.length - 1;
    showSaving();
  }

  // -- pointer -----------------------------------------------------------------------------------------
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("mousedown", (e) => {
    canvas.focus();
    if (!S.photo || !S.img) return;
    if (e.button === 1 || e.button === 2) {
      S.pan = { x: e.clientX, y: e.clientY, panX: S.panX, panY: S.panY };
      return;
    }
    if (e.button !== 0) return;
    const p = toImage(e.clientX, e.clientY);
    if (S.tool === "patches") {
      if (!inside(p)) return;
      const k = cellAt(p);
      S.drag = { value: !S.marked.has(k), changed: false };
      paintCell(k);
    } else if (S.tool === "trace") {
      if (e.detail >= 2) { S.trace = []; render(); return; }  // a double click ends the trace
      if (!inside(p)) return;
      const q = clamp(p);
      if (S.trace.length) change("mask", { op: "trace", points: [S.trace[S.trace.length - 1], q], width: S.width });
      S.trace.push(q);
      render();
    } else if (S.tool === "erase") {
      S.stroke = [clamp(p)];
      render();
    }
  });

  function paintCell(k) {
    if (S.drag.value) { if (!S.marked.has(k)) { S.marked.add(k); S.drag.changed = true; } }
    else if (S.marked.has(k) || S.suggested.has(k)) { S.marked.delete(k); S.dismissed.add(k); S.drag.changed = true; }
    render();
  }

  window.addEventListener("mousemove", (e) => {
    if (S.pan) {
      S.panX = S.pan.panX + e.clientX - S.pan.x;
      S.panY = S.pan.panY + e.clientY - S.pan.y;
      render();
      return;
    }
    if (!S.photo) return;
    const p = toImage(e.clientX, e.clientY);
    S.mouse = p;
    if (S.drag && inside(p)) paintCell(cellAt(p));
    else if (S.stroke) { S.stroke.push(clamp(p)); render(); }
    else if (S.tool !== "patches") render();
  });

  window.addEventListener("mouseup", () => {
    if (S.pan) { S.pan = null; return; }
    if (S.drag) {
      const changed = S.drag.changed;
      S.drag = null;
      if (changed) saveLabels();
      renderBar();
    }
    if (S.stroke) {
      const points = S.stroke;
      S.stroke = null;
      change("mask", { op: "erase", points, width: S.width });
    }
  });

  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (!S.img) return;
    const r = canvas.getBoundingClientRect();
    const before = toImage(e.clientX, e.clientY);
    S.zoom = Math.min(40, Math.max(1, S.zoom * Math.exp(-e.deltaY * 0.0015)));
    const L = layout();
    S.panX += e.clientX - r.left - (L.ox + before[0] * L.scale);
    S.panY += e.clientY - r.top - (L.oy + before[1] * L.scale);
    if (S.zoom === 1) { S.panX = 0; S.panY = 0; }
    render();
  }, { passive: false });

  window.addEventListener("resize", render);

  // -- keys and buttons --------------------------------------------------------------------------------
  window.addEventListener("keydown", (e) => {
    const tag = (e.target && e.target.tagName) || "";
    if ((tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") && e.key !== "Escape") return;
    if (e.altKey || (e.metaKey && e.key !== "z") || (e.ctrlKey && e.key !== "z")) return;
    const actions = {
      ArrowRight: () => go(1, e.shiftKey), ".": () => go(1, false), ArrowLeft: () => go(-1, false), ",": () => go(-1, false),
      c: () => setImage("crack"), n: () => setImage("no_crack"), s: () => setImage("skip"),
      p: () => setTool("patches"), t: () => setTool("trace"), e: () => setTool("erase"),
      y: acceptSuggestions, z: undo, Escape: () => { S.trace = []; say(""); render(); },
      "[": () => setWidth(S.width - 1), "]": () => setWidth(S.width + 1),
      0: () => { S.zoom = 1; S.panX = 0; S.panY = 0; render(); },
    };
    const act = actions[e.key];
    if (act) { e.preventDefault(); act(); }
  });

  $("prev").addEventListener("click", () => go(-1, false));
  $("next").addEventListener("click", () => go(1, false));
  $("next-open").addEventListener("click", () => go(1, true));
  $("accept").addEventListener("click", acceptSuggestions);
  $("undo").addEventListener("click", undo);
  $("width").addEventListener("input", (e) => setWidth(Number(e.target.value)));
  document.querySelectorAll("[data-image]").forEach((b) => b.addEventListener("click", () => setImage(b.dataset.image)));
  document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));

  // -- start -------------------------------------------------------------------------------------------
  async function idle() {  // every queued change answered and the shown photo loaded (for scripts and tests)
    for (;;) {
      const q = S.queue, l = S.loading;
      await q;
      await l;
      if (q === S.queue && l === S.loading) return;
    }
  }

  const ready = (async () => {
    const res = await request("GET", "/api/photos");
    if (res.status !== 200) {
      say(res.status === 403 ? "Open this page with the URL (and its token) that crackseg annotate printed."
        : (res.body.error || `the server answered ${res.status}`));
      return;
    }
    S.photos = res.body.photos;
    S.patchSize = res.body.patch_size;
    S.suggest = res.body.suggest;
    setProgress(res.body.progress);
    setWidth(S.width);
    const wanted = decodeURIComponent(location.hash.slice(1));
    let i = S.photos.findIndex((p) => p.stem === wanted);
    if (i < 0) i = S.photos.findIndex((p) => !p.done);
    await loadPhoto(i < 0 ? 0 : i);
  })();

  window.annotate = { state: S, ready, idle, toClient, go: (i) => loadPhoto(i), setTool, setWidth, setImage };
})();
