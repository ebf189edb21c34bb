// What every screen shares: who is logged in, the language, the area's time zone, the
// lookup lists (categories, departments, areas), and the route from the URL's #fragment.
import { reactive } from "vue";
import * as api from "./api.js";
import { LABELS } from "./labels.js";

export const state = reactive({
  me: null, lang: localStorage.getItem("console.lang") || "zh", timezone: "Asia/Shanghai",
  categories: [], departments: [], areas: [], route: parseRoute(), errors: [],
});
window.consoleState = state; // read by the browser tests

export function t(key) {
  const entry = LABELS[key];
  if (!entry) return key;
  return state.lang === "en" ? entry[1] : entry[0];
}

export function setLang(lang) { state.lang = lang; localStorage.setItem("console.lang", lang); }

export const can = (permission) => !!state.me && state.me.permissions.includes(permission);

function parseRoute() {
  const [path, query = ""] = window.location.hash.replace(/^#/, "").split("?");
  return { path: path || "/queue", query: Object.fromEntries(new URLSearchParams(query)) };
}
window.addEventListener("hashchange", () => { state.route = parseRoute(); });

export function go(path, query) {
  const text = query ? new URLSearchParams(query).toString() : "";
  window.location.hash = path + (text ? "?" + text : "");
}

/** A time in the area's zone, as the street office reads it. */
export function when(value, withSeconds = false) {
  if (!value) return "–";
  const options = { timeZone: state.timezone, year: "numeric", month: "2-digit", day: "2-digit",
                    hour: "2-digit", minute: "2-digit", hour12: false };
  if (withSeconds) options.second = "2-digit";
  return new Intl.DateTimeFormat(state.lang === "en" ? "en-GB" : "zh-CN", options).format(new Date(value));
}

/** Today (or `days` from today) in the area's zone, as YYYY-MM-DD. */
export function localDate(days = 0) {
  const at = new Date(Date.now() + days * 86400000);
  return new Intl.DateTimeFormat("en-CA", { timeZone: state.timezone }).format(at);
}

export const categoryName = (id) => {
  const c = state.categories.find((x) => x.id === id);
  return c ? (state.lang === "en" && c.name_en ? c.name_en : c.name) : (id ?? "–");
};
export const departmentName = (id) => state.departments.find((d) => d.id === id)?.name ?? (id ?? "–");
export const areaName = (id) => state.areas.find((a) => a.id === id)?.name ?? (id ?? "–");

function flatten(nodes, out = []) {
  for (const n of nodes) { out.push(n); flatten(n.children || [], out); }
  return out;
}

async function allPages(path, query = {}) {
  const rows = [];
  for (let page = 1; page < 50; page++) {
    const { data, headers } = await api.request("GET", path, { query: { ...query, page, page_size: 100 } });
    rows.push(...data);
    const meta = JSON.parse(headers.get("X-Pagination") || "{}");
    if (!meta.next_page) break;
  }
  return rows;
}

export async function loadSession() {
  state.me = await api.get("/me");
  const [categories, tree] = await Promise.all([
    api.get("/case-categories").catch(() => []), api.get("/areas/tree").catch(() => []),
  ]);
  state.categories = categories;
  state.areas = flatten(Array.isArray(tree) ? tree : [tree]);
  state.departments = await allPages("/departments").catch(() => []);
  if (state.areas.length) {
    const root = await api.get(`/areas/${state.areas[0].id}`).catch(() => null);
    if (root && root.timezone) state.timezone = root.timezone;
  }
}

export function fail(error) {
  state.errors.push(String(error && error.message ? error.message : error));
}
