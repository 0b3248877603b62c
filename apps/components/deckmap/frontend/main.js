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
    viewTimer: null, height: 0, hidden: new Set(), legends: [], legendCollapsed: null, renderSig: null,
    basemapOk: null, hud: null,
  };
  const api = { state, firstPaint: null, lastDrawn: null, drawEndAt: null, renders: 0 };
  let liveDeck = null;  // the screen's live layers (see ensureLiveDeck)
  // True when every layer file has arrived and every visible layer is loaded (for tests and screenshots).
  // (not while a render's layers are still to be set: the 300 ms delay, or a changed layer's file on its way)
  const deckIdle = (d) => !d || (d.isInitialized && d.props.layers.every((l) => !l.props.visible || l.isLoaded) &&
    !d.needsRedraw({ clearRedrawFlags: false }));
  api.isIdle = () => deckgl.isInitialized && !state.pendingUpdate &&
    Array.from(fetched.values()).every((v) => typeof v === "string") && deckIdle(deckgl) && deckIdle(liveDeck);
  window.__deckmap = api;
  api.trace = [];  // [what, ms] of the last layer updates (tests read it to say where time goes)
  const trace = (what) => { api.trace.push([what, Math.round(performance.now())]); if (api.trace.length > 60) api.trace.shift(); };

  const deckgl = new D.Deck({
    parent: el("map"),
    initialViewState: { longitude: 113.07, latitude: 23.01, zoom: 11.3, pitch: 0, bearing: 0 },
    controller: { doubleClickZoom: false },
    layers: [],
    getTooltip: (info) => tooltip((info && info.x >= 0 && pickLive({ x: info.x, y: info.y, radius: 2 })) || info),
    onViewStateChange: ({ viewState }) => { state.viewState = viewState; syncLiveView(viewState); onView(); return viewState; },
    onBeforeRender: () => syncLiveView(),
    onAfterRender: () => {
      trace("frame");
      api.mapFrames = (api.mapFrames || 0) + 1;
      checkFirstPaint();
      api.renders += 1;
    },
    style: { background: "#0b1426" },
  });
  api.deck = deckgl;

  // The command-centre screen draws its live layers (incidents, workers; and the labels listed above them) on a
  // second, transparent deck above the map: a feed update then redraws only those few hundred points, not the whole
  // city (a software-rendered 1080p frame of every layer took ≈ 2 s on a 2-core machine; the live layers alone
  // ≈ 0.1–0.4 s). It takes no pointer events: the map below keeps the controller, and hover/click pick the live
  // deck first (it is drawn on top).
  const splitLive = () => !!(state.args && state.args.screen);
  function ensureLiveDeck() {
    if (liveDeck) return liveDeck;
    liveDeck = new D.Deck({
      parent: el("map"), viewState: mainView(), controller: false, layers: [],
      style: { position: "absolute", left: "0px", top: "0px", pointerEvents: "none", zIndex: "1" },
      onAfterRender: () => { trace("live frame"); api.liveFrames = (api.liveFrames || 0) + 1; checkFirstPaint(); },
    });
    api.liveDeck = liveDeck;
    return liveDeck;
  }
  function mainView() {
    const vp = deckgl.isInitialized ? deckgl.getViewports()[0] : null;
    const v = vp ? { longitude: vp.longitude, latitude: vp.latitude, zoom: vp.zoom, pitch: vp.pitch, bearing: vp.bearing }
      : currentView();
    return Object.assign({}, v, { transitionDuration: 0 });
  }
  function syncLiveView(viewState) {
    if (!liveDeck) return;
    const v = viewState ? { longitude: viewState.longitude, latitude: viewState.latitude, zoom: viewState.zoom,
      pitch: viewState.pitch || 0, bearing: viewState.bearing || 0 } : mainView();
    const cur = liveDeck.props.viewState || {};
    if (["longitude", "latitude", "zoom", "pitch", "bearing"].every((k) => cur[k] === v[k])) return;
    liveDeck.setProps({ viewState: v });
  }
  // the live deck's object under a pixel (pickObject options), or null; hover and click look there first
  function pickLive(opts) {
    if (!liveDeck || !liveDeck.isInitialized || state.mode !== "pan") return null;
    const hit = liveDeck.pickObject(opts);
    return hit && hit.object ? hit : null;
  }
  // a click's pick: the live deck first (drawn on top), then the map; ``layerIds`` may name layers of either
  function pickAt(opts) {
    if (!liveDeck) return deckgl.pickObject(opts);
    const on = (d) => (opts.layerIds || []).filter((id) => d.props.layers.some((l) => l.id === id));
    const live = on(liveDeck), map = on(deckgl);
    const hit = (!opts.layerIds || live.length) && pickLive(Object.assign({}, opts, opts.layerIds ? { layerIds: live } : {}));
    if (hit) return hit;
    return !opts.layerIds || map.length ? deckgl.pickObject(Object.assign({}, opts, opts.layerIds ? { layerIds: map } : {}))
      : null;
  }

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
    const z = zoom - screenZoomOffset();
    return !r || (z >= r[0] && z < r[1]);
  }
  // A wall screen wider than 1920 px shows the same ground at a higher zoom: zoom ranges and label sizes follow the
  // screen's size (log2 of width / 1920), so a 4K wall looks like a 1080p one, only sharper.
  function screenZoomOffset() {
    if (!state.args || !state.args.screen) return 0;
    return Math.max(0, Math.log2((container.clientWidth || 1920) / 1920));
  }
  // ... and so do sizes given in screen pixels (dots clamped to a least radius, outlines a few pixels wide): a 4K
  // wall draws them twice as many pixels across, the same size to the eye as on a 1080p one
  const PIXEL_SIZES = ["radiusMinPixels", "radiusMaxPixels", "pointRadiusMinPixels", "pointRadiusMaxPixels",
    "lineWidthMinPixels", "lineWidthMaxPixels", "widthMinPixels", "widthMaxPixels"];
  const PIXEL_SCALES = [["radiusUnits", "radiusScale"], ["pointRadiusUnits", "pointRadiusScale"],
    ["lineWidthUnits", "lineWidthScale"], ["widthUnits", "widthScale"]];
  function screenSized(layer) {
    const f = 2 ** screenZoomOffset();
    if (f === 1) return {};
    const p = layer.props, out = {};
    for (const k of PIXEL_SIZES) if (typeof p[k] === "number" && p[k] > 0 && p[k] < 1e6) out[k] = p[k] * f;
    for (const [units, scale] of PIXEL_SCALES) if (p[units] === "pixels") out[scale] = (p[scale] || 1) * f;
    return out;
  }
  // shown = in its zoom range and not switched off in the legend
  function isShown(id, zoom) { return !state.hidden.has(id) && inZoom(id, zoom); }

  // Large layers arrive as "@layers/<sha1>.json" (a file served with the component): fetched once, cached by name.
  const fetched = new Map();  // ref → JSON text, or a pending Promise
  const isFileRef = (json) => json.startsWith("@") && json !== "@live";
  function layerText(json) {
    if (json === "@live") return null;
    if (!json.startsWith("@")) return json;
    const ref = json.slice(1);
    const got = fetched.get(ref);
    if (typeof got === "string") return got;
    if (!got) {
      trace("fetch " + ref.slice(7, 15));
      fetched.set(ref, fetch(ref).then((r) => {
        if (!r.ok) throw new Error(`${ref}: HTTP ${r.status}`);
        return r.text();
      }).then((text) => { trace("fetched " + ref.slice(7, 15)); fetched.set(ref, text); updateLayers(); },
              (e) => { fetched.delete(ref); showError("layer file " + ref + ": " + e); }));
    }
    return null;  // not here yet: drawn when it arrives
  }

  // A live layer ("@live") takes its JSON from the feed (polled, see pollFeed); it is re-parsed only when that
  // JSON changed. Each conversion gets a new revision number (what a frame's draw key compares).
  let revision = 0;
  function convertLayer(id, ref) {
    const hit = state.cache.get(id);
    const key = ref === "@live" ? (feed.layers && feed.layers[id]) || null : ref;
    if (key === null) return null;  // no feed yet (or the layer is not in it)
    if (hit && hit.json === key) return hit.layer;
    const json = ref === "@live" ? key : layerText(ref);
    if (json === null) return hit ? hit.layer : null;  // keep the previous version on screen meanwhile
    const parsed = JSON.parse(json);
    const out = converter.convert({ layers: [parsed] });
    const layer = out.layers[0];
    revision += 1;
    state.cache.set(id, { json: key, layer, rev: revision });
    if (ref === "@live") trace("live " + id);
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
  window.addEventListener("resize", () => { sizeSketch(); drawSketch(); updateLayers(); drawLegend(); });

  // The web basemap needs internet: one tile is probed first; unreachable → a notice and no tile layer (offline the
  // map is the district outline and the twin's own layers, which is how it is meant to look here).
  function probeBasemap(url) {
    if (state.basemapProbe === url) return;
    state.basemapProbe = url;
    state.basemapOk = null;
    const img = new Image();
    const done = (ok) => {
      if (state.basemapProbe !== url) return;
      state.basemapOk = ok;
      el("notice").textContent = ok ? "" : "Web basemap unreachable (it needs internet): showing the district outline only.";
      el("notice").style.display = ok ? "none" : "block";
      if (ok) updateLayers();
    };
    const timer = setTimeout(() => done(false), 4000);
    img.onload = () => { clearTimeout(timer); done(true); };
    img.onerror = () => { clearTimeout(timer); done(false); };
    img.src = url.replace("{z}", "1").replace("{x}", "1").replace("{y}", "0");
  }

  function basemapLayer() {
    const url = state.args.basemap_url;
    if (!url) { state.basemapProbe = null; el("notice").style.display = "none"; return []; }
    probeBasemap(url);
    if (state.basemapOk !== true) return [];
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
    const layers = [], live = [];
    // the screen: the stack from its first live layer up (live layers and the labels above them, so the draw order
    // is the same) goes to the live deck
    const firstLive = splitLive() ? state.args.layers.findIndex(([, j]) => j === "@live") : -1;
    const split = firstLive >= 0;
    // a changed layer still on its way (a file being fetched): wait for it instead of drawing a frame without it
    // (the fetch calls this again); a frame on a software-rendered screen takes seconds and would hold the file up
    const waiting = state.args.layers.some(([, json]) => isFileRef(json) && typeof fetched.get(json.slice(1)) !== "string");
    for (const [i, [id, json]] of state.args.layers.entries()) {
      let layer;
      try { layer = convertLayer(id, json); } catch (e) { showError("layer " + id + ": " + e); continue; }
      if (!layer) continue;
      const extra = layer.id.startsWith("labels-") && screenZoomOffset() > 0 ? { sizeScale: 2 ** screenZoomOffset() }
        : screenSized(layer);
      (split && i >= firstLive ? live : layers).push(layer.clone(Object.assign({ visible: isShown(id, zoom) }, extra)));
    }
    // nothing new to draw (e.g. a changed layer whose file is still on its way): no setProps, so no WebGL frame —
    // on a software-rendered screen a frame takes seconds and would delay the layer that is arriving
    const keyOf = (ls) => ls.map((l) => [l.id, state.cache.get(l.id) && state.cache.get(l.id).rev, l.props.visible]);
    // the wall's size is part of both keys: pixel sizes follow it (a window resized to 4K or back redraws them)
    const offset = screenZoomOffset();
    const drawKey = JSON.stringify([keyOf(layers), state.drawn, state.basemapOk && state.args.basemap_url, offset]);
    const liveKey = JSON.stringify([keyOf(live), offset]);
    state.visibleKey = visibleKey(zoom);
    state.pendingUpdate = waiting;  // done unless a changed layer's file is still on its way (its fetch calls again)
    if (split && liveKey !== state.liveKey) {  // the live deck: its own frame, the map below is not redrawn
      state.liveKey = liveKey;
      trace("setProps live");
      ensureLiveDeck().setProps({ layers: live, viewState: mainView() });
    }
    if (drawKey === state.drawKey || (waiting && state.drawKey !== undefined)) return;
    state.drawKey = drawKey;
    trace("setProps");
    deckgl.setProps({ layers: basemapLayer().concat(layers, drawLayers()) });
  }

  function visibleKey(zoom) {
    return state.args.layers.map(([id]) => (isShown(id, zoom) ? "1" : "0")).join("");
  }

  // ---- view changes ----
  function onView() {
    if (!state.args) return;
    const zoom = currentView().zoom;
    if (visibleKey(zoom) !== state.visibleKey) { updateLayers(); drawLegend(); }
    drawStatus();
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
    return { html: fill(t, info.object), style: { background: "rgba(11,20,38,0.95)", color: "#fff",
      fontSize: state.args && state.args.screen ? "max(20px, 1.05vw)" : "14px", zIndex: 30,
      border: "1px solid #3c5a8a", borderRadius: "6px", padding: "6px 8px",
      fontFamily: "Noto Sans CJK SC, sans-serif" } };
  }
  // Clicks are detected here, not by deck.gl's tap gesture: that one gives up when pointer-down and -up are
  // more than 250 ms apart in processing time, which happens on slow (software-rendered) screens.
  function onClick(px) {
    const vp = deckgl.getViewports()[0];
    if (!vp) return;
    const t0 = performance.now();
    const only = state.args && state.args.click_layers;  // null: every pickable layer
    const ids = only ? only.filter((id) => deckgl.props.layers.concat(liveDeck ? liveDeck.props.layers : [])
      .some((l) => l.id === id && l.props.visible)) : null;
    const info = (ids && !ids.length) ? {} : pickAt(Object.assign({ x: px[0], y: px[1], radius: 2 },
      ids ? { layerIds: ids } : {})) || {};
    api.pickMs = Math.round(performance.now() - t0);
    api.clickSentAt = Date.now();
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

  // ---- legend: collapsible; only the layers visible at this zoom; a box per entry switches its layers ----
  function renderLegend(legends) {
    const liveIds = new Set(((state.args && state.args.layers) || []).filter(([, j]) => j === "@live").map(([id]) => id));
    const liveLegends = ((feed.data && feed.data.legends) || []).filter((lg) => (lg.layers || []).some((id) => liveIds.has(id)));
    state.legends = liveLegends.concat(legends || []);
    if (state.legendCollapsed === null) state.legendCollapsed = !!(state.args && state.args.legend_collapsed);
    drawLegend();
  }
  function legendVisible(lg, zoom) {  // an entry without layer ids is always shown
    const ids = lg.layers || [];
    return !ids.length || ids.some((id) => inZoom(id, zoom) && (state.args.layers || []).some(([i]) => i === id));
  }
  function drawLegend() {
    const box = el("legend");
    if (!state.args || !state.legends.length) { box.style.display = "none"; return; }
    const zoom = currentView().zoom || 11;
    const shown = state.legends.map((lg, i) => [lg, i]).filter(([lg]) => legendVisible(lg, zoom));
    box.style.display = "block";
    const head = `<div class="lg-head" id="legend-head">${state.legendCollapsed ? "▸" : "▾"} Legend 图例 ` +
      `<span class="lg-n">(${shown.length})</span></div>`;
    if (state.legendCollapsed) { box.innerHTML = head; return; }
    box.innerHTML = head + shown.map(([lg, i]) => {
      const ids = lg.layers || [];
      const on = !ids.length || !ids.every((id) => state.hidden.has(id));
      const toggle = ids.length ? `<input type="checkbox" data-lg="${i}" ${on ? "checked" : ""}/>` : "";
      const rows = on ? lg.rows.map((r) => `<div class="row"><span class="${r.kind === "line" ? "line" : r.kind === "ring" ? "ring" : "sw"}" style="${
        r.kind === "line" ? "border-top-color" : r.kind === "ring" ? "border-color" : "background"}:${r.color}"></span><span>${escapeHtml(r.label)}</span></div>`).join("") : "";
      return `<h4><label>${toggle}${escapeHtml(lg.title)}</label></h4>${rows}`;
    }).join("");
  }
  el("legend").addEventListener("click", (ev) => {
    if (ev.target.closest("#legend-head")) { state.legendCollapsed = !state.legendCollapsed; drawLegend(); return; }
    const cb = ev.target.closest("input[data-lg]");
    if (!cb) return;
    const lg = state.legends[Number(cb.dataset.lg)];
    for (const id of lg.layers || []) { if (cb.checked) state.hidden.delete(id); else state.hidden.add(id); }
    updateLayers();
    drawLegend();
  });
  api.hidden = state.hidden;
  // First paint: every layer file here and every visible layer loaded. Checked after each frame and twice a second
  // (layers re-set only on change, so the last frame may come before the last layer reports loaded); a layer file
  // whose fetch failed is asked for again.
  function checkFirstPaint() {
    if (state.firstPaint === null && state.args && deckgl.isInitialized && deckgl.props.layers.length > 0 &&
        (!state.args.live || feed.data !== null) &&
        Array.from(fetched.values()).every((v) => typeof v === "string") && deckIdle(deckgl) && deckIdle(liveDeck)) {
      state.firstPaint = performance.now();
      api.firstPaint = state.firstPaint;
    }
  }
  setInterval(() => {
    if (!state.args) return;
    if (state.args.layers.some(([, j]) => isFileRef(j) && !fetched.has(j.slice(1)))) updateLayers();
    checkFirstPaint();
  }, 500);
  // the data of a layer as the browser holds it (tests: is a new incident on screen?)
  api.layerData = (id) => { const c = state.cache.get(id); return c && c.layer ? c.layer.props.data : null; };

  // ---- command-centre overlay: title, clock, KPI tiles, alarm strip (screen mode) ----
  function renderHud(hud) {
    const box = el("hud");
    if (hud && hud.live && feed.data && feed.data.hud) hud = Object.assign({}, hud, feed.data.hud);
    state.hud = hud || null;
    if (!hud) { box.style.display = "none"; return; }
    box.style.display = "block";
    el("hud-title").textContent = hud.title || "";
    el("hud-sub").textContent = hud.subtitle || "";
    el("kpis").innerHTML = (hud.kpis || []).map((k) => `<div class="kpi ${k.tone || ""}" data-kpi="${escapeHtml(k.key)}">` +
      `<div class="kpi-label">${escapeHtml(k.label)}</div><div class="kpi-value">${escapeHtml(k.value)}</div>` +
      `<div class="kpi-sub">${escapeHtml(k.sub || "")}</div></div>`).join("");
    const alarms = hud.alarms || [];
    el("alarms").innerHTML = `<span class="al-head">ALARMS 告警</span>` + (alarms.length ? alarms.map((a) =>
      `<span class="alarm ${a.kind}" data-id="${a.id}">${escapeHtml(a.at)} ${escapeHtml(a.text)}</span>`).join("")
      : `<span class="alarm none">no new level-3/4 escalations or overdue cases in the last ${hud.alarm_hours || 6} h</span>`);
    el("hud-updated").textContent = hud.updated ? `live · updated ${hud.updated}` : "";
    tickClock();
  }
  function tickClock() {
    if (!state.hud) return;
    const now = new Date(Date.now() + 8 * 3600 * 1000);  // CST (UTC+08:00), whatever the browser's zone
    const p = (n) => String(n).padStart(2, "0");
    el("clock").textContent = `${now.getUTCFullYear()}-${p(now.getUTCMonth() + 1)}-${p(now.getUTCDate())} ` +
      `${p(now.getUTCHours())}:${p(now.getUTCMinutes())}:${p(now.getUTCSeconds())} CST`;
  }
  setInterval(tickClock, 1000);

  // ---- height: fixed, or the whole window of the page (screen mode, full-bleed) ----
  function fitHeight() {
    const a = state.args;
    if (!a) return;
    let h = a.height || 720;
    if (a.fill_height) { try { h = window.parent.innerHeight; } catch (e) { h = window.innerHeight || h; } }
    if (h !== state.height) {
      state.height = h;
      container.style.height = h + "px";
      sizeSketch();
      post("streamlit:setFrameHeight", { height: h });
    }
  }
  try { window.parent.addEventListener("resize", fitHeight); } catch (e) { /* cross-origin parent */ }

  function escapeHtml(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }

  // ---- brush (edit mode): paint H3 res-11 cells into a target grid, balance live in the browser ----
  // Python sends args.brush = {target, radius, painted: [hex], color, grids: [[code, name, workload, ideal,
  // community]] (target first), cells: {hex: [grid index, workload]}, error}. The pointer path → cells (h3-js);
  // they are drawn on a 2D canvas (no WebGL frame per move) and the live box recomputes the grids' deviation.
  // On release one {"event": "brush", target, cells} goes to Python, which previews the whole painting as one edit.
  const brush = { args: null, stroke: null, pending: [], hover: [], lastPx: null, canvas: null, box: null, btn: null,
    viewSig: "" };
  api.brush = brush;
  function brushEls() {
    if (brush.canvas) return;
    brush.canvas = document.createElement("canvas");
    brush.canvas.id = "brush-canvas";
    brush.canvas.style.cssText = "position:absolute;left:0;top:0;z-index:5;pointer-events:none";
    container.appendChild(brush.canvas);
    brush.box = document.createElement("div");
    brush.box.id = "brush-box";
    brush.box.style.cssText = "position:absolute;top:10px;right:10px;z-index:11;display:none;max-width:420px;" +
      "background:rgba(11,20,38,0.92);color:#e8eefc;border:1px solid #ffd600;border-radius:8px;padding:8px 12px;" +
      "font-size:15px;line-height:1.45";
    container.appendChild(brush.box);
  }
  function brushButton(on) {
    if (on && !brush.btn) {
      brush.btn = document.createElement("button");
      brush.btn.id = "btn-brush";
      brush.btn.title = "Brush: drag over neighbouring grids to paint their cells into the selected grid";
      brush.btn.textContent = "✎ Brush";
      brush.btn.onclick = () => {
        setMode("brush");
        brush.btn.classList.add("active");
        el("hint").textContent = "drag to paint cells into the selected grid; release to preview";
      };
      el("toolbar").insertBefore(brush.btn, el("btn-clear"));
      for (const m of ["pan", "lasso", "polygon"]) el("btn-" + m).addEventListener("click", () => {
        brush.btn && brush.btn.classList.remove("active"); drawBrush();
      });
    } else if (!on && brush.btn) {
      if (state.mode === "brush") setMode("pan");
      brush.btn.remove();
      brush.btn = null;
    }
  }
  function brushCellsAt(px) {
    const b = brush.args;
    const ll = deckgl.getViewports()[0].unproject(px);
    const c = window.h3.latLngToCell(ll[1], ll[0], 11);
    return b.radius > 0 ? window.h3.gridDisk(c, b.radius) : [c];
  }
  function brushPaintTo(px) {  // every cell along the segment from the last pointer position (no gaps)
    const from = brush.lastPx || px;
    const n = Math.max(1, Math.ceil(Math.hypot(px[0] - from[0], px[1] - from[1]) / 4));
    for (let i = 1; i <= n; i++) {
      const p = [from[0] + (px[0] - from[0]) * i / n, from[1] + (px[1] - from[1]) * i / n];
      for (const h of brushCellsAt(p)) brush.stroke.add(h);
    }
    brush.lastPx = px;
  }
  function brushAll() {
    const s = new Set(brush.args ? brush.args.painted : []);
    for (const h of brush.pending) s.add(h);
    if (brush.stroke) for (const h of brush.stroke) s.add(h);
    return s;
  }
  function drawBrush() {
    brushEls();
    const cv = brush.canvas, r = container.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    if (cv.width !== Math.round(r.width * dpr) || cv.height !== Math.round(r.height * dpr)) {
      cv.width = Math.round(r.width * dpr); cv.height = Math.round(r.height * dpr);
      cv.style.width = r.width + "px"; cv.style.height = r.height + "px";
    }
    const ctx = cv.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, r.width, r.height);
    const vp = deckgl.isInitialized ? deckgl.getViewports()[0] : null;  // not before deck.gl has initialised
    if (state.mode !== "brush" || !brush.args || !vp) return;
    const hexPath = (h) => {
      const ring = window.h3.cellToBoundary(h);
      ctx.beginPath();
      ring.forEach(([lat, lng], i) => { const p = vp.project([lng, lat]); if (i) ctx.lineTo(p[0], p[1]); else ctx.moveTo(p[0], p[1]); });
      ctx.closePath();
    };
    const cells = brush.args.cells, tgt = brush.args.grids[0];
    ctx.lineWidth = 1.5;
    for (const h of brushAll()) {
      const c = cells[h];
      const bad = !c || (brush.args.grids[c[0]][4] !== tgt[4]);
      hexPath(h);
      ctx.fillStyle = bad ? "rgba(255,64,129,0.45)" : "rgba(255,214,0,0.45)";
      ctx.strokeStyle = bad ? "#ff4081" : "#ffd600";
      ctx.fill(); ctx.stroke();
    }
    ctx.strokeStyle = "rgba(255,255,255,0.9)";
    for (const h of brush.hover) { hexPath(h); ctx.stroke(); }
  }
  function brushLive() {  // workload and deviation of the grids involved, as painted so far (before → now)
    const b = brush.args;
    brushEls();
    if (!b) { brush.box.style.display = "none"; return; }
    const work = b.grids.map((g) => g[2]);
    let outside = 0, foreign = 0, n = 0;
    for (const h of brushAll()) {
      const c = b.cells[h];
      if (!c) { outside += 1; continue; }
      if (c[0] === 0) continue;
      if (b.grids[c[0]][4] !== b.grids[0][4]) { foreign += 1; continue; }
      work[c[0]] -= c[1]; work[0] += c[1]; n += 1;
    }
    const fmt = (x) => Math.round(x).toLocaleString("en-US");
    const pct = (x) => (x >= 0 ? "+" : "") + (100 * x).toFixed(1) + " %";
    const col = (d) => (Math.abs(d) > 0.10 ? "#ff8a80" : Math.abs(d) > 0.05 ? "#ffd180" : "#b9f6ca");
    const rows = b.grids.map((g, i) => [g, i]).filter(([g, i]) => i === 0 || Math.abs(work[i] - g[2]) > 1e-9)
      .map(([g, i]) => {
        const d0 = g[2] / g[3] - 1, d1 = work[i] / g[3] - 1;
        return `<div>${i === 0 ? "✎ " : ""}<b>${escapeHtml(g[1])}</b> workload ${fmt(g[2])} → <b>${fmt(work[i])}</b> · ` +
          `<span style="color:${col(d0)}">${pct(d0)}</span> → <b style="color:${col(d1)}">${pct(d1)}</b></div>`;
      }).join("");
    let warn = "";
    if (foreign) warn += `<div style="color:#ff8a80">✕ ${foreign} cell(s) in another community: a grid must stay inside its community</div>`;
    if (outside) warn += `<div style="color:#ffd180">${outside} cell(s) outside the neighbouring grids (checked on release)</div>`;
    if (b.error) warn += `<div style="color:#ff8a80">✕ ${escapeHtml(b.error)}</div>`;
    brush.box.innerHTML = `<div style="color:#ffd600;font-weight:bold">Brush · ${n} cell(s) move · live balance</div>${rows}${warn}`;
    brush.box.style.display = state.mode === "brush" || brushAll().size ? "block" : "none";
    api.brushLiveAt = performance.now();
  }
  container.addEventListener("pointerdown", (ev) => {
    if (state.mode !== "brush" || !brush.args || onToolbar(ev) || ev.button !== 0) return;
    brush.stroke = new Set();
    brush.lastPx = null;
    brushPaintTo(pixel(ev));
    container.setPointerCapture(ev.pointerId);
    drawBrush(); brushLive();
  }, true);
  container.addEventListener("pointermove", (ev) => {
    if (state.mode !== "brush" || !brush.args || onToolbar(ev)) return;
    const px = pixel(ev);
    if (brush.stroke) brushPaintTo(px);
    brush.hover = brushCellsAt(px);
    drawBrush();
    if (brush.stroke) brushLive();
  }, true);
  container.addEventListener("pointerup", (ev) => {
    if (state.mode !== "brush" || !brush.stroke) return;
    const cells = Array.from(brush.stroke);
    brush.stroke = null;
    brush.lastPx = null;
    if (!cells.length) return;
    brush.pending = brush.pending.concat(cells);
    api.brushSentAt = performance.now();
    send("brush", { target: brush.args.target, cells });
    drawBrush(); brushLive();
  }, true);
  function brushRender(b) {  // a render from Python: new brush arguments (or none: no grid selected)
    brush.args = b || null;
    brush.pending = [];
    brushButton(!!brush.args);
    drawBrush(); brushLive();
  }
  (function brushViewLoop() {  // keep the painted cells under the map while zooming in brush mode
    if (state.mode === "brush" && brush.args) {
      const v = currentView(), sig = `${v.longitude},${v.latitude},${v.zoom}`;
      if (sig !== brush.viewSig) { brush.viewSig = sig; drawBrush(); }
    }
    requestAnimationFrame(brushViewLoop);
  })();
  window.addEventListener("message", (ev) => {
    const d = ev.data;
    if (d && d.type === "streamlit:render" && d.args) {
      try { brushRender(d.args.brush); } catch (e) { showError("brush: " + (e && e.stack || e)); }
    }
  });

  // ---- the live feed (apps/live_feed.py): a small JSON file polled every args.live.every_ms; no Streamlit rerun ----
  const feed = { data: null, text: null, layers: null, layersRef: null, timer: null, url: null, busy: false, polls: 0,
    changes: 0, slowestMs: 0 };
  api.feed = feed;
  async function pollFeed() {
    const a = state.args, cfg = a && a.live;
    clearTimeout(feed.timer);
    if (!cfg) { feed.url = null; return; }
    if (feed.busy) return;
    feed.busy = true;
    try {
      const t0 = performance.now(), t0Epoch = Date.now();
      const r = await fetch(`${cfg.url}?n=${Date.now()}`, { cache: "no-store" });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const text = await r.text();
      feed.polls += 1;
      if (text !== feed.text) {
        const data = JSON.parse(text);
        if (data.layers_ref && data.layers_ref !== feed.layersRef) {  // the live layers changed: their own file
          const lr = await fetch(data.layers_ref);
          if (!lr.ok) throw new Error(`${data.layers_ref}: HTTP ${lr.status}`);
          feed.layers = await lr.json();
          feed.layersRef = data.layers_ref;
          feed.changes += 1;
          feed.log = (feed.log || []).concat([[data.seq, data.at, t0Epoch, Date.now()]]).slice(-5);
        }
        feed.text = text;
        feed.data = data;
        feed.at = Date.now();
        applyFeed();
      }
      feed.slowestMs = Math.max(feed.slowestMs, Math.round(performance.now() - t0));
    } catch (e) {
      el("status").textContent = "live feed unreachable: " + e;
    } finally {
      feed.busy = false;
      feed.timer = setTimeout(pollFeed, cfg.every_ms || 1000);
    }
  }
  function applyFeed() {
    const d = feed.data;
    if (!state.args) return;
    // a new frame only when a live layer on this map changed (the feed's times change every second)
    const ls = feed.layers || {};
    const changed = state.args.layers.some(([id, j]) => j === "@live" && ls[id] !== undefined &&
      (!state.cache.get(id) || state.cache.get(id).json !== ls[id]));
    if (changed) { trace(`feed ${d.seq} ${String(d.at).slice(11, 19)}`); updateLayers(); }
    const lgKey = JSON.stringify(d.legends || []);  // the legend's DOM is rebuilt only when its entries changed
    if (lgKey !== feed.legendKey) { feed.legendKey = lgKey; renderLegend(state.args.legends); }
    if (state.args.hud) renderHud(state.args.hud);
    const err = d.error ? ` · ${d.error}` : "";
    state.liveStatus = (d.status || "") + err;
    drawStatus();
  }

  function drawStatus() {  // the live line (feed) and where the view is
    const v = currentView();
    const where = v.zoom == null ? "" : `zoom ${v.zoom.toFixed(1)} · ${v.longitude.toFixed(4)}, ${v.latitude.toFixed(4)}`;
    el("status").textContent = [state.liveStatus, where].filter(Boolean).join(" · ");
  }

  // ---- render from Python ----
  function onRender(args) {
    const tr0 = performance.now();
    const first = state.args === null;
    state.args = args;
    fitHeight();
    document.body.classList.toggle("screen", !!args.screen);
    const fly = args.fly_to;
    if (first && args.hidden) for (const id of args.hidden) state.hidden.add(id);
    if (first && args.view) {
      state.viewState = Object.assign({}, args.view, fitView(args.fit_bounds));
      deckgl.setProps({ initialViewState: state.viewState });
      if (fly) state.flySeq = fly.seq;
    } else if (fly && fly.seq !== state.flySeq) {
      state.flySeq = fly.seq;
      state.viewState = Object.assign({}, currentView(), fly, { transitionDuration: 600 });
      delete state.viewState.seq;
      deckgl.setProps({ initialViewState: state.viewState });
      setTimeout(onView, 700);
    }
    let cleared = false;
    if (args.clear_drawn_seq != null && args.clear_drawn_seq !== state.clearSeq) {
      state.clearSeq = args.clear_drawn_seq;
      if (!first && state.drawn) { state.drawn = null; cleared = true; }
    }
    const keep = new Set(args.layers.map(([id]) => id));
    for (const id of Array.from(state.cache.keys())) if (!keep.has(id)) state.cache.delete(id);
    const wasSketch = state.sketchClosed;
    if (state.sketchClosed) { state.sketchClosed = false; state.sketchPx = []; drawSketch(); }
    // A rerun that changed no layer (e.g. a click that opens a dossier, a live refresh with nothing new) costs no
    // WebGL frame: the layers are re-set only when their ids, JSON or zoom ranges changed.
    const sig = renderSignature(args);
    const changed = first || cleared || sig !== state.renderSig || wasSketch;
    state.renderSig = sig;
    if (changed) {
      trace("render changed");
      // let the Streamlit page paint its update (e.g. the summary) before the WebGL frame
      clearTimeout(state.renderTimer);
      if (state.idleHandle && window.cancelIdleCallback) cancelIdleCallback(state.idleHandle);
      state.pendingUpdate = true;
      // The page (same thread: a same-origin iframe) paints the rerun's panel first — the summary, the dossier —
      // and the WebGL frame waits until the page is idle (at most 1.5 s): on a software-rendered, loaded machine
      // a frame blocks the page for seconds, and a fixed 300 ms was often not enough for the panel to paint.
      const later = () => { state.idleHandle = window.requestIdleCallback
        ? requestIdleCallback(() => { state.idleHandle = null; updateLayers(); }, { timeout: 1500 }) : (updateLayers(), null); };
      state.renderTimer = setTimeout(first || args.screen ? updateLayers : later, first || args.screen ? 0 : 100);
      api.layerUpdates = (api.layerUpdates || 0) + 1;
    }
    renderLegend(args.legends);
    renderHud(args.hud);
    const liveUrl = args.live ? args.live.url : null;
    if (liveUrl !== feed.url) { feed.url = liveUrl; if (liveUrl) pollFeed(); }
    api.renders += 1;
    api.lastRenderAt = performance.now();
    api.layerIds = args.layers.map(([id]) => id);
    console.log(`deckmap render ${(performance.now() - tr0).toFixed(0)} ms, ${args.layers.length} layers, ` +
      `${args.layers.reduce((s, l) => s + l[1].length, 0)} chars`);
  }

  // the view that shows bounds [w, s, e, n] in this map's size, leaving room for the overlay's KPI column
  function fitView(bounds) {
    if (!bounds) return {};
    const w = container.clientWidth || 1200, h = state.height || container.clientHeight || 800;
    try {
      const vp = new D.WebMercatorViewport({ width: w, height: h });
      const f = vp.fitBounds([[bounds[0], bounds[1]], [bounds[2], bounds[3]]], {
        padding: { left: Math.round(w * 0.17), right: Math.round(w * 0.1), top: Math.round(h * 0.09), bottom: Math.round(h * 0.08) } });
      return { longitude: f.longitude, latitude: f.latitude, zoom: f.zoom };
    } catch (e) { return {}; }
  }

  function renderSignature(args) {
    return JSON.stringify([args.layers, args.zoom_ranges || {}, args.basemap_url || ""]);
  }

  window.addEventListener("message", (ev) => {
    const d = ev.data;
    if (d && d.type === "streamlit:render") {
      try { onRender(d.args); } catch (e) { showError(String(e && e.stack || e)); }
    }
  });
  post("streamlit:componentReady", { apiVersion: 1 });
})();
