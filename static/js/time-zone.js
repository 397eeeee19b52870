// A new campaign's dates are read in the browser's time zone: pick it in the form's time-zone select
// (<select data-browser-time-zone="">), unless the person chose one already. An edit form keeps its zone.
document.addEventListener("DOMContentLoaded", () => {
  const select = document.querySelector("select[data-browser-time-zone='']");
  if (!select || select.dataset.touched) return;
  const zone = document.documentElement.dataset.profileTimeZone || Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && [...select.options].some((option) => option.value === zone)) select.value = zone;
});
