// The approver's pages: times typed are read in the browser's time zone (a hidden field the server
// reads them with), also on cards htmx swaps in; "Select all" ticks every card on the page.
(() => {
  const zone = document.documentElement.dataset.profileTimeZone || Intl.DateTimeFormat().resolvedOptions().timeZone;
  const fillZones = (root) => {
    if (!zone) return;
    root.querySelectorAll("input[type='hidden'][name='time_zone']").forEach((field) => { field.value = zone; });
  };
  document.addEventListener("DOMContentLoaded", () => fillZones(document));
  document.addEventListener("htmx:load", (event) => fillZones(event.target.parentElement || document));
  document.addEventListener("change", (event) => {
    const all = event.target;
    if (!(all instanceof HTMLInputElement) || !all.dataset.selectAll) return;
    document.querySelectorAll(`input[type='checkbox'][name='${all.dataset.selectAll}']`).forEach((box) => {
      box.checked = all.checked;
    });
  });
})();
