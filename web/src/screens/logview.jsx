// The live log tail: follows new output, searches the whole log.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";

const SHOWN_LINES = 2000;

function highlight(line, needle) {
  if (!needle) return line;
  const parts = [];
  const lower = line.toLowerCase();
  let at = 0;
  let index = lower.indexOf(needle);
  while (index >= 0) {
    parts.push(line.slice(at, index), <mark>{line.slice(index, index + needle.length)}</mark>);
    at = index + needle.length;
    index = lower.indexOf(needle, at);
  }
  parts.push(line.slice(at));
  return parts;
}

export function LogView({ text, loading, active }) {
  const [follow, setFollow] = useState(true);
  const [search, setSearch] = useState("");
  const box = useRef(null);
  const needle = search.trim().toLowerCase();
  const lines = useMemo(() => text.split(/\r\n|\n|\r/), [text]);
  const shown = useMemo(() => {
    if (needle) return lines.map((line, i) => [i, line]).filter(([, line]) => line.toLowerCase().includes(needle));
    const start = Math.max(0, lines.length - SHOWN_LINES);
    return lines.slice(start).map((line, i) => [start + i, line]);
  }, [lines, needle]);
  useLayoutEffect(() => {
    if (follow && !needle && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [shown, follow, needle]);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const onScroll = () => {
      const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
      if (!atBottom && follow) setFollow(false);
    };
    el.addEventListener("wheel", onScroll, { passive: true });
    return () => el.removeEventListener("wheel", onScroll);
  }, [follow]);
  const hidden = !needle && lines.length > SHOWN_LINES ? lines.length - SHOWN_LINES : 0;
  return (
    <div class="logs">
      <div class="logs-toolbar">
        <label class="inline-field grow">
          <span>Search the log</span>
          <input type="search" value={search} onInput={(e) => setSearch(e.target.value)} placeholder="error, loss, step…" />
        </label>
        <label class="check">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} />
          Follow {active ? "new output" : "the end"}
        </label>
      </div>
      <p class="muted small" aria-live="polite">
        {needle
          ? `${shown.length} matching line${shown.length === 1 ? "" : "s"}`
          : `${lines.length.toLocaleString()} lines${hidden ? `; showing the last ${SHOWN_LINES.toLocaleString()}` : ""}`}
        {loading ? " · loading…" : ""}
      </p>
      <pre class="log-box" ref={box} tabIndex={0} aria-label="Job log" data-testid="log-box">
        {text
          ? shown.map(([number, line]) => (
              <div class="log-line">
                <span class="log-number" aria-hidden="true">{number + 1}</span>
                <span>{highlight(line, needle)}</span>
              </div>
            ))
          : <span class="muted">{loading ? "Loading the log…" : "No log output yet."}</span>}
      </pre>
    </div>
  );
}
