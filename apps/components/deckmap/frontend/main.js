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
  }

  // ---- state ----
  const state = {
    args: null, viewState: null, flySeq: null, mode: "pan", cache: new Map(), visibleKey: "",
    drawing: [], drawn: null, hover: null, firstPaint: null, renders: 0, lastSent: null, loadedBBox: null,
    viewTimer: null, height: 0,
  };
  const api = { state, firstPaint: null, lastDrawn: null, drawEndAt: null, renders: 0 };
  window.__deckmap = api;

  const deckgl = new D.Deck({
    parent: el("map"),
    initialViewState: { longitude: 113.07, latitude: 23.01, zoom: 11.3, pitch: 0, bearing: 0 },
    controller: { doubleClickZoom: false },
    layers: [],
    getTooltip: tooltip,
    onViewStateChange: ({ viewState }) => { state.viewState = viewState; onView(); return viewState; },
    onClick: onClick,
    onAfterRender: () => {
      if (state.firstPaint === null && state.args && deckgl.isInitialized && deckgl.props.layers.length > 0 &&
          deckgl.props.layers.every((l) => !l.props.visible || l.isLoaded)) {
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

  function convertLayer(id, json) {
    const hit = state.cache.get(id);
    if (hit && hit.json === json) return hit.layer;
    const parsed = JSON.parse(json);
    const out = converter.convert({ layers: [parsed] });
    const layer = out.layers[0];
    state.cache.set(id, { json, layer });
    return layer;
  }

  function drawLayers() {
    const out = [];
    const dash = state.drawing.length > 1 ? state.drawing : null;
    if (dash) {
      out.push(new D.PathLayer({ id: "_drawing", data: [{ path: dash.concat(state.mode === "polygon" && state.cursor ? [state.cursor] : []) }],
        getPath: (d) => d.path, getColor: [255, 64, 129, 255], getWidth: 3, widthUnits: "pixels" }));
      out.push(new D.ScatterplotLayer({ id: "_drawing_pts", data: state.drawing.slice(0, state.mode === "polygon" ? undefined : 1),
        getPosition: (d) => d, getFillColor: [255, 64, 129, 255], getRadius: 4, radiusUnits: "pixels" }));
    } else if (state.drawing.length === 1) {
      out.push(new D.ScatterplotLayer({ id: "_drawing_pts", data: state.drawing, getPosition: (d) => d,
        getFillColor: [255, 64, 129, 255], getRadius: 4, radiusUnits: "pixels" }));
    }
    if (state.drawn) {
      out.push(new D.PolygonLayer({ id: "_drawn", data: [state.drawn], getPolygon: (d) => d,
        getFillColor: [255, 64, 129, 30], getLineColor: [255, 64, 129, 255], getLineWidth: 2,
        lineWidthUnits: "pixels", stroked: true, filled: true }));
    }
    return out;
  }

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
  function onClick(info) {
    if (state.mode !== "pan" || !info || !info.object || !info.layer) return;
    const clickable = state.args.click_layers || [];
    if (!clickable.includes(info.layer.id)) return;
    const obj = info.object.properties || info.object;
    const props = {};
    for (const [k, v] of Object.entries(obj)) if (typeof v !== "object") props[k] = v;
    send("click", { layer: info.layer.id, properties: props, coordinate: info.coordinate });
  }

  // ---- drawing ----
  const container = el("map");
  function setMode(mode) {
    state.mode = mode;
    state.drawing = [];
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
  el("btn-clear").onclick = () => { state.drawn = null; state.drawing = []; updateLayers(); send("clear", {}); };

  function unproject(ev) {
    const rect = container.getBoundingClientRect();
    const vp = deckgl.getViewports()[0];
    const p = vp.unproject([ev.clientX - rect.left, ev.clientY - rect.top]);
    return [Math.round(p[0] * 1e6) / 1e6, Math.round(p[1] * 1e6) / 1e6];
  }
  function pxDist(a, b) {
    const vp = deckgl.getViewports()[0];
    const pa = vp.project(a), pb = vp.project(b);
    return Math.hypot(pa[0] - pb[0], pa[1] - pb[1]);
  }
  function onToolbar(ev) { return el("toolbar").contains(ev.target) || el("legend").contains(ev.target); }

  container.addEventListener("pointerdown", (ev) => {
    if (state.mode === "pan" || onToolbar(ev) || ev.button !== 0) return;
    ev.stopPropagation();
    if (state.mode === "lasso") {
      state.drawing = [unproject(ev)];
      state.lassoActive = true;
      container.setPointerCapture(ev.pointerId);
    } else if (state.mode === "polygon") {
      const p = unproject(ev);
      if (state.drawing.length >= 3 && pxDist(p, state.drawing[0]) < 10) { finish(); return; }
      state.drawing.push(p);
    }
    updateLayers();
  }, true);
  container.addEventListener("pointermove", (ev) => {
    if (state.mode === "lasso" && state.lassoActive) {
      ev.stopPropagation();
      const p = unproject(ev);
      const last = state.drawing[state.drawing.length - 1];
      if (!last || pxDist(p, last) >= 3) { state.drawing.push(p); updateLayers(); }
    } else if (state.mode === "polygon" && state.drawing.length) {
      state.cursor = unproject(ev);
      updateLayers();
    }
  }, true);
  container.addEventListener("pointerup", (ev) => {
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
    if (ev.key === "Escape") { state.drawing = []; state.cursor = null; updateLayers(); }
  });

  function finish(points) {
    let pts = (points || state.drawing).slice();
    state.drawing = [];
    state.cursor = null;
    // drop consecutive duplicates (a double-click adds the same corner twice)
    pts = pts.filter((p, i) => i === 0 || p[0] !== pts[i - 1][0] || p[1] !== pts[i - 1][1]);
    if (pts.length < 3) { updateLayers(); el("hint").textContent = "need at least 3 points — draw again"; return; }
    const ring = pts.concat([pts[0]]);
    state.drawn = ring;
    const feature = { type: "Feature", properties: { source: state.mode }, geometry: { type: "Polygon", coordinates: [ring] } };
    api.lastDrawn = feature;
    api.drawEndAt = performance.now();
    updateLayers();
    send("draw", { geojson: feature });
  }
  // For tests and scripted demos: the same path as a finished drawing.
  api.injectPolygon = (coords) => finish(coords.map((c) => [c[0], c[1]]));

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
    const first = state.args === null;
    state.args = args;
    if (args.height && args.height !== state.height) {
      state.height = args.height;
      container.style.height = args.height + "px";
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
    }
    if (args.clear_drawn_seq != null && args.clear_drawn_seq !== state.clearSeq) { state.clearSeq = args.clear_drawn_seq; if (!first) state.drawn = null; }
    const keep = new Set(args.layers.map(([id]) => id));
    for (const id of Array.from(state.cache.keys())) if (!keep.has(id)) state.cache.delete(id);
    updateLayers();
    renderLegend(args.legends);
    api.renders += 1;
    api.lastRenderAt = performance.now();
    api.layerIds = args.layers.map(([id]) => id);
  }

  window.addEventListener("message", (ev) => {
    const d = ev.data;
    if (d && d.type === "streamlit:render") {
      try { onRender(d.args); } catch (e) { showError(String(e && e.stack || e)); }
    }
  });
  post("streamlit:componentReady", { apiVersion: 1 });
})();
