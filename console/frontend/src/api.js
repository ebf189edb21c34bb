// The console's only way to the API. The access token lives in this module's memory;
// the refresh token is an httpOnly cookie (Path=/auth/console) the page cannot read.
// A 401 triggers one refresh through the cookie, then the call is tried again.
const CSRF = { "X-Requested-With": "grid-console" };
let accessToken = null;
let refreshing = null;
// Whether this browser logged in to the console (not a secret: the cookie is the session).
const SESSION_HINT = "console.session";

export class ApiError extends Error {
  constructor(status, body, headers) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.headers = headers;
  }
}

async function parse(response) {
  const type = response.headers.get("Content-Type") || "";
  if (response.status === 204) return null;
  return type.includes("json") ? response.json() : response.blob();
}

function refresh() {
  if (!refreshing) {
    refreshing = fetch("/auth/console/refresh", { method: "POST", headers: CSRF, credentials: "same-origin" })
      .then(async (r) => {
        const body = await parse(r);
        if (!r.ok) { accessToken = null; throw new ApiError(r.status, body, r.headers); }
        accessToken = body.access_token;
        return body;
      })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

export async function request(method, path, { body, query, headers = {}, form, retry = true } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length)) continue;
      for (const one of Array.isArray(v) ? v : [v]) params.append(k, String(one));
    }
    const text = params.toString();
    if (text) url += (url.includes("?") ? "&" : "?") + text;
  }
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (accessToken) init.headers.Authorization = `Bearer ${accessToken}`;
  if (form) init.body = form;
  else if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  window.consoleBusy = (window.consoleBusy || 0) + 1; // requests in flight (tests wait for 0)
  let response;
  try { response = await fetch(url, init); } finally { window.consoleBusy -= 1; }
  if (response.status === 401 && retry && !path.startsWith("/auth/console")) {
    await refresh();
    return request(method, path, { body, query, headers, form, retry: false });
  }
  const data = await parse(response);
  if (!response.ok) throw new ApiError(response.status, data, response.headers);
  return { data, headers: response.headers, status: response.status };
}

export const get = async (path, query) => (await request("GET", path, { query })).data;
export const post = async (path, body, headers) => (await request("POST", path, { body, headers })).data;

export const authHeaders = () => (accessToken ? { Authorization: `Bearer ${accessToken}` } : {});

export async function login(name, password) {
  const { data } = await request("POST", "/auth/console/login", {
    body: { login: name, password }, headers: CSRF, retry: false });
  accessToken = data.access_token;
  localStorage.setItem(SESSION_HINT, "1");
  return data;
}

/** After a reload: a new access token from the cookie, or null (log in). */
export async function restore() {
  if (!localStorage.getItem(SESSION_HINT)) return null; // never logged in here: no 401 to provoke
  try { return await refresh(); } catch { localStorage.removeItem(SESSION_HINT); return null; }
}

export async function logout() {
  try { await request("POST", "/auth/console/logout", { headers: CSRF, retry: false }); } catch { /* gone anyway */ }
  accessToken = null;
  localStorage.removeItem(SESSION_HINT);
}

/** A file the API sends (xlsx export), saved by the browser under its own name. */
export async function download(path, query, fallbackName) {
  const { data, headers } = await request("GET", path, { query });
  const disposition = headers.get("Content-Disposition") || "";
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  const name = match ? decodeURIComponent(match[1]) : fallbackName;
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(data), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  return { name, size: data.size };
}

/** An image the API guards with the token, as an object URL an <img> can show. */
export async function imageUrl(path) {
  const { data } = await request("GET", path);
  return URL.createObjectURL(data);
}
