// What a job uploads: per dataset, files, sizes, captions, and the files left out with the reason.
import { bytes } from "../format.js";

export function UploadSummary({ summary }) {
  if (!summary) return null;
  return (
    <div class="upload-summary">
      <dl class="facts">
        <dt>Files</dt>
        <dd>
          {summary.file_count.toLocaleString()} ({summary.image_count.toLocaleString()} images,{" "}
          {summary.captions_found.toLocaleString()} captions)
        </dd>
        <dt>Size</dt>
        <dd>
          {bytes(summary.total_bytes)}; archive up to {bytes(summary.estimated_archive_bytes)}
          {summary.upload_limit_bytes ? ` of the provider's ${bytes(summary.upload_limit_bytes)} limit` : ""}
        </dd>
        <dt>Left out</dt>
        <dd>{summary.excluded_count ? `${summary.excluded_count} files or folders (below)` : "nothing"}</dd>
      </dl>
      {!summary.fits_upload_limit ? (
        <p class="error-text" role="alert">
          Too large: the archive is {bytes(summary.bytes_over_limit)} over the provider's upload limit. Remove files, or
          use a dataset stored elsewhere (S3, Hugging Face).
        </p>
      ) : null}
      {summary.datasets.map((dataset) => (
        <details class="dataset-summary" open={summary.datasets.length === 1}>
          <summary>
            <strong>{dataset.dataset_id}</strong> — {dataset.file_count} files, {bytes(dataset.total_bytes)}
            {dataset.same_files_as ? ` (same folder as ${dataset.same_files_as})` : ""}
          </summary>
          <div class="mono small">{dataset.path}</div>
          <div class="small">
            {dataset.image_count} images
            {Object.keys(dataset.images_by_extension || {}).length
              ? ` (${Object.entries(dataset.images_by_extension)
                  .map(([ext, n]) => `${n} ${ext}`)
                  .join(", ")})`
              : ""}
            {dataset.captions_found != null ? ` · ${dataset.captions_found} with captions` : ""}
          </div>
          {dataset.excluded.length ? (
            <div class="table-wrap">
              <table class="data-table excluded-table">
                <caption>Left out of the upload ({dataset.excluded_count})</caption>
                <thead>
                  <tr>
                    <th scope="col">Path</th>
                    <th scope="col">Why</th>
                  </tr>
                </thead>
                <tbody>
                  {dataset.excluded.map((item) => (
                    <tr>
                      <td class="mono">
                        {item.path}
                        {item.is_directory ? "/" : ""}
                      </td>
                      <td>{item.detail}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : null}
        </details>
      ))}
    </div>
  );
}
