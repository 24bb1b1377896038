// The one place that talks HTTP to the cloudtuner API. Every screen calls api() or optional().
//
// Feature detection: a route this server does not have yet answers 404 with code "route_not_found"
// (or 405); optional() turns that into {available: false} so a screen can show a calm note.

export class ApiError extends Error {
  constructor(status, body) {
    const detail = (body && (body.detail || body.message)) || `The server answered ${status}.`;
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.code = body && body.code;
    this.body = body;
  }
  get notAvailable() {
    return (this.status === 404 && this.code === "route_not_found") || this.status === 405;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

const CSRF_COOKIES = ["cloudtuner_csrf", "csrf_token", "csrftoken"];
let csrfToken = null;
export function setCsrfToken(token) {
  csrfToken = token || null;
}
function csrfHeader() {
  if (csrfToken) return csrfToken;
  for (const part of document.cookie.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (CSRF_COOKIES.includes(name)) return decodeURIComponent(value.join("="));
  }
  return null;
}

export function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => params.append(key, v));
    else params.append(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

// GET replies asked for early (before the page's screens exist), each taken once by api().
const prefetched = new Map();
export function prefetch(path) {
  if (prefetched.has(path)) return;
  const reply = request(path, {});
  reply.catch(() => {}); // a failure is reported to whoever takes the reply
  prefetched.set(path, { at: Date.now(), reply });
}

export async function api(path, options = {}) {
  const { method = "GET", query } = options;
  if (method === "GET") {
    const url = withQuery(path, query);
    const early = prefetched.get(url);
    if (early) {
      prefetched.delete(url);
      if (Date.now() - early.at < 10000) {
        try {
          return await early.reply;
        } catch {
          // Asked before sign-in, say: ask again now.
        }
      }
    }
  }
  return request(path, options);
}

async function request(path, { method = "GET", body, query, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") {
    const token = csrfHeader();
    if (token) headers["X-CSRF-Token"] = token;
  }
  let response;
  try {
    response = await fetch(withQuery(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { detail: "The cloudtuner server cannot be reached. Is it still running?", code: "offline" });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text.slice(0, 300) };
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && !path.startsWith("/api/auth/")) onUnauthorized(error);
    throw error;
  }
  return data;
}

// Call an API that may not exist on this server yet: {available, data} or {available: false}.
export async function optional(path, options) {
  try {
    return { available: true, data: await api(path, options) };
  } catch (error) {
    if (error instanceof ApiError && error.notAvailable) return { available: false, data: null };
    throw error;
  }
}
