// A job's artifacts (issue 4: GET /api/cloud/jobs/{id}/artifacts): delivered files with download links.
import { useEffect, useState } from "preact/hooks";
import { optional } from "../api.js";
import { ErrorNote, Loading, NotAvailable, Notice } from "../components.jsx";
import { bytes, dateTime, isTerminal } from "../format.js";

function artifactName(a) {
  return a.name || a.filename || a.path || a.key || a.artifact_id || "artifact";
}

function downloadUrl(jobId, a) {
  if (a.download_url) return a.download_url;
  if (a.url && /^(\/|https?:)/.test(a.url)) return a.url;
  if (a.links && a.links.download) return a.links.download;
  const id = a.artifact_id || a.id;
  return id != null && (a.destination === "local" || a.local) ? `/api/cloud/jobs/${jobId}/artifacts/${id}/download` : null;
}

export function Artifacts({ job }) {
  const [state, setState] = useState({ loading: true });
  const jobId = job.job_id;
  const done = isTerminal(job.status);
  useEffect(() => {
    let cancelled = false;
    optional(`/api/cloud/jobs/${jobId}/artifacts`)
      .then((reply) => !cancelled && setState({ loading: false, ...reply }))
      .catch((error) => !cancelled && setState({ loading: false, error }));
    return () => {
      cancelled = true;
    };
  }, [jobId, done]);
  if (state.loading) return <Loading label="Loading artifacts…" />;
  if (state.error) return <ErrorNote error={state.error}>Artifacts could not be loaded</ErrorNote>;
  if (!state.available) return <NotAvailable what="The list of delivered files" issue={4} />;
  const list = (state.data && (state.data.artifacts || state.data.items)) || [];
  if (!list.length)
    return (
      <Notice>
        {done
          ? "No file was delivered for this job."
          : "Files appear here as the job delivers them (final weights, checkpoints, samples)."}
      </Notice>
    );
  return (
    <div class="table-wrap">
      <table class="data-table artifacts-table">
        <caption class="visually-hidden">Delivered files</caption>
        <thead>
          <tr>
            <th scope="col">File</th>
            <th scope="col">Size</th>
            <th scope="col">Destination</th>
            <th scope="col">Delivered</th>
            <th scope="col">
              <span class="visually-hidden">Download</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {list.map((a) => {
            const url = downloadUrl(jobId, a);
            return (
              <tr>
                <td data-label="File">
                  <span class="mono">{artifactName(a)}</span>
                  {a.kind ? <div class="muted small">{a.kind}</div> : null}
                  {a.sha256 ? <div class="muted small mono" title={a.sha256}>sha256 {a.sha256.slice(0, 12)}…</div> : null}
                </td>
                <td data-label="Size">{bytes(a.size_bytes ?? a.size)}</td>
                <td data-label="Destination">{a.destination_url || a.location || a.destination || "—"}</td>
                <td data-label="Delivered">{dateTime(a.created_at || a.delivered_at)}</td>
                <td>
                  {url ? (
                    <a class="button button-small" href={url} download>
                      Download
                    </a>
                  ) : null}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
