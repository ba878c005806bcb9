// Dashboard: "Compare selected" and "Delete selected" need at least one ticked run; deleting asks first.
(function () {
  "use strict";
  const form = document.getElementById("compare-form");
  const button = document.getElementById("compare-button");
  if (!form || !button) return;
  const ticked = () => Array.from(form.querySelectorAll('input[name="runs"]:checked'));
  const remove = document.getElementById("delete-button");
  const update = () => {
    button.disabled = ticked().length === 0;
    if (remove) remove.disabled = button.disabled;
  };
  form.addEventListener("change", update);
  update();
  if (!remove) return;
  remove.hidden = false;
  remove.addEventListener("click", () => {
    const runs = ticked();
    const count = runs.length === 1 ? "this run" : `these ${runs.length} runs`;
    if (!runs.length || !window.confirm(`Delete ${count}? Their epochs, checkpoints, weights and share links go ` +
                                        "with them; this cannot be undone. Runs still queued or running are kept.")) {
      return;
    }
    const target = document.getElementById("delete-form");
    for (const run of runs) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = "runs";
      input.value = run.value;
      target.appendChild(input);
    }
    target.submit();
  });
})();
