// Upload progress for forms posted by htmx: <form data-upload-progress="id-of-a-progress-element">.
// The bar follows the upload, then says the server is checking the rows (all or nothing).
document.addEventListener("htmx:xhr:progress", (event) => {
  const form = event.target.closest("form[data-upload-progress]");
  if (!form || !event.detail.lengthComputable) return;
  const box = document.getElementById(form.dataset.uploadProgress);
  const bar = box.querySelector("progress");
  const label = box.querySelector("[data-progress-label]");
  const percent = Math.round((event.detail.loaded / event.detail.total) * 100);
  box.hidden = false;
  bar.value = percent;
  label.textContent = percent < 100
    ? `Uploading: ${percent}%`
    : "Uploaded. Checking every row, then importing…";
});
