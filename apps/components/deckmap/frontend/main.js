// deckmap: a deck.gl map as a Streamlit component, with freehand-lasso and polygon drawing.
// Python sends pydeck layer JSON (one compact string per layer, keyed by id); this file converts them with
// @deck.gl/json, keeps the view across reruns, and sends back events: draw (GeoJSON polygon), click, view.
// Streamlit component protocol (v1) without the npm helper: componentReady / render / setComponentValue.
(function () {
  "use strict";
  const D = window.DECK;
  const J = window.DECKJSON;
  const el = (id) => document.getElementById(id);
  const errorBox = el("error");
  function showError(msg) { errorBox.style.display = "block"; errorBox.textContent = msg; }
  if (!D || !J) { showError("deck.gl scripts missing: run `npm ci` (make app does it) and reload."); return; }

  const layerClasses = {};
  for (const k of Object.keys(D)) if (/Layer$/.test(k) && typeof D[k] === "function") layerClasses[k] = D[k];
  const converter = new J.JSONConverter({ configuration: new J.JSONConfiguration({ classes: layerClasses }) });

  // ---- Streamlit protocol ----
  function post(type, data) { window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type }, data), "*"); }
  let seq = 0;
  function send(event, payload) {
    seq += 1;
    const value = Object.assign({ event, seq: Date.now() * 1000 + seq, view: currentView() }, payload || {});
    state.lastSent = value;
    post("streamlit:setComponentValue", { value, dataType: "json" });
    if (event === "draw") api.drawSentAt = Date.now();
  }

  // ---- state ----
  const state = {
    args: null, viewState: null, flySeq: null, mode: "pan", cache: new Map(), visibleKey: "",
    sketchPx: [], cursorPx: null, drawn: null, hover: null, firstPaint: null, renders: 0, lastSent: null, loadedBBox: null,
    viewTimer: null, height: 0,
  };
  const api = { state, firstPaint: null, lastDrawn: null, drawEndAt: null, renders: 0 };
  // True when every layer file has arrived and every visible layer is loaded (for tests and screenshots).
  api.isIdle = () => deckgl.isInitialized && Array.from(fetched.values()).every((v) => typeof v === "string") &&
    deckgl.props.layers.every((l) => !l.props.visible || l.isLoaded) && !deckgl.needsRedraw({ clearRedrawFlags: false });
  window.__deckmap = api;

  const deckgl = new D.Deck({
    parent: el("map"),
    initialViewState: { longitude: 113.07, latitude: 23.01, zoom: 11.3, pitch: 0, bearing: 0 },
    controller: { doubleClickZoom: false },
    layers: [],
    getTooltip: tooltip,
    onViewStateChange: ({ viewState }) => { state.viewState = viewState; onView(); return viewState; },
    onAfterRender: () => {
      if (state.firstPaint === null && state.args && deckgl.isInitialized && deckgl.props.layers.length > 0 &&
          deckgl.props.layers.every((l) => !l.props.visible || l.isLoaded) &&
          Array.from(fetched.values()).every((v) => typeof v === "string")) {
        state.firstPaint = performance.now();
        api.firstPaint = state.firstPaint;
      }
      api.renders += 1;
    },
    style: { background: "#0b1426" },
  });
  api.deck = deckgl;

  function currentView() {
    const v = state.viewState || deckgl.viewState || {};
    return { longitude: v.longitude, latitude: v.latitude, zoom: v.zoom, pitch: v.pitch || 0, bearing: v.bearing || 0 };
  }

  function viewBBox() {
    const vp = deckgl.getViewports()[0];
    if (!vp) return null;
    const b = vp.getBounds();  // [minX, minY, maxX, maxY]
    return b;
  }

  // ---- layers ----
  function inZoom(id, zoom) {
    const r = (state.args.zoom_ranges || {})[id];
    return !r || (zoom >= r[0] && zoom < r[1]);
  }

  // Large layers arrive as "@layers/<sha1>.json" (a file served with the component): fetched once, cached by name.
  const fetched = new Map();  // ref → JSON text, or a pending Promise
  function layerText(json) {
    if (!json.startsWith("@")) return json;
    const ref = json.slice(1);
    const got = fetched.get(ref);
    if (typeof got === "string") return got;
    if (!got) {
      fetched.set(ref, fetch(ref).then((r) => {
        if (!r.ok) throw new Error(`${ref}: HTTP ${r.status}`);
        return r.text();
      }).then((text) => { fetched.set(ref, text); updateLayers(); },
              (e) => { fetched.delete(ref); showError("layer file " + ref + ": " + e); }));
    }
    return null;  // not here yet: drawn when it arrives
  }

  function convertLayer(id, ref) {
    const hit = state.cache.get(id);
    if (hit && hit.json === ref) return hit.layer;
    const json = layerText(ref);
    if (json === null) return hit ? hit.layer : null;  // keep the previous version on screen meanwhile
    const parsed = JSON.parse(json);
    const out = converter.convert({ layers: [parsed] });
    const layer = out.layers[0];
    state.cache.set(id, { json: ref, layer });
    return layer;
  }

  function drawLayers() {
    if (!state.drawn) return [];
    return [new D.PolygonLayer({ id: "_drawn", data: [state.drawn], getPolygon: (d) => d,
      getFillColor: [255, 64, 129, 30], getLineColor: [255, 64, 129, 255], getLineWidth: 2,
      lineWidthUnits: "pixels", stroked: true, filled: true })];
  }

  // The shape being drawn lives on a 2D canvas above the map (no deck.gl redraw per pointer move).
  const sketch = el("sketch");
  function sizeSketch() {
    const r = el("map").getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    sketch.width = r.width * dpr; sketch.height = r.height * dpr;
    sketch.style.width = r.width + "px"; sketch.style.height = r.height + "px";
  }
  function drawSketch() {
    const ctx = sketch.getContext("2d"), dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, sketch.width, sketch.height);
    const pts = state.sketchPx.concat(state.mode === "polygon" && state.cursorPx ? [state.cursorPx] : []);
    if (!pts.length) return;
    ctx.strokeStyle = "#ff4081"; ctx.lineWidth = 3; ctx.fillStyle = "rgba(255,64,129,0.12)";
    ctx.beginPath(); ctx.moveTo(pts[0][0], pts[0][1]);
    for (const p of pts.slice(1)) ctx.lineTo(p[0], p[1]);
    if (state.mode === "lasso" || state.sketchClosed) { ctx.closePath(); ctx.fill(); }
    ctx.stroke();
    ctx.fillStyle = "#ff4081";
    for (const p of state.mode === "polygon" ? state.sketchPx : pts.slice(0, 1)) {
      ctx.beginPath(); ctx.arc(p[0], p[1], 4, 0, 2 * Math.PI); ctx.fill();
    }
  }
  window.addEventListener("resize", () => { sizeSketch(); drawSketch(); });

  function basemapLayer() {
    const url = state.args.basemap_url;
    if (!url) return [];
    return [new D.TileLayer({
      id: "_basemap", data: url, minZoom: 0, maxZoom: 19, tileSize: 256,
      renderSubLayers: (props) => {
        const bb = props.tile.bbox;
        return new D.BitmapLayer(props, { data: null, image: props.data, bounds: [bb.west, bb.south, bb.east, bb.north] });
      },
    })];
  }

  function updateLayers() {
    if (!state.args) return;
    const zoom = currentView().zoom || 11;
    const layers = [];
    for (const [id, json] of state.args.layers) {
      let layer;
      try { layer = convertLayer(id, json); } catch (e) { showError("layer " + id + ": " + e); continue; }
      if (!layer) continue;
      layers.push(layer.clone({ visible: inZoom(id, zoom) }));
    }
    deckgl.setProps({ layers: basemapLayer().concat(layers, drawLayers()) });
    state.visibleKey = visibleKey(zoom);
  }

  function visibleKey(zoom) {
    return state.args.layers.map(([id]) => (inZoom(id, zoom) ? "1" : "0")).join("");
  }

  // ---- view changes ----
  function onView() {
    if (!state.args) return;
    const zoom = currentView().zoom;
    if (visibleKey(zoom) !== state.visibleKey) updateLayers();
    el("status").textContent = `zoom ${zoom.toFixed(1)} · ${currentView().longitude.toFixed(4)}, ${currentView().latitude.toFixed(4)}`;
    clearTimeout(state.viewTimer);
    state.viewTimer = setTimeout(maybeSendView, 450);
  }

  function maybeSendView() {
    const a = state.args;
    if (!a || a.view_events_min_zoom == null) return;
    const zoom = currentView().zoom;
    if (zoom < a.view_events_min_zoom) return;
    const b = viewBBox();
    if (!b) return;
    const have = a.loaded_bbox;
    const inside = have && b[0] >= have[0] && b[1] >= have[1] && b[2] <= have[2] && b[3] <= have[3];
    if (!inside) send("view", { bbox: b });
  }

  // ---- tooltips and clicks ----
  function fill(template, obj) {
    const p = Object.assign({}, obj || {}, (obj && obj.properties) || {});
    return template.replace(/\{([A-Za-z0-9_]+)\}/g, (m, k) => (p[k] === undefined || p[k] === null ? "" : String(p[k])));
  }
  function tooltip(info) {
    if (!info || !info.object || !info.layer || state.mode !== "pan") return null;
    const t = info.layer.props.tooltipHtml;
    if (!t) return null;
    return { html: fill(t, info.object), style: { background: "rgba(11,20,38,0.95)", color: "#fff", fontSize: "14px",
      border: "1px solid #3c5a8a", borderRadius: "6px", padding: "6px 8px",
      fontFamily: "Noto Sans CJK SC, sans-serif" } };
  }
  // Clicks are detected here, not by deck.gl's tap gesture: that one gives up when pointer-down and -up are
  // more than 250 ms apart in processing time, which happens on slow (software-rendered) screens.
  function onClick(px) {
    const vp = deckgl.getViewports()[0];
    if (!vp) return;
    const info = deckgl.pickObject({ x: px[0], y: px[1], radius: 2 }) || {};
    const coord = vp.unproject(px);
    const props = {};
    const obj = info.object ? (info.object.properties || info.object) : {};
    for (const [k, v] of Object.entries(obj)) if (typeof v !== "object") props[k] = v;
    send("click", { layer: info.layer ? info.layer.id : null, properties: props,
      coordinate: [Math.round(coord[0] * 1e6) / 1e6, Math.round(coord[1] * 1e6) / 1e6] });
  }

  // ---- drawing ----
  const container = el("map");
  function setMode(mode) {
    state.mode = mode;
    state.sketchClosed = false;
    state.sketchPx = [];
    state.cursorPx = null;
    drawSketch();
    for (const m of ["pan", "lasso", "polygon"]) el("btn-" + m).classList.toggle("active", m === mode);
    el("hint").textContent = { pan: "", lasso: "press and drag around an area, release to query",
      polygon: "click the corners; double-click or Enter to finish; Esc cancels" }[mode];
    deckgl.setProps({ controller: mode === "pan" ? { doubleClickZoom: false } : { dragPan: false, dragRotate: false,
      doubleClickZoom: false, scrollZoom: true } });
    container.style.cursor = mode === "pan" ? "" : "crosshair";
    updateLayers();
  }
  api.setMode = setMode;
  el("btn-pan").onclick = () => setMode("pan");
  el("btn-lasso").onclick = () => setMode("lasso");
  el("btn-polygon").onclick = () => setMode("polygon");
  el("btn-clear").onclick = () => { state.drawn = null; state.sketchPx = []; drawSketch(); updateLayers(); send("clear", {}); };

  function pixel(ev) {
    const rect = container.getBoundingClientRect();
    return [ev.clientX - rect.left, ev.clientY - rect.top];
  }
  function unprojectPx(px) {
    const p = deckgl.getViewports()[0].unproject(px);
    return [Math.round(p[0] * 1e6) / 1e6, Math.round(p[1] * 1e6) / 1e6];
  }
  function onToolbar(ev) { return el("toolbar").contains(ev.target) || el("legend").contains(ev.target); }

  container.addEventListener("pointerdown", (ev) => {
    if (state.mode === "pan" && !onToolbar(ev) && ev.button === 0) state.downPx = pixel(ev);
    if (state.mode === "pan" || onToolbar(ev) || ev.button !== 0) return;
    ev.stopPropagation();
    const px = pixel(ev);
    if (state.mode === "lasso") {
      state.sketchPx = [px];
      state.lassoActive = true;
      container.setPointerCapture(ev.pointerId);
    } else if (state.mode === "polygon") {
      const first = state.sketchPx[0];
      if (state.sketchPx.length >= 3 && Math.hypot(px[0] - first[0], px[1] - first[1]) < 10) { finish(); return; }
      state.sketchPx.push(px);
    }
    drawSketch();
  }, true);
  container.addEventListener("pointermove", (ev) => {
    if (state.mode === "pan" || onToolbar(ev)) return;
    ev.stopPropagation();  // no hover picking while drawing
    const px = pixel(ev);
    if (state.mode === "lasso" && state.lassoActive) {
      const last = state.sketchPx[state.sketchPx.length - 1];
      if (Math.hypot(px[0] - last[0], px[1] - last[1]) >= 3) { state.sketchPx.push(px); drawSketch(); }
    } else if (state.mode === "polygon" && state.sketchPx.length) {
      state.cursorPx = px;
      drawSketch();
    }
  }, true);
  container.addEventListener("pointerup", (ev) => {
    if (state.mode === "pan" && state.downPx && !onToolbar(ev)) {
      const px = pixel(ev), d = state.downPx;
      state.downPx = null;
      if (Math.hypot(px[0] - d[0], px[1] - d[1]) < 5) onClick(px);
      return;
    }
    if (state.mode === "lasso" && state.lassoActive) {
      ev.stopPropagation();
      state.lassoActive = false;
      finish();
    }
  }, true);
  container.addEventListener("dblclick", (ev) => {
    if (state.mode === "polygon") { ev.stopPropagation(); ev.preventDefault(); finish(); }
  }, true);
  window.addEventListener("keydown", (ev) => {
    if (state.mode !== "polygon") return;
    if (ev.key === "Enter") finish();
    if (ev.key === "Escape") { state.sketchPx = []; state.cursorPx = null; drawSketch(); }
  });

  function finish(points) {
    let pts = points ? points.slice() : state.sketchPx.map(unprojectPx);
    state.sketchPx = [];
    state.cursorPx = null;
    drawSketch();
    // drop consecutive duplicates (a double-click adds the same corner twice)
    pts = pts.filter((p, i) => i === 0 || p[0] !== pts[i - 1][0] || p[1] !== pts[i - 1][1]);
    if (pts.length < 3) { el("hint").textContent = "need at least 3 points — draw again"; return; }
    const ring = pts.concat([pts[0]]);
    state.drawn = ring;
    const feature = { type: "Feature", properties: { source: state.mode }, geometry: { type: "Polygon", coordinates: [ring] } };
    api.lastDrawn = feature;
    api.drawEndAt = performance.now();
    // Send first; the outline stays on the 2D sketch canvas and joins the deck.gl layers with the answer's render
    // (one WebGL frame per query instead of two: frames are what cost time on software-rendered screens).
    send("draw", { geojson: feature });
    state.sketchPx = ring.map((p) => deckgl.getViewports()[0].project(p));
    state.sketchClosed = true;
    drawSketch();
  }
  // For tests and scripted demos: the same path as a finished drawing.
  api.injectPolygon = (coords) => finish(coords.map((c) => [c[0], c[1]]));
  api.send = send;
  // Move the view as a user would (layers by zoom, buildings in view follow).
  api.flyTo = (view) => {
    state.viewState = Object.assign({}, currentView(), view);
    deckgl.setProps({ initialViewState: state.viewState });
    onView();
  };

  // ---- legend ----
  function renderLegend(legends) {
    const box = el("legend");
    if (!legends || !legends.length) { box.style.display = "none"; return; }
    box.style.display = "block";
    box.innerHTML = legends.map((lg) => {
      const rows = lg.rows.map((r) => `<div class="row"><span class="${r.kind === "line" ? "line" : "sw"}" style="${
        r.kind === "line" ? "border-top-color" : "background"}:${r.color}"></span><span>${escapeHtml(r.label)}</span></div>`).join("");
      return `<h4>${escapeHtml(lg.title)}</h4>${rows}`;
    }).join("");
  }
  function escapeHtml(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }

  // ---- render from Python ----
  function onRender(args) {
    const tr0 = performance.now();
    const first = state.args === null;
    state.args = args;
    if (args.height && args.height !== state.height) {
      state.height = args.height;
      container.style.height = args.height + "px";
      sizeSketch();
      post("streamlit:setFrameHeight", { height: args.height });
    }
    const fly = args.fly_to;
    if (first && args.view) {
      state.viewState = Object.assign({}, args.view);
      deckgl.setProps({ initialViewState: state.viewState });
      if (fly) state.flySeq = fly.seq;
    } else if (fly && fly.seq !== state.flySeq) {
      state.flySeq = fly.seq;
      state.viewState = Object.assign({}, currentView(), fly, { transitionDuration: 600 });
      delete state.viewState.seq;
      deckgl.setProps({ initialViewState: state.viewState });
      setTimeout(onView, 700);
    }
    if (args.clear_drawn_seq != null && args.clear_drawn_seq !== state.clearSeq) { state.clearSeq = args.clear_drawn_seq; if (!first) state.drawn = null; }
    const keep = new Set(args.layers.map(([id]) => id));
    for (const id of Array.from(state.cache.keys())) if (!keep.has(id)) state.cache.delete(id);
    if (state.sketchClosed) { state.sketchClosed = false; state.sketchPx = []; drawSketch(); }
    // let the Streamlit page paint its update (e.g. the summary) before the WebGL frame
    clearTimeout(state.renderTimer);
    state.renderTimer = setTimeout(updateLayers, first ? 0 : 300);
    renderLegend(args.legends);
    api.renders += 1;
    api.lastRenderAt = performance.now();
    api.layerIds = args.layers.map(([id]) => id);
    console.log(`deckmap render ${(performance.now() - tr0).toFixed(0)} ms, ${args.layers.length} layers, ` +
      `${args.layers.reduce((s, l) => s + l[1].length, 0)} chars`);
  }

  window.addEventListener("message", (ev) => {
    const d = ev.data;
    if (d && d.type === "streamlit:render") {
      try { onRender(d.args); } catch (e) { showError(String(e && e.stack || e)); }
    }
  });
  post("streamlit:componentReady", { apiVersion: 1 });
})();
