// Dashboard: "Compare selected", "Cancel selected" and "Delete selected" need at least one ticked run;
// the last two ask first (their data-question, {count} filled in), then post the ticked runs with the
// form named by data-target (the table's own form is a GET to compare).
(function () {
  "use strict";
  const form = document.getElementById("compare-form");
  const compare = document.getElementById("compare-button");
  if (!form || !compare) return;
  const ticked = () => Array.from(form.querySelectorAll('input[name="runs"]:checked'));
  const actions = ["cancel-button", "delete-button"].map((id) => document.getElementById(id)).filter(Boolean);
  const update = () => {
    const none = ticked().length === 0;
    [compare, ...actions].forEach((button) => { button.disabled = none; });
  };
  form.addEventListener("change", update);
  update();
  actions.forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", () => {
      const runs = ticked();
      const count = runs.length === 1 ? "this run" : `these ${runs.length} runs`;
      if (!runs.length || !window.confirm(button.dataset.question.replace("{count}", count))) return;
      const target = document.getElementById(button.dataset.target);
      for (const run of runs) {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = "runs";
        input.value = run.value;
        target.appendChild(input);
      }
      target.submit();
    });
  });
})();
