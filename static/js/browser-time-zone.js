// Pages with times show and read them in the browser's time zone (audit.kernel.zones), unless the person
// chose one on their profile (<html data-profile-time-zone>): the server learns the browser's zone from
// the `tz` cookie set here, and a filter form carries the zone in its hidden
// <input data-browser-time-zone> so that a link keeps its meaning for whoever opens it.
// base.html loads this on every page; a page may load it again (it does its work once).
document.addEventListener("DOMContentLoaded", () => {
  if (document.documentElement.dataset.timeZoneDone) return;
  document.documentElement.dataset.timeZoneDone = "1";
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!browserZone) return;
  const chosen = document.documentElement.dataset.profileTimeZone;
  const zone = chosen || browserZone;
  // IANA names ("America/Argentina/Buenos_Aires") need no escaping in a cookie; the server reads them as they are.
  const stored = document.cookie.split("; ").find((pair) => pair.startsWith("tz="));
  if (!stored || stored.slice(3) !== browserZone) {
    const secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `tz=${browserZone}; path=/; max-age=31536000; SameSite=Lax${secure}`;
  }
  for (const input of document.querySelectorAll("input[data-browser-time-zone]")) {
    if (!input.value) input.value = zone;
  }
  // Drawn in another zone (the first visit, before the cookie): draw it once more, in the browser's.
  const shown = document.querySelector("[data-shown-time-zone]");
  if (!shown || shown.dataset.zoneFixed || shown.dataset.shownTimeZone === zone) return;
  if (sessionStorage.getItem("tz-redrawn") === zone) return; // the server does not know this zone
  sessionStorage.setItem("tz-redrawn", zone);
  location.reload();
});
