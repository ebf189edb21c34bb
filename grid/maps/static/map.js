/* 网格地图: the caller's grids on a MapLibre map, from the API's own vector tiles.
   Areas come from the public areas layer; buildings, cases and organisations from the
   scoped layers, with the access token added to tile requests (transformRequest). Clicking
   a grid (or ?area=ID) loads its card from /areas/{id}/map. No base map: works offline.
   window.gridMap exposes the state for tests (ready, errors, map, area). */
(function () {
  "use strict";
  const TOKEN_KEY = "grid.token";
  const origin = window.location.origin;
  const state = window.gridMap = { ready: false, errors: [], map: null, area: null };
  const $ = (id) => document.getElementById(id);

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  async function api(path) {
    const response = await fetch(origin + path, { headers: { Authorization: "Bearer " + token() } });
    if (response.status === 401) { sessionStorage.removeItem(TOKEN_KEY); showLogin(); }
    if (!response.ok) { throw new Error(path + " → " + response.status); }
    return response.json();
  }

  function showLogin() { $("login").hidden = false; $("card").hidden = true; }

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const response = await fetch(origin + "/auth/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ login: form.get("login"), password: form.get("password") }),
    });
    const body = await response.json();
    if (!response.ok) { $("login-error").textContent = body.message || "登录失败"; return; }
    sessionStorage.setItem(TOKEN_KEY, body.access_token);
    $("login").hidden = true;
    start();
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });

  const LIGHT = ["match", ["get", "light"], "red", "#c62828", "yellow", "#f9a825", "green", "#2e7d32", "#1565c0"];
  const DETAIL = ["has", "id"];  // detailed features carry an id; per-grid aggregates a count

  function style(scopedTileJson) {
    return {
      version: 8,
      sources: {
        areas: { type: "vector", url: origin + "/tiles/areas.json" },
        scoped: { type: "vector", tiles: scopedTileJson.tiles, minzoom: 0, maxzoom: scopedTileJson.maxzoom,
                  bounds: scopedTileJson.bounds },
      },
      layers: [
        { id: "background", type: "background", paint: { "background-color": "#eef1f3" } },
        { id: "grids-fill", type: "fill", source: "areas", "source-layer": "grid",
          paint: { "fill-color": "#ffffff", "fill-opacity": 0.7 } },
        { id: "grids-selected", type: "fill", source: "areas", "source-layer": "grid",
          filter: ["==", ["get", "id"], -1], paint: { "fill-color": "#bbdefb", "fill-opacity": 0.8 } },
        { id: "grids-line", type: "line", source: "areas", "source-layer": "grid",
          paint: { "line-color": "#546e7a", "line-width": 1 } },
        { id: "communities-line", type: "line", source: "areas", "source-layer": "community",
          paint: { "line-color": "#37474f", "line-width": 2 } },
        { id: "streets-line", type: "line", source: "areas", "source-layer": "street",
          paint: { "line-color": "#263238", "line-width": 3, "line-dasharray": [2, 1] } },
        { id: "buildings-fill", type: "fill", source: "scoped", "source-layer": "buildings",
          filter: ["all", DETAIL, ["==", ["geometry-type"], "Polygon"]],
          paint: { "fill-color": "#90a4ae", "fill-outline-color": "#455a64" } },
        { id: "buildings-points", type: "circle", source: "scoped", "source-layer": "buildings",
          filter: ["all", DETAIL, ["==", ["geometry-type"], "Point"]],
          paint: { "circle-radius": 4, "circle-color": "#78909c" } },
        { id: "organisations-points", type: "circle", source: "scoped", "source-layer": "organisations",
          filter: DETAIL, paint: { "circle-radius": 4, "circle-color": "#6a1b9a" } },
        { id: "cases-points", type: "circle", source: "scoped", "source-layer": "cases", filter: DETAIL,
          paint: { "circle-radius": 6, "circle-color": LIGHT, "circle-stroke-color": "#fff",
                   "circle-stroke-width": 1 } },
        { id: "cases-per-grid", type: "circle", source: "scoped", "source-layer": "cases",
          filter: ["!", DETAIL],
          paint: { "circle-radius": ["interpolate", ["linear"], ["get", "count"], 1, 6, 100, 24],
                   "circle-color": ["case", [">", ["get", "overdue"], 0], "#c62828", "#1565c0"],
                   "circle-opacity": 0.75 } },
      ],
    };
  }

  function fill(id, items) {
    const list = $(id);
    list.replaceChildren(...items.map(([text, cls]) => {
      const li = document.createElement("li");
      li.textContent = text;
      if (cls) li.className = cls;
      return li;
    }));
  }

  async function showArea(areaId) {
    const body = await api("/areas/" + areaId + "/map");
    const card = body.card;
    state.area = body;
    $("card-title").textContent = body.area.name + " (" + body.area.code + ")";
    $("card-chain").textContent = card.chain.map((a) => a.name).join(" › ");
    const counts = { "户数": card.counts.households, "人口": card.counts.population,
                     "楼栋": body.buildings.features.length, "未办结事件": body.cases.features.length };
    $("card-counts").replaceChildren(...Object.entries(counts).flatMap(([k, v]) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v ?? "–";
      return [dt, dd];
    }));
    fill("card-people", [...card.chiefs, ...card.workers].map((p) =>
      [(p.role === "grid_chief" ? "网格长 " : "网格员 ") + p.name + " " + (p.phone || "")]));
    fill("card-cases", body.cases.features.map((f) =>
      [f.properties.code + " " + f.properties.category_name, "light-" + f.properties.light]));
    $("card-svg").href = "#";
    $("card-svg").onclick = async (event) => {  // the SVG needs the token: fetch, then open
      event.preventDefault();
      const response = await fetch(origin + "/areas/" + areaId + "/map.svg",
                                   { headers: { Authorization: "Bearer " + token() } });
      window.open(URL.createObjectURL(await response.blob()), "_blank");
    };
    $("card").hidden = false;
    const [w, s, e, n] = body.area.bbox || [];
    if (w !== undefined) state.map.fitBounds([[w, s], [e, n]], { padding: 24, animate: false });
  }

  async function start() {
    const scoped = await api("/tiles/buildings,cases,organisations.json");
    const map = state.map = new maplibregl.Map({
      container: "map", style: style(scoped), bounds: [[scoped.bounds[0], scoped.bounds[1]],
                                                        [scoped.bounds[2], scoped.bounds[3]]],
      fitBoundsOptions: { padding: 24 }, attributionControl: false,
      transformRequest: (url) => url.startsWith(origin + "/tiles/") && !url.includes("/tiles/areas")
        ? { url, headers: { Authorization: "Bearer " + token() } } : { url },
    });
    map.addControl(new maplibregl.NavigationControl(), "top-left");
    map.on("error", (event) => state.errors.push(String(event.error && event.error.message || event)));
    map.on("click", "grids-fill", (event) => {
      const areaId = event.features[0].properties.id;
      map.setFilter("grids-selected", ["==", ["get", "id"], areaId]);
      showArea(areaId).catch((e) => state.errors.push(String(e)));
    });
    await new Promise((resolve) => map.once("load", resolve));
    const wanted = new URLSearchParams(location.search).get("area");
    if (wanted) {
      map.setFilter("grids-selected", ["==", ["get", "id"], Number(wanted)]);
      await showArea(wanted);
    }
    map.once("idle", () => { state.ready = true; });
  }

  if (token()) { start().catch((e) => { state.errors.push(String(e)); }); } else { showLogin(); }
})();
