// Dashboard: the "Compare selected" button needs at least one ticked run.
(function () {
  "use strict";
  const form = document.getElementById("compare-form");
  const button = document.getElementById("compare-button");
  if (!form || !button) return;
  const update = () => { button.disabled = !form.querySelector('input[name="runs"]:checked'); };
  form.addEventListener("change", update);
  update();
})();
