// The page shell's behaviour, without a framework (loaded in <head>, not deferred, so the menu is
// collapsed before the first paint on a narrow screen):
// - the navigation's disclosure button ("Menu") on narrow screens: aria-expanded says whether the menu
//   is open; Escape closes it and gives focus back to the button;
// - a busy indicator for every htmx request: the bar under the header, and aria-busy on the part of
//   the page being replaced.
document.documentElement.classList.add("js");

document.addEventListener("click", (event) => {
  const toggle = event.target.closest("[data-nav-toggle]");
  if (!toggle) return;
  const open = toggle.getAttribute("aria-expanded") !== "true";
  toggle.setAttribute("aria-expanded", String(open));
  document.getElementById(toggle.getAttribute("aria-controls"))?.classList.toggle("open", open);
});

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  const toggle = document.querySelector("[data-nav-toggle][aria-expanded='true']");
  if (!toggle) return;
  toggle.setAttribute("aria-expanded", "false");
  document.getElementById(toggle.getAttribute("aria-controls"))?.classList.remove("open");
  toggle.focus();
});

let pending = 0;
function busy(delta, target) {
  pending = Math.max(0, pending + delta);
  document.getElementById("portal-progress")?.classList.toggle("htmx-request", pending > 0);
  if (target instanceof Element && target.isConnected) {
    if (delta > 0) target.setAttribute("aria-busy", "true");
    else target.removeAttribute("aria-busy");
  }
}
document.addEventListener("htmx:beforeRequest", (event) => busy(1, event.detail.target));
document.addEventListener("htmx:afterRequest", (event) => busy(-1, event.detail.target));

// A table wider than the screen scrolls inside its box (.table-wrap): a keyboard reaches that box too
// (focusable, a named region), as WCAG asks of every scrolling region. Checked again after htmx swaps
// and when the window changes size.
function markScrollingTables() {
  for (const wrap of document.querySelectorAll(".table-wrap")) {
    const scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
    if (scrolls && !wrap.hasAttribute("tabindex")) {
      const caption = wrap.querySelector("caption");
      wrap.tabIndex = 0;
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", `${caption ? caption.textContent.trim() : "Table"} (scrolls sideways)`);
      wrap.dataset.scrolls = "1";
    } else if (!scrolls && wrap.dataset.scrolls) {
      wrap.removeAttribute("tabindex");
      wrap.removeAttribute("role");
      wrap.removeAttribute("aria-label");
      delete wrap.dataset.scrolls;
    }
  }
}
let resizeTimer;
document.addEventListener("DOMContentLoaded", markScrollingTables);
document.addEventListener("htmx:afterSettle", markScrollingTables);
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(markScrollingTables, 150);
});
