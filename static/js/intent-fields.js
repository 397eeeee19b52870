// The declared intent (task, action, resource) belongs to a machine identity's access: its fieldset
// shows when the request form's beneficiary is a machine, and is hidden and disabled (so nothing in it
// is sent) when it is a person. Without this script the server shows it for a machine it rendered for.
function syncIntentFields(select) {
  const fieldset = select.form && select.form.querySelector("#intent-fields[data-machine-ids]");
  if (!fieldset) return;
  const machine = fieldset.dataset.machineIds.split(",").includes(select.value);
  fieldset.hidden = !machine;
  fieldset.disabled = !machine;
}

document.addEventListener("change", (event) => {
  const select = event.target;
  if (select instanceof HTMLSelectElement && select.name === "beneficiary") syncIntentFields(select);
});
// A choice made while the page was still loading, before this script listened: shown as it now is.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll('select[name="beneficiary"]').forEach(syncIntentFields);
});
