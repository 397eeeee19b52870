// The request and extension forms: a duration preset and the "Other (hours)" box stay in step, and
// the start time is read in the browser's time zone (a hidden field the server reads it with).
document.addEventListener("change", (event) => {
  const radio = event.target;
  if (!(radio instanceof HTMLInputElement) || radio.name !== "duration_preset") return;
  const hours = radio.form && radio.form.querySelector("input[name='duration_hours']");
  if (hours && radio.value !== "other") hours.value = radio.value;
  if (hours && radio.value === "other") hours.focus();
});
document.addEventListener("input", (event) => {
  const hours = event.target;
  if (!(hours instanceof HTMLInputElement) || hours.name !== "duration_hours" || !hours.form) return;
  const other = hours.form.querySelector("input[name='duration_preset'][value='other']");
  if (other) other.checked = true;
});
document.addEventListener("DOMContentLoaded", () => {
  const zone = document.documentElement.dataset.profileTimeZone || Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone) return;
  document.querySelectorAll("input[type='hidden'][name='time_zone']").forEach((field) => { field.value = zone; });
  document.querySelectorAll("[data-time-zone-name]").forEach((label) => { label.textContent = zone; });
});
