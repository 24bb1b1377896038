// A job's artifacts (GET /api/cloud/jobs/{id}/artifacts): the files it delivered, where its delivery
// stands, and a download link for each file kept on this server (its `download_url`, which streams
// the file and takes byte ranges) or a link to where it lives (`web_url`: the Hub, a bucket).
import { bytes, dateTime, isTerminal } from "../format.js";
import { ErrorNote, Loading, NotAvailable, Notice } from "../components.jsx";
import { useResource } from "../resource.js";

const KIND_LABELS = {
  weights: "Weights",
  checkpoint: "Checkpoint",
  sample: "Sample",
  model_card: "Model card",
  config: "Config",
  other: "Other",
};
const DESTINATION_LABELS = { local: "This server", s3: "S3", huggingface: "Hugging Face Hub", auto: "Automatic" };

function fileName(path) {
  return path.split("/").pop() || path;
}

function DeliveryNote({ delivery, jobDone }) {
  if (!delivery) return null;
  const where = delivery.location ? (
    <>
      {" "}
      to <code>{delivery.location}</code>
    </>
  ) : null;
  if (delivery.state === "failed")
    return (
      <Notice kind="error" title="Delivery failed">
        {delivery.error || "The delivered files could not be collected."}
        {delivery.attempts ? <span class="muted"> (after {delivery.attempts} attempts)</span> : null}
      </Notice>
    );
  if (delivery.state === "pending")
    return (
      <p class="muted" role="status">
        {jobDone ? "Collecting the delivered files" : "The job delivers its files when it ends"}
        {where}…
      </p>
    );
  return (
    <p class="muted small" role="status">
      Delivered{where}
      {delivery.finished_at ? `, ${dateTime(delivery.finished_at)}` : ""}.
      {delivery.reported ? ` The provider reported: ${delivery.reported}` : ""}
    </p>
  );
}

export function Artifacts({ job }) {
  const jobId = job.job_id;
  const jobDone = isTerminal(job.status);
  // Poll while the job runs and while its delivery is being collected.
  const state = useResource(`/api/cloud/jobs/${jobId}/artifacts`, {
    poll: (data) => (!jobDone || !data || (data.delivery && data.delivery.state === "pending") ? 3000 : 0),
  });
  const pending = !jobDone || Boolean(state.data && state.data.delivery && state.data.delivery.state === "pending");
  if (state.loading) return <Loading label="Loading artifacts…" />;
  if (state.error && !state.data) return <ErrorNote error={state.error}>Artifacts could not be loaded</ErrorNote>;
  if (state.missing) return <NotAvailable what="The list of delivered files" issue={4} />;
  const reply = state.data || { artifacts: [], total_bytes: 0 };
  const list = reply.artifacts || [];
  return (
    <div class="stack artifacts">
      <DeliveryNote delivery={reply.delivery} jobDone={jobDone} />
      {list.length ? (
        <>
          <p class="muted small">
            {list.length} {list.length === 1 ? "file" : "files"}, {bytes(reply.total_bytes)} in all.
          </p>
          <div class="table-wrap">
            <table class="data-table artifacts-table phone-cards">
              <caption class="visually-hidden">Delivered files</caption>
              <thead>
                <tr>
                  <th scope="col">File</th>
                  <th scope="col">Kind</th>
                  <th scope="col" class="cell-num">Size</th>
                  <th scope="col">Where</th>
                  <th scope="col">Delivered</th>
                  <th scope="col">
                    <span class="visually-hidden">Download</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {list.map((a) => (
                  <tr data-artifact-id={a.id}>
                    <td data-label="File">
                      <span class="mono" title={a.path}>
                        {a.path}
                      </span>
                      {a.sha256 ? (
                        <div class="muted small mono" title={`SHA-256 ${a.sha256}`}>
                          sha256 {a.sha256.slice(0, 12)}…
                        </div>
                      ) : null}
                    </td>
                    <td data-label="Kind">{KIND_LABELS[a.kind] || a.kind}</td>
                    <td data-label="Size" class="cell-num">
                      {bytes(a.size_bytes)}
                    </td>
                    <td data-label="Where">
                      <div>{DESTINATION_LABELS[a.destination] || a.destination}</div>
                      <div class="muted small mono wrap">{a.location}</div>
                    </td>
                    <td data-label="Delivered">{dateTime(a.delivered_at)}</td>
                    <td>
                      <div class="row-actions">
                        {a.download_url ? (
                          <a class="button button-small" href={a.download_url} download={fileName(a.path)} aria-label={`Download ${a.path}`}>
                            Download
                          </a>
                        ) : null}
                        {a.web_url ? (
                          <a class="button button-small" href={a.web_url} target="_blank" rel="noopener noreferrer" aria-label={`Open ${a.path}`}>
                            Open
                          </a>
                        ) : null}
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      ) : (
        <Notice>
          {jobDone && !pending
            ? "No file was delivered for this job."
            : "Files appear here as the job delivers them (final weights, checkpoints, samples)."}
        </Notice>
      )}
    </div>
  );
}
