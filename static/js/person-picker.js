// A person field's combobox (governance.forms.PersonWidget): htmx fills the list as one types; this
// opens and closes it and works it by keyboard (ArrowDown/ArrowUp to move, Enter to pick, Escape to
// close) or pointer, per the ARIA combobox pattern. Without this script the input is a plain field.
// A textarea of people (governance.forms.PeopleWidget, one a line) searches for its last line, and a
// pick replaces that line and starts a new one; its arrow keys move the cursor unless the list is open.
(() => {
  const inputOf = (listbox) => document.querySelector(`[data-person-input][aria-controls="${listbox.id}"]`);
  const listboxOf = (input) => document.getElementById(input.getAttribute("aria-controls"));
  const options = (listbox) => [...listbox.querySelectorAll('[role="option"]:not([aria-disabled="true"])')];
  const isPickerInput = (element) =>
    (element instanceof HTMLInputElement || element instanceof HTMLTextAreaElement) && element.hasAttribute("data-person-input");
  const isLines = (input) => input instanceof HTMLTextAreaElement;

  function setOpen(input, open) {
    const listbox = listboxOf(input);
    if (!listbox) return;
    listbox.hidden = !open;
    input.setAttribute("aria-expanded", open ? "true" : "false");
    if (!open) {
      input.removeAttribute("aria-activedescendant");
      options(listbox).forEach((o) => o.setAttribute("aria-selected", "false"));
    }
  }

  function activate(input, option) {
    const listbox = listboxOf(input);
    options(listbox).forEach((o) => o.setAttribute("aria-selected", o === option ? "true" : "false"));
    if (option) {
      input.setAttribute("aria-activedescendant", option.id);
      option.scrollIntoView({ block: "nearest" });
    }
  }

  function pick(input, option) {
    if (isLines(input)) {
      const lines = input.value.split("\n");
      lines[lines.length - 1] = option.dataset.value;
      input.value = lines.join("\n") + "\n";
      input.setSelectionRange(input.value.length, input.value.length);
    } else {
      input.value = option.dataset.value;
    }
    setOpen(input, false);
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  // The list arrived: open it when it has something to say, close it when empty.
  document.addEventListener("htmx:afterSwap", (event) => {
    const listbox = event.detail.target;
    if (!(listbox instanceof HTMLElement) || listbox.getAttribute("role") !== "listbox") return;
    const input = inputOf(listbox);
    if (input) setOpen(input, listbox.children.length > 0 && document.activeElement === input);
  });

  document.addEventListener("keydown", (event) => {
    const input = event.target;
    if (!isPickerInput(input)) return;
    const listbox = listboxOf(input);
    if (!listbox) return;
    const open = !listbox.hidden;
    if (isLines(input) && !open) return; // the textarea's own keys: move between lines, a new line
    const all = options(listbox);
    const current = all.findIndex((o) => o.id === input.getAttribute("aria-activedescendant"));
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!listbox.children.length) return;
      event.preventDefault();
      if (!open) setOpen(input, true);
      if (!all.length) return;
      const step = event.key === "ArrowDown" ? 1 : -1;
      const next = current < 0 ? (step > 0 ? 0 : all.length - 1) : (current + step + all.length) % all.length;
      activate(input, all[next]);
    } else if (event.key === "Enter" && open && current >= 0) {
      event.preventDefault(); // pick, do not submit the form
      pick(input, all[current]);
    } else if (event.key === "Escape" && open) {
      event.preventDefault();
      setOpen(input, false);
    }
  });

  // Pointer: mousedown keeps the focus in the input; the click picks.
  document.addEventListener("mousedown", (event) => {
    if (event.target instanceof Element && event.target.closest(".picker-options")) event.preventDefault();
  });
  document.addEventListener("click", (event) => {
    const option = event.target instanceof Element && event.target.closest('.picker-options [role="option"]');
    if (!option || option.getAttribute("aria-disabled") === "true") return;
    event.preventDefault(); // the list sits in the field's label: the click is not the label's
    const input = inputOf(option.parentElement);
    if (input) pick(input, option);
  });

  document.addEventListener("focusout", (event) => {
    const input = event.target;
    if (isPickerInput(input)) setOpen(input, false);
  });
})();
