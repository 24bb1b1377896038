// Who is signed in and what they may do. In single-user mode (or on a server without the users API)
// the local user holds every permission. The server checks every request anyway: hiding a button
// here is only so nobody is offered what would be refused.
import { api, ApiError, setCsrfToken } from "./api.js";

export const session = {
  mode: "unknown", // "single" | "multi"
  authApi: false, // the server has /api/auth/*
  user: null,
  permissions: null, // null: every permission
};

export function can(...permissions) {
  if (!session.permissions) return true;
  return permissions.some((p) => session.permissions.has(p) || session.permissions.has("*"));
}

function applyMe(me) {
  const user = me.user || null;
  const permissions = me.permissions || (user && user.permissions) || me.scopes;
  session.authApi = true;
  session.user = user;
  session.via = me.via || null;
  session.permissions = Array.isArray(permissions) ? new Set(permissions) : null;
  if (me.csrf_token) setCsrfToken(me.csrf_token);
  const mode = me.mode || me.auth_mode;
  session.mode = mode ? (String(mode).startsWith("single") ? "single" : "multi") : user ? "multi" : "single";
}

// Returns "ok" when the UI may be shown, "login" when someone must sign in first.
export async function loadSession() {
  try {
    applyMe(await api("/api/auth/me"));
    return "ok";
  } catch (error) {
    if (error instanceof ApiError && error.notAvailable) {
      session.mode = "single";
      session.authApi = false;
      session.user = null;
      session.permissions = null;
      return "ok";
    }
    if (error instanceof ApiError && error.status === 401) {
      session.authApi = true;
      session.mode = "multi";
      session.user = null;
      session.permissions = new Set();
      return "login";
    }
    throw error;
  }
}

export async function login(username, password) {
  const reply = await api("/api/auth/login", { method: "POST", body: { username, password } });
  if (reply && reply.csrf_token) setCsrfToken(reply.csrf_token);
  return loadSession();
}

export async function logout() {
  try {
    await api("/api/auth/logout", { method: "POST" });
  } catch {
    // Signed out or not: the page reloads and asks again.
  }
}
