// Asks before a button does something that cannot be undone: <button data-confirm="Question?">.
// One listener for the whole page (inline handlers are refused by the Content-Security-Policy);
// it runs before the form is submitted or htmx sends it, and stops both when the answer is no.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);
