// The live feed: one EventSource on /api/cloud/events for the whole page, shared by every screen.
// The server reads its job store for changes, so this works with several server processes.
// The browser reconnects by itself, sending the last id it saw, so no change is lost.
// If the feed cannot be opened (an older server, a proxy that buffers), screens poll instead.

const subscribers = new Set();
const statusListeners = new Set();
let source = null;
let state = "idle"; // idle | connecting | live | retrying | unavailable
let failures = 0;

function setState(next) {
  if (state === next) return;
  state = next;
  statusListeners.forEach((fn) => fn(state));
}

function dispatch(type, event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return;
  }
  subscribers.forEach((fn) => fn(type, data));
}

function open() {
  if (source || typeof EventSource === "undefined") {
    if (!source) setState("unavailable");
    return;
  }
  setState("connecting");
  source = new EventSource("/api/cloud/events");
  source.addEventListener("ready", (event) => {
    failures = 0;
    setState("live");
    dispatch("ready", event);
  });
  source.addEventListener("status", (event) => dispatch("status", event));
  source.addEventListener("update", (event) => dispatch("update", event));
  source.onerror = () => {
    failures += 1;
    if (source.readyState === EventSource.CLOSED) {
      // Not an event stream (401, 404, a proxy error): try again a little later, poll meanwhile.
      source = null;
      setState("unavailable");
      setTimeout(() => subscribers.size && open(), Math.min(30000, 2000 * failures));
    } else {
      setState("retrying");
    }
  };
}

export function subscribe(fn) {
  subscribers.add(fn);
  open();
  return () => subscribers.delete(fn);
}

export function onFeedState(fn) {
  statusListeners.add(fn);
  fn(state);
  return () => statusListeners.delete(fn);
}

export function feedIsLive() {
  return state === "live";
}

export function closeFeed() {
  if (source) source.close();
  source = null;
  setState("idle");
}
