// The load / act / error state that every Settings section (and a few screens) need, once.
//
//   const workers = useResource("/api/admin/workers", { poll: 10000 });
//   (poll may be a function of the data: (data) => ms, 0 for no polling)
//   workers.loading, workers.available, workers.data, workers.error, workers.reload()
//
//   const action = useAction();
//   action.run(() => api(...), { note: "Saved.", then: workers.reload })
//   action.busy (the name given to run, or true), action.error, action.note
//
// useResource GETs through optional(): a route this server lacks gives {available: false} (show
// NotAvailable); any other failure is `error`. A reply that arrives after the component is gone, or
// after a newer request, is dropped.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { optional } from "./api.js";

export function useResource(path, { poll = 0, query } = {}) {
  const [state, setState] = useState({ for: null, available: false, data: null, error: null });
  const latest = useRef(0);
  const queryKey = query ? JSON.stringify(query) : "";
  const key = path ? `${path}?${queryKey}` : null;
  const reload = useCallback(() => {
    if (!path) return Promise.resolve();
    const ticket = ++latest.current;
    return optional(path, query ? { query } : undefined).then(
      (reply) => {
        if (ticket === latest.current) setState({ for: key, available: reply.available, data: reply.data, error: null });
      },
      (error) => {
        if (ticket === latest.current) setState((s) => (s.for === key ? { ...s, error } : { for: key, available: false, data: null, error }));
      },
    );
  }, [key]);
  useEffect(() => {
    reload();
    return () => {
      latest.current++; // drop replies still on their way
    };
  }, [reload]);
  // Until the first reply for this path, nothing is known (not even an older path's data).
  const current = state.for === key ? state : { available: false, data: null, error: null };
  const loading = Boolean(path) && state.for !== key;
  const every = typeof poll === "function" ? poll(current.data) : poll;
  useEffect(() => {
    if (!every || !path) return undefined;
    const timer = setInterval(reload, every);
    return () => clearInterval(timer);
  }, [reload, every]);
  return {
    loading,
    available: current.available,
    data: current.data,
    error: current.error,
    missing: Boolean(path) && !loading && !current.error && !current.available,
    reload,
  };
}

export function useAction() {
  const [state, setState] = useState({ busy: null, error: null, note: null });
  const run = useCallback(async (fn, { name = true, note = null, then } = {}) => {
    setState({ busy: name, error: null, note: null });
    try {
      const result = await fn();
      setState({ busy: null, error: null, note });
      if (then) await then(result);
      return result;
    } catch (error) {
      setState({ busy: null, error, note: null });
      return undefined;
    }
  }, []);
  const clear = useCallback(() => setState({ busy: null, error: null, note: null }), []);
  return { ...state, run, clear };
}
