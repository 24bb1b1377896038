// Navigation by the URL's fragment (#/jobs/ID), so the server needs only the page at /.
import { useEffect, useState } from "preact/hooks";

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean);
  return { path: "/" + parts.join("/"), parts, params: new URLSearchParams(query) };
}

export function useRoute() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const onChange = () => setRoute(parseHash());
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

export function navigate(path, params) {
  const query = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)).toString() : "";
  const target = "#" + path + (query ? "?" + query : "");
  if (location.hash !== target) location.hash = target;
}

// Replace the query of the current route without a new history entry.
export function replaceParams(params) {
  const { path } = parseHash();
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)).toString();
  history.replaceState(null, "", "#" + path + (query ? "?" + query : ""));
}
