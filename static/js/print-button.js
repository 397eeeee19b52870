// A button marked data-print prints the page (the CSP allows no inline handler).
document.addEventListener("click", (event) => {
  if (event.target.closest("[data-print]")) window.print();
});
