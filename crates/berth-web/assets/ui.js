// berth's UI script: the copy buttons. Everything else works without it.
"use strict";
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const text = button.dataset.copy;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Without clipboard access (plain HTTP beyond localhost), select the command instead.
    const code = button.previousElementSibling;
    if (code) window.getSelection().selectAllChildren(code);
    button.textContent = "Press Ctrl+C";
    return;
  }
  button.textContent = "Copied";
  button.classList.add("copied");
  setTimeout(() => { button.textContent = "Copy"; button.classList.remove("copied"); }, 2000);
});
