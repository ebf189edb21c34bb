/* 网格地图: the caller's grids on a MapLibre map, from the API's own vector tiles.
   Areas come from the public areas layer; buildings, cases and organisations from the
   scoped layers, with the access token added to tile requests (transformRequest). Clicking
   a grid (or ?area=ID) loads its card from /areas/{id}/map; clicking a case or a building
   opens a popup whose link loads 事件详情 (/cases/{id}) or 楼栋画像 (/buildings/{id}/profile)
   into the side panel, and the card links 网格画像 (/areas/{id}/profile). Below the detail
   zoom a point per grid gives its counts. API strings are user-entered: they only ever
   become text nodes, never HTML. No base map: works offline.
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

  // every failure lands in state.errors (what the test checks) and in front of the user
  function fail(error) {
    state.errors.push(String(error));
    $("panel-error").textContent = "加载失败: " + String(error.message || error);
    $("panel-error").hidden = false;
  }

  function showLogin() { $("login").hidden = false; $("card").hidden = true; $("detail").hidden = true; }

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

  const LIGHTS = { red: ["#c62828", "红灯"], yellow: ["#f9a825", "黄灯"], green: ["#2e7d32", "绿灯"] };
  const NO_LIGHT = ["#1565c0", "无时限"];  // a case in a state without a time limit
  const LIGHT = ["match", ["get", "light"],
                 ...Object.entries(LIGHTS).flatMap(([key, [colour]]) => [key, colour]), NO_LIGHT[0]];
  const DETAIL = ["has", "id"];  // detailed features carry an id; per-grid aggregates a count
  const ROLES = { grid_chief: "网格长", grid_worker: "网格员", community_staff: "社区工作人员" };
  // one line for a contact of a grid card or profile: role, name, masked phone
  const contact = (p) => (ROLES[p.role] || p.role) + " " + p.name + " " + (p.phone || "");

  // TileJSON's tile URLs are root-relative unless the server has a PUBLIC_BASE_URL:
  // MapLibre fetches tiles from a worker, where only absolute URLs resolve (not new URL():
  // it would escape the {z}/{x}/{y} of the template)
  const source = (tileJson) => ({
    type: "vector", tiles: tileJson.tiles.map((url) => (url.startsWith("/") ? origin + url : url)),
    minzoom: tileJson.minzoom, maxzoom: tileJson.maxzoom, bounds: tileJson.bounds,
  });

  function style(areasTileJson, scopedTileJson) {
    return {
      version: 8,
      sources: {
        areas: source(areasTileJson),
        scoped: { ...source(scopedTileJson), minzoom: 0 },
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
        { id: "buildings-per-grid", type: "circle", source: "scoped", "source-layer": "buildings",
          filter: ["!", DETAIL],
          paint: { "circle-radius": ["interpolate", ["linear"], ["get", "count"], 1, 8, 500, 28],
                   "circle-color": "#78909c", "circle-opacity": 0.35,
                   "circle-stroke-color": "#546e7a", "circle-stroke-width": 1 } },
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

  // --- DOM helpers: strings become text nodes (API data is user-entered, never HTML) -----

  function el(tag, props, ...children) {
    const node = Object.assign(document.createElement(tag), props || {});
    node.append(...children.filter((c) => c !== null && c !== undefined && c !== false)
      .map((c) => (c instanceof Node ? c : String(c))));
    return node;
  }

  const shown = (value) => (value === null || value === undefined || value === "" ? "–" : value);
  const when = (iso) => (iso ? new Date(iso).toLocaleString("zh-CN", { hour12: false }) : "–");
  // a code as the API labels it (`use_label`…) when it does, else the code itself
  const labelled = (record, field) => shown(record[field + "_label"] ?? record[field]);
  // a code → count map's [code, count] pairs, each code as the profile's `labels` names it
  const named = (counts, labels) =>
    Object.entries(counts || {}).map(([code, n]) => [(labels || {})[code] ?? code, n]);

  function facts(pairs) {  // [key, value] rows; an undefined value leaves its row out
    return el("dl", { className: "facts" }, ...pairs.filter(([, value]) => value !== undefined)
      .flatMap(([key, value]) => [el("dt", null, key),
                                  el("dd", null, value instanceof Node ? value : shown(value))]));
  }

  function list(items, render) {
    return items.length ? el("ul", null, ...items.map((item) => el("li", null, ...render(item))))
      : el("p", { className: "empty" }, "无");
  }

  function dot(light) {  // the case's light as on the map
    const [colour, name] = LIGHTS[light] || NO_LIGHT;
    const mark = el("i", { className: "dot", title: name });
    mark.style.background = colour;
    return mark;
  }

  function link(text, action) {
    return el("a", { href: "#", onclick: (event) => { event.preventDefault(); action(); } }, text);
  }

  // --- the side panel: the grid card, or one record's page ------------------------------

  let loading = 0;  // the latest panel load: an older answer arriving late is dropped

  async function showDetail(title, load, render) {
    const ticket = ++loading;
    $("panel-error").hidden = true;
    $("detail-body").replaceChildren(el("h1", null, title), el("p", { className: "empty" }, "加载中…"));
    $("detail").hidden = false;
    $("card").hidden = true;
    $("panel").scrollTop = 0;
    let body;
    try { body = await load(); } catch (error) {
      if (ticket === loading) $("detail-body").replaceChildren(el("h1", null, title));
      throw error;
    }
    if (ticket === loading) $("detail-body").replaceChildren(...render(body).filter(Boolean));
  }

  $("detail-close").addEventListener("click", () => {
    loading++;
    $("detail").hidden = true;
    $("card").hidden = !state.area;
  });

  function caseRow(c) {
    return [dot(c.light), " ", link(c.code, () => openCase(c.id)), " " + shown(c.category_name) + " · ",
            labelled(c, "state")];
  }

  function gridPart(grid) {
    return [el("h2", null, "所属网格"), el("p", null, grid.chain.map((a) => a.name).join(" › ")),
            list([...grid.chiefs, ...grid.workers],
                 (p) => [contact(p)])];
  }

  const room = (h) => [h.unit, h.floor !== null ? h.floor + "层" : null, h.room].filter(Boolean).join(" ");

  function buildingProfile(body) {
    const b = body.building, o = body.occupancy, labels = body.labels || {};
    const flags = [b.is_crowded_rental && "群租房", b.is_unsafe && "危房", b.is_live_work_store && "三合一场所"]
      .filter(Boolean);
    return [
      el("h1", null, b.name), b.address && el("p", null, b.address),
      facts([["用途", labelled(b, "use")], ["层数", b.floors], ["单元", b.units],
             ["楼长", b.leader_name ? b.leader_name + " " + (b.leader_phone || "") : null],
             ...(flags.length ? [["关注", flags.join("、")]] : [])]),
      el("h2", null, "房屋与居住"),
      facts([["房屋", o.rooms], ["有人住", o.occupied], ["空置", o.empty], ["户数", o.households],
             ["人数", o.persons],
             ["房屋用途", named(o.by_use, labels.by_use).map(([use, n]) => use + " " + n).join(" · ")]]),
      list(body.rooms, (r) => [room(r.house) + " · " + labelled(r.house, "use") + " · "
                               + r.households + "户 " + r.persons + "人"]),
      el("h2", null, "住户 (" + body.households.length + ")"),
      list(body.households, (h) => [shown(h.household_no) + " · " + labelled(h, "type")]),
      el("h2", null, "单位 (" + body.organisations.length + ")"),
      list(body.organisations, (u) => [[u.name, labelled(u, "kind"), u.industry,
                                        u.employees !== null ? u.employees + "人" : null, u.risk_flags.join("、")]
        .filter(Boolean).join(" · ")]),
      el("h2", null, "走访 (" + body.visits.length + ")"),
      list(body.visits, (v) => [when(v.visited_at) + " " + labelled(v, "type") + ": ", v.content]),
      el("h2", null, "周边事件 (" + body.cases.length + ")"),
      list(body.cases, caseRow),
      ...gridPart(body.grid),
    ];
  }

  function areaProfile(body) {
    const p = body.population, v = body.visit_coverage, labels = body.labels || {};
    const row = (head, cells, cell) =>
      el("tr", null, el("th", null, head), ...cells.map((value) => el(cell, null, value)));
    const ages = el("table", { className: "ages" }, row("", ["男", "女", "未知"], "th"),
                    ...Object.entries(p.by_age_sex).map(([band, bySex]) =>
                      row(band, ["M", "F", "?"].map((sex) => bySex[sex] || 0), "td")));
    const care = named(body.care_groups, labels.care_groups).filter(([, n]) => n);
    return [
      el("h1", null, body.area.name + " (" + body.area.code + ")"),
      el("p", null, body.chain.map((a) => a.name).join(" › ")),
      facts([["人口", p.total], ["户数", body.households], ["楼栋", body.buildings], ["房屋", body.houses],
             ["单位", body.organisations], ["未办结事件", body.open_cases], ["超期事件", body.overdue_cases]]),
      el("h2", null, "人口类型"),
      facts(named(p.by_type, labels.by_type)),
      el("h2", null, "年龄段 × 性别"),
      ages,
      el("h2", null, "关爱对象"),
      care.length ? facts(care) : el("p", { className: "empty" }, "无"),
      ...(body.key_persons ? [el("h2", null, "重点人员"), facts(named(body.key_persons, labels.key_persons))] : []),
      el("h2", null, "走访覆盖 (近 " + v.days + " 天)"),
      facts([["走访", v.visits + " 次"], ["已走访户", v.households_visited],
             ["覆盖率", v.rate === null ? null : (v.rate * 100).toFixed(1) + "%"]]),
      el("h2", null, "网格员 (" + body.workers.length + ")"),
      list(body.workers, (w) => [contact(w) + " · " + w.area.name]),
      ...(body.children.length ? [el("h2", null, "下级区域"), list(body.children, (c) => [
        c.name + ": 人口 " + c.population + " · " + c.households + " 户 · 未办结事件 " + c.open_cases])] : []),
    ];
  }

  async function categoryNames() {  // id → name, fetched once (a case carries the id)
    state.categories ??= api("/case-categories").then((all) => new Map(all.map((c) => [c.id, c.name])));
    try { return await state.categories; } catch (error) { state.categories = null; throw error; }
  }

  function caseDetail(c, names) {
    return [
      el("h1", null, names.get(c.category_id) || "事件"),
      facts([["编号", c.code], ["状态", labelled(c, "state")],
             ["红黄灯", el("span", null, dot(c.light), " " + (LIGHTS[c.light] || NO_LIGHT)[1])],
             ["超期", c.overdue ? el("strong", { className: "overdue" }, "超期") : "否"],
             ["上报时间", when(c.reported_at)], ["预警时间", when(c.warn_at)], ["办理时限", when(c.due_at)],
             ["地址", c.address],
             ["联系人", c.contact_name ? c.contact_name + " " + (c.contact_phone || "") : null],
             ["结案时间", c.closed_at ? when(c.closed_at) : undefined]]),
      el("h2", null, "描述"), el("p", { className: "text" }, c.description),
      ...(c.result ? [el("h2", null, "处置结果"), el("p", { className: "text" }, c.result)] : []),
    ];
  }

  function openCase(caseId) {
    showDetail("事件详情", () => Promise.all([api("/cases/" + caseId), categoryNames()]),
               ([c, names]) => caseDetail(c, names)).catch(fail);
  }

  function openBuilding(buildingId) {
    showDetail("楼栋画像", () => api("/buildings/" + buildingId + "/profile"), buildingProfile).catch(fail);
  }

  function openAreaProfile(areaId) {
    showDetail("网格画像", () => api("/areas/" + areaId + "/profile"), areaProfile).catch(fail);
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
      [contact(p)]));
    fill("card-cases", body.cases.features.map((f) =>
      [f.properties.code + " " + f.properties.category_name, "light-" + f.properties.light]));
    $("card-profile").onclick = (event) => { event.preventDefault(); openAreaProfile(areaId); };
    $("card-svg").href = "#";
    $("card-svg").onclick = async (event) => {  // the SVG needs the token: fetch, then open
      event.preventDefault();
      const response = await fetch(origin + "/areas/" + areaId + "/map.svg",
                                   { headers: { Authorization: "Bearer " + token() } });
      window.open(URL.createObjectURL(await response.blob()), "_blank");
    };
    loading++;  // the card replaces whatever record the panel was loading
    $("panel-error").hidden = true;
    $("detail").hidden = true;
    $("card").hidden = false;
    const [w, s, e, n] = body.area.bbox || [];
    if (w !== undefined) state.map.fitBounds([[w, s], [e, n]], { padding: 24, animate: false });
  }

  function selectArea(areaId) {
    state.map.setFilter("grids-selected", ["==", ["get", "id"], Number(areaId)]);
    return showArea(areaId).catch(fail);
  }

  // --- popups: what a click on the map found --------------------------------------------

  // topmost first, as drawn; a grid only when nothing on it was hit
  const CLICKABLE = ["cases-points", "cases-per-grid", "buildings-points", "buildings-fill",
                     "buildings-per-grid"];
  // one popup, replaced or closed by onClick (MapLibre's closeOnClick would also close the
  // popup that the same click has just opened)
  const popup = new maplibregl.Popup({ maxWidth: "260px", className: "grid-popup", closeOnClick: false });

  function hit(point) {  // a few pixels of slack: points are small and fingers are not
    const box = [[point.x - 4, point.y - 4], [point.x + 4, point.y + 4]];
    return state.map.queryRenderedFeatures(box, { layers: CLICKABLE })[0];
  }

  function openPopup(lngLat, ...children) {
    popup.setLngLat(lngLat).setDOMContent(el("div", null, ...children)).addTo(state.map);
  }

  function anchor(feature, event) {  // a point's popup points at the point, not at the click
    return feature.geometry.type === "Point" ? feature.geometry.coordinates : event.lngLat;
  }

  let clicks = 0;  // the latest click: a case popup arriving after a later click is dropped

  async function casePopup(feature, lngLat) {
    const p = feature.properties, ticket = clicks;
    // the tile carries codes: the case itself has the state's label, the code and the category
    const [c, names] = await Promise.all([api("/cases/" + p.id), categoryNames()]);
    if (ticket !== clicks) return;
    openPopup(lngLat, el("strong", null, names.get(c.category_id) || p.category),
              el("p", null, dot(c.light), " " + labelled(c, "state"),
                 c.overdue ? el("span", { className: "overdue" }, " 超期") : null),
              el("p", { className: "muted" }, c.code),
              link("事件详情", () => openCase(p.id)));
  }

  function buildingPopup(feature, lngLat) {
    const p = feature.properties;
    openPopup(lngLat, el("strong", null, p.name),
              facts([["用途", labelled(p, "use")], ["层数", p.floors], ["户数", p.households],
                     ["人数", p.persons]]),
              link("楼栋画像", () => openBuilding(p.id)));
  }

  function gridPopup(feature, lngLat) {
    // both layers' points of a grid sit on the same spot: show the two counts together
    const count = (layer) => {
      const [f] = state.map.querySourceFeatures("scoped", {
        sourceLayer: layer, filter: ["==", ["get", "area_id"], feature.properties.area_id] });
      return f ? f.properties : { count: 0, overdue: 0 };
    };
    const p = feature.properties, buildings = count("buildings"), cases = count("cases");
    openPopup(lngLat, el("strong", null, p.name), el("p", { className: "muted" }, p.code),
              facts([["楼栋", buildings.count], ["未办结事件", cases.count], ["超期事件", cases.overdue]]),
              link("网格卡片", () => { popup.remove(); selectArea(p.area_id); }), " · ",
              link("网格画像", () => openAreaProfile(p.area_id)));
  }

  function onClick(event) {
    if (event.originalEvent.target !== state.map.getCanvas()) return;  // a click in the popup
    clicks++;
    const feature = hit(event.point);
    if (!feature) {
      const [grid] = state.map.queryRenderedFeatures(event.point, { layers: ["grids-fill"] });
      popup.remove();
      if (grid) selectArea(grid.properties.id);
      return;
    }
    const lngLat = anchor(feature, event);
    if (!("id" in feature.properties)) gridPopup(feature, lngLat);
    else if (feature.layer.id.startsWith("cases")) casePopup(feature, lngLat).catch(fail);
    else buildingPopup(feature, lngLat);
  }

  async function start() {
    const [areas, scoped] = await Promise.all([api("/tiles/areas.json"),
                                               api("/tiles/buildings,cases,organisations.json")]);
    const map = state.map = new maplibregl.Map({
      container: "map", style: style(areas, scoped), bounds: [[scoped.bounds[0], scoped.bounds[1]],
                                                        [scoped.bounds[2], scoped.bounds[3]]],
      fitBoundsOptions: { padding: 24 }, attributionControl: false,
      transformRequest: (url) => url.startsWith(origin + "/tiles/") && !url.includes("/tiles/areas")
        ? { url, headers: { Authorization: "Bearer " + token() } } : { url },
    });
    map.addControl(new maplibregl.NavigationControl(), "top-left");
    map.on("error", (event) => state.errors.push(String(event.error && event.error.message || event)));
    await new Promise((resolve) => map.once("load", resolve));
    map.on("click", onClick);  // once the layers exist: querying them before is an error
    map.on("mousemove", (event) => { map.getCanvas().style.cursor = hit(event.point) ? "pointer" : ""; });
    const wanted = new URLSearchParams(location.search).get("area");
    if (wanted) {
      map.setFilter("grids-selected", ["==", ["get", "id"], Number(wanted)]);
      await showArea(wanted);
    }
    map.once("idle", () => { state.ready = true; });
  }

  if (token()) { start().catch((e) => { state.errors.push(String(e)); }); } else { showLogin(); }
})();
