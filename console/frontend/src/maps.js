// MapLibre (vendored with the map page, grid/maps/static) over the API's own tiles, as
// /map draws them: no base map, works offline. Loaded only when a screen shows a map.
import * as api from "./api.js";

const MAPLIBRE = "/map/static/maplibre-gl-4.7.1/maplibre-gl";
let loading = null;

export function loadMapLibre() {
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const css = Object.assign(document.createElement("link"), { rel: "stylesheet", href: MAPLIBRE + ".css" });
      const script = Object.assign(document.createElement("script"), { src: MAPLIBRE + ".js" });
      script.onload = () => resolve(window.maplibregl);
      script.onerror = reject;
      document.head.append(css, script);
    });
  }
  return loading;
}

export const LIGHT = ["match", ["get", "light"], "red", "#d93026", "yellow", "#f0a020", "green", "#2e9d4f", "#1565c0"];
const DETAIL = ["has", "id"];
const origin = window.location.origin;
const source = (tj) => ({ type: "vector", tiles: tj.tiles.map((u) => (u.startsWith("/") ? origin + u : u)),
                          minzoom: tj.minzoom, maxzoom: tj.maxzoom, bounds: tj.bounds });

/** A map of the caller's grids; `layers` adds the scoped layers' styles. */
export async function gridMap(container, { bounds, center, zoom, interactive = true, registry = false, onError } = {}) {
  const maplibregl = await loadMapLibre();
  // buildings and organisations need registry:read; cases are in every case reader's scope
  const layers = registry ? "buildings,cases,organisations" : "cases";
  const [areas, scoped] = await Promise.all([api.get("/tiles/areas.json"), api.get(`/tiles/${layers}.json`)]);
  const style = {
    version: 8,
    sources: { areas: source(areas), scoped: { ...source(scoped), minzoom: 0 } },
    layers: [
      { id: "background", type: "background", paint: { "background-color": "#eef1f3" } },
      { id: "grids-fill", type: "fill", source: "areas", "source-layer": "grid", paint: { "fill-color": "#fff", "fill-opacity": 0.7 } },
      { id: "grids-line", type: "line", source: "areas", "source-layer": "grid", paint: { "line-color": "#546e7a", "line-width": 1 } },
      { id: "communities-line", type: "line", source: "areas", "source-layer": "community", paint: { "line-color": "#37474f", "line-width": 2 } },
      { id: "buildings-fill", type: "fill", source: "scoped", "source-layer": "buildings",
        filter: ["all", DETAIL, ["==", ["geometry-type"], "Polygon"]], paint: { "fill-color": "#90a4ae", "fill-outline-color": "#455a64" } },
      { id: "buildings-points", type: "circle", source: "scoped", "source-layer": "buildings",
        filter: ["all", DETAIL, ["==", ["geometry-type"], "Point"]], paint: { "circle-radius": 4, "circle-color": "#78909c" } },
      { id: "organisations-points", type: "circle", source: "scoped", "source-layer": "organisations",
        filter: DETAIL, paint: { "circle-radius": 4, "circle-color": "#6a1b9a" } },
      { id: "cases-points", type: "circle", source: "scoped", "source-layer": "cases", filter: DETAIL,
        paint: { "circle-radius": 6, "circle-color": LIGHT, "circle-stroke-color": "#fff", "circle-stroke-width": 1 } },
      { id: "cases-per-grid", type: "circle", source: "scoped", "source-layer": "cases", filter: ["!", DETAIL],
        paint: { "circle-radius": ["interpolate", ["linear"], ["get", "count"], 1, 6, 100, 24],
                 "circle-color": ["case", [">", ["get", "overdue"], 0], "#d93026", "#1565c0"], "circle-opacity": 0.75 } },
    ],
  };
  const b = bounds || scoped.bounds;
  const map = new maplibregl.Map({
    container, style, interactive, attributionControl: false,
    ...(center ? { center, zoom: zoom ?? 16 } : { bounds: [[b[0], b[1]], [b[2], b[3]]], fitBoundsOptions: { padding: 24 } }),
    transformRequest: (url) => (url.startsWith(origin + "/tiles/") && !url.includes("/tiles/areas")
      ? { url, headers: api.authHeaders() } : { url }),
  });
  map.on("error", (e) => (onError || console.warn)(e.error || e));
  await new Promise((resolve) => map.once("load", resolve));
  return { map, maplibregl };
}
